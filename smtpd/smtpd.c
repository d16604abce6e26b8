/*
 * smtpd.c — the glue of kotak-smtpd: the only file that knows libuv, TLS,
 * the store thread and the thread pool at once. Sessions stay pure; this
 * file gives them their smtp_ops and carries bytes and results between
 * them and the world.
 *
 * Start-up order matters for privileges: the certificate and key are read
 * and the ports bound as root, then the daemon becomes the configured user
 * before it opens the store, so that every store file it creates belongs to
 * that user.
 */
#include "smtpd.h"

#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "committer.h"
#include "daemon.h"
#include "log.h"
#include "login.h"
#include "net.h"
#include "smtp_session.h"
#include "spool.h"
#include "store.h"
#include "tls.h"
#include "util.h"

struct smtpd;

/* What each listener passes to its connections. */
struct listener_ctx {
    struct smtpd *d;
    enum smtp_role role;
    const char *name;
};

struct smtpd {
    const struct conf *conf;
    uv_loop_t *loop;
    struct net_server *net;
    struct tls_server *tls;
    struct store *reader; /* look-ups on the loop thread */
    struct committer *committer;
    struct login *login;
    char *data_dir;
    struct daemon_signals signals;
    bool stopping, stopped;
    struct listener_ctx listeners[3];
};

/* One connection's state beside its session; lives until its last async result. */
struct sconn {
    struct smtpd *d;
    struct net_conn *net;  /* NULL once the connection is gone */
    const struct listener_ctx *l;
    struct smtp_session *session;
    struct spool spool;
    bool spool_open;
    struct login_req login;
    int async;             /* commit jobs and login checks in flight */
    bool released;
};

static void maybe_finish(struct smtpd *d);

/* --- the life of a connection ------------------------------------------- */

static void sconn_freed(uv_handle_t *h)
{
    free(h->data);
}

/* Frees sc once the connection is gone and nothing async refers to it. */
static void sconn_release(struct sconn *sc)
{
    if (sc->net != NULL || sc->async > 0 || sc->released)
        return;
    sc->released = true; /* a result handler and the close callback may both get here */
    if (sc->spool_open)
        spool_free(&sc->spool);
    struct smtpd *d = sc->d;
    login_req_close(&sc->login, sconn_freed, sc);
    maybe_finish(d);
}

/* Sends what the session wrote and does what it asked. */
static void after_session(struct sconn *sc)
{
    struct smtp_session *s = sc->session;
    struct buf *out = smtp_session_output(s);
    if (out->len > 0) {
        net_conn_write(sc->net, out->data, out->len);
        buf_reset(out);
    }
    bool busy = smtp_session_busy(s);
    enum smtp_action a = smtp_session_action(s);
    if (a == SMTP_ACT_NONE && sc->d->stopping && !busy) {
        smtp_session_shutdown(s);
        after_session(sc);
        return;
    }
    if (a == SMTP_ACT_CLOSE) {
        net_conn_close(sc->net); /* may free the session: nothing after this */
        return;
    }
    net_conn_set_engaged(sc->net, smtp_session_engaged(s));
    if (a == SMTP_ACT_STARTTLS)
        net_conn_start_tls(sc->net);
    if (busy)
        net_conn_pause(sc->net);
}

/* An async result arrived: answer, then go on with what was pipelined behind. */
static void resume(struct sconn *sc)
{
    after_session(sc);
    if (sc->net != NULL && !smtp_session_busy(sc->session))
        net_conn_resume(sc->net);
}

/* --- smtp_ops ------------------------------------------------------------ */

static int op_resolve(void *ctx, const struct addr *rcpt, struct store_rcpts *r)
{
    struct sconn *sc = ctx;
    return store_resolve(sc->d->reader, rcpt, r);
}

static int op_spool_begin(void *ctx)
{
    struct sconn *sc = ctx;
    spool_init(&sc->spool, sc->d->conf->limits.spool_memory, sc->d->data_dir);
    sc->spool_open = true;
    return 0;
}

static int op_spool_write(void *ctx, const void *p, size_t n)
{
    struct sconn *sc = ctx;
    return spool_write(&sc->spool, p, n);
}

static void op_spool_abort(void *ctx)
{
    struct sconn *sc = ctx;
    if (sc->spool_open)
        spool_free(&sc->spool);
    sc->spool_open = false;
}

static void op_deliver(void *ctx, const struct smtp_tx *tx)
{
    struct sconn *sc = ctx;
    struct commit_job *job = xcalloc(1, sizeof(*job));
    job->spool = sc->spool; /* the job owns it now */
    sc->spool_open = false;
    job->n_users = tx->rcpts.n;
    job->user_ids = xmalloc(tx->rcpts.n * sizeof(int64_t));
    memcpy(job->user_ids, tx->rcpts.user_ids, tx->rcpts.n * sizeof(int64_t));
    job->received = time(NULL);
    job->owner = sc;
    sc->async++;
    committer_submit(sc->d->committer, job);
}

static void commit_done(struct commit_job *job, void *ctx)
{
    (void)ctx;
    struct sconn *sc = job->owner;
    sc->async--;
    if (sc->session != NULL) {
        smtp_session_store_done(sc->session, job->rc);
        resume(sc);
    }
    commit_job_free(job);
    sconn_release(sc);
}

static void login_done(struct login_req *r, int rc, int64_t user_id)
{
    struct sconn *sc = (struct sconn *)((char *)r - offsetof(struct sconn, login));
    sc->async--;
    if (sc->session != NULL) {
        smtp_session_auth_done(sc->session, rc, user_id);
        resume(sc);
    }
    sconn_release(sc);
}

static void op_auth(void *ctx, const char *user, const char *password)
{
    struct sconn *sc = ctx;
    struct store_user u;
    bool found = store_user_by_login(sc->d->reader, user, &u) == 1;
    sc->async++;
    login_check(&sc->login, net_conn_peer16(sc->net), user, found ? u.hash : NULL,
                found ? u.id : 0, password);
    explicit_bzero(&u, sizeof(u));
}

static time_t op_now(void *ctx)
{
    (void)ctx;
    return time(NULL);
}

static const struct smtp_ops smtp_ops = {
    .resolve = op_resolve,
    .spool_begin = op_spool_begin,
    .spool_write = op_spool_write,
    .spool_abort = op_spool_abort,
    .deliver = op_deliver,
    .auth = op_auth,
    .now = op_now,
};

/* --- net_proto ----------------------------------------------------------- */

static void *on_open(struct net_conn *c, void *listener_ctx)
{
    const struct listener_ctx *l = listener_ctx;
    struct smtpd *d = l->d;
    const struct conf_limits *lim = &d->conf->limits;
    struct sconn *sc = xcalloc(1, sizeof(*sc));
    sc->d = d;
    sc->net = c;
    sc->l = l;
    login_req_init(d->login, &sc->login, login_done);
    struct smtp_session_config cfg = {
        .role = l->role,
        .hostname = d->conf->hostname,
        .tls_available = d->tls != NULL,
        .peer_loopback = net_conn_is_loopback(c),
        .message_size = lim->message_size,
        .recipients = lim->recipients,
        .line_max = lim->command_line,
        .text_max = lim->text_line,
        .bare_lf_reject = lim->bare_newline_reject,
        .bad_commands = (unsigned)lim->bad_commands,
        .junk_commands = (unsigned)lim->junk_commands,
        .hard_errors = (unsigned)lim->hard_errors,
    };
    snprintf(cfg.peer_ip, sizeof(cfg.peer_ip), "%s", net_conn_peer(c));
    snprintf(cfg.session_id, sizeof(cfg.session_id), "%s", net_conn_id(c));
    sc->session = smtp_session_new(&cfg, &smtp_ops, sc);
    log_info("smtp session=%s ip=%s listener=%s event=connect", net_conn_id(c), net_conn_peer(c),
             l->name);
    if (net_conn_is_tls(c))
        smtp_session_tls_started(sc->session, net_conn_tls_version(c), net_conn_tls_cipher(c));
    smtp_session_greet(sc->session);
    after_session(sc);
    return sc;
}

static void on_input(struct net_conn *c, void *ctx)
{
    struct sconn *sc = ctx;
    struct buf *in = net_conn_input(c);
    size_t used;
    smtp_session_feed(sc->session, (const char *)in->data, in->len, &used);
    buf_consume(in, used);
    after_session(sc);
}

static void on_tls_started(struct net_conn *c, void *ctx)
{
    struct sconn *sc = ctx;
    smtp_session_tls_started(sc->session, net_conn_tls_version(c), net_conn_tls_cipher(c));
}

static void on_timeout(struct net_conn *c, void *ctx)
{
    (void)c;
    struct sconn *sc = ctx;
    smtp_session_timeout(sc->session);
    after_session(sc);
}

static void on_close(struct net_conn *c, void *ctx)
{
    struct sconn *sc = ctx;
    log_info("smtp session=%s event=disconnect", net_conn_id(c));
    sc->net = NULL;
    smtp_session_free(&sc->session);
    sconn_release(sc);
}

static const struct net_proto smtp_proto = {
    .open = on_open,
    .input = on_input,
    .timeout = on_timeout,
    .tls_started = on_tls_started,
    .close = on_close,
};

/* --- start and stop ------------------------------------------------------ */

/* When stopping and the last connection and message are done: stop the loop. */
static void maybe_finish(struct smtpd *d)
{
    if (!d->stopping || d->stopped || net_server_count(d->net) > 0 ||
        committer_in_flight(d->committer) > 0)
        return;
    d->stopped = true;
    /* The read-only connection goes first: the last one to close copies the
     * WAL into the database and removes it, which a read-only one cannot. */
    store_close(&d->reader);
    committer_stop(d->committer);
    daemon_signals_close(&d->signals);
}

static void shutdown_conn(struct net_conn *c, void *ctx)
{
    (void)c;
    struct sconn *sc = ctx;
    if (!smtp_session_busy(sc->session)) {
        smtp_session_shutdown(sc->session);
        after_session(sc);
    }
}

static void on_stop(void *ctx, int signum)
{
    struct smtpd *d = ctx;
    log_info("smtp event=stopping signal=%d connections=%zu", signum, net_server_count(d->net));
    d->stopping = true;
    net_server_stop_listening(d->net);
    net_server_each(d->net, shutdown_conn);
    maybe_finish(d);
}

static void on_reload(void *ctx)
{
    struct smtpd *d = ctx;
    d->tls = daemon_reload_tls(d->conf, d->tls, "smtp");
    net_server_set_tls(d->net, d->tls);
}

static void listen_all(struct smtpd *d)
{
    static const struct {
        enum conf_listener_kind kind;
        enum smtp_role role;
    } roles[] = {
        {CONF_SMTP, SMTP_ROLE_MX},
        {CONF_SUBMISSION, SMTP_ROLE_SUBMISSION},
        {CONF_SUBMISSIONS, SMTP_ROLE_SUBMISSIONS},
    };
    for (int i = 0; i < 3; i++) {
        const struct conf_listener *l = &d->conf->listeners[roles[i].kind];
        d->listeners[i] = (struct listener_ctx){d, roles[i].role, conf_listener_name(roles[i].kind)};
        for (size_t k = 0; k < l->n; k++) {
            char err[512];
            if (net_listen(d->net, &l->ep[k], roles[i].role == SMTP_ROLE_SUBMISSIONS, &smtp_proto,
                           &d->listeners[i], "421 4.7.0 Too many connections, try again later\r\n",
                           err, sizeof(err)) < 0)
                fatal(2, "[%s] %s", d->listeners[i].name, err);
            log_info("smtp event=listening listener=%s address=%s port=%u", d->listeners[i].name,
                     l->ep[k].host, l->ep[k].port);
        }
    }
}

static void open_store(struct smtpd *d)
{
    char *path = conf_store_path(d->conf);
    char err[512];
    struct store *writer, *checkpointer;
    if (store_open(path, 0, &writer, err, sizeof(err)) < 0)
        fatal(2, "%s; run 'kotak init' first, or check [server] data_dir", err);
    if (store_open(path, 0, &checkpointer, err, sizeof(err)) < 0)
        fatal(2, "%s", err);
    if (store_open(path, STORE_READONLY, &d->reader, err, sizeof(err)) < 0)
        fatal(2, "%s", err);
    if (store_set_max_size(writer, d->conf->limits.store_size) < 0)
        fatal(2, "cannot cap the store at [limits] store_size: %s", store_errmsg(writer));
    d->committer = committer_start(d->loop, writer, checkpointer, commit_done, d);
    if (d->committer == NULL)
        fatal(1, "cannot start the store thread");
    free(path);
}

int smtpd_run(const struct conf *conf)
{
    struct smtpd d = {.conf = conf, .loop = uv_default_loop()};
    log_set_level(conf->log_level);
    signal(SIGPIPE, SIG_IGN);
    d.tls = daemon_load_tls(conf, conf->listeners[CONF_SUBMISSION].n > 0 ||
                                      conf->listeners[CONF_SUBMISSIONS].n > 0, "smtp");
    struct net_limits limits = {
        .idle_timeout_ms = conf->limits.idle_timeout_ms,
        .tls_handshake_timeout_ms = conf->limits.tls_handshake_timeout_ms,
        .connections = conf->limits.connections,
        .connections_per_address = conf->limits.connections_per_address,
        .stress_idle_timeout_ms = conf->limits.stress_idle_timeout_ms,
    };
    d.net = net_server_new(d.loop, d.tls, &limits, "smtp");
    listen_all(&d);
    daemon_drop_privileges(conf, "smtp");
    d.data_dir = conf_path(conf, conf->data_dir);
    open_store(&d);
    char err[512];
    d.login = login_new(d.loop, &conf->auth, d.data_dir, err, sizeof(err));
    if (d.login == NULL)
        fatal(1, "%s", err);
    daemon_signals_start(d.loop, &d.signals, on_stop, on_reload, &d);
    log_info("smtp event=started version=%s hostname=%s", KOTAK_VERSION, conf->hostname);

    uv_run(d.loop, UV_RUN_DEFAULT);

    log_info("smtp event=stopped");
    net_server_free(&d.net);
    uv_run(d.loop, UV_RUN_NOWAIT); /* let the listeners' close callbacks run */
    uv_loop_close(d.loop);
    store_close(&d.reader);
    login_free(&d.login);
    tls_server_free(&d.tls);
    free(d.data_dir);
    return 0;
}
