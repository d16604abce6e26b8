/*
 * check.c — `kotak check spf|dkim|dmarc`: what kotak-smtpd's MX checks
 * make of a sender or a message, asked by hand. Each one runs the same code
 * as the daemon, against the DNS servers of the config ([dns] servers).
 */
#include <string.h>

#include "ctl.h"
#include "spf.h"
#include "util.h"

static const char usage[] =
    "kotak check spf IP MAIL-FROM [HELO] | dkim < MESSAGE | dmarc IP MAIL-FROM < MESSAGE";

void ctl_check_envelope(const struct ctl *c, const char *usage, struct ctl_envelope *e)
{
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc < 2 || c->argc > 3)
        ctl_usage(usage, help);
    e->ip = c->argv[0];
    e->helo = c->argc == 3 ? c->argv[2] : "";
    struct dns_addr addr;
    if (!spf_ip_parse(e->ip, &addr))
        ctl_die("'%s' is no IP address; give the client's IPv4 or IPv6 address", e->ip);
    const char *arg = c->argv[1];
    size_t n = strlen(arg);
    if (n >= 2 && arg[0] == '<' && arg[n - 1] == '>')
        e->sender = xstrndup(arg + 1, n - 2);
    else if (memchr(arg, '<', n) != NULL || memchr(arg, '>', n) != NULL)
        ctl_die("MAIL-FROM '%s' has a stray angle bracket; give the address, <address> or <>", arg);
    else
        e->sender = xstrdup(arg);
}

int ctl_check(const struct ctl *c)
{
    bool help = c->argc >= 1 && (strcmp(c->argv[0], "--help") == 0 || strcmp(c->argv[0], "-h") == 0);
    if (c->argc < 1 || help)
        ctl_usage(usage, help);
    ctl_check_verb(c, "check");
    struct ctl sub = {.config_arg = c->config_arg, .argc = c->argc - 1, .argv = c->argv + 1};
    if (strcmp(c->argv[0], "spf") == 0)
        return ctl_check_spf(&sub);
    if (strcmp(c->argv[0], "dkim") == 0)
        return ctl_check_dkim(&sub);
    if (strcmp(c->argv[0], "dmarc") == 0)
        return ctl_check_dmarc(&sub);
    ctl_usage(usage, ctl_wants_help(c->argc, c->argv));
}
