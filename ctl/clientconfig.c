/*
 * clientconfig.c — `kotak clientconfig DOMAIN [--dir DIR] [--force]`: writes
 * the files mail clients configure themselves from (Thunderbird's
 * config-v1.1.xml, Outlook's autodiscover.xml, DOMAIN.mobileconfig for Apple
 * devices), built by common/clientconfig.c from the config's listeners, and
 * prints the DNS records the domain needs in zone-file form, the DKIM record
 * as `kotak dkim dns` prints it.
 *
 * The files are the same that kotak-smtpd serves at their well-known paths
 * when [web] listen is set; written out, they can go on any web server. They
 * hold no secret, so they are written readable by all (0644) whatever the
 * umask. An existing file is kept, and nothing is written, unless --force:
 * a file someone edited by hand is not lost to a second run.
 *
 * All three files or none: the three are first written whole to temporary
 * files; then each is given its name, with link (never replacing) or, with
 * --force, rename. When one of those fails (a file that appeared since the
 * check for one, a name too long for the file system), the names this run
 * already gave are taken back (each only while it is still this run's
 * file), and the temporary files go, before the command exits. With
 * --force a file's old text is gone once the new one has its name: a
 * rename failing after the first (a folder in the way) says which were
 * replaced.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "clientconfig.h"
#include "ctl.h"
#include "dns.h"
#include "util.h"

static const char usage[] = "kotak clientconfig DOMAIN [--dir DIR] [--force]";

#define FILE_MAX (64 * 1024)

struct out_file {
    char name[ADDR_DOMAIN_MAX + 16];
    struct buf text;
    char *path;  /* dir/name */
    char *tmp;   /* the temporary file, NULL when none is left */
    struct stat st; /* the temporary file's, to know it again under its name */
    bool named;  /* this run gave it its name (non-force: linked) */
};

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/*
 * Writes f's text into a new temporary file in dir, readable by all (the
 * files are public: the web server that serves them reads them, whatever
 * the umask). A short name of its own, so that a long final name does not
 * make it too long. Returns 0 with f->tmp and f->st set, or -errno with
 * nothing left behind.
 */
static int write_tmp(const char *dir, struct out_file *f, int index)
{
    char name[64];
    snprintf(name, sizeof(name), ".clientconfig.%ld.%d.tmp", (long)getpid(), index);
    char *tmp = join(dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return -e;
    }
    const char *p = (const char *)f->text.data;
    size_t n = f->text.len;
    int e = 0;
    while (n > 0 && e == 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno != EINTR)
            e = errno;
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        }
    }
    if (e == 0 && (fchmod(fd, 0644) != 0 || fsync(fd) != 0 || fstat(fd, &f->st) != 0))
        e = errno;
    if (close(fd) != 0 && e == 0)
        e = errno;
    if (e != 0) {
        unlink(tmp);
        free(tmp);
        return -e;
    }
    f->tmp = tmp;
    return 0;
}

/*
 * Takes back what this run made: each name it gave, while the name still
 * is this run's file (a file someone put there since is theirs), and the
 * temporary files. With --force a replaced file's old text is gone; only
 * names that were free are given back.
 */
static void undo(struct out_file *files, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (files[i].named && lstat(files[i].path, &st) == 0 && st.st_dev == files[i].st.st_dev &&
            st.st_ino == files[i].st.st_ino)
            unlink(files[i].path);
        files[i].named = false;
        if (files[i].tmp != NULL)
            unlink(files[i].tmp);
        free(files[i].tmp);
        files[i].tmp = NULL;
    }
}

/*
 * Writes the n files into dir, all or none: 0, or -errno with *failed_r
 * the file whose step failed (*naming_r: giving it its name, else writing
 * it) and nothing of this run left in dir.
 */
static int write_all(const char *dir, struct out_file *files, size_t n, bool force,
                     size_t *failed_r, bool *naming_r)
{
    *naming_r = false;
    for (size_t i = 0; i < n; i++) {
        int rc = write_tmp(dir, &files[i], (int)i);
        if (rc < 0) {
            undo(files, n);
            *failed_r = i;
            return rc;
        }
    }
    *naming_r = true;
    for (size_t i = 0; i < n; i++) {
        /* link never replaces: a file that appeared since the check is kept, and all goes */
        int rc = force ? rename(files[i].tmp, files[i].path) : link(files[i].tmp, files[i].path);
        if (rc != 0) {
            int e = errno;
            undo(files, n);
            *failed_r = i;
            return -e;
        }
        if (force) {
            free(files[i].tmp); /* renamed: it is the file now */
            files[i].tmp = NULL;
        } else {
            files[i].named = true;
        }
    }
    for (size_t i = 0; i < n; i++) { /* all three have their names: the second names go */
        if (files[i].tmp != NULL)
            unlink(files[i].tmp);
        free(files[i].tmp);
        files[i].tmp = NULL;
    }
    return 0;
}

int ctl_clientconfig(const struct ctl *c)
{
    bool help = ctl_wants_help(c->argc, c->argv);
    const char *arg = NULL, *dir = ".";
    bool force = false;
    for (int i = 0; i < c->argc && !help; i++) {
        if (strcmp(c->argv[i], "--dir") == 0 && i + 1 < c->argc)
            dir = c->argv[++i];
        else if (strcmp(c->argv[i], "--force") == 0)
            force = true;
        else if (c->argv[i][0] != '-' && arg == NULL)
            arg = c->argv[i];
        else
            ctl_usage(usage, false);
    }
    if (help || arg == NULL)
        ctl_usage(usage, help);

    char domain[ADDR_DOMAIN_MAX + 1];
    ctl_parse_domain(arg, domain);
    struct conf conf;
    ctl_load_conf(c, &conf);
    ctl_need_local_domain(&conf, domain);

    struct clientconfig cc = {.domain = domain};
    clientconfig_from_conf(&cc, &conf);
    if (!clientconfig_usable(&cc))
        ctl_die("clients need a POP3 listener ([pop3s] or [pop3] listen) and a submission one "
                "([submissions] or [submission] listen), and %s has %s off",
                conf.path ? conf.path : "the config",
                cc.pop3s == 0 && cc.pop3 == 0 ? "both POP3 listeners" : "both submission ones");

    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        ctl_die("%s is no folder; create it first, or name another with --dir", dir);
    if (access(dir, W_OK) != 0)
        ctl_die("cannot write into %s: %s; pick another folder with --dir", dir, strerror(errno));

    struct out_file files[3] = {0};
    snprintf(files[0].name, sizeof(files[0].name), "config-v1.1.xml");
    snprintf(files[1].name, sizeof(files[1].name), "autodiscover.xml");
    snprintf(files[2].name, sizeof(files[2].name), "%s.mobileconfig", domain);
    for (int i = 0; i < 3; i++) {
        buf_init(&files[i].text, FILE_MAX);
        files[i].path = join(dir, files[i].name);
        /* The common case, said before any work; write_all stands by all three or none
         * should one appear after this. */
        if (!force && lstat(files[i].path, &st) == 0)
            ctl_die("%s exists; move it away, or use --force to replace it", files[i].path);
    }
    clientconfig_thunderbird(&cc, &files[0].text);
    clientconfig_autodiscover(&cc, &files[1].text);
    clientconfig_mobileconfig(&cc, &files[2].text);

    /* The DKIM key first: a key that cannot be read stops the command before any file is made. */
    char selector[DNS_NAME_MAX + 1], *record = NULL, err[512];
    int rc = ctl_dkim_expected(&conf, domain, selector, &record, err, sizeof(err));
    if (rc < 0)
        ctl_die("%s; move it away and run 'kotak dkim keygen %s' again", err, domain);

    size_t failed = 0;
    bool naming;
    int wrc = write_all(dir, files, 3, force, &failed, &naming);
    if (wrc < 0 && !naming)
        ctl_die("cannot write into %s: %s; pick another folder with --dir", dir, strerror(-wrc));
    if (wrc == -EEXIST)
        ctl_die("%s exists; move it away, or use --force to replace it (none of the three "
                "files was written)", files[failed].path);
    if (wrc < 0 && force && failed > 0)
        ctl_die("cannot write %s: %s (with --force, the file%s before it %s replaced already)",
                files[failed].path, strerror(-wrc), failed > 1 ? "s" : "",
                failed > 1 ? "were" : "was");
    if (wrc < 0)
        ctl_die("cannot write %s: %s (none of the three files was written)", files[failed].path,
                strerror(-wrc));
    for (int i = 0; i < 3; i++) {
        buf_free(&files[i].text);
        free(files[i].path);
    }

    struct buf dns;
    buf_init(&dns, FILE_MAX);
    buf_printf(&dns, "; %s: written %s/%s, %s/%s, %s/%s\n", domain, dir, files[0].name, dir,
               files[1].name, dir, files[2].name);
    clientconfig_dns(&cc, rc > 0, conf.web_listen.n > 0 ? conf.web_listen.ep[0].port : 0, &dns);
    fwrite(dns.data, 1, dns.len, stdout);
    buf_free(&dns);
    if (rc > 0) {
        printf("; DKIM (RFC 6376): the key kotak signs %s's mail with\n", domain);
        char owner[ADDR_DOMAIN_MAX + 2];
        snprintf(owner, sizeof(owner), "%s.", domain); /* fully qualified, as the lines above */
        ctl_dkim_print_record(stdout, "", selector, owner, record);
        free(record);
    } else {
        printf("; DKIM: %s has no key yet; 'kotak dkim keygen %s' makes one and prints its "
               "record\n",
               domain, domain);
    }
    conf_free(&conf);
    return 0;
}
