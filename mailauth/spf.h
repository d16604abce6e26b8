/*
 * spf.h — Sender Policy Framework (RFC 7208): may this IP address send
 * mail for this domain? Asked by kotak-smtpd's MX of every sender, and by
 * `kotak check spf`.
 *
 * The check runs on the event loop, its DNS questions through the
 * asynchronous resolver (common/dns.h), within RFC 7208 4.6.4's limits:
 * ten mechanisms or modifiers that ask DNS, two that find nothing (void
 * look-ups). The record parser and macro expander underneath are pure.
 */
#ifndef KOTAK_SPF_H
#define KOTAK_SPF_H

#include <stdbool.h>

#include "dns.h"

/* RFC 7208 2.6, in the words of RFC 8601 2.7.2. */
enum spf_result {
    SPF_NONE,
    SPF_NEUTRAL,
    SPF_PASS,
    SPF_FAIL,
    SPF_SOFTFAIL,
    SPF_TEMPERROR,
    SPF_PERMERROR,
};

/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror". */
const char *spf_result_name(enum spf_result r);

/* What a check found. */
struct spf_outcome {
    enum spf_result result;
    bool helo;                    /* the identity checked was the HELO name (MAIL FROM <>) */
    char domain[DNS_NAME_MAX + 1]; /* the domain checked: MAIL FROM's, or HELO's */
    char why[160];                /* for logs and Authentication-Results comments */
};

struct spf_check;

/*
 * Checks ip (IPv4 or IPv6 text) for sender (MAIL FROM, "" for <>: then
 * postmaster@helo, RFC 7208 2.4) and helo (may be ""). cb runs exactly
 * once, on the loop, never inside this call; o is valid during cb only.
 * Returns NULL (cb never runs) only when ip is no IP address.
 */
struct spf_check *spf_check_start(struct dns *dns, const char *ip, const char *sender,
                                  const char *helo,
                                  void (*cb)(void *ctx, const struct spf_outcome *o), void *ctx);

/* Stops a check: cb never runs afterwards. Safe while DNS questions are out. NULL is a no-op. */
void spf_check_cancel(struct spf_check **c);

#endif
