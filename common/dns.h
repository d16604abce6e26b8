/*
 * dns.h — an asynchronous DNS resolver on the event loop, for mail routing:
 * MX records of a domain, the IPv6 and IPv4 addresses of a host, and for
 * mail authentication (SPF, DKIM, DMARC) TXT records and the names of an
 * address (PTR).
 *
 * It is c-ares driven by libuv, as Node.js drives it: nothing here ever
 * blocks the loop. Every answer comes back through a callback that runs on
 * the loop, never from inside the call that asked, so a caller is never
 * re-entered. Names are looked up as given (no search domains: mail routing
 * wants the name itself, RFC 5321 5.1).
 */
#ifndef KOTAK_DNS_H
#define KOTAK_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct dns;
struct uv_loop_s; /* uv_loop_t: this header stays free of uv.h for pure callers */

/* What a look-up found. */
enum dns_status {
    DNS_OK,        /* records came back (at least one) */
    DNS_NXDOMAIN,  /* the name does not exist: permanent */
    DNS_NODATA,    /* the name exists, with no record of the type asked */
    DNS_TEMPFAIL,  /* SERVFAIL, REFUSED, a timeout, a network or format error: try later */
    DNS_CANCELLED, /* dns_free() came first */
};

#define DNS_NAME_MAX 253 /* a domain name in text, without its final dot */
#define DNS_MX_MAX 64    /* MX records kept per answer: the most preferred ones */
#define DNS_ADDRS_MAX 16 /* addresses kept per family */
#define DNS_TXT_MAX 32   /* TXT records kept per answer */
#define DNS_PTR_MAX 16   /* names kept per PTR answer */

struct dns_mx {
    uint16_t preference;
    char host[DNS_NAME_MAX + 1]; /* lower case, no final dot; "." is a null MX (RFC 7505) */
};

struct dns_addr {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t bytes[16]; /* network order; an IPv4 address in the first 4 */
};

/* dns_addrs() families, or-ed. */
#define DNS_V4 1u
#define DNS_V6 2u

/* A short lower-case name for logs: "ok", "nxdomain", "nodata", "tempfail", "cancelled". */
const char *dns_status_name(enum dns_status status);

/*
 * A resolver on loop. servers is NULL or "" for the servers (and options)
 * of /etc/resolv.conf, else [dns] servers' syntax: "ADDR:PORT,[V6ADDR]:PORT".
 * timeout_ms is the first try's time (c-ares doubles it for each round
 * through the servers), tries the number of rounds; 0 for either keeps
 * resolv.conf's value (c-ares' defaults without one: 5 s, 4 tries).
 * Start-up only: it reads /etc/resolv.conf from disk.
 * Returns the resolver, or NULL with a sentence in err.
 */
struct dns *dns_new(struct uv_loop_s *loop, const char *servers, unsigned timeout_ms,
                    unsigned tries, char *err, size_t err_size);

/*
 * Frees *d and sets it to NULL. Every query not answered yet is answered
 * DNS_CANCELLED, once, before dns_free returns; no callback of this
 * resolver runs after it. A callback may call dns_free (any query's,
 * including one of those cancellations: a second call is a no-op), and
 * dns_mx/dns_addrs called during the cancellations return -ECANCELED.
 * The handles close asynchronously: the memory goes once the loop has run
 * their close callbacks, so keep running the loop before uv_loop_close().
 * NULL or *d NULL is a no-op.
 */
void dns_free(struct dns **d);

/*
 * Asks for domain's MX records. Returns 0, and then cb runs exactly once, on
 * the loop, later (never inside dns_mx): with DNS_OK, records holds n >= 1
 * of them, sorted by preference (ties in the answer's order), valid only
 * during cb; otherwise records is NULL and n is 0. Returns -EINVAL for a
 * name that is not a domain (empty, longer than DNS_NAME_MAX, an empty or
 * 64-octet label, a character outside printable ASCII, a backslash) or
 * -ECANCELED while the resolver is being freed; cb is then never called.
 * A null MX comes back as one record with host ".".
 */
int dns_mx(struct dns *d, const char *domain,
           void (*cb)(void *ctx, enum dns_status status, const struct dns_mx *records, size_t n),
           void *ctx);

/*
 * Asks for host's AAAA and A records, as families says (DNS_V4 | DNS_V6),
 * both at once, and answers once when both are done. Returns and calls back
 * as dns_mx does. With DNS_OK, addrs holds n >= 1 addresses, the IPv6 ones
 * first, each family in the answer's order, at most DNS_ADDRS_MAX of each.
 * The status of the pair: DNS_OK when either family gave an address, else
 * DNS_TEMPFAIL when either failed for a while (a permanent verdict needs
 * both answers), else DNS_NXDOMAIN when either said the name does not
 * exist, else DNS_NODATA.
 */
int dns_addrs(struct dns *d, const char *host, unsigned families,
              void (*cb)(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n),
              void *ctx);

/*
 * Asks for name's TXT records. Returns and calls back as dns_mx does. With
 * DNS_OK, records holds n >= 1 records (at most DNS_TXT_MAX), each the
 * concatenation of its character-strings (RFC 7208 3.3, RFC 6376 3.6.2.2),
 * NUL-terminated, with its length in lens (a record holding a NUL is
 * longer than its strlen: callers that parse text should treat it as
 * malformed). Valid only during cb.
 */
int dns_txt(struct dns *d, const char *name,
            void (*cb)(void *ctx, enum dns_status status, const char *const *records,
                       const size_t *lens, size_t n),
            void *ctx);

/*
 * Asks for the names of addr (PTR, in in-addr.arpa or ip6.arpa). Returns
 * and calls back as dns_mx does. With DNS_OK, names holds n >= 1 names
 * (at most DNS_PTR_MAX), lower case, without the final dot; a name that is
 * no domain name is skipped. Valid only during cb.
 */
int dns_ptr(struct dns *d, const struct dns_addr *addr,
            void (*cb)(void *ctx, enum dns_status status, const char *const *names, size_t n),
            void *ctx);

/*
 * Calls cb on the loop, later, as a look-up's answer comes: DNS_OK, or
 * DNS_CANCELLED when dns_free comes first. For a caller whose answer is
 * known at once but must, like every answer, come from the loop. Returns
 * as dns_mx does.
 */
int dns_later(struct dns *d, void (*cb)(void *ctx, enum dns_status status), void *ctx);

/* addr with port as a socket address, ready for uv_tcp_connect. */
void dns_addr_sockaddr(const struct dns_addr *addr, uint16_t port, struct sockaddr_storage *ss_r);

/* Whether name is one dns_mx and dns_addrs accept (see dns_mx). */
bool dns_name_valid(const char *name);

#endif
