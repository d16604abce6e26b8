/*
 * test_dmarc.c — DMARC's pure parts: the From: domain of hostile header
 * sections, policy records as RFC 7489 6.3 and 6.6.3 read them, alignment
 * strict and relaxed, pct= sampling and the verdict; then the check's
 * life on a loop without a DNS server to answer it: a failure becomes
 * temperror, never inside the start, and a cancelled check with its
 * question out is freed by the answer without its callback running.
 * Run under ASan (or valgrind) that last part is a use-after-free test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "dmarc.h"
#include "tap.h"

/* --- From: --------------------------------------------------------------- */

struct from_case {
    const char *hdr; /* with \n line ends; each case also runs with \r\n */
    int rc;
    const char *domain;
};

static const struct from_case from_cases[] = {
    {"From: alice@example.org\n", 1, "example.org"},
    {"From: Alice <alice@Example.ORG>\n", 1, "example.org"},
    {"from:alice@example.org\n", 1, "example.org"},
    {"FROM : alice@example.org\n", 1, "example.org"}, /* obs-from: WSP before the colon */
    {"Subject: hi\nFrom: \"Doe, John\" <john@example.org>\nTo: x@y.test\n", 1, "example.org"},
    {"From: \"a@evil.test\" <john@example.org>\n", 1, "example.org"},
    {"From: \"quoted \\\" <x@evil.test>, more\" <john@example.org>\n", 1, "example.org"},
    {"From: John (comment, with <x@evil.test> inside (nested)) <john@example.org>\n", 1,
     "example.org"},
    {"From: john@example.org (John Doe)\n", 1, "example.org"},
    {"From: john @ example . org\n", 1, "example.org"}, /* obsolete CFWS in an addr-spec */
    {"From: <john@(comment)example.org>\n", 1, "example.org"},
    {"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\n", 1, "example.org"},
    {"From: J\xc3\xb6rg <j@example.org>\n", 1, "example.org"},       /* RFC 6532 display name */
    {"From: John\n  Doe\n\t<john@example.org>\n", 1, "example.org"}, /* folded */
    {"From:\n john@example.org\n", 1, "example.org"},
    {"From: \"first.last\"@example.org\n", 1, "example.org"},
    {"From: <@relay.test,@other.test:john@example.org>\n", 1, "example.org"}, /* obs-route */
    {"From: Team: a@example.org, b@example.org;\n", 1, "example.org"},        /* RFC 6854 group */
    {"From: a@example.org, B <b@EXAMPLE.org>\n", 1, "example.org"}, /* several, one domain */
    {"From: a@example.org,, ,b@example.org\n", 1, "example.org"},   /* obs-mbox-list */
    {"From: Team: a@example.org\n", 1, "example.org"},              /* a group left open */
    {"From: john@example.org\n\nFrom: evil@evil.test\n", 1, "example.org"}, /* the body */
    {"X-From: evil@evil.test\nResent-From: r@evil.test\nFrom: j@example.org\n", 1, "example.org"},
    {"From: j@example.org\n", 1, "example.org"},
    /* none */
    {"", 0, NULL},
    {"Subject: no sender\nTo: x@y.test\n", 0, NULL},
    {"Fromage: cheese@example.org\n", 0, NULL},
    {" From: folded@evil.test\n", 0, NULL}, /* a continuation line with no field before it */
    {"\nFrom: body@evil.test\n", 0, NULL},
    /* not usable */
    {"From: a@example.org\nFrom: b@example.org\n", DMARC_FROM_SEVERAL, NULL},
    {"From: a@example.org\nSubject: x\nfrom: a@example.org\n", DMARC_FROM_SEVERAL, NULL},
    {"From: a@example.org, b@evil.test\n", DMARC_FROM_SEVERAL, NULL},
    {"From: Team: a@example.org, b@evil.test;\n", DMARC_FROM_SEVERAL, NULL},
    {"From:\n", -1, NULL},
    {"From: undisclosed-recipients:;\n", -1, NULL},
    {"From: John Doe\n", -1, NULL},
    {"From: john\n", -1, NULL},
    {"From: Doe, John <john@example.org>\n", -1, NULL}, /* "Doe" is a second, bad address */
    {"From: a@evil.test <john@example.org>\n", -1, NULL},
    {"From: <john@example.org> <x@evil.test>\n", -1, NULL},
    {"From: <john@example.org> trailing\n", -1, NULL},
    {"From: <john@example.org\n", -1, NULL},
    {"From: john@example.org>\n", -1, NULL},
    {"From: \"unclosed <john@example.org>\n", -1, NULL},
    {"From: (unclosed <john@example.org>\n", -1, NULL},
    {"From: ((nested) <john@example.org>\n", -1, NULL},
    {"From: john@[192.0.2.1]\n", -1, NULL},
    {"From: john@\"example.org\"\n", -1, NULL},
    {"From: john@example..org\n", -1, NULL},
    {"From: john@.example.org\n", -1, NULL},
    {"From: john@example.org.\n", -1, NULL},
    {"From: john@example org\n", -1, NULL},
    {"From: john@exa\xc3\xa9mple.org\n", -1, NULL}, /* not an A-label */
    {"From: john@example.org@evil.test\n", -1, NULL},
    {"From: john@\n", -1, NULL},
    {"From: @example.org\n", 1, "example.org"}, /* an empty local part does not hide the domain */
    {"From: john@ex\\ample.org\n", -1, NULL},
    {"From: john@example.org)\n", -1, NULL},
    {"From: a:b:c@example.org\n", -1, NULL},
    {"From: a@example.org;\n", -1, NULL},
    {"From: <a@b@example.org>\n", -1, NULL},
    {"From: john@example.org\x01\n", -1, NULL},
    {"From: Team: <a@example.org>; b@evil.test\n", DMARC_FROM_SEVERAL, NULL},
};

/* hdr with every "\n" made "\r\n". */
static char *crlf(const char *hdr, size_t *len_r)
{
    size_t n = strlen(hdr), extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += hdr[i] == '\n';
    char *out = malloc(n + extra + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (hdr[i] == '\n')
            *o++ = '\r';
        *o++ = hdr[i];
    }
    *o = '\0';
    *len_r = (size_t)(o - out);
    return out;
}

/* The case on one line, for its test name: line ends shown as "|". */
static const char *shown(const char *hdr)
{
    static char buf[64];
    size_t i = 0;
    for (; hdr[i] != '\0' && i < sizeof(buf) - 1; i++)
        buf[i] = hdr[i] == '\n' ? '|' : hdr[i];
    buf[i] = '\0';
    return buf;
}

static void check_from(const char *what, const char *hdr, size_t len, const struct from_case *c)
{
    char out[DNS_NAME_MAX + 1] = "";
    /* An exact copy on the heap: a read past len is caught by ASan. */
    char *copy = malloc(len ? len : 1);
    memcpy(copy, hdr, len);
    int rc = dmarc_from_domain(copy, len, out);
    free(copy);
    is_int(rc, c->rc, "From (%s): %s", what, shown(c->hdr));
    if (c->rc == 1)
        is_str(out, c->domain, "  its domain");
}

static void test_from(void)
{
    for (size_t i = 0; i < sizeof(from_cases) / sizeof(from_cases[0]); i++) {
        const struct from_case *c = &from_cases[i];
        check_from("LF", c->hdr, strlen(c->hdr), c);
        size_t len;
        char *h = crlf(c->hdr, &len);
        check_from("CRLF", h, len, c);
        free(h);
    }

    /* Cut anywhere, no field parses past its end or crashes. */
    const char *whole = "From: \"Doe (x)\" <@r.test:john@example.org> (c (d))\r\n";
    char out[DNS_NAME_MAX + 1];
    int crashes = 0;
    for (size_t n = 0; n <= strlen(whole); n++) {
        char *copy = malloc(n ? n : 1);
        memcpy(copy, whole, n);
        int rc = dmarc_from_domain(copy, n, out);
        crashes += rc < -1 || rc > 1;
        free(copy);
    }
    is_int(crashes, 0, "every prefix of a From: field gives -1, 0 or 1");

    /* Long and deep inputs: linear, bounded. */
    size_t big = 1u << 20;
    char *h = malloc(big + 64);
    strcpy(h, "From: ");
    size_t n = 6;
    while (n < big)
        h[n++] = '(';
    memcpy(h + n, "<a@example.org>\r\n", 17);
    n += 17;
    is_int(dmarc_from_domain(h, n, out), -1, "a million unclosed comments: -1");
    n = 6;
    while (n < big)
        h[n++] = 'a';
    memcpy(h + n, "@example.org\r\n", 14);
    n += 14;
    is_int(dmarc_from_domain(h, n, out), 1, "a local part of a million octets: read");
    n = strlen("From: a@");
    memcpy(h, "From: a@", n);
    while (n < 600)
        n += (size_t)sprintf(h + n, "a.");
    n += (size_t)sprintf(h + n, "org\r\n");
    is_int(dmarc_from_domain(h, n, out), -1, "a domain past DNS_NAME_MAX: -1");
    n = 0;
    while (n < big)
        n += (size_t)sprintf(h + n, "From: a@example.org\r\n");
    is_int(dmarc_from_domain(h, n, out), DMARC_FROM_SEVERAL, "fifty thousand From: fields: several");
    free(h);
}

/* --- records -------------------------------------------------------------- */

struct record_case {
    const char *txt;
    int rc;
    enum dmarc_policy p, sp;
    bool sp_given, adkim_strict, aspf_strict;
    unsigned pct;
    bool from_rua;
};

#define N DMARC_POLICY_NONE
#define Q DMARC_POLICY_QUARANTINE
#define R DMARC_POLICY_REJECT

static const struct record_case record_cases[] = {
    {"v=DMARC1; p=reject", 1, R, R, false, false, false, 100, false},
    {"v=DMARC1;p=none", 1, N, N, false, false, false, 100, false},
    {"v=DMARC1; p=quarantine;", 1, Q, Q, false, false, false, 100, false},
    {"  v = DMARC1 ;  p = Reject ; ", 1, R, R, false, false, false, 100, false},
    {"V=DMARC1; P=REJECT", 1, R, R, false, false, false, 100, false},
    {"v=DMARC1; p=reject; sp=none", 1, R, N, true, false, false, 100, false},
    {"v=DMARC1; p=none; sp=quarantine; adkim=s; aspf=s; pct=25", 1, N, Q, true, true, true, 25,
     false},
    {"v=DMARC1; p=reject; adkim=S; aspf=r", 1, R, R, false, true, false, 100, false},
    {"v=DMARC1; p=reject; adkim=x; aspf=strict", 1, R, R, false, false, false, 100, false},
    {"v=DMARC1; p=reject; pct=0", 1, R, R, false, false, false, 0, false},
    {"v=DMARC1; p=reject; pct=100", 1, R, R, false, false, false, 100, false},
    {"v=DMARC1; p=reject; pct=050", 1, R, R, false, false, false, 50, false},
    {"v=DMARC1; p=reject; pct=101", 1, R, R, false, false, false, 100, false},
    {"v=DMARC1; p=reject; pct=-1", 1, R, R, false, false, false, 100, false},
    {"v=DMARC1; p=reject; pct=1000", 1, R, R, false, false, false, 100, false},
    {"v=DMARC1; p=reject; pct=", 1, R, R, false, false, false, 100, false},
    {"v=DMARC1; p=reject; pct=5x", 1, R, R, false, false, false, 100, false},
    {"v=DMARC1; p=reject; fo=1; rf=afrf; ri=86400; ruf=mailto:f@x.test; future=yes", 1, R, R, false,
     false, false, 100, false},
    {"v=DMARC1; junk; p=reject", 1, R, R, false, false, false, 100, false},
    {"v=DMARC1; p=quarantine; p=reject", 1, Q, Q, false, false, false, 100, false},
    {"v=DMARC1; p=reject; sp=reject; sp=bogus", 1, R, R, true, false, false, 100, false},
    /* no valid p= (or a bad sp=): rua= saves it as p=none, else unusable */
    {"v=DMARC1", -1, N, N, false, false, false, 100, false},
    {"v=DMARC1;", -1, N, N, false, false, false, 100, false},
    {"v=DMARC1; p=bogus", -1, N, N, false, false, false, 100, false},
    {"v=DMARC1; p=", -1, N, N, false, false, false, 100, false},
    {"v=DMARC1; sp=reject", -1, N, N, false, false, false, 100, false},
    {"v=DMARC1; p=reject; sp=bogus", -1, N, N, false, false, false, 100, false},
    {"v=DMARC1; p=reject; rua=", 1, R, R, false, false, false, 100, false}, /* p= is good */
    {"v=DMARC1; p=bogus; rua=mailto:d@example.org", 1, N, N, false, false, false, 100, true},
    {"v=DMARC1; rua=mailto:d@example.org; adkim=s; pct=5; sp=reject", 1, N, N, false, false, false,
     100, true},
    {"v=DMARC1; p=reject; sp=x; rua=bad, mailto:d@example.org!10m", 1, N, N, false, false, false,
     100, true},
    {"v=DMARC1; p=bogus; rua=not a uri", -1, N, N, false, false, false, 100, false},
    {"v=DMARC1; p=bogus; rua=mailto:", -1, N, N, false, false, false, 100, false},
    {"v=DMARC1; p=bogus; rua=:x", -1, N, N, false, false, false, 100, false},
    /* no DMARC record at all */
    {"", 0, N, N, false, false, false, 100, false},
    {"v=spf1 -all", 0, N, N, false, false, false, 100, false},
    {"p=reject; v=DMARC1", 0, N, N, false, false, false, 100, false},
    {"v=dmarc1; p=reject", 0, N, N, false, false, false, 100, false},
    {"v=DMARC10; p=reject", 0, N, N, false, false, false, 100, false},
    {"v=DMARC1 p=reject", 0, N, N, false, false, false, 100, false},
    {"v=DMARC; p=reject", 0, N, N, false, false, false, 100, false},
    {"x v=DMARC1; p=reject", 0, N, N, false, false, false, 100, false},
    {";v=DMARC1; p=reject", 0, N, N, false, false, false, 100, false},
};

static void test_records(void)
{
    for (size_t i = 0; i < sizeof(record_cases) / sizeof(record_cases[0]); i++) {
        const struct record_case *c = &record_cases[i];
        struct dmarc_record r;
        memset(&r, 0xa5, sizeof(r));
        size_t len = strlen(c->txt);
        char *copy = malloc(len ? len : 1); /* not NUL-terminated: reads stay inside len */
        memcpy(copy, c->txt, len);
        int rc = dmarc_record_parse(copy, len, &r);
        free(copy);
        is_int(rc, c->rc, "record '%s'", c->txt);
        if (rc != 1 || c->rc != 1)
            continue;
        ok(r.p == c->p && r.sp == c->sp && r.sp_given == c->sp_given &&
               r.adkim_strict == c->adkim_strict && r.aspf_strict == c->aspf_strict &&
               r.pct == c->pct && r.p_from_rua == c->from_rua,
           "  p=%s sp=%s%s adkim=%c aspf=%c pct=%u%s", dmarc_policy_name(r.p),
           dmarc_policy_name(r.sp), r.sp_given ? "" : " (from p)", r.adkim_strict ? 's' : 'r',
           r.aspf_strict ? 's' : 'r', r.pct, r.p_from_rua ? " (rua)" : "");
    }
    struct dmarc_record r;
    const char nul[] = "v=DMARC1; p=reject\0; p=none";
    is_int(dmarc_record_parse(nul, sizeof(nul) - 1, &r), 0, "a record holding a NUL is none");
    is_int(dmarc_record_parse("v=DMARC1; p=reject", 8, &r), -1, "only len octets are read");
}

/* --- alignment and the verdict ---------------------------------------------- */

static struct psl *small_psl(const char *dir)
{
    char path[512], err[256];
    snprintf(path, sizeof(path), "%s/list.dat", dir);
    FILE *f = fopen(path, "w");
    fputs("com\norg\nuk\nco.uk\n*.ck\n!www.ck\n", f);
    fclose(f);
    struct psl *p = psl_load(path, err, sizeof(err));
    unlink(path);
    if (p == NULL) {
        printf("Bail out! %s\n", err);
        exit(1);
    }
    return p;
}

static void test_alignment(const struct psl *psl)
{
    ok(dmarc_aligned(psl, "example.org", "example.org", true), "strict: the same name");
    ok(dmarc_aligned(psl, "Example.ORG", "example.org.", true), "strict: case, final dot");
    ok(!dmarc_aligned(psl, "example.org", "mail.example.org", true), "strict: a subdomain is not");
    ok(dmarc_aligned(psl, "example.org", "mail.example.org", false), "relaxed: a subdomain is");
    ok(dmarc_aligned(psl, "a.example.org", "b.example.org", false), "relaxed: a sibling is");
    ok(!dmarc_aligned(psl, "example.org", "example.com", false), "relaxed: another org is not");
    ok(!dmarc_aligned(psl, "example.org", "badexample.org", false), "relaxed: a suffix string");
    ok(dmarc_aligned(psl, "a.example.co.uk", "example.co.uk", false), "relaxed: under co.uk");
    ok(!dmarc_aligned(psl, "example.co.uk", "other.co.uk", false), "relaxed: co.uk is a suffix");
    ok(!dmarc_aligned(psl, "a.foo.ck", "b.foo.ck", false), "relaxed: *.ck makes foo.ck a suffix");
    ok(dmarc_aligned(psl, "a.www.ck", "www.ck", false), "relaxed: !www.ck");
    ok(!dmarc_aligned(psl, "example.org", "", false), "an empty domain never aligns");
    ok(!dmarc_aligned(psl, "", "", true), "two empty domains do not either");

    is_int(dmarc_sampled_policy(R, 100, 99), R, "pct=100: always");
    is_int(dmarc_sampled_policy(R, 0, 0), Q, "pct=0: reject becomes quarantine");
    is_int(dmarc_sampled_policy(Q, 0, 0), N, "pct=0: quarantine becomes none");
    is_int(dmarc_sampled_policy(N, 0, 0), N, "pct=0: none stays none");
    is_int(dmarc_sampled_policy(R, 30, 29), R, "pct=30, roll 29: sampled in");
    is_int(dmarc_sampled_policy(R, 30, 30), Q, "pct=30, roll 30: sampled out");
}

static void test_evaluate(const struct psl *psl)
{
    struct dmarc_record rec = {.p = R, .sp = Q, .sp_given = true, .pct = 100};
    struct spf_outcome spf = {.result = SPF_PASS, .domain = "bounce.example.org"};
    struct dkim_result dkim[3];
    memset(dkim, 0, sizeof(dkim));
    struct dmarc_outcome o;

    dmarc_evaluate(psl, "example.org", "example.org", &rec, false, &spf, NULL, 0, 0, &o);
    ok(o.result == DMARC_PASS && o.spf_aligned && !o.dkim_aligned, "SPF relaxed-aligned: pass");
    is_int(o.applied, N, "a pass applies nothing");
    is_int(o.policy, R, "the policy is p=");
    is_str(o.from_domain, "example.org", "from_domain");
    is_str(o.policy_domain, "example.org", "policy_domain");

    rec.aspf_strict = true;
    dmarc_evaluate(psl, "example.org", "example.org", &rec, false, &spf, NULL, 0, 0, &o);
    ok(o.result == DMARC_FAIL && !o.spf_aligned, "aspf=s: a subdomain's SPF fails");
    is_int(o.applied, R, "p=reject applied");
    ok(strstr(o.why, "neither") != NULL, "why: %s", o.why);

    spf.result = SPF_SOFTFAIL;
    rec.aspf_strict = false;
    dmarc_evaluate(psl, "example.org", "example.org", &rec, false, &spf, NULL, 0, 0, &o);
    ok(o.result == DMARC_FAIL && !o.spf_aligned, "an aligned softfail does not count");

    spf.result = SPF_PASS;
    spf.helo = true;
    snprintf(spf.domain, sizeof(spf.domain), "mx.example.org");
    dmarc_evaluate(psl, "example.org", "example.org", &rec, false, &spf, NULL, 0, 0, &o);
    ok(o.result == DMARC_PASS && o.spf_aligned,
       "MAIL FROM <>: postmaster@HELO is the MAIL FROM identity (RFC 7208 2.4)");

    dmarc_evaluate(psl, "example.org", "example.org", &rec, false, NULL, NULL, 0, 0, &o);
    ok(o.result == DMARC_FAIL && !o.spf_aligned && !o.dkim_aligned, "no SPF, no DKIM: fail");

    spf.result = SPF_PASS;
    spf.helo = false;
    snprintf(spf.domain, sizeof(spf.domain), "other.example");
    dkim[0] = (struct dkim_result){.status = DKIM_FAIL, .domain = "example.org"};
    dkim[1] = (struct dkim_result){.status = DKIM_PASS, .domain = "list.example"};
    dkim[2] = (struct dkim_result){.status = DKIM_PASS, .domain = "mail.example.org"};
    dmarc_evaluate(psl, "example.org", "example.org", &rec, false, &spf, dkim, 3, 0, &o);
    ok(o.result == DMARC_PASS && o.dkim_aligned && !o.spf_aligned,
       "the third signature aligns (relaxed): pass");
    is_str(o.dkim_domain, "mail.example.org", "dkim_domain: the aligned one");
    rec.adkim_strict = true;
    dmarc_evaluate(psl, "example.org", "example.org", &rec, false, &spf, dkim, 3, 0, &o);
    ok(o.result == DMARC_FAIL && !o.dkim_aligned, "adkim=s: a subdomain's signature fails");
    is_str(o.dkim_domain, "list.example", "dkim_domain: the first passing one");
    dmarc_evaluate(psl, "example.org", "example.org", &rec, false, &spf, dkim, 1, 0, &o);
    is_str(o.dkim_domain, "", "dkim_domain: none passed");
    ok(!o.dkim_aligned, "a failed signature of the From domain does not align");

    /* sp= for a subdomain when the record is the org domain's; pct. */
    dmarc_evaluate(psl, "mail.example.org", "example.org", &rec, true, NULL, NULL, 0, 0, &o);
    ok(o.result == DMARC_FAIL && o.policy == Q && o.subdomain_policy && o.applied == Q,
       "sp=quarantine applies to a subdomain");
    rec.pct = 0;
    dmarc_evaluate(psl, "mail.example.org", "example.org", &rec, true, NULL, NULL, 0, 99, &o);
    ok(o.policy == Q && o.applied == N && o.pct == 0, "pct=0: quarantine applied as none");
    dmarc_evaluate(psl, "example.org", "example.org", &rec, false, NULL, NULL, 0, 0, &o);
    ok(o.policy == R && o.applied == Q, "pct=0: reject applied as quarantine");

    dmarc_outcome_unusable(0, NULL, &o);
    ok(o.result == DMARC_NONE && strstr(o.why, "no From") != NULL, "no From: none, %s", o.why);
    dmarc_outcome_unusable(-1, NULL, &o);
    ok(o.result == DMARC_PERMERROR && strstr(o.why, "readable") != NULL, "bad From: %s", o.why);
    dmarc_outcome_unusable(DMARC_FROM_SEVERAL, NULL, &o);
    ok(o.result == DMARC_PERMERROR && strstr(o.why, "several") != NULL, "several From: %s",
       o.why);

    is_str(dmarc_result_name(DMARC_TEMPERROR), "temperror", "result names");
    is_str(dmarc_policy_name(DMARC_POLICY_QUARANTINE), "quarantine", "policy names");
}

/* --- the check on a loop, with DNS that fails ------------------------------ */

static uv_loop_t loop;
static int cb_calls;
static bool inside_start;
static bool cb_inside_start;
static struct dmarc_outcome last;

static void on_outcome(void *ctx, const struct dmarc_outcome *o)
{
    (void)ctx;
    cb_calls++;
    cb_inside_start = cb_inside_start || inside_start;
    last = *o;
}

/* A callback that cancels its own check, as a session tearing down might. */
static void on_outcome_cancel(void *ctx, const struct dmarc_outcome *o)
{
    struct dmarc_check **c = ctx;
    cb_calls++;
    last = *o;
    dmarc_check_cancel(c);
}

static struct dns *failing_dns(void)
{
    char err[256];
    /* Port 9 on loopback: nothing answers (refused or silent), quickly. */
    struct dns *d = dns_new(&loop, "127.0.0.1:9", 100, 1, err, sizeof(err));
    if (d == NULL) {
        printf("Bail out! dns_new: %s\n", err);
        exit(1);
    }
    return d;
}

static void run_loop(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
}

static void test_check(const struct psl *psl)
{
    uv_loop_init(&loop);
    struct dns *d = failing_dns();
    struct spf_outcome spf = {.result = SPF_PASS, .domain = "example.org"};

    cb_calls = 0;
    inside_start = true;
    struct dmarc_check *c =
        dmarc_check_start(d, psl, "Example.ORG.", &spf, NULL, 0, on_outcome, NULL);
    inside_start = false;
    ok(c != NULL, "a check starts");
    is_int(cb_calls, 0, "cb does not run inside dmarc_check_start");
    run_loop();
    is_int(cb_calls, 1, "cb runs once");
    ok(!cb_inside_start, "and never inside the start");
    is_int(last.result, DMARC_TEMPERROR, "no DNS answer: temperror (%s)", last.why);
    is_str(last.from_domain, "example.org", "the From domain, normalized");

    cb_calls = 0;
    c = dmarc_check_start(d, psl, "example.org", &spf, NULL, 0, on_outcome, NULL);
    dmarc_check_cancel(&c);
    ok(c == NULL, "cancel sets the pointer to NULL");
    dmarc_check_cancel(&c); /* NULL: a no-op */
    run_loop();
    is_int(cb_calls, 0, "cancelled with its question out: cb never runs, the answer frees it");

    cb_calls = 0;
    c = dmarc_check_start(d, psl, "example.org", NULL, NULL, 0, on_outcome_cancel, &c);
    run_loop();
    is_int(cb_calls, 1, "a cb that cancels its own check runs once");
    ok(c == NULL, "and its pointer is NULL");

    /* The resolver freed with checks out: one answered, one detached. */
    cb_calls = 0;
    struct dmarc_check *kept =
        dmarc_check_start(d, psl, "example.org", &spf, NULL, 0, on_outcome, NULL);
    struct dmarc_check *dropped =
        dmarc_check_start(d, psl, "example.org", &spf, NULL, 0, on_outcome, NULL);
    ok(kept != NULL && dropped != NULL, "two checks start");
    dmarc_check_cancel(&dropped);
    dns_free(&d);
    is_int(cb_calls, 1, "dns_free: the check still out is answered, the cancelled one not");
    is_int(last.result, DMARC_TEMPERROR, "as temperror (%s)", last.why);
    run_loop();

    /* No check for what is no domain. */
    d = failing_dns();
    const char *bad[] = {"", ".", "a..b", "exa mple.org", "a\\b.org"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ok(dmarc_check_start(d, psl, bad[i], NULL, NULL, 0, on_outcome, NULL) == NULL,
           "no check for '%s'", bad[i]);
    dns_free(&d);
    run_loop();
    is_int(uv_loop_close(&loop), 0, "every handle closed");
}

int main(void)
{
    char dir[] = "/tmp/kotak-test-dmarc-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        printf("Bail out! mkdtemp\n");
        return 1;
    }
    struct psl *psl = small_psl(dir);
    rmdir(dir);
    test_from();
    test_records();
    test_alignment(psl);
    test_evaluate(psl);
    test_check(psl);
    psl_free(&psl);
    return done_testing();
}
