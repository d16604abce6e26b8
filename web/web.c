/*
 * web.c — the live view's page and event stream; see web.h.
 *
 * One session a connection: it reads one request head (http_request.c),
 * answers the page, an error, or starts a stream. A stream holds a reader
 * of each ring; the core pumps events into it while its socket keeps up
 * (sending/pump), and a timer of the server's kicks streams that have new
 * events or owe a heartbeat. Every response ends the connection (the
 * browser's EventSource reconnects by itself, with Last-Event-ID).
 *
 * The clients' set-up files (web.h) are routed before the view's checks of
 * Host and token: they are public, asked for by a name that is the mail
 * domain's (autoconfig.DOMAIN), and built afresh for each request by
 * common/clientconfig.c from the config's listeners.
 */
#include "web.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "annotate.h"
#include "buf.h"
#include "clientconfig.h"
#include "http_request.h"
#include "util.h"
#include "watch.h"

#define WEB_OUT_MAX (256 * 1024)
#define WEB_TICK_MS 200
#define WEB_HEARTBEAT_MS 15000
#define WEB_HISTORY 400      /* events of each ring a new viewer gets first */
#define WEB_PUMP_EVENTS 64   /* events added per pump */
/* Events a stream may send per tick (5 a second): a viewer catching up
 * (4,095 behind, a reconnect with an old id) is fed over several ticks,
 * never in one long turn of the loop that mail sessions wait on. */
#define WEB_TICK_EVENTS 200
/* ... and all streams together: a viewer that opens stream after stream
 * (each new one with a fresh budget) gets no more of the loop than that. */
#define WEB_TICK_EVENTS_ALL 1000
#define WEB_STREAMS_MAX 32        /* viewers at once: more get 503 */
#define WEB_STREAMS_PER_ADDRESS 8 /* from one address: more get 429 */
/* A stream ends after this long and the browser reconnects where it was
 * (Last-Event-ID): one that never reads holds a slot no longer than that. */
#define WEB_STREAM_MAX_MS (10 * 60 * 1000)

extern const char web_page[]; /* page.c */

struct web_session;

struct web {
    uv_loop_t *loop;
    const struct conf *conf;
    uv_timer_t tick;
    struct web_session *streams; /* sessions streaming events */
    size_t n_streams;
    uint64_t ticks;
    unsigned budget; /* events all streams may still send this tick */
    int (*domain_local)(void *ctx, const char *domain, const char *address); /* web_set_domains */
    void *domain_ctx;
};

enum web_state { WS_REQUEST, WS_STREAM, WS_DONE };

struct web_session {
    struct web *w;
    struct service_conn *sc;
    enum web_state state;
    bool close;
    struct buf out;
    struct web_session *prev, *next; /* in w->streams */
    struct watch_reader *rings[2];   /* smtp, pop3 */
    uint64_t from[2];                /* where each ring is read from once it opens */
    uint64_t last_out;               /* uv_now of the last event or heartbeat */
    uint64_t started;                /* uv_now of its start */
    unsigned budget;                 /* events it may still send this tick */
    struct watch_event ev;
};

static const char *const ring_names[2] = {"smtp", "pop3"};

static void on_tick(uv_timer_t *t);

/* --- answers ----------------------------------------------------------------- */

/* extra: more header lines, each ending in CRLF, or "". */
static void respond(struct web_session *s, bool head, int status, const char *reason,
                    const char *type, const char *extra, const char *body, size_t body_len)
{
    buf_printf(&s->out,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
               "Content-Security-Policy: default-src 'self'; script-src 'unsafe-inline'; "
               "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'\r\nReferrer-Policy: no-referrer\r\n%s"
               "Connection: close\r\n\r\n",
               status, reason, type, body_len, extra);
    if (!head)
        buf_append(&s->out, body, body_len);
    s->state = WS_DONE;
    s->close = true;
}

static void respond_status(struct web_session *s, bool head, int status, const char *extra)
{
    const char *reason = status == 403   ? "Forbidden"
                         : status == 503 ? "Service Unavailable"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 411 ? "Length Required"
                         : status == 413 ? "Content Too Large"
                         : status == 414 ? "URI Too Long"
                         : status == 429 ? "Too Many Requests"
                         : status == 431 ? "Request Header Fields Too Large"
                         : status == 505 ? "HTTP Version Not Supported"
                                         : "Bad Request";
    char body[96];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, reason);
    respond(s, head, status, reason, "text/plain; charset=utf-8", extra, body, (size_t)n);
}

static void respond_error(struct web_session *s, bool head, int status)
{
    respond_status(s, head, status, status == 405 ? "Allow: GET, HEAD\r\n" : "");
}

/* Whether the request carries [web] token (constant time in the token's length). */
static bool token_ok(const struct web *w, const struct http_request *r)
{
    const char *want = w->conf->web_token;
    if (want[0] == '\0')
        return true;
    char got[256] = "";
    if (!http_query_param(r->query, "token", got, sizeof(got)))
        return false;
    size_t n = strlen(want);
    unsigned char diff = strlen(got) != n;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(want[i] ^ got[i < sizeof(got) ? i : 0]);
    return diff == 0;
}

/* --- the stream ---------------------------------------------------------------- */

/* Appends s[0..n) as a JSON string: ASCII as it is, the rest escaped, so any octet is valid. */
static void json_string(struct buf *b, const char *s, size_t n)
{
    static const char hexdig[] = "0123456789abcdef";
    char out[6 * WATCH_TEXT_MAX + 2]; /* each octet at most \u00XX */
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n && o + 7 <= sizeof(out); i++) { /* room for \u00XX and the quote */
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&') {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hexdig[c >> 4];
            out[o + 5] = hexdig[c & 15];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    buf_append(b, out, o);
}

static void json_field(struct buf *b, const char *name, const char *value)
{
    buf_printf(b, ",\"%s\":", name);
    json_string(b, value, strlen(value));
}

/* Opens the rings not open yet: a daemon may start after the viewer came. */
static void open_rings(struct web_session *s)
{
    for (int i = 0; i < 2; i++) {
        if (s->rings[i] != NULL)
            continue;
        char path[64], err[256];
        snprintf(path, sizeof(path), "%s/%s.ring", WATCH_DIR, ring_names[i]);
        s->rings[i] = watch_reader_open(path, s->from[i], WEB_HISTORY, err, sizeof(err));
        if (s->rings[i] == NULL)
            continue;
        watch_reader_keepalive(s->rings[i]);
        s->from[i] = watch_reader_position(s->rings[i]); /* the ids say where it stands */
    }
}

/* An SMTP reply line with more to come ("250-"): the last one carries the note. */
static bool more_follows(const struct watch_event *ev)
{
    return ev->proto == WATCH_SMTP && ev->len > 3 && ev->text[3] == '-';
}

/* The replies RFC 5321 4.3.2 lists for verb (and 421, 500, 501, which any may get), for the page
 * to flag a reply that is none of them. */
static void put_replies(struct buf *b, const char *verb)
{
    const int *codes = annotate_smtp_replies(verb);
    if (codes == NULL)
        return;
    buf_append_str(b, ",\"replies\":[421,500,501");
    for (const int *c = codes; *c != 0; c++)
        buf_printf(b, ",%d", *c);
    buf_append_str(b, "]");
}

/* One event as "id: ...\ndata: {...}\n\n". */
static void put_event(struct web_session *s, int ring, const struct watch_event *ev)
{
    struct buf *b = &s->out;
    uint64_t ids[2] = {s->from[0], s->from[1]};
    ids[ring] = ev->seq + 1;
    s->from[ring] = ev->seq + 1;
    buf_printf(b, "id: %llu-%llu\ndata: {\"proto\":\"%s\",\"kind\":\"%s\",\"seq\":%llu,\"t\":%llu,"
                  "\"tls\":%s,\"cut\":%s",
               (unsigned long long)ids[0], (unsigned long long)ids[1], ring_names[ring],
               watch_kind_name(ev->kind), (unsigned long long)ev->seq,
               (unsigned long long)(ev->time_us / 1000), ev->tls ? "true" : "false",
               ev->cut ? "true" : "false");
    buf_append_str(b, ",\"session\":");
    json_string(b, ev->session, strlen(ev->session));
    buf_append_str(b, ",\"text\":");
    json_string(b, ev->text, ev->len);
    struct annotation a;
    char note[512];
    if (ev->kind == WATCH_CLIENT && annotate_command(ev->proto, ev->text, ev->len, &a)) {
        json_field(b, "command", a.name);
        json_field(b, "ref", a.ref);
        json_field(b, "url", a.url);
        json_field(b, "what", a.what);
        if (ev->proto == WATCH_SMTP)
            put_replies(b, a.name);
    } else if (ev->kind == WATCH_OPEN && ev->proto == WATCH_SMTP) {
        put_replies(b, ""); /* the greeting's */
    } else if (ev->kind == WATCH_SERVER && !more_follows(ev) &&
               annotate_reply(ev->proto, ev->text, ev->len, note, sizeof(note)) > 0) {
        json_field(b, "note", note);
    }
    buf_append_str(b, "}\n\n");
}

static bool events_waiting(struct web_session *s)
{
    for (int i = 0; i < 2; i++) {
        struct watch_reader *r = s->rings[i];
        if (r != NULL && watch_reader_pending(r))
            return true;
    }
    return false;
}

/* Whether one more event fits the output (one is under 8 KiB: 960 octets, each at most \u00XX). */
static bool room_for_event(const struct web_session *s)
{
    return s->out.len + 16 * 1024 <= WEB_OUT_MAX;
}

static bool has_budget(const struct web_session *s)
{
    return s->budget > 0 && s->w->budget > 0;
}

static void stream_pump(struct web_session *s)
{
    int added = 0;
    for (int i = 0; i < 2 && added < WEB_PUMP_EVENTS && has_budget(s); i++) {
        while (s->rings[i] != NULL && added < WEB_PUMP_EVENTS && has_budget(s) &&
               room_for_event(s)) {
            long rc = watch_reader_next(s->rings[i], &s->ev);
            if (rc == 0)
                break;
            if (rc < 0) {
                s->from[i] += (uint64_t)-rc;
                buf_printf(&s->out, "data: {\"proto\":\"%s\",\"kind\":\"skipped\",\"n\":%ld}\n\n",
                           ring_names[i], -rc);
            } else {
                put_event(s, i, &s->ev);
            }
            added++;
            s->budget--;
            s->w->budget--;
        }
    }
    if (added > 0)
        s->last_out = uv_now(s->w->loop);
}

static void stream_start(struct web_session *s, const struct http_request *r)
{
    /* Last-Event-ID "SMTP-POP3": the next event of each ring the viewer wants. */
    unsigned long long a = 0, b = 0;
    char tail;
    if (r->last_event_id[0] != '\0' &&
        sscanf(r->last_event_id, "%llu-%llu%c", &a, &b, &tail) == 2) {
        s->from[0] = a;
        s->from[1] = b;
    }
    buf_append_str(&s->out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                            "Connection: close\r\n\r\nretry: 2000\n\n");
    if (r->head) {
        s->state = WS_DONE;
        s->close = true;
        return;
    }
    s->state = WS_STREAM;
    s->started = s->last_out = uv_now(s->w->loop);
    s->budget = WEB_TICK_EVENTS;
    open_rings(s);
    struct web *w = s->w;
    if (w->n_streams == 0) { /* the timer runs while someone watches */
        w->budget = WEB_TICK_EVENTS_ALL;
        uv_timer_start(&w->tick, on_tick, WEB_TICK_MS, WEB_TICK_MS);
    }
    s->next = w->streams;
    if (w->streams != NULL)
        w->streams->prev = s;
    w->streams = s;
    w->n_streams++;
}

static void stream_stop(struct web_session *s)
{
    if (s->state != WS_STREAM)
        return;
    struct web *w = s->w;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        w->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    if (--w->n_streams == 0)
        uv_timer_stop(&w->tick);
    for (int i = 0; i < 2; i++)
        watch_reader_close(&s->rings[i]);
    s->state = WS_DONE;
}

/* Every tick: viewers keep the daemons recording, and streams with news are woken. */
static void on_tick(uv_timer_t *t)
{
    struct web *w = t->data;
    uint64_t now = uv_now(w->loop);
    bool second = w->ticks++ % (1000 / WEB_TICK_MS) == 0;
    w->budget = WEB_TICK_EVENTS_ALL;
    for (struct web_session *s = w->streams; s != NULL;) {
        struct web_session *next = s->next; /* a kick may end s */
        s->budget = WEB_TICK_EVENTS;
        if (now - s->started >= WEB_STREAM_MAX_MS) {
            stream_stop(s); /* the browser comes back with Last-Event-ID */
            s->close = true;
            service_kick(s->sc);
            s = next;
            continue;
        }
        if (second) /* a daemon that was not there may have started */
            open_rings(s);
        for (int i = 0; i < 2; i++)
            if (s->rings[i] != NULL)
                watch_reader_keepalive(s->rings[i]);
        if (s->out.len == 0 && now - s->last_out >= WEB_HEARTBEAT_MS) {
            buf_append_str(&s->out, ": still here\n\n"); /* keeps proxies and the idle timer content */
            s->last_out = now;
        }
        if (s->out.len > 0 || events_waiting(s))
            service_kick(s->sc);
        s = next;
    }
}

/* --- the session, as the core sees it ------------------------------------------ */

void *web_session_new(struct web *w, struct service_conn *sc)
{
    struct web_session *s = xcalloc(1, sizeof(*s));
    s->w = w;
    s->sc = sc;
    buf_init(&s->out, WEB_OUT_MAX);
    return s;
}

static void s_greet(void *p)
{
    (void)p;
}

/* Streams open from s's address. */
static size_t streams_from(const struct web *w, const struct web_session *s)
{
    size_t n = 0;
    if (s->sc->net == NULL)
        return 0;
    const uint8_t *ip = net_conn_peer16(s->sc->net);
    for (const struct web_session *o = w->streams; o != NULL; o = o->next)
        if (o->sc->net != NULL && memcmp(net_conn_peer16(o->sc->net), ip, 16) == 0)
            n++;
    return n;
}

/* --- the clients' set-up files ------------------------------------------------- */

enum web_file { WF_NONE, WF_AUTOCONFIG, WF_AUTODISCOVER, WF_MOBILECONFIG };

static enum web_file well_known(const char *path)
{
    if (strcmp(path, "/.well-known/autoconfig/mail/config-v1.1.xml") == 0 ||
        strcmp(path, "/mail/config-v1.1.xml") == 0)
        return WF_AUTOCONFIG;
    if (strcasecmp(path, "/autodiscover/autodiscover.xml") == 0)
        return WF_AUTODISCOVER; /* Outlook writes it /Autodiscover/Autodiscover.xml */
    if (strcmp(path, "/.well-known/autoconfig/mail/config.mobileconfig") == 0 ||
        strcmp(path, "/mail/config.mobileconfig") == 0)
        return WF_MOBILECONFIG;
    return WF_NONE;
}

/*
 * The name in a Host field (RFC 9110 7.2: uri-host [":" port], the host of
 * RFC 3986 3.2.2) into name[0..size), its port and a final dot dropped.
 * Returns 1 for a name, 0 for an address literal (an IPv4 address, or
 * "[...]": IPv6 or IPvFuture), which names no domain, -1 for a Host that is
 * none (empty, an unclosed "[", a port that is not digits).
 */
static int host_name(const char *host, char *name, size_t size)
{
    const char *end;
    bool literal = host[0] == '[';
    if (literal) {
        end = strchr(host, ']');
        if (end == NULL)
            return -1;
        end++;
    } else {
        end = host + strcspn(host, ":");
    }
    if (*end == ':' && strspn(end + 1, "0123456789") != strlen(end + 1))
        return -1;
    if (*end != ':' && *end != '\0')
        return -1; /* "[::1]x" */
    size_t n = (size_t)(end - host);
    if (n == 0 || n >= size)
        return -1;
    if (literal)
        return 0;
    memcpy(name, host, n);
    if (name[n - 1] == '.') /* an absolute name, as "example.org.:80" */
        n--;
    name[n] = '\0';
    struct in_addr a4;
    return n == 0 ? -1 : inet_pton(AF_INET, name, &a4) == 1 ? 0 : 1;
}

/*
 * The domain a GET asks about, into domain[ADDR_DOMAIN_MAX + 1], and the
 * address when the client gave one (else email[0] is ""): ?emailaddress=,
 * else Host without its port and an "autoconfig." or "autodiscover." in
 * front (the names clientconfig_dns publishes). Returns 0, or the status to
 * answer (400: an address or Host that is none; 404: a Host that is an
 * address literal, naming no domain).
 */
static int asked_domain(const struct http_request *r, const char *body, size_t body_len,
                        char email[CLIENTCONFIG_EMAIL_MAX + 1], char domain[ADDR_DOMAIN_MAX + 1])
{
    email[0] = '\0';
    if (body != NULL) {
        if (clientconfig_request_email(body, body_len, email, CLIENTCONFIG_EMAIL_MAX + 1) != 1)
            return 400;
    } else if (!http_query_param(r->query, "emailaddress", email, CLIENTCONFIG_EMAIL_MAX + 1)) {
        email[0] = '\0';
    }
    if (email[0] != '\0') {
        struct addr a;
        /* A quoted local part is an address too ("a b"@example.org): what it holds is escaped
         * in every file, so it is taken rather than refused. */
        if (addr_parse(email, strlen(email), ADDR_QUOTED, &a) < 0)
            return 400;
        memcpy(domain, a.domain, sizeof(a.domain));
        return 0;
    }
    char name[sizeof(r->host)];
    int rc = host_name(r->host, name, sizeof(name));
    if (rc <= 0)
        return rc < 0 ? 400 : 404;
    const char *host = name;
    static const char *const prefixes[] = {"autoconfig.", "autodiscover."};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t pn = strlen(prefixes[i]);
        if (strlen(host) > pn && strncasecmp(host, prefixes[i], pn) == 0) {
            host += pn;
            break;
        }
    }
    if (addr_parse_domain(host, strlen(host), 0, domain) < 0)
        return 400;
    return 0;
}

static void serve_file(struct web_session *s, const struct http_request *r, enum web_file f,
                       const char *body, size_t body_len)
{
    struct web *w = s->w;
    bool post = f == WF_AUTODISCOVER;
    if (r->post != post) {
        respond_status(s, r->head, 405, post ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n");
        return;
    }
    char email[CLIENTCONFIG_EMAIL_MAX + 1], domain[ADDR_DOMAIN_MAX + 1];
    int status = asked_domain(r, post ? body : NULL, body_len, email, domain);
    if (status != 0) {
        respond_error(s, r->head, status);
        return;
    }
    int rc = w->domain_local ? w->domain_local(w->domain_ctx, domain, NULL) : 0;
    /* The address goes into the files only when it is a user's login: else anyone could
     * have kotak hand out a profile, under its name, for any address at all. */
    if (rc == 1 && email[0] != '\0' && (rc = w->domain_local(w->domain_ctx, domain, email)) == 0) {
        email[0] = '\0'; /* the domain's files, for whoever types an address into them */
        rc = 1;
    }
    struct clientconfig cc = {.domain = domain, .email = email[0] ? email : NULL};
    clientconfig_from_conf(&cc, w->conf);
    if (rc < 0) {
        respond_error(s, r->head, 503);
        return;
    }
    if (rc == 0 || !clientconfig_usable(&cc)) {
        respond_error(s, r->head, 404); /* not ours: nothing said about it */
        return;
    }
    struct buf text;
    buf_init(&text, WEB_OUT_MAX / 2);
    char extra[ADDR_DOMAIN_MAX + 96] = "";
    const char *type = "text/xml; charset=utf-8";
    if (f == WF_AUTOCONFIG) {
        clientconfig_thunderbird(&cc, &text);
    } else if (f == WF_AUTODISCOVER) {
        clientconfig_autodiscover(&cc, &text);
    } else {
        clientconfig_mobileconfig(&cc, &text);
        type = "application/x-apple-aspen-config";
        snprintf(extra, sizeof(extra), /* the domain is a checked name: no quote, no CRLF */
                 "Content-Disposition: attachment; filename=\"%s.mobileconfig\"\r\n", domain);
    }
    respond(s, r->head, 200, "OK", type, extra, (const char *)text.data, text.len);
    buf_free(&text);
}

static void route(struct web_session *s, const struct http_request *r)
{
    /* A Host of someone else's name is a page elsewhere that pointed its
     * name at us (DNS rebinding): it must not read the view. */
    if (r->post) {
        respond_error(s, r->head, 405); /* only the autodiscover form is POSTed */
        return;
    }
    if ((r->host[0] != '\0' && !http_host_trusted(r->host, s->w->conf->hostname)) ||
        !token_ok(s->w, r)) {
        respond_error(s, r->head, 403);
        return;
    }
    if (strcmp(r->path, "/") == 0)
        respond(s, r->head, 200, "OK", "text/html; charset=utf-8", "", web_page, strlen(web_page));
    else if (strcmp(r->path, "/events") != 0)
        respond_error(s, r->head, 404);
    else if (s->w->n_streams >= WEB_STREAMS_MAX)
        respond_error(s, r->head, 503);
    else if (streams_from(s->w, s) >= WEB_STREAMS_PER_ADDRESS)
        respond_error(s, r->head, 429);
    else
        stream_start(s, r);
}

static void s_feed(void *p, const char *in, size_t n, size_t *used_r)
{
    struct web_session *s = p;
    *used_r = n; /* one request a connection: what follows it is not read */
    if (s->state != WS_REQUEST)
        return;
    struct http_request r;
    int rc = http_request_parse(in, n, &r);
    if (rc == 0) {
        *used_r = 0; /* wait for the rest of the head */
        return;
    }
    if (rc < 0) {
        respond_error(s, false, -rc);
        return;
    }
    enum web_file f = well_known(r.path);
    if (r.post && f == WF_AUTODISCOVER && n - (size_t)rc < r.content_length) {
        *used_r = 0; /* wait for the body: at most HTTP_BODY_MAX after the head */
        return;
    }
    if (f != WF_NONE)
        serve_file(s, &r, f, in + rc, r.post ? r.content_length : 0);
    else
        route(s, &r);
}

static struct buf *s_output(void *p)
{
    return &((struct web_session *)p)->out;
}

static bool s_busy(const void *p)
{
    (void)p;
    return false;
}

static bool s_sending(const void *p)
{
    struct web_session *s = (struct web_session *)p;
    return s->state == WS_STREAM && has_budget(s) && events_waiting(s);
}

static void s_pump(void *p)
{
    stream_pump(p);
}

static enum session_action s_action(const void *p)
{
    const struct web_session *s = p;
    return s->close ? SESSION_ACT_CLOSE : SESSION_ACT_NONE;
}

static bool s_engaged(const void *p)
{
    (void)p;
    return false; /* a viewer is the first to go when the server is pressed */
}

static void s_tls_started(void *p, const char *version, const char *cipher, const char *cert)
{
    (void)p, (void)version, (void)cipher, (void)cert;
}

static void s_auth_done(void *p, int rc, int64_t user_id)
{
    (void)p, (void)rc, (void)user_id;
}

static void s_timeout(void *p)
{
    struct web_session *s = p;
    /* A stream whose viewer takes what it is sent (heartbeats at least) is
     * not idle; one with output still queued after the whole idle time is
     * a viewer gone. */
    if (s->state == WS_STREAM && s->sc->net != NULL && net_conn_pending(s->sc->net) == 0 &&
        uv_now(s->w->loop) - s->last_out < 2 * WEB_HEARTBEAT_MS)
        return;
    stream_stop(s);
    s->close = true;
}

static void s_shutdown(void *p)
{
    struct web_session *s = p;
    stream_stop(s);
    s->close = true;
}

static void s_free(void *p)
{
    struct web_session *s = p;
    stream_stop(s);
    buf_free(&s->out);
    free(s);
}

const struct session_ops web_session_ops = {
    .greet = s_greet,
    .feed = s_feed,
    .output = s_output,
    .busy = s_busy,
    .sending = s_sending,
    .pump = s_pump,
    .action = s_action,
    .engaged = s_engaged,
    .tls_started = s_tls_started,
    .auth_done = s_auth_done,
    .timeout = s_timeout,
    .shutdown = s_shutdown,
    .free = s_free,
};

/* --- the server ----------------------------------------------------------------- */

struct web *web_new(uv_loop_t *loop, const struct conf *conf)
{
    struct web *w = xcalloc(1, sizeof(*w));
    w->loop = loop;
    w->conf = conf;
    uv_timer_init(loop, &w->tick);
    w->tick.data = w;
    return w;
}

void web_set_domains(struct web *w,
                     int (*local)(void *ctx, const char *domain, const char *address),
                     void *ctx)
{
    w->domain_local = local;
    w->domain_ctx = ctx;
}

static void tick_closed(uv_handle_t *h)
{
    free(h->data);
}

void web_free(struct web **wp)
{
    struct web *w = *wp;
    if (w == NULL)
        return;
    *wp = NULL;
    uv_timer_stop(&w->tick);
    uv_close((uv_handle_t *)&w->tick, tick_closed);
}
