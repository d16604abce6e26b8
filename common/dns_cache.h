/*
 * dns_cache.h — the TXT answers the resolver got, kept for their TTL.
 *
 * The MX asks the same few names for every message a sender sends: its
 * SPF record, its DMARC record, its DKIM key. Asking them again each time
 * costs a round trip per question and loads the DNS server, so an answer
 * is kept as long as its TTL says (at most DNS_CACHE_TTL_MAX), within a
 * count and a size, the least recently used going first. Only answers
 * with records are kept. Pure: the time is passed in.
 */
#ifndef KOTAK_DNS_CACHE_H
#define KOTAK_DNS_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define DNS_CACHE_ENTRIES_MAX 4096
#define DNS_CACHE_BYTES_MAX (4u << 20)
#define DNS_CACHE_TTL_MAX 3600 /* seconds: a record changed is seen within the hour */

struct dns_cache;

struct dns_cache *dns_cache_new(void);
void dns_cache_free(struct dns_cache **c);

/*
 * Keeps name's n records (text and length each) until now_ms + ttl_s
 * seconds (ttl_s capped at DNS_CACHE_TTL_MAX; 0 keeps nothing), in place
 * of what was kept for it. An answer larger than a tenth of the cache's
 * bytes is not kept.
 */
void dns_cache_put(struct dns_cache *c, const char *name, const char *const *records,
                   const size_t *lens, size_t n, uint64_t now_ms, uint32_t ttl_s);

/*
 * name's records while they last: returns n >= 1 and points *records_r
 * and *lens_r at the kept copies (valid until the next put or free), or
 * 0 when there is nothing, or nothing fresh (an expired entry goes).
 */
size_t dns_cache_get(struct dns_cache *c, const char *name, uint64_t now_ms,
                     const char *const **records_r, const size_t **lens_r);

/* Entries kept, and their bytes (for tests). */
size_t dns_cache_count(const struct dns_cache *c);
size_t dns_cache_bytes(const struct dns_cache *c);

#endif
