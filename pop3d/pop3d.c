/*
 * pop3d.c — the glue of kotak-pop3d: the session's pop3_ops (the store,
 * the maildrop locks, deletions in the thread pool), its listeners and its
 * start-up. The life of each connection is the connection core's
 * (common/service.c).
 *
 * Maildrop locks live in this process: one kotak-pop3d serves a store, and
 * a lock held in memory goes with the session however it ends — QUIT, a
 * dropped connection, a timeout, or the daemon itself being killed. A
 * session that ends while its QUIT's deletions are being committed keeps
 * the lock until that transaction has ended, so that no new session lists
 * messages that are about to go.
 * Deletions at QUIT run in the thread pool on a writer connection of their
 * own, so the loop never waits on their fsync.
 */
#include "pop3d.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "login.h"
#include "net.h"
#include "service.h"
#include "pop3_session.h"
#include "store.h"
#include "util.h"
#include "watch.h"

struct pop3d {
    const struct conf *conf;
    uv_loop_t *loop;
    struct service *svc;
    struct store *reader;     /* loop thread: look-ups, lists, bodies */
    struct store *writer;     /* thread pool: deletions, one at a time */
    uv_mutex_t writer_mu;
    int64_t *locked;          /* user ids whose maildrop a session holds */
    size_t n_locked, cap_locked;
    size_t in_flight;         /* deletions under way */
    struct watch *watch;      /* the live view's ring; NULL: off */
};

/* One connection beside its session: the core's part, and the lock's. */
struct pconn {
    struct service_conn conn; /* first: the core frees the whole */
    struct pop3d *d;
    bool deleting;            /* a delete_job is under way */
    int64_t unlock_after;     /* the lock to let go of when it ends; 0: none */
    char id[16];              /* the connection's, for logs and the view */
};

struct delete_job {
    uv_work_t work;
    struct pconn *pc;
    int64_t user_id;
    int64_t *ids;
    size_t n;
    int rc;
};

/* --- the session, as the core sees it ------------------------------------ */

static void s_greet(void *s)
{
    pop3_session_greet(s);
}

static void s_feed(void *s, const char *p, size_t n, size_t *used_r)
{
    pop3_session_feed(s, p, n, used_r);
}

static struct buf *s_output(void *s)
{
    return pop3_session_output(s);
}

static bool s_busy(const void *s)
{
    return pop3_session_busy(s);
}

static bool s_sending(const void *s)
{
    return pop3_session_sending(s);
}

static void s_pump(void *s)
{
    pop3_session_pump(s);
}

static enum session_action s_action(const void *s)
{
    switch (pop3_session_action((struct pop3_session *)s)) {
    case POP3_ACT_CLOSE:
        return SESSION_ACT_CLOSE;
    case POP3_ACT_STLS:
        return SESSION_ACT_STARTTLS;
    default:
        return SESSION_ACT_NONE;
    }
}

static bool s_engaged(const void *s)
{
    return pop3_session_logged_in(s);
}

static void s_tls_started(void *s, const char *version, const char *cipher, const char *cert)
{
    pop3_session_tls_started(s, version, cipher, cert);
}

static void s_auth_done(void *s, int rc, int64_t user_id)
{
    pop3_session_auth_done(s, rc, user_id);
}

static void s_timeout(void *s)
{
    pop3_session_timeout(s);
}

static void s_shutdown(void *s)
{
    pop3_session_shutdown(s);
}

static void s_free(void *s)
{
    struct pop3_session *session = s;
    pop3_session_free(&session); /* lets the maildrop lock go, see op_unlock */
}

static const struct session_ops session_ops = {
    .greet = s_greet,
    .feed = s_feed,
    .output = s_output,
    .busy = s_busy,
    .sending = s_sending,
    .pump = s_pump,
    .action = s_action,
    .engaged = s_engaged,
    .tls_started = s_tls_started,
    .auth_done = s_auth_done,
    .timeout = s_timeout,
    .shutdown = s_shutdown,
    .free = s_free,
};

/* --- pop3_ops ------------------------------------------------------------ */

static void op_auth(void *ctx, const char *user, const char *password)
{
    struct pconn *pc = ctx;
    struct store_user u;
    bool found = store_user_by_login(pc->d->reader, user, &u) == 1;
    service_login(&pc->conn, user, found ? u.hash : NULL, found ? u.id : 0, password);
    explicit_bzero(&u, sizeof(u));
}

static int op_lock(void *ctx, int64_t user_id)
{
    struct pop3d *d = ((struct pconn *)ctx)->d;
    for (size_t i = 0; i < d->n_locked; i++)
        if (d->locked[i] == user_id)
            return -EBUSY;
    if (d->n_locked == d->cap_locked) {
        d->cap_locked = d->cap_locked ? d->cap_locked * 2 : 16;
        d->locked = xrealloc(d->locked, d->cap_locked * sizeof(int64_t));
    }
    d->locked[d->n_locked++] = user_id;
    return 0;
}

static void unlock_user(struct pop3d *d, int64_t user_id)
{
    for (size_t i = 0; i < d->n_locked; i++) {
        if (d->locked[i] == user_id) {
            d->locked[i] = d->locked[--d->n_locked];
            return;
        }
    }
}

static void op_unlock(void *ctx, int64_t user_id)
{
    struct pconn *pc = ctx;
    if (pc->deleting) {
        pc->unlock_after = user_id; /* see delete_done */
        return;
    }
    unlock_user(pc->d, user_id);
}

static int op_list(void *ctx, int64_t user_id, struct store_mail **list_r, size_t *n_r)
{
    struct pconn *pc = ctx;
    return store_mbox_list(pc->d->reader, user_id, list_r, n_r);
}

static int op_read(void *ctx, int64_t message_id, int64_t offset, void *p, size_t n,
                   size_t *got_r)
{
    struct pconn *pc = ctx;
    return store_mbox_read(pc->d->reader, message_id, offset, p, n, got_r);
}

static void delete_work(uv_work_t *w)
{
    struct delete_job *j = w->data;
    struct pop3d *d = j->pc->d;
    uv_mutex_lock(&d->writer_mu);
    j->rc = store_mbox_delete(d->writer, j->user_id, j->ids, j->n);
    uv_mutex_unlock(&d->writer_mu);
}

static void delete_done(uv_work_t *w, int status)
{
    struct delete_job *j = w->data;
    struct pconn *pc = j->pc;
    struct pop3d *d = pc->d;
    int rc = status < 0 ? status : j->rc;
    free(j->ids);
    free(j);
    d->in_flight--;
    pc->deleting = false;
    if (pc->unlock_after != 0) {
        unlock_user(d, pc->unlock_after);
        pc->unlock_after = 0;
    }
    if (service_result_arrived(&pc->conn))
        pop3_session_commit_done(pc->conn.session, rc);
    service_result_done(&pc->conn);
}

static void op_commit(void *ctx, int64_t user_id, const int64_t *ids, size_t n)
{
    struct pconn *pc = ctx;
    struct delete_job *j = xcalloc(1, sizeof(*j));
    j->work.data = j;
    j->pc = pc;
    j->user_id = user_id;
    j->ids = xmalloc(n * sizeof(int64_t));
    memcpy(j->ids, ids, n * sizeof(int64_t));
    j->n = n;
    service_result_due(&pc->conn);
    pc->d->in_flight++;
    pc->deleting = true;
    if (uv_queue_work(pc->d->loop, &j->work, delete_work, delete_done) != 0) {
        j->rc = -KOTAK_ESTORE;
        delete_done(&j->work, 0);
    }
}

static bool op_watched(void *ctx)
{
    struct pconn *pc = ctx;
    return watch_on(pc->d->watch);
}

static void op_watch(void *ctx, enum watch_kind kind, bool tls, const char *text, size_t len)
{
    struct pconn *pc = ctx;
    watch_put(pc->d->watch, pc->id, WATCH_POP3, kind, tls, text, len);
}

static const struct pop3_ops pop3_ops = {
    .auth = op_auth,
    .lock = op_lock,
    .unlock = op_unlock,
    .list = op_list,
    .read = op_read,
    .commit = op_commit,
    .watched = op_watched,
    .watch = op_watch,
};

/* --- connections, start and stop ---------------------------------------- */

static struct service_conn *on_open(void *ctx, struct net_conn *c, void *listener)
{
    (void)listener;
    struct pop3d *d = ctx;
    struct pconn *pc = xcalloc(1, sizeof(*pc));
    pc->d = d;
    metrics_count(METRIC_CONNECTIONS);
    metrics_add(METRIC_CONNECTIONS_OPEN, 1);
    struct pop3_session_config cfg = {
        .tls_available = service_has_tls(d->svc),
        .peer_loopback = net_conn_is_loopback(c),
        .bad_commands = (unsigned)d->conf->limits.bad_commands,
    };
    snprintf(cfg.session_id, sizeof(cfg.session_id), "%s", net_conn_id(c));
    snprintf(cfg.peer_ip, sizeof(cfg.peer_ip), "%s", net_conn_peer(c));
    snprintf(pc->id, sizeof(pc->id), "%s", net_conn_id(c));
    service_conn_init(&pc->conn, d->svc, c, pop3_session_new(&cfg, &pop3_ops, pc), &session_ops);
    log_info("pop3 session=%s ip=%s tls=%s event=connect", net_conn_id(c), net_conn_peer(c),
             net_conn_is_tls(c) ? "yes" : "no");
    if (watch_on(d->watch)) {
        char local[80];
        net_conn_local(c, local, sizeof(local));
        watch_say(d->watch, pc->id, WATCH_POP3, WATCH_OPEN, net_conn_is_tls(c), "%s -> %s [%s]",
                  net_conn_peer(c), local, net_conn_is_tls(c) ? "pop3s" : "pop3");
    }
    return &pc->conn;
}

static void on_release(struct service_conn *conn)
{
    struct pconn *pc = (struct pconn *)conn;
    metrics_add(METRIC_CONNECTIONS_OPEN, (uint64_t)-1);
    watch_say(pc->d->watch, pc->id, WATCH_POP3, WATCH_CLOSE, false, "closed");
}

static size_t in_flight(void *ctx)
{
    struct pop3d *d = ctx;
    return d->in_flight;
}

static void on_stopped(void *ctx)
{
    (void)ctx;
}

static const struct service_ops service_ops = {
    .open = on_open,
    .release = on_release,
    .in_flight = in_flight,
    .stopped = on_stopped,
};

static void listen_all(struct pop3d *d)
{
    static const enum conf_listener_kind kinds[] = {CONF_POP3, CONF_POP3S};
    for (int i = 0; i < 2; i++) {
        char err[512];
        if (service_listen(d->svc, conf_listener_name(kinds[i]), &d->conf->listeners[kinds[i]],
                           kinds[i] == CONF_POP3S, NULL,
                           "-ERR [SYS/TEMP] Too many connections, try again later\r\n", err,
                           sizeof(err)) < 0)
            fatal(2, "%s", err);
    }
}

static void open_store(struct pop3d *d)
{
    char *path = conf_store_path(d->conf);
    daemon_hold_store(path); /* before it is opened: a restore may be under way */
    char err[512];
    if (store_open(path, 0, &d->writer, err, sizeof(err)) < 0)
        fatal(2, "%s; run 'kotak init' first, or check [server] data_dir", err);
    if (store_open(path, STORE_READONLY, &d->reader, err, sizeof(err)) < 0)
        fatal(2, "%s", err);
    uv_mutex_init(&d->writer_mu);
    free(path);
}

bool pop3d_tls_needed(const struct conf *conf)
{
    return conf->listeners[CONF_POP3S].n > 0;
}

int pop3d_run(const struct conf *conf)
{
    struct pop3d d = {.conf = conf, .loop = uv_default_loop()};
    struct tls_server *tls = daemon_load_tls(conf, pop3d_tls_needed(conf), "pop3");
    d.svc = service_new(d.loop, conf, "pop3", conf->limits.pop3_idle_timeout_ms, tls,
                        &service_ops, &d);
    listen_all(&d);
    daemon_drop_privileges(conf);
    open_store(&d);
    d.watch = watch_start(conf, "pop3");
    metrics_start(d.loop, conf, "pop3d");
    char err[512], *data_dir = conf_path(conf, conf->data_dir);
    struct login *login = login_new(d.loop, &conf->auth, data_dir, err, sizeof(err));
    free(data_dir);
    if (login == NULL)
        fatal(1, "%s", err);
    service_set_login(d.svc, login);
    log_info("pop3 event=started version=%s", KOTAK_VERSION);
    service_run(&d.svc);
    metrics_stop();
    store_close(&d.reader);
    store_close(&d.writer);
    watch_close(&d.watch);
    uv_mutex_destroy(&d.writer_mu);
    free(d.locked);
    return 0;
}
