"""Integration tests of retention and of the header's missing end (issue 17):
[pop3] expire and login_delay, announced in CAPA (RFC 2449 6.7, 6.5) and
enforced by kotak-pop3d; and the empty line RETR and TOP supply where a
message's header section lacks it (Dovecot's oe-ns-eoh), with LIST's size
true to what RETR sends and the stored octets as they came.

The real daemons on free loopback ports, a fresh store per test, poplib and
raw sockets; days pass by setting maildrop.retrieved back in the test's store.

Run: KOTAK_BUILD=build python3 -m unittest test_retention (in tests/integration)
"""
import poplib
import sqlite3
import time

import test_pop3d
from kotak_harness import PASSWORDS, config
from test_pop3d import BOB, joined, message, token

DAY = 86400


def capa_lines(p):
    return [c.decode() if isinstance(c, bytes) else c for c in p._longcmd("CAPA")[1]]


class RetentionTest(test_pop3d.Pop3dTest):
    # --- helpers -----------------------------------------------------------

    def write(self, sql, *params):
        """A change to the store, beside the daemons (WAL, with a busy wait)."""
        con = sqlite3.connect(self.kotak.db_path, timeout=10, isolation_level=None)
        try:
            con.execute(sql, params)
        finally:
            con.close()

    def retrieved(self, user=BOB):
        """maildrop.retrieved of each entry, oldest first (None: never)."""
        uid = self.kotak.user_id(user)
        return [r[0] for r in self.kotak.query(
            "SELECT retrieved FROM maildrop WHERE user_id = ? ORDER BY id", uid)]

    def subjects(self, p):
        """The Subject of each message in the maildrop, by TOP 0."""
        out = []
        for n, _ in self.listing(p):
            head = joined(p.top(n, 0)[1])
            subject = [l for l in head.split(b"\r\n") if l.startswith(b"Subject: ")]
            out.append(subject[0][9:].decode() if subject else None)
        return out

    def age(self, days, user=BOB):
        """Every recorded retrieval of the user goes back days."""
        self.write("UPDATE maildrop SET retrieved = retrieved - ? WHERE user_id = ? "
                   "AND retrieved IS NOT NULL", days * DAY, self.kotak.user_id(user))

    # --- CAPA --------------------------------------------------------------

    def test_capa_by_default_says_never_and_0(self):
        p = self.pop(user=None)
        before = capa_lines(p)
        self.assertIn("EXPIRE NEVER", before)
        self.assertIn("LOGIN-DELAY 0", before)
        p.user(BOB)
        p.pass_(PASSWORDS[BOB])
        after = capa_lines(p)
        self.assertIn("EXPIRE NEVER", after)
        self.assertIn("LOGIN-DELAY 0", after)

    @config(pop3={"expire": "3d", "login_delay": "60"})
    def test_capa_says_the_policy_configured(self):
        p = self.pop(user=None)
        before = capa_lines(p)
        self.assertIn("EXPIRE 3", before)
        self.assertIn("LOGIN-DELAY 60", before)
        self.assertNotIn("EXPIRE NEVER", before)
        p.user(BOB)
        p.pass_(PASSWORDS[BOB])
        after = capa_lines(p)
        self.assertIn("EXPIRE 3", after, "after login: the user's value, the same server-wide")
        self.assertIn("LOGIN-DELAY 60", after)

    # --- EXPIRE ------------------------------------------------------------

    @config(pop3={"expire": "3d"})
    def test_retrieved_long_ago_is_gone_never_retrieved_and_topped_stay(self):
        self.deliver(message("retrieved"))
        self.deliver(message("never"))
        self.deliver(message("topped"))
        p = self.pop()
        self.assertEqual(self.subjects(p), ["retrieved", "never", "topped"])  # TOP 0 of each
        self.retr(p, 1)
        p.top(3, 5)
        p.quit()
        rec = self.retrieved()
        self.assertIsNotNone(rec[0], "RETR + QUIT records the retrieval")
        self.assertLessEqual(abs(rec[0] - time.time()), 60)
        self.assertEqual(rec[1:], [None, None], "TOP is no retrieval; nor is never")
        self.kotak.wait_log(r"event=update deleted=0 retrieved=1 result=removed", name="pop3d")

        # Two days on: not yet.
        self.age(2)
        p = self.pop()
        self.assertEqual(self.subjects(p), ["retrieved", "never", "topped"])
        p.quit()
        # Four days on: gone at this login, before the listing.
        self.age(2)
        p = self.pop()
        self.assertEqual(self.subjects(p), ["never", "topped"])
        self.assertEqual(int(p.stat()[0]), 2)
        p.quit()
        self.kotak.wait_log(r"event=expire user=bob@example\.test removed=1", name="pop3d")
        self.assertEqual(len(self.kotak.maildrop(BOB)), 2, "the store holds the two")
        self.assertEqual(self.kotak.query(
            "SELECT count(*) FROM messages WHERE id NOT IN (SELECT message_id FROM maildrop)")[0][0],
            0, "the body went with its entry")

    @config(pop3={"expire": "3d"})
    def test_a_session_without_quit_records_no_retrieval(self):
        self.deliver(message("dropped"))
        c = self.raw_login()
        self.assertTrue(c.cmd1(f"PASS {PASSWORDS[BOB]}").startswith("+OK"))
        self.assertTrue(c.cmd1("RETR 1").startswith("+OK"))
        c.multi()
        c.close()  # no QUIT: no UPDATE state (RFC 1939 6)
        time.sleep(0.5)
        self.assertEqual(self.retrieved(), [None])
        self.age(10)
        p = self.pop()
        self.assertEqual(self.subjects(p), ["dropped"], "never recorded, never expired")

    def test_expire_never_records_nothing(self):
        self.deliver(message("kept"))
        p = self.pop()
        self.retr(p, 1)
        p.quit()
        self.assertEqual(self.retrieved(), [None], "expire = never: no write at QUIT")

    @config(pop3={"expire": "0d"})
    def test_expire_0_is_announced_and_removes_at_the_next_login(self):
        self.deliver(message("once"))
        self.deliver(message("unread"))
        p = self.pop()
        self.assertIn("EXPIRE 0", capa_lines(p))
        self.retr(p, 1)
        p.quit()
        p = self.pop()
        self.assertEqual(self.subjects(p), ["unread"])

    def raw_login(self, user=BOB):
        c = self.raw("pop3")
        self.assertTrue(c.cmd1(f"USER {user}").startswith("+OK"))
        return c

    # --- LOGIN-DELAY -------------------------------------------------------

    @config(pop3={"login_delay": "2"})
    def test_login_delay_refuses_within_the_window_and_accepts_after(self):
        p = self.pop()
        p.quit()
        last = self.kotak.query("SELECT last_login FROM users WHERE id = ?",
                                self.kotak.user_id(BOB))[0][0]
        self.assertIsNotNone(last, "a successful login is recorded")
        c = self.raw_login()
        reply = c.cmd1(f"PASS {PASSWORDS[BOB]}")
        self.assertEqual(reply, "-ERR [LOGIN-DELAY] Wait 2 seconds between logins")
        # A wrong password within the window says what any wrong password says.
        c2 = self.raw_login()
        self.assertTrue(c2.cmd1("PASS wrong-password").startswith("-ERR [AUTH]"))
        # The refused login let the maildrop go, and is not a login.
        self.assertEqual(self.kotak.query("SELECT last_login FROM users WHERE id = ?",
                                          self.kotak.user_id(BOB))[0][0], last)
        time.sleep(2.2)
        self.assertTrue(c.cmd1(f"USER {BOB}").startswith("+OK"))
        reply = c.cmd1(f"PASS {PASSWORDS[BOB]}")
        self.assertTrue(reply.startswith("+OK"), reply)
        self.kotak.wait_log(r"event=login user=bob@example\.test result=login-delay",
                            name="pop3d")

    def test_no_login_delay_writes_nothing(self):
        self.pop().quit()
        self.pop().quit()
        self.assertIsNone(self.kotak.query("SELECT last_login FROM users WHERE id = ?",
                                           self.kotak.user_id(BOB))[0][0])

    # --- the missing end of the header (oe-ns-eoh) -------------------------

    def raw_retr(self, c, cmd):
        """The octets of a multi-line reply as sent on the wire, stuffing and all."""
        first = c.cmd1(cmd)
        self.assertTrue(first.startswith("+OK"), first)
        return first, b"".join(c.multi())

    def test_header_fields_only_and_body_right_under_get_the_empty_line(self):
        fields_only = b"From: <a@remote.example>\r\nSubject: fields only\r\n"
        under = (b"From: <a@remote.example>\r\nSubject: under\r\nthe body, right under\r\n"
                 b".a dot line\r\nlast\r\n")
        proper = message("proper")
        for m in (fields_only, under, proper):
            self.deliver(m)
        stored = self.kotak.maildrop(BOB)
        self.assertTrue(stored[0]["body"].endswith(fields_only), "the store keeps them as sent")
        self.assertTrue(stored[1]["body"].endswith(under))
        self.assertEqual(stored[0]["message_size"], len(stored[0]["body"]))
        eoh = [r[0] for r in self.kotak.query(
            "SELECT m.eoh_at FROM maildrop d JOIN messages m ON m.id = d.message_id "
            "WHERE d.user_id = ? ORDER BY d.id", self.kotak.user_id(BOB))]
        self.assertEqual(eoh[0], len(stored[0]["body"]), "fields only: at the end")
        self.assertEqual(eoh[1], len(stored[1]["body"]) - len(under) + under.index(b"the body"),
                         "before the body line")
        self.assertIsNone(eoh[2], "a proper message has none")

        c = self.raw_login()
        self.assertTrue(c.cmd1(f"PASS {PASSWORDS[BOB]}").startswith("+OK"))
        sizes = {}
        for n in (1, 2, 3):
            sizes[n] = int(c.cmd1(f"LIST {n}").split()[2])
        # RETR: the empty line where it lacked, as many octets as LIST said.
        first, wire = self.raw_retr(c, "RETR 1")
        self.assertEqual(first, f"+OK {sizes[1]} octets")
        self.assertEqual(len(wire), sizes[1], "LIST's size is the octets RETR sent")
        self.assertEqual(wire, stored[0]["body"] + b"\r\n")
        self.assertTrue(wire.endswith(b"Subject: fields only\r\n\r\n"))
        first, wire = self.raw_retr(c, "RETR 2")
        head = stored[1]["body"][:eoh[1]]
        self.assertEqual(wire, head + b"\r\nthe body, right under\r\n..a dot line\r\nlast\r\n")
        self.assertEqual(len(wire) - 1, sizes[2], "LIST's size is RETR's octets less the stuffed dot")
        first, wire = self.raw_retr(c, "RETR 3")
        self.assertEqual(len(wire), sizes[3], "a proper message is served as before")
        self.assertEqual(wire, stored[2]["body"])
        # STAT counts the supplied lines too.
        self.assertEqual(c.cmd1("STAT"), f"+OK 3 {sum(sizes.values())}")
        self.assertEqual(sizes[1], len(stored[0]["body"]) + 2)
        self.assertEqual(sizes[2], len(stored[1]["body"]) + 2)
        # TOP 0 and TOP 1: the header, the supplied line, then that many body lines.
        _, wire = self.raw_retr(c, "TOP 2 0")
        self.assertEqual(wire, head + b"\r\n")
        _, wire = self.raw_retr(c, "TOP 2 1")
        self.assertEqual(wire, head + b"\r\nthe body, right under\r\n")
        _, wire = self.raw_retr(c, "TOP 2 2")
        self.assertEqual(wire, head + b"\r\nthe body, right under\r\n..a dot line\r\n")
        _, wire = self.raw_retr(c, "TOP 1 0")
        self.assertEqual(wire, stored[0]["body"] + b"\r\n")
        _, wire = self.raw_retr(c, "TOP 1 1")
        self.assertEqual(wire, stored[0]["body"] + b"\r\n")
        self.assertTrue(c.cmd1("QUIT").startswith("+OK"))
        # The stored octets are unchanged by all of it.
        again = self.kotak.maildrop(BOB)
        self.assertEqual([m["body"] for m in again], [m["body"] for m in stored])

    def test_poplib_sees_an_empty_line_and_a_true_size(self):
        self.deliver(b"From: <a@remote.example>\r\nSubject: p\r\nbody under\r\n")
        p = self.pop()
        size = int(p.list(1).split()[2])
        resp, lines, octets = p.retr(1)
        self.assertIn(b"", lines, "an empty line separates header and body")
        self.assertEqual(lines[lines.index(b"") + 1], b"body under")
        self.assertEqual(len(joined(lines)), size)


del test_pop3d  # keep its tests out of this module's discovery (imported by name only)

if __name__ == "__main__":
    import unittest
    unittest.main()
