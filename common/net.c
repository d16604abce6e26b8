/*
 * net.c — libuv listeners and connections with optional TLS; see net.h.
 *
 * Memory per idle connection is kept small on purpose: the connection
 * struct with its two libuv handles, an input buffer that is empty until
 * bytes arrive, and no read buffer of its own — every read lands in one
 * buffer shared by the server, and is moved to the connection (or through
 * TLS) before the callback returns.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "throttle.h"
#include "util.h"

#define NET_READ_BUF (64 * 1024)
#define NET_CLOSE_GRACE_MS 10000 /* how long a closing peer may take to read our last words */
#define NET_IP_BUCKETS 1024
#define NET_TLS_NOISE_MAX 8 /* renegotiation requests before the connection ends */

enum conn_mode { MODE_PLAIN, MODE_HANDSHAKE, MODE_TLS };

struct connect_args;

struct net_listener {
    uv_tcp_t tcp;
    struct net_server *srv;
    const struct net_proto *proto;
    void *ctx;
    bool implicit_tls;
    bool closed;    /* its socket is closed (after a stop) */
    size_t n_conns; /* open connections accepted here */
    char refused[160];
    struct net_listener *next;
};

/* Connections from one client address, for connections_per_address. */
struct ip_count {
    uint8_t ip[16];
    uint64_t n;
    struct ip_count *next;
};

struct net_server {
    uv_loop_t *loop;
    struct tls_server *tls;
    struct net_limits limits;
    char name[16];
    struct net_listener *listeners;
    size_t n_listeners;
    /* Open connections, newest first: a doubly linked list, with its tail
     * kept so the oldest is found first when room must be made. */
    struct net_conn *conns, *oldest;
    size_t n_conns;
    bool stressed; /* slots run short: see update_stress */
    uint32_t next_id;
    struct ip_count *ips[NET_IP_BUCKETS];
    char read_buf[NET_READ_BUF];
};

struct net_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* connect, handshake, idle, or closing grace */
    uv_connect_t connect_req;
    struct net_server *srv;
    struct net_listener *l; /* NULL for a connection of ours (net_connect) */
    const struct net_proto *proto;
    void *ctx; /* the protocol's, once opened (from the start when outbound) */
    struct tls_conn *tls;
    enum conn_mode mode;
    bool opened, paused, reading, closing, closed, in_input, redeliver;
    bool opening, finish_after_open; /* a close inside proto->open waits for its ctx */
    bool eof;     /* the peer has sent all it will */
    bool engaged; /* logged in or in a transaction: see net_conn_set_engaged */
    bool outbound, connecting; /* made by net_connect; its connect is under way */
    const char *failure;       /* why an outbound connection got nowhere: see net_conn_failure */
    struct connect_args *connect_args; /* implicit TLS to begin once connected */
    bool output_blocked; /* input waits until the peer takes our output */
    bool stepping;       /* a handshake step runs in the thread pool, or waits: handshake_step */
    struct net_conn *next_step; /* the next connection whose step waits for its turn */
    unsigned tls_noise;  /* records that made TLS answer and brought no data */
    const char *tls_end; /* why net ended TLS when the engine did not fail */
    int handles; /* libuv handles not yet closed */
    struct buf in;
    size_t pending; /* bytes handed to uv_write and not yet written */
    bool above_water;
    struct ip_count *ip;
    char peer[64];
    uint8_t peer16[16];
    char id[12];
    struct net_conn *prev, *next;
};

struct write_req {
    uv_write_t req;
    struct net_conn *c;
    size_t len;
    char data[];
};

static void conn_update_reading(struct net_conn *c);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b);
static void conn_finish(struct net_conn *c);
static void arm_idle(struct net_conn *c);
static void deliver(struct net_conn *c);
static void update_stress(struct net_server *srv);
static void peer_of(struct net_conn *c);
static struct net_conn *conn_new(struct net_server *srv, const struct net_proto *proto);
static size_t read_room(const struct net_conn *c);

/* --- per-address counts ------------------------------------------------- */


static unsigned ip_hash(const uint8_t ip[16])
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ ip[i]) * 16777619u;
    return h % NET_IP_BUCKETS;
}

static struct ip_count *ip_get(struct net_server *srv, const uint8_t peer16[16])
{
    uint8_t ip[16];
    throttle_prefix(peer16, ip); /* an IPv6 site's /64 is one client */
    struct ip_count **head = &srv->ips[ip_hash(ip)];
    for (struct ip_count *e = *head; e != NULL; e = e->next)
        if (memcmp(e->ip, ip, 16) == 0)
            return e;
    struct ip_count *e = xcalloc(1, sizeof(*e));
    memcpy(e->ip, ip, 16);
    e->next = *head;
    *head = e;
    return e;
}

static void ip_put(struct net_server *srv, struct ip_count *ip)
{
    if (--ip->n > 0)
        return;
    struct ip_count **p = &srv->ips[ip_hash(ip->ip)];
    while (*p != ip)
        p = &(*p)->next;
    *p = ip->next;
    free(ip);
}

/* --- server ------------------------------------------------------------- */

struct net_server *net_server_new(uv_loop_t *loop, struct tls_server *tls,
                                  const struct net_limits *limits, const char *name)
{
    struct net_server *srv = xcalloc(1, sizeof(*srv));
    srv->loop = loop;
    srv->tls = tls;
    srv->limits = *limits;
    snprintf(srv->name, sizeof(srv->name), "%s", name);
    srv->next_id = (uint32_t)time(NULL) << 8;
    return srv;
}

size_t net_server_count(const struct net_server *srv)
{
    return srv->n_conns;
}

void net_server_each(struct net_server *srv, void (*fn)(struct net_conn *c, void *ctx))
{
    for (struct net_conn *c = srv->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->opened && !c->closing)
            fn(c, c->ctx);
    }
}

/* A listener lives while its socket is open or a connection it took is:
 * those go on using its protocol after a stop. */
static void listener_closed(uv_handle_t *h)
{
    struct net_listener *l = h->data;
    l->closed = true;
    if (l->n_conns == 0)
        free(l);
}

static void listener_put(struct net_listener *l)
{
    if (--l->n_conns == 0 && l->closed)
        free(l);
}

void net_server_stop_listening(struct net_server *srv)
{
    for (struct net_listener *l = srv->listeners, *next; l != NULL; l = next) {
        next = l->next;
        l->tcp.data = l;
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
    }
    srv->listeners = NULL;
    srv->n_listeners = 0;
}

void net_server_set_tls(struct net_server *srv, struct tls_server *tls)
{
    srv->tls = tls;
}

void net_server_free(struct net_server **srvp)
{
    struct net_server *srv = *srvp;
    if (srv == NULL)
        return;
    net_server_stop_listening(srv);
    free(srv);
    *srvp = NULL;
}

/* --- writing ------------------------------------------------------------ */

static void write_done(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct net_conn *c = w->c;
    c->pending -= w->len;
    free(w);
    if (c->closed)
        return; /* cancelled as the socket closed: the protocol is gone */
    if (status < 0) {
        /* The peer is gone; nothing more can be said to it. */
        c->closing = true;
        conn_finish(c);
        return;
    }
    if (c->closing) {
        if (c->pending == 0)
            conn_finish(c);
        return;
    }
    if (c->mode != MODE_HANDSHAKE)
        arm_idle(c); /* the peer is taking what we send: not idle */
    if (c->above_water && c->pending < NET_LOW_WATER) {
        c->above_water = false;
        if (c->opened && c->proto->drain != NULL)
            c->proto->drain(c, c->ctx);
        if (c->output_blocked && !c->closed && !c->closing) {
            c->output_blocked = false; /* the peer reads again: so do we */
            deliver(c);
        }
    }
}

/* Sends bytes as they are: at once if the socket takes them, else queued. */
static int send_raw(struct net_conn *c, const void *p, size_t n)
{
    if (c->closed)
        return -EPIPE;
    const char *data = p;
    if (c->pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
        int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (w > 0) {
            data += w;
            n -= (size_t)w;
        } else if (w != UV_EAGAIN && w != UV_ENOSYS) {
            return w;
        }
    }
    if (n == 0)
        return 0;
    struct write_req *w = xmalloc(sizeof(*w) + n);
    memcpy(w->data, data, n);
    w->c = c;
    w->len = n;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_done);
    if (rc < 0) {
        free(w);
        return rc;
    }
    c->pending += n;
    if (c->pending >= NET_LOW_WATER)
        c->above_water = true;
    return 0;
}

static int flush_tls(struct net_conn *c)
{
    size_t len;
    const void *p = tls_conn_pending_out(c->tls, &len);
    if (len == 0)
        return 0;
    int rc = send_raw(c, p, len);
    tls_conn_consume_out(c->tls, len);
    return rc;
}

int net_conn_write(struct net_conn *c, const void *p, size_t n)
{
    if (c->closed)
        return -EPIPE;
    if (c->mode == MODE_PLAIN)
        return send_raw(c, p, n);
    if (c->mode != MODE_TLS || tls_conn_write(c->tls, p, n) < 0)
        return -EPROTO;
    return flush_tls(c);
}

size_t net_conn_pending(const struct net_conn *c)
{
    return c->pending;
}

/* --- closing ------------------------------------------------------------ */

static void conn_free(struct net_conn *c)
{
    tls_conn_free(&c->tls);
    buf_free(&c->in);
    free(c->connect_args);
    free(c);
}

static void handle_closed(uv_handle_t *h)
{
    struct net_conn *c = h->data;
    if (--c->handles > 0 || c->stepping)
        return; /* a handshake step still holds it: freed when it comes back */
    conn_free(c);
}

/* Really closes: the protocol is told, the handles go, the memory follows. */
static void conn_finish(struct net_conn *c)
{
    if (c->closed)
        return;
    if (c->opening) {
        /* The protocol closed from inside its open (a goodbye during a stop):
         * its close callback needs the ctx open has not returned yet. */
        c->finish_after_open = true;
        return;
    }
    c->closed = true;
    c->closing = true;
    if (c->mode == MODE_HANDSHAKE && !c->outbound)
        metrics_count(METRIC_TLS_FAILED); /* refused, timed out, or left mid-handshake */
    struct net_server *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        srv->oldest = c->prev;
    srv->n_conns--;
    if (c->ip != NULL)
        ip_put(srv, c->ip);
    if (c->l != NULL)
        update_stress(srv); /* slots are the listeners' */
    log_debug("%s conn=%s event=closed", srv->name, c->id);
    char why[NET_TLS_ERROR_MAX], v[NET_TLS_ERROR_MAX + 16];
    const char *tls_error =
        c->opened || c->outbound ? NULL : net_conn_tls_error(c, why, sizeof why);
    if ((c->opened || c->outbound) && c->proto->close != NULL) {
        c->proto->close(c, c->ctx);
    } else if (tls_error != NULL) {
        /* An implicit-TLS handshake that failed: no protocol saw it, and
         * this is the only line that tells why the client got nowhere. */
        log_info("%s conn=%s ip=%s event=disconnect tls_error=%s", srv->name, c->id, c->peer,
                 log_value(v, sizeof v, tls_error, strlen(tls_error)));
    }
    c->ctx = NULL;
    if (c->l != NULL)
        listener_put(c->l);
    uv_close((uv_handle_t *)&c->tcp, handle_closed);
    uv_close((uv_handle_t *)&c->timer, handle_closed);
}

static void grace_expired(uv_timer_t *t)
{
    conn_finish(t->data);
}

void net_conn_close(struct net_conn *c)
{
    if (c->closing || c->closed)
        return;
    c->closing = true;
    conn_update_reading(c);
    if (c->mode == MODE_TLS) {
        tls_conn_close_notify(c->tls);
        flush_tls(c);
    }
    if (c->pending == 0) {
        conn_finish(c);
        return;
    }
    uv_timer_start(&c->timer, grace_expired, NET_CLOSE_GRACE_MS, 0);
}

/* --- reading ------------------------------------------------------------ */

static void alloc_read(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct net_conn *c = h->data;
    /* Each read is used up before the next one starts, so one buffer serves
     * all; it is sized to the room left, so no read overfills a connection. */
    *b = uv_buf_init(c->srv->read_buf, (unsigned)read_room(c));
}

/* What the next read may bring: plaintext, or ciphertext TLS has not used yet. */
static size_t read_room(const struct net_conn *c)
{
    size_t held = c->mode == MODE_PLAIN ? c->in.len : tls_conn_waiting(c->tls);
    size_t room = held < NET_INPUT_MAX ? NET_INPUT_MAX - held : 0;
    return room < NET_READ_BUF ? room : NET_READ_BUF;
}

/*
 * Reading goes on while the protocol is paused, up to NET_INPUT_MAX: a
 * client waiting for an answer sends nothing, and the socket then stays
 * registered with the loop as it is, instead of leaving and rejoining it
 * around every wait.
 */
static void conn_update_reading(struct net_conn *c)
{
    bool want = !c->closing && !c->closed && !c->eof && !c->stepping && read_room(c) > 0;
    if (c->mode == MODE_TLS)
        want = want && c->in.len < NET_INPUT_MAX;
    if (want && !c->reading)
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, alloc_read, on_read) == 0;
    else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void idle_expired(uv_timer_t *t)
{
    struct net_conn *c = t->data;
    if (c->connecting) {
        c->failure = "connection timed out";
        conn_finish(c); /* the pending connect is cancelled as the socket closes */
        return;
    }
    if (c->mode == MODE_HANDSHAKE) {
        c->tls_end = "handshake timeout";
        conn_finish(c);
        return;
    }
    if (c->opened && c->proto->timeout != NULL)
        c->proto->timeout(c, c->ctx);
    else
        net_conn_close(c);
    /* The protocol waits on a result of its own: the peer is not idle. */
    if (!c->closing && !c->closed)
        arm_idle(c);
}

/*
 * The idle timer runs from the last progress — input the protocol used, or
 * output the peer took — not from the last byte, so a client that trickles
 * a byte at a time (slowloris) still times out.
 */
static void arm_idle(struct net_conn *c)
{
    const struct net_limits *lim = &c->srv->limits;
    uint64_t ms = c->mode == MODE_HANDSHAKE ? lim->tls_handshake_timeout_ms : lim->idle_timeout_ms;
    if (c->srv->stressed && !c->engaged && ms > lim->stress_idle_timeout_ms)
        ms = lim->stress_idle_timeout_ms;
    uv_timer_start(&c->timer, idle_expired, ms, 0);
}

static int tls_drain(struct net_conn *c);
static int flush_tls(struct net_conn *c);

/*
 * Hands the input to the protocol, one call at a time even when it resumes
 * from inside one, and again while it makes progress: with TLS, more
 * plaintext may wait inside the engine once the input buffer has room.
 */
static void deliver(struct net_conn *c)
{
    if (c->in_input) {
        c->redeliver = true;
        return;
    }
    c->in_input = true;
    for (;;) {
        c->redeliver = false;
        int drained = 0;
        if (c->mode == MODE_TLS && c->pending >= NET_LOW_WATER) {
            /* Decrypt nothing more until the peer reads: a record may make
             * TLS answer on its own, and the ciphertext waits (bounded). */
            c->output_blocked = true;
        } else if (c->mode == MODE_TLS) {
            size_t had = c->in.len, noise;
            drained = tls_drain(c);
            tls_conn_pending_out(c->tls, &noise);
            if (noise > 0 && c->in.len == had && ++c->tls_noise > NET_TLS_NOISE_MAX) {
                /* Records that only make TLS answer (renegotiation requests,
                 * each refused with an alert) hold the connection for nothing. */
                log_info("%s conn=%s ip=%s event=tls-noise", c->srv->name, c->id, c->peer);
                c->tls_end = "too many renegotiation requests";
                c->in_input = false;
                conn_finish(c);
                return;
            }
            flush_tls(c); /* what TLS answered on its own, as a no_renegotiation alert */
        }
        if (drained == -EPIPE) {
            c->eof = true; /* close_notify: the peer has said all it will */
        } else if (drained < 0) {
            c->in_input = false;
            conn_finish(c);
            return;
        }
        if (!c->opened || c->paused || c->closing || c->in.len == 0)
            break;
        if (c->pending >= NET_LOW_WATER) {
            /* The peer does not take what it was sent: hold its input (and
             * soon stop reading) until it does, whatever the state. */
            c->output_blocked = true;
            break;
        }
        size_t before = c->in.len;
        const uint8_t *lf = memchr(c->in.data, '\n', c->in.len);
        size_t first_line = lf ? (size_t)(lf - c->in.data) + 1 : SIZE_MAX;
        c->proto->input(c, c->ctx);
        if (c->closed)
            return; /* the struct is still valid until its handles close */
        /* Progress is a whole line used: bytes that merely trickle in, even
         * into a message, never count. */
        if (before - c->in.len >= first_line && !c->closing)
            arm_idle(c);
        if (c->in.len == before && !c->redeliver)
            break;
    }
    c->in_input = false;
    if (c->eof && !c->paused && !c->output_blocked && !c->closing && !c->closed) {
        /* What the peer sent before its end has been used: nothing more will
         * come. What it was answered still goes out before the close. */
        net_conn_close(c);
        return;
    }
    if (!c->closed)
        conn_update_reading(c);
}

static void conn_open(struct net_conn *c)
{
    c->opened = true;
    c->opening = true;
    c->ctx = c->proto->open(c, c->l != NULL ? c->l->ctx : c->ctx);
    c->opening = false;
    if (c->finish_after_open)
        conn_finish(c);
}

/* Decrypts what TLS holds into the input buffer. Returns <0 when the connection must end. */
static int tls_drain(struct net_conn *c)
{
    for (;;) {
        size_t room = NET_INPUT_MAX - c->in.len;
        if (room == 0)
            return 0; /* full: the rest waits inside TLS, and reading pauses */
        if (room > 16 * 1024)
            room = 16 * 1024;
        if (buf_reserve(&c->in, room) < 0)
            return -ENOMEM;
        ssize_t n = tls_conn_read(c->tls, c->in.data + c->in.len, room);
        if (n == 0)
            return 0;
        if (n < 0)
            return (int)n;
        c->in.len += (size_t)n;
    }
}

/*
 * A handshake step (the ECDHE key exchange and the signature of a full
 * handshake cost about 3 ms) runs in libuv's thread pool, so that the
 * handshakes of many clients use every core and the loop goes on serving
 * the other sessions meanwhile. While a step runs, or waits for its turn,
 * it owns the engine: the loop stops reading the socket, feeds nothing,
 * asks the engine nothing (net_conn_tls_error), and frees the connection
 * only once the step is back. The engine's shared parts are safe from
 * several threads (see tls.h).
 *
 * At most one step per core is in the pool at once, for the whole process
 * (one loop, so plain counters): a flood of handshakes then leaves the
 * pool's other threads (net_pool_size) to password checks, a message's
 * checks and deletions. The other steps wait here, oldest first.
 */
struct handshake_job {
    uv_work_t work;
    struct net_conn *c;
    int rc;
};

static unsigned steps_running;
static struct net_conn *steps_first, *steps_last; /* waiting for their turn, by next_step */

static unsigned pool_threads, steps_max; /* set once, by net_pool_size */

/* The cores this process may use (its CPU affinity), at most 64. */
static unsigned cores(void)
{
    unsigned n = uv_available_parallelism();
    return n < 1 ? 1 : n > 64 ? 64 : n;
}

unsigned net_pool_size(void)
{
    if (pool_threads != 0)
        return pool_threads;
    char n[16];
    snprintf(n, sizeof(n), "%u", cores() + 2 < 4 ? 4 : cores() + 2);
    setenv("UV_THREADPOOL_SIZE", n, 0); /* an administrator's own setting stands */
    /* As libuv reads it: atoi, 0 as 1, past 1024 (a negative one too, as unsigned) as 1024. */
    long pool = strtol(getenv("UV_THREADPOOL_SIZE"), NULL, 10);
    pool_threads = pool == 0 ? 1 : pool < 0 || pool > 1024 ? 1024 : (unsigned)pool;
    /* A pool the administrator made small still keeps two threads free. */
    steps_max = pool_threads > 2 ? pool_threads - 2 : 1;
    if (steps_max > cores())
        steps_max = cores();
    return pool_threads;
}

static void start_step(struct net_conn *c);

static void handshake_work(uv_work_t *w)
{
    struct handshake_job *job = w->data;
    job->rc = tls_conn_handshake(job->c->tls);
}

/* Hands the pool the steps that waited, as far as there is room; those of
 * connections closed meanwhile end here. */
static void start_waiting_steps(void)
{
    while (steps_running < steps_max && steps_first != NULL) {
        struct net_conn *c = steps_first;
        steps_first = c->next_step;
        if (steps_first == NULL)
            steps_last = NULL;
        c->next_step = NULL;
        if (!c->closed) {
            start_step(c);
            continue;
        }
        c->stepping = false;
        if (c->handles == 0)
            conn_free(c);
    }
}

static void handshake_done(uv_work_t *w, int status)
{
    struct handshake_job *job = w->data;
    struct net_conn *c = job->c;
    int rc = status < 0 ? -EPROTO : job->rc;
    free(job);
    steps_running--;
    start_waiting_steps();
    c->stepping = false;
    if (c->closed) {
        if (c->handles == 0)
            conn_free(c); /* its handles closed while the step ran */
        return;
    }
    flush_tls(c);
    if (rc < 0) {
        /* The reason goes on the disconnect line: net_conn_tls_error. */
        c->closing = true;
        if (c->pending == 0)
            conn_finish(c);
        else
            uv_timer_start(&c->timer, grace_expired, 1000, 0);
        conn_update_reading(c);
        return;
    }
    if (c->closing) {
        /* Closed while the step ran, with output still going out. */
        return;
    }
    if (rc == 0) {
        conn_update_reading(c); /* the next flight of the peer's */
        return;
    }
    c->mode = MODE_TLS;
    if (!c->outbound)
        metrics_count(tls_conn_resumed(c->tls) ? METRIC_TLS_RESUMED : METRIC_TLS_OK);
    arm_idle(c);
    if (!c->opened)
        conn_open(c);
    else if (c->proto->tls_started != NULL)
        c->proto->tls_started(c, c->ctx);
    if (c->closed || c->closing)
        return;
    deliver(c); /* application data that came with the peer's last flight */
}

static void start_step(struct net_conn *c)
{
    struct handshake_job *job = xmalloc(sizeof(*job));
    job->c = c;
    job->work.data = job;
    if (uv_queue_work(c->srv->loop, &job->work, handshake_work, handshake_done) != 0) {
        free(job);
        c->stepping = false;
        c->closing = true;
        conn_finish(c);
        return;
    }
    steps_running++;
}

static void handshake_step(struct net_conn *c)
{
    c->stepping = true;
    conn_update_reading(c);
    if (steps_max == 0) /* a program that did not size the pool: set nothing now, threads run */
        steps_max = cores();
    if (steps_running < steps_max && steps_first == NULL) {
        start_step(c);
        return;
    }
    if (steps_last != NULL)
        steps_last->next_step = c;
    else
        steps_first = c;
    steps_last = c;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct net_conn *c = stream->data;
    if (nread == 0)
        return;
    if (nread == UV_EOF && c->mode != MODE_HANDSHAKE && !c->closing) {
        /* Input that came before the end (read while paused) is still used. */
        c->eof = true;
        conn_update_reading(c);
        deliver(c);
        return;
    }
    if (nread < 0) {
        /* An error: the peer is gone, and so is whatever we queued. */
        if (c->mode == MODE_HANDSHAKE)
            c->tls_end = nread == UV_EOF ? "closed by the peer during the handshake"
                                         : "connection lost during the handshake";
        c->closing = true;
        conn_finish(c);
        return;
    }
    if (c->closing)
        return;
    if (c->mode == MODE_PLAIN) {
        if (buf_append(&c->in, b->base, (size_t)nread) < 0) {
            conn_finish(c);
            return;
        }
        deliver(c);
        return;
    }
    if (tls_conn_feed(c->tls, b->base, (size_t)nread) < 0) {
        conn_finish(c);
        return;
    }
    if (c->mode == MODE_HANDSHAKE) {
        handshake_step(c);
        return;
    }
    deliver(c);
}

struct buf *net_conn_input(struct net_conn *c)
{
    return &c->in;
}

void net_conn_set_engaged(struct net_conn *c, bool engaged)
{
    if (c->engaged == engaged)
        return;
    c->engaged = engaged;
    if (c->srv->stressed && !c->closing && !c->closed)
        arm_idle(c); /* from the short idle time to the full one, or back */
}

void net_conn_pause(struct net_conn *c)
{
    c->paused = true;
    conn_update_reading(c);
}

void net_conn_resume(struct net_conn *c)
{
    if (c->closed)
        return;
    c->paused = false;
    deliver(c);
}

void net_conn_start_tls(struct net_conn *c)
{
    if (c->srv->tls == NULL || c->mode != MODE_PLAIN) {
        net_conn_close(c);
        return;
    }
    buf_reset(&c->in); /* plaintext behind STARTTLS is never read as a command */
    c->tls = tls_conn_new(c->srv->tls);
    c->mode = MODE_HANDSHAKE;
    arm_idle(c);
    conn_update_reading(c);
}

/* Begins the client's side of TLS: the ClientHello goes out at once. */
static void start_client_tls(struct net_conn *c, struct tls_client *cli, const char *host)
{
    buf_reset(&c->in);
    c->tls = tls_client_connect(cli, host);
    c->mode = MODE_HANDSHAKE;
    arm_idle(c);
    if (tls_conn_handshake(c->tls) < 0) {
        c->closing = true;
        conn_finish(c);
        return;
    }
    flush_tls(c);
    conn_update_reading(c);
}

void net_conn_start_tls_client(struct net_conn *c, struct tls_client *cli, const char *host)
{
    if (c->mode != MODE_PLAIN || c->closing || c->closed) {
        net_conn_close(c);
        return;
    }
    start_client_tls(c, cli, host);
}

/* --- connecting --------------------------------------------------------- */

struct connect_args {
    struct tls_client *tls;
    char host[256];
};

static void connect_done(uv_connect_t *req, int status)
{
    struct net_conn *c = req->data;
    if (c->closed)
        return; /* timed out or stopped: the close cancelled the connect */
    c->connecting = false;
    struct connect_args *a = c->connect_args;
    c->connect_args = NULL;
    if (status < 0) {
        c->failure = uv_strerror(status);
        free(a);
        conn_finish(c);
        return;
    }
    peer_of(c);
    uv_tcp_nodelay(&c->tcp, 1);
    log_debug("%s conn=%s ip=%s event=connected", c->srv->name, c->id, c->peer);
    if (a != NULL) {
        start_client_tls(c, a->tls, a->host);
        free(a);
        return;
    }
    conn_open(c);
    if (!c->closed && !c->closing) {
        arm_idle(c);
        conn_update_reading(c);
    }
}

int net_connect(struct net_server *srv, const struct sockaddr *addr, const struct net_proto *proto,
                void *ctx, struct tls_client *tls, const char *tls_host, struct net_conn **c_r)
{
    struct net_conn *c = conn_new(srv, proto);
    c->outbound = true;
    c->engaged = true; /* ours: never dropped to make room */
    c->ctx = ctx;
    c->connecting = true;
    c->connect_req.data = c;
    if (tls != NULL) {
        struct connect_args *a = xcalloc(1, sizeof(*a));
        a->tls = tls;
        snprintf(a->host, sizeof(a->host), "%s", tls_host != NULL ? tls_host : "");
        c->connect_args = a;
    }
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, addr, connect_done);
    if (rc < 0) {
        free(c->connect_args);
        c->connect_args = NULL;
        c->outbound = false; /* the caller hears of it now, not through close */
        c->closing = true;
        conn_finish(c);
        return rc;
    }
    uv_timer_start(&c->timer, idle_expired, srv->limits.connect_timeout_ms, 0);
    *c_r = c;
    return 0;
}

const char *net_conn_failure(const struct net_conn *c)
{
    return c->failure;
}

/* --- accepting ---------------------------------------------------------- */

static void peer_of(struct net_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    memset(c->peer16, 0, 16);
    snprintf(c->peer, sizeof(c->peer), "unknown");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        c->peer16[10] = c->peer16[11] = 0xff;
        memcpy(c->peer16 + 12, &in->sin_addr, 4);
        inet_ntop(AF_INET, &in->sin_addr, c->peer, sizeof(c->peer));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        memcpy(c->peer16, &in6->sin6_addr, 16);
        /* An IPv4 client on a dual-stack socket (systemd's ListenStream=25)
         * is named as IPv4, as on an IPv4 socket: logs and fail2ban alike. */
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            inet_ntop(AF_INET, in6->sin6_addr.s6_addr + 12, c->peer, sizeof(c->peer));
        else
            inet_ntop(AF_INET6, &in6->sin6_addr, c->peer, sizeof(c->peer));
    }
}

/*
 * The most connections one listener may hold: all the slots but a reserve
 * for each other listener, an eighth of its even share, which a flood on
 * one port cannot take from the others.
 */
static size_t listener_reserve(const struct net_server *srv)
{
    size_t n = srv->n_listeners > 0 ? srv->n_listeners : 1;
    return srv->limits.connections / (8 * n);
}

static size_t listener_cap(const struct net_server *srv)
{
    size_t n = srv->n_listeners > 0 ? srv->n_listeners : 1;
    return srv->limits.connections - listener_reserve(srv) * (n - 1);
}

/*
 * Slots run short from three quarters full until back below half: then a
 * connection not yet engaged gets the short idle time, and the timers of
 * those already waiting are brought forward to it.
 */
static void update_stress(struct net_server *srv)
{
    size_t full = srv->limits.connections;
    bool stressed = srv->stressed ? srv->n_conns * 2 >= full : srv->n_conns * 4 >= full * 3;
    if (stressed == srv->stressed)
        return;
    srv->stressed = stressed;
    log_info("%s event=%s connections=%zu", srv->name, stressed ? "stress-begins" : "stress-ends",
             srv->n_conns);
    if (!stressed)
        return;
    uint64_t ms = srv->limits.stress_idle_timeout_ms;
    for (struct net_conn *c = srv->conns; c != NULL; c = c->next)
        if (!c->engaged && !c->closing && c->mode != MODE_HANDSHAKE &&
            uv_timer_get_due_in(&c->timer) > ms)
            uv_timer_start(&c->timer, idle_expired, ms, 0);
}

/* Closes the oldest connection not yet engaged (on l, or, when l is NULL,
 * on any listener holding more than its reserve) to make room. Returns
 * whether there was one. */
static bool make_room(struct net_server *srv, const struct net_listener *l, struct net_conn *self)
{
    for (struct net_conn *c = srv->oldest; c != NULL; c = c->prev) {
        if (c == self || c->engaged || c->closing || c->l == NULL || (l != NULL && c->l != l) ||
            (l == NULL && c->l->n_conns <= listener_reserve(srv)))
            continue;
        log_info("%s conn=%s ip=%s event=dropped reason=make-room", srv->name, c->id, c->peer);
        if (c->opened && c->proto->timeout != NULL)
            c->proto->timeout(c, c->ctx); /* its goodbye */
        if (!c->closed)
            net_conn_close(c);
        return true;
    }
    return false;
}

/*
 * Whether a new connection may stay: NULL, or the reason it may not. A
 * client address over its own cap is refused; a full listener or server
 * first gives up its oldest connection that has not engaged yet. Closing
 * connections still hold their slot for a moment (NET_CLOSE_GRACE_MS at
 * most), so a hard ceiling an eighth above the limit bounds them.
 */
static const char *admit(struct net_conn *c)
{
    struct net_server *srv = c->srv;
    size_t full = srv->limits.connections;
    if (c->ip->n > srv->limits.connections_per_address)
        return "per-address";
    if (srv->n_conns > full + full / 8)
        return "connections";
    if (c->l->n_conns > listener_cap(srv) && !make_room(srv, c->l, c))
        return "listener";
    if (srv->n_conns > full && c->l->n_conns <= listener_cap(srv) && !make_room(srv, NULL, c))
        return "connections";
    return NULL;
}

/* The id's eight hex digits: one per connection, so cheaper than snprintf. */
static void format_id(char out[12], uint32_t id)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 7; i >= 0; i--, id >>= 4)
        out[i] = hex[id & 15];
    out[8] = '\0';
}

/* A connection in the server's list, with its handles, not yet connected. */
static struct net_conn *conn_new(struct net_server *srv, const struct net_proto *proto)
{
    struct net_conn *c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->proto = proto;
    c->tcp.data = c;
    c->timer.data = c;
    buf_init(&c->in, NET_INPUT_MAX);
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->handles = 2;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    else
        srv->oldest = c;
    srv->conns = c;
    srv->n_conns++;
    format_id(c->id, srv->next_id++);
    return c;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct net_listener *l = server->data;
    struct net_server *srv = l->srv;
    if (status < 0)
        return;
    struct net_conn *c = conn_new(srv, l->proto);
    c->l = l;
    l->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_finish(c);
        return;
    }
    peer_of(c); /* TCP_NODELAY came with the socket, from the listener */
    c->ip = ip_get(srv, c->peer16);
    c->ip->n++;
    const char *refusal = admit(c);
    if (refusal != NULL) {
        log_info("%s conn=%s ip=%s event=refused reason=%s", srv->name, c->id, c->peer, refusal);
        metrics_count(METRIC_CONNECTIONS_REFUSED);
        /* A TLS client would take plaintext for a broken handshake. */
        if (!l->implicit_tls)
            send_raw(c, l->refused, strlen(l->refused));
        net_conn_close(c);
        return;
    }
    update_stress(srv);
    log_debug("%s conn=%s ip=%s event=connected", srv->name, c->id, c->peer);
    if (l->implicit_tls) {
        c->tls = tls_conn_new(srv->tls);
        c->mode = MODE_HANDSHAKE;
    } else {
        conn_open(c);
    }
    if (!c->closed && !c->closing) {
        arm_idle(c);
        conn_update_reading(c);
    }
}

/* A listener on the socket bound by bind (an address of ours, or one handed to us); its uv error. */
static int start_listener(struct net_server *srv, bool implicit_tls, const struct net_proto *proto,
                          void *listener_ctx, const char *refused,
                          int (*bind)(uv_tcp_t *tcp, const void *arg), const void *arg)
{
    struct net_listener *l = xcalloc(1, sizeof(*l));
    l->srv = srv;
    l->proto = proto;
    l->ctx = listener_ctx;
    l->implicit_tls = implicit_tls;
    snprintf(l->refused, sizeof(l->refused), "%s", refused);
    uv_tcp_init(srv->loop, &l->tcp);
    l->tcp.data = l;
    int rc = bind(&l->tcp, arg);
    /* Replies go out at once, not held back to be merged (Nagle). Linux
     * hands the option on to every accepted socket: one call for all. */
    if (rc == 0)
        rc = uv_tcp_nodelay(&l->tcp, 1);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    if (rc != 0) {
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
        return rc;
    }
    l->next = srv->listeners;
    srv->listeners = l;
    srv->n_listeners++;
    return 0;
}

static int bind_address(uv_tcp_t *tcp, const void *arg)
{
    const struct sockaddr *sa = arg;
    return uv_tcp_bind(tcp, sa, sa->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
}

static int bind_given(uv_tcp_t *tcp, const void *arg)
{
    return uv_tcp_open(tcp, *(const int *)arg);
}

int net_listen(struct net_server *srv, const struct conf_endpoint *ep, bool implicit_tls,
               const struct net_proto *proto, void *listener_ctx, const char *refused, char *err,
               size_t err_size)
{
    struct sockaddr_storage ss;
    if (uv_ip4_addr(ep->host, ep->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(ep->host, ep->port, (struct sockaddr_in6 *)&ss) != 0) {
        snprintf(err, err_size, "'%s' is not an IP address", ep->host);
        return -1;
    }
    if (implicit_tls && srv->tls == NULL) {
        snprintf(err, err_size, "%s:%u needs TLS, and no certificate is loaded", ep->host,
                 ep->port);
        return -1;
    }
    int rc = start_listener(srv, implicit_tls, proto, listener_ctx, refused, bind_address, &ss);
    if (rc != 0) {
        const char *fmt = strchr(ep->host, ':') ? "cannot listen on [%s]:%u: %s%s"
                                                : "cannot listen on %s:%u: %s%s";
        snprintf(err, err_size, fmt, ep->host, ep->port, uv_strerror(rc),
                 rc == UV_EACCES ? " (ports below 1024 need root)" : "");
        return -1;
    }
    return 0;
}

int net_listen_fd(struct net_server *srv, int fd, bool implicit_tls, const struct net_proto *proto,
                  void *listener_ctx, const char *refused, char *err, size_t err_size)
{
    int type = 0, listening = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM ||
        (len = sizeof(listening), getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len)) < 0 ||
        !listening) {
        snprintf(err, err_size, "descriptor %d is no listening stream socket", fd);
        return -1;
    }
    if (implicit_tls && srv->tls == NULL) {
        snprintf(err, err_size, "descriptor %d needs TLS, and no certificate is loaded", fd);
        return -1;
    }
    int rc = start_listener(srv, implicit_tls, proto, listener_ctx, refused, bind_given, &fd);
    if (rc != 0) {
        snprintf(err, err_size, "cannot listen on descriptor %d: %s", fd, uv_strerror(rc));
        return -1;
    }
    return 0;
}

/* --- the peer ----------------------------------------------------------- */

const char *net_conn_peer(const struct net_conn *c)
{
    return c->peer;
}

const uint8_t *net_conn_peer16(const struct net_conn *c)
{
    return c->peer16;
}

void net_conn_local(const struct net_conn *c, char *out, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char host[INET6_ADDRSTRLEN];
    snprintf(out, size, "unknown");
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, size, "%s:%u", host, ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, size, "[%s]:%u", host, ntohs(in6->sin6_port));
    }
}

bool net_conn_is_loopback(const struct net_conn *c)
{
    static const uint8_t v6_loopback[16] = {[15] = 1};
    if (memcmp(c->peer16, v6_loopback, 16) == 0)
        return true;
    static const uint8_t v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
    return memcmp(c->peer16, v4_mapped, 12) == 0 && c->peer16[12] == 127;
}

bool net_conn_is_tls(const struct net_conn *c)
{
    return c->mode == MODE_TLS;
}

const char *net_conn_tls_version(const struct net_conn *c)
{
    return c->tls ? tls_conn_version(c->tls) : "";
}

const char *net_conn_tls_cipher(const struct net_conn *c)
{
    return c->tls ? tls_conn_cipher(c->tls) : "";
}

const char *net_conn_tls_cert_name(const struct net_conn *c)
{
    return c->tls ? tls_conn_cert_name(c->tls) : "";
}

const char *net_conn_tls_error(const struct net_conn *c, char *buf, size_t size)
{
    /* A step in the thread pool owns the engine; a connection ended meanwhile has tls_end. */
    if (c->tls != NULL && !c->stepping && tls_conn_error(c->tls, buf, size))
        return buf;
    return c->tls_end;
}

const char *net_conn_id(const struct net_conn *c)
{
    return c->id;
}
