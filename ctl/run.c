/*
 * run.c — `kotak run`: both daemons in the foreground, for a demo or a
 * first try. Their log lines come out prefixed with the daemon's name;
 * Ctrl-C or SIGTERM stops both; when one dies, the other is stopped and
 * kotak run exits non-zero.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ctl.h"
#include "util.h"

#define LINE_MAX_KEPT 4096
#define DAEMON_PATH_MAX (PATH_MAX + 64)

struct child;

/* A daemon's stdout or stderr, read line by line. */
struct stream {
    uv_pipe_t pipe;
    struct child *k;
    char line[LINE_MAX_KEPT];
    size_t line_len;
};

struct child {
    const char *name; /* "smtpd", "pop3d" */
    char path[DAEMON_PATH_MAX];
    uv_process_t proc;
    struct stream out, err;
    bool running;
};

struct runner {
    struct child kids[2];
    uv_signal_t sigint, sigterm;
    bool stopping;
    bool failed; /* a daemon ended on its own */
};

static struct runner *the_runner;

/* The daemon's binary: beside kotak, in ../sbin (installed), in the build tree, or on PATH. */
static void find_daemon(const char *exe, struct child *k)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        *slash = '\0';
        snprintf(k->path, sizeof(k->path), "%s/%s", self, exe);
        if (access(k->path, X_OK) == 0)
            return;
        snprintf(k->path, sizeof(k->path), "%s/../sbin/%s", self, exe); /* /usr/bin/kotak */
        if (access(k->path, X_OK) == 0)
            return;
        snprintf(k->path, sizeof(k->path), "%s/../%s/%s", self, k->name, exe);
        if (access(k->path, X_OK) == 0)
            return;
    }
    snprintf(k->path, sizeof(k->path), "%s", exe); /* let the search of PATH find it */
}

static void stop_all(struct runner *r)
{
    r->stopping = true;
    for (int i = 0; i < 2; i++)
        if (r->kids[i].running)
            uv_process_kill(&r->kids[i].proc, SIGTERM);
}

static void flush_line(struct stream *st)
{
    if (st->line_len == 0)
        return;
    printf("%s | %.*s\n", st->k->name, (int)st->line_len, st->line);
    fflush(stdout);
    st->line_len = 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h, (void)suggested;
    static char buf[65536]; /* each read is used up before the next */
    *b = uv_buf_init(buf, sizeof(buf));
}

static void on_output(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct stream *st = s->data;
    if (n < 0) {
        flush_line(st);
        uv_close((uv_handle_t *)s, NULL);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (b->base[i] == '\n') {
            flush_line(st);
            continue;
        }
        if (st->line_len == sizeof(st->line))
            flush_line(st);
        st->line[st->line_len++] = b->base[i];
    }
}

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
    struct child *k = p->data;
    struct runner *r = the_runner;
    k->running = false;
    uv_close((uv_handle_t *)p, NULL);
    if (!r->stopping) {
        fprintf(stderr, "kotak: kotak-%s ended (status %lld, signal %d); stopping the other\n",
                k->name, (long long)status, term_signal);
        r->failed = true;
        stop_all(r);
    }
    if (!r->kids[0].running && !r->kids[1].running) {
        uv_close((uv_handle_t *)&r->sigint, NULL);
        uv_close((uv_handle_t *)&r->sigterm, NULL);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    struct runner *r = s->data;
    if (!r->stopping)
        fprintf(stderr, "kotak: stopping both daemons\n");
    stop_all(r);
}

static void stream_init(uv_loop_t *loop, struct stream *st, struct child *k)
{
    uv_pipe_init(loop, &st->pipe, 0);
    st->pipe.data = st;
    st->k = k;
}

static int spawn(uv_loop_t *loop, struct child *k, const char *config)
{
    char *args[] = {k->path, "-c", (char *)config, NULL};
    stream_init(loop, &k->out, k);
    stream_init(loop, &k->err, k);
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&k->out.pipe},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&k->err.pipe},
    };
    uv_process_options_t opt = {
        .file = k->path,
        .args = args,
        .exit_cb = on_exit_cb,
        .stdio_count = 3,
        .stdio = stdio,
    };
    k->proc.data = k;
    int rc = uv_spawn(loop, &k->proc, &opt);
    if (rc != 0) {
        uv_close((uv_handle_t *)&k->out.pipe, NULL);
        uv_close((uv_handle_t *)&k->err.pipe, NULL);
        uv_close((uv_handle_t *)&k->proc, NULL);
        return rc;
    }
    k->running = true;
    uv_read_start((uv_stream_t *)&k->out.pipe, alloc_cb, on_output);
    uv_read_start((uv_stream_t *)&k->err.pipe, alloc_cb, on_output);
    return 0;
}

int ctl_run(const struct ctl *c)
{
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc != 0) {
        if (help) {
            printf("usage: kotak [-c FILE] run\n\nRuns kotak-smtpd and kotak-pop3d in the "
                   "foreground with FILE; Ctrl-C stops both.\n");
            return 0;
        }
        ctl_die("usage: kotak [-c FILE] run");
    }
    struct conf conf;
    ctl_load_conf(c, &conf);
    struct store *s = ctl_open_store(&conf, true); /* a clear word now beats two from the daemons */
    store_close(&s);
    char config[PATH_MAX];
    if (realpath(conf.path, config) == NULL)
        ctl_die("cannot resolve %s: %s", conf.path, strerror(errno));

    struct runner r = {.kids = {{.name = "smtpd"}, {.name = "pop3d"}}};
    the_runner = &r;
    uv_loop_t *loop = uv_default_loop();
    signal(SIGPIPE, SIG_IGN);
    uv_signal_init(loop, &r.sigint);
    uv_signal_init(loop, &r.sigterm);
    r.sigint.data = r.sigterm.data = &r;
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    const char *const exes[] = {"kotak-smtpd", "kotak-pop3d"};
    for (int i = 0; i < 2; i++) {
        find_daemon(exes[i], &r.kids[i]);
        int rc = spawn(loop, &r.kids[i], config);
        if (rc != 0) {
            fprintf(stderr, "kotak: cannot start %s: %s; is kotak installed whole?\n",
                    r.kids[i].path, uv_strerror(rc));
            r.failed = true;
            stop_all(&r);
            if (!r.kids[0].running) {
                uv_close((uv_handle_t *)&r.sigint, NULL);
                uv_close((uv_handle_t *)&r.sigterm, NULL);
            }
            break;
        }
    }
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    conf_free(&conf);
    return r.failed ? 1 : 0;
}
