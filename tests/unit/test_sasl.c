/*
 * test_sasl.c — SASL for SMTP and POP3 AUTH (common/sasl.h): base64 against
 * the vectors of RFC 4648 section 10 and a table of malformed text; PLAIN
 * messages with and without authzid, empty, misplaced and extra NULs,
 * over-long fields and control characters; LOGIN's two steps and their
 * challenges; "*" and "="; and that failures and sasl_clear leave no
 * password behind.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "sasl.h"
#include "tap.h"

/* Large enough for the base64 of any message the tests build. */
#define B64_BUF 4096

static void test_b64_vectors(void)
{
    static const struct {
        const char *plain, *b64, *unpadded;
    } v[] = {
        {"", "", ""},
        {"f", "Zg==", "Zg"},
        {"fo", "Zm8=", "Zm8"},
        {"foo", "Zm9v", "Zm9v"},
        {"foob", "Zm9vYg==", "Zm9vYg"},
        {"fooba", "Zm9vYmE=", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t plen = strlen(v[i].plain), blen = strlen(v[i].b64);
        char enc[64];
        is_int(sasl_b64_encode((const uint8_t *)v[i].plain, plen, enc, sizeof(enc)), blen,
               "encode \"%s\": length", v[i].plain);
        is_str(enc, v[i].b64, "encode \"%s\"", v[i].plain);

        /* The exact size (with the NUL) works; one byte less does not. */
        char exact[64];
        memset(exact, 'X', sizeof(exact));
        is_int(sasl_b64_encode((const uint8_t *)v[i].plain, plen, exact, blen + 1), blen,
               "encode \"%s\" into exactly %zu bytes", v[i].plain, blen + 1);
        memset(exact, 'X', sizeof(exact));
        is_int(sasl_b64_encode((const uint8_t *)v[i].plain, plen, exact, blen), -ENOBUFS,
               "encode \"%s\" into %zu bytes: -ENOBUFS", v[i].plain, blen);
        ok(exact[0] == 'X', "encode \"%s\": a short buffer stays untouched", v[i].plain);

        uint8_t dec[64];
        memset(dec, 0, sizeof(dec));
        is_int(sasl_b64_decode(v[i].b64, blen, dec, sizeof(dec)), plen, "decode \"%s\"", v[i].b64);
        ok(memcmp(dec, v[i].plain, plen) == 0, "decode \"%s\": bytes", v[i].b64);
        memset(dec, 0, sizeof(dec));
        is_int(sasl_b64_decode(v[i].unpadded, strlen(v[i].unpadded), dec, sizeof(dec)), plen,
               "decode unpadded \"%s\"", v[i].unpadded);
        ok(memcmp(dec, v[i].plain, plen) == 0, "decode unpadded \"%s\": bytes", v[i].unpadded);

        is_int(sasl_b64_decode(v[i].b64, blen, dec, plen), plen,
               "decode \"%s\" into exactly %zu bytes", v[i].b64, plen);
        if (plen > 0)
            is_int(sasl_b64_decode(v[i].b64, blen, dec, plen - 1), -ENOBUFS,
                   "decode \"%s\" into %zu bytes: -ENOBUFS", v[i].b64, plen - 1);
    }
}

static void test_b64_binary(void)
{
    uint8_t all[256], back[256];
    for (size_t i = 0; i < sizeof(all); i++)
        all[i] = (uint8_t)i;
    /* Every length 0..256 of every byte value, so each tail shape and each
     * alphabet character go through both directions. */
    bool good = true;
    for (size_t n = 0; n <= sizeof(all); n++) {
        char enc[400];
        ssize_t e = sasl_b64_encode(all + sizeof(all) - n, n, enc, sizeof(enc));
        ssize_t d = e < 0 ? e : sasl_b64_decode(enc, (size_t)e, back, sizeof(back));
        if (e != (ssize_t)(4 * ((n + 2) / 3)) || d != (ssize_t)n ||
            memcmp(back, all + sizeof(all) - n, n) != 0)
            good = false;
    }
    ok(good, "binary round trip of lengths 0..256");

    char enc[400];
    ssize_t e = sasl_b64_encode(all, sizeof(all), enc, sizeof(enc));
    ok(e > 0 && strchr(enc, '+') != NULL && strchr(enc, '/') != NULL,
       "the encoding of all bytes uses '+' and '/'");
}

static void test_b64_malformed(void)
{
    static const struct {
        const char *in;
        size_t len; /* 0: strlen(in) */
        const char *why;
    } bad[] = {
        {"Z", 0, "one character"},
        {"Zm9vY", 0, "five characters"},
        {"Zm9vY===", 0, "three pad characters"},
        {"Zg=", 0, "pad that does not complete the quantum"},
        {"QQ======", 0, "more pad than the quantum needs"},
        {"Zm8=====", 0, "pad past a completed quantum"},
        {"Zg===", 0, "too much padding"},
        {"Zm9v=", 0, "pad after a complete quantum"},
        {"Zm9v====", 0, "a quantum of padding"},
        {"=", 0, "a lone pad"},
        {"==", 0, "two pads"},
        {"====", 0, "four pads"},
        {"Zm=v", 0, "pad inside"},
        {"Zg==Zg==", 0, "two padded quanta"},
        {"Zh==", 0, "non-zero trailing bits after one byte"},
        {"Zm9=", 0, "non-zero trailing bits after two bytes"},
        {"Zm9 v", 0, "a space inside"},
        {" Zm9v", 0, "a leading space"},
        {"Zm9v ", 0, "a trailing space"},
        {"Zm9v\r\n", 0, "a CRLF"},
        {"Zm9\tv", 0, "a tab"},
        {"Zm9v!A==", 0, "a '!'"},
        {"Zm9v-_==", 0, "the URL-safe alphabet"},
        {"Zm\0v", 4, "a NUL inside"},
        {"Zm\xc3\xa9", 0, "a non-ASCII byte"},
        {".AAA", 0, "a '.'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t out[64];
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].in);
        is_int(sasl_b64_decode(bad[i].in, len, out, sizeof(out)), -EINVAL, "decode refuses %s",
               bad[i].why);
        /* Malformed input is -EINVAL even when the buffer is too small. */
        is_int(sasl_b64_decode(bad[i].in, len, out, 0), -EINVAL,
               "decode refuses %s (no room either)", bad[i].why);
    }
}

/* Base64 of the n bytes of raw into out[B64_BUF]. */
static size_t b64(const void *raw, size_t n, char *out)
{
    ssize_t e = sasl_b64_encode(raw, n, out, B64_BUF);
    return e < 0 ? 0 : (size_t)e;
}

/* True when no field of s holds a byte. */
static bool fields_empty(const struct sasl *s)
{
    static const char zero[SASL_FIELD_MAX + 1];
    return memcmp(s->authzid, zero, sizeof(zero)) == 0 &&
           memcmp(s->user, zero, sizeof(zero)) == 0 && memcmp(s->password, zero, sizeof(zero)) == 0;
}

static void test_mech_parse(void)
{
    static const struct {
        const char *name;
        size_t len; /* 0: strlen(name) */
        int rc;
        enum sasl_mech mech;
    } v[] = {
        {"PLAIN", 0, 0, SASL_PLAIN},
        {"plain", 0, 0, SASL_PLAIN},
        {"PlAiN", 0, 0, SASL_PLAIN},
        {"LOGIN", 0, 0, SASL_LOGIN},
        {"login", 0, 0, SASL_LOGIN},
        {"PLAIN LOGIN", 5, 0, SASL_PLAIN},
        {"PLAI", 0, -ENOENT, 0},
        {"PLAINX", 0, -ENOENT, 0},
        {"CRAM-MD5", 0, -ENOENT, 0},
        {"XOAUTH2", 0, -ENOENT, 0},
        {"", 0, -ENOENT, 0},
        {"PLAIN\0", 6, -ENOENT, 0},
        {"P\xc5\x81"
         "AIN",
         0, -ENOENT, 0},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        enum sasl_mech m = (enum sasl_mech) - 1;
        size_t len = v[i].len ? v[i].len : strlen(v[i].name);
        is_int(sasl_mech_parse(v[i].name, len, &m), v[i].rc, "mech_parse \"%.*s\"", (int)len,
               v[i].name);
        if (v[i].rc == 0)
            is_int(m, v[i].mech, "mech_parse \"%.*s\": mechanism", (int)len, v[i].name);
    }
}

static void test_first_challenge(void)
{
    is_str(sasl_first_challenge(SASL_PLAIN), "", "PLAIN's first challenge is empty");
    is_str(sasl_first_challenge(SASL_LOGIN), "VXNlcm5hbWU6", "LOGIN's first challenge");
    uint8_t dec[32];
    ssize_t n = sasl_b64_decode("VXNlcm5hbWU6", 12, dec, sizeof(dec));
    ok(n == 9 && memcmp(dec, "Username:", 9) == 0, "LOGIN's first challenge is \"Username:\"");
    n = sasl_b64_decode("UGFzc3dvcmQ6", 12, dec, sizeof(dec));
    ok(n == 9 && memcmp(dec, "Password:", 9) == 0, "\"UGFzc3dvcmQ6\" is \"Password:\"");
}

/* A string of n copies of c in out (which has room for n + 1). */
static const char *rep(char *out, char c, size_t n)
{
    memset(out, c, n);
    out[n] = '\0';
    return out;
}

static void test_plain(void)
{
    char f255[256], f256[257], p255[256];
    rep(f255, 'u', 255);
    rep(f256, 'u', 256);
    rep(p255, 'p', 255);

    /* Messages are (authzid, authcid, passwd) joined by NULs unless raw
     * is set, which then gives the exact bytes. */
    struct {
        const char *why;
        const char *authzid, *authcid, *passwd;
        const char *raw;
        size_t raw_len;
        int rc;
        const char *want_authzid;
    } v[] = {
        {"RFC 4616 example", "", "tim", "tanstaaftanstaaf", NULL, 0, SASL_DONE, ""},
        {"authzid different from authcid is kept", "Ursel", "Kurt", "xipj3plmq", NULL, 0, SASL_DONE,
         "Ursel"},
        {"authzid equal to authcid is dropped", "tim", "tim", "pw", NULL, 0, SASL_DONE, ""},
        {"authzid differing in case is kept", "Tim", "tim", "pw", NULL, 0, SASL_DONE, "Tim"},
        {"UTF-8 user and password", "", "jos\xc3\xa9", "p\xc3\xa4ss \xe2\x82\xac", NULL, 0,
         SASL_DONE, ""},
        {"password with spaces and DEL", "", "tim", " a b\x7f ", NULL, 0, SASL_DONE, ""},
        {"255-byte fields", f255, "tim", p255, NULL, 0, SASL_DONE, f255},
        {"255-byte authcid", "", f255, "pw", NULL, 0, SASL_DONE, ""},
        {"all three fields at 255 bytes", p255, f255, p255, NULL, 0, SASL_DONE, p255},
        {"256-byte authzid", f256, "tim", "pw", NULL, 0, -EINVAL, NULL},
        {"256-byte authcid", "", f256, "pw", NULL, 0, -EINVAL, NULL},
        {"256-byte password", "", "tim", f256, NULL, 0, -EINVAL, NULL},
        {"empty authcid", "", "", "pw", NULL, 0, -EINVAL, NULL},
        {"empty password", "", "tim", "", NULL, 0, -EINVAL, NULL},
        {"all empty", "", "", "", NULL, 0, -EINVAL, NULL},
        {"tab in authcid", "", "ti\tm", "pw", NULL, 0, -EINVAL, NULL},
        {"control character in password", "", "tim", "p\x01w", NULL, 0, -EINVAL, NULL},
        {"CR LF in password", "", "tim", "pw\r\n", NULL, 0, -EINVAL, NULL},
        {"ESC in authzid", "a\x1b", "tim", "pw", NULL, 0, -EINVAL, NULL},
        {"invalid UTF-8 in password", "", "tim", "p\xff", NULL, 0, -EINVAL, NULL},
        {"overlong UTF-8 in authcid", "", "\xc0\xaf", "pw", NULL, 0, -EINVAL, NULL},
        {"truncated UTF-8 in authcid", "", "tim\xc3", "pw", NULL, 0, -EINVAL, NULL},
        {"UTF-16 surrogate in password", "", "tim", "\xed\xa0\x80", NULL, 0, -EINVAL, NULL},
        {"no NUL", NULL, NULL, NULL, "timpw", 5, -EINVAL, NULL},
        {"one NUL", NULL, NULL, NULL, "\0tim", 4, -EINVAL, NULL},
        {"three NULs", NULL, NULL, NULL, "\0tim\0pw\0x", 9, -EINVAL, NULL},
        {"trailing third NUL", NULL, NULL, NULL, "\0tim\0pw\0", 8, -EINVAL, NULL},
        {"four NULs", NULL, NULL, NULL, "a\0tim\0p\0w\0", 10, -EINVAL, NULL},
        {"only NULs", NULL, NULL, NULL, "\0\0", 2, -EINVAL, NULL},
        {"empty message", NULL, NULL, NULL, "", 0, -EINVAL, NULL},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char raw[1024];
        size_t n;
        if (v[i].raw != NULL) {
            memcpy(raw, v[i].raw, v[i].raw_len);
            n = v[i].raw_len;
        } else {
            size_t a = strlen(v[i].authzid), c = strlen(v[i].authcid), p = strlen(v[i].passwd);
            memcpy(raw, v[i].authzid, a);
            raw[a] = '\0';
            memcpy(raw + a + 1, v[i].authcid, c);
            raw[a + 1 + c] = '\0';
            memcpy(raw + a + 2 + c, v[i].passwd, p);
            n = a + 2 + c + p;
        }
        char enc[B64_BUF];
        size_t elen = b64(raw, n, enc);

        struct sasl s;
        sasl_begin(&s, SASL_PLAIN);
        char ch[64];
        memcpy(ch, "untouched", 10);
        int rc = sasl_step(&s, enc, elen, ch, sizeof(ch));
        is_int(rc, v[i].rc, "PLAIN: %s", v[i].why);
        if (v[i].rc == SASL_DONE && rc == SASL_DONE) {
            is_str(s.authzid, v[i].want_authzid, "PLAIN: %s: authzid", v[i].why);
            is_str(s.user, v[i].authcid, "PLAIN: %s: user", v[i].why);
            is_str(s.password, v[i].passwd, "PLAIN: %s: password", v[i].why);
            is_str(ch, "untouched", "PLAIN: %s: no challenge", v[i].why);
            is_int(sasl_step(&s, enc, elen, ch, sizeof(ch)), -EINVAL,
                   "PLAIN: %s: a step after DONE is refused", v[i].why);
        } else {
            ok(fields_empty(&s), "PLAIN: %s: nothing kept", v[i].why);
            is_int(sasl_step(&s, enc, elen, ch, sizeof(ch)), -EINVAL,
                   "PLAIN: %s: a step after the failure is refused", v[i].why);
        }
        sasl_clear(&s);
    }
}

static void test_plain_text(void)
{
    char big[2048];
    static const struct {
        const char *resp;
        int rc;
        const char *why;
    } v[] = {
        {"*", -ECANCELED, "\"*\" cancels"},
        {"=", -EINVAL, "\"=\" is an empty message, which PLAIN refuses"},
        {"", -EINVAL, "an empty line is an empty message"},
        {"AHRpbQB0ZXN0!", -EINVAL, "bad base64"},
        {"AHRpbQB0ZXN0 ", -EINVAL, "trailing space"},
        {"AHRpbQB0ZXN0\r\n", -EINVAL, "CRLF left on the line"},
        {"AHRpbQB0ZXN0", SASL_DONE, "good base64 (\\0tim\\0test)"},
        {"AHRpbQB0ZXN0==", -EINVAL, "pad after a complete quantum"},
        {"AHRpbQB0ZXN", -EINVAL, "a truncated quantum with non-zero bits"},
        {"**", -EINVAL, "\"**\" is no cancel"},
        {"*=", -EINVAL, "\"*=\" is no cancel"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct sasl s;
        sasl_begin(&s, SASL_PLAIN);
        char ch[16];
        is_int(sasl_step(&s, v[i].resp, strlen(v[i].resp), ch, sizeof(ch)), v[i].rc,
               "PLAIN text: %s", v[i].why);
        sasl_clear(&s);
    }

    struct sasl s;
    char ch[16];
    sasl_begin(&s, SASL_PLAIN);
    memset(big, 'A', sizeof(big));
    is_int(sasl_step(&s, big, sizeof(big), ch, sizeof(ch)), -EINVAL,
           "PLAIN: a 2048-character line is refused");

    /* The longest valid message is 767 bytes, 1024 base64 characters; one
     * more quantum of zeros decodes fine but is too long. */
    sasl_begin(&s, SASL_PLAIN);
    is_int(sasl_step(&s, big, 1028, ch, sizeof(ch)), -EINVAL,
           "PLAIN: 1028 characters (771 bytes) are refused");
    sasl_begin(&s, SASL_PLAIN);
    is_int(sasl_step(&s, big, 1024, ch, sizeof(ch)), -EINVAL,
           "PLAIN: 1024 characters decoding to 768 bytes are refused");

    sasl_begin(&s, SASL_PLAIN);
    is_int(sasl_step(&s, "*", 1, NULL, 0), -ECANCELED, "PLAIN: cancel needs no challenge buffer");
    is_int(sasl_step(&s, "AHRpbQB0ZXN0", 12, ch, sizeof(ch)), -EINVAL,
           "PLAIN: a step after the cancel is refused");
    sasl_begin(&s, SASL_PLAIN);
    is_int(sasl_step(&s, "AHRpbQB0ZXN0", 12, NULL, 0), SASL_DONE,
           "PLAIN: DONE needs no challenge buffer");
    sasl_clear(&s);
}

/* Runs LOGIN with the given user and password lines; returns the result of
 * the last step taken and leaves the challenge after the first in ch. */
static int login_run(struct sasl *s, const char *user_line, const char *pass_line, char *ch,
                     size_t ch_size)
{
    sasl_begin(s, SASL_LOGIN);
    int rc = sasl_step(s, user_line, strlen(user_line), ch, ch_size);
    if (rc != SASL_CONTINUE)
        return rc;
    return sasl_step(s, pass_line, strlen(pass_line), ch, ch_size);
}

static void test_login(void)
{
    struct sasl s;
    char ch[64];

    /* The usual dialogue: AUTH LOGIN, 334 VXNlcm5hbWU6, user, 334
     * UGFzc3dvcmQ6, password. */
    sasl_begin(&s, SASL_LOGIN);
    is_str(sasl_first_challenge(s.mech), "VXNlcm5hbWU6", "LOGIN: asks for the user name");
    char enc[B64_BUF];
    size_t n = b64("tim", 3, enc);
    is_int(sasl_step(&s, enc, n, ch, sizeof(ch)), SASL_CONTINUE, "LOGIN: user name taken");
    is_str(ch, "UGFzc3dvcmQ6", "LOGIN: then asks for the password");
    is_str(s.user, "tim", "LOGIN: user so far");
    is_str(s.password, "", "LOGIN: no password yet");
    n = b64("tanstaaf", 8, enc);
    memcpy(ch, "untouched", 10);
    is_int(sasl_step(&s, enc, n, ch, sizeof(ch)), SASL_DONE, "LOGIN: password taken");
    is_str(s.user, "tim", "LOGIN: user");
    is_str(s.password, "tanstaaf", "LOGIN: password");
    is_str(s.authzid, "", "LOGIN: no authzid");
    is_str(ch, "untouched", "LOGIN: no challenge after DONE");
    is_int(sasl_step(&s, enc, n, ch, sizeof(ch)), -EINVAL, "LOGIN: a third step is refused");
    sasl_clear(&s);

    /* With an initial response (AUTH LOGIN dGlt) the first step is the
     * same: the user name. */
    is_int(login_run(&s, "dGlt", "cHc=", ch, sizeof(ch)), SASL_DONE, "LOGIN with initial response");
    ok(strcmp(s.user, "tim") == 0 && strcmp(s.password, "pw") == 0,
       "LOGIN with initial response: fields");

    static const struct {
        const char *user, *pass;
        int rc, where; /* where: 1 = fails at the first step, 2 = the second */
        const char *why;
    } v[] = {
        {"*", "cHc=", -ECANCELED, 1, "\"*\" for the user name"},
        {"dGlt", "*", -ECANCELED, 2, "\"*\" for the password"},
        {"=", "cHc=", -EINVAL, 1, "\"=\" (empty) user name"},
        {"", "cHc=", -EINVAL, 1, "empty line for the user name"},
        {"dGlt", "=", -EINVAL, 2, "\"=\" (empty) password"},
        {"dGlt", "", -EINVAL, 2, "empty line for the password"},
        {"dGlt!", "cHc=", -EINVAL, 1, "bad base64 user name"},
        {"dGlt", "cHd", -EINVAL, 2, "password with non-zero trailing bits"},
        {"dGltCg==", "cHc=", -EINVAL, 1, "LF in the user name"},
        {"dGlt", "cAB3", -EINVAL, 2, "NUL in the password"},
        {"dGlt", "cAl3", -EINVAL, 2, "tab in the password"},
        {"dP9t", "cHc=", -EINVAL, 1, "invalid UTF-8 in the user name"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        sasl_begin(&s, SASL_LOGIN);
        int rc1 = sasl_step(&s, v[i].user, strlen(v[i].user), ch, sizeof(ch));
        if (v[i].where == 1) {
            is_int(rc1, v[i].rc, "LOGIN: %s", v[i].why);
        } else {
            is_int(rc1, SASL_CONTINUE, "LOGIN: %s: user name taken", v[i].why);
            is_int(sasl_step(&s, v[i].pass, strlen(v[i].pass), ch, sizeof(ch)), v[i].rc,
                   "LOGIN: %s", v[i].why);
        }
        ok(fields_empty(&s), "LOGIN: %s: nothing kept", v[i].why);
        is_int(sasl_step(&s, "dGlt", 4, ch, sizeof(ch)), -EINVAL,
               "LOGIN: %s: a step after the failure is refused", v[i].why);
    }

    /* Field lengths: 255 bytes pass, 256 do not. */
    char e255[B64_BUF], e256[B64_BUF], raw[300];
    rep(raw, 'x', 256);
    b64(raw, 255, e255);
    b64(raw, 256, e256);
    is_int(login_run(&s, e255, e255, ch, sizeof(ch)), SASL_DONE,
           "LOGIN: 255-byte user name and password");
    ok(strlen(s.user) == 255 && strlen(s.password) == 255, "LOGIN: 255-byte fields kept whole");
    is_int(login_run(&s, e256, "cHc=", ch, sizeof(ch)), -EINVAL, "LOGIN: 256-byte user name");
    ok(fields_empty(&s), "LOGIN: 256-byte user name: nothing kept");
    is_int(login_run(&s, "dGlt", e256, ch, sizeof(ch)), -EINVAL, "LOGIN: 256-byte password");
    ok(fields_empty(&s), "LOGIN: 256-byte password: nothing kept");

    /* The challenge buffer: "UGFzc3dvcmQ6" and its NUL need 13 bytes. */
    sasl_begin(&s, SASL_LOGIN);
    is_int(sasl_step(&s, "dGlt", 4, ch, 12), -ENOBUFS, "LOGIN: a 12-byte challenge buffer");
    ok(fields_empty(&s), "LOGIN: short challenge buffer: nothing kept");
    sasl_begin(&s, SASL_LOGIN);
    is_int(sasl_step(&s, "dGlt", 4, ch, 13), SASL_CONTINUE, "LOGIN: a 13-byte challenge buffer");
    is_str(ch, "UGFzc3dvcmQ6", "LOGIN: challenge in 13 bytes");
    sasl_clear(&s);
}

static void test_clear(void)
{
    struct sasl s, zero;
    memset(&zero, 0, sizeof(zero));
    char ch[16];

    sasl_begin(&s, SASL_PLAIN);
    char enc[B64_BUF];
    size_t n = b64("admin\0bob\0hunter2", 17, enc);
    is_int(sasl_step(&s, enc, n, ch, sizeof(ch)), SASL_DONE, "clear: PLAIN done first");
    is_str(s.password, "hunter2", "clear: password there before");
    sasl_clear(&s);
    ok(memcmp(&s, &zero, sizeof(s)) == 0, "sasl_clear zeroes the whole struct");

    /* sasl_begin starts from nothing even on a used struct. */
    memset(&s, 0x5a, sizeof(s));
    sasl_begin(&s, SASL_LOGIN);
    ok(s.mech == SASL_LOGIN && fields_empty(&s), "sasl_begin empties a dirty struct");
    is_int(sasl_step(&s, "dGlt", 4, ch, sizeof(ch)), SASL_CONTINUE,
           "sasl_begin on a dirty struct: LOGIN starts at the user name");
    sasl_clear(&s);
}

int main(void)
{
    test_b64_vectors();
    test_b64_binary();
    test_b64_malformed();
    test_mech_parse();
    test_first_challenge();
    test_plain();
    test_plain_text();
    test_login();
    test_clear();
    return done_testing();
}
