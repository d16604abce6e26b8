/*
 * init.c — `kotak init`: a commented kotak.conf and kotak-data/ with a new
 * store, ready for `kotak domain add`.
 *
 * The file is written from the template below and then loaded with the same
 * loader the daemons use, so what init writes is always what they accept.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netdb.h>
#include <pwd.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cert.h"
#include "ctl.h"
#include "util.h"

static const char conf_template[] =
    "; kotak.conf: one file for kotak, kotak-smtpd and kotak-pop3d.\n"
    "; Written by 'kotak init'. Lines starting with ';' are comments; a relative\n"
    "; path is relative to the folder of this file.\n"
    "\n"
    "[server]\n"
    "; The name this server gives itself in greetings and Received: headers.\n"
    "hostname = %s\n"
    "; The folder that holds the store, kotak.db.\n"
    "data_dir = kotak-data\n"
    "; The unprivileged user the daemons become after binding their ports, before\n"
    "; they read a byte from the network. Started as root without one, they refuse\n"
    "; to start; 'kotak init' run as root sets it and gives it data_dir.\n"
    "user = %s\n"
    "; How much the daemons log: error, warn, info or debug.\n"
    "log_level = info\n"
    "\n"
    "[tls]\n"
    "; The certificate chain and key for STARTTLS, STLS and the TLS ports, in PEM.\n"
    "; 'kotak init' made a self-signed pair for the host name above; put your\n"
    "; CA-signed ones here (or in place of these files) for production.\n"
    "cert = kotak-data/cert.pem\n"
    "key = kotak-data/key.pem\n"
    "\n"
    "[limits]\n"
    "; Sizes take K, M or G; times take ms, s, m or h.\n"
    "message_size = 25M            ; the largest message accepted (SIZE)\n"
    "recipients = 100              ; per message; RFC 5321 asks for at least 100\n"
    "command_line = 512            ; octets with CRLF; at least 512\n"
    "text_line = 1000              ; octets with CRLF; at least 1000\n"
    "bare_newline = normalize      ; a bare LF in a message: normalize (as CRLF) or reject\n"
    "idle_timeout = 5m             ; SMTP; RFC 5321 suggests 5 minutes\n"
    "min_data_rate = 500           ; octets/s a message must average past idle_timeout\n"
    "pop3_idle_timeout = 10m       ; POP3; RFC 1939 asks for at least 10 minutes\n"
    "tls_handshake_timeout = 30s\n"
    "connections = 1000            ; per daemon\n"
    "connections_per_address = 20  ; from one client address\n"
    "bad_commands = 10             ; errors before the server hangs up\n"
    "spool_memory = 64K            ; a larger message waits in a temporary file\n"
    "store_size = 0                ; cap on kotak.db (e.g. 20G); 0: the disk is the cap\n"
    "\n"
    "[auth]\n"
    "failure_delay = 2s            ; every failed login is answered this late\n"
    "max_failures = 5              ; failures of one user from one address within ...\n"
    "failure_window = 10m          ; ... this time lock that user out there for ...\n"
    "lockout = 15m                 ; ... this long; other users there still log in\n"
    "address_max_failures = 100    ; failures of any users from one address (IPv6: /64)\n"
    "address_failure_window = 1h   ; ... within this time lock the address out for ...\n"
    "address_lockout = 1h          ; ... this long (against password spraying)\n"
    "; A password that passed the slow crypt(3) check is remembered (as a keyed\n"
    "; hash, in memory) this long, so that mail clients polling every few\n"
    "; minutes do not pay for it each time. A new password takes effect at once.\n"
    "cache = 10m                   ; 0: check every login in full\n"
    "password_min_length = 8       ; characters a new password needs (user add, passwd)\n"
    "\n"
    "[dns]\n"
    "; Who MX look-ups ask: empty for /etc/resolv.conf, else ADDRESS:PORT,... ([::1]:53)\n"
    "servers =\n"
    "\n"
    "; Listeners. 'listen' is a comma-separated list of ADDRESS:PORT, an IPv6\n"
    "; address in brackets ([::1]:2525); 0.0.0.0 and [::] mean every address; an\n"
    "; empty value turns the listener off. These defaults listen on loopback and\n"
    "; on unprivileged ports, so that a first try needs no root. In production:\n"
    "; smtp 25, submission 587, submissions 465, pop3 110, pop3s 995.\n"
    "\n"
    "[smtp]          ; MX: no login, local recipients only\n"
    "listen = 127.0.0.1:2525\n"
    "\n"
    "[submission]    ; STARTTLS, login required\n"
    "listen = 127.0.0.1:2587\n"
    "\n"
    "[submissions]   ; implicit TLS, login required\n"
    "listen = 127.0.0.1:2465\n"
    "\n"
    "[pop3]          ; STLS\n"
    "listen = 127.0.0.1:2110\n"
    "expire = never                ; never | Nd: remove mail N days after its first RETR\n"
    "login_delay = 0               ; seconds between one user's logins (CAPA LOGIN-DELAY)\n"
    "\n"
    "[pop3s]         ; implicit TLS\n"
    "listen = 127.0.0.1:2995\n";

/* Delivery to other servers; a string of its own, as one would be past
 * what C compilers must take in one literal. */
static const char conf_template_relay[] =
    "\n"
    "[relay]\n"
    "; Mail for other domains, sent by logged-in users, waits in the queue\n"
    "; ('kotak queue list') until the receiving server takes it.\n"
    "smarthost =                   ; empty: each domain's MX; else HOST:PORT of a relay\n"
    "smarthost_tls = starttls      ; starttls | tls (implicit, as on 465)\n"
    "smarthost_user =              ; its login, when it wants one\n"
    "smarthost_password_file =     ; a file holding that password\n"
    "smarthost_ca =                ; CA file for the smarthost; empty: the system's\n"
    "port = 25                     ; the port of other domains' MX hosts\n"
    "\n"
    "[web]\n"
    "; The live view of every SMTP and POP3 session, passwords hidden ('kotak\n"
    "; watch' in a terminal). Empty: off. Sessions are recorded only while\n"
    "; someone watches.\n"
    "listen = 127.0.0.1:2080\n"
    "token =                       ; empty: none; else the view wants ?token=...\n"
    "\n"
    "[metrics]\n"
    "; Prometheus text at /metrics and a health check at /healthz, for both\n"
    "; daemons, served by kotak-smtpd. No password: keep it on loopback or on a\n"
    "; network only the monitor reaches. Empty: off. (e.g. 127.0.0.1:9187)\n"
    "listen =\n"
    "\n";

/*
 * The machine's fully qualified name, as the resolver gives it for its short
 * one (/etc/hosts first, as hostname -f does); the short name when none has
 * a dot. Mail servers greet with their full name (RFC 5321 4.1.3).
 */
static char *machine_hostname(const char *short_name)
{
    struct addrinfo hints = {.ai_flags = AI_CANONNAME, .ai_family = AF_UNSPEC}, *ai = NULL;
    char *name = NULL;
    if (getaddrinfo(short_name, NULL, &hints, &ai) == 0 && ai != NULL && ai->ai_canonname != NULL &&
        strchr(ai->ai_canonname, '.') != NULL)
        name = xstrdup(ai->ai_canonname);
    if (ai != NULL)
        freeaddrinfo(ai);
    return name != NULL ? name : xstrdup(short_name);
}

/* Writes text to path through path.tmp, so that path is whole or untouched. */
static void write_file(const char *path, const char *text)
{
    size_t n = strlen(path) + sizeof(".tmp");
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        ctl_die("cannot write %s: %s; pick a folder you can write to with -c", tmp,
                strerror(errno));
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            ctl_die("cannot write %s: %s", tmp, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        ctl_die("cannot write %s: %s", path, strerror(e));
    }
    free(tmp);
}

/* Runs argv (a program on PATH) and returns its exit status, or -1. */
static int run_program(char *const argv[])
{
    extern char **environ;
    pid_t pid;
    int status;
    if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0)
        return -1;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * The user the daemons serve as, when init runs as root: name if it exists;
 * kotak is made a system user when missing (two inits at once may race to
 * make it: the loser finds it made).
 */
static struct passwd *service_user(const char *name, bool named)
{
    char *const useradd[] = {"useradd",    "--system",          "--user-group", "--no-create-home",
                             "--home-dir", "/nonexistent",      "--shell",      "/usr/sbin/nologin",
                             "--comment",  "kotak mail server", (char *)name,   NULL};
    for (int attempt = 0; attempt < 5; attempt++) {
        struct passwd *pw = getpwnam(name);
        if (pw != NULL)
            return pw;
        if (named)
            ctl_die("no user '%s'; create it first, or leave --user out and init makes the "
                    "system user kotak",
                    name);
        if (run_program(useradd) == 0)
            printf("made the system user %s for the daemons to serve as\n", name);
        else
            usleep(200 * 1000);
    }
    ctl_die("cannot make the system user %s with useradd; make it by hand, or name an existing "
            "one with --user",
            name);
}

/* Gives dir and what it holds (not deeper) to pw: the daemons, once they
 * are pw, open the store, the certificate and the lockout table there. */
static void give_folder(const char *dir, const struct passwd *pw)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL || fchown(fd, pw->pw_uid, pw->pw_gid) != 0)
        ctl_die("cannot give %s to the user %s: %s", dir, pw->pw_name, strerror(errno));
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        /* A second name for another file (a hard link someone made in the
         * folder) is not given away: it may name /etc/shadow. */
        struct stat st;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
            st.st_nlink > 1)
            continue;
        if (fchownat(fd, e->d_name, pw->pw_uid, pw->pw_gid, AT_SYMLINK_NOFOLLOW) != 0)
            ctl_die("cannot give %s/%s to the user %s: %s", dir, e->d_name, pw->pw_name,
                    strerror(errno));
    }
    closedir(d);
}

/*
 * A data_dir that is already there must be a folder of ours (or of the user
 * the daemons serve as) that nobody else may write to: init writes the store
 * and the key into it, and run as root, gives what it holds away.
 */
static void check_data_dir(const char *dir, const struct passwd *pw)
{
    struct stat st;
    if (lstat(dir, &st) != 0) {
        if (errno == ENOENT)
            return;
        ctl_die("cannot look at %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        ctl_die("%s is there and is no folder; remove it or set another data_dir", dir);
    if (st.st_uid != geteuid() && (pw == NULL || st.st_uid != pw->pw_uid))
        ctl_die("%s belongs to another user; remove it or set another data_dir", dir);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        ctl_die("%s may be written by others; remove it or run 'chmod 700 %s' first", dir, dir);
}

static void remove_store(const char *store_path)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(store_path) + 5;
        char *p = xmalloc(n);
        snprintf(p, n, "%s%s", store_path, suffixes[i]);
        if (unlink(p) != 0 && errno != ENOENT)
            ctl_die("cannot remove %s: %s", p, strerror(errno));
        free(p);
    }
}

/* Room for the names of the first certificate: see cert_names. */
#define INIT_CERT_NAMES (4 + CONF_LISTENER_COUNT * CONF_LISTEN_MAX)

/*
 * The names the first certificate is for: the host name, localhost, the
 * loopback addresses, and the address of every listener in conf but the
 * wildcards (0.0.0.0, ::), which name no address a client could use, and
 * link-local ones with a %zone, which no certificate can name. A client that
 * trusts the certificate then verifies it whichever of them it connects to;
 * cert_make_self_signed drops the repeats. Fills names with pointers into
 * conf and returns their count.
 */
static size_t cert_names(const struct conf *conf, const char *names[INIT_CERT_NAMES])
{
    size_t n = 0;
    names[n++] = conf->hostname;
    names[n++] = "localhost";
    names[n++] = "127.0.0.1";
    names[n++] = "::1";
    for (int k = 0; k < CONF_LISTENER_COUNT; k++) {
        for (size_t i = 0; i < conf->listeners[k].n; i++) {
            const char *host = conf->listeners[k].ep[i].host;
            unsigned char a[16] = {0};
            static const unsigned char any[16];
            bool parsed = inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
            if (parsed && memcmp(a, any, sizeof a) != 0)
                names[n++] = host;
        }
    }
    return n;
}

/* A file the daemons must read, as root's with the service user's group (a key: 0640). */
static void give_group(const char *path, const struct passwd *pw, mode_t mode)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fchown(fd, 0, pw->pw_gid) != 0 || fchmod(fd, mode) != 0)
        ctl_die("cannot give %s to the group of %s: %s", path, pw->pw_name, strerror(errno));
    close(fd);
}

/*
 * kotak init --keep-config: what an installed config (a package's
 * /etc/kotak/kotak.conf) names and lacks: the data folder, the store and a
 * self-signed certificate, each made only when missing; the config itself
 * is read, never written. Run again, it changes nothing.
 */
static int init_keeping_config(const char *path)
{
    struct conf conf;
    char err[512];
    conf_defaults(&conf);
    if (conf_load(path, &conf, err, sizeof(err)) < 0)
        ctl_die("%s", err);
    char *data_dir = conf_path(&conf, conf.data_dir), *store_path = conf_store_path(&conf);
    struct passwd *pw = NULL;
    if (geteuid() == 0)
        pw = service_user(conf.run_user[0] ? conf.run_user : "kotak", conf.run_user[0] != '\0');
    check_data_dir(data_dir, pw);
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST)
        ctl_die("cannot create %s: %s", data_dir, strerror(errno));
    check_data_dir(data_dir, pw);
    struct stat sb;
    if (stat(store_path, &sb) == 0) {
        printf("kept the store %s\n", store_path);
    } else {
        struct store *s;
        if (store_open(store_path, STORE_CREATE, &s, err, sizeof(err)) < 0)
            ctl_die("%s", err);
        store_close(&s);
        printf("created the store %s\n", store_path);
    }
    char *cert = conf_path(&conf, conf.tls_cert), *key = conf_path(&conf, conf.tls_key);
    bool have_cert = stat(cert, &sb) == 0, have_key = stat(key, &sb) == 0;
    if (have_cert != have_key)
        ctl_die("%s is there but %s is not; put the pair back, or remove the one left and run "
                "this again for a new self-signed pair",
                have_cert ? cert : key, have_cert ? key : cert);
    if (have_cert) {
        printf("kept the certificate %s\n", cert);
    } else {
        char *copy = xstrdup(cert);
        const char *dir = dirname(copy);
        if (mkdir(dir, 0755) == 0) {
            if (chmod(dir, 0755) != 0) /* whatever the umask: the daemons' user reads in it */
                ctl_die("cannot open up %s: %s", dir, strerror(errno));
        } else if (errno != EEXIST) {
            ctl_die("cannot create %s: %s", dir, strerror(errno));
        }
        free(copy);
        const char *names[INIT_CERT_NAMES];
        size_t n_names = cert_names(&conf, names);
        if (cert_make_self_signed(names, n_names, cert, key, err, sizeof(err)) < 0)
            ctl_die("%s", err);
        if (pw != NULL) { /* it may lie outside the data folder: /etc/kotak/tls */
            give_group(cert, pw, 0644);
            give_group(key, pw, 0640);
        }
        printf("made a self-signed certificate for %s: %s\n", conf.hostname, cert);
    }
    if (pw != NULL)
        give_folder(data_dir, pw);
    free(cert);
    free(key);
    free(data_dir);
    free(store_path);
    conf_free(&conf);
    return 0;
}

int ctl_init(const struct ctl *c)
{
    static const char usage[] =
        "kotak [-c FILE] init [--hostname NAME] [--user NAME] [--force] | --keep-config";
    const char *hostname_arg = NULL, *user_arg = NULL;
    bool force = false;
    if (ctl_wants_help(c->argc, c->argv))
        ctl_help("init");
    if (c->argc == 1 && strcmp(c->argv[0], "--keep-config") == 0) {
        const char *env = getenv("KOTAK_CONFIG");
        return init_keeping_config(conf_locate(c->config_arg ? c->config_arg : env && env[0] ? env
                                                                                          : NULL));
    }
    for (int i = 0; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--force") == 0)
            force = true;
        else if (strcmp(c->argv[i], "--hostname") == 0 && i + 1 < c->argc)
            hostname_arg = c->argv[++i];
        else if (strcmp(c->argv[i], "--user") == 0 && i + 1 < c->argc)
            user_arg = c->argv[++i];
        else
            ctl_die("usage: %s", usage);
    }
    const char *env = getenv("KOTAK_CONFIG");
    const char *path = c->config_arg ? c->config_arg : env && env[0] ? env : "kotak.conf";

    struct conf conf;
    conf_defaults(&conf);
    char hostname[ADDR_DOMAIN_MAX + 1];
    char *machine = hostname_arg ? NULL : machine_hostname(conf.hostname);
    const char *name = hostname_arg ? hostname_arg : machine;
    if (addr_parse_domain(name, strlen(name), 0, hostname) < 0)
        ctl_die("'%s' is not a host name; give one with --hostname mail.example.org", name);
    if (machine != NULL) /* said, since greetings, Received: and the certificate carry it */
        printf("host name %s, the machine's (--hostname NAME picks another)\n", hostname);
    free(machine);

    struct stat sb;
    if (!force && stat(path, &sb) == 0)
        ctl_die("%s already exists; add --force to replace it and its store (all mail in it "
                "is lost)", path);

    /* Where the store will be, checked before anything is written, so that a
     * refused init leaves no trace. */
    conf_set_file(&conf, path);
    char *data_dir = conf_path(&conf, conf.data_dir);
    char *store_path = conf_store_path(&conf);
    if (!force && stat(store_path, &sb) == 0)
        ctl_die("%s already exists; add --force to replace it (all mail in it is lost)",
                store_path);

    struct passwd *pw = NULL;
    if (geteuid() == 0)
        pw = service_user(user_arg ? user_arg : "kotak", user_arg != NULL);
    else if (user_arg != NULL)
        ctl_die("--user needs kotak init to run as root, which can give the data folder away");
    check_data_dir(data_dir, pw);
    const char *user = pw ? pw->pw_name : "";
    size_t n =
        sizeof(conf_template) + sizeof(conf_template_relay) + strlen(hostname) + strlen(user);
    char *text = xmalloc(n);
    int len = snprintf(text, n, conf_template, hostname, user);
    snprintf(text + len, n - (size_t)len, "%s", conf_template_relay);
    write_file(path, text);
    free(text);

    char err[512];
    if (conf_load(path, &conf, err, sizeof(err)) < 0)
        ctl_die("%s", err); /* only if the template and the loader disagree */
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST)
        ctl_die("cannot create %s: %s", data_dir, strerror(errno));
    check_data_dir(data_dir, pw); /* again: it may have appeared meanwhile */
    if (chmod(data_dir, 0700) != 0)
        ctl_die("cannot make %s private: %s", data_dir, strerror(errno));
    remove_store(store_path);

    struct store *s;
    int rc = store_open(store_path, STORE_CREATE, &s, err, sizeof(err));
    if (rc < 0)
        ctl_die("%s", err);
    store_close(&s);
    char *cert = conf_path(&conf, conf.tls_cert), *key = conf_path(&conf, conf.tls_key);
    const char *names[INIT_CERT_NAMES];
    size_t n_names = cert_names(&conf, names);
    if (cert_make_self_signed(names, n_names, cert, key, err, sizeof(err)) < 0)
        ctl_die("%s", err);
    printf("made a self-signed certificate for %s, localhost and the listeners' addresses: %s\n",
           conf.hostname, cert);
    free(cert);
    free(key);
    if (pw != NULL) {
        give_folder(data_dir, pw);
        printf("the daemons, started as root, serve as the user %s, which owns %s\n", pw->pw_name,
               data_dir);
    }
    printf("wrote %s and created the store %s\n"
           "next: kotak domain add example.test; kotak user add alice@example.test\n",
           path, store_path);
    free(data_dir);
    free(store_path);
    conf_free(&conf);
    return 0;
}
