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
 * own, so the loop never waits on their fsync; so does a login's store
 * work under [pop3] login_delay and expire (the login's time, the expired
 * messages' removal), between the lock and the listing.
 */
#include "pop3d.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
    struct store *reader;     /* loop thread: look-ups, bodies */
    struct store *writer;     /* thread pool: deletions, one at a time */
    uv_mutex_t writer_mu;
    struct lister *listers;   /* thread pool: logins' listings, one per pool thread */
    size_t n_listers;
    char *store_path;
    int64_t *locked;          /* user ids whose maildrop a session holds */
    size_t n_locked, cap_locked;
    size_t in_flight;         /* deletions under way */
    struct watch *watch;      /* the live view's ring; NULL: off */
};

/*
 * A read-only connection for the listings in the thread pool, as many as
 * the pool has threads, so that one large maildrop's listing holds up no
 * other login's (nor the pool thread it would wait on). Each is opened at
 * its first use.
 */
struct lister {
    uv_mutex_t mu;
    struct store *store;
};

/* One connection beside its session: the core's part, and the lock's. */
struct pconn {
    struct service_conn conn; /* first: the core frees the whole */
    struct pop3d *d;
    bool deleting;            /* a job that holds the lock is under way (lock_job_start) */
    int64_t unlock_after;     /* the lock to let go of when it ends; 0: none */
    char id[16];              /* the connection's, for logs and the view */
};

struct delete_job {
    uv_work_t work;
    struct pconn *pc;
    int64_t user_id;
    int64_t *ids; /* n to delete, then n_ret retrieved */
    size_t n, n_ret;
    int rc;
};

/* A login's store work ([pop3] login_delay, expire), in the thread pool. */
struct login_job {
    uv_work_t work;
    struct pconn *pc;
    int64_t user_id;
    char user[ADDR_TEXT_SIZE * 4 + 3]; /* for the log, through log_value */
    int rc;
    size_t removed;
    int expire_rc;
    struct store_mail *mails; /* the maildrop after it all */
    size_t n_mails;
    int list_rc;
};

/* Expired entries go in transactions of at most this many, so that the
 * write lock is let go between them and deliveries go on. */
#define EXPIRE_BATCH 500

/* The near-quota warning of a login (store_quota_warn), or its re-arming,
 * in the thread pool before the session hears that the password was right. */
struct quota_job {
    uv_work_t work;
    struct pconn *pc;
    int64_t user_id;
    int auth_rc;        /* the password check's answer, passed on after */
    char *msg;          /* the warning; NULL: re-arm only */
    size_t len;
    struct store_quota q;
    int rc;
};

static bool quota_at_login(struct pconn *pc, int auth_rc, int64_t user_id);

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
    /* A login near its quota first gets the warning into its maildrop,
     * so that the listing that follows shows it; quota_done answers. */
    if (rc > 0 && quota_at_login(pop3_session_ctx(s), rc, user_id))
        return;
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
        pc->unlock_after = user_id; /* see lock_job_done */
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

/*
 * A job that holds the maildrop's lock (a deletion, a login's record) goes
 * to the thread pool: the lock waits for it (op_unlock).
 */
static void lock_job_start(struct pconn *pc)
{
    service_result_due(&pc->conn);
    pc->d->in_flight++;
    pc->deleting = true;
}

/*
 * A job lock_job_start began came back: the lock goes now if the session
 * let go of it meanwhile. True when the session is there to take the
 * result; service_result_done follows either way.
 */
static bool lock_job_done(struct pconn *pc)
{
    pc->d->in_flight--;
    pc->deleting = false;
    if (pc->unlock_after != 0) {
        unlock_user(pc->d, pc->unlock_after);
        pc->unlock_after = 0;
    }
    return service_result_arrived(&pc->conn);
}

static void delete_work(uv_work_t *w)
{
    struct delete_job *j = w->data;
    struct pop3d *d = j->pc->d;
    uv_mutex_lock(&d->writer_mu);
    j->rc = store_mbox_update(d->writer, j->user_id, j->ids, j->n, j->ids + j->n, j->n_ret,
                              (int64_t)time(NULL));
    uv_mutex_unlock(&d->writer_mu);
}

static void delete_done(uv_work_t *w, int status)
{
    struct delete_job *j = w->data;
    struct pconn *pc = j->pc;
    int rc = status < 0 ? status : j->rc;
    free(j->ids);
    free(j);
    if (lock_job_done(pc))
        pop3_session_commit_done(pc->conn.session, rc);
    service_result_done(&pc->conn);
}

static void op_commit(void *ctx, int64_t user_id, const int64_t *ids, size_t n,
                      const int64_t *ret, size_t n_ret)
{
    struct pconn *pc = ctx;
    struct delete_job *j = xcalloc(1, sizeof(*j));
    j->work.data = j;
    j->pc = pc;
    j->user_id = user_id;
    j->ids = xmalloc((n + n_ret ? n + n_ret : 1) * sizeof(int64_t));
    if (n > 0)
        memcpy(j->ids, ids, n * sizeof(int64_t));
    if (n_ret > 0)
        memcpy(j->ids + n, ret, n_ret * sizeof(int64_t));
    j->n = n;
    j->n_ret = n_ret;
    lock_job_start(pc);
    if (uv_queue_work(pc->d->loop, &j->work, delete_work, delete_done) != 0) {
        j->rc = -KOTAK_ESTORE;
        delete_done(&j->work, 0);
    }
}

/*
 * The store's part of a login, under the maildrop lock: LOGIN-DELAY's
 * check and the login's time, then EXPIRE's removal of what was first
 * retrieved expire days ago or more, in batches that each take the writer
 * for one short transaction, then the listing. A failed expiry is logged
 * and the login goes on: the mail is then kept a little longer, which
 * EXPIRE (a minimum) allows, and the next login tries again.
 */
static void login_work(uv_work_t *w)
{
    struct login_job *j = w->data;
    struct pop3d *d = j->pc->d;
    int64_t now = (int64_t)time(NULL);
    if (d->conf->pop3_login_delay_s > 0) {
        uv_mutex_lock(&d->writer_mu);
        j->rc = store_user_login(d->writer, j->user_id, now,
                                 (int64_t)d->conf->pop3_login_delay_s);
        uv_mutex_unlock(&d->writer_mu);
        if (j->rc != 0)
            return;
    }
    int64_t before = now - d->conf->pop3_expire_days * 86400;
    while (d->conf->pop3_expire_days >= 0) {
        size_t removed = 0;
        uv_mutex_lock(&d->writer_mu);
        j->expire_rc = store_mbox_expire(d->writer, j->user_id, before, EXPIRE_BATCH, &removed);
        uv_mutex_unlock(&d->writer_mu);
        j->removed += removed;
        if (j->expire_rc < 0 || removed < EXPIRE_BATCH)
            break;
    }
    /* The listing too: a large maildrop's would hold the loop, and every
     * other session, for as long as it takes. */
    struct lister *l = NULL;
    for (size_t i = 0; i < d->n_listers && l == NULL; i++)
        if (uv_mutex_trylock(&d->listers[i].mu) == 0)
            l = &d->listers[i];
    if (l == NULL) { /* the pool has more threads than it said: wait for one */
        l = &d->listers[0];
        uv_mutex_lock(&l->mu);
    }
    char err[256];
    j->list_rc = l->store != NULL ? 0
                                  : store_open(d->store_path, STORE_READONLY, &l->store, err,
                                               sizeof(err));
    if (j->list_rc == 0)
        j->list_rc = store_mbox_list(l->store, j->user_id, &j->mails, &j->n_mails);
    uv_mutex_unlock(&l->mu);
}

static void login_done(uv_work_t *w, int status)
{
    struct login_job *j = w->data;
    struct pconn *pc = j->pc;
    struct pop3d *d = pc->d;
    int rc = status < 0 ? status : j->rc;
    if (j->removed > 0 || j->expire_rc < 0)
        log_info("pop3 session=%s event=expire user=%s removed=%zu days=%lld%s", pc->id, j->user,
                 j->removed, (long long)d->conf->pop3_expire_days,
                 j->expire_rc < 0 ? " result=store-error" : "");
    if (rc < 0)
        log_error("pop3 session=%s event=login-record user=%s rc=%d", pc->id, j->user, rc);
    if (rc == 0 && j->list_rc < 0) {
        rc = j->list_rc;
        log_error("pop3 session=%s event=list user=%s rc=%d", pc->id, j->user, rc);
    }
    if (lock_job_done(pc)) {
        if (rc == 0)
            pop3_session_listed(pc->conn.session, j->mails, j->n_mails);
        else
            free(j->mails);
        pop3_session_login_done(pc->conn.session, rc);
    } else {
        free(j->mails);
    }
    free(j);
    service_result_done(&pc->conn);
}

static void op_login(void *ctx, int64_t user_id, const char *user)
{
    struct pconn *pc = ctx;
    struct login_job *j = xcalloc(1, sizeof(*j));
    j->work.data = j;
    j->pc = pc;
    j->user_id = user_id;
    log_value(j->user, sizeof(j->user), user, strlen(user));
    lock_job_start(pc);
    if (uv_queue_work(pc->d->loop, &j->work, login_work, login_done) != 0) {
        j->rc = -KOTAK_ESTORE;
        login_done(&j->work, 0);
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

/* --- quotas: the warning near the quota ----------------------------------- */

/* n octets in words: "512 octets", "9.3 MB", "2 GB" (units of 1024, as the config's sizes). */
static void size_words(uint64_t n, char *out, size_t size)
{
    static const char *const units[] = {"KB", "MB", "GB", "TB"};
    if (n < 1024) {
        snprintf(out, size, "%llu octets", (unsigned long long)n);
        return;
    }
    double v = (double)n / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0]))
        v /= 1024, u++;
    if (v < 10 && (uint64_t)(v * 10 + 0.5) % 10 != 0)
        snprintf(out, size, "%.1f %s", v, units[u]);
    else
        snprintf(out, size, "%.0f %s", v, units[u]);
}

/*
 * The warning, as Dovecot's quota-warning script sends one: from the
 * postmaster of the user's domain, plain text saying how full the
 * maildrop is and how to make room. Returns a new buffer of *len_r octets.
 */
static char *warning_text(const struct pop3d *d, const struct store_quota *q, int64_t user_id,
                          size_t *len_r)
{
    const char *domain = strrchr(q->address, '@');
    domain = domain != NULL ? domain + 1 : d->conf->hostname;
    unsigned pct = (unsigned)(q->used * 100 / q->quota);
    char used[32], quota[32], date[64];
    size_words(q->used, used, sizeof(used));
    size_words(q->quota, quota, sizeof(quota));
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", gmtime_r(&now, &tm));
    size_t cap = 3072 + 2 * strlen(q->address) + 2 * strlen(d->conf->hostname);
    char *msg = xmalloc(cap);
    int n = snprintf(
        msg, cap,
        "From: Mail System <postmaster@%s>\r\n"
        "To: <%s>\r\n"
        "Subject: Your mailbox is %u%% full\r\n"
        "Date: %s\r\n"
        "Message-ID: <quota-warning.%lld.%lld@%s>\r\n"
        "Auto-Submitted: auto-generated\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "Your mailbox is %u%% full: it holds %s (%llu octets) of the\r\n"
        "%s (%llu octets) it may hold.\r\n"
        "\r\n"
        "Once it is full, new mail for you is not accepted: senders are told to\r\n"
        "try again later, and after some days their mail goes back to them.\r\n"
        "\r\n"
        "To make room, delete the mail you have already fetched. If your mail\r\n"
        "program keeps a copy of each message on the server, set it to remove\r\n"
        "messages from the server once it has downloaded them (turn off \"Leave\r\n"
        "a copy of messages on the server\", or choose \"Remove from server after\r\n"
        "7 days\"). The next time it fetches mail, the space is free again.\r\n"
        "\r\n"
        "You get this warning once; should the mailbox fill up again after it\r\n"
        "has been emptied, you are told again.\r\n",
        domain, q->address, pct, date, (long long)user_id, (long long)now, d->conf->hostname, pct,
        used, (unsigned long long)q->used, quota, (unsigned long long)q->quota);
    if (n < 0 || (size_t)n >= cap)
        n = 0; /* cannot happen: cap is above every field's bound */
    *len_r = (size_t)n;
    return msg;
}

static void quota_work(uv_work_t *w)
{
    struct quota_job *j = w->data;
    struct pop3d *d = j->pc->d;
    uv_mutex_lock(&d->writer_mu);
    j->rc = j->msg != NULL ? store_quota_warn(d->writer, j->user_id, j->msg, j->len, time(NULL))
                           : store_quota_rearm(d->writer, j->user_id);
    uv_mutex_unlock(&d->writer_mu);
}

static void quota_done(uv_work_t *w, int status)
{
    struct quota_job *j = w->data;
    struct pconn *pc = j->pc;
    int rc = status < 0 ? status : j->rc;
    char v[ADDR_TEXT_SIZE * 4 + 3];
    log_value(v, sizeof(v), j->q.address, strlen(j->q.address));
    if (rc < 0) /* the login goes on: the warning is tried again at the next one */
        log_error("pop3 session=%s event=quota-warning user=%s result=store-error rc=%d", pc->id,
                  v, rc);
    else if (rc > 0)
        log_info("pop3 session=%s event=%s user=%s used=%llu quota=%llu", pc->id,
                 j->msg != NULL ? "quota-warning" : "quota-rearmed", v,
                 (unsigned long long)j->q.used, (unsigned long long)j->q.quota);
    pc->d->in_flight--;
    if (service_result_arrived(&pc->conn))
        pop3_session_auth_done(pc->conn.session, j->auth_rc, j->user_id);
    free(j->msg);
    free(j);
    service_result_done(&pc->conn);
}

/*
 * At a login (the password right, nothing locked or listed yet): one row
 * read on the loop says whether the maildrop holds STORE_QUOTA_WARN_PCT of
 * its quota with no warning sent yet, or has fallen below
 * STORE_QUOTA_REARM_PCT since one was. Only then a job goes to the thread
 * pool; true when it did, and quota_done passes the login on.
 */
static bool quota_at_login(struct pconn *pc, int auth_rc, int64_t user_id)
{
    struct store_quota q;
    if (pc == NULL || store_quota_get(pc->d->reader, user_id, &q) != 1)
        return false;
    bool warn = q.quota > 0 && !q.warned && q.used * 100 >= q.quota * STORE_QUOTA_WARN_PCT;
    bool rearm = q.warned && (q.quota == 0 || q.used * 100 < q.quota * STORE_QUOTA_REARM_PCT);
    if (!warn && !rearm)
        return false;
    struct quota_job *j = xcalloc(1, sizeof(*j));
    j->work.data = j;
    j->pc = pc;
    j->user_id = user_id;
    j->auth_rc = auth_rc;
    j->q = q;
    if (warn)
        j->msg = warning_text(pc->d, &q, user_id, &j->len);
    service_result_due(&pc->conn);
    pc->d->in_flight++;
    if (uv_queue_work(pc->d->loop, &j->work, quota_work, quota_done) != 0) {
        j->rc = -KOTAK_ESTORE;
        quota_done(&j->work, 0);
    }
    return true;
}

static const struct pop3_ops pop3_ops = {
    .auth = op_auth,
    .lock = op_lock,
    .unlock = op_unlock,
    .list = op_list,
    .read = op_read,
    .commit = op_commit,
    .login = op_login,
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
        .expire = d->conf->pop3_expire_days >= 0,
        .expire_days = d->conf->pop3_expire_days >= 0 ? (unsigned)d->conf->pop3_expire_days : 0,
        .login_delay = (unsigned)d->conf->pop3_login_delay_s,
        .list_in_login = true,
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
    d->n_listers = net_pool_size();
    d->listers = xcalloc(d->n_listers, sizeof(*d->listers));
    for (size_t i = 0; i < d->n_listers; i++)
        uv_mutex_init(&d->listers[i].mu);
    d->store_path = path;
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
    for (size_t i = 0; i < d.n_listers; i++) {
        store_close(&d.listers[i].store);
        uv_mutex_destroy(&d.listers[i].mu);
    }
    free(d.listers);
    free(d.store_path);
    store_close(&d.writer);
    watch_close(&d.watch);
    uv_mutex_destroy(&d.writer_mu);
    free(d.locked);
    return 0;
}
