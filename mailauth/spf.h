/*
 * spf.h — Sender Policy Framework (RFC 7208): may this IP address send
 * mail for this domain? Asked by kotak-smtpd's MX of every sender, and by
 * `kotak check spf`.
 *
 * The check runs on the event loop, its DNS questions through the
 * asynchronous resolver (common/dns.h), within RFC 7208 4.6.4's limits:
 * ten mechanisms or modifiers that ask DNS, two that find nothing (void
 * look-ups). The record parser and macro expander underneath are pure
 * (no I/O, no allocation), declared at the end of this file for the tests
 * and the fuzz target.
 */
#ifndef KOTAK_SPF_H
#define KOTAK_SPF_H

#include <stdbool.h>
#include <stddef.h>

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
    bool helo;                     /* the identity checked was the HELO name (MAIL FROM <>) */
    char domain[DNS_NAME_MAX + 1]; /* the domain checked: MAIL FROM's, or HELO's */
    char why[160];                 /* for logs and Authentication-Results comments */
};

struct spf_check;

/*
 * Checks ip (IPv4 or IPv6 text; an IPv4-mapped IPv6 address counts as the
 * IPv4 address) for sender (MAIL FROM without its angle brackets, "" for
 * <>: then postmaster@helo, RFC 7208 2.4) and helo (may be ""). cb runs
 * exactly once, on the loop, never inside this call; o is valid during cb
 * only, and the check is gone once cb returns (do not cancel it then).
 * Returns NULL (cb never runs) only when ip is no IP address, or when the
 * resolver is being freed (inside dns_free's cancellations).
 *
 * A sender whose domain cannot be checked (no domain name with at least two
 * labels: an address literal, "localhost", a name too long) is SPF_NONE
 * (RFC 7208 4.3). That answer, too, comes from the loop; since the resolver
 * is all this module sees of the loop, it waits for one DNS question (the
 * PTR of ip), whose answer it ignores.
 *
 * The %{p} macro expands to "unknown" (RFC 7208 7.3 allows it): a PTR
 * look-up and its validation for a macro that RFC 7208 itself advises
 * against would cost up to eleven look-ups for nothing reliable. The "ptr"
 * mechanism is evaluated (5.5), and exp= is never looked up: its text is
 * not used. Void look-ups (4.6.4) are counted for a, mx and exists (their
 * first query; the addresses of the MX hosts do not count).
 */
struct spf_check *spf_check_start(struct dns *dns, const char *ip, const char *sender,
                                  const char *helo,
                                  void (*cb)(void *ctx, const struct spf_outcome *o), void *ctx);

/*
 * Stops a check: cb never runs afterwards. Safe while DNS questions are
 * out (the check then waits, detached, for their answers before its memory
 * goes). Sets *c to NULL; NULL or *c NULL is a no-op.
 */
void spf_check_cancel(struct spf_check **c);

/* --- the pure parts: records, macros, addresses ----------------------- */

#define SPF_RECORD_MAX 4096  /* octets; a longer record is a permerror */
#define SPF_LOOKUPS_MAX 10   /* include a mx ptr exists redirect, RFC 7208 4.6.4 */
#define SPF_VOIDS_MAX 2      /* void look-ups, RFC 7208 4.6.4 */
#define SPF_MX_NAMES_MAX 10  /* more MX names is a permerror (4.6.4) */
#define SPF_PTR_NAMES_MAX 10 /* PTR names beyond these are ignored (4.6.4) */
#define SPF_EXPAND_MAX 2048  /* a macro-string's expansion, before truncation to a name */
#define SPF_SENDER_MAX 512   /* a longer sender is not checked (none) */

enum spf_term_kind {
    SPF_TERM_ALL,
    SPF_TERM_INCLUDE,
    SPF_TERM_A,
    SPF_TERM_MX,
    SPF_TERM_PTR,
    SPF_TERM_IP4,
    SPF_TERM_IP6,
    SPF_TERM_EXISTS,
    SPF_TERM_REDIRECT, /* modifier redirect= */
    SPF_TERM_EXP,      /* modifier exp= */
    SPF_TERM_UNKNOWN,  /* any other modifier: ignored (RFC 7208 6) */
};

/* One term of a record, as spf_term_next() reads it. */
struct spf_term {
    enum spf_term_kind kind;
    enum spf_result qualifier; /* what a match gives: PASS (+, the default), FAIL (-),
                                  SOFTFAIL (~), NEUTRAL (?) */
    const char *spec;          /* the domain-spec (a modifier's value), borrowed from the
                                  record; NULL when the term has none */
    size_t spec_len;
    struct dns_addr net; /* ip4: and ip6: network */
    unsigned cidr4;      /* prefix lengths: 32 and 128 unless the term gives them */
    unsigned cidr6;
};

/* Facts about a whole record that spf_record_check() found valid. */
struct spf_record_info {
    size_t terms;         /* how many */
    const char *redirect; /* redirect='s domain-spec, borrowed; NULL when there is none */
    size_t redirect_len;
};

/*
 * Whether txt (len octets) is an SPF record: "v=spf1" (any case) followed
 * by a space or its end (RFC 7208 4.5). Other TXT records are discarded.
 */
bool spf_record_is_spf(const char *txt, size_t len);

/*
 * Reads the term of rec (len octets) after *pos (0: the record's start,
 * whose version it checks and skips). Returns 1 with the term in *t and
 * *pos moved past it, 0 at the record's end, -EINVAL for a syntax error
 * (RFC 7208 4.6.1, 5, 6, 7.1, 12) with a short phrase in *why_r. t borrows
 * from rec.
 */
int spf_term_next(const char *rec, size_t len, size_t *pos, struct spf_term *t, const char **why_r);

/*
 * Checks a whole record: its length (SPF_RECORD_MAX), no NUL octet, each
 * term, at most one redirect= and one exp=. Returns 0 with info_r filled,
 * or -EINVAL with a short phrase in *why_r: any error makes the record's
 * check a permerror (RFC 7208 4.6), before any term is evaluated.
 */
int spf_record_check(const char *rec, size_t len, struct spf_record_info *info_r,
                     const char **why_r);

/* What macros expand to (RFC 7208 7.3). */
struct spf_macro_env {
    const char *sender; /* s; l and o are its parts around the last "@" */
    const char *domain; /* d: the domain being checked now */
    const char *helo;   /* h */
    const char *ptr;    /* p; NULL: "unknown" */
    struct dns_addr ip; /* i and v */
};

/*
 * Expands the macro-string spec (len octets) into out (out_size octets,
 * NUL-terminated), its length in *len_r. exp_letters allows c, r and t,
 * which only explanation text may hold (7.3); kotak never expands such
 * text, so c, r and t expand to nothing. Returns 0, -EINVAL for a syntax
 * error, -E2BIG when the expansion does not fit.
 */
int spf_macro_expand(const char *spec, size_t len, const struct spf_macro_env *env,
                     bool exp_letters, char *out, size_t out_size, size_t *len_r);

/*
 * A domain-spec's expansion as a name to look up: its final dot dropped,
 * labels removed from the left until it is at most DNS_NAME_MAX octets
 * (7.3). Returns 0, -EINVAL (syntax), -E2BIG (longer than SPF_EXPAND_MAX
 * before truncation, or no label short enough to keep). The name may still
 * be no valid DNS name (an empty label): callers check dns_name_valid().
 */
int spf_expand_domain(const char *spec, size_t len, const struct spf_macro_env *env,
                      char out[DNS_NAME_MAX + 1]);

/* Whether spec (len octets) is a domain-spec (RFC 7208 7.1, 12). */
bool spf_domain_spec_valid(const char *spec, size_t len);

/*
 * Reads an IPv4 or IPv6 address in text; an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, RFC 4291 2.5.5.2) becomes the IPv4 one, so that ip4
 * mechanisms and %{i} see the client as it is. Returns whether it was one.
 */
bool spf_ip_parse(const char *text, struct dns_addr *ip_r);

/* Whether ip lies in net/prefix: same family, the first prefix bits equal. */
bool spf_cidr_match(const struct dns_addr *ip, const struct dns_addr *net, unsigned prefix);

#endif
