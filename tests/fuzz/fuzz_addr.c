/*
 * fuzz_addr.c — RFC 5321 mailbox and domain rules (common/addr.h).
 *
 * Input: the bytes of a mailbox ("local@domain", no brackets), tried under
 * every combination of ADDR_UTF8, ADDR_QUOTED and ADDR_LITERAL. Properties
 * are in fuzz_addr.h (models of UTF-8, Dot-string and Domain; the parts of
 * an accepted mailbox; flags only ever widen). Here too: the whole input as
 * a domain name, and the small helpers addr_lower and addr_local_base_len.
 */
#include "fuzz_addr.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_addr_check(data, size);

    for (unsigned flags = 0; flags < 8; flags++) {
        char out[ADDR_DOMAIN_MAX + 1];
        int rc = addr_parse_domain((const char *)data, size, flags, out);
        bool want = fuzz_ref_domain(data, size, flags & ADDR_UTF8);
        FUZZ_CHECK(rc == 0 || rc == -KOTAK_EADDR, "addr_parse_domain returned %d", rc);
        FUZZ_CHECK((rc == 0) == want, "addr_parse_domain(flags %u) says %d, the model %d", flags,
                   rc, want);
        if (rc == 0) {
            FUZZ_CHECK(strlen(out) == size, "the copied domain has another length");
            for (size_t i = 0; i < size; i++) {
                uint8_t c = data[i];
                uint8_t w = c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
                FUZZ_CHECK((uint8_t)out[i] == w, "the copied domain is not the input, folded");
            }
        }
    }

    /* The helpers take C strings: the input up to its first NUL. */
    size_t n = strnlen((const char *)data, size);
    char *s = malloc(n + 1);
    memcpy(s, data, n);
    s[n] = '\0';
    size_t base = addr_local_base_len(s);
    const char *plus = strchr(s, '+');
    size_t want = plus == NULL || plus == s ? n : (size_t)(plus - s);
    FUZZ_CHECK(base == want, "addr_local_base_len gave %zu, want %zu", base, want);
    addr_lower(s);
    FUZZ_CHECK(strlen(s) == n, "addr_lower changed the length");
    for (size_t i = 0; i < n; i++) {
        uint8_t c = data[i];
        FUZZ_CHECK((uint8_t)s[i] == (c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c),
                   "addr_lower changed a byte that is not an ASCII capital");
    }
    free(s);
    return 0;
}
