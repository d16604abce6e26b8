/*
 * test_dkim.c — DKIM (RFC 6376) as kotak signs and verifies it: the
 * canonicalizations against RFC 6376 3.4.6's example, the tag-list parser
 * against hostile lists, then messages signed here and verified here with
 * key records handed in as DNS would (dkim_verify_key_answer): changed
 * bodies and fields, oversigning, l=, times, every kind of bad key, every
 * split of the message, and the DNS glue left with questions out.
 *
 * With DKIM_SIGN_DIR and DKIM_SIGN_KEY set, it only signs: each NAME.eml
 * in that folder becomes NAME.eml.signed (kotak's signature in front),
 * signed with the PEM key file DKIM_SIGN_KEY as DKIM_SIGN_DOMAIN with
 * selector DKIM_SIGN_SELECTOR, so that the integration test can have an
 * independent verifier (dkimpy) check what kotak signs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <uv.h>

#include "dkim.h"
#include "dkim_key_cache.h"
#include "tap.h"
#include "util.h"

#define T0 1780000000
#define KEY_FILE_MAX (16u << 10) /* dkim_key_read's bound */

/* --- helpers -------------------------------------------------------------- */

struct out {
    char buf[4096];
    size_t len;
};

static void collect(void *ctx, const char *p, size_t n)
{
    struct out *o = ctx;
    if (o->len + n <= sizeof(o->buf)) {
        memcpy(o->buf + o->len, p, n);
        o->len += n;
    }
}

/* The canonical body of s, fed whole (step 0) or step octets at a time. */
static const char *body_canon(bool relaxed, const char *s, size_t step)
{
    static struct out o;
    struct dkim_body_canon c;
    o.len = 0;
    dkim_body_canon_init(&c, relaxed);
    size_t n = strlen(s);
    if (step == 0)
        step = n ? n : 1;
    for (size_t i = 0; i < n; i += step)
        dkim_body_canon_feed(&c, s + i, n - i < step ? n - i : step, collect, &o);
    dkim_body_canon_finish(&c, collect, &o);
    o.buf[o.len] = '\0';
    return o.buf;
}

static const char *head_canon(bool relaxed, const char *f)
{
    static char out[1024];
    size_t n = dkim_header_canon(relaxed, f, strlen(f), out);
    out[n] = '\0';
    return out;
}

static char *key_pem, *key_record;
static size_t key_len;

/* Signs msg with the test key (opts may be NULL), as example.org / sel; a new string. */
static char *sign_with(const char *msg, size_t len, const struct dkim_sign_opts *o, size_t split,
                       time_t now)
{
    struct dkim_sign *s = dkim_sign_new_opts(o);
    if (split > len)
        split = len;
    dkim_sign_feed(s, msg, split);
    dkim_sign_feed(s, msg + split, len - split);
    char *field = NULL, err[256];
    int rc = dkim_sign_finish(s, "example.org", "sel", (unsigned char *)key_pem, key_len, now,
                              &field, err, sizeof(err));
    dkim_sign_free(&s);
    if (rc < 0) {
        printf("# signing failed: %s\n", err);
        return NULL;
    }
    size_t fl = strlen(field);
    char *out = xmalloc(fl + len + 1);
    memcpy(out, field, fl);
    memcpy(out + fl, msg, len);
    out[fl + len] = '\0';
    free(field);
    return out;
}

static char *sign(const char *msg)
{
    return sign_with(msg, strlen(msg), NULL, 0, T0);
}

/* The verdicts of msg when every key name answers record (NULL: status alone). */
struct verdict {
    size_t count;
    struct dkim_result r[DKIM_SIGS_MAX];
    char key_name[DNS_NAME_MAX + 1];
};

static struct verdict verify_split(const char *msg, size_t len, const char *record,
                                   enum dns_status status, time_t now, size_t split)
{
    struct verdict out = {0};
    struct dkim_verify *v = dkim_verify_new();
    if (split > len)
        split = len;
    dkim_verify_feed(v, msg, split);
    dkim_verify_feed(v, msg + split, len - split);
    dkim_verify_finish(v);
    for (size_t i = 0; i < dkim_verify_count(v); i++) {
        const char *name = dkim_verify_key_name(v, i, now);
        if (name == NULL)
            continue;
        snprintf(out.key_name, sizeof(out.key_name), "%s", name);
        size_t rlen = record ? strlen(record) : 0;
        dkim_verify_key_answer(v, i, status, record ? &record : NULL, record ? &rlen : NULL,
                               record ? 1 : 0);
    }
    out.count = dkim_verify_count(v);
    for (size_t i = 0; i < out.count; i++)
        out.r[i] = *dkim_verify_result(v, i);
    dkim_verify_free(&v);
    return out;
}

static struct verdict verify_with(const char *msg, const char *record)
{
    return verify_split(msg, strlen(msg), record, DNS_OK, T0 + 60, 0);
}

/* The status of the one signature of msg, checked to be the only one. */
static const char *status_of(const char *msg, const char *record, char *why, size_t why_size)
{
    struct verdict v = verify_with(msg, record);
    if (v.count != 1)
        return "no single signature";
    snprintf(why, why_size, "%s", v.r[0].why);
    return dkim_status_name(v.r[0].status);
}

#define is_status(msg, record, want, ...)                                                          \
    do {                                                                                           \
        char why_[200], name_[200];                                                                \
        snprintf(name_, sizeof(name_), __VA_ARGS__);                                               \
        const char *got_ = status_of(msg, record, why_, sizeof(why_));                             \
        is_str(got_, want, "%s (%s)", name_, why_);                                                \
    } while (0)

static char *concat(const char *a, const char *b)
{
    size_t an = strlen(a), bn = strlen(b);
    char *out = xmalloc(an + bn + 1);
    memcpy(out, a, an);
    memcpy(out + an, b, bn + 1);
    return out;
}

/* msg with the first occurrence of from replaced by to. */
static char *replace(const char *msg, const char *from, const char *to)
{
    const char *at = strstr(msg, from);
    if (at == NULL)
        return xstrdup(msg);
    size_t pre = (size_t)(at - msg), fl = strlen(from), tl = strlen(to), n = strlen(msg);
    char *out = xmalloc(n - fl + tl + 1);
    memcpy(out, msg, pre);
    memcpy(out + pre, to, tl);
    memcpy(out + pre + tl, at + fl, n - pre - fl + 1);
    return out;
}

static const char message[] = "From: Alice <alice@example.org>\r\n"
                              "To: bob@example.net\r\n"
                              "Subject: a test\r\n"
                              "  folded over two lines\r\n"
                              "Date: Mon, 1 Jun 2026 10:00:00 +0000\r\n"
                              "Message-ID: <1@example.org>\r\n"
                              "X-Mailer: none\r\n"
                              "\r\n"
                              "Hello Bob,\r\n"
                              "  this is a test.  \r\n"
                              "\r\n"
                              "\r\n";

/* --- canonicalization ------------------------------------------------------ */

static void test_canon(void)
{
    /* RFC 6376 3.4.6. */
    is_str(head_canon(true, "A: X\r\n"), "a:X\r\n", "3.4.6: relaxed A: X");
    is_str(head_canon(true, "B : Y\t\r\n\tZ  \r\n"), "b:Y Z\r\n", "3.4.6: relaxed B : Y Z");
    is_str(head_canon(false, "B : Y\t\r\n\tZ  \r\n"), "B : Y\t\r\n\tZ  \r\n", "3.4.6: simple");
    const char *body = " C \r\nD \t E\r\n\r\n\r\n";
    is_str(body_canon(true, body, 0), " C\r\nD E\r\n", "3.4.6: relaxed body");
    is_str(body_canon(false, body, 0), " C \r\nD \t E\r\n", "3.4.6: simple body");
    for (size_t step = 1; step < 6; step++) {
        is_str(body_canon(true, body, step), " C\r\nD E\r\n", "relaxed body %zu at a time", step);
        is_str(body_canon(false, body, step), " C \r\nD \t E\r\n", "simple body %zu at a time",
               step);
    }
    /* Empty bodies (3.4.3, 3.4.4). */
    is_str(body_canon(false, "", 0), "\r\n", "simple: an empty body is CRLF");
    is_str(body_canon(true, "", 0), "", "relaxed: an empty body is empty");
    is_str(body_canon(false, "\r\n\r\n", 0), "\r\n", "simple: empty lines only: CRLF");
    is_str(body_canon(true, " \t\r\n \r\n", 1), "", "relaxed: blank lines only: nothing");
    is_str(body_canon(false, "a", 0), "a\r\n", "simple: a last line gets its CRLF");
    is_str(body_canon(true, "a  ", 1), "a\r\n", "relaxed: and loses its trailing space");
    is_str(body_canon(true, "a\r\n\r\nb\r\n\r\n", 1), "a\r\n\r\nb\r\n",
           "empty lines inside the body stay, only the last ones go");
    is_str(body_canon(false, "a\rb\r", 1), "a\rb\r\r\n", "a CR alone is content");
    is_str(body_canon(true, "a\r \r\n", 1), "a\r\r\n", "relaxed: a CR alone, then a space");
    is_str(body_canon(true, "\t x", 1), " x\r\n", "relaxed: leading whitespace is one SP");
    is_str(head_canon(true, "SUBJECT:   hi  there  "), "subject:hi there\r\n",
           "relaxed: name lower case, value squeezed, no final CRLF needed");
    is_str(head_canon(true, "X:"), "x:\r\n", "relaxed: an empty value");
    is_str(head_canon(true, "NoColon  "), "nocolon\r\n", "relaxed: a line without a colon");
    /* A big body: the buffer fills many times over. */
    static char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    struct out o = {0};
    struct dkim_body_canon c;
    dkim_body_canon_init(&c, true);
    dkim_body_canon_feed(&c, big, sizeof(big) - 1, collect, &o);
    dkim_body_canon_finish(&c, collect, &o);
    is_int(o.len, sizeof(big) + 1, "a long line comes out whole, with its CRLF");
}

/* --- tag lists ------------------------------------------------------------- */

static void test_tags(void)
{
    struct dkim_tag t[DKIM_TAGS_MAX + 1];
    size_t n = 99;
    const char *list = " v = 1 ;a=rsa-sha256;\r\n\tb= ab\r\n cd ;x=;";
    is_int(dkim_tags_parse(list, strlen(list), t, DKIM_TAGS_MAX, &n), 0, "a folded list parses");
    is_int(n, 4, "four tags");
    ok(t[0].name_len == 1 && t[0].value_len == 1 && t[0].value[0] == '1', "v=1, trimmed");
    ok(t[2].value_len == 7 && memcmp(t[2].value, "ab\r\n cd", 7) == 0,
       "inner whitespace stays in a value");
    is_int(t[3].value_len, 0, "an empty value");
    is_int(dkim_tags_parse("", 0, t, DKIM_TAGS_MAX, &n), 0, "an empty list");
    is_int(n, 0, "has no tags");
    static const char *const bad[] = {
        ";",       "a",           "a;b=1", "=1",    "1a=2",       "a=1;a=2", "a=1;;b=2", "a=\x80",
        "a=b\x01", "a=1 ; b c=2", "a b=1", "a=b;c", "a=\"x;y\"x", "\xff=1",  "a=1\0b=2",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = strlen(bad[i]) + (i == 14 ? 4 : 0);
        ok(dkim_tags_parse(bad[i], len, t, DKIM_TAGS_MAX, &n) < 0, "refused: bad list %zu", i);
    }
    char many[400];
    size_t len = 0;
    for (int i = 0; i < DKIM_TAGS_MAX + 1; i++)
        len += (size_t)snprintf(many + len, sizeof(many) - len, "t%d=%d;", i, i);
    is_int(dkim_tags_parse(many, len, t, DKIM_TAGS_MAX, &n), -E2BIG, "33 tags: too many");
    is_int(dkim_tags_parse(many, len, t, DKIM_TAGS_MAX + 1, &n), 0, "fine with room for them");
    /* Every byte value in every place: never a crash, never a length past the input. */
    char buf[8] = "a=b;c=d";
    for (int pos = 0; pos < 7; pos++)
        for (int c = 0; c < 256; c++) {
            buf[pos] = (char)c;
            if (dkim_tags_parse(buf, 7, t, DKIM_TAGS_MAX, &n) == 0)
                for (size_t k = 0; k < n; k++)
                    if (t[k].value + t[k].value_len > buf + 7)
                        ok(0, "a value past the end");
            memcpy(buf, "a=b;c=d", 7);
        }
    ok(1, "every byte in every place of a list parses or is refused");
}

/* --- signing and verifying --------------------------------------------------- */

/* msg's DKIM-Signature field: every line within 78 octets, CRLF, b= last. */
static void check_field_shape(const char *signed_msg)
{
    const char *end = strstr(signed_msg, "\r\nFrom:");
    ok(end != NULL, "the field comes first, the message after it");
    if (end == NULL)
        return;
    bool short_lines = true;
    for (const char *line = signed_msg; line <= end;) {
        const char *crlf = strstr(line, "\r\n");
        if ((size_t)(crlf - line) > 78)
            short_lines = false;
        line = crlf + 2;
    }
    ok(short_lines, "every line of the field is 78 octets at most");
    ok(strncmp(signed_msg, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;", 53) == 0,
       "v=1, rsa-sha256, relaxed/relaxed");
    const char *b = strstr(signed_msg, " b=");
    if (b == NULL)
        b = strstr(signed_msg, "\tb=");
    ok(b != NULL && memchr(b, ';', (size_t)(end - b)) == NULL, "b= is the last tag");
    char *unfolded = xmalloc(strlen(signed_msg) + 1);
    size_t k = 0;
    for (const char *p = signed_msg; p < end; p++)
        if (*p != '\r' && *p != '\n' && *p != '\t' && *p != ' ')
            unfolded[k++] = *p;
    unfolded[k] = '\0';
    ok(strstr(unfolded, "h=From:From:To:To:Cc:Reply-To:Subject:Subject:Date:Date:"
                        "Message-ID:Message-ID:In-Reply-To:References:Content-Type:"
                        "MIME-Version;") != NULL,
       "each field listed once more than it occurs: %s", unfolded);
    ok(strstr(unfolded, "l=") == NULL, "no l=");
    ok(strstr(unfolded, "d=example.org;s=sel;t=1780000000;") != NULL, "d=, s=, t=");
    free(unfolded);
}

static void test_roundtrip(void)
{
    char *m = sign(message);
    ok(m != NULL, "signed");
    if (m == NULL)
        return;
    check_field_shape(m);
    struct verdict v = verify_with(m, key_record);
    is_int(v.count, 1, "one signature");
    is_str(dkim_status_name(v.r[0].status), "pass", "it passes (%s)", v.r[0].why);
    is_str(v.r[0].domain, "example.org", "d=");
    is_str(v.r[0].selector, "sel", "s=");
    is_str(v.r[0].algorithm, "rsa-sha256", "a=");
    is_int(strlen(v.r[0].b_prefix), 8, "the first 8 characters of b=");
    is_str(v.key_name, "sel._domainkey.example.org", "the key is asked for at s._domainkey.d");

    /* What changes after signing. */
    char *x = replace(m, "this is a test.", "this is a tesT.");
    is_status(x, key_record, "fail", "a body changed after signing fails");
    ok(strstr(verify_with(x, key_record).r[0].why, "body hash") != NULL, "for its body hash");
    free(x);
    x = replace(m, "Hello Bob,\r\n", "Hello \t Bob, \t\r\n");
    is_status(x, key_record, "pass", "relaxed: whitespace within and at a line's end is squeezed");
    free(x);
    x = concat(m, "\r\n\r\n");
    is_status(x, key_record, "pass", "empty lines added at the end do not count");
    free(x);
    x = concat(m, "P.S.\r\n");
    is_status(x, key_record, "fail", "a line added at the end fails");
    free(x);
    x = replace(m, "X-Mailer: none\r\n", "X-Mailer: none\r\nX-Spam: no\r\nReceived: by x\r\n");
    is_status(x, key_record, "pass", "an unsigned field added after signing: still pass");
    free(x);
    x = replace(m, "X-Mailer: none", "X-Mailer: other");
    is_status(x, key_record, "pass", "an unsigned field changed: still pass");
    free(x);
    x = replace(m, "From: Alice", "From: Mallory <m@evil.test>\r\nFrom: Alice");
    is_status(x, key_record, "fail", "another From: above, when oversigned: fail");
    free(x);
    x = replace(m, "X-Mailer: none", "X-Mailer: none\r\nFrom: Mallory <m@evil.test>");
    is_status(x, key_record, "fail", "another From: below: fail");
    free(x);
    x = replace(m, "X-Mailer: none", "X-Mailer: none\r\nCc: eve@evil.test");
    is_status(x, key_record, "fail", "a Cc: added where there was none: fail");
    free(x);
    x = replace(m, "Subject: a test", "Subject: a TEST");
    is_status(x, key_record, "fail", "the subject changed: fail");
    free(x);
    x = replace(m, "Subject: a test\r\n  folded", "subject:    a test\r\n\t folded");
    is_status(x, key_record, "pass", "relaxed: a field refolded, its name's case changed: pass");
    free(x);
    x = replace(m, "a=rsa-sha256", "a=rsa-sha1");
    is_status(x, key_record, "permerror", "rsa-sha1: permerror (RFC 8301)");
    free(x);
    x = replace(m, "v=1;", "v=2;");
    is_status(x, key_record, "permerror", "v=2: permerror");
    free(x);
    x = replace(m, "d=example.org", "d=example.net");
    is_status(x, key_record, "fail", "d= changed (the key the same): the signature fails");
    free(x);
    x = replace(m, "s=sel;", "s=sel; i=@sub.example.org;");
    is_status(x, key_record, "fail", "i= added after signing: fails");
    free(x);
    x = replace(m, "s=sel;", "s=sel; i=@example.com;");
    is_status(x, key_record, "permerror", "i= outside d=: permerror");
    free(x);
    x = replace(m, "s=sel;", "s=sel; q=dns/other;");
    is_status(x, key_record, "permerror", "q= without dns/txt: permerror");
    free(x);
    x = replace(m, "DKIM-Signature:", "dkim-signature:");
    is_status(x, key_record, "pass", "relaxed: the signature's own name in lower case");
    free(x);

    /* The keys DNS may give. */
    char why[200];
    is_status(m, "v=DKIM1; k=rsa; p=", "permerror", "a revoked key (empty p=)");
    ok(strstr((status_of(m, "v=DKIM1; p=", why, sizeof(why)), why), "revoked") != NULL,
       "says revoked: %s", why);
    is_status(m, "v=DKIM1; k=ed25519; p=MCowBQYDK2VwAyEA", "permerror", "k=ed25519: permerror");
    is_status(m, "v=DKIM2; p=abc", "permerror", "v=DKIM2: permerror");
    is_status(m, "p=abc; v=DKIM1", "permerror", "v= not first: permerror");
    is_status(m, "v=DKIM1; p=!!!!", "permerror", "p= not base64: permerror");
    is_status(m, "v=DKIM1; p=QUJD", "permerror", "p= no key: permerror");
    is_status(m, "garbage", "permerror", "no tag list: permerror");
    char *rec = replace(key_record, "k=rsa;", "k=rsa; h=sha1;");
    is_status(m, rec, "permerror", "h=sha1 only: permerror");
    free(rec);
    rec = replace(key_record, "k=rsa;", "k=rsa; h=sha1:sha256; s=email; t=y; n=hi there;");
    is_status(m, rec, "pass", "h=sha1:sha256, s=email, t=y, notes: pass");
    free(rec);
    rec = replace(key_record, "k=rsa;", "k=rsa; s=other;");
    is_status(m, rec, "permerror", "s=other: not for email");
    free(rec);
    rec = replace(key_record, "k=rsa;", "k=rsa; t=s;");
    is_status(m, rec, "pass", "t=s, i= defaulting to d=: pass");
    free(rec);
    rec = replace(key_record, "v=DKIM1; k=rsa; ", "");
    is_status(m, rec, "pass", "a record of p= alone: pass");
    free(rec);
    struct verdict nx = verify_split(m, strlen(m), NULL, DNS_NXDOMAIN, T0, 0);
    is_str(dkim_status_name(nx.r[0].status), "permerror", "no key (NXDOMAIN): permerror");
    nx = verify_split(m, strlen(m), NULL, DNS_NODATA, T0, 0);
    is_str(dkim_status_name(nx.r[0].status), "permerror", "no key (NODATA): permerror");
    nx = verify_split(m, strlen(m), NULL, DNS_TEMPFAIL, T0, 0);
    is_str(dkim_status_name(nx.r[0].status), "temperror", "SERVFAIL: temperror");
    const char *two[] = {"v=spf1 -all", key_record};
    size_t two_lens[] = {11, strlen(key_record)};
    struct dkim_verify *vv = dkim_verify_new();
    dkim_verify_feed(vv, m, strlen(m));
    dkim_verify_finish(vv);
    ok(dkim_verify_key_name(vv, 0, T0) != NULL, "a key to ask for");
    dkim_verify_key_answer(vv, 0, DNS_OK, two, two_lens, 2);
    is_str(dkim_status_name(dkim_verify_result(vv, 0)->status), "pass",
           "another TXT record beside the key: the key counts");
    dkim_verify_free(&vv);

    /* Times. */
    struct verdict tv = verify_split(m, strlen(m), key_record, DNS_OK, T0 + 10 * 365 * 86400, 0);
    is_str(dkim_status_name(tv.r[0].status), "pass", "no x=: valid years later");
    tv = verify_split(m, strlen(m), key_record, DNS_OK, T0 - 3600, 0);
    is_str(dkim_status_name(tv.r[0].status), "permerror", "t= an hour ahead of us: permerror");
    struct dkim_sign_opts ox = {.expire = T0 + 3600};
    char *mx = sign_with(message, strlen(message), &ox, 0, T0);
    tv = verify_split(mx, strlen(mx), key_record, DNS_OK, T0 + 60, 0);
    is_str(dkim_status_name(tv.r[0].status), "pass", "x= not reached: pass");
    tv = verify_split(mx, strlen(mx), key_record, DNS_OK, T0 + 3601, 0);
    is_str(dkim_status_name(tv.r[0].status), "permerror", "x= passed: permerror (%s)", tv.r[0].why);
    free(mx);
    x = replace(m, "t=1780000000;", "t=1780000000; x=1779999999;");
    is_status(x, key_record, "permerror", "x= before t=: permerror");
    free(x);
    free(m);
}

static void test_options(void)
{
    /* simple/simple: whitespace counts. */
    struct dkim_sign_opts os = {.simple_header = true, .simple_body = true};
    char *m = sign_with(message, strlen(message), &os, 0, T0);
    ok(m != NULL && strstr(m, "c=simple/simple;") != NULL, "signed simple/simple");
    is_status(m, key_record, "pass", "simple/simple passes");
    char *x = replace(m, "\r\n\r\nHello", "\r\n\r\nHello ");
    is_status(x, key_record, "fail", "simple: a space added in the body fails");
    free(x);
    x = replace(m, "Subject: a test\r\n  folded", "Subject: a test\r\n folded");
    is_status(x, key_record, "fail", "simple: a field refolded fails");
    free(x);
    x = concat(m, "\r\n");
    is_status(x, key_record, "pass", "simple: an empty line added at the end passes");
    free(x);
    free(m);

    /* l=: what follows the signed length does not count. */
    struct dkim_sign_opts ol = {.body_length = true};
    m = sign_with(message, strlen(message), &ol, 0, T0);
    ok(m != NULL && strstr(m, "l=") != NULL, "signed with l=");
    is_status(m, key_record, "pass", "l= passes");
    x = concat(m, "Appended by a list\r\n");
    is_status(x, key_record, "pass", "l=: text appended after signing is not checked");
    free(x);
    x = replace(m, "Hello Bob,\r\n", "Hello\r\n");
    is_status(x, key_record, "fail", "l=: a body cut short fails");
    free(x);
    x = replace(m, "Hello Bob,", "Hello Eve,");
    is_status(x, key_record, "fail", "l=: a change within the length fails");
    free(x);
    free(m);

    /* Empty bodies, no body, a message that is all header. */
    static const char *const shapes[] = {
        "From: a@example.org\r\n\r\n",
        "From: a@example.org\r\n",
        "From: a@example.org",
        "From: a@example.org\r\n\r\nno final CRLF",
        "From: a@example.org\r\n\r\n\r\n\r\n",
    };
    for (size_t i = 0; i < 5; i++) {
        for (int simple = 0; simple < 2; simple++) {
            struct dkim_sign_opts o = {.simple_body = simple, .simple_header = simple};
            m = sign_with(shapes[i], strlen(shapes[i]), &o, 0, T0);
            is_status(m, key_record, "pass", "shape %zu, %s: passes", i,
                      simple ? "simple" : "relaxed");
            free(m);
        }
    }
    /* h= listing a field twice takes them bottom-up. */
    static const char two_to[] = "From: a@example.org\r\nTo: first@x\r\nTo: second@x\r\n\r\nb\r\n";
    struct dkim_sign_opts oh = {.headers = "From:To"};
    m = sign_with(two_to, strlen(two_to), &oh, 0, T0);
    x = replace(m, "To: first@x", "To: changed@x");
    is_status(x, key_record, "pass", "h=To once: the first To: (not signed) may change");
    free(x);
    x = replace(m, "To: second@x", "To: changed@x");
    is_status(x, key_record, "fail", "h=To once: the last To: is the signed one");
    free(x);
    free(m);
}

/* Every split of the message gives the same signature and the same verdict. */
static void test_splits(void)
{
    size_t n = strlen(message);
    char *whole = sign_with(message, n, NULL, 0, T0);
    bool same = true, pass = true;
    for (size_t split = 0; split <= n; split++) {
        char *m = sign_with(message, n, NULL, split, T0);
        same &= m != NULL && strcmp(m, whole) == 0;
        free(m);
    }
    ok(same, "signing: every split point gives the same field");
    size_t wn = strlen(whole);
    char *changed = replace(whole, "Hello Bob", "Hello Rob");
    bool fails = true;
    for (size_t split = 0; split <= wn; split++) {
        struct verdict v = verify_split(whole, wn, key_record, DNS_OK, T0, split);
        pass &= v.count == 1 && v.r[0].status == DKIM_PASS;
        v = verify_split(changed, wn, key_record, DNS_OK, T0, split);
        fails &= v.count == 1 && v.r[0].status == DKIM_FAIL;
    }
    ok(pass, "verifying: every split point passes");
    ok(fails, "and a changed body fails at every split point");
    /* One octet at a time. */
    struct dkim_verify *v = dkim_verify_new();
    for (size_t i = 0; i < wn; i++)
        dkim_verify_feed(v, whole + i, 1);
    dkim_verify_finish(v);
    const char *name = dkim_verify_key_name(v, 0, T0);
    size_t rl = strlen(key_record);
    const char *rec = key_record;
    if (name != NULL)
        dkim_verify_key_answer(v, 0, DNS_OK, &rec, &rl, 1);
    is_str(dkim_status_name(dkim_verify_result(v, 0)->status), "pass", "one octet at a time");
    size_t hl = 0;
    const char *h = dkim_verify_header(v, &hl);
    const char *body = strstr(whole, "\r\n\r\n");
    ok(h != NULL && hl == (size_t)(body - whole) + 2 && memcmp(h, whole, hl) == 0,
       "dkim_verify_header: the section, with its last CRLF, without the empty line");
    dkim_verify_free(&v);
    free(changed);
    free(whole);
}

static void test_limits(void)
{
    /* No signature. */
    struct verdict v = verify_with(message, key_record);
    is_int(v.count, 0, "an unsigned message has no verdict");
    /* More than DKIM_SIGS_MAX signatures: the first ones count. */
    char *m = sign(message);
    char *many = xstrdup(m);
    for (int i = 0; i < DKIM_SIGS_MAX + 3; i++) {
        char *more =
            concat("DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=a; h=from; bh=; b=\r\n", many);
        free(many);
        many = more;
    }
    v = verify_with(many, key_record);
    is_int(v.count, DKIM_SIGS_MAX, "at most DKIM_SIGS_MAX signatures are judged");
    free(many);
    /* Hostile signature fields: a permerror each, no crash. */
    static const char *const bad[] = {
        "DKIM-Signature:",
        "DKIM-Signature: ;;;",
        "DKIM-Signature: v=1",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA",
        "DKIM-Signature: v=1; a=rsa-sha256; d=..; s=sel; h=from; bh=x; b=x",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=a/b; h=from; bh=x; b=x",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=to; bh=x; b=x",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from::to; "
        "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
        "DKIM-Signature: v=1; a=rsa-sha256; c=loose; d=example.org; s=sel; h=from; bh=x; b=x",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from; l=-1; bh=x; b=x",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from; "
        "l=99999999999999999999999999; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from; t=1e9; bh=x; b=x",
        "DKIM-Signature: v=1; a=ed25519-sha256; d=example.org; s=sel; h=from; bh=x; b=x",
        "DKIM-Signature: v=1; v=1; a=rsa-sha256",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; i=nobody; h=from; bh=x; b=x",
        "DKIM-Signature: v=1; a=rsa-\r\n sha256; d=example.org; s=s\r\n el; h=from; bh=x; b=x",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=a\r\n\tX-Injected: 1; h=from; "
        "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *msg = concat(bad[i], "\r\nFrom: a@example.org\r\n\r\nbody\r\n");
        v = verify_with(msg, key_record);
        ok(v.count == 1 && v.r[0].status == DKIM_PERMERROR, "bad signature %zu: permerror (%s)", i,
           v.count ? v.r[0].why : "none");
        ok(v.count == 1 && strpbrk(v.r[0].domain, "\r\n\t ;") == NULL &&
               strpbrk(v.r[0].selector, "\r\n\t ;") == NULL &&
               strpbrk(v.r[0].algorithm, "\r\n\t ;") == NULL,
           "and its results hold no whitespace to carry into a header field");
        free(msg);
    }
    /* An h= of 256 names over 9000 fields: more comparisons than any real
     * message needs, so it is refused before it costs the thread pool. */
    size_t cap = 300 * 1024;
    char *work = xmalloc(cap), *w = work;
    w += sprintf(w, "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from");
    for (int i = 0; i < 255; i++)
        w += sprintf(w, ":a");
    w += sprintf(w, "; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n");
    for (int i = 0; i < 9000; i++)
        w += sprintf(w, "a:\r\n");
    sprintf(w, "From: a@example.org\r\n\r\nbody\r\n");
    v = verify_with(work, key_record);
    ok(v.count == 1 && v.r[0].status == DKIM_PERMERROR && strstr(v.r[0].why, "too many") != NULL,
       "h= names times fields past the limit: permerror (%s)", v.count ? v.r[0].why : "none");
    /* Few fields, but 256 names of 1,000 octets, each compared with the
     * names before it octet by octet: counted in octets, refused too. */
    w = work;
    w += sprintf(w, "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from");
    for (int i = 0; i < 255; i++) {
        *w++ = ':';
        memset(w, 'x', 1000);
        w += 1000;
    }
    w += sprintf(w, "; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n");
    sprintf(w, "From: a@example.org\r\n\r\nbody\r\n");
    v = verify_with(work, key_record);
    ok(v.count == 1 && v.r[0].status == DKIM_PERMERROR && strstr(v.r[0].why, "too many") != NULL,
       "long h= names past the limit in octets: permerror (%s)", v.count ? v.r[0].why : "none");
    free(work);
    /* A header section past DKIM_HEADER_MAX. */
    size_t big = DKIM_HEADER_MAX + 100;
    char *huge = xmalloc(big + strlen(m) + 1);
    memcpy(huge, m, strlen(m) + 1);
    char *fill = xmalloc(big + 1);
    size_t k = 0;
    while (k + 80 < big) {
        memcpy(fill + k, "X-Fill: ", 8);
        memset(fill + k + 8, 'y', 70);
        memcpy(fill + k + 78, "\r\n", 2);
        k += 80;
    }
    fill[k] = '\0';
    char *hm = concat(fill, m);
    v = verify_with(hm, key_record);
    ok(v.count == 1 && v.r[0].status == DKIM_PERMERROR,
       "a header section over the limit: "
       "permerror (%s)",
       v.r[0].why);
    struct dkim_sign *s = dkim_sign_new();
    dkim_sign_feed(s, hm, strlen(hm));
    char *field = NULL, err[200];
    ok(dkim_sign_finish(s, "example.org", "sel", (unsigned char *)key_pem, key_len, T0, &field, err,
                        sizeof(err)) < 0,
       "and is not signed: %s", err);
    dkim_sign_free(&s);
    free(hm);
    free(fill);
    free(huge);
    /* Signing refuses a bad key, a bad domain or selector. */
    s = dkim_sign_new();
    dkim_sign_feed(s, message, strlen(message));
    ok(dkim_sign_finish(s, "example.org", "sel", (const unsigned char *)"junk", 4, T0, &field, err,
                        sizeof(err)) < 0,
       "a key that is no key: %s", err);
    dkim_sign_free(&s);
    s = dkim_sign_new();
    ok(dkim_sign_finish(s, "example.org", "a/b", (unsigned char *)key_pem, key_len, T0, &field, err,
                        sizeof(err)) < 0,
       "a bad selector: %s", err);
    dkim_sign_free(&s);
    free(m);
}

/* A key shorter than 1024 bits is refused (RFC 8301 3.2), whatever it signed. */
static void test_short_key(void)
{
    char *pem, *rec, err[200];
    size_t len;
    if (dkim_keygen(768, &pem, &len, err, sizeof(err)) < 0 ||
        dkim_key_record((unsigned char *)pem, len, &rec, err, sizeof(err)) < 0) {
        ok(0, "a 768-bit key: %s", err);
        return;
    }
    char *m = sign(message);
    is_status(m, rec, "permerror", "a 768-bit key in DNS: permerror");
    struct dkim_sign *s = dkim_sign_new();
    char *field;
    ok(dkim_sign_finish(s, "example.org", "sel", (unsigned char *)pem, len, T0, &field, err,
                        sizeof(err)) < 0,
       "and kotak does not sign with one");
    dkim_sign_free(&s);
    free(m);
    free(rec);
    free(pem);
}

/* --- keys on disk -------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const char *text, time_t mtime)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
    utimensat(AT_FDCWD, path, ts, 0);
}

static void test_key_read(void)
{
    char dir[] = "/tmp/test-dkim-XXXXXX";
    ok(mkdtemp(dir) != NULL, "a folder for keys");
    char sel[DNS_NAME_MAX + 1];
    unsigned char *pem = NULL;
    size_t len;
    is_int(dkim_key_read(dir, "example.org", "kotak", sel, &pem, &len), 0, "no key yet");
    is_int(dkim_key_read("/nonexistent/dkim", "example.org", "kotak", sel, &pem, &len), 0,
           "no folder: no key");
    write_file(dir, "old._domainkey.example.org.pem", "OLD", T0);
    write_file(dir, "new._domainkey.example.org.pem", "NEW", T0 + 10);
    write_file(dir, "newest._domainkey.example.org.pem.tmp", "TMP", T0 + 20);
    write_file(dir, "other._domainkey.sub.example.org.pem", "SUB", T0 + 30);
    write_file(dir, "kotak._domainkey.example.org.pem", "KOTAK", T0 - 10);
    is_int(dkim_key_read(dir, "example.org", "kotak", sel, &pem, &len), 1, "the selector's key");
    ok(pem && len == 5 && strcmp((char *)pem, "KOTAK") == 0 && strcmp(sel, "kotak") == 0,
       "is read, with its selector");
    free(pem);
    pem = NULL;
    is_int(dkim_key_read(dir, "example.org", "missing", sel, &pem, &len), 1, "another selector");
    ok(pem && strcmp((char *)pem, "NEW") == 0 && strcmp(sel, "new") == 0,
       "falls back to the newest key of the domain (not a subdomain's, not a temporary file)");
    free(pem);
    pem = NULL;
    is_int(dkim_key_read(dir, "example.net", "kotak", sel, &pem, &len), 0, "another domain: none");
    char big[KEY_FILE_MAX + 2];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    write_file(dir, "big._domainkey.example.org.pem", big, T0);
    ok(dkim_key_read(dir, "example.org", "big", sel, &pem, &len) < 0,
       "a file over 16 KiB: refused");
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ok(system(cmd) == 0, "cleaned up");
}

/* --- the DNS glue: questions out when the verifier goes ------------------------ */

static int callbacks;

static void count_cb(void *ctx)
{
    (void)ctx;
    callbacks++;
}

/* A key kept once used serves the next messages; the record's other tags still count. */
static void test_key_cache(void)
{
    char *m = sign(message);
    dkim_key_cache_clear();
    is_status(m, key_record, "pass", "the key parsed the first time");
    is_status(m, key_record, "pass", "and kept: the next message passes with the kept key");
    char *x = replace(m, "this is a test.", "this is a tesT.");
    is_status(x, key_record, "fail", "a kept key still fails a changed message");
    free(x);
    const char *p = strstr(key_record, "p=");
    char rec[4096];
    snprintf(rec, sizeof(rec), "v=DKIM1; k=rsa; h=sha1; %s", p);
    is_status(m, rec, "permerror", "the same p= in a record for sha1 only: permerror");
    snprintf(rec, sizeof(rec), "v=DKIM1; s=tlsrpt; %s", p);
    is_status(m, rec, "permerror", "the same p= in a record not for email: permerror");
    snprintf(rec, sizeof(rec), "v=DKIM1; k=rsa; p=");
    is_status(m, rec, "permerror", "revoked: permerror, whatever was kept");
    /* The same p= with a byte changed: another key, not the kept one. */
    snprintf(rec, sizeof(rec), "%s", key_record);
    char *mid = strstr(rec, "p=") + 2 + 150; /* inside the modulus */
    *mid = *mid == 'A' ? 'B' : 'A';
    is_status(m, rec, "fail", "a p= that differs in one character is not the kept key");
    dkim_key_cache_clear();
    free(m);
}

/* RFC 4648 3.5: padding left out, or unused bits set in b=, still decode (some signers do). */
static void test_lenient_base64(void)
{
    char *m = sign(message);
    char *end = strstr(m, "==\r\n"); /* b= is the last tag; 256 octets end in "==" */
    ok(end != NULL, "b= ends in ==");
    if (end == NULL) {
        free(m);
        return;
    }
    char *x = xstrdup(m);
    memmove(x + (end - m), x + (end - m) + 2, strlen(x + (end - m) + 2) + 1);
    is_status(x, key_record, "pass", "b= without its padding: pass");
    free(x);
    x = xstrdup(m);
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *last = x + (end - m) - 1;
    const char *at = strchr(alphabet, *last);
    *last = alphabet[(at - alphabet) | 0x0f]; /* the 4 bits that carry no data */
    is_status(x, key_record, "pass", "b= whose last character has unused bits set: pass");
    free(x);
    free(m);
}

static void test_detach(void)
{
    /* A UDP server that never answers keeps the questions out. */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char servers[64], err[200];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", ntohs(sa.sin_port));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct dns *dns = dns_new(&loop, servers, 5000, 1, err, sizeof(err));
    ok(dns != NULL, "a resolver: %s", dns ? "" : err);
    if (dns == NULL)
        return;
    /* Two signatures, so that two questions are out. */
    char *m = sign(message);
    const char *from = strstr(m, "\r\nFrom:");
    size_t flen = (size_t)(from + 2 - m);
    char *both = xmalloc(flen + strlen(m) + 1);
    memcpy(both, m, flen);
    memcpy(both + flen, m, strlen(m) + 1);

    struct dkim_verify *v = dkim_verify_new();
    dkim_verify_feed(v, both, strlen(both));
    dkim_verify_finish(v);
    callbacks = 0;
    is_int(dkim_verify_keys(v, dns, T0, count_cb, NULL), 0, "two questions out");
    is_int(callbacks, 0, "cb never runs inside dkim_verify_keys");
    uv_run(&loop, UV_RUN_NOWAIT);
    dkim_verify_free(&v);
    dns_free(&dns); /* the answers come now, cancelled, to a verifier that is gone */
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(callbacks, 0, "freed with questions out: cb never runs, nothing is touched");

    /* The resolver freed first: the waiting signatures get temperror, cb runs once. */
    dns = dns_new(&loop, servers, 5000, 1, err, sizeof(err));
    v = dkim_verify_new();
    dkim_verify_feed(v, both, strlen(both));
    dkim_verify_finish(v);
    is_int(dkim_verify_keys(v, dns, T0, count_cb, NULL), 0, "questions out again");
    dns_free(&dns);
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(callbacks, 1, "the resolver freed first: cb runs once");
    is_str(dkim_status_name(dkim_verify_result(v, 1)->status), "temperror", "with temperror");
    dkim_verify_free(&v);

    /* Nothing to ask: 1, and cb never runs. */
    dns = dns_new(&loop, servers, 5000, 1, err, sizeof(err));
    v = dkim_verify_new();
    dkim_verify_feed(v, message, strlen(message));
    dkim_verify_finish(v);
    is_int(dkim_verify_keys(v, dns, T0, count_cb, NULL), 1, "no signature: nothing to ask (1)");
    dkim_verify_free(&v);
    dns_free(&dns);
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(callbacks, 1, "and cb does not run");
    is_int(uv_loop_close(&loop), 0, "the loop closes: nothing left behind");
    close(fd);
    free(m);
    free(both);
}

/* --- the signing tool for the integration test ----------------------------------- */

static char *read_all(const char *path, size_t *len_r)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap);
    for (size_t got; (got = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap)
            buf = xrealloc(buf, cap *= 2);
    }
    fclose(f);
    *len_r = len;
    return buf;
}

static int sign_folder(const char *dir, const char *key_path)
{
    const char *domain = getenv("DKIM_SIGN_DOMAIN"), *selector = getenv("DKIM_SIGN_SELECTOR");
    size_t klen;
    char *key = read_all(key_path, &klen);
    if (key == NULL || domain == NULL || selector == NULL) {
        fprintf(stderr, "test-dkim: DKIM_SIGN_KEY, _DOMAIN and _SELECTOR are needed\n");
        return 2;
    }
    DIR *d = opendir(dir);
    if (d == NULL)
        return 2;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".eml") != 0)
            continue;
        char path[4096], out[4200], err[256];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        size_t len;
        char *msg = read_all(path, &len), *field = NULL;
        struct dkim_sign *s = dkim_sign_new();
        dkim_sign_feed(s, msg, len);
        if (dkim_sign_finish(s, domain, selector, (unsigned char *)key, klen, time(NULL), &field,
                             err, sizeof(err)) < 0) {
            fprintf(stderr, "test-dkim: %s: %s\n", path, err);
            rc = 1;
        } else {
            snprintf(out, sizeof(out), "%s.signed", path);
            FILE *f = fopen(out, "wb");
            fwrite(field, 1, strlen(field), f);
            fwrite(msg, 1, len, f);
            fclose(f);
        }
        dkim_sign_free(&s);
        free(field);
        free(msg);
    }
    closedir(d);
    free(key);
    return rc;
}

int main(void)
{
    const char *dir = getenv("DKIM_SIGN_DIR"), *key = getenv("DKIM_SIGN_KEY");
    if (dir != NULL && key != NULL)
        return sign_folder(dir, key);

    char err[200];
    if (dkim_keygen(2048, &key_pem, &key_len, err, sizeof(err)) < 0 ||
        dkim_key_record((unsigned char *)key_pem, key_len, &key_record, err, sizeof(err)) < 0) {
        ok(0, "a test key: %s", err);
        return done_testing();
    }
    ok(strncmp(key_record, "v=DKIM1; k=rsa; p=", 18) == 0, "the key's record: %.40s...",
       key_record);
    ok(strstr(key_pem, "PRIVATE KEY") != NULL, "the key is PEM");
    test_canon();
    test_tags();
    test_roundtrip();
    test_options();
    test_splits();
    test_limits();
    test_short_key();
    test_key_read();
    test_key_cache();
    test_lenient_base64();
    test_detach();
    ok(dkim_selector_valid("kotak") && dkim_selector_valid("2026-01.a") &&
           !dkim_selector_valid("") && !dkim_selector_valid("-a") && !dkim_selector_valid("a-") &&
           !dkim_selector_valid("a..b") && !dkim_selector_valid("a/b") &&
           !dkim_selector_valid("a_b"),
       "selectors: labels of letters, digits and inner hyphens");
    explicit_bzero(key_pem, key_len);
    free(key_pem);
    free(key_record);
    return done_testing();
}
