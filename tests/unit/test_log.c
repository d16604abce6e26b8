/*
 * test_log.c — log lines: their form, log_value's escaping, and buffering
 * (lines held until log_flush, whole lines of at most PIPE_BUF per write).
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"

static int log_pipe[2];

/* Reads what the log wrote so far (non-blocking) into buf; returns its length. */
static size_t drain(char *buf, size_t size)
{
    size_t n = 0;
    ssize_t r;
    while (n < size - 1 && (r = read(log_pipe[0], buf + n, size - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    return n;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

int main(void)
{
    static char got[64 * 1024];
    int saved = dup(STDERR_FILENO);
    if (pipe(log_pipe) < 0 || fcntl(log_pipe[0], F_SETFL, O_NONBLOCK) < 0 ||
        fcntl(log_pipe[1], F_SETPIPE_SZ, 1 << 20) < 0) {
        perror("pipe");
        return 1;
    }
    dup2(log_pipe[1], STDERR_FILENO);

    log_info("smtp event=started n=%d", 1);
    drain(got, sizeof(got));
    ok(strncmp(got, "ts=", 3) == 0 && strstr(got, "Z level=info smtp event=started n=1\n") != NULL,
       "a line: ts=... level=info, the text, LF");
    log_debug("hidden");
    is_int((int)drain(got, sizeof(got)), 0, "a line above the level is dropped");

    log_set_buffered(true);
    log_info("one");
    log_info("two");
    is_int((int)drain(got, sizeof(got)), 0, "buffered: nothing written before log_flush");
    log_flush();
    drain(got, sizeof(got));
    ok(count_lines(got) == 2 && strstr(got, "one\n") != NULL && strstr(got, "two\n") != NULL,
       "log_flush writes both lines, in order");
    ok(strstr(got, "one\n") < strstr(got, "two\n"), "... in the order logged");

    /* Lines of ~1000 octets: a write never passes PIPE_BUF and never cuts a line. */
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 10; i++)
        log_info("n=%d %s", i, big);
    size_t before_flush = drain(got, sizeof(got));
    ok(before_flush > 0 && got[before_flush - 1] == '\n' && count_lines(got) < 10,
       "a full buffer goes out by itself, in whole lines, the rest waits (%zu octets)",
       before_flush);
    log_set_buffered(false);
    size_t rest = drain(got + before_flush, sizeof(got) - before_flush);
    is_int((int)count_lines(got), 10, "turning buffering off writes the rest: all 10 lines");
    ok(rest > 0, "... some of them only then");
    log_info("after");
    drain(got, sizeof(got));
    ok(strstr(got, "after\n") != NULL, "unbuffered again: a line goes out at once");

    char v[32];
    is_str(log_value(v, sizeof(v), "plain", 5), "plain", "log_value: plain text as it is");
    is_str(log_value(v, sizeof(v), "a b\"c", 5), "\"a b\\\"c\"",
           "log_value: a space is quoted, a quote escaped");
    is_str(log_value(v, sizeof(v), "x\r\nevent=forged", 15), "\"x\\x0d\\x0aevent=forged\"",
           "log_value: CR LF cannot start a forged line");

    dup2(saved, STDERR_FILENO);
    return done_testing();
}
