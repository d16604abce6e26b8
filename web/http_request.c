/*
 * http_request.c — the head of an HTTP/1.1 request; see http_request.h.
 *
 * RFC 9112 read strictly where laxness lets a request mean two things (a
 * space before a field's colon, folded fields, a bare CR, a body on a
 * request that has none, two Content-Lengths, any Transfer-Encoding: each
 * is 400, so no body's length is ever guessed) and leniently where it costs nothing
 * (LF alone ends a line, 2.2; empty lines before the request line are
 * skipped, 2.2).
 */
#include "http_request.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define LEADING_EMPTY_MAX 4 /* empty lines skipped before the request line */

/* RFC 9110 5.6.2: tchar. */
static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* The end of the line that starts at p (its LF), or NULL when it has not come yet. */
static const char *line_end(const char *p, const char *end)
{
    return memchr(p, '\n', (size_t)(end - p));
}

/* The length of the line [p, lf) without its CR; -1 when a CR stands anywhere else. */
static long line_len(const char *p, const char *lf)
{
    size_t n = (size_t)(lf - p);
    if (n > 0 && p[n - 1] == '\r')
        n--;
    return memchr(p, '\r', n) != NULL ? -1 : (long)n;
}

static bool span_is_ci(const char *p, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

/* The request line (RFC 9112 3): method SP origin-form SP HTTP/1.x. */
static int request_line(const char *p, size_t n, struct http_request *req, int *minor_r)
{
    const char *sp1 = memchr(p, ' ', n);
    if (sp1 == NULL)
        return -400;
    size_t mlen = (size_t)(sp1 - p);
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar((unsigned char)p[i]))
            return -400;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', n - (size_t)(target - p));
    if (sp2 == NULL)
        return -400;
    size_t tlen = (size_t)(sp2 - target);
    const char *version = sp2 + 1;
    size_t vlen = n - (size_t)(version - p);
    if (vlen != 8 || memcmp(version, "HTTP/", 5) != 0 || version[6] != '.' ||
        version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9')
        return -400;
    if (version[5] != '1')
        return -505;
    *minor_r = version[7] - '0';
    if (tlen == 0 || target[0] != '/')
        return -400; /* origin-form only: no absolute-form, no "*" */
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)target[i] <= 0x20 || (unsigned char)target[i] >= 0x7f)
            return -400;
    if (tlen >= sizeof(req->path))
        return -414;
    if (mlen == 3 && memcmp(p, "GET", 3) == 0)
        req->head = false;
    else if (mlen == 4 && memcmp(p, "HEAD", 4) == 0)
        req->head = true;
    else if (mlen == 4 && memcmp(p, "POST", 4) == 0)
        req->post = true;
    else
        return -405; /* methods are case-sensitive (RFC 9110 9.1) */
    const char *q = memchr(target, '?', tlen);
    size_t plen = q ? (size_t)(q - target) : tlen;
    memcpy(req->path, target, plen);
    req->path[plen] = '\0';
    size_t qlen = q ? tlen - plen - 1 : 0;
    memcpy(req->query, q ? q + 1 : "", qlen);
    req->query[qlen] = '\0';
    return 0;
}

/* One field line (RFC 9112 5): name ":" OWS value OWS. */
/* A Content-Length value (RFC 9110 8.6): digits only; at most HTTP_BODY_MAX, else 413. */
static int content_length(const char *v, size_t vlen, struct http_request *req)
{
    if (vlen == 0)
        return -400;
    size_t n = 0;
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -400; /* "1, 1", "+5", "5 5": a length read two ways */
        if (n <= HTTP_BODY_MAX)
            n = n * 10 + (size_t)(v[i] - '0');
    }
    if (n > 0 && !req->post)
        return -400; /* a GET or HEAD with a body: nothing here reads one */
    if (n > HTTP_BODY_MAX)
        return -413;
    req->content_length = n;
    return 0;
}

static int field_line(const char *p, size_t n, struct http_request *req, bool *host_r,
                      bool *length_r)
{
    if (n > 0 && (p[0] == ' ' || p[0] == '\t'))
        return -400; /* obs-fold: refused (5.2) */
    const char *colon = memchr(p, ':', n);
    if (colon == NULL || colon == p)
        return -400;
    size_t name_len = (size_t)(colon - p);
    for (size_t i = 0; i < name_len; i++)
        if (!is_tchar((unsigned char)p[i]))
            return -400; /* a space before the colon included (5.1) */
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    for (size_t i = 0; i < vlen; i++)
        if ((unsigned char)v[i] < 0x20 && v[i] != '\t')
            return -400;
    if (span_is_ci(p, name_len, "Host")) {
        if (*host_r || vlen >= sizeof(req->host))
            return -400; /* two Host fields (RFC 9112 3.2), or one no name is this long */
        *host_r = true;
        memcpy(req->host, v, vlen);
        req->host[vlen] = '\0';
    } else if (span_is_ci(p, name_len, "Content-Length")) {
        if (*length_r)
            return -400; /* two of them: which one frames the body? */
        *length_r = true;
        int rc = content_length(v, vlen, req);
        if (rc < 0)
            return rc;
    } else if (span_is_ci(p, name_len, "Transfer-Encoding")) {
        return -400;
    } else if (span_is_ci(p, name_len, "Connection")) {
        for (size_t i = 0; i + 5 <= vlen; i++)
            if (strncasecmp(v + i, "close", 5) == 0)
                req->close = true;
    } else if (span_is_ci(p, name_len, "Last-Event-ID")) {
        if (vlen >= sizeof(req->last_event_id))
            return -400;
        memcpy(req->last_event_id, v, vlen);
        req->last_event_id[vlen] = '\0';
    }
    return 0;
}

int http_request_parse(const char *buf, size_t len, struct http_request *req)
{
    memset(req, 0, sizeof(*req));
    const char *p = buf, *end = buf + (len < HTTP_REQUEST_MAX ? len : HTTP_REQUEST_MAX);
    for (int skipped = 0;; skipped++) {
        const char *lf = line_end(p, end);
        if (lf == NULL)
            return len >= HTTP_REQUEST_MAX ? -431 : 0;
        long n = line_len(p, lf);
        if (n < 0)
            return -400;
        if (n > 0) {
            int minor;
            int rc = request_line(p, (size_t)n, req, &minor);
            if (rc < 0)
                return rc;
            req->close = minor == 0;
            p = lf + 1;
            break;
        }
        if (skipped == LEADING_EMPTY_MAX)
            return -400;
        p = lf + 1;
    }
    bool host = false, length = false, http10 = req->close;
    for (int fields = 0;; fields++) {
        const char *lf = line_end(p, end);
        if (lf == NULL)
            return len >= HTTP_REQUEST_MAX ? -431 : 0;
        long n = line_len(p, lf);
        if (n < 0)
            return -400;
        if (n == 0) {
            if (!host && !http10)
                return -400; /* HTTP/1.1 needs Host: (RFC 9112 3.2) */
            if (req->post && !length)
                return -411; /* no chunked bodies here: the length comes first */
            return (int)(lf + 1 - buf);
        }
        if (fields == HTTP_FIELDS_MAX)
            return -431;
        int rc = field_line(p, (size_t)n, req, &host, &length);
        if (rc < 0)
            return rc;
        p = lf + 1;
    }
}

bool http_host_trusted(const char *host, const char *own_name)
{
    char name[256];
    size_t n = strlen(host);
    if (n == 0 || n >= sizeof(name))
        return false;
    if (host[0] == '[') { /* an IPv6 literal: [::1]:2080 */
        const char *rb = strchr(host, ']');
        if (rb == NULL || (rb[1] != '\0' && rb[1] != ':'))
            return false;
        n = (size_t)(rb - host - 1);
        memcpy(name, host + 1, n);
        name[n] = '\0';
        struct in6_addr a6;
        return inet_pton(AF_INET6, name, &a6) == 1;
    }
    const char *colon = strchr(host, ':');
    n = colon ? (size_t)(colon - host) : n;
    memcpy(name, host, n);
    name[n] = '\0';
    struct in_addr a4;
    return inet_pton(AF_INET, name, &a4) == 1 || strcasecmp(name, "localhost") == 0 ||
           (own_name != NULL && own_name[0] != '\0' && strcasecmp(name, own_name) == 0);
}

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* decode_string's step for a query's value: %XX and '+' for a space. */
static bool query_char(const char *in, size_t n, size_t *i, char *c_r)
{
    char c = in[*i];
    if (c == '%') {
        if (*i + 2 >= n)
            return false;
        int hi = hex(in[*i + 1]), lo = hex(in[*i + 2]);
        if (hi < 0 || lo < 0)
            return false;
        c = (char)(hi << 4 | lo);
        *i += 2;
    } else if (c == '+') {
        c = ' ';
    }
    *c_r = c;
    return true;
}

bool http_query_param(const char *query, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    for (const char *p = query; *p != '\0';) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        if (plen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=')
            return decode_string(p + nlen + 1, plen - nlen - 1, out, size, query_char);
        p += plen + (amp != NULL);
    }
    return false;
}
