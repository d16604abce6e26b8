/*
 * fuzz_smtp.h — the SMTP parser driven as the glue drives it, with the
 * properties the smtp_parser and smtp_data targets both check.
 *
 * fuzz_smtp_run() feeds a byte stream to smtp_parser_next in pieces (or all
 * at once), keeps what was not consumed for the next call, switches to data
 * mode after a "DATA" line (as the session does after its 354), and checks
 * every event against an independent model of RFC 5321 4.5.2:
 *
 *   - a command line is whole, CRLF-terminated, within the limit and free of
 *     CR, LF and NUL;
 *   - a message ends exactly where the model finds "<CRLF>.<CRLF>" (the CRLF
 *     of the DATA line counts as the first one), never anywhere else, so
 *     there is at most one DATA_END per end-of-data;
 *   - the DATA chunks of a message are exactly the model's dot-unstuffed
 *     bytes; the BARE_EOL flag is set exactly when they hold a bare CR or LF,
 *     so a message with clean flags never holds one; LONG_LINE exactly when
 *     a line passes text_max;
 *   - stuffing a message again and feeding it back gives the same bytes and
 *     one DATA_END.
 *
 * It also writes a transcript (lines, errors, whole messages with flags) so
 * that the target can check that the read boundaries change nothing.
 */
#ifndef KOTAK_FUZZ_SMTP_H
#define KOTAK_FUZZ_SMTP_H

#include "fuzz.h"
#include "smtp_parser.h"

/* Messages larger than this are not round-tripped again (time, not memory). */
#define FUZZ_ROUNDTRIP_MAX (256 * 1024)

struct fuzz_ref {
    bool found;            /* "<CRLF>.<CRLF>" is in the stream */
    size_t end;            /* just after it, relative to the data start */
    unsigned flags;        /* SMTP_DATA_* the message deserves */
    struct fuzz_bytes msg; /* the unstuffed message (or what there is of it) */
};

/*
 * The model: raw[0..n) is what follows the DATA line's CRLF, so raw[0]
 * starts a line. At a line start, ".<CR><LF>" ends the data and any other
 * dot is a stuffing dot, dropped; the rest of the line up to and including
 * the first CRLF is message data. Written without looking at the parser's
 * state machine.
 */
static inline void fuzz_ref_unstuff(const uint8_t *raw, size_t n, size_t text_max,
                                    struct fuzz_ref *r)
{
    size_t p = 0;
    r->found = false;
    r->end = 0;
    r->flags = 0;
    r->msg.len = 0;
    for (;;) {
        if (p >= n)
            return;
        if (raw[p] == '.') {
            if (p + 2 < n && raw[p + 1] == '\r' && raw[p + 2] == '\n') {
                r->found = true;
                r->end = p + 3;
                return;
            }
            p++; /* a stuffing dot */
        }
        size_t q = p;
        while (q + 1 < n && !(raw[q] == '\r' && raw[q + 1] == '\n'))
            q++;
        if (q + 1 >= n) {
            fuzz_bytes_add(&r->msg, raw + p, n - p); /* the stream ends inside the line */
            return;
        }
        for (size_t i = p; i < q; i++)
            if (raw[i] == '\r' || raw[i] == '\n')
                r->flags |= SMTP_DATA_BARE_EOL;
        if (q - p > text_max - 2)
            r->flags |= SMTP_DATA_LONG_LINE;
        fuzz_bytes_add(&r->msg, raw + p, q + 2 - p);
        p = q + 2;
    }
}

/*
 * Appends one transcript record: a tag, a number, bytes. With no bytes, pass
 * "" rather than NULL: glibc's fortified memcpy is declared nonnull, and gcc
 * warns about the NULL it cannot prove is never copied.
 */
static inline void fuzz_tr_add(struct fuzz_bytes *tr, char tag, size_t num, const void *p, size_t n)
{
    fuzz_bytes_add(tr, &tag, 1);
    fuzz_bytes_add(tr, &num, sizeof(num));
    fuzz_bytes_add(tr, &n, sizeof(n));
    fuzz_bytes_add(tr, p, n);
}

struct fuzz_smtp_opts {
    size_t line_max, text_max; /* as given to smtp_parser_init */
    bool data_only;            /* start in data mode, and go back to it after each DATA_END */
    bool split;                /* feed in random pieces, else all at once */
    uint64_t seed;
    bool roundtrip; /* re-stuff each clean message and feed it back */
};

static inline void fuzz_smtp_run(const uint8_t *stream, size_t n, const struct fuzz_smtp_opts *o,
                                 struct fuzz_bytes *tr);

/*
 * Feeds stuff(x) + "\r\n.\r\n" in data mode and checks that exactly
 * x + "\r\n" comes back with one DATA_END at the very end; when x is empty
 * or ends in CRLF, also stuff(x) + ".\r\n" and exactly x.
 */
static inline void fuzz_smtp_roundtrip(const uint8_t *x, size_t n, const struct fuzz_smtp_opts *o)
{
    if (n > FUZZ_ROUNDTRIP_MAX)
        return;
    for (int variant = 0; variant < 2; variant++) {
        bool crlf_end = n == 0 || (n >= 2 && x[n - 2] == '\r' && x[n - 1] == '\n');
        if (variant == 1 && !crlf_end)
            break;
        struct fuzz_bytes s = {0}, want = {0}, got = {0}, tr = {0};
        fuzz_dot_stuff(x, n, &s);
        fuzz_bytes_add(&s, variant == 0 ? "\r\n.\r\n" : ".\r\n", variant == 0 ? 5 : 3);
        fuzz_bytes_add(&want, x, n);
        if (variant == 0)
            fuzz_bytes_add(&want, "\r\n", 2);

        struct fuzz_smtp_opts ro = *o;
        ro.data_only = true;
        ro.roundtrip = false; /* no recursion */
        ro.seed = o->seed + 7 + (uint64_t)variant;
        fuzz_smtp_run(s.p, s.len, &ro, &tr);

        /* The transcript must be one message record, and nothing else. */
        size_t hdr = 1 + 2 * sizeof(size_t);
        FUZZ_CHECK(tr.len >= hdr && tr.p[0] == 'D',
                   "round trip: no DATA_END for a %zu-byte message", n);
        size_t flags, len;
        memcpy(&flags, tr.p + 1, sizeof(flags));
        memcpy(&len, tr.p + 1 + sizeof(size_t), sizeof(len));
        /* Then 'U': data mode again, with nothing more to read. */
        FUZZ_CHECK(tr.len == hdr + len + hdr && tr.p[hdr + len] == 'U',
                   "round trip: more than one event after the final dot");
        fuzz_bytes_add(&got, tr.p + hdr, len);
        FUZZ_CHECK(fuzz_bytes_eq(&got, &want),
                   "round trip: stuffing then unstuffing gave %zu bytes, want %zu", got.len,
                   want.len);
        bool bare = fuzz_has_bare_eol(want.p, want.len);
        FUZZ_CHECK(((flags & SMTP_DATA_BARE_EOL) != 0) == bare,
                   "round trip: BARE_EOL flag %u, bare CR/LF in the message: %d", (unsigned)flags,
                   bare);
        fuzz_bytes_free(&s);
        fuzz_bytes_free(&want);
        fuzz_bytes_free(&got);
        fuzz_bytes_free(&tr);
    }
}

/* Occurrences of "\r\n.\r\n" in p[0..n), overlapping ones included. */
static inline size_t fuzz_count_ends(const uint8_t *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i + 5 <= n; i++)
        if (memcmp(p + i, "\r\n.\r\n", 5) == 0)
            c++;
    return c;
}

static inline void fuzz_smtp_run(const uint8_t *stream, size_t n, const struct fuzz_smtp_opts *o,
                                 struct fuzz_bytes *tr)
{
    struct smtp_parser p;
    struct fuzz_rng rng;
    fuzz_rng_init(&rng, o->seed);
    smtp_parser_init(&p, o->line_max, o->text_max);
    size_t line_max = o->line_max ? o->line_max : 512;
    size_t text_max = o->text_max ? o->text_max : 1000;

    uint8_t *pend = malloc(n ? n : 1);
    size_t plen = 0, base = 0, fed = 0; /* pend[0] is stream[base] */
    bool in_data = o->data_only;
    size_t data_start = 0, first_data = o->data_only ? 0 : SIZE_MAX, n_ends = 0;
    struct fuzz_bytes msg = {0};
    struct fuzz_ref ref = {0};
    if (o->data_only)
        smtp_parser_start_data(&p);

    for (;;) {
        int stalls = 0;
        while (plen > 0) {
            size_t used = (size_t)-1;
            struct smtp_event ev;
            memset(&ev, 0xa5, sizeof(ev));
            int rc = smtp_parser_next(&p, (const char *)pend, plen, &used, &ev);
            FUZZ_CHECK(used <= plen, "consumed %zu of %zu bytes", used, plen);
            FUZZ_CHECK(rc >= -SMTP_PERR_NUL && rc <= 1, "return value %d", rc);
            if (rc < 0) {
                FUZZ_CHECK(!in_data, "an error %d in data mode", rc);
                FUZZ_CHECK(used > 0, "an error that consumed nothing loops forever");
                fuzz_tr_add(tr, 'E', 0, "", 0);
            } else if (rc == 0) {
                if (in_data) {
                    FUZZ_CHECK(used == plen, "data mode left %zu of %zu bytes without an event",
                               plen - used, plen);
                } else if (used == 0) {
                    /* A partial command line is kept: it must be one. */
                    FUZZ_CHECK(memchr(pend, '\n', plen) == NULL, "a whole line was not parsed");
                    FUZZ_CHECK(plen < line_max, "%zu bytes kept with no line end (limit %zu)", plen,
                               line_max);
                    const uint8_t *cr = memchr(pend, '\r', plen);
                    FUZZ_CHECK(cr == NULL || cr == pend + plen - 1,
                               "a bare CR kept waiting for a line end");
                }
            } else if (ev.type == SMTP_EV_LINE) {
                FUZZ_CHECK(!in_data, "a command line in data mode");
                FUZZ_CHECK(ev.data == (const char *)pend && used == ev.len + 2 &&
                               pend[ev.len] == '\r' && pend[ev.len + 1] == '\n',
                           "a line event that is not the whole CRLF line (len %zu, used %zu)",
                           ev.len, used);
                FUZZ_CHECK(ev.len + 2 <= line_max, "a %zu-byte line passed the %zu limit",
                           ev.len + 2, line_max);
                FUZZ_CHECK(memchr(ev.data, '\r', ev.len) == NULL &&
                               memchr(ev.data, '\n', ev.len) == NULL &&
                               memchr(ev.data, '\0', ev.len) == NULL,
                           "a command line holds CR, LF or NUL");
                fuzz_tr_add(tr, 'L', 0, ev.data, ev.len);

                struct smtp_command c;
                smtp_command_parse(ev.data, ev.len, &c);
                /* The argument runs to the end of the line, less trailing white
                 * space (RFC 5321 4.1.1). */
                const char *line_end = ev.data + ev.len;
                FUZZ_CHECK(c.arg_len == 0 ||
                               (c.arg >= ev.data && c.arg + c.arg_len <= line_end &&
                                c.arg[c.arg_len - 1] != ' ' && c.arg[c.arg_len - 1] != '\t'),
                           "the argument is not the end of the line");
                for (const char *t = c.arg_len ? c.arg + c.arg_len : line_end; t < line_end; t++)
                    FUZZ_CHECK(*t == ' ' || *t == '\t', "the argument stops before the line end");
                if (c.verb == SMTP_CMD_MAIL || c.verb == SMTP_CMD_RCPT) {
                    struct smtp_path_args a;
                    int prc = smtp_path_parse(c.arg, c.arg_len,
                                              c.verb == SMTP_CMD_MAIL ? "FROM:" : "TO:", true, &a);
                    FUZZ_CHECK(prc <= 0 && prc >= -SMTP_PATH_TOO_MANY, "path parse %d", prc);
                    FUZZ_CHECK(prc < 0 || (a.mailbox >= c.arg &&
                                           a.mailbox + a.mailbox_len <= c.arg + c.arg_len),
                               "the mailbox is outside the argument");
                }
                if (c.verb == SMTP_CMD_DATA && c.arg_len == 0) {
                    /* The session's 354: the bytes behind the line are the message. */
                    smtp_parser_start_data(&p);
                    in_data = true;
                    data_start = base + used;
                    if (first_data == SIZE_MAX)
                        first_data = data_start;
                    msg.len = 0;
                }
            } else if (ev.type == SMTP_EV_DATA) {
                FUZZ_CHECK(in_data, "a DATA chunk in command mode");
                FUZZ_CHECK(ev.len > 0, "an empty DATA chunk");
                bool inside =
                    ev.data >= (const char *)pend && ev.data + ev.len <= (const char *)pend + plen;
                FUZZ_CHECK(inside || (ev.len == 1 && ev.data[0] == '\r'),
                           "a DATA chunk outside the buffer");
                fuzz_bytes_add(&msg, ev.data, ev.len);
            } else if (ev.type == SMTP_EV_DATA_END) {
                FUZZ_CHECK(in_data, "DATA_END in command mode");
                FUZZ_CHECK(used > 0, "DATA_END consumed nothing");
                fuzz_ref_unstuff(stream + data_start, n - data_start, text_max, &ref);
                FUZZ_CHECK(ref.found, "DATA_END where the stream holds no <CRLF>.<CRLF> (at %zu)",
                           base + used);
                FUZZ_CHECK(data_start + ref.end == base + used,
                           "DATA_END after stream byte %zu, but the end of data is at %zu",
                           base + used, data_start + ref.end);
                FUZZ_CHECK(fuzz_bytes_eq(&msg, &ref.msg),
                           "the unstuffed message (%zu bytes) differs from the model's (%zu bytes)",
                           msg.len, ref.msg.len);
                FUZZ_CHECK((ev.flags & ~(unsigned)(SMTP_DATA_BARE_EOL | SMTP_DATA_LONG_LINE)) == 0,
                           "unknown flags %#x", ev.flags);
                bool bare = fuzz_has_bare_eol(msg.p, msg.len);
                FUZZ_CHECK(((ev.flags & SMTP_DATA_BARE_EOL) != 0) == bare,
                           "BARE_EOL flag %u but bare CR/LF in the message: %d",
                           ev.flags & SMTP_DATA_BARE_EOL, bare);
                if (!(ev.flags & SMTP_DATA_BARE_EOL))
                    FUZZ_CHECK(msg.len == 0 || (msg.len >= 2 && msg.p[msg.len - 2] == '\r' &&
                                                msg.p[msg.len - 1] == '\n'),
                               "a clean message that does not end in CRLF");
                FUZZ_CHECK(ev.flags == ref.flags, "flags %#x, the model says %#x", ev.flags,
                           ref.flags);
                n_ends++;
                fuzz_tr_add(tr, 'D', ev.flags, msg.p, msg.len);
                if (o->roundtrip)
                    fuzz_smtp_roundtrip(msg.p, msg.len, o);
                msg.len = 0;
                in_data = false;
                if (o->data_only) {
                    smtp_parser_start_data(&p);
                    in_data = true;
                    data_start = base + used;
                }
            }
            /* An event may consume nothing once (".<CR>" then not LF); twice is a loop. */
            if (rc == 1 && used == 0)
                FUZZ_CHECK(++stalls < 2, "events that consume nothing, again and again");
            else
                stalls = 0;
            memmove(pend, pend + used, plen - used);
            plen -= used;
            base += used;
            if (rc == 0 && used == 0)
                break;
        }
        if (fed == n)
            break;
        size_t k = o->split ? fuzz_piece(&rng, n - fed) : n - fed;
        memcpy(pend + plen, stream + fed, k);
        plen += k;
        fed += k;
    }

    if (in_data) {
        /* The stream ended inside a message: the model must agree there was no end. */
        fuzz_ref_unstuff(stream + data_start, n - data_start, text_max, &ref);
        FUZZ_CHECK(!ref.found, "no DATA_END, but <CRLF>.<CRLF> ends the data at stream byte %zu",
                   data_start + ref.end);
        FUZZ_CHECK(msg.len <= ref.msg.len && ref.msg.len - msg.len <= 1 &&
                       (msg.len == 0 || memcmp(msg.p, ref.msg.p, msg.len) == 0),
                   "the unfinished message (%zu bytes) is not the model's (%zu bytes)", msg.len,
                   ref.msg.len);
        fuzz_tr_add(tr, 'U', 0, "", 0);
    }
    if (first_data != SIZE_MAX) {
        /* Each DATA_END stands on its own "\r\n.\r\n", the DATA line's CRLF included. */
        size_t from = o->data_only ? 0 : first_data - 2;
        size_t ends = fuzz_count_ends(stream + from, n - from);
        /* In data-only mode the stream starts a line as if a CRLF came before it. */
        if (o->data_only && n >= 3 && memcmp(stream, ".\r\n", 3) == 0)
            ends++;
        FUZZ_CHECK(n_ends <= ends, "%zu DATA_END events for %zu end-of-data sequences", n_ends,
                   ends);
    }
    fuzz_bytes_free(&msg);
    fuzz_bytes_free(&ref.msg);
    free(pend);
}

#endif
