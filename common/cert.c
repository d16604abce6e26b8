/*
 * cert.c — a self-signed certificate for a first start, with mbedTLS 2.28;
 * see cert.h for the contract.
 *
 * The certificate is what today's clients accept once told to trust it: a
 * P-256 ECDSA key (small, and fast to make, unlike RSA), SHA-256, X.509 v3
 * with basicConstraints CA=false, keyUsage digitalSignature (all that
 * ECDHE-ECDSA needs), extendedKeyUsage serverAuth, and a subjectAltName,
 * since clients such as Python's ssl match the host against the SAN only and
 * ignore the CN. mbedTLS 2.28 has no setter for SAN or extendedKeyUsage, so
 * this file encodes those two extensions in DER itself with asn1write and
 * adds them with mbedtls_x509write_crt_set_extension.
 *
 * The SAN lists every name a client may use: `kotak init` passes the host
 * name, localhost, the loopback addresses and its listeners' addresses, so
 * that a client told to trust this certificate also verifies it when it
 * connects to 127.0.0.1 or localhost, as a first try does.
 *
 * Both PEM files are made in memory first and written only when everything
 * else worked; the key is created with mode 0600 from the start (O_EXCL after
 * unlink), so that it is never readable by others, not even for an instant.
 */
#include "cert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509_crt.h>

#include "util.h"

#define CERT_YEARS 10
#define CERT_HOST_MAX 253
/* The subjectAltName's DER: some 200 addresses, or 15 host names of the full
 * 253 characters; more is refused. The certificate's PEM has room for it. */
#define CERT_SAN_MAX 4096
#define CERT_PEM_MAX (4096 + 2 * CERT_SAN_MAX)

/* An mbedTLS failure as "cannot STEP: mbedTLS's words". */
static void mbed_err(char *err, size_t err_size, const char *step, int rc)
{
    char tmp[128];
    mbedtls_strerror(rc, tmp, sizeof tmp);
    snprintf(err, err_size, "cannot %s: %s", step, tmp);
}

/*
 * A name we can put in CN= and in a dNSName as is: letters, digits, '-' and
 * '.', in non-empty labels. This also keeps out ',' '=' '\' and '+', which
 * mbedTLS's subject-name parser would take as syntax.
 */
static bool host_ok(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > CERT_HOST_MAX || h[0] == '.' || h[0] == '-' || h[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && ch != '-' && ch != '.')
            return false;
        if (ch == '.' && h[i + 1] == '.')
            return false;
    }
    return true;
}

/* One name of a certificate: a dNSName, or an iPAddress in 4 or 16 bytes. */
struct cert_name {
    const char *text; /* as given; a dNSName's bytes */
    unsigned char ip[16];
    size_t ip_len; /* 0: a dNSName */
};

/*
 * Checks each name and copies it into out, which has room for n_names,
 * without repeats: an address written two ways ("::1", "0::1") or a host
 * name in another case counts once. Returns the count in out, or -1 with
 * err naming the first name that is neither a host name nor an IP address.
 */
static int collect_names(const char *const *names, size_t n_names, struct cert_name *out, char *err,
                         size_t err_size)
{
    size_t n = 0;
    for (size_t i = 0; i < n_names; i++) {
        struct cert_name nm = {.text = names[i]};
        if (inet_pton(AF_INET, names[i], nm.ip) == 1)
            nm.ip_len = 4;
        else if (inet_pton(AF_INET6, names[i], nm.ip) == 1)
            nm.ip_len = 16;
        else if (!host_ok(names[i])) {
            snprintf(err, err_size,
                     "cannot make a certificate for \"%s\": not a host name or IP address",
                     names[i]);
            return -1;
        }
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++)
            seen = nm.ip_len
                       ? out[k].ip_len == nm.ip_len && memcmp(out[k].ip, nm.ip, nm.ip_len) == 0
                       : out[k].ip_len == 0 && strcasecmp(out[k].text, nm.text) == 0;
        if (!seen)
            out[n++] = nm;
    }
    return (int)n;
}

/*
 * The subjectAltName extension's value, GeneralNames ::= SEQUENCE OF
 * GeneralName, one entry per name in order: dNSName [2] IA5String, or
 * iPAddress [7] OCTET STRING (4 or 16 bytes). asn1write writes backwards
 * from the end of buf, and its lengths take the long DER form past 127
 * octets; returns the length (the value ends at buf + size), or a negative
 * mbedTLS error (MBEDTLS_ERR_ASN1_BUF_TOO_SMALL when the names do not fit).
 */
static int der_san(unsigned char *buf, size_t size, const struct cert_name *names, size_t n)
{
    unsigned char *p = buf + size;
    size_t len = 0;
    int rc;

    for (size_t i = n; i-- > 0;) {
        const struct cert_name *nm = &names[i];
        const unsigned char *v = nm->ip_len ? nm->ip : (const unsigned char *)nm->text;
        size_t v_len = nm->ip_len ? nm->ip_len : strlen(nm->text);
        unsigned char tag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | (nm->ip_len ? 7 : 2);
        size_t one = 0;
        if ((rc = mbedtls_asn1_write_raw_buffer(&p, buf, v, v_len)) < 0)
            return rc;
        one += (size_t)rc;
        if ((rc = mbedtls_asn1_write_len(&p, buf, one)) < 0)
            return rc;
        one += (size_t)rc;
        if ((rc = mbedtls_asn1_write_tag(&p, buf, tag)) < 0)
            return rc;
        len += one + (size_t)rc;
    }
    if ((rc = mbedtls_asn1_write_len(&p, buf, len)) < 0)
        return rc;
    len += (size_t)rc;
    if ((rc = mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)) <
        0)
        return rc;
    len += (size_t)rc;
    return (int)len;
}

/* ExtKeyUsageSyntax ::= SEQUENCE { id-kp-serverAuth }, as der_san. */
static int der_eku(unsigned char *buf, size_t size)
{
    unsigned char *p = buf + size;
    int len = 0, rc;

    if ((rc = mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_SERVER_AUTH,
                                     MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH))) < 0)
        return rc;
    len += rc;
    if ((rc = mbedtls_asn1_write_len(&p, buf, (size_t)len)) < 0)
        return rc;
    len += rc;
    if ((rc = mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)) <
        0)
        return rc;
    len += rc;
    return len;
}

/*
 * t as the "YYYYMMDDhhmmss" (UTC) mbedtls_x509write_crt_set_validity wants;
 * out has room for any int, and mbedTLS refuses anything but 14 characters.
 */
static void validity_time(char out[64], const struct tm *t)
{
    snprintf(out, 64, "%04d%02d%02d%02d%02d%02d", t->tm_year + 1900, t->tm_mon + 1, t->tm_mday,
             t->tm_hour, t->tm_min, t->tm_sec);
}

/*
 * Builds the key's and the certificate's PEM, crt_pem with room for
 * CERT_PEM_MAX; 0 or -1 with err set. names[0] is the subject.
 */
static int make_pems(const struct cert_name *names, size_t n_names, unsigned char *key_pem,
                     unsigned char *crt_pem, char *err, size_t err_size)
{
    static const char pers[] = "kotak-cert";
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context key;
    mbedtls_x509write_cert crt;
    mbedtls_mpi serial;
    int ret = -1, rc;

    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&crt);
    mbedtls_mpi_init(&serial);

    rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, (const unsigned char *)pers,
                               sizeof pers - 1);
    if (rc != 0) {
        mbed_err(err, err_size, "seed the random generator", rc);
        goto out;
    }

    rc = mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc == 0)
        rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key),
                                 mbedtls_ctr_drbg_random, &drbg);
    if (rc != 0) {
        mbed_err(err, err_size, "make a P-256 key", rc);
        goto out;
    }

    /* 16 random bytes, positive and without a leading zero (RFC 5280 4.1.2.2). */
    unsigned char sn[16];
    rc = mbedtls_ctr_drbg_random(&drbg, sn, sizeof sn);
    if (rc == 0) {
        sn[0] = (unsigned char)((sn[0] & 0x7f) | 0x40);
        rc = mbedtls_mpi_read_binary(&serial, sn, sizeof sn);
    }
    if (rc != 0) {
        mbed_err(err, err_size, "make a serial number", rc);
        goto out;
    }

    time_t now = time(NULL);
    struct tm from, until;
    if (gmtime_r(&now, &from) == NULL) {
        snprintf(err, err_size, "cannot read the clock");
        goto out;
    }
    until = from;
    until.tm_year += CERT_YEARS;
    if (until.tm_mon == 1 && until.tm_mday == 29)
        until.tm_mday = 28; /* a 29 February ten years on may not exist */
    char not_before[64], not_after[64];
    validity_time(not_before, &from);
    validity_time(not_after, &until);

    char name[CERT_HOST_MAX + 8];
    /* host_ok, or inet_pton for an address, bounds the length */
    snprintf(name, sizeof name, "CN=%s", names[0].text);

    unsigned char san[CERT_SAN_MAX], eku[32];
    int san_len = der_san(san, sizeof san, names, n_names);
    int eku_len = der_eku(eku, sizeof eku);
    if (san_len == MBEDTLS_ERR_ASN1_BUF_TOO_SMALL) {
        snprintf(err, err_size,
                 "cannot make a certificate for %zu names: they take more than %d octets", n_names,
                 CERT_SAN_MAX);
        goto out;
    }
    if (san_len < 0 || eku_len < 0) {
        mbed_err(err, err_size, "encode the certificate's extensions",
                 san_len < 0 ? san_len : eku_len);
        goto out;
    }

    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, &key);
    mbedtls_x509write_crt_set_issuer_key(&crt, &key);
    if ((rc = mbedtls_x509write_crt_set_serial(&crt, &serial)) != 0 ||
        (rc = mbedtls_x509write_crt_set_validity(&crt, not_before, not_after)) != 0 ||
        (rc = mbedtls_x509write_crt_set_subject_name(&crt, name)) != 0 ||
        (rc = mbedtls_x509write_crt_set_issuer_name(&crt, name)) != 0 ||
        (rc = mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1)) != 0 ||
        (rc = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE)) != 0 ||
        (rc = mbedtls_x509write_crt_set_extension(
             &crt, MBEDTLS_OID_EXTENDED_KEY_USAGE, MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE),
             0, eku + sizeof eku - eku_len, (size_t)eku_len)) != 0 ||
        (rc = mbedtls_x509write_crt_set_extension(&crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
                                                  MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
                                                  san + sizeof san - san_len, (size_t)san_len)) != 0
#if defined(MBEDTLS_SHA1_C)
        || (rc = mbedtls_x509write_crt_set_subject_key_identifier(&crt)) != 0 ||
        (rc = mbedtls_x509write_crt_set_authority_key_identifier(&crt)) != 0
#endif
    ) {
        mbed_err(err, err_size, "fill in the certificate", rc);
        goto out;
    }

    rc = mbedtls_x509write_crt_pem(&crt, crt_pem, CERT_PEM_MAX, mbedtls_ctr_drbg_random, &drbg);
    if (rc != 0) {
        mbed_err(err, err_size, "sign the certificate", rc);
        goto out;
    }
    rc = mbedtls_pk_write_key_pem(&key, key_pem, CERT_PEM_MAX);
    if (rc != 0) {
        mbed_err(err, err_size, "write the key as PEM", rc);
        goto out;
    }
    ret = 0;

out:
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&key); /* wipes the key */
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return ret;
}

/* Syncs the folder that holds path, so that the new name survives a crash. */
static int sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash == NULL   ? xstrdup(".")
                : slash == path ? xstrdup("/")
                                : xstrndup(path, (size_t)(slash - path));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/*
 * Replaces path with a new file of the given mode that holds data, synced.
 * O_EXCL after the unlink: the file is ours, made with its final mode, and
 * not a link someone left there. 0 or -1 with err set (and no file left).
 */
static int write_file(const char *what, const char *path, const void *data, size_t len, mode_t mode,
                      char *err, size_t err_size)
{
    if (unlink(path) < 0 && errno != ENOENT) {
        snprintf(err, err_size, "cannot replace %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        snprintf(err, err_size, "cannot create %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            goto fail;
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    int rc = sync_dir(path);
    if (rc < 0) {
        errno = -rc;
        fd = -1;
        goto fail;
    }
    return 0;

fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(path);
    snprintf(err, err_size, "cannot write %s %s: %s", what, path, strerror(e));
    return -1;
}

int cert_make_self_signed(const char *const *names, size_t n_names, const char *cert_path,
                          const char *key_path, char *err, size_t err_size)
{
    if (n_names == 0) {
        snprintf(err, err_size, "cannot make a certificate without a name");
        return -1;
    }
    struct cert_name *list = xcalloc(n_names, sizeof *list);
    unsigned char *key_pem = xcalloc(1, CERT_PEM_MAX);
    unsigned char *crt_pem = xcalloc(1, CERT_PEM_MAX);
    int ret = -1;
    int n = collect_names(names, n_names, list, err, err_size);
    if (n < 0)
        goto out;
    if (make_pems(list, (size_t)n, key_pem, crt_pem, err, err_size) < 0)
        goto out;
    if (write_file("key", key_path, key_pem, strlen((char *)key_pem), 0600, err, err_size) < 0)
        goto out;
    if (write_file("cert", cert_path, crt_pem, strlen((char *)crt_pem), 0644, err, err_size) < 0) {
        unlink(key_path);
        goto out;
    }
    ret = 0;

out:
    mbedtls_platform_zeroize(key_pem, CERT_PEM_MAX);
    free(key_pem);
    free(crt_pem);
    free(list);
    return ret;
}

/* --- what a certificate says, for kotak doctor ------------------------------ */

static time_t x509_time(const mbedtls_x509_time *t)
{
    struct tm tm = {.tm_year = t->year - 1900, .tm_mon = t->mon - 1, .tm_mday = t->day,
                    .tm_hour = t->hour, .tm_min = t->min, .tm_sec = t->sec};
    return timegm(&tm);
}

/* Appends n octets of p to f->names, each outside printable ASCII as '?'; "..." when full. */
static void add_name(struct cert_facts *f, const unsigned char *p, size_t n)
{
    size_t len = strlen(f->names), room = sizeof(f->names) - 4; /* "..." and NUL */
    if (len > 0 && len + 2 < room) {
        memcpy(f->names + len, ", ", 2);
        len += 2;
    }
    for (size_t i = 0; i < n; i++) {
        if (len >= room) {
            memcpy(f->names + len, "...", 4);
            return;
        }
        f->names[len++] = p[i] >= 0x21 && p[i] < 0x7f ? (char)p[i] : '?';
    }
    f->names[len] = '\0';
}

int cert_file_facts(const char *cert_path, const char *host, struct cert_facts *f_r, char *err,
                    size_t err_size)
{
    memset(f_r, 0, sizeof(*f_r));
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    int rc = mbedtls_x509_crt_parse_file(&crt, cert_path);
    if (rc < 0 || crt.raw.len == 0) {
        if (rc < 0)
            mbed_err(err, err_size, "read the certificate", rc);
        else
            snprintf(err, err_size, "no certificate in it");
        mbedtls_x509_crt_free(&crt);
        return -1;
    }
    f_r->not_before = x509_time(&crt.valid_from);
    f_r->not_after = x509_time(&crt.valid_to);
    /* The certificate as its own anchor: only the name flag is of interest here. */
    uint32_t flags = 0;
    mbedtls_x509_crt_verify(&crt, &crt, NULL, host, &flags, NULL, NULL);
    f_r->names_host = (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) == 0;
    for (const mbedtls_x509_sequence *s = &crt.subject_alt_names; s != NULL && s->buf.p != NULL;
         s = s->next) {
        int tag = s->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK;
        char ip[INET6_ADDRSTRLEN];
        if (tag == 2) /* dNSName */
            add_name(f_r, s->buf.p, s->buf.len);
        else if (tag == 7 && (s->buf.len == 4 || s->buf.len == 16) &&
                 inet_ntop(s->buf.len == 4 ? AF_INET : AF_INET6, s->buf.p, ip, sizeof(ip)))
            add_name(f_r, (const unsigned char *)ip, strlen(ip));
    }
    if (f_r->names[0] == '\0') {
        const mbedtls_x509_name *cn = mbedtls_asn1_find_named_data(
            (mbedtls_asn1_named_data *)&crt.subject, MBEDTLS_OID_AT_CN,
            MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_CN));
        if (cn != NULL)
            add_name(f_r, cn->val.p, cn->val.len);
    }
    mbedtls_x509_crt_free(&crt);
    return 0;
}
