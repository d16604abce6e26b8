/*
 * main.c — `kotak`, the one command an administrator types: it finds the
 * config, picks the subcommand and leaves the work to the ctl_* functions.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ahead.h"
#include "ctl.h"
#include "util.h"

static const char usage[] =
    "usage: kotak [-c FILE] COMMAND [ARGS]\n"
    "\n"
    "Set-up and administration of a kotak mail server.\n"
    "\n"
    "commands:\n"
    "  init [--hostname NAME] [--user NAME] [--force]\n"
    "                                       write kotak.conf and create kotak-data/\n"
    "  domain add|del|set|list [DOMAIN]     the domains this server receives mail for\n"
    "  user add|del|passwd|set|list [ADDRESS]\n"
    "                                       mailbox users, their passwords and quotas\n"
    "  alias add|del|list [SOURCE] [TARGETS] addresses that forward to users\n"
    "  mailbox ADDRESS                      the messages waiting in a user's maildrop\n"
    "  stats                                counts and sizes of the store\n"
    "  backup FILE [--force]                a consistent copy of the store, safe while running\n"
    "  restore FILE                         put a backup back (the daemons stopped)\n"
    "  queue list|show ID|retry [ID]|drop ID mail waiting for other servers\n"
    "  import mbox USER FILE... | maildir USER DIR | pop3 USER --from HOST:PORT ...\n"
    "                                       move a user's mail in, the UIDLs clients saw kept\n"
    "  export mbox USER FILE | maildir USER DIR\n"
    "                                       a user's mail out, to come back the same\n"
    "  dkim keygen DOMAIN [--selector S] | dns DOMAIN\n"
    "                                       the key kotak signs a domain's mail with\n"
    "  clientconfig DOMAIN [--dir DIR] [--force]\n"
    "                                       mail clients' set-up files; the domain's DNS records\n"
    "  check spf IP MAIL-FROM [HELO] | dkim < MSG | dmarc IP MAIL-FROM [HELO] < MSG\n"
    "                                       what the MX's checks make of a sender\n"
    "  watch [--history N] [--explain]      every SMTP and POP3 session, live\n"
    "  doctor [--domain D]                  what the installation gets wrong, and how to mend it\n"
    "  run                                  both daemons in the foreground\n"
    "  help [COMMAND]                       this, or one command's forms and options\n"
    "\n"
    "options:\n"
    "  -c, --config FILE   the config file (else $KOTAK_CONFIG, ./kotak.conf,\n"
    "                      /etc/kotak/kotak.conf)\n"
    "  -h, --help          this help; 'kotak help COMMAND' or 'kotak COMMAND --help'\n"
    "                      for one command\n"
    "  -V, --version       the version\n";

struct command {
    const char *name;
    int (*run)(const struct ctl *c);
};

static const struct command commands[] = {
    {"init", ctl_init},     {"domain", ctl_domain},   {"user", ctl_user},
    {"alias", ctl_alias},   {"mailbox", ctl_mailbox}, {"stats", ctl_stats},
    {"backup", ctl_backup}, {"restore", ctl_restore}, {"run", ctl_run},
    {"queue", ctl_queue},
    {"clientconfig", ctl_clientconfig},
    {"dkim", ctl_dkim},     {"check", ctl_check},     {"watch", ctl_watch},
    {"doctor", ctl_doctor},
    {"import", ctl_import}, {"export", ctl_export},
};

void ctl_usage(const char *usage, bool asked)
{
    if (asked) { /* "kotak [-c FILE] WORD ...": WORD's help */
        const char *p = usage + strlen("kotak ");
        if (strncmp(p, "[-c FILE] ", 10) == 0)
            p += 10;
        char command[16];
        snprintf(command, sizeof(command), "%.*s", (int)strcspn(p, " "), p);
        ctl_help(command);
    }
    ctl_die("usage: %s", usage);
}

static void (*dying_hook)(void *ctx);
static void *dying_ctx;

void ctl_before_dying(void (*fn)(void *ctx), void *ctx)
{
    dying_hook = fn;
    dying_ctx = ctx;
}

void ctl_die(const char *fmt, ...)
{
    va_list ap;
    /* On an import's producer thread, the main thread says it, after what came before. */
    char msg[1024];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ahead_fail_if_producer(msg);
    void (*hook)(void *ctx) = dying_hook;
    dying_hook = NULL; /* once: the hook may die itself */
    if (hook != NULL)
        hook(dying_ctx);
    fprintf(stderr, "kotak: %s\n", msg);
    exit(KOTAK_EXIT_USAGE);
}

bool ctl_wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

void ctl_load_conf(const struct ctl *c, struct conf *conf)
{
    char err[512];
    conf_defaults(conf);
    if (conf_load(conf_locate(c->config_arg), conf, err, sizeof(err)) < 0)
        ctl_die("%s", err);
}

void ctl_die_store(struct store *s, int rc, const char *subject)
{
    switch (-rc) {
    case KOTAK_ELOCKED:
        ctl_die("%s: the store is locked by another process; try again once it is done", subject);
    case KOTAK_EREADONLY:
        ctl_die("%s: the store is read-only; run kotak as the user that owns kotak-data/ or "
                "fix its permissions", subject);
    case ENOSPC:
        ctl_die("%s: the disk holding the store is full; free some space", subject);
    default:
        ctl_die("%s: %s%s%s", subject, kotak_strerror(rc), s ? ": " : "",
                s ? store_errmsg(s) : "");
    }
}

struct store *ctl_open_store(const struct conf *conf, bool readonly)
{
    char *path = conf_store_path(conf);
    char err[512];
    struct store *s;
    int rc = store_open(path, readonly ? STORE_READONLY : 0, &s, err, sizeof(err));
    if (rc == -ENOENT)
        ctl_die("no store at %s; run 'kotak init' first, or set data_dir in %s", path,
                conf->path);
    if (rc == -KOTAK_EREADONLY)
        ctl_die("%s is read-only; run kotak as the user that owns it or fix its permissions",
                path);
    if (rc == -KOTAK_ELOCKED)
        ctl_die("%s is locked by another process; try again once it is done", path);
    if (rc < 0)
        ctl_die("%s", err);
    free(path);
    return s;
}

void ctl_parse_domain(const char *arg, char *out)
{
    if (addr_parse_domain(arg, strlen(arg), 0, out) < 0 || !dns_name_valid(out))
        ctl_die("'%s' is not a valid domain name; write it as example.org (an international "
                "name in its xn-- form)",
                arg);
}

void ctl_need_local_domain(const struct conf *conf, const char *domain)
{
    struct store *s = ctl_open_store(conf, true);
    int rc = store_domain_exists(s, domain);
    if (rc < 0)
        ctl_die_store(s, rc, domain);
    if (rc == 0)
        ctl_die("domain %s is not local; add it first with 'kotak domain add %s'", domain, domain);
    store_close(&s);
}

/* Takes -c FILE / --config FILE / --config=FILE out of argv, wherever it is. */
static const char *take_config(int *argc, char **argv)
{
    const char *path = NULL;
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= *argc)
                ctl_die("%s needs a file name, as -c /etc/kotak/kotak.conf", argv[i]);
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    argv[out] = NULL;
    return path;
}

int main(int argc, char **argv)
{
    umask(077); /* the store and its copies hold mail and password hashes */
    signal(SIGPIPE, SIG_IGN); /* a peer or pipe gone: EPIPE to handle, not a death */
    argc--, argv++;
    struct ctl c = {.config_arg = take_config(&argc, argv)};
    if (argc == 0)
        ctl_die("no command given; see 'kotak --help'");
    if (strcmp(argv[0], "help") == 0 && argc == 2)
        ctl_help(argv[1]);
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ||
        strcmp(argv[0], "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(argv[0], "--version") == 0 || strcmp(argv[0], "-V") == 0) {
        printf("kotak %s\n", KOTAK_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[0], commands[i].name) == 0) {
            c.argc = argc - 1;
            c.argv = argv + 1;
            return commands[i].run(&c);
        }
    }
    ctl_unknown_command(argv[0]);
}
