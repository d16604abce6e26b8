/*
 * smtp_session.c — the SMTP state machine: RFC 5321 with the extensions
 * kotak offers (PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8,
 * STARTTLS, AUTH). See smtp_session.h for how it meets the glue.
 *
 * Each verb is a row of smtp_cmds[] with the states it is allowed in; the
 * dispatcher answers 503 for the rest, so a handler checks only syntax and
 * policy. Every reply carries an enhanced status code (RFC 2034, 3463).
 * In DATA the message's header section is read as it streams by, for the
 * Received: loop limit and, on submission, the Date: and Message-ID: a
 * message lacks (see "DATA: the header section").
 */
#include "smtp_session.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dsn.h"
#include "headers.h"
#include "log.h"
#include "metrics.h"
#include "sasl.h"
#include "smtp_client.h"
#include "smtp_parser.h"
#include "util.h"
#include "watch_text.h"

/* AUTH lines may be long: RFC 4954 4 asks for 12,288 octets (the CRLF is
 * allowed on top); other commands are cut at line_max. */
#define SMTP_PARSER_LINE_MAX (12288 + 2)
/* Replies to pipelined commands wait for the glue past SMTP_OUT_HIGH, so
 * SMTP_OUT_MAX is never near: it only backs that promise. */
#define SMTP_OUT_HIGH (4 * 1024)
#define SMTP_OUT_MAX (16 * 1024)

enum smtp_state {
    ST_FRESH = 1 << 0,   /* greeted, no EHLO/HELO yet */
    ST_READY = 1 << 1,   /* EHLO/HELO done, no transaction */
    ST_MAIL = 1 << 2,    /* MAIL accepted */
    ST_RCPT = 1 << 3,    /* at least one RCPT accepted */
    ST_DATA = 1 << 4,    /* reading message data */
    ST_AUTH = 1 << 5,    /* inside a SASL exchange */
    ST_CLOSED = 1 << 6,  /* QUIT or 421 sent */
};
#define ST_ANY (ST_FRESH | ST_READY | ST_MAIL | ST_RCPT)

struct smtp_session {
    struct smtp_session_config cfg;
    const struct smtp_ops *ops;
    void *ctx;
    struct smtp_parser parser;
    enum smtp_state state;
    enum smtp_action action;
    bool busy;
    bool esmtp;        /* EHLO, not HELO */
    bool tls;
    char tls_desc[96]; /* "TLSv1.2 TLS-ECDHE-..." for Received: */
    char helo[256];
    int64_t user_id;   /* logged in: > 0 */
    char user[SASL_FIELD_MAX + 1];
    struct sasl sasl;
    unsigned errors;
    unsigned junk;        /* NOOP, RSET, VRFY and HELP so far */
    unsigned hard_errors; /* 5xx replies so far */
    unsigned tx_count;
    struct smtp_tx *tx;
    /* In DATA, the message's header section as it streams by (data_chunk). */
    struct headers_scan scan;
    bool add_fields;                  /* submission: a missing Date: or Message-ID: is added */
    size_t held;                      /* octets kept from the spool until the scan decides */
    char hold[HEADERS_UNDECIDED_MAX]; /* ... those octets */
    struct buf out;
};

/* --- the live view ------------------------------------------------------- */

static bool watched(const struct smtp_session *s)
{
    return s->ops->watched != NULL && s->ops->watched(s->ctx);
}

static void watch(struct smtp_session *s, enum watch_kind kind, const char *text, size_t len)
{
    s->ops->watch(s->ctx, kind, s->tls, text, len);
}

static void watch_str(struct smtp_session *s, enum watch_kind kind, const char *text)
{
    watch(s, kind, text, strlen(text));
}

/*
 * A client's line for the view: a SASL response or a command, secrets
 * replaced. more_sent: the client sent more after it without waiting for
 * the reply, which a teacher wants to see (RFC 2920 allows it after EHLO
 * offered PIPELINING, and never right after DATA).
 */
static void watch_line(struct smtp_session *s, const char *line, size_t len, bool more_sent)
{
    if (!watched(s))
        return;
    char shown[WATCH_TEXT_MAX + 1];
    size_t n = s->state == ST_AUTH
                   ? watch_sasl_line(s->sasl.mech, s->sasl.step, line, len, shown, sizeof(shown))
                   : watch_command_line(WATCH_SMTP, line, len, shown, sizeof(shown));
    watch(s, WATCH_CLIENT, shown, n);
    if (more_sent)
        watch_str(s, WATCH_NOTE, s->esmtp ? "pipelining: more followed before this reply"
                                          : "warning: more followed before this reply, without "
                                            "EHLO's PIPELINING (RFC 2920)");
}

/* --- replies ------------------------------------------------------------ */

static void reply(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void close_with(struct smtp_session *s, const char *line);
static void reply(struct smtp_session *s, const char *fmt, ...)
{
    va_list ap;
    size_t start = s->out.len;
    va_start(ap, fmt);
    int rc = buf_vprintf_crlf(&s->out, fmt, ap);
    va_end(ap);
    if (rc < 0) {
        /* A client that sends without reading fills our output; it is not
         * listening, so the conversation ends. */
        s->state = ST_CLOSED;
        s->action = SMTP_ACT_CLOSE;
        return;
    }
    if (watched(s))
        watch(s, WATCH_SERVER, (const char *)s->out.data + start, s->out.len - start - 2);
    /* Every refusal counts, so that guessing addresses is not free. */
    if (s->out.data[start] == '5' && ++s->hard_errors >= s->cfg.hard_errors)
        close_with(s, "421 4.7.0 Too many errors, closing the connection");
}

static void close_with(struct smtp_session *s, const char *line)
{
    if (s->state == ST_CLOSED)
        return; /* one goodbye only */
    reply(s, "%s", line);
    s->state = ST_CLOSED;
    s->action = SMTP_ACT_CLOSE;
}

/* Counts a client error; past the limit the session ends (STYLE.md). */
static void count_error(struct smtp_session *s)
{
    if (++s->errors >= s->cfg.bad_commands) {
        log_info("smtp session=%s ip=%s event=too-many-errors", s->cfg.session_id, s->cfg.peer_ip);
        close_with(s, "421 4.7.0 Too many errors, closing the connection");
    }
}

/* --- transactions ------------------------------------------------------- */

static void tx_free(struct smtp_session *s)
{
    if (s->tx == NULL)
        return;
    if (s->tx->spooling)
        s->ops->spool_abort(s->ctx);
    s->ops->rcpts_free(s->ctx, &s->tx->rcpts);
    for (size_t i = 0; i < s->tx->n_remote; i++) {
        free(s->tx->remote[i].address);
        free(s->tx->remote[i].orcpt);
    }
    free(s->tx->remote);
    for (size_t i = 0; i < s->tx->n_rcpt_cmds; i++)
        free(s->tx->named[i]);
    free(s->tx->named);
    free(s->tx->envid);
    free(s->tx);
    s->tx = NULL;
}

static void tx_reset(struct smtp_session *s)
{
    tx_free(s);
    if (s->state & (ST_MAIL | ST_RCPT | ST_DATA))
        s->state = ST_READY;
}

/* --- EHLO, HELO --------------------------------------------------------- */

/* A HELO name goes into Received: headers, so only plain characters pass. */
static bool helo_name_ok(const char *p, size_t n)
{
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || strchr("\"()<>\\;", c) != NULL)
            return false;
    }
    return true;
}

static bool auth_allowed(const struct smtp_session *s)
{
    return s->cfg.role != SMTP_ROLE_MX && (s->tls || s->cfg.peer_loopback);
}

static void cmd_helo(struct smtp_session *s, const struct smtp_command *c, bool ehlo)
{
    if (!helo_name_ok(c->arg, c->arg_len)) {
        reply(s, "501 5.5.4 %s needs the client's domain name or address literal",
              ehlo ? "EHLO" : "HELO");
        count_error(s);
        return;
    }
    tx_reset(s);
    memcpy(s->helo, c->arg, c->arg_len);
    s->helo[c->arg_len] = '\0';
    s->esmtp = ehlo;
    s->state = ST_READY;
    if (!ehlo) {
        reply(s, "250 %s", s->cfg.hostname);
        return;
    }
    reply(s, "250-%s greets %s", s->cfg.hostname, s->helo);
    reply(s, "250-PIPELINING");
    reply(s, "250-SIZE %zu", s->cfg.message_size);
    reply(s, "250-8BITMIME");
    reply(s, "250-SMTPUTF8");
    if (!s->tls && s->cfg.tls_available && s->cfg.role != SMTP_ROLE_SUBMISSIONS)
        reply(s, "250-STARTTLS");
    if (auth_allowed(s) && s->user_id == 0)
        reply(s, "250-AUTH PLAIN LOGIN");
    if (s->cfg.role != SMTP_ROLE_MX)
        reply(s, "250-DSN"); /* reports come from the queue, which only submission feeds */
    reply(s, "250 ENHANCEDSTATUSCODES");
}

/* --- MAIL, RCPT --------------------------------------------------------- */

static bool has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return true;
    return false;
}

static unsigned addr_flags(bool utf8)
{
    return ADDR_QUOTED | ADDR_LITERAL | (utf8 ? ADDR_UTF8 : 0);
}

static bool param_value_is(const struct smtp_param *p, const char *v)
{
    return p->value != NULL && p->value_len == strlen(v) && strncasecmp(p->value, v, p->value_len) == 0;
}

/* Parses SIZE=n: 0, or -1 when it is not a number. */
static int parse_size(const struct smtp_param *p, size_t *size_r)
{
    size_t v = 0;
    if (p->value == NULL || p->value_len == 0 || p->value_len > 19)
        return -1;
    for (size_t i = 0; i < p->value_len; i++) {
        if (p->value[i] < '0' || p->value[i] > '9')
            return -1;
        v = v * 10 + (size_t)(p->value[i] - '0');
    }
    *size_r = v;
    return 0;
}

/* DSN (RFC 3461) comes with the queue, which only submission feeds. */
static bool dsn_offered(const struct smtp_session *s)
{
    return s->cfg.role != SMTP_ROLE_MX;
}

/* An ENVID or ORCPT value, xtext-decoded: NULL when it is not xtext, is
 * longer than max once decoded, or holds a control character (or, with
 * ascii, an octet past 0x7e: an ENVID travels on only in ASCII). */
static char *decode_xtext(const char *p, size_t n, size_t max, bool ascii)
{
    struct buf b;
    buf_init(&b, max + 1);
    char *text = NULL;
    if (dsn_xtext_decode(p, n, &b) == 0 && b.len <= max && buf_append(&b, "", 1) == 0) {
        bool clean = true;
        for (size_t i = 0; i + 1 < b.len; i++)
            clean &= b.data[i] >= 0x20 && b.data[i] != 0x7f && (!ascii || b.data[i] < 0x80);
        if (clean)
            text = xstrdup((const char *)b.data);
    }
    buf_free(&b);
    return text;
}

/* MAIL's parameters into tx; false when a reply refused them. */
static bool mail_params(struct smtp_session *s, const struct smtp_path_args *a, struct smtp_tx *tx,
                        size_t *declared_r)
{
    for (size_t i = 0; i < a->n_params; i++) {
        const struct smtp_param *p = &a->params[i];
        if (!s->esmtp) {
            reply(s, "555 5.5.4 Parameters need EHLO");
            return false;
        }
        if (smtp_param_is(p, "SIZE")) {
            if (parse_size(p, declared_r) < 0) {
                reply(s, "501 5.5.4 SIZE needs a number of octets");
                return false;
            }
        } else if (smtp_param_is(p, "BODY")) {
            if (!param_value_is(p, "7BIT") && !param_value_is(p, "8BITMIME")) {
                reply(s, "501 5.5.4 BODY is 7BIT or 8BITMIME");
                return false;
            }
        } else if (smtp_param_is(p, "SMTPUTF8") && p->value == NULL) {
            tx->utf8 = true;
        } else if (dsn_offered(s) && smtp_param_is(p, "RET") && p->value != NULL) {
            if (tx->ret != STORE_RET_DEFAULT ||
                dsn_ret_parse(p->value, p->value_len, &tx->ret) < 0) {
                reply(s, "501 5.5.4 RET is FULL or HDRS, given once");
                return false;
            }
        } else if (dsn_offered(s) && smtp_param_is(p, "ENVID") && p->value != NULL) {
            if (tx->envid != NULL ||
                (tx->envid = decode_xtext(p->value, p->value_len, SMTP_CLIENT_ENVID_MAX, true)) == NULL) {
                reply(s, "501 5.5.4 ENVID is xtext of at most 100 printable ASCII octets, given once");
                return false;
            }
        } else if (smtp_param_is(p, "AUTH") && p->value != NULL) {
            /* RFC 4954 5: a relaying MTA says who submitted the message
             * (often AUTH=<>). kotak trusts no such claim, which RFC 4954
             * says to treat as AUTH=<>: the value is checked and dropped. */
        } else {
            reply(s, "555 5.5.4 Unsupported parameter %.*s", (int)(p->key_len < 32 ? p->key_len : 32),
                  p->key);
            return false;
        }
    }
    return true;
}

/* Submission: the sender must be the user, one of their aliases, or a +tag of either. */
static bool sender_is_users(struct smtp_session *s, const struct smtp_path_args *a,
                            const struct addr *from)
{
    struct store_rcpts r = {0};
    bool mine = false;
    if (a->mailbox_len > 0 && s->ops->resolve(s->ctx, from, &r) == 1)
        for (size_t i = 0; i < r.n; i++)
            mine |= r.user_ids[i] == s->user_id;
    s->ops->rcpts_free(s->ctx, &r);
    return mine;
}

static void cmd_mail(struct smtp_session *s, const struct smtp_command *c)
{
    struct smtp_path_args a;
    if (s->cfg.role != SMTP_ROLE_MX && s->user_id == 0) {
        reply(s, "530 5.7.0 Authentication required");
        return;
    }
    int rc = smtp_path_parse(c->arg, c->arg_len, "FROM:", true, &a);
    if (rc < 0) {
        reply(s, rc == -SMTP_PATH_SYNTAX ? "501 5.5.2 Syntax: MAIL FROM:<address>"
                                         : "501 5.5.4 Malformed parameter");
        count_error(s);
        return;
    }
    struct smtp_tx *tx = xcalloc(1, sizeof(*tx));
    tx->helo = s->helo;
    size_t declared = 0;
    if (!mail_params(s, &a, tx, &declared)) {
        free(tx->envid);
        free(tx);
        return;
    }
    char refusal[96] = "";
    bool bad_syntax = false;
    struct addr from;
    if (declared > s->cfg.message_size) {
        snprintf(refusal, sizeof(refusal), "552 5.3.4 Message size exceeds the limit of %zu octets",
                 s->cfg.message_size);
    } else if (a.mailbox_len > 0 &&
               addr_parse(a.mailbox, a.mailbox_len, addr_flags(tx->utf8), &from) < 0) {
        snprintf(refusal, sizeof(refusal), "%s",
                 !tx->utf8 && has_8bit(a.mailbox, a.mailbox_len)
                     ? "553 5.6.7 Non-ASCII address needs SMTPUTF8"
                     : "501 5.1.7 Bad sender address syntax");
        bad_syntax = true;
    } else if (s->cfg.role != SMTP_ROLE_MX && !sender_is_users(s, &a, &from)) {
        snprintf(refusal, sizeof(refusal), "553 5.7.1 Sender address does not belong to you");
    }
    if (refusal[0] != '\0') {
        free(tx->envid);
        free(tx);
        reply(s, "%s", refusal);
        if (bad_syntax)
            count_error(s);
        return;
    }
    s->tx = tx;
    tx->user_id = s->user_id;
    tx->declared = declared;
    if (a.mailbox_len > 0)
        snprintf(tx->from, sizeof(tx->from), "%s@%s", from.local, from.domain);
    snprintf(tx->id, sizeof(tx->id), "%s.%u", s->cfg.session_id, ++s->tx_count);
    s->state = ST_MAIL;
    reply(s, "250 2.1.0 Ok");
}

/* RCPT's parameters (NOTIFY and ORCPT on submission); false when a reply refused them. */
static bool rcpt_params(struct smtp_session *s, const struct smtp_path_args *a, unsigned *notify_r,
                        char **orcpt_r)
{
    const char *refusal = NULL;
    for (size_t i = 0; i < a->n_params && refusal == NULL; i++) {
        const struct smtp_param *p = &a->params[i];
        if (dsn_offered(s) && smtp_param_is(p, "NOTIFY") && p->value != NULL) {
            if (*notify_r != 0 || dsn_notify_parse(p->value, p->value_len, notify_r) < 0)
                refusal = "501 5.5.4 NOTIFY is NEVER or SUCCESS,FAILURE,DELAY, given once";
        } else if (dsn_offered(s) && smtp_param_is(p, "ORCPT") && p->value != NULL) {
            /* "rfc822;" and the address as xtext (RFC 3461 4.2); the
             * queue keeps the address and sends it on the same way. */
            if (*orcpt_r != NULL || p->value_len < 7 || strncasecmp(p->value, "rfc822;", 7) != 0 ||
                (*orcpt_r = decode_xtext(p->value + 7, p->value_len - 7, ADDR_MAX, false)) == NULL)
                refusal = "501 5.5.4 ORCPT is rfc822; and an address as xtext, given once";
        } else {
            reply(s, "555 5.5.4 Unsupported parameter %.*s",
                  (int)(p->key_len < 32 ? p->key_len : 32), p->key);
            refusal = "";
        }
    }
    if (refusal == NULL)
        return true;
    if (refusal[0] != '\0')
        reply(s, "%s", refusal);
    free(*orcpt_r);
    *orcpt_r = NULL;
    return false;
}

/* Takes back the alias targets outside that a refused RCPT brought. */
static void rcpts_drop_remote(struct store_rcpts *r, size_t keep)
{
    while (r->n_remote > keep)
        free(r->remote[--r->n_remote]);
}

/* A recipient at another server, once (the same mailbox by two paths is one copy). */
static void add_remote(struct smtp_tx *tx, const char *address, const char *orcpt, unsigned notify)
{
    for (size_t i = 0; i < tx->n_remote; i++)
        if (addr_same_mailbox(tx->remote[i].address, address))
            return;
    tx->remote = xrealloc(tx->remote, (tx->n_remote + 1) * sizeof(*tx->remote));
    tx->remote[tx->n_remote++] = (struct smtp_remote){
        .address = xstrdup(address),
        .orcpt = orcpt != NULL ? xstrdup(orcpt) : NULL,
        .notify = notify,
    };
}

/* "local@domain" of an address, into buf[ADDR_TEXT_SIZE]. */
static const char *to_text(const struct addr *a, char *buf)
{
    snprintf(buf, ADDR_TEXT_SIZE, "%s@%s", a->local, a->domain);
    return buf;
}

/*
 * An SRS address of ours (smtpd/srs.h) stands for the sender of a message
 * an alias forwarded: *to becomes that sender, and *srs says so. Only
 * reports may go there (from <>): anyone else would use it to relay. Returns
 * a refusal, or NULL.
 */
static const char *srs_rcpt(struct smtp_session *s, struct addr *to, bool *srs)
{
    char original[ADDR_TEXT_SIZE];
    int rc = s->ops->srs_reverse != NULL ? s->ops->srs_reverse(s->ctx, to, original) : 0;
    if (rc == 0)
        return NULL;
    if (rc < 0)
        return "550 5.1.1 This forwarding address is not valid, or has expired";
    if (s->tx->from[0] != '\0')
        return "550 5.7.1 This forwarding address takes delivery reports only";
    if (addr_parse(original, strlen(original), ADDR_UTF8 | ADDR_QUOTED, to) < 0)
        return "550 5.1.1 This forwarding address is not valid, or has expired";
    *srs = true;
    return NULL;
}

/* Whether an earlier RCPT of tx (its users [0, before)) already names one of rcpt's users. */
static bool rcpt_overlaps(struct smtp_session *s, const struct addr *rcpt, size_t before)
{
    struct store_rcpts r = {0};
    bool overlap = false;
    if (s->ops->resolve(s->ctx, rcpt, &r) > 0)
        for (size_t i = 0; i < r.n && !overlap; i++)
            for (size_t j = 0; j < before && !overlap; j++)
                overlap = r.user_ids[i] == s->tx->rcpts.user_ids[j];
    s->ops->rcpts_free(s->ctx, &r);
    return overlap;
}

/*
 * Quotas (store_quota_fit) of the local users tx->rcpts[from..], new with
 * this RCPT (rcpt; NULL at the final dot, for the whole transaction): a
 * message of size octets is refused only when none of the users it is for
 * takes it. With an alias of two users, the one with room must get it, and
 * the one without still does: one reply answers the whole RCPT (or the
 * whole DATA), so an alias's target over its quota is not singled out; it
 * goes over rather than lose the mail, and sees the warning at its next
 * login. Returns the refusal (RFC 3463 X.2.2, mailbox full: 452 while the
 * maildrop may empty, 552 for a message larger than the whole quota), or
 * NULL. A failed look-up refuses nothing: the quota gives way before mail
 * does.
 */
static const char *quota_refusal(struct smtp_session *s, size_t from, uint64_t size,
                                 const struct addr *rcpt)
{
    struct smtp_tx *tx = s->tx;
    bool full = false;
    if (s->ops->quota == NULL || from >= tx->rcpts.n)
        return NULL;
    for (size_t i = from; i < tx->rcpts.n; i++) {
        struct store_quota q;
        if (s->ops->quota(s->ctx, tx->rcpts.user_ids[i], &q) != 1)
            return NULL;
        enum store_quota_fit fit = store_quota_fit(q.used, q.quota, size);
        if (fit == STORE_QUOTA_FITS)
            return NULL;
        full |= fit == STORE_QUOTA_FULL;
    }
    /* Rare: every new user is full, but the alias also names one that an
     * earlier RCPT brought, who gets the message anyway. Refusing would
     * make the sender send it to that one twice. */
    if (rcpt != NULL && from > 0 && rcpt_overlaps(s, rcpt, from))
        return NULL;
    return full ? "452 4.2.2 Mailbox full, try again later"
                : "552 5.2.2 Mailbox full: the message is larger than the quota";
}

static void cmd_rcpt(struct smtp_session *s, const struct smtp_command *c)
{
    struct smtp_path_args a;
    struct smtp_tx *tx = s->tx;
    int rc = smtp_path_parse(c->arg, c->arg_len, "TO:", tx->utf8, &a);
    if (rc < 0 || a.mailbox_len == 0) {
        reply(s, rc == -SMTP_PATH_PARAM ? "501 5.5.4 Malformed parameter"
                                        : "501 5.5.2 Syntax: RCPT TO:<address>");
        count_error(s);
        return;
    }
    struct addr to;
    if (a.mailbox_len == 10 && strncasecmp(a.mailbox, "postmaster", 10) == 0) {
        /* RFC 5321 4.5.1: <Postmaster> with no domain, in any case, must be
         * taken; an empty domain asks the store for the first local one's. */
        memset(&to, 0, sizeof(to));
        memcpy(to.local, "postmaster", 11);
    } else if (addr_parse(a.mailbox, a.mailbox_len, addr_flags(tx->utf8), &to) < 0) {
        if (!tx->utf8 && has_8bit(a.mailbox, a.mailbox_len))
            reply(s, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
        else
            reply(s, "501 5.1.3 Bad recipient address syntax");
        count_error(s);
        return;
    }
    if (tx->n_rcpt_cmds >= s->cfg.recipients) {
        reply(s, "452 4.5.3 Too many recipients");
        return;
    }
    /* Last before the look-up: from here every way out frees orcpt. */
    unsigned notify = 0;
    char *orcpt = NULL;
    if (!rcpt_params(s, &a, &notify, &orcpt))
        return;
    char named[ADDR_TEXT_SIZE];
    snprintf(named, sizeof(named), "%s%s%s", to.local, to.domain[0] ? "@" : "", to.domain);
    /* A bounce to a forwarded message's SRS sender goes back to the original one. */
    bool srs = false;
    const char *refusal = srs_rcpt(s, &to, &srs);
    size_t before = tx->rcpts.n, remote_before = tx->rcpts.n_remote;
    rc = refusal == NULL ? s->ops->resolve(s->ctx, &to, &tx->rcpts) : 0;
    if (refusal != NULL)
        ;
    else if (rc == -KOTAK_ENODOMAIN && s->cfg.role == SMTP_ROLE_MX && !srs)
        refusal = "550 5.7.1 Relay access denied";
    else if (rc == -KOTAK_ENODOMAIN && to.domain[0] == '\0')
        refusal = "550 5.1.1 No such user here"; /* a bare <Postmaster>, with no local domain */
    else if (rc == -KOTAK_ENODOMAIN && to.domain[0] == '[')
        /* A bare IP address as the domain: a way around MX policy, and often
         * around the sender's own server's checks; not sent on from here. */
        refusal = "550 5.1.2 Mail to an address literal is not sent on";
    else if (rc < 0 && rc != -KOTAK_ENODOMAIN)
        refusal = "451 4.3.0 Temporary lookup failure, try again later";
    else if (rc == 0)
        refusal = "550 5.1.1 No such user here";
    else if (tx->rcpts.n_remote == remote_before && rc != -KOTAK_ENODOMAIN &&
             (refusal = quota_refusal(s, before, tx->declared, &to)) != NULL) {
        char v[ADDR_TEXT_SIZE + 8];
        log_info("smtp session=%s event=mailbox-full id=%s rcpt=<%s> code=%.3s", s->cfg.session_id,
                 tx->id, log_value(v, sizeof(v), named, strlen(named)), refusal);
    }
    if (refusal != NULL) {
        metrics_count(rc == -KOTAK_ENODOMAIN && s->cfg.role == SMTP_ROLE_MX && !srs
                          ? METRIC_RCPT_RELAY_DENIED
                      : strstr(refusal, " 5.1.1 ") != NULL ? METRIC_RCPT_UNKNOWN
                                                           : METRIC_RCPT_OTHER);
        tx->rcpts.n = before;
        rcpts_drop_remote(&tx->rcpts, remote_before);
        free(orcpt);
        reply(s, "%s", refusal);
        return;
    }
    /* The queue takes what the store does not keep here: on submission the
     * named address itself, on any port what an alias forwards to and the
     * original sender behind an SRS address. */
    char original[ADDR_TEXT_SIZE];
    if (rc == -KOTAK_ENODOMAIN)
        add_remote(tx, srs ? to_text(&to, original) : named, srs ? named : orcpt, notify);
    for (size_t i = remote_before; i < tx->rcpts.n_remote; i++)
        add_remote(tx, tx->rcpts.remote[i], orcpt != NULL ? orcpt : named, notify);
    free(orcpt);
    if (tx->n_rcpt_cmds == 0)
        snprintf(tx->first_rcpt, sizeof(tx->first_rcpt), "%s", named);
    tx->named = xrealloc(tx->named, (tx->n_rcpt_cmds + 1) * sizeof(*tx->named));
    tx->named[tx->n_rcpt_cmds] = xstrdup(named);
    tx->n_rcpt_cmds++;
    s->state = ST_RCPT;
    reply(s, "250 2.1.5 Ok");
}

/* --- DATA --------------------------------------------------------------- */

static int spool_printf(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int spool_printf(struct smtp_session *s, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -EINVAL;
    return s->ops->spool_write(s->ctx, line, (size_t)n);
}

/* Return-Path: and Received: (RFC 5321 4.4), written ahead of the message. */
static int write_trace(struct smtp_session *s)
{
    struct smtp_tx *tx = s->tx;
    const char *proto = tx->utf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP";
    const char *suffix = s->tls && s->user_id ? "SA" : s->tls ? "S" : s->user_id ? "A" : "";
    if (!s->esmtp)
        suffix = "";
    char date[HEADERS_DATE_SIZE];
    if (headers_format_date(s->ops->now(s->ctx), date) < 0)
        return -EINVAL; /* a clock before 1900 or past 9999 */
    char tls[128] = "";
    if (s->tls)
        snprintf(tls, sizeof(tls), "\r\n\t(%s)", s->tls_desc);
    char rcpt[ADDR_TEXT_SIZE + 16] = "";
    /* RFC 5321 4.1.3: an IPv6 address literal is tagged. */
    const char *ip_tag = strchr(s->cfg.peer_ip, ':') ? "IPv6:" : "";
    if (tx->n_rcpt_cmds == 1)
        snprintf(rcpt, sizeof(rcpt), "\r\n\tfor <%s>", tx->first_rcpt);
    int rc = spool_printf(s, "Return-Path: <%s>\r\n", tx->from);
    if (rc == 0)
        rc = spool_printf(s,
                          "Received: from %s ([%s%s])\r\n\tby %s (kotak) with %s%s id %s%s%s;\r\n"
                          "\t%s\r\n",
                          s->helo, ip_tag, s->cfg.peer_ip, s->cfg.hostname, proto, suffix, tx->id, tls,
                          rcpt, date);
    return rc;
}

/* --- DATA: the header section --------------------------------------------
 *
 * Every message's header section is read as it streams by (headers.h's
 * scan): its Received: fields are counted for the loop check at the final
 * dot, and on submission the scan finds where a missing Date: or
 * Message-ID: goes (RFC 6409 8.2, 8.3): at the end of the section, just
 * before the empty line that ends it, or before the first line that is no
 * field (the body of a message sent without headers), or at the end of the
 * data when there is no body. So the message is otherwise byte for byte
 * what the user wrote, and the trace fields stay on top.
 *
 * Whether a line is a field can depend on octets that have not arrived
 * ("Subject" may yet get its colon): on submission those octets, at most
 * one line's HEADERS_UNDECIDED_MAX, wait in hold until the scan decides;
 * everything else goes to the spool as it comes. Once the section has
 * ended, the body passes straight through, never looked at.
 */

static void data_headers_start(struct smtp_session *s)
{
    headers_scan_init(&s->scan);
    s->add_fields = s->cfg.role != SMTP_ROLE_MX;
    s->held = 0;
}

/*
 * Writes octets [from, to) of the held octets followed by p's: what has
 * been held is the start of the span the scan was last fed, and p the rest.
 */
static int write_span(struct smtp_session *s, const char *p, size_t from, size_t to)
{
    int rc = 0;
    if (from < to && from < s->held) {
        size_t e = to < s->held ? to : s->held;
        rc = s->ops->spool_write(s->ctx, s->hold + from, e - from);
        from = e;
    }
    if (rc == 0 && from < to)
        rc = s->ops->spool_write(s->ctx, p + (from - s->held), to - from);
    return rc;
}

/* RFC 5322 3.6.4's id-right is a dot-atom-text: a host name is, but the name
 * gethostname gave, unchecked, need not be. */
static bool dot_atom_ok(const char *p)
{
    static const char specials[] = "!#$%&'*+-/=?^_`{|}~";
    size_t n = strlen(p);
    if (n == 0 || p[0] == '.' || p[n - 1] == '.' || strstr(p, "..") != NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
            c != '.' && strchr(specials, c) == NULL)
            return false;
    }
    return true;
}

/*
 * Date: and Message-ID:, each only when the message has none. The date is
 * the session's now; the id is the time, the transaction's id (unique
 * within this run of the daemon) and the glue's random value (so that no
 * earlier run, nor another server of the same name, made the same), at our
 * host name.
 */
static int write_missing_fields(struct smtp_session *s)
{
    time_t now = s->ops->now(s->ctx);
    int rc = 0;
    if (!(s->scan.seen & HEADERS_DATE)) {
        char date[HEADERS_DATE_SIZE];
        rc = headers_format_date(now, date);
        if (rc == 0)
            rc = spool_printf(s, "Date: %s\r\n", date);
    }
    if (rc == 0 && !(s->scan.seen & HEADERS_MESSAGE_ID))
        rc = spool_printf(s, "Message-ID: <%lld.%s.%016llx@%s>\r\n", (long long)now, s->tx->id,
                          (unsigned long long)s->cfg.msgid_random,
                          dot_atom_ok(s->cfg.hostname) ? s->cfg.hostname : "localhost");
    return rc;
}

/*
 * The section ends at cut, counted from the start of the held octets
 * (followed by p[0..span - held)): what comes before it, the missing
 * fields, then the rest.
 */
static int write_around(struct smtp_session *s, const char *p, size_t cut, size_t span)
{
    int rc = write_span(s, p, 0, cut);
    if (rc == 0)
        rc = write_missing_fields(s);
    if (rc == 0)
        rc = write_span(s, p, cut, span);
    s->held = 0;
    return rc;
}

/*
 * A piece of message data while the header section lasts: scanned, and
 * written as far as it is known to lie inside the section; where the
 * section ends, the missing fields go in, then the rest of the piece. On
 * MX nothing is added, so nothing waits.
 */
static int header_chunk(struct smtp_session *s, const char *p, size_t n)
{
    uint64_t start = s->scan.fed - s->held; /* where the held octets, then p, begin */
    headers_scan_feed(&s->scan, p, n);
    if (!s->add_fields)
        return s->ops->spool_write(s->ctx, p, n);
    size_t span = s->held + n;
    uint64_t cut_at = s->scan.done ? s->scan.end : s->scan.settled;
    assert(cut_at >= start && cut_at - start <= span);
    size_t cut = (size_t)(cut_at - start);
    if (s->scan.done)
        return write_around(s, p, cut, span);
    int rc = write_span(s, p, 0, cut);
    /* The undecided rest, all in one line, waits for the next piece. */
    size_t from_hold = cut < s->held ? s->held - cut : 0;
    size_t from_p = cut > s->held ? cut - s->held : 0;
    assert(from_hold + (n - from_p) <= sizeof(s->hold));
    memmove(s->hold, s->hold + (s->held - from_hold), from_hold);
    memcpy(s->hold + from_hold, p + from_p, n - from_p);
    s->held = from_hold + (n - from_p);
    return rc;
}

/*
 * The data has ended. If the header section had not, it ends here too (a
 * message with no body, or an undecided last line that is no field): on
 * submission the held octets and the missing fields are written now.
 */
static int header_end(struct smtp_session *s)
{
    if (s->scan.done)
        return 0;
    uint64_t start = s->scan.fed - s->held;
    headers_scan_finish(&s->scan);
    if (!s->add_fields)
        return 0;
    assert(s->scan.end >= start && s->scan.end - start <= s->held);
    return write_around(s, NULL, (size_t)(s->scan.end - start), s->held);
}

static void cmd_data(struct smtp_session *s, const struct smtp_command *c)
{
    if (c->arg_len > 0) {
        reply(s, "501 5.5.4 DATA takes no argument");
        return;
    }
    if (s->state == ST_MAIL) {
        reply(s, "554 5.5.1 No valid recipients");
        return;
    }
    int rc = s->ops->spool_begin(s->ctx);
    if (rc == 0) {
        s->tx->spooling = true;
        rc = write_trace(s);
    }
    if (rc < 0) {
        reply(s, rc == -ENOSPC ? "452 4.3.1 Insufficient system storage"
                               : "451 4.3.0 Temporary failure, try again later");
        tx_reset(s);
        return;
    }
    smtp_parser_start_data(&s->parser);
    data_headers_start(s);
    s->state = ST_DATA;
    s->tx->data_start = s->ops->now(s->ctx);
    reply(s, "354 End data with <CR><LF>.<CR><LF>"); /* 3xx: no enhanced code (RFC 2034 4) */
}

/*
 * A message may take the idle time plus a second per min_data_rate octets
 * (Postfix's smtpd_min_data_rate). A session in DATA keeps its slot under
 * stress, and the idle timer restarts with each line: without a floor, a
 * line per idle period would hold a slot for as long as its sender likes.
 */
static bool data_too_slow(struct smtp_session *s)
{
    if (s->cfg.min_data_rate == 0)
        return false;
    time_t took = s->ops->now(s->ctx) - s->tx->data_start;
    uint64_t allowed = s->cfg.data_grace_s + s->tx->data_received / s->cfg.min_data_rate;
    return took > 0 && (uint64_t)took > allowed;
}

static void data_chunk(struct smtp_session *s, const char *p, size_t n)
{
    struct smtp_tx *tx = s->tx;
    tx->data_received += n;
    if (data_too_slow(s)) {
        log_info("smtp session=%s event=data-too-slow id=%s received=%llu", s->cfg.session_id,
                 tx->id, (unsigned long long)tx->data_received);
        tx_reset(s);
        close_with(s, "421 4.4.2 Message data arrives too slowly, closing the connection");
        return;
    }
    /* After a failure, read on to the final dot and answer once there. */
    if (tx->too_big || tx->spool_error < 0)
        return;
    if (n > s->cfg.message_size - tx->size) {
        tx->too_big = true;
        return;
    }
    tx->size += n;
    if (s->scan.done)
        tx->spool_error = s->ops->spool_write(s->ctx, p, n);
    else
        tx->spool_error = header_chunk(s, p, n);
}

static void data_end(struct smtp_session *s, unsigned flags)
{
    struct smtp_tx *tx = s->tx;
    s->state = ST_READY;
    if (tx->spool_error == 0 && !tx->too_big)
        tx->spool_error = header_end(s);
    const char *refusal = NULL;
    enum metric m = METRIC_SMTP_STORED;
    if (tx->spool_error == -ENOSPC)
        refusal = "452 4.3.1 Insufficient system storage", m = METRIC_SMTP_DISK_FULL;
    else if (tx->spool_error < 0)
        refusal = "451 4.3.0 Temporary failure, try again later", m = METRIC_SMTP_STORE_ERROR;
    else if (tx->too_big)
        refusal = "552 5.3.4 Message too big", m = METRIC_SMTP_TOO_BIG;
    else if (s->scan.received >= HEADERS_RECEIVED_MAX)
        /* RFC 5321 6.3: a loop. Our own Received: counts, so that no message
         * we store or send on holds more than HEADERS_RECEIVED_MAX, as
         * headers_count_received would count them in the stored copy. */
        refusal = "554 5.4.6 Too many Received: fields, the message is looping", m = METRIC_SMTP_LOOP;
    else if (flags & SMTP_DATA_BARE_EOL)
        refusal = "550 5.6.0 Message refused: bare CR or LF; lines must end in CRLF",
        m = METRIC_SMTP_BARE_NEWLINE;
    else if (flags & SMTP_DATA_LONG_LINE)
        refusal = "550 5.6.0 Message refused: a line is longer than 998 characters",
        m = METRIC_SMTP_LONG_LINE;
    else if (tx->n_remote == 0 && (refusal = quota_refusal(s, 0, tx->size, NULL)) != NULL)
        /* Checked again with the real size, against what the maildrops
         * hold now: none of the local recipients has room for it. */
        m = refusal[0] == '4' ? METRIC_SMTP_TEMPFAIL : METRIC_SMTP_TOO_BIG;
    if (refusal != NULL) {
        metrics_count(m);
        log_info("smtp session=%s event=refused id=%s size=%zu code=%.3s", s->cfg.session_id,
                 tx->id, tx->size, refusal);
        reply(s, "%s", refusal);
        tx_reset(s);
        return;
    }
    if (watched(s)) {
        char note[96];
        int n = snprintf(note, sizeof(note), "(the message: %zu octets, then the final dot)",
                         tx->size);
        watch(s, WATCH_NOTE, note, (size_t)n);
        if (flags & SMTP_DATA_LF_MADE_CRLF)
            watch_str(s, WATCH_NOTE, "warning: lines ended in a bare LF, not CRLF (RFC 5321 2.3.8); "
                                     "kept with CRLF");
    }
    s->busy = true;
    s->ops->deliver(s->ctx, tx);
}

void smtp_session_store_done(struct smtp_session *s, int rc)
{
    struct smtp_tx *tx = s->tx;
    char from[ADDR_TEXT_SIZE + 8];
    s->busy = false;
    if (tx == NULL)
        return;
    tx->spooling = false; /* the glue has finished with the spool */
    log_info("smtp session=%s event=%s id=%s from=<%s> rcpts=%zu size=%zu result=%s",
             s->cfg.session_id, rc == 0 ? "accepted" : "failed", tx->id,
             log_value(from, sizeof(from), tx->from, strlen(tx->from)), tx->rcpts.n, tx->size,
             rc == 0 ? "stored" : rc == -ENOSPC ? "disk-full" : "store-error");
    if (s->state == ST_CLOSED)
        ; /* the goodbye went out already; the log line above is the record */
    else if (rc == 0)
        reply(s, "250 2.0.0 Ok: queued as %s", tx->id);
    else if (rc == -ENOSPC)
        reply(s, "452 4.3.1 Insufficient system storage");
    else
        reply(s, "451 4.3.0 Temporary failure, try again later");
    tx_reset(s);
}

void smtp_session_refused(struct smtp_session *s, const char *line)
{
    struct smtp_tx *tx = s->tx;
    char from[ADDR_TEXT_SIZE + 8], why[200];
    s->busy = false;
    if (tx == NULL)
        return;
    tx->spooling = false; /* the glue has finished with the spool */
    log_info("smtp session=%s event=refused id=%s from=<%s> rcpts=%zu size=%zu reply=\"%s\"",
             s->cfg.session_id, tx->id, log_value(from, sizeof(from), tx->from, strlen(tx->from)),
             tx->rcpts.n, tx->size, log_value(why, sizeof(why), line, strlen(line)));
    if (s->state != ST_CLOSED)
        reply(s, "%s", line);
    tx_reset(s);
}

/* --- AUTH --------------------------------------------------------------- */

static void auth_fail(struct smtp_session *s, const char *line)
{
    sasl_clear(&s->sasl);
    s->state = ST_READY;
    reply(s, "%s", line);
    count_error(s);
}

/* Feeds one SASL response; starts the password check when complete. */
static void auth_step(struct smtp_session *s, const char *resp, size_t len)
{
    char challenge[64];
    int rc = sasl_step(&s->sasl, resp, len, challenge, sizeof(challenge));
    if (rc == -ECANCELED) {
        auth_fail(s, "501 5.0.0 Authentication cancelled");
        return;
    }
    if (rc < 0) {
        auth_fail(s, "501 5.5.2 Cannot decode the response");
        return;
    }
    if (rc == SASL_CONTINUE) {
        s->state = ST_AUTH;
        reply(s, "334 %s", challenge);
        return;
    }
    s->state = ST_AUTH;
    s->busy = true;
    snprintf(s->user, sizeof(s->user), "%s", s->sasl.user);
    /* kotak has no proxy logins: one for another identity is checked as a
     * login of nobody, so that it fails like any other, after the delay. */
    bool proxy = s->sasl.authzid[0] != '\0' && strcmp(s->sasl.authzid, s->sasl.user) != 0;
    s->ops->auth(s->ctx, proxy ? "" : s->sasl.user, s->sasl.password);
    sasl_clear(&s->sasl);
}

static void cmd_auth(struct smtp_session *s, const struct smtp_command *c)
{
    if (s->cfg.role == SMTP_ROLE_MX) {
        reply(s, "502 5.5.1 No login on this port; use submission");
        return;
    }
    if (!auth_allowed(s)) {
        reply(s, "538 5.7.11 Encryption required: send STARTTLS first");
        return;
    }
    if (s->user_id != 0) {
        reply(s, "503 5.5.1 Already authenticated");
        return;
    }
    const char *sp = memchr(c->arg, ' ', c->arg_len);
    size_t name_len = sp ? (size_t)(sp - c->arg) : c->arg_len;
    enum sasl_mech mech;
    if (sasl_mech_parse(c->arg, name_len, &mech) < 0) {
        reply(s, "504 5.5.4 Unknown mechanism; use PLAIN or LOGIN");
        count_error(s);
        return;
    }
    sasl_begin(&s->sasl, mech);
    if (sp != NULL) {
        auth_step(s, sp + 1, c->arg_len - name_len - 1);
        return;
    }
    s->state = ST_AUTH;
    reply(s, "334 %s", sasl_first_challenge(mech));
}

void smtp_session_auth_done(struct smtp_session *s, int rc, int64_t user_id)
{
    char user[SASL_FIELD_MAX * 4 + 3];
    s->busy = false;
    /* Logged also when the session has closed meanwhile: fail2ban reads it. */
    log_info("smtp session=%s ip=%s event=login user=%s result=%s", s->cfg.session_id,
             s->cfg.peer_ip, log_value(user, sizeof(user), s->user, strlen(s->user)),
             rc > 0 ? "ok" : rc == -EAGAIN ? "locked" : "failed");
    if (s->state == ST_CLOSED)
        return; /* the goodbye went out already: no answer follows it */
    s->state = ST_READY;
    if (rc > 0) {
        s->user_id = user_id;
        reply(s, "235 2.7.0 Authentication successful");
        return;
    }
    s->user[0] = '\0';
    if (rc == -EAGAIN) {
        reply(s, "454 4.7.0 Too many failed logins from your address, try again later");
        return;
    }
    reply(s, "535 5.7.8 Authentication credentials invalid");
    count_error(s);
}

/* --- the rest ----------------------------------------------------------- */

static void cmd_starttls(struct smtp_session *s, const struct smtp_command *c)
{
    if (s->tls || !s->cfg.tls_available || s->cfg.role == SMTP_ROLE_SUBMISSIONS) {
        reply(s, "502 5.5.1 STARTTLS not available");
        return;
    }
    if (c->arg_len > 0) {
        reply(s, "501 5.5.4 STARTTLS takes no argument");
        return;
    }
    reply(s, "220 2.0.0 Ready to start TLS");
    s->action = SMTP_ACT_STARTTLS;
}

static void cmd_rset(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    tx_reset(s);
    reply(s, "250 2.0.0 Ok");
}

static void cmd_noop(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    tx_reset(s);
    close_with(s, "221 2.0.0 Bye");
}

static void cmd_help(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    reply(s, "214-2.0.0 kotak speaks EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY");
    reply(s, "214 2.0.0 STARTTLS AUTH; see RFC 5321");
}

static void cmd_vrfy(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    /* RFC 5321 3.5.3: 252 says neither yes nor no, so no user list leaks. */
    reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_not_implemented(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    reply(s, "502 5.5.1 Command not implemented");
}

static void cmd_unknown(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    reply(s, "500 5.5.2 Command unrecognized");
    count_error(s);
}

static void cmd_ehlo(struct smtp_session *s, const struct smtp_command *c)
{
    cmd_helo(s, c, true);
}

static void cmd_helo_only(struct smtp_session *s, const struct smtp_command *c)
{
    cmd_helo(s, c, false);
}

struct smtp_cmd_def {
    enum smtp_verb verb;
    unsigned states;
    const char *out_of_order; /* the 503 text */
    void (*run)(struct smtp_session *s, const struct smtp_command *c);
    bool junk; /* moves no mail: past junk_commands, each one is an error */
};

static const struct smtp_cmd_def smtp_cmds[] = {
    {SMTP_CMD_EHLO, ST_ANY, NULL, cmd_ehlo, false},
    {SMTP_CMD_HELO, ST_ANY, NULL, cmd_helo_only, false},
    {SMTP_CMD_MAIL, ST_READY, "503 5.5.1 Send EHLO first, or finish this transaction", cmd_mail,
     false},
    {SMTP_CMD_RCPT, ST_MAIL | ST_RCPT, "503 5.5.1 Send MAIL first", cmd_rcpt, false},
    {SMTP_CMD_DATA, ST_MAIL | ST_RCPT, "503 5.5.1 Send MAIL and RCPT first", cmd_data, false},
    {SMTP_CMD_RSET, ST_ANY, NULL, cmd_rset, true},
    {SMTP_CMD_NOOP, ST_ANY, NULL, cmd_noop, true},
    {SMTP_CMD_QUIT, ST_ANY, NULL, cmd_quit, false},
    {SMTP_CMD_HELP, ST_ANY, NULL, cmd_help, true},
    {SMTP_CMD_VRFY, ST_ANY, NULL, cmd_vrfy, true},
    {SMTP_CMD_EXPN, ST_ANY, NULL, cmd_not_implemented, false},
    {SMTP_CMD_BDAT, ST_ANY, NULL, cmd_not_implemented, false},
    {SMTP_CMD_STARTTLS, ST_FRESH | ST_READY, "503 5.5.1 STARTTLS is not allowed inside a transaction",
     cmd_starttls, false},
    {SMTP_CMD_AUTH, ST_READY, "503 5.5.1 Send EHLO first, and AUTH outside a transaction",
     cmd_auth, false},
    {SMTP_CMD_UNKNOWN, ST_ANY, NULL, cmd_unknown, false},
};

static void run_line(struct smtp_session *s, const char *line, size_t len, bool more_sent)
{
    watch_line(s, line, len, more_sent);
    if (s->state == ST_AUTH) {
        auth_step(s, line, len);
        return;
    }
    if (looks_like_http(line, len)) {
        close_with(s, "421 4.7.0 This is a mail server; closing the connection");
        return;
    }
    struct smtp_command c;
    smtp_command_parse(line, len, &c);
    if (c.verb != SMTP_CMD_AUTH && len + 2 > s->cfg.line_max) {
        reply(s, "500 5.5.0 Line too long");
        count_error(s);
        return;
    }
    for (size_t i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++) {
        const struct smtp_cmd_def *d = &smtp_cmds[i];
        if (d->verb != c.verb)
            continue;
        if (!(d->states & s->state)) {
            reply(s, "%s", d->out_of_order ? d->out_of_order : "503 5.5.1 Bad sequence of commands");
            count_error(s);
            return;
        }
        d->run(s, &c);
        if (d->junk && ++s->junk > s->cfg.junk_commands)
            count_error(s); /* a NOOP now and then must not hold a slot for ever */
        return;
    }
}

static void parse_error(struct smtp_session *s, int err)
{
    if (s->state == ST_AUTH) {
        sasl_clear(&s->sasl);
        s->state = ST_READY;
    }
    switch (-err) {
    case SMTP_PERR_LINE_TOO_LONG:
        reply(s, "500 5.5.0 Line too long");
        break;
    case SMTP_PERR_NUL:
        reply(s, "500 5.5.2 NUL character not allowed");
        break;
    default:
        reply(s, "500 5.5.2 Bare CR or LF not allowed; end lines with CRLF");
        break;
    }
    count_error(s);
}

void smtp_session_feed(struct smtp_session *s, const char *buf, size_t len, size_t *consumed_r)
{
    size_t done = 0;
    while (done < len && !s->busy && s->action == SMTP_ACT_NONE && s->state != ST_CLOSED &&
           s->out.len < SMTP_OUT_HIGH) {
        struct smtp_event ev;
        size_t used;
        int rc = smtp_parser_next(&s->parser, buf + done, len - done, &used, &ev);
        done += used;
        if (rc < 0) {
            parse_error(s, rc);
            continue;
        }
        if (rc == 0) {
            if (used == 0)
                break;
            continue;
        }
        switch (ev.type) {
        case SMTP_EV_LINE:
            run_line(s, ev.data, ev.len, done < len);
            break;
        case SMTP_EV_DATA:
            data_chunk(s, ev.data, ev.len);
            break;
        case SMTP_EV_DATA_END:
            data_end(s, ev.flags);
            break;
        }
    }
    *consumed_r = done;
}

/* --- life cycle --------------------------------------------------------- */

struct smtp_session *smtp_session_new(const struct smtp_session_config *cfg,
                                      const struct smtp_ops *ops, void *ctx)
{
    struct smtp_session *s = xcalloc(1, sizeof(*s));
    s->cfg = *cfg;
    if (s->cfg.line_max < 512)
        s->cfg.line_max = 512;
    if (s->cfg.text_max < 1000)
        s->cfg.text_max = 1000;
    if (s->cfg.recipients < 100)
        s->cfg.recipients = 100;
    if (s->cfg.bad_commands == 0)
        s->cfg.bad_commands = 10;
    if (s->cfg.junk_commands == 0)
        s->cfg.junk_commands = 100;
    if (s->cfg.hard_errors == 0)
        s->cfg.hard_errors = 20;
    s->ops = ops;
    s->ctx = ctx;
    s->state = ST_FRESH;
    smtp_parser_init(&s->parser, SMTP_PARSER_LINE_MAX, s->cfg.text_max);
    s->parser.lf_ends_line = !s->cfg.bare_lf_reject;
    buf_init(&s->out, SMTP_OUT_MAX);
    return s;
}

void smtp_session_free(struct smtp_session **sp)
{
    struct smtp_session *s = *sp;
    if (s == NULL)
        return;
    tx_free(s);
    sasl_clear(&s->sasl);
    buf_free(&s->out);
    free(s);
    *sp = NULL;
}

void smtp_session_greet(struct smtp_session *s)
{
    reply(s, "220 %s ESMTP kotak", s->cfg.hostname);
}

struct buf *smtp_session_output(struct smtp_session *s)
{
    return &s->out;
}

enum smtp_action smtp_session_action(struct smtp_session *s)
{
    enum smtp_action a = s->action;
    if (a == SMTP_ACT_STARTTLS)
        s->action = SMTP_ACT_NONE;
    return a;
}

bool smtp_session_busy(const struct smtp_session *s)
{
    return s->busy;
}

void smtp_session_tls_started(struct smtp_session *s, const char *version, const char *cipher,
                              const char *cert)
{
    /* RFC 3207 4.2: forget everything learned before TLS. */
    tx_reset(s);
    sasl_clear(&s->sasl);
    s->tls = true;
    log_info("smtp session=%s event=tls version=%s cipher=%s", s->cfg.session_id, version, cipher);
    snprintf(s->tls_desc, sizeof(s->tls_desc), "%s %s", version, cipher);
    if (watched(s)) {
        char text[WATCH_TEXT_MAX + 1];
        watch(s, WATCH_TLS, text, watch_tls_text(version, cipher, cert, text, sizeof(text)));
    }
    s->helo[0] = '\0';
    s->esmtp = false;
    s->user_id = 0;
    s->user[0] = '\0';
    s->state = ST_FRESH;
    smtp_parser_init(&s->parser, SMTP_PARSER_LINE_MAX, s->cfg.text_max);
    s->parser.lf_ends_line = !s->cfg.bare_lf_reject;
}

void smtp_session_timeout(struct smtp_session *s)
{
    /* A commit or a password check under way is our wait, not the client's:
     * its answer comes first, and the client's idle time starts after it. */
    if (s->busy)
        return;
    tx_reset(s);
    close_with(s, "421 4.4.2 Idle for too long, closing the connection");
}

void smtp_session_shutdown(struct smtp_session *s)
{
    if (s->state != ST_CLOSED)
        close_with(s, "421 4.3.2 Server shutting down, try again later");
}

bool smtp_session_engaged(const struct smtp_session *s)
{
    /* Not MAIL alone: anyone may say MAIL FROM:<> on port 25 and wait. */
    return s->user_id != 0 || s->state == ST_DATA || s->busy;
}
