/*
 * headers_scan.c — the header section of a message read in pieces, as a
 * state machine over octets; see headers_scan.h. smtpd/headers.c reads a
 * whole message by the same rules line by line; the unit tests and the
 * headers fuzz target hold the two to the same answers, however the bytes
 * are split.
 */
#include "headers_scan.h"

#include <limits.h>
#include <string.h>

enum scan_state {
    SCAN_BOL,   /* at the start of a line */
    SCAN_NAME,  /* in a field name: undecided */
    SCAN_BLANK, /* spaces or tabs after a name: undecided */
    SCAN_TEXT,  /* in a field or a continuation: reading to the line end */
    SCAN_CR,    /* after a CR that ended a line: an LF may follow */
    SCAN_DONE,
};

void headers_scan_init(struct headers_scan *sc)
{
    memset(sc, 0, sizeof(*sc));
    sc->state = SCAN_BOL;
}

/* The section ends where the current line starts. */
static void scan_end(struct headers_scan *sc, bool empty_line)
{
    sc->done = true;
    sc->empty_line = empty_line;
    sc->end = sc->settled = sc->line;
    sc->state = SCAN_DONE;
}

/* A colon closed the current line's name: a field; note it if it is one we look for. */
static void scan_field(struct headers_scan *sc)
{
    if (sc->name_len == 4 && memcmp(sc->name, "date", 4) == 0)
        sc->seen |= HEADERS_DATE;
    else if (sc->name_len == 10 && memcmp(sc->name, "message-id", 10) == 0)
        sc->seen |= HEADERS_MESSAGE_ID;
    else if (sc->name_len == 8 && memcmp(sc->name, "received", 8) == 0 && sc->received < INT_MAX)
        sc->received++;
    sc->state = SCAN_TEXT;
}

size_t headers_scan_feed(struct headers_scan *sc, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && sc->state != SCAN_DONE) {
        unsigned char c = (unsigned char)p[i];
        switch (sc->state) {
        case SCAN_BOL:
            sc->line = sc->fed + i;
            if (c == '\r' || c == '\n') {
                scan_end(sc, true);
                i++;
                continue;
            }
            if (c == ' ' || c == '\t') {
                sc->state = SCAN_TEXT; /* a continuation */
                i++;
                continue;
            }
            if (!headers_scan_is_ftext(c)) {
                scan_end(sc, false); /* no name: the body starts here */
                i++;
                continue;
            }
            sc->name_len = 0;
            sc->state = SCAN_NAME;
            continue; /* the same octet, as the name's first */
        case SCAN_NAME:
        case SCAN_BLANK:
            if (c == ':') {
                scan_field(sc);
                i++;
                continue;
            }
            if (sc->state == SCAN_NAME && headers_scan_is_ftext(c)) {
                if (sc->name_len < sizeof(sc->name))
                    sc->name[sc->name_len] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
                if (sc->name_len <= sizeof(sc->name))
                    sc->name_len++; /* past the buffer, "longer than any we look for" */
            } else if (c == ' ' || c == '\t') {
                sc->state = SCAN_BLANK;
            } else {
                scan_end(sc, false); /* a line end or a stray octet before any colon */
                i++;
                continue;
            }
            i++;
            /* A colon from here on would be past the line's 998th octet. */
            if (sc->fed + i - sc->line >= HEADERS_LINE_MAX)
                scan_end(sc, false);
            continue;
        case SCAN_TEXT: {
            /* The common case: skip to the line end many octets a step. */
            const char *lf = memchr(p + i, '\n', n - i);
            size_t stop = lf != NULL ? (size_t)(lf - p) : n;
            const char *cr = memchr(p + i, '\r', stop - i);
            if (cr != NULL) {
                i = (size_t)(cr - p) + 1;
                sc->state = SCAN_CR;
            } else if (lf != NULL) {
                i = stop + 1;
                sc->state = SCAN_BOL;
            } else {
                i = n;
            }
            continue;
        }
        case SCAN_CR:
            if (c == '\n')
                i++;
            sc->state = SCAN_BOL; /* a bare CR ended the line too: this octet starts the next */
            continue;
        }
    }
    sc->fed += i;
    if (sc->state == SCAN_NAME || sc->state == SCAN_BLANK)
        sc->settled = sc->line;
    else if (sc->state != SCAN_DONE)
        sc->settled = sc->fed;
    return i;
}

void headers_scan_finish(struct headers_scan *sc)
{
    if (sc->state == SCAN_DONE)
        return;
    if (sc->state == SCAN_NAME || sc->state == SCAN_BLANK) {
        scan_end(sc, false); /* a name and no colon: no field */
        return;
    }
    sc->line = sc->fed;
    scan_end(sc, false);
}
