/*
 * login.c — asynchronous, throttled password checks; see login.h.
 */
#include "login.h"

#include <errno.h>
#include <mbedtls/md.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util.h"

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
    struct throttle *throttle;
    char dummy_hash[AUTH_HASH_MAX]; /* verified for unknown users */
    uint8_t cache_key[LOGIN_MAC_SIZE];
    struct login_cached cache[LOGIN_CACHE_ENTRIES];
    struct login_req *checking; /* checks under way, for the per-address count */
};

/* Checks under way for ip. */
static unsigned checking_from(const struct login *l, const uint8_t ip[16])
{
    unsigned n = 0;
    for (const struct login_req *r = l->checking; r != NULL; r = r->next_checking)
        n += memcmp(r->ip, ip, 16) == 0;
    return n;
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

struct login *login_new(uv_loop_t *loop, const struct conf_auth *cfg)
{
    struct login *l = xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->cfg = *cfg;
    if (auth_hash_password("kotak: no such user", l->dummy_hash) < 0 ||
        getrandom(l->cache_key, sizeof(l->cache_key), 0) != sizeof(l->cache_key)) {
        free(l);
        return NULL;
    }
    l->throttle = throttle_new(LOGIN_THROTTLE_ENTRIES, (unsigned)cfg->max_failures,
                               cfg->failure_window_ms, cfg->lockout_ms);
    return l;
}

void login_free(struct login **lp)
{
    struct login *l = *lp;
    if (l == NULL)
        return;
    throttle_free(&l->throttle);
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
    if (status == 0 && r->ok) {
        throttle_success(l->throttle, r->ip);
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
    throttle_fail(l->throttle, r->ip, uv_now(l->loop));
    answer_late(r, 0);
}

/*
 * Starts the crypt(3) check, unless the address already has as many checks
 * under way as failures left before its lockout: then it waits its turn.
 * So guesses sent side by side on many connections meet the lockout as
 * soon as serial ones would, while an office behind one address that logs
 * in all at once is only made to queue, never refused.
 */
static void start_check(struct login_req *r)
{
    struct login *l = r->l;
    uint64_t now = uv_now(l->loop);
    if (throttle_locked(l->throttle, r->ip, now)) {
        explicit_bzero(r->password, sizeof(r->password));
        answer_late(r, -EAGAIN);
        return;
    }
    if (checking_from(l, r->ip) + throttle_failures(l->throttle, r->ip, now) >=
        l->cfg.max_failures) {
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

void login_check(struct login_req *r, const uint8_t ip[16], const char *hash, int64_t user_id,
                 const char *password)
{
    struct login *l = r->l;
    r->busy = true;
    memcpy(r->ip, ip, 16);
    if (throttle_locked(l->throttle, ip, uv_now(l->loop))) {
        answer_late(r, -EAGAIN);
        return;
    }
    if (hash != NULL && cache_hit(l, hash, user_id, password)) {
        throttle_success(l->throttle, ip);
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
