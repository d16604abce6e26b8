/*
 * exporter.c — /metrics and /healthz; see exporter.h.
 */
#include "exporter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "http_request.h"
#include "util.h"

#define EXPORTER_OUT_MAX (64 * 1024) /* the exposition is about 6 KiB */

struct exporter {
    const struct conf *conf;
    exporter_gauges_fn *gauges;
    void *ctx;
};

struct exporter_session {
    struct exporter *e;
    bool done;
    struct buf out;
};

struct exporter *exporter_new(const struct conf *conf, exporter_gauges_fn *gauges, void *ctx)
{
    struct exporter *e = xcalloc(1, sizeof(*e));
    e->conf = conf;
    e->gauges = gauges;
    e->ctx = ctx;
    return e;
}

void exporter_free(struct exporter **e)
{
    free(*e);
    *e = NULL;
}

void *exporter_session_new(struct exporter *e, struct service_conn *sc)
{
    (void)sc;
    struct exporter_session *s = xcalloc(1, sizeof(*s));
    s->e = e;
    buf_init(&s->out, EXPORTER_OUT_MAX);
    return s;
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Bad Request";
    }
}

/* The head, then body[0..len) unless the request was HEAD; the connection closes after it. */
static void respond(struct exporter_session *s, bool head, int status, const char *type,
                    const char *body, size_t len)
{
    buf_printf(&s->out,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s"
               "Connection: close\r\n\r\n",
               status, reason_of(status), type, len,
               status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (!head)
        buf_append(&s->out, body, len);
    s->done = true;
}

static void respond_error(struct exporter_session *s, bool head, int status)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, reason_of(status));
    respond(s, head, status, "text/plain; charset=utf-8", body, (size_t)n);
}

/* A POP3 listener is set: kotak-pop3d is meant to run. */
static bool want_pop3(const struct conf *conf)
{
    return conf->listeners[CONF_POP3].n > 0 || conf->listeners[CONF_POP3S].n > 0;
}

static void serve_metrics(struct exporter_session *s, bool head)
{
    struct metrics_view smtpd, pop3d;
    struct metrics_gauges g = {.queue_recipients = -1, .pop3_wanted = want_pop3(s->e->conf)};
    metrics_read("smtpd", &smtpd);
    metrics_read("pop3d", &pop3d);
    s->e->gauges(s->e->ctx, &g);
    struct buf body;
    buf_init(&body, EXPORTER_OUT_MAX / 2);
    metrics_render(&body, &smtpd, &pop3d, &g);
    respond(s, head, 200, "text/plain; version=0.0.4; charset=utf-8", (const char *)body.data,
            body.len);
    buf_free(&body);
}

/* 200 when mail flows: the store answers, and kotak-pop3d beats when it is meant to run. */
static void serve_health(struct exporter_session *s, bool head)
{
    const struct conf *conf = s->e->conf;
    struct metrics_view pop3d;
    /* The store answered within the last refreshes (gauges.h): never a query here. */
    struct metrics_gauges g = {.queue_recipients = -1};
    metrics_read("pop3d", &pop3d);
    s->e->gauges(s->e->ctx, &g);
    bool pop3_wanted = want_pop3(conf);
    bool pop3_up = metrics_alive(&pop3d);
    bool store_ok = g.queue_recipients >= 0;
    bool ok = store_ok && (pop3_up || !pop3_wanted);
    char body[256];
    int n = snprintf(body, sizeof(body), "%s\nsmtpd: up\npop3d: %s\nstore: %s\n",
                     ok ? "ok" : "unhealthy",
                     pop3_up ? "up" : !pop3_wanted ? "off (no POP3 listener)"
                              : !pop3d.present   ? "down (it never started with [metrics])"
                              : pop3d.stopped    ? "down (stopped)"
                                                 : "down (no beat for 15 s)",
                     store_ok ? "ok" : "not answering");
    respond(s, head, ok ? 200 : 503, "text/plain; charset=utf-8", body, (size_t)n);
}

static void s_feed(void *p, const char *in, size_t n, size_t *used_r)
{
    struct exporter_session *s = p;
    *used_r = n; /* one request a connection: what follows it is not read */
    if (s->done)
        return;
    struct http_request r;
    int rc = http_request_parse(in, n, &r);
    if (rc == 0) {
        *used_r = 0; /* wait for the rest of the head */
        return;
    }
    if (rc < 0)
        respond_error(s, false, -rc);
    else if (r.post)
        respond_error(s, false, 405);
    else if (strcmp(r.path, "/metrics") == 0)
        serve_metrics(s, r.head);
    else if (strcmp(r.path, "/healthz") == 0)
        serve_health(s, r.head);
    else
        respond_error(s, r.head, 404);
}

static void s_greet(void *p)
{
    (void)p;
}

static struct buf *s_output(void *p)
{
    return &((struct exporter_session *)p)->out;
}

static bool s_false(const void *p)
{
    (void)p;
    return false;
}

static void s_pump(void *p)
{
    (void)p;
}

static enum session_action s_action(const void *p)
{
    return ((const struct exporter_session *)p)->done ? SESSION_ACT_CLOSE : SESSION_ACT_NONE;
}

static void s_tls_started(void *p, const char *version, const char *cipher, const char *cert)
{
    (void)p, (void)version, (void)cipher, (void)cert;
}

static void s_auth_done(void *p, int rc, int64_t user_id)
{
    (void)p, (void)rc, (void)user_id;
}

static void s_end(void *p)
{
    ((struct exporter_session *)p)->done = true;
}

static void s_free(void *p)
{
    struct exporter_session *s = p;
    buf_free(&s->out);
    free(s);
}

const struct session_ops exporter_session_ops = {
    .greet = s_greet,
    .feed = s_feed,
    .output = s_output,
    .busy = s_false,
    .sending = s_false,
    .pump = s_pump,
    .action = s_action,
    .engaged = s_false, /* a scrape is the first to go when the server is pressed */
    .tls_started = s_tls_started,
    .auth_done = s_auth_done,
    .timeout = s_end,
    .shutdown = s_end,
    .free = s_free,
};
