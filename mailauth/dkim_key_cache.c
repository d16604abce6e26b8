/*
 * dkim_key_cache.c — DKIM public keys kept once used; see dkim_key_cache.h.
 *
 * The threads that check signatures share one table under one lock; each
 * check works on its own copy (mbedtls_rsa_copy), so the lock is held for
 * a copy, never for the RSA work. A key is known by its DER (p= decoded,
 * however it was folded: at most 1,200 octets). The copy carries RN, the
 * constant mbedTLS computes at a key's first use (a 4096-bit division):
 * that is why a key is kept after it served, not before.
 */
#include "dkim_key_cache.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct key_entry {
    unsigned char *der; /* the public key as p= gave it, decoded; NULL: a free slot */
    size_t der_len;
    uint64_t hash; /* of der: most entries are passed over on it */
    mbedtls_rsa_context rsa;
    uint64_t used; /* the tick of its last use */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct key_entry keys[DKIM_KEY_CACHE_MAX];
static uint64_t tick;

/* FNV-1a: the keys are public, and an entry matches only on all its octets. */
static uint64_t hash_of(const unsigned char *p, size_t n)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

static struct key_entry *find(const unsigned char *der, size_t n, uint64_t h)
{
    for (size_t i = 0; i < DKIM_KEY_CACHE_MAX; i++)
        if (keys[i].der != NULL && keys[i].hash == h && keys[i].der_len == n &&
            memcmp(keys[i].der, der, n) == 0)
            return &keys[i];
    return NULL;
}

static void entry_free(struct key_entry *e)
{
    free(e->der);
    e->der = NULL;
    mbedtls_rsa_free(&e->rsa);
}

bool dkim_key_cache_get(const unsigned char *der, size_t n, mbedtls_rsa_context *rsa)
{
    uint64_t h = hash_of(der, n);
    pthread_mutex_lock(&lock);
    struct key_entry *e = find(der, n, h);
    bool got = e != NULL && mbedtls_rsa_copy(rsa, &e->rsa) == 0;
    if (got)
        e->used = ++tick;
    pthread_mutex_unlock(&lock);
    return got;
}

void dkim_key_cache_put(const unsigned char *der, size_t n, const mbedtls_rsa_context *rsa)
{
    uint64_t h = hash_of(der, n);
    pthread_mutex_lock(&lock);
    if (find(der, n, h) != NULL) {
        pthread_mutex_unlock(&lock);
        return;
    }
    struct key_entry *slot = &keys[0];
    for (size_t i = 0; i < DKIM_KEY_CACHE_MAX && slot->der != NULL; i++)
        if (keys[i].der == NULL || keys[i].used < slot->used)
            slot = &keys[i];
    if (slot->der != NULL)
        entry_free(slot);
    mbedtls_rsa_init(&slot->rsa, MBEDTLS_RSA_PKCS_V15, 0);
    if (mbedtls_rsa_copy(&slot->rsa, rsa) != 0) {
        mbedtls_rsa_free(&slot->rsa);
        pthread_mutex_unlock(&lock);
        return;
    }
    slot->der = xmalloc(n);
    memcpy(slot->der, der, n);
    slot->der_len = n;
    slot->hash = h;
    slot->used = ++tick;
    pthread_mutex_unlock(&lock);
}

void dkim_key_cache_clear(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < DKIM_KEY_CACHE_MAX; i++)
        if (keys[i].der != NULL)
            entry_free(&keys[i]);
    pthread_mutex_unlock(&lock);
}
