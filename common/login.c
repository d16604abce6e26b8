/*
 * login.c — asynchronous, throttled password checks; see login.h.
 */
#include "login.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define LOGIN_THROTTLE_ENTRIES 4096

struct login {
    uv_loop_t *loop;
    struct conf_auth cfg;
    struct throttle *throttle;
    char dummy_hash[AUTH_HASH_MAX]; /* verified for unknown users */
};

struct login *login_new(uv_loop_t *loop, const struct conf_auth *cfg)
{
    struct login *l = xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->cfg = *cfg;
    if (auth_hash_password("kotak: no such user", l->dummy_hash) < 0) {
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
    explicit_bzero(r->password, sizeof(r->password));
}

static void after_work(uv_work_t *w, int status)
{
    struct login_req *r = w->data;
    struct login *l = r->l;
    explicit_bzero(r->hash, sizeof(r->hash));
    if (status == 0 && r->ok) {
        throttle_success(l->throttle, r->ip);
        finish(r, 1, r->user_id);
        return;
    }
    answer_late(r, 0); /* the failure was counted when the check began */
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
    /* Counted as a failure now and forgiven on success, so that guesses sent
     * side by side on many connections meet the lockout as soon as serial
     * ones would. */
    throttle_fail(l->throttle, ip, uv_now(l->loop));
    /* ok carries "the user exists" into the work; the hash check must agree. */
    r->ok = hash != NULL;
    r->user_id = user_id;
    snprintf(r->hash, sizeof(r->hash), "%s", hash ? hash : l->dummy_hash);
    snprintf(r->password, sizeof(r->password), "%s", password);
    if (uv_queue_work(l->loop, &r->work, work, after_work) != 0) {
        explicit_bzero(r->password, sizeof(r->password));
        answer_late(r, 0);
    }
}

void login_req_close(struct login_req *r, uv_close_cb close_cb, void *data)
{
    r->delay.data = data;
    uv_close((uv_handle_t *)&r->delay, close_cb);
}
