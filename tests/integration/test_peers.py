"""The test servers of the outbound-delivery tests, tested: SmtpPeer (a
scripted tests/smtp_peer.py) and DnsServer (tests/dns_server.py), as
peers.py wraps them. Python's smtplib and a DNS query built by hand stand in
for kotak, so that a failure here is the peer's, not kotak's. No kotak runs;
the whole file takes a few seconds. Skipped where Debian's python3-aiosmtpd
or python3-dnslib is missing (scripts/deps.sh --test installs both).
"""
import smtplib
import socket
import ssl
import struct
import tempfile
import shutil
import unittest

from peers import DnsServer, SmtpPeer, loopback_usable, make_cert

PEER_NAME = "mx.peer.test"
TIMEOUT = 5


class PeerSMTP(smtplib.SMTP):
    """smtplib.SMTP that connects to an address and checks the certificate
    against PEER_NAME after STARTTLS."""

    def connect(self, host="localhost", port=0, source_address=None):
        r = super().connect(host, port, source_address)
        self._host = PEER_NAME
        return r


class PeerSMTP_SSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL (implicit TLS) that checks the certificate against PEER_NAME."""

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout, self.source_address)
        return self.context.wrap_socket(sock, server_hostname=PEER_NAME)


class SmtpPeerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="kotak-peers-")
        cls.cert, cls.key = make_cert(cls.tmp, PEER_NAME)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def peer(self, script=None, tls=False):
        p = SmtpPeer(script=script, cert=self.cert if tls else None,
                     key=self.key if tls else None)
        self.addCleanup(p.close)
        return p.start()

    def client_context(self):
        return ssl.create_default_context(cafile=self.cert)

    def test_loopback_address(self):
        # The peer's default address works on Linux loopback without configuration.
        self.assertTrue(loopback_usable("127.0.0.4"))

    def test_plain_refusals_and_reuse(self):
        peer = self.peer({"rcpt": {"Nobody@Peer.test": "550 5.1.1 No such user"},
                          "data_fail_first": 1})
        with PeerSMTP("127.0.0.4", peer.port, timeout=TIMEOUT) as s:
            code, text = s.ehlo("client.test")
            self.assertEqual(code, 250)
            for word in (b"PIPELINING", b"8BITMIME", b"SMTPUTF8", b"DSN"):
                self.assertIn(word, text)
            self.assertNotIn(b"STARTTLS", text)  # no certificate, no TLS
            self.assertNotIn(b"AUTH", text)

            # A bounce's envelope: null sender, every DSN parameter.
            self.assertEqual(s.docmd("MAIL FROM:<> RET=HDRS ENVID=env.1 SIZE=40 BODY=8BITMIME")[0],
                             250)
            self.assertEqual(s.docmd("RCPT TO:<nobody@peer.TEST> NOTIFY=FAILURE"),
                             (550, b"5.1.1 No such user"))
            self.assertEqual(s.docmd("RCPT TO:<bob@peer.test> NOTIFY=SUCCESS,DELAY "
                                     "ORCPT=rfc822;Bob@peer.test")[0], 250)
            self.assertEqual(s.data(b"Subject: one\r\n\r\nfirst\r\n")[0], 451)  # data_fail_first

            # Again, on the same connection: this time it is taken.
            body = b"Subject: two\r\n\r\n.leading dot\r\n8bit \xc3\xa9\r\n"
            self.assertEqual(s.docmd("MAIL FROM:<> RET=HDRS ENVID=env.1")[0], 250)
            self.assertEqual(s.docmd("RCPT TO:<bob@peer.test> NOTIFY=SUCCESS,DELAY "
                                     "ORCPT=rfc822;Bob@peer.test")[0], 250)
            code, text = s.data(body)
            self.assertEqual(code, 250)

        [msg] = peer.wait_messages(1)
        self.assertEqual(msg["data"], body)  # unstuffed, CRLF kept, 8-bit kept
        self.assertEqual(msg["mail_from"], "")
        self.assertEqual(msg["mail_options"], ["RET=HDRS", "ENVID=env.1"])
        self.assertEqual(msg["rcpt_tos"], ["bob@peer.test"])
        self.assertEqual(msg["rcpt_options"],
                         [["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;Bob@peer.test"]])
        self.assertFalse(msg["tls"])
        self.assertIsNone(msg["auth_user"])
        self.assertEqual(msg["helo"], "client.test")
        self.assertEqual(msg["peer"][0], "127.0.0.1")

        peer.wait_events("disconnect", 1)
        self.assertEqual(len(peer.events("connect")), 1)
        self.assertTrue(peer.events("connect")[0]["reply"].startswith("220 "))
        self.assertEqual([e["reply"][:3] for e in peer.events("data")], ["451", "250"])
        self.assertEqual([e["reply"][:3] for e in peer.events("rcpt")], ["550", "250", "250"])
        self.assertEqual(peer.events("data")[1]["message"], msg["id"])
        self.assertEqual(peer.events("quit")[0]["reply"][:3], "221")

    def test_starttls_and_auth(self):
        peer = self.peer({"auth": {"user": "relay", "password": "s3cret"}}, tls=True)
        with PeerSMTP("127.0.0.4", peer.port, timeout=TIMEOUT) as s:
            code, text = s.ehlo("client.test")
            self.assertIn(b"STARTTLS", text)
            self.assertNotIn(b"AUTH", text)  # not before TLS
            self.assertEqual(s.docmd("AUTH PLAIN AHJlbGF5AHMzY3JldA==")[0], 538)
            s.starttls(context=self.client_context())
            code, text = s.ehlo("client.test")
            self.assertIn(b"AUTH PLAIN LOGIN", text)
            self.assertNotIn(b"STARTTLS", text)
            self.assertEqual(s.docmd("MAIL FROM:<a@client.test>")[0], 530)
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.login("relay", "wrong")
            self.assertEqual(cm.exception.smtp_code, 535)
            s.login("relay", "s3cret")
            s.sendmail("a@client.test", ["b@peer.test"], b"Subject: tls\r\n\r\nx\r\n")
        [msg] = peer.wait_messages(1)
        self.assertTrue(msg["tls"])
        self.assertTrue(msg["tls_version"].startswith("TLS"))
        self.assertEqual(msg["auth_user"], "relay")
        self.assertEqual([e["reply"][:3] for e in peer.events("auth")][-1], "235")
        self.assertTrue(peer.events("starttls")[0]["tls"])
        for e in peer.events("auth"):
            self.assertNotIn("s3cret", str(e))

    def test_implicit_tls(self):
        peer = self.peer({"implicit_tls": True}, tls=True)
        with PeerSMTP_SSL("127.0.0.4", peer.port, timeout=TIMEOUT,
                          context=self.client_context()) as s:
            code, text = s.ehlo("client.test")
            self.assertNotIn(b"STARTTLS", text)
            s.sendmail("a@client.test", ["b@peer.test"], b"Subject: 465\r\n\r\nx\r\n")
        [msg] = peer.wait_messages(1)
        self.assertTrue(msg["tls"])
        self.assertTrue(peer.events("connect")[0]["tls"])

    def test_extensions_turned_off(self):
        peer = self.peer({"pipelining": False, "eightbitmime": False, "smtputf8": False,
                          "dsn": False, "size": 100, "mail_reply": "250 2.1.0 Fine"})
        with PeerSMTP("127.0.0.4", peer.port, timeout=TIMEOUT) as s:
            code, text = s.ehlo("client.test")
            lines = text.split(b"\n")
            self.assertIn(b"SIZE 100", lines)
            for word in (b"PIPELINING", b"8BITMIME", b"SMTPUTF8", b"DSN"):
                self.assertNotIn(word, lines)
            self.assertEqual(s.docmd("MAIL FROM:<a@b.test> BODY=8BITMIME")[0], 555)
            self.assertEqual(s.docmd("MAIL FROM:<a@b.test> SMTPUTF8")[0], 555)
            self.assertEqual(s.docmd("MAIL FROM:<a@b.test> RET=FULL")[0], 555)
            self.assertEqual(s.docmd("MAIL FROM:<a@b.test> SIZE=101")[0], 552)
            self.assertEqual(s.docmd("MAIL FROM:a@b.test")[0], 501)  # no angle brackets
            self.assertEqual(s.docmd("MAIL FROM:<a@b.test> SIZE=100"), (250, b"2.1.0 Fine"))
            self.assertEqual(s.docmd("RCPT TO:<c@d.test> NOTIFY=NEVER")[0], 555)

    def test_greeting_and_hang(self):
        peer = self.peer({"greeting": "421 4.3.2 Not now"})
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            PeerSMTP("127.0.0.4", peer.port, timeout=TIMEOUT)
        self.assertEqual(cm.exception.smtp_code, 421)
        peer.wait_events("disconnect", 1)

        hung = self.peer({"hang_after_greeting": True})
        with socket.create_connection(("127.0.0.4", hung.port), timeout=TIMEOUT) as sock:
            f = sock.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220 "))
            sock.sendall(b"EHLO client.test\r\n")
            sock.settimeout(0.5)
            with self.assertRaises(socket.timeout):
                sock.recv(100)

    def test_restart_keeps_port_and_numbering(self):
        peer = self.peer()
        port = peer.port
        with PeerSMTP("127.0.0.4", port, timeout=TIMEOUT) as s:
            s.sendmail("a@client.test", ["b@peer.test"], b"Subject: 1\r\n\r\nx\r\n")
        peer.stop()
        peer.start()
        self.assertEqual(peer.port, port)
        with PeerSMTP("127.0.0.4", port, timeout=TIMEOUT) as s:
            s.sendmail("a@client.test", ["b@peer.test"], b"Subject: 2\r\n\r\nx\r\n")
        self.assertEqual([m["id"] for m in peer.wait_messages(2)], ["0001", "0002"])
        self.assertEqual([e["session"] for e in peer.events("connect")], [1, 1])


# --- DNS ---------------------------------------------------------------------

def dns_query(port, name, qtype, host="127.0.0.1"):
    """One UDP query, built by hand: (rcode, [(type, rdata bytes offset, message)])."""
    qid = 0x4b4f
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    packet += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    packet += struct.pack("!HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT)
        s.sendto(packet, (host, port))
        reply = s.recv(4096)
    rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", reply[:12])
    assert rid == qid and flags & 0x8000, "not our answer"
    pos = 12
    for _ in range(qd):
        pos = skip_name(reply, pos) + 4
    answers = []
    for _ in range(an):
        pos = skip_name(reply, pos)
        rtype, _, _, rdlen = struct.unpack("!HHIH", reply[pos:pos + 10])
        answers.append((rtype, pos + 10))
        pos += 10 + rdlen
    return flags & 0xF, answers, reply


def skip_name(msg, pos):
    while True:
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            return pos + 2
        if n == 0:
            return pos + 1
        pos += 1 + n


def read_name(msg, pos):
    labels = []
    for _ in range(128):
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            pos = struct.unpack("!H", msg[pos:pos + 2])[0] & 0x3FFF
            continue
        if n == 0:
            return ".".join(labels)
        labels.append(msg[pos + 1:pos + 1 + n].decode())
        pos += 1 + n
    raise AssertionError("a name that loops")


def mx_records(port, name):
    rcode, answers, msg = dns_query(port, name, 15)
    return rcode, sorted((struct.unpack("!H", msg[off:off + 2])[0], read_name(msg, off + 2))
                         for rtype, off in answers if rtype == 15)


class DnsServerTest(unittest.TestCase):
    def test_mx_and_set_zone(self):
        dns = DnsServer({"peer.test": {"MX": [[10, "mx1.peer.test"], [20, "mx2.peer.test"]]},
                         "mx1.peer.test": {"A": ["127.0.0.4"]}})
        self.addCleanup(dns.close)
        dns.start()
        self.assertEqual(dns.servers, f"127.0.0.1:{dns.port}")
        self.assertEqual(mx_records(dns.port, "peer.test"),
                         (0, [(10, "mx1.peer.test"), (20, "mx2.peer.test")]))
        rcode, answers, msg = dns_query(dns.port, "mx1.peer.test", 1)
        self.assertEqual((rcode, len(answers)), (0, 1))
        self.assertEqual(socket.inet_ntoa(msg[answers[0][1]:answers[0][1] + 4]), "127.0.0.4")
        self.assertEqual(mx_records(dns.port, "absent.test")[0], 3)  # NXDOMAIN

        port = dns.port
        dns.set_zone({"peer.test": {"MX": [[5, "other.peer.test"]]}})
        self.assertEqual(dns.port, port)
        self.assertEqual(mx_records(dns.port, "peer.test"), (0, [(5, "other.peer.test")]))


if __name__ == "__main__":
    unittest.main()
