"""MTA-STS (RFC 8461) when kotak-smtpd delivers: alice@a.test submits mail
for bob@sts.test, whose domain publishes (in the test's DNS server) a TXT
record at _mta-sts.sts.test and a policy at
https://mta-sts.sts.test/.well-known/mta-sts.txt, served by a small HTTPS
server in this process (the standard library's http.server and ssl) on
127.0.0.6. A test CA made here with the openssl CLI signs the policy
server's certificate and the MX's; kotak-smtpd trusts that CA through
SSL_CERT_FILE and fetches from the policy server's port through
KOTAK_MTASTS_PORT (a knob for tests only). The MX is the scripted SMTP peer
of the outbound tests (tests/smtp_peer.py) on 127.0.0.4.

Cases: enforce with a listed MX and a valid certificate delivers over TLS;
enforce with an MX the policy does not list, an MX without STARTTLS, or an
MX whose certificate the CA did not sign defers (the message stays queued,
`kotak queue list` shows it, the log says why) and nothing reaches the MX
in plaintext; testing delivers and logs what enforce would refuse; no
_mta-sts record, and a policy server that is down with nothing cached,
deliver as before.
"""
import http.server
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
from unittest import mock

from kotak_harness import HarnessError
from peers import SmtpPeer, loopback_usable
from test_outbound_peers import PEER_IP, WAIT, PeerTestCase, message

POLICY_IP = "127.0.0.6"
DOMAIN = "sts.test"
MX = f"mx.{DOMAIN}"
RCPT = f"bob@{DOMAIN}"


def openssl(*args):
    p = subprocess.run(["openssl", *args], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=30)
    if p.returncode != 0:
        raise HarnessError(f"openssl {' '.join(args[:2])}: exit {p.returncode}: {p.stderr}")


class TestCa:
    """A CA of the test's own (EC P-256), and certificates it signs."""

    def __init__(self, directory, name="Kotak Test CA"):
        self.dir = directory
        self.cert = os.path.join(directory, "ca.crt")
        self.key = os.path.join(directory, "ca.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-days", "30", "-subj", f"/CN={name}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", self.key, "-out", self.cert)

    def issue(self, host):
        """(cert, key) for host, signed by this CA, with host as its one DNS SAN."""
        base = os.path.join(self.dir, host)
        key, csr, cert = base + ".key", base + ".csr", base + ".crt"
        ext = base + ".ext"
        with open(ext, "w") as f:
            f.write(f"subjectAltName=DNS:{host}\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-subj", f"/CN={host}", "-keyout", key, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", cert)
        return cert, key


class PolicyServer:
    """HTTPS on POLICY_IP: GET /.well-known/mta-sts.txt answers with
    (status, content_type, body) as set; every request path is recorded."""

    def __init__(self, cert, key, policy, status=200, content_type="text/plain", length=True):
        self.answer = (status, content_type, policy)
        self.length = length  # False: no Content-Length, the close ends the body
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Host")))
                status, ctype, body = outer.answer
                data = body.encode()
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                if outer.length:
                    self.send_header("Content-Length", str(len(data)))
                else:
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((POLICY_IP, 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def policy(mode, *mx, max_age=86400):
    lines = ["version: STSv1", f"mode: {mode}"] + [f"mx: {m}" for m in mx]
    return "\r\n".join(lines + [f"max_age: {max_age}", ""])


class MtaStsTestCase(PeerTestCase):
    IPS = (PEER_IP, POLICY_IP)

    def setUp(self):
        super().setUp()
        if not loopback_usable(POLICY_IP):
            self.skipTest(f"cannot listen on {POLICY_IP}")
        ca_dir = os.path.join(self.tmp, "ca")
        os.mkdir(ca_dir)
        self.ca = TestCa(ca_dir)
        self.policy_server = None

    def serve_policy(self, text, **kw):
        cert, key = self.ca.issue(f"mta-sts.{DOMAIN}")
        self.policy_server = PolicyServer(cert, key, text, **kw)
        self.addCleanup(self.policy_server.close)
        return self.policy_server

    def mx_peer(self, script=None, signed=True, tls=True):
        """The MX on PEER_IP: with a certificate for MX signed by the test CA
        (signed), self-signed (not signed), or no STARTTLS at all (not tls)."""
        cert = key = None
        if tls and signed:
            cert, key = self.ca.issue(MX)
        elif tls:
            cert, key = self.cert(MX)
        p = SmtpPeer(host=PEER_IP, script=script, cert=cert, key=key)
        self.addCleanup(p.close)
        p.start()
        self.peers.append(p)
        return p

    def zone(self, txt=("v=STSv1; id=20260101T000000;",), mx_host=MX):
        z = {
            DOMAIN: {"MX": [[10, mx_host]]},
            mx_host: {"A": [PEER_IP]},
            f"mta-sts.{DOMAIN}": {"A": [POLICY_IP]},
        }
        if txt is not None:
            # TTL 0: kotak-smtpd's resolver caches TXT answers for their TTL,
            # and these tests change the record while it runs.
            z[f"_mta-sts.{DOMAIN}"] = {"TXT": list(txt), "ttl": 0}
        return z

    def start_kotak(self, peer, zone, policy_port=None):
        """kotak-smtpd trusting the test CA (SSL_CERT_FILE, a copy readable by
        the daemon's user whatever it is) and fetching policies from
        policy_port (KOTAK_MTASTS_PORT; 9, the discard port, when none)."""
        shared = tempfile.mkdtemp(prefix="kotak-mtasts-ca-")
        self.addCleanup(shutil.rmtree, shared, True)
        os.chmod(shared, 0o755)
        ca = os.path.join(shared, "ca.pem")
        shutil.copyfile(self.ca.cert, ca)
        os.chmod(ca, 0o644)
        env = {"SSL_CERT_FILE": ca, "KOTAK_MTASTS_PORT": str(policy_port or 9)}
        self.dns_server = self.dns(zone)
        with mock.patch.dict(os.environ, env):
            self.kotak({"port": str(peer.port)}, self.dns_server)

    def assert_deferred_by_policy(self, peer, reason_re):
        self.submit([RCPT], message("held", to=RCPT))
        self.wait_log(r"event=mta-sts domain=sts.test mode=enforce .*result=refused "
                      + reason_re)
        self.wait_log(rf"event=delivery .*rcpt=<{RCPT}> .*result=deferred")
        self.assert_still_queued(RCPT)
        time.sleep(1.5)  # a retry comes within a second: still nothing goes
        self.assertEqual(peer.messages(), [])
        self.assertEqual(peer.events("mail"), [], "no transaction reached the MX")
        self.assertEqual(self.reports(), [])  # deferred, not bounced


class Enforce(MtaStsTestCase):

    def test_a_listed_mx_with_a_valid_certificate_gets_the_mail_over_tls(self):
        server = self.serve_policy(policy("enforce", MX))
        peer = self.mx_peer()
        self.start_kotak(peer, self.zone(), server.port)
        self.submit([RCPT], message("protected", to=RCPT))
        msg = peer.wait_messages(1, timeout=WAIT)[0]
        self.assertTrue(msg["tls"], msg)
        self.assertIn(b"protected", msg["data"])
        self.wait_queue_empty()
        self.assertIn(("/.well-known/mta-sts.txt", f"mta-sts.{DOMAIN}"), server.requests)
        self.wait_log(r"event=mta-sts-policy domain=sts.test result=fetched "
                      r"id=20260101T000000 mode=enforce max_age=86400 mx=mx.sts.test")
        self.wait_log(rf"event=delivery .*rcpt=<{RCPT}> .*tls=yes code=250 result=delivered")
        self.assertNotRegex(self.inst.log("smtpd"), r"event=mta-sts .*refused")

    def test_a_wildcard_pattern_and_the_cache_serve_a_second_message(self):
        server = self.serve_policy(policy("enforce", f"*.{DOMAIN}"))
        peer = self.mx_peer()
        self.start_kotak(peer, self.zone(), server.port)
        self.submit([RCPT], message("first", to=RCPT))
        peer.wait_messages(1, timeout=WAIT)
        self.wait_queue_empty()
        self.submit([RCPT], message("second", to=RCPT))
        peer.wait_messages(2, timeout=WAIT)
        # The TXT id did not change: the cached policy served the second.
        self.assertEqual(len(server.requests), 1, server.requests)

    def test_an_mx_the_policy_does_not_list_is_not_used(self):
        server = self.serve_policy(policy("enforce", "mx.elsewhere.test"))
        peer = self.mx_peer()
        self.start_kotak(peer, self.zone(), server.port)
        self.assert_deferred_by_policy(peer, r"reason=mx-not-in-policy")
        self.assertEqual(peer.events("connect"), [], "the unlisted MX was never contacted")
        self.wait_log(rf"event=delivery .*rcpt=<{RCPT}> .*result=deferred "
                      r"reply=.*MTA-STS policy of sts.test .*lists none of its MX hosts")

    def test_an_mx_without_starttls_gets_nothing_in_plaintext(self):
        server = self.serve_policy(policy("enforce", MX))
        peer = self.mx_peer(tls=False)
        self.start_kotak(peer, self.zone(), server.port)
        self.assert_deferred_by_policy(peer, r"reason=tls")
        self.wait_log(rf"event=delivery .*rcpt=<{RCPT}> .*result=deferred "
                      r"reply=.*MTA-STS .*TLS required but not offered")

    def test_an_mx_whose_certificate_does_not_verify_gets_nothing(self):
        server = self.serve_policy(policy("enforce", MX))
        peer = self.mx_peer(signed=False)  # self-signed: not the test CA's
        self.start_kotak(peer, self.zone(), server.port)
        self.assert_deferred_by_policy(peer, r"reason=tls")
        starttls = peer.wait_events("starttls", 1, timeout=WAIT)
        self.assertTrue(starttls)
        self.wait_log(rf"event=delivery .*rcpt=<{RCPT}> .*result=deferred "
                      r"reply=.*MTA-STS .*")


class Cached(MtaStsTestCase):

    def test_a_failed_refetch_falls_back_on_the_cached_policy(self):
        server = self.serve_policy(policy("enforce", MX))
        peer = self.mx_peer(tls=False)  # enforce keeps everything from it
        self.start_kotak(peer, self.zone(), server.port)
        self.assert_deferred_by_policy(peer, r"reason=tls")
        # A new id: kotak fetches again, finds the server gone, and keeps
        # applying the cached policy (RFC 8461 5.1), so still nothing goes.
        server.close()
        self.dns_server.set_zone(self.zone(txt=("v=STSv1; id=2;",)))
        self.wait_log(r"event=mta-sts-policy domain=sts.test result=fetch-failed .*"
                      r"use=cached mode=enforce")
        self.wait_log(r"event=mta-sts domain=sts.test mode=enforce .*result=refused", count=3)
        self.assert_still_queued(RCPT)
        self.assertEqual(peer.events("mail"), [])

    def test_the_txt_record_gone_keeps_the_cached_policy(self):
        server = self.serve_policy(policy("enforce", MX))
        peer = self.mx_peer(tls=False)
        self.start_kotak(peer, self.zone(), server.port)
        self.assert_deferred_by_policy(peer, r"reason=tls")
        fetches = len(server.requests)
        self.dns_server.set_zone(self.zone(txt=None))
        n = len(self.inst.wait_log(r"event=delivery .*result=deferred", count=1))
        self.wait_log(r"event=delivery .*result=deferred", count=n + 2)
        self.assert_still_queued(RCPT)
        self.assertEqual(peer.events("mail"), [])
        self.assertEqual(len(server.requests), fetches, "no record: nothing fetched")


class Hostile(MtaStsTestCase):

    def test_a_policy_over_64_kib_is_refused_and_mail_goes_as_without(self):
        big = policy("enforce", "mx.elsewhere.test") + "x-pad: " + "a" * 70000 + "\r\n"
        server = self.serve_policy(big)
        peer = self.mx_peer(tls=False)
        self.start_kotak(peer, self.zone(), server.port)
        self.submit([RCPT], message("big policy", to=RCPT))
        peer.wait_messages(1, timeout=WAIT)
        self.wait_log(r"event=mta-sts-policy domain=sts.test result=fetch-failed .*use=none")

    def test_an_invalid_policy_is_not_applied(self):
        server = self.serve_policy("version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\n")
        peer = self.mx_peer(tls=False)
        self.start_kotak(peer, self.zone(), server.port)
        self.submit([RCPT], message("invalid policy", to=RCPT))
        peer.wait_messages(1, timeout=WAIT)
        self.wait_log(r"event=mta-sts-policy domain=sts.test result=invalid "
                      r"reason=\"the policy has no mx\" use=none")

    def test_two_sts_records_mean_no_policy(self):
        server = self.serve_policy(policy("enforce", "mx.elsewhere.test"))
        peer = self.mx_peer(tls=False)
        self.start_kotak(peer, self.zone(txt=("v=STSv1; id=1;", "v=STSv1; id=2;")),
                         server.port)
        self.submit([RCPT], message("two records", to=RCPT))
        peer.wait_messages(1, timeout=WAIT)
        self.assertEqual(server.requests, [])
        self.wait_log(r"event=mta-sts-policy domain=sts.test result=no-record "
                      r"reason=\"several records begin with v=STSv1\"")


class Testing(MtaStsTestCase):

    def test_testing_delivers_and_logs_what_enforce_would_refuse(self):
        server = self.serve_policy(policy("testing", "mx.elsewhere.test"))
        peer = self.mx_peer(signed=False)
        self.start_kotak(peer, self.zone(), server.port)
        self.submit([RCPT], message("tested", to=RCPT))
        msg = peer.wait_messages(1, timeout=WAIT)[0]
        self.assertIn(b"tested", msg["data"])
        self.assertTrue(msg["tls"], "delivered as usual: opportunistic TLS")
        self.wait_queue_empty()
        self.wait_log(r"event=mta-sts domain=sts.test mode=testing .*mx=mx.sts.test .*"
                      r"result=would-refuse reason=mx-not-in-policy")
        self.wait_log(r"event=mta-sts domain=sts.test mode=testing .*mx=mx.sts.test .*"
                      r"result=would-refuse reason=tls")
        self.assertNotRegex(self.inst.log("smtpd"), r"result=refused")


class WithoutPolicy(MtaStsTestCase):

    def test_no_mta_sts_record_delivers_as_before(self):
        server = self.serve_policy(policy("enforce", "mx.elsewhere.test"))
        peer = self.mx_peer(tls=False)
        self.start_kotak(peer, self.zone(txt=None), server.port)
        self.submit([RCPT], message("plain", to=RCPT))
        msg = peer.wait_messages(1, timeout=WAIT)[0]
        self.assertFalse(msg["tls"])
        self.wait_queue_empty()
        self.assertEqual(server.requests, [], "no record: no policy fetched")
        self.assertNotRegex(self.inst.log("smtpd"), r"event=mta-sts(-policy)? domain=")

    def test_an_unrelated_txt_record_is_no_policy(self):
        peer = self.mx_peer(tls=False)
        self.start_kotak(peer, self.zone(txt=("v=spf1 -all",)))
        self.submit([RCPT], message("other txt", to=RCPT))
        peer.wait_messages(1, timeout=WAIT)
        self.wait_queue_empty()

    def test_a_policy_server_that_is_down_with_nothing_cached_delivers(self):
        server = self.serve_policy(policy("enforce", "mx.elsewhere.test"))
        port = server.port
        server.close()  # nothing listens there any more
        peer = self.mx_peer(tls=False)
        self.start_kotak(peer, self.zone(), port)
        self.submit([RCPT], message("fallback", to=RCPT))
        peer.wait_messages(1, timeout=WAIT)
        self.wait_queue_empty()
        self.wait_log(r"event=mta-sts-policy domain=sts.test result=fetch-failed .*use=none")

    def test_a_policy_not_served_as_text_plain_is_not_applied(self):
        server = self.serve_policy(policy("enforce", "mx.elsewhere.test"),
                                   content_type="text/html")
        peer = self.mx_peer(tls=False)
        self.start_kotak(peer, self.zone(), server.port)
        self.submit([RCPT], message("html", to=RCPT))
        peer.wait_messages(1, timeout=WAIT)
        self.wait_queue_empty()
        self.wait_log(r"event=mta-sts-policy domain=sts.test result=fetch-failed "
                      r"reason=.*text/html.* use=none")

    def test_a_policy_ended_only_by_the_close_is_not_applied(self):
        # Without a length a policy cut short in the path would look whole.
        server = self.serve_policy(policy("enforce", "mx.elsewhere.test"), length=False)
        peer = self.mx_peer(tls=False)
        self.start_kotak(peer, self.zone(), server.port)
        self.submit([RCPT], message("nolength", to=RCPT))
        peer.wait_messages(1, timeout=WAIT)
        self.wait_queue_empty()
        self.wait_log(r"event=mta-sts-policy domain=sts.test result=fetch-failed "
                      r"reason=.*without a length.* use=none")

    def test_a_redirect_is_not_followed(self):
        server = self.serve_policy("", status=301)
        peer = self.mx_peer(tls=False)
        self.start_kotak(peer, self.zone(), server.port)
        self.submit([RCPT], message("redirect", to=RCPT))
        peer.wait_messages(1, timeout=WAIT)
        self.wait_log(r"event=mta-sts-policy domain=sts.test result=fetch-failed "
                      r"reason=.*answered 301")
        self.assertEqual(len(server.requests), 1)


if __name__ == "__main__":
    unittest.main()
