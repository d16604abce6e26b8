/*
 * mtasts.h — SMTP MTA Strict Transport Security (RFC 8461) for the queue
 * runner: whether a domain asks that its mail go only to the MX hosts it
 * lists, over TLS with a certificate that verifies.
 *
 * Three layers, as everywhere in kotak:
 *  - pure parsers: the TXT record of _mta-sts.DOMAIN (RFC 8461 3.1), the
 *    policy file (3.2) and the MX patterns' matching (3.4), with every
 *    length bounded and no allocation;
 *  - a cache of policies (LRU, bounded in count and in octets), pure but
 *    for malloc, with the clock passed in;
 *  - the look-up on the loop: the TXT record through common/dns.h, the
 *    policy over HTTPS (common/http.h) from mta-sts.DOMAIN, verified
 *    against the system's trust anchors, and the cache between them.
 *
 * The runner (smtpd/outbound.c) asks mtasts_lookup for each destination
 * domain it resolves (never for the smarthost) and applies what comes
 * back: enforce -> only the listed MX hosts, over verified TLS, else
 * defer; testing -> deliver as usual and log what enforce would refuse;
 * none, or no policy -> as without MTA-STS.
 */
#ifndef KOTAK_MTASTS_H
#define KOTAK_MTASTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MTASTS_ID_MAX 32                 /* sts-id: 1*32(ALPHA / DIGIT) */
#define MTASTS_POLICY_MAX (64 * 1024)    /* the policy file, in octets */
#define MTASTS_MX_MAX 64                 /* mx patterns in one policy */
#define MTASTS_MAX_AGE_MAX 31557600u     /* RFC 8461 3.2: a year, in seconds */
#define MTASTS_CACHE_ENTRIES 10000       /* domains whose policy is kept */
#define MTASTS_CACHE_BYTES (16u << 20)   /* ... and the octets they may take */
#define MTASTS_FETCH_TIMEOUT_MS (20000u) /* the whole HTTPS fetch */

enum mtasts_mode {
    MTASTS_MODE_NONE,
    MTASTS_MODE_TESTING,
    MTASTS_MODE_ENFORCE,
};

/* "none", "testing", "enforce". */
const char *mtasts_mode_name(enum mtasts_mode mode);

/* --- the TXT record (RFC 8461 3.1) ------------------------------------------ */

/*
 * Reads one TXT record of _mta-sts.DOMAIN, txt[0..len). Returns 1 with the
 * id (NUL-terminated) in id_r for a valid STS record; 0 when the record is
 * not an STS record at all (it does not begin with "v=STSv1" followed by
 * ';', white space or its end); -EINVAL for an STS record that breaks the
 * grammar (no id, an id of more than 32 characters or of others than
 * letters and digits, two ids, a field without '=', a control character,
 * a NUL), with *why_r a static sentence. Names and "STSv1" are
 * case-sensitive (RFC 7405's %s).
 */
int mtasts_txt_parse(const char *txt, size_t len, char id_r[MTASTS_ID_MAX + 1], const char **why_r);

/*
 * The whole TXT answer, records[0..n) with their lengths (as dns_txt gives
 * them): records that are not STS records are dropped, and unless exactly
 * one is left the domain has no policy (RFC 8461 3.1). Returns 1 with the
 * id in id_r, 0 for none (*why_r says why when there were several), or
 * -EINVAL when the one STS record is malformed (*why_r).
 */
int mtasts_txt_pick(const char *const *records, const size_t *lens, size_t n,
                    char id_r[MTASTS_ID_MAX + 1], const char **why_r);

/* --- the policy file (RFC 8461 3.2) ----------------------------------------- */

/* A piece of the text parsed. */
struct mtasts_span {
    const char *p;
    size_t len;
};

/* A policy as parsed: the mx patterns borrow from the text. */
struct mtasts_parsed {
    enum mtasts_mode mode;
    uint32_t max_age;
    size_t n_mx;
    struct mtasts_span mx[MTASTS_MX_MAX]; /* as written: "*." and a domain, or a domain */
};

/*
 * Parses a policy file, text[0..len), lines ended by LF or CRLF (the last
 * may lack its end; blank lines are skipped). Each line is "key:" then
 * optional white space and a value; trailing white space is dropped.
 * "version" must be "STSv1"; "mode" one of enforce, testing, none;
 * "max_age" 1 to 10 digits, at most MTASTS_MAX_AGE_MAX; "mx" a host name,
 * or "*." and a host name; at least one mx unless the mode is none. A
 * repeated field other than mx: the first counts (RFC 8461 3.2). Other
 * keys of the extension grammar are ignored. Returns 0 with *p_r filled,
 * or -EMSGSIZE (over MTASTS_POLICY_MAX), -E2BIG (over MTASTS_MX_MAX mx
 * lines) or -EINVAL, each with *why_r a static sentence.
 */
int mtasts_policy_parse(const char *text, size_t len, struct mtasts_parsed *p_r,
                        const char **why_r);

/*
 * Whether host (an MX host name, with or without a final dot) matches
 * pattern[0..len): the same name, without regard to case; or, for
 * "*.rest", a name made of exactly one more label in front of rest (RFC
 * 8461 3.4: "*.example.com" matches "mail.example.com", not "example.com"
 * nor "a.b.example.com").
 */
bool mtasts_mx_match(const char *pattern, size_t len, const char *host);

/* --- a policy kept ------------------------------------------------------------ */

/* A policy with its own copy of everything. */
struct mtasts_policy {
    enum mtasts_mode mode;
    uint32_t max_age;
    char id[MTASTS_ID_MAX + 1];
    size_t n_mx;
    char *mx;       /* n_mx NUL-terminated patterns, lower case, one after the other */
    size_t mx_size; /* octets at mx */
};

/* A copy of parsed under id. Never NULL (out of memory aborts). */
struct mtasts_policy *mtasts_policy_new(const struct mtasts_parsed *parsed, const char *id);

/* A copy of p. */
struct mtasts_policy *mtasts_policy_dup(const struct mtasts_policy *p);

/* Frees *p and sets it to NULL; NULL is fine. */
void mtasts_policy_free(struct mtasts_policy **p);

/* Whether one of p's mx patterns matches host. */
bool mtasts_policy_allows(const struct mtasts_policy *p, const char *host);

/*
 * The patterns of p joined by commas into dst (cut to size, for a log or
 * a reply text). Returns dst.
 */
char *mtasts_policy_mx_list(const struct mtasts_policy *p, char *dst, size_t size);

/* --- the cache ------------------------------------------------------------------ */

struct mtasts_cache;

/* An empty cache of at most max_entries domains and max_bytes octets. */
struct mtasts_cache *mtasts_cache_new(size_t max_entries, size_t max_bytes);

/* Frees *c and every policy in it; sets *c to NULL. NULL is fine. */
void mtasts_cache_free(struct mtasts_cache **c);

/*
 * The policy kept for domain (any case, a final dot ignored) while it has
 * not expired at now (seconds), else NULL. A hit becomes the most recently
 * used. The policy stays valid until the next put or free.
 */
const struct mtasts_policy *mtasts_cache_get(struct mtasts_cache *c, const char *domain,
                                             int64_t now);

/*
 * Keeps a copy of p for domain until now + p->max_age, replacing what was
 * kept; the least recently used entries go to make room. A policy larger
 * than the whole cache is not kept.
 */
void mtasts_cache_put(struct mtasts_cache *c, const char *domain, const struct mtasts_policy *p,
                      int64_t now);

/* Entries kept. */
size_t mtasts_cache_count(const struct mtasts_cache *c);

/* --- the look-up on the loop -------------------------------------------------- */

struct dns;
struct uv_loop_s;
struct tls_client;
struct mtasts;
struct mtasts_lookup;

/*
 * A policy finder on loop, asking DNS through dns and fetching over HTTPS
 * on port (443; another only for tests) with tls, a verifying client on
 * the system's trust anchors (both the caller's, outliving the finder).
 * tls NULL (no trust anchors could be read): every fetch fails, so no
 * policy is ever found, which RFC 8461 5.1 says to treat as none. Never
 * NULL.
 */
struct mtasts *mtasts_new(struct uv_loop_s *loop, struct dns *dns, struct tls_client *tls,
                          uint16_t port);

/*
 * Cancels every look-up under way (their callbacks never run) and frees
 * *m; sets it to NULL. NULL is fine. A look-up with a DNS question out
 * lingers, detached, until the resolver answers it (dns.h has no cancel
 * of one question): free the resolver after, as before, either way.
 */
void mtasts_free(struct mtasts **m);

/*
 * Finds domain's policy: its TXT record, then the policy cached under the
 * same id while unexpired, else a fresh fetch (a failed fetch falls back on
 * the cached policy while it lasts, else on none: RFC 8461 5.1). cb runs
 * once, on the loop, never inside this call: policy is NULL when the
 * domain has none to apply, else valid only during cb. Each step is
 * logged (event=mta-sts-policy). Returns 0 with *l_r set (the handle for
 * mtasts_lookup_cancel, forgotten once cb has run), or -EINVAL for a
 * domain that is not a DNS name, with no callback.
 */
int mtasts_lookup(struct mtasts *m, const char *domain,
                  void (*cb)(void *ctx, const struct mtasts_policy *policy), void *ctx,
                  struct mtasts_lookup **l_r);

/* The callback of *l will not run; sets *l to NULL. NULL is fine. */
void mtasts_lookup_cancel(struct mtasts_lookup **l);

/* Look-ups under way. */
size_t mtasts_busy(const struct mtasts *m);

#endif
