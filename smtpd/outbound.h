/*
 * outbound.h — the queue runner of kotak-smtpd: carries queued mail to
 * other servers.
 *
 * It lives on the daemon's loop. Every second, and at once when a commit
 * queued something, it reads the recipients that are due from the store,
 * groups them by destination (a domain, or the smarthost), looks the
 * destination up in DNS (common/dns.c, smtpd/route.c), connects (net, a
 * server of its own so that no listener's slot is taken), and talks SMTP
 * with smtpd/smtp_client.c, several messages per connection. Each
 * message's outcome, with the bounce or report it calls for, goes back to
 * the store through the store thread in one transaction; only then is a
 * recipient free to be picked again, so none goes out twice while its
 * result is on its way.
 */
#ifndef KOTAK_OUTBOUND_H
#define KOTAK_OUTBOUND_H

#include <stddef.h>
#include <uv.h>

#include "committer.h"
#include "conf.h"
#include "store.h"

struct outbound;

/*
 * A runner on loop, reading the queue from reader and writing its results
 * through committer (both the daemon's, which outlive it); srs_secret
 * (SRS_SECRET_SIZE octets, the daemon's) maps a report to a forwarded
 * message's SRS sender back to the original one. Reads the
 * smarthost's password file and sets up DNS and the TLS clients. Returns
 * NULL with one sentence in err.
 */
struct outbound *outbound_new(uv_loop_t *loop, const struct conf *conf, struct store *reader,
                              struct committer *committer, const char *data_dir,
                              const uint8_t *srs_secret, char *err, size_t err_size);

/* Each delivery attempt becomes a step of its message's journey in w (the live view's ring). */
struct watch;
void outbound_set_watch(struct outbound *ob, struct watch *w);

/* Something was queued: look at the queue soon, not at the next tick. */
void outbound_kick(struct outbound *ob);

/*
 * A job of the runner's (from_queue) came back from the store thread: the
 * daemon's commit callback hands each one over.
 */
void outbound_job_done(struct outbound *ob, struct commit_job *job);

/*
 * Begins the stop: no new connection, each open one ends (QUIT when idle,
 * at once mid-message: that message stays queued and goes after the
 * restart). on_idle runs once nothing of the runner's is left open.
 */
void outbound_stop(struct outbound *ob, void (*on_idle)(void *ctx), void *ctx);

/* Connections open and look-ups under way: the stop waits for them. */
size_t outbound_busy(const struct outbound *ob);

/* Frees the runner, once stopped and idle. */
void outbound_free(struct outbound **ob);

#endif
