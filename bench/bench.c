/*
 * bench.c — the pieces kotak's load generators share; see bench.h.
 *
 * The TLS client mirrors what common/tls.c does on the server side: mbedTLS
 * never touches a socket; ciphertext goes in through btls_feed and comes out
 * of btls_out, so the same code serves a libuv loop (smtp_load, pop3_load)
 * and a blocking socket (idle_hold).
 */
#include "bench.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>

extern const char *bench_prog;

/* --- misc --------------------------------------------------------------- */

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", bench_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

void *bench_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

void *bench_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

double bench_now(void)
{
    return (double)uv_hrtime() / 1e9;
}

int bench_parse_hostport(const char *s, struct sockaddr_storage *sa_r)
{
    char host[256];
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= sizeof host)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port == 0 || port > 65535)
        return -1;
    memset(sa_r, 0, sizeof *sa_r);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa_r) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)sa_r) == 0)
        return 0;
    return -1;
}

int bench_parse_ip(const char *s, struct sockaddr_storage *sa_r)
{
    memset(sa_r, 0, sizeof *sa_r);
    if (uv_ip4_addr(s, 0, (struct sockaddr_in *)sa_r) == 0)
        return 0;
    if (uv_ip6_addr(s, 0, (struct sockaddr_in6 *)sa_r) == 0)
        return 0;
    return -1;
}

void bench_ip_add(const struct sockaddr_storage *base, unsigned n, struct sockaddr_storage *out)
{
    *out = *base;
    if (base->ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)out;
        in->sin_addr.s_addr = htonl(ntohl(in->sin_addr.s_addr) + n);
    }
}

long long bench_parse_size(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || v < 0)
        return -1;
    switch (toupper((unsigned char)*end)) {
    case '\0':
        return v;
    case 'K':
        v <<= 10;
        break;
    case 'M':
        v <<= 20;
        break;
    case 'G':
        v <<= 30;
        break;
    default:
        return -1;
    }
    return end[1] == '\0' ? v : -1;
}

long bench_raise_nofile(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if ((long)rl.rlim_cur >= want)
        return (long)rl.rlim_cur;
    if (rl.rlim_max != RLIM_INFINITY && (long)rl.rlim_max < want) {
        struct rlimit up = {(rlim_t)want, (rlim_t)want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) /* root (CAP_SYS_RESOURCE) only */
            return want;
    }
    rl.rlim_cur =
        rl.rlim_max == RLIM_INFINITY || (long)rl.rlim_max >= want ? (rlim_t)want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    return (long)rl.rlim_cur;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_percentile(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    /* Nearest rank: the smallest value with at least p% of the values at or below it. */
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

/* --- users --------------------------------------------------------------- */

static char *xstrndup(const char *s, size_t n)
{
    char *p = bench_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void add_user(struct bench_user **u, size_t *n, size_t *cap, const char *name,
                     const char *domain, const char *pass_fmt)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *u = bench_xrealloc(*u, *cap * sizeof **u);
    }
    struct bbuf a = {0}, p = {0};
    const char *at = strchr(name, '@');
    size_t local_len = at ? (size_t)(at - name) : strlen(name);
    if (at)
        bbuf_printf(&a, "%s", name);
    else
        bbuf_printf(&a, "%s@%s", name, domain);
    size_t d = local_len;
    while (d > 0 && isdigit((unsigned char)name[d - 1]))
        d--;
    for (const char *f = pass_fmt; *f; f++) {
        if (strncmp(f, "{n}", 3) == 0) {
            bbuf_append(&p, name + d, local_len - d);
            f += 2;
        } else if (strncmp(f, "{u}", 3) == 0) {
            bbuf_append(&p, name, local_len);
            f += 2;
        } else {
            bbuf_append(&p, f, 1);
        }
    }
    bbuf_append(&a, "", 1);
    bbuf_append(&p, "", 1);
    (*u)[*n].address = a.data;
    (*u)[*n].password = p.data;
    (*n)++;
}

size_t bench_users(const char *spec, const char *domain, const char *pass_fmt,
                   struct bench_user **users_r)
{
    struct bench_user *u = NULL;
    size_t n = 0, cap = 0;
    const char *s = spec;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char *item = xstrndup(s, len);
        char *dash = strchr(item, '-');
        if (dash != NULL && strchr(item, '@') == NULL) {
            /* user21-user40: the same prefix, a range of numbers */
            *dash = '\0';
            const char *a = item, *b = dash + 1;
            size_t pa = strlen(a), pb = strlen(b);
            while (pa > 0 && isdigit((unsigned char)a[pa - 1]))
                pa--;
            while (pb > 0 && isdigit((unsigned char)b[pb - 1]))
                pb--;
            if (a[pa] == '\0' || b[pb] == '\0')
                bench_die("'%s-%s' is not a range like user21-user40", a, b);
            long lo = strtol(a + pa, NULL, 10), hi = strtol(b + pb, NULL, 10);
            for (long i = lo; i <= hi; i++) {
                char name[256];
                if (snprintf(name, sizeof name, "%.*s%ld", (int)pa, a, i) >= (int)sizeof name)
                    bench_die("user name too long in '%s'", spec);
                add_user(&u, &n, &cap, name, domain, pass_fmt);
            }
        } else if (len > 0) {
            add_user(&u, &n, &cap, item, domain, pass_fmt);
        }
        free(item);
        s += len;
        if (*s == ',')
            s++;
    }
    *users_r = u;
    return n;
}

/* --- byte buffer ----------------------------------------------------------- */

static void bbuf_reserve(struct bbuf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    b->data = bench_xrealloc(b->data, cap);
    b->cap = cap;
}

void bbuf_append(struct bbuf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    bbuf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void bbuf_printf(struct bbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    bbuf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void bbuf_consume(struct bbuf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

ssize_t bbuf_take_line(struct bbuf *b, const char **p, size_t *n)
{
    const char *nl = memchr(*p, '\n', *n);
    size_t take = nl ? (size_t)(nl - *p) + 1 : *n;
    bbuf_append(b, *p, take);
    *p += take;
    *n -= take;
    if (nl == NULL)
        return -1;
    bbuf_append(b, "", 1);
    size_t len = strcspn(b->data, "\r\n");
    b->data[len] = '\0';
    return (ssize_t)len;
}

void bbuf_free(struct bbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* --- TLS client ------------------------------------------------------------- */

static mbedtls_entropy_context tls_entropy;
static mbedtls_ctr_drbg_context tls_drbg;
static mbedtls_ssl_config tls_conf;
static bool tls_ready;

struct btls {
    mbedtls_ssl_context ssl;
    struct bbuf in; /* in.data[in_off..len) not yet taken by mbedTLS */
    size_t in_off;
    struct bbuf out;
};

void btls_global_init(void)
{
    if (tls_ready)
        return;
    static const char pers[] = "kotak-bench";
    mbedtls_entropy_init(&tls_entropy);
    mbedtls_ctr_drbg_init(&tls_drbg);
    mbedtls_ssl_config_init(&tls_conf);
    if (mbedtls_ctr_drbg_seed(&tls_drbg, mbedtls_entropy_func, &tls_entropy,
                              (const unsigned char *)pers, sizeof pers - 1) != 0)
        bench_die("cannot seed mbedTLS's random generator");
    if (mbedtls_ssl_config_defaults(&tls_conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        bench_die("cannot set up mbedTLS");
    mbedtls_ssl_conf_min_version(&tls_conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&tls_conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    /* A load generator on loopback against self-signed certificates. */
    mbedtls_ssl_conf_authmode(&tls_conf, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_rng(&tls_conf, mbedtls_ctr_drbg_random, &tls_drbg);
    tls_ready = true;
}

static int bio_recv(void *ctx, unsigned char *p, size_t n)
{
    struct btls *t = ctx;
    size_t avail = t->in.len - t->in_off;
    if (avail == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (n > avail)
        n = avail;
    if (n > INT_MAX)
        n = INT_MAX;
    memcpy(p, t->in.data + t->in_off, n);
    t->in_off += n;
    if (t->in_off == t->in.len) {
        t->in.len = 0;
        t->in_off = 0;
    }
    return (int)n;
}

static int bio_send(void *ctx, const unsigned char *p, size_t n)
{
    struct btls *t = ctx;
    if (n > INT_MAX)
        n = INT_MAX;
    bbuf_append(&t->out, p, n);
    return (int)n;
}

struct btls *btls_new(void)
{
    btls_global_init();
    struct btls *t = bench_xmalloc(sizeof *t);
    memset(t, 0, sizeof *t);
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &tls_conf) != 0)
        abort();
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    return t;
}

void btls_free(struct btls **tp)
{
    struct btls *t = *tp;
    if (t == NULL)
        return;
    mbedtls_ssl_free(&t->ssl);
    bbuf_free(&t->in);
    bbuf_free(&t->out);
    free(t);
    *tp = NULL;
}

void btls_feed(struct btls *t, const void *p, size_t n)
{
    if (t->in_off > 0) {
        bbuf_consume(&t->in, t->in_off);
        t->in_off = 0;
    }
    bbuf_append(&t->in, p, n);
}

int btls_handshake(struct btls *t)
{
    int rc = mbedtls_ssl_handshake(&t->ssl);
    if (rc == 0)
        return 1;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 0;
    return -1;
}

ssize_t btls_read(struct btls *t, void *p, size_t n)
{
    if (n > INT_MAX)
        n = INT_MAX;
    int rc = mbedtls_ssl_read(&t->ssl, p, n);
    if (rc > 0)
        return rc;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 0;
    return -1;
}

int btls_write(struct btls *t, const void *p, size_t n)
{
    const unsigned char *q = p;
    while (n > 0) {
        int rc = mbedtls_ssl_write(&t->ssl, q, n);
        if (rc <= 0)
            return -1;
        q += rc;
        n -= (size_t)rc;
    }
    return 0;
}

struct bbuf *btls_out(struct btls *t)
{
    return &t->out;
}

/* --- libuv connection ----------------------------------------------------------- */

struct wreq {
    uv_write_t req;
    struct bconn *c;
    void (*done)(struct bconn *c);
    char data[]; /* the copy, when not static */
};

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct bconn *c = h->data;
    buf->base = c->rbuf;
    buf->len = c->rbuf_size;
}

static void on_closed(uv_handle_t *h)
{
    struct bconn *c = h->data;
    btls_free(&c->tls);
    free(c->rbuf);
    c->rbuf = NULL;
    c->open = false;
    if (c->ops->closed)
        c->ops->closed(c);
}

void bconn_close(struct bconn *c)
{
    if (c->closing || !c->open)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = req->data;
    struct bconn *c = w->c;
    if (status == 0 && w->done && !c->closing)
        w->done(c);
    free(w);
}

/* Sends raw bytes on the socket: what the kernel takes now, the rest queued. */
static void raw_write(struct bconn *c, const char *p, size_t n, bool is_static,
                      void (*done)(struct bconn *c))
{
    if (c->closing)
        return;
    c->bytes_out += n;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (w > 0) {
        p += w;
        n -= (size_t)w;
    }
    if (n == 0) {
        if (done)
            done(c);
        return;
    }
    if (w < 0 && w != UV_EAGAIN) {
        if (c->ops->eof)
            c->ops->eof(c, w);
        bconn_close(c);
        return;
    }
    struct wreq *r = bench_xmalloc(sizeof *r + (is_static ? 0 : n));
    r->c = c;
    r->done = done;
    r->req.data = r;
    if (!is_static) {
        memcpy(r->data, p, n);
        p = r->data;
    }
    b = uv_buf_init((char *)p, (unsigned)n);
    int rc = uv_write(&r->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc != 0) {
        free(r);
        if (c->ops->eof)
            c->ops->eof(c, rc);
        bconn_close(c);
    }
}

static void flush_tls(struct bconn *c, void (*done)(struct bconn *c))
{
    struct bbuf *out = btls_out(c->tls);
    if (out->len > 0) {
        raw_write(c, out->data, out->len, false, done);
        out->len = 0;
    } else if (done) {
        done(c);
    }
}

void bconn_write(struct bconn *c, const void *p, size_t n, bool is_static,
                 void (*done)(struct bconn *c))
{
    if (c->closing)
        return;
    if (c->tls == NULL) {
        raw_write(c, p, n, is_static, done);
        return;
    }
    if (btls_write(c->tls, p, n) < 0) {
        if (c->ops->eof)
            c->ops->eof(c, UV_EPROTO);
        bconn_close(c);
        return;
    }
    flush_tls(c, done);
}

static void drive_tls(struct bconn *c)
{
    if (c->handshaking) {
        int rc = btls_handshake(c->tls);
        flush_tls(c, NULL);
        if (rc < 0) {
            if (c->ops->eof)
                c->ops->eof(c, UV_EPROTO);
            bconn_close(c);
            return;
        }
        if (rc == 0)
            return;
        c->handshaking = false;
        if (c->ops->tls_ready)
            c->ops->tls_ready(c);
        if (c->closing)
            return;
    }
    char plain[16384];
    for (;;) {
        ssize_t r = btls_read(c->tls, plain, sizeof plain);
        if (r == 0)
            break;
        if (r < 0) {
            if (c->ops->eof)
                c->ops->eof(c, UV_EOF);
            bconn_close(c);
            return;
        }
        c->ops->data(c, plain, (size_t)r);
        if (c->closing || c->tls == NULL)
            return;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct bconn *c = s->data;
    if (c->closing)
        return;
    if (nread < 0) {
        if (c->ops->eof)
            c->ops->eof(c, (int)nread);
        bconn_close(c);
        return;
    }
    if (nread == 0)
        return;
    c->bytes_in += (uint64_t)nread;
    if (c->tls == NULL) {
        c->ops->data(c, buf->base, (size_t)nread);
        return;
    }
    btls_feed(c->tls, buf->base, (size_t)nread);
    drive_tls(c);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct bconn *c = req->data;
    if (c->closing)
        return;
    if (status == 0)
        status = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (c->ops->connected)
        c->ops->connected(c, status);
    if (status < 0)
        bconn_close(c);
}

int bconn_connect(uv_loop_t *loop, struct bconn *c, const struct bconn_ops *ops, void *ctx,
                  const struct sockaddr *dst, const struct sockaddr *src, size_t rbuf_size)
{
    c->ops = ops;
    c->ctx = ctx;
    c->tls = NULL;
    c->handshaking = c->closing = false;
    c->bytes_in = c->bytes_out = 0;
    int rc = uv_tcp_init(loop, &c->tcp);
    if (rc != 0)
        return rc;
    c->tcp.data = c;
    c->creq.data = c;
    c->open = true;
    c->rbuf_size = rbuf_size;
    c->rbuf = bench_xmalloc(rbuf_size);
    uv_tcp_nodelay(&c->tcp, 1);
    if (src != NULL && (rc = uv_tcp_bind(&c->tcp, src, 0)) != 0)
        goto fail;
    if ((rc = uv_tcp_connect(&c->creq, &c->tcp, dst, on_connected)) != 0)
        goto fail;
    return 0;
fail:
    /* The handle exists: close it, quietly. */
    c->closing = true;
    {
        static const struct bconn_ops quiet = {0};
        c->ops = &quiet;
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
    return rc;
}

void bconn_start_tls(struct bconn *c)
{
    c->tls = btls_new();
    c->handshaking = true;
    drive_tls(c);
}

/* --- /proc memory ------------------------------------------------------------- */

static long status_kib(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (p == NULL)
        return 0;
    return strtol(p + strlen(key), NULL, 10);
}

static bool name_listed(const char *names, const char *comm, long pid)
{
    const char *s = names;
    size_t cl = strlen(comm);
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len > 4 && strncmp(s, "pid:", 4) == 0) {
            if (strtol(s + 4, NULL, 10) == pid)
                return true;
        } else if (len == cl && memcmp(s, comm, len) == 0) {
            return true;
        }
        s += len;
        if (*s == ',')
            s++;
    }
    return false;
}

static size_t read_small(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n;
}

void bench_mem_read(const char *names, struct bench_mem *m)
{
    memset(m, 0, sizeof *m);
    DIR *d = opendir("/proc");
    if (d == NULL)
        return;
    struct dirent *e;
    char path[64], text[8192];
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        long pid = strtol(e->d_name, NULL, 10);
        snprintf(path, sizeof path, "/proc/%ld/comm", pid);
        if (read_small(path, text, sizeof text) == 0)
            continue;
        text[strcspn(text, "\n")] = '\0';
        if (!name_listed(names, text, pid))
            continue;
        snprintf(path, sizeof path, "/proc/%ld/status", pid);
        if (read_small(path, text, sizeof text) == 0)
            continue;
        long rss = status_kib(text, "VmRSS:"), hwm = status_kib(text, "VmHWM:");
        snprintf(path, sizeof path, "/proc/%ld/smaps_rollup", pid);
        if (read_small(path, text, sizeof text) == 0)
            continue;
        m->rss_kib += rss;
        m->hwm_kib += hwm;
        m->pss_kib += status_kib(text, "\nPss:");
        m->procs++;
    }
    closedir(d);
}
