"""`kotak watch`: the live view in the terminal, with both daemons running.

A mail is sent over submission (STARTTLS, AUTH PLAIN, then LOGIN) with
smtplib and fetched with poplib (USER/PASS, RETR, DELE, QUIT) while `kotak
watch` runs: each step shows up in order, swaks-style ("->", "<-", "~>"
and "<~" inside TLS), the login as what it means, and the password is
nowhere in the output, in any encoding, whether the login worked or not.
While nobody watches, the daemons record nothing; with [web] listen empty
the command says the view is off.
"""
import base64
import os
import queue
import re
import subprocess
import threading
import time
import unittest

from kotak_harness import (KOTAK, PASSWORDS, POP3, SMTP, SOCKET_TIMEOUT, KotakInstance,
                           KotakTestCase, clean_env)
from test_outbound import TwoServers

ALICE = "alice@example.test"
PASSWORD = PASSWORDS[ALICE]
WRONG = "Wrong-Guess-5512"


def secrets(password):
    """The forms a password travels in: as typed, in base64, inside PLAIN's message."""
    plain = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + password.encode()).decode()
    return [password, base64.b64encode(password.encode()).decode(), plain,
            plain[4:], plain[8:-4]]


def send_and_fetch(k, subject, stls=False):
    """The sessions each view test watches: alice sends herself one message on
    submission (STARTTLS, AUTH PLAIN), then fetches it over POP3 (after STLS when
    asked) with RETR 1, DELE 1 and QUIT."""
    with SMTP("127.0.0.1", k.ports["submission"], timeout=SOCKET_TIMEOUT) as s:
        s.ehlo("client.example.test")
        s.starttls(context=k.ssl_context())
        s.ehlo("client.example.test")
        s.login(ALICE, PASSWORD)
        s.sendmail(ALICE, [ALICE], f"Subject: {subject}\r\n\r\nhello\r\n".encode())
    p = POP3("127.0.0.1", k.ports["pop3"], timeout=SOCKET_TIMEOUT)
    if stls:
        p.stls(context=k.ssl_context())
    p.user(ALICE)
    p.pass_(PASSWORD)
    p.retr(1)
    p.dele(1)
    p.quit()


class Watcher:
    """kotak watch in the background; its lines gathered as they come."""

    def __init__(self, k, *args):
        self.proc = subprocess.Popen([KOTAK, "-c", k.conf, "watch", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=clean_env(NO_COLOR="1"), cwd=k.dir)
        self.lines = []
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.q.get(timeout=10)
        if not first.startswith("watching"):
            raise AssertionError(f"kotak watch said: {first!r}")

    def _read(self):
        for line in self.proc.stdout:
            self.q.put(line.rstrip("\n"))

    def wait_for(self, text, timeout=10):
        """Lines until one holds text; returns all lines so far."""
        deadline = time.monotonic() + timeout
        while not any(text in l for l in self.lines):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line with {text!r} in:\n" + "\n".join(self.lines))
            try:
                self.lines.append(self.q.get(timeout=left))
            except queue.Empty:
                pass
        return self.lines

    def stop(self):
        self.proc.terminate()
        rc = self.proc.wait(timeout=10)
        while not self.q.empty():
            self.lines.append(self.q.get())
        return rc


class Watch(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def assert_in_order(self, lines, wanted):
        """Each of wanted is in a line after the previous one's."""
        at = 0
        for w in wanted:
            for i in range(at, len(lines)):
                if w in lines[i]:
                    at = i + 1 if w not in ("smtp", "pop3") else i  # a tag, then its line
                    break
            else:
                self.fail(f"{w!r} not found after line {at} in:\n" + "\n".join(lines))

    def assert_no_secret(self, lines, password):
        text = "\n".join(lines)
        for s in secrets(password):
            self.assertNotIn(s, text)

    def test_a_mail_sent_and_fetched_step_by_step(self):
        w = Watcher(self.kotak)
        self.addCleanup(w.stop)
        send_and_fetch(self.kotak, "watch me")
        lines = w.wait_for("Bye, 1 messages deleted")
        self.assert_in_order(lines, [
            "smtp", f"127.0.0.1 -> 127.0.0.1:{self.kotak.ports['submission']} [submission]",
            "<-  220 mail.example.test",
            " -> ehlo client.example.test",
            "<-  250-STARTTLS",
            " -> STARTTLS",
            "<-  220 2.0.0",
            "=== TLS started: TLSv1.",
            " ~> ehlo client.example.test",
            "<~  250-AUTH PLAIN LOGIN",
            " ~> AUTH PLAIN (as alice@example.test, password hidden)",
            "<~  235 2.7.0",
            " ~> mail FROM:<alice@example.test>",
            " ~> rcpt TO:<alice@example.test>",
            " ~> data",
            "<~  354",
            ".. (the message:",
            "** stored id=",
            "<~  250 2.0.0 Ok: queued as",
            " ~> QUIT",
            "<~  221",
            f"127.0.0.1 -> 127.0.0.1:{self.kotak.ports['pop3']} [pop3]",
            "<-  +OK",
            " -> USER alice@example.test",
            " -> PASS (password hidden)",
            "<-  +OK Logged in, 1 messages",
            " -> RETR 1",
            ".. (message 1:",
            "** retr id=",
            " -> DELE 1",
            "<-  +OK Message 1 marked for deletion",
            "** dele id=",
            " -> QUIT",
            "** removed id=",
            "<-  +OK Bye, 1 messages deleted",
        ])
        self.assertRegex("\n".join(lines), r"TLS started: TLSv1\.[23] \S+, certificate mail\.example\.test")
        # One message's journey: each step names the same stored message.
        steps = {m.group(1): m.group(2) for line in lines
                 for m in [re.search(r"\*\* (stored|retr|dele|removed) id=(\d+)", line)] if m}
        self.assertEqual(set(steps), {"stored", "retr", "dele", "removed"}, steps)
        self.assertEqual(len(set(steps.values())), 1, steps)
        retr = next(line for line in lines if "** retr id=" in line)
        self.assertRegex(retr, r" n=1 uidl=[0-9a-f]+\.\d+ size=\d+")
        self.assert_no_secret(lines, PASSWORD)
        self.assertNotIn("hello", "\n".join(lines), "the body is not shown")

    def test_auth_login_and_failed_logins_hide_every_password(self):
        w = Watcher(self.kotak)
        self.addCleanup(w.stop)
        with SMTP("127.0.0.1", self.kotak.ports["submission"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("client.example.test")
            s.starttls(context=self.kotak.ssl_context())
            s.ehlo("client.example.test")
            s.user, s.password = ALICE, WRONG
            code, _ = s.docmd("AUTH", "LOGIN")
            self.assertEqual(code, 334)
            s.docmd(base64.b64encode(ALICE.encode()).decode())
            code, _ = s.docmd(base64.b64encode(WRONG.encode()).decode())
            self.assertEqual(code, 535)
            s.user, s.password = ALICE, PASSWORD
            s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        p = POP3("127.0.0.1", self.kotak.ports["pop3"], timeout=SOCKET_TIMEOUT)
        p.user(ALICE)
        with self.assertRaises(Exception):
            p.pass_(WRONG)
        p.close()
        lines = w.wait_for("-ERR [AUTH]")
        self.assert_in_order(lines, [
            " ~> AUTH LOGIN",
            "<~  334 VXNlcm5hbWU6",
            " ~> (user name alice@example.test)",
            "<~  334 UGFzc3dvcmQ6",
            " ~> (password hidden)",
            "<~  535",
            " ~> AUTH LOGIN",
            " ~> (user name alice@example.test)",
            " ~> (password hidden)",
            "<~  235",
            " -> USER alice@example.test",
            " -> PASS (password hidden)",
            "<-  -ERR [AUTH]",
        ])
        self.assert_no_secret(lines, PASSWORD)
        self.assert_no_secret(lines, WRONG)

    def test_a_login_answer_sent_where_none_was_asked_is_hidden(self):
        w = Watcher(self.kotak)
        self.addCleanup(w.stop)
        plain = secrets(PASSWORD)[2]
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("client.example.test")
            self.assertEqual(s.docmd("AUTH", "PLAIN")[0], 502)  # no login on the MX
            self.assertEqual(s.docmd(plain)[0], 500)            # the answer comes anyway
            self.assertEqual(s.docmd(" PASS", PASSWORD)[0], 500)
        with SMTP("127.0.0.1", self.kotak.ports["submission"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("client.example.test")
            s.starttls(context=self.kotak.ssl_context())
            s.ehlo("client.example.test")
            self.assertEqual(s.docmd("AUTH", "CRAM-MD5")[0], 504)
            s.docmd(base64.b64encode(PASSWORD.encode()).decode())
            self.assertEqual(s.docmd("AUTH", "LOGIN")[0], 334)
            s.docmd(base64.b64encode(PASSWORD.encode()).decode())  # the password as the name
            s.docmd("*")
        lines = w.wait_for("(the client gives up the login)")
        self.assert_in_order(lines, [
            "<-  502", "(a line that is no command, %d octets, hidden)" % len(plain),
            "<-  500", "(a line that is no command", "<-  500",
            "<~  504", "(a line that is no command", " ~> AUTH LOGIN",
            "(a user name that is no address, hidden)",
        ])
        self.assert_no_secret(lines, PASSWORD)

    def test_nothing_is_recorded_while_nobody_watches(self):
        w = Watcher(self.kotak)
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("watched.example.test")
        w.wait_for("ehlo watched.example.test")
        w.stop()
        time.sleep(5.5)  # the viewer's visit lapses (WATCH_KEEPALIVE_MS)
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("unwatched.example.test")
        w2 = Watcher(self.kotak, "--history", "4096")
        self.addCleanup(w2.stop)
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("again.example.test")
        lines = w2.wait_for("ehlo again.example.test")
        text = "\n".join(lines)
        self.assertIn("ehlo watched.example.test", text, "what was watched is history now")
        self.assertNotIn("unwatched", text, "what nobody watched was never recorded")


class Explain(KotakTestCase):

    def test_explain_names_sections_codes_and_replies_rfc_5321_does_not_list(self):
        w = Watcher(self.kotak, "--explain")
        self.addCleanup(w.stop)
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("client.example.test")
            self.assertEqual(s.docmd("AUTH", "PLAIN")[0], 502)
            s.mail("someone@sender.test")
            self.assertEqual(s.rcpt("nobody@example.test")[0], 550)
        lines = w.wait_for("5.1.1: addressing")
        Watch.assert_in_order(self, lines, [
            "<-  220 mail.example.test",
            "# 2xx: done; 220: service ready",
            " -> ehlo client.example.test",
            "# RFC 5321 4.1.1.1: the client names itself",
            "<-  250 ",
            "# 2xx: done; 250: requested action okay, completed",
            " -> AUTH PLAIN",
            "# RFC 4954 4",
            "<-  502 5.5.1",
            "! RFC 5321 4.3.2 lists no 502 reply to AUTH",
            " -> mail FROM:<someone@sender.test>",
            "# RFC 5321 4.1.1.2",
            " -> rcpt TO:<nobody@example.test>",
            "# RFC 5321 4.1.1.3",
            "<-  550 5.1.1",
            "# 5xx: failed for good, do not repeat; 550: not taken: mailbox unavailable, or "
            "refused by policy; 5.1.1: addressing, bad destination mailbox address",
        ])
        self.assertIn("(https://www.rfc-editor.org/rfc/rfc5321#section-4.1.1.1)", "\n".join(lines))
        self.assertNotIn("lists no 550", "\n".join(lines), "550 is listed for RCPT")


class Off(unittest.TestCase):

    def test_watch_says_the_view_is_off(self):
        k = KotakInstance({"web": {"listen": ""}})
        self.addCleanup(k.close)
        k.create()
        k.start("smtpd")
        p = k.kotak("watch", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("the live view is off: set [web] listen", p.stderr)
        self.assertEqual(p.stderr.count("\n"), 1, p.stderr)
        self.assertFalse(os.path.exists(os.path.join(k.data_dir, "watch")),
                         "no ring is made while the view is off")
        self.assertEqual(k.stop("smtpd"), 0)



class RelayedJourney(TwoServers):
    """A message that goes on to another server: its journey ends with the attempt."""

    def test_each_delivery_attempt_is_a_step_of_the_message(self):
        w = Watcher(self.a)
        self.addCleanup(w.stop)
        msg = b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: on its way\r\n\r\nHi Bob\r\n"
        self.submit(self.a, "alice@a.test", ["bob@b.test"], msg)
        lines = w.wait_for("** attempt id=", timeout=30)
        stored = next(l for l in lines if "** stored id=" in l)
        self.assertRegex(stored, r"\*\* stored id=\d+ maildrops=0 to-send=1$")
        attempt = next(l for l in lines if "** attempt id=" in l)
        self.assertEqual(re.search(r" id=(\d+)", stored).group(1),
                         re.search(r" id=(\d+)", attempt).group(1), "the same message")
        self.assertRegex(attempt, r"rcpt=bob@b\.test mx=mx\.b\.test ip=127\.0\.0\.3 tls=yes "
                                  r"code=250 result=delivered reply=\S")
        self.assertIn("smtp queue", attempt, "the queue's, not a client session's")

if __name__ == "__main__":
    unittest.main()
