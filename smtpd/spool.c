/*
 * spool.c — memory first, then an O_TMPFILE file; see spool.h.
 */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

void spool_init(struct spool *sp, size_t mem_max, const char *dir)
{
    buf_init(&sp->mem, mem_max ? mem_max : 1);
    sp->fd = -1;
    sp->file_len = 0;
    sp->dir = dir;
}

/* An unnamed file in dir; where O_TMPFILE is missing, a named one unlinked at once. */
static int open_tmp(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd < 0 ? -errno : fd;
    char path[4096];
    snprintf(path, sizeof(path), "%s/spool-XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    unlink(path);
    return fd;
}

int spool_write(struct spool *sp, const void *p, size_t n)
{
    if (sp->fd < 0 && buf_append(&sp->mem, p, n) == 0)
        return 0;
    if (sp->fd < 0) {
        int fd = open_tmp(sp->dir);
        if (fd < 0)
            return fd;
        sp->fd = fd;
    }
    const char *d = p;
    while (n > 0) {
        ssize_t w = pwrite(sp->fd, d, n, (off_t)sp->file_len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno == EDQUOT ? -ENOSPC : -errno;
        d += w;
        n -= (size_t)w;
        sp->file_len += (uint64_t)w;
    }
    return 0;
}

ssize_t spool_read(struct spool *sp, uint64_t offset, void *p, size_t n)
{
    if (offset < sp->mem.len) {
        size_t k = sp->mem.len - (size_t)offset;
        if (k > n)
            k = n;
        memcpy(p, sp->mem.data + offset, k);
        return (ssize_t)k;
    }
    if (sp->fd < 0)
        return 0;
    uint64_t foff = offset - sp->mem.len;
    if (foff >= sp->file_len)
        return 0;
    ssize_t r;
    do
        r = pread(sp->fd, p, n, (off_t)foff);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

uint64_t spool_size(const struct spool *sp)
{
    return sp->mem.len + sp->file_len;
}

void spool_free(struct spool *sp)
{
    buf_free(&sp->mem);
    if (sp->fd >= 0)
        close(sp->fd);
    sp->fd = -1;
    sp->file_len = 0;
}
