/*
 * clientconfig.h — what mail clients read to set themselves up, and the DNS
 * records a domain needs: Thunderbird's config-v1.1.xml (its autoconfig
 * format), Outlook's autodiscover.xml (the POX response schema), an Apple
 * .mobileconfig (a com.apple.mail.managed payload), and, in zone-file form,
 * MX, SPF, DMARC and the SRV records of RFC 6186 and RFC 8314.
 *
 * Pure: the server's name, the domain, the ports in use and perhaps a user's
 * address in; text out. No I/O, no clock: the same input gives the same octets,
 * so the files can be compared, kept in version control and served as they
 * are. Every value written into XML is escaped, whoever supplied it.
 *
 * `kotak clientconfig` (ctl/clientconfig.c) writes the files and prints the
 * records; kotak-smtpd's [web] listener serves the files at their
 * well-known paths (web/web.c).
 */
#ifndef KOTAK_CLIENTCONFIG_H
#define KOTAK_CLIENTCONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "conf.h"

#define CLIENTCONFIG_EMAIL_MAX 320 /* an address as a client may send it: local@domain */

struct clientconfig {
    const char *hostname; /* the server's name, as clients connect to it ([server] hostname) */
    const char *domain;   /* the mail domain, ASCII (an international one in its xn-- form) */
    const char *email;    /* a user's address, or NULL: clients then ask the user */
    /* The port of each listener, 0 when it is off. */
    uint16_t submissions; /* implicit TLS, preferred (RFC 8314 3.3) */
    uint16_t submission;  /* STARTTLS */
    uint16_t pop3s;       /* implicit TLS, preferred */
    uint16_t pop3;        /* STLS */
};

/*
 * Fills cc's ports from conf: the port of each listener's first endpoint,
 * 0 for a listener that is off; hostname from [server] hostname. domain and
 * email are the caller's to set.
 */
void clientconfig_from_conf(struct clientconfig *cc, const struct conf *conf);

/* True when cc offers a way to read mail (POP3) and one to send it (submission). */
bool clientconfig_usable(const struct clientconfig *cc);

/* Thunderbird's config-v1.1.xml, appended to out. */
void clientconfig_thunderbird(const struct clientconfig *cc, struct buf *out);

/* Outlook's autodiscover.xml (the POX "outlook" response schema), appended to out. */
void clientconfig_autodiscover(const struct clientconfig *cc, struct buf *out);

/*
 * An Apple configuration profile (a .mobileconfig), appended to out. Its
 * UUIDs come from a hash of the domain and the address, so the same input
 * gives the same profile, and installing it again replaces the one before.
 */
void clientconfig_mobileconfig(const struct clientconfig *cc, struct buf *out);

/*
 * The DNS records of the domain in zone-file form, fully qualified, each
 * line after a comment that says what it is for: MX, SPF, DMARC (p=quarantine
 * with a DKIM key, since a DKIM signature survives forwarding; p=none without
 * one, since SPF alone fails on every forward), the SRV records of RFC 6186
 * and RFC 8314 (a service not offered, IMAP among them, as "0 0 0 ."), and,
 * when web_port is not 0, the autoconfig and autodiscover names. The DKIM
 * record is the caller's (`kotak dkim dns` prints it).
 */
void clientconfig_dns(const struct clientconfig *cc, bool dkim, uint16_t web_port, struct buf *out);

/*
 * The EMailAddress of an Outlook autodiscover request body (XML), with the
 * five predefined entities decoded, into out[0..size). Returns 1 found, 0
 * when the body has none (or an empty one), -1 when it is malformed or does
 * not fit.
 */
int clientconfig_request_email(const char *body, size_t len, char *out, size_t size);

/*
 * The domain of an address "local@domain" (after its last '@'), into
 * out[0..size) as it is. False when there is no '@' or nothing after it.
 */
bool clientconfig_email_domain(const char *email, char *out, size_t size);

/* Appends s to out with &, <, >, " and ' as XML entities, and every control octet dropped. */
void clientconfig_xml_escape(struct buf *out, const char *s);

#endif
