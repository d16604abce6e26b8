/*
 * pop3_load.c — a POP3 load generator on libuv.
 *
 * retr mode (the default): K users at once, one connection each: greeting,
 * USER, PASS, STAT, LIST, RETR of every message (with -w W, up to W RETRs in
 * flight: POP3 PIPELINING), QUIT. Nothing is deleted, so runs repeat. It
 * reports the messages and octets retrieved per second over the wall time
 * from the first connect to the last QUIT.
 *
 * login mode (-L SECONDS): K connections at once, each looping connect,
 * USER, PASS, QUIT (and the server's close) until the time is up; it reports
 * logins/s and the p50/p99 time from connect to the +OK after PASS. A
 * connection's next login waits for the server to close the last one, so
 * a server that locks the maildrop per session never sees two at once.
 *
 * Every login is plaintext USER/PASS: the tool is for loopback, where kotak
 * and Dovecot both allow it. Any -ERR makes the exit status non-zero.
 *
 * The end of a multi-line reply is found by scanning for CRLF.CRLF across
 * read boundaries; the octets between the status line and the terminator
 * are counted as retrieved (as sent, dot-stuffing included).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

const char *bench_prog = "pop3_load";

enum kind { K_GREETING, K_USER, K_PASS, K_STAT, K_LIST, K_RETR, K_QUIT };

enum phase { PH_STATUS, PH_BODY };

struct sess {
    struct bconn c;
    int id;
    struct bench_user *user;
    /* replies we wait for, in order */
    enum kind pending[64];
    int p_head, p_count;
    enum phase phase;
    struct bbuf line;
    char tail[4]; /* the last octets of the body seen, for CRLF.CRLF across reads */
    size_t tail_len;
    uint64_t body_bytes;
    long n_msgs, next_retr, retr_done;
    double t_connect;
    uv_timer_t pause; /* -z */
    bool quitting, failed;
};

static struct {
    struct bench_user *users;
    size_t n_users;
    int conns;
    int window;
    double login_seconds; /* 0: retr mode */
    double pause_after_login;
    struct sockaddr_storage dst;
    struct sockaddr_storage src; /* -b: connection i binds to src + i */
    bool have_src;
    size_t rbuf;
} opt = {.window = 1, .rbuf = 256 * 1024};

static struct {
    uv_loop_t *loop;
    double t_start, t_end, t_stop;
    long logins, login_failures, errors, retrieved;
    uint64_t bytes;
    double *lat;
    size_t n_lat, cap_lat;
    int active;
    int errors_shown;
} g;

static void sess_start(struct sess *s);

static void report_error(struct sess *s, const char *what, const char *line)
{
    g.errors++;
    s->failed = true;
    if (g.errors_shown++ < 10)
        fprintf(stderr, "pop3_load: %s: %s: %s\n", s->user->address, what, line ? line : "");
}

static void expect(struct sess *s, enum kind k)
{
    if (s->p_count == (int)(sizeof s->pending / sizeof s->pending[0]))
        bench_die("too many commands in flight");
    s->pending[(s->p_head + s->p_count) % 64] = k;
    s->p_count++;
}

static void send_cmd(struct sess *s, enum kind k, const char *fmt, const char *arg)
{
    char line[600];
    int n = snprintf(line, sizeof line, fmt, arg);
    if (n < 0 || (size_t)n >= sizeof line)
        bench_die("command too long");
    expect(s, k);
    bconn_write(&s->c, line, (size_t)n, false, NULL);
}

static void send_retrs(struct sess *s)
{
    char num[32];
    while (s->next_retr <= s->n_msgs && s->p_count < opt.window) {
        snprintf(num, sizeof num, "%ld", s->next_retr++);
        send_cmd(s, K_RETR, "RETR %s\r\n", num);
    }
    if (s->next_retr > s->n_msgs && s->p_count == 0 && !s->quitting) {
        s->quitting = true;
        send_cmd(s, K_QUIT, "QUIT\r\n", NULL);
    }
}

static void pause_closed(uv_handle_t *h)
{
    (void)h;
}

/* -z: the pause after login is over; on to STAT, LIST, RETR. */
static void pause_done(uv_timer_t *t)
{
    struct sess *s = t->data;
    uv_close((uv_handle_t *)t, pause_closed);
    if (!s->c.closing)
        send_cmd(s, K_STAT, "STAT\r\n", NULL);
}

static void record_latency(double v)
{
    if (g.n_lat == g.cap_lat) {
        g.cap_lat = g.cap_lat ? g.cap_lat * 2 : 1024;
        g.lat = bench_xrealloc(g.lat, g.cap_lat * sizeof(double));
    }
    g.lat[g.n_lat++] = v;
}

/* A status line arrived for the command at the head of the queue. Returns true when a
 * multi-line body follows. */
static bool on_status(struct sess *s, enum kind k, const char *line)
{
    bool ok = strncmp(line, "+OK", 3) == 0;
    if (!ok) {
        if (k == K_PASS)
            g.login_failures++;
        report_error(s, "refused", line);
        if (!s->quitting) {
            s->quitting = true;
            s->p_count = 0;
            send_cmd(s, K_QUIT, "QUIT\r\n", NULL);
        }
        return false;
    }
    switch (k) {
    case K_GREETING:
        send_cmd(s, K_USER, "USER %s\r\n", s->user->address);
        return false;
    case K_USER:
        send_cmd(s, K_PASS, "PASS %s\r\n", s->user->password);
        return false;
    case K_PASS:
        g.logins++;
        if (opt.login_seconds > 0) {
            record_latency(bench_now() - s->t_connect);
            s->quitting = true;
            send_cmd(s, K_QUIT, "QUIT\r\n", NULL);
        } else if (opt.pause_after_login > 0) {
            s->pause.data = s;
            uv_timer_init(g.loop, &s->pause);
            uv_timer_start(&s->pause, pause_done, (uint64_t)(opt.pause_after_login * 1000), 0);
        } else {
            send_cmd(s, K_STAT, "STAT\r\n", NULL);
        }
        return false;
    case K_STAT:
        s->n_msgs = strtol(line + 3, NULL, 10);
        send_cmd(s, K_LIST, "LIST\r\n", NULL);
        return false;
    case K_LIST:
    case K_RETR:
        return true;
    case K_QUIT:
        return false;
    }
    return false;
}

static void on_body_done(struct sess *s, enum kind k)
{
    if (k == K_RETR) {
        g.retrieved++;
        s->retr_done++;
    }
    if (k == K_LIST)
        s->next_retr = 1;
    send_retrs(s);
}

/* Scans body octets for CRLF.CRLF; returns how many of p belong to the body (with the
 * terminator), or n when it has not ended yet. *ended_r tells which. */
static size_t scan_body(struct sess *s, const char *p, size_t n, bool *ended_r)
{
    static const char term[] = "\r\n.\r\n";
    *ended_r = false;
    /* Across the boundary: the tail's octets followed by the first few of p. */
    if (s->tail_len > 0) {
        char joint[8];
        size_t from_p = n < 4 ? n : 4;
        memcpy(joint, s->tail, s->tail_len);
        memcpy(joint + s->tail_len, p, from_p);
        size_t jl = s->tail_len + from_p;
        for (size_t i = 0; i + 5 <= jl; i++) {
            if (i < s->tail_len && memcmp(joint + i, term, 5) == 0) {
                *ended_r = true;
                return i + 5 - s->tail_len;
            }
        }
    }
    const char *hit = memmem(p, n, term, 5);
    if (hit != NULL) {
        *ended_r = true;
        return (size_t)(hit - p) + 5;
    }
    /* Keep the last four octets seen (from the tail and p) for the next read. */
    char keep[8];
    size_t kl = 0;
    if (n >= 4) {
        memcpy(keep, p + n - 4, 4);
        kl = 4;
    } else {
        size_t from_tail = s->tail_len + n > 4 ? 4 - n : s->tail_len;
        memcpy(keep, s->tail + s->tail_len - from_tail, from_tail);
        memcpy(keep + from_tail, p, n);
        kl = from_tail + n;
    }
    memcpy(s->tail, keep, kl);
    s->tail_len = kl;
    return n;
}

static void on_data(struct bconn *c, const char *p, size_t n)
{
    struct sess *s = c->ctx;
    while (n > 0 && !c->closing) {
        if (s->p_count == 0) {
            report_error(s, "unexpected data", NULL);
            bconn_close(c);
            return;
        }
        enum kind k = s->pending[s->p_head];
        if (s->phase == PH_BODY) {
            bool ended;
            size_t used = scan_body(s, p, n, &ended);
            s->body_bytes += used;
            p += used;
            n -= used;
            if (!ended)
                return;
            if (k == K_RETR) /* the message as sent, without the final ".\r\n" */
                g.bytes += s->body_bytes >= 3 ? s->body_bytes - 3 : 0;
            s->phase = PH_STATUS;
            s->p_head = (s->p_head + 1) % 64;
            s->p_count--;
            on_body_done(s, k);
            continue;
        }
        if (bbuf_take_line(&s->line, &p, &n) < 0)
            return;
        bool multi = on_status(s, k, s->line.data);
        s->line.len = 0;
        if (multi) {
            s->phase = PH_BODY;
            /* The status line's CRLF counts as the CRLF before the terminator's dot. */
            memcpy(s->tail, "\r\n", 2);
            s->tail_len = 2;
            s->body_bytes = 0;
        } else if (s->p_count > 0 && s->pending[s->p_head] == k) {
            /* (on_status may have cleared the queue on an error.) After QUIT's +OK the
             * server closes; the next login starts from the close callback. */
            s->p_head = (s->p_head + 1) % 64;
            s->p_count--;
        }
    }
}

static void on_connected(struct bconn *c, int status)
{
    struct sess *s = c->ctx;
    if (status < 0) {
        report_error(s, "connect", uv_strerror(status));
        return;
    }
    expect(s, K_GREETING);
}

static void on_eof(struct bconn *c, int status)
{
    struct sess *s = c->ctx;
    if (!s->quitting || s->p_count > 0)
        report_error(s, "connection lost", uv_strerror(status));
}

static void on_closed(struct bconn *c)
{
    struct sess *s = c->ctx;
    bbuf_free(&s->line);
    if (opt.login_seconds > 0 && bench_now() < g.t_stop && !s->failed) {
        sess_start(s);
        return;
    }
    g.active--;
    if (g.active == 0)
        g.t_end = bench_now();
}

static const struct bconn_ops sess_ops = {
    .connected = on_connected,
    .data = on_data,
    .eof = on_eof,
    .closed = on_closed,
};

static void sess_start(struct sess *s)
{
    s->p_head = s->p_count = 0;
    s->phase = PH_STATUS;
    s->line = (struct bbuf){0};
    s->tail_len = 0;
    s->n_msgs = 0;
    s->next_retr = 1 << 30; /* no RETR before LIST */
    s->retr_done = 0;
    s->quitting = false;
    s->t_connect = bench_now();
    struct sockaddr_storage src;
    const struct sockaddr *srcp = NULL;
    if (opt.have_src) {
        bench_ip_add(&opt.src, (unsigned)s->id, &src);
        srcp = (const struct sockaddr *)&src;
    }
    int rc = bconn_connect(g.loop, &s->c, &sess_ops, s, (const struct sockaddr *)&opt.dst, srcp,
                           opt.rbuf);
    if (rc != 0) {
        report_error(s, "connect", uv_strerror(rc));
        g.active--;
        if (g.active == 0)
            g.t_end = bench_now();
    }
}

static void usage(int status)
{
    fprintf(status ? stderr : stdout,
            "usage: pop3_load [options] HOST:PORT\n"
            "  -u SPEC     users: user21-user40,alice (a name without @ gets -D's domain)\n"
            "  -D DOMAIN   domain for names without @ (example.test)\n"
            "  -p FMT      password; {n} is the name's number, {u} its local part (pass{n})\n"
            "  -k K        connections at once (default: one per user)\n"
            "  -w W        RETRs in flight per connection (1)\n"
            "  -L SECONDS  login mode: connect, USER, PASS, QUIT, again, for SECONDS\n"
            "  -z SECONDS  retr mode: pause this long after login (to read the server's memory)\n"
            "  -b IP       connection i binds to IP + i (127.0.0.2: one client address each)\n"
            "Prints one key=value line; exit status 0 only if nothing failed.\n");
    exit(status);
}

int main(int argc, char **argv)
{
    const char *spec = NULL, *domain = "example.test", *pass_fmt = "pass{n}";
    int ch;
    while ((ch = getopt(argc, argv, "u:D:p:k:w:L:z:b:h")) != -1) {
        switch (ch) {
        case 'u':
            spec = optarg;
            break;
        case 'D':
            domain = optarg;
            break;
        case 'p':
            pass_fmt = optarg;
            break;
        case 'k':
            opt.conns = atoi(optarg);
            break;
        case 'w':
            opt.window = atoi(optarg);
            break;
        case 'L':
            opt.login_seconds = atof(optarg);
            break;
        case 'z':
            opt.pause_after_login = atof(optarg);
            break;
        case 'b':
            if (bench_parse_ip(optarg, &opt.src) < 0)
                bench_die("-b %s: not an IP address", optarg);
            opt.have_src = true;
            break;
        case 'h':
            usage(0);
            break;
        default:
            usage(2);
        }
    }
    if (optind + 1 != argc || spec == NULL)
        usage(2);
    if (bench_parse_hostport(argv[optind], &opt.dst) < 0)
        bench_die("'%s' is not HOST:PORT", argv[optind]);
    opt.n_users = bench_users(spec, domain, pass_fmt, &opt.users);
    if (opt.n_users == 0)
        bench_die("-u: no user");
    if (opt.conns <= 0)
        opt.conns = (int)opt.n_users;
    if (opt.window < 1 || opt.window > 60)
        bench_die("-w: between 1 and 60");
    bench_raise_nofile(opt.conns * 2 + 64);

    g.loop = uv_default_loop();
    struct sess *ss = calloc((size_t)opt.conns, sizeof *ss);
    if (ss == NULL)
        abort();
    g.t_start = bench_now();
    g.t_stop = g.t_start + opt.login_seconds;
    g.active = opt.conns;
    for (int i = 0; i < opt.conns; i++) {
        ss[i].id = i;
        ss[i].user = &opt.users[(size_t)i % opt.n_users];
        sess_start(&ss[i]);
    }
    uv_run(g.loop, UV_RUN_DEFAULT);
    if (g.t_end == 0)
        g.t_end = bench_now();
    double secs = g.t_end - g.t_start;
    if (opt.login_seconds > 0) {
        double p50 = bench_percentile(g.lat, g.n_lat, 50) * 1000;
        double p99 = bench_percentile(g.lat, g.n_lat, 99) * 1000;
        printf("pop3_load mode=login conns=%d logins=%ld failures=%ld errors=%ld seconds=%.3f "
               "logins_per_s=%.1f latency_p50_ms=%.2f latency_p99_ms=%.2f\n",
               opt.conns, g.logins, g.login_failures, g.errors, secs,
               secs > 0 ? (double)g.logins / secs : 0, p50, p99);
    } else {
        printf("pop3_load mode=retr conns=%d window=%d logins=%ld messages=%ld bytes=%llu "
               "errors=%ld seconds=%.3f msgs_per_s=%.1f MB_per_s=%.2f\n",
               opt.conns, opt.window, g.logins, g.retrieved, (unsigned long long)g.bytes, g.errors,
               secs, secs > 0 ? (double)g.retrieved / secs : 0,
               secs > 0 ? (double)g.bytes / secs / 1e6 : 0);
    }
    return g.errors == 0 ? 0 : 1;
}
