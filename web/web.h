/*
 * web.h — the live view's page and its stream of events ([web] listen),
 * served by kotak-smtpd on the connection core: `/` is the page, `/events`
 * the events of both daemons' rings (common/watch.h) as Server-Sent Events
 * (the HTML standard's text/event-stream), each with what the view says of
 * it (annotate.h). GET and HEAD only; the page reads, it changes nothing.
 *
 * A stream never holds up mail: each viewer reads the rings on its own, as
 * far as its socket takes (the core's backpressure); one that falls behind
 * is told how many events it missed, and is never waited for.
 */
#ifndef KOTAK_WEB_H
#define KOTAK_WEB_H

#include <uv.h>

#include "conf.h"
#include "service.h"

struct web;

/* The view's server for a daemon on loop; the rings are read from WATCH_DIR in the working folder. */
struct web *web_new(uv_loop_t *loop, const struct conf *conf);

/* A session for a new connection on the [web] listener. */
void *web_session_new(struct web *w, struct service_conn *sc);

extern const struct session_ops web_session_ops;

/* Stops its timer; the sessions end with their connections. Frees *w when they have. */
void web_free(struct web **w);

#endif
