/*
 * test_mbox.c — the pure parts of kotak import/export (ctl/mbox.c): From_
 * lines and their dates, mboxrd quoting, line ends (a random search for a
 * message that does not come back as it went out), X-UIDL, dovecot-uidlist;
 * and the path walk that follows only root's links (ctl/safe_path.c), on a
 * tree in a temporary folder (run as root, as an admin runs an import).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mbox.h"
#include "safe_path.h"
#include "tap.h"

#define S(x) x, strlen(x)

static void test_lines(void)
{
    ok(mbox_is_from_line(S("From a@b Sat Jan  1 00:00:00 2000")), "From_ line");
    ok(!mbox_is_from_line(S("From: a@b")), "From: is a field");
    ok(!mbox_is_from_line(S(">From x")), "quoted is not a From_ line");
    is_int(mbox_unquote_len(S(">From x")), 1, ">From loses one");
    is_int(mbox_unquote_len(S(">>>From x")), 1, ">>>From loses one");
    is_int(mbox_unquote_len(S("> From x")), 0, "> From stays");
    is_int(mbox_unquote_len(S(">Fromage")), 0, ">Fromage stays");
    ok(mbox_needs_quote(S("From x")), "From quoted");
    ok(mbox_needs_quote(S(">>From x")), ">>From quoted");
    ok(!mbox_needs_quote(S("Fro")), "short line not quoted");
}

static void test_dates(void)
{
    int64_t t = 0;
    is_int(mbox_from_time(S("From MAILER-DAEMON Thu Jan  1 00:00:00 1970"), &t), 1, "epoch");
    is_int(t, 0, "epoch value");
    is_int(mbox_from_time(S("From a@b Tue Nov 14 22:13:20 2023"), &t), 1, "a date");
    is_int(t, 1700000000, "its value");
    is_int(mbox_from_time(S("From a@b  Tue Nov 14 22:13:20 2023 remote from x"), &t), 1,
           "trailing words");
    is_int(t, 1700000000, "same value");
    is_int(mbox_from_time(S("From a@b Tue Nov 14 22:13:20 UTC 2023"), &t), 1, "a zone");
    is_int(t, 1700000000, "same value with a zone");
    is_int(mbox_from_time(S("From a@b yesterday"), &t), 0, "no date");
    is_int(mbox_from_time(S("From a@b Tue Nov 14 25:13:20 2023"), &t), 0, "hour 25");
    char buf[25];
    mbox_ctime(1700000000, buf);
    is_str(buf, "Tue Nov 14 22:13:20 2023", "ctime");
    mbox_ctime(0, buf);
    is_str(buf, "Thu Jan  1 00:00:00 1970", "ctime of 0");
    int bad = 0;
    for (int64_t x = 0; x < 4102444800; x += 86400 * 37 + 3607) {
        char line[64];
        mbox_ctime(x, buf);
        snprintf(line, sizeof(line), "From x %s", buf);
        if (mbox_from_time(line, strlen(line), &t) != 1 || t != x)
            bad++;
    }
    is_int(bad, 0, "ctime and from_time agree to 2100");
}

static void test_crlf(void)
{
    uint8_t out[256], back[512];
    size_t n = mbox_to_crlf((const uint8_t *)"a\nb\n", 4, out);
    ok(n == 6 && memcmp(out, "a\r\nb\r\n", 6) == 0, "LF to CRLF");
    n = mbox_to_crlf((const uint8_t *)"a\r\nb\r\n", 6, out);
    ok(n == 6 && memcmp(out, "a\r\nb\r\n", 6) == 0, "a CRLF file stays");
    n = mbox_to_crlf((const uint8_t *)"a\r\nb\n", 5, out);
    ok(n == 6 && memcmp(out, "a\r\nb\r\n", 6) == 0, "mixed: a CR only before the bare LF");
    const char *mixed = "Subject: d\r\n\r\nmix\nline\r\n";
    const char *dovecot = "Subject: d\r\n\r\nmix\r\nline\r\n"; /* what its RETR sends */
    n = mbox_to_crlf((const uint8_t *)mixed, strlen(mixed), out);
    ok(n == strlen(dovecot) && memcmp(out, dovecot, n) == 0, "mixed: the header stays intact");
    is_int(mbox_crlf_len((const uint8_t *)mixed, strlen(mixed)), strlen(dovecot), "its crlf_len");
    n = mbox_to_crlf((const uint8_t *)"a\r\r\nb\n", 6, out);
    ok(n == 7 && memcmp(out, "a\r\r\nb\r\n", 7) == 0, "a CR before a CRLF stays");
    n = mbox_from_crlf((const uint8_t *)"a\r\r\nb\rc\r\n", 10, out);
    ok(n == 8 && memcmp(out, "a\r\nb\rc\n", 8) == 0, "CRLF to LF, bare CR kept");
    ok(!mbox_crlf_exact((const uint8_t *)"a\nb\r\n", 5), "a bare LF: not exact");
    ok(!mbox_crlf_exact((const uint8_t *)"a\r\r\n", 4), "every line CR CR LF: not exact");
    ok(!mbox_crlf_exact((const uint8_t *)"a\r\r\nb\r\n", 7), "one CR CR LF: not exact either");
    ok(mbox_crlf_exact((const uint8_t *)"a\rb\r\n", 5), "a bare CR inside a line: exact");
    ok(mbox_crlf_exact((const uint8_t *)"", 0), "empty: exact");
    ok(!mbox_crlf_exact((const uint8_t *)"abc", 3), "no final line end: not exact");
    ok(!mbox_crlf_exact((const uint8_t *)"a\r\nb", 4), "a last line without its end: not exact");
    n = mbox_to_crlf((const uint8_t *)"a\n\nb", 4, out);
    ok(n == 8 && memcmp(out, "a\r\n\r\nb\r\n", 8) == 0, "no final LF: CRLF supplied");
    n = mbox_to_crlf((const uint8_t *)"a\r\nb", 4, out);
    ok(n == 6 && memcmp(out, "a\r\nb\r\n", 6) == 0, "a CRLF file without its last line end");
    n = mbox_to_crlf((const uint8_t *)"x\r", 2, out);
    ok(n == 4 && memcmp(out, "x\r\r\n", 4) == 0, "a last CR is no line end");
    is_int(mbox_to_crlf((const uint8_t *)"", 0, out), 0, "empty stays empty");
    is_int(mbox_crlf_len((const uint8_t *)"a\nb", 3), 6, "crlf_len, final CRLF counted");
    is_int(mbox_crlf_len((const uint8_t *)"a\r\n", 3), 3, "crlf_len of a CRLF message");
    /* Random messages over a small alphabet: to_crlf follows Dovecot's rule
     * (written out here the plain way), exact says whether they come back. */
    const char alpha[] = "\r\n\rxF>";
    unsigned seed = 1;
    int wrong = 0, exact = 0, rule = 0;
    for (int i = 0; i < 200000; i++) {
        uint8_t msg[12], want[40];
        size_t len = (size_t)(rand_r(&seed) % 12);
        for (size_t j = 0; j < len; j++)
            msg[j] = (uint8_t)alpha[rand_r(&seed) % 6];
        size_t w = 0;
        for (size_t j = 0; j < len; j++) {
            if (msg[j] == '\n' && (j == 0 || msg[j - 1] != '\r'))
                want[w++] = '\r';
            want[w++] = msg[j];
        }
        if (len > 0 && msg[len - 1] != '\n') {
            want[w++] = '\r';
            want[w++] = '\n';
        }
        size_t t = mbox_to_crlf(msg, len, back);
        if (t != w || memcmp(back, want, w) != 0 || mbox_crlf_len(msg, len) != w)
            rule++;
        size_t f = mbox_from_crlf(msg, len, out);
        size_t b = mbox_to_crlf(out, f, back);
        if (b != mbox_crlf_len(out, f))
            wrong++;
        bool same = b == len && memcmp(back, msg, len) == 0;
        exact += same;
        if (same != mbox_crlf_exact(msg, len))
            wrong++;
    }
    is_int(rule, 0, "to_crlf puts CR before each LF without one, and a final CRLF, nothing else");
    is_int(wrong, 0, "crlf_exact predicts the round trip of random messages, crlf_len the length");
    ok(exact > 1000, "and many of them come back");
}

static void test_xuidl(void)
{
    char u[80];
    uint8_t m[200];
    const char *in = "Subject: a\nX-UIDL: abc123 \nFrom: b\n\nX-UIDL: body\n";
    size_t n = strlen(in);
    memcpy(m, in, n);
    is_int(mbox_take_xuidl(m, &n, u, sizeof(u)), 1, "X-UIDL found");
    is_str(u, "abc123", "its value, trimmed");
    ok(n == strlen(in) - 16 && memcmp(m, "Subject: a\nFrom: b\n\nX-UIDL: body\n", n) == 0,
       "the field taken out, the body's left");
    in = "x-uidl :\r\n folded\r\nS: 1\r\n\r\n";
    n = strlen(in);
    memcpy(m, in, n);
    is_int(mbox_take_xuidl(m, &n, u, sizeof(u)), 1, "lower case, folded, CRLF");
    is_str(u, "folded", "unfolded value");
    ok(n == 8 && memcmp(m, "S: 1\r\n\r\n", 8) == 0, "continuation taken too");
    in = "S: 1\n\nX-UIDL: x\n";
    n = strlen(in);
    memcpy(m, in, n);
    is_int(mbox_take_xuidl(m, &n, u, sizeof(u)), 0, "not in the body");
    is_int(n, strlen(in), "nothing taken");
    in = "X-UIDLS: 1\n\n";
    n = strlen(in);
    memcpy(m, in, n);
    is_int(mbox_take_xuidl(m, &n, u, sizeof(u)), 0, "another field");
}

static void test_uidlist(void)
{
    int v;
    uint32_t uv;
    is_int(mbox_uidlist_header(S("3 V1700000000 N5 G0123abcd\n"), &v, &uv), 0, "v3 header");
    ok(v == 3 && uv == 1700000000, "v3 values");
    is_int(mbox_uidlist_header(S("1 42 7\n"), &v, &uv), 0, "v1 header");
    ok(v == 1 && uv == 42, "v1 values");
    is_int(mbox_uidlist_header(S("hello\n"), &v, &uv), -1, "not a header");
    struct mbox_uidlist_rec r;
    is_int(mbox_uidlist_record(S("7 G1 Pabc W100 :1700.M1P2.host,S=9:2,S\n"), 3, &r), 0,
           "v3 record");
    ok(r.uid == 7 && r.pop3_uidl_len == 3 && memcmp(r.pop3_uidl, "abc", 3) == 0, "uid, P");
    ok(r.name_len == 18 && memcmp(r.name, "1700.M1P2.host,S=9", 18) == 0, "base name");
    is_int(mbox_uidlist_record(S("8 :1700.x\n"), 3, &r), 0, "v3 record without fields");
    ok(r.uid == 8 && r.pop3_uidl == NULL && r.name_len == 6, "no P");
    is_int(mbox_uidlist_record(S("9 1700.y:2,\n"), 1, &r), 0, "v1 record");
    ok(r.uid == 9 && r.name_len == 6, "v1 values");
    is_int(mbox_uidlist_record(S("x :a\n"), 3, &r), -1, "bad uid");
    is_int(mbox_uidlist_record(S("3 W5\n"), 3, &r), -1, "no name");
    char u[17];
    mbox_dovecot_uidl(1, 0x5f000000, u);
    is_str(u, "000000015f000000", "%%08Xu%%08Xv, in lower case as Dovecot writes it");
    int64_t t;
    is_int(mbox_maildir_time("1700000000.M1P2.h:2,", &t), 1, "maildir time");
    is_int(t, 1700000000, "its value");
    is_int(mbox_maildir_time("msg.1", &t), 0, "no time");
}

/* The same file (device and inode) as path, opened the plain way. */
static bool same_file(int fd, const char *path)
{
    struct stat a, b;
    return fd >= 0 && fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

static int walk(const char *fmt, const char *dir, int flags, char *err, size_t size)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), fmt, dir);
    return safe_path_open(path, flags, err, size);
}

/*
 * The walk on a tree: T/real/dir/file; links owned by root (followed) and
 * by uid 65534 (refused, named), made with lchown. A link swapped for
 * another while a walk is on it cannot be timed from a test: safe_path.c's
 * top comment gives the argument (each component is opened once, O_PATH
 * and O_NOFOLLOW, and asked about through that descriptor only).
 */
static void test_safe_path(void)
{
    if (geteuid() != 0) {
        ok(1, "# SKIP safe_path: lchown to another uid needs root");
        return;
    }
    /* In a folder only root can change, as /var/lib is: root's links are followed only
     * past such folders (/tmp is everyone's). */
    char t[] = "/var/lib/kotak-safe-path-XXXXXX";
    if (mkdtemp(t) == NULL) {
        ok(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    char p[PATH_MAX], q[PATH_MAX], file[PATH_MAX], err[2 * PATH_MAX + 128];
    snprintf(p, sizeof(p), "%s/real/dir", t);
    snprintf(q, sizeof(q), "%s/real", t);
    ok(mkdir(q, 0755) == 0 && mkdir(p, 0755) == 0, "tree made");
    snprintf(file, sizeof(file), "%s/real/dir/file", t);
    FILE *f = fopen(file, "w");
    ok(f != NULL && fclose(f) == 0, "file made");
    struct {
        const char *name, *target;
        uid_t owner;
    } links[] = {
        {"rootlink", "real", 0},      {"userlink", "real", 65534},
        {"abslink", NULL, 0},         {"real/up", "../real/dir", 0},
        {"real/dir/last", "file", 0}, {"viauser", "userlink/dir", 0},
        {"loop", "loop", 0},          {"real/dir/userlast", "file", 65534},
    };
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", t, links[i].name);
        const char *target = links[i].target ? links[i].target : q; /* abslink: /tmp/../real */
        ok(symlink(target, p) == 0 && lchown(p, links[i].owner, links[i].owner) == 0,
           "link %s made, owner %u", links[i].name, (unsigned)links[i].owner);
    }

    int fd = walk("%s/real/dir/file", t, O_RDONLY, err, sizeof(err));
    ok(same_file(fd, file) && err[0] == '\0', "no link: opened");
    close(fd);
    fd = walk("%s/rootlink/dir/file", t, O_RDONLY, err, sizeof(err));
    ok(same_file(fd, file), "root's relative link followed");
    close(fd);
    fd = walk("%s/abslink/dir/file", t, O_RDONLY, err, sizeof(err));
    ok(same_file(fd, file), "root's absolute link followed");
    close(fd);
    fd = walk("%s/real/up/file", t, O_RDONLY, err, sizeof(err));
    ok(same_file(fd, file), "root's link with .. in it, from the link's folder");
    close(fd);
    fd = walk("%s//rootlink/./dir//file", t, O_RDONLY, err, sizeof(err));
    ok(same_file(fd, file), "doubled slashes and .");
    close(fd);
    fd = walk("%s/rootlink/dir", t, O_RDONLY | O_DIRECTORY, err, sizeof(err));
    snprintf(p, sizeof(p), "%s/real/dir", t);
    ok(same_file(fd, p), "a folder through root's link");
    close(fd);

    fd = walk("%s/userlink/dir/file", t, O_RDONLY, err, sizeof(err));
    is_int(fd, -EPERM, "a link of uid 65534 on the way: refused");
    snprintf(q, sizeof(q),
             "%s/userlink/dir/file: %s/userlink is a link owned by uid 65534; give the path it "
             "points to",
             t, t);
    is_str(err, q, "the line names the link and its owner");
    fd = walk("%s/viauser/file", t, O_RDONLY, err, sizeof(err));
    is_int(fd, -EPERM, "root's link whose target goes through a user's: refused");
    ok(strstr(err, "/userlink is a link owned by uid 65534") != NULL, "named as walked: %s", err);
    fd = walk("%s/real/dir/last", t, O_RDONLY, err, sizeof(err));
    ok(fd == -ELOOP && err[0] == '\0', "the last component is never followed, root's neither");
    fd = walk("%s/real/dir/userlast", t, O_RDONLY, err, sizeof(err));
    ok(fd == -ELOOP && err[0] == '\0', "nor a user's");
    fd = walk("%s/rootlink", t, O_RDONLY | O_DIRECTORY, err, sizeof(err));
    ok(fd == -ELOOP && err[0] == '\0', "a last link with O_DIRECTORY: ELOOP too");
    fd = walk("%s/loop/x", t, O_RDONLY, err, sizeof(err));
    ok(fd == -ELOOP && strstr(err, "more than 40 symbolic links") != NULL, "a loop ends: %s", err);
    fd = walk("%s/real/dir/file/x", t, O_RDONLY, err, sizeof(err));
    is_int(fd, -ENOTDIR, "a file on the way");
    fd = walk("%s/real/none/file", t, O_RDONLY, err, sizeof(err));
    ok(fd == -ENOENT && err[0] == '\0', "absent");
    fd = walk("%s/real/dir/file/", t, O_RDONLY, err, sizeof(err));
    is_int(fd, -ENOTDIR, "a trailing slash asks for a folder");
    fd = safe_path_open("/", O_RDONLY | O_DIRECTORY, err, sizeof(err));
    ok(fd >= 0 && same_file(fd, "/"), "/ itself");
    close(fd);
    is_int(safe_path_open("", O_RDONLY, err, sizeof(err)), -ENOENT, "an empty path");

    /* Relative paths walk from the working folder. */
    char cwd[PATH_MAX];
    ok(getcwd(cwd, sizeof(cwd)) != NULL && chdir(t) == 0, "into the tree");
    fd = safe_path_open("rootlink/dir/file", O_RDONLY, err, sizeof(err));
    ok(same_file(fd, file), "relative, through root's link");
    close(fd);
    fd = safe_path_open("userlink/dir/file", O_RDONLY, err, sizeof(err));
    ok(fd == -EPERM &&
           strncmp(err, "userlink/dir/file: userlink is a link owned by uid 65534", 56) == 0,
       "relative, a user's link refused: %s", err);
    fd = safe_path_open("real/../rootlink/dir/file", O_RDONLY, err, sizeof(err));
    ok(same_file(fd, file), "relative with ..");
    close(fd);
    ok(chdir(cwd) == 0, "back");

    /* Root's link where a user could have put it, or moved it: not followed. */
    struct {
        const char *folder;
        mode_t mode;
        uid_t owner;
        bool followed;
        const char *why;
    } places[] = {
        {"users", 0755, 65534, false, "users, which others than root can change"},
        {"open", 0777, 0, false, "open, which others than root can change"},
        {"group", 0775, 0, false, "group, which others than root can change"},
        /* no renames there, but hard links of root's links (fs.protected_hardlinks off) */
        {"sticky", 01777, 0, false, "sticky, which others than root can change"},
        {"rootonly", 0755, 0, true, NULL},
    };
    for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", t, places[i].folder);
        ok(mkdir(p, 0700) == 0 && chown(p, places[i].owner, 0) == 0 &&
               chmod(p, places[i].mode) == 0,
           "folder %s made", places[i].folder);
        snprintf(p, sizeof(p), "%s/%s/rl", t, places[i].folder);
        ok(symlink("../real", p) == 0 && lchown(p, 0, 0) == 0, "root's link in it");
        snprintf(p, sizeof(p), "%s/%s/rl/dir/file", t, places[i].folder);
        fd = safe_path_open(p, O_RDONLY, err, sizeof(err));
        if (places[i].followed) {
            ok(same_file(fd, file), "root's link in %s: followed", places[i].folder);
            close(fd);
        } else {
            ok(fd == -EPERM && strstr(err, places[i].why) != NULL &&
                   strstr(err, "is root's link") != NULL,
               "root's link in %s: refused: %s", places[i].folder, err);
        }
    }
    /* A folder of root's inside a user's, which the user can rename or replace: root's
     * link in it is no longer root's alone to place. */
    snprintf(p, sizeof(p), "%s/users/inner", t);
    ok(mkdir(p, 0755) == 0, "a folder of root's in the user's");
    snprintf(p, sizeof(p), "%s/users/inner/rl", t);
    snprintf(q, sizeof(q), "%s/real", t);
    ok(symlink(q, p) == 0, "root's link in it");
    snprintf(p, sizeof(p), "%s/users/inner/rl/dir/file", t);
    fd = safe_path_open(p, O_RDONLY, err, sizeof(err));
    ok(fd == -EPERM && strstr(err, "/users, which others than root can change") != NULL,
       "root's link past a user's folder: refused: %s", err);
    /* Relative: the working folder's own way counts. */
    snprintf(p, sizeof(p), "%s/users", t);
    ok(chdir(p) == 0, "into the user's folder");
    fd = safe_path_open("inner/rl/dir/file", O_RDONLY, err, sizeof(err));
    ok(fd == -EPERM && strstr(err, "reached through .,") != NULL,
       "relative, from a folder others can change: refused: %s", err);
    ok(chdir(cwd) == 0, "back");

    /* On a filesystem mounted nosuid, as a user's own mount is, uid 0 proves nothing. */
    snprintf(p, sizeof(p), "%s/mnt", t);
    if (mkdir(p, 0755) == 0 && mount("tmpfs", p, "tmpfs", MS_NOSUID, "size=1m,mode=0755") == 0) {
        snprintf(p, sizeof(p), "%s/mnt/rl", t);
        snprintf(q, sizeof(q), "%s/real", t);
        ok(symlink(q, p) == 0 && lchown(p, 0, 0) == 0, "root's link on a nosuid mount");
        snprintf(p, sizeof(p), "%s/mnt/rl/dir/file", t);
        fd = safe_path_open(p, O_RDONLY, err, sizeof(err));
        ok(fd == -EPERM && strstr(err, "mounted nosuid or FUSE") != NULL,
           "root's link on a nosuid mount: refused: %s", err);
        snprintf(p, sizeof(p), "%s/mnt", t);
        ok(umount(p) == 0, "unmounted");
    } else {
        ok(1, "# SKIP no tmpfs mount here: %s", strerror(errno));
    }

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t);
    ok(system(cmd) == 0, "tree removed");
}

int main(void)
{
    test_lines();
    test_dates();
    test_crlf();
    test_xuidl();
    test_uidlist();
    test_safe_path();
    return done_testing();
}
