/*
 * store_int.h — what the files of store/ share and nobody else sees.
 */
#ifndef KOTAK_STORE_INT_H
#define KOTAK_STORE_INT_H

#include <sqlite3.h>
#include <stdbool.h>

#include "store.h"

/* Every statement the store runs, prepared once on first use. */
enum store_stmt {
    STMT_DOMAIN_ID,
    STMT_DOMAIN_ADD,
    STMT_DOMAIN_DEL,
    STMT_DOMAIN_LIST,
    STMT_DOMAIN_FIRST,
    STMT_USER_GET,
    STMT_USER_ADD,
    STMT_USER_DEL,
    STMT_USER_PASSWD,
    STMT_USER_LIST,
    STMT_USER_LIST_DOMAIN,
    STMT_QUOTA_GET,
    STMT_QUOTA_USER_SET,
    STMT_QUOTA_DOMAIN_SET,
    STMT_QUOTA_WARNED,
    STMT_QUOTA_REARM,
    STMT_ALIAS_EXISTS,
    STMT_ALIAS_TARGETS,
    STMT_ALIAS_ADD,
    STMT_ALIAS_DEL_ONE,
    STMT_ALIAS_DEL_ALL,
    STMT_ALIAS_DEL_TARGET,
    STMT_ALIAS_LIST,
    STMT_MSG_ADD,
    STMT_MSG_SIZE,
    STMT_CHUNK_ADD,
    STMT_DROP_ADD,
    STMT_MBOX_LIST,
    STMT_HEAD_READ,
    STMT_CHUNK_READ,
    STMT_MBOX_DELETE,
    STMT_MBOX_RETRIEVED,
    STMT_MBOX_EXPIRE,
    STMT_MSG_EOH,
    STMT_LOGIN_GET,
    STMT_LOGIN_SET,
    STMT_QUEUE_ADD,
    STMT_QUEUE_RCPT_ADD,
    STMT_QUEUE_DUE,
    STMT_QUEUE_DROPPED,
    STMT_QUEUE_LIST,
    STMT_QUEUE_LIST_ONE,
    STMT_QUEUE_RCPT_SET,
    STMT_QUEUE_LOG_ADD,
    STMT_QUEUE_LOG_LIST,
    STMT_QUEUE_DONE,
    STMT_QUEUE_RETRY,
    STMT_QUEUE_RETRY_ALL,
    STMT_QUEUE_DROP,
    STMT_QUEUE_EXISTS,
    STMT_QUEUE_SUMMARY,
    STMT_READ_BEGIN,
    STMT_WRITE_BEGIN,
    STMT_COMMIT,
    STMT_COUNT
};

/* A body is kept in pieces of this size: the first in its messages row
 * (the head), the rest in chunks rows; every piece but the last is full. */
#define STORE_CHUNK (64 * 1024)

struct store {
    sqlite3 *db;
    sqlite3_stmt *stmts[STMT_COUNT];
    char uidl_prefix[17]; /* random per store, so UIDLs of a new store never repeat an old one's */
    bool in_batch;
    int batch_lost; /* why a message of the batch failed, spoiling the batch */
    bool readonly;
    int wal_pages; /* as of the last commit, with deferred checkpoints */
    bool reclaiming;  /* store_reclaim_step has begun and not yet reached its low mark */
    int reclaim_step; /* pages its next step gives back at most */
};

/*
 * Registers the store's VFS (walvfs.c): the system's own, writing each WAL
 * in fewer, larger writes into a file grown ahead of them. Returns its
 * name, or NULL if it could not be registered (SQLite's default then
 * serves). Called once, by store_open.
 */
const char *store__register_vfs(void);

/* The prepared statement, reset and unbound, or NULL after an error. */
sqlite3_stmt *store__stmt(struct store *s, enum store_stmt id);

/* Maps an SQLite result code to kotak's: -ENOSPC, -KOTAK_ELOCKED, .... */
int store__rc(struct store *s, int sqlite_rc);

/* Steps a bound statement that returns no rows to its end and resets it: 0 or a mapped code. */
int store__step_done(struct store *s, sqlite3_stmt *st);

/* Runs prepared statement id, which has no parameters and no results, to its end. */
int store__run(struct store *s, enum store_stmt id);

/*
 * Rewrites a store made without auto_vacuum (before kotak gave the pages of
 * deleted mail back) so that it has it: a VACUUM, which holds the write
 * lock throughout and needs free disk space as large as the store twice
 * over, so it is run only where nobody else uses the store (`kotak
 * restore`'s copy). 0 (also when there was nothing to do) or a code.
 */
int store__make_reclaiming(struct store *s);

/* The integer the one-row statement sql (a PRAGMA) answers: 0 or a mapped code. */
int store__pragma_int(struct store *s, const char *sql, int *v_r);

/* Runs a statement without results: 0 or a mapped code. */
int store__exec(struct store *s, const char *sql);

/*
 * Writes the queue entry of message_id and a row for each remote recipient
 * (queue.c), inside the transaction the message is committed in.
 */
struct store__remote {
    char *address, *orcpt;
    unsigned notify;
    int64_t next_try;
};
int store__queue_write(struct store *s, int64_t message_id, int64_t received,
                       const struct store_envelope *env, const struct store__remote *r, size_t n);

/* BEGIN IMMEDIATE / COMMIT (prepared once, like the rest) / ROLLBACK with mapped codes. */
int store__begin(struct store *s);
int store__commit(struct store *s);
void store__rollback(struct store *s);

/* The id of a local domain: 1 found, 0 absent, or a negative code. */
int store__domain_id(struct store *s, const char *domain, int64_t *id_r);

#endif
