/*
 * test_pop3_session.c — the POP3 state machine (pop3d/pop3_session.h) as
 * conversations, with no sockets: the greeting without an APOP timestamp;
 * CAPA as RFC 2449 and the issue want it; USER/PASS and AUTH PLAIN/LOGIN
 * (RFC 5034) refused with -ERR [AUTH] in plaintext off loopback, allowed
 * after STLS (RFC 2595), whose unread input stays unconsumed; the login
 * answers [AUTH], [SYS/TEMP] and [IN-USE] (RFC 2449, 3206); STAT, LIST,
 * UIDL, RETR and TOP on a snapshot of the maildrop, with byte-stuffing and
 * a 200 KiB message sent in pieces; DELE, RSET and QUIT applying every mark
 * in one commit; a session that ends any other way deleting nothing and
 * releasing its lock; commands out of state, unknown ones and the bad-command
 * limit; overlong lines; pipelining; timeout and shutdown; a body shorter
 * than its recorded size and replies past the output ceiling ending in a
 * hang-up, never a ".".
 *
 * The world is a fake `struct pop3_ops`: auth() records what it was asked
 * and the test answers with pop3_session_auth_done itself; lock()/unlock()
 * keep an in-test lock set that several sessions share; list() serves a fake
 * maildrop; read() serves the bodies by (message_id, offset) in the chunk
 * size asked for; commit() records the entry ids and the test answers with
 * pop3_session_commit_done.
 *
 * Each conversation is a table of steps: what to feed (or which callback to
 * make), the line prefixes the session must write in answer (every line
 * checked, none extra), how much input it must leave unconsumed, the action
 * it asks of the glue and whether it is busy. Output is drained the way the
 * glue does it: take the buffer, buf_reset, and while the session is
 * sending, pump and take again.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3_session.h"
#include "sasl.h"
#include "tap.h"

/* --- the fake world ------------------------------------------------------ */

#define MAX_MAILS 8
#define MAX_LOCKS 8

struct locks {
    int64_t held[MAX_LOCKS];
    size_t n;
};

struct body {
    int64_t message_id;
    const char *data;
    size_t len;
};

struct fake {
    struct locks *locks; /* shared by the sessions of one test */

    int auth_calls;
    char auth_user[512], auth_pass[512];

    int lock_calls, unlock_calls;
    int64_t unlocked_id;

    struct store_mail mails[MAX_MAILS];
    size_t n_mails;
    int list_calls, list_rc;

    const struct body *bodies;
    size_t n_bodies;
    int read_calls, read_misuse;
    size_t read_max_n;
    int64_t read_fail_at; /* read() fails at or past this offset; -1: never */

    int commit_calls;
    int64_t commit_user;
    int64_t commit_ids[MAX_MAILS];
    size_t n_commit_ids;
    int64_t ret_ids[MAX_MAILS]; /* retrieved, recorded at QUIT ([pop3] expire) */
    size_t n_ret_ids;
    int login_calls;
    int64_t login_user;
};

static void fake_auth(void *ctx, const char *user, const char *password)
{
    struct fake *f = ctx;
    f->auth_calls++;
    snprintf(f->auth_user, sizeof(f->auth_user), "%s", user);
    /* The session wipes its copy when auth() returns: keep ours. */
    snprintf(f->auth_pass, sizeof(f->auth_pass), "%s", password);
}

static bool lock_held(const struct locks *l, int64_t id)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->held[i] == id)
            return true;
    return false;
}

static int fake_lock(void *ctx, int64_t user_id)
{
    struct fake *f = ctx;
    f->lock_calls++;
    if (lock_held(f->locks, user_id))
        return -EBUSY;
    if (f->locks->n == MAX_LOCKS)
        return -ENOSPC;
    f->locks->held[f->locks->n++] = user_id;
    return 0;
}

static void fake_unlock(void *ctx, int64_t user_id)
{
    struct fake *f = ctx;
    f->unlock_calls++;
    f->unlocked_id = user_id;
    for (size_t i = 0; i < f->locks->n; i++) {
        if (f->locks->held[i] == user_id) {
            f->locks->held[i] = f->locks->held[--f->locks->n];
            return;
        }
    }
}

static int fake_list(void *ctx, int64_t user_id, struct store_mail **list_r, size_t *n_r)
{
    struct fake *f = ctx;
    (void)user_id;
    f->list_calls++;
    if (f->list_rc < 0)
        return f->list_rc;
    /* A fresh array the session frees, as store_mbox_list gives. */
    struct store_mail *m = malloc((f->n_mails ? f->n_mails : 1) * sizeof(*m));
    memcpy(m, f->mails, f->n_mails * sizeof(*m));
    *list_r = m;
    *n_r = f->n_mails;
    return 0;
}

static int fake_read(void *ctx, int64_t message_id, int64_t offset, void *p, size_t n,
                     size_t *got_r)
{
    struct fake *f = ctx;
    f->read_calls++;
    if (n > f->read_max_n)
        f->read_max_n = n;
    if (f->read_fail_at >= 0 && offset >= f->read_fail_at)
        return -EIO;
    for (size_t i = 0; i < f->n_bodies; i++) {
        const struct body *b = &f->bodies[i];
        if (b->message_id != message_id)
            continue;
        if (offset < 0 || (size_t)offset > b->len) {
            f->read_misuse++;
            return -EINVAL;
        }
        size_t left = b->len - (size_t)offset;
        size_t got = left < n ? left : n;
        memcpy(p, b->data + offset, got);
        *got_r = got;
        return 0;
    }
    f->read_misuse++;
    return -ENOENT;
}

static void fake_commit(void *ctx, int64_t user_id, const int64_t *ids, size_t n,
                        const int64_t *ret, size_t n_ret)
{
    struct fake *f = ctx;
    f->commit_calls++;
    f->commit_user = user_id;
    f->n_commit_ids = n;
    for (size_t i = 0; i < n && i < MAX_MAILS; i++)
        f->commit_ids[i] = ids[i];
    f->n_ret_ids = n_ret;
    for (size_t i = 0; i < n_ret && i < MAX_MAILS; i++)
        f->ret_ids[i] = ret[i];
}

static void fake_login(void *ctx, int64_t user_id, const char *user)
{
    struct fake *f = ctx;
    (void)user;
    f->login_calls++;
    f->login_user = user_id;
}

static const struct pop3_ops fake_ops = {
    .auth = fake_auth,
    .lock = fake_lock,
    .unlock = fake_unlock,
    .list = fake_list,
    .read = fake_read,
    .commit = fake_commit,
    .login = fake_login,
};

/* --- the maildrop -------------------------------------------------------- */

/* Message 1: a header, a blank line and five body lines, three of them with dots. */
static const char msg1[] = "From: alice@example.org\r\n"
                           "To: bob@example.org\r\n"
                           "Subject: dots\r\n"
                           "\r\n"
                           "first line\r\n"
                           ".\r\n"
                           "..two dots\r\n"
                           ".leading dot\r\n"
                           "last line\r\n";

/* Message 2: no CRLF at the end. */
static const char msg2[] = "Subject: short\r\n"
                           "\r\n"
                           ".dot line\r\n"
                           "no final line end";

#define BIG_SIZE (200 * 1024)
static char *msg3;
static size_t msg3_len;

static struct body default_bodies[3];

static const char *const uidls[] = {"uidl-0001-alpha", "uidl-0002-beta", "uidl-0003-gamma"};

/* Fills b[pos..end) with lines of varied lengths, every fifth one starting with '.'. */
static size_t fill_lines(char *b, size_t pos, size_t end, unsigned *lineno)
{
    while (pos < end) {
        size_t r = end - pos;
        size_t want = 2 + ((size_t)*lineno * 37) % 90;
        size_t l = r < want + 2 ? r : want; /* never leave a single byte */
        for (size_t i = 0; i + 2 < l; i++)
            b[pos + i] = (char)('a' + (*lineno + i) % 26);
        if (l > 2 && *lineno % 5 == 0)
            b[pos] = '.';
        if (l > 3 && *lineno % 15 == 0)
            b[pos + 1] = '.';
        b[pos + l - 2] = '\r';
        b[pos + l - 1] = '\n';
        pos += l;
        (*lineno)++;
    }
    return pos;
}

static size_t put(char *b, size_t pos, const char *s)
{
    memcpy(b + pos, s, strlen(s));
    return pos + strlen(s);
}

/*
 * Message 3: 200 KiB, with a line starting with '.' at the first byte of a
 * 16 KiB read and of a 64 KiB pump, and a CRLF split between two reads (CR
 * at 49151, LF at 49152), and a '.' in the middle of a line at the first
 * byte of a read, so that byte-stuffing and TOP's line counting must carry
 * their state from one piece to the next.
 */
static void build_big(void)
{
    static const struct {
        size_t at;
        const char *line;
    } marks[] = {
        {16384, ".line at a piece boundary\r\n"},
        {32768, ".line at a piece boundary\r\n"},
        {49153, ".line after a CRLF split between two reads\r\n"},
        {65536, ".line at a piece boundary\r\n"},
        {98304, ".line at a piece boundary\r\n"},
        /* A '.' at the first byte of a read, in the middle of a line: not stuffed. */
        {114688 - 7, "mid-lin.dot in the middle of a line at a read boundary\r\n"},
        {131072, ".line at a piece boundary\r\n"},
        {196608, ".line at a piece boundary\r\n"},
    };
    char *b = malloc(BIG_SIZE);
    unsigned lineno = 1;
    size_t pos = put(b, 0, "From: big@example.org\r\nSubject: big\r\n\r\n");
    pos = put(b, pos, "body one\r\n.\r\n..\r\n...x\r\n");
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        pos = fill_lines(b, pos, marks[i].at, &lineno);
        pos = put(b, pos, marks[i].line);
    }
    pos = fill_lines(b, pos, BIG_SIZE, &lineno);
    msg3 = b;
    msg3_len = pos;
}

/* An empty maildrop, the default one, or one given: the fake serves it. */
static void fake_init(struct fake *f, struct locks *l, const struct body *bodies, size_t n)
{
    memset(f, 0, sizeof(*f));
    f->locks = l;
    f->read_fail_at = -1;
    f->bodies = bodies;
    f->n_bodies = n;
    f->n_mails = n;
    for (size_t i = 0; i < n; i++) {
        f->mails[i] = (struct store_mail){
            .id = 101 + (int64_t)i,
            .message_id = bodies[i].message_id,
            .size = (int64_t)bodies[i].len,
            .arrived = 1700000000 + (int64_t)i,
        };
        snprintf(f->mails[i].uidl, sizeof(f->mails[i].uidl), "%s", i < 3 ? uidls[i] : "uidl-extra");
    }
}

static void fake_default(struct fake *f, struct locks *l)
{
    fake_init(f, l, default_bodies, 3);
}

/* --- output -------------------------------------------------------------- */

struct out {
    char *data;
    size_t len, cap;
    unsigned pumps;
    size_t max_piece; /* the most one feed or one pump wrote */
};

static void out_add(struct out *o, const void *p, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->data = realloc(o->data, o->cap);
    }
    if (n > 0) /* an empty buffer may have no data pointer yet */
        memcpy(o->data + o->len, p, n);
    o->len += n;
    o->data[o->len] = '\0';
}

static void out_clear(struct out *o)
{
    free(o->data);
    memset(o, 0, sizeof(*o));
}

/* Takes what the session wrote, as the glue's flush does. */
static void take(struct pop3_session *s, struct out *o)
{
    struct buf *b = pop3_session_output(s);
    if (b->len > o->max_piece)
        o->max_piece = b->len;
    out_add(o, b->data, b->len);
    buf_reset(b);
}

/* Takes the output, then pumps while the session is sending (bounded). */
static void collect(struct pop3_session *s, struct out *o)
{
    if (o->data == NULL)
        out_add(o, "", 0);
    take(s, o);
    for (unsigned i = 0; i < 10000 && pop3_session_sending(s); i++) {
        pop3_session_pump(s);
        o->pumps++;
        take(s, o);
    }
}

/* Feeds a heap copy of exactly the bytes, so that ASan sees reads past them. */
static size_t feed(struct pop3_session *s, const char *p, size_t n)
{
    char *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    size_t used = 99999999;
    pop3_session_feed(s, copy, n, &used);
    free(copy);
    return used;
}

/* Splits o into CRLF lines; returns the count, or -1 when it does not end in CRLF. */
#define MAX_LINES 64
static int split_lines(const struct out *o, char lines[MAX_LINES][512])
{
    int n = 0;
    size_t i = 0;
    while (i < o->len) {
        const char *crlf = NULL;
        for (size_t j = i; j + 1 < o->len; j++) {
            if (o->data[j] == '\r' && o->data[j + 1] == '\n') {
                crlf = o->data + j;
                break;
            }
        }
        if (crlf == NULL)
            return -1;
        size_t l = (size_t)(crlf - (o->data + i));
        if (n < MAX_LINES)
            snprintf(lines[n], 512, "%.*s", (int)(l < 511 ? l : 511), o->data + i);
        n++;
        i += l + 2;
    }
    return n;
}

/* --- conversations ------------------------------------------------------- */

/* The first bytes of s for a test name, with CR, LF and the like escaped. */
static const char *shown(const char *s)
{
    static char pool[4][64];
    static unsigned next;
    char *o = pool[next++ % 4];
    size_t n = 0;
    for (size_t i = 0; s[i] != '\0' && n + 5 < 48; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r') {
            memcpy(o + n, "\\r", 2);
            n += 2;
        } else if (c == '\n') {
            memcpy(o + n, "\\n", 2);
            n += 2;
        } else if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            n += (size_t)snprintf(o + n, 5, "\\x%02x", c);
        } else {
            o[n++] = (char)c;
        }
        if (s[i + 1] != '\0' && n + 5 >= 48) {
            memcpy(o + n, "...", 3);
            n += 3;
        }
    }
    o[n] = '\0';
    return o;
}

enum op { FEED, GREET, AUTH_DONE, COMMIT_DONE, TLS_STARTED, TIMEOUT, SHUTDOWN };

struct step {
    enum op op;
    const char *send;       /* FEED */
    const char *left;       /* FEED: what must stay unconsumed; NULL: nothing */
    int rc;                 /* AUTH_DONE, COMMIT_DONE */
    int64_t user_id;        /* AUTH_DONE */
    const char *expect[16]; /* line prefixes, in order; exactly these lines */
    bool exact;             /* whole lines, not prefixes */
    bool raw;               /* do not check lines: the caller looks at `last` */
    enum pop3_action action;
    bool busy;
};

static struct out last; /* the output of the last step */

static void run(const char *name, struct pop3_session *s, const struct step *steps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct step *t = &steps[i];
        char what[160];
        snprintf(what, sizeof(what), "%s, step %zu (%s)", name, i + 1,
                 t->op == FEED          ? "feed"
                 : t->op == GREET       ? "greet"
                 : t->op == AUTH_DONE   ? "auth_done"
                 : t->op == COMMIT_DONE ? "commit_done"
                 : t->op == TLS_STARTED ? "tls_started"
                 : t->op == TIMEOUT     ? "timeout"
                                        : "shutdown");
        out_clear(&last);
        switch (t->op) {
        case FEED: {
            size_t len = strlen(t->send);
            size_t used = feed(s, t->send, len);
            size_t want = len - (t->left ? strlen(t->left) : 0);
            is_int(used, want, "%s: \"%s\" consumed %zu of %zu bytes", what, shown(t->send), want,
                   len);
            break;
        }
        case GREET:
            pop3_session_greet(s);
            break;
        case AUTH_DONE:
            pop3_session_auth_done(s, t->rc, t->user_id);
            break;
        case COMMIT_DONE:
            pop3_session_commit_done(s, t->rc);
            break;
        case TLS_STARTED:
            pop3_session_tls_started(s, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "mail.example.test");
            break;
        case TIMEOUT:
            pop3_session_timeout(s);
            break;
        case SHUTDOWN:
            pop3_session_shutdown(s);
            break;
        }
        collect(s, &last);
        if (!t->raw) {
            char lines[MAX_LINES][512];
            int got = split_lines(&last, lines);
            int want = 0;
            while (want < 16 && t->expect[want] != NULL)
                want++;
            ok(got == want, "%s: %d line(s) in answer", what, want);
            if (got != want) {
                printf("#   got %d line(s):\n", got);
                for (int k = 0; k < got && k < MAX_LINES; k++)
                    printf("#     %s\n", lines[k]);
            }
            for (int k = 0; k < want && k < got; k++) {
                size_t pl = strlen(t->expect[k]);
                bool match = t->exact ? strcmp(lines[k], t->expect[k]) == 0
                                      : strncmp(lines[k], t->expect[k], pl) == 0;
                ok(match, "%s: line %d is %s\"%s\"", what, k + 1, t->exact ? "" : "like ",
                   t->expect[k]);
                if (!match)
                    printf("#   got \"%s\"\n", lines[k]);
            }
        }
        is_int(pop3_session_action(s), t->action, "%s: action %s", what,
               t->action == POP3_ACT_NONE   ? "none"
               : t->action == POP3_ACT_STLS ? "STLS"
                                            : "CLOSE");
        ok(pop3_session_busy(s) == t->busy, "%s: %s", what, t->busy ? "busy" : "not busy");
    }
}

#define RUN(name, s, steps) run(name, s, steps, sizeof(steps) / sizeof(steps[0]))

static struct pop3_session *session(struct fake *f, bool loopback, bool tls_available,
                                    unsigned bad_commands)
{
    struct pop3_session_config cfg = {
        .tls_available = tls_available,
        .peer_loopback = loopback,
        .session_id = "t3st",
        .bad_commands = bad_commands,
    };
    return pop3_session_new(&cfg, &fake_ops, f);
}

/* A session from loopback, greeted and logged in as user_id with USER/PASS. */
static struct pop3_session *logged_in(const char *name, struct fake *f, int64_t user_id)
{
    struct pop3_session *s = session(f, true, false, 100);
    const struct step steps[] = {
        {.op = GREET, .expect = {"+OK"}},
        {.send = "USER bob\r\n", .expect = {"+OK"}},
        {.send = "PASS secret\r\n", .busy = true},
        {.op = AUTH_DONE, .rc = 1, .user_id = user_id, .expect = {"+OK"}},
    };
    RUN(name, s, steps);
    return s;
}

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *fmt, ...)
{
    static char pool[64][128];
    static unsigned next;
    char *p = pool[next++ % 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, 128, fmt, ap);
    va_end(ap);
    return p;
}

/* --- multi-line message answers ------------------------------------------ */

/*
 * Checks that o, from offset *off, holds a first line starting with
 * first_prefix, then payload byte-stuffed, then ".\r\n": undoes the stuffing
 * line by line up to the first lone "." and compares. Moves *off past the
 * terminator.
 */
static void check_message(const char *name, const struct out *o, size_t *off,
                          const char *first_prefix, const char *payload, size_t plen)
{
    const char *p = o->data + *off;
    size_t n = o->len - *off;
    size_t fl = strlen(first_prefix);
    const char *eol = memmem(p, n, "\r\n", 2);
    ok(eol != NULL && n >= fl && memcmp(p, first_prefix, fl) == 0, "%s: first line is like \"%s\"",
       name, first_prefix);
    if (eol == NULL)
        return;
    size_t i = (size_t)(eol - p) + 2;
    char *un = malloc(n + 1);
    size_t ul = 0;
    bool ended = false, bad_dot = false;
    while (i < n) {
        const char *e = memmem(p + i, n - i, "\r\n", 2);
        if (e == NULL)
            break;
        size_t l = (size_t)(e - (p + i));
        const char *line = p + i;
        i += l + 2;
        if (l == 1 && line[0] == '.') {
            ended = true;
            break;
        }
        if (l > 0 && line[0] == '.') {
            if (l < 2 || line[1] != '.')
                bad_dot = true; /* a line starting with one '.' not stuffed */
            line++;
            l--;
        }
        memcpy(un + ul, line, l);
        ul += l;
        memcpy(un + ul, "\r\n", 2);
        ul += 2;
    }
    ok(ended, "%s: ends with a lone \".\" line", name);
    ok(!bad_dot, "%s: every line starting with '.' is stuffed", name);
    bool same = ul == plen && memcmp(un, payload, plen) == 0;
    ok(same, "%s: unstuffed, the %zu octets are exactly the message's", name, plen);
    if (!same) {
        size_t k = 0;
        while (k < ul && k < plen && un[k] == payload[k])
            k++;
        printf("#   got %zu octets, want %zu; first difference at %zu\n", ul, plen, k);
    }
    free(un);
    *off += i;
}

/* What RETR must send: the body, with a CRLF added when it lacks a final one. */
static char *retr_payload(const char *body, size_t len, size_t *plen_r)
{
    char *p = malloc(len + 3);
    memcpy(p, body, len);
    size_t n = len;
    if (len > 0 && !(len >= 2 && body[len - 2] == '\r' && body[len - 1] == '\n')) {
        memcpy(p + n, "\r\n", 2);
        n += 2;
    }
    *plen_r = n;
    return p;
}

/* What TOP n must send: the header, the blank line, then n body lines. */
static char *top_payload(const char *body, size_t len, long lines, size_t *plen_r)
{
    size_t full;
    char *all = retr_payload(body, len, &full);
    const char *blank = memmem(all, full, "\r\n\r\n", 4);
    size_t end;
    if (blank == NULL) {
        end = full;
    } else {
        end = (size_t)(blank - all) + 4;
        for (long k = 0; k < lines && end < full; k++) {
            const char *e = memmem(all + end, full - end, "\r\n", 2);
            end = e ? (size_t)(e - all) + 2 : full;
        }
    }
    *plen_r = end;
    return all;
}

/* Feeds cmd to s, drains, and checks the one message answer it gives. */
static void retr_check(const char *name, struct pop3_session *s, const char *cmd, const char *first,
                       const char *payload, size_t plen)
{
    struct out o = {0};
    is_int(feed(s, cmd, strlen(cmd)), strlen(cmd), "%s: consumed", name);
    collect(s, &o);
    size_t off = 0;
    check_message(name, &o, &off, first, payload, plen);
    is_int(off, o.len, "%s: nothing after the terminator", name);
    ok(!pop3_session_sending(s), "%s: no longer sending", name);
    is_int(pop3_session_action(s), POP3_ACT_NONE, "%s: no action", name);
    out_clear(&o);
}

/* --- greeting and CAPA --------------------------------------------------- */

static void test_greeting(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    struct pop3_session *s = session(&f, false, true, 0);
    const struct step steps[] = {{.op = GREET, .expect = {"+OK"}}};
    RUN("greeting", s, steps);
    ok(memchr(last.data, '<', last.len) == NULL, "greeting: no APOP timestamp ('<' absent)");
    is_int(f.auth_calls + f.lock_calls + f.list_calls, 0, "greeting: no call into the world");
    pop3_session_free(&s);
    ok(s == NULL, "pop3_session_free sets the pointer to NULL");
    is_int(f.unlock_calls, 0, "greeting: a session never logged in unlocks nothing");
    pop3_session_free(&s); /* NULL is fine */
}

/* Checks a CAPA answer: "+OK", exactly the lines want (each once, any order), ".". */
static void check_capa(const char *name, const char *const *want)
{
    char lines[MAX_LINES][512];
    int got = split_lines(&last, lines);
    int nw = 0;
    while (want[nw] != NULL)
        nw++;
    ok(got >= 2 && strncmp(lines[0], "+OK", 3) == 0, "%s: starts with +OK", name);
    ok(got >= 2 && strcmp(lines[got - 1], ".") == 0, "%s: ends with \".\"", name);
    is_int(got, nw + 2, "%s: exactly %d capabilities", name, nw);
    for (int w = 0; w < nw; w++) {
        int count = 0;
        bool prefix = strcmp(want[w], "IMPLEMENTATION ") == 0;
        for (int k = 1; k + 1 < got && k < MAX_LINES; k++)
            if (prefix ? strncmp(lines[k], want[w], strlen(want[w])) == 0
                       : strcmp(lines[k], want[w]) == 0)
                count++;
        is_int(count, 1, "%s: \"%s\" listed once", name, want[w]);
    }
    if (got != nw + 2)
        for (int k = 0; k < got && k < MAX_LINES; k++)
            printf("#   %s\n", lines[k]);
}

#define CAPA_COMMON                                                                                \
    "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "UTF8", "EXPIRE NEVER",           \
        "LOGIN-DELAY 0", "IMPLEMENTATION "

static void test_capa(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    const struct step capa[] = {{.send = "CAPA\r\n", .raw = true}};

    /* Plaintext, not loopback, TLS offered: STLS, and no way to log in yet. */
    struct pop3_session *s = session(&f, false, true, 0);
    RUN("CAPA in plaintext", s, capa);
    static const char *const plain[] = {CAPA_COMMON, "STLS", NULL};
    check_capa("CAPA in plaintext", plain);

    /* After TLS: USER and SASL, no STLS. */
    pop3_session_tls_started(s, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "mail.example.test");
    RUN("CAPA after TLS", s, capa);
    static const char *const tls[] = {CAPA_COMMON, "USER", "SASL PLAIN LOGIN", NULL};
    check_capa("CAPA after TLS", tls);
    pop3_session_free(&s);

    /* Loopback without TLS: login allowed, STLS not offered. */
    s = session(&f, true, false, 0);
    RUN("CAPA on loopback", s, capa);
    check_capa("CAPA on loopback", tls);
    pop3_session_free(&s);

    /* Loopback with TLS available: both. */
    s = session(&f, true, true, 0);
    RUN("CAPA on loopback with TLS available", s, capa);
    static const char *const both[] = {CAPA_COMMON, "USER", "SASL PLAIN LOGIN", "STLS", NULL};
    check_capa("CAPA on loopback with TLS available", both);
    pop3_session_free(&s);

    /* Plaintext, no TLS at all: neither a way to log in nor STLS. */
    s = session(&f, false, false, 0);
    RUN("CAPA without TLS", s, capa);
    static const char *const none[] = {CAPA_COMMON, NULL};
    check_capa("CAPA without TLS", none);
    pop3_session_free(&s);

    /* In TRANSACTION CAPA still answers, and never offers STLS (RFC 2595 4). */
    fake_default(&f, &l);
    s = logged_in("CAPA after login", &f, 7);
    RUN("CAPA after login", s, capa);
    char lines[MAX_LINES][512];
    int got = split_lines(&last, lines);
    ok(got >= 2 && strncmp(lines[0], "+OK", 3) == 0 && strcmp(lines[got - 1], ".") == 0,
       "CAPA after login: a multi-line +OK answer");
    bool has_top = false, has_stls = false;
    for (int k = 0; k < got && k < MAX_LINES; k++) {
        has_top |= strcmp(lines[k], "TOP") == 0;
        has_stls |= strcmp(lines[k], "STLS") == 0;
    }
    ok(has_top && !has_stls, "CAPA after login: TOP listed, STLS not");
    pop3_session_free(&s);
}

/* --- TLS and plaintext logins -------------------------------------------- */

static void test_plaintext_refused(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    struct pop3_session *s = session(&f, false, true, 0);
    const struct step steps[] = {
        {.op = GREET, .expect = {"+OK"}},
        {.send = "USER bob\r\n", .expect = {"-ERR [AUTH]"}},
        {.send = "PASS secret\r\n", .expect = {"-ERR [AUTH]"}},
        {.send = "user bob\r\n", .expect = {"-ERR [AUTH]"}},
        {.send = "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n", .expect = {"-ERR [AUTH]"}},
        {.send = "AUTH LOGIN\r\n", .expect = {"-ERR [AUTH]"}},
        {.send = "AUTH PLAIN\r\n", .expect = {"-ERR [AUTH]"}},
        {.send = "APOP bob 0123456789abcdef0123456789abcdef\r\n", .expect = {"-ERR"}},
        /* STLS, and the bytes behind it stay unread for the glue to drop. */
        {.send = "STLS\r\nUSER bob\r\nPASS secret\r\n",
         .left = "USER bob\r\nPASS secret\r\n",
         .expect = {"+OK"},
         .action = POP3_ACT_STLS},
        {.op = TLS_STARTED},
        {.send = "STLS\r\n", .expect = {"-ERR"}},
        {.send = "USER bob\r\n", .expect = {"+OK"}},
        {.send = "PASS secret\r\n", .busy = true},
        {.op = AUTH_DONE, .rc = 1, .user_id = 42, .expect = {"+OK"}},
        {.send = "STAT\r\n", .expect = {"+OK 3 "}},
    };
    RUN("plaintext then STLS", s, steps);
    is_int(f.auth_calls, 1, "plaintext then STLS: auth called only after TLS");
    is_str(f.auth_user, "bob", "plaintext then STLS: user");
    is_str(f.auth_pass, "secret", "plaintext then STLS: password");
    ok(lock_held(&l, 42), "plaintext then STLS: the maildrop lock is taken");
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "plaintext then STLS: freed, unlocked once");
    is_int(f.unlocked_id, 42, "plaintext then STLS: the right user unlocked");
    is_int(l.n, 0, "plaintext then STLS: no lock left");

    /* The action STLS is reported once: reading it clears it. */
    s = session(&f, false, true, 0);
    feed(s, "STLS\r\n", 6);
    is_int(pop3_session_action(s), POP3_ACT_STLS, "STLS: action STLS");
    is_int(pop3_session_action(s), POP3_ACT_NONE, "STLS: read once, then none");
    pop3_session_free(&s);

    /* No TLS configured: STLS is refused. */
    s = session(&f, false, false, 0);
    const struct step no_tls[] = {{.send = "STLS\r\n", .expect = {"-ERR"}}};
    RUN("STLS without TLS", s, no_tls);
    pop3_session_free(&s);

    /* RFC 2595 4: what was said before TLS is forgotten, USER included. */
    s = session(&f, true, true, 0);
    const struct step forget[] = {
        {.send = "USER bob\r\n", .expect = {"+OK"}},
        {.send = "STLS\r\n", .expect = {"+OK"}, .action = POP3_ACT_STLS},
        {.op = TLS_STARTED},
        {.send = "PASS secret\r\n", .expect = {"-ERR"}},
    };
    fake_default(&f, &l);
    RUN("USER before STLS is forgotten", s, forget);
    is_int(f.auth_calls, 0, "USER before STLS is forgotten: auth not called");
    pop3_session_free(&s);
}

/* --- USER / PASS --------------------------------------------------------- */

static void test_user_pass(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    int64_t total = (int64_t)(sizeof(msg1) - 1 + sizeof(msg2) - 1 + msg3_len);
    struct pop3_session *s = session(&f, true, false, 0);
    const struct step steps[] = {
        {.op = GREET, .expect = {"+OK"}},
        {.send = "PASS secret\r\n", .expect = {"-ERR"}}, /* no USER yet */
        {.send = "USER\r\n", .expect = {"-ERR"}},
        /* The password keeps its spaces; the session waits for auth_done. */
        {.send = "USER bob\r\nPASS my  secret pw\r\nSTAT\r\n",
         .left = "STAT\r\n",
         .expect = {"+OK"},
         .busy = true},
        {.send = "STAT\r\n", .left = "STAT\r\n", .busy = true},
        {.op = AUTH_DONE, .rc = 1, .user_id = 7, .expect = {"+OK"}},
        {.send = "STAT\r\n", .expect = {strf("+OK 3 %lld", (long long)total)}, .exact = true},
    };
    RUN("USER/PASS", s, steps);
    is_int(f.auth_calls, 1, "USER/PASS: auth called once");
    is_str(f.auth_user, "bob", "USER/PASS: auth got the user");
    is_str(f.auth_pass, "my  secret pw", "USER/PASS: auth got the password with its spaces");
    is_int(f.lock_calls, 1, "USER/PASS: lock taken once");
    ok(lock_held(&l, 7), "USER/PASS: user 7's maildrop is locked");
    is_int(f.list_calls, 1, "USER/PASS: maildrop listed once");
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "USER/PASS: unlocked when freed");
    is_int(l.n, 0, "USER/PASS: no lock left");

    /* Refused, then locked out, then fine: each answer with its code. */
    fake_default(&f, &l);
    s = session(&f, true, false, 0);
    const struct step fails[] = {
        {.send = "USER bob\r\n", .expect = {"+OK"}},
        {.send = "PASS wrong\r\n", .busy = true},
        {.op = AUTH_DONE, .rc = 0, .expect = {"-ERR [AUTH]"}},
        /* A refusal forgets the USER. */
        {.send = "PASS wrong\r\n", .expect = {"-ERR"}},
        {.send = "STAT\r\n", .expect = {"-ERR"}},
        {.send = "USER bob\r\n", .expect = {"+OK"}},
        {.send = "PASS wrong\r\n", .busy = true},
        {.op = AUTH_DONE, .rc = -EAGAIN, .expect = {"-ERR [SYS/TEMP]"}},
        {.send = "STAT\r\n", .expect = {"-ERR"}},
        {.send = "USER bob\r\n", .expect = {"+OK"}},
        {.send = "PASS right\r\n", .busy = true},
        {.op = AUTH_DONE, .rc = 1, .user_id = 9, .expect = {"+OK"}},
        {.send = "NOOP\r\n", .expect = {"+OK"}},
    };
    RUN("failed logins", s, fails);
    is_int(f.auth_calls, 3, "failed logins: auth called three times");
    is_int(f.lock_calls, 1, "failed logins: lock only on success");
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "failed logins: unlocked once when freed");

    /* A session dropped while its login is checked holds no lock. */
    fake_default(&f, &l);
    s = session(&f, true, false, 0);
    feed(s, "USER bob\r\nPASS x\r\n", 18);
    ok(pop3_session_busy(s), "dropped during login: busy");
    pop3_session_free(&s);
    is_int(f.unlock_calls, 0, "dropped during login: nothing to unlock");

    /* The idle time runs out while the password is checked: the answer
     * comes first. A stop meanwhile says goodbye, and the late answer then
     * writes nothing and takes no lock. */
    fake_default(&f, &l);
    s = session(&f, true, false, 0);
    const struct step late[] = {
        {.send = "USER bob\r\nPASS right\r\n", .expect = {"+OK"}, .busy = true},
        {.op = TIMEOUT, .busy = true},
        {.op = SHUTDOWN, .expect = {"-ERR [SYS/TEMP]"}, .action = POP3_ACT_CLOSE, .busy = true},
        {.op = AUTH_DONE, .rc = 1, .user_id = 7, .action = POP3_ACT_CLOSE},
    };
    RUN("login answered after the goodbye", s, late);
    is_int(f.lock_calls, 0, "login answered after the goodbye: no lock taken");
    pop3_session_free(&s);
}

static void test_in_use(void)
{
    struct locks l = {0};
    struct fake fa, fb;
    fake_default(&fa, &l);
    fake_default(&fb, &l);
    struct pop3_session *a = logged_in("IN-USE, first session", &fa, 7);
    ok(lock_held(&l, 7), "IN-USE: the first session holds the lock");

    struct pop3_session *b = session(&fb, true, false, 0);
    const struct step second[] = {
        {.send = "USER bob\r\n", .expect = {"+OK"}},
        {.send = "PASS secret\r\n", .busy = true},
        {.op = AUTH_DONE, .rc = 1, .user_id = 7, .expect = {"-ERR [IN-USE]"}},
        {.send = "STAT\r\n", .expect = {"-ERR"}}, /* still AUTHORIZATION */
    };
    RUN("IN-USE, second session", b, second);
    is_int(fb.list_calls, 0, "IN-USE: the second session never lists the maildrop");

    /* The first one ends (QUIT, nothing marked): the lock goes. */
    const struct step quit[] = {
        {.send = "QUIT\r\n", .expect = {"+OK"}, .action = POP3_ACT_CLOSE},
    };
    RUN("IN-USE, first session quits", a, quit);
    pop3_session_free(&a);
    is_int(fa.unlock_calls, 1, "IN-USE: the first session unlocked");
    ok(!lock_held(&l, 7), "IN-USE: lock released");

    const struct step retry[] = {
        {.send = "USER bob\r\n", .expect = {"+OK"}},
        {.send = "PASS secret\r\n", .busy = true},
        {.op = AUTH_DONE, .rc = 1, .user_id = 7, .expect = {"+OK"}},
    };
    RUN("IN-USE, second session retries", b, retry);
    ok(lock_held(&l, 7), "IN-USE: the second session has the lock now");
    pop3_session_free(&b);
    is_int(fb.unlock_calls, 1, "IN-USE: the second session unlocked once");
    is_int(l.n, 0, "IN-USE: no lock left");

    /* The maildrop cannot be listed: [SYS/TEMP], and the lock is given back. */
    fake_default(&fa, &l);
    fa.list_rc = -EIO;
    a = session(&fa, true, false, 0);
    const struct step nolist[] = {
        {.send = "USER bob\r\n", .expect = {"+OK"}},
        {.send = "PASS secret\r\n", .busy = true},
        {.op = AUTH_DONE, .rc = 1, .user_id = 7, .expect = {"-ERR [SYS/TEMP]"}},
        {.send = "STAT\r\n", .expect = {"-ERR"}},
    };
    RUN("maildrop list fails", a, nolist);
    is_int(fa.unlock_calls, 1, "maildrop list fails: lock given back");
    is_int(l.n, 0, "maildrop list fails: no lock held");
    pop3_session_free(&a);
    is_int(fa.unlock_calls, 1, "maildrop list fails: no second unlock when freed");
}

/* --- AUTH ---------------------------------------------------------------- */

/* The base64 of a PLAIN message authzid \0 user \0 password. */
static const char *plain_b64(const char *authzid, const char *user, const char *pass)
{
    static char out[4][256];
    static unsigned next;
    uint8_t msg[192];
    size_t n = 0;
    memcpy(msg + n, authzid, strlen(authzid));
    n += strlen(authzid);
    msg[n++] = 0;
    memcpy(msg + n, user, strlen(user));
    n += strlen(user);
    msg[n++] = 0;
    memcpy(msg + n, pass, strlen(pass));
    n += strlen(pass);
    char *o = out[next++ % 4];
    sasl_b64_encode(msg, n, o, 256);
    return o;
}

static void test_auth(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    char plain_ir[300], plain_resp[300], plain_proxy[300];
    snprintf(plain_ir, sizeof(plain_ir), "AUTH PLAIN %s\r\n", plain_b64("", "bob", "pass word"));
    snprintf(plain_resp, sizeof(plain_resp), "%s\r\n", plain_b64("", "carol", "pw"));
    snprintf(plain_proxy, sizeof(plain_proxy), "auth plain %s\r\n",
             plain_b64("admin", "bob", "pw"));

    /* AUTH PLAIN with an initial response. */
    struct pop3_session *s = session(&f, true, false, 0);
    const struct step ir[] = {
        {.send = "AUTH\r\n", .expect = {"+OK", "PLAIN", "LOGIN", "."}, .exact = false},
        {.send = plain_ir, .busy = true},
        {.op = AUTH_DONE, .rc = 1, .user_id = 5, .expect = {"+OK"}},
        {.send = "STAT\r\n", .expect = {"+OK 3 "}},
    };
    RUN("AUTH PLAIN with initial response", s, ir);
    is_str(f.auth_user, "bob", "AUTH PLAIN: user");
    is_str(f.auth_pass, "pass word", "AUTH PLAIN: password with its space");
    ok(lock_held(&l, 5), "AUTH PLAIN: locked");
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "AUTH PLAIN: unlocked when freed");

    /* AUTH PLAIN without one: an empty challenge first. */
    fake_default(&f, &l);
    s = session(&f, true, false, 0);
    const struct step no_ir[] = {
        {.send = "AUTH PLAIN\r\n", .expect = {"+ "}, .exact = true},
        {.send = plain_resp, .busy = true},
        {.op = AUTH_DONE, .rc = 0, .expect = {"-ERR [AUTH]"}},
        {.send = "AUTH PLAIN\r\n", .expect = {"+ "}, .exact = true},
        {.send = "*\r\n", .expect = {"-ERR"}},
        {.send = "AUTH PLAIN !!!!\r\n", .expect = {"-ERR"}},
        {.send = "AUTH PLAIN =\r\n", .expect = {"-ERR"}},
        {.send = "AUTH CRAM-MD5\r\n", .expect = {"-ERR"}},
        {.send = "AUTH PLAIN a b\r\n", .expect = {"-ERR"}},
        {.send = "USER bob\r\n", .expect = {"+OK"}}, /* back in AUTHORIZATION */
    };
    RUN("AUTH PLAIN, challenge and failures", s, no_ir);
    is_int(f.auth_calls, 1, "AUTH PLAIN failures: auth called for the one good message");
    is_str(f.auth_user, "carol", "AUTH PLAIN after a challenge: user");
    is_str(f.auth_pass, "pw", "AUTH PLAIN after a challenge: password");
    pop3_session_free(&s);

    /* Acting as another user is checked as a login of nobody, so it fails
     * like any other login: after the check and its delay. */
    fake_default(&f, &l);
    s = session(&f, true, false, 0);
    const struct step proxy[] = {
        {.send = plain_proxy, .busy = true},
        {.op = AUTH_DONE, .rc = 0, .expect = {"-ERR [AUTH]"}},
    };
    RUN("AUTH PLAIN for another identity", s, proxy);
    is_str(f.auth_user, "", "AUTH PLAIN for another identity: checked as nobody");
    is_int(f.lock_calls, 0, "AUTH PLAIN failures: nothing locked");
    pop3_session_free(&s);

    /* AUTH LOGIN: two challenges. */
    fake_default(&f, &l);
    s = session(&f, true, false, 0);
    const struct step login[] = {
        {.send = "AUTH LOGIN\r\n", .expect = {"+ VXNlcm5hbWU6"}, .exact = true},
        {.send = "Ym9i\r\n", .expect = {"+ UGFzc3dvcmQ6"}, .exact = true},
        {.send = "c2VjcmV0\r\nSTAT\r\n", .left = "STAT\r\n", .busy = true},
        {.op = AUTH_DONE, .rc = -EAGAIN, .expect = {"-ERR [SYS/TEMP]"}},
        {.send = "STAT\r\n", .expect = {"-ERR"}},
        /* "*" cancels at either step. */
        {.send = "auth login\r\n", .expect = {"+ VXNlcm5hbWU6"}, .exact = true},
        {.send = "*\r\n", .expect = {"-ERR"}},
        {.send = "AUTH LOGIN\r\n", .expect = {"+ VXNlcm5hbWU6"}, .exact = true},
        {.send = "Ym9i\r\n", .expect = {"+ UGFzc3dvcmQ6"}, .exact = true},
        {.send = "*\r\n", .expect = {"-ERR"}},
        /* An initial response for LOGIN is the user name. */
        {.send = "AUTH LOGIN Ym9i\r\n", .expect = {"+ UGFzc3dvcmQ6"}, .exact = true},
        {.send = "c2VjcmV0\r\n", .busy = true},
        {.op = AUTH_DONE, .rc = 1, .user_id = 3, .expect = {"+OK"}},
        {.send = "NOOP\r\n", .expect = {"+OK"}},
    };
    RUN("AUTH LOGIN", s, login);
    is_int(f.auth_calls, 2, "AUTH LOGIN: auth called twice");
    is_str(f.auth_user, "bob", "AUTH LOGIN: user");
    is_str(f.auth_pass, "secret", "AUTH LOGIN: password");
    ok(lock_held(&l, 3), "AUTH LOGIN: locked");
    pop3_session_free(&s);
    is_int(l.n, 0, "AUTH LOGIN: unlocked when freed");

    /* An overlong line inside an exchange ends it; the session goes on. */
    fake_default(&f, &l);
    s = session(&f, true, false, 0);
    char longline[400];
    memset(longline, 'Q', 300);
    memcpy(longline + 300, "\r\n", 3);
    const struct step overlong[] = {
        {.send = "AUTH LOGIN\r\n", .expect = {"+ VXNlcm5hbWU6"}},
        {.send = longline, .expect = {"-ERR"}},
        {.send = "USER bob\r\n", .expect = {"+OK"}},
    };
    RUN("AUTH with an overlong line", s, overlong);
    is_int(f.auth_calls, 0, "AUTH with an overlong line: auth not called");
    pop3_session_free(&s);
}

/* --- TRANSACTION --------------------------------------------------------- */

static void test_stat_list_uidl(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    size_t s1 = sizeof(msg1) - 1, s2 = sizeof(msg2) - 1, s3 = msg3_len;
    struct pop3_session *s = logged_in("STAT/LIST/UIDL login", &f, 7);

    /* Mail arriving after login is not seen: the snapshot stays. */
    f.mails[f.n_mails] = (struct store_mail){.id = 999, .message_id = 999, .size = 5};
    f.n_mails++;

    const struct step steps[] = {
        {.send = "STAT\r\n", .expect = {strf("+OK 3 %zu", s1 + s2 + s3)}, .exact = true},
        {.send = "LIST\r\n",
         .expect = {"+OK", strf("1 %zu", s1), strf("2 %zu", s2), strf("3 %zu", s3), "."}},
        {.send = "LIST 2\r\n", .expect = {strf("+OK 2 %zu", s2)}, .exact = true},
        {.send = "list 3\r\n", .expect = {strf("+OK 3 %zu", s3)}, .exact = true},
        {.send = "UIDL\r\n",
         .expect = {"+OK", "1 uidl-0001-alpha", "2 uidl-0002-beta", "3 uidl-0003-gamma", "."}},
        {.send = "UIDL 1\r\n", .expect = {"+OK 1 uidl-0001-alpha"}, .exact = true},
        {.send = "LIST 0\r\n", .expect = {"-ERR"}},
        {.send = "LIST 4\r\n", .expect = {"-ERR"}},
        {.send = "LIST 01\r\n", .expect = {"-ERR"}},
        {.send = "LIST -1\r\n", .expect = {"-ERR"}},
        {.send = "LIST x\r\n", .expect = {"-ERR"}},
        {.send = "LIST 1 2\r\n", .expect = {"-ERR"}},
        {.send = "LIST 99999999999999999999\r\n", .expect = {"-ERR"}},
        {.send = "UIDL 0\r\n", .expect = {"-ERR"}},
        {.send = "UIDL 4\r\n", .expect = {"-ERR"}},
        {.send = "DELE 2\r\n", .expect = {"+OK"}},
        {.send = "STAT\r\n", .expect = {strf("+OK 2 %zu", s1 + s3)}, .exact = true},
        {.send = "LIST\r\n", .expect = {"+OK", strf("1 %zu", s1), strf("3 %zu", s3), "."}},
        {.send = "UIDL\r\n", .expect = {"+OK", "1 uidl-0001-alpha", "3 uidl-0003-gamma", "."}},
        {.send = "LIST 2\r\n", .expect = {"-ERR"}},
        {.send = "UIDL 2\r\n", .expect = {"-ERR"}},
        {.send = "RETR 2\r\n", .expect = {"-ERR"}},
        {.send = "TOP 2 0\r\n", .expect = {"-ERR"}},
        {.send = "DELE 2\r\n", .expect = {"-ERR"}},
        {.send = "RSET\r\n", .expect = {"+OK"}},
        {.send = "LIST 2\r\n", .expect = {strf("+OK 2 %zu", s2)}, .exact = true},
        {.send = "STAT\r\n", .expect = {strf("+OK 3 %zu", s1 + s2 + s3)}, .exact = true},
        {.send = "NOOP\r\n", .expect = {"+OK"}},
    };
    /* LIST and UIDL lines are checked whole: run the all-listing steps exactly. */
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct step t = steps[i];
        if (strcmp(t.send, "LIST\r\n") == 0 || strcmp(t.send, "UIDL\r\n") == 0) {
            /* The first line is "+OK ..." with free text: check it by prefix apart. */
            const struct step one[] = {t};
            run("STAT/LIST/UIDL", s, one, 1);
            char lines[MAX_LINES][512];
            int got = split_lines(&last, lines);
            int want = 0;
            while (t.expect[want] != NULL)
                want++;
            bool all = got == want;
            for (int k = 1; all && k < want; k++)
                all = strcmp(lines[k], t.expect[k]) == 0;
            ok(all, "STAT/LIST/UIDL: %.4s listing lines are exact", t.send);
        } else {
            const struct step one[] = {t};
            run("STAT/LIST/UIDL", s, one, 1);
        }
    }
    is_int(f.list_calls, 1, "STAT/LIST/UIDL: the maildrop was listed once, at login");
    pop3_session_free(&s);
    is_int(f.commit_calls, 0, "STAT/LIST/UIDL: dropped, nothing committed");
    is_int(f.unlock_calls, 1, "STAT/LIST/UIDL: dropped, unlocked");

    /* An empty maildrop. */
    fake_init(&f, &l, NULL, 0);
    s = logged_in("empty maildrop", &f, 8);
    const struct step empty[] = {
        {.send = "STAT\r\n", .expect = {"+OK 0 0"}, .exact = true},
        {.send = "LIST\r\n", .expect = {"+OK", "."}},
        {.send = "UIDL\r\n", .expect = {"+OK", "."}},
        {.send = "LIST 1\r\n", .expect = {"-ERR"}},
        {.send = "RETR 1\r\n", .expect = {"-ERR"}},
        {.send = "DELE 1\r\n", .expect = {"-ERR"}},
        {.send = "RSET\r\n", .expect = {"+OK"}},
        {.send = "QUIT\r\n", .expect = {"+OK"}, .action = POP3_ACT_CLOSE},
    };
    RUN("empty maildrop", s, empty);
    is_int(f.commit_calls, 0, "empty maildrop: QUIT commits nothing");
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "empty maildrop: unlocked");
}

static void test_retr_top(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    struct pop3_session *s = logged_in("RETR/TOP login", &f, 7);
    size_t plen;
    char *p;

    p = retr_payload(msg1, sizeof(msg1) - 1, &plen);
    retr_check("RETR 1 (dot lines)", s, "RETR 1\r\n", strf("+OK %zu octets", sizeof(msg1) - 1), p,
               plen);
    free(p);

    /* The stuffing on the wire, literally. */
    {
        struct out o = {0};
        feed(s, "RETR 1\r\n", 8);
        collect(s, &o);
        ok(memmem(o.data, o.len, "\r\n..\r\n...two dots\r\n..leading dot\r\n", 34) != NULL,
           "RETR 1: \".\", \"..two dots\" and \".leading dot\" go out as \"..\", \"...two dots\", "
           "\"..leading dot\"");
        ok(o.len >= 5 && memcmp(o.data + o.len - 5, "\r\n.\r\n", 5) == 0,
           "RETR 1: ends with CRLF . CRLF");
        out_clear(&o);
    }

    p = retr_payload(msg2, sizeof(msg2) - 1, &plen);
    ok(plen == sizeof(msg2) - 1 + 2, "message 2 lacks a final CRLF: RETR adds one");
    retr_check("RETR 2 (no final CRLF)", s, "RETR 2\r\n", strf("+OK %zu octets", sizeof(msg2) - 1),
               p, plen);
    free(p);

    /* 200 KiB, streamed in pieces. */
    {
        struct out o = {0};
        int reads_before = f.read_calls;
        is_int(feed(s, "RETR 3\r\n", 8), 8, "RETR 3: consumed");
        ok(pop3_session_sending(s), "RETR 3: sending after the feed");
        ok(!pop3_session_busy(s), "RETR 3: sending is not 'busy' with a login or commit");
        collect(s, &o);
        ok(o.pumps >= 2, "RETR 3: sent over several pumps (%u)", o.pumps);
        ok(o.max_piece < msg3_len / 2, "RETR 3: no piece holds the message (largest %zu)",
           o.max_piece);
        ok(f.read_max_n < msg3_len, "RETR 3: read in chunks (at most %zu asked)", f.read_max_n);
        ok(f.read_calls - reads_before >= 4, "RETR 3: many reads (%d)",
           f.read_calls - reads_before);
        is_int(f.read_misuse, 0, "RETR 3: reads stay inside the bodies");
        size_t off = 0;
        check_message("RETR 3 (200 KiB)", &o, &off, strf("+OK %zu octets", msg3_len), msg3,
                      msg3_len);
        is_int(off, o.len, "RETR 3: nothing after the terminator");
        ok(!pop3_session_sending(s), "RETR 3: done sending");
        out_clear(&o);
    }

    /* TOP: the header, the blank line, then n body lines. */
    static const struct {
        int msg;
        long n;
    } tops[] = {{1, 0}, {1, 2},  {1, 5}, {1, 6}, {1, 1000}, {2, 0},   {2, 1},
                {2, 2}, {2, 50}, {3, 0}, {3, 3}, {3, 40},   {3, 2000}};
    for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
        const char *body = tops[i].msg == 1 ? msg1 : tops[i].msg == 2 ? msg2 : msg3;
        size_t blen = tops[i].msg == 1   ? sizeof(msg1) - 1
                      : tops[i].msg == 2 ? sizeof(msg2) - 1
                                         : msg3_len;
        char cmd[32], name[64];
        snprintf(cmd, sizeof(cmd), "TOP %d %ld\r\n", tops[i].msg, tops[i].n);
        snprintf(name, sizeof(name), "TOP %d %ld", tops[i].msg, tops[i].n);
        p = top_payload(body, blen, tops[i].n, &plen);
        retr_check(name, s, cmd, "+OK", p, plen);
        free(p);
    }

    /* TOP 1 2 literally: header, blank line, "first line", and "." stuffed. */
    {
        struct out o = {0};
        feed(s, "TOP 1 2\r\n", 9);
        collect(s, &o);
        const char *eol = memmem(o.data, o.len, "\r\n", 2);
        const char *want = "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: dots\r\n"
                           "\r\nfirst line\r\n..\r\n.\r\n";
        ok(eol != NULL && strcmp(eol + 2, want) == 0, "TOP 1 2: exactly two body lines, stuffed");
        out_clear(&o);
    }

    const struct step bad[] = {
        {.send = "RETR\r\n", .expect = {"-ERR"}},      {.send = "RETR 0\r\n", .expect = {"-ERR"}},
        {.send = "RETR 4\r\n", .expect = {"-ERR"}},    {.send = "RETR 1 2\r\n", .expect = {"-ERR"}},
        {.send = "RETR x\r\n", .expect = {"-ERR"}},    {.send = "TOP 1\r\n", .expect = {"-ERR"}},
        {.send = "TOP 1 -1\r\n", .expect = {"-ERR"}},  {.send = "TOP 1 x\r\n", .expect = {"-ERR"}},
        {.send = "TOP 0 1\r\n", .expect = {"-ERR"}},   {.send = "TOP 4 1\r\n", .expect = {"-ERR"}},
        {.send = "TOP 1 1 1\r\n", .expect = {"-ERR"}}, {.send = "TOP\r\n", .expect = {"-ERR"}},
        {.send = "NOOP\r\n", .expect = {"+OK"}},
    };
    RUN("RETR/TOP syntax", s, bad);
    ok(!pop3_session_sending(s), "RETR/TOP syntax: nothing being sent");
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "RETR/TOP: unlocked when freed");
}

/* Bodies at the edges: empty, a lone dot without CRLF, a dot line last, no blank line. */
static void test_edge_bodies(void)
{
    static const char e0[] = "";
    static const char e1[] = ".";
    static const char e2[] = "a\r\n.\r\n";
    static const char e3[] = "Subject: only a header\r\n";
    static const struct body bodies[] = {
        {601, e0, sizeof(e0) - 1},
        {602, e1, sizeof(e1) - 1},
        {603, e2, sizeof(e2) - 1},
        {604, e3, sizeof(e3) - 1},
    };
    struct locks l = {0};
    struct fake f;
    fake_init(&f, &l, bodies, 4);
    struct pop3_session *s = logged_in("edge bodies login", &f, 7);
    size_t plen;
    char *p;
    for (int i = 0; i < 4; i++) {
        char cmd[32], name[64];
        snprintf(cmd, sizeof(cmd), "RETR %d\r\n", i + 1);
        snprintf(name, sizeof(name), "edge RETR %d", i + 1);
        p = retr_payload(bodies[i].data, bodies[i].len, &plen);
        retr_check(name, s, cmd, strf("+OK %zu octets", bodies[i].len), p, plen);
        free(p);
        snprintf(cmd, sizeof(cmd), "TOP %d 0\r\n", i + 1);
        snprintf(name, sizeof(name), "edge TOP %d 0", i + 1);
        p = top_payload(bodies[i].data, bodies[i].len, 0, &plen);
        retr_check(name, s, cmd, "+OK", p, plen);
        free(p);
    }
    /* The wire form of RETR 2 (".") and RETR 1 (empty). */
    struct out o = {0};
    feed(s, "RETR 2\r\n", 8);
    collect(s, &o);
    const char *eol = memmem(o.data, o.len, "\r\n", 2);
    ok(eol != NULL && strcmp(eol + 2, "..\r\n.\r\n") == 0, "edge RETR 2: \".\" goes out as ..CRLF");
    out_clear(&o);
    feed(s, "RETR 1\r\n", 8);
    collect(s, &o);
    is_str(o.data, "+OK 0 octets\r\n.\r\n", "edge RETR 1: an empty body is +OK and the dot");
    out_clear(&o);
    pop3_session_free(&s);
}

/* --- DELE, RSET, QUIT and the ways a session ends ------------------------ */

static void test_quit_commit(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    struct pop3_session *s = logged_in("QUIT commit login", &f, 7);
    const struct step steps[] = {
        {.send = "DELE 1\r\n", .expect = {"+OK"}},
        {.send = "DELE 1\r\n", .expect = {"-ERR"}},
        {.send = "DELE 3\r\n", .expect = {"+OK"}},
        {.send = "DELE 0\r\n", .expect = {"-ERR"}},
        {.send = "DELE 4\r\n", .expect = {"-ERR"}},
        {.send = "RSET\r\n", .expect = {"+OK"}},
        {.send = "DELE 2\r\n", .expect = {"+OK"}},
        {.send = "dele 3\r\n", .expect = {"+OK"}},
        {.send = "QUIT\r\nNOOP\r\n", .left = "NOOP\r\n", .busy = true},
        {.send = "NOOP\r\n", .left = "NOOP\r\n", .busy = true},
        {.op = COMMIT_DONE, .rc = 0, .expect = {"+OK"}, .action = POP3_ACT_CLOSE},
        {.send = "NOOP\r\n", .left = "NOOP\r\n", .action = POP3_ACT_CLOSE},
    };
    RUN("DELE, RSET, QUIT", s, steps);
    is_int(f.commit_calls, 1, "QUIT: commit called once");
    is_int(f.commit_user, 7, "QUIT: commit for the logged-in user");
    is_int(f.n_commit_ids, 2, "QUIT: two entries");
    ok(f.n_commit_ids == 2 && f.commit_ids[0] == 102 && f.commit_ids[1] == 103,
       "QUIT: exactly the marked maildrop entry ids (102, 103), not message ids");
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "QUIT: unlocked once when freed");
    is_int(l.n, 0, "QUIT: no lock left");

    /* The commit fails: -ERR [SYS/TEMP], and the session still ends. */
    fake_default(&f, &l);
    s = logged_in("QUIT commit fails login", &f, 7);
    const struct step fail[] = {
        {.send = "DELE 2\r\n", .expect = {"+OK"}},
        {.send = "QUIT\r\n", .busy = true},
        {.op = COMMIT_DONE, .rc = -EIO, .expect = {"-ERR [SYS/TEMP]"}, .action = POP3_ACT_CLOSE},
    };
    RUN("QUIT, commit fails", s, fail);
    is_int(f.commit_calls, 1, "QUIT, commit fails: commit called once");
    ok(f.n_commit_ids == 1 && f.commit_ids[0] == 102, "QUIT, commit fails: entry 102");
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "QUIT, commit fails: unlocked");

    /* Nothing marked: +OK at once, no commit. */
    fake_default(&f, &l);
    s = logged_in("QUIT, nothing marked login", &f, 7);
    const struct step nothing[] = {
        {.send = "DELE 1\r\n", .expect = {"+OK"}},
        {.send = "RSET\r\n", .expect = {"+OK"}},
        {.send = "QUIT\r\n", .expect = {"+OK"}, .action = POP3_ACT_CLOSE},
    };
    RUN("QUIT, nothing marked", s, nothing);
    is_int(f.commit_calls, 0, "QUIT, nothing marked: no commit");
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "QUIT, nothing marked: unlocked");

    /* QUIT in AUTHORIZATION. */
    fake_default(&f, &l);
    s = session(&f, false, true, 0);
    const struct step auth_quit[] = {
        {.op = GREET, .expect = {"+OK"}},
        {.send = "quit\r\nNOOP\r\n",
         .left = "NOOP\r\n",
         .expect = {"+OK"},
         .action = POP3_ACT_CLOSE},
    };
    RUN("QUIT in AUTHORIZATION", s, auth_quit);
    pop3_session_free(&s);
    is_int(f.commit_calls + f.unlock_calls, 0, "QUIT in AUTHORIZATION: no commit, no unlock");

    /* Dropped with marks: nothing deleted, the lock goes. */
    fake_default(&f, &l);
    s = logged_in("drop with marks login", &f, 7);
    const struct step marks[] = {
        {.send = "DELE 1\r\nDELE 2\r\n", .expect = {"+OK", "+OK"}},
    };
    RUN("drop with marks", s, marks);
    pop3_session_free(&s);
    is_int(f.commit_calls, 0, "drop with marks: commit never called");
    is_int(f.unlock_calls, 1, "drop with marks: unlocked");
    is_int(l.n, 0, "drop with marks: no lock left");

    /* Dropped in the middle of a RETR. */
    fake_default(&f, &l);
    s = logged_in("drop while sending login", &f, 7);
    feed(s, "DELE 1\r\nRETR 3\r\n", 16);
    ok(pop3_session_sending(s), "drop while sending: sending");
    pop3_session_free(&s);
    is_int(f.commit_calls, 0, "drop while sending: commit never called");
    is_int(f.unlock_calls, 1, "drop while sending: unlocked");

    /* Dropped while the QUIT's commit is awaited: the glue's business, but unlock. */
    fake_default(&f, &l);
    s = logged_in("drop during commit login", &f, 7);
    feed(s, "DELE 1\r\nQUIT\r\n", 14);
    ok(pop3_session_busy(s), "drop during commit: busy");
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "drop during commit: unlocked");

    /* Timeout with marks: -ERR, CLOSE, nothing deleted. */
    fake_default(&f, &l);
    s = logged_in("timeout with marks login", &f, 7);
    const struct step timeout[] = {
        {.send = "DELE 1\r\n", .expect = {"+OK"}},
        {.op = TIMEOUT, .expect = {"-ERR"}, .action = POP3_ACT_CLOSE},
        {.send = "QUIT\r\n", .left = "QUIT\r\n", .action = POP3_ACT_CLOSE},
    };
    RUN("timeout with marks", s, timeout);
    pop3_session_free(&s);
    is_int(f.commit_calls, 0, "timeout with marks: nothing committed");
    is_int(f.unlock_calls, 1, "timeout with marks: unlocked");

    /* Shutdown with marks. */
    fake_default(&f, &l);
    s = logged_in("shutdown with marks login", &f, 7);
    const struct step shutdown[] = {
        {.send = "DELE 1\r\n", .expect = {"+OK"}},
        {.op = SHUTDOWN, .expect = {"-ERR [SYS/TEMP]"}, .action = POP3_ACT_CLOSE},
    };
    RUN("shutdown with marks", s, shutdown);
    pop3_session_free(&s);
    is_int(f.commit_calls, 0, "shutdown with marks: nothing committed");
    is_int(f.unlock_calls, 1, "shutdown with marks: unlocked");

    /* Timeout and shutdown before login. */
    fake_default(&f, &l);
    s = session(&f, false, true, 0);
    const struct step t_auth[] = {
        {.op = GREET, .expect = {"+OK"}},
        {.op = TIMEOUT, .expect = {"-ERR"}, .action = POP3_ACT_CLOSE},
    };
    RUN("timeout in AUTHORIZATION", s, t_auth);
    pop3_session_free(&s);
    s = session(&f, false, true, 0);
    const struct step s_auth[] = {
        {.op = GREET, .expect = {"+OK"}},
        {.op = SHUTDOWN, .expect = {"-ERR [SYS/TEMP]"}, .action = POP3_ACT_CLOSE},
    };
    RUN("shutdown in AUTHORIZATION", s, s_auth);
    pop3_session_free(&s);
    is_int(f.unlock_calls, 0, "timeout/shutdown before login: nothing to unlock");
}

/* Timeout and shutdown in the middle of a RETR: the -ERR is the last thing sent. */
static void test_end_while_sending(void)
{
    for (int which = 0; which < 2; which++) {
        const char *name = which == 0 ? "timeout while sending" : "shutdown while sending";
        struct locks l = {0};
        struct fake f;
        fake_default(&f, &l);
        struct pop3_session *s = logged_in(name, &f, 7);
        struct out o = {0};
        feed(s, "RETR 3\r\n", 8);
        take(s, &o);
        ok(pop3_session_sending(s), "%s: sending", name);
        out_clear(&o);
        if (which == 0)
            pop3_session_timeout(s);
        else
            pop3_session_shutdown(s);
        collect(s, &o);
        is_int(pop3_session_action(s), POP3_ACT_CLOSE, "%s: action CLOSE", name);
        ok(!pop3_session_sending(s), "%s: no longer sending", name);
        const char *err = memmem(o.data, o.len, "-ERR", 4);
        ok(err != NULL, "%s: an -ERR line", name);
        if (which == 1)
            ok(err != NULL && strncmp(err, "-ERR [SYS/TEMP]", 15) == 0, "%s: -ERR [SYS/TEMP]",
               name);
        const char *crlf = err ? memmem(err, o.len - (size_t)(err - o.data), "\r\n", 2) : NULL;
        ok(crlf != NULL && crlf + 2 == o.data + o.len,
           "%s: nothing of the message follows the -ERR line (%zu bytes after it)", name,
           crlf ? (size_t)(o.data + o.len - crlf - 2) : (size_t)0);
        out_clear(&o);
        pop3_session_free(&s);
        is_int(f.commit_calls, 0, "%s: nothing committed", name);
        is_int(f.unlock_calls, 1, "%s: unlocked", name);
    }
}

/* The store fails in the middle of a RETR: the session hangs up without a terminator. */
static void test_read_failure(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    struct pop3_session *s = logged_in("read failure login", &f, 7);
    f.read_fail_at = 100000;
    struct out o = {0};
    feed(s, "RETR 3\r\n", 8);
    collect(s, &o);
    is_int(pop3_session_action(s), POP3_ACT_CLOSE, "read failure: action CLOSE");
    ok(!pop3_session_sending(s), "read failure: no longer sending");
    ok(o.len >= 5 && memcmp(o.data + o.len - 5, "\r\n.\r\n", 5) != 0,
       "read failure: no terminator, so the client cannot take a truncated message as whole");
    out_clear(&o);
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "read failure: unlocked");
}

/* --- state, errors, limits ----------------------------------------------- */

static void test_out_of_state(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    struct pop3_session *s = session(&f, true, false, 100);
    const struct step before[] = {
        {.send = "STAT\r\n", .expect = {"-ERR"}},    {.send = "LIST\r\n", .expect = {"-ERR"}},
        {.send = "UIDL\r\n", .expect = {"-ERR"}},    {.send = "RETR 1\r\n", .expect = {"-ERR"}},
        {.send = "TOP 1 1\r\n", .expect = {"-ERR"}}, {.send = "DELE 1\r\n", .expect = {"-ERR"}},
        {.send = "NOOP\r\n", .expect = {"-ERR"}},    {.send = "RSET\r\n", .expect = {"-ERR"}},
        {.send = "UTF8\r\n", .expect = {"+OK"}},
    };
    RUN("before login", s, before);
    is_int(f.read_calls, 0, "before login: nothing read");
    pop3_session_free(&s);

    s = logged_in("after login, login", &f, 7);
    const struct step after[] = {
        {.send = "USER bob\r\n", .expect = {"-ERR"}},
        {.send = "PASS secret\r\n", .expect = {"-ERR"}},
        {.send = "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n", .expect = {"-ERR"}},
        {.send = "AUTH\r\n", .expect = {"-ERR"}},
        {.send = "STLS\r\n", .expect = {"-ERR"}},
        {.send = "APOP bob 0123456789abcdef0123456789abcdef\r\n", .expect = {"-ERR"}},
        {.send = "UTF8\r\n", .expect = {"-ERR"}},
        {.send = "NOOP\r\n", .expect = {"+OK"}},
    };
    int auth_before = f.auth_calls;
    RUN("after login", s, after);
    is_int(f.auth_calls, auth_before, "after login: auth not called again");
    is_int(f.lock_calls, 1, "after login: lock not taken again");
    pop3_session_free(&s);
}

static void test_bad_commands(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    struct pop3_session *s = session(&f, false, true, 3);
    const struct step steps[] = {
        {.send = "FOO\r\n", .expect = {"-ERR"}},
        {.send = "NOOP\r\n", .expect = {"-ERR"}}, /* out of state counts too */
        {.send = "XYZZY 1 2\r\nCAPA\r\n",
         .left = "CAPA\r\n",
         .expect = {"-ERR", "-ERR"},
         .action = POP3_ACT_CLOSE},
        {.send = "CAPA\r\n", .left = "CAPA\r\n", .action = POP3_ACT_CLOSE},
    };
    RUN("bad-command limit", s, steps);
    pop3_session_free(&s);

    /* A browser's form sent to the POP3 port: the request line ends the
     * session, so the form's body is never read as commands. */
    s = session(&f, false, true, 0);
    const struct step http[] = {
        {.send = "POST / HTTP/1.1\r\nUSER alice\r\n",
         .left = "USER alice\r\n",
         .expect = {"-ERR"},
         .action = POP3_ACT_CLOSE},
    };
    RUN("an HTTP request", s, http);
    pop3_session_free(&s);

    /* The default limit (0 in the config) is some small number, not infinity. */
    s = session(&f, false, true, 0);
    int closed_after = 0;
    for (int i = 1; i <= 1000 && closed_after == 0; i++) {
        feed(s, "FOO\r\n", 5);
        struct out o = {0};
        collect(s, &o);
        if (pop3_session_action(s) == POP3_ACT_CLOSE)
            closed_after = i;
        out_clear(&o);
    }
    ok(closed_after > 1 && closed_after <= 100, "default bad-command limit closes after %d",
       closed_after);
    pop3_session_free(&s);

    /* Lines too long or badly ended: -ERR, and the session goes on. */
    char in[512];
    memset(in, 'A', 300);
    memcpy(in + 300, "QUIT\r\nNOOP\r\n", 13);
    fake_default(&f, &l);
    s = logged_in("line too long login", &f, 7);
    const struct step longline[] = {
        {.send = in, .expect = {"-ERR", "+OK"}},
        {.send = "NOOP\nNOOP\r\n", .expect = {"-ERR", "+OK"}},
        {.send = "NO\rOP\r\nSTAT\r\n", .expect = {"-ERR", "+OK 3 "}},
    };
    RUN("line too long", s, longline);
    is_int(f.commit_calls, 0, "line too long: the QUIT in it never ran");
    pop3_session_free(&s);

    /* The overlong line arriving in pieces, as the glue would feed it. */
    fake_default(&f, &l);
    s = logged_in("line too long in pieces login", &f, 7);
    struct out o = {0};
    size_t total = strlen(in), pending = 0, fed = 0;
    char buf[600];
    while (fed < total) {
        size_t n = total - fed < 7 ? total - fed : 7;
        memcpy(buf + pending, in + fed, n);
        fed += n;
        pending += n;
        size_t used = feed(s, buf, pending);
        memmove(buf, buf + used, pending - used);
        pending -= used;
        collect(s, &o);
    }
    is_int(pending, 0, "line too long in pieces: all consumed");
    ok(o.data != NULL && strncmp(o.data, "-ERR", 4) == 0, "line too long in pieces: -ERR first");
    ok(o.data != NULL && strstr(o.data, "\r\n+OK") != NULL && strstr(o.data, "\r\n+OK Bye") == NULL,
       "line too long in pieces: NOOP answered, QUIT never ran");
    is_int(pop3_session_action(s), POP3_ACT_NONE, "line too long in pieces: not closed");
    out_clear(&o);
    pop3_session_free(&s);
}

/* --- pipelining ---------------------------------------------------------- */

static void test_pipelining(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    size_t s1 = sizeof(msg1) - 1, s2 = sizeof(msg2) - 1, s3 = msg3_len;
    struct pop3_session *s = logged_in("pipelining login", &f, 7);
    const struct step steps[] = {
        {.send = "STAT\r\nLIST\r\nUIDL\r\n",
         .expect = {strf("+OK 3 %zu", s1 + s2 + s3), "+OK", strf("1 %zu", s1), strf("2 %zu", s2),
                    strf("3 %zu", s3), ".", "+OK", "1 uidl-0001-alpha", "2 uidl-0002-beta",
                    "3 uidl-0003-gamma", "."}},
    };
    RUN("pipelined STAT LIST UIDL", s, steps);

    /* A small RETR in a pipeline: answered in order within one feed. */
    {
        struct out o = {0};
        const char *in = "RETR 1\r\nSTAT\r\nNOOP\r\n";
        is_int(feed(s, in, strlen(in)), strlen(in), "pipelined small RETR: all consumed");
        collect(s, &o);
        size_t plen, off = 0;
        char *p = retr_payload(msg1, s1, &plen);
        check_message("pipelined small RETR", &o, &off, "+OK", p, plen);
        free(p);
        const char *want = strf("+OK 3 %zu\r\n+OK", s1 + s2 + s3);
        ok(o.len - off >= strlen(want) && memcmp(o.data + off, want, strlen(want)) == 0,
           "pipelined small RETR: then STAT and NOOP, in order");
        out_clear(&o);
    }

    /* After a big RETR, the rest waits until the message is out. */
    {
        struct out o = {0};
        const char *in = "RETR 3\r\nSTAT\r\nNOOP\r\n";
        is_int(feed(s, in, strlen(in)), 8, "pipelined big RETR: only the RETR consumed");
        ok(pop3_session_sending(s), "pipelined big RETR: sending");
        is_int(feed(s, in + 8, strlen(in) - 8), 0, "pipelined big RETR: nothing more taken");
        collect(s, &o);
        size_t off = 0;
        check_message("pipelined big RETR", &o, &off, "+OK", msg3, msg3_len);
        is_int(off, o.len, "pipelined big RETR: nothing after the message yet");
        out_clear(&o);
        const struct step rest[] = {
            {.send = "STAT\r\nNOOP\r\n", .expect = {strf("+OK 3 %zu", s1 + s2 + s3), "+OK"}},
        };
        RUN("pipelined big RETR, the rest", s, rest);
    }

    /* A pipeline ending in QUIT with marks: the commit comes after every answer. */
    {
        const struct step quit[] = {
            {.send = "DELE 1\r\nLIST\r\nQUIT\r\n",
             .expect = {"+OK", "+OK", strf("2 %zu", s2), strf("3 %zu", s3), "."},
             .busy = true},
            {.op = COMMIT_DONE, .rc = 0, .expect = {"+OK"}, .action = POP3_ACT_CLOSE},
        };
        RUN("pipelined QUIT", s, quit);
        ok(f.n_commit_ids == 1 && f.commit_ids[0] == 101, "pipelined QUIT: entry 101 committed");
    }
    pop3_session_free(&s);
    is_int(f.unlock_calls, 1, "pipelining: unlocked");
}

/* The same conversation fed whole and one byte at a time gives the same bytes out. */
static void test_trickle(void)
{
    static const char script[] =
        "CAPA\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nTOP 1 2\r\nLIST 9\r\nFOO\r\n"
        "NOOP\nDELE 2\r\nRSET\r\nRETR 3\r\nTOP 3 5\r\nDELE 3\r\nSTAT\r\n";
    struct out outs[2] = {{0}, {0}};
    for (int mode = 0; mode < 2; mode++) {
        struct locks l = {0};
        struct fake f;
        fake_default(&f, &l);
        struct pop3_session *s = logged_in(mode ? "trickle login" : "whole login", &f, 7);
        size_t len = sizeof(script) - 1;
        if (mode == 0) {
            size_t off = 0;
            for (int guard = 0; guard < 100 && off < len; guard++) {
                off += feed(s, script + off, len - off);
                collect(s, &outs[0]);
            }
            is_int(off, len, "whole: all consumed");
        } else {
            char pending[sizeof(script)];
            size_t n = 0;
            for (size_t i = 0; i < len; i++) {
                pending[n++] = script[i];
                size_t used = feed(s, pending, n);
                memmove(pending, pending + used, n - used);
                n -= used;
                collect(s, &outs[1]);
            }
            for (int guard = 0; guard < 100 && n > 0; guard++) {
                size_t used = feed(s, pending, n);
                memmove(pending, pending + used, n - used);
                n -= used;
                collect(s, &outs[1]);
            }
            is_int(n, 0, "trickle: all consumed");
        }
        pop3_session_free(&s);
    }
    ok(outs[0].len == outs[1].len && memcmp(outs[0].data, outs[1].data, outs[0].len) == 0,
       "trickle: one byte at a time gives the same %zu bytes as the whole buffer", outs[0].len);
    out_clear(&outs[0]);
    out_clear(&outs[1]);
}

/*
 * Many pipelined commands behind a big RETR, fed the way the glue feeds
 * them: the session takes input only while its output is small (the glue
 * sends it in between), so no feed makes more than a few KiB of answers,
 * and the message still goes out whole, or the session hangs up; it never
 * sends a message with bytes missing and a terminator after them.
 */
static void test_output_full(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    struct pop3_session *s = logged_in("full output login", &f, 7);
    struct out one = {0};
    feed(s, "UIDL\r\n", 6);
    collect(s, &one);
    size_t u = one.len;
    out_clear(&one);

    /* Answers to far more than the session's output holds (64 KiB), then a RETR. */
    size_t k = (512 * 1024 - 20000) / u;
    size_t inlen = k * 6 + 8;
    char *in = malloc(inlen);
    for (size_t i = 0; i < k; i++)
        memcpy(in + i * 6, "UIDL\r\n", 6);
    memcpy(in + k * 6, "RETR 3\r\n", 8);
    size_t used = 0, most = 0;
    struct out o = {0};
    for (size_t round = 0; used < inlen && round < inlen; round++) {
        size_t n = feed(s, in + used, inlen - used);
        used += n;
        size_t made = pop3_session_output(s)->len;
        most = made > most ? made : most;
        collect(s, &o);
        if (n == 0 || pop3_session_action(s) != POP3_ACT_NONE)
            break;
    }
    /* 4 KiB of answers, then one answer and the first piece of a message at most. */
    ok(most <= 24 * 1024, "full output: no feed made more than 24 KiB (most: %zu)", most);
    enum pop3_action a = pop3_session_action(s);
    bool closed = a == POP3_ACT_CLOSE;
    ok(used == inlen || closed, "full output: every command taken, or the session hangs up");
    size_t off = k * u;
    const char *retr = o.len > off ? o.data + off : NULL;
    bool has_end = retr != NULL && memmem(retr, o.len - off, "\r\n.\r\n", 5) != NULL;
    if (has_end) {
        size_t at = off;
        check_message("full output: RETR 3 after many UIDLs", &o, &at, "+OK", msg3, msg3_len);
    } else {
        ok(closed, "full output: an unfinished message only with a hang-up");
        if (!closed)
            printf("#   the RETR answer is %zu bytes for a %zu-byte message, no terminator, "
                   "sending=%d, action none\n",
                   o.len - off, msg3_len, (int)pop3_session_sending(s));
    }
    out_clear(&o);
    free(in);
    pop3_session_free(&s);
}

/* A body shorter than the size the maildrop records ends in a hang-up, as
 * a failed read does: a "." would pass the cut message off as whole. */
static void test_short_body(void)
{
    static const char *const cmds[] = {"RETR 1\r\n", "TOP 1 100\r\n"};
    for (size_t k = 0; k < 2; k++) {
        struct locks l = {0};
        struct fake f;
        fake_default(&f, &l);
        f.mails[0].size += 100;
        struct pop3_session *s = logged_in("short body login", &f, 7);
        struct out o = {0};
        feed(s, cmds[k], strlen(cmds[k]));
        collect(s, &o);
        is_int(pop3_session_action(s), POP3_ACT_CLOSE, "short body, %.6s: action CLOSE", cmds[k]);
        ok(!pop3_session_sending(s), "short body, %.6s: no longer sending", cmds[k]);
        ok(o.len >= 5 && memcmp(o.data, "+OK", 3) == 0 &&
               memcmp(o.data + o.len - 5, "\r\n.\r\n", 5) != 0,
           "short body, %.6s: +OK and no terminator", cmds[k]);
        out_clear(&o);
        pop3_session_free(&s);
    }
}

/* Pipelined CAPAs whose answers pass the output ceiling in one feed: the
 * reply that loses a line is never ended with ".", whatever line it is. */
static void test_sticky_failure(void)
{
    struct out whole = {0};
    {
        struct locks l = {0};
        struct fake f;
        fake_default(&f, &l);
        struct pop3_session *s = session(&f, true, true, 100);
        feed(s, "CAPA\r\n", 6);
        collect(s, &whole);
        pop3_session_free(&s);
    }
    size_t k = 512 * 1024 / whole.len + 2;
    char *in = malloc(16 * 6 + k * 6);
    bool cut_ended = false, all_closed = true;
    for (size_t shift = 0; shift < 16; shift++) {
        struct locks l = {0};
        struct fake f;
        fake_default(&f, &l);
        struct pop3_session *s = session(&f, true, true, 100);
        size_t n = 0;
        for (size_t i = 0; i < shift; i++, n += 6)
            memcpy(in + n, "UTF8\r\n", 6);
        for (size_t i = 0; i < k; i++, n += 6)
            memcpy(in + n, "CAPA\r\n", 6);
        size_t used = feed(s, in, n);
        struct out o = {0};
        collect(s, &o);
        all_closed = all_closed && (pop3_session_action(s) == POP3_ACT_CLOSE || used < n);
        /* Every "." must close a reply identical to the whole one. */
        const char *p = o.data + shift * strlen("+OK UTF8 enabled\r\n");
        const char *end = o.data + o.len;
        while (p < end) {
            const char *dot = memmem(p, (size_t)(end - p), "\r\n.\r\n", 5);
            if (dot == NULL)
                break;
            size_t len = (size_t)(dot - p) + 5;
            if (len != whole.len || memcmp(p, whole.data, len) != 0)
                cut_ended = true;
            p = dot + 5;
        }
        out_clear(&o);
        pop3_session_free(&s);
    }
    ok(all_closed, "sticky failure: a session that would overfill stops taking input or hangs up");
    ok(!cut_ended, "sticky failure: no reply missing a line ends with \".\"");
    free(in);
    out_clear(&whole);
}

/* --- retention and the end of the header ([pop3] expire, login_delay, oe-ns-eoh) --- */

/* What the session wrote in answer to line (NULL: nothing fed), pumped as the glue does. */
static const char *say(struct pop3_session *s, const char *line)
{
    if (line != NULL)
        feed(s, line, strlen(line));
    out_clear(&last);
    collect(s, &last);
    return last.data;
}

static struct pop3_session *configured(struct fake *f, bool expire, unsigned days, unsigned delay)
{
    struct pop3_session_config cfg = {
        .peer_loopback = true,
        .session_id = "r3t",
        .bad_commands = 100,
        .expire = expire,
        .expire_days = days,
        .login_delay = delay,
    };
    struct pop3_session *s = pop3_session_new(&cfg, &fake_ops, f);
    say(s, NULL);
    return s;
}

/* list_in_login: the glue lists the maildrop with the login's store work,
 * off the loop, and hands the listing over; ops->list is never asked. */
static void test_listing_in_login(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);
    struct pop3_session_config cfg = {
        .peer_loopback = true, .session_id = "l1n", .bad_commands = 100, .list_in_login = true,
    };
    struct pop3_session *s = pop3_session_new(&cfg, &fake_ops, &f);
    say(s, NULL);
    say(s, "USER bob\r\n");
    say(s, "PASS secret\r\n");
    pop3_session_auth_done(s, 1, 7);
    ok(f.login_calls == 1 && f.list_calls == 0 && pop3_session_busy(s),
       "list_in_login: login() for every login, nothing listed on the loop");
    struct store_mail *list = calloc(2, sizeof(*list));
    list[0] = (struct store_mail){.id = 1, .message_id = 11, .size = 100};
    list[1] = (struct store_mail){.id = 2, .message_id = 12, .size = 20};
    snprintf(list[0].uidl, sizeof(list[0].uidl), "u1");
    snprintf(list[1].uidl, sizeof(list[1].uidl), "u2");
    pop3_session_listed(s, list, 2);
    pop3_session_login_done(s, 0);
    is_str(say(s, NULL), "+OK Logged in, 2 messages (120 octets)\r\n",
           "the listing handed over is the maildrop");
    is_str(say(s, "UIDL 2\r\n"), "+OK 2 u2\r\n", "and it answers UIDL");
    is_int(f.list_calls, 0, "ops->list was never asked");
    say(s, "QUIT\r\n");
    pop3_session_commit_done(s, 0);
    pop3_session_free(&s);

    /* A refusal with a listing: the listing goes, the next login lists anew. */
    fake_default(&f, &l);
    cfg.login_delay = 60;
    s = pop3_session_new(&cfg, &fake_ops, &f);
    say(s, NULL);
    say(s, "USER bob\r\n");
    say(s, "PASS secret\r\n");
    pop3_session_auth_done(s, 1, 7);
    pop3_session_listed(s, calloc(1, sizeof(struct store_mail)), 1);
    pop3_session_login_done(s, 42);
    ok(strncmp(say(s, NULL), "-ERR [LOGIN-DELAY]", 18) == 0 && l.n == 0,
       "refused: the listing dropped, the lock let go");
    say(s, "USER bob\r\n");
    say(s, "PASS secret\r\n");
    pop3_session_auth_done(s, 1, 7);
    pop3_session_listed(s, NULL, 0);
    pop3_session_login_done(s, 0);
    is_str(say(s, NULL), "+OK Logged in, 0 messages (0 octets)\r\n",
           "the next login takes the listing it is given, not the one dropped");
    pop3_session_free(&s);
    ok(l.n == 0, "the lock is let go");
}

static void test_retention_session(void)
{
    struct locks l = {0};
    struct fake f;
    fake_default(&f, &l);

    /* CAPA says the policy, before login and after. */
    struct pop3_session *s = configured(&f, true, 3, 60);
    const char *capa = say(s, "CAPA\r\n");
    ok(strstr(capa, "\r\nEXPIRE 3\r\n") && strstr(capa, "\r\nLOGIN-DELAY 60\r\n") &&
           !strstr(capa, "NEVER"),
       "CAPA before login: EXPIRE 3, LOGIN-DELAY 60");
    say(s, "USER bob\r\n");
    say(s, "PASS secret\r\n");
    pop3_session_auth_done(s, 1, 7);
    ok(f.login_calls == 1 && f.login_user == 7 && f.list_calls == 0 && pop3_session_busy(s),
       "a passed password: login() under the lock, before the listing, busy");
    ok(lock_held(&l, 7), "the lock is held meanwhile");
    pop3_session_login_done(s, 0);
    const char *ans = say(s, NULL);
    ok(strncmp(ans, "+OK Logged in", 13) == 0 && f.list_calls == 1 && !pop3_session_busy(s),
       "login() done: listed and in");
    capa = say(s, "CAPA\r\n");
    ok(strstr(capa, "\r\nEXPIRE 3\r\n") && strstr(capa, "\r\nLOGIN-DELAY 60\r\n"),
       "CAPA after login: the same server-wide values");
    say(s, "RETR 1\r\n");
    say(s, "TOP 2 1\r\n");
    say(s, "RETR 3\r\n");
    say(s, "DELE 3\r\n");
    say(s, "QUIT\r\n");
    ok(f.commit_calls == 1 && f.n_commit_ids == 1 && f.commit_ids[0] == 103,
       "QUIT: the DELE'd one is deleted");
    ok(f.n_ret_ids == 1 && f.ret_ids[0] == 101,
       "and RETR's (not TOP's, not the deleted one's) retrieval recorded");
    pop3_session_commit_done(s, 0);
    pop3_session_free(&s);
    ok(l.n == 0, "the lock is let go");

    /* LOGIN-DELAY: refused after the password check, with the code, unlocked. */
    fake_default(&f, &l);
    s = configured(&f, false, 0, 60);
    capa = say(s, "CAPA\r\n");
    ok(strstr(capa, "\r\nEXPIRE NEVER\r\n") && strstr(capa, "\r\nLOGIN-DELAY 60\r\n"),
       "CAPA: EXPIRE NEVER with login_delay alone");
    say(s, "USER bob\r\n");
    say(s, "PASS secret\r\n");
    pop3_session_auth_done(s, 1, 7);
    pop3_session_login_done(s, 42);
    ans = say(s, NULL);
    is_str(ans, "-ERR [LOGIN-DELAY] Wait 60 seconds between logins\r\n",
           "too soon: -ERR [LOGIN-DELAY]");
    ok(l.n == 0 && f.list_calls == 0 && !pop3_session_logged_in(s),
       "no listing, the lock let go, still in AUTHORIZATION");
    say(s, "USER bob\r\n");
    say(s, "PASS secret\r\n");
    pop3_session_auth_done(s, 1, 7);
    pop3_session_login_done(s, -EIO);
    is_str(say(s, NULL), "-ERR [SYS/TEMP] Cannot open the maildrop, try again later\r\n",
           "a store failure: -ERR [SYS/TEMP]");
    ok(l.n == 0, "and the lock let go");
    say(s, "USER bob\r\n");
    say(s, "PASS secret\r\n");
    pop3_session_auth_done(s, 1, 7);
    say(s, "RETR 1\r\n");
    pop3_session_free(&s);
    ok(l.n == 0, "a session freed while login() is under way lets its lock go");

    /* Neither set: no login(), nothing recorded, CAPA as before. */
    fake_default(&f, &l);
    s = configured(&f, false, 0, 0);
    capa = say(s, "CAPA\r\n");
    ok(strstr(capa, "\r\nEXPIRE NEVER\r\n") && strstr(capa, "\r\nLOGIN-DELAY 0\r\n"),
       "defaults: EXPIRE NEVER, LOGIN-DELAY 0");
    say(s, "USER bob\r\n");
    say(s, "PASS secret\r\n");
    pop3_session_auth_done(s, 1, 7);
    ok(f.login_calls == 0 && f.list_calls == 1 && pop3_session_logged_in(s),
       "no login(): listed at once");
    say(s, "RETR 1\r\n");
    is_str(say(s, "QUIT\r\n"), "+OK Bye\r\n", "QUIT after RETR, expire off: nothing to commit");
    is_int(f.commit_calls, 0, "no commit");
    pop3_session_free(&s);

    /* expire 0d: announced as EXPIRE 0; a RETR alone still commits at QUIT. */
    fake_default(&f, &l);
    s = configured(&f, true, 0, 0);
    ok(strstr(say(s, "CAPA\r\n"), "\r\nEXPIRE 0\r\n") != NULL, "expire = 0d: EXPIRE 0");
    say(s, "USER bob\r\n");
    say(s, "PASS secret\r\n");
    pop3_session_auth_done(s, 1, 7);
    pop3_session_login_done(s, 0);
    say(s, NULL);
    say(s, "RETR 2\r\n");
    say(s, "QUIT\r\n");
    ok(f.commit_calls == 1 && f.n_commit_ids == 0 && f.n_ret_ids == 1 && f.ret_ids[0] == 102,
       "QUIT after a RETR: one retrieval, no deletion");
    pop3_session_commit_done(s, -EIO);
    is_str(say(s, NULL), "+OK Bye, 0 messages deleted\r\n",
           "a retrieval not recorded still says goodbye: nothing was to be deleted");
    pop3_session_free(&s);
}

/* The empty line supplied where the header section lacks it (oe-ns-eoh). */
static void test_eoh_session(void)
{
    static const char fields[] = "From: a\r\nSubject: fields only\r\n";
    static const char under[] = "Subject: eoh\r\nfirst\r\n.dot\r\nthird\r\n";
    static const char empty[] = "";
    const struct body bodies[] = {
        {601, fields, sizeof(fields) - 1},
        {602, under, sizeof(under) - 1},
        {603, empty, 0},
    };
    struct locks l = {0};
    struct fake f;
    fake_init(&f, &l, bodies, 3);
    f.mails[0].eoh_missing = true, f.mails[0].eoh_at = sizeof(fields) - 1;
    f.mails[1].eoh_missing = true, f.mails[1].eoh_at = 14;
    f.mails[2].eoh_missing = true, f.mails[2].eoh_at = 0;
    for (int i = 0; i < 3; i++)
        f.mails[i].size += 2;
    struct pop3_session *s = configured(&f, false, 0, 0);
    say(s, "USER bob\r\n");
    say(s, "PASS secret\r\n");
    pop3_session_auth_done(s, 1, 7);
    say(s, NULL);
    is_str(say(s, "LIST 1\r\n"), "+OK 1 33\r\n", "LIST counts the two octets");
    is_str(say(s, "RETR 1\r\n"), "+OK 33 octets\r\nFrom: a\r\nSubject: fields only\r\n\r\n.\r\n",
           "RETR of fields only: the empty line at the end, 33 octets");
    is_str(say(s, "RETR 2\r\n"),
           "+OK 36 octets\r\nSubject: eoh\r\n\r\nfirst\r\n..dot\r\nthird\r\n.\r\n",
           "RETR of a body line under the fields: the empty line before it");
    is_str(say(s, "TOP 2 0\r\n"), "+OK Top of message follows\r\nSubject: eoh\r\n\r\n.\r\n",
           "TOP 0: the header and the supplied empty line");
    is_str(say(s, "TOP 2 2\r\n"),
           "+OK Top of message follows\r\nSubject: eoh\r\n\r\nfirst\r\n..dot\r\n.\r\n",
           "TOP 2: two body lines after it");
    is_str(say(s, "TOP 1 5\r\n"),
           "+OK Top of message follows\r\nFrom: a\r\nSubject: fields only\r\n\r\n.\r\n",
           "TOP of fields only: the header and the line");
    is_str(say(s, "RETR 3\r\n"), "+OK 2 octets\r\n\r\n.\r\n", "RETR of the empty message: CRLF");
    is_str(say(s, "STAT\r\n"), "+OK 3 71\r\n", "STAT counts them too");
    pop3_session_free(&s);
}

int main(void)
{
    build_big();
    default_bodies[0] = (struct body){501, msg1, sizeof(msg1) - 1};
    default_bodies[1] = (struct body){502, msg2, sizeof(msg2) - 1};
    default_bodies[2] = (struct body){503, msg3, msg3_len};
    ok(msg3_len == BIG_SIZE, "the big message is 200 KiB (%zu)", msg3_len);
    ok(memcmp(msg3 + 16384, ".line", 5) == 0 && memcmp(msg3 + 65536, ".line", 5) == 0 &&
           memcmp(msg3 + 49151, "\r\n.line", 7) == 0 && memcmp(msg3 + 114688, ".dot", 4) == 0,
       "the big message has dots and a CRLF at the piece boundaries");

    test_greeting();
    test_capa();
    test_plaintext_refused();
    test_user_pass();
    test_in_use();
    test_auth();
    test_stat_list_uidl();
    test_retr_top();
    test_edge_bodies();
    test_quit_commit();
    test_end_while_sending();
    test_read_failure();
    test_out_of_state();
    test_bad_commands();
    test_pipelining();
    test_trickle();
    test_output_full();
    test_short_body();
    test_sticky_failure();
    test_retention_session();
    test_listing_in_login();
    test_eoh_session();

    out_clear(&last);
    free(msg3);
    return done_testing();
}
