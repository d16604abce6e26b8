/*
 * commands.c — `kotak domain|user|alias|mailbox|stats|backup|run`.
 *
 * Each command checks its arguments before it opens the store, so a typo
 * never reaches it, and each change is one store call, so one transaction:
 * a command that fails leaves the store as it was.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "util.h"

static void parse_domain(const char *arg, char *out)
{
    if (addr_parse_domain(arg, strlen(arg), 0, out) < 0)
        ctl_die("'%s' is not a valid domain name; write it as example.org (an international "
                "name in its xn-- form)", arg);
}

static void parse_address(const char *arg, struct addr *a)
{
    if (addr_parse(arg, strlen(arg), ADDR_UTF8, a) < 0)
        ctl_die("'%s' is not a valid mailbox address (RFC 5321); write it as user@example.org",
                arg);
}

/* SOURCE of an alias: an address, or "@domain" for the domain's catch-all. */
static void parse_alias_source(const char *arg, struct addr *a)
{
    if (arg[0] == '@') {
        parse_domain(arg + 1, a->domain);
        a->local[0] = '\0';
        return;
    }
    parse_address(arg, a);
}

/* The domain a store error is about, for the messages that name it. */
static void die_no_domain(const char *domain)
{
    ctl_die("domain %s is not local; add it first with 'kotak domain add %s'", domain, domain);
}

/* --- quotas ------------------------------------------------------------- */

/* The largest quota taken: a petabyte, far past any disk, far from overflow. */
#define QUOTA_MAX (1ull << 50)

/* SIZE of --quota: as the config writes sizes (500M, 2G); none or 0: none. */
static uint64_t parse_quota(const char *arg)
{
    char err[256];
    uint64_t v = 0;
    if (strcasecmp(arg, "none") == 0)
        return 0;
    if (conf_parse_size(arg, &v, err, sizeof(err)) < 0)
        ctl_die("--quota: '%s' is not a size; write octets with K, M or G, as 500M or 2G, or "
                "none", arg);
    if (v > QUOTA_MAX)
        ctl_die("--quota: '%s' is more than the largest quota, 1048576G; give a smaller size or "
                "none", arg);
    return v;
}

/* " quota=N", tab-separated as the other columns, when a quota applies: else nothing. */
static void print_quota(uint64_t quota, uint64_t used, bool with_use)
{
    if (quota == 0)
        return;
    printf("\tquota=%llu", (unsigned long long)quota);
    if (with_use)
        printf("\tfull=%llu%%", (unsigned long long)(used * 100 / quota));
}

/* --- domain ------------------------------------------------------------- */

static int print_domain(void *ctx, const struct store_domain *d)
{
    (void)ctx;
    printf("%s\tusers=%" PRId64 "\taliases=%" PRId64, d->name, d->users, d->aliases);
    print_quota(d->quota > 0 ? (uint64_t)d->quota : 0, 0, false);
    printf("\n");
    return 0;
}

int ctl_domain(const struct ctl *c)
{
    static const char usage[] =
        "kotak domain add DOMAIN [--quota SIZE] | set DOMAIN --quota SIZE | del DOMAIN | list";
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc < 1)
        ctl_usage(usage, help);
    ctl_check_verb(c, "domain");
    const char *verb = c->argv[0];
    char domain[ADDR_DOMAIN_MAX + 1];
    struct conf conf;
    int rc;
    if (strcmp(verb, "list") == 0 && c->argc == 1) {
        ctl_load_conf(c, &conf);
        struct store *s = ctl_open_store(&conf, true);
        if ((rc = store_domain_list(s, print_domain, NULL)) < 0)
            ctl_die_store(s, rc, "domain list");
        store_close(&s);
        conf_free(&conf);
        return 0;
    }
    bool set = strcmp(verb, "set") == 0, add = strcmp(verb, "add") == 0;
    bool quota_given = c->argc == 4 && strcmp(c->argv[2], "--quota") == 0;
    if (!((add && (c->argc == 2 || quota_given)) || (set && quota_given) ||
          (strcmp(verb, "del") == 0 && c->argc == 2)))
        ctl_usage(usage, false);
    parse_domain(c->argv[1], domain);
    uint64_t quota = quota_given ? parse_quota(c->argv[3]) : 0;
    ctl_load_conf(c, &conf);
    struct store *s = ctl_open_store(&conf, false);
    if (set) {
        rc = store_domain_set_quota(s, domain, quota);
        if (rc == -ENOENT)
            ctl_die("domain %s does not exist; 'kotak domain list' shows them all", domain);
        if (rc < 0)
            ctl_die_store(s, rc, domain);
        if (quota > 0)
            printf("domain %s quota set to %llu octets for its users without one of their own\n",
                   domain, (unsigned long long)quota);
        else
            printf("domain %s has no default quota now\n", domain);
        store_close(&s);
        conf_free(&conf);
        return 0;
    }
    if (verb[0] == 'a') {
        rc = store_domain_add_quota(s, domain, quota);
        if (rc == -EEXIST)
            ctl_die("domain %s already exists; 'kotak domain list' shows them all", domain);
    } else {
        rc = store_domain_del(s, domain);
        if (rc == -ENOENT)
            ctl_die("domain %s does not exist; 'kotak domain list' shows them all", domain);
        if (rc == -ENOTEMPTY)
            ctl_die("domain %s still has users or aliases; delete them first ('kotak user list "
                    "%s', 'kotak alias list')", domain, domain);
    }
    if (rc < 0)
        ctl_die_store(s, rc, domain);
    printf("domain %s %s\n", domain, verb[0] == 'a' ? "added" : "deleted");
    store_close(&s);
    conf_free(&conf);
    return 0;
}

/* --- user --------------------------------------------------------------- */

static int print_user(void *ctx, const struct store_user *u)
{
    (void)ctx;
    printf("%s\tmessages=%" PRId64 "\tbytes=%" PRId64, u->address, u->messages, u->bytes);
    print_quota(u->quota > 0 ? (uint64_t)u->quota : 0, u->bytes > 0 ? (uint64_t)u->bytes : 0,
                true);
    printf("\n");
    return 0;
}

/* Options of user add/passwd: --password-stdin, --password-hash HASH; add: --quota SIZE. */
struct pw_opts {
    bool from_stdin;
    const char *hash;
    const char *quota;
};

static void parse_pw_opts(const struct ctl *c, int first, struct pw_opts *o, const char *usage)
{
    for (int i = first; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--password-stdin") == 0)
            o->from_stdin = true;
        else if (strcmp(c->argv[i], "--password-hash") == 0 && i + 1 < c->argc)
            o->hash = c->argv[++i];
        else if (strcmp(c->argv[i], "--quota") == 0 && i + 1 < c->argc &&
                 strcmp(c->argv[0], "add") == 0)
            o->quota = c->argv[++i];
        else
            ctl_usage(usage, false);
    }
    if (o->hash != NULL && o->from_stdin)
        ctl_die("give either --password-stdin or --password-hash, not both");
    if (o->hash != NULL && !auth_hash_acceptable(o->hash))
        ctl_die("the --password-hash is not a yescrypt, bcrypt or SHA-crypt hash; give a "
                "crypt(3) hash that starts with $y$, $2b$, $5$ or $6$");
}

/* The hash to store: the imported one, or a fresh hash of a password read now. */
static void make_hash(const struct pw_opts *o, const struct conf *conf, const char *address,
                      char *hash)
{
    if (o->hash != NULL) {
        snprintf(hash, AUTH_HASH_MAX, "%s", o->hash);
        return;
    }
    char *pw = ctl_read_password(address, o->from_stdin, conf->auth.password_min_length);
    int rc = auth_hash_password(pw, hash);
    explicit_bzero(pw, strlen(pw));
    free(pw);
    if (rc < 0)
        ctl_die("cannot hash the password: %s", strerror(-rc));
}

/* kotak user set ADDRESS --quota SIZE */
static int user_set(const struct ctl *c, const char *usage)
{
    struct conf conf;
    struct addr a;
    if (c->argc != 4 || strcmp(c->argv[2], "--quota") != 0)
        ctl_usage(usage, false);
    parse_address(c->argv[1], &a);
    uint64_t quota = parse_quota(c->argv[3]);
    ctl_load_conf(c, &conf);
    struct store *s = ctl_open_store(&conf, false);
    char text[ADDR_TEXT_SIZE];
    snprintf(text, sizeof(text), "%s@%s", a.local, a.domain);
    addr_lower(text);
    int rc = store_user_set_quota(s, &a, quota);
    if (rc == -ENOENT)
        ctl_die("user %s does not exist; 'kotak user list' shows them all", text);
    if (rc < 0)
        ctl_die_store(s, rc, text);
    if (quota > 0)
        printf("user %s quota set to %llu octets\n", text, (unsigned long long)quota);
    else
        printf("user %s has no quota of its own now (its domain's default applies, if any)\n",
               text);
    store_close(&s);
    conf_free(&conf);
    return 0;
}

int ctl_user(const struct ctl *c)
{
    static const char usage[] =
        "kotak user add ADDRESS [--password-stdin | --password-hash HASH] [--quota SIZE] | "
        "passwd ADDRESS [--password-stdin | --password-hash HASH] | "
        "set ADDRESS --quota SIZE | del ADDRESS | list [DOMAIN]";
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc < 1)
        ctl_usage(usage, help);
    ctl_check_verb(c, "user");
    const char *verb = c->argv[0];
    struct conf conf;
    struct addr a;
    int rc;
    if (strcmp(verb, "list") == 0 && c->argc <= 2) {
        char domain[ADDR_DOMAIN_MAX + 1];
        if (c->argc == 2)
            parse_domain(c->argv[1], domain);
        ctl_load_conf(c, &conf);
        struct store *s = ctl_open_store(&conf, true);
        if (c->argc == 2 && store_domain_exists(s, domain) == 0)
            die_no_domain(domain);
        if ((rc = store_user_list(s, c->argc == 2 ? domain : NULL, print_user, NULL)) < 0)
            ctl_die_store(s, rc, "user list");
        store_close(&s);
        conf_free(&conf);
        return 0;
    }
    bool add = strcmp(verb, "add") == 0, passwd = strcmp(verb, "passwd") == 0;
    bool del = strcmp(verb, "del") == 0;
    if (strcmp(verb, "set") == 0)
        return user_set(c, usage);
    if (!(add || passwd || del) || c->argc < 2 || (del && c->argc != 2))
        ctl_usage(usage, false);
    parse_address(c->argv[1], &a);
    struct pw_opts o = {0};
    parse_pw_opts(c, 2, &o, usage);
    ctl_load_conf(c, &conf);
    /* The store is opened before the password is asked, so that a mistake
     * in the config or the address is told before the typing. */
    struct store *s = ctl_open_store(&conf, false);
    char hash[AUTH_HASH_MAX] = "";
    char text[ADDR_TEXT_SIZE];
    snprintf(text, sizeof(text), "%s@%s", a.local, a.domain);
    addr_lower(text);
    if (add) {
        struct store_user u;
        if (store_domain_exists(s, a.domain) == 0)
            die_no_domain(a.domain);
        if (store_user_lookup(s, &a, &u) == 1)
            ctl_die("user %s already exists; change the password with 'kotak user passwd %s'",
                    text, text);
        uint64_t quota = o.quota != NULL ? parse_quota(o.quota) : 0;
        make_hash(&o, &conf, text, hash);
        rc = store_user_add_quota(s, &a, hash, quota);
    } else if (passwd) {
        struct store_user u;
        if (store_user_lookup(s, &a, &u) == 0)
            ctl_die("user %s does not exist; 'kotak user list' shows them all", text);
        make_hash(&o, &conf, text, hash);
        rc = store_user_passwd(s, &a, hash);
    } else {
        rc = store_user_del(s, &a);
    }
    if (rc == -KOTAK_ENODOMAIN)
        die_no_domain(a.domain);
    if (rc == -EEXIST)
        ctl_die("%s is already taken (a user or an alias); pick another address", text);
    if (rc == -ENOENT)
        ctl_die("user %s does not exist; 'kotak user list' shows them all", text);
    if (rc < 0)
        ctl_die_store(s, rc, text);
    printf("user %s %s\n", text, add ? "added" : passwd ? "password changed" : "deleted");
    store_close(&s);
    conf_free(&conf);
    return 0;
}

/* --- alias -------------------------------------------------------------- */

static int print_alias(void *ctx, const char *source, const char *target)
{
    (void)ctx;
    printf("%s\t%s\n", source, target);
    return 0;
}

/* TARGETS: comma-separated addresses, into a new array. */
static struct addr *parse_targets(const char *arg, size_t *n_r)
{
    struct addr *t = NULL;
    size_t n = 0;
    const char *p = arg;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && *p == ' ')
            p++, len--;
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len == 0)
            ctl_die("an empty target in '%s'; separate addresses with single commas", arg);
        char *one = xstrndup(p, len);
        t = xrealloc(t, (n + 1) * sizeof(*t));
        parse_address(one, &t[n++]);
        free(one);
        if (end == NULL)
            break;
        p = end + 1;
    }
    *n_r = n;
    return t;
}

int ctl_alias(const struct ctl *c)
{
    static const char usage[] =
        "kotak alias add SOURCE TARGET[,TARGET...] | del SOURCE [TARGET] | list "
        "(SOURCE @example.org is the domain's catch-all)";
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc < 1)
        ctl_usage(usage, help);
    ctl_check_verb(c, "alias");
    const char *verb = c->argv[0];
    struct conf conf;
    int rc;
    if (strcmp(verb, "list") == 0 && c->argc == 1) {
        ctl_load_conf(c, &conf);
        struct store *s = ctl_open_store(&conf, true);
        if ((rc = store_alias_list(s, print_alias, NULL)) < 0)
            ctl_die_store(s, rc, "alias list");
        store_close(&s);
        conf_free(&conf);
        return 0;
    }
    bool add = strcmp(verb, "add") == 0, del = strcmp(verb, "del") == 0;
    if (!(add && c->argc == 3) && !(del && (c->argc == 2 || c->argc == 3)))
        ctl_usage(usage, false);
    struct addr source, *targets = NULL;
    size_t n = 0;
    parse_alias_source(c->argv[1], &source);
    if (c->argc == 3)
        targets = parse_targets(c->argv[2], &n);
    if (del && n > 1)
        ctl_die("give one TARGET to delete, or none to delete every target of %s", c->argv[1]);
    ctl_load_conf(c, &conf);
    struct store *s = ctl_open_store(&conf, false);
    char src[ADDR_TEXT_SIZE];
    snprintf(src, sizeof(src), "%s@%s", source.local, source.domain);
    addr_lower(src);
    if (add) {
        rc = store_alias_add(s, &source, targets, n);
        if (rc == -KOTAK_ENODOMAIN)
            die_no_domain(source.domain);
        if (rc == -EEXIST)
            ctl_die("%s is a user, or already has that target; 'kotak alias list' shows the "
                    "aliases", src);
        if (rc == -ENOENT)
            ctl_die("a target of %s is in a local domain but is no user or alias there; add "
                    "the user first", src);
    } else {
        rc = store_alias_del(s, &source, n ? &targets[0] : NULL);
        if (rc == -ENOENT)
            ctl_die("no such alias %s%s%s; 'kotak alias list' shows them all", src,
                    n ? " -> " : "", n ? c->argv[2] : "");
    }
    if (rc < 0)
        ctl_die_store(s, rc, src);
    printf("alias %s %s\n", src, add ? "added" : "deleted");
    free(targets);
    store_close(&s);
    conf_free(&conf);
    return 0;
}

/* --- mailbox, stats ------------------------------------------------------ */

int ctl_mailbox(const struct ctl *c)
{
    static const char usage[] = "kotak mailbox ADDRESS";
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc != 1)
        ctl_usage(usage, help);
    struct addr a;
    struct conf conf;
    struct store_user u;
    parse_address(c->argv[0], &a);
    ctl_load_conf(c, &conf);
    struct store *s = ctl_open_store(&conf, true);
    int rc = store_user_lookup(s, &a, &u);
    if (rc == 0)
        ctl_die("user %s does not exist; 'kotak user list' shows them all", c->argv[0]);
    if (rc < 0)
        ctl_die_store(s, rc, c->argv[0]);
    struct store_mail *list;
    size_t n;
    if ((rc = store_mbox_list(s, u.id, &list, &n)) < 0)
        ctl_die_store(s, rc, c->argv[0]);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        char date[32];
        time_t t = (time_t)list[i].arrived;
        struct tm tm;
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        printf("%zu\t%s\t%" PRId64 "\t%s\n", i + 1, list[i].uidl, list[i].size, date);
        total += list[i].size;
    }
    printf("%s: %zu message%s, %" PRId64 " octets\n", u.address, n, n == 1 ? "" : "s", total);
    free(list);
    store_close(&s);
    conf_free(&conf);
    return 0;
}

int ctl_stats(const struct ctl *c)
{
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc != 0)
        ctl_usage("kotak stats", help);
    struct conf conf;
    struct store_stats st;
    ctl_load_conf(c, &conf);
    struct store *s = ctl_open_store(&conf, true);
    int rc = store_stats(s, &st);
    if (rc < 0)
        ctl_die_store(s, rc, "stats");
    printf("domains: %" PRId64 "\nusers: %" PRId64 "\naliases: %" PRId64 "\n"
           "messages: %" PRId64 "\nmaildrop entries: %" PRId64 "\nmessage bytes: %" PRId64 "\n"
           "store bytes: %" PRId64 "\n",
           st.domains, st.users, st.aliases, st.messages, st.entries, st.bytes, st.file_bytes);
    store_close(&s);
    conf_free(&conf);
    return 0;
}

/* --- backup -------------------------------------------------------- */

int ctl_backup(const struct ctl *c)
{
    static const char usage[] = "kotak backup FILE [--force]";
    bool help = ctl_wants_help(c->argc, c->argv);
    const char *dest = NULL;
    bool force = false;
    for (int i = 0; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--force") == 0)
            force = true;
        else if (dest == NULL)
            dest = c->argv[i];
        else
            ctl_usage(usage, false);
    }
    if (help || dest == NULL)
        ctl_usage(usage, help);
    struct stat sb;
    if (!force && stat(dest, &sb) == 0)
        ctl_die("%s already exists; pick a new name or add --force to replace it", dest);
    struct conf conf;
    char err[512];
    ctl_load_conf(c, &conf);
    struct store *s = ctl_open_store(&conf, true);
    int rc = store_backup(s, dest, err, sizeof(err));
    if (rc < 0)
        ctl_die("%s", err);
    if (stat(dest, &sb) == 0)
        printf("backup written to %s (%lld bytes)\n", dest, (long long)sb.st_size);
    store_close(&s);
    conf_free(&conf);
    return 0;
}

/* --- restore ------------------------------------------------------- */

int ctl_restore(const struct ctl *c)
{
    static const char usage[] = "kotak restore FILE";
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc != 1)
        ctl_usage(usage, help);
    const char *from = c->argv[0];
    if (access(from, R_OK) != 0)
        ctl_die("cannot read %s: %s", from, strerror(errno));
    struct conf conf;
    char err[512];
    ctl_load_conf(c, &conf);
    char *path = conf_store_path(&conf);
    int hold = hold_store(path, true);
    if (hold == -EWOULDBLOCK)
        ctl_die("a daemon has %s open; stop kotak-smtpd and kotak-pop3d first (systemctl stop "
                "kotak.target), then restore",
                path);
    if (hold < 0)
        ctl_die("cannot hold %s-daemons: %s", path, strerror(-hold));
    struct store_restored r;
    if (store_restore(from, path, &r, err, sizeof(err)) < 0)
        ctl_die("%s", err);
    close(hold);
    printf("restored %s into %s: %lld users, %lld messages in maildrops\n", from, path,
           (long long)r.users, (long long)r.messages);
    if (r.aside[0] != '\0')
        printf("the store it replaced is kept as %s\n", r.aside);
    if (!r.reclaims)
        printf("the store keeps the space of deleted mail: there was no room to rewrite it "
               "(it needs free space beside it twice its size); restore it again once there is\n");
    if (r.queued > 0) /* the queue is the backup's: what left since then goes again */
        printf("%lld recipients wait in the queue as they did then: kotak-smtpd tries them again, "
               "so mail delivered since the backup may arrive twice; see 'kotak queue list'\n",
               (long long)r.queued);
    if (r.new_uidl_prefix)
        printf("no store was there to go on from: every message gets a new UIDL, so POP3 clients "
               "that leave mail on the server fetch it once more\n");
    else
        printf("new messages go on from UIDL number %lld, so no client sees an old UIDL again\n",
               (long long)r.next_uidl);
    free(path);
    conf_free(&conf);
    return 0;
}
