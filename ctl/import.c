/*
 * import.c — `kotak import mbox|maildir` and `kotak export mbox|maildir`:
 * a user's mail moved in from mbox files or a Maildir, and out to either,
 * round-trip exact but for what mbox.h says does not come back (export
 * counts those); `kotak import pop3` is
 * import_pop3.c's.
 *
 * Import goes through the store's import API (store.h, "importing"):
 * batches of one transaction each, every message skipped that the
 * maildrop holds already (by its UIDL, else by a digest of its octets), so
 * a run killed halfway and run again adds each message once. The UIDL a
 * client saw comes from an X-UIDL field in an mbox (taken out of the
 * message: it is mailbox bookkeeping, which Dovecot and fetchmail write
 * and kotak's export writes, and an exported message must come back as it
 * was), and from Dovecot's dovecot-uidlist in a Maildir: its P field, else
 * the UIDL Dovecot serves by default, %08Xu%08Xv of the UID and the
 * UIDVALIDITY.
 *
 * What an import reads. The admin runs it as root, often on a user's own
 * files, which that user could have prepared: so it reads nothing but what
 * it was given. An mbox FILE or a Maildir DIR that is itself a symbolic
 * link is refused (the admin gives the real path), and so is one reached
 * through a link on the way that root does not own, or owns where a user
 * could have placed it (safe_path.c: alice's /home/alice/backup ->
 * /home/bob would hand bob's mail to whoever the admin imports into).
 * Inside DIR, every name is opened relative to its folder's descriptor
 * with O_NOFOLLOW, so a linked cur/ or new/ or dovecot-uidlist is refused
 * (exit 2, nothing stored), and a message file that is a link, a FIFO, a
 * device or a folder is left out with a line on stderr. Run as root, a
 * message file must belong to the owner of its folder, cur/ or new/ (the
 * mail user for Dovecot's Maildirs, root for an admin's copy): a hard link
 * to a file of someone else, root's /var/mail/root say, which a user can
 * make where fs.protected_hardlinks is off, is left out too; and a cur/ or
 * new/ that others than its owner can write is refused, since anyone could
 * put such a link of the owner's files there. An mbox FILE follows a like
 * rule (open_mbox). A dovecot-uidlist is read a bounded line at a time,
 * and keeps nothing but what it says of the files found. Files are opened
 * O_NONBLOCK and read only when fstat says they are plain files: a FIFO
 * never hangs the import. An mbox is checked and imported from one
 * descriptor.
 *
 * Memory. A message larger than [limits] message_size (in its CRLF form,
 * as it would be stored) is refused with a line on stderr and the import
 * goes on; an mbox's message is read past without being kept once it is
 * over, so the import holds at most one message and its CRLF copy.
 * Refused messages and files left out make the exit status 1: the others
 * are imported, and the same command run again, with a higher limit, adds
 * just those.
 *
 * The same octets twice in one source with no UIDL telling them apart are
 * one message, since they are known by their digest alone: importing both
 * would make a run killed between the two and run again lose the second,
 * and a client sees no difference. The summary counts them apart from the
 * messages the maildrop held before ("duplicates within the source").
 *
 * Export writes with mode 0600 into a FILE or DIR that does not exist or is
 * empty, never through a symbolic link, and syncs what it wrote before it
 * says it is done. An existing DIR must be the folder of the user running
 * kotak, and FILE's folder that user's or root's (/root, /tmp): a folder
 * of another user is one its owner can change under kotak as it writes.
 * An mbox is written under a temporary name beside FILE (O_EXCL,
 * O_NOFOLLOW, relative to that folder's descriptor) and renamed at the
 * end, so FILE is never half written. Each message carries its UIDL: an
 * mbox as an X-UIDL field on top, a Maildir in the dovecot-uidlist it
 * writes (P fields), which Dovecot itself reads too.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ahead.h"
#include "ctl.h"
#include "mbox.h"
#include "progress.h"
#include "safe_path.h"
#include "util.h"

/* --- what every form shares ------------------------------------------------ */

struct growbuf {
    uint8_t *data;
    size_t len, cap;
    size_t max; /* not 0: what the buffer grows to at most, when that is enough */
};

static void grow(struct growbuf *b, size_t need)
{
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    if (b->max != 0 && cap > b->max && need <= b->max)
        cap = b->max;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static void put(struct growbuf *b, const void *p, size_t n)
{
    grow(b, b->len + n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void user_id(struct store *s, const char *arg, int64_t *id_r, char *address, size_t size)
{
    struct addr a;
    struct store_user u;
    if (addr_parse(arg, strlen(arg), ADDR_UTF8, &a) < 0)
        ctl_die("'%s' is not a mailbox address; give one such as alice@example.org", arg);
    int rc = store_user_lookup(s, &a, &u);
    if (rc == 0)
        ctl_die("user %s does not exist; add it with 'kotak user add %s' first", arg, arg);
    if (rc < 0)
        ctl_die_store(s, rc, arg);
    explicit_bzero(u.hash, sizeof(u.hash));
    *id_r = u.id;
    snprintf(address, size, "%s", u.address);
}

/* --- import ------------------------------------------------------------------ */

struct importer {
    struct store *s;
    struct store_import *imp;
    const char *user;
    size_t limit; /* [limits] message_size: the largest message stored, in its CRLF form */
    size_t added, skipped, dups, refused, odd, kept;
    uint64_t octets;
    struct progress prog;
};

/* Stores a message in its CRLF form, of that digest, unless the maildrop holds it already. */
static void store_crlf(struct importer *im, const uint8_t *msg, size_t n, int64_t arrived,
                       const char *uidl, const uint8_t digest[STORE_DIGEST_SIZE])
{
    int rc = store_import_seen(im->imp, uidl, (int64_t)n, digest);
    if (rc == 1) {
        im->skipped++;
        return;
    }
    if (rc == 2) { /* the same octets twice in the source: one message (see the top of the file) */
        im->dups++;
        return;
    }
    bool kept = false;
    if (rc == 0)
        rc = store_import_add(im->imp, msg, n, arrived, uidl, digest, &kept);
    if (rc < 0) {
        progress_break(&im->prog);
        if (rc == -EFBIG)
            ctl_die("a message of %zu octets is too large for the store", n);
        ctl_die_store(im->s, rc, im->user);
    }
    im->added++;
    im->kept += kept;
    im->octets += n;
}

/* Commits the import's open batch (before a wait); dies when that fails. */
static void importer_commit(struct importer *im)
{
    int rc = store_import_commit(im->imp);
    if (rc < 0) {
        im->prog.before_write = NULL;
        progress_break(&im->prog);
        ctl_die_store(im->s, rc, im->user);
    }
}

static void commit_before_write(void *ctx)
{
    struct importer *im = ctx;
    if (im->imp != NULL)
        importer_commit(im);
}

/* ctl_die's hook: what is stored is committed before the line goes out (it can block). */
static void commit_before_dying(void *ctx)
{
    struct importer *im = ctx;
    if (im->imp != NULL)
        (void)store_import_commit(im->imp); /* dying anyway: a failure rolls it back */
}

/* Starts the progress bar, which commits before it writes. */
static void importer_progress(struct importer *im, uint64_t msgs, uint64_t bytes)
{
    progress_start(&im->prog, "importing", msgs, bytes);
    im->prog.before_write = commit_before_write;
    im->prog.ctx = im;
    ctl_before_dying(commit_before_dying, im);
}

/* Says on stderr that a message of the source is left out; the import goes on. */
static void left_out(struct importer *im, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void left_out(struct importer *im, const char *fmt, ...)
{
    importer_commit(im); /* a write to stderr can block: no write lock held across it */
    progress_break(&im->prog);
    va_list ap;
    va_start(ap, fmt);
    fputs("kotak: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n", stderr);
    va_end(ap);
}

/* Says that a message is larger than [limits] message_size, and counts it. */
static void refuse(struct importer *im, const char *what, size_t size)
{
    im->refused++;
    if (size > 0)
        left_out(im, "%s (%zu octets) is larger than [limits] message_size (%zu octets): left "
                 "out; raise the limit and import again to add it", what, size, im->limit);
    else
        left_out(im, "%s is larger than [limits] message_size (%zu octets): left out; raise the "
                 "limit and import again to add it", what, im->limit);
}

/* Prints the summary; the command's exit status: 1 when a message was left out, else 0. */
static int import_finish(struct importer *im)
{
    ctl_before_dying(NULL, NULL);
    int rc = store_import_end(&im->imp);
    if (rc < 0)
        ctl_die_store(im->s, rc, im->user);
    progress_draw(&im->prog, true);
    printf("imported %zu message%s (%" PRIu64 " octets) into %s, skipped %zu already there, ",
           im->added, im->added == 1 ? "" : "s", im->octets, im->user, im->skipped);
    if (im->dups > 0)
        printf("%zu duplicate%s within the source, ", im->dups, im->dups == 1 ? "" : "s");
    if (im->refused > 0)
        printf("%zu refused (over [limits] message_size), ", im->refused);
    if (im->odd > 0)
        printf("%zu left out (not plain files), ", im->odd);
    printf("%zu UIDL%s kept\n", im->kept, im->kept == 1 ? "" : "s");
    return im->refused > 0 || im->odd > 0 ? 1 : 0;
}

/* Opens the store and starts an import of source ("mbox", "maildir") into user's maildrop. */
static void importer_open(struct importer *im, const struct ctl *c, struct conf *conf,
                          const char *source, const char *user, char *address, size_t size)
{
    ctl_load_conf(c, conf);
    im->s = ctl_open_store(conf, false);
    int64_t id;
    user_id(im->s, user, &id, address, size);
    im->user = address;
    int rc = store_import_begin(im->s, id, source, &im->imp);
    if (rc < 0)
        ctl_die_store(im->s, rc, address);
}

/* What a file that is no plain file is, for the line that says so. */
static const char *file_kind(mode_t mode)
{
    if (S_ISLNK(mode))
        return "a symbolic link";
    if (S_ISDIR(mode))
        return "a folder";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "a device";
    return "not a plain file";
}

/* path without its trailing slashes (with one, open() would follow a link it names). */
static void trim_slashes(const char *path, char *out, size_t size)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n >= size)
        ctl_die("%s: the name is too long", path);
    memcpy(out, path, n);
    out[n] = '\0';
}

int ctl_open_path(const char *path, int flags)
{
    char err[2 * PATH_MAX + 128];
    int fd = safe_path_open(path, flags, err, sizeof(err));
    if (fd >= 0)
        return fd;
    if (err[0] != '\0')
        ctl_die("%s", err);
    errno = -fd;
    return -1;
}

/*
 * Opens an mbox FILE to import, once: never through a symbolic link (but
 * root's, on the way: ctl_open_path), never blocking (a FIFO), a plain
 * file only, whose first line is a From_ line (empty is fine). Dies when
 * it is not that. The import reads the same descriptor, so what was
 * checked is what is imported.
 *
 * As root, the file is opened from its folder's descriptor, and the two
 * are looked at together, since where fs.protected_hardlinks is off a
 * user can put a hard link to anyone's file in a folder the user can
 * write, and a hard link keeps the owner of the file it names (alice's
 * link to root's /var/mail/root is root's). A folder anyone can write
 * (/tmp) is refused: there a link can have any name. In a folder of
 * root's that its group can write (/var/mail) a file is taken only as a
 * mail spool's: named for the account that owns it. In a folder of a
 * user, the file must be that user's. A folder only root can write holds
 * what root put there. The link count proves nothing: the other name can
 * be removed between the open and any look.
 */
static int open_mbox(const char *path, uint64_t *size_r)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    char dir[PATH_MAX + 3];
    /* The folder with "/." after it: a link of root's that names it is followed (safe_path.h). */
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if ((size_t)(slash - path) >= PATH_MAX)
        ctl_die("%s: the name is too long", path);
    else
        snprintf(dir, sizeof(dir), "%.*s/.", (int)(slash - path), path);
    if (base[0] == '\0')
        ctl_die("%s is a folder, not an mbox; 'kotak import maildir' reads a Maildir", path);
    int dfd = ctl_open_path(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0)
        ctl_die("cannot read the folder of %s: %s", path, strerror(errno));
    int fd = openat(dfd, base, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ELOOP)
        ctl_die("%s is a symbolic link; kotak reads no mbox through one: give the file it leads "
                "to (readlink -f)", path);
    if (fd < 0 && errno == EMFILE)
        ctl_die("cannot open %s: too many files at once; import them in smaller groups", path);
    if (fd < 0)
        ctl_die("cannot read %s: %s", path, strerror(errno));
    struct stat st, dst;
    if (fstat(fd, &st) < 0 || fstat(dfd, &dst) < 0)
        ctl_die("cannot read %s: %s", path, strerror(errno));
    close(dfd);
    if (S_ISDIR(st.st_mode))
        ctl_die("%s is a folder, not an mbox; 'kotak import maildir' reads a Maildir", path);
    if (!S_ISREG(st.st_mode))
        ctl_die("%s is not a plain file (%s); give an mbox file", path, file_kind(st.st_mode));
    if (geteuid() == 0 && (dst.st_mode & S_IWOTH) != 0)
        ctl_die("%s is in a folder anyone can write (mode %04o), where anyone could have put a "
                "link to someone else's file under any name; move it to a folder of its owner "
                "and import it from there", path, (unsigned)(dst.st_mode & 07777));
    if (geteuid() == 0 && dst.st_uid == 0 && (dst.st_mode & S_IWGRP) != 0) {
        /* A mail spool (/var/mail, root's and its group's to write): each file is named
         * for the account that owns it. */
        struct passwd *pw = getpwnam(base);
        if (pw == NULL || pw->pw_uid != st.st_uid)
            ctl_die("%s is in a folder its group can write (mode %04o), where a file is taken "
                    "only as a mail spool's, named for the account that owns it; this one "
                    "belongs to uid %u: move it to a folder of its owner and import it from "
                    "there", path, (unsigned)(dst.st_mode & 07777), (unsigned)st.st_uid);
    } else if (geteuid() == 0 && dst.st_uid != 0 && st.st_uid != dst.st_uid) {
        ctl_die("%s belongs to uid %u, not to uid %u who owns its folder (a hard link to "
                "someone else's file?); chown it if it is this user's mail", path,
                (unsigned)st.st_uid, (unsigned)dst.st_uid);
    }
    char head[5];
    ssize_t n;
    while ((n = pread(fd, head, sizeof(head), 0)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        ctl_die("cannot read %s: %s", path, strerror(errno));
    if (n > 0 && !mbox_is_from_line(head, (size_t)n))
        ctl_die("%s is not an mbox: its first line is no 'From ' line", path);
    *size_r = (uint64_t)st.st_size;
    return fd;
}

/* Whether every LF of b follows a CR (and there is one): an mbox with CRLF lines. */
static bool crlf_lines(const uint8_t *b, size_t n)
{
    bool any = false;
    for (const uint8_t *p = b; (p = memchr(p, '\n', (size_t)(b + n - p))) != NULL; p++) {
        if (p == b || p[-1] != '\r')
            return false;
        any = true;
    }
    return any;
}

/* Lines from a descriptor, each kept only up to a bound: no line costs more memory than that. */
struct reader {
    int fd;
    const char *path;
    size_t at, end;
    bool eof;
    uint8_t buf[65536];
};

/*
 * Appends the next line (its LF included) to b, at most max octets of it;
 * returns the line's whole length, 0 at the end of the file.
 */
static size_t read_line(struct reader *r, struct growbuf *b, size_t max)
{
    size_t total = 0;
    for (;;) {
        if (r->at == r->end) {
            if (r->eof)
                return total;
            ssize_t got = read(r->fd, r->buf, sizeof(r->buf));
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0)
                ctl_die("cannot read %s: %s", r->path, strerror(errno));
            r->at = 0;
            r->end = (size_t)got;
            r->eof = got == 0;
            continue;
        }
        const uint8_t *p = r->buf + r->at;
        const uint8_t *nl = memchr(p, '\n', r->end - r->at);
        size_t n = nl ? (size_t)(nl - p) + 1 : r->end - r->at;
        if (total < max)
            put(b, p, n < max - total ? n : max - total);
        total += n;
        r->at += n;
        if (nl != NULL)
            return total;
    }
}

/* One message of an mbox as it is read: its number in the file, where its From_ line is. */
struct mbox_msg {
    size_t number, line;
    bool over; /* larger than the limit: its lines are read past, not kept */
    int64_t arrived;
};

/* What an mbox item is (enum for ahead_item.rc). */
enum mbox_item {
    MB_MSG = 1,     /* a message, ready to store */
    MB_TOO_BIG = 2, /* a message over the limit: size its CRLF size, or 0 when not known */
    MB_NONE = 3,    /* no message at all: the files are empty */
};

/*
 * The producer (ahead.h) of an mbox import: the files in turn, a line at a
 * time, each message made an item once the next From_ line (or the end)
 * shows where it ends. A message is kept in memory only up to the limit:
 * past it, its lines are read and dropped, and it is refused, so an mbox
 * costs one message of at most [limits] message_size and its CRLF form.
 * A line before the first From_ line is refused as open_mbox refuses it
 * (the file changed since): nothing is prepended to the first message.
 */
struct mbox_reader {
    int *fds;
    char **paths;
    int nfiles, file;  /* the file read now */
    struct reader *r;  /* its reader; NULL before it and after the last */
    struct growbuf m;  /* the message being gathered */
    struct mbox_msg mm;
    bool in_msg;
    size_t lineno;
    size_t limit;
};

/* The message gathered in mb->m into it: the empty line before the next From_ line is the mbox's. */
static void mbox_item(struct mbox_reader *mb, struct ahead_item *it)
{
    struct growbuf *m = &mb->m;
    size_t n = m->len;
    m->len = 0;
    it->number = mb->mm.number;
    it->line = mb->mm.line;
    it->time = mb->mm.arrived;
    it->file = mb->file;
    if (mb->mm.over) {
        it->rc = MB_TOO_BIG; /* size 0: not known, its reading stopped at the limit */
        return;
    }
    bool crlf = crlf_lines(m->data, n);
    const char *sep = crlf ? "\r\n" : "\n";
    size_t k = crlf ? 2 : 1;
    if (n == k && memcmp(m->data, sep, k) == 0)
        n = 0;
    else if (n >= 2 * k && memcmp(m->data + n - k, sep, k) == 0 &&
             memcmp(m->data + n - 2 * k, sep, k) == 0)
        n -= k;
    if (mbox_take_xuidl(m->data, &n, it->uidl, sizeof(it->uidl)) != 1)
        it->uidl[0] = '\0';
    size_t size = mbox_crlf_len(m->data, n);
    if (size > mb->limit) {
        it->rc = MB_TOO_BIG;
        it->size = size;
        return;
    }
    it->data.max = SIZE_MAX;
    buf_reserve(&it->data, size);
    it->data.len = mbox_to_crlf(m->data, n, it->data.data);
    store_digest(it->data.data, it->data.len, it->digest);
    it->rc = MB_MSG;
}

/* Fills it with the next message of the files (ahead.h's callback); last after the final one. */
static void mbox_fill(void *ctx, size_t i, struct ahead_item *it)
{
    (void)i;
    struct mbox_reader *mb = ctx;
    for (;;) {
        if (mb->r == NULL) {
            if (mb->file + 1 >= mb->nfiles) {
                it->rc = MB_NONE;
                it->last = true;
                return;
            }
            mb->file++;
            mb->r = xmalloc(sizeof(*mb->r));
            *mb->r = (struct reader){.fd = mb->fds[mb->file], .path = mb->paths[mb->file]};
            mb->mm = (struct mbox_msg){0};
            mb->in_msg = false;
            mb->lineno = 0;
            mb->m.len = 0;
        }
        /* Room for the line: what the message may still take and its separator (past
         * that it is too large), and at least enough to see a From_ line's date. */
        struct growbuf *m = &mb->m;
        size_t at = m->len;
        size_t room = mb->mm.over ? 0 : mb->limit + 3 - at;
        size_t len = read_line(mb->r, m, room > 256 ? room : 256);
        mb->lineno++;
        if (len == 0) { /* the end of this file */
            bool had = mb->in_msg;
            free(mb->r);
            mb->r = NULL;
            if (had) {
                mbox_item(mb, it);
                it->last = mb->file + 1 >= mb->nfiles;
                return;
            }
            continue;
        }
        const char *line = (const char *)m->data + at;
        size_t kept = m->len - at;
        if (mbox_is_from_line(line, kept)) {
            char from[256];
            size_t body = kept < sizeof(from) ? kept : sizeof(from);
            memcpy(from, line, body);
            m->len = at;
            bool had = mb->in_msg;
            if (had)
                mbox_item(mb, it); /* the message before this From_ line */
            mb->in_msg = true;
            mb->mm.number++;
            mb->mm.line = mb->lineno;
            mb->mm.over = false;
            m->len = 0;
            while (body > 0 && (from[body - 1] == '\n' || from[body - 1] == '\r'))
                body--;
            if (mbox_from_time(from, body, &mb->mm.arrived) != 1)
                mb->mm.arrived = (int64_t)time(NULL);
            if (had)
                return;
            continue;
        }
        if (!mb->in_msg)
            ctl_die("%s is not an mbox: its first line is no 'From ' line", mb->r->path);
        if (mb->mm.over || kept < len || at + len > mb->limit + 2) {
            /* Too large: the message's CRLF form is no shorter than its lines. */
            mb->mm.over = true;
            m->len = 0;
            continue;
        }
        size_t skip = mbox_unquote_len(line, kept);
        if (skip > 0) {
            memmove(m->data + at, m->data + at + skip, kept - skip);
            m->len -= skip;
        }
    }
}

static int import_mbox(const struct ctl *c)
{
    static const char usage[] = "kotak import mbox USER FILE...";
    if (c->argc < 2)
        ctl_usage(usage, false);
    uint64_t total = 0;
    int nfiles = c->argc - 1;
    int *fds = xmalloc((size_t)nfiles * sizeof(*fds));
    for (int i = 0; i < nfiles; i++) { /* every file checked before anything is stored */
        uint64_t size;
        fds[i] = open_mbox(c->argv[i + 1], &size);
        total += size;
    }
    struct conf conf;
    struct importer im = {0};
    char address[ADDR_TEXT_SIZE];
    importer_open(&im, c, &conf, "mbox", c->argv[0], address, sizeof(address));
    im.limit = (size_t)conf.limits.message_size;
    importer_progress(&im, 0, total);
    struct mbox_reader mb = {.fds = fds, .paths = c->argv + 1, .nfiles = nfiles, .file = -1,
                             .m = {.max = im.limit + 3 + 256}, .limit = im.limit};
    struct ahead *a;
    ahead_start(&a, SIZE_MAX, mbox_fill, &mb);
    for (bool last = false; !last;) {
        int rc;
        struct ahead_item *it = ahead_next_or_commit(a, im.imp, &rc);
        if (rc < 0) {
            progress_break(&im.prog);
            ctl_die_store(im.s, rc, im.user);
        }
        if (it == NULL) { /* a file could not be read, or is no mbox: after what came before */
            progress_break(&im.prog);
            import_finish(&im);
            ctl_die("%s", ahead_failure(a));
        }
        last = it->last;
        if (it->rc == MB_MSG) {
            store_crlf(&im, it->data.data, it->data.len, it->time,
                       it->uidl[0] ? it->uidl : NULL, it->digest);
            im.prog.done_bytes += it->data.len;
        } else if (it->rc == MB_TOO_BIG) {
            char what[4200];
            snprintf(what, sizeof(what), "%s: message %zu (its From_ line is line %zu)",
                     c->argv[1 + it->file], it->number, it->line);
            refuse(&im, what, it->size);
        }
        ahead_done(a, it);
        im.prog.done_msgs = im.added + im.skipped + im.dups + im.refused;
        progress_draw(&im.prog, false);
    }
    ahead_stop(a);
    for (int i = 0; i < nfiles; i++)
        close(fds[i]);
    free(fds);
    free(mb.m.data);
    int status = import_finish(&im);
    store_close(&im.s);
    conf_free(&conf);
    return status;
}

/* One file of a Maildir, in the order it is imported. */
struct mdfile {
    char *name;       /* the file's name in cur/ or new/ */
    int sub;          /* 0: cur/, 1: new/ */
    const char *kind; /* not NULL: no plain file, what it is (left out) */
    char *base;       /* the name up to its ':' */
    uint32_t uid;     /* from dovecot-uidlist; 0: not there */
    char *uidl;       /* its P field, NULL when none */
    int64_t time;
};

static const char *const md_subs[2] = {"cur", "new"};

static int by_base(const void *a, const void *b)
{
    return strcmp(((const struct mdfile *)a)->base, ((const struct mdfile *)b)->base);
}

static int by_order(const void *a, const void *b)
{
    const struct mdfile *x = a, *y = b;
    if ((x->uid != 0) != (y->uid != 0))
        return x->uid ? -1 : 1; /* the ones Dovecot numbered first, in its order */
    if (x->uid != y->uid)
        return x->uid < y->uid ? -1 : 1;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    return strcmp(x->base, y->base);
}

/*
 * Opens the Maildir DIR as the admin typed it, but not when DIR itself is a
 * symbolic link, nor through a link of a user on the way (ctl_open_path):
 * a Maildir is read where it is, and nothing inside it is
 * followed either (open_md_sub, the files' openat), so a Maildir that its
 * owner prepared leads kotak nowhere outside it.
 */
static int open_maildir(const char *dir)
{
    int fd = ctl_open_path(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0)
        return fd;
    int e = errno;
    if (e == ELOOP)
        ctl_die("%s is a symbolic link; kotak reads a Maildir only where it is: give the folder "
                "it leads to (readlink -f)", dir);
    if (e == ENOTDIR)
        ctl_die("%s is not a Maildir (not a folder); 'kotak import mbox' reads an mbox file", dir);
    ctl_die("cannot read %s: %s", dir, strerror(e));
}

/* DIR/cur or DIR/new, a folder in DIR itself: never a link to one elsewhere. */
static int open_md_sub(int dfd, const char *dir, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    int e = errno;
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        ctl_die("%s/%s is a symbolic link; kotak reads nothing outside a Maildir: make %s/ a "
                "folder of the Maildir (a copy) and import again", dir, name, name);
    if (e == ENOENT || e == ENOTDIR || e == ELOOP)
        ctl_die("%s is not a Maildir: it has no %s/ folder", dir, name);
    ctl_die("cannot read %s/%s: %s", dir, name, strerror(e));
}

/*
 * The owner a message file in cur/ or new/ (subfd) must have, as root
 * (see the top of the file): the folder's; -1 (any) for another user, who
 * reads what it may anyway. Dies, as root, when others can write it.
 */
static uid_t md_sub_owner(int subfd, const char *dir, const char *name)
{
    struct stat st;
    if (fstat(subfd, &st) < 0)
        ctl_die("cannot read %s/%s: %s", dir, name, strerror(errno));
    if (geteuid() != 0)
        return (uid_t)-1;
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        ctl_die("%s/%s can be written by others than its owner (mode %04o), who could put "
                "links to anyone's files there; make it the owner's alone (chmod go-w) and "
                "import again", dir, name, (unsigned)(st.st_mode & 07777));
    return st.st_uid;
}

/* The longest line of a dovecot-uidlist read: a user who can write the
 * Maildir decides what the file holds. Dovecot's records are a few hundred
 * octets. */
#define UIDLIST_LINE_MAX 65536

/*
 * The next line of a dovecot-uidlist into b (b->len its length, its LF
 * included): 1, or 0 at the end of the file. Dies on one longer than
 * UIDLIST_LINE_MAX, of which no more than that is kept.
 */
static int uidlist_line(struct reader *r, struct growbuf *b, size_t lineno)
{
    b->len = 0;
    size_t n = read_line(r, b, UIDLIST_LINE_MAX);
    if (n > UIDLIST_LINE_MAX)
        ctl_die("%s: line %zu is longer than %d octets, so no dovecot-uidlist line; move the "
                "file away to import without its UIDLs", r->path, lineno, UIDLIST_LINE_MAX);
    return n > 0;
}

/*
 * Reads DIR/dovecot-uidlist when there is one, and gives each of files (n,
 * sorted by base) the UID and UIDL of its record; dies when it is not a
 * dovecot-uidlist. A record is kept only on the file it names, so what the
 * file holds costs no memory beyond the files found, however long it is
 * (a user who can write the Maildir decides that); the first record of a
 * name counts.
 */
static void read_uidlist(int dfd, const char *dir, struct mdfile *files, size_t n)
{
    char path[4096 + 32];
    snprintf(path, sizeof(path), "%s/dovecot-uidlist", dir);
    int fd = openat(dfd, "dovecot-uidlist", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return;
    if (fd < 0 && errno == ELOOP)
        ctl_die("%s is a symbolic link; kotak reads nothing outside a Maildir: move it away to "
                "import without its UIDLs, or put the file itself there", path);
    if (fd < 0)
        ctl_die("cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        ctl_die("cannot read %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        ctl_die("%s is not a plain file (%s); move it away to import without its UIDLs", path,
                file_kind(st.st_mode));
    struct reader *r = xmalloc(sizeof(*r));
    *r = (struct reader){.fd = fd, .path = path};
    struct growbuf line = {0};
    int version;
    uint32_t uidvalidity;
    if (uidlist_line(r, &line, 1) == 0 ||
        mbox_uidlist_header((const char *)line.data, line.len, &version, &uidvalidity) < 0)
        ctl_die("%s is not a dovecot-uidlist (its first line); move it away to import "
                "without its UIDLs", path);
    for (size_t lineno = 2; uidlist_line(r, &line, lineno) == 1; lineno++) {
        struct mbox_uidlist_rec rec;
        if (mbox_uidlist_record((const char *)line.data, line.len, version, &rec) < 0)
            ctl_die("%s: line %zu is not a dovecot-uidlist record; move the file away to "
                    "import without its UIDLs", path, lineno);
        if (rec.name_len > NAME_MAX || n == 0)
            continue; /* a name no file can have */
        char base[NAME_MAX + 1];
        memcpy(base, rec.name, rec.name_len);
        base[rec.name_len] = '\0';
        struct mdfile key = {.base = base};
        struct mdfile *f = bsearch(&key, files, n, sizeof(files[0]), by_base);
        /* Files of one base (a name listed in cur/ and new/ both) sit side by side. */
        while (f != NULL && f > files && strcmp(f[-1].base, base) == 0)
            f--;
        for (; f != NULL && f < files + n && strcmp(f->base, base) == 0; f++) {
            if (f->uid != 0)
                continue;
            f->uid = rec.uid;
            /* A UIDL longer than RFC 1939's 70 octets would be renewed by the store anyway. */
            if (rec.pop3_uidl != NULL && rec.pop3_uidl_len <= 70) {
                f->uidl = xstrndup(rec.pop3_uidl, rec.pop3_uidl_len);
            } else {
                char def[17];
                mbox_dovecot_uidl(rec.uid, uidvalidity, def);
                f->uidl = xstrdup(def);
            }
        }
    }
    free(line.data);
    free(r);
    close(fd);
}

/* What a file of the type readdir gives is; NULL for a plain file or a type not known. */
static const char *dtype_kind(unsigned char type)
{
    switch (type) {
    case DT_LNK:
        return "a symbolic link";
    case DT_DIR:
        return "a folder";
    case DT_FIFO:
        return "a FIFO";
    case DT_SOCK:
        return "a socket";
    case DT_CHR:
    case DT_BLK:
        return "a device";
    default:
        return NULL;
    }
}

/*
 * The entries of cur/ or new/ (subfd), each with what it is; none is
 * opened here. The type comes from readdir where the filesystem tells it
 * (a stat per file would be a tenth of an import's calls into the kernel),
 * else from a stat; read_md_file checks it again on what it opens.
 */
static void list_maildir(int subfd, int sub, const char *dir, struct mdfile **files, size_t *n,
                         size_t *alloc)
{
    int fd = fcntl(subfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL)
        ctl_die("cannot read %s/%s: %s", dir, md_subs[sub], strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int64_t name_time;
        bool timed = mbox_maildir_time(e->d_name, &name_time) == 1;
        const char *kind = dtype_kind(e->d_type);
        struct stat st;
        bool stated = false;
        if (e->d_type == DT_UNKNOWN || (e->d_type == DT_REG && !timed)) {
            if (fstatat(subfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT) /* moved or taken away meanwhile */
                    continue;
                ctl_die("cannot read %s/%s/%s: %s", dir, md_subs[sub], e->d_name,
                        strerror(errno));
            }
            stated = true;
            kind = S_ISREG(st.st_mode) ? NULL : file_kind(st.st_mode);
        }
        if (*n == *alloc) {
            *alloc = *alloc ? *alloc * 2 : 1024;
            *files = xrealloc(*files, *alloc * sizeof(**files));
        }
        struct mdfile *m = &(*files)[(*n)++];
        /* kind not NULL: no message of this Maildir; said, left out */
        *m = (struct mdfile){.name = xstrdup(e->d_name), .sub = sub, .kind = kind};
        m->base = xstrndup(e->d_name, strcspn(e->d_name, ":"));
        m->time = timed ? name_time : stated ? (int64_t)st.st_mtime : (int64_t)time(NULL);
    }
    closedir(d);
}

/* What read_md_file found. */
enum md_read {
    MD_READ = 1,      /* its octets are in the buffer */
    MD_GONE = 0,      /* moved meanwhile by a client of the old server */
    MD_ODD = -1,      /* not a plain file: f->kind says what */
    MD_NOT_OWNER = -2, /* another owner's (see the top of the file) */
    MD_TOO_BIG = -3,  /* larger than the limit */
    MD_FAILED = -4,   /* could not be read: an errno says why */
};

/*
 * Reads the Maildir file f into b, from its own descriptor; enum md_read.
 * *uid_r is the file's owner for MD_NOT_OWNER (owner is -1 when any owner
 * will do), *err_r the errno for MD_FAILED. Dies of nothing: it runs on
 * the reader thread.
 */
static int read_md_file(int subfd, struct mdfile *f, uid_t owner, size_t limit,
                        struct buf *b, uid_t *uid_r, int *err_r)
{
    int fd = openat(subfd, f->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return MD_GONE;
    if (fd < 0 && errno == ELOOP) { /* made a link since it was listed */
        f->kind = "a symbolic link";
        return MD_ODD;
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        *err_r = errno;
        if (fd >= 0)
            close(fd);
        return MD_FAILED;
    }
    if (!S_ISREG(st.st_mode)) {
        f->kind = file_kind(st.st_mode);
        close(fd);
        return MD_ODD;
    }
    /* Checked on the descriptor that is read: a hard link to a file of
     * another user has that user as its owner, whatever folder it is in. */
    if (owner != (uid_t)-1 && st.st_uid != owner) {
        *uid_r = st.st_uid;
        close(fd);
        return MD_NOT_OWNER;
    }
    /* The CRLF form is no shorter than the file. */
    if ((uint64_t)st.st_size > limit) {
        close(fd);
        return MD_TOO_BIG;
    }
    buf_reset(b);
    b->max = limit + 1;
    buf_reserve(b, (size_t)st.st_size + 1); /* no more than max: the size is at most limit */
    for (;;) {
        if (b->len > limit) { /* it grew meanwhile */
            close(fd);
            return MD_TOO_BIG;
        }
        buf_reserve(b, 1);
        size_t room = b->cap - b->len;
        if (room > limit + 1 - b->len)
            room = limit + 1 - b->len;
        ssize_t got = read(fd, b->data + b->len, room);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            *err_r = errno;
            close(fd);
            return MD_FAILED;
        }
        b->len += (size_t)got;
        /* A plain file reads short only at its end: the size fstat gave,
         * read in one call with room to spare, needs no second call. */
        if (got == 0 || (b->len == (uint64_t)st.st_size && (size_t)got < room))
            break;
    }
    close(fd);
    return MD_READ;
}

/* What the producer thread (ahead.h) of a Maildir import reads from. */
struct md_reader {
    struct mdfile *files; /* the producer sets kind; the main thread reads it after */
    const int *subfd;
    const uid_t *owner; /* of cur/ and new/ */
    size_t limit;
    struct buf raw; /* a file as read */
};

/* Reads files[i] into it (rc: enum md_read), as its CRLF form, with its digest. */
static void md_fill(void *ctx, size_t i, struct ahead_item *it)
{
    struct md_reader *md = ctx;
    struct mdfile *f = &md->files[i];
    it->rc = f->kind != NULL ? MD_ODD
                             : read_md_file(md->subfd[f->sub], f, md->owner[f->sub], md->limit,
                                            &md->raw, &it->uid, &it->err);
    if (it->rc != MD_READ)
        return;
    size_t n = mbox_crlf_len(md->raw.data, md->raw.len);
    if (n > md->limit) {
        it->size = n;
        it->rc = MD_TOO_BIG;
        return;
    }
    if (n == md->raw.len) { /* CRLF already: the buffer changes hands, no copy */
        struct buf t = it->data;
        it->data = md->raw;
        md->raw = t;
    } else {
        it->data.max = SIZE_MAX;
        buf_reserve(&it->data, n);
        it->data.len = mbox_to_crlf(md->raw.data, md->raw.len, it->data.data);
    }
    store_digest(it->data.data, n, it->digest);
}

static int import_maildir(const struct ctl *c)
{
    static const char usage[] = "kotak import maildir USER DIR";
    if (c->argc != 2)
        ctl_usage(usage, false);
    char dir[4096];
    trim_slashes(c->argv[1], dir, sizeof(dir));
    int dfd = open_maildir(dir);
    int subfd[2];
    uid_t owner[2];
    for (int i = 0; i < 2; i++) {
        subfd[i] = open_md_sub(dfd, dir, md_subs[i]);
        owner[i] = md_sub_owner(subfd[i], dir, md_subs[i]);
    }
    struct mdfile *files = NULL;
    size_t n = 0, alloc = 0;
    for (int i = 0; i < 2; i++)
        list_maildir(subfd[i], i, dir, &files, &n, &alloc);
    if (n > 0)
        qsort(files, n, sizeof(files[0]), by_base);
    read_uidlist(dfd, dir, files, n);
    if (n > 0)
        qsort(files, n, sizeof(files[0]), by_order);

    struct conf conf;
    struct importer im = {0};
    char address[ADDR_TEXT_SIZE];
    importer_open(&im, c, &conf, "maildir", c->argv[0], address, sizeof(address));
    im.limit = (size_t)conf.limits.message_size;
    importer_progress(&im, n, 0);
    struct md_reader md = {.files = files, .subfd = subfd, .owner = owner, .limit = im.limit};
    buf_init(&md.raw, 0);
    struct ahead *a;
    ahead_start(&a, n, md_fill, &md);
    for (size_t i = 0; i < n; i++) {
        struct mdfile *f = &files[i];
        /* A read may wait (a slow disk, a FUSE mount): the batch commits first. */
        int rc;
        struct ahead_item *m = ahead_next_or_commit(a, im.imp, &rc);
        if (rc < 0) {
            progress_break(&im.prog);
            ctl_die_store(im.s, rc, im.user);
        }
        char what[4200] = "";
        if (m->rc != MD_READ)
            snprintf(what, sizeof(what), "%s/%s/%s", dir, md_subs[f->sub], f->name);
        switch (m->rc) {
        case MD_READ:
            store_crlf(&im, m->data.data, m->data.len, f->time, f->uidl, m->digest);
            break;
        case MD_GONE:
            break;
        case MD_ODD:
            im.odd++;
            left_out(&im, "%s is not a plain file (%s): left out", what, f->kind);
            break;
        case MD_NOT_OWNER:
            im.odd++;
            left_out(&im, "%s belongs to uid %u, not to uid %u who owns %s/%s: left out (a "
                     "hard link to a file of someone else?); chown it if it is this Maildir's",
                     what, (unsigned)m->uid, (unsigned)owner[f->sub], dir, md_subs[f->sub]);
            break;
        case MD_TOO_BIG:
            refuse(&im, what, m->size);
            break;
        default:
            progress_break(&im.prog);
            ctl_die("cannot read %s: %s", what, strerror(m->err));
        }
        im.prog.done_bytes += m->data.len;
        ahead_done(a, m);
        im.prog.done_msgs = i + 1;
        progress_draw(&im.prog, false);
    }
    ahead_stop(a);
    buf_free(&md.raw);
    int status = import_finish(&im);
    for (size_t i = 0; i < n; i++) {
        free(files[i].name);
        free(files[i].base);
        free(files[i].uidl);
    }
    free(files);
    for (int i = 0; i < 2; i++)
        close(subfd[i]);
    close(dfd);
    store_close(&im.s);
    conf_free(&conf);
    return status;
}

int ctl_import(const struct ctl *c)
{
    static const char usage[] =
        "kotak import mbox USER FILE... | maildir USER DIR | pop3 USER --from HOST:PORT ...";
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc < 1)
        ctl_usage(usage, help);
    ctl_check_verb(c, "import");
    struct ctl sub = *c;
    sub.argc--;
    sub.argv++;
    if (strcmp(c->argv[0], "mbox") == 0)
        return import_mbox(&sub);
    if (strcmp(c->argv[0], "maildir") == 0)
        return import_maildir(&sub);
    return ctl_import_pop3(&sub);
}

/* --- export ------------------------------------------------------------------ */

struct exporter {
    struct store *s;
    struct store_mail *list;
    size_t n;
    const char *user;
    struct growbuf msg, lf;
    size_t inexact;
    uint64_t octets;
    struct progress prog;
};

static void exporter_open(struct exporter *ex, const struct ctl *c, struct conf *conf,
                          char *address, size_t size)
{
    ctl_load_conf(c, conf);
    ex->s = ctl_open_store(conf, true);
    int64_t id;
    user_id(ex->s, c->argv[0], &id, address, size);
    ex->user = address;
    int rc = store_mbox_list(ex->s, id, &ex->list, &ex->n);
    if (rc < 0)
        ctl_die_store(ex->s, rc, address);
    uint64_t total = 0;
    for (size_t i = 0; i < ex->n; i++)
        total += (uint64_t)ex->list[i].size;
    progress_start(&ex->prog, "exporting", ex->n, total);
}

/* Reads message i whole into ex->msg, and its file form (LF) into ex->lf. */
static void export_read(struct exporter *ex, size_t i)
{
    struct store_mail *m = &ex->list[i];
    ex->msg.len = 0;
    for (;;) {
        grow(&ex->msg, ex->msg.len + 65536);
        size_t got;
        int rc = store_mbox_read(ex->s, m->message_id, (int64_t)ex->msg.len,
                                 ex->msg.data + ex->msg.len, ex->msg.cap - ex->msg.len, &got);
        if (rc < 0)
            ctl_die_store(ex->s, rc, ex->user);
        if (got == 0)
            break;
        ex->msg.len += got;
    }
    grow(&ex->lf, ex->msg.len + 1);
    ex->lf.len = mbox_from_crlf(ex->msg.data, ex->msg.len, ex->lf.data);
    if (!mbox_crlf_exact(ex->msg.data, ex->msg.len))
        ex->inexact++;
    ex->octets += ex->msg.len;
    ex->prog.done_msgs = i + 1;
    ex->prog.done_bytes += ex->msg.len;
    progress_draw(&ex->prog, false);
}

static void export_done(struct exporter *ex, const char *where)
{
    progress_draw(&ex->prog, true);
    printf("exported %zu message%s (%" PRIu64 " octets) of %s to %s\n", ex->n,
           ex->n == 1 ? "" : "s", ex->octets, ex->user, where);
    if (ex->inexact > 0)
        fprintf(stderr,
                "kotak: warning: %zu message%s hold%s a bare LF or a CR before a line end, "
                "or lack%s a final line end; %s come back with other line ends\n",
                ex->inexact, ex->inexact == 1 ? "" : "s", ex->inexact == 1 ? "s" : "",
                ex->inexact == 1 ? "s" : "", ex->inexact == 1 ? "it will" : "they will");
    free(ex->list);
    free(ex->msg.data);
    free(ex->lf.data);
    store_close(&ex->s);
}

static void write_all(int fd, const void *p, size_t n, const char *what)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            ctl_die("cannot write %s: %s", what, strerror(errno));
        b += w;
        n -= (size_t)w;
    }
}

/* Buffered writes to one file descriptor. */
struct out {
    int fd;
    const char *what;
    struct growbuf b;
};

static void out_put(struct out *o, const void *p, size_t n)
{
    put(&o->b, p, n);
    if (o->b.len >= (1u << 20)) {
        write_all(o->fd, o->b.data, o->b.len, o->what);
        o->b.len = 0;
    }
}

static void out_flush(struct out *o)
{
    write_all(o->fd, o->b.data, o->b.len, o->what);
    o->b.len = 0;
}

/*
 * Opens the folder that is to hold FILE and parts FILE's name from it:
 * dies unless that folder belongs to the user running kotak or to root.
 * Another user's folder is refused: its owner could rename or replace what
 * kotak writes there while it writes. Root's own folders (/root, and /tmp
 * with its sticky bit, where nobody renames another's file) are fine.
 */
static int open_target_parent(const char *file, char *base, size_t size)
{
    char path[4096];
    trim_slashes(file, path, sizeof(path));
    if (strcmp(path, file) != 0 || strcmp(path, "/") == 0)
        ctl_die("%s names a folder; give the name of the mbox file to write", file);
    char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        ctl_die("%s names a folder; give the name of the mbox file to write", file);
    if (strlen(name) + sizeof(".kotak-XXXXXX") > NAME_MAX)
        ctl_die("%s: the name is too long", file);
    snprintf(base, size, "%s", name);
    if (slash == path)
        path[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    else
        snprintf(path, sizeof(path), ".");
    int pfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        ctl_die("cannot open the folder %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(pfd, &st) < 0)
        ctl_die("cannot open the folder %s: %s", path, strerror(errno));
    if (st.st_uid != geteuid() && st.st_uid != 0)
        ctl_die("the folder %s belongs to uid %u, not to uid %u that runs kotak nor to root; "
                "export into a folder of your own, then move the file", path,
                (unsigned)st.st_uid, (unsigned)geteuid());
    return pfd;
}

/* A new file named "base.kotak-XXXXXX" in the folder pfd: O_EXCL, no link followed, mode 0600. */
static int create_temp(int pfd, const char *base, char *tmp, size_t size)
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (int tries = 0; tries < 100; tries++) {
        uint8_t r[6];
        if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
            ctl_die("cannot make a temporary name: %s", strerror(errno));
        char x[7];
        for (int i = 0; i < 6; i++)
            x[i] = letters[r[i] % (sizeof(letters) - 1)];
        x[6] = '\0';
        snprintf(tmp, size, "%s.kotak-%s", base, x);
        int fd = openat(pfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

static int export_mbox(const struct ctl *c)
{
    static const char usage[] = "kotak export mbox USER FILE";
    if (c->argc != 2)
        ctl_usage(usage, false);
    const char *file = c->argv[1];
    char base[NAME_MAX + 1], tmp[NAME_MAX + 1 + sizeof(".kotak-XXXXXX")];
    int pfd = open_target_parent(file, base, sizeof(base));
    struct stat st;
    if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode))
            ctl_die("%s is a symbolic link; kotak writes no file through one, give another name",
                    file);
        if (!S_ISREG(st.st_mode) || st.st_size > 0)
            ctl_die("%s exists and is not an empty file; give a new name", file);
    } else if (errno != ENOENT) {
        ctl_die("cannot use %s: %s", file, strerror(errno));
    }
    struct conf conf;
    struct exporter ex = {0};
    char address[ADDR_TEXT_SIZE];
    exporter_open(&ex, c, &conf, address, sizeof(address));
    int fd = create_temp(pfd, base, tmp, sizeof(tmp));
    if (fd < 0)
        ctl_die("cannot create %s beside %s: %s", tmp, file, strerror(errno));
    struct out o = {.fd = fd, .what = tmp};
    for (size_t i = 0; i < ex.n; i++) {
        export_read(&ex, i);
        char date[25], head[128 + STORE_UIDL_MAX];
        mbox_ctime(ex.list[i].arrived, date);
        int k = snprintf(head, sizeof(head), "From MAILER-DAEMON %s\nX-UIDL: %s\n", date,
                         ex.list[i].uidl);
        out_put(&o, head, (size_t)k);
        const uint8_t *p = ex.lf.data, *end = p + ex.lf.len;
        while (p < end) {
            const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
            const uint8_t *e = nl ? nl + 1 : end;
            if (mbox_needs_quote((const char *)p, (size_t)(e - p)))
                out_put(&o, ">", 1);
            out_put(&o, p, (size_t)(e - p));
            p = e;
        }
        out_put(&o, "\n", 1); /* the empty line before the next From_ line */
    }
    out_flush(&o);
    if (fsync(fd) < 0 || close(fd) < 0)
        ctl_die("cannot write %s: %s", tmp, strerror(errno));
    free(o.b.data);
    /* A rename over FILE, not through it: a link put there meanwhile is replaced, not followed. */
    if (renameat(pfd, tmp, pfd, base) < 0) {
        int e = errno;
        unlinkat(pfd, tmp, 0);
        ctl_die("cannot rename %s to %s: %s", tmp, file, strerror(e));
    }
    if (fsync(pfd) < 0)
        ctl_die("cannot sync the folder of %s: %s", file, strerror(errno));
    close(pfd);
    export_done(&ex, file);
    conf_free(&conf);
    return 0;
}

/* A host name for Maildir file names: '/' and ':' written as \057 and \072. */
static void maildir_host(char *out, size_t size)
{
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    size_t o = 0;
    for (const char *p = host; *p && o + 5 < size; p++) {
        if (*p == '/' || *p == ':')
            o += (size_t)snprintf(out + o, size - o, "\\%03o", (unsigned char)*p);
        else
            out[o++] = *p;
    }
    out[o] = '\0';
}

static int open_dir_at(int at, const char *name, const char *shown)
{
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        ctl_die("cannot open %s: %s", shown, strerror(errno));
    return fd;
}

static int export_maildir(const struct ctl *c)
{
    static const char usage[] = "kotak export maildir USER DIR";
    if (c->argc != 2)
        ctl_usage(usage, false);
    char dir[4096];
    trim_slashes(c->argv[1], dir, sizeof(dir));
    struct stat st;
    if (lstat(dir, &st) == 0) {
        if (S_ISLNK(st.st_mode))
            ctl_die("%s is a symbolic link; kotak writes into no folder through one, give "
                    "another name", dir);
        if (!S_ISDIR(st.st_mode))
            ctl_die("%s exists and is not a folder; give a new name", dir);
    } else if (errno != ENOENT || mkdir(dir, 0700) < 0) {
        ctl_die("cannot create %s: %s", dir, strerror(errno));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 && errno == ELOOP)
        ctl_die("%s is a symbolic link; kotak writes into no folder through one, give "
                "another name", dir);
    if (dfd < 0)
        ctl_die("cannot open %s: %s", dir, strerror(errno));
    /* An empty folder that is another user's is theirs to change while kotak writes. */
    if (fstat(dfd, &st) < 0)
        ctl_die("cannot open %s: %s", dir, strerror(errno));
    if (st.st_uid != geteuid())
        ctl_die("%s belongs to uid %u, not to uid %u that runs kotak; give a new name", dir,
                (unsigned)st.st_uid, (unsigned)geteuid());
    int lfd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = lfd < 0 ? NULL : fdopendir(lfd);
    if (d == NULL)
        ctl_die("cannot read %s: %s", dir, strerror(errno));
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            empty = false;
    closedir(d);
    if (!empty)
        ctl_die("%s exists and is not empty; give a new name", dir);
    if (fchmod(dfd, 0700) < 0)
        ctl_die("cannot make %s private (mode 0700): %s", dir, strerror(errno));
    for (int i = 0; i < 3; i++) {
        const char *name = i == 0 ? "cur" : i == 1 ? "new" : "tmp";
        if (mkdirat(dfd, name, 0700) < 0)
            ctl_die("cannot create %s/%s: %s", dir, name, strerror(errno));
    }
    int cur = open_dir_at(dfd, "cur", "cur/");
    int tmpd = open_dir_at(dfd, "tmp", "tmp/");

    struct conf conf;
    struct exporter ex = {0};
    char address[ADDR_TEXT_SIZE];
    exporter_open(&ex, c, &conf, address, sizeof(address));
    char host[512];
    maildir_host(host, sizeof(host));
    uint32_t uidvalidity = (uint32_t)time(NULL);
    struct out list = {.what = "dovecot-uidlist"};
    char line[1024];
    int k = snprintf(line, sizeof(line), "3 V%" PRIu32 " N%zu\n", uidvalidity, ex.n + 1);
    put(&list.b, line, (size_t)k);
    for (size_t i = 0; i < ex.n; i++) {
        export_read(&ex, i);
        char name[768];
        snprintf(name, sizeof(name), "%" PRId64 ".K%" PRId64 "P%ld.%s,S=%zu,W=%zu:2,",
                 ex.list[i].arrived, ex.list[i].id, (long)getpid(), host, ex.lf.len, ex.msg.len);
        int fd = openat(cur, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            ctl_die("cannot create %s/cur/%s: %s", dir, name, strerror(errno));
        write_all(fd, ex.lf.data, ex.lf.len, name);
        if (close(fd) < 0)
            ctl_die("cannot write %s/cur/%s: %s", dir, name, strerror(errno));
        /* Dovecot's record: the UID, the POP3 UIDL (P), the virtual size (W), the name. */
        k = snprintf(line, sizeof(line), "%zu P%s W%zu :%s\n", i + 1, ex.list[i].uidl,
                     ex.msg.len, name);
        put(&list.b, line, (size_t)k);
    }
    /* One sync for every file written (a sync each would cost a disk flush
     * per message), then the list, which names them, under its final name. */
    if (syncfs(dfd) < 0 || fsync(cur) < 0)
        ctl_die("cannot sync %s: %s", dir, strerror(errno));
    list.fd = openat(tmpd, "dovecot-uidlist", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                                                 O_CLOEXEC, 0600);
    if (list.fd < 0)
        ctl_die("cannot create %s/tmp/dovecot-uidlist: %s", dir, strerror(errno));
    out_flush(&list);
    if (fsync(list.fd) < 0 || close(list.fd) < 0)
        ctl_die("cannot write %s/tmp/dovecot-uidlist: %s", dir, strerror(errno));
    if (renameat(tmpd, "dovecot-uidlist", dfd, "dovecot-uidlist") < 0 || fsync(dfd) < 0)
        ctl_die("cannot put %s/dovecot-uidlist in place: %s", dir, strerror(errno));
    free(list.b.data);
    close(cur);
    close(tmpd);
    close(dfd);
    export_done(&ex, dir);
    conf_free(&conf);
    return 0;
}

int ctl_export(const struct ctl *c)
{
    static const char usage[] = "kotak export mbox USER FILE | maildir USER DIR";
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc < 1)
        ctl_usage(usage, help);
    ctl_check_verb(c, "export");
    struct ctl sub = *c;
    sub.argc--;
    sub.argv++;
    if (strcmp(c->argv[0], "mbox") == 0)
        return export_mbox(&sub);
    return export_maildir(&sub);
}
