/*
 * import.c — moving a maildrop in: messages added to one user's maildrop
 * in order, in batches of one transaction each, each keeping the UIDL a
 * POP3 client saw for it on the server it came from wherever that is safe.
 *
 * A message is written as delivery writes it (deliver.c): a messages row
 * whose head holds the first STORE_CHUNK octets, chunks rows for the rest,
 * and a maildrop row with its size and arrival time; users.used follows
 * through the triggers of schema 6. The maildrop row also carries the kept
 * UIDL (NULL: the store's own PREFIX.id), a digest of the octets (SHA-512 cut to 256 bits),
 * and the import's source (schema 7: "pop3 HOST:PORT LOGIN", "mbox",
 * "maildir"; NULL on a row delivered here).
 *
 * What is here already (store_import_seen). A UIDL is unique on the server
 * that gave it, and on no other: two servers both number from 1, an mbox's
 * X-UIDL is a field any sender can write, and a restored copy of this store
 * hands out the same PREFIX.N for other mail. Nor is it unique on that
 * server over time: one rebuilt under the same name (a reinstall, Dovecot
 * with pop3_uidl_format=%u after a UIDVALIDITY change) hands out old UIDLs
 * for new mail. So a UIDL proves a message present only when the entry that
 * keeps it (as its uidl column, not as the store's own PREFIX.N) came from
 * the same source, the size offered (POP3 LIST's, the CRLF size) equals the
 * entry's octets (messages.size: maildrop.size may count 2 octets supplied
 * for a missing end-of-header line), and its digest does not contradict
 * the one offered: that lets `kotak import pop3` skip a message without
 * fetching it, and a restart stays cheap. A reused UIDL on a message of the
 * very same size still passes; that is the price of not fetching.
 *
 * Otherwise: a UIDL that is valid and free in this maildrop means absent,
 * even when an entry has the same octets, and the message is added under
 * it. Two messages of one source with the same octets under two UIDLs (or
 * one under another source's free UIDL) so become two entries: the trade
 * is a second copy rather than a message that vanishes for a client that
 * tracked its UIDL. A restart keeps adding nothing twice: on a rerun that
 * UIDL is taken by the entry of the same source and size, so it is seen.
 * With no UIDL, one not to keep, or one another entry holds, the digest
 * decides: an entry with the same octets means present, none means absent,
 * and the message is added under a new UIDL. An entry without a digest
 * (delivered here) never proves anything. The cost is a fetch of each
 * message a UIDL of another source (or of this one for another size)
 * shadows, once per run.
 *
 * Batches: a batch commits after STORE_IMPORT_BATCH messages,
 * IMPORT_BATCH_BYTES octets, or IMPORT_BATCH_MS milliseconds, whichever
 * comes first. The time bound is there because a batch holds the store's
 * write lock while it is open, and the daemons' own commits wait for it (at
 * most STORE_BUSY_TIMEOUT_MS): an import that reads slowly (a POP3 server
 * far away) must not keep kotak-smtpd waiting that long. The bound is only
 * looked at when a message is added, so a caller that is about to wait
 * (for the network, for a slow disk) commits first (store_import_commit):
 * a batch may span only messages the caller already holds. A killed import
 * leaves whole batches: SQLite rolls back the open one.
 *
 * Which UIDLs are kept. RFC 1939 allows 1 to 70 octets in 0x21..0x7E; a
 * UIDL must be unique in the maildrop and never handed out again. The store
 * hands out PREFIX.N itself for maildrop entry N (maildrop.c), so a kept
 * UIDL of that form could one day be served for another message too,
 * unless entry N exists now: ids come from AUTOINCREMENT and are never
 * given again, and an entry never changes hands. So PREFIX.N is kept only
 * when entry N exists and does not itself serve PREFIX.N in this maildrop
 * (it is another user's, or it keeps a UIDL of its own); that is what lets
 * `kotak export` of one user and `kotak import` into another in the same
 * store give the same UIDLs. An entry N that is gone may have been this
 * user's, seen by a client under that very UIDL: such a one gets a new UIDL.
 *
 * The statements are prepared per import (not in the store's shared
 * cache): they are used by nothing else.
 *
 * A UIDL the source gave that was taken here, so that the entry got
 * another, is kept too (maildrop.source_uidl): a run again finds the entry
 * by it, with the same source, size and digest rule, also when the UIDL
 * has become free meanwhile (the entry that had it was deleted), instead
 * of adding the message a second time under it.
 *
 * Speed. An import writes as fast as it reads, so the WAL's copy into the
 * database file runs on a thread of its own (store_checkpointer) over a
 * second connection, and the connection's page cache is IMPORT_CACHE_KIB:
 * with SQLite's 2 MiB, index pages left the cache mid-batch and were
 * written to the WAL twice (100,000 messages of 1 KiB: 209,000 page writes
 * against 101,000). Digests are looked up in memory (struct digest_set,
 * read once at the start): an index on them takes its keys in no order, so
 * every batch dirtied most of its pages, and it cost a third of the import.
 */
#include <assert.h>
#include <errno.h>
#include <mbedtls/sha512.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "header_eoh.h"
#include "store_int.h"
#include "util.h"

#define IMPORT_BATCH_BYTES (32u << 20)
#define IMPORT_BATCH_MS 1000
#define IMPORT_CACHE_KIB 65536

enum imp_stmt {
    IMP_MSG_ADD,
    IMP_CHUNK_ADD,
    IMP_DROP_ADD,
    IMP_BY_UIDL,
    IMP_BY_SOURCE_UIDL,
    IMP_DIGESTS,
    IMP_ENTRY,
    IMP_COUNT
};

static const char *const imp_sql[IMP_COUNT] = {
    [IMP_MSG_ADD] = "INSERT INTO messages(received, size, head, eoh_at) VALUES(?1, ?2, ?3, ?4)",
    [IMP_CHUNK_ADD] = "INSERT INTO chunks(message_id, seq, data) VALUES(?1, ?2, ?3)",
    [IMP_DROP_ADD] = "INSERT INTO maildrop(user_id, message_id, size, arrived, uidl, digest,"
                     " source, source_uidl) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    /* By the unique index maildrop_uidl. messages.size, not maildrop.size: the latter
     * counts the 2 octets RETR supplies for a missing end-of-header line, which the
     * source's LIST did not. */
    [IMP_BY_UIDL] = "SELECT d.digest, d.source IS ?3, m.size FROM maildrop d"
                    " JOIN messages m ON m.id = d.message_id"
                    " WHERE d.user_id = ?1 AND d.uidl = ?2",
    /* By the index maildrop_source_uidl. */
    [IMP_BY_SOURCE_UIDL] = "SELECT d.digest, m.size FROM maildrop d"
                           " JOIN messages m ON m.id = d.message_id"
                           " WHERE d.user_id = ?1 AND d.source_uidl = ?2 AND d.source IS ?3",
    /* By the index maildrop_user: every digest of the maildrop, once per import. */
    [IMP_DIGESTS] = "SELECT digest FROM maildrop WHERE user_id = ?1 AND digest IS NOT NULL",
    [IMP_ENTRY] = "SELECT user_id, uidl IS NULL, digest FROM maildrop WHERE id = ?1",
};

/*
 * The digests of the maildrop's entries, read once when the import begins
 * and kept up as it adds: open addressing on a digest's first octets (a
 * hash: spread evenly), at most half full; a slot of all zeros is free.
 * Each says whether this import met it already (added it, or found it
 * present), so that the caller can tell a message its source holds twice
 * from one the maildrop held before.
 */
struct digest_set {
    uint8_t (*keys)[STORE_DIGEST_SIZE];
    bool *mine;
    size_t n, cap;
};

static const uint8_t no_digest[STORE_DIGEST_SIZE];

static size_t digest_slot(const struct digest_set *d, const uint8_t k[STORE_DIGEST_SIZE])
{
    uint64_t h;
    memcpy(&h, k, sizeof(h));
    size_t i = (size_t)(h & (d->cap - 1));
    while (memcmp(d->keys[i], no_digest, STORE_DIGEST_SIZE) != 0 &&
           memcmp(d->keys[i], k, STORE_DIGEST_SIZE) != 0)
        i = (i + 1) & (d->cap - 1);
    return i;
}

/*
 * 0: not there; 1: there, and this import meets it for the first time
 * (marked met now); 2: met by this import before (it added it, or found it).
 */
static int digest_meet(struct digest_set *d, const uint8_t k[STORE_DIGEST_SIZE])
{
    if (d->cap == 0 || memcmp(k, no_digest, STORE_DIGEST_SIZE) == 0)
        return 0; /* an empty set; the mark of a free slot, never added */
    size_t i = digest_slot(d, k);
    if (memcmp(d->keys[i], k, STORE_DIGEST_SIZE) != 0)
        return 0;
    if (d->mine[i])
        return 2;
    d->mine[i] = true;
    return 1;
}

static void digest_add(struct digest_set *d, const uint8_t k[STORE_DIGEST_SIZE], bool mine)
{
    if (memcmp(k, no_digest, STORE_DIGEST_SIZE) == 0)
        return; /* the mark of a free slot; no digest SHA-512 gives in practice */
    if (2 * (d->n + 1) > d->cap) {
        struct digest_set bigger = {.cap = d->cap ? 2 * d->cap : 1024};
        bigger.keys = xcalloc(bigger.cap, STORE_DIGEST_SIZE);
        bigger.mine = xcalloc(bigger.cap, sizeof(bool));
        for (size_t i = 0; i < d->cap; i++)
            if (memcmp(d->keys[i], no_digest, STORE_DIGEST_SIZE) != 0) {
                size_t j = digest_slot(&bigger, d->keys[i]);
                memcpy(bigger.keys[j], d->keys[i], STORE_DIGEST_SIZE);
                bigger.mine[j] = d->mine[i];
            }
        bigger.n = d->n;
        free(d->keys);
        free(d->mine);
        *d = bigger;
    }
    size_t i = digest_slot(d, k);
    if (memcmp(d->keys[i], k, STORE_DIGEST_SIZE) == 0) {
        d->mine[i] = d->mine[i] || mine;
        return;
    }
    memcpy(d->keys[i], k, STORE_DIGEST_SIZE);
    d->mine[i] = mine;
    d->n++;
}

static void digest_set_free(struct digest_set *d)
{
    free(d->keys);
    free(d->mine);
    *d = (struct digest_set){0};
}

struct store_import {
    struct store *s;
    int64_t user_id;
    char *source; /* written to each row's maildrop.source */
    sqlite3_stmt *st[IMP_COUNT];
    struct digest_set digests; /* of the maildrop's entries, this import's included */
    struct store_checkpointer *checkpointer; /* NULL: SQLite's own checkpoints */
    int cache_kib;  /* the connection's cache size before, to put back */
    bool open;      /* a batch's transaction is open */
    bool reading;   /* a read transaction is open for look-ups between batches */
    int64_t read_opened; /* when it opened, ms on the monotonic clock */
    int broken;     /* not 0: the digests could not be read again after a rollback */
    size_t n;       /* messages in the open batch */
    size_t bytes;   /* their octets */
    int64_t opened; /* when the batch opened, ms on the monotonic clock */
};

/* SHA-512 cut to 256 bits: as strong for telling messages apart as SHA-256,
 * and twice as fast on a 64-bit machine (mbedTLS uses no SHA extensions):
 * hashing was half of an import's instructions. */
void store_digest(const void *msg, size_t len, uint8_t out[STORE_DIGEST_SIZE])
{
    uint8_t full[64];
    mbedtls_sha512_ret(msg, len, full, 0);
    memcpy(out, full, STORE_DIGEST_SIZE);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static sqlite3_stmt *stmt(struct store_import *imp, enum imp_stmt id)
{
    sqlite3_stmt *st = imp->st[id];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Copies column col, a digest or NULL, into digest_r; whether it was one. */
static bool column_digest(sqlite3_stmt *st, int col, uint8_t digest_r[STORE_DIGEST_SIZE])
{
    if (sqlite3_column_type(st, col) != SQLITE_BLOB ||
        sqlite3_column_bytes(st, col) != STORE_DIGEST_SIZE)
        return false;
    memcpy(digest_r, sqlite3_column_blob(st, col), STORE_DIGEST_SIZE);
    return true;
}

/*
 * Reads the digests of the maildrop into imp->digests, anew (after a
 * rollback too). When that fails the set is not to be trusted (a message
 * here would look absent, and be added twice): the import is marked broken
 * and refuses every call after.
 */
static int load_digests(struct store_import *imp)
{
    digest_set_free(&imp->digests);
    imp->broken = -KOTAK_ESTORE;
    sqlite3_stmt *st = stmt(imp, IMP_DIGESTS);
    sqlite3_bind_int64(st, 1, imp->user_id);
    int rc;
    uint8_t d[STORE_DIGEST_SIZE];
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (column_digest(st, 0, d))
            digest_add(&imp->digests, d, false);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return store__rc(imp->s, rc);
    imp->broken = 0;
    return 0;
}

int store_import_begin(struct store *s, int64_t user_id, const char *source,
                       struct store_import **imp_r)
{
    *imp_r = NULL;
    assert(source != NULL && source[0] != '\0');
    if (s->readonly)
        return -KOTAK_EREADONLY;
    struct store_import *imp = xcalloc(1, sizeof(*imp));
    imp->s = s;
    imp->user_id = user_id;
    imp->source = xstrdup(source);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "PRAGMA cache_size", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        imp->cache_kib = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%d", IMPORT_CACHE_KIB);
    sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    /* Without a second connection, SQLite checkpoints in the commits, as before. */
    struct store *own;
    char err[256];
    if (store_open(sqlite3_db_filename(s->db, "main"), 0, &own, err, sizeof(err)) == 0)
        imp->checkpointer = store_checkpointer_start(s, own);
    for (int i = 0; i < IMP_COUNT; i++) {
        int rc = sqlite3_prepare_v3(s->db, imp_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                    &imp->st[i], NULL);
        if (rc != SQLITE_OK) {
            rc = store__rc(s, rc);
            store_import_end(&imp);
            return rc < 0 ? rc : -KOTAK_ESTORE;
        }
    }
    int rc = load_digests(imp);
    if (rc < 0) {
        store_import_end(&imp);
        return rc;
    }
    *imp_r = imp;
    return 0;
}

/* What a UIDL offered with a message is to this maildrop. */
enum uidl_class {
    UIDL_BAD,   /* not one to keep: bad syntax, or PREFIX.N that may be handed out */
    UIDL_FREE,  /* one to keep: no entry of the maildrop has it */
    UIDL_TAKEN, /* an entry of the maildrop serves it: see struct taken */
};

/* The entry that serves a taken UIDL. */
struct taken {
    bool has_digest;                  /* digest holds its digest (not for a delivered entry) */
    bool same_source;                 /* it keeps this UIDL and came from the import's source */
    int64_t size;                     /* its octets as stored (messages.size) */
    uint8_t digest[STORE_DIGEST_SIZE];
};

static bool uidl_syntax_ok(const char *uidl)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)uidl; *p; p++, n++)
        if (*p < 0x21 || *p > 0x7e || n >= 70)
            return false;
    return n >= 1;
}

/*
 * Classifies uidl (see the top of the file). Returns a class, or a negative
 * code; for UIDL_TAKEN, *t_r describes the entry that serves it.
 */
static int classify(struct store_import *imp, const char *uidl, struct taken *t_r)
{
    *t_r = (struct taken){0};
    if (!uidl_syntax_ok(uidl))
        return UIDL_BAD;
    struct store *s = imp->s;
    size_t plen = strlen(s->uidl_prefix);
    if (strncmp(uidl, s->uidl_prefix, plen) == 0 && uidl[plen] == '.') {
        /* The store's own form: PREFIX.N, N as the store writes it. */
        const char *num = uidl + plen + 1;
        char *end;
        errno = 0;
        long long n = strtoll(num, &end, 10);
        bool canonical = *num >= '1' && *num <= '9' && *end == '\0' && errno == 0;
        if (canonical) {
            sqlite3_stmt *st = stmt(imp, IMP_ENTRY);
            sqlite3_bind_int64(st, 1, n);
            int rc = sqlite3_step(st);
            if (rc == SQLITE_DONE)
                return UIDL_BAD; /* gone, or still to come: it may be handed out */
            if (rc != SQLITE_ROW)
                return store__rc(s, rc);
            bool mine = sqlite3_column_int64(st, 0) == imp->user_id;
            bool serves_it = sqlite3_column_int(st, 1) != 0;
            if (mine && serves_it) {
                /* The store's own UIDL, never one a source gave: it proves
                 * nothing by itself, whatever the entry's source. */
                t_r->has_digest = column_digest(st, 2, t_r->digest);
                sqlite3_reset(st);
                return UIDL_TAKEN;
            }
            sqlite3_reset(st);
        } else if (*num >= '0' && *num <= '9' && strspn(num, "0123456789") == strlen(num)) {
            /* PREFIX.007 or a number past int64: never written by the store,
             * but too near its form to be worth the doubt. */
            return UIDL_BAD;
        }
    }
    sqlite3_stmt *st = stmt(imp, IMP_BY_UIDL);
    sqlite3_bind_int64(st, 1, imp->user_id);
    sqlite3_bind_text(st, 2, uidl, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, imp->source, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        t_r->has_digest = column_digest(st, 0, t_r->digest);
        t_r->same_source = sqlite3_column_int(st, 1) != 0;
        t_r->size = sqlite3_column_int64(st, 2);
        sqlite3_reset(st);
        return UIDL_TAKEN;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? UIDL_FREE : store__rc(s, rc);
}

/*
 * Whether an entry from this source was handed another UIDL than uidl, its
 * source's, and holds the octets offered (size and digest as for a taken
 * UIDL): 1 or 0, or a negative code.
 */
static int renamed_seen(struct store_import *imp, const char *uidl, int64_t size,
                        const uint8_t *digest)
{
    sqlite3_stmt *st = stmt(imp, IMP_BY_SOURCE_UIDL);
    sqlite3_bind_int64(st, 1, imp->user_id);
    sqlite3_bind_text(st, 2, uidl, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, imp->source, -1, SQLITE_STATIC);
    int rc, found = 0;
    while (found == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint8_t d[STORE_DIGEST_SIZE];
        bool has = column_digest(st, 0, d);
        bool size_agrees = size >= 0 ? size == sqlite3_column_int64(st, 1) : digest != NULL;
        bool digest_agrees =
            digest == NULL || (has && memcmp(d, digest, STORE_DIGEST_SIZE) == 0);
        found = has && size_agrees && digest_agrees;
    }
    sqlite3_reset(st);
    return found || rc == SQLITE_DONE ? found : store__rc(imp->s, rc);
}

/*
 * The rule at the top of the file: by UIDL only for an entry of the same
 * source that keeps it, of the size offered, and whose digest agrees when
 * one is offered; a UIDL free here means absent, whatever the digest; else
 * by digest. Without a digest, 0 means "fetch it and ask again".
 */
/* What store_import_seen says of an entry found present, of that digest (NULL: not known). */
static int present(struct store_import *imp, const uint8_t *digest)
{
    return digest != NULL && digest_meet(&imp->digests, digest) == 2 ? 2 : 1;
}

/* Lets go of the read transaction of look-ups between batches (lookup_begin). */
static void read_close(struct store_import *imp)
{
    if (imp->reading)
        store__rollback(imp->s); /* nothing was written: the snapshot is let go */
    imp->reading = false;
}

/*
 * Before a look-up. Look-ups outside a batch share one read transaction,
 * until the next batch or commit: one each would take and drop the
 * store's shared locks, six calls into the kernel per message (a POP3
 * import asks of every message of the listing before it fetches any). A
 * read transaction in WAL mode holds back no writer, but one IMPORT_BATCH_MS
 * old is let go, so that checkpoints can copy the WAL back. And a batch
 * open that long commits here too, not only when a message is added: an
 * import that finds every message present adds none, and would hold the
 * write lock for as long as its source keeps sending.
 */
static int lookup_begin(struct store_import *imp)
{
    if (imp->broken)
        return imp->broken;
    if (imp->open && now_ms() - imp->opened >= IMPORT_BATCH_MS) {
        int rc = store_import_commit(imp);
        if (rc < 0)
            return rc;
    }
    if (imp->reading && now_ms() - imp->read_opened >= IMPORT_BATCH_MS)
        read_close(imp);
    if (imp->open || imp->reading)
        return 0;
    int rc = store__run(imp->s, STMT_READ_BEGIN);
    imp->reading = rc == 0;
    imp->read_opened = now_ms();
    return rc;
}

int store_import_seen(struct store_import *imp, const char *uidl, int64_t size,
                      const uint8_t digest[STORE_DIGEST_SIZE])
{
    int rc = lookup_begin(imp);
    if (rc < 0)
        return rc;
    if (uidl != NULL) {
        struct taken t;
        int c = classify(imp, uidl, &t);
        if (c < 0)
            return c;
        bool digest_agrees =
            digest == NULL || (t.has_digest && memcmp(t.digest, digest, STORE_DIGEST_SIZE) == 0);
        bool size_agrees = size >= 0 ? size == t.size : digest != NULL;
        if (c == UIDL_TAKEN && t.same_source && t.has_digest && size_agrees && digest_agrees)
            return present(imp, t.digest);
        if (c != UIDL_BAD) {
            /* Stored once under another UIDL, its own being taken then. */
            int r = renamed_seen(imp, uidl, size, digest);
            if (r != 0)
                return r < 0 ? r : present(imp, digest);
        }
        if (c == UIDL_FREE)
            return 0; /* added under it, even as a second copy of octets here */
    }
    return digest == NULL ? 0 : digest_meet(&imp->digests, digest);
}

/* Drops the open batch after a failure; the import may go on with a new one. */
static int fail(struct store_import *imp, int rc)
{
    if (imp->open) {
        store__rollback(imp->s);
        load_digests(imp); /* the batch's are gone; the set is read anew */
    }
    imp->open = false;
    imp->n = 0;
    imp->bytes = 0;
    return rc;
}

static int write_message(struct store_import *imp, const uint8_t *msg, size_t len,
                         int64_t arrived, const char *uidl, const char *source_uidl,
                         const uint8_t *digest)
{
    struct store *s = imp->s;
    size_t head = len < STORE_CHUNK ? len : STORE_CHUNK;
    sqlite3_stmt *st = stmt(imp, IMP_MSG_ADD);
    sqlite3_bind_int64(st, 1, arrived);
    sqlite3_bind_int64(st, 2, (int64_t)len);
    /* Never a NULL head: an empty body is an empty head (deliver.c does the same). */
    sqlite3_bind_blob(st, 3, len ? (const void *)msg : (const void *)"", (int)head, SQLITE_STATIC);
    /* A header section without its empty line (common/header_eoh.h): RETR
     * and TOP supply CRLF there, and the maildrop's size counts it, as for
     * a delivered message. */
    size_t eoh = header_eoh_missing(msg, len);
    if (eoh != SIZE_MAX)
        sqlite3_bind_int64(st, 4, (int64_t)eoh);
    int rc = store__step_done(s, st);
    if (rc < 0)
        return rc;
    int64_t id = sqlite3_last_insert_rowid(s->db);
    int64_t seq = 1;
    for (size_t off = head; off < len; off += STORE_CHUNK, seq++) {
        size_t k = len - off < STORE_CHUNK ? len - off : STORE_CHUNK;
        st = stmt(imp, IMP_CHUNK_ADD);
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_blob(st, 3, msg + off, (int)k, SQLITE_STATIC);
        if ((rc = store__step_done(s, st)) < 0)
            return rc;
    }
    st = stmt(imp, IMP_DROP_ADD);
    sqlite3_bind_int64(st, 1, imp->user_id);
    sqlite3_bind_int64(st, 2, id);
    sqlite3_bind_int64(st, 3, (int64_t)len + (eoh != SIZE_MAX ? 2 : 0));
    sqlite3_bind_int64(st, 4, arrived);
    if (uidl != NULL)
        sqlite3_bind_text(st, 5, uidl, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, digest, STORE_DIGEST_SIZE, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, imp->source, -1, SQLITE_STATIC);
    if (source_uidl != NULL)
        sqlite3_bind_text(st, 8, source_uidl, -1, SQLITE_STATIC);
    return store__step_done(s, st);
}

int store_import_add(struct store_import *imp, const void *msg, size_t len, int64_t arrived,
                     const char *uidl, const uint8_t digest[STORE_DIGEST_SIZE], bool *kept_r)
{
    *kept_r = false;
    if (imp->broken)
        return imp->broken;
    if (len > INT32_MAX)
        return -EFBIG;
    uint8_t own[STORE_DIGEST_SIZE];
    if (digest == NULL) {
        store_digest(msg, len, own);
        digest = own;
    }
    if (!imp->open) {
        read_close(imp); /* a write transaction starts from the newest snapshot */
        int rc = store__begin(imp->s);
        if (rc < 0)
            return rc;
        imp->open = true;
        imp->opened = now_ms();
    }
    bool keep = false, renamed = false;
    if (uidl != NULL) {
        struct taken t;
        int c = classify(imp, uidl, &t);
        if (c < 0)
            return fail(imp, c);
        keep = c == UIDL_FREE;
        renamed = c == UIDL_TAKEN;
    }
    int rc = write_message(imp, msg, len, arrived, keep ? uidl : NULL, renamed ? uidl : NULL,
                           digest);
    if (rc < 0)
        return fail(imp, rc);
    digest_add(&imp->digests, digest, true);
    *kept_r = keep;
    imp->n++;
    imp->bytes += len;
    if (imp->n >= STORE_IMPORT_BATCH || imp->bytes >= IMPORT_BATCH_BYTES ||
        now_ms() - imp->opened >= IMPORT_BATCH_MS)
        return store_import_commit(imp);
    return 0;
}

int store_import_commit(struct store_import *imp)
{
    read_close(imp);
    if (!imp->open)
        return 0;
    imp->open = false;
    imp->n = 0;
    imp->bytes = 0;
    int rc = store__commit(imp->s); /* rolls back itself when it fails */
    if (rc < 0)
        load_digests(imp);
    else if (imp->checkpointer != NULL)
        store_checkpointer_committed(imp->checkpointer, false); /* a failed copy loses nothing */
    return rc;
}

int store_import_end(struct store_import **imp_r)
{
    struct store_import *imp = *imp_r;
    if (imp == NULL)
        return 0;
    int rc = store_import_commit(imp);
    for (int i = 0; i < IMP_COUNT; i++)
        sqlite3_finalize(imp->st[i]);
    store_checkpointer_stop(&imp->checkpointer);
    digest_set_free(&imp->digests);
    if (imp->cache_kib != 0) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA cache_size = %d", imp->cache_kib);
        sqlite3_exec(imp->s->db, sql, NULL, NULL, NULL);
    }
    free(imp->source);
    free(imp);
    *imp_r = NULL;
    return rc;
}
