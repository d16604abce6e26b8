/*
 * header_eoh.c — where a header section lacks its ending empty line; see
 * header_eoh.h.
 *
 * The rules are smtpd/headers.c's (its streaming headers_scan, less what
 * that one notes about field names), as a state machine over octets, so
 * that a message read in pieces costs nothing past its header section and
 * the whole-message question is the same machine fed once. The unit test
 * holds both to headers_end's answers.
 */
#include "header_eoh.h"

#include <string.h>

enum eoh_state {
    EOH_BOL,   /* at the start of a line */
    EOH_NAME,  /* in a field name: no colon yet */
    EOH_BLANK, /* spaces or tabs after a name: no colon yet */
    EOH_TEXT,  /* in a field or a continuation: reading to the line end */
    EOH_CR,    /* after a CR that ended a line: an LF may follow */
    EOH_DONE,
};

/* RFC 5322 ftext: printable ASCII but the colon. */
static bool is_ftext(unsigned char c)
{
    return c > 32 && c < 127 && c != ':';
}

static void decide(struct header_eoh *h, uint64_t at)
{
    h->done = true;
    h->at = at;
    h->state = EOH_DONE;
}

void header_eoh_init(struct header_eoh *h)
{
    memset(h, 0, sizeof(*h));
    h->state = EOH_BOL;
    h->at = UINT64_MAX;
}

void header_eoh_feed(struct header_eoh *h, const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t i = 0;
    while (i < n && h->state != EOH_DONE) {
        unsigned char c = s[i];
        switch (h->state) {
        case EOH_BOL:
            h->line = h->fed + i;
            if (c == '\r' || c == '\n') {
                decide(h, UINT64_MAX); /* the empty line is there */
            } else if (c == ' ' || c == '\t') {
                h->state = EOH_TEXT; /* a continuation */
                i++;
            } else if (!is_ftext(c)) {
                decide(h, h->line); /* no name: the body starts here, the empty line before it */
            } else {
                h->state = EOH_NAME;
                i++;
            }
            break;
        case EOH_NAME:
        case EOH_BLANK:
            if (c == ':') {
                h->state = EOH_TEXT;
                i++;
                break;
            }
            if (c == ' ' || c == '\t') {
                h->state = EOH_BLANK;
            } else if (h->state == EOH_BLANK || !is_ftext(c)) {
                decide(h, h->line); /* a line end or a stray octet before any colon */
                break;
            }
            i++;
            /* A colon from here on would be past the line's 998th octet. */
            if (h->fed + i - h->line >= HEADER_EOH_LINE_MAX)
                decide(h, h->line);
            break;
        case EOH_TEXT: {
            const unsigned char *lf = memchr(s + i, '\n', n - i);
            size_t stop = lf != NULL ? (size_t)(lf - s) : n;
            const unsigned char *cr = memchr(s + i, '\r', stop - i);
            if (cr != NULL) {
                i = (size_t)(cr - s) + 1;
                h->state = EOH_CR;
            } else if (lf != NULL) {
                i = stop + 1;
                h->state = EOH_BOL;
            } else {
                i = n;
            }
            break;
        }
        case EOH_CR:
            if (c == '\n')
                i++;
            h->state = EOH_BOL; /* a bare CR ended the line too */
            break;
        }
    }
    h->fed += n;
}

uint64_t header_eoh_finish(struct header_eoh *h)
{
    switch (h->state) {
    case EOH_DONE:
        return h->at;
    case EOH_NAME:
    case EOH_BLANK:
        decide(h, h->line); /* a name and no colon: no field, the body */
        break;
    case EOH_BOL:
        decide(h, h->fed); /* fields only, each ended: the empty line goes last */
        break;
    default:
        decide(h, UINT64_MAX); /* the bytes end inside a header line, or on a bare CR */
        break;
    }
    return h->at;
}

size_t header_eoh_missing(const void *msg, size_t len)
{
    struct header_eoh h;
    header_eoh_init(&h);
    header_eoh_feed(&h, msg, len);
    uint64_t at = header_eoh_finish(&h);
    return at == UINT64_MAX ? SIZE_MAX : (size_t)at;
}
