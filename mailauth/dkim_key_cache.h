/*
 * dkim_key_cache.h — the public keys of DKIM key records, kept once used:
 * a busy MX sees the same few keys (a provider's, a mailing list's) on
 * most of its signed mail, and parsing one and computing its Montgomery
 * constant is a third of the work of checking a signature.
 */
#ifndef KOTAK_DKIM_KEY_CACHE_H
#define KOTAK_DKIM_KEY_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include <mbedtls/rsa.h>

#define DKIM_KEY_CACHE_MAX 64 /* keys kept; the least recently used one makes room */

/*
 * Copies the key kept for the public key der[0..n) (p= decoded) into rsa
 * (initialized by the caller) and says true; false when none is kept.
 * Any thread.
 */
bool dkim_key_cache_get(const unsigned char *der, size_t n, mbedtls_rsa_context *rsa);

/*
 * Keeps a copy of rsa, the key of der[0..n), checked, once an RSA
 * operation has used it (its precomputed values are then there); a key
 * kept already stays as it is. Any thread.
 */
void dkim_key_cache_put(const unsigned char *der, size_t n, const mbedtls_rsa_context *rsa);

/* Forgets every key (for tests, and for a clean exit under a leak checker). */
void dkim_key_cache_clear(void);

#endif
