/*
 * smtp_session.h — one SMTP conversation as a state machine, with no I/O.
 *
 * The glue feeds it the bytes it read (after TLS); the session parses them,
 * runs each command, and appends the replies to its output buffer, which
 * the glue writes out. What needs the world — the directory, the spool,
 * the store thread, a password check — goes through `struct smtp_ops`, so
 * tests drive a session with a fake store and no sockets. Slow work
 * (delivery, login) is asynchronous: the session says it is busy, the glue
 * stops reading, and the result comes back through smtp_session_store_done
 * or smtp_session_auth_done.
 */
#ifndef KOTAK_SMTP_SESSION_H
#define KOTAK_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "addr.h"
#include "buf.h"
#include "store.h"
#include "watch.h"

enum smtp_role {
    SMTP_ROLE_MX,          /* [smtp]: no login, local recipients only */
    SMTP_ROLE_SUBMISSION,  /* [submission]: STARTTLS, login required */
    SMTP_ROLE_SUBMISSIONS, /* [submissions]: implicit TLS, login required */
};

struct smtp_session_config {
    enum smtp_role role;
    const char *hostname;
    bool tls_available;   /* a certificate is loaded: STARTTLS can be offered */
    bool peer_loopback;   /* login without TLS is allowed from loopback only */
    char peer_ip[64];     /* for Received: and logs */
    char session_id[16];  /* for logs and queue ids */
    size_t message_size;  /* SIZE, RFC 1870 */
    size_t recipients;    /* per transaction, RFC 5321 4.5.3.1.8: at least 100 */
    size_t line_max;      /* command line with CRLF, at least 512 */
    size_t text_max;      /* text line with CRLF, at least 1000 */
    bool bare_lf_reject;  /* refuse a message with a bare LF, rather than take it as CRLF */
    unsigned bad_commands; /* errors before 421 and close */
    unsigned junk_commands; /* NOOP, RSET, VRFY, HELP before each counts as an error */
    unsigned hard_errors;   /* 5xx replies before 421 and close */
    unsigned data_grace_s;  /* DATA may take this long, plus a second per */
    unsigned min_data_rate; /* ... this many octets received; 0: no limit */
    uint64_t msgid_random;  /* from the glue's random source, for the Message-ID: submission adds */
};

/* A recipient at another server, queued for delivery there (submission). */
struct smtp_remote {
    char *address;   /* as it goes into RCPT TO at the next hop */
    char *orcpt;     /* the address the sender named (ORCPT, RFC 3461 4.2), decoded */
    unsigned notify; /* STORE_NOTIFY_* from NOTIFY=, 0: not given */
};

/* One message on its way to the store. */
struct smtp_tx {
    char from[ADDR_TEXT_SIZE + 2]; /* the reverse-path, "" for <> */
    int64_t user_id;               /* who logged in and sends it; 0: nobody */
    struct store_rcpts rcpts;      /* local users, each once */
    struct smtp_remote *remote;    /* other servers' recipients, each once */
    size_t n_remote;
    enum store_ret ret;            /* RET= (RFC 3461 4.3) */
    char *envid;                   /* ENVID=, decoded; NULL when not given */
    size_t n_rcpt_cmds;            /* accepted RCPT commands */
    char first_rcpt[ADDR_TEXT_SIZE];
    char **named;                  /* each accepted recipient as named, n_rcpt_cmds of them */
    const char *helo;              /* the HELO name given, "" when none */
    bool utf8;                     /* SMTPUTF8 given on MAIL */
    bool spooling;                 /* the spool was opened */
    size_t size;                   /* octets of message data so far */
    size_t declared;               /* SIZE= of MAIL (RFC 1870), 0 when not given */
    bool too_big;                  /* past message_size: refused at the final dot */
    int spool_error;               /* a failed spool write, refused at the final dot */
    char id[32];                   /* queue id, for 250 and logs */
    time_t data_start;             /* when the 354 went out */
    uint64_t data_received;        /* octets of DATA, kept or not */
};

/*
 * What the session needs from the world. ctx is the glue's; every call is
 * made on the loop thread.
 */
struct smtp_ops {
    /* store_resolve, synchronously (a few indexed reads). */
    int (*resolve)(void *ctx, const struct addr *rcpt, struct store_rcpts *r);
    /* Frees what resolve filled in (store_rcpts_free). */
    void (*rcpts_free)(void *ctx, struct store_rcpts *r);
    /* A local user's quota and usage (store_quota_get), synchronously: 1
     * with *q_r, 0 no such user, or a negative code. May be NULL: no quotas. */
    int (*quota)(void *ctx, int64_t user_id, struct store_quota *q_r);
    /* Opens a spool for a new message, then appends to it: 0 or -errno. */
    int (*spool_begin)(void *ctx);
    int (*spool_write)(void *ctx, const void *p, size_t n);
    void (*spool_abort)(void *ctx);
    /* Hands the spooled message to the store; answers with smtp_session_store_done. */
    void (*deliver)(void *ctx, const struct smtp_tx *tx);
    /* Checks a login; answers with smtp_session_auth_done. user "" is nobody. */
    void (*auth)(void *ctx, const char *user, const char *password);
    /* The time, for Received: headers. */
    time_t (*now)(void *ctx);
    /* Whether rcpt is an SRS address of a local domain (smtpd/srs.h): 1
     * with the original sender in original[ADDR_TEXT_SIZE], 0 when it is
     * none, or a negative code for one made up or expired. May be NULL. */
    int (*srs_reverse)(void *ctx, const struct addr *rcpt, char *original);
    /* The live view (common/watch.h), may be NULL: whether someone watches
     * now (nothing is built otherwise), and one event of this session,
     * secrets already replaced; tls: said inside TLS. */
    bool (*watched)(void *ctx);
    void (*watch)(void *ctx, enum watch_kind kind, bool tls, const char *text, size_t len);
};

enum smtp_action {
    SMTP_ACT_NONE,
    SMTP_ACT_STARTTLS, /* flush the output, drop unread input, start TLS */
    SMTP_ACT_CLOSE,    /* flush the output, then close */
};

struct smtp_session;

/* A new session; cfg is copied. Nothing is written until smtp_session_greet. */
struct smtp_session *smtp_session_new(const struct smtp_session_config *cfg,
                                      const struct smtp_ops *ops, void *ctx);

/* Frees the session and any transaction (aborting its spool); sets *s to NULL. */
void smtp_session_free(struct smtp_session **s);

/* Writes the 220 greeting (after the TLS handshake on submissions). */
void smtp_session_greet(struct smtp_session *s);

/*
 * Runs the commands in buf[0..len) until the input is used up, the session
 * waits for an asynchronous answer, or it asks for an action. *consumed_r
 * says how many bytes are done with; the caller keeps the rest for the next
 * call.
 */
void smtp_session_feed(struct smtp_session *s, const char *buf, size_t len, size_t *consumed_r);

/* The replies waiting to be sent; the caller consumes what it sent. */
struct buf *smtp_session_output(struct smtp_session *s);

/* What the glue must do now; reading it clears STARTTLS (CLOSE stays). */
enum smtp_action smtp_session_action(struct smtp_session *s);

/* True while an answer from the store or the login check is awaited. */
bool smtp_session_busy(const struct smtp_session *s);

/* Logged in, sending a message, or waiting on its commit: worth its slot. */
bool smtp_session_engaged(const struct smtp_session *s);

/* TLS is up, after STARTTLS or at once on submissions: state is reset (RFC 3207 4.2). */
void smtp_session_tls_started(struct smtp_session *s, const char *version, const char *cipher,
                              const char *cert);

/* The store's answer to ops->deliver: 0, -ENOSPC, or another negative code. */
void smtp_session_store_done(struct smtp_session *s, int rc);

/*
 * The answer to ops->deliver when the message is refused rather than
 * stored: line is the whole reply ("550 5.7.1 ..."), without CRLF.
 */
void smtp_session_refused(struct smtp_session *s, const char *line);

/*
 * The answer to ops->auth: 1 logged in (user_id set), 0 refused, -EAGAIN
 * when the client address is locked out for now.
 */
void smtp_session_auth_done(struct smtp_session *s, int rc, int64_t user_id);

/* The idle timer fired: 421 and close. */
void smtp_session_timeout(struct smtp_session *s);

/* The daemon is shutting down: 421 and close. */
void smtp_session_shutdown(struct smtp_session *s);

#endif
