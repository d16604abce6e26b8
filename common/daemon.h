/*
 * daemon.h — the command line both daemons share: `NAME [-c FILE]`,
 * --help, --version, and the config loaded the way every kotak program
 * finds it.
 */
#ifndef KOTAK_DAEMON_H
#define KOTAK_DAEMON_H

#include <stdbool.h>

#include "conf.h"
#include "tls.h"

/*
 * Parses argv, loads the config (or exits with status 2 and one line), and
 * returns run(conf)'s status. about is the --help text after the usage line.
 */
int daemon_main(int argc, char **argv, const char *name, const char *about,
                int (*run)(const struct conf *conf));

/*
 * Loads [tls] cert and key. Without a certificate file, returns NULL when
 * TLS is not needed (logging that it is off), else exits with one line
 * saying how to make one.
 */
struct tls_server *daemon_load_tls(const struct conf *conf, bool needed, const char *name);

#endif
