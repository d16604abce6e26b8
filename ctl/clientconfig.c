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
 * a file someone edited by hand is not lost to a second run. Each file is
 * written whole or not at all (a temporary file, then link or rename).
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
};

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Writes f into dir: a temporary file, then link (never replacing) or, with force, rename. */
static void write_file(const char *dir, const struct out_file *f, bool force)
{
    char *path = join(dir, f->name);
    size_t tn = strlen(dir) + strlen(f->name) + 40;
    char *tmp = xmalloc(tn);
    snprintf(tmp, tn, "%s/.%s.%ld.tmp", dir, f->name, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        ctl_die("cannot write into %s: %s; pick another folder with --dir", dir, strerror(errno));
    const char *p = (const char *)f->text.data;
    size_t n = f->text.len;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            ctl_die("cannot write %s: %s", tmp, strerror(e));
        }
        p += w;
        n -= (size_t)w;
    }
    /* The files are public: readable by the web server that serves them, whatever the umask. */
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        ctl_die("cannot write %s: %s", tmp, strerror(e));
    }
    int rc = force ? rename(tmp, path) : link(tmp, path);
    int e = errno;
    if (!force || rc != 0)
        unlink(tmp);
    if (rc != 0 && e == EEXIST)
        ctl_die("%s exists; move it away, or use --force to replace it", path);
    if (rc != 0)
        ctl_die("cannot create %s: %s", path, strerror(e));
    free(tmp);
    free(path);
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
    if (addr_parse_domain(arg, strlen(arg), 0, domain) < 0 || !dns_name_valid(domain))
        ctl_die("'%s' is not a valid domain name; write it as example.org (an international "
                "name in its xn-- form)",
                arg);
    struct conf conf;
    ctl_load_conf(c, &conf);
    struct store *s = ctl_open_store(&conf, true);
    int rc = store_domain_exists(s, domain);
    if (rc < 0)
        ctl_die_store(s, rc, domain);
    if (rc == 0)
        ctl_die("domain %s is not local; add it first with 'kotak domain add %s'", domain, domain);
    store_close(&s);

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

    struct out_file files[3];
    snprintf(files[0].name, sizeof(files[0].name), "config-v1.1.xml");
    snprintf(files[1].name, sizeof(files[1].name), "autodiscover.xml");
    snprintf(files[2].name, sizeof(files[2].name), "%s.mobileconfig", domain);
    for (int i = 0; i < 3; i++) {
        buf_init(&files[i].text, FILE_MAX);
        char *path = join(dir, files[i].name);
        if (!force && lstat(path, &st) == 0) /* before any is written: all three or none */
            ctl_die("%s exists; move it away, or use --force to replace it", path);
        free(path);
    }
    clientconfig_thunderbird(&cc, &files[0].text);
    clientconfig_autodiscover(&cc, &files[1].text);
    clientconfig_mobileconfig(&cc, &files[2].text);

    /* The DKIM key first: a key that cannot be read stops the command before any file is made. */
    char selector[DNS_NAME_MAX + 1], *record = NULL, err[512];
    rc = ctl_dkim_expected(&conf, domain, selector, &record, err, sizeof(err));
    if (rc < 0)
        ctl_die("%s; move it away and run 'kotak dkim keygen %s' again", err, domain);

    for (int i = 0; i < 3; i++) {
        write_file(dir, &files[i], force);
        buf_free(&files[i].text);
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
