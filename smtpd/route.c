/*
 * route.c — RFC 5321 5.1 and RFC 7505: from a domain's MX answer to the
 * hosts to try, and from their address answers to the addresses.
 *
 * Everything here works on fixed arrays the caller owns: no allocation, no
 * I/O. The order among equal preferences comes from the caller's seed
 * through a hash, so that each host gets an independent draw and a test
 * pins it with the seed.
 */
#include "route.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

const struct route_fail route_fail_nxdomain = {true, 550, "5.1.2",
                                               "The recipient's domain does not exist in the DNS."};
const struct route_fail route_fail_mx_tempfail = {
    false, 451, "4.4.3",
    "The recipient's domain could not be looked up in the DNS for now; the delivery will be "
    "tried again."};
const struct route_fail route_fail_null_mx = {
    true, 556, "5.1.10",
    "The recipient's domain accepts no mail: it publishes a null MX record (RFC 7505)."};
const struct route_fail route_fail_loop = {
    true, 554, "5.4.6",
    "Mail for the recipient's domain loops back to this server: this server is its best mail "
    "exchanger, yet the domain is not one of its own."};
const struct route_fail route_fail_no_address = {
    true, 550, "5.4.4", "No address was found for any mail exchanger of the recipient's domain."};
const struct route_fail route_fail_addr_tempfail = {
    false, 451, "4.4.3",
    "The addresses of the recipient domain's mail exchangers could not be looked up in the DNS "
    "for now; the delivery will be tried again."};

/* Length of name without one final dot. */
static size_t name_len(const char *name)
{
    size_t n = strlen(name);
    return n > 1 && name[n - 1] == '.' ? n - 1 : n;
}

static bool same_name(const char *a, const char *b)
{
    size_t n = name_len(a);
    return n == name_len(b) && strncasecmp(a, b, n) == 0;
}

static bool is_self(const char *host, const char *const *self, size_t n_self)
{
    for (size_t i = 0; i < n_self; i++)
        if (self[i] != NULL && same_name(host, self[i]))
            return true;
    return false;
}

/* Lower case, without a final dot; name is a valid DNS name. */
static void name_copy(char dst[DNS_NAME_MAX + 1], const char *name)
{
    size_t n = name_len(name);
    for (size_t i = 0; i < n; i++)
        dst[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
    dst[n] = '\0';
}

/* A 32-bit hash with good avalanche (Chris Wellons' lowbias32). */
static uint32_t mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static const struct route_fail *plan_fail(const struct route_fail *f, struct route_plan *plan_r)
{
    plan_r->n = 0;
    plan_r->implicit = false;
    return f;
}

const struct route_fail *route_plan(const char *domain, enum dns_status status,
                                    const struct dns_mx *records, size_t n, const char *const *self,
                                    size_t n_self, uint32_t seed, struct route_plan *plan_r)
{
    plan_r->n = 0;
    plan_r->implicit = false;
    if (!dns_name_valid(domain))
        return plan_fail(&route_fail_nxdomain, plan_r);
    switch (status) {
    case DNS_NXDOMAIN:
        return plan_fail(&route_fail_nxdomain, plan_r);
    case DNS_TEMPFAIL:
    case DNS_CANCELLED:
        return plan_fail(&route_fail_mx_tempfail, plan_r);
    case DNS_NODATA:
        n = 0;
        break;
    case DNS_OK:
        break;
    }
    if (records == NULL || n == 0) {
        /* RFC 5321 5.1: no MX, the domain is its own mail exchanger. */
        plan_r->implicit = true;
        plan_r->n = 1;
        name_copy(plan_r->hosts[0].name, domain);
        plan_r->hosts[0].preference = 0;
    } else {
        uint32_t keys[DNS_MX_MAX];
        for (size_t i = 0; i < n && plan_r->n < DNS_MX_MAX; i++) {
            const char *host = records[i].host;
            if (strcmp(host, ".") == 0 || !dns_name_valid(host))
                continue; /* a null MX among real hosts: no host of its own */
            /* Insertion sort on (preference, a draw from the seed). */
            uint32_t key = mix(seed ^ mix((uint32_t)i + 0x9e3779b9U));
            size_t j = plan_r->n++;
            while (j > 0 && (plan_r->hosts[j - 1].preference > records[i].preference ||
                             (plan_r->hosts[j - 1].preference == records[i].preference &&
                              keys[j - 1] > key))) {
                plan_r->hosts[j] = plan_r->hosts[j - 1];
                keys[j] = keys[j - 1];
                j--;
            }
            name_copy(plan_r->hosts[j].name, host);
            plan_r->hosts[j].preference = records[i].preference;
            keys[j] = key;
        }
        if (plan_r->n == 0)
            return plan_fail(&route_fail_null_mx, plan_r); /* RFC 7505: "." alone */
    }
    /* RFC 5321 5.1: from the first host that is us on, nothing is better
     * than delivering here, and here is where the mail came from. The list
     * is sorted, so the first such host has the lowest such preference. */
    for (size_t i = 0; i < plan_r->n; i++) {
        if (!is_self(plan_r->hosts[i].name, self, n_self))
            continue;
        size_t keep = i;
        while (keep > 0 && plan_r->hosts[keep - 1].preference == plan_r->hosts[i].preference)
            keep--;
        plan_r->n = keep;
        break;
    }
    if (plan_r->n == 0)
        return plan_fail(&route_fail_loop, plan_r);
    return NULL;
}

static bool unspecified(const struct dns_addr *a)
{
    static const uint8_t zero[16];
    return memcmp(a->bytes, zero, a->family == AF_INET6 ? 16 : 4) == 0;
}

static bool taken(const struct route_target *t, size_t n, const struct dns_addr *a)
{
    size_t len = a->family == AF_INET6 ? 16 : 4;
    for (size_t i = 0; i < n; i++)
        if (t[i].addr.family == a->family && memcmp(t[i].addr.bytes, a->bytes, len) == 0)
            return true;
    return false;
}

const struct route_fail *route_addrs(const struct route_host_addrs *hosts, size_t n_hosts,
                                     struct route_target targets_r[ROUTE_ADDRS_MAX], size_t *n_r)
{
    size_t n = 0;
    bool temporary = false;
    for (size_t h = 0; h < n_hosts && n < ROUTE_ADDRS_MAX; h++) {
        const struct route_host_addrs *ha = &hosts[h];
        if (ha->status == DNS_TEMPFAIL || ha->status == DNS_CANCELLED)
            temporary = true;
        if (ha->status != DNS_OK || ha->addrs == NULL)
            continue;
        /* The next usable address of each family in turn, IPv6 first, until
         * both are spent. */
        size_t next[2] = {0, 0}; /* [0] IPv6, [1] IPv4: how far each has been read */
        bool spent[2] = {false, false};
        for (int fam = 0; n < ROUTE_ADDRS_MAX && !(spent[0] && spent[1]); fam ^= 1) {
            int want = fam == 0 ? AF_INET6 : AF_INET;
            const struct dns_addr *a = NULL;
            while (a == NULL && next[fam] < ha->n) {
                const struct dns_addr *c = &ha->addrs[next[fam]++];
                if (c->family == want && !unspecified(c) && !taken(targets_r, n, c))
                    a = c;
            }
            if (a == NULL) {
                spent[fam] = true;
                continue;
            }
            targets_r[n].addr = *a;
            targets_r[n].host = h;
            n++;
        }
    }
    *n_r = n;
    if (n > 0)
        return NULL;
    return temporary ? &route_fail_addr_tempfail : &route_fail_no_address;
}
