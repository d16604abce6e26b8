/*
 * gauges.c — the gauges of /metrics, refreshed off the loop; see gauges.h.
 */
#include "gauges.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "store.h"
#include "util.h"

/* An answer older than this counts as none: the store has stopped answering. */
#define GAUGES_STALE_MS (3 * GAUGES_REFRESH_MS)

struct gauges {
    uv_loop_t *loop;
    struct service *svc;
    struct store *db; /* read-only, used by the pool thread only while busy */
    char *store_path;
    uv_timer_t timer;
    uv_work_t work;
    bool busy;
    /* the pool's answer, read on the loop once the work is done */
    int rc;
    char err[512];
    int64_t recipients, oldest;
    /* the last good answer */
    bool answered;
    uint64_t answered_ms;
    int64_t last_recipients, last_oldest;
};

static void work(uv_work_t *w)
{
    struct gauges *gs = w->data;
    /* Opened here, and again after a failure: a store that could not be
     * opened at start (or went away) is tried at each refresh. */
    if (gs->db == NULL &&
        store_open(gs->store_path, STORE_READONLY, &gs->db, gs->err, sizeof(gs->err)) < 0) {
        gs->rc = -1;
        return;
    }
    gs->rc = store_queue_summary(gs->db, &gs->recipients, &gs->oldest);
    if (gs->rc < 0) {
        snprintf(gs->err, sizeof(gs->err), "%s", store_errmsg(gs->db));
        store_close(&gs->db);
    }
}

static void work_done(uv_work_t *w, int status)
{
    struct gauges *gs = w->data;
    gs->busy = false;
    if (status == 0 && gs->rc == 0) {
        gs->answered = true;
        gs->answered_ms = uv_now(gs->loop);
        gs->last_recipients = gs->recipients;
        gs->last_oldest = gs->oldest;
    } else if (status == 0) {
        char v[600];
        log_warn("smtp event=metrics-queue result=failed reason=%s",
                 log_value(v, sizeof(v), gs->err, strlen(gs->err)));
    }
    service_check_stopped(gs->svc); /* the stop may have waited for this */
}

static void refresh(uv_timer_t *t)
{
    struct gauges *gs = t->data;
    if (gs->busy)
        return;
    gs->busy = true;
    if (uv_queue_work(gs->loop, &gs->work, work, work_done) != 0)
        gs->busy = false;
}

struct gauges *gauges_start(uv_loop_t *loop, const char *store_path, struct service *svc)
{
    struct gauges *gs = xcalloc(1, sizeof(*gs));
    gs->loop = loop;
    gs->svc = svc;
    gs->store_path = xstrdup(store_path);
    gs->work.data = gs;
    uv_timer_init(loop, &gs->timer);
    gs->timer.data = gs;
    uv_timer_start(&gs->timer, refresh, 0, GAUGES_REFRESH_MS);
    uv_unref((uv_handle_t *)&gs->timer);
    return gs;
}

void gauges_fill(struct gauges *gs, struct metrics_gauges *g)
{
    g->queue_recipients = -1;
    if (gs != NULL && gs->answered && uv_now(gs->loop) - gs->answered_ms <= GAUGES_STALE_MS) {
        time_t now = time(NULL);
        g->queue_recipients = gs->last_recipients;
        g->queue_oldest_s = gs->last_oldest > 0 && now > gs->last_oldest ? now - gs->last_oldest : 0;
    }
    g->store_bytes = 0;
    if (gs != NULL) {
        struct stat st;
        char wal[PATH_MAX];
        snprintf(wal, sizeof(wal), "%s-wal", gs->store_path);
        if (stat(gs->store_path, &st) == 0)
            g->store_bytes += st.st_size;
        if (stat(wal, &st) == 0)
            g->store_bytes += st.st_size;
    }
}

bool gauges_busy(const struct gauges *gs)
{
    return gs != NULL && gs->busy;
}

void gauges_stop(struct gauges *gs)
{
    if (gs != NULL)
        uv_timer_stop(&gs->timer);
}

static void timer_closed(uv_handle_t *h)
{
    struct gauges *gs = h->data;
    free(gs->store_path);
    free(gs);
}

void gauges_free(struct gauges **gsp)
{
    struct gauges *gs = *gsp;
    *gsp = NULL;
    if (gs == NULL)
        return;
    /* Closed now, before the daemon's writers: the last connection to
     * close takes the WAL into the store, and a read-only one cannot. */
    store_close(&gs->db);
    uv_timer_stop(&gs->timer);
    uv_close((uv_handle_t *)&gs->timer, timer_closed);
}
