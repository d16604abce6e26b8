/*
 * spool.h — where a message waits between DATA and the store: in memory up
 * to a threshold, and past it in an unnamed temporary file beside the
 * store, so that a 25 MiB message never sits whole in memory.
 */
#ifndef KOTAK_SPOOL_H
#define KOTAK_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

struct spool {
    struct buf mem;   /* the first bytes */
    int fd;           /* the rest, or -1 */
    uint64_t file_len;
    const char *dir;  /* for the temporary file; borrowed */
};

/* An empty spool that keeps up to mem_max bytes in memory. */
void spool_init(struct spool *sp, size_t mem_max, const char *dir);

/* Appends; 0, -ENOSPC when the disk is full, or another -errno. */
int spool_write(struct spool *sp, const void *p, size_t n);

/*
 * Reads from offset into p: the count, 0 at the end, or -errno. Used by the
 * store thread; the spool is not written meanwhile.
 */
ssize_t spool_read(struct spool *sp, uint64_t offset, void *p, size_t n);

/* The bytes written so far. */
uint64_t spool_size(const struct spool *sp);

/* Frees the memory and closes the file (which vanishes with it). */
void spool_free(struct spool *sp);

#endif
