/*
 * test_throttle.c — the failed-login table (common/throttle.h): lockout
 * after max_failures within the window and not when they are spread wider,
 * the end of a lockout, success forgetting an address, a full table that
 * never grows and keeps its locked entries, and many insertions and
 * removals, then what the shared table adds: (user, address) pairs counted
 * apart from their address, a success that clears only its own key, IPv6
 * keyed by its /64, a clock set back, and a block that holds no table yet.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "throttle.h"
#include "util.h"

#define MIN 60000u /* a minute in milliseconds */

/* ::ffff:10.a.b.c for n = a.b.c */
static const uint8_t *ip4(uint32_t n, uint8_t out[16])
{
    memset(out, 0, 16);
    out[10] = out[11] = 0xff;
    out[12] = 10;
    out[13] = (uint8_t)(n >> 16);
    out[14] = (uint8_t)(n >> 8);
    out[15] = (uint8_t)n;
    return out;
}

/* 2001:db8::n */
static const uint8_t *ip6(uint32_t n, uint8_t out[16])
{
    memset(out, 0, 16);
    out[0] = 0x20, out[1] = 0x01, out[2] = 0x0d, out[3] = 0xb8;
    memcpy(out + 12, &n, 4);
    return out;
}

static struct throttle_rule rule;
static uint64_t last_now; /* the time of the last call, for t_count */

/* A table whose address keys all follow one rule. */
static struct throttle *mk(size_t capacity, unsigned max_failures, uint64_t window_ms,
                           uint64_t lockout_ms)
{
    rule = (struct throttle_rule){max_failures, window_ms, lockout_ms};
    last_now = 0;
    return throttle_new(capacity);
}

/* The key for ip alone, or for (user n, ip) when n > 0. */
static struct throttle_key key_of(const uint8_t ip[16], uint8_t n)
{
    struct throttle_key k = {{0}, {0}};
    memcpy(k.ip, ip, 16);
    k.user[0] = n;
    return k;
}

static void t_fail(struct throttle *t, const uint8_t ip[16], uint64_t now)
{
    struct throttle_key k = key_of(ip, 0);
    throttle_fail(t, &k, &rule, last_now = now);
}

static bool t_locked(struct throttle *t, const uint8_t ip[16], uint64_t now)
{
    struct throttle_key k = key_of(ip, 0);
    return throttle_locked(t, &k, last_now = now);
}

static void t_success(struct throttle *t, const uint8_t ip[16])
{
    struct throttle_key k = key_of(ip, 0);
    throttle_success(t, &k);
}

static size_t t_count(struct throttle *t)
{
    return throttle_count(t, last_now);
}

static void test_lockout(void)
{
    uint8_t a[16], b[16];
    ip4(1, a);
    ip4(2, b);
    struct throttle *t = mk(16, 3, MIN, 5 * MIN);

    /* Each row: at time `at`, fail (1) or not (0), then `locked` is the
     * answer expected for a at that time. */
    static const struct {
        uint64_t at;
        int fail;
        bool locked;
        const char *why;
    } steps[] = {
        {0, 0, false, "a new address is not locked"},
        {0, 1, false, "one failure"},
        {1000, 1, false, "two failures"},
        {2000, 1, true, "the third failure within the window locks"},
        {3000, 0, true, "still locked a second later"},
        {2000 + 5 * MIN - 1, 0, true, "locked until the lockout's last millisecond"},
        {2000 + 5 * MIN - 1, 1, true, "a failure while locked is ignored"},
        {2000 + 5 * MIN, 0, false, "unlocked when the lockout ends"},
        {2000 + 5 * MIN, 1, false, "after the lockout, failures count from one"},
        {2000 + 5 * MIN + 1, 1, false, "and two"},
        {2000 + 5 * MIN + 2, 1, true, "and three locks again"},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        if (steps[i].fail)
            t_fail(t, a, steps[i].at);
        is_int(t_locked(t, a, steps[i].at), steps[i].locked, "lockout: %s", steps[i].why);
        ok(!t_locked(t, b, steps[i].at), "lockout: %s: the other address is free", steps[i].why);
    }
    throttle_free(&t);
    ok(t == NULL, "throttle_free sets the pointer to NULL");
    throttle_free(&t);
    ok(t == NULL, "throttle_free of NULL is fine");
}

static void test_window(void)
{
    uint8_t a[16];
    ip4(1, a);
    struct throttle *t = mk(16, 3, MIN, 5 * MIN);

    /* Failures at 0 and 30 s; at 60 s the window of the first has passed,
     * so counting starts again there. */
    t_fail(t, a, 0);
    t_fail(t, a, MIN / 2);
    t_fail(t, a, MIN);
    ok(!t_locked(t, a, MIN), "window: three failures over exactly one window do not lock");
    t_fail(t, a, MIN + 1000);
    ok(!t_locked(t, a, MIN + 1000), "window: two in the new window do not lock");
    t_fail(t, a, MIN + 2000);
    ok(t_locked(t, a, MIN + 2000), "window: three in the new window lock");

    /* One failure an hour never locks. */
    uint8_t b[16];
    ip4(2, b);
    bool ever = false;
    for (uint64_t h = 0; h < 24; h++) {
        t_fail(t, b, 10 * MIN + h * 60 * MIN);
        ever = ever || t_locked(t, b, 10 * MIN + h * 60 * MIN);
    }
    ok(!ever, "window: one failure an hour for a day never locks");
    /* a's lockout ended and b's failures expired between hours: only b's
     * last failure is held. */
    is_int(t_count(t), 1, "window: expired entries leave the table");
    throttle_free(&t);

    /* Failures whose window has passed are dropped by any later call. */
    t = mk(4, 3, MIN, 5 * MIN);
    t_fail(t, a, 0);
    t_fail(t, b, MIN / 2);
    is_int(t_count(t), 2, "window: two addresses with failures");
    ok(!t_locked(t, b, MIN), "window: a lookup at one minute");
    is_int(t_count(t), 1, "window: the first address's window passed, so it left");
    t_fail(t, b, 2 * MIN);
    is_int(t_count(t), 1, "window: the second's passed too; its new failure is held");
    throttle_free(&t);

    /* max_failures 1: every failure locks. A zero lockout ends at once. */
    t = mk(4, 1, MIN, 0);
    t_fail(t, a, 5);
    ok(!t_locked(t, a, 5), "a zero lockout is over at once");
    is_int(t_count(t), 0, "an ended lockout leaves the table");
    throttle_free(&t);

    t = mk(4, 1, MIN, UINT64_MAX);
    t_fail(t, a, 5);
    ok(t_locked(t, a, UINT64_MAX - 1), "a lockout too long for the clock saturates");
    throttle_free(&t);
}

static void test_success(void)
{
    uint8_t a[16], b[16];
    ip4(1, a);
    ip6(1, b);
    struct throttle *t = mk(16, 3, MIN, 5 * MIN);

    t_fail(t, a, 0);
    t_fail(t, a, 1);
    t_fail(t, b, 1);
    is_int(t_count(t), 2, "success: two addresses held");
    t_success(t, a);
    is_int(t_count(t), 1, "success: the address is forgotten");
    t_fail(t, a, 2);
    t_fail(t, a, 3);
    ok(!t_locked(t, a, 3), "success: failures count from zero again");
    t_fail(t, b, 3);
    t_fail(t, b, 4);
    ok(t_locked(t, b, 4), "success: the other address keeps its count");
    t_success(t, b);
    ok(!t_locked(t, b, 5), "success: forgets a lockout too");
    t_success(t, b);
    uint8_t c[16];
    t_success(t, ip4(99, c));
    is_int(t_count(t), 1, "success: unknown addresses change nothing");

    /* ::ffff:10.0.0.1 and 2001:db8::1 share their last bytes only. */
    uint8_t a6[16];
    ip6(0x0100000a, a6);
    ok(memcmp(a6, a, 16) != 0 && !t_locked(t, a6, 5), "success: addresses differ in all 16 bytes");
    throttle_free(&t);
}

static void test_full(void)
{
    enum { CAP = 64, LOCKED = 10, FLOOD = 10000 };
    uint8_t ip[16];
    struct throttle *t = mk(CAP, 3, 60 * MIN, 60 * MIN);

    for (uint32_t i = 0; i < LOCKED; i++)
        for (int k = 0; k < 3; k++)
            t_fail(t, ip6(i, ip), i);
    bool all = true;
    for (uint32_t i = 0; i < LOCKED; i++)
        all = all && t_locked(t, ip6(i, ip), LOCKED);
    ok(all, "full: ten addresses locked");

    /* An attacker fails once from each of ten thousand addresses. */
    size_t most = 0;
    for (uint32_t i = 0; i < FLOOD; i++) {
        t_fail(t, ip4(i, ip), 100 + i);
        if (t_count(t) > most)
            most = t_count(t);
    }
    is_int(most, CAP, "full: the table never holds more than its capacity");
    all = true;
    for (uint32_t i = 0; i < LOCKED; i++)
        all = all && t_locked(t, ip6(i, ip), 100 + FLOOD);
    ok(all, "full: the locked addresses survive the flood");

    /* The most recent of the flood are held, the oldest were evicted. */
    uint64_t now = 200 + FLOOD;
    t_fail(t, ip4(FLOOD - 1, ip), now);
    t_fail(t, ip4(FLOOD - 1, ip), now);
    ok(t_locked(t, ip4(FLOOD - 1, ip), now), "full: the newest address kept its count");
    t_fail(t, ip4(0, ip), now);
    t_fail(t, ip4(0, ip), now);
    ok(!t_locked(t, ip4(0, ip), now), "full: the oldest address was evicted");
    is_int(t_count(t), CAP, "full: still at capacity");
    throttle_free(&t);

    /* When every entry is locked, the lockout that ends first goes. */
    t = mk(4, 1, MIN, MIN);
    for (uint32_t i = 0; i < 5; i++)
        t_fail(t, ip4(i, ip), i);
    is_int(t_count(t), 4, "all locked: capacity 4 holds 4");
    ok(!t_locked(t, ip4(0, ip), 5), "all locked: the earliest lockout made room");
    all = true;
    for (uint32_t i = 1; i < 5; i++)
        all = all && t_locked(t, ip4(i, ip), 5);
    ok(all, "all locked: the other four stay locked");
    throttle_free(&t);
}

/* A small PRNG so the churn is the same on every run. */
static uint32_t rnd(uint32_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

static void test_churn(void)
{
    /* Many insertions and removals in a small table. A model array says which addresses must be
     * locked; max_failures 1 makes every held address observable. */
    enum { CAP = 32, SPACE = 48, ROUNDS = 20000 };
    struct throttle *t = mk(CAP, 1, MIN, 1000 * MIN);
    bool model[SPACE] = {false};
    size_t held = 0;
    uint32_t seed = 12345;
    uint8_t ip[16];
    bool agree = true, bounded = true;
    for (uint32_t r = 0; r < ROUNDS; r++) {
        uint32_t n = rnd(&seed) % SPACE;
        if (rnd(&seed) % 2 == 0) {
            if (!model[n] && held == CAP)
                continue; /* eviction order is tested above */
            t_fail(t, ip4(n, ip), 1);
            if (!model[n])
                held++;
            model[n] = true;
        } else {
            t_success(t, ip4(n, ip));
            if (model[n])
                held--;
            model[n] = false;
        }
        if (t_count(t) != held)
            bounded = false;
        if (r % 97 == 0)
            for (uint32_t k = 0; k < SPACE; k++)
                if (t_locked(t, ip4(k, ip), 2) != model[k])
                    agree = false;
    }
    ok(bounded, "churn: the count follows the model");
    ok(agree, "churn: every address is found or absent as the model says");
    throttle_free(&t);
}

static void test_pairs(void)
{
    uint8_t a[16];
    ip4(1, a);
    struct throttle *t = throttle_new(64);
    const struct throttle_rule pair = {3, MIN, 5 * MIN}, addr = {5, MIN, 5 * MIN};
    struct throttle_key alice = key_of(a, 1), bob = key_of(a, 2), carol = key_of(a, 3);
    struct throttle_key whole = key_of(a, 0);

    /* Each of alice's failures counts against her pair and the address. */
    for (uint64_t i = 0; i < 3; i++) {
        throttle_fail(t, &alice, &pair, i);
        throttle_fail(t, &whole, &addr, i);
    }
    ok(throttle_locked(t, &alice, 3), "pairs: alice is locked out from a");
    ok(!throttle_locked(t, &bob, 3), "pairs: bob from the same address is not");
    ok(!throttle_locked(t, &whole, 3), "pairs: nor the address");
    is_int(throttle_failures(t, &alice, 3), 3, "pairs: a lockout reports max_failures");
    is_int(throttle_failures(t, &whole, 3), 3, "pairs: the address counted three");

    /* bob's success clears bob alone. */
    throttle_fail(t, &bob, &pair, 4);
    throttle_success(t, &bob);
    is_int(throttle_failures(t, &bob, 5), 0, "pairs: bob's success clears his count");
    ok(throttle_locked(t, &alice, 5), "pairs: but not alice's lockout");
    is_int(throttle_failures(t, &whole, 5), 3, "pairs: nor the address's count");

    /* Spraying: two more failures, for another user, reach the address's cap. */
    throttle_fail(t, &carol, &pair, 6);
    throttle_fail(t, &whole, &addr, 6);
    throttle_fail(t, &carol, &pair, 7);
    throttle_fail(t, &whole, &addr, 7);
    ok(!throttle_locked(t, &carol, 8), "pairs: carol's two failures leave her pair free");
    ok(throttle_locked(t, &whole, 8), "pairs: the address is locked at its own cap");
    throttle_free(&t);
}

static void test_prefix(void)
{
    uint8_t a[16], b[16], pa[16], pb[16];
    ip6(1, a);
    ip6(2, b);
    b[8] = 0x77; /* another host in the same /64 */
    throttle_prefix(a, pa);
    throttle_prefix(b, pb);
    ok(memcmp(pa, pb, 16) == 0, "prefix: two hosts of one IPv6 /64 share a key");
    ok(pa[0] == 0x20 && pa[3] == 0xb8 && pa[15] == 0, "prefix: the /64 kept, the host part zero");
    b[7] ^= 1;
    throttle_prefix(b, pb);
    ok(memcmp(pa, pb, 16) != 0, "prefix: another /64 is another key");
    ip4(1, a);
    ip4(2, b);
    throttle_prefix(a, pa);
    throttle_prefix(b, pb);
    ok(memcmp(pa, a, 16) == 0 && memcmp(pa, pb, 16) != 0, "prefix: IPv4 is keyed whole");
}

static void test_clock_and_open(void)
{
    uint8_t a[16];
    ip4(1, a);
    struct throttle *t = mk(8, 1, MIN, 60 * MIN);
    t_fail(t, a, 100 * MIN);
    ok(t_locked(t, a, 100 * MIN + 1), "clock: locked");
    ok(!t_locked(t, a, 50 * MIN), "clock: set back before the lockout began, it ends");
    throttle_free(&t);

    /* A block holding anything but a table of its size is made one; a
     * table is kept as it is, so a second process sees the first's entries. */
    size_t size = throttle_size(8);
    unsigned char *mem = xmalloc(size);
    memset(mem, 0xa5, size);
    t = throttle_open(mem, size);
    is_int(throttle_count(t, 0), 0, "open: a block of garbage becomes an empty table");
    t_fail(t, a, 10);
    struct throttle *again = throttle_open(mem, size);
    ok(t_locked(again, a, 11), "open: a valid table keeps its entries, seen by another handle");
    throttle_free(&again);
    again = throttle_open(mem, throttle_size(4));
    is_int(throttle_count(again, 11), 0, "open: a table of another size is remade");
    throttle_free(&again);
    throttle_free(&t);
    ok(t == NULL, "open: throttle_free leaves the block to its owner");
    free(mem);
}

int main(void)
{
    test_lockout();
    test_window();
    test_success();
    test_full();
    test_churn();
    test_pairs();
    test_prefix();
    test_clock_and_open();
    return done_testing();
}
