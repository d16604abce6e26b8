/*
 * test_dkim_key_cache.c — DKIM keys kept once used: found by their DER
 * exactly, handed out as copies (precomputed values too), the least
 * recently used one dropped when the table is full, safe from several
 * threads at once.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "dkim_key_cache.h"
#include "tap.h"

/* A stand-in key: N = n (the cache copies contexts; it never computes). */
static void key_of(mbedtls_rsa_context *rsa, unsigned n)
{
    mbedtls_rsa_init(rsa, MBEDTLS_RSA_PKCS_V15, 0);
    mbedtls_mpi_lset(&rsa->N, (mbedtls_mpi_sint)n);
}

static void put(const char *p, unsigned n)
{
    mbedtls_rsa_context rsa;
    key_of(&rsa, n);
    mbedtls_mpi_lset(&rsa.RN, (mbedtls_mpi_sint)n + 1); /* as a check leaves it */
    dkim_key_cache_put((const unsigned char *)p, strlen(p), &rsa);
    mbedtls_rsa_free(&rsa);
}

/* The N kept for p; -1 when none is, -2 when RN did not come along. */
static long get(const char *p)
{
    mbedtls_rsa_context rsa;
    mbedtls_rsa_init(&rsa, MBEDTLS_RSA_PKCS_V15, 0);
    long n = -1;
    if (dkim_key_cache_get((const unsigned char *)p, strlen(p), &rsa)) {
        unsigned char be[4];
        mbedtls_mpi_write_binary(&rsa.N, be, sizeof(be));
        n = (long)be[0] << 24 | (long)be[1] << 16 | (long)be[2] << 8 | be[3];
        if (mbedtls_mpi_cmp_int(&rsa.RN, (mbedtls_mpi_sint)n + 1) != 0)
            n = -2;
    }
    mbedtls_rsa_free(&rsa);
    return n;
}

static void *hammer(void *arg)
{
    unsigned base = *(unsigned *)arg;
    char p[32];
    for (unsigned i = 0; i < 2000; i++) {
        snprintf(p, sizeof(p), "t%u", (base + i) % 100);
        put(p, (base + i) % 100 + 1);
        long n = get(p);
        if (n != -1 && n != (long)((base + i) % 100 + 1))
            return (void *)1;
    }
    return NULL;
}

int main(void)
{
    is_int((int)get("MIGfMA0"), -1, "nothing kept at first");
    put("MIGfMA0", 7);
    is_int((int)get("MIGfMA0"), 7, "a key kept is found by its DER, with its precomputed value");
    is_int((int)get("MIGfMA0 "), -1, "the DER is matched exactly");
    is_int((int)get("MIGfMA"), -1, "not by a prefix");
    put("MIGfMA0", 9);
    is_int((int)get("MIGfMA0"), 7, "a key seen again is not replaced");

    dkim_key_cache_clear();
    char p[32];
    for (unsigned i = 0; i < DKIM_KEY_CACHE_MAX; i++) {
        snprintf(p, sizeof(p), "k%u", i);
        put(p, i + 100);
    }
    is_int((int)get("k0"), 100, "the first of a full table is there"); /* and now recently used */
    put("one-more", 5);
    is_int((int)get("one-more"), 5, "one more fits");
    is_int((int)get("k1"), -1, "by dropping the least recently used");
    is_int((int)get("k0"), 100, "not the one used since");
    size_t kept = 0;
    for (unsigned i = 0; i < DKIM_KEY_CACHE_MAX; i++) {
        snprintf(p, sizeof(p), "k%u", i);
        kept += get(p) >= 0;
    }
    is_int((int)kept, DKIM_KEY_CACHE_MAX - 1, "the table holds at most %d", DKIM_KEY_CACHE_MAX);

    dkim_key_cache_clear();
    is_int((int)get("k0"), -1, "cleared");

    pthread_t t[4];
    unsigned bases[4] = {0, 25, 50, 75};
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, &bases[i]);
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += r != NULL;
    }
    is_int(bad, 0, "four threads putting and getting: each key found is its own");
    dkim_key_cache_clear();
    return done_testing();
}
