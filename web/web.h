/*
 * web.h — the live view's page and its stream of events ([web] listen),
 * served by kotak-smtpd on the connection core: `/` is the page, `/events`
 * the events of both daemons' rings (common/watch.h) as Server-Sent Events
 * (the HTML standard's text/event-stream), each with what the view says of
 * it (annotate.h). GET and HEAD only; the page reads, it changes nothing.
 *
 * The same listener serves, to anyone and without [web] token (clients do
 * not know it), the files mail clients set themselves up from
 * (common/clientconfig.h), for the domains kotak serves:
 *   GET /.well-known/autoconfig/mail/config-v1.1.xml, GET /mail/config-v1.1.xml
 *       (Thunderbird; the domain from ?emailaddress=, else from Host without
 *       "autoconfig.")
 *   POST /autodiscover/autodiscover.xml, any case (Outlook; the domain from the
 *       <EMailAddress> of the request body, at most HTTP_BODY_MAX octets)
 *   GET /.well-known/autoconfig/mail/config.mobileconfig, GET /mail/config.mobileconfig
 *       (Apple; the domain as for Thunderbird)
 * A domain kotak does not serve is 404, a malformed address 400.
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

/*
 * How the well-known files learn whether kotak serves a domain (ASCII, lower
 * case): local returns 1 yes, 0 no, negative on an error, on the loop (the
 * daemon's read-only store: one indexed read). Until it is set, every domain is
 * unknown (404).
 */
void web_set_domains(struct web *w, int (*local)(void *ctx, const char *domain), void *ctx);

/* A session for a new connection on the [web] listener. */
void *web_session_new(struct web *w, struct service_conn *sc);

extern const struct session_ops web_session_ops;

/* Stops its timer; the sessions end with their connections. Frees *w when they have. */
void web_free(struct web **w);

#endif
