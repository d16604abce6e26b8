"""Quotas against the real daemons: RCPT answers on the MX and on submission
(452 4.2.2 for a full maildrop, 552 5.2.2 for a message larger than the whole
quota, SIZE= and the final dot), usage after POP3 deletions, the near-quota
warning delivered once at a POP3 login, and `kotak user list`.

Run: KOTAK_BUILD=build python3 -m unittest test_quota (from this folder)
"""
import email
import smtplib
import time
import unittest

from kotak_harness import (PASSWORDS, POP3, SMTP, SOCKET_TIMEOUT, KotakTestCase)
from test_run import close_quietly

ALICE = "alice@example.test"
BOB = "bob@example.test"
REMOTE = "someone@remote.test"
CLIENT = "client.remote.test"


def message(subject, size=200, to=ALICE):
    """A message of about size octets, CRLF line ends."""
    head = (f"From: <{REMOTE}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


class QuotaTest(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    # --- helpers ---------------------------------------------------------

    def mx(self):
        s = SMTP("127.0.0.1", self.kotak.ports["smtp"], local_hostname=CLIENT,
                 timeout=SOCKET_TIMEOUT)
        self.addCleanup(close_quietly, s)
        s.ehlo()
        return s

    def submission(self, user=BOB):
        s = SMTP("127.0.0.1", self.kotak.ports["submission"], local_hostname=CLIENT,
                 timeout=SOCKET_TIMEOUT)
        self.addCleanup(close_quietly, s)
        s.ehlo()
        s.starttls(context=self.kotak.ssl_context())
        s.ehlo()
        s.login(user, PASSWORDS[user])
        return s

    def pop3(self, user=ALICE):
        p = POP3("127.0.0.1", self.kotak.ports["pop3"], timeout=SOCKET_TIMEOUT)
        self.addCleanup(close_quietly, p)
        p.user(user)
        p.pass_(PASSWORDS[user])
        return p

    def quota(self, user, size):
        self.kotak.kotak("user", "set", user, "--quota", size)

    def deliver(self, to, size, subject="fill"):
        """Sends one message of about size octets to `to` over the MX, accepted."""
        s = self.mx()
        refused = s.sendmail(REMOTE, [to], message(subject, size, to))
        self.assertEqual(refused, {})
        close_quietly(s)

    def used(self, user):
        local = user.split("@")[0]
        return self.kotak.query("SELECT used FROM users WHERE local = ?", local)[0][0]

    def maildrop_total(self, user):
        return sum(m["size"] for m in self.kotak.maildrop(user))

    def fill_alice(self):
        """alice holds about 6 KB and has a quota of 5K: full."""
        self.deliver(ALICE, 6000)
        self.quota(ALICE, "5K")
        self.assertGreaterEqual(self.used(ALICE), 5120)

    # --- RCPT ------------------------------------------------------------

    def test_mx_refuses_a_full_user_with_452_and_takes_the_other_recipient(self):
        self.fill_alice()
        before = len(self.kotak.maildrop(ALICE))
        s = self.mx()
        code, msg = s.mail(REMOTE)
        self.assertEqual(code, 250)
        code, msg = s.rcpt(ALICE)
        self.assertEqual(code, 452, msg)
        self.assertTrue(msg.startswith(b"4.2.2 Mailbox full"), msg)
        code, msg = s.rcpt(BOB)
        self.assertEqual(code, 250, msg)
        code, msg = s.data(message("to both", 300, BOB))
        self.assertEqual(code, 250, msg)
        self.assertEqual(len(self.kotak.maildrop(ALICE)), before, "alice got nothing")
        self.assertIn(b"Subject: to both", self.kotak.bodies(BOB)[-1])
        # sendmail sees the same: one refused, the other delivered.
        s = self.mx()
        refused = s.sendmail(REMOTE, [ALICE, BOB], message("again", 300, BOB))
        self.assertEqual(list(refused), [ALICE])
        self.assertEqual(refused[ALICE][0], 452)
        self.assertEqual(len(self.kotak.bodies(BOB)), 2)
        self.kotak.wait_log(r"event=mailbox-full .*rcpt=<alice@example\.test> code=452")

    def test_submission_tells_the_sender_with_452(self):
        self.fill_alice()
        s = self.submission(BOB)
        code, _ = s.mail(BOB)
        self.assertEqual(code, 250)
        code, msg = s.rcpt(ALICE)
        self.assertEqual(code, 452, msg)
        self.assertTrue(msg.startswith(b"4.2.2 "), msg)
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            self.submission(BOB).sendmail(BOB, [ALICE], message("from bob", 300))
        self.assertEqual(cm.exception.recipients[ALICE][0], 452)

    def test_size_larger_than_the_quota_is_552_at_rcpt(self):
        self.quota(ALICE, "5K")
        s = self.mx()
        code, _ = s.mail(REMOTE, ["SIZE=6000"])
        self.assertEqual(code, 250)
        code, msg = s.rcpt(ALICE)
        self.assertEqual(code, 552, msg)
        self.assertTrue(msg.startswith(b"5.2.2 "), msg)
        code, msg = s.rcpt(BOB)
        self.assertEqual(code, 250, "bob has no quota: SIZE=6000 fits")
        s.rset()
        code, _ = s.mail(REMOTE, ["SIZE=4000"])
        code, msg = s.rcpt(ALICE)
        self.assertEqual(code, 250, msg)

    def test_a_message_larger_than_the_quota_without_size_is_552_at_the_final_dot(self):
        self.quota(ALICE, "5K")
        s = self.mx()
        code, _ = s.docmd(f"MAIL FROM:<{REMOTE}>")  # no SIZE=: only the dot can tell
        self.assertEqual(code, 250)
        code, msg = s.rcpt(ALICE)
        self.assertEqual(code, 250, msg)
        code, msg = s.data(message("too big", 9000))
        self.assertEqual(code, 552, msg)
        self.assertTrue(msg.startswith(b"5.2.2 "), msg)
        self.assertEqual(self.kotak.maildrop(ALICE), [])

    def test_an_alias_with_a_full_target_still_reaches_both(self):
        self.fill_alice()
        n_alice = len(self.kotak.maildrop(ALICE))
        s = self.mx()
        refused = s.sendmail(REMOTE, ["sales@example.test"], message("to sales", 300))
        self.assertEqual(refused, {})
        self.assertEqual(len(self.kotak.maildrop(ALICE)), n_alice + 1,
                         "the full target gets it too: nothing is lost")
        self.assertIn(b"Subject: to sales", self.kotak.bodies(BOB)[-1])

    # --- usage -----------------------------------------------------------

    def test_usage_is_right_after_pop3_deletion_and_mail_is_taken_again(self):
        self.fill_alice()
        s = self.mx()
        s.mail(REMOTE)
        self.assertEqual(s.rcpt(ALICE)[0], 452)
        close_quietly(s)
        p = self.pop3(ALICE)
        count, _ = p.stat()
        self.assertGreater(count, 0)
        for n in range(1, count + 1):
            p.dele(n)
        p.quit()
        self.assertEqual(self.used(ALICE), 0)
        self.assertEqual(self.maildrop_total(ALICE), 0)
        self.assertIn("alice@example.test\tmessages=0\tbytes=0\tquota=5120\tfull=0%\n",
                      self.kotak.kotak("user", "list").stdout)
        s = self.mx()
        s.mail(REMOTE)
        self.assertEqual(s.rcpt(ALICE)[0], 250, "room again: taken")
        self.assertEqual(s.data(message("after", 300))[0], 250)
        self.assertEqual(self.used(ALICE), self.maildrop_total(ALICE))

    def test_user_list_shows_usage(self):
        self.deliver(ALICE, 3000)
        self.quota(ALICE, "10K")
        total = self.maildrop_total(ALICE)
        out = self.kotak.kotak("user", "list").stdout
        self.assertIn(f"alice@example.test\tmessages=1\tbytes={total}\tquota=10240"
                      f"\tfull={total * 100 // 10240}%\n", out)
        self.assertIn("bob@example.test\tmessages=0\tbytes=0\n", out)
        self.assertEqual(self.used(ALICE), total)

    # --- the warning -------------------------------------------------------

    def warnings(self, user=ALICE):
        return [m for m in self.kotak.bodies(user) if b"Auto-Submitted: auto-generated" in m
                and b"Subject: Your mailbox is" in m]

    def test_the_warning_arrives_once_at_the_first_login_over_90_percent(self):
        self.quota(ALICE, "10K")
        self.deliver(ALICE, 9500)  # 0 + 9.5K fits under 10K
        self.assertEqual(self.warnings(), [])
        p = self.pop3(ALICE)
        count, _ = p.stat()
        self.assertEqual(count, 2, "the warning is there in the login's own listing")
        _, lines, _ = p.retr(2)
        warning = email.message_from_bytes(b"\r\n".join(lines))
        pct = self.used_pct_before_warning()
        self.assertEqual(warning["Subject"], f"Your mailbox is {pct}% full")
        self.assertIn("postmaster@example.test", warning["From"])
        self.assertEqual(warning["To"], "<alice@example.test>")
        text = " ".join(warning.get_payload().split())
        self.assertIn("10 KB", text)
        self.assertIn("delete", text)
        self.assertIn("remove messages from the server", text)
        p.quit()
        self.assertEqual(len(self.warnings()), 1)
        self.assertEqual(self.kotak.query("SELECT quota_warned FROM users WHERE local = 'alice'"),
                         [(1,)])
        # The second login gets none.
        p = self.pop3(ALICE)
        self.assertEqual(p.stat()[0], 2)
        p.quit()
        self.assertEqual(len(self.warnings()), 1)
        self.kotak.wait_log(r"event=quota-warning user=alice@example\.test", name="pop3d")

    def used_pct_before_warning(self):
        fill = [m for m in self.kotak.maildrop(ALICE) if b"Subject: fill" in m["body"]]
        return sum(m["size"] for m in fill) * 100 // 10240

    def test_no_warning_under_90_percent_and_a_new_one_after_emptying(self):
        self.quota(ALICE, "10K")
        self.deliver(ALICE, 8000)  # under 90%
        p = self.pop3(ALICE)
        self.assertEqual(p.stat()[0], 1)
        p.quit()
        self.assertEqual(self.warnings(), [])
        self.deliver(ALICE, 1500, "more")  # over 90% now
        p = self.pop3(ALICE)
        self.assertEqual(p.stat()[0], 3)
        for n in (1, 2, 3):  # empties the maildrop, the warning too
            p.dele(n)
        p.quit()
        p = self.pop3(ALICE)  # under 80%: re-armed at this login
        self.assertEqual(p.stat()[0], 0)
        p.quit()
        self.assertEqual(self.kotak.query("SELECT quota_warned FROM users WHERE local = 'alice'"),
                         [(0,)])
        self.deliver(ALICE, 9500, "again")
        p = self.pop3(ALICE)
        self.assertEqual(p.stat()[0], 2, "a later fill warns again")
        p.quit()
        self.assertEqual(len(self.warnings()), 1)

    def test_emptied_at_quit_and_filled_before_the_next_login_warns_again(self):
        # The warning re-arms in QUIT's own transaction when the deletions take the
        # maildrop under 80%: a fill before the next login warns at that login.
        self.quota(ALICE, "10K")
        self.deliver(ALICE, 9500)
        p = self.pop3(ALICE)
        self.assertEqual(p.stat()[0], 2, "the first warning")
        p.dele(1)
        p.dele(2)
        p.quit()
        self.assertEqual(self.kotak.query("SELECT quota_warned FROM users WHERE local = 'alice'"),
                         [(0,)])
        self.deliver(ALICE, 9500, "again")  # over 90% before any login
        p = self.pop3(ALICE)
        self.assertEqual(p.stat()[0], 2, "the fill warns again at the next login")
        p.quit()
        self.assertEqual(len(self.warnings()), 1)

    def test_no_quota_no_warning(self):
        self.deliver(BOB, 20000, "big")
        p = self.pop3(BOB)
        self.assertEqual(p.stat()[0], 1)
        p.quit()
        self.assertEqual(self.warnings(BOB), [])


if __name__ == "__main__":
    unittest.main()
