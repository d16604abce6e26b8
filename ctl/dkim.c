/*
 * dkim.c — `kotak dkim keygen|dns` and `kotak check dkim`: the signing keys
 * of the local domains, kept in the data folder's dkim/ as
 * SELECTOR._domainkey.DOMAIN.pem (the name of the DNS record that publishes
 * it), and the verifier of the MX run by hand on a message.
 *
 * A key is written once and never replaced: a new key is a new selector,
 * published beside the old one before mail is signed with it (RFC 6376
 * 3.1), so keygen refuses a selector that already has a key.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "ctl.h"
#include "dkim.h"
#include "dns.h"
#include "util.h"

static const char usage[] = "kotak dkim keygen DOMAIN [--selector S] | dns DOMAIN";

#define DKIM_KEY_BITS 2048
#define TXT_STRING_MAX 255 /* octets in one character-string (RFC 1035 3.3) */

/* DATA/dkim, a new string. */
static char *key_dir(const struct conf *conf)
{
    char *data_dir = conf_path(conf, conf->data_dir);
    size_t n = strlen(data_dir) + 6;
    char *dir = xmalloc(n);
    snprintf(dir, n, "%s/dkim", data_dir);
    free(data_dir);
    return dir;
}

/*
 * Prints the record as a zone file line: "S._domainkey.D TXT" and the
 * record in quoted strings of at most 255 octets, the tags before p= in
 * the first one (RFC 6376 3.6.2.2 joins them again); indent first.
 */
void ctl_dkim_print_record(FILE *f, const char *indent, const char *selector, const char *domain,
                           const char *record)
{
    fprintf(f, "%s%s._domainkey.%s TXT", indent, selector, domain);
    const char *p = strstr(record, "p=");
    size_t head = p ? (size_t)(p - record) : 0, len = strlen(record);
    if (head > 0 && head <= TXT_STRING_MAX)
        fprintf(f, " \"%.*s\"", (int)head, record);
    else
        head = 0;
    for (size_t i = head; i < len; i += TXT_STRING_MAX) {
        size_t n = len - i < TXT_STRING_MAX ? len - i : TXT_STRING_MAX;
        fprintf(f, " \"%.*s\"", (int)n, record + i);
    }
    fprintf(f, "\n");
}

static char *record_of(const unsigned char *pem, size_t len, const char *path)
{
    char *record, err[256];
    if (dkim_key_record(pem, len, &record, err, sizeof(err)) < 0)
        ctl_die("%s: %s; move it away and run 'kotak dkim keygen' again", path, err);
    return record;
}

/* The user the daemons run as, when we are root and one is configured; else NULL. */
static const struct passwd *run_user(const struct conf *conf)
{
    if (geteuid() != 0 || conf->run_user[0] == '\0')
        return NULL;
    const struct passwd *pw = getpwnam(conf->run_user);
    if (pw == NULL)
        ctl_die("no user '%s' ([server] user); create it, or run 'kotak init' as root",
                conf->run_user);
    return pw;
}

static void make_key_dir(const char *dir, const struct passwd *pw)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        ctl_die("cannot create %s: %s", dir, strerror(errno));
    struct stat st;
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        ctl_die("%s is no folder; move it away and try again", dir);
    if (pw != NULL && (st.st_uid != pw->pw_uid || st.st_gid != pw->pw_gid) &&
        chown(dir, pw->pw_uid, pw->pw_gid) != 0)
        ctl_die("cannot give %s to the user %s: %s", dir, pw->pw_name, strerror(errno));
}

static void write_all(int fd, const char *p, size_t n, const char *path)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            ctl_die("cannot write %s: %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

/*
 * Writes pem as dir/name, mode 0600, whole or not at all: a temporary file
 * first, then link(2), which never replaces a key that appeared meanwhile.
 */
static void write_key(const char *dir, const char *name, const char *pem, size_t len,
                      const struct passwd *pw, const char *domain)
{
    size_t n = strlen(dir) + strlen(name) + 40;
    char *path = xmalloc(n), *tmp = xmalloc(n);
    snprintf(path, n, "%s/%s", dir, name);
    snprintf(tmp, n, "%s/.%s.%ld.tmp", dir, name, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        ctl_die("cannot create %s: %s", tmp, strerror(errno));
    write_all(fd, pem, len, tmp);
    if (pw != NULL && fchown(fd, pw->pw_uid, pw->pw_gid) != 0)
        ctl_die("cannot give %s to the user %s: %s", tmp, pw->pw_name, strerror(errno));
    if (fsync(fd) != 0 || close(fd) != 0)
        ctl_die("cannot write %s: %s", tmp, strerror(errno));
    if (link(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        if (e == EEXIST)
            ctl_die("%s exists; 'kotak dkim dns %s' prints its record", path, domain);
        ctl_die("cannot create %s: %s", path, strerror(e));
    }
    unlink(tmp);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(path);
    free(tmp);
}

static int keygen(const struct ctl *c)
{
    const char *selector_arg = NULL;
    if (c->argc != 2 && !(c->argc == 4 && strcmp(c->argv[2], "--selector") == 0))
        ctl_usage(usage, false);
    if (c->argc == 4)
        selector_arg = c->argv[3];
    char domain[ADDR_DOMAIN_MAX + 1];
    ctl_parse_domain(c->argv[1], domain);
    struct conf conf;
    ctl_load_conf(c, &conf);
    const char *selector = selector_arg ? selector_arg : conf.checks.dkim_selector;
    if (!dkim_selector_valid(selector))
        ctl_die("'%s' is not a selector; use letters, digits and inner '-' (dots between "
                "labels), such as kotak or mail2026",
                selector);
    if (strlen(selector) + strlen("._domainkey.") + strlen(domain) > DNS_NAME_MAX)
        ctl_die("%s._domainkey.%s is longer than a DNS name may be; choose a shorter selector",
                selector, domain);

    ctl_need_local_domain(&conf, domain);

    const struct passwd *pw = run_user(&conf);
    char *dir = key_dir(&conf);
    char name[DNS_NAME_MAX + 8];
    snprintf(name, sizeof(name), "%s._domainkey.%s.pem", selector, domain);
    size_t pn = strlen(dir) + strlen(name) + 2;
    char *path = xmalloc(pn);
    snprintf(path, pn, "%s/%s", dir, name);
    struct stat st;
    if (lstat(path, &st) == 0) /* before the slow part; write_key checks again */
        ctl_die("%s exists; 'kotak dkim dns %s' prints its record", path, domain);
    make_key_dir(dir, pw);

    char *pem, err[256];
    size_t len;
    if (dkim_keygen(DKIM_KEY_BITS, &pem, &len, err, sizeof(err)) < 0)
        ctl_die("%s", err);
    char *record = record_of((unsigned char *)pem, len, path);
    write_key(dir, name, pem, len, pw, domain);
    explicit_bzero(pem, len);
    free(pem);
    ctl_dkim_print_record(stdout, "", selector, domain, record);
    free(record);
    free(path);
    free(dir);
    conf_free(&conf);
    return 0;
}

int ctl_dkim_expected(const struct conf *conf, const char *domain,
                      char selector_r[DNS_NAME_MAX + 1], char **record_r, char *err,
                      size_t err_size)
{
    char *dir = key_dir(conf);
    unsigned char *pem;
    size_t len;
    int rc = dkim_key_read(dir, domain, conf->checks.dkim_selector, selector_r, &pem, &len);
    if (rc < 0)
        snprintf(err, err_size, "cannot read the DKIM key of %s in %s: %s", domain, dir,
                 strerror(-rc));
    if (rc == 0)
        snprintf(err, err_size, "%s has no DKIM key in %s", domain, dir);
    if (rc > 0) {
        char why[256];
        if (dkim_key_record(pem, len, record_r, why, sizeof(why)) < 0) {
            snprintf(err, err_size, "%s/%s._domainkey.%s.pem: %s", dir, selector_r, domain, why);
            rc = -EINVAL;
        }
        explicit_bzero(pem, len);
        free(pem);
    }
    free(dir);
    return rc;
}

static int dns_record(const struct ctl *c)
{
    if (c->argc != 2)
        ctl_usage(usage, false);
    char domain[ADDR_DOMAIN_MAX + 1];
    ctl_parse_domain(c->argv[1], domain);
    struct conf conf;
    ctl_load_conf(c, &conf);
    char *dir = key_dir(&conf), selector[DNS_NAME_MAX + 1];
    unsigned char *pem;
    size_t len;
    int rc = dkim_key_read(dir, domain, conf.checks.dkim_selector, selector, &pem, &len);
    if (rc < 0)
        ctl_die("cannot read the DKIM key of %s in %s: %s", domain, dir, strerror(-rc));
    if (rc == 0)
        ctl_die("%s has no DKIM key in %s; make one with 'kotak dkim keygen %s'", domain, dir,
                domain);
    char *record = record_of(pem, len, dir);
    explicit_bzero(pem, len);
    free(pem);
    ctl_dkim_print_record(stdout, "", selector, domain, record);
    free(record);
    free(dir);
    conf_free(&conf);
    return 0;
}

int ctl_dkim(const struct ctl *c)
{
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc < 1)
        ctl_usage(usage, help);
    ctl_check_verb(c, "dkim");
    if (strcmp(c->argv[0], "keygen") == 0)
        return keygen(c);
    return dns_record(c);
}

/* --- kotak check dkim ------------------------------------------------------ */

/*
 * Feeds standard input to v, a line end written as LF alone (a message
 * saved on disk) becoming CRLF, as the message would travel. Dies past
 * max octets.
 */
static void feed_stdin(struct dkim_verify *v, uint64_t max)
{
    static char in[65536], out[2 * sizeof(in)];
    uint64_t total = 0;
    bool cr = false;
    for (size_t got; (got = fread(in, 1, sizeof(in), stdin)) > 0;) {
        size_t n = 0;
        for (size_t i = 0; i < got; i++) {
            if (in[i] == '\n' && !cr)
                out[n++] = '\r';
            out[n++] = in[i];
            cr = in[i] == '\r';
        }
        total += n;
        if (total > max)
            ctl_die("the message is over %" PRIu64 " octets ([limits] message_size)", max);
        dkim_verify_feed(v, out, n);
    }
    if (ferror(stdin))
        ctl_die("cannot read the message from standard input: %s", strerror(errno));
}

struct checking {
    struct dns *dns;
    bool done;
};

static void keys_done(void *ctx)
{
    struct checking *ch = ctx;
    ch->done = true;
    dns_free(&ch->dns); /* the loop then ends */
}

int ctl_check_dkim(const struct ctl *c)
{
    static const char check_usage[] = "kotak check dkim < MESSAGE";
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc != 0)
        ctl_usage(check_usage, help);
    struct conf conf;
    ctl_load_conf(c, &conf);
    struct dkim_verify *v = dkim_verify_new();
    feed_stdin(v, conf.limits.message_size);
    dkim_verify_finish(v);

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        ctl_die("cannot start an event loop");
    char err[512];
    struct checking ch = {0};
    ch.dns = dns_new(&loop, conf.dns_servers, 3000, 2, err, sizeof(err));
    if (ch.dns == NULL)
        ctl_die("%s", err);
    int rc = dkim_verify_keys(v, ch.dns, time(NULL), keys_done, &ch);
    if (rc < 0)
        ctl_die("the resolver is closing; try again");
    if (rc == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    dns_free(&ch.dns);
    uv_run(&loop, UV_RUN_DEFAULT); /* the resolver's handles close */
    uv_loop_close(&loop);
    dkim_verify_check(v); /* the keys that came */

    size_t n = dkim_verify_count(v);
    if (n == 0)
        printf("none (no DKIM-Signature)\n");
    for (size_t i = 0; i < n; i++) {
        const struct dkim_result *r = dkim_verify_result(v, i);
        printf("%s d=%s s=%s a=%s", dkim_status_name(r->status), r->domain, r->selector,
               r->algorithm);
        if (r->why[0] != '\0')
            printf(" (%s)", r->why);
        printf("\n");
    }
    dkim_verify_free(&v);
    conf_free(&conf);
    return 0;
}
