/*
 * pop3d.c — the glue of kotak-pop3d: libuv, TLS, the store and the thread
 * pool meet here, and the sessions stay pure.
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
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "daemon.h"
#include "log.h"
#include "login.h"
#include "net.h"
#include "pop3_session.h"
#include "store.h"
#include "util.h"

struct pop3d {
    const struct conf *conf;
    uv_loop_t *loop;
    struct net_server *net;
    struct tls_server *tls;
    struct store *reader;     /* loop thread: look-ups, lists, bodies */
    struct store *writer;     /* thread pool: deletions, one at a time */
    uv_mutex_t writer_mu;
    struct login *login;
    int64_t *locked;          /* user ids whose maildrop a session holds */
    size_t n_locked, cap_locked;
    size_t in_flight;         /* deletions under way */
    struct daemon_signals signals;
    bool stopping, stopped;
};

/* One connection beside its session; lives until its last async result. */
struct pconn {
    struct pop3d *d;
    struct net_conn *net;     /* NULL once the connection is gone */
    struct pop3_session *session;
    struct login_req login;
    int async;
    bool released;
    bool deleting;            /* a delete_job is under way */
    int64_t unlock_after;     /* the lock to let go of when it ends; 0: none */
};

struct delete_job {
    uv_work_t work;
    struct pconn *pc;
    int64_t user_id;
    int64_t *ids;
    size_t n;
    int rc;
};

static void maybe_finish(struct pop3d *d);

/* --- the life of a connection ------------------------------------------- */

static void pconn_freed(uv_handle_t *h)
{
    free(h->data);
}

static void pconn_release(struct pconn *pc)
{
    if (pc->net != NULL || pc->async > 0 || pc->released)
        return;
    pc->released = true; /* a result handler and the close callback may both get here */
    struct pop3d *d = pc->d;
    login_req_close(&pc->login, pconn_freed, pc);
    maybe_finish(d);
}

static void flush(struct pconn *pc)
{
    struct buf *out = pop3_session_output(pc->session);
    if (out->len > 0) {
        net_conn_write(pc->net, out->data, out->len);
        buf_reset(out);
    }
}

/* Sends what the session wrote, adds message pieces while the socket keeps up, acts. */
static void after_session(struct pconn *pc)
{
    struct pop3_session *s = pc->session;
    flush(pc);
    while (pop3_session_sending(s) && net_conn_pending(pc->net) < NET_LOW_WATER) {
        pop3_session_pump(s);
        flush(pc);
    }
    enum pop3_action a = pop3_session_action(s);
    bool waiting = pop3_session_busy(s) || pop3_session_sending(s);
    if (a == POP3_ACT_NONE && pc->d->stopping && !waiting) {
        pop3_session_shutdown(s);
        after_session(pc);
        return;
    }
    if (a == POP3_ACT_CLOSE) {
        net_conn_close(pc->net); /* may free the session: nothing after this */
        return;
    }
    net_conn_set_engaged(pc->net, pop3_session_logged_in(s));
    if (a == POP3_ACT_STLS)
        net_conn_start_tls(pc->net);
    if (waiting)
        net_conn_pause(pc->net);
}

static void resume(struct pconn *pc)
{
    after_session(pc);
    if (pc->net != NULL && pc->session != NULL && !pop3_session_busy(pc->session) &&
        !pop3_session_sending(pc->session))
        net_conn_resume(pc->net);
}

/* --- pop3_ops ------------------------------------------------------------ */

static void login_done(struct login_req *r, int rc, int64_t user_id)
{
    struct pconn *pc = (struct pconn *)((char *)r - offsetof(struct pconn, login));
    pc->async--;
    if (pc->session != NULL) {
        pop3_session_auth_done(pc->session, rc, user_id);
        resume(pc);
    }
    pconn_release(pc);
}

static void op_auth(void *ctx, const char *user, const char *password)
{
    struct pconn *pc = ctx;
    struct store_user u;
    bool found = store_user_by_login(pc->d->reader, user, &u) == 1;
    pc->async++;
    login_check(&pc->login, net_conn_peer16(pc->net), user, found ? u.hash : NULL,
                found ? u.id : 0, password);
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
    pc->async--;
    d->in_flight--;
    pc->deleting = false;
    if (pc->unlock_after != 0) {
        unlock_user(d, pc->unlock_after);
        pc->unlock_after = 0;
    }
    if (pc->session != NULL) {
        pop3_session_commit_done(pc->session, rc);
        resume(pc);
    }
    pconn_release(pc);
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
    pc->async++;
    pc->d->in_flight++;
    pc->deleting = true;
    if (uv_queue_work(pc->d->loop, &j->work, delete_work, delete_done) != 0) {
        j->rc = -KOTAK_ESTORE;
        delete_done(&j->work, 0);
    }
}

static const struct pop3_ops pop3_ops = {
    .auth = op_auth,
    .lock = op_lock,
    .unlock = op_unlock,
    .list = op_list,
    .read = op_read,
    .commit = op_commit,
};

/* --- net_proto ----------------------------------------------------------- */

static void *on_open(struct net_conn *c, void *listener_ctx)
{
    struct pop3d *d = listener_ctx;
    struct pconn *pc = xcalloc(1, sizeof(*pc));
    pc->d = d;
    pc->net = c;
    login_req_init(d->login, &pc->login, login_done);
    struct pop3_session_config cfg = {
        .tls_available = d->tls != NULL,
        .peer_loopback = net_conn_is_loopback(c),
        .bad_commands = (unsigned)d->conf->limits.bad_commands,
    };
    snprintf(cfg.session_id, sizeof(cfg.session_id), "%s", net_conn_id(c));
    pc->session = pop3_session_new(&cfg, &pop3_ops, pc);
    log_info("pop3 session=%s ip=%s tls=%s event=connect", net_conn_id(c), net_conn_peer(c),
             net_conn_is_tls(c) ? "yes" : "no");
    if (net_conn_is_tls(c))
        pop3_session_tls_started(pc->session);
    pop3_session_greet(pc->session);
    after_session(pc);
    return pc;
}

static void on_input(struct net_conn *c, void *ctx)
{
    struct pconn *pc = ctx;
    struct buf *in = net_conn_input(c);
    size_t used;
    pop3_session_feed(pc->session, (const char *)in->data, in->len, &used);
    buf_consume(in, used);
    after_session(pc);
}

static void on_drain(struct net_conn *c, void *ctx)
{
    (void)c;
    struct pconn *pc = ctx;
    if (pop3_session_sending(pc->session))
        resume(pc);
}

static void on_tls_started(struct net_conn *c, void *ctx)
{
    (void)c;
    struct pconn *pc = ctx;
    pop3_session_tls_started(pc->session);
}

static void on_timeout(struct net_conn *c, void *ctx)
{
    (void)c;
    struct pconn *pc = ctx;
    pop3_session_timeout(pc->session);
    after_session(pc);
}

static void on_close(struct net_conn *c, void *ctx)
{
    struct pconn *pc = ctx;
    log_info("pop3 session=%s event=disconnect", net_conn_id(c));
    pc->net = NULL;
    pop3_session_free(&pc->session); /* releases the maildrop lock, or has delete_done do it */
    pconn_release(pc);
}

static const struct net_proto pop3_proto = {
    .open = on_open,
    .input = on_input,
    .drain = on_drain,
    .timeout = on_timeout,
    .tls_started = on_tls_started,
    .close = on_close,
};

/* --- start and stop ------------------------------------------------------ */

static void maybe_finish(struct pop3d *d)
{
    if (!d->stopping || d->stopped || net_server_count(d->net) > 0 || d->in_flight > 0)
        return;
    d->stopped = true;
    daemon_signals_close(&d->signals);
}

static void shutdown_conn(struct net_conn *c, void *ctx)
{
    (void)c;
    struct pconn *pc = ctx;
    if (!pop3_session_busy(pc->session)) {
        pop3_session_shutdown(pc->session);
        after_session(pc);
    }
}

static void on_stop(void *ctx, int signum)
{
    struct pop3d *d = ctx;
    log_info("pop3 event=stopping signal=%d connections=%zu", signum, net_server_count(d->net));
    d->stopping = true;
    net_server_stop_listening(d->net);
    net_server_each(d->net, shutdown_conn);
    maybe_finish(d);
}

static void on_reload(void *ctx)
{
    struct pop3d *d = ctx;
    d->tls = daemon_reload_tls(d->conf, d->tls, "pop3");
    net_server_set_tls(d->net, d->tls);
}

static void listen_all(struct pop3d *d)
{
    static const enum conf_listener_kind kinds[] = {CONF_POP3, CONF_POP3S};
    for (int i = 0; i < 2; i++) {
        const struct conf_listener *l = &d->conf->listeners[kinds[i]];
        for (size_t k = 0; k < l->n; k++) {
            char err[512];
            if (net_listen(d->net, &l->ep[k], kinds[i] == CONF_POP3S, &pop3_proto, d,
                           "-ERR [SYS/TEMP] Too many connections, try again later\r\n", err,
                           sizeof(err)) < 0)
                fatal(2, "[%s] %s", conf_listener_name(kinds[i]), err);
            log_info("pop3 event=listening listener=%s address=%s port=%u",
                     conf_listener_name(kinds[i]), l->ep[k].host, l->ep[k].port);
        }
    }
}

static void open_store(struct pop3d *d)
{
    char *path = conf_store_path(d->conf);
    char err[512];
    if (store_open(path, 0, &d->writer, err, sizeof(err)) < 0)
        fatal(2, "%s; run 'kotak init' first, or check [server] data_dir", err);
    if (store_open(path, STORE_READONLY, &d->reader, err, sizeof(err)) < 0)
        fatal(2, "%s", err);
    uv_mutex_init(&d->writer_mu);
    free(path);
}

int pop3d_run(const struct conf *conf)
{
    struct pop3d d = {.conf = conf, .loop = uv_default_loop()};
    log_set_level(conf->log_level);
    signal(SIGPIPE, SIG_IGN);
    d.tls = daemon_load_tls(conf, conf->listeners[CONF_POP3S].n > 0, "pop3");
    struct net_limits limits = {
        .idle_timeout_ms = conf->limits.pop3_idle_timeout_ms,
        .tls_handshake_timeout_ms = conf->limits.tls_handshake_timeout_ms,
        .connections = conf->limits.connections,
        .connections_per_address = conf->limits.connections_per_address,
        .stress_idle_timeout_ms = conf->limits.stress_idle_timeout_ms,
    };
    d.net = net_server_new(d.loop, d.tls, &limits, "pop3");
    listen_all(&d);
    daemon_drop_privileges(conf, "pop3");
    open_store(&d);
    char err[512], *data_dir = conf_path(conf, conf->data_dir);
    d.login = login_new(d.loop, &conf->auth, data_dir, err, sizeof(err));
    free(data_dir);
    if (d.login == NULL)
        fatal(1, "%s", err);
    daemon_signals_start(d.loop, &d.signals, on_stop, on_reload, &d);
    log_info("pop3 event=started version=%s", KOTAK_VERSION);

    uv_run(d.loop, UV_RUN_DEFAULT);

    log_info("pop3 event=stopped");
    net_server_free(&d.net);
    uv_run(d.loop, UV_RUN_NOWAIT);
    uv_loop_close(d.loop);
    store_close(&d.reader);
    store_close(&d.writer);
    uv_mutex_destroy(&d.writer_mu);
    login_free(&d.login);
    tls_server_free(&d.tls);
    free(d.locked);
    return 0;
}
