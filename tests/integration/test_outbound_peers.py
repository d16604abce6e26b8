"""Outbound delivery against scripted peers: kotak-smtpd carries mail that
alice@a.test submits on 587 to SMTP servers played by tests/smtp_peer.py
(SmtpPeer, on 127.0.0.4 and up), found through a DNS server of the test's
own (DnsServer) or named as the smarthost. Each peer answers as its script
says (a 451 at the final dot, a 550 for one recipient, no STARTTLS, no
SMTPUTF8, a 421 greeting, a wrong password...) and records what kotak sent;
the tests check what the issue asks of kotak: retries, bounces naming the
right recipients with the peer's words, TLS, the smarthost's login and
verified certificate, SMTPUTF8, connection reuse, DSN parameters, delay
notices and giving up, and deferral when a server will not talk.

A fresh kotak per test, every wait bounded; the file runs in about a minute.
Skipped where Debian's python3-aiosmtpd or python3-dnslib is missing.
"""
import os
import re
import shutil
import tempfile
import time
import unittest

from kotak_harness import KotakInstance, SMTP, SOCKET_TIMEOUT, HarnessError
from peers import DnsServer, SmtpPeer, loopback_usable, make_cert

SENDER = "alice@a.test"
PASSWORD = "Secret-pass-4kq9"
PEER_IP, PEER2_IP = "127.0.0.4", "127.0.0.5"
WAIT = 15  # seconds for anything that should happen at once (a retry is 1 s)


def zone(domains):
    """A zone with, for each {domain: ip}, an MX mx.DOMAIN and its A record."""
    z = {}
    for domain, ip in domains.items():
        z[domain] = {"MX": [[10, f"mx.{domain}"]]}
        z[f"mx.{domain}"] = {"A": [ip]}
    return z


def message(subject, to="bob@peer.test", body="Hello from alice.\r\n"):
    return (f"From: {SENDER}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{abs(hash(subject))}.{time.monotonic_ns()}@a.test>\r\n\r\n{body}"
            ).encode("utf-8")


def unfold(text):
    return re.sub(r"\r?\n[ \t]+", " ", text)


def fields(text):
    """The header fields of one group, names in lower case, values unfolded."""
    out = {}
    for line in unfold(text.strip()).splitlines():
        if line.strip():
            name, _, value = line.partition(":")
            out[name.strip().lower()] = value.strip()
    return out


def dsn(report):
    """A delivery-status report (RFC 3464, or RFC 6533's global one when the
    original needed SMTPUTF8): (its Subject, the per-message fields, a list
    of per-recipient field dicts), field names in lower case, values
    unfolded."""
    text = report.decode("utf-8")
    head, _, body = text.partition("\r\n\r\n")
    top = fields(head)
    assert top.get("content-type", "").startswith("multipart/report"), top
    boundary = re.search(r'boundary="?([^";]+)"?', top["content-type"]).group(1)
    for part in body.split("--" + boundary):
        phead, _, pbody = part.strip("\r\n").partition("\r\n\r\n")
        ctype = fields(phead).get("content-type", "").split(";")[0].strip()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            groups = [fields(g) for g in re.split(r"\r\n\r\n", pbody.strip()) if g.strip()]
            return top.get("subject", ""), groups[0], groups[1:]
    raise AssertionError(f"no delivery-status part in {report[:3000]!r}")


class PeerTestCase(unittest.TestCase):
    """Helpers: peers, a DNS server, a kotak for a.test with alice, submission."""

    IPS = (PEER_IP,)

    def setUp(self):
        for ip in self.IPS:
            if not loopback_usable(ip):
                self.skipTest(f"cannot listen on {ip}")
        self.tmp = tempfile.mkdtemp(prefix="kotak-outpeers-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.peers = []
        self.inst = None

    # --- the other ends -------------------------------------------------

    def cert(self, host):
        d = os.path.join(self.tmp, f"cert-{len(os.listdir(self.tmp))}")
        os.mkdir(d)
        return make_cert(d, host)

    def peer(self, script=None, ip=PEER_IP, port=0, tls_host=None):
        """A started SmtpPeer; with tls_host, it has a certificate for that name."""
        cert = key = None
        if tls_host:
            cert, key = self.cert(tls_host)
        p = SmtpPeer(host=ip, port=port, script=script, cert=cert, key=key)
        self.addCleanup(p.close)
        p.start()
        self.peers.append(p)
        return p

    def two_peers(self, first, second):
        """Two started peers on PEER_IP and PEER2_IP with the same port (kotak
        has one MX port): (script, tls_host) each. A port free on the first
        address may be taken on the second: then both try another."""
        for attempt in range(5):
            a = self.peer(first[0], ip=PEER_IP, tls_host=first[1])
            try:
                return a, self.peer(second[0], ip=PEER2_IP, port=a.port, tls_host=second[1])
            except HarnessError:
                if attempt == 4:
                    raise
                self.peers.remove(a)
                a.close()

    def dns(self, z):
        d = DnsServer(z)
        self.addCleanup(d.close)
        d.start()
        return d

    # --- kotak ------------------------------------------------------------

    def kotak(self, relay, dns=None, files=None):
        """kotak-smtpd for a.test (alice), relay keys as given, running. files
        {name: bytes} go into its data_dir, readable by [server] user: the
        daemon reads them once it is that user, inside data_dir (a relative
        path is one there; the test's folders above it are root's alone)."""
        inst = KotakInstance(users=False)
        inst.config["relay"] = dict({"retry_first": "1s", "retry_max": "1s"}, **relay)
        if dns is not None:
            inst.config["dns"] = {"servers": dns.servers}
        self.inst = inst
        self.addCleanup(self.dump_and_close, inst)
        inst.create()
        owner = os.stat(inst.data_dir)
        for name, data in (files or {}).items():
            path = os.path.join(inst.data_dir, name)
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, 0o600)
            os.chown(path, owner.st_uid, owner.st_gid)
        inst.kotak("domain", "add", "a.test")
        inst.kotak("user", "add", SENDER, "--password-stdin", input=PASSWORD + "\n")
        inst.start("smtpd")
        return inst

    def dump_and_close(self, inst):
        outcome = getattr(self, "_outcome", None)
        if (outcome is not None and not outcome.success) or os.environ.get("KOTAK_TEST_KEEP_LOGS"):
            for line in inst.log("smtpd").splitlines()[-40:]:
                print(f"# smtpd: {line}")
            for p in self.peers:
                for e in p.events()[-15:]:
                    print(f"# peer {p.host}: {e}")
        inst.close()

    def submit(self, rcpts, body, mail_options=(), rcpt_options=()):
        with SMTP("127.0.0.1", self.inst.ports["submission"], timeout=SOCKET_TIMEOUT) as s:
            s.starttls(context=self.inst.ssl_context())
            s.login(SENDER, PASSWORD)
            return s.sendmail(SENDER, rcpts, body, mail_options=list(mail_options),
                              rcpt_options=list(rcpt_options))

    # --- looking ------------------------------------------------------------

    def reports(self):
        return self.inst.bodies(SENDER)

    def wait_reports(self, n, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            got = self.reports()
            if len(got) >= n:
                return got
            if time.monotonic() >= deadline:
                self.fail(f"{SENDER} got {len(got)} reports, not {n}, in {timeout} s: {got}")
            time.sleep(0.1)

    def queue(self):
        return self.inst.query("SELECT address, state, attempts, last_code, last_reply "
                               "FROM queue_rcpt ORDER BY id")

    def wait_queue_empty(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while self.inst.count("queue") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.inst.count("queue"), 0, self.queue())

    def wait_until(self, what, fn, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() >= deadline:
                self.fail(f"not within {timeout} s: {what}")
            time.sleep(0.1)

    def wait_log(self, pattern, count=1, timeout=WAIT):
        found = self.inst.wait_log(pattern, timeout=timeout, count=count)
        self.assertGreaterEqual(len(found), count, f"no {count} log lines like {pattern!r}")
        return found

    def assert_still_queued(self, address):
        rows = [r for r in self.queue() if r[0] == address]
        self.assertEqual(len(rows), 1, self.queue())
        self.assertEqual(rows[0][1], 0, f"{address} is not queued any more: {rows}")
        listing = self.inst.kotak("queue", "list").stdout
        self.assertIn(f"<{address}>", listing)
        return rows[0]


class DeferThenSuccess(PeerTestCase):

    def test_a_451_at_the_final_dot_is_retried_and_delivered_once(self):
        peer = self.peer({"data_fail_first": 1})
        self.kotak({"port": str(peer.port)}, self.dns(zone({"peer.test": PEER_IP})))
        self.assertEqual(self.submit(["bob@peer.test"], message("retried")), {})
        peer.wait_messages(1, timeout=WAIT)
        # The first final dot got 451, the second 250 (its event is logged
        # just after the message is written).
        data = peer.wait_events("data", 2, timeout=WAIT)
        self.assertTrue(data[0]["reply"].startswith("451"), data[0])
        self.wait_log(r"event=delivery .*rcpt=<bob@peer.test> .*code=451 result=deferred")
        self.wait_log(r"event=delivery .*rcpt=<bob@peer.test> .*code=250 result=delivered")
        self.wait_queue_empty()
        time.sleep(1.5)  # a retry would come within a second: none does
        msgs = peer.messages()
        self.assertEqual(len(msgs), 1, [m["id"] for m in msgs])
        self.assertEqual(msgs[0]["mail_from"], SENDER)
        self.assertEqual(msgs[0]["rcpt_tos"], ["bob@peer.test"])
        self.assertIn(b"Subject: retried", msgs[0]["data"])
        self.assertEqual(self.reports(), [])  # a deferral is not a bounce


class PerRecipientFailure(PeerTestCase):

    def test_one_refused_recipient_bounces_alone_and_the_other_is_delivered(self):
        refusal = "550 5.1.1 <nobody@peer.test>: Recipient unknown here"
        peer = self.peer({"rcpt": {"nobody@peer.test": refusal}})
        self.kotak({"port": str(peer.port)}, self.dns(zone({"peer.test": PEER_IP})))
        self.submit(["bob@peer.test", "nobody@peer.test"], message("two of them"))
        msg = peer.wait_messages(1, timeout=WAIT)[0]
        self.assertEqual(msg["rcpt_tos"], ["bob@peer.test"])
        report = self.wait_reports(1)[0]
        self.assertIn(b"Return-Path: <>", report)
        _, _, rcpts = dsn(report)
        self.assertEqual([r["final-recipient"] for r in rcpts], ["rfc822; nobody@peer.test"],
                         "the bounce names the refused recipient and only that one")
        r = rcpts[0]
        self.assertEqual(r["action"], "failed")
        self.assertEqual(r["status"], "5.1.1")
        self.assertEqual(r.get("diagnostic-code"), "smtp; " + refusal)
        self.assertIn("mx.peer.test", r.get("remote-mta", ""))
        self.assertIn(b"Subject: two of them", report)  # the original's headers come back
        self.wait_queue_empty()
        time.sleep(1)
        self.assertEqual(len(self.reports()), 1)
        self.assertEqual(len(peer.messages()), 1)


class OpportunisticTls(PeerTestCase):
    IPS = (PEER_IP, PEER2_IP)

    def test_starttls_when_offered_plaintext_when_not(self):
        tls_peer, plain_peer = self.two_peers((None, "mx.tls.test"), (None, None))
        self.kotak({"port": str(tls_peer.port)},
                   self.dns(zone({"tls.test": PEER_IP, "plain.test": PEER2_IP})))
        self.submit(["bob@tls.test"], message("over tls", to="bob@tls.test"))
        self.submit(["bob@plain.test"], message("in the clear", to="bob@plain.test"))
        secure = tls_peer.wait_messages(1, timeout=WAIT)[0]
        clear = plain_peer.wait_messages(1, timeout=WAIT)[0]
        self.assertTrue(secure["tls"], secure)
        self.assertTrue(secure["tls_version"].startswith("TLS"), secure)
        self.assertEqual(len(tls_peer.events("starttls")), 1)
        self.assertIn(b"over tls", secure["data"])
        self.assertFalse(clear["tls"], clear)
        self.assertEqual(plain_peer.events("starttls"), [])
        self.assertIn(b"in the clear", clear["data"])
        self.wait_log(r"event=delivery .*rcpt=<bob@tls.test> .*tls=yes code=250 result=delivered")
        self.wait_log(r"event=delivery .*rcpt=<bob@plain.test> .*tls=no code=250 result=delivered")
        self.assertEqual(self.reports(), [])


class Smarthost(PeerTestCase):
    """[relay] smarthost = smarthost.test:PORT: every domain's mail goes there,
    over TLS verified against smarthost_ca (the peer's self-signed
    certificate), with a login. The test's DNS knows smarthost.test and
    nothing of the recipients' domains."""

    USER, SECRET = "relay-user", "relay-Pass-77x"
    NAME = "smarthost.test"

    def smarthost(self, password=SECRET, ca=None, implicit=False, by_address=False,
                  cert_for=None):
        name = PEER_IP if by_address else self.NAME
        peer = self.peer({"auth": {"user": self.USER, "password": self.SECRET},
                          "implicit_tls": implicit}, tls_host=cert_for or name)
        with open(ca or peer.cert, "rb") as f:
            ca_pem = f.read()
        self.kotak({
            "smarthost": f"{name}:{peer.port}",
            "smarthost_tls": "tls" if implicit else "starttls",
            "smarthost_user": self.USER,
            "smarthost_password_file": "smarthost-password",
            "smarthost_ca": "smarthost-ca.pem",
        }, None if by_address else self.dns({self.NAME: {"A": [PEER_IP]}}),
            files={"smarthost-password": (password + "\n").encode(), "smarthost-ca.pem": ca_pem})
        return peer

    def test_every_domain_goes_to_the_smarthost_logged_in_over_starttls(self):
        peer = self.smarthost()
        self.submit(["carol@anywhere.example"], message("one", to="carol@anywhere.example"))
        self.submit(["dave@elsewhere.example", "erin@third.example"],
                    message("two", to="dave@elsewhere.example"))
        msgs = peer.wait_messages(2, timeout=WAIT)
        self.assertEqual(sorted(r for m in msgs for r in m["rcpt_tos"]),
                         ["carol@anywhere.example", "dave@elsewhere.example",
                          "erin@third.example"])
        for m in msgs:
            self.assertTrue(m["tls"], m)
            self.assertEqual(m["auth_user"], self.USER, m)
        # The password never crossed in the clear: AUTH came after STARTTLS.
        for e in peer.events("auth"):
            self.assertTrue(e["tls"], e)
        self.wait_queue_empty()
        self.assertEqual(self.reports(), [])

    def test_implicit_tls_smarthost(self):
        peer = self.smarthost(implicit=True)
        self.submit(["carol@anywhere.example"], message("implicit", to="carol@anywhere.example"))
        m = peer.wait_messages(1, timeout=WAIT)[0]
        self.assertTrue(m["tls"], m)
        self.assertEqual(m["auth_user"], self.USER)
        self.assertEqual(peer.events("starttls"), [])  # TLS from the first byte
        self.wait_queue_empty()

    def test_a_smarthost_named_by_its_address_is_verified_against_its_ip_san(self):
        # smarthost = 127.0.0.4:PORT, its certificate for IP:127.0.0.4 (RFC 6125
        # and RFC 5280: an address is matched against iPAddress names).
        peer = self.smarthost(by_address=True)
        self.submit(["carol@anywhere.example"], message("by address", to="carol@anywhere.example"))
        m = peer.wait_messages(1, timeout=6)[0]
        self.assertTrue(m["tls"], m)
        self.assertEqual(m["auth_user"], self.USER)

    def test_a_smarthost_named_by_an_address_its_certificate_lacks_gets_nothing(self):
        # A certificate for 127.0.0.9, trusted, on the smarthost at 127.0.0.4.
        peer = self.smarthost(by_address=True, cert_for="127.0.0.9")
        self.submit(["carol@anywhere.example"], message("wrong ip", to="carol@anywhere.example"))
        self.wait_log(r"event=delivery .*rcpt=<carol@anywhere.example> .*result=deferred")
        self.assert_still_queued("carol@anywhere.example")
        self.assertEqual(peer.events("auth"), [])
        self.assertEqual(peer.events("mail"), [])

    def test_a_wrong_password_keeps_mail_queued_and_is_logged_loudly(self):
        peer = self.smarthost(password="not-the-password")
        self.submit(["carol@anywhere.example"], message("refused", to="carol@anywhere.example"))
        auth = peer.wait_events("auth", 1, timeout=WAIT)
        self.assertTrue(auth[0]["reply"].startswith("535"), auth)
        self.wait_log(r"level=error .*event=smarthost-login-refused")
        self.wait_log(r"event=delivery .*rcpt=<carol@anywhere.example> .*result=deferred")
        row = self.assert_still_queued("carol@anywhere.example")
        self.assertGreaterEqual(row[2], 1)  # attempts
        self.assertEqual(peer.messages(), [])
        self.assertEqual(peer.events("mail"), [])
        self.assertEqual(self.reports(), [])  # a wrong password bounces nothing
        self.assertNotIn("not-the-password", self.inst.log("smtpd"))

    def test_a_smarthost_whose_certificate_does_not_verify_gets_nothing(self):
        other_cert, _ = self.cert(self.NAME)  # the same name, another key: not the peer's
        peer = self.smarthost(ca=other_cert)
        self.submit(["carol@anywhere.example"], message("unverified", to="carol@anywhere.example"))
        self.wait_log(r"event=delivery .*rcpt=<carol@anywhere.example> .*result=deferred "
                      r"reply=.*[Cc]ertificate verification failed")
        self.assert_still_queued("carol@anywhere.example")
        # Not in plaintext either: no login, no transaction, ever.
        time.sleep(1.5)
        self.assertEqual(peer.messages(), [])
        self.assertEqual(peer.events("auth"), [])
        self.assertEqual(peer.events("mail"), [])
        self.assertEqual(self.reports(), [])

    def test_a_smarthost_without_starttls_gets_nothing_in_plaintext(self):
        peer = self.peer()  # no certificate: no STARTTLS offered
        self.kotak({"smarthost": f"{self.NAME}:{peer.port}"},
                   self.dns({self.NAME: {"A": [PEER_IP]}}))
        self.submit(["carol@anywhere.example"], message("plain", to="carol@anywhere.example"))
        self.wait_log(r"event=delivery .*rcpt=<carol@anywhere.example> .*result=deferred "
                      r"reply=.*TLS")
        self.assert_still_queued("carol@anywhere.example")
        self.assertEqual(peer.events("mail"), [])
        self.assertEqual(peer.messages(), [])
        self.assertEqual(self.reports(), [])


class Smtputf8(PeerTestCase):

    def test_utf8_mail_to_a_server_without_smtputf8_bounces_with_5_6_7(self):
        peer = self.peer({"smtputf8": False})
        self.kotak({"port": str(peer.port)}, self.dns(zone({"peer.test": PEER_IP})))
        utf8_header = ("From: alice@a.test\r\nTo: bob@peer.test\r\nSubject: Grüße aus Köln\r\n"
                       "\r\nBody.\r\n").encode("utf-8")
        self.submit(["bob@peer.test"], utf8_header, mail_options=["SMTPUTF8"])
        self.submit(["bjørn@peer.test"], message("to a utf-8 mailbox", to="bjørn@peer.test"),
                    mail_options=["SMTPUTF8"])
        # The same server takes an ASCII message: the refusal is SMTPUTF8's alone.
        self.submit(["bob@peer.test"], message("plain ascii"))
        reports = self.wait_reports(2)
        failed = {}
        for report in reports:
            _, _, rcpts = dsn(report)
            for r in rcpts:
                failed[r["final-recipient"]] = r
        # A UTF-8 address is reported as one (RFC 6533 3: the utf-8 address type).
        self.assertEqual(sorted(failed), ["rfc822; bob@peer.test", "utf-8; bjørn@peer.test"])
        for r in failed.values():
            self.assertEqual(r["action"], "failed")
            self.assertEqual(r["status"], "5.6.7")
        msgs = peer.wait_messages(1, timeout=WAIT)
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"Subject: plain ascii", msgs[0]["data"])
        # Nothing of the UTF-8 messages was offered to the server.
        self.assertEqual([e["address"] for e in peer.events("mail")], [SENDER])
        self.wait_queue_empty()


class ConnectionReuse(PeerTestCase):

    def test_messages_waiting_for_one_domain_go_over_one_connection(self):
        # One connection per domain at a time, so that reuse is what is seen
        # (with more, kotak may rightly open one per message in parallel).
        peer = self.peer()
        self.kotak({"port": str(peer.port), "retry_first": "60s", "retry_max": "60s",
                    "connections_per_domain": "1"}, self.dns(zone({"peer.test": PEER_IP})))
        peer.stop()
        for i in range(3):
            self.submit(["bob@peer.test"], message(f"queued {i}"))
        # Each tried once and deferred (connection refused), now waiting 60 s.
        self.wait_until("three deferrals recorded",
                        lambda: len([r for r in self.queue() if r[1] == 0 and r[2] >= 1]) == 3)
        peer.start()
        self.inst.kotak("queue", "retry")
        msgs = peer.wait_messages(3, timeout=WAIT)
        self.assertEqual(sorted(m["data"].split(b"Subject: ")[1][:8] for m in msgs),
                         [b"queued 0", b"queued 1", b"queued 2"])
        self.assertEqual(len(peer.events("connect")), 1, peer.events("connect"))
        self.assertEqual({m["session"] for m in msgs}, {1})
        self.wait_queue_empty()
        self.assertEqual(self.reports(), [])


class DsnPassthrough(PeerTestCase):
    DSN_RCPT = ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@peer.test"]

    def test_dsn_parameters_reach_a_server_that_offers_dsn(self):
        peer = self.peer()
        self.kotak({"port": str(peer.port)}, self.dns(zone({"peer.test": PEER_IP})))
        self.submit(["bob@peer.test"], message("dsn"), mail_options=["RET=HDRS"],
                    rcpt_options=self.DSN_RCPT)
        m = peer.wait_messages(1, timeout=WAIT)[0]
        self.assertIn("RET=HDRS", m["mail_options"])
        self.assertEqual(len(m["rcpt_options"]), 1)
        self.assertEqual(sorted(m["rcpt_options"][0]), sorted(self.DSN_RCPT))
        self.wait_queue_empty()
        # The next hop took NOTIFY=SUCCESS on: reporting success is its job now,
        # and a "relayed" report from kotak would be wrong (RFC 3461 5.2.2 and
        # RFC 3464 2.3.3: "relayed" is for a server that will not report).
        time.sleep(1)
        self.assertEqual([dsn(r)[2] for r in self.reports()], [])

    def test_notify_success_to_a_server_without_dsn_gives_a_relayed_report(self):
        peer = self.peer({"dsn": False})
        self.kotak({"port": str(peer.port)}, self.dns(zone({"peer.test": PEER_IP})))
        self.submit(["bob@peer.test"], message("dsn relayed"), mail_options=["RET=HDRS"],
                    rcpt_options=self.DSN_RCPT)
        m = peer.wait_messages(1, timeout=WAIT)[0]
        self.assertEqual(m["rcpt_options"], [[]])  # not offered: not sent
        self.assertNotIn("RET=HDRS", m["mail_options"])
        report = self.wait_reports(1)[0]
        _, _, rcpts = dsn(report)
        self.assertEqual(len(rcpts), 1, rcpts)
        r = rcpts[0]
        self.assertEqual(r["action"], "relayed")
        self.assertEqual(r["final-recipient"], "rfc822; bob@peer.test")
        self.assertEqual(r.get("original-recipient"), "rfc822;bob@peer.test")
        self.assertTrue(r["status"].startswith("2."), r)
        self.wait_queue_empty()

    def test_envid_goes_on_to_the_next_server_and_comes_back_in_a_report(self):
        peer = self.peer({"rcpt": {"nobody@peer.test": "550 5.1.1 No such user"}})
        self.kotak({"port": str(peer.port)}, self.dns(zone({"peer.test": PEER_IP})))
        self.submit(["bob@peer.test", "nobody@peer.test"], message("with an envid"),
                    mail_options=["RET=HDRS", "ENVID=abc123"], rcpt_options=["NOTIFY=FAILURE"])
        m = peer.wait_messages(1, timeout=WAIT)[0]
        self.assertIn("ENVID=abc123", m["mail_options"])
        _, per_message, rcpts = dsn(self.wait_reports(1)[0])
        self.assertEqual([r["final-recipient"] for r in rcpts], ["rfc822; nobody@peer.test"])
        self.assertEqual(per_message.get("original-envelope-id"), "abc123")


class DelayThenGiveUp(PeerTestCase):

    def test_one_delay_notice_then_a_bounce_at_give_up_and_none_for_mail_from_null(self):
        peer = self.peer({"data_fail_first": 100000})
        self.kotak({"port": str(peer.port), "delay_warning": "2s", "give_up": "5s"},
                   self.dns(zone({"peer.test": PEER_IP})))
        # Mail from <> in the queue: a stranger's, on the MX port, to an alias
        # here that forwards to the peer.
        self.inst.kotak("alias", "add", "fwd@a.test", "bob@peer.test")
        started = time.monotonic()
        self.submit(["bob@peer.test"], message("slow one"))
        with SMTP("127.0.0.1", self.inst.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("stranger.test")
            self.assertEqual(s.sendmail("", ["fwd@a.test"], message("from nobody")), {})
        self.wait_reports(2, timeout=WAIT)
        self.wait_queue_empty()
        # Both given up on; nothing more comes.
        time.sleep(max(1, 7 - (time.monotonic() - started)))
        reports = self.reports()
        self.assertEqual(len(reports), 2, [dsn(r)[2] for r in reports])
        first, second = (dsn(r) for r in reports)
        self.assertEqual([r["action"] for r in first[2]], ["delayed"])
        self.assertTrue(first[2][0]["status"].startswith("4."), first[2])
        self.assertIn("451", first[2][0].get("diagnostic-code", ""))
        self.assertIn("will-retry-until", first[2][0])
        self.assertEqual([r["action"] for r in second[2]], ["failed"])
        self.assertIn("451", second[2][0].get("diagnostic-code", ""))
        for r in reports:
            self.assertIn(b"Subject: slow one", r)
        # Both were tried again and again in between, and never taken.
        mails = peer.events("mail")
        self.assertGreaterEqual(len([e for e in mails if e["address"] == SENDER]), 3)
        self.assertGreaterEqual(len([e for e in mails if e["address"] == ""]), 3)
        self.assertEqual(peer.messages(), [])
        # The one from <> failed too, and no report was even attempted for it.
        self.wait_log(r"event=delivery .*rcpt=<bob@peer.test> .*result=failed", count=2)
        self.assertNotRegex(self.inst.log("smtpd"), r"event=report-(dropped|failed)")


class UnwillingServers(PeerTestCase):
    IPS = (PEER_IP, PEER2_IP)

    def test_a_421_greeting_or_a_silent_server_defers(self):
        busy, silent = self.two_peers(
            ({"greeting": "421 4.3.2 Too busy, come back later"}, None),
            ({"hang_after_greeting": True}, None))
        self.kotak({"port": str(busy.port)},
                   self.dns(zone({"busy.test": PEER_IP, "silent.test": PEER2_IP})))
        self.submit(["bob@busy.test"], message("to busy", to="bob@busy.test"))
        self.submit(["bob@silent.test"], message("to silent", to="bob@silent.test"))
        self.wait_log(r"event=delivery .*rcpt=<bob@busy.test> .*result=deferred "
                      r"reply=.*421 4.3.2 Too busy")
        # Retried a second later, and still waiting.
        busy.wait_events("connect", 2, timeout=WAIT)
        row = self.assert_still_queued("bob@busy.test")
        self.assertIn("421", row[4])
        silent.wait_events("connect", 1, timeout=WAIT)
        time.sleep(2)
        self.assert_still_queued("bob@silent.test")
        self.assertEqual(busy.messages() + silent.messages(), [])
        self.assertEqual(self.reports(), [])


if __name__ == "__main__":
    unittest.main()


class Robustness(PeerTestCase):
    """What a hostile review found: each test fails on the code before its fix."""
    IPS = (PEER_IP, PEER2_IP)

    def test_a_message_larger_than_one_turn_of_the_loop_reaches_a_fast_server(self):
        # A peer on loopback takes every write at once: the runner must go on
        # sending after its turn, with no callback from the socket to wake it.
        peer = self.peer()
        self.kotak({"port": str(peer.port)}, self.dns(zone({"peer.test": PEER_IP})))
        line = b"x" * 76 + b"\r\n"
        body = line * (6 * 1024 * 1024 // len(line))
        self.submit(["bob@peer.test"], message("big", body=body.decode()))
        got = peer.wait_messages(1, timeout=WAIT)[0]
        self.assertTrue(got["data"].endswith(body), len(got["data"]))

    def test_a_report_that_cannot_be_stored_does_not_send_the_message_again(self):
        # The sender's account goes while her mail waits; the success report
        # for her can no longer be stored. The outcome is recorded without
        # it, and the peer gets the message once, not once per poll.
        peer = self.peer({"dsn": False})
        z = zone({"peer.test": PEER_IP})
        z["peer.test"]["delay_ms"] = 1500  # time to delete the user before delivery
        inst = self.kotak({"port": str(peer.port)}, self.dns(z))
        self.submit(["bob@peer.test"], message("once", to="bob@peer.test"),
                    rcpt_options=["NOTIFY=SUCCESS"])
        inst.kotak("user", "del", SENDER)
        peer.wait_messages(1, timeout=WAIT)
        self.wait_log(r"event=queue-record-failed .*report=dropped")
        self.wait_log(r"event=delivery .*rcpt=<bob@peer.test> .*result=delivered")
        time.sleep(3)
        self.assertEqual(len(peer.messages()), 1)
        self.assertEqual(inst.count("queue"), 0)

    def test_one_destination_that_hangs_does_not_hold_up_mail_for_others(self):
        slow, good = self.two_peers(({"hang_after_greeting": True}, None), (None, None))
        inst = self.kotak({"port": str(slow.port)},
                          self.dns(zone({"aaa.test": PEER_IP, "zzz.test": PEER2_IP})))
        with SMTP("127.0.0.1", inst.ports["submission"], timeout=SOCKET_TIMEOUT) as s:
            s.starttls(context=inst.ssl_context())
            s.login(SENDER, PASSWORD)
            for i in range(20):
                s.sendmail(SENDER, [f"u{i}x{j}@aaa.test" for j in range(100)],
                           message(f"m{i}", to="x@aaa.test"))
        self.submit(["bob@zzz.test"], message("innocent", to="bob@zzz.test"))
        good.wait_messages(1, timeout=WAIT)

    def test_raw_utf8_in_the_header_without_smtputf8_goes_on_as_it_came(self):
        # A client without SMTPUTF8 wrote a raw UTF-8 subject: it needs no
        # SMTPUTF8 to go on (only mail that came with it does).
        peer = self.peer({"smtputf8": False})
        self.kotak({"port": str(peer.port)}, self.dns(zone({"peer.test": PEER_IP})))
        msg = "From: alice@a.test\r\nTo: bob@peer.test\r\nSubject: caf\u00e9\r\n\r\nhi\r\n"
        self.submit(["bob@peer.test"], msg.encode(), mail_options=["BODY=8BITMIME"])
        got = peer.wait_messages(1, timeout=WAIT)[0]
        self.assertIn("caf\u00e9".encode(), got["data"])
        self.assertEqual(self.reports(), [])
