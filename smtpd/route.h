/*
 * route.h — where mail for a domain goes: the rules of RFC 5321 section 5.1
 * and RFC 7505 (null MX), from the DNS answers to the hosts to try, in
 * order, and then to the addresses to connect to.
 *
 * Pure: no I/O, no clock, no randomness of its own. The queue runner asks
 * DNS (common/dns.h) and hands the answers here; the tie-breaking among MX
 * hosts of equal preference comes from a seed the caller picks, so a test
 * can pin it.
 */
#ifndef KOTAK_ROUTE_H
#define KOTAK_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns.h"

/* Why mail for a domain cannot go anywhere now, or ever. */
struct route_fail {
    bool permanent;     /* bounce now; else try again later */
    int code;           /* the SMTP reply code a reply of ours would carry */
    const char *status; /* the enhanced status code (RFC 3463), as "5.1.10" */
    const char *text;   /* one sentence for the bounce and the log */
};

/* The failures route_plan and route_addrs return, to compare against. */
extern const struct route_fail route_fail_nxdomain;      /* 550 5.1.2 no such domain */
extern const struct route_fail route_fail_mx_tempfail;   /* 451 4.4.3 MX look-up failed */
extern const struct route_fail route_fail_null_mx;       /* 556 5.1.10 RFC 7505 */
extern const struct route_fail route_fail_loop;          /* 554 5.4.6 we are the best MX */
extern const struct route_fail route_fail_no_address;    /* 550 5.4.4 no A/AAAA anywhere */
extern const struct route_fail route_fail_addr_tempfail; /* 451 4.4.3 A/AAAA look-up failed */

struct route_host {
    char name[DNS_NAME_MAX + 1]; /* lower case, no final dot */
    uint16_t preference;
};

/* The hosts to try, best first. */
struct route_plan {
    bool implicit; /* no MX: the domain itself, preference 0 (RFC 5321 5.1) */
    size_t n;
    struct route_host hosts[DNS_MX_MAX];
};

/*
 * The hosts that mail for domain goes to, from its MX answer (status,
 * records[0..n), as dns_mx gave them) and the names that are this server
 * (self[0..n_self): its host name; IP literals may follow, compared as
 * text). Rules:
 *  - NXDOMAIN: route_fail_nxdomain; TEMPFAIL (or CANCELLED):
 *    route_fail_mx_tempfail;
 *  - NODATA (or OK with no record): the implicit MX, domain itself with
 *    preference 0;
 *  - one record whose host is "." (a null MX, RFC 7505): route_fail_null_mx.
 *    A "." among real hosts is dropped and the real ones are used;
 *  - a host that is self is dropped with every host of the same or a higher
 *    preference value (RFC 5321 5.1: "it MUST discard that and all
 *    less-preferred"); when none is left: route_fail_loop;
 *  - the rest sorted by preference, equal preferences in an order drawn
 *    from seed (RFC 5321 5.1 asks for a random one: spread the load).
 * Names compare without regard to case or a final dot. A domain that is
 * not a DNS name (dns_name_valid) cannot exist: route_fail_nxdomain.
 * Returns NULL with *plan_r filled, or a failure (*plan_r then has n 0).
 */
const struct route_fail *route_plan(const char *domain, enum dns_status status,
                                    const struct dns_mx *records, size_t n, const char *const *self,
                                    size_t n_self, uint32_t seed, struct route_plan *plan_r);

/* The most addresses tried for one domain, over all its hosts (Postfix's
 * smtp_mx_address_limit is 5 too). */
#define ROUTE_ADDRS_MAX 5

/* One host's address answer (as dns_addrs gave it), in the plan's order. */
struct route_host_addrs {
    enum dns_status status;
    const struct dns_addr *addrs;
    size_t n;
};

/* An address to connect to, and which host of the plan it belongs to. */
struct route_target {
    struct dns_addr addr;
    size_t host; /* index into the plan's hosts */
};

/*
 * The addresses to try, in order, from each host's answer, hosts[0..n_hosts)
 * in the plan's order: host by host, and within a host IPv6 and IPv4 in
 * turn, IPv6 first (RFC 8305's interleaving: a host whose IPv6 is broken
 * still gets its IPv4 tried early), each family in the answer's order. An
 * address is taken once even when several hosts have it; an unspecified
 * one (0.0.0.0, ::) is no host's and is skipped. At most ROUTE_ADDRS_MAX.
 * Returns NULL with targets_r[0..*n_r), *n_r >= 1; or, with no address,
 * route_fail_addr_tempfail when a look-up failed for a while (TEMPFAIL or
 * CANCELLED), else route_fail_no_address.
 */
const struct route_fail *route_addrs(const struct route_host_addrs *hosts, size_t n_hosts,
                                     struct route_target targets_r[ROUTE_ADDRS_MAX], size_t *n_r);

#endif
