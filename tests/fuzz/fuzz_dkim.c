/*
 * fuzz_dkim.c — DKIM verification (mailauth/dkim.c) of a hostile message,
 * fed whole and in pieces, with its keys answered from a fixed set of
 * records; the tag-list parser and the body canonicalizers on the raw bytes.
 *
 * Input: byte 0 seeds the piece sizes; byte 1 picks the answer to every key
 * question (a real 1024-bit key, the seeds' signer; a revoked one; a
 * malformed one; NXDOMAIN; SERVFAIL); the rest is the message. Properties:
 *   - the verdicts (count, status, d=, s=, a=, reason) are the same whether
 *     the message came whole or in pieces, before and after the keys;
 *   - at most DKIM_SIGS_MAX verdicts, every string in them terminated;
 *   - dkim_verify_header is the message's first octets, at most
 *     DKIM_HEADER_MAX of them;
 *   - a tag list parsed from the bytes points only inside them;
 *   - each body canonicalization gives the same octets whole and in pieces,
 *     never more than the input and a CRLF, and what a plain reading of
 *     RFC 6376 3.4 gives.
 */
#include "dkim.h"
#include "fuzz.h"

/* The public half of the key the seed corpus is signed with (selector "fuzz", d=example.org). */
#define FUZZ_KEY                                                                                   \
    "v=DKIM1; k=rsa; "                                                                             \
    "p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDr6oS1TWEmw5cP6kAZR7F3xHno5/"                         \
    "I7wZC7CTbH0XY1bMIZjnsLOR2OgJVro1c3D43MF74I12lhP9wEGm9zLv3ylw+wBzkzzW4Iv/"                     \
    "suGViMpX5pg9t8Grv7RkETKgC3++keXkhDHL8scxaFZ9fYz+291eiEajB2YUdB8CpKCjRTAwIDAQAB"

static const char *const records[] = {
    FUZZ_KEY,
    "v=DKIM1; k=rsa; p=",
    "v=DKIM1; k=rsa; h=sha1; t=s:y; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQ",
};

struct verdicts {
    size_t n;
    struct dkim_result r[DKIM_SIGS_MAX];
};

static void snapshot(const struct dkim_verify *v, struct verdicts *out)
{
    out->n = dkim_verify_count(v);
    FUZZ_CHECK(out->n <= DKIM_SIGS_MAX, "%zu verdicts", out->n);
    for (size_t i = 0; i < out->n; i++) {
        const struct dkim_result *r = dkim_verify_result(v, i);
        FUZZ_CHECK(r != NULL, "no result %zu", i);
        FUZZ_CHECK(memchr(r->domain, 0, sizeof(r->domain)) &&
                       memchr(r->selector, 0, sizeof(r->selector)) &&
                       memchr(r->algorithm, 0, sizeof(r->algorithm)) &&
                       memchr(r->b_prefix, 0, sizeof(r->b_prefix)) &&
                       memchr(r->why, 0, sizeof(r->why)),
                   "an unterminated string in result %zu", i);
        out->r[i] = *r;
    }
}

static bool same(const struct verdicts *a, const struct verdicts *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const struct dkim_result *x = &a->r[i], *y = &b->r[i];
        if (x->status != y->status || strcmp(x->domain, y->domain) != 0 ||
            strcmp(x->selector, y->selector) != 0 || strcmp(x->algorithm, y->algorithm) != 0 ||
            strcmp(x->why, y->why) != 0 || strcmp(x->b_prefix, y->b_prefix) != 0)
            return false;
    }
    return true;
}

/* Answers every key question of v as pick says. */
static void answer(struct dkim_verify *v, unsigned pick)
{
    for (size_t i = 0; i < dkim_verify_count(v); i++) {
        if (dkim_verify_key_name(v, i, 2000000000) == NULL)
            continue;
        if (pick % 5 < 3) {
            const char *rec = records[pick % 5];
            size_t len = strlen(rec);
            dkim_verify_key_answer(v, i, DNS_OK, &rec, &len, 1);
        } else {
            dkim_verify_key_answer(v, i, pick % 5 == 3 ? DNS_NXDOMAIN : DNS_TEMPFAIL, NULL, NULL,
                                   0);
        }
    }
}

struct sink {
    char *p;
    size_t len, cap;
};

static void collect(void *ctx, const char *p, size_t n)
{
    struct sink *s = ctx;
    FUZZ_CHECK(s->len + n <= s->cap, "the canonical body outgrew its input");
    memcpy(s->p + s->len, p, n);
    s->len += n;
}

/*
 * RFC 6376 3.4.3 and 3.4.4 read plainly, on the whole body at once: lines
 * end at CRLF (a CR or LF alone is content); relaxed makes each run of WSP
 * in a line one SP and drops it at the line's end; both drop the empty
 * lines at the end, and an empty simple body is one CRLF. out has room
 * for len + 2.
 */
static size_t canon_model(const char *p, size_t len, bool relaxed, char *out)
{
    size_t o = 0, kept = 0; /* kept: out up to the last line with content */
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && !(p[e] == '\r' && e + 1 < len && p[e + 1] == '\n'))
            e++;
        size_t start = o;
        bool wsp = false;
        for (size_t k = i; k < e; k++) {
            if (relaxed && (p[k] == ' ' || p[k] == '\t')) {
                wsp = true;
                continue;
            }
            if (wsp)
                out[o++] = ' ';
            wsp = false;
            out[o++] = p[k];
        }
        bool content = o > start;
        out[o++] = '\r';
        out[o++] = '\n';
        if (content)
            kept = o;
        i = e < len ? e + 2 : len;
    }
    if (kept == 0 && !relaxed) {
        out[0] = '\r';
        out[1] = '\n';
        kept = 2;
    }
    return kept;
}

static void canon_check(const char *msg, size_t len, bool relaxed, uint8_t seed)
{
    struct sink whole = {malloc(len + 2), 0, len + 2}, parts = {malloc(len + 2), 0, len + 2};
    struct dkim_body_canon c;
    dkim_body_canon_init(&c, relaxed);
    dkim_body_canon_feed(&c, msg, len, collect, &whole);
    dkim_body_canon_finish(&c, collect, &whole);
    struct fuzz_rng rd;
    fuzz_rng_init(&rd, seed);
    dkim_body_canon_init(&c, relaxed);
    for (size_t at = 0; at < len;) {
        size_t k = fuzz_piece(&rd, len - at);
        dkim_body_canon_feed(&c, msg + at, k, collect, &parts);
        at += k;
    }
    dkim_body_canon_finish(&c, collect, &parts);
    FUZZ_CHECK(whole.len == parts.len && memcmp(whole.p, parts.p, whole.len) == 0,
               "%s body: pieces give other octets", relaxed ? "relaxed" : "simple");
    char *model = malloc(len + 2);
    size_t model_len = canon_model(msg, len, relaxed, model);
    FUZZ_CHECK(whole.len == model_len && memcmp(whole.p, model, model_len) == 0,
               "%s body: not what RFC 6376 3.4 gives", relaxed ? "relaxed" : "simple");
    free(model);
    free(whole.p);
    free(parts.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *msg = (const char *)data + 2;
    size_t len = size - 2;

    struct dkim_verify *v = dkim_verify_new();
    dkim_verify_feed(v, msg, len);
    dkim_verify_finish(v);
    struct verdicts a, b;
    snapshot(v, &a);
    size_t hl = 0;
    const char *h = dkim_verify_header(v, &hl);
    FUZZ_CHECK(h == NULL || (hl <= DKIM_HEADER_MAX && hl <= len && memcmp(h, msg, hl) == 0),
               "the header section is not the message's start");

    struct dkim_verify *w = dkim_verify_new();
    struct fuzz_rng rd;
    fuzz_rng_init(&rd, data[0]);
    for (size_t at = 0; at < len;) {
        size_t k = fuzz_rng_below(&rd, 8) == 0 ? 0 : fuzz_piece(&rd, len - at);
        dkim_verify_feed(w, msg + at, k);
        at += k;
    }
    dkim_verify_finish(w);
    snapshot(w, &b);
    FUZZ_CHECK(same(&a, &b), "pieces gave other verdicts before the keys");
    answer(v, data[1]);
    answer(w, data[1]);
    snapshot(v, &a);
    snapshot(w, &b);
    FUZZ_CHECK(same(&a, &b), "pieces gave other verdicts after the keys");
    dkim_verify_free(&v);
    dkim_verify_free(&w);
    FUZZ_CHECK(v == NULL && w == NULL, "dkim_verify_free left a pointer");

    struct dkim_tag tags[DKIM_TAGS_MAX];
    size_t n = 0;
    if (dkim_tags_parse(msg, len, tags, DKIM_TAGS_MAX, &n) == 0)
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(tags[i].name >= msg && tags[i].value >= msg &&
                           tags[i].name + tags[i].name_len <= msg + len &&
                           tags[i].value + tags[i].value_len <= msg + len && tags[i].name_len > 0,
                       "tag %zu points outside the list", i);
    canon_check(msg, len, true, data[0]);
    canon_check(msg, len, false, data[0]);
    return 0;
}
