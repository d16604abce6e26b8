/*
 * queue.c — `kotak queue list|show|retry|drop`: the mail waiting for other
 * servers, as the store holds it. kotak-smtpd reads the queue itself and
 * picks up a retry or a drop the next time it looks (every second), so no
 * signal is needed; a dropped message is bounced by kotak-smtpd, which
 * builds every report.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "util.h"

static const char usage[] = "kotak queue list | show ID | retry [ID] | drop ID";

static const char *when(int64_t t, char *out, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL) /* a year past what struct tm holds */
        snprintf(out, size, "@%" PRId64, t);
    else
        strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return out;
}

static const char *state_name(const struct store_queued *q)
{
    if (q->state == STORE_RCPT_QUEUED && q->dropped)
        return "dropped (the bounce is on its way)";
    return q->state == STORE_RCPT_DELIVERED ? "delivered"
           : q->state == STORE_RCPT_FAILED  ? "failed"
                                            : "queued";
}

/* A queue id as given on the command line: a positive decimal number. */
static int64_t parse_id(const char *arg)
{
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || v <= 0)
        ctl_die("'%s' is not a queue id; 'kotak queue list' shows them", arg);
    return (int64_t)v;
}

struct listing {
    size_t recipients;
    int64_t last_entry;
    size_t entries;
};

static int list_one(void *ctx, const struct store_queued *q)
{
    struct listing *l = ctx;
    char next[32];
    if (q->state != STORE_RCPT_QUEUED)
        return 0;
    if (q->queue_id != l->last_entry)
        l->entries++;
    l->last_entry = q->queue_id;
    l->recipients++;
    printf("%" PRId64 "\t<%s>\t<%s>\t%d\t%s\t%s\n", q->queue_id, q->sender, q->address, q->attempts,
           q->dropped ? "dropped" : when(q->next_try, next, sizeof(next)),
           q->last_reply[0] ? q->last_reply : "-");
    return 0;
}

struct showing {
    struct store *s;
    bool header;
};

static int show_event(void *ctx, const struct store_queue_event *e)
{
    (void)ctx;
    char at[32];
    printf("    %s  %s%s%s%s  %s\n", when(e->at, at, sizeof(at)), e->host[0] ? e->host : "-",
           e->ip[0] ? " [" : "", e->ip, e->ip[0] ? "]" : "", e->reply);
    return 0;
}

static int show_one(void *ctx, const struct store_queued *q)
{
    struct showing *sh = ctx;
    char t[32];
    if (!sh->header) {
        sh->header = true;
        printf("id: %" PRId64 "\nfrom: <%s>%s\nqueued: %s\nsize: %" PRId64 " octets\n", q->queue_id,
               q->sender, q->bounce ? " (a delivery report)" : "", when(q->created, t, sizeof(t)),
               q->size);
        printf("recipients:\n");
    }
    printf("  <%s>  %s, %d attempt%s", q->address, state_name(q), q->attempts,
           q->attempts == 1 ? "" : "s");
    if (q->state == STORE_RCPT_QUEUED && !q->dropped)
        printf(", next try %s", when(q->next_try, t, sizeof(t)));
    printf("\n");
    return store_queue_log(sh->s, q->rcpt_id, show_event, NULL);
}

int ctl_queue(const struct ctl *c)
{
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc < 1)
        ctl_usage(usage, help);
    ctl_check_verb(c, "queue");
    const char *verb = c->argv[0];
    bool list = strcmp(verb, "list") == 0, show = strcmp(verb, "show") == 0,
         retry = strcmp(verb, "retry") == 0, drop = strcmp(verb, "drop") == 0;
    if ((list && c->argc != 1) || ((show || drop) && c->argc != 2) || (retry && c->argc > 2))
        ctl_usage(usage, false);
    int64_t id = c->argc == 2 ? parse_id(c->argv[1]) : 0;
    struct conf conf;
    ctl_load_conf(c, &conf);
    struct store *s = ctl_open_store(&conf, list || show);
    int rc;
    if (list) {
        struct listing l = {0};
        if ((rc = store_queue_list(s, 0, list_one, &l)) < 0)
            ctl_die_store(s, rc, "queue");
        printf("%zu message%s, %zu recipient%s queued\n", l.entries, l.entries == 1 ? "" : "s",
               l.recipients, l.recipients == 1 ? "" : "s");
    } else if (show) {
        struct showing sh = {.s = s};
        if ((rc = store_queue_list(s, id, show_one, &sh)) < 0)
            ctl_die_store(s, rc, "queue");
        if (!sh.header)
            ctl_die("no message %" PRId64 " in the queue; 'kotak queue list' shows them", id);
    } else {
        int64_t now = (int64_t)time(NULL);
        rc = drop ? store_queue_drop(s, id, now) : store_queue_retry(s, id, now);
        if (rc == -ENOENT)
            ctl_die("no message %" PRId64 " in the queue; 'kotak queue list' shows them", id);
        if (rc < 0)
            ctl_die_store(s, rc, "queue");
        if (drop)
            printf("%d recipient%s dropped; kotak-smtpd bounces them to the sender\n", rc,
                   rc == 1 ? "" : "s");
        else
            printf("%d recipient%s due now\n", rc, rc == 1 ? "" : "s");
    }
    store_close(&s);
    conf_free(&conf);
    return 0;
}
