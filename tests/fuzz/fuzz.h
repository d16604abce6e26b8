/*
 * fuzz.h — what the libFuzzer targets of tests/fuzz/ share: a property
 * check that aborts (so libFuzzer, and the replay runner, report it as a
 * crash with the input that caused it), a small deterministic random source
 * seeded from the input (read boundaries, asynchronous results), and the
 * glue's habit of feeding bytes in pieces.
 *
 * Each target is one file, fuzz_<name>.c, defining LLVMFuzzerTestOneInput.
 * Built with -fsanitize=fuzzer it is a libFuzzer binary; linked with
 * replay.c it replays a corpus as a TAP test (tests/fuzz/meson.build).
 */
#ifndef KOTAK_FUZZ_H
#define KOTAK_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * A property of the code under test does not hold: say which and where,
 * then abort, which both libFuzzer and replay.c count as a finding.
 */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz property violated at %s:%d: %s\n  ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* xorshift64*: deterministic, so a saved input replays the same way. */
struct fuzz_rng {
    uint64_t s;
};

static inline void fuzz_rng_init(struct fuzz_rng *r, uint64_t seed)
{
    r->s = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
    if (r->s == 0)
        r->s = 1;
}

static inline uint32_t fuzz_rng_next(struct fuzz_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (uint32_t)((r->s * 0x2545f4914f6cdd1dull) >> 32);
}

/* 0 .. n-1; n > 0. */
static inline uint32_t fuzz_rng_below(struct fuzz_rng *r, uint32_t n)
{
    return fuzz_rng_next(r) % n;
}

/*
 * The size of the next read, 1..left (left > 0): mostly a few bytes, so
 * that a CRLF or ".<CR><LF>" falls across two reads, sometimes a larger
 * piece, sometimes all that is left.
 */
static inline size_t fuzz_piece(struct fuzz_rng *r, size_t left)
{
    size_t n;
    switch (fuzz_rng_below(r, 8)) {
    case 0:
    case 1:
    case 2:
        n = 1 + fuzz_rng_below(r, 3);
        break;
    case 3:
    case 4:
        n = 1 + fuzz_rng_below(r, 16);
        break;
    case 5:
        n = 1 + fuzz_rng_below(r, 300);
        break;
    case 6:
        n = 1 + fuzz_rng_below(r, 4096);
        break;
    default:
        n = left;
        break;
    }
    return n < left ? n : left;
}

/* A growable byte string with no ceiling, for the targets' own bookkeeping. */
struct fuzz_bytes {
    uint8_t *p;
    size_t len, cap;
};

static inline void fuzz_bytes_add(struct fuzz_bytes *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (b->p == NULL)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static inline void fuzz_bytes_free(struct fuzz_bytes *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static inline bool fuzz_bytes_eq(const struct fuzz_bytes *a, const struct fuzz_bytes *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* True when p[0..n) holds a CR not followed by LF or an LF not preceded by CR. */
static inline bool fuzz_has_bare_eol(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n'))
            return true;
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            return true;
    }
    return false;
}

/* Case-insensitive ASCII: does p[0..n) end with the upper-case word? */
static inline bool fuzz_ends_with_ci(const uint8_t *p, size_t n, const char *word)
{
    size_t w = strlen(word);
    if (n < w)
        return false;
    for (size_t i = 0; i < w; i++) {
        uint8_t c = p[n - w + i];
        if (c >= 'a' && c <= 'z')
            c = (uint8_t)(c - 'a' + 'A');
        if (c != (uint8_t)word[i])
            return false;
    }
    return true;
}

/*
 * Does p[0..n) end with a whole CRLF line whose first word is verb (in any
 * case)? What a session consumed up to a command it acts on (STARTTLS,
 * STLS, QUIT) must end exactly so: nothing behind the line is taken. The
 * word ends at a space or a tab: the SMTP session drops both at the end of
 * a command line, so "STARTTLS<TAB><CR><LF>" is a STARTTLS.
 */
static inline bool fuzz_ends_with_verb_line(const uint8_t *p, size_t n, const char *verb)
{
    if (n < 2 || p[n - 2] != '\r' || p[n - 1] != '\n')
        return false;
    size_t end = n - 2, start = end;
    while (start > 0 && p[start - 1] != '\n')
        start--;
    size_t w = strlen(verb);
    if (end - start < w || !fuzz_ends_with_ci(p + start, w, verb))
        return false;
    return end - start == w || p[start + w] == ' ' || p[start + w] == '\t';
}

/*
 * RFC 5321 4.5.2 byte-stuffing, as a client does it: a dot at the start of
 * a line (the start of the text, or after CRLF) gets another dot before it.
 */
static inline void fuzz_dot_stuff(const uint8_t *p, size_t n, struct fuzz_bytes *out)
{
    for (size_t i = 0; i < n; i++) {
        bool bol = i == 0 || (i >= 2 && p[i - 2] == '\r' && p[i - 1] == '\n');
        if (bol && p[i] == '.')
            fuzz_bytes_add(out, ".", 1);
        fuzz_bytes_add(out, p + i, 1);
    }
}

#endif
