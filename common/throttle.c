/*
 * throttle.c — the failed-login table of throttle.h.
 *
 * A header, then a fixed array of entries that hold no pointers, so the
 * same bytes work in every process that maps them. An entry is free,
 * counting failures in a window, or locked until a time; it carries the
 * times that end it, so expiring it needs no rule. Look-ups scan the whole
 * array: a few thousand entries of 64 bytes, read while a login waits for
 * a crypt(3) check that costs far more, and no hash to flood.
 */
#include "throttle.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define THROTTLE_MAGIC "kotakthr"
#define THROTTLE_VERSION 1u
#define CAPACITY_MAX ((size_t)1 << 20)

enum { ENTRY_FREE, ENTRY_COUNTING, ENTRY_LOCKED };

struct entry {
    struct throttle_key key;
    uint32_t state;
    uint32_t failures;
    uint64_t since;     /* the first failure counted, or the lockout's start */
    uint64_t until;     /* the end of the window, or of the lockout */
    uint64_t last_seen; /* the last failure counted */
};

/* The block's first bytes, which say what it holds. */
struct head {
    char magic[8];
    uint32_t version;
    uint32_t entry_size;
    uint64_t capacity;
};

/* A process's handle on a block. The capacity is its own, never read back
 * from the shared header, so whatever another process writes there, this
 * one stays inside its mapping. */
struct throttle {
    struct entry *entries;
    uint64_t capacity;
    void *owned; /* the block, when throttle_new made it */
};

size_t throttle_size(size_t capacity)
{
    assert(capacity >= 1 && capacity <= CAPACITY_MAX);
    return sizeof(struct head) + capacity * sizeof(struct entry);
}

struct throttle *throttle_open(void *mem, size_t size)
{
    struct head *h = mem;
    assert(size >= throttle_size(1));
    uint64_t capacity = (size - sizeof(*h)) / sizeof(struct entry);
    if (memcmp(h->magic, THROTTLE_MAGIC, 8) != 0 || h->version != THROTTLE_VERSION ||
        h->entry_size != sizeof(struct entry) || h->capacity != capacity) {
        memset(mem, 0, size);
        memcpy(h->magic, THROTTLE_MAGIC, 8);
        h->version = THROTTLE_VERSION;
        h->entry_size = sizeof(struct entry);
        h->capacity = capacity;
    }
    struct throttle *t = xcalloc(1, sizeof(*t));
    t->entries = (struct entry *)(h + 1);
    t->capacity = capacity;
    return t;
}

struct throttle *throttle_new(size_t capacity)
{
    size_t size = throttle_size(capacity);
    void *mem = xcalloc(1, size);
    struct throttle *t = throttle_open(mem, size);
    t->owned = mem;
    return t;
}

void throttle_free(struct throttle **t)
{
    if (*t == NULL)
        return;
    free((*t)->owned);
    free(*t);
    *t = NULL;
}

void throttle_prefix(const uint8_t ip[16], uint8_t out[16])
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memcpy(out, ip, 16);
    if (memcmp(ip, v4_mapped, sizeof(v4_mapped)) != 0)
        memset(out + 8, 0, 8);
}

/* True when e's window or lockout is over. A start in the future means
 * the clock was set back: the entry ends rather than last far too long. */
static bool ended(const struct entry *e, uint64_t now)
{
    return now >= e->until || now < e->since;
}

static void expire(struct entry *e, uint64_t now)
{
    if (e->state != ENTRY_FREE && ended(e, now))
        memset(e, 0, sizeof(*e));
}

size_t throttle_count(const struct throttle *t, uint64_t now_ms)
{
    size_t n = 0;
    for (uint64_t i = 0; i < t->capacity; i++)
        n += t->entries[i].state != ENTRY_FREE && !ended(&t->entries[i], now_ms);
    return n;
}

static struct entry *entry_find(struct throttle *t, const struct throttle_key *key, uint64_t now)
{
    for (uint64_t i = 0; i < t->capacity; i++) {
        struct entry *e = &t->entries[i];
        if (e->state != ENTRY_FREE && memcmp(&e->key, key, sizeof(*key)) == 0) {
            expire(e, now);
            return e->state == ENTRY_FREE ? NULL : e;
        }
    }
    return NULL;
}

/* A free entry for key: an unused or ended one, else the counting entry
 * seen least recently, else the lockout that ends soonest. */
static struct entry *entry_add(struct throttle *t, const struct throttle_key *key, uint64_t now)
{
    struct entry *victim = NULL;
    for (uint64_t i = 0; i < t->capacity; i++) {
        struct entry *e = &t->entries[i];
        expire(e, now);
        if (e->state == ENTRY_FREE) {
            victim = e;
            break;
        }
        if (victim == NULL || (e->state == ENTRY_COUNTING && victim->state == ENTRY_LOCKED) ||
            (e->state == victim->state &&
             (e->state == ENTRY_COUNTING ? e->last_seen < victim->last_seen
                                         : e->until < victim->until)))
            victim = e;
    }
    memset(victim, 0, sizeof(*victim));
    victim->key = *key;
    return victim;
}

bool throttle_locked(struct throttle *t, const struct throttle_key *key, uint64_t now_ms)
{
    const struct entry *e = entry_find(t, key, now_ms);
    return e != NULL && e->state == ENTRY_LOCKED;
}

unsigned throttle_failures(struct throttle *t, const struct throttle_key *key, uint64_t now_ms)
{
    const struct entry *e = entry_find(t, key, now_ms);
    return e == NULL ? 0 : e->failures;
}

static uint64_t add_saturating(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void throttle_fail(struct throttle *t, const struct throttle_key *key,
                   const struct throttle_rule *rule, uint64_t now_ms)
{
    assert(rule->max_failures >= 1);
    struct entry *e = entry_find(t, key, now_ms);
    if (e != NULL && e->state == ENTRY_LOCKED)
        return;
    if (e == NULL) {
        e = entry_add(t, key, now_ms);
        e->state = ENTRY_COUNTING;
        e->since = now_ms;
        e->until = add_saturating(now_ms, rule->window_ms);
    }
    e->failures++;
    e->last_seen = now_ms;
    if (e->failures >= rule->max_failures) {
        e->state = ENTRY_LOCKED;
        e->failures = rule->max_failures;
        e->since = now_ms;
        e->until = add_saturating(now_ms, rule->lockout_ms);
        if (e->until == now_ms) /* a zero lockout ends at once */
            memset(e, 0, sizeof(*e));
    }
}

void throttle_success(struct throttle *t, const struct throttle_key *key)
{
    for (uint64_t i = 0; i < t->capacity; i++) {
        struct entry *e = &t->entries[i];
        if (e->state != ENTRY_FREE && memcmp(&e->key, key, sizeof(*key)) == 0)
            memset(e, 0, sizeof(*e));
    }
}
