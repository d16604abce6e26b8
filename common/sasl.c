/*
 * sasl.c — base64 and the PLAIN and LOGIN mechanisms; see sasl.h.
 *
 * The decoder is strict because a client that sends anything but canonical
 * base64 is broken or probing, and because a lenient decoder lets one
 * password travel in many spellings (a gift to anyone matching logs or
 * replaying lines). Decoded bytes that may hold a password live on the stack
 * only as long as a call and are wiped with explicit_bzero before it
 * returns.
 */
#include "sasl.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "addr.h"

/* The longest PLAIN message: authzid NUL authcid NUL passwd. */
#define SASL_MSG_MAX (3 * SASL_FIELD_MAX + 2)
/* The longest base64 text that can decode to SASL_MSG_MAX bytes. */
#define SASL_B64_MAX (4 * ((SASL_MSG_MAX + 2) / 3))

/* s->step once the exchange has ended, well or badly. */
#define SASL_STEP_END (-1)

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* "Username:" and "Password:" in base64, LOGIN's two challenges. */
#define LOGIN_USER_CHALLENGE "VXNlcm5hbWU6"
#define LOGIN_PASS_CHALLENGE "UGFzc3dvcmQ6"

/* The 6-bit value of a base64 character, or -1 for anything else ('='
 * included: padding is handled by the caller). */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

ssize_t sasl_b64_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size)
{
    /* Split the text into data characters and trailing padding first. */
    size_t pad = 0;
    while (pad < in_len && in[in_len - 1 - pad] == '=')
        pad++;
    size_t body = in_len - pad;
    size_t rem = body % 4;
    if (rem == 1)
        return -EINVAL; /* six bits cannot make a byte */
    if (pad > 0 && (rem == 0 || pad != 4 - rem))
        return -EINVAL; /* padding must exactly complete the last quantum */

    for (size_t i = 0; i < body; i++)
        if (b64_value((unsigned char)in[i]) < 0)
            return -EINVAL;
    /* The bits of the last character that carry no data must be zero. */
    if (rem == 2 && (b64_value((unsigned char)in[body - 1]) & 0x0f) != 0)
        return -EINVAL;
    if (rem == 3 && (b64_value((unsigned char)in[body - 1]) & 0x03) != 0)
        return -EINVAL;

    size_t n = body / 4 * 3 + (rem == 0 ? 0 : rem - 1);
    if (n > out_size)
        return -ENOBUFS;
    if (n > SSIZE_MAX)
        return -EINVAL;

    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < body; i++) {
        acc = (acc << 6) | (uint32_t)b64_value((unsigned char)in[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    assert(o == n);
    return (ssize_t)n;
}

ssize_t sasl_b64_encode(const uint8_t *in, size_t in_len, char *out, size_t out_size)
{
    size_t quanta = in_len / 3 + (in_len % 3 != 0);
    if (quanta > (SSIZE_MAX - 1) / 4 || out_size < quanta * 4 + 1)
        return -ENOBUFS;
    size_t o = 0;
    for (size_t i = 0; i < in_len; i += 3) {
        size_t left = in_len - i;
        uint32_t v = (uint32_t)in[i] << 16;
        if (left > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (left > 2)
            v |= in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 0x3f];
        out[o++] = b64_alphabet[(v >> 12) & 0x3f];
        out[o++] = left > 1 ? b64_alphabet[(v >> 6) & 0x3f] : '=';
        out[o++] = left > 2 ? b64_alphabet[v & 0x3f] : '=';
    }
    out[o] = '\0';
    return (ssize_t)o;
}

int sasl_mech_parse(const char *name, size_t len, enum sasl_mech *mech_r)
{
    static const struct {
        const char *name;
        enum sasl_mech mech;
    } mechs[] = {
        {"PLAIN", SASL_PLAIN},
        {"LOGIN", SASL_LOGIN},
    };
    for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
        if (strlen(mechs[i].name) != len)
            continue;
        size_t j = 0;
        /* ASCII folding by hand: strncasecmp would follow the locale. */
        while (j < len) {
            char c = name[j];
            if (c >= 'a' && c <= 'z')
                c = (char)(c - 'a' + 'A');
            if (c != mechs[i].name[j])
                break;
            j++;
        }
        if (j == len) {
            *mech_r = mechs[i].mech;
            return 0;
        }
    }
    return -ENOENT;
}

void sasl_begin(struct sasl *s, enum sasl_mech mech)
{
    sasl_clear(s);
    s->mech = mech;
    s->step = 0;
}

const char *sasl_first_challenge(enum sasl_mech mech)
{
    return mech == SASL_LOGIN ? LOGIN_USER_CHALLENGE : "";
}

void sasl_clear(struct sasl *s)
{
    explicit_bzero(s, sizeof(*s));
}

/*
 * Copies p[0..n) into dst[SASL_FIELD_MAX + 1] as a C string when it is a
 * field kotak keeps: at most SASL_FIELD_MAX bytes of UTF-8 with no control
 * character below 0x20 (NUL included). Returns 0 or -EINVAL.
 */
static int copy_field(char *dst, const uint8_t *p, size_t n)
{
    if (n > SASL_FIELD_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20)
            return -EINVAL;
    if (!addr_utf8_valid((const char *)p, n))
        return -EINVAL;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

/* RFC 4616: message = [authzid] NUL authcid NUL passwd. */
static int plain_parse(struct sasl *s, const uint8_t *msg, size_t n)
{
    const uint8_t *nul1 = memchr(msg, '\0', n);
    if (nul1 == NULL)
        return -EINVAL;
    const uint8_t *authcid = nul1 + 1;
    const uint8_t *nul2 = memchr(authcid, '\0', n - (size_t)(authcid - msg));
    if (nul2 == NULL)
        return -EINVAL;
    const uint8_t *passwd = nul2 + 1;
    size_t passwd_len = n - (size_t)(passwd - msg);
    /* A third NUL would otherwise hide inside the password. */
    if (memchr(passwd, '\0', passwd_len) != NULL)
        return -EINVAL;
    size_t authzid_len = (size_t)(nul1 - msg);
    size_t authcid_len = (size_t)(nul2 - authcid);
    if (authcid_len == 0 || passwd_len == 0)
        return -EINVAL;
    int rc;
    if ((rc = copy_field(s->authzid, msg, authzid_len)) < 0 ||
        (rc = copy_field(s->user, authcid, authcid_len)) < 0 ||
        (rc = copy_field(s->password, passwd, passwd_len)) < 0)
        return rc;
    /* Asking to act as oneself is no proxy request: forget it, so that a
     * non-empty authzid always means one the caller must refuse. */
    if (strcmp(s->authzid, s->user) == 0)
        s->authzid[0] = '\0';
    return SASL_DONE;
}

/* Writes the NUL-terminated challenge c into out[0..size). */
static int put_challenge(const char *c, char *out, size_t size)
{
    size_t n = strlen(c);
    if (out == NULL || n >= size)
        return -ENOBUFS;
    memcpy(out, c, n + 1);
    return SASL_CONTINUE;
}

int sasl_step(struct sasl *s, const char *resp, size_t len, char *challenge, size_t challenge_size)
{
    if (s->step == SASL_STEP_END)
        return -EINVAL;

    int rc;
    uint8_t msg[SASL_MSG_MAX];
    ssize_t n = 0;
    if (len == 1 && resp[0] == '*') {
        rc = -ECANCELED;
        goto out;
    }
    if (!(len == 1 && resp[0] == '=')) {
        /* Refuse overlong lines before the decoder walks them. */
        n = len > SASL_B64_MAX ? -EINVAL : sasl_b64_decode(resp, len, msg, sizeof(msg));
        if (n < 0) {
            rc = -EINVAL; /* -ENOBUFS too: the message is longer than any valid one */
            goto out;
        }
    }

    switch (s->mech) {
    case SASL_PLAIN:
        rc = plain_parse(s, msg, (size_t)n);
        break;
    case SASL_LOGIN:
        if (n == 0) {
            rc = -EINVAL;
        } else if (s->step == 0) {
            rc = copy_field(s->user, msg, (size_t)n);
            if (rc == 0)
                rc = put_challenge(LOGIN_PASS_CHALLENGE, challenge, challenge_size);
        } else {
            rc = copy_field(s->password, msg, (size_t)n);
            if (rc == 0)
                rc = SASL_DONE;
        }
        break;
    default:
        rc = -EINVAL;
        break;
    }

out:
    explicit_bzero(msg, sizeof(msg));
    if (rc < 0) {
        enum sasl_mech mech = s->mech;
        sasl_clear(s);
        s->mech = mech;
        s->step = SASL_STEP_END;
    } else if (rc == SASL_DONE) {
        s->step = SASL_STEP_END;
    } else {
        s->step++;
    }
    return rc;
}
