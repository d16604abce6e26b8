/*
 * spf.c — Sender Policy Framework, RFC 7208: check_host() for a client's
 * address and a sender's domain.
 *
 * Two layers. The pure one reads records and expands macros: a record is
 * checked whole before any term is evaluated (a syntax error anywhere is a
 * permerror, 4.6), then read again term by term as the evaluation goes, so
 * that no parsed copy is kept; every output is bounded (SPF_RECORD_MAX,
 * SPF_EXPAND_MAX, DNS_NAME_MAX) and the work is linear in the input.
 *
 * The evaluator is a state machine on the loop that asks one DNS question
 * at a time, in the order the RFC evaluates terms. Each include pushes a
 * frame (its record and domain); redirect replaces the frame it ends, since
 * its result is that frame's result. Every include and redirect counts
 * against the ten DNS-querying terms of 4.6.4, so the frames are at most
 * eleven deep and the whole check asks at most about a hundred questions
 * (ten terms, each with at most ten address look-ups).
 *
 * The resolver cannot withdraw a question, so spf_check_cancel only marks
 * the check cancelled: the answer still due arrives, finds the mark and
 * frees the check. Every callback first counts its answer in, so the check
 * is freed by whichever comes last, the cancel or the answer.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spf.h"
#include "util.h"

const char *spf_result_name(enum spf_result r)
{
    switch (r) {
    case SPF_NONE:
        return "none";
    case SPF_NEUTRAL:
        return "neutral";
    case SPF_PASS:
        return "pass";
    case SPF_FAIL:
        return "fail";
    case SPF_SOFTFAIL:
        return "softfail";
    case SPF_TEMPERROR:
        return "temperror";
    case SPF_PERMERROR:
        return "permerror";
    }
    return "permerror";
}

/* --- characters ---------------------------------------------------------- */

static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_alnum(char ch)
{
    return is_alpha(ch) || is_digit(ch);
}

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* Whether s (n octets) is word, in any case. */
static bool word_is(const char *s, size_t n, const char *word)
{
    size_t w = strlen(word);
    if (n != w)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != word[i])
            return false;
    return true;
}

/* --- addresses ----------------------------------------------------------- */

bool spf_ip_parse(const char *text, struct dns_addr *ip_r)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(ip_r, 0, sizeof(*ip_r));
    if (inet_pton(AF_INET, text, ip_r->bytes) == 1) {
        ip_r->family = AF_INET;
        return true;
    }
    uint8_t b[16];
    if (inet_pton(AF_INET6, text, b) != 1)
        return false;
    if (memcmp(b, mapped, sizeof(mapped)) == 0) {
        ip_r->family = AF_INET;
        memcpy(ip_r->bytes, b + 12, 4);
    } else {
        ip_r->family = AF_INET6;
        memcpy(ip_r->bytes, b, 16);
    }
    return true;
}

bool spf_cidr_match(const struct dns_addr *ip, const struct dns_addr *net, unsigned prefix)
{
    unsigned bits = ip->family == AF_INET ? 32 : 128;
    if (ip->family != net->family || prefix > bits)
        return false;
    unsigned whole = prefix / 8, rest = prefix % 8;
    if (memcmp(ip->bytes, net->bytes, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (ip->bytes[whole] & mask) == (net->bytes[whole] & mask);
}

/* --- macros (RFC 7208 7) ------------------------------------------------- */

/* Where an expansion goes; NULL buf: only the syntax is checked. */
struct out {
    char *buf;
    size_t size, len;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->buf == NULL || o->full)
        return;
    if (n >= o->size - o->len) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

/* Uppercase macros are URL-escaped: all but RFC 3986's unreserved set. */
static void put_escaped(struct out *o, const char *s, size_t n, bool escape)
{
    if (!escape) {
        put(o, s, n);
        return;
    }
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (is_alnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            put(o, &ch, 1);
        } else {
            char e[3] = {'%', hex[(unsigned char)ch >> 4], hex[(unsigned char)ch & 0xf]};
            put(o, e, 3);
        }
    }
}

/* The address in %{i}'s form: dotted quad, or 32 dot-separated nibbles. */
static size_t ip_macro_text(const struct dns_addr *ip, char *buf, size_t size)
{
    if (ip->family == AF_INET) {
        int n = snprintf(buf, size, "%u.%u.%u.%u", ip->bytes[0], ip->bytes[1], ip->bytes[2],
                         ip->bytes[3]);
        return n > 0 ? (size_t)n : 0;
    }
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16 && o + 4 < size; i++) {
        buf[o++] = hex[ip->bytes[i] >> 4];
        buf[o++] = '.';
        buf[o++] = hex[ip->bytes[i] & 0xf];
        buf[o++] = '.';
    }
    if (o > 0)
        o--; /* no dot after the last nibble */
    buf[o] = '\0';
    return o;
}

/* A macro letter's value; NULL for c, r and t, which expand to nothing here. */
static const char *macro_value(char letter, const struct spf_macro_env *env, char *tmp,
                               size_t tmp_size, size_t *len_r)
{
    const char *v = NULL;
    const char *sender = env->sender ? env->sender : "";
    const char *at = strrchr(sender, '@');
    switch (letter) {
    case 's':
        v = sender;
        break;
    case 'l': /* RFC 7208 4.3: no local-part stands for "postmaster" */
        if (at == NULL || at == sender) {
            v = "postmaster";
            break;
        }
        *len_r = (size_t)(at - sender);
        return sender;
    case 'o':
        v = at ? at + 1 : sender;
        break;
    case 'd':
        v = env->domain ? env->domain : "";
        break;
    case 'i':
        *len_r = ip_macro_text(&env->ip, tmp, tmp_size);
        return tmp;
    case 'p':
        v = env->ptr ? env->ptr : "unknown";
        break;
    case 'v':
        v = env->ip.family == AF_INET6 ? "ip6" : "in-addr";
        break;
    case 'h':
        v = env->helo ? env->helo : "";
        break;
    default:
        *len_r = 0;
        return NULL;
    }
    *len_r = strlen(v);
    return v;
}

/*
 * Splits v at any of delims, keeps the rightmost keep parts (0: all) of
 * the list, reversed first when asked, and writes them joined with dots
 * (7.3). Linear in n: the reversed order is written walking backwards.
 */
static void transform(struct out *o, const char *v, size_t n, const char *delims, size_t nd,
                      unsigned keep_n, bool reverse, bool escape)
{
    size_t count = 1;
    for (size_t i = 0; i < n; i++)
        if (memchr(delims, v[i], nd) != NULL)
            count++;
    size_t keep = keep_n == 0 || keep_n > count ? count : keep_n;
    if (!reverse) {
        size_t skip = count - keep, i = 0;
        for (; skip > 0; i++)
            if (memchr(delims, v[i], nd) != NULL)
                skip--;
        for (; i < n; i++) {
            char ch = memchr(delims, v[i], nd) != NULL ? '.' : v[i];
            put_escaped(o, &ch, 1, escape);
        }
        return;
    }
    /* Reversed, the rightmost keep parts are the original parts keep-1 .. 0. */
    size_t end = 0, seen = 0;
    for (; end < n; end++)
        if (memchr(delims, v[end], nd) != NULL && ++seen == keep)
            break;
    for (;;) {
        size_t start = end;
        while (start > 0 && memchr(delims, v[start - 1], nd) == NULL)
            start--;
        put_escaped(o, v + start, end - start, escape);
        if (start == 0)
            break;
        put_escaped(o, ".", 1, escape);
        end = start - 1;
    }
}

/*
 * Reads one macro-expand at spec[*i] (a '%') and writes its expansion.
 * Returns 0 with *i past it, or -EINVAL.
 */
static int macro_one(const char *spec, size_t len, size_t *i, const struct spf_macro_env *env,
                     bool exp_letters, struct out *o)
{
    size_t j = *i + 1;
    if (j >= len)
        return -EINVAL;
    if (spec[j] == '%' || spec[j] == '_' || spec[j] == '-') {
        put(o, spec[j] == '%' ? "%" : spec[j] == '_' ? " " : "%20", spec[j] == '-' ? 3 : 1);
        *i = j + 1;
        return 0;
    }
    if (spec[j] != '{' || ++j >= len)
        return -EINVAL;
    char upper = spec[j], letter = lower(upper);
    if (letter == '\0' ||
        (strchr("slodiphv", letter) == NULL && !(exp_letters && strchr("crt", letter) != NULL)))
        return -EINVAL;
    bool escape = upper != letter;
    j++;
    unsigned keep = 0;
    bool digits = false;
    for (; j < len && is_digit(spec[j]); j++) {
        digits = true;
        if (keep < 1000) /* past any count of parts: all of them */
            keep = keep * 10 + (unsigned)(spec[j] - '0');
    }
    if (digits && keep == 0)
        return -EINVAL; /* 7.3: the number of parts must be nonzero */
    bool reverse = j < len && lower(spec[j]) == 'r';
    if (reverse)
        j++;
    size_t dstart = j;
    while (j < len && strchr(".-+,/_=", spec[j]) != NULL && spec[j] != '\0')
        j++;
    if (j >= len || spec[j] != '}')
        return -EINVAL;
    if (o->buf != NULL && env != NULL) {
        char tmp[72];
        size_t n;
        const char *v = macro_value(letter, env, tmp, sizeof(tmp), &n);
        size_t nd = j - dstart;
        if (v != NULL)
            transform(o, v, n, nd ? spec + dstart : ".", nd ? nd : 1, keep, reverse, escape);
    }
    *i = j + 1;
    return 0;
}

/*
 * Walks a macro-string (7.1): macro-expands and macro-literals (visible
 * ASCII but '%'). Writes the expansion when o has a buffer. *ends_macro_r
 * tells whether it ends with a macro-expand (a domain-spec may end so).
 */
static int macro_walk(const char *spec, size_t len, const struct spf_macro_env *env,
                      bool exp_letters, struct out *o, bool *ends_macro_r)
{
    bool ends_macro = false;
    for (size_t i = 0; i < len;) {
        char ch = spec[i];
        if (ch == '%') {
            int rc = macro_one(spec, len, &i, env, exp_letters, o);
            if (rc < 0)
                return rc;
            ends_macro = true;
        } else if (ch >= 0x21 && ch <= 0x7e) {
            put(o, &ch, 1);
            ends_macro = false;
            i++;
        } else {
            return -EINVAL;
        }
        if (o->full)
            return -E2BIG;
    }
    if (ends_macro_r != NULL)
        *ends_macro_r = ends_macro;
    return 0;
}

int spf_macro_expand(const char *spec, size_t len, const struct spf_macro_env *env,
                     bool exp_letters, char *out, size_t out_size, size_t *len_r)
{
    if (out_size == 0)
        return -E2BIG;
    struct out o = {.buf = out, .size = out_size};
    int rc = macro_walk(spec, len, env, exp_letters, &o, NULL);
    out[o.len] = '\0';
    *len_r = o.len;
    return rc;
}

/* toplabel (7.1): alphanumerics and inner hyphens, not all digits. */
static bool toplabel_valid(const char *s, size_t n)
{
    if (n == 0 || s[0] == '-' || s[n - 1] == '-')
        return false;
    bool alpha = false, hyphen = false;
    for (size_t i = 0; i < n; i++) {
        if (is_alpha(s[i]))
            alpha = true;
        else if (s[i] == '-')
            hyphen = true;
        else if (!is_digit(s[i]))
            return false;
    }
    return alpha || hyphen;
}

bool spf_domain_spec_valid(const char *spec, size_t len)
{
    struct out o = {0};
    bool ends_macro;
    if (len == 0 || macro_walk(spec, len, NULL, false, &o, &ends_macro) < 0)
        return false;
    if (ends_macro)
        return true;
    /* domain-end = "." toplabel [ "." ] */
    size_t end = len;
    if (spec[end - 1] == '.')
        end--;
    size_t start = end;
    while (start > 0 && spec[start - 1] != '.')
        start--;
    return start > 0 && toplabel_valid(spec + start, end - start);
}

int spf_expand_domain(const char *spec, size_t len, const struct spf_macro_env *env,
                      char out[DNS_NAME_MAX + 1])
{
    char buf[SPF_EXPAND_MAX + 1];
    size_t n;
    if (!spf_domain_spec_valid(spec, len))
        return -EINVAL;
    int rc = spf_macro_expand(spec, len, env, false, buf, sizeof(buf), &n);
    if (rc < 0)
        return rc;
    if (n > 0 && buf[n - 1] == '.')
        n--;
    size_t start = 0;
    while (n - start > DNS_NAME_MAX) {
        const char *dot = memchr(buf + start, '.', n - start);
        if (dot == NULL)
            return -E2BIG;
        start = (size_t)(dot - buf) + 1;
    }
    memcpy(out, buf + start, n - start);
    out[n - start] = '\0';
    return 0;
}

/* --- records (RFC 7208 4.5, 4.6, 5, 6, 12) ------------------------------- */

bool spf_record_is_spf(const char *txt, size_t len)
{
    return len >= 6 && word_is(txt, 6, "v=spf1") && (len == 6 || txt[6] == ' ');
}

/* A CIDR length: "0" or digits without a leading zero, at most max. */
static bool cidr_parse(const char *s, size_t n, unsigned max, unsigned *r)
{
    if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *r = v;
    return v <= max;
}

/*
 * Takes dual-cidr-length ("/N", "//M", "/N//M") off the end of s: returns
 * the length left, or (size_t)-1 for a bad length.
 */
static size_t dual_cidr_cut(const char *s, size_t n, struct spf_term *t)
{
    size_t d = n;
    while (d > 0 && is_digit(s[d - 1]))
        d--;
    if (d < n && d >= 2 && s[d - 1] == '/' && s[d - 2] == '/') {
        if (!cidr_parse(s + d, n - d, 128, &t->cidr6))
            return (size_t)-1;
        n = d - 2;
        d = n;
        while (d > 0 && is_digit(s[d - 1]))
            d--;
    }
    if (d < n && d >= 1 && s[d - 1] == '/') {
        if (d >= 2 && s[d - 2] == '/')
            return (size_t)-1; /* a second "//" */
        if (!cidr_parse(s + d, n - d, 32, &t->cidr4))
            return (size_t)-1;
        n = d - 1;
    }
    return n;
}

/* ip4:NETWORK[/N] or ip6:NETWORK[/N]: rest is what follows the name. */
static int ip_term(const char *rest, size_t n, struct spf_term *t, const char **why_r)
{
    bool v4 = t->kind == SPF_TERM_IP4;
    if (n < 2 || rest[0] != ':') {
        *why_r = v4 ? "ip4 needs an address" : "ip6 needs an address";
        return -EINVAL;
    }
    const char *slash = memchr(rest + 1, '/', n - 1);
    size_t alen = slash ? (size_t)(slash - rest) - 1 : n - 1;
    char text[INET6_ADDRSTRLEN + 1];
    if (alen == 0 || alen >= sizeof(text)) {
        *why_r = "bad address in ip4/ip6";
        return -EINVAL;
    }
    memcpy(text, rest + 1, alen);
    text[alen] = '\0';
    t->net.family = v4 ? AF_INET : AF_INET6;
    if (inet_pton(t->net.family, text, t->net.bytes) != 1) {
        *why_r = v4 ? "bad IPv4 address in ip4" : "bad IPv6 address in ip6";
        return -EINVAL;
    }
    if (slash != NULL) {
        size_t clen = n - 1 - alen - 1;
        if (!cidr_parse(slash + 1, clen, v4 ? 32 : 128, v4 ? &t->cidr4 : &t->cidr6)) {
            *why_r = "bad CIDR length";
            return -EINVAL;
        }
    }
    return 1;
}

/* name=value (6): redirect and exp take a domain-spec, others a macro-string. */
static int modifier_term(const char *s, size_t n, size_t name_len, struct spf_term *t,
                         const char **why_r)
{
    t->spec = s + name_len + 1;
    t->spec_len = n - name_len - 1;
    if (word_is(s, name_len, "redirect") || word_is(s, name_len, "exp")) {
        t->kind = lower(s[0]) == 'r' ? SPF_TERM_REDIRECT : SPF_TERM_EXP;
        if (!spf_domain_spec_valid(t->spec, t->spec_len)) {
            *why_r =
                t->kind == SPF_TERM_REDIRECT ? "bad domain in redirect=" : "bad domain in exp=";
            return -EINVAL;
        }
        return 1;
    }
    t->kind = SPF_TERM_UNKNOWN;
    struct out o = {0};
    if (macro_walk(t->spec, t->spec_len, NULL, true, &o, NULL) < 0) {
        *why_r = "bad macro in a modifier";
        return -EINVAL;
    }
    return 1;
}

static const struct {
    const char *name;
    enum spf_term_kind kind;
} mechanisms[] = {
    {"all", SPF_TERM_ALL}, {"include", SPF_TERM_INCLUDE}, {"a", SPF_TERM_A},
    {"mx", SPF_TERM_MX},   {"ptr", SPF_TERM_PTR},         {"ip4", SPF_TERM_IP4},
    {"ip6", SPF_TERM_IP6}, {"exists", SPF_TERM_EXISTS},
};

/* One term, s (n octets, no space in it). */
static int term_parse(const char *s, size_t n, struct spf_term *t, const char **why_r)
{
    memset(t, 0, sizeof(*t));
    t->qualifier = SPF_PASS;
    t->cidr4 = 32;
    t->cidr6 = 128;
    size_t k = 0;
    if (is_alpha(s[0])) {
        k = 1;
        while (k < n && (is_alnum(s[k]) || s[k] == '-' || s[k] == '_' || s[k] == '.'))
            k++;
        if (k < n && s[k] == '=')
            return modifier_term(s, n, k, t, why_r);
    }
    size_t i = 0;
    if (strchr("+-~?", s[0]) != NULL && s[0] != '\0') {
        t->qualifier = s[0] == '+'   ? SPF_PASS
                       : s[0] == '-' ? SPF_FAIL
                       : s[0] == '~' ? SPF_SOFTFAIL
                                     : SPF_NEUTRAL;
        i = 1;
    }
    size_t name = i;
    while (i < n && is_alnum(s[i]))
        i++;
    size_t m = 0, count = sizeof(mechanisms) / sizeof(mechanisms[0]);
    while (m < count && !word_is(s + name, i - name, mechanisms[m].name))
        m++;
    if (m == count) {
        *why_r = "unknown mechanism";
        return -EINVAL;
    }
    t->kind = mechanisms[m].kind;
    const char *rest = s + i;
    size_t rn = n - i;
    switch (t->kind) {
    case SPF_TERM_ALL:
        if (rn == 0)
            return 1;
        *why_r = "all takes no argument";
        return -EINVAL;
    case SPF_TERM_IP4:
    case SPF_TERM_IP6:
        return ip_term(rest, rn, t, why_r);
    case SPF_TERM_A:
    case SPF_TERM_MX:
        rn = dual_cidr_cut(rest, rn, t);
        if (rn == (size_t)-1) {
            *why_r = "bad CIDR length";
            return -EINVAL;
        }
        break;
    default:
        break;
    }
    if (rn == 0) {
        if (t->kind == SPF_TERM_INCLUDE || t->kind == SPF_TERM_EXISTS) {
            *why_r =
                t->kind == SPF_TERM_INCLUDE ? "include needs a domain" : "exists needs a domain";
            return -EINVAL;
        }
        return 1;
    }
    if (rest[0] != ':' || !spf_domain_spec_valid(rest + 1, rn - 1)) {
        *why_r = "bad domain in a mechanism";
        return -EINVAL;
    }
    t->spec = rest + 1;
    t->spec_len = rn - 1;
    return 1;
}

int spf_term_next(const char *rec, size_t len, size_t *pos, struct spf_term *t, const char **why_r)
{
    size_t i = *pos;
    if (i == 0) {
        if (!spf_record_is_spf(rec, len)) {
            *why_r = "not an SPF record";
            return -EINVAL;
        }
        i = 6;
    }
    while (i < len && rec[i] == ' ')
        i++;
    if (i >= len) {
        *pos = len;
        return 0;
    }
    size_t end = i;
    while (end < len && rec[end] != ' ')
        end++;
    *pos = end;
    return term_parse(rec + i, end - i, t, why_r);
}

int spf_record_check(const char *rec, size_t len, struct spf_record_info *info_r,
                     const char **why_r)
{
    memset(info_r, 0, sizeof(*info_r));
    if (len > SPF_RECORD_MAX) {
        *why_r = "record longer than 4096 octets";
        return -EINVAL;
    }
    if (memchr(rec, '\0', len) != NULL) {
        *why_r = "NUL octet in the record";
        return -EINVAL;
    }
    size_t pos = 0, exps = 0, redirects = 0;
    struct spf_term t;
    int rc;
    while ((rc = spf_term_next(rec, len, &pos, &t, why_r)) == 1) {
        info_r->terms++;
        if (t.kind == SPF_TERM_EXP)
            exps++;
        if (t.kind == SPF_TERM_REDIRECT) {
            redirects++;
            info_r->redirect = t.spec;
            info_r->redirect_len = t.spec_len;
        }
    }
    if (rc < 0)
        return rc;
    if (redirects > 1 || exps > 1) {
        *why_r = redirects > 1 ? "redirect= twice" : "exp= twice";
        return -EINVAL;
    }
    return 0;
}

/* --- the evaluator ------------------------------------------------------- */

#define DEPTH_MAX (SPF_LOOKUPS_MAX + 1)

/* One check_host() in progress: the top-level one, or an include's. */
struct frame {
    char domain[DNS_NAME_MAX + 1];
    char *record; /* owned */
    size_t len, pos;
    const char *redirect; /* into record */
    size_t redirect_len;
    struct spf_term term; /* the term being evaluated; borrows from record */
};

/* Why a record is being asked for: what "no record" means differs (4.3, 5.2, 6.1). */
enum record_for {
    RECORD_TOP,
    RECORD_INCLUDE,
    RECORD_REDIRECT,
};

struct spf_check {
    struct dns *dns;
    void (*cb)(void *ctx, const struct spf_outcome *o);
    void *ctx;
    struct dns_addr ip;
    char sender[SPF_SENDER_MAX + 1]; /* %{s}: local@domain */
    char helo[DNS_NAME_MAX + 1];     /* %{h} */
    struct spf_outcome out;

    struct frame frames[DEPTH_MAX];
    size_t depth;
    enum record_for want;
    char target[DNS_NAME_MAX + 1]; /* the name a question is about */
    unsigned lookups, voids;

    /* An mx or ptr term's names, looked up one after the other. */
    char names[SPF_MX_NAMES_MAX][DNS_NAME_MAX + 1];
    size_t n_names, next_name;

    unsigned outstanding; /* questions asked and not answered yet */
    bool cancelled;       /* spf_check_cancel came: the last answer frees */
    bool finishing;       /* cb is running: a cancel now only forgets the check */
};

static void check_free(struct spf_check *c)
{
    for (size_t i = 0; i < c->depth; i++)
        free(c->frames[i].record);
    free(c);
}

/* Ends the check with r: cb, then the check goes. No question is out. */
static void finish(struct spf_check *c, enum spf_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct spf_check *c, enum spf_result r, const char *fmt, ...)
{
    c->out.result = r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->out.why, sizeof(c->out.why), fmt, ap);
    va_end(ap);
    c->finishing = true;
    c->cb(c->ctx, &c->out);
    check_free(c);
}

/* An answer came: false when the check was cancelled (then it may be freed here). */
static bool answered(struct spf_check *c)
{
    c->outstanding--;
    if (!c->cancelled)
        return true;
    if (c->outstanding == 0)
        check_free(c);
    return false;
}

static struct frame *top(struct spf_check *c)
{
    return &c->frames[c->depth - 1];
}

static void step(struct spf_check *c);

/* A DNS-querying term begins: false (and the check ended) past the tenth. */
static bool count_lookup(struct spf_check *c)
{
    if (++c->lookups <= SPF_LOOKUPS_MAX)
        return true;
    finish(c, SPF_PERMERROR, "more than %d DNS-querying terms (at %s)", SPF_LOOKUPS_MAX,
           top(c)->domain);
    return false;
}

/* A term's query found nothing: false (and the check ended) past the second. */
static bool count_void(struct spf_check *c)
{
    if (++c->voids <= SPF_VOIDS_MAX)
        return true;
    finish(c, SPF_PERMERROR, "more than %d void DNS look-ups (at %s)", SPF_VOIDS_MAX, c->target);
    return false;
}

/* Expands a term's domain-spec (or the current domain) into c->target. */
static bool target_of(struct spf_check *c, const char *spec, size_t len)
{
    struct frame *f = top(c);
    if (spec == NULL) {
        snprintf(c->target, sizeof(c->target), "%s", f->domain);
        return true;
    }
    struct spf_macro_env env = {
        .sender = c->sender, .domain = f->domain, .helo = c->helo, .ip = c->ip};
    return spf_expand_domain(spec, len, &env, c->target) == 0 && dns_name_valid(c->target);
}

/*
 * The current frame's check_host() has its result r (a match's qualifier,
 * or neutral at its end). An include's frame hands it to the one below:
 * pass is a match there, fail, softfail and neutral are not (5.2).
 */
static void frame_result(struct spf_check *c, enum spf_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void frame_result(struct spf_check *c, enum spf_result r, const char *fmt, ...)
{
    char why[sizeof(c->out.why)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    while (c->depth > 1) {
        free(top(c)->record);
        c->depth--;
        if (r != SPF_PASS) {
            step(c);
            return;
        }
        r = top(c)->term.qualifier;
    }
    finish(c, r, "%s", why);
}

/* A DNS call that failed at once (the resolver is being freed). */
static void ask_failed(struct spf_check *c, int rc)
{
    finish(c, SPF_TEMPERROR, "DNS: %s",
           rc == -ECANCELED ? "the resolver is stopping" : "a question could not be asked");
}

/* --- the record of a domain --- */

static void on_record(void *ctx, enum dns_status status, const char *const *records,
                      const size_t *lens, size_t n);

static void ask_record(struct spf_check *c, enum record_for want)
{
    c->want = want;
    int rc = dns_txt(c->dns, c->target, on_record, c);
    if (rc < 0) {
        ask_failed(c, rc);
        return;
    }
    c->outstanding++;
}

static void no_record(struct spf_check *c, const char *what)
{
    if (c->want == RECORD_TOP)
        finish(c, SPF_NONE, "%s at %s", what, c->target);
    else
        finish(c, SPF_PERMERROR, "%s at %s, named by %s", what, c->target,
               c->want == RECORD_INCLUDE ? "include" : "redirect=");
}

static void on_record(void *ctx, enum dns_status status, const char *const *records,
                      const size_t *lens, size_t n)
{
    struct spf_check *c = ctx;
    if (!answered(c))
        return;
    if (status == DNS_NXDOMAIN || status == DNS_NODATA) {
        no_record(c, status == DNS_NXDOMAIN ? "no such domain" : "no SPF record");
        return;
    }
    if (status != DNS_OK) {
        finish(c, SPF_TEMPERROR, "DNS %s for TXT %s", dns_status_name(status), c->target);
        return;
    }
    size_t found = 0, which = 0;
    for (size_t i = 0; i < n; i++)
        if (spf_record_is_spf(records[i], lens[i])) {
            found++;
            which = i;
        }
    if (found == 0) {
        no_record(c, "no SPF record");
        return;
    }
    if (found > 1) {
        finish(c, SPF_PERMERROR, "%zu SPF records at %s", found, c->target);
        return;
    }
    struct spf_record_info info;
    const char *why;
    if (spf_record_check(records[which], lens[which], &info, &why) < 0) {
        finish(c, SPF_PERMERROR, "%s in the record of %s", why, c->target);
        return;
    }
    if (c->want == RECORD_REDIRECT) {
        free(top(c)->record);
    } else {
        assert(c->depth < DEPTH_MAX); /* each include counted as a look-up */
        c->depth++;
    }
    struct frame *f = top(c);
    memset(f, 0, sizeof(*f));
    snprintf(f->domain, sizeof(f->domain), "%s", c->target);
    f->record = xmalloc(lens[which] + 1);
    memcpy(f->record, records[which], lens[which] + 1);
    f->len = lens[which];
    if (info.redirect != NULL) {
        f->redirect = f->record + (info.redirect - records[which]);
        f->redirect_len = info.redirect_len;
    }
    step(c);
}

/* --- a, exists --- */

static void on_addrs(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n)
{
    struct spf_check *c = ctx;
    if (!answered(c))
        return;
    struct frame *f = top(c);
    const struct spf_term *t = &f->term;
    if (status == DNS_NXDOMAIN || status == DNS_NODATA) {
        if (count_void(c))
            step(c);
        return;
    }
    if (status != DNS_OK) {
        finish(c, SPF_TEMPERROR, "DNS %s for %s", dns_status_name(status), c->target);
        return;
    }
    bool exists = t->kind == SPF_TERM_EXISTS;
    for (size_t i = 0; i < n; i++) {
        unsigned prefix = addrs[i].family == AF_INET ? t->cidr4 : t->cidr6;
        if (exists || spf_cidr_match(&c->ip, &addrs[i], prefix)) {
            frame_result(c, t->qualifier, "%s matched %s at %s", exists ? "exists" : "a", c->target,
                         f->domain);
            return;
        }
    }
    step(c);
}

static unsigned family_of(const struct spf_check *c)
{
    return c->ip.family == AF_INET ? DNS_V4 : DNS_V6;
}

/* --- mx --- */

static void on_mx_addrs(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n);

/* Looks up the next MX host's addresses; none left: the term did not match. */
static void mx_next(struct spf_check *c)
{
    if (c->next_name == c->n_names) {
        step(c);
        return;
    }
    int rc = dns_addrs(c->dns, c->names[c->next_name++], family_of(c), on_mx_addrs, c);
    if (rc == -EINVAL) {
        mx_next(c);
        return;
    }
    if (rc < 0) {
        ask_failed(c, rc);
        return;
    }
    c->outstanding++;
}

static void on_mx_addrs(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n)
{
    struct spf_check *c = ctx;
    if (!answered(c))
        return;
    struct frame *f = top(c);
    if (status == DNS_TEMPFAIL || status == DNS_CANCELLED) {
        finish(c, SPF_TEMPERROR, "DNS %s for %s", dns_status_name(status),
               c->names[c->next_name - 1]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned prefix = addrs[i].family == AF_INET ? f->term.cidr4 : f->term.cidr6;
        if (spf_cidr_match(&c->ip, &addrs[i], prefix)) {
            frame_result(c, f->term.qualifier, "mx matched %s (MX of %s) at %s",
                         c->names[c->next_name - 1], c->target, f->domain);
            return;
        }
    }
    mx_next(c);
}

static void on_mx(void *ctx, enum dns_status status, const struct dns_mx *records, size_t n)
{
    struct spf_check *c = ctx;
    if (!answered(c))
        return;
    if (status == DNS_NXDOMAIN || status == DNS_NODATA) {
        if (count_void(c))
            step(c);
        return;
    }
    if (status != DNS_OK) {
        finish(c, SPF_TEMPERROR, "DNS %s for MX %s", dns_status_name(status), c->target);
        return;
    }
    if (n > SPF_MX_NAMES_MAX) {
        finish(c, SPF_PERMERROR, "more than %d MX names at %s", SPF_MX_NAMES_MAX, c->target);
        return;
    }
    c->n_names = c->next_name = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(records[i].host, ".") != 0) /* a null MX names no host */
            snprintf(c->names[c->n_names++], sizeof(c->names[0]), "%s", records[i].host);
    mx_next(c);
}

/* --- ptr (5.5) --- */

static void on_ptr_addrs(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n);

/* Validates the next PTR name under the target; none left: no match. */
static void ptr_next(struct spf_check *c)
{
    if (c->next_name == c->n_names) {
        step(c);
        return;
    }
    int rc = dns_addrs(c->dns, c->names[c->next_name++], family_of(c), on_ptr_addrs, c);
    if (rc == -EINVAL) {
        ptr_next(c);
        return;
    }
    if (rc < 0) {
        ask_failed(c, rc);
        return;
    }
    c->outstanding++;
}

static void on_ptr_addrs(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n)
{
    struct spf_check *c = ctx;
    if (!answered(c))
        return;
    (void)status; /* 5.5: a failed look-up only skips the name */
    struct frame *f = top(c);
    for (size_t i = 0; i < n; i++) {
        if (spf_cidr_match(&c->ip, &addrs[i], c->ip.family == AF_INET ? 32 : 128)) {
            frame_result(c, f->term.qualifier, "ptr matched %s at %s", c->names[c->next_name - 1],
                         f->domain);
            return;
        }
    }
    ptr_next(c);
}

/* Whether name is target or a name below it, in any case. */
static bool name_under(const char *name, const char *target)
{
    size_t n = strlen(name), t = strlen(target);
    if (n < t || strcasecmp(name + n - t, target) != 0)
        return false;
    return n == t || name[n - t - 1] == '.';
}

static void on_ptr(void *ctx, enum dns_status status, const char *const *names, size_t n)
{
    struct spf_check *c = ctx;
    if (!answered(c))
        return;
    c->n_names = c->next_name = 0;
    if (status == DNS_OK) {
        for (size_t i = 0; i < n && i < SPF_PTR_NAMES_MAX; i++)
            if (name_under(names[i], c->target))
                snprintf(c->names[c->n_names++], sizeof(c->names[0]), "%s", names[i]);
    }
    ptr_next(c); /* 5.5: a failed PTR look-up is no match, not an error */
}

/* --- the terms --- */

/* Starts a term that asks DNS. */
static void ask_term(struct spf_check *c, struct spf_term *t)
{
    if (!count_lookup(c))
        return;
    bool valid = target_of(c, t->spec, t->spec_len);
    if (!valid && t->kind == SPF_TERM_INCLUDE) {
        finish(c, SPF_PERMERROR, "include names no valid domain at %s", top(c)->domain);
        return;
    }
    if (!valid) { /* no name to ask for: the term does not match */
        step(c);
        return;
    }
    int rc;
    switch (t->kind) {
    case SPF_TERM_INCLUDE:
        ask_record(c, RECORD_INCLUDE);
        return;
    case SPF_TERM_A:
        rc = dns_addrs(c->dns, c->target, family_of(c), on_addrs, c);
        break;
    case SPF_TERM_EXISTS: /* 5.7: an A look-up, whatever the connection */
        rc = dns_addrs(c->dns, c->target, DNS_V4, on_addrs, c);
        break;
    case SPF_TERM_MX:
        rc = dns_mx(c->dns, c->target, on_mx, c);
        break;
    default: /* SPF_TERM_PTR */
        rc = dns_ptr(c->dns, &c->ip, on_ptr, c);
        break;
    }
    if (rc < 0) {
        ask_failed(c, rc);
        return;
    }
    c->outstanding++;
}

/* No term of the frame matched: its redirect=, or neutral (4.7, 6.1). */
static void frame_end(struct spf_check *c)
{
    struct frame *f = top(c);
    if (f->redirect == NULL) {
        frame_result(c, SPF_NEUTRAL, "no mechanism matched at %s", f->domain);
        return;
    }
    if (!count_lookup(c))
        return;
    if (!target_of(c, f->redirect, f->redirect_len)) {
        finish(c, SPF_PERMERROR, "redirect= names no valid domain at %s", f->domain);
        return;
    }
    ask_record(c, RECORD_REDIRECT);
}

/* Evaluates the current frame's terms until one asks DNS, matches, or the end. */
static void step(struct spf_check *c)
{
    for (;;) {
        struct frame *f = top(c);
        struct spf_term *t = &f->term;
        const char *why = "";
        int rc = spf_term_next(f->record, f->len, &f->pos, t, &why);
        if (rc < 0) { /* checked whole before: cannot happen */
            finish(c, SPF_PERMERROR, "%s in the record of %s", why, f->domain);
            return;
        }
        if (rc == 0) {
            frame_end(c);
            return;
        }
        switch (t->kind) {
        case SPF_TERM_ALL:
            frame_result(c, t->qualifier, "all at %s", f->domain);
            return;
        case SPF_TERM_IP4:
        case SPF_TERM_IP6:
            if (spf_cidr_match(&c->ip, &t->net, t->kind == SPF_TERM_IP4 ? t->cidr4 : t->cidr6)) {
                frame_result(c, t->qualifier, "%s matched at %s",
                             t->kind == SPF_TERM_IP4 ? "ip4" : "ip6", f->domain);
                return;
            }
            break;
        case SPF_TERM_INCLUDE:
        case SPF_TERM_A:
        case SPF_TERM_MX:
        case SPF_TERM_PTR:
        case SPF_TERM_EXISTS:
            ask_term(c, t);
            return;
        default: /* modifiers: redirect= comes at the end, the others do nothing */
            break;
        }
    }
}

/* --- start, cancel --- */

/* The domain of sender, if it is one to check (4.3): a name of two labels or more. */
static bool identity_domain(const char *sender, char out[DNS_NAME_MAX + 1])
{
    const char *at = strrchr(sender, '@');
    const char *d = at ? at + 1 : sender;
    size_t n = strlen(d);
    if (n > 0 && d[n - 1] == '.')
        n--;
    if (n == 0 || n > DNS_NAME_MAX)
        return false;
    memcpy(out, d, n);
    out[n] = '\0';
    return dns_name_valid(out) && strchr(out, '.') != NULL && out[0] != '[';
}

/* An immediate result, brought onto the loop. */
static void on_later(void *ctx, enum dns_status status)
{
    (void)status;
    struct spf_check *c = ctx;
    if (!answered(c))
        return;
    char why[sizeof(c->out.why)];
    memcpy(why, c->out.why, sizeof(why));
    finish(c, SPF_NONE, "%s", why);
}

struct spf_check *spf_check_start(struct dns *dns, const char *ip, const char *sender,
                                  const char *helo,
                                  void (*cb)(void *ctx, const struct spf_outcome *o), void *ctx)
{
    struct dns_addr addr;
    if (!spf_ip_parse(ip, &addr))
        return NULL;
    struct spf_check *c = xcalloc(1, sizeof(*c));
    c->dns = dns;
    c->cb = cb;
    c->ctx = ctx;
    c->ip = addr;
    snprintf(c->helo, sizeof(c->helo), "%s", helo ? helo : "");
    sender = sender ? sender : "";
    bool valid;
    if (sender[0] == '\0') {
        c->out.helo = true;
        snprintf(c->sender, sizeof(c->sender), "postmaster@%s", c->helo);
        valid =
            helo != NULL && strlen(helo) <= DNS_NAME_MAX && identity_domain(c->helo, c->out.domain);
    } else {
        size_t n = strlen(sender);
        valid = n <= SPF_SENDER_MAX && identity_domain(sender, c->out.domain);
        n = n <= SPF_SENDER_MAX ? n : SPF_SENDER_MAX;
        memcpy(c->sender, sender, n);
        c->sender[n] = '\0';
    }
    int rc;
    if (valid) {
        snprintf(c->target, sizeof(c->target), "%s", c->out.domain);
        c->want = RECORD_TOP;
        rc = dns_txt(dns, c->target, on_record, c);
    } else {
        snprintf(c->out.why, sizeof(c->out.why), "%s names no domain to check",
                 c->out.helo ? "HELO" : "MAIL FROM");
        rc = dns_later(dns, on_later, c);
    }
    if (rc < 0) {
        free(c);
        return NULL;
    }
    c->outstanding = 1;
    return c;
}

void spf_check_cancel(struct spf_check **cp)
{
    struct spf_check *c = cp ? *cp : NULL;
    if (c == NULL)
        return;
    *cp = NULL;
    if (c->finishing)
        return; /* inside cb: finish frees it when cb returns */
    c->cancelled = true;
    if (c->outstanding == 0)
        check_free(c);
}
