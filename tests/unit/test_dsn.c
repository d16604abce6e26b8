/*
 * test_dsn.c — delivery status notifications (smtpd/dsn.c).
 *
 * Every report built here is read back by an independent parser:
 * tests/unit/check_dsn.py, run under Python with the standard library's
 * email package (meson passes its path and the interpreter's in DSN_CHECKER
 * and DSN_PYTHON). The checker prints "key=value" lines (--flat) describing
 * the report: its headers, the parts, the delivery-status fields of each
 * recipient unfolded, the third part; and, with --third, writes the third
 * part's body to a file, so that a returned original can be compared octet
 * for octet. The rules the runner calls (never bounce <>, NOTIFY, RET,
 * xtext) are checked here directly.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "addr.h"
#include "buf.h"
#include "dsn.h"
#include "headers.h"
#include "tap.h"

extern char **environ;

#define T0 ((time_t)1700000000) /* Tue, 14 Nov 2023 22:13:20 +0000 */
#define T0_TEXT "Tue, 14 Nov 2023 22:13:20 +0000"

static const char *python, *checker, *tmpdir;

/* --- running the checker ------------------------------------------------ */

static void read_file(const char *path, struct buf *b)
{
    buf_reset(b);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(b, chunk, n);
    fclose(f);
}

/*
 * Writes the report to a file, runs the checker on it and returns its flat
 * output (NUL-terminated, to free), or NULL when it could not run. The third
 * part's body goes into third_r when not NULL.
 */
static char *run_checker(const struct buf *report, struct buf *third_r)
{
    char path[4096], third[4096 + 16];
    snprintf(path, sizeof(path), "%s/test-dsn-XXXXXX", tmpdir);
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    if (write(fd, report->data, report->len) != (ssize_t)report->len) {
        close(fd);
        unlink(path);
        return NULL;
    }
    close(fd);
    snprintf(third, sizeof(third), "%s.third", path);

    int pipefd[2];
    if (pipe(pipefd) != 0)
        return NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    posix_spawn_file_actions_addclose(&fa, pipefd[1]);
    char *argv[] = {(char *)python, (char *)checker, "--flat", "--third", third, path, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, python, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    struct buf out;
    buf_init(&out, 0);
    if (rc == 0) {
        char chunk[8192];
        ssize_t n;
        while ((n = read(pipefd[0], chunk, sizeof(chunk))) > 0)
            buf_append(&out, chunk, (size_t)n);
    }
    close(pipefd[0]);
    int status = 0;
    if (rc == 0)
        waitpid(pid, &status, 0);
    if (third_r != NULL)
        read_file(third, third_r);
    unlink(third);
    unlink(path);
    if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        buf_free(&out);
        return NULL;
    }
    buf_append(&out, "", 1);
    return (char *)out.data;
}

/*
 * The value of key in the checker's flat output, or NULL. The result lives
 * in one of a few static slots, so that one check can compare two.
 */
static const char *get(const char *flat, const char *key)
{
    static char slots[4][1 << 17];
    static int next;
    size_t klen = strlen(key);
    for (const char *p = flat; p != NULL && *p;) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (n > klen && memcmp(p, key, klen) == 0 && p[klen] == '=') {
            char *slot = slots[next++ % 4];
            size_t vlen = n - klen - 1;
            if (vlen >= sizeof(slots[0]))
                vlen = sizeof(slots[0]) - 1;
            memcpy(slot, p + klen + 1, vlen);
            slot[vlen] = '\0';
            return slot;
        }
        p = eol ? eol + 1 : NULL;
    }
    return NULL;
}

static bool has(const char *flat, const char *key, const char *needle)
{
    const char *v = get(flat, key);
    return v != NULL && strstr(v, needle) != NULL;
}

#define HEADER_NAMES "From,To,Subject,Date,Message-ID,Auto-Submitted,MIME-Version,Content-Type"

/* What every report must be, whatever it says. */
static void check_shape(const char *flat, const char *name, int nparts)
{
    is_str(get(flat, "content_type"), "multipart/report", "%s: multipart/report", name);
    is_str(get(flat, "report_type"), "delivery-status", "%s: report-type", name);
    const char *names = get(flat, "header_names");
    ok(names != NULL && (strcmp(names, HEADER_NAMES) == 0 ||
                         strcmp(names, HEADER_NAMES ",Content-Transfer-Encoding") == 0),
       "%s: exactly the expected headers: %s", name, names ? names : "(none)");
    is_str(get(flat, "header.from"), "Mail Delivery System <MAILER-DAEMON@mail.a.test>", "%s: From",
           name);
    is_str(get(flat, "header.auto-submitted"), "auto-replied", "%s: Auto-Submitted", name);
    is_str(get(flat, "header.mime-version"), "1.0", "%s: MIME-Version", name);
    is_str(get(flat, "defects.count"), "0", "%s: no defect found by the email package", name);
    char want[8];
    snprintf(want, sizeof(want), "%d", nparts);
    is_str(get(flat, "nparts"), want, "%s: %d parts", name, nparts);
    is_str(get(flat, "email_nparts"), want, "%s: %d parts to the email package too", name, nparts);
    snprintf(want, sizeof(want), "%d", nparts + 1);
    is_str(get(flat, "delimiters"), want, "%s: one delimiter per part and a close", name);
    is_str(get(flat, "closed"), "true", "%s: closed", name);
    is_str(get(flat, "raw.bare_lf"), "0", "%s: no bare LF", name);
    is_str(get(flat, "raw.bare_cr"), "0", "%s: no bare CR", name);
    is_str(get(flat, "raw.lines_over_998"), "0", "%s: no line over 998 octets", name);
    is_str(get(flat, "raw.ends_crlf"), "true", "%s: ends with CRLF", name);
    is_str(get(flat, "parts.0.type"), "text/plain", "%s: text/plain first", name);
}

/* No control character but tabs and CRLF pairs anywhere in the report. */
static bool clean(const struct buf *b)
{
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = b->data[i];
        if (c == '\r' && i + 1 < b->len && b->data[i + 1] == '\n')
            continue;
        if (c == '\n' && i > 0 && b->data[i - 1] == '\r')
            continue;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static bool same(const struct buf *b, const char *want, size_t len)
{
    return b->len == len && memcmp(b->data, want, len) == 0;
}

/* --- the reports -------------------------------------------------------- */

static const char ORIG[] = "Received: from alice.a.test by mail.a.test; " T0_TEXT "\r\n"
                           "From: Alice <alice@a.test>\r\n"
                           "To: bob@b.test\r\n"
                           "Subject: Hello\r\n"
                           "Message-ID: <1@a.test>\r\n"
                           "\r\n"
                           "Hi Bob.\r\n";
#define ORIG_HEADERS_LEN 161 /* checked in main */

static const char REPLY_550[] = "550 5.1.1 <bob@b.test>: Recipient address rejected: User "
                                "unknown in virtual mailbox table\r\n";

static struct dsn_rcpt failed_rcpt(void)
{
    struct dsn_rcpt rc = {
        .final_rcpt = "bob@b.test",
        .action = DSN_ACTION_FAILED,
        .status = "5.1.1",
        .remote_mta = "mx.b.test",
        .reply = REPLY_550,
        .reply_len = sizeof(REPLY_550) - 1,
        .last_attempt = T0 + 60,
    };
    return rc;
}

static void base(struct dsn_report *r, const struct dsn_rcpt *rcpts, size_t n)
{
    memset(r, 0, sizeof(*r));
    r->kind = DSN_KIND_FAILED;
    r->reporting_mta = "mail.a.test";
    r->message_id = "dsn.1@mail.a.test";
    r->sender = "alice@a.test";
    r->arrival = T0;
    r->date = T0 + 3600;
    r->ret = STORE_RET_DEFAULT;
    r->rcpts = rcpts;
    r->nrcpts = n;
    r->orig = ORIG;
    r->orig_len = sizeof(ORIG) - 1;
}

/*
 * Builds r, checks the build succeeded, and returns the checker's output
 * (to free) with the report in report_r and the third part in third_r.
 */
static char *build(const struct dsn_report *r, struct buf *report_r, struct buf *third_r,
                   unsigned *flags_r, const char *name)
{
    buf_init(report_r, DSN_REPORT_MAX(r->nrcpts));
    buf_init(third_r, 0);
    unsigned flags = 0;
    int rc = dsn_build(r, report_r, &flags);
    is_int(rc, 0, "%s: built", name);
    if (flags_r)
        *flags_r = flags;
    char *flat = rc == 0 ? run_checker(report_r, third_r) : NULL;
    ok(flat != NULL, "%s: the checker read it", name);
    if (flat == NULL)
        flat = strdup("");
    return flat;
}

static void done(char *flat, struct buf *report, struct buf *third)
{
    free(flat);
    buf_free(report);
    buf_free(third);
}

static void test_failed_550(void)
{
    struct dsn_rcpt rc = failed_rcpt();
    struct dsn_report r;
    base(&r, &rc, 1);
    struct buf report, third;
    unsigned flags;
    char *f = build(&r, &report, &third, &flags, "550");
    check_shape(f, "550", 3);
    is_str(get(f, "types"), "text/plain,message/delivery-status,text/rfc822-headers",
           "550: the three parts");
    is_str(get(f, "email_types"), "text/plain,message/delivery-status,text/rfc822-headers",
           "550: the email package sees the same parts");
    is_str(get(f, "header.to"), "alice@a.test", "550: To is the sender");
    is_str(get(f, "header.subject"), "Undelivered Mail Returned to Sender", "550: Subject");
    is_str(get(f, "header.date"), "Tue, 14 Nov 2023 23:13:20 +0000", "550: Date");
    is_str(get(f, "header.message-id"), "<dsn.1@mail.a.test>", "550: Message-ID");
    is_str(get(f, "parts.0.charset"), "us-ascii", "550: text in US-ASCII");
    is_str(get(f, "per_message.Reporting-MTA"), "dns; mail.a.test", "550: Reporting-MTA");
    is_str(get(f, "per_message.Arrival-Date"), T0_TEXT, "550: Arrival-Date");
    ok(get(f, "per_message.Original-Envelope-Id") == NULL, "550: no ENVID, no field");
    is_str(get(f, "nrecipients"), "1", "550: one recipient");
    is_str(get(f, "email_blocks"), "2", "550: the email package sees two field groups");
    is_str(get(f, "email_actions"), "failed", "550: and its action");
    is_str(get(f, "recipients.0.Final-Recipient"), "rfc822; bob@b.test", "550: Final-Recipient");
    ok(get(f, "recipients.0.Original-Recipient") == NULL, "550: no ORCPT, no field");
    is_str(get(f, "recipients.0.Action"), "failed", "550: Action");
    is_str(get(f, "recipients.0.Status"), "5.1.1", "550: Status");
    is_str(get(f, "recipients.0.Remote-MTA"), "dns; mx.b.test", "550: Remote-MTA");
    is_str(get(f, "recipients.0.Diagnostic-Code"),
           "smtp; 550 5.1.1 <bob@b.test>: Recipient address rejected: User unknown in virtual "
           "mailbox table",
           "550: Diagnostic-Code quotes the reply, unfolded");
    is_str(get(f, "recipients.0.Last-Attempt-Date"), "Tue, 14 Nov 2023 22:14:20 +0000",
           "550: Last-Attempt-Date");
    ok(get(f, "recipients.0.Will-Retry-Until") == NULL, "550: no Will-Retry-Until");
    ok(has(f, "human_flat",
           "<bob@b.test>: delivery failed, and the mail system will not try again."),
       "550: the text says what happened");
    ok(has(f, "human_flat",
           "The server mx.b.test answered: 550 5.1.1 <bob@b.test>: Recipient address "
           "rejected: User unknown in virtual mailbox table"),
       "550: the text quotes the server");
    ok(has(f, "human_flat", "What to do next:"), "550: and what to do");
    ok(has(f, "human_flat", "The headers of your message are attached."),
       "550: and what is attached");
    is_str(get(f, "third.kind"), "headers", "550: RET not given: headers only");
    ok(same(&third, ORIG, ORIG_HEADERS_LEN), "550: the original's header section, exactly");
    is_str(get(f, "third.subject"), "Hello", "550: readable as headers");
    is_int(flags, 0, "550: 7-bit, no flag");
    static const char from[] = "From: \"Mail Delivery System\" <MAILER-DAEMON@mail.a.test>\r\n";
    ok(report.len > sizeof(from) && memcmp(report.data, from, sizeof(from) - 1) == 0,
       "550: the From line as written");
    ok(clean(&report), "550: no control character");
    done(f, &report, &third);
}

static void test_mixed(void)
{
    static const char reply_250[] = "250 2.0.0 Ok: queued as 4F2A\r\n";
    struct dsn_rcpt rcpts[3] = {
        failed_rcpt(),
        {.final_rcpt = "carol@c.test",
         .action = DSN_ACTION_DELAYED,
         .status = "4.4.1",
         .reason = "No server for c.test answered: connection timed out.",
         .last_attempt = T0 + 1800,
         .retry_until = T0 + 5 * 86400},
        {.final_rcpt = "dave@d.test",
         .action = DSN_ACTION_DELIVERED,
         .status = "2.0.0",
         .remote_mta = "mx.d.test",
         .reply = reply_250,
         .reply_len = sizeof(reply_250) - 1},
    };
    struct dsn_report r;
    base(&r, rcpts, 3);
    struct buf report, third;
    char *f = build(&r, &report, &third, NULL, "mixed");
    check_shape(f, "mixed", 3);
    is_str(get(f, "nrecipients"), "3", "mixed: three groups");
    is_str(get(f, "email_actions"), "failed,delayed,delivered", "mixed: the email package agrees");
    is_str(get(f, "recipients.0.Action"), "failed", "mixed: first failed");
    is_str(get(f, "recipients.1.Action"), "delayed", "mixed: second delayed");
    is_str(get(f, "recipients.2.Action"), "delivered", "mixed: third delivered");
    is_str(get(f, "recipients.1.Final-Recipient"), "rfc822; carol@c.test", "mixed: carol");
    is_str(get(f, "recipients.1.Status"), "4.4.1", "mixed: carol's status");
    ok(get(f, "recipients.1.Remote-MTA") == NULL, "mixed: no server answered carol");
    is_str(get(f, "recipients.1.Diagnostic-Code"),
           "X-Kotak; No server for c.test answered: connection timed out.",
           "mixed: carol's reason as kotak's own diagnostic");
    is_str(get(f, "recipients.1.Will-Retry-Until"), "Sun, 19 Nov 2023 22:13:20 +0000",
           "mixed: carol's Will-Retry-Until");
    is_str(get(f, "recipients.2.Diagnostic-Code"), "smtp; 250 2.0.0 Ok: queued as 4F2A",
           "mixed: dave's server answered");
    ok(get(f, "recipients.2.Will-Retry-Until") == NULL, "mixed: not for the delivered");
    ok(has(f, "human_flat",
           "<carol@c.test>: not delivered yet. The mail system is still "
           "trying, and will until Sun, 19 Nov 2023 22:13:20 +0000."),
       "mixed: the text on carol");
    ok(has(f, "human_flat", "Reason: No server for c.test answered: connection timed out."),
       "mixed: and why");
    ok(has(f, "human_flat", "<dave@d.test>: delivered. (status 2.0.0)"), "mixed: dave");
    ok(has(f, "human_flat", "<bob@b.test>: delivery failed"), "mixed: bob");
    done(f, &report, &third);
}

static void test_delayed(void)
{
    static const char reply[] = "451 4.3.0 Try again later\r\n";
    struct dsn_rcpt rc = {.final_rcpt = "bob@b.test",
                          .action = DSN_ACTION_DELAYED,
                          .status = "4.3.0",
                          .remote_mta = "mx.b.test",
                          .reply = reply,
                          .reply_len = sizeof(reply) - 1,
                          .last_attempt = T0 + 4 * 3600,
                          .retry_until = T0 + 5 * 86400};
    struct dsn_report r;
    base(&r, &rc, 1);
    r.kind = DSN_KIND_DELAYED;
    r.ret = STORE_RET_FULL;
    struct buf report, third;
    unsigned flags;
    char *f = build(&r, &report, &third, &flags, "delayed");
    check_shape(f, "delayed", 3);
    is_str(get(f, "header.subject"), "Delayed Mail (still being retried)", "delayed: Subject");
    is_str(get(f, "recipients.0.Action"), "delayed", "delayed: Action");
    is_str(get(f, "recipients.0.Will-Retry-Until"), "Sun, 19 Nov 2023 22:13:20 +0000",
           "delayed: Will-Retry-Until");
    ok(has(f, "human_flat", "you do not need to send it again"), "delayed: reassures");
    is_str(get(f, "third.kind"), "headers", "delayed: RET=FULL, but only failures go back whole");
    ok(has(f, "human_flat", "a message goes back whole only with a report of failure"),
       "delayed: and says so");
    ok(flags & DSN_BUILD_HEADERS_ONLY, "delayed: flagged headers-only");
    done(f, &report, &third);
}

static void test_success(void)
{
    static const char reply[] = "250 2.0.0 Ok\r\n";
    struct dsn_rcpt rcpts[2] = {
        {.final_rcpt = "bob@b.test",
         .action = DSN_ACTION_DELIVERED,
         .status = "2.0.0",
         .remote_mta = "mx.b.test",
         .reply = reply,
         .reply_len = sizeof(reply) - 1},
        {.final_rcpt = "erin@e.test", .action = DSN_ACTION_RELAYED, .status = "2.0.0"},
    };
    struct dsn_report r;
    base(&r, rcpts, 2);
    r.kind = DSN_KIND_SUCCESS;
    struct buf report, third;
    char *f = build(&r, &report, &third, NULL, "success");
    check_shape(f, "success", 3);
    is_str(get(f, "header.subject"), "Successful Mail Delivery Report", "success: Subject");
    is_str(get(f, "email_actions"), "delivered,relayed", "success: actions");
    is_str(get(f, "parts.2.description"), "Delivered Message Headers", "success: third part");
    ok(has(f, "human_flat",
           "<erin@e.test>: passed on to a server that sends no delivery "
           "reports"),
       "success: relayed, explained");
    done(f, &report, &third);
}

static void test_orcpt_envid(void)
{
    struct dsn_rcpt rcpts[2] = {failed_rcpt(), failed_rcpt()};
    rcpts[0].orig_rcpt = "rfc822;Bob+Tag@B.test";
    rcpts[1].final_rcpt = "carol@b.test";
    struct dsn_report r;
    base(&r, rcpts, 2);
    r.envid = "QQ314159";
    struct buf report, third;
    char *f = build(&r, &report, &third, NULL, "orcpt");
    check_shape(f, "orcpt", 3);
    is_str(get(f, "per_message.Original-Envelope-Id"), "QQ314159", "envid: Original-Envelope-Id");
    is_str(get(f, "recipients.0.Original-Recipient"), "rfc822;Bob+Tag@B.test",
           "orcpt: Original-Recipient as given");
    is_str(get(f, "recipients.0.Final-Recipient"), "rfc822; bob@b.test", "orcpt: Final-Recipient");
    ok(get(f, "recipients.1.Original-Recipient") == NULL, "orcpt: none given, none written");
    is_str(get(f, "recipients.1.Final-Recipient"), "rfc822; carol@b.test", "orcpt: second");
    ok(has(f, "human_flat", "You addressed it to Bob+Tag@B.test."), "orcpt: in the text");
    done(f, &report, &third);

    /* The same address as the final one: not repeated in the text. */
    rcpts[0].orig_rcpt = "rfc822;BOB@b.test";
    f = build(&r, &report, &third, NULL, "orcpt same");
    is_str(get(f, "recipients.0.Original-Recipient"), "rfc822;BOB@b.test",
           "orcpt same: still in the field");
    ok(!has(f, "human_flat", "You addressed it to"), "orcpt same: not in the text");
    done(f, &report, &third);
}

static void test_full_small(void)
{
    struct dsn_rcpt rc = failed_rcpt();
    struct dsn_report r;
    base(&r, &rc, 1);
    r.ret = STORE_RET_FULL;
    struct buf report, third;
    unsigned flags;
    char *f = build(&r, &report, &third, &flags, "full");
    check_shape(f, "full", 3);
    is_str(get(f, "parts.2.type"), "message/rfc822", "full: message/rfc822");
    is_str(get(f, "email_types"), "text/plain,message/delivery-status,message/rfc822",
           "full: the email package agrees");
    is_str(get(f, "third.kind"), "message", "full: the whole message");
    ok(same(&third, ORIG, sizeof(ORIG) - 1), "full: octet for octet");
    is_str(get(f, "third.subject"), "Hello", "full: readable");
    ok(has(f, "human_flat", "Your message is attached."), "full: says so");
    is_int(flags, 0, "full: no flag");
    done(f, &report, &third);
}

/* A message of size octets: ORIG's headers, then lines of x. */
static char *big_message(size_t size)
{
    char *m = malloc(size);
    memcpy(m, ORIG, ORIG_HEADERS_LEN + 2);
    for (size_t i = ORIG_HEADERS_LEN + 2; i < size; i++)
        m[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : 'x';
    m[size - 2] = '\r';
    m[size - 1] = '\n';
    return m;
}

static void test_full_large(void)
{
    size_t size = 100 * 1024;
    char *m = big_message(size);
    struct dsn_rcpt rc = failed_rcpt();
    struct dsn_report r;
    base(&r, &rc, 1);
    r.ret = STORE_RET_FULL;
    r.orig = m;
    r.orig_len = size;
    struct buf report, third;
    unsigned flags;
    char *f = build(&r, &report, &third, &flags, "large");
    check_shape(f, "large", 3);
    is_str(get(f, "parts.2.type"), "text/rfc822-headers", "large: falls back to headers");
    ok(same(&third, ORIG, ORIG_HEADERS_LEN), "large: the header section");
    ok(has(f, "human_flat",
           "at 102400 octets it is larger than the 65536 this server returns, "
           "so only its headers are attached."),
       "large: says why");
    ok(flags & DSN_BUILD_HEADERS_ONLY, "large: flagged headers-only");
    ok(report.len < 16384, "large: the report stays small (%zu)", report.len);
    done(f, &report, &third);

    /* Only a prefix given, the size said: the same report. */
    r.orig_len = 4096;
    r.orig_size = size;
    f = build(&r, &report, &third, &flags, "large prefix");
    is_str(get(f, "parts.2.type"), "text/rfc822-headers", "large prefix: headers");
    ok(same(&third, ORIG, ORIG_HEADERS_LEN), "large prefix: the header section");
    ok(has(f, "human_flat", "at 102400 octets"), "large prefix: the whole size in the text");
    done(f, &report, &third);

    /* Exactly DSN_FULL_MAX goes back whole. */
    free(m);
    m = big_message(DSN_FULL_MAX);
    r.orig = m;
    r.orig_len = DSN_FULL_MAX;
    r.orig_size = 0;
    f = build(&r, &report, &third, &flags, "64 KiB");
    is_str(get(f, "parts.2.type"), "message/rfc822", "64 KiB: whole");
    ok(same(&third, m, DSN_FULL_MAX), "64 KiB: octet for octet");
    done(f, &report, &third);
    free(m);
}

static void test_hdrs(void)
{
    struct dsn_rcpt rc = failed_rcpt();
    struct dsn_report r;
    base(&r, &rc, 1);
    r.ret = STORE_RET_HDRS;
    struct buf report, third;
    unsigned flags;
    char *f = build(&r, &report, &third, &flags, "hdrs");
    check_shape(f, "hdrs", 3);
    is_str(get(f, "parts.2.type"), "text/rfc822-headers", "hdrs: text/rfc822-headers");
    is_str(get(f, "parts.2.description"), "Undelivered Message Headers", "hdrs: described");
    ok(same(&third, ORIG, ORIG_HEADERS_LEN), "hdrs: the header section");
    is_str(get(f, "third.header_count"), "5", "hdrs: five header fields");
    is_int(flags, 0, "hdrs: asked for headers, no flag");
    done(f, &report, &third);

    /* No original at all: two parts. */
    r.orig = NULL;
    r.orig_len = 0;
    f = build(&r, &report, &third, &flags, "no original");
    check_shape(f, "no original", 2);
    ok(!has(f, "human_flat", "attached"), "no original: nothing said attached");
    done(f, &report, &third);
}

static void test_injection(void)
{
    static const char reply[] = "550 5.1.1 no such user\r\nBcc: victim@evil.test\r\n\r\n"
                                "X-Injected: yes\x01\x7f\x1b[31m\r\n.\r\n";
    struct dsn_rcpt rc = failed_rcpt();
    rc.reply = reply;
    rc.reply_len = sizeof(reply) - 1;
    rc.remote_mta = "mx.b.test\r\nX-Evil: 1";
    rc.orig_rcpt = "rfc822;x\r\nX-Evil: 3\r\n\r\nFinal-Recipient: rfc822; eve@evil.test";
    struct dsn_report r;
    base(&r, &rc, 1);
    r.envid = "id\r\n\r\nX-Evil: 2";
    struct buf report, third;
    char *f = build(&r, &report, &third, NULL, "injection");
    check_shape(f, "injection", 3);
    ok(clean(&report), "injection: no control character left");
    is_str(get(f, "nrecipients"), "1", "injection: still one recipient");
    is_str(get(f, "email_blocks"), "2", "injection: the email package agrees");
    ok(get(f, "recipients.0.Bcc") == NULL && get(f, "recipients.0.X-Injected") == NULL &&
           get(f, "recipients.0.X-Evil") == NULL && get(f, "per_message.X-Evil") == NULL,
       "injection: no field added");
    is_str(get(f, "recipients.0.Diagnostic-Code"),
           "smtp; 550 5.1.1 no such user Bcc: victim@evil.test X-Injected: yes???[31m .",
           "injection: the reply on one logical line, controls as '?'");
    is_str(get(f, "recipients.0.Remote-MTA"), "dns; mx.b.test X-Evil: 1",
           "injection: Remote-MTA on one line");
    is_str(get(f, "recipients.0.Final-Recipient"), "rfc822; bob@b.test",
           "injection: the real Final-Recipient");
    is_str(get(f, "recipients.0.Original-Recipient"),
           "rfc822;x X-Evil: 3 Final-Recipient: rfc822; eve@evil.test",
           "injection: ORCPT on one line");
    is_str(get(f, "per_message.Original-Envelope-Id"), "id X-Evil: 2",
           "injection: ENVID on one line");
    ok(has(f, "human_flat", "X-Injected: yes???[31m"), "injection: quoted safely in the text");
    done(f, &report, &third);
}

static void test_long_reply(void)
{
    /* Words, then one token longer than a line may be: folded, broken. */
    struct buf reply;
    buf_init(&reply, 0);
    buf_append_str(&reply, "550 5.7.1");
    for (int i = 0; i < 150; i++)
        buf_printf(&reply, " word%d", i);
    buf_append_str(&reply, " ");
    for (int i = 0; i < 2000; i++)
        buf_append(&reply, "A", 1);
    buf_append_str(&reply, " end\r\n");
    struct dsn_rcpt rc = failed_rcpt();
    rc.reply = (const char *)reply.data;
    rc.reply_len = reply.len;
    struct dsn_report r;
    base(&r, &rc, 1);
    struct buf report, third;
    char *f = build(&r, &report, &third, NULL, "long");
    check_shape(f, "long", 3);
    ok(atoi(get(f, "raw.max_line")) <= 998, "long: longest line %s", get(f, "raw.max_line"));
    const char *diag = get(f, "recipients.0.Diagnostic-Code");
    ok(diag != NULL && strncmp(diag, "smtp; 550 5.7.1 word0 word1 word2", 33) == 0,
       "long: Diagnostic-Code starts right");
    /* Unfolded, the words are whole; the token was broken by one fold. */
    struct buf want;
    buf_init(&want, 0);
    buf_append_str(&want, "smtp; ");
    buf_append(&want, reply.data, reply.len - 2);
    size_t spaces_got = 0, spaces_want = 0;
    for (const char *p = diag ? diag : ""; *p; p++)
        spaces_got += *p == ' ';
    for (size_t i = 0; i < want.len; i++)
        spaces_want += want.data[i] == ' ';
    is_int(spaces_got, spaces_want + 2, "long: two breaks inside the 2000-octet token");
    ok(diag != NULL && strstr(diag, " end") != NULL, "long: the end is there");
    ok(has(f, "human_flat", "word149 AAAA"), "long: the text quotes it");
    done(f, &report, &third);
    buf_free(&want);

    /* Past DSN_DIAG_MAX: cut, and marked. */
    buf_reset(&reply);
    buf_append_str(&reply, "550-5.7.1 first line\r\n");
    while (reply.len < 3 * DSN_DIAG_MAX)
        buf_append_str(&reply, "550-5.7.1 more of the same, many times over\r\n");
    buf_append_str(&reply, "550 5.7.1 last line\r\n");
    rc.reply = (const char *)reply.data;
    rc.reply_len = reply.len;
    f = build(&r, &report, &third, NULL, "very long");
    check_shape(f, "very long", 3);
    diag = get(f, "recipients.0.Diagnostic-Code");
    ok(diag != NULL && strncmp(diag, "smtp; 550-5.7.1 first line 550-5.7.1 more", 41) == 0,
       "very long: the lines joined");
    ok(diag != NULL && strlen(diag) < DSN_DIAG_MAX + 16 &&
           strcmp(diag + strlen(diag) - 3, "...") == 0,
       "very long: cut at DSN_DIAG_MAX and marked");
    ok(!has(f, "human_flat", "last line"), "very long: the text is cut too");
    done(f, &report, &third);
    buf_free(&reply);
}

static void test_boundary(void)
{
    struct dsn_rcpt rc = failed_rcpt();
    struct dsn_report r;
    base(&r, &rc, 1);
    r.ret = STORE_RET_FULL;
    struct buf report, third;
    char *f = build(&r, &report, &third, NULL, "boundary");
    char b0[128];
    snprintf(b0, sizeof(b0), "%s", get(f, "boundary") ? get(f, "boundary") : "");
    ok(strncmp(b0, "=_kotak_", 8) == 0, "boundary: %s", b0);
    done(f, &report, &third);

    /* An original holding that boundary, as delimiter and close. */
    struct buf m;
    buf_init(&m, 0);
    buf_append(&m, ORIG, ORIG_HEADERS_LEN + 2);
    buf_printf(&m, "Quoting a bounce:\r\n--%s\r\nContent-Type: text/plain\r\n\r\nx\r\n--%s--\r\n",
               b0, b0);
    r.orig = (const char *)m.data;
    r.orig_len = m.len;
    f = build(&r, &report, &third, NULL, "boundary clash");
    check_shape(f, "boundary clash", 3);
    const char *b1 = get(f, "boundary");
    ok(b1 != NULL && strcmp(b1, b0) != 0 && strncmp(b1, "=_kotak_", 8) == 0,
       "boundary clash: another boundary, %s", b1 ? b1 : "(none)");
    is_str(get(f, "parts.2.type"), "message/rfc822", "boundary clash: the original whole");
    ok(same(&third, (const char *)m.data, m.len), "boundary clash: octet for octet");
    done(f, &report, &third);
    buf_free(&m);
}

static void test_line_ends(void)
{
    static const char lf[] = "From: Alice <alice@a.test>\nSubject: Bare\n\nLine one\nLine two\n";
    static const char crlf[] = "From: Alice <alice@a.test>\r\nSubject: Bare\r\n\r\n"
                               "Line one\r\nLine two\r\n";
    struct dsn_rcpt rc = failed_rcpt();
    struct dsn_report r;
    base(&r, &rc, 1);
    r.ret = STORE_RET_FULL;
    r.orig = lf;
    r.orig_len = sizeof(lf) - 1;
    struct buf report, third;
    char *f = build(&r, &report, &third, NULL, "bare LF full");
    check_shape(f, "bare LF full", 3);
    ok(same(&third, crlf, sizeof(crlf) - 1), "bare LF full: the original in CRLF");
    is_str(get(f, "third.subject"), "Bare", "bare LF full: readable");
    done(f, &report, &third);

    r.ret = STORE_RET_HDRS;
    f = build(&r, &report, &third, NULL, "bare LF headers");
    check_shape(f, "bare LF headers", 3);
    ok(same(&third, crlf, (size_t)(strstr(crlf, "\r\n\r\n") - crlf) + 2),
       "bare LF headers: the header section in CRLF");
    done(f, &report, &third);

    /* No empty line: all headers, and the last has no line end. */
    static const char nosep[] = "From: Alice <alice@a.test>\r\nSubject: no body\r\nX-Last: yes";
    static const char nosep_crlf[] = "From: Alice <alice@a.test>\r\nSubject: no body\r\n"
                                     "X-Last: yes\r\n";
    r.orig = nosep;
    r.orig_len = sizeof(nosep) - 1;
    f = build(&r, &report, &third, NULL, "no separator");
    check_shape(f, "no separator", 3);
    ok(same(&third, nosep_crlf, sizeof(nosep_crlf) - 1), "no separator: every line a header");
    is_str(get(f, "third.header_count"), "3", "no separator: three fields");
    done(f, &report, &third);
    r.ret = STORE_RET_FULL;
    f = build(&r, &report, &third, NULL, "no separator full");
    check_shape(f, "no separator full", 3);
    ok(same(&third, nosep_crlf, sizeof(nosep_crlf) - 1), "no separator full: whole, CRLF added");
    done(f, &report, &third);

    /* No empty line, but a line that is not a field: the body starts there. */
    static const char nofield[] = "Subject: abrupt\r\nThis is the body.\r\n";
    r.orig = nofield;
    r.orig_len = sizeof(nofield) - 1;
    r.ret = STORE_RET_HDRS;
    f = build(&r, &report, &third, NULL, "body without separator");
    ok(same(&third, "Subject: abrupt\r\n", 17), "body without separator: headers stop there");
    done(f, &report, &third);
}

static void test_utf8(void)
{
    static const char orig[] = "From: J\xc3\xb6ran <joran@a.test>\r\n"
                               "To: \xc3\xbc@b.test\r\n"
                               "Subject: Gr\xc3\xbc\xc3\x9f"
                               "e\r\n"
                               "\r\n"
                               "Hallo\r\n";
    struct dsn_rcpt rcpts[2] = {failed_rcpt(), failed_rcpt()};
    rcpts[0].final_rcpt = "\xc3\xbc@b.test";
    struct dsn_report r;
    base(&r, rcpts, 2);
    r.orig = orig;
    r.orig_len = sizeof(orig) - 1;
    struct buf report, third;
    unsigned flags;
    char *f = build(&r, &report, &third, &flags, "utf8");
    check_shape(f, "utf8", 3);
    is_str(get(f, "types"), "text/plain,message/global-delivery-status,message/global-headers",
           "utf8: RFC 6533 types");
    is_str(get(f, "recipients.0.Final-Recipient"), "utf-8; \\u00fc@b.test",
           "utf8: a UTF-8 address has the utf-8 type");
    is_str(get(f, "recipients.1.Final-Recipient"), "rfc822; bob@b.test",
           "utf8: an ASCII one keeps rfc822");
    ok(same(&third, orig, sizeof(orig) - 1 - 9), "utf8: the header section as it was");
    is_str(get(f, "third.subject"), "Gr\\u00fc\\u00dfe", "utf8: its Subject reads");
    is_str(get(f, "parts.0.charset"), "utf-8", "utf8: the text in UTF-8");
    is_str(get(f, "parts.1.cte"), "8bit", "utf8: the status part 8bit");
    is_str(get(f, "raw.header_8bit"), "false", "utf8: the report's own header is ASCII");
    is_str(get(f, "header.content-transfer-encoding"), "8bit", "utf8: the whole is 8bit");
    ok(flags & DSN_BUILD_8BIT, "utf8: flagged 8-bit");
    ok(!(flags & DSN_BUILD_SMTPUTF8), "utf8: SMTPUTF8 not needed");
    done(f, &report, &third);

    r.ret = STORE_RET_FULL;
    f = build(&r, &report, &third, &flags, "utf8 full");
    is_str(get(f, "parts.2.type"), "message/global", "utf8 full: message/global");
    ok(same(&third, orig, sizeof(orig) - 1), "utf8 full: octet for octet");
    done(f, &report, &third);

    /* UTF-8 headers only: the recipients are ASCII. */
    r.rcpts = &rcpts[1];
    r.nrcpts = 1;
    r.ret = STORE_RET_DEFAULT;
    f = build(&r, &report, &third, &flags, "utf8 headers");
    is_str(get(f, "types"), "text/plain,message/global-delivery-status,message/global-headers",
           "utf8 headers: RFC 6533 types");
    is_str(get(f, "parts.0.charset"), "us-ascii", "utf8 headers: the text is ASCII");
    done(f, &report, &third);

    /* A UTF-8 sender: the To: needs SMTPUTF8. */
    r.sender = "j\xc3\xb6ran@a.test";
    f = build(&r, &report, &third, &flags, "utf8 sender");
    is_str(get(f, "header.to"), "j\\u00f6ran@a.test", "utf8 sender: To");
    ok(flags & DSN_BUILD_SMTPUTF8, "utf8 sender: flagged SMTPUTF8");
    done(f, &report, &third);

    /* Latin-1 headers are not UTF-8: '?' in text/rfc822-headers. */
    static const char latin1[] = "Subject: Gr\xfc\xdf"
                                 "e\r\n\r\nHallo\r\n";
    r.sender = "alice@a.test";
    r.orig = latin1;
    r.orig_len = sizeof(latin1) - 1;
    r.ret = STORE_RET_FULL;
    f = build(&r, &report, &third, &flags, "latin1");
    check_shape(f, "latin1", 3);
    is_str(get(f, "types"), "text/plain,message/delivery-status,text/rfc822-headers",
           "latin1: plain types, headers only");
    ok(same(&third, "Subject: Gr??e\r\n", 16), "latin1: 8-bit octets as '?'");
    ok(flags == DSN_BUILD_HEADERS_ONLY, "latin1: 7-bit, headers only");
    done(f, &report, &third);
}

/* A header section past DSN_HEADERS_MAX, and a header line past 998 octets. */
static void test_big_headers(void)
{
    struct buf m;
    buf_init(&m, 0);
    buf_append_str(&m, "Subject: padded\r\n");
    while (m.len < DSN_HEADERS_MAX + 5000)
        buf_append_str(&m, "X-Pad: 0123456789012345678901234567890123456789012345678901234567\r\n");
    size_t hdr_len = m.len;
    buf_append_str(&m, "\r\nbody\r\n");
    struct dsn_rcpt rc = failed_rcpt();
    struct dsn_report r;
    base(&r, &rc, 1);
    r.orig = (const char *)m.data;
    r.orig_len = m.len;
    struct buf report, third;
    char *f = build(&r, &report, &third, NULL, "big headers");
    check_shape(f, "big headers", 3);
    ok(third.len <= DSN_HEADERS_MAX && third.len > DSN_HEADERS_MAX - 100,
       "big headers: cut near DSN_HEADERS_MAX (%zu)", third.len);
    ok(third.len < hdr_len && memcmp(third.data, m.data, third.len) == 0 &&
           third.data[third.len - 1] == '\n',
       "big headers: a prefix, cut at a line end");
    ok(has(f, "human_flat", "They were cut short at 65536 octets."), "big headers: says so");
    done(f, &report, &third);

    /* One header line of 3000 octets, UTF-8: folded, no sequence split. */
    buf_reset(&m);
    buf_append_str(&m, "Subject: ");
    while (m.len < 3000)
        buf_append_str(&m, "\xc3\xa9\xe2\x82\xac");
    buf_append_str(&m, "\r\nFrom: a@a.test\r\n\r\nbody\r\n");
    r.orig = (const char *)m.data;
    r.orig_len = m.len;
    r.ret = STORE_RET_FULL;
    unsigned flags;
    f = build(&r, &report, &third, &flags, "long header line");
    check_shape(f, "long header line", 3);
    is_str(get(f, "parts.2.type"), "message/global-headers",
           "long header line: not carried whole, headers in UTF-8");
    is_str(get(f, "third.header_count"), "2", "long header line: still two fields");
    ok(flags & DSN_BUILD_HEADERS_ONLY, "long header line: flagged");
    ok(has(f, "human_flat", "it holds lines or octets that a report cannot carry"),
       "long header line: says why");
    ok(addr_utf8_valid((const char *)third.data, third.len), "long header line: valid UTF-8");
    done(f, &report, &third);
    buf_free(&m);
}

/* Input that is not a report, and a ceiling too low. */
static void test_refusals(void)
{
    struct dsn_rcpt rc = failed_rcpt();
    struct dsn_report r;
    struct buf out;
    buf_init(&out, 0);
    buf_append_str(&out, "kept");
    base(&r, &rc, 1);
    r.nrcpts = 0;
    is_int(dsn_build(&r, &out, NULL), -EINVAL, "refused: no recipient");
    base(&r, &rc, 1);
    r.sender = "";
    is_int(dsn_build(&r, &out, NULL), -EINVAL, "refused: the null sender");
    r.sender = "not an address";
    is_int(dsn_build(&r, &out, NULL), -EINVAL, "refused: a sender that is no address");
    base(&r, &rc, 1);
    r.message_id = "no-at-sign";
    is_int(dsn_build(&r, &out, NULL), -EINVAL, "refused: a Message-ID without @");
    r.message_id = "a b@c";
    is_int(dsn_build(&r, &out, NULL), -EINVAL, "refused: a Message-ID with a space");
    r.message_id = "<x@y>";
    is_int(dsn_build(&r, &out, NULL), 0, "accepted: a Message-ID in brackets");
    buf_reset(&out);
    buf_append_str(&out, "kept");
    base(&r, &rc, 1);
    r.reporting_mta = "bad host\r\nX: y";
    is_int(dsn_build(&r, &out, NULL), -EINVAL, "refused: a host name that is none");
    const char *bad_status[] = {"5.1", "6.1.1", "5.1.1.1", "5.1111.1", "5..1", "", "2.0.0 "};
    for (size_t i = 0; i < sizeof(bad_status) / sizeof(bad_status[0]); i++) {
        struct dsn_rcpt b = failed_rcpt();
        b.status = bad_status[i];
        base(&r, &b, 1);
        is_int(dsn_build(&r, &out, NULL), -EINVAL, "refused: status '%s'", bad_status[i]);
    }
    struct dsn_rcpt b = failed_rcpt();
    b.final_rcpt = "bob@b.test\r\nBcc: x@y";
    base(&r, &b, 1);
    is_int(dsn_build(&r, &out, NULL), -EINVAL, "refused: a recipient that is no address");
    b = failed_rcpt();
    b.orig_rcpt = "no-type";
    base(&r, &b, 1);
    is_int(dsn_build(&r, &out, NULL), -EINVAL, "refused: an ORCPT without its type");
    b = failed_rcpt();
    b.action = (enum dsn_action)42;
    base(&r, &b, 1);
    is_int(dsn_build(&r, &out, NULL), -EINVAL, "refused: an unknown action");
    base(&r, &rc, 1);
    r.orig_size = 10;
    is_int(dsn_build(&r, &out, NULL), -EINVAL, "refused: a size below what was given");
    ok(out.len == 4 && memcmp(out.data, "kept", 4) == 0, "refused: the output untouched");
    buf_free(&out);

    base(&r, &rc, 1);
    buf_init(&out, 2000);
    buf_append_str(&out, "kept");
    is_int(dsn_build(&r, &out, NULL), -ENOBUFS, "too small: -ENOBUFS");
    ok(out.len == 4 && memcmp(out.data, "kept", 4) == 0, "too small: the output untouched");
    buf_free(&out);

    buf_init(&out, 4);
    buf_append_str(&out, "full");
    is_int(dsn_build(&r, &out, NULL), -ENOBUFS, "already full: -ENOBUFS");
    is_int(out.len, 4, "already full: untouched");
    buf_free(&out);

    /* Appends after what the buffer held. */
    buf_init(&out, 0);
    buf_append_str(&out, "X");
    is_int(dsn_build(&r, &out, NULL), 0, "appends: built");
    ok(out.len > 1 && memcmp(out.data, "XFrom: ", 7) == 0, "appends: after what was there");
    buf_free(&out);
}

/* The worst the ceiling must hold: replies of short lines, 64 KiB of bare LF. */
static void test_ceiling(void)
{
    enum { N = 5 };
    static char reply[DSN_DIAG_MAX + 100], orcpt[2000], lf[DSN_FULL_MAX];
    for (size_t i = 0; i < sizeof(reply); i += 2)
        reply[i] = 'a', reply[i + 1] = '\n';
    memcpy(orcpt, "rfc822;", 7);
    memset(orcpt + 7, 'o', sizeof(orcpt) - 8);
    orcpt[sizeof(orcpt) - 1] = '\0';
    memset(lf, '\n', sizeof(lf));
    memcpy(lf, "Subject: x\n", 11);
    struct dsn_rcpt rcpts[N];
    for (int i = 0; i < N; i++) {
        rcpts[i] = failed_rcpt();
        rcpts[i].reply = reply;
        rcpts[i].reply_len = sizeof(reply);
        rcpts[i].orig_rcpt = orcpt;
        rcpts[i].reason = orcpt;
    }
    struct dsn_report r;
    base(&r, rcpts, N);
    r.ret = STORE_RET_FULL;
    r.orig = lf;
    r.orig_len = sizeof(lf);
    struct buf report, third;
    char *f = build(&r, &report, &third, NULL, "ceiling");
    ok(report.len <= DSN_REPORT_MAX(N), "ceiling: %zu of %zu", report.len, DSN_REPORT_MAX(N));
    is_str(get(f, "parts.2.type"), "message/rfc822", "ceiling: the original whole");
    is_int(third.len, 2 * DSN_FULL_MAX - 10, "ceiling: every bare LF a CRLF");
    is_str(get(f, "raw.lines_over_998"), "0", "ceiling: no long line");
    done(f, &report, &third);
}

/* --- the rules ---------------------------------------------------------- */

static void test_rules(void)
{
    ok(!dsn_should_bounce(""), "never bounce: empty sender");
    ok(!dsn_should_bounce("<>"), "never bounce: <>");
    ok(!dsn_should_bounce(NULL), "never bounce: no sender");
    ok(dsn_should_bounce("alice@a.test"), "bounce: a sender");
    ok(dsn_should_bounce("MAILER-DAEMON@a.test"), "bounce: only the null sender is spared");

    unsigned n = 99;
    is_int(dsn_notify_parse("NEVER", 5, &n), 0, "NOTIFY=NEVER");
    is_int(n, STORE_NOTIFY_NEVER, "NOTIFY=NEVER: the bit");
    is_int(dsn_notify_parse("success,Failure,DELAY", 21, &n), 0, "NOTIFY: three, any case");
    is_int(n, STORE_NOTIFY_SUCCESS | STORE_NOTIFY_FAILURE | STORE_NOTIFY_DELAY,
           "NOTIFY: three bits");
    const char *bad[] = {"",       "NEVER,SUCCESS", "SUCCESS,SUCCESS", "SUCCESS,",
                         ",DELAY", "ALWAYS",        "FAILURE DELAY"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        is_int(dsn_notify_parse(bad[i], strlen(bad[i]), &n), -EINVAL, "NOTIFY refused: '%s'",
               bad[i]);
    ok(dsn_notify_wants(0, DSN_ACTION_FAILED) && dsn_notify_wants(0, DSN_ACTION_DELAYED) &&
           !dsn_notify_wants(0, DSN_ACTION_DELIVERED),
       "NOTIFY not given: failures and delays");
    ok(!dsn_notify_wants(STORE_NOTIFY_NEVER, DSN_ACTION_FAILED), "NOTIFY=NEVER: nothing");
    ok(dsn_notify_wants(STORE_NOTIFY_SUCCESS, DSN_ACTION_DELIVERED) &&
           dsn_notify_wants(STORE_NOTIFY_SUCCESS, DSN_ACTION_RELAYED) &&
           !dsn_notify_wants(STORE_NOTIFY_SUCCESS, DSN_ACTION_FAILED),
       "NOTIFY=SUCCESS: successes only");
    ok(dsn_notify_wants(STORE_NOTIFY_FAILURE, DSN_ACTION_FAILED) &&
           !dsn_notify_wants(STORE_NOTIFY_FAILURE, DSN_ACTION_DELAYED),
       "NOTIFY=FAILURE: no delay notice");

    enum store_ret ret = STORE_RET_DEFAULT;
    ok(dsn_ret_parse("full", 4, &ret) == 0 && ret == STORE_RET_FULL, "RET=full");
    ok(dsn_ret_parse("HDRS", 4, &ret) == 0 && ret == STORE_RET_HDRS, "RET=HDRS");
    is_int(dsn_ret_parse("HEADERS", 7, &ret), -EINVAL, "RET=HEADERS refused");
}

static void test_xtext(void)
{
    struct buf b;
    buf_init(&b, 0);
    is_int(dsn_xtext_encode("rfc822;bob+tag=x@b.test", 23, &b), 0, "xtext: encoded");
    ok(same(&b, "rfc822;bob+2Btag+3Dx@b.test", 27), "xtext: '+' and '=' as hex");
    buf_reset(&b);
    dsn_xtext_encode("a b\x01\xc3\xbc~!", 8, &b);
    ok(same(&b, "a+20b+01+C3+BC~!", 16), "xtext: space, control, UTF-8 as hex");

    /* Every octet, there and back. */
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    struct buf enc, dec;
    buf_init(&enc, 0);
    buf_init(&dec, 0);
    dsn_xtext_encode(all, sizeof(all), &enc);
    bool printable = true;
    for (size_t i = 0; i < enc.len; i++)
        printable &= enc.data[i] >= '!' && enc.data[i] <= '~' && enc.data[i] != '=';
    ok(printable, "xtext: the encoding is printable, no '='");
    is_int(dsn_xtext_decode((const char *)enc.data, enc.len, &dec), 0, "xtext: decoded");
    ok(same(&dec, all, sizeof(all)), "xtext: round trip of every octet");
    buf_reset(&dec);
    is_int(dsn_xtext_decode("rfc822;bob+2btag@b.test", 23, &dec), 0, "xtext: lower-case hex");
    ok(same(&dec, "rfc822;bob+tag@b.test", 21), "xtext: lower-case hex decoded");

    const char *bad[] = {"+", "a+4", "+4G", "+G4", "+-1", "a=b", "a b", "\x80", "tab\there"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        buf_reset(&dec);
        buf_append_str(&dec, "kept");
        is_int(dsn_xtext_decode(bad[i], strlen(bad[i]), &dec), -EINVAL, "xtext refused: '%s'",
               bad[i]);
        ok(same(&dec, "kept", 4), "xtext refused: output untouched");
    }

    struct buf small;
    buf_init(&small, 5);
    is_int(dsn_xtext_encode("a+b+c", 5, &small), -ENOBUFS, "xtext: encode past max");
    is_int(small.len, 0, "xtext: encode past max leaves nothing");
    is_int(dsn_xtext_decode("abcdef", 6, &small), -ENOBUFS, "xtext: decode past max");
    is_int(small.len, 0, "xtext: decode past max leaves nothing");
    is_int(dsn_xtext_decode("ab+2B", 5, &small), 0, "xtext: decode within max");
    buf_free(&small);
    buf_free(&b);
    buf_free(&enc);
    buf_free(&dec);
}

int main(void)
{
    python = getenv("DSN_PYTHON");
    checker = getenv("DSN_CHECKER");
    tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if (python == NULL || checker == NULL) {
        printf("Bail out! DSN_PYTHON and DSN_CHECKER must be set (meson test sets them)\n");
        return 1;
    }
    size_t hl;
    headers_end(ORIG, sizeof(ORIG) - 1, &hl, NULL);
    is_int(hl, ORIG_HEADERS_LEN, "the test's original: its header section");

    test_failed_550();
    test_mixed();
    test_delayed();
    test_success();
    test_orcpt_envid();
    test_full_small();
    test_full_large();
    test_hdrs();
    test_injection();
    test_long_reply();
    test_boundary();
    test_line_ends();
    test_utf8();
    test_big_headers();
    test_refusals();
    test_ceiling();
    test_rules();
    test_xtext();
    return done_testing();
}
