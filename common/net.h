/*
 * net.h — listeners and connections on libuv, with TLS in the middle.
 *
 * A protocol (the SMTP or POP3 glue) sees plaintext only: bytes that
 * arrived wait in net_conn_input(), replies go out through net_conn_write(),
 * and net decrypts and encrypts on the way when TLS is on — from the first
 * byte on implicit-TLS listeners, or after net_conn_start_tls() (STARTTLS,
 * STLS). net also enforces what no protocol should have to: connection
 * limits in total and per client address, the idle and TLS handshake
 * timeouts, and a bound on unread input.
 */
#ifndef KOTAK_NET_H
#define KOTAK_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "conf.h"
#include "tls.h"

struct net_conn;
struct net_server;

/* What a protocol does with its connections. Every callback runs on the loop. */
struct net_proto {
    /* A connection is ready (after the handshake, on implicit TLS): returns
     * the protocol's state for it, passed to every other callback. */
    void *(*open)(struct net_conn *c, void *listener_ctx);
    /* Plaintext arrived in net_conn_input(c). */
    void (*input)(struct net_conn *c, void *ctx);
    /* The output queue fell below NET_LOW_WATER after being above it. */
    void (*drain)(struct net_conn *c, void *ctx);
    /* No input for idle_timeout: the protocol says goodbye and closes, or,
     * while it waits on a result of its own, leaves the connection open
     * (the timer starts again), or net makes room: then it closes anyway. */
    void (*timeout)(struct net_conn *c, void *ctx);
    /* net_conn_start_tls() finished its handshake. */
    void (*tls_started)(struct net_conn *c, void *ctx);
    /* The connection is gone; free ctx. No callback follows. */
    void (*close)(struct net_conn *c, void *ctx);
};

/*
 * What one connection may hold, whatever its peer does: unread plaintext
 * up to NET_INPUT_MAX (reads are sized to the room left), and output up to
 * NET_LOW_WATER plus one reply: past it, input waits until the peer has
 * taken what it was sent. docs/SECURITY.md adds up the worst case.
 */
#define NET_INPUT_MAX (32 * 1024)
#define NET_LOW_WATER (32 * 1024) /* output queued below this counts as drained */

struct net_limits {
    uint64_t idle_timeout_ms;
    uint64_t tls_handshake_timeout_ms;
    uint64_t connections;
    uint64_t connections_per_address;
    /* Under slot pressure, the idle time of connections not yet engaged. */
    uint64_t stress_idle_timeout_ms;
    /* How long net_connect waits for the peer to answer. */
    uint64_t connect_timeout_ms;
};

/* A server: the loop, the TLS credentials (NULL: no TLS) and the limits. */
struct net_server *net_server_new(uv_loop_t *loop, struct tls_server *tls,
                                  const struct net_limits *limits, const char *name);

/*
 * Listens on ep. implicit_tls needs a TLS server. refused is the line sent
 * to a client turned away by a connection limit ("421 4.7.0 ...\r\n"); on
 * an implicit-TLS listener such a client is closed on, without a word, as
 * it expects no plaintext. Each listener keeps a reserve of the slots that
 * the others cannot take, so a flood on one port leaves room on the rest.
 * Returns 0, or -1 with a sentence in err.
 */
int net_listen(struct net_server *srv, const struct conf_endpoint *ep, bool implicit_tls,
               const struct net_proto *proto, void *listener_ctx, const char *refused, char *err,
               size_t err_size);

/* The same on fd, a listening TCP socket someone else bound (systemd's socket activation). */
int net_listen_fd(struct net_server *srv, int fd, bool implicit_tls, const struct net_proto *proto,
                  void *listener_ctx, const char *refused, char *err, size_t err_size);

/* Stops accepting; open connections go on. */
void net_server_stop_listening(struct net_server *srv);

/*
 * Replaces the TLS credentials for the handshakes that follow; connections
 * made with the old ones go on with them. The caller keeps ownership of
 * both (tls_server_free lets the old one go once its connections are gone).
 */
void net_server_set_tls(struct net_server *srv, struct tls_server *tls);

/* Calls fn for every open connection (for a shutdown message). */
void net_server_each(struct net_server *srv, void (*fn)(struct net_conn *c, void *ctx));

/* Open connections. */
size_t net_server_count(const struct net_server *srv);

/* Frees the server once every connection and listener is closed. */
void net_server_free(struct net_server **srv);

/*
 * Sizes libuv's thread pool, unless UV_THREADPOOL_SIZE is set already: two
 * threads more than the cores (at least 4), since TLS handshake steps take
 * at most one per core and password checks, a message's checks and
 * deletions need the others. Called before anything uses the pool; returns
 * the pool's threads (the same on every later call).
 */
unsigned net_pool_size(void);

/* Plaintext read and not yet used; the protocol consumes what it used. */
struct buf *net_conn_input(struct net_conn *c);

/* Queues plaintext for the peer. Returns 0 or a negative error (closing). */
int net_conn_write(struct net_conn *c, const void *p, size_t n);

/* Bytes queued for the socket and not yet written. */
size_t net_conn_pending(const struct net_conn *c);

/*
 * The protocol says the peer has logged in or begun a transaction. Until
 * then, when slots run short, the connection gets the short stress idle
 * time and may be closed, oldest first, to make room for a new one.
 */
void net_conn_set_engaged(struct net_conn *c, bool engaged);

/* Stops or restarts delivering input (while the protocol waits on something). */
void net_conn_pause(struct net_conn *c);
void net_conn_resume(struct net_conn *c);

/*
 * Begins TLS on a plaintext connection: input not yet used is thrown away
 * (RFC 3207 4.2, RFC 2595 4), and so is anything that arrives before the
 * handshake. tls_started follows, or the connection closes.
 */
void net_conn_start_tls(struct net_conn *c);

/*
 * Connects to addr, for kotak's own deliveries: a connection of ours is
 * counted on srv (use a server of its own, so that it takes no listener's
 * slot) and never dropped to make room. With tls, TLS begins at once,
 * as on port 465, naming tls_host (SNI, and the name a verifying client
 * checks). The callbacks are proto's, with ctx: open when the connection
 * is ready (after the handshake with tls), returning the ctx that follows;
 * timeout when no progress was made for idle_timeout, as for a listener's;
 * and close exactly once, whether or not open came first:
 * net_conn_failure() then says why it never got that far. Returns 0, or a
 * negative libuv error with no callback to follow.
 */
int net_connect(struct net_server *srv, const struct sockaddr *addr, const struct net_proto *proto,
                void *ctx, struct tls_client *tls, const char *tls_host, struct net_conn **c_r);

/*
 * Why an outbound connection ended before it was ready: "connection refused",
 * "connection timed out" and the like (static text), or NULL. A failed TLS
 * handshake is told by net_conn_tls_error instead.
 */
const char *net_conn_failure(const struct net_conn *c);

/*
 * STARTTLS on a connection of ours: input not yet used is thrown away, the
 * ClientHello goes out, and tls_started follows, or the connection closes
 * (net_conn_tls_error says why).
 */
void net_conn_start_tls_client(struct net_conn *c, struct tls_client *cli, const char *host);

/* Writes what is queued, then closes. Input is no longer delivered. */
void net_conn_close(struct net_conn *c);

/* The peer, as text ("192.0.2.1", "::1") and as 16 bytes (IPv4 mapped). */
const char *net_conn_peer(const struct net_conn *c);
const uint8_t *net_conn_peer16(const struct net_conn *c);
bool net_conn_is_loopback(const struct net_conn *c);
/* Our end of the connection as "192.0.2.1:25" or "[::1]:25" into out; "unknown" when the kernel cannot say. */
void net_conn_local(const struct net_conn *c, char *out, size_t size);
bool net_conn_is_tls(const struct net_conn *c);
const char *net_conn_tls_version(const struct net_conn *c);
const char *net_conn_tls_cipher(const struct net_conn *c);
/* Our certificate's subject CN, for the live view; "" without TLS. */
const char *net_conn_tls_cert_name(const struct net_conn *c);

/*
 * Why TLS ended the connection, for its disconnect line: the engine's error
 * (tls_conn_error: mbedTLS's words, or the peer's alert) written into buf,
 * or net's own static text ("handshake timeout", "closed by the peer during
 * the handshake", "too many renegotiation requests"); NULL when TLS did not
 * end it. The text is free-form: log it through log_value. NET_TLS_ERROR_MAX
 * is room enough for buf.
 */
#define NET_TLS_ERROR_MAX 128
const char *net_conn_tls_error(const struct net_conn *c, char *buf, size_t size);

/* A short id for logs, unique within the process. */
const char *net_conn_id(const struct net_conn *c);

#endif
