/*
 * safe_path.h — opening a path that the admin typed, as root, where users
 * own some of the folders on the way (kotak import's DIR, FILE and
 * --password-file): no symbolic link is followed unless root owns it.
 *
 * O_NOFOLLOW checks the last component only. If alice owns /home/alice,
 * her link /home/alice/backup -> /home/bob makes root's open of
 * /home/alice/backup/Maildir read bob's mail. safe_path_open walks the
 * path one component at a time from descriptors and follows a link only
 * when root owns it (/var/mail -> spool/mail, /etc/alternatives/...), which
 * no other user can make or change, and only when every folder the walk
 * went through to reach it (from "/", or for a relative path from "/" to
 * the working folder and on) is root's and no group's or other's to write,
 * on a filesystem not mounted nosuid and not FUSE (where users' own mounts
 * are, and any owner can be faked); any other link on the way is refused,
 * naming it and why. The last component is never followed.
 */
#ifndef KOTAK_SAFE_PATH_H
#define KOTAK_SAFE_PATH_H

#include <stddef.h>

/* The links followed in one walk at most, as the kernel's own (MAXSYMLINKS). */
#define SAFE_PATH_MAX_LINKS 40

/*
 * Opens path (absolute, or relative to the working folder) with flags (an
 * access mode and O_DIRECTORY, O_NONBLOCK, O_NOCTTY as wanted; O_NOFOLLOW
 * and O_CLOEXEC are added). Every component but the last is opened
 * O_PATH|O_NOFOLLOW relative to the one before; a component that is a
 * symbolic link is followed (its target's components walked from "/" or
 * from the link's folder) only when root owns the link. Returns the
 * descriptor, the caller's to close; or a negative errno:
 *   -EPERM   a link on the way is owned by another user; err holds
 *            "PATH: COMPONENT is a link owned by uid N; give the path it
 *            points to"; or root's link is where it proves nothing: "PATH:
 *            COMPONENT is root's link, reached through FOLDER, which others
 *            than root can change" / "... on a filesystem mounted nosuid or
 *            FUSE ..."; "; give the path it points to" after either;
 *   -ELOOP   with err set: more than SAFE_PATH_MAX_LINKS links;
 *            with err "": the last component is a symbolic link (what
 *            open() with O_NOFOLLOW says; with O_DIRECTORY too, where open
 *            says ENOTDIR);
 *   others   as open() gives them, err "".
 * err (err_size > 0) is always NUL-terminated.
 */
int safe_path_open(const char *path, int flags, char *err, size_t err_size);

/*
 * For the commands (defined in import.c, which links with ctl_die): opens
 * path as safe_path_open does, and ends the command with err's line when
 * the walk refused a link on the way. Otherwise the descriptor, or -1 with
 * errno set as open() with O_NOFOLLOW would (ELOOP: the last component is
 * a symbolic link), for the caller to word.
 */
int ctl_open_path(const char *path, int flags);

#endif
