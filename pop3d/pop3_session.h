/*
 * pop3_session.h — one POP3 conversation as a state machine, with no I/O
 * (RFC 1939, with CAPA, RESP-CODES, AUTH-RESP-CODE, SASL, STLS, UTF8).
 *
 * As in SMTP, the glue feeds bytes in and sends out what the session wrote;
 * the store, the login check and the maildrop lock are reached through
 * `struct pop3_ops`. A message is sent in pieces: while a RETR or TOP is
 * under way the session is "sending", reads no further commands, and the
 * glue calls pop3_session_pump() each time the socket has drained, so a
 * 25 MiB message never sits whole in memory. A LIST or UIDL listing is
 * sent the same way, so a maildrop of any size is listed whole.
 *
 * A multi-line reply ends with "." only when every line of it went out:
 * a line that could not be written, a failed read or a body shorter than
 * its recorded size ends the connection instead.
 */
#ifndef KOTAK_POP3_SESSION_H
#define KOTAK_POP3_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "store.h"
#include "watch.h"

struct pop3_session_config {
    bool tls_available;  /* STLS can be offered */
    bool peer_loopback;  /* login without TLS is allowed from loopback only */
    char peer_ip[64];    /* for logs: first on a line, before what the client chose */
    char session_id[16];
    unsigned bad_commands;
    /* [pop3] expire and login_delay, as CAPA announces them (RFC 2449 6.7,
     * 6.5): with expire, QUIT records each message's first RETR and a
     * login removes those retrieved expire_days ago or more (ops->login);
     * login_delay seconds must pass between one user's logins. */
    bool expire;           /* false: EXPIRE NEVER */
    unsigned expire_days;
    unsigned login_delay;  /* 0: none */
    /* ops->login runs for every login and lists the maildrop too, off the
     * loop (a listing of 100,000 messages takes 150 ms), handing it over
     * with pop3_session_listed; false: ops->list lists it at once. */
    bool list_in_login;
};

struct pop3_ops {
    /* Checks a login; answers with pop3_session_auth_done. user "" is nobody. */
    void (*auth)(void *ctx, const char *user, const char *password);
    /* Takes the user's maildrop lock: 0, or -EBUSY when another session has it. */
    int (*lock)(void *ctx, int64_t user_id);
    void (*unlock)(void *ctx, int64_t user_id);
    /* The maildrop as it is now (store_mbox_list). */
    int (*list)(void *ctx, int64_t user_id, struct store_mail **list_r, size_t *n_r);
    /* A piece of a body (store_mbox_read). */
    int (*read)(void *ctx, int64_t message_id, int64_t offset, void *p, size_t n, size_t *got_r);
    /* The UPDATE state: removes the entries del[0..n_del) and records the
     * first retrieval of ret[0..n_ret) (store_mbox_update), in one
     * transaction; answers with pop3_session_commit_done. */
    void (*commit)(void *ctx, int64_t user_id, const int64_t *del, size_t n_del,
                   const int64_t *ret, size_t n_ret);
    /* After the password check and the lock, when login_delay or expire or
     * list_in_login is set: checks and records the login time
     * (store_user_login), removes the expired entries, and with
     * list_in_login lists the maildrop (pop3_session_listed), off the loop;
     * answers with pop3_session_login_done. user is for the log. */
    void (*login)(void *ctx, int64_t user_id, const char *user);
    /* The live view (common/watch.h), may be NULL: whether someone watches
     * now (nothing is built otherwise), and one event of this session,
     * secrets already replaced; tls: said inside TLS. */
    bool (*watched)(void *ctx);
    void (*watch)(void *ctx, enum watch_kind kind, bool tls, const char *text, size_t len);
};

enum pop3_action {
    POP3_ACT_NONE,
    POP3_ACT_STLS,  /* flush, drop unread input, start TLS */
    POP3_ACT_CLOSE, /* flush, then close */
};

struct pop3_session;

struct pop3_session *pop3_session_new(const struct pop3_session_config *cfg,
                                      const struct pop3_ops *ops, void *ctx);

/* Frees the session; a held lock is released (no deletion happens). */
void pop3_session_free(struct pop3_session **s);

void pop3_session_greet(struct pop3_session *s);

/* Runs the commands in buf[0..len) until input runs out or the session waits. */
void pop3_session_feed(struct pop3_session *s, const char *buf, size_t len, size_t *consumed_r);

/* Adds the next piece of the message being sent, if any. */
void pop3_session_pump(struct pop3_session *s);

struct buf *pop3_session_output(struct pop3_session *s);

/* What the glue must do; reading it clears STLS (CLOSE stays). */
enum pop3_action pop3_session_action(struct pop3_session *s);

/* True while a login or a QUIT's deletion is awaited, or a message is being sent. */
bool pop3_session_busy(const struct pop3_session *s);
bool pop3_session_sending(const struct pop3_session *s);
/* Past USER/PASS or AUTH: the connection is worth its slot. */
bool pop3_session_logged_in(const struct pop3_session *s);

/* The ctx the session was made with: the glue's side of its connection. */
void *pop3_session_ctx(const struct pop3_session *s);

void pop3_session_tls_started(struct pop3_session *s, const char *version, const char *cipher,
                              const char *cert);

/* 1 logged in as user_id, 0 refused, -EAGAIN address locked out. */
void pop3_session_auth_done(struct pop3_session *s, int rc, int64_t user_id);

/* The result of ops->login: 0 go on, > 0 the seconds still to wait
 * (LOGIN-DELAY), or a negative code. */
void pop3_session_login_done(struct pop3_session *s, int rc);

/* The listing ops->login read (list_in_login), just before its
 * pop3_session_login_done: the session takes list, and asks ops->list
 * nothing. */
void pop3_session_listed(struct pop3_session *s, struct store_mail *list, size_t n);

/* The result of ops->commit: 0 or a negative code. */
void pop3_session_commit_done(struct pop3_session *s, int rc);

void pop3_session_timeout(struct pop3_session *s);
void pop3_session_shutdown(struct pop3_session *s);

#endif
