/*
 * safe_path.c — a path opened component by component from descriptors,
 * following a symbolic link only when root owns it, past folders only root
 * can change (see safe_path.h).
 *
 * Why a walk and not a check before open(): any check of a path by name
 * (lstat of each prefix, realpath) and the open() after it are two
 * look-ups, and the owner of a folder on the way can swap a folder for a
 * link between them. Here each component is opened once, relative to the
 * descriptor of the folder before it, with O_PATH|O_NOFOLLOW: the
 * descriptor is the inode that was there at that instant, a link included
 * (never what it points to), and everything after asks that descriptor,
 * never the name. A link's owner comes from fstatat on its own descriptor
 * and its target from readlinkat on it: a link's target cannot be changed,
 * only the link replaced by another inode, which this descriptor does not
 * see; and only root can give a link to root (lchown). So a link that is
 * swapped during the walk is either seen before the swap (the old inode,
 * with its owner) or after it (the new one, with its owner): in neither
 * case is a link of a user followed. The test cannot make that swap
 * happen at the right instant; this is the argument instead.
 *
 * A folder renamed while it is walked is walked where it went: its
 * descriptor is held. ".." is looked up from the folder's descriptor as
 * the kernel does (physically), so a path with ".." after a folder that a
 * user may move is the user's to redirect, but only among the folders that
 * user can move things into.
 *
 * Why not openat2(RESOLVE_NO_SYMLINKS): it refuses every link on the way,
 * /var/mail -> spool/mail included, and the admin then has to find out
 * which one; with RESOLVE_NO_SYMLINKS after a check (lstat of each
 * prefix), the check and the open are two look-ups again. Linux 6.1 has no
 * "follow only root's links" flag, so the walk is done here; it is short.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "safe_path.h"

/* The path walked so far, as the message shows it (cut when too long: it is only shown). */
struct shown {
    char s[PATH_MAX];
    size_t len;
};

static void shown_add(struct shown *w, const char *comp)
{
    int n = snprintf(w->s + w->len, sizeof(w->s) - w->len, "%s%s",
                     w->len == 0 || w->s[w->len - 1] == '/' ? "" : "/", comp);
    if (n > 0)
        w->len += (size_t)n < sizeof(w->s) - w->len ? (size_t)n : sizeof(w->s) - 1 - w->len;
}

static void shown_root(struct shown *w)
{
    w->s[0] = '/';
    w->s[1] = '\0';
    w->len = 1;
}

#define FUSE_MAGIC 0x65735546 /* statfs(2): FUSE_SUPER_MAGIC */

/*
 * A folder only root can change: root's, and no group or other may write
 * it. Root's link is followed only when every folder the walk went through
 * to reach it is one (see safe_path.h): in a folder a user can write, the
 * user can rename a link of root's (one made for something else) into the
 * walk's way, or a folder of root's holding one; and in a sticky folder
 * (/tmp), where renames are barred, a user can still hard-link root's
 * links, where fs.protected_hardlinks is off.
 */
static bool root_only(const struct stat *st)
{
    return S_ISDIR(st->st_mode) && st->st_uid == 0 && (st->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/*
 * Whether the working folder and every folder above it are root_only:
 * walked up through "..", from the folder itself, not by its name (a
 * name can lead elsewhere once something is mounted over part of it),
 * until "/" is reached.
 */
static bool cwd_root_only(void)
{
    struct stat top, st;
    if (stat("/", &top) < 0)
        return false;
    int cur = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    bool ok = false;
    for (int depth = 0; cur >= 0 && depth < 4096; depth++) {
        if (fstatat(cur, "", &st, AT_EMPTY_PATH) < 0 || !root_only(&st))
            break;
        if (st.st_dev == top.st_dev && st.st_ino == top.st_ino) {
            ok = true;
            break;
        }
        int up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        close(cur);
        cur = up;
    }
    if (cur >= 0)
        close(cur);
    return ok;
}

/*
 * Why root's link lnk proves nothing on a filesystem, or NULL: on one a
 * user mounted (an image or a stick through udisks, FUSE with
 * allow_other), the user decides every owner, uid 0 included. The kernel
 * mounts those nosuid, so a nosuid or FUSE filesystem is not trusted.
 */
static const char *untrusted_fs(int lnk)
{
    struct statfs fs;
    if (fstatfs(lnk, &fs) < 0)
        return "on a filesystem that cannot be looked at";
    if ((fs.f_flags & ST_NOSUID) != 0 || fs.f_type == FUSE_MAGIC)
        return "on a filesystem mounted nosuid or FUSE, as users' own mounts are, where a "
               "link's owner proves nothing";
    return NULL;
}

/* A descriptor of "/" or of the working folder, to walk from; *root_only_r as above. */
static int walk_start(bool absolute, bool *root_only_r)
{
    int fd = open(absolute ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    *root_only_r = absolute ? fstatat(fd, "", &st, AT_EMPTY_PATH) == 0 && root_only(&st)
                            : cwd_root_only();
    return fd;
}

int safe_path_open(const char *path, int flags, char *err, size_t err_size)
{
    if (err_size > 0)
        err[0] = '\0';
    size_t plen = strlen(path);
    if (plen == 0)
        return -ENOENT;
    /* What is left to walk sits at the end of rest, from at on; a link's
     * target goes in front of it. */
    char rest[2 * PATH_MAX];
    if (plen >= sizeof(rest))
        return -ENAMETOOLONG;
    size_t at = sizeof(rest) - plen - 1;
    memcpy(rest + at, path, plen + 1);
    struct shown shown = {.len = 0};
    if (path[0] == '/')
        shown_root(&shown);
    /* Whether every folder walked through so far is root_only; else the first that is not. */
    bool trusted;
    struct shown changeable = {.len = 0};
    int cur = walk_start(path[0] == '/', &trusted);
    if (cur < 0)
        return cur;
    if (!trusted)
        snprintf(changeable.s, sizeof(changeable.s), "%s", path[0] == '/' ? "/" : ".");
    int links = 0;
    for (;;) {
        while (rest[at] == '/')
            at++;
        const char *comp = rest + at;
        size_t clen = strcspn(comp, "/");
        size_t after = at + clen;
        while (rest[after] == '/')
            after++;
        bool last = rest[after] == '\0';
        char name[NAME_MAX + 1];
        if (clen > NAME_MAX) {
            close(cur);
            return -ENAMETOOLONG;
        }
        if (clen == 0) { /* "/" alone: the folder walked to is what was asked for */
            name[0] = '.';
            name[1] = '\0';
        } else {
            memcpy(name, comp, clen);
            name[clen] = '\0';
        }
        if (last) {
            /* A trailing slash asks for a folder, as open() has it. */
            int extra = rest[at + clen] == '/' ? O_DIRECTORY : 0;
            int fd = openat(cur, name, flags | extra | O_NOFOLLOW | O_CLOEXEC);
            int e = errno;
            if (fd < 0 && (e == ELOOP || e == ENOTDIR)) {
                struct stat st;
                if (fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                    e = ELOOP;
            }
            close(cur);
            return fd >= 0 ? fd : -e;
        }
        int fd = openat(cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            close(cur);
            return -e;
        }
        struct stat st;
        if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
            int e = errno;
            close(fd);
            close(cur);
            return -e;
        }
        at = after;
        if (S_ISDIR(st.st_mode)) {
            close(cur);
            cur = fd;
            shown_add(&shown, name);
            if (trusted && !root_only(&st)) {
                trusted = false;
                changeable = shown;
            }
            continue;
        }
        if (!S_ISLNK(st.st_mode)) {
            close(fd);
            close(cur);
            return -ENOTDIR;
        }
        shown_add(&shown, name);
        if (st.st_uid != 0) {
            if (err_size > 0)
                snprintf(err, err_size,
                         "%s: %s is a link owned by uid %u; give the path it points to", path,
                         shown.s, (unsigned)st.st_uid);
            close(fd);
            close(cur);
            return -EPERM;
        }
        const char *why = trusted ? untrusted_fs(fd) : NULL;
        if (!trusted || why != NULL) {
            if (err_size > 0 && why != NULL)
                snprintf(err, err_size, "%s: %s is root's link %s; give the path it points to",
                         path, shown.s, why);
            else if (err_size > 0)
                snprintf(err, err_size,
                         "%s: %s is root's link, reached through %s, which others than root can "
                         "change; give the path it points to", path, shown.s, changeable.s);
            close(fd);
            close(cur);
            return -EPERM;
        }
        if (++links > SAFE_PATH_MAX_LINKS) {
            if (err_size > 0)
                snprintf(err, err_size, "%s: more than %d symbolic links on the way", path,
                         SAFE_PATH_MAX_LINKS);
            close(fd);
            close(cur);
            return -ELOOP;
        }
        /* Root's link: its target, then what was left after it. */
        char target[PATH_MAX];
        ssize_t tlen = readlinkat(fd, "", target, sizeof(target));
        int e = errno;
        close(fd);
        if (tlen < 0 || tlen == 0 || (size_t)tlen >= sizeof(target) || (size_t)tlen + 1 > at) {
            close(cur);
            return tlen < 0 ? -e : tlen == 0 ? -ENOENT : -ENAMETOOLONG;
        }
        at -= (size_t)tlen + 1;
        memcpy(rest + at, target, (size_t)tlen);
        rest[at + (size_t)tlen] = '/';
        if (target[0] == '/') {
            close(cur);
            cur = walk_start(true, &trusted);
            if (cur < 0)
                return cur;
            shown_root(&shown);
            if (!trusted)
                changeable = shown;
        } else {
            /* Relative to the link's folder, cur, where the walk is. */
            size_t nlen = strlen(name);
            if (shown.len >= nlen) {
                shown.len -= nlen;
                shown.s[shown.len] = '\0';
            }
        }
    }
}
