/*
 * bench.h — what kotak's load generators share: a growable byte buffer, a
 * TLS client over memory buffers (mbedTLS), a libuv client connection that
 * may speak TLS, user lists, percentiles, /proc memory readings.
 *
 * The tools are clients, built apart from kotak (bench/ is its own meson
 * project), so nothing here links against kotak's own libraries: a bug in
 * the server's buffer or TLS code must not hide behind the same bug in its
 * load generator.
 */
#ifndef KOTAK_BENCH_H
#define KOTAK_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

/* --- misc --------------------------------------------------------------- */

/* Prints "PROG: message" on stderr and exits with status 2. */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

void *bench_xmalloc(size_t n);
void *bench_xrealloc(void *p, size_t n);

/* Monotonic time in seconds, from uv_hrtime. */
double bench_now(void);

/* "HOST:PORT" or "[V6]:PORT" into *sa_r; 0 or -1. */
int bench_parse_hostport(const char *s, struct sockaddr_storage *sa_r);

/* "127.0.0.2" (port 0) into *sa_r; 0 or -1. */
int bench_parse_ip(const char *s, struct sockaddr_storage *sa_r);

/* The n-th IPv4 address after base (127.0.0.2 + 3 = 127.0.0.5). */
void bench_ip_add(const struct sockaddr_storage *base, unsigned n, struct sockaddr_storage *out);

/* Parses a positive integer with an optional K/M/G suffix (powers of 1024). */
long long bench_parse_size(const char *s);

/* Raises RLIMIT_NOFILE so that at least want descriptors may be open; returns the new soft
 * limit (which may be lower than want if even root may not go that high). */
long bench_raise_nofile(long want);

/* p-th percentile (0..100) of v[0..n), which it sorts; 0 when n is 0. */
double bench_percentile(double *v, size_t n, double p);

/* --- users --------------------------------------------------------------- */

struct bench_user {
    char *address;  /* user21@example.test */
    char *password; /* pass21 */
};

/*
 * Expands SPEC ("user21-user40,alice") into users: a name without '@' gets
 * "@" domain appended; the password is pass_fmt with "{n}" replaced by the
 * name's trailing number and "{u}" by the local part. Returns the count and a
 * new array in *users_r (never freed: the tools live as long as it).
 */
size_t bench_users(const char *spec, const char *domain, const char *pass_fmt,
                   struct bench_user **users_r);

/* --- byte buffer ----------------------------------------------------------- */

struct bbuf {
    char *data;
    size_t len, cap;
};

void bbuf_append(struct bbuf *b, const void *p, size_t n);
void bbuf_printf(struct bbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bbuf_consume(struct bbuf *b, size_t n);
void bbuf_free(struct bbuf *b);

/*
 * Moves input from *p (*n octets) into b, up to and including the first LF,
 * and advances *p and *n past it. Returns the length of the line then whole
 * in b (NUL-terminated, its CR LF cut off; the caller empties b when done
 * with it), or -1 when the input ran out first.
 */
ssize_t bbuf_take_line(struct bbuf *b, const char **p, size_t *n);

/* --- TLS client over memory buffers ----------------------------------------- */

struct btls;

/* Sets up the shared client config once (no certificate check: the servers under test use
 * self-signed certificates on loopback). TLS 1.2, the library's default suites. */
void btls_global_init(void);

struct btls *btls_new(void);
void btls_free(struct btls **t);
/* Ciphertext from the server, copied. */
void btls_feed(struct btls *t, const void *p, size_t n);
/* 1 done, 0 wants more input, -1 failed. */
int btls_handshake(struct btls *t);
/* Plaintext: >0 bytes, 0 wants more input, -1 error or close_notify. */
ssize_t btls_read(struct btls *t, void *p, size_t n);
/* Encrypts all of p into the outgoing buffer; 0 or -1. */
int btls_write(struct btls *t, const void *p, size_t n);
/* The ciphertext waiting to be sent: btls_out(t)->data, ->len; the caller consumes it. */
struct bbuf *btls_out(struct btls *t);

/* --- a libuv client connection, plaintext or TLS ---------------------------- */

struct bconn;

struct bconn_ops {
    void (*connected)(struct bconn *c, int status);         /* status < 0: failed; close follows */
    void (*data)(struct bconn *c, const char *p, size_t n); /* plaintext from the server */
    void (*tls_ready)(struct bconn *c);       /* after bconn_start_tls: handshake done */
    void (*eof)(struct bconn *c, int status); /* the server closed or an error; close follows */
    void (*closed)(struct bconn *c);          /* the handle is gone; c may be reused */
};

struct bconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    const struct bconn_ops *ops;
    void *ctx;
    struct btls *tls;
    bool handshaking, closing, open;
    char *rbuf;
    size_t rbuf_size;
    uint64_t bytes_in, bytes_out;
};

/*
 * Starts a connection to dst, from src when src is not NULL (bind before connect, port
 * chosen by the kernel). rbuf_size is the read buffer. Returns 0 or a libuv error (then
 * nothing was started and no callback comes).
 */
int bconn_connect(uv_loop_t *loop, struct bconn *c, const struct bconn_ops *ops, void *ctx,
                  const struct sockaddr *dst, const struct sockaddr *src, size_t rbuf_size);

/* Sends plaintext (encrypted once TLS is on). With is_static the bytes are not copied
 * and must stay valid until sent; done, if not NULL, is called once they are all in the
 * kernel (possibly before bconn_write returns). */
void bconn_write(struct bconn *c, const void *p, size_t n, bool is_static,
                 void (*done)(struct bconn *c));

/* Starts the TLS handshake (after STARTTLS/STLS was accepted, or right after connect). */
void bconn_start_tls(struct bconn *c);

/* Closes; ops->closed follows. Safe to call twice. */
void bconn_close(struct bconn *c);

/* --- /proc memory ------------------------------------------------------------- */

struct bench_mem {
    int procs;
    long rss_kib, pss_kib, hwm_kib;
};

/* Sums VmRSS, VmHWM (/proc/PID/status) and Pss (/proc/PID/smaps_rollup) over the processes
 * whose comm is one of the comma-separated names, or whose pid is listed as "pid:N". */
void bench_mem_read(const char *names, struct bench_mem *m_r);

#endif
