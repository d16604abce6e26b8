/*
 * test_smtp_session.c — the SMTP state machine (smtpd/smtp_session.h) in
 * conversations, OpenSMTPD's smtpscript style: each step sends bytes (or
 * plays the glue: the store's answer, the login check's answer, TLS up, a
 * timeout) and names the reply lines it expects, by prefix, one per line.
 *
 * The world is a fake store behind struct smtp_ops: the domain example.test
 * has users alice (id 1) and bob (id 2), the alias sales@ for both, fwd@
 * that only forwards to another domain, and dbfail@ whose look-up fails;
 * every other domain is not local. The spool is a buffer; deliver() records
 * the transaction and the spooled bytes; auth() records the login for the
 * test to answer with smtp_session_auth_done.
 *
 * Each conversation runs twice, all bytes of a step in one feed and then one
 * byte per feed (keeping what was not consumed, as the glue does), and both
 * runs must write the same replies. Every reply line is also checked for its
 * enhanced status code (RFC 2034, RFC 3463).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "buf.h"
#include "headers.h"
#include "sasl.h"
#include "smtp_session.h"
#include "store.h"
#include "tap.h"
#include "util.h"

#define HOST "mx.example.test"
#define PEER "192.0.2.1"
#define NOW 1700000000
#define DATE "Tue, 14 Nov 2023 22:13:20 +0000"
#define TLS_VERSION "TLSv1.3"
#define TLS_CIPHER "TLS_AES_128_GCM_SHA256"

/* AUTH payloads: the base64 of what the comment says. */
#define PLAIN_ALICE "AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=" /* \0alice@example.test\0secret */
/* bob@example.test\0alice@example.test\0secret: alice acting as bob */
#define PLAIN_AS_BOB "Ym9iQGV4YW1wbGUudGVzdABhbGljZUBleGFtcGxlLnRlc3QAc2VjcmV0"
#define B64_ALICE "YWxpY2VAZXhhbXBsZS50ZXN0" /* alice@example.test */
#define B64_SECRET "c2VjcmV0"                /* secret */
#define B64_USERNAME "VXNlcm5hbWU6"          /* Username: */
#define B64_PASSWORD "UGFzc3dvcmQ6"          /* Password: */

/* --- the fake world ----------------------------------------------------- */

struct fake {
    /* Switches a conversation sets. */
    int begin_rc;         /* what spool_begin returns */
    int write_fail_after; /* spool_writes that work before write_rc; -1: all work */
    int write_rc;
    /* What happened. */
    struct buf spool;
    bool spooling;
    int begins, writes, aborts, delivers, auths;
    char from[ADDR_TEXT_SIZE + 2];
    int64_t ids[8];
    size_t n_ids, n_rcpt_cmds;
    char remote[4][ADDR_TEXT_SIZE]; /* recipients at other servers, as queued */
    char orcpt[4][ADDR_TEXT_SIZE];
    unsigned notify[4];
    size_t n_remote;
    enum store_ret ret;
    char envid[128];
    char *message;      /* the spool when deliver() was called, NUL-terminated */
    char *messages[16]; /* ... and each one delivered, in order */
    size_t n_messages;
    char user[SASL_FIELD_MAX + 1], password[SASL_FIELD_MAX + 1];
};

static void rcpts_add(struct store_rcpts *r, int64_t id)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->user_ids[i] == id)
            return;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 4;
        r->user_ids = xrealloc(r->user_ids, r->cap * sizeof(*r->user_ids));
    }
    r->user_ids[r->n++] = id;
}

/* store_resolve's contract, over a directory of four names. */
static void fake_rcpts_free(void *ctx, struct store_rcpts *r)
{
    (void)ctx;
    store_rcpts_free(r);
}

static int fake_resolve(void *ctx, const struct addr *rcpt, struct store_rcpts *r)
{
    (void)ctx;
    char local[ADDR_LOCAL_MAX + 1], domain[ADDR_DOMAIN_MAX + 1];
    snprintf(local, sizeof(local), "%s", rcpt->local);
    snprintf(domain, sizeof(domain), "%s", rcpt->domain);
    addr_lower(local);
    addr_lower(domain);
    if (strcmp(domain, "example.test") != 0)
        return -KOTAK_ENODOMAIN;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            size_t n = addr_local_base_len(local);
            if (local[n] == '\0')
                break;
            local[n] = '\0';
        }
        if (strcmp(local, "alice") == 0) {
            rcpts_add(r, 1);
            return 1;
        }
        if (strcmp(local, "bob") == 0) {
            rcpts_add(r, 2);
            return 1;
        }
        if (strcmp(local, "sales") == 0) {
            rcpts_add(r, 1);
            rcpts_add(r, 2);
            return 1;
        }
        if (strcmp(local, "fwd") == 0) {
            /* an alias that forwards to another server */
            r->remote = xrealloc(r->remote, (r->n_remote + 1) * sizeof(*r->remote));
            r->remote[r->n_remote++] = xstrdup("fwd@elsewhere.test");
            return 1;
        }
        if (strcmp(local, "dbfail") == 0)
            return -KOTAK_ESTORE;
    }
    return 0;
}

static int fake_spool_begin(void *ctx)
{
    struct fake *f = ctx;
    f->begins++;
    if (f->begin_rc < 0)
        return f->begin_rc;
    buf_reset(&f->spool);
    f->spooling = true;
    return 0;
}

static int fake_spool_write(void *ctx, const void *p, size_t n)
{
    struct fake *f = ctx;
    if (!f->spooling)
        return -EBADF; /* a write without spool_begin: the test sees it in the replies */
    if (f->write_fail_after >= 0 && f->writes >= f->write_fail_after)
        return f->write_rc;
    f->writes++;
    return buf_append(&f->spool, p, n);
}

static void fake_spool_abort(void *ctx)
{
    struct fake *f = ctx;
    f->aborts++;
    f->spooling = false;
}

static void fake_deliver(void *ctx, const struct smtp_tx *tx)
{
    struct fake *f = ctx;
    f->delivers++;
    snprintf(f->from, sizeof(f->from), "%s", tx->from);
    f->n_ids = 0;
    for (size_t i = 0; i < tx->rcpts.n && i < 8; i++)
        f->ids[f->n_ids++] = tx->rcpts.user_ids[i];
    f->n_rcpt_cmds = tx->n_rcpt_cmds;
    f->n_remote = 0;
    for (size_t i = 0; i < tx->n_remote && i < 4; i++, f->n_remote++) {
        snprintf(f->remote[i], sizeof(f->remote[i]), "%s", tx->remote[i].address);
        snprintf(f->orcpt[i], sizeof(f->orcpt[i]), "%s",
                 tx->remote[i].orcpt ? tx->remote[i].orcpt : "");
        f->notify[i] = tx->remote[i].notify;
    }
    f->ret = tx->ret;
    snprintf(f->envid, sizeof(f->envid), "%s", tx->envid ? tx->envid : "");
    free(f->message);
    f->message = xstrndup((const char *)f->spool.data, f->spool.len);
    if (f->n_messages < sizeof(f->messages) / sizeof(f->messages[0]))
        f->messages[f->n_messages++] = xstrndup((const char *)f->spool.data, f->spool.len);
    f->spooling = false; /* the glue hands the spool to the store */
}

static void fake_auth(void *ctx, const char *user, const char *password)
{
    struct fake *f = ctx;
    f->auths++;
    snprintf(f->user, sizeof(f->user), "%s", user);
    snprintf(f->password, sizeof(f->password), "%s", password);
}

static time_t clock_ahead; /* seconds past NOW; only the data-rate test moves it */

static time_t fake_now(void *ctx)
{
    (void)ctx;
    return NOW + clock_ahead;
}

/* Two SRS addresses at example.test: one that maps back, one made up. */
static int fake_srs_reverse(void *ctx, const struct addr *rcpt, char *original)
{
    (void)ctx;
    if (strcasecmp(rcpt->domain, "example.test") != 0 || strncasecmp(rcpt->local, "SRS0=", 5) != 0)
        return 0;
    if (strcmp(rcpt->local, "SRS0=good") != 0)
        return -EACCES;
    snprintf(original, ADDR_TEXT_SIZE, "orig@remote.test");
    return 1;
}

static const struct smtp_ops fake_ops = {
    .resolve = fake_resolve,
    .rcpts_free = fake_rcpts_free,
    .spool_begin = fake_spool_begin,
    .spool_write = fake_spool_write,
    .spool_abort = fake_spool_abort,
    .deliver = fake_deliver,
    .auth = fake_auth,
    .now = fake_now,
    .srs_reverse = fake_srs_reverse,
};

static bool message_has(const struct fake *f, const char *needle)
{
    return f->message != NULL && strstr(f->message, needle) != NULL;
}

static bool message_ends_with(const struct fake *f, const char *tail)
{
    size_t n = f->message ? strlen(f->message) : 0, t = strlen(tail);
    return f->message != NULL && n >= t && memcmp(f->message + n - t, tail, t) == 0;
}

/* --- conversations ------------------------------------------------------ */

enum op {
    END,
    SEND,       /* feed bytes; expect replies */
    GREET,      /* smtp_session_greet */
    STORE_DONE, /* smtp_session_store_done(rc), then feed what waited */
    AUTH_DONE,  /* smtp_session_auth_done(rc, id), then feed what waited */
    TLS_UP,     /* drop unread input, smtp_session_tls_started */
    TIMEOUT,    /* smtp_session_timeout */
    SHUTDOWN,   /* smtp_session_shutdown */
    ACTION,     /* smtp_session_action() == rc */
    BUSY,       /* smtp_session_busy() == rc */
    PENDING,    /* the input not consumed yet is exactly send */
};

struct step {
    enum op op;
    const char *send;
    size_t len;
    const char *expect; /* reply prefixes, one per line, separated by '\n'; "" for none */
    long long rc;
    int64_t id;
};

/* clang-format off */
#define C(send, expect)      {SEND, send, sizeof(send) - 1, expect, 0, 0}
#define GREETING             {GREET, NULL, 0, "220 " HOST " ESMTP", 0, 0}
#define STORED(rc, expect)   {STORE_DONE, NULL, 0, expect, rc, 0}
#define AUTHED(rc, id, exp)  {AUTH_DONE, NULL, 0, exp, rc, id}
#define TLS                  {TLS_UP, NULL, 0, "", 0, 0}
#define TIMES_OUT(expect)    {TIMEOUT, NULL, 0, expect, 0, 0}
#define SHUTS_DOWN(expect)   {SHUTDOWN, NULL, 0, expect, 0, 0}
#define IS_ACTION(a)         {ACTION, NULL, 0, NULL, a, 0}
#define IS_BUSY(b)           {BUSY, NULL, 0, NULL, b, 0}
#define IS_PENDING(bytes)    {PENDING, bytes, sizeof(bytes) - 1, NULL, 0, 0}
#define THE_END              {END, NULL, 0, NULL, 0, 0}
/* clang-format on */

/* EHLO answers: the keywords kotak offers, in its order. */
#define EHLO_HEAD(size)                                                                            \
    "250-" HOST " greets client.test\n250-PIPELINING\n250-SIZE " size "\n250-8BITMIME\n"           \
    "250-SMTPUTF8\n"
#define EHLO_PLAIN EHLO_HEAD("10240") "250 ENHANCEDSTATUSCODES"
#define EHLO_STARTTLS EHLO_HEAD("10240") "250-STARTTLS\n250 ENHANCEDSTATUSCODES"
#define EHLO_AUTH EHLO_HEAD("10240") "250-AUTH PLAIN LOGIN\n250 ENHANCEDSTATUSCODES"
#define EHLO_STARTTLS_AUTH                                                                         \
    EHLO_HEAD("10240") "250-STARTTLS\n250-AUTH PLAIN LOGIN\n250 ENHANCEDSTATUSCODES"
/* Submission adds DSN (RFC 3461): its reports come from the queue. */
#define SUB_EHLO_PLAIN EHLO_HEAD("10240") "250-DSN\n250 ENHANCEDSTATUSCODES"
#define SUB_EHLO_STARTTLS EHLO_HEAD("10240") "250-STARTTLS\n250-DSN\n250 ENHANCEDSTATUSCODES"
#define SUB_EHLO_AUTH EHLO_HEAD("10240") "250-AUTH PLAIN LOGIN\n250-DSN\n250 ENHANCEDSTATUSCODES"
#define SUB_EHLO_STARTTLS_AUTH                                                                     \
    EHLO_HEAD("10240") "250-STARTTLS\n250-AUTH PLAIN LOGIN\n250-DSN\n250 ENHANCEDSTATUSCODES"

/* A transaction to alice, up to the 354. */
#define TO_ALICE(from)                                                                             \
    C("MAIL FROM:<" from ">\r\n", "250 2.1.0"),                                                    \
        C("RCPT TO:<alice@example.test>\r\n", "250 2.1.5"), C("DATA\r\n", "354 ")

struct conv {
    const char *name;
    enum smtp_role role;
    bool tls_available, peer_loopback;
    size_t message_size; /* 0: 10240 */
    unsigned bad_commands;
    bool bare_lf_reject; /* [limits] bare_newline = reject */
    int begin_rc;
    int write_rc;  /* non-zero: spool_write fails with it ... */
    int writes_ok; /* ... after this many writes worked */
    const struct step *steps;
    void (*check)(const struct fake *f, const char *tag);
};

/* 354 lines seen, and those with a status code, which RFC 2034 gives 3xx none. */
static int n_354, bad_354;

/*
 * Is this reply line well formed, with an enhanced status code that agrees
 * with its reply code? RFC 2034 section 3 and 4: every 2xx, 4xx and 5xx line
 * carries one, but the greeting and the answers to EHLO and HELO; 3xx replies
 * are not included (the class is 2, 4 or 5 only): 334 is a SASL challenge,
 * and 354 is counted apart (bad_354) so that one fault does not fail every
 * DATA step.
 */
static bool reply_line_ok(const char *l, size_t n)
{
    static const char *const keywords[] = {
        "PIPELINING", "SIZE ", "8BITMIME", "STARTTLS",
        "SMTPUTF8",   "AUTH ", "DSN",      "ENHANCEDSTATUSCODES"};
    if (n < 4 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' ||
        (l[3] != ' ' && l[3] != '-'))
        return false;
    const char *t = l + 4;
    size_t tn = n - 4;
    if (strncmp(l, "220 " HOST " ESMTP", strlen("220 " HOST " ESMTP")) == 0)
        return true;
    if (strncmp(l, "250", 3) == 0) {
        if (tn >= strlen(HOST) && strncmp(t, HOST, strlen(HOST)) == 0)
            return true;
        for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
            if (tn >= strlen(keywords[i]) && strncmp(t, keywords[i], strlen(keywords[i])) == 0)
                return true;
    }
    if (strncmp(l, "334", 3) == 0)
        return true;
    if (strncmp(l, "354", 3) == 0) {
        n_354++;
        if (tn >= 2 && t[0] >= '0' && t[0] <= '9' && t[1] == '.')
            bad_354++;
        return true;
    }
    /* [245]\.[0-9]{1,3}\.[0-9]{1,3} then a space, and the class of the reply. */
    size_t i = 0;
    if (tn < 6 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[0] != l[0] || t[1] != '.')
        return false;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;
        while (i < tn && t[i] >= '0' && t[i] <= '9' && d < 4) {
            i++;
            d++;
        }
        if (d < 1 || d > 3)
            return false;
        if (part == 0) {
            if (i >= tn || t[i] != '.')
                return false;
            i++;
        }
    }
    return i < tn && t[i] == ' ';
}

/* Shows bytes in a test name: CR, LF, NUL spelled out, long input cut. */
static void describe(char *out, size_t size, const char *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < size; i++) {
        if (i == 40) {
            o += (size_t)snprintf(out + o, size - o, "...(%zu)", n);
            break;
        }
        if (p[i] == '\r')
            o += (size_t)snprintf(out + o, size - o, "\\r");
        else if (p[i] == '\n')
            o += (size_t)snprintf(out + o, size - o, "\\n");
        else if ((unsigned char)p[i] < 0x20)
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", (unsigned char)p[i]);
        else
            out[o++] = p[i];
    }
    out[o < size ? o : size - 1] = '\0';
}

/* Compares the session's output with the expected prefixes, line by line. */
static void check_replies(const char *tag, size_t step, const char *what, const char *out,
                          size_t len, const char *expect)
{
    bool same = true;
    const char *e = expect;
    size_t pos = 0;
    while (pos < len || *e != '\0') {
        if (pos >= len || *e == '\0') {
            same = false;
            break;
        }
        const char *crlf = NULL;
        for (size_t i = pos; i + 1 < len; i++)
            if (out[i] == '\r' && out[i + 1] == '\n') {
                crlf = out + i;
                break;
            }
        if (crlf == NULL) {
            same = false; /* a reply not ended by CRLF */
            break;
        }
        const char *nl = strchr(e, '\n');
        size_t plen = nl ? (size_t)(nl - e) : strlen(e);
        size_t llen = (size_t)(crlf - (out + pos));
        if (llen < plen || memcmp(out + pos, e, plen) != 0) {
            same = false;
            break;
        }
        pos += llen + 2;
        e += plen + (nl ? 1 : 0);
        if (nl && *e == '\0')
            break; /* a trailing '\n' in expect */
    }
    ok(same, "%s: step %zu (%s): replies", tag, step, what);
    if (!same) {
        printf("#   got:  ");
        for (size_t i = 0; i < len; i++) {
            if (out[i] == '\n')
                printf("\n#         ");
            else if (out[i] != '\r')
                putchar(out[i]);
        }
        printf("\n#   want: %s\n", expect);
    }
    /* Every reply line carries its enhanced status code. */
    bool codes = true;
    for (size_t start = 0, i = 0; i + 1 < len; i++) {
        if (out[i] == '\r' && out[i + 1] == '\n') {
            if (!reply_line_ok(out + start, i - start)) {
                codes = false;
                printf("# bad status code: %.*s\n", (int)(i - start), out + start);
            }
            start = i + 2;
        }
    }
    if (len > 0)
        ok(codes, "%s: step %zu (%s): enhanced status codes", tag, step, what);
}

static void pump(struct smtp_session *s, struct buf *pending)
{
    size_t used = 0;
    smtp_session_feed(s, (const char *)pending->data, pending->len, &used);
    if (used > pending->len) {
        ok(0, "feed consumed %zu of %zu bytes", used, pending->len);
        used = pending->len;
    }
    buf_consume(pending, used);
}

enum mode { WHOLE, TRICKLE };

/* Runs one conversation; leaves the replies in transcript and the world in f. */
static void run(const struct conv *c, enum mode mode, struct fake *f, struct buf *transcript)
{
    const char *tag_mode = mode == WHOLE ? "whole" : "trickle";
    char tag[160];
    snprintf(tag, sizeof(tag), "%s [%s]", c->name, tag_mode);

    memset(f, 0, sizeof(*f));
    buf_init(&f->spool, 0);
    f->begin_rc = c->begin_rc;
    f->write_fail_after = c->write_rc ? c->writes_ok : -1;
    f->write_rc = c->write_rc;

    struct smtp_session_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.role = c->role;
    cfg.hostname = HOST;
    cfg.tls_available = c->tls_available;
    cfg.peer_loopback = c->peer_loopback;
    snprintf(cfg.peer_ip, sizeof(cfg.peer_ip), "%s", PEER);
    snprintf(cfg.session_id, sizeof(cfg.session_id), "S1");
    cfg.message_size = c->message_size ? c->message_size : 10240;
    cfg.recipients = 100;
    cfg.line_max = 512;
    cfg.text_max = 1000;
    cfg.bad_commands = c->bad_commands;
    cfg.bare_lf_reject = c->bare_lf_reject;
    cfg.msgid_random = 0x0123456789abcdefULL;

    struct smtp_session *s = smtp_session_new(&cfg, &fake_ops, f);
    struct buf pending;
    buf_init(&pending, 0);
    for (size_t i = 0; c->steps[i].op != END; i++) {
        const struct step *st = &c->steps[i];
        char what[96] = "";
        bool replies = true;
        switch (st->op) {
        case SEND:
            describe(what, sizeof(what), st->send, st->len);
            if (mode == WHOLE) {
                buf_append(&pending, st->send, st->len);
                pump(s, &pending);
            } else {
                for (size_t j = 0; j < st->len; j++) {
                    buf_append(&pending, st->send + j, 1);
                    pump(s, &pending);
                }
            }
            break;
        case GREET:
            snprintf(what, sizeof(what), "greeting");
            smtp_session_greet(s);
            break;
        case STORE_DONE:
            snprintf(what, sizeof(what), "store_done(%lld)", st->rc);
            smtp_session_store_done(s, (int)st->rc);
            pump(s, &pending);
            break;
        case AUTH_DONE:
            snprintf(what, sizeof(what), "auth_done(%lld, %lld)", st->rc, (long long)st->id);
            smtp_session_auth_done(s, (int)st->rc, st->id);
            pump(s, &pending);
            break;
        case TLS_UP:
            snprintf(what, sizeof(what), "tls_started");
            buf_reset(&pending); /* RFC 3207 4.2: nothing read before TLS counts */
            smtp_session_tls_started(s, TLS_VERSION, TLS_CIPHER, "mail.example.test");
            break;
        case TIMEOUT:
            snprintf(what, sizeof(what), "timeout");
            smtp_session_timeout(s);
            break;
        case SHUTDOWN:
            snprintf(what, sizeof(what), "shutdown");
            smtp_session_shutdown(s);
            break;
        case ACTION:
            is_int(smtp_session_action(s), st->rc, "%s: step %zu: action is %lld", tag, i, st->rc);
            replies = false;
            break;
        case BUSY:
            is_int(smtp_session_busy(s), st->rc, "%s: step %zu: busy is %lld", tag, i, st->rc);
            replies = false;
            break;
        case PENDING: {
            char want[96], got[96];
            describe(want, sizeof(want), st->send, st->len);
            describe(got, sizeof(got), (const char *)pending.data, pending.len);
            ok(pending.len == st->len && memcmp(pending.data, st->send, st->len) == 0,
               "%s: step %zu: unconsumed input is \"%s\"", tag, i, want);
            if (pending.len != st->len || memcmp(pending.data, st->send, st->len) != 0)
                printf("#   got \"%s\"\n", got);
            replies = false;
            break;
        }
        case END:
            break;
        }
        if (replies) {
            struct buf *out = smtp_session_output(s);
            check_replies(tag, i, what, (const char *)out->data, out->len, st->expect);
            buf_append(transcript, out->data, out->len);
            buf_reset(out);
        }
    }
    smtp_session_free(&s);
    ok(s == NULL, "%s: smtp_session_free sets the pointer to NULL", tag);
    buf_free(&pending);
    if (c->check != NULL)
        c->check(f, tag);
}

static void fake_free(struct fake *f)
{
    buf_free(&f->spool);
    free(f->message);
    f->message = NULL;
    for (size_t i = 0; i < f->n_messages; i++)
        free(f->messages[i]);
    f->n_messages = 0;
}

static void converse(const struct conv *c)
{
    struct fake f[2];
    struct buf transcript[2];
    for (int m = WHOLE; m <= TRICKLE; m++) {
        buf_init(&transcript[m], 0);
        run(c, (enum mode)m, &f[m], &transcript[m]);
    }
    is_str(buf_cstr(&transcript[TRICKLE]), buf_cstr(&transcript[WHOLE]),
           "%s: one byte at a time gives the same replies", c->name);
    for (int m = WHOLE; m <= TRICKLE; m++) {
        fake_free(&f[m]);
        buf_free(&transcript[m]);
    }
}

/* --- MX: receiving mail ------------------------------------------------- */

static const struct step mx_message[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    C("MAIL FROM:<Sender@Remote.Test>\r\n", "250 2.1.0"),
    C("RCPT TO:<alice@example.test>\r\n", "250 2.1.5"),
    C("DATA\r\n", "354 "),
    C("Subject: hi\r\n\r\n..leading dot\r\n8bit \xc3\xa9\r\n.\r\n", ""),
    /* Delivery is asynchronous: input waits meanwhile. */
    IS_BUSY(1),
    C("NOOP\r\n", ""),
    IS_PENDING("NOOP\r\n"),
    STORED(0, "250 2.0.0 Ok: queued as S1.1\n250 2.0.0"),
    IS_BUSY(0),
    C("QUIT\r\n", "221 2.0.0"),
    IS_ACTION(SMTP_ACT_CLOSE),
    C("NOOP\r\n", ""),
    THE_END,
};

static void check_mx_message(const struct fake *f, const char *tag)
{
    is_int(f->delivers, 1, "%s: one delivery", tag);
    is_str(f->from, "Sender@remote.test", "%s: the sender, domain folded", tag);
    ok(f->n_ids == 1 && f->ids[0] == 1, "%s: delivered to alice only", tag);
    is_int(f->aborts, 0, "%s: the spool was not aborted", tag);
    ok(f->message && strncmp(f->message, "Return-Path: <Sender@remote.test>\r\n", 35) == 0,
       "%s: the spool starts with Return-Path", tag);
    ok(message_has(f, "\r\nReceived: from client.test ([" PEER "])\r\n"),
       "%s: Received: from the HELO name and address", tag);
    ok(message_has(f, "by " HOST " "), "%s: Received: by the hostname", tag);
    ok(message_has(f, " with ESMTP id S1.1"), "%s: Received: with ESMTP", tag);
    ok(message_has(f, "for <alice@example.test>"), "%s: Received: for the one recipient", tag);
    ok(message_has(f, DATE), "%s: Received: the date", tag);
    ok(message_ends_with(f, ";\r\n\t" DATE "\r\nSubject: hi\r\n\r\n.leading dot\r\n8bit "
                            "\xc3\xa9\r\n"),
       "%s: then the body, unstuffed, byte for byte", tag);
    is_str(f->message,
           "Return-Path: <Sender@remote.test>\r\n"
           "Received: from client.test ([" PEER "])\r\n"
           "\tby " HOST " (kotak) with ESMTP id S1.1\r\n"
           "\tfor <alice@example.test>;\r\n"
           "\t" DATE "\r\n"
           "Subject: hi\r\n\r\n.leading dot\r\n8bit \xc3\xa9\r\n",
           "%s: the whole spool", tag);
}

static const struct step mx_pipelining[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    C("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
      "RCPT TO:<bob@example.test>\r\nDATA\r\n",
      "250 2.1.0\n250 2.1.5\n250 2.1.5\n354 "),
    C("one\r\ntwo\r\n.\r\nQUIT\r\n", ""),
    IS_BUSY(1),
    IS_PENDING("QUIT\r\n"),
    STORED(0, "250 2.0.0\n221 2.0.0"),
    IS_ACTION(SMTP_ACT_CLOSE),
    THE_END,
};

static void check_two_rcpts(const struct fake *f, const char *tag)
{
    is_int(f->delivers, 1, "%s: one delivery", tag);
    ok(f->n_ids == 2 && f->ids[0] == 1 && f->ids[1] == 2, "%s: to alice and bob", tag);
    ok(f->message && !message_has(f, "\tfor <"), "%s: no \"for\" with two recipients", tag);
    ok(message_ends_with(f, DATE "\r\none\r\ntwo\r\n"), "%s: the body", tag);
}

static const struct step mx_one_write[] = {
    GREETING,
    C("EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
      "RCPT TO:<bob@example.test>\r\nDATA\r\none\r\ntwo\r\n.\r\nQUIT\r\n",
      EHLO_PLAIN "\n250 2.1.0\n250 2.1.5\n250 2.1.5\n354 "),
    STORED(0, "250 2.0.0\n221 2.0.0"),
    THE_END,
};

static const struct step mx_addresses[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    C("MAIL FROM:<a>\r\n", "501 5.1.7"),
    C("MAIL FROM:a@remote.test\r\n", "501 5.5.2"),
    C("MAIL FROM:<a@remote.test> X=\r\n", "501 5.5.4"),
    C("MAIL FROM:<\xc3\xa9t\xc3\xa9@remote.test>\r\n", "553 5.6.7"),
    C("MAIL FROM:<>\r\n", "250 2.1.0"),
    C("RCPT TO:<nobody@example.test>\r\n", "550 5.1.1"),
    C("RCPT TO:<alice@elsewhere.test>\r\n", "550 5.7.1"),
    C("RCPT TO:<dbfail@example.test>\r\n", "451 4.3.0"),
    C("DATA\r\n", "554 5.5.1"),
    C("RCPT TO:alice@example.test\r\n", "501 5.5.2"),
    C("RCPT TO:<>\r\n", "501 5.5.2"),
    C("RCPT TO:<alice>\r\n", "501 5.1.3"),
    C("RCPT TO:<alice@example.test> NOTIFY=NEVER\r\n", "555 5.5.4"),
    C("RCPT TO:<\xc3\xa9@example.test>\r\n", "553 5.6.7"),
    C("RCPT TO:<sales@example.test>\r\n", "250 2.1.5"),
    C("RCPT TO:<ALICE@Example.TEST>\r\n", "250 2.1.5"),
    C("RCPT TO:<bob+lists@example.test>\r\n", "250 2.1.5"),
    C("RCPT TO:<alice@example.test>\r\n", "250 2.1.5"),
    C("DATA\r\n", "354 "),
    C("x\r\n.\r\n", ""),
    STORED(0, "250 2.0.0"),
    THE_END,
};

static void check_addresses(const struct fake *f, const char *tag)
{
    is_int(f->delivers, 1, "%s: one delivery", tag);
    is_str(f->from, "", "%s: the null reverse-path", tag);
    ok(message_has(f, "Return-Path: <>\r\n"), "%s: Return-Path: <>", tag);
    ok(f->n_ids == 2 && f->ids[0] == 1 && f->ids[1] == 2,
       "%s: the alias and the users are stored once each", tag);
    is_int(f->n_rcpt_cmds, 4, "%s: four RCPT accepted", tag);
    ok(f->message && !message_has(f, "\tfor <"), "%s: no \"for\" with several RCPT", tag);
}

static const struct step mx_plus[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    /* RFC 5321 4.1.2: a source route is accepted and ignored. */
    C("MAIL FROM:<@relay.test,@other.test:s@remote.test>\r\n", "250 2.1.0"),
    C("RCPT TO:<alice+news@example.test>\r\n", "250 2.1.5"),
    C("DATA\r\nx\r\n.\r\n", "354 "),
    STORED(0, "250 2.0.0"),
    THE_END,
};

static void check_plus(const struct fake *f, const char *tag)
{
    ok(f->n_ids == 1 && f->ids[0] == 1, "%s: alice+news goes to alice", tag);
    ok(message_has(f, "for <alice+news@example.test>"), "%s: for the address as given", tag);
    is_str(f->from, "s@remote.test", "%s: the source route is dropped", tag);
}

/* An alias that forwards elsewhere: the MX takes it for the queue, once,
 * beside local users. */
static const struct step mx_forward[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    C("MAIL FROM:<s@remote.test>\r\n", "250 2.1.0"),
    C("RCPT TO:<fwd@example.test>\r\n", "250 2.1.5"),
    C("RCPT TO:<fwd@example.test>\r\n", "250 2.1.5"),
    C("RCPT TO:<alice@example.test>\r\n", "250 2.1.5"),
    C("RCPT TO:<carol@remote.test>\r\n", "550 5.7.1"),
    C("DATA\r\n", "354 "),
    C("hi\r\n.\r\n", ""),
    STORED(0, "250 2.0.0"),
    THE_END,
};

static void check_forward(const struct fake *f, const char *tag)
{
    ok(f->n_ids == 1 && f->ids[0] == 1, "%s: alice gets her copy", tag);
    is_int(f->n_remote, 1, "%s: one copy for the queue", tag);
    is_str(f->remote[0], "fwd@elsewhere.test", "%s: to the alias's target", tag);
    is_str(f->orcpt[0], "fwd@example.test", "%s: ORCPT: the address the sender named", tag);
}

/* A bounce to an SRS address of ours goes back to the original sender;
 * nothing else may use one, and a made-up one is refused. */
static const struct step mx_srs[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    C("MAIL FROM:<s@remote.test>\r\n", "250 2.1.0"),
    C("RCPT TO:<SRS0=good@example.test>\r\n", "550 5.7.1"),
    C("RSET\r\n", "250 2.0.0"),
    C("MAIL FROM:<>\r\n", "250 2.1.0"),
    C("RCPT TO:<SRS0=bad@example.test>\r\n", "550 5.1.1"),
    C("RCPT TO:<srs0=good@example.test>\r\n", "550 5.1.1"),
    C("RCPT TO:<SRS0=good@example.test>\r\n", "250 2.1.5"),
    C("DATA\r\n", "354 "),
    C("bounce\r\n.\r\n", ""),
    STORED(0, "250 2.0.0"),
    THE_END,
};

static void check_srs(const struct fake *f, const char *tag)
{
    is_int(f->n_ids, 0, "%s: no local copy", tag);
    is_int(f->n_remote, 1, "%s: one copy for the queue", tag);
    is_str(f->remote[0], "orig@remote.test", "%s: to the original sender", tag);
    is_str(f->orcpt[0], "SRS0=good@example.test", "%s: ORCPT: the SRS address", tag);
    is_str(f->from, "", "%s: from <>", tag);
}

static const struct step mx_sequence[] = {
    GREETING,
    C("MAIL FROM:<s@remote.test>\r\n", "503 5.5.1"),
    C("RCPT TO:<alice@example.test>\r\n", "503 5.5.1"),
    C("DATA\r\n", "503 5.5.1"),
    C("HELO\r\n", "501 5.5.4"),
    C("HELO bad<name>\r\n", "501 5.5.4"),
    C("EHLO two words\r\n", "501 5.5.4"),
    C("HELO client.test\r\n", "250 " HOST),
    C("MAIL FROM:<s@remote.test> SIZE=10\r\n", "555 5.5.4"),
    C("DATA\r\n", "503 5.5.1"),
    C("MAIL FROM:<s@remote.test>\r\n", "250 2.1.0"),
    C("MAIL FROM:<s@remote.test>\r\n", "503 5.5.1"),
    C("DATA\r\n", "554 5.5.1"),
    C("RCPT TO:<alice@example.test>\r\n", "250 2.1.5"),
    C("DATA now\r\n", "501 5.5.4"),
    C("DATA\r\n", "354 "),
    C("hi\r\n.\r\n", ""),
    STORED(0, "250 2.0.0"),
    /* EHLO inside a transaction ends it, as RSET would. */
    C("MAIL FROM:<s@remote.test>\r\n", "250 2.1.0"),
    C("RCPT TO:<alice@example.test>\r\n", "250 2.1.5"),
    C("EHLO client.test\r\n", EHLO_PLAIN),
    C("RCPT TO:<bob@example.test>\r\n", "503 5.5.1"),
    THE_END,
};

static void check_helo(const struct fake *f, const char *tag)
{
    ok(message_has(f, " with SMTP id S1.1"), "%s: Received: with SMTP after HELO", tag);
}

static const struct step mx_size[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_HEAD("100") "250 ENHANCEDSTATUSCODES"),
    C("MAIL FROM:<s@remote.test> SIZE=101\r\n", "552 5.3.4"),
    C("MAIL FROM:<s@remote.test> SIZE=abc\r\n", "501 5.5.4"),
    C("MAIL FROM:<s@remote.test> BODY=BINARYMIME\r\n", "501 5.5.4"),
    C("MAIL FROM:<s@remote.test> FOO=1\r\n", "555 5.5.4"),
    C("MAIL FROM:<s@remote.test> SIZE=100 BODY=8BITMIME\r\n", "250 2.1.0"),
    C("RCPT TO:<alice@example.test>\r\n", "250 2.1.5"),
    C("DATA\r\n", "354 "),
    /* 150 octets: read on to the final dot, then refuse once. */
    C("0123456789012345678901234567890123456789012345678\r\n"
      "0123456789012345678901234567890123456789012345678\r\n"
      "0123456789012345678901234567890123456789012345678\r\n",
      ""),
    C("MAIL FROM:<not@a.command>\r\n.\r\n", "552 5.3.4"),
    C("NOOP\r\n", "250 2.0.0"),
    /* Exactly 100 octets pass. */
    TO_ALICE("s@remote.test"),
    C("012345678901234567890123456789012345678901234567890123456789"
      "01234567890123456789012345678901234567\r\n.\r\n",
      ""),
    STORED(0, "250 2.0.0"),
    THE_END,
};

static void check_size(const struct fake *f, const char *tag)
{
    is_int(f->delivers, 1, "%s: only the message within the limit", tag);
    is_int(f->aborts, 1, "%s: the one too big was aborted", tag);
    ok(message_ends_with(f, "\r\n0123456789012345678901234567890123456789012345678901234567890"
                            "1234567890123456789012345678901234567\r\n"),
       "%s: the body", tag);
}

static const struct step mx_bare_eol[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    TO_ALICE("s@remote.test"),
    C("one\ntwo\r\n.\r\n", "550 5.6.0"),
    TO_ALICE("s@remote.test"),
    C("one\rtwo\r\n.\r\n", "550 5.6.0"),
    TO_ALICE("s@remote.test"),
    C("one\r\n.\nMAIL FROM:<e@remote.test>\r\n.\r\n", "550 5.6.0"),
    C("QUIT\r\n", "221 2.0.0"),
    THE_END,
};

static void check_refused(const struct fake *f, const char *tag)
{
    is_int(f->delivers, 0, "%s: nothing delivered", tag);
    is_int(f->aborts, f->begins, "%s: every spool aborted", tag);
}

static void check_nothing_delivered(const struct fake *f, const char *tag)
{
    is_int(f->delivers, 0, "%s: nothing delivered", tag);
}

/*
 * SMTP smuggling: "<LF>.<CRLF>" is not the end of the data, so what follows
 * is still the first message (refused for its bare LF at the real end), not
 * a second transaction.
 */
static const struct step mx_smuggling[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    TO_ALICE("s@remote.test"),
    C("hello\n.\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
      "smuggled\r\n.\r\n",
      "550 5.6.0"),
    C("QUIT\r\n", "221 2.0.0"),
    THE_END,
};

static const struct step mx_misc[] = {
    GREETING,
    C("NOOP\r\n", "250 2.0.0"),
    C("noop\r\n", "250 2.0.0"),
    C("VRFY alice\r\n", "252 2.5.0"),
    C("EXPN sales\r\n", "502 5.5.1"),
    C("HELP\r\n", "214-2.0.0\n214 2.0.0"),
    C("BDAT 3 LAST\r\n", "502 5.5.1"),
    C("FOO\r\n", "500 5.5.2"),
    C("MAILX FROM:<s@remote.test>\r\n", "500 5.5.2"),
    C("STARTTLS\r\n", "502 5.5.1"),
    C("EHLO client.test\r\n", EHLO_PLAIN),
    C("AUTH PLAIN " PLAIN_ALICE "\r\n", "502 5.5.1"),
    C("MAIL FROM:<s@remote.test>\r\n", "250 2.1.0"),
    C("RSET\r\n", "250 2.0.0"),
    C("RCPT TO:<alice@example.test>\r\n", "503 5.5.1"),
    C("RSET\r\n", "250 2.0.0"),
    C("NO\0OP\r\n", "500 5.5.2"),
    C("NOOP\n", "500 5.5.2"),
    C("NO\rOP\r\n", "500 5.5.2"),
    C("NOOP\r\n", "250 2.0.0"),
    C("QUIT\r\n", "221 2.0.0"),
    IS_ACTION(SMTP_ACT_CLOSE),
    THE_END,
};

static const struct step mx_bad_commands[] = {
    GREETING,
    C("FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n", "500 5.5.2\n500 5.5.2\n500 5.5.2\n421 4.7.0"),
    IS_ACTION(SMTP_ACT_CLOSE),
    IS_PENDING("NOOP\r\n"),
    THE_END,
};

/* A browser's form sent to the mail port: the request line ends the
 * session, so the form's body is never read as commands. */
static const struct step mx_http[] = {
    GREETING,
    C("POST /form HTTP/1.1\r\nHost: x\r\n\r\nMAIL FROM:<a@remote.test>\r\n", "421 4.7.0"),
    IS_ACTION(SMTP_ACT_CLOSE),
    IS_PENDING("Host: x\r\n\r\nMAIL FROM:<a@remote.test>\r\n"),
    THE_END,
};

static const struct step mx_store_results[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    TO_ALICE("s@remote.test"),
    C("x\r\n.\r\n", ""),
    STORED(-ENOSPC, "452 4.3.1"),
    TO_ALICE("s@remote.test"),
    C("x\r\n.\r\n", ""),
    STORED(-KOTAK_ESTORE, "451 4.3.0"),
    C("MAIL FROM:<\xc3\xa9@remote.test> SMTPUTF8\r\n", "250 2.1.0"),
    C("RCPT TO:<\xc3\xa9l\xc3\xa8ve@example.test>\r\n", "550 5.1.1"),
    C("RCPT TO:<alice@example.test>\r\n", "250 2.1.5"),
    C("DATA\r\n", "354 "),
    C("x\r\n.\r\n", ""),
    STORED(0, "250 2.0.0 Ok: queued as S1.3"),
    THE_END,
};

static void check_store_results(const struct fake *f, const char *tag)
{
    is_int(f->delivers, 3, "%s: three deliveries", tag);
    is_int(f->aborts, 0, "%s: the store, not the session, ends a delivered spool", tag);
    ok(message_has(f, " with UTF8SMTP id S1.3"), "%s: Received: with UTF8SMTP", tag);
    is_str(f->from, "\xc3\xa9@remote.test", "%s: a UTF-8 sender", tag);
}

static const struct step mx_spool_begin_fails[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    C("MAIL FROM:<s@remote.test>\r\n", "250 2.1.0"),
    C("RCPT TO:<alice@example.test>\r\n", "250 2.1.5"),
    C("DATA\r\n", "451 4.3.0"),
    C("MAIL FROM:<s@remote.test>\r\n", "250 2.1.0"),
    THE_END,
};

static const struct step mx_spool_full_at_data[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    C("MAIL FROM:<s@remote.test>\r\n", "250 2.1.0"),
    C("RCPT TO:<alice@example.test>\r\n", "250 2.1.5"),
    C("DATA\r\n", "452 4.3.1"),
    C("RCPT TO:<alice@example.test>\r\n", "503 5.5.1"),
    THE_END,
};

static const struct step mx_spool_fails_in_body[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    TO_ALICE("s@remote.test"),
    C("line\r\nline\r\n.\r\n", "452 4.3.1"),
    C("NOOP\r\n", "250 2.0.0"),
    THE_END,
};

static const struct step mx_spool_io_error[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    TO_ALICE("s@remote.test"),
    C("line\r\n.\r\n", "451 4.3.0"),
    THE_END,
};

static const struct step mx_timeout[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    TO_ALICE("s@remote.test"),
    C("half a mess", ""),
    TIMES_OUT("421 4.4.2"),
    IS_ACTION(SMTP_ACT_CLOSE),
    THE_END,
};

static const struct step mx_shutdown[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    SHUTS_DOWN("421 4.3.2"),
    IS_ACTION(SMTP_ACT_CLOSE),
    SHUTS_DOWN(""),
    C("NOOP\r\n", ""),
    THE_END,
};

/* The session is freed in the middle of DATA: the spool is aborted. */
static const struct step mx_free_in_data[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    TO_ALICE("s@remote.test"),
    C("half a message\r\n", ""),
    THE_END,
};

static void check_aborted_once(const struct fake *f, const char *tag)
{
    is_int(f->delivers, 0, "%s: nothing delivered", tag);
    is_int(f->begins, 1, "%s: one spool", tag);
    is_int(f->aborts, 1, "%s: spool_abort called", tag);
}

/* --- STARTTLS ----------------------------------------------------------- */

static const struct step mx_starttls[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_STARTTLS),
    C("STARTTLS now\r\n", "501 5.5.4"),
    C("MAIL FROM:<s@remote.test>\r\n", "250 2.1.0"),
    C("STARTTLS\r\n", "503 5.5.1"),
    C("RSET\r\n", "250 2.0.0"),
    /* What follows STARTTLS in the same write is not a command. */
    C("STARTTLS\r\nMAIL FROM:<a@b.test>\r\n", "220 2.0.0"),
    IS_PENDING("MAIL FROM:<a@b.test>\r\n"),
    IS_ACTION(SMTP_ACT_STARTTLS),
    IS_ACTION(SMTP_ACT_NONE),
    TLS,
    C("MAIL FROM:<s@remote.test>\r\n", "503 5.5.1"),
    C("EHLO client.test\r\n", EHLO_PLAIN),
    C("STARTTLS\r\n", "502 5.5.1"),
    TO_ALICE("s@remote.test"),
    C("x\r\n.\r\n", ""),
    STORED(0, "250 2.0.0"),
    THE_END,
};

static void check_esmtps(const struct fake *f, const char *tag)
{
    ok(message_has(f, " with ESMTPS id "), "%s: Received: with ESMTPS", tag);
    ok(message_has(f, "(" TLS_VERSION " " TLS_CIPHER ")"), "%s: Received: the TLS version", tag);
}

/* AUTH is never offered on MX, with TLS or from loopback. */
static const struct step mx_no_auth[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_STARTTLS),
    C("STARTTLS\r\n", "220 2.0.0"),
    IS_ACTION(SMTP_ACT_STARTTLS),
    TLS,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    C("AUTH PLAIN " PLAIN_ALICE "\r\n", "502 5.5.1"),
    THE_END,
};

/* --- submission --------------------------------------------------------- */

static const struct step sub_starttls_auth[] = {
    GREETING,
    C("EHLO client.test\r\n", SUB_EHLO_STARTTLS),
    C("MAIL FROM:<alice@example.test>\r\n", "530 5.7.0"),
    C("AUTH PLAIN " PLAIN_ALICE "\r\n", "538 5.7.11"),
    C("STARTTLS\r\n", "220 2.0.0"),
    IS_ACTION(SMTP_ACT_STARTTLS),
    TLS,
    C("AUTH PLAIN " PLAIN_ALICE "\r\n", "503 5.5.1"),
    C("EHLO client.test\r\n", SUB_EHLO_AUTH),
    C("MAIL FROM:<alice@example.test>\r\n", "530 5.7.0"),
    C("AUTH PLAIN " PLAIN_ALICE "\r\nNOOP\r\n", ""),
    IS_BUSY(1),
    IS_PENDING("NOOP\r\n"),
    AUTHED(1, 1, "235 2.7.0\n250 2.0.0"),
    IS_BUSY(0),
    C("AUTH PLAIN " PLAIN_ALICE "\r\n", "503 5.5.1"),
    C("MAIL FROM:<bob@example.test>\r\n", "553 5.7.1"),
    C("MAIL FROM:<>\r\n", "553 5.7.1"),
    C("MAIL FROM:<alice@elsewhere.test>\r\n", "553 5.7.1"),
    C("MAIL FROM:<nobody@example.test>\r\n", "553 5.7.1"),
    C("MAIL FROM:<alice+list@example.test>\r\n", "250 2.1.0"),
    C("RSET\r\n", "250 2.0.0"),
    C("MAIL FROM:<sales@example.test> RET=FULL RET=HDRS\r\n", "501 5.5.4"),
    C("MAIL FROM:<sales@example.test> ENVID=a+0Db\r\n", "501 5.5.4"),
    C("MAIL FROM:<sales@example.test> ENVID=caf+C3+A9\r\n", "501 5.5.4"),
    C("MAIL FROM:<sales@example.test> RET=HDRS ENVID=abc+2Bdef\r\n", "250 2.1.0"),
    C("RCPT TO:<friend@elsewhere.test> NOTIFY=FAILURE,DELAY "
      "ORCPT=rfc822;Friend+40elsewhere.test\r\n",
      "250 2.1.5"),
    C("RCPT TO:<friend@ELSEWHERE.test>\r\n", "250 2.1.5"),
    C("RCPT TO:<x@[192.0.2.1]>\r\n", "550 5.1.2"),
    C("RCPT TO:<bob@example.test> NOTIFY=NEVER,SUCCESS\r\n", "501 5.5.4"),
    C("RCPT TO:<bob@example.test> ORCPT=x400;abc\r\n", "501 5.5.4"),
    C("RCPT TO:<bob@example.test> FOO=1\r\n", "555 5.5.4"),
    C("RCPT TO:<bob@example.test>\r\n", "250 2.1.5"),
    C("DATA\r\n", "354 "),
    C("hi bob\r\n.\r\n", ""),
    STORED(0, "250 2.0.0"),
    C("QUIT\r\n", "221 2.0.0"),
    THE_END,
};

static void check_sub_starttls_auth(const struct fake *f, const char *tag)
{
    is_int(f->auths, 1, "%s: one password check", tag);
    is_str(f->user, "alice@example.test", "%s: the user, decoded", tag);
    is_str(f->password, "secret", "%s: the password, decoded", tag);
    is_int(f->delivers, 1, "%s: one delivery", tag);
    is_str(f->from, "sales@example.test", "%s: from the user's alias", tag);
    ok(f->n_ids == 1 && f->ids[0] == 2, "%s: to bob", tag);
    ok(message_has(f, " with ESMTPSA id "), "%s: Received: with ESMTPSA", tag);
    is_int(f->n_remote, 1, "%s: one recipient at another server, once", tag);
    is_str(f->remote[0], "friend@elsewhere.test", "%s: queued as named", tag);
    is_str(f->orcpt[0], "Friend@elsewhere.test", "%s: its ORCPT, decoded", tag);
    is_int(f->notify[0], STORE_NOTIFY_FAILURE | STORE_NOTIFY_DELAY, "%s: its NOTIFY", tag);
    is_int(f->ret, STORE_RET_HDRS, "%s: RET", tag);
    is_str(f->envid, "abc+def", "%s: ENVID, decoded", tag);
}

static const struct step sub_loopback[] = {
    GREETING,
    C("AUTH PLAIN " PLAIN_ALICE "\r\n", "503 5.5.1"),
    C("EHLO client.test\r\n", SUB_EHLO_AUTH),
    C("AUTH CRAM-MD5\r\n", "504 5.5.4"),
    /* LOGIN in two steps, then cancelled. */
    C("AUTH LOGIN\r\n", "334 " B64_USERNAME),
    C("*\r\n", "501 5.0.0"),
    /* LOGIN in two steps; the password is wrong. */
    C("AUTH LOGIN\r\n", "334 " B64_USERNAME),
    C(B64_ALICE "\r\n", "334 " B64_PASSWORD),
    C(B64_SECRET "\r\n", ""),
    IS_BUSY(1),
    AUTHED(0, 0, "535 5.7.8"),
    /* PLAIN without an initial response; the address is locked out. */
    C("AUTH PLAIN\r\n", "334 "),
    C(PLAIN_ALICE "\r\n", ""),
    AUTHED(-EAGAIN, 0, "454 4.7.0"),
    C("AUTH PLAIN !!!!\r\n", "501 5.5.2"),
    /* Acting as another user is checked as a login of nobody: it waits for
     * the check, and so for the failure delay, like any other failure. */
    C("AUTH PLAIN " PLAIN_AS_BOB "\r\n", ""),
    IS_BUSY(1),
    AUTHED(0, 0, "535 5.7.8"),
    /* A bad line inside the exchange ends it. */
    C("AUTH PLAIN\r\n", "334 "),
    C("abc\n", "500 5.5.2"),
    C("NOOP\r\n", "250 2.0.0"),
    C("MAIL FROM:<alice@example.test>\r\n", "530 5.7.0"),
    /* LOGIN with the user name as initial response. */
    C("AUTH LOGIN " B64_ALICE "\r\n", "334 " B64_PASSWORD),
    C(B64_SECRET "\r\n", ""),
    AUTHED(1, 1, "235 2.7.0"),
    C("EHLO client.test\r\n", SUB_EHLO_PLAIN),
    C("MAIL FROM:<Alice@Example.Test>\r\n", "250 2.1.0"),
    C("RCPT TO:<bob@example.test>\r\n", "250 2.1.5"),
    C("DATA\r\n", "354 "),
    C("x\r\n.\r\n", ""),
    STORED(0, "250 2.0.0"),
    THE_END,
};

static void check_sub_loopback(const struct fake *f, const char *tag)
{
    is_int(f->auths, 4, "%s: four password checks (the proxy one as nobody; not the cancelled)", tag);
    is_str(f->user, "alice@example.test", "%s: the last user", tag);
    is_str(f->password, "secret", "%s: the last password", tag);
    ok(message_has(f, " with ESMTPA id "), "%s: Received: with ESMTPA", tag);
}

/* After STARTTLS, a login made before it is forgotten (RFC 3207 4.2). */
static const struct step sub_forget_auth[] = {
    GREETING,
    C("EHLO client.test\r\n", SUB_EHLO_STARTTLS_AUTH),
    C("AUTH PLAIN " PLAIN_ALICE "\r\n", ""),
    AUTHED(1, 1, "235 2.7.0"),
    C("STARTTLS\r\n", "220 2.0.0"),
    IS_ACTION(SMTP_ACT_STARTTLS),
    TLS,
    C("EHLO client.test\r\n", SUB_EHLO_AUTH),
    C("MAIL FROM:<alice@example.test>\r\n", "530 5.7.0"),
    THE_END,
};

/* Submissions: TLS from the first byte, no STARTTLS. */
static const struct step subs_session[] = {
    TLS,
    GREETING,
    C("EHLO client.test\r\n", SUB_EHLO_AUTH),
    C("STARTTLS\r\n", "502 5.5.1"),
    C("AUTH PLAIN " PLAIN_ALICE "\r\n", ""),
    AUTHED(1, 1, "235 2.7.0"),
    C("MAIL FROM:<alice@example.test> SMTPUTF8\r\n", "250 2.1.0"),
    C("RCPT TO:<bob@example.test>\r\n", "250 2.1.5"),
    C("DATA\r\n", "354 "),
    C("x\r\n.\r\n", ""),
    STORED(0, "250 2.0.0"),
    THE_END,
};

static void check_subs(const struct fake *f, const char *tag)
{
    ok(message_has(f, " with UTF8SMTPSA id "), "%s: Received: with UTF8SMTPSA", tag);
}

/* The submissions role never offers STARTTLS, even before its TLS is up. */
static const struct step subs_no_starttls[] = {
    GREETING,
    C("EHLO client.test\r\n", SUB_EHLO_PLAIN),
    C("STARTTLS\r\n", "502 5.5.1"),
    IS_ACTION(SMTP_ACT_NONE),
    THE_END,
};

/* Submission without TLS and not from loopback: no login at all. */
static const struct step sub_plaintext[] = {
    GREETING,
    C("EHLO client.test\r\n", SUB_EHLO_PLAIN),
    C("AUTH LOGIN\r\n", "538 5.7.11"),
    C("STARTTLS\r\n", "502 5.5.1"),
    C("MAIL FROM:<alice@example.test>\r\n", "530 5.7.0"),
    THE_END,
};

/* --- the header section: Date:, Message-ID:, the Received: limit --------- */

/* Logged in on submission from loopback, then a transaction up to the 354. */
#define SUB_LOGIN                                                                                  \
    GREETING, C("EHLO client.test\r\n", SUB_EHLO_AUTH), C("AUTH PLAIN " PLAIN_ALICE "\r\n", ""),   \
        AUTHED(1, 1, "235 2.7.0")
#define ALICE_TO_BOB                                                                               \
    C("MAIL FROM:<alice@example.test>\r\n", "250 2.1.0"),                                          \
        C("RCPT TO:<bob@example.test>\r\n", "250 2.1.5"), C("DATA\r\n", "354 ")
/* A message sent whole, and its answer. */
#define SUB_MESSAGE(data) ALICE_TO_BOB, C(data ".\r\n", ""), STORED(0, "250 2.0.0")

/* What submission adds: the date of fake_now, and transaction n's id. */
#define ADDED_DATE "Date: " DATE "\r\n"
#define ADDED_ID(n) "Message-ID: <1700000000.S1." #n ".0123456789abcdef@" HOST ">\r\n"

/* The message after the trace fields the session writes on top. */
static const char *after_trace(const char *m)
{
    const char *t = m ? strstr(m, "\t" DATE "\r\n") : NULL;
    return t ? t + strlen("\t" DATE "\r\n") : "(no trace)";
}

/* One message of each kind, in one session: transaction n is S1.n. */
static const struct step sub_added_fields[] = {
    SUB_LOGIN,
    SUB_MESSAGE("Subject: hi\r\n\r\nbody\r\n"),
    SUB_MESSAGE("Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <own@client.test>\r\n"
                "\r\nbody\r\n"),
    SUB_MESSAGE("date: x\r\nSubject: y\r\n\r\nb\r\n"),
    SUB_MESSAGE("MESSAGE-ID:\r\n <folded@client.test>\r\n\r\nb\r\n"),
    SUB_MESSAGE("Message-IDx: 1\r\nX-Date: 2\r\n Date: folded\r\n\r\nDate: body\r\n"
                "Message-ID: body\r\n"),
    SUB_MESSAGE("Subject: no body\r\n"),
    SUB_MESSAGE("Hello Bob,\r\nsee you.\r\n"),
    SUB_MESSAGE(""),
    SUB_MESSAGE("Subject: stuffed\r\n..dot\r\n"),
    THE_END,
};

static void check_sub_added_fields(const struct fake *f, const char *tag)
{
    /* clang-format off */
    static const char *const want[] = {
        "Subject: hi\r\n" ADDED_DATE ADDED_ID(1) "\r\nbody\r\n",
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <own@client.test>\r\n\r\nbody\r\n",
        "date: x\r\nSubject: y\r\n" ADDED_ID(3) "\r\nb\r\n",
        "MESSAGE-ID:\r\n <folded@client.test>\r\n" ADDED_DATE "\r\nb\r\n",
        "Message-IDx: 1\r\nX-Date: 2\r\n Date: folded\r\n" ADDED_DATE ADDED_ID(5)
            "\r\nDate: body\r\nMessage-ID: body\r\n",
        "Subject: no body\r\n" ADDED_DATE ADDED_ID(6),
        ADDED_DATE ADDED_ID(7) "Hello Bob,\r\nsee you.\r\n",
        ADDED_DATE ADDED_ID(8),
        "Subject: stuffed\r\n" ADDED_DATE ADDED_ID(9) ".dot\r\n",
    };
    /* clang-format on */
    static const char *const what[] = {
        "both added, at the end of the header section",
        "a message that has both gets nothing",
        "Message-ID: alone added (date: in lower case counts)",
        "Date: alone added (a folded MESSAGE-ID: counts)",
        "Message-IDx:, X-Date:, a continuation and the body do not count",
        "no body: added at the end",
        "no headers: added before the first line, which is body",
        "an empty message gets both",
        "a stuffed dot is body: added before it",
    };
    size_t n = sizeof(want) / sizeof(want[0]);
    is_int(f->n_messages, n, "%s: %zu messages delivered", tag, n);
    for (size_t i = 0; i < n && i < f->n_messages; i++) {
        static const char top[] = "Return-Path: <alice@example.test>\r\nReceived: ";
        ok(strncmp(f->messages[i], top, strlen(top)) == 0, "%s: %zu: the trace fields stay on top",
           tag, i + 1);
        is_str(after_trace(f->messages[i]), want[i], "%s: %zu: %s", tag, i + 1, what[i]);
    }
}

/* MX adds nothing, with or without headers. */
static const struct step mx_nothing_added[] = {
    GREETING,
    C("EHLO client.test\r\n", EHLO_PLAIN),
    TO_ALICE("s@remote.test"),
    C("Subject: hi\r\n\r\nbody\r\n.\r\n", ""),
    STORED(0, "250 2.0.0"),
    TO_ALICE("s@remote.test"),
    C("Hello\r\n.\r\n", ""),
    STORED(0, "250 2.0.0"),
    THE_END,
};

static void check_mx_nothing_added(const struct fake *f, const char *tag)
{
    is_int(f->n_messages, 2, "%s: two messages", tag);
    if (f->n_messages == 2) {
        is_str(after_trace(f->messages[0]), "Subject: hi\r\n\r\nbody\r\n", "%s: headers as sent",
               tag);
        is_str(after_trace(f->messages[1]), "Hello\r\n", "%s: no headers, none added", tag);
    }
}

/* The fields of an empty message are written at the final dot, its first
 * write after the trace; a spool that fails then is a 452, nothing stored. */
static const struct step sub_added_spool_full[] = {
    SUB_LOGIN,
    ALICE_TO_BOB,
    C(".\r\n", "452 4.3.1"),
    THE_END,
};

static const struct conv conversations[] = {
    {.name = "mx: a message", .steps = mx_message, .check = check_mx_message},
    {.name = "mx: pipelining", .steps = mx_pipelining, .check = check_two_rcpts},
    {.name = "mx: everything in one write", .steps = mx_one_write, .check = check_two_rcpts},
    {.name = "mx: addresses", .steps = mx_addresses, .check = check_addresses},
    {.name = "mx: plus-addressing", .steps = mx_plus, .check = check_plus},
    {.name = "mx: forwarding alias", .steps = mx_forward, .check = check_forward},
    {.name = "mx: SRS", .steps = mx_srs, .check = check_srs},
    {.name = "mx: sequence and HELO", .steps = mx_sequence, .check = check_helo},
    {.name = "mx: SIZE", .message_size = 100, .steps = mx_size, .check = check_size},
    {.name = "mx: bare CR and LF",
     .bare_lf_reject = true,
     .steps = mx_bare_eol,
     .check = check_refused},
    {.name = "mx: smuggling",
     .bare_lf_reject = true,
     .steps = mx_smuggling,
     .check = check_refused},
    {.name = "mx: other commands", .steps = mx_misc},
    {.name = "mx: too many errors", .bad_commands = 3, .steps = mx_bad_commands},
    {.name = "mx: an HTTP request", .steps = mx_http},
    {.name = "mx: store results", .steps = mx_store_results, .check = check_store_results},
    {.name = "mx: spool_begin fails",
     .begin_rc = -EIO,
     .steps = mx_spool_begin_fails,
     .check = check_nothing_delivered},
    {.name = "mx: spool full at DATA",
     .write_rc = -ENOSPC,
     .writes_ok = 0,
     .steps = mx_spool_full_at_data,
     .check = check_aborted_once},
    {.name = "mx: spool full in the body",
     .write_rc = -ENOSPC,
     .writes_ok = 2, /* Return-Path: and Received: */
     .steps = mx_spool_fails_in_body,
     .check = check_aborted_once},
    {.name = "mx: spool I/O error",
     .write_rc = -EIO,
     .writes_ok = 2,
     .steps = mx_spool_io_error,
     .check = check_aborted_once},
    {.name = "mx: timeout", .steps = mx_timeout, .check = check_aborted_once},
    {.name = "mx: shutdown", .steps = mx_shutdown},
    {.name = "mx: freed inside DATA", .steps = mx_free_in_data, .check = check_aborted_once},
    {.name = "mx: STARTTLS", .tls_available = true, .steps = mx_starttls, .check = check_esmtps},
    {.name = "mx: no AUTH", .tls_available = true, .peer_loopback = true, .steps = mx_no_auth},
    {.name = "submission: STARTTLS then AUTH",
     .role = SMTP_ROLE_SUBMISSION,
     .tls_available = true,
     .steps = sub_starttls_auth,
     .check = check_sub_starttls_auth},
    {.name = "submission: loopback",
     .role = SMTP_ROLE_SUBMISSION,
     .peer_loopback = true,
     .steps = sub_loopback,
     .check = check_sub_loopback},
    {.name = "submission: STARTTLS forgets the login",
     .role = SMTP_ROLE_SUBMISSION,
     .tls_available = true,
     .peer_loopback = true,
     .steps = sub_forget_auth},
    {.name = "submissions",
     .role = SMTP_ROLE_SUBMISSIONS,
     .tls_available = true,
     .steps = subs_session,
     .check = check_subs},
    {.name = "submissions: no STARTTLS",
     .role = SMTP_ROLE_SUBMISSIONS,
     .tls_available = true,
     .steps = subs_no_starttls},
    {.name = "submission: plaintext", .role = SMTP_ROLE_SUBMISSION, .steps = sub_plaintext},
    {.name = "submission: Date: and Message-ID: added",
     .role = SMTP_ROLE_SUBMISSION,
     .peer_loopback = true,
     .steps = sub_added_fields,
     .check = check_sub_added_fields},
    {.name = "mx: nothing added", .steps = mx_nothing_added, .check = check_mx_nothing_added},
    {.name = "submission: spool full writing the added fields",
     .role = SMTP_ROLE_SUBMISSION,
     .peer_loopback = true,
     .write_rc = -ENOSPC,
     .writes_ok = 2, /* Return-Path: and Received: */
     .steps = sub_added_spool_full,
     .check = check_aborted_once},
};

/* --- conversations built at run time ------------------------------------ */

static char big_send[3][8192];
static char big_expect[4096];

/* Appends s to out[0..size) at *len; the buffers here are sized for the tests. */
static void append(char *out, size_t size, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > size)
        n = size - *len - 1;
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
}

static void fill(char *out, size_t size, const char *prefix, char ch, size_t n, const char *suffix)
{
    snprintf(out, size, "%s", prefix);
    size_t len = strlen(out);
    if (len + n + strlen(suffix) + 1 > size)
        n = size - len - strlen(suffix) - 1;
    memset(out + len, ch, n);
    snprintf(out + len + n, size - len - n, "%s", suffix);
}

static struct step dyn(const char *send, const char *expect)
{
    struct step st = {SEND, send, strlen(send), expect, 0, 0};
    return st;
}

static void check_hundred(const struct fake *f, const char *tag)
{
    is_int(f->n_rcpt_cmds, 100, "%s: 100 RCPT accepted", tag);
    ok(f->n_ids == 1 && f->ids[0] == 1, "%s: alice once", tag);
}

/* RFC 5321 4.5.3.1.8: 100 recipients; the 101st is refused with 452. */
static void test_recipient_limit(void)
{
    size_t sl = 0, el = 0;
    for (int i = 0; i < 101; i++)
        append(big_send[0], sizeof(big_send[0]), &sl, "RCPT TO:<alice@example.test>\r\n");
    for (int i = 0; i < 100; i++)
        append(big_expect, sizeof(big_expect), &el, "250 2.1.5\n");
    append(big_expect, sizeof(big_expect), &el, "452 4.5.3");
    struct step steps[] = {
        GREETING,
        C("EHLO client.test\r\n", EHLO_PLAIN),
        C("MAIL FROM:<s@remote.test>\r\n", "250 2.1.0"),
        dyn(big_send[0], big_expect),
        C("DATA\r\nx\r\n.\r\n", "354 "),
        STORED(0, "250 2.0.0"),
        THE_END,
    };
    struct conv c = {.name = "mx: 101 recipients", .steps = steps, .check = check_hundred};
    converse(&c);
}

/* RFC 5321 4.5.3.1.6: a text line is 1000 octets with its CRLF. */
static void test_long_data_line(void)
{
    fill(big_send[0], sizeof(big_send[0]), "", 'x', 999, "\r\n.\r\n");
    fill(big_send[1], sizeof(big_send[1]), "", 'x', 998, "\r\n.\r\n");
    struct step steps[] = {
        GREETING,
        C("EHLO client.test\r\n", EHLO_PLAIN),
        TO_ALICE("s@remote.test"),
        dyn(big_send[0], "550 5.6.0"),
        TO_ALICE("s@remote.test"),
        dyn(big_send[1], ""),
        STORED(0, "250 2.0.0"),
        THE_END,
    };
    struct conv c = {.name = "mx: long data lines", .steps = steps};
    converse(&c);
}

/* RFC 5321 4.5.3.1.4: 512 octets; past that 500, and the session goes on. */
static void test_long_command_line(void)
{
    fill(big_send[0], sizeof(big_send[0]), "", 'A', 600, "\r\n");
    fill(big_send[1], sizeof(big_send[1]), "NOOP ", 'A', 6000, "\r\n");
    fill(big_send[2], sizeof(big_send[2]), "NOOP ", 'A', 505, "\r\n"); /* 512 with CRLF */
    struct step steps[] = {
        GREETING,
        dyn(big_send[0], "500 5.5.0"),
        C("NOOP\r\n", "250 2.0.0"),
        dyn(big_send[1], "500 5.5.0"),
        C("NOOP\r\n", "250 2.0.0"),
        dyn(big_send[2], "250 2.0.0"),
        THE_END,
    };
    struct conv c = {.name = "mx: long command lines", .steps = steps};
    converse(&c);
}

/*
 * A client that pipelines without reading fills the output buffer (256 KiB);
 * the session then closes. What it leaves to send must still be whole reply
 * lines. The VRFY replies shift where the limit falls, so that one of the
 * runs puts it inside a reply's CRLF.
 */
static void test_output_full(void)
{
    size_t n_noop = 20000, len = 0;
    char *in = xmalloc(14 * 8 + n_noop * 6);
    for (int n_vrfy = 0; n_vrfy < 14; n_vrfy++) {
        len = 0;
        for (int i = 0; i < n_vrfy; i++) {
            memcpy(in + len, "VRFY x\r\n", 8);
            len += 8;
        }
        for (size_t i = 0; i < n_noop; i++) {
            memcpy(in + len, "NOOP\r\n", 6);
            len += 6;
        }
        struct fake f;
        memset(&f, 0, sizeof(f));
        buf_init(&f.spool, 0);
        struct smtp_session_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.hostname = HOST;
        cfg.message_size = 10240;
        struct smtp_session *s = smtp_session_new(&cfg, &fake_ops, &f);
        smtp_session_greet(s);
        size_t used = 0;
        smtp_session_feed(s, in, len, &used);
        struct buf *out = smtp_session_output(s);
        bool whole = out->len >= 2 && memcmp(out->data + out->len - 2, "\r\n", 2) == 0;
        ok(smtp_session_action(s) == SMTP_ACT_CLOSE && used < len && whole,
           "output full after %d VRFY: the session closes, and ends on a whole line", n_vrfy);
        if (!whole && out->len >= 12)
            printf("#   the output ends with \"%.12s\" (%zu octets)\n",
                   (const char *)out->data + out->len - 12, out->len);
        smtp_session_free(&s);
        fake_free(&f);
    }
    free(in);
}

/* Sanity checks of the reply checker itself. */
static void test_reply_checker(void)
{
    static const struct {
        const char *line;
        bool ok;
    } cases[] = {
        {"250 2.1.0 Ok", true},     {"550 5.1.1 No", true},    {"421 4.4.2 x", true},
        {"214-2.0.0 help", true},   {"250 Ok", false},         {"550 4.1.1 No", false},
        {"250 2.1.0Ok", false},     {"250 2.1234.0 x", false}, {"350 3.0.0 x", false},
        {"334 VXNlcm5hbWU6", true}, {"250-PIPELINING", true},  {"220 " HOST " ESMTP kotak", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        is_int(reply_line_ok(cases[i].line, strlen(cases[i].line)), cases[i].ok,
               "reply checker: \"%s\" is %s", cases[i].line, cases[i].ok ? "good" : "bad");
    reply_line_ok("354 End data", 12);
    reply_line_ok("354 3.0.0 End data", 18);
    ok(n_354 == 2 && bad_354 == 1, "reply checker: counts a 354 with a status code");
    n_354 = bad_354 = 0;
}

/* Feeds text and returns the replies it brought, as a C string (static). */
static const char *feed_text(struct smtp_session *s, const char *text)
{
    static char got[512];
    size_t used = 0;
    smtp_session_feed(s, text, strlen(text), &used);
    struct buf *out = smtp_session_output(s);
    snprintf(got, sizeof(got), "%.*s", (int)out->len, (const char *)out->data);
    buf_consume(out, out->len);
    return got;
}

/* A message may take data_grace_s plus a second per min_data_rate octets. */
static void test_min_data_rate(void)
{
    for (int steady = 0; steady <= 1; steady++) {
        struct fake f;
        memset(&f, 0, sizeof(f));
        f.write_fail_after = -1;
        buf_init(&f.spool, 0);
        struct smtp_session_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.hostname = HOST;
        cfg.message_size = 1 << 20;
        cfg.data_grace_s = 3;
        cfg.min_data_rate = 500;
        clock_ahead = 0;
        struct smtp_session *s = smtp_session_new(&cfg, &fake_ops, &f);
        smtp_session_greet(s);
        feed_text(s, "EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\n"
                     "RCPT TO:<alice@example.test>\r\n");
        ok(strncmp(feed_text(s, "DATA\r\n"), "354 ", 4) == 0, "data rate: 354");
        char line[1002];
        memset(line, 'x', 998);
        memcpy(line + 998, "\r\n", 3);
        const char *got = "";
        for (int sec = 1; sec <= 10 && got[0] == '\0'; sec++) {
            clock_ahead = sec * 2; /* two seconds pass between writes */
            got = feed_text(s, steady ? line : "x\r\n");
        }
        if (steady) {
            is_str(got, "", "data rate: 1000 octets every 2 s keeps up with 500/s");
            ok(strncmp(feed_text(s, ".\r\n"), "", 1) == 0 && f.delivers == 1,
               "data rate: the steady message is handed to the store");
        } else {
            ok(strncmp(got, "421 4.4.2 ", 10) == 0,
               "data rate: a line every 2 s ends in 421 4.4.2 "
               "(got \"%.40s\")",
               got);
            is_int(clock_ahead, 4, "data rate: cut once past the grace (3 s), at 4 s");
            ok(smtp_session_action(s) == SMTP_ACT_CLOSE, "data rate: the connection closes");
            is_int(f.delivers, 0, "data rate: nothing is delivered");
            is_int(f.aborts, 1, "data rate: the spool is thrown away");
        }
        smtp_session_free(&s);
        fake_free(&f);
    }
    clock_ahead = 0;
}

/* --- the header section, with messages built at run time ----------------- */

static char *loop_msg;

/* n Received: fields (the first folded), a Subject:, then a body of
 * Received: lines, which never count; ends with the final dot. */
static const char *received_message(int n)
{
    size_t size = (size_t)(n + 80) * 40, len = 0;
    free(loop_msg);
    loop_msg = xmalloc(size);
    loop_msg[0] = '\0';
    for (int i = 0; i < n; i++)
        len +=
            (size_t)snprintf(loop_msg + len, size - len,
                             i == 0 ? "Received: from a\r\n\tby b\r\n" : "Received: hop %d\r\n", i);
    len += (size_t)snprintf(loop_msg + len, size - len, "Subject: loop\r\n\r\n");
    for (int i = 0; i < 60; i++)
        len += (size_t)snprintf(loop_msg + len, size - len, "Received: in the body\r\n");
    snprintf(loop_msg + len, size - len, ".\r\n");
    return loop_msg;
}

static void check_loop_refused(const struct fake *f, const char *tag)
{
    is_int(f->delivers, 0, "%s: nothing delivered", tag);
    is_int(f->aborts, 1, "%s: the spool aborted", tag);
}

static void check_loop_accepted(const struct fake *f, const char *tag)
{
    is_int(f->delivers, 1, "%s: delivered", tag);
}

/*
 * RFC 5321 6.3: the session's own Received: counts, so a message may come
 * with 49 and be stored with 50 (HEADERS_RECEIVED_MAX); with 50 it is a
 * loop, on every port. Received: lines in the body never count.
 */
static void test_received_limit(void)
{
    static const struct {
        enum smtp_role role;
        int n;
        bool refused;
    } cases[] = {
        {SMTP_ROLE_MX, HEADERS_RECEIVED_MAX - 1, false},
        {SMTP_ROLE_MX, HEADERS_RECEIVED_MAX, true},
        {SMTP_ROLE_MX, 200, true},
        {SMTP_ROLE_SUBMISSION, HEADERS_RECEIVED_MAX - 1, false},
        {SMTP_ROLE_SUBMISSION, HEADERS_RECEIVED_MAX, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[96];
        snprintf(name, sizeof(name), "%s: %d Received: fields %s",
                 cases[i].role == SMTP_ROLE_MX ? "mx" : "submission", cases[i].n,
                 cases[i].refused ? "are a loop" : "pass");
        const char *msg = received_message(cases[i].n);
        const char *answer = cases[i].refused ? "554 5.4.6 " : "";
        /* Refused at the dot, with the session ready for more; else stored. */
        struct step after = cases[i].refused ? (struct step)C("NOOP\r\n", "250 2.0.0")
                                             : (struct step)STORED(0, "250 2.0.0");
        struct step mx[] = {
            GREETING,
            C("EHLO client.test\r\n", EHLO_PLAIN),
            TO_ALICE("s@remote.test"),
            dyn(msg, answer),
            after,
            THE_END,
        };
        struct step sub[] = {
            SUB_LOGIN, ALICE_TO_BOB, dyn(msg, answer), after, THE_END,
        };
        struct conv c = {
            .name = name,
            .role = cases[i].role,
            .peer_loopback = true,
            .steps = cases[i].role == SMTP_ROLE_MX ? mx : sub,
            .check = cases[i].refused ? check_loop_refused : check_loop_accepted,
        };
        converse(&c);
    }
    free(loop_msg);
    loop_msg = NULL;
}

/*
 * Lines that keep the session guessing as long as they can: a field whose
 * name runs to the 995th octet (its colon at 996 of a 998-octet line),
 * and a line of 998 octets with no colon, which is body. Byte by byte (the
 * trickle run) the session holds 997 octets before it knows.
 */
static char long_field[1200], long_body[1200];
static char long_want[2][1400];

static void check_long_lines(const struct fake *f, const char *tag)
{
    is_int(f->n_messages, 2, "%s: two messages", tag);
    for (size_t i = 0; i < 2 && i < f->n_messages; i++)
        ok(strcmp(after_trace(f->messages[i]), long_want[i]) == 0, "%s: message %zu as expected",
           tag, i + 1);
}

static void test_long_header_lines(void)
{
    char name[1000], line[1000];
    memset(name, 'X', 995);
    name[995] = '\0';
    memset(line, 'y', 998);
    line[998] = '\0';
    snprintf(long_field, sizeof(long_field), "%s: v\r\n\r\nbody\r\n.\r\n", name);
    snprintf(long_want[0], sizeof(long_want[0]), "%s: v\r\n" ADDED_DATE ADDED_ID(1) "\r\nbody\r\n",
             name);
    snprintf(long_body, sizeof(long_body), "%s\r\nDate: x\r\n.\r\n", line);
    snprintf(long_want[1], sizeof(long_want[1]), ADDED_DATE ADDED_ID(2) "%s\r\nDate: x\r\n", line);
    struct step steps[] = {
        SUB_LOGIN,    ALICE_TO_BOB,       dyn(long_field, ""),    STORED(0, "250 2.0.0"),
        ALICE_TO_BOB, dyn(long_body, ""), STORED(0, "250 2.0.0"), THE_END,
    };
    struct conv c = {.name = "submission: long header lines",
                     .role = SMTP_ROLE_SUBMISSION,
                     .peer_loopback = true,
                     .steps = steps,
                     .check = check_long_lines};
    converse(&c);
}

/*
 * The message arrives in two reads split at every place, the final dot's
 * included; the session stores the same bytes each time, on submission
 * (fields added) and on MX (nothing added).
 */
static void test_data_split_everywhere(void)
{
    static const char data[] = "Subject: split\r\nFrom: <alice@example.test>\r\n"
                               " folded\r\nX-Long-Name-Here: 1\r\n\r\nbody\r\n..dot\r\n.\r\n";
    static const char *const want[] = {
        "Subject: split\r\nFrom: <alice@example.test>\r\n folded\r\nX-Long-Name-Here: "
        "1\r\n" ADDED_DATE ADDED_ID(1) "\r\nbody\r\n.dot\r\n",
        "Subject: split\r\nFrom: <alice@example.test>\r\n folded\r\nX-Long-Name-Here: 1\r\n"
        "\r\nbody\r\n.dot\r\n",
    };
    size_t len = sizeof(data) - 1;
    for (int mx = 0; mx <= 1; mx++) {
        size_t bad = 0;
        for (size_t cut = 0; cut <= len; cut++) {
            struct fake f;
            memset(&f, 0, sizeof(f));
            f.write_fail_after = -1;
            buf_init(&f.spool, 0);
            struct smtp_session_config cfg;
            memset(&cfg, 0, sizeof(cfg));
            cfg.role = mx ? SMTP_ROLE_MX : SMTP_ROLE_SUBMISSION;
            cfg.hostname = HOST;
            cfg.peer_loopback = true;
            cfg.message_size = 10240;
            snprintf(cfg.session_id, sizeof(cfg.session_id), "S1");
            cfg.msgid_random = 0x0123456789abcdefULL;
            struct smtp_session *s = smtp_session_new(&cfg, &fake_ops, &f);
            smtp_session_greet(s);
            if (!mx) {
                feed_text(s, "EHLO client.test\r\nAUTH PLAIN " PLAIN_ALICE "\r\n");
                smtp_session_auth_done(s, 1, 1);
            }
            feed_text(s, mx ? "EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\n"
                              "RCPT TO:<alice@example.test>\r\nDATA\r\n"
                            : "MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
                              "DATA\r\n");
            struct buf pending;
            buf_init(&pending, 0);
            buf_append(&pending, data, cut);
            pump(s, &pending);
            buf_append(&pending, data + cut, len - cut);
            pump(s, &pending);
            if (f.delivers != 1 || strcmp(after_trace(f.message), want[mx]) != 0) {
                if (bad++ == 0)
                    printf("# split at %zu: got \"%s\"\n", cut, after_trace(f.message));
            }
            buf_free(&pending);
            smtp_session_free(&s);
            fake_free(&f);
        }
        ok(bad == 0, "%s: data split in two at each of %zu places is stored the same (%zu wrong)",
           mx ? "mx" : "submission", len + 1, bad);
    }
}

int main(void)
{
    test_reply_checker();
    for (size_t i = 0; i < sizeof(conversations) / sizeof(conversations[0]); i++)
        converse(&conversations[i]);
    test_recipient_limit();
    test_long_data_line();
    test_long_command_line();
    test_output_full();
    test_min_data_rate();
    test_received_limit();
    test_long_header_lines();
    test_data_split_everywhere();
    ok(n_354 > 0, "the conversations saw %d replies to DATA", n_354);
    is_int(bad_354, 0,
           "no 354 reply carries an enhanced status code (RFC 2034 4: 3xx are not "
           "included, the class is 2, 4 or 5)");
    return done_testing();
}
