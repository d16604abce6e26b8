/*
 * checks.h — what kotak-smtpd does with a message between its final dot
 * and its commit.
 *
 * On the MX: SPF of the sender, DKIM of the signatures, DMARC of the From:
 * domain, and rspamd when configured, all at once, within one deadline;
 * the verdicts go into an Authentication-Results: field (and X-Spam-*),
 * forged results claiming our host name come out, and the policy of
 * [checks] and [spam] may refuse the message instead. On submission: a
 * DKIM signature for the sender's domain, when it has a key.
 *
 * Reading the message (hashing it, signing it) runs on libuv's thread
 * pool; the DNS questions and rspamd's answer come back on the loop. The
 * loop never waits on either.
 */
#ifndef KOTAK_CHECKS_H
#define KOTAK_CHECKS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "committer.h"
#include "conf.h"

/* The most one message's checks may take; then what is missing is a temperror. */
#define CHECKS_DEADLINE_MS 30000

struct checks;

enum check_kind {
    CHECK_INBOUND, /* the MX: verify and judge */
    CHECK_SIGN,    /* submission: take out forged results; sign when asked */
};

/* What the checks need to know of the transaction; copied. */
struct check_request {
    enum check_kind kind;
    const char *session_id; /* for logs */
    const char *queue_id;
    const char *ip;
    const char *helo;
    const char *mail_from; /* "" for <> */
    const char *const *rcpts;
    size_t n_rcpts;
    const char *user; /* the login, "" for none */
    bool sign;        /* CHECK_SIGN: with recipients elsewhere, so DKIM-sign it */
};

/*
 * How the checks of one message end: job is the one given, with its
 * insert and skips filled in when accepted; refusal is NULL to commit it,
 * else the reply to give instead (the job is then the caller's to free).
 */
typedef void (*checks_done_fn)(void *ctx, struct commit_job *job, const char *refusal);

/*
 * The checks of a daemon, with their resolver, the public suffix list and
 * the rspamd client. Returns NULL with a sentence in err.
 */
struct checks *checks_new(uv_loop_t *loop, const struct conf *conf, char *err, size_t err_size);

/*
 * Checks the message in job->spool. done runs once, on the loop, never
 * inside this call. The job is the checks' until then.
 */
void checks_start(struct checks *c, const struct check_request *req, struct commit_job *job,
                  checks_done_fn done, void *ctx);

/* Messages being checked. */
size_t checks_in_flight(const struct checks *c);

/*
 * The daemon stops: every message being checked ends now, refused with a
 * temporary failure (its sender tries again), once its thread-pool part
 * is back.
 */
void checks_stop(struct checks *c);

/* Frees c once nothing is in flight; the loop must run to close its handles. */
void checks_free(struct checks **c);

#endif
