/*
 * test_route.c — RFC 5321 5.1 and RFC 7505 routing (smtpd/route.h), in
 * tables: route_plan from an MX answer to the hosts to try (sorting, ties
 * under two seeds, null MX, the implicit MX, ourselves among the hosts,
 * NXDOMAIN, TEMPFAIL), then route_addrs from the hosts' address answers to
 * at most five addresses (IPv6 and IPv4 in turn, each once, the failures).
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "route.h"
#include "tap.h"

#define MXS_MAX 8

/* --- route_plan --------------------------------------------------------- */

struct plan_case {
    const char *name;
    const char *domain;
    enum dns_status status;
    struct dns_mx mx[MXS_MAX];
    size_t n;
    const char *self[3];
    uint32_t seed;
    const struct route_fail *fail; /* NULL: want hosts */
    const char *hosts;             /* "pref:host pref:host ..." */
    bool implicit;
};

static const char *const me[] = {"mail.kotak.test"};

static const struct plan_case plan_cases[] = {
    {"sorted by preference",
     "example.test",
     DNS_OK,
     {{20, "b.example.test"}, {10, "a.example.test"}, {30, "c.example.test"}},
     3,
     {"mail.kotak.test"},
     1,
     NULL,
     "10:a.example.test 20:b.example.test 30:c.example.test",
     false},
    {"one MX",
     "example.test",
     DNS_OK,
     {{5, "MX.Example.TEST."}},
     1,
     {"mail.kotak.test"},
     1,
     NULL,
     "5:mx.example.test",
     false},
    /* Ties: the order is the seed's; the tests below check it changes. */
    {"ties, seed 1",
     "example.test",
     DNS_OK,
     {{10, "a"}, {10, "b"}, {10, "c"}, {10, "d"}, {20, "e"}, {5, "z"}},
     6,
     {NULL},
     1,
     NULL,
     "5:z 10:d 10:c 10:b 10:a 20:e",
     false},
    {"ties, seed 2",
     "example.test",
     DNS_OK,
     {{10, "a"}, {10, "b"}, {10, "c"}, {10, "d"}, {20, "e"}, {5, "z"}},
     6,
     {NULL},
     2,
     NULL,
     "5:z 10:a 10:d 10:c 10:b 20:e",
     false},
    {"null MX",
     "nomail.test",
     DNS_OK,
     {{0, "."}},
     1,
     {"mail.kotak.test"},
     1,
     &route_fail_null_mx,
     NULL,
     false},
    {"null MX with a preference other than 0",
     "nomail.test",
     DNS_OK,
     {{10, "."}},
     1,
     {NULL},
     1,
     &route_fail_null_mx,
     NULL,
     false},
    {"two null MX",
     "nomail.test",
     DNS_OK,
     {{0, "."}, {0, "."}},
     2,
     {NULL},
     1,
     &route_fail_null_mx,
     NULL,
     false},
    {"a null MX among real hosts is dropped",
     "mixed.test",
     DNS_OK,
     {{0, "."}, {10, "mx.mixed.test"}},
     2,
     {NULL},
     1,
     NULL,
     "10:mx.mixed.test",
     false},
    {"no MX: the implicit MX",
     "Example.ORG.",
     DNS_NODATA,
     {{0, ""}},
     0,
     {"mail.kotak.test"},
     1,
     NULL,
     "0:example.org",
     true},
    {"OK with no record: the implicit MX",
     "example.org",
     DNS_OK,
     {{0, ""}},
     0,
     {NULL},
     1,
     NULL,
     "0:example.org",
     true},
    {"NODATA ignores stray records",
     "example.org",
     DNS_NODATA,
     {{10, "x.example.org"}},
     1,
     {NULL},
     1,
     NULL,
     "0:example.org",
     true},
    {"ourselves in the middle",
     "example.test",
     DNS_OK,
     {{30, "c.example.test"},
      {20, "mail.kotak.test"},
      {10, "a.example.test"},
      {20, "b.example.test"}},
     4,
     {"mail.kotak.test"},
     1,
     NULL,
     "10:a.example.test",
     false},
    {"ourselves in the middle, in capitals with a dot",
     "example.test",
     DNS_OK,
     {{10, "a.example.test"}, {10, "b.example.test"}, {20, "mail.kotak.test"}},
     3,
     {"192.0.2.25", "MAIL.KOTAK.TEST."},
     7,
     NULL,
     "10:b.example.test 10:a.example.test",
     false},
    {"ourselves last",
     "example.test",
     DNS_OK,
     {{10, "a.example.test"}, {50, "mail.kotak.test"}},
     2,
     {"mail.kotak.test"},
     1,
     NULL,
     "10:a.example.test",
     false},
    {"ourselves the best MX",
     "example.test",
     DNS_OK,
     {{10, "mail.kotak.test"}, {20, "b.example.test"}},
     2,
     {"mail.kotak.test"},
     1,
     &route_fail_loop,
     NULL,
     false},
    {"ourselves tied for best",
     "example.test",
     DNS_OK,
     {{10, "x.example.test"}, {10, "mail.kotak.test"}, {20, "b.example.test"}},
     3,
     {"mail.kotak.test"},
     1,
     &route_fail_loop,
     NULL,
     false},
    {"ourselves the implicit MX",
     "mail.kotak.test",
     DNS_NODATA,
     {{0, ""}},
     0,
     {"mail.kotak.test"},
     1,
     &route_fail_loop,
     NULL,
     false},
    {"an IP literal that is ourselves",
     "example.test",
     DNS_OK,
     {{10, "a.example.test"}, {20, "192.0.2.25"}},
     2,
     {"mail.kotak.test", "192.0.2.25"},
     1,
     NULL,
     "10:a.example.test",
     false},
    {"a name that only starts like ours",
     "example.test",
     DNS_OK,
     {{10, "mail.kotak.test.example"}},
     1,
     {"mail.kotak.test"},
     1,
     NULL,
     "10:mail.kotak.test.example",
     false},
    {"NXDOMAIN",
     "nosuch.test",
     DNS_NXDOMAIN,
     {{0, ""}},
     0,
     {NULL},
     1,
     &route_fail_nxdomain,
     NULL,
     false},
    {"TEMPFAIL",
     "broken.test",
     DNS_TEMPFAIL,
     {{0, ""}},
     0,
     {NULL},
     1,
     &route_fail_mx_tempfail,
     NULL,
     false},
    {"CANCELLED",
     "example.test",
     DNS_CANCELLED,
     {{0, ""}},
     0,
     {NULL},
     1,
     &route_fail_mx_tempfail,
     NULL,
     false},
    {"a domain that is no name",
     "a..test",
     DNS_NODATA,
     {{0, ""}},
     0,
     {NULL},
     1,
     &route_fail_nxdomain,
     NULL,
     false},
};

/* The plan as "pref:host pref:host". */
static void plan_text(const struct route_plan *p, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < p->n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%u:%s", i ? " " : "",
                                (unsigned)p->hosts[i].preference, p->hosts[i].name);
}

static size_t count_self(const char *const self[3])
{
    size_t n = 0;
    while (n < 3 && self[n] != NULL)
        n++;
    return n;
}

static void test_plan_table(void)
{
    static struct route_plan plan;
    for (size_t i = 0; i < sizeof(plan_cases) / sizeof(plan_cases[0]); i++) {
        const struct plan_case *c = &plan_cases[i];
        memset(&plan, 0xa5, sizeof(plan));
        const struct route_fail *f = route_plan(c->domain, c->status, c->n ? c->mx : NULL, c->n,
                                                c->self, count_self(c->self), c->seed, &plan);
        if (c->fail != NULL) {
            ok(f == c->fail, "%s: fails with %s", c->name, c->fail->status);
            if (f != c->fail)
                printf("#   got %s\n", f ? f->status : "hosts");
            is_int(plan.n, 0, "%s: no hosts", c->name);
            continue;
        }
        ok(f == NULL, "%s: hosts to try", c->name);
        if (f != NULL)
            printf("#   failed with %s %s\n", f->status, f->text);
        char got[512];
        plan_text(&plan, got, sizeof(got));
        is_str(got, c->hosts, "%s: the hosts in order", c->name);
        is_int(plan.implicit, c->implicit, "%s: implicit %s", c->name, c->implicit ? "yes" : "no");
    }
}

static void test_plan_ties(void)
{
    static const struct dns_mx mx[] = {{10, "a"}, {10, "b"}, {10, "c"}, {10, "d"}, {20, "e"}};
    static struct route_plan p1, p2, again;
    char t1[256], t2[256], t3[256];
    route_plan("example.test", DNS_OK, mx, 5, NULL, 0, 1, &p1);
    route_plan("example.test", DNS_OK, mx, 5, NULL, 0, 2, &p2);
    route_plan("example.test", DNS_OK, mx, 5, NULL, 0, 1, &again);
    plan_text(&p1, t1, sizeof t1);
    plan_text(&p2, t2, sizeof t2);
    plan_text(&again, t3, sizeof t3);
    ok(strcmp(t1, t2) != 0, "ties: seeds 1 and 2 give different orders (%s | %s)", t1, t2);
    is_str(t3, t1, "ties: the same seed, the same order");

    /* Over many seeds, each of four equal hosts comes first about a
     * quarter of the time: the order is drawn, not fixed. */
    int first[4] = {0};
    for (uint32_t seed = 0; seed < 4000; seed++) {
        route_plan("example.test", DNS_OK, mx, 5, NULL, 0, seed, &p1);
        first[p1.hosts[0].name[0] - 'a']++;
        if (strcmp(p1.hosts[4].name, "e") != 0) {
            ok(0, "ties: the less preferred host stays last (seed %u)", (unsigned)seed);
            return;
        }
    }
    ok(1, "ties: the less preferred host stays last under 4000 seeds");
    for (int i = 0; i < 4; i++)
        ok(first[i] > 700 && first[i] < 1300, "ties: host %c first %d times in 4000", 'a' + i,
           first[i]);
}

static void test_plan_bounds(void)
{
    static struct dns_mx mx[DNS_MX_MAX];
    static struct route_plan p;
    for (size_t i = 0; i < DNS_MX_MAX; i++) {
        snprintf(mx[i].host, sizeof(mx[i].host), "mx%zu.example.test", i);
        mx[i].preference = (uint16_t)(DNS_MX_MAX - i);
    }
    ok(route_plan("example.test", DNS_OK, mx, DNS_MX_MAX, me, 1, 3, &p) == NULL, "64 MX: planned");
    is_int(p.n, DNS_MX_MAX, "64 MX: all kept");
    bool sorted = true;
    for (size_t i = 1; i < p.n; i++)
        sorted &= p.hosts[i - 1].preference < p.hosts[i].preference;
    ok(sorted, "64 MX: sorted");

    char name[DNS_NAME_MAX + 2];
    memset(name, 'a', sizeof(name));
    for (int i = 63; i < DNS_NAME_MAX; i += 64)
        name[i] = '.';
    name[DNS_NAME_MAX] = '.';
    name[DNS_NAME_MAX + 1] = '\0';
    ok(route_plan(name, DNS_NODATA, NULL, 0, me, 1, 3, &p) == NULL,
       "a 253-octet domain with a final dot: implicit MX");
    is_int(strlen(p.hosts[0].name), DNS_NAME_MAX, "... kept whole, without the dot");

    const struct route_fail *f = &route_fail_null_mx;
    ok(f->permanent && f->code == 556 && strcmp(f->status, "5.1.10") == 0,
       "null MX: 556 5.1.10, permanent");
    f = &route_fail_nxdomain;
    ok(f->permanent && f->code == 550 && strcmp(f->status, "5.1.2") == 0,
       "NXDOMAIN: 550 5.1.2, permanent");
    f = &route_fail_mx_tempfail;
    ok(!f->permanent && f->code == 451 && strcmp(f->status, "4.4.3") == 0,
       "MX TEMPFAIL: 451 4.4.3, temporary");
    f = &route_fail_loop;
    ok(f->permanent && strcmp(f->status, "5.4.6") == 0, "loop: 5.4.6, permanent");
    f = &route_fail_no_address;
    ok(f->permanent && strcmp(f->status, "5.4.4") == 0, "no address: 5.4.4, permanent");
    f = &route_fail_addr_tempfail;
    ok(!f->permanent && strcmp(f->status, "4.4.3") == 0, "address TEMPFAIL: 4.4.3, temporary");
    ok(strstr(route_fail_null_mx.text, "accepts no mail") != NULL &&
           strstr(route_fail_loop.text, "loops back") != NULL &&
           strstr(route_fail_nxdomain.text, "does not exist") != NULL,
       "the sentences say what happened");
}

/* --- route_addrs -------------------------------------------------------- */

#define ADDRS_MAX 8
#define HOSTS_MAX 4

struct host_case {
    enum dns_status status;
    const char *addrs[ADDRS_MAX];
};

struct addrs_case {
    const char *name;
    struct host_case hosts[HOSTS_MAX];
    size_t n_hosts;
    const struct route_fail *fail;
    const char *want; /* "host:addr host:addr" */
};

static const struct addrs_case addrs_cases[] = {
    {"IPv6 and IPv4 in turn, IPv6 first",
     {{DNS_OK, {"2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"}}},
     1,
     NULL,
     "0:2001:db8::1 0:192.0.2.1 0:2001:db8::2 0:192.0.2.2"},
    {"IPv4 listed first still goes second",
     {{DNS_OK, {"192.0.2.1", "2001:db8::1", "192.0.2.2"}}},
     1,
     NULL,
     "0:2001:db8::1 0:192.0.2.1 0:192.0.2.2"},
    {"one family only", {{DNS_OK, {"192.0.2.1", "192.0.2.2"}}}, 1, NULL, "0:192.0.2.1 0:192.0.2.2"},
    {"hosts in the plan's order",
     {{DNS_OK, {"192.0.2.1"}}, {DNS_OK, {"2001:db8::9", "198.51.100.1"}}},
     2,
     NULL,
     "0:192.0.2.1 1:2001:db8::9 1:198.51.100.1"},
    {"five at most",
     {{DNS_OK, {"192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1"}},
      {DNS_OK, {"198.51.100.1", "198.51.100.2"}},
      {DNS_OK, {"203.0.113.1"}}},
     3,
     NULL,
     "0:2001:db8::1 0:192.0.2.1 0:192.0.2.2 0:192.0.2.3 1:198.51.100.1"},
    {"six IPv6 and six IPv4: five, in turn",
     {{DNS_OK,
       {"2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::4", "192.0.2.1", "192.0.2.2",
        "192.0.2.3", "192.0.2.4"}}},
     1,
     NULL,
     "0:2001:db8::1 0:192.0.2.1 0:2001:db8::2 0:192.0.2.2 0:2001:db8::3"},
    {"each address once",
     {{DNS_OK, {"192.0.2.1", "192.0.2.1"}}, {DNS_OK, {"192.0.2.1", "192.0.2.2"}}},
     2,
     NULL,
     "0:192.0.2.1 1:192.0.2.2"},
    {"an unspecified address is skipped",
     {{DNS_OK, {"0.0.0.0", "::"}}, {DNS_OK, {"192.0.2.5"}}},
     2,
     NULL,
     "1:192.0.2.5"},
    {"a host that fails for a while is passed over",
     {{DNS_TEMPFAIL, {NULL}}, {DNS_OK, {"192.0.2.7"}}},
     2,
     NULL,
     "1:192.0.2.7"},
    {"a host with no address is passed over",
     {{DNS_NXDOMAIN, {NULL}}, {DNS_NODATA, {NULL}}, {DNS_OK, {"2001:db8::7"}}},
     3,
     NULL,
     "2:2001:db8::7"},
    {"no address anywhere",
     {{DNS_NXDOMAIN, {NULL}}, {DNS_NODATA, {NULL}}},
     2,
     &route_fail_no_address,
     NULL},
    {"only unspecified addresses", {{DNS_OK, {"0.0.0.0"}}}, 1, &route_fail_no_address, NULL},
    {"no address, one look-up failed for a while",
     {{DNS_NXDOMAIN, {NULL}}, {DNS_TEMPFAIL, {NULL}}, {DNS_NODATA, {NULL}}},
     3,
     &route_fail_addr_tempfail,
     NULL},
    {"no address, cancelled", {{DNS_CANCELLED, {NULL}}}, 1, &route_fail_addr_tempfail, NULL},
    {"no host at all", {{DNS_OK, {NULL}}}, 0, &route_fail_no_address, NULL},
};

static void test_addrs_table(void)
{
    for (size_t i = 0; i < sizeof(addrs_cases) / sizeof(addrs_cases[0]); i++) {
        const struct addrs_case *c = &addrs_cases[i];
        struct dns_addr addrs[HOSTS_MAX][ADDRS_MAX];
        struct route_host_addrs hosts[HOSTS_MAX];
        for (size_t h = 0; h < c->n_hosts; h++) {
            size_t n = 0;
            for (; n < ADDRS_MAX && c->hosts[h].addrs[n] != NULL; n++) {
                const char *text = c->hosts[h].addrs[n];
                memset(&addrs[h][n], 0, sizeof(addrs[h][n]));
                addrs[h][n].family = strchr(text, ':') ? AF_INET6 : AF_INET;
                inet_pton(addrs[h][n].family, text, addrs[h][n].bytes);
            }
            hosts[h].status = c->hosts[h].status;
            hosts[h].addrs = n ? addrs[h] : NULL;
            hosts[h].n = n;
        }
        struct route_target t[ROUTE_ADDRS_MAX];
        size_t n = 99;
        const struct route_fail *f = route_addrs(hosts, c->n_hosts, t, &n);
        if (c->fail != NULL) {
            ok(f == c->fail, "%s: fails with %s", c->name, c->fail->status);
            if (f != c->fail)
                printf("#   got %s\n", f ? f->status : "addresses");
            is_int(n, 0, "%s: no address", c->name);
            continue;
        }
        ok(f == NULL, "%s: addresses to try", c->name);
        char got[512] = "";
        size_t len = 0;
        for (size_t k = 0; k < n && k < ROUTE_ADDRS_MAX; k++) {
            char a[64];
            inet_ntop(t[k].addr.family, t[k].addr.bytes, a, sizeof(a));
            len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%zu:%s", k ? " " : "",
                                    t[k].host, a);
        }
        is_str(got, c->want, "%s: the addresses in order", c->name);
    }
}

int main(void)
{
    test_plan_table();
    test_plan_ties();
    test_plan_bounds();
    test_addrs_table();
    return done_testing();
}
