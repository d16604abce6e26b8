/*
 * headers.c — the header section of a message, read in place; see headers.h
 * for the rules on line ends and on where the section stops.
 *
 * Every question of a whole message walks the section the same way
 * (next_line, then classify), so that "where do the headers end" and "how
 * many Received: fields" can never disagree about a line. The streaming
 * scan (common/headers_scan.c) is the same rules as a state machine over octets,
 * for a message that arrives in pieces; the unit test and the headers fuzz
 * target hold the two to the same answers, however the bytes are split.
 */
#include "headers.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/base64.h>

#include "util.h"

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
    while (i < n && headers_scan_is_ftext((unsigned char)s[i]))
        i++;
    size_t name_len = i;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) /* obs-optional */
        i++;
    if (name_len == 0 || i == n || s[i] != ':' || i >= HEADERS_LINE_MAX)
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

size_t headers_fields_named(const char *msg, size_t len, const char *name,
                            struct headers_place **fields_r)
{
    struct headers_place *fields = NULL;
    size_t n = 0, cap = 0, want = strlen(name), pos = 0;
    bool in_match = false;
    while (pos < len) {
        size_t text, name_len = 0, next = next_line(msg, len, pos, &text);
        enum line_kind k = classify(msg + pos, text, &name_len);
        if (k == LINE_EMPTY)
            break;
        if (k == LINE_CONT && in_match) {
            fields[n - 1].len = next - fields[n - 1].offset;
        } else if (k == LINE_FIELD) {
            in_match = name_len == want && strncasecmp(msg + pos, name, want) == 0;
            if (in_match) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 4;
                    fields = xrealloc(fields, cap * sizeof(*fields));
                }
                const char *colon = memchr(msg + pos, ':', text);
                fields[n++] = (struct headers_place){pos, next - pos, (uint64_t)(colon - msg) + 1};
            }
        } else {
            in_match = false; /* a line that is no field belongs to none */
        }
        pos = next;
    }
    *fields_r = fields;
    return n;
}

void headers_put_text_field(struct buf *b, const char *name, const char *text)
{
    size_t n = strnlen(text, 900);
    bool plain = true;
    for (size_t i = 0; i < n && plain; i++)
        plain = (unsigned char)text[i] >= 0x20 && (unsigned char)text[i] < 0x7f;
    buf_printf(b, "%s:", name);
    if (plain) {
        buf_printf(b, " %.*s\r\n", (int)n, text);
        return;
    }
    for (size_t i = 0; i < n;) {
        /* 39 octets are 52 base64 characters, 64 with "=?UTF-8?B?" and "?=":
         * a line stays under 78 octets after "Subject: " too. */
        size_t k = n - i < 39 ? n - i : 39;
        while (k > 0 && i + k < n && ((unsigned char)text[i + k] & 0xc0) == 0x80)
            k--; /* back to the start of a UTF-8 sequence */
        if (k == 0)
            k = n - i < 39 ? n - i : 39; /* no sequence start: not UTF-8, cut anyway */
        unsigned char enc[64];
        size_t olen = 0;
        mbedtls_base64_encode(enc, sizeof(enc), &olen, (const unsigned char *)text + i, k);
        buf_printf(b, "%s=?UTF-8?B?%.*s?=", i == 0 ? " " : "\r\n ", (int)olen, enc);
        i += k;
    }
    buf_append_str(b, "\r\n");
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

int headers_format_date(time_t t, char out[HEADERS_DATE_SIZE])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    out[0] = '\0';
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year < 0 || tm.tm_year > 9999 - 1900)
        return -EINVAL;
    int n = snprintf(out, HEADERS_DATE_SIZE, "%s, %02d %s %04d %02d:%02d:%02d +0000",
                     days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
    if (n <= 0 || n >= HEADERS_DATE_SIZE) {
        out[0] = '\0';
        return -EINVAL;
    }
    return 0;
}
