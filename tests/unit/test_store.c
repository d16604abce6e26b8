/*
 * test_store.c — the store on a real temporary file and in :memory:.
 *
 * Each scenario runs against both, since WAL, durability and the trigger
 * that frees bodies behave the same way on both and must keep doing so.
 */
#include <errno.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_int.h" /* white-box: test_full sets max_page_count */
#include "tap.h"
#include "util.h"

static const char *mode; /* "file" or "memory", in every check's name */

static struct addr A(const char *s)
{
    struct addr a;
    if (s[0] == '@') {
        memset(&a, 0, sizeof(a));
        snprintf(a.domain, sizeof(a.domain), "%s", s + 1);
    } else if (addr_parse(s, strlen(s), 0, &a) < 0) {
        fprintf(stderr, "bad test address %s\n", s);
        abort();
    }
    return a;
}

static int64_t user_id(struct store *s, const char *addr)
{
    struct store_user u;
    struct addr a = A(addr);
    return store_user_lookup(s, &a, &u) == 1 ? u.id : -1;
}

/* Resolves addr; returns its status and puts the sorted user ids in ids. */
/* A store's first domain and user, as most tests below begin: alice's id. */
static int64_t add_alice(struct store *s)
{
    store_domain_add(s, "example.test");
    struct addr a = A("alice@example.test");
    store_user_add(s, &a, "$y$x");
    return user_id(s, "alice@example.test");
}

static int resolve(struct store *s, const char *addr, int64_t *ids, size_t *n, size_t *remote)
{
    struct store_rcpts r = {0};
    struct addr a = A(addr);
    int rc = store_resolve(s, &a, &r);
    *n = r.n;
    *remote = r.n_remote;
    for (size_t i = 0; i < r.n; i++)
        ids[i] = r.user_ids[i];
    for (size_t i = 1; i < r.n; i++)
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            int64_t t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    store_rcpts_free(&r);
    return rc;
}

static void test_directory(struct store *s)
{
    struct addr a;
    is_int(store_domain_add(s, "example.test"), 0, "%s: domain add", mode);
    is_int(store_domain_add(s, "example.test"), -EEXIST, "%s: duplicate domain", mode);
    is_int(store_domain_exists(s, "example.test"), 1, "%s: domain exists", mode);
    is_int(store_domain_exists(s, "other.test"), 0, "%s: unknown domain", mode);

    a = A("alice@example.test");
    is_int(store_user_add(s, &a, "$y$hash1"), 0, "%s: user add", mode);
    a = A("Alice@example.test");
    is_int(store_user_add(s, &a, "$y$hash2"), -EEXIST, "%s: user names ignore case", mode);
    a = A("bob@example.test");
    is_int(store_user_add(s, &a, "$y$hashb"), 0, "%s: second user", mode);
    a = A("carol@other.test");
    is_int(store_user_add(s, &a, "$y$x"), -KOTAK_ENODOMAIN, "%s: user needs a local domain", mode);

    struct store_user u;
    a = A("ALICE@Example.Test");
    is_int(store_user_lookup(s, &a, &u), 1, "%s: look-up ignores case", mode);
    is_str(u.address, "alice@example.test", "%s: address folded", mode);
    is_str(u.hash, "$y$hash1", "%s: hash kept", mode);
    is_int(store_user_passwd(s, &a, "$y$new"), 0, "%s: passwd", mode);
    store_user_lookup(s, &a, &u);
    is_str(u.hash, "$y$new", "%s: passwd replaced the hash", mode);
    a = A("nobody@example.test");
    is_int(store_user_passwd(s, &a, "$y$x"), -ENOENT, "%s: passwd of nobody", mode);
    is_int(store_user_lookup(s, &a, &u), 0, "%s: look-up of nobody", mode);

    int64_t alice = user_id(s, "alice@example.test"), bob = user_id(s, "bob@example.test");
    int64_t ids[8];
    size_t n, remote;

    struct addr t[3] = {A("alice@example.test"), A("bob@example.test"), A("x@far.example")};
    struct addr src = A("sales@example.test");
    is_int(store_alias_add(s, &src, t, 3), 0, "%s: alias to two users and a remote", mode);
    is_int(store_alias_add(s, &src, t, 1), -EEXIST, "%s: the same pair twice", mode);
    src = A("alice@example.test");
    is_int(store_alias_add(s, &src, &t[1], 1), -EEXIST, "%s: an alias cannot shadow a user",
           mode);
    src = A("x@example.test");
    struct addr ghost = A("ghost@example.test");
    is_int(store_alias_add(s, &src, &ghost, 1), -ENOENT, "%s: a local target must exist", mode);
    struct addr two[2] = {A("alice@example.test"), A("ghost@example.test")};
    is_int(store_alias_add(s, &src, two, 2), -ENOENT, "%s: alias add is all or nothing", mode);
    is_int(resolve(s, "x@example.test", ids, &n, &remote), 0, "%s: ... nothing was added", mode);
    a = A("x@example.test");
    is_int(store_user_add(s, &a, "$y$x"), 0, "%s: ... so the name is still free", mode);
    store_user_del(s, &a);

    is_int(resolve(s, "alice@example.test", ids, &n, &remote), 1, "%s: resolve a user", mode);
    ok(n == 1 && ids[0] == alice, "%s: ... to that user", mode);
    is_int(resolve(s, "alice+lists@example.test", ids, &n, &remote), 1, "%s: plus address",
           mode);
    ok(n == 1 && ids[0] == alice, "%s: ... to the user without the tag", mode);
    is_int(resolve(s, "sales@example.test", ids, &n, &remote), 1, "%s: resolve an alias", mode);
    ok(n == 2 && ids[0] == alice && ids[1] == bob && remote == 1,
       "%s: ... to both users, each once, and one remote", mode);
    is_int(resolve(s, "sales+q4@example.test", ids, &n, &remote), 1, "%s: plus on an alias",
           mode);
    is_int(resolve(s, "nobody@example.test", ids, &n, &remote), 0, "%s: unknown local user",
           mode);
    is_int(resolve(s, "alice@far.example", ids, &n, &remote), -KOTAK_ENODOMAIN,
           "%s: a remote domain", mode);

    /* Aliases of aliases, a loop, and the catch-all. */
    src = A("team@example.test");
    struct addr tt[2] = {A("sales@example.test"), A("alice@example.test")};
    is_int(store_alias_add(s, &src, tt, 2), 0, "%s: alias to an alias", mode);
    is_int(resolve(s, "team@example.test", ids, &n, &remote), 1, "%s: nested alias", mode);
    ok(n == 2, "%s: ... expands once per user", mode);
    struct addr loop_a = A("loop1@example.test"), loop_b = A("loop2@example.test");
    struct addr bob_t = A("bob@example.test");
    store_alias_add(s, &loop_a, &bob_t, 1);
    store_alias_add(s, &loop_b, &loop_a, 1);
    is_int(store_alias_add(s, &loop_a, &loop_b, 1), 0, "%s: a loop can be written", mode);
    is_int(resolve(s, "loop1@example.test", ids, &n, &remote), 1, "%s: a loop ends", mode);
    ok(n == 1 && ids[0] == bob, "%s: ... with the users found on the way", mode);

    struct addr catchall = A("@example.test");
    is_int(store_alias_add(s, &catchall, &bob_t, 1), 0, "%s: catch-all", mode);
    is_int(resolve(s, "whoever@example.test", ids, &n, &remote), 1, "%s: catch-all takes the rest",
           mode);
    ok(n == 1 && ids[0] == bob, "%s: ... for its target", mode);
    is_int(resolve(s, "alice@example.test", ids, &n, &remote), 1, "%s: users before catch-all",
           mode);
    ok(n == 1 && ids[0] == alice, "%s: ... alice still gets her own mail", mode);
    is_int(store_alias_del(s, &catchall, NULL), 0, "%s: catch-all removed", mode);
    is_int(store_alias_del(s, &catchall, NULL), -ENOENT, "%s: removing it twice", mode);
    is_int(store_alias_del(s, &src, &tt[0]), 0, "%s: one target removed", mode);
    is_int(resolve(s, "team@example.test", ids, &n, &remote), 1, "%s: the other remains", mode);
    ok(n == 1 && ids[0] == alice, "%s: ... alice only", mode);

    is_int(store_domain_del(s, "example.test"), -ENOTEMPTY, "%s: domain in use", mode);
    is_int(store_domain_del(s, "none.test"), -ENOENT, "%s: unknown domain del", mode);
    is_int(store_domain_add(s, "empty.test"), 0, "%s: empty domain", mode);
    is_int(store_domain_del(s, "empty.test"), 0, "%s: empty domain del", mode);
}

/* Reads the whole body of a message in pieces of step bytes. */
static char *read_all(struct store *s, int64_t msg, size_t step, size_t *len_r)
{
    size_t cap = 1 << 20, len = 0, got;
    char *out = malloc(cap);
    int64_t off = 0;
    for (;;) {
        if (len + step > cap)
            out = realloc(out, cap = (len + step) * 2);
        if (store_mbox_read(s, msg, off, out + len, step, &got) < 0 || got == 0)
            break;
        len += got;
        off += (int64_t)got;
    }
    *len_r = len;
    return out;
}

/* A count from the store's own connection (white-box). */
static int count_rows(struct store *s, const char *sql, int64_t arg)
{
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, arg);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void test_delivery(struct store *s)
{
    int64_t alice = user_id(s, "alice@example.test"), bob = user_id(s, "bob@example.test");
    struct store_msg *m;
    int64_t id1, id2;
    const char body[] = "Subject: hi\r\n\r\nHello, Bob.\r\n";

    is_int(store_msg_begin(s, 1000, -1, &m), 0, "%s: begin", mode);
    store_msg_append(m, body, 10);
    store_msg_append(m, body + 10, sizeof(body) - 1 - 10);
    store_msg_add_rcpt(m, alice);
    store_msg_add_rcpt(m, bob);
    store_msg_add_rcpt(m, bob);
    is_int(store_msg_commit(&m, &id1), 0, "%s: commit to two users", mode);
    ok(m == NULL, "%s: commit frees the message", mode);

    struct store_mail *la, *lb;
    size_t na, nb;
    store_mbox_list(s, alice, &la, &na);
    store_mbox_list(s, bob, &lb, &nb);
    ok(na == 1 && nb == 1, "%s: one entry each, though bob was named twice", mode);
    ok(la[0].message_id == id1 && lb[0].message_id == id1, "%s: one body for both", mode);
    is_int(la[0].size, sizeof(body) - 1, "%s: size is the octet count", mode);
    is_int(la[0].arrived, 1000, "%s: arrival time", mode);
    ok(strcmp(la[0].uidl, lb[0].uidl) != 0, "%s: each entry has its own UIDL", mode);
    ok(strlen(la[0].uidl) > 0 && strlen(la[0].uidl) <= 70 && strchr(la[0].uidl, ' ') == NULL,
       "%s: UIDL is 1..70 printable characters (RFC 1939)", mode);
    char uidl_a[STORE_UIDL_MAX];
    snprintf(uidl_a, sizeof(uidl_a), "%s", la[0].uidl);
    int64_t entry_a = la[0].id, entry_b = lb[0].id;
    free(la);
    free(lb);

    size_t len;
    char *got = read_all(s, id1, 7, &len);
    ok(len == sizeof(body) - 1 && memcmp(got, body, len) == 0, "%s: body byte for byte", mode);
    free(got);

    /* An aborted message leaves nothing behind. */
    struct store_stats st0, st1;
    store_stats(s, &st0);
    store_msg_begin(s, 1001, -1, &m);
    store_msg_append(m, "x", 1);
    store_msg_add_rcpt(m, alice);
    store_msg_abort(&m);
    store_stats(s, &st1);
    ok(st1.messages == st0.messages && st1.entries == st0.entries, "%s: abort stores nothing",
       mode);
    store_msg_begin(s, 1001, -1, &m);
    store_msg_append(m, "x", 1);
    is_int(store_msg_commit(&m, &id2), -EINVAL, "%s: a message with no recipient is refused",
           mode);

    /* A large body spans chunks and reads back whole from any offset. */
    size_t big = 3 * 64 * 1024 + 12345;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + (i * 7) % 26);
    store_msg_begin(s, 1002, -1, &m);
    for (size_t off = 0; off < big; off += 1000)
        store_msg_append(m, data + off, big - off < 1000 ? big - off : 1000);
    store_msg_add_rcpt(m, bob);
    is_int(store_msg_commit(&m, &id2), 0, "%s: large message", mode);
    got = read_all(s, id2, 50000, &len);
    ok(len == big && memcmp(got, data, big) == 0, "%s: large body read back in pieces", mode);
    free(got);
    char piece[100];
    size_t n;
    store_mbox_read(s, id2, 64 * 1024 - 50, piece, sizeof(piece), &n);
    ok(n == 100 && memcmp(piece, data + 64 * 1024 - 50, 100) == 0,
       "%s: a read across a chunk boundary", mode);
    store_mbox_read(s, id2, (int64_t)big, piece, sizeof(piece), &n);
    is_int(n, 0, "%s: a read at the end returns nothing", mode);
    /* The first 64 KiB are the head; only the rest went to chunks. */
    is_int(count_rows(s, "SELECT count(*) FROM chunks WHERE message_id = ?1", id2), 3,
           "%s: the large body's head is in its row, 3 chunks follow", mode);
    is_int(count_rows(s, "SELECT count(*) FROM chunks WHERE message_id = ?1", id1), 0,
           "%s: a small body is all head, no chunk", mode);
    free(data);

    /* Group commit: a batch of messages. */
    store_stats(s, &st0);
    is_int(store_batch_begin(s), 0, "%s: batch begin", mode);
    int committed = 0;
    for (int i = 0; i < 5; i++) {
        store_msg_begin(s, 2000 + i, -1, &m);
        store_msg_append(m, "batch\r\n", 7);
        store_msg_add_rcpt(m, alice);
        committed += store_msg_commit(&m, NULL) == 0;
    }
    is_int(committed, 5, "%s: five messages in a batch", mode);
    is_int(store_batch_commit(s), 0, "%s: batch commit", mode);
    store_stats(s, &st1);
    is_int(st1.messages - st0.messages, 5, "%s: the batch stored all five", mode);
    /* A message aborted inside a batch spoils it: the caller redoes the rest. */
    store_stats(s, &st0);
    store_batch_begin(s);
    int begun[4];
    for (int i = 0; i < 4; i++) {
        begun[i] = store_msg_begin(s, 2100 + i, -1, &m);
        if (m == NULL)
            continue;
        store_msg_append(m, "spoilt\r\n", 8);
        store_msg_add_rcpt(m, alice);
        if (i == 1)
            store_msg_abort(&m);
        else
            store_msg_commit(&m, NULL);
    }
    ok(begun[0] == 0 && begun[1] == 0 && begun[2] == -ECANCELED && begun[3] == -ECANCELED,
       "%s: after an abort, the batch takes no more messages (%d %d %d %d)", mode, begun[0],
       begun[1], begun[2], begun[3]);
    is_int(store_batch_commit(s), -ECANCELED, "%s: the spoilt batch's commit says so", mode);
    store_stats(s, &st1);
    is_int(st1.messages - st0.messages, 0, "%s: a spoilt batch stores nothing", mode);
    is_int(st1.entries - st0.entries, 0, "%s: ... not even a maildrop entry", mode);
    store_stats(s, &st0);
    store_batch_begin(s);
    store_msg_begin(s, 3000, -1, &m);
    store_msg_append(m, "gone\r\n", 6);
    store_msg_add_rcpt(m, alice);
    store_msg_commit(&m, NULL);
    store_batch_rollback(s);
    store_stats(s, &st1);
    is_int(st1.messages, st0.messages, "%s: a rolled-back batch stores nothing", mode);

    /* Deleting entries frees a body only with its last entry. */
    store_stats(s, &st0);
    is_int(store_mbox_delete(s, alice, &entry_a, 1), 0, "%s: delete alice's entry", mode);
    store_stats(s, &st1);
    is_int(st1.messages, st0.messages, "%s: the body stays while bob has it", mode);
    is_int(store_mbox_delete(s, alice, &entry_b, 1), 0, "%s: alice cannot delete bob's", mode);
    store_mbox_list(s, bob, &lb, &nb);
    ok(nb >= 1 && lb[0].id == entry_b, "%s: ... bob's entry is still there", mode);
    free(lb);
    store_mbox_delete(s, bob, &entry_b, 1);
    store_stats(s, &st1);
    is_int(st1.messages, st0.messages - 1, "%s: the body goes with its last entry", mode);
    got = read_all(s, id1, 100, &len);
    is_int(len, 0, "%s: ... and its chunks with it", mode);
    free(got);

    /* A new message never gets a UIDL seen before. */
    store_msg_begin(s, 4000, -1, &m);
    store_msg_append(m, "new\r\n", 5);
    store_msg_add_rcpt(m, alice);
    store_msg_commit(&m, NULL);
    store_mbox_list(s, alice, &la, &na);
    int reused = 0;
    for (size_t i = 0; i < na; i++)
        reused |= strcmp(la[i].uidl, uidl_a) == 0;
    ok(!reused, "%s: UIDLs are not reused after a delete", mode);
    free(la);

    /* Deleting a user takes the maildrop and unshared bodies along. */
    store_stats(s, &st0);
    struct addr b = A("bob@example.test");
    is_int(store_user_del(s, &b), 0, "%s: user del", mode);
    store_stats(s, &st1);
    ok(st1.users == st0.users - 1 && st1.messages < st0.messages,
       "%s: bob's mail went with bob", mode);
    is_int(store_user_del(s, &b), -ENOENT, "%s: user del twice", mode);
}

/* A size told at begin is what the message is stored with; a wrong one is put right. */
static void test_size_told(struct store *s)
{
    int64_t alice = user_id(s, "alice@example.test");
    static const int64_t told[] = {12, 3, 500}; /* right, short, long */
    for (size_t i = 0; i < sizeof(told) / sizeof(told[0]); i++) {
        struct store_msg *m;
        int64_t id;
        struct store_stats st0, st1;
        store_stats(s, &st0);
        is_int(store_msg_begin(s, 5000, told[i], &m), 0, "%s: begin told %lld octets", mode,
               (long long)told[i]);
        /* A header section ended by its empty line: the maildrop counts no
         * CRLF that RETR would supply (common/header_eoh.h). */
        store_msg_append(m, "Hi: x\r\n", 7);
        store_msg_append(m, "\r\nb\r\n", 5);
        store_msg_add_rcpt(m, alice);
        is_int(store_msg_commit(&m, &id), 0, "%s: commit", mode);
        store_stats(s, &st1);
        is_int(st1.bytes - st0.bytes, 12, "%s: told %lld, the body's 12 octets are counted",
               mode, (long long)told[i]);
        struct store_mail *l;
        size_t n;
        store_mbox_list(s, alice, &l, &n);
        ok(n > 0 && l[n - 1].message_id == id && l[n - 1].size == 12,
           "%s: told %lld, the maildrop says 12", mode, (long long)told[i]);
        free(l);
    }
}

/* Collects what store_queue_list/due report. */
struct seen {
    struct store_queued q[8];
    size_t n;
};

static int seen_add(void *ctx, const struct store_queued *q)
{
    struct seen *v = ctx;
    if (v->n < 8)
        v->q[v->n] = *q;
    v->n++;
    return 0;
}

static int count_events(void *ctx, const struct store_queue_event *e)
{
    int *n = ctx;
    (*n)++;
    return e->code == 451 || e->code == 250 || e->code == 550 ? 0 : -EINVAL;
}

static int64_t bodies(struct store *s)
{
    struct store_stats st;
    store_stats(s, &st);
    return st.messages;
}

/*
 * The outbound queue: one message for a local user and two remote
 * recipients, stored once; each remote recipient with its own state; the
 * entry and its body go once nobody needs them.
 */
static void test_queue(struct store *s)
{
    int64_t alice = user_id(s, "alice@example.test");
    int64_t before = bodies(s);
    const char body[] = "Subject: out\r\n\r\nto the world\r\n";
    struct store_msg *m;
    is_int(store_msg_begin(s, 5000, -1, &m), 0, "%s: queue: begin", mode);
    store_msg_append(m, body, sizeof(body) - 1);
    is_int(store_msg_add_remote(m, "x@remote.test", NULL, 0, 6000), -EINVAL,
           "%s: queue: a remote recipient needs the envelope first", mode);
    struct store_envelope env = {
        .sender = "alice@example.test", .user_id = alice, .ret = STORE_RET_HDRS, .envid = "env-1"};
    is_int(store_msg_set_envelope(m, &env), 0, "%s: queue: envelope", mode);
    store_msg_add_rcpt(m, alice);
    store_msg_add_remote(m, "Carol@Remote.TEST", "rfc822;carol@remote.test",
                         STORE_NOTIFY_FAILURE | STORE_NOTIFY_DELAY, 6000);
    store_msg_add_remote(m, "dave@other.test", NULL, 0, 6000);
    store_msg_add_remote(m, "dave@Other.TEST", NULL, 0, 6000);
    int64_t id;
    is_int(store_msg_commit(&m, &id), 0, "%s: queue: commit", mode);
    is_int(bodies(s), before + 1, "%s: queue: one body for the maildrop and the queue", mode);

    struct seen v = {0};
    is_int(store_queue_list(s, 0, seen_add, &v), 0, "%s: queue: list", mode);
    is_int(v.n, 2, "%s: queue: two remote recipients, dave once whatever his domain's case", mode);
    int64_t carol = v.q[0].rcpt_id, dave = v.q[1].rcpt_id, entry = v.q[0].queue_id;
    ok(v.q[0].message_id == id && v.q[1].queue_id == entry, "%s: queue: one entry", mode);
    is_str(v.q[0].domain, "remote.test", "%s: queue: the domain is folded", mode);
    is_str(v.q[0].address, "Carol@Remote.TEST", "%s: queue: the address as given", mode);
    is_str(v.q[0].sender, "alice@example.test", "%s: queue: the sender", mode);
    is_str(v.q[0].orcpt, "rfc822;carol@remote.test", "%s: queue: ORCPT", mode);
    ok(v.q[0].notify == (STORE_NOTIFY_FAILURE | STORE_NOTIFY_DELAY) &&
           v.q[0].ret == STORE_RET_HDRS && v.q[0].user_id == alice && v.q[0].created == 5000,
       "%s: queue: NOTIFY, RET, the user and the time", mode);
    is_int(v.q[0].size, sizeof(body) - 1, "%s: queue: the size", mode);

    v.n = 0;
    store_queue_due(s, 5999, 100, NULL, seen_add, &v);
    is_int(v.n, 0, "%s: queue: nothing due before the first try", mode);
    store_queue_due(s, 6000, 100, NULL, seen_add, &v);
    is_int(v.n, 2, "%s: queue: both due at it", mode);
    ok(v.q[0].rcpt_id == carol && v.q[1].rcpt_id == dave,
       "%s: queue: due oldest first, then as queued", mode);
    v.n = 0;
    store_queue_due(s, 6000, 100, "[\"remote.test\"]", seen_add, &v);
    ok(v.n == 1 && v.q[0].rcpt_id == dave, "%s: queue: a domain left out is not read", mode);
    v.n = 0;
    store_queue_due(s, 6000, 100, NULL, seen_add, &v);
    is_str(v.q[0].envid, "env-1", "%s: queue: ENVID comes back", mode);

    struct store_attempt later = {.at = 6000,
                                  .host = "mx.remote.test",
                                  .ip = "192.0.2.1",
                                  .code = 451,
                                  .reply = "451 4.3.0 try later",
                                  .state = STORE_RCPT_QUEUED,
                                  .next_try = 6300};
    is_int(store_queue_record(s, carol, &later), 0, "%s: queue: a deferral recorded", mode);
    struct store_attempt done = {.at = 6001,
                                 .host = "mx.other.test",
                                 .ip = "192.0.2.2",
                                 .code = 250,
                                 .reply = "250 2.0.0 ok",
                                 .state = STORE_RCPT_DELIVERED};
    is_int(store_queue_record(s, dave, &done), 0, "%s: queue: a delivery recorded", mode);
    is_int(store_queue_record(s, 999999, &done), -ENOENT, "%s: queue: no such recipient", mode);
    is_int(store_queue_record(s, dave, &later), -ENOENT,
           "%s: queue: a delivered recipient is never queued again", mode);
    v.n = 0;
    store_queue_list(s, entry, seen_add, &v);
    ok(v.n == 2 && v.q[0].attempts == 1 && v.q[0].next_try == 6300 && v.q[0].last_code == 451 &&
           strcmp(v.q[0].last_reply, "451 4.3.0 try later") == 0 &&
           v.q[1].state == STORE_RCPT_DELIVERED,
       "%s: queue: each recipient keeps its own state", mode);
    v.n = 0;
    store_queue_due(s, 6299, 100, NULL, seen_add, &v);
    is_int(v.n, 0, "%s: queue: the deferred one waits, the delivered one is done", mode);
    is_int(store_queue_retry(s, entry, 6100), 1, "%s: queue: retry makes it due now", mode);
    store_queue_due(s, 6100, 100, NULL, seen_add, &v);
    is_int(v.n, 1, "%s: queue: due after retry", mode);
    is_int(store_queue_retry(s, 987654, 6100), -ENOENT, "%s: queue: retry of no entry", mode);

    struct store_attempt fail = {.at = 6400,
                                 .host = "mx.remote.test",
                                 .ip = "192.0.2.1",
                                 .code = 550,
                                 .reply = "550 5.1.1 no such user",
                                 .state = STORE_RCPT_FAILED};
    is_int(store_queue_record(s, carol, &fail), 0, "%s: queue: a failure recorded", mode);
    int events = 0;
    store_queue_log(s, carol, count_events, &events);
    is_int(events, 0, "%s: queue: the entry went with its last queued recipient", mode);
    v.n = 0;
    store_queue_list(s, 0, seen_add, &v);
    is_int(v.n, 0, "%s: queue: the queue is empty", mode);
    is_int(bodies(s), before + 1, "%s: queue: the body stays for alice's maildrop", mode);
    struct store_mail *l;
    size_t n;
    store_mbox_list(s, alice, &l, &n);
    int64_t last = l[n - 1].id;
    free(l);
    store_mbox_delete(s, alice, &last, 1);
    is_int(bodies(s), before, "%s: queue: and goes with that entry", mode);

    /* Remote recipients only, recorded inside a batch with another message:
     * the body goes with the entry; the history is kept while it waits. */
    store_msg_begin(s, 7000, -1, &m);
    store_msg_append(m, body, sizeof(body) - 1);
    struct store_envelope bounce = {.sender = "", .bounce = true};
    store_msg_set_envelope(m, &bounce);
    store_msg_add_remote(m, "erin@remote.test", NULL, 0, 7000);
    is_int(store_msg_commit(&m, NULL), 0, "%s: queue: a bounce queued", mode);
    v.n = 0;
    store_queue_list(s, 0, seen_add, &v);
    ok(v.n == 1 && v.q[0].bounce && v.q[0].sender[0] == '\0', "%s: queue: a bounce from <>", mode);
    struct store_attempt again = later;
    again.next_try = 8000;
    store_queue_record(s, v.q[0].rcpt_id, &again);
    events = 0;
    store_queue_log(s, v.q[0].rcpt_id, count_events, &events);
    is_int(events, 1, "%s: queue: its history has the attempt", mode);
    is_int(store_batch_begin(s), 0, "%s: queue: batch", mode);
    store_queue_record(s, v.q[0].rcpt_id, &done);
    is_int(store_batch_commit(s), 0, "%s: queue: recorded in a batch", mode);
    is_int(bodies(s), before, "%s: queue: nothing left of it", mode);
}

static void run(const char *path)
{
    struct store *s;
    char err[256];
    mode = strcmp(path, ":memory:") == 0 ? "memory" : "file";
    int rc = store_open(path, STORE_CREATE, &s, err, sizeof(err));
    is_int(rc, 0, "%s: open", mode);
    if (rc < 0) {
        printf("# %s\n", err);
        return;
    }
    test_directory(s);
    test_delivery(s);
    test_size_told(s);
    test_queue(s);
    store_close(&s);
    ok(s == NULL, "%s: close clears the handle", mode);
}

/*
 * Bodies stored before schema version 2 have no head: all of them is in
 * chunks from seq 0. A version 1 store (the head column dropped again) is
 * brought forward on open, and such a body still reads back whole, from
 * any offset.
 */
static void test_headless_bodies(const char *dir)
{
    char path[512], err[256];
    snprintf(path, sizeof(path), "%s/v1.db", dir);
    mode = "v1";
    struct store *s;
    if (store_open(path, STORE_CREATE, &s, err, sizeof(err)) < 0) {
        ok(0, "open: %s", err);
        return;
    }
    int64_t alice = add_alice(s);
    store_close(&s);

    /* As kotak before version 2 left it: the body in chunks 0 and 1, no head. */
    size_t len = STORE_CHUNK + 1000;
    char *body = xmalloc(len);
    for (size_t i = 0; i < len; i++)
        body[i] = (char)('A' + i % 23);
    sqlite3 *db;
    sqlite3_open(path, &db);
    int rc = sqlite3_exec(db,
                          /* schema 8's, 7's and 6's columns, 4's queue, and 2's head, undone */
                          "DROP INDEX maildrop_source_uidl;"
                          "ALTER TABLE maildrop DROP COLUMN source_uidl;"
                          "DROP INDEX maildrop_retrieved; ALTER TABLE maildrop DROP COLUMN source;"
                          "DROP TRIGGER maildrop_used_add; DROP TRIGGER maildrop_used_del;"
                          "DROP INDEX maildrop_uidl;"
                          "ALTER TABLE maildrop DROP COLUMN uidl;"
                          "ALTER TABLE maildrop DROP COLUMN digest;"
                          "ALTER TABLE maildrop DROP COLUMN retrieved;"
                          "ALTER TABLE messages DROP COLUMN eoh_at;"
                          "ALTER TABLE users DROP COLUMN quota; ALTER TABLE users DROP COLUMN used;"
                          "ALTER TABLE users DROP COLUMN quota_warned;"
                          "ALTER TABLE users DROP COLUMN last_login;"
                          "ALTER TABLE domains DROP COLUMN quota;"
                          "DROP TRIGGER queue_release; DROP TABLE queue_log; DROP TABLE queue_rcpt;"
                          "DROP TABLE queue; DROP TRIGGER maildrop_release;"
                          "CREATE TRIGGER maildrop_release AFTER DELETE ON maildrop WHEN NOT EXISTS"
                          " (SELECT 1 FROM maildrop WHERE message_id = OLD.message_id)"
                          " BEGIN DELETE FROM messages WHERE id = OLD.message_id; END;"
                          "ALTER TABLE messages DROP COLUMN head; PRAGMA user_version = 1;"
                          "INSERT INTO messages(id, received, size) VALUES(77, 1, 66536);",
                          NULL, NULL, NULL);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "INSERT INTO chunks(message_id, seq, data) VALUES(77, ?1, ?2)", -1,
                       &st, NULL);
    for (int seq = 0; seq < 2 && rc == SQLITE_OK; seq++) {
        sqlite3_bind_int(st, 1, seq);
        sqlite3_bind_blob(st, 2, body + seq * STORE_CHUNK, seq ? 1000 : STORE_CHUNK,
                          SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    char sql[200];
    snprintf(sql, sizeof(sql),
             "INSERT INTO maildrop(user_id, message_id, size, arrived) VALUES(%lld, 77, 66536, 1)",
             (long long)alice);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    is_int(rc, SQLITE_OK, "a version 1 store with a body in chunks 0 and 1");

    is_int(store_open(path, 0, &s, err, sizeof(err)), 0, "it opens, brought forward");
    if (s == NULL) {
        free(body);
        return;
    }
    size_t got_len;
    char *got = read_all(s, 77, 500, &got_len);
    ok(got_len == len && memcmp(got, body, len) == 0, "the old body reads back whole");
    free(got);
    char piece[100];
    size_t n = 0;
    store_mbox_read(s, 77, STORE_CHUNK - 50, piece, sizeof(piece), &n);
    ok(n == 100 && memcmp(piece, body + STORE_CHUNK - 50, 100) == 0,
       "... and across its chunk boundary");
    /* A new message beside it, in the new layout. */
    struct store_msg *m;
    int64_t id;
    store_msg_begin(s, 2, 5, &m);
    store_msg_append(m, "new\r\n", 5);
    store_msg_add_rcpt(m, alice);
    is_int(store_msg_commit(&m, &id), 0, "a new message in the brought-forward store");
    got = read_all(s, id, 3, &got_len);
    ok(got_len == 5 && memcmp(got, "new\r\n", 5) == 0, "... reads back from its head");
    free(got);
    store_close(&s);
    free(body);
}

/*
 * A second connection opened in a process must leave the first one's locks
 * alone: POSIX locks belong to the process, and closing any descriptor of
 * the file drops them all. Without its locks, the first connection looks
 * gone to another process, whose close then takes the WAL away from under
 * it, and what it commits next is lost (seen: a daemon's 250 for a message
 * that was never in the store, after `kotak alias add` ran beside it).
 */
static void test_locks_survive_a_second_open(const char *dir)
{
    char path[512], wal[520], err[256];
    snprintf(path, sizeof(path), "%s/locks.db", dir);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    mode = "locks";
    struct store *a, *b, *r;
    if (store_open(path, STORE_CREATE, &a, err, sizeof(err)) < 0) {
        ok(0, "open: %s", err);
        return;
    }
    store_close(&a);
    /* As kotak-smtpd opens it: a writer, a checkpointer, a reader. */
    store_open(path, 0, &a, err, sizeof(err));
    is_int(store_open(path, 0, &b, err, sizeof(err)), 0, "a second connection opens");
    is_int(store_open(path, STORE_READONLY, &r, err, sizeof(err)), 0, "and a reader");
    /* A new program, not a fork: SQLite's idea of this process's locks
     * would come along with a fork and hide what the kernel holds. */
    fflush(stdout);
    char *argv[] = {"test-store", "--write-and-close", path, NULL};
    extern char **environ;
    pid_t pid;
    int status = -1;
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) == 0)
        waitpid(pid, &status, 0);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "another process wrote and closed");
    ok(access(wal, F_OK) == 0, "the WAL is still there for this process's connections");
    is_int(store_domain_add(a, "after.test"), 0, "the first connection writes on");
    store_close(&r);
    store_close(&b);
    store_close(&a);
    store_open(path, 0, &a, err, sizeof(err));
    is_int(store_domain_exists(a, "after.test"), 1, "and what it wrote is in the store");
    store_close(&a);
}

/* Opening: a missing file, the schema version, a foreign database, a newer one. */
static void test_open(const char *dir)
{
    char path[512], err[256];
    struct store *s;
    mode = "open";
    snprintf(path, sizeof(path), "%s/missing.db", dir);
    is_int(store_open(path, 0, &s, err, sizeof(err)), -ENOENT, "missing store without CREATE");

    snprintf(path, sizeof(path), "%s/v.db", dir);
    store_open(path, STORE_CREATE, &s, err, sizeof(err));
    store_close(&s);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    sqlite3_step(st);
    is_int(sqlite3_column_int(st, 0), 9, "schema version recorded");
    sqlite3_finalize(st);
    sqlite3_prepare_v2(db, "PRAGMA auto_vacuum", -1, &st, NULL);
    sqlite3_step(st);
    is_int(sqlite3_column_int(st, 0), 2, "a new store gives free pages back (INCREMENTAL)");
    sqlite3_finalize(st);
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
    sqlite3_step(st);
    is_str((const char *)sqlite3_column_text(st, 0), "wal", "store is in WAL mode");
    sqlite3_finalize(st);
    sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
    sqlite3_close(db);
    is_int(store_open(path, 0, &s, err, sizeof(err)), -KOTAK_ESCHEMA, "newer schema refused");
    ok(strstr(err, "newer") != NULL, "... saying it is newer");

    snprintf(path, sizeof(path), "%s/foreign.db", dir);
    sqlite3_open(path, &db);
    sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL);
    sqlite3_close(db);
    is_int(store_open(path, 0, &s, err, sizeof(err)), -KOTAK_ESCHEMA,
           "a database that is not a store is refused");

    snprintf(path, sizeof(path), "%s/junk.db", dir);
    FILE *f = fopen(path, "w");
    fputs("this is not a database, just some text long enough to fill a header...........\n", f);
    fclose(f);
    ok(store_open(path, 0, &s, err, sizeof(err)) < 0 && s == NULL, "a junk file is refused");

    /* Two stores made anew hand out different UIDLs for their first message. */
    char uidl[2][STORE_UIDL_MAX];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/u%d.db", dir, i);
        store_open(path, STORE_CREATE, &s, err, sizeof(err));
        store_domain_add(s, "example.test");
        struct addr a = A("alice@example.test");
        store_user_add(s, &a, "$y$x");
        struct store_msg *m;
        store_msg_begin(s, 1, -1, &m);
        store_msg_append(m, "x\r\n", 3);
        store_msg_add_rcpt(m, user_id(s, "alice@example.test"));
        store_msg_commit(&m, NULL);
        struct store_mail *l;
        size_t n;
        store_mbox_list(s, user_id(s, "alice@example.test"), &l, &n);
        snprintf(uidl[i], sizeof(uidl[i]), "%s", n ? l[0].uidl : "");
        free(l);
        store_close(&s);
    }
    ok(strcmp(uidl[0], uidl[1]) != 0, "a store made anew does not repeat an old store's UIDLs");

    /* Backup while another connection writes: the copy opens and holds the data. */
    snprintf(path, sizeof(path), "%s/u0.db", dir);
    store_open(path, 0, &s, err, sizeof(err));
    sqlite3_open(path, &db);
    sqlite3_busy_timeout(db, 1000);
    sqlite3_exec(db, "BEGIN IMMEDIATE; INSERT INTO domains(name) VALUES('pending.test')", NULL,
                 NULL, NULL);
    char dest[512];
    snprintf(dest, sizeof(dest), "%s/backup.db", dir);
    is_int(store_backup(s, dest, err, sizeof(err)), 0, "backup while a writer holds the lock");
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    store_close(&s);
    is_int(store_open(dest, 0, &s, err, sizeof(err)), 0, "the backup opens as a store");
    if (s != NULL) {
        is_int(store_domain_exists(s, "example.test"), 1, "... with the committed data");
        is_int(store_domain_exists(s, "pending.test"), 0, "... and not the uncommitted");
        store_close(&s);
    }
    snprintf(path, sizeof(path), "%s/backup.db.tmp", dir);
    ok(access(path, F_OK) != 0, "no temporary file is left behind");

    /* A writer that holds the lock past the busy timeout: -KOTAK_ELOCKED. */
    snprintf(path, sizeof(path), "%s/u1.db", dir);
    store_open(path, 0, &s, err, sizeof(err));
    store_set_busy_timeout(s, 100);
    sqlite3_open(path, &db);
    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    is_int(store_domain_add(s, "late.test"), -KOTAK_ELOCKED, "a locked store says so");
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    is_int(store_domain_add(s, "late.test"), 0, "... and works once the lock is gone");
    store_close(&s);
}

/* A full store: SQLITE_FULL becomes -ENOSPC and nothing half-written stays. */
static void test_full(void)
{
    struct store *s;
    char err[256];
    mode = "full";
    store_open(":memory:", STORE_CREATE, &s, err, sizeof(err));
    int64_t alice = add_alice(s);
    struct store_stats st0, st1;
    store_stats(s, &st0);
    /* Room for a little more than now; then a body far larger than that. */
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA max_page_count = %lld",
             (long long)(st0.file_bytes / 4096 + 8));
    store__exec(s, pragma);
    struct store_msg *m;
    static char chunk[64 * 1024];
    memset(chunk, 'x', sizeof(chunk));
    int rc = store_msg_begin(s, 2, -1, &m);
    for (int i = 0; rc == 0 && i < 64; i++)
        rc = store_msg_append(m, chunk, sizeof(chunk));
    if (m != NULL) {
        store_msg_add_rcpt(m, alice);
        int crc = store_msg_commit(&m, NULL);
        if (rc == 0)
            rc = crc;
    }
    is_int(rc, -ENOSPC, "a full store gives -ENOSPC");
    store_stats(s, &st1);
    ok(st1.messages == st0.messages && st1.entries == st0.entries,
       "nothing of the failed message stays");
    /* The same inside a batch: SQLite may roll the whole batch back, and
     * then no message of it may be stored, not even one after the failure. */
    store_stats(s, &st0);
    store_batch_begin(s);
    store_msg_begin(s, 4, -1, &m);
    store_msg_append(m, "small\r\n", 7);
    store_msg_add_rcpt(m, alice);
    is_int(store_msg_commit(&m, NULL), 0, "batch: a small message before the big one");
    rc = store_msg_begin(s, 5, -1, &m);
    for (int i = 0; rc == 0 && i < 64; i++)
        rc = store_msg_append(m, chunk, sizeof(chunk));
    if (m != NULL) {
        store_msg_add_rcpt(m, alice);
        int crc = store_msg_commit(&m, NULL);
        if (rc == 0)
            rc = crc;
    }
    is_int(rc, -ENOSPC, "batch: the big message gives -ENOSPC");
    int after = store_msg_begin(s, 6, -1, &m);
    if (after == 0) {
        store_msg_append(m, "after\r\n", 7);
        store_msg_add_rcpt(m, alice);
        after = store_msg_commit(&m, NULL);
    }
    is_int(store_batch_commit(s), -ENOSPC, "batch: the batch commit says the store is full");
    store_stats(s, &st1);
    ok(st1.messages == st0.messages && st1.entries == st0.entries,
       "batch: nothing of the batch is stored, not even after the failure (%d)", after);
    store__exec(s, "PRAGMA max_page_count = 1073741823");
    store_msg_begin(s, 3, -1, &m);
    store_msg_append(m, "ok\r\n", 4);
    store_msg_add_rcpt(m, alice);
    is_int(store_msg_commit(&m, NULL), 0, "service returns once there is room");
    store_close(&s);
}

/* Commits one small message for user_id through s. */
static int deliver_small(struct store *s, int64_t user_id)
{
    struct store_msg *m;
    int rc = store_msg_begin(s, 7, -1, &m);
    if (rc < 0)
        return rc;
    store_msg_append(m, "hello\r\n", 7);
    store_msg_add_rcpt(m, user_id);
    return store_msg_commit(&m, NULL);
}

/* Deferred checkpoints: commits leave the WAL alone, a checkpoint from
 * another connection copies it out, and the WAL then starts over. */
static void test_checkpoints(const char *dir)
{
    char path[512], err[256];
    snprintf(path, sizeof(path), "%s/checkpoint.db", dir);
    struct store *w, *ck;
    mode = "checkpoint";
    if (store_open(path, STORE_CREATE, &w, err, sizeof(err)) < 0 ||
        store_open(path, 0, &ck, err, sizeof(err)) < 0) {
        ok(0, "open: %s", err);
        return;
    }
    int64_t alice = add_alice(w);
    store_defer_checkpoints(w);
    int rc = 0;
    for (int i = 0; i < 300 && rc == 0; i++)
        rc = deliver_small(w, alice);
    is_int(rc, 0, "300 commits with deferred checkpoints");
    int grown = store_wal_pages(w);
    ok(grown >= 300, "the WAL grew past 300 pages, no checkpoint ran (%d)", grown);
    is_int(store_checkpoint(ck), 0, "a checkpoint from a second connection");
    is_int(deliver_small(w, alice), 0, "a commit after it");
    int restarted = store_wal_pages(w);
    ok(restarted > 0 && restarted < 20, "the WAL started over (%d pages)", restarted);
    struct store_stats st;
    store_stats(ck, &st);
    is_int((int)st.entries, 301, "every message is there, read through the other connection");
    store_close(&ck);
    store_close(&w);
}

/* A message of n octets whose content depends on seed. */
static char *pattern(size_t n, unsigned seed)
{
    char *p = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + seed) % 26);
    return p;
}

static int deliver_bytes(struct store *s, int64_t user_id, const char *p, size_t n)
{
    struct store_msg *m;
    int rc = store_msg_begin(s, 7, -1, &m);
    if (rc < 0)
        return rc;
    store_msg_append(m, p, n);
    store_msg_add_rcpt(m, user_id);
    return store_msg_commit(&m, NULL);
}

static int copy_file(const char *from, const char *to)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
    return system(cmd) == 0 ? 0 : -1;
}

/*
 * The store's VFS writes the WAL in gathered writes into a file grown ahead
 * in whole MiB of zeros. A copy of the database and its WAL taken while the
 * writer still has them open (what a crash leaves) must hold every
 * committed message, whole.
 */
static void test_wal_file(const char *dir)
{
    char path[512], wal[520], copy[512], copy_wal[520], err[256];
    snprintf(path, sizeof(path), "%s/wal.db", dir);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(copy, sizeof(copy), "%s/wal-copy.db", dir);
    snprintf(copy_wal, sizeof(copy_wal), "%s-wal", copy);
    mode = "wal";
    struct store *w;
    if (store_open(path, STORE_CREATE, &w, err, sizeof(err)) < 0) {
        ok(0, "open: %s", err);
        return;
    }
    store_defer_checkpoints(w); /* everything stays in the WAL */
    int64_t alice = add_alice(w);
    /* Small messages, one larger than the VFS's buffer, then small again. */
    static const size_t sizes[] = {1000, 5000, 100 * 1024, 700 * 1024, 1, 3000};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    int rc = 0;
    for (size_t i = 0; i < N && rc == 0; i++) {
        char *p = pattern(sizes[i], (unsigned)i);
        rc = deliver_bytes(w, alice, p, sizes[i]);
        free(p);
    }
    is_int(rc, 0, "messages of 1 octet to 700 KiB committed");
    struct stat st;
    ok(stat(wal, &st) == 0 && st.st_size > 0 && st.st_size % (1024 * 1024) == 0,
       "the WAL file is grown in whole MiB (%lld octets)", (long long)st.st_size);
    ok(copy_file(path, copy) == 0 && copy_file(wal, copy_wal) == 0, "copied as a crash leaves it");
    store_close(&w);

    struct store *c;
    if (store_open(copy, 0, &c, err, sizeof(err)) < 0) {
        ok(0, "open the copy: %s", err);
        return;
    }
    struct store_mail *list = NULL;
    size_t n = 0;
    is_int(store_mbox_list(c, alice, &list, &n), 0, "the copy's maildrop lists");
    is_int((int)n, N, "every committed message is in the copy");
    for (size_t i = 0; i < n && i < N; i++) {
        char *want = pattern(sizes[i], (unsigned)i), *got = xmalloc(sizes[i] + 1);
        size_t have = 0, k = 0;
        while (have <= sizes[i] &&
               store_mbox_read(c, list[i].message_id, (int64_t)have, got + have,
                               sizes[i] + 1 - have, &k) == 0 &&
               k > 0)
            have += k;
        ok(have == sizes[i] && memcmp(got, want, sizes[i]) == 0,
           "message %zu (%zu octets) reads back whole from the copy", i + 1, sizes[i]);
        free(want);
        free(got);
    }
    free(list);
    store_close(&c);
}

/*
 * A transaction that spills frames into the WAL and then rolls back must
 * leave nothing behind for later: another connection commits frames at the
 * same offsets next, and a late write of the rolled-back ones would land on
 * them. A small page cache makes a 80 KiB message spill.
 */
static void test_wal_rollback(const char *dir)
{
    char path[512], err[256];
    snprintf(path, sizeof(path), "%s/rollback.db", dir);
    mode = "rollback";
    struct store *a, *b, *c;
    if (store_open(path, STORE_CREATE, &a, err, sizeof(err)) < 0 ||
        store_open(path, 0, &b, err, sizeof(err)) < 0 ||
        store_open(path, 0, &c, err, sizeof(err)) < 0) {
        ok(0, "open: %s", err);
        return;
    }
    int64_t alice = add_alice(a);
    store__exec(a, "PRAGMA cache_size = 10");

    size_t big = 80 * 1024;
    char *body = pattern(big, 1);
    struct store_msg *m;
    store_msg_begin(a, 1, -1, &m);
    store_msg_append(m, body, big);
    store_msg_abort(&m); /* rolls back frames the small cache spilled */
    free(body);
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = deliver_small(b, alice);
    is_int(rc, 0, "another connection commits after the rollback");
    struct store_mail *list;
    size_t n;
    is_int(store_mbox_list(a, alice, &list, &n), 0, "the first connection reads again");
    free(list);
    is_int(deliver_small(a, alice), 0, "... and commits again");

    sqlite3_stmt *st;
    const char *verdict = "";
    if (sqlite3_prepare_v2(c->db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        verdict = (const char *)sqlite3_column_text(st, 0);
    is_str(verdict, "ok", "the store is whole");
    sqlite3_finalize(st);
    struct store_stats stats;
    store_stats(c, &stats);
    is_int((int)stats.entries, 4, "all four committed messages are there, none of the rolled back");
    size_t len;
    ok(store_mbox_list(c, alice, &list, &n) == 0 && n == 4, "a third connection lists them");
    int whole = 0;
    for (size_t i = 0; i < n; i++) {
        char *got = read_all(c, list[i].message_id, 100, &len);
        whole += len == 7 && memcmp(got, "hello\r\n", 7) == 0;
        free(got);
    }
    is_int(whole, 4, "... each whole");
    free(list);
    store_close(&c);
    store_close(&b);
    store_close(&a);
}

/* Another process's write, for test_locks_survive_a_second_open. */
static int write_and_close(const char *path)
{
    char err[256];
    struct store *c;
    if (store_open(path, 0, &c, err, sizeof(err)) < 0)
        return 2;
    int rc = store_domain_add(c, "other.test");
    store_close(&c);
    return rc == 0 ? 0 : 1;
}

static int raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/*
 * The pages of deleted mail go back in steps (reclaim.c): not while they
 * are few, then until only a handful are left, and what stays is whole.
 */
static void test_reclaim(const char *dir)
{
    char path[512], err[256];
    snprintf(path, sizeof(path), "%s/reclaim.db", dir);
    struct store *w;
    mode = "reclaim";
    if (store_open(path, STORE_CREATE, &w, err, sizeof(err)) < 0) {
        ok(0, "open: %s", err);
        return;
    }
    int64_t alice = add_alice(w);
    enum { N = 200, SIZE = 60000 };
    int rc = 0;
    for (int i = 0; i < N && rc == 0; i++) {
        char *p = pattern(SIZE, (unsigned)i);
        rc = deliver_bytes(w, alice, p, SIZE);
        free(p);
    }
    is_int(rc, 0, "%d messages of %d octets", N, SIZE);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_busy_timeout(db, 5000);
    int full = raw_int(db, "PRAGMA page_count");
    sqlite3_exec(db, "DELETE FROM maildrop WHERE id <= 10", NULL, NULL, NULL);
    is_int(store_reclaim_step(w), 0, "a few free pages (%d) are kept for new mail",
           raw_int(db, "PRAGMA freelist_count"));
    sqlite3_exec(db, "DELETE FROM maildrop WHERE id <= 180", NULL, NULL, NULL);
    int steps = 0;
    while ((rc = store_reclaim_step(w)) == 1 && steps < 100)
        steps++;
    is_int(rc, 0, "reclaiming ends");
    ok(steps >= 2, "in steps (%d), each its own short transaction", steps);
    int left = raw_int(db, "PRAGMA page_count"), free_pages = raw_int(db, "PRAGMA freelist_count");
    ok(free_pages <= 64, "a handful of free pages left (%d)", free_pages);
    ok(left * 5 < full, "the store went from %d pages to %d", full, left);
    sqlite3_stmt *st;
    int whole = 0;
    sqlite3_prepare_v2(db, "SELECT d.id, m.head FROM maildrop d JOIN messages m"
                           " ON m.id = d.message_id ORDER BY d.id", -1, &st, NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char *p = pattern(SIZE, (unsigned)(sqlite3_column_int(st, 0) - 1));
        whole += sqlite3_column_bytes(st, 1) == SIZE &&
                 memcmp(sqlite3_column_blob(st, 1), p, SIZE) == 0;
        free(p);
    }
    sqlite3_finalize(st);
    is_int(whole, N - 180, "every message kept is whole after the pages moved");
    sqlite3_close(db);
    store_close(&w);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-and-close") == 0)
        return write_and_close(argv[2]);
    char dir[] = "/tmp/kotak-test-store-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/kotak.db", dir);
    run(path);
    run(":memory:");
    test_open(dir);
    test_full();
    test_checkpoints(dir);
    test_reclaim(dir);
    test_wal_file(dir);
    test_headless_bodies(dir);
    test_wal_rollback(dir);
    test_locks_survive_a_second_open(dir);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
