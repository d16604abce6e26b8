"""The login lockout model, against the real kotak-smtpd and kotak-pop3d on
loopback: failures lock out a (user, address) pair, not everyone behind the
address; a much higher per-address cap stops password spraying; both
daemons count in the same table; a success clears only its own pair; and
unknown users and wrong passwords get the same reply, locked or not.

Run: KOTAK_BUILD=build python3 tests/tap_unittest.py tests/integration/test_lockout.py
"""
import os
import stat
import time
import unittest

from kotak_harness import PASSWORDS, config
from test_attacks import ALICE, BOB, TIMER_SLACK, AttackTest, Pop3Raw, plain

LOCKED_SMTP = (454, "4.7.0")


class LockoutTest(AttackTest):
    CONFIG = {"auth": {"failure_delay": "100ms", "max_failures": "5"}}

    # --- one guess each way, on a connection of its own -----------------

    def smtp(self, user, password):
        """The reply code and text to AUTH PLAIN on a new submission session."""
        c = self.raw("submission")
        code, lines = c.cmd(f"AUTH PLAIN {plain(user, password)}")
        return code, tuple(lines)

    def pop(self, user, password):
        """The reply to USER/PASS on a new POP3 session, which a success quits."""
        c = self.pop3()
        self.assertTrue(c.cmd(f"USER {user}").startswith("+OK"))
        reply = c.cmd(f"PASS {password}")
        if reply.startswith("+OK"):
            self.assertTrue(c.cmd("QUIT").startswith("+OK"))   # frees the maildrop
        return reply

    def assertSmtpLocked(self, user):
        code, lines = self.smtp(user, PASSWORDS.get(user, "x"))
        self.assertEqual(code, LOCKED_SMTP[0], f"{user}: {code} {lines}")
        self.assertIn(LOCKED_SMTP[1], lines[0])

    def assertPopLocked(self, user):
        reply = self.pop(user, PASSWORDS.get(user, "x"))
        self.assertTrue(reply.startswith("-ERR [SYS/TEMP]"), f"{user}: {reply}")

    # --- the tests --------------------------------------------------------

    def test_one_users_lockout_leaves_the_others_behind_the_address_free(self):
        # An old password on one phone behind the office's NAT.
        for i in range(5):
            self.assertEqual(self.smtp(ALICE, f"old-password-{i}")[0], 535)
        self.assertSmtpLocked(ALICE)    # even with the right password
        self.assertPopLocked(ALICE)
        self.assertEqual(self.smtp(BOB, PASSWORDS[BOB])[0], 235)
        self.assertTrue(self.pop(BOB, PASSWORDS[BOB]).startswith("+OK"))
        self.assertTrue(self.kotak.wait_log(r"result=locked"), self.kotak.log())

    @config(auth={"max_failures": "3"})
    def test_a_lockout_earned_over_smtp_holds_over_pop3(self):
        for i in range(3):
            self.assertEqual(self.smtp(ALICE, f"wrong-{i}")[0], 535)
        self.assertPopLocked(ALICE)
        c = self.pop3("pop3s")    # SASL and the other port too
        reply = c.cmd(f"AUTH PLAIN {plain(ALICE, PASSWORDS[ALICE])}")
        self.assertTrue(reply.startswith("-ERR [SYS/TEMP]"), reply)

    @config(auth={"max_failures": "3"})
    def test_a_lockout_earned_over_pop3_holds_over_smtp(self):
        for i in range(3):
            self.assertTrue(self.pop(BOB, f"wrong-{i}").startswith("-ERR [AUTH]"))
        self.assertSmtpLocked(BOB)
        c = self.raw("submissions", tls=True)
        code, lines = c.cmd(f"AUTH PLAIN {plain(BOB, PASSWORDS[BOB])}")
        self.assertEqual(code, 454, lines)

    @config(auth={"max_failures": "3"})
    def test_failures_over_both_daemons_add_up(self):
        self.assertEqual(self.smtp(ALICE, "wrong-0")[0], 535)
        self.assertTrue(self.pop(ALICE, "wrong-1").startswith("-ERR [AUTH]"))
        self.assertEqual(self.smtp(ALICE, "wrong-2")[0], 535)
        self.assertPopLocked(ALICE)
        self.assertSmtpLocked(ALICE)

    @config(auth={"max_failures": "3"})
    def test_another_users_success_does_not_reset_the_count(self):
        # A scanner guesses at alice between bob's good logins.
        for i in range(3):
            self.assertEqual(self.smtp(ALICE, f"guess-{i}")[0], 535)
            self.assertEqual(self.smtp(BOB, PASSWORDS[BOB])[0], 235)
            self.assertTrue(self.pop(BOB, PASSWORDS[BOB]).startswith("+OK"))
        self.assertSmtpLocked(ALICE)
        self.assertPopLocked(ALICE)

    @config(auth={"max_failures": "3"})
    def test_a_success_clears_its_own_pair(self):
        for i in range(2):
            self.assertEqual(self.smtp(ALICE, f"typo-{i}")[0], 535)
        self.assertEqual(self.smtp(ALICE, PASSWORDS[ALICE])[0], 235)
        for i in range(2):
            self.assertEqual(self.smtp(ALICE, f"typo-again-{i}")[0], 535)
        self.assertEqual(self.smtp(ALICE, PASSWORDS[ALICE])[0], 235)

    @config(auth={"max_failures": "3", "address_max_failures": "6"})
    def test_spraying_many_users_from_one_address_meets_the_address_cap(self):
        # One guess per user stays under every pair's lockout, but not
        # under the address's cap, which then holds for every user there,
        # over both daemons. Below the cap, others still log in, and their
        # successes do not lower the address's count.
        for i in range(6):
            user = ALICE if i == 0 else f"user{i}@example.test"
            if i % 2:
                self.assertEqual(self.smtp(user, "Summer2026!")[0], 535)
            else:
                self.assertTrue(self.pop(user, "Summer2026!").startswith("-ERR [AUTH]"))
            if i < 5:
                self.assertEqual(self.smtp(BOB, PASSWORDS[BOB])[0], 235, f"after {i + 1}")
        self.assertSmtpLocked(BOB)
        self.assertPopLocked(BOB)
        # Another address is not locked (127.0.0.2 is loopback too).
        try:
            other = Pop3Raw(self.port("pop3"), source="127.0.0.2")
        except OSError as e:
            print(f"# 127.0.0.2 not usable as a source address: {e}")
            return
        self.addCleanup(other.close)
        self.assertTrue(other.line().startswith("+OK"))
        self.assertTrue(other.cmd(f"USER {BOB}").startswith("+OK"))
        self.assertTrue(other.cmd(f"PASS {PASSWORDS[BOB]}").startswith("+OK"))

    @config(auth={"max_failures": "2"})
    def test_unknown_users_and_wrong_passwords_get_the_same_replies_locked_or_not(self):
        nobody = "nobody@example.test"
        smtp, pop = {}, {}
        for user in (ALICE, nobody):
            smtp[user] = [self.smtp(user, f"wrong-{i}") for i in range(3)]
        for user in (BOB, "nobody-else@example.test"):
            pop[user] = [self.pop(user, f"wrong-{i}") for i in range(3)]
        self.assertEqual(smtp[ALICE], smtp[nobody])
        self.assertEqual([r[0] for r in smtp[ALICE]], [535, 535, 454])
        self.assertEqual(pop[BOB], pop["nobody-else@example.test"])
        self.assertTrue(pop[BOB][0].startswith("-ERR [AUTH]"), pop)
        self.assertTrue(pop[BOB][2].startswith("-ERR [SYS/TEMP]"), pop)
        # A locked-out unknown user takes as long to answer as a known one.
        times = []
        for user in (ALICE, nobody):
            start = time.monotonic()
            self.smtp(user, "wrong")
            times.append(time.monotonic() - start)
        for t in times:
            self.assertGreaterEqual(t, 0.1 - TIMER_SLACK, times)
        self.assertLess(abs(times[0] - times[1]), 0.1, f"timings differ: {times}")

    @config(auth={"max_failures": "3"})
    def test_a_lockout_outlives_a_killed_daemon(self):
        for i in range(3):
            self.assertEqual(self.smtp(ALICE, f"wrong-{i}")[0], 535)
        self.kotak.restart("smtpd", kill=True)
        self.kotak.restart("pop3d", kill=True)
        self.assertSmtpLocked(ALICE)
        self.assertPopLocked(ALICE)
        self.assertEqual(self.smtp(BOB, PASSWORDS[BOB])[0], 235)

    def test_the_table_is_a_private_file_in_data_dir(self):
        self.assertEqual(self.smtp(ALICE, "wrong")[0], 535)
        path = os.path.join(self.kotak.data_dir, "login-failures")
        st = os.stat(path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, oct(st.st_mode))


if __name__ == "__main__":
    unittest.main()
