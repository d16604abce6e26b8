/*
 * throttle.h — counts failed logins per client address and locks an address
 * out after too many, in a table whose size is fixed when it is made.
 *
 * Pure: the caller passes the time in (milliseconds from any monotonic
 * clock), so tests need no sleeping. An attacker with many addresses cannot
 * grow the table; when it is full the address seen least recently among
 * those not locked out makes room, so locked entries go only when every
 * entry is locked.
 */
#ifndef KOTAK_THROTTLE_H
#define KOTAK_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct throttle; /* fixed capacity, allocated once */

/*
 * A table for up to capacity addresses (1 to 2^28). max_failures (at least
 * 1) failures from one address within window_ms of its first counted failure
 * lock it out for lockout_ms. The table is allocated here, once (out of
 * memory aborts); free it with throttle_free.
 */
struct throttle *throttle_new(size_t capacity, unsigned max_failures, uint64_t window_ms,
                              uint64_t lockout_ms);

/* Frees *t (NULL is fine) and sets *t to NULL. */
void throttle_free(struct throttle **t);

/*
 * ip is 16 bytes: an IPv6 address, or an IPv4 one mapped as ::ffff:a.b.c.d
 * by the caller. now_ms must not run backwards by more than a little; if it
 * does, entries merely expire late.
 */

/* True while ip is locked out. An address whose lockout has ended is
 * forgotten here, so it starts again with no failures. */
bool throttle_locked(struct throttle *t, const uint8_t ip[16], uint64_t now_ms);

/*
 * Counts a failure from ip. The max_failures-th within the window locks ip
 * out for lockout_ms from now. A failure while ip is locked out neither
 * counts nor extends the lockout (the caller should not have tried).
 */
void throttle_fail(struct throttle *t, const uint8_t ip[16], uint64_t now_ms);

/* Failures counted for ip in its window now: 0 when none, max_failures while locked out. */
unsigned throttle_failures(struct throttle *t, const uint8_t ip[16], uint64_t now_ms);

/* Forgets ip after a successful login, lockout included. */
void throttle_success(struct throttle *t, const uint8_t ip[16]);

/* The number of addresses the table holds now, never more than capacity. */
size_t throttle_count(const struct throttle *t);

#endif
