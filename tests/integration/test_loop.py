"""The loops never wait on the store's slow work: a login's listing of a
large maildrop (100,000 messages take about 150 ms to list) runs in the
thread pool, beside the loop that serves every other session.

The real daemons, poplib, and /proc's CPU time of the loop thread against
the whole process.

Run: KOTAK_BUILD=build python3 -m unittest test_loop (in tests/integration)
"""
import sqlite3
import threading
import time

import test_pop3d
from kotak_harness import PASSWORDS, RawClient
from test_pop3d import ALICE, BOB

ENTRIES = 60000
LOGINS = 6


def cpu_ticks(path):
    """utime + stime of /proc/PID/stat or /proc/PID/task/TID/stat, in clock ticks."""
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


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
        process, loop = f"/proc/{pid}/stat", f"/proc/{pid}/task/{pid}/stat"
        all_before, loop_before = cpu_ticks(process), cpu_ticks(loop)
        for _ in range(LOGINS):
            p = self.pop(stls=False)
            self.assertEqual(p.stat()[0], ENTRIES)
            p.quit()
        spent, on_loop = cpu_ticks(process) - all_before, cpu_ticks(loop) - loop_before
        self.assertGreaterEqual(spent, 10, "the listings cost the daemon CPU time")
        self.assertLess(on_loop, spent * 0.35,
                        f"the loop thread spent {on_loop} of {spent} ticks")

    def login_seconds(self, user, out):
        """USER/PASS over a raw connection: the seconds from PASS to its +OK."""
        with RawClient(self.kotak.ports["pop3"]) as c:
            c.readline()
            c.send(f"USER {user}\r\n".encode())
            c.readline()
            t = time.monotonic()
            c.send(f"PASS {PASSWORDS[user]}\r\n".encode())
            line = c.readline()
            out[user] = time.monotonic() - t
            assert line.startswith(b"+OK"), line
            c.send(b"QUIT\r\n")
            c.readline()

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
