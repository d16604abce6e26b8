/*
 * dns_cache.h — the TXT answers the resolver got, kept for their TTL.
 *
 * The MX asks the same few names for every message a sender sends: its
 * SPF record, its DMARC record, its DKIM key. Asking them again each time
 * costs a round trip per question and loads the DNS server, so an answer
 * is kept as long as its TTL says (at most DNS_CACHE_TTL_MAX), within a
 * count and a size, the least recently used going first; so is an answer
 * that the name has none, as long as its SOA says (RFC 2308). Pure: the
 * time is passed in.
 */
#ifndef KOTAK_DNS_CACHE_H
#define KOTAK_DNS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns.h"

#define DNS_CACHE_ENTRIES_MAX 4096
#define DNS_CACHE_BYTES_MAX (4u << 20)
/* One answer's, at most: a domain's TXT records take a few KiB; answers of
 * a tenth of the cache let a few messages' made-up names push out all. */
#define DNS_CACHE_ENTRY_BYTES_MAX (16u << 10)
#define DNS_CACHE_TTL_MAX 3600 /* seconds: a record changed is seen within the hour */
#define DNS_CACHE_NONE_TTL_MAX 900 /* seconds: a record published is seen within 15 minutes */
#define DNS_CACHE_NONE_MAX (DNS_CACHE_ENTRIES_MAX / 4) /* names without records, at most */

struct dns_cache;

struct dns_cache *dns_cache_new(void);
void dns_cache_free(struct dns_cache **c);

/*
 * Keeps name's n records (text and length each) until now_ms + ttl_s
 * seconds (ttl_s capped at DNS_CACHE_TTL_MAX; 0 keeps nothing), in place
 * of what was kept for it. An answer larger than DNS_CACHE_ENTRY_BYTES_MAX
 * is not kept.
 */
void dns_cache_put(struct dns_cache *c, const char *name, const char *const *records,
                   const size_t *lens, size_t n, uint64_t now_ms, uint32_t ttl_s);

/*
 * Keeps that name has no record: status DNS_NXDOMAIN or DNS_NODATA, for
 * ttl_s (RFC 2308 5: the SOA's TTL or MINIMUM, the smaller; capped at
 * DNS_CACHE_NONE_TTL_MAX), in place of what was kept for it; ttl_s 0, or
 * another status, changes nothing. Most senders' domains have no DMARC
 * record, and a sender's every message asked again. At most
 * DNS_CACHE_NONE_MAX such names are kept: past that, the least recently
 * used of them goes.
 */
void dns_cache_put_none(struct dns_cache *c, const char *name, enum dns_status status,
                        uint64_t now_ms, uint32_t ttl_s);

/* What is kept for a name. */
struct dns_cached {
    enum dns_status status; /* DNS_OK, DNS_NXDOMAIN or DNS_NODATA */
    size_t n;               /* DNS_OK: n >= 1 records, valid until the next put or free */
    const char *const *records;
    const size_t *lens;
};

/* name's entry while it lasts: true, or false when nothing fresh is kept
 * (an expired entry goes). */
bool dns_cache_get(struct dns_cache *c, const char *name, uint64_t now_ms, struct dns_cached *r);

/* Entries kept, and their bytes (for tests). */
size_t dns_cache_count(const struct dns_cache *c);
size_t dns_cache_bytes(const struct dns_cache *c);

#endif
