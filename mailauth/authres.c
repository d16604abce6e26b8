/*
 * authres.c — finding the Authentication-Results: fields that claim to be
 * ours (RFC 8601 5), and writing ours. See authres.h.
 */
#include "authres.h"

#include <stdbool.h>

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
