/*
 * pop3_parser.h — POP3 command lines (RFC 1939, RFC 2449), with no I/O.
 *
 * Bytes in, one command line out at a time. A line is at most 255 octets
 * with its CRLF (RFC 2449 4); a longer one is an error and the rest of it,
 * up to its CRLF, is skipped, so it never becomes a command.
 */
#ifndef KOTAK_POP3_PARSER_H
#define KOTAK_POP3_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#define POP3_LINE_MAX 255
#define POP3_ARGS_MAX 2

enum pop3_perr {
    POP3_PERR_LINE_TOO_LONG = 1,
    POP3_PERR_BAD_EOL, /* a bare CR or LF, or a NUL */
};

struct pop3_parser {
    bool skipping; /* inside the tail of an overlong line */
};

enum pop3_verb {
    POP3_CMD_UNKNOWN,
    POP3_CMD_USER,
    POP3_CMD_PASS,
    POP3_CMD_AUTH,
    POP3_CMD_CAPA,
    POP3_CMD_STLS,
    POP3_CMD_STAT,
    POP3_CMD_LIST,
    POP3_CMD_UIDL,
    POP3_CMD_RETR,
    POP3_CMD_TOP,
    POP3_CMD_DELE,
    POP3_CMD_NOOP,
    POP3_CMD_RSET,
    POP3_CMD_QUIT,
    POP3_CMD_APOP,
    POP3_CMD_UTF8,
};

struct pop3_command {
    enum pop3_verb verb;
    const char *rest;      /* everything after the verb and one space, for PASS */
    size_t rest_len;
    size_t argc;           /* space-separated words after the verb */
    const char *argv[POP3_ARGS_MAX];
    size_t arg_len[POP3_ARGS_MAX];
    bool too_many_args;
};

void pop3_parser_init(struct pop3_parser *p);

/*
 * Finds the next line in buf[0..len). Returns 1 with the line (no CRLF) in
 * *line_r / *line_len_r, 0 when more bytes are needed, or -POP3_PERR_*.
 * *consumed_r is what the caller drops in every case; a partial line is not
 * consumed.
 */
int pop3_parser_next(struct pop3_parser *p, const char *buf, size_t len, size_t *consumed_r,
                     const char **line_r, size_t *line_len_r);

/* Splits a line into its verb (any case) and arguments. */
void pop3_command_parse(const char *line, size_t len, struct pop3_command *cmd_r);

/*
 * A message number argument: 1..max, decimal, no sign, no leading zeros
 * beyond "0" itself being refused. Returns 0 with *n_r, or -1.
 */
int pop3_parse_number(const char *s, size_t len, unsigned long max, unsigned long *n_r);

#endif
