/*
 * conf.h — kotak.conf, the one INI file that kotak, kotak-smtpd and
 * kotak-pop3d share.
 *
 * The listener sections and their `listen` key are fixed by DESIGN.md; every
 * other key is listed in conf.c's table with its type and range. A key the
 * table does not know, a value out of range or a section that does not exist
 * is an error that names file:line, so a typo never silently falls back to a
 * default.
 */
#ifndef KOTAK_CONF_H
#define KOTAK_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CONF_LISTEN_MAX 8
#define CONF_HOST_MAX 64 /* an IPv6 literal with a zone fits */

struct conf_endpoint {
    char host[CONF_HOST_MAX]; /* an IP literal, without brackets */
    uint16_t port;
};

struct conf_listener {
    size_t n; /* 0: the listener is off */
    struct conf_endpoint ep[CONF_LISTEN_MAX];
};

enum conf_listener_kind {
    CONF_SMTP,        /* [smtp]: MX, no login */
    CONF_SUBMISSION,  /* [submission]: STARTTLS, login */
    CONF_SUBMISSIONS, /* [submissions]: implicit TLS, login */
    CONF_POP3,        /* [pop3]: STLS */
    CONF_POP3S,       /* [pop3s]: implicit TLS */
    CONF_LISTENER_COUNT
};

/* [limits]: every count, size and time a peer could otherwise push without end. */
struct conf_limits {
    uint64_t message_size;      /* octets; SIZE (RFC 1870) */
    uint64_t recipients;        /* per message; RFC 5321 asks for at least 100 */
    uint64_t command_line;      /* octets with CRLF; at least 512 */
    uint64_t text_line;         /* octets with CRLF; at least 1000 */
    uint64_t idle_timeout_ms;   /* SMTP; RFC 5321 4.5.3.2 suggests 5 minutes */
    uint64_t pop3_idle_timeout_ms; /* POP3; RFC 1939 3: at least 10 minutes */
    uint64_t tls_handshake_timeout_ms;
    uint64_t connections;       /* per daemon */
    uint64_t connections_per_address;
    uint64_t bad_commands;      /* errors before 421 and close */
    uint64_t junk_commands;     /* NOOP, RSET, VRFY, HELP before each counts as an error */
    uint64_t hard_errors;       /* 5xx replies (SMTP) before 421 and close */
    uint64_t min_data_rate;     /* octets/s DATA keeps up past idle_timeout; 0: no floor */
    uint64_t stress_idle_timeout_ms; /* idle time before login when slots run short */
    uint64_t spool_memory;      /* a message larger than this goes to a temporary file */
    uint64_t store_size;        /* the store file's cap in octets; 0: none */
    bool bare_newline_reject;   /* bare_newline = reject: refuse a message with a bare LF */
};

/* [auth]: how failed logins are slowed down and counted. */
struct conf_auth {
    uint64_t failure_delay_ms;  /* every failure is answered after this */
    uint64_t max_failures;      /* for one user from one address within failure_window ... */
    uint64_t failure_window_ms;
    uint64_t lockout_ms;        /* ... lock that pair out for this long */
    uint64_t address_max_failures; /* for any users from one address (IPv6: /64) ... */
    uint64_t address_failure_window_ms;
    uint64_t address_lockout_ms;   /* ... lock the address out: against spraying */
    uint64_t cache_ttl_ms;      /* a passed check is remembered this long; 0: never */
    uint64_t password_min_length; /* characters a new password needs (kotak user add/passwd) */
};

/* [relay]: delivery to other servers, and its schedule. Read and checked now;
 * kotak init writes the section once kotak-smtpd delivers with it. */
struct conf_relay {
    char *smarthost;      /* "" : each domain's MX; else what was written, HOST:PORT */
    char *smarthost_host; /* its host part (a name or an IP), or "" */
    uint64_t smarthost_port;
    bool smarthost_implicit_tls;   /* smarthost_tls = tls (as on 465); else starttls */
    char *smarthost_user;          /* "" : no login */
    char *smarthost_password_file; /* "" : none; the file holds the password */
    char *smarthost_ca;            /* "" : the system's trust anchors */
    uint64_t port;                 /* what MX delivery connects to; 25 */
    uint64_t retry_first_ms;       /* the first wait after a temporary failure ... */
    uint64_t retry_max_ms;         /* ... doubling up to this */
    uint64_t delay_warning_ms;     /* a "delayed" report once mail has waited this long */
    uint64_t give_up_ms;           /* then it bounces */
    uint64_t bounce_give_up_ms;    /* a report of ours waits less long, and is never bounced */
    uint64_t connections;          /* outbound connections at once, in all */
    uint64_t connections_per_domain;
};

/* [dkim], [checks], [spam]: signing what users send, judging what the MX takes. */
struct conf_checks {
    char *dkim_selector;        /* [dkim] selector: what `kotak dkim keygen` uses by default */
    bool spf_fail_reject;       /* [checks] spf_fail = reject; else annotate */
    bool dmarc_reject;          /* [checks] dmarc_reject = reject; else annotate */
    char *rspamd;               /* [spam] rspamd: "" off; else HOST:PORT as written */
    char *rspamd_host;          /* its host part, or "" */
    uint64_t rspamd_port;
    bool rspamd_fail_closed;    /* [spam] rspamd_fail = closed: 451 while rspamd is away */
};

struct conf {
    char *path; /* the file it was loaded from; NULL for defaults */
    char *dir;  /* its folder: relative paths in the file are relative to it */
    struct conf_listener listeners[CONF_LISTENER_COUNT];
    char *hostname;  /* [server] hostname: greeting, Received:, certificate */
    char *data_dir;  /* [server] data_dir: holds kotak.db; resolved against dir */
    char *run_user;  /* [server] user: drop to it when started as root; "" none */
    enum log_level log_level; /* [server] log_level */
    char *tls_cert;  /* [tls] cert: PEM chain; resolved against dir by conf_path */
    char *tls_key;   /* [tls] key: PEM private key */
    struct conf_limits limits;
    struct conf_auth auth;
    char *dns_servers; /* [dns] servers: "" for /etc/resolv.conf, else ADDR:PORT,... (checked) */
    struct conf_relay relay;
    struct conf_checks checks;
    struct conf_listener web_listen; /* [web] listen: the live view; n 0 is off */
    char *web_token;                 /* [web] token: "" none; else the view wants ?token= */
    struct conf_listener metrics_listen; /* [metrics] listen: /metrics, /healthz; n 0 is off */
    /* [pop3] retention and logins, announced in CAPA (RFC 2449 6.7, 6.5). */
    int64_t pop3_expire_days;    /* expire: days after the first RETR; -1: never */
    uint64_t pop3_login_delay_s; /* login_delay: seconds between one user's logins; 0: none */
};

/* The section name of a listener kind ("smtp", ...). */
const char *conf_listener_name(enum conf_listener_kind kind);

/* Fills c with the defaults that `kotak init` writes. conf_free() frees it. */
void conf_defaults(struct conf *c);

/*
 * Loads path over the defaults. Returns 0, or -1 with one line
 * "path:line: what is wrong; how to mend it" in err[0..err_size); c then
 * holds nothing that needs freeing beyond conf_free().
 */
int conf_load(const char *path, struct conf *c, char *err, size_t err_size);

/* Records path as c's file: relative paths in it then resolve against its folder. */
void conf_set_file(struct conf *c, const char *path);

/* Frees what c owns; c may be loaded again. */
void conf_free(struct conf *c);

/*
 * Picks the config file: cli_path when given, else $KOTAK_CONFIG, else
 * ./kotak.conf if it exists, else /etc/kotak/kotak.conf. Never NULL.
 */
const char *conf_locate(const char *cli_path);

/*
 * A path from the file, resolved against the file's folder (an absolute one
 * is kept): a new string the caller frees.
 */
char *conf_path(const struct conf *c, const char *rel);

/* The store file, data_dir/kotak.db, resolved: a new string the caller frees. */
char *conf_store_path(const struct conf *c);

/*
 * Makes data_dir the working folder and rewrites data_dir, [tls] cert and
 * key to be seen from there. A daemon does this before it gives up root:
 * the user it becomes then needs rights on data_dir alone, not on the
 * folders above it (a clone in /root, a private temporary folder).
 * Returns 0, or -1 with a sentence in err.
 */
int conf_enter_data_dir(struct conf *c, char *err, size_t err_size);

/*
 * Parses one `listen` value ("127.0.0.1:2525, [::1]:2525"; empty is off).
 * Returns 0, or -1 with a sentence in err.
 */
int conf_parse_listen(const char *value, struct conf_listener *l, char *err, size_t err_size);

/*
 * Parses a list of servers to ask ([dns] servers: "127.0.0.1:53, [::1]:53";
 * empty is none), as conf_parse_listen does, but an unspecified address
 * (0.0.0.0, ::) is refused. Returns 0, or -1 with a sentence in err.
 */
int conf_parse_servers(const char *value, struct conf_listener *l, char *err, size_t err_size);

/*
 * Parses a size as the config writes one: octets, or a number with K, M or
 * G (powers of 1024, any case), as 25M. Returns 0 with *v_r set, or -1 with
 * a sentence in err. `kotak user set --quota` reads its SIZE with it.
 */
int conf_parse_size(const char *value, uint64_t *v_r, char *err, size_t err_size);

#endif
