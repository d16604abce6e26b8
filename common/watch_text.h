/*
 * watch_text.h — what the live view shows of a client's line: the line
 * itself, but never a secret. Passwords (PASS, AUTH PLAIN, AUTH LOGIN's
 * second answer) and APOP digests are replaced by what they mean, here,
 * before any event exists. Pure.
 */
#ifndef KOTAK_WATCH_TEXT_H
#define KOTAK_WATCH_TEXT_H

#include <stddef.h>

#include "sasl.h"
#include "watch.h"

/*
 * A SASL response line (RFC 4954 4, RFC 5034 4) of mechanism mech at step
 * (sasl.step before the line is fed), as the view shows it: PLAIN "(as
 * NAME, password hidden)", LOGIN's first answer "(user name NAME)", its
 * second "(password hidden)", "*" as it is. Writes at most size - 1
 * octets and a NUL into out; returns the length.
 */
size_t watch_sasl_line(enum sasl_mech mech, int step, const char *line, size_t len, char *out,
                       size_t size);

/*
 * A command line as the view shows it: AUTH with an initial response, PASS
 * and APOP with their secrets replaced (also when the word runs into what
 * follows, "PASS\tsecret", which no server takes); any other line as it
 * came (cut to fit). Same out as watch_sasl_line.
 */
size_t watch_command_line(enum watch_proto proto, const char *line, size_t len, char *out,
                          size_t size);

/*
 * A value a client chose (an address) for a WATCH_MAIL event: each octet
 * outside 0x21..0x7e, and '%' and '=', as %XX, so that no value holds a
 * space or can pose as another key. Writes at most size - 1 octets and a
 * NUL (a value cut never ends inside a %XX); returns out.
 */
char *watch_value(char *out, size_t size, const char *value, size_t len);

/* What a TLS event says: "TLSv1.3 TLS-AES-256-GCM-SHA384, certificate NAME" (no name: without it). */
size_t watch_tls_text(const char *version, const char *cipher, const char *cert, char *out,
                      size_t size);

#endif
