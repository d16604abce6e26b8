/*
 * test_rspamd.c — rspamd's reply read from canned JSON (real replies,
 * every action, escapes, hostile shapes, every prefix), the X-Spam-*
 * fields written for each outcome; then, when rspamd is installed, the
 * client against Debian's real rspamd started on loopback by
 * tests/integration/rspamd_fixture.py: GTUBE is rejected, a clean message
 * passes with its score, a 6 MiB message is streamed, and a stopped rspamd,
 * a silent server and a closed port are unreachable.
 *
 * Arguments: the fixture's path (else found beside this file's source);
 * $PYTHON runs it (default python3).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "rspamd.h"
#include "tap.h"

/* --- the reply reader ---------------------------------------------------- */

static const char gtube_reply[] =
    "{\"is_skipped\":true,\"score\":15.0,\"required_score\":15.0,\"action\":\"reject\","
    "\"symbols\":{\"GTUBE\":{\"name\":\"GTUBE\",\"score\":0.0,\"metric_score\":0.0}},"
    "\"messages\":{\"smtp_message\":\"Gtube pattern\"},\"message-id\":\"1@example.com\","
    "\"time_real\":0.090477}";

static const char clean_reply[] =
    "{\"is_skipped\":false,\"score\":1.000000,\"required_score\":15.0,\"action\":\"no action\","
    "\"symbols\":{\"ONCE_RECEIVED\":{\"name\":\"ONCE_RECEIVED\",\"score\":0.100000,"
    "\"metric_score\":0.100000,\"description\":\"One received header in a message\"},"
    "\"MIME_GOOD\":{\"name\":\"MIME_GOOD\",\"score\":-0.100000,\"metric_score\":-0.100000,"
    "\"description\":\"Known content-type\",\"options\":[\"text/plain\"]}},\"messages\":{},"
    "\"message-id\":\"2@example.com\",\"time_real\":0.209682,"
    "\"milter\":{\"remove_headers\":{\"X-Spam\":0}}}";

struct rcase {
    const char *name;
    const char *json;
    int rc;
    enum rspamd_action action;
    double score, required;
    const char *subject, *message;
};

static const struct rcase rcases[] = {
    {"rspamd's GTUBE reply", gtube_reply, 0, RSPAMD_REJECT, 15, 15, "", "Gtube pattern"},
    {"rspamd's reply for a clean message", clean_reply, 0, RSPAMD_NO_ACTION, 1, 15, "", ""},
    {"greylist", "{\"action\":\"greylist\",\"score\":4.5,\"required_score\":15}", 0,
     RSPAMD_GREYLIST, 4.5, 15, "", ""},
    {"add header", "{\"action\":\"add header\",\"score\":6.3,\"required_score\":15}", 0,
     RSPAMD_ADD_HEADER, 6.3, 15, "", ""},
    {"rewrite subject",
     "{\"action\":\"rewrite subject\",\"score\":9,\"required_score\":15,"
     "\"subject\":\"*** SPAM *** lunch\"}",
     0, RSPAMD_REWRITE_SUBJECT, 9, 15, "*** SPAM *** lunch", ""},
    {"soft reject",
     "{\"action\":\"soft reject\",\"score\":0,\"required_score\":15,"
     "\"messages\":{\"smtp_message\":\"Ratelimit exceeded\"}}",
     0, RSPAMD_SOFT_REJECT, 0, 15, "", "Ratelimit exceeded"},
    {"discard becomes reject", "{\"action\":\"discard\",\"score\":20}", 0, RSPAMD_REJECT, 20, 0, "",
     ""},
    {"quarantine becomes reject", "{\"action\":\"quarantine\",\"score\":20}", 0, RSPAMD_REJECT, 20,
     0, "", ""},
    {"an action of rspamd's own making is no action", "{\"action\":\"phishing\",\"score\":1}", 0,
     RSPAMD_NO_ACTION, 1, 0, "", ""},
    {"an action name longer than any",
     "{\"action\":\"reject reject reject reject reject\",\"score\":1}", 0, RSPAMD_NO_ACTION, 1, 0,
     "", ""},
    {"a negative score, exponents",
     "{\"score\":-2.5e0,\"required_score\":1.5E+1,\"action\":\"no action\"}", 0, RSPAMD_NO_ACTION,
     -2.5, 15, "", ""},
    {"whitespace everywhere", " \r\n\t{ \"action\" : \"reject\" ,\n \"score\" :\t7 } \n", 0,
     RSPAMD_REJECT, 7, 0, "", ""},
    {"the last of duplicate keys", "{\"action\":\"reject\",\"score\":1,\"action\":\"no action\"}",
     0, RSPAMD_NO_ACTION, 1, 0, "", ""},
    {"escapes in the subject",
     "{\"action\":\"rewrite subject\",\"score\":9,"
     "\"subject\":\"\\\"caf\\u00e9\\\" \\ud83d\\ude00 \\/ \\\\\"}",
     0, RSPAMD_REWRITE_SUBJECT, 9, 0, "\"caf\xc3\xa9\" \xf0\x9f\x98\x80 / \\", ""},
    {"a lone surrogate becomes U+FFFD",
     "{\"action\":\"rewrite subject\",\"score\":9,\"subject\":\"a\\ud800b\"}", 0,
     RSPAMD_REWRITE_SUBJECT, 9, 0,
     "a\xef\xbf\xbd"
     "b",
     ""},
    {"line breaks in the subject become spaces",
     "{\"action\":\"rewrite subject\",\"score\":9,\"subject\":\"a\\r\\nBcc: x\\u0000y\"}", 0,
     RSPAMD_REWRITE_SUBJECT, 9, 0, "a  Bcc: x", ""},
    {"the SMTP message: printable ASCII only",
     "{\"action\":\"reject\",\"score\":9,\"messages\":{\"smtp_message\":\"no\\r\\n250 ok "
     "\\u00e9\"}}",
     0, RSPAMD_REJECT, 9, 0, "", "no??250 ok ??"},
    {"values of every kind skipped",
     "{\"a\":[1,-2.5e-3,true,false,null,\"s\",{\"x\":[[]]},[]],\"b\":{},\"action\":\"reject\","
     "\"score\":3,\"messages\":{\"other\":[1],\"smtp_message\":\"why\",\"z\":{}}}",
     0, RSPAMD_REJECT, 3, 0, "", "why"},
    {"subject and messages of the wrong type are skipped",
     "{\"action\":\"reject\",\"score\":3,\"subject\":7,\"messages\":[\"x\"]}", 0, RSPAMD_REJECT, 3,
     0, "", ""},

    {"no action", "{\"score\":3}", -EPROTO, RSPAMD_UNREACHABLE, 0, 0, NULL, NULL},
    {"no score", "{\"action\":\"reject\"}", -EPROTO, RSPAMD_UNREACHABLE, 0, 0, NULL, NULL},
    {"the action is no string", "{\"action\":1,\"score\":3}", -EPROTO, RSPAMD_UNREACHABLE, 0, 0,
     NULL, NULL},
    {"the score is no number", "{\"action\":\"reject\",\"score\":\"3\"}", -EPROTO,
     RSPAMD_UNREACHABLE, 0, 0, NULL, NULL},
    {"an array", "[{\"action\":\"reject\",\"score\":3}]", -EPROTO, RSPAMD_UNREACHABLE, 0, 0, NULL,
     NULL},
    {"empty", "", -EPROTO, RSPAMD_UNREACHABLE, 0, 0, NULL, NULL},
    {"an empty object", "{}", -EPROTO, RSPAMD_UNREACHABLE, 0, 0, NULL, NULL},
    {"more after the object", "{\"action\":\"reject\",\"score\":3} {}", -EPROTO, RSPAMD_UNREACHABLE,
     0, 0, NULL, NULL},
    {"a trailing comma", "{\"action\":\"reject\",\"score\":3,}", -EPROTO, RSPAMD_UNREACHABLE, 0, 0,
     NULL, NULL},
    {"a missing comma", "{\"action\":\"reject\" \"score\":3}", -EPROTO, RSPAMD_UNREACHABLE, 0, 0,
     NULL, NULL},
    {"single quotes", "{'action':'reject','score':3}", -EPROTO, RSPAMD_UNREACHABLE, 0, 0, NULL,
     NULL},
    {"a raw line break in a string", "{\"action\":\"re\nject\",\"score\":3}", -EPROTO,
     RSPAMD_UNREACHABLE, 0, 0, NULL, NULL},
    {"a bad escape", "{\"action\":\"reject\",\"score\":3,\"x\":\"\\q\"}", -EPROTO,
     RSPAMD_UNREACHABLE, 0, 0, NULL, NULL},
    {"a short \\u escape", "{\"action\":\"reject\",\"score\":3,\"x\":\"\\u12\"}", -EPROTO,
     RSPAMD_UNREACHABLE, 0, 0, NULL, NULL},
    {"a leading zero", "{\"action\":\"reject\",\"score\":03}", -EPROTO, RSPAMD_UNREACHABLE, 0, 0,
     NULL, NULL},
    {"a bare decimal point", "{\"action\":\"reject\",\"score\":3.}", -EPROTO, RSPAMD_UNREACHABLE, 0,
     0, NULL, NULL},
    {"a plus sign", "{\"action\":\"reject\",\"score\":+3}", -EPROTO, RSPAMD_UNREACHABLE, 0, 0, NULL,
     NULL},
    {"NaN", "{\"action\":\"reject\",\"score\":NaN}", -EPROTO, RSPAMD_UNREACHABLE, 0, 0, NULL, NULL},
    {"a misspelt literal", "{\"action\":\"reject\",\"score\":3,\"x\":tru}", -EPROTO,
     RSPAMD_UNREACHABLE, 0, 0, NULL, NULL},
    {"an unclosed array", "{\"action\":\"reject\",\"score\":3,\"x\":[1,2}", -EPROTO,
     RSPAMD_UNREACHABLE, 0, 0, NULL, NULL},
    {"a key that is no string", "{action:\"reject\",\"score\":3}", -EPROTO, RSPAMD_UNREACHABLE, 0,
     0, NULL, NULL},
};

static bool near(double a, double b)
{
    return a - b < 1e-9 && b - a < 1e-9;
}

static void reply_cases(void)
{
    for (size_t i = 0; i < sizeof(rcases) / sizeof(rcases[0]); i++) {
        const struct rcase *c = &rcases[i];
        struct rspamd_outcome o;
        memset(&o, 0x55, sizeof(o));
        int rc = rspamd_parse_reply(c->json, strlen(c->json), &o);
        if (c->rc < 0) {
            ok(rc == c->rc && o.action == RSPAMD_UNREACHABLE && o.message[0] != '\0',
               "%s: refused (%s)", c->name, o.message);
            continue;
        }
        bool same = rc == 0 && o.action == c->action && near(o.score, c->score) &&
                    near(o.required, c->required) && strcmp(o.subject, c->subject) == 0 &&
                    strcmp(o.message, c->message) == 0;
        ok(same, "%s: %s, score %.2f/%.2f", c->name, rspamd_action_name(o.action), o.score,
           o.required);
        if (!same)
            printf("#   rc %d subject '%s' message '%s'\n", rc, o.subject, o.message);
    }

    /* Every proper prefix of a real reply is refused, none read past its end. */
    bool all = true;
    for (size_t n = 0; n < sizeof(clean_reply) - 1; n++) {
        char *copy = malloc(n > 0 ? n : 1); /* exactly n bytes: ASan sees any read past them */
        memcpy(copy, clean_reply, n);
        struct rspamd_outcome o;
        if (rspamd_parse_reply(copy, n, &o) != -EPROTO)
            all = false;
        free(copy);
    }
    ok(all, "each of the %zu proper prefixes of a real reply is refused", sizeof(clean_reply) - 1);

    /* Nesting: RSPAMD_JSON_DEPTH levels in all are read, one more is refused. */
    for (int extra = 0; extra <= 1; extra++) {
        struct buf b;
        buf_init(&b, 0);
        buf_append_str(&b, "{\"action\":\"reject\",\"score\":1,\"x\":");
        int levels = RSPAMD_JSON_DEPTH - 1 + extra; /* the top object is the first */
        for (int i = 0; i < levels; i++)
            buf_append_str(&b, i % 2 ? "{\"k\":" : "[");
        buf_append_str(&b, "0");
        for (int i = levels - 1; i >= 0; i--)
            buf_append_str(&b, i % 2 ? "}" : "]");
        buf_append_str(&b, "}");
        struct rspamd_outcome o;
        int rc = rspamd_parse_reply((const char *)b.data, b.len, &o);
        is_int(rc, extra ? -EPROTO : 0, "%d levels of nesting: %s", levels + 1,
               extra ? "refused" : "read");
        buf_free(&b);
    }
    /* A million open brackets: refused, with no deep recursion. */
    size_t n = 1000000;
    char *deep = malloc(n);
    memset(deep, '[', n);
    deep[0] = '{';
    struct rspamd_outcome o;
    is_int(rspamd_parse_reply(deep, n, &o), -EPROTO, "a million open brackets: refused");
    free(deep);

    /* A subject longer than the room is cut, never in the middle of a character. */
    struct buf b;
    buf_init(&b, 0);
    buf_append_str(&b, "{\"action\":\"rewrite subject\",\"score\":9,\"subject\":\"a");
    for (int i = 0; i < 200; i++)
        buf_append_str(&b, "\xc3\xa9");
    buf_append_str(&b, "\"}");
    is_int(rspamd_parse_reply((const char *)b.data, b.len, &o), 0, "a long subject is read");
    size_t len = strlen(o.subject);
    ok(len <= 255 && len >= 250 && ((unsigned char)o.subject[len - 1] == 0xa9),
       "cut at %zu octets, after a whole character", len);
    buf_free(&b);

    /* Mutations of a real reply: read or refused, never anything else. */
    unsigned seed = 7;
    int read = 0, refused = 0;
    bool sane = true;
    for (int iter = 0; iter < 20000; iter++) {
        char m[sizeof(gtube_reply)];
        memcpy(m, gtube_reply, sizeof(m));
        for (int k = 0; k < 1 + iter % 3; k++) {
            seed = seed * 1103515245 + 12345;
            m[(seed >> 8) % (sizeof(m) - 1)] = "{}[]\",:\\0eu-. a"[(seed >> 20) % 16];
        }
        int rc = rspamd_parse_reply(m, sizeof(m) - 1, &o);
        if (rc == 0)
            read++;
        else if (rc == -EPROTO && o.action == RSPAMD_UNREACHABLE)
            refused++;
        else
            sane = false;
        if (rc == 0 && (strlen(o.subject) >= sizeof(o.subject) ||
                        strlen(o.message) >= sizeof(o.message) || strchr(o.message, '\n')))
            sane = false;
    }
    ok(sane, "20000 mutated replies: each read (%d) or refused (%d)", read, refused);
}

static void header_cases(void)
{
    struct {
        struct rspamd_outcome o;
        const char *want;
    } cases[] = {
        {{RSPAMD_NO_ACTION, 1, 15, "", ""},
         "X-Spam-Score: 1.00\r\nX-Spam-Status: No, score=1.00 required=15.00, "
         "action=no action\r\n"},
        {{RSPAMD_ADD_HEADER, 6.3, 15, "", ""},
         "X-Spam: Yes\r\nX-Spam-Score: 6.30\r\nX-Spam-Status: Yes, score=6.30 required=15.00, "
         "action=add header\r\n"},
        {{RSPAMD_REWRITE_SUBJECT, 8.125, 15, "x", ""},
         "X-Spam: Yes\r\nX-Spam-Score: 8.13\r\nX-Spam-Status: Yes, score=8.13 required=15.00, "
         "action=rewrite subject\r\n"},
        {{RSPAMD_GREYLIST, -0.5, 15, "", ""},
         "X-Spam-Score: -0.50\r\nX-Spam-Status: No, score=-0.50 required=15.00, "
         "action=greylist\r\n"},
        {{RSPAMD_REJECT, 15, 15, "", ""},
         "X-Spam-Score: 15.00\r\nX-Spam-Status: Yes, score=15.00 required=15.00, "
         "action=reject\r\n"},
        {{RSPAMD_UNREACHABLE, 0, 0, "", "timed out"}, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        buf_init(&b, 0);
        is_int(rspamd_headers(&cases[i].o, &b), 0, "headers for %s: written",
               rspamd_action_name(cases[i].o.action));
        is_str(buf_cstr(&b), cases[i].want, "headers for %s: as expected",
               rspamd_action_name(cases[i].o.action));
        buf_free(&b);
    }
    struct buf tiny;
    buf_init(&tiny, 10);
    struct rspamd_outcome o = {RSPAMD_ADD_HEADER, 1, 2, "", ""};
    is_int(rspamd_headers(&o, &tiny), -ENOBUFS, "a buffer too small: -ENOBUFS");
    buf_free(&tiny);
}

/* --- the real rspamd ----------------------------------------------------- */

static uv_loop_t loop;

struct msg {
    const char *text; /* NULL: a generated message of size octets */
    uint64_t size, reads, largest;
};

static char generated_at(uint64_t off)
{
    static const char line[] = "All work and no play makes a dull message, line after line.\r\n";
    return line[off % (sizeof(line) - 1)];
}

static ssize_t msg_read(void *ctx, uint64_t off, void *p, size_t n)
{
    struct msg *m = ctx;
    if (off >= m->size)
        return 0;
    if (n > m->size - off)
        n = (size_t)(m->size - off);
    m->reads++;
    if (n > m->largest)
        m->largest = n;
    if (m->text != NULL) {
        memcpy(p, m->text + off, n);
        return (ssize_t)n;
    }
    static const char head[] = "From: a@example.com\r\nTo: b@example.org\r\nSubject: long\r\n"
                               "Message-ID: <3@example.com>\r\nDate: Mon, 7 Dec 2026 06:00:00 "
                               "+0000\r\n\r\n";
    for (size_t i = 0; i < n; i++)
        ((char *)p)[i] = off + i < sizeof(head) - 1 ? head[off + i] : generated_at(off + i);
    return (ssize_t)n;
}

struct answer {
    bool done;
    struct rspamd_outcome o;
};

static void on_outcome(void *ctx, const struct rspamd_outcome *o)
{
    struct answer *a = ctx;
    a->done = true;
    a->o = *o;
}

static struct rspamd_outcome check(struct rspamd *r, struct msg *m)
{
    const char *rcpts[] = {"b@example.org", "c@example.org"};
    struct rspamd_request req = {
        .ip = "192.0.2.1",
        .helo = "mx.example.com",
        .from = "a@example.com",
        .rcpts = rcpts,
        .n_rcpts = 2,
        .user = NULL,
        .queue_id = "0123ABCD",
        .size = m->text != NULL ? strlen(m->text) : m->size,
        .read = msg_read,
        .read_ctx = m,
    };
    if (m->text != NULL)
        m->size = req.size;
    struct answer a = {0};
    struct rspamd_call *c = rspamd_check(r, &req, on_outcome, &a);
    ok(c != NULL && !a.done, "a check starts; its answer comes later");
    while (!a.done && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    return a.o;
}

static const char gtube_msg[] =
    "From: a@example.com\r\nTo: b@example.org\r\nSubject: test\r\n"
    "Message-ID: <1@example.com>\r\nDate: Mon, 7 Dec 2026 06:00:00 +0000\r\n\r\n"
    "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";

static const char clean_msg[] =
    "From: Alice <a@example.com>\r\nTo: b@example.org\r\nSubject: lunch\r\n"
    "Message-ID: <2@example.com>\r\nDate: Mon, 7 Dec 2026 06:00:00 +0000\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nShall we have lunch at noon?\r\n";

/* The fixture, running: its pid and the pipe whose end stops it. */
static pid_t fixture_pid = -1;
static int fixture_stdin = -1;

/* Starts rspamd through the fixture; returns its port, or 0. */
static int fixture_start(const char *path)
{
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0)
        return 0;
    const char *python = getenv("PYTHON") ? getenv("PYTHON") : "python3";
    fixture_pid = fork();
    if (fixture_pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execlp(python, python, path, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fixture_stdin = in[1];
    char line[32] = "";
    FILE *f = fdopen(out[0], "r");
    if (f == NULL || fgets(line, sizeof(line), f) == NULL)
        line[0] = '\0';
    if (f != NULL)
        fclose(f);
    return atoi(line);
}

static void fixture_stop(void)
{
    if (fixture_stdin >= 0)
        close(fixture_stdin);
    fixture_stdin = -1;
    if (fixture_pid > 0)
        waitpid(fixture_pid, NULL, 0);
    fixture_pid = -1;
}

/* A server that reads everything and says nothing. */
static void silent_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    (void)h;
    static char sink[65536];
    (void)size;
    *b = uv_buf_init(sink, sizeof(sink));
}

static void silent_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    if (n < 0)
        uv_close((uv_handle_t *)s, (uv_close_cb)free);
}

static void silent_connection(uv_stream_t *l, int status)
{
    (void)status;
    uv_tcp_t *t = malloc(sizeof(*t));
    uv_tcp_init(&loop, t);
    uv_accept(l, (uv_stream_t *)t);
    uv_read_start((uv_stream_t *)t, silent_alloc, silent_read);
}

static void live_tests(const char *fixture)
{
    if (access("/usr/bin/rspamd", X_OK) != 0) {
        printf("# rspamd is not installed (apt-get install rspamd): the live tests are skipped\n");
        ok(1, "# SKIP rspamd not installed");
        return;
    }
    ok(access(fixture, R_OK) == 0, "the fixture is at %s", fixture);
    uv_loop_init(&loop);
    uint64_t t0 = uv_hrtime();
    int port = fixture_start(fixture);
    ok(port > 0, "rspamd started on port %d in %.1f s", port, (uv_hrtime() - t0) / 1e9);
    if (port <= 0) {
        fixture_stop();
        return;
    }
    char err[200];
    struct rspamd *r = rspamd_new(&loop, "127.0.0.1", (uint16_t)port, 20000, err, sizeof(err));
    ok(r != NULL, "a client for it");

    struct msg m = {.text = gtube_msg};
    struct rspamd_outcome o = check(r, &m);
    is_str(rspamd_action_name(o.action), "reject", "GTUBE: reject (%s)", o.message);
    is_str(o.message, "Gtube pattern", "with rspamd's SMTP message");

    m = (struct msg){.text = clean_msg};
    o = check(r, &m);
    is_str(rspamd_action_name(o.action), "no action", "a clean message: no action (%s)", o.message);
    ok(o.score < o.required && o.required > 0, "its score %.2f, below %.2f", o.score, o.required);
    struct buf h;
    buf_init(&h, 0);
    rspamd_headers(&o, &h);
    const char *status = strstr(buf_cstr(&h), "X-Spam-Status: No, score=");
    ok(status != NULL, "its X-Spam-Status says No: %.*s",
       status != NULL ? (int)strcspn(status, "\r") : 0, status != NULL ? status : "");
    buf_free(&h);

    /* A large message goes in pieces, as the socket takes them. */
    m = (struct msg){.size = 6 * 1024 * 1024};
    o = check(r, &m);
    ok(o.action != RSPAMD_UNREACHABLE, "a 6 MiB message is checked: %s %.2f (%s)",
       rspamd_action_name(o.action), o.score, o.message);
    ok(m.largest <= 16 * 1024 && m.reads >= m.size / (16 * 1024),
       "read in %llu pieces of at most 16 KiB", (unsigned long long)m.reads);

    /* rspamd stops: unreachable. */
    fixture_stop();
    m = (struct msg){.text = clean_msg};
    o = check(r, &m);
    is_str(rspamd_action_name(o.action), "unreachable", "rspamd stopped: unreachable (%s)",
           o.message);
    ok(strstr(o.message, "refused") != NULL, "because the connection was refused");
    rspamd_free(&r);

    /* A server that takes the message and never answers: unreachable at the timeout. */
    uv_tcp_t silent;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &silent);
    uv_tcp_bind(&silent, (struct sockaddr *)&sa, 0);
    int len = sizeof(sa);
    uv_tcp_getsockname(&silent, (struct sockaddr *)&sa, &len);
    uv_listen((uv_stream_t *)&silent, 4, silent_connection);
    r = rspamd_new(&loop, "127.0.0.1", ntohs(sa.sin_port), 300, err, sizeof(err));
    t0 = uv_now(&loop);
    o = check(r, &m);
    is_str(rspamd_action_name(o.action), "unreachable", "no answer: unreachable (%s)", o.message);
    ok(uv_now(&loop) - t0 >= 290, "after the timeout");
    rspamd_free(&r);

    /* A name that does not resolve is refused at start-up. */
    r = rspamd_new(&loop, "no-such-host.invalid", 11333, 1000, err, sizeof(err));
    ok(r == NULL && strstr(err, "no-such-host.invalid") != NULL, "an unknown host: %s", err);
    r = rspamd_new(&loop, "::1", 11333, 1000, err, sizeof(err));
    ok(r != NULL, "an IPv6 literal is taken");
    rspamd_free(&r);
    r = rspamd_new(&loop, "localhost", 11333, 1000, err, sizeof(err));
    ok(r != NULL, "a name is resolved once");

    /* A cancelled check never answers. */
    struct answer a = {0};
    const char *rcpt = "b@example.org";
    struct rspamd_request req = {.ip = "192.0.2.1",
                                 .from = "",
                                 .rcpts = &rcpt,
                                 .n_rcpts = 1,
                                 .size = m.size,
                                 .read = msg_read,
                                 .read_ctx = &m};
    struct rspamd_call *c = rspamd_check(r, &req, on_outcome, &a);
    rspamd_cancel(&c);
    ok(c == NULL, "cancel clears the handle");
    for (int i = 0; i < 50; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    ok(!a.done, "no answer after a cancel");
    rspamd_free(&r);

    uv_close((uv_handle_t *)&silent, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(uv_loop_close(&loop), 0, "every handle closed");
}

static void stop_on_signal(int sig)
{
    (void)sig;
    fixture_stop();
    _exit(1);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, stop_on_signal);
    reply_cases();
    header_cases();
    char path[4096];
    if (argc > 1) {
        snprintf(path, sizeof(path), "%s", argv[1]);
    } else {
        /* Beside this file's source: tests/integration/. */
        snprintf(path, sizeof(path), "%s", __FILE__);
        char *slash = strrchr(path, '/');
        snprintf(slash != NULL ? slash + 1 : path,
                 sizeof(path) - (size_t)(slash != NULL ? slash + 1 - path : 0),
                 "../integration/rspamd_fixture.py");
    }
    live_tests(path);
    fixture_stop();
    return done_testing();
}
