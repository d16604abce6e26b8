/*
 * log.c — key=value lines on stderr. Lines go out whole, one write(2) per
 * line or, buffered, whole lines of at most PIPE_BUF octets per write, so
 * lines of concurrent processes sharing the stream (as under `kotak run`)
 * do not interleave mid-line.
 */
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_threshold = LOG_INFO;

/* Threads of a daemon log too: the mode and the pending lines are shared. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static bool log_buffered;
static char pending[PIPE_BUF];
static size_t pending_len;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
    log_threshold = level;
}

int log_level_parse(const char *name, enum log_level *level_r)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level_r = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

static void write_all(const char *p, size_t n)
{
    ssize_t w;
    size_t off = 0;
    while (off < n && ((w = write(STDERR_FILENO, p + off, n - off)) > 0 || errno == EINTR))
        if (w > 0)
            off += (size_t)w;
}

static void flush_locked(void)
{
    write_all(pending, pending_len);
    pending_len = 0;
}

void log_flush(void)
{
    pthread_mutex_lock(&log_mu);
    flush_locked();
    pthread_mutex_unlock(&log_mu);
}

void log_set_buffered(bool on)
{
    static bool at_exit;
    pthread_mutex_lock(&log_mu);
    if (!on)
        flush_locked();
    log_buffered = on;
    pthread_mutex_unlock(&log_mu);
    if (on && !at_exit)
        at_exit = atexit(log_flush) == 0;
}

/* Writes "ts=...Z" for now into dst; the text is kept for the rest of the second. */
static size_t format_ts(char *dst, size_t size)
{
    static __thread time_t cached_sec = -1;
    static __thread char cached[32];
    static __thread size_t cached_len;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        cached_len = strftime(cached, sizeof(cached), "ts=%Y-%m-%dT%H:%M:%SZ", &tm);
        cached_sec = ts.tv_sec;
    }
    size_t n = cached_len < size ? cached_len : 0;
    memcpy(dst, cached, n);
    return n;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > log_threshold)
        return;
    char line[2048];
    size_t n = format_ts(line, sizeof(line));
    int k = snprintf(line + n, sizeof(line) - n, " level=%s ", level_names[level]);
    if (k > 0)
        n += (size_t)k;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (k > 0)
        n += (size_t)k;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2; /* a cut line still ends in LF */
    line[n++] = '\n';
    pthread_mutex_lock(&log_mu);
    if (!log_buffered) {
        write_all(line, n);
    } else {
        if (pending_len + n > sizeof(pending))
            flush_locked();
        memcpy(pending + pending_len, line, n); /* n <= 2048 < PIPE_BUF */
        pending_len += n;
    }
    pthread_mutex_unlock(&log_mu);
}

static bool plain_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';
}

char *log_value(char *dst, size_t dst_size, const char *src, size_t len)
{
    bool plain = len > 0;
    for (size_t i = 0; i < len && plain; i++)
        plain = plain_char((unsigned char)src[i]);
    if (plain && len < dst_size) {
        memcpy(dst, src, len);
        dst[len] = '\0';
        return dst;
    }
    /* Room kept at the end for `..."` and the NUL. */
    size_t end = dst_size - 5, o = 0;
    dst[o++] = '"';
    size_t i;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        char esc[5];
        size_t e;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            e = 2;
        } else if (c >= 0x20 && c < 0x7f) {
            esc[0] = (char)c;
            e = 1;
        } else {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            e = 4;
        }
        if (o + e > end)
            break;
        memcpy(dst + o, esc, e);
        o += e;
    }
    if (i < len) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o++] = '"';
    dst[o] = '\0';
    return dst;
}
