/*
 * doctor.c — `kotak doctor [--domain DOMAIN]`: what a new installation
 * gets wrong, each with how to mend it.
 *
 * DNS, asked through common/dns.c with [dns] servers as the daemons ask
 * it: each domain's MX names [server] hostname; the host name has
 * addresses and each address's PTR names the host again (forward-confirmed
 * reverse DNS, which many receivers ask of a sender); SPF is one record
 * that parses and passes for the host's addresses (mailauth/spf.c, the MX's
 * own check); DNS publishes the DKIM key kotak signs with (the record
 * `kotak dkim dns` prints, from ctl/dkim.c); a DMARC record that parses.
 * Then the certificate ([tls] cert, key: readable, a pair, naming the host,
 * not expired), the listeners (a connection and the greeting, a few
 * seconds at most), the store's owner and modes, the daemons found in /proc
 * with this config and the user each runs as, and the clock (adjtimex).
 *
 * Time is bounded: a DNS question by the resolver (DNS_TIMEOUT_MS, two
 * rounds), an SPF evaluation by SPF_TIMEOUT_MS (it may ask twenty
 * questions in a row), the host's addresses checked by ADDRS_CHECKED_MAX
 * (it may have 32), and all of DNS together by DNS_BUDGET_MS: when that
 * runs out, the question in flight is cancelled, its check says it timed
 * out, and one line names the domains left unchecked. A listener takes
 * PORT_TIMEOUT_MS to connect and as much for its greeting.
 *
 * Every check prints one line, "ok", "warn" or "fail" first, then what was
 * checked; a warn or fail has a second, indented line: how to mend it.
 * Exit status 1 when a check failed, else 0; 2 for a usage error or a
 * config that cannot be read. DNS is anyone's to write: every value that
 * came from it goes out through log_value, control characters escaped.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "addr.h"
#include "cert.h"
#include "ctl.h"
#include "dkim.h"
#include "dmarc.h"
#include "dns.h"
#include "log.h"
#include "psl.h"
#include "spf.h"
#include "tls.h"
#include "util.h"

static const char usage[] = "kotak doctor [--domain DOMAIN]";

#define DNS_TIMEOUT_MS 1500 /* c-ares doubles it for the second round: 4.5 s a question */
#define DNS_TRIES 2
#define PORT_TIMEOUT_MS 3000 /* connect, and then the greeting */
/* An SPF evaluation that takes longer points at a name that does not answer; RFC 7208 4.6.4
 * has receivers allow at least 20 s, but a doctor that waits that long per address says less. */
#define SPF_TIMEOUT_MS 10000
#define ADDRS_CHECKED_MAX 4 /* PTR and SPF, for the host's first addresses only */
#define DNS_BUDGET_MS 60000 /* every DNS check together */
#define LEFT_SHOWN 5        /* domains named when the budget ran out */
#define CERT_WARN_DAYS 14
#define SHOWN_MAX 600 /* a value from outside, escaped, as printed */
#define MEND_INDENT "     "

enum verdict { OK, WARN, FAIL };

struct doctor {
    struct conf conf;
    uv_loop_t loop;
    struct dns *dns; /* NULL when no resolver could be made */
    struct psl *psl; /* NULL without Debian's publicsuffix */
    unsigned fails, warns;
    const char *host;                             /* [server] hostname */
    struct dns_addr addrs[2 * DNS_ADDRS_MAX];     /* the host name's addresses */
    size_t n_addrs;
    uv_timer_t timer;      /* a wait's end: its own limit, or the budget's */
    bool rang;             /* the timer fired during this wait */
    uint64_t dns_deadline; /* uv_now() at which DNS_BUDGET_MS is spent */
    bool out_of_time;      /* it was: d->dns is freed, no DNS check runs any more */
};

/* --- output ----------------------------------------------------------------- */

static void line(struct doctor *d, enum verdict v, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void line(struct doctor *d, enum verdict v, const char *check, const char *fmt, ...)
{
    static const char *const words[] = {"ok", "warn", "fail"};
    if (v == FAIL)
        d->fails++;
    if (v == WARN)
        d->warns++;
    printf("%-4s %s ", words[v], check);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* The second line of a warn or fail: how to mend it. */
static void mend(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void mend(const char *fmt, ...)
{
    fputs(MEND_INDENT, stdout);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* A value from outside (DNS, a socket), escaped for a terminal: see log_value. */
static const char *shown(char out[SHOWN_MAX], const char *s, size_t len)
{
    return log_value(out, SHOWN_MAX, s, len);
}

static void addr_text(const struct dns_addr *a, char out[INET6_ADDRSTRLEN])
{
    if (inet_ntop(a->family, a->bytes, out, INET6_ADDRSTRLEN) == NULL)
        snprintf(out, INET6_ADDRSTRLEN, "?");
}

/* --- DNS, one question at a time ----------------------------------------------- */

enum wait_end { WAIT_DONE, WAIT_TIMED_OUT, WAIT_OUT_OF_TIME };

static void on_timer(uv_timer_t *t)
{
    struct doctor *d = t->data;
    d->rang = true;
}

/*
 * Runs the loop until *done, or until limit_ms have passed (0: no limit of
 * the wait's own), or until the DNS budget is spent, whichever comes
 * first. WAIT_OUT_OF_TIME also marks the doctor out of time; what was
 * asked is still out, and the caller cancels it (see out_of_time).
 */
static enum wait_end wait_for(struct doctor *d, const bool *done, uint64_t limit_ms)
{
    uv_update_time(&d->loop);
    uint64_t now = uv_now(&d->loop);
    uint64_t left = d->dns_deadline > now ? d->dns_deadline - now : 0;
    bool budget = limit_ms == 0 || left <= limit_ms;
    d->rang = false;
    uv_timer_start(&d->timer, on_timer, budget ? left : limit_ms, 0);
    while (!*done && !d->rang && uv_run(&d->loop, UV_RUN_ONCE) != 0)
        ;
    uv_timer_stop(&d->timer);
    if (*done)
        return WAIT_DONE;
    if (budget)
        d->out_of_time = true;
    return budget ? WAIT_OUT_OF_TIME : WAIT_TIMED_OUT;
}

/*
 * The budget is spent: the resolver goes, and with it every question still
 * out, each answered DNS_CANCELLED before dns_free returns, so no callback
 * is left to write into a check's answer once the check has returned.
 */
static void out_of_time(struct doctor *d)
{
    d->out_of_time = true;
    dns_free(&d->dns);
}

/* Waits for one DNS answer; when the budget runs out first, *done is set with DNS_CANCELLED. */
static void wait_answer(struct doctor *d, const bool *done)
{
    if (wait_for(d, done, 0) != WAIT_DONE)
        out_of_time(d);
}

struct mx_answer {
    bool done;
    enum dns_status status;
    struct dns_mx *mx;
    size_t n;
};

static void on_mx(void *ctx, enum dns_status status, const struct dns_mx *records, size_t n)
{
    struct mx_answer *a = ctx;
    a->status = status;
    a->n = n;
    if (n > 0) {
        a->mx = xcalloc(n, sizeof(*a->mx));
        memcpy(a->mx, records, n * sizeof(*records));
    }
    a->done = true;
}

struct addrs_answer {
    bool done;
    enum dns_status status;
    struct dns_addr addrs[2 * DNS_ADDRS_MAX];
    size_t n;
};

static void on_addrs(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n)
{
    struct addrs_answer *a = ctx;
    a->status = status;
    a->n = n < 2 * DNS_ADDRS_MAX ? n : 2 * DNS_ADDRS_MAX;
    if (a->n > 0)
        memcpy(a->addrs, addrs, a->n * sizeof(*addrs));
    a->done = true;
}

/* TXT or PTR answers: n strings, copied. */
struct text_answer {
    bool done;
    enum dns_status status;
    char **text;
    size_t *lens;
    size_t n;
};

static void keep_texts(struct text_answer *a, enum dns_status status, const char *const *texts,
                       const size_t *lens, size_t n)
{
    a->status = status;
    a->n = n;
    a->text = xcalloc(n ? n : 1, sizeof(*a->text));
    a->lens = xcalloc(n ? n : 1, sizeof(*a->lens));
    for (size_t i = 0; i < n; i++) {
        a->lens[i] = lens ? lens[i] : strlen(texts[i]);
        a->text[i] = xmalloc(a->lens[i] + 1);
        memcpy(a->text[i], texts[i], a->lens[i] + 1);
    }
    a->done = true;
}

static void on_txt(void *ctx, enum dns_status status, const char *const *records,
                   const size_t *lens, size_t n)
{
    keep_texts(ctx, status, records, lens, n);
}

static void on_ptr(void *ctx, enum dns_status status, const char *const *names, size_t n)
{
    keep_texts(ctx, status, names, NULL, n);
}

static void text_free(struct text_answer *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->text[i]);
    free(a->text);
    free(a->lens);
    a->text = NULL;
    a->n = 0;
}

static void ask_txt(struct doctor *d, const char *name, struct text_answer *a)
{
    *a = (struct text_answer){0};
    if (dns_txt(d->dns, name, on_txt, a) < 0)
        keep_texts(a, DNS_NXDOMAIN, NULL, NULL, 0); /* no valid name: nothing there */
    wait_answer(d, &a->done);
}

/* Why DNS gave nothing, as words after "DNS says". */
static const char *status_words(enum dns_status s)
{
    switch (s) {
    case DNS_NXDOMAIN:
        return "the name does not exist (NXDOMAIN)";
    case DNS_NODATA:
        return "no record of that type (NODATA)";
    case DNS_TEMPFAIL:
        return "nothing: the servers failed or did not answer in time";
    default:
        return dns_status_name(s);
    }
}

static void mend_tempfail(struct doctor *d)
{
    mend("ask again later; if it lasts, check [dns] servers (%s) and the domain's name servers",
         d->conf.dns_servers[0] ? d->conf.dns_servers : "/etc/resolv.conf");
}

/* The line of a check whose DNS question was still out when the budget ran out. */
static void line_out_of_time(struct doctor *d, const char *check, const char *what)
{
    line(d, WARN, check, "%s: timed out: kotak doctor's %d s for DNS ran out before the answer",
         what, DNS_BUDGET_MS / 1000);
    mend("check one domain at a time (kotak doctor --domain DOMAIN); if DNS stays this slow, "
         "check [dns] servers (%s)",
         d->conf.dns_servers[0] ? d->conf.dns_servers : "/etc/resolv.conf");
}

/* --- the host name: addresses, PTR ------------------------------------------------ */

static void check_host(struct doctor *d)
{
    char s[SHOWN_MAX];
    struct addrs_answer a = {0};
    if (dns_addrs(d->dns, d->host, DNS_V4 | DNS_V6, on_addrs, &a) < 0) {
        line(d, FAIL, "host", "%s: [server] hostname is no domain name", shown(s, d->host, strlen(d->host)));
        mend("set [server] hostname to this server's name in DNS, as mail.example.org");
        return;
    }
    wait_answer(d, &a.done);
    if (a.status == DNS_CANCELLED) {
        line_out_of_time(d, "host", d->host);
        return;
    }
    if (a.status != DNS_OK) {
        line(d, FAIL, "host", "%s has no address: DNS says %s", d->host, status_words(a.status));
        if (a.status == DNS_TEMPFAIL)
            mend_tempfail(d);
        else
            mend("publish: %s. A <this server's IPv4 address> (and AAAA for its IPv6 address)",
                 d->host);
        return;
    }
    memcpy(d->addrs, a.addrs, a.n * sizeof(*a.addrs)); /* a.n >= 1: DNS_OK */
    d->n_addrs = a.n;
    char list[2 * DNS_ADDRS_MAX * (INET6_ADDRSTRLEN + 1)] = "";
    size_t used = 0;
    for (size_t i = 0; i < a.n; i++) {
        char t[INET6_ADDRSTRLEN];
        addr_text(&a.addrs[i], t);
        /* sized for every address: cannot be cut short */
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? " " : "", t);
    }
    line(d, OK, "host", "%s has addresses %s", d->host, list);
    if (d->n_addrs > ADDRS_CHECKED_MAX)
        printf(MEND_INDENT "(PTR and SPF are checked for the first %d; and %zu more not "
               "checked)\n", ADDRS_CHECKED_MAX, d->n_addrs - ADDRS_CHECKED_MAX);

    for (size_t i = 0; i < d->n_addrs && i < ADDRS_CHECKED_MAX && !d->out_of_time; i++) {
        char t[INET6_ADDRSTRLEN];
        addr_text(&d->addrs[i], t);
        struct text_answer p = {0};
        if (dns_ptr(d->dns, &d->addrs[i], on_ptr, &p) < 0)
            continue;
        wait_answer(d, &p.done);
        if (p.status == DNS_CANCELLED) {
            line_out_of_time(d, "ptr", t);
            text_free(&p);
            break;
        }
        bool named = false;
        for (size_t k = 0; k < p.n; k++)
            named = named || strcasecmp(p.text[k], d->host) == 0;
        if (named) {
            line(d, OK, "ptr", "%s names %s, whose addresses include it (forward-confirmed)", t,
                 d->host);
        } else if (p.status == DNS_OK) {
            line(d, FAIL, "ptr", "%s names %s, not %s", t, shown(s, p.text[0], p.lens[0]),
                 d->host);
            mend("ask whoever runs the address (the hosting provider) to set its PTR to %s; "
                 "many receivers refuse mail from an address whose PTR does not name the host",
                 d->host);
        } else {
            line(d, FAIL, "ptr", "%s has no PTR record: DNS says %s", t, status_words(p.status));
            if (p.status == DNS_TEMPFAIL)
                mend_tempfail(d);
            else
                mend("ask whoever runs the address (the hosting provider) to set its PTR to %s",
                     d->host);
        }
        text_free(&p);
    }
}

/* --- a domain: MX, SPF, DKIM, DMARC --------------------------------------------------- */

/* Returns whether the domain's MX names the host. */
static bool check_mx(struct doctor *d, const char *domain)
{
    char s[SHOWN_MAX];
    struct mx_answer a = {0};
    if (dns_mx(d->dns, domain, on_mx, &a) < 0) {
        line(d, FAIL, "mx", "%s: no domain name DNS can be asked for", domain);
        mend("remove it ('kotak domain del %s') and add its ASCII (xn--) form", domain);
        return false;
    }
    wait_answer(d, &a.done);
    if (a.status == DNS_CANCELLED) {
        line_out_of_time(d, "mx", domain);
        return false;
    }
    bool ours = false;
    for (size_t i = 0; i < a.n; i++)
        ours = ours || strcasecmp(a.mx[i].host, d->host) == 0;
    if (ours) {
        line(d, OK, "mx", "%s: MX %u %s", domain, a.mx[0].preference,
             shown(s, a.mx[0].host, strlen(a.mx[0].host)));
        if (strcasecmp(a.mx[0].host, d->host) != 0)
            printf(MEND_INDENT "(%s is a less preferred MX: mail goes to %s first)\n", d->host,
                   shown(s, a.mx[0].host, strlen(a.mx[0].host)));
    } else if (a.status == DNS_OK && a.n == 1 && strcmp(a.mx[0].host, ".") == 0) {
        line(d, FAIL, "mx", "%s: a null MX (RFC 7505): the domain says it takes no mail", domain);
        mend("replace it: %s. MX 10 %s.", domain, d->host);
    } else if (a.status == DNS_OK) {
        line(d, FAIL, "mx", "%s: MX points at %s, not at %s", domain,
             shown(s, a.mx[0].host, strlen(a.mx[0].host)), d->host);
        mend("publish: %s. MX 10 %s. (and remove the other MX records, or set [server] "
             "hostname to the name the MX gives)", domain, d->host);
    } else {
        line(d, FAIL, "mx", "%s has no MX record: DNS says %s", domain, status_words(a.status));
        if (a.status == DNS_TEMPFAIL)
            mend_tempfail(d);
        else
            mend("publish: %s. MX 10 %s.", domain, d->host);
    }
    free(a.mx);
    return ours;
}

struct spf_answer {
    bool done;
    struct spf_outcome o;
};

static void on_spf(void *ctx, const struct spf_outcome *o)
{
    struct spf_answer *a = ctx;
    a->o = *o;
    a->done = true;
}

static void check_spf(struct doctor *d, const char *domain, bool mx_ours)
{
    char s[SHOWN_MAX], suggest[DNS_NAME_MAX + 32];
    if (mx_ours)
        snprintf(suggest, sizeof(suggest), "v=spf1 mx -all");
    else
        snprintf(suggest, sizeof(suggest), "v=spf1 a:%s -all", d->host);
    struct text_answer t;
    ask_txt(d, domain, &t);
    size_t n_spf = 0, which = 0;
    for (size_t i = 0; i < t.n; i++)
        if (spf_record_is_spf(t.text[i], t.lens[i])) {
            n_spf++;
            which = i;
        }
    if (t.status == DNS_CANCELLED) {
        line_out_of_time(d, "spf", domain);
    } else if (t.status == DNS_TEMPFAIL) {
        line(d, FAIL, "spf", "%s: DNS says %s", domain, status_words(t.status));
        mend_tempfail(d);
    } else if (n_spf == 0) {
        line(d, FAIL, "spf", "%s has no SPF record", domain);
        mend("publish: %s. TXT \"%s\"", domain, suggest);
    } else if (n_spf > 1) {
        char all[4 * SHOWN_MAX] = "";
        for (size_t i = 0; i < t.n; i++) {
            if (!spf_record_is_spf(t.text[i], t.lens[i]))
                continue;
            size_t used = strlen(all);
            snprintf(all + used, sizeof(all) - used, "%s%s", used ? ", " : "",
                     shown(s, t.text[i], t.lens[i]));
        }
        line(d, FAIL, "spf", "%s has %zu SPF records, and receivers then find a permerror (RFC "
             "7208 4.5): %s", domain, n_spf, all);
        mend("keep one: merge them into one TXT record, such as \"%s\"", suggest);
    } else {
        struct spf_record_info info;
        const char *why = "";
        if (spf_record_check(t.text[which], t.lens[which], &info, &why) < 0) {
            line(d, FAIL, "spf", "%s: the record %s does not parse: %s", domain,
                 shown(s, t.text[which], t.lens[which]), why);
            mend("replace it: %s. TXT \"%s\"", domain, suggest);
        } else if (d->n_addrs == 0) {
            line(d, WARN, "spf", "%s: %s parses; not checked against the host's addresses "
                 "(it has none)", domain, shown(s, t.text[which], t.lens[which]));
            mend("publish the host's addresses first (see the host line)");
        } else {
            char sender[DNS_NAME_MAX + 16];
            snprintf(sender, sizeof(sender), "postmaster@%s", domain);
            size_t n = d->n_addrs < ADDRS_CHECKED_MAX ? d->n_addrs : ADDRS_CHECKED_MAX;
            for (size_t i = 0; i < n && !d->out_of_time; i++) {
                char ip[INET6_ADDRSTRLEN];
                addr_text(&d->addrs[i], ip);
                struct spf_answer a = {0};
                struct spf_check *c = spf_check_start(d->dns, ip, sender, d->host, on_spf, &a);
                if (c == NULL)
                    continue;
                enum wait_end end = wait_for(d, &a.done, SPF_TIMEOUT_MS);
                if (end != WAIT_DONE) {
                    spf_check_cancel(&c); /* cb has not run: the check is still there */
                    if (end == WAIT_OUT_OF_TIME) {
                        out_of_time(d);
                        char what[DNS_NAME_MAX + INET6_ADDRSTRLEN + 16];
                        snprintf(what, sizeof(what), "%s, for %s", domain, ip);
                        line_out_of_time(d, "spf", what);
                        break;
                    }
                    line(d, WARN, "spf", "%s: %s for %s timed out after %d s", domain,
                         shown(s, t.text[which], t.lens[which]), ip, SPF_TIMEOUT_MS / 1000);
                    mend("a name the record leads to answers slowly or not at all: check each "
                         "include:, a:, mx:, exists: and redirect= with dig; receivers give up "
                         "on a slow record (temperror), and then may defer or refuse the mail");
                    continue;
                }
                if (a.o.result == SPF_PASS) {
                    line(d, OK, "spf", "%s: %s passes for %s", domain,
                         shown(s, t.text[which], t.lens[which]), ip);
                } else {
                    char why_shown[SHOWN_MAX];
                    line(d, FAIL, "spf", "%s: %s gives %s for %s (%s)", domain,
                         shown(s, t.text[which], t.lens[which]),
                         spf_result_name(a.o.result), ip,
                         shown(why_shown, a.o.why, strlen(a.o.why)));
                    mend("add a:%s (or %s:%s) to the record, before its all", d->host,
                         d->addrs[i].family == AF_INET ? "ip4" : "ip6", ip);
                }
            }
        }
    }
    text_free(&t);
}

/* The value of tag name in a tag list (RFC 6376 3.2), whitespace taken out; 0 when absent. */
static int tag_value(const char *list, size_t len, const char *name, char *out, size_t out_size)
{
    struct dkim_tag tags[DKIM_TAGS_MAX];
    size_t n;
    if (dkim_tags_parse(list, len, tags, DKIM_TAGS_MAX, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (tags[i].name_len != strlen(name) || memcmp(tags[i].name, name, tags[i].name_len) != 0)
            continue;
        size_t o = 0;
        for (size_t k = 0; k < tags[i].value_len && o + 1 < out_size; k++)
            if (!isspace((unsigned char)tags[i].value[k]))
                out[o++] = tags[i].value[k];
        out[o] = '\0';
        return 1;
    }
    return 0;
}

/*
 * The key of a DKIM record (its p=, whitespace taken out) into out: 1, 0
 * when it has no p= (or a tag list that does not parse), -E2BIG when the
 * key is longer than out can hold: then it is no key kotak signs with.
 */
static int record_key(const char *rec, size_t len, char *out, size_t size)
{
    if (strlen(rec) != len) /* a NUL inside: malformed */
        return 0;
    int rc = tag_value(rec, len, "p", out, size);
    if (rc != 1)
        return 0;
    if (strlen(out) + 1 >= size)
        return -E2BIG; /* cut short: never compare a part */
    return 1;
}

#define DKIM_KEY_TEXT_MAX 8192 /* base64 of an RSA-4096 key is under 800 octets */

static void check_dkim(struct doctor *d, const char *domain)
{
    char s[SHOWN_MAX], selector[DNS_NAME_MAX + 1], err[512], *record = NULL;
    int rc = ctl_dkim_expected(&d->conf, domain, selector, &record, err, sizeof(err));
    if (rc == 0) {
        line(d, FAIL, "dkim", "%s: no DKIM key: its mail goes out unsigned", domain);
        mend("kotak dkim keygen %s, then publish the record it prints", domain);
        return;
    }
    if (rc < 0) {
        line(d, FAIL, "dkim", "%s: %s", domain, err);
        mend("move the file away, run 'kotak dkim keygen %s --selector NEW' and publish the "
             "record it prints", domain);
        return;
    }
    /* This domain's own: each domain's check starts from nothing (a key left over from the
     * domain before must never stand in for one that could not be read). */
    char *want = xcalloc(1, DKIM_KEY_TEXT_MAX), *got = xcalloc(1, DKIM_KEY_TEXT_MAX);
    char name[2 * DNS_NAME_MAX + 16];
    snprintf(name, sizeof(name), "%s._domainkey.%s", selector, domain);
    if (record_key(record, strlen(record), want, DKIM_KEY_TEXT_MAX) != 1 || want[0] == '\0') {
        line(d, FAIL, "dkim", "%s: the key on disk gives no public key to publish", domain);
        mend("move its file away from %s/dkim, run 'kotak dkim keygen %s --selector NEW' and "
             "publish the record it prints", d->conf.data_dir, domain);
        goto out;
    }
    struct text_answer t;
    ask_txt(d, name, &t);
    size_t n_keys = 0, which = 0;
    for (size_t i = 0; i < t.n; i++) {
        if (record_key(t.text[i], t.lens[i], got, DKIM_KEY_TEXT_MAX) != 0) {
            n_keys++;
            which = i;
        }
    }
    int got_rc = 0;
    got[0] = '\0';
    if (n_keys == 1)
        got_rc = record_key(t.text[which], t.lens[which], got, DKIM_KEY_TEXT_MAX);
    if (t.status == DNS_CANCELLED) {
        line_out_of_time(d, "dkim", name);
    } else if (t.status == DNS_TEMPFAIL) {
        line(d, FAIL, "dkim", "%s: DNS says %s", name, status_words(t.status));
        mend_tempfail(d);
    } else if (n_keys == 0) {
        line(d, FAIL, "dkim", "%s: no DKIM record (selector %s): receivers cannot check the "
             "signatures", name, selector);
        ctl_dkim_print_record(stdout, MEND_INDENT "publish: ", selector, domain, record);
    } else if (n_keys > 1) {
        line(d, FAIL, "dkim", "%s: %zu DKIM records; receivers take any one", name, n_keys);
        ctl_dkim_print_record(stdout, MEND_INDENT "keep only: ", selector, domain, record);
    } else if (got_rc == 1 && strcmp(got, want) == 0) {
        line(d, OK, "dkim", "%s publishes the key of %s/dkim", name, d->conf.data_dir);
    } else if (got_rc == 1 && got[0] == '\0') {
        line(d, FAIL, "dkim", "%s: the key is revoked (p= is empty)", name);
        ctl_dkim_print_record(stdout, MEND_INDENT "publish: ", selector, domain, record);
    } else {
        line(d, FAIL, "dkim", "%s publishes another key than kotak signs with: %s", name,
             shown(s, t.text[which], t.lens[which]));
        ctl_dkim_print_record(stdout, MEND_INDENT "publish instead: ", selector, domain, record);
    }
    text_free(&t);
out:
    free(want);
    free(got);
    free(record);
}

/* Looks up _dmarc.name: 1 with one record's verdict, 0 none, -1 several; *t keeps the answer. */
static void check_dmarc(struct doctor *d, const char *domain)
{
    char s[SHOWN_MAX], name[DNS_NAME_MAX + 16], org[DNS_NAME_MAX + 1] = "";
    snprintf(name, sizeof(name), "_dmarc.%s", domain);
    struct text_answer t;
    ask_txt(d, name, &t);
    if (d->psl != NULL)
        psl_org_domain(d->psl, domain, org);
    size_t n_dmarc = 0;
    for (size_t i = 0; i < t.n; i++) {
        struct dmarc_record r;
        n_dmarc += dmarc_record_parse(t.text[i], t.lens[i], &r) != 0;
    }
    if (n_dmarc == 0 && t.status != DNS_TEMPFAIL && t.status != DNS_CANCELLED && org[0] != '\0' &&
        strcmp(org, domain) != 0) {
        /* RFC 7489 6.6.3: the Organizational Domain's record stands for it. */
        text_free(&t);
        snprintf(name, sizeof(name), "_dmarc.%s", org);
        ask_txt(d, name, &t);
        for (size_t i = 0; i < t.n; i++) {
            struct dmarc_record r;
            n_dmarc += dmarc_record_parse(t.text[i], t.lens[i], &r) != 0;
        }
    }
    if (t.status == DNS_CANCELLED) {
        line_out_of_time(d, "dmarc", name);
    } else if (t.status == DNS_TEMPFAIL) {
        line(d, FAIL, "dmarc", "%s: DNS says %s", name, status_words(t.status));
        mend_tempfail(d);
    } else if (n_dmarc == 0) {
        line(d, FAIL, "dmarc", "%s has no DMARC record", domain);
        mend("publish: _dmarc.%s. TXT \"v=DMARC1; p=quarantine\" (p=none to watch first; "
             "p=reject once all its mail is signed)", domain);
    } else if (n_dmarc > 1) {
        line(d, FAIL, "dmarc", "%s: %zu DMARC records: receivers then apply none (RFC 7489 "
             "6.6.3)", name, n_dmarc);
        mend("keep one");
    } else {
        for (size_t i = 0; i < t.n; i++) {
            struct dmarc_record r;
            int rc = dmarc_record_parse(t.text[i], t.lens[i], &r);
            if (rc == 1) {
                line(d, OK, "dmarc", "%s: %s (p=%s)", name, shown(s, t.text[i], t.lens[i]),
                     dmarc_policy_name(r.p));
            } else if (rc < 0) {
                line(d, FAIL, "dmarc", "%s: the record %s does not parse: it needs a valid p=",
                     name, shown(s, t.text[i], t.lens[i]));
                mend("replace it: %s. TXT \"v=DMARC1; p=quarantine\"", name);
            }
        }
    }
    text_free(&t);
}

/* --- the certificate -------------------------------------------------------------------- */

static void check_cert(struct doctor *d)
{
    char *cert = conf_path(&d->conf, d->conf.tls_cert), *key = conf_path(&d->conf, d->conf.tls_key);
    char err[512];
    struct tls_server *srv = NULL;
    if (tls_server_new(cert, key, &srv, err, sizeof(err)) < 0) {
        line(d, FAIL, "cert", "%s", err);
        mend("set [tls] cert and key to a certificate chain and its own key (as PEM); "
             "'kotak init --keep-config' makes a self-signed pair when both are missing");
    } else {
        line(d, OK, "cert", "%s and %s are a pair", cert, key);
    }
    tls_server_free(&srv);

    struct cert_facts f;
    if (cert_file_facts(cert, d->host, &f, err, sizeof(err)) == 0) {
        time_t now = time(NULL);
        char until[32];
        struct tm tm;
        strftime(until, sizeof(until), "%Y-%m-%d %H:%M UTC", gmtime_r(&f.not_after, &tm));
        long days = (long)((f.not_after - now) / 86400);
        if (f.not_after <= now) {
            line(d, FAIL, "cert", "%s expired on %s", cert, until);
            mend("renew it (certbot renew, or your CA), then 'systemctl reload kotak-smtpd "
                 "kotak-pop3d' (SIGHUP)");
        } else if (f.not_before > now) {
            line(d, FAIL, "cert", "%s is not valid yet (the clock, or the certificate?)", cert);
            mend("check the clock (see the time line) or install a certificate valid now");
        } else if (days < CERT_WARN_DAYS) {
            line(d, WARN, "cert", "%s expires in %ld days, on %s", cert, days, until);
            mend("renew it now (certbot renew, or your CA), then reload the daemons (SIGHUP)");
        } else {
            line(d, OK, "cert", "%s is valid until %s (%ld days)", cert, until, days);
        }
        if (f.names_host) {
            line(d, OK, "cert", "%s names %s", cert, d->host);
        } else {
            line(d, FAIL, "cert", "%s names %s, not %s: clients refuse it", cert, f.names, d->host);
            mend("get a certificate for %s (certbot certonly -d %s), or set [server] hostname "
                 "to a name it has", d->host, d->host);
        }
    } else {
        line(d, FAIL, "cert", "%s: %s", cert, err);
        mend("set [tls] cert to a PEM certificate chain, the server's certificate first");
    }
    free(cert);
    free(key);
}

/* --- the listeners -------------------------------------------------------------------- */

/* Connects to host:port within PORT_TIMEOUT_MS: a socket, or -errno. */
static int connect_to(const char *host, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        len = sizeof(*in4);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        len = sizeof(*in6);
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int rc = poll(&p, 1, PORT_TIMEOUT_MS);
    int e = ETIMEDOUT;
    socklen_t elen = sizeof(e);
    if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) == 0 && e == 0)
        return fd;
    close(fd);
    return -(rc == 1 ? e : ETIMEDOUT);
}

/* Reads the first line the server sends, within PORT_TIMEOUT_MS: its length, or -errno. */
static ssize_t read_greeting(int fd, char *buf, size_t size)
{
    size_t len = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (len + 1 < size && memchr(buf, '\n', len) == NULL) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (spent >= PORT_TIMEOUT_MS || poll(&p, 1, (int)(PORT_TIMEOUT_MS - spent)) != 1)
            return len > 0 ? (ssize_t)len : -ETIMEDOUT;
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return len > 0 ? (ssize_t)len : (n == 0 ? -ECONNRESET : -errno);
        len += (size_t)n;
    }
    char *nl = memchr(buf, '\n', len);
    if (nl != NULL)
        len = (size_t)(nl - buf);
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    return (ssize_t)len;
}

static bool loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
}

static void check_listener(struct doctor *d, const char *section, const char *daemon,
                           const struct conf_endpoint *ep, const char *greeting)
{
    const char *host = ep->host;
    if (strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    char where[CONF_HOST_MAX + 16], s[SHOWN_MAX];
    snprintf(where, sizeof(where), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, ep->port);
    int fd = connect_to(host, ep->port);
    if (fd < 0) {
        line(d, FAIL, "port", "[%s] %s: not listening (%s)", section, where, strerror(-fd));
        mend("start %s (systemctl start %s, or 'kotak run'); its log says why it stopped",
             daemon, daemon);
        return;
    }
    if (greeting == NULL) { /* TLS from the first octet, or HTTP: the connection is the answer */
        line(d, OK, "port", "[%s] %s accepts connections", section, where);
        close(fd);
        return;
    }
    char buf[512];
    ssize_t n = read_greeting(fd, buf, sizeof(buf));
    if (n >= 0 && (size_t)n >= strlen(greeting) && memcmp(buf, greeting, strlen(greeting)) == 0) {
        line(d, OK, "port", "[%s] %s answers %s", section, where, shown(s, buf, (size_t)n));
        static const char quit[] = "QUIT\r\n";
        /* MSG_NOSIGNAL: a listener that sent its line and reset makes this EPIPE, which is
         * no reason to die of SIGPIPE (main ignores it too: this is the belt to its braces). */
        if (send(fd, quit, sizeof(quit) - 1, MSG_NOSIGNAL) < 0) {
            /* the greeting was the point; a failed goodbye changes nothing */
        }
    } else if (n < 0) {
        line(d, FAIL, "port", "[%s] %s: no greeting within %d s (%s)", section, where,
             PORT_TIMEOUT_MS / 1000, strerror((int)-n));
        mend("see %s's log; another program may hold the port", daemon);
    } else {
        line(d, FAIL, "port", "[%s] %s answers %s, not %s...", section, where,
             shown(s, buf, (size_t)n), greeting);
        mend("another program holds the port: stop it, or move [%s] listen", section);
    }
    close(fd);
}

static void check_listeners(struct doctor *d)
{
    static const struct {
        enum conf_listener_kind kind;
        const char *daemon, *greeting;
    } kinds[] = {
        {CONF_SMTP, "kotak-smtpd", "220"},      {CONF_SUBMISSION, "kotak-smtpd", "220"},
        {CONF_SUBMISSIONS, "kotak-smtpd", NULL}, {CONF_POP3, "kotak-pop3d", "+OK"},
        {CONF_POP3S, "kotak-pop3d", NULL},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        const struct conf_listener *l = &d->conf.listeners[kinds[i].kind];
        for (size_t k = 0; k < l->n; k++)
            check_listener(d, conf_listener_name(kinds[i].kind), kinds[i].daemon, &l->ep[k],
                           kinds[i].greeting);
    }
    for (size_t k = 0; k < d->conf.web_listen.n; k++)
        check_listener(d, "web", "kotak-smtpd", &d->conf.web_listen.ep[k], NULL);

    /* The MX on loopback only, while the host name has an address others can reach. */
    const struct conf_listener *mx = &d->conf.listeners[CONF_SMTP];
    bool all_loopback = mx->n > 0, public_addr = false;
    for (size_t k = 0; k < mx->n; k++)
        all_loopback = all_loopback && loopback(mx->ep[k].host);
    for (size_t i = 0; i < d->n_addrs; i++) {
        char t[INET6_ADDRSTRLEN];
        addr_text(&d->addrs[i], t);
        public_addr = public_addr || !loopback(t);
    }
    if (all_loopback && public_addr) {
        line(d, WARN, "port", "[smtp] listens on loopback only: other servers cannot deliver "
             "to %s", d->host);
        mend("set [smtp] listen = 0.0.0.0:25, [::]:25 (and the other listeners likewise)");
    }
    if (mx->n > 0 && mx->ep[0].port != 25 && public_addr) {
        line(d, WARN, "port", "[smtp] listens on port %u: other servers deliver to port 25",
             mx->ep[0].port);
        mend("set [smtp] listen to port 25 (kotak-smtpd started as root binds it, then drops "
             "to [server] user)");
    }
}

/* --- the store's owner and modes ------------------------------------------------------ */

/*
 * A file's owner and mode as found before the store was opened: opening it
 * takes group and others' rights away (store.c's close_up), and the doctor
 * should say what it found, not what it left.
 */
struct snap {
    int err; /* 0, or lstat's errno */
    struct stat st;
};

static void snap_take(struct snap *sn, const char *path)
{
    sn->err = lstat(path, &sn->st) == 0 ? 0 : errno;
}

/* Checks path's owner (when pw) and mode; dir: a folder. Absent and optional: nothing. */
static void check_mode(struct doctor *d, const char *path, bool dir, bool optional,
                       const struct passwd *pw, const struct snap *sn)
{
    struct snap now;
    if (sn == NULL) {
        snap_take(&now, path);
        sn = &now;
    }
    const struct stat st = sn->st;
    if (sn->err != 0) {
        if (sn->err == ENOENT && optional)
            return;
        line(d, sn->err == EACCES ? WARN : FAIL, "perm", "%s: %s", path, strerror(sn->err));
        mend(sn->err == EACCES ? "run kotak doctor as root to see it" : "run 'kotak init "
             "--keep-config' to make what is missing");
        return;
    }
    if (dir != S_ISDIR(st.st_mode) || (!dir && !S_ISREG(st.st_mode))) {
        line(d, FAIL, "perm", "%s is no %s", path, dir ? "folder" : "regular file");
        mend("move it away, then run 'kotak init --keep-config'");
        return;
    }
    unsigned mode = st.st_mode & 07777;
    bool bad = false;
    if (pw != NULL && st.st_uid != pw->pw_uid) {
        struct passwd *owner = getpwuid(st.st_uid);
        line(d, FAIL, "perm", "%s belongs to %s, not to %s ([server] user)", path,
             owner ? owner->pw_name : "an unknown user", pw->pw_name);
        mend("chown %s%s: %s", dir ? "-R " : "", pw->pw_name, path);
        bad = true;
    }
    if (mode & 0007) {
        line(d, FAIL, "perm", "%s has mode %04o: every user of this machine may %s it", path,
             mode, dir ? "look into" : "read");
        mend("chmod %s %s", dir ? "700" : "600", path);
        bad = true;
    } else if (mode & (dir ? 0022 : 0137)) {
        line(d, WARN, "perm", "%s has mode %04o: more than %s", path, mode, dir ? "0750" : "0640");
        mend("chmod %s %s", dir ? "700" : "600", path);
        bad = true;
    }
    if (!bad)
        line(d, OK, "perm", "%s: mode %04o%s%s", path, mode, pw ? ", owner " : "",
             pw ? pw->pw_name : "");
}

/* The store's files, as snap_store found them, in this order. */
enum { SNAP_DATA, SNAP_DB, SNAP_WAL, SNAP_SHM, SNAP_COUNT };
static const char *const snap_suffix[SNAP_COUNT] = {"", "", "-wal", "-shm"};

static char *snap_path(const struct doctor *d, int which)
{
    if (which == SNAP_DATA)
        return conf_path(&d->conf, d->conf.data_dir);
    char *db = conf_store_path(&d->conf);
    size_t n = strlen(db) + 8;
    char *path = xmalloc(n);
    snprintf(path, n, "%s%s", db, snap_suffix[which]);
    free(db);
    return path;
}

static void snap_store(const struct doctor *d, struct snap sn[SNAP_COUNT])
{
    for (int i = 0; i < SNAP_COUNT; i++) {
        char *path = snap_path(d, i);
        snap_take(&sn[i], path);
        free(path);
    }
}

static void check_store_files(struct doctor *d, const struct snap sn[SNAP_COUNT], char **domains,
                              size_t n_domains)
{
    const struct passwd *pw = NULL;
    if (d->conf.run_user[0] != '\0') {
        pw = getpwnam(d->conf.run_user);
        if (pw == NULL) {
            line(d, FAIL, "perm", "no user %s ([server] user) on this machine", d->conf.run_user);
            mend("create it (adduser --system --group %s), or run 'kotak init' as root",
                 d->conf.run_user);
        }
    }
    for (int i = 0; i < SNAP_COUNT; i++) {
        char *path = snap_path(d, i);
        check_mode(d, path, i == SNAP_DATA, i == SNAP_WAL || i == SNAP_SHM, pw, &sn[i]);
        free(path);
    }
    char *key = conf_path(&d->conf, d->conf.tls_key);
    check_mode(d, key, false, false, NULL, NULL); /* read as root, before the daemon drops to pw */
    /* The DKIM keys are read as [server] user, when mail is signed. */
    char *data = conf_path(&d->conf, d->conf.data_dir);
    size_t kn = strlen(data) + 8;
    char *kdir = xmalloc(kn);
    snprintf(kdir, kn, "%s/dkim", data);
    check_mode(d, kdir, true, true, pw, NULL);
    for (size_t i = 0; i < n_domains; i++) {
        char selector[DNS_NAME_MAX + 1], *record, err[512];
        if (ctl_dkim_expected(&d->conf, domains[i], selector, &record, err, sizeof(err)) != 1)
            continue;
        free(record);
        size_t pn = strlen(kdir) + strlen(selector) + strlen(domains[i]) + 32;
        char *path = xmalloc(pn);
        snprintf(path, pn, "%s/%s._domainkey.%s.pem", kdir, selector, domains[i]);
        check_mode(d, path, false, false, pw, NULL);
        free(path);
    }
    free(kdir);
    free(key);
    free(data);
}

/* --- the daemons ------------------------------------------------------------------------ */

/* Reads a small /proc file whole: its length, or -1. */
static ssize_t read_proc(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    for (ssize_t n; len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) > 0;)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/*
 * Whether process pid was started with the config file conf_st: its -c
 * (relative to its working folder), else $KOTAK_CONFIG, else ./kotak.conf,
 * else /etc/kotak/kotak.conf, as conf_locate picks.
 */
static bool runs_with(const char *pid, const struct stat *conf_st)
{
    char path[300], cmd[4096], cwd[4096] = "", file[8192] = "";
    snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
    ssize_t n = read_proc(path, cmd, sizeof(cmd));
    if (n <= 0)
        return false;
    snprintf(path, sizeof(path), "/proc/%s/cwd", pid);
    ssize_t cn = readlink(path, cwd, sizeof(cwd) - 1);
    cwd[cn > 0 ? cn : 0] = '\0';
    const char *given = NULL;
    for (const char *a = cmd; a < cmd + n; a += strlen(a) + 1) {
        const char *next = a + strlen(a) + 1;
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && next < cmd + n)
            given = next;
        else if (strncmp(a, "--config=", 9) == 0)
            given = a + 9;
    }
    if (given == NULL) {
        static char env[65536];
        snprintf(path, sizeof(path), "/proc/%s/environ", pid);
        ssize_t en = read_proc(path, env, sizeof(env));
        for (const char *e = env; en > 0 && e < env + en; e += strlen(e) + 1)
            if (strncmp(e, "KOTAK_CONFIG=", 13) == 0 && e[13] != '\0')
                given = e + 13;
    }
    struct stat st;
    if (given == NULL) {
        snprintf(file, sizeof(file), "%s/kotak.conf", cwd);
        if (cwd[0] == '\0' || stat(file, &st) != 0)
            snprintf(file, sizeof(file), "/etc/kotak/kotak.conf");
    } else if (given[0] == '/' || cwd[0] == '\0') {
        snprintf(file, sizeof(file), "%s", given);
    } else {
        snprintf(file, sizeof(file), "%s/%s", cwd, given);
    }
    return stat(file, &st) == 0 && st.st_dev == conf_st->st_dev && st.st_ino == conf_st->st_ino;
}

static void check_daemons(struct doctor *d)
{
    static const char *const names[] = {"kotak-smtpd", "kotak-pop3d"};
    struct stat conf_st;
    if (d->conf.path == NULL || stat(d->conf.path, &conf_st) != 0) {
        line(d, WARN, "daemon", "cannot tell which daemons run with this config");
        mend("give the config with -c FILE");
        return;
    }
    const struct passwd *pw = d->conf.run_user[0] ? getpwnam(d->conf.run_user) : NULL;
    for (size_t k = 0; k < 2; k++) {
        DIR *proc = opendir("/proc");
        if (proc == NULL) {
            line(d, WARN, "daemon", "cannot read /proc: %s", strerror(errno));
            mend("run kotak doctor where /proc is mounted");
            return;
        }
        bool found = false;
        for (struct dirent *e; (e = readdir(proc)) != NULL;) {
            if (strspn(e->d_name, "0123456789") != strlen(e->d_name))
                continue;
            char path[300], comm[64], status[4096];
            snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
            if (read_proc(path, comm, sizeof(comm)) <= 0)
                continue;
            comm[strcspn(comm, "\n")] = '\0';
            if (strcmp(comm, names[k]) != 0 || !runs_with(e->d_name, &conf_st))
                continue;
            snprintf(path, sizeof(path), "/proc/%s/status", e->d_name);
            if (read_proc(path, status, sizeof(status)) <= 0)
                continue;
            const char *u = strstr(status, "\nUid:");
            unsigned long ruid = 0, euid = 0;
            if (u == NULL || sscanf(u + 5, "%lu %lu", &ruid, &euid) != 2)
                continue;
            found = true;
            struct passwd *as = getpwuid((uid_t)euid);
            char who[64];
            snprintf(who, sizeof(who), "%s", as ? as->pw_name : "");
            if (who[0] == '\0')
                snprintf(who, sizeof(who), "uid %lu", euid);
            if (pw != NULL && euid != pw->pw_uid) {
                line(d, FAIL, "daemon", "%s (pid %s) runs as %s, not as %s ([server] user)",
                     names[k], e->d_name, who, pw->pw_name);
                mend("start it as root (it then becomes %s) or as %s itself; the units in "
                     "dist/systemd/ do", pw->pw_name, pw->pw_name);
            } else if (pw == NULL && euid == 0) {
                line(d, WARN, "daemon", "%s (pid %s) runs as root: [server] user is not set",
                     names[k], e->d_name);
                mend("set [server] user = kotak (kotak init --user kotak makes it)");
            } else {
                line(d, OK, "daemon", "%s (pid %s) runs as %s", names[k], e->d_name, who);
            }
        }
        closedir(proc);
        if (!found) {
            line(d, FAIL, "daemon", "%s is not running with %s", names[k], d->conf.path);
            mend("systemctl start %s (or 'kotak run' for a try); its log says why it stopped",
                 names[k]);
        }
    }
}

/* --- the clock -------------------------------------------------------------------------- */

static void check_time(struct doctor *d)
{
    struct timex tx = {0};
    int state = adjtimex(&tx);
    if (state < 0) {
        line(d, WARN, "time", "cannot ask the kernel whether the clock is synchronized: %s",
             strerror(errno));
        mend("check it with timedatectl");
    } else if (state == TIME_ERROR || (tx.status & STA_UNSYNC)) {
        line(d, WARN, "time", "the clock is not synchronized: DKIM t=, Date: and certificates "
             "go by it");
        mend("timedatectl set-ntp true (systemd-timesyncd), or apt install chrony");
    } else {
        line(d, OK, "time", "the clock is synchronized (estimated error %ld ms)",
             tx.esterror / 1000);
    }
}

/* --- the command -------------------------------------------------------------------------- */

struct domains {
    char **names;
    size_t n;
};

static int add_domain(void *ctx, const struct store_domain *dom)
{
    struct domains *ds = ctx;
    ds->names = xrealloc(ds->names, (ds->n + 1) * sizeof(*ds->names));
    ds->names[ds->n++] = xstrdup(dom->name);
    return 0;
}

int ctl_doctor(const struct ctl *c)
{
    bool help = ctl_wants_help(c->argc, c->argv);
    const char *only = NULL;
    if (c->argc == 2 && strcmp(c->argv[0], "--domain") == 0)
        only = c->argv[1];
    else if (c->argc == 1 && strncmp(c->argv[0], "--domain=", 9) == 0)
        only = c->argv[0] + 9;
    if (help || (c->argc != 0 && only == NULL))
        ctl_usage(usage, help);
    char only_domain[ADDR_DOMAIN_MAX + 1];
    if (only != NULL)
        ctl_parse_domain(only, only_domain);

    struct doctor d = {0};
    ctl_load_conf(c, &d.conf);
    d.host = d.conf.hostname;
    setvbuf(stdout, NULL, _IOLBF, 0); /* each line as it is known: some checks take seconds */

    struct snap sn[SNAP_COUNT];
    snap_store(&d, sn); /* before store_open closes the files up */
    struct domains ds = {0};
    char *db = conf_store_path(&d.conf), err[512];
    struct store *s = NULL;
    int rc = store_open(db, STORE_READONLY, &s, err, sizeof(err));
    if (rc == 0)
        rc = store_domain_list(s, add_domain, &ds);
    if (rc < 0) {
        line(&d, FAIL, "store", "%s: %s", db, rc == -ENOENT ? "no store" : err[0] ? err : kotak_strerror(rc));
        mend("run 'kotak init --keep-config' to make it, or set [server] data_dir");
    } else {
        line(&d, OK, "store", "%s: %zu domain%s", db, ds.n, ds.n == 1 ? "" : "s");
        if (store_reclaims(s) == 0) {
            line(&d, WARN, "store", "%s was made by an older kotak: the space of deleted mail "
                                    "is not given back", db);
            mend("kotak backup FILE; stop the daemons; kotak restore FILE (the restored store "
                 "gives it back)");
        }
    }
    store_close(&s);
    free(db);
    if (only != NULL) {
        for (size_t i = 0; i < ds.n; i++)
            free(ds.names[i]);
        ds.n = 0;
        add_domain(&ds, &(struct store_domain){.name = only_domain});
    } else if (ds.n == 0 && rc >= 0) {
        line(&d, WARN, "domain", "the store has no domain: this server takes mail for none");
        mend("kotak domain add example.org");
    }

    if (uv_loop_init(&d.loop) != 0 || uv_timer_init(&d.loop, &d.timer) != 0)
        ctl_die("cannot start an event loop");
    d.timer.data = &d;
    d.dns = dns_new(&d.loop, d.conf.dns_servers, DNS_TIMEOUT_MS, DNS_TRIES, err, sizeof(err));
    d.psl = psl_load(PSL_DEFAULT_PATH, err, sizeof(err));
    if (d.dns == NULL) {
        line(&d, FAIL, "dns", "no resolver: %s", err);
        mend("set [dns] servers, or mend /etc/resolv.conf");
    } else {
        d.dns_deadline = uv_now(&d.loop) + DNS_BUDGET_MS;
        check_host(&d);
        /* A domain is left over when the budget ran out before its last check. */
        char left[LEFT_SHOWN * (ADDR_DOMAIN_MAX + 2) + 1] = ""; /* cannot be cut short */
        size_t n_left = 0, used = 0;
        for (size_t i = 0; i < ds.n; i++) {
            if (!d.out_of_time) {
                bool ours = check_mx(&d, ds.names[i]);
                if (!d.out_of_time)
                    check_spf(&d, ds.names[i], ours);
                if (!d.out_of_time)
                    check_dkim(&d, ds.names[i]);
                if (!d.out_of_time)
                    check_dmarc(&d, ds.names[i]);
            }
            if (!d.out_of_time)
                continue;
            if (n_left++ < LEFT_SHOWN)
                used += (size_t)snprintf(left + used, sizeof(left) - used, "%s%s",
                                         used ? ", " : "", ds.names[i]);
        }
        if (n_left > 0) {
            char more[48] = "";
            if (n_left > LEFT_SHOWN)
                snprintf(more, sizeof(more), " and %zu more", n_left - LEFT_SHOWN);
            line(&d, WARN, "dns", "not (fully) checked, kotak doctor's %d s for DNS ran out: %s%s",
                 DNS_BUDGET_MS / 1000, left, more);
            mend("check them one at a time: kotak doctor --domain DOMAIN");
        }
    }
    check_cert(&d);
    check_listeners(&d);
    check_store_files(&d, sn, ds.names, ds.n);
    check_daemons(&d);
    check_time(&d);

    dns_free(&d.dns);
    uv_close((uv_handle_t *)&d.timer, NULL);
    uv_run(&d.loop, UV_RUN_DEFAULT); /* the resolver's handles close, and the timer */
    uv_loop_close(&d.loop);
    psl_free(&d.psl);
    for (size_t i = 0; i < ds.n; i++)
        free(ds.names[i]);
    free(ds.names);
    unsigned fails = d.fails;
    printf("%u failed, %u warning%s\n", d.fails, d.warns, d.warns == 1 ? "" : "s");
    conf_free(&d.conf);
    return fails > 0 ? 1 : 0;
}
