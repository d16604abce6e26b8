/*
 * notify.h — telling the service manager how the daemon is (sd_notify(3)):
 * "READY=1" once it listens, "RELOADING=1" and "READY=1" around a reload,
 * "STOPPING=1" as it stops. One datagram to the socket $NOTIFY_SOCKET names,
 * when it names one (systemd's Type=notify); nothing otherwise. The
 * protocol is a few lines, so kotak speaks it without libsystemd.
 */
#ifndef KOTAK_NOTIFY_H
#define KOTAK_NOTIFY_H

/* Sends state ("READY=1\nSTATUS=..."); 0, or -errno (logged by the caller if it cares). */
int notify_manager(const char *state);

/* "RELOADING=1" with the MONOTONIC_USEC that systemd's Type=notify-reload asks for. */
int notify_reloading(void);

#endif
