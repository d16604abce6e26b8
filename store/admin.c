/*
 * admin.c — figures for `kotak stats` and the online backup for
 * `kotak backup`.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
