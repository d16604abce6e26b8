/*
 * http.h — a small HTTP/1.1 client on the event loop: one request per
 * connection, over plain TCP or TLS, with the response read whole into
 * memory up to a ceiling the caller sets.
 *
 * kotak speaks HTTP as a client twice: to rspamd, posting a message as it
 * is read from the spool, and to a domain's MTA-STS policy server (RFC
 * 8461 3.3), over TLS. Neither needs keep-alive, redirects, cookies or
 * content codings, so none are here: every request says "Connection:
 * close" and the answer ends with the connection or its framing.
 *
 * Two layers, as elsewhere in kotak. The response parser is pure (bytes in,
 * events out, no I/O, no allocation): RFC 9112's status line, header
 * fields, and a body framed by Content-Length, by chunked transfer coding
 * or by the end of the connection, every length bounded. The client is the
 * glue: it connects through common/net.c (which does the TLS, the
 * backpressure and the connect), sends the request, streams the request
 * body from a callback as the socket drains, and feeds the parser.
 */
#ifndef KOTAK_HTTP_H
#define KOTAK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* --- the response parser (pure) ----------------------------------------- */

#define HTTP_HEAD_MAX (16 * 1024) /* status line and header fields, together */
#define HTTP_FIELDS_MAX 100       /* header fields in one head, or trailer fields */
#define HTTP_CHUNK_LINE_MAX 1024  /* a chunk-size line with its extensions */
#define HTTP_INTERIM_MAX 8        /* 1xx responses before the final one */

/* Why a response was refused; http_perr_str() has the words. */
enum http_perr {
    HTTP_PERR_SYNTAX = 1,  /* a malformed status line, field, or chunk line */
    HTTP_PERR_TOO_LONG,    /* the head, a chunk line or the trailer passed its bound */
    HTTP_PERR_FRAMING,     /* Content-Length and Transfer-Encoding that cannot be trusted */
    HTTP_PERR_UNSUPPORTED, /* a transfer coding other than chunked, or 101 */
    HTTP_PERR_TRUNCATED,   /* the connection ended inside the response */
};

enum http_event_type {
    HTTP_EVENT_HEAD, /* the final response's head: status, version, Content-Type */
    HTTP_EVENT_BODY, /* a piece of the body, transfer coding removed */
    HTTP_EVENT_END,  /* the response is complete */
};

/*
 * One event. Pointers borrow from the buffer passed to http_parser_next and
 * are valid until the caller drops those bytes.
 */
struct http_event {
    enum http_event_type type;
    int status;               /* HEAD: 200..599 */
    int minor;                /* HEAD: 0 for HTTP/1.0, 1 for HTTP/1.1 */
    const char *content_type; /* HEAD: the field's value (OWS trimmed), or NULL */
    size_t content_type_len;  /* HEAD */
    uint64_t content_length;  /* HEAD: when has_length */
    bool has_length;          /* HEAD: framed by Content-Length */
    const char *data;         /* BODY */
    size_t len;               /* BODY */
};

/* The parser's state: plain data, no allocation; fields are its own. */
struct http_parser {
    int state;
    bool head_request; /* the response carries no body whatever it says */
    bool chunked;
    bool to_eof; /* the body runs to the end of the connection */
    uint64_t remaining; /* of Content-Length, or of the current chunk */
    size_t scanned;     /* bytes of the current head or line already searched */
    size_t line_start;  /* where the head's current line begins */
    unsigned interim;   /* 1xx responses seen */
    unsigned fields;    /* trailer fields seen */
    size_t trailer_len; /* trailer octets seen */
};

/* A parser for the response to a request; head_request: the request was HEAD. */
void http_parser_init(struct http_parser *p, bool head_request);

/*
 * Reads the next event from buf (len bytes: what the caller holds of the
 * response from the first byte the parser has not consumed). eof: the
 * connection has ended after these bytes. Returns 1 with an event in *ev_r
 * and the bytes it used in *consumed_r (the caller drops them before the
 * next call), 0 when more bytes are needed (*consumed_r may still be > 0:
 * framing the parser used up), or -HTTP_PERR_* for a response that cannot
 * be read; the parser is then spent. After HTTP_EVENT_END it returns 0 and
 * consumes nothing. The head must arrive whole within HTTP_HEAD_MAX bytes:
 * the caller keeps at least that much room.
 */
int http_parser_next(struct http_parser *p, const char *buf, size_t len, bool eof,
                     size_t *consumed_r, struct http_event *ev_r);

/* True once HTTP_EVENT_END has been returned. */
bool http_parser_done(const struct http_parser *p);

/* A short sentence for -HTTP_PERR_* (or its positive value). */
const char *http_perr_str(int err);

/* --- the client (on the loop) ------------------------------------------- */

struct uv_loop_s; /* uv_loop_t */
struct tls_client;
struct http_call;

struct http_request {
    const char *method;          /* "GET" or "POST" */
    const char *host;            /* Host: field; also the TLS name to verify when tls != NULL */
    const struct sockaddr *addr; /* where to connect (the caller resolved it); copied */
    const char *path;            /* "/checkv2" */
    const char *headers;         /* extra header lines, each ending CRLF, or NULL */
    const char *content_type;    /* for a body, or NULL */
    uint64_t body_len;           /* 0: no body (a POST still says Content-Length: 0) */
    /* The body, read in pieces as the socket drains: returns the octets
     * read (at most n, at offset), 0 at its end, <0 on error. */
    ssize_t (*body_read)(void *ctx, uint64_t offset, void *p, size_t n);
    void *body_ctx;
    struct tls_client *tls; /* NULL: plain TCP; the caller keeps it alive until the cb */
    size_t response_max;    /* the longest body accepted; a longer one fails (-EFBIG) */
    unsigned timeout_ms;    /* for the whole exchange, connect to last byte */
};

/*
 * What came back. On success (rc 0) status, content_type and body describe
 * the response, whatever its status. On failure status is 0 and error says
 * why in one line. Every pointer is valid only during the callback.
 */
struct http_response {
    int status;
    const char *content_type; /* "" when absent */
    const char *body;         /* NUL-terminated after body_len bytes, for convenience */
    size_t body_len;
    const char *error; /* "" on success */
    bool ended_by_close; /* the body had no length: the end of the connection ended it */
};

/*
 * Starts an exchange and returns its handle, never NULL. cb runs exactly
 * once, on the loop, never inside http_call_start, with rc 0 or:
 * -ETIMEDOUT (timeout_ms passed), -ECONNABORTED (no connection, the TLS
 * handshake failed, or the connection broke), -EPROTO (a response that
 * cannot be read), -EFBIG (a body above response_max), -EIO (body_read
 * failed, or ended before body_len), -EINVAL (a request field holds a
 * control character or space where it may not). The handle is freed by
 * kotak after cb returns: drop it then. The request's strings are copied;
 * body_read and body_ctx must stay valid until cb.
 *
 * A body framed by the end of the connection (no Content-Length, not
 * chunked) is taken as complete at any end, a reset included: such
 * framing cannot tell a cut body from a whole one, so a caller that must
 * know (a policy file) looks at ended_by_close.
 */
struct http_call *http_call_start(struct uv_loop_s *loop, const struct http_request *req,
                                  void (*cb)(void *ctx, int rc, const struct http_response *resp),
                                  void *ctx);

/* Abandons an exchange before its cb: cb never runs, body_read is never
 * called again. Sets *c to NULL; NULL or *c NULL is a no-op. */
void http_call_cancel(struct http_call **c);

#endif
