/*
 * idle_hold.c — the memory a server spends on idle connections.
 *
 * Reads the resident memory of the named server processes (the sum of
 * VmRSS from /proc/PID/status and of Pss from /proc/PID/smaps_rollup over
 * every process with that name, so that a server forking per connection is
 * counted whole), opens C connections and brings each to the idle state —
 * the greeting read (and, for SMTP, EHLO answered; with -T after a TLS
 * handshake on an implicit-TLS port, with -S after STARTTLS/STLS) — waits
 * for the server to settle, reads the memory again, and prints the
 * difference per connection. While all C are held it checks that a new
 * client still gets a greeting, and how long that took.
 *
 * Connections are opened one after the other on blocking sockets: what is
 * measured is what a server keeps for a connection at rest, not how fast it
 * accepts. With -b the client sockets are bound to several loopback
 * addresses (127.0.0.2, .3, ...), A connections each, to stay under a
 * per-address limit; RLIMIT_NOFILE is raised as far as it goes.
 *
 * The TLS client state is freed once a connection is idle (the server
 * cannot tell), so that the holder itself stays small at 10,000
 * connections.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

const char *bench_prog = "idle_hold";

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum proto { P_SMTP, P_POP3, P_NONE };

static struct {
    long n;
    enum proto proto;
    bool tls, starttls;
    struct sockaddr_storage dst, src;
    bool have_src;
    long per_src;
    const char *procs;
    double settle, hold;
    int timeout_s;
} opt = {.n = 100, .proto = P_SMTP, .per_src = 1000000, .settle = 2, .timeout_s = 20};

/* A connection being set up: a socket and, while TLS is under way, its client. */
struct cl {
    int fd;
    struct btls *tls;
    char buf[4096];
    size_t len;
};

static int send_all(int fd, const void *p, size_t n)
{
    const char *q = p;
    while (n > 0) {
        ssize_t w = send(fd, q, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        q += w;
        n -= (size_t)w;
    }
    return 0;
}

static int flush_tls(struct cl *c)
{
    struct bbuf *out = btls_out(c->tls);
    int rc = send_all(c->fd, out->data, out->len);
    out->len = 0;
    return rc;
}

/* Sends plaintext, through TLS when it is on. */
static int cl_send(struct cl *c, const char *s)
{
    if (c->tls == NULL)
        return send_all(c->fd, s, strlen(s));
    if (btls_write(c->tls, s, strlen(s)) < 0)
        return -1;
    return flush_tls(c);
}

/* Reads more plaintext into c->buf; -1 on EOF, error or timeout. */
static int cl_fill(struct cl *c)
{
    if (c->len >= sizeof c->buf - 1)
        return -1;
    for (;;) {
        if (c->tls != NULL) {
            ssize_t r = btls_read(c->tls, c->buf + c->len, sizeof c->buf - 1 - c->len);
            if (r < 0)
                return -1;
            if (r > 0) {
                c->len += (size_t)r;
                return 0;
            }
        }
        char raw[16384];
        ssize_t r = recv(c->fd, c->tls ? raw : c->buf + c->len,
                         c->tls ? sizeof raw : sizeof c->buf - 1 - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (c->tls == NULL) {
            c->len += (size_t)r;
            return 0;
        }
        btls_feed(c->tls, raw, (size_t)r);
    }
}

/*
 * Reads one whole reply: SMTP (lines until one without '-' after the code) or POP3 (one
 * line). Copies its first line into first (for messages) and returns 0 if it is a positive
 * reply (2xx/3xx, +OK), 1 if negative, -1 if the connection failed.
 */
static int cl_reply(struct cl *c, enum proto proto, char *first, size_t first_size)
{
    bool have_first = false;
    for (;;) {
        char *nl;
        while ((nl = memchr(c->buf, '\n', c->len)) == NULL) {
            if (cl_fill(c) < 0)
                return -1;
        }
        size_t ll = (size_t)(nl - c->buf) + 1;
        char line[4096];
        memcpy(line, c->buf, ll);
        line[ll] = '\0';
        line[strcspn(line, "\r\n")] = '\0';
        memmove(c->buf, c->buf + ll, c->len - ll);
        c->len -= ll;
        if (!have_first) {
            snprintf(first, first_size, "%.500s", line);
            have_first = true;
        }
        if (proto == P_POP3)
            return strncmp(line, "+OK", 3) == 0 ? 0 : 1;
        if (strlen(line) > 3 && line[3] == '-')
            continue;
        return line[0] == '2' || line[0] == '3' ? 0 : 1;
    }
}

static int cl_handshake(struct cl *c)
{
    c->tls = btls_new();
    if (c->len > 0) { /* bytes after the 220/+OK to STARTTLS: not allowed */
        return -1;
    }
    for (;;) {
        int rc = btls_handshake(c->tls);
        if (flush_tls(c) < 0 || rc < 0)
            return -1;
        if (rc == 1)
            return 0;
        char raw[16384];
        ssize_t r = recv(c->fd, raw, sizeof raw, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        btls_feed(c->tls, raw, (size_t)r);
    }
}

/*
 * Opens a connection from src (if not NULL) and brings it to the idle state. Returns the
 * socket, or -1 with why in err (and, for a refusal, the server's line).
 */
static int open_idle(const struct sockaddr_storage *src, char *err, size_t err_size,
                     bool *refused_r)
{
    struct cl c = {.fd = -1};
    char first[512] = "";
    *refused_r = false;
    c.fd = socket(opt.dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
        snprintf(err, err_size, "socket: %s", strerror(errno));
        return -1;
    }
    struct timeval tv = {opt.timeout_s, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    socklen_t dlen =
        opt.dst.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (src != NULL) {
        /* The port is picked at connect, per destination: more than 28,000 from one address. */
        setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c.fd, (const struct sockaddr *)src, dlen) < 0) {
            snprintf(err, err_size, "bind: %s", strerror(errno));
            goto fail;
        }
    }
    if (connect(c.fd, (const struct sockaddr *)&opt.dst, dlen) < 0) {
        snprintf(err, err_size, "connect: %s", strerror(errno));
        goto fail;
    }
    if (opt.tls && cl_handshake(&c) < 0) {
        snprintf(err, err_size, "TLS handshake failed");
        goto fail;
    }
    if (opt.proto != P_NONE) {
        int rc = cl_reply(&c, opt.proto, first, sizeof first);
        if (rc != 0) {
            *refused_r = rc == 1;
            snprintf(err, err_size, "greeting: %s", rc < 0 ? "connection closed" : first);
            goto fail;
        }
    }
    if (opt.proto == P_SMTP) {
        if (cl_send(&c, "EHLO idle.example.test\r\n") < 0 ||
            cl_reply(&c, P_SMTP, first, sizeof first) != 0) {
            snprintf(err, err_size, "EHLO: %s", first);
            goto fail;
        }
        if (opt.starttls) {
            if (cl_send(&c, "STARTTLS\r\n") < 0 || cl_reply(&c, P_SMTP, first, sizeof first) != 0 ||
                cl_handshake(&c) < 0 || cl_send(&c, "EHLO idle.example.test\r\n") < 0 ||
                cl_reply(&c, P_SMTP, first, sizeof first) != 0) {
                snprintf(err, err_size, "STARTTLS: %s", first);
                goto fail;
            }
        }
    } else if (opt.proto == P_POP3 && opt.starttls) {
        if (cl_send(&c, "STLS\r\n") < 0 || cl_reply(&c, P_POP3, first, sizeof first) != 0 ||
            cl_handshake(&c) < 0) {
            snprintf(err, err_size, "STLS: %s", first);
            goto fail;
        }
    }
    btls_free(&c.tls);
    return c.fd;
fail:
    btls_free(&c.tls);
    close(c.fd);
    return -1;
}

/* Counts held connections the server has closed (readable EOF or an error). */
static long count_closed(const int *fds, long n)
{
    long closed = 0;
    struct pollfd *p = calloc((size_t)n, sizeof *p);
    if (p == NULL)
        abort();
    for (long i = 0; i < n; i++) {
        p[i].fd = fds[i];
        p[i].events = POLLIN | POLLRDHUP;
    }
    if (poll(p, (nfds_t)n, 0) > 0) {
        for (long i = 0; i < n; i++) {
            if (p[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
                closed++;
            } else if (p[i].revents & POLLIN) {
                char b[512];
                ssize_t r = recv(fds[i], b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
                if (r <= 0)
                    closed++;
            }
        }
    }
    free(p);
    return closed;
}

static void sleep_s(double s)
{
    if (s > 0)
        usleep((useconds_t)(s * 1e6));
}

static void usage(int status)
{
    fprintf(status ? stderr : stdout,
            "usage: idle_hold [options] HOST:PORT\n"
            "  -n C        connections to hold (100)\n"
            "  -P PROTO    smtp (greeting, EHLO), pop3 (greeting) or none (smtp)\n"
            "  -T          TLS from the first byte (submissions, pop3s ports)\n"
            "  -S          STARTTLS (smtp) or STLS (pop3) after the greeting\n"
            "  -p NAMES    server processes to measure: comm names or pid:N, comma-separated\n"
            "  -b IP       bind client sockets to IP, IP+1, ... (e.g. 127.0.0.2)\n"
            "  -a A        connections per source address with -b (all on one)\n"
            "  -w SECONDS  settle time before each reading (2)\n"
            "  -H SECONDS  hold this long after the readings (0)\n"
            "Prints one key=value line; exit status 0 only if all C were held and the new\n"
            "client was greeted.\n");
    exit(status);
}

int main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "n:P:TSp:b:a:w:H:h")) != -1) {
        switch (ch) {
        case 'n':
            opt.n = atol(optarg);
            break;
        case 'P':
            if (strcmp(optarg, "smtp") == 0)
                opt.proto = P_SMTP;
            else if (strcmp(optarg, "pop3") == 0)
                opt.proto = P_POP3;
            else if (strcmp(optarg, "none") == 0)
                opt.proto = P_NONE;
            else
                usage(2);
            break;
        case 'T':
            opt.tls = true;
            break;
        case 'S':
            opt.starttls = true;
            break;
        case 'p':
            opt.procs = optarg;
            break;
        case 'b':
            if (bench_parse_ip(optarg, &opt.src) < 0)
                bench_die("-b %s: not an IP address", optarg);
            opt.have_src = true;
            break;
        case 'a':
            opt.per_src = atol(optarg);
            break;
        case 'w':
            opt.settle = atof(optarg);
            break;
        case 'H':
            opt.hold = atof(optarg);
            break;
        case 'h':
            usage(0);
            break;
        default:
            usage(2);
        }
    }
    if (optind + 1 != argc || opt.n < 1 || opt.per_src < 1)
        usage(2);
    if (bench_parse_hostport(argv[optind], &opt.dst) < 0)
        bench_die("'%s' is not HOST:PORT", argv[optind]);
    if (opt.tls && opt.starttls)
        bench_die("-T and -S exclude each other");
    long lim = bench_raise_nofile(opt.n + 64);
    if (lim < opt.n + 16)
        bench_die("RLIMIT_NOFILE is %ld, too low for %ld connections", lim, opt.n);
    btls_global_init();

    struct bench_mem before = {0}, after = {0};
    if (opt.procs) {
        sleep_s(opt.settle);
        bench_mem_read(opt.procs, &before); /* none yet is fine: a server forking per client */
    }

    int *fds = bench_xmalloc((size_t)opt.n * sizeof(int));
    long held = 0, refused = 0, failed = 0;
    char err[600] = "";
    double t0 = bench_now();
    for (long i = 0; i < opt.n; i++) {
        struct sockaddr_storage src;
        const struct sockaddr_storage *srcp = NULL;
        if (opt.have_src) {
            bench_ip_add(&opt.src, (unsigned)(i / opt.per_src), &src);
            srcp = &src;
        }
        bool refused_one;
        int fd = open_idle(srcp, err, sizeof err, &refused_one);
        if (fd < 0) {
            if (refused_one)
                refused++;
            else
                failed++;
            if (refused + failed <= 5)
                fprintf(stderr, "idle_hold: connection %ld: %s\n", i + 1, err);
            if (refused + failed >= 50)
                break;
            continue;
        }
        fds[held++] = fd;
    }
    double open_s = bench_now() - t0;

    if (opt.procs) {
        sleep_s(opt.settle);
        bench_mem_read(opt.procs, &after);
        if (after.procs == 0)
            fprintf(stderr, "idle_hold: no process matches %s\n", opt.procs);
    }
    long closed = count_closed(fds, held);

    /* A new client, while all are held: from the first source address, or the kernel's. */
    char perr[600] = "";
    bool prefused;
    double p0 = bench_now();
    int pfd = open_idle(NULL, perr, sizeof perr, &prefused);
    double probe_ms = (bench_now() - p0) * 1000;
    bool probe_ok = pfd >= 0;
    if (pfd >= 0) {
        if (!opt.tls && !opt.starttls)
            send_all(pfd, "QUIT\r\n", 6);
        close(pfd);
    } else {
        fprintf(stderr, "idle_hold: new client while holding: %s\n", perr);
    }

    double per = held > 0 ? 1.0 / (double)held : 0;
    printf("idle_hold conns=%ld held=%ld refused=%ld failed=%ld closed_by_server=%ld "
           "tls=%s open_s=%.2f procs_before=%d procs=%d rss_before_kib=%ld rss_after_kib=%ld "
           "pss_before_kib=%ld pss_after_kib=%ld rss_per_conn_kib=%.2f pss_per_conn_kib=%.2f "
           "probe=%s probe_ms=%.2f\n",
           opt.n, held, refused, failed, closed,
           opt.tls        ? "implicit"
           : opt.starttls ? "starttls"
                          : "no",
           open_s, before.procs, after.procs, before.rss_kib, after.rss_kib, before.pss_kib,
           after.pss_kib, (double)(after.rss_kib - before.rss_kib) * per,
           (double)(after.pss_kib - before.pss_kib) * per, probe_ok ? "ok" : "failed", probe_ms);
    fflush(stdout);
    sleep_s(opt.hold);
    for (long i = 0; i < held; i++)
        close(fds[i]);
    return held == opt.n && closed == 0 && probe_ok ? 0 : 1;
}
