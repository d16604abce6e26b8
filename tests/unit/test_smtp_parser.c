/*
 * test_smtp_parser.c — the SMTP byte stream (smtpd/smtp_parser.h): command
 * lines, CRLF and its bare forms, the 512-octet line limit, DATA with dot
 * unstuffing and the one true end <CRLF>.<CRLF> (no smuggled second message),
 * the 1000-octet text line limit; then the words of a command line and the
 * MAIL/RCPT path with its ESMTP parameters.
 *
 * Each stream case runs twice, as STYLE.md asks: the whole input in one
 * buffer, then one byte at a time the way the glue feeds it (keep what was not
 * consumed, append the next byte, call again). The events become a transcript
 * — "L[line]", "D[data]" (chunks merged, so that chunk boundaries do not
 * matter), "E(flags)", "!error", and "R[rest]" for bytes left unconsumed at
 * the end — and both runs must give the expected transcript. Every buffer
 * handed to the parser is a heap copy of exactly its length, so that
 * AddressSanitizer sees any read past the end.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp_parser.h"
#include "tap.h"

/* --- the transcript ------------------------------------------------------ */

#define TS_MAX 16384

struct transcript {
    char text[TS_MAX]; /* the events, escaped */
    size_t len;
    bool in_data;     /* the last event was a DATA chunk: merge the next one */
    char raw[TS_MAX]; /* the current message's data, unescaped */
    size_t raw_len;
    bool raw_overflow;
    int property_fails; /* clean messages with a bare CR or LF in their data */
    int messages;
};

static void ts_put(struct transcript *t, const char *s, size_t n)
{
    if (t->len + n >= TS_MAX)
        n = TS_MAX - 1 - t->len;
    memcpy(t->text + t->len, s, n);
    t->len += n;
    t->text[t->len] = '\0';
}

static void ts_str(struct transcript *t, const char *s)
{
    ts_put(t, s, strlen(s));
}

/* Appends bytes with CR, LF and NUL spelled out, so a transcript is a C string. */
static void ts_escaped(struct transcript *t, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r')
            ts_str(t, "\\r");
        else if (p[i] == '\n')
            ts_str(t, "\\n");
        else if (p[i] == '\0')
            ts_str(t, "\\0");
        else
            ts_put(t, &p[i], 1);
    }
}

/* RFC 5321 2.3.8: a CR only before LF, an LF only after CR. */
static bool has_bare_eol(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n'))
            return true;
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            return true;
    }
    return false;
}

static const char *perr_name(int rc)
{
    switch (-rc) {
    case SMTP_PERR_LINE_TOO_LONG:
        return "!too-long";
    case SMTP_PERR_BARE_LF:
        return "!bare-lf";
    case SMTP_PERR_BARE_CR:
        return "!bare-cr";
    case SMTP_PERR_NUL:
        return "!nul";
    default:
        return "!unknown-error";
    }
}

static void ts_event(struct transcript *t, struct smtp_parser *p, const struct smtp_event *ev)
{
    switch (ev->type) {
    case SMTP_EV_LINE:
        t->in_data = false;
        ts_str(t, "L[");
        ts_escaped(t, ev->data, ev->len);
        ts_str(t, "]");
        /* What the session does after answering 354. */
        if (ev->len == 4 && strncasecmp(ev->data, "DATA", 4) == 0) {
            smtp_parser_start_data(p);
            t->raw_len = 0;
            t->raw_overflow = false;
        }
        break;
    case SMTP_EV_DATA:
        if (t->in_data && t->len > 0)
            t->len--; /* reopen the previous "D[...]" */
        else
            ts_str(t, "D[");
        ts_escaped(t, ev->data, ev->len);
        ts_str(t, "]");
        t->in_data = true;
        if (t->raw_len + ev->len <= TS_MAX) {
            memcpy(t->raw + t->raw_len, ev->data, ev->len);
            t->raw_len += ev->len;
        } else {
            t->raw_overflow = true;
        }
        break;
    case SMTP_EV_DATA_END:
        t->in_data = false;
        ts_str(t, "E(");
        if (ev->flags == 0)
            ts_str(t, "0");
        static const struct {
            unsigned flag;
            const char *name;
        } names[] = {{SMTP_DATA_BARE_EOL, "bare"},
                     {SMTP_DATA_LONG_LINE, "long"},
                     {SMTP_DATA_LF_MADE_CRLF, "lf"}};
        const char *sep = "";
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if (ev->flags & names[i].flag) {
                ts_str(t, sep);
                ts_str(t, names[i].name);
                sep = ",";
            }
        }
        ts_str(t, ")");
        /* The property: a message the flags call clean is made of CRLF lines. */
        t->messages++;
        if (!(ev->flags & SMTP_DATA_BARE_EOL) && !t->raw_overflow &&
            (has_bare_eol(t->raw, t->raw_len) ||
             (t->raw_len > 0 && (t->raw_len < 2 || memcmp(t->raw + t->raw_len - 2, "\r\n", 2)))))
            t->property_fails++;
        t->raw_len = 0;
        break;
    }
}

/*
 * Runs the parser over buf[0..len) until it needs more bytes; returns how
 * many were consumed. The buffer is copied to the heap at its exact size.
 */
static size_t drive(struct smtp_parser *p, const char *buf, size_t len, struct transcript *t)
{
    char *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    size_t off = 0;
    for (int guard = 0; guard < 100000; guard++) {
        struct smtp_event ev;
        size_t used = 12345;
        int rc = smtp_parser_next(p, copy + off, len - off, &used, &ev);
        if (used > len - off) {
            ts_str(t, "!consumed-too-much");
            break;
        }
        off += used;
        if (rc < 0) {
            t->in_data = false;
            ts_str(t, perr_name(rc));
        } else if (rc == 1) {
            ts_event(t, p, &ev);
        } else if (used == 0) {
            break;
        }
    }
    free(copy);
    return off;
}

enum mode { WHOLE, TRICKLE };

static bool lf_ends_line; /* the parser's bare_newline = normalize, for test_data_normalize */

static void run_stream(const char *in, size_t len, enum mode mode, size_t line_max, size_t text_max,
                       struct transcript *t)
{
    struct smtp_parser p;
    smtp_parser_init(&p, line_max, text_max);
    p.lf_ends_line = lf_ends_line;
    memset(t, 0, sizeof(*t));
    char *pending = malloc(len ? len : 1);
    size_t n = 0;
    if (mode == WHOLE) {
        memcpy(pending, in, len);
        n = len;
        size_t used = drive(&p, pending, n, t);
        memmove(pending, pending + used, n - used);
        n -= used;
    } else {
        for (size_t i = 0; i < len; i++) {
            pending[n++] = in[i];
            size_t used = drive(&p, pending, n, t);
            memmove(pending, pending + used, n - used);
            n -= used;
        }
    }
    if (n > 0) {
        ts_str(t, "R[");
        ts_escaped(t, pending, n);
        ts_str(t, "]");
    }
    free(pending);
}

/* The transcript with the contents of DATA chunks left out: "D" alone. */
static void shape_of(const char *full, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; full[i] != '\0' && o + 1 < size; i++) {
        if (full[i] == 'D' && full[i + 1] == '[') {
            out[o++] = 'D';
            while (full[i] != '\0' && full[i] != ']')
                i++;
            continue;
        }
        out[o++] = full[i];
    }
    out[o] = '\0';
}

enum match { FULL, SHAPE };

/* Runs one stream case both ways and checks the transcripts. */
static void check_stream(const char *name, const char *in, size_t len, size_t line_max,
                         size_t text_max, enum match match, const char *want)
{
    static struct transcript whole, trickle;
    run_stream(in, len, WHOLE, line_max, text_max, &whole);
    run_stream(in, len, TRICKLE, line_max, text_max, &trickle);
    static char shape[TS_MAX];
    if (match == SHAPE) {
        shape_of(whole.text, shape, sizeof(shape));
        is_str(shape, want, "%s: whole buffer (shape)", name);
    } else {
        is_str(whole.text, want, "%s: whole buffer", name);
    }
    is_str(trickle.text, whole.text, "%s: one byte at a time gives the same events", name);
    if (whole.messages > 0) {
        is_int(whole.property_fails, 0, "%s: a clean message has only CRLF line ends (whole)",
               name);
        is_int(trickle.property_fails, 0, "%s: a clean message has only CRLF line ends (trickle)",
               name);
    }
}

/* --- command mode ------------------------------------------------------- */

struct stream_case {
    const char *name;
    const char *in;
    size_t len;
    enum match match;
    const char *want;
};

/* clang-format off */
#define S(name, in, want) {name, in, sizeof(in) - 1, FULL, want}
#define SH(name, in, want) {name, in, sizeof(in) - 1, SHAPE, want}
/* clang-format on */

static const struct stream_case cmd_cases[] = {
    S("one line", "EHLO x\r\n", "L[EHLO x]"),
    S("pipelined lines", "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
      "L[EHLO x]L[MAIL FROM:<a@b>]L[RCPT TO:<c@d>]"),
    S("an empty line", "\r\n", "L[]"),
    S("a partial line is kept", "NOOP", "R[NOOP]"),
    S("a line and a partial one", "NOOP\r\nQU", "L[NOOP]R[QU]"),
    S("a final CR waits for its LF", "NOOP\r", "R[NOOP\\r]"),
    S("8-bit bytes pass", "EHLO \xc3\xa9\r\n", "L[EHLO \xc3\xa9]"),
    S("bare LF", "NOOP\nQUIT\r\n", "!bare-lfL[QUIT]"),
    S("bare LF alone", "\n", "!bare-lf"),
    S("bare CR inside a line", "NO\rOP\r\nQUIT\r\n", "!bare-crL[QUIT]"),
    S("CR at the end, then not LF", "NOOP\rX\r\nQUIT\r\n", "!bare-crL[QUIT]"),
    S("CR CR LF", "NOOP\r\r\nQUIT\r\n", "!bare-crL[QUIT]"),
    S("NUL", "NO\0OP\r\nQUIT\r\n", "!nulL[QUIT]"),
    S("NUL at the start", "\0\r\n", "!nul"),
    /* Both faults in one line: the first one in the stream is the one that
     * counts, however the bytes arrive. */
    S("bare CR, then bare LF", "A\rB\nQUIT\r\n", "!bare-crL[QUIT]"),
    S("errors do not stop later lines", "\nNOOP\r\n\0\r\nQUIT\r\n", "!bare-lfL[NOOP]!nulL[QUIT]"),
};

static void test_command_lines(void)
{
    for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
        const struct stream_case *c = &cmd_cases[i];
        check_stream(c->name, c->in, c->len, 0, 0, c->match, c->want);
    }
}

/* Builds prefix + n x ch + suffix into out. */
static size_t build(char *out, size_t size, const char *prefix, char ch, size_t n,
                    const char *suffix)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    if (pl + n + sl + 1 > size)
        return 0;
    memcpy(out, prefix, pl);
    memset(out + pl, ch, n);
    memcpy(out + pl + n, suffix, sl + 1);
    return pl + n + sl;
}

static void test_line_limit(void)
{
    static char in[8192], as[8192], want[16384];
    static const struct {
        const char *name;
        size_t n_a; /* octets of 'A' before the suffix */
        const char *suffix;
        const char *want_after; /* the transcript after the long line's own events */
    } cases[] = {
        /* RFC 5321 4.5.3.1.4: 512 octets with the CRLF. */
        {"a line of exactly 512 octets", 510, "\r\nQUIT\r\n", "L[QUIT]"},
        {"a line of 513 octets", 511, "\r\nQUIT\r\n", "!too-longL[QUIT]"},
        {"a line of 514 octets", 512, "\r\nQUIT\r\n", "!too-longL[QUIT]"},
        /* The tail of an overlong line is never read as a command. */
        {"600 octets with QUIT inside", 600, "QUIT\r\nNOOP\r\n", "!too-longL[NOOP]"},
        {"600 octets with CR QUIT inside", 600, "\rQUIT\r\nNOOP\r\n", "!too-longL[NOOP]"},
        {"6000 octets", 6000, "\r\nNOOP\r\n", "!too-longL[NOOP]"},
        {"an overlong line ending in a bare LF", 600, "\nNOOP\r\n", "!too-longL[NOOP]"},
        {"an overlong line without its end yet", 600, "", "!too-long"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = build(in, sizeof(in), "", 'A', cases[i].n_a, cases[i].suffix);
        if (cases[i].n_a == 510) {
            build(as, sizeof(as), "L[", 'A', 510, "]");
            snprintf(want, sizeof(want), "%s%s", as, cases[i].want_after);
        } else {
            snprintf(want, sizeof(want), "%s", cases[i].want_after);
        }
        check_stream(cases[i].name, in, len, 0, 0, FULL, want);
    }

    /* A larger limit, as the session sets it for AUTH lines. */
    size_t len = build(in, sizeof(in), "", 'A', 4094, "\r\nQUIT\r\n");
    build(as, sizeof(as), "L[", 'A', 4094, "]");
    snprintf(want, sizeof(want), "%sL[QUIT]", as);
    check_stream("line_max 4096: 4096 octets", in, len, 4096, 0, FULL, want);
    len = build(in, sizeof(in), "", 'A', 4095, "\r\nQUIT\r\n");
    check_stream("line_max 4096: 4097 octets", in, len, 4096, 0, FULL, "!too-longL[QUIT]");
}

/* --- data mode ---------------------------------------------------------- */

static const struct stream_case data_cases[] = {
    S("a message", "DATA\r\nhello\r\n.\r\n", "L[DATA]D[hello\\r\\n]E(0)"),
    S("line ends are kept", "DATA\r\na\r\n\r\nb\r\n.\r\n", "L[DATA]D[a\\r\\n\\r\\nb\\r\\n]E(0)"),
    S("dot-unstuffing", "DATA\r\n..x\r\n.\r\n", "L[DATA]D[.x\\r\\n]E(0)"),
    S("a stuffed lone dot", "DATA\r\na\r\n..\r\nb\r\n.\r\n", "L[DATA]D[a\\r\\n.\\r\\nb\\r\\n]E(0)"),
    S("two stuffed dots", "DATA\r\n...\r\n.\r\n", "L[DATA]D[..\\r\\n]E(0)"),
    S("a dot inside a line stays", "DATA\r\na.b\r\na..\r\n.\r\n",
      "L[DATA]D[a.b\\r\\na..\\r\\n]E(0)"),
    S("an empty message", "DATA\r\n.\r\n", "L[DATA]E(0)"),
    S("one empty line", "DATA\r\n\r\n.\r\n", "L[DATA]D[\\r\\n]E(0)"),
    S("8-bit data passes", "DATA\r\n\xe2\x82\xac\r\n.\r\n", "L[DATA]D[\xe2\x82\xac\\r\\n]E(0)"),
    S("commands after the end", "DATA\r\nhi\r\n.\r\nMAIL FROM:<a@b>\r\n",
      "L[DATA]D[hi\\r\\n]E(0)L[MAIL FROM:<a@b>]"),
    S("two messages", "DATA\r\na\r\n.\r\nDATA\r\nb\r\n.\r\nQUIT\r\n",
      "L[DATA]D[a\\r\\n]E(0)L[DATA]D[b\\r\\n]E(0)L[QUIT]"),
    S("data not yet ended", "DATA\r\nabc\r\n.", "L[DATA]D[abc\\r\\n]"),
    S("data not yet ended after .CR", "DATA\r\nabc\r\n.\r", "L[DATA]D[abc\\r\\n]"),
    S("a bare LF in a line", "DATA\r\na\nb\r\n.\r\n", "L[DATA]D[a\\nb\\r\\n]E(bare)"),
    S("a bare CR in a line", "DATA\r\na\rb\r\n.\r\n", "L[DATA]D[a\\rb\\r\\n]E(bare)"),
    S("a NUL in data is data", "DATA\r\na\0b\r\n.\r\n", "L[DATA]D[a\\0b\\r\\n]E(0)"),
    S(".CR then not LF at the first line", "DATA\r\n.\rX\r\n.\r\n", "L[DATA]D[\\rX\\r\\n]E(bare)"),

    /* SMTP smuggling: only <CRLF>.<CRLF> ends the data. Each variant is
     * followed by a would-be second message; it must stay inside the first
     * (which the flags mark), and the real end comes after it. The contents
     * of a message marked bare are not checked, only that they stay data. */
    SH("smuggling \\n.\\n", "DATA\r\nx\n.\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
       "L[DATA]DE(bare)L[QUIT]"),
    SH("smuggling \\r.\\r", "DATA\r\nx\r.\rMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
       "L[DATA]DE(bare)L[QUIT]"),
    SH("smuggling \\n.\\r\\n", "DATA\r\nx\n.\r\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
       "L[DATA]DE(bare)L[QUIT]"),
    SH("smuggling \\r.\\r\\n", "DATA\r\nx\r.\r\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
       "L[DATA]DE(bare)L[QUIT]"),
    SH("smuggling \\r\\n.\\n", "DATA\r\nx\r\n.\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
       "L[DATA]DE(bare)L[QUIT]"),
    SH("smuggling \\r\\n.\\r + more", "DATA\r\nx\r\n.\rMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
       "L[DATA]DE(bare)L[QUIT]"),
    SH("smuggling \\r\\n.\\r\\r\\n", "DATA\r\nx\r\n.\r\r\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
       "L[DATA]DE(bare)L[QUIT]"),
    SH("smuggling .\\n at the first line", "DATA\r\n.\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
       "L[DATA]DE(bare)L[QUIT]"),
    SH("smuggling \\n\\n.\\r\\n", "DATA\r\nx\n\n.\r\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
       "L[DATA]DE(bare)L[QUIT]"),
    /* No bare CR or LF here: a clean message whose NUL line is data. */
    S("smuggling \\r\\n.\\0\\r\\n", "DATA\r\nx\r\n.\0\r\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
      "L[DATA]D[x\\r\\n\\0\\r\\nMAIL FROM:<e@v>\\r\\n]E(0)L[QUIT]"),
    /* A CR before the real CRLF: bare, but the end is real. */
    S("CR before the real end", "DATA\r\nx\r\r\n.\r\nQUIT\r\n",
      "L[DATA]D[x\\r\\r\\n]E(bare)L[QUIT]"),
};

static void test_data(void)
{
    for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
        const struct stream_case *c = &data_cases[i];
        check_stream(c->name, c->in, c->len, 0, 0, c->match, c->want);
    }
}

/* With lf_ends_line, a bare LF ends a data line as CRLF would, and the
 * message gets CRLF; a dot line after it still ends nothing. */
static const struct stream_case normalize_cases[] = {
    S("a bare LF becomes CRLF", "DATA\r\na\nb\r\n.\r\n", "L[DATA]D[a\\r\\nb\\r\\n]E(lf)"),
    S("every line ends in a bare LF", "DATA\r\na\nb\n\r\n.\r\n",
      "L[DATA]D[a\\r\\nb\\r\\n\\r\\n]E(lf)"),
    S("dot-unstuffing after a bare LF", "DATA\r\na\n..x\r\n.\r\n", "L[DATA]D[a\\r\\n.x\\r\\n]E(lf)"),
    S("a bare CR is still flagged", "DATA\r\na\rb\r\n.\r\n", "L[DATA]D[a\\rb\\r\\n]E(bare)"),
    S("smuggling \\n.\\r\\n stays one message", "DATA\r\nx\n.\r\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
      "L[DATA]D[x\\r\\n\\r\\nMAIL FROM:<e@v>\\r\\n]E(lf)L[QUIT]"),
    S("smuggling \\r\\n.\\n stays one message", "DATA\r\nx\r\n.\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
      "L[DATA]D[x\\r\\n\\r\\nMAIL FROM:<e@v>\\r\\n]E(lf)L[QUIT]"),
    S("smuggling \\n.\\n stays one message", "DATA\r\nx\n.\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
      "L[DATA]D[x\\r\\n\\r\\nMAIL FROM:<e@v>\\r\\n]E(lf)L[QUIT]"),
    S("smuggling .\\n at the first line", "DATA\r\n.\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
      "L[DATA]D[\\r\\nMAIL FROM:<e@v>\\r\\n]E(lf)L[QUIT]"),
    S("smuggling \\n\\n.\\r\\n", "DATA\r\nx\n\n.\r\nMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
      "L[DATA]D[x\\r\\n\\r\\n\\r\\nMAIL FROM:<e@v>\\r\\n]E(lf)L[QUIT]"),
    SH("smuggling \\r.\\r is still refused", "DATA\r\nx\r.\rMAIL FROM:<e@v>\r\n.\r\nQUIT\r\n",
       "L[DATA]DE(bare)L[QUIT]"),
    S("a CRLF line after a bare LF line can end the data", "DATA\r\nx\ny\r\n.\r\nQUIT\r\n",
      "L[DATA]D[x\\r\\ny\\r\\n]E(lf)L[QUIT]"),
};

static void test_data_normalize(void)
{
    lf_ends_line = true;
    for (size_t i = 0; i < sizeof(normalize_cases) / sizeof(normalize_cases[0]); i++) {
        const struct stream_case *c = &normalize_cases[i];
        check_stream(c->name, c->in, c->len, 0, 0, c->match, c->want);
    }
    lf_ends_line = false;
}

/* RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF. */
static void test_text_limit(void)
{
    static char in[4096], line[2048], want[4096];
    static const struct {
        const char *name;
        const char *prefix; /* before the run of 'x' */
        size_t n;
        const char *after; /* more lines before the end */
        const char *flags;
    } cases[] = {
        {"998 octets and CRLF", "", 998, "", "0"},
        {"999 octets and CRLF", "", 999, "", "long"},
        {"a stuffing dot is not counted", ".", 998, "", "0"},
        {"a long line among short ones", "", 1200, "short\r\n", "long"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char head[8];
        snprintf(head, sizeof(head), "DATA\r\n%s", cases[i].prefix);
        size_t len = build(in, sizeof(in), head, 'x', cases[i].n, "\r\n");
        len += (size_t)snprintf(in + len, sizeof(in) - len, "%s.\r\n", cases[i].after);
        build(line, sizeof(line), "", 'x', cases[i].n, "");
        /* The stuffing dot is dropped; the rest is data. */
        snprintf(want, sizeof(want), "L[DATA]D[%s\\r\\n%s]E(%s)", line,
                 cases[i].after[0] ? "short\\r\\n" : "", cases[i].flags);
        check_stream(cases[i].name, in, len, 0, 0, FULL, want);
    }

    /* A bare line end and a long line together. */
    size_t len = build(in, sizeof(in), "DATA\r\na\nb", 'x', 1000, "\r\n.\r\n");
    check_stream("bare and long", in, len, 0, 0, SHAPE, "L[DATA]DE(bare,long)");

    /* A custom limit. */
    len = build(in, sizeof(in), "DATA\r\n", 'x', 2000, "\r\n.\r\n");
    check_stream("text_max 4096: 2000 octets", in, len, 0, 4096, SHAPE, "L[DATA]DE(0)");
}

/* --- the words of a command line ---------------------------------------- */

static void test_command_parse(void)
{
    static const struct {
        const char *line;
        enum smtp_verb verb;
        const char *arg;
    } cases[] = {
        {"EHLO client.test", SMTP_CMD_EHLO, "client.test"},
        {"ehlo client.test", SMTP_CMD_EHLO, "client.test"},
        {"HeLo x", SMTP_CMD_HELO, "x"},
        {"MaIl FROM:<a@b>", SMTP_CMD_MAIL, "FROM:<a@b>"},
        {"rcpt TO:<a@b> NOTIFY=NEVER", SMTP_CMD_RCPT, "TO:<a@b> NOTIFY=NEVER"},
        {"RCPT  TO:<a@b>", SMTP_CMD_RCPT, " TO:<a@b>"},
        {"DATA", SMTP_CMD_DATA, ""},
        {"data ", SMTP_CMD_DATA, ""},
        {"DATA \t ", SMTP_CMD_DATA, ""},
        {"EHLO client.test  ", SMTP_CMD_EHLO, "client.test"},
        {"MAIL FROM:<a@b>\t", SMTP_CMD_MAIL, "FROM:<a@b>"},
        {"RSET", SMTP_CMD_RSET, ""},
        {"noop anything", SMTP_CMD_NOOP, "anything"},
        {"QUIT", SMTP_CMD_QUIT, ""},
        {"help me", SMTP_CMD_HELP, "me"},
        {"VRFY alice", SMTP_CMD_VRFY, "alice"},
        {"EXPN list", SMTP_CMD_EXPN, "list"},
        {"StartTLS", SMTP_CMD_STARTTLS, ""},
        {"AUTH PLAIN AGFiAGM=", SMTP_CMD_AUTH, "PLAIN AGFiAGM="},
        {"BDAT 10 LAST", SMTP_CMD_BDAT, "10 LAST"},
        {"MAILX", SMTP_CMD_UNKNOWN, ""},
        {"MAILX FROM:<a@b>", SMTP_CMD_UNKNOWN, "FROM:<a@b>"},
        {"MAI", SMTP_CMD_UNKNOWN, ""},
        {"STARTTLSX", SMTP_CMD_UNKNOWN, ""},
        {"FOO bar", SMTP_CMD_UNKNOWN, "bar"},
        {"", SMTP_CMD_UNKNOWN, ""},
        {" NOOP", SMTP_CMD_UNKNOWN, "NOOP"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *line = cases[i].line;
        size_t len = strlen(line);
        char *copy = malloc(len ? len : 1); /* exactly len bytes, no NUL */
        memcpy(copy, line, len);
        struct smtp_command c;
        memset(&c, 0xa5, sizeof(c));
        smtp_command_parse(copy, len, &c);
        is_int(c.verb, cases[i].verb, "parse \"%s\": verb", line);
        char arg[128] = "(bad)";
        if (c.arg_len < sizeof(arg)) {
            memcpy(arg, c.arg, c.arg_len);
            arg[c.arg_len] = '\0';
        }
        is_str(arg, cases[i].arg, "parse \"%s\": argument", line);
        free(copy);
    }
}

/* --- MAIL FROM / RCPT TO ------------------------------------------------- */

struct path_case {
    const char *prefix;
    const char *arg;
    size_t len;
    bool utf8;
    int rc;
    const char *mailbox; /* when rc == 0 */
    bool had_route;
    const char *params; /* "KEY=VALUE KEY ..." as parsed, when rc == 0 */
};

/* clang-format off */
#define P(pfx, arg, mbox, route, params) {pfx, arg, sizeof(arg) - 1, false, 0, mbox, route, params}
#define PU(pfx, arg, mbox, params) {pfx, arg, sizeof(arg) - 1, true, 0, mbox, false, params}
#define PX(pfx, arg, utf8, err) {pfx, arg, sizeof(arg) - 1, utf8, -(err), NULL, false, NULL}
/* clang-format on */

static const struct path_case path_cases[] = {
    P("FROM:", "FROM:<a@b>", "a@b", false, ""),
    P("FROM:", "from:<a@b>", "a@b", false, ""),
    P("FROM:", "from: <a@b>", "a@b", false, ""),
    P("FROM:", "FROM:  <a@b>", "a@b", false, ""),
    P("FROM:", "FROM:<>", "", false, ""),
    P("FROM:", "FROM:<a@b> ", "a@b", false, ""),
    P("TO:", "TO:<alice@example.test>", "alice@example.test", false, ""),
    P("TO:", "To:<@x,@y:a@b>", "a@b", true, ""),
    P("TO:", "TO:<@x:a@b>", "a@b", true, ""),
    P("FROM:", "FROM:<\"a>b\"@x>", "\"a>b\"@x", false, ""),
    P("FROM:", "FROM:<\"a b\"@x> SIZE=5", "\"a b\"@x", false, "SIZE=5"),
    P("FROM:", "FROM:<\"a\\\">\"@x>", "\"a\\\">\"@x", false, ""),
    P("FROM:", "FROM:<a@b> SIZE=100 BODY=8BITMIME", "a@b", false, "SIZE=100 BODY=8BITMIME"),
    P("FROM:", "FROM:<a@b> SMTPUTF8", "a@b", false, "SMTPUTF8"),
    P("FROM:", "FROM:<> SIZE=1 SMTPUTF8 BODY=7BIT", "", false, "SIZE=1 SMTPUTF8 BODY=7BIT"),
    P("FROM:", "FROM:<a@b> X-KEY=~!", "a@b", false, "X-KEY=~!"),
    P("FROM:", "FROM:<a@b> 1X=v", "a@b", false, "1X=v"),
    PU("FROM:", "FROM:<a@b> X=\xc3\xa9", "a@b", "X=\xc3\xa9"),
    PU("FROM:", "FROM:<\xc3\xa9@b>", "\xc3\xa9@b", ""),

    PX("FROM:", "FROM:a@b", false, SMTP_PATH_SYNTAX),
    PX("FROM:", "FROM:", false, SMTP_PATH_SYNTAX),
    PX("FROM:", "FROM", false, SMTP_PATH_SYNTAX),
    PX("FROM:", "", false, SMTP_PATH_SYNTAX),
    PX("FROM:", "FROM <a@b>", false, SMTP_PATH_SYNTAX),
    PX("FROM:", "TO:<a@b>", false, SMTP_PATH_SYNTAX),
    PX("TO:", "FROM:<a@b>", false, SMTP_PATH_SYNTAX),
    PX("FROM:", "FROM:<a@b", false, SMTP_PATH_SYNTAX),
    PX("FROM:", "FROM:<\"a>b@x>", false, SMTP_PATH_SYNTAX),
    PX("FROM:", "FROM:<a@b>x", false, SMTP_PATH_SYNTAX),
    PX("FROM:", "FROM:<a@b>>", false, SMTP_PATH_SYNTAX),
    PX("FROM:", "FROM:<a@b>\tSIZE=1", false, SMTP_PATH_SYNTAX),
    PX("TO:", "TO:<@x,@y>", false, SMTP_PATH_SYNTAX),
    PX("FROM:", "FROM:<a@b> X=", false, SMTP_PATH_PARAM),
    PX("FROM:", "FROM:<a@b> =x", false, SMTP_PATH_PARAM),
    PX("FROM:", "FROM:<a@b> \"=", false, SMTP_PATH_PARAM),
    PX("FROM:", "FROM:<a@b> -X=1", false, SMTP_PATH_PARAM),
    PX("FROM:", "FROM:<a@b> X_Y=1", false, SMTP_PATH_PARAM),
    PX("FROM:", "FROM:<a@b> X=a=b", false, SMTP_PATH_PARAM),
    PX("FROM:", "FROM:<a@b> X=a\x01", false, SMTP_PATH_PARAM),
    PX("FROM:", "FROM:<a@b> X=a\x7f", false, SMTP_PATH_PARAM),
    PX("FROM:", "FROM:<a@b> X=a\tb", false, SMTP_PATH_PARAM),
    PX("FROM:", "FROM:<a@b> X=\xc3\xa9", false, SMTP_PATH_PARAM),
    PX("FROM:", "FROM:<a@b> SIZE=1 X=", false, SMTP_PATH_PARAM),
    PX("FROM:", "FROM:<a@b> 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17", false, SMTP_PATH_TOO_MANY),
};

static void describe_params(const struct smtp_path_args *a, char *out, size_t size)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < a->n_params && o < size; i++) {
        const struct smtp_param *p = &a->params[i];
        int n;
        if (p->value != NULL)
            n = snprintf(out + o, size - o, "%s%.*s=%.*s", i ? " " : "", (int)p->key_len, p->key,
                         (int)p->value_len, p->value);
        else
            n = snprintf(out + o, size - o, "%s%.*s", i ? " " : "", (int)p->key_len, p->key);
        if (n < 0)
            break;
        o += (size_t)n;
    }
}

static void test_path_parse(void)
{
    for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
        const struct path_case *c = &path_cases[i];
        char *copy = malloc(c->len ? c->len : 1);
        memcpy(copy, c->arg, c->len);
        struct smtp_path_args a;
        int rc = smtp_path_parse(copy, c->len, c->prefix, c->utf8, &a);
        is_int(rc, c->rc, "path \"%s\" (%s, utf8=%d): result", c->arg, c->prefix, c->utf8);
        if (rc == 0 && c->rc == 0) {
            char mbox[128] = "(too long)";
            if (a.mailbox_len < sizeof(mbox)) {
                memcpy(mbox, a.mailbox, a.mailbox_len);
                mbox[a.mailbox_len] = '\0';
            }
            is_str(mbox, c->mailbox, "path \"%s\": mailbox", c->arg);
            is_int(a.had_route, c->had_route, "path \"%s\": source route", c->arg);
            char params[256];
            describe_params(&a, params, sizeof(params));
            is_str(params, c->params, "path \"%s\": parameters", c->arg);
        }
        free(copy);
    }

    /* Exactly SMTP_PARAMS_MAX parameters still pass. */
    const char *sixteen = "FROM:<a@b> A B C D E F G H I J K L M N O P";
    struct smtp_path_args a;
    is_int(smtp_path_parse(sixteen, strlen(sixteen), "FROM:", false, &a), 0, "16 parameters");
    is_int(a.n_params, 16, "16 parameters: all of them");
    ok(a.params[15].key_len == 1 && a.params[15].key[0] == 'P' && a.params[15].value == NULL,
       "16 parameters: the last one");
}

static void test_param_is(void)
{
    static const struct {
        const char *key;
        const char *name;
        bool is;
    } cases[] = {
        {"SIZE", "SIZE", true},   {"size", "SIZE", true},         {"SiZe", "SIZE", true},
        {"SIZE", "size", true},   {"Body", "body", true},         {"SIZ", "SIZE", false},
        {"SIZEX", "SIZE", false}, {"SIZE", "SIZ", false},         {"BODY", "SIZE", false},
        {"", "SIZE", false},      {"SMTPUTF8", "SMTPUTF8", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct smtp_param p = {cases[i].key, strlen(cases[i].key), NULL, 0};
        is_int(smtp_param_is(&p, cases[i].name), cases[i].is, "key \"%s\" is \"%s\": %s",
               cases[i].key, cases[i].name, cases[i].is ? "yes" : "no");
    }
}

int main(void)
{
    test_command_lines();
    test_line_limit();
    test_data();
    test_data_normalize();
    test_text_limit();
    test_command_parse();
    test_path_parse();
    test_param_is();
    return done_testing();
}
