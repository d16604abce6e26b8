/*
 * checks.c — the checks between a message's final dot and its commit; see
 * checks.h.
 *
 * One run per message. On the MX it starts SPF and rspamd on the loop and
 * the reading of the message (DKIM's hashes, the From: domain, forged
 * results) on the thread pool, all at once (a small message is read on the
 * loop: read_on_loop); DKIM's keys are asked once the
 * hashes are known and checked on the thread pool once they came (the RSA
 * work stays off the loop); DMARC once SPF and DKIM have answered. A
 * deadline timer bounds the whole: what has not answered by then is
 * cancelled and counts as a temporary error. A run ends when nothing is
 * outstanding: the reading, once queued, is waited for; the keys' check
 * is called off when it has not started yet.
 */
#include "checks.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "addr.h"
#include "authres.h"
#include "buf.h"
#include "dkim.h"
#include "dmarc.h"
#include "dns.h"
#include "headers.h"
#include "log.h"
#include "metrics.h"
#include "psl.h"
#include "rspamd.h"
#include "spf.h"
#include "util.h"

#define READ_CHUNK (64 * 1024)
/* A small message is read on the loop: its header scan and body hashes
 * (tens of microseconds) cost less than handing it to a pool thread and
 * back, two thread wake-ups, which were a tenth of kotak-smtpd's CPU with
 * 1 KiB messages. Small: in memory, up to READ_ON_LOOP_MAX octets, up to
 * READ_ON_LOOP_LINES header lines, and at most two DKIM-Signature fields of
 * READ_ON_LOOP_DKIM octets in all (a real message's one or two take under
 * 1 KiB), which bounds DKIM's work on the fields (names in h= against the
 * fields and each other) and its hashes to well under a millisecond.
 * Other messages, and signing (RSA), go to the pool. */
#define READ_ON_LOOP_MAX (32 * 1024)
#define READ_ON_LOOP_LINES 128
#define READ_ON_LOOP_SIGS 2
#define READ_ON_LOOP_DKIM 2048
#define DKIM_DIR "dkim" /* in the data folder, the daemon's working folder */

struct checks {
    uv_loop_t *loop;
    const struct conf *conf;
    struct dns *dns;
    struct psl *psl;
    struct rspamd *rspamd; /* NULL: [spam] rspamd is off */
    struct check_run *runs;
    size_t n_runs;   /* with their handles open */
    size_t n_active; /* not finished yet */
    bool stopping;
    bool freeing; /* checks_free came while runs were closing */
};

struct check_run {
    struct checks *c;
    struct check_run *prev, *next;
    struct check_request req; /* strings below */
    char session_id[32], queue_id[32], ip[64], helo[256], mail_from[ADDR_TEXT_SIZE], user[256];
    char **rcpts;
    struct commit_job *job;
    checks_done_fn done;
    void *ctx;
    uv_work_t work;
    uv_timer_t deadline;
    bool work_out, ended, finished;

    /* From the thread pool. */
    bool header_too_big;
    int from_rc; /* dmarc_from_domain's */
    char from_domain[DNS_NAME_MAX + 1];
    struct headers_place *forged; /* Authentication-Results: claiming our name */
    size_t n_forged;
    struct headers_place *subjects; /* Subject: fields, for rspamd's rewrite */
    size_t n_subjects;
    struct headers_place *spam; /* X-Spam fields from outside: ours replace them */
    size_t n_spam;
    uint64_t insert_at; /* the end of the first line (Return-Path:) */
    struct dkim_verify *dkim;
    char *signature; /* CHECK_SIGN: the DKIM-Signature: field, or NULL */
    char sign_domain[DNS_NAME_MAX + 1], sign_note[160];

    /* On the loop. */
    struct spf_check *spf;
    struct spf_outcome spf_out;
    bool spf_done, dkim_asked, dkim_done;
    struct dmarc_check *dmarc;
    struct dmarc_outcome dmarc_out;
    bool dmarc_done;
    struct rspamd_call *rspamd;
    struct rspamd_outcome rspamd_out;
    bool rspamd_done;
};

/* --- the thread pool's part ----------------------------------------------- */

/* Reads the spool's first n octets into a new buffer; *got_r says how many came. */
static char *read_head(struct spool *sp, size_t n, size_t *got_r)
{
    char *head = xmalloc(n + 1);
    size_t got = 0;
    while (got < n) {
        ssize_t k = spool_read(sp, got, head + got, n - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    *got_r = got;
    return head;
}

/* Whether the message is small enough to read on the loop: the limits
 * beside READ_ON_LOOP_MAX. */
static bool read_on_loop(const struct spool *sp)
{
    if (sp->fd >= 0 || sp->mem.len > READ_ON_LOOP_MAX)
        return false; /* a file would be read on the loop, or the message is large */
    static const char sig[] = "DKIM-Signature";
    const char *p = (const char *)sp->mem.data, *end = p + sp->mem.len;
    unsigned sigs = 0;
    size_t sig_octets = 0;
    bool in_sig = false; /* the line continues a DKIM-Signature field */
    for (unsigned lines = 0; p < end; lines++) {
        if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))
            return true; /* the empty line: the header section ends */
        if (lines == READ_ON_LOOP_LINES)
            return false;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *next = nl != NULL ? nl + 1 : end;
        if (*p != ' ' && *p != '\t') { /* a field starts: its name as DKIM reads it */
            const char *colon = memchr(p, ':', (size_t)(next - p)), *q = p + sizeof(sig) - 1;
            in_sig = colon != NULL && q <= colon && strncasecmp(p, sig, sizeof(sig) - 1) == 0;
            for (; in_sig && q < colon; q++)
                in_sig = *q == ' ' || *q == '\t';
            sigs += in_sig;
        }
        if (in_sig)
            sig_octets += (size_t)(next - p);
        if (sigs > READ_ON_LOOP_SIGS || sig_octets > READ_ON_LOOP_DKIM)
            return false;
        p = next;
    }
    return true;
}

/* Feeds the whole spool to a DKIM reader. */
static void feed_all(struct spool *sp, void (*feed)(void *r, const char *p, size_t n), void *r)
{
    char *chunk = xmalloc(READ_CHUNK);
    uint64_t off = 0;
    for (;;) {
        ssize_t k = spool_read(sp, off, chunk, READ_CHUNK);
        if (k <= 0)
            break;
        feed(r, chunk, (size_t)k);
        off += (uint64_t)k;
    }
    free(chunk);
}

static void feed_verify(void *r, const char *p, size_t n)
{
    dkim_verify_feed(r, p, n);
}

static void feed_sign(void *r, const char *p, size_t n)
{
    dkim_sign_feed(r, p, n);
}

/* The Authentication-Results: fields of hdr that name us: to be left out. */
static void find_forged(struct check_run *run, const char *hdr, size_t len)
{
    struct headers_place *all;
    size_t n = headers_fields_named(hdr, len, "Authentication-Results", &all), kept = 0;
    for (size_t i = 0; i < n; i++) {
        char id[256];
        if (authres_authserv_id(hdr + all[i].value, all[i].offset + all[i].len - all[i].value, id,
                                sizeof(id)) < 0)
            continue;
        size_t n_id = strlen(id);
        if (n_id > 1 && id[n_id - 1] == '.')
            id[n_id - 1] = '\0'; /* "mx.example.org." names the same host */
        if (strcasecmp(id, run->c->conf->hostname) == 0)
            all[kept++] = all[i];
    }
    run->forged = all;
    run->n_forged = kept;
}

/*
 * The X-Spam, X-Spam-Score and X-Spam-Status fields a message came with:
 * mail readers filter on them, and only ours may say what rspamd thought.
 */
static void find_spam_fields(struct check_run *run, const char *hdr, size_t len)
{
    static const char *const names[] = {"X-Spam", "X-Spam-Score", "X-Spam-Status"};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        struct headers_place *found;
        size_t n = headers_fields_named(hdr, len, names[k], &found);
        if (n == 0)
            continue;
        run->spam = xrealloc(run->spam, (run->n_spam + n) * sizeof(*run->spam));
        memcpy(run->spam + run->n_spam, found, n * sizeof(*found));
        run->n_spam += n;
        free(found);
    }
}

/*
 * Signs with the key of the sender's domain, when it has one. The sender
 * is the user's own address (or an alias of theirs), checked at MAIL; the
 * From: field is whatever the user wrote, so it does not choose the key:
 * a user of one domain cannot get mail signed as another. Mail whose From:
 * is in the sender's domain gets an aligned signature (DMARC passes).
 */
static void sign(struct check_run *run, struct spool *sp)
{
    const char *at = strrchr(run->mail_from, '@');
    char selector[DNS_NAME_MAX + 1], domain[DNS_NAME_MAX + 1];
    unsigned char *pem = NULL;
    size_t pem_len = 0;
    if (at == NULL || at[1] == '\0')
        return; /* <>: no domain to sign for */
    snprintf(domain, sizeof(domain), "%s", at + 1);
    addr_lower(domain);
    int rc = dkim_key_read(DKIM_DIR, domain, run->c->conf->checks.dkim_selector, selector, &pem,
                           &pem_len);
    if (rc < 0)
        snprintf(run->sign_note, sizeof(run->sign_note), "key of %.64s unreadable: %s", domain,
                 kotak_strerror(rc));
    if (rc != 1)
        return;
    struct dkim_sign *s = dkim_sign_new();
    feed_all(sp, feed_sign, s);
    rc = dkim_sign_finish(s, domain, selector, pem, pem_len, time(NULL), &run->signature,
                          run->sign_note, sizeof(run->sign_note));
    if (rc == 0)
        snprintf(run->sign_domain, sizeof(run->sign_domain), "%s", domain);
    dkim_sign_free(&s);
    explicit_bzero(pem, pem_len);
    free(pem);
}

/* Where the first empty line starts in p[0..n), or n. */
static size_t to_empty_line(const char *p, size_t n)
{
    if (n > 0 && (p[0] == '\n' || (n > 1 && p[0] == '\r' && p[1] == '\n')))
        return 0;
    for (const char *nl = memchr(p, '\n', n); nl != NULL;
         nl = memchr(nl + 1, '\n', n - (size_t)(nl + 1 - p))) {
        size_t i = (size_t)(nl - p) + 1;
        if (i < n && (p[i] == '\n' || (i + 1 < n && p[i] == '\r' && p[i + 1] == '\n')))
            return i;
        if (i >= n)
            break;
    }
    return n;
}

static void work(uv_work_t *w)
{
    struct check_run *run = w->data;
    struct spool *sp = &run->job->spool;
    uint64_t size = spool_size(sp);
    size_t want = size < DKIM_HEADER_MAX + 1 ? (size_t)size : DKIM_HEADER_MAX + 1;
    size_t got, hdr_len;
    char *head = read_head(sp, want, &got);
    int ended = headers_end(head, got, &hdr_len, NULL);
    const char *nl = memchr(head, '\n', got);
    run->insert_at = nl != NULL ? (uint64_t)(nl - head) + 1 : 0;
    /* The section ends within what was read when an empty line ends it, the
     * message does, or a whole line that is no field (not one cut short). */
    bool decided = ended == 1 || got == size || memchr(head + hdr_len, '\n', got - hdr_len);
    if (!decided || hdr_len > DKIM_HEADER_MAX) {
        run->header_too_big = true;
        free(head);
        return;
    }
    /* What is judged and cleaned reaches the empty line, past a line that
     * is no field: some readers show the fields below one, and a forger
     * would hide a From: or a result of ours there. */
    hdr_len = to_empty_line(head, got);
    run->from_rc = dmarc_from_domain(head, hdr_len, run->from_domain);
    find_forged(run, head, hdr_len); /* a user's mail may not speak for us either */
    if (run->req.kind == CHECK_SIGN) {
        if (run->req.sign)
            sign(run, sp);
    } else {
        if (run->c->rspamd != NULL) {
            run->n_subjects = headers_fields_named(head, hdr_len, "Subject", &run->subjects);
            find_spam_fields(run, head, hdr_len);
        }
        run->dkim = dkim_verify_new();
        feed_all(sp, feed_verify, run->dkim);
        dkim_verify_finish(run->dkim);
        dkim_verify_drop_header(run->dkim); /* the DNS wait may be long; the hashes are taken */
    }
    free(head);
}

/* --- the verdict ---------------------------------------------------------- */

/* Appends value to b as an RFC 8601 pvalue: as it is when it is plain, else quoted. */
static void put_value(struct buf *b, const char *value)
{
    bool plain = value[0] != '\0';
    for (const char *p = value; *p && plain; p++)
        plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                strchr(".-_@+=/", *p) != NULL;
    if (plain) {
        buf_append_str(b, value);
        return;
    }
    buf_append_str(b, "\"");
    for (const char *p = value; *p; p++)
        if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f && *p != '"' && *p != '\\')
            buf_append(b, p, 1);
    buf_append_str(b, "\"");
}

/* Appends a comment of printable ASCII, without parentheses or backslashes. */
static void put_comment(struct buf *b, const char *text)
{
    if (text == NULL || text[0] == '\0')
        return;
    buf_append_str(b, " (");
    for (const char *p = text; *p; p++)
        if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f && !strchr("()\\", *p))
            buf_append(b, p, 1);
    buf_append_str(b, ")");
}

/* Authentication-Results: (RFC 8601 2.2) with SPF, each DKIM signature and DMARC. */
static void put_authres(struct check_run *run, struct buf *b)
{
    buf_printf(b, "Authentication-Results: %s;\r\n\tspf=%s", run->c->conf->hostname,
               spf_result_name(run->spf_out.result));
    put_comment(b, run->spf_out.why);
    if (run->spf_out.domain[0] != '\0') {
        buf_append_str(b, run->spf_out.helo ? " smtp.helo=" : " smtp.mailfrom=");
        put_value(b, run->spf_out.domain);
    }
    size_t n = run->dkim != NULL && run->dkim_done ? dkim_verify_count(run->dkim) : 0;
    if (n == 0)
        buf_printf(b, ";\r\n\tdkim=%s", run->dkim_done ? "none" : "temperror");
    for (size_t i = 0; i < n; i++) {
        const struct dkim_result *r = dkim_verify_result(run->dkim, i);
        buf_printf(b, ";\r\n\tdkim=%s", dkim_status_name(r->status));
        put_comment(b, r->why);
        buf_append_str(b, " header.d=");
        put_value(b, r->domain);
        buf_append_str(b, " header.s=");
        put_value(b, r->selector);
        if (r->b_prefix[0] != '\0') {
            buf_append_str(b, " header.b=");
            put_value(b, r->b_prefix);
        }
    }
    buf_printf(b, ";\r\n\tdmarc=%s", dmarc_result_name(run->dmarc_out.result));
    if (run->dmarc_out.result == DMARC_PASS || run->dmarc_out.result == DMARC_FAIL) {
        char comment[64];
        snprintf(comment, sizeof(comment), "p=%s", dmarc_policy_name(run->dmarc_out.policy));
        put_comment(b, comment);
    } else {
        put_comment(b, run->dmarc_out.why);
    }
    if (run->dmarc_out.from_domain[0] != '\0') {
        buf_append_str(b, " header.from=");
        put_value(b, run->dmarc_out.from_domain);
    }
    buf_append_str(b, "\r\n");
}

/* What policy makes of the verdicts: NULL to take the message, else the refusal. */
static const char *verdict(struct check_run *run, char *line, size_t size, enum metric *m)
{
    const struct conf_checks *cc = &run->c->conf->checks;
    if (run->header_too_big)
        return "552 5.3.4 Message header section too large";
    if (run->req.kind == CHECK_SIGN)
        return NULL;
    if (run->from_rc == DMARC_FROM_SEVERAL && cc->dmarc_reject)
        /* Several From: fields or domains: no one policy to judge by, and
         * the way to slip a forged domain past one (RFC 7489 6.6.1 lets
         * the receiver refuse it). */
        return "550 5.7.1 Message has more than one From: field or domain";
    if (run->dmarc_out.result == DMARC_FAIL && run->dmarc_out.applied == DMARC_POLICY_REJECT &&
        cc->dmarc_reject) {
        *m = METRIC_SMTP_DMARC;
        snprintf(line, size, "550 5.7.1 Message rejected by the DMARC policy of %s",
                 run->dmarc_out.policy_domain[0] ? run->dmarc_out.policy_domain
                                                 : run->dmarc_out.from_domain);
        return line;
    }
    if (run->spf_out.result == SPF_FAIL && cc->spf_fail_reject) {
        /* RFC 7372 3.2: 5.7.23, SPF validation failed. */
        *m = METRIC_SMTP_SPF;
        snprintf(line, size, "550 5.7.23 SPF check failed: %s may not send mail for %s",
                 run->ip, run->spf_out.domain);
        return line;
    }
    if (run->c->rspamd == NULL)
        return NULL;
    switch (run->rspamd_out.action) {
    case RSPAMD_REJECT:
        /* rspamd's own words when it gave some: printable ASCII, bounded. */
        *m = METRIC_SMTP_SPAM;
        snprintf(line, size, "550 5.7.1 Message rejected as spam%s%s",
                 run->rspamd_out.message[0] ? ": " : "", run->rspamd_out.message);
        return line;
    case RSPAMD_SOFT_REJECT:
    case RSPAMD_GREYLIST:
        *m = METRIC_SMTP_TEMPFAIL;
        return "451 4.7.1 Try again later";
    case RSPAMD_UNREACHABLE:
        *m = METRIC_SMTP_TEMPFAIL;
        return cc->rspamd_fail_closed ? "451 4.7.1 Spam check unavailable, try again later" : NULL;
    default:
        return NULL;
    }
}

/* What policy makes of the verdicts, counted by reason for /metrics. */
static const char *judge(struct check_run *run, char *line, size_t size)
{
    enum metric m = METRIC_SMTP_POLICY;
    const char *refusal = verdict(run, line, size, &m);
    if (refusal != NULL)
        metrics_count(m);
    return refusal;
}

static int place_cmp(const void *a, const void *b)
{
    const struct headers_place *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* What goes into the stored copy: our fields in, forged ones (and a rewritten Subject:) out. */
static void edit_job(struct check_run *run)
{
    struct commit_job *job = run->job;
    struct buf b;
    buf_init(&b, 0);
    size_t n_out = run->n_forged;
    struct headers_place *out =
        xcalloc(run->n_forged + run->n_subjects + run->n_spam + 1, sizeof(*out));
    if (run->n_forged > 0)
        memcpy(out, run->forged, run->n_forged * sizeof(*out));
    if (run->req.kind == CHECK_SIGN) {
        if (run->signature != NULL)
            buf_append_str(&b, run->signature);
    } else {
        put_authres(run, &b);
        if (run->n_spam > 0) /* found only when rspamd is on */
            memcpy(out + n_out, run->spam, run->n_spam * sizeof(*out));
        n_out += run->n_spam;
        if (run->c->rspamd != NULL && run->rspamd_out.action != RSPAMD_UNREACHABLE) {
            rspamd_headers(&run->rspamd_out, &b);
            if (run->rspamd_out.action == RSPAMD_REWRITE_SUBJECT &&
                run->rspamd_out.subject[0] != '\0') {
                if (run->n_subjects > 0)
                    memcpy(out + n_out, run->subjects, run->n_subjects * sizeof(*out));
                n_out += run->n_subjects;
                headers_put_text_field(&b, "Subject", run->rspamd_out.subject);
            }
        }
    }
    qsort(out, n_out, sizeof(*out), place_cmp);
    job->skips = xcalloc(n_out + 1, sizeof(*job->skips));
    for (size_t i = 0; i < n_out; i++)
        if (out[i].offset >= run->insert_at)
            job->skips[job->n_skips++] = (struct commit_skip){out[i].offset, out[i].len};
    free(out);
    job->insert_at = run->insert_at;
    job->insert_len = b.len;
    if (b.len > 0) {
        job->insert = xmalloc(b.len);
        memcpy(job->insert, b.data, b.len);
    }
    buf_free(&b);
}

static void log_run(struct check_run *run, const char *refusal)
{
    char why[200];
    if (run->req.kind == CHECK_SIGN) {
        if (run->signature != NULL || run->sign_note[0] != '\0')
            log_info("smtp session=%s event=dkim-sign id=%s domain=%s result=%s%s%s%s",
                     run->session_id, run->queue_id, run->sign_domain[0] ? run->sign_domain : "-",
                     run->signature != NULL ? "signed" : "unsigned",
                     run->sign_note[0] ? " why=\"" : "",
                     run->sign_note[0] ? log_value(why, sizeof(why), run->sign_note,
                                                   strlen(run->sign_note))
                                       : "",
                     run->sign_note[0] ? "\"" : "");
        return;
    }
    size_t n = run->dkim != NULL && run->dkim_done ? dkim_verify_count(run->dkim) : 0;
    const char *dkim = n == 0 ? (run->dkim_done ? "none" : "temperror")
                              : dkim_status_name(dkim_verify_result(run->dkim, 0)->status);
    log_info("smtp session=%s event=checks id=%s spf=%s dkim=%s signatures=%zu dmarc=%s "
             "policy=%s from-domain=%s spam=\"%s\" result=%s",
             run->session_id, run->queue_id, spf_result_name(run->spf_out.result), dkim, n,
             dmarc_result_name(run->dmarc_out.result), dmarc_policy_name(run->dmarc_out.applied),
             run->dmarc_out.from_domain[0] ? run->dmarc_out.from_domain : "-",
             run->c->rspamd == NULL ? "off" : rspamd_action_name(run->rspamd_out.action),
             refusal == NULL ? "accepted" : "refused");
}

/* --- the run's life ------------------------------------------------------- */

static void run_closed(uv_handle_t *h)
{
    struct check_run *run = h->data;
    struct checks *c = run->c;
    dkim_verify_free(&run->dkim);
    free(run->forged);
    free(run->subjects);
    free(run->spam);
    free(run->signature);
    for (size_t i = 0; i < run->req.n_rcpts; i++)
        free(run->rcpts[i]);
    free(run->rcpts);
    if (run->prev != NULL)
        run->prev->next = run->next;
    else
        c->runs = run->next;
    if (run->next != NULL)
        run->next->prev = run->prev;
    free(run);
    if (--c->n_runs == 0 && c->freeing) {
        dns_free(&c->dns);
        free(c);
    }
}

/* Ends the run once nothing is outstanding: the verdict goes to the caller. */
static void maybe_finish(struct check_run *run)
{
    if (run->finished || run->work_out || run->spf != NULL || run->dmarc != NULL ||
        run->rspamd != NULL || (run->dkim_asked && !run->dkim_done))
        return;
    if (run->req.kind == CHECK_INBOUND && !run->ended && !run->header_too_big &&
        (!run->spf_done || !run->dkim_done || !run->dmarc_done))
        return; /* the next step has not been asked yet */
    run->finished = true;
    run->c->n_active--;
    char line[600];
    const char *refusal = run->c->stopping ? "451 4.3.2 Shutting down, try again later"
                                           : judge(run, line, sizeof(line));
    log_run(run, refusal);
    if (refusal == NULL)
        edit_job(run);
    run->done(run->ctx, run->job, refusal);
    run->job = NULL;
    uv_timer_stop(&run->deadline);
    uv_close((uv_handle_t *)&run->deadline, run_closed);
}

static void dmarc_answer(void *ctx, const struct dmarc_outcome *o)
{
    struct check_run *run = ctx;
    run->dmarc = NULL;
    run->dmarc_out = *o;
    run->dmarc_done = true;
    maybe_finish(run);
}

/* SPF and DKIM have answered: DMARC's turn. */
static void maybe_dmarc(struct check_run *run)
{
    if (!run->spf_done || !run->dkim_done || run->dmarc_done || run->dmarc != NULL)
        return;
    if (run->ended) {
        run->dmarc_out.result = DMARC_TEMPERROR;
        snprintf(run->dmarc_out.why, sizeof(run->dmarc_out.why), "timed out");
    } else if (run->from_rc != 1) {
        dmarc_outcome_unusable(run->from_rc, "", &run->dmarc_out); /* as kotak check dmarc says */
    }
    if (run->ended || run->from_rc != 1) {
        run->dmarc_done = true;
        maybe_finish(run);
        return;
    }
    size_t n = dkim_verify_count(run->dkim);
    struct dkim_result *results = xcalloc(n + 1, sizeof(*results));
    for (size_t i = 0; i < n; i++)
        results[i] = *dkim_verify_result(run->dkim, i);
    run->dmarc = dmarc_check_start(run->c->dns, run->c->psl, run->from_domain, &run->spf_out,
                                   results, n, dmarc_answer, run);
    free(results);
    if (run->dmarc == NULL) {
        run->dmarc_out.result = DMARC_TEMPERROR;
        run->dmarc_done = true;
        maybe_finish(run);
    }
}

static void spf_answer(void *ctx, const struct spf_outcome *o)
{
    struct check_run *run = ctx;
    run->spf = NULL;
    run->spf_out = *o;
    run->spf_done = true;
    maybe_dmarc(run);
    maybe_finish(run);
}

static void check_keys_work(uv_work_t *w)
{
    struct check_run *run = w->data;
    dkim_verify_check(run->dkim);
}

static void check_keys_done(uv_work_t *w, int status)
{
    (void)status; /* UV_ECANCELED: the keys were not checked, and say so */
    struct check_run *run = w->data;
    run->work_out = false;
    run->dkim_done = true;
    maybe_dmarc(run);
    maybe_finish(run);
}

/* The keys came: checking them (the RSA work) goes to the thread pool, not the loop. */
static void dkim_answer(void *ctx)
{
    struct check_run *run = ctx;
    run->work_out = true;
    uv_queue_work(run->c->loop, &run->work, check_keys_work, check_keys_done);
}

static void rspamd_answer(void *ctx, const struct rspamd_outcome *o)
{
    struct check_run *run = ctx;
    run->rspamd = NULL;
    run->rspamd_out = *o;
    run->rspamd_done = true;
    maybe_finish(run);
}

static void work_done(uv_work_t *w, int status)
{
    (void)status;
    struct check_run *run = w->data;
    run->work_out = false;
    if (run->req.kind == CHECK_INBOUND && !run->ended && !run->header_too_big) {
        /* 0: answers to come; otherwise every verdict is known now. */
        if (dkim_verify_keys(run->dkim, run->c->dns, time(NULL), dkim_answer, run) == 0)
            run->dkim_asked = true;
        else
            run->dkim_done = true;
    } else if (!run->ended) {
        run->dkim_done = true; /* nothing to verify: the verdicts (none) are final */
    }
    maybe_dmarc(run);
    maybe_finish(run);
}

/* The reading done on the loop: its result, on the loop's next turn as the
 * pool's would come, never inside checks_start's caller. */
static void read_later(void *ctx, enum dns_status status)
{
    (void)status; /* never cancelled: the resolver outlives every run */
    struct check_run *run = ctx;
    work_done(&run->work, 0);
}

/* The deadline, or the daemon stopping: what is still out is cancelled. */
static void run_end(struct check_run *run)
{
    if (run->ended || run->finished)
        return;
    run->ended = true;
    if (run->spf != NULL) {
        spf_check_cancel(&run->spf);
        run->spf_out.result = SPF_TEMPERROR;
        snprintf(run->spf_out.why, sizeof(run->spf_out.why), "timed out");
        run->spf_done = true;
    }
    if (run->dkim_asked && !run->dkim_done && !run->work_out) {
        dkim_verify_free(&run->dkim); /* no verdicts: dkim=temperror */
        run->dkim_asked = false;
    } else if (run->dkim_asked && !run->dkim_done) {
        /* The keys' check is out: still queued, it is called off (its
         * signatures stay temperror); already running, it is waited for. */
        uv_cancel((uv_req_t *)&run->work);
    }
    if (run->dmarc != NULL)
        dmarc_check_cancel(&run->dmarc);
    if (!run->dmarc_done) {
        run->dmarc_out.result = DMARC_TEMPERROR;
        snprintf(run->dmarc_out.why, sizeof(run->dmarc_out.why), "timed out");
        run->dmarc_done = true;
    }
    if (run->rspamd != NULL) {
        rspamd_cancel(&run->rspamd);
        run->rspamd_out.action = RSPAMD_UNREACHABLE;
        run->rspamd_done = true;
    }
    maybe_dmarc(run);
    maybe_finish(run);
}

static void on_deadline(uv_timer_t *t)
{
    struct check_run *run = t->data;
    log_info("smtp session=%s event=checks-timeout id=%s", run->session_id, run->queue_id);
    run_end(run);
}

static ssize_t rspamd_read(void *ctx, uint64_t off, void *p, size_t n)
{
    struct check_run *run = ctx;
    return spool_read(&run->job->spool, off, p, n);
}

void checks_start(struct checks *c, const struct check_request *req, struct commit_job *job,
                  checks_done_fn done, void *ctx)
{
    struct check_run *run = xcalloc(1, sizeof(*run));
    run->c = c;
    run->job = job;
    run->done = done;
    run->ctx = ctx;
    run->req = *req;
    snprintf(run->session_id, sizeof(run->session_id), "%s", req->session_id);
    snprintf(run->queue_id, sizeof(run->queue_id), "%s", req->queue_id);
    snprintf(run->ip, sizeof(run->ip), "%s", req->ip);
    snprintf(run->helo, sizeof(run->helo), "%s", req->helo);
    snprintf(run->mail_from, sizeof(run->mail_from), "%s", req->mail_from);
    snprintf(run->user, sizeof(run->user), "%s", req->user);
    run->rcpts = xcalloc(req->n_rcpts + 1, sizeof(*run->rcpts));
    for (size_t i = 0; i < req->n_rcpts; i++)
        run->rcpts[i] = xstrdup(req->rcpts[i]);
    run->req.rcpts = (const char *const *)run->rcpts;
    run->next = c->runs;
    if (c->runs != NULL)
        c->runs->prev = run;
    c->runs = run;
    c->n_runs++;
    c->n_active++;
    uv_timer_init(c->loop, &run->deadline);
    run->deadline.data = run;
    uv_timer_start(&run->deadline, on_deadline, CHECKS_DEADLINE_MS, 0);
    run->work.data = run;
    run->work_out = true;
    if (req->kind == CHECK_INBOUND && read_on_loop(&job->spool)) {
        work(&run->work);
        int rc = dns_later(c->dns, read_later, run);
        assert(rc == 0); /* the resolver closes only after the last run (checks_free) */
        (void)rc;
    } else {
        uv_queue_work(c->loop, &run->work, work, work_done);
    }
    if (req->kind != CHECK_INBOUND)
        return;
    run->spf = spf_check_start(c->dns, run->ip, run->mail_from, run->helo, spf_answer, run);
    if (run->spf == NULL) {
        run->spf_out.result = SPF_NONE;
        snprintf(run->spf_out.why, sizeof(run->spf_out.why), "no IP address to check");
        run->spf_done = true;
    }
    if (c->rspamd != NULL) {
        struct rspamd_request rr = {
            .ip = run->ip,
            .helo = run->helo,
            .from = run->mail_from,
            .rcpts = run->req.rcpts,
            .n_rcpts = req->n_rcpts,
            .user = run->user[0] ? run->user : NULL,
            .queue_id = run->queue_id,
            .size = spool_size(&job->spool),
            .read = rspamd_read,
            .read_ctx = run,
        };
        run->rspamd = rspamd_check(c->rspamd, &rr, rspamd_answer, run);
    }
}

/* --- the checks of a daemon ---------------------------------------------- */

struct checks *checks_new(uv_loop_t *loop, const struct conf *conf, char *err, size_t err_size)
{
    struct checks *c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->conf = conf;
    c->dns = dns_new(loop, conf->dns_servers, 0, 0, err, err_size);
    if (c->dns == NULL) {
        free(c);
        return NULL;
    }
    char why[256];
    c->psl = psl_load(PSL_DEFAULT_PATH, why, sizeof(why));
    if (c->psl == NULL) {
        snprintf(err, err_size, "%s (Debian: apt-get install publicsuffix)", why);
        dns_free(&c->dns);
        free(c);
        return NULL;
    }
    if (conf->checks.rspamd[0] != '\0') {
        c->rspamd = rspamd_new(loop, conf->checks.rspamd_host, (uint16_t)conf->checks.rspamd_port,
                               CHECKS_DEADLINE_MS * 2 / 3, why, sizeof(why));
        if (c->rspamd == NULL) {
            snprintf(err, err_size, "[spam] rspamd: %s", why);
            psl_free(&c->psl);
            dns_free(&c->dns);
            free(c);
            return NULL;
        }
    }
    return c;
}

size_t checks_in_flight(const struct checks *c)
{
    return c != NULL ? c->n_active : 0;
}

void checks_stop(struct checks *c)
{
    if (c == NULL)
        return;
    c->stopping = true;
    for (struct check_run *run = c->runs; run != NULL;) {
        struct check_run *next = run->next; /* run may end, not yet go: its handle closes later */
        run_end(run);
        run = next;
    }
}

void checks_free(struct checks **cp)
{
    struct checks *c = *cp;
    if (c == NULL)
        return;
    *cp = NULL;
    rspamd_free(&c->rspamd);
    psl_free(&c->psl);
    if (c->n_runs > 0) {
        c->freeing = true; /* the last run to close frees the rest */
        return;
    }
    dns_free(&c->dns);
    free(c);
}
