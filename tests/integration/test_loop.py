"""The loops never wait on slow work: a login's listing of a large
maildrop (100,000 messages take about 150 ms to list) runs in the thread
pool, beside the loop that serves every other session; so does the reading
of a small message whose header fields make DKIM's work large.

The real daemons, poplib, and /proc's CPU time of the loop thread against
the whole process.

Run: KOTAK_BUILD=build python3 -m unittest test_loop (in tests/integration)
"""
import sqlite3
import threading
import time

import test_pop3d
import test_smtpd
from kotak_harness import PASSWORDS, cpu_ticks, pop3_login_seconds
from test_pop3d import ALICE, BOB

ENTRIES = 60000
LOGINS = 6


class LargeMaildrop(test_pop3d.Pop3dTest):
    def fill(self, n):
        """n small entries for BOB, written straight into the store."""
        uid = self.kotak.user_id(BOB)
        con = sqlite3.connect(self.kotak.db_path, timeout=10, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            for i in range(n):
                body = b"Subject: %d\r\n\r\nHello.\r\n" % i
                cur = con.execute("INSERT INTO messages(received, size, head) VALUES(?, ?, ?)",
                                  (i, len(body), body))
                con.execute("INSERT INTO maildrop(user_id, message_id, size, arrived)"
                            " VALUES(?, ?, ?, ?)", (uid, cur.lastrowid, len(body), i))
            con.execute("COMMIT")
        finally:
            con.close()

    def test_a_large_maildrop_is_listed_beside_the_loop(self):
        self.fill(ENTRIES)
        pid = self.kotak.procs["pop3d"].pid
        all_before, loop_before = cpu_ticks(pid), cpu_ticks(pid, pid)
        for _ in range(LOGINS):
            p = self.pop(stls=False)
            self.assertEqual(p.stat()[0], ENTRIES)
            p.quit()
        spent, on_loop = cpu_ticks(pid) - all_before, cpu_ticks(pid, pid) - loop_before
        self.assertGreaterEqual(spent, 10, "the listings cost the daemon CPU time")
        self.assertLess(on_loop, spent * 0.35,
                        f"the loop thread spent {on_loop} of {spent} ticks")

    def login_seconds(self, user, out):
        out[user] = pop3_login_seconds(self.kotak.ports["pop3"], user, PASSWORDS[user])

    def test_a_large_maildrop_holds_up_no_other_login(self):
        self.fill(ENTRIES * 2)
        times = {}
        for user in (BOB, ALICE):  # each password checked once: the rest is the listing
            self.login_seconds(user, times)
        for _ in range(3):
            bob = threading.Thread(target=self.login_seconds, args=(BOB, times))
            bob.start()
            time.sleep(0.01)
            self.login_seconds(ALICE, times)
            bob.join()
            if times[ALICE] < times[BOB] / 3:
                break
        self.assertLess(times[ALICE], times[BOB] / 3,
                        f"alice's login took {times[ALICE]:.3f} s beside bob's "
                        f"{times[BOB]:.3f} s of listing")


def crafted_message(subject, sigs, names, fields, field="a", sig_name="DKIM-Signature"):
    """Under 32 KiB, read on the loop by size alone: sigs DKIM signatures
    whose h= lists names, over fields short fields: DKIM compares the names
    with the fields and with each other, octet by octet."""
    folded = ":\r\n\t".join(":".join(names[i:i + 14]) for i in range(0, len(names), 14))
    sig = (sig_name + ": v=1; a=rsa-sha256; c=relaxed/relaxed; d=remote.example;"
           " s=sel; h=%s; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n" % folded)
    head = sig * sigs + (field + ":\r\n") * fields
    head += "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n" % (test_smtpd.REMOTE, ALICE, subject)
    return (head + "\r\nHello.\r\n").encode()


class CraftedHeaders(test_smtpd.SmtpdTest):
    def assert_read_beside_the_loop(self, sent, n):
        self.assertLess(len(sent), 32 * 1024)
        pid = self.kotak.procs["smtpd"].pid
        s = self.mx()
        all_before, loop_before = cpu_ticks(pid), cpu_ticks(pid, pid)
        for _ in range(n):
            self.assertEqual(s.sendmail(test_smtpd.REMOTE, [ALICE], sent), {})
        spent, on_loop = cpu_ticks(pid) - all_before, cpu_ticks(pid, pid) - loop_before
        self.assertGreaterEqual(spent, 10, "the fields cost the daemon CPU time")
        self.assertLess(on_loop, spent * 0.35,
                        f"the loop thread spent {on_loop} of {spent} ticks")

    def test_many_fields_are_read_beside_the_loop(self):
        # a signature of 200 names (under 2 KiB) over 1,100 fields of the
        # same length that differ in the last octet, just within DKIM's
        # budget of 2^21 octets compared: a few ms a message
        names = ["from"] + ["xxxxxxxA"] * 199
        self.assert_read_beside_the_loop(
            crafted_message("fields", 1, names, 1100, field="xxxxxxxB"), 120)

    def test_long_signatures_are_read_beside_the_loop(self):
        # 2 signatures of 256 long names, in 60 lines: the names against each other
        names = ["from"] + ["x" * 59] * 255
        self.assert_read_beside_the_loop(crafted_message("names", 2, names, 0), 60)

    def test_signatures_with_space_before_the_colon_are_read_beside_the_loop(self):
        # DKIM reads "DKIM-Signature :" as a signature too
        names = ["from"] + ["x" * 59] * 255
        self.assert_read_beside_the_loop(
            crafted_message("spaced", 2, names, 0, sig_name="DKIM-Signature "), 60)
