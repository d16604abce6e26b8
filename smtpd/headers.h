/*
 * headers.h — questions about a message's header section (RFC 5322 2.2),
 * asked of its bytes: where the section ends, whether a field is there, how
 * many times.
 *
 * Pure: bytes in, answers out, no allocation. Two ways to ask: of a whole
 * message in memory (headers_end, headers_count, ...), which the outbound
 * queue asks before relaying (more than HEADERS_RECEIVED_MAX Received:
 * fields is a loop) and the DSN builder uses to return the header section
 * to the sender; or of a message streaming by in pieces (struct
 * headers_scan), which the SMTP session uses in DATA for the same loop
 * check and to learn where submission adds a missing Date: or Message-ID:.
 * Both read every line the same way, and agree on every input however it
 * is split.
 *
 * Line ends may be CRLF, a bare LF or a bare CR, each counted as one line
 * end, as Python's email package and most mail readers do. The header
 * section ends at the first empty line, or at the first line that is
 * neither a field ("name:", where name is printable ASCII without ':',
 * optionally followed by spaces or tabs before the colon as RFC 5322's
 * obsolete syntax allows, the colon within the line's first
 * HEADERS_LINE_MAX octets) nor the continuation of one (a line starting
 * with a space or a tab), or at the end of the bytes given. A line that is
 * no field starts the body: that is what mail readers make of a message
 * sent without headers, or of a header section its writer broke off.
 */
#ifndef KOTAK_HEADERS_H
#define KOTAK_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

/* RFC 5321 6.3 leaves the figure to us; the issue sets it at 50. */
#define HEADERS_RECEIVED_MAX 50

/*
 * RFC 5322 2.1.1: a line holds at most 998 octets, so a field's colon comes
 * within a line's first HEADERS_LINE_MAX octets; a line without one there
 * is no field. That bounds what a streaming reader must wait for before it
 * can tell a field from the first line of a body.
 */
#define HEADERS_LINE_MAX 998

/* The most octets a headers_scan leaves undecided (see settled, below). */
#define HEADERS_UNDECIDED_MAX (HEADERS_LINE_MAX - 1)

/* Room for "Tue, 14 Nov 2023 22:13:20 +0000" and its NUL. */
#define HEADERS_DATE_SIZE 40

/*
 * Finds the end of the header section of msg[0..len). *hdr_len_r is the
 * length of the section, with the line end of its last line, without the
 * empty line; *body_r is where the body starts (after the empty line, or at
 * the first line that is not a field, or len). Either pointer may be NULL.
 * Returns 1 when an empty line ended the section, 0 when it did not (a line
 * that is not a field, or the end of the bytes: a message with no body, or
 * a prefix too short to hold the whole section). Reads only msg[0..len).
 */
int headers_end(const char *msg, size_t len, size_t *hdr_len_r, size_t *body_r);

/*
 * The number of fields named name (ASCII, no colon, compared without regard
 * to case) in the header section of msg[0..len). A folded field counts once;
 * a body line that looks like a field counts not at all. Saturates at
 * INT_MAX. Returns 0 for an empty or NULL name.
 */
int headers_count(const char *msg, size_t len, const char *name);

/* True when the header section of msg[0..len) has a field named name. */
bool headers_has(const char *msg, size_t len, const char *name);

/*
 * The number of Received: fields in the header section of msg[0..len); a
 * count above HEADERS_RECEIVED_MAX means the message is looping.
 */
int headers_count_received(const char *msg, size_t len);

/* One field of a header section: [offset, offset + len) with its
 * continuation lines and line end; its value (after the colon) from value. */
struct headers_place {
    uint64_t offset, len, value;
};

/*
 * The fields named name (compared without regard to case) in msg[0..len)
 * up to its first empty line, in order, in *fields_r (the caller frees it;
 * NULL when there are none). Returns how many. Unlike the questions above,
 * this one reads on past a line that is no field (and belongs to no
 * field) to the empty line: it finds what must be taken out of a message,
 * and some mail readers show fields below such a line.
 */
size_t headers_fields_named(const char *msg, size_t len, const char *name,
                            struct headers_place **fields_r);

/*
 * Appends "name: text" and CRLF to b. Text that is all printable ASCII goes
 * as it is (at most 900 octets of it); other text (UTF-8) as RFC 2047
 * encoded words, base64, on continuation lines under 78 octets, no UTF-8
 * sequence split between two words. Control characters never get in.
 */
void headers_put_text_field(struct buf *b, const char *name, const char *text);

/* --- the same questions, of a message streaming by ----------------------- */

/* Fields a headers_scan looks out for, in its seen bits. */
enum headers_field {
    HEADERS_DATE = 1 << 0,       /* Date: */
    HEADERS_MESSAGE_ID = 1 << 1, /* Message-ID: */
};

/*
 * A reader of the header section of a message that arrives in pieces split
 * anywhere, a line end included: it keeps no copy of the bytes, only a few
 * of the current line's name, and stops reading at the end of the section,
 * so a huge body costs nothing. Offsets count octets from the first fed.
 *
 * A line's first octets cannot always say whether the section goes on: in
 * "Subject" the colon may follow, in "Subject line" it will not. Those
 * octets, [settled, fed), are undecided: a caller that must act where the
 * section ends (to add a field there) holds them back until the scan
 * decides. They are at most HEADERS_UNDECIDED_MAX, all in one line.
 */
struct headers_scan {
    /* For the caller to read. */
    bool done;        /* the end of the section is known */
    bool empty_line;  /* done: an empty line ended it (headers_end's 1) */
    uint64_t end;     /* done: where the section ends, as headers_end's *hdr_len_r */
    uint64_t settled; /* the octets before this offset are inside the section */
    int received;     /* Received: fields so far (saturates at INT_MAX) */
    unsigned seen;    /* enum headers_field bits of the fields seen so far */
    uint64_t fed;     /* octets read: all fed, or up to the octet that ended the section */
    /* The scan's own. */
    int state;
    uint64_t line;     /* where the current line starts */
    unsigned name_len; /* octets of the current line's field name so far (capped) */
    char name[10];     /* their start, lower-cased: enough for "message-id" */
};

/* Starts a scan of a new message. */
void headers_scan_init(struct headers_scan *sc);

/*
 * Reads the next piece of the message, p[0..n). Returns the number of its
 * octets read: n, or fewer when the section ended inside the piece (the
 * rest is body, never looked at), 0 once done. The fields the scan sets
 * are up to date on return.
 */
size_t headers_scan_feed(struct headers_scan *sc, const char *p, size_t n);

/*
 * The message ends here. Decides an undecided last line (no colon came: it
 * is no field, and the section ends where it starts); otherwise the section
 * runs to the end of the bytes. Afterwards done is true.
 */
void headers_scan_finish(struct headers_scan *sc);

/*
 * Writes t as an RFC 5322 3.3 date-time in UTC, "Tue, 14 Nov 2023 22:13:20
 * +0000", with English names whatever the locale: for Date:, Received:
 * and reports. Returns 0, or -EINVAL for a year before 1900 or after 9999.
 */
int headers_format_date(time_t t, char out[HEADERS_DATE_SIZE]);

#endif
