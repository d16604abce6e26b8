/*
 * dns.c — the asynchronous resolver: c-ares on the libuv loop.
 *
 * c-ares does the protocol (UDP, the retry over TCP of a truncated answer,
 * timeouts, tries, several servers) and never blocks; it tells us through
 * its socket-state callback which sockets it wants watched, and we give
 * each one a uv_poll_t, as Node.js does. One uv_timer_t fires when
 * ares_timeout() says the next query times out. Both call
 * ares_process_fd(), which reads, writes, retries and ends queries.
 *
 * c-ares ends a query by calling our callback from inside ares_query()
 * (an immediate error), ares_process_fd() or ares_destroy(). None of those
 * is a place to run the caller's code: it could be re-entered, or free the
 * resolver under c-ares' feet. So our c-ares callbacks only keep the result
 * and put the query on the done list; a uv_idle_t then answers the caller
 * from the loop, outside every c-ares frame. That also makes "never from
 * inside dns_mx()" hold whatever c-ares does.
 */
#include "dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "conf.h"
#include "dns_cache.h"
#include "util.h"

/* A socket c-ares asked us to watch. Freed in its close callback. */
struct dns_sock {
    uv_poll_t poll;
    struct dns *d;
    ares_socket_t fd;
    struct dns_sock *next;
};

enum dns_kind { DNS_KIND_MX, DNS_KIND_ADDRS, DNS_KIND_TXT, DNS_KIND_PTR, DNS_KIND_LATER };

/* One dns_mx or dns_addrs call, from the call until its answer. */
struct dns_query {
    struct dns *d;
    struct dns_query *prev, *next; /* d->queries: every query not yet answered */
    struct dns_query *done_next;   /* d->done: c-ares is through with it */
    enum dns_kind kind;
    unsigned outstanding; /* c-ares queries not ended yet */
    void (*mx_cb)(void *ctx, enum dns_status status, const struct dns_mx *records, size_t n);
    void (*addrs_cb)(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n);
    void (*txt_cb)(void *ctx, enum dns_status status, const char *const *records,
                   const size_t *lens, size_t n);
    void (*ptr_cb)(void *ctx, enum dns_status status, const char *const *names, size_t n);
    void (*later_cb)(void *ctx, enum dns_status status);
    void *ctx;
    enum dns_status status;  /* MX; A for an address query */
    enum dns_status status6; /* AAAA */
    struct dns_mx *mx;       /* DNS_MX_MAX of them, on DNS_OK */
    size_t n_mx;
    struct dns_addr v4[DNS_ADDRS_MAX], v6[DNS_ADDRS_MAX];
    size_t n4, n6;
    char **texts; /* TXT records or PTR names, DNS_TXT_MAX room, on DNS_OK */
    size_t *lens;
    size_t n_texts;
    char name[DNS_NAME_MAX + 2]; /* a TXT question's, for the cache */
};

struct dns {
    uv_loop_t *loop;
    ares_channel channel;
    uv_timer_t timer; /* ares_timeout() */
    uv_idle_t idle;   /* answers waiting on the done list */
    struct dns_sock *socks;
    struct dns_query *queries;
    struct dns_query *done, *done_tail;
    unsigned handles; /* open or closing: the memory goes when it reaches 0 */
    bool closing;
    struct dns_cache *cache; /* TXT answers, and names without, kept for their TTL */
};

const char *dns_status_name(enum dns_status status)
{
    switch (status) {
    case DNS_OK:
        return "ok";
    case DNS_NXDOMAIN:
        return "nxdomain";
    case DNS_NODATA:
        return "nodata";
    case DNS_TEMPFAIL:
        return "tempfail";
    case DNS_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

bool dns_name_valid(const char *name)
{
    size_t len = strnlen(name, DNS_NAME_MAX + 2);
    if (len > 0 && name[len - 1] == '.')
        len--; /* one final dot: the name is absolute anyway */
    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        /* c-ares reads a backslash as an escape; a byte outside printable
         * ASCII belongs in an A-label, converted by the caller. */
        if (ch <= 0x20 || ch >= 0x7f || ch == '\\' || ++label > 63)
            return false;
    }
    return label > 0;
}

void dns_addr_sockaddr(const struct dns_addr *addr, uint16_t port, struct sockaddr_storage *ss_r)
{
    memset(ss_r, 0, sizeof(*ss_r));
    if (addr->family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss_r;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        memcpy(&sin6->sin6_addr, addr->bytes, 16);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss_r;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, addr->bytes, 4);
    }
}

/* --- handles and their end --------------------------------------------- */

static void dns_release(struct dns *d)
{
    if (--d->handles > 0)
        return;
    assert(d->closing && d->queries == NULL && d->socks == NULL);
    ares_library_cleanup();
    dns_cache_free(&d->cache);
    free(d);
}

static void handle_closed(uv_handle_t *h)
{
    dns_release(h->data);
}

static void sock_closed(uv_handle_t *h)
{
    struct dns_sock *s = h->data;
    struct dns *d = s->d;
    free(s);
    dns_release(d);
}

/* Stops watching s: out of the list at once (c-ares may open a socket with
 * the same number before the close callback runs), freed when closed. */
static void sock_close(struct dns *d, struct dns_sock *s)
{
    for (struct dns_sock **p = &d->socks; *p != NULL; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static void on_timer(uv_timer_t *t);

/* Re-arms the timer to the next query's deadline, or stops it. */
static void timer_update(struct dns *d)
{
    if (d->closing)
        return;
    struct timeval tv;
    if (ares_timeout(d->channel, NULL, &tv) == NULL) {
        uv_timer_stop(&d->timer);
        return;
    }
    uint64_t ms = (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
    uv_timer_start(&d->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct dns *d = t->data;
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    timer_update(d);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct dns_sock *s = h->data;
    struct dns *d = s->d;
    ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
    if (status < 0) {
        rfd = wfd = s->fd; /* let c-ares meet the error itself */
    } else {
        if (events & UV_READABLE)
            rfd = s->fd;
        if (events & UV_WRITABLE)
            wfd = s->fd;
    }
    /* s may be closed (not freed) inside: c-ares ends with the socket. */
    ares_process_fd(d->channel, rfd, wfd);
    timer_update(d);
}

/* c-ares: watch fd for reading and/or writing, or, both false, no more. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = data;
    struct dns_sock *s = d->socks;
    while (s != NULL && s->fd != fd)
        s = s->next;
    if (!readable && !writable) {
        /* Before c-ares closes fd: the poll must leave epoll first. */
        if (s != NULL)
            sock_close(d, s);
        return;
    }
    if (s == NULL) {
        s = xcalloc(1, sizeof(*s));
        if (uv_poll_init_socket(d->loop, &s->poll, fd) != 0) {
            /* Nothing watches it: its queries end by their timeout. */
            free(s);
            return;
        }
        s->d = d;
        s->fd = fd;
        s->poll.data = s;
        s->next = d->socks;
        d->socks = s;
        d->handles++;
    }
    int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, events, on_poll);
}

/* --- answers ------------------------------------------------------------ */

/* Answers q's caller (with DNS_CANCELLED when cancelled) and frees q. */
static void query_answer(struct dns_query *q, bool cancelled)
{
    struct dns *d = q->d;
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        d->queries = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    enum dns_status st1 = cancelled ? DNS_CANCELLED : q->status;
    bool ok = st1 == DNS_OK;
    if (q->kind == DNS_KIND_MX) {
        q->mx_cb(q->ctx, st1, ok ? q->mx : NULL, ok ? q->n_mx : 0);
    } else if (q->kind == DNS_KIND_TXT) {
        q->txt_cb(q->ctx, st1, ok ? (const char *const *)q->texts : NULL, ok ? q->lens : NULL,
                  ok ? q->n_texts : 0);
    } else if (q->kind == DNS_KIND_LATER) {
        q->later_cb(q->ctx, cancelled ? DNS_CANCELLED : DNS_OK);
    } else if (q->kind == DNS_KIND_PTR) {
        q->ptr_cb(q->ctx, st1, ok ? (const char *const *)q->texts : NULL, ok ? q->n_texts : 0);
    } else {
        struct dns_addr all[2 * DNS_ADDRS_MAX];
        size_t n = 0;
        enum dns_status st;
        for (size_t i = 0; i < q->n6; i++)
            all[n++] = q->v6[i];
        for (size_t i = 0; i < q->n4; i++)
            all[n++] = q->v4[i];
        if (cancelled)
            st = DNS_CANCELLED;
        else if (n > 0)
            st = DNS_OK;
        else if (q->status == DNS_TEMPFAIL || q->status6 == DNS_TEMPFAIL)
            st = DNS_TEMPFAIL;
        else if (q->status == DNS_NXDOMAIN || q->status6 == DNS_NXDOMAIN)
            st = DNS_NXDOMAIN;
        else if (q->status == DNS_CANCELLED || q->status6 == DNS_CANCELLED)
            st = DNS_CANCELLED;
        else
            st = DNS_NODATA;
        q->addrs_cb(q->ctx, st, st == DNS_OK ? all : NULL, st == DNS_OK ? n : 0);
    }
    free(q->mx);
    for (size_t i = 0; i < q->n_texts; i++)
        free(q->texts[i]);
    free(q->texts);
    free(q->lens);
    free(q);
}

/*
 * Answers the queries that were done when it started; those that end
 * meanwhile (a callback may ask again) wait for the next turn of the loop,
 * so that a caller that asks again and again cannot hold the loop here.
 */
static void on_idle(uv_idle_t *h)
{
    struct dns *d = h->data;
    struct dns_query *q = d->done;
    d->done = d->done_tail = NULL;
    while (q != NULL) {
        struct dns_query *next = q->done_next;
        query_answer(q, false);
        if (d->closing)
            return; /* dns_free answered the rest */
        q = next;
    }
    if (d->done == NULL)
        uv_idle_stop(&d->idle);
}

/* One of q's c-ares queries ended; when the last has, q waits for on_idle. */
static void query_ended(struct dns_query *q)
{
    assert(q->outstanding > 0);
    if (--q->outstanding > 0)
        return;
    struct dns *d = q->d;
    q->done_next = NULL;
    if (d->done_tail != NULL)
        d->done_tail->done_next = q;
    else
        d->done = q;
    d->done_tail = q;
    if (!d->closing)
        uv_idle_start(&d->idle, on_idle);
}

/* A c-ares status, other than success, as ours. */
static enum dns_status status_of(int ares_status)
{
    switch (ares_status) {
    case ARES_ENODATA:
        return DNS_NODATA; /* NOERROR, no answer of the type asked */
    case ARES_ENOTFOUND:
        return DNS_NXDOMAIN; /* ares_query's word for rcode NXDOMAIN */
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return DNS_CANCELLED;
    default:
        /* SERVFAIL, REFUSED, NOTIMP, FORMERR after every try, a timeout,
         * a refused connection, an answer that does not parse, no memory:
         * another try later may well succeed. */
        return DNS_TEMPFAIL;
    }
}

/* "MX1.Example.ORG" -> "mx1.example.org"; the root name "" -> ".". */
static bool mx_host_copy(char *dst, const char *src)
{
    if (src[0] == '\0' || strcmp(src, ".") == 0) {
        memcpy(dst, ".", 2);
        return true;
    }
    if (!dns_name_valid(src))
        return false;
    size_t n = strlen(src);
    if (src[n - 1] == '.')
        n--;
    for (size_t i = 0; i < n; i++)
        dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] - 'A' + 'a') : src[i];
    dst[n] = '\0';
    return true;
}

/*
 * Keeps the DNS_MX_MAX most preferred records of the list, sorted by
 * preference, ties in the answer's order (an insertion sort that places a
 * record after its equals). A record whose host is no domain name is
 * skipped.
 */
static size_t mx_keep(const struct ares_mx_reply *list, struct dns_mx *out)
{
    size_t n = 0;
    for (const struct ares_mx_reply *r = list; r != NULL; r = r->next) {
        struct dns_mx rec = {.preference = r->priority};
        if (!mx_host_copy(rec.host, r->host))
            continue;
        if (n == DNS_MX_MAX && rec.preference >= out[n - 1].preference)
            continue; /* no better than the worst kept */
        size_t i = n < DNS_MX_MAX ? n++ : n - 1;
        while (i > 0 && out[i - 1].preference > rec.preference) {
            out[i] = out[i - 1];
            i--;
        }
        out[i] = rec;
    }
    return n;
}

static void on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct dns_query *q = arg;
    if (status != ARES_SUCCESS) {
        q->status = status_of(status);
    } else {
        struct ares_mx_reply *list = NULL;
        int rc = ares_parse_mx_reply(abuf, alen, &list);
        if (rc == ARES_SUCCESS) {
            q->mx = xcalloc(DNS_MX_MAX, sizeof(*q->mx));
            q->n_mx = mx_keep(list, q->mx);
            /* MX records that all name nothing usable: not "no MX" (which
             * would send the mail to the domain itself), so a retry later. */
            q->status = q->n_mx > 0 ? DNS_OK : DNS_TEMPFAIL;
        } else {
            q->status = status_of(rc);
        }
        ares_free_data(list);
    }
    query_ended(q);
}

static void on_a(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct dns_query *q = arg;
    if (status != ARES_SUCCESS) {
        q->status = status_of(status);
    } else {
        struct ares_addrttl ttls[DNS_ADDRS_MAX];
        int n = DNS_ADDRS_MAX;
        int rc = ares_parse_a_reply(abuf, alen, NULL, ttls, &n);
        if (rc == ARES_SUCCESS) {
            for (int i = 0; i < n && i < DNS_ADDRS_MAX; i++) {
                q->v4[q->n4].family = AF_INET;
                memcpy(q->v4[q->n4].bytes, &ttls[i].ipaddr, 4);
                q->n4++;
            }
            q->status = q->n4 > 0 ? DNS_OK : DNS_NODATA;
        } else {
            q->status = status_of(rc);
        }
    }
    query_ended(q);
}

static void on_aaaa(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct dns_query *q = arg;
    if (status != ARES_SUCCESS) {
        q->status6 = status_of(status);
    } else {
        struct ares_addr6ttl ttls[DNS_ADDRS_MAX];
        int n = DNS_ADDRS_MAX;
        int rc = ares_parse_aaaa_reply(abuf, alen, NULL, ttls, &n);
        if (rc == ARES_SUCCESS) {
            for (int i = 0; i < n && i < DNS_ADDRS_MAX; i++) {
                q->v6[q->n6].family = AF_INET6;
                memcpy(q->v6[q->n6].bytes, &ttls[i].ip6addr, 16);
                q->n6++;
            }
            q->status6 = q->n6 > 0 ? DNS_OK : DNS_NODATA;
        } else {
            q->status6 = status_of(rc);
        }
    }
    query_ended(q);
}

/*
 * How long an answer to a question of type may be kept, in seconds. With
 * none false: the smallest TTL of the answer section's records of that
 * type and of a CNAME that led to them. With none true, that the name has no record: as the authority
 * section's SOA says (RFC 2308 5: the smaller of its TTL and its MINIMUM),
 * and no longer than any record of the answer section (a CNAME that led
 * there). 0 when there is no such record or the answer cannot be read
 * that far: then nothing is kept.
 */
static uint32_t answer_ttl(const unsigned char *abuf, int alen, int type, bool none)
{
    if (alen < 12)
        return 0;
    unsigned qd = (unsigned)abuf[4] << 8 | abuf[5], an = (unsigned)abuf[6] << 8 | abuf[7];
    unsigned ns = none ? ((unsigned)abuf[8] << 8 | abuf[9]) : 0;
    const unsigned char *p = abuf + 12, *end = abuf + alen;
    uint32_t ttl = UINT32_MAX;
    bool soa = false;
    for (unsigned i = 0; i < qd + an + ns; i++) {
        char *name = NULL;
        long enc = 0;
        if (ares_expand_name(p, abuf, alen, &name, &enc) != ARES_SUCCESS)
            return 0;
        ares_free_string(name);
        p += enc;
        if (i < qd) {
            if (end - p < 4)
                return 0;
            p += 4; /* type, class */
            continue;
        }
        if (end - p < 10)
            return 0;
        int rtype = p[0] << 8 | p[1];
        uint32_t rttl = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
        size_t rdlen = (size_t)(p[8] << 8 | p[9]);
        if ((size_t)(end - p) < 10 + rdlen)
            return 0;
        const unsigned char *rdata_end = p + 10 + rdlen;
        p = rdata_end;
        if (i < qd + an) { /* the answer section */
            if (none || rtype == type || rtype == ns_t_cname)
                ttl = rttl < ttl ? rttl : ttl;
            continue;
        }
        if (rtype != ns_t_soa)
            continue;
        if (rdlen < 22) /* two names of one octet at least, five numbers */
            return 0;
        const unsigned char *m = rdata_end - 4; /* MINIMUM, the last of the five */
        uint32_t minimum = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3];
        rttl = minimum < rttl ? minimum : rttl;
        ttl = rttl < ttl ? rttl : ttl;
        soa = true;
    }
    if (none && !soa)
        return 0;
    return ttl == UINT32_MAX ? 0 : ttl;
}

static void on_txt(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct dns_query *q = arg;
    if (status != ARES_SUCCESS) {
        q->status = status_of(status);
        if ((q->status == DNS_NXDOMAIN || q->status == DNS_NODATA) && abuf != NULL &&
            !q->d->closing)
            dns_cache_put_none(q->d->cache, q->name, q->status, uv_now(q->d->loop),
                               answer_ttl(abuf, alen, ns_t_txt, true));
        query_ended(q);
        return;
    }
    struct ares_txt_ext *list = NULL;
    int rc = ares_parse_txt_reply_ext(abuf, alen, &list);
    if (rc != ARES_SUCCESS) {
        q->status = status_of(rc);
        query_ended(q);
        return;
    }
    q->texts = xcalloc(DNS_TXT_MAX, sizeof(*q->texts));
    q->lens = xcalloc(DNS_TXT_MAX, sizeof(*q->lens));
    /* A record is one or more character-strings; record_start marks each
     * record's first. Records past DNS_TXT_MAX are left out. */
    bool skipping = false;
    for (struct ares_txt_ext *t = list; t != NULL; t = t->next) {
        if (t->record_start) {
            skipping = q->n_texts == DNS_TXT_MAX;
            if (!skipping) {
                q->texts[q->n_texts] = xcalloc(1, 1);
                q->n_texts++;
            }
        }
        if (skipping || q->n_texts == 0)
            continue;
        size_t i = q->n_texts - 1;
        q->texts[i] = xrealloc(q->texts[i], q->lens[i] + t->length + 1);
        memcpy(q->texts[i] + q->lens[i], t->txt, t->length);
        q->lens[i] += t->length;
        q->texts[i][q->lens[i]] = '\0';
    }
    ares_free_data(list);
    q->status = q->n_texts > 0 ? DNS_OK : DNS_NODATA;
    if (q->status == DNS_OK && !q->d->closing)
        dns_cache_put(q->d->cache, q->name, (const char *const *)q->texts, q->lens, q->n_texts,
                      uv_now(q->d->loop), answer_ttl(abuf, alen, ns_t_txt, false));
    query_ended(q);
}

static void on_ptr(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct dns_query *q = arg;
    if (status != ARES_SUCCESS) {
        q->status = status_of(status);
        query_ended(q);
        return;
    }
    struct hostent *host = NULL;
    int rc = ares_parse_ptr_reply(abuf, alen, NULL, 0, AF_INET, &host);
    if (rc != ARES_SUCCESS) {
        q->status = status_of(rc);
        query_ended(q);
        return;
    }
    q->texts = xcalloc(DNS_PTR_MAX, sizeof(*q->texts));
    /* c-ares puts the first name in h_name and every one in h_aliases. */
    for (char **a = host->h_aliases; a != NULL && *a != NULL && q->n_texts < DNS_PTR_MAX; a++) {
        char name[DNS_NAME_MAX + 2];
        if (strcmp(*a, ".") == 0 || !mx_host_copy(name, *a))
            continue;
        q->texts[q->n_texts++] = xstrdup(name);
    }
    if (q->n_texts == 0 && host->h_name != NULL) {
        char name[DNS_NAME_MAX + 2];
        if (strcmp(host->h_name, ".") != 0 && mx_host_copy(name, host->h_name))
            q->texts[q->n_texts++] = xstrdup(name);
    }
    ares_free_hostent(host);
    q->status = q->n_texts > 0 ? DNS_OK : DNS_NODATA;
    query_ended(q);
}

/* --- the API ------------------------------------------------------------ */

static struct dns_query *query_new(struct dns *d, enum dns_kind kind, void *ctx)
{
    struct dns_query *q = xcalloc(1, sizeof(*q));
    q->d = d;
    q->kind = kind;
    q->ctx = ctx;
    /* A family not asked stays NODATA: it weighs nothing in the verdict. */
    q->status = q->status6 = DNS_NODATA;
    q->next = d->queries;
    if (d->queries != NULL)
        d->queries->prev = q;
    d->queries = q;
    return q;
}

int dns_mx(struct dns *d, const char *domain,
           void (*cb)(void *ctx, enum dns_status status, const struct dns_mx *records, size_t n),
           void *ctx)
{
    if (d->closing)
        return -ECANCELED;
    if (!dns_name_valid(domain))
        return -EINVAL;
    struct dns_query *q = query_new(d, DNS_KIND_MX, ctx);
    q->mx_cb = cb;
    q->outstanding = 1;
    ares_query(d->channel, domain, ns_c_in, ns_t_mx, on_mx, q);
    timer_update(d);
    return 0;
}

int dns_addrs(struct dns *d, const char *host, unsigned families,
              void (*cb)(void *ctx, enum dns_status status, const struct dns_addr *addrs, size_t n),
              void *ctx)
{
    if (d->closing)
        return -ECANCELED;
    if (!dns_name_valid(host) || families == 0 || (families & ~(DNS_V4 | DNS_V6)) != 0)
        return -EINVAL;
    struct dns_query *q = query_new(d, DNS_KIND_ADDRS, ctx);
    q->addrs_cb = cb;
    /* Both counted before either is sent: the first may end at once. */
    q->outstanding = ((families & DNS_V6) ? 1 : 0) + ((families & DNS_V4) ? 1 : 0);
    if (families & DNS_V6)
        ares_query(d->channel, host, ns_c_in, ns_t_aaaa, on_aaaa, q);
    if (families & DNS_V4)
        ares_query(d->channel, host, ns_c_in, ns_t_a, on_a, q);
    timer_update(d);
    return 0;
}

int dns_txt(struct dns *d, const char *name,
            void (*cb)(void *ctx, enum dns_status status, const char *const *records,
                       const size_t *lens, size_t n),
            void *ctx)
{
    if (d->closing)
        return -ECANCELED;
    if (!dns_name_valid(name))
        return -EINVAL;
    struct dns_query *q = query_new(d, DNS_KIND_TXT, ctx);
    q->txt_cb = cb;
    q->status = DNS_TEMPFAIL;
    q->outstanding = 1;
    struct dns_cached kept;
    if (dns_cache_get(d->cache, name, uv_now(d->loop), &kept)) {
        /* answered from the cache, on the loop's next turn as any answer */
        if (kept.status == DNS_OK) {
            q->texts = xcalloc(DNS_TXT_MAX, sizeof(*q->texts));
            q->lens = xcalloc(DNS_TXT_MAX, sizeof(*q->lens));
            for (size_t i = 0; i < kept.n && i < DNS_TXT_MAX; i++) {
                q->texts[i] = xmalloc(kept.lens[i] + 1);
                memcpy(q->texts[i], kept.records[i], kept.lens[i] + 1);
                q->lens[i] = kept.lens[i];
                q->n_texts++;
            }
        }
        q->status = kept.status;
        query_ended(q);
        return 0;
    }
    snprintf(q->name, sizeof(q->name), "%s", name);
    ares_query(d->channel, name, ns_c_in, ns_t_txt, on_txt, q);
    timer_update(d);
    return 0;
}

int dns_ptr(struct dns *d, const struct dns_addr *addr,
            void (*cb)(void *ctx, enum dns_status status, const char *const *names, size_t n),
            void *ctx)
{
    if (d->closing)
        return -ECANCELED;
    char name[80];
    size_t o = 0;
    if (addr->family == AF_INET) {
        snprintf(name, sizeof(name), "%u.%u.%u.%u.in-addr.arpa", addr->bytes[3], addr->bytes[2],
                 addr->bytes[1], addr->bytes[0]);
    } else if (addr->family == AF_INET6) {
        static const char hex[] = "0123456789abcdef";
        for (int i = 15; i >= 0; i--) {
            name[o++] = hex[addr->bytes[i] & 0xf];
            name[o++] = '.';
            name[o++] = hex[addr->bytes[i] >> 4];
            name[o++] = '.';
        }
        memcpy(name + o, "ip6.arpa", sizeof("ip6.arpa"));
    } else {
        return -EINVAL;
    }
    struct dns_query *q = query_new(d, DNS_KIND_PTR, ctx);
    q->ptr_cb = cb;
    q->status = DNS_TEMPFAIL;
    q->outstanding = 1;
    ares_query(d->channel, name, ns_c_in, ns_t_ptr, on_ptr, q);
    timer_update(d);
    return 0;
}

int dns_later(struct dns *d, void (*cb)(void *ctx, enum dns_status status), void *ctx)
{
    if (d->closing)
        return -ECANCELED;
    struct dns_query *q = query_new(d, DNS_KIND_LATER, ctx);
    q->later_cb = cb;
    q->outstanding = 1;
    query_ended(q); /* nothing to ask: answered on the loop's next turn */
    return 0;
}

/* Makes servers ("ADDR:PORT,...", checked as [dns] servers is) c-ares' list. */
static int servers_set(ares_channel channel, const char *servers, char *err, size_t err_size)
{
    struct conf_listener l;
    char why[200];
    if (conf_parse_servers(servers, &l, why, sizeof(why)) < 0) {
        snprintf(err, err_size, "DNS servers: %s", why);
        return -1;
    }
    struct ares_addr_port_node nodes[CONF_LISTEN_MAX];
    memset(nodes, 0, sizeof(nodes));
    for (size_t i = 0; i < l.n; i++) {
        struct ares_addr_port_node *node = &nodes[i];
        node->next = i + 1 < l.n ? &nodes[i + 1] : NULL;
        if (inet_pton(AF_INET, l.ep[i].host, &node->addr.addr4) == 1) {
            node->family = AF_INET;
        } else {
            node->family = AF_INET6;
            int rc = inet_pton(AF_INET6, l.ep[i].host, &node->addr.addr6);
            (void)rc;
            assert(rc == 1); /* conf_parse_servers checked it */
        }
        node->udp_port = node->tcp_port = l.ep[i].port;
    }
    int rc = ares_set_servers_ports(channel, nodes);
    if (rc != ARES_SUCCESS) {
        snprintf(err, err_size, "cannot use the DNS servers '%s': %s", servers, ares_strerror(rc));
        return -1;
    }
    return 0;
}

struct dns *dns_new(uv_loop_t *loop, const char *servers, unsigned timeout_ms, unsigned tries,
                    char *err, size_t err_size)
{
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        snprintf(err, err_size, "cannot start the DNS resolver: %s", ares_strerror(rc));
        return NULL;
    }
    struct dns *d = xcalloc(1, sizeof(*d));
    d->loop = loop;
    d->cache = dns_cache_new();
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    int mask = ARES_OPT_SOCK_STATE_CB;
    o.sock_state_cb = on_sock_state;
    o.sock_state_cb_data = d;
    if (timeout_ms > 0) {
        mask |= ARES_OPT_TIMEOUTMS;
        o.timeout = timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;
    }
    if (tries > 0) {
        mask |= ARES_OPT_TRIES;
        o.tries = tries > INT_MAX ? INT_MAX : (int)tries;
    }
    rc = ares_init_options(&d->channel, &o, mask);
    if (rc != ARES_SUCCESS) {
        snprintf(err, err_size, "cannot start the DNS resolver: %s", ares_strerror(rc));
        dns_cache_free(&d->cache);
        free(d);
        ares_library_cleanup();
        return NULL;
    }
    if (servers != NULL && servers[0] != '\0' &&
        servers_set(d->channel, servers, err, err_size) < 0) {
        ares_destroy(d->channel);
        dns_cache_free(&d->cache);
        free(d);
        ares_library_cleanup();
        return NULL;
    }
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    uv_idle_init(loop, &d->idle);
    d->idle.data = d;
    d->handles = 2;
    return d;
}

void dns_free(struct dns **dp)
{
    struct dns *d = dp != NULL ? *dp : NULL;
    if (d == NULL)
        return;
    *dp = NULL;
    if (d->closing)
        return;
    d->closing = true;
    /* Ends every c-ares query (ARES_EDESTRUCTION: onto the done list) and
     * closes its sockets, which closes their polls through on_sock_state. */
    ares_destroy(d->channel);
    d->channel = NULL;
    while (d->socks != NULL)
        sock_close(d, d->socks);
    uv_close((uv_handle_t *)&d->timer, handle_closed);
    uv_close((uv_handle_t *)&d->idle, handle_closed);
    /* Whatever was not answered, done or not, is cancelled: a callback
     * may call dns_free or ask again, and finds d closing. */
    d->done = d->done_tail = NULL;
    while (d->queries != NULL)
        query_answer(d->queries, true);
}
