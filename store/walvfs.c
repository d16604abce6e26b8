/*
 * walvfs.c — the store's SQLite VFS: the system's own, with two changes to
 * how the write-ahead log is written; see store_int.h.
 *
 * SQLite writes each WAL frame as two write(2) calls, its 24-octet header
 * and its page, so a commit of 11 pages costs 22 calls into the kernel.
 * Here consecutive writes to a WAL gather in a buffer that goes out in one
 * call, at the latest before the sync that makes a commit durable (or
 * before anything reads, sizes or truncates the file).
 *
 * A WAL that grows makes every fdatasync write the file's inode as well as
 * its data: a second disk write, waited for, on each commit. Here a WAL is
 * extended ahead of its writes, with zeros, WAL_GROW octets at a time, so
 * most commits only overwrite blocks the file already has. Zeros past the
 * last frame are never read as frames (a frame carries the WAL's salt and
 * a checksum), and SQLite itself leaves old frames there after a restart.
 * Only the holder of the store's write lock writes a WAL, so the file's
 * real size, read just before, is the size nobody else is changing.
 *
 * Gathered writes never outlive that lock. A commit syncs, and so flushes,
 * before it ends; but a transaction that rolls back after writing frames
 * (a cache spill of a large message) leaves them in the buffer, and another
 * process may then commit frames at the same offsets. So when the
 * connection lets go of the WAL's write lock (a call on its database file,
 * which is linked to its WAL file here), the buffer goes out first, still
 * under the lock, past the last committed frame, where it is harmless. A
 * WAL whose database file cannot be found is written through, ungathered.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* SQLite's unix VFS writes at most 128 KiB - 1 octets per call (it masks
 * the length with 0x1ffff), so no write handed to it is larger than this. */
#define WAL_BUFFER (120 * 1024)
#define WAL_GROW (1024 * 1024)

/* SQLite's WAL_WRITE_LOCK: the first of the shared-memory locks (wal.c). */
#define WAL_WRITE_LOCK 0

struct wal_file {
    sqlite3_file base;
    sqlite3_file *real; /* the system VFS's file, right behind this struct */
    bool is_wal;
    const char *name;        /* a main database file's, as SQLite passed it */
    struct wal_file *linked; /* database file <-> its connection's WAL file */
    struct wal_file *next;   /* open database files, for a WAL to find its own */
    unsigned char *buf;      /* WAL_BUFFER octets, once the file is written */
    sqlite3_int64 buf_off;
    size_t buf_len;
    sqlite3_int64 size; /* the file's size as last seen or made; only grows here */
};

static sqlite3_vfs vfs;
static pthread_mutex_t files_mu = PTHREAD_MUTEX_INITIALIZER;
static struct wal_file *db_files; /* under files_mu */

static sqlite3_vfs *sys_vfs(void)
{
    return vfs.pAppData;
}

static int write_zeros(struct wal_file *w, sqlite3_int64 from, sqlite3_int64 to)
{
    static const unsigned char zeros[64 * 1024];
    for (sqlite3_int64 z = from; z < to; z += (sqlite3_int64)sizeof(zeros)) {
        sqlite3_int64 k =
            to - z < (sqlite3_int64)sizeof(zeros) ? to - z : (sqlite3_int64)sizeof(zeros);
        int rc = w->real->pMethods->xWrite(w->real, zeros, (int)k, z);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

/* Writes to the file itself, growing it first by whole WAL_GROW steps where n goes past its end. */
static int write_through(struct wal_file *w, const void *p, size_t n, sqlite3_int64 off)
{
    sqlite3_int64 end = off + (sqlite3_int64)n;
    int rc;
    if (end > w->size && (rc = w->real->pMethods->xFileSize(w->real, &w->size)) != SQLITE_OK)
        return rc;
    if (end > w->size) {
        sqlite3_int64 grown = (end + WAL_GROW - 1) / WAL_GROW * WAL_GROW;
        if ((off > w->size && (rc = write_zeros(w, w->size, off)) != SQLITE_OK) ||
            (rc = write_zeros(w, end, grown)) != SQLITE_OK)
            return rc;
        w->size = grown;
    }
    const unsigned char *d = p;
    while (n > 0) {
        size_t k = n < WAL_BUFFER ? n : WAL_BUFFER;
        if ((rc = w->real->pMethods->xWrite(w->real, d, (int)k, off)) != SQLITE_OK)
            return rc;
        d += k;
        off += (sqlite3_int64)k;
        n -= k;
    }
    return SQLITE_OK;
}

static int flush(struct wal_file *w)
{
    if (w->buf_len == 0)
        return SQLITE_OK;
    size_t n = w->buf_len;
    w->buf_len = 0; /* a failed write is not retried: SQLite gives up on the transaction */
    return write_through(w, w->buf, n, w->buf_off);
}

static int x_close(sqlite3_file *f)
{
    struct wal_file *w = (struct wal_file *)f;
    int rc = flush(w);
    free(w->buf);
    w->buf = NULL;
    pthread_mutex_lock(&files_mu);
    if (w->linked != NULL)
        w->linked->linked = NULL;
    for (struct wal_file **p = &db_files; *p != NULL; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    pthread_mutex_unlock(&files_mu);
    int rc2 = w->real->pMethods->xClose(w->real);
    return rc != SQLITE_OK ? rc : rc2;
}

static int x_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    struct wal_file *w = (struct wal_file *)f;
    int rc = flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xRead(w->real, p, n, off);
}

static int x_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    struct wal_file *w = (struct wal_file *)f;
    if (!w->is_wal)
        return w->real->pMethods->xWrite(w->real, p, n, off);
    if (w->linked == NULL)
        return write_through(w, p, (size_t)n, off);
    /* Into the buffer when it lands on or right after what the buffer holds. */
    if (w->buf_len > 0 && off >= w->buf_off && off <= w->buf_off + (sqlite3_int64)w->buf_len &&
        off - w->buf_off + n <= WAL_BUFFER) {
        size_t at = (size_t)(off - w->buf_off);
        memcpy(w->buf + at, p, (size_t)n);
        if (at + (size_t)n > w->buf_len)
            w->buf_len = at + (size_t)n;
        return SQLITE_OK;
    }
    int rc = flush(w);
    if (rc != SQLITE_OK)
        return rc;
    if (n >= WAL_BUFFER)
        return write_through(w, p, (size_t)n, off);
    if (w->buf == NULL && (w->buf = malloc(WAL_BUFFER)) == NULL)
        return write_through(w, p, (size_t)n, off);
    memcpy(w->buf, p, (size_t)n);
    w->buf_off = off;
    w->buf_len = (size_t)n;
    return SQLITE_OK;
}

static int x_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    struct wal_file *w = (struct wal_file *)f;
    int rc = flush(w);
    if (rc == SQLITE_OK)
        rc = w->real->pMethods->xTruncate(w->real, size);
    w->size = 0; /* read again before the next extension */
    return rc;
}

static int x_sync(sqlite3_file *f, int flags)
{
    struct wal_file *w = (struct wal_file *)f;
    int rc = flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xSync(w->real, flags);
}

static int x_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    struct wal_file *w = (struct wal_file *)f;
    int rc = flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xFileSize(w->real, size);
}

static int x_lock(sqlite3_file *f, int level)
{
    sqlite3_file *r = ((struct wal_file *)f)->real;
    return r->pMethods->xLock(r, level);
}

static int x_unlock(sqlite3_file *f, int level)
{
    sqlite3_file *r = ((struct wal_file *)f)->real;
    return r->pMethods->xUnlock(r, level);
}

static int x_check_reserved_lock(sqlite3_file *f, int *out)
{
    sqlite3_file *r = ((struct wal_file *)f)->real;
    return r->pMethods->xCheckReservedLock(r, out);
}

static int x_file_control(sqlite3_file *f, int op, void *arg)
{
    sqlite3_file *r = ((struct wal_file *)f)->real;
    return r->pMethods->xFileControl(r, op, arg);
}

static int x_sector_size(sqlite3_file *f)
{
    sqlite3_file *r = ((struct wal_file *)f)->real;
    return r->pMethods->xSectorSize(r);
}

static int x_device_characteristics(sqlite3_file *f)
{
    sqlite3_file *r = ((struct wal_file *)f)->real;
    return r->pMethods->xDeviceCharacteristics(r);
}

/* The shared-memory and memory-map methods (iVersion 2 and 3) go straight through. */
static int x_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **pp)
{
    sqlite3_file *r = ((struct wal_file *)f)->real;
    if (r->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMMAP;
    return r->pMethods->xShmMap(r, page, size, extend, pp);
}

static int x_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    struct wal_file *w = (struct wal_file *)f;
    sqlite3_file *r = w->real;
    if (r->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMLOCK;
    /* Letting go of the write lock: what the WAL gathered goes out first
     * (see the top). A failure here is no commit's: a commit has synced. */
    if (offset == WAL_WRITE_LOCK && flags == (SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE) &&
        w->linked != NULL)
        flush(w->linked);
    return r->pMethods->xShmLock(r, offset, n, flags);
}

static void x_shm_barrier(sqlite3_file *f)
{
    sqlite3_file *r = ((struct wal_file *)f)->real;
    if (r->pMethods->iVersion >= 2)
        r->pMethods->xShmBarrier(r);
}

static int x_shm_unmap(sqlite3_file *f, int delete_flag)
{
    sqlite3_file *r = ((struct wal_file *)f)->real;
    if (r->pMethods->iVersion < 2)
        return SQLITE_OK;
    return r->pMethods->xShmUnmap(r, delete_flag);
}

static int x_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    sqlite3_file *r = ((struct wal_file *)f)->real;
    *pp = NULL;
    if (r->pMethods->iVersion < 3)
        return SQLITE_OK;
    return r->pMethods->xFetch(r, off, n, pp);
}

static int x_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    sqlite3_file *r = ((struct wal_file *)f)->real;
    if (r->pMethods->iVersion < 3)
        return SQLITE_OK;
    return r->pMethods->xUnfetch(r, off, p);
}

static const sqlite3_io_methods io_methods = {
    .iVersion = 3,
    .xClose = x_close,
    .xRead = x_read,
    .xWrite = x_write,
    .xTruncate = x_truncate,
    .xSync = x_sync,
    .xFileSize = x_file_size,
    .xLock = x_lock,
    .xUnlock = x_unlock,
    .xCheckReservedLock = x_check_reserved_lock,
    .xFileControl = x_file_control,
    .xSectorSize = x_sector_size,
    .xDeviceCharacteristics = x_device_characteristics,
    .xShmMap = x_shm_map,
    .xShmLock = x_shm_lock,
    .xShmBarrier = x_shm_barrier,
    .xShmUnmap = x_shm_unmap,
    .xFetch = x_fetch,
    .xUnfetch = x_unfetch,
};

static int x_open(sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *f, int flags, int *out)
{
    (void)v;
    struct wal_file *w = (struct wal_file *)f;
    memset(w, 0, sizeof(*w));
    w->real = (sqlite3_file *)(w + 1);
    w->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    int rc = sys_vfs()->xOpen(sys_vfs(), name, w->real, flags, out);
    /* SQLite closes what it opened through pMethods, even when the open failed. */
    f->pMethods = w->real->pMethods != NULL ? &io_methods : NULL;
    if (rc != SQLITE_OK || name == NULL)
        return rc;
    /* A connection's WAL name leads back to its database file's name, the
     * very pointer that file was opened with: that pairs the two. */
    pthread_mutex_lock(&files_mu);
    if (flags & SQLITE_OPEN_MAIN_DB) {
        w->name = name;
        w->next = db_files;
        db_files = w;
    } else if (w->is_wal) {
        const char *db_name = sqlite3_filename_database(name);
        for (struct wal_file *d = db_files; d != NULL; d = d->next)
            if (d->name == db_name && d->linked == NULL) {
                d->linked = w;
                w->linked = d;
                break;
            }
    }
    pthread_mutex_unlock(&files_mu);
    return rc;
}

/* Everything but opening is the system VFS's own. */
static int x_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return sys_vfs()->xDelete(sys_vfs(), name, sync_dir);
}

static int x_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return sys_vfs()->xAccess(sys_vfs(), name, flags, out);
}

/* A relative name stays relative: a daemon works inside data_dir as a user
 * that may have no right to the folders above it, which the system VFS
 * would put in front of the name. */
static int x_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    if (name[0] == '/')
        return sys_vfs()->xFullPathname(sys_vfs(), name, n, out);
    if ((int)strlen(name) >= n)
        return SQLITE_CANTOPEN;
    memcpy(out, name, strlen(name) + 1);
    return SQLITE_OK;
}

static void *x_dl_open(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return sys_vfs()->xDlOpen(sys_vfs(), name);
}

static void x_dl_error(sqlite3_vfs *v, int n, char *msg)
{
    (void)v;
    sys_vfs()->xDlError(sys_vfs(), n, msg);
}

static void (*x_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return sys_vfs()->xDlSym(sys_vfs(), h, sym);
}

static void x_dl_close(sqlite3_vfs *v, void *h)
{
    (void)v;
    sys_vfs()->xDlClose(sys_vfs(), h);
}

static int x_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return sys_vfs()->xRandomness(sys_vfs(), n, out);
}

static int x_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return sys_vfs()->xSleep(sys_vfs(), us);
}

static int x_current_time(sqlite3_vfs *v, double *t)
{
    (void)v;
    return sys_vfs()->xCurrentTime(sys_vfs(), t);
}

static int x_get_last_error(sqlite3_vfs *v, int n, char *msg)
{
    (void)v;
    return sys_vfs()->xGetLastError(sys_vfs(), n, msg);
}

static int x_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *t)
{
    (void)v;
    if (sys_vfs()->iVersion >= 2 && sys_vfs()->xCurrentTimeInt64 != NULL)
        return sys_vfs()->xCurrentTimeInt64(sys_vfs(), t);
    double d;
    int rc = sys_vfs()->xCurrentTime(sys_vfs(), &d);
    *t = (sqlite3_int64)(d * 86400000.0);
    return rc;
}

const char *store__register_vfs(void)
{
    sqlite3_vfs *sys = sqlite3_vfs_find(NULL);
    if (sys == NULL)
        return NULL;
    vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct wal_file) + sys->szOsFile,
        .mxPathname = sys->mxPathname,
        .zName = "kotak",
        .pAppData = sys,
        .xOpen = x_open,
        .xDelete = x_delete,
        .xAccess = x_access,
        .xFullPathname = x_full_pathname,
        .xDlOpen = x_dl_open,
        .xDlError = x_dl_error,
        .xDlSym = x_dl_sym,
        .xDlClose = x_dl_close,
        .xRandomness = x_randomness,
        .xSleep = x_sleep,
        .xCurrentTime = x_current_time,
        .xGetLastError = x_get_last_error,
        .xCurrentTimeInt64 = x_current_time_int64,
    };
    return sqlite3_vfs_register(&vfs, 0) == SQLITE_OK ? vfs.zName : NULL;
}
