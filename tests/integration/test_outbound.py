"""Outbound delivery across real servers on loopback: two kotak instances for
two domains (a.test on 127.0.0.2, b.test on 127.0.0.3, the same MX port), a
DNS server started here (tests/dns_server.py, on Debian's python3-dnslib)
that tells kotak where each domain's mail goes, and real clients (smtplib,
poplib) at both ends.

alice@a.test submits on A's 587; A queues the message, looks up b.test's MX,
connects to B's MX port, and B stores it for bob@b.test, who fetches it over
POP3. Every wait is bounded.
"""
import json
import re
import os
import socket
import subprocess
import tempfile
import time
import unittest

from kotak_harness import (KotakInstance, POP3, SMTP, HarnessError, SOCKET_TIMEOUT)

HERE = os.path.dirname(os.path.abspath(__file__))
DNS_SERVER = os.path.join(HERE, "..", "dns_server.py")
DEBIAN_PYTHON = "/usr/bin/python3"

A_IP, B_IP = "127.0.0.2", "127.0.0.3"
PASSWORD = "Secret-pass-4kq9"
WAIT = 20  # seconds for mail to cross


def free_port_on_both(hosts):
    """A TCP port free on every host (one bind each), for the shared MX port."""
    for _ in range(50):
        s = socket.socket()
        s.bind((hosts[0], 0))
        port = s.getsockname()[1]
        s.close()
        ok = True
        for h in hosts[1:]:
            t = socket.socket()
            try:
                t.bind((h, port))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            return port
    raise HarnessError("no port free on " + ", ".join(hosts))


class DnsServer:
    """tests/dns_server.py serving a zone on 127.0.0.1; skipped without dnslib."""

    def __init__(self, zone):
        self.dir = tempfile.mkdtemp(prefix="kotak-dns-")
        self.zone_path = os.path.join(self.dir, "zone.json")
        with open(self.zone_path, "w") as f:
            json.dump(zone, f)
        self.proc = subprocess.Popen([DEBIAN_PYTHON, DNS_SERVER, self.zone_path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            code = self.proc.wait(timeout=5)
            if code == 77:
                raise unittest.SkipTest("python3-dnslib is missing")
            raise HarnessError(f"dns_server.py did not start (exit {code})")
        self.port = int(line)
        self.servers = f"127.0.0.1:{self.port}"

    def close(self):
        self.proc.stdin.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            # A loaded machine (the sanitizer run beside disk-heavy tests)
            # once kept it from ending in time: the test's verdict is made.
            self.proc.kill()
            self.proc.wait(timeout=5)


def zone(**extra):
    z = {
        "a.test": {"MX": [[10, "mx.a.test"]]},
        "mx.a.test": {"A": [A_IP]},
        "b.test": {"MX": [[10, "mx.b.test"]]},
        "mx.b.test": {"A": [B_IP]},
    }
    z.update(extra)
    return z


class TwoServers(unittest.TestCase):
    """A (a.test, alice) and B (b.test, bob), one DNS server."""
    ZONE = None
    RELAY = {}

    def setUp(self):
        self.dns = DnsServer(self.ZONE or zone())
        self.addCleanup(self.dns.close)
        self.mx_port = free_port_on_both([A_IP, B_IP])
        relay = {"port": str(self.mx_port), "retry_first": "1s", "retry_max": "2s"}
        relay.update(self.RELAY)
        self.a = self.instance("a.test", A_IP, "alice", relay)
        self.b = self.instance("b.test", B_IP, "bob", relay)
        self.a.start("smtpd")
        self.b.start("smtpd")

    def instance(self, domain, ip, user, relay):
        inst = KotakInstance({
            "server": {"hostname": f"mx.{domain}"},
            "smtp": {"listen": f"{ip}:{self.mx_port}"},
            "relay": relay,
            "dns": {"servers": self.dns.servers},
        }, users=False)
        self.addCleanup(self.dump_and_close, inst)
        inst.create()
        inst.kotak("domain", "add", domain)
        inst.kotak("user", "add", f"{user}@{domain}", "--password-stdin", input=PASSWORD + "\n")
        return inst

    def dump_and_close(self, inst):
        # The daemons end cleanly: status 0 on SIGTERM, no sanitizer report.
        for name in list(inst.procs):
            rc = inst.stop(name)
            log = inst.log(name)
            if rc != 0 or "Sanitizer" in log or "runtime error:" in log:
                inst.close()
                self.fail(f"kotak-{name} of {inst.config['server']['hostname']} ended with "
                          f"status {rc}:\n" + "\n".join(log.splitlines()[-40:]))
        outcome = getattr(self, "_outcome", None)
        failed = outcome is not None and any(e is not None for _, e in getattr(outcome, "errors", []))
        if failed or os.environ.get("KOTAK_TEST_KEEP_LOGS"):
            for line in inst.log("smtpd").splitlines()[-30:]:
                print(f"# {inst.config['server']['hostname']}: {line}")
        inst.close()

    def submit(self, inst, sender, rcpts, body, **kw):
        with SMTP("127.0.0.1", inst.ports["submission"], timeout=SOCKET_TIMEOUT) as s:
            s.starttls(context=inst.ssl_context())
            s.login(sender, PASSWORD)
            return s.sendmail(sender, rcpts, body, **kw)

    def wait_bodies(self, inst, address, n=1, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = inst.bodies(address)
            if len(got) >= n:
                return got
            time.sleep(0.1)
        self.fail(f"{address} got {len(inst.bodies(address))} messages, not {n}")

    def fetch_pop3(self, inst, user):
        """The user's one message, fetched over POP3 with STLS from inst's kotak-pop3d."""
        inst.start("pop3d")
        p = POP3("127.0.0.1", inst.ports["pop3"], timeout=SOCKET_TIMEOUT)
        try:
            p.stls(context=inst.ssl_context())
            p.user(user)
            p.pass_(PASSWORD)
            self.assertEqual(p.stat()[0], 1)
            return b"\r\n".join(p.retr(1)[1])
        finally:
            p.quit()

    def queue_rows(self, inst):
        return inst.query("SELECT address, state, attempts, last_code FROM queue_rcpt")


class AcrossTwoServers(TwoServers):

    def test_submitted_mail_crosses_to_the_other_server_and_is_fetched_over_pop3(self):
        msg = (b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: across\r\n"
               b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <x1@a.test>\r\n\r\n"
               b"Hello Bob, from A.\r\n")
        refused = self.submit(self.a, "alice@a.test", ["bob@b.test"], msg)
        self.assertEqual(refused, {})
        body = self.wait_bodies(self.b, "bob@b.test")[0]
        self.assertIn(b"Hello Bob, from A.", body)
        # Both hops wrote their trace: A took it from the client, B from A.
        head = body.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ")
        received = [l for l in head.split(b"\r\n") if l.startswith(b"Received:")]
        self.assertGreaterEqual(len(received), 2, body)
        self.assertIn(b"by mx.b.test", received[0])
        self.assertIn(b"by mx.a.test", received[1])
        # A to B went over TLS: B's trace says so, A's log line too.
        self.assertIn(b"with ESMTPS", received[0])
        # One Return-Path, B's: A sent the message on without its own (RFC 5321 4.4).
        self.assertEqual(head.count(b"Return-Path:"), 1, head)
        self.assertTrue(head.startswith(b"Return-Path: <alice@a.test>\r\n"), head)
        self.a.wait_log(r"event=delivery .*rcpt=<bob@b.test> .*tls=yes code=250 result=delivered")
        # Nothing stays queued at A.
        deadline = time.monotonic() + 5
        while self.a.count("queue") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.a.count("queue"), 0)
        self.assertIn(b"Hello Bob, from A.", self.fetch_pop3(self.b, "bob@b.test"))

    def test_an_unknown_recipient_bounces_into_the_senders_maildrop(self):
        msg = b"From: alice@a.test\r\nSubject: to nobody\r\n\r\nHi\r\n"
        self.submit(self.a, "alice@a.test", ["nobody@b.test"], msg)
        bounce = self.wait_bodies(self.a, "alice@a.test")[0]
        self.assertIn(b"Return-Path: <>", bounce)
        self.assertIn(b"multipart/report", bounce)
        self.assertIn(b"report-type=delivery-status", bounce)
        self.assertIn(b"Final-Recipient: rfc822; nobody@b.test", bounce)
        self.assertIn(b"Action: failed", bounce)
        self.assertIn(b"Status: 5.1.1", bounce)
        self.assertIn(b"Subject: to nobody", bounce)  # the original's headers
        self.assertEqual(self.a.count("queue"), 0)

    def test_a_message_without_date_and_message_id_reaches_the_other_server_with_both(self):
        # Submission adds them (RFC 6409 8.2, 8.3), before the queue sends it on.
        self.submit(self.a, "alice@a.test", ["bob@b.test"], b"Subject: bare\r\n\r\nbare\r\n")
        body = self.wait_bodies(self.b, "bob@b.test")[0]
        head = body.split(b"\r\n\r\n", 1)[0]
        self.assertRegex(head, rb"\r\nDate: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} ")
        self.assertRegex(head, rb"\r\nMessage-ID: <[^>]+@mx\.a\.test>")

    def test_a_message_larger_than_one_turn_of_the_loop_crosses(self):
        line = b"y" * 76 + b"\r\n"
        body = line * (6 * 1024 * 1024 // len(line))
        self.submit(self.a, "alice@a.test", ["bob@b.test"], b"Subject: big\r\n\r\n" + body)
        got = self.wait_bodies(self.b, "bob@b.test")[0]
        self.assertTrue(got.endswith(body))

    def test_one_message_to_local_and_remote_recipients_reaches_both(self):
        self.a.kotak("user", "add", "carol@a.test", "--password-stdin", input=PASSWORD + "\n")
        msg = b"From: alice@a.test\r\nSubject: both\r\n\r\nTo both.\r\n"
        self.submit(self.a, "alice@a.test", ["bob@b.test", "carol@a.test"], msg)
        self.assertIn(b"To both.", self.wait_bodies(self.b, "bob@b.test")[0])
        self.assertIn(b"To both.", self.wait_bodies(self.a, "carol@a.test")[0])

    def test_the_mx_port_still_relays_nothing_for_strangers(self):
        with SMTP(A_IP, self.mx_port, timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("stranger.test")
            s.mail("someone@elsewhere.test")
            code, text = s.rcpt("bob@b.test")
            self.assertEqual(code, 550, text)
            self.assertIn(b"5.7.1", text)
        self.assertEqual(self.a.count("queue"), 0)

    def test_the_mx_port_does_not_offer_dsn_and_submission_does(self):
        with SMTP(A_IP, self.mx_port, timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("stranger.test")
            self.assertFalse(s.has_extn("dsn"))
        with SMTP("127.0.0.1", self.a.ports["submission"], timeout=SOCKET_TIMEOUT) as s:
            s.starttls(context=self.a.ssl_context())
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("dsn"))


class NullMx(TwoServers):
    ZONE = zone(**{"nomail.test": {"MX": [[0, "."]]}})

    def test_a_domain_with_a_null_mx_fails_at_once_with_5_1_10(self):
        self.submit(self.a, "alice@a.test", ["x@nomail.test"], b"Subject: n\r\n\r\nx\r\n")
        bounce = self.wait_bodies(self.a, "alice@a.test")[0]
        self.assertIn(b"Status: 5.1.10", bounce)
        self.assertIn(b"Action: failed", bounce)


class NoSuchDomain(TwoServers):

    def test_nxdomain_is_permanent(self):
        self.submit(self.a, "alice@a.test", ["x@nowhere.test"], b"Subject: n\r\n\r\nx\r\n")
        bounce = self.wait_bodies(self.a, "alice@a.test")[0]
        self.assertIn(b"Action: failed", bounce)
        self.assertIn(b"Status: 5.1.2", bounce)


class MxFallback(TwoServers):
    # The first MX of b.test listens nowhere (127.0.0.9): the second, B, takes it.
    ZONE = zone(**{"b.test": {"MX": [[5, "down.b.test"], [10, "mx.b.test"]]},
                   "down.b.test": {"A": ["127.0.0.9"]}})

    def test_a_dead_first_mx_falls_back_to_the_next(self):
        self.submit(self.a, "alice@a.test", ["bob@b.test"], b"Subject: f\r\n\r\nfallback\r\n")
        self.assertIn(b"fallback", self.wait_bodies(self.b, "bob@b.test")[0])


class DeferThenSuccess(TwoServers):

    def test_mail_waits_while_the_other_server_is_down_and_goes_when_it_is_back(self):
        self.b.stop("smtpd")
        self.submit(self.a, "alice@a.test", ["bob@b.test"], b"Subject: later\r\n\r\nlater\r\n")
        self.a.wait_log(r"event=delivery .*rcpt=<bob@b.test> .*result=deferred", timeout=WAIT)
        rows = self.queue_rows(self.a)
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0][1], 0)  # still queued
        self.b.start("smtpd")
        self.assertIn(b"later", self.wait_bodies(self.b, "bob@b.test")[0])
        self.assertEqual(self.a.bodies("alice@a.test"), [])  # no bounce


class Forwarding(TwoServers):
    """Aliases on B that forward to A, with mail from strangers arriving on B's MX port."""

    def setUp(self):
        super().setUp()
        self.a.kotak("user", "add", "carol@a.test", "--password-stdin", input=PASSWORD + "\n")
        self.b.kotak("alias", "add", "fwd@b.test", "alice@a.test")
        self.b.kotak("alias", "add", "team@b.test", "bob@b.test,alice@a.test")
        self.b.kotak("alias", "add", "gone@b.test", "nobody@a.test")

    def mx_send(self, sender, rcpt, body):
        with SMTP(B_IP, self.mx_port, timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("sender.test")
            return s.sendmail(sender, [rcpt], body)

    def srs_sender(self, body):
        head = body.split(b"\r\n\r\n", 1)[0]
        line = [l for l in head.split(b"\r\n") if l.startswith(b"Return-Path:")][0]
        return line.split(b"<", 1)[1].split(b">", 1)[0].decode()

    def test_an_alias_forwards_to_another_server_with_an_srs_sender(self):
        self.mx_send("someone@sender.test", "fwd@b.test", b"Subject: fw\r\n\r\nforwarded\r\n")
        body = self.wait_bodies(self.a, "alice@a.test")[0]
        self.assertIn(b"forwarded", body)
        sender = self.srs_sender(body)
        # B's own domain, so SPF at A looks at b.test; the original inside it.
        self.assertRegex(sender, r"^SRS0=[a-z2-7]{6}=[a-z2-7]{2}=sender\.test=someone@b\.test$")

    def test_an_alias_of_local_and_outside_targets_delivers_to_both(self):
        self.mx_send("someone@sender.test", "team@b.test", b"Subject: t\r\n\r\nto the team\r\n")
        self.assertIn(b"to the team", self.wait_bodies(self.a, "alice@a.test")[0])
        self.assertIn(b"to the team", self.wait_bodies(self.b, "bob@b.test")[0])

    def test_a_bounce_of_forwarded_mail_reaches_the_original_sender(self):
        # carol@a.test writes to gone@b.test, which forwards to nobody@a.test:
        # A refuses it, B's bounce goes to the SRS sender, which is carol.
        self.mx_send("carol@a.test", "gone@b.test", b"Subject: lost\r\n\r\nlost\r\n")
        bounce = self.wait_bodies(self.a, "carol@a.test")[0]
        self.assertIn(b"Action: failed", bounce)
        self.assertIn(b"nobody@a.test", bounce)
        self.assertIn(b"Subject: lost", bounce)
        self.assertIn(b"To: <carol@a.test>", bounce)

    def test_an_srs_address_takes_reports_only_and_a_made_up_one_nothing(self):
        self.mx_send("someone@sender.test", "fwd@b.test", b"Subject: fw\r\n\r\nx\r\n")
        sender = self.srs_sender(self.wait_bodies(self.a, "alice@a.test")[0])
        with SMTP(B_IP, self.mx_port, timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("spammer.test")
            s.mail("spam@spammer.test")
            code, text = s.rcpt(sender)
            self.assertEqual((code, text[:5]), (550, b"5.7.1"), text)
            s.rset()
            s.mail("")
            tampered = sender[:5] + ("b" if sender[5] == "a" else "a") + sender[6:]
            code, text = s.rcpt(tampered)
            self.assertEqual((code, text[:5]), (550, b"5.1.1"), text)
            code, text = s.rcpt(sender)
            self.assertEqual(code, 250, text)
        self.assertEqual(self.b.count("queue"), 0)


class ForwardingLoop(TwoServers):

    def test_aliases_that_forward_to_each_other_end_at_the_hop_limit(self):
        # fwd@b.test -> fwd@a.test -> fwd@b.test ...: each hop adds a
        # Received: line, and the 50th is refused with 554 5.4.6.
        self.a.kotak("alias", "add", "fwd@a.test", "fwd@b.test")
        self.b.kotak("alias", "add", "fwd@b.test", "fwd@a.test")
        with SMTP(B_IP, self.mx_port, timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("sender.test")
            s.sendmail("someone@sender.test", ["fwd@b.test"], b"Subject: ping\r\n\r\nhi\r\n")
        found = self.a.wait_log(r"5\.4\.6", timeout=60) + self.b.wait_log(r"5\.4\.6", timeout=1)
        self.assertTrue(found, "no hop limit reached")
        time.sleep(2)
        accepted = [len(re.findall(r"event=accepted", x.log("smtpd"))) for x in (self.a, self.b)]
        self.assertLessEqual(sum(accepted), 52, accepted)


class Drop(TwoServers):

    def test_kotak_queue_drop_bounces_the_message_to_its_sender(self):
        self.b.stop("smtpd")
        self.submit(self.a, "alice@a.test", ["bob@b.test"], b"Subject: drop me\r\n\r\nx\r\n")
        self.a.wait_log(r"event=delivery .*result=deferred", timeout=WAIT)
        qid = self.a.query("SELECT id FROM queue")[0][0]
        out = self.a.kotak("queue", "drop", str(qid)).stdout
        self.assertIn("1 recipient dropped", out)
        bounce = self.wait_bodies(self.a, "alice@a.test")[0]
        self.assertIn(b"Action: failed", bounce)
        self.assertIn(b"removed from the queue by the administrator", bounce)
        self.assertIn(b"Subject: drop me", bounce)
        deadline = time.monotonic() + 5
        while self.a.count("queue") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.a.count("queue"), 0)
        self.assertIn("0 messages", self.a.kotak("queue", "list").stdout)


class SmarthostSettings(unittest.TestCase):
    """What kotak-smtpd cannot send to a smarthost stops it at the start, in one line."""

    def start_with_password(self, password):
        inst = KotakInstance({"relay": {"smarthost": "127.0.0.4:2525",
                                        "smarthost_user": "office",
                                        "smarthost_password_file": "pw"}}, users=False)
        self.addCleanup(inst.close)
        inst.create()
        with open(os.path.join(inst.data_dir, "pw"), "w") as f:
            f.write(password)
        os.chmod(os.path.join(inst.data_dir, "pw"), 0o644)
        try:
            inst.start("smtpd")
        except HarnessError:
            pass
        else:
            return inst, None
        inst.stop("smtpd")
        return inst, inst.exit_codes["smtpd"]

    def test_a_password_longer_than_auth_carries_stops_the_start(self):
        inst, code = self.start_with_password("x" * 300 + "\n")
        self.assertEqual(code, 2)
        lines = [l for l in inst.log("smtpd").splitlines() if "255" in l]
        self.assertEqual(len(lines), 1, inst.log("smtpd"))
        self.assertNotIn("xxxxxxxx", inst.log("smtpd"))

    def test_an_empty_password_file_stops_the_start(self):
        inst, code = self.start_with_password("\n")
        self.assertEqual(code, 2)
        self.assertIn("is empty", inst.log("smtpd"))

    def test_a_good_password_starts(self):
        inst, code = self.start_with_password("s3cret\n")
        self.assertIsNone(code)


class KillWithMailQueued(TwoServers):

    def test_kill_9_with_mail_in_the_queue_loses_nothing_and_sends_nothing_twice(self):
        self.b.stop("smtpd")
        for i in range(3):
            self.submit(self.a, "alice@a.test", ["bob@b.test"],
                        f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
        self.a.kill9("smtpd")
        self.b.start("smtpd")
        self.a.start("smtpd")
        got = self.wait_bodies(self.b, "bob@b.test", 3)
        # A restart after they were delivered sends none of them again.
        self.a.wait_log(r"result=delivered", count=3, timeout=WAIT)
        self.a.kill9("smtpd")
        self.a.start("smtpd")
        time.sleep(2)
        self.assertEqual(len(self.b.bodies("bob@b.test")), 3)
        self.assertEqual(sorted(b.split(b"body ")[1][:1] for b in got), [b"0", b"1", b"2"])


if __name__ == "__main__":
    unittest.main()
