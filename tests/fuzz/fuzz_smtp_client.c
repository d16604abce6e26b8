/*
 * fuzz_smtp_client.c — the SMTP client (smtpd/smtp_client.h) against a
 * server that says anything, read in random pieces as the glue reads a
 * socket.
 *
 * Input: byte 0 is the configuration and the message (bits 0-1 TLS: none,
 * opportunistic, required, required with implicit TLS; bit 2 a login is
 * configured; bit 3 an 8-bit body; bit 4 the message needs SMTPUTF8; bit 5
 * DSN parameters; bit 6 SIZE 5000; bit 7 five recipients and a second
 * message on the same connection). Byte 1 seeds the read boundaries and the
 * glue's choices (which body, its pieces, a failed TLS handshake, lost
 * connection or timeout at the end). The rest is what the server sends;
 * after STARTTLS the bytes that follow stand for the decrypted ones (and
 * the bytes read but not consumed are thrown away one time in four, else
 * kept as decrypted ones too).
 *
 * The glue is played as the queue runner will: feed what was read and keep
 * what was not consumed; on STARTTLS start TLS (or fail the handshake); on
 * BODY stream a message in pieces while wants_body says yes, sending output
 * between; on DONE read the results and give the next message or QUIT; at
 * the end of the input lose the connection. Now and then it loses the
 * connection inside the body, or stops (quit) in the middle of a
 * conversation, as a daemon shutting down does.
 *
 * Properties:
 *   - command output is always whole CRLF lines, each a command allowed at
 *     that point: EHLO first and again only after TLS, HELO after EHLO,
 *     STARTTLS only when wanted and not over TLS, AUTH only over TLS with a
 *     login configured, MAIL once per message given, never before TLS when
 *     TLS is required nor before AUTH when a login is configured, and
 *     after RSET when the transaction before it ended early, RCPT only in a
 *     transaction and at most one per recipient, DATA once after MAIL and
 *     RCPT, nothing after QUIT;
 *   - the message data on the wire is the body with every line end made
 *     CRLF, dot-stuffed, ended by CRLF when it was not, then ".\r\n";
 *   - the output never passes SMTP_CLIENT_OUT_MAX, and a body piece of up
 *     to SMTP_CLIENT_BODY_CHUNK is taken whenever wants_body says yes;
 *   - STARTTLS is acted on only after a line "220..." that ends what was
 *     consumed;
 *   - on DONE and CLOSE every recipient is in exactly one final state, with
 *     a bounded printable text, a code 0 or 200-559, a well-formed
 *     enhanced code; DELIVERED only after the final dot, in reply to it;
 *   - no result text holds the password or its base64, and the output
 *     holds them only over TLS;
 *   - ASan and UBSan find nothing, and nothing leaks.
 */
#include <errno.h>

#include "fuzz.h"
#include "smtp_client.h"

#define USER "alice@a.test"
#define PASS "s3cr3t-Pa55"
#define PLAIN_B64 "AGFsaWNlQGEudGVzdABzM2NyM3QtUGE1NQ==" /* \0alice@a.test\0s3cr3t-Pa55 */
#define PASS_B64 "czNjcjN0LVBhNTU="

static const char *const bodies[] = {
    "",
    ".",
    "\r",
    "\n",
    ".\r\n",
    "a\r\n.\r\nb",
    ".\r\n.\r\n",
    "x\n.\n.\r\r\n..\r\n",
    "Subject: test\r\n\r\nline\r\n.dot\r\n..two\r\nlast",
    "\r\n.\r\n\r\n.\r\nQUIT\r\n",
    "caf\xc3\xa9\r\n.\r.\n.",
};

struct world {
    struct smtp_client *c;
    struct fuzz_rng rng;
    bool tls_wanted, tls_required, login;
    bool tls;       /* TLS is up, as the glue sees it */
    size_t n_rcpts; /* of the current message */

    /* The shadow of the conversation, from the command lines seen. */
    bool ehlo_allowed; /* at the start, and after TLS */
    bool ehlo_sent;
    bool authed_line; /* an AUTH command went out over TLS */
    bool auth_login;  /* AUTH LOGIN sent: base64 lines and "*" may follow */
    bool starttls_sent;
    unsigned mail_allowed; /* MAIL lines the glue's next() calls allow */
    bool in_tx;
    size_t rcpts_sent;
    bool data_sent;
    bool owe_rset;   /* the last transaction ended before its final dot */
    bool body_ended; /* smtp_client_body_end was called in this transaction */
    bool quit_sent;

    /* The message data of the current transaction, as written and as meant. */
    struct fuzz_bytes body_out, body_want;
};

/* --- checks ------------------------------------------------------------- */

static bool starts_with(const uint8_t *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    return n >= k && memcmp(p, s, k) == 0;
}

static bool has(const uint8_t *p, size_t n, const char *s)
{
    return memmem(p, n, s, strlen(s)) != NULL;
}

/* One command line (without CRLF) the client wrote; is it allowed now? */
static void check_command(struct world *w, const uint8_t *l, size_t n)
{
    FUZZ_CHECK(!w->quit_sent, "a command after QUIT: %.*s", (int)n, l);
    FUZZ_CHECK(!fuzz_has_bare_eol(l, n) && memchr(l, '\0', n) == NULL,
               "a command line with a bare CR, LF or NUL");
    FUZZ_CHECK(n <= 4096, "a command line of %zu octets", n);
    bool secret = has(l, n, PASS) || has(l, n, PASS_B64) || has(l, n, PLAIN_B64);
    FUZZ_CHECK(!secret || (w->tls && w->login), "the password went out without TLS");
    if (w->auth_login && !starts_with(l, n, "MAIL ") && !starts_with(l, n, "QUIT") &&
        !starts_with(l, n, "RSET")) {
        /* A response inside AUTH LOGIN: base64 or "*". */
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((l[i] >= 'A' && l[i] <= 'Z') || (l[i] >= 'a' && l[i] <= 'z') ||
                           (l[i] >= '0' && l[i] <= '9') || l[i] == '+' || l[i] == '/' ||
                           l[i] == '=' || l[i] == '*',
                       "a SASL response that is not base64: %.*s", (int)n, l);
        return;
    }
    w->auth_login = false;
    if (starts_with(l, n, "EHLO ")) {
        FUZZ_CHECK(w->ehlo_allowed, "EHLO again without TLS in between");
        w->ehlo_allowed = false;
        w->ehlo_sent = true;
        w->starttls_sent = false;
    } else if (starts_with(l, n, "HELO ")) {
        FUZZ_CHECK(w->ehlo_sent && !w->in_tx, "HELO not after EHLO");
    } else if (n == 8 && starts_with(l, n, "STARTTLS")) {
        FUZZ_CHECK(w->tls_wanted && !w->tls && w->ehlo_sent && !w->starttls_sent,
                   "STARTTLS where it is not wanted");
        w->starttls_sent = true;
    } else if (starts_with(l, n, "AUTH ")) {
        FUZZ_CHECK(w->login && w->tls && !w->authed_line, "AUTH where it is not allowed");
        FUZZ_CHECK(starts_with(l, n, "AUTH PLAIN " PLAIN_B64) ||
                       (n == 10 && starts_with(l, n, "AUTH LOGIN")),
                   "an AUTH line that is neither: %.*s", (int)n, l);
        w->authed_line = true;
        w->auth_login = n == 10;
    } else if (n == 1 && l[0] == '*') {
        FUZZ_CHECK(w->authed_line, "a SASL cancel outside AUTH");
    } else if (starts_with(l, n, "MAIL FROM:<")) {
        FUZZ_CHECK(w->mail_allowed > 0, "MAIL without a message to send");
        FUZZ_CHECK(!w->in_tx, "MAIL inside a transaction");
        FUZZ_CHECK(!w->owe_rset, "MAIL without RSET after a transaction that ended early");
        FUZZ_CHECK(!w->tls_required || w->tls, "MAIL before TLS, with TLS required");
        FUZZ_CHECK(!w->login || w->authed_line, "MAIL before AUTH, with a login configured");
        w->mail_allowed--;
        w->in_tx = true;
        w->rcpts_sent = 0;
        w->data_sent = false;
        w->body_ended = false;
        w->body_out.len = 0;
        w->body_want.len = 0;
    } else if (starts_with(l, n, "RCPT TO:<")) {
        FUZZ_CHECK(w->in_tx && !w->data_sent, "RCPT outside a transaction");
        FUZZ_CHECK(++w->rcpts_sent <= w->n_rcpts, "more RCPTs than recipients");
    } else if (n == 4 && starts_with(l, n, "DATA")) {
        FUZZ_CHECK(w->in_tx && w->rcpts_sent > 0 && !w->data_sent, "DATA out of order");
        w->data_sent = true;
    } else if (n == 1 && l[0] == '.') {
        /* The empty message a 354 gets when nobody was accepted. */
        FUZZ_CHECK(w->data_sent && !w->body_ended, "a lone dot not after DATA");
    } else if (n == 4 && starts_with(l, n, "RSET")) {
        FUZZ_CHECK(!w->in_tx, "RSET inside a transaction");
        w->owe_rset = false;
    } else if (n == 4 && starts_with(l, n, "QUIT")) {
        w->quit_sent = true;
    } else {
        FUZZ_CHECK(false, "a command the client should not send: %.*s", (int)n, l);
    }
}

/* Takes the output the glue sends. Command output must be whole lines. */
static void pump(struct world *w, bool body)
{
    struct buf *out = smtp_client_output(w->c);
    FUZZ_CHECK(out->len <= SMTP_CLIENT_OUT_MAX, "output of %zu octets", out->len);
    if (body) {
        fuzz_bytes_add(&w->body_out, out->data, out->len);
        buf_reset(out);
        return;
    }
    const uint8_t *p = out->data;
    size_t n = out->len;
    FUZZ_CHECK(n == 0 || (n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n'),
               "command output that is not whole CRLF lines (%zu octets)", n);
    size_t start = 0;
    while (start < n) {
        const uint8_t *lf = memchr(p + start, '\n', n - start);
        size_t end = (size_t)(lf - p) + 1;
        check_command(w, p + start, end - start - 2);
        start = end;
    }
    buf_reset(out);
}

static bool enhanced_ok(const char *e)
{
    if (e[0] == '\0')
        return true;
    if ((e[0] != '2' && e[0] != '4' && e[0] != '5') || e[1] != '.')
        return false;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;
        while (e[i] >= '0' && e[i] <= '9') {
            i++;
            d++;
        }
        if (d < 1 || d > 3)
            return false;
        if (part == 0 && e[i++] != '.')
            return false;
    }
    return e[i] == '\0';
}

/* On DONE and CLOSE: every recipient decided, once, sensibly. */
static void check_results(struct world *w, bool delivered_possible)
{
    size_t n = 0;
    const struct smtp_client_result *r = smtp_client_results(w->c, &n);
    FUZZ_CHECK(n == 0 || n == w->n_rcpts, "%zu results for %zu recipients", n, w->n_rcpts);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(r[i].state == SMTP_CLIENT_DELIVERED || r[i].state == SMTP_CLIENT_DEFERRED ||
                       r[i].state == SMTP_CLIENT_FAILED,
                   "recipient %zu not final (%d)", i, r[i].state);
        FUZZ_CHECK(r[i].stage <= SMTP_CLIENT_STAGE_FINAL, "stage %d", r[i].stage);
        FUZZ_CHECK(r[i].code == 0 || (r[i].code >= 200 && r[i].code <= 559), "code %d", r[i].code);
        FUZZ_CHECK(enhanced_ok(r[i].enhanced), "enhanced code '%s'", r[i].enhanced);
        size_t tl = strnlen(r[i].text, sizeof(r[i].text));
        FUZZ_CHECK(tl < sizeof(r[i].text), "text not NUL-terminated");
        for (size_t k = 0; k < tl; k++)
            FUZZ_CHECK(r[i].text[k] >= 0x20 && r[i].text[k] < 0x7f, "a control byte in a text");
        FUZZ_CHECK(!w->login ||
                       (strstr(r[i].text, PASS) == NULL && strstr(r[i].text, PASS_B64) == NULL &&
                        strstr(r[i].text, PLAIN_B64) == NULL),
                   "the password in a result: %s", r[i].text);
        if (r[i].state == SMTP_CLIENT_DELIVERED) {
            FUZZ_CHECK(delivered_possible && w->body_ended, "delivered without the final dot");
            FUZZ_CHECK(r[i].stage == SMTP_CLIENT_STAGE_FINAL && r[i].code / 100 == 2,
                       "delivered, but not by a 2xx to the final dot");
        }
        if (r[i].state == SMTP_CLIENT_FAILED)
            FUZZ_CHECK(r[i].code == 0 || r[i].code / 100 == 5, "failed on a reply of %d, not 5xx",
                       r[i].code);
    }
}

/* What the message data must look like on the wire (RFC 5321 4.5.2). */
static void expected_data(const uint8_t *p, size_t n, struct fuzz_bytes *want)
{
    struct fuzz_bytes crlf = {0};
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r') {
            fuzz_bytes_add(&crlf, "\r\n", 2);
            if (i + 1 < n && p[i + 1] == '\n')
                i++;
        } else if (p[i] == '\n') {
            fuzz_bytes_add(&crlf, "\r\n", 2);
        } else {
            fuzz_bytes_add(&crlf, p + i, 1);
        }
    }
    want->len = 0;
    fuzz_dot_stuff(crlf.p, crlf.len, want);
    if (want->len > 0 &&
        !(want->len >= 2 && want->p[want->len - 2] == '\r' && want->p[want->len - 1] == '\n'))
        fuzz_bytes_add(want, "\r\n", 2);
    fuzz_bytes_add(want, ".\r\n", 3);
    fuzz_bytes_free(&crlf);
}

/* Plays the glue through one message body, in pieces, with backpressure. */
static void send_body(struct world *w)
{
    static uint8_t big[3 * SMTP_CLIENT_BODY_CHUNK];
    const uint8_t *p;
    size_t n;
    uint32_t pick = fuzz_rng_below(&w->rng, 16);
    if (pick == 0) {
        /* Large enough to meet the high-water mark: lines of one dot, bare LFs. */
        for (size_t i = 0; i < sizeof(big); i++)
            big[i] = i % 3 == 0 ? '.' : i % 3 == 1 ? '\n' : 'x';
        p = big;
        n = sizeof(big);
    } else {
        const char *b = bodies[pick % (sizeof(bodies) / sizeof(bodies[0]))];
        p = (const uint8_t *)b;
        n = strlen(b);
    }
    size_t done = 0;
    unsigned stalls = 0;
    while (done < n) {
        if (!smtp_client_wants_body(w->c)) {
            FUZZ_CHECK(smtp_client_output(w->c)->len >= SMTP_CLIENT_OUT_HIGH,
                       "wants_body says no below the high-water mark");
            FUZZ_CHECK(++stalls < 1000, "no progress in the body");
            pump(w, true); /* the socket drained */
            continue;
        }
        size_t k = fuzz_piece(&w->rng, n - done);
        if (k > SMTP_CLIENT_BODY_CHUNK)
            k = SMTP_CLIENT_BODY_CHUNK;
        int rc = smtp_client_body(w->c, p + done, k);
        FUZZ_CHECK(rc == 0, "a body piece of %zu refused (%d) while wanted", k, rc);
        done += k;
        if (fuzz_rng_below(&w->rng, 4) == 0)
            pump(w, true);
    }
    FUZZ_CHECK(smtp_client_body_end(w->c) == 0, "body_end refused");
    w->body_ended = true;
    FUZZ_CHECK(smtp_client_action(w->c) == SMTP_CLIENT_ACT_NONE, "not waiting after the dot");
    pump(w, true);
    expected_data(p, n, &w->body_want);
    FUZZ_CHECK(fuzz_bytes_eq(&w->body_out, &w->body_want),
               "message data on the wire (%zu octets) is not the body stuffed (%zu octets)",
               w->body_out.len, w->body_want.len);
    FUZZ_CHECK(smtp_client_body(w->c, "x", 1) == -EPROTO, "body taken after body_end");
}

/* --- the run -------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const struct smtp_client_rcpt five[] = {
        {"r1@b.test", STORE_NOTIFY_SUCCESS | STORE_NOTIFY_FAILURE, "r1@b.test"},
        {"r2@b.test", STORE_NOTIFY_NEVER, "r+2=x@b.test"},
        {"r3@b.test", STORE_NOTIFY_DELAY, NULL},
        {"r4@b.test", 0, NULL},
        {"\"r 5\"@b.test", 0, "r5@b.test"},
    };
    static const struct smtp_client_rcpt plain[5] = {
        {"r1@b.test", 0, NULL}, {"r2@b.test", 0, NULL}, {"r3@b.test", 0, NULL},
        {"r4@b.test", 0, NULL}, {"r5@b.test", 0, NULL},
    };
    uint8_t f = data[0];
    struct world w = {0};
    fuzz_rng_init(&w.rng, data[1]);
    static const enum smtp_client_tls modes[] = {
        SMTP_CLIENT_TLS_NONE, SMTP_CLIENT_TLS_OPPORTUNISTIC, SMTP_CLIENT_TLS_REQUIRED,
        SMTP_CLIENT_TLS_REQUIRED};
    struct smtp_client_config cfg = {
        .helo_name = "client.a.test",
        .tls = modes[f & 3],
        .tls_active = (f & 3) == 3,
        .auth_user = f & 4 ? USER : NULL,
        .auth_password = f & 4 ? PASS : NULL,
    };
    w.tls_wanted = cfg.tls != SMTP_CLIENT_TLS_NONE;
    w.tls_required = cfg.tls == SMTP_CLIENT_TLS_REQUIRED;
    w.tls = cfg.tls_active;
    w.login = f & 4;
    w.ehlo_allowed = true;
    struct smtp_client_msg msg = {
        .from = f & 0x10 ? "al\xc3\xaf"
                           "ce@a.test"
                         : "alice@a.test",
        .rcpts = f & 0x20 ? five : plain,
        .n_rcpts = f & 0x80 ? 5 : 1,
        .size = f & 0x40 ? 5000 : 0,
        .eight_bit = f & 8,
        .needs_smtputf8 = f & 0x10,
        .ret = f & 0x20 ? STORE_RET_HDRS : STORE_RET_DEFAULT,
        .envid = f & 0x20 ? "env+id=1" : NULL,
    };
    unsigned messages = f & 0x80 ? 2 : 1;

    FUZZ_CHECK(smtp_client_new(&cfg, &w.c) == 0, "smtp_client_new refused a good config");
    FUZZ_CHECK(smtp_client_next(w.c, &msg) == 0, "next() refused the first message");
    w.n_rcpts = msg.n_rcpts;
    w.mail_allowed = 1;
    messages--;
    FUZZ_CHECK(smtp_client_next(w.c, &msg) == -EBUSY, "a second next() while one waits");
    pump(&w, false);

    const uint8_t *in = data + 2;
    size_t n = size - 2, fed = 0;
    uint8_t *pend = malloc(n ? n : 1);
    size_t plen = 0;
    bool closed = false;
    bool stuck = false; /* the last feed took nothing, and nothing changed since */
    for (unsigned turns = 0; !closed; turns++) {
        FUZZ_CHECK(turns < 4 * size + 100, "the conversation does not end");
        (void)smtp_client_timeout_s(w.c);
        enum smtp_client_action a = smtp_client_action(w.c);
        if (a != SMTP_CLIENT_ACT_NONE)
            stuck = false; /* what is kept may be read after this */
        switch (a) {
        case SMTP_CLIENT_ACT_CLOSE:
            check_results(&w, true);
            FUZZ_CHECK(smtp_client_next(w.c, &msg) == -EPIPE, "next() after CLOSE");
            closed = true;
            break;
        case SMTP_CLIENT_ACT_STARTTLS:
            /* The glue throws away what came in plaintext behind the 220;
             * here that happens one time in four, and otherwise those bytes
             * stand for the first decrypted ones, so that a scripted server
             * gets past STARTTLS whatever the read boundaries. */
            if (fuzz_rng_below(&w.rng, 4) == 0)
                plen = 0;
            if (fuzz_rng_below(&w.rng, 8) == 0) {
                smtp_client_tls_failed(w.c);
                FUZZ_CHECK(smtp_client_action(w.c) == SMTP_CLIENT_ACT_CLOSE,
                           "no CLOSE after a failed handshake");
            } else {
                w.tls = true;
                w.ehlo_allowed = true;
                w.authed_line = false;
                smtp_client_tls_started(w.c);
                FUZZ_CHECK(smtp_client_tls_used(w.c), "tls_used is false after TLS");
            }
            pump(&w, false);
            break;
        case SMTP_CLIENT_ACT_BODY:
            FUZZ_CHECK(w.data_sent && w.in_tx, "a body wanted without DATA");
            switch (fuzz_rng_below(&w.rng, 32)) {
            case 0: /* the connection breaks while the message goes out */
                smtp_client_connection_lost(w.c);
                break;
            case 1: /* the daemon stops: no QUIT inside the data */
                smtp_client_quit(w.c);
                break;
            default:
                send_body(&w);
                break;
            }
            if (smtp_client_action(w.c) == SMTP_CLIENT_ACT_CLOSE)
                FUZZ_CHECK(smtp_client_output(w.c)->len == 0, "output on a broken body");
            break;
        case SMTP_CLIENT_ACT_DONE:
            check_results(&w, true);
            if (w.in_tx && !w.body_ended)
                w.owe_rset = true;
            w.in_tx = false;
            w.mail_allowed = 0; /* a message decided before MAIL (SIZE, SMTPUTF8) */
            if (messages > 0) {
                messages--;
                FUZZ_CHECK(smtp_client_next(w.c, &msg) == 0, "next() refused on DONE");
                w.mail_allowed = 1;
                w.body_ended = false;
            } else {
                smtp_client_quit(w.c);
            }
            pump(&w, false);
            break;
        case SMTP_CLIENT_ACT_NONE:
            if (fuzz_rng_below(&w.rng, 64) == 0) {
                /* The daemon stops in the middle of a conversation. */
                smtp_client_quit(w.c);
                pump(&w, false);
                if (smtp_client_action(w.c) == SMTP_CLIENT_ACT_NONE)
                    FUZZ_CHECK(w.quit_sent, "quit() left the client waiting without QUIT");
                break;
            }
            if (fed == n && (plen == 0 || stuck)) {
                if (fuzz_rng_below(&w.rng, 2))
                    smtp_client_connection_lost(w.c);
                else
                    smtp_client_timed_out(w.c);
                FUZZ_CHECK(smtp_client_action(w.c) == SMTP_CLIENT_ACT_CLOSE,
                           "no CLOSE after the connection was lost");
                break;
            }
            if (fed < n) {
                size_t k = fuzz_piece(&w.rng, n - fed);
                memcpy(pend + plen, in + fed, k);
                plen += k;
                fed += k;
            }
            size_t used = (size_t)-1;
            smtp_client_feed(w.c, (const char *)pend, plen, &used);
            FUZZ_CHECK(used <= plen, "consumed %zu of %zu", used, plen);
            pump(&w, false);
            if (smtp_client_action(w.c) == SMTP_CLIENT_ACT_STARTTLS) {
                FUZZ_CHECK(w.starttls_sent && used >= 4 && pend[used - 1] == '\n',
                           "STARTTLS acted on without its 220 line at the end");
                size_t s = used - 1;
                while (s > 0 && pend[s - 1] != '\n')
                    s--;
                FUZZ_CHECK(memcmp(pend + s, "220", 3) == 0, "STARTTLS on a reply that is not 220");
            }
            memmove(pend, pend + used, plen - used);
            plen -= used;
            stuck = used == 0;
            break;
        }
    }
    free(pend);
    smtp_client_free(&w.c);
    FUZZ_CHECK(w.c == NULL, "smtp_client_free did not clear the pointer");
    fuzz_bytes_free(&w.body_out);
    fuzz_bytes_free(&w.body_want);
    return 0;
}
