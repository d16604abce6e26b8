/*
 * test_spf.c — SPF's pure parts (mailauth/spf.h): which TXT records are
 * SPF records, the record syntax of RFC 7208 (every mechanism, modifier,
 * qualifier and CIDR form, and the errors that make a permerror), macro
 * expansion with RFC 7208 7.4's own examples, the truncation of a long
 * name, CIDR matching at its edges, and hostile records (huge, thousands
 * of terms, NUL octets, every byte value, expansions that would explode).
 *
 * Then the evaluator's promises that need no DNS answer: against a server
 * that never answers, cb never runs inside spf_check_start, a timeout is a
 * temperror, an identity that cannot be checked is none (from the loop), and
 * a check cancelled with its question out never calls back (run it under
 * ASan to see that nothing is touched after it is freed). Evaluation
 * against real DNS answers is tests/integration/test_spf.py.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "spf.h"
#include "tap.h"

/* --- records --- */

static int check(const char *rec)
{
    struct spf_record_info info;
    const char *why = NULL;
    return spf_record_check(rec, strlen(rec), &info, &why);
}

static const char *const valid[] = {
    "v=spf1",
    "v=spf1 ",
    "V=SPF1 -ALL",
    "v=spf1 +all",
    "v=spf1 ~all",
    "v=spf1 ?all",
    "v=spf1  a   mx  -all  ",
    "v=spf1 a a:example.com a/24 a//64 a/24//64 a:example.com/24//64 a:example.com//0",
    "v=spf1 mx mx:example.com mx/0 mx:%{d}/32 mx:example.com.",
    "v=spf1 ptr ptr:example.com",
    "v=spf1 ip4:192.0.2.0/24 ip4:192.0.2.1 ip4:0.0.0.0/0 ip4:192.0.2.1/32",
    "v=spf1 ip6:2001:db8::/32 ip6:::1 ip6:::/0 ip6:2001:db8::1/128 ip6:::ffff:192.0.2.1",
    "v=spf1 include:_spf.example.com exists:%{ir}.%{l1r+-}._spf.%{d}",
    "v=spf1 redirect=_spf.example.com",
    "v=spf1 exp=explain._spf.%{d} -all",
    "v=spf1 foo=bar foo-bar.baz_2=%{c}%{r}%{t} x= -all",
    "v=spf1 a:foo-bar.com a:x.1-2 a:%{d} a:%%.com a:%{d}.%-",
    "v=spf1 -exists:%{i}.%{v}.%{h}.%{p}.%{o}.%{s}.%{l}.example.com",
    "v=spf1 a:%{D}.%{S}.%{L12r.-+,/_=}.example.com",
};

static const struct {
    const char *rec;
    const char *what;
} invalid[] = {
    {"v=spf10", "not followed by a space"},
    {"v=spf1\t-all", "a tab after the version"},
    {"spf1 -all", "no version"},
    {"v=spf1 -all\t", "a tab"},
    {"v=spf1 all:foo.com", "all with an argument"},
    {"v=spf1 include", "include without a domain"},
    {"v=spf1 include:", "include with an empty domain"},
    {"v=spf1 exists", "exists without a domain"},
    {"v=spf1 a:foo", "a domain without a dot"},
    {"v=spf1 a:foo.123", "a toplabel of digits"},
    {"v=spf1 a:foo.-com", "a toplabel with a leading hyphen"},
    {"v=spf1 a:foo.com-", "a toplabel with a trailing hyphen"},
    {"v=spf1 a/33", "an IPv4 prefix over 32"},
    {"v=spf1 a//129", "an IPv6 prefix over 128"},
    {"v=spf1 a/024", "a prefix with a leading zero"},
    {"v=spf1 a/", "an empty prefix"},
    {"v=spf1 mx:example.com///64", "three slashes"},
    {"v=spf1 a//64//64", "two IPv6 prefixes"},
    {"v=spf1 ip4", "ip4 without an address"},
    {"v=spf1 ip4:192.0.2.256", "an IPv4 octet over 255"},
    {"v=spf1 ip4:192.0.2", "three octets"},
    {"v=spf1 ip4:192.0.2.1/33", "ip4 prefix over 32"},
    {"v=spf1 ip4:192.0.2.1/", "ip4 empty prefix"},
    {"v=spf1 ip4:2001:db8::1", "an IPv6 address in ip4"},
    {"v=spf1 ip6:192.0.2.1", "an IPv4 address in ip6"},
    {"v=spf1 ip6:2001:db8::/129", "ip6 prefix over 128"},
    {"v=spf1 ip6:2001:db8:::1", "a bad IPv6 address"},
    {"v=spf1 foo", "an unknown mechanism"},
    {"v=spf1 -foo:bar.com", "an unknown mechanism with a qualifier"},
    {"v=spf1 +redirect=foo.com", "a qualifier on a modifier"},
    {"v=spf1 redirect=", "redirect with an empty domain"},
    {"v=spf1 redirect=a.com redirect=b.com", "redirect twice"},
    {"v=spf1 exp=a.com exp=b.com", "exp twice"},
    {"v=spf1 a:%{x}.com", "an unknown macro letter"},
    {"v=spf1 a:%{d0}.com", "a zero digit transformer"},
    {"v=spf1 a:%{d", "an unclosed macro"},
    {"v=spf1 a:%{d*}.com", "a bad delimiter"},
    {"v=spf1 a:%.com", "a lone percent"},
    {"v=spf1 a:foo.com%", "a percent at the end"},
    {"v=spf1 a:%{c}.com", "c outside explanation text"},
    {"v=spf1 exists:%{t}.com", "t outside explanation text"},
    {"v=spf1 foo=%{z}", "a bad macro in an unknown modifier"},
    {"v=spf1 a:exa\x7fmple.com", "a control character"},
    {"v=spf1 a:ex\xc3\xa4mple.com", "a non-ASCII octet"},
    {"v=spf1 1foo=bar", "a modifier name beginning with a digit"},
    {"v=spf1 =bar", "an empty modifier name"},
    {"v=spf1 ++all", "two qualifiers"},
};

static void test_records(void)
{
    ok(spf_record_is_spf("v=spf1", 6), "v=spf1 alone is an SPF record");
    ok(spf_record_is_spf("v=spf1 -all", 11), "v=spf1 and a space");
    ok(spf_record_is_spf("V=SpF1 a", 8), "the version in any case");
    ok(!spf_record_is_spf("v=spf10 -all", 12), "v=spf10 is not");
    ok(!spf_record_is_spf("v=spf", 5), "v=spf is not");
    ok(!spf_record_is_spf("", 0), "an empty record is not");
    ok(!spf_record_is_spf(" v=spf1", 7), "a leading space is not");
    ok(!spf_record_is_spf("v=DKIM1; p=", 11), "a DKIM key is not");

    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        is_int(check(valid[i]), 0, "valid: %s", valid[i]);
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        is_int(check(invalid[i].rec), -EINVAL, "permerror: %s (%s)", invalid[i].what,
               invalid[i].rec);

    /* Each term read back. */
    const char *rec = "v=spf1 -a:ex.com/24//64 ~mx ?ip4:192.0.2.0/25 ip6:2001:db8::/48 "
                      "include:i.example exists:%{l}.e.example ptr redirect=r.example "
                      "exp=x.example foo=bar +all";
    struct spf_term t;
    const char *why = NULL;
    size_t pos = 0;
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 1, "term 1");
    ok(t.kind == SPF_TERM_A && t.qualifier == SPF_FAIL && t.cidr4 == 24 && t.cidr6 == 64 &&
           t.spec_len == 6 && memcmp(t.spec, "ex.com", 6) == 0,
       "-a:ex.com/24//64: a, fail, ex.com, /24, //64");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 1, "term 2");
    ok(t.kind == SPF_TERM_MX && t.qualifier == SPF_SOFTFAIL && t.spec == NULL && t.cidr4 == 32 &&
           t.cidr6 == 128,
       "~mx: mx, softfail, the current domain, full prefixes");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 1, "term 3");
    ok(t.kind == SPF_TERM_IP4 && t.qualifier == SPF_NEUTRAL && t.cidr4 == 25 &&
           t.net.family == AF_INET && t.net.bytes[0] == 192 && t.net.bytes[3] == 0,
       "?ip4:192.0.2.0/25");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 1, "term 4");
    ok(t.kind == SPF_TERM_IP6 && t.qualifier == SPF_PASS && t.cidr6 == 48 &&
           t.net.family == AF_INET6 && t.net.bytes[0] == 0x20 && t.net.bytes[3] == 0xb8,
       "ip6:2001:db8::/48");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 1, "term 5");
    ok(t.kind == SPF_TERM_INCLUDE && t.spec_len == 9, "include:i.example");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 1, "term 6");
    ok(t.kind == SPF_TERM_EXISTS && t.spec_len == 14, "exists:%%{l}.e.example");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 1, "term 7");
    ok(t.kind == SPF_TERM_PTR && t.spec == NULL, "ptr");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 1, "term 8");
    ok(t.kind == SPF_TERM_REDIRECT && t.spec_len == 9 && memcmp(t.spec, "r.example", 9) == 0,
       "redirect=r.example");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 1, "term 9");
    ok(t.kind == SPF_TERM_EXP, "exp=");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 1, "term 10");
    ok(t.kind == SPF_TERM_UNKNOWN && t.spec_len == 3, "foo=bar, an unknown modifier");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 1, "term 11");
    ok(t.kind == SPF_TERM_ALL && t.qualifier == SPF_PASS, "+all");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 0, "then the end");
    is_int(spf_term_next(rec, strlen(rec), &pos, &t, &why), 0, "and the end again");

    struct spf_record_info info;
    is_int(spf_record_check(rec, strlen(rec), &info, &why), 0, "the whole record is valid");
    is_int(info.terms, 11, "eleven terms");
    ok(info.redirect != NULL && info.redirect_len == 9 &&
           memcmp(info.redirect, "r.example", 9) == 0,
       "its redirect= found");
    const char *bad = "v=spf1 -all foo";
    is_int(spf_record_check(bad, strlen(bad), &info, &why), -EINVAL,
           "an error after all still spoils the record (4.6)");
    ok(why != NULL && strstr(why, "mechanism") != NULL, "why: %s", why ? why : "(null)");
}

/* --- hostile records --- */

static void test_hostile(void)
{
    struct spf_record_info info;
    const char *why;
    char *big = malloc(SPF_RECORD_MAX + 2);
    memcpy(big, "v=spf1", 6);
    for (size_t i = 6; i < SPF_RECORD_MAX; i += 2)
        memcpy(big + i, " a", 2);
    is_int(spf_record_check(big, SPF_RECORD_MAX, &info, &why), 0,
           "a record of SPF_RECORD_MAX octets is read");
    is_int(info.terms, (SPF_RECORD_MAX - 6) / 2, "all %d of its terms", (SPF_RECORD_MAX - 6) / 2);
    big[SPF_RECORD_MAX] = ' ';
    is_int(spf_record_check(big, SPF_RECORD_MAX + 1, &info, &why), -EINVAL,
           "one octet more is a permerror");
    free(big);

    /* 64 KiB of terms, as a long TXT answer could hold. */
    size_t n = 65536;
    char *huge = malloc(n);
    memcpy(huge, "v=spf1", 6);
    memset(huge + 6, ' ', n - 6);
    is_int(spf_record_check(huge, n, &info, &why), -EINVAL, "64 KiB: a permerror");
    size_t pos = 0;
    struct spf_term t;
    is_int(spf_term_next(huge, n, &pos, &t, &why), 0, "64 KiB of spaces: read to the end");
    free(huge);

    const char nul[] = "v=spf1 a\0 -all";
    is_int(spf_record_check(nul, sizeof(nul) - 1, &info, &why), -EINVAL,
           "a NUL octet is a permerror");
    const char nul2[] = "v=spf1\0";
    is_int(spf_record_check(nul2, sizeof(nul2) - 1, &info, &why), -EINVAL,
           "a NUL right after the version too");

    /* Every octet, in every place a term can hold it: no crash, a clear answer. */
    int answers = 0;
    for (int ch = 0; ch < 256; ch++) {
        const char *shapes[] = {"v=spf1 %c",   "v=spf1 a:%c.com",     "v=spf1 a:x.com/%c",
                                "v=spf1 x=%c", "v=spf1 a:%%{%c}.com", "v=spf1 ip4:1.2.3.4/%c"};
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            char rec[64];
            int len = snprintf(rec, sizeof(rec), shapes[s], ch);
            int rc = spf_record_check(rec, (size_t)len, &info, &why);
            if (rc == 0 || rc == -EINVAL)
                answers++;
        }
    }
    is_int(answers, 256 * 6, "every octet in six places: valid or a permerror");

    /* Expansions that would explode are cut off, not grown. */
    char env_sender[SPF_SENDER_MAX + 1];
    memset(env_sender, 'x', SPF_SENDER_MAX);
    env_sender[SPF_SENDER_MAX] = '\0';
    struct spf_macro_env env = {.sender = env_sender, .domain = "example.com", .helo = "h"};
    spf_ip_parse("192.0.2.3", &env.ip);
    char spec[1024];
    size_t o = 0;
    while (o + 4 < sizeof(spec) - 5) {
        memcpy(spec + o, "%{S}", 4);
        o += 4;
    }
    memcpy(spec + o, ".com", 4);
    o += 4;
    char out[DNS_NAME_MAX + 1];
    is_int(spf_expand_domain(spec, o, &env, out), -E2BIG,
           "250 times a 512-octet sender: too big, refused");
    char small[8];
    size_t len;
    is_int(spf_macro_expand("%{d}", 4, &env, false, small, sizeof(small), &len), -E2BIG,
           "an expansion larger than the buffer: -E2BIG");
    ok(len < sizeof(small) && small[len] == '\0', "and what is there is terminated");
    is_int(spf_macro_expand("x", 1, &env, false, small, 0, &len), -E2BIG,
           "a buffer of no octet: -E2BIG");
}

/* --- macros --- */

static void expand_is(const struct spf_macro_env *env, const char *spec, const char *want)
{
    char out[SPF_EXPAND_MAX + 1];
    size_t len = 0;
    int rc = spf_macro_expand(spec, strlen(spec), env, false, out, sizeof(out), &len);
    ok(rc == 0 && len == strlen(out), "%s expands (%d)", spec, rc);
    is_str(rc == 0 ? out : "(error)", want, "%s is %s", spec, want);
}

static void test_macros(void)
{
    /* RFC 7208 7.4. */
    struct spf_macro_env env = {.sender = "strong-bad@email.example.com",
                                .domain = "email.example.com",
                                .helo = "mx.example.org",
                                .ptr = "mx.example.org"};
    ok(spf_ip_parse("192.0.2.3", &env.ip), "192.0.2.3");
    expand_is(&env, "%{s}", "strong-bad@email.example.com");
    expand_is(&env, "%{o}", "email.example.com");
    expand_is(&env, "%{d}", "email.example.com");
    expand_is(&env, "%{d4}", "email.example.com");
    expand_is(&env, "%{d3}", "email.example.com");
    expand_is(&env, "%{d2}", "example.com");
    expand_is(&env, "%{d1}", "com");
    expand_is(&env, "%{dr}", "com.example.email");
    expand_is(&env, "%{d2r}", "example.email");
    expand_is(&env, "%{l}", "strong-bad");
    expand_is(&env, "%{l-}", "strong.bad");
    expand_is(&env, "%{lr}", "strong-bad");
    expand_is(&env, "%{lr-}", "bad.strong");
    expand_is(&env, "%{l1r-}", "strong");
    expand_is(&env, "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com");
    expand_is(&env, "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com");
    expand_is(&env, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
              "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
    expand_is(&env, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
              "3.2.0.192.in-addr.strong.lp._spf.example.com");
    expand_is(&env, "%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net");
    ok(spf_ip_parse("2001:db8::cb01", &env.ip), "2001:db8::cb01");
    expand_is(
        &env, "%{ir}.%{v}._spf.%{d2}",
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
    expand_is(&env, "%{i}", "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.b.0.1");

    /* The rest of 7.3: p, h, escapes, uppercase, delimiters, digits past the parts. */
    expand_is(&env, "%{p}", "mx.example.org");
    env.ptr = NULL;
    expand_is(&env, "%{p}", "unknown");
    expand_is(&env, "%{h}", "mx.example.org");
    expand_is(&env, "%%%_%-", "% %20");
    expand_is(&env, "%{d9}", "email.example.com");
    expand_is(&env, "%{d99999999999}", "email.example.com");
    expand_is(&env, "%{d1r}", "email");
    expand_is(&env, "%{l+-}", "strong.bad");
    expand_is(&env, "%{dR}", "com.example.email");
    expand_is(&env, "a%{d1}b", "acomb");
    env.sender = "user+tag/x=y@example.com";
    expand_is(&env, "%{S}", "user%2Btag%2Fx%3Dy%40example.com");
    expand_is(&env, "%{L}", "user%2Btag%2Fx%3Dy");
    expand_is(&env, "%{l+/=}", "user.tag.x.y");
    expand_is(&env, "%{l2+/=}", "x.y");
    expand_is(&env, "%{l2r+/=}", "tag.user");
    env.sender = "example.com"; /* no local part: postmaster (4.3) */
    expand_is(&env, "%{l}", "postmaster");
    expand_is(&env, "%{o}", "example.com");
    env.sender = "@example.com";
    expand_is(&env, "%{l}", "postmaster");
    env.sender = "a..b@x";
    expand_is(&env, "%{l2}", ".b");
    expand_is(&env, "%{lr}", "b..a");

    struct spf_macro_env plain = {.sender = "a@b.example", .domain = "b.example"};
    spf_ip_parse("192.0.2.3", &plain.ip);
    char out[SPF_EXPAND_MAX + 1];
    size_t len;
    is_int(spf_macro_expand("%{c}%{r}%{t}", 12, &plain, true, out, sizeof(out), &len), 0,
           "c, r, t are allowed in explanation text");
    is_int(len, 0, "and expand to nothing here");
    is_int(spf_macro_expand("%{c}", 4, &plain, false, out, sizeof(out), &len), -EINVAL,
           "but not elsewhere");
    is_int(spf_macro_expand("a b", 3, &plain, false, out, sizeof(out), &len), -EINVAL,
           "a space is no macro-literal");

    /* Domains: a final dot dropped, a long name cut from the left (7.3). */
    char name[DNS_NAME_MAX + 1];
    is_int(spf_expand_domain("%{d1}.test.", 11, &plain, name), 0, "%%{d1}.test.");
    is_str(name, "example.test", "the final dot goes");
    is_int(spf_expand_domain("%{d}.", 5, &plain, name), -EINVAL,
           "%%{d}. is no domain-spec: a dot after a macro needs a toplabel");
    is_int(spf_expand_domain("foo", 3, &plain, name), -EINVAL, "foo is no domain-spec");
    char longl[80];
    memset(longl, 'x', 60);
    memcpy(longl + 60, "@b.example", 11);
    plain.sender = longl; /* l is 60 octets */
    const char *spec = "%{l}.%{l}.%{l}.%{l}.%{l}.example.com";
    is_int(spf_expand_domain(spec, strlen(spec), &plain, name), 0, "5 x 60 octets + example.com");
    ok(strlen(name) <= DNS_NAME_MAX, "is cut to at most 253 octets (%zu)", strlen(name));
    ok(strlen(name) == 3 * 61 + 11 && strncmp(name, "xxx", 3) == 0 &&
           strcmp(name + strlen(name) - 12, ".example.com") == 0,
       "by whole labels from the left: %zu octets", strlen(name));
    ok(dns_name_valid(name), "and is a name to look up");
    char one[300];
    memset(one, 'y', 270);
    memcpy(one + 270, "@b.example", 11);
    plain.sender = one;
    is_int(spf_expand_domain("%{l}", 4, &plain, name), -E2BIG,
           "a single label longer than 253 octets cannot be cut");
}

/* --- addresses --- */

static struct dns_addr ip(const char *text)
{
    struct dns_addr a;
    if (!spf_ip_parse(text, &a))
        memset(&a, 0, sizeof(a));
    return a;
}

static void test_cidr(void)
{
    struct dns_addr a;
    ok(spf_ip_parse("192.0.2.1", &a) && a.family == AF_INET, "IPv4");
    ok(spf_ip_parse("2001:db8::1", &a) && a.family == AF_INET6, "IPv6");
    ok(spf_ip_parse("::ffff:192.0.2.1", &a) && a.family == AF_INET && a.bytes[0] == 192 &&
           a.bytes[3] == 1,
       "IPv4-mapped IPv6 is the IPv4 address");
    ok(spf_ip_parse("::192.0.2.1", &a) && a.family == AF_INET6, "IPv4-compatible stays IPv6");
    ok(!spf_ip_parse("192.0.2", &a), "192.0.2 is none");
    ok(!spf_ip_parse("example.com", &a), "a name is none");
    ok(!spf_ip_parse("", &a), "nothing is none");
    ok(!spf_ip_parse("[192.0.2.1]", &a), "an address literal is none");
    ok(!spf_ip_parse("192.0.2.1 ", &a), "trailing space is none");

    struct dns_addr v4 = ip("192.0.2.130"), v6 = ip("2001:db8::cb01");
    struct dns_addr n24 = ip("192.0.2.0"), any4 = ip("0.0.0.0"), other = ip("198.51.100.1");
    ok(spf_cidr_match(&v4, &n24, 24), "192.0.2.130 in 192.0.2.0/24");
    ok(!spf_cidr_match(&v4, &n24, 25), "not in 192.0.2.0/25");
    ok(spf_cidr_match(&v4, &other, 0), "/0 matches every IPv4 address");
    ok(spf_cidr_match(&v4, &any4, 0), "0.0.0.0/0 too");
    ok(!spf_cidr_match(&v4, &n24, 32), "/32 needs the address itself");
    ok(spf_cidr_match(&v4, &v4, 32), "the address itself in /32");
    ok(!spf_cidr_match(&v4, &v4, 33), "/33 matches nothing");
    struct dns_addr n1 = ip("192.0.2.128");
    ok(spf_cidr_match(&v4, &n1, 25) && spf_cidr_match(&v4, &n1, 30) &&
           !spf_cidr_match(&v4, &n1, 31),
       "192.0.2.130 in .128/25 and /30, not /31 (bits inside a byte)");
    ok(!spf_cidr_match(&v4, &v6, 0), "no IPv4 address in an IPv6 network, even /0");
    ok(!spf_cidr_match(&v6, &any4, 0), "no IPv6 address in an IPv4 network, even /0");
    struct dns_addr n32 = ip("2001:db8::"), any6 = ip("::");
    ok(spf_cidr_match(&v6, &n32, 32), "2001:db8::cb01 in 2001:db8::/32");
    ok(spf_cidr_match(&v6, &any6, 0), "in ::/0");
    ok(spf_cidr_match(&v6, &v6, 128), "itself in /128");
    ok(!spf_cidr_match(&v6, &n32, 128), "not 2001:db8:: /128");
    ok(!spf_cidr_match(&v6, &v6, 129), "/129 matches nothing");
    struct dns_addr near = ip("2001:db8::cb00");
    ok(spf_cidr_match(&v6, &near, 127) && !spf_cidr_match(&v6, &near, 128),
       "the last bit decides /127 against /128");
    struct dns_addr mapped = ip("::ffff:192.0.2.130");
    ok(spf_cidr_match(&mapped, &n24, 24), "an IPv4-mapped client matches ip4 networks");
}

/* --- the evaluator, without answers --- */

static uv_loop_t loop;
static int calls;
static struct spf_outcome last;

static void on_outcome(void *ctx, const struct spf_outcome *o)
{
    (void)ctx;
    calls++;
    last = *o;
}

/* Runs the loop until n outcomes came or 5 s passed. */
static void run_until(int n)
{
    uint64_t deadline = uv_hrtime() + 5000000000ull;
    while (calls < n && uv_hrtime() < deadline) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

/* Runs the loop for ms milliseconds. */
static void run_for(unsigned ms)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)ms * 1000000;
    while (uv_hrtime() < deadline) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static void test_evaluator(void)
{
    /* A UDP socket that takes questions and never answers. */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    ok(fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
           getsockname(fd, (struct sockaddr *)&sin, &sl) == 0,
       "a silent DNS server");
    char servers[64], err[256] = "";
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", ntohs(sin.sin_port));
    uv_loop_init(&loop);
    struct dns *dns = dns_new(&loop, servers, 100, 1, err, sizeof(err));
    ok(dns != NULL, "a resolver that gives up after 100 ms (%s)", err);

    ok(spf_check_start(dns, "192.0.2.999", "a@example.com", "", on_outcome, NULL) == NULL,
       "no IP address: NULL");
    ok(spf_check_start(dns, "example.com", "a@example.com", "", on_outcome, NULL) == NULL,
       "a name for the IP: NULL");
    is_int(calls, 0, "and no callback");

    struct spf_check *c =
        spf_check_start(dns, "192.0.2.1", "a@example.com", "h.example", on_outcome, NULL);
    ok(c != NULL, "a check starts");
    is_int(calls, 0, "cb does not run inside spf_check_start");
    run_until(1);
    is_int(calls, 1, "cb ran once");
    is_int(last.result, SPF_TEMPERROR, "no answer: temperror");
    is_str(last.domain, "example.com", "for example.com");
    ok(!last.helo, "MAIL FROM's domain");
    run_for(150);
    is_int(calls, 1, "and only once");

    const char *uncheckable[] = {"a@[192.0.2.1]", "a@localhost", "a@", "a@exa..mple.com", "a@-"};
    for (size_t i = 0; i < sizeof(uncheckable) / sizeof(uncheckable[0]); i++) {
        calls = 0;
        c = spf_check_start(dns, "192.0.2.1", uncheckable[i], "h.example", on_outcome, NULL);
        ok(c != NULL && calls == 0, "%s: started, no answer inside the call", uncheckable[i]);
        run_until(1);
        is_int(calls, 1, "%s: one answer from the loop", uncheckable[i]);
        is_int(last.result, SPF_NONE, "%s: none", uncheckable[i]);
    }
    calls = 0;
    c = spf_check_start(dns, "192.0.2.1", "", "", on_outcome, NULL);
    run_until(1);
    ok(calls == 1 && last.result == SPF_NONE && last.helo, "<> without HELO: none, of HELO");
    calls = 0;
    c = spf_check_start(dns, "192.0.2.1", "", "mail.example.net", on_outcome, NULL);
    run_until(1);
    ok(calls == 1 && last.helo && strcmp(last.domain, "mail.example.net") == 0,
       "<> with HELO: HELO's domain is checked (%s)", last.domain);

    /* Cancelled with the question out: no callback, ever; the answer frees it. */
    calls = 0;
    c = spf_check_start(dns, "192.0.2.1", "a@example.com", "", on_outcome, NULL);
    struct spf_check *c2 =
        spf_check_start(dns, "2001:db8::1", "a@[192.0.2.1]", "", on_outcome, NULL);
    spf_check_cancel(&c);
    spf_check_cancel(&c2);
    ok(c == NULL && c2 == NULL, "cancel sets the handle to NULL");
    spf_check_cancel(&c); /* NULL: a no-op */
    spf_check_cancel(NULL);
    run_for(400);
    is_int(calls, 0, "cancelled checks never call back");

    /* The resolver freed under a check: it answers (temperror), once. */
    calls = 0;
    c = spf_check_start(dns, "192.0.2.1", "a@example.com", "", on_outcome, NULL);
    struct spf_check *c3 = spf_check_start(dns, "192.0.2.1", "b@example.com", "", on_outcome, NULL);
    spf_check_cancel(&c3);
    dns_free(&dns);
    is_int(calls, 1, "dns_free answers the check still running");
    is_int(last.result, SPF_TEMPERROR, "with temperror");
    uv_run(&loop, UV_RUN_DEFAULT);
    ok(uv_loop_close(&loop) == 0, "every handle closed");
    close(fd);
}

int main(void)
{
    is_str(spf_result_name(SPF_NONE), "none", "none");
    is_str(spf_result_name(SPF_NEUTRAL), "neutral", "neutral");
    is_str(spf_result_name(SPF_PASS), "pass", "pass");
    is_str(spf_result_name(SPF_FAIL), "fail", "fail");
    is_str(spf_result_name(SPF_SOFTFAIL), "softfail", "softfail");
    is_str(spf_result_name(SPF_TEMPERROR), "temperror", "temperror");
    is_str(spf_result_name(SPF_PERMERROR), "permerror", "permerror");
    test_records();
    test_hostile();
    test_macros();
    test_cidr();
    test_evaluator();
    return done_testing();
}
