/*
 * ahead.h — the messages of an import made ready ahead, on a thread of
 * their own, while the main thread stores them: `kotak import maildir`
 * reads, converts and hashes files there, `kotak import pop3` reads RETR
 * replies and hashes them. Storing is about half the work, so an import
 * keeps two cores busy.
 *
 * The producer fills item i, for i from 0 to n - 1 in order, through a
 * callback; the main thread takes them in the same order. At most
 * AHEAD_ITEMS are ready at once, and no more than AHEAD_BYTES of data
 * unless one alone is larger. A failure is either told in the item (the
 * callback's rc: a file left out, say) or ends the producer
 * (ahead_fail): the main thread then takes every item made before it and
 * learns the failure after them, so it can store what came and die with
 * one line, as it would have without the thread.
 */
#ifndef KOTAK_AHEAD_H
#define KOTAK_AHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "store.h"

struct ahead_item {
    int rc;          /* the callback's verdict, in its own codes */
    int err;         /* an errno, when rc calls for one */
    uid_t uid;       /* an owner, when rc calls for one */
    size_t size;     /* a size, when rc calls for one */
    struct buf data; /* the message, ready to store (reused from item to item) */
    uint8_t digest[STORE_DIGEST_SIZE];
    int64_t time;    /* an arrival time, when rc calls for one */
    int file;        /* which file of the source, when rc calls for it */
    size_t number, line; /* where in it */
    char uidl[128];  /* a UIDL found in the message, "" for none */
    bool last;       /* set by the callback: no item comes after this one */
};

struct ahead;

/*
 * Fills item i (its data reset to empty, its other fields to 0) on the
 * producer's thread; with n unknown (SIZE_MAX), the callback sets last on
 * the item after which none comes.
 */
typedef void ahead_fill_fn(void *ctx, size_t i, struct ahead_item *it);

/*
 * Starts the producer on n items, *a_r set before it runs (its callback may
 * look at *a_r); dies (ctl_die) when no thread can be made.
 */
void ahead_start(struct ahead **a_r, size_t n, ahead_fill_fn *fill, void *ctx);

/*
 * The next item, waiting at most timeout_ms for it (0: not at all, -1: as
 * long as it takes); NULL when it did not come in time, or once the
 * producer failed (ahead_failure says why, "" when it did not).
 */
struct ahead_item *ahead_next(struct ahead *a, int timeout_ms);

/*
 * The next item for an import's main thread, which holds imp's open batch
 * (and with it the store's write lock, or a read snapshot): when the item
 * is not ready within AHEAD_COMMIT_GRACE_MS, the batch commits before the
 * thread waits on, since the producer may be waiting on a server or a
 * disk. Not before every short wait: the store keeps up with the
 * producer, so it would often find nothing ready and commit one message at
 * a time. NULL once the producer failed (ahead_failure), or with *rc_r the
 * commit's failure (0 otherwise).
 */
#define AHEAD_COMMIT_GRACE_MS 20
struct ahead_item *ahead_next_or_commit(struct ahead *a, struct store_import *imp, int *rc_r);

/* Gives the item of ahead_next back. */
void ahead_done(struct ahead *a, struct ahead_item *it);

/* Why the producer failed (ahead_fail's text), "" while it did not. */
const char *ahead_failure(const struct ahead *a);

/* Whether the caller runs on a's producer thread (a may be NULL: no). */
bool ahead_on_producer(const struct ahead *a);

/* On the producer thread: ends it with why, told to the main thread after the items before. */
void ahead_fail(struct ahead *a, const char *why) __attribute__((noreturn));

/* ahead_fail when called on a producer thread (ctl_die's way out there), else nothing. */
void ahead_fail_if_producer(const char *why);

/* Stops the producer (also halfway), waits for it and frees a. */
void ahead_stop(struct ahead *a);

#endif
