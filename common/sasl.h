/*
 * sasl.h — the server side of the SASL mechanisms PLAIN (RFC 4616) and LOGIN
 * (draft-murchison-sasl-login) as SMTP AUTH (RFC 4954) and POP3 AUTH
 * (RFC 5034) carry them, and the base64 of RFC 4648 they travel in.
 *
 * Pure code: no I/O, no allocation, no globals. The session feeds each client
 * line to sasl_step and sends the challenge it gets back; when sasl_step says
 * SASL_DONE the user name and password sit in struct sasl for the caller to
 * check, after which the caller wipes them with sasl_clear.
 */
#ifndef KOTAK_SASL_H
#define KOTAK_SASL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Decodes the base64 text in[0..in_len) into out[0..out_size). Strict: only
 * the RFC 4648 alphabet, no whitespace or line breaks, '=' only as one or two
 * final pad characters that complete a quantum, and the unused bits of the
 * last character must be zero (one encoding per byte string). Input without
 * its padding ("QQ" for "QQ==") is accepted too. Returns the decoded length,
 * -EINVAL for malformed input, or -ENOBUFS when out_size is too small for
 * well-formed input (out is then untouched). Nothing is NUL-terminated.
 */
ssize_t sasl_b64_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size);

/*
 * Encodes in[0..in_len) as padded base64 into out[0..out_size) and writes a
 * NUL after it. Returns the encoded length (the NUL not counted), or -ENOBUFS
 * when out_size is smaller than 4 * ceil(in_len / 3) + 1 (out untouched).
 */
ssize_t sasl_b64_encode(const uint8_t *in, size_t in_len, char *out, size_t out_size);

#define SASL_FIELD_MAX 255 /* max authzid/authcid/password length kept */

enum sasl_mech { SASL_PLAIN, SASL_LOGIN };

/* sasl_step's results; a negative result is -errno, see sasl_step. */
enum sasl_step_result { SASL_DONE = 1, SASL_CONTINUE = 0 };

/*
 * One authentication exchange. The three fields are NUL-terminated; they
 * hold valid UTF-8 with no character below 0x20. authzid is "" unless the
 * client asked (PLAIN only) to act as a user other than itself. step is
 * private to sasl.c.
 */
struct sasl {
    enum sasl_mech mech;
    int step;
    char authzid[SASL_FIELD_MAX + 1], user[SASL_FIELD_MAX + 1], password[SASL_FIELD_MAX + 1];
};

/*
 * Looks up the mechanism named by name[0..len), in any case ("PLAIN",
 * "login"). Returns 0 with *mech_r set, or -ENOENT for a name kotak does not
 * offer.
 */
int sasl_mech_parse(const char *name, size_t len, enum sasl_mech *mech_r);

/* Starts an exchange: empties s and sets its mechanism. */
void sasl_begin(struct sasl *s, enum sasl_mech mech);

/*
 * Feeds one client response: resp[0..len) is base64 text without its CRLF,
 * either an initial response from the AUTH command line or a reply to a
 * challenge. "=" stands for an empty response (RFC 4954's form for an empty
 * initial response); an empty line is empty too. Returns:
 *
 *   SASL_DONE      s->user and s->password are complete (and s->authzid,
 *                  non-empty only when it names a user other than s->user:
 *                  kotak does not support proxy authorization, so the
 *                  caller refuses the login then). challenge is untouched.
 *   SASL_CONTINUE  the next challenge, already base64 and NUL-terminated,
 *                  is in challenge[0..challenge_size) (LOGIN's "Password:"
 *                  after the user name).
 *   -ECANCELED     the client sent "*".
 *   -EINVAL        bad base64, a malformed PLAIN message, an empty user name
 *                  or password, a field longer than SASL_FIELD_MAX, or one
 *                  that is not UTF-8 or holds a control character; also a
 *                  call after the exchange ended.
 *   -ENOBUFS       challenge_size is too small for the challenge (a caller
 *                  bug; 16 bytes are always enough).
 *
 * After any negative result the exchange is over and s holds no secrets;
 * later calls return -EINVAL until sasl_begin. After SASL_DONE the caller
 * owns the password in s and must wipe it with sasl_clear once checked.
 */
int sasl_step(struct sasl *s, const char *resp, size_t len, char *challenge, size_t challenge_size);

/*
 * The challenge to send when AUTH came without an initial response: "" for
 * PLAIN (RFC 4954's empty "334 " line), "VXNlcm5hbWU6" ("Username:") for
 * LOGIN. A static string.
 */
const char *sasl_first_challenge(enum sasl_mech mech);

/* Wipes every field of s, the password with explicit_bzero. */
void sasl_clear(struct sasl *s);

#endif
