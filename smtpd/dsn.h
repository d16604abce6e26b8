/*
 * dsn.h — delivery status notifications: the bounce, the "delayed" notice
 * and the success report that the outbound queue sends back to a sender
 * (RFC 3464, with RFC 3461's NOTIFY, RET, ENVID and ORCPT, RFC 3834's
 * Auto-Submitted and RFC 6533 for mail in UTF-8).
 *
 * Pure: the caller passes everything, the time included, and gets a whole
 * message back in a buf; nothing here reads a clock, a file or the store.
 * The queue runner decides when a report is due (dsn_should_bounce,
 * dsn_notify_wants), builds it here and delivers it from <>: into the
 * sender's maildrop when the sender is local, else through the queue.
 *
 * The report is a multipart/report; report-type=delivery-status message
 * with CRLF line ends and no line over 998 octets:
 *   1. text/plain: what happened to each recipient, in plain English, with
 *      the remote server's answer quoted and what to do next;
 *   2. message/delivery-status (RFC 3464 2.2, 2.3): the per-message fields,
 *      then one group of fields per recipient;
 *   3. the original: its header section as text/rfc822-headers, or the
 *      whole message as message/rfc822 when the sender asked for it (RET=FULL),
 *      the report says a failure, and the message is at most DSN_FULL_MAX
 *      octets. A larger message falls back to its headers, and the first part
 *      says so.
 * When the original's headers are UTF-8 (SMTPUTF8 mail) or an address in the
 * report is, parts 2 and 3 are RFC 6533's message/global-delivery-status and
 * message/global-headers (or message/global), and a UTF-8 address is given
 * with the "utf-8" address type. Text from elsewhere (the remote reply, the
 * ENVID, an ORCPT) never brings a line end or a control character into the
 * report: each becomes a space or '?', and long text is folded.
 */
#ifndef KOTAK_DSN_H
#define KOTAK_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "store.h"

/* The largest original returned whole; a larger one is returned as headers. */
#define DSN_FULL_MAX (64 * 1024)
/* The most of the original's header section returned (cut at a line end). */
#define DSN_HEADERS_MAX (64 * 1024)
/* The most of one remote reply quoted; the rest is dropped, marked "...". */
#define DSN_DIAG_MAX 4096
/*
 * A ceiling for the output buf that no report for nrcpts recipients
 * reaches: the original (doubled, were every line end a bare LF), per
 * recipient the remote reply quoted twice (line by line in the first part,
 * where a reply of many short lines grows most), an ORCPT twice, and room
 * for the rest.
 */
#define DSN_REPORT_MAX(nrcpts) (2 * DSN_FULL_MAX + 16384 + (size_t)(nrcpts)*40960)

/* What the report is about; it picks the Subject and the opening words. */
enum dsn_kind {
    DSN_KIND_FAILED,  /* delivery failed for good for one or more recipients */
    DSN_KIND_DELAYED, /* not delivered yet, still being retried (after 4 hours) */
    DSN_KIND_SUCCESS, /* delivered or relayed, as NOTIFY=SUCCESS asked */
};

/* RFC 3464 2.3.3 Action, per recipient. */
enum dsn_action {
    DSN_ACTION_FAILED,
    DSN_ACTION_DELAYED,
    DSN_ACTION_DELIVERED,
    DSN_ACTION_RELAYED,  /* handed to a server that will not report further */
    DSN_ACTION_EXPANDED, /* delivered to an alias or list that sends it on */
};

/*
 * RET and NOTIFY (RFC 3461 4.3, 4.1) are the store's enum store_ret and
 * STORE_NOTIFY_* bits, as the queue keeps them and the client sends them.
 * RET not given (STORE_RET_DEFAULT): RFC 3461 4.3 leaves the choice to the
 * MTA; kotak returns the headers only, as Gmail and Exchange do: a bounce
 * then never carries a large attachment or a private body back through
 * servers that may log it, and the headers are what the sender needs to
 * know which message it was.
 */

/* What dsn_build tells the caller about the report it wrote. */
enum dsn_build_flags {
    DSN_BUILD_8BIT = 1 << 0,         /* the body has 8-bit octets: send with 8BITMIME */
    DSN_BUILD_SMTPUTF8 = 1 << 1,     /* the header has UTF-8 (To:): send with SMTPUTF8 */
    DSN_BUILD_HEADERS_ONLY = 1 << 2, /* RET=FULL was asked, only the headers went back */
};

/*
 * One recipient of the original message. Strings are NUL-terminated and
 * borrowed for the length of the call; NULL and "" both mean "none".
 */
struct dsn_rcpt {
    const char *final_rcpt; /* the address delivery was tried to: "bob@example.com" */
    const char *orig_rcpt;  /* ORCPT after xtext decoding: "rfc822;Bob@example.com" */
    enum dsn_action action; /* what happened */
    const char *status;     /* RFC 3463 status: "5.1.1" */
    const char *remote_mta; /* the host that answered: "mx.example.com" */
    const char *reply;      /* its answer, raw (any octets, several lines) */
    size_t reply_len;       /* the answer's length */
    const char *reason;     /* kotak's own words when no server answered */
    time_t last_attempt;    /* 0: not tried */
    time_t retry_until;     /* delayed: when the queue gives up; 0: not said */
};

/* A whole report. Borrowed as struct dsn_rcpt says. */
struct dsn_report {
    enum dsn_kind kind;
    const char *reporting_mta; /* our host name: "mail.example.org" */
    const char *message_id;    /* the report's Message-ID, "id@host", made by the caller */
    const char *sender;        /* the original's envelope sender, never "" */
    const char *envid;         /* ENVID after xtext decoding, or NULL */
    time_t arrival;            /* when the original arrived; 0: not said */
    time_t date;               /* when the report is written: its Date: */
    enum store_ret ret;
    const struct dsn_rcpt *rcpts; /* at least one */
    size_t nrcpts;
    /*
     * The original message: its first orig_len octets (CRLF or bare LF line
     * ends). The whole is orig_size octets (0: orig_len is the whole). The
     * caller need give no more than the header section, nor more than
     * DSN_FULL_MAX octets when the whole is larger: only a whole message of
     * at most DSN_FULL_MAX octets is ever returned whole. NULL: the report
     * has no third part.
     */
    const char *orig;
    size_t orig_len;
    size_t orig_size;
};

/*
 * Appends the report r to out_r: an RFC 5322 message with CRLF line ends,
 * From: "Mail Delivery System" <MAILER-DAEMON@reporting_mta>, To: the sender,
 * Auto-Submitted: auto-replied. *flags_r (when not NULL) gets
 * DSN_BUILD_* bits. Returns 0; -EINVAL when r is malformed (no recipient,
 * an address, status, host name or Message-ID that is not one, a date that
 * cannot be written); -ENOBUFS when out_r's max is too small (see
 * DSN_REPORT_MAX); -EEXIST when no boundary could be found that the parts
 * do not hold (not seen in practice). On error out_r is as it was.
 */
int dsn_build(const struct dsn_report *r, struct buf *out_r, unsigned *flags_r);

/*
 * Whether a message from this envelope sender may be answered with a
 * report at all: false for the null sender ("" or "<>"), so that a bounce
 * never bounces. Only the null sender: RFC 3464 and RFC 5321 6.1 require no
 * more, and guessing at MAILER-DAEMON-like names would drop reports owed to
 * real people.
 */
bool dsn_should_bounce(const char *envelope_sender);

/*
 * Whether a recipient whose RCPT carried NOTIFY=notify (0: not given) asked
 * for a report of this action. Without NOTIFY, failures and delays are
 * reported (RFC 3461 4.1); NEVER asks for none. The sender must still pass
 * dsn_should_bounce.
 */
bool dsn_notify_wants(unsigned notify, enum dsn_action action);

/*
 * Parses a NOTIFY value ("NEVER", or a comma-separated list of SUCCESS,
 * FAILURE and DELAY, any case) into *notify_r. Returns 0 or -EINVAL (NEVER
 * with others, a word twice, an unknown word, an empty item).
 */
int dsn_notify_parse(const char *s, size_t len, unsigned *notify_r);

/* Parses a RET value ("FULL" or "HDRS", any case). Returns 0 or -EINVAL. */
int dsn_ret_parse(const char *s, size_t len, enum store_ret *ret_r);

/*
 * RFC 3461 4 xtext, as ENVID and ORCPT travel in SMTP: octets from '!' to
 * '~' but '+' and '=' stand for themselves, every other octet is "+XX" with
 * two upper-case hex digits.
 *
 * dsn_xtext_encode appends the encoding of s[0..len) to out_r. Returns 0 or
 * -ENOBUFS (out_r unchanged).
 *
 * dsn_xtext_decode appends the decoding of s[0..len) to out_r. Returns 0,
 * -EINVAL for text that is not xtext ('+' not followed by two hex digits,
 * a raw '=', an octet outside '!'..'~'), or -ENOBUFS; out_r unchanged on
 * error. Lower-case hex digits are taken, as Postfix and Sendmail take them.
 * The result may hold any octet, NUL and CR included: the caller decides
 * what it accepts (an ORCPT or ENVID with control characters should be
 * refused with 501).
 */
int dsn_xtext_encode(const char *s, size_t len, struct buf *out_r);
int dsn_xtext_decode(const char *s, size_t len, struct buf *out_r);

#endif
