/*
 * test_clientconfig.c — the clients' set-up files and a domain's records
 * (common/clientconfig.c): every value escaped, the ports of the listeners
 * that are on and no others, the same octets for the same input, and the
 * address of an Outlook request read and refused as it should be.
 */
#include <stdio.h>
#include <string.h>

#include "clientconfig.h"
#include "tap.h"

static const char *build(void (*fn)(const struct clientconfig *, struct buf *),
                         const struct clientconfig *cc, struct buf *b)
{
    buf_reset(b);
    fn(cc, b);
    return buf_cstr(b);
}

static int email(const char *body, char *out, size_t size)
{
    return clientconfig_request_email(body, strlen(body), out, size);
}

int main(void)
{
    struct buf b, c;
    buf_init(&b, 1 << 20);
    buf_init(&c, 1 << 20);
    struct clientconfig cc = {.hostname = "mail.example.test",
                              .domain = "example.test",
                              .submissions = 465,
                              .submission = 587,
                              .pop3s = 995,
                              .pop3 = 110};
    ok(clientconfig_usable(&cc), "POP3 and submission on: usable");

    const char *tb = build(clientconfig_thunderbird, &cc, &b);
    ok(strstr(tb, "<port>995</port>\n      <socketType>SSL</socketType>") != NULL, "pop3s: SSL");
    ok(strstr(tb, "<port>110</port>\n      <socketType>STARTTLS</socketType>") != NULL,
       "pop3: STARTTLS");
    ok(strstr(tb, "<port>465</port>\n      <socketType>SSL</socketType>") != NULL,
       "submissions: SSL");
    ok(strstr(tb, "<leaveMessagesOnServer>true</leaveMessagesOnServer>") != NULL,
       "POP3 leaves messages on the server");
    ok(strstr(tb, "<username>%EMAILADDRESS%</username>") != NULL, "no address: Thunderbird's own");
    ok(strstr(tb, "<authentication>password-cleartext</authentication>") != NULL,
       "a password inside TLS");
    ok(strstr(tb, "pop3s") == NULL && strstr(tb, "imap") == NULL, "no IMAP anywhere");

    cc.pop3s = 0;
    cc.submission = 0;
    tb = build(clientconfig_thunderbird, &cc, &b);
    ok(strstr(tb, "995") == NULL && strstr(tb, "587") == NULL, "a listener off is left out");
    const char *ad = build(clientconfig_autodiscover, &cc, &c);
    ok(strstr(ad, "<Port>110</Port>") != NULL && strstr(ad, "<Encryption>TLS</Encryption>"),
       "autodiscover: POP3 with STARTTLS when pop3s is off");
    cc.pop3 = 0;
    ok(!clientconfig_usable(&cc), "no POP3 at all: not usable");
    cc.pop3s = 995, cc.pop3 = 110, cc.submission = 587;

    cc.email = "\"a<b&c'd>\"@example.test";
    tb = build(clientconfig_thunderbird, &cc, &b);
    ok(strstr(tb, "<username>&quot;a&lt;b&amp;c&apos;d&gt;&quot;@example.test</username>") != NULL,
       "the address escaped: %s", tb);
    ok(strstr(tb, "a<b") == NULL, "nothing of it raw");
    const char *mc = build(clientconfig_mobileconfig, &cc, &c);
    ok(strstr(mc, "a<b") == NULL && strstr(mc, "&quot;a&lt;b&amp;c") != NULL,
       "the profile escapes it too");
    ad = build(clientconfig_autodiscover, &cc, &c);
    ok(strstr(ad, "<LoginName>&quot;a&lt;b") != NULL, "autodiscover: LoginName escaped");

    cc.email = NULL;
    struct buf m1, m2;
    buf_init(&m1, 1 << 20);
    buf_init(&m2, 1 << 20);
    clientconfig_mobileconfig(&cc, &m1);
    clientconfig_mobileconfig(&cc, &m2);
    ok(m1.len == m2.len && memcmp(m1.data, m2.data, m1.len) == 0, "the same profile twice");
    ok(strstr(buf_cstr(&m1), "EmailAddress") == NULL, "no address: the device asks");
    ok(strstr(buf_cstr(&m1), "<string>test.example.kotak.mail</string>") != NULL,
       "the identifier in reverse-DNS order");
    static const char uuid_at[] = "<key>PayloadUUID</key>\n      <string>";
    const char *u = strstr(buf_cstr(&m1), uuid_at);
    ok(u != NULL && u[strlen(uuid_at) + 14] == '8' && u[strlen(uuid_at) + 36] == '<',
       "a version-8 UUID of 36 characters");
    cc.domain = "example.org";
    buf_reset(&m2);
    clientconfig_mobileconfig(&cc, &m2);
    ok(strcmp(buf_cstr(&m1), buf_cstr(&m2)) != 0, "another domain, other UUIDs");
    cc.domain = "example.test";

    buf_reset(&b);
    clientconfig_dns(&cc, false, 0, &b);
    const char *z = buf_cstr(&b);
    ok(strstr(z, "example.test. MX 10 mail.example.test.\n") != NULL, "MX");
    ok(strstr(z, "_submissions._tcp.example.test. SRV 0 1 465 mail.example.test.\n") != NULL,
       "submissions first (RFC 8314)");
    ok(strstr(z, "_submission._tcp.example.test. SRV 10 1 587 mail.example.test.\n") != NULL,
       "submission second");
    ok(strstr(z, "_imap._tcp.example.test. SRV 0 0 0 .\n") != NULL, "no IMAP: 0 0 0 .");
    ok(strstr(z, "\"v=DMARC1; p=none\"") != NULL, "no DKIM key: p=none");
    ok(strstr(z, "autoconfig.") == NULL, "no [web]: no autoconfig name");
    buf_reset(&b);
    clientconfig_dns(&cc, true, 2080, &b);
    z = buf_cstr(&b);
    ok(strstr(z, "\"v=DMARC1; p=quarantine\"") != NULL, "a DKIM key: p=quarantine");
    ok(strstr(z, "autodiscover.example.test. CNAME mail.example.test.\n") != NULL, "[web]: names");

    char e[64];
    is_int(email("<Autodiscover><Request><EMailAddress>a@b.test</EMailAddress></Request>"
                 "</Autodiscover>",
                 e, sizeof(e)),
           1, "Outlook's request");
    is_str(e, "a@b.test", "its address");
    is_int(email("<x:EMailAddress>p@q.test</x:EMailAddress>", e, sizeof(e)), 1, "a prefix");
    is_str(e, "p@q.test", "its address");
    is_int(email("<EMailAddress>&quot;a&lt;b&amp;&apos;&gt;&quot;@b.test</EMailAddress>", e,
                 sizeof(e)),
           1, "entities");
    is_str(e, "\"a<b&'>\"@b.test", "decoded");
    is_int(email("<EMailAddress>a&nbsp;b@c</EMailAddress>", e, sizeof(e)), -1,
           "another entity: refused");
    is_int(email("<EMailAddress><x/>a@b</EMailAddress>", e, sizeof(e)), -1, "an element inside");
    is_int(email("<EMailAddress>a@b", e, sizeof(e)), -1, "unclosed");
    is_int(email("<EMailAddress></EMailAddress>", e, sizeof(e)), 0, "empty");
    is_int(email("<Request>EMailAddress></Request>", e, sizeof(e)), 0, "the word, not the tag");
    is_int(email("</EMailAddress>a@b</EMailAddress>", e, sizeof(e)), 0, "a closing tag first");
    is_int(
        email("<EMailAddress>aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "@b</EMailAddress>",
              e, sizeof(e)),
        -1, "too long for out");
    is_int(email("", e, sizeof(e)), 0, "nothing");

    ok(clientconfig_email_domain("\"a@b\"@c.test", e, sizeof(e)) && strcmp(e, "c.test") == 0,
       "the domain after the last '@'");
    ok(!clientconfig_email_domain("nobody", e, sizeof(e)), "no '@': none");
    buf_free(&b);
    buf_free(&c);
    buf_free(&m1);
    buf_free(&m2);
    return done_testing();
}
