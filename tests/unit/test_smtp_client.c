/*
 * test_smtp_client.c — the SMTP client state machine (smtpd/smtp_client.h)
 * in conversations: each step plays the server (reply bytes in) or the glue
 * (a message, TLS up, body bytes, a lost connection) and names the exact
 * client output it expects, then the action and the recipients' results.
 *
 * Each conversation runs twice: every step's bytes in one call, then one
 * byte per call (server bytes kept by the test when not consumed, as the
 * glue does; body bytes one per smtp_client_body call), and both runs must
 * give the same output, byte for byte. The reply parser has its own table,
 * run the same two ways.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "smtp_client.h"
#include "tap.h"

/* --- the reply parser ------------------------------------------------------ */

struct reply_case {
    const char *name;
    const char *in;
    size_t len;
    int rc; /* 1: a complete reply; <0: that error */
    int code;
    const char *enhanced;
    const char *text;
    size_t lines;
};

/* clang-format off */
#define RC(name, in, code, enh, text, lines) {name, in, sizeof(in) - 1, 1, code, enh, text, lines}
#define RE(name, in, err) {name, in, sizeof(in) - 1, -(err), 0, NULL, NULL, 0}
/* clang-format on */

static const struct reply_case reply_cases[] = {
    RC("one line", "250 ok\r\n", 250, "", "ok", 1),
    RC("two lines", "250-first\r\n250 second\r\n", 250, "", "first second", 2),
    RC("enhanced code", "550 5.1.1 User unknown\r\n", 550, "5.1.1", "User unknown", 1),
    RC("enhanced code on each line",
       "550-5.1.1 The account does not exist.\r\n550-5.1.1 Please check\r\n550 5.1.1 it. - "
       "gsmtp\r\n",
       550, "5.1.1", "The account does not exist. Please check it. - gsmtp", 3),
    RC("code alone", "250\r\n", 250, "", "", 1),
    RC("empty continuation", "250-\r\n250 x\r\n", 250, "", "x", 2),
    RC("enhanced code alone", "452 4.5.3\r\n", 452, "4.5.3", "", 1),
    RC("two spaces after the code", "250  2.0.0   Ok\r\n", 250, "", " 2.0.0   Ok", 1),
    RC("not an enhanced code: no space after", "250 2.0.0Ok\r\n", 250, "", "2.0.0Ok", 1),
    RC("not an enhanced code: wrong class", "550 4.1.1 x\r\n", 550, "", "4.1.1 x", 1),
    RC("not an enhanced code: 3xx", "354 3.0.0 go\r\n", 354, "", "3.0.0 go", 1),
    RC("not an enhanced code: four digits", "250 2.1234.0 x\r\n", 250, "", "2.1234.0 x", 1),
    RC("bare LF ends a line", "250-a\n250 b\n", 250, "", "a b", 2),
    RC("control bytes shown as ?",
       "250 a\x01"
       "b\x7f\xc3\xa9\r\n",
       250, "", "a?b???", 1),
    RC("a CR inside a line", "250 a\rb\r\n", 250, "", "a?b", 1),
    RC("tab", "220 mx\tready\r\n", 220, "", "mx?ready", 1),
    RE("letters in the code", "2x0 ok\r\n", SMTP_CLIENT_RERR_SYNTAX),
    RE("no space after the code", "250x\r\n", SMTP_CLIENT_RERR_SYNTAX),
    RE("two digits", "25\r\n", SMTP_CLIENT_RERR_SYNTAX),
    RE("first digit 6", "650 x\r\n", SMTP_CLIENT_RERR_SYNTAX),
    RE("first digit 1", "150 x\r\n", SMTP_CLIENT_RERR_SYNTAX),
    RE("second digit 6", "260 x\r\n", SMTP_CLIENT_RERR_SYNTAX),
    RE("empty line", "\r\n", SMTP_CLIENT_RERR_SYNTAX),
    RE("HTTP", "HTTP/1.1 400 Bad Request\r\n", SMTP_CLIENT_RERR_SYNTAX),
    RE("code changes", "250-a\r\n251 b\r\n", SMTP_CLIENT_RERR_CODE_CHANGED),
};

/*
 * Parses in[] as the glue would: all at once, or one more byte per call,
 * keeping what was not consumed. Returns the first complete reply's result
 * or the first error; *r holds the reply.
 */
static int parse_reply(const char *in, size_t len, bool trickle, struct smtp_client_reply *r)
{
    smtp_client_reply_init(r);
    size_t start = 0, avail = trickle ? 0 : len;
    for (;;) {
        struct smtp_client_line line;
        size_t used = 0;
        int rc = smtp_client_reply_next(r, in + start, avail - start, &used, &line);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            start += used;
            if (r->complete)
                return 1;
            continue;
        }
        if (avail == len)
            return 0;
        avail++;
    }
}

static void test_reply_parser(void)
{
    for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
        const struct reply_case *t = &reply_cases[i];
        for (int trickle = 0; trickle <= 1; trickle++) {
            struct smtp_client_reply r;
            const char *how = trickle ? "byte by byte" : "whole";
            int rc = parse_reply(t->in, t->len, trickle, &r);
            is_int(rc, t->rc, "reply %s (%s): result", t->name, how);
            if (t->rc != 1 || rc != 1)
                continue;
            is_int(r.code, t->code, "reply %s (%s): code", t->name, how);
            is_str(r.enhanced, t->enhanced, "reply %s (%s): enhanced code", t->name, how);
            is_str(r.text, t->text, "reply %s (%s): text", t->name, how);
            is_int(r.lines, t->lines, "reply %s (%s): lines", t->name, how);
        }
    }
}

/* Long lines, long replies, long text: bounded, and never a crash. */
static void test_reply_limits(void)
{
    static char big[SMTP_CLIENT_REPLY_MAX + 4096];
    struct smtp_client_reply r;

    /* A line of exactly SMTP_CLIENT_LINE_MAX octets with its CRLF is taken. */
    memcpy(big, "250 ", 4);
    memset(big + 4, 'a', SMTP_CLIENT_LINE_MAX - 6);
    memcpy(big + SMTP_CLIENT_LINE_MAX - 2, "\r\n", 2);
    is_int(parse_reply(big, SMTP_CLIENT_LINE_MAX, false, &r), 1, "a line of 2048 octets is taken");
    is_int(r.text_len, SMTP_CLIENT_TEXT_MAX, "its text is cut at %d octets", SMTP_CLIENT_TEXT_MAX);
    ok(r.cut && strlen(r.text) == SMTP_CLIENT_TEXT_MAX, "and says it was cut");

    /* One more octet and it is an error, whole or byte by byte. */
    memcpy(big, "250 ", 4);
    memset(big + 4, 'a', SMTP_CLIENT_LINE_MAX - 5);
    memcpy(big + SMTP_CLIENT_LINE_MAX - 1, "\r\n", 2);
    for (int trickle = 0; trickle <= 1; trickle++)
        is_int(parse_reply(big, SMTP_CLIENT_LINE_MAX + 1, trickle, &r),
               -SMTP_CLIENT_RERR_LINE_TOO_LONG, "a line of 2049 octets is refused (%s)",
               trickle ? "byte by byte" : "whole");
    /* No line end at all. */
    memset(big, 'x', 3000);
    is_int(parse_reply(big, 3000, false, &r), -SMTP_CLIENT_RERR_LINE_TOO_LONG,
           "3000 octets without a line end are refused");
    is_int(parse_reply(big, 2047, false, &r), 0, "2047 octets without a line end: need more");

    /* A multi-line reply up to 64 KiB is taken; past it, refused. */
    size_t n = 0;
    while (n + 1000 + 12 < SMTP_CLIENT_REPLY_MAX) {
        memcpy(big + n, "250-", 4);
        memset(big + n + 4, 'k', 994);
        memcpy(big + n + 998, "\r\n", 2);
        n += 1000;
    }
    memcpy(big + n, "250 last\r\n", 10);
    is_int(parse_reply(big, n + 10, false, &r), 1, "a reply of %zu octets is taken", n + 10);
    is_int(r.text_len, SMTP_CLIENT_TEXT_MAX, "its text is cut too");
    memcpy(big + n, "250-", 4);
    memset(big + n + 4, 'k', 994);
    memcpy(big + n + 998, "\r\n250 last\r\n", 12);
    is_int(parse_reply(big, n + 1010, false, &r), -SMTP_CLIENT_RERR_REPLY_TOO_LONG,
           "a reply past 64 KiB is refused");
}

/* --- conversations ---------------------------------------------------------- */

enum op {
    END,
    SERVER,    /* feed bytes; expect output */
    ACTION,    /* smtp_client_action() == arg */
    NEXT,      /* smtp_client_next(msg) == arg; expect output */
    TLS_UP,    /* drop unconsumed input, smtp_client_tls_started; expect output */
    TLS_FAIL,  /* smtp_client_tls_failed */
    BODY,      /* smtp_client_body(bytes); expect output */
    BODY_END,  /* smtp_client_body_end; expect output */
    QUIT,      /* smtp_client_quit; expect output */
    LOST,      /* smtp_client_connection_lost */
    TIMEOUT,   /* smtp_client_timed_out */
    RESULT,    /* recipient arg's result */
    N_RESULTS, /* arg results */
    PENDING,   /* the unconsumed server bytes are exactly bytes */
    TLS_USED,  /* smtp_client_tls_used() == arg */
    DSN_USED,  /* smtp_client_dsn_offered() == arg */
    NAME,      /* smtp_client_server_name() is bytes */
    WAIT,      /* smtp_client_timeout_s() == arg */
};

struct step {
    enum op op;
    const char *in; /* SERVER, BODY, PENDING, NAME: bytes; RESULT: text prefix */
    size_t len;
    const char *out; /* the client's output, exactly; NULL: nothing checked */
    int arg;
    const struct smtp_client_msg *msg;
    enum smtp_client_state state;
    int code;
    const char *enhanced;
    enum smtp_client_stage stage;
};

/* clang-format off */
#define SRV(in, out)       {SERVER, in, sizeof(in) - 1, out, 0, NULL, 0, 0, NULL, 0}
#define ACT(a)             {ACTION, NULL, 0, NULL, SMTP_CLIENT_ACT_##a, NULL, 0, 0, NULL, 0}
#define NEXT_MSG(m, rc, out) {NEXT, NULL, 0, out, rc, m, 0, 0, NULL, 0}
#define TLS_OK(out)        {TLS_UP, NULL, 0, out, 0, NULL, 0, 0, NULL, 0}
#define TLS_BAD            {TLS_FAIL, NULL, 0, "", 0, NULL, 0, 0, NULL, 0}
#define BODY_IN(in, out)   {BODY, in, sizeof(in) - 1, out, 0, NULL, 0, 0, NULL, 0}
#define BODY_DONE(out)     {BODY_END, NULL, 0, out, 0, NULL, 0, 0, NULL, 0}
#define QUIT_NOW(out)      {QUIT, NULL, 0, out, 0, NULL, 0, 0, NULL, 0}
#define CONN_LOST          {LOST, NULL, 0, "", 0, NULL, 0, 0, NULL, 0}
#define TIMES_OUT          {TIMEOUT, NULL, 0, "", 0, NULL, 0, 0, NULL, 0}
#define RES(i, st, code, enh, stage, text) \
    {RESULT, text, 0, NULL, i, NULL, SMTP_CLIENT_##st, code, enh, SMTP_CLIENT_STAGE_##stage}
#define N_RES(n)           {N_RESULTS, NULL, 0, NULL, n, NULL, 0, 0, NULL, 0}
#define PEND(bytes)        {PENDING, bytes, sizeof(bytes) - 1, NULL, 0, NULL, 0, 0, NULL, 0}
#define IS_TLS(b)          {TLS_USED, NULL, 0, NULL, b, NULL, 0, 0, NULL, 0}
#define IS_DSN(b)          {DSN_USED, NULL, 0, NULL, b, NULL, 0, 0, NULL, 0}
#define IS_NAME(s)         {NAME, s, 0, NULL, 0, NULL, 0, 0, NULL, 0}
#define IS_WAIT(s)         {WAIT, NULL, 0, NULL, s, NULL, 0, 0, NULL, 0}
#define THE_END            {END, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0}
/* clang-format on */

#define HELO "client.a.test"
#define USER "alice@a.test"
#define PASS "s3cret"
#define PLAIN_B64 "AGFsaWNlQGEudGVzdABzM2NyZXQ=" /* \0alice@a.test\0s3cret */
#define USER_B64 "YWxpY2VAYS50ZXN0"
#define PASS_B64 "czNjcmV0"

/* What servers say. */
#define GREET "220 mx.b.test ESMTP Postfix\r\n"
#define EHLO "EHLO " HELO "\r\n"
#define EHLO_PLAIN                                                                                 \
    "250-mx.b.test\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_PIPE                                                                                  \
    "250-mx.b.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-DSN\r\n"          \
    "250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_TLS "250-mx.b.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
#define OK_MAIL "250 2.1.0 Ok\r\n"
#define OK_RCPT "250 2.1.5 Ok\r\n"
#define GO "354 End data with <CR><LF>.<CR><LF>\r\n"
#define QUEUED "250 2.0.0 Ok: queued as 4XyZ\r\n"
#define BYE "221 2.0.0 Bye\r\n"

/* What the client says. */
#define MAIL "MAIL FROM:<alice@a.test>\r\n"
#define TO_BOB "RCPT TO:<bob@b.test>\r\n"
#define TO_CAROL "RCPT TO:<carol@b.test>\r\n"
#define TO_DAVE "RCPT TO:<dave@b.test>\r\n"

static const struct smtp_client_rcpt r_bob[] = {{"bob@b.test", 0, NULL}};
static const struct smtp_client_rcpt r_three[] = {
    {"bob@b.test", 0, NULL}, {"carol@b.test", 0, NULL}, {"dave@b.test", 0, NULL}};
static const struct smtp_client_rcpt r_five[] = {{"r1@b.test", 0, NULL},
                                                 {"r2@b.test", 0, NULL},
                                                 {"r3@b.test", 0, NULL},
                                                 {"r4@b.test", 0, NULL},
                                                 {"r5@b.test", 0, NULL}};
static const struct smtp_client_rcpt r_dsn[] = {
    {"bob@b.test", STORE_NOTIFY_SUCCESS | STORE_NOTIFY_FAILURE, "Bob@B.test"},
    {"carol@b.test", STORE_NOTIFY_NEVER, "c+x=y@b.test"},
    {"dave@b.test", STORE_NOTIFY_DELAY, "d\xc3\xa9@b.test"}};
static const struct smtp_client_rcpt r_utf8[] = {{"j\xc3\xb6rg@b.test", 0, NULL}};

static const struct smtp_client_msg m_one = {"alice@a.test",    r_bob, 1, 0, false, false,
                                             STORE_RET_DEFAULT, NULL};
static const struct smtp_client_msg m_three = {"alice@a.test", r_three,           3,   1234, true,
                                               false,          STORE_RET_DEFAULT, NULL};
static const struct smtp_client_msg m_five = {"alice@a.test",    r_five, 5, 0, false, false,
                                              STORE_RET_DEFAULT, NULL};
static const struct smtp_client_msg m_bounce = {"",  r_bob, 1, 0, false, false, STORE_RET_DEFAULT,
                                                NULL};
static const struct smtp_client_msg m_big = {"alice@a.test",    r_bob, 1, 5000, false, false,
                                             STORE_RET_DEFAULT, NULL};
static const struct smtp_client_msg m_needs_utf8 = {"alice@a.test",    r_bob, 1, 0, true, true,
                                                    STORE_RET_DEFAULT, NULL};
static const struct smtp_client_msg m_utf8_rcpt = {"alice@a.test",    r_utf8, 1, 0, false, false,
                                                   STORE_RET_DEFAULT, NULL};
static const struct smtp_client_msg m_dsn = {"alice@a.test", r_dsn,         3, 0, false, false,
                                             STORE_RET_FULL, "QQ314159+x=y"};

struct conv {
    const char *name;
    enum smtp_client_tls tls;
    bool tls_active;
    const char *user, *password;
    const struct step *steps;
};

/* --- plain delivery, pipelining, per-recipient results --- */

static const struct step plain[] = {
    NEXT_MSG(&m_one, 0, ""), /* before the greeting: the message waits */
    ACT(NONE),
    IS_WAIT(300),
    SRV(GREET, EHLO),
    IS_NAME("mx.b.test"),
    IS_TLS(0),
    SRV(EHLO_PLAIN, MAIL),
    SRV(OK_MAIL, TO_BOB),
    SRV(OK_RCPT, "DATA\r\n"),
    IS_WAIT(120),
    ACT(NONE),
    SRV(GO, ""),
    ACT(BODY),
    BODY_IN("Subject: hi\r\n\r\nHello.\r\n", "Subject: hi\r\n\r\nHello.\r\n"),
    BODY_DONE(".\r\n"),
    ACT(NONE),
    IS_WAIT(600),
    RES(0, PENDING, 0, "", GREETING, ""),
    SRV(QUEUED, ""),
    ACT(DONE),
    N_RES(1),
    RES(0, DELIVERED, 250, "2.0.0", FINAL, "Ok: queued as 4XyZ"),
    QUIT_NOW("QUIT\r\n"),
    ACT(NONE),
    NEXT_MSG(&m_one, -EPIPE, ""),
    SRV(BYE, ""),
    ACT(CLOSE),
    RES(0, DELIVERED, 250, "2.0.0", FINAL, "Ok"),
    THE_END,
};

static const struct step pipelined[] = {
    SRV(GREET, EHLO),
    ACT(NONE),
    SRV(EHLO_PIPE, ""),
    ACT(DONE), /* idle: no message yet */
    N_RES(0),
    NEXT_MSG(&m_three, 0,
             "MAIL FROM:<alice@a.test> SIZE=1234 BODY=8BITMIME\r\n" TO_BOB TO_CAROL TO_DAVE
             "DATA\r\n"),
    NEXT_MSG(&m_one, -EBUSY, ""),
    SRV(OK_MAIL OK_RCPT, ""),
    SRV("550-5.1.1 <carol@b.test>: Recipient address rejected:\r\n550 5.1.1 User unknown\r\n", ""),
    SRV(OK_RCPT GO, ""),
    ACT(BODY),
    BODY_IN("Hello.\r\n", "Hello.\r\n"),
    BODY_DONE(".\r\n"),
    SRV(QUEUED, ""),
    ACT(DONE),
    RES(0, DELIVERED, 250, "2.0.0", FINAL, "Ok: queued"),
    RES(1, FAILED, 550, "5.1.1", RCPT, "<carol@b.test>: Recipient address rejected: User unknown"),
    RES(2, DELIVERED, 250, "2.0.0", FINAL, "Ok: queued"),
    /* The next message goes straight on: no RSET after a completed one. */
    NEXT_MSG(&m_bounce, 0, "MAIL FROM:<>\r\n" TO_BOB "DATA\r\n"),
    N_RES(1),
    SRV(OK_MAIL OK_RCPT GO, ""),
    BODY_DONE(".\r\n"),
    SRV("250 2.0.0 Ok: queued as 5AbC\r\n", ""),
    RES(0, DELIVERED, 250, "2.0.0", FINAL, "Ok: queued as 5AbC"),
    QUIT_NOW("QUIT\r\n"),
    SRV(BYE, ""),
    ACT(CLOSE),
    THE_END,
};

static const struct step one_refused[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PLAIN, "MAIL FROM:<alice@a.test> SIZE=1234 BODY=8BITMIME\r\n"),
    SRV(OK_MAIL, TO_BOB),
    SRV(OK_RCPT, TO_CAROL),
    SRV("450 4.2.0 <carol@b.test>: Recipient address rejected: Greylisted\r\n", TO_DAVE),
    SRV("550 5.1.1 <dave@b.test>: unknown\r\n", "DATA\r\n"),
    SRV(GO, ""),
    BODY_DONE(".\r\n"),
    SRV("554 5.7.1 Message rejected as spam\r\n", ""),
    ACT(DONE),
    RES(0, FAILED, 554, "5.7.1", FINAL, "Message rejected as spam"),
    RES(1, DEFERRED, 450, "4.2.0", RCPT, "<carol@b.test>: Recipient address rejected: Greylisted"),
    RES(2, FAILED, 550, "5.1.1", RCPT, "<dave@b.test>: unknown"),
    THE_END,
};

/* No recipient taken: no DATA, no body; the next message starts with RSET. */
static const struct step all_refused[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PLAIN, "MAIL FROM:<alice@a.test> SIZE=1234 BODY=8BITMIME\r\n"),
    SRV(OK_MAIL, TO_BOB),
    SRV("550 5.1.1 no bob\r\n", TO_CAROL),
    SRV("550 5.1.1 no carol\r\n", TO_DAVE),
    SRV("550 5.1.1 no dave\r\n", ""),
    ACT(DONE),
    RES(0, FAILED, 550, "5.1.1", RCPT, "no bob"),
    RES(1, FAILED, 550, "5.1.1", RCPT, "no carol"),
    RES(2, FAILED, 550, "5.1.1", RCPT, "no dave"),
    NEXT_MSG(&m_one, 0, "RSET\r\n"),
    IS_WAIT(300),
    SRV("250 2.0.0 Ok\r\n", MAIL),
    SRV(OK_MAIL, TO_BOB),
    SRV(OK_RCPT, "DATA\r\n"),
    SRV(GO, ""),
    BODY_IN("x", "x"),
    BODY_DONE("\r\n.\r\n"),
    SRV(QUEUED, ""),
    RES(0, DELIVERED, 250, "2.0.0", FINAL, "Ok"),
    THE_END,
};

static const struct step all_refused_pipelined[] = {
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE, ""),
    NEXT_MSG(&m_three, 0,
             "MAIL FROM:<alice@a.test> SIZE=1234 BODY=8BITMIME\r\n" TO_BOB TO_CAROL TO_DAVE
             "DATA\r\n"),
    SRV(OK_MAIL "550 5.1.1 no bob\r\n550 5.1.1 no carol\r\n550 5.1.1 no dave\r\n", ""),
    ACT(NONE), /* DATA's answer is still due */
    SRV("554 5.5.1 Error: no valid recipients\r\n", ""),
    ACT(DONE),
    RES(0, FAILED, 550, "5.1.1", RCPT, "no bob"),
    RES(2, FAILED, 550, "5.1.1", RCPT, "no dave"),
    /* A server that says 354 to that DATA gets an empty message. */
    NEXT_MSG(&m_one, 0, "RSET\r\n"),
    SRV("250 2.0.0 Ok\r\n", MAIL TO_BOB "DATA\r\n"),
    SRV(OK_MAIL "550 5.1.1 no bob\r\n" GO, ".\r\n"),
    ACT(NONE),
    SRV("554 5.5.1 No recipients\r\n", ""),
    ACT(DONE),
    RES(0, FAILED, 550, "5.1.1", RCPT, "no bob"),
    NEXT_MSG(&m_one, 0, "RSET\r\n"),
    THE_END,
};

static const struct step mail_deferred[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PLAIN, "MAIL FROM:<alice@a.test> SIZE=1234 BODY=8BITMIME\r\n"),
    SRV("451 4.3.0 Temporary lookup failure\r\n", ""),
    ACT(DONE),
    RES(0, DEFERRED, 451, "4.3.0", MAIL, "Temporary lookup failure"),
    RES(1, DEFERRED, 451, "4.3.0", MAIL, "Temporary lookup failure"),
    RES(2, DEFERRED, 451, "4.3.0", MAIL, "Temporary lookup failure"),
    NEXT_MSG(&m_one, 0, "RSET\r\n"),
    THE_END,
};

static const struct step mail_refused_pipelined[] = {
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE, ""),
    NEXT_MSG(&m_three, 0,
             "MAIL FROM:<alice@a.test> SIZE=1234 BODY=8BITMIME\r\n" TO_BOB TO_CAROL TO_DAVE
             "DATA\r\n"),
    SRV("553 5.7.1 <alice@a.test>: Sender address rejected\r\n", ""),
    RES(1, FAILED, 553, "5.7.1", MAIL, "<alice@a.test>: Sender address rejected"),
    ACT(NONE),
    /* The pipelined commands' answers are read and change nothing. */
    SRV("503 5.5.1 Error: need MAIL command\r\n250 2.1.5 Ok\r\n", ""),
    SRV("503 5.5.1 Error: need MAIL command\r\n554 5.5.1 Error: no valid recipients\r\n", ""),
    ACT(DONE),
    RES(0, FAILED, 553, "5.7.1", MAIL, "<alice@a.test>: Sender address rejected"),
    RES(1, FAILED, 553, "5.7.1", MAIL, "<alice@a.test>: Sender address rejected"),
    RES(2, FAILED, 553, "5.7.1", MAIL, "<alice@a.test>: Sender address rejected"),
    THE_END,
};

static const struct step data_refused[] = {
    SRV(GREET, EHLO),
    SRV(EHLO_PLAIN, ""),
    NEXT_MSG(&m_one, 0, MAIL),
    SRV(OK_MAIL, TO_BOB),
    SRV(OK_RCPT, "DATA\r\n"),
    SRV("451 4.3.0 Try again\r\n", ""),
    ACT(DONE),
    RES(0, DEFERRED, 451, "4.3.0", DATA, "Try again"),
    NEXT_MSG(&m_one, 0, "RSET\r\n"),
    THE_END,
};

/* --- greeting, EHLO --- */

static const struct step greeting_554[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV("554 5.7.1 mx.b.test: no SMTP service here\r\n", "QUIT\r\n"),
    ACT(NONE),
    IS_NAME(""),
    RES(0, FAILED, 554, "5.7.1", GREETING, "mx.b.test: no SMTP service here"),
    RES(2, FAILED, 554, "5.7.1", GREETING, "mx.b.test"),
    NEXT_MSG(&m_one, -EPIPE, ""),
    SRV(BYE, ""),
    ACT(CLOSE),
    THE_END,
};

static const struct step greeting_421[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV("421 4.3.2 Too many connections\r\n", ""),
    ACT(CLOSE),
    RES(0, DEFERRED, 421, "4.3.2", GREETING, "Too many connections"),
    RES(2, DEFERRED, 421, "4.3.2", GREETING, "Too many connections"),
    THE_END,
};

static const struct step greeting_other[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV("520 go away\r\n", "QUIT\r\n"),
    RES(0, DEFERRED, 520, "", GREETING, "go away"),
    THE_END,
};

static const struct step helo_fallback[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV("220-mx.b.test ESMTP\r\n220 the second line\r\n", EHLO),
    IS_NAME("mx.b.test"),
    SRV("500 5.5.1 Command unrecognized\r\n", "HELO " HELO "\r\n"),
    /* No SIZE=, no BODY= after HELO. */
    SRV("250 mx.b.test\r\n", MAIL),
    SRV(OK_MAIL, TO_BOB),
    THE_END,
};

static const struct step helo_refused[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV("502 5.5.1 no\r\n", "HELO " HELO "\r\n"),
    SRV("550 5.7.1 Your HELO name is wrong\r\n", "QUIT\r\n"),
    RES(0, FAILED, 550, "5.7.1", EHLO, "Your HELO name is wrong"),
    THE_END,
};

static const struct step ehlo_deferred[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV("450 4.7.1 slow down\r\n", "QUIT\r\n"),
    RES(0, DEFERRED, 450, "4.7.1", EHLO, "slow down"),
    THE_END,
};

/* --- STARTTLS --- */

static const struct step starttls[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_TLS, "STARTTLS\r\n"),
    IS_WAIT(300),
    /* What a server sends behind its 220 is not consumed: an injection. */
    SRV("220 2.0.0 Ready to start TLS\r\n250 2.1.0 injected\r\n", ""),
    ACT(STARTTLS),
    IS_WAIT(0),
    PEND("250 2.1.0 injected\r\n"),
    IS_TLS(0),
    TLS_OK(EHLO),
    IS_TLS(1),
    ACT(NONE),
    /* Over TLS: no PIPELINING this time, and no STARTTLS again. */
    SRV("250-mx.b.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n", MAIL),
    SRV(OK_MAIL, TO_BOB),
    SRV(OK_RCPT, "DATA\r\n"),
    SRV(GO, ""),
    BODY_DONE(".\r\n"),
    SRV(QUEUED, ""),
    RES(0, DELIVERED, 250, "2.0.0", FINAL, "Ok"),
    IS_TLS(1),
    THE_END,
};

static const struct step starttls_required_missing[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE, "QUIT\r\n"),
    RES(0, DEFERRED, 0, "4.7.4", STARTTLS, "TLS required but not offered"),
    RES(2, DEFERRED, 0, "4.7.4", STARTTLS, "TLS required but not offered"),
    SRV(BYE, ""),
    ACT(CLOSE),
    THE_END,
};

static const struct step starttls_454_opportunistic[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_TLS, "STARTTLS\r\n"),
    /* The server never started TLS: plaintext goes on, as before it. */
    SRV("454 4.7.0 TLS not available due to local problem\r\n", MAIL TO_BOB "DATA\r\n"),
    IS_TLS(0),
    SRV(OK_MAIL OK_RCPT GO, ""),
    BODY_DONE(".\r\n"),
    SRV(QUEUED, ""),
    RES(0, DELIVERED, 250, "2.0.0", FINAL, "Ok"),
    THE_END,
};

static const struct step starttls_454_required[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_TLS, "STARTTLS\r\n"),
    SRV("454 4.7.0 TLS not available due to local problem\r\n", "QUIT\r\n"),
    RES(0, DEFERRED, 454, "4.7.0", STARTTLS, "TLS not available due to local problem"),
    THE_END,
};

static const struct step starttls_handshake_fails[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_TLS, "STARTTLS\r\n"),
    SRV("220 2.0.0 Ready\r\n", ""),
    ACT(STARTTLS),
    TLS_BAD,
    ACT(CLOSE),
    RES(0, DEFERRED, 0, "4.7.5", STARTTLS, "TLS handshake failed"),
    THE_END,
};

static const struct step tls_none[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_TLS, MAIL TO_BOB "DATA\r\n"),
    THE_END,
};

/* --- AUTH --- */

static const struct step auth_plain[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    /* AUTH before TLS is never tried, even when offered. */
    SRV("250-mx.b.test\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n", "STARTTLS\r\n"),
    SRV("220 2.0.0 Ready\r\n", ""),
    TLS_OK(EHLO),
    SRV("250-mx.b.test\r\n250-PIPELINING\r\n250 AUTH LOGIN PLAIN\r\n",
        "AUTH PLAIN " PLAIN_B64 "\r\n"),
    SRV("235 2.7.0 Authentication successful\r\n", MAIL TO_BOB "DATA\r\n"),
    SRV(OK_MAIL OK_RCPT GO, ""),
    BODY_DONE(".\r\n"),
    SRV(QUEUED, ""),
    RES(0, DELIVERED, 250, "2.0.0", FINAL, "Ok"),
    THE_END,
};

static const struct step auth_535[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV(GREET, EHLO),
    SRV("250-mx.b.test\r\n250 STARTTLS\r\n", "STARTTLS\r\n"),
    SRV("220 2.0.0 Ready\r\n", ""),
    TLS_OK(EHLO),
    SRV("250-mx.b.test\r\n250 AUTH=PLAIN\r\n", "AUTH PLAIN " PLAIN_B64 "\r\n"),
    /* A server that echoes the secret, cut and split and 8-bit as it may be:
     * none of its words reach a result, only the code and kotak's own. */
    SRV("535-5.7.8 Error: authentication failed: " PLAIN_B64 "\r\n"
        "535 5.7.8 (" PASS ") P\xc3\xa4ss\r\n",
        "QUIT\r\n"),
    RES(0, DEFERRED, 535, "5.7.8", AUTH,
        "the smarthost refused the login: check smarthost_user and the password file"),
    RES(1, DEFERRED, 535, "5.7.8", AUTH, "the smarthost refused"),
    RES(2, DEFERRED, 535, "5.7.8", AUTH, "the smarthost refused"),
    SRV(BYE, ""),
    ACT(CLOSE),
    THE_END,
};

static const struct step auth_login[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV("250-mx.b.test\r\n250-AUTH LOGIN CRAM-MD5\r\n250 PIPELINING\r\n", "AUTH LOGIN\r\n"),
    SRV("334 VXNlcm5hbWU6\r\n", USER_B64 "\r\n"),
    SRV("334 UGFzc3dvcmQ6\r\n", PASS_B64 "\r\n"),
    SRV("235 2.7.0 ok\r\n", MAIL TO_BOB "DATA\r\n"),
    THE_END,
};

static const struct step auth_extra_challenge[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV("250-mx.b.test\r\n250 AUTH PLAIN\r\n", "AUTH PLAIN " PLAIN_B64 "\r\n"),
    SRV("334 \r\n", "*\r\n"),
    SRV("501 5.7.0 cancelled\r\n", "QUIT\r\n"),
    RES(0, DEFERRED, 0, "4.7.0", AUTH, "login failed"),
    THE_END,
};

static const struct step auth_not_offered[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV("250-mx.b.test\r\n250 AUTH CRAM-MD5\r\n", "QUIT\r\n"),
    RES(0, DEFERRED, 0, "4.7.4", AUTH, "a login is configured, but the server offers neither"),
    THE_END,
};

static const struct step auth_without_tls[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV("250-mx.b.test\r\n250 AUTH PLAIN LOGIN\r\n", "QUIT\r\n"),
    RES(0, DEFERRED, 0, "4.7.4", AUTH, "a login is configured, but TLS is not up"),
    THE_END,
};

/* --- what the message needs --- */

static const struct step size_too_big[] = {
    NEXT_MSG(&m_big, 0, ""),
    SRV(GREET, EHLO),
    SRV("250-mx.b.test\r\n250 SIZE 1000\r\n", ""),
    ACT(DONE),
    RES(0, FAILED, 0, "5.3.4", MAIL, "message size 5000 exceeds the server's limit of 1000"),
    /* Nothing was sent, so no RSET is owed. */
    NEXT_MSG(&m_one, 0, MAIL),
    THE_END,
};

static const struct step size_fits[] = {
    NEXT_MSG(&m_big, 0, ""),
    SRV(GREET, EHLO),
    SRV("250-mx.b.test\r\n250 SIZE 5000\r\n", "MAIL FROM:<alice@a.test> SIZE=5000\r\n"),
    THE_END,
};

static const struct step size_no_limit[] = {
    NEXT_MSG(&m_big, 0, ""),
    SRV(GREET, EHLO),
    SRV("250-mx.b.test\r\n250 SIZE\r\n", "MAIL FROM:<alice@a.test> SIZE=5000\r\n"),
    THE_END,
};

static const struct step smtputf8_missing[] = {
    NEXT_MSG(&m_needs_utf8, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PLAIN, ""),
    ACT(DONE),
    RES(0, FAILED, 0, "5.6.7", MAIL, "the message needs SMTPUTF8"),
    NEXT_MSG(&m_utf8_rcpt, 0, ""),
    RES(0, FAILED, 0, "5.6.7", MAIL, "the message needs SMTPUTF8"),
    THE_END,
};

static const struct step smtputf8_offered[] = {
    NEXT_MSG(&m_needs_utf8, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE, "MAIL FROM:<alice@a.test> BODY=8BITMIME SMTPUTF8\r\n" TO_BOB "DATA\r\n"),
    SRV(OK_MAIL OK_RCPT GO, ""),
    BODY_DONE(".\r\n"),
    SRV(QUEUED, ""),
    NEXT_MSG(&m_utf8_rcpt, 0,
             "MAIL FROM:<alice@a.test> SMTPUTF8\r\nRCPT TO:<j\xc3\xb6rg@b.test>\r\nDATA\r\n"),
    THE_END,
};

static const struct step eight_bit_not_offered[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV(GREET, EHLO),
    SRV("250-mx.b.test\r\n250 PIPELINING\r\n", MAIL TO_BOB TO_CAROL TO_DAVE "DATA\r\n"),
    THE_END,
};

static const struct step dsn_offered[] = {
    NEXT_MSG(&m_dsn, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE, "MAIL FROM:<alice@a.test> RET=FULL ENVID=QQ314159+2Bx+3Dy\r\n"
                   "RCPT TO:<bob@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob@B.test\r\n"
                   "RCPT TO:<carol@b.test> NOTIFY=NEVER ORCPT=rfc822;c+2Bx+3Dy@b.test\r\n"
                   "RCPT TO:<dave@b.test> NOTIFY=DELAY\r\n"
                   "DATA\r\n"),
    IS_DSN(1), /* the queue runner leaves success reports to this server */
    THE_END,
};

static const struct step dsn_not_offered[] = {
    NEXT_MSG(&m_dsn, 0, ""),
    SRV(GREET, EHLO),
    SRV("250-mx.b.test\r\n250 PIPELINING\r\n", MAIL TO_BOB TO_CAROL TO_DAVE "DATA\r\n"),
    IS_DSN(0),
    THE_END,
};

/* --- the message data --- */

static const struct step dot_stuffing[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE, MAIL TO_BOB "DATA\r\n"),
    SRV(OK_MAIL OK_RCPT GO, ""),
    ACT(BODY),
    BODY_IN(".first line is a dot line\r\n", "..first line is a dot line\r\n"),
    BODY_IN("line one\r\n.starts with a dot\r\n", "line one\r\n..starts with a dot\r\n"),
    BODY_IN(".\r\n", "..\r\n"),
    BODY_IN("..two\r\n", "...two\r\n"),
    BODY_IN("a dot . inside\r\n", "a dot . inside\r\n"),
    /* A CRLF split across two pieces, then a dot. */
    BODY_IN("split\r", "split"),
    BODY_IN("\n.after the split\r\n", "\r\n..after the split\r\n"),
    /* A whole CRLF at the end of one piece, a dot at the start of the next. */
    BODY_IN("abc\r\n", "abc\r\n"),
    BODY_IN(".def\r\n", "..def\r\n"),
    /* Bare LF and bare CR become CRLF, and a dot after them is stuffed. */
    BODY_IN("bare\nlf\n.x\r", "bare\r\nlf\r\n..x"),
    BODY_IN(".y\r\r\n", "\r\n..y\r\n\r\n"),
    BODY_IN("no final crlf", "no final crlf"),
    BODY_DONE("\r\n.\r\n"),
    ACT(NONE),
    SRV(QUEUED, ""),
    THE_END,
};

static const struct step empty_body[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE, MAIL TO_BOB "DATA\r\n"),
    SRV(OK_MAIL OK_RCPT GO, ""),
    BODY_IN("", ""),
    BODY_DONE(".\r\n"),
    SRV(QUEUED, ""),
    NEXT_MSG(&m_one, 0, MAIL TO_BOB "DATA\r\n"),
    SRV(OK_MAIL OK_RCPT GO, ""),
    BODY_IN("\r", ""),
    BODY_DONE("\r\n.\r\n"),
    SRV(QUEUED, ""),
    NEXT_MSG(&m_one, 0, MAIL TO_BOB "DATA\r\n"),
    SRV(OK_MAIL OK_RCPT GO, ""),
    BODY_IN(".", ".."),
    BODY_DONE("\r\n.\r\n"),
    THE_END,
};

/* --- bad replies, limits, lost connections --- */

static const struct step bad_reply[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PLAIN, "MAIL FROM:<alice@a.test> SIZE=1234 BODY=8BITMIME\r\n"),
    SRV("2x0 ok\r\n", ""),
    ACT(CLOSE),
    PEND("2x0 ok\r\n"),
    RES(0, DEFERRED, 0, "4.5.0", MAIL,
        "bad reply from the server: a line that is not a reply, "
        "in reply to MAIL FROM"),
    RES(2, DEFERRED, 0, "4.5.0", MAIL, "bad reply"),
    SRV("250 ok\r\n", ""), /* nothing more is read */
    THE_END,
};

#define X10 "xxxxxxxxxx"
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10
#define X1000 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100

static const struct step long_line[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV("250-" X1000 X1000 "\r\n", ""), /* 2006 octets: fine */
    SRV("250 " X1000 X1000 X1000, ""),  /* no line end within 2048 */
    ACT(CLOSE),
    RES(0, DEFERRED, 0, "4.5.0", EHLO, "bad reply from the server: a line longer than 2048"),
    THE_END,
};

static const struct step code_changes[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV("220-mx.b.test\r\n554 no\r\n", ""),
    ACT(CLOSE),
    RES(0, DEFERRED, 0, "4.5.0", GREETING, "bad reply from the server: a multi-line reply"),
    THE_END,
};

static const struct step rcpt_limit[] = {
    NEXT_MSG(&m_five, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PLAIN, MAIL),
    SRV(OK_MAIL, "RCPT TO:<r1@b.test>\r\n"),
    SRV(OK_RCPT, "RCPT TO:<r2@b.test>\r\n"),
    SRV(OK_RCPT, "RCPT TO:<r3@b.test>\r\n"),
    SRV("452 4.5.3 Error: too many recipients\r\n", "DATA\r\n"),
    SRV(GO, ""),
    BODY_DONE(".\r\n"),
    SRV(QUEUED, ""),
    ACT(DONE),
    RES(0, DELIVERED, 250, "2.0.0", FINAL, "Ok"),
    RES(1, DELIVERED, 250, "2.0.0", FINAL, "Ok"),
    RES(2, DEFERRED, 452, "4.5.3", RCPT, "Error: too many recipients"),
    RES(3, DEFERRED, 0, "4.5.3", RCPT, "not sent: the server's limit"),
    RES(4, DEFERRED, 0, "4.5.3", RCPT, "not sent: the server's limit"),
    THE_END,
};

static const struct step rcpt_limit_pipelined[] = {
    NEXT_MSG(&m_five, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE, MAIL "RCPT TO:<r1@b.test>\r\nRCPT TO:<r2@b.test>\r\nRCPT TO:<r3@b.test>\r\n"
                        "RCPT TO:<r4@b.test>\r\nRCPT TO:<r5@b.test>\r\nDATA\r\n"),
    SRV(OK_MAIL OK_RCPT OK_RCPT "452 4.5.3 Too many recipients\r\n"
                                "452 4.5.3 Too many recipients\r\n550 5.5.3 Too many\r\n" GO,
        ""),
    BODY_DONE(".\r\n"),
    SRV(QUEUED, ""),
    RES(1, DELIVERED, 250, "2.0.0", FINAL, "Ok"),
    RES(2, DEFERRED, 452, "4.5.3", RCPT, "Too many recipients"),
    RES(3, DEFERRED, 452, "4.5.3", RCPT, "Too many recipients"),
    /* Past the limit, a 5xx does not bounce: the recipient goes again later. */
    RES(4, DEFERRED, 550, "5.5.3", RCPT, "Too many"),
    THE_END,
};

static const struct step lost_after_dot[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE,
        "MAIL FROM:<alice@a.test> SIZE=1234 BODY=8BITMIME\r\n" TO_BOB TO_CAROL TO_DAVE "DATA\r\n"),
    SRV(OK_MAIL OK_RCPT "550 5.1.1 no\r\n" OK_RCPT GO, ""),
    BODY_IN("hi\r\n", "hi\r\n"),
    BODY_DONE(".\r\n"),
    CONN_LOST,
    ACT(CLOSE),
    RES(0, DEFERRED, 0, "4.4.2", FINAL,
        "connection lost after the end of the message, before the server's reply: it may "
        "have been delivered"),
    RES(1, FAILED, 550, "5.1.1", RCPT, "no"),
    RES(2, DEFERRED, 0, "4.4.2", FINAL, "connection lost after the end"),
    THE_END,
};

static const struct step lost_in_rcpt[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PLAIN, "MAIL FROM:<alice@a.test> SIZE=1234 BODY=8BITMIME\r\n"),
    SRV(OK_MAIL, TO_BOB),
    SRV(OK_RCPT, TO_CAROL),
    CONN_LOST,
    ACT(CLOSE),
    RES(0, DEFERRED, 0, "4.4.2", RCPT, "connection lost while waiting for the reply to RCPT TO"),
    RES(2, DEFERRED, 0, "4.4.2", RCPT, "connection lost"),
    THE_END,
};

static const struct step lost_in_body[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE, MAIL TO_BOB "DATA\r\n"),
    SRV(OK_MAIL OK_RCPT GO, ""),
    BODY_IN("hi\r\n", "hi\r\n"),
    TIMES_OUT,
    ACT(CLOSE),
    RES(0, DEFERRED, 0, "4.4.2", DATA, "timed out while sending the message"),
    THE_END,
};

static const struct step lost_before_greeting[] = {
    NEXT_MSG(&m_one, 0, ""),
    TIMES_OUT,
    ACT(CLOSE),
    RES(0, DEFERRED, 0, "4.4.2", GREETING, "timed out while waiting for the reply to greeting"),
    THE_END,
};

static const struct step server_421_in_rcpt[] = {
    NEXT_MSG(&m_three, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE,
        "MAIL FROM:<alice@a.test> SIZE=1234 BODY=8BITMIME\r\n" TO_BOB TO_CAROL TO_DAVE "DATA\r\n"),
    SRV(OK_MAIL "550 5.1.1 no\r\n421 4.4.2 mx.b.test Error: timeout exceeded\r\n", ""),
    ACT(CLOSE),
    RES(0, FAILED, 550, "5.1.1", RCPT, "no"),
    RES(1, DEFERRED, 421, "4.4.2", RCPT, "mx.b.test Error: timeout exceeded"),
    RES(2, DEFERRED, 421, "4.4.2", RCPT, "mx.b.test Error: timeout exceeded"),
    THE_END,
};

static const struct step idle_421[] = {
    SRV(GREET, EHLO), SRV(EHLO_PIPE, ""),
    ACT(DONE),        SRV("421 4.4.2 Idle timeout\r\n", ""),
    ACT(CLOSE),       NEXT_MSG(&m_one, -EPIPE, ""),
    THE_END,
};

static const struct step unsolicited[] = {
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE "250 2.0.0 what\r\n", ""),
    ACT(CLOSE),
    THE_END,
};

/* A reply sent during the body is read after the final dot, as its answer. */
static const struct step early_reply[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE, MAIL TO_BOB "DATA\r\n"),
    SRV(OK_MAIL OK_RCPT GO "554 5.3.4 Message too big\r\n", ""),
    ACT(BODY),
    PEND("554 5.3.4 Message too big\r\n"),
    BODY_IN("x\r\n", "x\r\n"),
    BODY_DONE(".\r\n"),
    SRV("", ""), /* the glue feeds what it kept */
    ACT(DONE),
    RES(0, FAILED, 554, "5.3.4", FINAL, "Message too big"),
    THE_END,
};

static const struct step quit_in_body[] = {
    NEXT_MSG(&m_one, 0, ""),
    SRV(GREET, EHLO),
    SRV(EHLO_PIPE, MAIL TO_BOB "DATA\r\n"),
    SRV(OK_MAIL OK_RCPT GO, ""),
    QUIT_NOW(""), /* a QUIT here would be message data */
    ACT(CLOSE),
    RES(0, DEFERRED, 0, "4.3.0", DATA, "delivery stopped by kotak during DATA"),
    THE_END,
};

static const struct step implicit_tls_auth[] = {
    NEXT_MSG(&m_one, 0, ""),
    IS_TLS(1),
    SRV(GREET, EHLO),
    SRV("250-mx.b.test\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n",
        "AUTH PLAIN " PLAIN_B64 "\r\n"),
    SRV("235 2.7.0 ok\r\n", MAIL),
    THE_END,
};

static const struct conv conversations[] = {
    {"plain delivery", SMTP_CLIENT_TLS_OPPORTUNISTIC, false, NULL, NULL, plain},
    {"pipelining", SMTP_CLIENT_TLS_OPPORTUNISTIC, false, NULL, NULL, pipelined},
    {"one recipient of three refused", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, one_refused},
    {"all recipients refused, then RSET", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, all_refused},
    {"all recipients refused, pipelined", SMTP_CLIENT_TLS_NONE, false, NULL, NULL,
     all_refused_pipelined},
    {"MAIL 451 defers all", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, mail_deferred},
    {"MAIL 553, pipelined", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, mail_refused_pipelined},
    {"DATA 451", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, data_refused},
    {"greeting 554", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, greeting_554},
    {"greeting 421", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, greeting_421},
    {"greeting 520", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, greeting_other},
    {"EHLO 500, HELO", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, helo_fallback},
    {"EHLO 502, HELO 550", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, helo_refused},
    {"EHLO 450", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, ehlo_deferred},
    {"STARTTLS", SMTP_CLIENT_TLS_OPPORTUNISTIC, false, NULL, NULL, starttls},
    {"STARTTLS required, not offered", SMTP_CLIENT_TLS_REQUIRED, false, NULL, NULL,
     starttls_required_missing},
    {"STARTTLS 454, opportunistic", SMTP_CLIENT_TLS_OPPORTUNISTIC, false, NULL, NULL,
     starttls_454_opportunistic},
    {"STARTTLS 454, required", SMTP_CLIENT_TLS_REQUIRED, false, NULL, NULL, starttls_454_required},
    {"STARTTLS handshake fails", SMTP_CLIENT_TLS_OPPORTUNISTIC, false, NULL, NULL,
     starttls_handshake_fails},
    {"TLS off", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, tls_none},
    {"AUTH PLAIN", SMTP_CLIENT_TLS_REQUIRED, false, USER, PASS, auth_plain},
    {"AUTH 535", SMTP_CLIENT_TLS_REQUIRED, false, USER, PASS, auth_535},
    {"AUTH LOGIN", SMTP_CLIENT_TLS_REQUIRED, true, USER, PASS, auth_login},
    {"AUTH PLAIN, a second challenge", SMTP_CLIENT_TLS_REQUIRED, true, USER, PASS,
     auth_extra_challenge},
    {"AUTH not offered", SMTP_CLIENT_TLS_REQUIRED, true, USER, PASS, auth_not_offered},
    {"AUTH without TLS", SMTP_CLIENT_TLS_NONE, false, USER, PASS, auth_without_tls},
    {"implicit TLS, AUTH", SMTP_CLIENT_TLS_REQUIRED, true, USER, PASS, implicit_tls_auth},
    {"SIZE too big", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, size_too_big},
    {"SIZE fits", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, size_fits},
    {"SIZE without a limit", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, size_no_limit},
    {"SMTPUTF8 missing", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, smtputf8_missing},
    {"SMTPUTF8 offered", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, smtputf8_offered},
    {"8-bit without 8BITMIME", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, eight_bit_not_offered},
    {"DSN offered", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, dsn_offered},
    {"DSN not offered", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, dsn_not_offered},
    {"dot-stuffing", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, dot_stuffing},
    {"empty bodies", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, empty_body},
    {"malformed reply", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, bad_reply},
    {"reply line too long", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, long_line},
    {"multi-line reply changes code", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, code_changes},
    {"452 4.5.3 on the third RCPT", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, rcpt_limit},
    {"452 4.5.3, pipelined", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, rcpt_limit_pipelined},
    {"connection lost after the dot", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, lost_after_dot},
    {"connection lost in RCPT", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, lost_in_rcpt},
    {"timeout in the body", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, lost_in_body},
    {"timeout before the greeting", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, lost_before_greeting},
    {"421 in RCPT", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, server_421_in_rcpt},
    {"421 while idle", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, idle_421},
    {"a reply nobody asked for", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, unsolicited},
    {"quit in the body", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, quit_in_body},
    {"a reply during the body", SMTP_CLIENT_TLS_NONE, false, NULL, NULL, early_reply},
};

/* Shows bytes in a message: CR, LF and others escaped, long text cut. */
static void show(const char *label, const char *p, size_t n)
{
    printf("#   %s \"", label);
    for (size_t i = 0; i < n && i < 400; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '\r')
            printf("\\r");
        else if (ch == '\n')
            printf("\\n");
        else if (ch < 0x20 || ch >= 0x7f)
            printf("\\x%02x", ch);
        else
            putchar(ch);
    }
    printf("%s\"\n", n > 400 ? "..." : "");
}

static void check_output(struct smtp_client *c, const char *tag, size_t i, const char *want,
                         struct buf *transcript)
{
    struct buf *out = smtp_client_output(c);
    if (want != NULL) {
        size_t wn = strlen(want);
        bool same = out->len == wn && (wn == 0 || memcmp(out->data, want, wn) == 0);
        ok(same, "%s: step %zu: output", tag, i);
        if (!same) {
            show("got: ", (const char *)out->data, out->len);
            show("want:", want, wn);
        }
    }
    buf_append(transcript, out->data, out->len);
    buf_reset(out);
}

static void feed(struct smtp_client *c, struct buf *pending)
{
    size_t used = 0;
    smtp_client_feed(c, (const char *)pending->data, pending->len, &used);
    if (used > pending->len) {
        ok(0, "feed consumed %zu of %zu", used, pending->len);
        used = pending->len;
    }
    buf_consume(pending, used);
}

static const char *const action_names[] = {"NONE", "STARTTLS", "BODY", "DONE", "CLOSE"};

static void run(const struct conv *cv, bool trickle, struct buf *transcript)
{
    char tag[160];
    snprintf(tag, sizeof(tag), "%s [%s]", cv->name, trickle ? "byte by byte" : "whole");
    struct smtp_client_config cfg = {
        .helo_name = HELO,
        .tls = cv->tls,
        .tls_active = cv->tls_active,
        .auth_user = cv->user,
        .auth_password = cv->password,
    };
    struct smtp_client *c = NULL;
    int rc = smtp_client_new(&cfg, &c);
    is_int(rc, 0, "%s: smtp_client_new", tag);
    if (rc < 0)
        return;
    struct buf pending;
    buf_init(&pending, 0);
    for (size_t i = 0; cv->steps[i].op != END; i++) {
        const struct step *st = &cv->steps[i];
        switch (st->op) {
        case SERVER:
            if (!trickle || st->len == 0) {
                buf_append(&pending, st->in, st->len);
                feed(c, &pending);
            } else {
                for (size_t k = 0; k < st->len; k++) {
                    buf_append(&pending, st->in + k, 1);
                    feed(c, &pending);
                }
            }
            check_output(c, tag, i, st->out, transcript);
            break;
        case ACTION: {
            int a = smtp_client_action(c);
            ok(a == st->arg, "%s: step %zu: action %s", tag, i, action_names[st->arg]);
            if (a != st->arg)
                printf("#   got %s\n", action_names[a]);
            break;
        }
        case NEXT:
            is_int(smtp_client_next(c, st->msg), st->arg, "%s: step %zu: next() returns %d", tag, i,
                   st->arg);
            check_output(c, tag, i, st->out, transcript);
            break;
        case TLS_UP:
            buf_reset(&pending); /* RFC 3207 4.2: nothing read before TLS counts */
            smtp_client_tls_started(c);
            check_output(c, tag, i, st->out, transcript);
            break;
        case TLS_FAIL:
            smtp_client_tls_failed(c);
            check_output(c, tag, i, st->out, transcript);
            break;
        case BODY:
            if (!trickle) {
                is_int(smtp_client_body(c, st->in, st->len), 0, "%s: step %zu: body", tag, i);
            } else {
                int brc = 0;
                for (size_t k = 0; k < st->len && brc == 0; k++)
                    brc = smtp_client_body(c, st->in + k, 1);
                is_int(brc, 0, "%s: step %zu: body", tag, i);
            }
            check_output(c, tag, i, st->out, transcript);
            break;
        case BODY_END:
            is_int(smtp_client_body_end(c), 0, "%s: step %zu: body_end", tag, i);
            check_output(c, tag, i, st->out, transcript);
            break;
        case QUIT:
            smtp_client_quit(c);
            check_output(c, tag, i, st->out, transcript);
            break;
        case LOST:
            smtp_client_connection_lost(c);
            check_output(c, tag, i, st->out, transcript);
            break;
        case TIMEOUT:
            smtp_client_timed_out(c);
            check_output(c, tag, i, st->out, transcript);
            break;
        case RESULT: {
            size_t n = 0;
            const struct smtp_client_result *r = smtp_client_results(c, &n);
            if ((size_t)st->arg >= n) {
                ok(0, "%s: step %zu: recipient %d of %zu", tag, i, st->arg, n);
                break;
            }
            r += st->arg;
            bool same = r->state == st->state && r->code == st->code &&
                        strcmp(r->enhanced, st->enhanced) == 0 && r->stage == st->stage &&
                        strncmp(r->text, st->in, strlen(st->in)) == 0;
            ok(same, "%s: step %zu: recipient %d is %s, %d %s in reply to %s", tag, i, st->arg,
               smtp_client_state_name(st->state), st->code, st->enhanced,
               smtp_client_stage_name(st->stage));
            if (!same)
                printf("#   got %s, %d '%s' in reply to %s: '%s'\n",
                       smtp_client_state_name(r->state), r->code, r->enhanced,
                       smtp_client_stage_name(r->stage), r->text);
            break;
        }
        case N_RESULTS: {
            size_t n = 99;
            smtp_client_results(c, &n);
            is_int(n, st->arg, "%s: step %zu: %d results", tag, i, st->arg);
            break;
        }
        case PENDING: {
            bool same = pending.len == st->len && memcmp(pending.data, st->in, st->len) == 0;
            ok(same, "%s: step %zu: unconsumed input", tag, i);
            if (!same)
                show("got: ", (const char *)pending.data, pending.len);
            break;
        }
        case TLS_USED:
            is_int(smtp_client_tls_used(c), st->arg, "%s: step %zu: tls_used", tag, i);
            break;
        case DSN_USED:
            is_int(smtp_client_dsn_offered(c), st->arg, "%s: step %zu: dsn_offered", tag, i);
            break;
        case NAME:
            is_str(smtp_client_server_name(c), st->in, "%s: step %zu: server name", tag, i);
            break;
        case WAIT:
            is_int(smtp_client_timeout_s(c), st->arg, "%s: step %zu: timeout", tag, i);
            break;
        case END:
            break;
        }
    }
    smtp_client_free(&c);
    ok(c == NULL, "%s: smtp_client_free sets the pointer to NULL", tag);
    buf_free(&pending);
}

static void converse(const struct conv *cv)
{
    struct buf t[2];
    for (int trickle = 0; trickle <= 1; trickle++) {
        buf_init(&t[trickle], 0);
        run(cv, trickle, &t[trickle]);
    }
    ok(t[0].len == t[1].len && memcmp(buf_cstr(&t[0]), buf_cstr(&t[1]), t[0].len) == 0,
       "%s: one byte at a time gives the same output", cv->name);
    buf_free(&t[0]);
    buf_free(&t[1]);
}

/* --- the API's edges -------------------------------------------------------- */

static void test_bad_input(void)
{
    struct smtp_client *c = NULL;
    struct smtp_client_config cfg = {.helo_name = "bad name", .tls = SMTP_CLIENT_TLS_NONE};
    is_int(smtp_client_new(&cfg, &c), -EINVAL, "new: a HELO name with a space is refused");
    cfg.helo_name = "";
    is_int(smtp_client_new(&cfg, &c), -EINVAL, "new: an empty HELO name is refused");
    cfg.helo_name = HELO;
    cfg.auth_user = "u";
    is_int(smtp_client_new(&cfg, &c), -EINVAL, "new: a user without a password is refused");
    cfg.auth_password = "p\r\nRSET";
    is_int(smtp_client_new(&cfg, &c), -EINVAL, "new: a password with CRLF is refused");
    cfg.auth_password = "p";
    is_int(smtp_client_new(&cfg, &c), 0, "new: a good config");

    static const struct smtp_client_rcpt inject[] = {{"bob@b.test>\r\nRSET", 0, NULL}};
    static const struct smtp_client_rcpt empty[] = {{"", 0, NULL}};
    static const struct smtp_client_rcpt never_too[] = {
        {"bob@b.test", STORE_NOTIFY_NEVER | STORE_NOTIFY_DELAY, NULL}};
    static const struct smtp_client_rcpt bad_orcpt[] = {{"bob@b.test", 0, "x\ny"}};
    struct smtp_client_msg m = m_one;
    m.rcpts = inject;
    is_int(smtp_client_next(c, &m), -EINVAL, "next: CRLF in an address is refused");
    m.rcpts = empty;
    is_int(smtp_client_next(c, &m), -EINVAL, "next: an empty recipient is refused");
    m.rcpts = never_too;
    is_int(smtp_client_next(c, &m), -EINVAL, "next: NOTIFY=NEVER with another is refused");
    m.rcpts = bad_orcpt;
    is_int(smtp_client_next(c, &m), -EINVAL, "next: LF in ORCPT is refused");
    m = m_one;
    m.n_rcpts = 0;
    is_int(smtp_client_next(c, &m), -EINVAL, "next: no recipient is refused");
    m = m_one;
    m.from = "a\x01@a.test";
    is_int(smtp_client_next(c, &m), -EINVAL, "next: a control character in MAIL FROM is refused");
    m = m_one;
    m.envid = "\xc3\xa9";
    is_int(smtp_client_next(c, &m), -EINVAL, "next: a non-ASCII ENVID is refused");
    size_t n = 9;
    smtp_client_results(c, &n);
    is_int(n, 0, "next: a refused message leaves no results");
    is_int(smtp_client_body(c, "x", 1), -EPROTO, "body: refused outside the body");
    is_int(smtp_client_body_end(c), -EPROTO, "body_end: refused outside the body");
    ok(!smtp_client_wants_body(c), "wants_body: no, outside the body");
    smtp_client_free(&c);
    smtp_client_free(&c); /* NULL: nothing */
    ok(c == NULL, "free twice is harmless");
}

/* Reads a server's reply bytes into the client, all of them. */
static void say(struct smtp_client *c, const char *s)
{
    size_t used = 0;
    smtp_client_feed(c, s, strlen(s), &used);
}

/* The output stays bounded while the glue honours wants_body. */
static void test_backpressure(void)
{
    struct smtp_client_config cfg = {.helo_name = HELO};
    struct smtp_client *c = NULL;
    smtp_client_new(&cfg, &c);
    smtp_client_next(c, &m_one);
    say(c, GREET EHLO_PIPE OK_MAIL OK_RCPT GO);
    ok(smtp_client_action(c) == SMTP_CLIENT_ACT_BODY, "backpressure: in the body");
    buf_reset(smtp_client_output(c));
    static char chunk[SMTP_CLIENT_BODY_CHUNK];
    memset(chunk, '\n', sizeof(chunk)); /* the worst case: every octet doubles */
    int pieces = 0;
    while (smtp_client_wants_body(c)) {
        is_int(smtp_client_body(c, chunk, sizeof(chunk)), 0, "backpressure: chunk %d fits", pieces);
        pieces++;
    }
    struct buf *out = smtp_client_output(c);
    ok(pieces == 1 && out->len == 2 * sizeof(chunk),
       "backpressure: past the high-water mark after one doubled chunk (%zu octets)", out->len);
    ok(!smtp_client_wants_body(c), "backpressure: wants no more");
    is_int(smtp_client_body(c, chunk, sizeof(chunk)), -ENOBUFS,
           "backpressure: a doubled chunk more would pass the ceiling: refused whole");
    is_int(out->len, 2 * sizeof(chunk), "backpressure: nothing appended by the refusal");
    is_int(smtp_client_body(c, chunk, 1000), 0, "backpressure: a smaller piece still fits");
    ok(out->len <= SMTP_CLIENT_OUT_MAX, "backpressure: the output stays under its ceiling");
    buf_consume(out, out->len);
    is_int(smtp_client_body(c, chunk, sizeof(chunk)), 0, "backpressure: fits again once sent");
    buf_consume(out, out->len);
    ok(smtp_client_wants_body(c), "backpressure: wants more once sent");
    is_int(smtp_client_body_end(c), 0, "backpressure: body_end");
    smtp_client_free(&c);
}

/* With a login, the output that held the AUTH line never moves (no copy left by realloc). */
static void test_auth_buffer_stays(void)
{
    struct smtp_client_config cfg = {.helo_name = HELO,
                                     .tls = SMTP_CLIENT_TLS_REQUIRED,
                                     .tls_active = true,
                                     .auth_user = USER,
                                     .auth_password = PASS};
    struct smtp_client *c = NULL;
    smtp_client_new(&cfg, &c);
    smtp_client_next(c, &m_one);
    say(c, GREET "250-mx.b.test\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n");
    struct buf *out = smtp_client_output(c);
    const uint8_t *where = out->data;
    ok(out->len > 0 && memmem(out->data, out->len, PLAIN_B64, strlen(PLAIN_B64)) != NULL,
       "auth buffer: the AUTH line is in the output");
    buf_consume(out, out->len);
    say(c, "235 2.7.0 ok\r\n" OK_MAIL OK_RCPT GO);
    static char chunk[SMTP_CLIENT_BODY_CHUNK];
    memset(chunk, '.', sizeof(chunk));
    while (smtp_client_wants_body(c))
        smtp_client_body(c, chunk, sizeof(chunk));
    ok(out->data == where && out->len > SMTP_CLIENT_OUT_HIGH,
       "auth buffer: %zu octets later, the output has not moved", out->len);
    smtp_client_free(&c);
}

/* Commands beyond the pipelining window wait for replies. */
static void test_pipe_window(void)
{
    static struct smtp_client_rcpt many[SMTP_CLIENT_RCPTS_MAX];
    static char names[SMTP_CLIENT_RCPTS_MAX][600];
    for (size_t i = 0; i < SMTP_CLIENT_RCPTS_MAX; i++) {
        memset(names[i], 'l', 400);
        snprintf(names[i] + 400, 200, "%zu@b.test", i);
        many[i].addr = names[i];
    }
    struct smtp_client_msg m = m_one;
    m.rcpts = many;
    m.n_rcpts = SMTP_CLIENT_RCPTS_MAX;
    struct smtp_client_config cfg = {.helo_name = HELO};
    struct smtp_client *c = NULL;
    smtp_client_new(&cfg, &c);
    say(c, GREET EHLO_PIPE);
    struct buf *out = smtp_client_output(c);
    buf_reset(out);
    is_int(smtp_client_next(c, &m), 0, "window: %d recipients", SMTP_CLIENT_RCPTS_MAX);
    size_t first = out->len;
    ok(first >= SMTP_CLIENT_PIPE_WINDOW && first < SMTP_CLIENT_PIPE_WINDOW + 1024,
       "window: the first write stops past %d octets (%zu)", SMTP_CLIENT_PIPE_WINDOW, first);
    size_t max_out = first, sent = 0;
    say(c, OK_MAIL);
    for (size_t i = 0; i < SMTP_CLIENT_RCPTS_MAX && smtp_client_action(c) == SMTP_CLIENT_ACT_NONE;
         i++) {
        sent += out->len;
        if (out->len > max_out)
            max_out = out->len;
        buf_reset(out);
        say(c, i % 2 ? OK_RCPT : "550 5.1.1 no\r\n");
    }
    ok(max_out < SMTP_CLIENT_PIPE_WINDOW + 1024, "window: never more than the window at once");
    say(c, GO);
    is_int(smtp_client_action(c), SMTP_CLIENT_ACT_BODY, "window: then DATA and its 354");
    smtp_client_body_end(c);
    say(c, QUEUED);
    size_t n = 0;
    const struct smtp_client_result *r = smtp_client_results(c, &n);
    int delivered = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        delivered += r[i].state == SMTP_CLIENT_DELIVERED;
        failed += r[i].state == SMTP_CLIENT_FAILED;
    }
    ok(delivered == 500 && failed == 500, "window: every reply matched its recipient (%d, %d)",
       delivered, failed);
    ok(r[0].state == SMTP_CLIENT_FAILED && r[1].state == SMTP_CLIENT_DELIVERED, "window: in order");
    smtp_client_free(&c);
}

int main(void)
{
    test_reply_parser();
    test_reply_limits();
    for (size_t i = 0; i < sizeof(conversations) / sizeof(conversations[0]); i++)
        converse(&conversations[i]);
    test_bad_input();
    test_backpressure();
    test_auth_buffer_stays();
    test_pipe_window();
    return done_testing();
}
