/*
 * rspamd.h — asks rspamd what to do with a message, before its final dot
 * is answered.
 *
 * rspamd's normal worker (port 11333) takes the message as the body of
 * "POST /checkv2" and the SMTP envelope in header fields (IP, Helo, From,
 * one Rcpt per recipient, User, Queue-Id), and answers with a JSON object
 * whose "action" says what the MTA should do. The message is read from the
 * spool in pieces, as the socket drains, never held whole. Whatever goes
 * wrong on the way (refused, timed out, an HTTP error, a reply that is no
 * such object) comes back as RSPAMD_UNREACHABLE with the reason, and the
 * caller applies [spam] rspamd_fail.
 *
 * The reply reader (rspamd_parse_reply) is pure, for tests and fuzzing.
 */
#ifndef KOTAK_RSPAMD_H
#define KOTAK_RSPAMD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

struct uv_loop_s; /* uv_loop_t */

/* The longest reply read; rspamd's lists of symbols stay far below it. */
#define RSPAMD_REPLY_MAX (1024 * 1024)
/* How deep the reply's objects and arrays may nest. */
#define RSPAMD_JSON_DEPTH 32

/* What rspamd's "action" says, and one more: no answer to go by. */
enum rspamd_action {
    RSPAMD_NO_ACTION,       /* "no action" (and actions kotak has no use for) */
    RSPAMD_GREYLIST,        /* "greylist": 451 */
    RSPAMD_ADD_HEADER,      /* "add header": X-Spam: Yes */
    RSPAMD_REWRITE_SUBJECT, /* "rewrite subject": X-Spam: Yes and the Subject: in subject */
    RSPAMD_SOFT_REJECT,     /* "soft reject": 451 */
    RSPAMD_REJECT,          /* "reject", also "discard" and "quarantine": 550 */
    RSPAMD_UNREACHABLE,     /* no usable answer: message says why */
};

struct rspamd_outcome {
    enum rspamd_action action;
    double score, required; /* "score", "required_score" */
    /* The new Subject: for RSPAMD_REWRITE_SUBJECT ("subject"), UTF-8 without
     * control characters; "" when rspamd gave none. */
    char subject[256];
    /* For RSPAMD_UNREACHABLE, why; else rspamd's "messages"."smtp_message"
     * when it gave one ("" when not), printable ASCII only, fit for a reply. */
    char message[160];
};

/* The transaction, as rspamd's request header fields carry it. Strings are copied. */
struct rspamd_request {
    const char *ip;   /* the client's address */
    const char *helo; /* "" or NULL when none */
    const char *from; /* MAIL FROM, "" for <> */
    const char *const *rcpts;
    size_t n_rcpts;
    const char *user;     /* the login, or NULL */
    const char *queue_id; /* or NULL */
    uint64_t size;        /* the message's octets */
    /* Reads the message: octets at off into p, at most n; 0 at its end, <0 on error. */
    ssize_t (*read)(void *ctx, uint64_t off, void *p, size_t n);
    void *read_ctx; /* valid until the callback, or rspamd_cancel */
};

struct rspamd;
struct rspamd_call;

/*
 * A client for rspamd at host:port (an IP address, or a name resolved here
 * once: start-up only, it may block). timeout_ms bounds each check, from
 * the connect to the last octet of the reply. Returns NULL with a sentence
 * in err.
 */
struct rspamd *rspamd_new(struct uv_loop_s *loop, const char *host, uint16_t port,
                          unsigned timeout_ms, char *err, size_t err_size);

/*
 * Frees *r and sets it to NULL; checks still running go on to their
 * callbacks (each holds what it needs). NULL is fine.
 */
void rspamd_free(struct rspamd **r);

/*
 * Sends one message. cb runs exactly once, on the loop, never inside this
 * call, unless rspamd_cancel comes first. Never returns NULL. The handle
 * is freed after cb returns: forget it then.
 */
struct rspamd_call *rspamd_check(struct rspamd *r, const struct rspamd_request *req,
                                 void (*cb)(void *ctx, const struct rspamd_outcome *o), void *ctx);

/* Abandons a check: cb never runs, read is not called again. Sets *c to NULL; NULL is fine. */
void rspamd_cancel(struct rspamd_call **c);

/*
 * Reads rspamd's JSON reply (pure). Returns 0 with *o filled in, or -EPROTO
 * with o->action RSPAMD_UNREACHABLE and o->message saying what was wrong:
 * not one JSON object, nested deeper than RSPAMD_JSON_DEPTH, or without a
 * string "action" or a number "score".
 */
int rspamd_parse_reply(const char *json, size_t len, struct rspamd_outcome *o);

/* The action's name as rspamd spells it ("add header"), or "unreachable". */
const char *rspamd_action_name(enum rspamd_action a);

/*
 * Appends to out the header fields that record an outcome, each ending
 * CRLF: "X-Spam: Yes" for add header and rewrite subject; then always
 * "X-Spam-Score: S" and "X-Spam-Status: Yes|No, score=S required=R,
 * action=NAME". Nothing for RSPAMD_UNREACHABLE. Returns 0 or -ENOBUFS
 * (out past its ceiling; what was appended stays).
 */
int rspamd_headers(const struct rspamd_outcome *o, struct buf *out);

#endif
