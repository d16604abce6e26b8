/*
 * test_headers.c — the header section of a message (smtpd/headers.c):
 * where it ends, and which fields it holds how many times, asked of a whole
 * message and of one streaming by in pieces (struct headers_scan), which
 * must give the same answers however the pieces fall.
 *
 * Every case runs on a heap copy of exactly its length (each piece its own
 * copy), with no NUL after it, so that AddressSanitizer catches a read past
 * the end.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headers.h"
#include "tap.h"

/* A heap copy of s[0..len), without a NUL after it. */
static char *copy(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    memcpy(p, s, len);
    return p;
}

struct end_case {
    const char *name;
    const char *msg;
    size_t len;
    int found;
    size_t hdr_len;
    size_t body;
};

/* clang-format off */
#define E(name, s, found, h, b) {name, s, sizeof(s) - 1, found, h, b}
static const struct end_case end_cases[] = {
    E("CRLF", "A: 1\r\nB: 2\r\n\r\nbody\r\n", 1, 12, 14),
    E("bare LF", "A: 1\nB: 2\n\nbody\n", 1, 10, 11),
    E("bare CR", "A: 1\rB: 2\r\rbody\r", 1, 10, 11),
    E("mixed", "A: 1\nB: 2\r\n\nbody", 1, 11, 12),
    E("folded", "A: 1\r\n  more\r\n\tand more\r\n\r\nx", 1, 25, 27),
    E("no body", "A: 1\r\nB: 2\r\n", 0, 12, 12),
    E("no line end", "A: 1\r\nB: 2", 0, 10, 10),
    E("empty body", "A: 1\r\n\r\n", 1, 6, 8),
    E("no headers", "\r\nbody\r\n", 1, 0, 2),
    E("empty", "", 0, 0, 0),
    E("not a field", "A: 1\r\nthis is text\r\nB: 2\r\n", 0, 6, 6),
    E("colon first", "A: 1\r\n: no name\r\n", 0, 6, 6),
    E("8-bit name", "A: 1\r\n\xc3\xa4: x\r\n", 0, 6, 6),
    E("space before colon", "A : 1\r\nB\t: 2\r\n\r\n", 1, 14, 16),
    E("space in name", "A B: 1\r\n", 0, 0, 0),
    E("CR CR LF", "A: 1\r\r\nbody", 1, 5, 7),
    E("tab line", "A: 1\r\n\t\r\n\r\nx", 1, 9, 11),
};
#undef E
/* clang-format on */

static void test_end(void)
{
    for (size_t i = 0; i < sizeof(end_cases) / sizeof(end_cases[0]); i++) {
        const struct end_case *c = &end_cases[i];
        char *m = copy(c->msg, c->len);
        size_t h = 99, b = 99;
        int found = headers_end(m, c->len, &h, &b);
        ok(found == c->found && h == c->hdr_len && b == c->body,
           "headers_end %s: %d %zu %zu (want %d %zu %zu)", c->name, found, h, b, c->found,
           c->hdr_len, c->body);
        free(m);
    }
    is_int(headers_end("A: 1\r\n\r\n", 8, NULL, NULL), 1, "headers_end: NULL outputs");
}

static int count(const char *s, size_t len, const char *name)
{
    char *m = copy(s, len);
    int n = headers_count(m, len, name);
    free(m);
    return n;
}

static int received(const char *s, size_t len)
{
    char *m = copy(s, len);
    int n = headers_count_received(m, len);
    free(m);
    return n;
}

#define S(s) s, sizeof(s) - 1

static void test_count(void)
{
    is_int(received(S("Received: from a\r\n\tby b; Mon, 1 Jan 2024\r\n"
                      "Received: from c\r\n by d\r\n  Received: not a field\r\n"
                      "Subject: x\r\n\r\nbody\r\n")),
           2, "Received: folded fields count once each, continuations never");
    is_int(received(S("Subject: x\r\n\r\nReceived: from body\r\nReceived: again\r\n")), 0,
           "Received: body lines do not count");
    is_int(received(S("Subject: x\nReceived: from a\n\nReceived: from body\n")), 1,
           "Received: bare LF, the body left out");
    is_int(received(S("RECEIVED: a\r\nreceived: b\r\nReCeIvEd: c\r\n")), 3, "Received: any case");
    is_int(received(S("Received : a\r\nReceived\t: b\r\n")), 2,
           "Received: space before the colon (obsolete syntax)");
    is_int(received(S("Received-SPF: pass\r\nX-Received: a\r\nReceivedx: b\r\n")), 0,
           "Received: other names that start or end alike do not count");
    is_int(received(S("Subject: x\r\nnot a header\r\nReceived: a\r\n")), 0,
           "Received: after the headers stop, nothing counts");
    is_int(received(S("Received")), 0, "Received: a name alone is no field");
    is_int(received("", 0), 0, "Received: empty message");

    char loop[51 * 32];
    size_t len = 0;
    for (int i = 0; i < 51; i++)
        len += (size_t)snprintf(loop + len, 32, "Received: hop %d\r\n", i);
    is_int(received(loop, len), 51, "Received: 51 hops counted");
    ok(received(loop, len) > HEADERS_RECEIVED_MAX, "Received: 51 is a loop");

    is_int(count(S("Date: x\r\nDate: y\r\n"), "date"), 2, "headers_count: any case");
    is_int(count(S("Date: x\r\n"), ""), 0, "headers_count: empty name");
    is_int(count(S("Date: x\r\n"), NULL), 0, "headers_count: NULL name");
}

static bool has(const char *s, size_t len, const char *name)
{
    char *m = copy(s, len);
    bool r = headers_has(m, len, name);
    free(m);
    return r;
}

static void test_has(void)
{
    ok(has(S("From: a\r\nMessage-ID: <1@a>\r\n\r\n"), "Message-Id"), "has: Message-ID");
    ok(!has(S("From: a\r\n\r\nMessage-ID: <1@a>\r\n"), "Message-ID"),
       "has: not a Message-ID in the body");
    ok(!has(S("From: a\r\nX-Date: b\r\n\r\n"), "Date"), "has: X-Date is no Date");
    ok(has(S("From: a\nDate: Mon, 1 Jan 2024 00:00:00 +0000"), "Date"),
       "has: the last line, no line end");
    ok(!has(S("From: a\r\n Date: folded\r\n"), "Date"), "has: a continuation is no field");
    ok(!has("", 0, "Date"), "has: empty message");
}

/* --- the streaming scan ------------------------------------------------ */

/* What the whole-message functions say of msg[0..len), in the scan's terms. */
struct answer {
    bool empty_line;
    uint64_t end;
    int received;
    unsigned seen;
};

static struct answer whole_answer(const char *msg, size_t len)
{
    struct answer a;
    char *m = copy(msg, len);
    size_t h;
    a.empty_line = headers_end(m, len, &h, NULL) == 1;
    a.end = h;
    a.received = headers_count_received(m, len);
    a.seen = (headers_has(m, len, "Date") ? HEADERS_DATE : 0) |
             (headers_has(m, len, "Message-ID") ? HEADERS_MESSAGE_ID : 0);
    free(m);
    return a;
}

/*
 * Scans msg in pieces ending at the offsets cuts[0..n_cuts) (ascending),
 * each piece a heap copy of its own, and checks what must hold after every
 * piece: settled never goes back, what is undecided is one line's start and
 * at most HEADERS_UNDECIDED_MAX, and nothing past the end is read. Returns
 * false (and says why in *why) when one of those fails.
 */
static bool scan_pieces(const char *msg, size_t len, const size_t *cuts, size_t n_cuts,
                        struct headers_scan *sc, const char **why)
{
    headers_scan_init(sc);
    size_t at = 0;
    uint64_t settled = 0;
    for (size_t k = 0; k <= n_cuts; k++) {
        size_t to = k < n_cuts ? cuts[k] : len;
        char *piece = copy(msg + at, to - at);
        bool was_done = sc->done;
        size_t used = headers_scan_feed(sc, piece, to - at);
        free(piece);
        if (used > to - at || (was_done && used != 0) || (!sc->done && used != to - at)) {
            *why = "feed returned a wrong count";
            return false;
        }
        if (sc->settled < settled) {
            *why = "settled went back";
            return false;
        }
        settled = sc->settled;
        if (!sc->done && (sc->fed != to || sc->fed - sc->settled > HEADERS_UNDECIDED_MAX)) {
            *why = "too much undecided";
            return false;
        }
        if (!sc->done && memchr(msg + sc->settled, '\n', sc->fed - sc->settled) != NULL) {
            *why = "undecided octets span a line end";
            return false;
        }
        at = to;
    }
    headers_scan_finish(sc);
    if (!sc->done || sc->settled != sc->end || sc->end > len) {
        *why = "finish left it open";
        return false;
    }
    if (sc->fed > sc->end + HEADERS_LINE_MAX) {
        *why = "read past the end of the section";
        return false;
    }
    return true;
}

static bool same_answer(const struct headers_scan *sc, const struct answer *a)
{
    return sc->empty_line == a->empty_line && sc->end == a->end && sc->received == a->received &&
           sc->seen == a->seen;
}

/*
 * The scan agrees with the whole-message functions when msg is fed whole,
 * one octet at a time, and split in two and in three pieces at every pair
 * of places.
 */
static void check_scan_agrees(const char *name, const char *msg, size_t len)
{
    struct answer want = whole_answer(msg, len);
    struct headers_scan sc;
    const char *why = NULL;
    size_t runs = 0, bad = 0;
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    /* Whole, then one octet at a time. */
    for (int mode = 0; mode < 2; mode++) {
        size_t n_cuts = 0;
        for (size_t i = 1; mode == 1 && i < len; i++)
            cuts[n_cuts++] = i;
        runs++;
        if (!scan_pieces(msg, len, cuts, n_cuts, &sc, &why) || !same_answer(&sc, &want))
            bad++;
    }
    /* Three pieces, at every i <= j (an empty piece included). */
    for (size_t i = 0; i <= len; i++)
        for (size_t j = i; j <= len; j++) {
            size_t c2[2] = {i, j};
            runs++;
            if (!scan_pieces(msg, len, c2, 2, &sc, &why) || !same_answer(&sc, &want)) {
                if (bad++ == 0)
                    printf("# %s: split at %zu and %zu: %s; end %llu/%llu received %d/%d seen "
                           "%u/%u\n",
                           name, i, j, why ? why : "answers differ", (unsigned long long)sc.end,
                           (unsigned long long)want.end, sc.received, want.received, sc.seen,
                           want.seen);
            }
        }
    free(cuts);
    ok(bad == 0, "scan %s: the whole-message answer in all %zu splits (%zu wrong)", name, runs,
       bad);
}

struct scan_case {
    const char *name;
    const char *msg;
    size_t len;
};

/* clang-format off */
#define SC(name, s) {name, s, sizeof(s) - 1}
static const struct scan_case scan_cases[] = {
    SC("CRLF", "A: 1\r\nB: 2\r\n\r\nbody\r\n"),
    SC("bare LF", "A: 1\nB: 2\n\nbody\n"),
    SC("bare CR", "A: 1\rB: 2\r\rbody\r"),
    SC("mixed", "A: 1\nB: 2\r\n\nbody"),
    SC("folded", "Received: from a\r\n\tby b\r\n  Date: not a field\r\nDate: x\r\n\r\nbody\r\n"),
    SC("no body", "Date: 1\r\nMessage-ID: <2@x>\r\n"),
    SC("no line end", "A: 1\r\nDate: 2"),
    SC("name alone at the end", "A: 1\r\nDate"),
    SC("name and blank at the end", "A: 1\r\nDate \t"),
    SC("empty body", "Message-Id: 1\r\n\r\n"),
    SC("no headers", "\r\nDate: body\r\n"),
    SC("empty", ""),
    SC("a body without headers", "Hello Alice,\r\nDate: tomorrow\r\n"),
    SC("not a field", "Received: a\r\nthis is text\r\nReceived: b\r\n"),
    SC("colon first", "A: 1\r\n: no name\r\nDate: x\r\n"),
    SC("8-bit name", "A: 1\r\n\xc3\xa4: x\r\n"),
    SC("space before colon", "Date : 1\r\nMessage-ID\t: 2\r\n\r\n"),
    SC("space in name", "Message ID: 1\r\n"),
    SC("Message-IDx", "Message-IDx: 1\r\nX-Message-ID: 2\r\nDatex: 3\r\nX-Date: 4\r\n\r\n"),
    SC("long names", "Received-SPF: 1\r\nReceivedx: 2\r\nMessage-ID-Extra: 3\r\n\r\n"),
    SC("any case", "DATE: 1\r\nmessage-id: 2\r\nRECEIVED: 3\r\nreceived: 4\r\n\r\n"),
    SC("continuation first", " folded\r\nDate: 1\r\n"),
    SC("CR CR LF", "Date: 1\r\r\nbody"),
    SC("NUL in a name", "Da\0te: 1\r\n"),
    SC("NUL in a value", "Date: \0\r\nReceived: x\r\n\r\n"),
    SC("tab line", "Received: a\r\n\t\r\nReceived: b\r\n\r\n"),
};
#undef SC
/* clang-format on */

static void test_scan_splits(void)
{
    for (size_t i = 0; i < sizeof(scan_cases) / sizeof(scan_cases[0]); i++)
        check_scan_agrees(scan_cases[i].name, scan_cases[i].msg, scan_cases[i].len);
}

/* Scans msg[0..len) in one piece and finishes; the scan is left in *sc. */
static void scan_whole(struct headers_scan *sc, const char *msg, size_t len)
{
    char *m = copy(msg, len);
    headers_scan_init(sc);
    headers_scan_feed(sc, m, len);
    headers_scan_finish(sc);
    free(m);
}

static void test_scan_fields(void)
{
    struct headers_scan sc;
    scan_whole(&sc, S("From: a\r\nDate: x\r\nMessage-ID: <1@a>\r\n\r\n"));
    is_int(sc.seen, HEADERS_DATE | HEADERS_MESSAGE_ID, "scan: Date: and Message-ID: seen");
    scan_whole(&sc, S("Message-IDx: <1@a>\r\nX-Date: y\r\nDates: z\r\n\r\n"));
    is_int(sc.seen, 0, "scan: Message-IDx:, X-Date:, Dates: are neither");
    scan_whole(&sc, S("Message-I: <1@a>\r\nDat: y\r\n\r\n"));
    is_int(sc.seen, 0, "scan: Message-I:, Dat: are neither");
    scan_whole(&sc, S("From: a\r\n Date: folded\r\n\tMessage-ID: <1@a>\r\n\r\n"));
    is_int(sc.seen, 0, "scan: continuation lines are no fields");
    scan_whole(&sc, S("From: a\r\n\r\nDate: x\r\nMessage-ID: <1@a>\r\n"));
    is_int(sc.seen, 0, "scan: fields in the body do not count");
    ok(sc.empty_line && sc.end == 9, "scan: ends before the empty line");
    scan_whole(&sc, S("Subject: x\r\nHello there\r\nDate: x\r\n"));
    ok(!sc.empty_line && sc.end == 12 && sc.seen == 0,
       "scan: a line that is no field starts the body, before it");
    scan_whole(&sc, S("Subject: x\r\nDate: y\r\n"));
    ok(!sc.empty_line && sc.end == 21 && sc.seen == HEADERS_DATE,
       "scan: no body: the section runs to the end");
}

/* The line limit: a colon within the first 998 octets makes a field. */
static void test_scan_long_name(void)
{
    static char msg[2100];
    for (size_t colon = 996; colon <= 999; colon++) {
        memset(msg, 'x', colon);
        memcpy(msg + colon, ": v\r\n\r\n", 7);
        size_t len = colon + 7;
        struct answer want = whole_answer(msg, len);
        is_int(want.end, colon < HEADERS_LINE_MAX ? colon + 5 : 0, "whole: a colon at %zu is %s",
               colon, colon < HEADERS_LINE_MAX ? "a field" : "too late, no field");
        char name[64];
        snprintf(name, sizeof(name), "colon at %zu", colon);
        /* Every split of a 1000-octet line is a million runs: two pieces do. */
        struct headers_scan sc;
        const char *why = "";
        size_t bad = 0;
        for (size_t i = 0; i <= len; i++) {
            size_t cut = i;
            if (!scan_pieces(msg, len, &cut, 1, &sc, &why) || !same_answer(&sc, &want))
                bad++;
        }
        ok(bad == 0, "scan %s: the whole-message answer at every split (%zu wrong)", name, bad);
    }
    /* Undecided for 997 octets, then decided without waiting for more. */
    struct headers_scan sc;
    headers_scan_init(&sc);
    memset(msg, 'x', 2000);
    headers_scan_feed(&sc, msg, 997);
    ok(!sc.done && sc.settled == 0 && sc.fed == 997, "scan: 997 octets of a name are undecided");
    headers_scan_feed(&sc, msg, 1);
    ok(sc.done && sc.end == 0 && !sc.empty_line, "scan: the 998th without a colon is no field");
}

/* Past the section's end the scan reads nothing: a huge body costs nothing. */
static void test_scan_stops(void)
{
    size_t body = 4 << 20;
    char *m = malloc(body);
    for (size_t i = 0; i + 11 <= body; i += 11)
        memcpy(m + i, "Received: \n", 11);
    struct headers_scan sc;
    headers_scan_init(&sc);
    size_t used = headers_scan_feed(&sc, S("Received: a\r\nSubject: b\r\n\r"));
    ok(sc.done && sc.empty_line && sc.end == 25 && used == 26 && sc.fed == 26,
       "scan: done at the empty line's first octet");
    size_t more = 0;
    for (int i = 0; i < 8; i++)
        more += headers_scan_feed(&sc, m, body);
    ok(more == 0 && sc.fed == 26 && sc.received == 1,
       "scan: 32 MiB of Received: lines in the body are never read");
    headers_scan_finish(&sc);
    ok(sc.done && sc.end == 25, "scan: finish after done changes nothing");

    /* A body without headers: decided on its first line, the rest unread. */
    headers_scan_init(&sc);
    used = headers_scan_feed(&sc, S("Hello, world\r\nReceived: x\r\n"));
    ok(sc.done && sc.end == 0 && used == 8,
       "scan: a body alone ends it at offset 0, read to the 'w' that follows a blank");
    free(m);
}

/* A CRLF split across pieces, and an empty line split from its LF. */
static void test_scan_crlf_split(void)
{
    struct headers_scan sc;
    headers_scan_init(&sc);
    headers_scan_feed(&sc, S("Date: x\r"));
    ok(!sc.done && sc.settled == 8, "scan: a CR at the end of a piece");
    headers_scan_feed(&sc, S("\nReceived: y\r\n\r"));
    ok(sc.done && sc.end == 22 && sc.received == 1 && sc.seen == HEADERS_DATE,
       "scan: its LF in the next piece, the empty line's CR ends it");
    headers_scan_init(&sc);
    headers_scan_feed(&sc, S("Message-"));
    ok(!sc.done && sc.settled == 0, "scan: half a name is undecided");
    headers_scan_feed(&sc, S("ID"));
    headers_scan_feed(&sc, S(": <1@a>\r\n"));
    ok(!sc.done && sc.settled == 19 && sc.seen == HEADERS_MESSAGE_ID,
       "scan: a name in three pieces is a Message-ID");
}

static void test_format_date(void)
{
    char d[HEADERS_DATE_SIZE];
    is_int(headers_format_date(1700000000, d), 0, "date: 2023");
    is_str(d, "Tue, 14 Nov 2023 22:13:20 +0000", "date: RFC 5322 3.3, UTC");
    headers_format_date(0, d);
    is_str(d, "Thu, 01 Jan 1970 00:00:00 +0000", "date: the epoch");
    headers_format_date(951782400, d);
    is_str(d, "Tue, 29 Feb 2000 00:00:00 +0000", "date: a leap day");
    is_int(headers_format_date((time_t)253402300800LL, d), -EINVAL, "date: past 9999");
    is_str(d, "", "date: nothing written past 9999");
}

/* The fields found, as the text they cover, joined by "|", and their values. */
static const char *fields_of(const char *msg, const char *name)
{
    static char out[2048];
    struct headers_place *f;
    size_t n = headers_fields_named(msg, strlen(msg), name, &f);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t o = strlen(out);
        snprintf(out + o, sizeof(out) - o, "%s%.*s[%.*s]", i ? "|" : "", (int)f[i].len,
                 msg + f[i].offset, (int)(f[i].offset + f[i].len - f[i].value), msg + f[i].value);
    }
    free(f);
    return out;
}

static void test_fields_named(void)
{
    const char *msg = "Return-Path: <a@b.example>\r\n"
                      "Authentication-Results: mx.example.org; dkim=pass\r\n"
                      "authentication-results : MX;\r\n"
                      "\tspf=pass\r\n"
                      "X-Authentication-Results: mx; none\r\n"
                      "Subject: Authentication-Results: mx;\r\n"
                      "Authentication-Results:x\n"
                      "\r\n"
                      "Authentication-Results: in the body\r\n";
    is_str(fields_of(msg, "Authentication-Results"),
           "Authentication-Results: mx.example.org; dkim=pass\r\n[ mx.example.org; dkim=pass\r\n]"
           "|authentication-results : MX;\r\n\tspf=pass\r\n[ MX;\r\n\tspf=pass\r\n]"
           "|Authentication-Results:x\n[x\n]",
           "fields found with continuation lines, any case, not look-alikes nor the body's");
    is_str(fields_of("Subject: a", "subject"), "Subject: a[ a]", "a last field without a line end");
    is_str(fields_of("", "subject"), "", "none in nothing");
    is_str(fields_of("Not a field\r\nSubject: x\r\n", "subject"), "Subject: x\r\n[ x\r\n]",
           "found past a line that is no field");
    is_str(fields_of("Subject: a\r\nno field\r\n\tmore\r\n", "subject"), "Subject: a\r\n[ a\r\n]",
           "a line that is no field ends the field above; what follows it is no part of it");
    is_str(fields_of("X: y\r\n\r\nSubject: x\r\n", "subject"), "", "none past the empty line");
}

static const char *text_field(const char *text)
{
    static char out[2048];
    struct buf b;
    buf_init(&b, 0);
    headers_put_text_field(&b, "Subject", text);
    snprintf(out, sizeof(out), "%.*s", (int)b.len, (const char *)b.data);
    buf_free(&b);
    return out;
}

static void test_text_field(void)
{
    is_str(text_field("*** SPAM *** hello"), "Subject: *** SPAM *** hello\r\n", "ASCII as it is");
    is_str(text_field("[SPAM] caf\xc3\xa9"), "Subject: =?UTF-8?B?W1NQQU1dIGNhZsOp?=\r\n",
           "UTF-8 as an encoded word");
    is_str(text_field("a\r\nX-Injected: 1"), "Subject: =?UTF-8?B?YQ0KWC1JbmplY3RlZDogMQ==?=\r\n",
           "a line end is encoded, never a new field");
    char long_text[200];
    memset(long_text, 0, sizeof(long_text));
    for (int i = 0; i < 60; i++)
        memcpy(long_text + 2 * i, "\xc3\xa9", 2); /* 60 two-octet characters */
    const char *f = text_field(long_text);
    ok(strstr(f, "?=\r\n =?UTF-8?B?") != NULL, "long text: several words on continuation lines");
    int longest = 0, cur = 0;
    for (const char *p = f; *p; p++) {
        cur = *p == '\n' ? 0 : cur + 1;
        longest = cur > longest ? cur : longest;
    }
    ok(longest < 78, "every line under 78 octets (%d)", longest);
    ok(strstr(f, "=?UTF-8?B?w6nDqcOp") != NULL, "whole characters in each word");
}

int main(void)
{
    test_end();
    test_text_field();
    test_fields_named();
    test_count();
    test_has();
    test_scan_splits();
    test_scan_fields();
    test_scan_long_name();
    test_scan_stops();
    test_scan_crlf_split();
    test_format_date();
    return done_testing();
}
