/*
 * notify.h — telling the service manager how the daemon is (sd_notify(3)):
 * "READY=1" once it listens, "RELOADING=1" and "READY=1" around a reload,
 * "STOPPING=1" as it stops. One datagram to the socket $NOTIFY_SOCKET names,
 * when it names one (systemd's Type=notify); nothing otherwise. The
 * protocol is a few lines, so kotak speaks it without libsystemd.
 */
#ifndef KOTAK_NOTIFY_H
#define KOTAK_NOTIFY_H

#include <stddef.h>

/* Sends state ("READY=1\nSTATUS=..."); 0, or -errno (logged by the caller if it cares). */
int notify_manager(const char *state);

/* "RELOADING=1" with the MONOTONIC_USEC that systemd's Type=notify-reload asks for. */
int notify_reloading(void);

/*
 * The listening sockets systemd passed to this process under name (socket
 * activation, sd_listen_fds(3): LISTEN_PID is ours, LISTEN_FDS of them from
 * descriptor 3 on, LISTEN_FDNAMES their names), at most max into fds, each
 * made close-on-exec. Returns how many; 0 when none was passed.
 */
size_t notify_listen_fds(const char *name, int *fds, size_t max);

#endif
