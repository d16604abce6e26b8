/*
 * pop3_session.c — the POP3 state machine; see pop3_session.h.
 *
 * RFC 1939 to the letter: the AUTHORIZATION state until a login succeeds
 * and the maildrop lock is taken; TRANSACTION on a snapshot of the maildrop
 * taken at login; DELE only marks, and the marks are applied in one store
 * transaction when QUIT enters UPDATE. A session that ends any other way
 * deletes nothing.
 */
#include "pop3_session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "pop3_parser.h"
#include "sasl.h"
#include "util.h"
#include "watch_text.h"

/* Replies to pipelined commands wait for the glue past POP3_OUT_HIGH. */
#define POP3_OUT_HIGH (4 * 1024)
#define POP3_OUT_MAX (64 * 1024)
#define POP3_PUMP_BYTES (16 * 1024) /* added to the output per pump */
#define POP3_READ_CHUNK (16 * 1024)
#define POP3_LIST_LINE (STORE_UIDL_MAX + 32) /* the longest LIST or UIDL line */

enum pop3_state {
    ST_AUTHORIZATION = 1 << 0,
    ST_SASL = 1 << 1,        /* inside an AUTH exchange */
    ST_TRANSACTION = 1 << 2,
    ST_CLOSED = 1 << 3,
};

/* What a multi-line reply sent in pieces is made of. */
enum pop3_send_kind {
    SEND_BODY, /* RETR or TOP */
    SEND_LIST,
    SEND_UIDL,
};

/* The multi-line reply being sent: a message by RETR or TOP, or a listing. */
struct pop3_send {
    bool active;
    enum pop3_send_kind kind;
    size_t next;       /* LIST, UIDL: the index of the next entry */
    int64_t message_id;
    int64_t offset, size;
    bool bol;          /* the next byte starts a line */
    bool in_header;    /* TOP: still in the header */
    size_t line_len;   /* octets of the current line so far */
    long body_lines;   /* TOP: body lines still to send; -1 for RETR */
    bool eoh_pending;  /* CRLF is still to be supplied at eoh_at (oe-ns-eoh) */
    int64_t eoh_at;
};

struct pop3_session {
    struct pop3_session_config cfg;
    const struct pop3_ops *ops;
    void *ctx;
    struct pop3_parser parser;
    enum pop3_state state;
    enum pop3_action action;
    bool busy, tls, utf8;
    bool failed;                   /* a line was lost: nothing more goes out */
    char user[SASL_FIELD_MAX + 1]; /* from USER, or the SASL identity */
    int64_t user_id;               /* > 0 once logged in and locked */
    struct sasl sasl;
    struct store_mail *mails;
    bool *deleted;
    bool *retrieved;               /* RETR sent it: recorded at QUIT when expire is on */
    size_t n_mails;
    int64_t pending_id;            /* locked, its ops->login under way */
    bool listed;                   /* mails came from ops->login (pop3_session_listed) */
    unsigned errors;
    struct pop3_send send;
    struct buf out;
};

/* --- the live view ------------------------------------------------------- */

static bool watched(const struct pop3_session *s)
{
    return s->ops->watched != NULL && s->ops->watched(s->ctx);
}

static void watch(struct pop3_session *s, enum watch_kind kind, const char *text, size_t len)
{
    s->ops->watch(s->ctx, kind, s->tls, text, len);
}

/* A step of message i's journey: "retr", "dele", ... (see watch.h). */
static void watch_mail(struct pop3_session *s, const char *what, size_t i)
{
    char text[128];
    int n = snprintf(text, sizeof(text), "%s id=%lld n=%zu uidl=%s size=%lld", what,
                     (long long)s->mails[i].message_id, i + 1, s->mails[i].uidl,
                     (long long)s->mails[i].size);
    if (n > 0)
        watch(s, WATCH_MAIL, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

/* At most this many "removed" steps an UPDATE: a viewer wants the journey, not a flood. */
#define WATCH_REMOVED_MAX 64

/* A client's line for the view: a SASL response or a command, secrets replaced. */
static void watch_line(struct pop3_session *s, const char *line, size_t len, bool more_sent)
{
    if (!watched(s))
        return;
    char shown[WATCH_TEXT_MAX + 1];
    size_t n = s->state == ST_SASL
                   ? watch_sasl_line(s->sasl.mech, s->sasl.step, line, len, shown, sizeof(shown))
                   : watch_command_line(WATCH_POP3, line, len, shown, sizeof(shown));
    watch(s, WATCH_CLIENT, shown, n);
    if (more_sent) { /* the client sent on without waiting: RFC 2449 PIPELINING, which CAPA offers */
        static const char note[] = "pipelining: more followed before this reply";
        watch(s, WATCH_NOTE, note, sizeof(note) - 1);
    }
}

/* --- replies ------------------------------------------------------------ */

/*
 * A line that could not be written is lost, and a reply missing a line must
 * never end with "." as if whole: from then on nothing more is written and
 * the connection ends, so the client sees a hang-up instead.
 */
static void fail(struct pop3_session *s)
{
    s->failed = true;
    s->send.active = false;
    s->state = ST_CLOSED;
    s->action = POP3_ACT_CLOSE;
}

static void reply(struct pop3_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct pop3_session *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    size_t start = s->out.len;
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf_crlf(&s->out, fmt, ap);
    va_end(ap);
    if (rc < 0)
        fail(s);
    else if (watched(s))
        watch(s, WATCH_SERVER, (const char *)s->out.data + start, s->out.len - start - 2);
}

/* Appends raw octets of a message; sticky on failure like reply(). */
static void append(struct pop3_session *s, const char *p, size_t n)
{
    if (!s->failed && buf_append(&s->out, p, n) < 0)
        fail(s);
}

static void close_with(struct pop3_session *s, const char *line)
{
    reply(s, "%s", line);
    s->state = ST_CLOSED;
    s->action = POP3_ACT_CLOSE;
}

static void count_error(struct pop3_session *s)
{
    if (++s->errors >= s->cfg.bad_commands) {
        log_info("pop3 session=%s ip=%s event=too-many-errors", s->cfg.session_id, s->cfg.peer_ip);
        close_with(s, "-ERR Too many errors, closing the connection");
    }
}

static bool login_allowed(const struct pop3_session *s)
{
    return s->tls || s->cfg.peer_loopback;
}

/* --- AUTHORIZATION ------------------------------------------------------ */

static void cmd_capa(struct pop3_session *s, const struct pop3_command *c)
{
    (void)c;
    reply(s, "+OK Capability list follows");
    reply(s, "TOP");
    reply(s, "UIDL");
    if (s->state != ST_TRANSACTION && login_allowed(s)) {
        reply(s, "USER");
        reply(s, "SASL PLAIN LOGIN");
    }
    if (s->state != ST_TRANSACTION && !s->tls && s->cfg.tls_available)
        reply(s, "STLS");
    reply(s, "RESP-CODES");
    reply(s, "AUTH-RESP-CODE");
    reply(s, "PIPELINING");
    reply(s, "UTF8");
    /* The policy enforced (RFC 2449 6.7, 6.5), the same for every user, so
     * the same before and after login, and without USER. */
    if (s->cfg.expire)
        reply(s, "EXPIRE %u", s->cfg.expire_days);
    else
        reply(s, "EXPIRE NEVER");
    reply(s, "LOGIN-DELAY %u", s->cfg.login_delay);
    reply(s, "IMPLEMENTATION kotak %s", KOTAK_VERSION);
    reply(s, ".");
}

static bool check_login_allowed(struct pop3_session *s)
{
    if (login_allowed(s))
        return true;
    reply(s, "-ERR [AUTH] Login needs an encrypted connection: send STLS first");
    return false;
}

static void cmd_user(struct pop3_session *s, const struct pop3_command *c)
{
    if (!check_login_allowed(s))
        return;
    if (c->argc != 1 || c->arg_len[0] > SASL_FIELD_MAX) {
        reply(s, "-ERR Syntax: USER name");
        count_error(s);
        return;
    }
    memcpy(s->user, c->argv[0], c->arg_len[0]);
    s->user[c->arg_len[0]] = '\0';
    reply(s, "+OK Send PASS");
}

static void start_auth(struct pop3_session *s, const char *user, const char *password)
{
    s->busy = true;
    snprintf(s->user, sizeof(s->user), "%s", user);
    s->ops->auth(s->ctx, user, password);
}

static void cmd_pass(struct pop3_session *s, const struct pop3_command *c)
{
    if (!check_login_allowed(s))
        return;
    if (s->user[0] == '\0') {
        reply(s, "-ERR Send USER first");
        count_error(s);
        return;
    }
    if (c->rest_len == 0 || c->rest_len > SASL_FIELD_MAX) {
        reply(s, "-ERR Syntax: PASS password");
        count_error(s);
        return;
    }
    char password[SASL_FIELD_MAX + 1];
    memcpy(password, c->rest, c->rest_len);
    password[c->rest_len] = '\0';
    char user[SASL_FIELD_MAX + 1];
    memcpy(user, s->user, sizeof(user));
    start_auth(s, user, password);
    explicit_bzero(password, sizeof(password));
}

static void sasl_fail(struct pop3_session *s, const char *line)
{
    sasl_clear(&s->sasl);
    s->state = ST_AUTHORIZATION;
    reply(s, "%s", line);
    count_error(s);
}

static void sasl_feed(struct pop3_session *s, const char *resp, size_t len)
{
    char challenge[64];
    int rc = sasl_step(&s->sasl, resp, len, challenge, sizeof(challenge));
    if (rc == -ECANCELED) {
        sasl_fail(s, "-ERR Authentication cancelled");
        return;
    }
    if (rc < 0) {
        sasl_fail(s, "-ERR [AUTH] Cannot decode the response");
        return;
    }
    if (rc == SASL_CONTINUE) {
        s->state = ST_SASL;
        reply(s, "+ %s", challenge);
        return;
    }
    s->state = ST_AUTHORIZATION;
    /* No proxy logins: one for another identity is a login of nobody, which
     * fails like any other, after the delay. */
    start_auth(s, s->sasl.authzid[0] != '\0' ? "" : s->sasl.user, s->sasl.password);
    sasl_clear(&s->sasl);
}

static void cmd_auth(struct pop3_session *s, const struct pop3_command *c)
{
    if (c->argc == 0) {
        /* The list that clients from before RFC 5034 ask for with a bare AUTH. */
        reply(s, "+OK Mechanisms follow");
        reply(s, "PLAIN");
        reply(s, "LOGIN");
        reply(s, ".");
        return;
    }
    if (!check_login_allowed(s))
        return;
    enum sasl_mech mech;
    if (c->too_many_args || sasl_mech_parse(c->argv[0], c->arg_len[0], &mech) < 0) {
        reply(s, "-ERR Unknown mechanism; use PLAIN or LOGIN");
        count_error(s);
        return;
    }
    sasl_begin(&s->sasl, mech);
    if (c->argc == 2) {
        sasl_feed(s, c->argv[1], c->arg_len[1]);
        return;
    }
    s->state = ST_SASL;
    reply(s, "+ %s", sasl_first_challenge(mech));
}

static void open_maildrop(struct pop3_session *s, int64_t user_id, const char *user);

void pop3_session_auth_done(struct pop3_session *s, int rc, int64_t user_id)
{
    char user[SASL_FIELD_MAX * 4 + 3];
    s->busy = false;
    log_value(user, sizeof(user), s->user, strlen(s->user));
    /* Every failure is logged, also one whose session has closed meanwhile:
     * it is the line fail2ban reads. */
    const char *failed = rc == -EAGAIN ? "locked" : rc <= 0 ? "failed" : NULL;
    if (failed != NULL || s->state == ST_CLOSED)
        log_info("pop3 session=%s ip=%s event=login user=%s result=%s", s->cfg.session_id,
                 s->cfg.peer_ip, user, failed != NULL ? failed : "ok");
    if (s->state == ST_CLOSED)
        return; /* the goodbye went out already: no answer, and no lock, follows it */
    if (rc == -EAGAIN) {
        reply(s, "-ERR [SYS/TEMP] Too many failed logins from your address, try again later");
        s->user[0] = '\0';
        return;
    }
    if (rc <= 0) {
        reply(s, "-ERR [AUTH] Invalid user name or password");
        s->user[0] = '\0';
        count_error(s);
        return;
    }
    if (s->ops->lock(s->ctx, user_id) < 0) {
        log_info("pop3 session=%s ip=%s event=login user=%s result=in-use", s->cfg.session_id,
                 s->cfg.peer_ip, user);
        reply(s, "-ERR [IN-USE] The maildrop is in use by another session");
        s->user[0] = '\0';
        return;
    }
    if ((s->cfg.login_delay > 0 || s->cfg.expire || s->cfg.list_in_login) &&
        s->ops->login != NULL) {
        /* LOGIN-DELAY and EXPIRE are the store's to check and do, off the
         * loop, under the lock and before the listing: after the password
         * check, so a refusal tells a guesser nothing. */
        s->busy = true;
        s->pending_id = user_id;
        s->ops->login(s->ctx, user_id, s->user);
        return;
    }
    open_maildrop(s, user_id, user);
}

void pop3_session_login_done(struct pop3_session *s, int rc)
{
    int64_t user_id = s->pending_id;
    char user[SASL_FIELD_MAX * 4 + 3];
    s->busy = false;
    s->pending_id = 0;
    if (user_id <= 0)
        return;
    log_value(user, sizeof(user), s->user, strlen(s->user));
    if (s->state == ST_CLOSED || rc != 0) {
        free(s->mails); /* a listing given with a refusal is no one's */
        s->mails = NULL;
        s->n_mails = 0;
        s->listed = false;
        s->ops->unlock(s->ctx, user_id);
        if (s->state == ST_CLOSED)
            return;
        log_info("pop3 session=%s ip=%s event=login user=%s result=%s", s->cfg.session_id,
                 s->cfg.peer_ip, user, rc > 0 ? "login-delay" : "store-error");
        if (rc > 0) /* RFC 2449 8.1.1 */
            reply(s, "-ERR [LOGIN-DELAY] Wait %u seconds between logins", s->cfg.login_delay);
        else
            reply(s, "-ERR [SYS/TEMP] Cannot open the maildrop, try again later");
        s->user[0] = '\0';
        return;
    }
    open_maildrop(s, user_id, user);
}

void pop3_session_listed(struct pop3_session *s, struct store_mail *list, size_t n)
{
    free(s->mails);
    s->mails = list;
    s->n_mails = n;
    s->listed = true;
}

/* The login's last step, under the maildrop lock: the listing, TRANSACTION. */
static void open_maildrop(struct pop3_session *s, int64_t user_id, const char *user)
{
    int lrc = s->listed ? 0 : s->ops->list(s->ctx, user_id, &s->mails, &s->n_mails);
    if (lrc < 0) {
        s->ops->unlock(s->ctx, user_id);
        log_info("pop3 session=%s ip=%s event=login user=%s result=store-error", s->cfg.session_id,
                 s->cfg.peer_ip, user);
        reply(s, "-ERR [SYS/TEMP] Cannot open the maildrop, try again later");
        return;
    }
    s->user_id = user_id;
    s->deleted = xcalloc(s->n_mails ? s->n_mails : 1, sizeof(bool));
    s->retrieved = xcalloc(s->n_mails ? s->n_mails : 1, sizeof(bool));
    s->state = ST_TRANSACTION;
    int64_t total = 0;
    for (size_t i = 0; i < s->n_mails; i++)
        total += s->mails[i].size;
    log_info("pop3 session=%s ip=%s event=login user=%s result=ok messages=%zu", s->cfg.session_id,
             s->cfg.peer_ip, user,
             s->n_mails);
    reply(s, "+OK Logged in, %zu messages (%lld octets)", s->n_mails, (long long)total);
}

static void cmd_stls(struct pop3_session *s, const struct pop3_command *c)
{
    (void)c;
    if (s->tls || !s->cfg.tls_available) {
        reply(s, "-ERR STLS not available");
        return;
    }
    reply(s, "+OK Begin TLS negotiation");
    s->action = POP3_ACT_STLS;
}

static void cmd_utf8(struct pop3_session *s, const struct pop3_command *c)
{
    (void)c;
    s->utf8 = true;
    reply(s, "+OK UTF8 enabled");
}

static void cmd_apop(struct pop3_session *s, const struct pop3_command *c)
{
    (void)c;
    /* APOP needs the password in the clear on the server; kotak keeps hashes only. */
    reply(s, "-ERR APOP is not supported; use USER/PASS or AUTH over TLS");
}

/* --- TRANSACTION -------------------------------------------------------- */

/* The message named by arg, not deleted: its index, or -1 after an -ERR. */
static long message_arg(struct pop3_session *s, const char *arg, size_t len)
{
    unsigned long n;
    if (pop3_parse_number(arg, len, s->n_mails, &n) < 0 || s->deleted[n - 1]) {
        reply(s, "-ERR No such message");
        return -1;
    }
    return (long)n - 1;
}

static void cmd_stat(struct pop3_session *s, const struct pop3_command *c)
{
    (void)c;
    size_t n = 0;
    int64_t total = 0;
    for (size_t i = 0; i < s->n_mails; i++) {
        if (!s->deleted[i]) {
            n++;
            total += s->mails[i].size;
        }
    }
    reply(s, "+OK %zu %lld", n, (long long)total);
}

static void list_or_uidl(struct pop3_session *s, const struct pop3_command *c, bool uidl)
{
    if (c->argc > 1) {
        reply(s, "-ERR Syntax: %s [message]", uidl ? "UIDL" : "LIST");
        return;
    }
    if (c->argc == 1) {
        long i = message_arg(s, c->argv[0], c->arg_len[0]);
        if (i < 0)
            return;
        if (uidl)
            reply(s, "+OK %ld %s", i + 1, s->mails[i].uidl);
        else
            reply(s, "+OK %ld %lld", i + 1, (long long)s->mails[i].size);
        return;
    }
    /* A listing can be far larger than the output buffer: it is sent in
     * pieces like a message (pop3_session_pump). */
    reply(s, "+OK %s follows", uidl ? "Unique-ID listing" : "Scan listing");
    s->send = (struct pop3_send){.active = true, .kind = uidl ? SEND_UIDL : SEND_LIST};
    pop3_session_pump(s);
}

static void cmd_list(struct pop3_session *s, const struct pop3_command *c)
{
    list_or_uidl(s, c, false);
}

static void cmd_uidl(struct pop3_session *s, const struct pop3_command *c)
{
    list_or_uidl(s, c, true);
}

static void start_send(struct pop3_session *s, long i, long body_lines)
{
    /* The size LIST gave counts the CRLF supplied where the header section
     * lacks its empty line; the store holds two octets fewer. */
    const struct store_mail *m = &s->mails[i];
    s->send = (struct pop3_send){
        .active = true,
        .kind = SEND_BODY,
        .message_id = m->message_id,
        .size = m->eoh_missing ? m->size - 2 : m->size,
        .bol = true,
        .in_header = body_lines >= 0,
        .body_lines = body_lines,
        .eoh_pending = m->eoh_missing,
        .eoh_at = m->eoh_at,
    };
    metrics_count(body_lines < 0 ? METRIC_POP3_RETR : METRIC_POP3_TOP);
    if (watched(s)) {
        char note[96];
        int n = body_lines < 0
                    ? snprintf(note, sizeof(note), "(message %ld: %lld octets, then a line with a dot)",
                               i + 1, (long long)s->mails[i].size)
                    : snprintf(note, sizeof(note),
                               "(message %ld: its header and %ld body lines, then a line with a dot)",
                               i + 1, body_lines);
        watch(s, WATCH_NOTE, note, (size_t)n);
        watch_mail(s, body_lines < 0 ? "retr" : "top", (size_t)i);
    }
    pop3_session_pump(s);
}

static void cmd_retr(struct pop3_session *s, const struct pop3_command *c)
{
    if (c->argc != 1) {
        reply(s, "-ERR Syntax: RETR message");
        return;
    }
    long i = message_arg(s, c->argv[0], c->arg_len[0]);
    if (i < 0)
        return;
    reply(s, "+OK %lld octets", (long long)s->mails[i].size);
    s->retrieved[i] = true; /* RFC 2449 6.7's retention counts from RETR, not TOP */
    start_send(s, i, -1);
}

static void cmd_top(struct pop3_session *s, const struct pop3_command *c)
{
    unsigned long lines;
    if (c->argc != 2 || c->too_many_args ||
        (!(c->arg_len[1] == 1 && c->argv[1][0] == '0') &&
         pop3_parse_number(c->argv[1], c->arg_len[1], 1000000000ul, &lines) < 0)) {
        reply(s, "-ERR Syntax: TOP message lines");
        return;
    }
    if (c->argv[1][0] == '0')
        lines = 0;
    long i = message_arg(s, c->argv[0], c->arg_len[0]);
    if (i < 0)
        return;
    reply(s, "+OK Top of message follows");
    start_send(s, i, (long)lines);
}

static void cmd_dele(struct pop3_session *s, const struct pop3_command *c)
{
    if (c->argc != 1) {
        reply(s, "-ERR Syntax: DELE message");
        return;
    }
    long i = message_arg(s, c->argv[0], c->arg_len[0]);
    if (i < 0)
        return;
    s->deleted[i] = true;
    reply(s, "+OK Message %ld marked for deletion", i + 1);
    if (watched(s))
        watch_mail(s, "dele", (size_t)i);
}

static void cmd_rset(struct pop3_session *s, const struct pop3_command *c)
{
    (void)c;
    memset(s->deleted, 0, s->n_mails * sizeof(bool));
    reply(s, "+OK %zu messages", s->n_mails);
    if (watched(s))
        watch(s, WATCH_MAIL, "rset", 4);
}

static void cmd_noop(struct pop3_session *s, const struct pop3_command *c)
{
    (void)c;
    reply(s, "+OK");
}

static void cmd_quit(struct pop3_session *s, const struct pop3_command *c)
{
    (void)c;
    if (s->state != ST_TRANSACTION) {
        close_with(s, "+OK Bye");
        return;
    }
    /* UPDATE: every mark at once, before the +OK (RFC 1939 6); with
     * [pop3] expire, in the same transaction, the first retrieval of each
     * message RETR sent and DELE did not mark. */
    int64_t *ids = xmalloc(2 * (s->n_mails ? s->n_mails : 1) * sizeof(int64_t));
    int64_t *ret = ids + (s->n_mails ? s->n_mails : 1);
    size_t n = 0, n_ret = 0;
    for (size_t i = 0; i < s->n_mails; i++) {
        if (s->deleted[i])
            ids[n++] = s->mails[i].id;
        else if (s->retrieved[i] && s->cfg.expire)
            ret[n_ret++] = s->mails[i].id;
    }
    if (n == 0 && n_ret == 0) {
        free(ids);
        close_with(s, "+OK Bye");
        return;
    }
    s->busy = true;
    s->ops->commit(s->ctx, s->user_id, ids, n, ret, n_ret);
    free(ids);
}

void pop3_session_commit_done(struct pop3_session *s, int rc)
{
    s->busy = false;
    size_t n = 0;
    for (size_t i = 0; i < s->n_mails; i++)
        n += s->deleted[i];
    if (rc == 0)
        metrics_add(METRIC_POP3_DELETED, n);
    size_t n_ret = 0;
    for (size_t i = 0; s->cfg.expire && i < s->n_mails; i++)
        n_ret += s->retrieved[i] && !s->deleted[i];
    if (s->cfg.expire)
        log_info("pop3 session=%s event=update deleted=%zu retrieved=%zu result=%s",
                 s->cfg.session_id, rc == 0 ? n : 0, rc == 0 ? n_ret : 0,
                 rc == 0 ? "removed" : "store-error");
    else
        log_info("pop3 session=%s event=update deleted=%zu result=%s", s->cfg.session_id,
                 rc == 0 ? n : 0, rc == 0 ? "removed" : "store-error");
    if (rc == 0 && watched(s)) {
        size_t shown = 0;
        for (size_t i = 0; i < s->n_mails && shown < WATCH_REMOVED_MAX; i++) {
            if (!s->deleted[i])
                continue;
            watch_mail(s, "removed", i);
            shown++;
        }
        if (n > shown) {
            char text[64];
            int len = snprintf(text, sizeof(text), "removed-more count=%zu", n - shown);
            watch(s, WATCH_MAIL, text, (size_t)len);
        }
    }
    if (rc == 0 || n == 0) { /* a retrieval not recorded only keeps mail longer */
        reply(s, "+OK Bye, %zu messages deleted", rc == 0 ? n : 0);
        s->state = ST_CLOSED;
        s->action = POP3_ACT_CLOSE;
    } else {
        close_with(s, "-ERR [SYS/TEMP] Some deleted messages not removed, try again later");
    }
}

/* --- sending a message -------------------------------------------------- */

/*
 * Appends p[0..n) to the output with byte-stuffing (RFC 1939 3), counting
 * lines for TOP. Returns the bytes taken: fewer than n when TOP has sent
 * all the lines it was asked for.
 */
/*
 * Outlook and Outlook Express hang on a message that holds a NUL (Dovecot's
 * outlook-no-nuls): each goes out as 0x80, the same length, so the size
 * LIST and STAT report stays true; the stored message keeps its NULs.
 */
static void no_nuls(uint8_t *p, size_t n)
{
    for (uint8_t *nul; (nul = memchr(p, '\0', n)) != NULL; n -= (size_t)(nul - p) + 1, p = nul + 1)
        *nul = 0x80;
}

static size_t stuff(struct pop3_session *s, const char *p, size_t n)
{
    struct pop3_send *t = &s->send;
    size_t i = 0;
    while (i < n) {
        if (t->body_lines == 0 && !t->in_header)
            return i;
        const char *lf = memchr(p + i, '\n', n - i);
        size_t end = lf ? (size_t)(lf - p) + 1 : n;
        if (t->bol && p[i] == '.')
            append(s, ".", 1);
        size_t at = s->out.len;
        append(s, p + i, end - i);
        no_nuls(s->out.data + at, s->out.len - at);
        t->line_len += end - i;
        t->bol = lf != NULL;
        if (lf != NULL) {
            if (t->in_header && t->line_len <= 2 && !t->eoh_pending)
                t->in_header = false; /* the empty line after the header */
            else if (!t->in_header && t->body_lines > 0)
                t->body_lines--;
            t->line_len = 0;
        }
        i = end;
    }
    return n;
}

/*
 * Outlook Express and Netscape break on a header section that no empty
 * line ends (Dovecot's oe-ns-eoh): where the store found it missing, the
 * CRLF goes out here, and for TOP the body starts after it. The stored
 * message stays as it came; LIST's size counts these two octets.
 */
static void supply_eoh(struct pop3_session *s)
{
    struct pop3_send *t = &s->send;
    append(s, "\r\n", 2);
    t->eoh_pending = false;
    t->in_header = false;
    t->bol = true;
    t->line_len = 0;
}

static void send_end(struct pop3_session *s)
{
    if (!s->send.bol)
        append(s, "\r\n", 2);
    append(s, ".\r\n", 3);
    s->send.active = false;
}

/* Adds the next lines of a LIST or UIDL listing, whole lines only. */
static void pump_listing(struct pop3_session *s)
{
    struct pop3_send *t = &s->send;
    size_t start = s->out.len;
    while (t->active && s->out.len - start < POP3_PUMP_BYTES &&
           s->out.len + POP3_LIST_LINE <= s->out.max) {
        if (t->next == s->n_mails) {
            reply(s, ".");
            t->active = false;
            return;
        }
        size_t i = t->next++;
        if (s->deleted[i])
            continue;
        if (t->kind == SEND_UIDL)
            reply(s, "%zu %s", i + 1, s->mails[i].uidl);
        else
            reply(s, "%zu %lld", i + 1, (long long)s->mails[i].size);
    }
}

void pop3_session_pump(struct pop3_session *s)
{
    struct pop3_send *t = &s->send;
    if (t->active && t->kind != SEND_BODY) {
        pump_listing(s);
        return;
    }
    char chunk[POP3_READ_CHUNK];
    size_t added = 0;
    /* Stuffing can double a chunk; only whole chunks go in, so none is cut. */
    while (t->active && added < POP3_PUMP_BYTES &&
           s->out.len + 2 * POP3_READ_CHUNK + 8 <= s->out.max) {
        if (t->eoh_pending && t->offset == t->eoh_at) {
            supply_eoh(s);
            added += 2;
            metrics_add(METRIC_POP3_SENT_BYTES, 2);
            if (t->offset >= t->size || (t->body_lines == 0 && !t->in_header))
                send_end(s);
            continue;
        }
        /* A read stops where the empty line is to go in. */
        size_t want = sizeof(chunk);
        if (t->eoh_pending && t->eoh_at > t->offset && (uint64_t)(t->eoh_at - t->offset) < want)
            want = (size_t)(t->eoh_at - t->offset);
        size_t got;
        int rc = s->ops->read(s->ctx, t->message_id, t->offset, chunk, want, &got);
        if (rc < 0) {
            /* The +OK is out already; all that is left is to hang up. */
            log_error("pop3 session=%s event=read-failed rc=%d", s->cfg.session_id, rc);
            fail(s);
            return;
        }
        if (got == 0 && t->offset < t->size) {
            /* The body ends before the size the +OK and LIST gave: a "." now
             * would pass a cut message off as whole. Hang up instead. */
            log_error("pop3 session=%s event=body-short message=%lld size=%lld sent=%lld",
                      s->cfg.session_id, (long long)t->message_id, (long long)t->size,
                      (long long)t->offset);
            fail(s);
            return;
        }
        size_t before = s->out.len;
        size_t used = got ? stuff(s, chunk, got) : 0;
        added += s->out.len - before;
        metrics_add(METRIC_POP3_SENT_BYTES, s->out.len - before);
        t->offset += (int64_t)used;
        if (got == 0 || used < got ||
            (t->offset >= t->size && !(t->eoh_pending && t->eoh_at == t->offset)))
            send_end(s);
    }
}

/* --- dispatch ------------------------------------------------------------ */

struct pop3_cmd_def {
    enum pop3_verb verb;
    unsigned states;
    void (*run)(struct pop3_session *s, const struct pop3_command *c);
};

#define ST_BOTH (ST_AUTHORIZATION | ST_TRANSACTION)

static const struct pop3_cmd_def pop3_cmds[] = {
    {POP3_CMD_CAPA, ST_BOTH, cmd_capa},
    {POP3_CMD_USER, ST_AUTHORIZATION, cmd_user},
    {POP3_CMD_PASS, ST_AUTHORIZATION, cmd_pass},
    {POP3_CMD_AUTH, ST_AUTHORIZATION, cmd_auth},
    {POP3_CMD_STLS, ST_AUTHORIZATION, cmd_stls},
    {POP3_CMD_UTF8, ST_AUTHORIZATION, cmd_utf8},
    {POP3_CMD_APOP, ST_AUTHORIZATION, cmd_apop},
    {POP3_CMD_STAT, ST_TRANSACTION, cmd_stat},
    {POP3_CMD_LIST, ST_TRANSACTION, cmd_list},
    {POP3_CMD_UIDL, ST_TRANSACTION, cmd_uidl},
    {POP3_CMD_RETR, ST_TRANSACTION, cmd_retr},
    {POP3_CMD_TOP, ST_TRANSACTION, cmd_top},
    {POP3_CMD_DELE, ST_TRANSACTION, cmd_dele},
    {POP3_CMD_RSET, ST_TRANSACTION, cmd_rset},
    {POP3_CMD_NOOP, ST_TRANSACTION, cmd_noop},
    {POP3_CMD_QUIT, ST_BOTH, cmd_quit},
};

static void run_line(struct pop3_session *s, const char *line, size_t len, bool more_sent)
{
    watch_line(s, line, len, more_sent);
    if (s->state == ST_SASL) {
        sasl_feed(s, line, len);
        return;
    }
    if (looks_like_http(line, len)) {
        close_with(s, "-ERR This is a mail server; closing the connection");
        return;
    }
    struct pop3_command c;
    pop3_command_parse(line, len, &c);
    for (size_t i = 0; i < sizeof(pop3_cmds) / sizeof(pop3_cmds[0]); i++) {
        if (pop3_cmds[i].verb != c.verb)
            continue;
        if (!(pop3_cmds[i].states & s->state)) {
            reply(s, "-ERR Not allowed %s", s->state == ST_TRANSACTION ? "after login"
                                                                        : "before login");
            count_error(s);
            return;
        }
        pop3_cmds[i].run(s, &c);
        return;
    }
    reply(s, "-ERR Unknown command");
    count_error(s);
}

void pop3_session_feed(struct pop3_session *s, const char *buf, size_t len, size_t *consumed_r)
{
    size_t done = 0;
    while (done < len && !s->busy && !s->send.active && s->action == POP3_ACT_NONE &&
           s->state != ST_CLOSED && s->out.len < POP3_OUT_HIGH) {
        const char *line;
        size_t line_len, used;
        int rc = pop3_parser_next(&s->parser, buf + done, len - done, &used, &line, &line_len);
        done += used;
        if (rc < 0) {
            if (s->state == ST_SASL)
                sasl_fail(s, "-ERR Line too long");
            else {
                reply(s, rc == -POP3_PERR_LINE_TOO_LONG ? "-ERR Line too long"
                                                        : "-ERR A line ends with CRLF and holds no NUL");
                count_error(s);
            }
            continue;
        }
        if (rc == 0) {
            if (used == 0)
                break;
            continue;
        }
        run_line(s, line, line_len, done < len);
    }
    *consumed_r = done;
}

/* --- life cycle --------------------------------------------------------- */

struct pop3_session *pop3_session_new(const struct pop3_session_config *cfg,
                                      const struct pop3_ops *ops, void *ctx)
{
    struct pop3_session *s = xcalloc(1, sizeof(*s));
    s->cfg = *cfg;
    if (s->cfg.bad_commands == 0)
        s->cfg.bad_commands = 10;
    s->ops = ops;
    s->ctx = ctx;
    s->state = ST_AUTHORIZATION;
    pop3_parser_init(&s->parser);
    buf_init(&s->out, POP3_OUT_MAX);
    return s;
}

void pop3_session_free(struct pop3_session **sp)
{
    struct pop3_session *s = *sp;
    if (s == NULL)
        return;
    if (s->user_id > 0)
        s->ops->unlock(s->ctx, s->user_id);
    else if (s->pending_id > 0)
        s->ops->unlock(s->ctx, s->pending_id);
    sasl_clear(&s->sasl);
    free(s->mails);
    free(s->deleted);
    free(s->retrieved);
    buf_free(&s->out);
    free(s);
    *sp = NULL;
}

void pop3_session_greet(struct pop3_session *s)
{
    /* No timestamp: APOP is not offered (RFC 1939 7). */
    reply(s, "+OK kotak POP3 server ready");
}

struct buf *pop3_session_output(struct pop3_session *s)
{
    return &s->out;
}

enum pop3_action pop3_session_action(struct pop3_session *s)
{
    enum pop3_action a = s->action;
    if (a == POP3_ACT_STLS)
        s->action = POP3_ACT_NONE;
    return a;
}

bool pop3_session_busy(const struct pop3_session *s)
{
    return s->busy;
}

bool pop3_session_sending(const struct pop3_session *s)
{
    return s->send.active;
}

void pop3_session_tls_started(struct pop3_session *s, const char *version, const char *cipher,
                              const char *cert)
{
    /* RFC 2595 4: what was said before TLS is forgotten. */
    s->tls = true;
    log_info("pop3 session=%s event=tls version=%s cipher=%s", s->cfg.session_id, version, cipher);
    if (watched(s)) {
        char text[WATCH_TEXT_MAX + 1];
        watch(s, WATCH_TLS, text, watch_tls_text(version, cipher, cert, text, sizeof(text)));
    }
    s->user[0] = '\0';
    sasl_clear(&s->sasl);
    s->state = ST_AUTHORIZATION;
    pop3_parser_init(&s->parser);
}

void pop3_session_timeout(struct pop3_session *s)
{
    /* A password check or QUIT's deletions under way are our wait, not the
     * client's: their answer comes first, and the idle time starts after it. */
    if (s->busy)
        return;
    s->send.active = false;
    close_with(s, "-ERR Idle for too long, closing the connection");
}

void pop3_session_shutdown(struct pop3_session *s)
{
    s->send.active = false;
    if (s->state != ST_CLOSED)
        close_with(s, "-ERR [SYS/TEMP] Server shutting down, try again later");
}

bool pop3_session_logged_in(const struct pop3_session *s)
{
    return s->state == ST_TRANSACTION;
}

void *pop3_session_ctx(const struct pop3_session *s)
{
    return s->ctx;
}
