/*
 * fuzz_smtp_session.c — a whole SMTP conversation (smtpd/smtp_session.h)
 * against a fake world, read in random pieces as the glue reads a socket.
 *
 * Input: byte 0 is the listener and the world (bits 0-1 the role: MX,
 * submission, submissions; bit 2 a certificate, so STARTTLS is offered;
 * bit 3 a loopback peer; bits 4-5 the SIZE limit; bit 6 spool faults;
 * bit 7 end with the idle timeout rather than a shutdown). Byte 1 seeds
 * the read boundaries, byte 2 the answers of the store and the login check
 * (and in bit 7 a high bad-command limit). The rest is what the client
 * sends; after STARTTLS the bytes that follow stand for the decrypted ones.
 *
 * The glue is played as smtpd.c plays it: feed what was read, keep what was
 * not consumed, stop reading while the session is busy and answer the
 * store (smtp_session_store_done) or the login check
 * (smtp_session_auth_done) with results taken from byte 2's sequence,
 * drop the unread input and start TLS on STARTTLS, stop on CLOSE.
 *
 * The world: example.test is the only local domain, with alice (1), bob
 * (2), sales@ (both), fwd@ (only forwards elsewhere) and dbfail@ (the
 * look-up fails); "+tag" works as in the store.
 *
 * Properties:
 *   - deliver() is called at most once per DATA answered with 354, only
 *     with an open spool, only for local recipients, and on submission only
 *     after a login and for a sender that resolves to the logged-in user;
 *   - every delivered spool holds no bare CR or LF (no smuggling, no header
 *     injection through HELO or MAIL FROM), ends in CRLF and starts with
 *     Return-Path: and Received:;
 *   - no delivered spool holds more than HEADERS_RECEIVED_MAX Received:
 *     fields (ours included), and on submission each has a Date: and a
 *     Message-ID: in its header section, the session's own if the client
 *     sent none;
 *   - the output always consists of whole CRLF-terminated reply lines, each
 *     "NNN " or "NNN-" with NNN from 200 to 599, at most 512 octets, and a
 *     multi-line reply is never left unfinished;
 *   - a login is asked for only off MX and only with TLS or from loopback,
 *     with a user and password free of control characters (the user ""
 *     stands for nobody: a proxy login, answered as a failure);
 *   - STARTTLS is acted on only when it was offered and consumes nothing
 *     behind its line (the glue drops the rest: no command injection);
 *   - the session is busy exactly while an answer is awaited, and the spool
 *     is never left open after the session is freed.
 */
#include <errno.h>

#include "addr.h"
#include "fuzz.h"
#include "headers.h"
#include "log.h"
#include "sasl.h"
#include "smtp_session.h"
#include "store.h"
#include "util.h"

struct world {
    struct smtp_session *s;
    struct smtp_session_config cfg;
    struct fuzz_rng res; /* the store's and the login check's answers, faults */
    bool faults;
    bool tls;
    int64_t user_id; /* as the login answers made it */

    struct fuzz_bytes spool;
    bool spooling;
    bool want_deliver, want_auth;
    bool auth_nobody; /* the login asked for is of nobody: it must fail */

    size_t sent_354;      /* 354 lines already taken from the output */
    size_t last_deliver;  /* the 354 count at the last deliver() */
    bool in_continuation; /* the last line taken was "NNN-" */
    char code[3];         /* ... and its code */
};

/* --- the fake world ------------------------------------------------------ */

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

/* store_resolve's contract over a five-name directory. */
static void w_rcpts_free(void *ctx, struct store_rcpts *r)
{
    (void)ctx;
    store_rcpts_free(r);
}

static int w_resolve(void *ctx, const struct addr *a, struct store_rcpts *r)
{
    (void)ctx;
    char local[ADDR_LOCAL_MAX + 1], domain[ADDR_DOMAIN_MAX + 1];
    FUZZ_CHECK(memchr(a->local, '\0', sizeof(a->local)) &&
                   memchr(a->domain, '\0', sizeof(a->domain)),
               "resolve() got parts that are not NUL-terminated");
    snprintf(local, sizeof(local), "%s", a->local);
    snprintf(domain, sizeof(domain), "%s", a->domain);
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

static bool fault(struct world *w, uint32_t one_in)
{
    return w->faults && fuzz_rng_below(&w->res, one_in) == 0;
}

static int w_spool_begin(void *ctx)
{
    struct world *w = ctx;
    FUZZ_CHECK(!w->spooling, "spool_begin() while a spool is open");
    if (fault(w, 8))
        return fuzz_rng_below(&w->res, 2) ? -ENOSPC : -EIO;
    w->spooling = true;
    w->spool.len = 0;
    return 0;
}

static int w_spool_write(void *ctx, const void *p, size_t n)
{
    struct world *w = ctx;
    FUZZ_CHECK(w->spooling, "spool_write() with no open spool");
    FUZZ_CHECK(!w->want_deliver, "spool_write() after deliver()");
    if (fault(w, 16))
        return fuzz_rng_below(&w->res, 2) ? -ENOSPC : -EIO;
    fuzz_bytes_add(&w->spool, p, n);
    return 0;
}

static void w_spool_abort(void *ctx)
{
    struct world *w = ctx;
    /* After deliver() the spool is the store's; the real glue ignores this too. */
    w->spooling = false;
}

/* Counts the "354 " lines in p[0..n). */
static size_t count_354(const uint8_t *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i + 4 <= n; i++)
        if ((i == 0 || p[i - 1] == '\n') && memcmp(p + i, "354 ", 4) == 0)
            c++;
    return c;
}

static void w_deliver(void *ctx, const struct smtp_tx *tx)
{
    struct world *w = ctx;
    struct buf *out = smtp_session_output(w->s);
    size_t n354 = w->sent_354 + count_354(out->data, out->len);
    FUZZ_CHECK(n354 > w->last_deliver,
               "a second deliver() for one DATA (354 replies: %zu, at the last deliver: %zu)", n354,
               w->last_deliver);
    w->last_deliver = n354;
    FUZZ_CHECK(w->spooling, "deliver() with no open spool");
    FUZZ_CHECK(!w->want_deliver && !w->want_auth, "deliver() while an answer is awaited");

    const uint8_t *m = w->spool.p;
    size_t len = w->spool.len;
    FUZZ_CHECK(!fuzz_has_bare_eol(m, len), "a delivered message holds a bare CR or LF");
    FUZZ_CHECK(len >= 2 && m[len - 2] == '\r' && m[len - 1] == '\n',
               "a delivered message does not end in CRLF");
    FUZZ_CHECK(len >= 14 && memcmp(m, "Return-Path: <", 14) == 0,
               "a delivered message does not start with Return-Path:");
    FUZZ_CHECK(memmem(m, len, "\r\nReceived: from ", 17) != NULL, "no Received: header");
    FUZZ_CHECK(headers_count_received((const char *)m, len) <= HEADERS_RECEIVED_MAX,
               "a delivered message with %d Received: fields",
               headers_count_received((const char *)m, len));
    if (w->cfg.role != SMTP_ROLE_MX)
        FUZZ_CHECK(headers_has((const char *)m, len, "Date") &&
                       headers_has((const char *)m, len, "Message-ID"),
                   "a submitted message without Date: or Message-ID:");

    FUZZ_CHECK(tx->rcpts.n + tx->n_remote >= 1, "deliver() with no recipient");
    /* Another server's recipients: each once, never one of the local domain. */
    for (size_t i = 0; i < tx->n_remote; i++) {
        const char *at = strrchr(tx->remote[i].address, '@');
        FUZZ_CHECK(at != NULL && strcasecmp(at, "@example.test") != 0,
                   "a remote recipient in the local domain: %s", tx->remote[i].address);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(tx->remote[i].address, tx->remote[j].address) != 0,
                       "a remote recipient twice");
    }
    for (size_t i = 0; i < tx->rcpts.n; i++) {
        FUZZ_CHECK(tx->rcpts.user_ids[i] == 1 || tx->rcpts.user_ids[i] == 2,
                   "a recipient the directory does not have");
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(tx->rcpts.user_ids[i] != tx->rcpts.user_ids[j], "a recipient twice");
    }
    FUZZ_CHECK(tx->n_rcpt_cmds >= 1 && tx->n_rcpt_cmds <= 100, "%zu RCPT commands",
               tx->n_rcpt_cmds);
    FUZZ_CHECK(memchr(tx->from, '\0', sizeof(tx->from)) != NULL, "from is not NUL-terminated");
    if (w->cfg.role != SMTP_ROLE_MX) {
        /* No relay and no forged sender: logged in, and the sender is the user's. */
        FUZZ_CHECK(w->user_id > 0, "a delivery on submission without a login");
        struct addr from;
        struct store_rcpts r = {0};
        FUZZ_CHECK(addr_parse(tx->from, strlen(tx->from), ADDR_UTF8 | ADDR_QUOTED | ADDR_LITERAL,
                              &from) == 0,
                   "the sender '%s' is not a mailbox", tx->from);
        bool mine = false;
        if (w_resolve(w, &from, &r) == 1)
            for (size_t i = 0; i < r.n; i++)
                mine |= r.user_ids[i] == w->user_id;
        store_rcpts_free(&r);
        FUZZ_CHECK(mine, "sender '%s' does not belong to user %lld", tx->from,
                   (long long)w->user_id);
    }
    w->spooling = false; /* the store has it now */
    w->want_deliver = true;
}

static void check_secret(const char *what, const char *p)
{
    size_t n = strnlen(p, SASL_FIELD_MAX + 1);
    FUZZ_CHECK(n > 0 && n <= SASL_FIELD_MAX, "%s of %zu octets", what, n);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((uint8_t)p[i] >= 0x20, "%s holds control character %#x", what, (uint8_t)p[i]);
}

static void w_auth(void *ctx, const char *user, const char *password)
{
    struct world *w = ctx;
    FUZZ_CHECK(w->cfg.role != SMTP_ROLE_MX, "a login on the MX port");
    FUZZ_CHECK(w->tls || w->cfg.peer_loopback, "a login over plaintext from a remote peer");
    FUZZ_CHECK(w->user_id == 0, "a second login");
    FUZZ_CHECK(!w->want_deliver && !w->want_auth, "auth() while an answer is awaited");
    /* "" is nobody: a proxy login, which must fail like any other. */
    if (user[0] != '\0')
        check_secret("the user", user);
    check_secret("the password", password);
    w->auth_nobody = user[0] == '\0';
    w->want_auth = true;
}

static time_t w_now(void *ctx)
{
    (void)ctx;
    return 1700000000;
}

/* The live view is watched throughout: its paths run on every input. */
static bool w_watched(void *ctx)
{
    (void)ctx;
    return true;
}

static void w_watch(void *ctx, enum watch_kind kind, bool tls, const char *text, size_t len)
{
    (void)ctx, (void)tls;
    FUZZ_CHECK(kind <= WATCH_MAIL, "event kind %d", (int)kind);
    FUZZ_CHECK(len == 0 || text != NULL, "an event without its text");
    FUZZ_CHECK(kind != WATCH_CLIENT || len <= WATCH_TEXT_MAX, "a client line of %zu octets", len);
}

static const struct smtp_ops w_ops = {
    .resolve = w_resolve,
    .rcpts_free = w_rcpts_free,
    .spool_begin = w_spool_begin,
    .spool_write = w_spool_write,
    .spool_abort = w_spool_abort,
    .deliver = w_deliver,
    .auth = w_auth,
    .now = w_now,
    .watched = w_watched,
    .watch = w_watch,
};

/* --- the glue ------------------------------------------------------------ */

/* Takes the output as the glue sends it, checking it line by line. */
static void pump(struct world *w)
{
    struct buf *out = smtp_session_output(w->s);
    const uint8_t *p = out->data;
    size_t n = out->len;
    FUZZ_CHECK(n == 0 || (n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n'),
               "output that is not whole CRLF lines (%zu bytes)", n);
    FUZZ_CHECK(!fuzz_has_bare_eol(p, n), "output with a bare CR or LF");
    size_t start = 0;
    while (start < n) {
        const uint8_t *lf = memchr(p + start, '\n', n - start);
        size_t end = (size_t)(lf - p) + 1, len = end - start;
        const uint8_t *l = p + start;
        FUZZ_CHECK(len >= 6 && len <= 512, "a reply line of %zu octets", len);
        FUZZ_CHECK(l[0] >= '2' && l[0] <= '5' && l[1] >= '0' && l[1] <= '9' && l[2] >= '0' &&
                       l[2] <= '9' && (l[3] == ' ' || l[3] == '-'),
                   "a reply line that does not start with a code: %.*s", (int)len - 2, l);
        if (w->in_continuation)
            FUZZ_CHECK(memcmp(w->code, l, 3) == 0, "a multi-line reply changed its code");
        memcpy(w->code, l, 3);
        w->in_continuation = l[3] == '-';
        start = end;
    }
    FUZZ_CHECK(!w->in_continuation, "a multi-line reply left unfinished");
    w->sent_354 += count_354(p, n);
    buf_reset(out);
}

/* Answers what the session waits for, as the store or the login check would. */
static void answer(struct world *w)
{
    FUZZ_CHECK(w->want_deliver != w->want_auth, "busy, but waiting for %s",
               w->want_deliver ? "two answers" : "nothing");
    if (w->want_deliver) {
        static const int rcs[] = {0, 0, -ENOSPC, -EIO};
        w->want_deliver = false;
        smtp_session_store_done(w->s, rcs[fuzz_rng_below(&w->res, 4)]);
    } else {
        static const int rcs[] = {1, 1, 0, -EAGAIN};
        int rc = rcs[fuzz_rng_below(&w->res, 4)];
        int64_t id = 1 + fuzz_rng_below(&w->res, 2);
        if (w->auth_nobody && rc == 1)
            rc = 0;
        w->want_auth = false;
        if (rc == 1)
            w->user_id = id;
        smtp_session_auth_done(w->s, rc, id);
    }
    FUZZ_CHECK(!smtp_session_busy(w->s), "still busy after the answer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        log_set_level(LOG_ERROR);
        quiet = true;
    }
    if (size < 3)
        return 0;
    static const size_t sizes[] = {10240, 300, 65536, 2000};
    static const enum smtp_role roles[] = {SMTP_ROLE_MX, SMTP_ROLE_SUBMISSION,
                                           SMTP_ROLE_SUBMISSIONS, SMTP_ROLE_MX};
    struct world w = {0};
    w.cfg.role = roles[data[0] & 3];
    w.cfg.hostname = "mx.example.test";
    w.cfg.tls_available = data[0] & 4;
    w.cfg.peer_loopback = data[0] & 8;
    snprintf(w.cfg.peer_ip, sizeof(w.cfg.peer_ip), "192.0.2.1");
    snprintf(w.cfg.session_id, sizeof(w.cfg.session_id), "f00d");
    w.cfg.message_size = sizes[(data[0] >> 4) & 3];
    w.cfg.bad_commands = data[2] & 0x80 ? 1000 : 0;
    w.faults = data[0] & 0x40;
    bool end_with_timeout = data[0] & 0x80;
    struct fuzz_rng rd;
    fuzz_rng_init(&rd, data[1]);
    fuzz_rng_init(&w.res, data[2] + 0x100u);
    const uint8_t *in = data + 3;
    size_t n = size - 3;

    w.s = smtp_session_new(&w.cfg, &w_ops, &w);
    if (w.cfg.role == SMTP_ROLE_SUBMISSIONS) {
        smtp_session_tls_started(w.s, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "mail.example.test");
        w.tls = true;
    }
    smtp_session_greet(w.s);
    pump(&w);

    uint8_t *pend = malloc(n ? n : 1);
    size_t plen = 0, fed = 0;
    bool closed = false, progress = false;
    for (;;) {
        if (smtp_session_busy(w.s)) {
            answer(&w);
            pump(&w);
        } else {
            FUZZ_CHECK(!w.want_deliver && !w.want_auth, "an answer is awaited, but not busy");
            if (fed < n) {
                size_t k = fuzz_piece(&rd, n - fed);
                memcpy(pend + plen, in + fed, k);
                plen += k;
                fed += k;
            } else if (plen == 0 || !progress) {
                break;
            }
        }
        size_t used = (size_t)-1;
        smtp_session_feed(w.s, (const char *)pend, plen, &used);
        FUZZ_CHECK(used <= plen, "consumed %zu of %zu", used, plen);
        progress = used > 0;
        enum smtp_action a = smtp_session_action(w.s);
        if (a == SMTP_ACT_STARTTLS) {
            FUZZ_CHECK(w.cfg.tls_available && !w.tls && w.cfg.role != SMTP_ROLE_SUBMISSIONS,
                       "STARTTLS acted on where it is not offered");
            FUZZ_CHECK(fuzz_ends_with_verb_line(pend, used, "STARTTLS"),
                       "STARTTLS consumed input behind its line");
            FUZZ_CHECK(!smtp_session_busy(w.s), "busy on STARTTLS");
        }
        memmove(pend, pend + used, plen - used);
        plen -= used;
        pump(&w);
        if (a == SMTP_ACT_STARTTLS) {
            plen = 0; /* what came in plaintext behind STARTTLS is thrown away */
            smtp_session_tls_started(w.s, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "mail.example.test");
            w.tls = true;
            w.user_id = 0;
            progress = true;
            FUZZ_CHECK(smtp_session_action(w.s) == SMTP_ACT_NONE, "STARTTLS asked twice");
        } else if (a == SMTP_ACT_CLOSE) {
            closed = true;
            break;
        }
    }
    if (smtp_session_busy(w.s)) {
        answer(&w);
        pump(&w);
    }
    if (!closed) {
        if (end_with_timeout)
            smtp_session_timeout(w.s);
        else
            smtp_session_shutdown(w.s);
        struct buf *out = smtp_session_output(w.s);
        FUZZ_CHECK(out->len >= 6 && memcmp(out->data, "421 ", 4) == 0,
                   "no 421 on timeout or shutdown");
        pump(&w);
        FUZZ_CHECK(smtp_session_action(w.s) == SMTP_ACT_CLOSE, "no CLOSE after a 421");
    }
    smtp_session_free(&w.s);
    FUZZ_CHECK(w.s == NULL, "smtp_session_free did not clear the pointer");
    FUZZ_CHECK(!w.spooling, "the spool was left open");
    free(pend);
    fuzz_bytes_free(&w.spool);
    return 0;
}
