/*
 * http_request.h — the head of an HTTP/1.1 request (RFC 9112), read the
 * way a server that only shows pages must: GET and HEAD, origin-form
 * targets, a bounded head; and POST with a small body, for the one form
 * that needs it (Outlook's autodiscover request). Pure: bytes in, a
 * request or the status to answer out.
 */
#ifndef KOTAK_HTTP_REQUEST_H
#define KOTAK_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_REQUEST_MAX 8192 /* octets of a head: request line and fields */
#define HTTP_FIELDS_MAX 64
#define HTTP_BODY_MAX 4096 /* octets of a POST's body: an autodiscover request is < 1 KiB */

struct http_request {
    bool head;               /* HEAD, else GET (or POST) */
    bool post;               /* POST: a body of content_length octets follows the head */
    size_t content_length;   /* Content-Length; 0 when none (GET and HEAD have no body) */
    char path[1024];         /* the target up to '?', as sent (not decoded) */
    char query[1024];        /* after '?', as sent; "" when none */
    char last_event_id[128]; /* Last-Event-ID (the HTML standard's event streams) */
    char host[256];          /* Host, as sent ("" for HTTP/1.0 without one) */
    bool close;              /* HTTP/1.0, or Connection: close */
};

/*
 * Reads a request head from buf[0..len), which holds what the client sent
 * so far. Returns the octets the head takes (through its empty line) when
 * it is whole and good; 0 when more is needed; or, negated, the status to
 * answer: 400 (malformed: bad line ends, a field without a name or with
 * space before its colon, a folded field, no Host: in HTTP/1.1, a body on
 * GET or HEAD, a Content-Length that is not one number, Transfer-Encoding),
 * 405 (a method other than GET, HEAD and POST), 411 (a POST without
 * Content-Length), 413 (a body over HTTP_BODY_MAX), 414 (a target over 1
 * KiB), 431 (a head over HTTP_REQUEST_MAX, or more than HTTP_FIELDS_MAX
 * fields), 505 (not HTTP/1.x). The body of a POST is the caller's to wait
 * for: content_length octets after the head.
 */
int http_request_parse(const char *buf, size_t len, struct http_request *req);

/*
 * Whether host (a Host value, port and all) names this machine by an IP
 * address, "localhost", or the name given (the server's own): not a name
 * someone else's DNS controls, which a web page could point at us (DNS
 * rebinding) and so read what we serve as if it were its own.
 */
bool http_host_trusted(const char *host, const char *own_name);

/*
 * The value of name in a query string (a=1&b=2), percent-decoded and '+'
 * as a space, into out[0..size): true when it is there, decodes and fits.
 */
bool http_query_param(const char *query, const char *name, char *out, size_t size);

#endif
