/*
 * watch_text.c — client lines for the live view, secrets replaced; see
 * watch_text.h. A response is decoded by the same SASL code the login uses
 * (on a copy that is wiped), so the view names the user the server saw.
 */
#include "watch_text.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Printable ASCII of s, others as '?': a name for the view, whatever the client sent. */
static void printable(const char *s, char *out, size_t size)
{
    size_t o = 0;
    for (; *s != '\0' && o + 1 < size; s++)
        out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[o] = '\0';
}

static size_t put(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static size_t put(char *out, size_t size, const char *fmt, ...)
{
    if (size == 0)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    if (n < 0) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)n < size ? (size_t)n : size - 1;
}

size_t watch_sasl_line(enum sasl_mech mech, int step, const char *line, size_t len, char *out,
                       size_t size)
{
    if (len == 1 && line[0] == '*')
        return put(out, size, "* (the client gives up the login)");
    struct sasl s;
    sasl_begin(&s, mech);
    s.step = step;
    char challenge[64], name[SASL_FIELD_MAX + 1];
    int rc = sasl_step(&s, line, len, challenge, sizeof(challenge));
    printable(s.user, name, sizeof(name));
    sasl_clear(&s); /* the password, if it decoded, goes now */
    size_t n;
    if (mech == SASL_PLAIN)
        n = rc >= 0 ? put(out, size, "(as %s, password hidden)", name)
                    : put(out, size, "(a response that does not decode, hidden)");
    else if (step == 0)
        n = rc >= 0 ? put(out, size, "(user name %s)", name)
                    : put(out, size, "(a user name that does not decode, hidden)");
    else
        n = put(out, size, "(password hidden)");
    return n;
}

/* Whether line[0..len) starts with word, in any case. */
static bool starts_with(const char *line, size_t len, const char *word)
{
    size_t w = strlen(word);
    if (len < w)
        return false;
    for (size_t i = 0; i < w; i++) {
        char c = line[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c != word[i])
            return false;
    }
    return true;
}

/* AUTH MECH [response]: the response as watch_sasl_line shows it. */
static size_t auth_line(const char *line, size_t len, char *out, size_t size)
{
    const char *mech = line + 5;
    size_t rest = len - 5;
    const char *sp = memchr(mech, ' ', rest);
    if (sp == NULL) /* no initial response: nothing secret */
        return put(out, size, "%.*s", (int)(len < size ? len : size - 1), line);
    size_t mech_len = (size_t)(sp - mech);
    enum sasl_mech m;
    char shown[WATCH_TEXT_MAX + 1];
    if (sasl_mech_parse(mech, mech_len, &m) < 0)
        snprintf(shown, sizeof(shown), "(a response hidden)");
    else
        watch_sasl_line(m, 0, sp + 1, len - (size_t)(sp + 1 - line), shown, sizeof(shown));
    return put(out, size, "AUTH %.*s %s", (int)(mech_len < 64 ? mech_len : 64), mech, shown);
}

size_t watch_command_line(enum watch_proto proto, const char *line, size_t len, char *out,
                          size_t size)
{
    (void)proto; /* the same words hide the same secrets in SMTP and POP3 */
    if (size == 0)
        return 0;
    /* A word run into what follows ("PASS\tsecret") is no command the
     * server takes, but may still be a secret typed: its rest is hidden. */
    if (starts_with(line, len, "AUTH") && len > 4)
        return line[4] == ' ' && len > 5 ? auth_line(line, len, out, size)
                                         : put(out, size, "%.4s (the rest hidden)", line);
    if (starts_with(line, len, "PASS"))
        return put(out, size, "%.4s (password hidden)", line);
    if (starts_with(line, len, "APOP") && len > 4) {
        if (line[4] != ' ')
            return put(out, size, "%.4s (the rest hidden)", line);
        /* APOP name digest: the name stays, the digest goes. */
        const char *name = line + 5;
        const char *sp = memchr(name, ' ', len - 5);
        size_t name_len = sp ? (size_t)(sp - name) : len - 5;
        return put(out, size, "APOP %.*s (digest hidden)", (int)(name_len < 256 ? name_len : 256),
                   name);
    }
    size_t n = len < size ? len : size - 1;
    memcpy(out, line, n);
    out[n] = '\0';
    return n;
}
