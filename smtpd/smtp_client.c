/*
 * smtp_client.c — the SMTP client state machine: replies in, commands out.
 * See smtp_client.h for the contract with the glue and the policy.
 *
 * Two layers, as on the server side. The reply parser
 * (smtp_client_reply_next) turns bytes into reply lines and builds one
 * reply from them; it allocates nothing and copies at most
 * SMTP_CLIENT_TEXT_MAX octets of text. The conversation reacts to each
 * complete reply according to its state.
 *
 * A transaction is a queue of commands awaiting replies: MAIL, each RCPT,
 * DATA. Without PIPELINING one is written at a time; with it, as many as
 * fit in SMTP_CLIENT_PIPE_WINDOW octets awaiting replies (all of them, for
 * any ordinary message, in one write: RFC 2920 3.1 lets DATA end the group).
 * Replies are matched to the queue in order, which is how RFC 2920 3.2 says
 * a client must read them. RSET, when needed, goes alone before the group,
 * so that a failed RSET never leaves pipelined replies to skip.
 *
 * A failure of the connection or of a command that is not per recipient
 * decides every recipient still pending at once; a recipient is final
 * exactly once, and nothing changes it afterwards.
 */
#include "smtp_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sasl.h"
#include "util.h"

/* --- the reply parser ----------------------------------------------------- */

void smtp_client_reply_init(struct smtp_client_reply *r)
{
    memset(r, 0, sizeof(*r));
}

/*
 * Length of the RFC 3463 status code that starts p[0..n) when it has the
 * given class digit and is followed by a space or the end, else 0.
 */
static size_t enhanced_len(const char *p, size_t n, char class_digit)
{
    /* RFC 3463 2: the class is 2, 4 or 5; a 3xx reply has none. */
    if (n < 5 || class_digit == '3' || p[0] != class_digit || p[1] != '.')
        return 0;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9' && d < 4) {
            i++;
            d++;
        }
        if (d < 1 || d > 3)
            return 0;
        if (part == 0) {
            if (i >= n || p[i] != '.')
                return 0;
            i++;
        }
    }
    if (i < n && p[i] != ' ')
        return 0;
    return i;
}

/* Adds one line's text to the reply's, as printable ASCII, up to the limit. */
static void text_add(struct smtp_client_reply *r, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (r->text_len > 0) {
        if (r->text_len + 1 >= SMTP_CLIENT_TEXT_MAX) {
            r->cut = true;
            return;
        }
        r->text[r->text_len++] = ' ';
    }
    size_t room = SMTP_CLIENT_TEXT_MAX - r->text_len;
    if (n > room) {
        n = room;
        r->cut = true;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        r->text[r->text_len++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    r->text[r->text_len] = '\0';
}

int smtp_client_reply_next(struct smtp_client_reply *r, const char *buf, size_t len,
                           size_t *consumed_r, struct smtp_client_line *line_r)
{
    *consumed_r = 0;
    if (r->complete)
        smtp_client_reply_init(r);
    const char *lf = memchr(buf, '\n', len < SMTP_CLIENT_LINE_MAX ? len : SMTP_CLIENT_LINE_MAX);
    if (lf == NULL)
        return len >= SMTP_CLIENT_LINE_MAX ? -SMTP_CLIENT_RERR_LINE_TOO_LONG : 0;
    size_t line_len = (size_t)(lf - buf) + 1;
    size_t n = line_len - 1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (line_len > SMTP_CLIENT_REPLY_MAX - r->octets)
        return -SMTP_CLIENT_RERR_REPLY_TOO_LONG;
    /* RFC 5321 4.2: Reply-code = %x32-35 %x30-35 %x30-39, then SP, "-" or the end. */
    if (n < 3 || buf[0] < '2' || buf[0] > '5' || buf[1] < '0' || buf[1] > '5' || buf[2] < '0' ||
        buf[2] > '9' || (n > 3 && buf[3] != ' ' && buf[3] != '-'))
        return -SMTP_CLIENT_RERR_SYNTAX;
    int code = (buf[0] - '0') * 100 + (buf[1] - '0') * 10 + (buf[2] - '0');
    if (r->lines > 0 && code != r->code)
        return -SMTP_CLIENT_RERR_CODE_CHANGED;
    bool last = n == 3 || buf[3] == ' ';
    const char *text = n > 4 ? buf + 4 : buf + n;
    size_t text_len = n > 4 ? n - 4 : 0;

    r->code = code;
    r->octets += line_len;
    size_t e = enhanced_len(text, text_len, buf[0]);
    if (e > 0 && r->lines == 0) {
        memcpy(r->enhanced, text, e);
        r->enhanced[e] = '\0';
    }
    size_t skip = e;
    while (skip < text_len && e > 0 && text[skip] == ' ')
        skip++;
    text_add(r, text + skip, text_len - skip);
    r->lines++;
    r->complete = last;

    line_r->text = text;
    line_r->len = text_len;
    line_r->last = last;
    *consumed_r = line_len;
    return 1;
}

/* --- the client ----------------------------------------------------------- */

enum st {
    ST_GREETING,    /* waiting for the 220 */
    ST_EHLO,        /* EHLO sent */
    ST_HELO,        /* HELO sent, after EHLO got a 5xx */
    ST_STARTTLS,    /* STARTTLS sent */
    ST_TLS,         /* 220 to STARTTLS: the glue does the handshake */
    ST_AUTH_PLAIN,  /* AUTH PLAIN with its initial response sent */
    ST_AUTH_LOGIN,  /* AUTH LOGIN sent; login_step counts the 334s answered */
    ST_AUTH_CANCEL, /* "*" sent after a challenge the mechanism has no answer for */
    ST_IDLE,        /* ready, no transaction: DONE */
    ST_RSET,        /* RSET sent before a transaction */
    ST_TX,          /* MAIL, RCPT, DATA awaiting replies */
    ST_BODY,        /* 354 came: the glue sends the message */
    ST_FINAL,       /* the final dot sent */
    ST_QUIT,        /* QUIT sent */
    ST_CLOSED,
};

enum step_kind { STEP_MAIL, STEP_RCPT, STEP_DATA };

/* A command written and not answered yet. */
struct step {
    enum step_kind kind;
    size_t rcpt; /* STEP_RCPT: its index */
    size_t len;  /* octets, CRLF included */
};

struct msg_rcpt {
    char *addr;
    unsigned notify;
    char *orcpt; /* NULL when none or not ASCII */
};

struct smtp_client {
    /* Configuration. */
    char helo[256];
    enum smtp_client_tls tls_mode;
    bool has_auth;
    char user[SASL_FIELD_MAX + 1];
    char password[SASL_FIELD_MAX + 1];
    /* What no result text may hold: the password, its base64 (LOGIN), and
     * the base64 of the PLAIN message. Wiped at free. */
    char secret_b64[4 * ((SASL_FIELD_MAX + 2) / 3) + 1];
    char plain_b64[4 * ((2 * SASL_FIELD_MAX + 2 + 2) / 3) + 1];

    /* The connection. */
    enum st st;
    bool tls;
    bool authed;
    unsigned login_step;
    char server_name[256];
    /* What the last EHLO offered; all false after HELO. */
    bool cap_starttls, cap_pipelining, cap_8bitmime, cap_smtputf8, cap_dsn;
    bool cap_auth_plain, cap_auth_login;
    bool cap_size;       /* SIZE offered: SIZE= may be given */
    uint64_t size_limit; /* its number; 0: none */
    struct smtp_client_reply reply;
    struct buf out;

    /* The message and its results. */
    bool have_msg; /* given, transaction not over */
    char *from;
    struct msg_rcpt *rcpts;
    size_t n;
    uint64_t size;
    bool eight_bit, utf8;
    enum store_ret ret;
    char *envid;
    struct smtp_client_result *res;
    bool *accepted;

    /* The transaction's progress. */
    struct step *steps; /* FIFO of commands awaiting replies, n + 2 at most */
    size_t step_head, step_tail;
    size_t outstanding; /* octets of those commands */
    bool mail_sent, mail_failed, data_sent, rcpt_limit, final_ignore;
    size_t next_rcpt;
    size_t n_accepted;
    bool needs_rset; /* the last transaction ended before the final dot */

    /* Dot-stuffing across body pieces. */
    bool body_bol; /* the next byte starts a line */
    bool body_cr;  /* a CR was the last byte, its LF not seen yet */
};

static bool is_final(const struct smtp_client_result *r)
{
    return r->state != SMTP_CLIENT_PENDING;
}

/* Overwrites every copy of s in text with '*'. */
static void scrub_one(char *text, const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return;
    for (char *p = strstr(text, s); p != NULL; p = strstr(p + n, s))
        memset(p, '*', n);
}

static void scrub(const struct smtp_client *c, char *text)
{
    if (!c->has_auth)
        return;
    scrub_one(text, c->plain_b64);
    scrub_one(text, c->secret_b64);
    scrub_one(text, c->password);
}

static void set_result(struct smtp_client *c, size_t i, enum smtp_client_state state,
                       enum smtp_client_stage stage, int code, const char *enhanced,
                       const char *text)
{
    struct smtp_client_result *r = &c->res[i];
    if (is_final(r))
        return; /* decided once */
    r->state = state;
    r->stage = stage;
    r->code = code;
    snprintf(r->enhanced, sizeof(r->enhanced), "%s", enhanced);
    snprintf(r->text, sizeof(r->text), "%s", text);
    scrub(c, r->text);
}

/* The state a reply of this code gives: 5xx permanent, the rest (4xx, a stray 3xx) temporary. */
static enum smtp_client_state state_of(int code)
{
    return code >= 500 ? SMTP_CLIENT_FAILED : SMTP_CLIENT_DEFERRED;
}

/* Every recipient still pending gets the reply just read. */
static void pending_from_reply(struct smtp_client *c, enum smtp_client_state state,
                               enum smtp_client_stage stage)
{
    for (size_t i = 0; i < c->n; i++)
        set_result(c, i, state, stage, c->reply.code, c->reply.enhanced, c->reply.text);
}

/* Every recipient still pending gets the client's own sentence. */
static void pending_local(struct smtp_client *c, enum smtp_client_state state,
                          enum smtp_client_stage stage, const char *enhanced, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void pending_local(struct smtp_client *c, enum smtp_client_state state,
                          enum smtp_client_stage stage, const char *enhanced, const char *fmt, ...)
{
    char text[SMTP_CLIENT_TEXT_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < c->n; i++)
        set_result(c, i, state, stage, 0, enhanced, text);
}

/* What is being waited for, for results and texts. */
static enum smtp_client_stage stage_now(const struct smtp_client *c)
{
    switch (c->st) {
    case ST_GREETING:
        return SMTP_CLIENT_STAGE_GREETING;
    case ST_EHLO:
    case ST_HELO:
        return SMTP_CLIENT_STAGE_EHLO;
    case ST_STARTTLS:
    case ST_TLS:
        return SMTP_CLIENT_STAGE_STARTTLS;
    case ST_AUTH_PLAIN:
    case ST_AUTH_LOGIN:
    case ST_AUTH_CANCEL:
        return SMTP_CLIENT_STAGE_AUTH;
    case ST_RSET:
        return SMTP_CLIENT_STAGE_RSET;
    case ST_TX:
        if (c->step_head == c->step_tail)
            return SMTP_CLIENT_STAGE_MAIL;
        switch (c->steps[c->step_head].kind) {
        case STEP_MAIL:
            return SMTP_CLIENT_STAGE_MAIL;
        case STEP_RCPT:
            return SMTP_CLIENT_STAGE_RCPT;
        case STEP_DATA:
            return SMTP_CLIENT_STAGE_DATA;
        }
        return SMTP_CLIENT_STAGE_MAIL;
    case ST_BODY:
        return SMTP_CLIENT_STAGE_DATA;
    case ST_FINAL:
        return SMTP_CLIENT_STAGE_FINAL;
    case ST_IDLE:
    case ST_QUIT:
    case ST_CLOSED:
        break;
    }
    return SMTP_CLIENT_STAGE_MAIL;
}

/* The connection cannot go on: every pending recipient is deferred, and it closes. */
static void die(struct smtp_client *c, const char *enhanced, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void die(struct smtp_client *c, const char *enhanced, const char *fmt, ...)
{
    char text[SMTP_CLIENT_TEXT_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    enum smtp_client_stage stage = stage_now(c);
    for (size_t i = 0; i < c->n; i++)
        set_result(c, i, SMTP_CLIENT_DEFERRED, stage, 0, enhanced, text);
    c->have_msg = false;
    c->st = ST_CLOSED;
}

/*
 * Appends one command line with its CRLF. Returns 0, or -ENOBUFS after
 * ending the conversation (the glue has not sent what was written before,
 * which it must: the ceiling is far above anything the client writes).
 */
static int put_line(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int put_line(struct smtp_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf_crlf(&c->out, fmt, ap);
    va_end(ap);
    if (rc < 0)
        die(c, "4.3.0", "internal error: the output to the server is full");
    return rc;
}

/* The conversation failed politely: say QUIT and close after its reply. */
static void quit_after(struct smtp_client *c)
{
    c->have_msg = false;
    if (put_line(c, "QUIT") == 0)
        c->st = ST_QUIT;
}

/* --- the transaction ------------------------------------------------------- */

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* Appends s as xtext (RFC 3461 4): '+', '=' and octets outside 33..126 as +HH. */
static int put_xtext(struct buf *b, const char *s)
{
    int rc = 0;
    for (; *s && rc == 0; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 33 || ch > 126 || ch == '+' || ch == '=')
            rc = buf_printf(b, "+%02X", ch);
        else
            rc = buf_append(b, s, 1);
    }
    return rc;
}

static void push_step(struct smtp_client *c, enum step_kind kind, size_t rcpt, size_t len)
{
    struct step *s = &c->steps[c->step_tail++];
    s->kind = kind;
    s->rcpt = rcpt;
    s->len = len;
    c->outstanding += len;
}

/* Ends a command line begun at start, and expects its reply; on a failure
 * to write it, takes the line back and gives up on the connection. */
static int end_command(struct smtp_client *c, int rc, size_t start, enum step_kind kind,
                       size_t rcpt)
{
    struct buf *b = &c->out;
    if (rc == 0)
        rc = buf_append(b, "\r\n", 2);
    if (rc < 0) {
        b->len = start;
        die(c, "4.3.0", "internal error: the output to the server is full");
        return rc;
    }
    push_step(c, kind, rcpt, b->len - start);
    return 0;
}

static int put_mail(struct smtp_client *c)
{
    struct buf *b = &c->out;
    size_t start = b->len;
    int rc = buf_printf(b, "MAIL FROM:<%s>", c->from);
    if (rc == 0 && c->cap_size && c->size > 0)
        rc = buf_printf(b, " SIZE=%llu", (unsigned long long)c->size);
    if (rc == 0 && c->eight_bit && c->cap_8bitmime)
        rc = buf_append_str(b, " BODY=8BITMIME");
    if (rc == 0 && c->utf8)
        rc = buf_append_str(b, " SMTPUTF8");
    if (rc == 0 && c->cap_dsn && c->ret != STORE_RET_DEFAULT)
        rc = buf_append_str(b, c->ret == STORE_RET_FULL ? " RET=FULL" : " RET=HDRS");
    if (rc == 0 && c->cap_dsn && c->envid != NULL) {
        rc = buf_append_str(b, " ENVID=");
        if (rc == 0)
            rc = put_xtext(b, c->envid);
    }
    return end_command(c, rc, start, STEP_MAIL, 0);
}

static int put_rcpt(struct smtp_client *c, size_t i)
{
    struct buf *b = &c->out;
    const struct msg_rcpt *r = &c->rcpts[i];
    size_t start = b->len;
    int rc = buf_printf(b, "RCPT TO:<%s>", r->addr);
    if (rc == 0 && c->cap_dsn && r->notify != 0) {
        static const struct {
            unsigned bit;
            const char *name;
        } words[] = {{STORE_NOTIFY_NEVER, "NEVER"},
                     {STORE_NOTIFY_SUCCESS, "SUCCESS"},
                     {STORE_NOTIFY_FAILURE, "FAILURE"},
                     {STORE_NOTIFY_DELAY, "DELAY"}};
        const char *sep = " NOTIFY=";
        for (size_t k = 0; k < sizeof(words) / sizeof(words[0]) && rc == 0; k++) {
            if (r->notify & words[k].bit) {
                rc = buf_printf(b, "%s%s", sep, words[k].name);
                sep = ",";
            }
        }
    }
    if (rc == 0 && c->cap_dsn && r->orcpt != NULL) {
        rc = buf_append_str(b, " ORCPT=rfc822;");
        if (rc == 0)
            rc = put_xtext(b, r->orcpt);
    }
    return end_command(c, rc, start, STEP_RCPT, i);
}

static void finish_tx(struct smtp_client *c)
{
    /* Every recipient is decided by now; a gap would be a bug, and a retry
     * is the safe answer to it. */
    for (size_t i = 0; i < c->n; i++)
        set_result(c, i, SMTP_CLIENT_DEFERRED, SMTP_CLIENT_STAGE_DATA, 0, "4.3.0",
                   "internal error: no reply decided this recipient");
    c->have_msg = false;
    c->st = ST_IDLE;
}

static bool steps_waiting(const struct smtp_client *c)
{
    return c->step_head != c->step_tail;
}

/* Is a MAIL or RCPT still awaiting its reply? */
static bool rcpt_replies_due(const struct smtp_client *c)
{
    for (size_t k = c->step_head; k < c->step_tail; k++)
        if (c->steps[k].kind != STEP_DATA)
            return true;
    return false;
}

/*
 * Writes the transaction's next commands: one when nothing awaits a reply,
 * or with PIPELINING as many as the window allows. Ends the transaction
 * when nothing is left to write or to wait for.
 */
static void send_tx(struct smtp_client *c)
{
    while (c->st == ST_TX) {
        bool room =
            !steps_waiting(c) || (c->cap_pipelining && c->outstanding < SMTP_CLIENT_PIPE_WINDOW);
        if (!room)
            break;
        if (!c->mail_sent) {
            c->mail_sent = true;
            put_mail(c);
            continue;
        }
        if (c->mail_failed)
            break;
        if (c->next_rcpt < c->n && !c->rcpt_limit) {
            put_rcpt(c, c->next_rcpt++);
            continue;
        }
        if (c->data_sent)
            break;
        /* DATA only when a recipient is (or, pipelined, may yet be) accepted. */
        if (c->n_accepted == 0 && !rcpt_replies_due(c))
            break;
        c->data_sent = true;
        if (put_line(c, "DATA") == 0)
            push_step(c, STEP_DATA, 0, 6);
    }
    if (c->st == ST_TX && !steps_waiting(c)) {
        /* Over before the final dot: MAIL failed or no recipient was taken. */
        c->needs_rset = true;
        finish_tx(c);
    }
}

/* Starts the message given to smtp_client_next, the connection being ready. */
static void start_tx(struct smtp_client *c)
{
    c->step_head = c->step_tail = 0;
    c->outstanding = 0;
    c->mail_sent = c->mail_failed = c->data_sent = c->rcpt_limit = c->final_ignore = false;
    c->next_rcpt = 0;
    c->n_accepted = 0;
    if (c->utf8 && !c->cap_smtputf8) {
        pending_local(c, SMTP_CLIENT_FAILED, SMTP_CLIENT_STAGE_MAIL, "5.6.7",
                      "the message needs SMTPUTF8, which the server does not offer (RFC 6531 3.5)");
        finish_tx(c);
        return;
    }
    if (c->cap_size && c->size_limit > 0 && c->size > c->size_limit) {
        pending_local(c, SMTP_CLIENT_FAILED, SMTP_CLIENT_STAGE_MAIL, "5.3.4",
                      "message size %llu exceeds the server's limit of %llu octets (RFC 1870)",
                      (unsigned long long)c->size, (unsigned long long)c->size_limit);
        finish_tx(c);
        return;
    }
    if (c->needs_rset) {
        if (put_line(c, "RSET") == 0)
            c->st = ST_RSET;
        return;
    }
    c->st = ST_TX;
    send_tx(c);
}

/* The connection is ready for mail: start the waiting message, or wait for one. */
static void ready(struct smtp_client *c)
{
    c->st = ST_IDLE;
    if (c->have_msg)
        start_tx(c);
}

/* Greeting, EHLO and TLS done: log in when configured, then mail. */
static void after_tls(struct smtp_client *c)
{
    if (!c->has_auth || c->authed) {
        ready(c);
        return;
    }
    if (!c->tls) {
        pending_local(c, SMTP_CLIENT_DEFERRED, SMTP_CLIENT_STAGE_AUTH, "4.7.4",
                      "a login is configured, but TLS is not up, and the password goes only "
                      "over TLS");
        quit_after(c);
        return;
    }
    if (c->cap_auth_plain) {
        if (put_line(c, "AUTH PLAIN %s", c->plain_b64) == 0)
            c->st = ST_AUTH_PLAIN;
        return;
    }
    if (c->cap_auth_login) {
        c->login_step = 0;
        if (put_line(c, "AUTH LOGIN") == 0)
            c->st = ST_AUTH_LOGIN;
        return;
    }
    pending_local(c, SMTP_CLIENT_DEFERRED, SMTP_CLIENT_STAGE_AUTH, "4.7.4",
                  "a login is configured, but the server offers neither AUTH PLAIN nor AUTH LOGIN");
    quit_after(c);
}

/* The answer to EHLO or HELO was 2xx. */
static void after_hello(struct smtp_client *c)
{
    if (c->tls || c->tls_mode == SMTP_CLIENT_TLS_NONE) {
        after_tls(c);
        return;
    }
    if (c->cap_starttls) {
        if (put_line(c, "STARTTLS") == 0)
            c->st = ST_STARTTLS;
        return;
    }
    if (c->tls_mode == SMTP_CLIENT_TLS_REQUIRED) {
        pending_local(c, SMTP_CLIENT_DEFERRED, SMTP_CLIENT_STAGE_STARTTLS, "4.7.4",
                      "TLS required but not offered by the server");
        quit_after(c);
        return;
    }
    after_tls(c); /* opportunistic: plaintext */
}

static void forget_caps(struct smtp_client *c)
{
    c->cap_starttls = c->cap_pipelining = c->cap_8bitmime = c->cap_smtputf8 = c->cap_dsn = false;
    c->cap_auth_plain = c->cap_auth_login = false;
    c->cap_size = false;
    c->size_limit = 0;
}

static void send_ehlo(struct smtp_client *c)
{
    forget_caps(c);
    if (put_line(c, "EHLO %s", c->helo) == 0)
        c->st = ST_EHLO;
}

/* True when p[0..n) is the word w, in any case. */
static bool word_is(const char *p, size_t n, const char *w)
{
    return n == strlen(w) && strncasecmp(p, w, n) == 0;
}

/* One line of a 2xx answer to EHLO after the first: an extension keyword (RFC 5321 4.1.1.1). */
static void ehlo_keyword(struct smtp_client *c, const char *p, size_t n)
{
    size_t k = 0;
    while (k < n && p[k] != ' ' && p[k] != '=')
        k++;
    const char *arg = p + k + (k < n);
    size_t arg_len = k < n ? n - k - 1 : 0;
    if (word_is(p, k, "STARTTLS")) {
        c->cap_starttls = true;
    } else if (word_is(p, k, "PIPELINING")) {
        c->cap_pipelining = true;
    } else if (word_is(p, k, "8BITMIME")) {
        c->cap_8bitmime = true;
    } else if (word_is(p, k, "SMTPUTF8")) {
        c->cap_smtputf8 = true;
    } else if (word_is(p, k, "DSN")) {
        c->cap_dsn = true;
    } else if (word_is(p, k, "SIZE")) {
        /* RFC 1870: "SIZE" or "SIZE n"; 0 or none is no fixed limit. A
         * number too large to hold is no limit we could pass. */
        c->cap_size = true;
        uint64_t v = 0;
        for (size_t i = 0; i < arg_len && arg[i] >= '0' && arg[i] <= '9'; i++) {
            unsigned d = (unsigned)(arg[i] - '0');
            if (v > (UINT64_MAX - d) / 10) {
                v = 0;
                break;
            }
            v = v * 10 + d;
        }
        c->size_limit = v;
    } else if (word_is(p, k, "AUTH")) {
        /* "AUTH PLAIN LOGIN", or the old "AUTH=PLAIN LOGIN". */
        size_t i = 0;
        while (i < arg_len) {
            while (i < arg_len && arg[i] == ' ')
                i++;
            size_t s = i;
            while (i < arg_len && arg[i] != ' ')
                i++;
            if (word_is(arg + s, i - s, "PLAIN"))
                c->cap_auth_plain = true;
            else if (word_is(arg + s, i - s, "LOGIN"))
                c->cap_auth_login = true;
        }
    }
}

/* Keeps the first word of the greeting: the server's idea of its name. */
static void keep_server_name(struct smtp_client *c, const char *p, size_t n)
{
    size_t k = 0;
    while (k < n && k < sizeof(c->server_name) - 1 && p[k] > 0x20 && p[k] < 0x7f)
        k++;
    memcpy(c->server_name, p, k);
    c->server_name[k] = '\0';
}

/* --- replies, state by state ------------------------------------------------ */

static void on_greeting(struct smtp_client *c)
{
    int code = c->reply.code;
    if (code == 220) {
        send_ehlo(c);
        return;
    }
    /* RFC 5321 3.1: 554 says no service here; anything else may pass. */
    pending_from_reply(c, code == 554 ? SMTP_CLIENT_FAILED : SMTP_CLIENT_DEFERRED,
                       SMTP_CLIENT_STAGE_GREETING);
    quit_after(c);
}

static void on_ehlo(struct smtp_client *c)
{
    int code = c->reply.code;
    if (code / 100 == 2) {
        after_hello(c);
        return;
    }
    if (code / 100 == 5 && c->st == ST_EHLO) {
        /* RFC 5321 4.1.4: a server that does not know EHLO may know HELO. */
        forget_caps(c);
        if (put_line(c, "HELO %s", c->helo) == 0)
            c->st = ST_HELO;
        return;
    }
    pending_from_reply(c, state_of(code), SMTP_CLIENT_STAGE_EHLO);
    quit_after(c);
}

static void on_starttls(struct smtp_client *c)
{
    if (c->reply.code == 220) {
        c->st = ST_TLS;
        return;
    }
    if (c->tls_mode == SMTP_CLIENT_TLS_REQUIRED) {
        pending_from_reply(c, SMTP_CLIENT_DEFERRED, SMTP_CLIENT_STAGE_STARTTLS);
        quit_after(c);
        return;
    }
    /* Opportunistic: the server never began TLS, so the connection is as
     * good as it was; go on in plaintext. */
    after_tls(c);
}

static void auth_cancel(struct smtp_client *c)
{
    if (put_line(c, "*") == 0)
        c->st = ST_AUTH_CANCEL;
}

static void on_auth(struct smtp_client *c)
{
    int code = c->reply.code;
    if (c->st == ST_AUTH_CANCEL) {
        pending_local(c, SMTP_CLIENT_DEFERRED, SMTP_CLIENT_STAGE_AUTH, "4.7.0",
                      "login failed: the server asked for more than the mechanism gives, and "
                      "the exchange was cancelled");
        quit_after(c);
        return;
    }
    if (code / 100 == 2) {
        c->authed = true;
        ready(c);
        return;
    }
    if (code == 334) {
        if (c->st == ST_AUTH_LOGIN && c->login_step < 2) {
            char b64[sizeof(c->secret_b64)];
            const char *answer = c->secret_b64;
            if (c->login_step++ == 0) {
                sasl_b64_encode((const uint8_t *)c->user, strlen(c->user), b64, sizeof(b64));
                answer = b64;
            }
            put_line(c, "%s", answer);
            return;
        }
        auth_cancel(c);
        return;
    }
    /* 535 and the rest: a login problem here is never the message's fault,
     * and a wrong password must not bounce everything. The server's words
     * are not kept: a reply to AUTH may echo the password in a form no scrub
     * recognises (cut, split over lines, 8-bit), and results reach logs,
     * `kotak queue show` and bounces. Its code says enough. */
    for (size_t i = 0; i < c->n; i++)
        set_result(c, i, SMTP_CLIENT_DEFERRED, SMTP_CLIENT_STAGE_AUTH, code, c->reply.enhanced,
                   code == 535 ? "the smarthost refused the login: check smarthost_user and "
                                 "the password file"
                               : "the smarthost did not accept the login");
    quit_after(c);
}

static void on_rset(struct smtp_client *c)
{
    if (c->reply.code / 100 == 2) {
        c->needs_rset = false;
        c->st = ST_TX;
        send_tx(c);
        return;
    }
    pending_from_reply(c, SMTP_CLIENT_DEFERRED, SMTP_CLIENT_STAGE_RSET);
    quit_after(c);
}

/* RFC 5321 4.5.3.1.10: the server's limit on recipients per message. */
static bool is_rcpt_limit(const struct smtp_client_reply *r)
{
    if (r->code == 452)
        return r->enhanced[0] == '\0' || strcmp(r->enhanced, "4.5.3") == 0;
    return r->code == 552 && strcmp(r->enhanced, "5.5.3") == 0;
}

static void on_rcpt(struct smtp_client *c, size_t i)
{
    int code = c->reply.code;
    if (is_final(&c->res[i]))
        return; /* MAIL failed: the pipelined RCPT's answer says nothing new */
    if (code / 100 == 2) {
        c->accepted[i] = true;
        c->n_accepted++;
        return;
    }
    if (is_rcpt_limit(&c->reply) || c->rcpt_limit) {
        set_result(c, i, SMTP_CLIENT_DEFERRED, SMTP_CLIENT_STAGE_RCPT, code, c->reply.enhanced,
                   c->reply.text);
        if (!c->rcpt_limit) {
            c->rcpt_limit = true;
            for (size_t k = c->next_rcpt; k < c->n; k++)
                set_result(c, k, SMTP_CLIENT_DEFERRED, SMTP_CLIENT_STAGE_RCPT, 0, "4.5.3",
                           "not sent: the server's limit of recipients per message was reached");
        }
        return;
    }
    set_result(c, i, state_of(code), SMTP_CLIENT_STAGE_RCPT, code, c->reply.enhanced,
               c->reply.text);
}

static void on_data(struct smtp_client *c)
{
    int code = c->reply.code;
    if (c->mail_failed || c->n_accepted == 0) {
        /* The pipelined DATA of a transaction with nobody to deliver to:
         * its 503 or 554 is expected. A server that says 354 anyway gets an
         * empty message, whose answer is ignored (what Postfix does). */
        if (code == 354 && put_line(c, ".") == 0) {
            c->final_ignore = true;
            c->st = ST_FINAL;
        }
        return;
    }
    if (code == 354) {
        c->st = ST_BODY;
        c->body_bol = true;
        c->body_cr = false;
        return;
    }
    pending_from_reply(c, state_of(code), SMTP_CLIENT_STAGE_DATA);
}

static void on_tx(struct smtp_client *c)
{
    struct step s = c->steps[c->step_head++];
    c->outstanding -= s.len;
    switch (s.kind) {
    case STEP_MAIL:
        if (c->reply.code / 100 != 2) {
            c->mail_failed = true;
            pending_from_reply(c, state_of(c->reply.code), SMTP_CLIENT_STAGE_MAIL);
        }
        break;
    case STEP_RCPT:
        on_rcpt(c, s.rcpt);
        break;
    case STEP_DATA:
        on_data(c);
        break;
    }
    send_tx(c);
}

static void on_final(struct smtp_client *c)
{
    int code = c->reply.code;
    if (c->final_ignore) {
        c->needs_rset = true;
    } else {
        c->needs_rset = false;
        pending_from_reply(c, code / 100 == 2 ? SMTP_CLIENT_DELIVERED : state_of(code),
                           SMTP_CLIENT_STAGE_FINAL);
    }
    finish_tx(c);
}

/* A reply came in whole: act on it. */
static void on_reply(struct smtp_client *c)
{
    if (c->st == ST_QUIT) {
        c->st = ST_CLOSED; /* whatever it says */
        return;
    }
    if (c->reply.code == 421) {
        /* RFC 5321 3.8: the server is closing, whatever it was asked. */
        pending_from_reply(c, SMTP_CLIENT_DEFERRED, stage_now(c));
        c->have_msg = false;
        c->st = ST_CLOSED;
        return;
    }
    switch (c->st) {
    case ST_GREETING:
        on_greeting(c);
        break;
    case ST_EHLO:
    case ST_HELO:
        on_ehlo(c);
        break;
    case ST_STARTTLS:
        on_starttls(c);
        break;
    case ST_AUTH_PLAIN:
    case ST_AUTH_LOGIN:
    case ST_AUTH_CANCEL:
        on_auth(c);
        break;
    case ST_RSET:
        on_rset(c);
        break;
    case ST_TX:
        if (steps_waiting(c))
            on_tx(c);
        else
            die(c, "4.5.0", "bad reply from the server: a reply nobody asked for");
        break;
    case ST_FINAL:
        on_final(c);
        break;
    case ST_TLS:
    case ST_IDLE:
    case ST_BODY:
        die(c, "4.5.0", "bad reply from the server: a reply nobody asked for, during %s",
            c->st == ST_BODY  ? "the message data"
            : c->st == ST_TLS ? "STARTTLS"
                              : "idle time");
        break;
    case ST_QUIT:
    case ST_CLOSED:
        break;
    }
}

static const char *rerr_text(int err)
{
    switch (-err) {
    case SMTP_CLIENT_RERR_SYNTAX:
        return "a line that is not a reply";
    case SMTP_CLIENT_RERR_LINE_TOO_LONG:
        return "a line longer than 2048 octets";
    case SMTP_CLIENT_RERR_REPLY_TOO_LONG:
        return "a reply longer than 64 KiB";
    case SMTP_CLIENT_RERR_CODE_CHANGED:
        return "a multi-line reply that changes its code";
    }
    return "a malformed reply";
}

void smtp_client_feed(struct smtp_client *c, const char *buf, size_t len, size_t *consumed_r)
{
    size_t done = 0;
    /* Not during the body either: the server has no say before the final
     * dot, and what it said early is read afterwards, as its answer to it. */
    while (done < len && c->st != ST_CLOSED && c->st != ST_TLS && c->st != ST_BODY) {
        struct smtp_client_line line;
        size_t used;
        int rc = smtp_client_reply_next(&c->reply, buf + done, len - done, &used, &line);
        if (rc < 0) {
            die(c, "4.5.0", "bad reply from the server: %s, in reply to %s", rerr_text(rc),
                smtp_client_stage_name(stage_now(c)));
            break;
        }
        if (rc == 0)
            break;
        done += used;
        if (c->reply.lines == 1 && c->st == ST_GREETING && c->reply.code == 220)
            keep_server_name(c, line.text, line.len);
        if (c->reply.lines > 1 && c->st == ST_EHLO && c->reply.code / 100 == 2)
            ehlo_keyword(c, line.text, line.len);
        if (c->reply.complete)
            on_reply(c);
    }
    *consumed_r = done;
}

/* --- the glue's calls ------------------------------------------------------- */

/* A host name or address literal for EHLO: printable, no space, at most 255. */
static bool helo_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static bool secret_ok(const char *s)
{
    size_t n = strlen(s);
    if (n > SASL_FIELD_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return false;
    return true;
}

int smtp_client_new(const struct smtp_client_config *cfg, struct smtp_client **c_r)
{
    bool auth = cfg->auth_user != NULL && cfg->auth_user[0] != '\0';
    if (cfg->helo_name == NULL || !helo_ok(cfg->helo_name))
        return -EINVAL;
    if (auth && (!secret_ok(cfg->auth_user) || cfg->auth_password == NULL ||
                 !secret_ok(cfg->auth_password)))
        return -EINVAL;
    struct smtp_client *c = xcalloc(1, sizeof(*c));
    snprintf(c->helo, sizeof(c->helo), "%s", cfg->helo_name);
    c->tls_mode = cfg->tls;
    c->tls = cfg->tls_active;
    if (auth) {
        c->has_auth = true;
        size_t un = strlen(cfg->auth_user), pn = strlen(cfg->auth_password);
        memcpy(c->user, cfg->auth_user, un + 1);
        memcpy(c->password, cfg->auth_password, pn + 1);
        /* RFC 4616: authzid (empty), NUL, authcid, NUL, password. */
        uint8_t plain[2 * SASL_FIELD_MAX + 2];
        plain[0] = '\0';
        memcpy(plain + 1, c->user, un);
        plain[1 + un] = '\0';
        memcpy(plain + 2 + un, c->password, pn);
        sasl_b64_encode(plain, un + pn + 2, c->plain_b64, sizeof(c->plain_b64));
        explicit_bzero(plain, sizeof(plain));
        sasl_b64_encode((const uint8_t *)c->password, pn, c->secret_b64, sizeof(c->secret_b64));
    }
    c->st = ST_GREETING;
    smtp_client_reply_init(&c->reply);
    buf_init(&c->out, SMTP_CLIENT_OUT_MAX);
    /* With a login, the AUTH line passes through the output: allocated at
     * its ceiling now, the buffer never moves, so no copy of the line is
     * left behind in memory a realloc freed, and free wipes the one block. */
    if (c->has_auth)
        buf_reserve(&c->out, SMTP_CLIENT_OUT_MAX);
    *c_r = c;
    return 0;
}

static void msg_free(struct smtp_client *c)
{
    free(c->from);
    c->from = NULL;
    for (size_t i = 0; i < c->n; i++) {
        free(c->rcpts[i].addr);
        free(c->rcpts[i].orcpt);
    }
    free(c->rcpts);
    c->rcpts = NULL;
    free(c->envid);
    c->envid = NULL;
    free(c->res);
    c->res = NULL;
    free(c->accepted);
    c->accepted = NULL;
    free(c->steps);
    c->steps = NULL;
    c->n = 0;
}

void smtp_client_free(struct smtp_client **cp)
{
    struct smtp_client *c = *cp;
    if (c == NULL)
        return;
    msg_free(c);
    /* The AUTH line went through the output buffer. */
    if (c->out.data != NULL)
        explicit_bzero(c->out.data, c->out.cap);
    buf_free(&c->out);
    explicit_bzero(c, sizeof(*c));
    free(c);
    *cp = NULL;
}

struct buf *smtp_client_output(struct smtp_client *c)
{
    return &c->out;
}

enum smtp_client_action smtp_client_action(const struct smtp_client *c)
{
    switch (c->st) {
    case ST_TLS:
        return SMTP_CLIENT_ACT_STARTTLS;
    case ST_BODY:
        return SMTP_CLIENT_ACT_BODY;
    case ST_IDLE:
        return SMTP_CLIENT_ACT_DONE;
    case ST_CLOSED:
        return SMTP_CLIENT_ACT_CLOSE;
    default:
        return SMTP_CLIENT_ACT_NONE;
    }
}

/* An address, ORCPT or ENVID: no control character, not too long. */
static bool text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return false;
    return true;
}

static bool msg_ok(const struct smtp_client_msg *m)
{
    if (m->from == NULL || !text_ok(m->from, SMTP_CLIENT_ADDR_MAX))
        return false;
    if (m->n_rcpts == 0 || m->n_rcpts > SMTP_CLIENT_RCPTS_MAX || m->rcpts == NULL)
        return false;
    if (m->envid != NULL && (!text_ok(m->envid, SMTP_CLIENT_ENVID_MAX) || !is_ascii(m->envid)))
        return false;
    if (m->ret != STORE_RET_DEFAULT && m->ret != STORE_RET_FULL && m->ret != STORE_RET_HDRS)
        return false;
    const unsigned all =
        STORE_NOTIFY_SUCCESS | STORE_NOTIFY_FAILURE | STORE_NOTIFY_DELAY | STORE_NOTIFY_NEVER;
    for (size_t i = 0; i < m->n_rcpts; i++) {
        const struct smtp_client_rcpt *r = &m->rcpts[i];
        if (r->addr == NULL || r->addr[0] == '\0' || !text_ok(r->addr, SMTP_CLIENT_ADDR_MAX))
            return false;
        if (r->orcpt != NULL && !text_ok(r->orcpt, SMTP_CLIENT_ADDR_MAX))
            return false;
        if ((r->notify & ~all) != 0 ||
            ((r->notify & STORE_NOTIFY_NEVER) && r->notify != STORE_NOTIFY_NEVER))
            return false;
    }
    return true;
}

int smtp_client_next(struct smtp_client *c, const struct smtp_client_msg *m)
{
    if (c->st == ST_CLOSED || c->st == ST_QUIT)
        return -EPIPE;
    if (c->have_msg)
        return -EBUSY;
    if (!msg_ok(m))
        return -EINVAL;
    msg_free(c);
    c->from = xstrdup(m->from);
    c->n = m->n_rcpts;
    c->rcpts = xcalloc(c->n, sizeof(*c->rcpts));
    c->utf8 = m->needs_smtputf8 || !is_ascii(m->from);
    for (size_t i = 0; i < c->n; i++) {
        c->rcpts[i].addr = xstrdup(m->rcpts[i].addr);
        c->rcpts[i].notify = m->rcpts[i].notify;
        /* RFC 3461's rfc822 type is ASCII; a UTF-8 one needs RFC 6533's
         * encoding, which kotak does not write: no ORCPT is better than a
         * wrong one. */
        if (m->rcpts[i].orcpt != NULL && is_ascii(m->rcpts[i].orcpt))
            c->rcpts[i].orcpt = xstrdup(m->rcpts[i].orcpt);
        c->utf8 |= !is_ascii(m->rcpts[i].addr);
    }
    c->size = m->size;
    c->eight_bit = m->eight_bit;
    c->ret = m->ret;
    c->envid = m->envid != NULL ? xstrdup(m->envid) : NULL;
    c->res = xcalloc(c->n, sizeof(*c->res));
    c->accepted = xcalloc(c->n, sizeof(*c->accepted));
    c->steps = xcalloc(c->n + 2, sizeof(*c->steps));
    c->have_msg = true;
    if (c->st == ST_IDLE)
        start_tx(c);
    return 0;
}

const struct smtp_client_result *smtp_client_results(const struct smtp_client *c, size_t *n_r)
{
    *n_r = c->n;
    return c->res;
}

bool smtp_client_wants_body(const struct smtp_client *c)
{
    return c->st == ST_BODY && c->out.len < SMTP_CLIENT_OUT_HIGH;
}

/* Room kept for smtp_client_body_end: CRLF and ".\r\n". */
#define BODY_END_ROOM 8

int smtp_client_body(struct smtp_client *c, const void *p, size_t n)
{
    if (c->st != ST_BODY)
        return -EPROTO;
    /* Each octet becomes at most two (a bare LF, a '.' starting a line),
     * and a CR held from the last piece two more. */
    struct buf *b = &c->out;
    if (b->len + BODY_END_ROOM + 2 > b->max || n > (b->max - BODY_END_ROOM - b->len - 2) / 2)
        return -ENOBUFS;
    if (buf_reserve(b, 2 * n + 2) < 0)
        return -ENOBUFS;
    const uint8_t *in = p;
    uint8_t *o = b->data + b->len;
    bool bol = c->body_bol, cr = c->body_cr;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = in[i];
        if (cr) {
            /* The CR before ends a line, with this LF or alone. */
            *o++ = '\r';
            *o++ = '\n';
            cr = false;
            bol = true;
            if (ch == '\n')
                continue;
        }
        if (ch == '\r') {
            cr = true;
        } else if (ch == '\n') {
            *o++ = '\r';
            *o++ = '\n';
            bol = true;
        } else {
            if (bol && ch == '.')
                *o++ = '.';
            *o++ = ch;
            bol = false;
        }
    }
    b->len = (size_t)(o - b->data);
    c->body_bol = bol;
    c->body_cr = cr;
    return 0;
}

int smtp_client_body_end(struct smtp_client *c)
{
    if (c->st != ST_BODY)
        return -EPROTO;
    /* smtp_client_body kept the room for this. */
    if (c->body_cr || !c->body_bol)
        buf_append(&c->out, "\r\n", 2);
    buf_append(&c->out, ".\r\n", 3);
    c->body_cr = false;
    c->body_bol = true;
    c->st = ST_FINAL;
    return 0;
}

void smtp_client_tls_started(struct smtp_client *c)
{
    if (c->st != ST_TLS)
        return;
    /* RFC 3207 4.2: what the server said before TLS is forgotten. */
    c->tls = true;
    send_ehlo(c);
}

void smtp_client_tls_failed(struct smtp_client *c)
{
    if (c->st == ST_CLOSED)
        return;
    /* With implicit TLS (tls_active) there was no STARTTLS to name. */
    die(c, "4.7.5", "%s", c->tls ? "TLS handshake failed" : "TLS handshake failed after STARTTLS");
}

void smtp_client_quit(struct smtp_client *c)
{
    if (c->st == ST_IDLE) {
        quit_after(c);
        return;
    }
    if (c->st == ST_QUIT || c->st == ST_CLOSED)
        return;
    die(c, "4.3.0", "delivery stopped by kotak during %s", smtp_client_stage_name(stage_now(c)));
}

static void lost(struct smtp_client *c, const char *what)
{
    if (c->st == ST_CLOSED)
        return;
    if (c->st == ST_FINAL && !c->final_ignore)
        die(c, "4.4.2",
            "%s after the end of the message, before the server's reply: it may have been "
            "delivered (RFC 5321 6.1)",
            what);
    else if (c->st == ST_BODY)
        die(c, "4.4.2", "%s while sending the message", what);
    else
        die(c, "4.4.2", "%s while waiting for the reply to %s", what,
            smtp_client_stage_name(stage_now(c)));
}

void smtp_client_connection_lost(struct smtp_client *c)
{
    lost(c, "connection lost");
}

void smtp_client_timed_out(struct smtp_client *c)
{
    lost(c, "timed out");
}

unsigned smtp_client_timeout_s(const struct smtp_client *c)
{
    switch (c->st) {
    case ST_TX:
        return stage_now(c) == SMTP_CLIENT_STAGE_DATA ? 120 : 300;
    case ST_BODY:
        return 180;
    case ST_FINAL:
        return 600;
    case ST_TLS:
    case ST_IDLE:
    case ST_CLOSED:
        return 0;
    default:
        return 300;
    }
}

bool smtp_client_tls_used(const struct smtp_client *c)
{
    return c->tls;
}

bool smtp_client_authenticated(const struct smtp_client *c)
{
    return c->authed;
}

bool smtp_client_dsn_offered(const struct smtp_client *c)
{
    return c->cap_dsn;
}

const char *smtp_client_server_name(const struct smtp_client *c)
{
    return c->server_name;
}

const char *smtp_client_stage_name(enum smtp_client_stage stage)
{
    switch (stage) {
    case SMTP_CLIENT_STAGE_GREETING:
        return "greeting";
    case SMTP_CLIENT_STAGE_EHLO:
        return "EHLO";
    case SMTP_CLIENT_STAGE_STARTTLS:
        return "STARTTLS";
    case SMTP_CLIENT_STAGE_AUTH:
        return "AUTH";
    case SMTP_CLIENT_STAGE_RSET:
        return "RSET";
    case SMTP_CLIENT_STAGE_MAIL:
        return "MAIL FROM";
    case SMTP_CLIENT_STAGE_RCPT:
        return "RCPT TO";
    case SMTP_CLIENT_STAGE_DATA:
        return "DATA";
    case SMTP_CLIENT_STAGE_FINAL:
        return "end of data";
    }
    return "?";
}

const char *smtp_client_state_name(enum smtp_client_state state)
{
    switch (state) {
    case SMTP_CLIENT_PENDING:
        return "pending";
    case SMTP_CLIENT_DELIVERED:
        return "delivered";
    case SMTP_CLIENT_DEFERRED:
        return "deferred";
    case SMTP_CLIENT_FAILED:
        return "failed";
    }
    return "?";
}
