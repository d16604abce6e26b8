/*
 * fuzz_conf.c — the config loader (common/conf.h) on arbitrary files.
 *
 * Input: the whole file. It is written to a memfd and loaded through
 * /proc/self/fd/N, over the defaults, as the daemons load kotak.conf. The
 * bytes up to the first NUL or LF are also given to conf_parse_listen, the
 * parser of a `listen` value.
 *
 * Properties: conf_load returns 0 or -1; on -1 the message is one non-empty
 * line that starts with the file's path; on 0 every limit is within the
 * range conf.c documents (RFC 5321 floors included), every listener has at
 * most CONF_LISTEN_MAX endpoints, each an IP literal with a port from 1 to
 * 65535, and the host name is a domain name. conf_free releases it all
 * (LeakSanitizer checks).
 */
#include <arpa/inet.h>
#include <sys/mman.h>
#include <unistd.h>

#include "addr.h"
#include "conf.h"
#include "fuzz.h"
#include "log.h"

static void check_listener(const struct conf_listener *l)
{
    FUZZ_CHECK(l->n <= CONF_LISTEN_MAX, "%zu endpoints", l->n);
    for (size_t i = 0; i < l->n; i++) {
        const struct conf_endpoint *ep = &l->ep[i];
        FUZZ_CHECK(memchr(ep->host, '\0', sizeof(ep->host)) != NULL, "host not NUL-terminated");
        unsigned char sa[16];
        FUZZ_CHECK(inet_pton(AF_INET, ep->host, sa) == 1 || inet_pton(AF_INET6, ep->host, sa) == 1,
                   "'%s' is not an IP address", ep->host);
        FUZZ_CHECK(ep->port >= 1, "port 0");
    }
}

static void check_err(const char *err, size_t size, const char *path)
{
    size_t n = strnlen(err, size);
    FUZZ_CHECK(n < size, "the error is not NUL-terminated");
    FUZZ_CHECK(n > 0, "an empty error");
    FUZZ_CHECK(memchr(err, '\n', n) == NULL, "the error is more than one line: %s", err);
    if (path != NULL)
        FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0, "the error does not name the file: %s",
                   err);
}

#define RANGE(v, lo, hi)                                                                           \
    FUZZ_CHECK((v) >= (lo) && (v) <= (hi), #v " = %llu", (unsigned long long)(v))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        log_set_level(LOG_ERROR);
        fd = memfd_create("kotak-fuzz-conf", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) < 0 || (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();

    struct conf c;
    char err[512];
    memset(err, 0x41, sizeof(err));
    conf_defaults(&c);
    int rc = conf_load(path, &c, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -1, "conf_load returned %d", rc);
    if (rc < 0) {
        check_err(err, sizeof(err), path);
    } else {
        for (int i = 0; i < CONF_LISTENER_COUNT; i++)
            check_listener(&c.listeners[i]);
        const struct conf_limits *l = &c.limits;
        RANGE(l->message_size, 64u << 10, 1ull << 30);
        RANGE(l->recipients, 100, 10000);
        RANGE(l->command_line, 512, 4096);
        RANGE(l->text_line, 1000, 65536);
        RANGE(l->idle_timeout_ms, 1000, 3600 * 1000);
        RANGE(l->bad_commands, 1, 1000);
        RANGE(l->connections, 1, 1000000);
        RANGE(c.auth.max_failures, 1, 1000);
        char name[ADDR_DOMAIN_MAX + 1];
        FUZZ_CHECK(c.hostname != NULL && c.data_dir != NULL && c.tls_cert != NULL &&
                       c.tls_key != NULL && c.run_user != NULL,
                   "a string setting is NULL");
        /* The default comes from gethostname(), which need not be a domain name. */
        struct conf d;
        conf_defaults(&d);
        if (strcmp(c.hostname, d.hostname) != 0)
            FUZZ_CHECK(addr_parse_domain(c.hostname, strlen(c.hostname), 0, name) == 0,
                       "host name '%s' is not a domain name", c.hostname);
        conf_free(&d);
        FUZZ_CHECK(c.data_dir[0] != '\0' && c.tls_cert[0] != '\0' && c.tls_key[0] != '\0',
                   "an empty path");
        FUZZ_CHECK(c.path != NULL && strcmp(c.path, path) == 0, "the loaded file is not recorded");
        char *store = conf_store_path(&c);
        free(store);
    }
    conf_free(&c);

    /* A listen value: the input up to its first NUL or LF. */
    size_t n = 0;
    while (n < size && data[n] != '\0' && data[n] != '\n')
        n++;
    char *value = malloc(n + 1);
    memcpy(value, data, n);
    value[n] = '\0';
    struct conf_listener l;
    memset(&l, 0x5a, sizeof(l));
    memset(err, 0x41, sizeof(err));
    rc = conf_parse_listen(value, &l, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -1, "conf_parse_listen returned %d", rc);
    if (rc == 0)
        check_listener(&l);
    else
        check_err(err, sizeof(err), NULL);
    free(value);
    return 0;
}
