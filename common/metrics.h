/*
 * metrics.h — what each daemon counts for [metrics] listen: connections,
 * messages taken and refused by reason, logins, TLS handshakes, POP3
 * retrievals, deliveries.
 *
 * Counting is one relaxed atomic add into an array, whether anyone reads it
 * or not. When [metrics] listen is set, the array is a small file each
 * daemon maps (data_dir/metrics/smtpd.counters, pop3d.counters), so that
 * kotak-smtpd, which serves /metrics, reads kotak-pop3d's counts the way
 * the live view reads its ring: nothing joins the two daemons, and either
 * runs without the other. A daemon beats in its file's header every few
 * seconds; /healthz reads that beat.
 *
 * The text written is Prometheus's exposition format 0.0.4.
 */
#ifndef KOTAK_METRICS_H
#define KOTAK_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "conf.h"

#define METRICS_DIR "metrics" /* in data_dir, the daemons' working folder */

enum metric {
    METRIC_CONNECTIONS,         /* mail sessions opened */
    METRIC_CONNECTIONS_OPEN,    /* a gauge: mail sessions open now (added to and taken from) */
    METRIC_CONNECTIONS_REFUSED, /* over [limits] connections or connections_per_address */
    METRIC_TLS_OK,      /* a full handshake */
    METRIC_TLS_RESUMED, /* a session resumed (RFC 5077 ticket, or session id) */
    METRIC_TLS_FAILED,
    METRIC_LOGIN_OK,
    METRIC_LOGIN_FAILED,
    METRIC_LOGIN_LOCKED, /* refused unchecked: too many failures ([auth]) */
    /* kotak-smtpd: each message at its end of data, by what came of it */
    METRIC_SMTP_STORED,
    METRIC_SMTP_TOO_BIG,
    METRIC_SMTP_LOOP,
    METRIC_SMTP_BARE_NEWLINE,
    METRIC_SMTP_LONG_LINE,
    METRIC_SMTP_SPF,
    METRIC_SMTP_DMARC,
    METRIC_SMTP_SPAM,
    METRIC_SMTP_POLICY, /* another refusal of the checks (a header too large, several From:) */
    METRIC_SMTP_TEMPFAIL, /* a check asked to try later (rspamd away, greylisting) */
    METRIC_SMTP_DISK_FULL,
    METRIC_SMTP_STORE_ERROR,
    /* kotak-smtpd: each RCPT refused */
    METRIC_RCPT_UNKNOWN,
    METRIC_RCPT_RELAY_DENIED,
    METRIC_RCPT_OTHER,
    /* kotak-smtpd's queue runner: each attempt for a recipient */
    METRIC_DELIVERY_SENT,
    METRIC_DELIVERY_DEFERRED,
    METRIC_DELIVERY_FAILED,
    /* kotak-pop3d */
    METRIC_POP3_RETR,
    METRIC_POP3_TOP,
    METRIC_POP3_SENT_BYTES, /* message octets RETR and TOP sent */
    METRIC_POP3_DELETED,    /* removed at QUIT */
    METRIC_COUNT
};

/* Where counts go until metrics_start maps the file (and for good when it is off). */
extern uint64_t *metrics__counters;

static inline void metrics_add(enum metric m, uint64_t n)
{
    __atomic_fetch_add(&metrics__counters[m], n, __ATOMIC_RELAXED);
}

static inline void metrics_count(enum metric m)
{
    metrics_add(m, 1);
}

/*
 * When [metrics] listen is set: maps METRICS_DIR/NAME.counters (NAME
 * "smtpd" or "pop3d"; the working folder is data_dir) and beats in it
 * every few seconds on loop. When the file cannot be had (an old daemon
 * still stopping holds it) that is logged, counting goes on in memory,
 * and each beat tries again. metrics_stop marks the file stopped (a clean
 * stop, not a crash).
 */
void metrics_start(uv_loop_t *loop, const struct conf *conf, const char *name);
void metrics_stop(void);

/* What /metrics shows beside the counters, found by kotak-smtpd when asked. */
struct metrics_gauges {
    int64_t queue_recipients;    /* -1: the store could not say */
    int64_t queue_oldest_s;      /* age of the oldest queued entry, 0 when none */
    int64_t store_bytes;         /* kotak.db and its WAL */
    int64_t cert_expiry;         /* Unix time; 0: no certificate */
    bool pop3_wanted;            /* a POP3 listener is set: kotak-pop3d should run */
};

/* One daemon's counters as another process sees them. */
struct metrics_view {
    bool present;     /* its file exists and is ours */
    bool stopped;     /* it stopped cleanly */
    uint64_t beat;    /* its last beat, metrics_monotonic_s() */
    uint64_t started; /* Unix time of its start */
    uint64_t counters[METRIC_COUNT];
};

/* Reads NAME's counters: this process's own when NAME is the caller's. */
void metrics_read(const char *name, struct metrics_view *v);

/* CLOCK_MONOTONIC in seconds: the beat's clock, the same in every process, never stepped. */
uint64_t metrics_monotonic_s(void);

/* Whether v's daemon is up: present, not stopped, and beating within the last 15 s. */
bool metrics_alive(const struct metrics_view *v);

/* Writes the whole exposition for smtpd's and pop3d's views and g. */
void metrics_render(struct buf *b, const struct metrics_view *smtpd,
                    const struct metrics_view *pop3d, const struct metrics_gauges *g);

#endif
