/*
 * test_quota.c — quotas: whether a message fits (store_quota_fit, pure),
 * the store's side (the quota that applies, usage kept by the triggers on
 * delivery and deletion, the warning delivered once and re-armed), and the
 * SMTP session's answers at RCPT and at the final dot against a fake store
 * whose users are full, nearly full or roomy.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "smtp_session.h"
#include "store.h"
#include "tap.h"
#include "util.h"

static struct addr A(const char *s)
{
    struct addr a;
    if (addr_parse(s, strlen(s), 0, &a) < 0) {
        fprintf(stderr, "bad test address %s\n", s);
        abort();
    }
    return a;
}

static int64_t uid(struct store *s, const char *addr)
{
    struct store_user u;
    struct addr a = A(addr);
    return store_user_lookup(s, &a, &u) == 1 ? u.id : -1;
}

/* --- store_quota_fit ------------------------------------------------------ */

static void test_fit(void)
{
    static const struct {
        uint64_t used, quota, size;
        enum store_quota_fit want;
        const char *why;
    } cases[] = {
        {0, 0, 1ull << 40, STORE_QUOTA_FITS, "no quota: anything fits"},
        {5000, 0, 1, STORE_QUOTA_FITS, "no quota, much used: fits"},
        {0, 1000, 0, STORE_QUOTA_FITS, "empty, no size known"},
        {999, 1000, 0, STORE_QUOTA_FITS, "one octet under: still takes mail"},
        {1000, 1000, 0, STORE_QUOTA_FULL, "at the quota: full"},
        {1500, 1000, 0, STORE_QUOTA_FULL, "over the quota: full"},
        {0, 1000, 1000, STORE_QUOTA_FITS, "a message of the whole quota fits an empty maildrop"},
        {0, 1000, 1001, STORE_QUOTA_NEVER, "one octet more than the quota: never"},
        {1500, 1000, 1001, STORE_QUOTA_NEVER, "never wins over full"},
        {900, 1000, 200, STORE_QUOTA_FITS, "over by 100, a tenth: the grace takes it"},
        {900, 1000, 201, STORE_QUOTA_FULL, "over by 101, past the grace: not now"},
        {UINT64_MAX - 1, UINT64_MAX, UINT64_MAX, STORE_QUOTA_FULL, "no overflow at the top"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        is_int(store_quota_fit(cases[i].used, cases[i].quota, cases[i].size), cases[i].want,
               "fit: %s", cases[i].why);
}

/* --- the store ------------------------------------------------------------- */

/* Delivers a message of size octets to uid; returns its maildrop entry's id. */
static int64_t deliver(struct store *s, int64_t user, size_t size)
{
    struct store_msg *m;
    char *body = xmalloc(size);
    memset(body, 'x', size);
    memcpy(body, "\r\n", 2); /* an empty header section, ended: no octets supplied on RETR */
    int64_t mid = 0;
    if (store_msg_begin(s, 1700000000, (int64_t)size, &m) < 0 ||
        store_msg_append(m, body, size) < 0 || store_msg_add_rcpt(m, user) < 0 ||
        store_msg_commit(&m, &mid) < 0)
        mid = -1;
    free(body);
    struct store_mail *list;
    size_t n;
    int64_t id = -1;
    if (store_mbox_list(s, user, &list, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (list[i].message_id == mid)
                id = list[i].id;
        free(list);
    }
    return id;
}

static int list_cb_user(void *ctx, const struct store_user *u)
{
    if (strcmp(u->address, "alice@example.test") == 0)
        *(int64_t *)ctx = u->quota;
    return 0;
}

static int list_cb_domain(void *ctx, const struct store_domain *d)
{
    if (strcmp(d->name, "example.test") == 0)
        *(int64_t *)ctx = d->quota;
    return 0;
}

static void test_store(const char *path)
{
    char err[256];
    struct store *s;
    if (store_open(path, STORE_CREATE, &s, err, sizeof(err)) < 0) {
        ok(0, "open %s: %s", path, err);
        return;
    }
    const char *m = path[0] == ':' ? "memory" : "file";
    ok(store_domain_add_quota(s, "example.test", 10000) == 0, "%s: domain added with a quota", m);
    struct addr alice = A("alice@example.test"), bob = A("bob@example.test");
    ok(store_user_add_quota(s, &alice, "$y$x", 2000) == 0, "%s: alice added with 2000", m);
    ok(store_user_add(s, &bob, "$y$x") == 0, "%s: bob added without one", m);
    int64_t a = uid(s, "alice@example.test"), b = uid(s, "bob@example.test");

    struct store_quota q;
    is_int(store_quota_get(s, a, &q), 1, "%s: alice's quota read", m);
    is_int(q.quota, 2000, "%s: alice's own quota applies", m);
    is_int(q.used, 0, "%s: nothing used yet", m);
    is_str(q.address, "alice@example.test", "%s: with her address", m);
    store_quota_get(s, b, &q);
    is_int(q.quota, 10000, "%s: bob gets the domain's default", m);
    is_int(store_quota_get(s, 9999, &q), 0, "%s: no such user: 0", m);

    int64_t quota = -1;
    store_user_list(s, NULL, list_cb_user, &quota);
    is_int(quota, 2000, "%s: user list carries the quota", m);
    store_domain_list(s, list_cb_domain, &quota);
    is_int(quota, 10000, "%s: domain list carries the default", m);

    /* Usage follows delivery and deletion (the schema's triggers). */
    int64_t e1 = deliver(s, a, 700), e2 = deliver(s, a, 600);
    ok(e1 > 0 && e2 > 0, "%s: two messages delivered", m);
    store_quota_get(s, a, &q);
    is_int(q.used, 1300, "%s: used counts both", m);
    store_quota_get(s, b, &q);
    is_int(q.used, 0, "%s: bob's usage untouched", m);
    ok(store_mbox_delete(s, a, &e1, 1) == 0, "%s: one deleted", m);
    store_quota_get(s, a, &q);
    is_int(q.used, 600, "%s: used drops by its size after deletion", m);

    /* Setting and clearing. */
    ok(store_user_set_quota(s, &alice, 0) == 0, "%s: alice's own quota cleared", m);
    store_quota_get(s, a, &q);
    is_int(q.quota, 10000, "%s: then the domain's applies", m);
    ok(store_domain_set_quota(s, "example.test", 0) == 0, "%s: the domain's cleared", m);
    store_quota_get(s, a, &q);
    is_int(q.quota, 0, "%s: then none", m);
    is_int(store_domain_set_quota(s, "nowhere.test", 5), -ENOENT, "%s: no such domain", m);
    struct addr nobody = A("nobody@example.test");
    is_int(store_user_set_quota(s, &nobody, 5), -ENOENT, "%s: no such user", m);
    ok(store_user_set_quota(s, &alice, 700) == 0, "%s: alice set to 700: 600 is 85%%", m);

    /* The warning: once, then re-armed below 80%. */
    static const char warn[] = "From: postmaster@example.test\r\nSubject: full\r\n\r\nfull\r\n";
    is_int(store_quota_warn(s, a, warn, sizeof(warn) - 1, 1700000001), 1,
           "%s: the warning is stored", m);
    store_quota_get(s, a, &q);
    ok(q.warned, "%s: and marked sent", m);
    is_int(q.used, 600 + sizeof(warn) - 1, "%s: it counts in the usage", m);
    is_int(store_quota_warn(s, a, warn, sizeof(warn) - 1, 1700000002), 0,
           "%s: a second is not stored", m);
    struct store_mail *list;
    size_t n = 0;
    store_mbox_list(s, a, &list, &n);
    is_int(n, 2, "%s: the maildrop holds one warning beside the message", m);
    free(list);
    is_int(store_quota_rearm(s, a), 0, "%s: over 80%%: not re-armed", m);
    ok(store_user_set_quota(s, &alice, 100000) == 0, "%s: alice at 100000: under 80%%", m);
    is_int(store_quota_rearm(s, a), 1, "%s: under 80%%: re-armed", m);
    store_quota_get(s, a, &q);
    ok(!q.warned, "%s: the mark is cleared", m);
    is_int(store_quota_warn(s, a, warn, sizeof(warn) - 1, 1700000003), 1,
           "%s: a later fill warns again", m);
    is_int(store_quota_rearm(s, b), 0, "%s: bob never warned: nothing to re-arm", m);
    store_close(&s);
}

/* --- the SMTP session ------------------------------------------------------ */

/*
 * example.test: full@ (id 1) at its quota, room@ (id 2) with room, tiny@
 * (id 3) with a quota of 100 octets and nothing used, list@ an alias of
 * full and room, fulls@ of full and tiny; quota_rc makes the look-up fail.
 */
static int quota_rc = 1;

static int q_resolve(void *ctx, const struct addr *rcpt, struct store_rcpts *r)
{
    (void)ctx;
    static const struct {
        const char *local;
        int64_t ids[2];
    } book[] = {{"full", {1, 0}}, {"room", {2, 0}}, {"tiny", {3, 0}},
                {"list", {1, 2}}, {"fulls", {1, 3}}};
    if (strcmp(rcpt->domain, "example.test") != 0)
        return -KOTAK_ENODOMAIN;
    for (size_t i = 0; i < sizeof(book) / sizeof(book[0]); i++) {
        if (strcmp(rcpt->local, book[i].local) != 0)
            continue;
        for (size_t k = 0; k < 2 && book[i].ids[k] != 0; k++) {
            bool there = false;
            for (size_t j = 0; j < r->n; j++)
                there |= r->user_ids[j] == book[i].ids[k];
            if (there)
                continue;
            r->user_ids = xrealloc(r->user_ids, (r->n + 1) * sizeof(int64_t));
            r->user_ids[r->n++] = book[i].ids[k];
        }
        return 1;
    }
    return 0;
}

static void q_rcpts_free(void *ctx, struct store_rcpts *r)
{
    (void)ctx;
    store_rcpts_free(r);
}

static int q_quota(void *ctx, int64_t user_id, struct store_quota *q_r)
{
    (void)ctx;
    memset(q_r, 0, sizeof(*q_r));
    if (quota_rc != 1)
        return quota_rc;
    switch (user_id) {
    case 1: q_r->used = 5000, q_r->quota = 5000; break;
    case 2: q_r->used = 1000, q_r->quota = 5000; break;
    case 3: q_r->used = 0, q_r->quota = 100; break;
    default: return 0;
    }
    return 1;
}

static int delivers;

static int q_spool_begin(void *ctx)
{
    (void)ctx;
    return 0;
}

static int q_spool_write(void *ctx, const void *p, size_t n)
{
    (void)ctx, (void)p, (void)n;
    return 0;
}

static void q_spool_abort(void *ctx)
{
    (void)ctx;
}

static void q_deliver(void *ctx, const struct smtp_tx *tx)
{
    (void)ctx, (void)tx;
    delivers++;
}

static void q_auth(void *ctx, const char *u, const char *p)
{
    (void)ctx, (void)u, (void)p;
}

static time_t q_now(void *ctx)
{
    (void)ctx;
    return 1700000000;
}

static const struct smtp_ops q_ops = {
    .resolve = q_resolve,
    .rcpts_free = q_rcpts_free,
    .quota = q_quota,
    .spool_begin = q_spool_begin,
    .spool_write = q_spool_write,
    .spool_abort = q_spool_abort,
    .deliver = q_deliver,
    .auth = q_auth,
    .now = q_now,
};

/* Feeds line to the session; returns its replies (a static copy, reset each time). */
static const char *say(struct smtp_session *s, const char *line)
{
    static char out[4096];
    size_t used = 0;
    smtp_session_feed(s, line, strlen(line), &used);
    struct buf *b = smtp_session_output(s);
    size_t n = b->len < sizeof(out) - 1 ? b->len : sizeof(out) - 1;
    memcpy(out, b->data, n);
    out[n] = '\0';
    buf_reset(b);
    return out;
}

static bool starts(const char *got, const char *want)
{
    bool yes = strncmp(got, want, strlen(want)) == 0;
    if (!yes)
        printf("#   got %s#   want %s...\n", got, want);
    return yes;
}

static struct smtp_session *session(void)
{
    struct smtp_session_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.role = SMTP_ROLE_MX;
    cfg.hostname = "mx.example.test";
    snprintf(cfg.peer_ip, sizeof(cfg.peer_ip), "192.0.2.1");
    snprintf(cfg.session_id, sizeof(cfg.session_id), "Q1");
    cfg.message_size = 100000;
    cfg.recipients = 100;
    cfg.line_max = 512;
    cfg.text_max = 1000;
    struct smtp_session *s = smtp_session_new(&cfg, &q_ops, NULL);
    smtp_session_greet(s);
    buf_reset(smtp_session_output(s));
    say(s, "EHLO client.test\r\n");
    return s;
}

/* A message body of n octets of text in lines, then the final dot. */
static char *body(size_t n)
{
    char *p = xmalloc(n + 64);
    size_t o = (size_t)snprintf(p, 64, "Subject: q\r\n\r\n");
    while (o + 2 < n) {
        size_t line = n - o - 2 < 70 ? n - o - 2 : 70;
        memset(p + o, 'y', line);
        o += line;
        memcpy(p + o, "\r\n", 2);
        o += 2;
    }
    memcpy(p + o, ".\r\n", 4);
    return p;
}

static void test_session(void)
{
    struct smtp_session *s = session();
    ok(starts(say(s, "MAIL FROM:<x@remote.test>\r\n"), "250 "), "MAIL");
    ok(starts(say(s, "RCPT TO:<full@example.test>\r\n"), "452 4.2.2 Mailbox full"),
       "RCPT to a full user: 452 4.2.2");
    ok(starts(say(s, "RCPT TO:<room@example.test>\r\n"), "250 "),
       "RCPT to a user with room in the same transaction: 250");
    ok(starts(say(s, "RCPT TO:<list@example.test>\r\n"), "250 "),
       "an alias of a full user and one named before: 250, not sent twice on a retry");
    ok(starts(say(s, "RCPT TO:<nobody@example.test>\r\n"), "550 5.1.1"), "unknown still 550");
    ok(starts(say(s, "DATA\r\n"), "354"), "DATA");
    char *b = body(2000);
    delivers = 0;
    say(s, b);
    is_int(delivers, 1, "the message goes to the store: room@ has room");
    smtp_session_store_done(s, 0);
    buf_reset(smtp_session_output(s));
    free(b);

    ok(starts(say(s, "MAIL FROM:<x@remote.test> SIZE=101\r\n"), "250 "), "MAIL SIZE=101");
    ok(starts(say(s, "RCPT TO:<tiny@example.test>\r\n"), "552 5.2.2 "),
       "SIZE past tiny@'s whole quota: 552 5.2.2");
    ok(starts(say(s, "RCPT TO:<fulls@example.test>\r\n"), "452 4.2.2 "),
       "an alias of a full user and one too small: 452, it may empty");
    ok(starts(say(s, "RCPT TO:<room@example.test>\r\n"), "250 "), "room@ takes SIZE=101");
    say(s, "RSET\r\n");
    ok(starts(say(s, "MAIL FROM:<x@remote.test>\r\n"), "250 "), "MAIL");
    ok(starts(say(s, "RCPT TO:<list@example.test>\r\n"), "250 "),
       "an alias of a full and a roomy user: 250, the roomy one must get it");
    say(s, "RSET\r\n");
    ok(starts(say(s, "MAIL FROM:<x@remote.test> SIZE=5401\r\n"), "250 "), "MAIL SIZE=5401");
    ok(starts(say(s, "RCPT TO:<room@example.test>\r\n"), "552 5.2.2 "),
       "a message larger than room@'s quota: 552");
    say(s, "RSET\r\n");
    ok(starts(say(s, "MAIL FROM:<x@remote.test> SIZE=5000\r\n"), "250 "), "MAIL SIZE=5000");
    ok(starts(say(s, "RCPT TO:<room@example.test>\r\n"), "452 4.2.2 "),
       "room@ at 1000 of 5000 has no room for 5000 more, past the grace: 452");
    say(s, "RSET\r\n");
    ok(starts(say(s, "MAIL FROM:<x@remote.test> SIZE=4500\r\n"), "250 "), "MAIL SIZE=4500");
    ok(starts(say(s, "RCPT TO:<room@example.test>\r\n"), "250 "),
       "4500 more brings room@ to 5500, within the grace: 250");
    say(s, "RSET\r\n");

    /* The final dot: the real size, when SIZE was not given. */
    ok(starts(say(s, "MAIL FROM:<x@remote.test>\r\n"), "250 "), "MAIL without SIZE");
    ok(starts(say(s, "RCPT TO:<tiny@example.test>\r\n"), "250 "), "tiny@ is empty: 250");
    ok(starts(say(s, "DATA\r\n"), "354"), "DATA");
    b = body(500);
    delivers = 0;
    ok(starts(say(s, b), "552 5.2.2 "), "500 octets for a quota of 100: 552 at the dot");
    is_int(delivers, 0, "nothing stored");
    free(b);
    ok(starts(say(s, "MAIL FROM:<x@remote.test>\r\n"), "250 "), "MAIL");
    ok(starts(say(s, "RCPT TO:<tiny@example.test>\r\n"), "250 "), "tiny@");
    ok(starts(say(s, "DATA\r\n"), "354"), "DATA");
    b = body(100);
    delivers = 0;
    say(s, b);
    is_int(delivers, 1, "100 octets fit a quota of 100");
    smtp_session_store_done(s, 0);
    buf_reset(smtp_session_output(s));
    free(b);

    /* A failed look-up refuses nothing. */
    quota_rc = -KOTAK_ESTORE;
    ok(starts(say(s, "MAIL FROM:<x@remote.test>\r\n"), "250 "), "MAIL");
    ok(starts(say(s, "RCPT TO:<full@example.test>\r\n"), "250 "),
       "the quota look-up fails: the mail is taken");
    quota_rc = 1;
    smtp_session_free(&s);
}

int main(void)
{
    test_fit();
    test_store(":memory:");
    char dir[] = "/tmp/kotak-test-quota-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/kotak.db", dir);
    test_store(path);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    test_session();
    return done_testing();
}
