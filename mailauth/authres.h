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

/*
 * The authserv-id of one Authentication-Results: field's value (what
 * follows the colon), into out[out_size]: 0, or -1 when there is none or
 * it does not fit. Comments and folding around it are skipped; a quoted
 * one is unquoted.
 */
int authres_authserv_id(const char *value, size_t len, char *out, size_t out_size);

#endif
