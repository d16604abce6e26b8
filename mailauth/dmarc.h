/*
 * dmarc.h — Domain-based Message Authentication, Reporting and
 * Conformance (RFC 7489): does the domain a reader sees in From: stand
 * behind this message? It does when SPF or DKIM passed for a domain that
 * is aligned with it (the same, or under the same Organizational Domain),
 * and its owner's DNS record says what to do with a message that fails.
 *
 * The parsers (the From: domain, the record) and the verdict are pure,
 * and exposed for the unit tests; the check asks DNS for the policy on
 * the event loop through the asynchronous resolver (common/dns.h).
 * Reports (rua=, ruf=) are not sent: kotak only reads the policy.
 */
#ifndef KOTAK_DMARC_H
#define KOTAK_DMARC_H

#include <stdbool.h>
#include <stddef.h>

#include "dkim.h"
#include "dns.h"
#include "psl.h"
#include "spf.h"

/* RFC 7489 11.2's words (RFC 8601 2.7). */
enum dmarc_result {
    DMARC_NONE,      /* no usable policy record: DMARC does not apply */
    DMARC_PASS,      /* SPF or DKIM passed for an aligned domain */
    DMARC_FAIL,      /* a record, and neither did */
    DMARC_TEMPERROR, /* DNS failed for a while: the policy is unknown */
    DMARC_PERMERROR, /* no usable From: domain to check */
};

/* What a record asks for a message that fails (p=, sp=). */
enum dmarc_policy {
    DMARC_POLICY_NONE,
    DMARC_POLICY_QUARANTINE,
    DMARC_POLICY_REJECT,
};

/* "none", "pass", "fail", "temperror", "permerror". */
const char *dmarc_result_name(enum dmarc_result r);
/* "none", "quarantine", "reject". */
const char *dmarc_policy_name(enum dmarc_policy p);

/* What a check found. */
struct dmarc_outcome {
    enum dmarc_result result;
    enum dmarc_policy policy; /* what the record asks of a failing message: p=, or sp= */
    enum dmarc_policy
        applied;           /* what to do with this one: policy after pct= on a fail, else none */
    bool subdomain_policy; /* policy came from sp= (or p= standing in for it) */
    unsigned pct;          /* the record's pct= (100 without one) */
    char from_domain[DNS_NAME_MAX + 1];   /* the RFC5322.From domain, lower case */
    char policy_domain[DNS_NAME_MAX + 1]; /* where the record was found, "" for none */
    bool spf_aligned, dkim_aligned;
    /* The d= of an aligned passing signature; else of the first passing one; else "". */
    char dkim_domain[DNS_NAME_MAX + 1];
    char why[160]; /* a sentence for logs and comments */
};

/* --- pure parts ----------------------------------------------------------- */

/*
 * The RFC5322.From domain of a header section hdr[0..len) (fields with
 * CRLF or LF line ends, folded or not, as dkim_verify_header returns it;
 * an empty line, if any, ends it). Returns 1 with the domain in out, in
 * lower case; 0 when there is no From: field; DMARC_FROM_SEVERAL (-2)
 * when there are several From: fields or addresses in more than one
 * domain (several in one domain are checked as that domain, RFC 7489
 * 6.6.1); -1 when the field holds no address or one that cannot be read
 * (bad syntax, a domain literal, a non-ASCII domain). Display names, quoted strings, comments,
 * obsolete routes and group syntax (RFC 6854) are understood. Linear in
 * len, no allocation.
 */
#define DMARC_FROM_SEVERAL (-2)
int dmarc_from_domain(const char *hdr, size_t len, char out[DNS_NAME_MAX + 1]);

/* A policy record, as RFC 7489 6.3 reads it. */
struct dmarc_record {
    enum dmarc_policy p, sp; /* sp is p when the record has no sp= */
    bool sp_given;
    bool adkim_strict, aspf_strict; /* adkim=s, aspf=s; relaxed by default */
    unsigned pct;                   /* 0..100, 100 by default */
    bool p_from_rua; /* p= (or sp=) missing or bad but rua= present: read as p=none (6.6.3) */
};

/*
 * Reads one TXT record txt[0..len). Returns 1 with the policy in *r_r; 0
 * when it is no DMARC record (it does not begin with v=DMARC1, or holds a
 * NUL); -1 when it is one that cannot be used: no valid p=, or a bad sp=,
 * and no valid rua= to save it (RFC 7489 6.6.3 step 6). Unknown tags are
 * ignored, a bad adkim=, aspf= or pct= takes the default, and the first of
 * a repeated tag counts.
 */
int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r_r);

/*
 * Whether an authenticated domain is aligned with the From domain (RFC
 * 7489 3.1): strict, the same name; relaxed, the same Organizational
 * Domain. Case and a final dot do not matter; an empty name is never.
 */
bool dmarc_aligned(const struct psl *psl, const char *from_domain, const char *domain, bool strict);

/*
 * The policy to apply to a failing message under pct= (RFC 7489 6.6.4):
 * policy for roll < pct (roll is uniform in 0..99), else one level less
 * strict (reject -> quarantine, quarantine -> none).
 */
enum dmarc_policy dmarc_sampled_policy(enum dmarc_policy policy, unsigned pct, unsigned roll);

/*
 * The verdict on a message whose From domain has the record rec, found at
 * _dmarc.policy_domain; use_sp when that is the Organizational Domain and
 * the From domain is below it. spf may be NULL (not checked). SPF counts
 * when it passed, for the MAIL FROM identity; with MAIL FROM <> that is
 * postmaster@HELO (RFC 7489 4.1, RFC 7208 2.4), so spf->helo counts too.
 * DKIM counts for any passing signature. roll as for dmarc_sampled_policy.
 * Fills all of *o.
 */
void dmarc_evaluate(const struct psl *psl, const char *from_domain, const char *policy_domain,
                    const struct dmarc_record *rec, bool use_sp, const struct spf_outcome *spf,
                    const struct dkim_result *dkim, size_t n_dkim, unsigned roll,
                    struct dmarc_outcome *o);

/*
 * The outcome for a message whose From: cannot be checked: rc is what
 * dmarc_from_domain returned (0 or -1), or 1 for a domain that
 * dmarc_check_start refused. No From: field at all is none: such a
 * message is not for DMARC to judge (RFC 7489 6.6.1), and 11.2's none
 * covers "no aligned identifier could be extracted". Several From:
 * fields, several domains or one that cannot be read are permerror: the
 * message itself is malformed in the way 6.6.1 names as abusive, and
 * permerror lets the receiver's policy tell it from mail without DMARC.
 * why says which.
 */
void dmarc_outcome_unusable(int rc, const char *from_domain, struct dmarc_outcome *o);

/* --- the check, on the loop ----------------------------------------------- */

struct dmarc_check;

/*
 * Looks up the policy of from_domain (RFC 7489 6.6.3: _dmarc.FROM, else
 * _dmarc.ORG) and judges the message by spf and the n_dkim verdicts in
 * dkim (both copied; spf may be NULL). cb runs exactly once, on the loop,
 * never inside this call; o is valid during cb only; the check frees
 * itself when cb returns, so forget the pointer there (calling
 * dmarc_check_cancel on it inside cb is allowed and does nothing more).
 * psl must outlive the check. Returns NULL (cb never runs) when
 * from_domain is no domain name whose policy can be asked for, or when
 * the resolver is being freed: see dmarc_outcome_unusable.
 */
struct dmarc_check *dmarc_check_start(struct dns *dns, const struct psl *psl,
                                      const char *from_domain, const struct spf_outcome *spf,
                                      const struct dkim_result *dkim, size_t n_dkim,
                                      void (*cb)(void *ctx, const struct dmarc_outcome *o),
                                      void *ctx);

/*
 * Stops a check before its cb: cb never runs. Safe with a DNS question
 * out (the check waits, detached, for the answer and frees itself then)
 * and while the resolver is being freed. Sets *c to NULL; NULL is a no-op.
 */
void dmarc_check_cancel(struct dmarc_check **c);

#endif
