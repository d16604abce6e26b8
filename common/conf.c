/*
 * conf.c — loads kotak.conf with libinih.
 *
 * Each key is a row of `conf_keys[]`: its section, its name, and a setter
 * that checks the value. inih calls the handler once per key; the first
 * error is kept with its line number and the rest of the file is ignored,
 * so the administrator sees one clear line rather than a cascade.
 */
#include "conf.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <strings.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "util.h"

static const char *const listener_names[CONF_LISTENER_COUNT] = {
    "smtp", "submission", "submissions", "pop3", "pop3s",
};

/* DESIGN.md: loopback and unprivileged ports, so that a first try needs no root. */
static const char *const listener_defaults[CONF_LISTENER_COUNT] = {
    "127.0.0.1:2525", "127.0.0.1:2587", "127.0.0.1:2465", "127.0.0.1:2110", "127.0.0.1:2995",
};

const char *conf_listener_name(enum conf_listener_kind kind)
{
    return listener_names[kind];
}

static char *default_hostname(void)
{
    char name[256];
    if (gethostname(name, sizeof(name)) != 0 || name[0] == '\0')
        return xstrdup("localhost");
    name[sizeof(name) - 1] = '\0';
    return xstrdup(name);
}

void conf_defaults(struct conf *c)
{
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < CONF_LISTENER_COUNT; i++) {
        char err[128];
        int rc = conf_parse_listen(listener_defaults[i], &c->listeners[i], err, sizeof(err));
        (void)rc;
        assert(rc == 0);
    }
    c->dir = xstrdup(".");
    c->hostname = default_hostname();
    c->data_dir = xstrdup("kotak-data");
    c->run_user = xstrdup("");
    c->log_level = LOG_INFO;
    c->tls_cert = xstrdup("kotak-data/cert.pem");
    c->tls_key = xstrdup("kotak-data/key.pem");
    c->dns_servers = xstrdup("");
    c->web_token = xstrdup("");
    c->pop3_expire_days = -1; /* never: mail stays until a client deletes it */
    c->relay = (struct conf_relay){
        .smarthost = xstrdup(""),
        .smarthost_host = xstrdup(""),
        .smarthost_user = xstrdup(""),
        .smarthost_password_file = xstrdup(""),
        .smarthost_ca = xstrdup(""),
        .port = 25,
        .retry_first_ms = 5 * 60 * 1000,
        .retry_max_ms = 60 * 60 * 1000,
        .delay_warning_ms = 4 * 3600 * 1000ull,
        .give_up_ms = 5 * 86400 * 1000ull,
        .bounce_give_up_ms = 2 * 86400 * 1000ull,
        .connections = 20,
        .connections_per_domain = 5,
    };
    c->checks = (struct conf_checks){
        .dkim_selector = xstrdup("kotak"),
        .dmarc_reject = true,
        .rspamd = xstrdup(""),
        .rspamd_host = xstrdup(""),
    };
    c->limits = (struct conf_limits){
        .message_size = 25 << 20,
        .recipients = 100,
        .command_line = 512,
        .text_line = 1000,
        .idle_timeout_ms = 300 * 1000,
        .pop3_idle_timeout_ms = 600 * 1000,
        .tls_handshake_timeout_ms = 30 * 1000,
        .connections = 1000,
        .connections_per_address = 20,
        .bad_commands = 10,
        .junk_commands = 100,
        .hard_errors = 20,
        .min_data_rate = 500,
        .stress_idle_timeout_ms = 10 * 1000,
        .spool_memory = 64 << 10,
    };
    c->auth = (struct conf_auth){
        .failure_delay_ms = 2000,
        .max_failures = 5,
        .failure_window_ms = 10 * 60 * 1000,
        .lockout_ms = 15 * 60 * 1000,
        .address_max_failures = 100,
        .address_failure_window_ms = 60 * 60 * 1000,
        .address_lockout_ms = 60 * 60 * 1000,
        .cache_ttl_ms = 10 * 60 * 1000,
        .password_min_length = 8, /* NIST SP 800-63B's floor for a chosen password */
    };
}

void conf_free(struct conf *c)
{
    free(c->path);
    free(c->dir);
    free(c->hostname);
    free(c->data_dir);
    free(c->run_user);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->dns_servers);
    free(c->relay.smarthost);
    free(c->relay.smarthost_host);
    free(c->relay.smarthost_user);
    free(c->relay.smarthost_password_file);
    free(c->relay.smarthost_ca);
    free(c->checks.dkim_selector);
    free(c->checks.rspamd);
    free(c->checks.rspamd_host);
    free(c->web_token);
    memset(c, 0, sizeof(*c));
}

/* One ADDRESS:PORT; servers: the address is a server's to reach, not one to listen on. */
static int parse_endpoint(const char *s, size_t len, bool servers, struct conf_endpoint *ep,
                          char *err, size_t err_size)
{
    const char *host = s, *colon;
    size_t host_len;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL) {
            snprintf(err, err_size, "'%.*s' has no closing ']'; write [::1]:2525", (int)len, s);
            return -1;
        }
        host = s + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
        if (colon >= s + len || *colon != ':')
            colon = NULL;
    } else {
        colon = NULL;
        for (size_t i = len; i > 0; i--) {
            if (s[i - 1] == ':') {
                colon = s + i - 1;
                break;
            }
        }
        host_len = colon ? (size_t)(colon - s) : len;
        if (memchr(s, ':', host_len) != NULL) {
            snprintf(err, err_size, "'%.*s': put an IPv6 address in brackets, as [::1]:2525",
                     (int)len, s);
            return -1;
        }
    }
    if (colon == NULL) {
        snprintf(err, err_size, "'%.*s' has no port; write ADDRESS:PORT, as 127.0.0.1:2525",
                 (int)len, s);
        return -1;
    }
    if (host_len == 0 || host_len >= sizeof(ep->host)) {
        snprintf(err, err_size, "'%.*s' has no address; write ADDRESS:PORT, as 127.0.0.1:2525",
                 (int)len, s);
        return -1;
    }
    memcpy(ep->host, host, host_len);
    ep->host[host_len] = '\0';
    unsigned char sa[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, ep->host, sa) != 1 && inet_pton(AF_INET6, ep->host, sa) != 1) {
        snprintf(err, err_size,
                 servers ? "'%s' is not an IP address; give the server's, as 127.0.0.1:53"
                         : "'%s' is not an IP address; use one (0.0.0.0 or [::] for all addresses)",
                 ep->host);
        return -1;
    }
    static const unsigned char any[sizeof(struct in6_addr)];
    if (servers && memcmp(sa, any, strchr(ep->host, ':') ? 16 : 4) == 0) {
        snprintf(err, err_size, "'%s' is no server's address; give the server's, as 127.0.0.1:53",
                 ep->host);
        return -1;
    }
    const char *port = colon + 1;
    size_t port_len = (size_t)(s + len - port);
    unsigned long v = 0;
    for (size_t i = 0; i < port_len; i++) {
        if (port[i] < '0' || port[i] > '9' || v > 65535) {
            v = 0;
            break;
        }
        v = v * 10 + (unsigned long)(port[i] - '0');
    }
    if (port_len == 0 || v == 0 || v > 65535) {
        snprintf(err, err_size, "'%.*s' is not a port; use a number from 1 to 65535",
                 (int)port_len, port);
        return -1;
    }
    ep->port = (uint16_t)v;
    return 0;
}

/* A comma-separated list of ADDRESS:PORT: where to listen, or which servers to ask. */
static int parse_endpoints(const char *value, bool servers, struct conf_listener *l, char *err,
                           size_t err_size)
{
    struct conf_listener out = {0};
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        size_t len = (size_t)(end - p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0) {
            if (*end == '\0' && out.n == 0 && end == p)
                break;
            snprintf(err, err_size, "empty address in the list; separate ADDRESS:PORT with commas");
            return -1;
        }
        if (out.n == CONF_LISTEN_MAX) {
            snprintf(err, err_size,
                     servers ? "more than %d addresses; name fewer servers"
                             : "more than %d addresses; listen on fewer",
                     CONF_LISTEN_MAX);
            return -1;
        }
        if (parse_endpoint(p, len, servers, &out.ep[out.n], err, err_size) < 0)
            return -1;
        out.n++;
        p = *end ? end + 1 : end;
        if (*end == ',' && *p == '\0') {
            snprintf(err, err_size, "the list ends in a comma; remove it");
            return -1;
        }
    }
    *l = out;
    return 0;
}

int conf_parse_listen(const char *value, struct conf_listener *l, char *err, size_t err_size)
{
    return parse_endpoints(value, false, l, err, err_size);
}

int conf_parse_servers(const char *value, struct conf_listener *l, char *err, size_t err_size)
{
    return parse_endpoints(value, true, l, err, err_size);
}

/* The state of one load: the config being filled and the first error. */
struct load {
    struct conf *c;
    FILE *f;
    int line;           /* lines read so far */
    char err[400];
    int err_line;       /* 0 while there is no error */
    unsigned long long seen; /* one bit per row of conf_keys, for duplicates */
};

/* Records the first error only: one clear line rather than a cascade. */
static void load_fail(struct load *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void load_fail(struct load *ld, const char *fmt, ...)
{
    if (ld->err_line != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->err, sizeof(ld->err), fmt, ap);
    va_end(ap);
    ld->err_line = ld->line;
}

struct conf_key {
    const char *section;
    const char *name;
    int (*set)(struct conf *c, const struct conf_key *k, const char *value, char *err, size_t n);
    size_t offset;     /* of the uint64_t or char * it sets, for the generic setters */
    uint64_t min, max; /* for numbers, in the unit they are kept in */
};

static uint64_t *number_at(struct conf *c, const struct conf_key *k)
{
    return (uint64_t *)((char *)c + k->offset);
}

/* Digits then an optional unit; *v_r is scaled by the unit's factor. */
static int parse_number(const char *value, const char *const *units, const uint64_t *factors,
                        uint64_t *v_r)
{
    char *end;
    errno = 0;
    if (value[0] < '0' || value[0] > '9')
        return -1;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno != 0)
        return -1;
    for (size_t i = 0; units[i] != NULL; i++) {
        if (strcasecmp(end, units[i]) == 0) {
            if (v > UINT64_MAX / factors[i])
                return -1;
            *v_r = v * factors[i];
            return 0;
        }
    }
    return -1;
}

static int check_range(const struct conf_key *k, uint64_t v, const char *value, const char *unit,
                       uint64_t scale, char *err, size_t n)
{
    if (v >= k->min && v <= k->max)
        return 0;
    snprintf(err, n, "'%s' is out of range; use %llu%s to %llu%s", value,
             (unsigned long long)(k->min / scale), unit, (unsigned long long)(k->max / scale),
             unit);
    return -1;
}

static int set_count(struct conf *c, const struct conf_key *k, const char *value, char *err,
                     size_t n)
{
    static const char *const units[] = {"", NULL};
    static const uint64_t factors[] = {1};
    uint64_t v;
    if (parse_number(value, units, factors, &v) < 0) {
        snprintf(err, n, "'%s' is not a number; write digits only, as 100", value);
        return -1;
    }
    if (check_range(k, v, value, "", 1, err, n) < 0)
        return -1;
    *number_at(c, k) = v;
    return 0;
}

int conf_parse_size(const char *value, uint64_t *v_r, char *err, size_t n)
{
    static const char *const units[] = {"", "K", "M", "G", NULL};
    static const uint64_t factors[] = {1, 1 << 10, 1 << 20, 1 << 30};
    if (parse_number(value, units, factors, v_r) < 0) {
        snprintf(err, n, "'%s' is not a size; write octets with K, M or G, as 25M", value);
        return -1;
    }
    return 0;
}

static int set_size(struct conf *c, const struct conf_key *k, const char *value, char *err,
                    size_t n)
{
    uint64_t v;
    if (conf_parse_size(value, &v, err, n) < 0)
        return -1;
    if (check_range(k, v, value, "", 1, err, n) < 0)
        return -1;
    *number_at(c, k) = v;
    return 0;
}

static int set_duration(struct conf *c, const struct conf_key *k, const char *value, char *err,
                        size_t n)
{
    static const char *const units[] = {"ms", "s", "m", "h", "d", NULL};
    static const uint64_t factors[] = {1, 1000, 60 * 1000, 3600 * 1000, 86400 * 1000};
    uint64_t v = 0;
    /* Zero needs no unit: "cache = 0" turns the cache off. */
    if (strcmp(value, "0") != 0 && parse_number(value, units, factors, &v) < 0) {
        snprintf(err, n, "'%s' is not a duration; write a number with ms, s, m, h or d, as 5m",
                 value);
        return -1;
    }
    if (check_range(k, v, value, "ms", 1, err, n) < 0)
        return -1;
    *number_at(c, k) = v;
    return 0;
}

static int set_path(struct conf *c, const struct conf_key *k, const char *value, char *err,
                    size_t n)
{
    char **slot = (char **)((char *)c + k->offset);
    if (value[0] == '\0') {
        snprintf(err, n, "the path is empty; name a file");
        return -1;
    }
    free(*slot);
    *slot = xstrdup(value);
    return 0;
}

/* [limits] bare_newline: normalize (the default: a bare LF ends a data line as
 * CRLF would) or reject (such a message is refused with 550 5.6.0). */
static int set_bare_newline(struct conf *c, const struct conf_key *k, const char *value, char *err,
                            size_t n)
{
    (void)k;
    if (strcmp(value, "normalize") != 0 && strcmp(value, "reject") != 0) {
        snprintf(err, n, "'%s' is not a bare_newline choice; use normalize or reject", value);
        return -1;
    }
    c->limits.bare_newline_reject = strcmp(value, "reject") == 0;
    return 0;
}

static int set_listen(struct conf *c, const struct conf_key *k, const char *value, char *err,
                      size_t n)
{
    if (strcmp(k->section, "web") == 0)
        return conf_parse_listen(value, &c->web_listen, err, n);
    if (strcmp(k->section, "metrics") == 0)
        return conf_parse_listen(value, &c->metrics_listen, err, n);
    for (int i = 0; i < CONF_LISTENER_COUNT; i++)
        if (strcmp(k->section, listener_names[i]) == 0)
            return conf_parse_listen(value, &c->listeners[i], err, n);
    return -1; /* unreachable: the table only routes listener sections here */
}

/* [dns] servers: empty for /etc/resolv.conf's, else the servers to ask, kept
 * as written once checked (dns_new takes that text). */
static int set_dns_servers(struct conf *c, const struct conf_key *k, const char *value, char *err,
                           size_t n)
{
    (void)k;
    struct conf_listener l;
    if (conf_parse_servers(value, &l, err, n) < 0)
        return -1;
    free(c->dns_servers);
    c->dns_servers = xstrdup(value);
    return 0;
}

/* A string kept as written; empty is allowed (the feature is off). */
static int set_text(struct conf *c, const struct conf_key *k, const char *value, char *err,
                    size_t n)
{
    (void)err, (void)n;
    char **slot = (char **)((char *)c + k->offset);
    free(*slot);
    *slot = xstrdup(value);
    return 0;
}

/*
 * HOST:PORT ([v6]:PORT), the host a name or an IP; empty is off. Fills
 * host[ADDR_DOMAIN_MAX + 1] and *port_r (both empty and 0 for empty).
 */
static int parse_host_port(const char *value, char *host, uint64_t *port_r, const char *example,
                           char *err, size_t n)
{
    unsigned long port = 0;
    host[0] = '\0';
    if (value[0] != '\0') {
        bool bracket = value[0] == '[';
        const char *colon = bracket ? strstr(value, "]:") : strrchr(value, ':');
        const char *h = bracket ? value + 1 : value;
        char *end = NULL;
        if (colon != NULL) {
            size_t hl = (size_t)(colon - h);
            if (bracket)
                colon++; /* past the ']' */
            port = strtoul(colon + 1, &end, 10);
            if (hl > 0 && hl <= ADDR_DOMAIN_MAX) {
                memcpy(host, h, hl);
                host[hl] = '\0';
            }
        }
        if (colon == NULL || end == colon + 1 || *end != '\0' || port == 0 || port > 65535 ||
            host[0] == '\0') {
            snprintf(err, n, "'%s' is not HOST:PORT; write it as %s", value, example);
            return -1;
        }
        char folded[ADDR_DOMAIN_MAX + 1];
        unsigned char ip[16];
        if (inet_pton(AF_INET, host, ip) != 1 && inet_pton(AF_INET6, host, ip) != 1 &&
            addr_parse_domain(host, strlen(host), 0, folded) < 0) {
            snprintf(err, n, "'%s' is no host name or IP address", host);
            return -1;
        }
    }
    *port_r = port;
    return 0;
}

/* [relay] smarthost: empty, or HOST:PORT. */
static int set_smarthost(struct conf *c, const struct conf_key *k, const char *value, char *err,
                         size_t n)
{
    (void)k;
    char host[ADDR_DOMAIN_MAX + 1];
    uint64_t port;
    if (parse_host_port(value, host, &port, "smtp.example.net:587", err, n) < 0)
        return -1;
    free(c->relay.smarthost);
    free(c->relay.smarthost_host);
    c->relay.smarthost = xstrdup(value);
    c->relay.smarthost_host = xstrdup(host);
    c->relay.smarthost_port = port;
    return 0;
}

/* [spam] rspamd: empty, or HOST:PORT of rspamd's normal worker. */
static int set_rspamd(struct conf *c, const struct conf_key *k, const char *value, char *err,
                      size_t n)
{
    (void)k;
    char host[ADDR_DOMAIN_MAX + 1];
    uint64_t port;
    if (parse_host_port(value, host, &port, "127.0.0.1:11333", err, n) < 0)
        return -1;
    free(c->checks.rspamd);
    free(c->checks.rspamd_host);
    c->checks.rspamd = xstrdup(value);
    c->checks.rspamd_host = xstrdup(host);
    c->checks.rspamd_port = port;
    return 0;
}

/* A choice of two words: *flag is set when value is yes_word. */
static int set_choice(const char *value, const char *yes_word, const char *no_word, bool *flag,
                      char *err, size_t n)
{
    if (strcmp(value, yes_word) != 0 && strcmp(value, no_word) != 0) {
        snprintf(err, n, "'%s' is not a choice here; use %s or %s", value, no_word, yes_word);
        return -1;
    }
    *flag = strcmp(value, yes_word) == 0;
    return 0;
}

/* [checks] spf_fail: annotate | reject. */
static int set_spf_fail(struct conf *c, const struct conf_key *k, const char *value, char *err,
                        size_t n)
{
    (void)k;
    return set_choice(value, "reject", "annotate", &c->checks.spf_fail_reject, err, n);
}

/* [checks] dmarc_reject: reject | annotate. */
static int set_dmarc_reject(struct conf *c, const struct conf_key *k, const char *value, char *err,
                            size_t n)
{
    (void)k;
    return set_choice(value, "reject", "annotate", &c->checks.dmarc_reject, err, n);
}

/* [spam] rspamd_fail: open | closed. */
static int set_rspamd_fail(struct conf *c, const struct conf_key *k, const char *value, char *err,
                           size_t n)
{
    (void)k;
    return set_choice(value, "closed", "open", &c->checks.rspamd_fail_closed, err, n);
}

/* [dkim] selector: a DNS label (RFC 6376 3.1 allows dotted selectors; one label keeps it plain). */
static int set_selector(struct conf *c, const struct conf_key *k, const char *value, char *err,
                        size_t n)
{
    (void)k;
    size_t len = strlen(value);
    bool good = len > 0 && len <= 63 && value[0] != '-' && value[len - 1] != '-';
    for (size_t i = 0; good && i < len; i++)
        good = (value[i] >= 'a' && value[i] <= 'z') || (value[i] >= 'A' && value[i] <= 'Z') ||
               (value[i] >= '0' && value[i] <= '9') || value[i] == '-';
    if (!good) {
        snprintf(err, n, "'%s' is not a selector; use letters, digits and '-', as kotak", value);
        return -1;
    }
    free(c->checks.dkim_selector);
    c->checks.dkim_selector = xstrdup(value);
    return 0;
}

/* [relay] smarthost_tls: starttls (on 587) or tls (implicit, on 465). */
static int set_smarthost_tls(struct conf *c, const struct conf_key *k, const char *value, char *err,
                             size_t n)
{
    (void)k;
    if (strcmp(value, "starttls") != 0 && strcmp(value, "tls") != 0) {
        snprintf(err, n, "'%s' is not a smarthost_tls choice; use starttls or tls", value);
        return -1;
    }
    c->relay.smarthost_implicit_tls = strcmp(value, "tls") == 0;
    return 0;
}

static int set_hostname(struct conf *c, const struct conf_key *k, const char *value, char *err,
                        size_t n)
{
    (void)k;
    char name[ADDR_DOMAIN_MAX + 1];
    if (addr_parse_domain(value, strlen(value), 0, name) < 0) {
        snprintf(err, n, "'%s' is not a host name; use the server's name, as mail.example.org",
                 value);
        return -1;
    }
    free(c->hostname);
    c->hostname = xstrdup(name);
    return 0;
}

static int set_data_dir(struct conf *c, const struct conf_key *k, const char *value, char *err,
                        size_t n)
{
    (void)k;
    if (value[0] == '\0') {
        snprintf(err, n, "data_dir is empty; name the folder that holds kotak.db");
        return -1;
    }
    free(c->data_dir);
    c->data_dir = xstrdup(value);
    return 0;
}

static int set_user(struct conf *c, const struct conf_key *k, const char *value, char *err,
                    size_t n)
{
    (void)k, (void)err, (void)n;
    free(c->run_user);
    c->run_user = xstrdup(value);
    return 0;
}

static int set_log_level(struct conf *c, const struct conf_key *k, const char *value, char *err,
                         size_t n)
{
    (void)k;
    if (log_level_parse(value, &c->log_level) < 0) {
        snprintf(err, n, "'%s' is not a log level; use error, warn, info or debug", value);
        return -1;
    }
    return 0;
}

/* [pop3] expire: never, or Nd (days after a message's first RETR; RFC 2449 6.7). */
static int set_pop3_expire(struct conf *c, const struct conf_key *k, const char *value, char *err,
                           size_t n)
{
    if (strcmp(value, "never") == 0) {
        c->pop3_expire_days = -1;
        return 0;
    }
    static const char *const units[] = {"d", NULL};
    static const uint64_t factors[] = {1};
    uint64_t v;
    if (parse_number(value, units, factors, &v) < 0) {
        snprintf(err, n, "'%s' is neither never nor a number of days; write never, or days as 30d",
                 value);
        return -1;
    }
    if (check_range(k, v, value, "d", 1, err, n) < 0)
        return -1;
    c->pop3_expire_days = (int64_t)v;
    return 0;
}

/* [web] token: what a URL carries as it is (RFC 3986 unreserved), so no one must encode it. */
static int set_web_token(struct conf *c, const struct conf_key *k, const char *value, char *err,
                         size_t n)
{
    (void)k;
    size_t len = strlen(value);
    bool plain = len <= 128;
    for (size_t i = 0; i < len && plain; i++)
        plain = (value[i] >= 'a' && value[i] <= 'z') || (value[i] >= 'A' && value[i] <= 'Z') ||
                (value[i] >= '0' && value[i] <= '9') || strchr("-._~", value[i]) != NULL;
    if (!plain) {
        snprintf(err, n, "the token is up to 128 letters, digits and - . _ ~; pick another");
        return -1;
    }
    free(c->web_token);
    c->web_token = xstrdup(value);
    return 0;
}

#define NUM(field) offsetof(struct conf, field)
#define SEC(x) ((uint64_t)(x) * 1000)
static const struct conf_key conf_keys[] = {
    {"smtp", "listen", set_listen, 0, 0, 0},
    {"submission", "listen", set_listen, 0, 0, 0},
    {"submissions", "listen", set_listen, 0, 0, 0},
    {"pop3", "listen", set_listen, 0, 0, 0},
    {"pop3s", "listen", set_listen, 0, 0, 0},
    /* RFC 2449 EXPIRE counts days; 0d: no mail left on the server. Ten years at most. */
    {"pop3", "expire", set_pop3_expire, 0, 0, 3650},
    {"pop3", "login_delay", set_count, NUM(pop3_login_delay_s), 0, 86400},
    {"server", "hostname", set_hostname, 0, 0, 0},
    {"server", "data_dir", set_data_dir, 0, 0, 0},
    {"server", "user", set_user, 0, 0, 0},
    {"server", "log_level", set_log_level, 0, 0, 0},
    {"tls", "cert", set_path, NUM(tls_cert), 0, 0},
    {"tls", "key", set_path, NUM(tls_key), 0, 0},
    /* The floors are RFC 5321 4.5.3's minimums; the ceilings keep memory bounded. */
    {"limits", "message_size", set_size, NUM(limits.message_size), 64 << 10, 1ull << 30},
    {"limits", "recipients", set_count, NUM(limits.recipients), 100, 10000},
    {"limits", "command_line", set_count, NUM(limits.command_line), 512, 4096},
    {"limits", "text_line", set_count, NUM(limits.text_line), 1000, 65536},
    {"limits", "idle_timeout", set_duration, NUM(limits.idle_timeout_ms), SEC(1), SEC(3600)},
    /* Timeouts go below the RFCs' (5 and 10 minutes) only for tests. */
    {"limits", "pop3_idle_timeout", set_duration, NUM(limits.pop3_idle_timeout_ms), SEC(1),
     SEC(86400)},
    {"limits", "tls_handshake_timeout", set_duration, NUM(limits.tls_handshake_timeout_ms), SEC(1),
     SEC(300)},
    {"limits", "connections", set_count, NUM(limits.connections), 1, 1000000},
    {"limits", "connections_per_address", set_count, NUM(limits.connections_per_address), 1,
     1000000},
    {"limits", "bad_commands", set_count, NUM(limits.bad_commands), 1, 1000},
    {"limits", "junk_commands", set_count, NUM(limits.junk_commands), 1, 100000},
    {"limits", "hard_errors", set_count, NUM(limits.hard_errors), 1, 1000},
    {"limits", "min_data_rate", set_size, NUM(limits.min_data_rate), 0, 1 << 30},
    {"limits", "stress_idle_timeout", set_duration, NUM(limits.stress_idle_timeout_ms), SEC(1),
     SEC(3600)},
    {"limits", "spool_memory", set_size, NUM(limits.spool_memory), 0, 64 << 20},
    {"limits", "store_size", set_size, NUM(limits.store_size), 0, 1ull << 50},
    {"limits", "bare_newline", set_bare_newline, 0, 0, 0},
    {"auth", "failure_delay", set_duration, NUM(auth.failure_delay_ms), 0, SEC(60)},
    {"auth", "max_failures", set_count, NUM(auth.max_failures), 1, 1000},
    {"auth", "failure_window", set_duration, NUM(auth.failure_window_ms), SEC(1), SEC(86400)},
    {"auth", "lockout", set_duration, NUM(auth.lockout_ms), 0, SEC(86400)},
    {"auth", "address_max_failures", set_count, NUM(auth.address_max_failures), 1, 100000},
    {"auth", "address_failure_window", set_duration, NUM(auth.address_failure_window_ms), SEC(1),
     SEC(86400)},
    {"auth", "address_lockout", set_duration, NUM(auth.address_lockout_ms), 0, SEC(86400)},
    {"auth", "cache", set_duration, NUM(auth.cache_ttl_ms), 0, SEC(86400)},
    {"auth", "password_min_length", set_count, NUM(auth.password_min_length), 1, 64},
    {"dns", "servers", set_dns_servers, 0, 0, 0},
    {"relay", "smarthost", set_smarthost, 0, 0, 0},
    {"relay", "smarthost_tls", set_smarthost_tls, 0, 0, 0},
    {"relay", "smarthost_user", set_text, NUM(relay.smarthost_user), 0, 0},
    {"relay", "smarthost_password_file", set_text, NUM(relay.smarthost_password_file), 0, 0},
    {"relay", "smarthost_ca", set_text, NUM(relay.smarthost_ca), 0, 0},
    {"relay", "port", set_count, NUM(relay.port), 1, 65535},
    {"relay", "retry_first", set_duration, NUM(relay.retry_first_ms), SEC(1), SEC(86400)},
    {"relay", "retry_max", set_duration, NUM(relay.retry_max_ms), SEC(1), SEC(7 * 86400)},
    {"relay", "delay_warning", set_duration, NUM(relay.delay_warning_ms), 0, SEC(30 * 86400)},
    {"relay", "give_up", set_duration, NUM(relay.give_up_ms), SEC(1), SEC(30 * 86400)},
    {"relay", "bounce_give_up", set_duration, NUM(relay.bounce_give_up_ms), SEC(1),
     SEC(30 * 86400)},
    {"relay", "connections", set_count, NUM(relay.connections), 1, 10000},
    {"relay", "connections_per_domain", set_count, NUM(relay.connections_per_domain), 1, 1000},
    {"dkim", "selector", set_selector, 0, 0, 0},
    {"checks", "spf_fail", set_spf_fail, 0, 0, 0},
    {"checks", "dmarc_reject", set_dmarc_reject, 0, 0, 0},
    {"spam", "rspamd", set_rspamd, 0, 0, 0},
    {"spam", "rspamd_fail", set_rspamd_fail, 0, 0, 0},
    {"web", "listen", set_listen, 0, 0, 0},
    {"web", "token", set_web_token, 0, 0, 0},
    {"metrics", "listen", set_listen, 0, 0, 0},
};
#define CONF_KEY_COUNT (sizeof(conf_keys) / sizeof(conf_keys[0]))

static bool section_known(const char *section)
{
    for (size_t i = 0; i < CONF_KEY_COUNT; i++)
        if (strcmp(conf_keys[i].section, section) == 0)
            return true;
    return false;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct load *ld = user;
    if (ld->err_line != 0)
        return 1; /* the first error is the one reported */
    if (section[0] == '\0') {
        load_fail(ld, "'%s' is outside any section; put it under one, as [server]", name);
        return 1;
    }
    for (size_t i = 0; i < CONF_KEY_COUNT; i++) {
        const struct conf_key *k = &conf_keys[i];
        if (strcmp(k->section, section) != 0 || strcmp(k->name, name) != 0)
            continue;
        if (ld->seen & (1ull << i)) {
            load_fail(ld, "[%s] %s is set twice; keep one", section, name);
            return 1;
        }
        ld->seen |= 1ull << i;
        char msg[200];
        if (k->set(ld->c, k, value, msg, sizeof(msg)) < 0)
            load_fail(ld, "[%s] %s: %s", section, name, msg);
        return 1;
    }
    load_fail(ld, "unknown key '%s' in [%s]; check its spelling", name, section);
    return 1;
}

/*
 * inih's line reader, wrapped to count lines (inih passes no line number to
 * the handler here) and to catch an unknown section even when it holds no
 * key, since inih only reports sections through their keys.
 */
static char *read_line(char *str, int num, void *stream)
{
    struct load *ld = stream;
    if (fgets(str, num, ld->f) == NULL) {
        if (ferror(ld->f))
            load_fail(ld, "cannot read: %s; give the path of the config file", strerror(errno));
        return NULL;
    }
    ld->line++;
    size_t n = strlen(str);
    if (n > 0 && str[n - 1] != '\n' && !feof(ld->f)) {
        /* inih's line buffer is this long; a longer line would be cut in two. */
        load_fail(ld, "the line is longer than %d characters; shorten it", num - 2);
        int c;
        while ((c = fgetc(ld->f)) != EOF && c != '\n')
            ;
        str[0] = '\0';
        return str;
    }
    const char *p = str;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close != NULL) {
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)(close - p - 1), p + 1);
            if (!section_known(name))
                load_fail(ld,
                          "unknown section [%s]; the sections are server, tls, limits, auth, "
                          "dns, relay, dkim, checks, spam, web, smtp, submission, submissions, "
                          "pop3 and pop3s",
                          name);
        }
    }
    return str;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

void conf_set_file(struct conf *c, const char *path)
{
    free(c->path);
    free(c->dir);
    c->path = xstrdup(path);
    c->dir = dir_of(path);
}

int conf_load(const char *path, struct conf *c, char *err, size_t err_size)
{
    _Static_assert(CONF_KEY_COUNT <= 64, "conf_load keeps one bit per key");
    struct load ld = {.c = c};
    ld.f = fopen(path, "r");
    if (ld.f == NULL) {
        int e = errno;
        const char *env = getenv("KOTAK_CONFIG");
        if (e == ENOENT && strcmp(path, "/etc/kotak/kotak.conf") == 0 && (env == NULL || !*env))
            snprintf(err, err_size, /* the last place conf_locate looks: say where it looked */
                     "no config file: looked for ./kotak.conf and /etc/kotak/kotak.conf "
                     "($KOTAK_CONFIG is not set); run 'kotak init', or pass -c FILE");
        else if (e == ENOENT)
            snprintf(err, err_size, "%s: no such file; run 'kotak init' or pass -c FILE", path);
        else
            snprintf(err, err_size, "%s: cannot read: %s", path, strerror(e));
        return -1;
    }
    struct stat sb;
    if (fstat(fileno(ld.f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(ld.f);
        snprintf(err, err_size, "%s: is a folder; give the path of the config file", path);
        return -1;
    }
    int line = ini_parse_stream(read_line, &ld, on_key, &ld);
    fclose(ld.f);
    /* inih's own error (a line that is not INI) or ours, whichever came first. */
    if (line > 0 && (ld.err_line == 0 || line < ld.err_line)) {
        snprintf(err, err_size, "%s:%d: not an INI line; write key = value or [section]", path,
                 line);
        return -1;
    }
    if (ld.err_line != 0) {
        snprintf(err, err_size, "%s:%d: %s", path, ld.err_line, ld.err);
        return -1;
    }
    if (line < 0) {
        snprintf(err, err_size, "%s: cannot read", path);
        return -1;
    }
    /* Keys that only make sense together, told at load (and so by --check-config). */
    if (c->relay.smarthost_user[0] != '\0' && c->relay.smarthost_password_file[0] == '\0') {
        snprintf(err, err_size, "%s: [relay] smarthost_user needs smarthost_password_file", path);
        return -1;
    }
    conf_set_file(c, path);
    return 0;
}

const char *conf_locate(const char *cli_path)
{
    if (cli_path != NULL)
        return cli_path;
    const char *env = getenv("KOTAK_CONFIG");
    if (env != NULL && env[0] != '\0')
        return env;
    if (access("kotak.conf", F_OK) == 0)
        return "kotak.conf";
    return "/etc/kotak/kotak.conf";
}

char *conf_path(const struct conf *c, const char *rel)
{
    size_t n = strlen(c->dir) + strlen(rel) + 2;
    char *out = xmalloc(n);
    size_t dir_len = strlen(c->dir);
    if (rel[0] == '/' || strcmp(c->dir, ".") == 0)
        snprintf(out, n, "%s", rel);
    else if (dir_len > 0 && c->dir[dir_len - 1] == '/')
        snprintf(out, n, "%s%s", c->dir, rel);
    else
        snprintf(out, n, "%s/%s", c->dir, rel);
    return out;
}

/* path, resolved before a move into dir, as the same file seen from dir. */
static char *path_from_dir(const char *path, const char *dir, const char *cwd)
{
    size_t dn = strlen(dir);
    if (strncmp(path, dir, dn) == 0 && path[dn] == '/')
        return xstrdup(path + dn + 1);
    if (path[0] == '/')
        return xstrdup(path);
    size_t n = strlen(cwd) + strlen(path) + 2;
    char *out = xmalloc(n);
    snprintf(out, n, "%s/%s", cwd, path);
    return out;
}

int conf_enter_data_dir(struct conf *c, char *err, size_t err_size)
{
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        snprintf(err, err_size, "cannot tell the current folder: %s", strerror(errno));
        return -1;
    }
    char *dir = conf_path(c, c->data_dir);
    char *cert = conf_path(c, c->tls_cert), *key = conf_path(c, c->tls_key);
    if (chdir(dir) != 0) {
        snprintf(err, err_size,
                 "cannot enter data_dir %s: %s; run 'kotak init' first, or "
                 "check [server] data_dir",
                 dir, strerror(errno));
        free(dir), free(cert), free(key);
        return -1;
    }
    free(c->tls_cert);
    free(c->tls_key);
    c->tls_cert = path_from_dir(cert, dir, cwd);
    c->tls_key = path_from_dir(key, dir, cwd);
    free(c->data_dir);
    c->data_dir = xstrdup(".");
    free(c->dir);
    c->dir = xstrdup(".");
    free(dir), free(cert), free(key);
    return 0;
}

char *conf_store_path(const struct conf *c)
{
    size_t n = strlen(c->data_dir) + sizeof("/kotak.db");
    char *rel = xmalloc(n);
    snprintf(rel, n, "%s/kotak.db", c->data_dir);
    char *out = conf_path(c, rel);
    free(rel);
    return out;
}
