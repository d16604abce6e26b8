"""The first certificate against verifying clients, and the reason a TLS
connection failed on its disconnect line (issue 11, defect 14).

`kotak init` makes kotak-data/cert.pem; a client told to trust that file
(Python's cafile=, curl --cacert, msmtp tls_trust_file) must verify it when
it connects the way the README says, by 127.0.0.1 or localhost, as well as
by the host name. And when a handshake or a record fails, the daemon's
`event=disconnect` line says why in tls_error=.

Every test talks to the real daemons over real sockets; curl and openssl are
the ones scripts/deps.sh --test installs.
"""
import poplib
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
import unittest

from kotak_harness import HOSTNAME, PASSWORDS, SOCKET_TIMEOUT, KotakTestCase, config

ALICE = "alice@example.test"
NAMES = ("127.0.0.1", "localhost", HOSTNAME)


def read_until_closed(sock, timeout=SOCKET_TIMEOUT):
    """Reads (an alert, perhaps) until the server closes; whether it did in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
    return False


class TlsNamesTest(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def trusting(self):
        """What the README tells a Python client to do: trust the demo certificate,
        with every default check on (check_hostname, CERT_REQUIRED)."""
        ctx = ssl.create_default_context(cafile=self.kotak.cert)
        self.assertTrue(ctx.check_hostname)
        self.assertEqual(ctx.verify_mode, ssl.CERT_REQUIRED)
        return ctx

    def port(self, listener):
        return self.kotak.ports[listener]

    def assertNoTlsError(self):
        for name in ("smtpd", "pop3d"):
            self.assertNotIn("tls_error=", self.kotak.log(name))

    def disconnect_line(self, daemon, pattern, timeout=5):
        """The first event=disconnect line with a tls_error matching pattern."""
        found = self.kotak.wait_log(r"^.*event=disconnect tls_error=" + pattern + r".*$", daemon,
                                    timeout)
        self.assertTrue(found, f"no disconnect line with tls_error={pattern} in:\n"
                               f"{self.kotak.log(daemon)}")
        return found[0]

    # --- the names in the certificate ---------------------------------

    def test_implicit_tls_verifies_by_address_localhost_and_host_name(self):
        for listener, greeting in (("submissions", b"220 "), ("pop3s", b"+OK")):
            for name in NAMES:
                with self.subTest(listener=listener, name=name):
                    # By localhost the connection really goes to "localhost".
                    host = "localhost" if name == "localhost" else "127.0.0.1"
                    sock = socket.create_connection((host, self.port(listener)),
                                                    timeout=SOCKET_TIMEOUT)
                    with self.trusting().wrap_socket(sock, server_hostname=name) as s:
                        self.assertTrue(s.makefile("rb").readline().startswith(greeting))
                        self.assertEqual(s.version(), "TLSv1.2")
        self.assertNoTlsError()

    def test_starttls_and_stls_verify_by_address_and_localhost(self):
        for name in ("127.0.0.1", "localhost"):
            with self.subTest(protocol="smtp", name=name):
                # Plain smtplib and poplib check the name they connected to.
                with smtplib.SMTP(name, self.port("submission"), timeout=SOCKET_TIMEOUT) as s:
                    s.starttls(context=self.trusting())
                    s.login(ALICE, PASSWORDS[ALICE])
                    self.assertEqual(s.noop()[0], 250)
            with self.subTest(protocol="pop3", name=name):
                p = poplib.POP3(name, self.port("pop3"), timeout=SOCKET_TIMEOUT)
                try:
                    p.stls(context=self.trusting())
                    p.user(ALICE)
                    self.assertTrue(p.pass_(PASSWORDS[ALICE]).startswith(b"+OK"))
                    p.quit()
                finally:
                    p.close()
        self.assertNoTlsError()

    def curl(self, *args):
        if shutil.which("curl") is None:
            self.skipTest("curl is not installed (scripts/deps.sh --test installs it)")
        return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True,
                              text=True, timeout=30)

    def test_curl_with_cacert(self):
        cacert = ("--cacert", self.kotak.cert)
        p = self.curl(*cacert, f"smtps://127.0.0.1:{self.port('submissions')}", "-X", "NOOP")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("250", p.stdout)
        p = self.curl(*cacert, "--ssl-reqd", f"smtp://localhost:{self.port('submission')}",
                      "-X", "NOOP")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.curl(*cacert, "-u", f"{ALICE}:{PASSWORDS[ALICE]}",
                      f"pop3s://127.0.0.1:{self.port('pop3s')}/")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.curl(*cacert, "-u", f"{ALICE}:{PASSWORDS[ALICE]}", "--ssl-reqd",
                      f"pop3://localhost:{self.port('pop3')}/")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNoTlsError()
        # Without --cacert curl still verifies, and refuses: the check above counted.
        p = self.curl(f"smtps://127.0.0.1:{self.port('submissions')}", "-X", "NOOP")
        self.assertEqual(p.returncode, 60, p.stderr)

    def test_openssl_shows_the_names(self):
        if shutil.which("openssl") is None:
            self.skipTest("openssl is not installed (scripts/deps.sh --test installs it)")
        p = subprocess.run(["openssl", "x509", "-in", self.kotak.cert, "-noout", "-ext",
                            "subjectAltName"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        names = [n.strip() for n in p.stdout.splitlines()[-1].split(",")]
        # kotak init's listeners are all on 127.0.0.1: it is there once.
        self.assertEqual(names, [f"DNS:{HOSTNAME}", "DNS:localhost", "IP Address:127.0.0.1",
                                 "IP Address:0:0:0:0:0:0:0:1"])

    # --- why a TLS connection ended --------------------------------------

    def test_garbage_instead_of_a_client_hello(self):
        for daemon, listener in (("smtpd", "submissions"), ("pop3d", "pop3s")):
            with self.subTest(listener=listener):
                with socket.create_connection(("127.0.0.1", self.port(listener)),
                                              timeout=SOCKET_TIMEOUT) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    self.assertTrue(read_until_closed(s), "the server did not hang up")
                line = self.disconnect_line(daemon, r'"SSL - [^"]*ClientHello[^"]*"')
                self.assertRegex(line, r" conn=[0-9a-f]{8} ip=127\.0\.0\.1 event=disconnect ")

    def test_client_that_does_not_trust_the_certificate(self):
        # The system's CAs only: OpenSSL rejects the certificate with an alert.
        for daemon, listener in (("smtpd", "submissions"), ("pop3d", "pop3s")):
            with self.subTest(listener=listener):
                sock = socket.create_connection(("127.0.0.1", self.port(listener)),
                                                timeout=SOCKET_TIMEOUT)
                with self.assertRaises(ssl.SSLCertVerificationError):
                    ssl.create_default_context().wrap_socket(sock, server_hostname="127.0.0.1")
                sock.close()
                self.disconnect_line(daemon, r'"peer sent alert: unknown ca"')

    def test_garbage_after_starttls(self):
        with socket.create_connection(("127.0.0.1", self.port("submission")),
                                      timeout=SOCKET_TIMEOUT) as s:
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220 "))
            s.sendall(b"STARTTLS\r\n")
            self.assertTrue(f.readline().startswith(b"220 "))
            s.sendall(b"\x16\x03\x01\x00\x05hello")
            self.assertTrue(read_until_closed(s), "the server did not hang up")
        # Opened before TLS began: the session's own disconnect line carries it.
        line = self.disconnect_line("smtpd", r'"SSL - [^"]*"')
        self.assertRegex(line, r"smtp session=[0-9a-f]{8} event=disconnect tls_error=")

    @config(limits={"tls_handshake_timeout": "1s"})
    def test_handshake_timeout(self):
        with socket.create_connection(("127.0.0.1", self.port("pop3s")),
                                      timeout=SOCKET_TIMEOUT) as s:
            s.sendall(b"\x16\x03\x01")  # a record header begun, never finished
            self.disconnect_line("pop3d", r'"handshake timeout"', timeout=10)

    def test_broken_record_after_the_handshake(self):
        # A handshake through memory BIOs, then one record with a flipped bit.
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.trusting().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        with socket.create_connection(("127.0.0.1", self.port("submissions")),
                                      timeout=SOCKET_TIMEOUT) as s:

            def until_done(step):
                for _ in range(100):
                    try:
                        return step()
                    except ssl.SSLWantReadError:
                        s.sendall(outgoing.read())
                        data = s.recv(65536)
                        self.assertTrue(data, "the server closed the connection")
                        incoming.write(data)
                self.fail("no progress")

            until_done(tls.do_handshake)
            s.sendall(outgoing.read())  # the client's Finished
            self.assertTrue(until_done(lambda: tls.read(1024)).startswith(b"220 "))
            tls.write(b"NOOP\r\n")
            record = bytearray(outgoing.read())
            record[-1] ^= 1  # the last octet of the AEAD tag
            s.sendall(bytes(record))
            self.assertTrue(read_until_closed(s), "the server did not hang up")
        line = self.disconnect_line("smtpd", r'"SSL - [^"]*"')
        self.assertRegex(line, r"smtp session=[0-9a-f]{8} event=disconnect tls_error=")

if __name__ == "__main__":
    unittest.main()
