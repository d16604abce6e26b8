/*
 * smtp_load.c — an SMTP load generator on libuv.
 *
 * N sessions at once send M messages in all, each of S octets (headers and
 * body, before the final dot), to one or several recipients taken in turn
 * from a list. A session opens a new connection per message (like
 * smtp-source) or, with -d, keeps its connection for message after message.
 * With -T it asks for STARTTLS before the first message; with -a it logs in
 * (AUTH PLAIN) once per connection, after STARTTLS when there is one. When
 * the server offers PIPELINING, MAIL, RCPT and DATA go in one write (-P
 * turns that off).
 *
 * It reports, on one key=value line: messages accepted and refused, the
 * rate in messages/s and MB/s (10^6 octets) over the wall time of the whole
 * run, and the p50/p99 latency from the moment the final dot was handed to
 * the kernel to the server's reply to it — for a durable server, the time
 * the message waited for its commit. The exit status is 0 only when every
 * message was accepted.
 *
 * The message body is built once and shared by every session; only a short
 * header block is written per message, so the client spends its CPU on the
 * conversation, not on making text. With -F the message is a file, sent the
 * same every time and without a header block of ours (a message signed once
 * with DKIM stays valid).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

const char *bench_prog = "smtp_load";

enum state {
    ST_IDLE,
    ST_GREETING,
    ST_EHLO,
    ST_STARTTLS,
    ST_HANDSHAKE,
    ST_AUTH,     /* awaiting the reply to AUTH PLAIN */
    ST_ENVELOPE, /* awaiting the replies to MAIL, RCPT..., DATA */
    ST_DOT,      /* awaiting the reply to the final dot */
    ST_QUIT,
    ST_DONE,
};

struct sess {
    struct bconn c;
    int id;
    enum state st;
    bool pipelining, starttls_offered, tls_on;
    struct bbuf line; /* a reply line being assembled */
    long msg;         /* the message being sent, -1 for none */
    int replies;      /* replies received in ST_ENVELOPE */
    bool tx_bad;      /* MAIL or a RCPT was refused */
    double t_dot;
    unsigned src_index;
};

static struct {
    int sessions;
    long messages;
    long size;
    int rcpts_per_msg;
    char **rcpts;
    int n_rcpts;
    const char *from;
    const char *helo;
    bool reuse, tls, no_pipelining;
    const char *file; /* -F: the message, or NULL for the generated one */
    char *auth;       /* "AUTH PLAIN <base64 of \0user\0password>\r\n", or NULL */
    struct sockaddr_storage dst;
    struct sockaddr_storage src;
    bool have_src;
    unsigned n_src;
    size_t rbuf;
} opt = {
    .sessions = 1,
    .messages = 100,
    .size = 1024,
    .rcpts_per_msg = 1,
    .from = "bench@example.test",
    .helo = "bench.example.test",
    .rbuf = 16384,
};

static struct {
    uv_loop_t *loop;
    long claimed, accepted, refused, conn_errors, connections;
    double *lat;
    size_t n_lat;
    char *body; /* body + ".\r\n", shared */
    size_t body_len;
    size_t hdr_len; /* every header block has this length; 0 with -F */
    double t_start, t_end;
    int active;
    int errors_shown;
} g;

static void sess_start(struct sess *s);
static void send_quit(struct sess *s);
static void start_tx(struct sess *s);

/* The AUTH PLAIN command for USER:PASSWORD (RFC 4616: authzid empty, NUL, user, NUL, password). */
static char *auth_plain_command(const char *spec)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *colon = strchr(spec, ':');
    if (colon == NULL || colon == spec)
        bench_die("-a %s: not USER:PASSWORD", spec);
    size_t ulen = (size_t)(colon - spec), plen = strlen(colon + 1);
    if (ulen + plen > 900)
        bench_die("-a: user and password too long");
    unsigned char raw[904];
    size_t n = 0;
    raw[n++] = 0;
    memcpy(raw + n, spec, ulen);
    n += ulen;
    raw[n++] = 0;
    memcpy(raw + n, colon + 1, plen);
    n += plen;
    char *out = bench_xmalloc(16 + (n + 2) / 3 * 4 + 3);
    size_t o = (size_t)sprintf(out, "AUTH PLAIN ");
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)raw[i] << 16 | (i + 1 < n ? (unsigned)raw[i + 1] << 8 : 0) |
                     (i + 2 < n ? raw[i + 2] : 0);
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    memcpy(out + o, "\r\n", 3);
    return out;
}

/* After EHLO (and STARTTLS): log in when asked to, else the first transaction. */
static void ready(struct sess *s)
{
    if (opt.auth != NULL) {
        s->st = ST_AUTH;
        bconn_write(&s->c, opt.auth, strlen(opt.auth), true, NULL);
        return;
    }
    start_tx(s);
}

static void report_error(struct sess *s, const char *what, const char *line)
{
    if (g.errors_shown++ < 10)
        fprintf(stderr, "smtp_load: session %d: %s: %s\n", s->id, what, line ? line : "");
}

/* The body: lines of up to 78 octets with CRLF, none starting with '.', then ".\r\n". */
static void build_body(size_t len)
{
    static const char pattern[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    if (len < 2)
        len = 2;
    g.body = bench_xmalloc(len + 3);
    size_t off = 0;
    unsigned line_no = 0;
    while (off < len) {
        size_t left = len - off;
        size_t text = left <= 80 ? left - 2 : 76;
        for (size_t i = 0; i < text; i++)
            g.body[off + i] = pattern[(i + line_no) % (sizeof pattern - 1)];
        off += text;
        g.body[off++] = '\r';
        g.body[off++] = '\n';
        line_no++;
    }
    memcpy(g.body + off, ".\r\n", 3);
    g.body_len = off + 3;
}

/*
 * -F: the message is the file as it stands, its bare LFs made CRLF, a line
 * starting with '.' stuffed (RFC 5321 4.5.2), a line end added after a last
 * line without one, then ".\r\n".
 */
static void load_body(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        bench_die("-F %s: %s", path, strerror(errno));
    struct bbuf raw = {0};
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (raw.len + k > (size_t)1 << 30)
            bench_die("-F %s: larger than 1 GiB", path);
        bbuf_append(&raw, chunk, k);
    }
    if (ferror(f))
        bench_die("-F %s: read error", path);
    fclose(f);
    if (raw.len == 0)
        bench_die("-F %s: empty", path);
    /* Each octet becomes at most two (LF -> CRLF; a '.' at a line start goes with the LF
     * before it), plus a last CRLF and the final dot. */
    g.body = bench_xmalloc(2 * raw.len + 8);
    size_t off = 0;
    bool line_start = true;
    for (size_t i = 0; i < raw.len; i++) {
        char ch = raw.data[i];
        if (line_start && ch == '.')
            g.body[off++] = '.';
        if (ch == '\n' && (i == 0 || raw.data[i - 1] != '\r'))
            g.body[off++] = '\r';
        g.body[off++] = ch;
        line_start = ch == '\n';
    }
    if (!line_start) {
        g.body[off++] = '\r';
        g.body[off++] = '\n';
    }
    memcpy(g.body + off, ".\r\n", 3);
    g.body_len = off + 3;
    bbuf_free(&raw);
}

/* The header block of message i, always g.hdr_len octets long (fixed-width numbers). */
static size_t format_header(char *out, size_t size, long i, const char *to)
{
    int n = snprintf(out, size,
                     "From: <%s>\r\nTo: <%s>\r\nSubject: kotak bench message %010ld\r\n"
                     "Message-ID: <%010ld.%08d@bench.example.test>\r\n"
                     "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n",
                     opt.from, to, i, i, (int)getpid());
    if (n < 0 || (size_t)n >= size)
        bench_die("header too long");
    return (size_t)n;
}

static const char *rcpt_of(long msg, int k)
{
    return opt.rcpts[(size_t)((msg * opt.rcpts_per_msg + k) % opt.n_rcpts)];
}

static void maybe_finish(void)
{
    if (g.active == 0) {
        g.t_end = bench_now();
    }
}

static void on_closed(struct bconn *c)
{
    struct sess *s = c->ctx;
    bbuf_free(&s->line);
    if (s->msg >= 0) {
        /* The connection went away with a message unanswered. */
        g.refused++;
        s->msg = -1;
    }
    if (g.claimed < opt.messages) {
        sess_start(s);
        return;
    }
    s->st = ST_DONE;
    g.active--;
    maybe_finish();
}

static void send_line(struct sess *s, const char *fmt, const char *arg)
{
    char line[1100];
    int n = snprintf(line, sizeof line, fmt, arg);
    if (n < 0 || (size_t)n >= sizeof line)
        bench_die("command too long");
    bconn_write(&s->c, line, (size_t)n, false, NULL);
}

static void dot_sent(struct bconn *c)
{
    struct sess *s = c->ctx;
    s->t_dot = bench_now();
}

static void send_message(struct sess *s)
{
    if (opt.file == NULL) {
        char hdr[1400];
        size_t n = format_header(hdr, sizeof hdr, s->msg, rcpt_of(s->msg, 0));
        bconn_write(&s->c, hdr, n, false, NULL);
    }
    s->t_dot = bench_now();
    s->st = ST_DOT;
    bconn_write(&s->c, g.body, g.body_len, true, dot_sent);
}

/* Sends the envelope command number k (0 MAIL, 1..r RCPT, r+1 DATA). */
static void append_cmd(struct sess *s, struct bbuf *b, int k)
{
    if (k == 0)
        bbuf_printf(b, "MAIL FROM:<%s>\r\n", opt.from);
    else if (k <= opt.rcpts_per_msg)
        bbuf_printf(b, "RCPT TO:<%s>\r\n", rcpt_of(s->msg, k - 1));
    else
        bbuf_printf(b, "DATA\r\n");
}

static void start_tx(struct sess *s)
{
    if (s->msg < 0) {
        if (g.claimed >= opt.messages) {
            send_quit(s);
            return;
        }
        s->msg = g.claimed++;
    }
    s->st = ST_ENVELOPE;
    s->replies = 0;
    s->tx_bad = false;
    struct bbuf b = {0};
    int last = s->pipelining && !opt.no_pipelining ? opt.rcpts_per_msg + 1 : 0;
    for (int k = 0; k <= last; k++)
        append_cmd(s, &b, k);
    bconn_write(&s->c, b.data, b.len, false, NULL);
    bbuf_free(&b);
}

static void send_quit(struct sess *s)
{
    s->st = ST_QUIT;
    bconn_write(&s->c, "QUIT\r\n", 6, true, NULL);
}

static void tx_done(struct sess *s, bool ok, const char *line)
{
    if (ok) {
        g.accepted++;
    } else {
        g.refused++;
        report_error(s, "message refused", line);
    }
    s->msg = -1;
    if (!ok) {
        send_quit(s);
        return;
    }
    if (opt.reuse)
        start_tx(s);
    else
        send_quit(s);
}

static void on_tls_ready(struct bconn *c)
{
    struct sess *s = c->ctx;
    s->tls_on = true;
    s->st = ST_EHLO;
    s->pipelining = false;
    send_line(s, "EHLO %s\r\n", opt.helo);
}

/* One whole reply: its code and its last line. */
static void on_reply(struct sess *s, int code, const char *line)
{
    switch (s->st) {
    case ST_GREETING:
        if (code != 220) {
            report_error(s, "greeting", line);
            if (s->msg >= 0) {
                g.refused++;
                s->msg = -1;
            }
            bconn_close(&s->c);
            return;
        }
        s->st = ST_EHLO;
        send_line(s, "EHLO %s\r\n", opt.helo);
        return;
    case ST_EHLO:
        if (code != 250) {
            report_error(s, "EHLO refused", line);
            send_quit(s);
            return;
        }
        if (opt.tls && !s->tls_on) {
            if (!s->starttls_offered)
                bench_die("the server does not offer STARTTLS");
            s->st = ST_STARTTLS;
            bconn_write(&s->c, "STARTTLS\r\n", 10, true, NULL);
            return;
        }
        ready(s);
        return;
    case ST_AUTH:
        if (code != 235) {
            report_error(s, "AUTH refused", line);
            if (s->msg >= 0) {
                g.refused++;
                s->msg = -1;
            }
            send_quit(s);
            return;
        }
        start_tx(s);
        return;
    case ST_STARTTLS:
        if (code != 220) {
            report_error(s, "STARTTLS refused", line);
            send_quit(s);
            return;
        }
        s->st = ST_HANDSHAKE;
        bconn_start_tls(&s->c);
        return;
    case ST_ENVELOPE: {
        int k = s->replies++;
        bool piped = s->pipelining && !opt.no_pipelining;
        bool bad = (k == 0 && code != 250) ||
                   (k >= 1 && k <= opt.rcpts_per_msg && code != 250 && code != 251);
        if (bad) {
            s->tx_bad = true;
            report_error(s, k == 0 ? "MAIL refused" : "RCPT refused", line);
        }
        if (k <= opt.rcpts_per_msg) {
            if (!piped) {
                if (s->tx_bad) {
                    /* Nothing more to say about this message on this connection. */
                    tx_done(s, false, line);
                    return;
                }
                struct bbuf b = {0};
                append_cmd(s, &b, k + 1);
                bconn_write(&s->c, b.data, b.len, false, NULL);
                bbuf_free(&b);
            }
            return;
        }
        /* The reply to DATA. */
        if (code == 354 && !s->tx_bad) {
            send_message(s);
            return;
        }
        if (code == 354) {
            /* Some recipient was refused: hang up rather than deliver to the others. */
            g.refused++;
            s->msg = -1;
            bconn_close(&s->c);
            return;
        }
        tx_done(s, false, line);
        return;
    }
    case ST_DOT: {
        double lat = bench_now() - s->t_dot;
        if (code == 250)
            g.lat[g.n_lat++] = lat;
        tx_done(s, code == 250, line);
        return;
    }
    case ST_QUIT:
        bconn_close(&s->c);
        return;
    default:
        report_error(s, "unexpected reply", line);
        bconn_close(&s->c);
        return;
    }
}

static void on_data(struct bconn *c, const char *p, size_t n)
{
    struct sess *s = c->ctx;
    while (n > 0 && !c->closing) {
        ssize_t got = bbuf_take_line(&s->line, &p, &n);
        if (got < 0)
            break;
        char *line = s->line.data;
        size_t len = (size_t)got;
        s->line.len = 0;
        if (len < 3) {
            report_error(s, "short reply line", line);
            bconn_close(c);
            return;
        }
        if (s->st == ST_EHLO) {
            const char *kw = line + 4;
            if (len >= 4 && strncasecmp(kw, "PIPELINING", 10) == 0)
                s->pipelining = true;
            if (len >= 4 && strncasecmp(kw, "STARTTLS", 8) == 0)
                s->starttls_offered = true;
        }
        if (len > 3 && line[3] == '-')
            continue;
        int code = atoi(line);
        on_reply(s, code, line);
        /* STARTTLS: what follows the 220 is ciphertext, which the plaintext path must not
         * read as a reply. A well-behaved server sends nothing before our ClientHello. */
        if (s->st == ST_HANDSHAKE)
            return;
    }
}

static void on_connected(struct bconn *c, int status)
{
    struct sess *s = c->ctx;
    if (status < 0) {
        g.conn_errors++;
        report_error(s, "connect", uv_strerror(status));
        return;
    }
    g.connections++;
    s->st = ST_GREETING;
}

static void on_eof(struct bconn *c, int status)
{
    struct sess *s = c->ctx;
    if (s->st != ST_QUIT && s->st != ST_DONE)
        report_error(s, "connection lost", uv_strerror(status));
}

static const struct bconn_ops sess_ops = {
    .connected = on_connected,
    .data = on_data,
    .tls_ready = on_tls_ready,
    .eof = on_eof,
    .closed = on_closed,
};

static void sess_start(struct sess *s)
{
    s->st = ST_IDLE;
    s->pipelining = s->starttls_offered = s->tls_on = false;
    s->line = (struct bbuf){0};
    s->msg = -1;
    /* Each connection carries at least one message, so that a server refusing connections
     * cannot make this loop forever. */
    s->msg = g.claimed++;
    struct sockaddr_storage src;
    const struct sockaddr *srcp = NULL;
    if (opt.have_src) {
        bench_ip_add(&opt.src, s->src_index % opt.n_src, &src);
        s->src_index++;
        srcp = (const struct sockaddr *)&src;
    }
    int rc = bconn_connect(g.loop, &s->c, &sess_ops, s, (const struct sockaddr *)&opt.dst, srcp,
                           opt.rbuf);
    if (rc != 0) {
        g.conn_errors++;
        report_error(s, "connect", uv_strerror(rc));
        g.refused++;
        s->msg = -1;
        if (g.claimed < opt.messages && g.conn_errors < 1000) {
            sess_start(s);
            return;
        }
        g.refused += opt.messages - g.claimed;
        g.claimed = opt.messages;
        s->st = ST_DONE;
        g.active--;
        maybe_finish();
    }
}

static void usage(int status)
{
    fprintf(status ? stderr : stdout,
            "usage: smtp_load [options] HOST:PORT\n"
            "  -s N        concurrent sessions (1)\n"
            "  -m M        messages in all (100)\n"
            "  -l S        message size in octets, headers included; K/M suffix (1024)\n"
            "  -F FILE     send FILE as every message, headers and all (no -l; LF made CRLF)\n"
            "  -t LIST     recipients, comma-separated, used in turn (user1@example.test)\n"
            "  -r R        recipients per message, taken in turn from the list (1)\n"
            "  -f ADDR     envelope sender (bench@example.test)\n"
            "  -a USER:PW  log in with AUTH PLAIN on each connection (after STARTTLS with -T)\n"
            "  -d          keep the connection for the next message (default: new one each)\n"
            "  -T          STARTTLS before the first message\n"
            "  -P          no pipelining, even when the server offers it\n"
            "  -b IP[/K]   bind the client sockets to IP, or to K addresses from IP on\n"
            "Prints one key=value line; exit status 0 only if every message was accepted.\n");
    exit(status);
}

int main(int argc, char **argv)
{
    const char *rcpt_list = "user1@example.test";
    int ch;
    while ((ch = getopt(argc, argv, "s:m:l:F:t:r:f:a:dTPb:h")) != -1) {
        switch (ch) {
        case 's':
            opt.sessions = atoi(optarg);
            break;
        case 'm':
            opt.messages = atol(optarg);
            break;
        case 'l':
            opt.size = (long)bench_parse_size(optarg);
            break;
        case 'F':
            opt.file = optarg;
            break;
        case 't':
            rcpt_list = optarg;
            break;
        case 'r':
            opt.rcpts_per_msg = atoi(optarg);
            break;
        case 'f':
            opt.from = optarg;
            break;
        case 'a':
            opt.auth = auth_plain_command(optarg);
            break;
        case 'd':
            opt.reuse = true;
            break;
        case 'T':
            opt.tls = true;
            break;
        case 'P':
            opt.no_pipelining = true;
            break;
        case 'b': {
            char ip[64];
            const char *slash = strchr(optarg, '/');
            size_t n = slash ? (size_t)(slash - optarg) : strlen(optarg);
            if (n >= sizeof ip)
                usage(2);
            memcpy(ip, optarg, n);
            ip[n] = '\0';
            if (bench_parse_ip(ip, &opt.src) < 0)
                bench_die("-b %s: not an IP address", optarg);
            opt.n_src = slash ? (unsigned)atoi(slash + 1) : 1;
            if (opt.n_src == 0)
                opt.n_src = 1;
            opt.have_src = true;
            break;
        }
        case 'h':
            usage(0);
            break;
        default:
            usage(2);
        }
    }
    if (optind + 1 != argc)
        usage(2);
    if (bench_parse_hostport(argv[optind], &opt.dst) < 0)
        bench_die("'%s' is not HOST:PORT", argv[optind]);
    if (opt.sessions < 1 || opt.messages < 1 || opt.size < 0 || opt.rcpts_per_msg < 1)
        usage(2);
    if (opt.sessions > opt.messages)
        opt.sessions = (int)opt.messages;

    /* The recipient list. */
    char *list = strdup(rcpt_list);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        opt.rcpts = bench_xrealloc(opt.rcpts, (size_t)(opt.n_rcpts + 1) * sizeof(char *));
        opt.rcpts[opt.n_rcpts++] = tok;
    }
    if (opt.n_rcpts == 0)
        bench_die("-t: no recipient");
    size_t longest = 0;
    for (int i = 0; i < opt.n_rcpts; i++)
        if (strlen(opt.rcpts[i]) > longest)
            longest = strlen(opt.rcpts[i]);
    if (longest > 900 || strlen(opt.from) > 900)
        bench_die("address too long");

    if (opt.file != NULL) {
        load_body(opt.file);
    } else {
        /* Headers take a fixed width; they vary only with the To: address's length, which
         * the body absorbs for the first recipient's length (the others differ by a few). */
        char hdr[1400];
        g.hdr_len = format_header(hdr, sizeof hdr, 0, opt.rcpts[0]);
        build_body(opt.size > (long)g.hdr_len + 2 ? (size_t)opt.size - g.hdr_len : 2);
    }

    bench_raise_nofile(opt.sessions * 2 + 64);
    btls_global_init();
    g.loop = uv_default_loop();
    g.lat = bench_xmalloc((size_t)opt.messages * sizeof(double));
    struct sess *ss = calloc((size_t)opt.sessions, sizeof *ss);
    if (ss == NULL)
        abort();
    g.active = opt.sessions;
    g.t_start = bench_now();
    for (int i = 0; i < opt.sessions; i++) {
        ss[i].id = i;
        ss[i].src_index = (unsigned)i;
        if (g.claimed < opt.messages)
            sess_start(&ss[i]);
        else
            g.active--;
    }
    uv_run(g.loop, UV_RUN_DEFAULT);
    if (g.t_end == 0)
        g.t_end = bench_now();
    double secs = g.t_end - g.t_start;
    double p50 = bench_percentile(g.lat, g.n_lat, 50) * 1000;
    double p99 = bench_percentile(g.lat, g.n_lat, 99) * 1000;
    double bytes = (double)g.accepted * (double)(g.hdr_len + g.body_len - 3);
    printf("smtp_load sessions=%d messages=%ld size=%zu rcpts=%d reuse=%d tls=%d "
           "pipelining=%d accepted=%ld refused=%ld connections=%ld conn_errors=%ld "
           "seconds=%.3f msgs_per_s=%.1f MB_per_s=%.2f latency_p50_ms=%.2f "
           "latency_p99_ms=%.2f\n",
           opt.sessions, opt.messages, g.hdr_len + g.body_len - 3, opt.rcpts_per_msg, opt.reuse,
           opt.tls, !opt.no_pipelining, g.accepted, g.refused, g.connections, g.conn_errors, secs,
           secs > 0 ? (double)g.accepted / secs : 0, secs > 0 ? bytes / secs / 1e6 : 0, p50, p99);
    return g.accepted == opt.messages ? 0 : 1;
}
