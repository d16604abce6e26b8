/*
 * buf.c — bounded growable byte buffer; see buf.h for the contract.
 */
#include "buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : SIZE_MAX;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
}

/* Grows the storage to hold at least need bytes; max is the caller's check. */
static void grow(struct buf *b, size_t need)
{
    if (need <= b->cap)
        return;
    /* Doubling keeps appends amortised O(1); the ceiling bounds the waste. */
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->max != SIZE_MAX && cap > b->max + 1)
        cap = need > b->max + 1 ? need : b->max + 1; /* +1: buf_cstr's NUL */
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

int buf_reserve(struct buf *b, size_t n)
{
    if (n > b->max - b->len)
        return -ENOBUFS;
    grow(b, b->len + n);
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    int rc = buf_reserve(b, n);
    if (rc < 0)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    /* Formatted straight into the room the buffer has (at least
     * PRINTF_GUESS octets, as far as max allows): one pass for a reply or a
     * header line, a second only for longer text. One byte more than the
     * text is needed, for vsnprintf's NUL; it is not counted. */
    enum { PRINTF_GUESS = 128 };
    size_t room = b->max - b->len;
    grow(b, b->len + (room < PRINTF_GUESS ? room : PRINTF_GUESS) + 1);
    size_t avail = b->cap - b->len; /* at least 1 */
    if (avail - 1 > room)
        avail = room + 1;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf((char *)b->data + b->len, avail, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n > room)
        return -ENOBUFS;
    if ((size_t)n >= avail) {
        grow(b, b->len + (size_t)n + 1);
        vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    }
    b->len += (size_t)n;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int buf_vprintf_crlf(struct buf *b, const char *fmt, va_list ap)
{
    size_t before = b->len;
    int rc = buf_vprintf(b, fmt, ap);
    if (rc == 0 && (rc = buf_append(b, "\r\n", 2)) < 0)
        b->len = before;
    return rc;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

const char *buf_cstr(struct buf *b)
{
    /* The NUL is not content, so it may use the byte past max. */
    grow(b, b->len + 1);
    b->data[b->len] = '\0';
    return (const char *)b->data;
}
