/*
 * dkim.c — DomainKeys Identified Mail (RFC 6376) on mbedTLS: kotak signs
 * what its users send (relaxed/relaxed, rsa-sha256, the listed fields each
 * signed once more than they occur, so that nobody can add one) and
 * verifies what its MX takes.
 *
 * A message is read the same way for both: fed in pieces split anywhere,
 * its header section kept (at most DKIM_HEADER_MAX octets), its body never
 * kept but canonicalized as it passes (simple, relaxed, or both) and
 * hashed for each signature, up to its l=. Memory per message is therefore
 * the header section plus a few fixed-size hash states, whatever the body.
 *
 * Verdicts follow RFC 6376 6.1 in the words of RFC 8601 2.7.1: a signature
 * that breaks the grammar, misses a required tag, names an algorithm we do
 * not take (rsa-sha1 is refused as insecure, RFC 8301 3.1) or a key that
 * is missing, revoked, malformed or shorter than 1024 bits (RFC 8301 3.2)
 * is a permerror; a key look-up that fails for a while is a temperror; a
 * body or a header hash that does not match is a fail. Everything up to
 * the key is pure; dkim_verify_keys (DNS) and dkim_key_read (the data
 * folder) at the end of this file are the only glue, and the keys kept
 * once used (dkim_key_cache.c) the only state shared between messages.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>

#include "dkim.h"
#include "dkim_key_cache.h"
#include "sasl.h"
#include "util.h"

#define DKIM_B_MAX 1024        /* a signature of an 8192-bit key */
#define DKIM_KEY_DER_MAX 1200  /* the public key of an 8192-bit key, with room */
#define DKIM_KEY_BITS_MIN 1024 /* RFC 8301 3.2 */
/* What a hostile key can ask of the loop, where keys are checked: RFC 8301
 * 3.1 asks verifiers for 1024 to 4096 bits, and 65537 is the exponent. */
#define DKIM_KEY_BITS_MAX 4096
#define DKIM_E_BITS_MAX 17
/* Octets of field names one signature's h= may compare (each name's length
 * times the fields and the names before it): far above any real message,
 * far below what makes a message a CPU sink. Counted in octets, as a long
 * name repeated costs its length at every comparison. */
#define DKIM_FIELD_WORK_MAX (1u << 21)
#define DKIM_H_MAX 256         /* names in one h= */
#define DKIM_FUTURE_SLACK 300  /* t= this far ahead of our clock is a clock's error */
#define DKIM_KEY_FILE_MAX (16u << 10)
#define DKIM_FOLD 78 /* RFC 5322 2.1.1's line length, for what we write */

/* The fields kotak signs, each once more than it occurs (the brief of issue 13). */
static const char *const sign_fields[] = {
    "From",       "To",          "Cc",         "Reply-To",     "Subject",      "Date",
    "Message-ID", "In-Reply-To", "References", "Content-Type", "MIME-Version",
};

const char *dkim_status_name(enum dkim_status s)
{
    switch (s) {
    case DKIM_NONE:
        return "none";
    case DKIM_PASS:
        return "pass";
    case DKIM_FAIL:
        return "fail";
    case DKIM_NEUTRAL:
        return "neutral";
    case DKIM_POLICY:
        return "policy";
    case DKIM_TEMPERROR:
        return "temperror";
    case DKIM_PERMERROR:
        return "permerror";
    }
    return "permerror";
}

/* --- characters and spans ----------------------------------------------- */

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* Whitespace inside a tag list: folding (CRLF then WSP) included. */
static bool is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char to_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static bool span_eq_ci(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++)
        if (to_lower(a[i]) != to_lower(b[i]))
            return false;
    return true;
}

static bool span_is(const char *a, size_t an, const char *lit)
{
    return an == strlen(lit) && memcmp(a, lit, an) == 0;
}

/*
 * Whether the colon-separated list l[0..n) (whitespace around items
 * allowed) holds item, compared as case says.
 */
static bool list_has(const char *l, size_t n, const char *item, bool ci)
{
    size_t i = 0;
    while (i <= n) {
        size_t start = i;
        while (i < n && l[i] != ':')
            i++;
        size_t a = start, b = i;
        while (a < b && is_fws(l[a]))
            a++;
        while (b > a && is_fws(l[b - 1]))
            b--;
        if (ci ? span_eq_ci(l + a, b - a, item, strlen(item)) : span_is(l + a, b - a, item))
            return true;
        i++;
    }
    return false;
}

/* A decimal number of at most digits digits, whole span; false otherwise. */
static bool parse_uint(const char *p, size_t n, size_t digits, uint64_t *v_r)
{
    if (n == 0 || n > digits)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(p[i]) || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *v_r = v;
    return true;
}

/*
 * Decodes base64 p[0..n), whitespace anywhere ignored (RFC 6376 2.4 lets
 * it be folded), into out[0..size). Returns the length, or -1 when it is
 * no base64 or does not fit. Lenient where RFC 4648 lets a decoder be:
 * the padding may be left out, and the bits of the last character that
 * carry no data need not be zero (3.5), as some signers leave them. The
 * values are public: a plain table decoder (mbedTLS's constant-time one
 * costs several times more per message).
 */
static int base64_decode_fws(const char *p, size_t n, unsigned char *out, size_t size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *plain = xmalloc(n + 1);
    size_t k = 0, pad = 0;
    for (size_t i = 0; i < n; i++)
        if (!is_fws(p[i]))
            plain[k++] = p[i];
    while (pad < k && plain[k - 1 - pad] == '=')
        pad++;
    size_t rem = (k - pad) % 4;
    if (rem >= 2) { /* the last character's unused bits made zero */
        const char *c = memchr(alphabet, plain[k - pad - 1], 64);
        if (c != NULL)
            plain[k - pad - 1] = alphabet[(c - alphabet) & (rem == 2 ? 0x30 : 0x3c)];
    }
    ssize_t len = k == 0 ? -1 : sasl_b64_decode(plain, k, out, size);
    free(plain);
    return len < 0 || len > INT_MAX ? -1 : (int)len;
}

/* Base64 of p[0..n), a new string. */
static char *base64_encode(const unsigned char *p, size_t n)
{
    size_t size = 4 * ((n + 2) / 3) + 1, len = 0;
    char *out = xmalloc(size);
    if (mbedtls_base64_encode((unsigned char *)out, size, &len, p, n) != 0)
        abort(); /* size is exact */
    out[len] = '\0';
    return out;
}

/* --- tag lists (RFC 6376 3.2) --------------------------------------------- */

int dkim_tags_parse(const char *p, size_t n, struct dkim_tag *tags, size_t max, size_t *count_r)
{
    size_t count = 0, i = 0;
    for (;;) {
        while (i < n && is_fws(p[i]))
            i++;
        if (i == n)
            break; /* the end, perhaps after a last ';' */
        size_t name = i;
        if (!is_alpha(p[i]))
            return -EINVAL;
        while (i < n && (is_alpha(p[i]) || is_digit(p[i]) || p[i] == '_'))
            i++;
        size_t name_len = i - name;
        while (i < n && is_fws(p[i]))
            i++;
        if (i == n || p[i] != '=')
            return -EINVAL;
        i++;
        while (i < n && is_fws(p[i]))
            i++;
        size_t value = i, value_end = i;
        for (; i < n && p[i] != ';'; i++) {
            unsigned char c = (unsigned char)p[i];
            if (is_fws(p[i]))
                continue;
            if (c < 0x21 || c > 0x7e)
                return -EINVAL;
            value_end = i + 1;
        }
        for (size_t k = 0; k < count; k++)
            if (tags[k].name_len == name_len && memcmp(tags[k].name, p + name, name_len) == 0)
                return -EINVAL; /* RFC 6376 3.2: a tag twice is an error */
        if (count == max)
            return -E2BIG;
        tags[count++] = (struct dkim_tag){.name = p + name,
                                          .name_len = name_len,
                                          .value = p + value,
                                          .value_len = value_end - value};
        if (i == n)
            break;
        i++; /* ';' */
    }
    *count_r = count;
    return 0;
}

static const struct dkim_tag *tag_find(const struct dkim_tag *tags, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (span_is(tags[i].name, tags[i].name_len, name))
            return &tags[i];
    return NULL;
}

/* --- canonicalization (RFC 6376 3.4) ------------------------------------ */

size_t dkim_header_canon(bool relaxed, const char *f, size_t n, char *out)
{
    if (n >= 2 && f[n - 2] == '\r' && f[n - 1] == '\n')
        n -= 2;
    if (!relaxed) {
        memcpy(out, f, n);
        memcpy(out + n, "\r\n", 2);
        return n + 2;
    }
    const char *colon = memchr(f, ':', n);
    size_t name_end = colon ? (size_t)(colon - f) : n, o = 0;
    size_t name_len = name_end;
    while (name_len > 0 && is_fws(f[name_len - 1]))
        name_len--;
    for (size_t i = 0; i < name_len; i++)
        out[o++] = to_lower(f[i]);
    if (colon != NULL) {
        out[o++] = ':';
        bool wsp = false, started = false;
        for (size_t i = name_end + 1; i < n; i++) {
            char c = f[i];
            if (c == '\r' && i + 1 < n && f[i + 1] == '\n') {
                i++; /* unfolding: the WSP after it is what remains */
                continue;
            }
            if (is_wsp(c)) {
                wsp = true;
                continue;
            }
            if (wsp && started)
                out[o++] = ' ';
            wsp = false;
            started = true;
            out[o++] = c;
        }
    }
    out[o++] = '\r';
    out[o++] = '\n';
    return o;
}

void dkim_body_canon_init(struct dkim_body_canon *c, bool relaxed)
{
    memset(c, 0, sizeof(*c));
    c->relaxed = relaxed;
}

static void canon_put(struct dkim_body_canon *c, char ch,
                      void (*out)(void *ctx, const char *p, size_t n), void *ctx)
{
    if (c->len == sizeof(c->buf)) {
        out(ctx, c->buf, c->len);
        c->len = 0;
    }
    c->buf[c->len++] = ch;
}

/* Content is coming: the empty lines held back were inside the body after all. */
static void canon_content(struct dkim_body_canon *c, char ch,
                          void (*out)(void *ctx, const char *p, size_t n), void *ctx)
{
    for (; c->empty > 0; c->empty--) {
        canon_put(c, '\r', out, ctx);
        canon_put(c, '\n', out, ctx);
    }
    if (c->wsp) /* relaxed: a run of WSP within a line, leading ones too, is one SP */
        canon_put(c, ' ', out, ctx);
    c->wsp = false;
    canon_put(c, ch, out, ctx);
    c->line = true;
    c->any = true;
}

static void canon_line_end(struct dkim_body_canon *c,
                           void (*out)(void *ctx, const char *p, size_t n), void *ctx)
{
    c->wsp = false; /* relaxed: whitespace at the end of a line goes */
    if (c->line) {
        canon_put(c, '\r', out, ctx);
        canon_put(c, '\n', out, ctx);
    } else {
        c->empty++;
    }
    c->line = false;
}

/* Content with nothing held back before it: copied as it is. */
static void canon_run(struct dkim_body_canon *c, const char *p, size_t n,
                      void (*out)(void *ctx, const char *p, size_t n), void *ctx)
{
    while (n > 0) {
        if (c->len == sizeof(c->buf)) {
            out(ctx, c->buf, c->len);
            c->len = 0;
        }
        size_t k = sizeof(c->buf) - c->len < n ? sizeof(c->buf) - c->len : n;
        memcpy(c->buf + c->len, p, k);
        c->len += k;
        p += k;
        n -= k;
    }
    c->line = true;
    c->any = true;
}

/*
 * How many octets from p[i] on canonicalization writes as they are: no CR
 * (a line may end there) and, relaxed, no WSP but a lone SP between two
 * octets of content (it stays one SP).
 */
static size_t canon_plain_run(const struct dkim_body_canon *c, const char *p, size_t i, size_t n)
{
    size_t j = i;
    while (j < n && p[j] != '\r') {
        if (c->relaxed && is_wsp(p[j]) &&
            !(p[j] == ' ' && j > i && j + 1 < n && !is_wsp(p[j + 1]) && p[j + 1] != '\r'))
            break;
        j++;
    }
    return j - i;
}

void dkim_body_canon_feed(struct dkim_body_canon *c, const char *p, size_t n,
                          void (*out)(void *ctx, const char *p, size_t n), void *ctx)
{
    size_t i = 0;
    while (i < n) {
        char ch = p[i];
        size_t run = !c->cr && !c->wsp && c->empty == 0 ? canon_plain_run(c, p, i, n) : 0;
        if (run > 0) { /* most of a body: a run of content, taken at once */
            canon_run(c, p + i, run, out, ctx);
            i += run;
            continue;
        }
        i++;
        if (c->cr) {
            c->cr = false;
            if (ch == '\n') {
                canon_line_end(c, out, ctx);
                continue;
            }
            canon_content(c, '\r', out, ctx); /* a CR alone is content */
        }
        if (ch == '\r')
            c->cr = true;
        else if (c->relaxed && is_wsp(ch))
            c->wsp = true;
        else
            canon_content(c, ch, out, ctx);
    }
    if (c->len > 0)
        out(ctx, c->buf, c->len);
    c->len = 0;
}

void dkim_body_canon_finish(struct dkim_body_canon *c,
                            void (*out)(void *ctx, const char *p, size_t n), void *ctx)
{
    if (c->cr) {
        c->cr = false;
        canon_content(c, '\r', out, ctx);
    }
    /* A last line without its CRLF gets one; trailing empty lines go. */
    if (c->line) {
        canon_put(c, '\r', out, ctx);
        canon_put(c, '\n', out, ctx);
    }
    /* simple: an empty body is one CRLF (3.4.3); relaxed: nothing (3.4.4). */
    if (!c->any && !c->relaxed) {
        canon_put(c, '\r', out, ctx);
        canon_put(c, '\n', out, ctx);
    }
    if (c->len > 0)
        out(ctx, c->buf, c->len);
    c->len = 0;
    c->empty = 0;
    c->line = false;
}

/* --- reading a message ---------------------------------------------------- */

_Static_assert(DKIM_HEADER_MAX < UINT32_MAX / 2, "a kept header section's offsets fit 32 bits");

/* One header field in the kept section. */
struct dkim_field {
    uint32_t off, len; /* its octets, the final CRLF (when there) included */
    uint32_t name_len; /* its name, without the whitespace before the colon; 0: no name */
};

/* A body hash: what one signature hashes of one canonical body. */
struct dkim_body_hash {
    bool on, relaxed;
    uint64_t limit; /* l=, or UINT64_MAX */
    uint64_t count; /* canonical octets seen, hashed or not */
    mbedtls_sha256_context sha;
};

/* What signer and verifier share: the header section kept, the body hashed. */
struct dkim_reader {
    char *head;
    size_t head_len, head_cap;
    bool head_over; /* longer than DKIM_HEADER_MAX: not kept */
    bool head_done;
    size_t line_len; /* octets of the current header line so far */
    bool cr;
    struct dkim_field *fields;
    size_t n_fields;
    struct dkim_body_canon canon[2]; /* [0] simple, [1] relaxed */
    bool canon_on[2];
    struct dkim_body_hash *hashes;
    size_t n_hashes;
};

struct canon_sink {
    struct dkim_reader *r;
    bool relaxed;
};

static void body_hash_out(void *ctx, const char *p, size_t n)
{
    struct canon_sink *s = ctx;
    for (size_t i = 0; i < s->r->n_hashes; i++) {
        struct dkim_body_hash *h = &s->r->hashes[i];
        if (!h->on || h->relaxed != s->relaxed)
            continue;
        uint64_t room = h->count < h->limit ? h->limit - h->count : 0;
        size_t take = room < n ? (size_t)room : n;
        if (take > 0)
            mbedtls_sha256_update_ret(&h->sha, (const unsigned char *)p, take);
        h->count += n;
    }
}

static void reader_body(struct dkim_reader *r, const char *p, size_t n)
{
    for (int k = 0; k < 2; k++) {
        struct canon_sink sink = {r, k == 1};
        if (r->canon_on[k])
            dkim_body_canon_feed(&r->canon[k], p, n, body_hash_out, &sink);
    }
}

/* Splits the kept section into fields: a field goes on over lines that begin with WSP. */
static void reader_index(struct dkim_reader *r)
{
    size_t cap = 16, i = 0;
    r->fields = xmalloc(cap * sizeof(*r->fields));
    while (i < r->head_len) {
        size_t start = i;
        do {
            const char *lf = memchr(r->head + i, '\n', r->head_len - i);
            i = lf ? (size_t)(lf - r->head) + 1 : r->head_len;
        } while (i < r->head_len && is_wsp(r->head[i]));
        if (r->n_fields == cap) {
            cap *= 2;
            r->fields = xrealloc(r->fields, cap * sizeof(*r->fields));
        }
        struct dkim_field *f = &r->fields[r->n_fields++];
        f->off = (uint32_t)start;
        f->len = (uint32_t)(i - start);
        f->name_len = 0;
        const char *colon = memchr(r->head + start, ':', f->len);
        const char *lf = memchr(r->head + start, '\n', f->len);
        if (colon != NULL && (lf == NULL || colon < lf) && !is_wsp(r->head[start])) {
            size_t nl = (size_t)(colon - (r->head + start));
            while (nl > 0 && is_wsp(r->head[start + nl - 1]))
                nl--;
            f->name_len = (uint32_t)nl;
        }
    }
}

static void reader_keep(struct dkim_reader *r, const char *p, size_t n)
{
    if (r->head_over || n == 0)
        return;
    if (r->head_len + n > DKIM_HEADER_MAX + 2) { /* + the empty line */
        r->head_over = true;
        free(r->head);
        r->head = NULL;
        r->head_len = r->head_cap = 0;
        return;
    }
    if (r->head_len + n > r->head_cap) {
        size_t cap = r->head_cap ? r->head_cap : 4096;
        while (cap < r->head_len + n)
            cap *= 2;
        r->head = xrealloc(r->head, cap);
        r->head_cap = cap;
    }
    memcpy(r->head + r->head_len, p, n);
    r->head_len += n;
}

/* Called once, when the header section is complete and indexed. */
typedef void reader_done_fn(struct dkim_reader *r);

static void reader_header_end(struct dkim_reader *r, reader_done_fn *done)
{
    r->head_done = true;
    if (!r->head_over && r->head_len > DKIM_HEADER_MAX) {
        r->head_over = true;
        free(r->head);
        r->head = NULL;
        r->head_len = 0;
    }
    if (!r->head_over)
        reader_index(r);
    done(r);
}

static void reader_feed(struct dkim_reader *r, const char *p, size_t n, reader_done_fn *done)
{
    size_t i = 0;
    if (!r->head_done) {
        bool end = false;
        while (i < n && !end) {
            char c = p[i++];
            if (c == '\n' && r->cr) {
                end = r->line_len == 1; /* the line was CR LF alone */
                r->line_len = 0;
                r->cr = false;
                continue;
            }
            r->cr = c == '\r';
            r->line_len++;
        }
        reader_keep(r, p, i);
        if (!end)
            return;
        if (!r->head_over)
            r->head_len -= 2; /* the empty line belongs to neither part */
        reader_header_end(r, done);
    }
    if (i < n)
        reader_body(r, p + i, n - i);
}

static void reader_finish(struct dkim_reader *r, reader_done_fn *done)
{
    if (!r->head_done) /* no empty line: all header, no body */
        reader_header_end(r, done);
    for (int k = 0; k < 2; k++) {
        struct canon_sink sink = {r, k == 1};
        if (r->canon_on[k])
            dkim_body_canon_finish(&r->canon[k], body_hash_out, &sink);
    }
}

static void reader_free(struct dkim_reader *r)
{
    free(r->head);
    free(r->fields);
    for (size_t i = 0; i < r->n_hashes; i++)
        mbedtls_sha256_free(&r->hashes[i].sha);
}

static void body_hash_start(struct dkim_reader *r, struct dkim_body_hash *h, bool relaxed,
                            uint64_t limit)
{
    h->on = true;
    h->relaxed = relaxed;
    h->limit = limit;
    h->count = 0;
    mbedtls_sha256_starts_ret(&h->sha, 0);
    if (!r->canon_on[relaxed]) {
        r->canon_on[relaxed] = true;
        dkim_body_canon_init(&r->canon[relaxed], relaxed);
    }
}

/*
 * Hashes the fields h[0..n) names (a colon-separated list), canonicalized,
 * each name taking the lowest field of that name not yet taken (RFC 6376
 * 5.4.2), a name with none left adding nothing. Returns 0, or -EINVAL for
 * an empty name or a list longer than DKIM_H_MAX.
 */
static int hash_fields(const struct dkim_reader *r, const char *h, size_t n, bool relaxed,
                       mbedtls_sha256_context *sha)
{
    const char *names[DKIM_H_MAX];
    size_t lens[DKIM_H_MAX], count = 0, i = 0;
    while (i <= n) {
        size_t start = i;
        while (i < n && h[i] != ':')
            i++;
        size_t a = start, b = i;
        while (a < b && is_fws(h[a]))
            a++;
        while (b > a && is_fws(h[b - 1]))
            b--;
        if (a == b || count == DKIM_H_MAX)
            return -EINVAL;
        for (size_t k = a; k < b; k++)
            if ((unsigned char)h[k] < 0x21 || (unsigned char)h[k] > 0x7e)
                return -EINVAL;
        names[count] = h + a;
        lens[count++] = b - a;
        i++;
    }
    uint64_t work = 0;
    for (size_t j = 0; j < count; j++)
        work += (uint64_t)lens[j] * (r->n_fields + j);
    if (work > DKIM_FIELD_WORK_MAX)
        return -E2BIG;
    char *buf = NULL;
    size_t buf_size = 0;
    for (size_t j = 0; j < count; j++) {
        size_t taken = 0;
        for (size_t k = 0; k < j; k++)
            taken += span_eq_ci(names[k], lens[k], names[j], lens[j]);
        const struct dkim_field *f = NULL;
        for (size_t k = r->n_fields; k-- > 0;) {
            const struct dkim_field *c = &r->fields[k];
            if (span_eq_ci(r->head + c->off, c->name_len, names[j], lens[j]) && taken-- == 0) {
                f = c;
                break;
            }
        }
        if (f == NULL)
            continue;
        if (buf_size < f->len + 2) {
            buf_size = f->len + 2;
            buf = xrealloc(buf, buf_size);
        }
        size_t len = dkim_header_canon(relaxed, r->head + f->off, f->len, buf);
        mbedtls_sha256_update_ret(sha, (unsigned char *)buf, len);
    }
    free(buf);
    return 0;
}

/* Hashes the signature's own field f[0..n) (b= emptied by the caller), without its CRLF. */
static void hash_own_field(const char *f, size_t n, bool relaxed, mbedtls_sha256_context *sha)
{
    char *buf = xmalloc(n + 2);
    size_t len = dkim_header_canon(relaxed, f, n, buf);
    mbedtls_sha256_update_ret(sha, (unsigned char *)buf, len - 2);
    free(buf);
}

/* --- keys ----------------------------------------------------------------- */

static int getrandom_entropy(void *ctx, unsigned char *out, size_t n)
{
    (void)ctx;
    while (n > 0) {
        ssize_t got = getrandom(out, n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
        out += got;
        n -= (size_t)got;
    }
    return 0;
}

static int drbg_start(mbedtls_ctr_drbg_context *drbg)
{
    static const unsigned char pers[] = "kotak dkim";
    mbedtls_ctr_drbg_init(drbg);
    return mbedtls_ctr_drbg_seed(drbg, getrandom_entropy, NULL, pers, sizeof(pers) - 1);
}

static void say(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
}

int dkim_keygen(unsigned bits, char **pem_r, size_t *len_r, char *err, size_t err_size)
{
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    int rc = drbg_start(&drbg);
    if (rc == 0)
        rc = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA));
    if (rc == 0)
        rc = mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), mbedtls_ctr_drbg_random, &drbg, bits, 65537);
    size_t size = 16000;
    unsigned char *pem = xmalloc(size);
    if (rc == 0)
        rc = mbedtls_pk_write_key_pem(&pk, pem, size);
    mbedtls_pk_free(&pk);
    mbedtls_ctr_drbg_free(&drbg);
    if (rc != 0) {
        explicit_bzero(pem, size);
        free(pem);
        say(err, err_size, "cannot make an RSA key: mbedTLS error -0x%04x", (unsigned)-rc);
        return -EIO;
    }
    *pem_r = (char *)pem;
    *len_r = strlen((char *)pem);
    return 0;
}

int dkim_key_record(const unsigned char *pem, size_t len, char **record_r, char *err,
                    size_t err_size)
{
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    /* PEM must end in a NUL, which mbedTLS counts in the length. */
    unsigned char *copy = xmalloc(len + 1);
    memcpy(copy, pem, len);
    copy[len] = '\0';
    int rc = mbedtls_pk_parse_key(&pk, copy, len + 1, NULL, 0);
    explicit_bzero(copy, len + 1);
    free(copy);
    if (rc != 0 || mbedtls_pk_get_type(&pk) != MBEDTLS_PK_RSA) {
        mbedtls_pk_free(&pk);
        say(err, err_size, "the key is no RSA private key in PEM");
        return -EINVAL;
    }
    unsigned char der[DKIM_KEY_DER_MAX * 2];
    int n = mbedtls_pk_write_pubkey_der(&pk, der, sizeof(der));
    mbedtls_pk_free(&pk);
    if (n <= 0) {
        say(err, err_size, "cannot write the public key (is it larger than 8192 bits?)");
        return -EINVAL;
    }
    char *b64 = base64_encode(der + sizeof(der) - n, (size_t)n);
    size_t size = strlen(b64) + 32;
    *record_r = xmalloc(size);
    snprintf(*record_r, size, "v=DKIM1; k=rsa; p=%s", b64);
    free(b64);
    return 0;
}

bool dkim_selector_valid(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!(is_alpha(c) || is_digit(c) || (c == '-' && label > 0)))
            return false;
        label++;
    }
    return true;
}

/* --- verifying ------------------------------------------------------------- */

struct dkim_sig {
    struct dkim_result r;
    bool decided; /* the verdict is in r */
    bool head_relaxed;
    char auid_domain[DNS_NAME_MAX + 1]; /* i='s domain: d= or below it */
    bool has_t, has_x;
    uint64_t t, x;
    unsigned char bh[32];
    unsigned char b[DKIM_B_MAX];
    size_t b_len;
    unsigned char head_hash[32];
    char key_name[DNS_NAME_MAX + 1];
    /* The key chosen from the answer, waiting for key_verify: its DER. */
    bool key_kept, key_testing;
    unsigned char key_der[DKIM_KEY_DER_MAX];
    size_t key_der_len;
};

struct dkim_lookup;

struct dkim_verify {
    struct dkim_reader r;
    struct dkim_sig sigs[DKIM_SIGS_MAX];
    struct dkim_body_hash hashes[DKIM_SIGS_MAX];
    size_t n_sigs;
    bool finished;
    struct dkim_lookup *lookup; /* DNS questions out, or NULL */
};

static void sig_verdict(struct dkim_sig *s, enum dkim_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sig_verdict(struct dkim_sig *s, enum dkim_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->r.why, sizeof(s->r.why), fmt, ap);
    va_end(ap);
    s->r.status = st;
    s->decided = true;
}

/* Copies a domain-ish value, lower case, when it is a domain name; false otherwise. */
static bool copy_domain(const char *p, size_t n, char *out)
{
    if (n == 0 || n > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        out[i] = to_lower(p[i]);
    out[n] = '\0';
    return dns_name_valid(out);
}

/*
 * Copies a value that goes into results, and from there into header fields
 * and logs, when it is one token of visible ASCII (no folding, no space)
 * that fits; else leaves out empty.
 */
static void copy_token(const char *p, size_t n, char *out, size_t size)
{
    out[0] = '\0';
    if (n >= size)
        return;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e || p[i] == ';')
            return;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Whether sub is domain or a name below it. */
static bool domain_within(const char *sub, const char *domain)
{
    size_t a = strlen(sub), b = strlen(domain);
    return a == b ? strcmp(sub, domain) == 0
                  : a > b && sub[a - b - 1] == '.' && strcmp(sub + a - b, domain) == 0;
}

/* The tags of one signature, checked (RFC 6376 3.5, 6.1.1); the hashes start. */
static void sig_parse(struct dkim_verify *v, struct dkim_sig *s, struct dkim_body_hash *h,
                      const struct dkim_field *f)
{
    const char *field = v->r.head + f->off;
    size_t flen = f->len;
    if (flen >= 2 && field[flen - 2] == '\r' && field[flen - 1] == '\n')
        flen -= 2;
    const char *value = (const char *)memchr(field, ':', flen) + 1;
    size_t vlen = flen - (size_t)(value - field);
    struct dkim_tag tags[DKIM_TAGS_MAX];
    size_t n;
    if (dkim_tags_parse(value, vlen, tags, DKIM_TAGS_MAX, &n) < 0) {
        sig_verdict(s, DKIM_PERMERROR, "the signature is no valid tag list");
        return;
    }
    const struct dkim_tag *tv = tag_find(tags, n, "v"), *ta = tag_find(tags, n, "a"),
                          *tb = tag_find(tags, n, "b"), *tbh = tag_find(tags, n, "bh"),
                          *tc = tag_find(tags, n, "c"), *td = tag_find(tags, n, "d"),
                          *th = tag_find(tags, n, "h"), *ti = tag_find(tags, n, "i"),
                          *tl = tag_find(tags, n, "l"), *tq = tag_find(tags, n, "q"),
                          *ts = tag_find(tags, n, "s"), *tt = tag_find(tags, n, "t"),
                          *tx = tag_find(tags, n, "x");
    /* What the result shows, as soon as it is known. */
    if (td != NULL && !copy_domain(td->value, td->value_len, s->r.domain))
        s->r.domain[0] = '\0';
    if (ts != NULL)
        copy_token(ts->value, ts->value_len, s->r.selector, sizeof(s->r.selector));
    if (ta != NULL)
        copy_token(ta->value, ta->value_len, s->r.algorithm, sizeof(s->r.algorithm));
    if (tb != NULL) {
        size_t k = 0;
        for (size_t i = 0; i < tb->value_len && k < 8; i++)
            if (!is_fws(tb->value[i]))
                s->r.b_prefix[k++] = tb->value[i];
        s->r.b_prefix[k] = '\0';
    }

    const char *missing = !tv    ? "v"
                          : !ta  ? "a"
                          : !tb  ? "b"
                          : !tbh ? "bh"
                          : !td  ? "d"
                          : !th  ? "h"
                          : !ts  ? "s"
                                 : NULL;
    if (missing != NULL) {
        sig_verdict(s, DKIM_PERMERROR, "the signature has no %s= tag", missing);
        return;
    }
    if (!span_is(tv->value, tv->value_len, "1")) {
        sig_verdict(s, DKIM_PERMERROR, "v= is not 1");
        return;
    }
    if (span_is(ta->value, ta->value_len, "rsa-sha1")) {
        sig_verdict(s, DKIM_PERMERROR, "rsa-sha1 is insecure (RFC 8301)");
        return;
    }
    if (!span_is(ta->value, ta->value_len, "rsa-sha256")) {
        sig_verdict(s, DKIM_PERMERROR, "the algorithm is not supported");
        return;
    }
    if (s->r.domain[0] == '\0') {
        sig_verdict(s, DKIM_PERMERROR, "d= is no domain name");
        return;
    }
    int name_len =
        snprintf(s->key_name, sizeof(s->key_name), "%s._domainkey.%s", s->r.selector, s->r.domain);
    if (s->r.selector[0] == '\0' || name_len < 0 || (size_t)name_len >= sizeof(s->key_name) ||
        !dns_name_valid(s->key_name)) {
        sig_verdict(s, DKIM_PERMERROR, "s= and d= make no key name");
        return;
    }
    bool body_relaxed = false;
    s->head_relaxed = false;
    if (tc != NULL) {
        const char *slash = memchr(tc->value, '/', tc->value_len);
        size_t hl = slash ? (size_t)(slash - tc->value) : tc->value_len;
        const char *b = slash ? slash + 1 : NULL;
        size_t bl = slash ? tc->value_len - hl - 1 : 0;
        bool ok_h = span_is(tc->value, hl, "relaxed") || span_is(tc->value, hl, "simple");
        bool ok_b = b == NULL || span_is(b, bl, "relaxed") || span_is(b, bl, "simple");
        if (!ok_h || !ok_b) {
            sig_verdict(s, DKIM_PERMERROR, "c= names an unknown canonicalization");
            return;
        }
        s->head_relaxed = span_is(tc->value, hl, "relaxed");
        body_relaxed = b != NULL && span_is(b, bl, "relaxed");
    }
    if (!list_has(th->value, th->value_len, "from", true)) {
        sig_verdict(s, DKIM_PERMERROR, "h= does not sign From (RFC 6376 5.4)");
        return;
    }
    if (tq != NULL && !list_has(tq->value, tq->value_len, "dns/txt", false)) {
        sig_verdict(s, DKIM_PERMERROR, "q= offers no dns/txt");
        return;
    }
    snprintf(s->auid_domain, sizeof(s->auid_domain), "%s", s->r.domain);
    if (ti != NULL) {
        const char *at = memchr(ti->value, '@', ti->value_len);
        size_t off = at ? (size_t)(at - ti->value) + 1 : 0;
        if (at == NULL || !copy_domain(ti->value + off, ti->value_len - off, s->auid_domain) ||
            !domain_within(s->auid_domain, s->r.domain)) {
            sig_verdict(s, DKIM_PERMERROR, "i= is not within d=");
            return;
        }
    }
    uint64_t limit = UINT64_MAX;
    if (tl != NULL && !parse_uint(tl->value, tl->value_len, 76, &limit)) {
        sig_verdict(s, DKIM_PERMERROR, "l= is no number");
        return;
    }
    s->has_t = tt != NULL;
    s->has_x = tx != NULL;
    if ((tt && !parse_uint(tt->value, tt->value_len, 12, &s->t)) ||
        (tx && !parse_uint(tx->value, tx->value_len, 12, &s->x))) {
        sig_verdict(s, DKIM_PERMERROR, "t= or x= is no time");
        return;
    }
    if (s->has_t && s->has_x && s->x < s->t) {
        sig_verdict(s, DKIM_PERMERROR, "x= is before t=");
        return;
    }
    int len = base64_decode_fws(tbh->value, tbh->value_len, s->bh, sizeof(s->bh));
    if (len != 32) {
        sig_verdict(s, DKIM_PERMERROR, "bh= is no SHA-256 hash in base64");
        return;
    }
    len = base64_decode_fws(tb->value, tb->value_len, s->b, sizeof(s->b));
    if (len <= 0) {
        sig_verdict(s, DKIM_PERMERROR, "b= is no signature in base64");
        return;
    }
    s->b_len = (size_t)len;

    /* The header hash: the fields h= names, then this field with b= emptied (3.7). */
    mbedtls_sha256_context sha;
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    int hrc = hash_fields(&v->r, th->value, th->value_len, s->head_relaxed, &sha);
    if (hrc < 0) {
        mbedtls_sha256_free(&sha);
        sig_verdict(s, DKIM_PERMERROR, "%s",
                    hrc == -E2BIG ? "too many fields to hash" : "h= is no list of field names");
        return;
    }
    /* b='s value and the whitespace around it go: from after '=' to ';' or the end. */
    const char *eq = tb->value;
    while (*--eq != '=')
        ;
    const char *end = tb->value + tb->value_len;
    while (end < field + flen && *end != ';')
        end++;
    size_t a = (size_t)(eq + 1 - field), z = (size_t)(end - field);
    char *own = xmalloc(flen - (z - a) + 1);
    memcpy(own, field, a);
    memcpy(own + a, field + z, flen - z);
    hash_own_field(own, flen - (z - a), s->head_relaxed, &sha);
    free(own);
    mbedtls_sha256_finish_ret(&sha, s->head_hash);
    mbedtls_sha256_free(&sha);
    body_hash_start(&v->r, h, body_relaxed, limit);
}

static void verify_header_done(struct dkim_reader *r)
{
    struct dkim_verify *v = (struct dkim_verify *)((char *)r - offsetof(struct dkim_verify, r));
    if (r->head_over) {
        v->n_sigs = 1;
        sig_verdict(&v->sigs[0], DKIM_PERMERROR, "the header section is over %u KiB",
                    DKIM_HEADER_MAX >> 10);
        return;
    }
    r->hashes = v->hashes;
    r->n_hashes = DKIM_SIGS_MAX;
    for (size_t i = 0; i < r->n_fields && v->n_sigs < DKIM_SIGS_MAX; i++) {
        const struct dkim_field *f = &r->fields[i];
        if (span_eq_ci(r->head + f->off, f->name_len, "DKIM-Signature", 14)) {
            size_t k = v->n_sigs++;
            sig_parse(v, &v->sigs[k], &v->hashes[k], f);
        }
    }
}

struct dkim_verify *dkim_verify_new(void)
{
    struct dkim_verify *v = xcalloc(1, sizeof(*v));
    for (size_t i = 0; i < DKIM_SIGS_MAX; i++)
        mbedtls_sha256_init(&v->hashes[i].sha);
    return v;
}

void dkim_verify_feed(struct dkim_verify *v, const char *p, size_t n)
{
    if (v->finished)
        return;
    reader_feed(&v->r, p, n, verify_header_done);
}

void dkim_verify_finish(struct dkim_verify *v)
{
    if (v->finished)
        return;
    reader_finish(&v->r, verify_header_done);
    v->finished = true;
    for (size_t i = 0; i < v->n_sigs; i++) {
        struct dkim_sig *s = &v->sigs[i];
        struct dkim_body_hash *h = &v->hashes[i];
        if (s->decided || !h->on)
            continue;
        unsigned char bh[32];
        mbedtls_sha256_finish_ret(&h->sha, bh);
        if (h->limit != UINT64_MAX && h->limit > h->count)
            sig_verdict(s, DKIM_FAIL, "the body is shorter than l=");
        else if (memcmp(bh, s->bh, sizeof(bh)) != 0)
            sig_verdict(s, DKIM_FAIL, "body hash did not verify");
    }
}

void dkim_verify_drop_header(struct dkim_verify *v)
{
    if (!v->finished)
        return;
    free(v->r.head);
    free(v->r.fields);
    v->r.head = NULL;
    v->r.fields = NULL;
    v->r.n_fields = 0;
    v->r.head_len = v->r.head_cap = 0;
    v->r.head_over = true; /* dkim_verify_header answers NULL from now on */
}

const char *dkim_verify_header(const struct dkim_verify *v, size_t *len_r)
{
    if (!v->finished || v->r.head_over)
        return NULL;
    *len_r = v->r.head_len;
    return v->r.head ? v->r.head : "";
}

size_t dkim_verify_count(const struct dkim_verify *v)
{
    return v->finished ? v->n_sigs : 0;
}

const struct dkim_result *dkim_verify_result(const struct dkim_verify *v, size_t i)
{
    return i < dkim_verify_count(v) ? &v->sigs[i].r : NULL;
}

const char *dkim_verify_key_name(struct dkim_verify *v, size_t i, time_t now)
{
    if (!v->finished || i >= v->n_sigs || v->sigs[i].decided)
        return NULL;
    struct dkim_sig *s = &v->sigs[i];
    uint64_t t = now < 0 ? 0 : (uint64_t)now;
    if (s->has_x && s->x < t) {
        sig_verdict(s, DKIM_PERMERROR, "the signature expired (x=)");
        return NULL;
    }
    if (s->has_t && s->t > t + DKIM_FUTURE_SLACK) {
        sig_verdict(s, DKIM_PERMERROR, "the signature is dated in the future (t=)");
        return NULL;
    }
    return s->key_name;
}

/* The RSA key of a public key's DER, checked, into rsa; NULL, or the reason it is none. */
static const char *key_decode(const unsigned char *der, size_t der_len, mbedtls_rsa_context *rsa)
{
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    const char *why = NULL;
    if (mbedtls_pk_parse_public_key(&pk, der, der_len) != 0 ||
        mbedtls_pk_get_type(&pk) != MBEDTLS_PK_RSA) {
        why = "p= is no RSA public key";
    } else if (mbedtls_pk_get_bitlen(&pk) < DKIM_KEY_BITS_MIN) {
        why = "the key is shorter than 1024 bits (RFC 8301)";
    } else if (mbedtls_pk_get_bitlen(&pk) > DKIM_KEY_BITS_MAX) {
        why = "the key is longer than 4096 bits";
    } else {
        mbedtls_mpi e;
        mbedtls_mpi_init(&e);
        int rc = mbedtls_rsa_export(mbedtls_pk_rsa(pk), NULL, NULL, NULL, NULL, &e);
        size_t e_bits = mbedtls_mpi_bitlen(&e);
        mbedtls_mpi_free(&e);
        if (rc != 0 || e_bits > DKIM_E_BITS_MAX)
            why = "the key's public exponent is too large";
        else if (mbedtls_rsa_copy(rsa, mbedtls_pk_rsa(pk)) != 0)
            why = "out of memory for the key";
    }
    mbedtls_pk_free(&pk);
    return why;
}

/*
 * A key record (RFC 6376 3.6.1) read as far as its tags and its p= in
 * base64, the DER into s (key_der); NULL, or the reason it is no key for s.
 * Cheap: on the loop.
 */
static const char *key_read(struct dkim_sig *s, const char *rec, size_t len)
{
    struct dkim_tag tags[DKIM_TAGS_MAX];
    size_t n;
    if (strlen(rec) != len)
        return "the key record holds a NUL";
    if (dkim_tags_parse(rec, len, tags, DKIM_TAGS_MAX, &n) < 0)
        return "the key record is no valid tag list";
    const struct dkim_tag *tv = tag_find(tags, n, "v"), *th = tag_find(tags, n, "h"),
                          *tk = tag_find(tags, n, "k"), *tp = tag_find(tags, n, "p"),
                          *ts = tag_find(tags, n, "s"), *tt = tag_find(tags, n, "t");
    if (tv != NULL && (tv != &tags[0] || !span_is(tv->value, tv->value_len, "DKIM1")))
        return "the key record's v= is not DKIM1 first";
    if (th != NULL && !list_has(th->value, th->value_len, "sha256", false))
        return "the key does not allow sha256 (h=)";
    if (tk != NULL && !span_is(tk->value, tk->value_len, "rsa"))
        return "the key is not an RSA key (k=)";
    if (ts != NULL && !list_has(ts->value, ts->value_len, "*", false) &&
        !list_has(ts->value, ts->value_len, "email", false))
        return "the key is not for email (s=)";
    if (tt != NULL && list_has(tt->value, tt->value_len, "s", false) &&
        strcmp(s->auid_domain, s->r.domain) != 0)
        return "the key asks i= to be d= exactly (t=s)";
    if (tp == NULL)
        return "the key record has no p=";
    if (tp->value_len == 0)
        return "the key is revoked (empty p=)";
    int der_len = base64_decode_fws(tp->value, tp->value_len, s->key_der, sizeof(s->key_der));
    if (der_len <= 0)
        return "p= is no key in base64 (or too long)";
    s->key_der_len = (size_t)der_len;
    s->key_testing = tt != NULL && list_has(tt->value, tt->value_len, "y", false);
    return NULL;
}

/* A key question's answer other than records: the verdict it gives. False for DNS_OK. */
static bool key_status_verdict(struct dkim_sig *s, enum dns_status status)
{
    switch (status) {
    case DNS_OK:
        return false;
    case DNS_NXDOMAIN:
    case DNS_NODATA:
        sig_verdict(s, DKIM_PERMERROR, "no key for the signature in DNS");
        return true;
    case DNS_TEMPFAIL:
        sig_verdict(s, DKIM_TEMPERROR, "the key look-up failed; try later");
        return true;
    case DNS_CANCELLED:
        sig_verdict(s, DKIM_TEMPERROR, "the key look-up was cancelled");
        return true;
    }
    return false;
}

/*
 * Signature i's answer from DNS, on the loop: a verdict when it gives one
 * already, else the key chosen (RFC 6376 3.6.2.2 leaves several records to
 * the verifier: the first that reads as a key) is kept for key_verify. What
 * is kept is bounded (one DER of at most DKIM_KEY_DER_MAX octets), whatever
 * the answer held.
 */
static void key_keep(struct dkim_verify *v, size_t i, enum dns_status status,
                     const char *const *records, const size_t *lens, size_t n)
{
    if (!v->finished || i >= v->n_sigs || v->sigs[i].decided || v->sigs[i].key_kept)
        return;
    struct dkim_sig *s = &v->sigs[i];
    if (key_status_verdict(s, status))
        return;
    const char *why = "no key for the signature in DNS";
    for (size_t k = 0; k < n; k++) {
        const char *bad = key_read(s, records[k], lens[k]);
        if (bad == NULL) {
            s->key_kept = true;
            sig_verdict(s, DKIM_TEMPERROR, "the key was not checked");
            s->decided = false; /* until key_verify */
            return;
        }
        if (k == 0)
            why = bad;
    }
    sig_verdict(s, DKIM_PERMERROR, "%s", why);
}

/* The kept key against the signature: the RSA work, off the loop. */
static void key_verify(struct dkim_sig *s)
{
    if (!s->key_kept || s->decided)
        return;
    s->key_kept = false;
    mbedtls_rsa_context rsa;
    mbedtls_rsa_init(&rsa, MBEDTLS_RSA_PKCS_V15, 0);
    const char *bad = NULL;
    if (!dkim_key_cache_get(s->key_der, s->key_der_len, &rsa))
        bad = key_decode(s->key_der, s->key_der_len, &rsa);
    if (bad != NULL) {
        mbedtls_rsa_free(&rsa);
        sig_verdict(s, DKIM_PERMERROR, "%s", bad);
        return;
    }
    int rc = MBEDTLS_ERR_RSA_VERIFY_FAILED;
    if (s->b_len == mbedtls_rsa_get_len(&rsa)) {
        rc = mbedtls_rsa_pkcs1_verify(&rsa, NULL, NULL, MBEDTLS_RSA_PUBLIC, MBEDTLS_MD_SHA256,
                                      sizeof(s->head_hash), s->head_hash, s->b);
        dkim_key_cache_put(s->key_der, s->key_der_len, &rsa); /* with what the work computed */
    }
    mbedtls_rsa_free(&rsa);
    if (rc != 0)
        sig_verdict(s, DKIM_FAIL, "signature did not verify");
    else
        sig_verdict(s, DKIM_PASS, "%s", s->key_testing ? "key in testing mode, t=y" : "");
}

void dkim_verify_key_answer(struct dkim_verify *v, size_t i, enum dns_status status,
                            const char *const *records, const size_t *lens, size_t n)
{
    key_keep(v, i, status, records, lens, n);
    if (i < v->n_sigs)
        key_verify(&v->sigs[i]);
}

void dkim_verify_check(struct dkim_verify *v)
{
    for (size_t i = 0; i < v->n_sigs; i++)
        key_verify(&v->sigs[i]);
}

/* --- signing --------------------------------------------------------------- */

struct dkim_sign {
    struct dkim_reader r;
    struct dkim_sign_opts o;
    struct dkim_body_hash hash;
};

static void sign_header_done(struct dkim_reader *r)
{
    struct dkim_sign *s = (struct dkim_sign *)((char *)r - offsetof(struct dkim_sign, r));
    if (r->head_over)
        return;
    r->hashes = &s->hash;
    r->n_hashes = 1;
    body_hash_start(r, &s->hash, !s->o.simple_body, UINT64_MAX);
}

struct dkim_sign *dkim_sign_new_opts(const struct dkim_sign_opts *o)
{
    struct dkim_sign *s = xcalloc(1, sizeof(*s));
    if (o != NULL)
        s->o = *o;
    mbedtls_sha256_init(&s->hash.sha);
    return s;
}

struct dkim_sign *dkim_sign_new(void)
{
    return dkim_sign_new_opts(NULL);
}

void dkim_sign_feed(struct dkim_sign *s, const char *p, size_t n)
{
    reader_feed(&s->r, p, n, sign_header_done);
}

/* A field being written, folded at DKIM_FOLD columns. */
struct fold {
    char *p;
    size_t len, cap, col;
};

static void fold_raw(struct fold *f, const char *s, size_t n)
{
    if (f->len + n + 1 > f->cap) {
        while (f->len + n + 1 > f->cap)
            f->cap = f->cap ? f->cap * 2 : 512;
        f->p = xrealloc(f->p, f->cap);
    }
    memcpy(f->p + f->len, s, n);
    f->len += n;
    f->p[f->len] = '\0';
    for (size_t i = 0; i < n; i++)
        f->col = s[i] == '\n' ? 0 : f->col + 1;
}

/* Adds word, after sep (" " or ""), or on a new line when it would pass the fold. */
static void fold_word(struct fold *f, const char *sep, const char *word)
{
    size_t n = strlen(word);
    if (f->col + strlen(sep) + n > DKIM_FOLD)
        fold_raw(f, "\r\n\t", 3);
    else
        fold_raw(f, sep, strlen(sep));
    fold_raw(f, word, n);
}

/* Adds a base64 value that may break anywhere (RFC 6376 2.4), filling each line. */
static void fold_base64(struct fold *f, const char *b64)
{
    size_t n = strlen(b64);
    while (n > 0) {
        if (f->col >= DKIM_FOLD)
            fold_raw(f, "\r\n\t", 3);
        size_t room = DKIM_FOLD - f->col, take = n < room ? n : room;
        fold_raw(f, b64, take);
        b64 += take;
        n -= take;
    }
}

/* The h= list: the given one, or each field of sign_fields once more than it occurs. */
static char *sign_h(const struct dkim_sign *s)
{
    if (s->o.headers != NULL)
        return xstrdup(s->o.headers);
    size_t cap = 64, len = 0;
    char *h = xmalloc(cap);
    h[0] = '\0';
    for (size_t k = 0; k < sizeof(sign_fields) / sizeof(sign_fields[0]); k++) {
        const char *name = sign_fields[k];
        size_t times = 1;
        for (size_t i = 0; i < s->r.n_fields; i++)
            times += span_eq_ci(s->r.head + s->r.fields[i].off, s->r.fields[i].name_len, name,
                                strlen(name));
        for (size_t t = 0; t < times; t++) {
            size_t need = len + strlen(name) + 2;
            if (need > cap) {
                while (need > cap)
                    cap *= 2;
                h = xrealloc(h, cap);
            }
            len += (size_t)snprintf(h + len, cap - len, "%s%s", len ? ":" : "", name);
        }
    }
    return h;
}

static int sign_fail(char *err, size_t err_size, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int sign_fail(char *err, size_t err_size, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return rc;
}

/* RSA-SHA256 of hash with the PEM key; the base64 signature in *b64_r. */
static int sign_rsa(const unsigned char *key_pem, size_t key_len, const unsigned char hash[32],
                    char **b64_r, char *err, size_t err_size)
{
    mbedtls_pk_context pk;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_init(&pk);
    unsigned char *copy = xmalloc(key_len + 1);
    memcpy(copy, key_pem, key_len);
    copy[key_len] = '\0';
    int rc = mbedtls_pk_parse_key(&pk, copy, key_len + 1, NULL, 0);
    explicit_bzero(copy, key_len + 1);
    free(copy);
    if (rc != 0 || mbedtls_pk_get_type(&pk) != MBEDTLS_PK_RSA ||
        mbedtls_pk_get_bitlen(&pk) < DKIM_KEY_BITS_MIN ||
        mbedtls_pk_get_bitlen(&pk) > DKIM_KEY_BITS_MAX) {
        mbedtls_pk_free(&pk);
        return sign_fail(err, err_size, -EINVAL,
                         "the DKIM key is no RSA private key of 1024 to 8192 bits in PEM");
    }
    unsigned char sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    size_t sig_len = 0;
    rc = drbg_start(&drbg);
    if (rc == 0) /* the random generator blinds the private-key operation */
        rc = mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, hash, 32, sig, &sig_len,
                             mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_pk_free(&pk);
    if (rc != 0)
        return sign_fail(err, err_size, -EIO, "RSA signing failed: mbedTLS error -0x%04x",
                         (unsigned)-rc);
    *b64_r = base64_encode(sig, sig_len);
    return 0;
}

int dkim_sign_finish(struct dkim_sign *s, const char *domain, const char *selector,
                     const unsigned char *key_pem, size_t key_len, time_t now, char **field_r,
                     char *err, size_t err_size)
{
    reader_finish(&s->r, sign_header_done);
    if (s->r.head_over)
        return sign_fail(err, err_size, -EMSGSIZE, "the header section is over %u KiB: not signed",
                         DKIM_HEADER_MAX >> 10);
    if (!dns_name_valid(domain) || !dkim_selector_valid(selector))
        return sign_fail(err, err_size, -EINVAL, "'%s' with selector '%s' cannot sign", domain,
                         selector);
    unsigned char bh[32];
    mbedtls_sha256_finish_ret(&s->hash.sha, bh);
    char *bh64 = base64_encode(bh, sizeof(bh)), *h = sign_h(s);
    char word[DNS_NAME_MAX + 64];

    struct fold f = {0};
    fold_raw(&f, "DKIM-Signature: v=1; a=rsa-sha256;", 34);
    snprintf(word, sizeof(word), "c=%s/%s;", s->o.simple_header ? "simple" : "relaxed",
             s->o.simple_body ? "simple" : "relaxed");
    fold_word(&f, " ", word);
    snprintf(word, sizeof(word), "d=%s;", domain);
    fold_word(&f, " ", word);
    snprintf(word, sizeof(word), "s=%s;", selector);
    fold_word(&f, " ", word);
    snprintf(word, sizeof(word), "t=%" PRId64 ";", (int64_t)now);
    fold_word(&f, " ", word);
    if (s->o.expire != 0) {
        snprintf(word, sizeof(word), "x=%" PRId64 ";", (int64_t)s->o.expire);
        fold_word(&f, " ", word);
    }
    if (s->o.body_length) {
        snprintf(word, sizeof(word), "l=%" PRIu64 ";", s->hash.count);
        fold_word(&f, " ", word);
    }
    fold_word(&f, " ", "bh=");
    fold_base64(&f, bh64);
    fold_raw(&f, ";", 1);
    /* h=: a name per word, a fold allowed before each colon (RFC 6376 3.5). */
    for (size_t i = 0, first = 1; h[i] != '\0'; first = 0) {
        size_t j = i;
        while (h[j] != '\0' && h[j] != ':')
            j++;
        snprintf(word, sizeof(word), "%s%.*s%s", first ? "h=" : ":", (int)(j - i), h + i,
                 h[j] == '\0' ? ";" : "");
        fold_word(&f, first ? " " : "", word);
        i = h[j] == ':' ? j + 1 : j;
    }
    fold_word(&f, " ", "b=");

    mbedtls_sha256_context sha;
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    int rc = hash_fields(&s->r, h, strlen(h), !s->o.simple_header, &sha);
    unsigned char hash[32];
    hash_own_field(f.p, f.len, !s->o.simple_header, &sha);
    mbedtls_sha256_finish_ret(&sha, hash);
    mbedtls_sha256_free(&sha);
    free(bh64);
    free(h);
    char *b64 = NULL;
    if (rc < 0)
        rc = sign_fail(err, err_size, -EINVAL, "h= is no list of field names");
    else
        rc = sign_rsa(key_pem, key_len, hash, &b64, err, err_size);
    if (rc < 0) {
        free(f.p);
        return rc;
    }
    fold_base64(&f, b64);
    fold_raw(&f, "\r\n", 2);
    free(b64);
    *field_r = f.p;
    return 0;
}

void dkim_sign_free(struct dkim_sign **sp)
{
    struct dkim_sign *s = sp ? *sp : NULL;
    if (s == NULL)
        return;
    reader_free(&s->r);
    if (s->r.hashes == NULL)
        mbedtls_sha256_free(&s->hash.sha);
    free(s);
    *sp = NULL;
}

/* --- glue: the keys in DNS --------------------------------------------------- */

/* The questions of one dkim_verify_keys; outlives the verifier when it is freed first. */
struct dkim_lookup {
    struct dkim_verify *v; /* NULL once the verifier is gone */
    size_t out;            /* questions not answered yet */
    void (*cb)(void *ctx);
    void *ctx;
    struct dkim_question {
        struct dkim_lookup *l;
        size_t i;
    } q[DKIM_SIGS_MAX];
};

static void on_key(void *ctx, enum dns_status status, const char *const *records,
                   const size_t *lens, size_t n)
{
    struct dkim_question *q = ctx;
    struct dkim_lookup *l = q->l;
    l->out--;
    if (l->v != NULL)
        key_keep(l->v, q->i, status, records, lens, n);
    if (l->out > 0)
        return;
    struct dkim_verify *v = l->v;
    void (*cb)(void *) = l->cb;
    void *cb_ctx = l->ctx;
    free(l);
    if (v != NULL) {
        v->lookup = NULL;
        cb(cb_ctx); /* last: it may free v */
    }
}

int dkim_verify_keys(struct dkim_verify *v, struct dns *dns, time_t now, void (*cb)(void *ctx),
                     void *ctx)
{
    if (!v->finished || v->lookup != NULL)
        return -EINVAL;
    struct dkim_lookup *l = xcalloc(1, sizeof(*l));
    *l = (struct dkim_lookup){.v = v, .cb = cb, .ctx = ctx};
    bool closing = false;
    for (size_t i = 0; i < v->n_sigs; i++) {
        const char *name = dkim_verify_key_name(v, i, now);
        if (name == NULL)
            continue;
        l->q[i] = (struct dkim_question){.l = l, .i = i};
        int rc = dns_txt(dns, name, on_key, &l->q[i]);
        if (rc == 0) {
            l->out++;
            continue;
        }
        closing |= rc == -ECANCELED;
        sig_verdict(&v->sigs[i], rc == -ECANCELED ? DKIM_TEMPERROR : DKIM_PERMERROR, "%s",
                    rc == -ECANCELED ? "the resolver is closing" : "the key's name is not asked");
    }
    if (l->out == 0) {
        free(l);
        return closing ? -ECANCELED : 1;
    }
    v->lookup = l;
    return 0;
}

void dkim_verify_free(struct dkim_verify **vp)
{
    struct dkim_verify *v = vp ? *vp : NULL;
    if (v == NULL)
        return;
    if (v->lookup != NULL)
        v->lookup->v = NULL; /* its last answer frees it */
    reader_free(&v->r);
    if (v->r.hashes == NULL)
        for (size_t i = 0; i < DKIM_SIGS_MAX; i++)
            mbedtls_sha256_free(&v->hashes[i].sha);
    free(v);
    *vp = NULL;
}

/* --- glue: the keys on disk ---------------------------------------------------- */

/* Reads dir/name, a regular file of at most DKIM_KEY_FILE_MAX octets. 1, 0 absent, -errno. */
static int key_file_read(int dirfd, const char *name, unsigned char **pem_r, size_t *len_r)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > DKIM_KEY_FILE_MAX) {
        int rc = S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
        close(fd);
        return rc;
    }
    unsigned char *buf = xmalloc(DKIM_KEY_FILE_MAX + 1);
    size_t len = 0;
    for (;;) {
        ssize_t got = read(fd, buf + len, DKIM_KEY_FILE_MAX + 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 || len + (size_t)got > DKIM_KEY_FILE_MAX) {
            int rc = got < 0 ? -errno : -EFBIG;
            close(fd);
            explicit_bzero(buf, DKIM_KEY_FILE_MAX + 1);
            free(buf);
            return rc;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    buf[len] = '\0';
    *pem_r = buf;
    *len_r = len;
    return 1;
}

/* The selector of a file name "SELECTOR._domainkey.DOMAIN.pem" of domain, or false. */
static bool key_file_selector(const char *name, const char *domain, char *selector_r)
{
    static const char mid[] = "._domainkey.";
    size_t n = strlen(name), d = strlen(domain), m = sizeof(mid) - 1;
    if (n <= m + d + 4 || strcmp(name + n - 4, ".pem") != 0 ||
        strncasecmp(name + n - 4 - d, domain, d) != 0 || strncmp(name + n - 4 - d - m, mid, m) != 0)
        return false;
    size_t s = n - 4 - d - m;
    if (s > DNS_NAME_MAX)
        return false;
    memcpy(selector_r, name, s);
    selector_r[s] = '\0';
    return dkim_selector_valid(selector_r);
}

int dkim_key_read(const char *dir, const char *domain, const char *selector, char *selector_r,
                  unsigned char **pem_r, size_t *len_r)
{
    char name[2 * DNS_NAME_MAX + 32];
    if (!dns_name_valid(domain) || strchr(domain, '/') != NULL)
        return -EINVAL; /* the name becomes part of a file name */
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    if (selector != NULL && dkim_selector_valid(selector)) {
        snprintf(name, sizeof(name), "%s._domainkey.%s.pem", selector, domain);
        rc = key_file_read(dirfd, name, pem_r, len_r);
        if (rc != 0) {
            if (rc == 1)
                snprintf(selector_r, DNS_NAME_MAX + 1, "%s", selector);
            close(dirfd);
            return rc;
        }
    }
    /* Not there: the newest key of the domain, whatever its selector. */
    int fd2 = dup(dirfd);
    DIR *d = fd2 < 0 ? NULL : fdopendir(fd2);
    if (d == NULL) {
        rc = -errno;
        if (fd2 >= 0)
            close(fd2);
        close(dirfd);
        return rc;
    }
    char best[DNS_NAME_MAX + 1] = "", sel[DNS_NAME_MAX + 1];
    struct timespec best_time = {0};
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        struct stat st;
        if (!key_file_selector(e->d_name, domain, sel) ||
            fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (best[0] == '\0' || st.st_mtim.tv_sec > best_time.tv_sec ||
            (st.st_mtim.tv_sec == best_time.tv_sec && st.st_mtim.tv_nsec > best_time.tv_nsec)) {
            best_time = st.st_mtim;
            memcpy(best, sel, sizeof(best));
        }
    }
    closedir(d);
    if (best[0] != '\0') {
        snprintf(name, sizeof(name), "%s._domainkey.%s.pem", best, domain);
        rc = key_file_read(dirfd, name, pem_r, len_r);
        if (rc == 1)
            memcpy(selector_r, best, sizeof(best));
    }
    close(dirfd);
    return rc;
}
