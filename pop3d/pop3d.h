/*
 * pop3d.h — kotak-pop3d's glue: listeners, sessions, maildrop locks, logins
 * and deletions, wired together on one libuv loop.
 */
#ifndef KOTAK_POP3D_H
#define KOTAK_POP3D_H

#include <stdbool.h>

#include "conf.h"

/* Whether its listeners want the [tls] certificate ([pop3s] does; STLS is offered when there is one). */
bool pop3d_tls_needed(const struct conf *conf);

/* Runs the daemon until SIGINT or SIGTERM; returns the exit status. */
int pop3d_run(const struct conf *conf);

#endif
