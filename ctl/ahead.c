/*
 * ahead.c — the producer thread of an import; see ahead.h.
 *
 * A ring of AHEAD_ITEMS slots under one mutex. A thread that waits is
 * woken for AHEAD_WAKE items or slots at once, or when the other is about
 * to wait itself: a wake-up per message cost more than the message (a
 * futex call each way; 386,000 of them for 100,000 messages). A slot's
 * buffer is freed once it held more than AHEAD_KEEP, so one large message
 * is not kept around in every slot.
 */
#include "ahead.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "util.h"

#define AHEAD_ITEMS 64
#define AHEAD_BYTES (32u << 20)
#define AHEAD_KEEP (1u << 20)
#define AHEAD_WAKE 16

struct ahead {
    size_t n;
    ahead_fill_fn *fill;
    void *ctx;
    struct ahead_item slot[AHEAD_ITEMS];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t filled, taken;
    size_t head, tail;                /* under mu: items made ready, and taken */
    size_t bytes;                     /* under mu: data in items ready and not taken */
    bool stop, failed;                /* under mu */
    bool producer_waits, taker_waits; /* under mu: on taken, on filled */
    bool taker_eager;                 /* under mu: it waits as long as it takes, wake it at once */
    char why[1024];                   /* once failed */
};

/* Set on the producer's thread alone: which thread runs is known without its pthread_t. */
static __thread struct ahead *producer_of;

static void *producer_main(void *arg)
{
    struct ahead *a = arg;
    producer_of = a;
    for (size_t i = 0; i < a->n; i++) {
        pthread_mutex_lock(&a->mu);
        while (!a->stop && (a->head - a->tail == AHEAD_ITEMS ||
                            (a->bytes >= AHEAD_BYTES && a->head != a->tail))) {
            if (a->taker_waits) /* full: whatever is ready goes now */
                pthread_cond_signal(&a->filled);
            a->producer_waits = true;
            pthread_cond_wait(&a->taken, &a->mu);
            a->producer_waits = false;
        }
        bool stop = a->stop;
        pthread_mutex_unlock(&a->mu);
        if (stop)
            break;
        struct ahead_item *it = &a->slot[i % AHEAD_ITEMS];
        struct buf data = it->data;
        buf_reset(&data);
        *it = (struct ahead_item){.data = data};
        a->fill(a->ctx, i, it);
        pthread_mutex_lock(&a->mu);
        a->head++;
        a->bytes += it->data.len;
        if (a->taker_waits && (a->taker_eager || a->head - a->tail >= AHEAD_WAKE ||
                               i + 1 == a->n || it->last))
            pthread_cond_signal(&a->filled);
        bool last = it->last;
        pthread_mutex_unlock(&a->mu);
        if (last)
            break;
    }
    return NULL;
}

void ahead_start(struct ahead **a_r, size_t n, ahead_fill_fn *fill, void *ctx)
{
    struct ahead *a = xcalloc(1, sizeof(*a));
    a->n = n;
    a->fill = fill;
    a->ctx = ctx;
    for (size_t i = 0; i < AHEAD_ITEMS; i++)
        buf_init(&a->slot[i].data, 0);
    pthread_mutex_init(&a->mu, NULL);
    /* Timed waits by the monotonic clock: a step of the wall clock changes no wait. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&a->filled, &attr);
    pthread_cond_init(&a->taken, &attr);
    pthread_condattr_destroy(&attr);
    *a_r = a; /* before the thread runs: what it calls may look at *a_r */
    int e = pthread_create(&a->thread, NULL, producer_main, a);
    if (e != 0)
        ctl_die("cannot start a thread to read with: %s", strerror(e));
}

struct ahead_item *ahead_next(struct ahead *a, int timeout_ms)
{
    struct timespec until;
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_MONOTONIC, &until); /* the condition variables' clock */
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&a->mu);
    while (a->head == a->tail && !a->failed && timeout_ms != 0) {
        if (a->producer_waits) /* cannot be: it waits only with items ready */
            pthread_cond_signal(&a->taken);
        a->taker_waits = true;
        /* A wait with no end follows a commit (ahead_next_or_commit): what comes is
         * stored at once, not after AHEAD_WAKE more. */
        a->taker_eager = timeout_ms < 0;
        int rc = timeout_ms < 0 ? pthread_cond_wait(&a->filled, &a->mu)
                                : pthread_cond_timedwait(&a->filled, &a->mu, &until);
        a->taker_waits = false;
        if (rc == ETIMEDOUT)
            break;
    }
    bool ready = a->head != a->tail;
    pthread_mutex_unlock(&a->mu);
    return ready ? &a->slot[a->tail % AHEAD_ITEMS] : NULL;
}

struct ahead_item *ahead_next_or_commit(struct ahead *a, struct store_import *imp, int *rc_r)
{
    *rc_r = 0;
    struct ahead_item *it = ahead_next(a, AHEAD_COMMIT_GRACE_MS);
    pthread_mutex_lock(&a->mu);
    bool failed = a->failed;
    pthread_mutex_unlock(&a->mu);
    if (it != NULL || failed)
        return it;
    if ((*rc_r = store_import_commit(imp)) < 0)
        return NULL;
    return ahead_next(a, -1);
}

void ahead_done(struct ahead *a, struct ahead_item *it)
{
    size_t len = it->data.len;
    if (it->data.cap > AHEAD_KEEP) {
        buf_free(&it->data);
        buf_init(&it->data, 0);
    }
    pthread_mutex_lock(&a->mu);
    a->tail++;
    a->bytes -= len;
    if (a->producer_waits &&
        (AHEAD_ITEMS - (a->head - a->tail) >= AHEAD_WAKE || a->head == a->tail))
        pthread_cond_signal(&a->taken);
    pthread_mutex_unlock(&a->mu);
}

const char *ahead_failure(const struct ahead *a)
{
    return a->why;
}

bool ahead_on_producer(const struct ahead *a)
{
    return a != NULL && producer_of == a;
}

void ahead_fail(struct ahead *a, const char *why)
{
    pthread_mutex_lock(&a->mu);
    snprintf(a->why, sizeof(a->why), "%s", why);
    a->failed = true;
    pthread_cond_signal(&a->filled);
    pthread_mutex_unlock(&a->mu);
    pthread_exit(NULL);
}

void ahead_fail_if_producer(const char *why)
{
    if (producer_of != NULL)
        ahead_fail(producer_of, why);
}

void ahead_stop(struct ahead *a)
{
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_signal(&a->taken);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    for (size_t i = 0; i < AHEAD_ITEMS; i++)
        buf_free(&a->slot[i].data);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->filled);
    pthread_cond_destroy(&a->taken);
    free(a);
}
