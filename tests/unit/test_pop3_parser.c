/*
 * test_pop3_parser.c — POP3 command lines (pop3d/pop3_parser.h): CRLF and its
 * bare forms, the 255-octet line limit of RFC 2449 section 4 with the rest of
 * an overlong line skipped so that it never becomes a command, then the words
 * of a command line and the message-number argument.
 *
 * Each stream case runs twice, as STYLE.md asks: the whole input in one
 * buffer, then one byte at a time the way the glue feeds it (keep what was not
 * consumed, append the next byte, call again). The events become a transcript
 * — "L[line]" for a line, "E1" for a line too long, "E2" for a bad end of line,
 * and "R[n]" for the bytes left unconsumed at the end — and both runs must
 * give the expected transcript. Every buffer handed to the parser is a heap
 * copy of exactly its length, so that AddressSanitizer sees any read past the
 * end.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3_parser.h"
#include "tap.h"

/* --- the transcript ------------------------------------------------------ */

#define TS_MAX 8192

struct transcript {
    char text[TS_MAX];
    size_t len;
    bool overflow;
};

static void ts_add(struct transcript *t, const char *p, size_t n)
{
    if (t->len + n + 1 > sizeof(t->text)) {
        t->overflow = true;
        return;
    }
    memcpy(t->text + t->len, p, n);
    t->len += n;
    t->text[t->len] = '\0';
}

static void ts_str(struct transcript *t, const char *s)
{
    ts_add(t, s, strlen(s));
}

/* A line, with bytes that are not printable ASCII written as \xNN. */
static void ts_line(struct transcript *t, const char *line, size_t n)
{
    ts_str(t, "L[");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            ts_add(t, (const char *)&c, 1);
        } else {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            ts_str(t, esc);
        }
    }
    ts_str(t, "]");
}

static void ts_event(struct transcript *t, int rc, const char *line, size_t n)
{
    if (rc == 1) {
        ts_line(t, line, n);
    } else {
        char e[16];
        snprintf(e, sizeof(e), "E%d", -rc);
        ts_str(t, e);
    }
}

/*
 * Runs the parser over buf[0..len) as long as it gives events or consumes
 * bytes. Returns the bytes consumed; records a failure in *bad_r when the
 * parser breaks its contract (a consumed count past the input, a line that
 * does not lie inside the input, a positive result other than 1).
 */
static size_t run_parser(struct pop3_parser *p, const char *buf, size_t len, struct transcript *t,
                         int *bad_r)
{
    size_t off = 0;
    for (int guard = 0; guard < 100000; guard++) {
        size_t used = 12345;
        const char *line = NULL;
        size_t line_len = 0;
        int rc = pop3_parser_next(p, buf + off, len - off, &used, &line, &line_len);
        if (used > len - off || rc > 1) {
            (*bad_r)++;
            return len;
        }
        if (rc == 1 && (line != buf + off || line_len + 2 > used)) {
            (*bad_r)++;
            return len;
        }
        if (rc != 0)
            ts_event(t, rc, line, line_len);
        off += used;
        if (rc == 0 && used == 0)
            break;
        if (off == len && rc == 0)
            break;
    }
    return off;
}

/* The whole input in one heap buffer of exactly its length. */
static void run_whole(const char *in, size_t len, struct transcript *t, int *bad_r)
{
    struct pop3_parser p;
    pop3_parser_init(&p);
    char *buf = malloc(len ? len : 1);
    memcpy(buf, in, len);
    size_t off = run_parser(&p, buf, len, t, bad_r);
    char rest[32];
    snprintf(rest, sizeof(rest), "R[%zu]", len - off);
    ts_str(t, rest);
    free(buf);
}

/*
 * One byte at a time: the glue keeps what was not consumed and appends the
 * next byte. Also records the largest number of bytes the parser made the
 * glue keep, which must stay within the line limit.
 */
static void run_trickle(const char *in, size_t len, struct transcript *t, int *bad_r,
                        size_t *max_pending_r)
{
    struct pop3_parser p;
    pop3_parser_init(&p);
    char *pending = malloc(len + 1);
    size_t n = 0;
    *max_pending_r = 0;
    for (size_t i = 0; i < len; i++) {
        pending[n++] = in[i];
        /* A heap copy of exactly the pending bytes, for ASan. */
        char *buf = malloc(n);
        memcpy(buf, pending, n);
        size_t used = run_parser(&p, buf, n, t, bad_r);
        free(buf);
        memmove(pending, pending + used, n - used);
        n -= used;
        if (n > *max_pending_r)
            *max_pending_r = n;
    }
    char rest[32];
    snprintf(rest, sizeof(rest), "R[%zu]", n);
    ts_str(t, rest);
    free(pending);
}

/* --- stream cases -------------------------------------------------------- */

struct stream_case {
    const char *name;
    const char *in; /* built at run time when NULL */
    size_t len;     /* 0: strlen(in) */
    const char *want;
};

static void check_stream(const char *name, const char *in, size_t len, const char *want)
{
    struct transcript whole = {0}, trickle = {0};
    int bad_whole = 0, bad_trickle = 0;
    size_t max_pending = 0;
    run_whole(in, len, &whole, &bad_whole);
    run_trickle(in, len, &trickle, &bad_trickle, &max_pending);
    is_int(bad_whole, 0, "%s: whole buffer: the parser keeps its contract", name);
    is_str(whole.text, want, "%s: whole buffer", name);
    is_int(bad_trickle, 0, "%s: byte at a time: the parser keeps its contract", name);
    is_str(trickle.text, want, "%s: byte at a time", name);
    ok(max_pending <= POP3_LINE_MAX, "%s: byte at a time: at most %d bytes kept (%zu)", name,
       POP3_LINE_MAX, max_pending);
}

static char *repeat(char c, size_t n, const char *tail)
{
    size_t tl = strlen(tail);
    char *s = malloc(n + tl + 1);
    memset(s, c, n);
    memcpy(s + n, tail, tl + 1);
    return s;
}

static void test_stream_table(void)
{
    static const struct stream_case cases[] = {
        {"one line", "NOOP\r\n", 0, "L[NOOP]R[0]"},
        {"two lines", "STAT\r\nLIST 1\r\n", 0, "L[STAT]L[LIST 1]R[0]"},
        {"empty line", "\r\n", 0, "L[]R[0]"},
        {"line with spaces kept", "PASS a b  c \r\n", 0, "L[PASS a b  c ]R[0]"},
        {"UTF-8 bytes kept", "USER b\303\266b\r\n", 0, "L[USER b\\xc3\\xb6b]R[0]"},
        {"partial line waits", "NOOP", 0, "R[4]"},
        {"partial line with CR waits", "NOOP\r", 0, "R[5]"},
        {"line then partial", "NOOP\r\nST", 0, "L[NOOP]R[2]"},
        {"bare LF", "NOOP\n", 0, "E2R[0]"},
        {"bare LF alone", "\n", 0, "E2R[0]"},
        {"bare LF then a good line", "NOOP\nSTAT\r\n", 0, "E2L[STAT]R[0]"},
        {"bare CR inside", "NO\rOP\r\n", 0, "E2R[0]"},
        {"CR CR LF", "NOOP\r\r\n", 0, "E2R[0]"},
        {"bare CR then a good line", "NO\rOP\r\nSTAT\r\n", 0, "E2L[STAT]R[0]"},
        {"NUL inside", "NO\0OP\r\nSTAT\r\n", 13, "E2L[STAT]R[0]"},
        {"NUL alone", "\0\r\n", 3, "E2R[0]"},
        {"LF, then CRLF", "NOOP\n\r\nSTAT\r\n", 0, "E2L[]L[STAT]R[0]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        check_stream(cases[i].name, cases[i].in, len, cases[i].want);
    }
}

/* The 255-octet limit, with inputs too long to write out in a table. */
static void test_stream_limits(void)
{
    char want[1024];
    char *in;

    /* 253 + CRLF = 255 octets: the longest line there is. */
    in = repeat('A', 253, "\r\n");
    snprintf(want, sizeof(want), "L[%.*s]R[0]", 253, in);
    check_stream("255 octets with CRLF", in, strlen(in), want);
    free(in);

    in = repeat('A', 253, "\r\nNOOP\r\n");
    snprintf(want, sizeof(want), "L[%.*s]L[NOOP]R[0]", 253, in);
    check_stream("255 octets then a line", in, strlen(in), want);
    free(in);

    /* 254 + CRLF = 256 octets: one too many. */
    in = repeat('A', 254, "\r\nNOOP\r\n");
    check_stream("256 octets then a line", in, strlen(in), "E1L[NOOP]R[0]");
    free(in);

    /* 300 'A's then QUIT on the same line: the QUIT is never a command. */
    in = repeat('A', 300, "QUIT\r\nNOOP\r\n");
    check_stream("300 octets then QUIT on the same line", in, strlen(in), "E1L[NOOP]R[0]");
    free(in);

    in = repeat('A', 300, "QUIT\r\n");
    check_stream("300 octets then QUIT, nothing after", in, strlen(in), "E1R[0]");
    free(in);

    /* A space before QUIT makes no difference. */
    in = repeat('A', 300, " QUIT\r\nSTAT\r\n");
    check_stream("overlong line with a QUIT word", in, strlen(in), "E1L[STAT]R[0]");
    free(in);

    /* An overlong line whose end has not arrived: no line before its CRLF. */
    in = repeat('A', 300, "QUIT");
    check_stream("overlong line without its end", in, strlen(in), "E1R[0]");
    free(in);

    /* 255 octets without a line end are already too long. */
    in = repeat('A', 255, "");
    check_stream("255 octets without CRLF", in, strlen(in), "E1R[0]");
    free(in);

    /* 253 octets and a CR may still become a 255-octet line. */
    in = repeat('A', 253, "\r");
    check_stream("253 octets and CR wait", in, strlen(in), "R[254]");
    free(in);

    /* A long tail, split across many reads. */
    in = repeat('B', 5000, "\r\nQUIT\r\n");
    check_stream("5000 octets then QUIT", in, strlen(in), "E1L[QUIT]R[0]");
    free(in);

    /* Two overlong lines in a row, each one error. */
    {
        char *a = repeat('A', 400, "\r\n");
        char *b = repeat('B', 300, "\r\nNOOP\r\n");
        size_t la = strlen(a), lb = strlen(b);
        char *ab = malloc(la + lb + 1);
        memcpy(ab, a, la);
        memcpy(ab + la, b, lb + 1);
        check_stream("two overlong lines then NOOP", ab, la + lb, "E1E1L[NOOP]R[0]");
        free(a);
        free(b);
        free(ab);
    }

    /* A NUL and a bare CR inside an overlong line: one error, for the length. */
    {
        char *x = repeat('C', 300, "\r\nSTAT\r\n");
        x[10] = '\0';
        x[20] = '\r';
        check_stream("overlong line with NUL and CR", x, 300 + 8, "E1L[STAT]R[0]");
        free(x);
    }

    /* The 255-octet line right after an overlong one. */
    {
        char *a = repeat('A', 300, "\r\n");
        char *b = repeat('Z', 253, "\r\n");
        size_t la = strlen(a), lb = strlen(b);
        char *ab = malloc(la + lb + 1);
        memcpy(ab, a, la);
        memcpy(ab + la, b, lb + 1);
        snprintf(want, sizeof(want), "E1L[%.*s]R[0]", 253, b);
        check_stream("overlong line then a 255-octet line", ab, la + lb, want);
        free(a);
        free(b);
        free(ab);
    }
}

/* --- command words ------------------------------------------------------- */

struct command_case {
    const char *line;
    enum pop3_verb verb;
    size_t argc;
    const char *arg0, *arg1;
    bool too_many;
    const char *rest;
};

static void test_command_table(void)
{
    static const struct command_case cases[] = {
        {"USER bob", POP3_CMD_USER, 1, "bob", NULL, false, "bob"},
        {"user bob", POP3_CMD_USER, 1, "bob", NULL, false, "bob"},
        {"PASS secret", POP3_CMD_PASS, 1, "secret", NULL, false, "secret"},
        /* A password with spaces: rest keeps every byte after "PASS ". */
        {"PASS my secret  pw ", POP3_CMD_PASS, 2, "my", "secret", true, "my secret  pw "},
        {"PASS  lead", POP3_CMD_PASS, 1, "lead", NULL, false, " lead"},
        {"PASS", POP3_CMD_PASS, 0, NULL, NULL, false, ""},
        {"PASS ", POP3_CMD_PASS, 0, NULL, NULL, false, ""},
        {"AUTH", POP3_CMD_AUTH, 0, NULL, NULL, false, ""},
        {"AUTH PLAIN", POP3_CMD_AUTH, 1, "PLAIN", NULL, false, "PLAIN"},
        {"auth plain AGJvYgBwdw==", POP3_CMD_AUTH, 2, "plain", "AGJvYgBwdw==", false,
         "plain AGJvYgBwdw=="},
        {"CAPA", POP3_CMD_CAPA, 0, NULL, NULL, false, ""},
        {"capa", POP3_CMD_CAPA, 0, NULL, NULL, false, ""},
        {"STLS", POP3_CMD_STLS, 0, NULL, NULL, false, ""},
        {"sTlS", POP3_CMD_STLS, 0, NULL, NULL, false, ""},
        {"STAT", POP3_CMD_STAT, 0, NULL, NULL, false, ""},
        {"LIST", POP3_CMD_LIST, 0, NULL, NULL, false, ""},
        {"LIST 2", POP3_CMD_LIST, 1, "2", NULL, false, "2"},
        {"LIST  2", POP3_CMD_LIST, 1, "2", NULL, false, " 2"},
        {"LIST 2 ", POP3_CMD_LIST, 1, "2", NULL, false, "2 "},
        {"UIDL", POP3_CMD_UIDL, 0, NULL, NULL, false, ""},
        {"uidl 3", POP3_CMD_UIDL, 1, "3", NULL, false, "3"},
        {"RETR 1", POP3_CMD_RETR, 1, "1", NULL, false, "1"},
        {"retr 1", POP3_CMD_RETR, 1, "1", NULL, false, "1"},
        {"RETR 1 2 3", POP3_CMD_RETR, 2, "1", "2", true, "1 2 3"},
        {"TOP 1 10", POP3_CMD_TOP, 2, "1", "10", false, "1 10"},
        {"top 1 0", POP3_CMD_TOP, 2, "1", "0", false, "1 0"},
        {"TOP   1    10  ", POP3_CMD_TOP, 2, "1", "10", false, "  1    10  "},
        {"TOP 1 10 x", POP3_CMD_TOP, 2, "1", "10", true, "1 10 x"},
        {"DELE 1", POP3_CMD_DELE, 1, "1", NULL, false, "1"},
        {"dele 1", POP3_CMD_DELE, 1, "1", NULL, false, "1"},
        {"NOOP", POP3_CMD_NOOP, 0, NULL, NULL, false, ""},
        {"noop", POP3_CMD_NOOP, 0, NULL, NULL, false, ""},
        {"RSET", POP3_CMD_RSET, 0, NULL, NULL, false, ""},
        {"rset", POP3_CMD_RSET, 0, NULL, NULL, false, ""},
        {"QUIT", POP3_CMD_QUIT, 0, NULL, NULL, false, ""},
        {"quit", POP3_CMD_QUIT, 0, NULL, NULL, false, ""},
        {"QuIt", POP3_CMD_QUIT, 0, NULL, NULL, false, ""},
        {"APOP bob 0123456789abcdef", POP3_CMD_APOP, 2, "bob", "0123456789abcdef", false,
         "bob 0123456789abcdef"},
        {"UTF8", POP3_CMD_UTF8, 0, NULL, NULL, false, ""},
        {"utf8", POP3_CMD_UTF8, 0, NULL, NULL, false, ""},
        /* Not verbs. */
        {"", POP3_CMD_UNKNOWN, 0, NULL, NULL, false, ""},
        {"FOO", POP3_CMD_UNKNOWN, 0, NULL, NULL, false, ""},
        {"QUI", POP3_CMD_UNKNOWN, 0, NULL, NULL, false, ""},
        {"QUITX", POP3_CMD_UNKNOWN, 0, NULL, NULL, false, ""},
        {"TOPS 1 2", POP3_CMD_UNKNOWN, 2, "1", "2", false, "1 2"},
        {"XTND XMIT", POP3_CMD_UNKNOWN, 1, "XMIT", NULL, false, "XMIT"},
        {" QUIT", POP3_CMD_UNKNOWN, 1, "QUIT", NULL, false, "QUIT"},
        {"QUIT\t", POP3_CMD_UNKNOWN, 0, NULL, NULL, false, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct command_case *k = &cases[i];
        size_t len = strlen(k->line);
        /* A heap copy of exactly the line, with no NUL after it. */
        char *line = malloc(len ? len : 1);
        memcpy(line, k->line, len);
        struct pop3_command c;
        memset(&c, 0xa5, sizeof(c));
        pop3_command_parse(line, len, &c);
        is_int(c.verb, k->verb, "parse \"%s\": verb", k->line);
        is_int(c.argc, k->argc, "parse \"%s\": argc", k->line);
        ok(c.too_many_args == k->too_many, "parse \"%s\": too_many_args %s", k->line,
           k->too_many ? "set" : "clear");
        const char *want[2] = {k->arg0, k->arg1};
        for (size_t a = 0; a < k->argc && a < POP3_ARGS_MAX; a++) {
            size_t wl = strlen(want[a]);
            ok(c.arg_len[a] == wl && c.argv[a] >= line && c.argv[a] + wl <= line + len &&
                   memcmp(c.argv[a], want[a], wl) == 0,
               "parse \"%s\": argument %zu is \"%s\", inside the line", k->line, a + 1, want[a]);
        }
        size_t rl = strlen(k->rest);
        ok(c.rest != NULL && c.rest_len == rl && memcmp(c.rest, k->rest, rl) == 0,
           "parse \"%s\": rest is \"%s\"", k->line, k->rest);
        if (rl > 0)
            ok(c.rest >= line && c.rest + rl == line + len,
               "parse \"%s\": rest borrows the end of the line", k->line);
        free(line);
    }
}

/* --- message numbers ----------------------------------------------------- */

struct number_case {
    const char *s;
    unsigned long max;
    int rc;
    unsigned long n;
};

static void test_number_table(void)
{
    static const struct number_case cases[] = {
        {"1", 3, 0, 1},
        {"2", 3, 0, 2},
        {"3", 3, 0, 3},
        {"4", 3, -1, 0},
        {"10", 10, 0, 10},
        {"11", 10, -1, 0},
        {"1000000000", 1000000000ul, 0, 1000000000ul},
        {"1000000001", 1000000000ul, -1, 0},
        {"1", 0, -1, 0}, /* an empty maildrop has no message 1 */
        {"0", 3, -1, 0},
        {"0", 0, -1, 0},
        {"00", 3, -1, 0},
        {"01", 3, -1, 0},
        {"010", 100, -1, 0},
        {"+1", 3, -1, 0},
        {"-1", 3, -1, 0},
        {"-0", 3, -1, 0},
        {" 1", 3, -1, 0},
        {"1 ", 3, -1, 0},
        {"1a", 3, -1, 0},
        {"a1", 3, -1, 0},
        {"a", 3, -1, 0},
        {"0x1", 3, -1, 0},
        {"1.0", 3, -1, 0},
        {"", 3, -1, 0},
        {"99999999999", 1000000000ul, -1, 0},
        {"99999999999999999999", ULONG_MAX, -1, 0},
        {"18446744073709551616", ULONG_MAX, -1, 0},
        {"18446744073709551617", ULONG_MAX, -1, 0},
        {"999999999999999999999999999999", ULONG_MAX, -1, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct number_case *k = &cases[i];
        size_t len = strlen(k->s);
        char *s = malloc(len ? len : 1);
        memcpy(s, k->s, len);
        unsigned long n = 777;
        int rc = pop3_parse_number(s, len, k->max, &n);
        is_int(rc, k->rc, "number \"%s\" (max %lu): %s", k->s, k->max,
               k->rc == 0 ? "accepted" : "refused");
        if (k->rc == 0)
            is_int(n, k->n, "number \"%s\": value", k->s);
        else
            is_int(n, 777, "number \"%s\": *n_r untouched when refused", k->s);
        free(s);
    }

    /* The length is what counts, not a NUL: "12" read as one byte is 1. */
    unsigned long n = 0;
    is_int(pop3_parse_number("12", 1, 20, &n), 0, "number: the first byte of \"12\"");
    is_int(n, 1, "number: the first byte of \"12\" is 1");

    /*
     * Values near 2^32 and 2^64 must come out exact or be refused, never
     * wrap to a small message number.
     */
    static const char *const big[] = {"4294967295", "4294967296", "4294967297", "9999999999"};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        unsigned long long want = strtoull(big[i], NULL, 10);
        n = 0;
        int rc = pop3_parse_number(big[i], strlen(big[i]), ULONG_MAX, &n);
        if (want <= ULONG_MAX) {
            is_int(rc, 0, "number \"%s\" with max ULONG_MAX: accepted", big[i]);
            ok(rc == 0 && (unsigned long long)n == want, "number \"%s\": exact value", big[i]);
        } else {
            is_int(rc, -1, "number \"%s\" does not fit an unsigned long: refused", big[i]);
        }
        /* Whatever the width of unsigned long, a small max refuses them. */
        is_int(pop3_parse_number(big[i], strlen(big[i]), 3, &n), -1,
               "number \"%s\" with max 3: refused", big[i]);
    }
}

int main(void)
{
    test_stream_table();
    test_stream_limits();
    test_command_table();
    test_number_table();
    return done_testing();
}
