/*
 * fuzz_smtp_path.c — the argument of MAIL and RCPT: smtp_path_parse
 * (smtpd/smtp_parser.h) with its ESMTP parameters, then addr_parse
 * (common/addr.h) on the mailbox it finds, then log_value on it.
 *
 * Input: byte 0 says bit 0: FROM: (MAIL) or TO: (RCPT); bit 1: SMTPUTF8
 * (8-bit parameter values allowed); bit 2: put the prefix in front of the
 * rest, so the corpus may hold bare "<a@b> SIZE=1". The rest is the argument.
 *
 * Properties: the mailbox and every parameter lie inside the argument; the
 * mailbox is what the angle brackets hold with any source route dropped; a
 * key is an esmtp-keyword and a value 1*(%d33-60 / %d62-126), 8-bit only
 * with SMTPUTF8; SMTPUTF8 only ever widens what is accepted; the mailbox
 * passes the addr properties of fuzz_addr.h under every flag combination;
 * and log_value turns it into printable ASCII (no log injection).
 */
#include "fuzz.h"
#include "fuzz_addr.h"
#include "log.h"
#include "smtp_parser.h"

static bool inside(const char *p, size_t n, const char *arg, size_t len)
{
    return n == 0 || (p >= arg && p + n <= arg + len);
}

static bool prefix_ci(const char *s, size_t n, const char *word)
{
    size_t w = strlen(word);
    if (n < w)
        return false;
    for (size_t i = 0; i < w; i++) {
        char c = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 'a' + 'A') : s[i];
        if (c != word[i])
            return false;
    }
    return true;
}

static void check_path(const char *arg, size_t len, const char *prefix, bool utf8,
                       const struct smtp_path_args *a)
{
    FUZZ_CHECK(prefix_ci(arg, len, prefix), "accepted without the %s prefix", prefix);
    FUZZ_CHECK(inside(a->mailbox, a->mailbox_len, arg, len), "the mailbox is outside the argument");
    FUZZ_CHECK(a->n_params <= SMTP_PARAMS_MAX, "%zu parameters", a->n_params);
    if (a->mailbox_len > 0) {
        /* In brackets: the byte after the mailbox closes the path. */
        FUZZ_CHECK(a->mailbox + a->mailbox_len < arg + len && a->mailbox[a->mailbox_len] == '>',
                   "the mailbox does not end at the closing '>'");
        if (a->had_route)
            FUZZ_CHECK(a->mailbox[-1] == ':', "a dropped source route that did not end in ':'");
        else
            FUZZ_CHECK(a->mailbox[-1] == '<', "the mailbox does not start after '<'");
    }
    for (size_t i = 0; i < a->n_params; i++) {
        const struct smtp_param *p = &a->params[i];
        FUZZ_CHECK(p->key_len > 0 && inside(p->key, p->key_len, arg, len),
                   "a key outside the argument");
        FUZZ_CHECK(fuzz_is_alnum((uint8_t)p->key[0]),
                   "a key that does not start with a letter or digit");
        for (size_t k = 0; k < p->key_len; k++)
            FUZZ_CHECK(fuzz_is_alnum((uint8_t)p->key[k]) || p->key[k] == '-', "a key with %#x",
                       (uint8_t)p->key[k]);
        if (p->value == NULL)
            continue;
        FUZZ_CHECK(p->value_len > 0 && inside(p->value, p->value_len, arg, len),
                   "an empty value or one outside the argument");
        FUZZ_CHECK(p->value == p->key + p->key_len + 1 && p->value[-1] == '=',
                   "the value does not follow KEY=");
        for (size_t k = 0; k < p->value_len; k++) {
            uint8_t c = (uint8_t)p->value[k];
            FUZZ_CHECK(c >= 0x80 ? utf8 : (c >= 33 && c <= 126 && c != '='),
                       "a value with %#x (utf8 %d)", c, utf8);
        }
        /* smtp_param_is agrees with the key's own spelling, in any case. */
        char key[64];
        if (p->key_len < sizeof(key)) {
            for (size_t k = 0; k < p->key_len; k++)
                key[k] = p->key[k] >= 'a' && p->key[k] <= 'z' ? (char)(p->key[k] - 32) : p->key[k];
            key[p->key_len] = '\0';
            FUZZ_CHECK(smtp_param_is(p, key), "smtp_param_is does not know its own key");
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *prefix = data[0] & 1 ? "TO:" : "FROM:";
    bool utf8 = data[0] & 2;
    size_t len = size - 1;
    char *arg;
    if (data[0] & 4) {
        size_t pl = strlen(prefix);
        arg = malloc(pl + len + 1);
        memcpy(arg, prefix, pl);
        memcpy(arg + pl, data + 1, len);
        len += pl;
    } else {
        arg = malloc(len + 1);
        memcpy(arg, data + 1, len);
    }

    struct smtp_path_args a, b;
    int rc = smtp_path_parse(arg, len, prefix, utf8, &a);
    FUZZ_CHECK(rc == 0 || rc == -SMTP_PATH_SYNTAX || rc == -SMTP_PATH_PARAM ||
                   rc == -SMTP_PATH_TOO_MANY,
               "smtp_path_parse returned %d", rc);
    int rc8 = smtp_path_parse(arg, len, prefix, !utf8, &b);
    if (rc == 0)
        check_path(arg, len, prefix, utf8, &a);
    if (rc8 == 0)
        check_path(arg, len, prefix, !utf8, &b);
    /* SMTPUTF8 only widens: what parses without it parses the same with it. */
    const struct smtp_path_args *plain = utf8 ? &b : &a, *wide = utf8 ? &a : &b;
    int rc_plain = utf8 ? rc8 : rc, rc_wide = utf8 ? rc : rc8;
    if (rc_plain == 0) {
        FUZZ_CHECK(rc_wide == 0, "accepted without SMTPUTF8, refused with it");
        FUZZ_CHECK(plain->mailbox == wide->mailbox && plain->mailbox_len == wide->mailbox_len &&
                       plain->n_params == wide->n_params && plain->had_route == wide->had_route,
                   "SMTPUTF8 changed the parse");
    }

    if (rc == 0 && a.mailbox_len > 0) {
        fuzz_addr_check((const uint8_t *)a.mailbox, a.mailbox_len);
        char v[ADDR_TEXT_SIZE + 8];
        log_value(v, sizeof(v), a.mailbox, a.mailbox_len);
        size_t vn = strnlen(v, sizeof(v));
        FUZZ_CHECK(vn < sizeof(v), "log_value did not NUL-terminate");
        for (size_t i = 0; i < vn; i++)
            FUZZ_CHECK(v[i] >= 0x20 && v[i] < 0x7f, "log_value let %#x through", (uint8_t)v[i]);
    }

    /* The same bytes as a whole command line. */
    struct smtp_command c;
    smtp_command_parse(arg, len, &c);
    /* The argument is the end of the line, less trailing white space (RFC 5321 4.1.1). */
    FUZZ_CHECK(c.arg_len <= len &&
                   (c.arg_len == 0 || (c.arg >= arg && c.arg + c.arg_len <= arg + len)),
               "the command's argument is not inside the line");
    for (const char *t = c.arg_len ? c.arg + c.arg_len : arg + len; t < arg + len; t++)
        FUZZ_CHECK(*t == ' ' || *t == '\t', "the command's argument stops before the line end");
    FUZZ_CHECK(c.arg_len == 0 || (c.arg[c.arg_len - 1] != ' ' && c.arg[c.arg_len - 1] != '\t'),
               "the command's argument keeps trailing white space");
    free(arg);
    return 0;
}
