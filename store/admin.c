/*
 * admin.c — figures for `kotak stats`, the online backup for `kotak
 * backup`, and putting a backup back for `kotak restore`.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "store_int.h"
#include "util.h"

int store_stats(struct store *s, struct store_stats *st_r)
{
    static const char sql[] =
        "SELECT (SELECT count(*) FROM domains), (SELECT count(*) FROM users),"
        " (SELECT count(*) FROM (SELECT DISTINCT domain_id, local FROM aliases)),"
        " (SELECT count(*) FROM messages),"
        " (SELECT count(*) FROM maildrop), (SELECT coalesce(sum(size), 0) FROM messages),"
        " (SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())";
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store__rc(s, rc);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        st_r->domains = sqlite3_column_int64(st, 0);
        st_r->users = sqlite3_column_int64(st, 1);
        st_r->aliases = sqlite3_column_int64(st, 2);
        st_r->messages = sqlite3_column_int64(st, 3);
        st_r->entries = sqlite3_column_int64(st, 4);
        st_r->bytes = sqlite3_column_int64(st, 5);
        st_r->file_bytes = sqlite3_column_int64(st, 6);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : store__rc(s, rc);
}

/* Flushes a file's data and then its folder's entry for it to disk. */
static int sync_path(const char *path, bool dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/*
 * A new empty file at path, 0600: a copy of the store holds every password
 * hash and all mail, and is never made through a link someone else left in
 * the way.
 */
static int create_private(const char *path, char *err, size_t err_size)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int rc = -errno;
        snprintf(err, err_size, "cannot create %s: %s", path, strerror(errno));
        return rc;
    }
    close(fd);
    return 0;
}

/*
 * The copy is made in a folder of its own beside dest, which mkdtemp makes
 * 0700 and nobody else can enter, and then renamed into place: the files
 * SQLite opens beside the copy while it leaves the free pages out (its WAL
 * and shared memory, which hold mail) are then never a file someone else
 * put there.
 */
int store_backup(struct store *s, const char *dest, char *err, size_t err_size)
{
    size_t n = strlen(dest) + sizeof(".tmpXXXXXX/backup.db-wal");
    char *dir = xmalloc(n), *tmp = xmalloc(n);
    snprintf(dir, n, "%s.tmpXXXXXX", dest);
    sqlite3 *out = NULL;
    int rc = 0;
    if (mkdtemp(dir) == NULL) {
        rc = -errno;
        snprintf(err, err_size, "cannot create a folder beside %s: %s", dest, strerror(errno));
        free(dir);
        free(tmp);
        return rc;
    }
    snprintf(tmp, n, "%s/backup.db", dir);
    if ((rc = create_private(tmp, err, err_size)) < 0)
        goto done;
    rc = sqlite3_open_v2(tmp, &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, err_size, "cannot create %s: %s", tmp, out ? sqlite3_errmsg(out) : "");
        rc = store__rc(s, rc);
        goto done;
    }
    /* One step copies every page inside one read transaction: a consistent
     * snapshot, while WAL lets the daemons go on writing meanwhile. */
    sqlite3_backup *b = sqlite3_backup_init(out, "main", s->db, "main");
    if (b == NULL) {
        snprintf(err, err_size, "cannot start the backup: %s", sqlite3_errmsg(out));
        rc = -KOTAK_ESTORE;
        goto done;
    }
    for (int tries = 0; tries < 100; tries++) {
        rc = sqlite3_backup_step(b, -1);
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
            break;
        sqlite3_sleep(50);
    }
    int frc = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE || frc != SQLITE_OK) {
        snprintf(err, err_size, "backup failed: %s", sqlite3_errmsg(out));
        rc = store__rc(s, rc == SQLITE_DONE ? frc : rc);
        goto done;
    }
    /* The copy has the store's free pages too, which may still hold mail
     * users deleted: they stay out of it (a store that gives space back). */
    if (sqlite3_exec(out, "PRAGMA incremental_vacuum", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "backup failed: %s", sqlite3_errmsg(out));
        rc = -KOTAK_ESTORE;
        goto done;
    }
    /* Closing copies the WAL into the file and removes it. */
    if (sqlite3_close(out) != SQLITE_OK) {
        snprintf(err, err_size, "backup failed: %s", sqlite3_errmsg(out));
        rc = -KOTAK_ESTORE;
        goto done;
    }
    out = NULL;
    if ((rc = sync_path(tmp, false)) < 0 || rename(tmp, dest) != 0) {
        rc = rc < 0 ? rc : -errno;
        snprintf(err, err_size, "cannot write %s: %s", dest, strerror(-rc));
        goto done;
    }
    char *slash = strrchr(dest, '/');
    char *parent = slash ? xstrndup(dest, slash == dest ? 1 : (size_t)(slash - dest)) : xstrdup(".");
    sync_path(parent, true);
    free(parent);
    rc = 0;
done:
    if (out != NULL)
        sqlite3_close(out);
    static const char *const leftovers[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof(leftovers) / sizeof(leftovers[0]); i++) {
        snprintf(tmp, n, "%s/backup.db%s", dir, leftovers[i]);
        unlink(tmp);
    }
    rmdir(dir);
    free(dir);
    free(tmp);
    return rc;
}

/* --- restore --------------------------------------------------------------- */

/* What the store being replaced says of the UIDLs it handed out. */
struct current {
    bool busy;     /* another process (a kotak command) has it now */
    bool readable;
    char prefix[17];
    int64_t highest; /* the highest maildrop number it ever gave */
};

/*
 * Reads it, after copying its WAL into it (no daemon has it: the caller
 * holds it), so that the file alone is the whole store to keep aside.
 */
static struct current read_current(const char *path)
{
    struct current cur = {0};
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (access(path, F_OK) != 0 ||
        sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK)
        goto done;
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    /* The call, not the pragma: the pragma answers "busy" in a row and returns OK. */
    int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    cur.busy = rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
    if (rc != SQLITE_OK)
        goto done; /* busy: told; else a store that cannot be read, replaced as one */
    if (sqlite3_prepare_v2(db,
                           "SELECT (SELECT value FROM meta WHERE key = 'uidl_prefix'),"
                           " max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'maildrop'),"
                           " 0), coalesce((SELECT max(id) FROM maildrop), 0))",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL) {
        snprintf(cur.prefix, sizeof(cur.prefix), "%s", sqlite3_column_text(st, 0));
        cur.highest = sqlite3_column_int64(st, 1);
        cur.readable = true;
    }
done:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return cur;
}
/* A copy of the database at from into the new file tmp (0600, made here), checked first. */
static int copy_checked(const char *from, const char *tmp, char *err, size_t err_size)
{
    sqlite3 *src = NULL, *out = NULL;
    sqlite3_stmt *st = NULL;
    int rc = -KOTAK_ESTORE;
    if (sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "cannot read %s: %s", from, src ? sqlite3_errmsg(src) : "");
        goto done;
    }
    /* The file is someone's: its schema may call no function with side effects. */
    sqlite3_exec(src, "PRAGMA trusted_schema = OFF", NULL, NULL, NULL);
    /* The whole file is read: a backup that rotted on its disk is told now, not at a RETR. */
    const char *verdict = NULL;
    if (sqlite3_prepare_v2(src, "PRAGMA integrity_check(1)", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        verdict = (const char *)sqlite3_column_text(st, 0);
    if (verdict == NULL || strcmp(verdict, "ok") != 0) {
        char why[160]; /* SQLite's first finding, on one line */
        snprintf(why, sizeof(why), "%s", verdict ? verdict : sqlite3_errmsg(src));
        for (char *p = why; *p != '\0'; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' ';
        snprintf(err, err_size, "%s is damaged or no SQLite file (%s); nothing was changed", from,
                 why);
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(src, "SELECT 1 FROM meta WHERE key = 'uidl_prefix'", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        snprintf(err, err_size, "%s is no kotak store (made by 'kotak backup'); nothing was changed",
                 from);
        goto done;
    }
    if ((rc = create_private(tmp, err, err_size)) < 0)
        goto done;
    rc = -KOTAK_ESTORE;
    sqlite3_backup *b = NULL;
    int copied = SQLITE_ERROR;
    if (sqlite3_open_v2(tmp, &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL) == SQLITE_OK &&
        (b = sqlite3_backup_init(out, "main", src, "main")) != NULL) {
        sqlite3_backup_step(b, -1); /* no one writes the backup file: one step, no retries */
        copied = sqlite3_backup_finish(b);
    }
    if (copied != SQLITE_OK) {
        snprintf(err, err_size, "cannot copy %s: %s", from, sqlite3_errmsg(out));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    sqlite3_finalize(st);
    sqlite3_close(out);
    sqlite3_close(src);
    return rc;
}

/* The schema of the store at s, one text: what a fresh store of this version has, or not. */
static char *schema_of(sqlite3 *db)
{
    struct buf b;
    buf_init(&b, 0);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT type, name, coalesce(sql, '') FROM sqlite_master"
                           " WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name",
                           -1, &st, NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW)
            buf_printf(&b, "%s %s %s\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
                       sqlite3_column_text(st, 2));
    sqlite3_finalize(st);
    buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Whether the restored store holds only what kotak makes: no table, index, view or trigger more
 * (a trigger in a planted backup would run on every delivery). */
static bool schema_is_kotaks(struct store *s)
{
    struct store *fresh = NULL;
    char err[256];
    if (store_open(":memory:", STORE_CREATE, &fresh, err, sizeof(err)) < 0)
        return false;
    char *want = schema_of(fresh->db), *got = schema_of(s->db);
    bool same = strcmp(want, got) == 0;
    free(want);
    free(got);
    store_close(&fresh);
    return same;
}

/* What restored holds, and the numbering made to go on past every UIDL given before. */
static int continue_numbering(struct store *s, const struct current *cur, struct store_restored *r)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM maildrop),"
                                " max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'maildrop'),"
                                " 0), coalesce((SELECT max(id) FROM maildrop), 0)),"
                                " (SELECT count(*) FROM queue_rcpt WHERE state = 0)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        r->users = sqlite3_column_int64(st, 0);
        r->messages = sqlite3_column_int64(st, 1);
        r->next_uidl = sqlite3_column_int64(st, 2);
        r->queued = sqlite3_column_int64(st, 3);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return store__rc(s, rc);
    /* Going on from the replaced store's numbers is only right when the
     * backup is of that very store (its prefix): a store made anew since
     * (kotak init on a new machine) knows nothing of what clients saw. */
    if (!cur->readable || strcmp(cur->prefix, s->uidl_prefix) != 0) {
        r->new_uidl_prefix = true;
        rc = store__exec(s, "UPDATE meta SET value = lower(hex(randomblob(4)))"
                            " WHERE key = 'uidl_prefix'");
    } else if (cur->highest > r->next_uidl) {
        char sql[200];
        snprintf(sql, sizeof(sql),
                 "DELETE FROM sqlite_sequence WHERE name = 'maildrop';"
                 "INSERT INTO sqlite_sequence(name, seq) VALUES('maildrop', %lld)",
                 (long long)cur->highest);
        r->next_uidl = cur->highest;
        rc = store__exec(s, sql);
    }
    r->next_uidl++;
    return rc;
}

/*
 * Keeps the store at path as path.before-restore (or -2, -3, ...): a second
 * name for the same file (its WAL already copied in), so that path is never
 * missing, even if the restore stops right after this.
 */
static int keep_aside(const char *path, char *aside, size_t size)
{
    aside[0] = '\0';
    if (access(path, F_OK) != 0)
        return 0;
    for (int i = 1; i < 1000; i++) {
        if (i == 1)
            snprintf(aside, size, "%s.before-restore", path);
        else
            snprintf(aside, size, "%s.before-restore-%d", path, i);
        if (link(path, aside) == 0)
            return 0;
        if (errno != EEXIST)
            return -errno;
    }
    return -EEXIST;
}

int store_restore(const char *from, const char *path, struct store_restored *r, char *err,
                  size_t err_size)
{
    memset(r, 0, sizeof(*r));
    size_t len = strlen(path);
    char *tmp = xmalloc(len + sizeof(".restore"));
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".restore", sizeof(".restore"));
    /* SQLite removes a WAL it opens when the last connection closes, also
     * one it could not copy into a damaged store (the reason for a restore,
     * maybe): a second name keeps it until it is known to be in the store,
     * or goes aside with it. */
    char wal[4200], saved_wal[4200];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(saved_wal, sizeof(saved_wal), "%s-wal.kept", path); /* no name SQLite uses */
    unlink(saved_wal);
    struct stat ws;
    bool saved = stat(wal, &ws) == 0 && ws.st_size > 0 && link(wal, saved_wal) == 0;
    struct current cur = read_current(path);
    if (saved && cur.readable) { /* checkpointed: the store holds it all */
        unlink(saved_wal);
        saved = false;
    }
    int rc = 0;
    if (cur.busy) { /* not taken for a store that cannot be read: its numbers count */
        snprintf(err, err_size, "%s is in use by another kotak command; try again once it is done",
                 path);
        rc = -KOTAK_ELOCKED;
        goto done;
    }
    rc = copy_checked(from, tmp, err, err_size);
    if (rc < 0)
        goto done;
    /* Opened as a store: an older backup is brought up to this version here. */
    struct store *s = NULL;
    if ((rc = store_open(tmp, 0, &s, err, err_size)) < 0)
        goto fail;
    if (!schema_is_kotaks(s)) {
        snprintf(err, err_size, "%s holds tables, indexes, views or triggers that kotak does not "
                                "make; nothing was changed", from);
        rc = -KOTAK_ESTORE;
    } else if ((rc = continue_numbering(s, &cur, r)) < 0) {
        snprintf(err, err_size, "cannot set the numbering: %s", store_errmsg(s));
    } else if (store_reclaims(s) == 0) {
        /* Made before stores gave deleted mail's space back: the copy is
         * ours alone, the one place where the rewrite that changes that
         * holds up no one. Its scratch copy of all the mail goes beside the
         * store, not into a shared /var/tmp. Without the room for it, the
         * store is restored as it was. */
        char *folder = xstrdup(path);
        sqlite3_temp_directory = sqlite3_mprintf("%s", dirname(folder));
        free(folder);
        r->reclaims = store__make_reclaiming(s) == 0;
        sqlite3_free(sqlite3_temp_directory);
        sqlite3_temp_directory = NULL;
    } else {
        r->reclaims = true;
    }
    store_close(&s); /* writes its WAL back into the file */
    if (rc < 0)
        goto fail;
    /* The daemons' user owns the folder and gets the file: by descriptor,
     * never by a name someone could point elsewhere meanwhile. */
    char *copy = xstrdup(path);
    struct stat dir;
    int fd = open(tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat made;
    rc = fd >= 0 && fstat(fd, &made) == 0 && stat(dirname(copy), &dir) == 0 ? 0 : -errno;
    if (rc == 0 && (made.st_uid != geteuid() || made.st_nlink != 1))
        rc = -EPERM; /* not the copy this process made: swapped meanwhile */
    if (rc == 0 && (fchown(fd, dir.st_uid, dir.st_gid) != 0 || fsync(fd) != 0))
        rc = -errno;
    if (fd >= 0)
        close(fd);
    free(copy);
    if (rc == 0)
        rc = keep_aside(path, r->aside, sizeof(r->aside));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc < 0) {
        snprintf(err, err_size, "cannot put %s in place: %s", path, strerror(-rc));
        goto fail;
    }
    /* The old store's WAL, kept by its second name, goes aside with it; what
     * is beside the new store belongs to no one. */
    if (saved) {
        char aside_wal[4200];
        snprintf(aside_wal, sizeof(aside_wal), "%s-wal", r->aside);
        rename(saved_wal, aside_wal);
        saved = false;
    }
    char shm[4200];
    snprintf(shm, sizeof(shm), "%s-shm", path);
    unlink(wal);
    unlink(shm);
    copy = xstrdup(path);
    sync_path(dirname(copy), true);
    free(copy);
    rc = 0;
    goto done;
fail: {
    static const char *const leftovers[] = {"", "-wal", "-shm"}; /* the copy, what SQLite left */
    for (size_t i = 0; i < sizeof(leftovers) / sizeof(leftovers[0]); i++) {
        char leftover[4200];
        snprintf(leftover, sizeof(leftover), "%s%s", tmp, leftovers[i]);
        unlink(leftover);
    }
}
done:
    if (saved) { /* nothing was put in place: the old store as it was, its WAL beside it */
        if (access(wal, F_OK) != 0)
            rename(saved_wal, wal);
        else
            unlink(saved_wal);
    }
    free(tmp);
    return rc;
}
