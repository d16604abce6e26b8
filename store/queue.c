/*
 * queue.c — the outbound queue: messages waiting for other servers.
 *
 * A queued message keeps its body in messages, shared with any maildrop
 * entries of the same delivery; its queue row holds the envelope, and one
 * queue_rcpt row per remote recipient holds that recipient's state, its
 * attempts and the time of its next try, so that a 5xx for one recipient
 * or a slow server for another never holds up the rest. Each attempt also
 * leaves a queue_log row, for `kotak queue show`. The entry goes (and with
 * it the body, when no maildrop holds it) once no recipient is queued.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store_int.h"
#include "util.h"

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v == NULL)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

/* The domain of an address, folded to lower case: what routing groups by. */
static void domain_of(const char *address, char *out, size_t size)
{
    const char *at = strrchr(address, '@');
    const char *d = at ? at + 1 : "";
    size_t i = 0;
    for (; d[i] != '\0' && i + 1 < size; i++)
        out[i] = (char)tolower((unsigned char)d[i]);
    out[i] = '\0';
}

int store__queue_write(struct store *s, int64_t message_id, int64_t received,
                       const struct store_envelope *env, const struct store__remote *r, size_t n)
{
    sqlite3_stmt *st = store__stmt(s, STMT_QUEUE_ADD);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, message_id);
    bind_text(st, 2, env->sender);
    sqlite3_bind_int64(st, 3, received);
    sqlite3_bind_int64(st, 4, env->user_id);
    sqlite3_bind_int(st, 5, (int)env->ret);
    bind_text(st, 6, env->envid);
    sqlite3_bind_int(st, 7, env->bounce);
    sqlite3_bind_int(st, 8, env->smtputf8);
    int rc = store__step_done(s, st);
    if (rc < 0)
        return rc;
    int64_t queue_id = sqlite3_last_insert_rowid(s->db);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char domain[ADDR_DOMAIN_MAX + 1];
        domain_of(r[i].address, domain, sizeof(domain));
        st = store__stmt(s, STMT_QUEUE_RCPT_ADD);
        if (st == NULL)
            return -KOTAK_ESTORE;
        sqlite3_bind_int64(st, 1, queue_id);
        bind_text(st, 2, r[i].address);
        bind_text(st, 3, domain);
        bind_text(st, 4, r[i].orcpt);
        sqlite3_bind_int(st, 5, (int)r[i].notify);
        sqlite3_bind_int64(st, 6, r[i].next_try);
        rc = store__step_done(s, st);
    }
    return rc;
}

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t size)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    snprintf(out, size, "%s", v ? (const char *)v : "");
}

static void read_queued(sqlite3_stmt *st, struct store_queued *q)
{
    memset(q, 0, sizeof(*q));
    q->rcpt_id = sqlite3_column_int64(st, 0);
    q->queue_id = sqlite3_column_int64(st, 1);
    q->message_id = sqlite3_column_int64(st, 2);
    copy_col(st, 3, q->address, sizeof(q->address));
    copy_col(st, 4, q->domain, sizeof(q->domain));
    copy_col(st, 5, q->sender, sizeof(q->sender));
    copy_col(st, 6, q->orcpt, sizeof(q->orcpt));
    q->notify = (unsigned)sqlite3_column_int(st, 7);
    q->ret = (enum store_ret)sqlite3_column_int(st, 8);
    q->bounce = sqlite3_column_int(st, 9) != 0;
    q->delay_notified = sqlite3_column_int(st, 10) != 0;
    q->state = (enum store_rcpt_state)sqlite3_column_int(st, 11);
    q->user_id = sqlite3_column_int64(st, 12);
    q->created = sqlite3_column_int64(st, 13);
    q->size = sqlite3_column_int64(st, 14);
    q->next_try = sqlite3_column_int64(st, 15);
    q->attempts = sqlite3_column_int(st, 16);
    q->last_code = sqlite3_column_int(st, 17);
    copy_col(st, 18, q->last_reply, sizeof(q->last_reply));
    q->dropped = sqlite3_column_int(st, 19) != 0;
    copy_col(st, 20, q->envid, sizeof(q->envid));
    q->smtputf8 = sqlite3_column_int(st, 21) != 0;
}

/* Runs selects of queued recipients, one after the other, inside one read transaction. */
static int each_queued(struct store *s, sqlite3_stmt *const *sts, size_t n_sts,
                       int (*cb)(void *ctx, const struct store_queued *q), void *ctx)
{
    int rc = store__run(s, STMT_READ_BEGIN);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n_sts; i++) {
        struct store_queued q;
        int step = SQLITE_DONE;
        while (rc == 0 && (step = sqlite3_step(sts[i])) == SQLITE_ROW) {
            read_queued(sts[i], &q);
            rc = cb(ctx, &q);
        }
        if (rc == 0 && step != SQLITE_DONE)
            rc = store__rc(s, step);
        sqlite3_reset(sts[i]);
    }
    int crc = store__commit(s);
    return rc != 0 ? rc : crc;
}

int store_queue_due(struct store *s, int64_t now, size_t max, const char *skip_domains,
                    int (*cb)(void *ctx, const struct store_queued *q), void *ctx)
{
    sqlite3_stmt *sts[2] = {store__stmt(s, STMT_QUEUE_DROPPED), store__stmt(s, STMT_QUEUE_DUE)};
    if (sts[0] == NULL || sts[1] == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(sts[0], 1, (int64_t)max);
    sqlite3_bind_int64(sts[1], 1, now);
    sqlite3_bind_int64(sts[1], 2, (int64_t)max);
    bind_text(sts[1], 3, skip_domains != NULL ? skip_domains : "[]");
    return each_queued(s, sts, 2, cb, ctx);
}

int store_queue_list(struct store *s, int64_t queue_id,
                     int (*cb)(void *ctx, const struct store_queued *q), void *ctx)
{
    sqlite3_stmt *st = store__stmt(s, queue_id ? STMT_QUEUE_LIST_ONE : STMT_QUEUE_LIST);
    if (st == NULL)
        return -KOTAK_ESTORE;
    if (queue_id)
        sqlite3_bind_int64(st, 1, queue_id);
    return each_queued(s, &st, 1, cb, ctx);
}

int store_queue_summary(struct store *s, int64_t *recipients_r, int64_t *oldest_r)
{
    sqlite3_stmt *st = store__stmt(s, STMT_QUEUE_SUMMARY);
    if (st == NULL)
        return -KOTAK_ESTORE;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        *recipients_r = sqlite3_column_int64(st, 0);
        *oldest_r = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return step == SQLITE_ROW ? 0 : store__rc(s, step);
}

/* The writes of store_queue_record, in whatever transaction is open. */
static int record(struct store *s, int64_t rcpt_id, const struct store_attempt *a)
{
    sqlite3_stmt *st = store__stmt(s, STMT_QUEUE_RCPT_SET);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, rcpt_id);
    sqlite3_bind_int(st, 2, (int)a->state);
    sqlite3_bind_int64(st, 3, a->next_try);
    sqlite3_bind_int(st, 4, a->code);
    bind_text(st, 5, a->reply ? a->reply : "");
    sqlite3_bind_int(st, 6, a->delay_notified);
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW) {
        sqlite3_reset(st);
        return step == SQLITE_DONE ? -ENOENT : store__rc(s, step);
    }
    int64_t queue_id = sqlite3_column_int64(st, 0);
    step = sqlite3_step(st); /* RETURNING ends the UPDATE on the step after its row */
    sqlite3_reset(st);
    if (step != SQLITE_DONE)
        return store__rc(s, step);
    st = store__stmt(s, STMT_QUEUE_LOG_ADD);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, rcpt_id);
    sqlite3_bind_int64(st, 2, a->at);
    bind_text(st, 3, a->host ? a->host : "");
    bind_text(st, 4, a->ip ? a->ip : "");
    sqlite3_bind_int(st, 5, a->code);
    bind_text(st, 6, a->reply ? a->reply : "");
    int rc = store__step_done(s, st);
    if (rc < 0 || a->state == STORE_RCPT_QUEUED)
        return rc;
    st = store__stmt(s, STMT_QUEUE_DONE);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, queue_id);
    return store__step_done(s, st);
}

int store_queue_record(struct store *s, int64_t rcpt_id, const struct store_attempt *a)
{
    if (s->in_batch) {
        if (s->batch_lost < 0)
            return s->batch_lost;
        int rc = record(s, rcpt_id, a);
        /* A failure spoils the batch, as a failed message does; a recipient
         * no longer queued changed nothing, and is no failure of the batch. */
        if (rc < 0 && rc != -ENOENT)
            s->batch_lost = rc;
        return rc;
    }
    int rc = store__begin(s);
    if (rc < 0)
        return rc;
    rc = record(s, rcpt_id, a);
    if (rc < 0) {
        store__rollback(s);
        return rc;
    }
    return store__commit(s);
}

int store_queue_log(struct store *s, int64_t rcpt_id,
                    int (*cb)(void *ctx, const struct store_queue_event *e), void *ctx)
{
    sqlite3_stmt *st = store__stmt(s, STMT_QUEUE_LOG_LIST);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, rcpt_id);
    int rc = 0, step;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_queue_event e = {
            .at = sqlite3_column_int64(st, 0),
            .host = (const char *)sqlite3_column_text(st, 1),
            .ip = (const char *)sqlite3_column_text(st, 2),
            .code = sqlite3_column_int(st, 3),
            .reply = (const char *)sqlite3_column_text(st, 4),
        };
        rc = cb(ctx, &e);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = store__rc(s, step);
    sqlite3_reset(st);
    return rc;
}

/* Makes an entry's queued recipients (0: every entry's) due at now, with stmt. */
static int queue_mark(struct store *s, int64_t queue_id, int64_t now, enum store_stmt stmt)
{
    int rc = store__begin(s);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st;
    if (queue_id != 0) {
        st = store__stmt(s, STMT_QUEUE_EXISTS);
        if (st == NULL) {
            rc = -KOTAK_ESTORE;
            goto fail;
        }
        sqlite3_bind_int64(st, 1, queue_id);
        int step = sqlite3_step(st);
        sqlite3_reset(st);
        if (step != SQLITE_ROW) {
            rc = step == SQLITE_DONE ? -ENOENT : store__rc(s, step);
            goto fail;
        }
        st = store__stmt(s, stmt);
        if (st == NULL) {
            rc = -KOTAK_ESTORE;
            goto fail;
        }
        sqlite3_bind_int64(st, 1, queue_id);
        sqlite3_bind_int64(st, 2, now);
    } else {
        st = store__stmt(s, stmt);
        if (st == NULL) {
            rc = -KOTAK_ESTORE;
            goto fail;
        }
        sqlite3_bind_int64(st, 1, now);
    }
    if ((rc = store__step_done(s, st)) < 0)
        goto fail;
    int changed = sqlite3_changes(s->db);
    rc = store__commit(s);
    return rc < 0 ? rc : changed;
fail:
    store__rollback(s);
    return rc;
}

int store_queue_retry(struct store *s, int64_t queue_id, int64_t now)
{
    return queue_mark(s, queue_id, now, queue_id ? STMT_QUEUE_RETRY : STMT_QUEUE_RETRY_ALL);
}

int store_queue_drop(struct store *s, int64_t queue_id, int64_t now)
{
    if (queue_id <= 0)
        return -EINVAL;
    return queue_mark(s, queue_id, now, STMT_QUEUE_DROP);
}
