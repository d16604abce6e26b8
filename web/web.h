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
 *       its port and an "autoconfig." or "autodiscover." in front)
 *   POST /autodiscover/autodiscover.xml, any case (Outlook; the domain from the
 *       <EMailAddress> of the request body, at most HTTP_BODY_MAX octets)
 *   GET /.well-known/autoconfig/mail/config.mobileconfig, GET /mail/config.mobileconfig
 *       (Apple; the domain as for Thunderbird)
 * A domain kotak does not serve is 404 (so is a Host that is an address
 * literal, naming no domain, when no address is given), a malformed address
 * or Host 400. The files name the address asked for only when it is a
 * user's login; else they are the domain's files for any user (Thunderbird's
 * %EMAILADDRESS%, no LoginName), so that nobody has kotak hand out a
 * profile for an address it does not have.
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
 * How the well-known files learn what kotak serves, on the loop (the
 * daemon's read-only store: an indexed read or two). With address NULL,
 * local says whether kotak serves domain (ASCII, lower case): 1 yes, 0 no.
 * With an address (as the client gave it, its domain being domain), whether
 * it is the login of a user of that served domain: 1 yes, 0 no (an alias
 * is no login, nor an address of a domain kotak does not serve). Negative
 * on an error. Until it is set, every domain is unknown (404).
 */
void web_set_domains(struct web *w,
                     int (*local)(void *ctx, const char *domain, const char *address),
                     void *ctx);

/* A session for a new connection on the [web] listener. */
void *web_session_new(struct web *w, struct service_conn *sc);

extern const struct session_ops web_session_ops;

/* Stops its timer; the sessions end with their connections. Frees *w when they have. */
void web_free(struct web **w);

#endif
