/*
 * test_conf.c — kotak.conf loading (common/conf.h): defaults, a full file,
 * listen lists, one error per file with its "PATH:LINE: " prefix, comments,
 * path resolution against the file's folder and conf_locate's order.
 *
 * Files are written with mkstemp under /tmp and removed at the end; every
 * conf is freed, since the suite also runs under LeakSanitizer.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "tap.h"

#define ERR_SIZE 512

static char tmp_dir[64]; /* a mkdtemp folder for files that need a known name */

/* Writes text to a new file under /tmp; returns its path (static storage). */
static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/kotak-test-conf-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        exit(2);
    }
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n) {
        perror("write");
        exit(2);
    }
    close(fd);
    return path;
}

/* Writes text to dir/name; exits on failure. */
static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* Loads text over the defaults into *c. Returns conf_load's result. */
static int load_text(const char *text, struct conf *c, char *err, char *path_out)
{
    const char *path = write_tmp(text);
    if (path_out != NULL)
        strcpy(path_out, path);
    conf_defaults(c);
    err[0] = '\0';
    int rc = conf_load(path, c, err, ERR_SIZE);
    unlink(path);
    return rc;
}

/* Checks that text fails at line with a message holding what. */
static void expect_error(const char *name, const char *text, int line, const char *what)
{
    struct conf c;
    char err[ERR_SIZE], path[64], prefix[128];
    int rc = load_text(text, &c, err, path);
    is_int(rc, -1, "%s: refused", name);
    snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
    ok(strncmp(err, prefix, strlen(prefix)) == 0, "%s: message starts with PATH:%d:", name, line);
    ok(strstr(err, what) != NULL, "%s: message says '%s'", name, what);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, what) == NULL)
        printf("#   message: %s\n", err);
    ok(strchr(err, '\n') == NULL, "%s: one line", name);
    conf_free(&c);
}

static void test_defaults(void)
{
    static const uint16_t ports[CONF_LISTENER_COUNT] = {2525, 2587, 2465, 2110, 2995};
    static const char *const names[CONF_LISTENER_COUNT] = {"smtp", "submission", "submissions",
                                                           "pop3", "pop3s"};
    struct conf c;
    conf_defaults(&c);
    for (int i = 0; i < CONF_LISTENER_COUNT; i++) {
        is_str(conf_listener_name((enum conf_listener_kind)i), names[i], "listener %d is [%s]", i,
               names[i]);
        is_int(c.listeners[i].n, 1, "default [%s]: one address", names[i]);
        is_str(c.listeners[i].ep[0].host, "127.0.0.1", "default [%s]: 127.0.0.1", names[i]);
        is_int(c.listeners[i].ep[0].port, ports[i], "default [%s]: port %u", names[i],
               (unsigned)ports[i]);
    }
    is_str(c.data_dir, "kotak-data", "default data_dir");
    is_int(c.auth.max_failures, 5, "default max_failures, per (user, address)");
    is_int(c.auth.address_max_failures, 100, "default address_max_failures");
    is_int(c.auth.address_failure_window_ms, 3600000, "default address_failure_window 1h");
    is_int(c.auth.address_lockout_ms, 3600000, "default address_lockout 1h");
    is_int(c.auth.password_min_length, 8, "default password_min_length 8");
    is_int(c.log_level, LOG_INFO, "default log level info");
    is_int(c.limits.bare_newline_reject, 0, "default bare_newline normalize");
    is_int(c.limits.min_data_rate, 500, "default min_data_rate 500 octets/s");
    is_str(c.run_user, "", "default user is none");
    is_str(c.dns_servers, "", "default [dns] servers: empty, /etc/resolv.conf's");
    ok(c.hostname != NULL && c.hostname[0] != '\0', "default hostname set (%s)",
       c.hostname ? c.hostname : "(null)");
    ok(c.path == NULL, "defaults come from no file");
    is_str(c.dir, ".", "defaults resolve against .");
    char *store = conf_store_path(&c);
    is_str(store, "kotak-data/kotak.db", "default store path");
    free(store);
    conf_free(&c);
    ok(c.hostname == NULL && c.data_dir == NULL, "conf_free clears");
    conf_free(&c); /* twice is harmless */
}

static void test_full_file(void)
{
    const char *text = "; kotak.conf, written by a test\n"
                       "\n"
                       "[server]\n"
                       "hostname = Mail.Example.ORG\n"
                       "data_dir = /var/lib/kotak\n"
                       "user = kotak\n"
                       "log_level = debug\n"
                       "\n"
                       "[smtp]\n"
                       "listen = 0.0.0.0:25\n"
                       "[submission]\n"
                       "listen = 127.0.0.1:587, [::1]:587\n"
                       "[submissions]\n"
                       "listen=[::]:465\n"
                       "[pop3]\n"
                       "listen =\n"
                       "[pop3s]\n"
                       "  listen   =   192.0.2.1:995  \n";
    struct conf c;
    char err[ERR_SIZE], path[64];
    is_int(load_text(text, &c, err, path), 0, "full file loads");
    if (err[0])
        printf("#   message: %s\n", err);
    is_str(c.hostname, "mail.example.org", "hostname, folded to lower case");
    is_str(c.data_dir, "/var/lib/kotak", "data_dir");
    is_str(c.run_user, "kotak", "user");
    is_int(c.log_level, LOG_DEBUG, "log_level debug");
    is_str(c.path, path, "path recorded");
    is_str(c.dir, "/tmp", "dir is the file's folder");

    struct conf_listener *l = c.listeners;
    ok(l[CONF_SMTP].n == 1 && strcmp(l[CONF_SMTP].ep[0].host, "0.0.0.0") == 0 &&
           l[CONF_SMTP].ep[0].port == 25,
       "[smtp] 0.0.0.0:25");
    is_int(l[CONF_SUBMISSION].n, 2, "[submission] two addresses");
    is_str(l[CONF_SUBMISSION].ep[0].host, "127.0.0.1", "[submission] first host");
    is_int(l[CONF_SUBMISSION].ep[0].port, 587, "[submission] first port");
    is_str(l[CONF_SUBMISSION].ep[1].host, "::1", "[submission] IPv6 host without brackets");
    is_int(l[CONF_SUBMISSION].ep[1].port, 587, "[submission] second port");
    ok(l[CONF_SUBMISSIONS].n == 1 && strcmp(l[CONF_SUBMISSIONS].ep[0].host, "::") == 0 &&
           l[CONF_SUBMISSIONS].ep[0].port == 465,
       "[submissions] [::]:465");
    is_int(l[CONF_POP3].n, 0, "[pop3] empty listen turns it off");
    ok(l[CONF_POP3S].n == 1 && strcmp(l[CONF_POP3S].ep[0].host, "192.0.2.1") == 0 &&
           l[CONF_POP3S].ep[0].port == 995,
       "[pop3s] with spaces around key and value");
    char *store = conf_store_path(&c);
    is_str(store, "/var/lib/kotak/kotak.db", "absolute data_dir kept");
    free(store);
    conf_free(&c);

    /* An empty file and a file of comments leave the defaults. */
    is_int(load_text("", &c, err, NULL), 0, "empty file loads");
    ok(c.listeners[CONF_SMTP].n == 1 && c.listeners[CONF_SMTP].ep[0].port == 2525,
       "empty file keeps the defaults");
    conf_free(&c);
    is_int(load_text("; one\n# two\n\n   ; three\n[server]\n; four\n", &c, err, NULL), 0,
           "file of comments loads");
    is_int(c.log_level, LOG_INFO, "comments keep the defaults");
    conf_free(&c);

    /* Only the keys given change. */
    is_int(load_text("[smtp]\nlisten = [::1]:2525\n", &c, err, NULL), 0, "IPv6 listen loads");
    ok(c.listeners[CONF_SMTP].n == 1 && strcmp(c.listeners[CONF_SMTP].ep[0].host, "::1") == 0 &&
           c.listeners[CONF_SMTP].ep[0].port == 2525,
       "[::1]:2525 gives host ::1, port 2525");
    ok(c.listeners[CONF_POP3].n == 1 && c.listeners[CONF_POP3].ep[0].port == 2110,
       "other listeners keep their defaults");
    is_str(c.data_dir, "kotak-data", "data_dir keeps its default");
    conf_free(&c);

    is_int(load_text("[smtp]\nlisten = 127.0.0.1:25, [::1]:25\n", &c, err, NULL), 0,
           "a list loads");
    ok(c.listeners[CONF_SMTP].n == 2 &&
           strcmp(c.listeners[CONF_SMTP].ep[0].host, "127.0.0.1") == 0 &&
           c.listeners[CONF_SMTP].ep[0].port == 25 &&
           strcmp(c.listeners[CONF_SMTP].ep[1].host, "::1") == 0 &&
           c.listeners[CONF_SMTP].ep[1].port == 25,
       "127.0.0.1:25, [::1]:25 gives two endpoints");
    conf_free(&c);

    for (int i = 0; i < CONF_LISTENER_COUNT; i++) {
        char t[64];
        snprintf(t, sizeof(t), "[%s]\nlisten =\n", conf_listener_name((enum conf_listener_kind)i));
        is_int(load_text(t, &c, err, NULL), 0, "empty listen in [%s] loads",
               conf_listener_name((enum conf_listener_kind)i));
        is_int(c.listeners[i].n, 0, "[%s] is off", conf_listener_name((enum conf_listener_kind)i));
        conf_free(&c);
    }

    /* Each log level. */
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        char t[64];
        snprintf(t, sizeof(t), "[server]\nlog_level = %s\n", levels[i]);
        is_int(load_text(t, &c, err, NULL), 0, "log_level %s loads", levels[i]);
        is_int(c.log_level, i, "log_level %s", levels[i]);
        conf_free(&c);
    }

    /* Each bare_newline choice. */
    is_int(load_text("[limits]\nbare_newline = reject\n", &c, err, NULL), 0,
           "bare_newline reject loads");
    is_int(c.limits.bare_newline_reject, 1, "bare_newline reject");
    conf_free(&c);
    is_int(load_text("[limits]\nbare_newline = normalize\n", &c, err, NULL), 0,
           "bare_newline normalize loads");
    is_int(c.limits.bare_newline_reject, 0, "bare_newline normalize");
    conf_free(&c);
}

static void test_comments(void)
{
    struct conf c;
    char err[ERR_SIZE];
    const char *text = "; whole-line comment\n"
                       "[server] ; after a section\n"
                       "   ; indented comment\n"
                       "log_level = debug ; inline comment\n"
                       "data_dir = my data ; a folder with a space\n"
                       "[smtp]\n"
                       "listen = 127.0.0.1:25, [::1]:25 ; both loopbacks\n"
                       "# hash comment\n";
    is_int(load_text(text, &c, err, NULL), 0, "file with ; comments loads");
    if (err[0])
        printf("#   message: %s\n", err);
    is_int(c.log_level, LOG_DEBUG, "inline comment after a value is dropped");
    is_str(c.data_dir, "my data", "inline comment dropped, inner space kept");
    is_int(c.listeners[CONF_SMTP].n, 2, "inline comment after a list is dropped");
    conf_free(&c);

    /* A ';' with no space before it is part of the value. */
    expect_error("';' glued to the value", "[server]\nlog_level = debug;x\n", 2, "log level");
}

static void test_errors(void)
{
    expect_error("unknown key", "[server]\nhostname = a.example\nbogus = 1\n", 3,
                 "unknown key 'bogus'");
    expect_error("listen in [server]", "[server]\nlisten = 127.0.0.1:25\n", 2, "unknown key");
    expect_error("hostname in [smtp]", "[smtp]\nhostname = a.example\n", 2, "unknown key");
    expect_error("unknown section", "[server]\nuser = x\n\n[smtpx]\nlisten = 127.0.0.1:25\n", 4,
                 "unknown section [smtpx]");
    expect_error("unknown section with no keys", "[server]\nuser = x\n[bogus]\n", 3,
                 "unknown section [bogus]");
    expect_error("key outside a section", "; top\n\nhostname = a.example\n[server]\n", 3,
                 "outside any section");
    expect_error("duplicate key", "[server]\nlog_level = info\nuser = a\nlog_level = debug\n", 4,
                 "set twice");
    expect_error("duplicate key in a section opened twice",
                 "[server]\nuser = a\n[smtp]\nlisten =\n[server]\nuser = b\n", 6, "set twice");
    expect_error("duplicate listen", "[smtp]\nlisten =\nlisten = 127.0.0.1:25\n", 3, "set twice");
    expect_error("not an INI line", "[server]\nuser = a\nthis is not ini\n", 3, "not an INI line");
    expect_error("unclosed section", "[server]\nuser = a\n[smtp\n", 3, "not an INI line");
    expect_error("address_max_failures 0", "[auth]\naddress_max_failures = 0\n", 2,
                 "out of range; use 1 to 100000");
    expect_error("min_data_rate past 1G", "[limits]\nmin_data_rate = 2G\n", 2, "out of range");
    expect_error("password_min_length 0", "[auth]\npassword_min_length = 0\n", 2,
                 "out of range; use 1 to 64");
    expect_error("address_lockout past a day", "[auth]\naddress_lockout = 86401s\n", 2,
                 "out of range");

    expect_error("no port", "[smtp]\nlisten = 127.0.0.1\n", 2, "no port");
    expect_error("no port after ':'", "[smtp]\nlisten = 127.0.0.1:\n", 2, "not a port");
    expect_error("IPv6 no port", "[smtp]\nlisten = [::1]\n", 2, "no port");
    expect_error("port 0", "[smtp]\nlisten = 127.0.0.1:0\n", 2, "not a port");
    expect_error("port 65536", "[smtp]\n\nlisten = 127.0.0.1:65536\n", 3, "not a port");
    expect_error("port 99999999999999999999", "[smtp]\nlisten = 127.0.0.1:99999999999999999999\n",
                 2, "not a port");
    expect_error("non-numeric port", "[smtp]\nlisten = 127.0.0.1:smtp\n", 2, "not a port");
    expect_error("port with junk", "[smtp]\nlisten = 127.0.0.1:25x\n", 2, "not a port");
    expect_error("negative port", "[smtp]\nlisten = 127.0.0.1:-25\n", 2, "not a port");
    expect_error("hostname, not an IP", "[smtp]\nlisten = localhost:25\n", 2, "not an IP address");
    expect_error("bad IPv4", "[smtp]\nlisten = 127.0.0.256:25\n", 2, "not an IP address");
    expect_error("IPv6 without brackets", "[submission]\nlisten = ::1:587\n", 2, "brackets");
    expect_error("IPv6 without closing bracket", "[submission]\nlisten = [::1:587\n", 2,
                 "closing ']'");
    expect_error("trailing comma", "[pop3]\nlisten = 127.0.0.1:110,\n", 2, "comma");
    expect_error("empty list item", "[pop3]\nlisten = 127.0.0.1:110,,127.0.0.1:111\n", 2,
                 "empty address");
    expect_error("second listener bad", "[smtp]\nlisten = 127.0.0.1:25\n[pop3]\nlisten = x:1\n", 4,
                 "not an IP address");

    char text[512] = "[smtp]\nlisten = ";
    for (int i = 0; i <= CONF_LISTEN_MAX; i++) {
        char ep[32];
        snprintf(ep, sizeof(ep), "%s127.0.0.%d:25", i ? ", " : "", i + 1);
        strcat(text, ep);
    }
    strcat(text, "\n");
    expect_error("more than CONF_LISTEN_MAX", text, 2, "more than");

    expect_error("bad hostname (leading hyphen)", "[server]\nhostname = -mail.example\n", 2,
                 "not a host name");
    expect_error("bad hostname (underscore)", "[server]\nhostname = mail_1.example\n", 2,
                 "not a host name");
    expect_error("bad hostname (double dot)", "[server]\nhostname = mail..example\n", 2,
                 "not a host name");
    expect_error("bad hostname (empty)", "[server]\nhostname =\n", 2, "not a host name");
    expect_error("bad hostname (IP literal)", "[server]\nhostname = [192.0.2.1]\n", 2,
                 "not a host name");
    expect_error("empty data_dir", "[server]\ndata_dir =\n", 2, "data_dir is empty");
    expect_error("bad log_level", "[server]\nlog_level = verbose\n", 2, "not a log level");
    expect_error("bad bare_newline", "[limits]\nbare_newline = accept\n", 2,
                 "use normalize or reject");
    expect_error("log_level in capitals", "[server]\nlog_level = INFO\n", 2, "not a log level");

    /* Only the first error is reported, with its own line. */
    expect_error("first of two errors", "[server]\nbogus = 1\nlog_level = loud\n", 2,
                 "unknown key 'bogus'");
    /* A line inih cannot parse, then a bad key: the message must be about the
     * first, at the line inih reports. */
    expect_error("syntax error before a bad key", "[server]\njunk\nbogus = 1\n", 2,
                 "not an INI line");

    /* A small err buffer is cut, not overrun. */
    struct conf c;
    char small[16];
    const char *path = write_tmp("[server]\nbogus = 1\n");
    conf_defaults(&c);
    memset(small, 'x', sizeof(small));
    is_int(conf_load(path, &c, small, sizeof(small)), -1, "error with a 16-byte err buffer");
    is_int(strlen(small), 15, "message cut to fit, NUL-terminated");
    unlink(path);
    conf_free(&c);
}

/* Lines longer than libinih's line buffer (200 bytes on Debian) still hold
 * valid settings: a 239-octet host name, or eight IPv6 endpoints. Either they
 * load, or the error says the line is too long, at its own line. */
static void test_long_lines(void)
{
    char host[256] = "", text[1024];
    for (int i = 0; i < 4; i++) {
        char label[64];
        memset(label, 'a' + i, 59);
        label[59] = '\0';
        if (i)
            strcat(host, ".");
        strcat(host, label);
    }
    snprintf(text, sizeof(text), "[server]\nhostname = %s\nlog_level = debug\n", host);
    struct conf c;
    char err[ERR_SIZE], path[64], prefix[80];
    int rc = load_text(text, &c, err, path);
    snprintf(prefix, sizeof(prefix), "%s:2: ", path);
    if (rc == 0) {
        is_str(c.hostname, host, "a 239-octet hostname loads whole");
    } else {
        ok(strncmp(err, prefix, strlen(prefix)) == 0 && strstr(err, "long") != NULL,
           "a 239-octet hostname line: loads, or is refused as too long at line 2");
        printf("#   message: %s\n", err);
    }
    conf_free(&c);

    strcpy(text, "[smtp]\nlisten = ");
    for (int i = 0; i < CONF_LISTEN_MAX; i++) {
        char ep[64];
        snprintf(ep, sizeof(ep), "%s[2001:db8:ffff:ffff:ffff:ffff:ffff:%x]:65535", i ? ", " : "",
                 i + 1);
        strcat(text, ep);
    }
    strcat(text, "\n");
    rc = load_text(text, &c, err, path);
    snprintf(prefix, sizeof(prefix), "%s:2: ", path);
    if (rc == 0) {
        ok(c.listeners[CONF_SMTP].n == CONF_LISTEN_MAX &&
               strcmp(c.listeners[CONF_SMTP].ep[7].host, "2001:db8:ffff:ffff:ffff:ffff:ffff:8") ==
                   0,
           "eight IPv6 endpoints on one line load");
    } else {
        ok(strncmp(err, prefix, strlen(prefix)) == 0 && strstr(err, "long") != NULL,
           "eight IPv6 endpoints: load, or are refused as too long at line 2");
        printf("#   message: %s\n", err);
    }
    conf_free(&c);
}

static void test_missing_and_unreadable(void)
{
    struct conf c;
    char err[ERR_SIZE], path[128];
    snprintf(path, sizeof(path), "%s/no-such.conf", tmp_dir);
    conf_defaults(&c);
    is_int(conf_load(path, &c, err, sizeof(err)), -1, "missing file refused");
    ok(strncmp(err, path, strlen(path)) == 0, "missing file: message names the path");
    ok(strstr(err, "kotak init") != NULL, "missing file: message mentions 'kotak init' (%s)", err);
    ok(c.path == NULL, "missing file: path not recorded");
    conf_free(&c);

    /* A folder is no config file. */
    conf_defaults(&c);
    err[0] = '\0';
    int rc = conf_load(tmp_dir, &c, err, sizeof(err));
    is_int(rc, -1, "a folder as the config file is refused");
    ok(rc == 0 || strncmp(err, tmp_dir, strlen(tmp_dir)) == 0,
       "a folder: message names the path (%s)", err);
    conf_free(&c);
}

/* Loading a second file into a loaded conf replaces what it sets, no leaks. */
static void test_reload(void)
{
    struct conf c;
    char err[ERR_SIZE];
    is_int(load_text("[server]\nhostname = one.example\nuser = a\n", &c, err, NULL), 0,
           "first load");
    const char *p2 = write_tmp("[server]\nhostname = two.example\nuser = b\n");
    char path2[64];
    strcpy(path2, p2);
    is_int(conf_load(path2, &c, err, sizeof(err)), 0, "second load into the same conf");
    is_str(c.hostname, "two.example", "second file's hostname");
    is_str(c.run_user, "b", "second file's user (no 'set twice' across loads)");
    is_str(c.path, path2, "second file's path");
    unlink(path2);
    conf_free(&c);

    /* A load that fails half-way owns nothing beyond conf_free. */
    is_int(load_text("[server]\nhostname = half.example\ndata_dir = d\nuser = u\nbogus = 1\n", &c,
                     err, NULL),
           -1, "load failing after three keys");
    conf_free(&c);
    ok(c.hostname == NULL, "conf_free after a failed load");
}

static void test_paths(void)
{
    char path[160], sub[100], cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        perror("getcwd");
        exit(2);
    }
    snprintf(sub, sizeof(sub), "%s/etc", tmp_dir);
    mkdir(sub, 0700);
    snprintf(path, sizeof(path), "%s/kotak.conf", sub);
    write_file(path, "[server]\ndata_dir = data\n");

    struct conf c;
    char err[ERR_SIZE], want[256];
    conf_defaults(&c);
    is_int(conf_load(path, &c, err, sizeof(err)), 0, "load from a folder");
    is_str(c.dir, sub, "dir is the config file's folder");
    char *p = conf_path(&c, "certs/mail.pem");
    snprintf(want, sizeof(want), "%s/certs/mail.pem", sub);
    is_str(p, want, "conf_path resolves a relative path against the folder");
    free(p);
    p = conf_path(&c, "/etc/ssl/mail.pem");
    is_str(p, "/etc/ssl/mail.pem", "conf_path keeps an absolute path");
    free(p);
    p = conf_store_path(&c);
    snprintf(want, sizeof(want), "%s/data/kotak.db", sub);
    is_str(p, want, "conf_store_path resolves data_dir against the folder");
    free(p);
    conf_free(&c);

    write_file(path, "[server]\ndata_dir = /srv/kotak\n");
    conf_defaults(&c);
    is_int(conf_load(path, &c, err, sizeof(err)), 0, "load with an absolute data_dir");
    p = conf_store_path(&c);
    is_str(p, "/srv/kotak/kotak.db", "conf_store_path keeps an absolute data_dir");
    free(p);
    conf_free(&c);

    /* Relative config paths, from inside tmp_dir. */
    if (chdir(tmp_dir) != 0) {
        perror("chdir");
        exit(2);
    }
    write_file("kotak.conf", "[server]\ndata_dir = here\n");
    conf_defaults(&c);
    is_int(conf_load("kotak.conf", &c, err, sizeof(err)), 0, "load kotak.conf from the cwd");
    p = conf_store_path(&c);
    ok(strcmp(p, "here/kotak.db") == 0 || strcmp(p, "./here/kotak.db") == 0,
       "relative file in the cwd: store path here/kotak.db (%s)", p);
    free(p);
    conf_free(&c);

    write_file("etc/kotak.conf", "[server]\ndata_dir = data\n");
    conf_defaults(&c);
    is_int(conf_load("etc/kotak.conf", &c, err, sizeof(err)), 0, "load etc/kotak.conf");
    is_str(c.dir, "etc", "dir of etc/kotak.conf is etc");
    p = conf_store_path(&c);
    is_str(p, "etc/data/kotak.db", "relative folder: etc/data/kotak.db");
    free(p);
    p = conf_path(&c, "/abs");
    is_str(p, "/abs", "relative folder keeps an absolute path");
    free(p);
    conf_free(&c);

    unlink("etc/kotak.conf");
    unlink("kotak.conf");
    rmdir("etc");
    if (chdir(cwd) != 0) {
        perror("chdir");
        exit(2);
    }
}

static void test_locate(void)
{
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        perror("getcwd");
        exit(2);
    }
    char *saved = getenv("KOTAK_CONFIG") ? strdup(getenv("KOTAK_CONFIG")) : NULL;
    if (chdir(tmp_dir) != 0) {
        perror("chdir");
        exit(2);
    }
    unlink("kotak.conf");

    setenv("KOTAK_CONFIG", "/from/env.conf", 1);
    is_str(conf_locate("/from/cli.conf"), "/from/cli.conf", "-c wins over KOTAK_CONFIG");
    is_str(conf_locate(NULL), "/from/env.conf", "KOTAK_CONFIG without -c");
    write_file("kotak.conf", "");
    is_str(conf_locate(NULL), "/from/env.conf", "KOTAK_CONFIG wins over ./kotak.conf");
    setenv("KOTAK_CONFIG", "", 1);
    is_str(conf_locate(NULL), "kotak.conf", "empty KOTAK_CONFIG is ignored: ./kotak.conf");
    unsetenv("KOTAK_CONFIG");
    is_str(conf_locate(NULL), "kotak.conf", "./kotak.conf when it exists");
    is_str(conf_locate("x.conf"), "x.conf", "-c wins over ./kotak.conf");
    unlink("kotak.conf");
    is_str(conf_locate(NULL), "/etc/kotak/kotak.conf", "else /etc/kotak/kotak.conf");
    is_str(conf_locate(""), "", "-c is taken as given");

    if (chdir(cwd) != 0) {
        perror("chdir");
        exit(2);
    }
    if (saved != NULL) {
        setenv("KOTAK_CONFIG", saved, 1);
        free(saved);
    }
}

static void test_parse_listen(void)
{
    struct conf_listener l;
    char err[256];

    memset(&l, 0x55, sizeof(l));
    is_int(conf_parse_listen("", &l, err, sizeof(err)), 0, "listen '' parses");
    is_int(l.n, 0, "listen '' is off");
    is_int(conf_parse_listen("  \t ", &l, err, sizeof(err)), 0, "listen of blanks parses");
    is_int(l.n, 0, "listen of blanks is off");

    is_int(conf_parse_listen("127.0.0.1:25", &l, err, sizeof(err)), 0, "one endpoint");
    ok(l.n == 1 && strcmp(l.ep[0].host, "127.0.0.1") == 0 && l.ep[0].port == 25, "127.0.0.1:25");
    is_int(conf_parse_listen("0.0.0.0:1, [::]:65535", &l, err, sizeof(err)), 0,
           "ports 1 and 65535");
    ok(l.n == 2 && l.ep[0].port == 1 && strcmp(l.ep[1].host, "::") == 0 && l.ep[1].port == 65535,
       "0.0.0.0:1 and [::]:65535");
    is_int(conf_parse_listen(" 127.0.0.1:25 ,\t[::1]:26 ", &l, err, sizeof(err)), 0,
           "blanks around items");
    ok(l.n == 2 && strcmp(l.ep[0].host, "127.0.0.1") == 0 && l.ep[0].port == 25 &&
           strcmp(l.ep[1].host, "::1") == 0 && l.ep[1].port == 26,
       "blanks dropped");
    is_int(conf_parse_listen("[::ffff:192.0.2.1]:25", &l, err, sizeof(err)), 0, "IPv4-mapped IPv6");
    is_str(l.ep[0].host, "::ffff:192.0.2.1", "IPv4-mapped host");
    is_int(conf_parse_listen("[2001:db8::1]:2525", &l, err, sizeof(err)), 0, "IPv6 endpoint");
    ok(l.n == 1 && strcmp(l.ep[0].host, "2001:db8::1") == 0 && l.ep[0].port == 2525,
       "[2001:db8::1]:2525");

    char list[256] = "";
    for (int i = 0; i < CONF_LISTEN_MAX; i++) {
        char ep[32];
        snprintf(ep, sizeof(ep), "%s127.0.0.%d:%d", i ? "," : "", i + 1, 1000 + i);
        strcat(list, ep);
    }
    is_int(conf_parse_listen(list, &l, err, sizeof(err)), 0, "exactly CONF_LISTEN_MAX endpoints");
    ok(l.n == CONF_LISTEN_MAX && strcmp(l.ep[CONF_LISTEN_MAX - 1].host, "127.0.0.8") == 0 &&
           l.ep[CONF_LISTEN_MAX - 1].port == 1000 + CONF_LISTEN_MAX - 1,
       "all CONF_LISTEN_MAX kept in order");
    strcat(list, ",127.0.0.9:9");
    is_int(conf_parse_listen(list, &l, err, sizeof(err)), -1, "CONF_LISTEN_MAX + 1 refused");
    ok(strstr(err, "more than") != NULL, "says more than (%s)", err);

    static const struct {
        const char *in;
        const char *what;
    } bad[] = {
        {"127.0.0.1", "no port"},
        {"127.0.0.1:", "not a port"},
        {"127.0.0.1:0", "not a port"},
        {"127.0.0.1:65536", "not a port"},
        {"127.0.0.1:100000", "not a port"},
        {"127.0.0.1:4294967321", "not a port"},
        {"127.0.0.1:x", "not a port"},
        {"127.0.0.1: 25", "not a port"},
        {"127.0.0.1:+25", "not a port"},
        {"127.0.0.1:2 5", "not a port"},
        {":25", "no address"},
        {"[]:25", "no address"},
        {"[::1]", "no port"},
        {"[::1]25", "no port"},
        {"[::1]:", "not a port"},
        {"[::1:25", "closing"},
        {"::1:25", "brackets"},
        {"2001:db8::1", "brackets"},
        {"localhost:25", "not an IP address"},
        {"mail.example.org:25", "not an IP address"},
        {"1.2.3:25", "not an IP address"},
        {"[127.0.0.1x]:25", "not an IP address"},
        {"[zz::1]:25", "not an IP address"},
        {"[0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef]:25", "no address"},
        {"127.0.0.1:25,", "comma"},
        {"127.0.0.1:25, ", "empty"},
        {",127.0.0.1:25", "empty"},
        {"127.0.0.1:25,,127.0.0.1:26", "empty"},
        {",", "empty"},
        {"127.0.0.1:25 127.0.0.1:26", ""}, /* any message */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct conf_listener before;
        memset(&l, 0x5a, sizeof(l));
        before = l;
        err[0] = '\0';
        int rc = conf_parse_listen(bad[i].in, &l, err, sizeof(err));
        is_int(rc, -1, "listen '%s' refused", bad[i].in);
        ok(strstr(err, bad[i].what) != NULL, "listen '%s': says '%s' (%s)", bad[i].in, bad[i].what,
           err);
        ok(memcmp(&l, &before, sizeof(l)) == 0, "listen '%s': listener left alone", bad[i].in);
    }
}

/* [relay]: the smarthost and the schedule, their defaults, and bad values on their lines. */
static void test_relay(void)
{
    struct conf c;
    char err[ERR_SIZE];
    conf_defaults(&c);
    ok(c.relay.smarthost[0] == '\0' && c.relay.port == 25 && !c.relay.smarthost_implicit_tls,
       "[relay] defaults: no smarthost, MX on port 25, STARTTLS");
    ok(c.relay.retry_first_ms == 300000 && c.relay.retry_max_ms == 3600000 &&
           c.relay.delay_warning_ms == 4 * 3600000ull && c.relay.give_up_ms == 5 * 86400000ull &&
           c.relay.bounce_give_up_ms == 2 * 86400000ull,
       "[relay] schedule defaults: 5m, 1h, a warning at 4h, 5 days, 2 for reports");
    conf_free(&c);
    is_int(load_text("[relay]\nsmarthost = smtp.isp.example:587\nsmarthost_tls = tls\n"
                     "smarthost_user = office\nsmarthost_password_file = /etc/kotak/pw\n"
                     "smarthost_ca = /etc/kotak/ca.pem\nport = 2525\nretry_first = 2s\n"
                     "give_up = 3d\n",
                     &c, err, NULL),
           0, "[relay] with a smarthost loads (%s)", err);
    ok(strcmp(c.relay.smarthost_host, "smtp.isp.example") == 0 && c.relay.smarthost_port == 587 &&
           c.relay.smarthost_implicit_tls && strcmp(c.relay.smarthost_user, "office") == 0 &&
           strcmp(c.relay.smarthost_password_file, "/etc/kotak/pw") == 0 &&
           strcmp(c.relay.smarthost_ca, "/etc/kotak/ca.pem") == 0 && c.relay.port == 2525,
       "[relay] smarthost, its host and port, TLS, login, files, MX port");
    ok(c.relay.retry_first_ms == 2000 && c.relay.give_up_ms == 3 * 86400000ull,
       "[relay] durations, days included");
    conf_free(&c);
    is_int(load_text("[relay]\nsmarthost = [2001:db8::25]:465\n", &c, err, NULL), 0,
           "[relay] an IPv6 smarthost in brackets loads (%s)", err);
    ok(strcmp(c.relay.smarthost_host, "2001:db8::25") == 0 && c.relay.smarthost_port == 465,
       "[relay] its address without brackets, and its port");
    conf_free(&c);
    expect_error("smarthost without a port", "[relay]\nsmarthost = smtp.isp.example\n", 2,
                 "not HOST:PORT");
    expect_error("smarthost port 0", "[relay]\nsmarthost = smtp.isp.example:0\n", 2,
                 "not HOST:PORT");
    expect_error("smarthost port past 65535", "[relay]\nsmarthost = a.example:70000\n", 2,
                 "not HOST:PORT");
    expect_error("smarthost bad name", "[relay]\nsmarthost = bad_name!:25\n", 2,
                 "no host name or IP address");
    expect_error("smarthost empty host", "[relay]\nsmarthost = :25\n", 2, "not HOST:PORT");
    expect_error("smarthost_tls", "[relay]\nsmarthost_tls = ssl\n", 2, "use starttls or tls");
    expect_error("relay port 0", "[relay]\nport = 0\n", 2, "out of range");
    expect_error("retry_first 0", "[relay]\nretry_first = 0s\n", 2, "out of range");
    expect_error("give_up in weeks", "[relay]\ngive_up = 1w\n", 2, "ms, s, m, h or d");
    /* A login without its password is a config error, told at load (and by --check-config). */
    is_int(load_text("[relay]\nsmarthost = a.example:587\nsmarthost_user = office\n", &c, err, NULL),
           -1, "smarthost_user without smarthost_password_file: refused");
    ok(strstr(err, "[relay] smarthost_user needs smarthost_password_file") != NULL, "... saying so: %s",
       err);
    conf_free(&c);
    /* Zero needs no unit. */
    is_int(load_text("[auth]\ncache = 0\nlockout = 0\n", &c, err, NULL), 0,
           "a duration of 0 without a unit loads (%s)", err);
    ok(c.auth.cache_ttl_ms == 0 && c.auth.lockout_ms == 0, "... as zero");
    conf_free(&c);
    expect_error("a bare number that is not 0", "[auth]\ncache = 5\n", 2, "not a duration");
}

/* [dkim], [checks], [spam]: their defaults, each choice, and bad values on their lines. */
static void test_checks(void)
{
    struct conf c;
    char err[ERR_SIZE];
    conf_defaults(&c);
    ok(strcmp(c.checks.dkim_selector, "kotak") == 0 && !c.checks.spf_fail_reject &&
           c.checks.dmarc_reject && c.checks.rspamd[0] == '\0' && !c.checks.rspamd_fail_closed,
       "defaults: selector kotak, SPF fail annotated, DMARC reject refused, no rspamd, open");
    conf_free(&c);
    is_int(load_text("[dkim]\nselector = mail2026\n[checks]\nspf_fail = reject\n"
                     "dmarc_reject = annotate\n[spam]\nrspamd = localhost:11333\n"
                     "rspamd_fail = closed\n",
                     &c, err, NULL),
           0, "every key of [dkim], [checks] and [spam] loads (%s)", err);
    ok(strcmp(c.checks.dkim_selector, "mail2026") == 0 && c.checks.spf_fail_reject &&
           !c.checks.dmarc_reject && strcmp(c.checks.rspamd_host, "localhost") == 0 &&
           c.checks.rspamd_port == 11333 && c.checks.rspamd_fail_closed,
       "each value is taken");
    conf_free(&c);
    is_int(load_text("[spam]\nrspamd = [::1]:11333\n", &c, err, NULL), 0,
           "rspamd at an IPv6 address loads (%s)", err);
    is_str(c.checks.rspamd_host, "::1", "rspamd's host without brackets");
    conf_free(&c);
    expect_error("selector with a dot", "[dkim]\nselector = a.b\n", 2, "not a selector");
    expect_error("empty selector", "[dkim]\nselector =\n", 2, "not a selector");
    expect_error("spf_fail", "[checks]\nspf_fail = drop\n", 2, "use annotate or reject");
    expect_error("dmarc_reject", "[checks]\ndmarc_reject = yes\n", 2, "use annotate or reject");
    expect_error("rspamd without port", "[spam]\nrspamd = 127.0.0.1\n", 2, "not HOST:PORT");
    expect_error("rspamd_fail", "[spam]\nrspamd_fail = maybe\n", 2, "use open or closed");
}

/* [dns] servers: empty, a list kept as written, and each bad value on its line. */
static void test_dns_servers(void)
{
    struct conf c;
    char err[ERR_SIZE];
    is_int(load_text("[dns]\nservers = 127.0.0.1:53, [::1]:5353\n", &c, err, NULL), 0,
           "[dns] servers with IPv4 and IPv6 loads");
    is_str(c.dns_servers, "127.0.0.1:53, [::1]:5353", "[dns] servers kept as written");
    conf_free(&c);
    is_int(load_text("[server]\nuser = a\n[dns]\nservers =\n", &c, err, NULL), 0,
           "[dns] servers empty loads");
    is_str(c.dns_servers, "", "[dns] servers empty: /etc/resolv.conf's");
    conf_free(&c);

    expect_error("dns server not an IP", "[dns]\nservers = localhost:53\n", 2,
                 "not an IP address; give the server's");
    expect_error("dns server without a port", "[server]\nuser = a\n\n[dns]\nservers = 10.0.0.1\n",
                 5, "[dns] servers: '10.0.0.1' has no port");
    expect_error("dns server 0.0.0.0", "[dns]\nservers = 127.0.0.1:53,0.0.0.0:53\n", 2,
                 "no server's address");
    expect_error("dns server [::]", "[dns]\nservers = [::]:53\n", 2, "no server's address");
    expect_error("dns server IPv6 without brackets", "[dns]\nservers = ::1:53\n", 2, "brackets");
    expect_error("dns servers trailing comma", "[dns]\nservers = 127.0.0.1:53,\n", 2, "comma");
    expect_error("dns servers set twice", "[dns]\nservers =\nservers = 127.0.0.1:53\n", 3,
                 "set twice");
    expect_error("unknown key in [dns]", "[dns]\nserver = 127.0.0.1:53\n", 2,
                 "unknown key 'server' in [dns]");
    expect_error("servers outside [dns]", "[server]\nservers = 127.0.0.1:53\n", 2, "unknown key");
    expect_error("unknown section names dns", "[dnss]\nservers = 127.0.0.1:53\n", 1,
                 "dns, relay, dkim, checks, spam, web, smtp");

    struct conf_listener l;
    char text[512] = "";
    for (int i = 0; i <= CONF_LISTEN_MAX; i++) {
        char ep[32];
        snprintf(ep, sizeof(ep), "%s127.0.0.%d:53", i ? "," : "", i + 1);
        strcat(text, ep);
    }
    is_int(conf_parse_servers(text, &l, err, sizeof(err)), -1, "more than 8 DNS servers refused");
    ok(strstr(err, "name fewer servers") != NULL, "... says to name fewer (%s)", err);
    is_int(conf_parse_servers("192.0.2.53:53,[2001:db8::53]:5353", &l, err, sizeof(err)), 0,
           "conf_parse_servers: two servers");
    ok(l.n == 2 && strcmp(l.ep[1].host, "2001:db8::53") == 0 && l.ep[1].port == 5353,
       "conf_parse_servers: IPv6 without brackets, its port");
    is_int(conf_parse_listen("0.0.0.0:25", &l, err, sizeof(err)), 0,
           "0.0.0.0 still listens on every address");
}

int main(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/kotak-test-conf-dir-XXXXXX");
    if (mkdtemp(tmp_dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_defaults();
    test_full_file();
    test_comments();
    test_errors();
    test_long_lines();
    test_missing_and_unreadable();
    test_reload();
    test_paths();
    test_locate();
    test_parse_listen();
    test_dns_servers();
    test_relay();
    test_checks();
    rmdir(tmp_dir);
    return done_testing();
}
