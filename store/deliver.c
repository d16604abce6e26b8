/*
 * deliver.c — storing a message once for all its local recipients, and
 * committing many messages with one fsync.
 *
 * A body is written in STORE_CHUNK pieces as it arrives, so neither the
 * caller nor the store needs the whole message in memory. The first piece
 * is the head of the message's own row, written when it is full or at
 * commit: a message of up to STORE_CHUNK octets is one row. The maildrop
 * rows carry the final size, so they are written at commit, when it is known.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "header_eoh.h"
#include "store_int.h"
#include "util.h"

struct store_msg {
    struct store *s;
    int64_t id;
    int64_t received;
    int64_t size;
    int64_t size_told; /* what begin was told: the row holds it until commit */
    int64_t seq;       /* the next chunk's number */
    uint8_t *pending;  /* up to STORE_CHUNK bytes not yet written */
    size_t pending_len;
    int64_t *rcpts;
    size_t n_rcpts, cap_rcpts;
    struct store_envelope env; /* its strings owned; set for remote recipients */
    bool has_env;
    struct store__remote *remote;
    size_t n_remote, cap_remote;
    int error; /* the first failure; commit then rolls back */
    struct header_eoh eoh; /* where the header section lacks its empty line */
};

int store_batch_begin(struct store *s)
{
    assert(!s->in_batch);
    int rc = store__begin(s);
    if (rc == 0)
        s->in_batch = true;
    return rc;
}

/*
 * A message that fails inside a batch leaves rows behind in the batch's
 * transaction (on some errors, SQLITE_FULL among them, SQLite has even
 * rolled the whole transaction back already). The batch is then spoiled:
 * every later call in it fails alike, and its commit rolls it back. The
 * caller redoes its messages one by one, so that one's failure is no
 * other's; failures are rare, and each message of a batch costs less
 * without a savepoint around it. Returns rc.
 */
static int note_failure(struct store *s, int rc)
{
    if (rc < 0 && s->in_batch && s->batch_lost == 0)
        s->batch_lost = rc;
    return rc;
}

void store_batch_rollback(struct store *s)
{
    s->in_batch = false;
    s->batch_lost = 0;
    store__rollback(s);
}

int store_batch_commit(struct store *s)
{
    assert(s->in_batch);
    int lost = s->batch_lost;
    if (lost < 0) {
        store_batch_rollback(s);
        return lost;
    }
    s->in_batch = false;
    return store__commit(s);
}

int store_msg_begin(struct store *s, int64_t received, int64_t size, struct store_msg **m_r)
{
    *m_r = NULL;
    if (s->in_batch && s->batch_lost < 0)
        return s->batch_lost;
    int rc = s->in_batch ? 0 : store__begin(s);
    if (rc < 0)
        return rc;
    struct store_msg *m = xcalloc(1, sizeof(*m));
    m->s = s;
    m->received = received;
    m->size_told = size < 0 ? 0 : size;
    m->pending = xmalloc(STORE_CHUNK);
    header_eoh_init(&m->eoh);
    *m_r = m;
    return 0;
}

/*
 * Writes the piece gathered so far: the first as the head of a new
 * messages row, which gives the message its id, the others as chunks.
 */
static int flush_chunk(struct store_msg *m)
{
    sqlite3_stmt *st;
    if (m->id == 0) {
        if ((st = store__stmt(m->s, STMT_MSG_ADD)) == NULL)
            return -KOTAK_ESTORE;
        sqlite3_bind_int64(st, 1, m->received);
        sqlite3_bind_int64(st, 2, m->size_told);
        /* pending is never NULL: an empty body is an empty head, not a missing one */
        sqlite3_bind_blob(st, 3, m->pending, (int)m->pending_len, SQLITE_STATIC);
    } else if (m->pending_len > 0) {
        if ((st = store__stmt(m->s, STMT_CHUNK_ADD)) == NULL)
            return -KOTAK_ESTORE;
        sqlite3_bind_int64(st, 1, m->id);
        sqlite3_bind_int64(st, 2, m->seq);
        sqlite3_bind_blob(st, 3, m->pending, (int)m->pending_len, SQLITE_STATIC);
    } else {
        return 0;
    }
    int rc = store__step_done(m->s, st);
    if (rc < 0)
        return rc;
    if (m->id == 0)
        m->id = sqlite3_last_insert_rowid(m->s->db);
    m->seq++;
    m->pending_len = 0;
    return 0;
}

int store_msg_append(struct store_msg *m, const void *p, size_t n)
{
    const uint8_t *in = p;
    header_eoh_feed(&m->eoh, p, n); /* reads up to the header section's end only */
    while (n > 0 && m->error == 0) {
        size_t k = STORE_CHUNK - m->pending_len;
        if (k > n)
            k = n;
        memcpy(m->pending + m->pending_len, in, k);
        m->pending_len += k;
        m->size += (int64_t)k;
        in += k;
        n -= k;
        if (m->pending_len == STORE_CHUNK)
            m->error = flush_chunk(m);
    }
    return m->error;
}

int store_msg_add_rcpt(struct store_msg *m, int64_t user_id)
{
    for (size_t i = 0; i < m->n_rcpts; i++)
        if (m->rcpts[i] == user_id)
            return 0;
    if (m->n_rcpts == m->cap_rcpts) {
        m->cap_rcpts = m->cap_rcpts ? m->cap_rcpts * 2 : 4;
        m->rcpts = xrealloc(m->rcpts, m->cap_rcpts * sizeof(m->rcpts[0]));
    }
    m->rcpts[m->n_rcpts++] = user_id;
    return 0;
}

int store_msg_set_envelope(struct store_msg *m, const struct store_envelope *env)
{
    if (m->has_env)
        return -EEXIST;
    m->env = *env;
    m->env.sender = xstrdup(env->sender ? env->sender : "");
    m->env.envid = env->envid ? xstrdup(env->envid) : NULL;
    m->has_env = true;
    return 0;
}

int store_msg_add_remote(struct store_msg *m, const char *address, const char *orcpt,
                         unsigned notify, int64_t next_try)
{
    if (!m->has_env)
        return -EINVAL;
    for (size_t i = 0; i < m->n_remote; i++)
        if (addr_same_mailbox(m->remote[i].address, address))
            return 0;
    if (m->n_remote == m->cap_remote) {
        m->cap_remote = m->cap_remote ? m->cap_remote * 2 : 4;
        m->remote = xrealloc(m->remote, m->cap_remote * sizeof(m->remote[0]));
    }
    m->remote[m->n_remote++] = (struct store__remote){
        .address = xstrdup(address),
        .orcpt = orcpt ? xstrdup(orcpt) : NULL,
        .notify = notify,
        .next_try = next_try,
    };
    return 0;
}

static void msg_free(struct store_msg **mp)
{
    struct store_msg *m = *mp;
    for (size_t i = 0; i < m->n_remote; i++) {
        free(m->remote[i].address);
        free(m->remote[i].orcpt);
    }
    free(m->remote);
    if (m->has_env) {
        free((char *)m->env.sender);
        free((char *)m->env.envid);
    }
    free(m->pending);
    free(m->rcpts);
    free(m);
    *mp = NULL;
}

void store_msg_abort(struct store_msg **mp)
{
    struct store_msg *m = *mp;
    if (m == NULL)
        return;
    if (m->s->in_batch)
        note_failure(m->s, m->error < 0 ? m->error : -ECANCELED);
    else
        store__rollback(m->s);
    msg_free(mp);
}

static int write_rest(struct store_msg *m)
{
    int rc = m->error;
    if (rc == 0 && m->n_rcpts == 0 && m->n_remote == 0)
        rc = -EINVAL;
    if (rc == 0)
        rc = flush_chunk(m);
    if (rc == 0 && m->size != m->size_told) {
        sqlite3_stmt *st = store__stmt(m->s, STMT_MSG_SIZE);
        if (st == NULL)
            return -KOTAK_ESTORE;
        sqlite3_bind_int64(st, 1, m->id);
        sqlite3_bind_int64(st, 2, m->size);
        rc = store__step_done(m->s, st);
    }
    /* A header section without its empty line (common/header_eoh.h): RETR
     * and TOP supply CRLF there, and the maildrop's size counts it. */
    uint64_t eoh = header_eoh_finish(&m->eoh);
    int64_t drop_size = m->size + (eoh != UINT64_MAX ? 2 : 0);
    if (rc == 0 && eoh != UINT64_MAX) {
        sqlite3_stmt *st = store__stmt(m->s, STMT_MSG_EOH);
        if (st == NULL)
            return -KOTAK_ESTORE;
        sqlite3_bind_int64(st, 1, m->id);
        sqlite3_bind_int64(st, 2, (int64_t)eoh);
        rc = store__step_done(m->s, st);
    }
    for (size_t i = 0; rc == 0 && i < m->n_rcpts; i++) {
        sqlite3_stmt *st = store__stmt(m->s, STMT_DROP_ADD);
        if (st == NULL)
            return -KOTAK_ESTORE;
        sqlite3_bind_int64(st, 1, m->rcpts[i]);
        sqlite3_bind_int64(st, 2, m->id);
        sqlite3_bind_int64(st, 3, drop_size);
        sqlite3_bind_int64(st, 4, m->received);
        rc = store__step_done(m->s, st);
    }
    if (rc == 0 && m->n_remote > 0)
        rc = store__queue_write(m->s, m->id, m->received, &m->env, m->remote, m->n_remote);
    return rc;
}

int store_msg_commit(struct store_msg **mp, int64_t *msg_id_r)
{
    struct store_msg *m = *mp;
    struct store *s = m->s;
    int rc = write_rest(m);
    if (rc < 0) {
        m->error = rc;
        store_msg_abort(mp);
        return rc;
    }
    if (!s->in_batch)
        rc = store__commit(s);
    if (rc == 0 && msg_id_r != NULL)
        *msg_id_r = m->id;
    msg_free(mp);
    return rc;
}
