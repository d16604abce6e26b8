/*
 * tls.c — server-side TLS over memory buffers, with mbedTLS 2.28; see tls.h
 * for the contract.
 *
 * Each connection is an mbedtls_ssl_context whose transport (set with
 * mbedtls_ssl_set_bio) is two struct bufs: `in` holds ciphertext the glue fed
 * and mbedTLS has not yet taken, `out` the ciphertext mbedTLS produced and the
 * glue has not yet sent. The receive callback answers WANT_READ when `in` is
 * empty, so every mbedTLS call returns instead of blocking, and the glue
 * resumes it after the next feed. The send callback always takes everything,
 * so mbedTLS never holds output of its own and never says WANT_WRITE.
 *
 * Memory: a connection is mostly mbedTLS's two record buffers (about 16.6 KiB
 * each, fixed by the library's build) plus the session keys; mbedTLS frees
 * the handshake state once the handshake is over. Our two bufs are freed
 * whenever they run empty, so an idle connection holds no buffer of ours.
 *
 * Everything shared — the config, the certificate chain, the key and the
 * random generator — lives once in struct tls_server.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#if MBEDTLS_VERSION_MAJOR >= 3 /* meson.build checks this too; see there */
#error "kotak is written for mbedTLS 2.28; mbedTLS 3.x is not supported"
#endif
#if !defined(MBEDTLS_THREADING_C)
/* Handshakes run on several threads at once (tls.h). */
#error "kotak needs mbedTLS built with MBEDTLS_THREADING_C"
#endif

#include "buf.h"
#include "util.h"

/* Ciphertext that may wait unprocessed before tls_conn_feed refuses more. */
#define TLS_IN_MAX (64 * 1024)

/* Debian's bundle of the system's trust anchors (package ca-certificates). */
#define TLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

/* A certificate chain or key file larger than this is surely not one. */
#define TLS_FILE_MAX (1024 * 1024)
/* How long a resumed session may follow its full handshake, and how often
 * the ticket key changes; a client polling POP3 every few minutes resumes
 * for that long. */
#define TLS_TICKET_LIFETIME_S (60 * 60)
/* Sessions kept for resumption by id: about 200 octets each. */
#define TLS_CACHE_ENTRIES 10000

/* One side's settings, shared by its connections: a server's, or, inside a
 * struct tls_client, a client's. */
struct tls_server {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt chain; /* a server's own chain; a client's trust anchors */
    mbedtls_pk_context key;
    /* A server's resumption (RFC 5077 tickets, RFC 5246 session ids): a
     * client that polls every few minutes pays for one full handshake an
     * hour, not each time. */
    mbedtls_ssl_ticket_context tickets;
    mbedtls_ssl_cache_context cache;
    char cert_name[128]; /* a server's: its certificate's subject CN, printable, for the live view */
    size_t conns;  /* connections made from it and not yet freed */
    bool released; /* tls_server_free was called: the last connection frees it */
};

struct tls_client {
    struct tls_server side;
    bool verify; /* a certificate that does not verify fails the handshake */
};

struct tls_conn {
    mbedtls_ssl_context ssl;
    struct buf in;  /* ciphertext from the peer; in.data[in_off..len) not yet taken */
    struct buf out; /* ciphertext for the peer, not yet sent */
    size_t in_off;
    bool peer_closed; /* close_notify seen; every later read says -EPIPE */
    uint8_t ip[16];   /* a client's peer named by its address: what the certificate must hold */
    size_t ip_len;    /* 4 or 16; 0 when named by a host name */
    int error;        /* the mbedTLS error that failed the connection, or 0 */
    bool resumed;     /* a server's: the client resumed a session (ticket or id) */
    int alert;        /* the fatal alert the peer sent then, or -1 */
    struct tls_server *srv;
};

/*
 * ECDHE only, for forward secrecy, and AEAD only, since CBC with MAC-then-
 * encrypt has a long history of padding oracles. mbedTLS picks by this
 * (the server's) order, which is Mozilla's "intermediate" one: AES-GCM first,
 * fast wherever there is AES hardware, then ChaCha20-Poly1305.
 */
static const int tls_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

/* The library's default list also offers small and exotic curves. */
static const mbedtls_ecp_group_id tls_curves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

/* mbedTLS's text for rc ("X509 - ..."), in a caller's buffer. */
static const char *mbed_err(int rc, char *tmp, size_t size)
{
    mbedtls_strerror(rc, tmp, size);
    return tmp;
}

/*
 * Reads a whole file into a new NUL-terminated buffer, so that mbedTLS's
 * PEM parser can take it and so that a missing file is reported with errno's
 * words, which mbedTLS's own file loader loses. Returns 0 with *data_r (the
 * caller wipes and frees it) and *len_r (without the NUL), or -errno.
 */
static int load_file(const char *path, unsigned char **data_r, size_t *len_r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > TLS_FILE_MAX) {
        close(fd);
        return S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
    }
    size_t cap = (size_t)st.st_size;
    unsigned char *data = xmalloc(cap + 1);
    size_t len = 0;
    while (len < cap) {
        ssize_t r = read(fd, data + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            mbedtls_platform_zeroize(data, len);
            free(data);
            close(fd);
            return -e;
        }
        if (r == 0)
            break; /* the file shrank under us; take what is there */
        len += (size_t)r;
    }
    close(fd);
    data[len] = '\0';
    *data_r = data;
    *len_r = len;
    return 0;
}

/* The certificate's subject common name into out, each octet outside printable ASCII as '?'. */
static void note_cert_name(const mbedtls_x509_crt *crt, char *out, size_t size)
{
    out[0] = '\0';
    for (const mbedtls_x509_name *n = &crt->subject; n != NULL; n = n->next) {
        if (n->oid.p == NULL || MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) != 0)
            continue;
        size_t len = n->val.len < size - 1 ? n->val.len : size - 1;
        for (size_t i = 0; i < len; i++)
            out[i] = n->val.p[i] > 0x20 && n->val.p[i] < 0x7f ? (char)n->val.p[i] : '?';
        out[len] = '\0';
        return;
    }
}

/* Loads the chain and key into srv; 0 or -1 with err set. */
static int load_cert_and_key(struct tls_server *srv, const char *cert_path, const char *key_path,
                             char *err, size_t err_size)
{
    char tmp[128];
    unsigned char *data;
    size_t len;

    int rc = load_file(cert_path, &data, &len);
    if (rc < 0) {
        snprintf(err, err_size, "cannot read cert %s: %s", cert_path,
                rc == -EINVAL ? "not a regular file" : strerror(-rc));
        return -1;
    }
    /* For PEM, mbedTLS wants the terminating NUL counted in the length. */
    rc = mbedtls_x509_crt_parse(&srv->chain, data, len + 1);
    free(data);
    if (rc < 0) {
        snprintf(err, err_size, "cannot read cert %s: %s", cert_path, mbed_err(rc, tmp, sizeof tmp));
        return -1;
    }
    if (rc > 0) {
        snprintf(err, err_size, "cannot read cert %s: %d certificate(s) in it are invalid",
                cert_path, rc);
        return -1;
    }
    note_cert_name(&srv->chain, srv->cert_name, sizeof(srv->cert_name));

    rc = load_file(key_path, &data, &len);
    if (rc < 0) {
        snprintf(err, err_size, "cannot read key %s: %s", key_path,
                rc == -EINVAL ? "not a regular file" : strerror(-rc));
        return -1;
    }
    rc = mbedtls_pk_parse_key(&srv->key, data, len + 1, NULL, 0);
    mbedtls_platform_zeroize(data, len);
    free(data);
    if (rc != 0) {
        snprintf(err, err_size, "cannot read key %s: %s", key_path, mbed_err(rc, tmp, sizeof tmp));
        return -1;
    }

    if (mbedtls_pk_check_pair(&srv->chain.pk, &srv->key) != 0) {
        snprintf(err, err_size, "key %s does not belong to the certificate in %s", key_path,
                cert_path);
        return -1;
    }
    return 0;
}

/* Set by the resumption callbacks when they hand back a session during
 * the handshake step this thread is running: mbedTLS 2.28 has no call that
 * says whether a handshake resumed. */
static _Thread_local bool session_taken;

static int ticket_parse(void *ctx, mbedtls_ssl_session *session, unsigned char *buf, size_t len)
{
    int rc = mbedtls_ssl_ticket_parse(ctx, session, buf, len);
    session_taken |= rc == 0;
    return rc;
}

static int cache_get(void *ctx, mbedtls_ssl_session *session)
{
    int rc = mbedtls_ssl_cache_get(ctx, session);
    session_taken |= rc == 0;
    return rc;
}

/* Sets up srv->conf with kotak's policy; 0 or -1 with err set. */
static int setup_config(struct tls_server *srv, char *err, size_t err_size)
{
    char tmp[128];
    mbedtls_ssl_config *conf = &srv->conf;

    int rc = mbedtls_ssl_config_defaults(conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                         MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) {
        snprintf(err, err_size, "cannot set up TLS: %s", mbed_err(rc, tmp, sizeof tmp));
        return -1;
    }
    /* mbedTLS 2.28's TLS 1.3 is a client-side experiment: 1.2 is both ends. */
    mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(conf, tls_suites);
    mbedtls_ssl_conf_curves(conf, tls_curves);
#if defined(MBEDTLS_SSL_RENEGOTIATION)
    /* The default already, said aloud: renegotiation is an attack surface. */
    mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
    mbedtls_ssl_conf_rng(conf, mbedtls_ctr_drbg_random, &srv->drbg);

    rc = mbedtls_ssl_conf_own_cert(conf, &srv->chain, &srv->key);
    if (rc != 0) {
        snprintf(err, err_size, "cannot use the certificate: %s", mbed_err(rc, tmp, sizeof tmp));
        return -1;
    }
    /* Tickets are sealed with AES-256-GCM under a key made here and never
     * written anywhere; mbedTLS makes a new key each TLS_TICKET_LIFETIME_S
     * and still opens tickets of the one before, so a stolen key opens at
     * most two periods of sessions. A reload (SIGHUP) starts new keys. */
    rc = mbedtls_ssl_ticket_setup(&srv->tickets, mbedtls_ctr_drbg_random, &srv->drbg,
                                  MBEDTLS_CIPHER_AES_256_GCM, TLS_TICKET_LIFETIME_S);
    if (rc != 0) {
        snprintf(err, err_size, "cannot set up TLS session tickets: %s",
                 mbed_err(rc, tmp, sizeof tmp));
        return -1;
    }
    mbedtls_ssl_conf_session_tickets_cb(conf, mbedtls_ssl_ticket_write, ticket_parse,
                                        &srv->tickets);
    /* Clients without tickets resume by session id, from a bounded cache. */
    mbedtls_ssl_cache_set_max_entries(&srv->cache, TLS_CACHE_ENTRIES);
    mbedtls_ssl_cache_set_timeout(&srv->cache, TLS_TICKET_LIFETIME_S);
    mbedtls_ssl_conf_session_cache(conf, &srv->cache, cache_get, mbedtls_ssl_cache_set);
    return 0;
}

/* Seeds side's random generator; 0 or -1 with err set. */
static int seed(struct tls_server *side, const char *pers, char *err, size_t err_size)
{
    char tmp[128];
    mbedtls_entropy_init(&side->entropy);
    mbedtls_ctr_drbg_init(&side->drbg);
    mbedtls_ssl_config_init(&side->conf);
    mbedtls_x509_crt_init(&side->chain);
    mbedtls_pk_init(&side->key);
    mbedtls_ssl_ticket_init(&side->tickets);
    mbedtls_ssl_cache_init(&side->cache);
    int rc = mbedtls_ctr_drbg_seed(&side->drbg, mbedtls_entropy_func, &side->entropy,
                                   (const unsigned char *)pers, strlen(pers));
    if (rc != 0) {
        snprintf(err, err_size, "cannot seed the random generator: %s",
                 mbed_err(rc, tmp, sizeof tmp));
        return -1;
    }
    return 0;
}

/*
 * One signature with the key before any handshake runs: an EC key keeps a
 * table of its curve's base point that its first signature fills in, and
 * handshakes on several threads must find it there, not write it at once.
 */
static void sign_once(struct tls_server *srv)
{
    unsigned char hash[32] = {0}, sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    size_t len;
    (void)mbedtls_pk_sign(&srv->key, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, &len,
                          mbedtls_ctr_drbg_random, &srv->drbg);
}

int tls_server_new(const char *cert_path, const char *key_path, struct tls_server **srv_r,
                   char *err, size_t err_size)
{
    /* On the heap and never moved: the config points into the struct. */
    struct tls_server *srv = xcalloc(1, sizeof *srv);
    if (seed(srv, "kotak-tls-server", err, err_size) < 0)
        goto fail;
    if (load_cert_and_key(srv, cert_path, key_path, err, err_size) < 0)
        goto fail;
    if (setup_config(srv, err, err_size) < 0)
        goto fail;
    sign_once(srv);
    *srv_r = srv;
    return 0;

fail:
    tls_server_free(&srv);
    return -1;
}

static void server_destroy(struct tls_server *s)
{
    mbedtls_ssl_config_free(&s->conf);
    mbedtls_ssl_ticket_free(&s->tickets); /* wipes the ticket keys */
    mbedtls_ssl_cache_free(&s->cache);
    mbedtls_pk_free(&s->key); /* wipes the key */
    mbedtls_x509_crt_free(&s->chain);
    mbedtls_ctr_drbg_free(&s->drbg);
    mbedtls_entropy_free(&s->entropy);
    free(s); /* a client's side is the first member of its struct tls_client */
}

void tls_server_free(struct tls_server **srv)
{
    struct tls_server *s = *srv;
    *srv = NULL;
    if (s == NULL)
        return;
    s->released = true;
    if (s->conns == 0)
        server_destroy(s);
}

/* mbedTLS's transport: hands over what was fed, or says "come back later". */
static int bio_recv(void *ctx, unsigned char *p, size_t n)
{
    struct tls_conn *c = ctx;
    size_t avail = c->in.len - c->in_off;
    if (avail == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (n > avail)
        n = avail;
    if (n > INT_MAX)
        n = INT_MAX;
    memcpy(p, c->in.data + c->in_off, n);
    c->in_off += n;
    if (c->in_off == c->in.len) {
        /* Drained: give the storage back, so an idle connection holds none. */
        buf_free(&c->in);
        c->in_off = 0;
    }
    return (int)n;
}

/* mbedTLS's transport: everything goes to `out`, which has no ceiling. */
static int bio_send(void *ctx, const unsigned char *p, size_t n)
{
    struct tls_conn *c = ctx;
    if (n > INT_MAX)
        n = INT_MAX;
    if (buf_append(&c->out, p, n) < 0)
        return MBEDTLS_ERR_SSL_WANT_WRITE; /* unreachable without a ceiling */
    return (int)n;
}

/*
 * The system's trust anchors: SSL_CERT_FILE when the environment sets it
 * (the convention OpenSSL and most TLS clients follow, which lets a test
 * trust a CA of its own without touching the system), else Debian's bundle.
 */
static const char *system_ca(void)
{
    const char *env = getenv("SSL_CERT_FILE");
    return env != NULL && env[0] != '\0' ? env : TLS_SYSTEM_CA;
}

/*
 * Checking a signature with a trust anchor's EC key fills, on first use, a
 * table of its curve's base point kept in that key, and handshakes check
 * signatures on several threads (tls.h): each EC anchor makes its table
 * here, once, before any handshake can.
 */
static void fill_anchor_tables(struct tls_server *side)
{
    mbedtls_ecp_point r;
    mbedtls_mpi two;
    mbedtls_ecp_point_init(&r);
    mbedtls_mpi_init(&two);
    if (mbedtls_mpi_lset(&two, 2) == 0)
        for (mbedtls_x509_crt *crt = &side->chain; crt != NULL; crt = crt->next)
            if (crt->raw.len > 0 && mbedtls_pk_can_do(&crt->pk, MBEDTLS_PK_ECKEY)) {
                mbedtls_ecp_group *grp = &mbedtls_pk_ec(crt->pk)->grp;
                (void)mbedtls_ecp_mul(grp, &r, &two, &grp->G, mbedtls_ctr_drbg_random,
                                      &side->drbg);
            }
    mbedtls_ecp_point_free(&r);
    mbedtls_mpi_free(&two);
}

int tls_client_new(const char *ca_path, bool verify, struct tls_client **cli_r, char *err,
                   size_t err_size)
{
    char tmp[128];
    struct tls_client *cli = xcalloc(1, sizeof *cli);
    struct tls_server *side = &cli->side;
    cli->verify = verify;
    if (seed(side, "kotak-tls-client", err, err_size) < 0)
        goto fail;
    const char *path = ca_path && ca_path[0] ? ca_path : system_ca();
    int rc = mbedtls_x509_crt_parse_file(&side->chain, path);
    /* A positive count is of certificates that did not parse; the store
     * holds others, and an odd one out should not stop delivery. */
    if (rc < 0 && (verify || (ca_path && ca_path[0]))) {
        snprintf(err, err_size, "cannot read the CA file %s: %s", path,
                 mbed_err(rc, tmp, sizeof tmp));
        goto fail;
    }
    fill_anchor_tables(side);
    mbedtls_ssl_config *conf = &side->conf;
    rc = mbedtls_ssl_config_defaults(conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                     MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) {
        snprintf(err, err_size, "cannot set up TLS: %s", mbed_err(rc, tmp, sizeof tmp));
        goto fail;
    }
    /* The library's wider default suite list, TLS 1.2: the servers kotak
     * delivers to are many and old; anything less falls back to plaintext
     * on a new connection, as Postfix's `may` does. */
    mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#if defined(MBEDTLS_SSL_RENEGOTIATION)
    mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
    mbedtls_ssl_conf_rng(conf, mbedtls_ctr_drbg_random, &side->drbg);
    mbedtls_ssl_conf_ca_chain(conf, &side->chain, NULL);
    mbedtls_ssl_conf_authmode(conf,
                              verify ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_OPTIONAL);
    *cli_r = cli;
    return 0;
fail:
    tls_client_free(&cli);
    return -1;
}

void tls_client_free(struct tls_client **cli)
{
    struct tls_client *c = *cli;
    *cli = NULL;
    if (c == NULL)
        return;
    struct tls_server *side = &c->side;
    tls_server_free(&side); /* the struct goes with its last connection */
}

struct tls_conn *tls_conn_new(struct tls_server *srv)
{
    struct tls_conn *c = xmalloc(sizeof *c);
    mbedtls_ssl_init(&c->ssl);
    buf_init(&c->in, 0); /* the ceiling is tls_conn_feed's, see there */
    buf_init(&c->out, 0);
    c->in_off = 0;
    c->peer_closed = false;
    c->ip_len = 0;
    c->error = 0;
    c->alert = -1;
    c->resumed = false;
    c->srv = srv;
    srv->conns++;
    /* The only failure is memory for the record buffers: abort, as xmalloc. */
    if (mbedtls_ssl_setup(&c->ssl, &srv->conf) != 0)
        abort();
    mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
    return c;
}

void tls_conn_free(struct tls_conn **c)
{
    struct tls_conn *t = *c;
    if (t == NULL)
        return;
    mbedtls_ssl_free(&t->ssl);
    buf_free(&t->in);
    buf_free(&t->out);
    struct tls_server *srv = t->srv;
    free(t);
    *c = NULL;
    if (--srv->conns == 0 && srv->released)
        server_destroy(srv); /* replaced by a reload, and now unused */
}

int tls_conn_feed(struct tls_conn *c, const void *p, size_t n)
{
    /*
     * The test is on what already waits, as documented, so one read of any
     * size is always taken: the glue's read buffer bounds a single feed.
     */
    if (c->in.len - c->in_off > TLS_IN_MAX)
        return -ENOBUFS;
    if (c->in_off > 0) {
        buf_consume(&c->in, c->in_off);
        c->in_off = 0;
    }
    return buf_append(&c->in, p, n);
}

size_t tls_conn_waiting(const struct tls_conn *c)
{
    return c->in.len - c->in_off;
}

static bool handshake_over(const struct tls_conn *c)
{
    return c->ssl.state == MBEDTLS_SSL_HANDSHAKE_OVER;
}

/*
 * Keeps the first error that failed the connection, for tls_conn_error, and
 * with it the peer's alert when that was the cause: mbedTLS reports only
 * that one came, and leaves the record (level, description) in in_msg.
 */
static int failed(struct tls_conn *c, int rc)
{
    if (c->error == 0) {
        c->error = rc;
        if (rc == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && c->ssl.in_msg != NULL)
            c->alert = c->ssl.in_msg[1];
    }
    return -EPROTO;
}

/*
 * The check of a peer named by its IP address, which mbedTLS 2.28 does not
 * make: the certificate must list that address among its subjectAltName
 * iPAddress entries (RFC 5280 4.2.1.6; the entries are kept raw, tag [7]).
 */
static int verify_ip(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    const struct tls_conn *c = ctx;
    if (depth != 0)
        return 0;
    for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san != NULL; san = san->next)
        if (san->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && san->buf.len == c->ip_len &&
            memcmp(san->buf.p, c->ip, c->ip_len) == 0)
            return 0;
    *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

struct tls_conn *tls_client_connect(struct tls_client *cli, const char *host)
{
    struct tls_conn *c = tls_conn_new(&cli->side);
    if (host == NULL || host[0] == '\0')
        return c;
    if (inet_pton(AF_INET, host, c->ip) == 1 || inet_pton(AF_INET6, host, c->ip) == 1) {
        /* An address: no SNI (RFC 6066 3 allows host names only), and
         * the certificate checked for the address itself. */
        c->ip_len = strchr(host, ':') ? 16 : 4;
        mbedtls_ssl_set_verify(&c->ssl, verify_ip, c);
        return c;
    }
    /* SNI, and the name a verified certificate must hold. */
    if (mbedtls_ssl_set_hostname(&c->ssl, host) != 0)
        abort(); /* only for memory, or a name over 255 octets the caller never passes */
    return c;
}

bool tls_conn_resumed(const struct tls_conn *c)
{
    return c->resumed;
}

bool tls_conn_verified(const struct tls_conn *c)
{
    return handshake_over(c) && mbedtls_ssl_get_verify_result(&c->ssl) == 0;
}

int tls_conn_handshake(struct tls_conn *c)
{
    session_taken = false;
    int rc = mbedtls_ssl_handshake(&c->ssl);
    c->resumed |= session_taken;
    if (rc == 0)
        return 1;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 0;
    return failed(c, rc);
}

ssize_t tls_conn_read(struct tls_conn *c, void *p, size_t n)
{
    if (c->peer_closed)
        return -EPIPE;
    if (!handshake_over(c))
        return -EPROTO;
    if (n == 0)
        return 0;
    if (n > INT_MAX)
        n = INT_MAX;
    int rc = mbedtls_ssl_read(&c->ssl, p, n);
    if (rc > 0)
        return rc;
    if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
        c->peer_closed = true;
        return -EPIPE;
    }
    /* 0 would mean the transport ended, which ours never says. */
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 0;
    return failed(c, rc);
}

int tls_conn_write(struct tls_conn *c, const void *p, size_t n)
{
    if (!handshake_over(c))
        return -EPROTO;
    const unsigned char *s = p;
    while (n > 0) {
        /* Each call writes at most one record (16 KiB); loop for the rest. */
        int rc = mbedtls_ssl_write(&c->ssl, s, n);
        if (rc <= 0) /* WANT_WRITE cannot happen: bio_send takes all */
            return rc < 0 ? failed(c, rc) : -EPROTO;
        s += rc;
        n -= (size_t)rc;
    }
    return 0;
}

void tls_conn_close_notify(struct tls_conn *c)
{
    /* Only the transport could fail, and bio_send does not. */
    (void)mbedtls_ssl_close_notify(&c->ssl);
}

const void *tls_conn_pending_out(struct tls_conn *c, size_t *len_r)
{
    *len_r = c->out.len;
    return c->out.data;
}

void tls_conn_consume_out(struct tls_conn *c, size_t n)
{
    assert(n <= c->out.len);
    if (n >= c->out.len) {
        /* All sent: give the storage back, so an idle connection holds none. */
        buf_free(&c->out);
        return;
    }
    buf_consume(&c->out, n);
}

const char *tls_conn_version(struct tls_conn *c)
{
    return handshake_over(c) ? mbedtls_ssl_get_version(&c->ssl) : NULL;
}

const char *tls_conn_cipher(struct tls_conn *c)
{
    return handshake_over(c) ? mbedtls_ssl_get_ciphersuite(&c->ssl) : NULL;
}

time_t tls_server_expiry(const struct tls_server *srv)
{
    const mbedtls_x509_time *t = &srv->chain.valid_to;
    struct tm tm = {.tm_year = t->year - 1900, .tm_mon = t->mon - 1, .tm_mday = t->day,
                    .tm_hour = t->hour, .tm_min = t->min, .tm_sec = t->sec};
    return timegm(&tm);
}

const char *tls_conn_cert_name(const struct tls_conn *c)
{
    return c->srv->cert_name;
}

/* The alerts of RFC 5246 and RFC 8446 by number, for tls_conn_error. */
static const struct {
    int code;
    const char *name;
} tls_alerts[] = {
    {0, "close notify"},
    {10, "unexpected message"},
    {20, "bad record mac"},
    {21, "decryption failed"},
    {22, "record overflow"},
    {30, "decompression failure"},
    {40, "handshake failure"},
    {41, "no certificate"},
    {42, "bad certificate"},
    {43, "unsupported certificate"},
    {44, "certificate revoked"},
    {45, "certificate expired"},
    {46, "certificate unknown"},
    {47, "illegal parameter"},
    {48, "unknown ca"},
    {49, "access denied"},
    {50, "decode error"},
    {51, "decrypt error"},
    {70, "protocol version"},
    {71, "insufficient security"},
    {80, "internal error"},
    {86, "inappropriate fallback"},
    {90, "user canceled"},
    {100, "no renegotiation"},
    {109, "missing extension"},
    {110, "unsupported extension"},
    {112, "unrecognized name"},
    {116, "certificate required"},
    {120, "no application protocol"},
};

bool tls_conn_error(const struct tls_conn *c, char *dst, size_t size)
{
    if (c->error == 0)
        return false;
    if (c->alert < 0) {
        mbedtls_strerror(c->error, dst, size);
        return true;
    }
    for (size_t i = 0; i < sizeof tls_alerts / sizeof tls_alerts[0]; i++) {
        if (tls_alerts[i].code == c->alert) {
            snprintf(dst, size, "peer sent alert: %s", tls_alerts[i].name);
            return true;
        }
    }
    snprintf(dst, size, "peer sent alert %d", c->alert);
    return true;
}

bool tls_conn_verify_error(const struct tls_conn *c, char *dst, size_t size)
{
    uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
    if (flags == 0 || flags == UINT32_MAX || size == 0)
        return false;
    char text[512];
    int n = mbedtls_x509_crt_verify_info(text, sizeof text, "", flags);
    if (n <= 0)
        return false;
    /* One line per reason, each ending in a newline: one line in all. */
    size_t out = 0;
    for (const char *p = text; *p != '\0' && out + 1 < size; p++) {
        if (*p != '\n') {
            dst[out++] = *p;
        } else if (p[1] != '\0') {
            for (const char *sep = "; "; *sep != '\0' && out + 1 < size; sep++)
                dst[out++] = *sep;
        }
    }
    dst[out] = '\0';
    return true;
}
