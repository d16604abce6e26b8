/*
 * srs.c — the Sender Rewriting Scheme; see srs.h.
 */
#include "srs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/md.h>

#define HASH_CHARS 6 /* base32 digits: 30 bits */

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

static int b32_value(char c)
{
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

/* The day, two base32 digits: days since the epoch, mod 1024. */
static void day_stamp(int64_t now, char out[3])
{
    unsigned d = (unsigned)((now / 86400) % 1024);
    out[0] = b32[d >> 5];
    out[1] = b32[d & 31];
    out[2] = '\0';
}

/* The hash over "TT=domain=local", lower-cased. */
static void hash(const uint8_t secret[SRS_SECRET_SIZE], const char *tt, const char *domain,
                 size_t domain_len, const char *local, size_t local_len, char out[HASH_CHARS + 1])
{
    char dom[ADDR_DOMAIN_MAX + 1], loc[ADDR_TEXT_SIZE];
    size_t n = domain_len < ADDR_DOMAIN_MAX ? domain_len : ADDR_DOMAIN_MAX;
    size_t ln = local_len < sizeof(loc) - 1 ? local_len : sizeof(loc) - 1;
    memcpy(dom, domain, n);
    dom[n] = '\0';
    addr_lower(dom);
    memcpy(loc, local, ln);
    loc[ln] = '\0';
    addr_lower(loc);
    uint8_t mac[32];
    mbedtls_md_context_t ctx;
    mbedtls_md_init(&ctx);
    mbedtls_md_setup(&ctx, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 1);
    mbedtls_md_hmac_starts(&ctx, secret, SRS_SECRET_SIZE);
    mbedtls_md_hmac_update(&ctx, (const unsigned char *)tt, 2);
    mbedtls_md_hmac_update(&ctx, (const unsigned char *)"=", 1);
    mbedtls_md_hmac_update(&ctx, (const unsigned char *)dom, n);
    mbedtls_md_hmac_update(&ctx, (const unsigned char *)"=", 1);
    mbedtls_md_hmac_update(&ctx, (const unsigned char *)loc, ln);
    mbedtls_md_hmac_finish(&ctx, mac);
    mbedtls_md_free(&ctx);
    uint32_t bits = (uint32_t)mac[0] << 24 | (uint32_t)mac[1] << 16 | (uint32_t)mac[2] << 8 | mac[3];
    for (int i = 0; i < HASH_CHARS; i++)
        out[i] = b32[(bits >> (27 - 5 * i)) & 31];
    out[HASH_CHARS] = '\0';
}

bool srs_is_srs(const char *local)
{
    return strncasecmp(local, "SRS0=", 5) == 0;
}

int srs_forward(const uint8_t secret[SRS_SECRET_SIZE], int64_t now, const char *sender,
                const char *domain, char out[ADDR_TEXT_SIZE])
{
    const char *at = strrchr(sender, '@');
    if (at == NULL || at == sender || at[1] == '\0')
        return -EINVAL;
    size_t local_len = (size_t)(at - sender);
    if (srs_is_srs(sender) && strcasecmp(at + 1, domain) == 0) {
        snprintf(out, ADDR_TEXT_SIZE, "%s", sender); /* ours already: it maps back as it is */
        return 0;
    }
    char tt[3], h[HASH_CHARS + 1];
    day_stamp(now, tt);
    hash(secret, tt, at + 1, strlen(at + 1), sender, local_len, h);
    /* Within RFC 5321's 64 octets: the bounce must come back through our
     * own RCPT, which takes no longer local part. */
    int n = snprintf(out, ADDR_TEXT_SIZE, "SRS0=%s=%s=%s=%.*s@%s", h, tt, at + 1, (int)local_len,
                     sender, domain);
    if (n < 0 || (size_t)n >= ADDR_TEXT_SIZE || (size_t)n - strlen(domain) - 1 > ADDR_LOCAL_MAX)
        return -ENAMETOOLONG;
    return 0;
}

int srs_reverse(const uint8_t secret[SRS_SECRET_SIZE], int64_t now, const char *local,
                char out[ADDR_TEXT_SIZE])
{
    if (!srs_is_srs(local))
        return -EINVAL;
    /* SRS0=HHHHHH=TT=domain=local: the original local part may hold '='. */
    const char *h = local + 5;
    const char *tt = strchr(h, '=');
    if (tt == NULL || tt - h != HASH_CHARS)
        return -EINVAL;
    tt++;
    const char *dom = strchr(tt, '=');
    if (dom == NULL || dom - tt != 2)
        return -EINVAL;
    dom++;
    const char *orig_local = strchr(dom, '=');
    if (orig_local == NULL || orig_local == dom || orig_local[1] == '\0')
        return -EINVAL;
    size_t dom_len = (size_t)(orig_local - dom);
    orig_local++;
    int d1 = b32_value(tt[0]), d2 = b32_value(tt[1]);
    if (d1 < 0 || d2 < 0)
        return -EINVAL;
    char stamp[3] = {b32[d1], b32[d2], '\0'};
    char want[HASH_CHARS + 1];
    hash(secret, stamp, dom, dom_len, orig_local, strlen(orig_local), want);
    unsigned diff = 0; /* every digit looked at: no early exit to time */
    for (int i = 0; i < HASH_CHARS; i++) {
        int v = b32_value(h[i]);
        diff |= v < 0 ? 1u : (unsigned)(v ^ b32_value(want[i]));
    }
    if (diff != 0)
        return -EACCES;
    unsigned today = (unsigned)((now / 86400) % 1024), made = (unsigned)(d1 << 5 | d2);
    if ((today + 1024 - made) % 1024 > SRS_MAX_AGE_DAYS)
        return -ETIMEDOUT;
    int n = snprintf(out, ADDR_TEXT_SIZE, "%s@%.*s", orig_local, (int)dom_len, dom);
    if (n < 0 || (size_t)n >= ADDR_TEXT_SIZE)
        return -EINVAL;
    return 0;
}
