/*
 * smtp_client.h — the sending side of SMTP as a state machine, with no I/O:
 * the mirror of smtp_session. Server replies go in, commands come out.
 *
 * The client keeps no socket, no clock and no resolver. The glue (the queue
 * runner) connects, feeds it the bytes it reads (after TLS), writes what it
 * finds in smtp_client_output(), and after every call asks
 * smtp_client_action() what to do next:
 *
 *   NONE      waiting for replies: send the output, read, feed.
 *   STARTTLS  the server said 220 to STARTTLS: send the output, throw away
 *             any input not consumed (a server must not send anything
 *             behind that reply; what it did send is an injection), do the
 *             TLS handshake, then call smtp_client_tls_started() — or
 *             smtp_client_tls_failed() when the handshake fails.
 *   BODY      the server said 354: stream the message through
 *             smtp_client_body() while smtp_client_wants_body() is true
 *             (it is false while the output is above SMTP_CLIENT_OUT_HIGH:
 *             send some, then go on), then smtp_client_body_end().
 *   DONE      the client is idle on a usable connection; the results of
 *             the transaction that just ended (if any) are final. Read
 *             them, then smtp_client_next() for the next message to the
 *             same place, or smtp_client_quit().
 *   CLOSE     the conversation is over: send the output, then close. The
 *             results of the transaction under way, if any, are final.
 *
 * The action is a query: reading it changes nothing. The client is
 * created waiting for the greeting (after the TLS handshake, with
 * tls_active, on an implicit-TLS port such as 465); smtp_client_next() may
 * be called at once, and the message then waits until the greeting, EHLO,
 * STARTTLS and AUTH are done.
 *
 * What the client does (RFC 5321, 3207, 4954, 1870, 6152, 6531, 2920,
 * 3461): EHLO, and HELO when EHLO gets a 5xx; STARTTLS when offered and
 * cfg.tls is not NONE, and EHLO again after it, forgetting what the server
 * said before TLS; AUTH PLAIN (LOGIN when only LOGIN is offered) only over
 * TLS, only when credentials are configured; MAIL with SIZE=, BODY=8BITMIME,
 * SMTPUTF8, RET=, ENVID= as offered and needed; RCPT with NOTIFY= and ORCPT=
 * when DSN is offered; with PIPELINING, MAIL, the RCPTs and DATA in one
 * write, handling the replies in order; the message dot-stuffed; QUIT.
 *
 * Policy, in the order the client meets it:
 *   - Greeting: 220 goes on; 554 fails every recipient (RFC 5321 3.1);
 *     anything else defers them. 421 at any point defers every recipient
 *     not yet final and closes at once; so does a reply that cannot be
 *     parsed ("bad reply": a malformed line, one over SMTP_CLIENT_LINE_MAX,
 *     a reply over SMTP_CLIENT_REPLY_MAX, one nobody asked for).
 *   - STARTTLS: offered and wanted, it is used. Not offered: REQUIRED
 *     defers every recipient ("TLS required but not offered", 4.7.4),
 *     OPPORTUNISTIC goes on in plaintext. Refused (454 and the like):
 *     REQUIRED defers, OPPORTUNISTIC goes on in plaintext on the same
 *     connection — the server never started TLS, so nothing is lost that
 *     plaintext delivery would not lose anyway. A failed handshake is
 *     different: the connection is unusable. smtp_client_tls_failed()
 *     defers every recipient (4.7.5) and closes; whether to try again in
 *     plaintext on a new connection is the glue's decision (Postfix's
 *     "may" level does that, and only then falls back to plaintext).
 *   - AUTH: with credentials configured, a login is required: without TLS,
 *     or when the server offers neither PLAIN nor LOGIN, every recipient is
 *     deferred (4.7.4) rather than the password sent in the clear or the
 *     message sent unauthenticated. A refused login (535 or any other code)
 *     defers every recipient with the server's reply: a wrong password at
 *     the smarthost must not bounce everything.
 *   - Before MAIL: a message larger than the server's SIZE fails every
 *     recipient with 5.3.4 (RFC 1870); a message that needs SMTPUTF8 (or
 *     whose envelope is not ASCII) to a server without it fails them with
 *     5.6.7 (RFC 6531 3.5). Nothing is sent; the connection stays usable.
 *     An 8-bit message to a server without 8BITMIME is sent as it is, as
 *     Postfix does.
 *   - MAIL: 2xx goes on, 5xx fails every recipient, anything else defers
 *     them. RCPT: 2xx accepts the recipient (final at the end of data), 5xx
 *     fails it, anything else defers it. 452 4.5.3 (or 452 without an
 *     enhanced code, or 552 5.5.3: RFC 5321 4.5.3.1.10) means the server's
 *     recipient limit: the recipients not yet sent are deferred (for
 *     another transaction), and no more RCPT is sent. No recipient
 *     accepted: no DATA; with PIPELINING the DATA already sent is answered
 *     503 or 554, which is read and ignored (and a 354 is ended at once
 *     with an empty message, whose answer is ignored too).
 *   - DATA: 354 starts the body; 5xx fails and anything else defers the
 *     accepted recipients. The reply to the final dot decides for every
 *     accepted recipient: 2xx delivered, 5xx failed, else deferred.
 *   - A transaction that ended before the final dot is followed by RSET
 *     before the next MAIL.
 *   - A connection lost, a timeout, or smtp_client_quit() in the middle
 *     defers every recipient not yet final. After the final dot but
 *     before its reply the message may have been delivered (RFC 5321
 *     6.1): it is deferred too, so delivery happens at least once.
 *
 * Secrets: the password is copied at smtp_client_new() and wiped with
 * explicit_bzero at smtp_client_free(), with the output buffer that held
 * the AUTH line (with a login configured that buffer is allocated at its
 * ceiling, SMTP_CLIENT_OUT_MAX, once, so that no realloc leaves a copy). It never appears in a
 * result text: if the server echoes it (or its base64), that is overwritten with '*'. The client
 * logs nothing; the glue logs one line per attempt from the results and from
 * smtp_client_tls_used(), smtp_client_server_name().
 */
#ifndef KOTAK_SMTP_CLIENT_H
#define KOTAK_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "store.h"

/* --- the reply parser (pure, no allocation) ------------------------------- */

#define SMTP_CLIENT_LINE_MAX 2048         /* a reply line, CRLF included */
#define SMTP_CLIENT_REPLY_MAX (64 * 1024) /* a whole multi-line reply */
#define SMTP_CLIENT_TEXT_MAX 512          /* reply text kept, for logs and bounces */

enum smtp_client_rerr {
    SMTP_CLIENT_RERR_SYNTAX = 1,     /* not "NNN", "NNN text", "NNN-text" with a valid code */
    SMTP_CLIENT_RERR_LINE_TOO_LONG,  /* no line end within SMTP_CLIENT_LINE_MAX octets */
    SMTP_CLIENT_RERR_REPLY_TOO_LONG, /* a multi-line reply past SMTP_CLIENT_REPLY_MAX */
    SMTP_CLIENT_RERR_CODE_CHANGED,   /* a line of a multi-line reply with another code */
};

/*
 * One reply, built a line at a time. code is 200..559 (RFC 5321 4.2:
 * [2-5][0-5][0-9]). enhanced is the RFC 3463 status code ("5.1.1") that
 * starts the first line when its class agrees with the code's first digit,
 * "" otherwise; that code is taken off the front of every line's text. text
 * is the lines' text joined by spaces, each byte outside printable ASCII
 * shown as '?', cut at SMTP_CLIENT_TEXT_MAX octets (cut says so);
 * NUL-terminated.
 */
struct smtp_client_reply {
    int code;
    char enhanced[16];
    char text[SMTP_CLIENT_TEXT_MAX + 1];
    size_t text_len;
    bool cut;
    bool complete; /* its last line ("NNN " or "NNN") was read */
    size_t lines;
    size_t octets; /* of every line so far, line ends included */
};

/* One line of a reply, as it came: the text after "NNN-" or "NNN ". */
struct smtp_client_line {
    const char *text; /* borrowed from the buffer given to smtp_client_reply_next */
    size_t len;       /* without the line end */
    bool last;
};

/* An empty reply. */
void smtp_client_reply_init(struct smtp_client_reply *r);

/*
 * Parses one reply line from buf[0..len). A line ends in LF; a CR before
 * the LF is dropped. Returns 1 with the line in *line_r and the reply
 * updated (r->complete after its last line), 0 when buf holds no whole line
 * yet, or -SMTP_CLIENT_RERR_*. *consumed_r is the line's length with its
 * end after 1, and 0 otherwise: the caller keeps the rest and calls again
 * with more. After a complete reply, the next call starts a new one. After
 * an error the stream cannot be trusted: the caller stops reading it.
 */
int smtp_client_reply_next(struct smtp_client_reply *r, const char *buf, size_t len,
                           size_t *consumed_r, struct smtp_client_line *line_r);

/* --- the conversation ------------------------------------------------------ */

/* Past this much unsent output, smtp_client_wants_body() says no. */
#define SMTP_CLIENT_OUT_HIGH (64 * 1024)
/* While smtp_client_wants_body() says yes, a body piece this large always fits. */
#define SMTP_CLIENT_BODY_CHUNK (64 * 1024)
/* The ceiling of the output buffer. */
#define SMTP_CLIENT_OUT_MAX (SMTP_CLIENT_OUT_HIGH + 2 * SMTP_CLIENT_BODY_CHUNK + 4096)
/* With PIPELINING, commands are written while fewer octets than this await a reply. */
#define SMTP_CLIENT_PIPE_WINDOW (16 * 1024)

enum smtp_client_tls {
    SMTP_CLIENT_TLS_NONE,          /* never STARTTLS */
    SMTP_CLIENT_TLS_OPPORTUNISTIC, /* STARTTLS when offered, else plaintext */
    SMTP_CLIENT_TLS_REQUIRED,      /* STARTTLS or defer */
};

struct smtp_client_config {
    const char *helo_name;     /* our name for EHLO/HELO; copied */
    enum smtp_client_tls tls;  /* for STARTTLS; ignored with tls_active */
    bool tls_active;           /* TLS from the first byte (implicit TLS, 465) */
    const char *auth_user;     /* NULL or "": no login; copied */
    const char *auth_password; /* copied, wiped at free */
};

/* RET= is the store's enum store_ret (STORE_RET_DEFAULT: none sent), NOTIFY=
 * its STORE_NOTIFY_* bits (0: none given, else NEVER alone or the others),
 * so what the queue keeps goes out as it is. */

struct smtp_client_rcpt {
    const char *addr;  /* the mailbox, without angle brackets */
    unsigned notify;   /* STORE_NOTIFY_*, 0: none */
    const char *orcpt; /* NULL, or the original recipient's address (sent as rfc822;xtext) */
};

/*
 * One message. Everything is copied by smtp_client_next(); the caller may
 * free it afterwards. Addresses are as they go between the angle brackets;
 * ENVID and ORCPT are given plain and sent as xtext (RFC 3461 4), ORCPT
 * only when it is ASCII.
 */
struct smtp_client_msg {
    const char *from; /* the reverse-path, "" for <> */
    const struct smtp_client_rcpt *rcpts;
    size_t n_rcpts;
    uint64_t size;       /* octets, for SIZE=; 0: not announced */
    bool eight_bit;      /* the body has 8-bit octets: BODY=8BITMIME when offered */
    bool needs_smtputf8; /* UTF-8 headers or addresses (RFC 6531) */
    enum store_ret ret;
    const char *envid; /* NULL or the envelope id for ENVID= */
};

#define SMTP_CLIENT_RCPTS_MAX 1000
#define SMTP_CLIENT_ADDR_MAX 512  /* an address or ORCPT, in octets */
#define SMTP_CLIENT_ENVID_MAX 100 /* RFC 3461 4.4 */

enum smtp_client_state {
    SMTP_CLIENT_PENDING,   /* not decided yet */
    SMTP_CLIENT_DELIVERED, /* the server took responsibility for it */
    SMTP_CLIENT_DEFERRED,  /* try again later */
    SMTP_CLIENT_FAILED,    /* permanent: bounce */
};

/* What the result answers: "in reply to <smtp_client_stage_name()>". */
enum smtp_client_stage {
    SMTP_CLIENT_STAGE_GREETING,
    SMTP_CLIENT_STAGE_EHLO, /* EHLO or HELO */
    SMTP_CLIENT_STAGE_STARTTLS,
    SMTP_CLIENT_STAGE_AUTH,
    SMTP_CLIENT_STAGE_RSET,
    SMTP_CLIENT_STAGE_MAIL,
    SMTP_CLIENT_STAGE_RCPT,
    SMTP_CLIENT_STAGE_DATA,  /* DATA, or sending the message */
    SMTP_CLIENT_STAGE_FINAL, /* the end of the message */
};

/*
 * One recipient's outcome. code is the server's reply code, or 0 when the
 * client decided alone (connection lost, bad reply, SIZE, SMTPUTF8, TLS
 * policy); enhanced is the RFC 3463 code of the reply or of that decision
 * ("" when the server gave none); text is the server's text (without code)
 * or the client's own sentence, bounded and printable ASCII.
 */
struct smtp_client_result {
    enum smtp_client_state state;
    enum smtp_client_stage stage;
    int code;
    char enhanced[16];
    char text[SMTP_CLIENT_TEXT_MAX + 1];
};

enum smtp_client_action {
    SMTP_CLIENT_ACT_NONE,
    SMTP_CLIENT_ACT_STARTTLS,
    SMTP_CLIENT_ACT_BODY,
    SMTP_CLIENT_ACT_DONE,
    SMTP_CLIENT_ACT_CLOSE,
};

struct smtp_client;

/*
 * A client waiting for the greeting. cfg is copied. Returns 0 with *c_r
 * set, or -EINVAL when helo_name is not a plain host name or address
 * literal, or the user or password is longer than 255 octets or holds a
 * control character.
 */
int smtp_client_new(const struct smtp_client_config *cfg, struct smtp_client **c_r);

/* Wipes the password and the output, frees the client; sets *c to NULL. */
void smtp_client_free(struct smtp_client **c);

/*
 * Feeds the server's bytes buf[0..len). *consumed_r says how many are done
 * with: the caller keeps the rest and feeds it again with what arrives
 * next. Feeding stops after the reply that asks for STARTTLS (the rest must
 * then be thrown away), while the action is BODY (what the server sent
 * early is fed again after smtp_client_body_end, and read as its answer to
 * the final dot), and once the action is CLOSE. While the action is DONE,
 * bytes are read: a 421 or anything else a server says unasked ends the
 * conversation (CLOSE), since its replies could no longer be matched.
 */
void smtp_client_feed(struct smtp_client *c, const char *buf, size_t len, size_t *consumed_r);

/* The commands (and body) waiting to be sent; the glue consumes what it sent. */
struct buf *smtp_client_output(struct smtp_client *c);

/* What the glue must do now; see the top of this file. */
enum smtp_client_action smtp_client_action(const struct smtp_client *c);

/*
 * Starts a transaction for msg: at once when the client is idle (DONE),
 * else when the connection is ready. Returns 0, -EBUSY when a transaction
 * is already under way or waiting, -EPIPE when the action is CLOSE, or
 * -EINVAL for a message the client will not send: no recipient or more
 * than SMTP_CLIENT_RCPTS_MAX, an address, ORCPT or ENVID with a control
 * character or too long, a NOTIFY with NEVER and another flag. On error
 * nothing changes.
 */
int smtp_client_next(struct smtp_client *c, const struct smtp_client_msg *msg);

/*
 * The results of the current (or last) transaction, one per recipient in
 * the message's order; *n_r is their number (0 before the first
 * smtp_client_next). Valid until the next smtp_client_next or free.
 */
const struct smtp_client_result *smtp_client_results(const struct smtp_client *c, size_t *n_r);

/* True while the action is BODY and the output is below SMTP_CLIENT_OUT_HIGH. */
bool smtp_client_wants_body(const struct smtp_client *c);

/*
 * Appends message bytes, dot-stuffed (RFC 5321 4.5.2: a '.' that starts a
 * line gets another), with every line ending made CRLF (a bare CR or LF
 * becomes CRLF: the output holds no bare line end for anyone to read as
 * one). Pieces may split lines and CRLFs anywhere. All or nothing: returns
 * 0, -ENOBUFS when the output has no room for n (never for n up to
 * SMTP_CLIENT_BODY_CHUNK while smtp_client_wants_body), or -EPROTO when
 * the action is not BODY.
 */
int smtp_client_body(struct smtp_client *c, const void *p, size_t n);

/*
 * Ends the message: CRLF when it did not end with one, then ".\r\n".
 * Returns 0 or -EPROTO when the action is not BODY.
 */
int smtp_client_body_end(struct smtp_client *c);

/* The TLS handshake after STARTTLS is done: EHLO again (RFC 3207 4.2). */
void smtp_client_tls_started(struct smtp_client *c);

/* The TLS handshake failed: every recipient not final is deferred; CLOSE. */
void smtp_client_tls_failed(struct smtp_client *c);

/*
 * Ends the conversation. Idle (DONE): QUIT, and CLOSE after its reply (any
 * reply). Anywhere else: the recipients not yet final are deferred and the
 * action is CLOSE at once (a QUIT there could be read as message data or a
 * SASL response, or come before the greeting).
 */
void smtp_client_quit(struct smtp_client *c);

/* The connection broke: every recipient not final is deferred; CLOSE. */
void smtp_client_connection_lost(struct smtp_client *c);

/* No reply came in time (smtp_client_timeout_s): as connection_lost, saying so. */
void smtp_client_timed_out(struct smtp_client *c);

/*
 * How long to wait for the reply now awaited, in seconds: RFC 5321
 * 4.5.3.2 (greeting, MAIL, RCPT 5 min; DATA 2 min; the final dot 10 min;
 * between body writes 3 min).
 */
unsigned smtp_client_timeout_s(const struct smtp_client *c);

/* True once TLS is up (tls_active or after STARTTLS). */
bool smtp_client_tls_used(const struct smtp_client *c);

/* True once AUTH succeeded. */
bool smtp_client_authenticated(const struct smtp_client *c);

/*
 * True when the server's last EHLO offered DSN (RFC 3461): the transaction
 * under it carried NOTIFY, ORCPT, RET and ENVID, and a success report is
 * that server's (or a later hop's) to send from then on.
 */
bool smtp_client_dsn_offered(const struct smtp_client *c);

/* The first word of the 220 greeting (printable ASCII, at most 255 octets), or "". */
const char *smtp_client_server_name(const struct smtp_client *c);

/* "greeting", "EHLO", "STARTTLS", "AUTH", "RSET", "MAIL FROM", "RCPT TO", "DATA", "end of data". */
const char *smtp_client_stage_name(enum smtp_client_stage stage);

/* "delivered", "deferred", "failed", "pending". */
const char *smtp_client_state_name(enum smtp_client_state state);

#endif
