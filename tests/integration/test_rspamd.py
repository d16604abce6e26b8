"""kotak-smtpd's MX with Debian's real rspamd (tests/integration/rspamd_fixture.py
starts it on a loopback port, network modules off): GTUBE is refused, a clean
message is kept with rspamd's score, an X-Spam field from outside does not
survive, and with rspamd gone [spam] rspamd_fail decides: open takes the
message, closed answers 451. Skipped when rspamd is not installed.
"""
import unittest

import rspamd_fixture
from kotak_harness import KotakInstance, SMTP, SOCKET_TIMEOUT

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
CLEAN = (b"From: Someone <someone@sender.test>\r\nTo: alice@example.test\r\n"
         b"Subject: lunch on friday\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
         b"Message-ID: <lunch1@sender.test>\r\n\r\n"
         b"Shall we meet at noon by the station? Bring the map.\r\n")


def setUpModule():
    if not rspamd_fixture.available():
        raise unittest.SkipTest("rspamd is not installed (Debian: apt-get install rspamd)")


class WithRspamd(unittest.TestCase):
    FAIL_MODE = "open"

    @classmethod
    def setUpClass(cls):
        cls.rspamd = rspamd_fixture.Rspamd()
        cls.rspamd.start()

    @classmethod
    def tearDownClass(cls):
        cls.rspamd.stop()

    def setUp(self):
        self.k = KotakInstance({"spam": {"rspamd": self.rspamd.address,
                                         "rspamd_fail": self.FAIL_MODE}})
        self.addCleanup(self.close)
        self.k.create()
        self.k.start("smtpd")

    def close(self):
        rc = self.k.stop("smtpd")
        log = self.k.log("smtpd")
        self.k.close()
        self.assertEqual(rc, 0, log[-2000:])
        self.assertNotIn("Sanitizer", log)

    def send(self, msg, sender="someone@sender.test"):
        with SMTP("127.0.0.1", self.k.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("client.sender.test")
            s.mail(sender)
            self.assertEqual(s.rcpt("alice@example.test")[0], 250)
            return s.data(msg)


class Verdicts(WithRspamd):

    def test_gtube_is_refused_with_550_5_7_1(self):
        code, text = self.send(b"From: someone@sender.test\r\nSubject: offer\r\n\r\n" + GTUBE +
                               b"\r\n")
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith(b"5.7.1"), text)
        self.assertEqual(self.k.bodies("alice@example.test"), [])
        self.k.wait_log(r'event=checks .*spam="reject" result=refused')

    def test_a_clean_message_is_kept_with_its_score_and_forged_spam_fields_go(self):
        msg = b"X-Spam-Score: -100.00\r\nX-Spam-Status: No, score=-100\r\n" + CLEAN
        code, text = self.send(msg)
        self.assertEqual(code, 250, text)
        body = self.k.bodies("alice@example.test")[0]
        head = body.split(b"\r\n\r\n", 1)[0]
        self.assertRegex(head, rb"\r\nX-Spam-Score: -?[0-9]+\.[0-9]+\r\n")
        self.assertRegex(head, rb"\r\nX-Spam-Status: No, score=-?[0-9.]+ required=[0-9.]+")
        self.assertNotIn(b"-100", head)
        self.assertNotIn(b"X-Spam: Yes", head)
        self.assertEqual(head.count(b"X-Spam-Status:"), 1, head)
        self.assertEqual(head.count(b"X-Spam-Score:"), 1, head)
        self.assertIn(b"Shall we meet at noon", body)


class RspamdGoneOpen(WithRspamd):

    def test_with_rspamd_stopped_and_fail_open_the_message_is_taken_unscored(self):
        self.rspamd.stop()
        try:
            code, text = self.send(CLEAN)
            self.assertEqual(code, 250, text)
            body = self.k.bodies("alice@example.test")[0]
            self.assertNotIn(b"X-Spam-Score:", body)
            self.k.wait_log(r'event=checks .*spam="unreachable" result=accepted')
        finally:
            self.rspamd.start()


class RspamdGoneClosed(WithRspamd):
    FAIL_MODE = "closed"

    def test_with_rspamd_stopped_and_fail_closed_the_answer_is_451_4_7_1(self):
        self.rspamd.stop()
        try:
            code, text = self.send(CLEAN)
            self.assertEqual(code, 451, text)
            self.assertTrue(text.startswith(b"4.7.1"), text)
            self.assertEqual(self.k.bodies("alice@example.test"), [])
        finally:
            self.rspamd.start()


if __name__ == "__main__":
    unittest.main()
