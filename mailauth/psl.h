/*
 * psl.h — the public suffix list, for DMARC's Organizational Domain
 * (RFC 7489 3.2): the registered domain a name belongs to, so that
 * mail.example.co.uk and example.co.uk count as one sender in relaxed
 * alignment while example.co.uk and other.co.uk do not.
 *
 * The list is Debian's publicsuffix package, read once at start-up into a
 * hash table (about 10,000 rules, a few hundred KiB). DMARC uses the whole
 * list, its ICANN and its PRIVATE sections alike. Rules for
 * internationalized names are kept as the file writes them, in UTF-8;
 * the names kotak asks about are A-labels (ASCII, "xn--..."), so such a
 * rule never matches them and the default rule stands in: for a name
 * under an IDN suffix the Organizational Domain may then come out one
 * label short. Looking up is pure and never allocates.
 */
#ifndef KOTAK_PSL_H
#define KOTAK_PSL_H

#include <stddef.h>

#include "dns.h"

#define PSL_DEFAULT_PATH "/usr/share/publicsuffix/public_suffix_list.dat"

struct psl;

/*
 * Reads the list at path (the format of publicsuffix.org: one rule per
 * line, "//" comments, "*." wildcards, "!" exceptions). Returns the list,
 * or NULL with a sentence in err (a file that cannot be read, or holds no
 * rule). Start-up only: it reads from disk.
 */
struct psl *psl_load(const char *path, char *err, size_t err_size);

/* Frees *p and sets it to NULL; NULL or *p NULL is a no-op. */
void psl_free(struct psl **p);

/*
 * The Organizational Domain of domain (RFC 7489 3.2) into out, in lower
 * case and without a final dot: its public suffix (the rule that matches
 * the most labels, an exception rule first, the default rule "*" when
 * none does) plus one label; a domain that is itself a public suffix is
 * its own. Case does not matter and a final dot is ignored. out is ""
 * for a name that is empty, longer than DNS_NAME_MAX or has an empty label.
 */
void psl_org_domain(const struct psl *p, const char *domain, char out[DNS_NAME_MAX + 1]);

/*
 * How many labels of domain (as psl_org_domain takes it) its public
 * suffix has, at least 1; 0 for a name psl_org_domain gives "" for.
 */
size_t psl_suffix_labels(const struct psl *p, const char *domain);

#endif
