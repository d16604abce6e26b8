"""Mail across three servers, one of them not ours: kotak A (a.test, 127.0.0.2)
hands alice's message to Debian's Postfix (127.0.0.5), b.test's MX, which
relays it to kotak B (127.0.0.3), where bob fetches it over POP3. So the
"several servers" of a real path are shown with a server kotak did not
write: A speaks SMTP (and STARTTLS) to Postfix, Postfix to B.

Postfix runs as an instance of its own (postfix -c DIR), its queue, config
and log in a temporary folder, on the same MX port as the kotaks. Skipped
when Postfix is not installed or cannot start (it needs root).
"""
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from kotak_harness import HarnessError
from test_outbound import A_IP, B_IP, TwoServers, zone

P_IP = "127.0.0.5"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

MASTER_CF = """\
{ip}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
meta_directory = /etc/postfix
myhostname = mx.p.test
mydomain = p.test
myorigin = p.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = b.test
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
transport_maps = inline:{{ b.test=smtp:[{b_ip}]:{port}, a.test=smtp:[{a_ip}]:{port} }}
smtp_tls_security_level = may
smtpd_tls_security_level = may
smtpd_tls_cert_file = {dir}/cert.pem
smtpd_tls_key_file = {dir}/key.pem
smtpd_tls_received_header = yes
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = yes
"""


class PostfixInstance:
    def __init__(self, port):
        self.dir = tempfile.mkdtemp(prefix="kotak-postfix-")
        os.chmod(self.dir, 0o755)
        self.port = port
        self.started = False

    def start(self):
        if not os.access(POSTFIX, os.X_OK):
            raise unittest.SkipTest("Postfix is not installed (Debian: postfix)")
        if os.geteuid() != 0:
            raise unittest.SkipTest("a Postfix instance needs root")
        d = self.dir
        for sub in ("etc", "spool", "data"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        shutil.chown(os.path.join(d, "data"), "postfix")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        "/CN=mx.p.test", "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem"],
                       check=True, capture_output=True)
        with open(f"{d}/etc/main.cf", "w") as f:
            f.write(MAIN_CF.format(dir=d, ip=P_IP, a_ip=A_IP, b_ip=B_IP, port=self.port))
        with open(f"{d}/etc/master.cf", "w") as f:
            f.write(MASTER_CF.format(ip=P_IP, port=self.port))
        # Postfix says why it will not start on a terminal only: run it under one.
        p = subprocess.run(["script", "-qec", f"{POSTFIX} -c {d}/etc start", "/dev/null"],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise HarnessError(f"Postfix did not start: {p.stdout.strip()[-500:]}")
        self.started = True

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        if self.started:
            subprocess.run([POSTFIX, "-c", f"{self.dir}/etc", "stop"], capture_output=True,
                           timeout=60)
            # Everything started from this folder: master and its children.
            subprocess.run(["pkill", "-f", f"-c {self.dir}/etc"], capture_output=True)
            # master leaves once its children have gone; wait a little for the port.
            time.sleep(0.5)
        shutil.rmtree(self.dir, ignore_errors=True)


class ThroughPostfix(TwoServers):
    # b.test's MX is Postfix; Postfix's transport sends b.test on to kotak B.
    ZONE = zone(**{"b.test": {"MX": [[10, "mx.p.test"]]}, "mx.p.test": {"A": [P_IP]}})

    def setUp(self):
        super().setUp()
        self.postfix = PostfixInstance(self.mx_port)
        self.addCleanup(self.close_postfix)
        self.postfix.start()

    def close_postfix(self):
        outcome = getattr(self, "_outcome", None)
        failed = outcome is not None and any(e is not None for _, e in getattr(outcome, "errors", []))
        if failed or os.environ.get("KOTAK_TEST_KEEP_LOGS"):
            for line in self.postfix.log().splitlines()[-30:]:
                print(f"# postfix: {line}")
        self.postfix.close()

    def test_kotak_to_postfix_to_kotak_and_fetched_over_pop3(self):
        msg = (b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: three hops\r\n"
               b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <hop3@a.test>\r\n\r\n"
               b"Through a server we did not write.\r\n")
        self.assertEqual(self.submit(self.a, "alice@a.test", ["bob@b.test"], msg), {})
        body = self.wait_bodies(self.b, "bob@b.test", timeout=40)[0]
        head = body.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
        received = [l for l in head.split(b"\r\n") if l.startswith(b"Received:")]
        # Newest first: B took it from Postfix, Postfix from A, A from alice's client.
        self.assertGreaterEqual(len(received), 3, head)
        self.assertIn(b"from mx.p.test", received[0])
        self.assertIn(b"by mx.b.test", received[0])
        self.assertIn(b"by mx.p.test", received[1])
        self.assertIn(b"from mx.a.test", received[1])
        self.assertIn(b"by mx.a.test", received[2])
        # A used STARTTLS toward Postfix (Postfix's own Received: says so).
        self.assertRegex(received[1], rb"with ESMTPS|using TLS")
        self.a.wait_log(r"event=delivery .*rcpt=<bob@b.test> mx=mx.p.test .*tls=yes code=250 "
                        r"result=delivered")
        self.assertIn(b"Through a server we did not write.", self.fetch_pop3(self.b, "bob@b.test"))

    def test_a_recipient_postfix_relays_to_and_b_refuses_bounces_back_to_alice(self):
        # Postfix accepts for b.test, B refuses the user: Postfix's bounce
        # comes back to alice at A, through A's MX port.
        self.submit(self.a, "alice@a.test", ["nobody@b.test"], b"Subject: via pf\r\n\r\nx\r\n")
        bounce = self.wait_bodies(self.a, "alice@a.test", timeout=40)[0]
        self.assertIn(b"Return-Path: <>", bounce)
        self.assertIn(b"nobody@b.test", bounce)
        self.assertIn(b"MAILER-DAEMON@p.test", bounce.replace(b"mx.p.test", b"p.test"))


if __name__ == "__main__":
    unittest.main()
