/*
 * committer.c — the store thread; see committer.h.
 */
#include "committer.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "log.h"
#include "util.h"

#define COPY_CHUNK (64 * 1024)
#define RECLAIM_EVERY_NS (1000 * 1000 * 1000ull) /* how often the free pages are looked at */
#define RECLAIM_CHECKPOINTS_AFTER 10

/* Checkpoints run on a thread of their own, beside the commits (store.h's
 * store_checkpointer), so that no batch waits for the WAL's copy. */

/*
 * Jobs pass between the threads on two lock-free stacks, so that handing
 * over a message takes no lock that the other thread might hold (a lock
 * taken per message was a futex wake, and often a sleep, per message).
 * The mutex and condition variable are for sleeping only: the store
 * thread's when nothing waits.
 */
struct committer {
    uv_loop_t *loop;
    struct store *store;
    struct store_checkpointer *checkpointer;
    uv_thread_t thread;
    _Atomic(struct commit_job *) incoming; /* submitted, newest first */
    _Atomic(struct commit_job *) finished; /* written or failed, newest first */
    atomic_bool sleeping;                  /* the store thread waits on cv */
    uv_mutex_t mu;
    uv_cond_t cv;
    bool stop; /* under mu */
    uv_async_t async;
    size_t in_flight; /* loop thread only */
    int reclaim_failed; /* store thread only: the last step's error, told once */
    int reclaim_checkpoints; /* store thread only: checkpoints still to ask for after the last step */
    void (*done_cb)(struct commit_job *job, void *ctx);
    void *ctx;
};

static void push(_Atomic(struct commit_job *) *stack, struct commit_job *job)
{
    job->next = atomic_load_explicit(stack, memory_order_relaxed);
    while (!atomic_compare_exchange_weak(stack, &job->next, job))
        ;
}

/* Takes a whole stack, oldest first. */
static struct commit_job *take_all(_Atomic(struct commit_job *) *stack)
{
    struct commit_job *j = atomic_exchange(stack, NULL), *oldest_first = NULL;
    while (j != NULL) {
        struct commit_job *next = j->next;
        j->next = oldest_first;
        oldest_first = j;
        j = next;
    }
    return oldest_first;
}

void commit_job_drop_message(struct commit_job *job)
{
    if (!job->no_message)
        spool_free(&job->spool);
    job->no_message = true;
    free(job->insert);
    job->insert = NULL;
    job->insert_len = 0;
    free(job->skips);
    job->skips = NULL;
    job->n_skips = 0;
    free(job->user_ids);
    job->user_ids = NULL;
    job->n_users = 0;
    free((char *)job->env.sender);
    free((char *)job->env.envid);
    job->env = (struct store_envelope){0};
    for (size_t i = 0; i < job->n_remote; i++) {
        free(job->remote[i].address);
        free(job->remote[i].orcpt);
    }
    free(job->remote);
    job->remote = NULL;
    job->n_remote = 0;
}

void commit_job_free(struct commit_job *job)
{
    commit_job_drop_message(job);
    for (size_t i = 0; i < job->n_attempts; i++) {
        free((char *)job->attempts[i].a.host);
        free((char *)job->attempts[i].a.ip);
        free((char *)job->attempts[i].a.reply);
    }
    free(job->attempts);
    free(job);
}

/* The attempts of a job: a recipient no longer queued (dropped meanwhile) is no failure. */
static int record_attempts(struct store *store, struct commit_job *job)
{
    for (size_t i = 0; i < job->n_attempts; i++) {
        int rc = store_queue_record(store, job->attempts[i].rcpt_id, &job->attempts[i].a);
        if (rc < 0 && rc != -ENOENT)
            return rc;
    }
    return 0;
}

/* The size of the stored copy: the spool, plus the insert, less the skips. */
static uint64_t stored_size(const struct commit_job *job)
{
    uint64_t size = spool_size(&job->spool) + job->insert_len;
    for (size_t i = 0; i < job->n_skips; i++)
        size -= job->skips[i].len;
    return size;
}

/* Appends the spool's [from, to) to m. */
static int copy_range(struct store_msg *m, struct spool *spool, uint64_t from, uint64_t to,
                      char *chunk)
{
    while (from < to) {
        size_t want = to - from < COPY_CHUNK ? (size_t)(to - from) : COPY_CHUNK;
        ssize_t n = spool_read(spool, from, chunk, want);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO; /* the spool is shorter than it said */
        int rc = store_msg_append(m, chunk, (size_t)n);
        if (rc < 0)
            return rc;
        from += (uint64_t)n;
    }
    return 0;
}

/* Appends the stored copy: the spool with the insert put in and the skips left out. */
static int copy_message(struct store_msg *m, struct commit_job *job, char *chunk)
{
    uint64_t end = spool_size(&job->spool), at = job->insert_at < end ? job->insert_at : end;
    int rc = copy_range(m, &job->spool, 0, at, chunk);
    if (rc == 0 && job->insert_len > 0)
        rc = store_msg_append(m, job->insert, job->insert_len);
    uint64_t off = at;
    for (size_t i = 0; rc == 0 && i < job->n_skips; i++) {
        const struct commit_skip *k = &job->skips[i];
        if (k->offset < off || k->offset + k->len > end)
            return -EINVAL; /* out of order or past the end: a caller's mistake */
        rc = copy_range(m, &job->spool, off, k->offset, chunk);
        off = k->offset + k->len;
    }
    return rc == 0 ? copy_range(m, &job->spool, off, end, chunk) : rc;
}

/* Writes one job inside the open batch. */
static int write_job(struct store *store, struct commit_job *job, char *chunk)
{
    int rc = record_attempts(store, job);
    if (rc < 0 || job->no_message)
        return rc;
    struct store_msg *m;
    rc = store_msg_begin(store, job->received, (int64_t)stored_size(job), &m);
    if (rc < 0)
        return rc;
    if ((rc = copy_message(m, job, chunk)) < 0) {
        store_msg_abort(&m);
        return rc;
    }
    for (size_t i = 0; i < job->n_users; i++)
        store_msg_add_rcpt(m, job->user_ids[i]);
    if (job->n_remote > 0 && (rc = store_msg_set_envelope(m, &job->env)) < 0) {
        store_msg_abort(&m);
        return rc;
    }
    for (size_t i = 0; i < job->n_remote; i++) {
        const struct commit_remote *r = &job->remote[i];
        if ((rc = store_msg_add_remote(m, r->address, r->orcpt, r->notify, job->received)) < 0) {
            store_msg_abort(&m);
            return rc;
        }
    }
    return store_msg_commit(&m, &job->message_id);
}

static void log_store_failed(int rc)
{
    log_error("smtp event=store-failed rc=%d error=\"%s\"", rc, kotak_strerror(rc));
}

static void run_batch(struct committer *c, struct commit_job *batch, char *chunk)
{
    struct commit_job *failed = NULL;
    int rc = store_batch_begin(c->store);
    if (rc == 0) {
        for (struct commit_job *j = batch; j != NULL && failed == NULL; j = j->next)
            if ((j->rc = write_job(c->store, j, chunk)) < 0)
                failed = j;
        if (failed != NULL)
            store_batch_rollback(c->store);
        else
            rc = store_batch_commit(c->store);
    }
    if (failed != NULL && batch->next != NULL) {
        /* Each message again, in a transaction of its own: one's failure is no other's. */
        for (struct commit_job *j = batch; j != NULL; j = j->next) {
            if ((j->rc = store_batch_begin(c->store)) == 0) {
                if ((j->rc = write_job(c->store, j, chunk)) < 0)
                    store_batch_rollback(c->store);
                else
                    j->rc = store_batch_commit(c->store);
            }
            if (j->rc < 0)
                log_store_failed(j->rc);
        }
        return;
    }
    /* The batch could not begin or commit, or its one message failed: nothing of it is stored. */
    if (failed != NULL)
        rc = failed->rc; /* its own error, not the spoiled batch's */
    for (struct commit_job *j = batch; j != NULL; j = j->next)
        j->rc = rc;
    if (rc < 0)
        log_store_failed(rc);
}

/* The next batch; NULL when none came by `until` (uv_hrtime), or once
 * stopped with nothing left (*stopped). */
static struct commit_job *wait_for_jobs(struct committer *c, uint64_t until, bool *stopped)
{
    struct commit_job *batch = take_all(&c->incoming);
    if (batch != NULL)
        return batch;
    uv_mutex_lock(&c->mu);
    /* The flag is set before the last look at the stack: a job pushed
     * after that look sees the flag, and signals under the mutex, which
     * this thread holds until it waits. */
    atomic_store(&c->sleeping, true);
    uint64_t now;
    while ((batch = take_all(&c->incoming)) == NULL && !c->stop && (now = uv_hrtime()) < until)
        uv_cond_timedwait(&c->cv, &c->mu, until - now);
    *stopped = batch == NULL && c->stop;
    atomic_store(&c->sleeping, false);
    uv_mutex_unlock(&c->mu);
    return batch;
}

static void after_commit(struct committer *c, bool checkpoint_now)
{
    int rc = store_checkpointer_committed(c->checkpointer, checkpoint_now);
    if (rc < 0)
        log_error("smtp event=checkpoint-failed rc=%d error=\"%s\"", rc, kotak_strerror(rc));
}

/*
 * Gives the pages of deleted mail back, a step at a time between batches
 * (store_reclaim_step), once a second, and after a pause while there is
 * more. A failure is told once, not each second it lasts. Returns when to
 * look next.
 */
static uint64_t reclaim(struct committer *c, uint64_t now)
{
    int rc = store_reclaim_step(c->store);
    if (rc < 0 && rc != -KOTAK_ELOCKED && rc != c->reclaim_failed)
        log_error("smtp event=reclaim-failed rc=%d error=\"%s\"", rc, kotak_strerror(rc));
    c->reclaim_failed = rc < 0 ? rc : 0;
    /* The file shrinks only at a checkpoint that copies the whole WAL, which
     * a reader's snapshot can stop short: one is asked for after each step,
     * and each second for a while after the last. */
    if (rc > 0)
        c->reclaim_checkpoints = RECLAIM_CHECKPOINTS_AFTER;
    else if (c->reclaim_checkpoints > 0)
        c->reclaim_checkpoints--;
    else
        return now + RECLAIM_EVERY_NS;
    after_commit(c, true);
    /* The pause runs from the step's end: from its start, a step as long as
     * the pause left other writers no time at all. */
    return rc > 0 ? uv_hrtime() + RECLAIM_PAUSE_MS * 1000000ull : now + RECLAIM_EVERY_NS;
}

static void thread_main(void *arg)
{
    struct committer *c = arg;
    char *chunk = xmalloc(COPY_CHUNK);
    uint64_t next_reclaim = uv_hrtime() + RECLAIM_EVERY_NS;
    for (;;) {
        uint64_t now = uv_hrtime();
        if (now >= next_reclaim)
            next_reclaim = reclaim(c, now);
        bool stopped = false;
        struct commit_job *batch = wait_for_jobs(c, next_reclaim, &stopped);
        if (stopped)
            break;
        if (batch == NULL)
            continue;
        run_batch(c, batch, chunk);
        while (batch != NULL) {
            struct commit_job *next = batch->next;
            push(&c->finished, batch);
            batch = next;
        }
        uv_async_send(&c->async);
        after_commit(c, false);
    }
    free(chunk);
}

static void on_done(uv_async_t *a)
{
    struct committer *c = a->data;
    struct commit_job *list = take_all(&c->finished);
    while (list != NULL) {
        struct commit_job *j = list;
        list = j->next;
        j->next = NULL;
        c->in_flight--;
        c->done_cb(j, c->ctx);
    }
}

static void async_closed(uv_handle_t *h)
{
    struct committer *c = h->data;
    uv_mutex_destroy(&c->mu);
    uv_cond_destroy(&c->cv);
    free(c);
}

/* Stops the threads (those started) and closes the stores. */
static void stop_threads(struct committer *c, bool store_thread)
{
    uv_mutex_lock(&c->mu);
    c->stop = true;
    uv_cond_signal(&c->cv);
    uv_mutex_unlock(&c->mu);
    if (store_thread)
        uv_thread_join(&c->thread);
    store_checkpointer_stop(&c->checkpointer);
    store_close(&c->store);
}

struct committer *committer_start(uv_loop_t *loop, struct store *store,
                                  struct store *checkpoint_store,
                                  void (*done)(struct commit_job *job, void *ctx), void *ctx)
{
    struct committer *c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->store = store;
    c->done_cb = done;
    c->ctx = ctx;
    uv_mutex_init(&c->mu);
    uv_cond_init(&c->cv);
    uv_async_init(loop, &c->async, on_done);
    c->async.data = c;
    if ((c->checkpointer = store_checkpointer_start(store, checkpoint_store)) == NULL) {
        store_close(&c->store);
        uv_close((uv_handle_t *)&c->async, async_closed);
        return NULL;
    }
    if (uv_thread_create(&c->thread, thread_main, c) != 0) {
        stop_threads(c, false);
        uv_close((uv_handle_t *)&c->async, async_closed);
        return NULL;
    }
    return c;
}

void committer_submit(struct committer *c, struct commit_job *job)
{
    c->in_flight++;
    push(&c->incoming, job);
    if (atomic_load(&c->sleeping)) {
        uv_mutex_lock(&c->mu);
        uv_cond_signal(&c->cv);
        uv_mutex_unlock(&c->mu);
    }
}

size_t committer_in_flight(const struct committer *c)
{
    return c->in_flight;
}

void committer_stop(struct committer *c)
{
    stop_threads(c, true);
    on_done(&c->async); /* results of the last batch */
    uv_close((uv_handle_t *)&c->async, async_closed);
}
