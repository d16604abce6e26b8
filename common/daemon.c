/*
 * daemon.c — the shared command line of kotak-smtpd and kotak-pop3d.
 */
#include "daemon.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "util.h"

/* --check-config: the certificate and key as the daemon would load them. */
static int check_tls(const struct conf *conf, bool needed, char *err, size_t err_size)
{
    char *cert = conf_path(conf, conf->tls_cert), *key = conf_path(conf, conf->tls_key);
    int rc = 0;
    struct tls_server *tls = NULL;
    if ((access(cert, F_OK) == 0 || needed) && tls_server_new(cert, key, &tls, err, err_size) < 0)
        rc = -1;
    tls_server_free(&tls);
    free(cert);
    free(key);
    return rc;
}

int daemon_main(int argc, char **argv, const struct daemon_info *info)
{
    const char *path = NULL;
    bool check = false;
    umask(077); /* the store, spool and lockout table hold mail and passwords */
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check = true;
        } else if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf("%s %s\n", info->name, KOTAK_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s [-c FILE] [--check-config]\n\n%s\n\n"
                   "  -c, --config FILE  the config; else $KOTAK_CONFIG, ./kotak.conf,\n"
                   "                     /etc/kotak/kotak.conf\n"
                   "  --check-config     check FILE, the data folder, the certificate and key;\n"
                   "                     exit 0 when good, 78 when not\n"
                   "  -V, --version      print the version\n"
                   "  -h, --help         this help\n\n"
                   "Signals: SIGHUP reads the certificate again; SIGTERM and SIGINT stop after\n"
                   "the sessions under way. Exit status: 0 stopped; 78 a bad config; 75 the store\n"
                   "is being restored; 2 a bad argument, or a start that failed (a port taken, the\n"
                   "store unreadable); 1 no thread or login table for it.\n",
                   info->name, info->about);
            return 0;
        } else {
            fatal(2, "unknown argument '%s'; see %s --help", argv[i], info->name);
        }
    }
    struct conf conf;
    char err[512];
    conf_defaults(&conf);
    const char *file = conf_locate(path);
    if (conf_load(file, &conf, err, sizeof(err)) < 0)
        fatal(DAEMON_EXIT_CONFIG, "%s", err);
    if (conf_enter_data_dir(&conf, err, sizeof(err)) < 0)
        fatal(DAEMON_EXIT_CONFIG, "%s", err);
    if (check) {
        if (check_tls(&conf, info->tls_needed(&conf), err, sizeof(err)) < 0)
            fatal(DAEMON_EXIT_CONFIG, "%s", err);
        printf("%s: %s is good\n", info->name, file);
        conf_free(&conf);
        return 0;
    }
    net_pool_size();
    int rc = info->run(&conf);
    conf_free(&conf);
    return rc;
}

/* When the certificate in use runs out: a warning two weeks before, so that a renewal that did
 * not happen is seen while there is time. */
static void log_cert(const char *name, const char *path, const struct tls_server *tls)
{
    time_t until = tls_server_expiry(tls);
    struct tm tm;
    char when[32], v[300];
    gmtime_r(&until, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    long days = (long)((until - time(NULL)) / 86400);
    log_value(v, sizeof(v), path, strlen(path));
    if (until < time(NULL))
        log_error("%s event=cert cert=%s expires=%s days_left=%ld reason=\"it has expired: clients "
                  "refuse it; renew it\"",
                  name, v, when, days);
    else if (days < 14)
        log_warn("%s event=cert cert=%s expires=%s days_left=%ld reason=\"renew it soon\"", name, v,
                 when, days);
    else
        log_info("%s event=cert cert=%s expires=%s days_left=%ld", name, v, when, days);
}

void daemon_hold_store(const char *path)
{
    int fd = hold_store(path, false);
    if (fd == -EWOULDBLOCK) /* 75, EX_TEMPFAIL: systemd's Restart= tries again later */
        fatal(75, "%s is being restored (kotak restore); start again once it is done", path);
    if (fd < 0)
        fatal(2, "cannot hold %s-daemons: %s", path, strerror(-fd));
    /* fd stays open until the process ends: the hold is the daemon's life. */
}

struct tls_server *daemon_load_tls(const struct conf *conf, bool needed, const char *name)
{
    char *cert = conf_path(conf, conf->tls_cert), *key = conf_path(conf, conf->tls_key);
    char err[512];
    struct tls_server *tls = NULL;
    if (access(cert, F_OK) != 0 && !needed)
        log_warn("%s event=no-tls cert=%s reason=\"no certificate: STARTTLS is off\"", name, cert);
    else if (tls_server_new(cert, key, &tls, err, sizeof(err)) < 0)
        fatal(DAEMON_EXIT_CONFIG, "%s; run 'kotak init' to make one, or set [tls] cert and key",
              err);
    if (tls != NULL)
        log_cert(name, cert, tls);
    free(cert);
    free(key);
    return tls;
}

struct tls_server *daemon_reload_tls(const struct conf *conf, struct tls_server *old,
                                     const char *name)
{
    char *cert = conf_path(conf, conf->tls_cert), *key = conf_path(conf, conf->tls_key);
    char err[512];
    struct tls_server *tls = NULL;
    if (tls_server_new(cert, key, &tls, err, sizeof(err)) < 0) {
        log_error("%s event=tls-reload result=failed reason=\"%s; the old certificate stays\"",
                  name, err);
        tls = old;
    } else {
        log_info("%s event=tls-reload result=ok cert=%s", name, cert);
        log_cert(name, cert, tls);
        tls_server_free(&old);
    }
    free(cert);
    free(key);
    return tls;
}

void daemon_drop_privileges(const struct conf *conf)
{
    char err[512];
    if (geteuid() == 0 && conf->run_user[0] == '\0')
        fatal(2, "started as root without [server] user: set it to the unprivileged user to "
                 "serve as ('kotak init' run as root sets it to kotak)");
    if (drop_privileges(conf->run_user, err, sizeof(err)) < 0)
        fatal(2, "%s", err);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    struct daemon_signals *ds = sig->data;
    if (ds->fired)
        return;
    ds->fired = true;
    ds->stop(ds->ctx, signum);
}

static void on_sighup(uv_signal_t *sig, int signum)
{
    (void)signum;
    struct daemon_signals *ds = sig->data;
    if (!ds->fired)
        ds->reload(ds->ctx);
}

static void flush_log(uv_prepare_t *h)
{
    (void)h;
    log_flush();
}

void daemon_signals_start(uv_loop_t *loop, struct daemon_signals *ds,
                          void (*stop)(void *ctx, int signum), void (*reload)(void *ctx),
                          void *ctx)
{
    ds->stop = stop;
    ds->reload = reload;
    ds->ctx = ctx;
    ds->fired = false;
    uv_signal_init(loop, &ds->sigint);
    uv_signal_init(loop, &ds->sigterm);
    ds->sigint.data = ds->sigterm.data = ds;
    uv_signal_start(&ds->sigint, on_signal, SIGINT);
    uv_signal_start(&ds->sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &ds->sighup);
    ds->sighup.data = ds;
    uv_signal_start(&ds->sighup, on_sighup, SIGHUP);
    uv_prepare_init(loop, &ds->log_flush);
    uv_prepare_start(&ds->log_flush, flush_log);
    log_set_buffered(true);
}

void daemon_signals_close(struct daemon_signals *ds)
{
    uv_close((uv_handle_t *)&ds->sigint, NULL);
    uv_close((uv_handle_t *)&ds->sigterm, NULL);
    uv_close((uv_handle_t *)&ds->sighup, NULL);
    /* The stop is done; what is left is freeing and the last log line. A
     * second signal now (kotak run sends SIGTERM after a Ctrl-C that reached
     * the whole process group) would kill the daemon with that line unwritten. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    uv_close((uv_handle_t *)&ds->log_flush, NULL);
    log_set_buffered(false);
}
