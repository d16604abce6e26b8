/*
 * pop3_client.h — the pure parts of kotak's POP3 client (`kotak import
 * pop3`): the multi-line data of a reply, unstuffed and bounded; the lines
 * of UIDL and LIST; the capabilities of CAPA; RFC 1939's rule for a UIDL;
 * a server's text made safe to print. No I/O, no allocation but through a
 * struct buf the caller bounds.
 */
#ifndef KOTAK_POP3_CLIENT_H
#define KOTAK_POP3_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* RFC 2449 4: a reply line, with its CRLF, is at most 512 octets; room for more. */
#define POP3C_LINE_MAX 4096

/* RFC 1939 7: a unique-id is 1 to 70 octets in 0x21..0x7E. */
#define POP3C_UIDL_MAX 70

/*
 * The data of a multi-line reply (RFC 1939 3) after its status line: the
 * octets as the server sent them, a leading dot taken off each line that
 * had one (dot-unstuffing), CRLF kept, up to the line "." that ends it.
 */
struct pop3c_data {
    int state; /* where in a line the last octet left off */
};

/* Ready for the first octet of the data. */
void pop3c_data_init(struct pop3c_data *d);

/*
 * Decodes in[0..n) into out (whose max bounds the whole: a message larger
 * than it, or a line that never ends, fails there). *consumed_r says how
 * many octets were used. Returns 1 when the final "." line was reached
 * (octets after it are left unconsumed), 0 when all of in was used and more
 * is needed, or -ENOBUFS when out would pass its max.
 */
int pop3c_data_feed(struct pop3c_data *d, const uint8_t *in, size_t n, struct buf *out,
                    size_t *consumed_r);

/* A status line: 1 for "+OK", 0 for "-ERR", -1 for anything else. *text_r: what follows. */
int pop3c_status(const char *line, size_t len, const char **text_r, size_t *text_len_r);

/*
 * A line "N REST" of a UIDL or LIST listing (CRLF taken off): 0 with the
 * message number and REST (borrowed from line), or -1 when it is not one.
 */
int pop3c_listing_line(const char *line, size_t len, uint64_t *num_r, const char **rest_r,
                       size_t *rest_len_r);

/* Whether s[0..len) is a unique-id RFC 1939 7 allows. */
bool pop3c_uidl_valid(const char *s, size_t len);

/* What CAPA (RFC 2449) said, line by line. */
struct pop3c_capa {
    bool known;       /* CAPA answered +OK */
    bool stls, uidl, user, pipelining, sasl_plain;
};

/* Notes one line of CAPA's listing (CRLF taken off). */
void pop3c_capa_line(struct pop3c_capa *capa, const char *line, size_t len);

/*
 * A server's text for a one-line message: printable ASCII as it is, every
 * other octet as \xNN, cut (with "...") to fit dst. Returns dst.
 */
char *pop3c_escape(const char *s, size_t len, char *dst, size_t size);

#endif
