/*
 * smtpd.h — kotak-smtpd's glue: listeners, sessions, the store thread and
 * logins, wired together on one libuv loop.
 */
#ifndef KOTAK_SMTPD_H
#define KOTAK_SMTPD_H

#include <stdbool.h>

#include "conf.h"

/* Whether its listeners want the [tls] certificate (submission does: no login without TLS). */
bool smtpd_tls_needed(const struct conf *conf);

/*
 * Runs the daemon until SIGINT or SIGTERM: binds the listeners, loads the
 * certificate, drops privileges when root, opens the store, serves.
 * Returns the exit status; start-up errors are printed with fatal().
 */
int smtpd_run(const struct conf *conf);

#endif
