/*
 * fuzz_spf.c — SPF's pure parts (mailauth/spf.h): the record parser, the
 * macro expander and the address reader, on text a sender's DNS controls.
 *
 * Input: the bytes of a TXT record. Properties:
 * - spf_record_check answers 0 or -EINVAL, never reads past the input (ASan),
 *   and refuses a record longer than SPF_RECORD_MAX or holding a NUL;
 * - a record it accepts reads back term by term, exactly info.terms terms,
 *   each with prefixes in range, its domain-spec inside the record, and the
 *   redirect= it reported; every domain-spec expands (for an IPv4 and an
 *   IPv6 client) to a NUL-free name of at most DNS_NAME_MAX octets, or to
 *   -E2BIG, never to a syntax error the check missed;
 * - the whole input as a macro-string expands to 0, -EINVAL or -E2BIG,
 *   within its buffer, and spf_domain_spec_valid agrees with the syntax
 *   error of spf_expand_domain;
 * - the input as an address: spf_ip_parse gives IPv4 or IPv6, never an
 *   IPv4-mapped IPv6 address, and an address matches itself at full length.
 */
#include <errno.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "spf.h"

static void expand_term(const struct spf_term *t, const struct spf_macro_env *env)
{
    if (t->spec == NULL || t->kind == SPF_TERM_UNKNOWN)
        return;
    char name[DNS_NAME_MAX + 1];
    int rc = spf_expand_domain(t->spec, t->spec_len, env, name);
    FUZZ_CHECK(rc == 0 || rc == -E2BIG, "a checked domain-spec expands with %d", rc);
    if (rc == 0)
        FUZZ_CHECK(strlen(name) <= DNS_NAME_MAX, "an expanded name of %zu octets", strlen(name));
}

static void check_record(const char *rec, size_t size)
{
    struct spf_record_info info;
    const char *why = NULL;
    int rc = spf_record_check(rec, size, &info, &why);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL, "spf_record_check returned %d", rc);
    if (rc < 0) {
        FUZZ_CHECK(why != NULL && why[0] != '\0', "an error without a reason");
        return;
    }
    FUZZ_CHECK(size <= SPF_RECORD_MAX, "a record of %zu octets accepted", size);
    FUZZ_CHECK(memchr(rec, '\0', size) == NULL, "a record with a NUL accepted");
    FUZZ_CHECK(spf_record_is_spf(rec, size), "a record without v=spf1 accepted");

    struct spf_macro_env env4 = {.sender = "strong-bad+x@email.example.com",
                                 .domain = "email.example.com",
                                 .helo = "mx.example.org"};
    struct spf_macro_env env6 = env4;
    spf_ip_parse("192.0.2.3", &env4.ip);
    spf_ip_parse("2001:db8::cb01", &env6.ip);
    size_t pos = 0, n = 0;
    bool redirect_seen = info.redirect == NULL;
    struct spf_term t;
    while ((rc = spf_term_next(rec, size, &pos, &t, &why)) == 1) {
        n++;
        FUZZ_CHECK(pos <= size, "the position went past the record");
        FUZZ_CHECK(t.cidr4 <= 32 && t.cidr6 <= 128, "prefixes /%u //%u", t.cidr4, t.cidr6);
        if (t.spec != NULL)
            FUZZ_CHECK(t.spec >= rec && t.spec + t.spec_len <= rec + size,
                       "a domain-spec outside the record");
        if (t.kind == SPF_TERM_REDIRECT)
            redirect_seen =
                redirect_seen || (t.spec == info.redirect && t.spec_len == info.redirect_len);
        if (t.kind == SPF_TERM_IP4 || t.kind == SPF_TERM_IP6)
            FUZZ_CHECK(t.net.family == (t.kind == SPF_TERM_IP4 ? AF_INET : AF_INET6),
                       "an ip4/ip6 network of the wrong family");
        expand_term(&t, &env4);
        expand_term(&t, &env6);
    }
    FUZZ_CHECK(rc == 0, "a checked record gives an error term by term (%d)", rc);
    FUZZ_CHECK(n == info.terms, "%zu terms read back, %zu counted", n, info.terms);
    FUZZ_CHECK(redirect_seen, "the redirect= reported is not among the terms");
}

static void check_macros(const char *s, size_t size)
{
    struct spf_macro_env env = {
        .sender = "a.b-c@d.example", .domain = "d.example", .helo = "h.example", .ptr = NULL};
    spf_ip_parse("2001:db8::1", &env.ip);
    char out[300];
    for (int letters = 0; letters < 2; letters++) {
        size_t len = 12345;
        int rc = spf_macro_expand(s, size, &env, letters, out, sizeof(out), &len);
        FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -E2BIG, "spf_macro_expand returned %d", rc);
        FUZZ_CHECK(len < sizeof(out) && out[len] == '\0', "the output is not terminated");
    }
    char name[DNS_NAME_MAX + 1];
    int rc = spf_expand_domain(s, size, &env, name);
    bool valid = spf_domain_spec_valid(s, size);
    FUZZ_CHECK((rc != -EINVAL) == valid, "spf_domain_spec_valid says %d, expansion %d", valid, rc);
}

static void check_ip(const char *s, size_t size)
{
    char text[64];
    size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, s, n);
    text[n] = '\0';
    struct dns_addr a;
    if (!spf_ip_parse(text, &a))
        return;
    FUZZ_CHECK(a.family == AF_INET || a.family == AF_INET6, "family %d", a.family);
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    FUZZ_CHECK(a.family == AF_INET || memcmp(a.bytes, mapped, 12) != 0,
               "an IPv4-mapped address left as IPv6");
    FUZZ_CHECK(spf_cidr_match(&a, &a, a.family == AF_INET ? 32 : 128),
               "an address does not match itself");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    check_record(s, size);
    check_macros(s, size);
    check_ip(s, size);
    return 0;
}
