/*
 * maildrop.c — a user's messages as POP3 sees them: the list with sizes and
 * UIDLs, a body read in pieces, and the removal of marked entries.
 *
 * A UIDL is the store's random prefix and the maildrop entry's id. The id
 * comes from AUTOINCREMENT, so it is never handed out twice, and the prefix
 * keeps a store made anew from repeating the UIDLs of the old one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "util.h"

int store_mbox_list(struct store *s, int64_t user_id, struct store_mail **list_r, size_t *n_r)
{
    *list_r = NULL;
    *n_r = 0;
    sqlite3_stmt *st = store__stmt(s, STMT_MBOX_LIST);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, user_id);
    struct store_mail *list = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            list = xrealloc(list, cap * sizeof(*list));
        }
        struct store_mail *e = &list[n++];
        e->id = sqlite3_column_int64(st, 0);
        e->message_id = sqlite3_column_int64(st, 1);
        e->size = sqlite3_column_int64(st, 2);
        e->arrived = sqlite3_column_int64(st, 3);
        /* A UIDL kept from the server the message came from (kotak import), else our own. */
        const unsigned char *kept = sqlite3_column_text(st, 4);
        if (kept != NULL)
            snprintf(e->uidl, sizeof(e->uidl), "%s", (const char *)kept);
        else
            snprintf(e->uidl, sizeof(e->uidl), "%s.%lld", s->uidl_prefix, (long long)e->id);
        /* Where RETR supplies the empty line that ends the header section;
         * only when the entry's size counts it, so that a row written
         * without it is served as stored rather than cut short. */
        int64_t eoh = sqlite3_column_int64(st, 5), stored = sqlite3_column_int64(st, 6);
        e->eoh_missing = sqlite3_column_type(st, 5) != SQLITE_NULL && eoh >= 0 && eoh <= stored &&
                         e->size == stored + 2;
        e->eoh_at = e->eoh_missing ? eoh : 0;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        free(list);
        return store__rc(s, rc);
    }
    *list_r = list;
    *n_r = n;
    return 0;
}

/* Copies what the piece data[0..len) holds past *skip into out, up to n in all. */
static void take(const uint8_t *data, size_t len, size_t *skip, uint8_t *out, size_t n, size_t *got)
{
    if (*skip >= len) {
        *skip -= len;
        return;
    }
    size_t k = len - *skip;
    if (k > n - *got)
        k = n - *got;
    memcpy(out + *got, data + *skip, k);
    *got += k;
    *skip = 0;
}

int store_mbox_read(struct store *s, int64_t message_id, int64_t offset, void *p, size_t n,
                    size_t *got_r)
{
    *got_r = 0;
    if (offset < 0)
        return -EINVAL;
    /* Every piece but the last is STORE_CHUNK long, so the offset names the
     * piece to start from without reading the ones before it. */
    int64_t seq = offset / STORE_CHUNK;
    size_t skip = (size_t)(offset % STORE_CHUNK);
    uint8_t *out = p;
    size_t got = 0;
    int rc = SQLITE_DONE;
    if (seq == 0) {
        /* Piece 0 is the head in the messages row, unless the body is older
         * than heads: then it is chunk 0 like the rest. */
        sqlite3_stmt *st = store__stmt(s, STMT_HEAD_READ);
        if (st == NULL)
            return -KOTAK_ESTORE;
        sqlite3_bind_int64(st, 1, message_id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
            size_t len = (size_t)sqlite3_column_bytes(st, 0);
            take(sqlite3_column_blob(st, 0), len, &skip, out, n, &got);
            sqlite3_reset(st);
            seq = 1;
            if (len < STORE_CHUNK || got == n) { /* a short head is the whole body */
                *got_r = got;
                return 0;
            }
        } else {
            sqlite3_reset(st);
            if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                return store__rc(s, rc);
        }
    }
    sqlite3_stmt *st = store__stmt(s, STMT_CHUNK_READ);
    if (st == NULL)
        return -KOTAK_ESTORE;
    sqlite3_bind_int64(st, 1, message_id);
    sqlite3_bind_int64(st, 2, seq);
    while (got < n && (rc = sqlite3_step(st)) == SQLITE_ROW)
        take(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), &skip, out, n, &got);
    if (got < n && rc != SQLITE_DONE) {
        sqlite3_reset(st);
        return store__rc(s, rc);
    }
    sqlite3_reset(st);
    *got_r = got;
    return 0;
}

int store_mbox_delete(struct store *s, int64_t user_id, const int64_t *ids, size_t n)
{
    int rc = store__begin(s);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = store__stmt(s, STMT_MBOX_DELETE);
        if (st == NULL) {
            store__rollback(s);
            return -KOTAK_ESTORE;
        }
        sqlite3_bind_int64(st, 1, ids[i]);
        sqlite3_bind_int64(st, 2, user_id);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            store__rollback(s);
            return store__rc(s, rc);
        }
    }
    return store__commit(s);
}
