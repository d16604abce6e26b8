/*
 * header_eoh.c — where a header section lacks its ending empty line; see
 * header_eoh.h.
 *
 * The section is read by headers_scan (headers_scan.c), the reader of the
 * SMTP session, so that a message read in pieces costs nothing past its
 * header section and the whole-message question is the same scan fed
 * once. The unit test holds both to headers_end's answers.
 */
#include "header_eoh.h"

void header_eoh_init(struct header_eoh *h)
{
    headers_scan_init(&h->scan);
    h->lf_last = false;
}

void header_eoh_feed(struct header_eoh *h, const void *p, size_t n)
{
    if (n == 0 || h->scan.done)
        return;
    headers_scan_feed(&h->scan, p, n);
    h->lf_last = ((const unsigned char *)p)[n - 1] == '\n';
}

uint64_t header_eoh_finish(struct header_eoh *h)
{
    headers_scan_finish(&h->scan);
    if (h->scan.empty_line)
        return UINT64_MAX; /* the empty line is there */
    /* The section ran to the end of the bytes: fields only, each ended, take the
     * empty line last; bytes that end inside a header line, or on a bare CR, are
     * left alone. Otherwise a line that is no field starts the body. */
    if (h->scan.end == h->scan.fed && h->scan.fed > 0 && !h->lf_last)
        return UINT64_MAX;
    return h->scan.end;
}

size_t header_eoh_missing(const void *msg, size_t len)
{
    struct header_eoh h;
    header_eoh_init(&h);
    header_eoh_feed(&h, msg, len);
    uint64_t at = header_eoh_finish(&h);
    return at == UINT64_MAX ? SIZE_MAX : (size_t)at;
}
