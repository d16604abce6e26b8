/*
 * mtasts.c — RFC 8461 (MTA-STS) for the queue runner; see mtasts.h.
 *
 * The parsers follow the ABNF of RFC 8461 3.1 and 3.2 closely, with the
 * leniency 3.2 asks for (unknown fields ignored, a repeated field's first
 * value kept) and one more: blank lines in the policy file are skipped.
 * Everything they read is bounded (a TXT record by the resolver, the
 * policy by MTASTS_POLICY_MAX and MTASTS_MX_MAX), and they never allocate.
 *
 * The cache is a hash table with a list in order of use: a look-up moves
 * its entry to the front, and room is made from the back, by count and by
 * octets, so a flood of domains with large policies cannot grow it.
 *
 * A look-up walks four steps on the loop: the TXT record of
 * _mta-sts.DOMAIN; when it names an id the cache does not hold, the
 * addresses of mta-sts.DOMAIN; the GET of /.well-known/mta-sts.txt over
 * verified TLS; the answer parsed and cached. A DNS question cannot be
 * withdrawn (common/dns.h), so a look-up cancelled while one is out is
 * only detached, and frees itself when the answer comes.
 */
#include "mtasts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "dns.h"
#include "http.h"
#include "log.h"
#include "tls.h"
#include "util.h"

const char *mtasts_mode_name(enum mtasts_mode mode)
{
    return mode == MTASTS_MODE_ENFORCE   ? "enforce"
           : mode == MTASTS_MODE_TESTING ? "testing"
                                         : "none";
}

/* --- characters ---------------------------------------------------------- */

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}

static bool is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* The same octets, the case of ASCII letters aside. */
static bool same_ci(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

static bool span_is(const char *p, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(p, word, len) == 0;
}

/*
 * The length of a field name at p (RFC 8461's sts-ext-name and
 * sts-policy-ext-name: a letter or digit, then up to 31 letters, digits,
 * '_', '-', '.'), or 0 when none starts there.
 */
static size_t field_name_len(const char *p, size_t len)
{
    if (len == 0 || !is_alnum((unsigned char)p[0]))
        return 0;
    size_t i = 1;
    while (i < len && (is_alnum((unsigned char)p[i]) || p[i] == '_' || p[i] == '-' || p[i] == '.'))
        i++;
    return i <= 32 ? i : 0;
}

/* --- the TXT record --------------------------------------------------------- */

#define STS_VERSION "v=STSv1"

/* Whether the record is one of ours at all: "v=STSv1" then ';', WSP or its end. */
static bool txt_is_sts(const char *txt, size_t len)
{
    size_t v = sizeof(STS_VERSION) - 1;
    return len >= v && memcmp(txt, STS_VERSION, v) == 0 &&
           (len == v || txt[v] == ';' || is_wsp((unsigned char)txt[v]));
}

int mtasts_txt_parse(const char *txt, size_t len, char id_r[MTASTS_ID_MAX + 1], const char **why_r)
{
    static const char *why_dummy;
    if (why_r == NULL)
        why_r = &why_dummy;
    if (!txt_is_sts(txt, len))
        return 0;
    bool have_id = false;
    size_t i = sizeof(STS_VERSION) - 1;
    for (;;) {
        /* sts-field-delim = *WSP ";" *WSP, then a field, or the end. */
        while (i < len && is_wsp((unsigned char)txt[i]))
            i++;
        if (i == len)
            break;
        if (txt[i] != ';') {
            *why_r = "fields are not separated by ';'";
            return -EINVAL;
        }
        i++;
        while (i < len && is_wsp((unsigned char)txt[i]))
            i++;
        if (i == len)
            break; /* a final delimiter */
        size_t name = field_name_len(txt + i, len - i);
        if (name == 0 || i + name >= len || txt[i + name] != '=') {
            *why_r = "a field is not name=value";
            return -EINVAL;
        }
        const char *key = txt + i;
        i += name + 1;
        size_t start = i;
        /* sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E) */
        while (i < len && (unsigned char)txt[i] >= 0x21 && (unsigned char)txt[i] <= 0x7e &&
               txt[i] != ';' && txt[i] != '=')
            i++;
        size_t vlen = i - start;
        if (vlen == 0) {
            *why_r = "a field has an empty value";
            return -EINVAL;
        }
        if (i < len && txt[i] != ';' && !is_wsp((unsigned char)txt[i])) {
            *why_r = "a value holds a character outside the grammar";
            return -EINVAL;
        }
        if (!span_is(key, name, "id"))
            continue; /* an extension: ignored */
        if (have_id) {
            *why_r = "the record has two ids";
            return -EINVAL;
        }
        if (vlen > MTASTS_ID_MAX) {
            *why_r = "the id is longer than 32 characters";
            return -EINVAL;
        }
        for (size_t k = 0; k < vlen; k++)
            if (!is_alnum((unsigned char)txt[start + k])) {
                *why_r = "the id holds a character other than a letter or a digit";
                return -EINVAL;
            }
        memcpy(id_r, txt + start, vlen);
        id_r[vlen] = '\0';
        have_id = true;
    }
    if (!have_id) {
        *why_r = "the record has no id";
        return -EINVAL;
    }
    return 1;
}

int mtasts_txt_pick(const char *const *records, const size_t *lens, size_t n,
                    char id_r[MTASTS_ID_MAX + 1], const char **why_r)
{
    static const char *why_dummy;
    if (why_r == NULL)
        why_r = &why_dummy;
    size_t found = 0, which = 0;
    for (size_t i = 0; i < n; i++)
        if (txt_is_sts(records[i], lens[i])) {
            found++;
            which = i;
        }
    if (found == 0) {
        *why_r = "no record begins with v=STSv1";
        return 0;
    }
    if (found > 1) {
        *why_r = "several records begin with v=STSv1";
        return 0;
    }
    return mtasts_txt_parse(records[which], lens[which], id_r, why_r);
}

/* --- the policy file ---------------------------------------------------------- */

/*
 * Whether p[0..len) is a host name (RFC 5321's Domain: labels of letters,
 * digits and inner hyphens, at most 63 octets each, 253 in all).
 */
static bool host_name_valid(const char *p, size_t len)
{
    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || p[i] == '.') {
            if (label == 0 || p[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        unsigned char c = (unsigned char)p[i];
        if (!(is_alnum(c) || (c == '-' && label > 0)) || ++label > 63)
            return false;
    }
    return true;
}

/* An mx value: ["*."] Domain, with one final dot forgiven. Sets *len to drop it. */
static bool mx_pattern_valid(const char *p, size_t *len)
{
    size_t n = *len;
    if (n > 1 && p[n - 1] == '.')
        n--;
    size_t skip = n > 2 && p[0] == '*' && p[1] == '.' ? 2 : 0;
    if (!host_name_valid(p + skip, n - skip))
        return false;
    *len = n;
    return true;
}

/* Which known fields a policy has given, for "the first counts". */
#define SEEN_VERSION 1u
#define SEEN_MODE 2u
#define SEEN_MAX_AGE 4u

/*
 * One "key: value" line, line[0..len) without its end and trailing white
 * space (len > 0). Returns 0 or -errno with *why_r.
 */
static int policy_line(const char *line, size_t len, struct mtasts_parsed *p, unsigned *seen,
                       const char **why_r)
{
    size_t name = field_name_len(line, len);
    if (name == 0 || name >= len || line[name] != ':') {
        *why_r = "a line is not key: value";
        return -EINVAL;
    }
    size_t i = name + 1;
    while (i < len && is_wsp((unsigned char)line[i]))
        i++;
    const char *v = line + i;
    size_t vlen = len - i;
    if (vlen == 0) {
        *why_r = "a field has an empty value";
        return -EINVAL;
    }
    /* sts-policy-ext-value: visible characters (UTF-8 among them) and inner spaces. */
    for (size_t k = 0; k < vlen; k++) {
        unsigned char c = (unsigned char)v[k];
        if ((c < 0x21 && c != ' ' && c != '\t') || c == 0x7f) {
            *why_r = "a value holds a control character";
            return -EINVAL;
        }
    }
    if (span_is(line, name, "version")) {
        if (!(*seen & SEEN_VERSION) && !span_is(v, vlen, "STSv1")) {
            *why_r = "the version is not STSv1";
            return -EINVAL;
        }
        *seen |= SEEN_VERSION;
    } else if (span_is(line, name, "mode")) {
        if (*seen & SEEN_MODE)
            return 0;
        if (span_is(v, vlen, "enforce"))
            p->mode = MTASTS_MODE_ENFORCE;
        else if (span_is(v, vlen, "testing"))
            p->mode = MTASTS_MODE_TESTING;
        else if (span_is(v, vlen, "none"))
            p->mode = MTASTS_MODE_NONE;
        else {
            *why_r = "the mode is none of enforce, testing, none";
            return -EINVAL;
        }
        *seen |= SEEN_MODE;
    } else if (span_is(line, name, "max_age")) {
        if (*seen & SEEN_MAX_AGE)
            return 0;
        uint64_t age = 0;
        for (size_t k = 0; k < vlen; k++) {
            if (!is_digit((unsigned char)v[k]) || vlen > 10) {
                *why_r = "max_age is not a number of 1 to 10 digits";
                return -EINVAL;
            }
            age = age * 10 + (uint64_t)(v[k] - '0');
        }
        if (age > MTASTS_MAX_AGE_MAX) {
            *why_r = "max_age is above 31557600";
            return -EINVAL;
        }
        p->max_age = (uint32_t)age;
        *seen |= SEEN_MAX_AGE;
    } else if (span_is(line, name, "mx")) {
        size_t plen = vlen;
        if (!mx_pattern_valid(v, &plen)) {
            *why_r = "an mx is neither a host name nor *. and a host name";
            return -EINVAL;
        }
        if (p->n_mx == MTASTS_MX_MAX) {
            *why_r = "the policy has more than 64 mx patterns";
            return -E2BIG;
        }
        p->mx[p->n_mx++] = (struct mtasts_span){v, plen};
    }
    return 0; /* an extension: ignored */
}

int mtasts_policy_parse(const char *text, size_t len, struct mtasts_parsed *p_r, const char **why_r)
{
    static const char *why_dummy;
    if (why_r == NULL)
        why_r = &why_dummy;
    *p_r = (struct mtasts_parsed){0};
    if (len > MTASTS_POLICY_MAX) {
        *why_r = "the policy is larger than 64 KiB";
        return -EMSGSIZE;
    }
    unsigned seen = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *line = text + pos;
        const char *lf = memchr(line, '\n', len - pos);
        size_t n = lf != NULL ? (size_t)(lf - line) : len - pos;
        pos += n + (lf != NULL);
        if (n > 0 && line[n - 1] == '\r')
            n--; /* CRLF */
        while (n > 0 && is_wsp((unsigned char)line[n - 1]))
            n--;
        size_t lead = 0;
        while (lead < n && is_wsp((unsigned char)line[lead]))
            lead++;
        if (lead == n)
            continue; /* a blank line */
        if (memchr(line, '\r', n) != NULL || memchr(line, '\0', n) != NULL) {
            *why_r = "a line holds a CR or a NUL";
            return -EINVAL;
        }
        int rc = policy_line(line, n, p_r, &seen, why_r);
        if (rc < 0)
            return rc;
    }
    const unsigned all = SEEN_VERSION | SEEN_MODE | SEEN_MAX_AGE;
    if ((seen & all) != all) {
        *why_r = !(seen & SEEN_VERSION) ? "the policy has no version"
                 : !(seen & SEEN_MODE)  ? "the policy has no mode"
                                        : "the policy has no max_age";
        return -EINVAL;
    }
    if (p_r->n_mx == 0 && p_r->mode != MTASTS_MODE_NONE) {
        *why_r = "the policy has no mx";
        return -EINVAL;
    }
    return 0;
}

bool mtasts_mx_match(const char *pattern, size_t len, const char *host)
{
    size_t hlen = strlen(host);
    if (hlen > 1 && host[hlen - 1] == '.')
        hlen--;
    if (len > 1 && pattern[len - 1] == '.')
        len--;
    if (len >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* One label, not empty, stands for the '*' (RFC 8461 3.4). */
        const char *dot = memchr(host, '.', hlen);
        if (dot == NULL || dot == host)
            return false;
        size_t rest = hlen - (size_t)(dot - host);
        return rest == len - 1 && same_ci(dot, pattern + 1, rest);
    }
    return hlen == len && same_ci(host, pattern, len);
}

/* --- a policy kept ------------------------------------------------------------- */

struct mtasts_policy *mtasts_policy_new(const struct mtasts_parsed *parsed, const char *id)
{
    struct mtasts_policy *p = xcalloc(1, sizeof(*p));
    p->mode = parsed->mode;
    p->max_age = parsed->max_age;
    snprintf(p->id, sizeof(p->id), "%s", id);
    size_t size = 0;
    for (size_t i = 0; i < parsed->n_mx; i++)
        size += parsed->mx[i].len + 1;
    p->mx = xmalloc(size ? size : 1);
    p->mx_size = size;
    char *w = p->mx;
    for (size_t i = 0; i < parsed->n_mx; i++) {
        for (size_t k = 0; k < parsed->mx[i].len; k++)
            *w++ = lower(parsed->mx[i].p[k]);
        *w++ = '\0';
    }
    p->n_mx = parsed->n_mx;
    return p;
}

struct mtasts_policy *mtasts_policy_dup(const struct mtasts_policy *p)
{
    struct mtasts_policy *d = xmalloc(sizeof(*d));
    *d = *p;
    d->mx = xmalloc(p->mx_size ? p->mx_size : 1);
    memcpy(d->mx, p->mx, p->mx_size);
    return d;
}

void mtasts_policy_free(struct mtasts_policy **p)
{
    if (*p == NULL)
        return;
    free((*p)->mx);
    free(*p);
    *p = NULL;
}

bool mtasts_policy_allows(const struct mtasts_policy *p, const char *host)
{
    const char *pat = p->mx;
    for (size_t i = 0; i < p->n_mx; i++) {
        size_t n = strlen(pat);
        if (mtasts_mx_match(pat, n, host))
            return true;
        pat += n + 1;
    }
    return false;
}

char *mtasts_policy_mx_list(const struct mtasts_policy *p, char *dst, size_t size)
{
    size_t used = 0;
    const char *pat = p->mx;
    dst[0] = '\0';
    for (size_t i = 0; i < p->n_mx && used < size; i++) {
        int w = snprintf(dst + used, size - used, "%s%s", i ? "," : "", pat);
        if (w < 0)
            break;
        used += (size_t)w;
        pat += strlen(pat) + 1;
    }
    return dst;
}

/* --- the cache ----------------------------------------------------------------- */

struct cache_entry {
    char domain[DNS_NAME_MAX + 1];
    int64_t expires;
    struct mtasts_policy *policy;
    size_t bytes;
    struct cache_entry *hnext;
    struct cache_entry *newer, *older;
};

struct mtasts_cache {
    size_t max_entries, max_bytes;
    size_t n, bytes;
    size_t n_buckets;
    struct cache_entry **buckets;
    struct cache_entry *newest, *oldest;
};

/* domain in lower case without its final dot into key; false when it is no name. */
static bool cache_key(const char *domain, char key[DNS_NAME_MAX + 1])
{
    size_t n = strnlen(domain, DNS_NAME_MAX + 2);
    if (n > 0 && domain[n - 1] == '.')
        n--;
    if (n == 0 || n > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        key[i] = lower(domain[i]);
    key[n] = '\0';
    return true;
}

static size_t cache_bucket(const struct mtasts_cache *c, const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (size_t)(h % c->n_buckets);
}

struct mtasts_cache *mtasts_cache_new(size_t max_entries, size_t max_bytes)
{
    struct mtasts_cache *c = xcalloc(1, sizeof(*c));
    c->max_entries = max_entries ? max_entries : 1;
    c->max_bytes = max_bytes;
    c->n_buckets = c->max_entries < 16 ? 16 : c->max_entries;
    c->buckets = xcalloc(c->n_buckets, sizeof(*c->buckets));
    return c;
}

static void lru_unlink(struct mtasts_cache *c, struct cache_entry *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push_newest(struct mtasts_cache *c, struct cache_entry *e)
{
    e->older = c->newest;
    e->newer = NULL;
    if (c->newest != NULL)
        c->newest->newer = e;
    c->newest = e;
    if (c->oldest == NULL)
        c->oldest = e;
}

static void cache_remove(struct mtasts_cache *c, struct cache_entry *e)
{
    struct cache_entry **pp = &c->buckets[cache_bucket(c, e->domain)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(c, e);
    c->n--;
    c->bytes -= e->bytes;
    mtasts_policy_free(&e->policy);
    free(e);
}

static struct cache_entry *cache_find(struct mtasts_cache *c, const char *key)
{
    for (struct cache_entry *e = c->buckets[cache_bucket(c, key)]; e != NULL; e = e->hnext)
        if (strcmp(e->domain, key) == 0)
            return e;
    return NULL;
}

void mtasts_cache_free(struct mtasts_cache **cp)
{
    struct mtasts_cache *c = *cp;
    if (c == NULL)
        return;
    while (c->oldest != NULL)
        cache_remove(c, c->oldest);
    free(c->buckets);
    free(c);
    *cp = NULL;
}

const struct mtasts_policy *mtasts_cache_get(struct mtasts_cache *c, const char *domain,
                                             int64_t now)
{
    char key[DNS_NAME_MAX + 1];
    if (!cache_key(domain, key))
        return NULL;
    struct cache_entry *e = cache_find(c, key);
    if (e == NULL)
        return NULL;
    if (now >= e->expires) {
        cache_remove(c, e);
        return NULL;
    }
    lru_unlink(c, e);
    lru_push_newest(c, e);
    return e->policy;
}

void mtasts_cache_put(struct mtasts_cache *c, const char *domain, const struct mtasts_policy *p,
                      int64_t now)
{
    char key[DNS_NAME_MAX + 1];
    if (!cache_key(domain, key))
        return;
    struct cache_entry *old = cache_find(c, key);
    if (old != NULL)
        cache_remove(c, old);
    size_t bytes = sizeof(struct cache_entry) + sizeof(struct mtasts_policy) + p->mx_size;
    if (bytes > c->max_bytes)
        return;
    while (c->n > 0 && (c->n >= c->max_entries || c->bytes + bytes > c->max_bytes))
        cache_remove(c, c->oldest);
    struct cache_entry *e = xcalloc(1, sizeof(*e));
    memcpy(e->domain, key, strlen(key) + 1);
    e->expires = now + (int64_t)p->max_age;
    e->policy = mtasts_policy_dup(p);
    e->bytes = bytes;
    size_t b = cache_bucket(c, key);
    e->hnext = c->buckets[b];
    c->buckets[b] = e;
    lru_push_newest(c, e);
    c->n++;
    c->bytes += bytes;
}

size_t mtasts_cache_count(const struct mtasts_cache *c)
{
    return c->n;
}

/* --- the look-up on the loop -------------------------------------------------------- */

#define FETCH_TRIES 3 /* addresses of mta-sts.DOMAIN tried when a connection fails */

struct mtasts {
    uv_loop_t *loop;
    struct dns *dns;
    struct tls_client *tls;
    uint16_t port;
    struct mtasts_cache *cache;
    struct mtasts_lookup *lookups; /* attached ones */
    size_t n_lookups;
};

struct mtasts_lookup {
    struct mtasts *m; /* NULL: detached, waiting for its DNS answer only to be freed */
    void (*cb)(void *ctx, const struct mtasts_policy *policy);
    void *ctx;
    char domain[DNS_NAME_MAX + 1];
    char id[MTASTS_ID_MAX + 1];
    bool dns_out;
    struct http_call *call;
    struct dns_addr addrs[2 * DNS_ADDRS_MAX];
    size_t n_addrs, next_addr;
    struct mtasts_lookup *prev, *next;
};

struct mtasts *mtasts_new(struct uv_loop_s *loop, struct dns *dns, struct tls_client *tls,
                          uint16_t port)
{
    struct mtasts *m = xcalloc(1, sizeof(*m));
    m->loop = loop;
    m->dns = dns;
    m->tls = tls;
    m->port = port;
    m->cache = mtasts_cache_new(MTASTS_CACHE_ENTRIES, MTASTS_CACHE_BYTES);
    return m;
}

static void lookup_unlink(struct mtasts_lookup *l)
{
    struct mtasts *m = l->m;
    if (m == NULL)
        return;
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        m->lookups = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
    l->m = NULL;
    m->n_lookups--;
}

/* Ends a look-up that is still attached: off the list, no call under way. */
static void lookup_drop(struct mtasts_lookup *l)
{
    http_call_cancel(&l->call);
    lookup_unlink(l);
    l->cb = NULL;
    if (!l->dns_out)
        free(l);
}

void mtasts_lookup_cancel(struct mtasts_lookup **lp)
{
    if (*lp == NULL)
        return;
    lookup_drop(*lp);
    *lp = NULL;
}

void mtasts_free(struct mtasts **mp)
{
    struct mtasts *m = *mp;
    if (m == NULL)
        return;
    while (m->lookups != NULL)
        lookup_drop(m->lookups);
    mtasts_cache_free(&m->cache);
    free(m);
    *mp = NULL;
}

size_t mtasts_busy(const struct mtasts *m)
{
    return m->n_lookups;
}

/* Hands policy (NULL: none) to the caller and frees the look-up. */
static void lookup_finish(struct mtasts_lookup *l, const struct mtasts_policy *policy)
{
    void (*cb)(void *, const struct mtasts_policy *) = l->cb;
    void *ctx = l->ctx;
    lookup_unlink(l);
    free(l);
    cb(ctx, policy);
}

/*
 * A look-up that found no new policy: the cached one while it lasts
 * (RFC 8461 5.1), else none, with why in the log when it is worth one.
 */
static void lookup_fallback(struct mtasts_lookup *l, const char *result, const char *why)
{
    const struct mtasts_policy *cached =
        mtasts_cache_get(l->m->cache, l->domain, (int64_t)time(NULL));
    char v[300];
    if (why != NULL)
        log_info("smtp event=mta-sts-policy domain=%s result=%s reason=%s use=%s%s%s", l->domain,
                 result, log_value(v, sizeof(v), why, strlen(why)), cached ? "cached" : "none",
                 cached ? " mode=" : "", cached ? mtasts_mode_name(cached->mode) : "");
    lookup_finish(l, cached);
}

/* Whether a Content-Type value names text/plain, whatever its parameters. */
static bool is_text_plain(const char *ct)
{
    static const char want[] = "text/plain";
    size_t n = sizeof(want) - 1;
    if (strncasecmp(ct, want, n) != 0)
        return false;
    const char *rest = ct + n;
    while (is_wsp((unsigned char)*rest))
        rest++;
    return *rest == '\0' || *rest == ';';
}

static void fetch_next(struct mtasts_lookup *l);

static void fetch_answer(void *ctx, int rc, const struct http_response *resp)
{
    struct mtasts_lookup *l = ctx;
    l->call = NULL; /* http frees it after this returns */
    char why[256];
    if (rc == -ECONNABORTED && l->next_addr < l->n_addrs && l->next_addr < FETCH_TRIES) {
        fetch_next(l);
        return;
    }
    if (rc < 0) {
        snprintf(why, sizeof(why), "GET /.well-known/mta-sts.txt from mta-sts.DOMAIN: %.180s",
                 resp != NULL && resp->error[0] ? resp->error : kotak_strerror(rc));
        lookup_fallback(l, "fetch-failed", why);
        return;
    }
    /* RFC 8461 3.3: 200 only (no redirect is followed), as text/plain. */
    if (resp->status != 200) {
        snprintf(why, sizeof(why), "the policy server answered %d", resp->status);
        lookup_fallback(l, "fetch-failed", why);
        return;
    }
    if (!is_text_plain(resp->content_type)) {
        char v[96];
        snprintf(why, sizeof(why), "the policy came as %s, not text/plain",
                 log_value(v, sizeof(v), resp->content_type, strlen(resp->content_type)));
        lookup_fallback(l, "fetch-failed", why);
        return;
    }
    if (resp->ended_by_close) {
        /* Only the connection's end ended it: one cut short in the path
         * (max_age: 31557600 made max_age: 3) would look whole. */
        snprintf(why, sizeof(why), "the policy came without a length or chunks");
        lookup_fallback(l, "fetch-failed", why);
        return;
    }
    struct mtasts_parsed parsed;
    const char *perr = NULL;
    if (mtasts_policy_parse(resp->body, resp->body_len, &parsed, &perr) < 0) {
        lookup_fallback(l, "invalid", perr);
        return;
    }
    struct mtasts_policy *p = mtasts_policy_new(&parsed, l->id);
    mtasts_cache_put(l->m->cache, l->domain, p, (int64_t)time(NULL));
    char mx[512], v[600];
    mtasts_policy_mx_list(p, mx, sizeof(mx));
    log_info("smtp event=mta-sts-policy domain=%s result=fetched id=%s mode=%s max_age=%u mx=%s",
             l->domain, p->id, mtasts_mode_name(p->mode), (unsigned)p->max_age,
             log_value(v, sizeof(v), mx, strlen(mx)));
    lookup_finish(l, p);
    mtasts_policy_free(&p);
}

/* GETs the policy from the next address of mta-sts.DOMAIN. */
static void fetch_next(struct mtasts_lookup *l)
{
    struct mtasts *m = l->m;
    char host[DNS_NAME_MAX + 16];
    snprintf(host, sizeof(host), "mta-sts.%s", l->domain);
    struct sockaddr_storage ss;
    dns_addr_sockaddr(&l->addrs[l->next_addr++], m->port, &ss);
    struct http_request req = {
        .method = "GET",
        .host = host,
        .addr = (const struct sockaddr *)&ss,
        .path = "/.well-known/mta-sts.txt",
        .tls = m->tls,
        .response_max = MTASTS_POLICY_MAX,
        .timeout_ms = MTASTS_FETCH_TIMEOUT_MS,
    };
    l->call = http_call_start(m->loop, &req, fetch_answer, l);
}

static void addrs_answer(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n)
{
    struct mtasts_lookup *l = ctx;
    l->dns_out = false;
    if (l->m == NULL) {
        free(l);
        return;
    }
    if (status != DNS_OK) {
        char why[128];
        snprintf(why, sizeof(why), "mta-sts.%.100s has no address: %s", l->domain,
                 dns_status_name(status));
        lookup_fallback(l, "fetch-failed", why);
        return;
    }
    if (n > sizeof(l->addrs) / sizeof(l->addrs[0]))
        n = sizeof(l->addrs) / sizeof(l->addrs[0]);
    memcpy(l->addrs, addrs, n * sizeof(*addrs));
    l->n_addrs = n;
    l->next_addr = 0;
    fetch_next(l);
}

static void txt_answer(void *ctx, enum dns_status status, const char *const *records,
                       const size_t *lens, size_t n)
{
    struct mtasts_lookup *l = ctx;
    l->dns_out = false;
    if (l->m == NULL) {
        free(l);
        return;
    }
    struct mtasts *m = l->m;
    if (status != DNS_OK) {
        /* No record, or none to be had now: a cached policy still holds
         * until it expires (withdrawing one takes a policy of mode none,
         * RFC 8461 8.3). */
        lookup_fallback(l, "no-record",
                        status == DNS_TEMPFAIL ? "the TXT look-up failed for now" : NULL);
        return;
    }
    const char *why = NULL;
    int rc = mtasts_txt_pick(records, lens, n, l->id, &why);
    if (rc <= 0) {
        lookup_fallback(l, rc < 0 ? "invalid-record" : "no-record", rc < 0 || n > 1 ? why : NULL);
        return;
    }
    const struct mtasts_policy *cached = mtasts_cache_get(m->cache, l->domain, (int64_t)time(NULL));
    if (cached != NULL && strcmp(cached->id, l->id) == 0) {
        log_debug("smtp event=mta-sts-policy domain=%s result=cached id=%s mode=%s", l->domain,
                  cached->id, mtasts_mode_name(cached->mode));
        lookup_finish(l, cached);
        return;
    }
    char host[DNS_NAME_MAX + 16];
    snprintf(host, sizeof(host), "mta-sts.%s", l->domain);
    if (m->tls == NULL) {
        lookup_fallback(l, "fetch-failed", "no trust anchors to verify the policy server with");
        return;
    }
    l->dns_out = true;
    if (dns_addrs(m->dns, host, DNS_V4 | DNS_V6, addrs_answer, l) < 0) {
        l->dns_out = false;
        lookup_fallback(l, "fetch-failed", "mta-sts.DOMAIN is no DNS name");
    }
}

int mtasts_lookup(struct mtasts *m, const char *domain,
                  void (*cb)(void *ctx, const struct mtasts_policy *policy), void *ctx,
                  struct mtasts_lookup **l_r)
{
    char key[DNS_NAME_MAX + 1], name[DNS_NAME_MAX + 16];
    if (!cache_key(domain, key))
        return -EINVAL;
    snprintf(name, sizeof(name), "_mta-sts.%s", key);
    struct mtasts_lookup *l = xcalloc(1, sizeof(*l));
    l->cb = cb;
    l->ctx = ctx;
    memcpy(l->domain, key, sizeof(key));
    l->dns_out = true;
    int rc = dns_txt(m->dns, name, txt_answer, l);
    if (rc < 0) {
        free(l);
        return rc;
    }
    l->m = m;
    l->next = m->lookups;
    if (m->lookups != NULL)
        m->lookups->prev = l;
    m->lookups = l;
    m->n_lookups++;
    *l_r = l;
    return 0;
}
