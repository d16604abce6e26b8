/*
 * util.c — allocation wrappers, kotak's error strings and fatal().
 *
 * Out of memory is not an error kotak tries to survive: a mail server that
 * cannot allocate a few bytes cannot answer sensibly either, so it aborts
 * loudly and lets the supervisor restart it. Everything acknowledged is
 * already committed, so nothing is lost.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

const char *kotak_strerror(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case KOTAK_ESTORE: return "store error";
    case KOTAK_ELOCKED: return "store is locked by another process";
    case KOTAK_EREADONLY: return "store is read-only";
    case KOTAK_ENODOMAIN: return "domain is not local";
    case KOTAK_ESCHEMA: return "store was written by a newer kotak";
    case KOTAK_EADDR: return "not a valid mailbox address";
    default: return strerror(err);
    }
}

static void *oom(size_t n)
{
    fprintf(stderr, "kotak: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : oom(n);
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    return p ? p : oom(n * size);
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n);
}

char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

void fatal(int status, const char *fmt, ...)
{
    va_list ap;
    log_flush(); /* what was logged before comes first */
    fprintf(stderr, "%s: ", program_invocation_short_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(status);
}

int drop_privileges(const char *user, char *err, size_t err_size)
{
    if (geteuid() != 0 || user == NULL || user[0] == '\0')
        return 0;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(err, err_size, "no such user '%s' for [server] user; create it or change the "
                 "setting", user);
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        snprintf(err, err_size, "cannot switch to user '%s': %s", user, strerror(errno));
        return -1;
    }
    /* Make sure there is no way back. */
    if (setuid(0) == 0) {
        snprintf(err, err_size, "could regain root after switching to '%s'", user);
        return -1;
    }
    return 0;
}

bool looks_like_http(const char *line, size_t len)
{
    static const char *const methods[] = {"GET ", "POST ", "HEAD ", "PUT ", "CONNECT ",
                                          "OPTIONS ", "DELETE ", "PATCH "};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        size_t n = strlen(methods[i]);
        if (len >= n && memcmp(line, methods[i], n) == 0)
            return true;
    }
    return false;
}

bool decode_string(const char *in, size_t n, char *out, size_t size,
                   bool (*step)(const char *in, size_t n, size_t *i, char *c_r))
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c;
        if (!step(in, n, &i, &c))
            return false;
        if (o + 1 >= size)
            return false;
        out[o++] = c;
    }
    if (size == 0)
        return false;
    out[o] = '\0';
    return true;
}

int hold_store(const char *path, bool exclusive)
{
    size_t n = strlen(path) + sizeof("-daemons");
    char *lock = xmalloc(n);
    snprintf(lock, n, "%s-daemons", path);
    int fd = open(lock, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    char *dir = dirname(lock);
    struct stat st, folder;
    int rc = fd < 0 ? -errno : fstat(fd, &st) < 0 || stat(dir, &folder) < 0 ? -errno : 0;
    free(lock);
    /* A FIFO planted there would hang us; a second name for another file (a
     * hard link the data folder's owner made) would have root give it away. */
    if (rc == 0 && (!S_ISREG(st.st_mode) || st.st_nlink != 1))
        rc = -EINVAL;
    /* Private like all in the data folder, and its owner's, the daemons'
     * user: made by root's restore, it is given to them, or they could not
     * open it to hold the store. */
    if (rc == 0 && geteuid() == 0 && st.st_uid != folder.st_uid &&
        fchown(fd, folder.st_uid, folder.st_gid) < 0)
        rc = -errno;
    if (rc < 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}
