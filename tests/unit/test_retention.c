/*
 * test_retention.c — what [pop3] expire, [pop3] login_delay and the
 * supplied end-of-header line keep in the store (store/retention.c,
 * store/deliver.c), on a temporary file: the first retrieval recorded with
 * QUIT's deletions in one transaction, expiry in bounded batches that
 * leave what was never retrieved, the last login, and eoh_at with the
 * maildrop size that counts the two octets RETR adds.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "tap.h"

static char path[] = "/tmp/kotak-test-retention-XXXXXX";

static int64_t add_user(struct store *s, const char *address)
{
    struct addr a;
    addr_parse(address, strlen(address), 0, &a);
    store_user_add(s, &a, "$y$x");
    struct store_user u;
    return store_user_lookup(s, &a, &u) == 1 ? u.id : -1;
}

/* Delivers msg to user; returns the message id. */
static int64_t deliver(struct store *s, int64_t user, const char *msg, size_t len)
{
    struct store_msg *m;
    int64_t id = 0;
    if (store_msg_begin(s, 1700000000, (int64_t)len, &m) < 0)
        return -1;
    /* In pieces of 3 octets: the header's end is found across appends. */
    for (size_t i = 0; i < len; i += 3)
        store_msg_append(m, msg + i, len - i < 3 ? len - i : 3);
    store_msg_add_rcpt(m, user);
    return store_msg_commit(&m, &id) == 0 ? id : -1;
}

/* One integer from the store file, read beside the store (as the integration tests do). */
static long long query(const char *sql, long long arg)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long long v = -999;
    sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, arg);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

static size_t count(struct store *s, int64_t user)
{
    struct store_mail *l = NULL;
    size_t n = 0;
    store_mbox_list(s, user, &l, &n);
    free(l);
    return n;
}

static void test_eoh(struct store *s, int64_t alice)
{
    static const char proper[] = "Subject: proper\r\n\r\nbody\r\n";
    static const char fields[] = "From: a@example.test\r\nSubject: fields only\r\n";
    static const char under[] = "Subject: eoh\r\nright under\r\n";
    int64_t p = deliver(s, alice, proper, sizeof(proper) - 1);
    int64_t f = deliver(s, alice, fields, sizeof(fields) - 1);
    int64_t u = deliver(s, alice, under, sizeof(under) - 1);
    ok(p > 0 && f > 0 && u > 0, "three messages delivered");
    is_int(query("SELECT eoh_at FROM messages WHERE id = ?1", p), -1,
           "a header section ended by its empty line: eoh_at NULL");
    is_int(query("SELECT eoh_at FROM messages WHERE id = ?1", f), sizeof(fields) - 1,
           "fields only: the empty line goes at the end");
    is_int(query("SELECT eoh_at FROM messages WHERE id = ?1", u), 14,
           "a body line under the fields: the empty line goes before it");
    is_int(query("SELECT size FROM messages WHERE id = ?1", f), sizeof(fields) - 1,
           "the message's own size is the stored octets");
    is_int(query("SELECT size FROM maildrop WHERE message_id = ?1", f), sizeof(fields) + 1,
           "the maildrop's size counts the CRLF RETR adds");
    struct store_mail *l = NULL;
    size_t n = 0;
    store_mbox_list(s, alice, &l, &n);
    ok(n == 3 && !l[0].eoh_missing && l[1].eoh_missing && l[2].eoh_missing,
       "the listing says which lack the line");
    ok(n == 3 && l[1].eoh_at == (int64_t)sizeof(fields) - 1 && l[2].eoh_at == 14 &&
           l[1].size == (int64_t)sizeof(fields) + 1 && l[2].size == (int64_t)sizeof(under) + 1,
       "and where it goes, with LIST's sizes");
    char body[128];
    size_t got = 0;
    store_mbox_read(s, f, 0, body, sizeof(body), &got);
    ok(got == sizeof(fields) - 1 && memcmp(body, fields, got) == 0,
       "the stored octets are as they came");
    free(l);
    /* A row whose size does not count the line (a writer that did not
     * know) is served as stored, never cut short. */
    sqlite3 *db;
    sqlite3_open(path, &db);
    char sql[128];
    snprintf(sql, sizeof(sql), "UPDATE maildrop SET size = size - 2 WHERE message_id = %lld",
             (long long)u);
    sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    store_mbox_list(s, alice, &l, &n);
    ok(n == 3 && !l[2].eoh_missing && l[2].size == (int64_t)sizeof(under) - 1,
       "an eoh_at the size does not count is ignored");
    int64_t ids[3] = {l[0].id, l[1].id, l[2].id};
    free(l);
    is_int(store_mbox_delete(s, alice, ids, 3), 0, "cleared");
}

static void test_update_and_expire(struct store *s, int64_t alice, int64_t bob)
{
    static const char msg[] = "Subject: x\r\n\r\nx\r\n";
    for (int i = 0; i < 6; i++)
        deliver(s, alice, msg, sizeof(msg) - 1);
    deliver(s, bob, msg, sizeof(msg) - 1);
    struct store_mail *l = NULL, *lb = NULL;
    size_t n = 0, nb = 0;
    store_mbox_list(s, alice, &l, &n);
    store_mbox_list(s, bob, &lb, &nb);
    ok(n == 6 && nb == 1, "alice has six, bob one");

    /* QUIT: delete 0, record 1, 2 and 3 retrieved, and bob's entry (not alice's). */
    int64_t del[] = {l[0].id}, ret[] = {l[1].id, l[2].id, l[3].id, lb[0].id};
    is_int(store_mbox_update(s, alice, del, 1, ret, 4, 1000), 0, "update: one deleted, 3 retrieved");
    is_int(count(s, alice), 5, "the deleted one is gone");
    is_int(query("SELECT retrieved FROM maildrop WHERE id = ?1", l[1].id), 1000,
           "a retrieval is recorded");
    is_int(query("SELECT retrieved FROM maildrop WHERE id = ?1", l[4].id), -1,
           "one not retrieved has none");
    is_int(query("SELECT retrieved FROM maildrop WHERE id = ?1", lb[0].id), -1,
           "another user's entry is left alone");
    int64_t again[] = {l[1].id, l[4].id};
    is_int(store_mbox_update(s, alice, NULL, 0, again, 2, 5000), 0, "a later session retrieves");
    is_int(query("SELECT retrieved FROM maildrop WHERE id = ?1", l[1].id), 1000,
           "the first retrieval counts, not the last");
    is_int(query("SELECT retrieved FROM maildrop WHERE id = ?1", l[4].id), 5000,
           "a first retrieval later");
    is_int(store_mbox_update(s, alice, NULL, 0, NULL, 0, 6000), 0, "nothing to do is fine");

    /* Expire: before 1000 nothing; then in batches of 1. */
    size_t removed = 99;
    is_int(store_mbox_expire(s, alice, 999, 10, &removed), 0, "expire before any retrieval");
    is_int(removed, 0, "nothing removed");
    is_int(store_mbox_expire(s, alice, 1000, 1, &removed), 0, "expire up to 1000, one at a time");
    is_int(removed, 1, "one removed: the batch is full");
    is_int(store_mbox_expire(s, alice, 1000, 1, &removed), 0, "again");
    is_int(removed, 1, "one more");
    is_int(store_mbox_expire(s, alice, 1000, 1, &removed), 0, "again");
    is_int(removed, 1, "the third retrieved at 1000");
    is_int(store_mbox_expire(s, alice, 1000, 1, &removed), 0, "again");
    is_int(removed, 0, "none left at 1000: fewer than the batch");
    is_int(count(s, alice), 2, "what was retrieved later and never stays");
    is_int(store_mbox_expire(s, alice, 1 << 30, 100, &removed), 0, "expire everything retrieved");
    is_int(removed, 1, "the one retrieved at 5000 goes");
    is_int(count(s, alice), 1, "the one never retrieved stays forever");
    is_int(count(s, bob), 1, "bob's, never recorded, stays");
    is_int(query("SELECT count(*) FROM messages WHERE id NOT IN (SELECT message_id FROM maildrop)",
                 0),
           0, "bodies go with their last entry");
    free(l);
    free(lb);
}

static void test_login(struct store *s, int64_t alice)
{
    is_int(query("SELECT last_login FROM users WHERE id = ?1", alice), -1, "no login yet");
    is_int(store_user_login(s, alice, 10000, 60), 0, "a first login is let in");
    is_int(query("SELECT last_login FROM users WHERE id = ?1", alice), 10000, "and recorded");
    is_int(store_user_login(s, alice, 10010, 60), 50, "10 s later: 50 s still to wait");
    is_int(query("SELECT last_login FROM users WHERE id = ?1", alice), 10000,
           "a refused login records nothing");
    is_int(store_user_login(s, alice, 10059, 60), 1, "59 s later: 1 s to wait");
    is_int(store_user_login(s, alice, 10060, 60), 0, "60 s later: in");
    is_int(query("SELECT last_login FROM users WHERE id = ?1", alice), 10060, "recorded");
    is_int(store_user_login(s, alice, 100, 60), 0, "a clock gone back does not lock out");
    is_int(store_user_login(s, alice, 101, 0), 0, "no delay: always in");
    is_int(store_user_login(s, 987654, 101, 60), -ENOENT, "no such user");
}

int main(void)
{
    int fd = mkstemp(path);
    if (fd < 0)
        return 1;
    close(fd);
    unlink(path);
    char err[256];
    struct store *s = NULL;
    if (store_open(path, STORE_CREATE, &s, err, sizeof(err)) < 0) {
        printf("# %s\n", err);
        return 1;
    }
    store_domain_add(s, "example.test");
    int64_t alice = add_user(s, "alice@example.test"), bob = add_user(s, "bob@example.test");
    test_eoh(s, alice);
    test_update_and_expire(s, alice, bob);
    test_login(s, alice);
    store_close(&s);
    char aux[sizeof(path) + 8];
    unlink(path);
    snprintf(aux, sizeof(aux), "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof(aux), "%s-shm", path);
    unlink(aux);
    return done_testing();
}
