/*
 * throttle.c — the failed-login table of throttle.h.
 *
 * Entries live in a fixed array. A hash table of entry numbers, open
 * addressing with linear probing and at most half full, finds an address;
 * deletion shifts later members of the probe run back (Knuth's algorithm R),
 * so there are no tombstones to pile up under churn.
 *
 * Each entry sits on one of three lists, which make every choice O(1):
 *
 *   active  addresses with failures and no lockout, most recent failure
 *           first; the tail is the victim when the table is full, and tails
 *           whose window has passed are dropped as time goes on;
 *   locked  locked-out addresses, most recently locked first; all lockouts
 *           are equally long, so the tail ends first, and ended ones are
 *           dropped from the tail as time goes on;
 *   free    unused entries.
 *
 * So a locked entry is evicted only when every entry is locked, and then
 * the one whose lockout ends soonest. The hash (FNV-1a) is not keyed: this
 * module has no source of randomness. Someone who crafts colliding addresses
 * can lengthen probe runs, but never past the table's size, and the table is
 * small.
 */
#include "throttle.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define NONE UINT32_MAX
#define CAPACITY_MAX ((size_t)1 << 28)

enum list_id { LIST_ACTIVE, LIST_LOCKED, LIST_FREE, LIST_COUNT };

struct entry {
    uint8_t ip[16];
    uint32_t hash;
    uint32_t prev, next; /* links in the list named by list */
    enum list_id list;
    unsigned failures;     /* counted since window_start */
    uint64_t window_start; /* time of the first failure counted */
    uint64_t last_seen;    /* time of the last failure counted */
    uint64_t locked_until; /* end of the lockout, on the locked list */
};

struct list {
    uint32_t head, tail;
};

struct throttle {
    unsigned max_failures;
    uint64_t window_ms, lockout_ms;
    size_t count;
    struct entry *entries; /* capacity of them */
    uint32_t *slots;       /* entry number + 1, 0 for an empty slot */
    uint32_t mask;         /* slot count - 1; the slot count is a power of 2 */
    struct list lists[LIST_COUNT];
};

static uint32_t hash_ip(const uint8_t ip[16])
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < 16; i++) {
        h ^= ip[i];
        h *= 16777619u;
    }
    return h;
}

static void list_unlink(struct throttle *t, uint32_t i)
{
    struct entry *e = &t->entries[i];
    struct list *l = &t->lists[e->list];
    if (e->prev != NONE)
        t->entries[e->prev].next = e->next;
    else
        l->head = e->next;
    if (e->next != NONE)
        t->entries[e->next].prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NONE;
}

static void list_push_front(struct throttle *t, uint32_t i, enum list_id id)
{
    struct entry *e = &t->entries[i];
    struct list *l = &t->lists[id];
    e->list = id;
    e->prev = NONE;
    e->next = l->head;
    if (l->head != NONE)
        t->entries[l->head].prev = i;
    else
        l->tail = i;
    l->head = i;
}

static void list_move_front(struct throttle *t, uint32_t i, enum list_id id)
{
    list_unlink(t, i);
    list_push_front(t, i, id);
}

struct throttle *throttle_new(size_t capacity, unsigned max_failures, uint64_t window_ms,
                              uint64_t lockout_ms)
{
    assert(capacity >= 1 && capacity <= CAPACITY_MAX);
    assert(max_failures >= 1);
    struct throttle *t = xcalloc(1, sizeof(*t));
    t->max_failures = max_failures;
    t->window_ms = window_ms;
    t->lockout_ms = lockout_ms;
    size_t nslots = 2;
    while (nslots < 2 * capacity)
        nslots *= 2;
    t->mask = (uint32_t)(nslots - 1);
    t->slots = xcalloc(nslots, sizeof(*t->slots));
    t->entries = xcalloc(capacity, sizeof(*t->entries));
    for (enum list_id id = 0; id < LIST_COUNT; id++)
        t->lists[id].head = t->lists[id].tail = NONE;
    for (size_t i = capacity; i-- > 0;) {
        t->entries[i].prev = t->entries[i].next = NONE;
        list_push_front(t, (uint32_t)i, LIST_FREE);
    }
    return t;
}

void throttle_free(struct throttle **t)
{
    if (*t == NULL)
        return;
    free((*t)->slots);
    free((*t)->entries);
    free(*t);
    *t = NULL;
}

size_t throttle_count(const struct throttle *t)
{
    return t->count;
}

/* The slot that holds ip's entry, or NONE. */
static uint32_t slot_find(const struct throttle *t, const uint8_t ip[16], uint32_t hash)
{
    for (uint32_t s = hash & t->mask;; s = (s + 1) & t->mask) {
        uint32_t v = t->slots[s];
        if (v == 0)
            return NONE;
        const struct entry *e = &t->entries[v - 1];
        if (e->hash == hash && memcmp(e->ip, ip, 16) == 0)
            return s;
    }
}

/* The entry for ip, or NONE. */
static uint32_t entry_find(const struct throttle *t, const uint8_t ip[16])
{
    uint32_t s = slot_find(t, ip, hash_ip(ip));
    return s == NONE ? NONE : t->slots[s] - 1;
}

/* Empties slot s and moves later members of its probe run back, so that
 * every entry stays reachable from its home slot without tombstones. */
static void slot_delete(struct throttle *t, uint32_t s)
{
    uint32_t hole = s;
    for (uint32_t j = (s + 1) & t->mask; t->slots[j] != 0; j = (j + 1) & t->mask) {
        uint32_t home = t->entries[t->slots[j] - 1].hash & t->mask;
        /* The entry at j may fill the hole unless its home lies cyclically
         * in (hole, j]: then the hole is not on its probe path. */
        bool home_after_hole = ((j - home) & t->mask) < ((j - hole) & t->mask);
        if (!home_after_hole) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole] = 0;
}

/* Forgets entry i: out of the hash, onto the free list. */
static void entry_remove(struct throttle *t, uint32_t i)
{
    struct entry *e = &t->entries[i];
    uint32_t s = slot_find(t, e->ip, e->hash);
    assert(s != NONE && t->slots[s] == i + 1);
    slot_delete(t, s);
    list_move_front(t, i, LIST_FREE);
    t->count--;
}

/* Drops entries that no longer matter: lockouts that have ended and
 * failures whose window has passed. Each entry is dropped once, so this is
 * O(1) amortized. */
static void expire(struct throttle *t, uint64_t now)
{
    uint32_t i;
    while ((i = t->lists[LIST_LOCKED].tail) != NONE && t->entries[i].locked_until <= now)
        entry_remove(t, i);
    /* window_start <= last_seen, so a window over by last_seen is over. */
    while ((i = t->lists[LIST_ACTIVE].tail) != NONE && now >= t->entries[i].last_seen &&
           now - t->entries[i].last_seen >= t->window_ms)
        entry_remove(t, i);
}

/* A new entry for ip, evicting one when the table is full. */
static uint32_t entry_add(struct throttle *t, const uint8_t ip[16])
{
    if (t->lists[LIST_FREE].head == NONE) {
        uint32_t victim = t->lists[LIST_ACTIVE].tail;
        if (victim == NONE)
            victim = t->lists[LIST_LOCKED].tail;
        assert(victim != NONE);
        entry_remove(t, victim);
    }
    uint32_t i = t->lists[LIST_FREE].head;
    struct entry *e = &t->entries[i];
    memcpy(e->ip, ip, 16);
    e->hash = hash_ip(ip);
    e->failures = 0;
    e->window_start = e->last_seen = e->locked_until = 0;
    uint32_t s = e->hash & t->mask;
    while (t->slots[s] != 0)
        s = (s + 1) & t->mask;
    t->slots[s] = i + 1;
    list_move_front(t, i, LIST_ACTIVE);
    t->count++;
    return i;
}

bool throttle_locked(struct throttle *t, const uint8_t ip[16], uint64_t now_ms)
{
    expire(t, now_ms);
    uint32_t i = entry_find(t, ip);
    if (i == NONE || t->entries[i].list != LIST_LOCKED)
        return false;
    if (now_ms < t->entries[i].locked_until)
        return true;
    entry_remove(t, i);
    return false;
}

unsigned throttle_failures(struct throttle *t, const uint8_t ip[16], uint64_t now_ms)
{
    if (throttle_locked(t, ip, now_ms))
        return t->max_failures;
    uint32_t i = entry_find(t, ip);
    return i == NONE ? 0 : t->entries[i].failures;
}

void throttle_fail(struct throttle *t, const uint8_t ip[16], uint64_t now_ms)
{
    expire(t, now_ms);
    uint32_t i = entry_find(t, ip);
    if (i != NONE && t->entries[i].list == LIST_LOCKED) {
        if (now_ms < t->entries[i].locked_until)
            return;
        entry_remove(t, i);
        i = NONE;
    }
    if (i == NONE)
        i = entry_add(t, ip);
    struct entry *e = &t->entries[i];
    if (e->failures == 0 ||
        (now_ms >= e->window_start && now_ms - e->window_start >= t->window_ms)) {
        e->failures = 0;
        e->window_start = now_ms;
    }
    e->failures++;
    e->last_seen = now_ms;
    if (e->failures >= t->max_failures) {
        e->failures = 0;
        e->locked_until = now_ms > UINT64_MAX - t->lockout_ms ? UINT64_MAX : now_ms + t->lockout_ms;
        list_move_front(t, i, LIST_LOCKED);
    } else {
        list_move_front(t, i, LIST_ACTIVE);
    }
}

void throttle_success(struct throttle *t, const uint8_t ip[16])
{
    uint32_t i = entry_find(t, ip);
    if (i != NONE)
        entry_remove(t, i);
}
