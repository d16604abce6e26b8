/*
 * dns_cache.c — a bounded cache of TXT answers, and of names without; see
 * dns_cache.h.
 *
 * A chained hash table of names (lower-cased) beside two lists in order of
 * use, one of answers with records and one of names without: a get moves
 * its entry to the front of its list, and a put that goes over the count
 * or the bytes drops the least recently used of the two lists' last
 * entries. Names without are at most a quarter of the count, their own
 * oldest going for a new one: one message may name a dozen that do not
 * exist (DKIM keys' d= and s=, SPF, DMARC), and they must not push out
 * the records every message needs.
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
    struct entry *prev, *next; /* its use list, most recent first */
    char name[DNS_NAME_MAX + 1];
    uint64_t expires_ms;
    uint64_t used; /* the cache's use count when last put or got: which list's last is older */
    enum dns_status status; /* DNS_OK: n >= 1 records; DNS_NXDOMAIN, DNS_NODATA: none */
    size_t n, bytes;
    char **records;
    size_t *lens;
};

struct use_list {
    struct entry *first, *last;
    size_t count;
};

struct dns_cache {
    struct entry *buckets[BUCKETS];
    struct use_list lists[2]; /* [0] answers with records, [1] names without */
    size_t count, bytes;
    uint64_t uses;
};

static struct use_list *list_of(struct dns_cache *c, const struct entry *e)
{
    return &c->lists[e->status != DNS_OK];
}

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
    struct use_list *l = list_of(c, e);
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        l->first = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        l->last = e->prev;
    e->prev = e->next = NULL;
    l->count--;
}

static void push_front(struct dns_cache *c, struct entry *e)
{
    struct use_list *l = list_of(c, e);
    e->used = ++c->uses;
    e->next = l->first;
    if (l->first != NULL)
        l->first->prev = e;
    l->first = e;
    if (l->last == NULL)
        l->last = e;
    l->count++;
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
    for (int i = 0; i < 2; i++)
        while (c->lists[i].first != NULL)
            entry_drop(c, c->lists[i].first);
    free(c);
    *cp = NULL;
}

/* The least recently used entry of both lists, or NULL. */
static struct entry *oldest(struct dns_cache *c)
{
    struct entry *a = c->lists[0].last, *b = c->lists[1].last;
    if (a == NULL || b == NULL)
        return a != NULL ? a : b;
    return a->used < b->used ? a : b;
}

/* A new entry for name, of status, with room counted for n records, in place
 * of what was kept for it, at the front of its use list. */
static struct entry *entry_add(struct dns_cache *c, const char *name, enum dns_status status,
                               size_t n, const size_t *lens, uint64_t now_ms, uint32_t ttl_s)
{
    char key[DNS_NAME_MAX + 1];
    lower_copy(key, name);
    struct entry *old = find(c, key);
    if (old != NULL)
        entry_drop(c, old);
    size_t bytes = sizeof(struct entry) + strlen(key);
    for (size_t i = 0; i < n; i++)
        bytes += lens[i] + 1 + sizeof(char *) + sizeof(size_t);
    if (ttl_s == 0 || bytes > DNS_CACHE_ENTRY_BYTES_MAX)
        return NULL;
    uint32_t ttl_max = status == DNS_OK ? DNS_CACHE_TTL_MAX : DNS_CACHE_NONE_TTL_MAX;
    if (ttl_s > ttl_max)
        ttl_s = ttl_max;
    if (status != DNS_OK && c->lists[1].count >= DNS_CACHE_NONE_MAX)
        entry_drop(c, c->lists[1].last);
    while (oldest(c) != NULL &&
           (c->count >= DNS_CACHE_ENTRIES_MAX || c->bytes + bytes > DNS_CACHE_BYTES_MAX))
        entry_drop(c, oldest(c));
    struct entry *e = xcalloc(1, sizeof(*e));
    memcpy(e->name, key, strlen(key) + 1);
    e->expires_ms = now_ms + (uint64_t)ttl_s * 1000;
    e->status = status;
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
    struct entry *e = entry_add(c, name, DNS_OK, n, lens, now_ms, n > 0 ? ttl_s : 0);
    if (e == NULL)
        return;
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
    /* Nothing to keep leaves what is kept alone: a reply without an SOA
     * (or a failure) says nothing about how long the name has no record. */
    if ((status == DNS_NXDOMAIN || status == DNS_NODATA) && ttl_s > 0)
        entry_add(c, name, status, 0, NULL, now_ms, ttl_s);
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
