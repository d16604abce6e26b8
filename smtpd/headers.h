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
 * headers_scan, in common/headers_scan.h, which delivery uses too), which
 * the SMTP session uses in DATA for the same loop check and to learn where
 * submission adds a missing Date: or Message-ID:.
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
#include "headers_scan.h"

/* RFC 5321 6.3 leaves the figure to us; the issue sets it at 50. */
#define HEADERS_RECEIVED_MAX 50

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

/*
 * Writes t as an RFC 5322 3.3 date-time in UTC, "Tue, 14 Nov 2023 22:13:20
 * +0000", with English names whatever the locale: for Date:, Received:
 * and reports. Returns 0, or -EINVAL for a year before 1900 or after 9999.
 */
int headers_format_date(time_t t, char out[HEADERS_DATE_SIZE]);

#endif
