/*
 * smtpd.c — the glue of kotak-smtpd: the session's smtp_ops (the store,
 * the spool, the store thread), its listeners, and its start-up. The life
 * of each connection is the connection core's (common/service.c); this file
 * keeps what only SMTP has.
 *
 * Start-up order matters for privileges: the certificate and key are read
 * and the ports bound as root, then the daemon becomes the configured user
 * before it opens the store, so that every store file it creates belongs to
 * that user.
 */
#include "smtpd.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "checks.h"
#include "committer.h"
#include "daemon.h"
#include "log.h"
#include "login.h"
#include "outbound.h"
#include "service.h"
#include "smtp_session.h"
#include "spool.h"
#include "srs.h"
#include "store.h"
#include "util.h"
#include "watch.h"
#include "web.h"
#include "exporter.h"
#include "gauges.h"
#include "metrics.h"

struct smtpd;

/* What each listener passes to its connections. */
struct listener_ctx {
    struct smtpd *d;
    enum smtp_role role;
    const char *name;
    enum { LISTEN_MAIL, LISTEN_WEB, LISTEN_METRICS } kind;
};

struct smtpd {
    const struct conf *conf;
    struct service *svc;
    struct store *reader; /* look-ups on the loop thread */
    struct committer *committer;
    struct checks *checks;
    struct outbound *outbound;
    uint8_t srs_secret[SRS_SECRET_SIZE];
    char *data_dir;
    char *store_path; /* kotak.db, as opened */
    struct listener_ctx listeners[5]; /* smtp, submission, submissions, web, metrics */
    struct watch *watch; /* the live view's ring; NULL: off */
    struct web *web;     /* the live view's page; NULL: off */
    struct exporter *exporter; /* /metrics, /healthz; NULL: off */
    struct gauges *gauges;     /* what only kotak-smtpd shows there; NULL: off */
    bool lookup_failing;       /* a failed look-up was logged; told again after one succeeds */
};

/* One connection beside its session: the core's part, and the spool. */
struct sconn {
    struct service_conn conn; /* first: the core frees the whole */
    struct smtpd *d;
    enum smtp_role role;
    struct spool spool;
    bool spool_open;
    char id[16];  /* the connection's, for logs */
    char ip[64];  /* the client's address */
    bool web;     /* a viewer of the live view or a scrape, not an SMTP client */
};

/* --- the session, as the core sees it ------------------------------------ */

static void s_greet(void *s)
{
    smtp_session_greet(s);
}

static void s_feed(void *s, const char *p, size_t n, size_t *used_r)
{
    smtp_session_feed(s, p, n, used_r);
}

static struct buf *s_output(void *s)
{
    return smtp_session_output(s);
}

static bool s_busy(const void *s)
{
    return smtp_session_busy(s);
}

static enum session_action s_action(const void *s)
{
    switch (smtp_session_action((struct smtp_session *)s)) {
    case SMTP_ACT_CLOSE:
        return SESSION_ACT_CLOSE;
    case SMTP_ACT_STARTTLS:
        return SESSION_ACT_STARTTLS;
    default:
        return SESSION_ACT_NONE;
    }
}

static bool s_engaged(const void *s)
{
    return smtp_session_engaged(s);
}

static void s_tls_started(void *s, const char *version, const char *cipher, const char *cert)
{
    smtp_session_tls_started(s, version, cipher, cert);
}

static void s_auth_done(void *s, int rc, int64_t user_id)
{
    smtp_session_auth_done(s, rc, user_id);
}

static void s_timeout(void *s)
{
    smtp_session_timeout(s);
}

static void s_shutdown(void *s)
{
    smtp_session_shutdown(s);
}

static void s_free(void *s)
{
    struct smtp_session *session = s;
    smtp_session_free(&session);
}

static const struct session_ops session_ops = {
    .greet = s_greet,
    .feed = s_feed,
    .output = s_output,
    .busy = s_busy,
    .action = s_action,
    .engaged = s_engaged,
    .tls_started = s_tls_started,
    .auth_done = s_auth_done,
    .timeout = s_timeout,
    .shutdown = s_shutdown,
    .free = s_free,
};

/* --- smtp_ops ------------------------------------------------------------ */

/* A look-up that fails is told (the client only hears 451), once until
 * one succeeds again: a client repeating RCPT must not flood the log. */
static void lookup_done(struct sconn *sc, const char *what, int rc)
{
    struct smtpd *d = sc->d;
    if (rc >= 0 || rc == -KOTAK_ENODOMAIN) {
        d->lookup_failing = false;
        return;
    }
    if (d->lookup_failing)
        return;
    d->lookup_failing = true;
    char v[600];
    const char *why = store_errmsg(d->reader);
    log_error("smtp session=%s event=lookup-failed of=%s rc=%d error=%s", sc->id, what, rc,
              log_value(v, sizeof(v), why, strlen(why)));
}

static int op_resolve(void *ctx, const struct addr *address, struct store_rcpts *r)
{
    struct sconn *sc = ctx;
    int rc = store_resolve(sc->d->reader, address, r);
    lookup_done(sc, "address", rc);
    return rc;
}

static void op_rcpts_free(void *ctx, struct store_rcpts *r)
{
    (void)ctx;
    store_rcpts_free(r);
}

/* One row on the loop's read-only connection, as resolve's look-ups are. */
static int op_quota(void *ctx, int64_t user_id, struct store_quota *q_r)
{
    struct sconn *sc = ctx;
    int rc = store_quota_get(sc->d->reader, user_id, q_r);
    lookup_done(sc, "quota", rc);
    return rc;
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

/*
 * The sender the queue sends a message on with. Mail taken on the MX port
 * for an alias that forwards elsewhere is sent with an SRS sender of the
 * alias's domain, so that the receiver's SPF check, which looks at that
 * domain, passes; a user's own mail keeps its sender.
 */
static const char *forward_sender(struct sconn *sc, const struct smtp_tx *tx)
{
    static char srs[ADDR_TEXT_SIZE];
    if (sc->role != SMTP_ROLE_MX || tx->from[0] == '\0' || tx->remote[0].orcpt == NULL)
        return tx->from;
    const char *at = strrchr(tx->remote[0].orcpt, '@');
    if (at == NULL || srs_forward(sc->d->srs_secret, time(NULL), tx->from, at + 1, srs) < 0)
        return tx->from; /* too long to rewrite: the original, as before SRS */
    return srs;
}

static int op_srs_reverse(void *ctx, const struct addr *rcpt, char *original)
{
    struct sconn *sc = ctx;
    if (!srs_is_srs(rcpt->local) || store_domain_exists(sc->d->reader, rcpt->domain) != 1)
        return 0;
    int rc = srs_reverse(sc->d->srs_secret, time(NULL), rcpt->local, original);
    return rc == 0 ? 1 : rc;
}

static void checks_done(void *ctx, struct commit_job *job, const char *refusal)
{
    struct sconn *sc = ctx;
    if (refusal == NULL && sc->conn.session != NULL) {
        committer_submit(sc->d->committer, job); /* its result is the one awaited */
        return;
    }
    /* Refused, or the client has gone: nothing was promised, nothing is kept. */
    commit_job_free(job);
    if (service_result_arrived(&sc->conn))
        smtp_session_refused(sc->conn.session,
                             refusal ? refusal : "451 4.3.0 Temporary failure, try again later");
    service_result_done(&sc->conn);
}

/* Mail on the MX is checked; a user's mail is cleaned of forged results,
 * and signed when it goes elsewhere. */
static bool start_checks(struct sconn *sc, const struct smtp_tx *tx, struct commit_job *job)
{
    struct check_request req = {
        .session_id = sc->id,
        .queue_id = tx->id,
        .ip = sc->ip,
        .helo = tx->helo,
        .mail_from = tx->from,
        .rcpts = (const char *const *)tx->named,
        .n_rcpts = tx->n_rcpt_cmds,
        .user = "",
    };
    if (sc->role == SMTP_ROLE_MX) {
        req.kind = CHECK_INBOUND;
    } else if (tx->user_id != 0) {
        req.kind = CHECK_SIGN;
        req.sign = tx->n_remote > 0;
    } else {
        return false;
    }
    checks_start(sc->d->checks, &req, job, checks_done, sc);
    return true;
}

static void op_deliver(void *ctx, const struct smtp_tx *tx)
{
    struct sconn *sc = ctx;
    struct commit_job *job = xcalloc(1, sizeof(*job));
    job->spool = sc->spool; /* the job owns it now */
    sc->spool_open = false;
    job->n_users = tx->rcpts.n;
    if (tx->rcpts.n > 0) { /* only the queue's, maybe */
        job->user_ids = xmalloc(tx->rcpts.n * sizeof(int64_t));
        memcpy(job->user_ids, tx->rcpts.user_ids, tx->rcpts.n * sizeof(int64_t));
    }
    job->received = time(NULL);
    if (tx->n_remote > 0) {
        job->env = (struct store_envelope){
            .sender = xstrdup(forward_sender(sc, tx)),
            .user_id = tx->user_id,
            .ret = tx->ret,
            .envid = tx->envid != NULL ? xstrdup(tx->envid) : NULL,
            .smtputf8 = tx->utf8,
        };
        job->remote = xcalloc(tx->n_remote, sizeof(*job->remote));
        for (size_t i = 0; i < tx->n_remote; i++)
            job->remote[i] = (struct commit_remote){
                .address = xstrdup(tx->remote[i].address),
                .orcpt = tx->remote[i].orcpt != NULL ? xstrdup(tx->remote[i].orcpt) : NULL,
                .notify = tx->remote[i].notify,
            };
        job->n_remote = tx->n_remote;
    }
    job->owner = sc;
    service_result_due(&sc->conn);
    if (!start_checks(sc, tx, job))
        committer_submit(sc->d->committer, job);
}

static void commit_done(struct commit_job *job, void *ctx)
{
    struct smtpd *d = ctx;
    if (job->from_queue) {
        outbound_job_done(d->outbound, job);
        service_check_stopped(d->svc);
        return;
    }
    if (job->rc == 0 && job->n_remote > 0)
        outbound_kick(d->outbound);
    struct sconn *sc = job->owner;
    /* Counted here, not in the session: a client gone after the dot still had its mail stored. */
    metrics_count(job->rc == 0         ? METRIC_SMTP_STORED
                  : job->rc == -ENOSPC ? METRIC_SMTP_DISK_FULL
                                       : METRIC_SMTP_STORE_ERROR);
    if (job->rc == 0) /* the journey's first step, before the 250 that promises it */
        watch_say(d->watch, sc->id, WATCH_SMTP, WATCH_MAIL, false,
                  "stored id=%lld maildrops=%zu to-send=%zu", (long long)job->message_id,
                  job->n_users, job->n_remote);
    if (service_result_arrived(&sc->conn))
        smtp_session_store_done(sc->conn.session, job->rc);
    commit_job_free(job);
    service_result_done(&sc->conn);
}

static void op_auth(void *ctx, const char *user, const char *password)
{
    struct sconn *sc = ctx;
    struct store_user u;
    bool found = store_user_by_login(sc->d->reader, user, &u) == 1;
    service_login(&sc->conn, user, found ? u.hash : NULL, found ? u.id : 0, password);
    explicit_bzero(&u, sizeof(u));
}

static time_t op_now(void *ctx)
{
    (void)ctx;
    return time(NULL);
}

static bool op_watched(void *ctx)
{
    struct sconn *sc = ctx;
    return watch_on(sc->d->watch);
}

static void op_watch(void *ctx, enum watch_kind kind, bool tls, const char *text, size_t len)
{
    struct sconn *sc = ctx;
    watch_put(sc->d->watch, sc->id, WATCH_SMTP, kind, tls, text, len);
}

static const struct smtp_ops smtp_ops = {
    .resolve = op_resolve,
    .rcpts_free = op_rcpts_free,
    .quota = op_quota,
    .spool_begin = op_spool_begin,
    .spool_write = op_spool_write,
    .spool_abort = op_spool_abort,
    .deliver = op_deliver,
    .auth = op_auth,
    .now = op_now,
    .srs_reverse = op_srs_reverse,
    .watched = op_watched,
    .watch = op_watch,
};

/* --- connections, start and stop ---------------------------------------- */

/* The random part of the Message-IDs a session makes. Only uniqueness counts,
 * so should the kernel have no entropy yet, the clock stands in. */
static uint64_t msgid_random(void)
{
    uint64_t r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = uv_hrtime() ^ ((uint64_t)getpid() << 40);
    return r;
}

static struct service_conn *on_open(void *ctx, struct net_conn *c, void *listener)
{
    struct smtpd *d = ctx;
    const struct listener_ctx *l = listener;
    const struct conf_limits *lim = &d->conf->limits;
    struct sconn *sc = xcalloc(1, sizeof(*sc));
    sc->d = d;
    sc->role = l->role;
    if (l->kind == LISTEN_WEB) {
        sc->web = true;
        service_conn_init(&sc->conn, d->svc, c, web_session_new(d->web, &sc->conn),
                          &web_session_ops);
        return &sc->conn;
    }
    if (l->kind == LISTEN_METRICS) {
        sc->web = true;
        service_conn_init(&sc->conn, d->svc, c, exporter_session_new(d->exporter, &sc->conn),
                          &exporter_session_ops);
        return &sc->conn;
    }
    metrics_count(METRIC_CONNECTIONS);
    metrics_add(METRIC_CONNECTIONS_OPEN, 1);
    struct smtp_session_config cfg = {
        .role = l->role,
        .hostname = d->conf->hostname,
        .tls_available = service_has_tls(d->svc),
        .peer_loopback = net_conn_is_loopback(c),
        .message_size = lim->message_size,
        .recipients = lim->recipients,
        .line_max = lim->command_line,
        .text_max = lim->text_line,
        .bare_lf_reject = lim->bare_newline_reject,
        .bad_commands = (unsigned)lim->bad_commands,
        .junk_commands = (unsigned)lim->junk_commands,
        .hard_errors = (unsigned)lim->hard_errors,
        .data_grace_s = (unsigned)((lim->idle_timeout_ms + 999) / 1000),
        .min_data_rate = (unsigned)lim->min_data_rate,
        .msgid_random = msgid_random(),
    };
    snprintf(cfg.peer_ip, sizeof(cfg.peer_ip), "%s", net_conn_peer(c));
    snprintf(cfg.session_id, sizeof(cfg.session_id), "%s", net_conn_id(c));
    snprintf(sc->id, sizeof(sc->id), "%s", net_conn_id(c));
    snprintf(sc->ip, sizeof(sc->ip), "%s", net_conn_peer(c));
    service_conn_init(&sc->conn, d->svc, c, smtp_session_new(&cfg, &smtp_ops, sc), &session_ops);
    log_info("smtp session=%s ip=%s listener=%s event=connect", net_conn_id(c), net_conn_peer(c),
             l->name);
    if (watch_on(d->watch)) {
        char local[80];
        net_conn_local(c, local, sizeof(local));
        watch_say(d->watch, sc->id, WATCH_SMTP, WATCH_OPEN, net_conn_is_tls(c), "%s -> %s [%s]",
                  sc->ip, local, l->name);
    }
    return &sc->conn;
}

static void on_release(struct service_conn *conn)
{
    struct sconn *sc = (struct sconn *)conn;
    if (sc->spool_open)
        spool_free(&sc->spool);
    if (sc->web)
        return;
    metrics_add(METRIC_CONNECTIONS_OPEN, (uint64_t)-1);
    watch_say(sc->d->watch, sc->id, WATCH_SMTP, WATCH_CLOSE, false, "closed");
}

static size_t in_flight(void *ctx)
{
    struct smtpd *d = ctx;
    return committer_in_flight(d->committer) + checks_in_flight(d->checks) +
           (d->outbound ? outbound_busy(d->outbound) : 0) + gauges_busy(d->gauges);
}

static void outbound_idle(void *ctx)
{
    struct smtpd *d = ctx;
    service_check_stopped(d->svc);
}

static void on_stopping(void *ctx)
{
    struct smtpd *d = ctx;
    outbound_stop(d->outbound, outbound_idle, d);
    gauges_stop(d->gauges);
    /* Last: a check that ends answers its session, and that may be the
     * last work in flight, which ends the stop and frees what is above. */
    checks_stop(d->checks);
}

static void on_stopped(void *ctx)
{
    struct smtpd *d = ctx;
    outbound_free(&d->outbound);
    checks_free(&d->checks);
    web_free(&d->web);
    exporter_free(&d->exporter);
    gauges_free(&d->gauges);
    /* The read-only connection goes first: the last one to close copies the
     * WAL into the database and removes it, which a read-only one cannot. */
    store_close(&d->reader);
    committer_stop(d->committer);
}

static const struct service_ops service_ops = {
    .open = on_open,
    .release = on_release,
    .in_flight = in_flight,
    .stopping = on_stopping,
    .stopped = on_stopped,
};

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
    char err[512];
    for (int i = 0; i < 3; i++) {
        d->listeners[i] =
            (struct listener_ctx){d, roles[i].role, conf_listener_name(roles[i].kind), LISTEN_MAIL};
        if (service_listen(d->svc, d->listeners[i].name, &d->conf->listeners[roles[i].kind],
                           roles[i].role == SMTP_ROLE_SUBMISSIONS, &d->listeners[i],
                           "421 4.7.0 Too many connections, try again later\r\n", err,
                           sizeof(err)) < 0)
            fatal(2, "%s", err);
    }
    /* The live view's page, when [web] listen is set: served here, the
     * daemon that always runs; kotak-pop3d's events come from its ring.
     * Its port taken (by anyone: it is above 1024) costs the view, never
     * the mail: that is logged and the daemon goes on without the page. */
    d->listeners[3] = (struct listener_ctx){d, SMTP_ROLE_MX, "web", LISTEN_WEB};
    if (service_listen(d->svc, "web", &d->conf->web_listen, false, &d->listeners[3],
                       "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                       "Content-Length: 0\r\n\r\n",
                       err, sizeof(err)) < 0) {
        char v[600];
        log_warn("smtp event=web-off why=%s", log_value(v, sizeof(v), err, strlen(err)));
    }
    /* /metrics and /healthz, when [metrics] listen is set: the same as the
     * view, here for both daemons, and a taken port costs only them. */
    d->listeners[4] = (struct listener_ctx){d, SMTP_ROLE_MX, "metrics", LISTEN_METRICS};
    if (service_listen(d->svc, "metrics", &d->conf->metrics_listen, false, &d->listeners[4],
                       "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                       "Content-Length: 0\r\n\r\n",
                       err, sizeof(err)) < 0) {
        char v[600];
        log_warn("smtp event=metrics-off why=%s", log_value(v, sizeof(v), err, strlen(err)));
    }
}

/* What /metrics shows that only kotak-smtpd knows: the last refresh's queue, the certificate. */
static void fill_gauges(void *ctx, struct metrics_gauges *g)
{
    struct smtpd *d = ctx;
    gauges_fill(d->gauges, g);
    g->cert_expiry = service_cert_expiry(d->svc);
}

static void open_store(struct smtpd *d, uv_loop_t *loop)
{
    char *path = d->store_path = conf_store_path(d->conf);
    daemon_hold_store(path); /* before it is opened: a restore may be under way */
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
    d->committer = committer_start(loop, writer, checkpointer, commit_done, d);
    if (d->committer == NULL)
        fatal(1, "cannot start the store thread");
    if (store_srs_secret(d->reader, d->srs_secret) < 0)
        fatal(2, "cannot read the store's SRS secret: %s", store_errmsg(d->reader));
    d->outbound = outbound_new(loop, d->conf, d->reader, d->committer, d->data_dir, d->srs_secret,
                               err, sizeof(err));
    if (d->outbound == NULL)
        fatal(2, "%s", err);
    if ((d->checks = checks_new(loop, d->conf, err, sizeof(err))) == NULL)
        fatal(2, "%s", err);
}

bool smtpd_tls_needed(const struct conf *conf)
{
    return conf->listeners[CONF_SUBMISSION].n > 0 || conf->listeners[CONF_SUBMISSIONS].n > 0;
}

/*
 * For the clients' set-up files on [web] listen (web.h's web_set_domains):
 * whether kotak serves domain, and, given an address, whether it is a user's login there.
 */
static int web_domain_local(void *ctx, const char *domain, const char *address)
{
    struct smtpd *d = ctx;
    int rc = store_domain_exists(d->reader, domain);
    if (rc != 1 || address == NULL)
        return rc;
    struct store_user u;
    rc = store_user_by_login(d->reader, address, &u); /* web.c took domain from address */
    explicit_bzero(&u, sizeof(u));
    return rc;
}

int smtpd_run(const struct conf *conf)
{
    struct smtpd d = {.conf = conf};
    uv_loop_t *loop = uv_default_loop();
    struct tls_server *tls = daemon_load_tls(conf, smtpd_tls_needed(conf), "smtp");
    d.svc = service_new(loop, conf, "smtp", conf->limits.idle_timeout_ms, tls, &service_ops, &d);
    listen_all(&d);
    daemon_drop_privileges(conf);
    d.data_dir = conf_path(conf, conf->data_dir);
    open_store(&d, loop);
    d.watch = watch_start(conf, "smtp");
    outbound_set_watch(d.outbound, d.watch);
    metrics_start(loop, conf, "smtpd");
    if (conf->metrics_listen.n > 0)
        d.gauges = gauges_start(loop, d.store_path, d.svc);
    if (conf->metrics_listen.n > 0)
        d.exporter = exporter_new(conf, fill_gauges, &d);
    if (conf->web_listen.n > 0) {
        d.web = web_new(loop, conf);
        web_set_domains(d.web, web_domain_local, &d);
    }
    char err[512];
    struct login *login = login_new(loop, &conf->auth, d.data_dir, err, sizeof(err));
    if (login == NULL)
        fatal(1, "%s", err);
    service_set_login(d.svc, login);
    log_info("smtp event=started version=%s hostname=%s", KOTAK_VERSION, conf->hostname);
    service_run(&d.svc);
    store_close(&d.reader);
    watch_close(&d.watch);
    metrics_stop();
    free(d.data_dir);
    free(d.store_path);
    return 0;
}
