/*
 * store.c — opening the store, its schema and migrations, the statement
 * cache, and the mapping of SQLite's result codes to kotak's.
 *
 * The schema is versioned with PRAGMA user_version: migrations[i] takes a
 * store from version i to i + 1, each in its own transaction, so a store
 * written by any older kotak is brought forward on open, and a store from a
 * newer kotak is refused rather than misread.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_int.h"
#include "util.h"

static const char *const migrations[] = {
    /* 1: the first schema. A body lives once in messages + chunks; each
     * recipient gets a maildrop row pointing at it. AUTOINCREMENT keeps
     * maildrop ids, and so UIDLs, from ever being reused. */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
    "INSERT INTO meta VALUES('uidl_prefix', lower(hex(randomblob(4))));"
    "CREATE TABLE domains(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE users(id INTEGER PRIMARY KEY,"
    "  domain_id INTEGER NOT NULL REFERENCES domains(id),"
    "  local TEXT NOT NULL, hash TEXT NOT NULL, created INTEGER NOT NULL,"
    "  UNIQUE(domain_id, local));"
    "CREATE TABLE aliases(domain_id INTEGER NOT NULL REFERENCES domains(id),"
    "  local TEXT NOT NULL, target TEXT NOT NULL,"
    "  PRIMARY KEY(domain_id, local, target)) WITHOUT ROWID;"
    "CREATE TABLE messages(id INTEGER PRIMARY KEY, received INTEGER NOT NULL,"
    "  size INTEGER NOT NULL);"
    "CREATE TABLE chunks(message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(message_id, seq));"
    "CREATE TABLE maildrop(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  message_id INTEGER NOT NULL REFERENCES messages(id),"
    "  size INTEGER NOT NULL, arrived INTEGER NOT NULL);"
    "CREATE INDEX maildrop_user ON maildrop(user_id, id);"
    "CREATE INDEX maildrop_message ON maildrop(message_id);"
    /* A body goes when the last maildrop entry that refers to it goes. */
    "CREATE TRIGGER maildrop_release AFTER DELETE ON maildrop"
    "  WHEN NOT EXISTS (SELECT 1 FROM maildrop WHERE message_id = OLD.message_id)"
    "  BEGIN DELETE FROM messages WHERE id = OLD.message_id; END;",
    /* 2: the first STORE_CHUNK octets of a body (all of most bodies) live
     * in its messages row, its head; chunks then hold the rest from seq 1.
     * A message is one row to write instead of two, and its commit touches
     * neither the chunks table nor its index. Bodies stored before have no
     * head (NULL), and all of them in chunks from seq 0. A kotak older
     * than this reads such a body wrongly: stop both daemons before
     * starting the new ones on a store. */
    "ALTER TABLE messages ADD COLUMN head BLOB;",
    /* 3: postmaster@ of every local domain must take mail (RFC 5321 4.5.1).
     * A new domain gets its alias when its first user is added; each domain
     * that already has users and no postmaster gets one to its first user. */
    "INSERT INTO aliases(domain_id, local, target)"
    "  SELECT d.id, 'postmaster', (SELECT u.local || '@' || d.name FROM users u"
    "    WHERE u.domain_id = d.id ORDER BY u.id LIMIT 1)"
    "  FROM domains d"
    "  WHERE EXISTS (SELECT 1 FROM users u WHERE u.domain_id = d.id)"
    "    AND NOT EXISTS (SELECT 1 FROM users u WHERE u.domain_id = d.id AND u.local = 'postmaster')"
    "    AND NOT EXISTS (SELECT 1 FROM aliases a WHERE a.domain_id = d.id"
    "      AND a.local = 'postmaster');",
    /* 4: the outbound queue. A queued message keeps its body in messages,
     * like a maildrop entry, so a body now goes when the last maildrop
     * entry or queue entry that refers to it goes. Each recipient has its
     * own state and next try; queue_log keeps every attempt's answer. */
    "CREATE TABLE queue(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  message_id INTEGER NOT NULL REFERENCES messages(id),"
    "  sender TEXT NOT NULL, created INTEGER NOT NULL, user_id INTEGER,"
    "  ret INTEGER NOT NULL DEFAULT 0, envid TEXT, bounce INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX queue_message ON queue(message_id);"
    "CREATE TABLE queue_rcpt(id INTEGER PRIMARY KEY,"
    "  queue_id INTEGER NOT NULL REFERENCES queue(id) ON DELETE CASCADE,"
    "  address TEXT NOT NULL, domain TEXT NOT NULL, orcpt TEXT,"
    "  notify INTEGER NOT NULL DEFAULT 0, state INTEGER NOT NULL DEFAULT 0,"
    "  attempts INTEGER NOT NULL DEFAULT 0, next_try INTEGER NOT NULL,"
    "  last_code INTEGER NOT NULL DEFAULT 0, last_reply TEXT NOT NULL DEFAULT '',"
    "  delay_notified INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX queue_rcpt_entry ON queue_rcpt(queue_id);"
    "CREATE INDEX queue_rcpt_due ON queue_rcpt(next_try) WHERE state = 0;"
    "CREATE TABLE queue_log(rcpt_id INTEGER NOT NULL REFERENCES queue_rcpt(id) ON DELETE CASCADE,"
    "  at INTEGER NOT NULL, host TEXT NOT NULL, ip TEXT NOT NULL, code INTEGER NOT NULL,"
    "  reply TEXT NOT NULL);"
    "CREATE INDEX queue_log_rcpt ON queue_log(rcpt_id);"
    "DROP TRIGGER maildrop_release;"
    "CREATE TRIGGER maildrop_release AFTER DELETE ON maildrop"
    "  WHEN NOT EXISTS (SELECT 1 FROM maildrop WHERE message_id = OLD.message_id)"
    "   AND NOT EXISTS (SELECT 1 FROM queue WHERE message_id = OLD.message_id)"
    "  BEGIN DELETE FROM messages WHERE id = OLD.message_id; END;"
    "CREATE TRIGGER queue_release AFTER DELETE ON queue"
    "  WHEN NOT EXISTS (SELECT 1 FROM maildrop WHERE message_id = OLD.message_id)"
    "   AND NOT EXISTS (SELECT 1 FROM queue WHERE message_id = OLD.message_id)"
    "  BEGIN DELETE FROM messages WHERE id = OLD.message_id; END;",
    /* 5: `kotak queue drop` marks a recipient; kotak-smtpd then fails it
     * without trying, and sends the bounce, as for any failure. Whether
     * the message came with SMTPUTF8, which it then needs to go on. The SRS
     * secret of this store: forwarded mail's senders are signed with it. */
    "ALTER TABLE queue_rcpt ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE queue ADD COLUMN smtputf8 INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX queue_rcpt_dropped ON queue_rcpt(queue_id) WHERE state = 0 AND dropped = 1;"
    "INSERT OR IGNORE INTO meta VALUES('srs_secret', lower(hex(randomblob(32))));",
    /* 6: moving mail in and out, quotas, retention. A maildrop entry may
     * keep the UIDL a client saw on the server it came from (uidl, unique
     * per user; NULL: PREFIX.id as before) and a digest of its body (an
     * import run again adds nothing twice); retrieved is when a RETR first
     * sent it ([pop3] expire). A message whose header section has no empty
     * line after it has eoh_at, the offset where RETR and TOP supply one.
     * A user's quota in octets (NULL: the domain's, NULL: none), what the
     * maildrop holds (used, kept by the triggers, so a check at RCPT is one
     * row), whether the near-quota warning went out, the last POP3 login
     * ([pop3] login_delay). */
    "ALTER TABLE maildrop ADD COLUMN uidl TEXT;"
    "ALTER TABLE maildrop ADD COLUMN digest BLOB;"
    "ALTER TABLE maildrop ADD COLUMN retrieved INTEGER;"
    "ALTER TABLE messages ADD COLUMN eoh_at INTEGER;"
    "ALTER TABLE users ADD COLUMN quota INTEGER;"
    "ALTER TABLE users ADD COLUMN used INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE users ADD COLUMN quota_warned INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE users ADD COLUMN last_login INTEGER;"
    "ALTER TABLE domains ADD COLUMN quota INTEGER;"
    "CREATE UNIQUE INDEX maildrop_uidl ON maildrop(user_id, uidl) WHERE uidl IS NOT NULL;"
    "CREATE INDEX maildrop_digest ON maildrop(user_id, digest) WHERE digest IS NOT NULL;"
    "UPDATE users SET used = (SELECT coalesce(sum(size), 0) FROM maildrop WHERE user_id = users.id);"
    "CREATE TRIGGER maildrop_used_add AFTER INSERT ON maildrop"
    "  BEGIN UPDATE users SET used = used + NEW.size WHERE id = NEW.user_id; END;"
    "CREATE TRIGGER maildrop_used_del AFTER DELETE ON maildrop"
    "  BEGIN UPDATE users SET used = used - OLD.size WHERE id = OLD.user_id; END;",
    /* 7: where an imported entry came from (source: "pop3 HOST:PORT LOGIN",
     * "mbox", "maildir"; NULL for mail delivered here): a UIDL says a
     * message is here already only when it came from the same source, so
     * that two servers that both number from 1 lose nothing. Expiry finds
     * a user's retrieved entries by index, not by reading the maildrop. */
    "ALTER TABLE maildrop ADD COLUMN source TEXT;"
    "CREATE INDEX maildrop_retrieved ON maildrop(user_id, retrieved)"
    "  WHERE retrieved IS NOT NULL;",
    /* 8: an import looks digests up in memory (import.c), and an index on
     * them, whose keys come in no order, cost it a third of its time. The
     * UIDL a source gave an entry that was handed another (its own was
     * taken here), so that a run again knows the message when that UIDL has
     * become free meanwhile. */
    "DROP INDEX maildrop_digest;"
    "ALTER TABLE maildrop ADD COLUMN source_uidl TEXT;"
    "CREATE INDEX maildrop_source_uidl ON maildrop(user_id, source_uidl)"
    "  WHERE source_uidl IS NOT NULL;",
    /* 9: no change to the tables. A store gives the space of deleted mail
     * back when it has auto_vacuum INCREMENTAL (store_reclaims), which
     * store_open sets for a new one and `kotak restore` for an older one.
     * Kept so that a store a build with this number opened still opens. */
    "SELECT 1;",
};

/* The WAL's size once it starts over: 16 MiB, what kotak-smtpd's commits
 * fill between two checkpoints (checkpointer.c). */
#define STORE_WAL_KEEP "16777216"
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* One queued recipient with its entry's envelope: read by queue.c's read_queued. */
#define QUEUE_SELECT                                                                               \
    "SELECT r.id, r.queue_id, q.message_id, r.address, r.domain, q.sender,"                        \
    " coalesce(r.orcpt, ''), r.notify, q.ret, q.bounce, r.delay_notified, r.state,"                \
    " coalesce(q.user_id, 0), q.created, m.size, r.next_try, r.attempts, r.last_code,"             \
    " r.last_reply, r.dropped, coalesce(q.envid, ''), q.smtputf8 FROM queue_rcpt r"                \
    " JOIN queue q ON q.id = r.queue_id"                            \
    " JOIN messages m ON m.id = q.message_id"

static const char *const stmt_sql[STMT_COUNT] = {
    [STMT_DOMAIN_ID] = "SELECT id FROM domains WHERE name = ?1",
    [STMT_DOMAIN_ADD] = "INSERT INTO domains(name, quota) VALUES(?1, nullif(?2, 0))",
    [STMT_DOMAIN_DEL] = "DELETE FROM domains WHERE id = ?1",
    [STMT_DOMAIN_LIST] = "SELECT name, (SELECT count(*) FROM users WHERE domain_id = d.id),"
                         " (SELECT count(DISTINCT local) FROM aliases WHERE domain_id = d.id),"
                         " coalesce(d.quota, 0) FROM domains d ORDER BY name",
    [STMT_DOMAIN_FIRST] = "SELECT name FROM domains ORDER BY id LIMIT 1",
    [STMT_USER_GET] = "SELECT id, hash FROM users WHERE domain_id = ?1 AND local = ?2",
    [STMT_USER_ADD] =
        "INSERT INTO users(domain_id, local, hash, created, quota)"
        " VALUES(?1, ?2, ?3, unixepoch(), nullif(?4, 0))",
    [STMT_USER_DEL] = "DELETE FROM users WHERE id = ?1",
    [STMT_USER_PASSWD] = "UPDATE users SET hash = ?2 WHERE id = ?1",
    [STMT_USER_LIST] =
        "SELECT u.id, u.local || '@' || d.name, u.hash,"
        " (SELECT count(*) FROM maildrop WHERE user_id = u.id),"
        " (SELECT coalesce(sum(size), 0) FROM maildrop WHERE user_id = u.id),"
        " coalesce(u.quota, d.quota, 0)"
        " FROM users u JOIN domains d ON d.id = u.domain_id ORDER BY d.name, u.local",
    [STMT_USER_LIST_DOMAIN] =
        "SELECT u.id, u.local || '@' || d.name, u.hash,"
        " (SELECT count(*) FROM maildrop WHERE user_id = u.id),"
        " (SELECT coalesce(sum(size), 0) FROM maildrop WHERE user_id = u.id),"
        " coalesce(u.quota, d.quota, 0)"
        " FROM users u JOIN domains d ON d.id = u.domain_id WHERE d.name = ?1 ORDER BY u.local",
    /* Quotas (quota.c): the user's own, else the domain's, else none (0). */
    [STMT_QUOTA_GET] = "SELECT u.used, coalesce(u.quota, d.quota, 0), u.quota_warned,"
                       " u.local || '@' || d.name FROM users u"
                       " JOIN domains d ON d.id = u.domain_id WHERE u.id = ?1",
    [STMT_QUOTA_USER_SET] = "UPDATE users SET quota = nullif(?2, 0) WHERE id = ?1",
    [STMT_QUOTA_DOMAIN_SET] = "UPDATE domains SET quota = nullif(?2, 0) WHERE name = ?1",
    [STMT_QUOTA_WARNED] = "UPDATE users SET quota_warned = 1 WHERE id = ?1",
    [STMT_QUOTA_REARM] =
        "UPDATE users SET quota_warned = 0 WHERE id = ?1 AND quota_warned != 0 AND"
        " (coalesce(quota, (SELECT quota FROM domains WHERE id = users.domain_id), 0) = 0"
        "  OR used * 100 < ?2 * coalesce(quota, (SELECT quota FROM domains"
        "   WHERE id = users.domain_id), 0))",
    [STMT_ALIAS_EXISTS] = "SELECT 1 FROM aliases WHERE domain_id = ?1 AND local = ?2 LIMIT 1",
    [STMT_ALIAS_TARGETS] = "SELECT target FROM aliases WHERE domain_id = ?1 AND local = ?2",
    [STMT_ALIAS_ADD] = "INSERT INTO aliases(domain_id, local, target) VALUES(?1, ?2, ?3)",
    [STMT_ALIAS_DEL_ONE] =
        "DELETE FROM aliases WHERE domain_id = ?1 AND local = ?2 AND target = ?3",
    [STMT_ALIAS_DEL_ALL] = "DELETE FROM aliases WHERE domain_id = ?1 AND local = ?2",
    [STMT_ALIAS_DEL_TARGET] = "DELETE FROM aliases WHERE target = ?1",
    [STMT_ALIAS_LIST] =
        ("SELECT a.local || '@' || d.name, a.target FROM aliases a"
         " JOIN domains d ON d.id = a.domain_id ORDER BY d.name, a.local, a.target"),
    [STMT_MSG_ADD] = "INSERT INTO messages(received, size, head) VALUES(?1, ?2, ?3)",
    [STMT_MSG_SIZE] = "UPDATE messages SET size = ?2 WHERE id = ?1",
    [STMT_CHUNK_ADD] = "INSERT INTO chunks(message_id, seq, data) VALUES(?1, ?2, ?3)",
    [STMT_DROP_ADD] =
        "INSERT INTO maildrop(user_id, message_id, size, arrived) VALUES(?1, ?2, ?3, ?4)",
    [STMT_MBOX_LIST] =
        "SELECT d.id, d.message_id, d.size, d.arrived, d.uidl, m.eoh_at, m.size FROM maildrop d"
        " JOIN messages m ON m.id = d.message_id WHERE d.user_id = ?1 ORDER BY d.id",
    [STMT_HEAD_READ] = "SELECT head FROM messages WHERE id = ?1",
    [STMT_CHUNK_READ] =
        "SELECT seq, data FROM chunks WHERE message_id = ?1 AND seq >= ?2 ORDER BY seq",
    [STMT_MBOX_DELETE] = "DELETE FROM maildrop WHERE id = ?1 AND user_id = ?2",
    /* Retention (retention.c): the first RETR counts; the oldest retrievals go first. */
    [STMT_MBOX_RETRIEVED] =
        "UPDATE maildrop SET retrieved = ?3 WHERE id = ?1 AND user_id = ?2 AND retrieved IS NULL",
    [STMT_MBOX_EXPIRE] = "DELETE FROM maildrop WHERE id IN (SELECT id FROM maildrop"
                         " WHERE user_id = ?1 AND retrieved <= ?2 ORDER BY retrieved, id LIMIT ?3)",
    [STMT_MSG_EOH] = "UPDATE messages SET eoh_at = ?2 WHERE id = ?1",
    [STMT_LOGIN_GET] = "SELECT last_login FROM users WHERE id = ?1",
    [STMT_LOGIN_SET] = "UPDATE users SET last_login = ?2 WHERE id = ?1",
    [STMT_QUEUE_ADD] = "INSERT INTO queue(message_id, sender, created, user_id, ret, envid, bounce,"
                       " smtputf8) VALUES(?1, ?2, ?3, nullif(?4, 0), ?5, ?6, ?7, ?8)",
    [STMT_QUEUE_RCPT_ADD] =
        "INSERT INTO queue_rcpt(queue_id, address, domain, orcpt, notify, next_try)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    /* By the due index, oldest due first: no sort of the whole queue. */
    [STMT_QUEUE_DUE] = QUEUE_SELECT " WHERE r.state = 0 AND r.next_try <= ?1 AND r.dropped = 0"
                                    " AND r.domain NOT IN (SELECT value FROM json_each(?3))"
                                    " ORDER BY r.next_try, r.id LIMIT ?2",
    [STMT_QUEUE_DROPPED] = QUEUE_SELECT " WHERE r.state = 0 AND r.dropped = 1"
                                        " ORDER BY r.queue_id, r.id LIMIT ?1",
    [STMT_QUEUE_LIST] = QUEUE_SELECT " ORDER BY r.queue_id, r.id",
    [STMT_QUEUE_LIST_ONE] = QUEUE_SELECT " WHERE r.queue_id = ?1 ORDER BY r.id",
    /* The partial index on state = 0 keeps this to the queued rows. */
    [STMT_QUEUE_SUMMARY] = "SELECT count(*), coalesce(min(q.created), 0) FROM queue_rcpt r"
                           " JOIN queue q ON q.id = r.queue_id WHERE r.state = 0",
    [STMT_QUEUE_RCPT_SET] = "UPDATE queue_rcpt SET state = ?2, attempts = attempts + 1,"
                            " next_try = ?3, last_code = ?4, last_reply = ?5,"
                            " delay_notified = delay_notified OR ?6 WHERE id = ?1 AND state = 0"
                            " RETURNING queue_id",
    [STMT_QUEUE_LOG_ADD] = "INSERT INTO queue_log(rcpt_id, at, host, ip, code, reply)"
                           " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [STMT_QUEUE_LOG_LIST] = "SELECT at, host, ip, code, reply FROM queue_log WHERE rcpt_id = ?1"
                            " ORDER BY rowid",
    [STMT_QUEUE_DONE] =
        "DELETE FROM queue WHERE id = ?1"
        " AND NOT EXISTS (SELECT 1 FROM queue_rcpt WHERE queue_id = ?1 AND state = 0)",
    [STMT_QUEUE_RETRY] = "UPDATE queue_rcpt SET next_try = ?2 WHERE queue_id = ?1 AND state = 0",
    [STMT_QUEUE_RETRY_ALL] = "UPDATE queue_rcpt SET next_try = ?1 WHERE state = 0",
    [STMT_QUEUE_DROP] =
        "UPDATE queue_rcpt SET dropped = 1, next_try = ?2 WHERE queue_id = ?1 AND state = 0",
    [STMT_QUEUE_EXISTS] = "SELECT 1 FROM queue WHERE id = ?1",
    [STMT_READ_BEGIN] = "BEGIN",
    [STMT_WRITE_BEGIN] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
};

sqlite3_stmt *store__stmt(struct store *s, enum store_stmt id)
{
    sqlite3_stmt *st = s->stmts[id];
    if (st == NULL) {
        int rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->stmts[id], NULL);
        if (rc != SQLITE_OK)
            return NULL;
        return s->stmts[id];
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

int store__rc(struct store *s, int rc)
{
    (void)s;
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -KOTAK_ELOCKED;
    case SQLITE_READONLY:
    case SQLITE_PERM:
        return -KOTAK_EREADONLY;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_CONSTRAINT:
        return -EEXIST;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    default:
        return -KOTAK_ESTORE;
    }
}

int store__exec(struct store *s, const char *sql)
{
    return store__rc(s, sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

int store__begin(struct store *s)
{
    return store__run(s, STMT_WRITE_BEGIN);
}

int store__step_done(struct store *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : store__rc(s, rc);
}

int store__run(struct store *s, enum store_stmt id)
{
    sqlite3_stmt *st = store__stmt(s, id);
    if (st == NULL)
        return -KOTAK_ESTORE;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : store__rc(s, rc);
}

int store__commit(struct store *s)
{
    int rc = store__run(s, STMT_COMMIT);
    if (rc < 0)
        store__rollback(s);
    return rc;
}

void store__rollback(struct store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

const char *store_errmsg(struct store *s)
{
    return sqlite3_errmsg(s->db);
}

static int note_wal_pages(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    ((struct store *)arg)->wal_pages = pages;
    return SQLITE_OK;
}

void store_defer_checkpoints(struct store *s)
{
    /* A WAL hook of our own replaces SQLite's automatic checkpoint. */
    sqlite3_wal_hook(s->db, note_wal_pages, s);
}

int store_wal_pages(const struct store *s)
{
    return s->wal_pages;
}

int store_checkpoint(struct store *s)
{
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : store__rc(s, rc);
}

void store_set_busy_timeout(struct store *s, int ms)
{
    sqlite3_busy_timeout(s->db, ms);
}

int store__pragma_int(struct store *s, const char *sql, int *v_r)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store__rc(s, rc);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v_r = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : store__rc(s, rc);
}

int store_set_max_size(struct store *s, uint64_t bytes)
{
    int page_size = 0;
    int rc = store__pragma_int(s, "PRAGMA page_size", &page_size);
    if (rc < 0)
        return rc;
    /* SQLite's own ceiling stands for "no cap". */
    uint64_t pages = bytes ? bytes / (uint64_t)page_size : 0xfffffffe;
    if (pages < 1)
        pages = 1;
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %llu", (unsigned long long)pages);
    return store__exec(s, sql);
}

int store_reclaims(struct store *s)
{
    int mode = 0;
    int rc = store__pragma_int(s, "PRAGMA auto_vacuum", &mode);
    return rc < 0 ? rc : mode == 2;
}

int store__make_reclaiming(struct store *s)
{
    int rc = store_reclaims(s);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    if ((rc = store__exec(s, "PRAGMA auto_vacuum = INCREMENTAL")) < 0 ||
        (rc = store__exec(s, "VACUUM")) < 0)
        return rc;
    /* The rewrite went through the WAL: copy it out and let it start over. */
    sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    return 0;
}

static int migrate(struct store *s, char *err, size_t err_size)
{
    int version = 0, rc;
    if ((rc = store__pragma_int(s, "PRAGMA user_version", &version)) < 0) {
        snprintf(err, err_size, "cannot read the schema version: %s", store_errmsg(s));
        return rc;
    }
    if (version > SCHEMA_VERSION) {
        snprintf(err, err_size, "schema version %d is newer than this kotak's (%d); upgrade kotak",
                 version, SCHEMA_VERSION);
        return -KOTAK_ESCHEMA;
    }
    if (version == 0) {
        int tables = 0;
        store__pragma_int(s, "SELECT count(*) FROM sqlite_master", &tables);
        if (tables > 0) {
            snprintf(err, err_size, "the file is an SQLite database but not a kotak store");
            return -KOTAK_ESCHEMA;
        }
    }
    if (version == SCHEMA_VERSION)
        return 0;
    if (s->readonly) {
        snprintf(err, err_size, "schema version %d needs an upgrade; open it once read-write",
                 version);
        return -KOTAK_ESCHEMA;
    }
    for (; version < SCHEMA_VERSION; version++) {
        char set[64];
        snprintf(set, sizeof(set), "PRAGMA user_version = %d", version + 1);
        if ((rc = store__begin(s)) < 0 || (rc = store__exec(s, migrations[version])) < 0 ||
            (rc = store__exec(s, set)) < 0 || (rc = store__commit(s)) < 0) {
            snprintf(err, err_size, "cannot bring the schema to version %d: %s", version + 1,
                     store_errmsg(s));
            store__rollback(s);
            return rc;
        }
    }
    return 0;
}

static int load_meta(struct store *s, char *err, size_t err_size)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'uidl_prefix'", -1,
                                &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        snprintf(s->uidl_prefix, sizeof(s->uidl_prefix), "%s", sqlite3_column_text(st, 0));
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        snprintf(err, err_size, "cannot read the store's settings: %s", store_errmsg(s));
        return rc == SQLITE_DONE ? -KOTAK_ESTORE : store__rc(s, rc);
    }
    return 0;
}

int store_srs_secret(struct store *s, uint8_t out[32])
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'srs_secret'", -1, &st,
                                NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *hex = (const char *)sqlite3_column_text(st, 0);
        rc = hex != NULL && strlen(hex) == 64 ? SQLITE_OK : SQLITE_CORRUPT;
        for (int i = 0; rc == SQLITE_OK && i < 32; i++) {
            unsigned v;
            if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                rc = SQLITE_CORRUPT;
            out[i] = (uint8_t)v;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : rc == SQLITE_DONE ? -KOTAK_ESTORE : store__rc(s, rc);
}

static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;
static const char *store_vfs;

/*
 * Once per process, before SQLite initialises: no memory statistics (kotak
 * reads none, and keeping them takes one lock around every allocation of
 * every thread's connection), then the store's VFS.
 */
static void setup_sqlite(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    store_vfs = store__register_vfs();
}

/* A URI for path with the characters that URIs reserve escaped. */
static char *file_uri(const char *path, const char *query)
{
    size_t n = strlen(path) * 3 + strlen(query) + 8;
    char *uri = xmalloc(n), *o = uri;
    o += sprintf(o, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (*p == '%' || *p == '?' || *p == '#' || *p <= 0x20 || *p >= 0x7f)
            o += sprintf(o, "%%%02X", *p);
        else
            *o++ = (char)*p;
    }
    snprintf(o, n - (size_t)(o - uri), "%s", query);
    return uri;
}

/*
 * A reader of a WAL store needs its -shm file; a user who may read the
 * store but not write its folder cannot create one. When no -shm exists, no
 * process has the store open, so nothing can change under the reader and
 * SQLite may read the file as immutable.
 */
static int reopen_immutable_if_needed(struct store *s, const char *path)
{
    int version = 0;
    if (store__pragma_int(s, "PRAGMA user_version", &version) == 0)
        return 0;
    size_t n = strlen(path) + sizeof("-shm");
    char *shm = xmalloc(n);
    snprintf(shm, n, "%s-shm", path);
    bool shm_exists = access(shm, F_OK) == 0;
    free(shm);
    if (shm_exists)
        return -KOTAK_EREADONLY;
    sqlite3_close(s->db);
    char *uri = file_uri(path, "?mode=ro&immutable=1");
    int rc = sqlite3_open_v2(uri, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, store_vfs);
    free(uri);
    if (rc != SQLITE_OK)
        return store__rc(s, rc);
    sqlite3_extended_result_codes(s->db, 1);
    return 0;
}

/* Takes away group and others' rights to a file of the store: it holds
 * every password hash and all mail. Stores made before this was done, or
 * under a loose umask, are closed up the next time they are opened. */
static void close_up(const char *path, const char *suffix)
{
    size_t n = strlen(path) + strlen(suffix) + 1;
    char *name = xmalloc(n);
    snprintf(name, n, "%s%s", path, suffix);
    /* Never through a link swapped in meanwhile (AT_SYMLINK_NOFOLLOW). And
     * never by opening the file: closing any descriptor of a file drops
     * every POSIX lock this process holds on it, and with them the locks
     * of the store's other connections in this process, which SQLite's
     * locking stands on. */
    struct stat st;
    if (lstat(name, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077)) {
        /* Best effort: a reader that does not own the store cannot, and need not. */
        int rc = fchmodat(AT_FDCWD, name, st.st_mode & 0700, AT_SYMLINK_NOFOLLOW);
        (void)rc;
    }
    free(name);
}

int store_open(const char *path, unsigned flags, struct store **s_r, char *err, size_t err_size)
{
    bool memory = strcmp(path, ":memory:") == 0;
    *s_r = NULL;
    if (!memory && !(flags & STORE_CREATE) && access(path, F_OK) != 0) {
        snprintf(err, err_size, "no store at %s", path);
        return -ENOENT;
    }
    pthread_once(&sqlite_once, setup_sqlite);
    if (!memory) {
        static const char *const files[] = {"", "-wal", "-shm", "-journal"};
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
            close_up(path, files[i]);
    }
    struct store *s = xcalloc(1, sizeof(*s));
    s->readonly = (flags & STORE_READONLY) != 0;
    int oflags = s->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (flags & STORE_CREATE)
        oflags |= SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &s->db, oflags | SQLITE_OPEN_NOMUTEX, store_vfs);
    if (rc != SQLITE_OK) {
        rc = store__rc(s, rc);
        snprintf(err, err_size, "cannot open %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
    if (s->readonly && !memory && (rc = reopen_immutable_if_needed(s, path)) < 0) {
        snprintf(err, err_size, "cannot read %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (!s->readonly && sqlite3_db_readonly(s->db, "main") == 1) {
        rc = -KOTAK_EREADONLY;
        snprintf(err, err_size, "%s is read-only", path);
        goto fail;
    }
    /* A new store gives the pages of deleted mail back (reclaim.c). This
     * comes before its first page is written, by WAL mode too: later it
     * takes a VACUUM, which `kotak restore` runs (store__make_reclaiming). */
    if (!s->readonly && (flags & STORE_CREATE)) {
        int pages = -1;
        if (store__pragma_int(s, "PRAGMA page_count", &pages) == 0 && pages == 0 &&
            (rc = store__exec(s, "PRAGMA auto_vacuum = INCREMENTAL")) < 0) {
            snprintf(err, err_size, "cannot set up %s: %s", path, sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    /* WAL lets readers (POP3, backups) run beside the writer; FULL makes
     * every commit durable before it returns, which the 250 reply after DATA
     * relies on. */
    if (!s->readonly && !memory) {
        char mode[16] = "";
        sqlite3_stmt *st;
        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            snprintf(mode, sizeof(mode), "%s", sqlite3_column_text(st, 0));
        rc = sqlite3_finalize(st);
        if (strcmp(mode, "wal") != 0) {
            rc = rc != SQLITE_OK ? store__rc(s, rc) : -KOTAK_ESTORE;
            snprintf(err, err_size, "cannot use %s: %s", path, sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    /* A WAL that one large transaction (a mailbox emptied) grew is cut back
     * to this when it next starts over, not kept at its largest for good.
     * The pages of deleted mail are freed, not overwritten with zeros (as
     * Debian's SQLite does by default): zeroing a gigabyte held the write
     * lock, and every delivery, for 10 s; they leave the file as reclaim.c
     * gives them back, as a deleted file's blocks leave a filesystem. */
    if (!s->readonly &&
        (rc = store__exec(s, "PRAGMA journal_size_limit = " STORE_WAL_KEEP ";"
                             "PRAGMA secure_delete = FAST")) < 0) {
        snprintf(err, err_size, "cannot use %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if ((rc = store__exec(s, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON")) < 0) {
        snprintf(err, err_size, "cannot use %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if ((rc = migrate(s, err, err_size)) < 0 || (rc = load_meta(s, err, err_size)) < 0)
        goto fail;
    *s_r = s;
    return 0;
fail:
    store_close(&s);
    return rc;
}

void store_close(struct store **sp)
{
    struct store *s = *sp;
    if (s == NULL)
        return;
    for (int i = 0; i < STMT_COUNT; i++)
        sqlite3_finalize(s->stmts[i]);
    sqlite3_close(s->db);
    free(s);
    *sp = NULL;
}

int store__domain_id(struct store *s, const char *domain, int64_t *id_r)
{
    sqlite3_stmt *st = store__stmt(s, STMT_DOMAIN_ID);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id_r = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return 1;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : store__rc(s, rc);
}
