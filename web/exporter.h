/*
 * exporter.h — [metrics] listen, served by kotak-smtpd on the connection
 * core: GET /metrics answers both daemons' counters (common/metrics.h) and
 * the gauges kotak-smtpd finds when asked, in Prometheus's text format;
 * GET /healthz answers 200 when mail can flow (the store answers, and
 * kotak-pop3d beats when a POP3 listener is configured), else 503, with a
 * line for each part. One request a connection; no token: the address is
 * the protection (loopback, or a network only the monitor reaches).
 */
#ifndef KOTAK_EXPORTER_H
#define KOTAK_EXPORTER_H

#include "conf.h"
#include "metrics.h"
#include "service.h"

struct exporter;

/* Fills the gauges that only the serving daemon knows (its store, its certificate). */
typedef void exporter_gauges_fn(void *ctx, struct metrics_gauges *g);

struct exporter *exporter_new(const struct conf *conf, exporter_gauges_fn *gauges, void *ctx);
void exporter_free(struct exporter **e);

/* A session for a new connection on the [metrics] listener. */
void *exporter_session_new(struct exporter *e, struct service_conn *sc);

extern const struct session_ops exporter_session_ops;

#endif
