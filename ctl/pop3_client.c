/*
 * pop3_client.c — the pure parts of the POP3 client of `kotak import pop3`
 * (see pop3_client.h). The glue (ctl/import_pop3.c) reads the socket and
 * hands the octets here; nothing here reads, writes or allocates but
 * through the bounded struct buf it is given, so a server that sends
 * without end costs the bound and no more.
 */
#include "pop3_client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum {
    DATA_BOL,   /* at the start of a line */
    DATA_DOT,   /* a line began with "." (taken off) */
    DATA_DOTCR, /* a line began with ".\r" */
    DATA_MID,   /* inside a line */
    DATA_END,   /* the final "." line was read */
};

void pop3c_data_init(struct pop3c_data *d)
{
    d->state = DATA_BOL;
}

int pop3c_data_feed(struct pop3c_data *d, const uint8_t *in, size_t n, struct buf *out,
                    size_t *consumed_r)
{
    size_t i = 0;
    int rc = 0;
    while (i < n && d->state != DATA_END) {
        uint8_t c = in[i];
        switch (d->state) {
        case DATA_BOL:
            if (c == '.') {
                d->state = DATA_DOT;
                i++;
            } else {
                d->state = DATA_MID; /* the same octet, as part of the line */
            }
            break;
        case DATA_DOT:
            if (c == '\r') {
                d->state = DATA_DOTCR;
                i++;
            } else if (c == '\n') {
                /* ".\n": a server that ends lines with LF alone ends the data so. */
                d->state = DATA_END;
                i++;
            } else {
                d->state = DATA_MID; /* a stuffed dot: the rest is the line */
            }
            break;
        case DATA_DOTCR:
            if (c == '\n') {
                d->state = DATA_END;
                i++;
            } else {
                /* "." CR and more: not the end; the dot was stuffing. */
                if ((rc = buf_append(out, "\r", 1)) < 0)
                    goto out;
                d->state = DATA_MID;
            }
            break;
        case DATA_MID: {
            const uint8_t *lf = memchr(in + i, '\n', n - i);
            size_t span = lf ? (size_t)(lf - (in + i)) + 1 : n - i;
            if ((rc = buf_append(out, in + i, span)) < 0)
                goto out;
            i += span;
            if (lf)
                d->state = DATA_BOL;
            break;
        }
        }
    }
    rc = d->state == DATA_END ? 1 : 0;
out:
    *consumed_r = i;
    return rc;
}

int pop3c_status(const char *line, size_t len, const char **text_r, size_t *text_len_r)
{
    int ok;
    size_t skip;
    if (len >= 3 && memcmp(line, "+OK", 3) == 0) {
        ok = 1;
        skip = 3;
    } else if (len >= 4 && memcmp(line, "-ERR", 4) == 0) {
        ok = 0;
        skip = 4;
    } else {
        *text_r = line;
        *text_len_r = len;
        return -1;
    }
    if (skip < len && line[skip] != ' ') { /* "+OKAY" is no status */
        *text_r = line;
        *text_len_r = len;
        return -1;
    }
    while (skip < len && line[skip] == ' ')
        skip++;
    *text_r = line + skip;
    *text_len_r = len - skip;
    return ok;
}

int pop3c_listing_line(const char *line, size_t len, uint64_t *num_r, const char **rest_r,
                       size_t *rest_len_r)
{
    size_t i = 0;
    uint64_t num = 0;
    while (i < len && line[i] >= '0' && line[i] <= '9') {
        if (num > (UINT64_MAX - 9) / 10)
            return -1;
        num = num * 10 + (uint64_t)(line[i] - '0');
        i++;
    }
    if (i == 0 || num == 0 || i >= len || line[i] != ' ')
        return -1;
    while (i < len && line[i] == ' ')
        i++;
    size_t end = len;
    while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\t'))
        end--;
    if (end == i)
        return -1;
    *num_r = num;
    *rest_r = line + i;
    *rest_len_r = end - i;
    return 0;
}

bool pop3c_uidl_valid(const char *s, size_t len)
{
    if (len < 1 || len > POP3C_UIDL_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* The first word of a line, and whether it is w (any case). */
static bool word_is(const char *line, size_t len, const char *w)
{
    size_t wl = strlen(w);
    return len >= wl && strncasecmp(line, w, wl) == 0 && (len == wl || line[wl] == ' ');
}

void pop3c_capa_line(struct pop3c_capa *capa, const char *line, size_t len)
{
    if (word_is(line, len, "STLS"))
        capa->stls = true;
    else if (word_is(line, len, "UIDL"))
        capa->uidl = true;
    else if (word_is(line, len, "USER"))
        capa->user = true;
    else if (word_is(line, len, "PIPELINING"))
        capa->pipelining = true;
    else if (word_is(line, len, "SASL")) {
        /* "SASL PLAIN LOGIN": each mechanism a word after the first. */
        size_t i = 4;
        while (i < len) {
            while (i < len && line[i] == ' ')
                i++;
            size_t start = i;
            while (i < len && line[i] != ' ')
                i++;
            if (i - start == 5 && strncasecmp(line + start, "PLAIN", 5) == 0)
                capa->sasl_plain = true;
        }
    }
}

char *pop3c_escape(const char *s, size_t len, char *dst, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t out = 0;
    if (size < 4) {
        if (size > 0)
            dst[0] = '\0';
        return dst;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = c >= 0x20 && c < 0x7f && c != '\\' ? 1 : (c == '\\' ? 2 : 4);
        if (out + need + 4 > size) { /* room for "..." and the NUL */
            memcpy(dst + out, "...", 3);
            out += 3;
            break;
        }
        if (need == 1) {
            dst[out++] = (char)c;
        } else if (need == 2) {
            dst[out++] = '\\';
            dst[out++] = '\\';
        } else {
            dst[out++] = '\\';
            dst[out++] = 'x';
            dst[out++] = hex[c >> 4];
            dst[out++] = hex[c & 15];
        }
    }
    dst[out] = '\0';
    return dst;
}
