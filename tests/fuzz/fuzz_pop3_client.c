/*
 * fuzz_pop3_client.c — what kotak import pop3 makes of a server's octets
 * (ctl/pop3_client.c): a hostile old server controls every one of them.
 *
 * Input: byte 0 seeds the piece sizes; the rest is what the server sends
 * after a +OK to RETR (the data, the final ".", whatever follows).
 * Properties:
 *   - the data decodes the same fed whole as fed in pieces (same result,
 *     same octets, same count consumed), and never past its buffer's max;
 *   - what it gives is never longer than what it consumed, and once the
 *     final line (".\r\n", or ".\n" from a server that ends lines with LF
 *     alone) is reached nothing after it is consumed;
 *   - the line parsers (status, listing, CAPA) read only inside the line,
 *     and a UIDL they call valid is RFC 1939's: 1 to 70 octets 0x21..0x7E;
 *   - the escaped text is printable ASCII, NUL-terminated, within its size.
 */
#include "fuzz.h"
#include "pop3_client.h"

#define OUT_MAX (64 * 1024)

/* Feeds p[0..n) in pieces (or whole when rng is NULL); the result of the last feed. */
static int decode(const uint8_t *p, size_t n, struct fuzz_rng *rng, struct buf *out,
                  size_t *used_r)
{
    struct pop3c_data d;
    pop3c_data_init(&d);
    size_t at = 0;
    int rc = 0;
    while (at < n) {
        size_t piece = rng != NULL ? fuzz_piece(rng, n - at) : n - at;
        size_t used = 0;
        rc = pop3c_data_feed(&d, p + at, piece, out, &used);
        FUZZ_CHECK(used <= piece, "consumed %zu of a piece of %zu", used, piece);
        at += used;
        if (rc != 0)
            break;
        FUZZ_CHECK(used == piece, "more needed, yet %zu of %zu left unread", piece - used, piece);
    }
    *used_r = at;
    return rc;
}

static bool uidl_ok(const char *s, size_t len)
{
    if (len < 1 || len > 70)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct fuzz_rng rng;
    fuzz_rng_init(&rng, data[0]);
    const uint8_t *p = data + 1;
    size_t n = size - 1;

    struct buf whole, pieces;
    buf_init(&whole, OUT_MAX);
    buf_init(&pieces, OUT_MAX);
    size_t used_whole, used_pieces;
    int rc_whole = decode(p, n, NULL, &whole, &used_whole);
    int rc_pieces = decode(p, n, &rng, &pieces, &used_pieces);
    FUZZ_CHECK(rc_whole == rc_pieces, "whole %d, in pieces %d", rc_whole, rc_pieces);
    if (rc_whole >= 0) {
        FUZZ_CHECK(used_whole == used_pieces, "consumed %zu whole, %zu in pieces", used_whole,
                   used_pieces);
        FUZZ_CHECK(whole.len == pieces.len &&
                       (whole.len == 0 || memcmp(whole.data, pieces.data, whole.len) == 0),
                   "other octets in pieces");
    }
    FUZZ_CHECK(whole.len <= OUT_MAX && pieces.len <= OUT_MAX, "past the buffer's max");
    FUZZ_CHECK(whole.len <= used_whole, "gave %zu octets for %zu consumed", whole.len, used_whole);
    if (rc_whole == 1) /* ".\n" too: a server that ends its lines with LF alone */
        FUZZ_CHECK((used_whole >= 3 && memcmp(p + used_whole - 3, ".\r\n", 3) == 0) ||
                       (used_whole >= 2 && memcmp(p + used_whole - 2, ".\n", 2) == 0),
                   "ended without its final line");
    buf_free(&whole);
    buf_free(&pieces);

    struct pop3c_capa capa = {0};
    for (size_t start = 0; start <= n;) {
        const uint8_t *lf = start < n ? memchr(p + start, '\n', n - start) : NULL;
        size_t end = lf != NULL ? (size_t)(lf - p) : n;
        const char *line = (const char *)p + start;
        size_t len = end - start;
        const char *text, *rest;
        size_t text_len, rest_len;
        if (pop3c_status(line, len, &text, &text_len) >= 0)
            FUZZ_CHECK(text >= line && text + text_len <= line + len, "status text outside");
        uint64_t num;
        if (pop3c_listing_line(line, len, &num, &rest, &rest_len) == 0)
            FUZZ_CHECK(rest >= line && rest + rest_len <= line + len, "listing rest outside");
        FUZZ_CHECK(pop3c_uidl_valid(line, len) == uidl_ok(line, len), "UIDL rule differs");
        pop3c_capa_line(&capa, line, len);
        char esc[80];
        pop3c_escape(line, len, esc, sizeof(esc));
        size_t elen = strnlen(esc, sizeof(esc));
        FUZZ_CHECK(elen < sizeof(esc), "escaped text not NUL-terminated");
        for (size_t i = 0; i < elen; i++)
            FUZZ_CHECK(esc[i] >= 0x20 && esc[i] < 0x7f, "unprintable octet escaped through");
        if (lf == NULL)
            break;
        start = end + 1;
    }
    return 0;
}
