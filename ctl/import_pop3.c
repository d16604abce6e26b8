/*
 * import_pop3.c — `kotak import pop3 USER --from HOST:PORT [--tls|--starttls]
 * [--login NAME] --password-file F [--ca FILE | --insecure]`: a migration
 * from another POP3 server that keeps each message's UIDL, so that mail
 * clients that leave mail on the server and remember UIDLs download
 * nothing again after the switch (what Dovecot's pop3-migration plugin does
 * for Dovecot alone).
 *
 * A blocking client, as befits a command an administrator types: one
 * socket, poll(2) before every read and write so that a silent server ends
 * the command after a timeout, and TLS through common/tls.c's client over
 * memory buffers (the one kotak-smtpd uses to deliver), fed from this
 * socket. The conversation: CAPA, STLS (RFC 2595) or TLS from the first
 * byte, the login (AUTH PLAIN when CAPA names it, RFC 5034, else USER and
 * PASS, RFC 1939), UIDL and LIST of the whole maildrop, then RETR of each
 * message the maildrop here does not hold yet, pipelined when the server
 * offers PIPELINING (RFC 2449), each stored through the store's import
 * API, which commits in batches. It never sends DELE: a migration copies,
 * and the old server keeps everything until its owner removes it.
 *
 * Bounded: a reply line has POP3C_LINE_MAX octets at most, a message
 * [limits] message_size (a line without end fails there too), a listing
 * IMPORT_MAX_MESSAGES entries, and only UIDLs RFC 1939 allows are kept from
 * it (70 octets at most, IMPORT_MAX_UIDL_OCTETS in all); another is "no
 * UIDL" from the moment it is read, so a listing costs about 24 octets a
 * message plus its UIDLs.
 *
 * Restartable, and nothing lost: every entry records its source, "pop3
 * HOST:PORT LOGIN". A message whose UIDL an entry of that same source keeps,
 * with the size LIST gives (the CRLF size, as Dovecot and kotak give it)
 * equal to that entry's octets, is skipped before it is fetched; any other
 * message is fetched and decided by store_import_seen. The size is there
 * because a server rebuilt under the same name (a reinstall, Dovecot with
 * pop3_uidl_format=%u after a UIDVALIDITY change) hands out old UIDLs for
 * new mail. A UIDL that another server, an mbox's X-UIDL or a copy of this
 * store gave proves nothing, and such a message is known by its digest or
 * goes in under a new UIDL, counted in the summary; a message whose UIDL
 * is free here goes in under it even when its octets are here already (two
 * UIDLs, two entries: see store.h). The store's batches are whole or
 * absent, so a kill -9 and a second run add each message exactly once.
 *
 * Two threads while messages are fetched (ahead.h): one sends the RETRs
 * and reads the replies, decoding and hashing each message, the main one
 * stores them in order. Storing is half the work, and the server answers
 * while kotak stores.
 *
 * The store's write lock: a batch holds it while it is open, and
 * kotak-smtpd's deliveries wait at most STORE_BUSY_TIMEOUT_MS for it. So
 * the batch is committed before every wait on the socket (wait_fd), and
 * while fetching, before the main thread waits for the fetching one: a
 * batch holds only messages already received, never one across a silent
 * server.
 *
 * The password is never sent in cleartext to a host that is not loopback:
 * --tls or --starttls is needed for that (an SSH tunnel to a server without
 * TLS makes it loopback). Its file must be the user's own, as ssh asks of a
 * private key (no symbolic link, owned by the effective user, no group or
 * other bits); it goes from there into a wiped buffer and out in one
 * command, and no message ever shows it.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "buf.h"
#include "ahead.h"
#include "ctl.h"
#include "pop3_client.h"
#include "progress.h"
#include "safe_path.h"
#include "sasl.h"
#include "tls.h"
#include "util.h"

static const char usage_text[] =
    "kotak import pop3 USER --from HOST[:PORT] [--tls|--starttls] [--login NAME] "
    "--password-file F [--ca FILE|--insecure]";

#define IO_TIMEOUT_MS (120 * 1000)   /* a server silent this long has gone */
#define CONNECT_TIMEOUT_MS (30 * 1000)
#define IMPORT_MAX_MESSAGES 2000000  /* a listing longer than this is no maildrop */
#define IMPORT_MAX_UIDL_OCTETS (64u << 20) /* the UIDLs kept from a listing, NULs counted */
#define PIPELINE_DEPTH 64            /* RETRs in flight with PIPELINING */
#define CAPA_MAX_LINES 256
#define PASSWORD_MAX 255             /* what AUTH PLAIN and PASS can carry */

/* One message of the source's maildrop, from its UIDL and LIST lines. */
struct entry {
    uint64_t num;     /* the message number of this session */
    uint64_t size;    /* LIST's */
    uint32_t uidl_at; /* its UIDL, NUL-terminated, at run.uidls + uidl_at (when keepable) */
    bool keepable;    /* valid under RFC 1939 and not repeated in the listing */
    bool fetch;       /* not in the maildrop yet */
};

struct run {
    /* what was asked */
    const char *user;
    char host[256];  /* as given, without brackets */
    char port[8];
    bool tls, starttls, insecure;
    const char *ca;
    const char *login;
    char *password;
    char source[600]; /* "pop3 HOST:PORT LOGIN", the host in lower case: maildrop.source */
    /* the connection */
    int fd;
    bool loopback;
    struct tls_client *cli;
    struct tls_conn *conn;
    uint8_t in[64 * 1024]; /* plaintext from the server */
    size_t in_off, in_len;
    struct pop3c_capa capa;
    /* the import */
    struct conf conf;
    struct store *store;
    struct store_import *imp;
    struct entry *entries;
    size_t n_entries;
    char *uidls; /* the listing's RFC 1939 UIDLs, each NUL-terminated */
    size_t uidls_len, uidls_cap;
    /* the fetch: a producer thread (ahead.h) sends the RETRs and reads the replies */
    struct ahead *ahead; /* while fetching */
    size_t *todo;        /* the entries to fetch, n_todo of them */
    size_t n_todo, sent, depth;
    /* counts */
    uint64_t imported, octets, skipped, kept, renamed;
    struct progress prog;
};

static struct run *run_dying; /* what die() commits and wipes on its way out */

/*
 * One line on stderr and exit 2, as every ctl command; what was imported so
 * far is committed first (the batches are whole either way), and the
 * password wiped.
 */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    struct run *r = run_dying;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* On the fetching thread: the main thread stores what came before, then dies with it. */
    if (r != NULL && ahead_on_producer(r->ahead))
        ahead_fail(r->ahead, msg);
    if (r != NULL) {
        progress_break(&r->prog);
        if (r->imp != NULL)
            (void)store_import_end(&r->imp);
        if (r->password != NULL) {
            explicit_bzero(r->password, strlen(r->password));
            free(r->password);
            r->password = NULL;
        }
        if (r->imported > 0)
            fprintf(stderr, "kotak: %" PRIu64 " messages were imported before this; run the same "
                    "command again to go on\n", r->imported);
    }
    ctl_die("%s", msg);
}

/* --- arguments and the password file --------------------------------------------------- */

/* "HOST", "HOST:PORT", "[V6]", "[V6]:PORT"; the port defaults to 995 with --tls, else 110. */
static void parse_from(struct run *r, const char *arg)
{
    const char *host = arg, *port = NULL;
    size_t host_len;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            die("--from '%s': write an IPv6 address as [::1]:995", arg);
        host = arg + 1;
        host_len = (size_t)(close - host);
        if (close[1] == ':')
            port = close + 2;
    } else {
        const char *colon = strrchr(arg, ':');
        if (colon != NULL && strchr(arg, ':') != colon)
            die("--from '%s': write an IPv6 address in brackets, as [::1]:995", arg);
        host_len = colon ? (size_t)(colon - arg) : strlen(arg);
        if (colon != NULL)
            port = colon + 1;
    }
    if (host_len == 0 || host_len >= sizeof r->host)
        die("--from '%s': give the old server as HOST:PORT, as pop.example.net:995", arg);
    memcpy(r->host, host, host_len);
    r->host[host_len] = '\0';
    if (port == NULL) {
        snprintf(r->port, sizeof r->port, "%s", r->tls ? "995" : "110");
        return;
    }
    char *end;
    errno = 0;
    unsigned long p = strtoul(port, &end, 10);
    if (port[0] < '0' || port[0] > '9' || errno != 0 || *end != '\0' || p == 0 || p > 65535)
        die("--from '%s': the port must be a number from 1 to 65535", arg);
    snprintf(r->port, sizeof r->port, "%lu", p);
}

/*
 * The password: the file's first line. The file must be a regular file of
 * the effective user that neither group nor others may open, as ssh asks of
 * a private key, and not a symbolic link (O_NOFOLLOW: a link could point
 * anywhere the user may read, and the file would go to the server named on
 * the command line). Every check is made on the descriptor that is read
 * (fstat), so nothing can change between the check and the read; O_NONBLOCK
 * so that a FIFO does not hang the open. read(2) into a buffer that is
 * wiped, so no stdio buffer keeps a copy.
 */
static char *read_password(const char *path)
{
    int fd = ctl_open_path(path, O_RDONLY | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 && errno == ELOOP)
        die("the password file %s is a symbolic link; name the file itself (a regular file of "
            "yours, chmod 600)", path);
    if (fd < 0)
        die("cannot read the password file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = errno;
        close(fd);
        die("cannot read the password file %s: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        die("the password file %s is not a regular file; write the password into one, "
            "chmod 600", path);
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        die("the password file %s belongs to uid %u, not to uid %u who runs this; make it "
            "yours (chown) with mode 600, as ssh asks of a private key", path,
            (unsigned)st.st_uid, (unsigned)geteuid());
    }
    if ((st.st_mode & 077) != 0) {
        close(fd);
        die("the password file %s may be read by others (mode %04o); chmod 600 %s, as ssh "
            "asks of a private key, and run this again", path, (unsigned)(st.st_mode & 07777),
            path);
    }
    char buf[PASSWORD_MAX + 3];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        die("cannot read the password file %s: %s", path, strerror(err));
    buf[n] = '\0';
    size_t len = strcspn(buf, "\r\n");
    char *p = NULL;
    if (len == 0) {
        explicit_bzero(buf, sizeof buf);
        die("the password file %s is empty; its first line is the password", path);
    }
    if (len > PASSWORD_MAX) {
        explicit_bzero(buf, sizeof buf);
        die("the password in %s is longer than %d octets, more than POP3 can carry", path,
            PASSWORD_MAX);
    }
    p = xstrndup(buf, len);
    explicit_bzero(buf, sizeof buf);
    return p;
}

/*
 * The source every imported entry records (maildrop.source): "pop3
 * HOST:PORT LOGIN", the host in lower case (DNS names are not case
 * sensitive) and an IPv6 address in brackets, so that one server and login
 * are one source however they were typed.
 */
static void make_source(struct run *r)
{
    char host[sizeof r->host];
    size_t i;
    for (i = 0; r->host[i] != '\0'; i++)
        host[i] = (char)tolower((unsigned char)r->host[i]);
    host[i] = '\0';
    bool v6 = strchr(host, ':') != NULL;
    int n = snprintf(r->source, sizeof r->source, "pop3 %s%s%s:%s %s", v6 ? "[" : "", host,
                     v6 ? "]" : "", r->port, r->login);
    assert(n > 0 && (size_t)n < sizeof r->source);
}

/* --- the socket ------------------------------------------------------------------------- */

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

/*
 * Waits until fd is ready for events, or dies after timeout_ms saying what it
 * waited for. Every wait on the server comes through here, so the import's
 * open batch is committed first: it holds the store's write lock, which
 * kotak-smtpd must not wait for while the server is slow.
 */
/* Commits the import's open batch: before every wait (see the top of the file). */
static void commit_batch(struct run *r)
{
    if (r->imp == NULL)
        return;
    int rc = store_import_commit(r->imp);
    if (rc < 0) {
        r->imp = NULL; /* rolled back: nothing to commit on the way out */
        progress_break(&r->prog);
        ctl_die_store(r->store, rc, r->user);
    }
}

static void commit_before_write(void *ctx)
{
    commit_batch(ctx);
}

/* Waits for the socket; commits first, but while fetching the main thread does that. */
static void wait_fd(struct run *r, short events, int timeout_ms, const char *what)
{
    if (!ahead_on_producer(r->ahead))
        commit_batch(r);
    struct pollfd pfd = {.fd = r->fd, .events = events};
    for (;;) {
        int n = poll(&pfd, 1, timeout_ms);
        if (n > 0)
            return;
        if (n == 0)
            die("%s: no answer from %s in %d s while %s", r->host, r->host, timeout_ms / 1000,
                what);
        if (errno != EINTR)
            die("%s: poll: %s", r->host, strerror(errno));
    }
}

static void connect_server(struct run *r)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(r->host, r->port, &hints, &res);
    if (rc != 0)
        die("cannot connect to %s:%s: %s", r->host, r->port,
            rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    int err = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            err = errno;
            close(fd);
            continue;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n;
        while ((n = poll(&pfd, 1, CONNECT_TIMEOUT_MS)) < 0 && errno == EINTR)
            ;
        socklen_t len = sizeof err;
        if (n == 0)
            err = ETIMEDOUT;
        else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err != 0) {
            close(fd);
            continue;
        }
        r->fd = fd;
        r->loopback = is_loopback(ai->ai_addr);
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        freeaddrinfo(res);
        return;
    }
    freeaddrinfo(res);
    die("cannot connect to %s:%s: %s", r->host, r->port, strerror(err ? err : ECONNREFUSED));
}

/* Sends all n octets to the socket, waiting as long as it takes (bounded by the timeout). */
static void send_raw(struct run *r, const void *p, size_t n)
{
    const uint8_t *s = p;
    while (n > 0) {
        ssize_t w = send(r->fd, s, n, MSG_NOSIGNAL);
        if (w > 0) {
            s += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            wait_fd(r, POLLOUT, IO_TIMEOUT_MS, "sending");
        } else if (w < 0 && errno != EINTR) {
            die("%s closed the connection: %s", r->host, strerror(errno));
        }
    }
}

/* Sends the ciphertext TLS has ready. */
static void flush_tls(struct run *r)
{
    size_t len;
    const void *p;
    while ((p = tls_conn_pending_out(r->conn, &len)) != NULL && len > 0) {
        send_raw(r, p, len);
        tls_conn_consume_out(r->conn, len);
    }
}

/* Reads what the socket has, waiting for it; dies at the end of the stream. */
static size_t recv_raw(struct run *r, void *p, size_t n, const char *what)
{
    for (;;) {
        ssize_t got = recv(r->fd, p, n, 0);
        if (got > 0)
            return (size_t)got;
        if (got == 0)
            die("%s closed the connection while %s", r->host, what);
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            wait_fd(r, POLLIN, IO_TIMEOUT_MS, what);
        else if (errno != EINTR)
            die("the connection to %s broke while %s: %s", r->host, what, strerror(errno));
    }
}

/* Why TLS failed, in words, for a line that ends the command. */
static void die_tls(struct run *r, const char *when)
{
    char why[256];
    if (tls_conn_verify_error(r->conn, why, sizeof why))
        die("the certificate of %s does not verify (%s); give the CA that signed it with "
            "--ca FILE, or --insecure to import without checking it", r->host, why);
    if (!tls_conn_error(r->conn, why, sizeof why))
        snprintf(why, sizeof why, "unknown error");
    die("TLS with %s failed %s: %s", r->host, when, why);
}

static void send_bytes(struct run *r, const void *p, size_t n)
{
    if (r->conn == NULL) {
        send_raw(r, p, n);
        return;
    }
    if (tls_conn_write(r->conn, p, n) < 0)
        die_tls(r, "while sending");
    flush_tls(r);
}

/* Reads more plaintext into r->in, moving what is unread to its start first. */
static void fill(struct run *r, const char *what)
{
    if (r->in_off > 0) {
        memmove(r->in, r->in + r->in_off, r->in_len - r->in_off);
        r->in_len -= r->in_off;
        r->in_off = 0;
    }
    size_t room = sizeof r->in - r->in_len;
    assert(room > 0);
    if (r->conn == NULL) {
        r->in_len += recv_raw(r, r->in + r->in_len, room, what);
        return;
    }
    for (;;) {
        ssize_t n = tls_conn_read(r->conn, r->in + r->in_len, room);
        if (n > 0) {
            r->in_len += (size_t)n;
            return;
        }
        if (n == -EPIPE)
            die("%s closed the connection while %s", r->host, what);
        if (n < 0)
            die_tls(r, what);
        uint8_t cipher[16 * 1024];
        size_t got = recv_raw(r, cipher, sizeof cipher, what);
        if (tls_conn_feed(r->conn, cipher, got) < 0)
            die("TLS with %s failed while %s: too much data unread", r->host, what);
        flush_tls(r);
    }
}

/* The handshake, TLS from the first byte or after STLS's +OK. */
static void start_tls(struct run *r)
{
    char err[512];
    if (r->cli == NULL && tls_client_new(r->ca, !r->insecure, &r->cli, err, sizeof err) < 0)
        die("%s", err);
    r->conn = tls_client_connect(r->cli, r->host);
    for (;;) {
        int rc = tls_conn_handshake(r->conn);
        flush_tls(r);
        if (rc == 1)
            break;
        if (rc < 0)
            die_tls(r, "in the handshake");
        uint8_t cipher[16 * 1024];
        size_t got = recv_raw(r, cipher, sizeof cipher, "in the TLS handshake");
        if (tls_conn_feed(r->conn, cipher, got) < 0)
            die("TLS with %s failed in the handshake: too much data", r->host);
    }
}

/* --- lines and replies ------------------------------------------------------------------ */

/*
 * The next line from the server, CRLF (or a bare LF) taken off, borrowed
 * from r->in until the next read; at most POP3C_LINE_MAX octets.
 */
static const char *read_line(struct run *r, size_t *len_r, const char *what)
{
    for (;;) {
        const uint8_t *start = r->in + r->in_off;
        size_t avail = r->in_len - r->in_off;
        const uint8_t *lf = memchr(start, '\n', avail);
        if (lf != NULL) {
            size_t len = (size_t)(lf - start);
            r->in_off += len + 1;
            if (len > 0 && start[len - 1] == '\r')
                len--;
            *len_r = len;
            return (const char *)start;
        }
        if (avail >= POP3C_LINE_MAX)
            die("%s sent a line longer than %d octets while %s; that is no POP3 reply", r->host,
                POP3C_LINE_MAX, what);
        fill(r, what);
    }
}

/* Sends a command line (CRLF added). The text must hold no password: see send_secret. */
static void command(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void command(struct run *r, const char *fmt, ...)
{
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    assert(n > 0 && (size_t)n < sizeof line - 2);
    memcpy(line + n, "\r\n", 2);
    send_bytes(r, line, (size_t)n + 2);
}

/* A command holding a secret: sent, then wiped. */
static void send_secret(struct run *r, const char *prefix, const char *secret, size_t len)
{
    char line[1024];
    size_t pl = strlen(prefix);
    assert(pl + len + 2 <= sizeof line);
    memcpy(line, prefix, pl);
    memcpy(line + pl, secret, len);
    memcpy(line + pl + len, "\r\n", 2);
    send_bytes(r, line, pl + len + 2);
    explicit_bzero(line, sizeof line);
}

/*
 * Reads a status line: 1 for +OK, 0 for -ERR, with the text after it
 * escaped for a message into text (when not NULL). Dies on anything else.
 */
static int status(struct run *r, const char *what, char *text, size_t text_size)
{
    size_t len;
    const char *line = read_line(r, &len, what);
    const char *t;
    size_t tl;
    int ok = pop3c_status(line, len, &t, &tl);
    if (ok < 0) {
        char esc[160];
        die("%s answered '%s' while %s; that is no POP3 reply", r->host,
            pop3c_escape(line, len, esc, sizeof esc), what);
    }
    if (text != NULL)
        pop3c_escape(t, tl, text, text_size);
    return ok;
}

/*
 * Reads a multi-line listing after its +OK, a line at a time, up to the
 * line "."; cb gets each line, its leading stuffed dot taken off.
 */
static void read_listing(struct run *r, const char *what,
                         void (*cb)(struct run *r, const char *line, size_t len, void *ctx),
                         void *ctx)
{
    for (;;) {
        size_t len;
        const char *line = read_line(r, &len, what);
        if (len == 1 && line[0] == '.')
            return;
        if (len > 0 && line[0] == '.')
            line++, len--;
        cb(r, line, len, ctx);
    }
}

/* --- the conversation ------------------------------------------------------------------- */

static void capa_cb(struct run *r, const char *line, size_t len, void *ctx)
{
    unsigned *lines = ctx;
    if (++*lines > CAPA_MAX_LINES)
        die("%s sent more than %d CAPA lines; that is no POP3 server", r->host, CAPA_MAX_LINES);
    pop3c_capa_line(&r->capa, line, len);
}

static void capa(struct run *r)
{
    memset(&r->capa, 0, sizeof r->capa);
    command(r, "CAPA");
    if (status(r, "reading CAPA", NULL, 0) != 1)
        return; /* a server of RFC 1939 alone: no STLS, no SASL, UIDL perhaps */
    r->capa.known = true;
    unsigned lines = 0;
    read_listing(r, "reading CAPA", capa_cb, &lines);
}

static void login(struct run *r)
{
    char text[400];
    size_t plen = strlen(r->password), llen = strlen(r->login);
    if (!r->conn && !r->loopback)
        die("refusing to send the password for %s to %s in cleartext; use --tls (port 995) or "
            "--starttls%s, or an SSH tunnel to a loopback port", r->login, r->host,
            r->capa.stls ? " (the server offers STLS)" : "");
    if (r->capa.sasl_plain) {
        /* RFC 4616: authzid NUL authcid NUL password, in base64 (RFC 5034). */
        uint8_t raw[2 * 256 + 2];
        char b64[sizeof raw * 4 / 3 + 8];
        if (llen > 255)
            die("--login '%s' is longer than 255 octets", r->login);
        raw[0] = '\0';
        memcpy(raw + 1, r->login, llen);
        raw[1 + llen] = '\0';
        memcpy(raw + 2 + llen, r->password, plen);
        ssize_t n = sasl_b64_encode(raw, llen + plen + 2, b64, sizeof b64);
        explicit_bzero(raw, sizeof raw);
        assert(n > 0);
        if ((size_t)n + strlen("AUTH PLAIN ") + 2 <= 255) {
            send_secret(r, "AUTH PLAIN ", b64, (size_t)n);
        } else {
            /* RFC 2449 4: a command line holds 255 octets; the response goes alone. */
            command(r, "AUTH PLAIN");
            size_t len;
            const char *line = read_line(r, &len, "logging in");
            if (len < 1 || line[0] != '+' || (len > 1 && line[1] != ' ')) {
                explicit_bzero(b64, sizeof b64);
                char esc[300];
                die("%s refused the login of %s: %s", r->host, r->login,
                    pop3c_escape(line, len, esc, sizeof esc));
            }
            send_secret(r, "", b64, (size_t)n);
        }
        explicit_bzero(b64, sizeof b64);
        if (status(r, "logging in", text, sizeof text) != 1)
            die("%s refused the login of %s: -ERR %s", r->host, r->login, text);
        return;
    }
    command(r, "USER %s", r->login);
    if (status(r, "logging in", text, sizeof text) != 1)
        die("%s refused the login of %s: -ERR %s", r->host, r->login, text);
    send_secret(r, "PASS ", r->password, plen);
    if (status(r, "logging in", text, sizeof text) != 1)
        die("%s refused the login of %s: -ERR %s", r->host, r->login, text);
}

struct listing {
    size_t at;       /* LIST: the entry to match next */
    uint64_t last;   /* UIDL: the last message number */
    size_t cap;
};

static void uidl_cb(struct run *r, const char *line, size_t len, void *ctx)
{
    struct listing *l = ctx;
    uint64_t num;
    const char *uidl;
    size_t ul;
    char esc[160];
    if (pop3c_listing_line(line, len, &num, &uidl, &ul) < 0 || num <= l->last)
        die("%s sent '%s' in its UIDL listing; each line must be a message number (rising) "
            "and its UIDL", r->host, pop3c_escape(line, len, esc, sizeof esc));
    if (r->n_entries >= IMPORT_MAX_MESSAGES)
        die("%s lists more than %d messages; kotak import pop3 takes at most that many from "
            "one maildrop", r->host, IMPORT_MAX_MESSAGES);
    if (r->n_entries == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        r->entries = xrealloc(r->entries, l->cap * sizeof *r->entries);
    }
    struct entry *e = &r->entries[r->n_entries++];
    *e = (struct entry){.num = num};
    l->last = num;
    /* Only a UIDL RFC 1939 allows is kept: any other goes in as none, so a
     * line of 4 KB costs nothing past this point. */
    if (!pop3c_uidl_valid(uidl, ul))
        return;
    if (r->uidls_len + ul + 1 > IMPORT_MAX_UIDL_OCTETS)
        die("%s's UIDL listing holds more than %u MiB of UIDLs; that is no maildrop kotak can "
            "take", r->host, IMPORT_MAX_UIDL_OCTETS >> 20);
    if (r->uidls_len + ul + 1 > r->uidls_cap) {
        r->uidls_cap = r->uidls_cap ? r->uidls_cap * 2 : 64 * 1024;
        if (r->uidls_cap > IMPORT_MAX_UIDL_OCTETS)
            r->uidls_cap = IMPORT_MAX_UIDL_OCTETS;
        r->uidls = xrealloc(r->uidls, r->uidls_cap);
    }
    e->uidl_at = (uint32_t)r->uidls_len;
    memcpy(r->uidls + r->uidls_len, uidl, ul);
    r->uidls[r->uidls_len + ul] = '\0';
    r->uidls_len += ul + 1;
    e->keepable = true;
}

static void list_cb(struct run *r, const char *line, size_t len, void *ctx)
{
    struct listing *l = ctx;
    uint64_t num, size = 0;
    const char *rest;
    size_t rl;
    char esc[160];
    if (pop3c_listing_line(line, len, &num, &rest, &rl) < 0)
        die("%s sent '%s' in its LIST listing; each line must be a message number and its "
            "size", r->host, pop3c_escape(line, len, esc, sizeof esc));
    for (size_t i = 0; i < rl && rest[i] >= '0' && rest[i] <= '9'; i++)
        size = size > UINT64_MAX / 10 - 10 ? UINT64_MAX / 2 : size * 10 + (uint64_t)(rest[i] - '0');
    if (l->at >= r->n_entries || r->entries[l->at].num != num)
        die("%s's LIST and UIDL listings do not name the same messages (at message %" PRIu64
            "); try again later", r->host, num);
    r->entries[l->at++].size = size;
}

/* An entry's UIDL, or NULL when it has none to keep. */
static const char *entry_uidl(const struct run *r, const struct entry *e)
{
    return e->keepable ? r->uidls + e->uidl_at : NULL;
}

/* The size LIST gave an entry, for store_import_seen: -1 when it is past int64 (unknown). */
static int64_t listed_size(const struct entry *e)
{
    return e->size > (uint64_t)INT64_MAX ? -1 : (int64_t)e->size;
}

/* An entry seen by its UIDL, for sorting. */
struct by_uidl {
    const char *uidl;
    struct entry *e;
};

static int cmp_uidl(const void *a, const void *b)
{
    const struct by_uidl *x = a, *y = b;
    int c = strcmp(x->uidl, y->uidl);
    return c != 0 ? c : (x->e->num > y->e->num) - (x->e->num < y->e->num);
}

/* Marks every UIDL but the first of those the listing repeats: they cannot be kept. */
static uint64_t mark_repeated(struct run *r)
{
    uint64_t repeated = 0;
    struct by_uidl *by = xmalloc((r->n_entries ? r->n_entries : 1) * sizeof *by);
    size_t n = 0;
    for (size_t i = 0; i < r->n_entries; i++)
        if (r->entries[i].keepable)
            by[n++] = (struct by_uidl){entry_uidl(r, &r->entries[i]), &r->entries[i]};
    qsort(by, n, sizeof *by, cmp_uidl);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(by[i].uidl, by[i - 1].uidl) == 0) {
            by[i].e->keepable = false;
            repeated++;
        }
    }
    free(by);
    return repeated;
}

/* --- the import ------------------------------------------------------------------------- */

/*
 * Stores one fetched message, unless it is here already: by its UIDL from
 * this same source with these octets, else by its octets unless its UIDL is
 * free here (store_import_seen).
 */
static void store_one(struct run *r, struct entry *e, const struct buf *msg,
                      const uint8_t digest[STORE_DIGEST_SIZE])
{
    const char *uidl = entry_uidl(r, e);
    int rc = store_import_seen(r->imp, uidl, (int64_t)msg->len, digest);
    if (rc < 0)
        ctl_die_store(r->store, rc, r->user);
    if (rc > 0) { /* here before, or twice in the source */
        r->skipped++;
        return;
    }
    /* A UIDL RFC 1939 does not allow, or the second of a name, goes in as
     * none, and one the maildrop has for another message is not kept: the
     * store gives the entry one of its own, and the summary counts it. */
    bool kept = false;
    rc = store_import_add(r->imp, msg->data, msg->len, (int64_t)time(NULL), uidl, digest,
                          &kept);
    if (rc < 0) {
        r->imp = NULL; /* do not commit on the way out what the store refused */
        ctl_die_store(r->store, rc, r->user);
    }
    r->imported++;
    r->octets += msg->len;
    if (kept)
        r->kept++;
    else
        r->renamed++;
}

/*
 * On the producer thread: RETR of the i-th entry to fetch, read into it with
 * its digest, the RETRs of the entries after it sent ahead (PIPELINING).
 * A failure ends the thread through die(), told after the messages before.
 */
static void fetch_one(void *ctx, size_t i, struct ahead_item *it)
{
    struct run *r = ctx;
    char cmds[PIPELINE_DEPTH * 32];
    size_t len = 0;
    while (r->sent < r->n_todo && r->sent - i < r->depth) {
        len += (size_t)snprintf(cmds + len, sizeof cmds - len, "RETR %" PRIu64 "\r\n",
                                r->entries[r->todo[r->sent]].num);
        r->sent++;
    }
    if (len > 0)
        send_bytes(r, cmds, len);
    struct entry *e = &r->entries[r->todo[i]];
    uint64_t limit = r->conf.limits.message_size;
    char text[300];
    if (status(r, "waiting for RETR", text, sizeof text) != 1)
        die("%s refused RETR %" PRIu64 ": -ERR %s", r->host, e->num, text);
    it->data.max = limit;
    struct pop3c_data d;
    pop3c_data_init(&d);
    for (;;) {
        size_t used;
        int rc = pop3c_data_feed(&d, r->in + r->in_off, r->in_len - r->in_off, &it->data, &used);
        r->in_off += used;
        if (rc == 1)
            break;
        if (rc < 0)
            die("message %" PRIu64 " from %s is larger than [limits] message_size (%" PRIu64
                " octets), or has a line without end; raise the limit in %s if the "
                "message is real", e->num, r->host, limit, r->conf.path);
        fill(r, "reading a message");
    }
    store_digest(it->data.data, it->data.len, it->digest);
}

static void fetch_all(struct run *r)
{
    uint64_t limit = r->conf.limits.message_size;
    size_t *todo = xmalloc((r->n_entries ? r->n_entries : 1) * sizeof *todo);
    size_t n_todo = 0;
    uint64_t total_octets = 0;
    for (size_t i = 0; i < r->n_entries; i++) {
        struct entry *e = &r->entries[i];
        if (e->keepable) {
            /* Here already by its UIDL, kept from this same source for a
             * message of the size LIST gives: not fetched at all. Any other
             * is fetched, and store_one decides with its octets (a UIDL of
             * another source, or of this one for another size, proves
             * nothing). */
            int rc = store_import_seen(r->imp, entry_uidl(r, e), listed_size(e), NULL);
            if (rc < 0)
                ctl_die_store(r->store, rc, r->user);
            if (rc > 0) {
                r->skipped++;
                continue;
            }
        }
        if (e->size > limit)
            die("message %" PRIu64 " on %s is %" PRIu64 " octets, more than [limits] "
                "message_size (%" PRIu64 ") lets in; raise it in %s", e->num, r->host, e->size,
                limit, r->conf.path);
        e->fetch = true;
        todo[n_todo++] = i;
        total_octets += e->size;
    }
    progress_start(&r->prog, "importing", n_todo, total_octets);
    r->prog.before_write = commit_before_write; /* a write to stderr can block */
    r->prog.ctx = r;
    progress_draw(&r->prog, false);

    r->todo = todo;
    r->n_todo = n_todo;
    r->sent = 0;
    r->depth = r->capa.pipelining ? PIPELINE_DEPTH : 1;
    ahead_start(&r->ahead, n_todo, fetch_one, r);
    for (size_t done = 0; done < n_todo; done++) {
        /* The batch commits before the main thread waits long (see the top of the file). */
        int rc;
        struct ahead_item *it = ahead_next_or_commit(r->ahead, r->imp, &rc);
        if (rc < 0) {
            r->imp = NULL; /* rolled back: nothing to commit on the way out */
            progress_break(&r->prog);
            ctl_die_store(r->store, rc, r->user);
        }
        if (it == NULL) {
            struct ahead *a = r->ahead;
            r->ahead = NULL;
            die("%s", ahead_failure(a));
        }
        store_one(r, &r->entries[todo[done]], &it->data, it->digest);
        r->prog.done_msgs++;
        r->prog.done_bytes += it->data.len;
        ahead_done(r->ahead, it);
        progress_draw(&r->prog, false);
    }
    ahead_stop(r->ahead);
    r->ahead = NULL;
    free(todo);
    r->todo = NULL;
    progress_draw(&r->prog, true);
}

int ctl_import_pop3(const struct ctl *c)
{
    static struct run run; /* large (its input buffer): not on the stack */
    struct run *r = &run;
    bool help = ctl_wants_help(c->argc, c->argv);
    if (help || c->argc < 1)
        ctl_usage(usage_text, help);
    r->fd = -1;
    const char *from = NULL, *password_file = NULL;
    for (int i = 0; i < c->argc; i++) {
        const char *a = c->argv[i];
        const char **value = NULL;
        const char *name = a;
        size_t nl = strcspn(a, "=");
        if (strncmp(a, "--from", nl) == 0 && nl == 6)
            value = &from;
        else if (strncmp(a, "--login", nl) == 0 && nl == 7)
            value = &r->login;
        else if (strncmp(a, "--password-file", nl) == 0 && nl == 15)
            value = &password_file;
        else if (strncmp(a, "--ca", nl) == 0 && nl == 4)
            value = &r->ca;
        if (value != NULL) {
            if (a[nl] == '=') {
                *value = a + nl + 1;
            } else if (i + 1 < c->argc) {
                *value = c->argv[++i];
            } else {
                ctl_die("%s needs a value; see 'kotak help import'", name);
            }
            if ((*value)[0] == '\0')
                ctl_die("%.*s needs a value that is not empty", (int)nl, name);
        } else if (strcmp(a, "--tls") == 0) {
            r->tls = true;
        } else if (strcmp(a, "--starttls") == 0) {
            r->starttls = true;
        } else if (strcmp(a, "--insecure") == 0) {
            r->insecure = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            ctl_die("unknown option %s; usage: %s", a, usage_text);
        } else if (r->user == NULL) {
            r->user = a;
        } else {
            ctl_die("one user at a time ('%s' is one too many); usage: %s", a, usage_text);
        }
    }
    if (r->user == NULL)
        ctl_die("name the user to import into; usage: %s", usage_text);
    if (from == NULL)
        ctl_die("--from HOST:PORT names the server to import from; usage: %s", usage_text);
    if (password_file == NULL)
        ctl_die("--password-file F names the file whose first line is the password on the old "
                "server (chmod 600)");
    if (r->tls && r->starttls)
        ctl_die("--tls and --starttls exclude each other: --tls for TLS from the first byte "
                "(port 995), --starttls for STLS (port 110)");
    if (r->ca != NULL && r->insecure)
        ctl_die("--ca and --insecure exclude each other: check against that CA, or not at all");
    if ((r->ca != NULL || r->insecure) && !r->tls && !r->starttls)
        ctl_die("%s is about TLS; add --tls or --starttls", r->ca ? "--ca" : "--insecure");
    if (r->ca != NULL && access(r->ca, R_OK) < 0)
        ctl_die("cannot read the CA file %s: %s", r->ca, strerror(errno));
    parse_from(r, from);

    struct addr a;
    if (addr_parse(r->user, strlen(r->user), ADDR_UTF8, &a) < 0)
        ctl_die("'%s' is not a valid mailbox address (RFC 5321); write it as user@example.org",
                r->user);
    if (r->login == NULL)
        r->login = r->user;
    if (strpbrk(r->login, "\r\n") != NULL || strlen(r->login) > 255)
        ctl_die("--login '%s' is no login name (a line of at most 255 octets)", r->login);
    make_source(r);

    r->password = read_password(password_file);
    run_dying = r;

    ctl_load_conf(c, &r->conf);
    r->store = ctl_open_store(&r->conf, false);
    struct store_user u;
    int rc = store_user_lookup(r->store, &a, &u);
    if (rc == 0)
        die("user %s does not exist; add it with 'kotak user add %s' first", r->user, r->user);
    if (rc < 0)
        ctl_die_store(r->store, rc, r->user);
    explicit_bzero(u.hash, sizeof u.hash);

    connect_server(r);
    if (r->tls)
        start_tls(r);
    char text[400];
    if (status(r, "waiting for the greeting", text, sizeof text) != 1)
        die("%s does not take us: -ERR %s", r->host, text);
    capa(r);
    if (r->starttls) {
        command(r, "STLS");
        if (status(r, "asking for STLS", text, sizeof text) != 1)
            die("%s refused STLS: -ERR %s; try --tls on its port 995", r->host, text);
        /* Whatever came after +OK in plaintext is no reply of the TLS session (RFC 2595 4). */
        r->in_off = r->in_len = 0;
        start_tls(r);
        capa(r); /* RFC 2595 4: what was said before TLS is forgotten */
    }
    login(r);
    explicit_bzero(r->password, strlen(r->password));
    free(r->password);
    r->password = NULL;

    /* UIDL first: a server without it cannot be migrated so that clients see no change. */
    struct listing l = {0};
    command(r, "UIDL");
    if (status(r, "asking for UIDL", text, sizeof text) != 1)
        die("%s does not answer UIDL (-ERR %s): without the old UIDLs every mail client that "
            "leaves mail on the server would download everything again, so kotak does not "
            "import from it; copy the mailbox with 'kotak import mbox' or 'maildir' instead",
            r->host, text);
    read_listing(r, "reading the UIDL listing", uidl_cb, &l);
    command(r, "LIST");
    if (status(r, "asking for LIST", text, sizeof text) != 1)
        die("%s refused LIST: -ERR %s", r->host, text);
    l.at = 0;
    read_listing(r, "reading the LIST listing", list_cb, &l);
    if (l.at != r->n_entries)
        die("%s's LIST and UIDL listings do not name the same messages; try again later",
            r->host);
    (void)mark_repeated(r);

    if ((rc = store_import_begin(r->store, u.id, r->source, &r->imp)) < 0)
        ctl_die_store(r->store, rc, r->user);
    fetch_all(r);
    if ((rc = store_import_end(&r->imp)) < 0)
        ctl_die_store(r->store, rc, r->user);

    /* No DELE was sent: QUIT leaves the old maildrop as it was. */
    command(r, "QUIT");
    (void)status(r, "saying goodbye", NULL, 0);
    if (r->conn != NULL) {
        tls_conn_close_notify(r->conn);
        flush_tls(r);
    }
    printf("imported %" PRIu64 " message%s (%" PRIu64 " octets) from %s into %s, skipped %" PRIu64
           " already there, %" PRIu64 " UIDLs kept",
           r->imported, r->imported == 1 ? "" : "s", r->octets, r->host, u.address, r->skipped,
           r->kept);
    if (r->renamed > 0)
        printf(", %" PRIu64 " given new UIDLs (the old ones were not RFC 1939 UIDLs, were "
               "repeated, or name other messages here)", r->renamed);
    printf("\n");
    run_dying = NULL;
    close(r->fd);
    tls_conn_free(&r->conn);
    tls_client_free(&r->cli);
    free(r->entries);
    free(r->uidls);
    store_close(&r->store);
    conf_free(&r->conf);
    return 0;
}
