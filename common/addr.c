/*
 * addr.c — RFC 5321 mailbox syntax.
 *
 *   Mailbox       = Local-part "@" ( Domain / address-literal )
 *   Local-part    = Dot-string / Quoted-string
 *   Dot-string    = Atom *("."  Atom)
 *   Atom          = 1*atext
 *   Quoted-string = DQUOTE *QcontentSMTP DQUOTE
 *   Domain        = sub-domain *("." sub-domain)
 *   sub-domain    = Let-dig [Ldh-str]
 *
 * RFC 6531 adds UTF8-non-ascii to atext, qtextSMTP and sub-domain.
 * Pure but for inet_pton, which reads nothing but its arguments.
 */
#include "addr.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* RFC 5322 atext: letters, digits and these specials. */
static bool is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool is_let_dig(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Length of the UTF-8 sequence at s[0..len), or 0 if it is not valid. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned min;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

bool addr_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

void addr_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* Skips one UTF-8 sequence when allowed; returns its length or 0. */
static size_t utf8_at(const unsigned char *s, size_t len, unsigned flags)
{
    if (!(flags & ADDR_UTF8) || s[0] < 0x80)
        return 0;
    return utf8_seq(s, len);
}

static bool dot_string_ok(const unsigned char *s, size_t len, unsigned flags)
{
    bool atom_empty = true;
    for (size_t i = 0; i < len;) {
        size_t n;
        if (s[i] == '.') {
            if (atom_empty)
                return false;
            atom_empty = true;
            i++;
        } else if (is_atext(s[i])) {
            atom_empty = false;
            i++;
        } else if ((n = utf8_at(s + i, len - i, flags)) > 0) {
            atom_empty = false;
            i += n;
        } else {
            return false;
        }
    }
    return !atom_empty;
}

/* s[0..len) is the whole quoted string, quotes included. */
static bool quoted_string_ok(const unsigned char *s, size_t len, unsigned flags)
{
    if (len < 2 || s[0] != '"' || s[len - 1] != '"')
        return false;
    for (size_t i = 1; i < len - 1;) {
        size_t n;
        if (s[i] == '\\') {
            /* quoted-pairSMTP = %d92 %d32-126 */
            if (i + 1 >= len - 1 || s[i + 1] < 32 || s[i + 1] > 126)
                return false;
            i += 2;
        } else if (s[i] == '"') {
            return false;
        } else if (s[i] >= 32 && s[i] <= 126) {
            i++; /* qtextSMTP: %d32-33 / %d35-91 / %d93-126, '"' and '\' above */
        } else if ((n = utf8_at(s + i, len - 1 - i, flags)) > 0) {
            i += n;
        } else {
            return false;
        }
    }
    return true;
}

int addr_parse_domain(const char *s, size_t len, unsigned flags, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    if (len == 0 || len > ADDR_DOMAIN_MAX)
        return -KOTAK_EADDR;
    size_t label = 0;
    for (size_t i = 0; i < len;) {
        size_t n;
        if (p[i] == '.') {
            if (label == 0 || p[i - 1] == '-')
                return -KOTAK_EADDR;
            label = 0;
            i++;
            continue;
        }
        if (is_let_dig(p[i])) {
            n = 1;
        } else if (p[i] == '-' && label > 0) {
            n = 1;
        } else if ((n = utf8_at(p + i, len - i, flags)) == 0) {
            return -KOTAK_EADDR;
        }
        label += n;
        if (label > 63)
            return -KOTAK_EADDR;
        i += n;
    }
    if (label == 0 || p[len - 1] == '-')
        return -KOTAK_EADDR;
    memcpy(out, s, len);
    out[len] = '\0';
    addr_lower(out);
    return 0;
}

/*
 * address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
 *                         General-address-literal ) "]"
 * General-address-literal = Standardized-tag ":" 1*dcontent
 */
static bool literal_ok(const unsigned char *s, size_t len)
{
    char text[ADDR_DOMAIN_MAX + 1];
    unsigned char ip[16];
    if (len < 3 || len > ADDR_DOMAIN_MAX || s[0] != '[' || s[len - 1] != ']')
        return false;
    size_t n = len - 2;
    memcpy(text, s + 1, n);
    text[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        /* dcontent = %d33-90 / %d94-126: printable, no brackets or '\' */
        unsigned char c = (unsigned char)text[i];
        if (c < 33 || c > 126 || c == '[' || c == ']' || c == '\\')
            return false;
    }
    if (inet_pton(AF_INET, text, ip) == 1)
        return true;
    if (strncasecmp(text, "IPv6:", 5) == 0)
        return inet_pton(AF_INET6, text + 5, ip) == 1;
    /* Standardized-tag = Ldh-str: letters, digits, inner hyphens. */
    const char *colon = strchr(text, ':');
    if (colon == NULL || colon == text || colon[1] == '\0' || colon[-1] == '-')
        return false;
    for (const char *p = text; p < colon; p++)
        if (!is_let_dig((unsigned char)*p) && (*p != '-' || p == text))
            return false;
    return true;
}

int addr_parse(const char *s, size_t len, unsigned flags, struct addr *r)
{
    const unsigned char *p = (const unsigned char *)s;
    if (len == 0 || len > ADDR_MAX)
        return -KOTAK_EADDR;
    /* The '@' that ends the local part: the last one, since a quoted local
     * part may hold '@' but a domain never does. */
    size_t at = len;
    while (at > 0 && p[at - 1] != '@')
        at--;
    if (at == 0)
        return -KOTAK_EADDR;
    size_t local_len = at - 1;
    const char *dom = s + at;
    size_t dom_len = len - at;
    if (local_len == 0 || local_len > ADDR_LOCAL_MAX)
        return -KOTAK_EADDR;
    bool local_ok;
    if (p[0] == '"')
        local_ok = (flags & ADDR_QUOTED) && quoted_string_ok(p, local_len, flags);
    else
        local_ok = dot_string_ok(p, local_len, flags);
    if (!local_ok)
        return -KOTAK_EADDR;
    if (dom_len > 0 && dom[0] == '[') {
        if (!(flags & ADDR_LITERAL) || !literal_ok((const unsigned char *)dom, dom_len))
            return -KOTAK_EADDR;
        memcpy(r->domain, dom, dom_len);
        r->domain[dom_len] = '\0';
    } else if (addr_parse_domain(dom, dom_len, flags, r->domain) < 0) {
        return -KOTAK_EADDR;
    }
    memcpy(r->local, s, local_len);
    r->local[local_len] = '\0';
    return 0;
}

size_t addr_local_base_len(const char *local)
{
    const char *plus = strchr(local, '+');
    if (plus == NULL || plus == local)
        return strlen(local);
    return (size_t)(plus - local);
}

bool addr_same_mailbox(const char *a, const char *b)
{
    const char *at_a = strrchr(a, '@'), *at_b = strrchr(b, '@');
    if (at_a == NULL || at_b == NULL)
        return strcmp(a, b) == 0;
    return at_a - a == at_b - b && memcmp(a, b, (size_t)(at_a - a)) == 0 &&
           strcasecmp(at_a, at_b) == 0;
}
