/*
 * quota.c — how much a maildrop may hold: the quota that applies to a user
 * (their own, else their domain's default), whether a message fits, and
 * the near-quota warning kotak-pop3d delivers once.
 *
 * users.used is kept by the schema's triggers (maildrop_used_add and
 * _del, schema 6) in the transaction that adds or removes an entry, so it
 * never disagrees with the maildrop, and a check at RCPT is one row read.
 * Setting quotas lives in directory.c beside the users and domains.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store_int.h"
#include "util.h"

int store_quota_get(struct store *s, int64_t user_id, struct store_quota *q_r)
{
    memset(q_r, 0, sizeof(*q_r));
    sqlite3_stmt *st = store__stmt(s, STMT_QUOTA_GET);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, user_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int64_t used = sqlite3_column_int64(st, 0), quota = sqlite3_column_int64(st, 1);
        q_r->used = used > 0 ? (uint64_t)used : 0;
        q_r->quota = quota > 0 ? (uint64_t)quota : 0;
        q_r->warned = sqlite3_column_int(st, 2) != 0;
        snprintf(q_r->address, sizeof(q_r->address), "%s", sqlite3_column_text(st, 3));
        sqlite3_reset(st);
        return 1;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : store__rc(s, rc);
}

enum store_quota_fit store_quota_fit(uint64_t used, uint64_t quota, uint64_t size)
{
    if (quota == 0)
        return STORE_QUOTA_FITS;
    if (size > quota)
        return STORE_QUOTA_NEVER;
    if (used >= quota)
        return STORE_QUOTA_FULL;
    /* used < quota and size <= quota: neither sum overflows. */
    return used + size <= quota + quota / 10 ? STORE_QUOTA_FITS : STORE_QUOTA_FULL;
}

int store_quota_warn(struct store *s, int64_t user_id, const void *msg, size_t len,
                     int64_t arrived)
{
    struct store_quota q;
    struct store_msg *m = NULL;
    /* A batch of one: the message and the mark commit together, so the
     * warning is neither lost nor delivered twice. */
    int rc = store_batch_begin(s);
    if (rc < 0)
        return rc;
    if ((rc = store_quota_get(s, user_id, &q)) <= 0 || q.warned) {
        store_batch_rollback(s);
        return rc < 0 ? rc : 0;
    }
    if ((rc = store_msg_begin(s, arrived, (int64_t)len, &m)) < 0 ||
        (rc = store_msg_append(m, msg, len)) < 0 || (rc = store_msg_add_rcpt(m, user_id)) < 0 ||
        (rc = store_msg_commit(&m, NULL)) < 0) {
        store_msg_abort(&m);
        store_batch_rollback(s);
        return rc;
    }
    sqlite3_stmt *st = store__stmt(s, STMT_QUOTA_WARNED);
    if (st == NULL) {
        store_batch_rollback(s);
        return -KOTAK_ESTORE;
    }
    sqlite3_bind_int64(st, 1, user_id);
    if ((rc = store__step_done(s, st)) < 0) {
        store_batch_rollback(s);
        return rc;
    }
    rc = store_batch_commit(s);
    return rc < 0 ? rc : 1;
}

int store_quota_rearm(struct store *s, int64_t user_id)
{
    sqlite3_stmt *st = store__stmt(s, STMT_QUOTA_REARM);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int(st, 2, STORE_QUOTA_REARM_PCT);
    int rc = store__step_done(s, st);
    return rc < 0 ? rc : sqlite3_changes(s->db) > 0;
}
