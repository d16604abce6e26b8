/*
 * test_auth.c — password hashing (common/auth.h): yescrypt hashes that
 * verify, salts that differ, and which imported hashes are acceptable.
 *
 * yescrypt at its default cost takes tens of milliseconds per hash or
 * verification, so this test does few of them; bcrypt hashes use the
 * lowest cost.
 */
#include <crypt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "tap.h"

/* Hashes password with prefix (and count, 0 for the default) via libxcrypt
 * directly, into out[AUTH_HASH_MAX]. Returns false on failure. */
static bool make_hash(const char *prefix, unsigned long count, const char *password, char *out)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (crypt_gensalt_rn(prefix, count, NULL, 0, salt, sizeof(salt)) == NULL)
        return false;
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (cd == NULL)
        return false;
    const char *h = crypt_r(password, salt, cd);
    bool ok_ = h != NULL && h[0] != '*' && strlen(h) < AUTH_HASH_MAX;
    if (ok_)
        strcpy(out, h);
    free(cd);
    return ok_;
}

static void test_yescrypt(void)
{
    const char *pw = "correct horse battery staple";
    char h1[AUTH_HASH_MAX], h2[AUTH_HASH_MAX], h3[AUTH_HASH_MAX];

    is_int(auth_hash_password(pw, h1), 0, "auth_hash_password succeeds");
    ok(strncmp(h1, "$y$", 3) == 0, "the hash is yescrypt ($y$): %s", h1);
    ok(strlen(h1) > 20 && strlen(h1) < AUTH_HASH_MAX, "the hash has a sane length (%zu)",
       strlen(h1));
    ok(strstr(h1, pw) == NULL, "the hash does not hold the password");
    ok(auth_verify(h1, pw), "auth_verify accepts the right password");
    ok(!auth_verify(h1, "correct horse battery staplE"), "auth_verify refuses a wrong password");
    ok(!auth_verify(h1, ""), "auth_verify refuses an empty password");
    ok(!auth_verify(h1, "correct horse battery stapl"), "auth_verify refuses a prefix");
    ok(!auth_verify(h1, "correct horse battery staple "), "auth_verify refuses a longer one");
    ok(auth_hash_acceptable(h1), "auth_hash_acceptable accepts auth_hash_password's hash");

    is_int(auth_hash_password(pw, h2), 0, "second hash of the same password");
    ok(strcmp(h1, h2) != 0, "two hashes of one password differ (salt)");
    ok(auth_verify(h2, pw), "the second hash verifies too");

    is_int(auth_hash_password("", h3), 0, "an empty password can be hashed");
    ok(auth_verify(h3, ""), "and verifies as empty");
    ok(!auth_verify(h3, "x"), "and refuses anything else");

    /* A yescrypt hash cut short is neither acceptable nor verifiable. */
    char cut[AUTH_HASH_MAX];
    strcpy(cut, h1);
    cut[strlen(cut) - 1] = '\0';
    ok(!auth_hash_acceptable(cut), "a truncated $y$ hash is not acceptable");
    ok(!auth_verify(cut, pw), "a truncated $y$ hash does not verify");
    char *last = strrchr(cut, '$');
    last[1] = '\0';
    ok(!auth_hash_acceptable(cut), "a $y$ setting without its hash is not acceptable");
}

static void test_imported(void)
{
    const char *pw = "s3cret!";
    char h[AUTH_HASH_MAX];
    static const struct {
        const char *prefix;
        unsigned long count;
        const char *name;
    } good[] = {
        {"$2b$", 4, "bcrypt $2b$"},      {"$2a$", 4, "bcrypt $2a$"},
        {"$2y$", 4, "bcrypt $2y$"},      {"$5$", 0, "SHA-256-crypt $5$"},
        {"$6$", 0, "SHA-512-crypt $6$"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        bool made = make_hash(good[i].prefix, good[i].count, pw, h);
        ok(made, "%s: libxcrypt makes one", good[i].name);
        if (!made)
            continue;
        ok(strncmp(h, good[i].prefix, strlen(good[i].prefix)) == 0, "%s: prefix (%s)", good[i].name,
           h);
        ok(auth_hash_acceptable(h), "%s: acceptable", good[i].name);
        ok(auth_verify(h, pw), "%s: verifies the right password", good[i].name);
        ok(!auth_verify(h, "s3cret"), "%s: refuses a prefix", good[i].name);
        ok(!auth_verify(h, ""), "%s: refuses an empty password", good[i].name);
        ok(!auth_verify(h, "S3cret!"), "%s: refuses a wrong password", good[i].name);

        /* Truncated, extended, or with its setting only: not acceptable. */
        char bad[AUTH_HASH_MAX + 2];
        strcpy(bad, h);
        bad[strlen(bad) - 1] = '\0';
        ok(!auth_hash_acceptable(bad), "%s: truncated by one is not acceptable", good[i].name);
        ok(!auth_verify(bad, pw), "%s: truncated by one does not verify", good[i].name);
        strcpy(bad, h);
        bad[strlen(bad) / 2] = '\0';
        ok(!auth_hash_acceptable(bad), "%s: cut in half is not acceptable", good[i].name);
        strcpy(bad, h);
        strcat(bad, "A");
        ok(!auth_hash_acceptable(bad), "%s: one character longer is not acceptable", good[i].name);
        bad[0] = '!';
        strcpy(bad + 1, h);
        ok(!auth_hash_acceptable(bad), "%s: locked (!) is not acceptable", good[i].name);
        ok(!auth_verify(bad, pw), "%s: locked (!) does not verify", good[i].name);
    }

    /* A $6$ hash cut right after its salt. */
    ok(make_hash("$6$", 0, pw, h), "another $6$ hash");
    char *last = strrchr(h, '$');
    last[1] = '\0';
    ok(!auth_hash_acceptable(h), "$6$ setting with an empty hash part is not acceptable (%s)", h);
    last[0] = '\0';
    ok(!auth_hash_acceptable(h), "$6$ setting alone is not acceptable (%s)", h);
}

static void test_refused(void)
{
    const char *pw = "s3cret!";
    char h[AUTH_HASH_MAX];

    if (make_hash("$1$", 0, pw, h)) {
        ok(strncmp(h, "$1$", 3) == 0, "MD5-crypt hash made (%s)", h);
        ok(!auth_hash_acceptable(h), "MD5-crypt $1$ is not acceptable");
    } else {
        ok(1, "# SKIP libxcrypt makes no MD5-crypt hashes");
        ok(!auth_hash_acceptable("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/"),
           "MD5-crypt is not acceptable");
    }
    ok(!auth_hash_acceptable("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/"),
       "a literal MD5-crypt hash is not acceptable");

    /* Traditional DES: a two-character salt and 11 more characters. */
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    const char *des = cd ? crypt_r(pw, "ab", cd) : NULL;
    if (des != NULL && des[0] != '*' && strlen(des) == 13) {
        ok(1, "DES hash made (%s)", des);
        ok(!auth_hash_acceptable(des), "a DES hash is not acceptable");
    } else {
        ok(1, "# SKIP libxcrypt makes no DES hashes");
        ok(!auth_hash_acceptable("abJnggxhB/yWI"), "a DES hash is not acceptable");
    }
    free(cd);
    ok(!auth_hash_acceptable("abJnggxhB/yWI"), "a literal DES hash is not acceptable");
    ok(!auth_hash_acceptable("_J9..CCCCXBrJUJV154M"), "a BSDi extended-DES hash is not acceptable");

    ok(!auth_hash_acceptable(""), "\"\" is not acceptable");
    ok(!auth_hash_acceptable("*"), "\"*\" is not acceptable");
    ok(!auth_hash_acceptable("!"), "\"!\" is not acceptable");
    ok(!auth_hash_acceptable("!!"), "\"!!\" is not acceptable");
    ok(!auth_hash_acceptable("*LK*"), "\"*LK*\" is not acceptable");
    ok(!auth_hash_acceptable("$y$"), "a bare $y$ is not acceptable");
    ok(!auth_hash_acceptable("$6$"), "a bare $6$ is not acceptable");
    ok(!auth_hash_acceptable("$2b$"), "a bare $2b$ is not acceptable");
    ok(!auth_hash_acceptable("$6x$abc"), "an unknown scheme is not acceptable");
    ok(!auth_hash_acceptable("plain-password"), "a plain password is not acceptable");

    /* Far too long: refused without reading past AUTH_HASH_MAX issues. */
    char longh[AUTH_HASH_MAX + 64];
    memset(longh, 'a', sizeof(longh) - 1);
    memcpy(longh, "$6$", 3);
    longh[sizeof(longh) - 1] = '\0';
    ok(!auth_hash_acceptable(longh), "an over-long $6$ string is not acceptable");

    ok(!auth_verify("", ""), "auth_verify with an empty hash is false");
    ok(!auth_verify("*", ""), "auth_verify with \"*\" is false");
    ok(!auth_verify("!", "!"), "auth_verify with \"!\" is false");
}

int main(void)
{
    test_yescrypt();
    test_imported();
    test_refused();
    return done_testing();
}
