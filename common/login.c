/*
 * login.c — asynchronous, throttled password checks; see login.h.
 *
 * The failure table is a file in data_dir that each daemon maps shared and
 * locks with flock(2) around every look-up and update, so a lockout earned
 * over SMTP holds over POP3 too, and a restart forgets nothing. The lock
 * is held for one scan of the table, never across a check.
 */
#include "login.h"

#include <errno.h>
#include <fcntl.h>
#include <mbedtls/md.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LOGIN_TABLE_FILE "login-failures"
#define LOGIN_THROTTLE_ENTRIES 4096
#define LOGIN_CACHE_ENTRIES 1024
#define LOGIN_MAC_SIZE 32
#define LOGIN_WAIT_MS 20 /* how often a check waiting its turn looks again */

/*
 * A login that passed the crypt(3) check is remembered for cache_ttl as an
 * HMAC, under a key made anew at each start, of the stored hash and the
 * password. The same password against the same stored hash then passes
 * without the slow check, the way Dovecot's auth cache does; a changed
 * password changes the stored hash and so misses. Only successes are kept:
 * every failure still costs the full check and the delay.
 */
struct login_cached {
    int64_t user_id; /* 0: empty */
    uint64_t expires_ms;
    uint8_t mac[LOGIN_MAC_SIZE];
};

struct login {
    uv_loop_t *loop;
    struct conf_auth cfg;
    struct throttle_rule pair_rule, addr_rule;
    int fd;    /* the table's file, for flock */
    void *map; /* the table, mapped shared */
    size_t map_size;
    struct throttle *throttle;
    char dummy_hash[AUTH_HASH_MAX]; /* verified for unknown users */
    uint8_t cache_key[LOGIN_MAC_SIZE];
    struct login_cached cache[LOGIN_CACHE_ENTRIES];
    struct login_req *checking; /* checks under way, for the per-address count */
};

/* Checks under way in this daemon for the pair, or for the address. */
static unsigned checking_for(const struct login *l, const struct throttle_key *k, bool pair)
{
    unsigned n = 0;
    for (const struct login_req *r = l->checking; r != NULL; r = r->next_checking)
        n += memcmp(pair ? &r->pair : &r->addr, k, sizeof(*k)) == 0;
    return n;
}

/* The table's times are the wall clock's, the same in both daemons and
 * across restarts (throttle.h copes with a clock set back). */
static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Another daemon may be updating the table: wait for it, briefly. */
static void table_lock(const struct login *l)
{
    while (flock(l->fd, LOCK_EX) < 0 && errno == EINTR)
        ;
    /* Someone cut the file short (": > login-failures" to clear the
     * lockouts): the mapping past its end would fault, so it gets its size
     * back, zeros, that is: no failures. */
    struct stat st;
    if (fstat(l->fd, &st) == 0 && st.st_size < (off_t)l->map_size &&
        ftruncate(l->fd, (off_t)l->map_size) < 0)
        log_error("login event=table-error reason=\"cannot restore the failure table's size: %s\"",
                  strerror(errno));
}

static void table_unlock(const struct login *l)
{
    flock(l->fd, LOCK_UN);
}

/* Both keys locked out or not, under the table's lock. */
static bool keys_locked(const struct login *l, const struct login_req *r, uint64_t now)
{
    return throttle_locked(l->throttle, &r->pair, now) ||
           throttle_locked(l->throttle, &r->addr, now);
}

/*
 * The keys of a check. The pair names a known user by id, so that other
 * spellings of the login cannot earn fresh counts, and an unknown one by
 * its name folded to lower case; both are hashed the same way, so the cost
 * does not tell them apart.
 */
static void make_keys(struct login_req *r, const uint8_t ip[16], const char *user, bool known,
                      int64_t user_id)
{
    memset(&r->pair, 0, sizeof(r->pair));
    throttle_prefix(ip, r->pair.ip);
    r->addr = r->pair;
    char name[320];
    if (known)
        snprintf(name, sizeof(name), "id:%lld", (long long)user_id);
    else
        snprintf(name, sizeof(name), "name:%s", user);
    for (char *p = name; *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    uint8_t digest[32];
    mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), (const unsigned char *)name,
               strlen(name), digest);
    memcpy(r->pair.user, digest, sizeof(r->pair.user));
    r->pair.user[0] |= 1; /* never all zero, which would name the address */
}

/* Opens or makes the shared table; 0, or -1 with a sentence in err. */
static int table_open(struct login *l, const char *data_dir, char *err, size_t err_size)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", data_dir, LOGIN_TABLE_FILE) >= (int)sizeof(path)) {
        snprintf(err, err_size, "data_dir %s is too long a path", data_dir);
        return -1;
    }
    l->map_size = throttle_size(LOGIN_THROTTLE_ENTRIES);
    l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (l->fd < 0) {
        snprintf(err, err_size, "cannot open the failed-login table %s: %s", path, strerror(errno));
        return -1;
    }
    table_lock(l);
    struct stat st;
    if (fstat(l->fd, &st) < 0 || !S_ISREG(st.st_mode) || fchmod(l->fd, 0600) < 0) {
        snprintf(err, err_size, "the failed-login table %s is not a regular file of ours", path);
        table_unlock(l);
        return -1;
    }
    /* Grown, never shrunk: another daemon may have it mapped. */
    if ((st.st_size < (off_t)l->map_size && ftruncate(l->fd, (off_t)l->map_size) < 0) ||
        (l->map = mmap(NULL, l->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, l->fd, 0)) ==
            MAP_FAILED) {
        snprintf(err, err_size, "cannot map the failed-login table %s: %s", path, strerror(errno));
        l->map = NULL;
        table_unlock(l);
        return -1;
    }
    l->throttle = throttle_open(l->map, l->map_size);
    table_unlock(l);
    return 0;
}

static void checking_remove(struct login *l, struct login_req *r)
{
    struct login_req **p = &l->checking;
    while (*p != r)
        p = &(*p)->next_checking;
    *p = r->next_checking;
    r->next_checking = NULL;
}

/* HMAC-SHA-256(key, hash NUL password). */
static void login_mac(const struct login *l, const char *hash, const char *password,
                      uint8_t mac[LOGIN_MAC_SIZE])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    mbedtls_md_context_t ctx;
    mbedtls_md_init(&ctx);
    mbedtls_md_setup(&ctx, md, 1);
    mbedtls_md_hmac_starts(&ctx, l->cache_key, sizeof(l->cache_key));
    mbedtls_md_hmac_update(&ctx, (const unsigned char *)hash, strlen(hash) + 1);
    mbedtls_md_hmac_update(&ctx, (const unsigned char *)password, strlen(password));
    mbedtls_md_hmac_finish(&ctx, mac);
    mbedtls_md_free(&ctx);
}

static struct login_cached *cache_slot(struct login *l, int64_t user_id)
{
    return &l->cache[(uint64_t)user_id % LOGIN_CACHE_ENTRIES];
}

/* True when password was verified against hash for user_id within cache_ttl. */
static bool cache_hit(struct login *l, const char *hash, int64_t user_id, const char *password)
{
    struct login_cached *e = cache_slot(l, user_id);
    if (l->cfg.cache_ttl_ms == 0 || e->user_id != user_id || uv_now(l->loop) >= e->expires_ms)
        return false;
    uint8_t mac[LOGIN_MAC_SIZE];
    login_mac(l, hash, password, mac);
    unsigned char diff = 0;
    for (size_t i = 0; i < sizeof(mac); i++)
        diff |= (unsigned char)(mac[i] ^ e->mac[i]);
    explicit_bzero(mac, sizeof(mac));
    return diff == 0;
}

struct login *login_new(uv_loop_t *loop, const struct conf_auth *cfg, const char *data_dir,
                        char *err, size_t err_size)
{
    struct login *l = xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->cfg = *cfg;
    l->pair_rule = (struct throttle_rule){(unsigned)cfg->max_failures, cfg->failure_window_ms,
                                          cfg->lockout_ms};
    l->addr_rule = (struct throttle_rule){(unsigned)cfg->address_max_failures,
                                          cfg->address_failure_window_ms, cfg->address_lockout_ms};
    l->fd = -1;
    if (auth_hash_password("kotak: no such user", l->dummy_hash) < 0 ||
        getrandom(l->cache_key, sizeof(l->cache_key), 0) != sizeof(l->cache_key)) {
        snprintf(err, err_size, "cannot make a password hash: is libcrypt's yescrypt available?");
        login_free(&l);
        return NULL;
    }
    if (table_open(l, data_dir, err, err_size) < 0) {
        login_free(&l);
        return NULL;
    }
    return l;
}

void login_free(struct login **lp)
{
    struct login *l = *lp;
    if (l == NULL)
        return;
    throttle_free(&l->throttle);
    if (l->map != NULL)
        munmap(l->map, l->map_size);
    if (l->fd >= 0)
        close(l->fd);
    free(l);
    *lp = NULL;
}

void login_req_init(struct login *l, struct login_req *r,
                    void (*done)(struct login_req *r, int rc, int64_t user_id))
{
    memset(r, 0, sizeof(*r));
    r->l = l;
    r->done = done;
    uv_timer_init(l->loop, &r->delay);
    r->delay.data = r;
    r->work.data = r;
}

static void finish(struct login_req *r, int rc, int64_t user_id)
{
    r->busy = false;
    r->done(r, rc, user_id);
}

static void delay_expired(uv_timer_t *t)
{
    struct login_req *r = t->data;
    finish(r, r->rc, 0);
}

/* Failures and lockouts are told only after the delay. */
static void answer_late(struct login_req *r, int rc)
{
    r->rc = rc;
    uv_timer_start(&r->delay, delay_expired, r->l->cfg.failure_delay_ms, 0);
}

static void work(uv_work_t *w)
{
    struct login_req *r = w->data;
    r->ok = auth_verify(r->hash, r->password) && r->ok;
    if (r->ok)
        login_mac(r->l, r->hash, r->password, r->mac); /* for the cache, if it passed */
    explicit_bzero(r->password, sizeof(r->password));
}

static void wait_turn(uv_timer_t *t);

static void cache_hit_answer(uv_timer_t *t)
{
    struct login_req *r = t->data;
    finish(r, 1, r->user_id);
}

static void after_work(uv_work_t *w, int status)
{
    struct login_req *r = w->data;
    struct login *l = r->l;
    checking_remove(l, r);
    explicit_bzero(r->hash, sizeof(r->hash));
    table_lock(l);
    if (status == 0 && r->ok)
        throttle_success(l->throttle, &r->pair);
    else {
        uint64_t now = wall_ms();
        throttle_fail(l->throttle, &r->pair, &l->pair_rule, now);
        throttle_fail(l->throttle, &r->addr, &l->addr_rule, now);
    }
    table_unlock(l);
    if (status == 0 && r->ok) {
        if (l->cfg.cache_ttl_ms > 0) {
            struct login_cached *e = cache_slot(l, r->user_id);
            e->user_id = r->user_id;
            e->expires_ms = uv_now(l->loop) + l->cfg.cache_ttl_ms;
            memcpy(e->mac, r->mac, sizeof(e->mac));
        }
        explicit_bzero(r->mac, sizeof(r->mac));
        finish(r, 1, r->user_id);
        return;
    }
    answer_late(r, 0);
}

/*
 * Starts the crypt(3) check, unless the pair or the address already has as
 * many checks under way here as failures left before its lockout: then it
 * waits its turn. So guesses sent side by side on many connections meet
 * the lockout as soon as serial ones would, while an office behind one
 * address that logs in all at once is only made to queue, never refused.
 */
static void start_check(struct login_req *r)
{
    struct login *l = r->l;
    uint64_t now = wall_ms();
    table_lock(l);
    bool locked = keys_locked(l, r, now);
    bool wait = !locked &&
                (checking_for(l, &r->pair, true) + throttle_failures(l->throttle, &r->pair, now) >=
                     l->pair_rule.max_failures ||
                 checking_for(l, &r->addr, false) + throttle_failures(l->throttle, &r->addr, now) >=
                     l->addr_rule.max_failures);
    table_unlock(l);
    if (locked) {
        explicit_bzero(r->password, sizeof(r->password));
        answer_late(r, -EAGAIN);
        return;
    }
    if (wait) {
        uv_timer_start(&r->delay, wait_turn, LOGIN_WAIT_MS, 0);
        return;
    }
    r->next_checking = l->checking;
    l->checking = r;
    if (uv_queue_work(l->loop, &r->work, work, after_work) != 0) {
        checking_remove(l, r);
        explicit_bzero(r->password, sizeof(r->password));
        answer_late(r, 0);
    }
}

static void wait_turn(uv_timer_t *t)
{
    start_check(t->data);
}

void login_check(struct login_req *r, const uint8_t ip[16], const char *user, const char *hash,
                 int64_t user_id, const char *password)
{
    struct login *l = r->l;
    r->busy = true;
    make_keys(r, ip, user, hash != NULL, user_id);
    table_lock(l);
    bool locked = keys_locked(l, r, wall_ms());
    table_unlock(l);
    if (locked) {
        answer_late(r, -EAGAIN);
        return;
    }
    if (hash != NULL && cache_hit(l, hash, user_id, password)) {
        table_lock(l);
        throttle_success(l->throttle, &r->pair);
        table_unlock(l);
        r->user_id = user_id;
        uv_timer_start(&r->delay, cache_hit_answer, 0, 0); /* done is always async */
        return;
    }
    /* ok carries "the user exists" into the work; the hash check must agree. */
    r->ok = hash != NULL;
    r->user_id = user_id;
    snprintf(r->hash, sizeof(r->hash), "%s", hash ? hash : l->dummy_hash);
    snprintf(r->password, sizeof(r->password), "%s", password);
    start_check(r);
}

void login_req_close(struct login_req *r, uv_close_cb close_cb, void *data)
{
    r->delay.data = data;
    uv_close((uv_handle_t *)&r->delay, close_cb);
}
