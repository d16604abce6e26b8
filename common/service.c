/*
 * service.c — the connection core; see service.h.
 */
#include "service.h"

#include <libgen.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "util.h"

/* What each listener hands to net: the service and the daemon's own context. */
struct service_listener {
    struct service *svc;
    void *listener;
    struct service_listener *next;
};

struct service {
    uv_loop_t *loop;
    const struct conf *conf;
    char name[16];
    struct net_server *net;
    struct tls_server *tls;
    struct login *login;
    const struct service_ops *ops;
    void *ctx;
    struct service_listener *listeners;
    struct daemon_signals signals;
    bool stopping, stopped;
    struct cert_watch *cert_watch; /* NULL without TLS */
};

/* A file as last seen, to tell a renewed certificate from the one loaded. */
struct file_id {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

/*
 * The certificate and key files, watched: a renewal (certbot and the like
 * write new files, or swap a link) is loaded as SIGHUP would, within a
 * second when the folder tells (inotify) and within a minute anyway.
 */
#define CERT_POLL_MS 60000
#define CERT_SETTLE_MS 1000 /* after a change in the folder: both files written by then */
struct cert_watch {
    struct service *svc;
    char *paths[2]; /* cert, key */
    struct file_id ids[2];
    uv_timer_t poll;   /* every minute, whatever the folder says */
    uv_timer_t settle; /* once, a second after the folder named one of the files */
    uv_fs_event_t dirs[2];
    int n_dirs;
    int open_handles;
};

static void maybe_finish(struct service *svc);
static void cert_watch_stop(struct service *svc);
static void login_done(struct login_req *r, int rc, int64_t user_id);

/* --- the life of a connection ------------------------------------------- */

static void conn_freed(uv_handle_t *h)
{
    free(h->data);
}

/* Frees sc once the connection is gone and nothing async refers to it. */
static void conn_release(struct service_conn *sc)
{
    if (sc->net != NULL || sc->async > 0 || sc->released)
        return;
    sc->released = true; /* a result handler and the close callback may both get here */
    struct service *svc = sc->svc;
    if (svc->ops->release != NULL)
        svc->ops->release(sc);
    login_req_close(&sc->login, conn_freed, sc);
    maybe_finish(svc);
}

static void flush(struct service_conn *sc)
{
    struct buf *out = sc->ops->output(sc->session);
    if (out->len > 0) {
        net_conn_write(sc->net, out->data, out->len);
        buf_reset(out);
    }
}

static bool sending(const struct service_conn *sc)
{
    return sc->ops->sending != NULL && sc->ops->sending(sc->session);
}

/* Sends what the session wrote, adds streamed pieces while the socket keeps
 * up, and does what the session asked. */
static void after_session(struct service_conn *sc)
{
    const struct session_ops *o = sc->ops;
    void *s = sc->session;
    flush(sc);
    while (sending(sc) && net_conn_pending(sc->net) < NET_LOW_WATER) {
        o->pump(s);
        flush(sc);
    }
    enum session_action a = o->action(s);
    bool waiting = o->busy(s) || sending(sc);
    if (a == SESSION_ACT_NONE && sc->svc->stopping && !waiting) {
        o->shutdown(s);
        after_session(sc);
        return;
    }
    if (a == SESSION_ACT_CLOSE) {
        net_conn_close(sc->net); /* may free the session: nothing after this */
        return;
    }
    net_conn_set_engaged(sc->net, o->engaged(s));
    if (a == SESSION_ACT_STARTTLS)
        net_conn_start_tls(sc->net);
    if (waiting)
        net_conn_pause(sc->net);
}

/* A result arrived or the socket drained: answer, then go on with what was
 * pipelined behind. */
static void resume(struct service_conn *sc)
{
    after_session(sc);
    if (sc->net != NULL && sc->session != NULL && !sc->ops->busy(sc->session) && !sending(sc))
        net_conn_resume(sc->net);
}

void service_conn_init(struct service_conn *sc, struct service *svc, struct net_conn *c,
                       void *session, const struct session_ops *ops)
{
    sc->svc = svc;
    sc->net = c;
    sc->session = session;
    sc->ops = ops;
    sc->async = 0;
    sc->released = false;
    login_req_init(svc->login, &sc->login, login_done);
}

void service_kick(struct service_conn *sc)
{
    if (sc->net != NULL && sc->session != NULL)
        resume(sc);
}

void service_result_due(struct service_conn *sc)
{
    sc->async++;
}

bool service_result_arrived(struct service_conn *sc)
{
    sc->async--;
    return sc->session != NULL;
}

void service_result_done(struct service_conn *sc)
{
    if (sc->session != NULL)
        resume(sc);
    conn_release(sc);
}

static void login_done(struct login_req *r, int rc, int64_t user_id)
{
    struct service_conn *sc =
        (struct service_conn *)((char *)r - offsetof(struct service_conn, login));
    metrics_count(rc > 0 ? METRIC_LOGIN_OK : rc == -EAGAIN ? METRIC_LOGIN_LOCKED
                                                          : METRIC_LOGIN_FAILED);
    if (service_result_arrived(sc)) {
        sc->ops->auth_done(sc->session, rc, user_id);
    } else { /* the client left before the answer: the attempt is still on record */
        char v[SASL_FIELD_MAX * 4 + 3];
        log_info("%s session=%s ip=%s event=login user=%s result=%s", sc->svc->name, sc->login_id,
                 sc->login_ip, log_value(v, sizeof(v), sc->login_user, strlen(sc->login_user)),
                 rc > 0 ? "ok" : rc == -EAGAIN ? "locked" : "failed");
    }
    service_result_done(sc);
}

void service_login(struct service_conn *sc, const char *user, const char *hash, int64_t user_id,
                   const char *password)
{
    snprintf(sc->login_id, sizeof(sc->login_id), "%s", net_conn_id(sc->net));
    snprintf(sc->login_ip, sizeof(sc->login_ip), "%s", net_conn_peer(sc->net));
    snprintf(sc->login_user, sizeof(sc->login_user), "%s", user);
    service_result_due(sc);
    login_check(&sc->login, net_conn_peer16(sc->net), user, hash, user_id, password);
}

/* --- net_proto ----------------------------------------------------------- */

static void *on_open(struct net_conn *c, void *listener_ctx)
{
    struct service_listener *l = listener_ctx;
    struct service_conn *sc = l->svc->ops->open(l->svc->ctx, c, l->listener);
    if (net_conn_is_tls(c))
        sc->ops->tls_started(sc->session, net_conn_tls_version(c), net_conn_tls_cipher(c),
                             net_conn_tls_cert_name(c));
    sc->ops->greet(sc->session);
    after_session(sc);
    return sc;
}

static void on_input(struct net_conn *c, void *ctx)
{
    struct service_conn *sc = ctx;
    struct buf *in = net_conn_input(c);
    size_t used;
    sc->ops->feed(sc->session, (const char *)in->data, in->len, &used);
    buf_consume(in, used);
    after_session(sc);
}

static void on_drain(struct net_conn *c, void *ctx)
{
    (void)c;
    struct service_conn *sc = ctx;
    if (sending(sc))
        resume(sc);
}

static void on_tls_started(struct net_conn *c, void *ctx)
{
    struct service_conn *sc = ctx;
    sc->ops->tls_started(sc->session, net_conn_tls_version(c), net_conn_tls_cipher(c),
                         net_conn_tls_cert_name(c));
}

static void on_timeout(struct net_conn *c, void *ctx)
{
    (void)c;
    struct service_conn *sc = ctx;
    sc->ops->timeout(sc->session);
    after_session(sc);
}

static void on_close(struct net_conn *c, void *ctx)
{
    struct service_conn *sc = ctx;
    char why[NET_TLS_ERROR_MAX], v[NET_TLS_ERROR_MAX + 16];
    const char *tls_error = net_conn_tls_error(c, why, sizeof why);
    if (tls_error != NULL)
        log_info("%s session=%s event=disconnect tls_error=%s", sc->svc->name, net_conn_id(c),
                 log_value(v, sizeof v, tls_error, strlen(tls_error)));
    else
        log_info("%s session=%s event=disconnect", sc->svc->name, net_conn_id(c));
    sc->net = NULL;
    sc->ops->free(sc->session);
    sc->session = NULL;
    conn_release(sc);
}

static const struct net_proto service_proto = {
    .open = on_open,
    .input = on_input,
    .drain = on_drain,
    .timeout = on_timeout,
    .tls_started = on_tls_started,
    .close = on_close,
};

/* --- start and stop ------------------------------------------------------ */

struct service *service_new(uv_loop_t *loop, const struct conf *conf, const char *name,
                            uint64_t idle_timeout_ms, struct tls_server *tls,
                            const struct service_ops *ops, void *ctx)
{
    log_set_level(conf->log_level);
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error code, not a death */
    struct net_limits limits = {
        .idle_timeout_ms = idle_timeout_ms,
        .tls_handshake_timeout_ms = conf->limits.tls_handshake_timeout_ms,
        .connections = conf->limits.connections,
        .connections_per_address = conf->limits.connections_per_address,
        .stress_idle_timeout_ms = conf->limits.stress_idle_timeout_ms,
    };
    struct service *svc = xcalloc(1, sizeof(*svc));
    svc->loop = loop;
    svc->conf = conf;
    snprintf(svc->name, sizeof(svc->name), "%s", name);
    svc->tls = tls;
    svc->ops = ops;
    svc->ctx = ctx;
    svc->net = net_server_new(loop, tls, &limits, name);
    return svc;
}

void service_set_login(struct service *svc, struct login *login)
{
    svc->login = login;
}

int service_listen(struct service *svc, const char *section, const struct conf_listener *cl,
                   bool implicit_tls, void *listener, const char *refused, char *err,
                   size_t err_size)
{
    int fds[CONF_LISTEN_MAX];
    size_t n_fds = notify_listen_fds(section, fds, CONF_LISTEN_MAX);
    size_t n = n_fds > 0 ? n_fds : cl->n;
    for (size_t k = 0; k < n; k++) {
        struct service_listener *l = xcalloc(1, sizeof(*l));
        l->svc = svc;
        l->listener = listener;
        l->next = svc->listeners;
        svc->listeners = l;
        char why[400];
        int rc = n_fds > 0 ? net_listen_fd(svc->net, fds[k], implicit_tls, &service_proto, l,
                                           refused, why, sizeof(why))
                           : net_listen(svc->net, &cl->ep[k], implicit_tls, &service_proto, l,
                                        refused, why, sizeof(why));
        if (rc < 0) {
            snprintf(err, err_size, "[%s] %s", section, why);
            return -1;
        }
        if (n_fds > 0)
            log_info("%s event=listening listener=%s fd=%d from=systemd", svc->name, section,
                     fds[k]);
        else
            log_info("%s event=listening listener=%s address=%s port=%u", svc->name, section,
                     cl->ep[k].host, cl->ep[k].port);
    }
    return 0;
}

bool service_has_tls(const struct service *svc)
{
    return svc->tls != NULL;
}

time_t service_cert_expiry(const struct service *svc)
{
    return svc->tls != NULL ? tls_server_expiry(svc->tls) : 0;
}

void service_check_stopped(struct service *svc)
{
    maybe_finish(svc);
}

/* When stopping and the last connection and result are done: stop the loop. */
static void maybe_finish(struct service *svc)
{
    if (!svc->stopping || svc->stopped || net_server_count(svc->net) > 0 ||
        (svc->ops->in_flight != NULL && svc->ops->in_flight(svc->ctx) > 0))
        return;
    svc->stopped = true;
    svc->ops->stopped(svc->ctx);
    cert_watch_stop(svc);
    daemon_signals_close(&svc->signals);
}

static void shutdown_conn(struct net_conn *c, void *ctx)
{
    (void)c;
    struct service_conn *sc = ctx;
    if (!sc->ops->busy(sc->session)) {
        sc->ops->shutdown(sc->session);
        after_session(sc);
    }
}

static void on_stop(void *ctx, int signum)
{
    struct service *svc = ctx;
    log_info("%s event=stopping signal=%d connections=%zu", svc->name, signum,
             net_server_count(svc->net));
    svc->stopping = true;
    notify_manager("STOPPING=1");
    net_server_stop_listening(svc->net);
    /* The daemon's own work first: a session's goodbye may end the stop. */
    if (svc->ops->stopping != NULL)
        svc->ops->stopping(svc->ctx);
    net_server_each(svc->net, shutdown_conn);
    maybe_finish(svc);
}

static struct file_id file_id(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return (struct file_id){.exists = false};
    return (struct file_id){true, st.st_dev, st.st_ino, st.st_size, st.st_mtim};
}

static bool same_file(const struct file_id *a, const struct file_id *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static void on_reload(void *ctx)
{
    struct service *svc = ctx;
    notify_reloading();
    struct cert_watch *cw = svc->cert_watch;
    if (cw != NULL) /* what is loaded now is what the watch compares with */
        for (int i = 0; i < 2; i++)
            cw->ids[i] = file_id(cw->paths[i]);
    svc->tls = daemon_reload_tls(svc->conf, svc->tls, svc->name);
    net_server_set_tls(svc->net, svc->tls);
    notify_manager("READY=1");
}

static void on_cert_timer(uv_timer_t *t)
{
    struct cert_watch *cw = t->data;
    if (cw->svc->stopping)
        return; /* no reload once STOPPING=1 has gone out */
    for (int i = 0; i < 2; i++) {
        struct file_id now = file_id(cw->paths[i]);
        if (now.exists && !same_file(&now, &cw->ids[i])) {
            char v[300];
            log_info("%s event=cert-changed file=%s", cw->svc->name,
                     log_value(v, sizeof(v), cw->paths[i], strlen(cw->paths[i])));
            on_reload(cw->svc);
            return;
        }
    }
}

/* Whether a change the folder reports is to one of the files (a store's WAL beside them is not). */
static bool names_a_file(const struct cert_watch *cw, const char *file)
{
    if (file == NULL)
        return true; /* the kernel did not say: look */
    for (int i = 0; i < 2; i++) {
        const char *slash = strrchr(cw->paths[i], '/');
        if (strcmp(slash != NULL ? slash + 1 : cw->paths[i], file) == 0)
            return true;
    }
    return false;
}

static void on_cert_dir(uv_fs_event_t *h, const char *file, int events, int status)
{
    (void)events, (void)status;
    struct cert_watch *cw = h->data;
    /* Armed once and not pushed back by later events: a folder that keeps
     * changing cannot put the look off for ever. */
    if (names_a_file(cw, file) && !uv_is_active((uv_handle_t *)&cw->settle))
        uv_timer_start(&cw->settle, on_cert_timer, CERT_SETTLE_MS, 0);
}

static void cert_watch_start(struct service *svc)
{
    struct cert_watch *cw = xcalloc(1, sizeof(*cw));
    cw->svc = svc;
    cw->paths[0] = conf_path(svc->conf, svc->conf->tls_cert);
    cw->paths[1] = conf_path(svc->conf, svc->conf->tls_key);
    for (int i = 0; i < 2; i++)
        cw->ids[i] = file_id(cw->paths[i]);
    uv_timer_t *timers[] = {&cw->poll, &cw->settle};
    for (int i = 0; i < 2; i++) {
        uv_timer_init(svc->loop, timers[i]);
        timers[i]->data = cw;
        uv_unref((uv_handle_t *)timers[i]);
    }
    uv_timer_start(&cw->poll, on_cert_timer, CERT_POLL_MS, CERT_POLL_MS);
    cw->open_handles = 2;
    char *copies[2] = {xstrdup(cw->paths[0]), xstrdup(cw->paths[1])};
    const char *dirs[2] = {dirname(copies[0]), dirname(copies[1])};
    int n = strcmp(dirs[0], dirs[1]) == 0 ? 1 : 2; /* both in one folder, as usual */
    for (int k = 0; k < n; k++) {
        uv_fs_event_t *h = &cw->dirs[k];
        uv_fs_event_init(svc->loop, h);
        h->data = cw;
        cw->open_handles++;
        cw->n_dirs++;
        int rc = uv_fs_event_start(h, on_cert_dir, dirs[k], 0);
        if (rc < 0) { /* no inotify to spare: the minute's look still comes */
            char v[300];
            log_warn("%s event=cert-watch dir=%s reason=\"%s\"", svc->name,
                     log_value(v, sizeof(v), dirs[k], strlen(dirs[k])), uv_strerror(rc));
        }
        uv_unref((uv_handle_t *)h);
    }
    free(copies[0]);
    free(copies[1]);
    svc->cert_watch = cw;
}

static void cert_watch_closed(uv_handle_t *h)
{
    struct cert_watch *cw = h->data;
    if (--cw->open_handles > 0)
        return;
    free(cw->paths[0]);
    free(cw->paths[1]);
    free(cw);
}

static void cert_watch_stop(struct service *svc)
{
    struct cert_watch *cw = svc->cert_watch;
    if (cw == NULL)
        return;
    svc->cert_watch = NULL;
    uv_close((uv_handle_t *)&cw->poll, cert_watch_closed);
    uv_close((uv_handle_t *)&cw->settle, cert_watch_closed);
    for (int k = 0; k < cw->n_dirs; k++)
        uv_close((uv_handle_t *)&cw->dirs[k], cert_watch_closed);
}

void service_run(struct service **svcp)
{
    struct service *svc = *svcp;
    daemon_signals_start(svc->loop, &svc->signals, on_stop, on_reload, svc);
    if (svc->tls != NULL)
        cert_watch_start(svc);
    /* Listening, the store open, privileges dropped: clients may come. */
    notify_manager("READY=1");
    uv_run(svc->loop, UV_RUN_DEFAULT);
    log_info("%s event=stopped", svc->name);
    net_server_free(&svc->net);
    uv_run(svc->loop, UV_RUN_NOWAIT); /* let the listeners' close callbacks run */
    uv_loop_close(svc->loop);
    for (struct service_listener *l = svc->listeners, *next; l != NULL; l = next) {
        next = l->next;
        free(l);
    }
    login_free(&svc->login);
    tls_server_free(&svc->tls);
    free(svc);
    *svcp = NULL;
}
