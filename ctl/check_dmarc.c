/*
 * check_dmarc.c — `kotak check dmarc IP MAIL-FROM [HELO] < MESSAGE`: the
 * DMARC verdict kotak-smtpd's MX would reach on a message, asked by hand,
 * through the same checks (mailauth/spf.c, dkim.c, dmarc.c) against the
 * DNS servers of the config and Debian's public suffix list.
 *
 * Standard output holds one line whose first word is the result (pass
 * fail none temperror permerror), then the policy applied with what the
 * record asks, and the identifiers with whether each is aligned:
 *
 *   fail policy=reject (p=reject) header.from=example.org spf=pass
 *   smtp.mailfrom=other.example (not aligned) dkim=none (not aligned)
 *
 * (one line). Standard error says why, with SPF's and each signature's
 * verdict. Every result exits 0: only a bad argument is an error (exit 2).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "ctl.h"
#include "dkim.h"
#include "dmarc.h"
#include "dns.h"
#include "psl.h"
#include "spf.h"
#include "util.h"

static const char usage[] =
    "kotak check dmarc IP MAIL-FROM [HELO] < MESSAGE   (MAIL-FROM \"\" or \"<>\" for the null "
    "sender: then HELO is checked by SPF)";

#define READ_PIECE (64u << 10)

struct state {
    bool spf_done, dkim_done, dmarc_done;
    struct spf_outcome spf;
    struct dmarc_outcome dmarc;
};

static void on_spf(void *ctx, const struct spf_outcome *o)
{
    struct state *s = ctx;
    s->spf = *o;
    s->spf_done = true;
}

static void on_dkim(void *ctx)
{
    struct state *s = ctx;
    s->dkim_done = true;
}

static void on_dmarc(void *ctx, const struct dmarc_outcome *o)
{
    struct state *s = ctx;
    s->dmarc = *o;
    s->dmarc_done = true;
}

/* Feeds standard input to the verifier, up to [limits] message_size. */
static void read_message(struct dkim_verify *v, uint64_t max)
{
    char *piece = xmalloc(READ_PIECE);
    uint64_t total = 0;
    size_t n;
    while ((n = fread(piece, 1, READ_PIECE, stdin)) > 0) {
        total += n;
        if (total > max)
            ctl_die("the message on standard input is larger than [limits] message_size (%llu "
                    "octets); give a smaller one or raise the limit",
                    (unsigned long long)max);
        dkim_verify_feed(v, piece, n);
    }
    if (ferror(stdin))
        ctl_die("cannot read the message from standard input");
    free(piece);
    dkim_verify_finish(v);
}

/* Runs the loop until *done, or until nothing is left to wait for. */
static void run_until(uv_loop_t *loop, const bool *done_a, const bool *done_b)
{
    while (!(*done_a && *done_b) && uv_run(loop, UV_RUN_ONCE) != 0)
        ;
}

/* The signature to show: the one DMARC named (aligned, else passing), else the first. */
static const struct dkim_result *shown_signature(const struct dkim_result *sigs, size_t n,
                                                 const char *dmarc_domain)
{
    for (size_t i = 0; i < n && dmarc_domain[0] != '\0'; i++)
        if (sigs[i].status == DKIM_PASS && strcmp(sigs[i].domain, dmarc_domain) == 0)
            return &sigs[i];
    return n > 0 ? &sigs[0] : NULL;
}

static void print_line(const struct dmarc_outcome *o, const struct spf_outcome *spf, bool spf_ran,
                       const struct dkim_result *sig)
{
    bool judged = o->result == DMARC_PASS || o->result == DMARC_FAIL;
    printf("%s", dmarc_result_name(o->result));
    if (judged) {
        printf(" policy=%s (%s=%s", dmarc_policy_name(o->applied), o->subdomain_policy ? "sp" : "p",
               dmarc_policy_name(o->policy));
        if (o->pct != 100)
            printf(" pct=%u", o->pct);
        printf(")");
    } else {
        printf(" policy=none");
    }
    printf(" header.from=%s", o->from_domain[0] ? o->from_domain : "(none)");
    printf(" spf=%s", spf_ran ? spf_result_name(spf->result) : "none");
    if (spf_ran && spf->domain[0] != '\0')
        printf(" smtp.%s=%s", spf->helo ? "helo" : "mailfrom", spf->domain);
    if (judged)
        printf(" (%s)", o->spf_aligned ? "aligned" : "not aligned");
    printf(" dkim=%s", sig == NULL ? "none" : dkim_status_name(sig->status));
    if (sig != NULL && sig->domain[0] != '\0')
        printf(" header.d=%s", sig->domain);
    if (judged)
        printf(" (%s)", o->dkim_aligned ? "aligned" : "not aligned");
    else
        printf(" (%s)", o->why);
    printf("\n");
}

int ctl_check_dmarc(const struct ctl *c)
{
    struct ctl_envelope env;
    ctl_check_envelope(c, usage, &env);
    const char *ip = env.ip, *helo = env.helo;
    char *sender = env.sender;

    struct conf conf;
    ctl_load_conf(c, &conf);
    char err[512];
    struct psl *psl = psl_load(PSL_DEFAULT_PATH, err, sizeof(err));
    if (psl == NULL)
        ctl_die("%s; install Debian's publicsuffix package", err);
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        ctl_die("cannot start an event loop");
    struct dns *dns = dns_new(&loop, conf.dns_servers, 0, 0, err, sizeof(err));
    if (dns == NULL)
        ctl_die("[dns] servers: %s", err);

    struct dkim_verify *v = dkim_verify_new();
    read_message(v, conf.limits.message_size);
    size_t hdr_len = 0;
    const char *hdr = dkim_verify_header(v, &hdr_len);
    char from[DNS_NAME_MAX + 1] = "";
    int from_rc = hdr == NULL ? -1 : dmarc_from_domain(hdr, hdr_len, from);

    struct state s = {0};
    struct spf_check *spf = spf_check_start(dns, ip, sender, helo, on_spf, &s);
    /* 1: every verdict known from the message alone; < 0: the resolver closing. Then no cb. */
    s.dkim_done = dkim_verify_keys(v, dns, time(NULL), on_dkim, &s) != 0;
    run_until(&loop, &s.spf_done, &s.dkim_done);
    if (!s.spf_done) { /* the loop ran dry: cannot happen while a question is out */
        spf_check_cancel(&spf);
        s.spf.result = SPF_TEMPERROR;
    }
    dkim_verify_check(v); /* the keys that came */

    size_t n_sigs = s.dkim_done ? dkim_verify_count(v) : 0;
    struct dkim_result *sigs = xcalloc(n_sigs ? n_sigs : 1, sizeof(*sigs));
    for (size_t i = 0; i < n_sigs; i++)
        sigs[i] = *dkim_verify_result(v, i);

    struct dmarc_check *check = NULL;
    if (from_rc == 1)
        check = dmarc_check_start(dns, psl, from, &s.spf, sigs, n_sigs, on_dmarc, &s);
    if (check == NULL) {
        dmarc_outcome_unusable(from_rc, from, &s.dmarc);
        if (hdr == NULL)
            snprintf(s.dmarc.why, sizeof(s.dmarc.why), "the header section is too long to read");
        s.dmarc_done = true;
    }
    run_until(&loop, &s.dmarc_done, &s.dmarc_done);
    if (!s.dmarc_done) {
        dmarc_check_cancel(&check);
        s.dmarc.result = DMARC_TEMPERROR;
        snprintf(s.dmarc.why, sizeof(s.dmarc.why), "the check ended without an answer");
    }

    print_line(&s.dmarc, &s.spf, s.spf_done, shown_signature(sigs, n_sigs, s.dmarc.dkim_domain));
    fprintf(stderr, "dmarc: %s for %s: %s\n", dmarc_result_name(s.dmarc.result),
            s.dmarc.from_domain[0] ? s.dmarc.from_domain : "(no From domain)", s.dmarc.why);
    fprintf(stderr, "spf: %s for %s%s: %s\n", spf_result_name(s.spf.result),
            s.spf.helo ? "HELO " : "", s.spf.domain[0] ? s.spf.domain : "(no domain)", s.spf.why);
    for (size_t i = 0; i < n_sigs; i++)
        fprintf(stderr, "dkim: %s d=%s s=%s: %s\n", dkim_status_name(sigs[i].status),
                sigs[i].domain, sigs[i].selector, sigs[i].why);

    free(sigs);
    dkim_verify_free(&v);
    dns_free(&dns);
    uv_run(&loop, UV_RUN_DEFAULT); /* the resolver's handles close */
    uv_loop_close(&loop);
    psl_free(&psl);
    free(sender);
    conf_free(&conf);
    return 0;
}
