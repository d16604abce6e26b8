/*
 * auth.c — crypt(3) hashing and verification; see auth.h.
 */
#include "auth.h"

#include <crypt.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Prefixes of the schemes accepted on import: yescrypt, gost-yescrypt,
 * scrypt, bcrypt (all variants) and SHA-crypt. */
static const char *const accepted_prefixes[] = {
    "$y$", "$gy$", "$7$", "$2b$", "$2a$", "$2y$", "$5$", "$6$",
};

int auth_hash_password(const char *password, char *out)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    /* count 0: libxcrypt's default cost for the scheme. */
    if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL)
        return -errno;
    struct crypt_data *cd = xcalloc(1, sizeof(*cd));
    char *h = crypt_r(password, salt, cd);
    int rc = 0;
    if (h == NULL || h[0] == '*' || strlen(h) >= AUTH_HASH_MAX)
        rc = -EINVAL;
    else
        memcpy(out, h, strlen(h) + 1);
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return rc;
}

bool auth_hash_acceptable(const char *hash)
{
    bool known = false;
    for (size_t i = 0; i < sizeof(accepted_prefixes) / sizeof(accepted_prefixes[0]); i++)
        if (strncmp(hash, accepted_prefixes[i], strlen(accepted_prefixes[i])) == 0)
            known = true;
    if (!known || strlen(hash) >= AUTH_HASH_MAX)
        return false;
    /* libxcrypt calls SHA-crypt "legacy"; the prefix list above is what
     * decides which schemes kotak accepts. */
    int salt = crypt_checksalt(hash);
    if (salt != CRYPT_SALT_OK && salt != CRYPT_SALT_METHOD_LEGACY)
        return false;
    /* crypt_checksalt looks at the setting only; a hash must also verify as
     * itself, which it does only when its shape is complete. */
    struct crypt_data *cd = xcalloc(1, sizeof(*cd));
    char *h = crypt_r("", hash, cd);
    bool ok = h != NULL && h[0] != '*' && strlen(h) == strlen(hash);
    free(cd);
    return ok;
}

bool auth_verify(const char *hash, const char *password)
{
    struct crypt_data *cd = xcalloc(1, sizeof(*cd));
    const char *h = crypt_r(password, hash, cd);
    bool ok = false;
    if (h != NULL && h[0] != '*') {
        size_t n = strlen(hash);
        if (strlen(h) == n) {
            /* Constant time over the hash, so timing says nothing of it. */
            unsigned char diff = 0;
            for (size_t i = 0; i < n; i++)
                diff |= (unsigned char)(h[i] ^ hash[i]);
            ok = diff == 0;
        }
    }
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return ok;
}
