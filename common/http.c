/*
 * http.c — an HTTP/1.1 response parser and a one-request client; see http.h.
 *
 * The parser follows RFC 9112 and is strict where leniency would let a
 * server make kotak read a body differently from the way the server framed
 * it: Content-Length must be digits, and several must agree; a
 * Transfer-Encoding other than exactly "chunked" is refused, and so is one
 * beside a Content-Length (RFC 9112 6.3) or in an HTTP/1.0 response; a
 * folded field (obs-fold) is refused rather than unfolded (RFC 9112 5.2
 * leaves the choice). A bare LF ends a line as CRLF does (RFC 9112 2.2).
 * Interim 1xx responses are skipped (RFC 9110 15.2); 101 is refused, as
 * no upgrade is ever asked for.
 *
 * The client stands on common/net.c, as kotak's SMTP deliveries do: net
 * makes the connection (with a deadline), runs TLS from the first byte
 * when asked, reads into a bounded buffer and says when the socket has
 * drained. Each call has a net_server of its own, so that a call needs no
 * other object to live and its connection takes no one else's slot.
 */
#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "net.h"
#include "tls.h"
#include "util.h"

/* --- the response parser ------------------------------------------------ */

enum {
    P_HEAD,       /* waiting for a whole head (status line and fields) */
    P_LENGTH,     /* a body of Content-Length octets; remaining left */
    P_TO_EOF,     /* a body that ends with the connection */
    P_CHUNK_SIZE, /* a chunk-size line */
    P_CHUNK_DATA, /* remaining octets of the current chunk */
    P_CHUNK_CRLF, /* the line end after a chunk's data */
    P_TRAILER,    /* trailer fields, up to the empty line */
    P_END,        /* the END event is due */
    P_DONE,       /* END was returned */
    P_ERROR,      /* spent; remaining holds the error */
};

const char *http_perr_str(int err)
{
    switch (err < 0 ? -err : err) {
    case HTTP_PERR_SYNTAX:
        return "malformed HTTP response";
    case HTTP_PERR_TOO_LONG:
        return "HTTP response head, chunk line or trailer too long";
    case HTTP_PERR_FRAMING:
        return "conflicting or invalid HTTP message framing";
    case HTTP_PERR_UNSUPPORTED:
        return "unsupported HTTP transfer coding or status";
    case HTTP_PERR_TRUNCATED:
        return "connection closed inside the HTTP response";
    }
    return "HTTP error";
}

void http_parser_init(struct http_parser *p, bool head_request)
{
    memset(p, 0, sizeof(*p));
    p->state = P_HEAD;
    p->head_request = head_request;
}

bool http_parser_done(const struct http_parser *p)
{
    return p->state == P_DONE;
}

static int fail(struct http_parser *p, int perr)
{
    p->state = P_ERROR;
    p->remaining = (uint64_t)perr;
    return -perr;
}

/* RFC 9110 5.6.2 tchar. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Field values and reason phrases: HTAB, SP, VCHAR and obs-text (RFC 9110 5.5). */
static bool is_value_char(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static bool name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/*
 * Looks for the end of a line from p->scanned in buf[0..len). Returns the
 * offset just past the LF, or 0 when no whole line is there yet (p->scanned
 * then remembers how far it looked).
 */
static size_t find_line_end(struct http_parser *p, const char *buf, size_t len)
{
    if (p->scanned >= len)
        return 0; /* nothing new (buf may be NULL when len is 0) */
    const char *lf = memchr(buf + p->scanned, '\n', len - p->scanned);
    if (lf == NULL) {
        p->scanned = len;
        return 0;
    }
    p->scanned = 0;
    return (size_t)(lf - buf) + 1;
}

/* The length of a line without its LF and the CR before it, if any. */
static size_t line_body(const char *line, size_t with_lf)
{
    size_t n = with_lf - 1;
    if (n > 0 && line[n - 1] == '\r')
        n--;
    return n;
}

/* Digits only, within 64 bits. */
static bool parse_length(const char *v, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return true;
}

/* "HTTP/1.x SP 3DIGIT [SP reason]" (RFC 9112 4). */
static int parse_status_line(const char *s, size_t n, struct http_event *ev)
{
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' || s[8] != ' ')
        return -HTTP_PERR_SYNTAX;
    for (int i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9')
            return -HTTP_PERR_SYNTAX;
    int status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (status < 100 || status > 599)
        return -HTTP_PERR_SYNTAX;
    if (n > 12 && s[12] != ' ')
        return -HTTP_PERR_SYNTAX;
    for (size_t i = 13; i < n; i++)
        if (!is_value_char((unsigned char)s[i]))
            return -HTTP_PERR_SYNTAX;
    ev->status = status;
    ev->minor = s[7] == '0' ? 0 : 1; /* a later 1.x is read as 1.1 (RFC 9110 2.5) */
    return 0;
}

/*
 * One field line, without its line end: name, colon, value with the OWS
 * around it removed. Returns 0 or -HTTP_PERR_SYNTAX.
 */
static int parse_field(const char *s, size_t n, const char **name, size_t *name_len,
                       const char **value, size_t *value_len)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i == n || s[i] != ':') /* no space before the colon (RFC 9112 5.1) */
        return -HTTP_PERR_SYNTAX;
    *name = s;
    *name_len = i;
    size_t v = i + 1, end = n;
    for (size_t k = v; k < n; k++)
        if (!is_value_char((unsigned char)s[k]))
            return -HTTP_PERR_SYNTAX;
    while (v < end && (s[v] == ' ' || s[v] == '\t'))
        v++;
    while (end > v && (s[end - 1] == ' ' || s[end - 1] == '\t'))
        end--;
    *value = s + v;
    *value_len = end - v;
    return 0;
}

/*
 * A whole head, buf[0..n) ending with its empty line: the event, and the
 * body's framing in p. Returns 0 or -HTTP_PERR_*.
 */
static int parse_head(struct http_parser *p, const char *buf, size_t n, struct http_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->type = HTTP_EVENT_HEAD;
    const char *lf = memchr(buf, '\n', n);
    size_t first = (size_t)(lf - buf) + 1;
    int rc = parse_status_line(buf, line_body(buf, first), ev);
    if (rc < 0)
        return rc;
    bool has_te = false, has_type = false;
    unsigned fields = 0;
    for (size_t off = first; off < n;) {
        lf = memchr(buf + off, '\n', n - off);
        size_t with_lf = (size_t)(lf - (buf + off)) + 1;
        size_t len = line_body(buf + off, with_lf);
        const char *line = buf + off;
        off += with_lf;
        if (len == 0)
            break; /* the empty line that ends the head */
        if (line[0] == ' ' || line[0] == '\t')
            return -HTTP_PERR_SYNTAX; /* obs-fold */
        if (++fields > HTTP_FIELDS_MAX)
            return -HTTP_PERR_TOO_LONG;
        const char *name, *value;
        size_t name_len, value_len;
        if (parse_field(line, len, &name, &name_len, &value, &value_len) < 0)
            return -HTTP_PERR_SYNTAX;
        if (name_is(name, name_len, "Content-Length")) {
            uint64_t x;
            if (!parse_length(value, value_len, &x))
                return -HTTP_PERR_FRAMING;
            if (ev->has_length && x != ev->content_length)
                return -HTTP_PERR_FRAMING;
            ev->has_length = true;
            ev->content_length = x;
        } else if (name_is(name, name_len, "Transfer-Encoding")) {
            if (has_te)
                return -HTTP_PERR_FRAMING;
            has_te = true;
            if (!name_is(value, value_len, "chunked"))
                return -HTTP_PERR_UNSUPPORTED;
        } else if (name_is(name, name_len, "Content-Type")) {
            if (has_type)
                return -HTTP_PERR_SYNTAX;
            has_type = true;
            ev->content_type = value;
            ev->content_type_len = value_len;
        }
    }
    if (has_te && (ev->has_length || ev->minor == 0))
        return -HTTP_PERR_FRAMING;
    if (ev->status < 200)
        return 0; /* interim: no body, framing unused */
    if (p->head_request || ev->status == 204 || ev->status == 304) {
        p->state = P_END; /* RFC 9112 6.3, rules 1 and 2 */
    } else if (has_te) {
        p->state = P_CHUNK_SIZE;
    } else if (ev->has_length) {
        p->remaining = ev->content_length;
        p->state = p->remaining > 0 ? P_LENGTH : P_END;
    } else {
        p->state = P_TO_EOF;
        p->to_eof = true;
    }
    return 0;
}

/* Waits for a whole head; skips interim responses. */
static int next_head(struct http_parser *p, const char *buf, size_t len, bool eof, size_t *off,
                     struct http_event *ev)
{
    for (;;) {
        const char *b = buf + *off;
        size_t n = len - *off;
        /* Look for the empty line, one line at a time from where we were. */
        size_t end = 0;
        for (;;) {
            size_t e = find_line_end(p, b, n);
            if (e == 0)
                break;
            if (e > HTTP_HEAD_MAX)
                return fail(p, HTTP_PERR_TOO_LONG);
            if (line_body(b + p->line_start, e - p->line_start) == 0) {
                if (p->line_start == 0)
                    return fail(p, HTTP_PERR_SYNTAX); /* no status line */
                end = e;
                break;
            }
            p->line_start = p->scanned = e;
        }
        if (end == 0) {
            if (n >= HTTP_HEAD_MAX)
                return fail(p, HTTP_PERR_TOO_LONG);
            return eof ? fail(p, HTTP_PERR_TRUNCATED) : 0;
        }
        p->line_start = 0;
        p->scanned = 0;
        int rc = parse_head(p, b, end, ev);
        if (rc < 0)
            return fail(p, -rc);
        *off += end;
        if (ev->status >= 200)
            return 1;
        if (ev->status == 101)
            return fail(p, HTTP_PERR_UNSUPPORTED);
        if (++p->interim > HTTP_INTERIM_MAX)
            return fail(p, HTTP_PERR_TOO_LONG);
    }
}

/* "1a;name=value" (RFC 9112 7.1): the size, its extensions ignored. */
static int parse_chunk_size(const char *s, size_t n, uint64_t *size)
{
    size_t i = 0;
    uint64_t x = 0;
    for (; i < n; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (d < 0)
            break;
        if (i >= 15)
            return -HTTP_PERR_FRAMING; /* past 2^60: no body kotak would take */
        x = x * 16 + (uint64_t)d;
    }
    if (i == 0)
        return -HTTP_PERR_SYNTAX;
    if (i < n && s[i] != ';' && s[i] != ' ' && s[i] != '\t')
        return -HTTP_PERR_SYNTAX;
    for (; i < n; i++)
        if (!is_value_char((unsigned char)s[i]))
            return -HTTP_PERR_SYNTAX;
    *size = x;
    return 0;
}

/* A body piece of at most remaining octets, from what is there. */
static int body_piece(struct http_parser *p, const char *buf, size_t len, size_t *off,
                      struct http_event *ev)
{
    size_t avail = len - *off;
    size_t take = p->remaining < avail ? (size_t)p->remaining : avail;
    memset(ev, 0, sizeof(*ev));
    ev->type = HTTP_EVENT_BODY;
    ev->data = buf + *off;
    ev->len = take;
    *off += take;
    p->remaining -= take;
    return 1;
}

int http_parser_next(struct http_parser *p, const char *buf, size_t len, bool eof,
                     size_t *consumed_r, struct http_event *ev_r)
{
    size_t off = 0;
    int rc = 0;
    *consumed_r = 0;
    for (;;) {
        const char *b = buf + off;
        size_t n = len - off;
        switch (p->state) {
        case P_ERROR:
            return -(int)p->remaining;
        case P_DONE:
            rc = 0;
            goto out;
        case P_END:
            memset(ev_r, 0, sizeof(*ev_r));
            ev_r->type = HTTP_EVENT_END;
            p->state = P_DONE;
            rc = 1;
            goto out;
        case P_HEAD:
            rc = next_head(p, buf, len, eof, &off, ev_r);
            goto out;
        case P_LENGTH:
        case P_CHUNK_DATA:
            if (n == 0) {
                rc = eof ? fail(p, HTTP_PERR_TRUNCATED) : 0;
                goto out;
            }
            rc = body_piece(p, buf, len, &off, ev_r);
            if (p->remaining == 0)
                p->state = p->state == P_LENGTH ? P_END : P_CHUNK_CRLF;
            goto out;
        case P_TO_EOF:
            if (n > 0) {
                p->remaining = n;
                rc = body_piece(p, buf, len, &off, ev_r);
                goto out;
            }
            if (!eof) {
                rc = 0;
                goto out;
            }
            p->state = P_END;
            continue;
        case P_CHUNK_CRLF: {
            size_t need = n > 0 && b[0] == '\r' ? 2 : 1;
            if (n < need) {
                rc = eof ? fail(p, HTTP_PERR_TRUNCATED) : 0;
                goto out;
            }
            if (b[need - 1] != '\n')
                return fail(p, HTTP_PERR_SYNTAX);
            off += need;
            p->state = P_CHUNK_SIZE;
            continue;
        }
        case P_CHUNK_SIZE:
        case P_TRAILER: {
            size_t max = p->state == P_CHUNK_SIZE ? HTTP_CHUNK_LINE_MAX : HTTP_HEAD_MAX;
            size_t e = find_line_end(p, b, n);
            if (e == 0) {
                if (n > max)
                    return fail(p, HTTP_PERR_TOO_LONG);
                rc = eof ? fail(p, HTTP_PERR_TRUNCATED) : 0;
                goto out;
            }
            if (e > max)
                return fail(p, HTTP_PERR_TOO_LONG);
            size_t line = line_body(b, e);
            off += e;
            if (p->state == P_CHUNK_SIZE) {
                uint64_t size;
                int r = parse_chunk_size(b, line, &size);
                if (r < 0)
                    return fail(p, -r);
                p->remaining = size;
                p->state = size > 0 ? P_CHUNK_DATA : P_TRAILER;
                continue;
            }
            if (line == 0) {
                p->state = P_END; /* the trailer's end */
                continue;
            }
            p->trailer_len += e;
            const char *nm, *v;
            size_t nl, vl;
            if (++p->fields > HTTP_FIELDS_MAX || p->trailer_len > HTTP_HEAD_MAX)
                return fail(p, HTTP_PERR_TOO_LONG);
            if (b[0] == ' ' || b[0] == '\t' || parse_field(b, line, &nm, &nl, &v, &vl) < 0)
                return fail(p, HTTP_PERR_SYNTAX);
            continue;
        }
        }
    }
out:
    if (rc >= 0)
        *consumed_r = off;
    return rc;
}

/* --- the client ---------------------------------------------------------- */

#define HTTP_PIECE (16 * 1024)     /* request body read per call of body_read */
#define HTTP_TURN_MAX (256 * 1024) /* body octets sent per turn of the loop */
#define HTTP_CONTENT_TYPE_MAX 128  /* Content-Type kept for the callback */
#define HTTP_ERROR_MAX 160

struct http_call {
    uv_loop_t *loop;
    struct net_server *srv;
    struct net_conn *conn; /* NULL before the connect and once it is gone */
    uv_timer_t deadline;   /* the whole exchange */
    uv_timer_t kick;       /* the next turn of the body, or a failure told later */
    int handles;           /* of the two timers, not yet closed */
    void (*cb)(void *ctx, int rc, const struct http_response *resp);
    void *ctx;
    ssize_t (*body_read)(void *ctx, uint64_t offset, void *p, size_t n);
    void *body_ctx;
    uint64_t body_len, body_sent;
    char *piece;     /* HTTP_PIECE octets, when there is a body */
    struct buf head; /* the request line and fields, until the connection opens */
    struct http_parser parser;
    struct buf body; /* the response body, up to response_max */
    size_t response_max;
    int status;
    char content_type[HTTP_CONTENT_TYPE_MAX];
    bool finished; /* cb has run, or the call was cancelled */
    bool cancelled;
    bool released; /* the timers are closing; the memory goes with them */
    int early_rc;  /* a failure before any connection, told from kick */
    char error[HTTP_ERROR_MAX];
};

static void call_release(struct http_call *call);
static void on_kick(uv_timer_t *t);

static void timer_closed(uv_handle_t *h)
{
    struct http_call *call = h->data;
    if (--call->handles > 0)
        return;
    net_server_free(&call->srv);
    buf_free(&call->head);
    buf_free(&call->body);
    free(call->piece);
    free(call);
}

/* Once the connection is gone and cb has run: the timers close, then the memory goes. */
static void call_release(struct http_call *call)
{
    if (call->released || call->conn != NULL || !call->finished)
        return;
    call->released = true;
    uv_close((uv_handle_t *)&call->deadline, timer_closed);
    uv_close((uv_handle_t *)&call->kick, timer_closed);
}

/*
 * The end of the exchange: cb runs (unless cancelled), the connection
 * closes, and the call goes once it has. rc 0 is success; else fmt says why.
 */
static void call_complete(struct http_call *call, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void call_complete(struct http_call *call, int rc, const char *fmt, ...)
{
    if (call->finished)
        return;
    call->finished = true;
    uv_timer_stop(&call->deadline);
    uv_timer_stop(&call->kick);
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(call->error, sizeof(call->error), fmt, ap);
        va_end(ap);
    }
    if (!call->cancelled) {
        struct http_response resp = {
            .status = rc == 0 ? call->status : 0,
            .content_type = rc == 0 ? call->content_type : "",
            .body = rc == 0 ? buf_cstr(&call->body) : "",
            .body_len = rc == 0 ? call->body.len : 0,
            .error = rc == 0 ? "" : call->error,
            .ended_by_close = rc == 0 && call->parser.to_eof,
        };
        call->cb(call->ctx, rc, &resp);
    }
    if (call->conn != NULL)
        net_conn_close(call->conn); /* its close callback releases the call */
    else
        call_release(call);
}

/* Sends body pieces while the socket keeps up, a bounded amount per turn. */
static void pump_body(struct http_call *call)
{
    size_t turn = 0;
    while (!call->finished && call->conn != NULL && call->body_sent < call->body_len) {
        if (net_conn_pending(call->conn) >= NET_LOW_WATER)
            return; /* drain calls again */
        if (turn >= HTTP_TURN_MAX) {
            uv_timer_start(&call->kick, on_kick, 0, 0);
            return;
        }
        uint64_t left = call->body_len - call->body_sent;
        size_t want = left < HTTP_PIECE ? (size_t)left : HTTP_PIECE;
        ssize_t n = call->body_read(call->body_ctx, call->body_sent, call->piece, want);
        if (n <= 0 || (size_t)n > want) {
            call_complete(call, -EIO, "the request body could not be read at octet %llu",
                          (unsigned long long)call->body_sent);
            return;
        }
        if (net_conn_write(call->conn, call->piece, (size_t)n) < 0)
            return; /* the connection is closing: its close tells */
        call->body_sent += (uint64_t)n;
        turn += (size_t)n;
    }
}

static void on_kick(uv_timer_t *t)
{
    struct http_call *call = t->data;
    if (call->early_rc != 0)
        call_complete(call, call->early_rc, NULL); /* error was written at the start */
    else
        pump_body(call);
}

static void on_deadline(uv_timer_t *t)
{
    call_complete(t->data, -ETIMEDOUT, "no complete answer within the time allowed");
}

/*
 * Feeds the parser what arrived. eof: the connection has ended, so a body
 * that runs to the end is complete. Returns true once the call is finished.
 */
static bool feed_parser(struct http_call *call, struct buf *in, bool eof)
{
    while (!call->finished) {
        struct http_event ev;
        size_t used;
        int rc = http_parser_next(&call->parser, (const char *)in->data, in->len, eof, &used, &ev);
        if (rc < 0) {
            call_complete(call, rc == -HTTP_PERR_TRUNCATED ? -ECONNABORTED : -EPROTO, "%s",
                          http_perr_str(rc));
            break;
        }
        if (rc == 0) {
            buf_consume(in, used);
            break;
        }
        if (ev.type == HTTP_EVENT_HEAD) {
            call->status = ev.status;
            size_t n = ev.content_type_len < HTTP_CONTENT_TYPE_MAX - 1 ? ev.content_type_len
                                                                       : HTTP_CONTENT_TYPE_MAX - 1;
            if (n > 0)
                memcpy(call->content_type, ev.content_type, n);
            call->content_type[n] = '\0';
            if (ev.has_length && ev.content_length > call->response_max)
                call_complete(call, -EFBIG, "the response body (%llu octets) is too long",
                              (unsigned long long)ev.content_length);
        } else if (ev.type == HTTP_EVENT_BODY) {
            if (ev.len > call->response_max - call->body.len)
                call_complete(call, -EFBIG, "the response body is longer than %zu octets",
                              call->response_max);
            else
                buf_append(&call->body, ev.data, ev.len);
        } else {
            call_complete(call, 0, NULL);
        }
        buf_consume(in, used);
    }
    return call->finished;
}

static void *conn_open(struct net_conn *c, void *ctx)
{
    struct http_call *call = ctx;
    call->conn = c;
    if (net_conn_write(c, call->head.data, call->head.len) == 0)
        pump_body(call);
    buf_free(&call->head);
    return call;
}

static void conn_input(struct net_conn *c, void *ctx)
{
    feed_parser(ctx, net_conn_input(c), false);
}

static void conn_drain(struct net_conn *c, void *ctx)
{
    (void)c;
    pump_body(ctx);
}

static void conn_timeout(struct net_conn *c, void *ctx)
{
    (void)c;
    on_deadline(&((struct http_call *)ctx)->deadline);
}

static void conn_close(struct net_conn *c, void *ctx)
{
    struct http_call *call = ctx;
    call->conn = NULL;
    if (!call->finished) {
        char why[NET_TLS_ERROR_MAX];
        const char *failure = net_conn_failure(c);
        const char *tls_error = net_conn_tls_error(c, why, sizeof(why));
        if (failure != NULL)
            call_complete(call, -ECONNABORTED, "cannot connect: %s", failure);
        else if (tls_error != NULL)
            call_complete(call, -ECONNABORTED, "TLS failed: %s", tls_error);
        else if (!feed_parser(call, net_conn_input(c), true))
            call_complete(call, -ECONNABORTED, "the connection ended inside the response");
    }
    call_release(call);
}

static const struct net_proto http_proto = {
    .open = conn_open,
    .input = conn_input,
    .drain = conn_drain,
    .timeout = conn_timeout,
    .close = conn_close,
};

/* No control characters, and no space when space_ok is false. */
static bool clean_text(const char *s, bool space_ok)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch == 0x7f || (ch == ' ' && !space_ok))
            return false;
    }
    return true;
}

/* Extra header lines: each a field line ending CRLF, none empty. */
static bool clean_headers(const char *h)
{
    while (*h != '\0') {
        const char *crlf = strstr(h, "\r\n");
        if (crlf == NULL || crlf == h || h[0] == ' ' || h[0] == '\t')
            return false;
        for (const char *q = h; q < crlf; q++) {
            unsigned char ch = (unsigned char)*q;
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return false;
        }
        const char *colon = memchr(h, ':', (size_t)(crlf - h));
        if (colon == NULL || colon == h)
            return false;
        for (const char *q = h; q < colon; q++)
            if (!is_tchar((unsigned char)*q))
                return false;
        h = crlf + 2;
    }
    return true;
}

/* The request line and header fields; false when a field may not be sent. */
static bool build_head(struct buf *head, const struct http_request *req)
{
    if (req->method == NULL || req->host == NULL || req->path == NULL || req->addr == NULL)
        return false;
    for (const char *m = req->method; *m != '\0'; m++)
        if (!is_tchar((unsigned char)*m))
            return false;
    if (req->method[0] == '\0' || req->host[0] == '\0' || req->path[0] != '/' ||
        !clean_text(req->host, false) || !clean_text(req->path, false) ||
        (req->content_type != NULL && !clean_text(req->content_type, true)) ||
        (req->headers != NULL && !clean_headers(req->headers)) ||
        (req->body_len > 0 && req->body_read == NULL))
        return false;
    bool has_body =
        req->body_len > 0 || strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0;
    int rc = buf_printf(head,
                        "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                        "User-Agent: kotak/%s\r\n%s",
                        req->method, req->path, req->host, KOTAK_VERSION,
                        req->headers != NULL ? req->headers : "");
    if (rc == 0 && has_body && req->content_type != NULL)
        rc = buf_printf(head, "Content-Type: %s\r\n", req->content_type);
    if (rc == 0 && has_body)
        rc = buf_printf(head, "Content-Length: %llu\r\n", (unsigned long long)req->body_len);
    if (rc == 0)
        rc = buf_append_str(head, "\r\n");
    return rc == 0;
}

struct http_call *http_call_start(struct uv_loop_s *loop, const struct http_request *req,
                                  void (*cb)(void *ctx, int rc, const struct http_response *resp),
                                  void *ctx)
{
    struct http_call *call = xcalloc(1, sizeof(*call));
    call->loop = loop;
    call->cb = cb;
    call->ctx = ctx;
    call->body_read = req->body_read;
    call->body_ctx = req->body_ctx;
    call->body_len = req->body_len;
    buf_init(&call->head, 0);
    call->response_max = req->response_max;
    buf_init(&call->body, 0);
    http_parser_init(&call->parser, req->method != NULL && strcmp(req->method, "HEAD") == 0);
    uv_timer_init(loop, &call->deadline);
    uv_timer_init(loop, &call->kick);
    call->deadline.data = call->kick.data = call;
    call->handles = 2;
    uv_timer_start(&call->deadline, on_deadline, req->timeout_ms, 0);
    if (!build_head(&call->head, req)) {
        call->early_rc = -EINVAL;
        snprintf(call->error, sizeof(call->error), "the HTTP request is not valid");
        uv_timer_start(&call->kick, on_kick, 0, 0);
        return call;
    }
    if (call->body_len > 0)
        call->piece = xmalloc(HTTP_PIECE);
    struct net_limits lim = {
        .idle_timeout_ms = req->timeout_ms,
        .tls_handshake_timeout_ms = req->timeout_ms,
        .connections = 1,
        .connections_per_address = 1,
        .stress_idle_timeout_ms = req->timeout_ms,
        .connect_timeout_ms = req->timeout_ms,
    };
    call->srv = net_server_new(loop, NULL, &lim, "http");
    struct net_conn *c;
    int rc = net_connect(call->srv, req->addr, &http_proto, call, req->tls, req->host, &c);
    if (rc < 0) {
        call->early_rc = -ECONNABORTED;
        snprintf(call->error, sizeof(call->error), "cannot connect: %s", uv_strerror(rc));
        uv_timer_start(&call->kick, on_kick, 0, 0);
        return call;
    }
    call->conn = c; /* from here on its close callback releases the call */
    return call;
}

void http_call_cancel(struct http_call **cp)
{
    struct http_call *call = *cp;
    if (call == NULL)
        return;
    *cp = NULL;
    call->cancelled = true;
    call_complete(call, -ECANCELED, NULL);
}
