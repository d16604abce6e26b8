/*
 * test_import.c — the store's import API (store/import.c) on a real file:
 * kept and renewed UIDLs, what counts as already there, batch boundaries
 * seen from another connection, and a killed import leaving whole batches.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_int.h" /* white-box: the UIDL prefix */
#include "tap.h"
#include "util.h"

static char path[256];

static struct store *open_store(void)
{
    struct store *s;
    char err[256];
    if (store_open(path, STORE_CREATE, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    return s;
}

static int64_t add_user(struct store *s, const char *address)
{
    struct addr a;
    addr_parse(address, strlen(address), 0, &a);
    store_user_add(s, &a, "$y$x");
    struct store_user u;
    return store_user_lookup(s, &a, &u) == 1 ? u.id : -1;
}

static size_t count(struct store *s, int64_t user)
{
    struct store_mail *list;
    size_t n = 0;
    if (store_mbox_list(s, user, &list, &n) < 0)
        return (size_t)-1;
    free(list);
    return n;
}

/* The UIDL of entry i (0-based) of user's maildrop, into out. */
static const char *uidl_of(struct store *s, int64_t user, size_t i, char out[STORE_UIDL_MAX])
{
    struct store_mail *list;
    size_t n;
    snprintf(out, STORE_UIDL_MAX, "(none)");
    if (store_mbox_list(s, user, &list, &n) == 0 && i < n)
        snprintf(out, STORE_UIDL_MAX, "%s", list[i].uidl);
    free(list);
    return out;
}

static int add(struct store_import *imp, const char *msg, const char *uidl, bool *kept)
{
    return store_import_add(imp, msg, strlen(msg), 1700000000, uidl, NULL, kept);
}

static void test_uidls(void)
{
    struct store *s = open_store();
    store_domain_add(s, "example.test");
    int64_t alice = add_user(s, "alice@example.test");
    int64_t bob = add_user(s, "bob@example.test");
    struct store_import *imp;
    bool kept;
    char u[STORE_UIDL_MAX], want[STORE_UIDL_MAX + 32];
    is_int(store_import_begin(s, alice, "mbox", &imp), 0, "begin");

    is_int(add(imp, "Subject: 1\r\n\r\none\r\n", "UID1-abc", &kept), 0, "add with a UIDL");
    ok(kept, "an RFC 1939 UIDL is kept");
    char long_ok[71];
    memset(long_ok, 'x', 70);
    long_ok[70] = '\0';
    is_int(add(imp, "Subject: 2\r\n\r\ntwo\r\n", long_ok, &kept), 0, "add with 70 octets");
    ok(kept, "a UIDL of 70 octets is kept");
    char too_long[72];
    memset(too_long, 'y', 71);
    too_long[71] = '\0';
    is_int(add(imp, "Subject: 3\r\n\r\nthree\r\n", too_long, &kept), 0, "add with 71 octets");
    ok(!kept, "a UIDL of 71 octets is renewed");
    add(imp, "Subject: 4\r\n\r\nfour\r\n", "has space", &kept);
    ok(!kept, "a UIDL with a space is renewed");
    add(imp, "Subject: 5\r\n\r\nfive\r\n", "", &kept);
    ok(!kept, "an empty UIDL is renewed");
    add(imp, "Subject: 6\r\n\r\nsix\r\n", "UID1-abc", &kept);
    ok(!kept, "a UIDL the maildrop has already is renewed");
    snprintf(want, sizeof(want), "%s.999999", s->uidl_prefix);
    add(imp, "Subject: 7\r\n\r\nseven\r\n", want, &kept);
    ok(!kept, "the store's own form for an entry still to come is renewed");
    snprintf(want, sizeof(want), "%s.07", s->uidl_prefix);
    add(imp, "Subject: 8\r\n\r\neight\r\n", want, &kept);
    ok(!kept, "the store's own form with a leading zero is renewed");
    add(imp, "Subject: 9\r\n\r\nnine\r\n", NULL, &kept);
    ok(!kept, "no UIDL: a new one");
    is_int(store_import_end(&imp), 0, "end");
    ok(imp == NULL, "end sets the handle to NULL");

    is_int(count(s, alice), 9, "nine entries");
    is_str(uidl_of(s, alice, 0, u), "UID1-abc", "UIDL served: kept");
    is_str(uidl_of(s, alice, 1, u), long_ok, "UIDL served: 70 octets");
    struct store_mail *list;
    size_t n;
    store_mbox_list(s, alice, &list, &n);
    snprintf(want, sizeof(want), "%s.%lld", s->uidl_prefix, (long long)list[2].id);
    is_str(list[2].uidl, want, "a renewed UIDL is the store's own");
    snprintf(want, sizeof(want), "%s.%lld", s->uidl_prefix, (long long)list[5].id);
    is_str(list[5].uidl, want, "a duplicate is renewed to the store's own");
    is_int(list[0].arrived, 1700000000, "arrived as given");
    is_int(list[0].size, (long long)strlen("Subject: 1\r\n\r\none\r\n"), "size as given");

    /* Entry 1 of alice into bob: its PREFIX.N is spent and alice's, so bob keeps it. */
    char alice_first[STORE_UIDL_MAX];
    snprintf(alice_first, sizeof(alice_first), "%s", list[2].uidl);
    free(list);
    is_int(store_import_begin(s, bob, "mbox", &imp), 0, "begin for bob");
    add(imp, "Subject: 3\r\n\r\nthree\r\n", alice_first, &kept);
    ok(kept, "another user's PREFIX.N is kept");
    store_import_end(&imp);
    is_str(uidl_of(s, bob, 0, u), alice_first, "bob is served alice's UIDL for the copy");

    /* Alice again: her own PREFIX.N names her entry, which is there. */
    store_import_begin(s, alice, "mbox", &imp);
    uint8_t d[STORE_DIGEST_SIZE];
    const char *m3 = "Subject: 3\r\n\r\nthree\r\n";
    store_digest(m3, strlen(m3), d);
    is_int(store_import_seen(imp, alice_first, -1, d), 1, "own PREFIX.N: found by its digest");
    is_int(store_import_seen(imp, alice_first, (int64_t)strlen(m3), NULL), 0,
           "own PREFIX.N without a digest: the store's UIDL proves nothing");
    store_digest("x", 1, d);
    is_int(store_import_seen(imp, alice_first, -1, d), 0,
           "own PREFIX.N of an entry whose digest differs: not seen");
    const char *m1 = "Subject: 1\r\n\r\none\r\n";
    store_digest(m1, strlen(m1), d);
    int64_t z1 = (int64_t)strlen(m1);
    is_int(store_import_seen(imp, "UID1-abc", z1, d), 1, "seen by kept UIDL");
    /* 2 from here on: this import has met these octets (one message twice in a source). */
    is_int(store_import_seen(imp, "UID1-abc", z1, NULL), 2,
           "seen by a UIDL kept from the same source with its size, without a digest");
    is_int(store_import_seen(imp, "UID-new", z1, d), 0,
           "a free UIDL with known octets: not seen, it is added as a second copy");
    is_int(store_import_seen(imp, "UID-new", z1, NULL), 0,
           "a free UIDL without a digest: not seen");
    is_int(store_import_seen(imp, NULL, z1, d), 2, "seen by digest without a UIDL");
    is_int(store_import_seen(imp, "has space", z1, d), 2, "seen by digest with a bad UIDL");
    const char *m6 = "Subject: 6\r\n\r\nsix\r\n";
    store_digest(m6, strlen(m6), d);
    is_int(store_import_seen(imp, "UID1-abc", (int64_t)strlen(m6), d), 1,
           "a UIDL taken by another message: found by its digest");
    store_digest("other", 5, d);
    is_int(store_import_seen(imp, "UID1-abc", 5, d), 0,
           "a UIDL taken by another message, digest unknown: not seen");
    is_int(store_import_seen(imp, NULL, 5, d), 0, "unknown digest: not seen");
    store_import_end(&imp);

    /* Seen by a PREFIX.N of an entry delivered over SMTP (no digest). */
    struct store_msg *m;
    int64_t mid;
    store_msg_begin(s, 1, -1, &m);
    store_msg_append(m, "Subject: smtp\r\n\r\nx\r\n", 20);
    store_msg_add_rcpt(m, alice);
    store_msg_commit(&m, &mid);
    store_mbox_list(s, alice, &list, &n);
    store_import_begin(s, alice, "mbox", &imp);
    is_int(store_import_seen(imp, list[n - 1].uidl, 5, d), 0,
           "a delivered entry's UIDL proves nothing (it has no digest)");
    is_int(store_import_seen(imp, list[n - 1].uidl, list[n - 1].size, NULL), 0,
           "a delivered entry's UIDL without a digest: not seen, fetch it");
    is_int(add(imp, "Subject: copy\r\n\r\nother\r\n", list[n - 1].uidl, &kept), 0,
           "another message under a delivered entry's UIDL");
    ok(!kept, "added under a new UIDL");
    store_import_end(&imp);
    free(list);

    /* users.used follows (schema 6 triggers). */
    sqlite3_stmt *st;
    sqlite3_prepare_v2(s->db, "SELECT used, (SELECT sum(size) FROM maildrop WHERE user_id = ?1)"
                              " FROM users WHERE id = ?1", -1, &st, NULL);
    sqlite3_bind_int64(st, 1, alice);
    ok(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0 &&
           sqlite3_column_int64(st, 0) == sqlite3_column_int64(st, 1),
       "users.used counts the imported messages");
    sqlite3_finalize(st);
    store_close(&s);
}

/* The source an entry came from: its maildrop.source, or "(null)". */
static const char *source_of(struct store *s, int64_t user, const char *uidl, char *out,
                             size_t size)
{
    sqlite3_stmt *st;
    snprintf(out, size, "(none)");
    sqlite3_prepare_v2(s->db, "SELECT source FROM maildrop WHERE user_id = ?1 AND uidl = ?2", -1,
                       &st, NULL);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, uidl, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        snprintf(out, size, "%s",
                 sqlite3_column_type(st, 0) == SQLITE_NULL
                     ? "(null)"
                     : (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
}

/* Two sources that both number from 1, and an mbox's X-UIDL: a UIDL proves
 * a message here only for the source that gave it. */
static void test_sources(void)
{
    struct store *s = open_store();
    int64_t frank = add_user(s, "frank@example.test");
    const char *a1 = "Subject: A-1\r\n\r\nfrom A\r\n", *b1 = "Subject: B-1\r\n\r\nfrom B\r\n";
    const char *m1 = "Subject: M-1\r\n\r\nfrom an mbox\r\n";
    uint8_t da[STORE_DIGEST_SIZE], db[STORE_DIGEST_SIZE], dm[STORE_DIGEST_SIZE];
    store_digest(a1, strlen(a1), da);
    store_digest(b1, strlen(b1), db);
    store_digest(m1, strlen(m1), dm);
    struct store_import *imp;
    bool kept;
    char src[128];

    is_int(store_import_begin(s, frank, "pop3 a.example:110 frank", &imp), 0, "begin A");
    int64_t za = (int64_t)strlen(a1), zb = (int64_t)strlen(b1), zm = (int64_t)strlen(m1);
    is_int(store_import_seen(imp, "1", za, NULL), 0, "A's 1: not here yet");
    add(imp, a1, "1", &kept);
    ok(kept, "A's 1 kept");
    /* 2: present, and added by this same import. */
    is_int(store_import_seen(imp, "1", za, NULL), 2,
           "A's 1 again, no digest: seen by its UIDL and size");
    is_int(store_import_seen(imp, "1", za, da), 2, "A's 1 again, its digest: seen");
    is_int(store_import_seen(imp, "1", zb, db), 0,
           "A's UIDL with octets that contradict its entry: not seen");
    store_import_end(&imp);
    is_str(source_of(s, frank, "1", src, sizeof(src)), "pop3 a.example:110 frank",
           "the entry records its source");

    is_int(store_import_begin(s, frank, "pop3 b.example:110 frank", &imp), 0, "begin B");
    is_int(store_import_seen(imp, "1", za, NULL), 0, "B's 1, no digest: A's entry proves nothing");
    is_int(store_import_seen(imp, "1", zb, db), 0, "B's 1 with its own octets: not seen");
    is_int(store_import_seen(imp, "1", za, da), 1, "B's 1 with A's octets: seen by digest");
    is_int(add(imp, b1, "1", &kept), 0, "B's 1 added");
    ok(!kept, "B's 1 under a new UIDL: A's entry keeps 1");
    is_int(store_import_seen(imp, "1", zb, db), 2, "B's 1 again: seen by its source's UIDL");
    store_import_end(&imp);
    is_int(count(s, frank), 2, "both 1s are here");

    is_int(store_import_begin(s, frank, "mbox", &imp), 0, "begin mbox");
    add(imp, m1, "7", &kept);
    ok(kept, "an mbox's X-UIDL 7 kept");
    store_import_end(&imp);
    is_int(store_import_begin(s, frank, "pop3 c.example:995 frank", &imp), 0, "begin C");
    is_int(store_import_seen(imp, "7", zm, NULL), 0, "C's 7: an mbox's X-UIDL proves nothing");
    is_int(store_import_seen(imp, "7", zm, dm), 1, "C's 7 with the mbox message's octets: seen");
    store_import_end(&imp);
    store_close(&s);
}

/* A source rebuilt under the same name hands out its old UIDLs for new mail:
 * its UIDL proves a message here only with the size of the entry's octets. */
static void test_reused_uidl(void)
{
    struct store *s = open_store();
    int64_t gina = add_user(s, "gina@example.test");
    const char *a = "Subject: A\r\n\r\nbefore the rebuild\r\n";
    const char *b = "Subject: B\r\n\r\nafter the rebuild, longer\r\n";
    const char *c = "Subject: C\r\n\r\nbefore the REBUILD\r\n"; /* a's size */
    const char *h = "Subject: no empty line\r\n";
    int64_t za = (int64_t)strlen(a), zb = (int64_t)strlen(b), zh = (int64_t)strlen(h);
    uint8_t da[STORE_DIGEST_SIZE], db[STORE_DIGEST_SIZE], dc[STORE_DIGEST_SIZE];
    store_digest(a, strlen(a), da);
    store_digest(b, strlen(b), db);
    store_digest(c, strlen(c), dc);
    struct store_import *imp;
    bool kept;
    is_int(store_import_begin(s, gina, "pop3 old.example:110 gina", &imp), 0, "begin");
    add(imp, a, "1", &kept);
    ok(kept, "A kept under 1");
    is_int(store_import_seen(imp, "1", za, NULL), 2, "1 with A's size: seen without a fetch");
    is_int(store_import_seen(imp, "1", zb, NULL), 0,
           "1 with another size: the source reused it, fetch the message");
    is_int(store_import_seen(imp, "1", -1, NULL), 0, "size unknown: a UIDL alone proves nothing");
    is_int(store_import_seen(imp, "1", zb, db), 0, "1 with B's octets: not seen");
    is_int(store_import_seen(imp, "1", -1, da), 2, "size unknown, A's digest: seen");
    is_int(store_import_seen(imp, "1", za, dc), 0,
           "1 with A's size but other octets: the digest contradicts, not seen");
    is_int(add(imp, b, "1", &kept), 0, "B added");
    ok(!kept, "B under a new UIDL: A keeps 1");
    is_int(store_import_seen(imp, "1", zb, db), 2, "B again: seen by the UIDL its source gave");
    /* A header without its empty line: the maildrop's size counts the 2 octets RETR
     * supplies, the source's LIST did not. */
    add(imp, h, "h", &kept);
    ok(kept, "a header-only message kept under h");
    is_int(store_import_seen(imp, "h", zh, NULL), 2, "h with the octets stored: seen");
    is_int(store_import_seen(imp, "h", zh + 2, NULL), 0,
           "h with the maildrop's size (2 supplied octets): not the source's size");
    store_import_end(&imp);
    is_int(count(s, gina), 3, "A, B and the header-only message are here");
    store_close(&s);
}

/* Two messages of the same octets under two UIDLs: two entries, so that a client
 * that tracked either finds it. */
static void test_same_octets(void)
{
    struct store *s = open_store();
    int64_t hank = add_user(s, "hank@example.test");
    const char *x = "Subject: same\r\n\r\nthe same octets\r\n";
    int64_t zx = (int64_t)strlen(x);
    uint8_t dx[STORE_DIGEST_SIZE];
    store_digest(x, strlen(x), dx);
    struct store_import *imp;
    bool kept;
    char u[STORE_UIDL_MAX];
    is_int(store_import_begin(s, hank, "pop3 a.example:110 hank", &imp), 0, "begin A");
    add(imp, x, "u1", &kept);
    is_int(store_import_seen(imp, "u2", zx, dx), 0, "u2, free, with u1's octets: not seen");
    add(imp, x, "u2", &kept);
    ok(kept, "u2 kept");
    is_int(store_import_seen(imp, "u2", zx, NULL), 2, "u2 again: seen by its UIDL");
    is_int(store_import_seen(imp, NULL, zx, dx), 2, "no UIDL: merged by digest");
    is_int(store_import_seen(imp, "has space", zx, dx), 2, "a bad UIDL: merged by digest");
    store_import_end(&imp);
    is_int(count(s, hank), 2, "two entries");
    is_str(uidl_of(s, hank, 1, u), "u2", "u2 is served");
    is_int(store_import_begin(s, hank, "pop3 b.example:110 hank", &imp), 0, "begin B");
    is_int(store_import_seen(imp, "v1", zx, dx), 0, "another source's free v1: not seen");
    is_int(store_import_seen(imp, "u1", zx, dx), 1,
           "another source's u1, taken here by the same octets: merged by digest");
    store_import_end(&imp);
    store_close(&s);
}

static void test_large(void)
{
    struct store *s = open_store();
    int64_t carol = add_user(s, "carol@example.test");
    size_t len = 3 * STORE_CHUNK + 123;
    uint8_t *msg = xmalloc(len);
    for (size_t i = 0; i < len; i++)
        msg[i] = (uint8_t)(i * 7 + 3);
    struct store_import *imp;
    bool kept;
    store_import_begin(s, carol, "mbox", &imp);
    is_int(store_import_add(imp, msg, len, 5, "big", NULL, &kept), 0, "a message of 3 chunks");
    is_int(store_import_add(imp, "", 0, 5, "empty", NULL, &kept), 0, "an empty message");
    store_import_end(&imp);
    struct store_mail *list;
    size_t n;
    store_mbox_list(s, carol, &list, &n);
    is_int(n, 2, "two entries");
    uint8_t *back = xmalloc(len + 10);
    size_t got = 0, k;
    while (store_mbox_read(s, list[0].message_id, (int64_t)got, back + got, 1000, &k) == 0 && k)
        got += k;
    is_int(got, len, "read back whole");
    ok(memcmp(back, msg, len) == 0, "read back byte for byte");
    is_int(list[1].size, 2, "empty: RETR supplies the empty line, and the size counts it");
    store_mbox_read(s, list[1].message_id, 0, back, 10, &k);
    is_int(k, 0, "empty read");
    free(list);
    free(back);
    free(msg);
    store_close(&s);
}

/* Counts an importer's committed messages from another connection. */
static size_t seen_by_other(int64_t user)
{
    struct store *o = open_store();
    size_t n = count(o, user);
    store_close(&o);
    return n;
}

static void test_batches(void)
{
    struct store *s = open_store();
    int64_t dave = add_user(s, "dave@example.test");
    struct store_import *imp;
    bool kept;
    char msg[64];
    store_import_begin(s, dave, "mbox", &imp);
    for (int i = 0; i < STORE_IMPORT_BATCH - 1; i++) {
        snprintf(msg, sizeof(msg), "Subject: %d\r\n\r\n", i);
        add(imp, msg, NULL, &kept);
    }
    is_int(seen_by_other(dave), 0, "a batch but one added: nothing committed yet");
    add(imp, "Subject: last\r\n\r\n", NULL, &kept);
    is_int(seen_by_other(dave), STORE_IMPORT_BATCH, "the batch's last: the batch committed");
    add(imp, "Subject: next\r\n\r\n", NULL, &kept);
    is_int(seen_by_other(dave), STORE_IMPORT_BATCH, "the one after waits in the next batch");
    is_int(store_import_commit(imp), 0, "commit");
    is_int(seen_by_other(dave), STORE_IMPORT_BATCH + 1, "commit: all there");
    is_int(store_import_commit(imp), 0, "commit with nothing open");
    /* 32 MiB ends a batch too. */
    size_t big = 11u << 20;
    char *b = xcalloc(1, big);
    for (int i = 0; i < 3; i++) {
        b[0] = (char)('a' + i);
        store_import_add(imp, b, big, 1, NULL, NULL, &kept);
    }
    is_int(seen_by_other(dave), STORE_IMPORT_BATCH + 4, "33 MiB: the batch committed");
    free(b);
    /* A failing add drops its batch and leaves the import usable. */
    add(imp, "Subject: kept\r\n\r\n", "K1", &kept);
    add(imp, "Subject: dup\r\n\r\n", "K2", &kept);
    ok(kept, "K2 kept");
    is_int(store_import_add(imp, "x", 1, 1, NULL, NULL, &kept), 0, "still adding");
    store_import_end(&imp);
    is_int(seen_by_other(dave), STORE_IMPORT_BATCH + 7, "end commits the rest");
    store_close(&s);
}

/* Message i of the killed import: every odd one has the same octets, under its own UIDL. */
/* Two whole batches and a part of a third. */
#define KILLED_N (2 * STORE_IMPORT_BATCH + 234)

static void killed_msg(char *msg, size_t size, int i)
{
    if (i % 2)
        snprintf(msg, size, "Subject: the same\r\n\r\nbody\r\n");
    else
        snprintf(msg, size, "Subject: %d\r\n\r\nbody\r\n", i);
}

static void test_killed(void)
{
    struct store *s = open_store();
    int64_t erin = add_user(s, "erin@example.test");
    store_close(&s);
    pid_t pid = fork();
    if (pid == 0) {
        struct store *c = open_store();
        struct store_import *imp;
        bool kept;
        char msg[64], uidl[32];
        store_import_begin(c, erin, "mbox", &imp);
        for (int i = 0; i < KILLED_N; i++) {
            killed_msg(msg, sizeof(msg), i);
            snprintf(uidl, sizeof(uidl), "U%d", i);
            store_import_add(imp, msg, strlen(msg), 1, uidl, NULL, &kept);
        }
        raise(SIGKILL);
        _exit(1);
    }
    int status;
    waitpid(pid, &status, 0);
    ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the importer was killed");
    s = open_store();
    is_int(count(s, erin), 2 * STORE_IMPORT_BATCH, "a killed import leaves whole batches");
    /* Run again: what is there is seen, the rest added, each once. */
    struct store_import *imp;
    store_import_begin(s, erin, "mbox", &imp);
    int skipped = 0, added = 0;
    for (int i = 0; i < KILLED_N; i++) {
        char msg[64], uidl[32];
        uint8_t d[STORE_DIGEST_SIZE];
        bool kept;
        killed_msg(msg, sizeof(msg), i);
        snprintf(uidl, sizeof(uidl), "U%d", i);
        /* As kotak import pop3 asks: before the fetch by UIDL and size, then with the digest. */
        int64_t size = (int64_t)strlen(msg);
        store_digest(msg, strlen(msg), d);
        if (store_import_seen(imp, uidl, size, NULL) > 0 ||
            store_import_seen(imp, uidl, size, d) > 0) {
            skipped++;
            continue;
        }
        if (store_import_add(imp, msg, strlen(msg), 1, uidl, d, &kept) == 0 && kept)
            added++;
    }
    store_import_end(&imp);
    is_int(skipped, 2 * STORE_IMPORT_BATCH, "run again: the committed ones skipped");
    is_int(added, KILLED_N - 2 * STORE_IMPORT_BATCH, "run again: the rest added with their UIDLs");
    struct store_mail *list;
    size_t n;
    store_mbox_list(s, erin, &list, &n);
    int in_order = 1;
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof(want), "U%zu", i);
        if (strcmp(list[i].uidl, want) != 0)
            in_order = 0;
    }
    is_int(n, KILLED_N, "every message once");
    ok(in_order, "in order, each with its UIDL");
    free(list);
    store_close(&s);
}

/* A message stored under a new UIDL because its own was taken keeps the UIDL
 * its source gave: a later run knows it by that UIDL, also once the entry that
 * held it is gone and the UIDL is free. */
static void test_renamed_then_free(void)
{
    struct store *s = open_store();
    int64_t ivan = add_user(s, "ivan@example.test");
    const char *other = "Subject: from the mbox\r\n\r\nan mbox's message\r\n";
    const char *x = "Subject: X\r\n\r\nthe old server's message\r\n";
    int64_t zx = (int64_t)strlen(x);
    uint8_t dx[STORE_DIGEST_SIZE];
    store_digest(x, strlen(x), dx);
    struct store_import *imp;
    bool kept;
    store_import_begin(s, ivan, "mbox", &imp);
    add(imp, other, "u", &kept);
    store_import_end(&imp);
    const char *src = "pop3 old.example:110 ivan";
    store_import_begin(s, ivan, src, &imp);
    add(imp, x, "u", &kept);
    ok(!kept, "X under a new UIDL: the mbox's entry holds u");
    store_import_end(&imp);
    /* The user deletes the mbox's message: u is free now. */
    sqlite3_exec(s->db, "DELETE FROM maildrop WHERE uidl = 'u'", NULL, NULL, NULL);
    is_int(count(s, ivan), 1, "X alone is left");
    store_import_begin(s, ivan, src, &imp);
    is_int(store_import_seen(imp, "u", zx, NULL), 1,
           "run again: X known by the UIDL its source gave, without a fetch");
    is_int(store_import_seen(imp, "u", zx, dx), 1, "and with its digest");
    is_int(store_import_seen(imp, "u", zx + 1, NULL), 0, "another size: fetch it");
    store_import_end(&imp);
    store_import_begin(s, ivan, "pop3 other.example:110 ivan", &imp);
    is_int(store_import_seen(imp, "u", zx, NULL), 0, "another source's u proves nothing");
    store_import_end(&imp);
    is_int(count(s, ivan), 1, "no second copy");
    store_close(&s);
}

int main(void)
{
    char dir[] = "/tmp/kotak-test-import-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(path, sizeof(path), "%s/kotak.db", dir);
    {
        struct store *s = open_store();
        store_domain_add(s, "example.test");
        store_close(&s);
    }
    test_uidls();
    test_sources();
    test_reused_uidl();
    test_same_octets();
    test_renamed_then_free();
    test_large();
    test_batches();
    test_killed();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return done_testing();
}
