/*
 * checkpointer.c — a thread that copies the WAL back into the database
 * file beside a writer that keeps committing; see store.h.
 *
 * Checkpoints start once the WAL holds CHECKPOINT_PAGES (16 MiB of 4 KiB
 * pages). SQLite's default is 1000, but the same few index pages are in
 * every commit and each checkpoint copies them again: at 4000, kotak-smtpd
 * spent 7% less CPU per 1 KiB message in an A/B run of 20 rounds. Under a
 * steady stream of commits such a checkpoint never catches up with the
 * last one, and the WAL would grow without end; past WAL_MAX_PAGES the
 * writer itself checkpoints between two commits, when nothing is being
 * written, so that the WAL is copied out whole and starts again from its
 * beginning.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "store_int.h"
#include "util.h"

#define CHECKPOINT_PAGES 4000
#define WAL_MAX_PAGES 8000

struct store_checkpointer {
    struct store *writer, *own;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool wanted, stop;   /* under mu */
    atomic_int failed;   /* the code of a checkpoint that failed, not yet told; 0: none */
};

static void *checkpoint_main(void *arg)
{
    struct store_checkpointer *cp = arg;
    pthread_mutex_lock(&cp->mu);
    for (;;) {
        while (!cp->wanted && !cp->stop)
            pthread_cond_wait(&cp->cv, &cp->mu);
        if (!cp->wanted)
            break;
        pthread_mutex_unlock(&cp->mu);
        int rc = store_checkpoint(cp->own);
        if (rc < 0)
            atomic_store(&cp->failed, rc);
        pthread_mutex_lock(&cp->mu);
        cp->wanted = false;
    }
    pthread_mutex_unlock(&cp->mu);
    return NULL;
}

struct store_checkpointer *store_checkpointer_start(struct store *writer, struct store *own)
{
    struct store_checkpointer *cp = xcalloc(1, sizeof(*cp));
    cp->writer = writer;
    cp->own = own;
    pthread_mutex_init(&cp->mu, NULL);
    pthread_cond_init(&cp->cv, NULL);
    if (pthread_create(&cp->thread, NULL, checkpoint_main, cp) != 0) {
        pthread_mutex_destroy(&cp->mu);
        pthread_cond_destroy(&cp->cv);
        store_close(&cp->own);
        free(cp);
        return NULL;
    }
    store_defer_checkpoints(writer);
    return cp;
}

static void wake(struct store_checkpointer *cp)
{
    pthread_mutex_lock(&cp->mu);
    if (!cp->wanted) {
        cp->wanted = true;
        pthread_cond_signal(&cp->cv);
    }
    pthread_mutex_unlock(&cp->mu);
}

int store_checkpointer_committed(struct store_checkpointer *cp, bool now)
{
    int rc = 0;
    int pages = store_wal_pages(cp->writer);
    if (pages >= WAL_MAX_PAGES)
        rc = store_checkpoint(cp->writer);
    else if (pages >= CHECKPOINT_PAGES || now)
        wake(cp);
    int failed = atomic_exchange(&cp->failed, 0);
    return rc < 0 ? rc : failed;
}

void store_checkpointer_stop(struct store_checkpointer **cp_r)
{
    struct store_checkpointer *cp = *cp_r;
    if (cp == NULL)
        return;
    *cp_r = NULL;
    pthread_mutex_lock(&cp->mu);
    cp->stop = true;
    pthread_cond_signal(&cp->cv);
    pthread_mutex_unlock(&cp->mu);
    pthread_join(cp->thread, NULL);
    pthread_mutex_destroy(&cp->mu);
    pthread_cond_destroy(&cp->cv);
    store_close(&cp->own);
    free(cp);
}
