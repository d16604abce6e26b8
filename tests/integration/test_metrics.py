"""[metrics] listen: Prometheus text at /metrics and /healthz, served by kotak-smtpd
for both daemons.

Real traffic moves each counter: smtplib sends (one stored, one too big, one
to an unknown user, one failed login), poplib retrieves and deletes over
STLS; the exposition is parsed line by line as Prometheus's text format
0.0.4 says, each family once with HELP and TYPE before its samples. /healthz
says 200 while both daemons run and 503 once kotak-pop3d stops or hangs.
"""
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request

from kotak_harness import (PASSWORDS, POP3, SMTP, KotakTestCase, free_ports)

ALICE = "alice@example.test"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
# Prometheus's own checker, unpacked by scripts/deps.sh --test.
PROMTOOL = os.path.join(ROOT, "tests", "tools", "usr", "bin", "promtool")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (-?[0-9]+(\.[0-9]+)?)$')


def fetch(port, path):
    """(status, body) of GET path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode(), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Content-Type")


def parse(text):
    """{(name, frozenset of label pairs): value}, checking the format as it goes."""
    samples, families, typed = {}, [], {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            if name in families:
                raise AssertionError(f"family {name} twice")
            families.append(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name == families[-1], f"TYPE {name} not after its HELP"
            assert kind in ("counter", "gauge"), kind
            typed[name] = kind
            continue
        m = SAMPLE.match(line)
        if m is None:
            raise AssertionError(f"not a sample line: {line!r}")
        name = m.group(1)
        assert name == families[-1], f"{name} outside its family ({families[-1]})"
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        key = (name, labels)
        assert key not in samples, f"sample {key} twice"
        samples[key] = int(m.group(4))
    for name in families:
        assert name in typed, f"{name} has no TYPE"
        if typed[name] == "counter":
            assert name.endswith("_total"), name
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


class Metrics(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def setUp(self):
        self.port = free_ports(1)[0]
        self.CONFIG = {"metrics": {"listen": f"127.0.0.1:{self.port}"},
                       "limits": {"message_size": "100K"}}
        super().setUp()

    def scrape(self):
        status, body, ctype = fetch(self.port, "/metrics")
        self.assertEqual(status, 200, body)
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
        return parse(body)

    def test_counters_follow_real_mail_and_logins(self):
        before = self.scrape()
        self.assertEqual(value(before, "kotak_smtp_messages_total", result="stored"), 0)
        self.assertEqual(value(before, "kotak_up", daemon="smtpd"), 1)
        self.assertEqual(value(before, "kotak_up", daemon="pop3d"), 1)
        self.assertEqual(value(before, "kotak_connections_open", daemon="smtpd"), 0)
        self.assertEqual(value(before, "kotak_queue_recipients"), 0)
        self.assertGreater(value(before, "kotak_store_bytes"), 0)
        self.assertGreater(value(before, "kotak_tls_certificate_expiry_timestamp_seconds"),
                           time.time())
        self.assertIn(("kotak_build_info", frozenset({("version", "0.1.0")})), before)

        # An open session shows in the gauge while it lasts.
        held = SMTP("127.0.0.1", self.kotak.ports["smtp"])
        held.ehlo("client.test")
        self.assertEqual(value(self.scrape(), "kotak_connections_open", daemon="smtpd"), 1)
        held.quit()

        s = SMTP("127.0.0.1", self.kotak.ports["smtp"])
        s.ehlo("client.test")
        s.sendmail("x@sender.test", [ALICE], b"Subject: one\r\n\r\nhello\r\n")
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            s.sendmail("x@sender.test", ["nobody@example.test"], b"Subject: two\r\n\r\nx\r\n")
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            s.sendmail("x@sender.test", ["someone@elsewhere.test"], b"Subject: relay\r\n\r\nx\r\n")
        # Too big for SIZE= is refused at MAIL, before any data: only data counts. Without SIZE=
        # the data is read and refused at its end.
        with self.assertRaises(smtplib.SMTPException):
            s.sendmail("x@sender.test", [ALICE], b"Subject: big\r\n\r\n" + b"x" * 200000 + b"\r\n")
        s.rset()
        s.esmtp_features.pop("size", None)
        with self.assertRaises(smtplib.SMTPException):
            s.sendmail("x@sender.test", [ALICE], b"Subject: big\r\n\r\n" + b"x" * 200000 + b"\r\n")
        s.close()
        sub = SMTP("127.0.0.1", self.kotak.ports["submission"])
        sub.starttls(context=ssl._create_unverified_context())
        sub.ehlo("client.test")
        sub.user, sub.password = ALICE, "not-the-password"
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            sub.auth("PLAIN", sub.auth_plain)  # one attempt (login() would try LOGIN next)
        sub.close()

        p = POP3("127.0.0.1", self.kotak.ports["pop3"])
        p.stls(context=ssl._create_unverified_context())
        p.user(ALICE)
        p.pass_(PASSWORDS[ALICE])
        _, lines, _ = p.retr(1)
        p.top(1, 0)
        p.dele(1)
        p.quit()

        m = self.scrape()
        self.assertEqual(value(m, "kotak_smtp_messages_total", result="stored"), 1)
        self.assertEqual(value(m, "kotak_smtp_messages_total", result="too_big"), 1)
        self.assertEqual(value(m, "kotak_smtp_recipients_refused_total", reason="unknown_user"), 1)
        self.assertEqual(value(m, "kotak_smtp_recipients_refused_total", reason="relay_denied"), 1)
        self.assertEqual(value(m, "kotak_logins_total", daemon="smtpd", result="failed"), 1)
        self.assertEqual(value(m, "kotak_logins_total", daemon="pop3d", result="ok"), 1)
        # The harness's readiness check made a handshake on each implicit-TLS port.
        for d in ("smtpd", "pop3d"):
            self.assertEqual(value(m, "kotak_tls_handshakes_total", daemon=d, result="ok") -
                             value(before, "kotak_tls_handshakes_total", daemon=d, result="ok"),
                             1, d)
        self.assertEqual(value(m, "kotak_pop3_retrievals_total", command="retr"), 1)
        self.assertEqual(value(m, "kotak_pop3_retrievals_total", command="top"), 1)
        self.assertEqual(value(m, "kotak_pop3_deleted_total"), 1)
        retr_bytes = sum(len(l) + 2 for l in lines)
        self.assertGreaterEqual(value(m, "kotak_pop3_sent_bytes_total"), retr_bytes)
        self.assertEqual(value(m, "kotak_connections_total", daemon="smtpd") -
                         value(before, "kotak_connections_total", daemon="smtpd"), 3)
        self.assertEqual(value(m, "kotak_connections_total", daemon="pop3d") -
                         value(before, "kotak_connections_total", daemon="pop3d"), 1)
        # The session ends after QUIT's commit, a moment after the client has its +OK.
        deadline = time.monotonic() + 5
        while value(self.scrape(), "kotak_connections_open", daemon="pop3d") != 0:
            self.assertLess(time.monotonic(), deadline, "the POP3 session is still counted open")
            time.sleep(0.05)
        # A failed handshake is counted as one.
        with socket.create_connection(("127.0.0.1", self.kotak.ports["submissions"])) as c:
            c.sendall(b"\x16\x03\x01\x00\x05hello")
            c.settimeout(5)
            try:
                while c.recv(4096):
                    pass
            except OSError:
                pass
        deadline = time.monotonic() + 5
        failed = value(m, "kotak_tls_handshakes_total", daemon="smtpd", result="failed")
        while value(self.scrape(), "kotak_tls_handshakes_total", daemon="smtpd",
                    result="failed") != failed + 1:
            self.assertLess(time.monotonic(), deadline, "failed handshake not counted")
            time.sleep(0.1)

    def test_health_follows_pop3d(self):
        status, body, _ = fetch(self.port, "/healthz")
        self.assertEqual(status, 200, body)
        self.assertTrue(body.startswith("ok\n"), body)
        self.assertIn("pop3d: up", body)
        self.kotak.stop("pop3d")
        status, body, _ = fetch(self.port, "/healthz")
        self.assertEqual(status, 503, body)
        self.assertIn("pop3d: down (stopped)", body)
        self.assertEqual(value(self.scrape(), "kotak_up", daemon="pop3d"), 0)

    def test_a_hung_pop3d_is_unhealthy_within_20_seconds(self):
        pid = self.kotak.procs["pop3d"].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 25
            while True:
                status, body, _ = fetch(self.port, "/healthz")
                if status == 503:
                    break
                self.assertLess(time.monotonic(), deadline, "a stopped pop3d still healthy")
                time.sleep(1)
            self.assertIn("no beat", body)
        finally:
            os.kill(pid, signal.SIGCONT)

    def test_only_get_and_head_of_two_paths(self):
        self.assertEqual(fetch(self.port, "/")[0], 404)
        self.assertEqual(fetch(self.port, "/metrics/../etc")[0], 404)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
            c.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            self.assertTrue(c.recv(100).startswith(b"HTTP/1.1 405 "))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
            c.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            out = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                out += d
            self.assertTrue(out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\n"), out)
        # Scrapes are no mail sessions.
        before = value(self.scrape(), "kotak_connections_total", daemon="smtpd")
        self.scrape()
        self.assertEqual(value(self.scrape(), "kotak_connections_total", daemon="smtpd"), before)


    def test_a_counters_file_cut_short_under_a_scrape_is_no_crash(self):
        # A daemon starting again rewrites its file while kotak-smtpd may be reading it.
        path = os.path.join(self.kotak.data_dir, "metrics", "pop3d.counters")
        stop = threading.Event()

        def churn():
            while not stop.is_set():
                with open(path, "r+b") as f:
                    data = f.read()
                    f.truncate(0)
                    f.truncate(len(data))
                    f.seek(0)
                    f.write(data)
        t = threading.Thread(target=churn)
        t.start()
        try:
            for _ in range(300):
                status, _, _ = fetch(self.port, "/metrics")
                self.assertEqual(status, 200)
        finally:
            stop.set()
            t.join()
        self.assertIsNone(self.kotak.procs["smtpd"].poll(), "kotak-smtpd died")

    @unittest.skipUnless(os.access(PROMTOOL, os.X_OK), "no promtool: scripts/deps.sh --test")
    def test_promtool_finds_no_fault_in_the_exposition(self):
        s = SMTP("127.0.0.1", self.kotak.ports["smtp"])
        s.sendmail("x@sender.test", [ALICE], b"Subject: one\r\n\r\nhello\r\n")
        s.quit()
        _, body, _ = fetch(self.port, "/metrics")
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""))


@unittest.skipUnless(os.access(PROMTOOL, os.X_OK), "no promtool: scripts/deps.sh --test")
class AlertRules(unittest.TestCase):

    def test_the_example_alert_rules_load(self):
        rules = os.path.join(ROOT, "dist", "prometheus", "kotak-alerts.yml")
        p = subprocess.run([PROMTOOL, "check", "rules", rules], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS: 7 rules found", p.stdout)


class WithoutPop3(KotakTestCase):

    def setUp(self):
        self.port = free_ports(1)[0]
        self.CONFIG = {"metrics": {"listen": f"127.0.0.1:{self.port}"},
                       "pop3": {"listen": ""}, "pop3s": {"listen": ""}}
        super().setUp()

    def test_no_pop3d_is_meant_to_run_so_none_is_missed(self):
        status, body, _ = fetch(self.port, "/healthz")
        self.assertEqual(status, 200, body)
        self.assertIn("pop3d: off", body)
        m = parse(fetch(self.port, "/metrics")[1])
        self.assertEqual(value(m, "kotak_up", daemon="smtpd"), 1)
        self.assertIsNone(value(m, "kotak_up", daemon="pop3d"), "an alert would fire for ever")


class Off(KotakTestCase):

    def test_no_metrics_file_and_no_listener_when_off(self):
        self.assertFalse(os.path.exists(os.path.join(self.kotak.data_dir, "metrics")))


if __name__ == "__main__":
    unittest.main()
