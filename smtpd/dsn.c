/*
 * dsn.c — delivery status notifications (RFC 3464), built in memory; see
 * dsn.h for what a report holds and for the contract.
 *
 * The report is built in three part buffers first, because the MIME
 * boundary can be chosen only once every part is known not to contain it.
 * The first boundary tried comes from the report's Message-ID alone; should
 * a part hold it (an original quoting an earlier bounce of ours, or a
 * sender who guessed it), the next ones also mix in a hash of the parts, so
 * that no text written in advance can hold them all.
 *
 * Text that comes from elsewhere goes through sanitize(): line ends, tabs
 * and runs of spaces become one space, other control characters become
 * '?', and so do octets that are not ASCII unless the part may carry UTF-8
 * and they form valid UTF-8. Nothing from a remote server or a sender can
 * therefore end a header line, start a field, or end a part. Fields are then
 * folded at spaces near 78 columns and, for text without spaces, broken
 * before 998 octets (RFC 5322 2.1.1); the prose of the first part is
 * wrapped at 72 columns.
 *
 * The original's line ends (CRLF, bare LF or bare CR, read as headers.c
 * reads them) become CRLF. Its header section is the one headers_end()
 * finds, so the loop check and the report agree on where the headers stop.
 */
#include "dsn.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "headers.h"

#define FOLD_WIDTH 78 /* where fields fold, when they can (RFC 5322 2.1.1) */
#define TEXT_WIDTH 72 /* the prose of the first part */
#define LINE_HARD 998 /* octets in a line before its CRLF, never more */
#define TEXT_MAX 1024 /* the most of an ENVID, ORCPT or host name quoted */
#define MSGID_MAX 250 /* a Message-ID, brackets excluded */
#define BOUNDARY_SIZE 64
#define BOUNDARY_TRIES 16

/*
 * An output buffer and the first error met while writing to it: a build
 * writes many pieces, and checks once at the end (the buffer is thrown
 * away, or cut back, on error).
 */
struct out {
    struct buf *b;
    int err;
};

static void out_mem(struct out *o, const void *p, size_t n)
{
    if (o->err == 0)
        o->err = buf_append(o->b, p, n);
}

static void out_str(struct out *o, const char *s)
{
    out_mem(o, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void out_fmt(struct out *o, const char *fmt, ...)
{
    if (o->err != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    o->err = buf_vprintf(o->b, fmt, ap);
    va_end(ap);
}

static bool has_8bit(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return true;
    return false;
}

static bool empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/* The length of the valid UTF-8 sequence at s[0..n), or 0. */
static size_t utf8_len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    size_t want = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (want > n || !addr_utf8_valid(s, want))
        return 0;
    return want;
}

/*
 * Appends s[0..len) made safe for a header field or a line of prose (see
 * the top of the file), at most max octets of it, then "..." if it was
 * longer. White space is never written first in the buffer, nor twice in a
 * row; a trailing space may be left, which trim() takes off.
 */
static void sanitize(struct out *o, const char *s, size_t len, bool utf8, size_t max)
{
    bool cut = len > max;
    if (cut)
        len = max;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            struct buf *b = o->b;
            if (b->len > 0 && b->data[b->len - 1] != ' ')
                out_mem(o, " ", 1);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            out_mem(o, "?", 1);
            i++;
        } else if (c < 0x80) {
            out_mem(o, s + i, 1);
            i++;
        } else {
            size_t n = utf8 ? utf8_len(s + i, len - i) : 0;
            if (n == 0) {
                out_mem(o, "?", 1);
                i++;
            } else {
                out_mem(o, s + i, n);
                i += n;
            }
        }
    }
    if (cut)
        out_str(o, "...");
}

static void trim(struct buf *b)
{
    while (b->len > 0 && b->data[b->len - 1] == ' ')
        b->len--;
}

/*
 * Of the w octets of a word at s, how many to put on a line that has room
 * for room octets: room, moved back so as not to split a UTF-8 sequence.
 */
static size_t take_upto(const char *s, size_t w, size_t room)
{
    if (w <= room)
        return w;
    size_t take = room;
    while (take > 1 && ((unsigned char)s[take] & 0xc0) == 0x80)
        take--;
    return take;
}

/*
 * Writes the words of v[0..n) (sanitized: single spaces) after what is
 * already on the line (col octets), breaking lines at spaces before width
 * columns where it can, never before the first word, and inside a word only
 * at LINE_HARD. Each new line starts with indent spaces (a field's
 * continuation: one, which stands for the space it replaces). With
 * space_first, a space goes before the first word too.
 */
static void fill(struct out *o, const char *v, size_t n, size_t col, size_t indent, size_t width,
                 bool space_first)
{
    static const char spaces[] = "                ";
    assert(indent < sizeof(spaces));
    bool first = true;
    for (size_t i = 0; i < n;) {
        while (i < n && v[i] == ' ')
            i++;
        size_t j = i;
        while (j < n && v[j] != ' ')
            j++;
        if (j == i)
            break;
        size_t w = j - i;
        if (!first && col + 1 + w > width) {
            out_str(o, "\r\n");
            out_mem(o, spaces, indent);
            col = indent;
        } else if (!first || space_first) {
            out_str(o, " ");
            col++;
        }
        while (col + w > LINE_HARD) {
            size_t take = take_upto(v + i, w, LINE_HARD - col);
            out_mem(o, v + i, take);
            out_str(o, "\r\n");
            out_mem(o, spaces, indent);
            col = indent;
            i += take;
            w -= take;
        }
        out_mem(o, v + i, w);
        col += w;
        i = j;
        first = false;
    }
}

/* Writes "name: value" folded, value from the sanitized v[0..n), and CRLF. */
static void field(struct out *o, const char *name, const char *v, size_t n)
{
    out_str(o, name);
    out_str(o, ":");
    fill(o, v, n, strlen(name) + 1, 1, FOLD_WIDTH, true);
    out_str(o, "\r\n");
}

/*
 * Writes the field name: prefix + text, the text sanitized through the
 * scratch buffer tmp.
 */
static int field_text(struct out *o, struct buf *tmp, const char *name, const char *prefix,
                      const char *text, size_t len, bool utf8, size_t max)
{
    struct out t = {tmp, 0};
    buf_reset(tmp);
    out_str(&t, prefix);
    sanitize(&t, text, len, utf8, max);
    trim(tmp);
    if (t.err == 0)
        field(o, name, (const char *)tmp->data, tmp->len);
    return t.err;
}

/* Writes prose v[0..n) as lines of at most TEXT_WIDTH columns, each after indent spaces. */
static void prose(struct out *o, const char *v, size_t n, size_t indent)
{
    static const char spaces[] = "                ";
    out_mem(o, spaces, indent);
    fill(o, v, n, indent, indent, TEXT_WIDTH, false);
    out_str(o, "\r\n");
}

/* RFC 3463 status-code: class "." subject "." detail, class 2, 4 or 5. */
static bool status_valid(const char *s)
{
    if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return false;
    s += 2;
    for (int part = 0; part < 2; part++) {
        size_t n = 0;
        while (s[n] >= '0' && s[n] <= '9')
            n++;
        if (n < 1 || n > 3)
            return false;
        s += n;
        if (part == 0 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

static bool addr_valid(const char *s)
{
    struct addr a;
    return !empty(s) && addr_parse(s, strlen(s), ADDR_UTF8 | ADDR_QUOTED | ADDR_LITERAL, &a) == 0;
}

/*
 * A Message-ID's inside (brackets taken off when given): printable ASCII
 * with no brackets and no space, with an '@' not at either end. Sets
 * *start_r and *len_r to it within s.
 */
static bool msgid_valid(const char *s, size_t *start_r, size_t *len_r)
{
    if (s == NULL)
        return false;
    size_t len = strlen(s), start = 0;
    if (len >= 2 && s[0] == '<' && s[len - 1] == '>')
        start = 1, len -= 2;
    if (len == 0 || len > MSGID_MAX)
        return false;
    const char *at = memchr(s + start, '@', len);
    if (at == NULL || at == s + start || at == s + start + len - 1)
        return false;
    for (size_t i = start; i < start + len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 32 || c >= 127 || c == '<' || c == '>')
            return false;
    }
    *start_r = start;
    *len_r = len;
    return true;
}

/* An ORCPT is "addr-type;address": an atom, a semicolon, then anything. */
static bool orcpt_valid(const char *s)
{
    const char *semi = strchr(s, ';');
    if (semi == NULL || semi == s)
        return false;
    for (const char *p = s; p < semi; p++)
        if ((unsigned char)*p <= 32 || (unsigned char)*p >= 127)
            return false;
    return true;
}

/* The line at s[pos..n): its text length in *text_r; returns where the next starts. */
static size_t next_line(const char *s, size_t n, size_t pos, size_t *text_r)
{
    size_t i = pos;
    while (i < n && s[i] != '\n' && s[i] != '\r')
        i++;
    *text_r = i - pos;
    if (i < n && s[i] == '\r')
        i++;
    if (i < n && s[i] == '\n')
        i++;
    return i;
}

/* What is known of the original before any of it is written. */
struct orig_view {
    const char *p;
    size_t len;     /* octets given */
    size_t size;    /* octets in the whole message */
    size_t hdr_len; /* its header section, in p */
    bool hdr_8bit;  /* the header section has octets above 127 */
    bool hdr_utf8;  /* ... and they are valid UTF-8 */
    bool any_8bit;  /* so has the message as given */
    bool carryable; /* no NUL, no line above LINE_HARD: fit for message/rfc822 */
};

static void orig_look(const struct dsn_report *r, struct orig_view *v)
{
    memset(v, 0, sizeof(*v));
    if (r->orig == NULL)
        return;
    v->p = r->orig;
    v->len = r->orig_len;
    v->size = r->orig_size ? r->orig_size : r->orig_len;
    headers_end(v->p, v->len, &v->hdr_len, NULL);
    v->hdr_8bit = has_8bit(v->p, v->hdr_len);
    v->hdr_utf8 = addr_utf8_valid(v->p, v->hdr_len);
    v->any_8bit = has_8bit(v->p, v->len);
    v->carryable = memchr(v->p, '\0', v->len) == NULL;
    for (size_t pos = 0, n; v->carryable && pos < v->len;) {
        pos = next_line(v->p, v->len, pos, &n);
        if (n > LINE_HARD)
            v->carryable = false;
    }
}

/*
 * Copies the lines of s[0..n) with CRLF line ends, stopping before the
 * line that would take the copy past max octets (*cut_r then set). With
 * ascii, octets above 127 become '?'; NUL always does. A line longer than
 * LINE_HARD is folded (a header line: the fold adds a space to it).
 */
static void copy_lines(struct out *o, const char *s, size_t n, bool ascii, size_t max, bool *cut_r)
{
    size_t base = o->b->len;
    for (size_t pos = 0, len; pos < n && o->err == 0;) {
        size_t next = next_line(s, n, pos, &len), mark = o->b->len;
        for (size_t i = 0, col = 0; i < len; i++, col++) {
            unsigned char c = (unsigned char)s[pos + i];
            /* A fold never splits a UTF-8 sequence: it goes before the lead. */
            size_t need = ascii || c < 0xc0 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            if (col + need > LINE_HARD) {
                out_str(o, "\r\n ");
                col = 1;
            }
            if (c == '\0' || (ascii && c >= 0x80))
                out_mem(o, "?", 1);
            else
                out_mem(o, &s[pos + i], 1);
        }
        out_str(o, "\r\n");
        if (o->b->len - base > max) {
            o->b->len = mark; /* the line that went past max is taken back */
            *cut_r = true;
            return;
        }
        pos = next;
    }
}

static const char *action_word(enum dsn_action a)
{
    switch (a) {
    case DSN_ACTION_FAILED:
        return "failed";
    case DSN_ACTION_DELAYED:
        return "delayed";
    case DSN_ACTION_DELIVERED:
        return "delivered";
    case DSN_ACTION_RELAYED:
        return "relayed";
    case DSN_ACTION_EXPANDED:
        return "expanded";
    }
    return NULL;
}

/* What the first part says about the original it carries. */
enum note {
    NOTE_NONE,        /* no original given */
    NOTE_HEADERS,     /* its headers are attached */
    NOTE_FULL,        /* it is attached whole */
    NOTE_TOO_BIG,     /* RET=FULL, but larger than DSN_FULL_MAX */
    NOTE_CANNOT,      /* RET=FULL, but it holds what a report cannot carry */
    NOTE_NOT_FAILURE, /* RET=FULL, but only failures carry the whole */
};

/* Everything decided before writing. */
struct plan {
    bool global;      /* RFC 6533 types for parts 2 and 3 */
    bool text_8bit;   /* the first part holds UTF-8 */
    bool status_8bit; /* the second part does */
    bool full;        /* part 3 is the whole original */
    bool hdrs_ascii;  /* part 3's header octets above 127 become '?' */
    bool hdrs_cut;    /* part 3's header section was cut at DSN_HEADERS_MAX */
    enum note note;
    char date[HEADERS_DATE_SIZE];
    char arrival[HEADERS_DATE_SIZE];
    char mta[ADDR_DOMAIN_MAX + 1];
};

static int check(const struct dsn_report *r)
{
    size_t s, l;
    if (r->kind != DSN_KIND_FAILED && r->kind != DSN_KIND_DELAYED && r->kind != DSN_KIND_SUCCESS)
        return -EINVAL;
    if (r->ret != STORE_RET_DEFAULT && r->ret != STORE_RET_HDRS && r->ret != STORE_RET_FULL)
        return -EINVAL;
    if (r->rcpts == NULL || r->nrcpts == 0 || !addr_valid(r->sender) ||
        !msgid_valid(r->message_id, &s, &l) || empty(r->reporting_mta))
        return -EINVAL;
    if (r->orig != NULL && r->orig_size != 0 && r->orig_size < r->orig_len)
        return -EINVAL;
    for (size_t i = 0; i < r->nrcpts; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];
        if (!addr_valid(rc->final_rcpt) || !status_valid(rc->status) ||
            action_word(rc->action) == NULL)
            return -EINVAL;
        if (!empty(rc->orig_rcpt) && !orcpt_valid(rc->orig_rcpt))
            return -EINVAL;
        if (rc->reply == NULL && rc->reply_len != 0)
            return -EINVAL;
    }
    return 0;
}

static int make_plan(const struct dsn_report *r, const struct orig_view *v, struct plan *p)
{
    memset(p, 0, sizeof(*p));
    const char *mta = r->reporting_mta;
    if (addr_parse_domain(mta, strlen(mta), 0, p->mta) != 0)
        return -EINVAL;
    if (headers_format_date(r->date, p->date) != 0)
        return -EINVAL;
    if (r->arrival != 0 && headers_format_date(r->arrival, p->arrival) != 0)
        return -EINVAL;

    bool any_failed = false;
    bool addr_8bit = has_8bit(r->sender, strlen(r->sender));
    for (size_t i = 0; i < r->nrcpts; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];
        char d[HEADERS_DATE_SIZE];
        if ((rc->last_attempt != 0 && headers_format_date(rc->last_attempt, d) != 0) ||
            (rc->retry_until != 0 && headers_format_date(rc->retry_until, d) != 0))
            return -EINVAL;
        any_failed |= rc->action == DSN_ACTION_FAILED;
        addr_8bit |= has_8bit(rc->final_rcpt, strlen(rc->final_rcpt));
        if (!empty(rc->orig_rcpt)) {
            size_t n = strlen(rc->orig_rcpt);
            addr_8bit |= has_8bit(rc->orig_rcpt, n) && addr_utf8_valid(rc->orig_rcpt, n);
        }
    }
    p->global = addr_8bit || (v->hdr_8bit && v->hdr_utf8);
    p->text_8bit = addr_8bit;
    p->status_8bit = addr_8bit;

    if (v->p == NULL) {
        p->note = NOTE_NONE;
        return 0;
    }
    bool want_full = r->ret == STORE_RET_FULL;
    bool whole = v->len == v->size;
    if (want_full && !any_failed) {
        p->note = NOTE_NOT_FAILURE;
    } else if (want_full && v->size > DSN_FULL_MAX) {
        p->note = NOTE_TOO_BIG;
    } else if (want_full && (!whole || !v->carryable || (v->hdr_8bit && !v->hdr_utf8))) {
        p->note = NOTE_CANNOT;
    } else if (want_full) {
        p->note = NOTE_FULL;
        p->full = true;
    } else {
        p->note = NOTE_HEADERS;
    }
    p->hdrs_ascii = v->hdr_8bit && !v->hdr_utf8;
    return 0;
}

/* The address as a field wants it: "rfc822; a@b", or "utf-8; ..." (RFC 6533). */
static void typed_addr(struct out *o, const char *addr)
{
    size_t n = strlen(addr);
    out_str(o, has_8bit(addr, n) ? "utf-8; " : "rfc822; ");
    out_mem(o, addr, n);
}

/* Part 2: the per-message fields, then one group per recipient. */
static int write_status(struct out *o, struct buf *tmp, const struct dsn_report *r,
                        const struct plan *p)
{
    int rc = 0;
    if (!empty(r->envid))
        rc = field_text(o, tmp, "Original-Envelope-Id", "", r->envid, strlen(r->envid), false,
                        TEXT_MAX);
    out_fmt(o, "Reporting-MTA: dns; %s\r\n", p->mta);
    if (r->arrival != 0)
        out_fmt(o, "Arrival-Date: %s\r\n", p->arrival);
    for (size_t i = 0; rc == 0 && i < r->nrcpts; i++) {
        const struct dsn_rcpt *c = &r->rcpts[i];
        char d[HEADERS_DATE_SIZE];
        out_str(o, "\r\n");
        if (!empty(c->orig_rcpt))
            rc = field_text(o, tmp, "Original-Recipient", "", c->orig_rcpt, strlen(c->orig_rcpt),
                            p->global, TEXT_MAX);
        out_str(o, "Final-Recipient: ");
        typed_addr(o, c->final_rcpt);
        out_str(o, "\r\n");
        out_fmt(o, "Action: %s\r\nStatus: %s\r\n", action_word(c->action), c->status);
        if (rc == 0 && !empty(c->remote_mta))
            rc = field_text(o, tmp, "Remote-MTA", "dns; ", c->remote_mta, strlen(c->remote_mta),
                            false, TEXT_MAX);
        if (rc == 0 && c->reply_len > 0)
            rc = field_text(o, tmp, "Diagnostic-Code", "smtp; ", c->reply, c->reply_len, false,
                            DSN_DIAG_MAX);
        else if (rc == 0 && !empty(c->reason))
            rc = field_text(o, tmp, "Diagnostic-Code", "X-Kotak; ", c->reason, strlen(c->reason),
                            false, DSN_DIAG_MAX);
        if (c->last_attempt != 0 && headers_format_date(c->last_attempt, d) == 0)
            out_fmt(o, "Last-Attempt-Date: %s\r\n", d);
        if (c->action == DSN_ACTION_DELAYED && c->retry_until != 0 &&
            headers_format_date(c->retry_until, d) == 0)
            out_fmt(o, "Will-Retry-Until: %s\r\n", d);
    }
    return rc;
}

/* A paragraph of prose built in tmp by the caller, written wrapped. */
static void para(struct out *o, struct buf *tmp, size_t indent)
{
    trim(tmp);
    prose(o, (const char *)tmp->data, tmp->len, indent);
}

/* What the first part says of one recipient. */
static int write_human_rcpt(struct out *o, struct buf *tmp, const struct dsn_rcpt *c,
                            const struct plan *p)
{
    struct out t = {tmp, 0};
    char d[HEADERS_DATE_SIZE];
    buf_reset(tmp);
    out_str(&t, "<");
    sanitize(&t, c->final_rcpt, strlen(c->final_rcpt), p->text_8bit, TEXT_MAX);
    out_str(&t, ">: ");
    switch (c->action) {
    case DSN_ACTION_FAILED:
        out_str(&t, "delivery failed, and the mail system will not try again.");
        break;
    case DSN_ACTION_DELAYED:
        out_str(&t, "not delivered yet. The mail system is still trying");
        if (c->retry_until != 0 && headers_format_date(c->retry_until, d) == 0)
            out_fmt(&t, ", and will until %s", d);
        out_str(&t, ".");
        break;
    case DSN_ACTION_DELIVERED:
        out_str(&t, "delivered.");
        break;
    case DSN_ACTION_RELAYED:
        out_str(&t, "passed on to a server that sends no delivery reports, so this is the "
                    "last news of it you will get.");
        break;
    case DSN_ACTION_EXPANDED:
        out_str(&t, "delivered to an alias or a mailing list, which sends it on to its own "
                    "recipients.");
        break;
    }
    out_fmt(&t, " (status %s)", c->status);
    /* The address the sender wrote, when an alias or a case change hid it. */
    const char *a = empty(c->orig_rcpt) ? NULL : strchr(c->orig_rcpt, ';') + 1;
    while (a != NULL && *a == ' ')
        a++;
    if (a != NULL && strcasecmp(a, c->final_rcpt) != 0) {
        out_str(&t, " You addressed it to ");
        sanitize(&t, a, strlen(a), p->text_8bit, TEXT_MAX);
        out_str(&t, ".");
    }
    if (t.err)
        return t.err;
    para(o, tmp, 0);

    if (c->reply_len > 0) {
        buf_reset(tmp);
        if (!empty(c->remote_mta)) {
            out_str(&t, "The server ");
            sanitize(&t, c->remote_mta, strlen(c->remote_mta), false, TEXT_MAX);
            out_str(&t, " answered:");
        } else {
            out_str(&t, "The receiving server answered:");
        }
        if (t.err)
            return t.err;
        para(o, tmp, 4);
        /* The reply's own lines are kept, each wrapped on its own. */
        size_t len = c->reply_len < DSN_DIAG_MAX ? c->reply_len : DSN_DIAG_MAX;
        for (size_t pos = 0, n; pos < len;) {
            size_t next = next_line(c->reply, len, pos, &n);
            buf_reset(tmp);
            sanitize(&t, c->reply + pos, n, false, n);
            if (next >= len && c->reply_len > len)
                out_str(&t, " ...");
            if (t.err)
                return t.err;
            trim(tmp);
            if (tmp->len > 0)
                para(o, tmp, 8);
            pos = next;
        }
    } else if (!empty(c->reason)) {
        buf_reset(tmp);
        out_str(&t, "Reason: ");
        sanitize(&t, c->reason, strlen(c->reason), false, DSN_DIAG_MAX);
        if (t.err)
            return t.err;
        para(o, tmp, 4);
    }
    if (c->last_attempt != 0 && headers_format_date(c->last_attempt, d) == 0)
        out_fmt(o, "    Last attempt: %s\r\n", d);
    out_str(o, "\r\n");
    return 0;
}

/* Part 1, in plain English. */
static int write_human(struct out *o, struct buf *tmp, const struct dsn_report *r,
                       const struct plan *p, const struct orig_view *v)
{
    struct out t = {tmp, 0};
    out_fmt(o, "This is the mail system at %s.\r\n\r\n", p->mta);
    buf_reset(tmp);
    switch (r->kind) {
    case DSN_KIND_FAILED:
        out_str(&t, "Your message could not be delivered to one or more of its recipients. "
                    "The mail system has given up on them.");
        break;
    case DSN_KIND_DELAYED:
        out_str(&t, "Your message has not been delivered yet to one or more of its recipients. "
                    "The mail system is still trying: you do not need to send it again, and "
                    "you will hear again if it finally gives up.");
        break;
    case DSN_KIND_SUCCESS:
        out_str(&t, "As you asked, this is a report of your message's delivery.");
        break;
    }
    if (t.err)
        return t.err;
    para(o, tmp, 0);
    out_str(o, "\r\n");

    for (size_t i = 0; i < r->nrcpts; i++) {
        int rc = write_human_rcpt(o, tmp, &r->rcpts[i], p);
        if (rc != 0)
            return rc;
    }

    buf_reset(tmp);
    switch (r->kind) {
    case DSN_KIND_FAILED:
        out_str(&t, "What to do next: check the addresses above for typing mistakes. The "
                    "server's answer usually says why it refused the message: an unknown "
                    "address (5.1.1) needs a corrected one; a full mailbox or a message "
                    "taken for spam may mean reaching the recipient another way. If you "
                    "cannot tell what went wrong, forward this report to your postmaster.");
        break;
    case DSN_KIND_DELAYED:
        out_str(&t, "What to do next: nothing for now. If the message is urgent, reach the "
                    "recipient another way.");
        break;
    case DSN_KIND_SUCCESS:
        out_str(&t, "Nothing needs doing.");
        break;
    }
    if (t.err)
        return t.err;
    para(o, tmp, 0);
    out_str(o, "\r\n");

    buf_reset(tmp);
    switch (p->note) {
    case NOTE_NONE:
        break;
    case NOTE_HEADERS:
        out_str(&t, "The headers of your message are attached.");
        break;
    case NOTE_FULL:
        out_str(&t, "Your message is attached.");
        break;
    case NOTE_TOO_BIG:
        out_fmt(&t,
                "You asked for your message back whole, but at %zu octets it is larger than "
                "the %d this server returns, so only its headers are attached.",
                v->size, DSN_FULL_MAX);
        break;
    case NOTE_CANNOT:
        out_str(&t, "You asked for your message back whole, but it holds lines or octets "
                    "that a report cannot carry, so only its headers are attached.");
        break;
    case NOTE_NOT_FAILURE:
        out_str(&t, "Only the headers of your message are attached: a message goes back "
                    "whole only with a report of failure (RFC 3461).");
        break;
    }
    if (p->note != NOTE_NONE && !p->full && p->hdrs_cut)
        out_fmt(&t, " They were cut short at %d octets.", DSN_HEADERS_MAX);
    if (t.err)
        return t.err;
    if (tmp->len > 0) {
        para(o, tmp, 0);
        out_str(o, "\r\n");
    }
    out_str(o, "-- \r\nThe mail system\r\n");
    return 0;
}

/* Part 3's contents: the original whole, or its header section. */
static void write_orig(struct out *o, const struct orig_view *v, struct plan *p)
{
    if (p->full)
        copy_lines(o, v->p, v->len, false, SIZE_MAX, &p->hdrs_cut);
    else
        copy_lines(o, v->p, v->hdr_len, p->hdrs_ascii, DSN_HEADERS_MAX, &p->hdrs_cut);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static bool holds(const struct buf *b, const char *s, size_t n)
{
    return b->len > 0 && memmem(b->data, b->len, s, n) != NULL;
}

/* Chooses a boundary that none of the parts holds; see the top of the file. */
static int pick_boundary(const char *msgid, struct buf *const parts[3], char out[BOUNDARY_SIZE])
{
    uint64_t h = fnv1a(0xcbf29ce484222325ULL, msgid, strlen(msgid));
    uint64_t mixed = h;
    for (int tries = 0; tries < BOUNDARY_TRIES; tries++) {
        int n;
        if (tries == 0) {
            n = snprintf(out, BOUNDARY_SIZE, "=_kotak_%016llx", (unsigned long long)h);
        } else {
            if (tries == 1)
                for (int i = 0; i < 3; i++)
                    mixed = fnv1a(mixed, parts[i]->data, parts[i]->len);
            mixed = fnv1a(mixed, &tries, sizeof(tries));
            n = snprintf(out, BOUNDARY_SIZE, "=_kotak_%016llx_%d", (unsigned long long)mixed,
                         tries);
        }
        if (n <= 0 || n >= BOUNDARY_SIZE)
            return -EINVAL;
        bool clash = false;
        for (int i = 0; i < 3; i++)
            clash |= holds(parts[i], out, (size_t)n);
        if (!clash)
            return 0;
    }
    return -EEXIST;
}

static const char *subject(enum dsn_kind k)
{
    switch (k) {
    case DSN_KIND_FAILED:
        return "Undelivered Mail Returned to Sender";
    case DSN_KIND_DELAYED:
        return "Delayed Mail (still being retried)";
    case DSN_KIND_SUCCESS:
        return "Successful Mail Delivery Report";
    }
    return "";
}

/* Words for part 3's Content-Description. */
static const char *orig_word(enum dsn_kind k)
{
    return k == DSN_KIND_FAILED ? "Undelivered" : k == DSN_KIND_DELAYED ? "Delayed" : "Delivered";
}

static void write_part(struct out *o, const char *boundary, const char *type, const char *desc,
                       bool eightbit, const struct buf *body)
{
    out_fmt(o, "\r\n--%s\r\nContent-Type: %s\r\nContent-Description: %s\r\n", boundary, type, desc);
    out_fmt(o, "Content-Transfer-Encoding: %s\r\n\r\n", eightbit ? "8bit" : "7bit");
    out_mem(o, body->data, body->len);
}

int dsn_build(const struct dsn_report *r, struct buf *out_r, unsigned *flags_r)
{
    if (r == NULL || out_r == NULL)
        return -EINVAL;
    int rc = check(r);
    if (rc != 0)
        return rc;
    struct orig_view v;
    struct plan p;
    orig_look(r, &v);
    rc = make_plan(r, &v, &p);
    if (rc != 0)
        return rc;

    /* Each part is kept under what is left of the output's ceiling. */
    size_t room = out_r->max - out_r->len;
    if (room == 0)
        return -ENOBUFS;
    struct buf human, status, orig, tmp;
    buf_init(&human, room);
    buf_init(&status, room);
    buf_init(&orig, room);
    buf_init(&tmp, 0);
    struct out oh = {&human, 0}, os = {&status, 0}, oo = {&orig, 0};

    if (v.p != NULL)
        write_orig(&oo, &v, &p);
    rc = oo.err;
    if (rc == 0)
        rc = write_status(&os, &tmp, r, &p);
    if (rc == 0)
        rc = os.err;
    if (rc == 0)
        rc = write_human(&oh, &tmp, r, &p, &v);
    if (rc == 0)
        rc = oh.err;

    char boundary[BOUNDARY_SIZE];
    struct buf *const parts[3] = {&human, &status, &orig};
    if (rc == 0)
        rc = pick_boundary(r->message_id, parts, boundary);

    size_t start = out_r->len;
    struct out o = {out_r, rc};
    size_t id_start = 0, id_len = 0;
    msgid_valid(r->message_id, &id_start, &id_len);
    bool orig_8bit = p.full ? v.any_8bit : (v.hdr_8bit && !p.hdrs_ascii);
    bool body_8bit = p.text_8bit || p.status_8bit || (v.p != NULL && orig_8bit);

    out_fmt(&o, "From: \"Mail Delivery System\" <MAILER-DAEMON@%s>\r\n", p.mta);
    out_fmt(&o, "To: <%s>\r\n", r->sender);
    out_fmt(&o, "Subject: %s\r\n", subject(r->kind));
    out_fmt(&o, "Date: %s\r\n", p.date);
    out_fmt(&o, "Message-ID: <%.*s>\r\n", (int)id_len, r->message_id + id_start);
    out_str(&o, "Auto-Submitted: auto-replied\r\n");
    out_str(&o, "MIME-Version: 1.0\r\n");
    out_fmt(&o,
            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            "\tboundary=\"%s\"\r\n",
            boundary);
    if (body_8bit)
        out_str(&o, "Content-Transfer-Encoding: 8bit\r\n");
    out_str(&o, "\r\nThis is a MIME-encapsulated message.\r\n");

    write_part(&o, boundary,
               p.text_8bit ? "text/plain; charset=utf-8" : "text/plain; charset=us-ascii",
               "Notification", p.text_8bit, &human);
    write_part(&o, boundary,
               p.global ? "message/global-delivery-status" : "message/delivery-status",
               "Delivery report", p.status_8bit, &status);
    if (v.p != NULL) {
        const char *type;
        if (p.full)
            type = v.hdr_8bit ? "message/global" : "message/rfc822";
        else
            type = v.hdr_8bit && !p.hdrs_ascii ? "message/global-headers" : "text/rfc822-headers";
        char desc[40];
        snprintf(desc, sizeof(desc), "%s Message%s", orig_word(r->kind), p.full ? "" : " Headers");
        write_part(&o, boundary, type, desc, orig_8bit, &orig);
    }
    out_fmt(&o, "\r\n--%s--\r\n", boundary);

    rc = o.err;
    if (rc != 0)
        out_r->len = start;
    else if (flags_r != NULL)
        *flags_r =
            (body_8bit ? DSN_BUILD_8BIT : 0) |
            (has_8bit(r->sender, strlen(r->sender)) ? DSN_BUILD_SMTPUTF8 : 0) |
            (r->ret == STORE_RET_FULL && v.p != NULL && !p.full ? DSN_BUILD_HEADERS_ONLY : 0);
    buf_free(&human);
    buf_free(&status);
    buf_free(&orig);
    buf_free(&tmp);
    return rc;
}

bool dsn_should_bounce(const char *envelope_sender)
{
    return !empty(envelope_sender) && strcmp(envelope_sender, "<>") != 0;
}

bool dsn_notify_wants(unsigned notify, enum dsn_action action)
{
    if (notify == 0)
        notify = STORE_NOTIFY_FAILURE | STORE_NOTIFY_DELAY;
    if (notify & STORE_NOTIFY_NEVER)
        return false;
    switch (action) {
    case DSN_ACTION_FAILED:
        return notify & STORE_NOTIFY_FAILURE;
    case DSN_ACTION_DELAYED:
        return notify & STORE_NOTIFY_DELAY;
    case DSN_ACTION_DELIVERED:
    case DSN_ACTION_RELAYED:
    case DSN_ACTION_EXPANDED:
        return notify & STORE_NOTIFY_SUCCESS;
    }
    return false;
}

int dsn_notify_parse(const char *s, size_t len, unsigned *notify_r)
{
    static const struct {
        const char *word;
        unsigned bit;
    } words[] = {
        {"NEVER", STORE_NOTIFY_NEVER},
        {"SUCCESS", STORE_NOTIFY_SUCCESS},
        {"FAILURE", STORE_NOTIFY_FAILURE},
        {"DELAY", STORE_NOTIFY_DELAY},
    };
    unsigned notify = 0;
    size_t pos = 0;
    if (s == NULL || len == 0)
        return -EINVAL;
    for (;;) {
        const char *comma = memchr(s + pos, ',', len - pos);
        size_t end = comma ? (size_t)(comma - s) : len, n = end - pos;
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
            if (strlen(words[i].word) == n && strncasecmp(s + pos, words[i].word, n) == 0)
                bit = words[i].bit;
        if (bit == 0 || (notify & bit))
            return -EINVAL;
        notify |= bit;
        if (comma == NULL)
            break;
        pos = end + 1;
    }
    if ((notify & STORE_NOTIFY_NEVER) && notify != STORE_NOTIFY_NEVER)
        return -EINVAL;
    *notify_r = notify;
    return 0;
}

int dsn_ret_parse(const char *s, size_t len, enum store_ret *ret_r)
{
    if (len == 4 && strncasecmp(s, "FULL", 4) == 0)
        *ret_r = STORE_RET_FULL;
    else if (len == 4 && strncasecmp(s, "HDRS", 4) == 0)
        *ret_r = STORE_RET_HDRS;
    else
        return -EINVAL;
    return 0;
}

int dsn_xtext_encode(const char *s, size_t len, struct buf *out_r)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t start = out_r->len;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= '!' && c <= '~' && c != '+' && c != '=') {
            rc = buf_append(out_r, &c, 1);
        } else {
            char e[3] = {'+', hex[c >> 4], hex[c & 15]};
            rc = buf_append(out_r, e, 3);
        }
    }
    if (rc != 0)
        out_r->len = start;
    return rc;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int dsn_xtext_decode(const char *s, size_t len, struct buf *out_r)
{
    size_t start = out_r->len;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            if (len - i < 3 || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) {
                rc = -EINVAL;
                break;
            }
            c = (unsigned char)(hex_value(s[i + 1]) << 4 | hex_value(s[i + 2]));
            i += 2;
        } else if (c < '!' || c > '~' || c == '=') {
            rc = -EINVAL;
            break;
        }
        rc = buf_append(out_r, &c, 1);
    }
    if (rc != 0)
        out_r->len = start;
    return rc;
}
