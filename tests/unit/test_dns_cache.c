/*
 * test_dns_cache.c — TXT answers are kept for their TTL (capped), so are
 * names without (for the SOA's), looked up without regard to case, and
 * dropped least recently used first when the count or the bytes run out.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "dns_cache.h"
#include "tap.h"

static void put1(struct dns_cache *c, const char *name, const char *text, uint64_t now,
                 uint32_t ttl)
{
    const char *records[1] = {text};
    size_t lens[1] = {strlen(text)};
    dns_cache_put(c, name, records, lens, 1, now, ttl);
}

static const char *get1(struct dns_cache *c, const char *name, uint64_t now)
{
    struct dns_cached r;
    if (!dns_cache_get(c, name, now, &r))
        return "(none)";
    return r.status == DNS_OK ? r.records[0] : dns_status_name(r.status);
}

int main(void)
{
    struct dns_cache *c = dns_cache_new();
    put1(c, "Example.ORG.", "v=spf1 -all", 1000, 60);
    is_str(get1(c, "example.org", 1000), "v=spf1 -all", "kept, found whatever the case and final dot");
    is_str(get1(c, "example.org", 60999), "v=spf1 -all", "still there just before its TTL ends");
    is_str(get1(c, "example.org", 61000), "(none)", "gone when its TTL ends");
    is_int((int)dns_cache_count(c), 0, "an expired entry is dropped when asked");

    put1(c, "zero.test", "x", 0, 0);
    is_str(get1(c, "zero.test", 0), "(none)", "TTL 0: not kept");
    put1(c, "long.test", "x", 0, 86400 * 7);
    is_str(get1(c, "long.test", (uint64_t)DNS_CACHE_TTL_MAX * 1000 - 1), "x",
           "a long TTL is kept up to the cap");
    is_str(get1(c, "long.test", (uint64_t)DNS_CACHE_TTL_MAX * 1000), "(none)",
           "and no longer than the cap");

    put1(c, "twice.test", "old", 0, 60);
    put1(c, "twice.test", "new", 0, 60);
    is_str(get1(c, "twice.test", 0), "new", "a second answer replaces the first");
    is_int((int)dns_cache_count(c), 1, "one entry for the name");

    const char *two[2] = {"a", "bc"};
    size_t lens2[2] = {1, 2};
    dns_cache_put(c, "two.test", two, lens2, 2, 0, 60);
    struct dns_cached r;
    bool found = dns_cache_get(c, "two.test", 0, &r) && r.status == DNS_OK;
    ok(found, "an answer with records");
    is_int(found ? (int)r.n : -1, 2, "every record of an answer");
    ok(found && strcmp(r.records[1], "bc") == 0 && r.lens[1] == 2, "each with its length");

    /* A name without records (RFC 2308): kept as long as the SOA says, capped lower. */
    dns_cache_put_none(c, "_dmarc.Example.NET.", DNS_NXDOMAIN, 1000, 300);
    is_str(get1(c, "_dmarc.example.net", 1000), "nxdomain", "no such name: kept");
    is_str(get1(c, "_dmarc.example.net", 300999), "nxdomain", "until just before its TTL ends");
    is_str(get1(c, "_dmarc.example.net", 301000), "(none)", "then gone");
    dns_cache_put_none(c, "nodata.test", DNS_NODATA, 0, 86400);
    is_str(get1(c, "nodata.test", (uint64_t)DNS_CACHE_NONE_TTL_MAX * 1000 - 1), "nodata",
           "no record of the type: kept up to its own cap");
    is_str(get1(c, "nodata.test", (uint64_t)DNS_CACHE_NONE_TTL_MAX * 1000), "(none)",
           "and no longer, below the cap of answers with records");
    dns_cache_put_none(c, "nosoa.test", DNS_NXDOMAIN, 0, 0);
    is_str(get1(c, "nosoa.test", 0), "(none)", "TTL 0 (an answer without an SOA): not kept");
    dns_cache_put_none(c, "fail.test", DNS_TEMPFAIL, 0, 60);
    is_str(get1(c, "fail.test", 0), "(none)", "a failure is never kept");
    put1(c, "was-none.test", "x", 0, 60);
    dns_cache_put_none(c, "was-none.test", DNS_NXDOMAIN, 0, 60);
    is_str(get1(c, "was-none.test", 0), "nxdomain", "a later answer without records replaces one with");
    put1(c, "was-none.test", "y", 0, 60);
    is_str(get1(c, "was-none.test", 0), "y", "and a later one with records replaces that");
    dns_cache_put_none(c, "was-none.test", DNS_NXDOMAIN, 0, 0);
    dns_cache_put_none(c, "was-none.test", DNS_TEMPFAIL, 0, 60);
    is_str(get1(c, "was-none.test", 0), "y",
           "an answer without an SOA, or a failure, leaves the records kept alone");

    static char big[DNS_CACHE_ENTRY_BYTES_MAX + 1];
    memset(big, 'x', sizeof(big) - 1);
    put1(c, "big.test", big, 0, 60);
    is_str(get1(c, "big.test", 0), "(none)", "an answer past an entry's bytes is not kept");

    /* The count: the least recently used goes first. */
    dns_cache_free(&c);
    c = dns_cache_new();
    char name[64];
    for (int i = 0; i < DNS_CACHE_ENTRIES_MAX; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        put1(c, name, "r", 0, 60);
    }
    is_str(get1(c, "n0.test", 0), "r", "the oldest, used again, moves to the front");
    put1(c, "one-more.test", "r", 0, 60);
    is_int((int)dns_cache_count(c), DNS_CACHE_ENTRIES_MAX, "the count stays at its limit");
    is_str(get1(c, "n1.test", 0), "(none)", "the least recently used went");
    is_str(get1(c, "n0.test", 0), "r", "the one used again stayed");

    /* Names without records: at most a quarter of the count, and they push
     * out no more of the records than that. */
    dns_cache_free(&c);
    c = dns_cache_new();
    for (int i = 0; i < DNS_CACHE_ENTRIES_MAX; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        put1(c, name, "r", 0, 60);
    }
    for (int i = 0; i < DNS_CACHE_ENTRIES_MAX; i++) {
        snprintf(name, sizeof(name), "none%d.test", i);
        dns_cache_put_none(c, name, DNS_NXDOMAIN, 0, 60);
    }
    is_int((int)dns_cache_count(c), DNS_CACHE_ENTRIES_MAX, "the count stays at its limit");
    int records = 0, nones = 0;
    for (int i = 0; i < DNS_CACHE_ENTRIES_MAX; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        records += strcmp(get1(c, name, 0), "r") == 0;
        snprintf(name, sizeof(name), "none%d.test", i);
        nones += strcmp(get1(c, name, 0), "nxdomain") == 0;
    }
    is_int(nones, DNS_CACHE_NONE_MAX, "a flood of names without records keeps a quarter of them");
    is_int(records, DNS_CACHE_ENTRIES_MAX - DNS_CACHE_NONE_MAX, "and the records keep the rest");
    is_str(get1(c, "none4095.test", 0), "nxdomain", "the newest name without is there");
    is_str(get1(c, "none0.test", 0), "(none)", "the oldest went");
    is_str(get1(c, "n4095.test", 0), "r", "the newest records stayed");
    is_str(get1(c, "n0.test", 0), "(none)", "the oldest records made room");

    /* Room is made from whichever list holds the least recently used. */
    dns_cache_free(&c);
    c = dns_cache_new();
    dns_cache_put_none(c, "old-none.test", DNS_NXDOMAIN, 0, 60);
    for (int i = 0; i < DNS_CACHE_ENTRIES_MAX - 1; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        put1(c, name, "r", 0, 60);
    }
    dns_cache_put_none(c, "new-none.test", DNS_NXDOMAIN, 0, 60);
    is_str(get1(c, "old-none.test", 0), "(none)", "an old name without records goes first");
    is_str(get1(c, "n0.test", 0), "r", "before older records than the new one");
    put1(c, "one-more.test", "r", 0, 60);
    is_str(get1(c, "new-none.test", 0), "nxdomain", "a recent name without records stays");
    is_str(get1(c, "n1.test", 0), "(none)", "while the least recently used record goes");

    /* The bytes: many large answers stay under the cap. */
    dns_cache_free(&c);
    c = dns_cache_new();
    static char large[DNS_CACHE_ENTRY_BYTES_MAX - 1024];
    memset(large, 'y', sizeof(large) - 1);
    int n_large = 2 * DNS_CACHE_BYTES_MAX / sizeof(large);
    for (int i = 0; i < n_large; i++) {
        snprintf(name, sizeof(name), "large%d.test", i);
        put1(c, name, large, 0, 60);
    }
    ok(dns_cache_bytes(c) <= DNS_CACHE_BYTES_MAX, "the bytes stay under the cap (%zu)",
       dns_cache_bytes(c));
    snprintf(name, sizeof(name), "large%d.test", n_large - 1);
    is_str(get1(c, name, 0), large, "the newest is there");
    is_str(get1(c, "large0.test", 0), "(none)", "the oldest went");
    dns_cache_free(&c);
    dns_cache_free(&c); /* NULL: a no-op */
    return done_testing();
}
