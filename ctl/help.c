/*
 * help.c — what `kotak help COMMAND` and `kotak COMMAND --help` print: each
 * command's forms, what it does and one line per option; and the answer to
 * a word kotak does not know ("unknown command 'lst'; did you mean
 * 'list'?"). One table, so the help and the typo check name the same words.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

struct help_option {
    const char *flag, *meaning;
};

struct help {
    const char *command;
    const char *forms; /* one "kotak ..." line each */
    const char *about;
    const char *verbs[6]; /* the words that may follow the command; none: empty */
    struct help_option options[6];
};

static const struct help helps[] = {
    {"init",
     "kotak [-c FILE] init [--hostname NAME] [--user NAME] [--force]\n"
     "kotak [-c FILE] init --keep-config\n",
     "Writes FILE (default ./kotak.conf), commented, and beside it kotak-data/ with a new\n"
     "store and a self-signed certificate. It listens on loopback, on ports above 1024.\n"
     "With --keep-config it writes no config: it makes what an installed FILE names and\n"
     "lacks (its data folder, store and certificate), and run again, changes nothing.",
     {NULL},
     {{"--hostname NAME", "the server's name in greetings and Received: (default: this machine's)"},
      {"--user NAME", "run as root: the user the daemons serve as (default kotak, made when missing)"},
      {"--force", "replace an existing FILE and store"},
      {"--keep-config", "use FILE as it is; make only its missing data folder, store, certificate"}}},
    {"domain",
     "kotak domain add DOMAIN [--quota SIZE]\nkotak domain del DOMAIN\nkotak domain list\n"
     "kotak domain set DOMAIN --quota SIZE\n",
     "The domains this server receives mail for. A domain with users or aliases\n"
     "cannot be deleted. A domain's quota is the default of its users that have\n"
     "none of their own.",
     {"add", "del", "list", "set"},
     {{"--quota SIZE", "its users' default quota, as 500M or 2G; none or 0: no default"}}},
    {"user",
     "kotak user add ADDRESS [--password-stdin | --password-hash HASH]\n"
     "kotak user passwd ADDRESS [--password-stdin | --password-hash HASH]\n"
     "kotak user del ADDRESS\nkotak user list [DOMAIN]\n"
     "kotak user set ADDRESS --quota SIZE\n",
     "Mailbox users: each logs in with its address and password, over POP3 and on\n"
     "submission. Without an option the password is asked twice on the terminal.\n"
     "add also takes --quota SIZE. Mail for a user at the quota is refused with 452\n"
     "(senders try again later); list shows quota= and full= when a quota applies.",
     {"add", "passwd", "del", "list", "set"},
     {{"--password-stdin", "read the password from one line of standard input"},
      {"--password-hash HASH", "store HASH, a crypt(3) hash such as $y$... or $6$..., as it is"},
      {"--quota SIZE", "the most the maildrop may hold, as 500M or 2G; none or 0: the domain's"}}},
    {"alias",
     "kotak alias add SOURCE TARGET[,TARGET...]\nkotak alias del SOURCE [TARGET]\n"
     "kotak alias list\n",
     "Addresses that forward to users here or elsewhere. SOURCE @example.org is the\n"
     "domain's catch-all; del without TARGET removes every target of SOURCE.",
     {"add", "del", "list"},
     {{NULL, NULL}}},
    {"mailbox", "kotak mailbox ADDRESS\n", "The messages waiting in a user's maildrop.",
     {NULL},
     {{NULL, NULL}}},
    {"stats", "kotak stats\n", "Counts and sizes of the store.", {NULL}, {{NULL, NULL}}},
    {"backup", "kotak backup FILE [--force]\n",
     "A consistent copy of the store in FILE, safe while the daemons run.",
     {NULL},
     {{"--force", "replace FILE when it exists"}}},
    {"restore", "kotak restore FILE\n",
     "Puts the backup FILE back as the store, once kotak-smtpd and kotak-pop3d are\n"
     "stopped. FILE is checked first; the store it replaces is kept beside it as\n"
     "kotak.db.before-restore; and no UIDL a client saw before is handed out again.",
     {NULL},
     {{NULL, NULL}}},
    {"queue", "kotak queue list\nkotak queue show ID\nkotak queue retry [ID]\nkotak queue drop ID\n",
     "Mail waiting for other servers: what is queued, each recipient's last reply,\n"
     "a try now (of one entry, or all), a drop (its sender gets a bounce).",
     {"list", "show", "retry", "drop"},
     {{NULL, NULL}}},
    {"import",
     "kotak import mbox USER FILE...\nkotak import maildir USER DIR\n"
     "kotak import pop3 USER --from HOST:PORT [--tls|--starttls] [--login NAME] "
     "--password-file F [--ca FILE|--insecure]\n",
     "Moves mail into USER's maildrop, in order, each message as it was, with the UIDL\n"
     "a POP3 client saw for it kept where one is known, so clients fetch nothing twice:\n"
     "an mbox's X-UIDL field (taken out), a Maildir's dovecot-uidlist (its P field,\n"
     "else Dovecot's default %08Xu%08Xv), the POP3 server's UIDL. A UIDL that is not\n"
     "RFC 1939's, or that the maildrop has already, gets a new one. Run again (also\n"
     "after a kill), it adds nothing that is there already. An mbox is read as mboxrd:\n"
     "'>From ' lines lose one '>' (in an mboxo file an original '>From ' line too).\n"
     "pop3 copies every message of the old server's maildrop and never deletes there;\n"
     "it refuses a server without UIDL, and sends the password in cleartext only to a\n"
     "loopback address (an SSH tunnel).",
     {"mbox", "maildir", "pop3"},
     {{"--from HOST:PORT", "pop3: the old server (port default: 110, or 995 with --tls)"},
      {"--tls | --starttls", "pop3: TLS from the first byte (995), or STLS first (110)"},
      {"--login NAME", "pop3: the login on the old server (default: USER)"},
      {"--password-file F", "pop3: its password, the first line of F (chmod 600)"},
      {"--ca FILE | --insecure", "pop3: trust the CAs in FILE, not the system's; or check nothing"},
      {NULL, NULL}}},
    {"export", "kotak export mbox USER FILE\nkotak export maildir USER DIR\n",
     "Writes USER's maildrop out: an mboxrd FILE (each message under a From_ line and\n"
     "an X-UIDL field with its UIDL), or a Maildir DIR with a dovecot-uidlist naming\n"
     "each UIDL, which Dovecot and 'kotak import' read back. FILE or DIR must be new\n"
     "or empty; files are mode 0600 and synced. Imported again, each message comes\n"
     "back byte for byte with its UIDL.",
     {"mbox", "maildir"},
     {{NULL, NULL}}},
    {"dkim", "kotak dkim keygen DOMAIN [--selector S]\nkotak dkim dns DOMAIN\n",
     "The key kotak signs a domain's outgoing mail with, and the DNS record that\n"
     "publishes it.",
     {"keygen", "dns"},
     {{"--selector S", "the key's selector (default: [dkim] selector)"}}},
    {"clientconfig", "kotak clientconfig DOMAIN [--dir DIR] [--force]\n",
     "Writes what mail clients read to set themselves up: config-v1.1.xml (Thunderbird),\n"
     "autodiscover.xml (Outlook) and DOMAIN.mobileconfig (Apple), for POP3 and submission\n"
     "on the configured ports; then prints the DNS records DOMAIN needs: MX, SPF, DMARC,\n"
     "the SRV records of RFC 6186 and 8314, the autoconfig names when [web] listen is set,\n"
     "and DKIM. kotak-smtpd serves the same files at their well-known paths on [web] listen.",
     {NULL},
     {{"--dir DIR", "write the files into DIR (default: the current folder)"},
      {"--force", "replace files that exist (else nothing is written)"}}},
    {"check",
     "kotak check spf IP MAIL-FROM [HELO]\nkotak check dkim < MESSAGE\n"
     "kotak check dmarc IP MAIL-FROM [HELO] < MESSAGE\n",
     "What the MX's checks make of a sender, asking DNS as the daemon would.\n"
     "MAIL-FROM \"\" or \"<>\" is the null sender: then HELO is checked by SPF.",
     {"spf", "dkim", "dmarc"},
     {{NULL, NULL}}},
    {"watch", "kotak watch [--history N] [--explain]\n",
     "Every SMTP and POP3 session as it happens, passwords hidden ([web] listen on).",
     {NULL},
     {{"--history N", "start with the last N lines the daemons still hold"},
      {"--explain", "under each line, its RFC section or what its reply code means"}}},
    {"doctor", "kotak doctor [--domain DOMAIN]\n",
     "Checks what a new installation gets wrong and says how to mend each: DNS (MX, the\n"
     "host name's addresses and their PTR, SPF, DKIM, DMARC) against [dns] servers, the\n"
     "certificate, the listeners, the store's owner and modes, the daemons' user, the\n"
     "clock. One line per check: ok, warn or fail; under each warn or fail, the mend.\n"
     "Exit status 1 when a check failed, 0 otherwise (warnings alone too).",
     {NULL},
     {{"--domain DOMAIN", "check DNS for DOMAIN only (default: every domain of the store)"}}},
    {"run", "kotak run\n",
     "Both daemons in the foreground, for a first try; Ctrl-C stops both.",
     {NULL},
     {{NULL, NULL}}},
    {"help", "kotak help [COMMAND]\n", "This help, or one command's.", {NULL}, {{NULL, NULL}}},
};

static const struct help *find(const char *command)
{
    for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
        if (strcmp(helps[i].command, command) == 0)
            return &helps[i];
    return NULL;
}

/*
 * How far apart two words are: insertions, deletions, substitutions and
 * swaps of neighbours (the optimal string alignment distance). Words
 * longer than 32 octets are far from everything.
 */
static size_t distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 32 || m > 32)
        return (size_t)-1;
    size_t d[33][33];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

/* The known word nearest to word, when it is near enough to be meant: NULL otherwise. */
static const char *nearest(const char *word, const char *const *known, size_t n)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n && known[i] != NULL; i++) {
        size_t d = distance(word, known[i]);
        if (d < best_d) {
            best_d = d;
            best = known[i];
        }
    }
    /* Two edits for words of five or more letters, one below that: "lst" is
     * "list", but "x" is nothing. */
    size_t len = strlen(word);
    return best_d <= (len >= 5 ? 2 : 1) && best_d < len ? best : NULL;
}

static void die_unknown(const char *word, const char *guess, const char *see)
    __attribute__((noreturn));
static void die_unknown(const char *word, const char *guess, const char *see)
{
    char shown[64];
    size_t n = strnlen(word, sizeof(shown) - 4);
    for (size_t i = 0; i < n; i++) /* a word typed is shown, never interpreted */
        shown[i] = word[i] >= 0x20 && word[i] < 0x7f ? word[i] : '?';
    strcpy(shown + n, strlen(word) > n ? "..." : "");
    if (guess != NULL)
        ctl_die("unknown command '%s'; did you mean '%s'? (see '%s')", shown, guess, see);
    ctl_die("unknown command '%s'; see '%s'", shown, see);
}

void ctl_unknown_command(const char *word)
{
    const char *names[sizeof(helps) / sizeof(helps[0])];
    for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
        names[i] = helps[i].command;
    die_unknown(word, nearest(word, names, sizeof(names) / sizeof(names[0])), "kotak --help");
}

void ctl_check_verb(const struct ctl *c, const char *command)
{
    const struct help *h = find(command);
    if (h == NULL || c->argc < 1)
        return;
    size_t n = 0;
    while (n < sizeof(h->verbs) / sizeof(h->verbs[0]) && h->verbs[n] != NULL) {
        if (strcmp(c->argv[0], h->verbs[n]) == 0)
            return;
        n++;
    }
    if (n == 0)
        return;
    char see[64];
    snprintf(see, sizeof(see), "kotak help %s", command);
    die_unknown(c->argv[0], nearest(c->argv[0], h->verbs, n), see);
}

void ctl_help(const char *command)
{
    const struct help *h = find(command);
    if (h == NULL)
        ctl_unknown_command(command);
    fputs("usage: ", stdout);
    for (const char *p = h->forms; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        printf("%s%.*s\n", p == h->forms ? "" : "       ", (int)(nl - p), p);
        p = nl + 1;
    }
    printf("\n%s\n", h->about);
    if (h->options[0].flag != NULL) {
        printf("\noptions:\n");
        for (size_t i = 0; i < sizeof(h->options) / sizeof(h->options[0]); i++)
            if (h->options[i].flag != NULL)
                printf("  %-22s %s\n", h->options[i].flag, h->options[i].meaning);
    }
    printf("\nEvery command also takes -c FILE, the config (else $KOTAK_CONFIG, ./kotak.conf,\n"
           "/etc/kotak/kotak.conf). A mistake is one line on stderr and exit status 2.\n");
    exit(0);
}
