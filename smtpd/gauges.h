/*
 * gauges.h — what /metrics shows that only kotak-smtpd knows: the queue's
 * length and its oldest entry, the store's size, the certificate's expiry.
 *
 * The queue's figures are a query whose cost grows with the queue, so it
 * never runs on the loop: a timer asks for it every GAUGES_REFRESH_MS in
 * the thread pool, on a read-only connection of its own, and scrapes read
 * the last answer. However often /metrics and /healthz are asked, the store
 * is asked once a refresh.
 */
#ifndef KOTAK_GAUGES_H
#define KOTAK_GAUGES_H

#include <stdbool.h>
#include <uv.h>

#include "metrics.h"
#include "service.h"

#define GAUGES_REFRESH_MS 10000

struct gauges;

/* Starts the refreshes on loop for the store at store_path (opened by the first refresh, and
 * again after any failure). */
struct gauges *gauges_start(uv_loop_t *loop, const char *store_path, struct service *svc);

/* Fills g from the last refresh: queue_recipients -1 when the store has not answered lately. */
void gauges_fill(struct gauges *gs, struct metrics_gauges *g);

/* Whether a refresh runs in the pool now: the stop waits for it (service_check_stopped after). */
bool gauges_busy(const struct gauges *gs);

/* Stops the timer; a refresh under way still ends. */
void gauges_stop(struct gauges *gs);

/* Closes its store connection at once and frees the rest; call it once it is not busy. */
void gauges_free(struct gauges **gs);

#endif
