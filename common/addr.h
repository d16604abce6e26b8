/*
 * addr.h — RFC 5321 mailbox rules (section 4.1.2 and 4.5.3.1), with the
 * RFC 6531 extension that allows UTF-8 in both parts.
 *
 * Pure functions: bytes in, a verdict and the two parts out. The SMTP parser,
 * the store and the admin command all decide "is this a mailbox?" here, so
 * that they never disagree.
 */
#ifndef KOTAK_ADDR_H
#define KOTAK_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1 */
#define ADDR_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */
#define ADDR_MAX 254        /* a path is 256 octets with its angle brackets */
/* A buffer for "local@domain" that the compiler can see is large enough. */
#define ADDR_TEXT_SIZE (ADDR_LOCAL_MAX + 1 + ADDR_DOMAIN_MAX + 1)

enum addr_flags {
    ADDR_UTF8 = 1 << 0,    /* RFC 6531: UTF-8 allowed in local part and domain */
    ADDR_QUOTED = 1 << 1,  /* a Quoted-string local part is allowed */
    ADDR_LITERAL = 1 << 2, /* an address literal ([192.0.2.1]) is allowed as domain */
};

struct addr {
    char local[ADDR_LOCAL_MAX + 1]; /* as written; quotes kept if quoted */
    char domain[ADDR_DOMAIN_MAX + 1]; /* ASCII letters folded to lower case */
};

/*
 * Parses the mailbox s[0..len) ("local@domain", no angle brackets).
 * Returns 0 and fills *r, or -KOTAK_EADDR when it is not a mailbox under the
 * given flags.
 */
int addr_parse(const char *s, size_t len, unsigned flags, struct addr *r);

/*
 * Checks that s[0..len) is a domain name (dot-separated labels of letters,
 * digits and inner hyphens, each 1 to 63 octets, 255 in all) and copies it,
 * folded to lower case, into out[ADDR_DOMAIN_MAX + 1]. With ADDR_UTF8,
 * labels may hold UTF-8. Returns 0 or -KOTAK_EADDR.
 */
int addr_parse_domain(const char *s, size_t len, unsigned flags, char *out);

/* True when s[0..len) is well-formed UTF-8 with no overlong forms. */
bool addr_utf8_valid(const char *s, size_t len);

/* Folds ASCII letters of the NUL-terminated s to lower case, in place. */
void addr_lower(char *s);

/*
 * The length of the local part without its plus tag: "bob+lists" gives 3
 * ("bob"). A local part with no '+', or one starting with '+', is whole.
 */
size_t addr_local_base_len(const char *local);

/* Whether two "local@domain" texts are one mailbox: the local part as given
 * (only its own server may fold it), the domain in any case. */
bool addr_same_mailbox(const char *a, const char *b);

#endif
