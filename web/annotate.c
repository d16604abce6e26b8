/*
 * annotate.c — the live view's notes on commands and replies; see
 * annotate.h. The texts follow the RFCs' own words, shortened.
 */
#include "annotate.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define RFC(n, s) "RFC " #n " " s, "https://www.rfc-editor.org/rfc/rfc" #n "#section-" s

static const struct annotation smtp_commands[] = {
    {"EHLO", RFC(5321, "4.1.1.1"), "the client names itself and asks for the extensions"},
    {"HELO", RFC(5321, "4.1.1.1"), "the client names itself (old SMTP, no extensions)"},
    {"MAIL", RFC(5321, "4.1.1.2"), "a new message: the sender, where bounces go"},
    {"RCPT", RFC(5321, "4.1.1.3"), "one recipient of the message"},
    {"DATA", RFC(5321, "4.1.1.4"), "the message follows, ended by a line with a dot"},
    {"RSET", RFC(5321, "4.1.1.5"), "forget the message begun so far"},
    {"VRFY", RFC(5321, "4.1.1.6"), "is this a mailbox here?"},
    {"EXPN", RFC(5321, "4.1.1.7"), "who is on this mailing list?"},
    {"HELP", RFC(5321, "4.1.1.8"), "help for a human"},
    {"NOOP", RFC(5321, "4.1.1.9"), "nothing: are you still there?"},
    {"QUIT", RFC(5321, "4.1.1.10"), "goodbye: the server answers and closes"},
    {"STARTTLS", RFC(3207, "4"), "begin TLS on this connection; all before it is forgotten"},
    {"AUTH", RFC(4954, "4"), "log in with a SASL mechanism (PLAIN, LOGIN)"},
    {"BDAT", RFC(3030, "2"), "a chunk of the message, its size given first"},
};

static const struct annotation pop3_commands[] = {
    {"USER", RFC(1939, "7"), "the name of the maildrop to open"},
    {"PASS", RFC(1939, "7"), "the password for it"},
    {"APOP", RFC(1939, "7"), "log in with a digest of the greeting and a secret"},
    {"AUTH", RFC(5034, "4"), "log in with a SASL mechanism (PLAIN, LOGIN)"},
    {"STAT", RFC(1939, "5"), "how many messages, how many octets"},
    {"LIST", RFC(1939, "5"), "each message's number and size"},
    {"RETR", RFC(1939, "5"), "send me this message"},
    {"DELE", RFC(1939, "5"), "mark this message deleted: it goes only at QUIT"},
    {"NOOP", RFC(1939, "5"), "nothing: are you still there?"},
    {"RSET", RFC(1939, "5"), "unmark every message marked deleted"},
    {"QUIT", RFC(1939, "6"), "goodbye: now the marked messages are removed"},
    {"TOP", RFC(1939, "7"), "the header of a message and its first lines"},
    {"UIDL", RFC(1939, "7"), "each message's unique id, the same in every session"},
    {"CAPA", RFC(2449, "5"), "what this server can do"},
    {"STLS", RFC(2595, "4"), "begin TLS on this connection"},
    {"UTF8", RFC(6856, "2"), "speak UTF-8 from now on"},
};

static char upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

bool annotate_command(enum watch_proto proto, const char *line, size_t len, struct annotation *a)
{
    const struct annotation *t = proto == WATCH_POP3 ? pop3_commands : smtp_commands;
    size_t n = proto == WATCH_POP3 ? sizeof(pop3_commands) / sizeof(pop3_commands[0])
                                   : sizeof(smtp_commands) / sizeof(smtp_commands[0]);
    size_t w = 0;
    while (w < len && line[w] != ' ')
        w++;
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(t[i].name);
        if (k != w)
            continue;
        size_t j = 0;
        while (j < k && upper(line[j]) == t[i].name[j])
            j++;
        if (j == k) {
            *a = t[i];
            return true;
        }
    }
    return false;
}

/* --- SMTP replies ----------------------------------------------------------- */

/* RFC 5321 4.2.2 and 4.2.3, with RFC 3207 (STARTTLS) and RFC 4954 (AUTH). */
static const struct {
    int code;
    const char *what;
} smtp_codes[] = {
    {211, "system status"},
    {214, "help for a human"},
    {220, "service ready"},
    {221, "closing the connection"},
    {235, "login accepted (RFC 4954)"},
    {250, "requested action okay, completed"},
    {251, "not local; will forward"},
    {252, "cannot verify, will accept and try"},
    {334, "go on: the next step of the login (RFC 4954)"},
    {354, "send the message, end it with a line holding a dot"},
    {421, "service not available, closing the connection"},
    {432, "a password change is needed (RFC 4954)"},
    {450, "mailbox unavailable for now"},
    {451, "aborted: local error in processing"},
    {452, "insufficient system storage"},
    {454, "temporary failure: TLS or login not available now"},
    {455, "server unable to take the parameters now"},
    {500, "syntax error, command unrecognized"},
    {501, "syntax error in parameters or arguments"},
    {502, "command not implemented"},
    {503, "bad sequence of commands"},
    {504, "command parameter not implemented"},
    {530, "log in first (RFC 4954)"},
    {534, "the mechanism is too weak (RFC 4954)"},
    {535, "the login failed (RFC 4954)"},
    {538, "encryption required for this mechanism (RFC 4954)"},
    {550, "not taken: mailbox unavailable, or refused by policy"},
    {551, "user not local"},
    {552, "exceeded storage allocation"},
    {553, "mailbox name not allowed"},
    {554, "transaction failed"},
    {555, "MAIL or RCPT parameters not recognized"},
};

/* RFC 5321 4.2.1: what the first digit says. */
static const char *const first_digit[] = {
    NULL, NULL, "2xx: done", "3xx: go on, more is needed", "4xx: failed for now, try again later",
    "5xx: failed for good, do not repeat",
};

/* RFC 3463 3: the subject of an enhanced status code. */
static const char *const subjects[] = {
    "other", "addressing", "mailbox", "mail system", "network and routing",
    "mail delivery protocol", "message content", "security or policy",
};

/* Details of the IANA registry (RFC 3463, 4954, 5248, 7372) that kotak and its peers give. */
static const struct {
    int subject, detail;
    const char *what;
} details[] = {
    {0, 0, "other undefined status"},
    {1, 0, "other address status"},
    {1, 1, "bad destination mailbox address"},
    {1, 2, "bad destination system address"},
    {1, 3, "bad destination mailbox address syntax"},
    {1, 5, "destination address valid"},
    {1, 6, "destination mailbox has moved"},
    {1, 7, "bad sender's mailbox address syntax"},
    {1, 8, "bad sender's system address"},
    {1, 10, "recipient address has null MX"},
    {2, 0, "other or undefined mailbox status"},
    {2, 1, "mailbox disabled, not accepting messages"},
    {2, 2, "mailbox full"},
    {2, 3, "message length exceeds administrative limit"},
    {3, 0, "other or undefined mail system status"},
    {3, 1, "mail system full"},
    {3, 2, "system not accepting network messages"},
    {3, 4, "message too big for system"},
    {4, 0, "other or undefined network or routing status"},
    {4, 1, "no answer from host"},
    {4, 2, "bad connection"},
    {4, 4, "unable to route"},
    {4, 6, "routing loop detected"},
    {4, 7, "delivery time expired"},
    {5, 0, "other or undefined protocol status"},
    {5, 1, "invalid command"},
    {5, 2, "syntax error"},
    {5, 3, "too many recipients"},
    {5, 4, "invalid command arguments"},
    {6, 0, "other or undefined media error"},
    {6, 7, "non-ASCII addresses not permitted"},
    {7, 0, "other or undefined security status"},
    {7, 1, "delivery not authorized, message refused"},
    {7, 7, "message integrity failure"},
    {7, 8, "authentication credentials invalid"},
    {7, 9, "authentication mechanism is too weak"},
    {7, 10, "encryption needed"},
    {7, 11, "encryption required for requested authentication mechanism"},
    {7, 23, "SPF validation failed"},
    {7, 25, "reverse DNS validation failed"},
    {7, 26, "multiple authentication checks failed"},
};

static size_t appendf(char *out, size_t size, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static size_t appendf(char *out, size_t size, size_t at, const char *fmt, ...)
{
    if (at >= size)
        return at;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + at, size - at, fmt, ap);
    va_end(ap);
    if (n < 0)
        return at;
    return at + (size_t)n < size ? at + (size_t)n : size - 1;
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "c.s.d" at p[0..n) (RFC 3463 2): true with its parts. */
static bool enhanced_code(const char *p, size_t n, int *c, int *s, int *d)
{
    size_t i = 0;
    int part[3];
    for (int k = 0; k < 3; k++) {
        size_t start = i;
        int v = 0;
        while (i < n && digit(p[i]) && i - start < 3)
            v = v * 10 + (p[i++] - '0');
        if (i == start || (k < 2 && (i >= n || p[i++] != '.')))
            return false;
        part[k] = v;
    }
    if (i < n && p[i] != ' ')
        return false;
    *c = part[0], *s = part[1], *d = part[2];
    return true;
}

static size_t smtp_reply(const char *line, size_t len, char *out, size_t size)
{
    if (len < 3 || !digit(line[0]) || !digit(line[1]) || !digit(line[2]) ||
        (len > 3 && line[3] != ' ' && line[3] != '-'))
        return 0;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    size_t at = 0;
    const char *first = line[0] >= '2' && line[0] <= '5' ? first_digit[line[0] - '0'] : NULL;
    at = appendf(out, size, at, "%s", first ? first : "not a code RFC 5321 defines");
    for (size_t i = 0; i < sizeof(smtp_codes) / sizeof(smtp_codes[0]); i++)
        if (smtp_codes[i].code == code)
            at = appendf(out, size, at, "; %d: %s", code, smtp_codes[i].what);
    int c, s, d;
    if (len > 4 && enhanced_code(line + 4, len - 4, &c, &s, &d) && c == line[0] - '0') {
        at = appendf(out, size, at, "; %d.%d.%d: %s", c, s, d,
                     s < (int)(sizeof(subjects) / sizeof(subjects[0])) ? subjects[s] : "unknown");
        for (size_t i = 0; i < sizeof(details) / sizeof(details[0]); i++)
            if (details[i].subject == s && details[i].detail == d)
                at = appendf(out, size, at, ", %s", details[i].what);
    }
    if (len > 3 && line[3] == '-')
        at = appendf(out, size, at, " (more lines follow)");
    return at;
}

/* --- POP3 replies ----------------------------------------------------------- */

static const struct {
    const char *code, *what;
} pop3_codes[] = {
    {"IN-USE", "the maildrop is open in another session (RFC 2449 8.1.1)"},
    {"LOGIN-DELAY", "logged in too soon after the last time (RFC 2449 8.1.2)"},
    {"SYS/TEMP", "a problem on the server's side, for now (RFC 3206 4)"},
    {"SYS/PERM", "a problem on the server's side that will last (RFC 3206 4)"},
    {"AUTH", "the name or the password is wrong (RFC 3206 5)"},
    {"UTF8", "UTF-8 is needed for this (RFC 6856)"},
};

static size_t pop3_reply(const char *line, size_t len, char *out, size_t size)
{
    bool ok = len >= 3 && memcmp(line, "+OK", 3) == 0;
    bool err = len >= 4 && memcmp(line, "-ERR", 4) == 0;
    if (!ok && !err)
        return 0;
    size_t at = appendf(out, size, 0, "%s", ok ? "+OK: done (RFC 1939 3)"
                                               : "-ERR: refused or failed (RFC 1939 3)");
    const char *lb = err && len > 5 && line[4] == ' ' && line[5] == '[' ? line + 6 : NULL;
    if (lb != NULL) {
        const char *rb = memchr(lb, ']', len - 6);
        for (size_t i = 0; rb != NULL && i < sizeof(pop3_codes) / sizeof(pop3_codes[0]); i++)
            if ((size_t)(rb - lb) == strlen(pop3_codes[i].code) &&
                memcmp(lb, pop3_codes[i].code, (size_t)(rb - lb)) == 0)
                at = appendf(out, size, at, "; [%s]: %s", pop3_codes[i].code, pop3_codes[i].what);
    }
    return at;
}

size_t annotate_reply(enum watch_proto proto, const char *line, size_t len, char *out, size_t size)
{
    if (size == 0)
        return 0;
    out[0] = '\0';
    size_t n = proto == WATCH_POP3 ? pop3_reply(line, len, out, size)
                                   : smtp_reply(line, len, out, size);
    if (n == 0)
        out[0] = '\0';
    return n;
}

/* --- RFC 5321 4.3.2 ------------------------------------------------------------ */

static const struct {
    const char *verb;
    int codes[16]; /* 0 ends */
} sequences[] = {
    {"", {220, 554}}, /* the greeting */
    {"EHLO", {250, 504, 550, 502}},
    {"HELO", {250, 504, 550, 502}},
    {"MAIL", {250, 552, 451, 452, 550, 553, 503, 455, 555}},
    {"RCPT", {250, 251, 550, 551, 552, 553, 450, 451, 452, 503, 455, 555}},
    {"DATA", {354, 250, 552, 554, 451, 452, 450, 550, 503}},
    {"RSET", {250}},
    {"VRFY", {250, 251, 252, 550, 551, 553, 502, 504}},
    {"EXPN", {250, 252, 550, 500, 502, 504}},
    {"HELP", {211, 214, 502, 504}},
    {"NOOP", {250}},
    {"QUIT", {221}},
    {"STARTTLS", {220, 454, 501}},                                       /* RFC 3207 4 */
    {"AUTH", {235, 334, 432, 454, 500, 501, 503, 504, 530, 534, 535, 538}}, /* RFC 4954 */
};

const int *annotate_smtp_replies(const char *verb)
{
    for (size_t i = 0; i < sizeof(sequences) / sizeof(sequences[0]); i++)
        if (strcasecmp(sequences[i].verb, verb) == 0)
            return sequences[i].codes;
    return NULL;
}

bool annotate_smtp_reply_listed(const char *verb, int code)
{
    if (code == 500 || code == 501 || code == 421)
        return true; /* 4.3.2: any command may get these */
    const int *codes = annotate_smtp_replies(verb);
    if (codes == NULL)
        return true;
    for (const int *c = codes; *c != 0; c++)
        if (*c == code)
            return true;
    return false;
}
