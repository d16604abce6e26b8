/*
 * test_addr.c — RFC 5321 mailbox syntax of common/addr.h.
 *
 * The parser tables run each case twice: once from the string as written,
 * once from a heap copy of exactly len bytes with no NUL after it, so that
 * AddressSanitizer catches any read past the end.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "tap.h"
#include "util.h"

#define U ADDR_UTF8
#define Q ADDR_QUOTED
#define L ADDR_LITERAL
#define ALL (ADDR_UTF8 | ADDR_QUOTED | ADDR_LITERAL)

struct addr_case {
    const char *in;
    size_t len;
    unsigned flags;
    bool ok;
    const char *local;  /* when ok */
    const char *domain; /* when ok */
};

/* A string literal's length, NUL bytes inside it included. */
/* clang-format off */
#define V(s, f, l, d) {s, sizeof(s) - 1, f, true, l, d}
#define X(s, f) {s, sizeof(s) - 1, f, false, NULL, NULL}
/* clang-format on */

static const struct addr_case addr_cases[] = {
    /* Plain dot-atoms. */
    V("user@example.com", 0, "user", "example.com"),
    V("first.last@example.com", 0, "first.last", "example.com"),
    V("a.b.c.d@x.y.z", 0, "a.b.c.d", "x.y.z"),
    V("a@b", 0, "a", "b"),
    V("0123456789@123.example", 0, "0123456789", "123.example"),
    V("user@example.com", ALL, "user", "example.com"),
    V("!#$%&'*+-/=?^_`{|}~@example.test", 0, "!#$%&'*+-/=?^_`{|}~", "example.test"),
    V("a.!#$%&'*+-/=?^_`{|}~.b@example.test", 0, "a.!#$%&'*+-/=?^_`{|}~.b", "example.test"),
    V("bob+tag@example.org", 0, "bob+tag", "example.org"),
    /* Case: the domain is folded, the local part is kept. */
    V("MiXeD.Case@ExAmPlE.TeSt", 0, "MiXeD.Case", "example.test"),
    V("BOB@EXAMPLE.ORG", 0, "BOB", "example.org"),
    /* Dots. */
    X(".a@example.com", 0),
    X("a.@example.com", 0),
    X("a..b@example.com", 0),
    X(".@example.com", 0),
    X("a@.example.com", 0),
    X("a@example.com.", 0),
    X("a@example..com", 0),
    X("a@.", 0),
    /* Missing or empty parts. */
    X("", 0),
    X("userexample.com", 0),
    X("@example.com", 0),
    X("user@", 0),
    X("@", 0),
    X("@@", 0),
    X("a@b@c", 0),
    X("a@b@c", ALL),
    /* Not atext. */
    X("a b@example.com", 0),
    X(" a@example.com", 0),
    X("a@example.com ", 0),
    X("a@exa mple.com", 0),
    X("a(b)@example.com", 0),
    X("a,b@example.com", 0),
    X("a;b@example.com", 0),
    X("a:b@example.com", 0),
    X("a<b>@example.com", 0),
    X("a[b]@example.com", 0),
    X("a\\b@example.com", 0),
    X("a\"b@example.com", 0),
    X("<a@example.com>", 0),
    /* Control characters and NUL. */
    X("a\tb@example.com", 0),
    X("a\x01@example.com", 0),
    X("a\x7f@example.com", 0),
    X("a\r\n@example.com", 0),
    X("a@exam\x01ple.com", 0),
    X("a@example.com\r", 0),
    X("a@example.com\n", ALL),
    X("a\0b@example.com", 0),
    X("a\0b@example.com", ALL),
    X("ab@exa\0mple.com", 0),
    X("ab@example.com\0", 0),
    X("\0ab@example.com", 0),
    /* Hyphens in labels. */
    V("a@a-b.example", 0, "a", "a-b.example"),
    V("a@a--b.example", 0, "a", "a--b.example"),
    V("a@1-2-3.example", 0, "a", "1-2-3.example"),
    V("a@x.1a", 0, "a", "x.1a"),
    V("a@123", 0, "a", "123"),
    X("a@-ab.example", 0),
    X("a@ab-.example", 0),
    X("a@ab.-example", 0),
    X("a@ab.example-", 0),
    X("a@-", 0),
    X("a@a.-", 0),
    X("a@a_b.example", 0),
    X("a@a!b.example", 0),
    X("a@a+b.example", 0),
    /* Quoted local parts, only with ADDR_QUOTED. */
    X("\"a b\"@x", 0),
    V("\"a b\"@x", Q, "\"a b\"", "x"),
    V("\"a b\"@X.Example", ALL, "\"a b\"", "x.example"),
    X("\"a\\\"b\"@x", 0),
    V("\"a\\\"b\"@x", Q, "\"a\\\"b\"", "x"),
    V("\"a\\\\b\"@x", Q, "\"a\\\\b\"", "x"),
    V("\"a\\b\"@x", Q, "\"a\\b\"", "x"),
    X("\"a@b\"@example.test", 0),
    V("\"a@b\"@example.test", Q, "\"a@b\"", "example.test"),
    V("\"@\"@x", Q, "\"@\"", "x"),
    V("\"a.b..c.\"@x", Q, "\"a.b..c.\"", "x"),
    V("\"(),:;<>[]\"@x", Q, "\"(),:;<>[]\"", "x"),
    X("\"a\"b@x", Q),
    X("a\"b\"@x", Q),
    X("\"ab@x", Q),
    X("\"@x", Q),
    X("\"a\\\"@x", Q),
    X("\"a\"\"b\"@x", Q),
    X("\"a\tb\"@x", Q),
    X("\"a\\\tb\"@x", Q),
    X("\"a\x7f\"@x", Q),
    X("\"a\x01\"@x", Q),
    X("\"a\0b\"@x", Q),
    X("\"a\"@", Q),
    X("\"a\".b@x", Q),
    /* Address literals, only with ADDR_LITERAL. */
    X("a@[192.0.2.1]", 0),
    X("a@[192.0.2.1]", Q | U),
    V("a@[192.0.2.1]", L, "a", "[192.0.2.1]"),
    V("a@[IPv6:2001:db8::1]", L, "a", "[IPv6:2001:db8::1]"),
    V("\"a b\"@[192.0.2.1]", ALL, "\"a b\"", "[192.0.2.1]"),
    X("a@[]", L),
    X("a@[", L),
    X("a@]", L),
    X("a@[192.0.2.1", L),
    X("a@192.0.2.1]", L),
    X("a@[192.0.2.1]x", L),
    X("a@x[192.0.2.1]", L),
    X("a@[192.0.2 .1]", L),
    X("a@[192.0[2].1]", L),
    X("a@[192\\.0.2.1]", L),
    X("a@[192.0.2.1\x01]", L),
    X("a@[192.0\0.2.1]", L),
    /* RFC 5321 4.1.3: an address literal is an IPv4 address, "IPv6:" and an
     * IPv6 address, or a tag ":" content; a bare word or an IPv4 address with
     * an octet over 255 is none of them. */
    X("a@[hello]", L),
    X("a@[300.1.1.1]", L),
    /* UTF-8, only with ADDR_UTF8. */
    X("\xc3\xa9@x", 0),
    V("\xc3\xa9@x", U, "\xc3\xa9", "x"),
    V("\xe2\x82\xac@x", U, "\xe2\x82\xac", "x"),
    V("\xf0\x9f\x98\x80@x", U, "\xf0\x9f\x98\x80", "x"),
    V("J\xc3\xbcrgen.M\303\274ller@Example.DE", U, "J\xc3\xbcrgen.M\303\274ller", "example.de"),
    X("a@\303\251xample.test", 0),
    V("a@\303\251xample.test", U, "a", "\303\251xample.test"),
    V("a@B\303\234CHER.DE", U, "a", "b\303\234cher.de"),
    V("a@\xe4\xbe\x8b\xe3\x81\x88.\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88", U, "a",
      "\xe4\xbe\x8b\xe3\x81\x88.\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88"),
    V("\xed\x9f\xbf@x", U, "\xed\x9f\xbf", "x"),         /* U+D7FF */
    V("\xee\x80\x80@x", U, "\xee\x80\x80", "x"),         /* U+E000 */
    V("\xf4\x8f\xbf\xbf@x", U, "\xf4\x8f\xbf\xbf", "x"), /* U+10FFFF */
    V("\xc2\x80@x", U, "\xc2\x80", "x"),                 /* U+0080 */
    V("\xdf\xbf@x", U, "\xdf\xbf", "x"),                 /* U+07FF */
    V("\xe0\xa0\x80@x", U, "\xe0\xa0\x80", "x"),         /* U+0800 */
    V("\xf0\x90\x80\x80@x", U, "\xf0\x90\x80\x80", "x"), /* U+10000 */
    V("\"\xc3\xa9 x\"@x", Q | U, "\"\xc3\xa9 x\"", "x"),
    X("\"\xc3\xa9 x\"@x", Q),
    X("\xc0\x80@x", U),             /* overlong NUL */
    X("\xc1\xbf@x", U),             /* overlong */
    X("\xe0\x80\x80@x", U),         /* overlong */
    X("\xe0\x9f\xbf@x", U),         /* overlong U+07FF */
    X("\xf0\x80\x80\x80@x", U),     /* overlong */
    X("\xf0\x8f\xbf\xbf@x", U),     /* overlong U+FFFF */
    X("\xed\xa0\x80@x", U),         /* surrogate U+D800 */
    X("\xed\xbf\xbf@x", U),         /* surrogate U+DFFF */
    X("\xf4\x90\x80\x80@x", U),     /* U+110000 */
    X("\xf5\x80\x80\x80@x", U),     /* F5 */
    X("\xf8\x88\x80\x80\x80@x", U), /* 5-byte form */
    X("\xfe@x", U),
    X("\xff@x", U),
    X("\x80@x", U), /* lone continuation */
    X("\xbf@x", U),
    X("\xc3@x", U),         /* truncated before '@' */
    X("\xe2\x82@x", U),     /* truncated */
    X("\xf0\x9f\x98@x", U), /* truncated */
    X("\303a@x", U),        /* not a continuation byte */
    X("\xe2\x28\xa1@x", U),
    X("a@x\xc3", U),         /* truncated at the end of the input */
    X("a@x\xe2\x82", U),     /* truncated at the end of the input */
    X("a@x\xf0\x9f\x98", U), /* truncated at the end of the input */
    X("a@\xed\xa0\x80", U),
    X("a@\xc0\xae", U),
    X("\"\xc3\"@x", Q | U), /* truncated before the closing quote */
    X("\"\xe2\x82\"@x", Q | U),
    X("\"\xc0\x80\"@x", Q | U),
};

/* Runs one parse and checks it; name and tag name the case and the run. */
static void check_parse(const struct addr_case *c, const char *s, const char *name, const char *tag)
{
    struct addr r;
    memset(&r, 0x55, sizeof(r));
    int rc = addr_parse(s, c->len, c->flags, &r);
    if (c->ok) {
        is_int(rc, 0, "%s (%s): parses", name, tag);
        if (rc == 0) {
            is_str(r.local, c->local, "%s (%s): local part", name, tag);
            is_str(r.domain, c->domain, "%s (%s): domain", name, tag);
        }
    } else {
        is_int(rc, -KOTAK_EADDR, "%s (%s): refused", name, tag);
    }
}

static char *heap_copy(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    if (p == NULL)
        abort();
    if (len)
        memcpy(p, s, len);
    return p;
}

static void run_case(const struct addr_case *c, const char *name)
{
    check_parse(c, c->in, name, "as given");
    char *copy = heap_copy(c->in, c->len);
    check_parse(c, copy, name, "heap copy");
    free(copy);
}

/* "addr case N 'input' flags F", with bytes outside 0x21..0x7e as \xNN. */
static void describe(char *out, size_t size, size_t i, const struct addr_case *c)
{
    int n = snprintf(out, size, "addr case %zu '", i);
    size_t o = n > 0 ? (size_t)n : 0;
    for (size_t k = 0; k < c->len && o + 8 < size; k++) {
        unsigned char ch = (unsigned char)c->in[k];
        if (ch > 0x20 && ch < 0x7f && ch != '\\')
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", ch);
    }
    snprintf(out + o, size - o, "' flags %u", c->flags);
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
        char name[600];
        describe(name, sizeof(name), i, &addr_cases[i]);
        run_case(&addr_cases[i], name);
    }
}

/* Every atext special alone in a local part, and in the middle of one. */
static void test_specials(void)
{
    const char *specials = "!#$%&'*+-/=?^_`{|}~";
    int bad = 0;
    for (const char *p = specials; *p; p++) {
        char in[16], local[8];
        struct addr r;
        snprintf(in, sizeof(in), "%c@x", *p);
        if (addr_parse(in, strlen(in), 0, &r) != 0 || r.local[0] != *p || r.local[1] != '\0')
            bad++;
        snprintf(local, sizeof(local), "a%cb", *p);
        snprintf(in, sizeof(in), "%s@x", local);
        if (addr_parse(in, strlen(in), 0, &r) != 0 || strcmp(r.local, local) != 0)
            bad++;
    }
    is_int(bad, 0, "each atext special is accepted alone and inside a local part");

    /* And every other printable ASCII character is refused outside quotes. */
    bad = 0;
    for (int ch = 0x20; ch < 0x7f; ch++) {
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr(specials, ch) != NULL || ch == '.' || ch == '@')
            continue;
        char in[8] = {'a', (char)ch, 'b', '@', 'x'};
        struct addr r;
        if (addr_parse(in, 5, ALL & ~(unsigned)Q, &r) != -KOTAK_EADDR)
            bad++;
    }
    is_int(bad, 0, "every other printable character is refused in a dot-string");

    /* Control characters anywhere, under every flag. */
    bad = 0;
    for (int ch = 0; ch < 0x20; ch++) {
        char in1[8] = {'a', (char)ch, 'b', '@', 'x'};
        char in2[8] = {'a', '@', 'x', (char)ch, 'y'};
        char in3[8] = {'"', 'a', (char)ch, '"', '@', 'x'};
        struct addr r;
        if (addr_parse(in1, 5, ALL, &r) != -KOTAK_EADDR)
            bad++;
        if (addr_parse(in2, 5, ALL, &r) != -KOTAK_EADDR)
            bad++;
        if (addr_parse(in3, 6, ALL, &r) != -KOTAK_EADDR)
            bad++;
    }
    is_int(bad, 0, "control characters are refused in local part, domain and quotes");
}

static void fill(char *p, char ch, size_t n)
{
    memset(p, ch, n);
}

/* Runs a built case from a buffer through run_case (both runs). */
static void run_built(const char *in, size_t len, unsigned flags, bool want_ok, const char *local,
                      const char *domain, const char *name)
{
    struct addr_case c = {in, len, flags, want_ok, local, domain};
    run_case(&c, name);
}

static void test_lengths(void)
{
    char in[600], local[100], domain[300];

    /* Local part of 64 and 65 octets. */
    fill(local, 'l', 64);
    local[64] = '\0';
    snprintf(in, sizeof(in), "%s@example.com", local);
    run_built(in, strlen(in), 0, true, local, "example.com", "local part of 64");
    fill(local, 'l', 65);
    local[65] = '\0';
    snprintf(in, sizeof(in), "%s@example.com", local);
    run_built(in, strlen(in), 0, false, NULL, NULL, "local part of 65");
    run_built(in, strlen(in), ALL, false, NULL, NULL, "local part of 65, all flags");

    /* A quoted local part counts its quotes: 62 + 2 fits, 63 + 2 does not. */
    local[0] = '"';
    fill(local + 1, 'q', 62);
    local[63] = '"';
    local[64] = '\0';
    snprintf(in, sizeof(in), "%s@x", local);
    run_built(in, strlen(in), Q, true, local, "x", "quoted local part of 64");
    local[0] = '"';
    fill(local + 1, 'q', 63);
    local[64] = '"';
    local[65] = '\0';
    snprintf(in, sizeof(in), "%s@x", local);
    run_built(in, strlen(in), Q, false, NULL, NULL, "quoted local part of 65");

    /* A label of 63 and of 64 octets. */
    fill(domain, 'd', 63);
    strcpy(domain + 63, ".example");
    snprintf(in, sizeof(in), "a@%s", domain);
    run_built(in, strlen(in), 0, true, "a", domain, "label of 63");
    fill(domain, 'd', 64);
    strcpy(domain + 64, ".example");
    snprintf(in, sizeof(in), "a@%s", domain);
    run_built(in, strlen(in), 0, false, NULL, NULL, "label of 64");
    fill(domain, 'd', 63);
    domain[63] = '\0';
    snprintf(in, sizeof(in), "a@example.%s", domain);
    run_built(in, strlen(in), 0, true, "a", in + 2, "last label of 63");
    fill(domain, 'd', 64);
    domain[64] = '\0';
    snprintf(in, sizeof(in), "a@example.%s", domain);
    run_built(in, strlen(in), 0, false, NULL, NULL, "last label of 64");

    /* A label of 63 octets in UTF-8 (31 two-byte characters and one letter). */
    size_t n = 0;
    for (int i = 0; i < 31; i++) {
        domain[n++] = '\xc3';
        domain[n++] = '\xa9';
    }
    domain[n++] = 'z';
    strcpy(domain + n, ".example");
    snprintf(in, sizeof(in), "a@%s", domain);
    run_built(in, strlen(in), U, true, "a", domain, "UTF-8 label of 63 octets");
    n = 0;
    for (int i = 0; i < 32; i++) {
        domain[n++] = '\xc3';
        domain[n++] = '\xa9';
    }
    strcpy(domain + n, ".example");
    snprintf(in, sizeof(in), "a@%s", domain);
    run_built(in, strlen(in), U, false, NULL, NULL, "UTF-8 label of 64 octets");

    /* The whole address: 64 + 1 + 189 = 254 fits; 64 + 1 + 190 = 255 does not. */
    fill(local, 'l', 64);
    local[64] = '\0';
    fill(domain, 'a', 63);
    domain[63] = '.';
    fill(domain + 64, 'b', 63);
    domain[127] = '.';
    fill(domain + 128, 'c', 61);
    domain[189] = '\0';
    snprintf(in, sizeof(in), "%s@%s", local, domain);
    is_int(strlen(in), 254, "built address is 254 octets");
    run_built(in, 254, 0, true, local, domain, "address of 254");
    fill(domain + 128, 'c', 62);
    domain[190] = '\0';
    snprintf(in, sizeof(in), "%s@%s", local, domain);
    is_int(strlen(in), 255, "built address is 255 octets");
    run_built(in, 255, 0, false, NULL, NULL, "address of 255");
    run_built(in, 255, ALL, false, NULL, NULL, "address of 255, all flags");
    /* ... though its domain alone is fine. */
    char out[ADDR_DOMAIN_MAX + 1];
    is_int(addr_parse_domain(domain, strlen(domain), 0, out), 0, "its domain of 190 alone parses");
}

struct domain_case {
    const char *in;
    size_t len;
    unsigned flags;
    const char *out; /* NULL: refused */
};

/* clang-format off */
#define DV(s, f, o) {s, sizeof(s) - 1, f, o}
#define DX(s, f) {s, sizeof(s) - 1, f, NULL}
/* clang-format on */

static const struct domain_case domain_cases[] = {
    DV("example.com", 0, "example.com"),
    DV("Example.COM", 0, "example.com"),
    DV("MAIL.Example.Org", ALL, "mail.example.org"),
    DV("x", 0, "x"),
    DV("1", 0, "1"),
    DV("a-b.c-d", 0, "a-b.c-d"),
    DV("xn--bcher-kva.example", 0, "xn--bcher-kva.example"),
    DV("b\303\274cher.example", U, "b\303\274cher.example"),
    DV("B\303\234CHER.EXAMPLE", U, "b\303\234cher.example"),
    DX("b\303\274cher.example", 0),
    DX("", 0),
    DX(".", 0),
    DX("..", 0),
    DX(".example", 0),
    DX("example.", 0),
    DX("exa..mple", 0),
    DX("-example", 0),
    DX("example-", 0),
    DX("ex-.ample", 0),
    DX("ex.-ample", 0),
    DX("-", 0),
    DX("ex_ample", 0),
    DX("ex ample", 0),
    DX("example.com ", 0),
    DX("exa\0mple", 0),
    DX("exa\0mple", ALL),
    DX("example\0", 0),
    DX("exa\tmple", 0),
    DX("[192.0.2.1]", 0),
    DX("[192.0.2.1]", ALL),
    DX("user@example", 0),
    DX("exam\xc3", U),
    DX("exam\xe2\x82", U),
    DX("\xc0\x80", U),
    DX("\xed\xa0\x80", U),
    DX("\xf5\x80\x80\x80", U),
};

static void check_domain(const struct domain_case *c, const char *s, size_t i, const char *tag)
{
    char out[ADDR_DOMAIN_MAX + 1];
    memset(out, 0x55, sizeof(out));
    int rc = addr_parse_domain(s, c->len, c->flags, out);
    if (c->out != NULL) {
        is_int(rc, 0, "domain case %zu (%s): parses", i, tag);
        if (rc == 0)
            is_str(out, c->out, "domain case %zu (%s): folded copy", i, tag);
    } else {
        is_int(rc, -KOTAK_EADDR, "domain case %zu (%s): refused", i, tag);
    }
}

static void test_domain(void)
{
    for (size_t i = 0; i < sizeof(domain_cases) / sizeof(domain_cases[0]); i++) {
        const struct domain_case *c = &domain_cases[i];
        check_domain(c, c->in, i, "as given");
        char *copy = heap_copy(c->in, c->len);
        check_domain(c, copy, i, "heap copy");
        free(copy);
    }

    /* 255 octets in all fits (four labels of 63), 256 does not. */
    char d[300], out[ADDR_DOMAIN_MAX + 1];
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        if (i)
            d[n++] = '.';
        fill(d + n, (char)('A' + i), 63);
        n += 63;
    }
    d[n] = '\0';
    is_int(n, 255, "built domain is 255 octets");
    char *copy = heap_copy(d, n);
    is_int(addr_parse_domain(copy, n, 0, out), 0, "domain of 255 parses");
    free(copy);
    ok(strlen(out) == 255 && out[0] == 'a' && out[254] == 'd', "domain of 255 copied and folded");
    strcpy(d + 255, ".e");
    n = 257;
    copy = heap_copy(d, n);
    is_int(addr_parse_domain(copy, n, 0, out), -KOTAK_EADDR, "domain of 257 refused");
    free(copy);
    /* Labels of 63, 63, 63, 62 and 1: 256 octets. */
    d[254] = '.';
    d[255] = 'e';
    d[256] = '\0';
    n = strlen(d);
    is_int(n, 256, "built domain is 256 octets");
    copy = heap_copy(d, n);
    is_int(addr_parse_domain(copy, n, 0, out), -KOTAK_EADDR, "domain of 256 refused");
    free(copy);
    d[255] = '\0';
    is_int(addr_parse_domain(d, 255, 0, out), -KOTAK_EADDR,
           "domain of 255 ending in a dot refused");

    /* Only len bytes count: a longer string cut short parses as the prefix. */
    is_int(addr_parse_domain("example.com.junk", 11, 0, out), 0, "len bounds the input");
    is_str(out, "example.com", "only len bytes copied");
}

static void test_utf8_valid(void)
{
    static const struct {
        const char *s;
        size_t len;
        bool ok;
    } cases[] = {
#define UV(s, v) {s, sizeof(s) - 1, v}
        UV("", true),
        UV("plain ascii", true),
        UV("\x7f\x01", true),
        UV("a\0b", true),
        UV("\xc3\xa9", true),
        UV("\xe2\x82\xac", true),
        UV("\xf0\x9f\x98\x80", true),
        UV("\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", true),
        UV("\xed\x9f\xbf\xee\x80\x80", true),
        UV("\xc0\x80", false),
        UV("\xc1\xbf", false),
        UV("\xe0\x80\x80", false),
        UV("\xe0\x9f\xbf", false),
        UV("\xf0\x80\x80\x80", false),
        UV("\xf0\x8f\xbf\xbf", false),
        UV("\xed\xa0\x80", false),
        UV("\xed\xbf\xbf", false),
        UV("\xf4\x90\x80\x80", false),
        UV("\xf5\x80\x80\x80", false),
        UV("\xf8\x88\x80\x80\x80", false),
        UV("\xfc\x84\x80\x80\x80\x80", false),
        UV("\xfe", false),
        UV("\xff", false),
        UV("\x80", false),
        UV("a\xbf", false),
        UV("\xc3", false),
        UV("\xe2\x82", false),
        UV("\xf0\x9f\x98", false),
        UV("\303a", false),
        UV("\xe2\x28\xa1", false),
        UV("\xc3\xa9\xc3", false),
#undef UV
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        is_int(addr_utf8_valid(cases[i].s, cases[i].len), cases[i].ok, "utf8 case %zu (as given)",
               i);
        char *copy = heap_copy(cases[i].s, cases[i].len);
        is_int(addr_utf8_valid(copy, cases[i].len), cases[i].ok, "utf8 case %zu (heap copy)", i);
        free(copy);
    }
    ok(addr_utf8_valid("\xc3\xa9", 1) == false, "len cuts a sequence: invalid");
    ok(addr_utf8_valid("ab\xc3\xa9", 2) == true, "len before a sequence: valid");
}

static void test_lower(void)
{
    char s1[] = "ABC-xyz.EXAMPLE.Org";
    addr_lower(s1);
    is_str(s1, "abc-xyz.example.org", "addr_lower folds ASCII letters");
    char s2[] = "B\303\234CHER@[IPv6:DB8::1]";
    addr_lower(s2);
    is_str(s2, "b\303\234cher@[ipv6:db8::1]", "addr_lower leaves non-ASCII bytes alone");
    char s3[] = "";
    addr_lower(s3);
    is_str(s3, "", "addr_lower of \"\"");
    char s4[] = "@[\\]^_`{|}~ 09";
    addr_lower(s4);
    is_str(s4, "@[\\]^_`{|}~ 09", "addr_lower leaves neighbours of the letters alone");
}

static void test_base_len(void)
{
    is_int(addr_local_base_len("bob+x"), 3, "base of bob+x is 3");
    is_int(addr_local_base_len("+x"), 2, "base of +x is the whole (2)");
    is_int(addr_local_base_len("bob"), 3, "base of bob is 3");
    is_int(addr_local_base_len("a+b+c"), 1, "base of a+b+c is 1");
    is_int(addr_local_base_len("bob+"), 3, "base of bob+ is 3");
    is_int(addr_local_base_len("+"), 1, "base of + is the whole (1)");
    is_int(addr_local_base_len(""), 0, "base of \"\" is 0");
    is_int(addr_local_base_len("first.last+tag.x"), 10, "base of first.last+tag.x is 10");
}

int main(void)
{
    test_table();
    test_specials();
    test_lengths();
    test_domain();
    test_utf8_valid();
    test_lower();
    test_base_len();
    return done_testing();
}
