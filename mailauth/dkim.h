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

/*
 * One signature's verdict. Every string is visible ASCII without spaces
 * (why aside, which is ours), empty when the signature did not hold a
 * usable value: safe to write into a header field or a log line.
 */
struct dkim_result {
    enum dkim_status status;
    char domain[DNS_NAME_MAX + 1];   /* d=, lower case */
    char selector[DNS_NAME_MAX + 1]; /* s= */
    char algorithm[16];              /* a=, as "rsa-sha256" */
    char b_prefix[16];               /* the first 8 characters of b= (RFC 6008 header.b) */
    char why[160];                   /* a short reason, for output and comments */
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
 * After finish: frees the header section kept (up to DKIM_HEADER_MAX),
 * which the verdicts no longer need (each signature's header hash is
 * taken at finish); dkim_verify_header then answers NULL. For a caller
 * that keeps the verifier while DNS answers, many messages at once.
 */
void dkim_verify_drop_header(struct dkim_verify *v);

/*
 * On the loop, after finish: asks DNS for each signature's key, as of now
 * (t= and x=). Returns 0 when questions are out: then cb runs exactly
 * once, on the loop, never inside this call, when every answer is in (if
 * the resolver is freed first, the signatures still waiting get
 * temperror and cb runs during dns_free). On the loop an answer is only
 * read as far as its tags and its key's base64, and the key chosen is
 * kept (at most one per signature); dkim_verify_check, after cb, does the
 * rest. Returns 1 when no signature needs a key (none at all, or each one
 * judged from the message alone): every verdict is known now and cb never
 * runs. Returns a negative code when the resolver is closing (cb then
 * never runs).
 */
int dkim_verify_keys(struct dkim_verify *v, struct dns *dns, time_t now, void (*cb)(void *ctx),
                     void *ctx);

/*
 * After dkim_verify_keys' cb: checks each signature against the key kept
 * for it (parsing the key, the RSA work). Pure, and not on the loop: a
 * verifier is one caller's at a time, on any thread. Until it runs, a
 * signature with a key waiting says temperror.
 */
void dkim_verify_check(struct dkim_verify *v);

/* Signatures with a verdict (0 when there is none), and each verdict. */
size_t dkim_verify_count(const struct dkim_verify *v);
const struct dkim_result *dkim_verify_result(const struct dkim_verify *v, size_t i);

/*
 * Frees *v, sets it to NULL; cb never runs afterwards, even with DNS
 * questions out (they are left to end on their own: the last answer frees
 * what they share). NULL or *v NULL is a no-op.
 */
void dkim_verify_free(struct dkim_verify **v);

/*
 * The pure halves of dkim_verify_keys, for tests and for callers with
 * their own DNS: the name to ask for signature i's key
 * ("SELECTOR._domainkey.DOMAIN"), or NULL when its verdict is already
 * known; and the answer to that question (dns_txt's), read and checked
 * as dkim_verify_keys and dkim_verify_check do, which gives the verdict.
 * After finish.
 */
const char *dkim_verify_key_name(struct dkim_verify *v, size_t i, time_t now);
void dkim_verify_key_answer(struct dkim_verify *v, size_t i, enum dns_status status,
                            const char *const *records, const size_t *lens, size_t n);

/* --- signing -------------------------------------------------------------- */

struct dkim_sign;

/* What a signer may do otherwise than kotak does; tests use it. */
struct dkim_sign_opts {
    bool simple_header, simple_body; /* c=: relaxed unless asked */
    const char *headers;             /* h= as written, or NULL: the oversigned default */
    bool body_length;                /* l= the whole body (kotak never signs with l=) */
    time_t expire;                   /* x=, or 0 for none */
};

/* A signer for kotak's signatures: relaxed/relaxed, the oversigned fields. */
struct dkim_sign *dkim_sign_new(void);
/* A signer with other options (copied; headers must outlive the signer). */
struct dkim_sign *dkim_sign_new_opts(const struct dkim_sign_opts *o);

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

/* --- keys ------------------------------------------------------------------ */

/*
 * A new RSA key of bits bits (e = 65537), as PKCS#1 PEM in *pem_r (the
 * caller wipes and frees it, *len_r octets plus a NUL). Returns 0, or a
 * negative code with a sentence in err. Slow (seconds for 2048 bits).
 */
int dkim_keygen(unsigned bits, char **pem_r, size_t *len_r, char *err, size_t err_size);

/*
 * The DNS record that publishes the public half of the private key in
 * pem[0..len): "v=DKIM1; k=rsa; p=BASE64" in *record_r (the caller frees
 * it). Returns 0, or a negative code with a sentence in err.
 */
int dkim_key_record(const unsigned char *pem, size_t len, char **record_r, char *err,
                    size_t err_size);

/* Whether s is a selector kotak writes: dot-separated labels of letters, digits and '-'. */
bool dkim_selector_valid(const char *s);

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

/* --- the pure pieces underneath, for tests and fuzzing ----------------------- */

/* A tag=value pair of a tag list (RFC 6376 3.2); both point into the input. */
struct dkim_tag {
    const char *name, *value; /* the value without the whitespace around it */
    size_t name_len, value_len;
};

#define DKIM_TAGS_MAX 32 /* a list with more tags than this is refused */

/*
 * Parses the tag list p[0..n) into tags[0..max). Returns 0 with *count_r,
 * -EINVAL for a list that breaks RFC 6376 3.2's grammar (a tag twice, a
 * character no value may hold), -E2BIG for more than max tags.
 */
int dkim_tags_parse(const char *p, size_t n, struct dkim_tag *tags, size_t max, size_t *count_r);

/*
 * One header field f[0..n) (its final CRLF optional) canonicalized (RFC
 * 6376 3.4.1, 3.4.2) into out, which has room for n + 2 octets; returns
 * the length written, a final CRLF included.
 */
size_t dkim_header_canon(bool relaxed, const char *f, size_t n, char *out);

/*
 * A body canonicalizer (RFC 6376 3.4.3, 3.4.4) fed in pieces split
 * anywhere; out receives the canonical body in pieces. Holds no more than
 * its own fields between calls: a count of empty lines that may yet end
 * the body, and a pending CR or run of whitespace.
 */
struct dkim_body_canon {
    bool relaxed;
    bool cr;        /* the last octet was a CR, its LF may follow */
    bool wsp;       /* relaxed: whitespace seen, written as one SP if more follows */
    bool line;      /* the current line has content */
    bool any;       /* some content was written */
    uint64_t empty; /* empty lines held back */
    char buf[512];  /* written to out when full and at the end of each call */
    size_t len;
};

void dkim_body_canon_init(struct dkim_body_canon *c, bool relaxed);
void dkim_body_canon_feed(struct dkim_body_canon *c, const char *p, size_t n,
                          void (*out)(void *ctx, const char *p, size_t n), void *ctx);
void dkim_body_canon_finish(struct dkim_body_canon *c,
                            void (*out)(void *ctx, const char *p, size_t n), void *ctx);

#endif
