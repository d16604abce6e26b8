/*
 * test_tls.c — common/tls.h and common/cert.h, with no socket: a self-signed
 * certificate made by cert_make_self_signed, a tls_conn, and an mbedTLS
 * client in this process, with the test shuttling the ciphertext between
 * them. Covers the handshake and its outcome (TLS 1.2, ECDHE, AEAD, the
 * client verifying the certificate and the host name), data both ways (100
 * KiB in one write, sent in uneven pieces), close_notify both ways, the
 * policy (non-ECDHE suites and TLS 1.1 are refused), garbage input, the feed
 * ceiling, loading errors, and the certificate's subjectAltName.
 */
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "buf.h"
#include "cert.h"
#include "tap.h"
#include "tls.h"

#define HOST "mail.example.test"
#define BIG (100 * 1024)
#define ROUNDS 50

static char dir[] = "/tmp/kotak-test-tls-XXXXXX";
static char cert_path[256], key_path[256], cert2_path[256], key2_path[256], ipcert_path[256],
    ipkey_path[256];

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static mbedtls_x509_crt trusted; /* the self-signed cert, as the client's CA */

/* An mbedTLS client over two memory buffers, as the far end of a tls_conn. */
struct client {
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    struct buf in; /* from the server, not yet read by mbedTLS */
    size_t in_off;
    struct buf out; /* for the server */
};

static int client_recv(void *ctx, unsigned char *p, size_t n)
{
    struct client *cl = ctx;
    size_t avail = cl->in.len - cl->in_off;
    if (avail == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (n > avail)
        n = avail;
    memcpy(p, cl->in.data + cl->in_off, n);
    cl->in_off += n;
    if (cl->in_off == cl->in.len) {
        buf_reset(&cl->in);
        cl->in_off = 0;
    }
    return (int)n;
}

static int client_send(void *ctx, const unsigned char *p, size_t n)
{
    struct client *cl = ctx;
    return buf_append(&cl->out, p, n) == 0 ? (int)n : MBEDTLS_ERR_SSL_WANT_WRITE;
}

/*
 * A client that offers TLS 1.minor_min-1 .. 1.minor_max-1 (mbedTLS minor
 * numbers: 2 is TLS 1.1, 3 is TLS 1.2), suites (NULL: the library's
 * defaults), and checks the certificate against `trusted` and the name host.
 */
static void client_init(struct client *cl, int minor_min, int minor_max, const int *suites,
                        const char *host)
{
    mbedtls_ssl_config_init(&cl->conf);
    mbedtls_ssl_init(&cl->ssl);
    buf_init(&cl->in, 0);
    buf_init(&cl->out, 0);
    cl->in_off = 0;
    int rc = mbedtls_ssl_config_defaults(&cl->conf, MBEDTLS_SSL_IS_CLIENT,
                                         MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0)
        abort();
    mbedtls_ssl_conf_min_version(&cl->conf, MBEDTLS_SSL_MAJOR_VERSION_3, minor_min);
    mbedtls_ssl_conf_max_version(&cl->conf, MBEDTLS_SSL_MAJOR_VERSION_3, minor_max);
    if (suites != NULL)
        mbedtls_ssl_conf_ciphersuites(&cl->conf, suites);
    mbedtls_ssl_conf_authmode(&cl->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&cl->conf, &trusted, NULL);
    mbedtls_ssl_conf_rng(&cl->conf, mbedtls_ctr_drbg_random, &drbg);
    if (mbedtls_ssl_setup(&cl->ssl, &cl->conf) != 0 || mbedtls_ssl_set_hostname(&cl->ssl, host))
        abort();
    mbedtls_ssl_set_bio(&cl->ssl, cl, client_send, client_recv, NULL);
}

static void client_free(struct client *cl)
{
    mbedtls_ssl_free(&cl->ssl);
    mbedtls_ssl_config_free(&cl->conf);
    buf_free(&cl->in);
    buf_free(&cl->out);
}

/*
 * Moves at most chunk bytes (0: all) of the server's output to the client,
 * in pieces that do not follow record bounds, and all of the client's output
 * to the server. Returns the bytes moved, or -1 if the server refused a feed.
 */
static long pump(struct tls_conn *c, struct client *cl, size_t chunk)
{
    long moved = 0;
    size_t len;
    const void *p = tls_conn_pending_out(c, &len);
    if (chunk != 0 && len > chunk)
        len = chunk;
    if (len > 0) {
        if (buf_append(&cl->in, p, len) != 0)
            abort();
        tls_conn_consume_out(c, len);
        moved += (long)len;
    }
    if (cl->out.len > 0) {
        if (tls_conn_feed(c, cl->out.data, cl->out.len) != 0)
            return -1;
        moved += (long)cl->out.len;
        buf_reset(&cl->out);
    }
    return moved;
}

/*
 * Runs both handshakes until both are over, or one failed and no more bytes
 * move, for at most ROUNDS rounds. *srv_r gets the last tls_conn_handshake
 * result, *cli_r the last mbedtls_ssl_handshake result.
 */
static void handshake(struct tls_conn *c, struct client *cl, int *srv_r, int *cli_r)
{
    int srv = 0, cli = MBEDTLS_ERR_SSL_WANT_READ;
    for (int i = 0; i < ROUNDS; i++) {
        if (cli == MBEDTLS_ERR_SSL_WANT_READ || cli == MBEDTLS_ERR_SSL_WANT_WRITE)
            cli = mbedtls_ssl_handshake(&cl->ssl);
        if (srv == 0)
            srv = tls_conn_handshake(c);
        long moved = pump(c, cl, 0);
        if (srv == 1 && cli == 0 && moved == 0)
            break;
        if ((srv < 0 ||
             (cli != 0 && cli != MBEDTLS_ERR_SSL_WANT_READ && cli != MBEDTLS_ERR_SSL_WANT_WRITE)) &&
            moved == 0)
            break;
    }
    *srv_r = srv;
    *cli_r = cli;
}

/* Glibc's count of bytes in use: to measure one connection's memory. */
static size_t heap_in_use(void)
{
    return mallinfo2().uordblks;
}

/* cert_make_self_signed for one name. */
static int make_cert(const char *name, const char *crt, const char *key, char *err, size_t n)
{
    return cert_make_self_signed(&name, 1, crt, key, err, n);
}

static void test_make_cert(void)
{
    char err[256] = "";
    struct stat st;

    ok(mkdtemp(dir) != NULL, "mkdtemp %s", dir);
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    snprintf(cert2_path, sizeof cert2_path, "%s/cert2.pem", dir);
    snprintf(key2_path, sizeof key2_path, "%s/key2.pem", dir);
    snprintf(ipcert_path, sizeof ipcert_path, "%s/ipcert.pem", dir);
    snprintf(ipkey_path, sizeof ipkey_path, "%s/ipkey.pem", dir);

    is_int(make_cert(HOST, cert_path, key_path, err, sizeof err), 0,
           "cert_make_self_signed for " HOST " (%s)", err);
    ok(stat(key_path, &st) == 0 && (st.st_mode & 07777) == 0600, "the key file is mode 0600 (%o)",
       (unsigned)(st.st_mode & 07777));
    ok(stat(cert_path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0,
       "the cert file is there");

    /* Made again over the old files: they are replaced, not refused. */
    is_int(make_cert(HOST, cert2_path, key2_path, err, sizeof err), 0, "a second certificate (%s)",
           err);
    is_int(make_cert(HOST, cert2_path, key2_path, err, sizeof err), 0,
           "made again over existing files (%s)", err);
    is_int(make_cert("127.0.0.1", ipcert_path, ipkey_path, err, sizeof err), 0,
           "a certificate for an IP address (%s)", err);

    err[0] = '\0';
    char bad_cert[300], bad_key[300];
    snprintf(bad_cert, sizeof bad_cert, "%s/bad-cert.pem", dir);
    snprintf(bad_key, sizeof bad_key, "%s/bad-key.pem", dir);
    is_int(make_cert("bad,name=x", bad_cert, bad_key, err, sizeof err), -1,
           "a host name with ',' and '=' is refused");
    ok(strstr(err, "bad,name=x") != NULL, "err names it: %s", err);
    ok(access(bad_cert, F_OK) != 0 && access(bad_key, F_OK) != 0, "and no file is left");
    is_int(make_cert(HOST, "/nonexistent-dir/c.pem", bad_key, err, sizeof err), -1,
           "an uncreatable cert path fails");
    ok(strstr(err, "/nonexistent-dir/c.pem") != NULL, "err names the path: %s", err);
    ok(access(bad_key, F_OK) != 0, "and the key written before it is removed");

    ok(mbedtls_x509_crt_parse_file(&trusted, cert_path) == 0, "the client can parse the cert");
}

static void test_server_errors(void)
{
    char err[512] = "";
    struct tls_server *srv = NULL;
    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing.pem", dir);

    is_int(tls_server_new(missing, key_path, &srv, err, sizeof err), -1, "missing cert: -1");
    ok(srv == NULL, "and no server");
    ok(strstr(err, missing) != NULL && strstr(err, "No such file") != NULL, "err: %s", err);
    is_int(tls_server_new(cert_path, missing, &srv, err, sizeof err), -1, "missing key: -1");
    ok(strstr(err, missing) != NULL, "err: %s", err);
    is_int(tls_server_new(cert_path, cert_path, &srv, err, sizeof err), -1, "cert as key: -1");
    ok(strstr(err, "cannot read key") != NULL, "err: %s", err);
    is_int(tls_server_new(key_path, key_path, &srv, err, sizeof err), -1, "key as cert: -1");
    ok(strstr(err, "cannot read cert") != NULL, "err: %s", err);
    is_int(tls_server_new(cert_path, key2_path, &srv, err, sizeof err), -1,
           "a key of another cert: -1");
    ok(strstr(err, "does not belong") != NULL, "err: %s", err);
    is_int(tls_server_new(dir, key_path, &srv, err, sizeof err), -1, "a folder as cert: -1");
    ok(srv == NULL, "still no server");
    tls_server_free(&srv); /* NULL is fine */
}

static void test_session(struct tls_server *srv)
{
    struct client cl;
    client_init(&cl, MBEDTLS_SSL_MINOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3, NULL, HOST);

    size_t before = heap_in_use();
    struct tls_conn *c = tls_conn_new(srv);
    ok(tls_conn_version(c) == NULL && tls_conn_cipher(c) == NULL, "no version before handshake");
    char tmp[16];
    is_int(tls_conn_read(c, tmp, sizeof tmp), -EPROTO, "read before the handshake: -EPROTO");
    is_int(tls_conn_write(c, "x", 1), -EPROTO, "write before the handshake: -EPROTO");

    int srv_rc, cli_rc;
    handshake(c, &cl, &srv_rc, &cli_rc);
    is_int(srv_rc, 1, "server handshake done");
    is_int(cli_rc, 0, "client handshake done");
    is_int(mbedtls_ssl_get_verify_result(&cl.ssl), 0, "the client verified cert and host name");
    is_int(tls_conn_handshake(c), 1, "handshake again: still 1");
    is_str(tls_conn_version(c), "TLSv1.2", "version");
    const char *suite = tls_conn_cipher(c);
    ok(suite != NULL && strstr(suite, "ECDHE") != NULL &&
           (strstr(suite, "GCM") != NULL || strstr(suite, "CHACHA") != NULL),
       "cipher %s is ECDHE with AEAD", suite ? suite : "(null)");
    size_t pend;
    tls_conn_pending_out(c, &pend);
    is_int(pend, 0, "nothing left to send after the handshake");

    /* What an idle connection costs: its share of the heap, freed later. */
    size_t idle = heap_in_use();
    printf("# heap growth over the handshake, client included: %zu bytes\n", idle - before);

    /* Client to server, in two records, read in small pieces. */
    static const char cmd1[] = "EHLO client.example.test\r\n", cmd2[] = "STARTTLS? no, QUIT\r\n";
    ok(mbedtls_ssl_write(&cl.ssl, (const unsigned char *)cmd1, strlen(cmd1)) == (int)strlen(cmd1) &&
           mbedtls_ssl_write(&cl.ssl, (const unsigned char *)cmd2, strlen(cmd2)) ==
               (int)strlen(cmd2),
       "client writes two records");
    ok(pump(c, &cl, 0) > 0, "they reach the server");
    char got[128];
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        ssize_t r = tls_conn_read(c, got + n, 5 < sizeof got - n ? 5 : sizeof got - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    ok(n == strlen(cmd1) + strlen(cmd2) && memcmp(got, cmd1, strlen(cmd1)) == 0 &&
           memcmp(got + strlen(cmd1), cmd2, strlen(cmd2)) == 0,
       "server read both lines, 5 bytes at a time (%zu bytes)", n);
    is_int(tls_conn_read(c, got, sizeof got), 0, "then read says: need more input");
    is_int(tls_conn_read(c, got, 0), 0, "a read of 0 bytes is 0");

    /* Server to client: 100 KiB in one write, sent in uneven pieces. */
    unsigned char *big = malloc(BIG), *back = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (unsigned char)(i * 7 + i / 251);
    is_int(tls_conn_write(c, big, BIG), 0, "server writes 100 KiB at once");
    tls_conn_pending_out(c, &pend);
    ok(pend > BIG, "all of it is pending, encrypted (%zu bytes)", pend);
    size_t have = 0;
    for (int i = 0; i < 1000 && have < BIG; i++) {
        pump(c, &cl, 7001);
        for (;;) {
            int r = mbedtls_ssl_read(&cl.ssl, back + have, BIG - have);
            if (r <= 0)
                break;
            have += (size_t)r;
        }
    }
    ok(have == BIG && memcmp(big, back, BIG) == 0, "client read the 100 KiB intact (%zu)", have);
    tls_conn_pending_out(c, &pend);
    is_int(pend, 0, "nothing left to send");
    free(big);
    free(back);

    /* The server says goodbye first; the client sees close_notify. */
    tls_conn_close_notify(c);
    pump(c, &cl, 0);
    is_int(mbedtls_ssl_read(&cl.ssl, (unsigned char *)got, sizeof got),
           MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY, "client sees the server's close_notify");

    /* And the client's close_notify makes the server's read say -EPIPE. */
    is_int(mbedtls_ssl_close_notify(&cl.ssl), 0, "client sends close_notify");
    pump(c, &cl, 0);
    is_int(tls_conn_read(c, got, sizeof got), -EPIPE, "server read: -EPIPE");
    is_int(tls_conn_read(c, got, sizeof got), -EPIPE, "and -EPIPE again");
    snprintf(got, sizeof got, "untouched");
    ok(!tls_conn_error(c, got, sizeof got) && strcmp(got, "untouched") == 0,
       "a session ended by close_notify has no TLS error");

    size_t with = heap_in_use();
    tls_conn_free(&c);
    ok(c == NULL, "tls_conn_free sets NULL");
    size_t without = heap_in_use();
    size_t per_conn = with - without; /* 0 under ASan, whose heap mallinfo2 does not see */
    printf("# memory held by one tls_conn after the handshake: %zu bytes\n", per_conn);
    ok(per_conn < 80 * 1024, "a connection holds less than 80 KiB (%zu)", per_conn);
    tls_conn_free(&c); /* NULL is fine */
    client_free(&cl);
}

/* A client that cannot agree with the policy: both ends must fail. */
static void test_refused(struct tls_server *srv, const char *what, int minor_min, int minor_max,
                         const int *suites, const char *host)
{
    struct client cl;
    client_init(&cl, minor_min, minor_max, suites, host);
    struct tls_conn *c = tls_conn_new(srv);
    int srv_rc, cli_rc;
    handshake(c, &cl, &srv_rc, &cli_rc);
    ok(srv_rc < 0 || cli_rc < 0, "%s: the handshake fails (server %d, client %d)", what, srv_rc,
       cli_rc);
    ok(cli_rc != 0 && cli_rc != MBEDTLS_ERR_SSL_WANT_READ, "%s: the client failed (%d)", what,
       cli_rc);
    ok(tls_conn_version(c) == NULL, "%s: no version on the server", what);
    tls_conn_free(&c);
    client_free(&cl);
}

static void test_policy(struct tls_server *srv)
{
    static const int rsa_only[] = {MBEDTLS_TLS_RSA_WITH_AES_128_GCM_SHA256, 0};
    static const int ecdhe_cbc[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, 0};
    struct client cl;
    struct tls_conn *c;
    int srv_rc, cli_rc;

    /* The server's own verdict, checked where it is certain to fail. */
    client_init(&cl, MBEDTLS_SSL_MINOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3, rsa_only, HOST);
    c = tls_conn_new(srv);
    handshake(c, &cl, &srv_rc, &cli_rc);
    is_int(srv_rc, -EPROTO, "client offering only RSA key exchange: server fails");
    ok(cli_rc < 0 && cli_rc != MBEDTLS_ERR_SSL_WANT_READ, "and the client got an alert (%d)",
       cli_rc);
    char why[128] = "";
    ok(tls_conn_error(c, why, sizeof why) && strncmp(why, "SSL - ", 6) == 0,
       "tls_conn_error gives mbedTLS's words: %s", why);
    tls_conn_free(&c);
    client_free(&cl);

    /* A client that rejects the certificate says so with an alert. */
    client_init(&cl, MBEDTLS_SSL_MINOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3, NULL,
                "other.example.test");
    c = tls_conn_new(srv);
    handshake(c, &cl, &srv_rc, &cli_rc);
    is_int(srv_rc, -EPROTO, "client rejecting the host name: server fails");
    why[0] = '\0';
    ok(tls_conn_error(c, why, sizeof why), "and knows why");
    is_str(why, "peer sent alert: bad certificate", "the peer's alert, by name");
    char tiny[8] = "";
    ok(tls_conn_error(c, tiny, sizeof tiny) && strlen(tiny) == sizeof tiny - 1,
       "cut to the buffer: %s", tiny);
    tls_conn_free(&c);
    client_free(&cl);

    client_init(&cl, MBEDTLS_SSL_MINOR_VERSION_2, MBEDTLS_SSL_MINOR_VERSION_2, NULL, HOST);
    c = tls_conn_new(srv);
    handshake(c, &cl, &srv_rc, &cli_rc);
    is_int(srv_rc, -EPROTO, "client offering only TLS 1.1: server fails");
    ok(cli_rc < 0 && cli_rc != MBEDTLS_ERR_SSL_WANT_READ, "and the client got an alert (%d)",
       cli_rc);
    tls_conn_free(&c);
    client_free(&cl);

    test_refused(srv, "ECDHE with CBC only", MBEDTLS_SSL_MINOR_VERSION_3,
                 MBEDTLS_SSL_MINOR_VERSION_3, ecdhe_cbc, HOST);
    /* The client checks the name against the SAN: another name fails. */
    test_refused(srv, "wrong host name", MBEDTLS_SSL_MINOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3,
                 NULL, "other.example.test");
}

static void test_garbage(struct tls_server *srv)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: mail.example.test\r\n\r\n";
    struct tls_conn *c = tls_conn_new(srv);
    is_int(tls_conn_feed(c, http, strlen(http)), 0, "feed an HTTP request");
    is_int(tls_conn_handshake(c), -EPROTO, "the handshake fails cleanly");
    is_int(tls_conn_handshake(c), -EPROTO, "and stays failed");
    char tmp[16];
    is_int(tls_conn_read(c, tmp, sizeof tmp), -EPROTO, "read after a failed handshake: -EPROTO");
    char why[128] = "";
    ok(tls_conn_error(c, why, sizeof why) && strstr(why, "ClientHello") != NULL,
       "tls_conn_error names the ClientHello: %s", why);
    tls_conn_free(&c);

    /* A TLS record header that claims a huge length, then junk. */
    static const unsigned char bad_rec[] = {0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5};
    c = tls_conn_new(srv);
    is_int(tls_conn_feed(c, bad_rec, sizeof bad_rec), 0, "feed an oversized record header");
    is_int(tls_conn_handshake(c), -EPROTO, "the handshake fails cleanly");
    tls_conn_free(&c);

    /* Three bytes are too few to judge: the handshake waits. */
    c = tls_conn_new(srv);
    is_int(tls_conn_feed(c, "\x16\x03\x01", 3), 0, "feed 3 bytes");
    is_int(tls_conn_handshake(c), 0, "the handshake needs more");
    char none[8] = "";
    ok(!tls_conn_error(c, none, sizeof none), "and nothing failed (%s)", none);
    tls_conn_free(&c);

    /* The ceiling: a large feed is taken, but not one more while it waits. */
    size_t big = 64 * 1024 + 1;
    char *junk = calloc(1, big);
    c = tls_conn_new(srv);
    is_int(tls_conn_feed(c, junk, big), 0, "feed 64 KiB + 1 into an empty conn");
    is_int(tls_conn_feed(c, junk, 1), -ENOBUFS, "one byte more while it waits: -ENOBUFS");
    tls_conn_free(&c);
    free(junk);
}

/* Runs `openssl x509 -text` on path; 1 if its output holds want, 0 if not, -1 no openssl. */
static int openssl_text_has(const char *path, const char *want)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -text 2>/dev/null", path);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strstr(line, want) != NULL)
            found = 1;
    int st = pclose(f);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    return found;
}

/* True when crt's subjectAltName has an entry with this tag and value. */
static bool san_has(const mbedtls_x509_crt *crt, int tag, const void *v, size_t len)
{
    for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s != NULL; s = s->next)
        if (s->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | tag) && s->buf.len == len &&
            memcmp(s->buf.p, v, len) == 0)
            return true;
    return false;
}

static void test_cert_contents(void)
{
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    is_int(mbedtls_x509_crt_parse_file(&crt, cert_path), 0, "parse the cert back");
    ok(san_has(&crt, 2, HOST, strlen(HOST)), "its SAN holds DNS:" HOST);
    is_int(crt.version, 3, "X.509 v3");
    ok(crt.sig_md == MBEDTLS_MD_SHA256 && crt.sig_pk == MBEDTLS_PK_ECDSA, "signed ECDSA-SHA256");
    ok(mbedtls_pk_get_type(&crt.pk) == MBEDTLS_PK_ECKEY && mbedtls_pk_get_bitlen(&crt.pk) == 256,
       "a P-256 key");
    ok(crt.ca_istrue == 0, "not a CA");
    ok(mbedtls_x509_crt_check_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE) == 0,
       "keyUsage digitalSignature");
    ok(mbedtls_x509_crt_check_extended_key_usage(&crt, MBEDTLS_OID_SERVER_AUTH,
                                                 MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)) == 0,
       "extendedKeyUsage serverAuth");
    ok(crt.valid_to.year - crt.valid_from.year == 10, "valid for ten years (%d to %d)",
       crt.valid_from.year, crt.valid_to.year);
    ok(!mbedtls_x509_time_is_future(&crt.valid_from) && !mbedtls_x509_time_is_past(&crt.valid_to),
       "valid now");
    ok(crt.serial.len >= 16 && (crt.serial.p[0] & 0x80) == 0, "a positive 16-byte serial");
    mbedtls_x509_crt_free(&crt);

    mbedtls_x509_crt_init(&crt);
    is_int(mbedtls_x509_crt_parse_file(&crt, ipcert_path), 0, "parse the IP cert back");
    ok(san_has(&crt, 7, "\x7f\x00\x00\x01", 4), "its SAN holds IP:127.0.0.1");
    mbedtls_x509_crt_free(&crt);

    int has = openssl_text_has(cert_path, "DNS:" HOST);
    if (has < 0) {
        ok(1, "# SKIP openssl is not installed");
        ok(1, "# SKIP openssl is not installed");
    } else {
        is_int(has, 1, "openssl x509 -text shows DNS:" HOST);
        is_int(openssl_text_has(ipcert_path, "IP Address:127.0.0.1"), 1,
               "openssl x509 -text shows IP Address:127.0.0.1");
    }
}

/* Runs `openssl x509 -ext subjectAltName` on path: the names after the
 * heading, ", "-separated on one line, into out; -1 without openssl. */
static int openssl_san(const char *path, char *out, size_t size)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -ext subjectAltName 2>/dev/null", path);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    char line[2048];
    out[0] = '\0';
    while (fgets(line, sizeof line, f) != NULL)
        if (strstr(line, "Subject Alternative Name") == NULL)
            snprintf(out, size, "%s", line + strspn(line, " "));
    int st = pclose(f);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    out[strcspn(out, "\n")] = '\0';
    return 0;
}

/* Entries with this tag and value in crt's subjectAltName. */
static int san_count(const mbedtls_x509_crt *crt, int tag, const void *v, size_t len)
{
    int n = 0;
    for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s != NULL; s = s->next)
        if (s->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | tag) && s->buf.len == len &&
            memcmp(s->buf.p, v, len) == 0)
            n++;
    return n;
}

/*
 * A certificate for many names, as kotak init makes it: each name once, in
 * order, whatever its spelling; DER lengths past 127 and 255 octets; a bad
 * name or too many refused with nothing left behind.
 */
static void test_cert_names(void)
{
    char crt_path[300], key_path2[300], err[256] = "";
    snprintf(crt_path, sizeof crt_path, "%s/names.pem", dir);
    snprintf(key_path2, sizeof key_path2, "%s/names-key.pem", dir);

    /* Long enough that the SEQUENCE takes more than 255 octets: 0x82 LL LL. */
    static const char long1[] = "a-rather-long-label-to-fill-the-subject-alt-name.example.test",
                      long2[] = "another-rather-long-label-to-fill-the-san.mail.example.test",
                      long3[] = "and-a-third-long-label-so-the-length-takes-two.example.test";
    const char *names[] = {HOST,     "localhost", "127.0.0.1", "::1",          "127.0.0.3",
                           "0:0::1", "LOCALHOST", "127.0.0.1", "2001:db8::25", long1,
                           long2,    long3,       HOST};
    is_int(cert_make_self_signed(names, sizeof names / sizeof names[0], crt_path, key_path2, err,
                                 sizeof err),
           0, "a certificate for 13 names, 4 of them repeats (%s)", err);

    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    is_int(mbedtls_x509_crt_parse_file(&crt, crt_path), 0, "mbedTLS parses it back");
    int entries = 0;
    size_t der = 0;
    for (const mbedtls_x509_sequence *s = &crt.subject_alt_names; s != NULL; s = s->next) {
        entries++;
        der += 2 + s->buf.len; /* every entry here is shorter than 128 octets */
    }
    is_int(entries, 9, "its SAN has 9 entries, each name once");
    ok(der > 255, "the SEQUENCE's length takes the long form (%zu octets)", der);
    is_int(san_count(&crt, 2, HOST, strlen(HOST)), 1, "DNS:" HOST " once");
    is_int(san_count(&crt, 2, "localhost", 9), 1, "DNS:localhost once, whatever its case");
    is_int(san_count(&crt, 7, "\x7f\x00\x00\x01", 4), 1, "IP:127.0.0.1 once");
    is_int(san_count(&crt, 7, "\x7f\x00\x00\x03", 4), 1, "IP:127.0.0.3");
    is_int(san_count(&crt, 7, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16), 1,
           "IP:::1 once, whatever its spelling");
    is_int(san_count(&crt, 7, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x25", 16), 1,
           "IP:2001:db8::25");
    is_int(san_count(&crt, 2, long3, strlen(long3)), 1, "the last long name, whole");
    ok(crt.subject.val.len == strlen(HOST) && memcmp(crt.subject.val.p, HOST, strlen(HOST)) == 0,
       "the subject is CN=" HOST ", the first name");
    uint32_t flags = 0;
    is_int(mbedtls_x509_crt_verify(&crt, &crt, NULL, "localhost", &flags, NULL, NULL), 0,
           "it verifies, trusted as itself, for localhost (flags %#x)", (unsigned)flags);
    ok(mbedtls_x509_crt_verify(&crt, &crt, NULL, "elsewhere.example.test", &flags, NULL, NULL) !=
               0 &&
           (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH),
       "and not for a name it does not hold");
    mbedtls_x509_crt_free(&crt);

    char san[2048];
    if (openssl_san(crt_path, san, sizeof san) < 0) {
        ok(1, "# SKIP openssl is not installed");
    } else {
        char want[1024];
        snprintf(want, sizeof want,
                 "DNS:%s, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, "
                 "IP Address:127.0.0.3, IP Address:2001:DB8:0:0:0:0:0:25, DNS:%s, DNS:%s, DNS:%s",
                 HOST, long1, long2, long3);
        is_str(san, want, "openssl x509 -ext subjectAltName lists them in order");
    }
    unlink(crt_path);
    unlink(key_path2);

    /* One bad name among good ones: refused, named, nothing written. */
    const char *bad[] = {HOST, "localhost", "fe80::1%eth0"};
    err[0] = '\0';
    is_int(cert_make_self_signed(bad, 3, crt_path, key_path2, err, sizeof err), -1,
           "an address with a zone among the names is refused");
    ok(strstr(err, "fe80::1%eth0") != NULL, "err names it: %s", err);
    ok(access(crt_path, F_OK) != 0 && access(key_path2, F_OK) != 0, "and no file is left");

    /* More than the SAN may hold: 20 names of 253 characters. */
    static char huge[20][254];
    const char *many[20];
    for (int i = 0; i < 20; i++) {
        memset(huge[i], 'a', 253);
        for (int k = 63; k < 253; k += 64)
            huge[i][k] = '.';
        huge[i][0] = (char)('a' + i);
        huge[i][253] = '\0';
        many[i] = huge[i];
    }
    err[0] = '\0';
    is_int(cert_make_self_signed(many, 20, crt_path, key_path2, err, sizeof err), -1,
           "names that take more than 4 KiB are refused");
    ok(strstr(err, "octets") != NULL, "err says so: %s", err);
    ok(access(crt_path, F_OK) != 0 && access(key_path2, F_OK) != 0, "and no file is left");
    is_int(cert_make_self_signed(many, 15, crt_path, key_path2, err, sizeof err), 0,
           "15 names of 253 characters fit (%s)", err);
    mbedtls_x509_crt_init(&crt);
    is_int(mbedtls_x509_crt_parse_file(&crt, crt_path), 0, "and parse back");
    is_int(san_count(&crt, 2, huge[14], 253), 1, "with the last of them whole");
    mbedtls_x509_crt_free(&crt);
    unlink(crt_path);
    unlink(key_path2);

    is_int(cert_make_self_signed(names, 0, crt_path, key_path2, err, sizeof err), -1,
           "no name at all is refused (%s)", err);
}

/* Moves ciphertext both ways and drives both handshakes; returns the client's result. */
static int handshake_pair(struct tls_conn *cli, struct tls_conn *srv)
{
    int crc = 0, src = 0;
    for (int round = 0; round < 20 && (crc == 0 || src == 0); round++) {
        if (crc == 0)
            crc = tls_conn_handshake(cli);
        if (src == 0)
            src = tls_conn_handshake(srv);
        size_t n;
        const void *p = tls_conn_pending_out(cli, &n);
        if (n > 0) {
            tls_conn_feed(srv, p, n);
            tls_conn_consume_out(cli, n);
        }
        p = tls_conn_pending_out(srv, &n);
        if (n > 0) {
            tls_conn_feed(cli, p, n);
            tls_conn_consume_out(srv, n);
        }
        if (crc < 0 || src < 0)
            break;
    }
    return crc;
}

/* kotak's own client side against its server: opportunistic, then verified. */
static void test_client(struct tls_server *srv)
{
    char err[256] = "";
    struct tls_client *opp = NULL, *ver = NULL, *bad = NULL;

    is_int(tls_client_new(NULL, false, &opp, err, sizeof err), 0,
           "client: opportunistic, with the system's trust anchors (%s)", err);
    struct tls_conn *c = tls_client_connect(opp, HOST), *s = tls_conn_new(srv);
    is_int(handshake_pair(c, s), 1, "client: the handshake with a self-signed server completes");
    ok(!tls_conn_verified(c), "client: ... and says the certificate is not verified");
    is_str(tls_conn_version(c), "TLSv1.2", "client: TLS 1.2");
    is_int(tls_conn_write(c, "EHLO x\r\n", 8), 0, "client: writes");
    size_t n;
    const void *p = tls_conn_pending_out(c, &n);
    tls_conn_feed(s, p, n);
    tls_conn_consume_out(c, n);
    char got[32] = "";
    ssize_t r = tls_conn_read(s, got, sizeof got - 1);
    ok(r == 8 && memcmp(got, "EHLO x\r\n", 8) == 0, "client: the server reads what it wrote");
    tls_conn_free(&c);
    tls_conn_free(&s);

    is_int(tls_client_new(cert_path, true, &ver, err, sizeof err), 0,
           "client: verifying, against the server's own certificate (%s)", err);
    c = tls_client_connect(ver, HOST);
    s = tls_conn_new(srv);
    is_int(handshake_pair(c, s), 1, "client: a certificate that names the host verifies");
    ok(tls_conn_verified(c), "client: ... and says so");
    tls_conn_free(&c);
    tls_conn_free(&s);

    c = tls_client_connect(ver, "other.example");
    s = tls_conn_new(srv);
    is_int(handshake_pair(c, s), -EPROTO,
           "client: verifying, a certificate for another name fails");
    ok(tls_conn_error(c, err, sizeof err) && strstr(err, "X509") != NULL,
       "client: ... saying why (%s)", err);
    tls_conn_free(&c);
    tls_conn_free(&s);

    c = tls_client_connect(opp, "other.example");
    s = tls_conn_new(srv);
    is_int(handshake_pair(c, s), 1, "client: opportunistic, the wrong name still gives TLS");
    ok(!tls_conn_verified(c), "client: ... not verified");
    tls_conn_free(&c);
    tls_conn_free(&s);

    is_int(tls_client_new("/nonexistent/ca.pem", true, &bad, err, sizeof err), -1,
           "client: a CA file that cannot be read is refused");
    ok(strstr(err, "/nonexistent/ca.pem") != NULL, "client: ... naming it (%s)", err);
    ok(bad == NULL, "client: ... and nothing is made");
    tls_client_free(&opp);
    tls_client_free(&ver);
    ok(opp == NULL && ver == NULL, "client: tls_client_free sets NULL");
}

int main(void)
{
    static const char pers[] = "kotak-test-tls";
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_x509_crt_init(&trusted);
    if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, (const unsigned char *)pers,
                              sizeof pers - 1) != 0)
        abort();

    test_make_cert();
    test_server_errors();

    char err[256] = "";
    struct tls_server *srv = NULL;
    is_int(tls_server_new(cert_path, key_path, &srv, err, sizeof err), 0, "tls_server_new (%s)",
           err);
    if (srv != NULL) {
        test_session(srv);
        test_policy(srv);
        test_garbage(srv);
        test_client(srv);
    }
    tls_server_free(&srv);
    ok(srv == NULL, "tls_server_free sets NULL");

    test_cert_contents();
    test_cert_names();

    const char *files[] = {cert_path, key_path, cert2_path, key2_path, ipcert_path, ipkey_path};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(files[i]);
    ok(rmdir(dir) == 0, "the temporary folder is left empty");

    mbedtls_x509_crt_free(&trusted);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return done_testing();
}
