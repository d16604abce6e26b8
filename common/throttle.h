/*
 * throttle.h — counts failed logins and locks a key out after too many, in
 * a table of fixed size that may live in memory shared by several processes
 * (a file both daemons map), so that kotak-smtpd and kotak-pop3d count the
 * same failures.
 *
 * A key is an address prefix (an IPv6 /64, or a whole IPv4 address) with,
 * for a (user, address) pair, a digest of the user's name; a key with no
 * user stands for the address alone. The caller decides what a failure
 * counts against and with which rule: login.c counts each failure against
 * its pair, for the lockout that a user behind a shared address meets
 * alone, and against its address, for a much higher cap on spraying.
 *
 * Pure: the caller passes the time in (milliseconds of the wall clock, so
 * that entries mean the same in every process and after a restart), so
 * tests need no sleeping. The table holds only plain numbers and bytes, no
 * pointers or links, so an entry left half written by a killed process
 * spoils that entry at most; a time that lies in the future (the clock was
 * set back) ends the entry. A stranger cannot grow the table: when it is
 * full, the entry seen least recently among those not locked out makes
 * room, so locked entries go only when every entry is locked. Every call
 * scans the table, which is small next to the crypt(3) check it guards.
 */
#ifndef KOTAK_THROTTLE_H
#define KOTAK_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct throttle; /* a process's handle on a block: a header and its entries */

struct throttle_key {
    uint8_t ip[16];   /* from throttle_prefix */
    uint8_t user[16]; /* a digest of the user's name; all zero: the address alone */
};

/* max_failures (at least 1) within window_ms of the first lock the key out for lockout_ms. */
struct throttle_rule {
    unsigned max_failures;
    uint64_t window_ms, lockout_ms;
};

/* The bytes a table of capacity entries (1 to 2^20) takes. */
size_t throttle_size(size_t capacity);

/*
 * A handle on the table in mem, size bytes from throttle_size, which must
 * stay mapped while the handle is used. A block that does not already hold
 * a table of that size (new, or left by another version) is emptied and
 * made one, so call this with the block locked against other processes.
 * Free the handle with throttle_free; the block stays the caller's.
 */
struct throttle *throttle_open(void *mem, size_t size);

/* A table in memory of its own, for one process (out of memory aborts). */
struct throttle *throttle_new(size_t capacity);

/* Frees the handle *t (and the memory throttle_new made; NULL is fine) and
 * sets *t to NULL. */
void throttle_free(struct throttle **t);

/*
 * ip is 16 bytes, an IPv4 address mapped as ::ffff:a.b.c.d; out is the part
 * that names a client: an IPv4 address whole, the first 64 bits of an IPv6
 * one (RFC 4291: the /64 is one network, and the host part is the client's
 * to pick), the rest zero.
 */
void throttle_prefix(const uint8_t ip[16], uint8_t out[16]);

/* True while key is locked out. An entry whose lockout or window has ended
 * is forgotten, so the key starts again with no failures. */
bool throttle_locked(struct throttle *t, const struct throttle_key *key, uint64_t now_ms);

/* Failures counted for key in its window now: 0 when none, the rule's
 * max_failures while it is locked out. */
unsigned throttle_failures(struct throttle *t, const struct throttle_key *key, uint64_t now_ms);

/*
 * Counts a failure against key under rule. The max_failures-th within the
 * window locks key out for lockout_ms from now. A failure while key is
 * locked out neither counts nor extends the lockout.
 */
void throttle_fail(struct throttle *t, const struct throttle_key *key,
                   const struct throttle_rule *rule, uint64_t now_ms);

/* Forgets key (its lockout too) after a successful login; no other key. */
void throttle_success(struct throttle *t, const struct throttle_key *key);

/* The number of keys the table holds at now_ms (ended entries left out),
 * never more than its capacity. */
size_t throttle_count(const struct throttle *t, uint64_t now_ms);

#endif
