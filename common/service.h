/*
 * service.h — the connection core both daemons stand on: the life of a
 * connection beside its session, and the daemon's start and stop.
 *
 * net carries bytes; a session (SMTP, POP3) is a pure state machine. The
 * core sits between them and does, once for every protocol: feeding the
 * session what arrived, sending what it wrote, adding streamed pieces while
 * the socket keeps up, pausing while the session waits on a result of its
 * own (a commit, a password check), resuming when it arrives, doing what
 * the session asked (close, STARTTLS), telling net whether the peer has
 * engaged, the goodbye at shutdown, and freeing the connection only when it
 * is gone and no result is due. A daemon supplies its session through
 * struct session_ops and its own per-connection parts through struct
 * service_ops; it keeps only what is its own: the store, the spool, the
 * maildrop locks.
 *
 * Everything here runs on the loop thread.
 */
#ifndef KOTAK_SERVICE_H
#define KOTAK_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "conf.h"
#include "daemon.h"
#include "login.h"
#include "net.h"
#include "sasl.h"
#include "tls.h"

/* What a session asks the core to do once its output is sent. */
enum session_action {
    SESSION_ACT_NONE,
    SESSION_ACT_CLOSE,    /* send what is queued, then close */
    SESSION_ACT_STARTTLS, /* begin TLS (STARTTLS, STLS) */
};

/* A session, seen from the core. s is the session; every call is on the loop. */
struct session_ops {
    void (*greet)(void *s);
    void (*feed)(void *s, const char *p, size_t n, size_t *used_r);
    struct buf *(*output)(void *s); /* what it wrote; the core sends and empties it */
    bool (*busy)(const void *s);    /* waits on a result: feed nothing */
    /* Streams a long answer (POP3's RETR, LIST): pump adds the next piece
     * while sending says there is more. NULL for a session that never does. */
    bool (*sending)(const void *s);
    void (*pump)(void *s);
    enum session_action (*action)(const void *s);
    bool (*engaged)(const void *s); /* logged in or in a transaction */
    void (*tls_started)(void *s, const char *version, const char *cipher, const char *cert);
    void (*auth_done)(void *s, int rc, int64_t user_id);
    void (*timeout)(void *s);
    void (*shutdown)(void *s);
    void (*free)(void *s);
};

struct service;

/*
 * One connection beside its session. A daemon embeds it as the first
 * member of its own struct, which the core frees with free() once the
 * connection is gone and no result is due.
 */
struct service_conn {
    struct service *svc;
    struct net_conn *net; /* NULL once the connection is gone */
    void *session;        /* NULL once freed, at the same moment */
    const struct session_ops *ops;
    struct login_req login;
    /* Who asked the check under way, for its log line should the client
     * leave before the answer (during the failure delay, say). */
    char login_id[16], login_ip[64], login_user[SASL_FIELD_MAX + 1];
    int async; /* results due: password checks and the daemon's own */
    bool released;
};

/* What the daemon adds. ctx is the daemon's. */
struct service_ops {
    /* A connection is ready: returns the daemon's struct, its service_conn
     * set up with service_conn_init. listener is what service_listen got. */
    struct service_conn *(*open)(void *ctx, struct net_conn *c, void *listener);
    /* The connection is gone and no result is due: free the daemon's own
     * parts (not the struct). May be NULL. */
    void (*release)(struct service_conn *sc);
    /* Results of the daemon's own still due beyond connections (a commit
     * whose connection went): the stop waits for them. May be NULL. */
    size_t (*in_flight)(void *ctx);
    /* The stop begins, before the sessions are told: the daemon ends its
     * own work (its outbound connections), and calls service_check_stopped
     * as each piece of it ends. May be NULL. */
    void (*stopping)(void *ctx);
    /* The stop is complete: every connection and result is done. */
    void (*stopped)(void *ctx);
};

/*
 * A service on loop, named for logs ("smtp", "pop3"), with conf's
 * [limits] and the daemon's idle time. It owns tls (NULL: no TLS) from here
 * on; conf must outlive it. Never NULL.
 */
struct service *service_new(uv_loop_t *loop, const struct conf *conf, const char *name,
                            uint64_t idle_timeout_ms, struct tls_server *tls,
                            const struct service_ops *ops, void *ctx);

/* Password checks for the service's connections (made once privileges are
 * dropped, before service_run); the service owns login from here on. */
void service_set_login(struct service *svc, struct login *login);

/*
 * Listens for the config section called section ([smtp], [pop3s], [web]):
 * on the sockets systemd handed over under that name (socket activation:
 * LISTEN_FDNAMES, as a .socket unit's FileDescriptorName= sets it), else on
 * each address of cl; see net_listen. Logs each listener. Returns 0, or -1
 * with a sentence in err.
 */
int service_listen(struct service *svc, const char *section, const struct conf_listener *cl,
                   bool implicit_tls, void *listener, const char *refused, char *err,
                   size_t err_size);

/* Whether a certificate is loaded: a session may offer STARTTLS. */
bool service_has_tls(const struct service *svc);

/* When the certificate in use expires (Unix time); 0 without TLS. */
time_t service_cert_expiry(const struct service *svc);

/*
 * Runs the loop until a stop (SIGINT, SIGTERM) has finished every session
 * and result; SIGHUP reloads the certificate. Then frees the service.
 */
void service_run(struct service **svc);

/* The daemon's own work counted by in_flight has ended: the stop may complete. */
void service_check_stopped(struct service *svc);

/* For the daemon's open: ties sc to its connection and session. */
void service_conn_init(struct service_conn *sc, struct service *svc, struct net_conn *c,
                       void *session, const struct session_ops *ops);

/*
 * The session has something to send that no input or result brought (a
 * stream's news): the core sends what it wrote and pumps while it is
 * sending, as after a result.
 */
void service_kick(struct service_conn *sc);

/* Checks a password in the thread pool; ops->auth_done follows. hash NULL: unknown user. */
void service_login(struct service_conn *sc, const char *user, const char *hash, int64_t user_id,
                   const char *password);

/*
 * A result of the daemon's own: service_result_due when it is asked for,
 * then, when it arrives, service_result_arrived (true: the session is still
 * there to be told) and, after telling it, service_result_done, which sends
 * the answer and goes on with what was pipelined behind — or frees the
 * connection if it has gone meanwhile.
 */
void service_result_due(struct service_conn *sc);
bool service_result_arrived(struct service_conn *sc);
void service_result_done(struct service_conn *sc);

#endif
