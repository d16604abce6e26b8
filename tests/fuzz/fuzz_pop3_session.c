/*
 * fuzz_pop3_session.c — a whole POP3 conversation (pop3d/pop3_session.h)
 * against a fake maildrop, read in random pieces, with the output drained
 * in random pieces and pumped while a message is being sent, as pop3d.c
 * does when the socket drains.
 *
 * Input: byte 0 bit 0: a certificate (STLS offered); bit 1: a loopback
 * peer; bit 2: implicit TLS (pop3s); bit 3: faults (lock busy, list and
 * read failures); bit 4: end with the idle timeout rather than a shutdown;
 * bit 5: a high bad-command limit; bit 6: [pop3] expire = 3d; bit 7:
 * [pop3] login_delay = 60. Byte 1 seeds the read boundaries and the
 * output drain sizes, byte 2 the login and commit answers and the faults.
 * The rest is what the client sends.
 *
 * The world: user 1 has eight messages (dots at line starts, no final CRLF,
 * empty, 2 KB, 70 KB so that RETR spans several pumps, a header alone, a
 * line of 1500 octets, a body line right under the fields), user 2 has
 * one; any login may be answered with either user. Three of them lack the
 * empty line that ends a header section, which RETR and TOP supply.
 *
 * Properties:
 *   - the output is CRLF lines; whenever nothing is being sent and it has
 *     all been taken, it ends at a line end and no multi-line response is
 *     open; every single-line response starts "+OK", "-ERR" or "+ ";
 *   - RETR gives back exactly the stored message, un-byte-stuffed (with a
 *     CRLF added when it lacked one, each NUL as 0x80, for Outlook, and the
 *     empty line that ends the header section supplied where the store
 *     found it missing, for Outlook Express), as many octets as "+OK N
 *     octets" and LIST said; TOP gives a prefix of that which ends at a
 *     line end and holds at least the whole header section and its empty
 *     line; a line of a multi-line response that starts with '.' is
 *     stuffed;
 *   - the body is read in order, with no gap and no overlap;
 *   - a login is asked for only with TLS or from loopback; the maildrop is
 *     listed and read only under its lock, and every lock is released by the
 *     time the session is freed;
 *   - commit() is called only for QUIT, once, with exactly the messages the
 *     DELE replies marked (less those RSET unmarked), each once, and with
 *     expire on, exactly those RETR sent and DELE did not mark, as
 *     retrieved (none with expire off);
 *   - login() (expire or login_delay on) comes between the lock and the
 *     listing, and a refused or failed one lets the lock go.
 */
#include <errno.h>
#include <inttypes.h>

#include "fuzz.h"
#include "log.h"
#include "pop3_session.h"
#include "sasl.h"
#include "store.h"

#define N_MAILS 9 /* 8 for user 1, 1 for user 2 */

struct body {
    int64_t user_id;
    struct fuzz_bytes text; /* as stored */
    struct fuzz_bytes sent; /* as RETR sends it: each NUL as 0x80, the empty line supplied */
    bool eoh;               /* the header section lacks its empty line ... */
    size_t eoh_at;          /* ... which goes in here */
    size_t body_at;         /* where the body starts in sent: TOP sends at least this */
};

static struct body bodies[N_MAILS];

static void add_line(struct fuzz_bytes *b, const char *s)
{
    fuzz_bytes_add(b, s, strlen(s));
}

static void make_bodies(void)
{
    for (int i = 0; i < N_MAILS; i++)
        bodies[i].user_id = i < 8 ? 1 : 2;
    add_line(&bodies[0].text, "From: alice@example.test\r\nSubject: dots\r\n\r\nfirst\r\n.\r\n"
                              "..two dots\r\n.leading dot\r\nlast line\r\n");
    add_line(&bodies[1].text, "Subject: short\r\n\r\n.dot line\r\nno final CRLF");
    /* bodies[2]: empty */
    add_line(&bodies[3].text, "Subject: medium\r\n\r\n");
    for (int i = 0; bodies[3].text.len < 2000; i++) {
        char line[80];
        snprintf(line, sizeof(line), "%sline %d of the medium message\r\n", i % 5 ? "" : ".", i);
        add_line(&bodies[3].text, line);
    }
    add_line(&bodies[4].text, "Subject: large\r\nX-Pad: 1\r\n\r\n");
    for (int i = 0; bodies[4].text.len < 70000; i++) {
        char line[160];
        int pad = i % 97;
        snprintf(line, sizeof(line), "%s%d %.*s\r\n", i % 7 ? "" : ".", i, pad,
                 "................................................................................"
                 "..................");
        add_line(&bodies[4].text, line);
    }
    add_line(&bodies[5].text, "Subject: a header alone\r\n");
    add_line(&bodies[6].text, "Subject: long line\r\n\r\n.");
    for (int i = 0; i < 1500; i++)
        add_line(&bodies[6].text, i % 10 ? "x" : ".");
    add_line(&bodies[6].text, "\r\n.\r\n");
    /* Fields, then a body line with no empty line between (and a dot, a
     * line TOP must count as the body's). */
    add_line(&bodies[7].text, "From: carol@example.test\r\n\tfolded\r\nSubject: eoh\r\n");
    size_t under = bodies[7].text.len;
    add_line(&bodies[7].text, "right under the fields\r\n.dot\r\nthird\r\n");
    add_line(&bodies[8].text, "Subject: for bob\r\n\r\nhello");
    fuzz_bytes_add(&bodies[8].text, "\0 bob\r\n\0\r\n", 10); /* NULs, which Outlook chokes on */
    /* What the store records at delivery (common/header_eoh.h), written
     * out here rather than asked of the code under test. */
    bodies[2].eoh = true, bodies[2].eoh_at = 0;
    bodies[5].eoh = true, bodies[5].eoh_at = bodies[5].text.len;
    bodies[7].eoh = true, bodies[7].eoh_at = under;
    for (int i = 0; i < N_MAILS; i++) {
        struct body *b = &bodies[i];
        size_t head = b->eoh ? b->eoh_at : b->text.len;
        fuzz_bytes_add(&b->sent, b->text.p, head);
        if (b->eoh)
            fuzz_bytes_add(&b->sent, "\r\n", 2);
        fuzz_bytes_add(&b->sent, b->text.p + head, b->text.len - head);
        for (size_t k = 0; k < b->sent.len; k++)
            if (b->sent.p[k] == '\0')
                b->sent.p[k] = 0x80;
        const uint8_t *blank = memmem(b->sent.p, b->sent.len, "\r\n\r\n", 4);
        b->body_at = b->eoh ? b->eoh_at + 2 : blank ? (size_t)(blank - b->sent.p) + 4 : 0;
        if (b->body_at == 0)
            abort(); /* every message here has its header section ended, or supplied */
    }
    for (int i = 0; i < N_MAILS; i++)
        for (int j = 0; j < i; j++)
            if (bodies[i].sent.len == bodies[j].sent.len)
                abort(); /* the checker tells them apart by size */
}

enum out_state { OUT_NORMAL, OUT_MULTI, OUT_BODY, OUT_TOP };

struct world {
    struct pop3_session *s;
    struct pop3_session_config cfg;
    struct fuzz_rng res;
    bool faults, tls;

    int64_t locked; /* the user whose lock is held, 0 none */
    int64_t listed; /* the user whose maildrop was listed (logged in) */
    bool want_auth, want_commit, want_login;
    bool login_asked; /* login() came for the lock held now */
    bool auth_nobody; /* the login asked for is of nobody: it must fail */
    int commits;
    int64_t commit_ids[N_MAILS];
    size_t n_commit;
    int64_t ret_ids[N_MAILS];
    size_t n_ret;
    bool retrieved[N_MAILS]; /* "+OK N octets" went out for it */
    bool check_commit; /* compare commit_ids with the marks at the next drain */

    /* read(): the next offset expected */
    int64_t read_msg, read_next;

    /* the output checker */
    struct fuzz_bytes line;
    enum out_state st;
    const struct body *sending; /* OUT_BODY / OUT_TOP: which message */
    int64_t body_size;
    struct fuzz_bytes got;
    bool marked[N_MAILS];
    size_t n_listed;
};

static int mail_index(int64_t user_id, size_t k)
{
    for (int i = 0; i < N_MAILS; i++)
        if (bodies[i].user_id == user_id && k-- == 0)
            return i;
    return -1;
}

/* --- the fake ops --------------------------------------------------------- */

static bool fault(struct world *w, uint32_t one_in)
{
    return w->faults && fuzz_rng_below(&w->res, one_in) == 0;
}

static void w_auth(void *ctx, const char *user, const char *password)
{
    struct world *w = ctx;
    FUZZ_CHECK(w->tls || w->cfg.peer_loopback, "a login over plaintext from a remote peer");
    FUZZ_CHECK(!w->want_auth && !w->want_commit, "auth() while an answer is awaited");
    FUZZ_CHECK(w->listed == 0, "a login after a login");
    size_t un = strnlen(user, SASL_FIELD_MAX + 1), pn = strnlen(password, SASL_FIELD_MAX + 1);
    /* "" is nobody: a proxy login, which must fail like any other. */
    FUZZ_CHECK(un <= SASL_FIELD_MAX && pn > 0 && pn <= SASL_FIELD_MAX,
               "user of %zu octets, password of %zu", un, pn);
    FUZZ_CHECK(strpbrk(user, "\r\n") == NULL, "a user name with CR or LF");
    w->auth_nobody = un == 0;
    w->want_auth = true;
}

static int w_lock(void *ctx, int64_t user_id)
{
    struct world *w = ctx;
    FUZZ_CHECK(user_id == 1 || user_id == 2, "lock(%" PRId64 ")", user_id);
    FUZZ_CHECK(w->locked == 0, "a second lock");
    if (fault(w, 8))
        return -EBUSY;
    w->locked = user_id;
    w->login_asked = false;
    return 0;
}

static void w_unlock(void *ctx, int64_t user_id)
{
    struct world *w = ctx;
    FUZZ_CHECK(w->locked == user_id, "unlock(%" PRId64 ") of a lock not held", user_id);
    w->locked = 0;
}

static int w_list(void *ctx, int64_t user_id, struct store_mail **list_r, size_t *n_r)
{
    struct world *w = ctx;
    FUZZ_CHECK(w->locked == user_id, "list() without the lock");
    FUZZ_CHECK(w->login_asked == (w->cfg.expire || w->cfg.login_delay > 0),
               "list() %s login()", w->login_asked ? "after" : "without");
    if (fault(w, 16))
        return -EIO;
    struct store_mail *m = calloc(N_MAILS, sizeof(*m));
    size_t n = 0;
    for (int i = 0; i < N_MAILS; i++) {
        if (bodies[i].user_id != user_id)
            continue;
        m[n].id = 100 + i;
        m[n].message_id = 1000 + i;
        m[n].size = (int64_t)bodies[i].sent.len;
        m[n].eoh_missing = bodies[i].eoh;
        m[n].eoh_at = (int64_t)bodies[i].eoh_at;
        m[n].arrived = 1700000000 + i;
        snprintf(m[n].uidl, sizeof(m[n].uidl), "kotak-%d", 500 + i);
        n++;
    }
    *list_r = m;
    *n_r = n;
    w->listed = user_id;
    memset(w->marked, 0, sizeof(w->marked));
    memset(w->retrieved, 0, sizeof(w->retrieved));
    w->n_listed = n;
    return 0;
}

static int w_read(void *ctx, int64_t message_id, int64_t offset, void *p, size_t n, size_t *got_r)
{
    struct world *w = ctx;
    int i = (int)(message_id - 1000);
    FUZZ_CHECK(i >= 0 && i < N_MAILS, "read() of unknown message %" PRId64, message_id);
    FUZZ_CHECK(w->locked == bodies[i].user_id && w->listed == w->locked,
               "read() of a message outside the locked maildrop");
    FUZZ_CHECK(n > 0, "read() of nothing");
    FUZZ_CHECK(offset == 0 || (message_id == w->read_msg && offset == w->read_next),
               "read() at %" PRId64 ", the last read ended at %" PRId64, offset, w->read_next);
    FUZZ_CHECK((size_t)offset <= bodies[i].text.len, "read() past the end");
    if (fault(w, 64))
        return -EIO;
    size_t left = bodies[i].text.len - (size_t)offset;
    size_t got = left < n ? left : n;
    if (got)
        memcpy(p, bodies[i].text.p + offset, got);
    *got_r = got;
    w->read_msg = message_id;
    w->read_next = offset + (int64_t)got;
    return 0;
}

static void w_commit(void *ctx, int64_t user_id, const int64_t *ids, size_t n, const int64_t *ret,
                     size_t n_ret)
{
    struct world *w = ctx;
    FUZZ_CHECK(user_id == w->listed && w->locked == user_id, "commit() for a maildrop not held");
    FUZZ_CHECK(w->commits++ == 0, "a second commit()");
    FUZZ_CHECK(n + n_ret >= 1 && n <= N_MAILS && n_ret <= N_MAILS, "commit() of %zu + %zu entries",
               n, n_ret);
    FUZZ_CHECK(w->cfg.expire || n_ret == 0, "retrievals recorded with expire off");
    for (size_t k = 0; k < n_ret; k++) {
        int i = (int)(ret[k] - 100);
        FUZZ_CHECK(i >= 0 && i < N_MAILS && bodies[i].user_id == user_id,
                   "commit() records entry %" PRId64 ", not the user's", ret[k]);
        for (size_t j = 0; j < n; j++)
            FUZZ_CHECK(ids[j] != ret[k], "an entry both deleted and recorded retrieved");
        w->ret_ids[k] = ret[k];
    }
    w->n_ret = n_ret;
    for (size_t k = 0; k < n; k++) {
        int i = (int)(ids[k] - 100);
        FUZZ_CHECK(i >= 0 && i < N_MAILS && bodies[i].user_id == user_id,
                   "commit() of entry %" PRId64 ", not the user's", ids[k]);
        for (size_t j = 0; j < k; j++)
            FUZZ_CHECK(ids[j] != ids[k], "commit() of one entry twice");
        w->commit_ids[k] = ids[k];
    }
    w->n_commit = n;
    w->check_commit = true;
    w->want_commit = true;
}

static void w_login(void *ctx, int64_t user_id, const char *user)
{
    struct world *w = ctx;
    FUZZ_CHECK(w->cfg.expire || w->cfg.login_delay > 0, "login() with neither expire nor delay");
    FUZZ_CHECK(w->locked == user_id && w->listed == 0 && !w->login_asked,
               "login() outside the lock, or after the listing, or twice");
    FUZZ_CHECK(user != NULL, "login() without a name for the log");
    FUZZ_CHECK(!w->want_auth && !w->want_commit && !w->want_login,
               "login() while an answer is awaited");
    w->login_asked = true;
    w->want_login = true;
}

/* The live view is watched throughout: its paths run on every input. */
static bool w_watched(void *ctx)
{
    (void)ctx;
    return true;
}

static void w_watch(void *ctx, enum watch_kind kind, bool tls, const char *text, size_t len)
{
    (void)ctx, (void)tls;
    FUZZ_CHECK(kind <= WATCH_MAIL, "event kind %d", (int)kind);
    FUZZ_CHECK(len == 0 || text != NULL, "an event without its text");
    FUZZ_CHECK(kind != WATCH_CLIENT || len <= WATCH_TEXT_MAX, "a client line of %zu octets", len);
}

static const struct pop3_ops w_ops = {
    .auth = w_auth,
    .lock = w_lock,
    .unlock = w_unlock,
    .list = w_list,
    .read = w_read,
    .commit = w_commit,
    .login = w_login,
    .watched = w_watched,
    .watch = w_watch,
};

/* --- the output checker --------------------------------------------------- */

static bool line_is(const struct fuzz_bytes *l, const char *s)
{
    return l->len == strlen(s) && memcmp(l->p, s, l->len) == 0;
}

static bool line_starts(const struct fuzz_bytes *l, const char *s)
{
    return l->len >= strlen(s) && memcmp(l->p, s, strlen(s)) == 0;
}

/* One response line, without its CRLF. */
static void take_line(struct world *w, struct fuzz_bytes *l)
{
    if (w->st == OUT_NORMAL) {
        char text[600];
        snprintf(text, sizeof(text), "%.*s", (int)(l->len < 550 ? l->len : 550),
                 (const char *)l->p);
        FUZZ_CHECK(l->len + 2 <= 512, "a response line of %zu octets", l->len + 2);
        FUZZ_CHECK(line_is(l, "+OK") || line_starts(l, "+OK ") || line_starts(l, "-ERR ") ||
                       line_starts(l, "+ "),
                   "not a POP3 response: %s", text);
        long long size;
        int num, end = 0;
        if (line_is(l, "+OK Capability list follows") || line_is(l, "+OK Mechanisms follow") ||
            line_is(l, "+OK Scan listing follows") || line_is(l, "+OK Unique-ID listing follows")) {
            w->st = OUT_MULTI;
        } else if (sscanf(text, "+OK %lld octets%n", &size, &end) == 1 && (size_t)end == l->len) {
            w->st = OUT_BODY;
            w->sending = NULL;
            for (int i = 0; i < N_MAILS; i++)
                if (bodies[i].user_id == w->listed && (long long)bodies[i].sent.len == size)
                    w->sending = &bodies[i];
            FUZZ_CHECK(w->sending != NULL, "RETR of %lld octets: no such message", size);
            for (size_t m = 0; m < w->n_listed; m++)
                if (&bodies[mail_index(w->listed, m)] == w->sending)
                    w->retrieved[m] = true;
            w->got.len = 0;
        } else if (line_is(l, "+OK Top of message follows")) {
            w->st = OUT_TOP;
            w->got.len = 0;
        } else if (sscanf(text, "+OK Message %d marked for deletion%n", &num, &end) == 1 &&
                   (size_t)end == l->len) {
            FUZZ_CHECK(num >= 1 && (size_t)num <= w->n_listed, "DELE of message %d", num);
            w->marked[num - 1] = true;
        } else if (sscanf(text, "+OK %d messages%n", &num, &end) == 1 && (size_t)end == l->len) {
            FUZZ_CHECK((size_t)num == w->n_listed, "RSET says %d messages, not %zu", num,
                       w->n_listed);
            memset(w->marked, 0, sizeof(w->marked));
        }
        return;
    }
    if (line_is(l, ".")) {
        if (w->st == OUT_BODY || w->st == OUT_TOP) {
            if (w->st == OUT_BODY) {
                /* What RETR must send: the message, with a CRLF if it lacked one. */
                const struct fuzz_bytes *b = &w->sending->sent;
                bool crlf = b->len == 0 ||
                            (b->len >= 2 && b->p[b->len - 2] == '\r' && b->p[b->len - 1] == '\n');
                FUZZ_CHECK(w->got.len == b->len + (crlf ? 0 : 2) &&
                               (b->len == 0 || memcmp(w->got.p, b->p, b->len) == 0),
                           "RETR sent %zu octets that are not the %zu-octet message", w->got.len,
                           b->len);
            } else {
                bool found = false;
                for (int i = 0; i < N_MAILS && !found; i++) {
                    const struct fuzz_bytes *b = &bodies[i].sent;
                    if (bodies[i].user_id != w->listed)
                        continue;
                    if (w->got.len < bodies[i].body_at)
                        continue; /* TOP sends the whole header section and its empty line */
                    if (w->got.len <= b->len &&
                        (w->got.len == 0 || memcmp(w->got.p, b->p, w->got.len) == 0))
                        found = w->got.len == 0 || w->got.len == b->len ||
                                (w->got.len >= 2 && w->got.p[w->got.len - 1] == '\n');
                    else if (w->got.len == b->len + 2 && memcmp(w->got.p, b->p, b->len) == 0)
                        found = true; /* the whole message, a CRLF added */
                }
                FUZZ_CHECK(found, "TOP sent %zu octets that are no message's first lines",
                           w->got.len);
            }
        }
        w->st = OUT_NORMAL;
        return;
    }
    FUZZ_CHECK(l->len == 0 || l->p[0] != '.' || (l->len >= 2 && l->p[1] == '.'),
               "a line of a multi-line response starts with an unstuffed dot: %.*s",
               (int)(l->len < 550 ? l->len : 550), (const char *)l->p);
    if (w->st == OUT_MULTI)
        return;
    size_t skip = l->len > 0 && l->p[0] == '.' ? 1 : 0;
    fuzz_bytes_add(&w->got, l->p + skip, l->len - skip);
    fuzz_bytes_add(&w->got, "\r\n", 2);
}

/* The glue sent p[0..n) of the output. */
static void take(struct world *w, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const uint8_t *lf = memchr(p + i, '\n', n - i);
        size_t end = lf ? (size_t)(lf - p) : n;
        fuzz_bytes_add(&w->line, p + i, end - i);
        if (lf == NULL)
            break;
        /* A line ends in CRLF and holds no other CR. */
        FUZZ_CHECK(w->line.len > 0 && w->line.p[w->line.len - 1] == '\r',
                   "a bare LF in the output");
        w->line.len--;
        FUZZ_CHECK(memchr(w->line.p, '\r', w->line.len) == NULL, "a bare CR in the output");
        take_line(w, &w->line);
        w->line.len = 0;
        i = end + 1;
    }
}

/* Sends part (or all) of the output, as a socket write would. */
static void drain(struct world *w, struct fuzz_rng *rd, bool all)
{
    struct buf *out = pop3_session_output(w->s);
    /* A socket takes a good part of what is queued, rarely a few bytes. */
    size_t k = out->len;
    if (!all && out->len > 0)
        k = fuzz_rng_below(rd, 8) == 0 ? 1 + fuzz_rng_below(rd, 16)
                                       : 1 + fuzz_rng_below(rd, (uint32_t)out->len);
    if (k > out->len)
        k = out->len;
    take(w, out->data, k);
    buf_consume(out, k);
    if (w->check_commit) {
        /* The QUIT has been answered up to here: compare with the marks. */
        bool in_commit[N_MAILS] = {false};
        for (size_t k2 = 0; k2 < w->n_commit; k2++) {
            int i = (int)(w->commit_ids[k2] - 100);
            for (size_t m = 0; m < w->n_listed; m++)
                if (mail_index(w->listed, m) == i)
                    in_commit[m] = true;
        }
        for (size_t m = 0; m < w->n_listed; m++)
            FUZZ_CHECK(in_commit[m] == w->marked[m], "message %zu is %s in commit() but %s", m + 1,
                       in_commit[m] ? "" : "not", w->marked[m] ? "marked" : "not marked");
        bool in_ret[N_MAILS] = {false};
        for (size_t k2 = 0; k2 < w->n_ret; k2++)
            for (size_t m = 0; m < w->n_listed; m++)
                if (mail_index(w->listed, m) == (int)(w->ret_ids[k2] - 100))
                    in_ret[m] = true;
        for (size_t m = 0; m < w->n_listed; m++)
            FUZZ_CHECK(in_ret[m] == (w->cfg.expire && w->retrieved[m] && !w->marked[m]),
                       "message %zu is %s recorded retrieved", m + 1, in_ret[m] ? "" : "not");
        w->check_commit = false;
    }
}

/* Nothing is being sent and all output was taken: it must end at a line end. */
static void at_rest(struct world *w)
{
    FUZZ_CHECK(w->line.len == 0, "the output stops inside a line");
    FUZZ_CHECK(w->st == OUT_NORMAL, "a multi-line response left open");
}

static void answer(struct world *w)
{
    int wants = w->want_auth + w->want_commit + w->want_login;
    FUZZ_CHECK(wants == 1, "busy, but waiting for %d answers", wants);
    if (w->want_login) {
        static const int rcs[] = {0, 0, 42, -EIO};
        int rc = rcs[fuzz_rng_below(&w->res, 4)];
        w->want_login = false;
        pop3_session_login_done(w->s, rc);
        FUZZ_CHECK(rc == 0 || w->locked == 0, "a refused login kept the lock");
        if (w->locked == 0)
            w->listed = 0;
    } else if (w->want_auth) {
        static const int rcs[] = {1, 1, 0, -EAGAIN};
        int rc = rcs[fuzz_rng_below(&w->res, 4)];
        if (w->auth_nobody && rc == 1)
            rc = 0;
        w->want_auth = false;
        pop3_session_auth_done(w->s, rc, 1 + fuzz_rng_below(&w->res, 2));
        if (w->locked == 0)
            w->listed = 0;
    } else {
        static const int rcs[] = {0, 0, 0, -EIO};
        w->want_commit = false;
        pop3_session_commit_done(w->s, rcs[fuzz_rng_below(&w->res, 4)]);
        FUZZ_CHECK(pop3_session_action(w->s) == POP3_ACT_CLOSE, "no CLOSE after QUIT's update");
    }
    FUZZ_CHECK(!pop3_session_busy(w->s), "still busy after the answer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        log_set_level(LOG_ERROR);
        make_bodies();
        ready = true;
    }
    if (size < 3)
        return 0;
    struct world w = {0};
    w.cfg.tls_available = data[0] & 1;
    w.cfg.peer_loopback = data[0] & 2;
    snprintf(w.cfg.session_id, sizeof(w.cfg.session_id), "beef");
    w.cfg.bad_commands = data[0] & 0x20 ? 1000 : 0;
    w.cfg.expire = data[0] & 0x40;
    w.cfg.expire_days = 3;
    w.cfg.login_delay = data[0] & 0x80 ? 60 : 0;
    w.faults = data[0] & 8;
    bool end_with_timeout = data[0] & 0x10;
    struct fuzz_rng rd;
    fuzz_rng_init(&rd, data[1]);
    fuzz_rng_init(&w.res, data[2] + 0x100u);
    const uint8_t *in = data + 3;
    size_t n = size - 3;

    w.s = pop3_session_new(&w.cfg, &w_ops, &w);
    if (data[0] & 4) {
        pop3_session_tls_started(w.s, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "mail.example.test");
        w.tls = true;
    }
    pop3_session_greet(w.s);
    drain(&w, &rd, true);

    uint8_t *pend = malloc(n ? n : 1);
    size_t plen = 0, fed = 0;
    bool closed = false, progress = false;
    for (;;) {
        if (pop3_session_busy(w.s)) {
            answer(&w);
            drain(&w, &rd, true);
            if (pop3_session_action(w.s) == POP3_ACT_CLOSE) {
                closed = true;
                break;
            }
        } else if (pop3_session_sending(w.s)) {
            drain(&w, &rd, false);
            pop3_session_pump(w.s);
            if (pop3_session_action(w.s) == POP3_ACT_CLOSE) {
                drain(&w, &rd, true);
                closed = true;
                break;
            }
            continue;
        } else {
            FUZZ_CHECK(!w.want_auth && !w.want_commit && !w.want_login,
                       "an answer is awaited, but not busy");
            drain(&w, &rd, true);
            at_rest(&w);
            if (fed < n) {
                size_t k = fuzz_piece(&rd, n - fed);
                memcpy(pend + plen, in + fed, k);
                plen += k;
                fed += k;
            } else if (plen == 0 || !progress) {
                break;
            }
        }
        size_t used = (size_t)-1;
        int commits_before = w.commits;
        pop3_session_feed(w.s, (const char *)pend, plen, &used);
        FUZZ_CHECK(used <= plen, "consumed %zu of %zu", used, plen);
        progress = used > 0;
        if (w.commits != commits_before) {
            /* Only QUIT enters UPDATE, and it is the last line read. */
            FUZZ_CHECK(fuzz_ends_with_verb_line(pend, used, "QUIT"),
                       "commit() for a line that is not QUIT");
        }
        enum pop3_action a = pop3_session_action(w.s);
        if (a == POP3_ACT_STLS) {
            FUZZ_CHECK(w.cfg.tls_available && !w.tls, "STLS acted on where it is not offered");
            FUZZ_CHECK(fuzz_ends_with_verb_line(pend, used, "STLS"),
                       "STLS consumed input behind its line");
        }
        memmove(pend, pend + used, plen - used);
        plen -= used;
        if (a == POP3_ACT_STLS) {
            drain(&w, &rd, true);
            plen = 0; /* plaintext behind STLS is thrown away */
            pop3_session_tls_started(w.s, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "mail.example.test");
            w.tls = true;
            progress = true;
        } else if (a == POP3_ACT_CLOSE) {
            drain(&w, &rd, true);
            closed = true;
            break;
        }
    }
    if (!closed) {
        if (pop3_session_busy(w.s))
            answer(&w);
        if (end_with_timeout)
            pop3_session_timeout(w.s);
        else
            pop3_session_shutdown(w.s);
        FUZZ_CHECK(pop3_session_action(w.s) == POP3_ACT_CLOSE, "no CLOSE on timeout or shutdown");
        drain(&w, &rd, true);
    }
    pop3_session_free(&w.s);
    FUZZ_CHECK(w.s == NULL, "pop3_session_free did not clear the pointer");
    FUZZ_CHECK(w.locked == 0, "the maildrop lock of user %" PRId64 " was not released", w.locked);
    free(pend);
    fuzz_bytes_free(&w.line);
    fuzz_bytes_free(&w.got);
    return 0;
}
