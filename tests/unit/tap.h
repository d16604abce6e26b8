/*
 * tap.h — a few macros that make a C test print TAP (Test Anything
 * Protocol), which `meson test` reads line by line: one "ok N - name" or
 * "not ok N - name" per check, then the plan.
 */
#ifndef KOTAK_TAP_H
#define KOTAK_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

/* Records one check; prints where it failed. Evaluates cond once. */
#define ok(cond, ...)                                                                  \
    do {                                                                               \
        int ok_ = (cond) ? 1 : 0;                                                      \
        printf("%sok %d - ", ok_ ? "" : "not ", ++tap_n);                              \
        printf(__VA_ARGS__);                                                           \
        printf("\n");                                                                  \
        if (!ok_) {                                                                    \
            tap_failed++;                                                              \
            printf("# failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
        }                                                                              \
    } while (0)

#define is_int(got, want, ...)                                                         \
    do {                                                                               \
        long long g_ = (long long)(got), w_ = (long long)(want);                       \
        ok(g_ == w_, __VA_ARGS__);                                                     \
        if (g_ != w_)                                                                  \
            printf("#   got %lld, want %lld\n", g_, w_);                               \
    } while (0)

#define is_str(got, want, ...)                                                         \
    do {                                                                               \
        const char *g_ = (got), *w_ = (want);                                          \
        int same_ = g_ != NULL && w_ != NULL && strcmp(g_, w_) == 0;                   \
        ok(same_, __VA_ARGS__);                                                        \
        if (!same_)                                                                    \
            printf("#   got '%s', want '%s'\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
    } while (0)

/* Prints the plan; the exit status says whether everything passed. */
static inline int done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif
