/*
 * srs.h — the Sender Rewriting Scheme, for aliases that forward mail to
 * other servers.
 *
 * Mail from bob@sender.example, taken for an alias here and sent on to
 * carol@elsewhere.example, would reach elsewhere.example with a sender
 * whose SPF record does not name this server, and fail. So the copy sent on
 * carries a sender of our own domain that encodes the original:
 *
 *     SRS0=HHHHHH=TT=sender.example=bob@alias-domain.example
 *
 * TT is the day it was made (two base32 digits, days since the epoch mod
 * 1024), HHHHHH the first 30 bits of an HMAC-SHA256 over
 * "TT=sender.example=bob", lower-cased, under a secret of this store
 * (base32). A bounce to that address maps back to bob@sender.example while
 * the day is at most SRS_MAX_AGE_DAYS old and the hash holds, so no one can
 * make this server relay to an address of their choosing by making up one.
 * Case does not count anywhere, since some servers fold whole addresses: the
 * original comes back in the case the bounce wrote it.
 *
 * Pure: the day and the secret come from the caller.
 */
#ifndef KOTAK_SRS_H
#define KOTAK_SRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define SRS_SECRET_SIZE 32
#define SRS_MAX_AGE_DAYS 21 /* a bounce may come this long after the mail */

/*
 * Writes the rewritten sender for sender ("local@domain", not empty) as an
 * address at domain into out[ADDR_TEXT_SIZE]. A sender that is already an
 * SRS0 address of ours is kept as it is (a second alias hop here). Returns
 * 0, or -EINVAL for a sender that is not an address, -ENAMETOOLONG when
 * the result's local part would pass RFC 5321's 64 octets (the caller then
 * keeps the original, with the SPF risk it has: a bounce to a longer one
 * could not come back through RCPT).
 */
int srs_forward(const uint8_t secret[SRS_SECRET_SIZE], int64_t now, const char *sender,
                const char *domain, char out[ADDR_TEXT_SIZE]);

/*
 * Whether local looks like an SRS0 local part ("SRS0=", any case): only
 * then does srs_reverse have anything to say.
 */
bool srs_is_srs(const char *local);

/*
 * Maps an SRS0 local part back to the original sender, written into
 * out[ADDR_TEXT_SIZE]. Returns 0; -EINVAL when it is not one of the form;
 * -EACCES when the hash does not hold (made up, or another server's
 * secret); -ETIMEDOUT when it is older than SRS_MAX_AGE_DAYS.
 */
int srs_reverse(const uint8_t secret[SRS_SECRET_SIZE], int64_t now, const char *local,
                char out[ADDR_TEXT_SIZE]);

#endif
