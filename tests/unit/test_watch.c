/*
 * test_watch.c — the live view's ring (events in order, a viewer that
 * falls behind told how many it missed, nothing written while nobody
 * watches, numbering that survives a restart) and the client lines it
 * shows: no password, in any encoding, ever reaches an event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sasl.h"
#include "tap.h"
#include "watch.h"
#include "watch_text.h"

static char dir[] = "/tmp/kotak-test-watch.XXXXXX";
static char path[256];

static void put_text(struct watch *w, const char *text)
{
    watch_put(w, "s1", WATCH_SMTP, WATCH_CLIENT, false, text, strlen(text));
}

static void test_ring(void)
{
    char err[256];
    snprintf(path, sizeof(path), "%s/smtp.ring", dir);
    ok(watch_reader_open(path, 0, 100, err, sizeof(err)) == NULL, "no ring yet: %s", err);
    struct watch *w = watch_open(path, err, sizeof(err));
    ok(w != NULL, "a ring made: %s", w ? "" : err);
    if (w == NULL)
        return;
    ok(!watch_on(w), "nobody watches at first");
    ok(watch_open(path, err, sizeof(err)) == NULL && strstr(err, "another daemon"),
       "a second writer is refused: %s", err);
    struct watch_reader *r = watch_reader_open(path, 0, 100, err, sizeof(err));
    ok(r != NULL, "a viewer opens it");
    watch_reader_keepalive(r);
    ok(watch_on(w), "a viewer's keep-alive turns it on");

    watch_put(w, "abc123", WATCH_POP3, WATCH_SERVER, true, "+OK ready", 9);
    put_text(w, "NOOP");
    struct watch_event ev;
    is_int((int)watch_reader_next(r, &ev), 1, "the first event");
    is_int((int)ev.seq, 1, "numbered from 1");
    is_str(ev.session, "abc123", "its session");
    is_str(watch_proto_name(ev.proto), "pop3", "its protocol");
    is_str(watch_kind_name(ev.kind), "server", "its kind");
    ok(ev.tls && !ev.cut, "inside TLS, not cut");
    is_str(ev.text, "+OK ready", "its text");
    is_int((int)watch_reader_next(r, &ev), 1, "the second");
    is_str(ev.text, "NOOP", "in order");
    is_int((int)watch_reader_next(r, &ev), 0, "then none yet");

    char big[WATCH_TEXT_MAX + 100];
    memset(big, 'x', sizeof(big));
    watch_put(w, "s1", WATCH_SMTP, WATCH_CLIENT, false, big, sizeof(big));
    is_int((int)watch_reader_next(r, &ev), 1, "a long line");
    ok(ev.cut && ev.len == WATCH_TEXT_MAX && strlen(ev.text) == WATCH_TEXT_MAX, "is cut to %d",
       WATCH_TEXT_MAX);

    /* A viewer that falls a whole ring behind. */
    for (int i = 0; i < WATCH_SLOTS + 10; i++) {
        char t[32];
        snprintf(t, sizeof(t), "line %d", i);
        put_text(w, t);
    }
    long got = watch_reader_next(r, &ev);
    ok(got < 0, "behind by more than the ring: told so (%ld)", got);
    is_int((int)-got, 11, "eleven events lost");
    is_int((int)watch_reader_next(r, &ev), 1, "then it goes on");
    is_str(ev.text, "line 11", "with the oldest still held");

    /* A restart continues the numbering; a viewer resumes where it was. */
    uint64_t last = 0;
    while (watch_reader_next(r, &ev) == 1)
        last = ev.seq;
    watch_close(&w);
    w = watch_open(path, err, sizeof(err));
    ok(w != NULL, "the ring opened again");
    put_text(w, "after the restart");
    is_int((int)watch_reader_next(r, &ev), 1, "the viewer sees the next event");
    is_int((int)(ev.seq - last), 1, "numbered on from before");
    struct watch_reader *r2 = watch_reader_open(path, ev.seq, 0, err, sizeof(err));
    is_int((int)watch_reader_next(r2, &ev), 1, "a viewer asking from a number");
    is_str(ev.text, "after the restart", "gets that event first");
    watch_reader_close(&r2);
    r2 = watch_reader_open(path, 0, 3, err, sizeof(err));
    int n = 0;
    while (watch_reader_next(r2, &ev) == 1)
        n++;
    is_int(n, 3, "history 3: the last three events");
    watch_reader_close(&r2);
    watch_reader_close(&r);
    watch_close(&w);

    FILE *f = fopen(path, "w");
    fputs("not a ring", f);
    fclose(f);
    ok(watch_reader_open(path, 0, 0, err, sizeof(err)) == NULL && strstr(err, "not a ring"),
       "a file that is no ring is refused: %s", err);
    unlink(path);
}

/* Whether s holds needle. */
static bool holds(const char *s, const char *needle)
{
    return strstr(s, needle) != NULL;
}

static void b64(const char *p, size_t n, char *out)
{
    sasl_b64_encode((const uint8_t *)p, n, out, 512);
}

static void test_redaction(void)
{
    const char *pw = "Secret-pw7";
    char plain_b64[512], pw_b64[512], user_b64[512], out[WATCH_TEXT_MAX + 1], line[1024];
    b64("\0alice@example.test\0Secret-pw7", 30, plain_b64);
    b64(pw, strlen(pw), pw_b64);
    b64("alice@example.test", 18, user_b64);
#define NO_SECRET(what)                                                                            \
    ok(!holds(out, pw) && !holds(out, pw_b64) && !holds(out, plain_b64) &&                        \
           !holds(out, plain_b64 + 4),                                                             \
       "%s: no password in \"%s\"", what, out)

    snprintf(line, sizeof(line), "AUTH PLAIN %s", plain_b64);
    watch_command_line(WATCH_SMTP, line, strlen(line), out, sizeof(out));
    is_str(out, "AUTH PLAIN (as alice@example.test, password hidden)", "AUTH PLAIN with its response");
    NO_SECRET("AUTH PLAIN with its response");
    snprintf(line, sizeof(line), "auth plain %s", plain_b64);
    watch_command_line(WATCH_POP3, line, strlen(line), out, sizeof(out));
    ok(holds(out, "password hidden"), "auth plain in lower case, POP3: %s", out);
    NO_SECRET("lower case");

    watch_sasl_line(SASL_PLAIN, 0, plain_b64, strlen(plain_b64), out, sizeof(out));
    is_str(out, "(as alice@example.test, password hidden)", "PLAIN's response on its own line");
    NO_SECRET("PLAIN's response");
    /* A response that does not decode may still hold the password as typed. */
    snprintf(line, sizeof(line), "%s!", plain_b64);
    watch_sasl_line(SASL_PLAIN, 0, line, strlen(line), out, sizeof(out));
    is_str(out, "(a response that does not decode, hidden)", "a broken response: hidden whole");
    NO_SECRET("a broken response");
    watch_sasl_line(SASL_PLAIN, 0, pw, strlen(pw), out, sizeof(out));
    NO_SECRET("a password sent bare where base64 was due");

    watch_sasl_line(SASL_LOGIN, 0, user_b64, strlen(user_b64), out, sizeof(out));
    is_str(out, "(user name alice@example.test)", "LOGIN's first answer: the user name");
    watch_sasl_line(SASL_LOGIN, 1, pw_b64, strlen(pw_b64), out, sizeof(out));
    is_str(out, "(password hidden)", "LOGIN's second answer: hidden");
    NO_SECRET("LOGIN's password");
    watch_sasl_line(SASL_LOGIN, 1, pw, strlen(pw), out, sizeof(out));
    NO_SECRET("LOGIN's password not in base64");
    snprintf(line, sizeof(line), "AUTH LOGIN %s", user_b64);
    watch_command_line(WATCH_SMTP, line, strlen(line), out, sizeof(out));
    is_str(out, "AUTH LOGIN (user name alice@example.test)", "AUTH LOGIN with the user name");
    watch_sasl_line(SASL_LOGIN, 0, "*", 1, out, sizeof(out));
    is_str(out, "* (the client gives up the login)", "* cancels");
    snprintf(line, sizeof(line), "AUTH CRAM-MD5 %s", pw_b64);
    watch_command_line(WATCH_SMTP, line, strlen(line), out, sizeof(out));
    is_str(out, "AUTH (a mechanism kotak does not offer, and what follows, hidden)",
           "a mechanism kotak lacks: hidden with what follows");
    NO_SECRET("an unknown mechanism");

    snprintf(line, sizeof(line), "PASS %s", pw);
    watch_command_line(WATCH_POP3, line, strlen(line), out, sizeof(out));
    is_str(out, "PASS (password hidden)", "PASS");
    NO_SECRET("PASS");
    snprintf(line, sizeof(line), "pass %s", pw);
    watch_command_line(WATCH_POP3, line, strlen(line), out, sizeof(out));
    NO_SECRET("pass in lower case");
    watch_command_line(WATCH_POP3, "APOP alice@example.test c4c9334bac560ecc979e58001b3e22fb", 56,
                       out, sizeof(out));
    is_str(out, "APOP alice@example.test (digest hidden)", "APOP: the name stays, the digest goes");
    snprintf(line, sizeof(line), "PASS\t%s", pw);
    watch_command_line(WATCH_POP3, line, strlen(line), out, sizeof(out));
    is_str(out, "(a line that is no command, 15 octets, hidden)", "PASS run into a tab: hidden");
    NO_SECRET("PASS and a tab");
    snprintf(line, sizeof(line), "PASS %s", pw);
    watch_command_line(WATCH_SMTP, line, strlen(line), out, sizeof(out));
    NO_SECRET("PASS sent to SMTP by mistake");
    snprintf(line, sizeof(line), "AUTH\tPLAIN %s", plain_b64);
    watch_command_line(WATCH_SMTP, line, strlen(line), out, sizeof(out));
    is_str(out, "(a line that is no command, 51 octets, hidden)", "AUTH run into a tab: hidden");
    NO_SECRET("AUTH and a tab");
    watch_command_line(WATCH_POP3, "AUTH", 4, out, sizeof(out));
    is_str(out, "AUTH", "AUTH alone (POP3: the list of mechanisms)");
    watch_command_line(WATCH_POP3, "USER alice@example.test", 23, out, sizeof(out));
    is_str(out, "USER alice@example.test", "USER with an address: as it is");
    watch_command_line(WATCH_POP3, "USER Secret-pw7", 15, out, sizeof(out));
    is_str(out, "USER (a name that is no address, hidden)", "USER with a password typed in: hidden");
    NO_SECRET("USER holding the password");

    /* A login's answer where no login is under way (AUTH refused first: 502 on
     * the MX, 538 without TLS, 503 before EHLO), typos, odd spacing. */
    const char *stray[] = {plain_b64, pw_b64, pw, " PASS Secret-pw7", "PAS Secret-pw7",
                           "AUTH PLAIN\tAGFsaWNlQGV4YW1wbGUudGVzdABTZWNyZXQtcHc3"};
    for (size_t i = 0; i < sizeof(stray) / sizeof(stray[0]); i++) {
        watch_command_line(WATCH_SMTP, stray[i], strlen(stray[i]), out, sizeof(out));
        NO_SECRET("SMTP, a stray line");
        watch_command_line(WATCH_POP3, stray[i], strlen(stray[i]), out, sizeof(out));
        NO_SECRET("POP3, a stray line");
    }
    watch_command_line(WATCH_SMTP, pw_b64, strlen(pw_b64), out, sizeof(out));
    ok(holds(out, "no command") && holds(out, "octets"), "a stray line: its size only: %s", out);
    /* A user name that is the password, in LOGIN and in PLAIN. */
    char pw_user_b64[512];
    b64("\0Secret-pw7\0Secret-pw7", 22, pw_user_b64);
    watch_sasl_line(SASL_PLAIN, 0, pw_user_b64, strlen(pw_user_b64), out, sizeof(out));
    is_str(out, "(as a name that is no address, hidden; password hidden)",
           "PLAIN whose name is the password: hidden");
    NO_SECRET("PLAIN's name");
    watch_sasl_line(SASL_LOGIN, 0, pw_b64, strlen(pw_b64), out, sizeof(out));
    is_str(out, "(a user name that is no address, hidden)", "LOGIN's name that is the password");
    NO_SECRET("LOGIN's name");
    watch_command_line(WATCH_SMTP, "MAIL FROM:<a@b.test>", 20, out, sizeof(out));
    is_str(out, "MAIL FROM:<a@b.test>", "other lines as they came");
    watch_command_line(WATCH_SMTP, "AUTH PLAIN", 10, out, sizeof(out));
    is_str(out, "AUTH PLAIN", "AUTH without a response: as it came");
    char small[8];
    watch_command_line(WATCH_SMTP, "MAIL FROM:<a@b.test>", 20, small, sizeof(small));
    is_str(small, "MAIL FR", "cut to the room given");
}

/* A client's address in a journey event can pose as no other key: spaces, '=' and '%' encoded. */
static void test_value(void)
{
    char out[64];
    const char forged[] = "\"x id=99 reply=ok\"@b.test";
    is_str(watch_value(out, sizeof(out), forged, strlen(forged)), "\"x%20id%3D99%20reply%3Dok\"@b.test",
           "a quoted local part with spaces and '=': one value");
    is_str(watch_value(out, sizeof(out), "bob@b.test", 10), "bob@b.test", "a plain address as it is");
    is_str(watch_value(out, sizeof(out), "a%b\x7f\x01", 5), "a%25b%7F%01", "a percent sign and controls encoded");
    char small[5];
    is_str(watch_value(small, sizeof(small), "ab cd", 5), "ab", "cut before an escape that does not fit");
}

static void test_tls_text(void)
{
    char out[128];
    size_t n = watch_tls_text("TLSv1.3", "TLS-AES-256-GCM-SHA384", "mail.example.test", out,
                              sizeof(out));
    is_str(out, "TLSv1.3 TLS-AES-256-GCM-SHA384, certificate mail.example.test",
           "TLS: version, cipher, certificate");
    ok(n == strlen(out), "its length");
    watch_tls_text("TLSv1.2", "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256", "", out, sizeof(out));
    is_str(out, "TLSv1.2 TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256", "no certificate name: none said");
    char small[10];
    n = watch_tls_text("TLSv1.3", "TLS-AES-256-GCM-SHA384", "x", small, sizeof(small));
    ok(n == 9 && strcmp(small, "TLSv1.3 T") == 0, "cut to the room given");
}

int main(void)
{
    if (mkdtemp(dir) == NULL) {
        ok(0, "a temporary folder");
        return done_testing();
    }
    test_ring();
    test_redaction();
    test_tls_text();
    test_value();
    rmdir(dir);
    return done_testing();
}
