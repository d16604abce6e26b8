/*
 * util.h — small helpers every kotak program shares: allocation that never
 * returns NULL, start-up fatal errors, and the error codes that are not errno.
 */
#ifndef KOTAK_UTIL_H
#define KOTAK_UTIL_H

#include <stdbool.h>
#include <stddef.h>

/* KOTAK_VERSION, a string: meson.build's project version, written at setup. */
#include "kotak-version.h"

/*
 * Error codes beyond errno. Functions return 0 or a negative value: -errno
 * (-EEXIST, -ENOENT, -ENOSPC, ...) or one of these, also negated.
 */
enum kotak_err {
    KOTAK_EBASE = 10000,
    KOTAK_ESTORE,    /* the store failed in a way that has no errno twin */
    KOTAK_ELOCKED,   /* another process holds the store's write lock */
    KOTAK_EREADONLY, /* the store file or its folder is not writable */
    KOTAK_ENODOMAIN, /* the address is in a domain that is not local */
    KOTAK_ESCHEMA,   /* the store was written by a newer kotak */
    KOTAK_EADDR,     /* not a valid RFC 5321 mailbox */
};

/* A short sentence for a code from this enum or errno, never NULL. */
const char *kotak_strerror(int err);

/*
 * True when a command line is an HTTP request line ("GET / HTTP/1.1", ...).
 * A browser can be made to send a form to a mail port; its request line
 * comes first, so hanging up there keeps the form's body from ever being
 * read as mail commands (cross-protocol attacks).
 */
bool looks_like_http(const char *line, size_t len);

/*
 * Decodes in[0..n) into the C string out[0..size), a character at a time:
 * step decodes the one that starts at in[*i] into *c_r, moves *i to the
 * last octet it took, and returns false when it is not valid. Returns false
 * too when out has no room for every character and the NUL.
 */
bool decode_string(const char *in, size_t n, char *out, size_t size,
                   bool (*step)(const char *in, size_t n, size_t *i, char *c_r));

/* Allocation that aborts the process when memory runs out. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/*
 * Start-up only: when running as root and user is not empty, switches to
 * that user and its groups for good. Returns 0, or -1 with a sentence in err.
 */
int drop_privileges(const char *user, char *err, size_t err_size);

/* Start-up only: print "PROG: message" on stderr and exit with status. */
void fatal(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/*
 * A daemon's hold on the store at path, for as long as it runs: a shared
 * flock(2) on path-daemons (0600, the data folder owner's), a file of its
 * own (never the store, whose POSIX locks SQLite owns). exclusive: the hold `kotak restore` takes, and
 * only when no daemon has one (-EWOULDBLOCK otherwise). Returns the open
 * descriptor that keeps the hold, or -errno.
 */
int hold_store(const char *path, bool exclusive);

#endif
