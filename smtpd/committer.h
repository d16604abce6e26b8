/*
 * committer.h — the store thread of kotak-smtpd, with group commit.
 *
 * The event loop hands over finished messages (a spool and the users it is
 * for); the thread writes every message that is waiting into one
 * transaction and commits them with one fsync, then hands the results back
 * to the loop. While it commits, new messages queue up for the next batch,
 * so throughput grows with load instead of being one fsync per message,
 * and a lone message waits for nothing but its own commit.
 */
#ifndef KOTAK_COMMITTER_H
#define KOTAK_COMMITTER_H

#include <stdint.h>
#include <uv.h>

#include "spool.h"
#include "store.h"

struct committer;

/* A recipient at another server, queued with the message. */
struct commit_remote {
    char *address, *orcpt; /* owned; orcpt may be NULL */
    unsigned notify;
};

/* An attempt of the queue runner's to record, with what follows from it. */
struct commit_attempt {
    int64_t rcpt_id;
    struct store_attempt a; /* host, ip and reply owned by the job */
};

/* Octets of the spool left out of the stored copy (a forged header field). */
struct commit_skip {
    uint64_t offset, len;
};

/*
 * One transaction's worth: a message (a spool) for local users and for the
 * queue, and the queue runner's attempts, any of them, committed together
 * so that a bounce and the failure it reports are stored at once or not at
 * all.
 */
struct commit_job {
    bool from_queue;       /* the queue runner's (outbound.c) */
    unsigned tries;        /* the runner's count of failed commits of it */
    bool no_message;       /* attempts only: spool holds nothing */
    struct spool spool;    /* moved in; freed by the committer */
    /* The stored copy is the spool with insert[0..insert_len) put in at
     * insert_at (header fields the checks and the signer add) and the
     * skips (sorted, apart, past insert_at) left out. All owned. */
    char *insert;
    size_t insert_len;
    uint64_t insert_at;
    struct commit_skip *skips;
    size_t n_skips;
    int64_t *user_ids;     /* owned by the job */
    size_t n_users;
    struct store_envelope env; /* with remote recipients; sender and envid owned */
    struct commit_remote *remote;
    size_t n_remote;
    struct commit_attempt *attempts;
    size_t n_attempts;
    int64_t received;
    int rc;                /* the result: 0, -ENOSPC, ... */
    int64_t message_id;
    void *owner;           /* the loop's; given back with the result */
    struct commit_job *next;
};

/*
 * Starts the thread on an open store it takes over, and calls done on the
 * loop thread for each job, in order, once its batch has committed (or
 * failed). checkpoint_store, a second connection to the same file, is
 * taken over too: a thread of its own copies the WAL back into the
 * database file from it, so that no batch waits for that copy. Returns
 * NULL on failure.
 */
struct committer *committer_start(uv_loop_t *loop, struct store *store,
                                  struct store *checkpoint_store,
                                  void (*done)(struct commit_job *job, void *ctx), void *ctx);

/* Queues a job; the loop thread keeps no pointer into it until done. */
void committer_submit(struct committer *c, struct commit_job *job);

/* Jobs submitted whose done has not run yet. */
size_t committer_in_flight(const struct committer *c);

/*
 * Finishes the queued jobs, stops the thread, closes the store and frees
 * everything once the loop has closed the committer's handle.
 */
void committer_stop(struct committer *c);

/* Frees a job and what it owns. */
void commit_job_free(struct commit_job *job);

/* Drops the message of a job, keeping its attempts: no_message from then on. */
void commit_job_drop_message(struct commit_job *job);

#endif
