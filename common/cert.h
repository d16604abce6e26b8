/*
 * cert.h — a self-signed certificate for a first start.
 *
 * `kotak init` makes one so that STARTTLS, STLS and the implicit-TLS
 * listeners work before the administrator installs a real certificate.
 */
#ifndef KOTAK_CERT_H
#define KOTAK_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/*
 * Makes a new EC P-256 key and a self-signed X.509 v3 certificate for the
 * n_names names (at least one): its subject is CN=names[0], and its
 * subjectAltName lists each name once, in order, as a DNS name, or as an IP
 * address when the name is an IPv4 or IPv6 literal (without brackets or a
 * zone). Valid from now for ten years, for a TLS server (not a CA). Writes
 * both as PEM: the key to key_path with mode 0600, the certificate to
 * cert_path with mode 0644, each replacing any file there and synced to
 * disk. The caller keeps names.
 *
 * A host name holds letters, digits, '-', '.', at most 253 characters. A name
 * given twice (an address written two ways, a host name in another case)
 * is written once. The names may take 4 KiB in the certificate (some 200
 * addresses, or 15 host names of the full length). Returns 0, or -1 with one
 * sentence in err; on failure neither file is left behind.
 */
int cert_make_self_signed(const char *const *names, size_t n_names, const char *cert_path,
                          const char *key_path, char *err, size_t err_size);

/* What a certificate file says of itself, for `kotak doctor`. */
struct cert_facts {
    time_t not_before, not_after; /* the first certificate's validity, as Unix time */
    bool names_host;              /* its names cover the host asked (wildcards as TLS clients
                                     match them: mbedTLS's own check) */
    char names[512];              /* its subjectAltName entries (else its CN), ", " between
                                     them, printable ASCII, cut to fit with "..." */
};

/*
 * Reads the first certificate of the PEM file cert_path and tells what it
 * says: when it is valid, whether it names host, its names. Checks no
 * trust chain and no key (tls_server_new does the latter). Returns 0 with
 * *f_r filled, or -1 with one sentence in err.
 */
int cert_file_facts(const char *cert_path, const char *host, struct cert_facts *f_r, char *err,
                    size_t err_size);

#endif
