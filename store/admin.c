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

int store_backup(struct store *s, const char *dest, char *err, size_t err_size)
{
    size_t n = strlen(dest) + sizeof(".tmp");
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp", dest);
    /* The copy holds every password hash and all mail: it is made 0600, and
     * never through a link someone else left in the way. */
    unlink(tmp);
    sqlite3 *out = NULL;
    bool made = false; /* the .tmp is ours to remove */
    int rc;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, err_size, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    close(fd);
    made = true;
    rc = sqlite3_open_v2(tmp, &out, SQLITE_OPEN_READWRITE, NULL);
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
    sqlite3_close(out);
    out = NULL;
    if ((rc = sync_path(tmp, false)) < 0 || rename(tmp, dest) != 0) {
        rc = rc < 0 ? rc : -errno;
        snprintf(err, err_size, "cannot write %s: %s", dest, strerror(-rc));
        goto done;
    }
    char *slash = strrchr(dest, '/');
    char *dir = slash ? xstrndup(dest, slash == dest ? 1 : (size_t)(slash - dest)) : xstrdup(".");
    sync_path(dir, true);
    free(dir);
    rc = 0;
done:
    if (out != NULL)
        sqlite3_close(out);
    if (rc != 0 && made)
        unlink(tmp);
    free(tmp);
    return rc;
}

/* --- restore --------------------------------------------------------------- */

/* The highest maildrop number the store at path ever gave, or -1 when it cannot be read. */
static int64_t highest_entry(const char *path)
{
    sqlite3 *db = NULL;
    int64_t v = -1;
    if (access(path, F_OK) != 0 ||
        sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT max(coalesce((SELECT seq FROM sqlite_sequence"
                           " WHERE name = 'maildrop'), 0), coalesce((SELECT max(id) FROM maildrop), 0))",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
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
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, err_size, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    close(fd);
    sqlite3_backup *b = NULL;
    int copied = SQLITE_ERROR;
    if (sqlite3_open_v2(tmp, &out, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
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

/* What restored holds, and the numbering made to go on past every UIDL given before. */
static int continue_numbering(struct store *s, int64_t highest, struct store_restored *r)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM maildrop),"
                                " max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'maildrop'),"
                                " 0), coalesce((SELECT max(id) FROM maildrop), 0))",
                                -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        r->users = sqlite3_column_int64(st, 0);
        r->messages = sqlite3_column_int64(st, 1);
        r->next_uidl = sqlite3_column_int64(st, 2);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return store__rc(s, rc);
    if (highest < 0) { /* nothing to go on from: a prefix no client has seen */
        r->new_uidl_prefix = true;
        rc = store__exec(s, "UPDATE meta SET value = lower(hex(randomblob(4)))"
                            " WHERE key = 'uidl_prefix'");
    } else if (highest > r->next_uidl) {
        char sql[200];
        snprintf(sql, sizeof(sql),
                 "DELETE FROM sqlite_sequence WHERE name = 'maildrop';"
                 "INSERT INTO sqlite_sequence(name, seq) VALUES('maildrop', %lld)",
                 (long long)highest);
        r->next_uidl = highest;
        rc = store__exec(s, sql);
    }
    r->next_uidl++;
    return rc;
}

/* path, and its WAL beside it, to path.before-restore (or -2, -3, ... when that exists). */
static int move_aside(const char *path, char *aside, size_t size)
{
    aside[0] = '\0';
    if (access(path, F_OK) != 0)
        return 0;
    for (int i = 1; i < 1000; i++) {
        if (i == 1)
            snprintf(aside, size, "%s.before-restore", path);
        else
            snprintf(aside, size, "%s.before-restore-%d", path, i);
        if (access(aside, F_OK) != 0)
            break;
    }
    char from[4200], to[4200];
    snprintf(from, sizeof(from), "%s-wal", path);
    snprintf(to, sizeof(to), "%s-wal", aside);
    if (rename(path, aside) != 0 || (access(from, F_OK) == 0 && rename(from, to) != 0))
        return -errno;
    snprintf(from, sizeof(from), "%s-shm", path);
    unlink(from);
    return 0;
}

int store_restore(const char *from, const char *path, struct store_restored *r, char *err,
                  size_t err_size)
{
    memset(r, 0, sizeof(*r));
    size_t len = strlen(path);
    char *tmp = xmalloc(len + sizeof(".restore"));
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".restore", sizeof(".restore"));
    int64_t highest = highest_entry(path);
    int rc = copy_checked(from, tmp, err, err_size);
    if (rc < 0)
        goto done;
    /* Opened as a store: an older backup is brought up to this version here. */
    struct store *s = NULL;
    if ((rc = store_open(tmp, 0, &s, err, err_size)) < 0)
        goto fail;
    rc = continue_numbering(s, highest, r);
    if (rc < 0)
        snprintf(err, err_size, "cannot set the numbering: %s", store_errmsg(s));
    store_close(&s); /* writes its WAL back into the file */
    if (rc < 0)
        goto fail;
    char *copy = xstrdup(path);
    struct stat dir;
    int owned = stat(dirname(copy), &dir) == 0 && chown(tmp, dir.st_uid, dir.st_gid) == 0 ? 0 : -errno;
    free(copy);
    if (owned < 0 || (rc = sync_path(tmp, false)) < 0 ||
        (rc = move_aside(path, r->aside, sizeof(r->aside))) < 0 || rename(tmp, path) != 0) {
        rc = owned < 0 ? owned : rc < 0 ? rc : -errno;
        snprintf(err, err_size, "cannot put %s in place: %s", path, strerror(-rc));
        goto fail;
    }
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
    free(tmp);
    return rc;
}
