/*
 * notify.c — the service manager's readiness protocol; see notify.h.
 */
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int notify_manager(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    /* A path, or "@name" for one in the abstract namespace (a leading NUL). */
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path))
        return -EINVAL;
    memcpy(sa.sun_path, path, n);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    ssize_t sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&sa,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    int rc = sent < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char state[64];
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    return notify_manager(state);
}

size_t notify_listen_fds(const char *name, int *fds, size_t max)
{
    const char *pid = getenv("LISTEN_PID"), *count = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    if (pid == NULL || count == NULL || names == NULL || strtol(pid, NULL, 10) != (long)getpid())
        return 0; /* not ours: a parent's, passed on by mistake */
    long n = strtol(count, NULL, 10);
    size_t found = 0, len = strlen(name);
    const char *p = names;
    for (long i = 0; i < n && i < 1024 && found < max; i++) {
        const char *end = strchr(p, ':');
        size_t k = end != NULL ? (size_t)(end - p) : strlen(p);
        if (k == len && memcmp(p, name, len) == 0) {
            int fd = 3 + (int)i; /* SD_LISTEN_FDS_START */
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            fds[found++] = fd;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return found;
}
