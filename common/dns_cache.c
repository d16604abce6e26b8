/*
 * dns_cache.c — a bounded cache of TXT answers, and of names without; see
 * dns_cache.h.
 *
 * A chained hash table of names (lower-cased) beside a list in order of
 * use: a get moves its entry to the front, and a put that goes over the
 * count or the bytes drops entries from the back.
 */
#include "dns_cache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "util.h"

#define BUCKETS 1024 /* a power of two */

struct entry {
    struct entry *chain;      /* the next in its bucket */
    struct entry *prev, *next; /* the use list, most recent first */
    char name[DNS_NAME_MAX + 1];
    uint64_t expires_ms;
    enum dns_status status; /* DNS_OK: n >= 1 records; DNS_NXDOMAIN, DNS_NODATA: none */
    size_t n, bytes;
    char **records;
    size_t *lens;
};

struct dns_cache {
    struct entry *buckets[BUCKETS];
    struct entry *first, *last;
    size_t count, bytes;
};

static unsigned bucket_of(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h & (BUCKETS - 1);
}

static void lower_copy(char *dst, const char *src)
{
    size_t i = 0;
    for (; src[i] && i < DNS_NAME_MAX; i++)
        dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] - 'A' + 'a') : src[i];
    if (i > 0 && dst[i - 1] == '.')
        i--; /* "example.org." is "example.org" */
    dst[i] = '\0';
}

struct dns_cache *dns_cache_new(void)
{
    return xcalloc(1, sizeof(struct dns_cache));
}

static void unlink_use(struct dns_cache *c, struct entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->first = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        c->last = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(struct dns_cache *c, struct entry *e)
{
    e->next = c->first;
    if (c->first != NULL)
        c->first->prev = e;
    c->first = e;
    if (c->last == NULL)
        c->last = e;
}

static void entry_drop(struct dns_cache *c, struct entry *e)
{
    struct entry **pp = &c->buckets[bucket_of(e->name)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    unlink_use(c, e);
    c->count--;
    c->bytes -= e->bytes;
    for (size_t i = 0; i < e->n; i++)
        free(e->records[i]);
    free(e->records);
    free(e->lens);
    free(e);
}

static struct entry *find(struct dns_cache *c, const char *key)
{
    for (struct entry *e = c->buckets[bucket_of(key)]; e != NULL; e = e->chain)
        if (strcmp(e->name, key) == 0)
            return e;
    return NULL;
}

void dns_cache_free(struct dns_cache **cp)
{
    struct dns_cache *c = *cp;
    if (c == NULL)
        return;
    while (c->first != NULL)
        entry_drop(c, c->first);
    free(c);
    *cp = NULL;
}

/* A new entry for name, with room counted for n records, in place of what
 * was kept for it, at the front of the use list;
 * NULL when it is not to be kept. */
static struct entry *entry_add(struct dns_cache *c, const char *name, size_t n, const size_t *lens,
                               uint64_t now_ms, uint32_t ttl_s, uint32_t ttl_max)
{
    char key[DNS_NAME_MAX + 1];
    lower_copy(key, name);
    struct entry *old = find(c, key);
    if (old != NULL)
        entry_drop(c, old);
    size_t bytes = sizeof(struct entry) + strlen(key);
    for (size_t i = 0; i < n; i++)
        bytes += lens[i] + 1 + sizeof(char *) + sizeof(size_t);
    if (ttl_s == 0 || bytes > DNS_CACHE_BYTES_MAX / 10)
        return NULL;
    if (ttl_s > ttl_max)
        ttl_s = ttl_max;
    while (c->last != NULL &&
           (c->count >= DNS_CACHE_ENTRIES_MAX || c->bytes + bytes > DNS_CACHE_BYTES_MAX))
        entry_drop(c, c->last);
    struct entry *e = xcalloc(1, sizeof(*e));
    memcpy(e->name, key, strlen(key) + 1);
    e->expires_ms = now_ms + (uint64_t)ttl_s * 1000;
    e->bytes = bytes;
    unsigned b = bucket_of(key);
    e->chain = c->buckets[b];
    c->buckets[b] = e;
    push_front(c, e);
    c->count++;
    c->bytes += bytes;
    return e;
}

void dns_cache_put(struct dns_cache *c, const char *name, const char *const *records,
                   const size_t *lens, size_t n, uint64_t now_ms, uint32_t ttl_s)
{
    struct entry *e = entry_add(c, name, n, lens, now_ms, n > 0 ? ttl_s : 0, DNS_CACHE_TTL_MAX);
    if (e == NULL)
        return;
    e->status = DNS_OK;
    e->n = n;
    e->records = xcalloc(n, sizeof(*e->records));
    e->lens = xcalloc(n, sizeof(*e->lens));
    for (size_t i = 0; i < n; i++) {
        e->records[i] = xmalloc(lens[i] + 1);
        memcpy(e->records[i], records[i], lens[i]);
        e->records[i][lens[i]] = '\0';
        e->lens[i] = lens[i];
    }
}

void dns_cache_put_none(struct dns_cache *c, const char *name, enum dns_status status,
                        uint64_t now_ms, uint32_t ttl_s)
{
    bool none = status == DNS_NXDOMAIN || status == DNS_NODATA;
    struct entry *e = entry_add(c, name, 0, NULL, now_ms, none ? ttl_s : 0, DNS_CACHE_NONE_TTL_MAX);
    if (e != NULL)
        e->status = status;
}

bool dns_cache_get(struct dns_cache *c, const char *name, uint64_t now_ms, struct dns_cached *r)
{
    char key[DNS_NAME_MAX + 1];
    lower_copy(key, name);
    struct entry *e = find(c, key);
    if (e == NULL)
        return false;
    if (now_ms >= e->expires_ms) {
        entry_drop(c, e);
        return false;
    }
    unlink_use(c, e);
    push_front(c, e);
    *r = (struct dns_cached){
        .status = e->status,
        .n = e->n,
        .records = (const char *const *)e->records,
        .lens = e->lens,
    };
    return true;
}

size_t dns_cache_count(const struct dns_cache *c)
{
    return c->count;
}

size_t dns_cache_bytes(const struct dns_cache *c)
{
    return c->bytes;
}
