"""The clients' set-up files on [web] listen (kotak-smtpd; web/web.c, common/clientconfig.c).

Fetched with urllib as the clients ask for them: Thunderbird's
config-v1.1.xml (by ?emailaddress= and by the Host autoconfig.DOMAIN),
Outlook's autodiscover.xml (a POST with an XML body), the Apple
.mobileconfig. Each is parsed (xml.etree, plistlib) and its ports are
compared with the listeners the harness configured. A domain kotak does not
serve is 404; a body over 4 KiB is refused; a hostile address never comes
back unescaped. The Host may be autoconfig.DOMAIN, autodiscover.DOMAIN, or
an address literal (IPv6 in brackets too: no domain, so 404 without an
address). Only a user's address goes into the files: any other, in a
domain kotak serves, gets the domain's files for whoever types one in.
"""
import plistlib
import socket
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

from kotak_harness import DOMAIN, HOSTNAME, KotakTestCase, config
from test_web import http

ALICE = "alice@example.test"
AD_NS = {"a": "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006",
         "o": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}
AD_REQUEST = ("<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n"
              "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/"
              "outlook/requestschema/2006\"><Request><EMailAddress>{}</EMailAddress>"
              "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/"
              "outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>")


def fetch(port, path, host=None, data=None):
    """(status, headers, body) of a GET (or a POST when data is given)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    if host is not None:
        req.add_header("Host", host)
    if data is not None:
        req.add_header("Content-Type", "text/xml")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def raw(port, request):
    """Sends request as it is; the whole answer (the server closes)."""
    return http(port, request, timeout=10)


def servers(root, tag):
    return [(e.get("type"), e.findtext("hostname"), int(e.findtext("port")),
             e.findtext("socketType"), e.findtext("username"), e.findtext("authentication"))
            for e in root.iter(tag)]


class WellKnown(KotakTestCase):

    def autoconfig(self, path, query=None, host=None):
        q = "?" + urllib.parse.urlencode(query) if query else ""
        return fetch(self.kotak.web_port, path + q, host=host)

    def test_thunderbird_config_by_address_on_both_paths(self):
        p = self.kotak.ports
        for path in ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"):
            status, headers, body = self.autoconfig(path, {"emailaddress": ALICE})
            self.assertEqual(status, 200, (path, body))
            self.assertTrue(headers["Content-Type"].startswith("text/xml"), headers)
            root = ET.fromstring(body)
            self.assertEqual(root.tag, "clientConfig")
            self.assertEqual(root.get("version"), "1.1")
            self.assertEqual(root.find("emailProvider").get("id"), DOMAIN)
            self.assertEqual(root.findtext("emailProvider/domain"), DOMAIN)
            self.assertEqual(servers(root, "incomingServer"), [
                ("pop3", HOSTNAME, p["pop3s"], "SSL", ALICE, "password-cleartext"),
                ("pop3", HOSTNAME, p["pop3"], "STARTTLS", ALICE, "password-cleartext")])
            self.assertEqual(servers(root, "outgoingServer"), [
                ("smtp", HOSTNAME, p["submissions"], "SSL", ALICE, "password-cleartext"),
                ("smtp", HOSTNAME, p["submission"], "STARTTLS", ALICE, "password-cleartext")])
            for inc in root.iter("incomingServer"):
                self.assertEqual(inc.findtext("pop3/leaveMessagesOnServer"), "true")

    def test_thunderbird_config_by_host_names_no_user(self):
        status, _, body = self.autoconfig("/mail/config-v1.1.xml",
                                          host=f"autoconfig.example.test:{self.kotak.web_port}")
        self.assertEqual(status, 200, body)
        root = ET.fromstring(body)
        self.assertEqual(root.findtext("emailProvider/domain"), DOMAIN)
        self.assertEqual({e.findtext("username") for e in root.iter("incomingServer")},
                         {"%EMAILADDRESS%"}, "the client fills in the address typed")

    def test_a_foreign_domain_is_404(self):
        for query, host in (({"emailaddress": "bob@other.test"}, None),
                            (None, "autoconfig.other.test"),
                            ({"emailaddress": "bob@example.test.evil"}, None)):
            for path in ("/mail/config-v1.1.xml", "/mail/config.mobileconfig"):
                status, _, body = self.autoconfig(path, query, host)
                self.assertEqual(status, 404, (path, query, host, body))
                self.assertNotIn(b"other.test", body)
        status, _, _ = fetch(self.kotak.web_port, "/autodiscover/autodiscover.xml",
                             data=AD_REQUEST.format("bob@other.test").encode())
        self.assertEqual(status, 404)

    def test_outlook_autodiscover_post(self):
        p = self.kotak.ports
        for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
            status, headers, body = fetch(self.kotak.web_port, path,
                                          data=AD_REQUEST.format(ALICE).encode())
            self.assertEqual(status, 200, (path, body))
            self.assertTrue(headers["Content-Type"].startswith("text/xml"), headers)
            root = ET.fromstring(body)
            self.assertEqual(root.tag, "{%s}Autodiscover" % AD_NS["a"])
            account = root.find("o:Response/o:Account", AD_NS)
            self.assertEqual(account.findtext("o:AccountType", namespaces=AD_NS), "email")
            self.assertEqual(account.findtext("o:Action", namespaces=AD_NS), "settings")
            protos = {e.findtext("o:Type", namespaces=AD_NS): e
                      for e in account.findall("o:Protocol", AD_NS)}
            self.assertEqual(set(protos), {"POP3", "SMTP"})
            for kind, port in (("POP3", p["pop3s"]), ("SMTP", p["submissions"])):
                e = protos[kind]
                val = lambda name: e.findtext("o:" + name, namespaces=AD_NS)  # noqa: E731
                self.assertEqual(val("Server"), HOSTNAME)
                self.assertEqual(int(val("Port")), port)
                self.assertEqual(val("LoginName"), ALICE)
                self.assertEqual(val("SSL"), "on")
                self.assertEqual(val("SPA"), "off")
        status, headers, _ = fetch(self.kotak.web_port, "/autodiscover/autodiscover.xml")
        self.assertEqual(status, 405, "autodiscover is POSTed")
        self.assertEqual(headers["Allow"], "POST")

    def test_a_body_over_4_kib_or_badly_framed_is_refused(self):
        port = self.kotak.web_port
        head = b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: autodiscover.example.test\r\n"
        self.assertTrue(raw(port, head + b"Content-Length: 4097\r\n\r\n")
                        .startswith(b"HTTP/1.1 413 "), "over 4 KiB: 413")
        self.assertTrue(raw(port, head + b"\r\n").startswith(b"HTTP/1.1 411 "),
                        "no Content-Length: 411")
        self.assertTrue(raw(port, head + b"Content-Length: 5, 5\r\n\r\n")
                        .startswith(b"HTTP/1.1 400 "), "a list as Content-Length: 400")
        self.assertTrue(raw(port, head + b"Transfer-Encoding: chunked\r\n\r\n")
                        .startswith(b"HTTP/1.1 400 "), "chunked: 400")
        self.assertTrue(raw(port, head + b"Content-Length: 5\r\n\r\nhello")
                        .startswith(b"HTTP/1.1 400 "), "no EMailAddress: 400")
        # 4 KiB exactly is taken, and the body may come after the head, in pieces.
        body = AD_REQUEST.format(ALICE).encode()
        body += b" " * (4096 - len(body))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(head + b"Content-Length: 4096\r\n\r\n" + body[:100])
            time.sleep(0.2)  # two reads for the server, not one
            s.sendall(body[100:])
            out = b""
            while (data := s.recv(65536)):
                out += data
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK"), out[:200])
        self.assertIn(b"<LoginName>alice@example.test</LoginName>", out)

    def test_a_hostile_address_never_comes_back_unescaped(self):
        port = self.kotak.web_port
        hostile = "\"a<b&c'd>\"@example.test"  # a valid quoted local part
        for path in ("/mail/config-v1.1.xml", "/mail/config.mobileconfig"):
            status, _, body = self.autoconfig(path, {"emailaddress": hostile})
            self.assertEqual(status, 200, (path, body))
            self.assertNotIn(b"<b&c", body)
            self.assertNotIn(b"'d>", body)
            # No user has it: the domain's files, which do not name it at all.
            self.assertNotIn(b"b&amp;c", body)
            if path.endswith(".xml"):
                root = ET.fromstring(body)
                self.assertEqual({e.findtext("username") for e in root.iter("incomingServer")},
                                 {"%EMAILADDRESS%"})
            else:
                self.assertNotIn("EmailAddress", plistlib.loads(body)["PayloadContent"][0])
        for bad in ("x\"><script>alert(1)</script>@example.test", "<&>@example.test",
                    "alice@example.test\r\nX-Injected: 1"):
            status, headers, body = self.autoconfig("/mail/config-v1.1.xml", {"emailaddress": bad})
            self.assertEqual(status, 400, (bad, body))
            self.assertNotIn(b"<script>", body)
            self.assertIsNone(headers.get("X-Injected"))
        # In Outlook's body the address comes XML-escaped; it goes back escaped too.
        status, _, body = fetch(port, "/autodiscover/autodiscover.xml",
                                data=AD_REQUEST.format("&quot;a&lt;b&amp;c&quot;@example.test")
                                .encode())
        self.assertEqual(status, 200, body)
        self.assertNotIn(b"a<b&c", body)
        root = ET.fromstring(body)
        self.assertEqual([e.text for e in root.iter("{%s}LoginName" % AD_NS["o"])], [],
                         "no user has it: no login name")
        status, _, body = fetch(port, "/autodiscover/autodiscover.xml",
                                data=AD_REQUEST.format("<x>@example.test").encode())
        self.assertEqual(status, 400, "an element inside EMailAddress: 400")

    def test_the_apple_profile(self):
        p = self.kotak.ports
        path = "/mail/config.mobileconfig?emailaddress=" + urllib.parse.quote(ALICE)
        status, headers, body = fetch(self.kotak.web_port, path)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "application/x-apple-aspen-config")
        self.assertIn("example.test.mobileconfig", headers["Content-Disposition"])
        profile = plistlib.loads(body)
        self.assertEqual(profile["PayloadType"], "Configuration")
        mail = profile["PayloadContent"][0]
        self.assertEqual(mail["PayloadType"], "com.apple.mail.managed")
        self.assertEqual(mail["EmailAccountType"], "EmailTypePOP")
        self.assertEqual(mail["EmailAddress"], ALICE)
        self.assertEqual(mail["IncomingMailServerHostName"], HOSTNAME)
        self.assertEqual(mail["IncomingMailServerPortNumber"], p["pop3s"])
        self.assertIs(mail["IncomingMailServerUseSSL"], True)
        self.assertEqual(mail["OutgoingMailServerPortNumber"], p["submissions"])
        self.assertIs(mail["OutgoingMailServerUseSSL"], True)
        again = fetch(self.kotak.web_port, "/.well-known/autoconfig/mail/config.mobileconfig"
                      "?emailaddress=" + urllib.parse.quote(ALICE))[2]
        self.assertEqual(again, body, "the same profile, the same UUIDs")
        bob = plistlib.loads(fetch(self.kotak.web_port, "/mail/config.mobileconfig"
                                   "?emailaddress=bob%40example.test")[2])
        self.assertNotEqual(bob["PayloadUUID"], profile["PayloadUUID"], "a profile per address")

    def test_an_address_that_is_no_user_gets_the_domains_files(self):
        # Anyone may ask; only a user's address is written into what comes back.
        for nobody in ("nobody@example.test", "sales@example.test"):  # none; an alias
            status, _, body = self.autoconfig("/mail/config-v1.1.xml", {"emailaddress": nobody})
            self.assertEqual(status, 200, body)
            self.assertNotIn(nobody.split("@")[0].encode(), body)
            root = ET.fromstring(body)
            self.assertEqual({e.findtext("username") for e in root.iter("incomingServer")},
                             {"%EMAILADDRESS%"})
            self.assertEqual(root.findtext("emailProvider/domain"), DOMAIN)
            status, _, body = self.autoconfig("/mail/config.mobileconfig", {"emailaddress": nobody})
            self.assertEqual(status, 200, body)
            mail = plistlib.loads(body)["PayloadContent"][0]
            for key in ("EmailAddress", "IncomingMailServerUsername",
                        "OutgoingMailServerUsername"):
                self.assertNotIn(key, mail)
            status, _, body = fetch(self.kotak.web_port, "/autodiscover/autodiscover.xml",
                                    data=AD_REQUEST.format(nobody).encode())
            self.assertEqual(status, 200, body)
            self.assertNotIn(b"LoginName", body)
            self.assertNotIn(nobody.split("@")[0].encode(), body)
        # A user's address, in another case, is one.
        status, _, body = self.autoconfig("/mail/config-v1.1.xml",
                                          {"emailaddress": "Alice@Example.Test"})
        self.assertEqual(status, 200, body)
        self.assertIn(b"<username>Alice@Example.Test</username>", body)

    def test_the_host_names_the_domain_in_every_published_form(self):
        port = self.kotak.web_port
        for host in (f"autoconfig.example.test:{port}", f"autodiscover.example.test:{port}",
                     f"AutoDiscover.Example.Test:{port}", "example.test", "example.test.:80",
                     f"autoconfig.example.test.:{port}", "autoconfig.example.test:"):
            for path in ("/mail/config-v1.1.xml", "/mail/config.mobileconfig"):
                status, _, body = self.autoconfig(path, host=host)
                self.assertEqual(status, 200, (host, path, body))
        # An address literal names no domain: 404 (not 400), unless an address is given.
        for host in (f"[::1]:{port}", "[::1]", f"127.0.0.1:{port}", "[v1.fe80::a+en1]:80"):
            status, _, body = self.autoconfig("/mail/config-v1.1.xml", host=host)
            self.assertEqual(status, 404, (host, body))
            status, _, body = self.autoconfig("/mail/config-v1.1.xml", {"emailaddress": ALICE},
                                              host=host)
            self.assertEqual(status, 200, (host, body))
        for host in ("[::1", "[::1]x", "example.test:8o", ":80", "autoconfig.other.test"):
            status, _, _ = self.autoconfig("/mail/config-v1.1.xml", host=host)
            self.assertEqual(status, 404 if "other" in host else 400, host)

    @config(web={"token": "class-7b"})
    def test_the_files_need_no_token_but_the_view_does(self):
        status, _, _ = self.autoconfig("/mail/config-v1.1.xml", {"emailaddress": ALICE})
        self.assertEqual(status, 200, "clients do not know the token")
        self.assertEqual(fetch(self.kotak.web_port, "/")[0], 403)

    @config(pop3s={"listen": ""}, submissions={"listen": ""})
    def test_a_listener_that_is_off_is_left_out(self):
        p = self.kotak.ports
        status, _, body = self.autoconfig("/mail/config-v1.1.xml", {"emailaddress": ALICE})
        self.assertEqual(status, 200, body)
        root = ET.fromstring(body)
        self.assertEqual([(s[2], s[3]) for s in servers(root, "incomingServer")],
                         [(p["pop3"], "STARTTLS")])
        self.assertEqual([(s[2], s[3]) for s in servers(root, "outgoingServer")],
                         [(p["submission"], "STARTTLS")])


if __name__ == "__main__":
    unittest.main()
