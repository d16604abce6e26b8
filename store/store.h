/*
 * store.h — kotak's message store: one SQLite file holding domains, users,
 * aliases, messages and maildrops.
 *
 * The API carries plain structs and ids; no SQLite type appears here, so the
 * store could one day live behind a socket. A `struct store` belongs to one
 * thread at a time. Every function returns 0 (or, for a look-up, 1 found and
 * 0 absent) or a negative code: -EEXIST, -ENOENT, -ENOTEMPTY, -ENOSPC (the
 * disk or the store's size limit is full), -KOTAK_ELOCKED (another process
 * holds the write lock past the busy timeout), -KOTAK_EREADONLY,
 * -KOTAK_ENODOMAIN, -KOTAK_ESTORE. store_errmsg() gives SQLite's own words
 * for the last failure.
 *
 * Writes run in `BEGIN IMMEDIATE` transactions with synchronous=FULL in WAL
 * mode: when a write function returns 0, its change is on disk.
 */
#ifndef KOTAK_STORE_H
#define KOTAK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "auth.h"

struct store;
struct store_msg;

enum store_open_flags {
    STORE_CREATE = 1 << 0,   /* create the file if it is missing */
    STORE_READONLY = 1 << 1, /* never write; no migration */
};

#define STORE_UIDL_MAX 71 /* RFC 1939: 1 to 70 octets, and a NUL; a kept one may be that long */
#define STORE_BUSY_TIMEOUT_MS 5000

/*
 * Opens (and with STORE_CREATE creates) the store at path; ":memory:" gives
 * a private in-memory store. Brings an older schema up to date. Returns 0
 * with *s_r set, or a negative code with one sentence in err.
 */
int store_open(const char *path, unsigned flags, struct store **s_r, char *err, size_t err_size);

/* Closes the store and sets *s to NULL. NULL is allowed. */
void store_close(struct store **s);

/* SQLite's message for the last failure on s. */
const char *store_errmsg(struct store *s);

/* How long a write waits for another process's lock before -KOTAK_ELOCKED. */
void store_set_busy_timeout(struct store *s, int ms);

/*
 * Caps the store file at about bytes (0: no cap) for writes through s: a
 * write that would pass it fails with -ENOSPC, as on a full disk, and
 * succeeds again once there is room. Returns 0 or a negative code.
 */
int store_set_max_size(struct store *s, uint64_t bytes);

/*
 * Checkpoints copy what the WAL holds back into the database file. By
 * default SQLite runs one inside the commit that fills the WAL past 1000
 * pages, and whoever committed waits for the copy and its fsync. After
 * store_defer_checkpoints, commits through s never do: the owner watches
 * store_wal_pages and runs store_checkpoint, from another connection
 * (another thread) or between its own commits.
 */
void store_defer_checkpoints(struct store *s);

/* The WAL's length in pages as of the last commit through s (deferred mode). */
int store_wal_pages(const struct store *s);

/*
 * Copies what it can of the WAL into the database file and syncs it,
 * waiting for no reader or writer. When nobody else was writing meanwhile,
 * the WAL is then copied out whole and the next commit starts it again
 * from its beginning. Returns 0 (also when another checkpoint was already
 * running) or a negative code.
 */
int store_checkpoint(struct store *s);

/*
 * A thread of checkpoints (checkpointer.c) for a writer that commits
 * often: started on writer, whose checkpoints it defers, and on own, a
 * second connection to the same file that it takes over and checkpoints
 * through, so that no commit waits for the copy. NULL when no thread could
 * be started (own is closed then, and writer's checkpoints stay SQLite's).
 */
struct store_checkpointer *store_checkpointer_start(struct store *writer, struct store *own);

/*
 * Called on the writer's thread after each of its commits: wakes the
 * thread when the WAL has grown enough (or at once, with now: the file
 * shrinks only when a checkpoint copies a reclaim step out), or
 * checkpoints through writer itself when the WAL is growing past what the
 * thread keeps up with. Returns 0, or the negative code of a checkpoint
 * that failed since the last call (the WAL still holds what it did not
 * copy: nothing is lost).
 */
int store_checkpointer_committed(struct store_checkpointer *cp, bool now);

/* Stops the thread, closes its connection and frees *cp_r (NULL is fine). */
void store_checkpointer_stop(struct store_checkpointer **cp_r);

/*
 * Gives some of the pages deleted mail left free back to the filesystem
 * (reclaim.c), in one short write transaction, when they have grown to an
 * eighth of the file; the file shrinks at the next checkpoint. Called by
 * the writer between its commits, about once a second, and again
 * RECLAIM_PAUSE_MS after it returns 1 (a step was taken; there may be
 * more): the pause lets another process's writer, waiting in SQLite's busy
 * handler, have the lock. Returns 0 when there was nothing (left) to do, 1,
 * or a negative code (-KOTAK_ELOCKED: another writer held the lock, which
 * a step never waits for; the next call tries again).
 */
#define RECLAIM_PAUSE_MS 120

/*
 * Whether the store gives the pages of deleted mail back (1): every store
 * made since kotak did so, and an older one once `kotak restore` has put it
 * back; 0 for an older one, or a negative code.
 */
int store_reclaims(struct store *s);
int store_reclaim_step(struct store *s);

/* --- domains ----------------------------------------------------------- */

struct store_domain {
    const char *name; /* valid during the callback only */
    int64_t users;
    int64_t aliases;
    int64_t quota; /* the default quota of its users in octets; 0: none */
};

/* Adds a local domain (already parsed and folded by addr_parse_domain). */
int store_domain_add(struct store *s, const char *domain);

/* Removes a domain with no users and no aliases: else -ENOTEMPTY. */
int store_domain_del(struct store *s, const char *domain);

/* 1 when domain is local, 0 when not, or a negative code. */
int store_domain_exists(struct store *s, const char *domain);

/* Calls cb for each domain, by name; a non-zero return from cb stops and is returned. */
int store_domain_list(struct store *s, int (*cb)(void *ctx, const struct store_domain *d),
                      void *ctx);

/* --- users -------------------------------------------------------------- */

struct store_user {
    int64_t id;
    char address[ADDR_TEXT_SIZE];
    char hash[AUTH_HASH_MAX];
    int64_t messages; /* in the maildrop */
    int64_t bytes;
    int64_t quota;    /* store_user_list only: the quota that applies (its own, else the
                       * domain's), octets; 0: none */
};

/*
 * Adds a user with a crypt(3) hash. -KOTAK_ENODOMAIN when the domain is not
 * local, -EEXIST when the address is already a user or an alias. The first
 * user of a domain with no postmaster (user or alias) also becomes the
 * target of its postmaster@ alias (RFC 5321 4.5.1).
 */
int store_user_add(struct store *s, const struct addr *a, const char *hash);

/*
 * Removes a user, their maildrop, and every alias target that names them,
 * in one transaction. -ENOENT when there is no such user.
 */
int store_user_del(struct store *s, const struct addr *a);

/* Replaces a user's hash. -ENOENT when there is no such user. */
int store_user_passwd(struct store *s, const struct addr *a, const char *hash);

/* 1 with *u_r filled (counts left 0), 0 when there is no such user. */
int store_user_lookup(struct store *s, const struct addr *a, struct store_user *u_r);

/*
 * The user a login name stands for: the name is a mailbox address, any
 * case. 1 with *u_r filled, 0 when it is no user's (or no address), or a
 * negative code. The caller wipes *u_r's hash after use.
 */
int store_user_by_login(struct store *s, const char *login, struct store_user *u_r);

/* Calls cb for each user (of domain, or all when NULL), by address, with counts. */
int store_user_list(struct store *s, const char *domain,
                    int (*cb)(void *ctx, const struct store_user *u), void *ctx);

/* --- quotas ------------------------------------------------------------- */

/*
 * A user's quota is the most their maildrop may hold, in octets: the user's
 * own, else their domain's default, else none. users.used, kept by the
 * schema's triggers, is what the maildrop holds, so a check is one row.
 */
#define STORE_QUOTA_WARN_PCT 90  /* a POP3 login at this much gets the warning, once */
#define STORE_QUOTA_REARM_PCT 80 /* below this much, a later fill warns again */

struct store_quota {
    uint64_t used;  /* octets the maildrop holds */
    uint64_t quota; /* the quota that applies; 0: none */
    bool warned;    /* the near-quota warning went out and was not re-armed since */
    char address[ADDR_TEXT_SIZE]; /* the user's, local@domain */
};

/* The quota of user_id: 1 with *q_r filled, 0 when there is no such user, or a code. */
int store_quota_get(struct store *s, int64_t user_id, struct store_quota *q_r);

/*
 * Adds a user or a domain as store_user_add and store_domain_add do, with a
 * quota (0: none, the domain's default for a user), in the same transaction.
 */
int store_user_add_quota(struct store *s, const struct addr *a, const char *hash,
                         uint64_t quota);
int store_domain_add_quota(struct store *s, const char *domain, uint64_t quota);

/* Sets a user's quota (0: none of its own, the domain's applies). -ENOENT: no such user. */
int store_user_set_quota(struct store *s, const struct addr *a, uint64_t quota);

/* Sets a domain's default quota (0: none). -ENOENT: no such domain. */
int store_domain_set_quota(struct store *s, const char *domain, uint64_t quota);

enum store_quota_fit {
    STORE_QUOTA_FITS,  /* take it */
    STORE_QUOTA_FULL,  /* not now: the maildrop is full, or this message would overfill it */
    STORE_QUOTA_NEVER, /* the message is larger than the whole quota */
};

/*
 * Whether a message of size octets may go into a maildrop holding used of
 * quota (0: none): pure. A maildrop under its quota takes a message that
 * brings it over by at most a tenth of the quota (Dovecot's quota_grace),
 * so that the last message before the limit is not refused for a few
 * octets; one at or over it takes nothing more.
 */
enum store_quota_fit store_quota_fit(uint64_t used, uint64_t quota, uint64_t size);

/*
 * Delivers the near-quota warning msg[0..len) (a whole message, CRLF line
 * ends) into user_id's maildrop, as delivery stores a message, and marks it
 * sent, in one transaction. Returns 1 stored, 0 when it was sent already
 * (nothing stored), or a negative code.
 */
int store_quota_warn(struct store *s, int64_t user_id, const void *msg, size_t len,
                     int64_t arrived);

/*
 * Re-arms the warning of user_id when the maildrop holds less than
 * STORE_QUOTA_REARM_PCT of the quota (or no quota applies): 1 re-armed, 0
 * nothing to do, or a negative code.
 */
int store_quota_rearm(struct store *s, int64_t user_id);

/* --- aliases ------------------------------------------------------------ */

/*
 * Adds source -> target for each target. A source whose local part is ""
 * is the domain's catch-all. The source's domain must be local and the
 * source must not be a user (-EEXIST); a target in a local domain must be a
 * user or an alias there (-ENOENT); an existing pair is -EEXIST. All or
 * nothing.
 */
int store_alias_add(struct store *s, const struct addr *source, const struct addr *targets,
                    size_t n);

/* Removes source -> target, or every target of source when target is NULL. -ENOENT if none. */
int store_alias_del(struct store *s, const struct addr *source, const struct addr *target);

/* Calls cb for each pair, by source; source is "@domain" for a catch-all. */
int store_alias_list(struct store *s, int (*cb)(void *ctx, const char *source, const char *target),
                     void *ctx);

/* --- recipients --------------------------------------------------------- */

#define STORE_EXPAND_DEPTH 8 /* alias of alias of ...: deeper is a loop */

struct store_rcpts {
    size_t n;          /* local users, each once */
    size_t cap;
    int64_t *user_ids;
    size_t n_remote; /* alias targets outside the local domains, each once */
    char **remote;   /* their addresses */
};

/*
 * Resolves rcpt to local users: a user; else an alias, expanded; else, for
 * "user+tag", the same for "user"; else the domain's catch-all. Appends to
 * r (zeroed by the caller, freed with store_rcpts_free), skipping users
 * already there. An empty domain (the bare "Postmaster" of RFC 5321 4.5.1)
 * stands for the first local domain. Returns 1 when the address is known, 0 when the domain is
 * local but nobody has the address, -KOTAK_ENODOMAIN when the domain is not
 * local.
 */
int store_resolve(struct store *s, const struct addr *rcpt, struct store_rcpts *r);
void store_rcpts_free(struct store_rcpts *r);

/* --- delivery ----------------------------------------------------------- */

/*
 * One message, stored once for all its recipients:
 *   store_msg_begin -> store_msg_append* -> store_msg_add_rcpt* ->
 *   store_msg_commit | store_msg_abort
 * Outside a batch, begin opens a write transaction and commit makes it
 * durable. Inside a batch (store_batch_begin), the batch commit makes all
 * its messages durable with one fsync (group commit); a message that fails
 * or is aborted spoils the batch: later ones fail with its error, and the
 * batch commit rolls everything back and returns it, for the caller to
 * redo the messages one by one. Nothing is visible before commit.
 * size is the body's length when the caller knows it ahead (a spooled
 * message), which saves rewriting the row at commit; -1 when it does not.
 */
int store_msg_begin(struct store *s, int64_t received, int64_t size, struct store_msg **m_r);

/* Appends body bytes, exactly as POP3 will send them (CRLF line ends). */
int store_msg_append(struct store_msg *m, const void *p, size_t n);

/* Adds a maildrop entry for a local user; duplicates are ignored. */
int store_msg_add_rcpt(struct store_msg *m, int64_t user_id);

/* Stores the message; *m is freed and NULL whatever the result. */
int store_msg_commit(struct store_msg **m, int64_t *msg_id_r);

/* Forgets the message; *m is freed and NULL. */
void store_msg_abort(struct store_msg **m);

/* Opens a group of deliveries committed together. */
int store_batch_begin(struct store *s);

/* Makes every message committed in the batch durable at once; see above for a spoiled batch. */
int store_batch_commit(struct store *s);

/* Drops every message of the batch. */
void store_batch_rollback(struct store *s);

/* --- the outbound queue --------------------------------------------------- */

/* The store's secret for SRS (smtpd/srs.h), made with the store. */
int store_srs_secret(struct store *s, uint8_t out[32]);

/* RFC 3461: what the sender asked to be told (NOTIFY), and how much of the
 * message a report carries (RET). The one definition: the queue keeps these
 * values, smtp_client sends them and dsn honours them. */
enum store_notify {
    STORE_NOTIFY_SUCCESS = 1 << 0,
    STORE_NOTIFY_FAILURE = 1 << 1,
    STORE_NOTIFY_DELAY = 1 << 2,
    STORE_NOTIFY_NEVER = 1 << 3, /* 0: not given, the default (failure and delay) */
};
enum store_ret { STORE_RET_DEFAULT, STORE_RET_HDRS, STORE_RET_FULL };

/* The envelope of a message queued for other servers. */
struct store_envelope {
    const char *sender; /* the reverse-path, "" for <> */
    int64_t user_id;    /* the logged-in user who sent it; 0: none (forwarded mail) */
    enum store_ret ret;
    const char *envid; /* ENVID, decoded; NULL when not given */
    bool bounce;       /* a report of ours: never reported on, and given up sooner */
    bool smtputf8;     /* it came with SMTPUTF8 (RFC 6531), which it then needs to go on */
};

/*
 * Queues the message being stored for a recipient of another server: its
 * queue entry and recipient rows are written at commit, in the same
 * transaction as the body and any maildrop entries, first due at
 * next_try. The envelope is set once, before the first remote recipient;
 * strings are copied. A message may have local and remote recipients.
 */
int store_msg_set_envelope(struct store_msg *m, const struct store_envelope *env);
int store_msg_add_remote(struct store_msg *m, const char *address, const char *orcpt,
                         unsigned notify, int64_t next_try);

enum store_rcpt_state { STORE_RCPT_QUEUED, STORE_RCPT_DELIVERED, STORE_RCPT_FAILED };

/* One queued recipient, as the queue runner and `kotak queue` see it. */
struct store_queued {
    int64_t rcpt_id, queue_id, message_id;
    char address[ADDR_TEXT_SIZE];
    char domain[ADDR_DOMAIN_MAX + 1];
    char sender[ADDR_TEXT_SIZE]; /* "" for <> */
    char orcpt[ADDR_TEXT_SIZE + 8];
    char envid[101]; /* ENVID (RFC 3461 4.4: at most 100 octets), "" when not given */
    unsigned notify;
    enum store_ret ret;
    bool bounce, delay_notified, smtputf8;
    enum store_rcpt_state state;
    int64_t user_id, created, size, next_try;
    int attempts, last_code;
    char last_reply[512];
    bool dropped; /* by `kotak queue drop`: to fail, and bounce, without a try */
};

/*
 * Calls cb for the queued recipients to act on: first those dropped by
 * `kotak queue drop`, then those due by now (next_try <= now), oldest due
 * first, leaving out the domains of skip_domains (NULL, or a JSON array of
 * strings: destinations that hold their share already); at most max of
 * each. A non-zero return from cb stops and is returned.
 */
int store_queue_due(struct store *s, int64_t now, size_t max, const char *skip_domains,
                    int (*cb)(void *ctx, const struct store_queued *q), void *ctx);

/* One delivery attempt for one recipient, and what follows from it. */
struct store_attempt {
    int64_t at;
    const char *host, *ip; /* whom it talked to; "" when it got nowhere */
    int code;              /* the reply code, or 0 for a local failure */
    const char *reply;     /* the reply or the reason, one line */
    enum store_rcpt_state state;
    int64_t next_try;    /* when state stays QUEUED */
    bool delay_notified; /* a "delayed" report has gone out */
};

/*
 * Records an attempt for a recipient that is still queued: -ENOENT for one
 * that is not there or already delivered or failed, whose state never
 * changes again (so no mail goes out twice). Once no recipient of its
 * entry is queued any more, the entry goes (and its body, when no maildrop
 * holds it). Inside a batch, it commits with the batch; else at once.
 */
int store_queue_record(struct store *s, int64_t rcpt_id, const struct store_attempt *a);

/* Every queued recipient, by entry then recipient, for `kotak queue list|show`. */
int store_queue_list(struct store *s, int64_t queue_id /* 0: all */,
                     int (*cb)(void *ctx, const struct store_queued *q), void *ctx);

/* How many recipients are queued, and when the oldest of their entries was made (0: none). */
int store_queue_summary(struct store *s, int64_t *recipients_r, int64_t *oldest_r);

/* The attempts made for a recipient, oldest first. */
struct store_queue_event {
    int64_t at;
    const char *host, *ip, *reply; /* valid during the callback only */
    int code;
};
int store_queue_log(struct store *s, int64_t rcpt_id,
                    int (*cb)(void *ctx, const struct store_queue_event *e), void *ctx);

/*
 * Makes the queued recipients of an entry (0: of every entry) due at now.
 * Returns how many, or a negative code; -ENOENT for an entry not there.
 */
int store_queue_retry(struct store *s, int64_t queue_id, int64_t now);

/*
 * Marks the queued recipients of an entry dropped and due at now:
 * kotak-smtpd fails them without a try and bounces them to the sender.
 * Returns how many, or a negative code; -ENOENT for an entry not there.
 */
int store_queue_drop(struct store *s, int64_t queue_id, int64_t now);

/* --- importing (kotak import) ------------------------------------------ */

#define STORE_DIGEST_SIZE 32 /* SHA-512/256 of a message's octets as stored */

/* The digest by which an import knows a message's octets. */
void store_digest(const void *msg, size_t len, uint8_t out[STORE_DIGEST_SIZE]);

/*
 * An import into one user's maildrop: messages added in order, in batches
 * of one transaction each, every batch durable when it commits. A run
 * killed halfway leaves whole batches only, and run again skips what is
 * there (store_import_seen), so nothing is lost or added twice.
 */
struct store_import;

/* The messages of a batch at most (it may also end at 32 MiB or after 1 s). */
#define STORE_IMPORT_BATCH 2000

/*
 * Starts an import into user_id's maildrop from source, which names where
 * the messages come from and is written to each entry's maildrop.source:
 * "pop3 HOST:PORT LOGIN" (the host in lower case), "mbox", "maildir". The
 * string is copied. Returns 0 with *imp_r, or a negative code.
 */
int store_import_begin(struct store *s, int64_t user_id, const char *source,
                       struct store_import **imp_r);

/*
 * Whether the maildrop holds the message already. 1 yes, 0 no, or a
 * negative code. size is the message's octets as its source gives them
 * (POP3 LIST's CRLF size, or the length of the octets in hand), -1 when
 * not known.
 *
 * By UIDL alone only when an entry keeps uidl as the UIDL its source gave
 * (not the store's own PREFIX.N), came from this import's source, and
 * holds size octets (its messages.size, not maildrop.size); then digest
 * may be NULL, so that a POP3 import skips a message without fetching it,
 * and when digest is given it must match that entry's. With size -1 a UIDL
 * alone never proves presence. The size is there because a source rebuilt
 * under the same name hands out old UIDLs for new mail; one of the very
 * same size still passes. A UIDL of another source (two servers both
 * number from 1, an mbox's X-UIDL, a restored copy of this store) or of an
 * entry delivered here proves nothing.
 *
 * A uidl that store_import_add would keep (valid, free here): 0, even when
 * an entry has the same octets. Two messages with two UIDLs are two
 * entries, whether they came from one source or two: a second copy of the
 * octets rather than a message that vanishes for a client that tracked its
 * UIDL. A rerun after a kill still adds nothing twice, since by then the
 * UIDL is taken by the entry of the same source and size. With no uidl, a
 * uidl not to keep, or one another entry holds, the digest decides: 1 when
 * an entry has the same digest, 0 when none does, and 0 when digest is
 * NULL, which means "fetch the message and ask again with its digest". A
 * message found absent goes to store_import_add, which keeps its UIDL when
 * it is free, else gives it a new one: never skipped because its UIDL is
 * taken. An entry of this source handed another UIDL that way is found by
 * the UIDL its source gave (same size and digest rule), also once that
 * UIDL has become free.
 *
 * Found present: 2 when this import met the same octets before (it added
 * them, or found them present: the source holds them twice), else 1.
 * Digests are looked up in memory, as the maildrop was when the import
 * began plus what it added: two imports into one maildrop at once may each
 * add a message the other adds (never lose one).
 */
int store_import_seen(struct store_import *imp, const char *uidl, int64_t size,
                      const uint8_t digest[STORE_DIGEST_SIZE]);

/*
 * Adds a message to the batch: its octets as they came, arrived as Unix
 * time, and the UIDL a client saw for it before (NULL: none). That UIDL is
 * kept when it is one RFC 1939 allows (1 to 70 octets 0x21..0x7E), no
 * other entry of the maildrop has it, and it cannot be one this store
 * hands out itself; else the entry gets a new one. *kept_r says which.
 * The batch commits once it holds enough (STORE_IMPORT_BATCH messages,
 * 32 MiB, or a second open: a batch holds the write lock the daemons wait on); that
 * bound is looked at only here, so a caller commits before it waits for
 * anything (see store_import_commit). The entry records the import's
 * source. digest NULL: computed here. When an add fails, the batch's
 * messages not yet committed are dropped with it, and the next add opens a
 * new batch. The quota is not applied: an import moves in what the user
 * had.
 */
int store_import_add(struct store_import *imp, const void *msg, size_t len, int64_t arrived,
                     const char *uidl, const uint8_t digest[STORE_DIGEST_SIZE], bool *kept_r);

/*
 * Commits what the batch holds, if one is open (0 and nothing done when
 * not); the next add starts another. A caller about to block (poll(2) on a
 * socket, a read that may wait) calls this first: an open batch holds the
 * store's write lock, and kotak-smtpd's commits give up after
 * STORE_BUSY_TIMEOUT_MS. On failure the batch is rolled back.
 */
int store_import_commit(struct store_import *imp);

/* Commits the rest and frees *imp_r; NULL is fine. */
int store_import_end(struct store_import **imp_r);

/* --- maildrops ---------------------------------------------------------- */

struct store_mail {
    int64_t id;         /* the maildrop entry */
    int64_t message_id; /* the body, shared with other recipients */
    int64_t size;       /* octets as RETR sends them, before byte-stuffing */
    int64_t arrived;    /* Unix time */
    char uidl[STORE_UIDL_MAX];
    /* The header section has no empty line after it (common/header_eoh.h):
     * RETR and TOP insert CRLF at eoh_at, and size counts those 2 octets. */
    bool eoh_missing;
    int64_t eoh_at;
};

/* The user's maildrop, oldest first, into a new array the caller frees. */
int store_mbox_list(struct store *s, int64_t user_id, struct store_mail **list_r, size_t *n_r);

/*
 * Reads up to n bytes of a message body from offset into p; *got_r is 0 at
 * the end. Lets a large message be streamed in chunks.
 */
int store_mbox_read(struct store *s, int64_t message_id, int64_t offset, void *p, size_t n,
                    size_t *got_r);

/*
 * Removes the given entries of the user's maildrop in one transaction; a
 * body goes with its last entry. Entries not the user's are left alone.
 */
int store_mbox_delete(struct store *s, int64_t user_id, const int64_t *ids, size_t n);

/*
 * POP3's UPDATE state ([pop3] expire): removes the entries del[0..n_del)
 * and records now as the retrieval time of the entries ret[0..n_ret) that
 * have none yet (the first RETR counts), in one transaction. Entries not
 * the user's are left alone. Deletions that take the maildrop under
 * STORE_QUOTA_REARM_PCT of its quota re-arm the near-quota warning in the
 * same transaction (store_quota_rearm), so that a fill before the next
 * login warns at it. Returns 0 or a negative code; on failure nothing
 * changed.
 */
int store_mbox_update(struct store *s, int64_t user_id, const int64_t *del, size_t n_del,
                      const int64_t *ret, size_t n_ret, int64_t now);

/*
 * Removes up to max entries of the user's maildrop that were first
 * retrieved at or before `before` ([pop3] expire: now less N days), oldest
 * first, in one transaction; a body goes with its last entry. An entry
 * never retrieved stays. *removed_r is how many went; fewer than max means
 * none is left. Returns 0 or a negative code.
 */
int store_mbox_expire(struct store *s, int64_t user_id, int64_t before, size_t max,
                      size_t *removed_r);

/*
 * A POP3 login that passed its password check ([pop3] login_delay):
 * refused when the user's last recorded login is less than delay seconds
 * before now, else now becomes the last login. Returns 0 (recorded), the
 * seconds still to wait (> 0, nothing written), or a negative code. A last
 * login in the future (the clock went back) does not refuse.
 */
int store_user_login(struct store *s, int64_t user_id, int64_t now, int64_t delay);

/* --- administration ----------------------------------------------------- */

struct store_stats {
    int64_t domains, users, aliases;
    int64_t messages;  /* bodies, each once */
    int64_t entries;   /* maildrop entries */
    int64_t bytes;     /* octets of all bodies */
    int64_t file_bytes;
};

int store_stats(struct store *s, struct store_stats *st);

/*
 * Copies the store into a new file at dest with SQLite's online backup,
 * safe while daemons write. Writes dest.tmp first and renames it, so dest
 * is either whole or absent.
 */
int store_backup(struct store *s, const char *dest, char *err, size_t err_size);

struct store_restored {
    int64_t users, messages;  /* in what was restored */
    int64_t queued;           /* recipients it holds queued for other servers */
    int64_t next_uidl;        /* the number the next maildrop entry gets */
    bool new_uidl_prefix;     /* no store to continue from: every UIDL is new */
    bool reclaims;            /* it gives deleted mail's space back (store_reclaims) */
    char aside[4096];         /* where the store it replaced went ("" when there was none) */
};

/*
 * Puts the backup at from in place of the store at path, which must be held
 * exclusively (hold_store). The backup is checked first (SQLite's
 * integrity check, a kotak store of this version or an older one); the
 * store it replaces goes aside as path.before-restore (its WAL beside it),
 * never deleted. No UIDL handed out before comes back: the new entries'
 * numbers go on after the highest the replaced store reached, and with no
 * store to read that from, the UIDLs get a new prefix. The new file gets
 * the owner of path's folder. Returns 0 with *r filled, or -errno/-KOTAK_*
 * with one sentence in err.
 */
int store_restore(const char *from, const char *path, struct store_restored *r, char *err,
                  size_t err_size);

#endif
