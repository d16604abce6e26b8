/*
 * directory.c — who lives here: domains, users, aliases, and the resolution
 * of a recipient address to the users whose maildrops get the message.
 *
 * Local parts are kept folded to lower case: kotak treats Alice@ and alice@
 * as one mailbox, as users expect and as most mail systems do (RFC 5321 2.4
 * leaves the case of a local part to the host that owns it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "util.h"

/* The folded local part of a, into out[ADDR_LOCAL_MAX + 1]. */
static void fold_local(const struct addr *a, char *out)
{
    memcpy(out, a->local, strlen(a->local) + 1);
    addr_lower(out);
}

/* --- domains ------------------------------------------------------------ */

int store_domain_add(struct store *s, const char *domain)
{
    return store_domain_add_quota(s, domain, 0);
}

/* Runs stmt with ?1 = domain, ?2 = quota. */
static int domain_quota_stmt(struct store *s, enum store_stmt stmt, const char *domain,
                             uint64_t quota)
{
    sqlite3_stmt *st = store__stmt(s, stmt);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)quota);
    return store__step_done(s, st);
}

int store_domain_add_quota(struct store *s, const char *domain, uint64_t quota)
{
    return domain_quota_stmt(s, STMT_DOMAIN_ADD, domain, quota);
}

int store_domain_exists(struct store *s, const char *domain)
{
    int64_t id;
    return store__domain_id(s, domain, &id);
}

/* 1 when the domain has a user or an alias, 0 when not. */
static int domain_in_use(struct store *s, int64_t id)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT EXISTS(SELECT 1 FROM users WHERE domain_id = ?1)"
                                " OR EXISTS(SELECT 1 FROM aliases WHERE domain_id = ?1)",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store__rc(s, rc);
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    int used = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : store__rc(s, rc);
    sqlite3_finalize(st);
    return used;
}

int store_domain_del(struct store *s, const char *domain)
{
    int64_t id;
    int rc = store__begin(s);
    if (rc < 0)
        return rc;
    if ((rc = store__domain_id(s, domain, &id)) <= 0) {
        rc = rc == 0 ? -ENOENT : rc;
        goto fail;
    }
    if ((rc = domain_in_use(s, id)) != 0) {
        rc = rc > 0 ? -ENOTEMPTY : rc;
        goto fail;
    }
    sqlite3_stmt *st = store__stmt(s, STMT_DOMAIN_DEL);
    if (st == NULL) {
        rc = -KOTAK_ESTORE;
        goto fail;
    }
    sqlite3_bind_int64(st, 1, id);
    if ((rc = store__step_done(s, st)) < 0)
        goto fail;
    return store__commit(s);
fail:
    store__rollback(s);
    return rc;
}

int store_domain_list(struct store *s, int (*cb)(void *ctx, const struct store_domain *d),
                      void *ctx)
{
    sqlite3_stmt *st = store__stmt(s, STMT_DOMAIN_LIST);
    if (st == NULL)
        return -KOTAK_ESTORE;
    int rc, ret = 0;
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_domain d = {
            .name = (const char *)sqlite3_column_text(st, 0),
            .users = sqlite3_column_int64(st, 1),
            .aliases = sqlite3_column_int64(st, 2),
            .quota = sqlite3_column_int64(st, 3),
        };
        ret = cb(ctx, &d);
    }
    sqlite3_reset(st);
    if (ret != 0)
        return ret;
    return rc == SQLITE_DONE ? 0 : store__rc(s, rc);
}

/* --- users -------------------------------------------------------------- */

/* 1 with id (and hash, if hash_r) of the user, 0 when none, or a code. */
static int user_get(struct store *s, int64_t domain_id, const char *local, int64_t *id_r,
                    char *hash_r)
{
    sqlite3_stmt *st = store__stmt(s, STMT_USER_GET);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, domain_id);
    sqlite3_bind_text(st, 2, local, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id_r = sqlite3_column_int64(st, 0);
        if (hash_r != NULL)
            snprintf(hash_r, AUTH_HASH_MAX, "%s", sqlite3_column_text(st, 1));
        sqlite3_reset(st);
        return 1;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : store__rc(s, rc);
}

static int alias_exists(struct store *s, int64_t domain_id, const char *local)
{
    sqlite3_stmt *st = store__stmt(s, STMT_ALIAS_EXISTS);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, domain_id);
    sqlite3_bind_text(st, 2, local, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : store__rc(s, rc);
}

/*
 * RFC 5321 4.5.1: postmaster@ of every local domain takes mail. Unless the
 * domain (id did) has a postmaster, user or alias, already, the user just
 * added, local@domain, becomes its target: so the first user of a domain.
 */
static int postmaster_default(struct store *s, int64_t did, const char *local, const char *domain)
{
    int64_t uid;
    int rc;
    if ((rc = user_get(s, did, "postmaster", &uid, NULL)) != 0 ||
        (rc = alias_exists(s, did, "postmaster")) != 0)
        return rc < 0 ? rc : 0;
    char target[ADDR_TEXT_SIZE];
    snprintf(target, sizeof(target), "%s@%s", local, domain);
    sqlite3_stmt *st = store__stmt(s, STMT_ALIAS_ADD);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, did);
    sqlite3_bind_text(st, 2, "postmaster", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, target, -1, SQLITE_STATIC);
    return store__step_done(s, st);
}

int store_user_add(struct store *s, const struct addr *a, const char *hash)
{
    return store_user_add_quota(s, a, hash, 0);
}

int store_user_add_quota(struct store *s, const struct addr *a, const char *hash,
                         uint64_t quota)
{
    char local[ADDR_LOCAL_MAX + 1];
    int64_t did = 0, uid = 0;
    fold_local(a, local);
    int rc = store__begin(s);
    if (rc < 0)
        return rc;
    if ((rc = store__domain_id(s, a->domain, &did)) <= 0) {
        rc = rc == 0 ? -KOTAK_ENODOMAIN : rc;
        goto fail;
    }
    if ((rc = user_get(s, did, local, &uid, NULL)) != 0 ||
        (rc = alias_exists(s, did, local)) != 0) {
        rc = rc > 0 ? -EEXIST : rc;
        goto fail;
    }
    sqlite3_stmt *st = store__stmt(s, STMT_USER_ADD);
    if (st == NULL) {
        rc = -KOTAK_ESTORE;
        goto fail;
    }
    sqlite3_bind_int64(st, 1, did);
    sqlite3_bind_text(st, 2, local, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (int64_t)quota);
    if ((rc = store__step_done(s, st)) < 0 ||
        (rc = postmaster_default(s, did, local, a->domain)) < 0)
        goto fail;
    return store__commit(s);
fail:
    store__rollback(s);
    return rc;
}

/* Finds the user of a inside an open transaction: 1, 0 or a code. */
static int user_find(struct store *s, const struct addr *a, int64_t *id_r, char *hash_r)
{
    char local[ADDR_LOCAL_MAX + 1];
    int64_t did;
    fold_local(a, local);
    int rc = store__domain_id(s, a->domain, &did);
    if (rc <= 0)
        return rc;
    return user_get(s, did, local, id_r, hash_r);
}

/*
 * Runs stmt with ?1 = id (when id > 0) and the next parameter = text (when
 * given), else = *num (when given).
 */
static int exec_stmt(struct store *s, enum store_stmt id_stmt, int64_t id, const char *text,
                     const int64_t *num)
{
    sqlite3_stmt *st = store__stmt(s, id_stmt);
    if (st == NULL)
        return -KOTAK_ESTORE;
    int i = 1;
    if (id > 0)
        sqlite3_bind_int64(st, i++, id);
    if (text != NULL)
        sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
    else if (num != NULL)
        sqlite3_bind_int64(st, i, *num);
    return store__step_done(s, st);
}

static void addr_text(const struct addr *a, char *out);

/*
 * The user a names, in a write transaction: then changes it with stmt
 * (?1 = the user's id, ?2 = text, or *num). For user_del, also drops the
 * alias targets that named the user, which would now lead nowhere.
 */
static int user_change(struct store *s, const struct addr *a, enum store_stmt stmt,
                       const char *text, const int64_t *num)
{
    int64_t uid = 0;
    char name[ADDR_TEXT_SIZE];
    int rc = store__begin(s);
    if (rc < 0)
        return rc;
    if ((rc = user_find(s, a, &uid, NULL)) <= 0) {
        rc = rc == 0 ? -ENOENT : rc;
        goto fail;
    }
    if ((rc = exec_stmt(s, stmt, uid, text, num)) < 0)
        goto fail;
    if (stmt == STMT_USER_DEL) {
        addr_text(a, name);
        if ((rc = exec_stmt(s, STMT_ALIAS_DEL_TARGET, 0, name, NULL)) < 0)
            goto fail;
    }
    return store__commit(s);
fail:
    store__rollback(s);
    return rc;
}

int store_user_passwd(struct store *s, const struct addr *a, const char *hash)
{
    return user_change(s, a, STMT_USER_PASSWD, hash, NULL);
}

int store_user_set_quota(struct store *s, const struct addr *a, uint64_t quota)
{
    int64_t q = (int64_t)quota;
    return user_change(s, a, STMT_QUOTA_USER_SET, NULL, &q);
}

int store_domain_set_quota(struct store *s, const char *domain, uint64_t quota)
{
    int rc = domain_quota_stmt(s, STMT_QUOTA_DOMAIN_SET, domain, quota);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        rc = -ENOENT;
    return rc;
}

int store_user_del(struct store *s, const struct addr *a)
{
    return user_change(s, a, STMT_USER_DEL, NULL, NULL);
}

int store_user_lookup(struct store *s, const struct addr *a, struct store_user *u_r)
{
    memset(u_r, 0, sizeof(*u_r));
    int rc = user_find(s, a, &u_r->id, u_r->hash);
    if (rc == 1) {
        char local[ADDR_LOCAL_MAX + 1];
        fold_local(a, local);
        snprintf(u_r->address, sizeof(u_r->address), "%s@%s", local, a->domain);
    }
    return rc;
}

int store_user_by_login(struct store *s, const char *login, struct store_user *u_r)
{
    struct addr a;
    memset(u_r, 0, sizeof(*u_r));
    if (addr_parse(login, strlen(login), ADDR_UTF8, &a) < 0)
        return 0;
    return store_user_lookup(s, &a, u_r);
}

int store_user_list(struct store *s, const char *domain,
                    int (*cb)(void *ctx, const struct store_user *u), void *ctx)
{
    sqlite3_stmt *st = store__stmt(s, domain ? STMT_USER_LIST_DOMAIN : STMT_USER_LIST);
    if (st == NULL)
        return -KOTAK_ESTORE;
    if (domain != NULL)
        sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    int rc, ret = 0;
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_user u = {
            .id = sqlite3_column_int64(st, 0),
            .messages = sqlite3_column_int64(st, 3),
            .bytes = sqlite3_column_int64(st, 4),
            .quota = sqlite3_column_int64(st, 5),
        };
        snprintf(u.address, sizeof(u.address), "%s", sqlite3_column_text(st, 1));
        snprintf(u.hash, sizeof(u.hash), "%s", sqlite3_column_text(st, 2));
        ret = cb(ctx, &u);
    }
    sqlite3_reset(st);
    if (ret != 0)
        return ret;
    return rc == SQLITE_DONE ? 0 : store__rc(s, rc);
}

/* --- aliases ------------------------------------------------------------ */

/* "local@domain" of a, folded, into out[ADDR_TEXT_SIZE]. */
static void addr_text(const struct addr *a, char *out)
{
    char local[ADDR_LOCAL_MAX + 1];
    fold_local(a, local);
    snprintf(out, ADDR_TEXT_SIZE, "%s@%s", local, a->domain);
}

/* A target in a local domain must lead somewhere: 0, -ENOENT or a code. */
static int target_check(struct store *s, const struct addr *t)
{
    char local[ADDR_LOCAL_MAX + 1];
    int64_t did = 0, uid = 0;
    int rc = store__domain_id(s, t->domain, &did);
    if (rc <= 0)
        return rc; /* a remote target: fine */
    fold_local(t, local);
    if ((rc = user_get(s, did, local, &uid, NULL)) != 0 || (rc = alias_exists(s, did, local)) != 0)
        return rc > 0 ? 0 : rc;
    return -ENOENT;
}

int store_alias_add(struct store *s, const struct addr *source, const struct addr *targets,
                    size_t n)
{
    char local[ADDR_LOCAL_MAX + 1], target[ADDR_TEXT_SIZE];
    int64_t did = 0, uid = 0;
    fold_local(source, local);
    int rc = store__begin(s);
    if (rc < 0)
        return rc;
    if ((rc = store__domain_id(s, source->domain, &did)) <= 0) {
        rc = rc == 0 ? -KOTAK_ENODOMAIN : rc;
        goto fail;
    }
    if ((rc = user_get(s, did, local, &uid, NULL)) != 0) {
        rc = rc > 0 ? -EEXIST : rc;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = target_check(s, &targets[i])) < 0)
            goto fail;
        sqlite3_stmt *st = store__stmt(s, STMT_ALIAS_ADD);
        if (st == NULL) {
            rc = -KOTAK_ESTORE;
            goto fail;
        }
        addr_text(&targets[i], target);
        sqlite3_bind_int64(st, 1, did);
        sqlite3_bind_text(st, 2, local, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, target, -1, SQLITE_STATIC);
        if ((rc = store__step_done(s, st)) < 0)
            goto fail;
    }
    return store__commit(s);
fail:
    store__rollback(s);
    return rc;
}

int store_alias_del(struct store *s, const struct addr *source, const struct addr *target)
{
    char local[ADDR_LOCAL_MAX + 1], text[ADDR_TEXT_SIZE];
    int64_t did;
    fold_local(source, local);
    int rc = store__begin(s);
    if (rc < 0)
        return rc;
    if ((rc = store__domain_id(s, source->domain, &did)) <= 0) {
        rc = rc == 0 ? -ENOENT : rc;
        goto fail;
    }
    sqlite3_stmt *st = store__stmt(s, target ? STMT_ALIAS_DEL_ONE : STMT_ALIAS_DEL_ALL);
    if (st == NULL) {
        rc = -KOTAK_ESTORE;
        goto fail;
    }
    sqlite3_bind_int64(st, 1, did);
    sqlite3_bind_text(st, 2, local, -1, SQLITE_STATIC);
    if (target != NULL) {
        addr_text(target, text);
        sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
    }
    if ((rc = store__step_done(s, st)) < 0)
        goto fail;
    if (sqlite3_changes(s->db) == 0) {
        rc = -ENOENT;
        goto fail;
    }
    return store__commit(s);
fail:
    store__rollback(s);
    return rc;
}

int store_alias_list(struct store *s, int (*cb)(void *ctx, const char *source, const char *target),
                     void *ctx)
{
    sqlite3_stmt *st = store__stmt(s, STMT_ALIAS_LIST);
    if (st == NULL)
        return -KOTAK_ESTORE;
    int rc, ret = 0;
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
        ret = cb(ctx, (const char *)sqlite3_column_text(st, 0),
                 (const char *)sqlite3_column_text(st, 1));
    sqlite3_reset(st);
    if (ret != 0)
        return ret;
    return rc == SQLITE_DONE ? 0 : store__rc(s, rc);
}

/* --- recipients --------------------------------------------------------- */

static void rcpts_add(struct store_rcpts *r, int64_t uid)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->user_ids[i] == uid)
            return;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4;
        r->user_ids = xrealloc(r->user_ids, r->cap * sizeof(r->user_ids[0]));
    }
    r->user_ids[r->n++] = uid;
}

void store_rcpts_free(struct store_rcpts *r)
{
    for (size_t i = 0; i < r->n_remote; i++)
        free(r->remote[i]);
    free(r->remote);
    free(r->user_ids);
    memset(r, 0, sizeof(*r));
}

static int resolve(struct store *s, const char *local, const char *domain, int depth,
                   struct store_rcpts *r);

/* An alias target outside the local domains, once (the same address by two
 * paths is one copy): the local part exactly, the domain in any case. */
static void add_remote(struct store_rcpts *r, const char *address)
{
    for (size_t i = 0; i < r->n_remote; i++)
        if (addr_same_mailbox(r->remote[i], address))
            return;
    r->remote = xrealloc(r->remote, (r->n_remote + 1) * sizeof(*r->remote));
    r->remote[r->n_remote++] = xstrdup(address);
}

/*
 * Expands the alias domain_id/local into r. The targets are read into
 * memory first, because resolving them reuses the same statement.
 */
static int expand_alias(struct store *s, int64_t did, const char *local, int depth,
                        struct store_rcpts *r)
{
    sqlite3_stmt *st = store__stmt(s, STMT_ALIAS_TARGETS);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, did);
    sqlite3_bind_text(st, 2, local, -1, SQLITE_STATIC);
    char **targets = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        targets = xrealloc(targets, (n + 1) * sizeof(*targets));
        targets[n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_reset(st);
    rc = rc == SQLITE_DONE ? (n > 0) : store__rc(s, rc);
    for (size_t i = 0; i < n; i++) {
        if (rc > 0) {
            const char *at = strrchr(targets[i], '@');
            char tlocal[ADDR_LOCAL_MAX + 1];
            size_t len = at ? (size_t)(at - targets[i]) : 0;
            if (at != NULL && len <= ADDR_LOCAL_MAX) {
                memcpy(tlocal, targets[i], len);
                tlocal[len] = '\0';
                int trc = resolve(s, tlocal, at + 1, depth + 1, r);
                if (trc == -KOTAK_ENODOMAIN)
                    add_remote(r, targets[i]);
                else if (trc < 0)
                    rc = trc;
            }
        }
        free(targets[i]);
    }
    free(targets);
    return rc;
}

static int resolve(struct store *s, const char *local, const char *domain, int depth,
                   struct store_rcpts *r)
{
    int64_t did = 0, uid = 0;
    if (depth > STORE_EXPAND_DEPTH)
        return 1; /* an alias loop: what was found on the way is kept */
    int rc = store__domain_id(s, domain, &did);
    if (rc <= 0)
        return rc == 0 ? -KOTAK_ENODOMAIN : rc;
    char base[ADDR_LOCAL_MAX + 1];
    snprintf(base, sizeof(base), "%s", local);
    addr_lower(base);
    /* First the address as given, then without its +tag. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            size_t n = addr_local_base_len(base);
            if (base[n] == '\0')
                break;
            base[n] = '\0';
        }
        if ((rc = user_get(s, did, base, &uid, NULL)) != 0) {
            if (rc > 0)
                rcpts_add(r, uid);
            return rc;
        }
        if ((rc = expand_alias(s, did, base, depth, r)) != 0)
            return rc;
    }
    /* The catch-all takes only what no user or alias took. */
    return expand_alias(s, did, "", depth, r);
}

/* A local part with no domain ("Postmaster", RFC 5321 4.5.1): the first
 * local domain's; 0 when there is no domain at all. */
static int resolve_bare(struct store *s, const char *local, struct store_rcpts *r)
{
    char domain[ADDR_DOMAIN_MAX + 1];
    sqlite3_stmt *st = store__stmt(s, STMT_DOMAIN_FIRST);
    if (st == NULL)
        return -KOTAK_ESTORE;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        snprintf(domain, sizeof(domain), "%s", sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : store__rc(s, rc);
    return resolve(s, local, domain, 0, r);
}

int store_resolve(struct store *s, const struct addr *rcpt, struct store_rcpts *r)
{
    /* All the look-ups in one read transaction: one snapshot of the
     * directory, and one round of WAL locks instead of one per statement. */
    bool own = sqlite3_get_autocommit(s->db) != 0;
    int rc = own ? store__run(s, STMT_READ_BEGIN) : 0;
    if (rc < 0)
        return rc;
    rc = rcpt->domain[0] != '\0' ? resolve(s, rcpt->local, rcpt->domain, 0, r)
                                 : resolve_bare(s, rcpt->local, r);
    if (own) {
        int erc = store__run(s, STMT_COMMIT);
        if (rc >= 0 && erc < 0)
            rc = erc;
    }
    return rc;
}
