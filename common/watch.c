/*
 * watch.c — the live view's ring of events; see watch.h.
 *
 * The file: a header page, then WATCH_SLOTS slots of 1 KiB. Event n lives
 * in slot n % WATCH_SLOTS. The writer (one daemon, its loop thread) marks
 * a slot as being written (seq 0), fills it, then publishes its number,
 * then the ring's next number. A reader copies a slot and reads its number
 * before and after: the same number both times, and the one it wanted,
 * means the copy is whole (a seqlock; the writer never waits).
 */
#include "watch.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define WATCH_MAGIC "KOTAKW1"
#define WATCH_HEADER_SIZE 4096
#define WATCH_SLOT_SIZE 1024

struct ring_header {
    char magic[8];
    uint32_t slot_size, slots;
    _Atomic uint64_t next;          /* the number the next event gets */
    _Atomic uint64_t watched_until; /* wall clock, ms: viewers push it forward */
};

struct ring_slot {
    _Atomic uint64_t seq; /* 0 while being written */
    uint64_t time_us;
    char session[24];
    uint8_t proto, kind, flags;
    uint8_t pad;
    uint16_t len;
    char text[WATCH_TEXT_MAX];
};
_Static_assert(sizeof(struct ring_slot) <= WATCH_SLOT_SIZE, "a slot fits 1 KiB");
_Static_assert(sizeof(struct ring_header) <= WATCH_HEADER_SIZE, "the header fits its page");

#define FLAG_TLS 1
#define FLAG_CUT 2

#define RING_SIZE ((size_t)WATCH_HEADER_SIZE + (size_t)WATCH_SLOTS * WATCH_SLOT_SIZE)

struct ring {
    char *map;
    struct ring_header *h;
};

static struct ring_slot *slot_of(const struct ring *r, uint64_t seq)
{
    return (struct ring_slot *)(r->map + WATCH_HEADER_SIZE +
                                (size_t)(seq % WATCH_SLOTS) * WATCH_SLOT_SIZE);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool ring_valid(const struct ring_header *h)
{
    return memcmp(h->magic, WATCH_MAGIC, sizeof(WATCH_MAGIC)) == 0 &&
           h->slot_size == WATCH_SLOT_SIZE && h->slots == WATCH_SLOTS;
}

/*
 * Maps fd's ring; with init (the daemon), makes the file a fresh ring
 * first when it is none, its blocks allocated before it is mapped (a
 * sparse file would fault on a full disk, SIGBUS, instead of failing here).
 */
static int ring_map(int fd, bool init, struct ring *r, char *err, size_t err_size)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, err_size, "%s", strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "not a regular file");
        return -1;
    }
    struct ring_header h;
    bool fresh = (size_t)st.st_size != RING_SIZE || pread(fd, &h, sizeof(h), 0) != sizeof(h) ||
                 !ring_valid(&h);
    if (fresh && !init) {
        snprintf(err, err_size, "not a ring of events");
        return -1;
    }
    if (fresh && (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)RING_SIZE) < 0)) {
        snprintf(err, err_size, "cannot size it: %s", strerror(errno));
        return -1;
    }
    int rc = init ? posix_fallocate(fd, 0, (off_t)RING_SIZE) : 0;
    if (rc != 0) {
        snprintf(err, err_size, "cannot allocate it: %s", strerror(rc));
        return -1;
    }
    r->map = mmap(NULL, RING_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (r->map == MAP_FAILED) {
        snprintf(err, err_size, "cannot map it: %s", strerror(errno));
        return -1;
    }
    r->h = (struct ring_header *)r->map;
    if (fresh) { /* zeroed by the truncation: the header makes it a ring */
        r->h->slot_size = WATCH_SLOT_SIZE;
        r->h->slots = WATCH_SLOTS;
        atomic_store(&r->h->next, 1);
        atomic_store(&r->h->watched_until, 0);
        memcpy(r->h->magic, WATCH_MAGIC, sizeof(WATCH_MAGIC));
    }
    return 0;
}

const char *watch_kind_name(enum watch_kind k)
{
    static const char *const names[] = {"open", "client", "server", "tls", "note", "close", "mail"};
    return (size_t)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

const char *watch_proto_name(enum watch_proto p)
{
    return p == WATCH_POP3 ? "pop3" : "smtp";
}

/* --- the daemon's side ----------------------------------------------------- */

struct watch {
    struct ring r;
    int fd; /* held open: its lock says the ring has its writer */
};

struct watch *watch_open(const char *path, char *err, size_t err_size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    /* One writer a ring: a second daemon (an old one still stopping) goes without the view. */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, err_size, "%s: another daemon writes it", path);
        close(fd);
        return NULL;
    }
    struct watch *w = xcalloc(1, sizeof(*w));
    char why[160];
    if (ring_map(fd, true, &w->r, why, sizeof(why)) < 0) {
        snprintf(err, err_size, "%s: %s", path, why);
        close(fd);
        free(w);
        return NULL;
    }
    w->fd = fd;
    return w;
}

bool watch_on(const struct watch *w)
{
    if (w == NULL)
        return false;
    uint64_t until = atomic_load_explicit(&w->r.h->watched_until, memory_order_relaxed);
    uint64_t now = wall_ms();
    /* A time further ahead than a viewer ever sets (a clock stepped back,
     * a value written by hand) counts as nobody watching. */
    return until > now && until <= now + WATCH_KEEPALIVE_MS + 1000;
}

void watch_put(struct watch *w, const char *session, enum watch_proto proto, enum watch_kind kind,
               bool tls, const char *text, size_t len)
{
    if (w == NULL)
        return;
    uint64_t seq = atomic_load_explicit(&w->r.h->next, memory_order_relaxed);
    struct ring_slot *s = slot_of(&w->r, seq);
    atomic_store_explicit(&s->seq, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->time_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    snprintf(s->session, sizeof(s->session), "%s", session);
    s->proto = (uint8_t)proto;
    s->kind = (uint8_t)kind;
    s->flags = (uint8_t)((tls ? FLAG_TLS : 0) | (len > WATCH_TEXT_MAX ? FLAG_CUT : 0));
    s->len = (uint16_t)(len > WATCH_TEXT_MAX ? WATCH_TEXT_MAX : len);
    memcpy(s->text, text, s->len);
    atomic_store_explicit(&s->seq, seq, memory_order_release);
    atomic_store_explicit(&w->r.h->next, seq + 1, memory_order_release);
}

void watch_close(struct watch **wp)
{
    struct watch *w = *wp;
    if (w == NULL)
        return;
    munmap(w->r.map, RING_SIZE);
    close(w->fd);
    free(w);
    *wp = NULL;
}

struct watch *watch_start(const struct conf *conf, const char *name)
{
    if (conf->web_listen.n == 0)
        return NULL;
    char path[64], err[512];
    snprintf(path, sizeof(path), "%s/%s.ring", WATCH_DIR, name);
    if (mkdir(WATCH_DIR, 0700) < 0 && errno != EEXIST) {
        log_warn("%s event=watch-off why=\"cannot make %s: %s\"", name, WATCH_DIR, strerror(errno));
        return NULL;
    }
    struct watch *w = watch_open(path, err, sizeof(err));
    if (w == NULL)
        log_warn("%s event=watch-off why=\"%s\"", name, err);
    return w;
}

void watch_say(struct watch *w, const char *session, enum watch_proto proto, enum watch_kind kind,
               bool tls, const char *fmt, ...)
{
    if (!watch_on(w))
        return;
    char text[WATCH_TEXT_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    watch_put(w, session, proto, kind, tls, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

/* --- a viewer's side ------------------------------------------------------- */

struct watch_reader {
    struct ring r;
    uint64_t pos; /* the number of the next event to read */
};

struct watch_reader *watch_reader_open(const char *path, uint64_t from, size_t history, char *err,
                                       size_t err_size)
{
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct watch_reader *r = xcalloc(1, sizeof(*r));
    char why[160];
    int rc = ring_map(fd, false, &r->r, why, sizeof(why));
    close(fd);
    if (rc < 0) {
        snprintf(err, err_size, "%s: %s", path, why);
        free(r);
        return NULL;
    }
    uint64_t next = atomic_load_explicit(&r->r.h->next, memory_order_acquire);
    if (from == 0) {
        uint64_t keep = history < WATCH_SLOTS - 1 ? history : WATCH_SLOTS - 1;
        from = next > keep ? next - keep : 1;
    }
    r->pos = from > next ? next : from;
    return r;
}

long watch_reader_next(struct watch_reader *r, struct watch_event *ev)
{
    uint64_t next = atomic_load_explicit(&r->r.h->next, memory_order_acquire);
    if (next < r->pos) /* a ring made anew under us: start again from its start */
        r->pos = next > WATCH_SLOTS - 1 ? next - (WATCH_SLOTS - 1) : 1;
    if (r->pos >= next)
        return 0;
    /* The slot of `next` may be being written; the ones before it are whole. */
    if (next - r->pos > WATCH_SLOTS - 1) {
        uint64_t lost = next - (WATCH_SLOTS - 1) - r->pos;
        r->pos += lost;
        return lost > LONG_MAX ? -LONG_MAX : -(long)lost;
    }
    const struct ring_slot *s = slot_of(&r->r, r->pos);
    uint64_t before = atomic_load_explicit(&s->seq, memory_order_acquire);
    ev->time_us = s->time_us;
    memcpy(ev->session, s->session, sizeof(ev->session));
    ev->session[sizeof(ev->session) - 1] = '\0';
    uint8_t proto = s->proto, kind = s->kind, flags = s->flags;
    size_t len = s->len > WATCH_TEXT_MAX ? WATCH_TEXT_MAX : s->len;
    memcpy(ev->text, s->text, len);
    atomic_thread_fence(memory_order_acquire);
    uint64_t after = atomic_load_explicit(&s->seq, memory_order_relaxed);
    if (before != r->pos || after != before) { /* overwritten while we looked */
        r->pos++;
        return -1;
    }
    ev->text[len] = '\0';
    ev->len = len;
    ev->seq = r->pos++;
    ev->proto = proto == WATCH_POP3 ? WATCH_POP3 : WATCH_SMTP;
    ev->kind = kind <= WATCH_MAIL ? (enum watch_kind)kind : WATCH_NOTE;
    ev->tls = (flags & FLAG_TLS) != 0;
    ev->cut = (flags & FLAG_CUT) != 0;
    return 1;
}

uint64_t watch_reader_position(const struct watch_reader *r)
{
    return r->pos;
}

bool watch_reader_pending(const struct watch_reader *r)
{
    return r->pos != atomic_load_explicit(&r->r.h->next, memory_order_acquire);
}

void watch_reader_keepalive(struct watch_reader *r)
{
    uint64_t until = wall_ms() + WATCH_KEEPALIVE_MS;
    uint64_t cur = atomic_load_explicit(&r->r.h->watched_until, memory_order_relaxed);
    while (cur < until &&
           !atomic_compare_exchange_weak_explicit(&r->r.h->watched_until, &cur, until,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void watch_reader_close(struct watch_reader **rp)
{
    struct watch_reader *r = *rp;
    if (r == NULL)
        return;
    munmap(r->r.map, RING_SIZE);
    free(r);
    *rp = NULL;
}
