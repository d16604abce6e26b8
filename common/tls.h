/*
 * tls.h — TLS over memory buffers: the server's side, and the client's.
 *
 * The TLS engine never touches a socket. The network glue feeds it the
 * ciphertext it read from the peer (tls_conn_feed), drives it (handshake,
 * read, write), and sends whatever ciphertext it produced
 * (tls_conn_pending_out, then tls_conn_consume_out). This keeps mbedTLS out
 * of the event loop's callbacks and lets a test run a whole handshake in
 * memory, with a client in the same process.
 *
 * Policy, fixed here rather than in the config: TLS 1.2 only, ECDHE key
 * exchange with AEAD ciphers only (AES-GCM, ChaCha20-Poly1305), no
 * renegotiation; sessions resume by ticket or by session id.
 *
 * A tls_server and its connections belong to the daemon's loop, with one
 * exception: a connection's tls_conn_handshake may run on another thread,
 * one at a time per connection, while nothing else touches that connection.
 * What handshakes share (the random generator, the ticket keys, the session
 * cache, the private key) takes mbedTLS's own locks (MBEDTLS_THREADING_C).
 */
#ifndef KOTAK_TLS_H
#define KOTAK_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <sys/types.h>

struct tls_server; /* shared: config, cert, key, RNG; one per daemon */
struct tls_conn;   /* one per connection */

/*
 * Loads a PEM certificate chain (the server's certificate first) and its
 * private key, and checks that they belong together. Returns 0 with a new
 * server in *srv_r, or -1 with one sentence in err ("cannot read cert FILE:
 * ...") and *srv_r untouched. The caller lets it go with tls_server_free.
 */
int tls_server_new(const char *cert_path, const char *key_path, struct tls_server **srv_r,
                   char *err, size_t err_size);

/*
 * Lets the server go and sets *srv to NULL (NULL is fine): it is freed, its
 * key wiped, at once, or when the last connection made from it is freed —
 * so a reload can replace it while connections go on with the old pair.
 */
void tls_server_free(struct tls_server **srv);

/*
 * The client's side, for kotak delivering to other servers (same policy:
 * TLS 1.2, no renegotiation; the library's wider list of suites). Trust
 * anchors come from ca_path, or the system's bundle when it is NULL or "".
 * With verify, a certificate that does not lead to them or does not name
 * the host fails the handshake (a smarthost); without, the handshake goes
 * on and tls_conn_verified tells (opportunistic TLS to an MX, as Postfix's
 * `may`). Returns 0 with *cli_r set, or -1 with one sentence in err.
 */
struct tls_client;
int tls_client_new(const char *ca_path, bool verify, struct tls_client **cli_r, char *err,
                   size_t err_size);

/* Lets the client side go, as tls_server_free does a server's. NULL is fine. */
void tls_client_free(struct tls_client **cli);

/* A new client connection to host: a name is sent as SNI and checked when
 * verifying; an IP address is not sent (RFC 6066 3) and must be among the
 * certificate's iPAddress names. */
struct tls_conn *tls_client_connect(struct tls_client *cli, const char *host);

/* A server's connection: whether the client resumed a session instead of a full handshake. */
bool tls_conn_resumed(const struct tls_conn *c);

/* After the handshake: the peer's certificate leads to a trust anchor and names the host. */
bool tls_conn_verified(const struct tls_conn *c);

/*
 * A new connection in the handshake state, which keeps srv alive until it
 * is freed. Never NULL: running out of memory aborts.
 */
struct tls_conn *tls_conn_new(struct tls_server *srv);

/* Frees the connection and its buffers and sets *c to NULL. NULL is fine. */
void tls_conn_free(struct tls_conn **c);

/*
 * Ciphertext that arrived from the peer; it is copied. Returns 0, or -ENOBUFS
 * (nothing taken) when more than 64 KiB are already waiting unprocessed: the
 * glue then stops reading from the socket until tls_conn_read has drained
 * them.
 */
int tls_conn_feed(struct tls_conn *c, const void *p, size_t n);

/* Ciphertext fed and not yet used: the glue sizes its reads by it. */
size_t tls_conn_waiting(const struct tls_conn *c);

/*
 * Drives the handshake with what has been fed. Returns 1 when it is done (and
 * keeps returning 1), 0 when it needs more input from the peer, or -EPROTO
 * when it failed; the connection is then useless, but a fatal alert may wait
 * in tls_conn_pending_out, worth sending before closing. After each call the
 * glue sends what tls_conn_pending_out holds.
 */
int tls_conn_handshake(struct tls_conn *c);

/*
 * Decrypts into p at most n bytes of application data. Returns the count
 * (>0), 0 when more input is needed (or n is 0), -EPIPE when the peer sent
 * close_notify, or -EPROTO on any other error (bad record, alert, handshake
 * not done). Call it again until it returns 0: one feed may hold several
 * records.
 */
ssize_t tls_conn_read(struct tls_conn *c, void *p, size_t n);

/*
 * Encrypts all n bytes of p, as many records as needed, into the outgoing
 * buffer, which has no ceiling: the glue bounds it by not writing more while
 * tls_conn_pending_out is large. Returns 0, or -EPROTO (handshake not done,
 * or the connection failed earlier).
 */
int tls_conn_write(struct tls_conn *c, const void *p, size_t n);

/* Queues a close_notify alert in the outgoing buffer (after the handshake). */
void tls_conn_close_notify(struct tls_conn *c);

/*
 * The ciphertext waiting to be sent: returns a pointer and sets *len_r (0:
 * nothing; the pointer may then be NULL). The bytes stay valid until the next
 * call on c, so the glue copies them or sends them before calling again; it
 * then reports how many went out with tls_conn_consume_out.
 */
const void *tls_conn_pending_out(struct tls_conn *c, size_t *len_r);

/* Drops the first n bytes (n <= the pending length) of the outgoing data. */
void tls_conn_consume_out(struct tls_conn *c, size_t n);

/*
 * After the handshake, the protocol ("TLSv1.2") and the cipher suite
 * ("TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"), static strings for a
 * Received: header. NULL before the handshake is done.
 */
const char *tls_conn_version(struct tls_conn *c);
const char *tls_conn_cipher(struct tls_conn *c);

/* When the server's certificate (the first of its chain) stops being valid, as Unix time. */
time_t tls_server_expiry(const struct tls_server *srv);

/* A server connection's own certificate's subject CN (printable); "" when it has none, or for a client. */
const char *tls_conn_cert_name(const struct tls_conn *c);

/*
 * Why the connection failed, once tls_conn_handshake, tls_conn_read or
 * tls_conn_write said -EPROTO for an error of mbedTLS's: writes one line of
 * text into dst (cut to size; for a log, through log_value) and returns
 * true — "peer sent alert: bad certificate" when the peer's fatal alert
 * ended it, else mbedTLS's words ("SSL - Processing of the ClientHello
 * handshake message failed"). Returns false, dst untouched, while nothing
 * failed; close_notify is no failure.
 */
bool tls_conn_error(const struct tls_conn *c, char *dst, size_t size);

/*
 * A client's connection whose handshake failed on the server's certificate,
 * or finished without verifying it: why, in mbedTLS's words joined by "; "
 * ("The certificate is not correctly signed by the trusted CA"), into dst
 * (cut to size), and true. False, dst untouched, when nothing was found
 * wrong with it or it was not looked at.
 */
bool tls_conn_verify_error(const struct tls_conn *c, char *dst, size_t size);

#endif
