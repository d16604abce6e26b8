/*
 * rspamd.c — rspamd's /checkv2 over common/http.c, and a JSON reader for
 * its reply; see rspamd.h.
 *
 * The reader takes RFC 8259 JSON, strictly, but keeps only what kotak
 * acts on: "action", "score", "required_score", "subject" and
 * "messages"."smtp_message" at the top. Everything else (the symbols, the
 * milter block, whatever a later rspamd adds) is checked and skipped
 * without being stored, so a reply of any shape costs no memory beyond
 * its own bytes, and nesting is bounded, so it costs no unbounded stack.
 */
#include "rspamd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "http.h"
#include "util.h"

/* --- the reply reader ---------------------------------------------------- */

struct json {
    const char *p, *end;
};

static void skip_ws(struct json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        *v = *v * 16 + (unsigned)d;
    }
    return 0;
}

/* Appends one octet to out[0..size) while there is room, keeping a NUL after it. */
static void put(char *out, size_t size, size_t *len, unsigned char ch)
{
    if (out != NULL && *len + 1 < size) {
        out[*len] = (char)ch;
        out[*len + 1] = '\0';
    }
    (*len)++;
}

static void put_utf8(char *out, size_t size, size_t *len, unsigned cp)
{
    if (cp < 0x80) {
        put(out, size, len, (unsigned char)cp);
    } else if (cp < 0x800) {
        put(out, size, len, (unsigned char)(0xc0 | cp >> 6));
        put(out, size, len, (unsigned char)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        put(out, size, len, (unsigned char)(0xe0 | cp >> 12));
        put(out, size, len, (unsigned char)(0x80 | ((cp >> 6) & 0x3f)));
        put(out, size, len, (unsigned char)(0x80 | (cp & 0x3f)));
    } else {
        put(out, size, len, (unsigned char)(0xf0 | cp >> 18));
        put(out, size, len, (unsigned char)(0x80 | ((cp >> 12) & 0x3f)));
        put(out, size, len, (unsigned char)(0x80 | ((cp >> 6) & 0x3f)));
        put(out, size, len, (unsigned char)(0x80 | (cp & 0x3f)));
    }
}

/*
 * A string at j->p (its opening quote), decoded into out (NULL: only
 * checked), cut to size - 1 octets; *len_r is the whole decoded length.
 */
static int read_string(struct json *j, char *out, size_t size, size_t *len_r)
{
    size_t len = 0;
    if (out != NULL && size > 0)
        out[0] = '\0';
    if (j->p >= j->end || *j->p != '"')
        return -1;
    j->p++;
    while (j->p < j->end) {
        unsigned char ch = (unsigned char)*j->p++;
        if (ch == '"') {
            if (len_r != NULL)
                *len_r = len;
            return 0;
        }
        if (ch < 0x20)
            return -1; /* control characters must be escaped (RFC 8259 7) */
        if (ch != '\\') {
            put(out, size, &len, ch);
            continue;
        }
        if (j->p >= j->end)
            return -1;
        char e = *j->p++;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e != '\0' && simple != NULL) {
            put(out, size, &len, (unsigned char)"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"]);
            continue;
        }
        unsigned cp, lo;
        if (e != 'u' || j->end - j->p < 4 || hex4(j->p, &cp) < 0)
            return -1;
        j->p += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && j->end - j->p >= 6 && j->p[0] == '\\' &&
            j->p[1] == 'u' && hex4(j->p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            j->p += 6;
        } else if (cp >= 0xd800 && cp < 0xe000) {
            cp = 0xfffd; /* a lone surrogate */
        }
        put_utf8(out, size, &len, cp);
    }
    return -1;
}

/*
 * A number (RFC 8259 6). Converted by hand, not with strtod, so that no
 * locale can change what a decimal point is.
 */
static int read_number(struct json *j, double *v)
{
    const char *p = j->p;
    bool neg = false;
    if (p < j->end && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= j->end || *p < '0' || *p > '9')
        return -1;
    double x = 0;
    if (*p == '0') {
        p++;
    } else {
        while (p < j->end && *p >= '0' && *p <= '9')
            x = x * 10 + (*p++ - '0');
    }
    if (p < j->end && *p == '.') {
        p++;
        if (p >= j->end || *p < '0' || *p > '9')
            return -1;
        double scale = 0.1;
        while (p < j->end && *p >= '0' && *p <= '9') {
            x += (*p++ - '0') * scale;
            scale /= 10;
        }
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = false;
        if (p < j->end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p >= j->end || *p < '0' || *p > '9')
            return -1;
        int e = 0;
        while (p < j->end && *p >= '0' && *p <= '9') {
            if (e < 1000)
                e = e * 10 + (*p - '0');
            p++;
        }
        for (int i = 0; i < e && x != 0 && x < 1e300 && x > 1e-300; i++)
            x = eneg ? x / 10 : x * 10;
    }
    j->p = p;
    *v = neg ? -x : x;
    return 0;
}

static int skip_value(struct json *j, int depth);

/* An object or array at j->p, its members checked and skipped. */
static int skip_container(struct json *j, int depth)
{
    char close = *j->p == '{' ? '}' : ']';
    bool object = close == '}';
    if (depth >= RSPAMD_JSON_DEPTH)
        return -1;
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return 0;
    }
    for (;;) {
        if (object) {
            if (read_string(j, NULL, 0, NULL) < 0)
                return -1;
            skip_ws(j);
            if (j->p >= j->end || *j->p++ != ':')
                return -1;
        }
        if (skip_value(j, depth + 1) < 0)
            return -1;
        skip_ws(j);
        if (j->p >= j->end)
            return -1;
        char c = *j->p++;
        if (c == close)
            return 0;
        if (c != ',')
            return -1;
        skip_ws(j);
    }
}

static int literal(struct json *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return -1;
    j->p += n;
    return 0;
}

static int skip_value(struct json *j, int depth)
{
    skip_ws(j);
    if (j->p >= j->end)
        return -1;
    double d;
    switch (*j->p) {
    case '{':
    case '[':
        return skip_container(j, depth);
    case '"':
        return read_string(j, NULL, 0, NULL);
    case 't':
        return literal(j, "true");
    case 'f':
        return literal(j, "false");
    case 'n':
        return literal(j, "null");
    default:
        return read_number(j, &d);
    }
}

/* What the top level said, before it is judged. */
struct reply_fields {
    char action[32];
    bool has_action, has_score;
    double score, required;
    char subject[sizeof(((struct rspamd_outcome *)0)->subject)];
    char message[sizeof(((struct rspamd_outcome *)0)->message)];
};

/*
 * Reads an object's members, calling member() for each key with j->p at
 * its value; member() reads the value (or skips it) and returns <0 on error.
 */
static int read_object(struct json *j, int depth,
                       int (*member)(struct json *j, const char *key, size_t key_len, int depth,
                                     struct reply_fields *f),
                       struct reply_fields *f)
{
    skip_ws(j);
    if (j->p >= j->end || *j->p != '{' || depth >= RSPAMD_JSON_DEPTH)
        return -1;
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        char key[32];
        size_t key_len;
        if (read_string(j, key, sizeof(key), &key_len) < 0)
            return -1;
        skip_ws(j);
        if (j->p >= j->end || *j->p++ != ':')
            return -1;
        skip_ws(j);
        if (member(j, key, key_len < sizeof(key) ? key_len : 0, depth, f) < 0)
            return -1;
        skip_ws(j);
        if (j->p >= j->end)
            return -1;
        char c = *j->p++;
        if (c == '}')
            return 0;
        if (c != ',')
            return -1;
        skip_ws(j);
    }
}

static bool key_is(const char *key, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(key, want, len) == 0;
}

static int messages_member(struct json *j, const char *key, size_t key_len, int depth,
                           struct reply_fields *f)
{
    if (key_is(key, key_len, "smtp_message") && j->p < j->end && *j->p == '"')
        return read_string(j, f->message, sizeof(f->message), NULL);
    return skip_value(j, depth + 1);
}

static int top_member(struct json *j, const char *key, size_t key_len, int depth,
                      struct reply_fields *f)
{
    bool is_string = j->p < j->end && *j->p == '"';
    bool is_number = j->p < j->end && (*j->p == '-' || (*j->p >= '0' && *j->p <= '9'));
    if (key_is(key, key_len, "action") && is_string) {
        size_t len;
        if (read_string(j, f->action, sizeof(f->action), &len) < 0)
            return -1;
        f->has_action = true;
        if (len >= sizeof(f->action))
            f->action[0] = '\0'; /* no action's name is that long */
        return 0;
    }
    if (key_is(key, key_len, "score") && is_number) {
        f->has_score = true;
        return read_number(j, &f->score);
    }
    if (key_is(key, key_len, "required_score") && is_number)
        return read_number(j, &f->required);
    if (key_is(key, key_len, "subject") && is_string)
        return read_string(j, f->subject, sizeof(f->subject), NULL);
    if (key_is(key, key_len, "messages") && j->p < j->end && *j->p == '{')
        return read_object(j, depth + 1, messages_member, f);
    return skip_value(j, depth + 1);
}

static const struct {
    const char *name;
    enum rspamd_action action;
} action_names[] = {
    {"no action", RSPAMD_NO_ACTION},
    {"greylist", RSPAMD_GREYLIST},
    {"add header", RSPAMD_ADD_HEADER},
    {"rewrite subject", RSPAMD_REWRITE_SUBJECT},
    {"soft reject", RSPAMD_SOFT_REJECT},
    {"reject", RSPAMD_REJECT},
    /* kotak keeps what it acknowledged: a message to be dropped is refused instead. */
    {"discard", RSPAMD_REJECT},
    {"quarantine", RSPAMD_REJECT},
};

const char *rspamd_action_name(enum rspamd_action a)
{
    for (size_t i = 0; i < sizeof(action_names) / sizeof(action_names[0]); i++)
        if (action_names[i].action == a)
            return action_names[i].name;
    return "unreachable";
}

/* Printable ASCII only: the text may end up in an SMTP reply. */
static void clean_ascii(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
}

/* No control characters in a header field's value, and no UTF-8 sequence cut in two. */
static void clean_field_value(char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            s[i] = ' ';
    size_t end = n;
    while (end > 0 && ((unsigned char)s[end - 1] & 0xc0) == 0x80)
        end--; /* continuation octets: the sequence's first octet is before them */
    if (end > 0 && (unsigned char)s[end - 1] >= 0xc0) {
        unsigned char lead = (unsigned char)s[end - 1];
        size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
        if (n - (end - 1) < need)
            s[end - 1] = '\0';
    }
}

static int unreachable(struct rspamd_outcome *o, const char *why)
{
    memset(o, 0, sizeof(*o));
    o->action = RSPAMD_UNREACHABLE;
    size_t n = strnlen(why, sizeof(o->message) - 1); /* cut to fit */
    memcpy(o->message, why, n);
    o->message[n] = '\0';
    clean_ascii(o->message);
    return -EPROTO;
}

int rspamd_parse_reply(const char *json, size_t len, struct rspamd_outcome *o)
{
    struct reply_fields f;
    memset(&f, 0, sizeof(f));
    struct json j = {json, json + len};
    if (read_object(&j, 0, top_member, &f) < 0)
        return unreachable(o, "rspamd's reply is not a JSON object");
    skip_ws(&j);
    if (j.p != j.end)
        return unreachable(o, "rspamd's reply has more after its JSON object");
    if (!f.has_action || !f.has_score)
        return unreachable(o, "rspamd's reply has no action or no score");
    memset(o, 0, sizeof(*o));
    o->action = RSPAMD_NO_ACTION; /* an action of its own making: nothing kotak does */
    for (size_t i = 0; i < sizeof(action_names) / sizeof(action_names[0]); i++)
        if (strcmp(f.action, action_names[i].name) == 0)
            o->action = action_names[i].action;
    o->score = f.score;
    o->required = f.required;
    clean_field_value(f.subject);
    memcpy(o->subject, f.subject, sizeof(o->subject));
    clean_ascii(f.message);
    memcpy(o->message, f.message, sizeof(o->message));
    return 0;
}

/* "-1.25": two decimals, by hand, so that no locale makes it "-1,25". */
static void format_score(double x, char out[32])
{
    if (!(x > -1e15 && x < 1e15))
        x = x < 0 ? -1e15 : 1e15; /* NaN and the infinite become bounds */
    double y = x * 100;
    long long c = (long long)(y < 0 ? y - 0.5 : y + 0.5);
    unsigned long long a = c < 0 ? (unsigned long long)-c : (unsigned long long)c;
    snprintf(out, 32, "%s%llu.%02llu", c < 0 ? "-" : "", a / 100, a % 100);
}

int rspamd_headers(const struct rspamd_outcome *o, struct buf *out)
{
    if (o->action == RSPAMD_UNREACHABLE)
        return 0;
    bool spam = o->action == RSPAMD_ADD_HEADER || o->action == RSPAMD_REWRITE_SUBJECT ||
                o->action == RSPAMD_SOFT_REJECT || o->action == RSPAMD_REJECT;
    char score[32], required[32];
    format_score(o->score, score);
    format_score(o->required, required);
    int rc = 0;
    if (o->action == RSPAMD_ADD_HEADER || o->action == RSPAMD_REWRITE_SUBJECT)
        rc = buf_append_str(out, "X-Spam: Yes\r\n");
    if (rc == 0)
        rc = buf_printf(out,
                        "X-Spam-Score: %s\r\n"
                        "X-Spam-Status: %s, score=%s required=%s, action=%s\r\n",
                        score, spam ? "Yes" : "No", score, required, rspamd_action_name(o->action));
    return rc;
}

/* --- the client ---------------------------------------------------------- */

#define RSPAMD_FIELD_MAX 512 /* the longest envelope value sent; longer ones are cut */

struct rspamd {
    uv_loop_t *loop;
    struct sockaddr_storage addr;
    char host[128]; /* the Host: field */
    unsigned timeout_ms;
};

struct rspamd_call {
    struct http_call *http;
    void (*cb)(void *ctx, const struct rspamd_outcome *o);
    void *ctx;
    ssize_t (*read)(void *ctx, uint64_t off, void *p, size_t n);
    void *read_ctx;
};

struct rspamd *rspamd_new(struct uv_loop_s *loop, const char *host, uint16_t port,
                          unsigned timeout_ms, char *err, size_t err_size)
{
    struct rspamd *r = xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->timeout_ms = timeout_ms;
    struct sockaddr_in *in = (struct sockaddr_in *)&r->addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&r->addr;
    if (uv_ip4_addr(host, port, in) == 0) {
        snprintf(r->host, sizeof(r->host), "%s", host);
    } else if (uv_ip6_addr(host, port, in6) == 0) {
        snprintf(r->host, sizeof(r->host), "[%s]", host);
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(host, NULL, &hints, &res);
        if (rc != 0 || res == NULL) {
            snprintf(err, err_size, "cannot resolve %s: %s", host,
                     rc != 0 ? gai_strerror(rc) : "no address");
            free(r);
            return NULL;
        }
        memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
        if (res->ai_family == AF_INET)
            in->sin_port = htons(port);
        else
            in6->sin6_port = htons(port);
        freeaddrinfo(res);
        snprintf(r->host, sizeof(r->host), "%s", host);
    }
    return r;
}

void rspamd_free(struct rspamd **r)
{
    free(*r);
    *r = NULL;
}

/* One request header field; control characters in the value are left out. */
static void put_field(struct buf *b, const char *name, const char *value)
{
    char v[RSPAMD_FIELD_MAX + 1];
    size_t n = 0;
    for (const char *p = value; *p != '\0' && n < RSPAMD_FIELD_MAX; p++)
        if ((unsigned char)*p >= 0x20 && *p != 0x7f)
            v[n++] = *p;
    v[n] = '\0';
    buf_printf(b, "%s: %s\r\n", name, v);
}

static ssize_t body_read(void *ctx, uint64_t off, void *p, size_t n)
{
    struct rspamd_call *call = ctx;
    return call->read(call->read_ctx, off, p, n);
}

static void http_done(void *ctx, int rc, const struct http_response *resp)
{
    struct rspamd_call *call = ctx;
    struct rspamd_outcome o;
    char why[200];
    if (rc < 0) {
        snprintf(why, sizeof(why), "rspamd: %s", resp->error);
        unreachable(&o, why);
    } else if (resp->status != 200) {
        snprintf(why, sizeof(why), "rspamd answered HTTP %d", resp->status);
        unreachable(&o, why);
    } else {
        rspamd_parse_reply(resp->body, resp->body_len, &o);
    }
    call->http = NULL;
    call->cb(call->ctx, &o);
    free(call);
}

struct rspamd_call *rspamd_check(struct rspamd *r, const struct rspamd_request *req,
                                 void (*cb)(void *ctx, const struct rspamd_outcome *o), void *ctx)
{
    struct rspamd_call *call = xcalloc(1, sizeof(*call));
    call->cb = cb;
    call->ctx = ctx;
    call->read = req->read;
    call->read_ctx = req->read_ctx;
    /* The envelope (rspamd's protocol: one Rcpt field per recipient). */
    struct buf h;
    buf_init(&h, 0);
    put_field(&h, "IP", req->ip != NULL ? req->ip : "");
    if (req->helo != NULL && req->helo[0] != '\0')
        put_field(&h, "Helo", req->helo);
    char from[RSPAMD_FIELD_MAX];
    snprintf(from, sizeof(from), "<%s>", req->from != NULL ? req->from : "");
    put_field(&h, "From", from);
    for (size_t i = 0; i < req->n_rcpts; i++) {
        char rcpt[RSPAMD_FIELD_MAX];
        snprintf(rcpt, sizeof(rcpt), "<%s>", req->rcpts[i]);
        put_field(&h, "Rcpt", rcpt);
    }
    if (req->user != NULL && req->user[0] != '\0')
        put_field(&h, "User", req->user);
    if (req->queue_id != NULL && req->queue_id[0] != '\0')
        put_field(&h, "Queue-Id", req->queue_id);
    struct http_request hr = {
        .method = "POST",
        .host = r->host,
        .addr = (const struct sockaddr *)&r->addr,
        .path = "/checkv2",
        .headers = buf_cstr(&h),
        .body_len = req->size,
        .body_read = body_read,
        .body_ctx = call,
        .response_max = RSPAMD_REPLY_MAX,
        .timeout_ms = r->timeout_ms,
    };
    call->http = http_call_start(r->loop, &hr, http_done, call);
    buf_free(&h);
    return call;
}

void rspamd_cancel(struct rspamd_call **cp)
{
    struct rspamd_call *call = *cp;
    if (call == NULL)
        return;
    *cp = NULL;
    http_call_cancel(&call->http);
    free(call);
}
