/*
 * dmarc.c — DMARC (RFC 7489); see dmarc.h.
 *
 * Three pure parts: the From: domain of a header section (a small
 * tokenizer over RFC 5322 3.4's address syntax, walked once, in place),
 * the policy record (6.3's tag list), and the verdict (3.1's alignment,
 * 6.6.4's pct). The check glues them to two DNS questions at most.
 *
 * A check with a question out cannot take it back (the resolver has no
 * per-query cancel), so cancelling then only detaches the check: the
 * answer, when it comes, finds it detached and frees it.
 */
#include "dmarc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

const char *dmarc_result_name(enum dmarc_result r)
{
    switch (r) {
    case DMARC_NONE:
        return "none";
    case DMARC_PASS:
        return "pass";
    case DMARC_FAIL:
        return "fail";
    case DMARC_TEMPERROR:
        return "temperror";
    case DMARC_PERMERROR:
        return "permerror";
    }
    return "permerror";
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
    switch (p) {
    case DMARC_POLICY_NONE:
        return "none";
    case DMARC_POLICY_QUARANTINE:
        return "quarantine";
    case DMARC_POLICY_REJECT:
        return "reject";
    }
    return "none";
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* --- the From: domain ----------------------------------------------------- */

/* RFC 5322 3.2.3's atext, plus octets above 127 (RFC 6532's UTF-8 names). */
static bool is_atext(unsigned char c)
{
    if (c >= 0x80)
        return true;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

enum tok {
    TOK_END,
    TOK_BAD, /* a character no address may hold there, or an unclosed quote or comment */
    TOK_ATOM,
    TOK_QUOTED,
    TOK_LITERAL, /* [domain literal] */
    TOK_SPECIAL, /* one of < > @ , : ; . */
};

struct lexer {
    const char *p, *end;
    const char *tok; /* the last token's first octet and length */
    size_t tok_len;
};

/* Skips folding white space and comments (nested, with quoted pairs). */
static bool skip_cfws(struct lexer *lx)
{
    while (lx->p < lx->end) {
        char c = *lx->p;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            lx->p++;
        } else if (c == '(') {
            size_t depth = 0;
            for (; lx->p < lx->end; lx->p++) {
                if (*lx->p == '\\' && lx->p + 1 < lx->end)
                    lx->p++;
                else if (*lx->p == '(')
                    depth++;
                else if (*lx->p == ')' && --depth == 0)
                    break;
            }
            if (lx->p == lx->end)
                return false; /* unclosed comment */
            lx->p++;
        } else {
            break;
        }
    }
    return true;
}

/* Scans to the close of a quoted string or domain literal; false when there is none. */
static bool scan_closed(struct lexer *lx, char close)
{
    for (lx->p++; lx->p < lx->end; lx->p++) {
        if (*lx->p == '\\' && lx->p + 1 < lx->end)
            lx->p++;
        else if (*lx->p == close)
            break;
    }
    if (lx->p == lx->end)
        return false;
    lx->p++;
    return true;
}

static enum tok next_token(struct lexer *lx)
{
    if (!skip_cfws(lx))
        return TOK_BAD;
    if (lx->p == lx->end)
        return TOK_END;
    lx->tok = lx->p;
    unsigned char c = (unsigned char)*lx->p;
    enum tok t;
    if (c == '"') {
        t = scan_closed(lx, '"') ? TOK_QUOTED : TOK_BAD;
    } else if (c == '[') {
        t = scan_closed(lx, ']') ? TOK_LITERAL : TOK_BAD;
    } else if (strchr("<>@,:;.", c) != NULL && c != '\0') {
        lx->p++;
        t = TOK_SPECIAL;
    } else if (is_atext(c)) {
        while (lx->p < lx->end && is_atext((unsigned char)*lx->p))
            lx->p++;
        t = TOK_ATOM;
    } else {
        return TOK_BAD;
    }
    lx->tok_len = (size_t)(lx->p - lx->tok);
    return t;
}

/* One mailbox of the list, as it is read. */
struct mailbox {
    bool seen;     /* it holds something: it counts as an address */
    bool bad;      /* it cannot be read */
    bool angle;    /* "<" seen */
    bool in_angle; /* between "<" and ">" */
    bool closed;   /* ">" seen: only comments may follow */
    bool at;       /* "@" seen: the domain is being read */
    bool dom_dot;  /* the domain so far ends in "." or is empty: an atom may follow */
    bool dom_bad;  /* the domain is no domain name (a literal, a quoted string, too long) */
    size_t dom_len;
    char dom[DNS_NAME_MAX + 1];
};

/* What the whole field has given so far. */
struct from_list {
    size_t addresses;
    bool bad;   /* an address could not be read */
    bool mixed; /* addresses in different domains */
    char domain[DNS_NAME_MAX + 1];
};

static void mailbox_reset(struct mailbox *m)
{
    memset(m, 0, sizeof(*m));
}

static void start_domain(struct mailbox *m)
{
    m->at = true;
    m->dom_dot = true;
    m->dom_bad = false;
    m->dom_len = 0;
}

/*
 * An atom or a dot after "@": the domain is atoms between dots (RFC 5322
 * 3.4.1, with 4.4's CFWS around them). Two atoms in a row, or two dots,
 * make it no domain.
 */
static void add_to_domain(struct mailbox *m, const char *s, size_t n, bool dot)
{
    if (!m->at)
        return;
    if (dot != !m->dom_dot || m->dom_len + n > DNS_NAME_MAX) {
        m->dom_bad = true;
        return;
    }
    m->dom_dot = dot;
    for (size_t i = 0; i < n; i++)
        m->dom[m->dom_len++] = lower(s[i]);
}

/* The mailbox ends (a comma, a group's end, the field's end): what did it give? */
static void mailbox_done(struct from_list *l, struct mailbox *m)
{
    if (!m->seen) {
        mailbox_reset(m); /* an empty list element (RFC 5322 4.4's obs-mbox-list) */
        return;
    }
    l->addresses++;
    m->dom[m->dom_len] = '\0';
    if (m->bad || m->in_angle || !m->at || m->dom_bad || m->dom_dot || !dns_name_valid(m->dom)) {
        l->bad = true;
    } else if (l->domain[0] == '\0') {
        memcpy(l->domain, m->dom, m->dom_len + 1);
    } else if (strcmp(l->domain, m->dom) != 0) {
        l->mixed = true;
    }
    mailbox_reset(m);
}

/* One special character of the list, as RFC 5322 3.4 and 4.4 place them. */
static void on_special(struct from_list *l, struct mailbox *m, bool *in_group, char c)
{
    switch (c) {
    case '<':
        /* An unquoted "@" in a display name is no address of RFC 5322 3.4. */
        if (m->angle || m->at)
            m->bad = true;
        m->seen = m->angle = m->in_angle = true;
        break;
    case '>':
        if (!m->in_angle)
            m->bad = true;
        m->in_angle = false;
        m->closed = true;
        break;
    case '@':
        if (m->at || m->closed)
            m->bad = true;
        m->seen = true;
        start_domain(m);
        break;
    case '.':
        m->seen = true;
        if (m->closed)
            m->bad = true;
        add_to_domain(m, ".", 1, true);
        break;
    case ',':
        if (m->in_angle) { /* between the hops of an obsolete route, "<@a,@b:x@y>" */
            m->at = false;
            m->dom_len = 0;
        } else {
            mailbox_done(l, m);
        }
        break;
    case ':':
        if (m->in_angle) { /* the end of an obsolete route */
            m->at = false;
            m->dom_len = 0;
        } else if (!*in_group && !m->angle && !m->at) {
            *in_group = true; /* "name:" starts a group: the name is no address */
            mailbox_reset(m);
        } else {
            m->seen = m->bad = true;
        }
        break;
    case ';':
        if (*in_group && !m->in_angle) {
            mailbox_done(l, m);
            *in_group = false;
        } else {
            m->seen = m->bad = true;
        }
        break;
    }
}

/* Reads one From: field's value; false when it cannot be read at all. */
static bool read_from_value(const char *p, const char *end, struct from_list *l)
{
    struct lexer lx = {.p = p, .end = end};
    struct mailbox m;
    bool in_group = false;
    mailbox_reset(&m);
    for (;;) {
        enum tok t = next_token(&lx);
        switch (t) {
        case TOK_END:
            if (m.in_angle)
                m.bad = true;
            mailbox_done(l, &m); /* a group left open at the end is forgiven */
            return true;
        case TOK_BAD:
            return false;
        case TOK_ATOM:
            m.seen = true;
            if (m.closed)
                m.bad = true;
            add_to_domain(&m, lx.tok, lx.tok_len, false);
            break;
        case TOK_QUOTED:
        case TOK_LITERAL:
            m.seen = true;
            if (m.closed || (t == TOK_LITERAL && !m.at))
                m.bad = true;
            if (m.at)
                m.dom_bad = true;
            break;
        case TOK_SPECIAL:
            on_special(l, &m, &in_group, *lx.tok);
            break;
        }
    }
}

/* The value of the field line [p, end) if it is From: (RFC 5322 3.6.2, 4.5.2's obs-from). */
static const char *from_value(const char *p, const char *end)
{
    if (end - p < 5 || strncasecmp(p, "from", 4) != 0)
        return NULL;
    p += 4;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p < end && *p == ':' ? p + 1 : NULL;
}

int dmarc_from_domain(const char *hdr, size_t len, char out[DNS_NAME_MAX + 1])
{
    const char *p = hdr, *end = hdr + len;
    const char *value = NULL, *value_end = NULL;
    size_t fields = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol == NULL ? end : eol + 1;
        if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))
            break; /* the empty line: the header section ends */
        if (*p == ' ' || *p == '\t') {
            if (value != NULL && value_end == p)
                value_end = next; /* a continuation line of the From: field */
        } else {
            const char *v = from_value(p, next);
            if (v != NULL) {
                fields++;
                value = v;
                value_end = next;
            }
        }
        p = next;
    }
    if (fields == 0)
        return 0;
    if (fields > 1)
        return DMARC_FROM_SEVERAL;
    struct from_list l;
    memset(&l, 0, sizeof(l));
    if (!read_from_value(value, value_end, &l) || l.addresses == 0 || l.bad)
        return -1;
    if (l.mixed)
        return DMARC_FROM_SEVERAL;
    memcpy(out, l.domain, strlen(l.domain) + 1);
    return 1;
}

/* --- the record ----------------------------------------------------------- */

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* [*p, *end) without the white space around it. */
static void trim(const char **p, const char **end)
{
    while (*p < *end && is_wsp(**p))
        (*p)++;
    while (*end > *p && is_wsp((*end)[-1]))
        (*end)--;
}

static bool token_is(const char *p, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - p) == n && strncasecmp(p, word, n) == 0;
}

/* p=, sp=: 1 with the policy, 0 for a bad value. */
static int parse_policy(const char *v, const char *end, enum dmarc_policy *p_r)
{
    if (token_is(v, end, "none"))
        *p_r = DMARC_POLICY_NONE;
    else if (token_is(v, end, "quarantine"))
        *p_r = DMARC_POLICY_QUARANTINE;
    else if (token_is(v, end, "reject"))
        *p_r = DMARC_POLICY_REJECT;
    else
        return 0;
    return 1;
}

/* pct=: 1*3DIGIT up to 100 (6.3), else the default. */
static unsigned parse_pct(const char *v, const char *end)
{
    if (end - v < 1 || end - v > 3)
        return 100;
    unsigned n = 0;
    for (; v < end; v++) {
        if (*v < '0' || *v > '9')
            return 100;
        n = n * 10 + (unsigned)(*v - '0');
    }
    return n <= 100 ? n : 100;
}

/* Whether a rua= list holds at least one URI that reads as one (RFC 3986's scheme ":" ...). */
static bool has_valid_uri(const char *v, const char *end)
{
    while (v < end) {
        const char *comma = memchr(v, ',', (size_t)(end - v));
        const char *u = v, *u_end = comma == NULL ? end : comma;
        trim(&u, &u_end);
        const char *s = u;
        if (s < u_end && ((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z')) {
            while (s < u_end && (((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z') ||
                                 (*s >= '0' && *s <= '9') || *s == '+' || *s == '-' || *s == '.'))
                s++;
            bool spaceless = true;
            for (const char *q = s; q < u_end; q++)
                spaceless = spaceless && !is_wsp(*q);
            if (s < u_end && *s == ':' && u_end - s > 1 && spaceless)
                return true;
        }
        v = comma == NULL ? end : comma + 1;
    }
    return false;
}

/* The first element must be "v=DMARC1", exactly so (6.4: "DMARC1" is case-sensitive). */
static bool version_first(const char *p, const char *end)
{
    trim(&p, &end);
    if (p == end || (*p != 'v' && *p != 'V'))
        return false;
    p++;
    while (p < end && is_wsp(*p))
        p++;
    if (p == end || *p != '=')
        return false;
    p++;
    while (p < end && is_wsp(*p))
        p++;
    return end - p == 6 && memcmp(p, "DMARC1", 6) == 0;
}

int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r_r)
{
    const char *p = txt, *end = txt + len;
    if (memchr(txt, '\0', len) != NULL)
        return 0;
    const char *semi = memchr(p, ';', len);
    if (!version_first(p, semi == NULL ? end : semi))
        return 0;
    struct dmarc_record r = {.pct = 100};
    bool p_seen = false, p_ok = false, sp_seen = false, sp_ok = true, adkim_seen = false,
         aspf_seen = false, pct_seen = false, rua_ok = false;
    p = semi == NULL ? end : semi + 1;
    while (p < end) {
        semi = memchr(p, ';', (size_t)(end - p));
        const char *el = p, *el_end = semi == NULL ? end : semi;
        p = semi == NULL ? end : semi + 1;
        const char *eq = memchr(el, '=', (size_t)(el_end - el));
        if (eq == NULL)
            continue; /* no tag=value: ignored, as an unknown tag is */
        const char *name = el, *name_end = eq, *v = eq + 1, *v_end = el_end;
        trim(&name, &name_end);
        trim(&v, &v_end);
        if (token_is(name, name_end, "p") && !p_seen) {
            p_seen = true;
            p_ok = parse_policy(v, v_end, &r.p) == 1;
        } else if (token_is(name, name_end, "sp") && !sp_seen) {
            sp_seen = true;
            sp_ok = parse_policy(v, v_end, &r.sp) == 1;
        } else if (token_is(name, name_end, "adkim") && !adkim_seen) {
            adkim_seen = true;
            r.adkim_strict = token_is(v, v_end, "s");
        } else if (token_is(name, name_end, "aspf") && !aspf_seen) {
            aspf_seen = true;
            r.aspf_strict = token_is(v, v_end, "s");
        } else if (token_is(name, name_end, "pct") && !pct_seen) {
            pct_seen = true;
            r.pct = parse_pct(v, v_end);
        } else if (token_is(name, name_end, "rua")) {
            rua_ok = rua_ok || has_valid_uri(v, v_end);
        }
    }
    if (!p_ok || !sp_ok) {
        if (!rua_ok)
            return -1;
        /* 6.6.3 step 6: as if the record were "v=DMARC1; p=none". */
        r = (struct dmarc_record){.p = DMARC_POLICY_NONE, .pct = 100, .p_from_rua = true};
        sp_seen = false;
    }
    r.sp_given = sp_seen;
    if (!sp_seen)
        r.sp = r.p;
    *r_r = r;
    return 1;
}

/* --- the verdict ---------------------------------------------------------- */

/* name in lower case without a final dot; false when it is empty or too long. */
static bool normalize(const char *name, char out[DNS_NAME_MAX + 1])
{
    size_t n = strnlen(name, DNS_NAME_MAX + 2);
    if (n > 0 && name[n - 1] == '.')
        n--;
    if (n == 0 || n > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        out[i] = lower(name[i]);
    out[n] = '\0';
    return true;
}

bool dmarc_aligned(const struct psl *psl, const char *from_domain, const char *domain, bool strict)
{
    char a[DNS_NAME_MAX + 1], b[DNS_NAME_MAX + 1];
    if (!normalize(from_domain, a) || !normalize(domain, b))
        return false;
    if (strict)
        return strcmp(a, b) == 0;
    char org_a[DNS_NAME_MAX + 1], org_b[DNS_NAME_MAX + 1];
    psl_org_domain(psl, a, org_a);
    psl_org_domain(psl, b, org_b);
    return org_a[0] != '\0' && strcmp(org_a, org_b) == 0;
}

enum dmarc_policy dmarc_sampled_policy(enum dmarc_policy policy, unsigned pct, unsigned roll)
{
    if (roll < pct)
        return policy;
    return policy == DMARC_POLICY_REJECT ? DMARC_POLICY_QUARANTINE : DMARC_POLICY_NONE;
}

/* A sentence into o->why, cut short if it must be (a long name in it). */
static void say_why(struct dmarc_outcome *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say_why(struct dmarc_outcome *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->why, sizeof(o->why), fmt, ap);
    va_end(ap);
}

static void copy_name(char out[DNS_NAME_MAX + 1], const char *name)
{
    snprintf(out, DNS_NAME_MAX + 1, "%s", name == NULL ? "" : name);
}

void dmarc_evaluate(const struct psl *psl, const char *from_domain, const char *policy_domain,
                    const struct dmarc_record *rec, bool use_sp, const struct spf_outcome *spf,
                    const struct dkim_result *dkim, size_t n_dkim, unsigned roll,
                    struct dmarc_outcome *o)
{
    memset(o, 0, sizeof(*o));
    copy_name(o->from_domain, from_domain);
    copy_name(o->policy_domain, policy_domain);
    o->subdomain_policy = use_sp;
    o->policy = use_sp ? rec->sp : rec->p;
    o->pct = rec->pct;
    o->spf_aligned = spf != NULL && spf->result == SPF_PASS &&
                     dmarc_aligned(psl, from_domain, spf->domain, rec->aspf_strict);
    const char *first_pass = NULL;
    for (size_t i = 0; i < n_dkim && !o->dkim_aligned; i++) {
        if (dkim[i].status != DKIM_PASS)
            continue;
        if (first_pass == NULL)
            first_pass = dkim[i].domain;
        if (dmarc_aligned(psl, from_domain, dkim[i].domain, rec->adkim_strict)) {
            o->dkim_aligned = true;
            copy_name(o->dkim_domain, dkim[i].domain);
        }
    }
    if (!o->dkim_aligned && first_pass != NULL)
        copy_name(o->dkim_domain, first_pass);
    if (o->spf_aligned || o->dkim_aligned) {
        o->result = DMARC_PASS;
        o->applied = DMARC_POLICY_NONE;
        say_why(o, "%s%s%s aligned with %s", o->spf_aligned ? "SPF" : "",
                o->spf_aligned && o->dkim_aligned ? " and " : "", o->dkim_aligned ? "DKIM" : "",
                o->from_domain);
    } else {
        o->result = DMARC_FAIL;
        o->applied = dmarc_sampled_policy(o->policy, rec->pct, roll);
        say_why(o, "neither SPF nor DKIM aligned with %s", o->from_domain);
    }
}

void dmarc_outcome_unusable(int rc, const char *from_domain, struct dmarc_outcome *o)
{
    memset(o, 0, sizeof(*o));
    o->result = rc == 0 ? DMARC_NONE : DMARC_PERMERROR;
    o->pct = 100;
    if (rc == 0) {
        say_why(o, "no From: field");
    } else if (rc == DMARC_FROM_SEVERAL) {
        say_why(o, "several From: fields or domains");
    } else if (rc < 0) {
        say_why(o, "a From: without a readable domain");
    } else {
        copy_name(o->from_domain, from_domain);
        say_why(o, "the From: domain cannot carry a DMARC policy");
    }
}

/* --- the check ------------------------------------------------------------ */

struct dmarc_check {
    struct dns *dns;
    const struct psl *psl;
    char from[DNS_NAME_MAX + 1];
    char org[DNS_NAME_MAX + 1];
    char asked[DNS_NAME_MAX + 1]; /* the domain whose _dmarc is out */
    bool have_spf;
    struct spf_outcome spf;
    struct dkim_result *dkim;
    size_t n_dkim;
    void (*cb)(void *ctx, const struct dmarc_outcome *o);
    void *ctx;
    bool detached; /* cancelled with a question out: the answer frees it */
    bool in_cb;
    struct dmarc_outcome out;
};

static void check_free(struct dmarc_check *c)
{
    free(c->dkim);
    free(c);
}

static void finish(struct dmarc_check *c)
{
    c->in_cb = true;
    c->cb(c->ctx, &c->out);
    check_free(c);
}

static void finish_with(struct dmarc_check *c, enum dmarc_result result, const char *fmt,
                        const char *name)
{
    memset(&c->out, 0, sizeof(c->out));
    c->out.result = result;
    c->out.pct = 100;
    copy_name(c->out.from_domain, c->from);
    say_why(&c->out, fmt, name);
    finish(c);
}

/* Whether "_dmarc." + domain is a name DNS can carry. */
static bool askable(const char *domain)
{
    return strlen(domain) + 7 <= DNS_NAME_MAX;
}

static void on_txt(void *ctx, enum dns_status status, const char *const *records,
                   const size_t *lens, size_t n);

/* Asks for _dmarc.domain: 0, or a negative code (cb of the resolver never runs). */
static int ask(struct dmarc_check *c, const char *domain)
{
    char name[DNS_NAME_MAX + 1];
    copy_name(c->asked, domain);
    snprintf(name, sizeof(name), "_dmarc.%s", domain);
    return dns_txt(c->dns, name, on_txt, c);
}

/* The records at _dmarc.asked: judge by the one DMARC record, or say why not. */
static void judge(struct dmarc_check *c, const char *const *records, const size_t *lens, size_t n)
{
    struct dmarc_record rec = {.pct = 100}, r;
    size_t found = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        int this_rc = dmarc_record_parse(records[i], lens[i], &r);
        if (this_rc == 0)
            continue;
        if (found++ == 0) {
            rc = this_rc;
            rec = r;
        }
    }
    if (found > 1) {
        finish_with(c, DMARC_NONE, "several DMARC records at _dmarc.%s", c->asked);
    } else if (rc < 0) {
        finish_with(c, DMARC_NONE, "the DMARC record at _dmarc.%s has no valid p=", c->asked);
    } else {
        bool use_sp = strcmp(c->asked, c->from) != 0;
        dmarc_evaluate(c->psl, c->from, c->asked, &rec, use_sp, c->have_spf ? &c->spf : NULL,
                       c->dkim, c->n_dkim, arc4random_uniform(100), &c->out);
        finish(c);
    }
}

static bool holds_dmarc_record(const char *const *records, const size_t *lens, size_t n)
{
    struct dmarc_record r;
    for (size_t i = 0; i < n; i++)
        if (dmarc_record_parse(records[i], lens[i], &r) != 0)
            return true;
    return false;
}

static void on_txt(void *ctx, enum dns_status status, const char *const *records,
                   const size_t *lens, size_t n)
{
    struct dmarc_check *c = ctx;
    if (c->detached) {
        check_free(c);
        return;
    }
    if (status == DNS_TEMPFAIL || status == DNS_CANCELLED) {
        finish_with(c, DMARC_TEMPERROR,
                    status == DNS_TEMPFAIL ? "DNS failed for _dmarc.%s"
                                           : "the resolver closed asking for _dmarc.%s",
                    c->asked);
        return;
    }
    if (status == DNS_OK && holds_dmarc_record(records, lens, n)) {
        judge(c, records, lens, n);
        return;
    }
    /* 6.6.3 step 3: none at the From domain, so ask its Organizational Domain. */
    if (strcmp(c->asked, c->from) == 0 && strcmp(c->org, c->from) != 0 && askable(c->org)) {
        int rc = ask(c, c->org);
        if (rc == 0)
            return;
        finish_with(c, DMARC_TEMPERROR, "the resolver closed asking for _dmarc.%s", c->org);
        return;
    }
    finish_with(c, DMARC_NONE, "no DMARC record for %s", c->from);
}

struct dmarc_check *dmarc_check_start(struct dns *dns, const struct psl *psl,
                                      const char *from_domain, const struct spf_outcome *spf,
                                      const struct dkim_result *dkim, size_t n_dkim,
                                      void (*cb)(void *ctx, const struct dmarc_outcome *o),
                                      void *ctx)
{
    char from[DNS_NAME_MAX + 1];
    if (!normalize(from_domain, from) || !dns_name_valid(from))
        return NULL;
    struct dmarc_check *c = xcalloc(1, sizeof(*c));
    c->dns = dns;
    c->psl = psl;
    memcpy(c->from, from, sizeof(from));
    psl_org_domain(psl, from, c->org);
    c->have_spf = spf != NULL;
    if (spf != NULL)
        c->spf = *spf;
    if (n_dkim > 0) {
        c->dkim = xmalloc(n_dkim * sizeof(*dkim));
        memcpy(c->dkim, dkim, n_dkim * sizeof(*dkim));
        c->n_dkim = n_dkim;
    }
    c->cb = cb;
    c->ctx = ctx;
    /* A From domain too long for "_dmarc." cannot have a record: its org domain may. */
    const char *first = askable(c->from) ? c->from : askable(c->org) ? c->org : NULL;
    if (first == NULL || ask(c, first) != 0) {
        check_free(c);
        return NULL;
    }
    return c;
}

void dmarc_check_cancel(struct dmarc_check **cp)
{
    if (cp == NULL || *cp == NULL)
        return;
    struct dmarc_check *c = *cp;
    *cp = NULL;
    if (c->in_cb)
        return; /* finish() frees it once cb returns */
    /* Before cb a question is always out: its answer frees the check. */
    c->detached = true;
}
