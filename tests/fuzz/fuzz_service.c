/*
 * fuzz_service.c — the connection core (common/service.c over common/net.c)
 * driven by a script: a real loopback connection to a real listener, a
 * client that writes what the input says in pieces of random size, stops
 * reading and starts again, half-closes; asynchronous results that complete
 * in the order the input picks; idle timers that fire in between (the idle
 * time is 30 ms here).
 *
 * The session is a stand-in with the real ones' habits: it stops taking
 * input past 4 KiB of unsent output, ignores a timeout while it waits on a
 * result, streams long answers through pump. Its commands, one per line:
 *   a  wait on a result (busy until it arrives)
 *   bN answer with N KiB at once (N a digit)
 *   s  stream 4 MiB through pump
 *   e  toggle "engaged"
 *   q  close
 *   anything else: a short answer
 * Every byte it writes comes from one numbered sequence, so the client can
 * tell a lost, doubled or reordered byte.
 *
 * Properties checked:
 *   - the session is never fed while its output waits above net's high
 *     water, while it is busy or streaming, or after it asked to close;
 *   - net never holds more than NET_INPUT_MAX unread octets;
 *   - what the client reads is exactly a prefix of what the session wrote;
 *   - no session callback after the session is freed, and a result reaches
 *     a session only while it is there (and busy);
 *   - every result due arrives once, and the connection is freed only after
 *     the last one, and always, once the client is gone.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "conf.h"
#include "fuzz.h"
#include "log.h"
#include "login.h"
#include "net.h"
#include "service.h"

#define STREAM_PIECES 256 /* 4 MiB: more than the kernel buffers hold */
#define PIECE (16 * 1024)
#define OUT_HIGH (4 * 1024)
#define MAX_RESULTS 64

struct fake {
    struct service_conn *sc;
    struct buf out;
    uint64_t seq;        /* the next byte's number */
    char line[64];
    size_t line_len;
    bool busy, engaged, freed;
    int streaming;       /* pieces still to pump */
    enum session_action act;
};

struct fconn {
    struct service_conn conn; /* first, as the core wants */
    struct fake *f;
    int due;                  /* results asked for and not yet arrived */
};

static uv_loop_t *loop;
static struct service *svc;
static struct conf conf;
static uint16_t port;
static struct fconn *current; /* the connection the script talks to */
static int live_conns;

static struct fconn *results[MAX_RESULTS];
static size_t n_results;

static uint8_t seq_byte(uint64_t n)
{
    return (uint8_t)((n * 2654435761u) >> 13);
}

static void emit(struct fake *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b = seq_byte(f->seq++);
        FUZZ_CHECK(buf_append(&f->out, &b, 1) == 0, "session output full at %zu", f->out.len);
    }
}

/* --- the stand-in session ------------------------------------------------ */

static void f_greet(void *s)
{
    emit(s, 8);
}

static void run_command(struct fake *f)
{
    const char *l = f->line;
    if (l[0] == 'a') {
        struct fconn *fc = (struct fconn *)f->sc;
        if (n_results == MAX_RESULTS) {
            emit(f, 2); /* too many in flight: say no */
            return;
        }
        f->busy = true;
        fc->due++;
        results[n_results++] = fc;
        service_result_due(f->sc);
    } else if (l[0] == 'b' && l[1] >= '0' && l[1] <= '9') {
        emit(f, (size_t)(l[1] - '0') * 1024);
    } else if (l[0] == 's') {
        f->streaming = STREAM_PIECES;
        emit(f, 4);
    } else if (l[0] == 'e') {
        f->engaged = !f->engaged;
        emit(f, 1);
    } else if (l[0] == 'q') {
        emit(f, 3);
        f->act = SESSION_ACT_CLOSE;
    } else {
        emit(f, 5);
    }
}

static void f_feed(void *s, const char *p, size_t n, size_t *used_r)
{
    struct fake *f = s;
    struct net_conn *c = f->sc->net;
    FUZZ_CHECK(!f->freed, "fed after free");
    FUZZ_CHECK(c != NULL, "fed without a connection");
    FUZZ_CHECK(net_conn_pending(c) < NET_LOW_WATER, "fed with %zu octets of output waiting",
               net_conn_pending(c));
    FUZZ_CHECK(net_conn_input(c)->len <= NET_INPUT_MAX, "net holds %zu unread octets",
               net_conn_input(c)->len);
    FUZZ_CHECK(!f->busy, "fed while busy");
    FUZZ_CHECK(f->streaming == 0, "fed while streaming");
    FUZZ_CHECK(f->act == SESSION_ACT_NONE, "fed after asking to close");
    size_t used = 0;
    while (used < n && !f->busy && f->streaming == 0 && f->act == SESSION_ACT_NONE &&
           f->out.len < OUT_HIGH) {
        char ch = p[used++];
        if (ch == '\n') {
            f->line[f->line_len] = '\0';
            run_command(f);
            f->line_len = 0;
        } else if (f->line_len + 1 < sizeof(f->line)) {
            f->line[f->line_len++] = ch;
        }
    }
    *used_r = used;
}

static struct buf *f_output(void *s)
{
    struct fake *f = s;
    FUZZ_CHECK(!f->freed, "output after free");
    return &f->out;
}

static bool f_busy(const void *s)
{
    return ((const struct fake *)s)->busy;
}

static bool f_sending(const void *s)
{
    return ((const struct fake *)s)->streaming > 0;
}

static void f_pump(void *s)
{
    struct fake *f = s;
    FUZZ_CHECK(f->streaming > 0, "pumped with nothing to stream");
    FUZZ_CHECK(net_conn_pending(f->sc->net) < NET_LOW_WATER, "pumped above the high water");
    emit(f, PIECE);
    f->streaming--;
}

static enum session_action f_action(const void *s)
{
    return ((const struct fake *)s)->act;
}

static bool f_engaged(const void *s)
{
    return ((const struct fake *)s)->engaged;
}

static void f_tls_started(void *s, const char *version, const char *cipher, const char *cert)
{
    (void)s, (void)version, (void)cipher, (void)cert;
    FUZZ_CHECK(false, "TLS started without TLS");
}

static void f_auth_done(void *s, int rc, int64_t user_id)
{
    (void)s, (void)rc, (void)user_id;
    FUZZ_CHECK(false, "a login result nobody asked for");
}

static void f_timeout(void *s)
{
    struct fake *f = s;
    FUZZ_CHECK(!f->freed, "timeout after free");
    if (f->busy || f->act != SESSION_ACT_NONE)
        return; /* as the real sessions: our own wait is not the client's idleness */
    emit(f, 6);
    f->act = SESSION_ACT_CLOSE;
}

static void f_shutdown(void *s)
{
    struct fake *f = s;
    if (f->act == SESSION_ACT_NONE) {
        emit(f, 7);
        f->act = SESSION_ACT_CLOSE;
    }
}

static void f_free(void *s)
{
    struct fake *f = s;
    FUZZ_CHECK(!f->freed, "freed twice");
    f->freed = true;
    buf_free(&f->out);
    /* The struct itself is kept until the connection is released, so that
     * a late call is caught by the checks above rather than by chance. */
}

static const struct session_ops fake_ops = {
    .greet = f_greet,
    .feed = f_feed,
    .output = f_output,
    .busy = f_busy,
    .sending = f_sending,
    .pump = f_pump,
    .action = f_action,
    .engaged = f_engaged,
    .tls_started = f_tls_started,
    .auth_done = f_auth_done,
    .timeout = f_timeout,
    .shutdown = f_shutdown,
    .free = f_free,
};

/* --- the stand-in daemon ------------------------------------------------- */

static struct service_conn *d_open(void *ctx, struct net_conn *c, void *listener)
{
    (void)ctx, (void)listener;
    struct fconn *fc = calloc(1, sizeof(*fc));
    struct fake *f = calloc(1, sizeof(*f));
    buf_init(&f->out, 64 * 1024);
    fc->f = f;
    service_conn_init(&fc->conn, svc, c, f, &fake_ops);
    f->sc = &fc->conn;
    current = fc;
    live_conns++;
    return &fc->conn;
}

static void d_release(struct service_conn *sc)
{
    struct fconn *fc = (struct fconn *)sc;
    FUZZ_CHECK(fc->due == 0, "released with %d results due", fc->due);
    FUZZ_CHECK(fc->f->freed, "released before the session was freed");
    for (size_t i = 0; i < n_results; i++)
        FUZZ_CHECK(results[i] != fc, "released while a result is queued for it");
    free(fc->f);
    fc->f = NULL;
    if (current == fc)
        current = NULL;
    live_conns--;
}

static void d_stopped(void *ctx)
{
    (void)ctx;
}

static const struct service_ops daemon_ops = {
    .open = d_open,
    .release = d_release,
    .stopped = d_stopped,
};

/* A result arrives: the k-th one queued. */
static void complete(size_t k)
{
    struct fconn *fc = results[k];
    results[k] = results[--n_results];
    fc->due--;
    if (service_result_arrived(&fc->conn)) {
        struct fake *f = fc->f;
        FUZZ_CHECK(!f->freed && f->busy, "a result for a session that did not wait on one");
        f->busy = false;
        emit(f, 9);
    }
    service_result_done(&fc->conn);
}

static void setup(void)
{
    loop = uv_default_loop();
    conf_defaults(&conf);
    conf.log_level = LOG_ERROR; /* quiet */
    conf.limits.idle_timeout_ms = 30;
    conf.limits.stress_idle_timeout_ms = 20;
    conf.limits.connections = 8;
    conf.limits.connections_per_address = 8;
    static char dir[] = "/tmp/kotak-fuzz-service-XXXXXX";
    FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    char err[256];
    struct login *login = login_new(loop, &conf.auth, dir, err, sizeof(err));
    FUZZ_CHECK(login != NULL, "login_new: %s", err);
    svc = service_new(loop, &conf, "fuzz", conf.limits.idle_timeout_ms, NULL, &daemon_ops, NULL);
    service_set_login(svc, login);
    /* A free port: the kernel picks one, and the listener takes it at once. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    FUZZ_CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
                   getsockname(s, (struct sockaddr *)&a, &len) == 0,
               "no free port");
    port = ntohs(a.sin_port);
    close(s);
    struct conf_listener cl = {.n = 1, .ep[0] = {.port = port}};
    snprintf(cl.ep[0].host, sizeof(cl.ep[0].host), "127.0.0.1");
    FUZZ_CHECK(service_listen(svc, "smtp", &cl, false, NULL, "no\r\n", err, sizeof(err)) == 0, "%s",
               err);
}

static void run(int times)
{
    for (int i = 0; i < times; i++)
        uv_run(loop, UV_RUN_NOWAIT);
}

struct client {
    int fd;
    bool reading, closed_write;
    uint64_t next; /* the number of the next byte expected */
};

static void client_read(struct client *cl, size_t most)
{
    uint8_t b[8192];
    while (most > 0) {
        ssize_t n = recv(cl->fd, b, most < sizeof(b) ? most : sizeof(b), MSG_DONTWAIT);
        if (n <= 0)
            return;
        for (ssize_t i = 0; i < n; i++, cl->next++)
            FUZZ_CHECK(b[i] == seq_byte(cl->next), "byte %llu of the reply is wrong",
                       (unsigned long long)cl->next);
        most -= (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loop == NULL)
        setup();
    struct fuzz_rng rng;
    uint64_t seed = 1469598103934665603u; /* FNV-1a of the input */
    for (size_t k = 0; k < size; k++)
        seed = (seed ^ data[k]) * 1099511628211u;
    fuzz_rng_init(&rng, seed);
    struct client cl = {.reading = true};
    cl.fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096; /* a small window, so that output backs up into net */
    setsockopt(cl.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    FUZZ_CHECK(connect(cl.fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s",
               strerror(errno));
    current = NULL;
    for (int i = 0; i < 1000 && current == NULL; i++)
        run(1);
    FUZZ_CHECK(current != NULL, "the connection was not accepted");

    size_t i = 0;
    while (i < size) {
        uint8_t op = data[i++];
        size_t arg = i < size ? data[i++] : 0;
        switch (op % 8) {
        case 0: { /* the client writes the next arg % 64 + 1 input octets */
            size_t n = arg % 64 + 1;
            if (n > size - i)
                n = size - i;
            if (!cl.closed_write && n > 0)
                (void)send(cl.fd, data + i, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            i += n;
            break;
        }
        case 1: /* the client reads */
            if (cl.reading)
                client_read(&cl, (arg + 1) * 1024);
            break;
        case 2:
            cl.reading = false; /* and stays quiet: its window fills */
            break;
        case 3:
            cl.reading = true;
            break;
        case 4:
            if (n_results > 0)
                complete(arg % n_results);
            break;
        case 5:
            run((int)(arg % 4) + 1);
            break;
        case 6: /* time passes: idle timers may fire */
            usleep(12000 * (arg % 4)); /* up to 36 ms: past the idle time */
            run(2);
            break;
        case 7:
            if (arg % 2 == 0 && !cl.closed_write) {
                shutdown(cl.fd, SHUT_WR);
                cl.closed_write = true;
            }
            break;
        }
        if (fuzz_rng_next(&rng) % 4 == 0)
            run(1);
    }
    if (getenv("FUZZ_SERVICE_DEBUG") != NULL)
        fprintf(stderr, "read %llu octets; session %s\n", (unsigned long long)cl.next,
                current == NULL ? "gone" : "open");
    /* The client goes; every result still due arrives, in a random order. */
    close(cl.fd);
    for (int round = 0; round < 2000 && (n_results > 0 || live_conns > 0); round++) {
        if (n_results > 0 && fuzz_rng_next(&rng) % 3 == 0)
            complete(fuzz_rng_next(&rng) % n_results);
        run(1);
        if (round > 100)
            usleep(100);
    }
    FUZZ_CHECK(n_results == 0 && live_conns == 0, "%zu results, %d connections left", n_results,
               live_conns);
    return 0;
}
