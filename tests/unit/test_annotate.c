/*
 * test_annotate.c — the live view's notes: each command's RFC section,
 * what reply codes mean (RFC 5321 4.2, RFC 3463 enhanced codes, POP3's
 * response codes), and RFC 5321 4.3.2's list of replies per command.
 */
#include <string.h>

#include "annotate.h"
#include "tap.h"

static const char *reply(enum watch_proto p, const char *line)
{
    static char out[512];
    annotate_reply(p, line, strlen(line), out, sizeof(out));
    return out;
}

static bool has(const char *s, const char *needle)
{
    return strstr(s, needle) != NULL;
}

int main(void)
{
    struct annotation a;
    ok(annotate_command(WATCH_SMTP, "EHLO client.test", 16, &a), "EHLO is known");
    is_str(a.ref, "RFC 5321 4.1.1.1", "EHLO: its section");
    is_str(a.url, "https://www.rfc-editor.org/rfc/rfc5321#section-4.1.1.1", "and its address");
    ok(annotate_command(WATCH_SMTP, "mail FROM:<a@b.test>", 20, &a) && strcmp(a.name, "MAIL") == 0,
       "mail in lower case is MAIL");
    is_str(a.ref, "RFC 5321 4.1.1.2", "MAIL: 4.1.1.2");
    ok(annotate_command(WATCH_SMTP, "QUIT", 4, &a), "QUIT");
    is_str(a.ref, "RFC 5321 4.1.1.10", "QUIT: 4.1.1.10");
    ok(annotate_command(WATCH_SMTP, "STARTTLS", 8, &a), "STARTTLS");
    is_str(a.ref, "RFC 3207 4", "STARTTLS: RFC 3207");
    ok(annotate_command(WATCH_SMTP, "AUTH PLAIN (as a, password hidden)", 33, &a), "AUTH");
    is_str(a.ref, "RFC 4954 4", "SMTP AUTH: RFC 4954");
    ok(annotate_command(WATCH_POP3, "AUTH PLAIN", 10, &a), "POP3 AUTH");
    is_str(a.ref, "RFC 5034 4", "POP3 AUTH: RFC 5034");
    ok(annotate_command(WATCH_POP3, "DELE 1", 6, &a) && has(a.what, "only at QUIT"),
       "DELE says it only marks: %s", a.what);
    ok(annotate_command(WATCH_POP3, "STLS", 4, &a) && strcmp(a.ref, "RFC 2595 4") == 0, "STLS");
    ok(annotate_command(WATCH_POP3, "utf8", 4, &a) && strcmp(a.name, "UTF8") == 0,
       "UTF8, its digit too, in any case");
    ok(annotate_command(WATCH_POP3, "CAPA", 4, &a) && strcmp(a.ref, "RFC 2449 5") == 0, "CAPA");
    ok(!annotate_command(WATCH_SMTP, "EHLOX", 5, &a), "EHLOX is no command");
    ok(!annotate_command(WATCH_SMTP, "(user name alice)", 17, &a), "a SASL response is no command");
    ok(!annotate_command(WATCH_POP3, "STLS2", 5, &a), "nor is STLS2");
    ok(!annotate_command(WATCH_SMTP, "", 0, &a), "nor an empty line");

    const char *r = reply(WATCH_SMTP, "250 2.1.0 Ok");
    ok(has(r, "2xx: done") && has(r, "250: requested action okay") &&
           has(r, "2.1.0: addressing"),
       "250 2.1.0: %s", r);
    r = reply(WATCH_SMTP, "550 5.7.1 Message rejected by the DMARC policy of example.org");
    ok(has(r, "5xx: failed for good") && has(r, "5.7.1: security or policy") &&
           has(r, "delivery not authorized"),
       "550 5.7.1: %s", r);
    r = reply(WATCH_SMTP, "451 4.7.1 Try again later");
    ok(has(r, "4xx: failed for now") && has(r, "4.7.1: security or policy"), "451 4.7.1: %s", r);
    r = reply(WATCH_SMTP, "535 5.7.8 Authentication credentials invalid");
    ok(has(r, "the login failed") && has(r, "credentials invalid"), "535 5.7.8: %s", r);
    r = reply(WATCH_SMTP, "550 5.7.23 SPF check failed");
    ok(has(r, "SPF validation failed"), "5.7.23: %s", r);
    r = reply(WATCH_SMTP, "250-PIPELINING");
    ok(has(r, "more lines follow") && !has(r, "2.") , "250-: a line of more: %s", r);
    r = reply(WATCH_SMTP, "354 End data with <CR><LF>.<CR><LF>");
    ok(has(r, "3xx: go on") && has(r, "a line holding a dot"), "354: %s", r);
    r = reply(WATCH_SMTP, "250 4.1.0 mismatched");
    ok(!has(r, "4.1.0"), "an enhanced code of another class than the reply is not read: %s", r);
    is_int((int)annotate_reply(WATCH_SMTP, "hello", 5, (char[64]){0}, 64), 0, "no reply: 0");
    is_int((int)annotate_reply(WATCH_SMTP, "2500 x", 6, (char[64]){0}, 64), 0, "four digits: 0");
    r = reply(WATCH_SMTP, "799 odd");
    ok(has(r, "not a code RFC 5321 defines"), "799: %s", r);

    r = reply(WATCH_POP3, "+OK Logged in, 1 messages");
    ok(has(r, "+OK: done"), "+OK: %s", r);
    r = reply(WATCH_POP3, "-ERR [IN-USE] Maildrop already locked");
    ok(has(r, "-ERR") && has(r, "[IN-USE]: the maildrop is open in another session"),
       "-ERR [IN-USE]: %s", r);
    r = reply(WATCH_POP3, "-ERR [AUTH] Invalid login");
    ok(has(r, "RFC 3206 5"), "[AUTH]: %s", r);
    r = reply(WATCH_POP3, "-ERR [SYS/TEMP] Try later");
    ok(has(r, "RFC 3206 4"), "[SYS/TEMP]: %s", r);
    r = reply(WATCH_POP3, "-ERR [NEW-CODE] x");
    ok(!has(r, "["), "a code not in the tables is not explained: %s", r);
    is_int((int)annotate_reply(WATCH_POP3, "OK", 2, (char[64]){0}, 64), 0, "not +OK: 0");
    char small[12];
    annotate_reply(WATCH_SMTP, "550 5.7.1 x", 11, small, sizeof(small));
    is_int((int)strlen(small), 11, "cut to the room given");

    ok(annotate_smtp_reply_listed("", 220) && annotate_smtp_reply_listed("", 554),
       "greeting: 220, 554");
    ok(!annotate_smtp_reply_listed("", 250), "greeting: not 250");
    const int *noop = annotate_smtp_replies("noop");
    ok(noop != NULL && noop[0] == 250 && noop[1] == 0, "NOOP's list: 250 alone");
    ok(annotate_smtp_replies("XYZZY") == NULL, "a verb the tables lack: no list");
    ok(annotate_smtp_reply_listed("RCPT", 251) && annotate_smtp_reply_listed("rcpt", 550),
       "RCPT: 251, 550");
    ok(!annotate_smtp_reply_listed("RCPT", 354), "RCPT: not 354");
    ok(!annotate_smtp_reply_listed("NOOP", 550), "NOOP: only 250");
    ok(annotate_smtp_reply_listed("NOOP", 421) && annotate_smtp_reply_listed("MAIL", 500) &&
           annotate_smtp_reply_listed("QUIT", 501),
       "421, 500, 501: any command");
    ok(annotate_smtp_reply_listed("DATA", 354) && annotate_smtp_reply_listed("DATA", 554),
       "DATA: 354, 554");
    ok(!annotate_smtp_reply_listed("MAIL", 235), "MAIL: not 235");
    ok(annotate_smtp_reply_listed("AUTH", 535) && annotate_smtp_reply_listed("AUTH", 334),
       "AUTH: 535, 334 (RFC 4954)");
    ok(annotate_smtp_reply_listed("STARTTLS", 454) && !annotate_smtp_reply_listed("STARTTLS", 250),
       "STARTTLS: 454, not 250 (RFC 3207)");
    ok(annotate_smtp_reply_listed("XYZZY", 250), "a verb the tables lack: nothing flagged");
    return done_testing();
}
