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

/*
 * Whether name could be a login of kotak's (an address: one '@' inside,
 * printable, no space). A name that is none may be a password typed in the
 * wrong field, and the view is projected to a class: it is hidden.
 */
static bool name_shown(const char *name)
{
    const char *at = strchr(name, '@');
    if (at == NULL || at == name || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
        strlen(name) > 254)
        return false;
    for (const char *p = name; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return false;
    return true;
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
    bool shown = name_shown(s.user);
    snprintf(name, sizeof(name), "%s", shown ? s.user : "");
    sasl_clear(&s); /* the password, if it decoded, goes now */
    if (mech == SASL_PLAIN && rc < 0)
        return put(out, size, "(a response that does not decode, hidden)");
    if (mech == SASL_PLAIN)
        return shown ? put(out, size, "(as %s, password hidden)", name)
                     : put(out, size, "(as a name that is no address, hidden; password hidden)");
    if (step != 0)
        return put(out, size, "(password hidden)");
    if (rc < 0)
        return put(out, size, "(a user name that does not decode, hidden)");
    return shown ? put(out, size, "(user name %s)", name)
                 : put(out, size, "(a user name that is no address, hidden)");
}

/* Whether line[0..len) starts with the word w, in any case, alone or before a space. */
static bool word_is(const char *line, size_t len, const char *w)
{
    size_t n = strlen(w);
    if (len < n || (len > n && line[n] != ' '))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = line[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c != w[i])
            return false;
    }
    return true;
}

static const char *const smtp_verbs[] = {"EHLO", "HELO", "MAIL", "RCPT", "DATA",
                                         "RSET", "VRFY", "EXPN", "HELP", "NOOP",
                                         "QUIT", "STARTTLS", "AUTH", "BDAT", NULL};
static const char *const pop3_verbs[] = {"USER", "PASS", "APOP", "AUTH", "STAT", "LIST",
                                         "RETR", "DELE", "NOOP", "RSET", "QUIT", "TOP",
                                         "UIDL", "CAPA", "STLS", "UTF8", NULL};

/* AUTH [MECH [response]]: a mechanism kotak takes by its name, its response as watch_sasl_line shows it. */
static size_t auth_line(const char *line, size_t len, char *out, size_t size)
{
    if (len <= 5)
        return put(out, size, "AUTH");
    const char *mech = line + 5;
    const char *sp = memchr(mech, ' ', len - 5);
    size_t mech_len = sp ? (size_t)(sp - mech) : len - 5;
    enum sasl_mech m;
    if (sasl_mech_parse(mech, mech_len, &m) < 0)
        return put(out, size, "AUTH (a mechanism kotak does not offer, and what follows, hidden)");
    if (sp == NULL)
        return put(out, size, "AUTH %.*s", (int)mech_len, mech);
    char shown[WATCH_TEXT_MAX + 1];
    watch_sasl_line(m, 0, sp + 1, len - (size_t)(sp + 1 - line), shown, sizeof(shown));
    return put(out, size, "AUTH %.*s %s", (int)mech_len, mech, shown);
}

size_t watch_command_line(enum watch_proto proto, const char *line, size_t len, char *out,
                          size_t size)
{
    if (size == 0)
        return 0;
    const char *const *verbs = proto == WATCH_POP3 ? pop3_verbs : smtp_verbs;
    size_t v = 0;
    while (verbs[v] != NULL && !word_is(line, len, verbs[v]))
        v++;
    /* A line that is no command may be a login's answer sent when none was
     * asked for (after a refused AUTH), or a password typed in the wrong
     * place: only its size is shown. */
    if (verbs[v] == NULL)
        return put(out, size, "(a line that is no command, %zu octets, hidden)", len);
    if (strcmp(verbs[v], "AUTH") == 0)
        return auth_line(line, len, out, size);
    if (strcmp(verbs[v], "PASS") == 0)
        return put(out, size, "PASS (password hidden)");
    if (strcmp(verbs[v], "USER") == 0 || strcmp(verbs[v], "APOP") == 0) {
        char name[SASL_FIELD_MAX + 1] = "";
        if (len > 5) {
            const char *sp = memchr(line + 5, ' ', len - 5);
            size_t n = sp ? (size_t)(sp - (line + 5)) : len - 5;
            snprintf(name, sizeof(name), "%.*s", (int)(n < SASL_FIELD_MAX ? n : SASL_FIELD_MAX),
                     line + 5);
        }
        const char *who = name_shown(name) ? name : "(a name that is no address, hidden)";
        return strcmp(verbs[v], "USER") == 0 ? put(out, size, "USER %s", who)
                                             : put(out, size, "APOP %s (digest hidden)", who);
    }
    size_t n = len < size ? len : size - 1;
    memcpy(out, line, n);
    out[n] = '\0';
    return n;
}

size_t watch_tls_text(const char *version, const char *cipher, const char *cert, char *out,
                      size_t size)
{
    int n = snprintf(out, size, "%s %s%s%s", version, cipher, cert[0] ? ", certificate " : "", cert);
    if (n < 0)
        n = 0;
    return (size_t)n < size ? (size_t)n : size - 1;
}

char *watch_value(char *out, size_t size, const char *value, size_t len)
{
    static const char hexdig[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        bool plain = c > 0x20 && c < 0x7f && c != '%' && c != '=';
        if (o + (plain ? 1 : 3) >= size)
            break;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hexdig[c >> 4];
            out[o++] = hexdig[c & 15];
        }
    }
    if (size > 0)
        out[o] = '\0';
    return out;
}
