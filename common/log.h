/*
 * log.h — one `key=value` line per event, on stderr.
 *
 * Lines look like `ts=2026-11-22T02:00:00Z level=info smtp session=3f2a1c
 * event=accepted`: easy to grep, easy to load into anything. Values that come
 * from the network go through log_value() so that a peer cannot forge a
 * field or a line.
 */
#ifndef KOTAK_LOG_H
#define KOTAK_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Lines above level are dropped. Default: LOG_INFO. */
void log_set_level(enum log_level level);

/* "error", "warn", "info" or "debug" to a level. Returns 0 or -EINVAL. */
int log_level_parse(const char *name, enum log_level *level_r);

/* Writes one line: ts=... level=... then the formatted text, then LF. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Buffered (the daemons): lines wait until log_flush(), which the daemon's
 * loop calls each time before it waits for I/O, at exit, or until the next
 * line would not fit in PIPE_BUF octets. A busy turn of the loop then costs
 * one write(2) instead of one per line. Turning it off flushes.
 */
void log_set_buffered(bool on);
void log_flush(void);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/*
 * Writes src[0..len) into dst as a safe log value, NUL-terminated: as it is
 * when it holds only plain printable characters, else in double quotes with
 * `"` and `\` escaped and every other byte outside 0x21..0x7e as \xNN. A value
 * that does not fit is cut and ends in "..." (inside the quotes). dst_size
 * must be at least 8. Returns dst, for use inside a log_msg argument list.
 */
char *log_value(char *dst, size_t dst_size, const char *src, size_t len);

#endif
