/*
 * watch.c — `kotak watch`: every SMTP and POP3 session as it happens, in
 * the terminal, the way swaks prints a conversation: "->" the client,
 * "<-" the server, "~>" and "<~" inside TLS. Passwords never reach it: the
 * daemons replace them before an event exists (common/watch_text.c).
 *
 * It reads the daemons' rings (common/watch.h) in the data folder, so it
 * needs the rights the daemons have there, and keeps telling them someone
 * watches: they record nothing otherwise.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "annotate.h"
#include "ctl.h"
#include "util.h"
#include "watch.h"

static const char usage[] = "kotak watch [--history N] [--explain]";

#define POLL_MS 100
#define BATCH 256 /* events printed per poll at most, merged by time */

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

struct ring_view {
    const char *name; /* "smtp", "pop3" */
    char *path;
    struct watch_reader *r;
};

struct colours {
    const char *client, *server, *note, *frame, *dim, *flag, *off;
};

/* Writes text[0..len) with control characters and non-ASCII as \xNN. */
static void put_escaped(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c < 0x7f)
            putchar(c);
        else
            printf("\\x%02x", c);
    }
}

/*
 * The SMTP commands of each session that wait for their reply, so that a
 * reply can be checked against RFC 5321 4.3.2's list for its command
 * (pipelining sends several before the first reply).
 */
#define TRACK_SESSIONS 64
#define TRACK_VERBS 16

struct track {
    char session[24];
    uint64_t used;
    char verbs[TRACK_VERBS][12];
    unsigned head, n;
};

static struct track tracks[TRACK_SESSIONS];
static uint64_t track_tick;

static struct track *track_of(const char *session)
{
    struct track *t = &tracks[0];
    for (size_t i = 0; i < TRACK_SESSIONS; i++) {
        if (strcmp(tracks[i].session, session) == 0) {
            tracks[i].used = ++track_tick;
            return &tracks[i];
        }
        if (tracks[i].used < t->used)
            t = &tracks[i];
    }
    memset(t, 0, sizeof(*t)); /* the least recently seen session makes room */
    snprintf(t->session, sizeof(t->session), "%s", session);
    t->used = ++track_tick;
    return t;
}

static void track_push(struct track *t, const char *verb)
{
    if (t->n == TRACK_VERBS)
        return; /* more pipelined than we follow: the rest is not checked */
    snprintf(t->verbs[(t->head + t->n++) % TRACK_VERBS], sizeof(t->verbs[0]), "%s", verb);
}

/* The command a final reply line answers, or NULL when none waits. */
static const char *track_pop(struct track *t)
{
    if (t->n == 0)
        return NULL;
    const char *v = t->verbs[t->head];
    t->head = (t->head + 1) % TRACK_VERBS;
    t->n--;
    return v;
}

/* --explain: the note under a line, and a flag for a reply RFC 5321 4.3.2 does not list. */
static void explain(const struct watch_event *ev, const struct colours *col)
{
    char note[512] = "";
    struct track *t = ev->proto == WATCH_SMTP ? track_of(ev->session) : NULL;
    if (ev->kind == WATCH_OPEN && t != NULL) {
        t->n = 0;
        track_push(t, ""); /* the greeting */
    } else if (ev->kind == WATCH_CLIENT) {
        struct annotation a;
        if (annotate_command(ev->proto, ev->text, ev->len, &a))
            snprintf(note, sizeof(note), "%s: %s (%s)", a.ref, a.what, a.url);
        if (t != NULL) /* no command (a SASL response, a typo): nothing to check against */
            track_push(t, note[0] ? a.name : "?");
    } else if (ev->kind == WATCH_SERVER) {
        /* A reply of several lines is explained once, at its last line. */
        bool final = ev->proto == WATCH_POP3 || ev->len == 3 || (ev->len > 3 && ev->text[3] == ' ');
        if (final)
            annotate_reply(ev->proto, ev->text, ev->len, note, sizeof(note));
        const char *verb = t != NULL && final && note[0] ? track_pop(t) : NULL;
        if (verb != NULL) {
            int code = atoi(ev->text);
            if (!annotate_smtp_reply_listed(verb, code))
                printf("%s%*s! RFC 5321 4.3.2 lists no %d reply to %s%s\n", col->flag, 31, "",
                       code, verb[0] ? verb : "the greeting", col->off);
            if (code == 354)
                track_push(t, "DATA"); /* the message's end gets DATA's reply too */
        }
    }
    if (note[0])
        printf("%s%*s# %s%s\n", col->dim, 31, "", note, col->off);
}

static void print_event(const struct watch_event *ev, const struct colours *col)
{
    time_t t = (time_t)(ev->time_us / 1000000);
    struct tm tm;
    localtime_r(&t, &tm);
    printf("%02d:%02d:%02d.%03u %s ", tm.tm_hour, tm.tm_min, tm.tm_sec,
           (unsigned)(ev->time_us / 1000 % 1000), watch_proto_name(ev->proto));
    put_escaped(ev->session, strlen(ev->session)); /* the ring's word, not trusted either */
    printf("%*s ", strlen(ev->session) < 8 ? (int)(8 - strlen(ev->session)) : 0, "");
    const char *colour = col->note, *mark = "  .. ";
    switch (ev->kind) {
    case WATCH_CLIENT:
        colour = col->client;
        mark = ev->tls ? " ~> " : " -> ";
        break;
    case WATCH_SERVER:
        colour = col->server;
        mark = ev->tls ? "<~  " : "<-  ";
        break;
    case WATCH_OPEN:
    case WATCH_CLOSE:
    case WATCH_TLS:
        colour = col->frame;
        mark = "=== ";
        break;
    case WATCH_NOTE:
        break;
    case WATCH_MAIL:
        mark = "  ** ";
        break;
    }
    fputs(colour, stdout);
    fputs(mark, stdout);
    if (ev->kind == WATCH_TLS)
        fputs("TLS started: ", stdout);
    put_escaped(ev->text, ev->len);
    if (ev->cut)
        fputs(" [...]", stdout);
    fputs(col->off, stdout);
    putchar('\n');
}

/* Opens the rings not open yet; says once that a daemon has not written one. */
static void open_rings(struct ring_view *v, size_t n, size_t history, bool *told)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i].r != NULL)
            continue;
        char err[512];
        if (access(v[i].path, F_OK) != 0 && errno == ENOENT)
            continue; /* that daemon has not run with the view on yet */
        v[i].r = watch_reader_open(v[i].path, 0, history, err, sizeof(err));
        if (v[i].r == NULL && !told[i]) {
            fprintf(stderr, "kotak: %s\n", err);
            told[i] = true;
        }
        if (v[i].r != NULL)
            watch_reader_keepalive(v[i].r);
    }
}

static int by_time(const void *a, const void *b)
{
    const struct watch_event *x = a, *y = b;
    if (x->time_us != y->time_us)
        return x->time_us < y->time_us ? -1 : 1;
    if (x->proto != y->proto)
        return x->proto < y->proto ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq; /* one ring's order stays */
}

int ctl_watch(const struct ctl *c)
{
    bool help = ctl_wants_help(c->argc, c->argv);
    size_t history = 50;
    bool explaining = false;
    if (help)
        ctl_usage(usage, true);
    for (int i = 0; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--explain") == 0) {
            explaining = true;
        } else if (strcmp(c->argv[i], "--history") == 0 && i + 1 < c->argc) {
            char *end;
            errno = 0;
            unsigned long h = strtoul(c->argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || c->argv[i][0] == '\0' || h > WATCH_SLOTS)
                ctl_die("--history '%s' is not a count of events; give 0 to %d", c->argv[i],
                        WATCH_SLOTS);
            history = h;
        } else {
            ctl_usage(usage, false);
        }
    }
    struct conf conf;
    ctl_load_conf(c, &conf);
    if (conf.web_listen.n == 0)
        ctl_die("the live view is off: set [web] listen in %s (kotak init writes "
                "127.0.0.1:2080)",
                conf.path != NULL ? conf.path : "the config");
    char *data_dir = conf_path(&conf, conf.data_dir);
    static const char *const names[2] = {"smtp", "pop3"};
    struct ring_view v[2];
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(data_dir) + strlen(WATCH_DIR) + 16;
        v[i] = (struct ring_view){.name = names[i], .path = xmalloc(n)};
        snprintf(v[i].path, n, "%s/%s/%s.ring", data_dir, WATCH_DIR, names[i]);
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_DFL);

    bool colour = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
    struct colours col = colour ? (struct colours){"\033[32m", "\033[36m", "\033[33m", "\033[1m",
                                                   "\033[2m", "\033[31m", "\033[0m"}
                                : (struct colours){"", "", "", "", "", "", ""};
    bool told[2] = {false, false};
    struct watch_event *batch = xcalloc(BATCH, sizeof(*batch));
    open_rings(v, 2, history, told); /* the daemons record from here on */
    printf("watching %s: smtp %s, pop3 %s (Ctrl-C ends)\n", data_dir,
           v[0].r ? "on" : "not started yet", v[1].r ? "on" : "not started yet");
    fflush(stdout);
    uint64_t ticks = 1;
    while (!stop) {
        if (ticks++ % (1000 / POLL_MS) == 0) { /* once a second */
            open_rings(v, 2, history, told);
            for (size_t i = 0; i < 2; i++)
                if (v[i].r != NULL)
                    watch_reader_keepalive(v[i].r);
        }
        size_t n = 0;
        for (size_t i = 0; i < 2 && n < BATCH; i++) {
            while (v[i].r != NULL && n < BATCH) {
                long rc = watch_reader_next(v[i].r, &batch[n]);
                if (rc == 0)
                    break;
                if (rc < 0) {
                    printf("%s=== %ld %s events missed: this view fell behind%s\n", col.note, -rc,
                           v[i].name, col.off);
                    continue;
                }
                n++;
            }
        }
        qsort(batch, n, sizeof(*batch), by_time);
        for (size_t i = 0; i < n; i++) {
            print_event(&batch[i], &col);
            if (explaining)
                explain(&batch[i], &col);
        }
        if (n > 0 && fflush(stdout) != 0)
            break; /* the reader of our output went away */
        if (n < BATCH) {
            struct timespec ts = {0, POLL_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    for (size_t i = 0; i < 2; i++) {
        watch_reader_close(&v[i].r);
        free(v[i].path);
    }
    free(batch);
    free(data_dir);
    conf_free(&conf);
    return 0;
}
