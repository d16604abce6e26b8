/*
 * test_srs.c — SRS addresses: made for a forwarded message's sender, mapped
 * back for its bounce, refused when made up, tampered with or too old.
 */
#include <errno.h>
#include <string.h>

#include "srs.h"
#include "tap.h"

static const uint8_t secret[SRS_SECRET_SIZE] = "0123456789abcdef0123456789abcdef";
static const uint8_t other[SRS_SECRET_SIZE] = "fedcba9876543210fedcba9876543210";

#define DAY 86400
static const int64_t t0 = 1780000000;

/* The local part of an address, for srs_reverse. */
static const char *local_of(char *addr)
{
    char *at = strrchr(addr, '@');
    if (at != NULL)
        *at = '\0';
    return addr;
}

int main(void)
{
    char out[ADDR_TEXT_SIZE], back[ADDR_TEXT_SIZE], local[ADDR_TEXT_SIZE];

    is_int(srs_forward(secret, t0, "bob@Sender.example", "alias.test", out), 0, "forwarded");
    ok(strncmp(out, "SRS0=", 5) == 0, "an SRS0 address: %s", out);
    ok(strstr(out, "=Sender.example=bob@alias.test") != NULL, "it names the original: %s", out);
    snprintf(local, sizeof(local), "%s", out);
    is_int(srs_reverse(secret, t0, local_of(local), back), 0, "maps back");
    is_str(back, "bob@Sender.example", "to the original, as written");

    /* Some servers fold the whole address to lower or upper case. */
    for (char *p = local; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    is_int(srs_reverse(secret, t0, local, back), 0, "an upper-cased address maps back too");
    is_str(back, "BOB@SENDER.EXAMPLE", "to the original, as the bounce wrote it");

    /* Within SRS_MAX_AGE_DAYS, and across the 1024-day wrap of the stamp. */
    snprintf(local, sizeof(local), "%s", out);
    local_of(local);
    is_int(srs_reverse(secret, t0 + SRS_MAX_AGE_DAYS * DAY, local, back), 0, "21 days on: taken");
    is_int(srs_reverse(secret, t0 + (SRS_MAX_AGE_DAYS + 1) * DAY, local, back), -ETIMEDOUT,
           "22 days on: expired");
    int64_t wrap = (t0 / DAY / 1024 + 1) * 1024 * DAY - DAY; /* the last day before a wrap */
    char w[ADDR_TEXT_SIZE];
    is_int(srs_forward(secret, wrap, "a@b.example", "alias.test", w), 0, "made the day before a wrap");
    is_int(srs_reverse(secret, wrap + 3 * DAY, local_of(w), back), 0, "taken after the wrap");

    /* Made up, tampered with, or another store's. */
    is_int(srs_reverse(other, t0, local, back), -EACCES, "another secret: refused");
    char bad[ADDR_TEXT_SIZE];
    snprintf(bad, sizeof(bad), "%s", local);
    bad[5] = bad[5] == 'a' ? 'b' : 'a';
    is_int(srs_reverse(secret, t0, bad, back), -EACCES, "a changed hash: refused");
    snprintf(bad, sizeof(bad), "%s", local);
    char *orig = strstr(bad, "=bob");
    orig[1] = 'r'; /* another original */
    is_int(srs_reverse(secret, t0, bad, back), -EACCES, "a changed original: refused");
    snprintf(bad, sizeof(bad), "%s", local);
    char *dom = strstr(bad, "Sender");
    dom[0] = 'x';
    is_int(srs_reverse(secret, t0, bad, back), -EACCES, "a changed domain: refused");
    static const char *const junk[] = {
        "bob", "SRS0=", "SRS0=abcdef", "SRS0=abcdef=aa", "SRS0=abcdef=aa=", "SRS0=abcdef=aa=d=",
        "SRS0=abcde=aa=d=x", "SRS0=abcdefg=aa=d=x", "SRS0=abcdef=a=d=x", "SRS0=abcdef=1!=d=x",
        "SRS0=abcdef=aa==x",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        is_int(srs_reverse(secret, t0, junk[i], back), -EINVAL, "not one of the form: %s", junk[i]);

    /* An '=' in the original local part survives the trip. */
    is_int(srs_forward(secret, t0, "a=b=c@x.example", "alias.test", out), 0, "'=' in the original");
    snprintf(local, sizeof(local), "%s", out);
    is_int(srs_reverse(secret, t0, local_of(local), back), 0, "maps back");
    is_str(back, "a=b=c@x.example", "with its '='");

    /* A second alias hop here keeps our own SRS address as it is. */
    is_int(srs_forward(secret, t0, "bob@Sender.example", "alias.test", out), 0, "forwarded");
    is_int(srs_forward(secret, t0, out, "alias.test", back), 0, "forwarded again");
    is_str(back, out, "unchanged: it already maps back");

    /* Too long for a local part of 64 octets: the caller keeps the original. */
    is_int(srs_forward(secret, t0, "a-rather-long-local-part@a-rather-long-domain.example",
                       "alias.test", out),
           -ENAMETOOLONG, "too long to rewrite");
    is_int(srs_forward(secret, t0, "nodomain", "alias.test", out), -EINVAL, "not an address");
    ok(!srs_is_srs("bob") && srs_is_srs("srs0=x"), "srs_is_srs: by its prefix, any case");
    return done_testing();
}
