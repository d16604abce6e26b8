/*
 * test_mtasts.c — the pure parts of MTA-STS (smtpd/mtasts.h): the TXT
 * record of RFC 8461 3.1 (its examples, several records, hostile ones),
 * the policy file of 3.2 (the RFC's example, LF and CRLF, repeated fields,
 * every required field missing in turn, bounds), MX pattern matching
 * (3.4: a wildcard is one whole leftmost label), and the cache (expiry,
 * replacement, eviction by count and by octets, least recently used
 * first).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtasts.h"
#include "tap.h"

/* --- the TXT record ---------------------------------------------------------- */

struct txt_case {
    const char *name;
    const char *txt;
    int rc;
    const char *id; /* when rc is 1 */
};

static const struct txt_case txt_cases[] = {
    /* RFC 8461 3.1's example. */
    {"RFC 8461 example", "v=STSv1; id=20160831085700Z;", 1, "20160831085700Z"},
    {"no final delimiter", "v=STSv1; id=20160831085700Z", 1, "20160831085700Z"},
    {"no spaces", "v=STSv1;id=abc", 1, "abc"},
    {"spaces and tabs around ;", "v=STSv1 \t;\t id=abc \t; ", 1, "abc"},
    {"an extension before the id", "v=STSv1; ext_1.x=some-value; id=X1", 1, "X1"},
    {"an extension after the id", "v=STSv1; id=X1; foo=bar", 1, "X1"},
    {"32-character id", "v=STSv1; id=0123456789abcdef0123456789ABCDEF", 1,
     "0123456789abcdef0123456789ABCDEF"},
    {"not STS: SPF", "v=spf1 -all", 0, NULL},
    {"not STS: version 10", "v=STSv10; id=1", 0, NULL},
    {"not STS: lower-case version (RFC 7405 %s)", "v=stsv1; id=1", 0, NULL},
    {"not STS: space before v", " v=STSv1; id=1", 0, NULL},
    {"not STS: empty", "", 0, NULL},
    {"version alone", "v=STSv1", -EINVAL, NULL},
    {"version and delimiter alone", "v=STSv1;", -EINVAL, NULL},
    {"33-character id", "v=STSv1; id=0123456789abcdef0123456789ABCDEFx", -EINVAL, NULL},
    {"id with a hyphen", "v=STSv1; id=2016-08-31", -EINVAL, NULL},
    {"empty id", "v=STSv1; id=", -EINVAL, NULL},
    {"two ids", "v=STSv1; id=a; id=b", -EINVAL, NULL},
    {"upper-case ID is an extension, no id", "v=STSv1; ID=abc", -EINVAL, NULL},
    {"a field without =", "v=STSv1; id", -EINVAL, NULL},
    {"two fields without ;", "v=STSv1; id=a foo=b", -EINVAL, NULL},
    {"empty field between delimiters", "v=STSv1;; id=a", -EINVAL, NULL},
    {"a value with =", "v=STSv1; id=a; x=b=c", -EINVAL, NULL},
    {"a control character", "v=STSv1; id=a\x01", -EINVAL, NULL},
    {"a name starting with _", "v=STSv1; _x=1; id=a", -EINVAL, NULL},
    {"a name of 33 characters", "v=STSv1; abcdefghijabcdefghijabcdefghijabc=1; id=a", -EINVAL,
     NULL},
    {"8-bit in a value", "v=STSv1; id=a; x=\xc3\xa9", -EINVAL, NULL},
};

static void test_txt(void)
{
    for (size_t i = 0; i < sizeof(txt_cases) / sizeof(txt_cases[0]); i++) {
        const struct txt_case *c = &txt_cases[i];
        char id[MTASTS_ID_MAX + 1] = "unset";
        const char *why = NULL;
        int rc = mtasts_txt_parse(c->txt, strlen(c->txt), id, &why);
        is_int(rc, c->rc, "txt: %s", c->name);
        if (c->rc == 1)
            is_str(id, c->id, "txt: %s: the id", c->name);
        if (c->rc < 0)
            ok(why != NULL && why[0] != '\0', "txt: %s: says why (%s)", c->name, why ? why : "");
    }
    /* A NUL inside: the record is longer than its strlen. */
    char id[MTASTS_ID_MAX + 1];
    static const char nul[] = "v=STSv1; id=ab\0cd";
    is_int(mtasts_txt_parse(nul, sizeof(nul) - 1, id, NULL), -EINVAL, "txt: a NUL inside");
    /* Every prefix of a valid record parses without reading past its end. */
    static const char full[] = "v=STSv1; x=y; id=abc;";
    for (size_t n = 0; n <= sizeof(full) - 1; n++) {
        char *copy = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, full, n);
        int rc = mtasts_txt_parse(copy, n, id, NULL);
        free(copy);
        ok(rc == 0 || rc == 1 || rc == -EINVAL, "txt: prefix of %zu octets: %d", n, rc);
    }
}

static void test_txt_pick(void)
{
    char id[MTASTS_ID_MAX + 1];
    const char *why = NULL;
    const char *one[] = {"v=spf1 -all", "v=STSv1; id=abc", "something else"};
    size_t one_l[] = {11, 15, 14};
    is_int(mtasts_txt_pick(one, one_l, 3, id, &why), 1, "pick: one STS record among others");
    is_str(id, "abc", "pick: its id");
    const char *two[] = {"v=STSv1; id=abc", "v=STSv1; id=def"};
    size_t two_l[] = {15, 15};
    is_int(mtasts_txt_pick(two, two_l, 2, id, &why), 0,
           "pick: two STS records: no policy (RFC 8461 3.1)");
    const char *bad_and_good[] = {"v=STSv1; id=a-b", "v=STSv1; id=def"};
    size_t bg_l[] = {15, 15};
    is_int(mtasts_txt_pick(bad_and_good, bg_l, 2, id, &why), 0,
           "pick: an invalid and a valid STS record: still two, no policy");
    const char *none[] = {"v=spf1 -all"};
    size_t none_l[] = {11};
    is_int(mtasts_txt_pick(none, none_l, 1, id, &why), 0, "pick: no STS record");
    is_int(mtasts_txt_pick(NULL, NULL, 0, id, &why), 0, "pick: no record at all");
    const char *bad[] = {"v=STSv1"};
    size_t bad_l[] = {7};
    is_int(mtasts_txt_pick(bad, bad_l, 1, id, &why), -EINVAL, "pick: the one STS record is bad");
}

/* --- the policy file ---------------------------------------------------------- */

/* "mx1 mx2 ..." of a parsed policy. */
static const char *mx_text(const struct mtasts_parsed *p)
{
    static char out[2048];
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < p->n_mx && used < sizeof(out); i++)
        used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%.*s", i ? " " : "",
                                 (int)p->mx[i].len, p->mx[i].p);
    return out;
}

struct policy_case {
    const char *name;
    const char *text;
    int rc;
    enum mtasts_mode mode;
    unsigned max_age;
    const char *mx;
};

static const struct policy_case policy_cases[] = {
    /* RFC 8461 3.2's example, with its CRLF line ends. */
    {"RFC 8461 example (CRLF)",
     "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
     "mx: backupmx.example.com\r\nmax_age: 604800\r\n",
     0, MTASTS_MODE_ENFORCE, 604800, "mail.example.com *.example.net backupmx.example.com"},
    {"LF line ends, no final one",
     "version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 86400", 0, MTASTS_MODE_TESTING,
     86400, "mx.example.test"},
    {"fields in any order, no space after ':'",
     "max_age:1\nmx:mx.example.test\nmode:enforce\nversion:STSv1\n", 0, MTASTS_MODE_ENFORCE, 1,
     "mx.example.test"},
    {"mode none needs no mx", "version: STSv1\nmode: none\nmax_age: 0\n", 0, MTASTS_MODE_NONE, 0,
     ""},
    {"blank lines and trailing spaces",
     "\n  \nversion: STSv1  \r\n\r\nmode: enforce\t\nmx: mx.example.test \nmax_age: 5\n\n", 0,
     MTASTS_MODE_ENFORCE, 5, "mx.example.test"},
    {"unknown fields ignored, with spaces and UTF-8",
     "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 5\n"
     "x-note: caf\xc3\xa9 au lait\nother.ext_1: v\n",
     0, MTASTS_MODE_ENFORCE, 5, "mx.example.test"},
    {"a repeated mode: the first counts",
     "version: STSv1\nmode: testing\nmode: enforce\nmx: a.test\nmax_age: 5\n", 0,
     MTASTS_MODE_TESTING, 5, "a.test"},
    {"a repeated max_age: the first counts",
     "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 5\nmax_age: 99\n", 0, MTASTS_MODE_ENFORCE,
     5, "a.test"},
    {"a final dot on an mx is forgiven", "version: STSv1\nmode: enforce\nmx: a.test.\nmax_age: 5\n",
     0, MTASTS_MODE_ENFORCE, 5, "a.test"},
    {"max_age at its ceiling", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557600\n", 0,
     MTASTS_MODE_ENFORCE, 31557600, "a.test"},
    {"max_age with leading zeros",
     "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 0000000007\n", 0, MTASTS_MODE_ENFORCE, 7,
     "a.test"},
    {"max_age above its ceiling", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",
     -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"max_age of 11 digits", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 00000000001\n",
     -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"max_age negative", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n", -EINVAL,
     MTASTS_MODE_NONE, 0, NULL},
    {"max_age not a number", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1d\n", -EINVAL,
     MTASTS_MODE_NONE, 0, NULL},
    {"no version", "mode: enforce\nmx: a.test\nmax_age: 5\n", -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"no mode", "version: STSv1\nmx: a.test\nmax_age: 5\n", -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"no max_age", "version: STSv1\nmode: enforce\nmx: a.test\n", -EINVAL, MTASTS_MODE_NONE, 0,
     NULL},
    {"enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 5\n", -EINVAL, MTASTS_MODE_NONE,
     0, NULL},
    {"testing without mx", "version: STSv1\nmode: testing\nmax_age: 5\n", -EINVAL, MTASTS_MODE_NONE,
     0, NULL},
    {"version STSv2", "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 5\n", -EINVAL,
     MTASTS_MODE_NONE, 0, NULL},
    {"mode in capitals (RFC 7405 %s)", "version: STSv1\nmode: Enforce\nmx: a.test\nmax_age: 5\n",
     -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"key in capitals is an extension: no mode",
     "version: STSv1\nMode: enforce\nmx: a.test\nmax_age: 5\n", -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"a line without ':'", "version: STSv1\nmode enforce\nmx: a.test\nmax_age: 5\n", -EINVAL,
     MTASTS_MODE_NONE, 0, NULL},
    {"a line with an empty value", "version: STSv1\nmode:\nmx: a.test\nmax_age: 5\n", -EINVAL,
     MTASTS_MODE_NONE, 0, NULL},
    {"a bare CR inside a line", "version: STSv1\nmode: enforce\rmx: a.test\nmax_age: 5\n", -EINVAL,
     MTASTS_MODE_NONE, 0, NULL},
    {"a control character", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 5\nx: a\x1b\n",
     -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"an mx wildcard inside", "version: STSv1\nmode: enforce\nmx: mail*.a.test\nmax_age: 5\n",
     -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"an mx with two wildcards", "version: STSv1\nmode: enforce\nmx: *.*.a.test\nmax_age: 5\n",
     -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"an mx of a bare wildcard", "version: STSv1\nmode: enforce\nmx: *\nmax_age: 5\n", -EINVAL,
     MTASTS_MODE_NONE, 0, NULL},
    {"an mx of *. alone", "version: STSv1\nmode: enforce\nmx: *.\nmax_age: 5\n", -EINVAL,
     MTASTS_MODE_NONE, 0, NULL},
    {"an mx with an empty label", "version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 5\n",
     -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"an mx with a space", "version: STSv1\nmode: enforce\nmx: a test\nmax_age: 5\n", -EINVAL,
     MTASTS_MODE_NONE, 0, NULL},
    {"an mx label ending in -", "version: STSv1\nmode: enforce\nmx: a-.test\nmax_age: 5\n", -EINVAL,
     MTASTS_MODE_NONE, 0, NULL},
    {"an mx with an underscore", "version: STSv1\nmode: enforce\nmx: a_b.test\nmax_age: 5\n",
     -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"empty", "", -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"only blank lines", "\n\r\n \n", -EINVAL, MTASTS_MODE_NONE, 0, NULL},
    {"HTML instead of a policy", "<html><body>Not found</body></html>\n", -EINVAL, MTASTS_MODE_NONE,
     0, NULL},
};

static void test_policy(void)
{
    for (size_t i = 0; i < sizeof(policy_cases) / sizeof(policy_cases[0]); i++) {
        const struct policy_case *c = &policy_cases[i];
        struct mtasts_parsed p;
        const char *why = NULL;
        int rc = mtasts_policy_parse(c->text, strlen(c->text), &p, &why);
        is_int(rc, c->rc, "policy: %s%s%s", c->name, why ? ": " : "", why ? why : "");
        if (c->rc != 0 || rc != 0)
            continue;
        is_int(p.mode, c->mode, "policy: %s: mode", c->name);
        is_int(p.max_age, c->max_age, "policy: %s: max_age", c->name);
        is_str(mx_text(&p), c->mx, "policy: %s: mx", c->name);
    }

    /* A NUL inside a line. */
    static const char nul[] = "version: STSv1\nmode: enforce\nmx: a.test\0x\nmax_age: 5\n";
    struct mtasts_parsed p;
    is_int(mtasts_policy_parse(nul, sizeof(nul) - 1, &p, NULL), -EINVAL, "policy: a NUL inside");

    /* Bounds: 64 mx lines pass, 65 do not; over 64 KiB does not. */
    char *big = malloc(MTASTS_POLICY_MAX + 2);
    size_t len =
        (size_t)snprintf(big, MTASTS_POLICY_MAX, "version: STSv1\nmode: enforce\nmax_age: 5\n");
    for (int i = 0; i < MTASTS_MX_MAX; i++)
        len += (size_t)snprintf(big + len, MTASTS_POLICY_MAX - len, "mx: mx%d.example.test\n", i);
    is_int(mtasts_policy_parse(big, len, &p, NULL), 0, "policy: 64 mx patterns");
    is_int(p.n_mx, MTASTS_MX_MAX, "policy: all 64 kept");
    len += (size_t)snprintf(big + len, MTASTS_POLICY_MAX - len, "mx: one-more.example.test\n");
    is_int(mtasts_policy_parse(big, len, &p, NULL), -E2BIG, "policy: 65 mx patterns");
    len = (size_t)snprintf(big, MTASTS_POLICY_MAX,
                           "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 5\n");
    memset(big + len, '\n', MTASTS_POLICY_MAX + 1 - len);
    is_int(mtasts_policy_parse(big, MTASTS_POLICY_MAX, &p, NULL), 0,
           "policy: exactly 64 KiB (blank lines after it)");
    is_int(mtasts_policy_parse(big, MTASTS_POLICY_MAX + 1, &p, NULL), -EMSGSIZE,
           "policy: one octet over 64 KiB");
    /* A line of 60 KiB of one value: read, ignored as an extension. */
    len = (size_t)snprintf(big, MTASTS_POLICY_MAX, "version: STSv1\nmode: none\nmax_age: 5\nx: ");
    memset(big + len, 'a', 60000);
    len += 60000;
    is_int(mtasts_policy_parse(big, len, &p, NULL), 0, "policy: one very long extension line");
    /* Every prefix of the RFC example, at its exact size: no over-read. */
    static const char rfc[] = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
                              "mx: *.example.net\r\nmax_age: 604800\r\n";
    int bad = 0;
    for (size_t n = 0; n <= sizeof(rfc) - 1; n++) {
        char *copy = malloc(n ? n : 1);
        memcpy(copy, rfc, n);
        int rc = mtasts_policy_parse(copy, n, &p, NULL);
        free(copy);
        bad += rc != 0 && rc != -EINVAL;
    }
    is_int(bad, 0, "policy: every prefix of the RFC example parses or is refused cleanly");
    free(big);
}

/* --- MX patterns ------------------------------------------------------------------ */

struct match_case {
    const char *pattern, *host;
    bool match;
};

static const struct match_case match_cases[] = {
    /* RFC 8461 3.4's own examples. */
    {"*.example.com", "mail.example.com", true},
    {"*.example.com", "example.com", false},
    {"*.example.com", "foo.bar.example.com", false},
    {"mail.example.com", "mail.example.com", true},
    {"mail.example.com", "MAIL.Example.COM", true},
    {"MAIL.EXAMPLE.COM", "mail.example.com", true},
    {"mail.example.com", "mail.example.com.", true},
    {"*.example.com", "MX1.EXAMPLE.COM.", true},
    {"mail.example.com", "mail.example.co", false},
    {"mail.example.com", "xmail.example.com", false},
    {"mail.example.com", "ail.example.com", false},
    {"*.example.com", "mail.xexample.com", false},
    {"*.example.com", ".example.com", false},
    {"*.example.com", "mail.example.com.evil.test", false},
    {"example.com", "mail.example.com", false},
    {"*.com", "example.com", true},
    {"*.com", "com", false},
    {"a.test", "", false},
    {"*.a.test", "", false},
};

static void test_match(void)
{
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct match_case *c = &match_cases[i];
        ok(mtasts_mx_match(c->pattern, strlen(c->pattern), c->host) == c->match, "match: %s %s %s",
           c->pattern, c->match ? "matches" : "does not match", c->host);
    }
    /* Through a kept policy, lower-cased on the way in. */
    static const char text[] = "version: STSv1\nmode: enforce\nmx: MX.A.test\nmx: *.Backup.A.test\n"
                               "max_age: 60\n";
    struct mtasts_parsed parsed;
    is_int(mtasts_policy_parse(text, sizeof(text) - 1, &parsed, NULL), 0, "kept: parses");
    struct mtasts_policy *p = mtasts_policy_new(&parsed, "id1");
    is_str(p->id, "id1", "kept: id");
    ok(mtasts_policy_allows(p, "mx.a.test"), "kept: first pattern");
    ok(mtasts_policy_allows(p, "b2.backup.a.test"), "kept: wildcard pattern");
    ok(!mtasts_policy_allows(p, "a.test"), "kept: the domain itself is not listed");
    ok(!mtasts_policy_allows(p, "x.b2.backup.a.test"), "kept: two labels for a wildcard");
    char list[64];
    is_str(mtasts_policy_mx_list(p, list, sizeof(list)), "mx.a.test,*.backup.a.test",
           "kept: the list for logs");
    char tiny[12];
    mtasts_policy_mx_list(p, tiny, sizeof(tiny));
    is_int(strlen(tiny), sizeof(tiny) - 1, "kept: the list is cut to its room");
    struct mtasts_policy *d = mtasts_policy_dup(p);
    mtasts_policy_free(&p);
    ok(p == NULL, "kept: free sets NULL");
    ok(mtasts_policy_allows(d, "mx.a.test"), "kept: a copy outlives its original");
    mtasts_policy_free(&d);
}

/* --- the cache ------------------------------------------------------------------ */

static struct mtasts_policy *policy(const char *id, unsigned max_age, size_t n_mx)
{
    static char text[8192];
    size_t len = (size_t)snprintf(text, sizeof(text),
                                  "version: STSv1\nmode: enforce\nmax_age: %u\n", max_age);
    for (size_t i = 0; i < n_mx; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len,
                                "mx: mx%zu.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test\n", i);
    struct mtasts_parsed parsed;
    if (mtasts_policy_parse(text, len, &parsed, NULL) != 0)
        abort();
    return mtasts_policy_new(&parsed, id);
}

static void test_cache(void)
{
    struct mtasts_cache *c = mtasts_cache_new(3, 1u << 20);
    struct mtasts_policy *p1 = policy("one", 100, 1);
    mtasts_cache_put(c, "A.test.", p1, 1000);
    const struct mtasts_policy *got = mtasts_cache_get(c, "a.test", 1000);
    ok(got != NULL && strcmp(got->id, "one") == 0, "cache: found in another case and form");
    ok(got != p1, "cache: it keeps its own copy");
    ok(mtasts_cache_get(c, "a.test", 1099) != NULL, "cache: still there a second before expiry");
    ok(mtasts_cache_get(c, "a.test", 1100) == NULL, "cache: gone at now + max_age");
    is_int(mtasts_cache_count(c), 0, "cache: the expired entry went");
    ok(mtasts_cache_get(c, "", 0) == NULL, "cache: an empty name finds nothing");

    /* Replacement under the same domain. */
    struct mtasts_policy *p2 = policy("two", 100, 1);
    mtasts_cache_put(c, "a.test", p1, 0);
    mtasts_cache_put(c, "a.test", p2, 0);
    got = mtasts_cache_get(c, "a.test", 1);
    ok(got != NULL && strcmp(got->id, "two") == 0, "cache: a put replaces");
    is_int(mtasts_cache_count(c), 1, "cache: one entry per domain");

    /* Eviction by count, least recently used first. */
    mtasts_cache_put(c, "b.test", p1, 0);
    mtasts_cache_put(c, "c.test", p1, 0);
    ok(mtasts_cache_get(c, "a.test", 1) != NULL, "cache: a.test used again");
    mtasts_cache_put(c, "d.test", p1, 0);
    is_int(mtasts_cache_count(c), 3, "cache: never above its count");
    ok(mtasts_cache_get(c, "b.test", 1) == NULL, "cache: the least recently used went");
    ok(mtasts_cache_get(c, "a.test", 1) != NULL, "cache: the recently used stayed");
    ok(mtasts_cache_get(c, "c.test", 1) != NULL && mtasts_cache_get(c, "d.test", 1) != NULL,
       "cache: the others stayed");
    mtasts_cache_free(&c);
    ok(c == NULL, "cache: free sets NULL");

    /* Eviction by octets: large policies push the old ones out. */
    struct mtasts_policy *big = policy("big", 100, 60); /* about 3 KiB of patterns */
    c = mtasts_cache_new(1000, 8 * 1024);
    char name[32];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "d%d.test", i);
        mtasts_cache_put(c, name, big, 0);
    }
    ok(mtasts_cache_count(c) >= 1 && mtasts_cache_count(c) <= 2,
       "cache: bounded by octets (%zu kept)", mtasts_cache_count(c));
    ok(mtasts_cache_get(c, "d19.test", 1) != NULL, "cache: the newest is kept");
    ok(mtasts_cache_get(c, "d0.test", 1) == NULL, "cache: the oldest went");
    mtasts_cache_free(&c);
    c = mtasts_cache_new(10, 512);
    mtasts_cache_put(c, "huge.test", big, 0);
    is_int(mtasts_cache_count(c), 0, "cache: a policy larger than the cache is not kept");
    mtasts_cache_free(&c);

    /* Many domains through a small cache: the count holds, every get works. */
    c = mtasts_cache_new(100, 1u << 20);
    int missing = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        mtasts_cache_put(c, name, p1, 0);
        missing += mtasts_cache_get(c, name, 1) == NULL;
    }
    is_int(mtasts_cache_count(c), 100, "cache: 5000 domains, 100 kept");
    is_int(missing, 0, "cache: each just put is found");
    mtasts_cache_free(&c);
    mtasts_policy_free(&big);
    mtasts_policy_free(&p1);
    mtasts_policy_free(&p2);
}

int main(void)
{
    test_txt();
    test_txt_pick();
    test_policy();
    test_match();
    test_cache();
    return done_testing();
}
