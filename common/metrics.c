/*
 * metrics.c — the counters, their file, and the exposition; see metrics.h.
 */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kotak-version.h"
#include "log.h"

#define METRICS_MAGIC "kotakmet"
#define METRICS_VERSION 1
#define METRICS_BEAT_MS 5000
#define METRICS_ALIVE_S 15 /* three beats missed: the daemon hangs or is gone */

/* The file: a header, then the counters. The writer stores each field with
 * an atomic store of 8 octets; a reader copies the file with pread, never
 * mapping it, so a file that shrinks under it (a daemon starting again) is
 * a short read, never a SIGBUS. A count read a moment late is fine. */
struct metrics_file {
    char magic[8];
    uint32_t version, count; /* METRIC_COUNT: a reader of another build checks it */
    uint64_t pid, started;   /* started: Unix time */
    uint64_t beat;           /* CLOCK_MONOTONIC seconds, one clock for every process */
    uint64_t stopped;
    uint64_t counters[METRIC_COUNT];
};

static uint64_t in_memory[METRIC_COUNT];
uint64_t *metrics__counters = in_memory;

static struct {
    struct metrics_file *map;
    int fd;
    const char *name;
    uv_timer_t beat;
    bool timer;
    bool warned; /* the file could not be had: said once, tried again each beat */
} self = {.fd = -1};

uint64_t metrics_monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

/* Maps NAME's file and moves the counts into it; false (said once) when it cannot. */
static bool map_file(const char *name)
{
    char path[64];
    snprintf(path, sizeof(path), "%s/%s.counters", METRICS_DIR, name);
    const char *why = NULL;
    int fd = -1;
    if (mkdir(METRICS_DIR, 0700) < 0 && errno != EEXIST)
        why = strerror(errno);
    else if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
        why = strerror(errno);
    else if (flock(fd, LOCK_EX | LOCK_NB) < 0) /* an old daemon still stopping keeps it */
        why = "another daemon writes it";
    else if (ftruncate(fd, sizeof(struct metrics_file)) < 0)
        why = strerror(errno);
    void *p = why == NULL ? mmap(NULL, sizeof(struct metrics_file), PROT_READ | PROT_WRITE,
                                 MAP_SHARED, fd, 0)
                          : MAP_FAILED;
    if (why == NULL && p == MAP_FAILED)
        why = strerror(errno);
    if (why != NULL) {
        if (!self.warned)
            log_warn("%s event=metrics-off why=\"%s: %s; trying again every %d s\"", name, path,
                     why, METRICS_BEAT_MS / 1000);
        self.warned = true;
        if (fd >= 0)
            close(fd);
        return false;
    }
    struct metrics_file *f = p;
    /* A fresh start counts from 0, as Prometheus expects of a counter. */
    memset(f, 0, sizeof(*f));
    memcpy(f->magic, METRICS_MAGIC, sizeof(f->magic));
    f->version = METRICS_VERSION;
    f->count = METRIC_COUNT;
    f->pid = (uint64_t)getpid();
    f->started = (uint64_t)time(NULL);
    f->beat = metrics_monotonic_s();
    memcpy(f->counters, in_memory, sizeof(in_memory)); /* what was counted before */
    self.map = f;
    self.fd = fd;
    __atomic_store_n(&metrics__counters, f->counters, __ATOMIC_RELEASE);
    if (self.warned)
        log_info("%s event=metrics-on", name);
    return true;
}

static void beat(uv_timer_t *t)
{
    (void)t;
    if (self.map == NULL && !map_file(self.name))
        return;
    __atomic_store_n(&self.map->beat, metrics_monotonic_s(), __ATOMIC_RELAXED);
}

void metrics_start(uv_loop_t *loop, const struct conf *conf, const char *name)
{
    if (conf->metrics_listen.n == 0 || self.timer)
        return;
    self.name = name;
    map_file(name);
    uv_timer_init(loop, &self.beat);
    uv_timer_start(&self.beat, beat, METRICS_BEAT_MS, METRICS_BEAT_MS);
    uv_unref((uv_handle_t *)&self.beat); /* the beat never keeps the loop running */
    self.timer = true;
}

void metrics_stop(void)
{
    if (self.map == NULL)
        return;
    __atomic_store_n(&self.map->stopped, 1, __ATOMIC_RELAXED);
    if (self.timer)
        uv_timer_stop(&self.beat);
}

static void copy_view(const struct metrics_file *f, struct metrics_view *v)
{
    v->present = true;
    v->stopped = __atomic_load_n(&f->stopped, __ATOMIC_RELAXED) != 0;
    v->beat = __atomic_load_n(&f->beat, __ATOMIC_RELAXED);
    v->started = __atomic_load_n(&f->started, __ATOMIC_RELAXED);
    for (int i = 0; i < METRIC_COUNT; i++)
        v->counters[i] = __atomic_load_n(&f->counters[i], __ATOMIC_RELAXED);
}

void metrics_read(const char *name, struct metrics_view *v)
{
    memset(v, 0, sizeof(*v));
    if (self.name != NULL && strcmp(name, self.name) == 0) {
        /* Our own: the counts in memory when the file could not be had. */
        if (self.map != NULL) {
            copy_view(self.map, v);
        } else {
            struct metrics_file f = {.beat = metrics_monotonic_s()};
            memcpy(f.counters, in_memory, sizeof(in_memory));
            copy_view(&f, v);
        }
        return;
    }
    char path[64];
    snprintf(path, sizeof(path), "%s/%s.counters", METRICS_DIR, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return;
    struct stat st;
    struct metrics_file f;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        pread(fd, &f, sizeof(f), 0) == (ssize_t)sizeof(f) &&
        memcmp(f.magic, METRICS_MAGIC, sizeof(f.magic)) == 0 && f.version == METRICS_VERSION &&
        f.count == METRIC_COUNT)
        copy_view(&f, v);
    close(fd);
}

bool metrics_alive(const struct metrics_view *v)
{
    return v->present && !v->stopped && v->beat + METRICS_ALIVE_S >= metrics_monotonic_s();
}

/* --- the exposition ------------------------------------------------------------ */

enum scope { BOTH, SMTPD, POP3D };

struct family {
    const char *name, *type, *help;
};

static const struct family families[] = {
    {"kotak_connections_total", "counter", "Mail sessions opened (SMTP, POP3)."},
    {"kotak_connections_open", "gauge", "Mail sessions open now."},
    {"kotak_connections_refused_total", "counter",
     "Connections refused over [limits] connections or connections_per_address."},
    {"kotak_tls_handshakes_total", "counter",
     "TLS handshakes, by result (ok: full; resumed: a session resumed)."},
    {"kotak_logins_total", "counter",
     "Logins, by result (locked: refused unchecked after too many failures)."},
    {"kotak_smtp_messages_total", "counter",
     "Messages at the end of their data, by what came of them (stored, or the refusal)."},
    {"kotak_smtp_recipients_refused_total", "counter", "RCPT TO refused, by reason."},
    {"kotak_delivery_attempts_total", "counter",
     "Delivery attempts to other servers, per recipient, by result."},
    {"kotak_pop3_retrievals_total", "counter", "Messages sent by RETR and TOP."},
    {"kotak_pop3_sent_bytes_total", "counter", "Message octets sent by RETR and TOP."},
    {"kotak_pop3_deleted_total", "counter", "Messages removed from maildrops at QUIT."},
};

enum { F_CONN, F_OPEN, F_REFUSED, F_TLS, F_LOGIN, F_SMTP_MSG, F_RCPT, F_DELIVERY, F_RETR, F_BYTES, F_DELE };

static const struct row {
    unsigned char family;
    unsigned char scope;
    enum metric m;
    const char *labels;
} rows[] = {
    {F_CONN, BOTH, METRIC_CONNECTIONS, ""},
    {F_OPEN, BOTH, METRIC_CONNECTIONS_OPEN, ""},
    {F_REFUSED, BOTH, METRIC_CONNECTIONS_REFUSED, ""},
    {F_TLS, BOTH, METRIC_TLS_OK, "result=\"ok\""},
    {F_TLS, BOTH, METRIC_TLS_RESUMED, "result=\"resumed\""},
    {F_TLS, BOTH, METRIC_TLS_FAILED, "result=\"failed\""},
    {F_LOGIN, BOTH, METRIC_LOGIN_OK, "result=\"ok\""},
    {F_LOGIN, BOTH, METRIC_LOGIN_FAILED, "result=\"failed\""},
    {F_LOGIN, BOTH, METRIC_LOGIN_LOCKED, "result=\"locked\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_STORED, "result=\"stored\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_TOO_BIG, "result=\"too_big\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_LOOP, "result=\"loop\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_BARE_NEWLINE, "result=\"bare_newline\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_LONG_LINE, "result=\"long_line\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_SPF, "result=\"spf\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_DMARC, "result=\"dmarc\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_SPAM, "result=\"spam\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_POLICY, "result=\"policy\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_TEMPFAIL, "result=\"tempfail\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_DISK_FULL, "result=\"disk_full\""},
    {F_SMTP_MSG, SMTPD, METRIC_SMTP_STORE_ERROR, "result=\"store_error\""},
    {F_RCPT, SMTPD, METRIC_RCPT_UNKNOWN, "reason=\"unknown_user\""},
    {F_RCPT, SMTPD, METRIC_RCPT_RELAY_DENIED, "reason=\"relay_denied\""},
    {F_RCPT, SMTPD, METRIC_RCPT_OTHER, "reason=\"other\""},
    {F_DELIVERY, SMTPD, METRIC_DELIVERY_SENT, "result=\"sent\""},
    {F_DELIVERY, SMTPD, METRIC_DELIVERY_DEFERRED, "result=\"deferred\""},
    {F_DELIVERY, SMTPD, METRIC_DELIVERY_FAILED, "result=\"failed\""},
    {F_RETR, POP3D, METRIC_POP3_RETR, "command=\"retr\""},
    {F_RETR, POP3D, METRIC_POP3_TOP, "command=\"top\""},
    {F_BYTES, POP3D, METRIC_POP3_SENT_BYTES, ""},
    {F_DELE, POP3D, METRIC_POP3_DELETED, ""},
};

static void family_head(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{labels} value, the braces left out when there are no labels. */
static void sample(struct buf *b, const char *name, const char *l1, const char *l2, int64_t value)
{
    bool both = l1[0] != '\0' && l2[0] != '\0';
    if (l1[0] == '\0' && l2[0] == '\0')
        buf_printf(b, "%s %" PRId64 "\n", name, value);
    else
        buf_printf(b, "%s{%s%s%s} %" PRId64 "\n", name, l1, both ? "," : "", l2, value);
}

void metrics_render(struct buf *b, const struct metrics_view *smtpd,
                    const struct metrics_view *pop3d, const struct metrics_gauges *g)
{
    const struct metrics_view *views[2] = {smtpd, pop3d};
    static const char *const daemon_label[2] = {"daemon=\"smtpd\"", "daemon=\"pop3d\""};
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        family_head(b, families[f].name, families[f].type, families[f].help);
        for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
            if (rows[r].family != f)
                continue;
            for (int d = 0; d < 2; d++) {
                if (!views[d]->present || (rows[r].scope != BOTH && rows[r].scope != d + 1))
                    continue;
                sample(b, families[f].name, rows[r].scope == BOTH ? daemon_label[d] : "",
                       rows[r].labels, (int64_t)views[d]->counters[rows[r].m]);
            }
        }
    }
    family_head(b, "kotak_up", "gauge",
                "Whether the daemon runs and beats (kotak-pop3d: within the last 15 s).");
    for (int d = 0; d < 2; d++)
        if (d == 0 || g->pop3_wanted || views[d]->present)
            sample(b, "kotak_up", daemon_label[d], "", metrics_alive(views[d]));
    family_head(b, "kotak_start_time_seconds", "gauge", "When the daemon started, Unix time.");
    for (int d = 0; d < 2; d++)
        if (views[d]->present)
            sample(b, "kotak_start_time_seconds", daemon_label[d], "", (int64_t)views[d]->started);
    if (g->queue_recipients >= 0) {
        family_head(b, "kotak_queue_recipients", "gauge",
                    "Recipients waiting in the queue for delivery to other servers.");
        sample(b, "kotak_queue_recipients", "", "", g->queue_recipients);
        family_head(b, "kotak_queue_oldest_seconds", "gauge",
                    "Age of the oldest queued message; 0 when the queue is empty.");
        sample(b, "kotak_queue_oldest_seconds", "", "", g->queue_oldest_s);
    }
    family_head(b, "kotak_store_bytes", "gauge", "Size of the store: kotak.db and its WAL.");
    sample(b, "kotak_store_bytes", "", "", g->store_bytes);
    if (g->cert_expiry > 0) {
        family_head(b, "kotak_tls_certificate_expiry_timestamp_seconds", "gauge",
                    "When the certificate in use expires, Unix time.");
        sample(b, "kotak_tls_certificate_expiry_timestamp_seconds", "", "", g->cert_expiry);
    }
    family_head(b, "kotak_build_info", "gauge", "The version of kotak that runs.");
    buf_printf(b, "kotak_build_info{version=\"%s\"} 1\n", KOTAK_VERSION);
}
