/*
 * log.c — key=value lines on stderr. Writes go out whole with one write(2)
 * call per line, so lines of concurrent processes sharing the stream (as
 * under `kotak run`) do not interleave mid-line.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_threshold = LOG_INFO;

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

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > log_threshold)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%SZ", &tm);
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
    ssize_t w;
    size_t off = 0;
    while (off < n && ((w = write(STDERR_FILENO, line + off, n - off)) > 0 || errno == EINTR))
        if (w > 0)
            off += (size_t)w;
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
