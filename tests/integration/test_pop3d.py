"""Integration tests of kotak-pop3d: the real daemon (beside kotak-smtpd, which
puts the mail in) on free loopback ports, a fresh store per test, and real
clients (poplib, ssl, raw sockets, curl, fetchmail, getmail6). Each test
names the behaviour it checks; issue 4 lists them.

Run: KOTAK_BUILD=build python3 tests/tap_unittest.py tests/integration/test_pop3d.py
"""
import base64
import os
import poplib
import re
import shutil
import socket
import sqlite3
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

from kotak_harness import (DAEMONS, HOSTNAME, PASSWORDS, POP3, POP3_SSL, SMTP, SOCKET_TIMEOUT,
                           KotakTestCase, RawClient, config, free_ports, ipv6_loopback_available,
                           proc_status, split_trace)

ALICE = "alice@example.test"
BOB = "bob@example.test"
SALES = "sales@example.test"   # an alias of alice and bob
REMOTE = "sender@remote.example"
CLIENT = "client.example.net"
TOOL_TIMEOUT = 30

# Small limits keep the slow paths (delays) fast; the idle timeout stays long
# unless a test sets it.
BASE_CONFIG = {
    "limits": {"tls_handshake_timeout": "10s"},
    "auth": {"failure_delay": "300ms"},
}

CAPA_BEFORE_LOGIN = {"TOP", "UIDL", "USER", "SASL", "STLS", "RESP-CODES", "AUTH-RESP-CODE",
                     "PIPELINING", "UTF8", "EXPIRE", "LOGIN-DELAY", "IMPLEMENTATION"}


def token():
    return uuid.uuid4().hex[:16]


def message(subject, body=b"Hello.\r\n", sender=REMOTE, to=BOB):
    """A small RFC 5322 message with CRLF line ends; subject makes it unique."""
    head = (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@remote.example>\r\n\r\n")
    return head.encode("utf-8") + body


def joined(lines):
    """poplib's lines (CRLF and stuffing removed) as the octets of the message."""
    return b"".join(line + b"\r\n" for line in lines)


def unstuff(raw_lines):
    """Raw multi-line body lines (with CRLF, terminator excluded) as message octets."""
    return b"".join(l[1:] if l.startswith(b".") else l for l in raw_lines)


def quit_quietly(p):
    try:
        p.quit()
    except Exception:
        try:
            p.close()
        except Exception:
            pass


def err_text(cm):
    """The reply of a poplib.error_proto, as str."""
    arg = cm.exception.args[0]
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


class PopClient(RawClient):
    """A raw POP3 conversation: one-line replies and multi-line bodies."""

    def line(self):
        return self.readline().decode("utf-8", "replace").rstrip("\r\n")

    def cmd1(self, line):
        self.send((line.encode("utf-8") if isinstance(line, str) else line) + b"\r\n")
        return self.line()

    def multi(self):
        """The lines of a multi-line body as sent (CRLF kept, stuffing kept),
        up to and without the terminating '.'."""
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            l = self.readline()
            if l == b".\r\n":
                return lines
            lines.append(l)
        raise AssertionError("no end of a multi-line reply within 60 s")


class SlowPopClient(PopClient):
    """A PopClient whose socket has a small receive buffer (set before connect,
    so that the kernel does not grow it)."""

    def __init__(self, port, rcvbuf, host="127.0.0.1", timeout=SOCKET_TIMEOUT):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""


class Pop3dTest(KotakTestCase):
    CONFIG = BASE_CONFIG
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def setUp(self):
        super().setUp()
        self.addCleanup(self.check_clean_stop)

    def check_clean_stop(self):
        """Every test ends with SIGTERM to kotak-pop3d: it must exit 0 (in an
        ASan build that also says nothing leaked or went wrong on the way)."""
        if not self.kotak.running("pop3d"):
            return
        rc = self.kotak.stop("pop3d")
        self.assertEqual(rc, 0, f"kotak-pop3d exited {rc} on SIGTERM; its log ends:\n"
                         + "\n".join(self.kotak.log("pop3d").splitlines()[-30:]))

    # --- putting mail in ---------------------------------------------------

    def deliver(self, sent, to=BOB, sender=REMOTE):
        """Sends one message through the MX port; returns what was sent."""
        s = SMTP("127.0.0.1", self.kotak.ports["smtp"], local_hostname=CLIENT,
                 timeout=SOCKET_TIMEOUT)
        try:
            refused = s.sendmail(sender, [to] if isinstance(to, str) else to, sent)
            self.assertEqual(refused, {})
        finally:
            s.quit()
        return sent

    def deliver_many(self, n, to=BOB):
        """n small distinct messages over one SMTP session; returns them as sent."""
        s = SMTP("127.0.0.1", self.kotak.ports["smtp"], local_hostname=CLIENT,
                 timeout=SOCKET_TIMEOUT)
        sents = []
        try:
            for i in range(n):
                sent = message(token(), body=(b"message %d\r\n" % i) * (i + 1), to=to)
                self.assertEqual(s.sendmail(REMOTE, [to], sent), {})
                sents.append(sent)
        finally:
            s.quit()
        return sents

    def split_trace(self, stored):
        """Return-Path line, Received header (folded lines), and the rest;
        the Authentication-Results: field the MX adds is left out."""
        rp, _, received, rest = split_trace(stored)
        return rp, received, rest

    # --- getting it out ------------------------------------------------------

    def port(self, listener):
        return self.kotak.ports[listener]

    def pop(self, user=BOB, password=None, stls=True, host="127.0.0.1", port=None):
        """[pop3]: STLS (unless stls=False), then USER/PASS."""
        p = POP3(host, port or self.port("pop3"), timeout=SOCKET_TIMEOUT)
        self.addCleanup(quit_quietly, p)
        if stls:
            p.stls(context=self.kotak.ssl_context())
        if user is not None:
            p.user(user)
            p.pass_(password if password is not None else PASSWORDS[user])
        return p

    def pops(self, user=BOB, password=None):
        """[pop3s]: implicit TLS, then USER/PASS."""
        p = POP3_SSL("127.0.0.1", self.port("pop3s"), timeout=SOCKET_TIMEOUT,
                     context=self.kotak.ssl_context())
        self.addCleanup(quit_quietly, p)
        if user is not None:
            p.user(user)
            p.pass_(password if password is not None else PASSWORDS[user])
        return p

    def raw(self, listener="pop3", tls=None):
        ctx = self.kotak.ssl_context() if (tls or listener == "pop3s") else None
        c = PopClient(self.port(listener), tls_context=ctx)
        self.addCleanup(c.close)
        greeting = c.line()
        self.assertTrue(greeting.startswith("+OK"), greeting)
        return c

    def raw_login(self, listener="pop3", user=BOB):
        c = self.raw(listener)
        self.assertTrue(c.cmd1(f"USER {user}").startswith("+OK"))
        reply = c.cmd1(f"PASS {PASSWORDS[user]}")
        self.assertTrue(reply.startswith("+OK"), reply)
        return c

    def retr(self, p, n):
        resp, lines, octets = p.retr(n)
        self.assertTrue(resp.startswith(b"+OK"), resp)
        return joined(lines)

    def uidls(self, p):
        resp, lines, _ = p.uidl()
        self.assertTrue(resp.startswith(b"+OK"), resp)
        out = []
        for l in lines:
            n, u = l.decode().split(" ", 1)
            out.append((int(n), u))
        return out

    def listing(self, p):
        resp, lines, _ = p.list()
        self.assertTrue(resp.startswith(b"+OK"), resp)
        return [tuple(int(x) for x in l.split()) for l in lines]

    def assertInUse(self, user=BOB):
        p = self.pop(user=None)
        p.user(user)
        with self.assertRaises(poplib.error_proto) as cm:
            p.pass_(PASSWORDS[user.lower()])
        self.assertTrue(err_text(cm).startswith("-ERR [IN-USE]"), err_text(cm))

    def wait_disconnects(self, before, n=1, timeout=5):
        found = self.kotak.wait_log(r"event=disconnect", "pop3d", timeout, before + n)
        self.assertGreaterEqual(len(found), before + n,
                                "the daemon did not notice the connection end")

    def disconnects(self):
        return self.kotak.log("pop3d").count("event=disconnect")


# --- the two listeners -----------------------------------------------------


class ListenerTest(Pop3dTest):
    def test_poplib_stls_then_user_pass_retrieves(self):
        sent = self.deliver(message(token()))
        p = POP3("127.0.0.1", self.port("pop3"), timeout=SOCKET_TIMEOUT)
        self.addCleanup(quit_quietly, p)
        self.assertTrue(p.getwelcome().startswith(b"+OK"))
        resp = p.stls(context=self.kotak.ssl_context())
        self.assertTrue(resp.startswith(b"+OK"), resp)
        self.assertIsInstance(p.sock, ssl.SSLSocket)
        self.assertTrue(p.user(BOB).startswith(b"+OK"))
        self.assertTrue(p.pass_(PASSWORDS[BOB]).startswith(b"+OK"))
        self.assertEqual(p.stat()[0], 1)
        got = self.retr(p, 1)
        self.assertEqual(self.split_trace(got)[2], sent)
        self.assertTrue(p.quit().startswith(b"+OK"))

    def test_poplib_pop3s_implicit_tls_retrieves(self):
        sent = self.deliver(message(token()))
        p = self.pops()
        self.assertIsInstance(p.sock, ssl.SSLSocket)
        self.assertEqual(p.stat()[0], 1)
        self.assertEqual(self.split_trace(self.retr(p, 1))[2], sent)
        self.assertTrue(p.quit().startswith(b"+OK"))

    def test_stls_is_refused_after_tls_and_on_pop3s(self):
        c = self.raw("pop3")
        self.assertTrue(c.cmd1("STLS").startswith("+OK"))
        c.starttls(self.kotak.ssl_context())
        self.assertTrue(c.cmd1("STLS").startswith("-ERR"))
        self.assertTrue(c.cmd1("NOOP").startswith("-ERR"))   # not logged in: still alive
        s = self.raw("pop3s")
        self.assertTrue(s.cmd1("STLS").startswith("-ERR"))

    @unittest.skipUnless(ipv6_loopback_available(), "no IPv6 loopback here")
    def test_ipv6_pop3_listener_serves(self):
        port = free_ports(1, "::1")[0]
        self.kotak.stop("pop3d")
        with open(self.kotak.conf) as f:
            text = f.read()
        text = re.sub(r"(\[pop3\][^\n]*\nlisten = )([^\n]*)",
                      lambda m: f"{m.group(1)}{m.group(2)}, [::1]:{port}", text)
        with open(self.kotak.conf, "w") as f:
            f.write(text)
        self.kotak.start("pop3d")
        sent = self.deliver(message(token()))
        p = self.pop(host="::1", port=port)
        self.assertEqual(p.sock.getpeername()[0], "::1")
        self.assertEqual(self.split_trace(self.retr(p, 1))[2], sent)
        self.assertRegex(self.kotak.log("pop3d"), r"ip=\[?::1\]? ")
        # The IPv4 listener of the same list still serves.
        p.quit()
        self.assertEqual(self.pop().stat()[0], 1)


# --- greeting and CAPA -----------------------------------------------------


class CapaTest(Pop3dTest):
    def capa_lines(self, c):
        self.assertTrue(c.cmd1("CAPA").startswith("+OK"))
        return [l.decode().rstrip("\r\n") for l in c.multi()]

    def check_capa(self, lines, stls):
        names = [l.split()[0] for l in lines]
        self.assertEqual(len(names), len(set(names)), f"a capability twice: {lines}")
        want = set(CAPA_BEFORE_LOGIN) - (set() if stls else {"STLS"})
        self.assertEqual(set(names), want, f"CAPA: {lines}")
        self.assertIn("SASL PLAIN LOGIN", lines)
        for l in lines:
            if l.split()[0] in ("TOP", "UIDL", "USER", "STLS", "RESP-CODES", "AUTH-RESP-CODE",
                                "PIPELINING", "UTF8"):
                self.assertEqual(l, l.split()[0], f"{l!r} has arguments")
        self.assertIn("EXPIRE NEVER", lines)       # mail stays until deleted
        self.assertIn("LOGIN-DELAY 0", lines)      # and logins may follow at once
        self.assertTrue(any(re.fullmatch(r"IMPLEMENTATION \S.*", l) for l in lines), lines)

    def test_greeting_has_no_apop_timestamp(self):
        greetings = []
        for listener in ("pop3", "pop3s"):
            ctx = self.kotak.ssl_context() if listener == "pop3s" else None
            c = PopClient(self.port(listener), tls_context=ctx)
            self.addCleanup(c.close)
            greetings.append(c.line())
        for g in greetings:
            self.assertTrue(g.startswith("+OK "), g)
            self.assertNotRegex(g, r"<[^>]*>", "the greeting carries an APOP timestamp")
        p = self.pop(user=None, stls=False)
        with self.assertRaises(poplib.error_proto):
            p.apop(BOB, PASSWORDS[BOB])

    def test_capa_on_loopback_plaintext_lists_exactly_the_offered_set_with_stls(self):
        c = self.raw()
        self.check_capa(self.capa_lines(c), stls=True)

    def test_capa_after_stls_has_no_stls(self):
        c = self.raw()
        self.assertTrue(c.cmd1("STLS").startswith("+OK"))
        c.starttls(self.kotak.ssl_context())
        self.check_capa(self.capa_lines(c), stls=False)

    def test_capa_on_pop3s_has_no_stls(self):
        c = self.raw("pop3s")
        self.check_capa(self.capa_lines(c), stls=False)

    def test_capa_after_login_has_no_stls_and_login_delay_0_holds(self):
        c = self.raw_login()
        names = [l.split()[0] for l in self.capa_lines(c)]
        self.assertNotIn("STLS", names)
        for n in ("TOP", "UIDL", "PIPELINING", "RESP-CODES"):
            self.assertIn(n, names)
        self.assertTrue(c.cmd1("QUIT").startswith("+OK"))
        c.read_until_closed(5)
        # LOGIN-DELAY 0: a new login right after is accepted.
        self.raw_login()

    def test_utf8_is_ok_and_apop_is_err(self):
        c = self.raw()
        self.assertTrue(c.cmd1("UTF8").startswith("+OK"))
        self.assertTrue(c.cmd1(f"APOP {BOB} 0123456789abcdef0123456789abcdef").startswith("-ERR"))
        # The session goes on.
        self.assertTrue(c.cmd1(f"USER {BOB}").startswith("+OK"))
        self.assertTrue(c.cmd1(f"PASS {PASSWORDS[BOB]}").startswith("+OK"))


# --- the maildrop: STAT, LIST, UIDL, TOP, RETR -----------------------------


class MaildropTest(Pop3dTest):
    def test_stat_and_list_sizes_are_the_octets_retr_sends(self):
        sents = self.deliver_many(3)
        self.deliver(message(token(), body=b".dot\r\n..two\r\n\r\nend\r\n"))
        p = self.pop()
        count, total = p.stat()
        self.assertEqual(count, 4)
        got = [self.retr(p, n) for n in range(1, 5)]
        self.assertEqual(total, sum(len(g) for g in got))
        self.assertEqual(self.listing(p), [(n, len(got[n - 1])) for n in range(1, 5)])
        for n in range(1, 5):
            resp = p._shortcmd(f"LIST {n}")
            self.assertEqual(resp, f"+OK {n} {len(got[n - 1])}".encode())
        self.assertEqual(got, self.kotak.bodies(BOB))
        self.assertEqual([self.split_trace(g)[2] for g in got[:3]], sents)

    def test_retr_body_is_byte_identical_with_dots_and_8bit_octets(self):
        body = (b"First line.\r\n"
                b".A line that started with a dot.\r\n"
                b".\r\n"
                b"..Two dots.\r\n"
                b"\r\n"
                b"Caf\xc3\xa9 \xff\xfe\x80 raw 8-bit octets\r\n"
                b"  leading spaces and a tab\there \r\n"
                b".\r\n"
                b"last\r\n")
        sent = message(token(), body=body)
        s = SMTP("127.0.0.1", self.port("smtp"), local_hostname=CLIENT, timeout=SOCKET_TIMEOUT)
        try:
            s.ehlo()
            self.assertEqual(s.mail(REMOTE, ["BODY=8BITMIME"])[0], 250)
            self.assertEqual(s.rcpt(BOB)[0], 250)
            self.assertEqual(s.data(sent)[0], 250)
        finally:
            s.quit()
        stored = self.kotak.bodies(BOB)[0]
        # poplib: unstuffed by the client.
        p = self.pop()
        got = self.retr(p, 1)
        self.assertEqual(got, stored)
        rp, received, rest = self.split_trace(got)
        self.assertEqual(rp, f"Return-Path: <{REMOTE}>\r\n".encode())
        self.assertEqual(rest, sent)
        p.quit()
        # On the wire: every line that starts with '.' has one more in front.
        c = self.raw_login()
        c.send(b"RETR 1\r\n")
        self.assertTrue(c.line().startswith("+OK"))
        wire = c.multi()
        self.assertEqual(unstuff(wire), stored)
        stored_lines = stored.split(b"\r\n")[:-1]
        self.assertEqual(len(wire), len(stored_lines))
        for w, l in zip(wire, stored_lines):
            self.assertEqual(w, (b"." + l if l.startswith(b".") else l) + b"\r\n")

    def test_top_0_is_the_header_and_top_2_adds_two_body_lines(self):
        body = b".dotted first\r\n..two dots\r\nthird\r\nfourth\r\n"
        sent = self.deliver(message(token(), body=body))
        stored = self.kotak.bodies(BOB)[0]
        head, _, stored_body = stored.partition(b"\r\n\r\n")
        self.assertEqual(stored_body, body)
        p = self.pop()
        resp, lines, _ = p.top(1, 0)
        self.assertTrue(resp.startswith(b"+OK"), resp)
        self.assertEqual(joined(lines), head + b"\r\n\r\n")
        resp, lines, _ = p.top(1, 2)
        self.assertEqual(joined(lines), head + b"\r\n\r\n.dotted first\r\n..two dots\r\n")
        resp, lines, _ = p.top(1, 100)
        self.assertEqual(joined(lines), stored)
        self.assertIn(sent, stored)
        # TOP does not mark as read or delete anything; RETR still gives it whole.
        self.assertEqual(self.retr(p, 1), stored)
        with self.assertRaises(poplib.error_proto):
            p.top(2, 0)

    def test_uidl_is_unique_and_stable_across_sessions_and_restarts(self):
        self.deliver_many(5)
        p = self.pop()
        first = self.uidls(p)
        self.assertEqual([n for n, _ in first], [1, 2, 3, 4, 5])
        uids = [u for _, u in first]
        self.assertEqual(len(set(uids)), 5, uids)
        for u in uids:
            self.assertRegex(u, r"^[\x21-\x7e]{1,70}$")   # RFC 1939 7
        for n, u in first:
            self.assertEqual(p._shortcmd(f"UIDL {n}"), f"+OK {n} {u}".encode())
        p.quit()
        self.assertEqual(self.uidls(self.pops()), first, "UIDLs changed between sessions")
        self.kotak.restart("pop3d", kill=False)
        self.assertEqual(self.uidls(self.pop()), first, "UIDLs changed across a restart")
        self.kotak.restart("pop3d", kill=True)
        self.assertEqual(self.uidls(self.pop()), first, "UIDLs changed across kill -9")

    def test_uidl_of_a_deleted_message_is_never_reused(self):
        self.deliver_many(3)
        p = self.pop()
        before = [u for _, u in self.uidls(p)]
        # The newest one goes: the id a careless store would hand out next.
        p.dele(3)
        p.quit()
        self.kotak.restart("pop3d", kill=False)
        self.deliver(message(token()))
        p = self.pop()
        after = [u for _, u in self.uidls(p)]
        self.assertEqual(len(after), 3)
        self.assertEqual(after[:2], before[:2])
        self.assertNotIn(after[2], before, "a new message got the UIDL of a deleted one")
        # And once more, after deleting everything.
        for n in range(1, 4):
            p.dele(n)
        p.quit()
        self.deliver(message(token()))
        last = [u for _, u in self.uidls(self.pop())]
        self.assertEqual(len(last), 1)
        self.assertNotIn(last[0], before + after)

    def test_5_mib_message_is_retrieved_intact_and_memory_stays_bounded(self):
        lines = []
        i = 0
        total = 0
        while total < 5 * 1024 * 1024:
            line = (b"." if i % 37 == 0 else b"") + (b"%08d " % i) + bytes(
                (33 + (i * 7 + k) % 90) for k in range(60)) + b"\r\n"
            lines.append(line)
            total += len(line)
            i += 1
        sent = message(token(), body=b"".join(lines))
        self.deliver(sent)
        stored = self.kotak.bodies(BOB)[0]
        self.assertEqual(self.split_trace(stored)[2], sent)
        pid = self.kotak.procs["pop3d"].pid
        # A small receive window, so that the client's kernel cannot take the
        # whole message off the server's hands while the client stalls.
        c = SlowPopClient(self.port("pop3"), rcvbuf=64 * 1024)
        self.addCleanup(c.close)
        self.assertTrue(c.line().startswith("+OK"))
        self.assertTrue(c.cmd1(f"USER {BOB}").startswith("+OK"))
        self.assertTrue(c.cmd1(f"PASS {PASSWORDS[BOB]}").startswith("+OK"))
        self.assertEqual(c.cmd1("LIST 1"), f"+OK 1 {len(stored)}")
        rss0 = proc_status(pid, "VmRSS")
        samples = []
        done = threading.Event()

        def sample():
            # The daemon's resident size while the message goes out, every 20 ms.
            while not done.wait(0.02):
                samples.append(proc_status(pid, "VmRSS") or 0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            c.send(b"RETR 1\r\n")
            # A slow client first: the server must wait for the socket, not read ahead.
            time.sleep(1.0)
            self.assertTrue(c.line().startswith("+OK"))
            got = unstuff(c.multi())
        finally:
            done.set()
            sampler.join(5)
        samples.append(proc_status(pid, "VmRSS") or 0)
        self.assertEqual(len(got), len(stored))
        self.assertEqual(got, stored, "the 5 MiB message arrived altered")
        self.assertTrue(c.cmd1("NOOP").startswith("+OK"))
        growth_kib = max(samples) - rss0
        exe = DAEMONS["pop3d"]
        ldd = subprocess.run(["ldd", exe], capture_output=True, text=True, timeout=10)
        if "libasan" in ldd.stdout:
            self.skipTest(f"an ASan build: memory growth ({growth_kib} KiB) not judged; "
                          "the message itself arrived intact")
        self.assertLess(growth_kib, 4 * 1024,
                        f"kotak-pop3d grew by {growth_kib} KiB while sending a "
                        f"{len(stored) // 1024} KiB message")


# --- DELE, RSET, QUIT and what survives --------------------------------------


class OutlookTest(Pop3dTest):
    """Old clients that offices still run: Outlook hangs on a message holding a NUL."""

    def test_a_nul_goes_out_as_0x80_and_the_sizes_stay_true(self):
        sent = self.deliver(b"Subject: nul\r\n\r\none\x00two\r\n\x00\r\nend\r\n")
        p = self.pops(BOB)
        size = int(p.list(1).split()[2])
        got = self.retr(p, 1)
        self.assertNotIn(b"\x00", got)
        self.assertTrue(got.endswith(sent.replace(b"\x00", b"\x80")), got[-60:])
        self.assertEqual(len(got), size, "LIST's size is what RETR sends")
        self.assertEqual(int(p.stat()[1]), size)
        top = joined(p.top(1, 5)[1])
        self.assertIn(b"one\x80two", top)
        self.assertTrue(self.kotak.bodies(BOB)[0].endswith(sent), "the store keeps the NULs")


class UpdateTest(Pop3dTest):
    def test_dele_then_quit_removes_and_frees_the_body(self):
        sents = self.deliver_many(3)
        p = self.pop()
        self.assertEqual(self.kotak.count("messages"), 3)
        doomed = self.kotak.maildrop(BOB)[1]["message_id"]
        self.assertTrue(p.dele(2).startswith(b"+OK"))
        # Marked: gone from this session's view, still in the store.
        self.assertEqual(p.stat()[0], 2)
        self.assertEqual([n for n, _ in self.listing(p)], [1, 3])
        with self.assertRaises(poplib.error_proto):
            p.retr(2)
        with self.assertRaises(poplib.error_proto):
            p.dele(2)
        self.assertEqual(len(self.kotak.maildrop(BOB)), 3)
        self.assertTrue(p.quit().startswith(b"+OK"))
        # Applied before the +OK of QUIT: no waiting here.
        left = [self.split_trace(b)[2] for b in self.kotak.bodies(BOB)]
        self.assertEqual(left, [sents[0], sents[2]])
        self.assertEqual(self.kotak.query("SELECT count(*) FROM messages WHERE id = ?",
                                          doomed)[0][0], 0, "the body was kept")
        self.assertEqual(self.kotak.query("SELECT count(*) FROM chunks WHERE message_id = ?",
                                          doomed)[0][0], 0, "the body's chunks were kept")
        self.assertEqual(self.kotak.count("messages"), 2)
        p = self.pop()
        self.assertEqual(p.stat()[0], 2)
        self.assertEqual(self.split_trace(self.retr(p, 2))[2], sents[2])

    def test_dele_from_one_user_of_an_alias_keeps_the_body_for_the_other(self):
        # Large enough that the body has chunks beside the head in its row.
        sent = self.deliver(message(token(), to=SALES, body=(b"z" * 998 + b"\r\n") * 100),
                            to=SALES)
        self.assertEqual(self.kotak.count("messages"), 1)
        chunks = self.kotak.count("chunks")
        self.assertGreater(chunks, 0)
        p = self.pop(BOB)
        p.dele(1)
        p.quit()
        self.assertEqual(self.kotak.bodies(BOB), [])
        self.assertEqual(self.kotak.count("messages"), 1, "the body went while alice has it")
        self.assertEqual(self.kotak.count("chunks"), chunks)
        a = self.pop(ALICE)
        got = self.retr(a, 1)
        self.assertEqual(self.split_trace(got)[2], sent)
        a.dele(1)
        a.quit()
        self.assertEqual(self.kotak.count("maildrop"), 0)
        self.assertEqual(self.kotak.count("messages"), 0, "the body outlived its last reader")
        self.assertEqual(self.kotak.count("chunks"), 0, "chunks outlived their message")

    def test_dele_then_dropped_connection_deletes_nothing(self):
        self.deliver_many(2)
        before = self.kotak.maildrop(BOB)
        n0 = self.disconnects()
        c = self.raw_login()
        self.assertTrue(c.cmd1("DELE 1").startswith("+OK"))
        self.assertTrue(c.cmd1("DELE 2").startswith("+OK"))
        c.close()   # no QUIT
        self.wait_disconnects(n0)
        self.assertEqual(self.kotak.maildrop(BOB), before)
        p = self.pop()   # and the lock went with it
        self.assertEqual(p.stat()[0], 2)

    def test_dele_then_rset_then_quit_deletes_nothing(self):
        self.deliver_many(3)
        before = self.kotak.maildrop(BOB)
        p = self.pop()
        p.dele(1)
        p.dele(3)
        self.assertEqual(p.stat()[0], 1)
        self.assertTrue(p.rset().startswith(b"+OK"))
        self.assertEqual(p.stat()[0], 3)
        self.assertTrue(p.quit().startswith(b"+OK"))
        self.assertEqual(self.kotak.maildrop(BOB), before)
        self.assertEqual(self.pop().stat()[0], 3)

    @config(limits={"pop3_idle_timeout": "2s"})
    def test_idle_timeout_is_err_and_close_and_deletes_nothing(self):
        self.deliver_many(2)
        before = self.kotak.maildrop(BOB)
        c = self.raw_login()
        self.assertTrue(c.cmd1("DELE 1").startswith("+OK"))
        start = time.monotonic()
        closed, got = c.read_until_closed(8)
        self.assertTrue(closed, "an idle session was not closed")
        self.assertGreaterEqual(time.monotonic() - start, 1.5)
        self.assertTrue(got.startswith(b"-ERR"), got)
        self.assertEqual(self.kotak.maildrop(BOB), before)
        p = self.pop()   # the lock went too
        self.assertEqual(p.stat()[0], 2)

    def test_kill_9_with_marks_deletes_nothing(self):
        self.deliver_many(2)
        before = self.kotak.maildrop(BOB)
        c = self.raw_login()
        self.assertTrue(c.cmd1("DELE 1").startswith("+OK"))
        self.kotak.kill9("pop3d")
        self.kotak.start("pop3d")
        self.assertEqual(self.kotak.maildrop(BOB), before)
        self.assertEqual(self.pop().stat()[0], 2)


# --- the maildrop lock and the snapshot --------------------------------------


class LockTest(Pop3dTest):
    def test_second_login_is_in_use_and_the_lock_goes_after_quit(self):
        self.deliver_many(1)
        p = self.pop()
        self.assertInUse()
        # The other user is not locked out, nor is a login over pop3s.
        self.pop(ALICE).quit()
        s = self.pops(user=None)
        s.user(BOB)
        with self.assertRaises(poplib.error_proto) as cm:
            s.pass_(PASSWORDS[BOB])
        self.assertTrue(err_text(cm).startswith("-ERR [IN-USE]"), err_text(cm))
        # The lock is the user's, whatever the spelling of the login name.
        self.assertInUse("BOB@EXAMPLE.TEST")
        # The first session is unharmed.
        self.assertEqual(p.stat()[0], 1)
        p.quit()
        self.assertEqual(self.pop().stat()[0], 1)
        self.assertIn("result=in-use", self.kotak.log("pop3d"))

    def test_lock_goes_after_a_dropped_connection(self):
        c = self.raw_login()
        self.assertInUse()
        n0 = self.disconnects()
        c.close()
        self.wait_disconnects(n0)
        self.pop().quit()

    @config(limits={"pop3_idle_timeout": "2s"})
    def test_lock_goes_after_the_idle_timeout(self):
        c = self.raw_login()
        self.assertInUse()
        closed, got = c.read_until_closed(8)
        self.assertTrue(closed)
        self.assertTrue(got.startswith(b"-ERR"), got)
        self.pop().quit()

    def test_lock_goes_after_kill_9_and_restart(self):
        c = self.raw_login()
        self.assertInUse()
        self.kotak.kill9("pop3d")
        self.kotak.start("pop3d")
        self.pop().quit()
        c.close()

    def test_lock_is_held_until_the_quit_deletions_have_ended_after_the_client_vanished(self):
        # A write lock held here keeps the QUIT's deletion waiting in the
        # store while its client resets the connection.
        self.deliver_many(2)
        c = self.raw_login()
        self.assertTrue(c.cmd1("DELE 1").startswith("+OK"))
        hold = sqlite3.connect(self.kotak.db_path, isolation_level=None, timeout=5)
        self.addCleanup(hold.close)
        hold.execute("BEGIN IMMEDIATE")
        n0 = self.disconnects()
        c.send(b"QUIT\r\n")
        time.sleep(0.3)   # the deletion has begun, and waits for the store
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()         # a reset: the client is gone before the result
        self.wait_disconnects(n0)
        # Before the deletion ends, its messages must not be offered again.
        self.assertInUse()
        hold.execute("ROLLBACK")
        # The first login that gets in sees the maildrop after the deletion.
        deadline = time.monotonic() + 10
        while True:
            p = self.pop(user=None)
            p.user(BOB)
            try:
                p.pass_(PASSWORDS[BOB])
                break
            except poplib.error_proto as e:
                self.assertIn(b"[IN-USE]", e.args[0])
                self.assertLess(time.monotonic(), deadline, "the lock never went")
                quit_quietly(p)
                time.sleep(0.1)
        self.assertEqual(p.stat()[0], 1)
        self.assertEqual(len(self.kotak.maildrop(BOB)), 1)

    def test_session_sees_the_maildrop_as_at_login(self):
        self.deliver_many(2)
        p = self.pop()
        stat0, uid0 = p.stat(), self.uidls(p)
        sent = self.deliver(message(token()))
        self.assertEqual(len(self.kotak.bodies(BOB)), 3)
        self.assertEqual(p.stat(), stat0, "mail that arrived after login is in the session")
        self.assertEqual(self.uidls(p), uid0)
        self.assertEqual(len(self.listing(p)), 2)
        with self.assertRaises(poplib.error_proto):
            p.retr(3)
        p.quit()
        p = self.pop()
        self.assertEqual(p.stat()[0], 3)
        self.assertEqual(self.uidls(p)[:2], uid0)
        self.assertEqual(self.split_trace(self.retr(p, 3))[2], sent)


# --- multi-line replies are whole, or the connection ends --------------------


class WholeReplyTest(Pop3dTest):
    def fill_maildrop(self, n, user=BOB):
        """n distinct small messages put straight into the store in one
        transaction (delivering them over SMTP would take minutes); returns
        their sizes, oldest first."""
        uid = self.kotak.user_id(user)
        con = sqlite3.connect(self.kotak.db_path, isolation_level=None, timeout=5)
        try:
            con.execute("BEGIN IMMEDIATE")
            first = con.execute("SELECT coalesce(max(id), 0) + 1 FROM messages").fetchone()[0]
            bodies = [b"Subject: bulk %d\r\n\r\n%s\r\n" % (i, b"x" * (i % 50))
                      for i in range(n)]
            now = int(time.time())
            con.executemany("INSERT INTO messages(id, received, size, head) VALUES(?, ?, ?, ?)",
                            ((first + i, now, len(b), b) for i, b in enumerate(bodies)))
            con.executemany("INSERT INTO maildrop(user_id, message_id, size, arrived) "
                            "VALUES(?, ?, ?, ?)",
                            ((uid, first + i, len(b), now) for i, b in enumerate(bodies)))
            con.execute("COMMIT")
        finally:
            con.close()
        return [len(b) for b in bodies]

    def test_list_and_uidl_of_100000_messages_are_whole_and_stat_agrees(self):
        n = 100000
        sizes = self.fill_maildrop(n)
        p = self.pop()
        count, total = p.stat()
        self.assertEqual((count, total), (n, sum(sizes)))
        listing = self.listing(p)
        self.assertEqual(len(listing), n, "LIST is not whole")
        self.assertEqual(listing, [(i, size) for i, size in enumerate(sizes, 1)])
        uidls = self.uidls(p)
        self.assertEqual(len(uidls), n, "UIDL is not whole")
        self.assertEqual([i for i, _ in uidls], list(range(1, n + 1)))
        self.assertEqual(len({u for _, u in uidls}), n, "UIDLs repeat")
        # The session goes on after the listings, and marks still count.
        self.assertTrue(p.dele(n).startswith(b"+OK"))
        self.assertEqual(len(self.listing(p)), n - 1)
        self.assertEqual(p.stat(), (n - 1, total - sizes[-1]))
        self.assertTrue(p.rset().startswith(b"+OK"))
        self.assertEqual(self.retr(p, n), b"Subject: bulk %d\r\n\r\n%s\r\n"
                         % (n - 1, b"x" * ((n - 1) % 50)))
        self.assertTrue(p.quit().startswith(b"+OK"))

    def test_body_shorter_than_its_recorded_size_ends_in_a_hang_up_not_a_dot(self):
        self.deliver_many(1)
        stored = self.kotak.maildrop(BOB)[0]
        # The store says 100 octets more than the body holds.
        con = sqlite3.connect(self.kotak.db_path, isolation_level=None, timeout=5)
        try:
            con.execute("UPDATE maildrop SET size = size + 100 WHERE id = ?", (stored["id"],))
            con.execute("UPDATE messages SET size = size + 100 WHERE id = ?",
                        (stored["message_id"],))
        finally:
            con.close()
        c = self.raw_login()
        self.assertEqual(c.cmd1("LIST 1"), f"+OK 1 {stored['size'] + 100}")
        self.assertEqual(c.cmd1("RETR 1"), f"+OK {stored['size'] + 100} octets")
        closed, got = c.read_until_closed(5)
        self.assertTrue(closed, "the connection stayed open after a short body")
        self.assertFalse(got.endswith(b"\r\n.\r\n") or got == b".\r\n",
                         "a short body was ended with '.' as if whole")
        self.assertEqual(unstuff(got.splitlines(keepends=True)), stored["body"])
        self.assertTrue(self.kotak.wait_log(r"event=body-short", "pop3d"))

    def test_pipelined_capa_past_the_output_limit_never_ends_a_cut_reply_with_a_dot(self):
        # Pipelined CAPAs whose replies are more than the session's output
        # holds. The UTF8 lines before them shift where the output would
        # fill up. Each reply is whole, or the connection ends: no cut reply
        # ever ends with '.'. (Input now waits while output is queued, so
        # all of them are answered, and QUIT closes.)
        whole = None
        for shift in range(12):
            c = self.raw()
            c.send(b"UTF8\r\n" * shift + b"CAPA\r\n" * 8000 + b"QUIT\r\n")
            closed, got = c.read_until_closed(10)
            c.close()
            self.assertTrue(closed, f"shift {shift}: no hang-up")
            if got.endswith(b"+OK Bye\r\n"):
                got = got[:-len(b"+OK Bye\r\n")]
            lines = got.split(b"\r\n")
            self.assertEqual(lines[:shift], [b"+OK UTF8 enabled"] * shift)
            replies = got[len(b"+OK UTF8 enabled\r\n") * shift:].split(b"\r\n.\r\n")
            if whole is None:
                whole = replies[0]
            for r in replies[:-1]:
                self.assertEqual(r, whole, f"shift {shift}: a cut CAPA ends with '.'")
            # What follows the last '.' is a reply cut short by the hang-up.
            self.assertTrue((whole + b"\r\n").startswith(replies[-1]),
                            f"shift {shift}: {replies[-1][-80:]!r}")


# --- pipelining ------------------------------------------------------------


class PipeliningTest(Pop3dTest):
    def expected(self):
        bodies = self.kotak.bodies(BOB)
        p = self.pop()
        uid = self.uidls(p)
        p.quit()
        return bodies, uid

    def check_pipeline(self, c, bodies, uid):
        c.send(b"STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nNOOP\r\n")
        self.assertEqual(c.line(), f"+OK {len(bodies)} {sum(len(b) for b in bodies)}")
        self.assertTrue(c.line().startswith("+OK"))
        self.assertEqual(c.multi(), [f"{n} {len(b)}\r\n".encode()
                                     for n, b in enumerate(bodies, 1)])
        self.assertTrue(c.line().startswith("+OK"))
        self.assertEqual(c.multi(), [f"{n} {u}\r\n".encode() for n, u in uid])
        self.assertTrue(c.line().startswith("+OK"), "RETR")
        self.assertEqual(unstuff(c.multi()), bodies[0])
        self.assertTrue(c.line().startswith("+OK"), "NOOP after RETR")

    def setUp(self):
        super().setUp()
        # A first message large enough that its RETR outlasts one socket write.
        big = b"".join(b".%06d pipelined line of some length to fill the socket\r\n" % i
                       for i in range(6000))
        self.deliver(message(token(), body=big))
        self.deliver_many(2)

    def test_pipelined_commands_over_pop3s_are_answered_in_order(self):
        bodies, uid = self.expected()
        c = self.raw("pop3s")
        c.send(f"USER {BOB}\r\nPASS {PASSWORDS[BOB]}\r\n")
        self.assertTrue(c.line().startswith("+OK"))
        self.assertTrue(c.line().startswith("+OK"))
        self.check_pipeline(c, bodies, uid)

    def test_pipelined_session_on_loopback_plaintext_in_one_write(self):
        bodies, uid = self.expected()
        c = self.raw("pop3")
        c.send(f"CAPA\r\nUSER {BOB}\r\nPASS {PASSWORDS[BOB]}\r\n".encode()
               + b"STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nNOOP\r\nDELE 2\r\nSTAT\r\nQUIT\r\n")
        self.assertTrue(c.line().startswith("+OK"))
        self.assertIn(b"PIPELINING\r\n", c.multi())
        self.assertTrue(c.line().startswith("+OK"))
        self.assertTrue(c.line().startswith("+OK"), "PASS")
        self.assertEqual(c.line(), f"+OK {len(bodies)} {sum(len(b) for b in bodies)}")
        self.assertTrue(c.line().startswith("+OK"))
        self.assertEqual(len(c.multi()), len(bodies))
        self.assertTrue(c.line().startswith("+OK"))
        self.assertEqual(c.multi(), [f"{n} {u}\r\n".encode() for n, u in uid])
        self.assertTrue(c.line().startswith("+OK"))
        self.assertEqual(unstuff(c.multi()), bodies[0])
        self.assertEqual(c.line(), "+OK", "NOOP")
        self.assertTrue(c.line().startswith("+OK"), "DELE")
        self.assertEqual(c.line(), f"+OK {len(bodies) - 1} "
                                   f"{sum(len(b) for b in bodies) - len(bodies[1])}")
        self.assertTrue(c.line().startswith("+OK"), "QUIT")
        closed, _ = c.read_until_closed(5)
        self.assertTrue(closed)
        self.assertEqual(self.kotak.bodies(BOB), [bodies[0], bodies[2]])

    def test_client_that_half_closes_after_quit_still_gets_its_deletions_and_ok(self):
        # QUIT's deletions are applied off the loop; the end of the client's
        # stream arrives meanwhile, and the +OK still goes out.
        bodies, _ = self.expected()
        c = self.raw_login()
        c.send(b"DELE 1\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        self.assertTrue(c.line().startswith("+OK"), "DELE")
        self.assertTrue(c.line().startswith("+OK"), "QUIT")
        closed, _ = c.read_until_closed(5)
        self.assertTrue(closed)
        self.assertEqual(self.kotak.bodies(BOB), bodies[1:])

    def test_tls_client_that_sends_close_notify_after_quit_still_gets_its_deletions_and_ok(self):
        # The TLS form of the half-close: close_notify follows QUIT at once and
        # reaches the server while QUIT's deletions are applied.
        bodies, _ = self.expected()
        raw = socket.create_connection(("127.0.0.1", self.port("pop3s")), timeout=SOCKET_TIMEOUT)
        self.addCleanup(raw.close)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.kotak.ssl_context().wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)

        def send_pending():
            data = outgoing.read()
            if data:
                raw.sendall(data)

        def receive():
            data = raw.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            incoming.write(data)

        for _ in range(100):
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                send_pending()
                receive()
        send_pending()
        text = b""

        def line():
            nonlocal text
            for _ in range(1000):
                if b"\r\n" in text:
                    got, _, text = text.partition(b"\r\n")
                    return got.decode()
                try:
                    text += tls.read(65536)
                except ssl.SSLWantReadError:
                    receive()
            raise AssertionError("no line")

        self.assertTrue(line().startswith("+OK"), "greeting")
        tls.write(f"USER {BOB}\r\nPASS {PASSWORDS[BOB]}\r\n".encode())
        send_pending()
        self.assertTrue(line().startswith("+OK"), "USER")
        self.assertTrue(line().startswith("+OK"), "PASS")
        tls.write(b"DELE 1\r\nQUIT\r\n")
        with self.assertRaises(ssl.SSLWantReadError):
            tls.unwrap()  # close_notify goes out; the server's is awaited
        send_pending()
        self.assertTrue(line().startswith("+OK"), "DELE")
        self.assertTrue(line().startswith("+OK"), "QUIT")
        self.assertEqual(self.kotak.bodies(BOB), bodies[1:])


# --- logins ------------------------------------------------------------------


class LoginTest(Pop3dTest):
    def test_wrong_password_is_err_auth_after_the_delay_and_unknown_user_looks_the_same(self):
        texts, times = [], []
        for user in (BOB, "nobody@example.test"):
            p = self.pop(user=None)
            self.assertTrue(p.user(user).startswith(b"+OK"))
            start = time.monotonic()
            with self.assertRaises(poplib.error_proto) as cm:
                p.pass_("wrong-password-42")
            times.append(time.monotonic() - start)
            texts.append(err_text(cm))
        self.assertTrue(texts[0].startswith("-ERR [AUTH]"), texts[0])
        self.assertEqual(texts[0], texts[1])
        for t in times:
            self.assertGreaterEqual(t, 0.3, "a failure was answered before failure_delay")
            self.assertLess(t, 5)
        self.assertLess(abs(times[0] - times[1]), 0.3, f"timings differ: {times}")
        # The session goes on: the right password now works.
        p = self.pop(user=None)
        p.user(BOB)
        with self.assertRaises(poplib.error_proto):
            p.pass_("wrong-again")
        p.user(BOB)
        self.assertTrue(p.pass_(PASSWORDS[BOB]).startswith(b"+OK"))

    @config(auth={"max_failures": "3", "failure_delay": "200ms"})
    def test_lockout_after_max_failures_even_with_the_right_password_is_sys_temp(self):
        for i in range(3):
            p = self.pop(user=None)
            p.user(BOB)
            with self.assertRaises(poplib.error_proto) as cm:
                p.pass_(f"wrong-{i}")
            self.assertTrue(err_text(cm).startswith("-ERR [AUTH]"), err_text(cm))
        p = self.pop(user=None)
        p.user(BOB)
        with self.assertRaises(poplib.error_proto) as cm:
            p.pass_(PASSWORDS[BOB])
        self.assertTrue(err_text(cm).startswith("-ERR [SYS/TEMP]"), err_text(cm))
        c = self.raw("pop3s")   # the other port and SASL too
        cred = base64.b64encode(f"\0{BOB}\0{PASSWORDS[BOB]}".encode()).decode()
        self.assertTrue(c.cmd1(f"AUTH PLAIN {cred}").startswith("-ERR [SYS/TEMP]"))
        # The lockout is bob's from this address, not everyone's there.
        cred = base64.b64encode(f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode()
        self.assertTrue(c.cmd1(f"AUTH PLAIN {cred}").startswith("+OK"))
        self.assertTrue(self.kotak.wait_log(r"result=locked", "pop3d"), self.kotak.log("pop3d"))

    def test_auth_plain_with_initial_response(self):
        sent = self.deliver(message(token()))
        c = self.raw("pop3s")
        cred = base64.b64encode(f"\0{BOB}\0{PASSWORDS[BOB]}".encode()).decode()
        self.assertTrue(c.cmd1(f"AUTH PLAIN {cred}").startswith("+OK"))
        self.assertEqual(c.cmd1("STAT"), f"+OK 1 {len(self.kotak.bodies(BOB)[0])}")
        c.send(b"RETR 1\r\n")
        self.assertTrue(c.line().startswith("+OK"))
        self.assertEqual(self.split_trace(unstuff(c.multi()))[2], sent)

    def test_auth_plain_without_initial_response_and_wrong_password(self):
        c = self.raw()
        self.assertEqual(c.cmd1("AUTH PLAIN").rstrip(), "+")
        cred = base64.b64encode(f"\0{BOB}\0wrong".encode()).decode()
        self.assertTrue(c.cmd1(cred).startswith("-ERR [AUTH]"))
        cred = base64.b64encode(f"\0{BOB}\0{PASSWORDS[BOB]}".encode()).decode()
        self.assertTrue(c.cmd1(f"AUTH PLAIN {cred}").startswith("+OK"))

    def test_auth_login_in_steps(self):
        c = self.raw()
        r = c.cmd1("AUTH LOGIN")
        self.assertTrue(r.startswith("+ "), r)
        self.assertEqual(base64.b64decode(r[2:]).decode().lower(), "username:")
        r = c.cmd1(base64.b64encode(ALICE.encode()).decode())
        self.assertTrue(r.startswith("+ "), r)
        self.assertEqual(base64.b64decode(r[2:]).decode().lower(), "password:")
        r = c.cmd1(base64.b64encode(PASSWORDS[ALICE].encode()).decode())
        self.assertTrue(r.startswith("+OK"), r)
        self.assertEqual(c.cmd1("STAT"), "+OK 0 0")

    def test_auth_cancelled_with_star(self):
        c = self.raw()
        self.assertTrue(c.cmd1("AUTH LOGIN").startswith("+ "))
        self.assertTrue(c.cmd1("*").startswith("-ERR"))
        self.assertTrue(c.cmd1(f"USER {BOB}").startswith("+OK"))

    def test_stls_plaintext_injection_is_discarded(self):
        c = self.raw()
        # One write: STLS and a USER behind it, as an attacker in the path would add.
        c.send(f"STLS\r\nUSER {BOB}\r\n")
        self.assertTrue(c.line().startswith("+OK"))
        c.starttls(self.kotak.ssl_context())
        r = c.cmd1(f"PASS {PASSWORDS[BOB]}")
        self.assertTrue(r.startswith("-ERR"), f"the injected USER was kept: {r}")
        self.assertIn("Send USER first", r)
        # Our own commands go on.
        self.assertTrue(c.cmd1(f"USER {BOB}").startswith("+OK"))
        self.assertTrue(c.cmd1(f"PASS {PASSWORDS[BOB]}").startswith("+OK"))

    def test_pass_takes_the_rest_of_the_line_spaces_and_all(self):
        self.kotak.kotak("user", "add", "carol@example.test", "--password-stdin",
                         input="two  spaces and a tail \n")
        c = self.raw()
        self.assertTrue(c.cmd1("USER carol@example.test").startswith("+OK"))
        self.assertTrue(c.cmd1("PASS two  spaces").startswith("-ERR [AUTH]"))
        self.assertTrue(c.cmd1("USER carol@example.test").startswith("+OK"))
        r = c.cmd1("PASS two  spaces and a tail ")
        self.assertTrue(r.startswith("+OK"), r)

    def test_user_pass_allowed_on_loopback_plaintext(self):
        p = self.pop(stls=False)
        self.assertEqual(p.stat(), (0, 0))


# --- limits and errors -------------------------------------------------------


class LimitsTest(Pop3dTest):
    def test_line_over_255_octets_is_err_and_the_session_goes_on(self):
        c = self.raw_login()
        line = b"A" * 294 + b"QUIT\r\n"
        self.assertEqual(len(line), 300)
        r = c.cmd1(line[:-2])
        self.assertTrue(r.startswith("-ERR"), r)
        r = c.cmd1(b"B" * 253 + b"QUIT")   # 259 octets: its tail never becomes a command
        self.assertTrue(r.startswith("-ERR"), r)
        # The long line in two writes: the server has 280 octets without an end
        # when it must give up on the line; "QUIT" behind it is still that line.
        c.send(b"C" * 280)
        time.sleep(0.2)
        r = c.cmd1(b"QUIT")
        self.assertTrue(r.startswith("-ERR"), r)
        self.assertEqual(c.cmd1("NOOP"), "+OK")
        self.assertTrue(c.cmd1("STAT").startswith("+OK 0 "))
        # In AUTHORIZATION too.
        d = self.raw()
        self.assertTrue(d.cmd1(b"USER " + b"x" * 300).startswith("-ERR"))
        self.assertTrue(d.cmd1(f"USER {ALICE}").startswith("+OK"))
        self.assertTrue(d.cmd1(f"PASS {PASSWORDS[ALICE]}").startswith("+OK"))

    @config(limits={"bad_commands": "3"})
    def test_bad_commands_limit_closes(self):
        c = self.raw()
        self.assertTrue(c.cmd1("BOGUS").startswith("-ERR"))
        self.assertTrue(c.cmd1("STAT").startswith("-ERR"))   # not allowed before login
        self.assertTrue(c.cmd1("NOOP").startswith("-ERR"))   # the third
        closed, _ = c.read_until_closed(5)
        self.assertTrue(closed, "the session outlived the bad-command limit")

    @config(limits={"bad_commands": "3"})
    def test_two_bad_commands_under_the_limit_keep_the_session(self):
        c = self.raw()
        self.assertTrue(c.cmd1("BOGUS").startswith("-ERR"))
        self.assertTrue(c.cmd1("XYZZY").startswith("-ERR"))
        self.assertTrue(c.cmd1(f"USER {BOB}").startswith("+OK"))
        self.assertTrue(c.cmd1(f"PASS {PASSWORDS[BOB]}").startswith("+OK"))
        self.assertTrue(c.cmd1("NOOP").startswith("+OK"))

    def test_transaction_commands_before_login_are_err(self):
        c = self.raw()
        for cmd in ("STAT", "LIST", "UIDL", "RETR 1", "DELE 1", "RSET", "TOP 1 0"):
            self.assertTrue(c.cmd1(cmd).startswith("-ERR"), cmd)


# --- real clients: curl, fetchmail, getmail6 ---------------------------------


def tool(name):
    path = shutil.which(name)
    if path is None:
        raise unittest.SkipTest(f"{name} is not installed (Debian package {name})")
    return path


class ToolsTest(Pop3dTest):
    def run_tool(self, argv, ok=(0,), env=None):
        p = subprocess.run(argv, capture_output=True, timeout=TOOL_TIMEOUT,
                           stdin=subprocess.DEVNULL, env=env, cwd=self.kotak.dir)
        self.assertIn(p.returncode, ok, f"{argv[0]} exited {p.returncode}:\n"
                      f"{p.stdout.decode(errors='replace')}\n"
                      f"{p.stderr.decode(errors='replace')}")
        return p

    def curl(self, path):
        port = self.port("pop3s")
        return self.run_tool([
            tool("curl"), "--silent", "--show-error", "--max-time", "20",
            "--cacert", self.kotak.cert, "-u", f"{BOB}:{PASSWORDS[BOB]}",
            # The certificate names mail.example.test; the address is 127.0.0.1.
            "--resolve", f"{HOSTNAME}:{port}:127.0.0.1",
            f"pop3s://{HOSTNAME}:{port}/{path}"]).stdout

    def test_curl_pop3s_lists_and_retrieves(self):
        self.deliver_many(2)
        self.deliver(message(token(), body=b".dot line\r\nplain\r\n"))
        listing = self.curl("")
        third = self.curl("3")
        first = self.curl("1")
        # poplib's view, after curl has let go of the maildrop.
        p = self.pop()
        want = [f"{n} {s}" for n, s in self.listing(p)]
        self.assertEqual(listing.decode().splitlines(), want)
        self.assertEqual(third, self.retr(p, 3))
        self.assertEqual(first, self.retr(p, 1))
        self.assertEqual([first, third], [self.kotak.bodies(BOB)[i] for i in (0, 2)])
        self.assertEqual(len(self.kotak.bodies(BOB)), 3)

    def fetchmail_rc(self, out, idfile):
        rc = os.path.join(self.kotak.dir, "fetchmailrc")
        with open(rc, "w") as f:
            f.write("set no syslog\n"
                    f"set idfile \"{idfile}\"\n"
                    f"poll {HOSTNAME} via 127.0.0.1 port {self.port('pop3s')} proto POP3 uidl\n"
                    f"  user \"{BOB}\" password \"{PASSWORDS[BOB]}\"\n"
                    f"  ssl sslcertck sslcertfile \"{self.kotak.cert}\"\n"
                    # The certificate names mail.example.test; fetchmail checks the
                    # name it connects to (127.0.0.1) unless told the right one.
                    f"  sslcommonname \"{HOSTNAME}\"\n"
                    f"  keep\n"
                    f"  mda \"cat >> {out}\"\n")
        os.chmod(rc, 0o600)
        return rc

    def test_fetchmail_keeping_mail_fetches_nothing_new_the_second_time(self):
        sents = self.deliver_many(3)
        out = os.path.join(self.kotak.dir, "fetchmail.out")
        idfile = os.path.join(self.kotak.dir, "fetchmail.ids")
        rc = self.fetchmail_rc(out, idfile)
        env = dict(os.environ, HOME=self.kotak.dir, FETCHMAILHOME=self.kotak.dir)
        argv = [tool("fetchmail"), "-f", rc, "--keep", "--nodetach", "--pidfile",
                os.path.join(self.kotak.dir, "fetchmail.pid")]
        self.run_tool(argv, ok=(0,), env=env)
        with open(out, "rb") as f:
            first = f.read()
        for sent in sents:
            subject = re.search(rb"Subject: (\S+)", sent).group(1)
            self.assertEqual(first.count(b"Subject: " + subject), 1)
        self.assertEqual(len(self.kotak.bodies(BOB)), 3, "fetchmail --keep deleted mail")
        # Again: nothing new (exit 1 is fetchmail's "no mail").
        self.run_tool(argv, ok=(1,), env=env)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), first, "the second run fetched again")
        # A new message: only that one comes.
        new = self.deliver(message(token()))
        self.run_tool(argv, ok=(0,), env=env)
        with open(out, "rb") as f:
            third = f.read()[len(first):]
        subject = re.search(rb"Subject: (\S+)", new).group(1)
        self.assertIn(b"Subject: " + subject, third)
        self.assertEqual(third.count(b"Subject: "), 1)

    def test_getmail6_keeping_mail_retrieves_nothing_the_second_time(self):
        sents = self.deliver_many(3)
        gdir = os.path.join(self.kotak.dir, "getmail")
        os.mkdir(gdir)
        # getmail refuses to write an mbox as root; then it delivers as nobody,
        # into a folder nobody can reach (the instance's folder is 0700).
        as_root = os.geteuid() == 0
        mdir = tempfile.mkdtemp(prefix="kotak-integ-mbox-")
        self.addCleanup(shutil.rmtree, mdir, True)
        mbox = os.path.join(mdir, "mbox")
        open(mbox, "wb").close()
        if as_root:
            os.chmod(mdir, 0o755)
            os.chown(mbox, 65534, 65534)
        rc = os.path.join(gdir, "getmailrc")
        with open(rc, "w") as f:
            f.write("[retriever]\n"
                    "type = SimplePOP3SSLRetriever\n"
                    "server = 127.0.0.1\n"
                    f"port = {self.port('pop3s')}\n"
                    f"username = {BOB}\n"
                    f"password = {PASSWORDS[BOB]}\n"
                    f"ca_certs = {self.kotak.cert}\n"
                    f"ssl_cert_hostname = {HOSTNAME}\n"
                    "\n[destination]\n"
                    "type = Mboxrd\n"
                    f"path = {mbox}\n"
                    + ("user = nobody\n" if as_root else "") +
                    "\n[options]\n"
                    "read_all = false\n"
                    "delete = false\n"
                    "verbose = 1\n")
        argv = [tool("getmail"), "--rcfile", rc, "--getmaildir", gdir]
        env = dict(os.environ, HOME=self.kotak.dir)
        p = self.run_tool(argv, env=env)
        self.assertRegex(p.stdout.decode(errors="replace"), r"\b3 messages? .*retrieved")
        with open(mbox, "rb") as f:
            first = f.read()
        for sent in sents:
            subject = re.search(rb"Subject: (\S+)", sent).group(1)
            self.assertEqual(first.count(b"Subject: " + subject), 1)
        self.assertEqual(len(self.kotak.bodies(BOB)), 3, "getmail with delete=false deleted")
        p = self.run_tool(argv, env=env)
        self.assertRegex(p.stdout.decode(errors="replace"), r"\b0 messages? .*retrieved")
        with open(mbox, "rb") as f:
            self.assertEqual(f.read(), first, "the second run retrieved again")


# --- process life and logs ---------------------------------------------------


class LifeAndLogTest(Pop3dTest):
    def test_sigterm_stops_with_status_0_and_logs_stopped(self):
        self.deliver_many(2)
        before = self.kotak.maildrop(BOB)
        c = self.raw_login()
        self.assertTrue(c.cmd1("DELE 1").startswith("+OK"))
        rc = self.kotak.stop("pop3d")
        self.assertEqual(rc, 0, f"exit status {rc}; log:\n{self.kotak.log('pop3d')}")
        self.assertIn("event=stopped", self.kotak.log("pop3d"))
        closed, got = c.read_until_closed(5)
        self.assertTrue(closed)
        self.assertTrue(got.startswith(b"-ERR"), got)
        # A session ended by the server's shutdown applies no marks either.
        self.assertEqual(self.kotak.maildrop(BOB), before)

    def test_log_says_tls_and_the_update_in_words(self):
        self.deliver(b"Subject: x\r\n\r\nhello\r\n")
        p = self.pops(BOB)  # pop3s: TLS from the first byte
        p.dele(1)
        p.quit()
        log = self.kotak.wait_log(r"event=update deleted=1 result=removed$", name="pop3d")
        self.assertTrue(log, self.kotak.log("pop3d"))
        self.assertRegex(self.kotak.log("pop3d"), r"(?m) event=tls version=TLSv1\.[23] cipher=\S+$")

    def test_log_has_a_line_per_connection_and_per_login_and_never_a_password(self):
        log0 = self.kotak.log("pop3d")
        connects0 = log0.count("event=connect")
        logins0 = log0.count("event=login")
        self.pop().quit()                           # 1: ok
        p = self.pop(user=None)                     # 2: failed
        p.user(ALICE)
        with self.assertRaises(poplib.error_proto):
            p.pass_("Wrong-Password-For-Alice-42")
        p.quit()
        self.pops(ALICE).quit()                     # 3: ok
        c = self.raw()                              # 4: SASL, ok
        cred = base64.b64encode(f"\0{BOB}\0{PASSWORDS[BOB]}".encode()).decode()
        self.assertTrue(c.cmd1(f"AUTH PLAIN {cred}").startswith("+OK"))
        self.assertTrue(c.cmd1("QUIT").startswith("+OK"))
        c.read_until_closed(5)
        log = self.kotak.log("pop3d")
        self.assertEqual(log.count("event=connect") - connects0, 4, log)
        self.assertEqual(log.count("event=login") - logins0, 4, log)
        self.assertEqual(len(re.findall(rf"event=login user={re.escape(BOB)} result=ok", log)), 2)
        self.assertRegex(log, rf"event=login user={re.escape(ALICE)} result=failed")
        self.assertRegex(log, rf"event=login user={re.escape(ALICE)} result=ok")
        self.assertRegex(log, r"(?m) ip=127\.0\.0\.1 event=login user=", "the address first")
        for pw in list(PASSWORDS.values()) + ["Wrong-Password-For-Alice-42"]:
            self.assertNotIn(pw, log, "a password is in the log")
            self.assertNotIn(base64.b64encode(pw.encode()).decode(), log)
        self.assertNotIn(cred, log)
        for line in log.splitlines():
            self.assertRegex(line, r"^ts=\S+ level=\w+ ", f"not a key=value line: {line!r}")


if __name__ == "__main__":
    unittest.main()
