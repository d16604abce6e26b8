/*
 * daemon.h — the command line both daemons share: `NAME [-c FILE]`,
 * --help, --version, and the config loaded the way every kotak program
 * finds it.
 */
#ifndef KOTAK_DAEMON_H
#define KOTAK_DAEMON_H

#include <stdbool.h>
#include <uv.h>

#include "conf.h"
#include "tls.h"

/* What a bad config makes a daemon exit with (sysexits' EX_CONFIG): a unit's
 * RestartPreventExitStatus=78 keeps systemd from restarting it in a loop. */
#define DAEMON_EXIT_CONFIG 78

struct daemon_info {
    const char *name;  /* "kotak-smtpd" */
    const char *about; /* --help's text after the usage line */
    /* Whether its listeners in conf need the [tls] certificate (else it is optional). */
    bool (*tls_needed)(const struct conf *conf);
    int (*run)(const struct conf *conf);
};

/*
 * Parses argv (a mistake: status 2 and one line), loads the config (a bad
 * one: status 78 and one line), and returns run(conf)'s status. With
 * --check-config it only checks: the file, the data folder and the
 * certificate and key, then says so and exits 0 (or 78).
 */
int daemon_main(int argc, char **argv, const struct daemon_info *info);

/*
 * Holds the store at path for the daemon's life (hold_store: kotak restore
 * waits for no daemon), before the daemon opens it; exits 75 with one line
 * when a restore has it now.
 */
void daemon_hold_store(const char *path);

/*
 * Loads [tls] cert and key. Without a certificate file, returns NULL when
 * TLS is not needed (logging that it is off), else exits with one line
 * saying how to make one.
 */
struct tls_server *daemon_load_tls(const struct conf *conf, bool needed, const char *name);

/*
 * SIGHUP: loads [tls] cert and key again. Returns the new server, having let
 * the old one go (connections made from it go on with it), or, when the new
 * pair cannot be used, logs one error line and returns the old one.
 */
struct tls_server *daemon_reload_tls(const struct conf *conf, struct tls_server *old,
                                     const char *name);

/*
 * Start-up after the ports are bound, before a byte is read from them:
 * started as root, becomes [server] user, or exits with one line when
 * none is set or it cannot.
 */
void daemon_drop_privileges(const struct conf *conf);

/*
 * SIGINT and SIGTERM start a clean stop, once; SIGHUP calls reload, each
 * time (a certificate renewal). While the handles run, the log is buffered
 * and written out each time before the loop waits for I/O.
 */
struct daemon_signals {
    uv_signal_t sigint, sigterm, sighup;
    uv_prepare_t log_flush;
    void (*stop)(void *ctx, int signum);
    void (*reload)(void *ctx);
    void *ctx;
    bool fired;
};

void daemon_signals_start(uv_loop_t *loop, struct daemon_signals *ds,
                          void (*stop)(void *ctx, int signum), void (*reload)(void *ctx),
                          void *ctx);

/* Closes the signal handles, so that the loop can end. */
void daemon_signals_close(struct daemon_signals *ds);

#endif
