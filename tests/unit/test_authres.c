/*
 * test_authres.c — Authentication-Results: fields that claim to be ours are
 * found, whatever their case, folding and comments; others' are left.
 */
#include <stdlib.h>
#include <string.h>

#include "authres.h"
#include "tap.h"

/* The fields found, as the text they cover, joined by "|". */
static const char *found(const char *hdr, const char *id)
{
    static char out[2048];
    struct authres_range *r;
    size_t n = authres_find_ours(hdr, strlen(hdr), id, &r);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t o = strlen(out);
        snprintf(out + o, sizeof(out) - o, "%s%.*s", i ? "|" : "", (int)r[i].len, hdr + r[i].offset);
    }
    free(r);
    return out;
}

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

    const char *hdr = "Return-Path: <a@b.example>\r\n"
                      "Authentication-Results: mx.example.org; dkim=pass\r\n"
                      "Received: from x\r\n"
                      "authentication-results : MX.Example.ORG;\r\n"
                      "\tspf=pass smtp.mailfrom=b.example\r\n"
                      "Authentication-Results: other.example; dkim=fail\r\n"
                      "Authentication-Results: mx.example.org.evil; none\r\n"
                      "X-Authentication-Results: mx.example.org; none\r\n"
                      "Subject: Authentication-Results: mx.example.org;\r\n"
                      "Authentication-Results:(c)mx.example.org;none\r\n";
    is_str(found(hdr, "mx.example.org"),
           "Authentication-Results: mx.example.org; dkim=pass\r\n"
           "|authentication-results : MX.Example.ORG;\r\n\tspf=pass smtp.mailfrom=b.example\r\n"
           "|Authentication-Results:(c)mx.example.org;none\r\n",
           "ours found with their continuation lines, in any case; others' and look-alikes left");
    is_str(found("Authentication-Results: mx.example.org; none", "mx.example.org"),
           "Authentication-Results: mx.example.org; none", "a last field without a line end");
    is_str(found("Authentication-Results: mx.example.org; none\n\tmore\nX: y\n", "mx.example.org"),
           "Authentication-Results: mx.example.org; none\n\tmore\n", "LF line ends");
    is_str(found("", "mx.example.org"), "", "an empty header section: none");
    is_str(found("Authentication-Results", "mx.example.org"), "", "a name alone: none");
    return done_testing();
}
