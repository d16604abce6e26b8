/*
 * test_http_request.c — the head of an HTTP request as the live view's
 * server reads it (RFC 9112): GET and HEAD only, origin-form, no body, a
 * bounded head, and every way a request could mean two things refused.
 */
#include <stdio.h>
#include <string.h>

#include "http_request.h"
#include "tap.h"

static int parse(const char *text, struct http_request *r)
{
    return http_request_parse(text, strlen(text), r);
}

#define IS_STATUS(text, want, ...)                                                                 \
    do {                                                                                           \
        struct http_request r_;                                                                    \
        is_int(parse(text, &r_), -(want), __VA_ARGS__);                                            \
    } while (0)

int main(void)
{
    struct http_request r;
    const char *get = "GET /events?token=ab%2Bc&x=1 HTTP/1.1\r\nHost: 127.0.0.1:2080\r\n"
                      "Last-Event-ID: 12-7\r\nAccept: text/event-stream\r\n\r\nrest";
    int n = parse(get, &r);
    is_int(n, (int)(strstr(get, "rest") - get), "a whole head: its length, through the empty line");
    ok(!r.head && !r.close, "GET, HTTP/1.1 keeps the connection");
    is_str(r.path, "/events", "the path");
    is_str(r.query, "token=ab%2Bc&x=1", "the query as sent");
    is_str(r.last_event_id, "12-7", "Last-Event-ID");
    char v[64];
    ok(http_query_param(r.query, "token", v, sizeof(v)), "token is there");
    is_str(v, "ab+c", "percent-decoded");
    ok(http_query_param(r.query, "x", v, sizeof(v)) && strcmp(v, "1") == 0, "x=1");
    ok(!http_query_param(r.query, "tok", v, sizeof(v)), "a prefix of a name is not the name");
    ok(!http_query_param("token=a%2", "token", v, sizeof(v)), "a cut %%-escape: no value");
    ok(!http_query_param("token=a%zz", "token", v, sizeof(v)), "a bad %%-escape: no value");
    ok(http_query_param("a=1&token=b+c", "token", v, sizeof(v)) && strcmp(v, "b c") == 0,
       "'+' is a space, the second parameter found");
    ok(!http_query_param("token=abcdef", "token", v, 4), "a value that does not fit: false");
    ok(http_query_param("token=", "token", v, sizeof(v)) && v[0] == '\0', "an empty value");

    for (size_t cut = 0; cut < strlen(get) - 4; cut++)
        if (http_request_parse(get, cut, &r) != 0) {
            ok(0, "cut at %zu: not 0", cut);
            break;
        }
    ok(1, "a head cut anywhere before its end asks for more");

    n = parse("HEAD / HTTP/1.0\n\n", &r);
    ok(n == 17 && r.head && r.close, "HEAD, HTTP/1.0, LF alone, no Host needed: %d", n);
    n = parse("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n", &r);
    ok(n > 0 && r.close, "empty lines before the request line skipped; Connection: close");

    IS_STATUS("PUT / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "PUT: 405");
    IS_STATUS("POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411, "POST without Content-Length: 411");
    IS_STATUS("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n\r\n", 413,
              "a body over 4 KiB: 413");
    IS_STATUS("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
              413, "a length past any integer: 413, not a wrapped one");
    IS_STATUS("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
              400, "two Content-Lengths: 400");
    IS_STATUS("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", 400,
              "a list as Content-Length: 400");
    IS_STATUS("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400,
              "a sign in Content-Length: 400");
    IS_STATUS("POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400,
              "an empty Content-Length: 400");
    IS_STATUS("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
              "a chunked POST: 400");
    {
        const char *post = "POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n"
                           "Content-Length: 4096\r\n\r\n<Autodiscover/>";
        n = parse(post, &r);
        ok(n == (int)(strstr(post, "<Auto") - post) && r.post && !r.head &&
               r.content_length == 4096 && strcmp(r.path, "/autodiscover/autodiscover.xml") == 0,
           "POST with a body of 4 KiB: the head's length, the body's left to the caller");
    }
    IS_STATUS("get / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "methods are case-sensitive: 405");
    IS_STATUS("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP/2.0 in text: 505");
    IS_STATUS("GET / HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 without Host: 400");
    IS_STATUS("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "two Host fields: 400");
    IS_STATUS("GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "absolute-form: 400");
    IS_STATUS("GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, "asterisk-form: 400");
    IS_STATUS("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "space before the colon: 400");
    IS_STATUS("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", 400, "obs-fold: 400");
    IS_STATUS("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400, "a body: 400");
    IS_STATUS("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
              "Transfer-Encoding: 400");
    IS_STATUS("GET / HTTP/1.1\rHost: x\r\n\r\n", 400, "a bare CR: 400");
    IS_STATUS("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "a space in the target: 400");
    IS_STATUS("GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "a control octet in the target: 400");
    IS_STATUS("GET / HTTP/1.1\r\nHost: x\r\n: nameless\r\n\r\n", 400, "a field without a name");
    IS_STATUS("GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400, "a control octet in a value");
    IS_STATUS("GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400, "a space after the version");
    IS_STATUS("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400,
              "too many empty lines first: 400");
    is_int(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\nHost: x\r\n\r\n", &r) > 0, 1,
           "Content-Length: 0 is no body");
    is_int(parse("GET / HTTP/1.1\r\nContent-Length: 000\r\nHost: x\r\n\r\n", &r) > 0, 1,
           "Content-Length: 000 is no body either");

    char big[HTTP_REQUEST_MAX + 64];
    snprintf(big, sizeof(big), "GET /");
    memset(big + 5, 'a', 1100);
    snprintf(big + 1105, sizeof(big) - 1105, " HTTP/1.1\r\nHost: x\r\n\r\n");
    IS_STATUS(big, 414, "a target over 1 KiB: 414");
    int len = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: x\r\nX: ");
    memset(big + len, 'b', sizeof(big) - (size_t)len - 1);
    big[sizeof(big) - 1] = '\0';
    IS_STATUS(big, 431, "a head over %d octets: 431", HTTP_REQUEST_MAX);
    len = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < HTTP_FIELDS_MAX; i++)
        len += snprintf(big + len, sizeof(big) - (size_t)len, "X%d: 1\r\n", i);
    snprintf(big + len, sizeof(big) - (size_t)len, "\r\n");
    IS_STATUS(big, 431, "more than %d fields: 431", HTTP_FIELDS_MAX);
    char id[300];
    snprintf(id, sizeof(id), "GET / HTTP/1.1\r\nHost: x\r\nLast-Event-ID: %0200d\r\n\r\n", 1);
    IS_STATUS(id, 400, "a Last-Event-ID over 127 octets: 400");
    n = parse("GET / HTTP/1.1\r\nHost:  127.0.0.1:2080 \r\n\r\n", &r);
    ok(n > 0, "Host with spaces around it");
    is_str(r.host, "127.0.0.1:2080", "its value, trimmed");
    ok(http_host_trusted("127.0.0.1:2080", NULL), "an IPv4 address and a port: ours");
    ok(http_host_trusted("192.0.2.7", NULL), "an IPv4 address without a port");
    ok(http_host_trusted("[::1]:2080", NULL) && http_host_trusted("[2001:db8::1]", NULL),
       "IPv6 literals");
    ok(http_host_trusted("localhost:2080", NULL) && http_host_trusted("LocalHost", NULL),
       "localhost, in any case");
    ok(http_host_trusted("mail.example.test:2080", "mail.example.test"), "our own name");
    ok(!http_host_trusted("attacker.example:2080", "mail.example.test"),
       "someone else's name: not ours (DNS rebinding)");
    ok(!http_host_trusted("127.0.0.1.attacker.example", NULL), "a name that starts like an address");
    ok(!http_host_trusted("localhost.attacker.example", NULL), "nor like localhost");
    ok(!http_host_trusted("[::1", NULL) && !http_host_trusted("[::1]x", NULL) &&
           !http_host_trusted("[nonsense]", NULL),
       "broken IPv6 literals");
    ok(!http_host_trusted("", "mail.example.test"), "an empty Host");
    ok(!http_host_trusted("mail.example.test", ""), "no own name: only addresses and localhost");
    return done_testing();
}
