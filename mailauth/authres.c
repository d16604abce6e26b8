/*
 * authres.c — finding the Authentication-Results: fields that claim to be
 * ours (RFC 8601 5). See authres.h.
 */
#include "authres.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skips folding white space and comments (RFC 5322 3.2.2, nested, with quoted pairs). */
static size_t skip_cfws(const char *p, size_t len, size_t i)
{
    unsigned depth = 0;
    while (i < len) {
        char c = p[i];
        if (depth > 0 && c == '\\' && i + 1 < len) {
            i += 2;
        } else if (c == '(') {
            depth++;
            i++;
        } else if (c == ')' && depth > 0) {
            depth--;
            i++;
        } else if (depth > 0 || is_wsp(c)) {
            i++;
        } else {
            break;
        }
    }
    return i;
}

int authres_authserv_id(const char *value, size_t len, char *out, size_t out_size)
{
    size_t i = skip_cfws(value, len, 0), o = 0;
    if (i < len && value[i] == '"') {
        for (i++; i < len && value[i] != '"'; i++) {
            if (value[i] == '\\' && i + 1 < len)
                i++;
            if (value[i] == '\r' || value[i] == '\n')
                continue; /* folding inside the quotes */
            if (o + 1 >= out_size)
                return -1;
            out[o++] = value[i];
        }
        if (i == len)
            return -1; /* no closing quote */
    } else {
        for (; i < len && !is_wsp(value[i]) && value[i] != ';' && value[i] != '('; i++) {
            if (o + 1 >= out_size)
                return -1;
            out[o++] = value[i];
        }
    }
    if (o == 0)
        return -1;
    out[o] = '\0';
    return 0;
}

/* The end of the line that starts at i, past its line end. */
static size_t line_end(const char *p, size_t len, size_t i)
{
    const char *nl = memchr(p + i, '\n', len - i);
    return nl != NULL ? (size_t)(nl - p) + 1 : len;
}

/* When the line at i starts "Authentication-Results" [WSP] ":", the offset past the colon. */
static size_t authres_name(const char *p, size_t len, size_t i)
{
    static const char name[] = "authentication-results";
    size_t n = sizeof(name) - 1;
    if (len - i < n + 1 || strncasecmp(p + i, name, n) != 0)
        return 0;
    size_t j = i + n;
    while (j < len && (p[j] == ' ' || p[j] == '\t'))
        j++;
    return j < len && p[j] == ':' ? j + 1 : 0;
}

size_t authres_find_ours(const char *hdr, size_t len, const char *authserv_id,
                         struct authres_range **ranges_r)
{
    struct authres_range *ranges = NULL;
    size_t n = 0, cap = 0;
    size_t i = 0;
    while (i < len) {
        size_t start = i, value = authres_name(hdr, len, i);
        i = line_end(hdr, len, i);
        while (i < len && (hdr[i] == ' ' || hdr[i] == '\t'))
            i = line_end(hdr, len, i); /* a continuation line belongs to the field */
        if (value == 0)
            continue;
        char id[256];
        if (authres_authserv_id(hdr + value, i - value, id, sizeof(id)) < 0 ||
            strcasecmp(id, authserv_id) != 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 4;
            ranges = xrealloc(ranges, cap * sizeof(*ranges));
        }
        ranges[n++] = (struct authres_range){start, i - start};
    }
    *ranges_r = ranges;
    return n;
}
