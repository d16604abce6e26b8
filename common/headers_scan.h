/*
 * headers_scan.h — the header section of a message that streams by in
 * pieces (struct headers_scan): where it ends, whether an empty line ended
 * it, the Received: fields, whether Date: and Message-ID: are there. The
 * SMTP session reads DATA with it (smtpd/headers.h asks the same questions
 * of a whole message, by the same rules); delivery asks it where a section
 * lacks its empty line (header_eoh.h).
 *
 * The rules are smtpd/headers.h's: line ends may be CRLF, a bare LF or a
 * bare CR; a field is "name:", name printable ASCII without ':', spaces or
 * tabs allowed before the colon, the colon within the line's first
 * HEADERS_LINE_MAX octets; a line starting with a space or a tab continues
 * a field. The section ends at the first empty line, at the first line
 * that is neither a field nor a continuation, or at the end of the bytes.
 *
 * Pure: bytes in, answers out, no allocation.
 */
#ifndef KOTAK_HEADERS_SCAN_H
#define KOTAK_HEADERS_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * RFC 5322 2.1.1: a line holds at most 998 octets, so a field's colon comes
 * within a line's first HEADERS_LINE_MAX octets; a line without one there
 * is no field. That bounds what a streaming reader must wait for before it
 * can tell a field from the first line of a body.
 */
#define HEADERS_LINE_MAX 998

/* The most octets a headers_scan leaves undecided (see settled, below). */
#define HEADERS_UNDECIDED_MAX (HEADERS_LINE_MAX - 1)

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

/* RFC 5322 ftext: printable ASCII but the colon, what a field name is made of. */
static inline bool headers_scan_is_ftext(unsigned char c)
{
    return c > 32 && c < 127 && c != ':';
}

#endif
