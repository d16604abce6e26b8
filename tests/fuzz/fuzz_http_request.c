/*
 * fuzz_http_request.c — the head of an HTTP request (web/http_request.h),
 * on bytes a stranger on the network sends to the live view's server.
 *
 * Input: the bytes as they came. Properties:
 * - the answer is 0 (more needed), the length of a whole head, or a status
 *   of 400, 405, 411, 413, 414, 431 or 505, and 0 only while fewer than
 *   HTTP_REQUEST_MAX octets came;
 * - a whole head ends in LF within the input, and every shorter prefix of
 *   it asks for more;
 * - the path begins with '/', path, query and Last-Event-ID are
 *   NUL-terminated and hold no octet below 0x21 (the ID: below 0x20 but TAB);
 * - a query parameter read from it fits its buffer and is NUL-terminated.
 */
#include "fuzz.h"
#include "http_request.h"

static bool printable(const char *s, bool space_ok)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < (space_ok ? 0x20 : 0x21) && *s != '\t')
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct http_request r;
    int rc = http_request_parse(p, size, &r);
    FUZZ_CHECK(rc >= 0 || rc == -400 || rc == -405 || rc == -411 || rc == -413 || rc == -414 ||
                   rc == -431 || rc == -505,
               "status %d", rc);
    FUZZ_CHECK(rc <= 0 || r.content_length <= HTTP_BODY_MAX, "a body of %zu", r.content_length);
    if (rc == 0) {
        FUZZ_CHECK(size < HTTP_REQUEST_MAX, "more asked for after %zu octets", size);
        return 0;
    }
    if (rc < 0)
        return 0;
    FUZZ_CHECK((size_t)rc <= size && p[rc - 1] == '\n', "a head of %d octets of %zu", rc, size);
    for (size_t cut = (size_t)rc > 64 ? (size_t)rc - 64 : 0; cut < (size_t)rc; cut++) {
        struct http_request part;
        FUZZ_CHECK(http_request_parse(p, cut, &part) == 0, "a prefix of %zu octets is no head",
                   cut);
    }
    FUZZ_CHECK(r.path[0] == '/', "path '%s'", r.path);
    FUZZ_CHECK(memchr(r.path, 0, sizeof(r.path)) && memchr(r.query, 0, sizeof(r.query)) &&
                   memchr(r.last_event_id, 0, sizeof(r.last_event_id)),
               "an unterminated string");
    FUZZ_CHECK(printable(r.path, false) && printable(r.query, false), "a control octet kept");
    FUZZ_CHECK(printable(r.last_event_id, true), "a control octet in Last-Event-ID");
    char v[16];
    memset(v, 'x', sizeof(v));
    if (http_query_param(r.query, "token", v, sizeof(v)))
        FUZZ_CHECK(memchr(v, 0, sizeof(v)) != NULL, "an unterminated parameter");
    return 0;
}
