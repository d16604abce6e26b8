/*
 * fuzz_dmarc.c — DMARC's pure parsers (mailauth/dmarc.c) and the public
 * suffix list (mailauth/psl.c), on text from the world: a message's header
 * section, a TXT record, a domain name.
 *
 * Input: byte 0 picks the part (mod 3); the rest is its text. Properties:
 *   - From: dmarc_from_domain returns -1, 0 or 1; with 1 the domain is a
 *     name DNS can carry (dns_name_valid), in lower case, without a final
 *     dot, and each of its labels was written in the input (case aside;
 *     obsolete syntax allows comments and spaces around the dots);
 *   - record: dmarc_record_parse returns -1, 0 or 1; with 1 p= and sp= are
 *     policies, pct= is at most 100, and without sp= it equals p=; a ';'
 *     added at the end changes nothing, and neither does reading the
 *     record from a copy that ends exactly where it does;
 *   - name: with Debian's list (when installed), psl_org_domain gives "" or
 *     a tail of the name at a label boundary, and the Organizational
 *     Domain of an Organizational Domain is itself.
 */
#include <strings.h>

#include "dmarc.h"
#include "fuzz.h"
#include "psl.h"

static bool is_lower_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DNS_NAME_MAX || s[n - 1] == '.' || !dns_name_valid(s))
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            return false;
    return true;
}

/* Whether each label of name occurs in hay[0..len), case aside. */
static bool labels_occur(const char *hay, size_t len, const char *name)
{
    while (*name != '\0') {
        size_t n = strcspn(name, ".");
        bool found = false;
        for (size_t i = 0; i + n <= len && !found; i++)
            found = strncasecmp(hay + i, name, n) == 0;
        if (!found)
            return false;
        name += n + (name[n] == '.');
    }
    return true;
}

static void fuzz_from(const char *p, size_t n)
{
    char out[DNS_NAME_MAX + 1];
    int rc = dmarc_from_domain(p, n, out);
    FUZZ_CHECK(rc == DMARC_FROM_SEVERAL || (rc >= -1 && rc <= 1), "rc %d", rc);
    if (rc == 1) {
        FUZZ_CHECK(is_lower_name(out), "not a lower-case name: '%s'", out);
        FUZZ_CHECK(labels_occur(p, n, out), "'%s' is not in the input", out);
    }
}

static bool same_record(const struct dmarc_record *a, const struct dmarc_record *b)
{
    return a->p == b->p && a->sp == b->sp && a->sp_given == b->sp_given &&
           a->adkim_strict == b->adkim_strict && a->aspf_strict == b->aspf_strict &&
           a->pct == b->pct && a->p_from_rua == b->p_from_rua;
}

static void fuzz_record(const char *p, size_t n)
{
    struct dmarc_record r, r2;
    char *copy = malloc(n + 1);
    memcpy(copy, p, n);
    int rc = dmarc_record_parse(copy, n, &r);
    FUZZ_CHECK(rc >= -1 && rc <= 1, "rc %d", rc);
    if (rc == 1) {
        FUZZ_CHECK(r.p <= DMARC_POLICY_REJECT && r.sp <= DMARC_POLICY_REJECT, "policy");
        FUZZ_CHECK(r.pct <= 100, "pct %u", r.pct);
        FUZZ_CHECK(r.sp_given || r.sp == r.p, "sp without sp= differs from p=");
    }
    copy[n] = ';';
    int rc2 = dmarc_record_parse(copy, n + 1, &r2);
    FUZZ_CHECK(rc2 == rc, "a final ';' changed %d to %d", rc, rc2);
    FUZZ_CHECK(rc != 1 || same_record(&r, &r2), "a final ';' changed the record");
    free(copy);
}

static void fuzz_name(const char *p, size_t n)
{
    static struct psl *psl;
    static bool tried;
    if (!tried) {
        char err[256];
        tried = true;
        psl = psl_load(PSL_DEFAULT_PATH, err, sizeof(err));
    }
    if (psl == NULL)
        return;
    char name[DNS_NAME_MAX + 3], out[DNS_NAME_MAX + 1], again[DNS_NAME_MAX + 1];
    n = n < sizeof(name) - 1 ? n : sizeof(name) - 1;
    memcpy(name, p, n);
    name[n] = '\0'; /* a NUL inside ends the name early: fine */
    psl_org_domain(psl, name, out);
    size_t len = strlen(name), olen = strlen(out);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (olen == 0)
        return;
    FUZZ_CHECK(olen <= len && strncasecmp(name + len - olen, out, olen) == 0,
               "'%s' is no tail of '%s'", out, name);
    FUZZ_CHECK(olen == len || name[len - olen - 1] == '.', "'%s' cuts a label of '%s'", out, name);
    psl_org_domain(psl, out, again);
    FUZZ_CHECK(strcmp(out, again) == 0, "org of '%s' is '%s'", out, again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0:
        fuzz_from(p, n);
        break;
    case 1:
        fuzz_record(p, n);
        break;
    default:
        fuzz_name(p, n);
        break;
    }
    return 0;
}
