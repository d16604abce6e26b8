/*
 * import.c — `kotak import mbox|maildir` and `kotak export mbox|maildir`:
 * a user's mail moved in from mbox files or a Maildir, and out to either,
 * round-trip exact (see mbox.h for the formats); `kotak import pop3` is
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
 * Export writes with mode 0600 into a FILE or DIR that does not exist or is
 * empty, never through a symbolic link, and syncs what it wrote before it
 * says it is done. An mbox is written under a temporary name beside FILE
 * and renamed at the end, so FILE is never half written. Each message
 * carries its UIDL: an mbox as an X-UIDL field on top, a Maildir in the
 * dovecot-uidlist it writes (P fields), which Dovecot itself reads too.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "mbox.h"
#include "progress.h"
#include "util.h"

/* --- what every form shares ------------------------------------------------ */

struct growbuf {
    uint8_t *data;
    size_t len, cap;
};

static void grow(struct growbuf *b, size_t need)
{
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
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
    size_t added, skipped, kept;
    uint64_t octets;
    struct growbuf crlf;
    struct progress prog;
};

/* One message in the file's form (msg is changed: its X-UIDL goes when take_xuidl). */
static void import_one(struct importer *im, uint8_t *msg, size_t len, int64_t arrived,
                       const char *uidl, bool take_xuidl)
{
    char xuidl[128];
    if (take_xuidl && mbox_take_xuidl(msg, &len, xuidl, sizeof(xuidl)) == 1)
        uidl = xuidl;
    grow(&im->crlf, 2 * len + 1);
    size_t n = mbox_to_crlf(msg, len, im->crlf.data);
    uint8_t digest[STORE_DIGEST_SIZE];
    store_digest(im->crlf.data, n, digest);
    int rc = store_import_seen(im->imp, uidl, digest);
    if (rc == 1) {
        im->skipped++;
        return;
    }
    bool kept = false;
    if (rc == 0)
        rc = store_import_add(im->imp, im->crlf.data, n, arrived, uidl, digest, &kept);
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

static void import_finish(struct importer *im)
{
    int rc = store_import_end(&im->imp);
    if (rc < 0)
        ctl_die_store(im->s, rc, im->user);
    progress_draw(&im->prog, true);
    printf("imported %zu message%s (%" PRIu64 " octets) into %s, skipped %zu already there, "
           "%zu UIDL%s kept\n",
           im->added, im->added == 1 ? "" : "s", im->octets, im->user, im->skipped, im->kept,
           im->kept == 1 ? "" : "s");
    free(im->crlf.data);
}

static void importer_open(struct importer *im, const struct ctl *c, struct conf *conf,
                          const char *user, char *address, size_t size)
{
    ctl_load_conf(c, conf);
    im->s = ctl_open_store(conf, false);
    int64_t id;
    user_id(im->s, user, &id, address, size);
    im->user = address;
    int rc = store_import_begin(im->s, id, &im->imp);
    if (rc < 0)
        ctl_die_store(im->s, rc, address);
}

/* Checks that path is an mbox (its first line a From_ line; empty is fine); its size. */
static uint64_t check_mbox(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        ctl_die("cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || S_ISDIR(st.st_mode))
        ctl_die("%s is a folder, not an mbox; 'kotak import maildir' reads a Maildir", path);
    char head[5];
    size_t n = fread(head, 1, sizeof(head), f);
    if (ferror(f))
        ctl_die("cannot read %s: %s", path, strerror(errno));
    fclose(f);
    if (n > 0 && !mbox_is_from_line(head, n))
        ctl_die("%s is not an mbox: its first line is no 'From ' line", path);
    return (uint64_t)st.st_size;
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

/* The message gathered from an mbox: the empty line before the next From_ line is the mbox's. */
static void mbox_message_done(struct importer *im, struct growbuf *m, int64_t arrived)
{
    size_t n = m->len;
    bool crlf = crlf_lines(m->data, n);
    const char *sep = crlf ? "\r\n" : "\n";
    size_t k = crlf ? 2 : 1;
    if (n == k && memcmp(m->data, sep, k) == 0)
        n = 0;
    else if (n >= 2 * k && memcmp(m->data + n - k, sep, k) == 0 &&
             memcmp(m->data + n - 2 * k, sep, k) == 0)
        n -= k;
    import_one(im, m->data, n, arrived, NULL, true);
    m->len = 0;
}

static void import_mbox_file(struct importer *im, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        ctl_die("cannot read %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    struct growbuf m = {0};
    bool in_msg = false;
    int64_t arrived = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        im->prog.done_bytes += (uint64_t)n;
        size_t len = (size_t)n, body = len;
        while (body > 0 && (line[body - 1] == '\n' || line[body - 1] == '\r'))
            body--;
        if (mbox_is_from_line(line, len)) {
            if (in_msg)
                mbox_message_done(im, &m, arrived);
            in_msg = true;
            im->prog.done_msgs = im->added + im->skipped;
            progress_draw(&im->prog, false);
            if (mbox_from_time(line, body, &arrived) != 1)
                arrived = (int64_t)time(NULL);
            continue;
        }
        size_t skip = mbox_unquote_len(line, len);
        put(&m, line + skip, len - skip);
    }
    if (ferror(f))
        ctl_die("cannot read %s: %s", path, strerror(errno));
    if (in_msg)
        mbox_message_done(im, &m, arrived);
    im->prog.done_msgs = im->added + im->skipped;
    free(line);
    free(m.data);
    fclose(f);
}

static int import_mbox(const struct ctl *c)
{
    static const char usage[] = "kotak import mbox USER FILE...";
    if (c->argc < 2)
        ctl_usage(usage, false);
    uint64_t total = 0;
    for (int i = 1; i < c->argc; i++) /* every file checked before anything is stored */
        total += check_mbox(c->argv[i]);
    struct conf conf;
    struct importer im = {0};
    char address[ADDR_TEXT_SIZE];
    importer_open(&im, c, &conf, c->argv[0], address, sizeof(address));
    progress_start(&im.prog, "importing", 0, total);
    for (int i = 1; i < c->argc; i++)
        import_mbox_file(&im, c->argv[i]);
    import_finish(&im);
    store_close(&im.s);
    conf_free(&conf);
    return 0;
}

/* One file of a Maildir, in the order it is imported. */
struct mdfile {
    char *path;
    char *base; /* the name up to its ':' */
    uint32_t uid; /* from dovecot-uidlist; 0: not there */
    char *uidl;   /* its P field, NULL when none */
    int64_t time;
    uint64_t size;
};

struct uidlist {
    int version;
    uint32_t uidvalidity;
    struct mdfile *recs; /* base, uid and uidl only; sorted by base */
    size_t n;
};

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

/* Reads DIR/dovecot-uidlist when there is one; dies when it is not one. */
static void read_uidlist(const char *dir, struct uidlist *ul)
{
    memset(ul, 0, sizeof(*ul));
    char path[4096];
    snprintf(path, sizeof(path), "%s/dovecot-uidlist", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT)
            return;
        ctl_die("cannot read %s: %s", path, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t n = getline(&line, &cap, f);
    if (n <= 0 || mbox_uidlist_header(line, (size_t)n, &ul->version, &ul->uidvalidity) < 0)
        ctl_die("%s is not a dovecot-uidlist (its first line); move it away to import "
                "without its UIDLs", path);
    for (size_t lineno = 2; (n = getline(&line, &cap, f)) > 0; lineno++) {
        struct mbox_uidlist_rec rec;
        if (mbox_uidlist_record(line, (size_t)n, ul->version, &rec) < 0)
            ctl_die("%s: line %zu is not a dovecot-uidlist record; move the file away to "
                    "import without its UIDLs", path, lineno);
        if (ul->n == alloc) {
            alloc = alloc ? alloc * 2 : 256;
            ul->recs = xrealloc(ul->recs, alloc * sizeof(ul->recs[0]));
        }
        ul->recs[ul->n++] = (struct mdfile){
            .base = xstrndup(rec.name, rec.name_len),
            .uid = rec.uid,
            .uidl = rec.pop3_uidl ? xstrndup(rec.pop3_uidl, rec.pop3_uidl_len) : NULL,
        };
    }
    free(line);
    fclose(f);
    qsort(ul->recs, ul->n, sizeof(ul->recs[0]), by_base);
}

static void list_maildir(const char *dir, const char *sub, struct mdfile **files, size_t *n,
                         size_t *alloc)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    DIR *d = opendir(path);
    if (d == NULL)
        ctl_die("cannot read %s: %s", path, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char file[4096 + 256];
        snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(file, &st) < 0 || !S_ISREG(st.st_mode))
            continue; /* a link or a folder is no message of this Maildir */
        if (*n == *alloc) {
            *alloc = *alloc ? *alloc * 2 : 1024;
            *files = xrealloc(*files, *alloc * sizeof(**files));
        }
        struct mdfile *m = &(*files)[(*n)++];
        *m = (struct mdfile){.path = xstrdup(file), .size = (uint64_t)st.st_size};
        m->base = xstrndup(e->d_name, strcspn(e->d_name, ":"));
        if (mbox_maildir_time(e->d_name, &m->time) != 1)
            m->time = (int64_t)st.st_mtime;
    }
    closedir(d);
}

static int import_maildir(const struct ctl *c)
{
    static const char usage[] = "kotak import maildir USER DIR";
    if (c->argc != 2)
        ctl_usage(usage, false);
    const char *dir = c->argv[1];
    struct stat st;
    char sub[4096];
    if (stat(dir, &st) < 0)
        ctl_die("cannot read %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        ctl_die("%s is not a Maildir (not a folder); 'kotak import mbox' reads an mbox file", dir);
    for (int i = 0; i < 2; i++) {
        snprintf(sub, sizeof(sub), "%s/%s", dir, i ? "new" : "cur");
        if (stat(sub, &st) < 0 || !S_ISDIR(st.st_mode))
            ctl_die("%s is not a Maildir: it has no %s/ folder", dir, i ? "new" : "cur");
    }
    struct uidlist ul;
    read_uidlist(dir, &ul);
    struct mdfile *files = NULL;
    size_t n = 0, alloc = 0;
    list_maildir(dir, "cur", &files, &n, &alloc);
    list_maildir(dir, "new", &files, &n, &alloc);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        struct mdfile *r = bsearch(&files[i], ul.recs, ul.n, sizeof(ul.recs[0]), by_base);
        if (r != NULL) {
            files[i].uid = r->uid;
            files[i].uidl = r->uidl ? xstrdup(r->uidl) : NULL;
            if (files[i].uidl == NULL) {
                char def[17];
                mbox_dovecot_uidl(r->uid, ul.uidvalidity, def);
                files[i].uidl = xstrdup(def);
            }
        }
        total += files[i].size;
    }
    qsort(files, n, sizeof(files[0]), by_order);

    struct conf conf;
    struct importer im = {0};
    char address[ADDR_TEXT_SIZE];
    importer_open(&im, c, &conf, c->argv[0], address, sizeof(address));
    progress_start(&im.prog, "importing", n, total);
    struct growbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        int fd = open(files[i].path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) /* moved to cur/ meanwhile by a client of the old server */
            continue;
        if (fd < 0)
            ctl_die("cannot read %s: %s", files[i].path, strerror(errno));
        b.len = 0;
        for (;;) {
            grow(&b, b.len + 65536);
            ssize_t got = read(fd, b.data + b.len, b.cap - b.len);
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0)
                ctl_die("cannot read %s: %s", files[i].path, strerror(errno));
            if (got == 0)
                break;
            b.len += (size_t)got;
        }
        close(fd);
        import_one(&im, b.data, b.len, files[i].time, files[i].uidl, false);
        im.prog.done_msgs = i + 1;
        im.prog.done_bytes += b.len;
        progress_draw(&im.prog, false);
    }
    import_finish(&im);
    for (size_t i = 0; i < n; i++) {
        free(files[i].path);
        free(files[i].base);
        free(files[i].uidl);
    }
    for (size_t i = 0; i < ul.n; i++) {
        free(ul.recs[i].base);
        free(ul.recs[i].uidl);
    }
    free(ul.recs);
    free(files);
    free(b.data);
    store_close(&im.s);
    conf_free(&conf);
    return 0;
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
                "kotak: warning: %zu message%s hold%s a bare LF or end%s every line in CR CR LF; "
                "%s come back with CRLF line ends instead\n",
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

/* Syncs the folder that holds path, so a rename or a new name in it is on disk. */
static void sync_parent(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
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

static int export_mbox(const struct ctl *c)
{
    static const char usage[] = "kotak export mbox USER FILE";
    if (c->argc != 2)
        ctl_usage(usage, false);
    const char *file = c->argv[1];
    struct stat st;
    if (lstat(file, &st) == 0) {
        if (S_ISLNK(st.st_mode))
            ctl_die("%s is a symbolic link; kotak writes no file through one, give another name",
                    file);
        if (!S_ISREG(st.st_mode) || st.st_size > 0)
            ctl_die("%s exists and is not an empty file; give a new name", file);
    } else if (errno != ENOENT) {
        ctl_die("cannot use %s: %s", file, strerror(errno));
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.kotak-XXXXXX", file) >= (int)sizeof(tmp))
        ctl_die("%s: the name is too long", file);
    struct conf conf;
    struct exporter ex = {0};
    char address[ADDR_TEXT_SIZE];
    exporter_open(&ex, c, &conf, address, sizeof(address));
    int fd = mkstemp(tmp); /* O_EXCL, mode 0600: no link followed, nobody else's file */
    if (fd < 0)
        ctl_die("cannot create %s: %s", tmp, strerror(errno));
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
    if (rename(tmp, file) < 0) {
        int e = errno;
        unlink(tmp);
        ctl_die("cannot rename %s to %s: %s", tmp, file, strerror(e));
    }
    sync_parent(file);
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
    const char *dir = c->argv[1];
    struct stat st;
    if (lstat(dir, &st) == 0) {
        if (S_ISLNK(st.st_mode))
            ctl_die("%s is a symbolic link; kotak writes into no folder through one, give "
                    "another name", dir);
        if (!S_ISDIR(st.st_mode))
            ctl_die("%s exists and is not a folder; give a new name", dir);
        DIR *d = opendir(dir);
        struct dirent *e;
        bool empty = d != NULL;
        while (d != NULL && (e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                empty = false;
        if (d != NULL)
            closedir(d);
        if (!empty)
            ctl_die("%s exists and is not empty; give a new name", dir);
    } else if (errno != ENOENT || mkdir(dir, 0700) < 0) {
        ctl_die("cannot create %s: %s", dir, strerror(errno));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        ctl_die("cannot open %s: %s", dir, strerror(errno));
    fchmod(dfd, 0700);
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
