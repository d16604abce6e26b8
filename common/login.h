/*
 * login.h — checking a password off the event loop, the same way in both
 * daemons: the crypt(3) work runs in libuv's thread pool, every failure is
 * answered only after a delay that blocks nobody else, and an unknown user
 * costs exactly what a wrong password costs, so neither the reply nor its
 * timing tells them apart.
 *
 * Failures are counted in a table both daemons map from data_dir
 * (throttle.h), against the (user, address) pair, which max_failures locks
 * out, and against the address alone, which the much higher
 * address_max_failures locks out for every user, against spraying. An
 * address is an IPv4 address or an IPv6 /64. A success clears its own pair
 * only, so one user's good logins never hide another's guesses.
 */
#ifndef KOTAK_LOGIN_H
#define KOTAK_LOGIN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "auth.h"
#include "conf.h"
#include "throttle.h"

struct login;

/* One check at a time, embedded in a connection's struct. */
struct login_req {
    uv_work_t work;
    uv_timer_t delay;
    struct login *l;
    bool busy;          /* a check or its delay is under way */
    bool ok;
    int rc;
    int64_t user_id;
    struct throttle_key pair, addr; /* what this check's failure counts against */
    char hash[AUTH_HASH_MAX];
    char password[256];
    uint8_t mac[32];    /* for the login cache, set by a check that passed */
    struct login_req *next_checking; /* in the login's list of checks under way */
    /* Called on the loop: 1 logged in, 0 refused, -EAGAIN locked out. */
    void (*done)(struct login_req *r, int rc, int64_t user_id);
};

/*
 * Per daemon. Makes the stand-in hash for unknown users and maps the
 * failure table data_dir/login-failures (made 0600 if absent). NULL on
 * failure, with a sentence in err.
 */
struct login *login_new(uv_loop_t *loop, const struct conf_auth *cfg, const char *data_dir,
                        char *err, size_t err_size);
void login_free(struct login **l);

/* Prepares r (its timer is a libuv handle) for checks that call done. */
void login_req_init(struct login *l, struct login_req *r,
                    void (*done)(struct login_req *r, int rc, int64_t user_id));

/*
 * Starts a check of password against hash for the client at ip who gave the
 * login name user; hash NULL means there is no such user. r must not be
 * busy. done follows, always asynchronously.
 */
void login_check(struct login_req *r, const uint8_t ip[16], const char *user, const char *hash,
                 int64_t user_id, const char *password);

/*
 * Closes r's timer; close_cb runs once it is closed (free the containing
 * struct there). r must not be busy.
 */
void login_req_close(struct login_req *r, uv_close_cb close_cb, void *data);

#endif
