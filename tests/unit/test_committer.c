/*
 * test_committer.c — the store thread: messages handed over in a burst are
 * committed in batches, results come back in order, and a message that
 * fails inside a batch fails alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "committer.h"
#include "tap.h"
#include "util.h"

#define JOBS 41
#define BAD 20 /* the job whose spool cannot be read */
#define EDITED 1 /* the job stored with an insert and skips */

struct result {
    int rc;
    int64_t message_id;
    int order; /* when its done came, 0-based */
};

static struct result results[JOBS];
static int n_done;

static void done(struct commit_job *job, void *ctx)
{
    (void)ctx;
    struct result *r = job->owner;
    r->rc = job->rc;
    r->message_id = job->message_id;
    r->order = n_done++;
    commit_job_free(job);
}

static void watchdog(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static struct commit_job *job_for(const char *dir, int64_t user, int i)
{
    struct commit_job *job = xcalloc(1, sizeof(*job));
    /* 64 octets in memory, the rest in a file, as a larger message would be. */
    spool_init(&job->spool, 64, dir);
    char line[80];
    for (int k = 0; k < 4; k++) {
        int n = snprintf(line, sizeof(line), "Message %d, line %d of a body in a file\r\n", i, k);
        spool_write(&job->spool, line, (size_t)n);
    }
    if (i == BAD) {
        /* Reading the file part fails: its descriptor is write-only. */
        close(job->spool.fd);
        job->spool.fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    }
    job->user_ids = xmalloc(sizeof(int64_t));
    job->user_ids[0] = user;
    job->n_users = 1;
    job->received = 1000 + i;
    job->owner = &results[i];
    if (i == EDITED) {
        /* Fields put in after the first line, and two ranges left out:
         * "Message 1, " of line 1 and "line 2 of " of line 2. */
        job->insert = xstrdup("X-Added: yes\r\n");
        job->insert_len = strlen(job->insert);
        job->insert_at = 39; /* the end of line 0 */
        job->skips = xcalloc(2, sizeof(*job->skips));
        job->skips[0] = (struct commit_skip){39, 11};
        job->skips[1] = (struct commit_skip){78 + 11, 10};
        job->n_skips = 2;
    }
    return job;
}

int main(void)
{
    char dir[] = "/tmp/kotak-test-committer-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    char path[512], err[256];
    snprintf(path, sizeof(path), "%s/kotak.db", dir);
    struct store *w, *ck, *r;
    if (store_open(path, STORE_CREATE, &w, err, sizeof(err)) < 0 ||
        store_open(path, 0, &ck, err, sizeof(err)) < 0 ||
        store_open(path, 0, &r, err, sizeof(err)) < 0) {
        printf("Bail out! %s\n", err);
        return 1;
    }
    struct addr a;
    addr_parse("alice@example.test", strlen("alice@example.test"), 0, &a);
    store_domain_add(w, "example.test");
    store_user_add(w, &a, "$y$x");
    struct store_user u;
    store_user_lookup(w, &a, &u);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct committer *c = committer_start(&loop, w, ck, done, NULL);
    ok(c != NULL, "the store thread starts");
    if (c == NULL)
        return done_testing();

    /* A burst: while the first message commits, the rest queue up as batches. */
    for (int i = 0; i < JOBS; i++)
        committer_submit(c, job_for(dir, u.id, i));
    is_int((int)committer_in_flight(c), JOBS, "all in flight");

    uv_timer_t dog;
    uv_timer_init(&loop, &dog);
    uv_timer_start(&dog, watchdog, 20000, 0);
    while (n_done < JOBS && uv_run(&loop, UV_RUN_ONCE) != 0 && uv_is_active((uv_handle_t *)&dog))
        ;
    is_int(n_done, JOBS, "every job came back");
    is_int((int)committer_in_flight(c), 0, "none in flight");

    is_int(results[BAD].rc, -EBADF, "the unreadable message fails with its own error");
    int good = 0, in_order = 0;
    for (int i = 0; i < JOBS; i++) {
        if (i != BAD)
            good += results[i].rc == 0 && results[i].message_id > 0;
        in_order += results[i].order == i;
    }
    is_int(good, JOBS - 1, "every other message is stored, in its batch or after it");
    is_int(in_order, JOBS, "results come back in the order the messages went in");

    struct store_stats st;
    store_stats(r, &st);
    is_int((int)st.entries, JOBS - 1, "the store holds exactly the stored ones");
    struct store_mail *list;
    size_t n;
    store_mbox_list(r, u.id, &list, &n);
    int arrived_right = 0;
    for (size_t k = 0; k < n; k++)
        arrived_right += list[k].arrived != 1000 + BAD;
    is_int(arrived_right, JOBS - 1, "none of them is the unreadable one");
    free(list);

    char stored[512] = "";
    size_t got = 0;
    store_mbox_read(r, results[EDITED].message_id, 0, stored, sizeof(stored) - 1, &got);
    is_str(stored,
           "Message 1, line 0 of a body in a file\r\nX-Added: yes\r\nline 1 of a body in a file\r\n"
           "Message 1, a body in a file\r\nMessage 1, line 3 of a body in a file\r\n",
           "the stored copy has the insert after the first line and the skips left out");
    struct store_mail *mine;
    size_t n_mine;
    store_mbox_list(r, u.id, &mine, &n_mine);
    int64_t size_edited = -1;
    for (size_t k = 0; k < n_mine; k++)
        if (mine[k].arrived == 1000 + EDITED)
            size_edited = mine[k].size;
    free(mine);
    /* Its first line is no header field: RETR supplies the empty line that
     * ends the (empty) header section before it, and the size counts it. */
    is_int((int)size_edited, (int)got + 2, "its size is that of the stored copy and a CRLF");

    committer_stop(c);
    uv_close((uv_handle_t *)&dog, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(uv_loop_close(&loop), 0, "every handle closed");
    store_close(&r);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
