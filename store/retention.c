/*
 * retention.c — what [pop3] expire and [pop3] login_delay keep in the
 * store: when each maildrop entry was first retrieved, the removal of
 * entries retrieved long enough ago, and each user's last POP3 login.
 *
 * RFC 2449 6.7 lets a server delete messages after a retention period that
 * it announces with EXPIRE; kotak counts it from the first RETR, recorded
 * in the UPDATE state with that session's deletions (RFC 1939 6), so a
 * session that never QUITs records nothing, as it deletes nothing. A
 * message never retrieved is never expired. Expiry runs in bounded
 * transactions, so that a huge maildrop never holds the write lock (and
 * kotak-smtpd's deliveries) for long.
 */
#include <errno.h>

#include "store_int.h"
#include "util.h"

/* Runs st, bound to (id, user_id[, now]), over each of ids[0..n). */
static int each_entry(struct store *s, enum store_stmt id, int64_t user_id, const int64_t *ids,
                      size_t n, int64_t now)
{
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = store__stmt(s, id);
        if (st == NULL)
            return -KOTAK_ESTORE;
        sqlite3_bind_int64(st, 1, ids[i]);
        sqlite3_bind_int64(st, 2, user_id);
        if (id == STMT_MBOX_RETRIEVED)
            sqlite3_bind_int64(st, 3, now);
        int rc = store__step_done(s, st);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int store_mbox_update(struct store *s, int64_t user_id, const int64_t *del, size_t n_del,
                      const int64_t *ret, size_t n_ret, int64_t now)
{
    if (n_del == 0 && n_ret == 0)
        return 0;
    int rc = store__begin(s);
    if (rc < 0)
        return rc;
    /* Marks first: an entry both retrieved and deleted is simply gone. */
    if ((rc = each_entry(s, STMT_MBOX_RETRIEVED, user_id, ret, n_ret, now)) < 0 ||
        (rc = each_entry(s, STMT_MBOX_DELETE, user_id, del, n_del, now)) < 0 ||
        (n_del > 0 && (rc = store_quota_rearm(s, user_id)) < 0)) {
        store__rollback(s);
        return rc;
    }
    return store__commit(s);
}

int store_mbox_expire(struct store *s, int64_t user_id, int64_t before, size_t max,
                      size_t *removed_r)
{
    *removed_r = 0;
    if (max == 0)
        return 0;
    int rc = store__begin(s);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = store__stmt(s, STMT_MBOX_EXPIRE);
    if (st == NULL) {
        store__rollback(s);
        return -KOTAK_ESTORE;
    }
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, before);
    sqlite3_bind_int64(st, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max);
    if ((rc = store__step_done(s, st)) < 0) {
        store__rollback(s);
        return rc;
    }
    size_t removed = (size_t)sqlite3_changes(s->db);
    if ((rc = store__commit(s)) < 0)
        return rc;
    *removed_r = removed;
    return 0;
}

int store_user_login(struct store *s, int64_t user_id, int64_t now, int64_t delay)
{
    int rc = store__begin(s);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = store__stmt(s, STMT_LOGIN_GET);
    if (st == NULL) {
        store__rollback(s);
        return -KOTAK_ESTORE;
    }
    sqlite3_bind_int64(st, 1, user_id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        store__rollback(s);
        return rc == SQLITE_DONE ? -ENOENT : store__rc(s, rc);
    }
    bool known = sqlite3_column_type(st, 0) != SQLITE_NULL;
    int64_t last = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (known && delay > 0 && last <= now && now - last < delay) {
        store__rollback(s);
        return (int)(delay - (now - last));
    }
    if ((st = store__stmt(s, STMT_LOGIN_SET)) == NULL) {
        store__rollback(s);
        return -KOTAK_ESTORE;
    }
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, now);
    if ((rc = store__step_done(s, st)) < 0) {
        store__rollback(s);
        return rc;
    }
    return store__commit(s);
}
