/*
 * smtp_parser.h — the SMTP byte stream to events, with no I/O: bytes in,
 * command lines and message data out.
 *
 * In command mode the parser yields one line at a time (without its CRLF);
 * in data mode it yields the message dot-unstuffed, in chunks that borrow
 * from the caller's buffer, then one DATA_END at <CRLF>.<CRLF>. Only that
 * sequence ends the data: a bare CR or LF anywhere is noted in the DATA_END
 * event's flags, so the session can refuse the message whole (RFC 5321
 * 2.3.8, 4.1.1.4) and no second message can be smuggled inside the first.
 * With lf_ends_line, a data line that ends in a bare LF is taken as if it
 * ended in CRLF (the message gets the CRLF), as clients that send a file
 * as it lies on disk expect; a dot line after such a line still ends
 * nothing, so the bytes after a fake end stay inside the one message.
 */
#ifndef KOTAK_SMTP_PARSER_H
#define KOTAK_SMTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_perr {
    SMTP_PERR_LINE_TOO_LONG = 1, /* the rest of the line is skipped to its CRLF */
    SMTP_PERR_BARE_LF,           /* a line that ends in LF without CR */
    SMTP_PERR_BARE_CR,           /* a CR not followed by LF */
    SMTP_PERR_NUL,               /* a NUL byte in a command */
};

enum smtp_event_type {
    SMTP_EV_LINE,       /* a command line: data/len, no CRLF */
    SMTP_EV_DATA,       /* message bytes, dot-unstuffed, CRLF line ends kept */
    SMTP_EV_DATA_END,   /* the final dot; flags say what was wrong inside */
};

enum smtp_data_flags {
    SMTP_DATA_BARE_EOL = 1 << 0,  /* a bare CR (or, without lf_ends_line, LF) was seen */
    SMTP_DATA_LONG_LINE = 1 << 1, /* a text line over text_max octets */
    SMTP_DATA_LF_MADE_CRLF = 1 << 2, /* with lf_ends_line: a line ended in a bare LF (no fault) */
};

struct smtp_event {
    enum smtp_event_type type;
    const char *data; /* borrowed from the buffer given to smtp_parser_next */
    size_t len;
    unsigned flags; /* SMTP_DATA_* on DATA_END */
};

enum smtp_parser_state {
    SMTP_P_CMD,       /* reading a command line */
    SMTP_P_SKIP,      /* skipping the rest of an overlong line */
    SMTP_P_DATA_BOL,  /* data: at the beginning of a line */
    SMTP_P_DATA,      /* data: inside a line */
    SMTP_P_DATA_CR,   /* data: after a CR inside a line */
    SMTP_P_DATA_DOT,  /* data: after a dot at the beginning of a line */
    SMTP_P_DATA_DOTCR /* data: after ".<CR>" at the beginning of a line */
};

struct smtp_parser {
    enum smtp_parser_state state;
    size_t line_max;  /* command line, CRLF included (RFC 5321 4.5.3.1.4: 512) */
    size_t text_max;  /* text line, CRLF included (RFC 5321 4.5.3.1.6: 1000) */
    size_t line_len;  /* data: octets of the current line so far */
    unsigned flags;   /* data: SMTP_DATA_* so far */
    bool lf_ends_line; /* data: a bare LF ends a line, as CRLF would (else it is flagged) */
    bool after_lf;     /* data: the current line began after a bare LF, so cannot end the data */
};

/* A parser in command mode with the given limits (0: the RFC minimums); lf_ends_line false. */
void smtp_parser_init(struct smtp_parser *p, size_t line_max, size_t text_max);

/* Switches to data mode, after the session answered 354 to DATA. */
void smtp_parser_start_data(struct smtp_parser *p);

/*
 * Parses buf[0..len). Returns 1 with an event in *ev_r, 0 when more bytes
 * are needed, or -SMTP_PERR_* for a bad command line. *consumed_r says how
 * many bytes of buf are done with, in every case: the caller drops them and
 * calls again with the rest (plus what arrives next). Event data borrows
 * from buf and is valid until the caller drops those bytes.
 * In command mode a partial line is not consumed; the caller keeps it.
 */
int smtp_parser_next(struct smtp_parser *p, const char *buf, size_t len, size_t *consumed_r,
                     struct smtp_event *ev_r);

/* --- the words of a command line ---------------------------------------- */

enum smtp_verb {
    SMTP_CMD_UNKNOWN,
    SMTP_CMD_HELO,
    SMTP_CMD_EHLO,
    SMTP_CMD_MAIL,
    SMTP_CMD_RCPT,
    SMTP_CMD_DATA,
    SMTP_CMD_RSET,
    SMTP_CMD_NOOP,
    SMTP_CMD_QUIT,
    SMTP_CMD_HELP,
    SMTP_CMD_VRFY,
    SMTP_CMD_EXPN,
    SMTP_CMD_STARTTLS,
    SMTP_CMD_AUTH,
    SMTP_CMD_BDAT,
};

/* A command line split into its verb and the rest, both borrowed from the line. */
struct smtp_command {
    enum smtp_verb verb;
    const char *arg; /* after the verb and one space; "" if none */
    size_t arg_len;
};

/*
 * Splits a command line into verb and argument at the first space, after
 * dropping the spaces and tabs that end it. A verb is matched without
 * regard to case (RFC 5321 2.4); anything else, "MAILX" included, is
 * SMTP_CMD_UNKNOWN.
 */
void smtp_command_parse(const char *line, size_t len, struct smtp_command *cmd_r);

#define SMTP_PARAMS_MAX 16

/* An ESMTP parameter, "KEY" or "KEY=VALUE"; value is NULL when there is no '='. */
struct smtp_param {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
};

/* MAIL FROM:<path> or RCPT TO:<path>, with parameters. */
struct smtp_path_args {
    const char *mailbox; /* inside the brackets, source route dropped; "" for <> */
    size_t mailbox_len;
    bool had_route;      /* a source route (<@a,@b:x@y>) was given and dropped */
    size_t n_params;
    struct smtp_param params[SMTP_PARAMS_MAX];
};

enum smtp_path_err {
    SMTP_PATH_SYNTAX = 1, /* no prefix, no brackets, junk after them */
    SMTP_PATH_PARAM,      /* a malformed parameter: no key, "X=", a space or control in it */
    SMTP_PATH_TOO_MANY,   /* more than SMTP_PARAMS_MAX parameters */
};

/*
 * Parses the argument of MAIL ("FROM:") or RCPT ("TO:"): the prefix, matched
 * without regard to case and allowing spaces after the colon as many clients
 * send them; a path in angle brackets that may hold a quoted local part; a
 * source route, which RFC 5321 4.1.2 says to accept and ignore; then the
 * parameters (RFC 5321 4.1.2 esmtp-param; with utf8, values may hold UTF-8
 * as RFC 6531 allows). Returns 0 or -SMTP_PATH_*.
 */
int smtp_path_parse(const char *arg, size_t len, const char *prefix, bool utf8,
                    struct smtp_path_args *r);

/* True when the parameter's key is name, without regard to case. */
bool smtp_param_is(const struct smtp_param *p, const char *name);

#endif
