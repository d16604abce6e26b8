/*
 * tls_load.c — TLS 1.2 full handshakes, or messages over TLS, as cheaply as a
 * client can make them, for bench/tls_rate.sh.
 *
 * K worker processes (fork), each a blocking loop for SECONDS: connect, TLS
 * (implicit, or after STARTTLS/STLS with -S), read the greeting, and then
 * either hang up (handshake mode) or, with -m, send one message (EHLO, AUTH
 * PLAIN with -a, MAIL RCPT DATA in one write, the message, QUIT). A new
 * connection and a full handshake every time: no session is kept, so none is
 * resumed.
 *
 * Why not mbedTLS, as the other tools: this machine has 2 cores shared by
 * client and server, and a TLS client's handshake (ECDHE and the check of the
 * server's ECDSA signature) costs as much as the server's. OpenSSL's P-256
 * and X25519 code is several times cheaper than mbedTLS 2.28's, so the client
 * takes less of the machine from the server under test. Why not `openssl
 * s_time`: it does not read the greeting (so the server's work after the
 * handshake is not waited for), and it cannot send a message.
 *
 * Output, one key=value line: connections (handshakes completed), errors,
 * seconds, conns_per_s, messages and msgs_per_s (-m), client_cpu_s (user +
 * system of all workers, getrusage), the cipher and the key-exchange group of
 * the first connection.
 */
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

enum proto { P_SMTP, P_POP3 };

static struct {
    int clients;
    double seconds;
    enum proto proto;
    bool starttls, message, quickack;
    const char *auth; /* "AUTH PLAIN ...\r\n" */
    long size;
    const char *from, *to, *ciphers, *groups;
    struct sockaddr_in dst;
} opt = {
    .clients = 4,
    .seconds = 10,
    .proto = P_SMTP,
    .size = 1024,
    .from = "bench@example.test",
    .to = "user1@example.test",
    .ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256",
};

struct counts {
    long conns, msgs, errors;
    char cipher[64], group[32];
};

static struct counts *shared; /* one per worker, in a shared mapping */
static char *message;         /* headers + body + ".\r\n" */
static size_t message_len;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tls_load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

struct conn {
    int fd;
    SSL *ssl;
    char buf[8192];
    size_t len;
};

static int errors_shown;
static void fail(struct counts *c, const char *what, const char *line)
{
    c->errors++;
    if (errors_shown++ < 3)
        fprintf(stderr, "tls_load: %s%s%s\n", what, line ? ": " : "", line ? line : "");
}

static ssize_t conn_read(struct conn *c, char *p, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, p, (int)n);
        return r > 0 ? r : -1;
    }
    ssize_t r = recv(c->fd, p, n, 0);
    return r > 0 ? r : -1;
}

static int conn_write(struct conn *c, const char *p, size_t n)
{
    if (c->ssl)
        return SSL_write(c->ssl, p, (int)n) == (int)n ? 0 : -1;
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one whole reply (SMTP: up to the line with a space after the code; POP3: one line)
 * into out; returns the SMTP code (or 1 for +OK, 0 for -ERR), -1 on error. The buffer keeps
 * what came after it (pipelined replies). */
static int read_reply(struct conn *c, char *out, size_t out_size)
{
    for (;;) {
        char *nl;
        while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
            size_t ll = (size_t)(nl - c->buf) + 1;
            size_t k = ll < out_size ? ll : out_size - 1;
            memcpy(out, c->buf, k);
            out[k] = '\0';
            memmove(c->buf, nl + 1, c->len - ll);
            c->len -= ll;
            if (opt.proto == P_POP3)
                return strncmp(out, "+OK", 3) == 0 ? 1 : 0;
            if (ll >= 4 && out[3] == '-')
                continue;
            return atoi(out);
        }
        if (c->len == sizeof c->buf)
            return -1;
        ssize_t r = conn_read(c, c->buf + c->len, sizeof c->buf - c->len);
        if (r < 0)
            return -1;
        c->len += (size_t)r;
    }
}

static int cmd(struct conn *c, const char *line, int want, struct counts *cnt, char *reply,
               size_t size)
{
    if (conn_write(c, line, strlen(line)) < 0) {
        fail(cnt, "write failed after", line);
        return -1;
    }
    int code = read_reply(c, reply, size);
    if (code != want) {
        fail(cnt, line, code < 0 ? "connection lost" : reply);
        return -1;
    }
    return 0;
}

static void one(SSL_CTX *ctx, struct counts *cnt, bool first)
{
    struct conn c = {.fd = -1};
    char reply[1024];
    c.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c.fd < 0)
        die("socket: %s", strerror(errno));
    int one_ = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof one_);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(c.fd, (struct sockaddr *)&opt.dst, sizeof opt.dst) < 0) {
        fail(cnt, "connect", strerror(errno));
        usleep(10000);
        goto out;
    }
    if (opt.starttls) {
        int want = opt.proto == P_SMTP ? 220 : 1;
        if (read_reply(&c, reply, sizeof reply) != want) {
            fail(cnt, "greeting", reply);
            goto out;
        }
        if (opt.proto == P_SMTP) {
            if (cmd(&c, "EHLO bench.example.test\r\n", 250, cnt, reply, sizeof reply) < 0 ||
                cmd(&c, "STARTTLS\r\n", 220, cnt, reply, sizeof reply) < 0)
                goto out;
        } else if (cmd(&c, "STLS\r\n", 1, cnt, reply, sizeof reply) < 0) {
            goto out;
        }
        c.len = 0;
    }
    c.ssl = SSL_new(ctx);
    SSL_set_fd(c.ssl, c.fd);
    if (SSL_connect(c.ssl) != 1) {
        char e[256];
        ERR_error_string_n(ERR_get_error(), e, sizeof e);
        fail(cnt, "handshake", e);
        ERR_clear_error();
        goto out;
    }
    if (opt.quickack) {
        /* The ACK of the server's last flight now, not after the delayed-ACK timer (40 ms
         * on Linux): a server whose greeting waits behind Nagle for that ACK would otherwise
         * be measured by the timer, not by its CPU. */
        int q = 1;
        setsockopt(c.fd, IPPROTO_TCP, TCP_QUICKACK, &q, sizeof q);
    }
    if (first) {
        snprintf(cnt->cipher, sizeof cnt->cipher, "%s", SSL_get_cipher_name(c.ssl));
        EVP_PKEY *k = NULL;
        if (SSL_get_peer_tmp_key(c.ssl, &k) && k) {
            char g[32] = "";
            size_t gl;
            if (EVP_PKEY_get_group_name(k, g, sizeof g, &gl) != 1)
                snprintf(g, sizeof g, "%s", EVP_PKEY_get0_type_name(k));
            snprintf(cnt->group, sizeof cnt->group, "%s", g);
            EVP_PKEY_free(k);
        }
    }
    if (!opt.starttls) {
        int want = opt.proto == P_SMTP ? 220 : 1;
        if (read_reply(&c, reply, sizeof reply) != want) {
            fail(cnt, "greeting after the handshake", reply);
            goto out;
        }
    }
    cnt->conns++;
    if (opt.message) {
        if (cmd(&c, "EHLO bench.example.test\r\n", 250, cnt, reply, sizeof reply) < 0)
            goto out;
        if (opt.auth && cmd(&c, opt.auth, 235, cnt, reply, sizeof reply) < 0)
            goto out;
        char env[2200];
        snprintf(env, sizeof env, "MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n", opt.from, opt.to);
        if (conn_write(&c, env, strlen(env)) < 0 || read_reply(&c, reply, sizeof reply) != 250 ||
            read_reply(&c, reply, sizeof reply) != 250 ||
            read_reply(&c, reply, sizeof reply) != 354) {
            fail(cnt, "envelope refused", reply);
            goto out;
        }
        if (conn_write(&c, message, message_len) < 0 ||
            read_reply(&c, reply, sizeof reply) != 250) {
            fail(cnt, "message refused", reply);
            goto out;
        }
        cnt->msgs++;
        if (cmd(&c, "QUIT\r\n", 221, cnt, reply, sizeof reply) < 0)
            goto out;
    }
out:
    if (c.ssl) {
        SSL_shutdown(c.ssl); /* close_notify, without waiting for the server's */
        SSL_free(c.ssl);
    }
    if (c.fd >= 0)
        close(c.fd);
}

static void worker(int id)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        die("SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* self-signed, loopback */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (opt.ciphers && *opt.ciphers && SSL_CTX_set_cipher_list(ctx, opt.ciphers) != 1)
        die("-C %s: no such cipher", opt.ciphers);
    if (opt.groups && SSL_CTX_set1_groups_list(ctx, opt.groups) != 1)
        die("-G %s: no such group", opt.groups);
    struct counts *cnt = &shared[id];
    double end = now() + opt.seconds;
    bool first = id == 0;
    while (now() < end) {
        one(ctx, cnt, first);
        first = false;
        if (cnt->errors > 1000)
            break;
    }
    SSL_CTX_free(ctx);
    _exit(0);
}

static char *auth_plain(const char *spec)
{
    const char *colon = strchr(spec, ':');
    if (colon == NULL)
        die("-a %s: not USER:PASSWORD", spec);
    unsigned char raw[600];
    size_t ul = (size_t)(colon - spec), pl = strlen(colon + 1);
    if (ul + pl + 2 > sizeof raw)
        die("-a: too long");
    raw[0] = 0;
    memcpy(raw + 1, spec, ul);
    raw[1 + ul] = 0;
    memcpy(raw + 2 + ul, colon + 1, pl);
    size_t n = ul + pl + 2;
    char *out = malloc(32 + 4 * (n / 3 + 1));
    int k = sprintf(out, "AUTH PLAIN ");
    k += EVP_EncodeBlock((unsigned char *)out + k, raw, (int)n);
    strcpy(out + k, "\r\n");
    return out;
}

/* opt.size octets of headers and body (lines of 78 with CRLF), then ".\r\n". */
static void build_message(void)
{
    char hdr[512];
    int h = snprintf(hdr, sizeof hdr,
                     "From: <%s>\r\nTo: <%s>\r\nSubject: kotak tls bench\r\n"
                     "Message-ID: <%d@bench.example.test>\r\n"
                     "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n",
                     opt.from, opt.to, (int)getpid());
    size_t total = (size_t)opt.size > (size_t)h + 2 ? (size_t)opt.size : (size_t)h + 2;
    message = malloc(total + 3);
    memcpy(message, hdr, (size_t)h);
    size_t off = (size_t)h;
    while (off < total) {
        size_t left = total - off, text = left <= 80 ? left - 2 : 76;
        for (size_t i = 0; i < text; i++)
            message[off + i] = (char)('a' + (i + off) % 26);
        off += text;
        message[off++] = '\r';
        message[off++] = '\n';
    }
    memcpy(message + off, ".\r\n", 3);
    message_len = off + 3;
}

static void usage(int st)
{
    fprintf(st ? stderr : stdout,
            "usage: tls_load [-c K] [-L SECONDS] [-P smtp|pop3] [-S] [-q] [-m [-a USER:PW] [-l SIZE]\n"
            "                [-f FROM] [-t RCPT]] [-C CIPHERS] [-G GROUPS] IP:PORT\n"
            "  -c K      worker processes, one connection at a time each (4)\n"
            "  -L S      run for S seconds (10)\n"
            "  -P        greeting to wait for: smtp (220) or pop3 (+OK) (smtp)\n"
            "  -S        STARTTLS / STLS first (default: implicit TLS)\n"
            "  -q        ACK the server's last handshake flight at once (TCP_QUICKACK)\n"
            "  -m        send one message per connection (SMTP): EHLO, AUTH, MAIL RCPT DATA, QUIT\n"
            "  -C        TLS 1.2 cipher list (ECDHE-ECDSA-AES128-GCM-SHA256; empty: OpenSSL's)\n"
            "  -G        key-exchange groups, e.g. X25519 or P-256 (OpenSSL's default list)\n");
    exit(st);
}

int main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "c:L:P:Smqa:l:f:t:C:G:h")) != -1) {
        switch (ch) {
        case 'c': opt.clients = atoi(optarg); break;
        case 'L': opt.seconds = atof(optarg); break;
        case 'P':
            if (strcmp(optarg, "smtp") == 0) opt.proto = P_SMTP;
            else if (strcmp(optarg, "pop3") == 0) opt.proto = P_POP3;
            else usage(2);
            break;
        case 'S': opt.starttls = true; break;
        case 'm': opt.message = true; break;
        case 'q': opt.quickack = true; break;
        case 'a': opt.auth = auth_plain(optarg); break;
        case 'l': opt.size = atol(optarg); break;
        case 'f': opt.from = optarg; break;
        case 't': opt.to = optarg; break;
        case 'C': opt.ciphers = optarg; break;
        case 'G': opt.groups = optarg; break;
        case 'h': usage(0); break;
        default: usage(2);
        }
    }
    if (optind + 1 != argc || opt.clients < 1 || opt.seconds <= 0)
        usage(2);
    if (opt.message && opt.proto != P_SMTP)
        die("-m is for SMTP");
    char host[64];
    const char *colon = strrchr(argv[optind], ':');
    if (colon == NULL || (size_t)(colon - argv[optind]) >= sizeof host)
        usage(2);
    memcpy(host, argv[optind], (size_t)(colon - argv[optind]));
    host[colon - argv[optind]] = '\0';
    opt.dst.sin_family = AF_INET;
    opt.dst.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &opt.dst.sin_addr) != 1)
        die("%s: not an IPv4 address", host);
    if (opt.message)
        build_message();
    signal(SIGPIPE, SIG_IGN);
    shared = mmap(NULL, (size_t)opt.clients * sizeof *shared, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    memset(shared, 0, (size_t)opt.clients * sizeof *shared);
    fflush(stdout);
    double t0 = now();
    for (int i = 0; i < opt.clients; i++) {
        pid_t p = fork();
        if (p < 0)
            die("fork: %s", strerror(errno));
        if (p == 0)
            worker(i);
    }
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    double secs = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    long conns = 0, msgs = 0, errs = 0;
    for (int i = 0; i < opt.clients; i++) {
        conns += shared[i].conns;
        msgs += shared[i].msgs;
        errs += shared[i].errors;
    }
    printf("tls_load clients=%d mode=%s tls=%s quickack=%d connections=%ld messages=%ld errors=%ld "
           "seconds=%.3f conns_per_s=%.1f msgs_per_s=%.1f client_cpu_s=%.3f "
           "client_cpu_us_per_conn=%.0f cipher=%s group=%s\n",
           opt.clients, opt.message ? "message" : "handshake",
           opt.starttls ? "starttls" : "implicit", opt.quickack, conns, msgs, errs, secs, conns / secs,
           msgs / secs, cpu, conns ? cpu / (double)conns * 1e6 : 0,
           shared[0].cipher[0] ? shared[0].cipher : "-", shared[0].group[0] ? shared[0].group : "-");
    return conns > 0 && errs == 0 ? 0 : 1;
}
