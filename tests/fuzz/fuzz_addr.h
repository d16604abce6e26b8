/*
 * fuzz_addr.h — properties of common/addr.h that the addr and smtp_path
 * targets both check, against models written here from the RFCs rather
 * than from addr.c:
 *
 *   - addr_utf8_valid agrees with the table of well-formed UTF-8 (Unicode
 *     3-7: no overlong forms, no surrogates, nothing past U+10FFFF);
 *   - addr_parse_domain agrees with RFC 5321's Domain (letters, digits,
 *     inner hyphens, labels of 1 to 63 octets, 255 in all; UTF-8 labels
 *     under ADDR_UTF8);
 *   - for a Dot-string local part and a domain name, addr_parse agrees with
 *     the same model; for every mailbox it accepts, the two parts are the
 *     input split at its last '@' (the domain folded to lower case), within
 *     the limits, free of control characters (they go into Received: and
 *     Return-Path: headers and logs), ASCII unless ADDR_UTF8, quoted only
 *     with ADDR_QUOTED, a literal only with ADDR_LITERAL;
 *   - more flags never refuse what fewer flags accept, nor change it.
 */
#ifndef KOTAK_FUZZ_ADDR_H
#define KOTAK_FUZZ_ADDR_H

#include "addr.h"
#include "fuzz.h"
#include "util.h"

/* Unicode 3-7, byte by byte. */
static inline bool fuzz_ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint8_t lo = 0x80, hi = 0xbf; /* the range of the second byte */
        if (c <= 0x7f) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c == 0xe0) {
            len = 3, lo = 0xa0;
        } else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
            len = 3;
        } else if (c == 0xed) {
            len = 3, hi = 0x9f;
        } else if (c == 0xf0) {
            len = 4, lo = 0x90;
        } else if (c >= 0xf1 && c <= 0xf3) {
            len = 4;
        } else if (c == 0xf4) {
            len = 4, hi = 0x8f;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        i += len;
    }
    return true;
}

static inline bool fuzz_is_alnum(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 5321 Domain, with RFC 6531 U-labels when utf8. */
static inline bool fuzz_ref_domain(const uint8_t *s, size_t n, bool utf8)
{
    if (n == 0 || n > ADDR_DOMAIN_MAX)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.')
            continue;
        const uint8_t *l = s + start;
        size_t len = i - start;
        if (len == 0 || len > 63 || l[0] == '-' || l[len - 1] == '-')
            return false;
        for (size_t k = 0; k < len; k++)
            if (!fuzz_is_alnum(l[k]) && l[k] != '-' && !(l[k] >= 0x80 && utf8))
                return false;
        if (utf8 && !fuzz_ref_utf8(l, len))
            return false;
        start = i + 1;
    }
    return true;
}

/* RFC 5322 atext. */
static inline bool fuzz_is_atext(uint8_t c)
{
    return fuzz_is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 5321 Dot-string, with UTF-8 atoms when utf8. */
static inline bool fuzz_ref_dot_string(const uint8_t *s, size_t n, bool utf8)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.' && s[i + 1] == '.')
            return false;
        if (s[i] != '.' && !fuzz_is_atext(s[i]) && !(s[i] >= 0x80 && utf8))
            return false;
    }
    return !utf8 || fuzz_ref_utf8(s, n);
}

static inline void fuzz_check_text(const char *what, const char *t, unsigned flags)
{
    size_t n = strlen(t);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)t[i];
        FUZZ_CHECK(c >= 0x20 && c != 0x7f, "%s holds control character %#x", what, c);
        FUZZ_CHECK(c < 0x80 || (flags & ADDR_UTF8), "%s holds 8-bit %#x without ADDR_UTF8", what,
                   c);
    }
    if (flags & ADDR_UTF8)
        FUZZ_CHECK(fuzz_ref_utf8((const uint8_t *)t, n), "%s is not UTF-8", what);
}

static inline void fuzz_addr_check(const uint8_t *s, size_t len)
{
    bool utf8_ok = addr_utf8_valid((const char *)s, len);
    FUZZ_CHECK(utf8_ok == fuzz_ref_utf8(s, len), "addr_utf8_valid says %d, Unicode 3-7 says %d",
               utf8_ok, !utf8_ok);

    /* The model's split: at the last '@'. */
    size_t at = len;
    while (at > 0 && s[at - 1] != '@')
        at--;

    struct addr got[8];
    int rcs[8];
    for (unsigned flags = 0; flags < 8; flags++) {
        struct addr *a = &got[flags];
        memset(a, 0x5a, sizeof(*a));
        int rc = addr_parse((const char *)s, len, flags, a);
        rcs[flags] = rc;
        FUZZ_CHECK(rc == 0 || rc == -KOTAK_EADDR, "addr_parse returned %d", rc);

        /* The model, for what it covers: a Dot-string and a domain name. */
        if (at > 0 && s[0] != '"' && !(at < len && s[at] == '[')) {
            bool want = len <= ADDR_MAX && at - 1 <= ADDR_LOCAL_MAX &&
                        fuzz_ref_dot_string(s, at - 1, flags & ADDR_UTF8) &&
                        fuzz_ref_domain(s + at, len - at, flags & ADDR_UTF8);
            FUZZ_CHECK((rc == 0) == want, "addr_parse(flags %u) says %d, the RFC 5321 model %d",
                       flags, rc, want);
        }
        if (rc != 0)
            continue;

        FUZZ_CHECK(memchr(a->local, '\0', sizeof(a->local)) != NULL &&
                       memchr(a->domain, '\0', sizeof(a->domain)) != NULL,
                   "a part is not NUL-terminated");
        size_t ll = strlen(a->local), dl = strlen(a->domain);
        FUZZ_CHECK(ll >= 1 && ll <= ADDR_LOCAL_MAX && dl >= 1 && dl <= ADDR_DOMAIN_MAX,
                   "part lengths %zu and %zu", ll, dl);
        FUZZ_CHECK(len <= ADDR_MAX, "a %zu-octet mailbox accepted", len);
        FUZZ_CHECK(ll + 1 + dl == len && at == ll + 1,
                   "the parts are not the input split at its last '@'");
        FUZZ_CHECK(memcmp(a->local, s, ll) == 0, "the local part is not the input's");
        bool literal = a->domain[0] == '[';
        for (size_t i = 0; i < dl; i++) {
            uint8_t c = s[at + i];
            uint8_t want = (!literal && c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
            FUZZ_CHECK((uint8_t)a->domain[i] == want, "the domain is not the input's, folded");
        }
        fuzz_check_text("the local part", a->local, flags);
        fuzz_check_text("the domain", a->domain, flags);
        FUZZ_CHECK(a->local[0] != '"' || (flags & ADDR_QUOTED),
                   "a quoted local part without ADDR_QUOTED");
        if (a->local[0] != '"')
            FUZZ_CHECK(fuzz_ref_dot_string((const uint8_t *)a->local, ll, flags & ADDR_UTF8),
                       "an unquoted local part that is not a Dot-string");
        if (literal) {
            FUZZ_CHECK(flags & ADDR_LITERAL, "an address literal without ADDR_LITERAL");
            FUZZ_CHECK(a->domain[dl - 1] == ']', "a literal without its ']'");
        } else {
            FUZZ_CHECK(fuzz_ref_domain((const uint8_t *)a->domain, dl, flags & ADDR_UTF8),
                       "the domain is not a domain name");
            char again[ADDR_DOMAIN_MAX + 1];
            FUZZ_CHECK(addr_parse_domain(a->domain, dl, flags, again) == 0 &&
                           strcmp(again, a->domain) == 0,
                       "the domain does not parse again to itself");
        }
    }
    /* More flags never refuse, nor change, what fewer accept. */
    for (unsigned f = 0; f < 8; f++) {
        for (unsigned g = 0; g < 8; g++) {
            if ((f & g) != f || rcs[f] != 0)
                continue;
            FUZZ_CHECK(rcs[g] == 0, "accepted with flags %u, refused with flags %u", f, g);
            FUZZ_CHECK(strcmp(got[f].local, got[g].local) == 0 &&
                           strcmp(got[f].domain, got[g].domain) == 0,
                       "flags %u and %u parse it differently", f, g);
        }
    }
}

#endif
