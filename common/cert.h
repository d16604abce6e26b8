/*
 * cert.h — a self-signed certificate for a first start.
 *
 * `kotak init` makes one so that STARTTLS, STLS and the implicit-TLS
 * listeners work before the administrator installs a real certificate.
 */
#ifndef KOTAK_CERT_H
#define KOTAK_CERT_H

#include <stddef.h>

/*
 * Makes a new EC P-256 key and a self-signed X.509 v3 certificate for
 * hostname (subject CN=hostname and a subjectAltName naming it: a DNS name,
 * or an IP address if hostname is an IPv4 or IPv6 literal), valid from now
 * for ten years, for a TLS server (not a CA). Writes both as PEM: the key to
 * key_path with mode 0600, the certificate to cert_path with mode 0644, each
 * replacing any file there and synced to disk.
 *
 * hostname holds letters, digits, '-', '.' (or is an IP literal), at most
 * 253 characters. Returns 0, or -1 with one sentence in err; on failure
 * neither file is left behind.
 */
int cert_make_self_signed(const char *hostname, const char *cert_path, const char *key_path,
                          char *err, size_t err_size);

#endif
