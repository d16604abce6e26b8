/*
 * check_spf.c — `kotak check spf IP MAIL-FROM [HELO]`: the SPF result
 * kotak-smtpd's MX would find for a client, asked by hand, through the
 * same check (mailauth/spf.c) against the DNS servers of the config.
 *
 * Standard output holds the result word alone, one of "pass fail softfail
 * neutral none temperror permerror", so that scripts can read it; the
 * domain checked and why go to standard error. Every result exits 0: only
 * a bad argument is an error (exit 2).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ctl.h"
#include "dns.h"
#include "spf.h"
#include "util.h"

static const char usage[] = "kotak check spf IP MAIL-FROM [HELO]   (MAIL-FROM \"\" or \"<>\" for "
                            "the null sender: then HELO is checked)";

struct answer {
    bool done;
    struct spf_outcome o;
};

static void on_outcome(void *ctx, const struct spf_outcome *o)
{
    struct answer *a = ctx;
    a->o = *o;
    a->done = true;
}

int ctl_check_spf(const struct ctl *c)
{
    struct ctl_envelope env;
    ctl_check_envelope(c, usage, &env);
    const char *ip = env.ip, *helo = env.helo;
    char *sender = env.sender;
    if (sender[0] == '\0' && helo[0] == '\0')
        ctl_die("the null sender (<>) is checked by its HELO name; give HELO as the third "
                "argument");

    struct conf conf;
    ctl_load_conf(c, &conf);
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        ctl_die("cannot start an event loop");
    char err[256];
    struct dns *dns = dns_new(&loop, conf.dns_servers, 0, 0, err, sizeof(err));
    if (dns == NULL)
        ctl_die("[dns] servers: %s", err);

    struct answer a = {0};
    struct spf_check *check = spf_check_start(dns, ip, sender, helo, on_outcome, &a);
    if (check == NULL)
        ctl_die("'%s' is no IP address; give the client's IPv4 or IPv6 address", ip);
    while (!a.done && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    if (!a.done) /* the loop ran dry: cannot happen while a question is out */
        spf_check_cancel(&check);
    dns_free(&dns);
    uv_run(&loop, UV_RUN_DEFAULT); /* the resolver's handles close */
    uv_loop_close(&loop);

    if (!a.done) {
        a.o.result = SPF_TEMPERROR;
        snprintf(a.o.why, sizeof(a.o.why), "the check ended without an answer");
    }
    printf("%s\n", spf_result_name(a.o.result));
    fprintf(stderr, "spf: %s for %s%s: %s\n", spf_result_name(a.o.result), a.o.helo ? "HELO " : "",
            a.o.domain[0] ? a.o.domain : "(no domain)", a.o.why);
    free(sender);
    conf_free(&conf);
    return 0;
}
