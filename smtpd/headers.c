/*
 * headers.c — the header section of a message, read in place; see headers.h
 * for the rules on line ends and on where the section stops.
 *
 * Every question walks the section the same way (next_line, then
 * classify), so that "where do the headers end" and "how many Received:
 * fields" can never disagree about a line.
 */
#include "headers.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

enum line_kind {
    LINE_EMPTY,    /* ends the section */
    LINE_FIELD,    /* starts a field */
    LINE_CONT,     /* continues the field above */
    LINE_NOTFIELD, /* neither: the body starts here */
};

/*
 * The line starting at msg[pos]: *text_len_r is its length without the line
 * end, and the return value is where the next line starts (len at the end).
 */
static size_t next_line(const char *msg, size_t len, size_t pos, size_t *text_len_r)
{
    size_t i = pos;
    while (i < len && msg[i] != '\n' && msg[i] != '\r')
        i++;
    *text_len_r = i - pos;
    if (i < len && msg[i] == '\r')
        i++;
    if (i < len && msg[i] == '\n')
        i++;
    return i;
}

/* What the line s[0..n) is; *name_len_r is the field name's length. */
static enum line_kind classify(const char *s, size_t n, size_t *name_len_r)
{
    if (n == 0)
        return LINE_EMPTY;
    if (s[0] == ' ' || s[0] == '\t')
        return LINE_CONT;
    size_t i = 0;
    /* RFC 5322 ftext: printable ASCII but the colon. */
    while (i < n && (unsigned char)s[i] > 32 && (unsigned char)s[i] < 127 && s[i] != ':')
        i++;
    size_t name_len = i;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) /* obs-optional */
        i++;
    if (name_len == 0 || i == n || s[i] != ':')
        return LINE_NOTFIELD;
    *name_len_r = name_len;
    return LINE_FIELD;
}

int headers_end(const char *msg, size_t len, size_t *hdr_len_r, size_t *body_r)
{
    size_t pos = 0, hdr_len = len, body = len;
    int found = 0;
    while (pos < len) {
        size_t n, name_len, next = next_line(msg, len, pos, &n);
        enum line_kind k = classify(msg + pos, n, &name_len);
        if (k == LINE_EMPTY) {
            hdr_len = pos;
            body = next;
            found = 1;
            break;
        }
        if (k == LINE_NOTFIELD) {
            hdr_len = body = pos;
            break;
        }
        pos = next;
    }
    if (hdr_len_r)
        *hdr_len_r = hdr_len;
    if (body_r)
        *body_r = body;
    return found;
}

/* Counts the fields named name, stopping once limit are found. */
static int count_fields(const char *msg, size_t len, const char *name, int limit)
{
    if (name == NULL || name[0] == '\0' || msg == NULL)
        return 0;
    size_t want = strlen(name), pos = 0;
    int count = 0;
    while (pos < len && count < limit) {
        size_t n, name_len = 0, next = next_line(msg, len, pos, &n);
        enum line_kind k = classify(msg + pos, n, &name_len);
        if (k == LINE_EMPTY || k == LINE_NOTFIELD)
            break;
        if (k == LINE_FIELD && name_len == want && strncasecmp(msg + pos, name, want) == 0)
            count++;
        pos = next;
    }
    return count;
}

int headers_count(const char *msg, size_t len, const char *name)
{
    return count_fields(msg, len, name, INT_MAX);
}

bool headers_has(const char *msg, size_t len, const char *name)
{
    return count_fields(msg, len, name, 1) > 0;
}

int headers_count_received(const char *msg, size_t len)
{
    return count_fields(msg, len, "Received", INT_MAX);
}
