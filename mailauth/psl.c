/*
 * psl.c — the public suffix list; see psl.h.
 *
 * Each rule is stored under the name it is about, with what kind of rule
 * it is: "co.uk" as a plain rule, "*.ck" as a wildcard on "ck", "!www.ck"
 * as an exception on "www.ck" (one name may carry several kinds). Finding
 * a domain's public suffix is then one hash look-up per label: each of
 * its suffixes, longest first, is looked up, and the algorithm of
 * publicsuffix.org applied to what is found.
 */
#include "psl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define RULE_PLAIN 1u     /* "name" */
#define RULE_WILDCARD 2u  /* "*.name": any one label below name */
#define RULE_EXCEPTION 4u /* "!name": name is not a public suffix, its parent is */

/* A line longer than this is no rule of the list; it is skipped. */
#define LINE_MAX_LEN 1024
/* The most labels a name of DNS_NAME_MAX characters can have. */
#define LABELS_MAX ((DNS_NAME_MAX + 1) / 2) /* "a.a. ... .a" */

struct slot {
    uint32_t hash;
    uint32_t name; /* offset in names, +1; 0 for an empty slot */
    uint8_t kinds; /* RULE_* or-ed */
};

struct psl {
    char *names; /* every rule's name, NUL-terminated, one after another */
    size_t names_len, names_cap;
    struct slot *slots;
    size_t mask; /* slots - 1, a power of two minus one */
    size_t rules;
};

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

/* The slot of name[0..n), or the empty slot where it would go. */
static struct slot *find_slot(const struct psl *p, const char *name, size_t n, uint32_t h)
{
    for (size_t i = h & p->mask;; i = (i + 1) & p->mask) {
        struct slot *s = &p->slots[i];
        if (s->name == 0)
            return s;
        if (s->hash == h) {
            const char *have = p->names + s->name - 1;
            if (strncmp(have, name, n) == 0 && have[n] == '\0')
                return s;
        }
    }
}

/* The kinds of rule stored for name[0..n), 0 for none. */
static unsigned rule_kinds(const struct psl *p, const char *name, size_t n)
{
    return find_slot(p, name, n, fnv1a(name, n))->kinds;
}

/* Keeps name[0..n) in the arena; returns its offset + 1. */
static uint32_t keep_name(struct psl *p, const char *name, size_t n)
{
    if (p->names_len + n + 1 > p->names_cap) {
        p->names_cap = (p->names_len + n + 1) * 2;
        p->names = xrealloc(p->names, p->names_cap);
    }
    memcpy(p->names + p->names_len, name, n);
    p->names[p->names_len + n] = '\0';
    uint32_t off = (uint32_t)p->names_len + 1;
    p->names_len += n + 1;
    return off;
}

static void grow_slots(struct psl *p)
{
    size_t old_n = p->slots == NULL ? 0 : p->mask + 1;
    struct slot *old = p->slots;
    size_t n = old_n == 0 ? 1024 : old_n * 2;
    p->slots = xcalloc(n, sizeof(*p->slots));
    p->mask = n - 1;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i].name == 0)
            continue;
        const char *name = p->names + old[i].name - 1;
        *find_slot(p, name, strlen(name), old[i].hash) = old[i];
    }
    free(old);
}

static void add_rule(struct psl *p, const char *name, size_t n, unsigned kind)
{
    if ((p->rules + 1) * 2 > p->mask + 1 || p->slots == NULL)
        grow_slots(p);
    uint32_t h = fnv1a(name, n);
    struct slot *s = find_slot(p, name, n, h);
    if (s->name == 0) {
        s->hash = h;
        s->name = keep_name(p, name, n);
        p->rules++;
    }
    s->kinds |= (uint8_t)kind;
}

/*
 * One line of the file: its first word is the rule (publicsuffix.org:
 * "each line is only read up to the first whitespace"). Comments, empty
 * lines, the bare default rule "*" and wildcards anywhere but in front
 * (which the list does not use) are skipped.
 */
static void read_rule(struct psl *p, char *line)
{
    char *rule = line + strspn(line, " \t\r\n");
    size_t n = strcspn(rule, " \t\r\n");
    if (n == 0 || (n >= 2 && rule[0] == '/' && rule[1] == '/'))
        return;
    unsigned kind = RULE_PLAIN;
    if (rule[0] == '!') {
        kind = RULE_EXCEPTION;
        rule++, n--;
    } else if (n >= 2 && rule[0] == '*' && rule[1] == '.') {
        kind = RULE_WILDCARD;
        rule += 2, n -= 2;
    }
    if (n > 0 && rule[n - 1] == '.')
        n--;
    if (n == 0 || n > DNS_NAME_MAX || memchr(rule, '*', n) != NULL || memchr(rule, '!', n) != NULL)
        return;
    for (size_t i = 0; i < n; i++)
        if (rule[i] >= 'A' && rule[i] <= 'Z')
            rule[i] = (char)(rule[i] - 'A' + 'a');
    add_rule(p, rule, n, kind);
}

struct psl *psl_load(const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_size, "cannot read the public suffix list %s: %s", path, strerror(errno));
        return NULL;
    }
    struct psl *p = xcalloc(1, sizeof(*p));
    char line[LINE_MAX_LEN];
    bool skipping = false; /* inside a line that was too long */
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        bool whole = len > 0 && line[len - 1] == '\n';
        if (!skipping && (whole || feof(f)))
            read_rule(p, line);
        skipping = !whole;
    }
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed || p->rules == 0) {
        snprintf(err, err_size, "cannot read the public suffix list %s: %s", path,
                 failed ? "read error" : "it holds no rule");
        psl_free(&p);
        return NULL;
    }
    return p;
}

void psl_free(struct psl **pp)
{
    if (pp == NULL || *pp == NULL)
        return;
    free((*pp)->names);
    free((*pp)->slots);
    free(*pp);
    *pp = NULL;
}

/*
 * domain in lower case without its final dot into buf, and where each of
 * its labels starts into starts. Returns the number of labels, 0 for a
 * name that is empty, too long or has an empty label ("a..b", ".a").
 */
static size_t split_labels(const char *domain, char buf[DNS_NAME_MAX + 1],
                           size_t starts[LABELS_MAX], size_t *len_r)
{
    size_t n = strnlen(domain, DNS_NAME_MAX + 2);
    if (n > 0 && domain[n - 1] == '.')
        n--;
    if (n == 0 || n > DNS_NAME_MAX)
        return 0;
    size_t labels = 0;
    for (size_t i = 0; i < n; i++) {
        char c = domain[i];
        if (c == '.' && (i == 0 || domain[i - 1] == '.' || i == n - 1))
            return 0;
        buf[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        if (i == 0 || domain[i - 1] == '.')
            starts[labels++] = i; /* at most LABELS_MAX: each label but the last takes 2 */
    }
    buf[n] = '\0';
    *len_r = n;
    return labels;
}

/* The public suffix's labels of the split name (publicsuffix.org's algorithm). */
static size_t suffix_labels(const struct psl *p, const char *name, size_t len, const size_t *starts,
                            size_t labels)
{
    size_t best = 1; /* the default rule "*" */
    for (size_t i = 0; i < labels; i++) {
        unsigned kinds = rule_kinds(p, name + starts[i], len - starts[i]);
        size_t here = labels - i;
        if (kinds & RULE_EXCEPTION) /* an exception wins over every other rule */
            return here > 1 ? here - 1 : 1;
        if ((kinds & RULE_PLAIN) && here > best)
            best = here;
        if ((kinds & RULE_WILDCARD) && i > 0 && here + 1 > best)
            best = here + 1;
    }
    return best;
}

size_t psl_suffix_labels(const struct psl *p, const char *domain)
{
    char name[DNS_NAME_MAX + 1];
    size_t starts[LABELS_MAX], len;
    size_t labels = split_labels(domain, name, starts, &len);
    if (labels == 0)
        return 0;
    return suffix_labels(p, name, len, starts, labels);
}

void psl_org_domain(const struct psl *p, const char *domain, char out[DNS_NAME_MAX + 1])
{
    char name[DNS_NAME_MAX + 1];
    size_t starts[LABELS_MAX], len;
    size_t labels = split_labels(domain, name, starts, &len);
    if (labels == 0) {
        out[0] = '\0';
        return;
    }
    size_t suffix = suffix_labels(p, name, len, starts, labels);
    size_t first = suffix >= labels ? 0 : starts[labels - suffix - 1];
    memcpy(out, name + first, len - first + 1);
}
