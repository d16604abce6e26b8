/*
 * authres.h — the Authentication-Results: header field (RFC 8601): the one
 * kotak-smtpd's MX puts on each message it takes, and the ones already on
 * a message that claim to be ours.
 *
 * A message from outside may carry an Authentication-Results: field with
 * our host name as its authserv-id, saying "dkim=pass" of a forgery; mail
 * readers trust what their own server says, so each such field goes
 * before ours is added (RFC 8601 5). Pure: bytes in, answers out.
 */
#ifndef KOTAK_AUTHRES_H
#define KOTAK_AUTHRES_H

#include <stddef.h>
#include <stdint.h>

/* Where one header field lies in a header section: [offset, offset + len). */
struct authres_range {
    uint64_t offset, len;
};

/*
 * Finds the Authentication-Results: fields of the header section
 * hdr[0..len) (fields with their CRLF or LF line ends, folded or not)
 * whose authserv-id is authserv_id (compared without regard to case),
 * each with its continuation lines and line end. Returns how many, with
 * their ranges in order in *ranges_r (the caller frees it; NULL for none).
 */
size_t authres_find_ours(const char *hdr, size_t len, const char *authserv_id,
                         struct authres_range **ranges_r);

/*
 * The authserv-id of one Authentication-Results: field's value (what
 * follows the colon), into out[out_size]: 0, or -1 when there is none or
 * it does not fit. Comments and folding around it are skipped; a quoted
 * one is unquoted.
 */
int authres_authserv_id(const char *value, size_t len, char *out, size_t out_size);

#endif
