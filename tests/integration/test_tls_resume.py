"""TLS session resumption: a client that comes back (a phone polling POP3,
a server sending a second message) resumes its session instead of paying
for a full handshake, with a session ticket (RFC 5077) or by session id.

Real clients: Python's ssl with a saved session (ticket, and id when the
client turns tickets off), curl fetching twice in one run, and Postfix's
own SMTP client code through posttls-finger -r, which reconnects and says
whether it reused the session.
"""
import os
import re
import signal
import socket
import ssl
import subprocess
import unittest

from kotak_harness import SOCKET_TIMEOUT, KotakTestCase, PASSWORDS, free_ports
from test_metrics import fetch, parse, value

ALICE = "alice@example.test"
BOB = "bob@example.test"


def client_context(tickets=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the session a client keeps after one handshake
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def connect(port, ctx, session=None, greeting=b""):
    """An implicit-TLS connection; returns (session, reused) after reading the greeting."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, session=session) as s:
            data = s.recv(512)
            assert data.startswith(greeting), data
            return s.session, s.session_reused


class Resumption(KotakTestCase):
    """The server's own count ([metrics]) says what it did, whatever a client believes."""
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def setUp(self):
        self.metrics_port = free_ports(1)[0]
        self.CONFIG = {"metrics": {"listen": f"127.0.0.1:{self.metrics_port}"}}
        super().setUp()

    def handshakes(self, daemon, result):
        status, body, _ = fetch(self.metrics_port, "/metrics")
        self.assertEqual(status, 200)
        return value(parse(body), "kotak_tls_handshakes_total", daemon=daemon, result=result)

    def check_resumes(self, port, greeting, tickets, daemon):
        ctx = client_context(tickets)
        session, reused = connect(port, ctx, greeting=greeting)
        self.assertFalse(reused)
        self.assertIsNotNone(session)
        self.assertEqual(session.has_ticket, tickets)
        before = self.handshakes(daemon, "resumed")
        _, reused = connect(port, ctx, session, greeting)
        self.assertTrue(reused, "the second connection resumed")
        self.assertEqual(self.handshakes(daemon, "resumed"), before + 1)

    def test_python_ssl_resumes_with_a_ticket_and_by_session_id(self):
        for listener, greeting, daemon in (("submissions", b"220 ", "smtpd"),
                                           ("pop3s", b"+OK", "pop3d")):
            for tickets in (True, False):
                with self.subTest(listener=listener, tickets=tickets):
                    self.check_resumes(self.kotak.ports[listener], greeting, tickets, daemon)

    def test_a_session_is_not_taken_by_the_other_daemon(self):
        ctx = client_context()
        session, _ = connect(self.kotak.ports["submissions"], ctx, greeting=b"220 ")
        _, reused = connect(self.kotak.ports["pop3s"], ctx, session, b"+OK")
        self.assertFalse(reused, "kotak-pop3d has keys of its own")

    def test_a_reload_starts_new_keys(self):
        ctx = client_context()
        port = self.kotak.ports["submissions"]
        session, _ = connect(port, ctx, greeting=b"220 ")
        os.kill(self.kotak.procs["smtpd"].pid, signal.SIGHUP)
        self.kotak.wait_log("event=tls-reload result=ok", name="smtpd")
        _, reused = connect(port, ctx, session, b"220 ")
        self.assertFalse(reused, "a ticket from before the reload opens nothing")

    def test_curl_resumes_its_second_fetch(self):
        # Two users, so that curl opens a second connection rather than reusing the first.
        port = self.kotak.ports["pop3s"]
        url = f"pop3s://127.0.0.1:{port}/"
        before = self.handshakes("pop3d", "resumed")
        p = subprocess.run(["curl", "-sv", "-k", "--user", f"{ALICE}:{PASSWORDS[ALICE]}", url,
                            "--next", "-sv", "-k", "--user", f"{BOB}:{PASSWORDS[BOB]}", url],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(re.findall(r"Connected to 127.0.0.1", p.stderr)), 2, p.stderr)
        self.assertEqual(self.handshakes("pop3d", "resumed"), before + 1)

    def test_postfix_smtp_client_reuses_its_session(self):
        port = self.kotak.ports["submission"]
        before = self.handshakes("smtpd", "resumed")
        p = subprocess.run(["posttls-finger", "-c", "-r", "1", "-l", "may", "-L", "summary,cache",
                            f"[127.0.0.1]:{port}"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Reusing old session", p.stdout + p.stderr)
        self.assertEqual(self.handshakes("smtpd", "resumed"), before + 1)


if __name__ == "__main__":
    unittest.main()
