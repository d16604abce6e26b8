/*
 * headers.h — questions about a message's header section (RFC 5322 2.2),
 * asked of its bytes: where the section ends, whether a field is there, how
 * many times.
 *
 * Pure: bytes in, answers out, no allocation. The outbound queue asks these
 * of a message before relaying it (more than HEADERS_RECEIVED_MAX Received:
 * fields is a loop), submission asks whether Date: and Message-ID: are
 * present, and the DSN builder takes the header section it returns to the
 * sender.
 *
 * Line ends may be CRLF, a bare LF or a bare CR, each counted as one line
 * end, as Python's email package and most mail readers do. The header
 * section ends at the first empty line, or at the first line that is
 * neither a field ("name:", where name is printable ASCII without ':',
 * optionally followed by spaces or tabs before the colon as RFC 5322's
 * obsolete syntax allows) nor the continuation of one (a line starting with
 * a space or a tab), or at the end of the bytes given.
 */
#ifndef KOTAK_HEADERS_H
#define KOTAK_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 5321 6.3 leaves the figure to us; the issue sets it at 50. */
#define HEADERS_RECEIVED_MAX 50

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

#endif
