/*
 * auth.h — password hashes with crypt(3) from libxcrypt.
 *
 * New passwords get yescrypt, the scheme Debian itself uses for /etc/shadow.
 * Hashes brought from another system are accepted when they are bcrypt,
 * SHA-crypt or yescrypt; older schemes (DES, MD5-crypt) are refused, since
 * they fall to a laptop in hours.
 */
#ifndef KOTAK_AUTH_H
#define KOTAK_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define AUTH_HASH_MAX 256 /* CRYPT_OUTPUT_SIZE is 384 but no scheme we accept nears 256 */

/*
 * Hashes password with yescrypt and a fresh random salt into
 * out[AUTH_HASH_MAX]. Returns 0 or -errno. Slow on purpose: call it off any
 * event loop.
 */
int auth_hash_password(const char *password, char *out);

/* True when hash is a crypt(3) string of a scheme kotak accepts on import. */
bool auth_hash_acceptable(const char *hash);

/*
 * True when password matches hash. Compares in constant time. Slow on
 * purpose; thread-safe (crypt_r with its own state).
 */
bool auth_verify(const char *hash, const char *password);

#endif
