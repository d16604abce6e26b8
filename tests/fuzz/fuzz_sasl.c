/*
 * fuzz_sasl.c — base64 and the SASL PLAIN and LOGIN steps (common/sasl.h).
 *
 * Input: byte 0 bits 0-2 pick what the rest is:
 *   0  base64 text for sasl_b64_decode;
 *   1  PLAIN responses, one per line (split on LF), as the client sends them;
 *   2  LOGIN responses, likewise;
 *   3  a PLAIN message ("authzid NUL authcid NUL passwd"), which the target
 *      base64-encodes, so the fuzzer reaches the PLAIN parser directly;
 *   4  a LOGIN user name, LF, password, encoded likewise;
 * and bits 4-5 the challenge buffer given to sasl_step (64, 13, 12 octets
 * or none). Whatever the mode, the rest is also base64-encoded and decoded
 * back.
 *
 * Properties: the decoder accepts exactly canonical base64 (a model decodes
 * leniently, re-encodes and compares) and round-trips the encoder; -ENOBUFS
 * exactly when the output is one octet short; PLAIN gives DONE or an error,
 * never a challenge; a DONE leaves a non-empty user and password of valid
 * UTF-8 without control characters, equal to the model's split of the
 * message, and an authzid only when it differs from the user; after an
 * error no secret is left in the struct and every later step fails.
 */
#include <errno.h>

#include "addr.h"
#include "fuzz.h"
#include "sasl.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void encode(const uint8_t *p, size_t n, struct fuzz_bytes *out)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        char q[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63],
                     i + 1 < n ? alphabet[(v >> 6) & 63] : '=', i + 2 < n ? alphabet[v & 63] : '='};
        fuzz_bytes_add(out, q, 4);
    }
}

/*
 * The model of the strict decoder: x is canonical base64 when, without its
 * trailing '=', it is alphabet characters whose count is not 1 mod 4, it is
 * either unpadded or padded exactly to a quantum, and decoding it leniently
 * and encoding again gives the padded text back (so the unused bits are 0).
 */
static bool model_decode(const uint8_t *x, size_t n, struct fuzz_bytes *out)
{
    size_t y = n;
    while (y > 0 && x[y - 1] == '=')
        y--;
    if (y % 4 == 1)
        return false;
    size_t full = (4 - y % 4) % 4;
    if (n != y && n != y + full)
        return false;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < y; i++) {
        const char *c = memchr(alphabet, x[i], 64);
        if (x[i] == 0 || c == NULL)
            return false;
        acc = (acc << 6) | (uint32_t)(c - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            uint8_t b = (uint8_t)(acc >> bits);
            fuzz_bytes_add(out, &b, 1);
        }
    }
    struct fuzz_bytes again = {0};
    encode(out->p, out->len, &again);
    bool same = again.len == y + full && (y == 0 || memcmp(again.p, x, y) == 0);
    fuzz_bytes_free(&again);
    return same;
}

static void check_decode(const uint8_t *x, size_t n)
{
    struct fuzz_bytes want = {0};
    bool valid = model_decode(x, n, &want);
    size_t cap = n + 4;
    uint8_t *out = malloc(cap);
    ssize_t rc = sasl_b64_decode((const char *)x, n, out, cap);
    FUZZ_CHECK(rc >= 0 || rc == -EINVAL, "sasl_b64_decode returned %zd", rc);
    FUZZ_CHECK((rc >= 0) == valid, "sasl_b64_decode says %zd, the model says %s", rc,
               valid ? "canonical" : "not canonical");
    if (rc >= 0) {
        FUZZ_CHECK((size_t)rc == want.len && (rc == 0 || memcmp(out, want.p, want.len) == 0),
                   "decoded %zd octets, the model %zu", rc, want.len);
        /* One octet short: -ENOBUFS, and out untouched. */
        if (rc > 0) {
            uint8_t *tight = malloc((size_t)rc);
            memset(tight, 0xee, (size_t)rc);
            ssize_t rc2 = sasl_b64_decode((const char *)x, n, tight, (size_t)rc - 1);
            FUZZ_CHECK(rc2 == -ENOBUFS, "one octet short gave %zd", rc2);
            for (ssize_t i = 0; i < rc - 1; i++)
                FUZZ_CHECK(tight[i] == 0xee, "-ENOBUFS wrote to out");
            rc2 = sasl_b64_decode((const char *)x, n, tight, (size_t)rc);
            FUZZ_CHECK(rc2 == rc && memcmp(tight, out, (size_t)rc) == 0, "the exact size gave %zd",
                       rc2);
            free(tight);
        }
    }
    free(out);
    fuzz_bytes_free(&want);
}

static void check_encode(const uint8_t *p, size_t n)
{
    size_t need = (n + 2) / 3 * 4 + 1;
    char *text = malloc(need);
    ssize_t rc = sasl_b64_encode(p, n, text, need);
    FUZZ_CHECK(rc >= 0 && (size_t)rc == need - 1 && text[rc] == '\0', "sasl_b64_encode gave %zd",
               rc);
    struct fuzz_bytes want = {0};
    encode(p, n, &want);
    FUZZ_CHECK(want.len == (size_t)rc && (rc == 0 || memcmp(want.p, text, want.len) == 0),
               "sasl_b64_encode differs from the model");
    ssize_t small = sasl_b64_encode(p, n, text, need - 1);
    FUZZ_CHECK(small == -ENOBUFS, "one octet short gave %zd", small);
    uint8_t *back = malloc(n + 1);
    ssize_t got = sasl_b64_decode(text, (size_t)rc, back, n);
    FUZZ_CHECK(got == (ssize_t)n && (n == 0 || memcmp(back, p, n) == 0),
               "encode then decode did not round-trip");
    /* Unpadded is accepted too. */
    size_t unpadded = (size_t)rc;
    while (unpadded > 0 && text[unpadded - 1] == '=')
        unpadded--;
    got = sasl_b64_decode(text, unpadded, back, n);
    FUZZ_CHECK(got == (ssize_t)n && (n == 0 || memcmp(back, p, n) == 0),
               "unpadded base64 did not round-trip");
    free(back);
    free(text);
    fuzz_bytes_free(&want);
}

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

/* What sasl.h promises of a field it keeps. */
static void check_field(const char *what, const char *f, bool may_be_empty)
{
    size_t n = strnlen(f, SASL_FIELD_MAX + 1);
    FUZZ_CHECK(n <= SASL_FIELD_MAX, "%s is not NUL-terminated", what);
    FUZZ_CHECK(may_be_empty || n > 0, "%s is empty", what);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((uint8_t)f[i] >= 0x20, "%s holds control character %#x", what, (uint8_t)f[i]);
    FUZZ_CHECK(addr_utf8_valid(f, n), "%s is not UTF-8", what);
}

/* The model's split of a PLAIN message; false when it is not one kotak keeps. */
static bool model_plain(const uint8_t *m, size_t n, char *authzid, char *user, char *pass)
{
    if (n == 0)
        return false;
    const uint8_t *z1 = memchr(m, 0, n);
    if (z1 == NULL)
        return false;
    const uint8_t *z2 = memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - m));
    if (z2 == NULL || memchr(z2 + 1, 0, n - (size_t)(z2 + 1 - m)) != NULL)
        return false;
    const uint8_t *f[3] = {m, z1 + 1, z2 + 1};
    size_t len[3] = {(size_t)(z1 - m), (size_t)(z2 - z1 - 1), n - (size_t)(z2 + 1 - m)};
    char *dst[3] = {authzid, user, pass};
    if (len[1] == 0 || len[2] == 0)
        return false;
    for (int k = 0; k < 3; k++) {
        if (len[k] > SASL_FIELD_MAX || !addr_utf8_valid((const char *)f[k], len[k]))
            return false;
        for (size_t i = 0; i < len[k]; i++)
            if (f[k][i] < 0x20)
                return false;
        memcpy(dst[k], f[k], len[k]);
        dst[k][len[k]] = '\0';
    }
    if (strcmp(authzid, user) == 0)
        authzid[0] = '\0';
    return true;
}

static const size_t challenge_sizes[] = {64, 13, 12, 0};

/* Runs one exchange over the responses; checks each result against the model. */
static void exchange(enum sasl_mech mech, const char *const *resp, const size_t *len, size_t n,
                     size_t csize)
{
    struct sasl s;
    memset(&s, 0x77, sizeof(s));
    sasl_begin(&s, mech);
    FUZZ_CHECK(s.mech == mech && s.user[0] == '\0' && s.password[0] == '\0',
               "sasl_begin left something behind");
    bool ended = false;
    int logins = 0;
    for (size_t i = 0; i < n; i++) {
        char challenge[64];
        memset(challenge, 0x33, sizeof(challenge));
        int rc = sasl_step(&s, resp[i], len[i], csize ? challenge : NULL, csize);
        FUZZ_CHECK(rc == SASL_DONE || rc == SASL_CONTINUE || rc == -ECANCELED || rc == -EINVAL ||
                       rc == -ENOBUFS,
                   "sasl_step returned %d", rc);
        if (ended) {
            FUZZ_CHECK(rc == -EINVAL, "a step after the end gave %d", rc);
            continue;
        }
        bool cancel = len[i] == 1 && resp[i][0] == '*';
        struct fuzz_bytes msg = {0};
        bool b64 = cancel || (len[i] == 1 && resp[i][0] == '=') ||
                   model_decode((const uint8_t *)resp[i], len[i], &msg);
        if (cancel)
            FUZZ_CHECK(rc == -ECANCELED, "'*' gave %d", rc);
        else if (!b64)
            FUZZ_CHECK(rc == -EINVAL, "bad base64 gave %d", rc);
        if (rc < 0) {
            ended = true;
            FUZZ_CHECK(all_zero(s.user, sizeof(s.user)) &&
                           all_zero(s.password, sizeof(s.password)) &&
                           all_zero(s.authzid, sizeof(s.authzid)),
                       "secrets left in struct sasl after an error");
        } else if (rc == SASL_CONTINUE) {
            FUZZ_CHECK(mech == SASL_LOGIN && logins == 0, "a challenge from %s at step %d",
                       mech == SASL_PLAIN ? "PLAIN" : "LOGIN", logins);
            FUZZ_CHECK(csize >= 13 && strcmp(challenge, "UGFzc3dvcmQ6") == 0,
                       "the LOGIN challenge is not \"Password:\"");
            check_field("the LOGIN user", s.user, false);
            FUZZ_CHECK(msg.len == strlen(s.user) && memcmp(msg.p, s.user, msg.len) == 0,
                       "the LOGIN user is not what was sent");
            logins++;
        } else {
            ended = true;
            check_field("user", s.user, false);
            check_field("password", s.password, false);
            check_field("authzid", s.authzid, true);
            FUZZ_CHECK(s.authzid[0] == '\0' || strcmp(s.authzid, s.user) != 0,
                       "authzid equal to the user was kept");
            if (mech == SASL_PLAIN) {
                char a[SASL_FIELD_MAX + 1], u[SASL_FIELD_MAX + 1], p[SASL_FIELD_MAX + 1];
                FUZZ_CHECK(model_plain(msg.p, msg.len, a, u, p),
                           "PLAIN accepted a message the model refuses");
                FUZZ_CHECK(strcmp(a, s.authzid) == 0 && strcmp(u, s.user) == 0 &&
                               strcmp(p, s.password) == 0,
                           "PLAIN split the message differently from the model");
            } else {
                FUZZ_CHECK(logins == 1, "LOGIN done after %d steps", logins + 1);
                FUZZ_CHECK(msg.len == strlen(s.password) && memcmp(msg.p, s.password, msg.len) == 0,
                           "the LOGIN password is not what was sent");
            }
            /* The exchange is over: another response is refused, secrets untouched. */
            char user[SASL_FIELD_MAX + 1];
            memcpy(user, s.user, sizeof(user));
            int again = sasl_step(&s, resp[i], len[i], csize ? challenge : NULL, csize);
            FUZZ_CHECK(again == -EINVAL, "a step after DONE gave %d", again);
            sasl_clear(&s);
            FUZZ_CHECK(all_zero(&s, sizeof(s)), "sasl_clear left bytes behind");
            fuzz_bytes_free(&msg);
            break;
        }
        if (mech == SASL_PLAIN && b64 && !cancel && rc == -EINVAL && len[i] <= 1100) {
            char a[SASL_FIELD_MAX + 1], u[SASL_FIELD_MAX + 1], p[SASL_FIELD_MAX + 1];
            FUZZ_CHECK(!model_plain(msg.p, msg.len, a, u, p),
                       "PLAIN refused a message the model accepts");
        }
        fuzz_bytes_free(&msg);
    }
    sasl_clear(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] & 7;
    size_t csize = challenge_sizes[(data[0] >> 4) & 3];
    const uint8_t *rest = data + 1;
    size_t n = size - 1;

    check_encode(rest, n);
    if (mode == 0) {
        check_decode(rest, n);
        return 0;
    }

    /* Up to 8 responses. */
    const char *resp[8];
    size_t len[8], count = 0;
    struct fuzz_bytes enc[2] = {{0}, {0}};
    if (mode == 1 || mode == 2) {
        size_t start = 0;
        for (size_t i = 0; i <= n && count < 8; i++) {
            if (i == n || rest[i] == '\n') {
                resp[count] = (const char *)rest + start;
                len[count++] = i - start;
                start = i + 1;
            }
        }
        exchange(mode == 1 ? SASL_PLAIN : SASL_LOGIN, resp, len, count, csize);
        for (size_t i = 0; i < count; i++)
            check_decode((const uint8_t *)resp[i], len[i]);
    } else if (mode == 3) {
        encode(rest, n, &enc[0]);
        resp[0] = enc[0].len ? (const char *)enc[0].p : "";
        len[0] = enc[0].len;
        exchange(SASL_PLAIN, resp, len, 1, csize);
    } else {
        const uint8_t *lf = memchr(rest, '\n', n);
        size_t ul = lf ? (size_t)(lf - rest) : n;
        encode(rest, ul, &enc[0]);
        if (lf)
            encode(lf + 1, n - ul - 1, &enc[1]);
        for (int k = 0; k < 2; k++) {
            resp[k] = enc[k].len ? (const char *)enc[k].p : "";
            len[k] = enc[k].len;
        }
        exchange(SASL_LOGIN, resp, len, 2, csize);
    }
    fuzz_bytes_free(&enc[0]);
    fuzz_bytes_free(&enc[1]);
    return 0;
}
