/*
 * test_authres.c — Authentication-Results: the authserv-id of a field,
 * whatever its folding, comments and quotes.
 */
#include <string.h>

#include "authres.h"
#include "tap.h"

static const char *id_of(const char *value)
{
    static char out[64];
    if (authres_authserv_id(value, strlen(value), out, sizeof(out)) < 0)
        return "(none)";
    return out;
}

int main(void)
{
    is_str(id_of(" mx.example.org; spf=pass"), "mx.example.org", "the authserv-id before ';'");
    is_str(id_of(" (a comment (nested)) mx.example.org 1; none"), "mx.example.org",
           "comments are skipped, the version is not part of it");
    is_str(id_of("\r\n\tmx.example.org;"), "mx.example.org", "folded before it");
    is_str(id_of(" \"mx.example.org\"; none"), "mx.example.org", "quoted");
    is_str(id_of(" mx.example.org(comment); none"), "mx.example.org", "a comment right after it");
    is_str(id_of(" ; none"), "(none)", "empty: none");
    is_str(id_of(" \"unclosed"), "(none)", "an unclosed quote: none");
    is_str(id_of(" (unclosed comment mx.example.org"), "(none)", "an unclosed comment: none");

    return done_testing();
}
