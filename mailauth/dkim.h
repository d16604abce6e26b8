/*
 * dkim.h — DomainKeys Identified Mail (RFC 6376): signing what users send
 * and verifying what the MX takes, rsa-sha256, with mbedTLS.
 *
 * Both sides read a message the same way: fed in pieces split anywhere
 * (the spool, read on a worker thread), its header section kept in memory
 * up to DKIM_HEADER_MAX, its body only hashed, canonicalized as it goes.
 * Feeding is pure (no I/O, no globals), so it runs off the event loop;
 * verifying then asks DNS for each signature's key on the loop.
 */
#ifndef KOTAK_DKIM_H
#define KOTAK_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dns.h"

/* A header section longer than this is neither signed nor verified. */
#define DKIM_HEADER_MAX (256u << 10)
/* Signatures verified per message; the rest are ignored (RFC 6376 6.1 allows a limit). */
#define DKIM_SIGS_MAX 8

/* RFC 8601 2.7.1's words. */
enum dkim_status {
    DKIM_NONE, /* no signature */
    DKIM_PASS,
    DKIM_FAIL,
    DKIM_NEUTRAL,
    DKIM_POLICY,
    DKIM_TEMPERROR,
    DKIM_PERMERROR,
};

const char *dkim_status_name(enum dkim_status s);

/* One signature's verdict. */
struct dkim_result {
    enum dkim_status status;
    char domain[DNS_NAME_MAX + 1]; /* d=, lower case */
    char selector[DNS_NAME_MAX + 1]; /* s= */
    char algorithm[16];             /* a=, as "rsa-sha256" */
    char b_prefix[16];              /* the first 8 characters of b= (RFC 6008 header.b) */
    char why[160];                  /* a short reason, for output and comments */
};

/* --- verifying ------------------------------------------------------------ */

struct dkim_verify;

struct dkim_verify *dkim_verify_new(void);

/* Reads the next piece of the message (header section and body, as stored). Pure. */
void dkim_verify_feed(struct dkim_verify *v, const char *p, size_t n);

/* The message ends: body hashes are final, the signatures known. Pure. */
void dkim_verify_finish(struct dkim_verify *v);

/*
 * The header section as fed (with the line end of its last field, without
 * the empty line), or NULL when it was longer than DKIM_HEADER_MAX. Valid
 * until dkim_verify_free. After finish.
 */
const char *dkim_verify_header(const struct dkim_verify *v, size_t *len_r);

/*
 * On the loop, after finish: asks DNS for each signature's key and checks
 * it, as of now (x= expiry). cb runs exactly once, on the loop, never
 * inside this call, when every signature has its verdict. Returns 0, or a
 * negative code when the resolver is closing (cb then never runs).
 */
int dkim_verify_keys(struct dkim_verify *v, struct dns *dns, time_t now, void (*cb)(void *ctx),
                     void *ctx);

/* Signatures with a verdict (0 when there is none), and each verdict. */
size_t dkim_verify_count(const struct dkim_verify *v);
const struct dkim_result *dkim_verify_result(const struct dkim_verify *v, size_t i);

/* Frees *v, sets it to NULL; cb never runs afterwards, even with DNS questions out. */
void dkim_verify_free(struct dkim_verify **v);

/* --- signing -------------------------------------------------------------- */

struct dkim_sign;

struct dkim_sign *dkim_sign_new(void);

/* Reads the next piece of the message to sign. Pure. */
void dkim_sign_feed(struct dkim_sign *s, const char *p, size_t n);

/*
 * Signs what was fed, relaxed/relaxed rsa-sha256, as domain (d=) with
 * selector (s=) and the PEM private key key_pem[0..key_len), at now (t=).
 * *field_r becomes "DKIM-Signature: ...\r\n", folded, to go in front of
 * the message; the caller frees it. Returns 0, or a negative code with a
 * sentence in err (a bad key, a header section past DKIM_HEADER_MAX).
 * Pure but slow (an RSA private-key operation): off the loop.
 */
int dkim_sign_finish(struct dkim_sign *s, const char *domain, const char *selector,
                     const unsigned char *key_pem, size_t key_len, time_t now, char **field_r,
                     char *err, size_t err_size);

void dkim_sign_free(struct dkim_sign **s);

/* --- keys on disk --------------------------------------------------------- */

/*
 * Reads the signing key of domain from dir (the data folder's dkim/):
 * the file SELECTOR._domainkey.DOMAIN.pem with selector preferred when it
 * is there, else the newest such file of the domain. Returns 1 with the
 * selector in selector_r[DNS_NAME_MAX + 1] and the PEM in *pem_r (the
 * caller wipes and frees it, *len_r octets plus a NUL), 0 when the domain
 * has no key, or a negative errno.
 */
int dkim_key_read(const char *dir, const char *domain, const char *selector, char *selector_r,
                  unsigned char **pem_r, size_t *len_r);

#endif
