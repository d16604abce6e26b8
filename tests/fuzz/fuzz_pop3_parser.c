/*
 * fuzz_pop3_parser.c — POP3 command lines (pop3d/pop3_parser.h).
 *
 * Input: byte 0 picks the read boundaries; the rest is what the client
 * sends. It is parsed in random pieces, keeping the unconsumed bytes as the
 * glue does, and again all at once; both must give the same lines and the
 * same number of errors. Each line must be whole (its CRLF consumed right
 * after it), at most 255 octets with the CRLF (RFC 2449 4), and hold no CR,
 * LF or NUL. Each line is split into words, which must be the line's own
 * space-free, non-empty runs; a number argument must be what its digits say.
 */
#include "fuzz.h"
#include "pop3_parser.h"

static void check_command(const char *line, size_t len)
{
    struct pop3_command c;
    pop3_command_parse(line, len, &c);
    FUZZ_CHECK(c.argc <= POP3_ARGS_MAX, "%zu arguments", c.argc);
    FUZZ_CHECK(c.rest_len == 0 || (c.rest > line && c.rest + c.rest_len == line + len),
               "rest is not the end of the line");
    /* The model: the words after the first, split on spaces. */
    size_t i = 0, words = 0;
    while (i < len && line[i] != ' ')
        i++;
    while (i < len) {
        while (i < len && line[i] == ' ')
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && line[i] != ' ')
            i++;
        if (words < POP3_ARGS_MAX)
            FUZZ_CHECK(c.argv[words] == line + start && c.arg_len[words] == i - start,
                       "argument %zu is not the line's word", words);
        words++;
    }
    FUZZ_CHECK(c.argc == (words < POP3_ARGS_MAX ? words : POP3_ARGS_MAX),
               "%zu arguments for %zu words", c.argc, words);
    FUZZ_CHECK(c.too_many_args == (words > POP3_ARGS_MAX), "too_many_args %d for %zu words",
               c.too_many_args, words);
    for (size_t k = 0; k < c.argc; k++) {
        unsigned long v = 0;
        const char *s = c.argv[k];
        size_t n = c.arg_len[k];
        unsigned long max = k == 0 ? 1000ul : 4294967295ul;
        int rc = pop3_parse_number(s, n, max, &v);
        bool digits = n > 0 && n <= 10 && s[0] != '0';
        unsigned long long want = 0;
        for (size_t j = 0; j < n && digits; j++) {
            digits = s[j] >= '0' && s[j] <= '9';
            want = want * 10 + (unsigned long long)(s[j] - '0');
        }
        bool ok = digits && want <= max;
        FUZZ_CHECK((rc == 0) == ok,
                   "pop3_parse_number says %d for a word that is%s a number <= %lu", rc,
                   ok ? "" : " not", max);
        if (rc == 0)
            FUZZ_CHECK(v == want && v >= 1, "pop3_parse_number gave %lu, want %llu", v, want);
    }
}

static void run(const uint8_t *stream, size_t n, bool split, uint64_t seed, struct fuzz_bytes *tr)
{
    struct pop3_parser p;
    struct fuzz_rng rng;
    fuzz_rng_init(&rng, seed);
    pop3_parser_init(&p);
    char *pend = malloc(n ? n : 1);
    size_t plen = 0, fed = 0;
    for (;;) {
        while (plen > 0) {
            size_t used = (size_t)-1, line_len = 0;
            const char *line = NULL;
            int rc = pop3_parser_next(&p, pend, plen, &used, &line, &line_len);
            FUZZ_CHECK(used <= plen, "consumed %zu of %zu", used, plen);
            FUZZ_CHECK(rc >= -POP3_PERR_BAD_EOL && rc <= 1, "returned %d", rc);
            if (rc < 0) {
                FUZZ_CHECK(used > 0, "an error that consumed nothing");
                fuzz_bytes_add(tr, "E", 1);
            } else if (rc == 1) {
                FUZZ_CHECK(line == pend && used == line_len + 2 && pend[line_len] == '\r' &&
                               pend[line_len + 1] == '\n',
                           "a line that is not the whole CRLF line");
                FUZZ_CHECK(line_len + 2 <= POP3_LINE_MAX, "a %zu-octet line", line_len + 2);
                FUZZ_CHECK(memchr(line, '\r', line_len) == NULL &&
                               memchr(line, '\n', line_len) == NULL &&
                               memchr(line, '\0', line_len) == NULL,
                           "a line with CR, LF or NUL");
                fuzz_bytes_add(tr, "L", 1);
                fuzz_bytes_add(tr, &line_len, sizeof(line_len));
                fuzz_bytes_add(tr, line, line_len);
                check_command(line, line_len);
            } else if (used == 0) {
                FUZZ_CHECK(memchr(pend, '\n', plen) == NULL && plen < POP3_LINE_MAX,
                           "a whole or overlong line left waiting");
            }
            memmove(pend, pend + used, plen - used);
            plen -= used;
            if (rc == 0 && used == 0)
                break;
        }
        if (fed == n)
            break;
        size_t k = split ? fuzz_piece(&rng, n - fed) : n - fed;
        memcpy(pend + plen, stream + fed, k);
        plen += k;
        fed += k;
    }
    free(pend);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct fuzz_bytes split = {0}, whole = {0};
    run(data + 1, size - 1, true, data[0], &split);
    run(data + 1, size - 1, false, data[0], &whole);
    FUZZ_CHECK(fuzz_bytes_eq(&split, &whole), "the read boundaries changed the lines or errors");
    fuzz_bytes_free(&split);
    fuzz_bytes_free(&whole);
    return 0;
}
