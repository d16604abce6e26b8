/*
 * test_throttle.c — the failed-login table (common/throttle.h): lockout
 * after max_failures within the window and not when they are spread wider,
 * the end of a lockout, success forgetting an address, a full table that
 * never grows and keeps its locked entries, and many insertions and
 * removals through colliding hash chains.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "tap.h"
#include "throttle.h"

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

static void test_lockout(void)
{
    uint8_t a[16], b[16];
    ip4(1, a);
    ip4(2, b);
    struct throttle *t = throttle_new(16, 3, MIN, 5 * MIN);

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
            throttle_fail(t, a, steps[i].at);
        is_int(throttle_locked(t, a, steps[i].at), steps[i].locked, "lockout: %s", steps[i].why);
        ok(!throttle_locked(t, b, steps[i].at), "lockout: %s: the other address is free",
           steps[i].why);
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
    struct throttle *t = throttle_new(16, 3, MIN, 5 * MIN);

    /* Failures at 0 and 30 s; at 60 s the window of the first has passed,
     * so counting starts again there. */
    throttle_fail(t, a, 0);
    throttle_fail(t, a, MIN / 2);
    throttle_fail(t, a, MIN);
    ok(!throttle_locked(t, a, MIN), "window: three failures over exactly one window do not lock");
    throttle_fail(t, a, MIN + 1000);
    ok(!throttle_locked(t, a, MIN + 1000), "window: two in the new window do not lock");
    throttle_fail(t, a, MIN + 2000);
    ok(throttle_locked(t, a, MIN + 2000), "window: three in the new window lock");

    /* One failure an hour never locks. */
    uint8_t b[16];
    ip4(2, b);
    bool ever = false;
    for (uint64_t h = 0; h < 24; h++) {
        throttle_fail(t, b, 10 * MIN + h * 60 * MIN);
        ever = ever || throttle_locked(t, b, 10 * MIN + h * 60 * MIN);
    }
    ok(!ever, "window: one failure an hour for a day never locks");
    /* a's lockout ended and b's failures expired between hours: only b's
     * last failure is held. */
    is_int(throttle_count(t), 1, "window: expired entries leave the table");
    throttle_free(&t);

    /* Failures whose window has passed are dropped by any later call. */
    t = throttle_new(4, 3, MIN, 5 * MIN);
    throttle_fail(t, a, 0);
    throttle_fail(t, b, MIN / 2);
    is_int(throttle_count(t), 2, "window: two addresses with failures");
    ok(!throttle_locked(t, b, MIN), "window: a lookup at one minute");
    is_int(throttle_count(t), 1, "window: the first address's window passed, so it left");
    throttle_fail(t, b, 2 * MIN);
    is_int(throttle_count(t), 1, "window: the second's passed too; its new failure is held");
    throttle_free(&t);

    /* max_failures 1: every failure locks. A zero lockout ends at once. */
    t = throttle_new(4, 1, MIN, 0);
    throttle_fail(t, a, 5);
    ok(!throttle_locked(t, a, 5), "a zero lockout is over at once");
    is_int(throttle_count(t), 0, "an ended lockout leaves the table");
    throttle_free(&t);

    t = throttle_new(4, 1, MIN, UINT64_MAX);
    throttle_fail(t, a, 5);
    ok(throttle_locked(t, a, UINT64_MAX - 1), "a lockout too long for the clock saturates");
    throttle_free(&t);
}

static void test_success(void)
{
    uint8_t a[16], b[16];
    ip4(1, a);
    ip6(1, b);
    struct throttle *t = throttle_new(16, 3, MIN, 5 * MIN);

    throttle_fail(t, a, 0);
    throttle_fail(t, a, 1);
    throttle_fail(t, b, 1);
    is_int(throttle_count(t), 2, "success: two addresses held");
    throttle_success(t, a);
    is_int(throttle_count(t), 1, "success: the address is forgotten");
    throttle_fail(t, a, 2);
    throttle_fail(t, a, 3);
    ok(!throttle_locked(t, a, 3), "success: failures count from zero again");
    throttle_fail(t, b, 3);
    throttle_fail(t, b, 4);
    ok(throttle_locked(t, b, 4), "success: the other address keeps its count");
    throttle_success(t, b);
    ok(!throttle_locked(t, b, 5), "success: forgets a lockout too");
    throttle_success(t, b);
    uint8_t c[16];
    throttle_success(t, ip4(99, c));
    is_int(throttle_count(t), 1, "success: unknown addresses change nothing");

    /* ::ffff:10.0.0.1 and 2001:db8::1 share their last bytes only. */
    uint8_t a6[16];
    ip6(0x0100000a, a6);
    ok(memcmp(a6, a, 16) != 0 && !throttle_locked(t, a6, 5),
       "success: addresses differ in all 16 bytes");
    throttle_free(&t);
}

static void test_full(void)
{
    enum { CAP = 64, LOCKED = 10, FLOOD = 10000 };
    uint8_t ip[16];
    struct throttle *t = throttle_new(CAP, 3, 60 * MIN, 60 * MIN);

    for (uint32_t i = 0; i < LOCKED; i++)
        for (int k = 0; k < 3; k++)
            throttle_fail(t, ip6(i, ip), i);
    bool all = true;
    for (uint32_t i = 0; i < LOCKED; i++)
        all = all && throttle_locked(t, ip6(i, ip), LOCKED);
    ok(all, "full: ten addresses locked");

    /* An attacker fails once from each of ten thousand addresses. */
    size_t most = 0;
    for (uint32_t i = 0; i < FLOOD; i++) {
        throttle_fail(t, ip4(i, ip), 100 + i);
        if (throttle_count(t) > most)
            most = throttle_count(t);
    }
    is_int(most, CAP, "full: the table never holds more than its capacity");
    all = true;
    for (uint32_t i = 0; i < LOCKED; i++)
        all = all && throttle_locked(t, ip6(i, ip), 100 + FLOOD);
    ok(all, "full: the locked addresses survive the flood");

    /* The most recent of the flood are held, the oldest were evicted. */
    uint64_t now = 200 + FLOOD;
    throttle_fail(t, ip4(FLOOD - 1, ip), now);
    throttle_fail(t, ip4(FLOOD - 1, ip), now);
    ok(throttle_locked(t, ip4(FLOOD - 1, ip), now), "full: the newest address kept its count");
    throttle_fail(t, ip4(0, ip), now);
    throttle_fail(t, ip4(0, ip), now);
    ok(!throttle_locked(t, ip4(0, ip), now), "full: the oldest address was evicted");
    is_int(throttle_count(t), CAP, "full: still at capacity");
    throttle_free(&t);

    /* When every entry is locked, the lockout that ends first goes. */
    t = throttle_new(4, 1, MIN, MIN);
    for (uint32_t i = 0; i < 5; i++)
        throttle_fail(t, ip4(i, ip), i);
    is_int(throttle_count(t), 4, "all locked: capacity 4 holds 4");
    ok(!throttle_locked(t, ip4(0, ip), 5), "all locked: the earliest lockout made room");
    all = true;
    for (uint32_t i = 1; i < 5; i++)
        all = all && throttle_locked(t, ip4(i, ip), 5);
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
    /* Capacity 32 means 64 slots: hash chains collide and wrap, and
     * removals shift them back. A model array says which addresses must be
     * locked; max_failures 1 makes every held address observable. */
    enum { CAP = 32, SPACE = 48, ROUNDS = 20000 };
    struct throttle *t = throttle_new(CAP, 1, MIN, 1000 * MIN);
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
            throttle_fail(t, ip4(n, ip), 1);
            if (!model[n])
                held++;
            model[n] = true;
        } else {
            throttle_success(t, ip4(n, ip));
            if (model[n])
                held--;
            model[n] = false;
        }
        if (throttle_count(t) != held)
            bounded = false;
        if (r % 97 == 0)
            for (uint32_t k = 0; k < SPACE; k++)
                if (throttle_locked(t, ip4(k, ip), 2) != model[k])
                    agree = false;
    }
    ok(bounded, "churn: the count follows the model");
    ok(agree, "churn: every address is found or absent as the model says");
    throttle_free(&t);
}

int main(void)
{
    test_lockout();
    test_window();
    test_success();
    test_full();
    test_churn();
    return done_testing();
}
