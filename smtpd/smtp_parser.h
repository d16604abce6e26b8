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
    SMTP_DATA_BARE_EOL = 1 << 0,  /* a bare CR or LF was seen */
    SMTP_DATA_LONG_LINE = 1 << 1, /* a text line over text_max octets */
    SMTP_DATA_NUL = 1 << 2,       /* a NUL byte */
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
};

/* A parser in command mode with the given limits (0: the RFC minimums). */
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

#endif
