/*
 * buf.h — a bounded, growable byte buffer.
 *
 * Protocol bytes travel as (pointer, length); a buf holds them with a hard
 * ceiling (max) so that no peer can make kotak grow a buffer without end.
 * Every append checks the ceiling and fails with -ENOBUFS rather than grow
 * past it; the buffer is then unchanged.
 */
#ifndef KOTAK_BUF_H
#define KOTAK_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data;
    size_t len; /* bytes in use, from data[0] */
    size_t cap; /* bytes allocated */
    size_t max; /* the ceiling for len; 0 means SIZE_MAX */
};

/* An empty buffer that will never hold more than max bytes (0: no limit). */
void buf_init(struct buf *b, size_t max);

/* Frees the storage; the buffer is empty and may be used again. */
void buf_free(struct buf *b);

/* Empties the buffer and keeps its storage. */
void buf_reset(struct buf *b);

/*
 * Makes room for n more bytes. Returns 0, or -ENOBUFS when len + n would pass
 * max. Allocation failure aborts (xrealloc).
 */
int buf_reserve(struct buf *b, size_t n);

/* Appends n bytes from p. Returns 0 or -ENOBUFS (buffer unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);

/* Appends the NUL-terminated string s, without its NUL. */
int buf_append_str(struct buf *b, const char *s);

/*
 * Appends printf-formatted text, without a NUL. Returns 0 or -ENOBUFS
 * (buffer unchanged).
 */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);

/*
 * Appends printf-formatted text and CRLF: a whole protocol line or, with
 * -ENOBUFS, nothing at all.
 */
int buf_vprintf_crlf(struct buf *b, const char *fmt, va_list ap);

/* Drops the first n bytes (n <= len), moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);

/*
 * Returns the contents as a NUL-terminated string, valid until the next
 * change to the buffer. The NUL is written past len and is not counted
 * (it may take the one byte past max), so this never fails.
 */
const char *buf_cstr(struct buf *b);

#endif
