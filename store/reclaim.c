/*
 * reclaim.c — giving the pages of deleted mail back to the filesystem; see
 * store.h.
 *
 * A store made with auto_vacuum INCREMENTAL (every store since this, and
 * an older one once `kotak restore` has put it back) keeps the pages of
 * deleted mail on a free list, and PRAGMA incremental_vacuum moves pages
 * from the end of the file into those holes and cuts the end off. Done all
 * at once after a mailbox is emptied, that would hold the write lock for as
 * long as a hundred megabytes take to move, so it goes in steps, each its
 * own short transaction, and the file shrinks at the checkpoint that
 * follows each one.
 *
 * A step is sized to take about RECLAIM_STEP_MS: a step that moves pages
 * is slow, one that cuts free pages off the end is fast, so the size
 * halves or doubles with what the last one took. Between steps the writer
 * pauses (RECLAIM_PAUSE_MS), longer than SQLite's busy handler sleeps at
 * most, so that another process waiting for the lock gets it; and a step
 * never waits for the lock itself: it tries again later.
 *
 * A few free pages are the cheapest room for the next messages, so
 * reclaiming starts only once they are more than an eighth of the file and
 * RECLAIM_START_PAGES, and then goes on until RECLAIM_KEEP_PAGES are left.
 */
#include <stdio.h>
#include <time.h>

#include "store_int.h"

#define RECLAIM_START_PAGES 256 /* 1 MiB of 4 KiB pages */
#define RECLAIM_KEEP_PAGES 64
#define RECLAIM_STEP_MS 100
#define RECLAIM_STEP_MIN 64
#define RECLAIM_STEP_MAX 4096

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int store_reclaim_step(struct store *s)
{
    int free_pages = 0, pages = 0, rc = store_reclaims(s);
    if (rc <= 0) /* a store made before keeps its pages */
        return rc;
    if ((rc = store__pragma_int(s, "PRAGMA freelist_count", &free_pages)) < 0 ||
        (rc = store__pragma_int(s, "PRAGMA page_count", &pages)) < 0)
        return rc;
    if (!s->reclaiming)
        s->reclaiming = free_pages >= RECLAIM_START_PAGES && free_pages >= pages / 8;
    if (s->reclaiming && free_pages <= RECLAIM_KEEP_PAGES)
        s->reclaiming = false;
    if (!s->reclaiming)
        return 0;
    if (s->reclaim_step < RECLAIM_STEP_MIN)
        s->reclaim_step = RECLAIM_STEP_MIN;
    int step = free_pages - RECLAIM_KEEP_PAGES;
    if (step > s->reclaim_step)
        step = s->reclaim_step;
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA incremental_vacuum(%d)", step);
    int64_t start = now_ms();
    /* Another writer holds the lock: the next look comes soon enough. */
    sqlite3_busy_timeout(s->db, 0);
    rc = store__begin(s);
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
    if (rc < 0)
        return rc;
    if ((rc = store__exec(s, sql)) < 0) {
        store__rollback(s);
        return rc;
    }
    if ((rc = store__commit(s)) < 0)
        return rc;
    int64_t took = now_ms() - start;
    if (took < RECLAIM_STEP_MS / 2 && step == s->reclaim_step && s->reclaim_step < RECLAIM_STEP_MAX)
        s->reclaim_step *= 2;
    else if (took > RECLAIM_STEP_MS * 2 && s->reclaim_step > RECLAIM_STEP_MIN)
        s->reclaim_step /= 2;
    return 1;
}
