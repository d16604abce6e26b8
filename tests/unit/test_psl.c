/*
 * test_psl.c — the public suffix list: a small list written here (plain
 * rules, wildcards, exceptions, the default rule, comments, odd lines),
 * then Debian's real one, which DMARC's relaxed alignment stands on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "psl.h"
#include "tap.h"

static const char small_list[] = "// a comment line\n"
                                 "// ===BEGIN ICANN DOMAINS===\n"
                                 "com\n"
                                 "uk\n"
                                 "co.uk\n"
                                 "  jp  trailing words are ignored\n"
                                 "*.kobe.jp\n"
                                 "!city.kobe.jp\n"
                                 "*.ck\n"
                                 "!www.ck\n"
                                 "ORG\n"
                                 "\n"
                                 "\t\n"
                                 "a.*.weird\n"
                                 "*\n"
                                 "!\n"
                                 "*.\n"
                                 "aéroport.ci\n"
                                 "// ===END ICANN DOMAINS===\n"
                                 "// ===BEGIN PRIVATE DOMAINS===\n"
                                 "github.io\n"
                                 "blogspot.com\n"
                                 "no-newline.test";

struct org_case {
    const char *domain, *org;
};

static const struct org_case small_cases[] = {
    {"example.com", "example.com"},
    {"www.example.com", "example.com"},
    {"a.b.c.example.com", "example.com"},
    {"com", "com"}, /* itself a public suffix */
    {"example.co.uk", "example.co.uk"},
    {"a.b.example.co.uk", "example.co.uk"},
    {"co.uk", "co.uk"},
    {"uk", "uk"},
    {"example.uk", "example.uk"},
    {"Mail.Example.COM.", "example.com"}, /* case and a final dot */
    {"example.jp", "example.jp"},
    {"a.example.kobe.jp", "a.example.kobe.jp"}, /* *.kobe.jp: example.kobe.jp is a suffix */
    {"b.a.example.kobe.jp", "a.example.kobe.jp"},
    {"example.kobe.jp", "example.kobe.jp"},
    {"kobe.jp", "kobe.jp"},
    {"city.kobe.jp", "city.kobe.jp"}, /* the exception: kobe.jp is the suffix */
    {"www.city.kobe.jp", "city.kobe.jp"},
    {"ck", "ck"},
    {"foo.ck", "foo.ck"},
    {"bar.foo.ck", "bar.foo.ck"},
    {"www.ck", "www.ck"},
    {"a.www.ck", "www.ck"},
    {"example.org", "example.org"}, /* ORG read in lower case */
    {"x.example.org", "example.org"},
    {"example", "example"}, /* the default rule "*" */
    {"a.example", "a.example"},
    {"b.a.example", "a.example"},
    {"a.b.weird", "b.weird"},             /* "a.*.weird" was skipped: the default rule */
    {"user.github.io", "user.github.io"}, /* the PRIVATE section counts */
    {"www.user.github.io", "user.github.io"},
    {"x.y.blogspot.com", "y.blogspot.com"},
    {"a.b.no-newline.test", "b.no-newline.test"},
    /* IDN rules stay in UTF-8: an A-label does not match them (psl.h). */
    {"shop.xn--aroport-bya.ci", "xn--aroport-bya.ci"},
    {"shop.aéroport.ci", "shop.aéroport.ci"},
};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
        printf("Bail out! cannot write %s\n", path);
        exit(1);
    }
}

static void test_small(const char *dir)
{
    char path[512], err[256], out[DNS_NAME_MAX + 1];
    snprintf(path, sizeof(path), "%s/list.dat", dir);
    write_file(path, small_list);
    struct psl *p = psl_load(path, err, sizeof(err));
    ok(p != NULL, "a small list loads (%s)", p == NULL ? err : "ok");
    if (p == NULL)
        return;
    for (size_t i = 0; i < sizeof(small_cases) / sizeof(small_cases[0]); i++) {
        psl_org_domain(p, small_cases[i].domain, out);
        is_str(out, small_cases[i].org, "org domain of %s", small_cases[i].domain);
    }
    is_int(psl_suffix_labels(p, "a.b.example.co.uk"), 2, "co.uk: two labels");
    is_int(psl_suffix_labels(p, "x.a.example.kobe.jp"), 3, "*.kobe.jp: three labels");
    is_int(psl_suffix_labels(p, "a.www.ck"), 1, "!www.ck: one label");
    is_int(psl_suffix_labels(p, "nothing"), 1, "the default rule: one label");

    /* Names that are no domain names give "". */
    const char *bad[] = {"",
                         ".",
                         "..",
                         "a..b",
                         ".example.com",
                         "example.com..",
                         "a.b."
                         "."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(out, "unchanged");
        psl_org_domain(p, bad[i], out);
        is_str(out, "", "'%s' has no org domain", bad[i]);
        is_int(psl_suffix_labels(p, bad[i]), 0, "'%s' has no suffix", bad[i]);
    }
    char longest[DNS_NAME_MAX + 2];
    for (size_t i = 0; i < DNS_NAME_MAX; i++)
        longest[i] = i % 2 ? '.' : 'a';
    longest[DNS_NAME_MAX] = '\0'; /* "a.a.a. ... .a", 127 labels */
    psl_org_domain(p, longest, out);
    is_str(out, "a.a", "a name of DNS_NAME_MAX characters, 127 labels");
    longest[DNS_NAME_MAX] = '.';
    longest[DNS_NAME_MAX + 1] = '\0';
    psl_org_domain(p, longest, out);
    is_str(out, "a.a", "the same with a final dot");
    longest[DNS_NAME_MAX] = 'a';
    psl_org_domain(p, longest, out);
    is_str(out, "", "one character longer: too long");
    psl_free(&p);
    ok(p == NULL, "psl_free sets the pointer to NULL");
    psl_free(&p);

    /* A line too long to be a rule is skipped whole, even past the buffer. */
    char *text = malloc(5000);
    memset(text, 'x', 3000);
    strcpy(text + 3000, ".long\nshort.test\n");
    write_file(path, text);
    free(text);
    p = psl_load(path, err, sizeof(err));
    ok(p != NULL, "a list with a 3000-character line loads");
    if (p != NULL) {
        psl_org_domain(p, "a.b.short.test", out);
        is_str(out, "b.short.test", "the rule after the long line counts");
        psl_org_domain(p, "a.b.long", out);
        is_str(out, "b.long", "the long line's tail is no rule");
        psl_free(&p);
    }

    write_file(path, "// only comments\n\n");
    p = psl_load(path, err, sizeof(err));
    ok(p == NULL && strstr(err, "no rule") != NULL, "a list without rules is refused: %s", err);
    snprintf(path, sizeof(path), "%s/absent.dat", dir);
    p = psl_load(path, err, sizeof(err));
    ok(p == NULL && strstr(err, "absent.dat") != NULL, "a missing file is refused: %s", err);
}

static const struct org_case debian_cases[] = {
    {"a.b.example.co.uk", "example.co.uk"},
    {"example.co.uk", "example.co.uk"},
    {"mail.example.com", "example.com"},
    {"example.com", "example.com"},
    {"com", "com"},
    {"www.example.org.uk", "example.org.uk"},
    {"a.b.c.example.ac.jp", "example.ac.jp"},
    {"foo.bar.kawasaki.jp", "foo.bar.kawasaki.jp"}, /* *.kawasaki.jp */
    {"www.city.kawasaki.jp", "city.kawasaki.jp"},   /* !city.kawasaki.jp */
    {"www.ck", "www.ck"},
    {"a.b.www.ck", "www.ck"},
    {"a.b.c.ck", "b.c.ck"},
    {"project.user.github.io", "user.github.io"}, /* PRIVATE section */
    {"mail.example.test", "example.test"},        /* not in the list: default rule */
    {"example.test", "example.test"},
    {"a.b.c.d.example", "d.example"},
};

static void test_debian(void)
{
    char err[256], out[DNS_NAME_MAX + 1];
    if (access(PSL_DEFAULT_PATH, R_OK) != 0) {
        ok(1, "# SKIP %s is not installed (Debian: publicsuffix)", PSL_DEFAULT_PATH);
        return;
    }
    struct psl *p = psl_load(PSL_DEFAULT_PATH, err, sizeof(err));
    ok(p != NULL, "Debian's list loads (%s)", p == NULL ? err : "ok");
    if (p == NULL)
        return;
    for (size_t i = 0; i < sizeof(debian_cases) / sizeof(debian_cases[0]); i++) {
        psl_org_domain(p, debian_cases[i].domain, out);
        is_str(out, debian_cases[i].org, "Debian: org domain of %s", debian_cases[i].domain);
    }
    psl_free(&p);
}

int main(void)
{
    char dir[] = "/tmp/kotak-test-psl-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        printf("Bail out! mkdtemp\n");
        return 1;
    }
    test_small(dir);
    test_debian();
    char path[512];
    snprintf(path, sizeof(path), "%s/list.dat", dir);
    unlink(path);
    rmdir(dir);
    return done_testing();
}
