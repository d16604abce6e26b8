/*
 * progress.c — the progress bar that `kotak import mbox|maildir|pop3` and
 * `kotak export` share (see progress.h).
 */
#include "progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void progress_start(struct progress *p, const char *verb, uint64_t msgs, uint64_t bytes)
{
    *p = (struct progress){.tty = isatty(2) == 1,
                           .verb = verb,
                           .total_msgs = msgs,
                           .total_bytes = bytes,
                           .start = mono_ms()};
}

static void human(uint64_t n, char *out, size_t size)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void progress_draw(struct progress *p, bool last)
{
    if (!p->tty)
        return;
    int64_t now = mono_ms();
    if (!last && now - p->last < 100)
        return;
    p->last = now;
    if (p->before_write != NULL)
        p->before_write(p->ctx);
    double secs = (double)(now - p->start) / 1000.0;
    double rate = secs > 0 ? (double)p->done_msgs / secs : 0;
    double frac = p->total_bytes ? (double)p->done_bytes / (double)p->total_bytes
                  : p->total_msgs ? (double)p->done_msgs / (double)p->total_msgs
                                  : 1;
    if (frac > 1)
        frac = 1;
    char bar[21], done[32], left[32] = "--:--";
    int fill = (int)(frac * 20);
    for (int i = 0; i < 20; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[20] = '\0';
    human(p->done_bytes, done, sizeof(done));
    if (frac > 0.001 && secs > 0.5) {
        long rest = (long)(secs / frac - secs);
        snprintf(left, sizeof(left), "%ld:%02ld", rest / 60, rest % 60);
    }
    char count[48];
    if (p->total_msgs)
        snprintf(count, sizeof(count), "%" PRIu64 "/%" PRIu64, p->done_msgs, p->total_msgs);
    else
        snprintf(count, sizeof(count), "%" PRIu64, p->done_msgs);
    fprintf(stderr, "\r%s [%s] %3d%% %s messages, %s, %.0f msg/s, %s left \033[K", p->verb, bar,
            (int)(frac * 100), count, done, rate, left);
    p->drawn = !last;
    if (last)
        fputc('\n', stderr);
}

void progress_break(struct progress *p)
{
    if (p->drawn && p->before_write != NULL)
        p->before_write(p->ctx);
    if (p->drawn)
        fputc('\n', stderr);
    p->drawn = false;
}
