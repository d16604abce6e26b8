/*
 * test_header_eoh.c — where a header section lacks its ending empty line
 * (common/header_eoh.h): a table, each case asked of the whole message and
 * again fed one octet at a time and in two pieces split everywhere; then
 * random messages, whose answer must agree with smtpd/headers.c's
 * headers_end, the rule the SMTP side reads header sections by.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "header_eoh.h"
#include "headers.h"
#include "tap.h"

#define NONE SIZE_MAX

static const struct {
    const char *name, *msg;
    size_t want;
} cases[] = {
    {"a proper message", "From: a\r\nSubject: x\r\n\r\nbody\r\n", NONE},
    {"an empty line alone", "\r\n", NONE},
    {"an empty line and a body without header", "\r\nbody\r\n", NONE},
    {"fields only", "From: a\r\nSubject: x\r\n", 21},
    {"one field only", "Subject: a header alone\r\n", 25},
    {"a body line right under the fields", "From: a\r\nright under\r\nmore\r\n", 9},
    {"a folded field, then a body line", "Subject: a\r\n\tfolded\r\nbody here\r\n", 21},
    {"a first line that is no field", "hello world\r\n", 0},
    {"the empty message", "", 0},
    {"a line with a colon after a space in the name", "Subject : obsolete\r\nbody\r\n", 20},
    {"a name with a space inside is no field", "From: a\r\nnot a: field\r\n", 9},
    {"a last line with no colon and no line end", "From: a\r\nbody", 9},
    {"the bytes end inside a field", "From: a\r\nSubject: x", NONE},
    {"the bytes end on a bare CR", "From: a\r", NONE},
    {"bare LF line ends, fields only", "From: a\nTo: b\n", 14},
    {"bare LF, then a body line", "From: a\nbody\n", 8},
    {"bare LF, then the empty line", "From: a\n\nbody\n", NONE},
    {"a bare CR ends a line, then a body line", "From: a\rbody\r\n", 8},
    {"a line starting with a colon", "From: a\r\n: no name\r\n", 9},
    {"a dot line right under the fields", "From: a\r\n.\r\n", 9},
    {"a NUL in a field", "From: a\0b\r\n", 11},
    {"8-bit octets in a name", "Fr\xc3\xb6m: a\r\n", 0},
    {"a continuation first", " folded\r\nFrom: a\r\n", 18},
};

/* The answer, derived from headers_end (smtpd/headers.c): what the store must record. */
static size_t by_headers_end(const char *msg, size_t len)
{
    size_t hdr_len;
    if (headers_end(msg, len, &hdr_len, NULL) == 1)
        return NONE;
    if (hdr_len < len || len == 0)
        return hdr_len; /* a line that is no field starts there */
    return msg[len - 1] == '\n' ? len : NONE; /* else the bytes end inside a header line */
}

static size_t fed(const char *msg, size_t len, size_t piece)
{
    struct header_eoh h;
    header_eoh_init(&h);
    for (size_t i = 0; i < len; i += piece)
        header_eoh_feed(&h, msg + i, len - i < piece ? len - i : piece);
    uint64_t at = header_eoh_finish(&h);
    return at == UINT64_MAX ? NONE : (size_t)at;
}

static size_t split(const char *msg, size_t len, size_t cut)
{
    struct header_eoh h;
    header_eoh_init(&h);
    header_eoh_feed(&h, msg, cut);
    header_eoh_feed(&h, msg + cut, len - cut);
    uint64_t at = header_eoh_finish(&h);
    return at == UINT64_MAX ? NONE : (size_t)at;
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *msg = cases[i].msg;
        /* "a NUL in a field" holds a NUL: its length is written out. */
        size_t len = strcmp(cases[i].name, "a NUL in a field") == 0 ? 11 : strlen(msg);
        size_t want = cases[i].want;
        is_int((long long)header_eoh_missing(msg, len), (long long)want, "%s: whole",
               cases[i].name);
        is_int((long long)fed(msg, len, 1), (long long)want, "%s: one octet at a time",
               cases[i].name);
        bool same = true;
        for (size_t cut = 0; cut <= len; cut++)
            same = same && split(msg, len, cut) == want;
        ok(same, "%s: in two pieces, cut anywhere", cases[i].name);
        is_int((long long)by_headers_end(msg, len), (long long)want,
               "%s: headers_end agrees", cases[i].name);
    }
}

/* A colon past the 998th octet of a line: no field (RFC 5322 2.1.1, as headers.c). */
static void test_long_name(void)
{
    static char msg[1100];
    memcpy(msg, "From: a\r\n", 9);
    memset(msg + 9, 'x', 997);
    memcpy(msg + 9 + 997, ": v\r\n", 5); /* the colon is the line's 998th octet */
    size_t len = 9 + 997 + 5;
    is_int((long long)header_eoh_missing(msg, len), (long long)len,
           "a colon at octet 998 still makes a field");
    memset(msg + 9, 'x', 998);
    memcpy(msg + 9 + 998, ": v\r\n", 5);
    len = 9 + 998 + 5;
    is_int((long long)header_eoh_missing(msg, len), 9, "a colon at octet 999 does not");
    is_int((long long)fed(msg, len, 7), 9, "nor when it comes in pieces");
    is_int((long long)by_headers_end(msg, len), 9, "headers_end agrees");
}

/* Random messages from a small alphabet: the same answer as headers_end, however fed. */
static void test_random(void)
{
    static const char alphabet[] = "ab:  \t\r\n\n\r\nX.";
    unsigned seed = 12345;
    int disagree = 0, split_differs = 0;
    char msg[64];
    for (int round = 0; round < 200000; round++) {
        seed = seed * 1103515245u + 12345u;
        size_t len = (seed >> 16) % sizeof(msg);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            msg[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
        }
        size_t want = by_headers_end(msg, len), got = header_eoh_missing(msg, len);
        if (got != want && disagree++ == 0)
            printf("# disagree on '%.*s': %zu, headers_end %zu\n", (int)len, msg, got, want);
        if (fed(msg, len, 1 + (seed >> 20) % 5) != got)
            split_differs++;
    }
    is_int(disagree, 0, "200000 random messages: the answer is headers_end's");
    is_int(split_differs, 0, "and the same whatever the pieces");
}

int main(void)
{
    test_table();
    test_long_name();
    test_random();
    return done_testing();
}
