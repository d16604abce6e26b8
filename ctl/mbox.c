/*
 * mbox.c — the pure parts of `kotak import` and `kotak export`: see mbox.h
 * for the formats and the choices made where they are ambiguous.
 */
#include <stdio.h>
#include <string.h>

#include "mbox.h"

bool mbox_is_from_line(const char *line, size_t len)
{
    return len >= 5 && memcmp(line, "From ", 5) == 0;
}

/* The number of '>' that start the line, when "From " follows them; else (size_t)-1. */
static size_t quotes_before_from(const char *line, size_t len)
{
    size_t q = 0;
    while (q < len && line[q] == '>')
        q++;
    return mbox_is_from_line(line + q, len - q) ? q : (size_t)-1;
}

size_t mbox_unquote_len(const char *line, size_t len)
{
    size_t q = quotes_before_from(line, len);
    return q != (size_t)-1 && q >= 1 ? 1 : 0;
}

bool mbox_needs_quote(const char *line, size_t len)
{
    return quotes_before_from(line, len) != (size_t)-1;
}

static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y_r, unsigned *m_r, unsigned *d_r)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d_r = doy - (153 * mp + 2) / 5 + 1;
    *m_r = mp < 10 ? mp + 3 : mp - 9;
    *y_r = (int64_t)yoe + era * 400 + (*m_r <= 2);
}

/* Reads n digits (leading spaces allowed when pad) at *p; -1 when they are not there. */
static int number(const char **p, const char *end, int n, bool pad)
{
    int v = 0, got = 0;
    while (pad && *p < end && **p == ' ' && got < n - 1) {
        (*p)++;
        n--;
    }
    for (; got < n; got++, (*p)++) {
        if (*p >= end || **p < '0' || **p > '9')
            return -1;
        v = v * 10 + (**p - '0');
    }
    return v;
}

/* Parses "Www Mmm dd hh:mm:ss yyyy" at p: 1 and *t_r, 0 when it is not that. */
static int parse_ctime(const char *p, const char *end, int64_t *t_r)
{
    if (end - p < 24)
        return 0;
    int wday = -1, mon = -1;
    for (int i = 0; i < 7; i++)
        if (memcmp(p, days[i], 3) == 0)
            wday = i;
    for (int i = 0; i < 12; i++)
        if (memcmp(p + 4, months[i], 3) == 0)
            mon = i;
    if (wday < 0 || mon < 0 || p[3] != ' ' || p[7] != ' ')
        return 0;
    p += 8;
    int d = number(&p, end, 2, true);
    if (d < 1 || d > 31 || p >= end || *p++ != ' ')
        return 0;
    int hh = number(&p, end, 2, false);
    if (hh < 0 || hh > 23 || p >= end || *p++ != ':')
        return 0;
    int mm = number(&p, end, 2, false);
    if (mm < 0 || mm > 59 || p >= end || *p++ != ':')
        return 0;
    int ss = number(&p, end, 2, false);
    if (ss < 0 || ss > 60 || p >= end || *p++ != ' ')
        return 0;
    /* Some writers put a zone before the year ("... 12:00:00 UTC 2024"). */
    if (p < end && !(*p >= '0' && *p <= '9')) {
        while (p < end && *p != ' ')
            p++;
        if (p < end)
            p++;
    }
    int y = number(&p, end, 4, false);
    if (y < 1970)
        return 0;
    *t_r = days_from_civil(y, (unsigned)mon + 1, (unsigned)d) * 86400 + hh * 3600 + mm * 60 + ss;
    return 1;
}

int mbox_from_time(const char *line, size_t len, int64_t *t_r)
{
    if (!mbox_is_from_line(line, len))
        return 0;
    const char *end = line + len;
    /* The sender is one word, but some write a quoted local part with
     * spaces: look for the date at each word from the second on. */
    for (const char *p = line + 5; p < end; p++) {
        if (p[-1] == ' ' && *p != ' ' && parse_ctime(p, end, t_r) == 1)
            return 1;
    }
    return 0;
}

void mbox_ctime(int64_t t, char out[25])
{
    int64_t days_since = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t secs = t - days_since * 86400;
    int64_t y;
    unsigned m, d;
    civil_from_days(days_since, &y, &m, &d);
    int wday = (int)(((days_since % 7) + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
    snprintf(out, 25, "%s %s %2u %02d:%02d:%02d %04d", days[wday], months[m - 1], d,
             (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60), (int)(y % 10000));
}

/* Whether mbox_to_crlf ends the message with CRLF of its own: not empty, no LF at its end. */
static bool needs_final_crlf(const uint8_t *in, size_t len)
{
    return len > 0 && in[len - 1] != '\n';
}

/* How many LFs of in have no CR before them: each gets one. */
static size_t bare_lfs(const uint8_t *in, size_t len)
{
    size_t n = 0;
    for (const uint8_t *p = in, *end = in + len; (p = memchr(p, '\n', (size_t)(end - p))) != NULL;
         p++)
        if (p == in || p[-1] != '\r')
            n++;
    return n;
}

size_t mbox_crlf_len(const uint8_t *in, size_t len)
{
    return len + bare_lfs(in, len) + (needs_final_crlf(in, len) ? 2 : 0);
}

size_t mbox_to_crlf(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
            out[o++] = '\r';
        out[o++] = in[i];
    }
    if (needs_final_crlf(in, len)) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    return o;
}

size_t mbox_from_crlf(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
            continue; /* the LF follows */
        out[o++] = in[i];
    }
    return o;
}

bool mbox_crlf_exact(const uint8_t *msg, size_t len)
{
    /* mbox_from_crlf makes every CRLF an LF and keeps the rest; mbox_to_crlf
     * then puts a CR before each LF that has none. That is msg again unless
     * msg has a bare LF (it comes back with a CR), a CR before its CRLF
     * ("\r\r\n": the file's "\r\n" stays as it is, one CR short), or no
     * line end at its end (one is added). */
    for (const uint8_t *p = msg, *end = msg + len; (p = memchr(p, '\n', (size_t)(end - p))) != NULL;
         p++) {
        size_t i = (size_t)(p - msg);
        if (i == 0 || msg[i - 1] != '\r')
            return false;
        if (i >= 2 && msg[i - 2] == '\r')
            return false;
    }
    return len == 0 || msg[len - 1] == '\n';
}

static bool is_field(const uint8_t *p, size_t n, const char *name)
{
    size_t k = strlen(name);
    if (n < k)
        return false;
    for (size_t i = 0; i < k; i++) {
        uint8_t c = p[i];
        if (c >= 'a' && c <= 'z')
            c = (uint8_t)(c - 'a' + 'A');
        if (c != (uint8_t)name[i])
            return false;
    }
    size_t i = k;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    return i < n && p[i] == ':';
}

/* The end of the line that starts at i (past its LF, or len). */
static size_t line_end(const uint8_t *msg, size_t len, size_t i)
{
    const uint8_t *nl = memchr(msg + i, '\n', len - i);
    return nl ? (size_t)(nl - msg) + 1 : len;
}

int mbox_take_xuidl(uint8_t *msg, size_t *len, char *uidl, size_t uidl_size)
{
    size_t n = *len;
    for (size_t i = 0; i < n;) {
        size_t e = line_end(msg, n, i);
        size_t body = e - i;
        if (msg[i] == '\n' || (msg[i] == '\r' && body >= 2 && msg[i + 1] == '\n'))
            return 0; /* the empty line: the header section ended */
        if (!is_field(msg + i, body, "X-UIDL")) {
            i = e;
            continue;
        }
        /* The field and its continuation lines. */
        size_t f_end = e;
        while (f_end < n && (msg[f_end] == ' ' || msg[f_end] == '\t'))
            f_end = line_end(msg, n, f_end);
        size_t o = 0;
        const uint8_t *v = memchr(msg + i, ':', body);
        for (const uint8_t *p = v + 1; p < msg + f_end; p++) {
            if (*p == '\r' || *p == '\n')
                continue;
            if (o == 0 && (*p == ' ' || *p == '\t'))
                continue;
            if (o + 1 < uidl_size)
                uidl[o++] = (char)*p;
        }
        while (o > 0 && (uidl[o - 1] == ' ' || uidl[o - 1] == '\t'))
            o--;
        if (uidl_size > 0)
            uidl[o] = '\0';
        memmove(msg + i, msg + f_end, n - f_end);
        *len = n - (f_end - i);
        return 1;
    }
    return 0;
}

int mbox_maildir_time(const char *name, int64_t *t_r)
{
    int64_t t = 0;
    size_t i = 0;
    for (; name[i] >= '0' && name[i] <= '9' && i < 18; i++)
        t = t * 10 + (name[i] - '0');
    if (i == 0 || (name[i] != '.' && name[i] != '\0'))
        return 0;
    *t_r = t;
    return 1;
}

/* A decimal uint32 at [p, end): 0 and *v_r, -1 when it is not one. */
static int u32(const char *p, const char *end, uint32_t *v_r)
{
    uint64_t v = 0;
    if (p >= end)
        return -1;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return -1;
    }
    *v_r = (uint32_t)v;
    return 0;
}

/* The next space-separated word of [*p, end): its bounds, *p moved past it. */
static bool word(const char **p, const char *end, const char **w, const char **w_end)
{
    while (*p < end && **p == ' ')
        (*p)++;
    if (*p >= end)
        return false;
    *w = *p;
    while (*p < end && **p != ' ')
        (*p)++;
    *w_end = *p;
    return true;
}

int mbox_uidlist_header(const char *line, size_t len, int *version_r, uint32_t *uidvalidity_r)
{
    const char *p = line, *end = line + len, *w, *we;
    while (end > p && (end[-1] == '\r' || end[-1] == '\n'))
        end--;
    if (!word(&p, end, &w, &we) || we - w != 1)
        return -1;
    if (*w == '1') {
        if (!word(&p, end, &w, &we) || u32(w, we, uidvalidity_r) < 0)
            return -1;
        *version_r = 1;
        return 0;
    }
    if (*w != '3')
        return -1;
    while (word(&p, end, &w, &we)) {
        if (*w == 'V' && u32(w + 1, we, uidvalidity_r) == 0) {
            *version_r = 3;
            return 0;
        }
    }
    return -1;
}

int mbox_uidlist_record(const char *line, size_t len, int version, struct mbox_uidlist_rec *rec)
{
    const char *p = line, *end = line + len, *w, *we;
    while (end > p && (end[-1] == '\r' || end[-1] == '\n'))
        end--;
    memset(rec, 0, sizeof(*rec));
    if (!word(&p, end, &w, &we) || u32(w, we, &rec->uid) < 0 || rec->uid == 0)
        return -1;
    const char *name = NULL;
    if (version == 1) {
        if (!word(&p, end, &w, &we))
            return -1;
        name = w;
    } else {
        while (word(&p, end, &w, &we)) {
            if (*w == ':') {
                name = w + 1;
                break;
            }
            if (*w == 'P' && we - w > 1) {
                rec->pop3_uidl = w + 1;
                rec->pop3_uidl_len = (size_t)(we - w - 1);
            }
        }
        if (name == NULL)
            return -1;
    }
    const char *colon = memchr(name, ':', (size_t)(end - name));
    rec->name = name;
    rec->name_len = (size_t)((colon ? colon : end) - name);
    return rec->name_len > 0 ? 0 : -1;
}

void mbox_dovecot_uidl(uint32_t uid, uint32_t uidvalidity, char out[17])
{
    /* Dovecot's %X modifier writes lower-case hex, as its pop3 serves it. */
    snprintf(out, 17, "%08x%08x", (unsigned)uid, (unsigned)uidvalidity);
}
