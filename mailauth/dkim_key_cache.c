/*
 * dkim_key_cache.c — DKIM public keys kept once used; see dkim_key_cache.h.
 *
 * The threads that check signatures share one table under one lock; each
 * check works on its own copy (mbedtls_rsa_copy), so the lock is held for
 * a copy, never for the RSA work. The copy carries RN, the constant
 * mbedTLS computes at a key's first use (a 4096-bit division): that is
 * why a key is kept after it served, not before.
 */
#include "dkim_key_cache.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct key_entry {
    char *p; /* the p= value as the record wrote it; NULL: a free slot */
    size_t p_len;
    mbedtls_rsa_context rsa;
    uint64_t used; /* the tick of its last use */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct key_entry keys[DKIM_KEY_CACHE_MAX];
static uint64_t tick;

static struct key_entry *find(const char *p, size_t n)
{
    for (size_t i = 0; i < DKIM_KEY_CACHE_MAX; i++)
        if (keys[i].p != NULL && keys[i].p_len == n && memcmp(keys[i].p, p, n) == 0)
            return &keys[i];
    return NULL;
}

static void entry_free(struct key_entry *e)
{
    free(e->p);
    e->p = NULL;
    mbedtls_rsa_free(&e->rsa);
}

bool dkim_key_cache_get(const char *p, size_t n, mbedtls_rsa_context *rsa)
{
    pthread_mutex_lock(&lock);
    struct key_entry *e = find(p, n);
    bool got = e != NULL && mbedtls_rsa_copy(rsa, &e->rsa) == 0;
    if (got)
        e->used = ++tick;
    pthread_mutex_unlock(&lock);
    return got;
}

void dkim_key_cache_put(const char *p, size_t n, const mbedtls_rsa_context *rsa)
{
    pthread_mutex_lock(&lock);
    if (find(p, n) != NULL) {
        pthread_mutex_unlock(&lock);
        return;
    }
    struct key_entry *slot = &keys[0];
    for (size_t i = 0; i < DKIM_KEY_CACHE_MAX && slot->p != NULL; i++)
        if (keys[i].p == NULL || keys[i].used < slot->used)
            slot = &keys[i];
    if (slot->p != NULL)
        entry_free(slot);
    mbedtls_rsa_init(&slot->rsa, MBEDTLS_RSA_PKCS_V15, 0);
    if (mbedtls_rsa_copy(&slot->rsa, rsa) != 0) {
        mbedtls_rsa_free(&slot->rsa);
        pthread_mutex_unlock(&lock);
        return;
    }
    slot->p = xmalloc(n + 1);
    memcpy(slot->p, p, n);
    slot->p[n] = '\0';
    slot->p_len = n;
    slot->used = ++tick;
    pthread_mutex_unlock(&lock);
}

void dkim_key_cache_clear(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < DKIM_KEY_CACHE_MAX; i++)
        if (keys[i].p != NULL)
            entry_free(&keys[i]);
    pthread_mutex_unlock(&lock);
}
