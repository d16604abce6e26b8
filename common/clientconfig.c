/*
 * clientconfig.c — the files mail clients configure themselves from, and a
 * domain's DNS records; see clientconfig.h.
 *
 * kotak offers POP3 and submission only, and the files say so: POP3 with
 * implicit TLS first and STLS second, submission with implicit TLS first and
 * STARTTLS second (RFC 8314 3.3 and 5.1: implicit TLS is preferred), a login
 * with the whole address and a password in clear text inside TLS (what
 * kotak's AUTH PLAIN/LOGIN and USER/PASS are), and POP3 told to leave
 * messages on the server, so that a phone and a desk can both read them.
 * The same choices as mox makes for IMAP, written for POP3.
 */
#include "clientconfig.h"

#include <stdio.h>
#include <string.h>

#include <mbedtls/sha256.h>

#include "util.h"

/* The placeholder Thunderbird fills in with the address the user typed. */
#define TB_EMAIL "%EMAILADDRESS%"

void clientconfig_from_conf(struct clientconfig *cc, const struct conf *conf)
{
    const struct conf_listener *l = conf->listeners;
    cc->hostname = conf->hostname;
    cc->submissions = l[CONF_SUBMISSIONS].n > 0 ? l[CONF_SUBMISSIONS].ep[0].port : 0;
    cc->submission = l[CONF_SUBMISSION].n > 0 ? l[CONF_SUBMISSION].ep[0].port : 0;
    cc->pop3s = l[CONF_POP3S].n > 0 ? l[CONF_POP3S].ep[0].port : 0;
    cc->pop3 = l[CONF_POP3].n > 0 ? l[CONF_POP3].ep[0].port : 0;
}

bool clientconfig_usable(const struct clientconfig *cc)
{
    return (cc->pop3s != 0 || cc->pop3 != 0) && (cc->submissions != 0 || cc->submission != 0);
}

void clientconfig_xml_escape(struct buf *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        switch (*p) {
        case '&':
            buf_append_str(out, "&amp;");
            break;
        case '<':
            buf_append_str(out, "&lt;");
            break;
        case '>':
            buf_append_str(out, "&gt;");
            break;
        case '"':
            buf_append_str(out, "&quot;");
            break;
        case '\'':
            buf_append_str(out, "&apos;");
            break;
        default:
            /* XML 1.0 allows no control octet but tab and line ends; none belongs in a value. */
            if (*p >= 0x20 && *p != 0x7f)
                buf_append(out, p, 1);
        }
    }
}

/* <name>value</name> with value escaped, on a line of its own after indent spaces. */
static void element(struct buf *out, int indent, const char *name, const char *value)
{
    buf_printf(out, "%*s<%s>", indent, "", name);
    clientconfig_xml_escape(out, value);
    buf_printf(out, "</%s>\n", name);
}

static void element_port(struct buf *out, int indent, const char *name, uint16_t port)
{
    buf_printf(out, "%*s<%s>%u</%s>\n", indent, "", name, (unsigned)port, name);
}

/* --- Thunderbird ------------------------------------------------------------- */

static void tb_server(const struct clientconfig *cc, struct buf *out, bool incoming, uint16_t port,
                      const char *socket_type)
{
    if (port == 0)
        return;
    buf_printf(out, "    <%s type=\"%s\">\n", incoming ? "incomingServer" : "outgoingServer",
               incoming ? "pop3" : "smtp");
    element(out, 6, "hostname", cc->hostname);
    element_port(out, 6, "port", port);
    element(out, 6, "socketType", socket_type);
    element(out, 6, "username", cc->email ? cc->email : TB_EMAIL);
    element(out, 6, "authentication", "password-cleartext");
    if (incoming)
        buf_append_str(out, "      <pop3>\n"
                            "        <leaveMessagesOnServer>true</leaveMessagesOnServer>\n"
                            "        <downloadOnBiff>true</downloadOnBiff>\n"
                            "      </pop3>\n");
    buf_printf(out, "    </%s>\n", incoming ? "incomingServer" : "outgoingServer");
}

void clientconfig_thunderbird(const struct clientconfig *cc, struct buf *out)
{
    buf_append_str(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                        "<clientConfig version=\"1.1\">\n"
                        "  <emailProvider id=\"");
    clientconfig_xml_escape(out, cc->domain);
    buf_append_str(out, "\">\n");
    element(out, 4, "domain", cc->domain);
    element(out, 4, "displayName", cc->email ? cc->email : cc->domain);
    element(out, 4, "displayShortName", cc->domain);
    tb_server(cc, out, true, cc->pop3s, "SSL");
    tb_server(cc, out, true, cc->pop3, "STARTTLS");
    tb_server(cc, out, false, cc->submissions, "SSL");
    tb_server(cc, out, false, cc->submission, "STARTTLS");
    buf_append_str(out, "  </emailProvider>\n</clientConfig>\n");
}

/* --- Outlook ------------------------------------------------------------------- */

/*
 * One <Protocol>: implicit TLS when that port is on (SSL on, Encryption SSL),
 * else STARTTLS (SSL on, Encryption TLS). SPA off: Microsoft's own password
 * exchange, which kotak does not speak.
 */
static void ad_protocol(const struct clientconfig *cc, struct buf *out, const char *type,
                        uint16_t implicit, uint16_t starttls)
{
    if (implicit == 0 && starttls == 0)
        return;
    buf_append_str(out, "      <Protocol>\n");
    element(out, 8, "Type", type);
    element(out, 8, "Server", cc->hostname);
    element_port(out, 8, "Port", implicit ? implicit : starttls);
    if (cc->email != NULL)
        element(out, 8, "LoginName", cc->email);
    element(out, 8, "DomainRequired", "off");
    element(out, 8, "SPA", "off");
    element(out, 8, "SSL", "on");
    element(out, 8, "Encryption", implicit ? "SSL" : "TLS");
    element(out, 8, "AuthRequired", "on");
    if (strcmp(type, "SMTP") == 0)
        element(out, 8, "UsePOPAuth", "on");
    buf_append_str(out, "      </Protocol>\n");
}

void clientconfig_autodiscover(const struct clientconfig *cc, struct buf *out)
{
    buf_append_str(
        out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<Autodiscover "
             "xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n"
             "  <Response "
             "xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/"
             "responseschema/2006a\">\n"
             "    <Account>\n"
             "      <AccountType>email</AccountType>\n"
             "      <Action>settings</Action>\n");
    ad_protocol(cc, out, "POP3", cc->pop3s, cc->pop3);
    ad_protocol(cc, out, "SMTP", cc->submissions, cc->submission);
    buf_append_str(out, "    </Account>\n  </Response>\n</Autodiscover>\n");
}

/* --- Apple ------------------------------------------------------------------- */

/* A name-based UUID (RFC 9562 5.8 layout, version 8) from SHA-256 of what, the domain and the
 * address: the same profile always has the same UUIDs. */
static void uuid_of(const struct clientconfig *cc, const char *what, char out[37])
{
    mbedtls_sha256_context ctx;
    unsigned char h[32];
    mbedtls_sha256_init(&ctx);
    mbedtls_sha256_starts_ret(&ctx, 0);
    const char *parts[] = {"kotak clientconfig 1", what, cc->domain, cc->email ? cc->email : ""};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        mbedtls_sha256_update_ret(&ctx, (const unsigned char *)parts[i], strlen(parts[i]) + 1);
    mbedtls_sha256_finish_ret(&ctx, h);
    mbedtls_sha256_free(&ctx);
    h[6] = (unsigned char)((h[6] & 0x0f) | 0x80); /* version 8: custom */
    h[8] = (unsigned char)((h[8] & 0x3f) | 0x80); /* the RFC's variant */
    static const char hexdig[] = "0123456789ABCDEF";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hexdig[h[i] >> 4];
        out[o++] = hexdig[h[i] & 15];
    }
    out[o] = '\0';
}

static void pl_string(struct buf *out, int indent, const char *key, const char *value)
{
    element(out, indent, "key", key);
    element(out, indent, "string", value);
}

static void pl_int(struct buf *out, int indent, const char *key, unsigned value)
{
    element(out, indent, "key", key);
    buf_printf(out, "%*s<integer>%u</integer>\n", indent, "", value);
}

static void pl_bool(struct buf *out, int indent, const char *key, bool value)
{
    element(out, indent, "key", key);
    buf_printf(out, "%*s<%s/>\n", indent, "", value ? "true" : "false");
}

/* The domain's labels in reverse order ("test.example"), as Apple's identifiers are written. */
static void reverse_domain(struct buf *out, const char *domain)
{
    size_t n = strlen(domain);
    bool first = true;
    while (n > 0) {
        size_t start = n;
        while (start > 0 && domain[start - 1] != '.')
            start--;
        char label[64];
        snprintf(label, sizeof(label), "%.*s", (int)(n - start), domain + start);
        if (!first)
            buf_append_str(out, ".");
        clientconfig_xml_escape(out, label);
        first = false;
        n = start > 0 ? start - 1 : 0;
    }
}

void clientconfig_mobileconfig(const struct clientconfig *cc, struct buf *out)
{
    char uuid_profile[37], uuid_account[37];
    uuid_of(cc, "profile", uuid_profile);
    uuid_of(cc, "account", uuid_account);
    /* Identifiers: reverse-DNS names, unique per domain and address, so a second profile for
     * another address stands beside the first and the same one replaces itself. */
    struct buf id;
    buf_init(&id, 4096);
    reverse_domain(&id, cc->domain);
    buf_append_str(&id, ".kotak.mail");
    if (cc->email != NULL) {
        char hash[37];
        uuid_of(cc, "address", hash);
        buf_printf(&id, ".%.8s", hash);
    }
    const char *ident = buf_cstr(&id);
    bool implicit_in = cc->pop3s != 0, implicit_out = cc->submissions != 0;

    buf_append_str(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                        "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" "
                        "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
                        "<plist version=\"1.0\">\n"
                        "<dict>\n"
                        "  <key>PayloadContent</key>\n"
                        "  <array>\n"
                        "    <dict>\n");
    pl_string(out, 6, "EmailAccountDescription", cc->domain);
    pl_string(out, 6, "EmailAccountType", "EmailTypePOP");
    /* Without an address, the device asks for it, and for the user names, as it installs. */
    if (cc->email != NULL)
        pl_string(out, 6, "EmailAddress", cc->email);
    pl_string(out, 6, "IncomingMailServerAuthentication", "EmailAuthPassword");
    pl_string(out, 6, "IncomingMailServerHostName", cc->hostname);
    pl_int(out, 6, "IncomingMailServerPortNumber", implicit_in ? cc->pop3s : cc->pop3);
    pl_bool(out, 6, "IncomingMailServerUseSSL", implicit_in);
    if (cc->email != NULL)
        pl_string(out, 6, "IncomingMailServerUsername", cc->email);
    pl_string(out, 6, "OutgoingMailServerAuthentication", "EmailAuthPassword");
    pl_string(out, 6, "OutgoingMailServerHostName", cc->hostname);
    pl_int(out, 6, "OutgoingMailServerPortNumber", implicit_out ? cc->submissions : cc->submission);
    pl_bool(out, 6, "OutgoingMailServerUseSSL", implicit_out);
    if (cc->email != NULL)
        pl_string(out, 6, "OutgoingMailServerUsername", cc->email);
    pl_bool(out, 6, "OutgoingPasswordSameAsIncomingPassword", true);
    buf_append_str(out, "      <key>PayloadIdentifier</key>\n      <string>");
    buf_append_str(out, ident); /* escaped as it was built */
    buf_append_str(out, ".account</string>\n");
    pl_string(out, 6, "PayloadType", "com.apple.mail.managed");
    pl_string(out, 6, "PayloadUUID", uuid_account);
    pl_int(out, 6, "PayloadVersion", 1);
    buf_append_str(out, "    </dict>\n  </array>\n  <key>PayloadDisplayName</key>\n  <string>");
    clientconfig_xml_escape(out, cc->email ? cc->email : cc->domain);
    buf_append_str(out, " mail</string>\n  <key>PayloadIdentifier</key>\n  <string>");
    buf_append_str(out, ident);
    buf_append_str(out, "</string>\n");
    pl_string(out, 2, "PayloadType", "Configuration");
    pl_string(out, 2, "PayloadUUID", uuid_profile);
    pl_int(out, 2, "PayloadVersion", 1);
    buf_append_str(out, "</dict>\n</plist>\n");
    buf_free(&id);
}

/* --- DNS ------------------------------------------------------------------------- */

/* One SRV record: "0 0 0 ." when the service is not offered (RFC 6186 4, RFC 2782). */
static void srv(const struct clientconfig *cc, struct buf *out, const char *service,
                unsigned priority, uint16_t port)
{
    if (port == 0)
        buf_printf(out, "_%s._tcp.%s. SRV 0 0 0 .\n", service, cc->domain);
    else
        buf_printf(out, "_%s._tcp.%s. SRV %u 1 %u %s.\n", service, cc->domain, priority,
                   (unsigned)port, cc->hostname);
}

void clientconfig_dns(const struct clientconfig *cc, bool dkim, uint16_t web_port, struct buf *out)
{
    const char *d = cc->domain, *h = cc->hostname;
    buf_printf(out, "; mail for %s goes to %s, which must have an A or AAAA record\n", d, h);
    buf_printf(out, "%s. MX 10 %s.\n", d, h);
    buf_printf(out, "; SPF (RFC 7208): only the MX host sends the domain's mail\n");
    buf_printf(out, "%s. TXT \"v=spf1 mx -all\"\n", d);
    if (dkim) {
        buf_printf(out, "; DMARC (RFC 7489): mail is DKIM-signed, which survives forwarding, so "
                        "mail that fails both SPF and DKIM is forged: quarantine it\n");
        buf_printf(out, "_dmarc.%s. TXT \"v=DMARC1; p=quarantine\"\n", d);
    } else {
        buf_printf(out,
                   "; DMARC (RFC 7489): p=none until the DKIM key is published; SPF alone "
                   "fails on every forward ('kotak dkim keygen %s', then p=quarantine)\n",
                   d);
        buf_printf(out, "_dmarc.%s. TXT \"v=DMARC1; p=none\"\n", d);
    }
    buf_printf(out, "; where clients find the server (RFC 6186, RFC 8314 5.1: implicit TLS "
                    "first); \"0 0 0 .\": not offered\n");
    srv(cc, out, "submissions", 0, cc->submissions);
    srv(cc, out, "submission", 10, cc->submission);
    srv(cc, out, "pop3s", 0, cc->pop3s);
    srv(cc, out, "pop3", 10, cc->pop3);
    srv(cc, out, "imaps", 0, 0);
    srv(cc, out, "imap", 0, 0);
    if (web_port != 0) {
        buf_printf(out,
                   "; the well-known files, served by [web] listen (port %u; clients ask "
                   "on 80 and 443, so put a proxy there if it is not)\n",
                   (unsigned)web_port);
        buf_printf(out, "autoconfig.%s. CNAME %s.\n", d, h);
        buf_printf(out, "autodiscover.%s. CNAME %s.\n", d, h);
    }
}

/* --- the autodiscover request ---------------------------------------------------- */

/* decode_string's step for XML text: the five predefined entities, no other, no '<'. */
static bool xml_char(const char *in, size_t n, size_t *i, char *c_r)
{
    static const struct {
        const char *name;
        char c;
    } ents[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    char c = in[*i];
    if (c == '<')
        return false;
    if (c == '&') {
        size_t k = 0, nk = sizeof(ents) / sizeof(ents[0]);
        while (k < nk && !(n - *i - 1 >= strlen(ents[k].name) &&
                           memcmp(in + *i + 1, ents[k].name, strlen(ents[k].name)) == 0))
            k++;
        if (k == nk)
            return false;
        c = ents[k].c;
        *i += strlen(ents[k].name);
    }
    *c_r = c;
    return true;
}

static const char *find(const char *p, const char *end, const char *what)
{
    size_t n = strlen(what);
    for (; (size_t)(end - p) >= n; p++)
        if (memcmp(p, what, n) == 0)
            return p;
    return NULL;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

int clientconfig_request_email(const char *body, size_t len, char *out, size_t size)
{
    /* Outlook's request: <Autodiscover xmlns=...><Request><EMailAddress>a@b</EMailAddress>
     * <AcceptableResponseSchema>...</...></Request></Autodiscover>. A prefixed name
     * (<a:EMailAddress>) is taken too: only the element's local name is looked for. */
    const char *end = body + len;
    static const char tag[] = "EMailAddress>";
    for (const char *p = body; (p = find(p, end, tag)) != NULL; p++) {
        const char *q = p;
        if (q > body && q[-1] == ':') { /* a prefix: skip back over it */
            q--;
            while (q > body && name_char(q[-1]))
                q--;
        }
        if (q == body || q[-1] != '<')
            continue; /* a closing tag ("</"), or the word inside some other text */
        const char *v = p + strlen(tag);
        const char *lt = memchr(v, '<', (size_t)(end - v));
        if (lt == NULL || lt + 1 == end || lt[1] != '/')
            return -1; /* unclosed, or an element inside it */
        if (lt == v)
            return 0;
        return decode_string(v, (size_t)(lt - v), out, size, xml_char) ? 1 : -1;
    }
    return 0;
}

bool clientconfig_email_domain(const char *email, char *out, size_t size)
{
    const char *at = strrchr(email, '@');
    if (at == NULL || at[1] == '\0')
        return false;
    int n = snprintf(out, size, "%s", at + 1);
    return n > 0 && (size_t)n < size;
}
