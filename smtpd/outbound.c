/*
 * outbound.c — the queue runner; see outbound.h.
 *
 * In memory, at most OB_RCPTS_MAX recipients at a time, however long the
 * queue: a destination (struct dest) holds the messages waiting for it
 * (struct omsg, one queue entry's recipients there), and its connections
 * (struct oconn) take them one after the other. A message lives from the
 * poll that found it until the store thread has recorded its outcome.
 */
#include "outbound.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "dns.h"
#include "dsn.h"
#include "log.h"
#include "metrics.h"
#include "mtasts.h"
#include "net.h"
#include "route.h"
#include "schedule.h"
#include "smtp_client.h"
#include "spool.h"
#include "srs.h"
#include "tls.h"
#include "util.h"
#include "watch.h"
#include "watch_text.h"

#define OB_RCPTS_MAX 2000     /* recipients in memory at once */
#define OB_DEST_RCPTS_MAX 500 /* ... of them for one destination: one cannot hold up the rest */
#define OB_RETRY_MS 2000      /* a result the store could not take is offered again this late */
#define OB_REPORT_TRIES 3     /* ... and its report, this many times before it is given up */
#define OB_PUMP_ROUNDS 64     /* a connection's turn on the loop, then the others' */
#define OB_POLL_MS 1000   /* the queue is read this often, and when kicked */
#define OB_KICK_MS 20     /* a kick gathers what the next few commits queue */
#define OB_BUCKETS 4096   /* the in-flight set's hash buckets */
#define OB_READ_CHUNK (64 * 1024)
#define OB_CONNECT_TIMEOUT_MS (30 * 1000)
#define OB_TICK_MS (30 * 1000) /* how often a quiet connection's wait is weighed */

struct dest;
struct oconn;

/* One queued recipient, in flight from the poll to its recorded outcome. */
struct orcpt {
    int64_t rcpt_id;
    char *address, *orcpt;
    unsigned notify;
    bool delay_notified;
    struct orcpt *hnext; /* the in-flight set's chain */
};

/* One queue entry's recipients at one destination. */
struct omsg {
    char domain[ADDR_DOMAIN_MAX + 1]; /* its destination's, for that one's count */
    int64_t queue_id, message_id, user_id, created, size;
    char *sender, *envid;
    enum store_ret ret;
    bool bounce;
    bool smtputf8; /* it came with SMTPUTF8 and needs it to go on */
    bool fresh; /* found by the poll under way: its recipients join the set after it */
    int64_t skip; /* octets of the Return-Path: line on top, which is not sent on */
    bool tls;   /* its last attempt went over TLS */
    struct orcpt *rcpts;
    size_t n_rcpts;
    struct omsg *next;
};

enum dest_state { DEST_NEW, DEST_RESOLVING, DEST_READY };

/* Where mail goes: a domain's MX hosts, or the smarthost (domain ""). */
struct dest {
    struct outbound *ob;
    char domain[ADDR_DOMAIN_MAX + 1];
    enum dest_state state;
    struct omsg *head, *tail; /* waiting for a connection */
    size_t n_conns;
    struct route_plan plan;
    size_t host_next; /* the next host whose addresses are asked */
    struct dns_addr *addrs[DNS_MX_MAX];
    struct route_host_addrs answers[DNS_MX_MAX];
    struct route_target targets[ROUTE_ADDRS_MAX];
    size_t n_targets;
    size_t first_target; /* targets before it failed: new connections skip them */
    unsigned plain_only; /* bit i: target i failed its TLS handshake, go on without */
    struct mtasts_lookup *sts_lookup; /* its MTA-STS policy being found */
    struct mtasts_policy *sts;        /* the policy that applies (testing, enforce), or NULL */
    unsigned sts_unverified; /* bit i: testing, target i failed verification: go on unverified */
    bool querying;
    unsigned holds; /* calls under way that use it: it is not freed before they end */
    size_t n_rcpts; /* in memory, from the polls, until their outcome is recorded */
    char last_error[160]; /* why the last connection could not even begin */
    struct dest *next;
};

/* One connection to a destination, with its client. */
struct oconn {
    struct dest *dest;
    struct net_conn *net;
    struct smtp_client *client;
    size_t target;
    struct tls_client *tls; /* what STARTTLS uses: verifying, or opportunistic */
    bool tls_tried;  /* STARTTLS or implicit TLS was under way */
    bool sts_noted;  /* its MTA-STS testing line is logged */
    bool transacted; /* a transaction got past the greeting and EHLO */
    bool closed;
    bool ready;       /* connected (and through implicit TLS): net's open came */
    bool pump_queued; /* in the runner's list of connections to pump again */
    struct oconn *pump_next;
    struct oconn *prev, *next; /* every connection of the runner */
    uint64_t quiet_ms; /* since the server last sent or took anything, in ticks */
    struct omsg *msg;
    int64_t body_off;
    char host[DNS_NAME_MAX + 1];
    char ip[64];
};

struct outbound {
    uv_loop_t *loop;
    const struct conf *conf;
    struct store *reader;
    struct committer *committer;
    const char *data_dir;
    const uint8_t *srs_secret;
    struct net_server *net;
    struct dns *dns;
    struct tls_client *tls_mx;        /* opportunistic: no check */
    struct tls_client *tls_smarthost; /* verified */
    struct tls_client *tls_verified;  /* for MTA-STS: the system's anchors; NULL when unreadable */
    struct mtasts *mtasts;
    struct watch *watch; /* the live view's ring, or NULL */
    char *smarthost_password;
    struct schedule schedule;
    uv_timer_t poll_timer;
    uv_timer_t pump_timer;  /* connections whose turn ran out go on here */
    uv_timer_t retry_timer; /* results the store could not take, offered again */
    int handles;            /* the timers not yet closed */
    struct oconn *pump_list;
    struct oconn *conns;
    struct commit_job *retry_jobs;
    bool polling_soon;
    struct dest *dests;
    size_t n_conns;
    size_t n_rcpts; /* in flight */
    size_t jobs;    /* at the store thread */
    struct orcpt *inflight[OB_BUCKETS];
    bool stopping;
    void (*on_idle)(void *ctx);
    void *idle_ctx;
    char *chunk;
};

static void dest_run(struct dest *d);
static void pump(struct oconn *oc);
static void maybe_idle(struct outbound *ob);

/* --- the in-flight set ------------------------------------------------------ */

static size_t bucket(int64_t id)
{
    return (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ull >> 52) % OB_BUCKETS;
}

static bool inflight_has(struct outbound *ob, int64_t id)
{
    for (struct orcpt *r = ob->inflight[bucket(id)]; r != NULL; r = r->hnext)
        if (r->rcpt_id == id)
            return true;
    return false;
}

static void inflight_add(struct outbound *ob, struct orcpt *r)
{
    size_t b = bucket(r->rcpt_id);
    r->hnext = ob->inflight[b];
    ob->inflight[b] = r;
    ob->n_rcpts++;
}

static void inflight_remove(struct outbound *ob, struct orcpt *r)
{
    struct orcpt **p = &ob->inflight[bucket(r->rcpt_id)];
    while (*p != NULL && *p != r)
        p = &(*p)->hnext;
    if (*p == r) {
        *p = r->hnext;
        ob->n_rcpts--;
    }
}

static struct dest *dest_find(struct outbound *ob, const char *domain);

/* Forgets a message: its recipients may be picked again. */
static void msg_free(struct outbound *ob, struct omsg *m)
{
    struct dest *d = dest_find(ob, m->domain);
    if (d != NULL)
        d->n_rcpts -= m->n_rcpts < d->n_rcpts ? m->n_rcpts : d->n_rcpts;
    for (size_t i = 0; i < m->n_rcpts; i++) {
        inflight_remove(ob, &m->rcpts[i]);
        free(m->rcpts[i].address);
        free(m->rcpts[i].orcpt);
    }
    free(m->rcpts);
    free(m->sender);
    free(m->envid);
    free(m);
}

/* --- recording outcomes ---------------------------------------------------- */

static const char *result_word(enum store_rcpt_state st)
{
    return st == STORE_RCPT_DELIVERED ? "delivered"
           : st == STORE_RCPT_FAILED  ? "failed"
                                      : "deferred";
}

/* The RFC 3463 status of a result, when the server gave none. */
static void result_status(const struct smtp_client_result *r, char out[16])
{
    if (r->enhanced[0] != '\0')
        snprintf(out, 16, "%s", r->enhanced);
    else
        snprintf(out, 16, "%s", r->state == SMTP_CLIENT_FAILED ? "5.0.0" : "4.0.0");
}

/* The reply as it goes into the queue's log and a report: "550 5.1.1 text". */
static char *result_reply(const struct smtp_client_result *r)
{
    char line[SMTP_CLIENT_TEXT_MAX + 32];
    if (r->code > 0)
        snprintf(line, sizeof(line), "%d%s%s %s", r->code, r->enhanced[0] ? " " : "", r->enhanced,
                 r->text);
    else
        snprintf(line, sizeof(line), "%s", r->text);
    return xstrdup(line);
}

/* Reads the original for a report: the whole when asked and small, else its head. */
static char *read_original(struct outbound *ob, const struct omsg *m, bool whole, size_t *len_r)
{
    size_t want = whole && m->size <= DSN_FULL_MAX ? (size_t)m->size : DSN_HEADERS_MAX;
    char *p = xmalloc(want + 1);
    size_t len = 0;
    while (len < want) {
        size_t got = 0;
        if (store_mbox_read(ob->reader, m->message_id, (int64_t)len, p + len, want - len, &got) <
                0 ||
            got == 0)
            break;
        len += got;
    }
    *len_r = len;
    return p;
}

/*
 * The report a message's outcome calls for (kind), to its sender, made a
 * job's message: into the sender's maildrop when the sender is here, else
 * queued from <> toward the sender's server. Returns false when it goes
 * nowhere (a local domain without that user: logged).
 */
/*
 * Whom a report goes to: the envelope sender, or, for mail an alias here
 * forwarded with an SRS sender of a local domain, the original sender it
 * stands for (written into buf).
 */
static const char *report_sender(struct outbound *ob, const char *sender, int64_t now, char *buf)
{
    struct addr a;
    if (addr_parse(sender, strlen(sender), ADDR_UTF8 | ADDR_QUOTED, &a) < 0 || !srs_is_srs(a.local) ||
        store_domain_exists(ob->reader, a.domain) != 1 ||
        srs_reverse(ob->srs_secret, now, a.local, buf) < 0)
        return sender;
    return buf;
}

static bool add_report(struct outbound *ob, const struct omsg *m, struct commit_job *job,
                       enum dsn_kind kind, const struct dsn_rcpt *rr, size_t n)
{
    int64_t now = time(NULL);
    char srs_orig[ADDR_TEXT_SIZE];
    const char *sender = report_sender(ob, m->sender, now, srs_orig);
    char msgid[128];
    snprintf(msgid, sizeof(msgid), "%lld.%llx.report@%s", (long long)m->queue_id,
             (unsigned long long)uv_hrtime(), ob->conf->hostname);
    size_t orig_len = 0;
    char *orig =
        read_original(ob, m, m->ret == STORE_RET_FULL && kind == DSN_KIND_FAILED, &orig_len);
    struct dsn_report r = {
        .kind = kind,
        .reporting_mta = ob->conf->hostname,
        .message_id = msgid,
        .sender = sender,
        .envid = m->envid,
        .arrival = (time_t)m->created,
        .date = (time_t)now,
        .ret = m->ret,
        .rcpts = rr,
        .nrcpts = n,
        .orig = orig_len > 0 ? orig : NULL,
        .orig_len = orig_len,
        .orig_size = (size_t)m->size,
    };
    struct buf out;
    buf_init(&out, DSN_REPORT_MAX(n));
    int rc = buf_append_str(&out, "Return-Path: <>\r\n");
    unsigned flags = 0;
    if (rc == 0)
        rc = dsn_build(&r, &out, &flags);
    free(orig);
    if (rc < 0) {
        log_error("smtp event=report-failed id=%lld rc=%d", (long long)m->queue_id, rc);
        buf_free(&out);
        return false;
    }
    /* Where it goes: the sender who logged in, a local mailbox, or its server. */
    struct store_rcpts local = {0};
    bool remote = false;
    if (m->user_id > 0) {
        local.user_ids = xmalloc(sizeof(int64_t));
        local.user_ids[local.n++] = m->user_id;
    } else {
        struct addr a;
        int res = addr_parse(sender, strlen(sender), ADDR_UTF8 | ADDR_QUOTED, &a) == 0
                      ? store_resolve(ob->reader, &a, &local)
                      : 0;
        remote = res == -KOTAK_ENODOMAIN;
        if (res <= 0 && !remote) {
            char v[ADDR_TEXT_SIZE + 8];
            log_info("smtp event=report-dropped id=%lld sender=<%s> reason=no-such-mailbox",
                     (long long)m->queue_id, log_value(v, sizeof(v), sender, strlen(sender)));
            store_rcpts_free(&local);
            buf_free(&out);
            return false;
        }
    }
    job->no_message = false;
    spool_init(&job->spool, out.len, ob->data_dir);
    rc = spool_write(&job->spool, out.data, out.len); /* its Return-Path stays here */
    buf_free(&out);
    job->user_ids = local.user_ids;
    job->n_users = local.n;
    local.user_ids = NULL;
    store_rcpts_free(&local);
    if (remote) {
        job->env = (struct store_envelope){
            .sender = xstrdup(""),
            .bounce = true,
            .smtputf8 = (flags & DSN_BUILD_SMTPUTF8) != 0,
        };
        job->remote = xcalloc(1, sizeof(*job->remote));
        job->remote[0] =
            (struct commit_remote){.address = xstrdup(sender), .notify = STORE_NOTIFY_NEVER};
        job->n_remote = 1;
    }
    return rc == 0;
}

/*
 * A message's transaction is over: what each recipient's result means for
 * the queue, recorded in one job with the report it calls for. While
 * stopping, a deferral is not recorded: the recipient stays due, and goes
 * at the next start without waiting for a retry. next_dsn: the server
 * offered DSN, so the message went with its NOTIFY and the server reports
 * success itself.
 */
static void msg_outcome(struct outbound *ob, struct omsg *m, const struct smtp_client_result *res,
                        size_t n, const char *host, const char *ip, bool tls, bool next_dsn)
{
    int64_t now = time(NULL);
    if (n > m->n_rcpts)
        n = m->n_rcpts;
    m->tls = tls;
    struct commit_job *job = xcalloc(1, sizeof(*job));
    job->from_queue = true;
    job->no_message = true; /* unless a report comes with it */
    job->owner = m;
    job->received = now;
    job->attempts = xcalloc(n ? n : 1, sizeof(*job->attempts));
    struct dsn_rcpt *rr = xcalloc(n ? n : 1, sizeof(*rr));
    char(*status)[16] = xcalloc(n ? n : 1, sizeof(*status));
    char(*orig)[ADDR_TEXT_SIZE + 8] = xcalloc(n ? n : 1, sizeof(*orig));
    size_t n_report = 0;
    bool failed = false, delayed = false;
    bool may_report = !m->bounce && dsn_should_bounce(m->sender);
    for (size_t i = 0; i < n; i++) {
        struct orcpt *r = &m->rcpts[i];
        const struct smtp_client_result *x = &res[i];
        enum store_rcpt_state st = x->state == SMTP_CLIENT_DELIVERED ? STORE_RCPT_DELIVERED
                                   : x->state == SMTP_CLIENT_FAILED  ? STORE_RCPT_FAILED
                                                                     : STORE_RCPT_QUEUED;
        int64_t next = 0;
        bool warn = false;
        if (st == STORE_RCPT_QUEUED) {
            if (ob->stopping)
                continue;
            next = schedule_next_try(&ob->schedule, m->created, now, m->bounce);
            if (next == 0)
                st = STORE_RCPT_FAILED; /* waited long enough: give up */
            else
                warn = schedule_warn_delay(&ob->schedule, m->created, now, r->delay_notified,
                                           m->bounce);
        }
        struct commit_attempt *a = &job->attempts[job->n_attempts++];
        a->rcpt_id = r->rcpt_id;
        a->a = (struct store_attempt){
            .at = now,
            .host = xstrdup(host),
            .ip = xstrdup(ip),
            .code = x->code,
            .reply = result_reply(x),
            .state = st,
            .next_try = next,
            .delay_notified = r->delay_notified || warn,
        };
        enum dsn_action action = st == STORE_RCPT_DELIVERED ? DSN_ACTION_RELAYED
                                 : st == STORE_RCPT_FAILED  ? DSN_ACTION_FAILED
                                                            : DSN_ACTION_DELAYED;
        if (!may_report || (st == STORE_RCPT_QUEUED && !warn) ||
            !dsn_notify_wants(r->notify, action))
            continue;
        /* "relayed" is for a server that will not report success (RFC 3464
         * 2.3.3, RFC 3461 5.2.2); one that offered DSN got NOTIFY=SUCCESS
         * with the message (5.2.1) and reports the delivery itself, so a
         * report from us too would tell the sender twice, "relayed" first. */
        if (action == DSN_ACTION_RELAYED && next_dsn)
            continue;
        size_t k = n_report++;
        result_status(x, status[k]);
        if (r->orcpt != NULL && r->orcpt[0] != '\0')
            snprintf(orig[k], sizeof(orig[k]), "rfc822;%s", r->orcpt);
        failed |= action == DSN_ACTION_FAILED;
        delayed |= action == DSN_ACTION_DELAYED;
        rr[k] = (struct dsn_rcpt){
            .final_rcpt = r->address,
            .orig_rcpt = orig[k],
            .action = action,
            .status = status[k],
            .remote_mta = x->code > 0 && host[0] ? host : NULL,
            .reply = x->code > 0 ? a->a.reply : NULL,
            .reply_len = x->code > 0 ? strlen(a->a.reply) : 0,
            .reason = x->code > 0 ? NULL : x->text,
            .last_attempt = (time_t)now,
            .retry_until = action == DSN_ACTION_DELAYED
                               ? (time_t)schedule_retry_until(&ob->schedule, m->created, m->bounce)
                               : 0,
        };
    }
    if (n_report > 0)
        add_report(ob, m, job,
                   failed    ? DSN_KIND_FAILED
                   : delayed ? DSN_KIND_DELAYED
                             : DSN_KIND_SUCCESS,
                   rr, n_report);
    free(orig);
    free(status);
    free(rr);
    if (job->n_attempts == 0 && job->no_message) {
        commit_job_free(job);
        msg_free(ob, m);
        maybe_idle(ob);
        return;
    }
    ob->jobs++;
    committer_submit(ob->committer, job);
}

/* Offers the results the store could not take to it again. */
static void retry_jobs(uv_timer_t *t)
{
    struct outbound *ob = t->data;
    struct commit_job *job = ob->retry_jobs;
    ob->retry_jobs = NULL;
    while (job != NULL) {
        struct commit_job *next = job->next;
        job->next = NULL;
        job->rc = 0;
        committer_submit(ob->committer, job);
        job = next;
    }
}

/*
 * The store could not take a job. Its recipients stay in flight, so none
 * is sent again meanwhile (the peer may have taken it), and the job is
 * offered again every OB_RETRY_MS until the store takes it: a busy or full
 * store passes. A report that still cannot be stored after OB_REPORT_TRIES
 * (its user gone) is given up, logged, and the outcome offered alone.
 * Returns whether the job was kept.
 */
static bool job_failed(struct outbound *ob, struct commit_job *job)
{
    struct omsg *m = job->owner;
    bool drop_report = !job->no_message && ++job->tries >= OB_REPORT_TRIES;
    log_error("smtp event=queue-record-failed id=%lld rc=%d error=\"%s\"%s",
              (long long)m->queue_id, job->rc, kotak_strerror(job->rc),
              drop_report ? " report=dropped" : "");
    if (ob->stopping)
        return false; /* the recipients stay due: tried again after the start */
    if (drop_report)
        commit_job_drop_message(job);
    job->next = ob->retry_jobs;
    ob->retry_jobs = job;
    if (!uv_is_active((uv_handle_t *)&ob->retry_timer))
        uv_timer_start(&ob->retry_timer, retry_jobs, OB_RETRY_MS, 0);
    return true;
}

void outbound_job_done(struct outbound *ob, struct commit_job *job)
{
    struct omsg *m = job->owner;
    if (job->rc < 0 && job_failed(ob, job))
        return;
    /* One line per attempt, once it is on record. */
    for (size_t i = 0; i < job->n_attempts && job->rc == 0; i++) {
        const struct commit_attempt *a = &job->attempts[i];
        const char *rcpt = "";
        for (size_t k = 0; k < m->n_rcpts; k++)
            if (m->rcpts[k].rcpt_id == a->rcpt_id)
                rcpt = m->rcpts[k].address;
        metrics_count(a->a.state == STORE_RCPT_DELIVERED ? METRIC_DELIVERY_SENT
                      : a->a.state == STORE_RCPT_FAILED  ? METRIC_DELIVERY_FAILED
                                                         : METRIC_DELIVERY_DEFERRED);
        char v[ADDR_TEXT_SIZE + 8], t[SMTP_CLIENT_TEXT_MAX + 48];
        log_info("smtp event=delivery id=%lld rcpt=<%s> mx=%s ip=%s tls=%s code=%d result=%s "
                 "reply=%s",
                 (long long)m->queue_id, log_value(v, sizeof(v), rcpt, strlen(rcpt)),
                 a->a.host[0] ? a->a.host : "-", a->a.ip[0] ? a->a.ip : "-", m->tls ? "yes" : "no",
                 a->a.code, result_word(a->a.state),
                 log_value(t, sizeof(t), a->a.reply, strlen(a->a.reply)));
        char w[3 * ADDR_TEXT_SIZE + 1];
        if (watch_on(ob->watch))
            watch_value(w, sizeof(w), rcpt, strlen(rcpt));
        watch_say(ob->watch, "queue", WATCH_SMTP, WATCH_MAIL, false,
                  "attempt id=%lld rcpt=%s mx=%s ip=%s tls=%s code=%d result=%s reply=%s",
                  (long long)m->message_id, w, a->a.host[0] ? a->a.host : "-",
                  a->a.ip[0] ? a->a.ip : "-", m->tls ? "yes" : "no", a->a.code,
                  result_word(a->a.state), a->a.reply);
    }
    ob->jobs--;
    struct dest *d = dest_find(ob, m->domain);
    msg_free(ob, m);
    commit_job_free(job);
    /* Room for more: read the queue again once there is room worth a read
     * (half a share, or half the whole), not after every message. */
    if (!ob->stopping && (d == NULL || d->n_rcpts < OB_DEST_RCPTS_MAX / 2 ||
                          ob->n_rcpts < OB_RCPTS_MAX / 2))
        outbound_kick(ob);
    maybe_idle(ob);
}

/* Every recipient of m deferred (or failed, when permanent) with one reason of our own. */
static void msg_fail_all(struct outbound *ob, struct omsg *m, bool permanent, int code,
                         const char *status, const char *text, const char *host, const char *ip)
{
    struct smtp_client_result *res = xcalloc(m->n_rcpts, sizeof(*res));
    for (size_t i = 0; i < m->n_rcpts; i++) {
        res[i].state = permanent ? SMTP_CLIENT_FAILED : SMTP_CLIENT_DEFERRED;
        res[i].code = code;
        snprintf(res[i].enhanced, sizeof(res[i].enhanced), "%s", status);
        snprintf(res[i].text, sizeof(res[i].text), "%s", text);
    }
    msg_outcome(ob, m, res, m->n_rcpts, host, ip, false, false);
    free(res);
}

/* --- destinations ------------------------------------------------------------ */

static struct dest *dest_find(struct outbound *ob, const char *domain)
{
    for (struct dest *d = ob->dests; d != NULL; d = d->next)
        if (strcmp(d->domain, domain) == 0)
            return d;
    return NULL;
}

static struct dest *dest_get(struct outbound *ob, const char *domain)
{
    struct dest *d = dest_find(ob, domain);
    if (d != NULL)
        return d;
    d = xcalloc(1, sizeof(*d));
    d->ob = ob;
    snprintf(d->domain, sizeof(d->domain), "%s", domain);
    d->next = ob->dests;
    ob->dests = d;
    return d;
}

static void dest_free(struct dest *d)
{
    struct outbound *ob = d->ob;
    struct dest **p = &ob->dests;
    while (*p != d)
        p = &(*p)->next;
    *p = d->next;
    for (size_t i = 0; i < DNS_MX_MAX; i++)
        free(d->addrs[i]);
    mtasts_lookup_cancel(&d->sts_lookup);
    mtasts_policy_free(&d->sts);
    free(d);
}

/* A destination with nothing waiting and no connection is forgotten (its DNS answers too). */
static void dest_maybe_free(struct dest *d)
{
    if (d->holds == 0 && d->head == NULL && d->n_conns == 0 && !d->querying &&
        d->sts_lookup == NULL)
        dest_free(d);
}

/* Keeps d through calls that may forget it: the last release frees it, if then unused. */
static void dest_hold(struct dest *d)
{
    d->holds++;
}

static void dest_release(struct dest *d)
{
    if (--d->holds == 0)
        dest_maybe_free(d);
}

static void dest_push(struct dest *d, struct omsg *m, bool front)
{
    if (front) {
        m->next = d->head;
        d->head = m;
        if (d->tail == NULL)
            d->tail = m;
        return;
    }
    m->next = NULL;
    if (d->tail != NULL)
        d->tail->next = m;
    else
        d->head = m;
    d->tail = m;
}

static struct omsg *dest_pop(struct dest *d)
{
    struct omsg *m = d->head;
    if (m != NULL) {
        d->head = m->next;
        if (d->head == NULL)
            d->tail = NULL;
        m->next = NULL;
    }
    return m;
}

/* Nowhere to go, now or ever: every waiting message gets the route's failure. */
/* Every waiting message gets one outcome of our own; DNS is asked again next time. */
static void dest_fail_waiting(struct dest *d, bool permanent, int code, const char *status,
                              const char *text, const char *host, const char *ip)
{
    struct omsg *m;
    while ((m = dest_pop(d)) != NULL)
        msg_fail_all(d->ob, m, permanent, code, status, text, host, ip);
    d->state = DEST_NEW;
    d->n_targets = d->first_target = 0;
    d->plain_only = 0;
    d->sts_unverified = 0;
    d->last_error[0] = '\0';
    dest_maybe_free(d);
}

static void dest_fail(struct dest *d, const struct route_fail *f, const char *why)
{
    char text[512];
    snprintf(text, sizeof(text), "%s%s%s", f->text, why ? ": " : "", why ? why : "");
    dest_fail_waiting(d, f->permanent, f->code, f->status, text, "", "");
}

static bool smarthost(const struct outbound *ob)
{
    return ob->conf->relay.smarthost_host[0] != '\0';
}

/* No address took a connection: what waits is deferred, and DNS is asked again next time. */
static void dest_unreachable(struct dest *d, const char *status, const char *why, const char *host,
                             const char *ip)
{
    char v[700];
    log_info("smtp event=destination-unreachable domain=%s reason=%s",
             d->domain[0] ? d->domain : "smarthost", log_value(v, sizeof(v), why, strlen(why)));
    dest_fail_waiting(d, false, 0, status, why, host, ip);
}

/* --- MTA-STS (RFC 8461) ------------------------------------------------------- */

static bool sts_enforce(const struct dest *d)
{
    return d->sts != NULL && d->sts->mode == MTASTS_MODE_ENFORCE;
}

static bool sts_testing(const struct dest *d)
{
    return d->sts != NULL && d->sts->mode == MTASTS_MODE_TESTING;
}

/*
 * One line for what the policy refuses (enforce) or would refuse
 * (testing): mx is the host, why a word or a sentence.
 */
static void sts_log(const struct dest *d, const char *mx, const char *ip, const char *reason,
                    const char *detail)
{
    char v[300];
    log_info("smtp event=mta-sts domain=%s mode=%s id=%s mx=%s ip=%s result=%s reason=%s%s%s",
             d->domain, mtasts_mode_name(d->sts->mode), d->sts->id, mx[0] ? mx : "-",
             ip[0] ? ip : "-", sts_enforce(d) ? "refused" : "would-refuse", reason,
             detail ? " detail=" : "",
             detail ? log_value(v, sizeof(v), detail, strlen(detail)) : "");
}

/*
 * RFC 8461 4.1: an MX host the policy does not list is not used (enforce)
 * or logged (testing). Returns false when enforce left no host: what
 * waits is then deferred, 4.7.5.
 */
static bool sts_filter_plan(struct dest *d)
{
    if (d->sts == NULL)
        return true;
    size_t kept = 0;
    for (size_t i = 0; i < d->plan.n; i++) {
        if (mtasts_policy_allows(d->sts, d->plan.hosts[i].name)) {
            d->plan.hosts[kept++] = d->plan.hosts[i];
            continue;
        }
        sts_log(d, d->plan.hosts[i].name, "", "mx-not-in-policy", NULL);
        if (!sts_enforce(d))
            d->plan.hosts[kept++] = d->plan.hosts[i];
    }
    d->plan.n = kept;
    if (kept > 0)
        return true;
    char list[200], text[512];
    mtasts_policy_mx_list(d->sts, list, sizeof(list));
    snprintf(text, sizeof(text),
             "The MTA-STS policy of %.100s (mode enforce) lists none of its MX hosts (it lists "
             "%s); the delivery will be tried again.",
             d->domain, list);
    dest_fail_waiting(d, false, 0, "4.7.5", text, "", "");
    return false;
}

static void addrs_answer(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n);

/* Asks for the next host's addresses, or finishes the targets. */
static void next_host(struct dest *d)
{
    struct outbound *ob = d->ob;
    size_t have = d->host_next;
    struct route_target t[ROUTE_ADDRS_MAX];
    size_t nt = 0;
    const struct route_fail *f = have > 0 ? route_addrs(d->answers, have, t, &nt) : NULL;
    if (have < d->plan.n && (have == 0 || nt < ROUTE_ADDRS_MAX)) {
        d->querying = true;
        if (dns_addrs(ob->dns, d->plan.hosts[have].name, DNS_V4 | DNS_V6, addrs_answer, d) < 0) {
            d->querying = false;
            d->answers[have].status = DNS_NXDOMAIN;
            d->host_next++;
            next_host(d);
        }
        return;
    }
    if (f != NULL) {
        dest_fail(d, f, NULL);
        return;
    }
    memcpy(d->targets, t, nt * sizeof(t[0]));
    d->n_targets = nt;
    d->first_target = 0;
    d->state = DEST_READY;
    dest_run(d);
}

static void addrs_answer(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n)
{
    struct dest *d = ctx;
    d->querying = false;
    if (status == DNS_CANCELLED) {
        dest_maybe_free(d);
        return;
    }
    dest_hold(d);
    size_t i = d->host_next++;
    d->addrs[i] = n > 0 ? xmalloc(n * sizeof(*addrs)) : NULL;
    if (n > 0)
        memcpy(d->addrs[i], addrs, n * sizeof(*addrs));
    d->answers[i] = (struct route_host_addrs){status, d->addrs[i], n};
    next_host(d);
    dest_release(d);
}

static void mx_answer(void *ctx, enum dns_status status, const struct dns_mx *records, size_t n)
{
    struct dest *d = ctx;
    struct outbound *ob = d->ob;
    d->querying = false;
    if (status == DNS_CANCELLED) {
        dest_maybe_free(d);
        return;
    }
    const char *self[] = {ob->conf->hostname};
    const struct route_fail *f =
        route_plan(d->domain, status, records, n, self, 1, (uint32_t)uv_hrtime(), &d->plan);
    if (f != NULL) {
        dest_fail(d, f, NULL);
        return;
    }
    if (!sts_filter_plan(d))
        return;
    next_host(d);
}

/* Asks for the domain's MX records. */
static void dest_resolve_mx(struct dest *d)
{
    d->querying = true;
    if (dns_mx(d->ob->dns, d->domain, mx_answer, d) < 0) {
        d->querying = false;
        dest_fail(d, &route_fail_nxdomain, NULL);
    }
}

/* The domain's MTA-STS policy is known (NULL: none to apply): on to its MX records. */
static void sts_answer(void *ctx, const struct mtasts_policy *policy)
{
    struct dest *d = ctx;
    d->sts_lookup = NULL;
    if (d->ob->stopping) {
        dest_maybe_free(d);
        return;
    }
    mtasts_policy_free(&d->sts);
    if (policy != NULL && policy->mode != MTASTS_MODE_NONE)
        d->sts = mtasts_policy_dup(policy);
    dest_hold(d);
    dest_resolve_mx(d);
    dest_release(d);
}

/* Begins finding where the destination's mail goes. */
static void dest_resolve(struct dest *d)
{
    struct outbound *ob = d->ob;
    d->state = DEST_RESOLVING;
    d->host_next = 0;
    for (size_t i = 0; i < DNS_MX_MAX; i++) {
        free(d->addrs[i]);
        d->addrs[i] = NULL;
    }
    if (smarthost(ob)) {
        const char *host = ob->conf->relay.smarthost_host;
        struct dns_addr a = {0};
        if (inet_pton(AF_INET, host, a.bytes) == 1 || inet_pton(AF_INET6, host, a.bytes) == 1) {
            a.family = strchr(host, ':') ? AF_INET6 : AF_INET;
            d->targets[0] = (struct route_target){a, 0};
            d->n_targets = 1;
            snprintf(d->plan.hosts[0].name, sizeof(d->plan.hosts[0].name), "%s", host);
            d->plan.n = 1;
            d->state = DEST_READY;
            dest_run(d);
            return;
        }
        d->plan = (struct route_plan){.n = 1};
        snprintf(d->plan.hosts[0].name, sizeof(d->plan.hosts[0].name), "%s", host);
        next_host(d);
        return;
    }
    /* A domain that cannot have a policy (its _mta-sts name is too long) goes on without. */
    if (mtasts_lookup(ob->mtasts, d->domain, sts_answer, d, &d->sts_lookup) < 0) {
        d->sts_lookup = NULL;
        mtasts_policy_free(&d->sts);
        dest_resolve_mx(d);
    }
}

/* --- connections ---------------------------------------------------------------- */

static void conn_start(struct dest *d, size_t target);

/*
 * The length of a Return-Path: line that opens the message (with its line
 * end), or 0. Local delivery wrote it; RFC 5321 4.4 has it added at final
 * delivery only, so the next server gets the message without it.
 */
static int64_t return_path_len(const char *p, size_t n)
{
    static const char name[] = "Return-Path:";
    if (n < sizeof(name) - 1 || strncasecmp(p, name, sizeof(name) - 1) != 0)
        return 0;
    const char *lf = memchr(p, '\n', n);
    return lf != NULL ? (int64_t)(lf - p) + 1 : 0;
}

/* Prepares m for the client: its size and whether it needs 8BITMIME, SMTPUTF8. */
static int msg_describe(struct outbound *ob, struct omsg *m, struct smtp_client_msg *cm,
                        struct smtp_client_rcpt *cr)
{
    /* One read, whatever the size: the loop does not wait on a long scan.
     * A larger message is announced as 8BITMIME (harmless for a 7-bit one,
     * RFC 6152). UTF-8 in the header section is sent as it came: it needs
     * SMTPUTF8 only when it came with it (what a client without SMTPUTF8
     * wrote raw goes on as such, as other servers pass it on). */
    size_t got = 0;
    int rc = store_mbox_read(ob->reader, m->message_id, 0, ob->chunk, OB_READ_CHUNK, &got);
    if (rc < 0)
        return rc;
    bool eight = (int64_t)got < m->size;
    for (size_t i = 0; i < got && !eight; i++)
        eight = (unsigned char)ob->chunk[i] >= 0x80;
    m->skip = return_path_len(ob->chunk, got);
    bool utf8_addr = false;
    for (const char *p = m->sender; *p; p++)
        utf8_addr |= (unsigned char)*p >= 0x80;
    for (size_t i = 0; i < m->n_rcpts; i++) {
        cr[i] =
            (struct smtp_client_rcpt){m->rcpts[i].address, m->rcpts[i].notify, m->rcpts[i].orcpt};
        for (const char *p = m->rcpts[i].address; *p; p++)
            utf8_addr |= (unsigned char)*p >= 0x80;
    }
    *cm = (struct smtp_client_msg){
        .from = m->sender,
        .rcpts = cr,
        .n_rcpts = m->n_rcpts,
        .size = (uint64_t)(m->size - m->skip),
        .eight_bit = eight,
        .needs_smtputf8 = m->smtputf8 || utf8_addr,
        .ret = m->ret,
        .envid = m->envid,
    };
    return 0;
}

/* Gives the connection its next message, or says QUIT. */
static void conn_next(struct oconn *oc)
{
    struct outbound *ob = oc->dest->ob;
    while (!ob->stopping && (oc->msg = dest_pop(oc->dest)) != NULL) {
        struct smtp_client_rcpt *cr = xcalloc(oc->msg->n_rcpts, sizeof(*cr));
        struct smtp_client_msg cm;
        int rc = msg_describe(ob, oc->msg, &cm, cr);
        if (rc == 0)
            rc = smtp_client_next(oc->client, &cm);
        free(cr);
        if (rc == 0) {
            oc->body_off = oc->msg->skip;
            return;
        }
        /* Gone from the store (dropped), or refused by the client: nothing to send. */
        log_error("smtp event=delivery-skipped id=%lld rc=%d", (long long)oc->msg->queue_id, rc);
        if (rc == -EINVAL)
            msg_fail_all(ob, oc->msg, true, 0, "5.6.0", "the message cannot be sent as it is", "",
                         "");
        else
            msg_free(ob, oc->msg);
        oc->msg = NULL;
    }
    smtp_client_quit(oc->client);
}

/* The transaction ended (DONE or CLOSE): its results are recorded. */
static void conn_msg_done(struct oconn *oc)
{
    struct omsg *m = oc->msg;
    oc->msg = NULL;
    size_t n;
    const struct smtp_client_result *res = smtp_client_results(oc->client, &n);
    if (sts_testing(oc->dest) && !oc->sts_noted && !smtp_client_tls_used(oc->client) && n > 0 &&
        res[0].state == SMTP_CLIENT_DELIVERED) {
        oc->sts_noted = true;
        sts_log(oc->dest, oc->host, oc->ip, "no-tls", "delivered without TLS");
    }
    msg_outcome(oc->dest->ob, m, res, n, oc->host, oc->ip, smtp_client_tls_used(oc->client),
                smtp_client_dsn_offered(oc->client));
}

static void feed(struct oconn *oc)
{
    if (oc->closed || smtp_client_action(oc->client) == SMTP_CLIENT_ACT_BODY)
        return;
    struct buf *in = net_conn_input(oc->net);
    size_t used = 0;
    smtp_client_feed(oc->client, (const char *)in->data, in->len, &used);
    buf_consume(in, used);
    /* Progress is a whole line of reply: a byte at a time does not hold the wait open. */
    if (used > 0)
        oc->quiet_ms = 0;
}

/* Does what the client asks until it waits for the server. */
static void pump_queued(uv_timer_t *t)
{
    struct outbound *ob = t->data;
    struct oconn *oc = ob->pump_list;
    ob->pump_list = NULL;
    while (oc != NULL) {
        struct oconn *next = oc->pump_next;
        oc->pump_queued = false;
        oc->pump_next = NULL;
        pump(oc);
        oc = next;
    }
}

/* Its turn ran out with work left (a fast peer takes everything at once,
 * and no callback would come): it goes on once the loop has seen to the rest. */
static void pump_later(struct oconn *oc)
{
    struct outbound *ob = oc->dest->ob;
    if (oc->pump_queued)
        return;
    oc->pump_queued = true;
    oc->pump_next = ob->pump_list;
    ob->pump_list = oc;
    if (!uv_is_active((uv_handle_t *)&ob->pump_timer))
        uv_timer_start(&ob->pump_timer, pump_queued, 0, 0);
}

static void pump(struct oconn *oc)
{
    struct outbound *ob = oc->dest->ob;
    for (int rounds = 0; !oc->closed; rounds++) {
        if (rounds == OB_PUMP_ROUNDS) {
            pump_later(oc);
            return;
        }
        struct buf *out = smtp_client_output(oc->client);
        if (out->len > 0) {
            if (net_conn_write(oc->net, out->data, out->len) < 0) {
                smtp_client_connection_lost(oc->client);
                buf_reset(out);
                continue;
            }
            buf_reset(out);
        }
        switch (smtp_client_action(oc->client)) {
        case SMTP_CLIENT_ACT_NONE:
            return;
        case SMTP_CLIENT_ACT_STARTTLS:
            oc->tls_tried = true;
            if (oc->tls == NULL) { /* enforce without trust anchors: nothing can verify */
                smtp_client_tls_failed(oc->client);
                continue;
            }
            net_conn_start_tls_client(oc->net, oc->tls, oc->host);
            return;
        case SMTP_CLIENT_ACT_BODY:
            if (net_conn_pending(oc->net) >= NET_LOW_WATER)
                return; /* drain brings us back */
            oc->transacted = true;
            while (smtp_client_wants_body(oc->client)) {
                size_t got = 0;
                if (store_mbox_read(ob->reader, oc->msg->message_id, oc->body_off, ob->chunk,
                                    SMTP_CLIENT_BODY_CHUNK, &got) < 0) {
                    smtp_client_quit(oc->client); /* defers: the body is unreadable now */
                    break;
                }
                if (got == 0) {
                    smtp_client_body_end(oc->client);
                    feed(oc); /* what the server sent early is its answer */
                    break;
                }
                smtp_client_body(oc->client, ob->chunk, got);
                oc->body_off += (int64_t)got;
                oc->quiet_ms = 0;
            }
            continue;
        case SMTP_CLIENT_ACT_DONE:
            if (oc->msg != NULL) {
                oc->transacted = true;
                conn_msg_done(oc);
            }
            conn_next(oc);
            continue;
        case SMTP_CLIENT_ACT_CLOSE:
            net_conn_close(oc->net);
            return;
        }
    }
}

/* Frees a connection's part of the runner, off every list. */
static void conn_forget(struct oconn *oc)
{
    struct outbound *ob = oc->dest->ob;
    if (oc->pump_queued)
        for (struct oconn **p = &ob->pump_list; *p != NULL; p = &(*p)->pump_next)
            if (*p == oc) {
                *p = oc->pump_next;
                break;
            }
    if (oc->prev != NULL)
        oc->prev->next = oc->next;
    else if (ob->conns == oc)
        ob->conns = oc->next;
    if (oc->next != NULL)
        oc->next->prev = oc->prev;
    smtp_client_free(&oc->client);
    free(oc);
}

static void *p_open(struct net_conn *c, void *ctx)
{
    struct oconn *oc = ctx;
    oc->ready = true;
    snprintf(oc->ip, sizeof(oc->ip), "%s", net_conn_peer(c));
    return oc;
}

static void p_input(struct net_conn *c, void *ctx)
{
    (void)c;
    struct oconn *oc = ctx;
    feed(oc);
    pump(oc);
}

static void p_drain(struct net_conn *c, void *ctx)
{
    (void)c;
    struct oconn *oc = ctx;
    oc->quiet_ms = 0;
    pump(oc);
}

/*
 * net's idle timer fires every OB_TICK_MS without progress; the wait the
 * client allows depends on what it waits for (RFC 5321 4.5.3.2: 5 minutes
 * for most replies, 10 after the final dot), so the ticks add up to it.
 */
static void p_timeout(struct net_conn *c, void *ctx)
{
    (void)c;
    struct oconn *oc = ctx;
    oc->quiet_ms += OB_TICK_MS;
    if (oc->quiet_ms < (uint64_t)smtp_client_timeout_s(oc->client) * 1000)
        return; /* net starts the timer again */
    smtp_client_timed_out(oc->client);
    pump(oc);
}

static void p_tls_started(struct net_conn *c, void *ctx)
{
    (void)c;
    struct oconn *oc = ctx;
    oc->quiet_ms = 0;
    smtp_client_tls_started(oc->client);
    pump(oc);
}

/* Whether a failure on this connection is the target's (try the next) rather than the message's. */
static bool target_failed(const struct oconn *oc)
{
    if (oc->transacted || oc->msg == NULL)
        return false;
    size_t n;
    const struct smtp_client_result *res = smtp_client_results(oc->client, &n);
    for (size_t i = 0; i < n; i++)
        if (res[i].state != SMTP_CLIENT_DEFERRED && res[i].state != SMTP_CLIENT_PENDING &&
            res[i].stage <= SMTP_CLIENT_STAGE_EHLO)
            return true; /* a 5xx greeting or EHLO: this host will not take mail */
    return n == 0 || res[0].stage <= SMTP_CLIENT_STAGE_AUTH;
}

/*
 * Under an enforced policy a connection ended before its message went:
 * when TLS was the reason (no STARTTLS, a refusal, a certificate that
 * does not verify), that is logged as the policy's refusal.
 */
static void sts_refused_tls(const struct oconn *oc, const char *tls_error)
{
    if (tls_error != NULL && oc->tls_tried) {
        sts_log(oc->dest, oc->host, oc->ip, "tls", tls_error);
        return;
    }
    size_t n;
    const struct smtp_client_result *res = smtp_client_results(oc->client, &n);
    if (n > 0 && res[0].stage == SMTP_CLIENT_STAGE_STARTTLS)
        sts_log(oc->dest, oc->host, oc->ip, "tls", res[0].text);
}

static void p_close(struct net_conn *c, void *ctx)
{
    struct oconn *oc = ctx;
    struct dest *d = oc->dest;
    struct outbound *ob = d->ob;
    char why[NET_TLS_ERROR_MAX];
    const char *tls_error = net_conn_tls_error(c, why, sizeof(why));
    const char *failure = net_conn_failure(c);
    oc->closed = true;
    dest_hold(d);
    if (smtp_client_action(oc->client) != SMTP_CLIENT_ACT_CLOSE) {
        if (tls_error != NULL && oc->tls_tried)
            smtp_client_tls_failed(oc->client);
        else
            smtp_client_connection_lost(oc->client);
    }
    struct omsg *m = oc->msg;
    size_t nres;
    const struct smtp_client_result *res0 = smtp_client_results(oc->client, &nres);
    if (nres > 0 && res0[0].stage == SMTP_CLIENT_STAGE_AUTH && res0[0].code >= 500)
        log_error("smtp event=smarthost-login-refused host=%s code=%d: check [relay] "
                  "smarthost_user and smarthost_password_file; mail waits in the queue",
                  oc->host, res0[0].code);
    if (m != NULL && !ob->stopping && target_failed(oc)) {
        /* The host is down or will not talk: the message tries the next one. */
        oc->msg = NULL;
        dest_push(d, m, true);
        bool tls_failed = tls_error != NULL && oc->tls_tried;
        bool verify_failed = tls_failed && sts_testing(d) && oc->tls == ob->tls_verified &&
                             !(d->sts_unverified & (1u << oc->target));
        bool tls_only = tls_failed && !smarthost(ob) && !sts_enforce(d) &&
                        !(d->plain_only & (1u << oc->target));
        if (sts_enforce(d))
            sts_refused_tls(oc, tls_error);
        if (verify_failed) {
            /* Testing: what enforce would refuse is logged, and the same
             * address is tried again as without a policy. */
            sts_log(d, oc->host, oc->ip, "tls", tls_error);
            d->sts_unverified |= 1u << oc->target;
        } else if (tls_only) {
            d->plain_only |= 1u << oc->target; /* plaintext only after a failed handshake */
        } else if (oc->target + 1 < d->n_targets) {
            if (d->first_target <= oc->target)
                d->first_target = oc->target + 1;
        } else {
            /* Every address failed: the messages wait for their next try. */
            size_t n;
            const struct smtp_client_result *res = smtp_client_results(oc->client, &n);
            char text[640];
            if (n > 0 && res[0].code > 0)
                snprintf(text, sizeof(text), "%d %s%s%.512s", res[0].code, res[0].enhanced,
                         res[0].enhanced[0] ? " " : "", res[0].text);
            else
                snprintf(text, sizeof(text), "%.300s%s%.128s",
                         n > 0 ? res[0].text : "cannot connect", failure || tls_error ? ": " : "",
                         failure     ? failure
                         : tls_error ? tls_error
                                     : "");
            if (sts_enforce(d)) {
                char sts_text[760];
                snprintf(sts_text, sizeof(sts_text),
                         "MTA-STS policy of %.100s (mode enforce) requires verified TLS: %.600s",
                         d->domain, text);
                dest_unreachable(d, "4.7.5", sts_text, oc->host, oc->ip);
            } else {
                dest_unreachable(d, "4.4.1", text, oc->host, oc->ip);
            }
        }
    } else if (m != NULL) {
        conn_msg_done(oc);
    }
    d->n_conns--;
    ob->n_conns--;
    conn_forget(oc);
    /* A slot is free: any destination waiting for one may go on. */
    for (struct dest *x = ob->dests; x != NULL && !ob->stopping; x = x->next)
        dest_hold(x);
    for (struct dest *x = ob->dests, *next; x != NULL && !ob->stopping; x = next) {
        next = x->next;
        dest_run(x);
    }
    for (struct dest *x = ob->dests, *next; x != NULL && !ob->stopping; x = next) {
        next = x->next;
        dest_release(x);
    }
    dest_release(d);
    maybe_idle(ob);
}

static const struct net_proto proto = {
    .open = p_open,
    .input = p_input,
    .drain = p_drain,
    .timeout = p_timeout,
    .tls_started = p_tls_started,
    .close = p_close,
};

/* Opens a connection to the destination's target, with the first message waiting. */
static void conn_start(struct dest *d, size_t target)
{
    struct outbound *ob = d->ob;
    const struct conf_relay *rc = &ob->conf->relay;
    bool sh = smarthost(ob);
    struct smtp_client_config cfg = {
        .helo_name = ob->conf->hostname,
        .tls = sh || sts_enforce(d)               ? SMTP_CLIENT_TLS_REQUIRED
               : (d->plain_only & (1u << target)) ? SMTP_CLIENT_TLS_NONE
                                                  : SMTP_CLIENT_TLS_OPPORTUNISTIC,
        .tls_active = sh && rc->smarthost_implicit_tls,
        .auth_user = sh ? rc->smarthost_user : NULL,
        .auth_password = sh ? ob->smarthost_password : NULL,
    };
    struct oconn *oc = xcalloc(1, sizeof(*oc));
    oc->dest = d;
    oc->target = target;
    oc->tls_tried = cfg.tls_active;
    /* RFC 8461 4.2: under a policy, the certificate must verify for the MX
     * host's name; testing tries that first, and on failure goes on as usual. */
    oc->tls = sh               ? ob->tls_smarthost
              : sts_enforce(d) ? ob->tls_verified
              : sts_testing(d) && ob->tls_verified != NULL && !(d->sts_unverified & (1u << target))
                  ? ob->tls_verified
                  : ob->tls_mx;
    const struct route_target *t = &d->targets[target];
    snprintf(oc->host, sizeof(oc->host), "%s", d->plan.hosts[t->host].name);
    struct sockaddr_storage ss;
    dns_addr_sockaddr(&t->addr, (uint16_t)(sh ? rc->smarthost_port : rc->port), &ss);
    inet_ntop(t->addr.family, t->addr.bytes, oc->ip, sizeof(oc->ip));
    if (smtp_client_new(&cfg, &oc->client) < 0) {
        log_error("smtp event=client-config-refused helo=%s", ob->conf->hostname);
        free(oc);
        dest_fail(d, &route_fail_addr_tempfail, "the client refused its settings");
        return;
    }
    conn_next(oc);
    int rc2 = oc->msg == NULL ? 0
                              : net_connect(ob->net, (struct sockaddr *)&ss, &proto, oc,
                                            cfg.tls_active ? ob->tls_smarthost : NULL, oc->host,
                                            &oc->net);
    if (oc->msg == NULL || rc2 < 0) {
        /* Nothing to send after all, or not even begun (no IPv6 here, say):
         * the next address, or, when it was the last, dest_run finds the
         * destination unreachable. */
        if (oc->msg != NULL) {
            dest_push(d, oc->msg, true);
            d->first_target = target + 1;
            snprintf(d->last_error, sizeof(d->last_error), "cannot connect to %s: %s", oc->ip,
                     uv_strerror(rc2));
        }
        smtp_client_free(&oc->client);
        free(oc);
        return;
    }
    d->n_conns++;
    ob->n_conns++;
    oc->next = ob->conns;
    if (ob->conns != NULL)
        ob->conns->prev = oc;
    ob->conns = oc;
}

/* Starts what the destination can: a look-up, or connections for its messages. */
static void dest_run(struct dest *d)
{
    struct outbound *ob = d->ob;
    if (ob->stopping)
        return;
    dest_hold(d);
    if (d->state == DEST_NEW && d->head != NULL && !d->querying)
        dest_resolve(d);
    const struct conf_relay *rc = &ob->conf->relay;
    while (d->state == DEST_READY && d->head != NULL && d->n_conns < rc->connections_per_domain &&
           ob->n_conns < rc->connections && d->first_target < d->n_targets)
        conn_start(d, d->first_target);
    if (d->state == DEST_READY && d->head != NULL && d->first_target >= d->n_targets &&
        d->n_conns == 0)
        dest_unreachable(d, "4.4.1",
                         d->last_error[0] ? d->last_error : "no address took a connection", "", "");
    dest_release(d);
}

/* --- polling ----------------------------------------------------------------------- */

struct poll_ctx {
    struct outbound *ob;
    struct dest dropped; /* not in the list of destinations: never connected to */
    struct dest *touched[64];
    size_t n_touched;
    bool overflow;
};

static int take_due(void *ctx, const struct store_queued *q)
{
    struct poll_ctx *pc = ctx;
    struct outbound *ob = pc->ob;
    if (ob->n_rcpts >= OB_RCPTS_MAX)
        return 1;
    if (inflight_has(ob, q->rcpt_id))
        return 0;
    /* Dropped by the administrator: failed at once, in a destination of their own. */
    const char *domain = q->dropped ? "" : smarthost(ob) ? "" : q->domain;
    struct dest *d = q->dropped ? &pc->dropped : dest_find(ob, domain);
    /* One destination holds a share of the room (not the smarthost, the only one). */
    if (d != NULL && d != &pc->dropped && !smarthost(ob) && d->n_rcpts >= OB_DEST_RCPTS_MAX)
        return 0;
    if (d == NULL)
        d = dest_get(ob, domain);
    struct omsg *m = d->tail;
    if (m == NULL || !m->fresh || m->queue_id != q->queue_id ||
        m->n_rcpts >= SMTP_CLIENT_RCPTS_MAX) {
        m = xcalloc(1, sizeof(*m));
        m->fresh = true;
        snprintf(m->domain, sizeof(m->domain), "%s", d == &pc->dropped ? "" : domain);
        m->queue_id = q->queue_id;
        m->message_id = q->message_id;
        m->user_id = q->user_id;
        m->created = q->created;
        m->size = q->size;
        m->sender = xstrdup(q->sender);
        m->envid = q->envid[0] != '\0' ? xstrdup(q->envid) : NULL;
        m->ret = q->ret;
        m->bounce = q->bounce;
        m->smtputf8 = q->smtputf8;
        dest_push(d, m, false);
    }
    m->rcpts = xrealloc(m->rcpts, (m->n_rcpts + 1) * sizeof(*m->rcpts));
    struct orcpt *r = &m->rcpts[m->n_rcpts++];
    *r = (struct orcpt){
        .rcpt_id = q->rcpt_id,
        .address = xstrdup(q->address),
        .orcpt = q->orcpt[0] ? xstrdup(q->orcpt) : NULL,
        .notify = q->notify,
        .delay_notified = q->delay_notified,
    };
    bool seen = d == &pc->dropped;
    for (size_t i = 0; i < pc->n_touched; i++)
        seen |= pc->touched[i] == d;
    if (!seen && pc->n_touched < 64)
        pc->touched[pc->n_touched++] = d;
    else if (!seen)
        pc->overflow = true;
    ob->n_rcpts++;
    d->n_rcpts++;
    return 0;
}

/* The domains that hold their share of the room, as a JSON array for the read; NULL: none. */
static char *full_destinations(struct outbound *ob)
{
    if (smarthost(ob))
        return NULL;
    struct buf b;
    buf_init(&b, 0);
    for (struct dest *d = ob->dests; d != NULL; d = d->next) {
        if (d->n_rcpts < OB_DEST_RCPTS_MAX)
            continue;
        buf_append_str(&b, b.len == 0 ? "[\"" : ",\"");
        for (const char *p = d->domain; *p; p++) /* a domain has neither, but no string breaks out */
            if (*p != '"' && *p != '\\')
                buf_append(&b, p, 1);
        buf_append_str(&b, "\"");
    }
    if (b.len == 0)
        return NULL;
    buf_append(&b, "]", 2); /* with its NUL */
    return (char *)b.data;
}

static void poll_queue(uv_timer_t *t)
{
    struct outbound *ob = t->data;
    ob->polling_soon = false;
    uv_timer_start(&ob->poll_timer, poll_queue, OB_POLL_MS, 0);
    if (ob->stopping || ob->n_rcpts >= OB_RCPTS_MAX)
        return;
    /* Recipients in flight are still due in the store: ask for enough rows
     * to pass them. A destination that holds its share is left out of the
     * read, so however many rows it has, the others' come next. */
    struct poll_ctx pc = {.ob = ob, .dropped = {.ob = ob}};
    size_t before = ob->n_rcpts;
    char *full = full_destinations(ob);
    int rc = store_queue_due(ob->reader, time(NULL), 2 * OB_RCPTS_MAX + before, full, take_due,
                             &pc);
    free(full);
    if (rc < 0 && rc != 1)
        log_error("smtp event=queue-read-failed rc=%d error=\"%s\"", rc, kotak_strerror(rc));
    /* The recipient arrays are final now: put their members in the in-flight set. */
    ob->n_rcpts = before;
    struct omsg *m;
    while ((m = dest_pop(&pc.dropped)) != NULL) {
        for (size_t i = 0; i < m->n_rcpts; i++)
            inflight_add(ob, &m->rcpts[i]);
        msg_fail_all(ob, m, true, 0, "5.0.0", "removed from the queue by the administrator", "",
                     "");
    }
    for (struct dest *d = ob->dests; d != NULL; d = d->next)
        for (struct omsg *m = d->head; m != NULL; m = m->next)
            if (m->fresh) {
                m->fresh = false;
                for (size_t i = 0; i < m->n_rcpts; i++)
                    inflight_add(ob, &m->rcpts[i]);
            }
    for (size_t i = 0; i < pc.n_touched; i++)
        dest_run(pc.touched[i]);
    if (pc.overflow)
        for (struct dest *d = ob->dests, *next; d != NULL; d = next) {
            next = d->next;
            dest_run(d);
        }
}

void outbound_set_watch(struct outbound *ob, struct watch *w)
{
    ob->watch = w;
}

void outbound_kick(struct outbound *ob)
{
    if (ob->stopping || ob->polling_soon)
        return;
    ob->polling_soon = true;
    uv_timer_start(&ob->poll_timer, poll_queue, OB_KICK_MS, 0);
}

/* --- life ------------------------------------------------------------------------------ */

/*
 * The smarthost's password: the file's first line. Read with read(2) into
 * a buffer that is wiped, so that no stdio buffer keeps a copy.
 */
static char *read_password(const char *path, char *err, size_t err_size)
{
    char buf[512];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_size, "cannot read [relay] smarthost_password_file %s: %s", path,
                 strerror(errno));
        return NULL;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    char *p = NULL;
    if (n < 0) {
        snprintf(err, err_size, "cannot read [relay] smarthost_password_file %s: %s", path,
                 strerror(errno));
    } else {
        buf[n] = '\0';
        size_t len = strcspn(buf, "\r\n");
        if (len == 0)
            snprintf(err, err_size, "[relay] smarthost_password_file %s is empty", path);
        else if (len > 255)
            snprintf(err, err_size,
                     "the password in [relay] smarthost_password_file %s is longer than 255 "
                     "octets, which AUTH cannot carry",
                     path);
        else
            p = xstrndup(buf, len);
    }
    explicit_bzero(buf, sizeof(buf));
    return p;
}

/*
 * The port MTA-STS policies are fetched from: 443 (RFC 8461 3.3). The
 * environment variable KOTAK_MTASTS_PORT, read at start, replaces it; it
 * exists for tests, whose policy server cannot bind 443, and is no
 * setting for a real server.
 */
static uint16_t mtasts_port(void)
{
    const char *env = getenv("KOTAK_MTASTS_PORT");
    if (env == NULL || env[0] == '\0')
        return 443;
    char *end;
    errno = 0;
    unsigned long port = strtoul(env, &end, 10);
    if (errno != 0 || *end != '\0' || port == 0 || port > 65535) {
        log_error("smtp event=mta-sts-port-ignored value=\"%.16s\" reason=\"not a port\"", env);
        return 443;
    }
    log_warn("smtp event=mta-sts-port port=%lu reason=\"KOTAK_MTASTS_PORT, for tests only\"", port);
    return (uint16_t)port;
}

struct outbound *outbound_new(uv_loop_t *loop, const struct conf *conf, struct store *reader,
                              struct committer *committer, const char *data_dir,
                              const uint8_t *srs_secret, char *err, size_t err_size)
{
    const struct conf_relay *rc = &conf->relay;
    struct outbound *ob = xcalloc(1, sizeof(*ob));
    ob->loop = loop;
    ob->conf = conf;
    ob->reader = reader;
    ob->committer = committer;
    ob->data_dir = data_dir;
    ob->srs_secret = srs_secret;
    ob->chunk = xmalloc(OB_READ_CHUNK);
    ob->schedule = (struct schedule){
        .retry_first = (int64_t)(rc->retry_first_ms / 1000),
        .retry_max = (int64_t)(rc->retry_max_ms / 1000),
        .delay_warning = (int64_t)(rc->delay_warning_ms / 1000),
        .give_up = (int64_t)(rc->give_up_ms / 1000),
        .bounce_give_up = (int64_t)(rc->bounce_give_up_ms / 1000),
    };
    if (rc->smarthost_password_file[0] != '\0' &&
        (ob->smarthost_password = read_password(rc->smarthost_password_file, err, err_size)) ==
            NULL)
        goto fail;
    if (rc->smarthost_user[0] != '\0' && ob->smarthost_password == NULL) {
        snprintf(err, err_size, "[relay] smarthost_user needs smarthost_password_file");
        goto fail;
    }
    /* What every connection will be made with, tried once now: a user or
     * password the client cannot send stops the start, not each delivery. */
    struct smtp_client *probe;
    struct smtp_client_config cfg = {
        .helo_name = conf->hostname,
        .auth_user = rc->smarthost_user,
        .auth_password = ob->smarthost_password,
    };
    if (smtp_client_new(&cfg, &probe) < 0) {
        snprintf(err, err_size,
                 "[relay] smarthost_user or its password holds a control character or is "
                 "longer than 255 octets, or [server] hostname is not a host name");
        goto fail;
    }
    smtp_client_free(&probe);
    if (tls_client_new(NULL, false, &ob->tls_mx, err, err_size) < 0)
        goto fail;
    if (smarthost(ob) &&
        tls_client_new(rc->smarthost_ca, true, &ob->tls_smarthost, err, err_size) < 0)
        goto fail;
    if ((ob->dns = dns_new(loop, conf->dns_servers, 0, 0, err, err_size)) == NULL)
        goto fail;
    /* MTA-STS needs the system's trust anchors; without them no policy
     * can be fetched, and mail goes as without MTA-STS (RFC 8461 5.1). */
    char tls_err[256];
    if (tls_client_new(NULL, true, &ob->tls_verified, tls_err, sizeof(tls_err)) < 0)
        log_error("smtp event=mta-sts-disabled reason=\"%s\"", tls_err);
    ob->mtasts = mtasts_new(loop, ob->dns, ob->tls_verified, mtasts_port());
    struct net_limits lim = {
        .idle_timeout_ms = OB_TICK_MS,
        .tls_handshake_timeout_ms = conf->limits.tls_handshake_timeout_ms,
        .connections = rc->connections,
        .connections_per_address = rc->connections,
        .stress_idle_timeout_ms = OB_TICK_MS,
        .connect_timeout_ms = OB_CONNECT_TIMEOUT_MS,
    };
    ob->net = net_server_new(loop, NULL, &lim, "smtp-out");
    uv_timer_t *timers[] = {&ob->poll_timer, &ob->pump_timer, &ob->retry_timer};
    for (size_t i = 0; i < 3; i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = ob;
    }
    ob->handles = 3;
    outbound_kick(ob);
    return ob;
fail:
    tls_client_free(&ob->tls_mx);
    tls_client_free(&ob->tls_smarthost);
    tls_client_free(&ob->tls_verified);
    if (ob->smarthost_password != NULL)
        explicit_bzero(ob->smarthost_password, strlen(ob->smarthost_password));
    free(ob->smarthost_password);
    free(ob->chunk);
    free(ob);
    return NULL;
}

size_t outbound_busy(const struct outbound *ob)
{
    return ob->n_conns + ob->jobs;
}

static void maybe_idle(struct outbound *ob)
{
    if (ob->stopping && ob->on_idle != NULL && outbound_busy(ob) == 0) {
        void (*fn)(void *) = ob->on_idle;
        ob->on_idle = NULL;
        fn(ob->idle_ctx);
    }
}

void outbound_stop(struct outbound *ob, void (*on_idle)(void *ctx), void *ctx)
{
    ob->stopping = true;
    ob->on_idle = on_idle;
    ob->idle_ctx = ctx;
    uv_timer_stop(&ob->poll_timer);
    uv_timer_stop(&ob->retry_timer);
    for (struct dest *d = ob->dests; d != NULL; d = d->next)
        mtasts_lookup_cancel(&d->sts_lookup);
    dns_free(&ob->dns); /* answers CANCELLED to what was asked */
    /* Each connection ends: QUIT when idle, at once mid-message or while
     * still connecting (a close may free it, and the list changes). */
    for (struct oconn *oc = ob->conns; oc != NULL;) {
        struct oconn *next = oc->next;
        if (oc->ready) {
            smtp_client_quit(oc->client);
            pump(oc);
        } else {
            net_conn_close(oc->net);
        }
        oc = next;
    }
    /* Results the store could not take: their recipients stay due. */
    while (ob->retry_jobs != NULL) {
        struct commit_job *job = ob->retry_jobs;
        ob->retry_jobs = job->next;
        msg_free(ob, job->owner);
        commit_job_free(job);
        ob->jobs--;
    }
    /* What waits for a connection stays queued in the store. */
    for (struct dest *d = ob->dests, *next; d != NULL; d = next) {
        next = d->next;
        struct omsg *m;
        while ((m = dest_pop(d)) != NULL)
            msg_free(ob, m);
        dest_maybe_free(d);
    }
    maybe_idle(ob);
}

static void timer_closed(uv_handle_t *h)
{
    struct outbound *ob = h->data;
    if (--ob->handles > 0)
        return;
    tls_client_free(&ob->tls_mx);
    tls_client_free(&ob->tls_smarthost);
    tls_client_free(&ob->tls_verified);
    free(ob->chunk);
    free(ob);
}

void outbound_free(struct outbound **obp)
{
    struct outbound *ob = *obp;
    if (ob == NULL)
        return;
    *obp = NULL;
    for (struct dest *d = ob->dests; d != NULL; d = d->next)
        mtasts_lookup_cancel(&d->sts_lookup);
    mtasts_free(&ob->mtasts); /* before the resolver, whose answers free what it detached */
    dns_free(&ob->dns);
    while (ob->dests != NULL)
        dest_free(ob->dests);
    net_server_free(&ob->net);
    if (ob->smarthost_password != NULL)
        explicit_bzero(ob->smarthost_password, strlen(ob->smarthost_password));
    free(ob->smarthost_password);
    uv_close((uv_handle_t *)&ob->poll_timer, timer_closed);
    uv_close((uv_handle_t *)&ob->pump_timer, timer_closed);
    uv_close((uv_handle_t *)&ob->retry_timer, timer_closed);
}
