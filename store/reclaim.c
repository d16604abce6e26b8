/*
 * reclaim.c — giving the pages of deleted mail back to the filesystem; see
 * store.h.
 *
 * A store made (or converted, schema 9) with auto_vacuum INCREMENTAL keeps
 * the pages of deleted mail on a free list, and PRAGMA incremental_vacuum
 * moves pages from the end of the file into those holes and cuts the end
 * off. Done all at once after a mailbox is emptied, that would hold the
 * write lock for as long as a hundred megabytes take to move, so it goes
 * in steps of RECLAIM_STEP_PAGES, each its own short transaction, and the
 * file shrinks at the checkpoint that follows each one.
 *
 * A few free pages are the cheapest room for the next messages, so
 * reclaiming starts only once they are more than an eighth of the file and
 * RECLAIM_START_PAGES, and then goes on until RECLAIM_KEEP_PAGES are left.
 */
#include <stdio.h>

#include "store_int.h"

#define RECLAIM_STEP_PAGES 512  /* 2 MiB of 4 KiB pages per transaction */
#define RECLAIM_START_PAGES 256 /* 1 MiB */
#define RECLAIM_KEEP_PAGES 64

static int pragma_value(struct store *s, const char *sql, int *v_r)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store__rc(s, rc);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v_r = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : store__rc(s, rc);
}

int store_reclaim_step(struct store *s)
{
    int mode = 0, free_pages = 0, pages = 0, rc;
    if ((rc = pragma_value(s, "PRAGMA auto_vacuum", &mode)) < 0)
        return rc;
    if (mode != 2) /* INCREMENTAL; a store whose conversion failed keeps its pages */
        return 0;
    if ((rc = pragma_value(s, "PRAGMA freelist_count", &free_pages)) < 0 ||
        (rc = pragma_value(s, "PRAGMA page_count", &pages)) < 0)
        return rc;
    if (!s->reclaiming)
        s->reclaiming = free_pages >= RECLAIM_START_PAGES && free_pages >= pages / 8;
    if (s->reclaiming && free_pages <= RECLAIM_KEEP_PAGES)
        s->reclaiming = false;
    if (!s->reclaiming)
        return 0;
    int step = free_pages - RECLAIM_KEEP_PAGES;
    if (step > RECLAIM_STEP_PAGES)
        step = RECLAIM_STEP_PAGES;
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA incremental_vacuum(%d)", step);
    if ((rc = store__begin(s)) < 0)
        return rc;
    if ((rc = store__exec(s, sql)) < 0) {
        store__rollback(s);
        return rc;
    }
    return (rc = store__commit(s)) < 0 ? rc : 1;
}
