/*
 * header_eoh.h — where a message's header section lacks the empty line that
 * should end it (RFC 5322 2.1: the header fields, then an empty line, then
 * the body), so that POP3 can supply one.
 *
 * Outlook Express and Netscape break on a message whose header section is
 * not ended by an empty line (Dovecot's pop3_client_workarounds =
 * oe-ns-eoh): a message that is header fields only, or one where a line
 * that is no field follows the fields directly. The store keeps such a
 * message as it came and records, when it is stored, the offset where
 * RETR and TOP insert CRLF; its maildrop entry's size counts those two
 * octets, so that LIST and STAT tell what RETR sends.
 *
 * A line is read as struct headers_scan reads it (headers_scan.h, the
 * rules of smtpd/headers.c's headers_end), so that both agree on where a
 * section ends. The section ends at the first empty line (nothing to supply), at the
 * first line that is neither a field nor a continuation (the empty line
 * goes before it), or at the end of the bytes after a line end (the empty
 * line goes at the end). An empty message gets it at 0. A message whose
 * bytes end inside a header line is left alone: RETR already ends that
 * line, and an empty line after it would take four octets, not two.
 *
 * Pure: bytes in, an offset out, no allocation. Two ways to ask: of a whole
 * message in memory (header_eoh_missing, for kotak import), or of one that
 * arrives in pieces (struct header_eoh, for delivery); both give the same
 * answer however the bytes are split.
 */
#ifndef KOTAK_HEADER_EOH_H
#define KOTAK_HEADER_EOH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "headers_scan.h"

/*
 * The offset in msg[0..len) where CRLF must be inserted to end the header
 * section, or SIZE_MAX when nothing is missing (an empty line ends it, or
 * the bytes end inside a header line). Reads only msg[0..len).
 */
size_t header_eoh_missing(const void *msg, size_t len);

/* The same question of a message read in pieces split anywhere. */
struct header_eoh {
    struct headers_scan scan;
    bool lf_last; /* the last octet read was an LF: the bytes end after a line end */
};

void header_eoh_init(struct header_eoh *h);

/* Reads the next piece p[0..n) of the message; nothing once the section's end is known. */
void header_eoh_feed(struct header_eoh *h, const void *p, size_t n);

/*
 * The message ended: the offset where CRLF must be inserted, or UINT64_MAX
 * when nothing is missing (header_eoh_missing's answer for the whole).
 */
uint64_t header_eoh_finish(struct header_eoh *h);

#endif
