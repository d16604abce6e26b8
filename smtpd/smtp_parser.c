/*
 * smtp_parser.c — command lines and DATA, byte by byte; see smtp_parser.h.
 *
 * Data mode is a small state machine over the bytes, so that every
 * boundary a read can fall on — between CR and LF, after a line-start dot,
 * between ".<CR>" and LF — is handled by state rather than by buffering.
 * A chunk event covers a run of message bytes; the stuffing dot at the start
 * of a line is the only byte dropped, so each dot ends a chunk.
 */
#include "smtp_parser.h"

#include <string.h>

void smtp_parser_init(struct smtp_parser *p, size_t line_max, size_t text_max)
{
    memset(p, 0, sizeof(*p));
    p->state = SMTP_P_CMD;
    p->line_max = line_max ? line_max : 512;
    p->text_max = text_max ? text_max : 1000;
}

void smtp_parser_start_data(struct smtp_parser *p)
{
    p->state = SMTP_P_DATA_BOL;
    p->line_len = 0;
    p->flags = 0;
    p->after_lf = false;
}

/* Command mode: one CRLF-terminated line, at most line_max octets with CRLF. */
static int next_line(struct smtp_parser *p, const char *buf, size_t len, size_t *consumed_r,
                     struct smtp_event *ev_r)
{
    const char *lf = memchr(buf, '\n', len);
    size_t limit = p->line_max;
    if (p->state == SMTP_P_SKIP) {
        /* The tail of an overlong line is dropped, never read as a command. */
        if (lf == NULL) {
            *consumed_r = len;
            return 0;
        }
        *consumed_r = (size_t)(lf - buf) + 1;
        p->state = SMTP_P_CMD;
        return 0;
    }
    if (lf == NULL) {
        if (len >= limit) {
            p->state = SMTP_P_SKIP;
            *consumed_r = len;
            return -SMTP_PERR_LINE_TOO_LONG;
        }
        /* A CR that is not last can only be a bare CR: say so now, rather
         * than wait for a line end that may never come. */
        const char *cr = memchr(buf, '\r', len);
        if (cr != NULL && cr + 1 < buf + len) {
            p->state = SMTP_P_SKIP;
            *consumed_r = len;
            return -SMTP_PERR_BARE_CR;
        }
        *consumed_r = 0;
        return 0;
    }
    size_t n = (size_t)(lf - buf) + 1; /* the line with its LF */
    *consumed_r = n;
    if (n > limit)
        return -SMTP_PERR_LINE_TOO_LONG;
    /* The first fault in the line wins, however the bytes arrived. */
    if (n >= 2 && memchr(buf, '\r', n - 2) != NULL)
        return -SMTP_PERR_BARE_CR;
    if (n < 2 || buf[n - 2] != '\r')
        return -SMTP_PERR_BARE_LF;
    if (memchr(buf, '\0', n - 2) != NULL)
        return -SMTP_PERR_NUL;
    ev_r->type = SMTP_EV_LINE;
    ev_r->data = buf;
    ev_r->len = n - 2;
    ev_r->flags = 0;
    return 1;
}

/* Counts one content octet on the current line, for the text line limit. */
static void count_octet(struct smtp_parser *p)
{
    if (++p->line_len > p->text_max - 2)
        p->flags |= SMTP_DATA_LONG_LINE;
}

/* A "\r\n" chunk that ends the current line; after_lf says whether the
 * client ended it with a bare LF. Consumes buf up to end. */
static int line_end(struct smtp_parser *p, size_t end, bool after_lf, size_t *consumed_r,
                    struct smtp_event *ev_r)
{
    p->state = SMTP_P_DATA_BOL;
    p->after_lf = after_lf;
    *consumed_r = end;
    ev_r->type = SMTP_EV_DATA;
    ev_r->data = "\r\n";
    ev_r->len = 2;
    ev_r->flags = 0;
    return 1;
}

static int next_data(struct smtp_parser *p, const char *buf, size_t len, size_t *consumed_r,
                     struct smtp_event *ev_r)
{
    /* buf[start..i) is the chunk so far. A stuffing dot, and a CR held back
     * until we learn whether ".<CR><LF>" ends the data, belong to no chunk. */
    size_t start = 0, i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)buf[i];
        switch (p->state) {
        case SMTP_P_DATA_BOL:
            if (c == '.') {
                /* Ends the chunk before it: the dot is not message data. */
                if (i > start)
                    goto emit;
                p->state = SMTP_P_DATA_DOT;
                start = ++i;
                continue;
            }
            p->line_len = 0;
            p->state = SMTP_P_DATA;
            continue; /* the same byte, inside a line */
        case SMTP_P_DATA: {
            /* The common case, a run of text up to the first CR or LF,
             * found with memchr (many octets a step): the LF bounds the
             * search for the CR. */
            const char *lf = memchr(buf + i, '\n', len - i);
            size_t end = lf != NULL ? (size_t)(lf - buf) : len;
            const char *cr = memchr(buf + i, '\r', end - i);
            size_t j = cr != NULL ? (size_t)(cr - buf) : end;
            if (j > i) {
                p->line_len += j - i;
                if (p->line_len > p->text_max - 2)
                    p->flags |= SMTP_DATA_LONG_LINE;
                i = j;
                continue;
            }
            if (c == '\r') {
                p->state = SMTP_P_DATA_CR;
            } else if (p->lf_ends_line) {
                /* The line ends here as if in CRLF: the text before the LF
                 * goes out first, then the CRLF the client meant. */
                p->flags |= SMTP_DATA_LF_MADE_CRLF;
                if (i > start)
                    goto emit;
                return line_end(p, i + 1, true, consumed_r, ev_r);
            } else {
                /* A bare LF ends no line: a dot after it must not end the
                 * data, or a second message could hide in the first. */
                p->flags |= SMTP_DATA_BARE_EOL;
                count_octet(p);
            }
            i++;
            continue;
        }
        case SMTP_P_DATA_CR:
            if (c == '\n') {
                p->state = SMTP_P_DATA_BOL;
                p->after_lf = false;
                i++;
            } else {
                p->flags |= SMTP_DATA_BARE_EOL;
                count_octet(p);
                p->state = SMTP_P_DATA; /* the same byte, inside the line */
            }
            continue;
        case SMTP_P_DATA_DOT:
            if (c == '\r') {
                /* Maybe the end; the CR is held back until the next byte says. */
                p->state = SMTP_P_DATA_DOTCR;
                start = ++i;
                continue;
            }
            /* A stuffed line: what follows the dot is data. */
            p->line_len = 0;
            p->state = SMTP_P_DATA;
            continue;
        case SMTP_P_DATA_DOTCR:
            if (c == '\n' && p->after_lf) {
                /* "<LF>.<CRLF>" is no end: the dot line stays in the
                 * message (as an empty line, its dot taken as stuffing). */
                return line_end(p, i + 1, false, consumed_r, ev_r);
            }
            if (c == '\n') {
                *consumed_r = i + 1;
                ev_r->type = SMTP_EV_DATA_END;
                ev_r->data = NULL;
                ev_r->len = 0;
                ev_r->flags = p->flags;
                p->state = SMTP_P_CMD;
                return 1;
            }
            /* ".<CR>x": a bare CR. The held-back CR is message data (the
             * message is refused anyway); hand it over as a one-byte chunk. */
            p->flags |= SMTP_DATA_BARE_EOL;
            p->line_len = 1;
            p->state = SMTP_P_DATA;
            *consumed_r = i;
            ev_r->type = SMTP_EV_DATA;
            ev_r->data = "\r";
            ev_r->len = 1;
            ev_r->flags = 0;
            return 1;
        default:
            return 0; /* unreachable: command states are handled elsewhere */
        }
    }
emit:
    *consumed_r = i;
    if (i == start)
        return 0;
    ev_r->type = SMTP_EV_DATA;
    ev_r->data = buf + start;
    ev_r->len = i - start;
    ev_r->flags = 0;
    return 1;
}

int smtp_parser_next(struct smtp_parser *p, const char *buf, size_t len, size_t *consumed_r,
                     struct smtp_event *ev_r)
{
    *consumed_r = 0;
    if (len == 0)
        return 0;
    if (p->state == SMTP_P_CMD || p->state == SMTP_P_SKIP)
        return next_line(p, buf, len, consumed_r, ev_r);
    return next_data(p, buf, len, consumed_r, ev_r);
}

/* --- the words of a command line ---------------------------------------- */

static const struct {
    const char *name;
    enum smtp_verb verb;
} verbs[] = {
    {"HELO", SMTP_CMD_HELO}, {"EHLO", SMTP_CMD_EHLO},         {"MAIL", SMTP_CMD_MAIL},
    {"RCPT", SMTP_CMD_RCPT}, {"DATA", SMTP_CMD_DATA},         {"RSET", SMTP_CMD_RSET},
    {"NOOP", SMTP_CMD_NOOP}, {"QUIT", SMTP_CMD_QUIT},         {"HELP", SMTP_CMD_HELP},
    {"VRFY", SMTP_CMD_VRFY}, {"EXPN", SMTP_CMD_EXPN},         {"STARTTLS", SMTP_CMD_STARTTLS},
    {"AUTH", SMTP_CMD_AUTH}, {"BDAT", SMTP_CMD_BDAT},
};

static char upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* True when s starts with word, compared without regard to ASCII case. */
static bool prefix_is(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    if (len < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (upper(s[i]) != upper(word[i]))
            return false;
    return true;
}

void smtp_command_parse(const char *line, size_t len, struct smtp_command *cmd_r)
{
    /* RFC 5321 4.1.1: white space after a command is to be tolerated. */
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    size_t n = 0;
    while (n < len && line[n] != ' ')
        n++;
    cmd_r->verb = SMTP_CMD_UNKNOWN;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (strlen(verbs[i].name) == n && prefix_is(line, len, verbs[i].name)) {
            cmd_r->verb = verbs[i].verb;
            break;
        }
    }
    cmd_r->arg = n < len ? line + n + 1 : "";
    cmd_r->arg_len = n < len ? len - n - 1 : 0;
}

bool smtp_param_is(const struct smtp_param *p, const char *name)
{
    return p->key_len == strlen(name) && prefix_is(p->key, p->key_len, name);
}

static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool keyword_ok(const char *k, size_t n)
{
    if (n == 0 || !is_alnum((unsigned char)k[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!is_alnum((unsigned char)k[i]) && k[i] != '-')
            return false;
    return true;
}

/* esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 octets under RFC 6531 */
static bool value_ok(const char *v, size_t n, bool utf8)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c >= 0x80 ? !utf8 : (c < 33 || c > 126 || c == '='))
            return false;
    }
    return true;
}

/* The index of the '>' that closes the path starting at s[0] == '<', or len. */
static size_t path_end(const char *s, size_t len)
{
    bool quoted = false;
    for (size_t i = 1; i < len; i++) {
        if (quoted && s[i] == '\\' && i + 1 < len)
            i++;
        else if (s[i] == '"')
            quoted = !quoted;
        else if (!quoted && s[i] == '>')
            return i;
    }
    return len;
}

int smtp_path_parse(const char *arg, size_t len, const char *prefix, bool utf8,
                    struct smtp_path_args *r)
{
    memset(r, 0, sizeof(*r));
    if (!prefix_is(arg, len, prefix))
        return -SMTP_PATH_SYNTAX;
    size_t i = strlen(prefix);
    while (i < len && arg[i] == ' ')
        i++;
    if (i >= len || arg[i] != '<')
        return -SMTP_PATH_SYNTAX;
    size_t close = i + path_end(arg + i, len - i);
    if (close >= len)
        return -SMTP_PATH_SYNTAX;
    const char *path = arg + i + 1;
    size_t path_len = close - i - 1;
    /* A-d-l ":" Mailbox: the route ends at the first ':' outside quotes. */
    if (path_len > 0 && path[0] == '@') {
        const char *colon = memchr(path, ':', path_len);
        if (colon == NULL)
            return -SMTP_PATH_SYNTAX;
        path_len -= (size_t)(colon + 1 - path);
        path = colon + 1;
        r->had_route = true;
    }
    r->mailbox = path;
    r->mailbox_len = path_len;
    i = close + 1;
    while (i < len) {
        if (arg[i] != ' ')
            return -SMTP_PATH_SYNTAX;
        while (i < len && arg[i] == ' ')
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && arg[i] != ' ')
            i++;
        if (r->n_params == SMTP_PARAMS_MAX)
            return -SMTP_PATH_TOO_MANY;
        struct smtp_param *p = &r->params[r->n_params++];
        const char *eq = memchr(arg + start, '=', i - start);
        p->key = arg + start;
        p->key_len = eq ? (size_t)(eq - p->key) : i - start;
        if (!keyword_ok(p->key, p->key_len))
            return -SMTP_PATH_PARAM;
        if (eq != NULL) {
            p->value = eq + 1;
            p->value_len = (size_t)(arg + i - p->value);
            if (!value_ok(p->value, p->value_len, utf8))
                return -SMTP_PATH_PARAM;
        }
    }
    return 0;
}
