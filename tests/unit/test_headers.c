/*
 * test_headers.c — the header section of a message (smtpd/headers.c):
 * where it ends, and which fields it holds how many times.
 *
 * Every case runs on a heap copy of exactly its length, with no NUL after
 * it, so that AddressSanitizer catches a read past the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headers.h"
#include "tap.h"

/* A heap copy of s[0..len), without a NUL after it. */
static char *copy(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    memcpy(p, s, len);
    return p;
}

struct end_case {
    const char *name;
    const char *msg;
    size_t len;
    int found;
    size_t hdr_len;
    size_t body;
};

/* clang-format off */
#define E(name, s, found, h, b) {name, s, sizeof(s) - 1, found, h, b}
static const struct end_case end_cases[] = {
    E("CRLF", "A: 1\r\nB: 2\r\n\r\nbody\r\n", 1, 12, 14),
    E("bare LF", "A: 1\nB: 2\n\nbody\n", 1, 10, 11),
    E("bare CR", "A: 1\rB: 2\r\rbody\r", 1, 10, 11),
    E("mixed", "A: 1\nB: 2\r\n\nbody", 1, 11, 12),
    E("folded", "A: 1\r\n  more\r\n\tand more\r\n\r\nx", 1, 25, 27),
    E("no body", "A: 1\r\nB: 2\r\n", 0, 12, 12),
    E("no line end", "A: 1\r\nB: 2", 0, 10, 10),
    E("empty body", "A: 1\r\n\r\n", 1, 6, 8),
    E("no headers", "\r\nbody\r\n", 1, 0, 2),
    E("empty", "", 0, 0, 0),
    E("not a field", "A: 1\r\nthis is text\r\nB: 2\r\n", 0, 6, 6),
    E("colon first", "A: 1\r\n: no name\r\n", 0, 6, 6),
    E("8-bit name", "A: 1\r\n\xc3\xa4: x\r\n", 0, 6, 6),
    E("space before colon", "A : 1\r\nB\t: 2\r\n\r\n", 1, 14, 16),
    E("space in name", "A B: 1\r\n", 0, 0, 0),
    E("CR CR LF", "A: 1\r\r\nbody", 1, 5, 7),
};
#undef E
/* clang-format on */

static void test_end(void)
{
    for (size_t i = 0; i < sizeof(end_cases) / sizeof(end_cases[0]); i++) {
        const struct end_case *c = &end_cases[i];
        char *m = copy(c->msg, c->len);
        size_t h = 99, b = 99;
        int found = headers_end(m, c->len, &h, &b);
        ok(found == c->found && h == c->hdr_len && b == c->body,
           "headers_end %s: %d %zu %zu (want %d %zu %zu)", c->name, found, h, b, c->found,
           c->hdr_len, c->body);
        free(m);
    }
    is_int(headers_end("A: 1\r\n\r\n", 8, NULL, NULL), 1, "headers_end: NULL outputs");
}

static int count(const char *s, size_t len, const char *name)
{
    char *m = copy(s, len);
    int n = headers_count(m, len, name);
    free(m);
    return n;
}

static int received(const char *s, size_t len)
{
    char *m = copy(s, len);
    int n = headers_count_received(m, len);
    free(m);
    return n;
}

#define S(s) s, sizeof(s) - 1

static void test_count(void)
{
    is_int(received(S("Received: from a\r\n\tby b; Mon, 1 Jan 2024\r\n"
                      "Received: from c\r\n by d\r\n  Received: not a field\r\n"
                      "Subject: x\r\n\r\nbody\r\n")),
           2, "Received: folded fields count once each, continuations never");
    is_int(received(S("Subject: x\r\n\r\nReceived: from body\r\nReceived: again\r\n")), 0,
           "Received: body lines do not count");
    is_int(received(S("Subject: x\nReceived: from a\n\nReceived: from body\n")), 1,
           "Received: bare LF, the body left out");
    is_int(received(S("RECEIVED: a\r\nreceived: b\r\nReCeIvEd: c\r\n")), 3, "Received: any case");
    is_int(received(S("Received : a\r\nReceived\t: b\r\n")), 2,
           "Received: space before the colon (obsolete syntax)");
    is_int(received(S("Received-SPF: pass\r\nX-Received: a\r\nReceivedx: b\r\n")), 0,
           "Received: other names that start or end alike do not count");
    is_int(received(S("Subject: x\r\nnot a header\r\nReceived: a\r\n")), 0,
           "Received: after the headers stop, nothing counts");
    is_int(received(S("Received")), 0, "Received: a name alone is no field");
    is_int(received("", 0), 0, "Received: empty message");

    char loop[51 * 32];
    size_t len = 0;
    for (int i = 0; i < 51; i++)
        len += (size_t)snprintf(loop + len, 32, "Received: hop %d\r\n", i);
    is_int(received(loop, len), 51, "Received: 51 hops counted");
    ok(received(loop, len) > HEADERS_RECEIVED_MAX, "Received: 51 is a loop");

    is_int(count(S("Date: x\r\nDate: y\r\n"), "date"), 2, "headers_count: any case");
    is_int(count(S("Date: x\r\n"), ""), 0, "headers_count: empty name");
    is_int(count(S("Date: x\r\n"), NULL), 0, "headers_count: NULL name");
}

static bool has(const char *s, size_t len, const char *name)
{
    char *m = copy(s, len);
    bool r = headers_has(m, len, name);
    free(m);
    return r;
}

static void test_has(void)
{
    ok(has(S("From: a\r\nMessage-ID: <1@a>\r\n\r\n"), "Message-Id"), "has: Message-ID");
    ok(!has(S("From: a\r\n\r\nMessage-ID: <1@a>\r\n"), "Message-ID"),
       "has: not a Message-ID in the body");
    ok(!has(S("From: a\r\nX-Date: b\r\n\r\n"), "Date"), "has: X-Date is no Date");
    ok(has(S("From: a\nDate: Mon, 1 Jan 2024 00:00:00 +0000"), "Date"),
       "has: the last line, no line end");
    ok(!has(S("From: a\r\n Date: folded\r\n"), "Date"), "has: a continuation is no field");
    ok(!has("", 0, "Date"), "has: empty message");
}

int main(void)
{
    test_end();
    test_count();
    test_has();
    return done_testing();
}
