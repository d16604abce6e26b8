/*
 * pop3_parser.c — POP3 lines and words; see pop3_parser.h.
 */
#include "pop3_parser.h"

#include <string.h>

void pop3_parser_init(struct pop3_parser *p)
{
    p->skipping = false;
}

int pop3_parser_next(struct pop3_parser *p, const char *buf, size_t len, size_t *consumed_r,
                     const char **line_r, size_t *line_len_r)
{
    *consumed_r = 0;
    const char *lf = memchr(buf, '\n', len);
    if (p->skipping) {
        *consumed_r = lf ? (size_t)(lf - buf) + 1 : len;
        if (lf != NULL)
            p->skipping = false;
        return 0;
    }
    if (lf == NULL) {
        if (len >= POP3_LINE_MAX) {
            p->skipping = true;
            *consumed_r = len;
            return -POP3_PERR_LINE_TOO_LONG;
        }
        return 0;
    }
    size_t n = (size_t)(lf - buf) + 1;
    *consumed_r = n;
    if (n > POP3_LINE_MAX)
        return -POP3_PERR_LINE_TOO_LONG;
    if (n < 2 || buf[n - 2] != '\r' || memchr(buf, '\r', n - 2) != NULL ||
        memchr(buf, '\0', n - 2) != NULL)
        return -POP3_PERR_BAD_EOL;
    *line_r = buf;
    *line_len_r = n - 2;
    return 1;
}

static const struct {
    const char *name;
    enum pop3_verb verb;
} verbs[] = {
    {"USER", POP3_CMD_USER}, {"PASS", POP3_CMD_PASS}, {"AUTH", POP3_CMD_AUTH},
    {"CAPA", POP3_CMD_CAPA}, {"STLS", POP3_CMD_STLS}, {"STAT", POP3_CMD_STAT},
    {"LIST", POP3_CMD_LIST}, {"UIDL", POP3_CMD_UIDL}, {"RETR", POP3_CMD_RETR},
    {"TOP", POP3_CMD_TOP},   {"DELE", POP3_CMD_DELE}, {"NOOP", POP3_CMD_NOOP},
    {"RSET", POP3_CMD_RSET}, {"QUIT", POP3_CMD_QUIT}, {"APOP", POP3_CMD_APOP},
    {"UTF8", POP3_CMD_UTF8},
};

static bool word_is(const char *s, size_t n, const char *word)
{
    if (strlen(word) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 'a' + 'A') : s[i];
        if (c != word[i])
            return false;
    }
    return true;
}

void pop3_command_parse(const char *line, size_t len, struct pop3_command *cmd_r)
{
    memset(cmd_r, 0, sizeof(*cmd_r));
    size_t n = 0;
    while (n < len && line[n] != ' ')
        n++;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (word_is(line, n, verbs[i].name))
            cmd_r->verb = verbs[i].verb;
    cmd_r->rest = n < len ? line + n + 1 : "";
    cmd_r->rest_len = n < len ? len - n - 1 : 0;
    for (size_t i = n; i < len;) {
        while (i < len && line[i] == ' ')
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && line[i] != ' ')
            i++;
        if (cmd_r->argc == POP3_ARGS_MAX) {
            cmd_r->too_many_args = true;
            break;
        }
        cmd_r->argv[cmd_r->argc] = line + start;
        cmd_r->arg_len[cmd_r->argc++] = i - start;
    }
}

int pop3_parse_number(const char *s, size_t len, unsigned long max, unsigned long *n_r)
{
    unsigned long v = 0;
    if (len == 0 || len > 10 || s[0] == '0')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *n_r = v;
    return 0;
}
