/*
 * test_http.c — the HTTP response parser against well-formed and hostile
 * responses, each fed whole, one byte at a time and split at every point;
 * then the client on a real loop against a small server in this process:
 * a streamed request body, a reply framed three ways, a body too long, a
 * server that never answers, one that hangs up, a refused connection, a
 * bad request, and a cancelled call.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "cert.h"
#include "conf.h"
#include "http.h"
#include "net.h"
#include "tap.h"
#include "tls.h"

/* --- the parser ---------------------------------------------------------- */

struct outcome {
    int rc; /* 1: END seen; 0: still waiting at the end; <0: the parser's error */
    int status, minor, heads;
    char ctype[64];
    char body[8192];
    size_t body_len;
};

/* Drives the parser over the events in hold[0..*held), as a caller would. */
static void drain(struct http_parser *p, char *hold, size_t *held, bool eof, struct outcome *o)
{
    while (o->rc == 0) {
        struct http_event ev;
        size_t used;
        int rc = http_parser_next(p, hold, *held, eof, &used, &ev);
        if (rc < 0) {
            o->rc = rc;
            return;
        }
        if (rc == 1 && ev.type == HTTP_EVENT_HEAD) {
            o->heads++;
            o->status = ev.status;
            o->minor = ev.minor;
            size_t n = ev.content_type_len < sizeof(o->ctype) - 1 ? ev.content_type_len
                                                                  : sizeof(o->ctype) - 1;
            memcpy(o->ctype, ev.content_type ? ev.content_type : "", n);
            o->ctype[n] = '\0';
        } else if (rc == 1 && ev.type == HTTP_EVENT_BODY) {
            if (ev.len == 0 || o->body_len + ev.len > sizeof(o->body)) {
                o->rc = -1000; /* an empty piece, or more than any case holds */
                return;
            }
            memcpy(o->body + o->body_len, ev.data, ev.len);
            o->body_len += ev.len;
        } else if (rc == 1) {
            o->rc = 1;
        }
        if (used > *held) {
            o->rc = -1001;
            return;
        }
        memmove(hold, hold + used, *held - used);
        *held -= used;
        if (rc == 0)
            return;
    }
}

/*
 * Feeds in[0..len) in pieces that end at the offsets in cuts (ascending),
 * then the end of the connection when eof.
 */
static void run(const char *in, size_t len, const size_t *cuts, size_t n_cuts, bool eof,
                bool head_request, struct outcome *o)
{
    static char hold[64 * 1024];
    size_t held = 0, at = 0;
    struct http_parser p;
    http_parser_init(&p, head_request);
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i <= n_cuts && o->rc == 0; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        memcpy(hold + held, in + at, end - at);
        held += end - at;
        at = end;
        drain(&p, hold, &held, false, o);
    }
    if (o->rc == 0 && eof)
        drain(&p, hold, &held, true, o);
}

struct pcase {
    const char *name;
    const char *in;
    bool eof, head_request;
    int rc; /* 1 complete, 0 waiting, or -HTTP_PERR_* */
    int status;
    const char *body;
    const char *ctype;
};

#define LONG_FIELD "X-Pad: " /* followed by enough to pass HTTP_HEAD_MAX */

static const struct pcase cases[] = {
    {"Content-Length",
     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello", false,
     false, 1, 200, "hello", "application/json"},
    {"bare LF line ends", "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", false, false, 1, 200, "hi",
     ""},
    {"field name case, OWS trimmed",
     "HTTP/1.1 404 Not Found\r\ncontent-length:\t3 \r\nCONTENT-TYPE:  text/plain  \r\n\r\nnop",
     false, false, 1, 404, "nop", "text/plain"},
    {"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, false, 1, 200, "", ""},
    {"empty reason phrase", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", false, false, 1, 200, "",
     ""},
    {"obs-text in the reason and a value",
     "HTTP/1.1 200 \xc3\xa9t\xc3\xa9\r\nX-A: \xff\r\nContent-Length: 1\r\n\r\nx", false, false, 1,
     200, "x", ""},
    {"the same Content-Length twice",
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false, false, 1, 200,
     "ok", ""},
    {"bytes after the body are left alone",
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 X\r\n\r\n", false, false, 1, 200,
     "ok", ""},
    {"chunked, with extensions and a trailer",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;name=\"v\"\r\n "
     "world\r\n0\r\nX-Trailer: y\r\n\r\n",
     false, false, 1, 200, "hello world", ""},
    {"chunked, hex sizes and bare LF",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
     "Chunked\r\n\r\nA\n0123456789\nb\r\nabcdefghijk\r\n0\n\n",
     false, false, 1, 200, "0123456789abcdefghijk", ""},
    {"body to the end (HTTP/1.0)", "HTTP/1.0 200 OK\r\n\r\nall of it", true, false, 1, 200,
     "all of it", ""},
    {"body to the end (HTTP/1.1)", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end", true,
     false, 1, 200, "to the end", ""},
    {"body to the end, still open", "HTTP/1.1 200 OK\r\n\r\nmore to come", false, false, 0, 200,
     "more to come", ""},
    {"empty body to the end", "HTTP/1.0 200 OK\r\n\r\n", true, false, 1, 200, "", ""},
    {"100 Continue, then the answer",
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX: y\r\n\r\nHTTP/1.1 201 "
     "Created\r\nContent-Length: 1\r\n\r\nk",
     false, false, 1, 201, "k", ""},
    {"204 has no body", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", false, false, 1,
     204, "", ""},
    {"304 has no body", "HTTP/1.1 304 Not Modified\r\n\r\n", false, false, 1, 304, "", ""},
    {"HEAD's answer has no body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", false, true, 1,
     200, "", ""},
    {"Content-Length: 0", "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", false, false, 1, 500,
     "", ""},
    {"a later HTTP/1.x", "HTTP/1.7 200 OK\r\nContent-Length: 1\r\n\r\nz", false, false, 1, 200, "z",
     ""},

    {"two different Content-Lengths",
     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", false, false,
     -HTTP_PERR_FRAMING, 0, NULL, NULL},
    {"Content-Length with a sign", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", false,
     false, -HTTP_PERR_FRAMING, 0, NULL, NULL},
    {"Content-Length as a list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", false,
     false, -HTTP_PERR_FRAMING, 0, NULL, NULL},
    {"Content-Length empty", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", false, false,
     -HTTP_PERR_FRAMING, 0, NULL, NULL},
    {"Content-Length of 20 digits",
     "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n", false, false,
     -HTTP_PERR_FRAMING, 0, NULL, NULL},
    {"Content-Length in hex", "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", false, false,
     -HTTP_PERR_FRAMING, 0, NULL, NULL},
    {"gzip transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false,
     false, -HTTP_PERR_UNSUPPORTED, 0, NULL, NULL},
    {"chunked beside Content-Length",
     "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false,
     false, -HTTP_PERR_FRAMING, 0, NULL, NULL},
    {"chunked in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false,
     false, -HTTP_PERR_FRAMING, 0, NULL, NULL},
    {"Transfer-Encoding twice",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     false, false, -HTTP_PERR_FRAMING, 0, NULL, NULL},
    {"a folded field", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", false, false,
     -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", false, false,
     -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"a field without a colon", "HTTP/1.1 200 OK\r\nContent-Length 5\r\n\r\nhello", false, false,
     -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"an empty field name", "HTTP/1.1 200 OK\r\n: x\r\n\r\n", false, false, -HTTP_PERR_SYNTAX, 0,
     NULL, NULL},
    {"a NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n", false, false, -HTTP_PERR_SYNTAX, 0,
     NULL, NULL},
    {"a CR inside a value", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", false, false, -HTTP_PERR_SYNTAX,
     0, NULL, NULL},
    {"Content-Type twice", "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n\r\n",
     false, false, -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"HTTP/2 status line", "HTTP/2 200 OK\r\n\r\n", false, false, -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"HTTP/0.9-style reply", "<html>hello</html>\r\n\r\n", false, false, -HTTP_PERR_SYNTAX, 0, NULL,
     NULL},
    {"two-digit status", "HTTP/1.1 20 OK\r\n\r\n", false, false, -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"status 600", "HTTP/1.1 600 What\r\n\r\n", false, false, -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"status 099", "HTTP/1.1 099 What\r\n\r\n", false, false, -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"status glued to its reason", "HTTP/1.1 200OK\r\n\r\n", false, false, -HTTP_PERR_SYNTAX, 0,
     NULL, NULL},
    {"lower-case protocol name", "http/1.1 200 OK\r\n\r\n", false, false, -HTTP_PERR_SYNTAX, 0,
     NULL, NULL},
    {"an empty line first", "\r\nHTTP/1.1 200 OK\r\n\r\n", false, false, -HTTP_PERR_SYNTAX, 0, NULL,
     NULL},
    {"101 Switching Protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", false,
     false, -HTTP_PERR_UNSUPPORTED, 0, NULL, NULL},
    {"nine interim responses",
     "HTTP/1.1 100 C\r\n\r\nHTTP/1.1 100 C\r\n\r\nHTTP/1.1 100 C\r\n\r\nHTTP/1.1 100 C\r\n\r\n"
     "HTTP/1.1 100 C\r\n\r\nHTTP/1.1 100 C\r\n\r\nHTTP/1.1 100 C\r\n\r\nHTTP/1.1 100 C\r\n\r\n"
     "HTTP/1.1 100 C\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
     false, false, -HTTP_PERR_TOO_LONG, 0, NULL, NULL},
    {"chunk size too large",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", false, false,
     -HTTP_PERR_FRAMING, 0, NULL, NULL},
    {"chunk size not hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", false,
     false, -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"chunk size with a sign", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", false,
     false, -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"chunk size followed by junk",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n", false, false,
     -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"chunk longer than its size",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", false, false,
     -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"a CR without LF after a chunk",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX", false, false,
     -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"a folded trailer",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n", false, false,
     -HTTP_PERR_SYNTAX, 0, NULL, NULL},
    {"a trailer without a colon",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnonsense\r\n\r\n", false, false,
     -HTTP_PERR_SYNTAX, 0, NULL, NULL},

    {"nothing at all, then the end", "", true, false, -HTTP_PERR_TRUNCATED, 0, NULL, NULL},
    {"a head cut short", "HTTP/1.1 200 OK\r\nContent-Le", true, false, -HTTP_PERR_TRUNCATED, 0,
     NULL, NULL},
    {"a body cut short", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", true, false,
     -HTTP_PERR_TRUNCATED, 0, NULL, NULL},
    {"a chunked body without its last chunk",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", true, false,
     -HTTP_PERR_TRUNCATED, 0, NULL, NULL},
    {"a chunk cut short", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", true,
     false, -HTTP_PERR_TRUNCATED, 0, NULL, NULL},
    {"a trailer cut short", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n",
     true, false, -HTTP_PERR_TRUNCATED, 0, NULL, NULL},
    {"waiting for the body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", false, false, 0,
     200, "hello", ""},
};

/* Each case whole, a byte at a time, and cut in two at every offset. */
static void parser_cases(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pcase *c = &cases[i];
        size_t len = strlen(c->in);
        if (strstr(c->name, "NUL") != NULL)
            len = strlen(c->in) + 1 + strlen(c->in + strlen(c->in) + 1);
        struct outcome o;
        size_t *cuts = malloc((len + 1) * sizeof(size_t));
        for (size_t k = 0; k < len; k++)
            cuts[k] = k + 1;
        bool same = true;
        char why[128] = "";
        for (int way = 0; way < 3 && same; way++) {
            size_t n_splits = way == 2 ? len + 1 : 1;
            for (size_t s = 0; s < n_splits && same; s++) {
                size_t one = s;
                if (way == 0)
                    run(c->in, len, NULL, 0, c->eof, c->head_request, &o);
                else if (way == 1)
                    run(c->in, len, cuts, len > 0 ? len - 1 : 0, c->eof, c->head_request, &o);
                else
                    run(c->in, len, &one, 1, c->eof, c->head_request, &o);
                const char *want_body = c->body ? c->body : "";
                if (o.rc != c->rc)
                    snprintf(why, sizeof(why), "way %d split %zu: rc %d, want %d", way, s, o.rc,
                             c->rc);
                else if (c->rc >= 0 && o.status != c->status)
                    snprintf(why, sizeof(why), "way %d: status %d", way, o.status);
                else if (c->rc >= 0 && (o.body_len != strlen(want_body) ||
                                        memcmp(o.body, want_body, o.body_len) != 0))
                    snprintf(why, sizeof(why), "way %d split %zu: body '%.*s'", way, s,
                             (int)o.body_len, o.body);
                else if (c->rc >= 0 && c->ctype != NULL && strcmp(o.ctype, c->ctype) != 0)
                    snprintf(why, sizeof(why), "way %d: content type '%s'", way, o.ctype);
                else if (c->rc >= 0 && o.heads != 1)
                    snprintf(why, sizeof(why), "way %d: %d heads", way, o.heads);
                same = why[0] == '\0';
            }
        }
        ok(same, "%s: %s, whole, byte by byte and split anywhere%s%s", c->name,
           c->rc == 1   ? "read"
           : c->rc == 0 ? "waits"
                        : http_perr_str(c->rc),
           same ? "" : " — ", why);
        free(cuts);
    }
}

/* Responses built at run time: the bounds, just inside and just past. */
static void parser_bounds(void)
{
    static char big[HTTP_HEAD_MAX + 4096];
    struct outcome o;

    /* A head of exactly HTTP_HEAD_MAX octets is read; one more is too long. */
    for (int extra = 0; extra <= 1; extra++) {
        const char *start = "HTTP/1.1 200 OK\r\nX-Pad: ";
        const char *end = "\r\nContent-Length: 0\r\n\r\n";
        size_t pad = HTTP_HEAD_MAX - strlen(start) - strlen(end) + (size_t)extra;
        size_t n = (size_t)snprintf(big, sizeof(big), "%s", start);
        memset(big + n, 'a', pad);
        n += pad;
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s", end);
        run(big, n, NULL, 0, false, false, &o);
        is_int(o.rc, extra ? -HTTP_PERR_TOO_LONG : 1, "a head of %zu octets: %s", n,
               extra ? "too long" : "read");
    }
    /* An endless head is refused once HTTP_HEAD_MAX octets have come, without its end. */
    memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
    memset(big + 17, 'b', sizeof(big) - 17);
    run(big, HTTP_HEAD_MAX, NULL, 0, false, false, &o);
    is_int(o.rc, -HTTP_PERR_TOO_LONG, "a head with no end is refused at HTTP_HEAD_MAX");
    run(big, HTTP_HEAD_MAX - 1, NULL, 0, false, false, &o);
    is_int(o.rc, 0, "and still awaited one octet before");

    /* HTTP_FIELDS_MAX fields, then one more. */
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\n");
        for (int i = 0; i < HTTP_FIELDS_MAX - 1 + extra; i++)
            n += (size_t)snprintf(big + n, sizeof(big) - n, "X-%d: v\r\n", i);
        n += (size_t)snprintf(big + n, sizeof(big) - n, "Content-Length: 0\r\n\r\n");
        run(big, n, NULL, 0, false, false, &o);
        is_int(o.rc, extra ? -HTTP_PERR_TOO_LONG : 1, "%d fields: %s", HTTP_FIELDS_MAX + extra,
               extra ? "too many" : "read");
    }

    /* A chunk-size line with extensions up to HTTP_CHUNK_LINE_MAX, then past it. */
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)snprintf(big, sizeof(big),
                                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=");
        size_t line_start = n - 4;
        size_t pad = HTTP_CHUNK_LINE_MAX - 4 - 2 + (size_t)extra;
        memset(big + n, 'e', pad);
        n += pad;
        n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\nz\r\n0\r\n\r\n");
        (void)line_start;
        run(big, n, NULL, 0, false, false, &o);
        is_int(o.rc, extra ? -HTTP_PERR_TOO_LONG : 1, "a chunk line of %zu octets: %s",
               (size_t)HTTP_CHUNK_LINE_MAX + (size_t)extra, extra ? "too long" : "read");
    }
    /* A chunk line that never ends. */
    size_t n =
        (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    memset(big + n, '1', 4000);
    run(big, n + 4000, NULL, 0, false, false, &o);
    is_int(o.rc, -HTTP_PERR_TOO_LONG, "a chunk line with no end is refused");
    /* Too many trailer fields. */
    n = (size_t)snprintf(big, sizeof(big),
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    for (int i = 0; i <= HTTP_FIELDS_MAX; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "T-%d: v\r\n", i);
    n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
    run(big, n, NULL, 0, false, false, &o);
    is_int(o.rc, -HTTP_PERR_TOO_LONG, "too many trailer fields are refused");

    /* A large body in many chunks comes out whole and in order. */
    static char body[6000];
    n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t i = 0; i < sizeof(body); i += 300) {
        for (size_t k = 0; k < 300; k++)
            body[i + k] = (char)('a' + (i / 300 + k) % 26);
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%x\r\n", 300);
        memcpy(big + n, body + i, 300);
        n += 300;
        n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
    }
    n += (size_t)snprintf(big + n, sizeof(big) - n, "0\r\n\r\n");
    size_t cuts[64];
    for (size_t i = 0; i < 64; i++)
        cuts[i] = (i + 1) * (n / 65);
    run(big, n, cuts, 64, false, false, &o);
    ok(o.rc == 1 && o.body_len == sizeof(body) && memcmp(o.body, body, sizeof(body)) == 0,
       "20 chunks of 300 octets, in 65 pieces: the body whole and in order");

    /* After the END, nothing more: the parser returns 0 and uses nothing. */
    struct http_parser p;
    http_parser_init(&p, false);
    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nextra";
    struct http_event ev;
    size_t used, total = 0;
    int rc;
    while ((rc = http_parser_next(&p, r + total, strlen(r) - total, false, &used, &ev)) == 1 &&
           ev.type != HTTP_EVENT_END)
        total += used;
    total += used;
    ok(http_parser_done(&p), "END seen");
    is_int(http_parser_next(&p, r + total, strlen(r) - total, true, &used, &ev), 0, "after END: 0");
    is_int(used, 0, "after END: nothing used");
    /* An error sticks. */
    http_parser_init(&p, false);
    is_int(http_parser_next(&p, "HTTP/9", 6, true, &used, &ev), -HTTP_PERR_TRUNCATED, "cut short");
    is_int(http_parser_next(&p, "HTTP/1.1 200 OK\r\n\r\n", 19, true, &used, &ev),
           -HTTP_PERR_TRUNCATED, "the error stays");
}

/* Random bytes and mutated responses: the parser never reads outside its input or loops. */
static void parser_noise(void)
{
    static const char *seeds[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nA: b\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end",
    };
    unsigned seed = 12345;
    int ends = 0, errors = 0;
    bool sane = true;
    for (int iter = 0; iter < 20000; iter++) {
        char in[256];
        const char *s = seeds[iter % 3];
        size_t len = strlen(s);
        memcpy(in, s, len);
        for (int m = 0; m < 1 + iter % 4; m++) {
            seed = seed * 1103515245 + 12345;
            in[(seed >> 8) % len] = (char)(seed >> 20);
        }
        struct outcome o;
        size_t cut = (seed >> 4) % len;
        run(in, len, &cut, 1, iter % 2 == 0, false, &o);
        if (o.rc == 1)
            ends++;
        else if (o.rc < 0 && o.rc >= -HTTP_PERR_TRUNCATED)
            errors++;
        else if (o.rc != 0)
            sane = false;
    }
    ok(sane, "20000 mutated responses: each read, refused or awaited (%d read, %d refused)", ends,
       errors);
}

/* --- the client ---------------------------------------------------------- */

static uv_loop_t loop;

enum server_mode {
    SRV_ANSWER,  /* read the whole request, then send the canned answer and close */
    SRV_EARLY,   /* answer as soon as the head has come, then close */
    SRV_SILENT,  /* read everything, answer nothing */
    SRV_HANG_UP, /* close once the head has come, without a word */
};

struct server {
    uv_tcp_t tcp;
    enum server_mode mode;
    const char *answer;
    char head[4096];
    size_t head_len;
    uint64_t body_len, body_got, content_length;
    uint32_t body_sum; /* a checksum of the body received */
    bool head_done, answered;
    uv_tcp_t *client;
};

static struct server server;

static void close_free(uv_handle_t *h)
{
    free(h);
}

static void write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void shutdown_done(uv_shutdown_t *sh, int status)
{
    (void)status;
    free(sh);
}

/* Closes a connection of the server's, once. */
static void server_close(uv_tcp_t *cl)
{
    if (cl == server.client)
        server.client = NULL;
    if (!uv_is_closing((uv_handle_t *)cl))
        uv_close((uv_handle_t *)cl, close_free);
}

static void server_answer(uv_tcp_t *cl)
{
    if (server.answered)
        return;
    server.answered = true;
    if (server.mode == SRV_HANG_UP) {
        server_close(cl);
        return;
    }
    if (server.mode == SRV_SILENT)
        return;
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init((char *)server.answer, (unsigned)strlen(server.answer));
    uv_write(w, (uv_stream_t *)cl, &b, 1, write_done);
    uv_shutdown_t *sh = malloc(sizeof(*sh));
    uv_shutdown(sh, (uv_stream_t *)cl, shutdown_done);
}

static void server_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    (void)h;
    *b = uv_buf_init(malloc(size), (unsigned)size);
}

static void server_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    uv_tcp_t *cl = (uv_tcp_t *)s;
    if (cl != server.client) {
        /* An earlier call's connection, still draining: only its end matters. */
        free(b->base);
        if (n < 0)
            server_close(cl);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        char ch = b->base[i];
        if (!server.head_done) {
            if (server.head_len < sizeof(server.head) - 1)
                server.head[server.head_len++] = ch;
            server.head[server.head_len] = '\0';
            if (strstr(server.head, "\r\n\r\n") != NULL) {
                server.head_done = true;
                const char *cl_field = strstr(server.head, "Content-Length: ");
                server.content_length = cl_field ? strtoull(cl_field + 16, NULL, 10) : 0;
                if (server.mode == SRV_EARLY || server.mode == SRV_HANG_UP) {
                    server_answer(cl);
                    free(b->base);
                    return;
                }
            }
        } else {
            server.body_got++;
            server.body_sum = server.body_sum * 31 + (unsigned char)ch;
        }
    }
    free(b->base);
    if (n < 0) {
        server_close(cl);
        return;
    }
    if (server.head_done && server.body_got >= server.content_length)
        server_answer(cl);
}

static void server_connection(uv_stream_t *l, int status)
{
    (void)status;
    uv_tcp_t *cl = malloc(sizeof(*cl));
    uv_tcp_init(&loop, cl);
    uv_accept(l, (uv_stream_t *)cl);
    server.client = cl;
    uv_read_start((uv_stream_t *)cl, server_alloc, server_read);
}

static void server_reset(enum server_mode mode, const char *answer)
{
    server.mode = mode;
    server.answer = answer;
    server.head_len = 0;
    server.head[0] = '\0';
    server.body_got = server.body_sum = 0;
    server.head_done = server.answered = false;
    server.client = NULL; /* a connection still open from before is no longer read */
}

/* The request body: a pattern, read in pieces of whatever size is asked. */
struct body_src {
    uint64_t len, reads, max_read;
    uint64_t fail_at; /* 0: never */
    uint32_t sum;
};

static char pattern_at(uint64_t off)
{
    return (char)('A' + (off * 7 + off / 1000) % 26);
}

static ssize_t body_read(void *ctx, uint64_t off, void *p, size_t n)
{
    struct body_src *src = ctx;
    if (src->fail_at != 0 && off + n > src->fail_at)
        return -EIO;
    if (off >= src->len)
        return 0;
    if (n > src->len - off)
        n = (size_t)(src->len - off);
    for (size_t i = 0; i < n; i++)
        ((char *)p)[i] = pattern_at(off + i);
    src->reads++;
    if (n > src->max_read)
        src->max_read = n;
    return (ssize_t)n;
}

struct result {
    int calls, rc, status;
    char ctype[64], body[256], error[160];
    size_t body_len;
};

static void on_result(void *ctx, int rc, const struct http_response *resp)
{
    struct result *r = ctx;
    r->calls++;
    r->rc = rc;
    r->status = resp->status;
    snprintf(r->ctype, sizeof(r->ctype), "%s", resp->content_type);
    snprintf(r->body, sizeof(r->body), "%s", resp->body);
    snprintf(r->error, sizeof(r->error), "%s", resp->error);
    r->body_len = resp->body_len;
}

static struct sockaddr_in server_addr;

static void stop_timer(uv_timer_t *t)
{
    uv_timer_stop(t);
}

/* Runs one call to its end; returns its result. */
static struct result call(const char *method, uint64_t body_len, struct body_src *src,
                          size_t response_max, unsigned timeout_ms, const char *path)
{
    struct result r = {0};
    struct http_request req = {
        .method = method,
        .host = "localhost",
        .addr = (const struct sockaddr *)&server_addr,
        .path = path,
        .headers = "X-Test: yes\r\n",
        .content_type = "message/rfc822",
        .body_len = body_len,
        .body_read = body_read,
        .body_ctx = src,
        .response_max = response_max,
        .timeout_ms = timeout_ms,
    };
    struct http_call *c = http_call_start(&loop, &req, on_result, &r);
    ok(c != NULL, "%s started", method);
    is_int(r.calls, 0, "its callback does not run inside the start");
    while (r.calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    return r;
}

/* --- over TLS ------------------------------------------------------------ */

#define POLICY "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n"

/* An HTTPS server on net itself: reads a request head, answers the policy, closes. */
static void *https_open(struct net_conn *c, void *ctx)
{
    (void)c;
    return ctx;
}

static void https_input(struct net_conn *c, void *ctx)
{
    (void)ctx;
    struct buf *in = net_conn_input(c);
    if (buf_cstr(in) != NULL && strstr(buf_cstr(in), "\r\n\r\n") == NULL)
        return;
    char answer[256];
    int n = snprintf(answer, sizeof(answer),
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(POLICY), POLICY);
    net_conn_write(c, answer, (size_t)n);
    buf_reset(in);
    net_conn_close(c);
}

static void https_close(struct net_conn *c, void *ctx)
{
    (void)c;
    (void)ctx;
}

static const struct net_proto https_proto = {
    .open = https_open, .input = https_input, .close = https_close};

static struct result tls_call(struct tls_client *cli, const char *host,
                              const struct sockaddr_in *addr)
{
    struct result r = {0};
    struct http_request req = {
        .method = "GET",
        .host = host,
        .addr = (const struct sockaddr *)addr,
        .path = "/.well-known/mta-sts.txt",
        .tls = cli,
        .response_max = 64 * 1024,
        .timeout_ms = 10000,
    };
    http_call_start(&loop, &req, on_result, &r);
    while (r.calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    return r;
}

static void tls_tests(void)
{
    char dir[] = "/tmp/kotak-test-http-XXXXXX", crt[128], key[128], err[256] = "";
    if (mkdtemp(dir) == NULL) {
        ok(0, "a temporary folder");
        return;
    }
    snprintf(crt, sizeof(crt), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    const char *name = "mta-sts.example.test";
    is_int(cert_make_self_signed(&name, 1, crt, key, err, sizeof(err)), 0,
           "a certificate for %s (%s)", name, err);
    struct tls_server *ts = NULL;
    is_int(tls_server_new(crt, key, &ts, err, sizeof(err)), 0, "the HTTPS server's TLS (%s)", err);

    /* A free port for the listener. */
    uv_tcp_t probe;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(&loop, &probe);
    uv_tcp_bind(&probe, (struct sockaddr *)&addr, 0);
    int len = sizeof(addr);
    uv_tcp_getsockname(&probe, (struct sockaddr *)&addr, &len);
    uv_close((uv_handle_t *)&probe, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);

    struct net_limits lim = {.idle_timeout_ms = 10000,
                             .tls_handshake_timeout_ms = 10000,
                             .connections = 16,
                             .connections_per_address = 16,
                             .stress_idle_timeout_ms = 10000,
                             .connect_timeout_ms = 10000};
    struct net_server *srv = net_server_new(&loop, ts, &lim, "https-test");
    struct conf_endpoint ep = {.port = ntohs(addr.sin_port)};
    snprintf(ep.host, sizeof(ep.host), "127.0.0.1");
    is_int(net_listen(srv, &ep, true, &https_proto, NULL, "", err, sizeof(err)), 0,
           "an HTTPS server on port %u (%s)", ep.port, err);

    struct tls_client *verifying = NULL, *system = NULL;
    is_int(tls_client_new(crt, true, &verifying, err, sizeof(err)), 0,
           "a verifying client that trusts the test certificate (%s)", err);
    struct result r = tls_call(verifying, name, &addr);
    is_int(r.rc, 0, "over TLS, verified: the exchange succeeds (%s)", r.error);
    ok(r.status == 200 && strcmp(r.body, POLICY) == 0, "the policy, whole (%d)", r.status);
    is_str(r.ctype, "text/plain", "its content type");

    r = tls_call(verifying, "mta-sts.other.test", &addr);
    is_int(r.rc, -ECONNABORTED, "a certificate for another name: -ECONNABORTED");
    ok(strstr(r.error, "TLS") != NULL, "the error says TLS failed (%s)", r.error);

    is_int(tls_client_new(NULL, true, &system, err, sizeof(err)), 0,
           "a verifying client on the system's trust anchors (%s)", err);
    r = tls_call(system, name, &addr);
    is_int(r.rc, -ECONNABORTED, "a certificate no system anchor vouches for: refused (%s)",
           r.error);

    net_server_stop_listening(srv);
    while (net_server_count(srv) > 0 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    uv_run(&loop, UV_RUN_NOWAIT);
    net_server_free(&srv);
    tls_client_free(&verifying);
    tls_client_free(&system);
    tls_server_free(&ts);
    unlink(crt);
    unlink(key);
    rmdir(dir);
}

static void client_tests(void)
{
    uv_loop_init(&loop);
    uv_tcp_init(&loop, &server.tcp);
    uv_ip4_addr("127.0.0.1", 0, &server_addr);
    uv_tcp_bind(&server.tcp, (const struct sockaddr *)&server_addr, 0);
    int len = sizeof(server_addr);
    uv_tcp_getsockname(&server.tcp, (struct sockaddr *)&server_addr, &len);
    uv_listen((uv_stream_t *)&server.tcp, 8, server_connection);

    /* A 3 MiB body, streamed: the server gets every octet, the answer comes back. */
    server_reset(SRV_ANSWER, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             "Content-Length: 14\r\n\r\n{\"ok\": \"yes\"}\n");
    struct body_src src = {.len = 3 * 1024 * 1024 + 17};
    struct result r = call("POST", src.len, &src, 1024, 10000, "/checkv2");
    is_int(r.calls, 1, "the callback ran once");
    is_int(r.rc, 0, "the exchange succeeded (%s)", r.error);
    is_int(r.status, 200, "status 200");
    is_str(r.ctype, "application/json", "its content type");
    is_str(r.body, "{\"ok\": \"yes\"}\n", "its body");
    is_int(server.body_got, src.len, "the server received the whole body");
    uint32_t sum = 0;
    for (uint64_t i = 0; i < src.len; i++)
        sum = sum * 31 + (unsigned char)pattern_at(i);
    ok(server.body_sum == sum, "octet for octet");
    ok(src.max_read <= 16 * 1024, "read in pieces of at most 16 KiB (largest %llu)",
       (unsigned long long)src.max_read);
    ok(strncmp(server.head, "POST /checkv2 HTTP/1.1\r\nHost: localhost\r\n", 41) == 0,
       "request line and Host");
    ok(strstr(server.head, "\r\nX-Test: yes\r\n") != NULL, "the extra field");
    ok(strstr(server.head, "\r\nContent-Type: message/rfc822\r\n") != NULL, "the body's type");
    ok(strstr(server.head, "\r\nContent-Length: 3145745\r\n") != NULL, "the body's length");
    ok(strstr(server.head, "\r\nConnection: close\r\n") != NULL, "Connection: close");

    /* A chunked answer and one that runs to the end. */
    server_reset(SRV_ANSWER, "HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "4\r\nbusy\r\n0\r\n\r\n");
    r = call("GET", 0, NULL, 1024, 10000, "/x");
    ok(r.rc == 0 && r.status == 503 && strcmp(r.body, "busy") == 0,
       "a chunked 503: status and body (%d %d %s)", r.rc, r.status, r.body);
    ok(strstr(server.head, "Content-Length") == NULL, "a GET says no Content-Length");
    server_reset(SRV_ANSWER, "HTTP/1.0 200 OK\r\n\r\nversion: STSv1\nmode: enforce\n");
    r = call("GET", 0, NULL, 1024, 10000, "/.well-known/mta-sts.txt");
    ok(r.rc == 0 && r.status == 200 && strcmp(r.body, "version: STSv1\nmode: enforce\n") == 0,
       "a body to the end of the connection");
    is_str(r.ctype, "", "no content type: empty");

    /* Limits: the body too long, announced or not. */
    server_reset(SRV_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n0123456789a");
    r = call("GET", 0, NULL, 10, 10000, "/");
    is_int(r.rc, -EFBIG, "Content-Length past response_max: -EFBIG (%s)", r.error);
    is_int(r.status, 0, "no status on failure");
    server_reset(SRV_ANSWER, "HTTP/1.1 200 OK\r\n\r\n0123456789a");
    r = call("GET", 0, NULL, 10, 10000, "/");
    is_int(r.rc, -EFBIG, "a body to the end past response_max: -EFBIG");
    server_reset(SRV_ANSWER, "HTTP/1.1 200 OK\r\n\r\n0123456789");
    r = call("GET", 0, NULL, 10, 10000, "/");
    is_int(r.rc, 0, "exactly response_max: taken");
    server_reset(SRV_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello");
    r = call("GET", 0, NULL, 100, 10000, "/");
    is_int(r.rc, -EPROTO, "a bad answer: -EPROTO (%s)", r.error);
    server_reset(SRV_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello");
    r = call("GET", 0, NULL, 100, 10000, "/");
    is_int(r.rc, -ECONNABORTED, "an answer cut short: -ECONNABORTED (%s)", r.error);

    /* An early answer while the body is still going out ends the call. */
    server_reset(SRV_EARLY, "HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n");
    src = (struct body_src){.len = 64 * 1024 * 1024};
    r = call("POST", src.len, &src, 100, 10000, "/checkv2");
    ok(r.rc == 0 && r.status == 413, "an answer before the body was all sent is taken (%d %d)",
       r.rc, r.status);
    ok(server.body_got < src.len, "and the rest of the body is not sent");

    /* The server hangs up, stays silent, or is not there. */
    server_reset(SRV_HANG_UP, NULL);
    r = call("GET", 0, NULL, 100, 10000, "/");
    is_int(r.rc, -ECONNABORTED, "hung up without an answer: -ECONNABORTED (%s)", r.error);
    server_reset(SRV_SILENT, NULL);
    uint64_t t0 = uv_now(&loop);
    r = call("GET", 0, NULL, 100, 300, "/");
    uint64_t took = uv_now(&loop) - t0;
    is_int(r.rc, -ETIMEDOUT, "no answer: -ETIMEDOUT (%s)", r.error);
    ok(took >= 290 && took < 2000, "after the timeout (%llu ms)", (unsigned long long)took);
    if (server.client != NULL)
        server_close(server.client);

    /* The body callback fails, or ends early. */
    server_reset(SRV_SILENT, NULL);
    src = (struct body_src){.len = 1024 * 1024, .fail_at = 100 * 1024};
    r = call("POST", src.len, &src, 100, 10000, "/checkv2");
    is_int(r.rc, -EIO, "the body cannot be read: -EIO (%s)", r.error);
    server_reset(SRV_SILENT, NULL);
    src = (struct body_src){.len = 1000};
    r = call("POST", 2000, &src, 100, 10000, "/checkv2");
    is_int(r.rc, -EIO, "the body ends before body_len: -EIO (%s)", r.error);
    if (server.client != NULL)
        server_close(server.client);

    /* Bad requests never reach the network. */
    server_reset(SRV_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    r = call("GET", 0, NULL, 100, 10000, "/a b");
    is_int(r.rc, -EINVAL, "a space in the path: -EINVAL");
    r = call("GET", 0, NULL, 100, 10000, "/a\r\nX-Injected:1");
    is_int(r.rc, -EINVAL, "CRLF in the path: -EINVAL");
    r = call("GET", 0, NULL, 100, 10000, "relative");
    is_int(r.rc, -EINVAL, "a path without its slash: -EINVAL");
    ok(!server.head_done, "none of them was sent");

    /* Nobody listens. */
    struct sockaddr_in closed;
    uv_ip4_addr("127.0.0.1", 1, &closed);
    struct sockaddr_in keep = server_addr;
    server_addr = closed;
    r = call("GET", 0, NULL, 100, 10000, "/");
    is_int(r.rc, -ECONNABORTED, "connection refused: -ECONNABORTED (%s)", r.error);
    ok(strstr(r.error, "refused") != NULL, "the error says refused");
    server_addr = keep;

    /* A cancelled call never calls back, however it would have ended. */
    server_reset(SRV_SILENT, NULL);
    struct result rc = {0};
    struct body_src big = {.len = 8 * 1024 * 1024};
    struct http_request req = {
        .method = "POST",
        .host = "localhost",
        .addr = (struct sockaddr *)&server_addr,
        .path = "/checkv2",
        .body_len = big.len,
        .body_read = body_read,
        .body_ctx = &big,
        .response_max = 100,
        .timeout_ms = 200,
    };
    struct http_call *c = http_call_start(&loop, &req, on_result, &rc);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    http_call_cancel(&c);
    ok(c == NULL, "cancel clears the handle");
    http_call_cancel(&c);
    uint64_t reads = big.reads;
    uv_timer_t wait;
    uv_timer_init(&loop, &wait);
    uv_timer_start(&wait, stop_timer, 500, 0);
    while (uv_is_active((uv_handle_t *)&wait))
        uv_run(&loop, UV_RUN_ONCE);
    is_int(rc.calls, 0, "the callback never ran after a cancel");
    is_int(big.reads, reads, "nor was the body read again");
    /* Cancelled before connecting. */
    c = http_call_start(&loop, &req, on_result, &rc);
    http_call_cancel(&c);
    uv_timer_start(&wait, stop_timer, 300, 0);
    while (uv_is_active((uv_handle_t *)&wait))
        uv_run(&loop, UV_RUN_ONCE);
    is_int(rc.calls, 0, "cancelled at once: no callback");

    tls_tests();

    if (server.client != NULL)
        server_close(server.client);
    uv_close((uv_handle_t *)&wait, NULL);
    uv_close((uv_handle_t *)&server.tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(uv_loop_close(&loop), 0, "every handle closed: nothing left behind");
}

int main(void)
{
    parser_cases();
    parser_bounds();
    parser_noise();
    client_tests();
    return done_testing();
}
