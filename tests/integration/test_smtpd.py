"""Integration tests of kotak-smtpd: the real daemon on free loopback ports,
a fresh store per test, and real clients (smtplib, ssl, raw sockets, curl,
swaks). Each test names the behaviour it checks; issue 3 lists them.

Run: KOTAK_BUILD=build python3 tests/tap_unittest.py tests/integration/test_smtpd.py
"""
import base64
import email
import email.policy
import email.utils
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import unittest
import uuid

from kotak_harness import (HOSTNAME, PASSWORDS, POP3, SMTP, SMTP_SSL, SOCKET_TIMEOUT,
                           KotakTestCase, RawClient, config, free_ports, ipv6_loopback_available,
                           split_trace)

ALICE = "alice@example.test"
BOB = "bob@example.test"
SALES = "sales@example.test"   # an alias of alice and bob
REMOTE = "sender@remote.example"
CLIENT = "client.example.net"
TOOL_TIMEOUT = 30

ENHANCED = re.compile(r"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}( |$)")

# Small limits keep the slow paths (timeouts, delays) fast.
BASE_CONFIG = {
    "limits": {
        "message_size": "64K",
        "idle_timeout": "15s",
        "tls_handshake_timeout": "10s",
    },
    "auth": {
        "failure_delay": "300ms",
    },
}


def token():
    return uuid.uuid4().hex[:16]


def message(subject, body=b"Hello.\r\n", sender=REMOTE, to=ALICE):
    """A small RFC 5322 message with CRLF line ends; subject makes it unique.
    It has Date: and Message-ID:, so submission adds neither."""
    head = (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            f"Message-ID: <{subject}@remote.example>\r\n\r\n")
    return head.encode("utf-8") + body


def close_quietly(s):
    try:
        s.quit()
    except Exception:
        try:
            s.close()
        except Exception:
            pass


class SmtpdTest(KotakTestCase):
    CONFIG = BASE_CONFIG

    # --- clients ---------------------------------------------------------

    def port(self, listener):
        return self.kotak.ports[listener]

    def mx(self):
        s = SMTP("127.0.0.1", self.port("smtp"), local_hostname=CLIENT,
                         timeout=SOCKET_TIMEOUT)
        self.addCleanup(close_quietly, s)
        return s

    def submission(self, user=ALICE, password=None, mech=None):
        """587: STARTTLS, EHLO again, then a login (mech forces PLAIN or LOGIN)."""
        s = SMTP("127.0.0.1", self.port("submission"), local_hostname=CLIENT,
                         timeout=SOCKET_TIMEOUT)
        self.addCleanup(close_quietly, s)
        s.ehlo()
        self.assertTrue(s.has_extn("starttls"), "587 does not offer STARTTLS")
        code, _ = s.starttls(context=self.kotak.ssl_context())
        self.assertEqual(code, 220)
        s.ehlo()
        if user is not None:
            self.login(s, user, password if password is not None else PASSWORDS[user], mech)
        return s

    def submissions(self, user=ALICE, mech=None):
        """465: implicit TLS, then a login."""
        s = SMTP_SSL("127.0.0.1", self.port("submissions"), local_hostname=CLIENT,
                             timeout=SOCKET_TIMEOUT, context=self.kotak.ssl_context())
        self.addCleanup(close_quietly, s)
        s.ehlo()
        if user is not None:
            self.login(s, user, PASSWORDS[user], mech)
        return s

    def login(self, s, user, password, mech=None):
        self.assertIn("auth", s.esmtp_features, "AUTH is not offered")
        if mech is not None:
            self.assertIn(mech, s.esmtp_features["auth"].split())
            s.esmtp_features["auth"] = mech   # smtplib then logs in with that one
        return s.login(user, password)

    def raw(self, listener="smtp", ehlo=True, **kw):
        c = RawClient(self.port(listener), **kw)
        self.addCleanup(c.close)
        code, lines = c.reply()
        self.assertEqual(code, 220, lines)
        if ehlo:
            code, lines = c.cmd(f"EHLO {CLIENT}")
            self.assertEqual(code, 250, lines)
        return c

    def raw_tls(self, listener="submission"):
        """587 raw: EHLO, STARTTLS, TLS, EHLO again."""
        c = self.raw(listener)
        code, lines = c.cmd("STARTTLS")
        self.assertEqual(code, 220, lines)
        c.starttls(self.kotak.ssl_context())
        code, lines = c.cmd(f"EHLO {CLIENT}")
        self.assertEqual(code, 250, lines)
        return c

    # --- assertions ------------------------------------------------------

    def assertReply(self, got, code, enhanced=None, text=None):
        """got is (code, lines) or (code, bytes) from smtplib or RawClient."""
        c, msg = got
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        if isinstance(msg, list):
            msg = "\n".join(msg)
        self.assertEqual(c, code, f"expected {code}, got {c} {msg!r}")
        if enhanced is not None:
            self.assertIn(enhanced, msg, f"reply {c} {msg!r} lacks {enhanced}")
        if text is not None:
            self.assertIn(text, msg)

    def split_trace(self, stored):
        """Return-Path line, Received header (folded lines), and the rest;
        the Authentication-Results: field the MX adds is left out."""
        rp, _, received, rest = split_trace(stored)
        return rp, received, rest

    def assertStoredExactly(self, user, sent, sender=REMOTE, n=None, compare=True):
        """The user's last stored message is trace headers + exactly `sent`.
        Returns the Received: field; with compare=False, what follows the
        trace instead, for the caller to check."""
        bodies = self.kotak.bodies(user)
        if n is not None:
            self.assertEqual(len(bodies), n, f"{user} has {len(bodies)} messages, not {n}")
        self.assertTrue(bodies, f"nothing stored for {user}")
        rp, received, rest = self.split_trace(bodies[-1])
        self.assertEqual(rp, f"Return-Path: <{sender}>\r\n".encode("utf-8"))
        if not compare:
            return rest
        self.assertEqual(rest, sent, "the stored message differs from what was sent")
        return received

    def assertNothingStored(self):
        self.assertEqual(self.kotak.count("messages"), 0, "a message was stored")
        self.assertEqual(self.kotak.count("maildrop"), 0, "a maildrop entry was made")

    def stored_with(self, user, tok):
        return [b for b in self.kotak.bodies(user) if tok.encode() in b]


# --- MX: port 25 ----------------------------------------------------------


class MxDeliveryTest(SmtpdTest):
    def test_mx_delivers_to_a_local_user(self):
        tok = token()
        sent = message(tok)
        refused = self.mx().sendmail(REMOTE, [ALICE], sent)
        self.assertEqual(refused, {})
        self.assertStoredExactly(ALICE, sent, n=1)
        self.assertEqual(self.kotak.bodies(BOB), [])
        entries, summary = self.kotak.mailbox_listing(ALICE)
        self.assertEqual(len(entries), 1, summary)
        self.assertEqual(entries[0][2], len(self.kotak.bodies(ALICE)[0]),
                         "kotak mailbox lists another size than the stored message's")

    def test_mx_delivers_a_plus_address_to_the_user(self):
        tok = token()
        sent = message(tok, to="alice+lists@example.test")
        self.assertEqual(self.mx().sendmail(REMOTE, ["alice+lists@example.test"], sent), {})
        received = self.assertStoredExactly(ALICE, sent, n=1)
        self.assertIn(b"for <alice+lists@example.test>", received)

    def test_mx_alias_of_two_users_is_stored_once_with_two_maildrop_entries(self):
        tok = token()
        sent = message(tok, to=SALES)
        self.assertEqual(self.mx().sendmail(REMOTE, [SALES], sent), {})
        self.assertEqual(self.kotak.count("messages"), 1)
        self.assertEqual(self.kotak.count("maildrop"), 2)
        a, b = self.kotak.maildrop(ALICE), self.kotak.maildrop(BOB)
        self.assertEqual(len(a), 1)
        self.assertEqual(len(b), 1)
        self.assertEqual(a[0]["message_id"], b[0]["message_id"])
        self.assertStoredExactly(ALICE, sent)
        self.assertStoredExactly(BOB, sent)

    def test_mx_user_and_alias_to_the_same_user_store_one_copy_each(self):
        tok = token()
        sent = message(tok)
        self.assertEqual(self.mx().sendmail(REMOTE, [ALICE, SALES, "alice+x@example.test"],
                                            sent), {})
        self.assertEqual(len(self.kotak.bodies(ALICE)), 1, "alice got duplicates")
        self.assertEqual(len(self.kotak.bodies(BOB)), 1)
        self.assertEqual(self.kotak.count("messages"), 1)

    def test_mx_catch_all_alias_takes_unknown_local_parts(self):
        self.kotak.kotak("alias", "add", "@example.test", ALICE)
        tok = token()
        sent = message(tok, to="anything@example.test")
        self.assertEqual(self.mx().sendmail(REMOTE, ["anything@example.test"], sent), {})
        self.assertStoredExactly(ALICE, sent, n=1)

    def test_mx_unknown_local_user_is_550_5_1_1_at_rcpt(self):
        s = self.mx()
        s.ehlo()
        self.assertReply(s.mail(REMOTE), 250)
        self.assertReply(s.rcpt("nobody@example.test"), 550, "5.1.1")
        self.assertReply(s.rset(), 250)
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            s.sendmail(REMOTE, ["nobody@example.test"], message(token()))
        code, text = cm.exception.recipients["nobody@example.test"]
        self.assertEqual(code, 550)
        self.assertIn(b"5.1.1", text)
        self.assertNothingStored()

    def test_mx_other_domain_is_550_5_7_1_relay_denied(self):
        s = self.mx()
        s.ehlo()
        self.assertReply(s.mail(REMOTE), 250)
        self.assertReply(s.rcpt("someone@elsewhere.example"), 550, "5.7.1")
        self.assertReply(s.rcpt(ALICE), 250)  # the transaction goes on
        self.assertReply(s.rset(), 250)
        self.assertNothingStored()

    def test_mx_alias_with_a_local_and_an_outside_target_stores_one_and_queues_the_other(self):
        self.kotak.kotak("alias", "add", "mixed@example.test", f"{ALICE},bob@elsewhere.test")
        s = self.mx()
        s.ehlo()
        self.assertReply(s.mail(REMOTE), 250)
        self.assertReply(s.rcpt("mixed@example.test"), 250)
        sent = message(token(), to="mixed@example.test")
        self.assertReply(s.data(sent), 250)
        self.assertStoredExactly(ALICE, sent, n=1)
        # The outside copy waits in the queue (DNS is unreachable here), sent
        # on with an SRS sender of example.test.
        rows = self.kotak.query("SELECT r.address, q.sender FROM queue_rcpt r"
                                " JOIN queue q ON q.id = r.queue_id")
        self.assertEqual([r[0] for r in rows], ["bob@elsewhere.test"])
        self.assertTrue(rows[0][1].startswith("SRS0=") and rows[0][1].endswith("@example.test"),
                        rows)

    def test_mx_null_sender_is_accepted_with_an_empty_return_path(self):
        s = self.mx()
        s.ehlo()
        self.assertReply(s.mail("<>"), 250)
        self.assertReply(s.rcpt(ALICE), 250)
        sent = message(token(), sender="MAILER-DAEMON@remote.example")
        self.assertReply(s.data(sent), 250)
        self.assertStoredExactly(ALICE, sent, sender="", n=1)

    def test_mx_helo_without_ehlo_delivers_and_refuses_esmtp_parameters(self):
        c = self.raw(ehlo=False)
        self.assertReply(c.cmd(f"HELO {CLIENT}"), 250)
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}> SIZE=100"), 555, "5.5.4")
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        sent = message(token())
        c.send(sent + b".\r\n")
        self.assertReply(c.reply(), 250)
        received = self.assertStoredExactly(ALICE, sent, n=1)
        self.assertRegex(received, rb" with SMTP id ")

    def test_mx_ehlo_advertises_the_extensions_and_no_auth(self):
        s = self.mx()
        code, _ = s.ehlo()
        self.assertEqual(code, 250)
        for ext in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes",
                    "starttls"):
            self.assertTrue(s.has_extn(ext), f"EHLO on the MX port lacks {ext.upper()}")
        self.assertFalse(s.has_extn("auth"), "AUTH is offered on the MX port")

    def test_mx_refuses_auth_with_502(self):
        c = self.raw()
        cred = base64.b64encode(f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode()
        self.assertReply(c.cmd(f"AUTH PLAIN {cred}"), 502, "5.5.1")
        self.assertReply(c.cmd("AUTH LOGIN"), 502, "5.5.1")
        # Even after STARTTLS the MX port has no login.
        self.assertReply(c.cmd("STARTTLS"), 220)
        c.starttls(self.kotak.ssl_context())
        code, lines = c.cmd(f"EHLO {CLIENT}")
        self.assertEqual(code, 250)
        self.assertFalse(any("AUTH" in l for l in lines), lines)
        self.assertReply(c.cmd(f"AUTH PLAIN {cred}"), 502, "5.5.1")
        self.assertNotIn("event=login", self.kotak.log())


class MessageContentTest(SmtpdTest):
    def test_stored_message_is_trace_headers_then_the_bytes_sent(self):
        tok = token()
        body = (b"First line.\r\n"
                b".A line that started with a dot.\r\n"
                b".\r\n"
                b"..Two dots.\r\n"
                b"\r\n"
                b"Caf\xc3\xa9 \xff\xfe raw 8-bit octets\r\n"
                b"  leading spaces and a tab\there \r\n"
                b"Last line without a final newline in the source")
        sent = message(tok, body=body) + b"\r\n"
        s = self.mx()
        s.ehlo()
        self.assertReply(s.mail(REMOTE, ["BODY=8BITMIME"]), 250)
        self.assertReply(s.rcpt(ALICE), 250)
        code, resp = s.data(sent)   # smtplib dot-stuffs the lines that start with '.'
        self.assertEqual(code, 250, resp)
        received = self.assertStoredExactly(ALICE, sent, n=1)
        queue_id = re.search(rb"queued as (\S+)", resp)
        self.assertIsNotNone(queue_id, resp)
        text = received.decode()
        self.assertRegex(text, r"^Received: from client\.example\.net \(\[127\.0\.0\.1\]\)\r\n")
        self.assertIn(f"by {HOSTNAME} ", text)
        self.assertRegex(text, r" with ESMTP id ")
        self.assertIn(f"id {queue_id.group(1).decode()}", text)
        self.assertIn(f"for <{ALICE}>", text)
        self.assertRegex(text, r"\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n$")
        for line in received.split(b"\r\n")[:-1]:
            self.assertLessEqual(len(line), 998)

    def test_dot_stuffed_lines_are_unstuffed_on_a_raw_socket(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        head = message(token(), body=b"")
        wire = head + b"..\r\n...\r\n..x\r\nx.\r\n. \r\n"
        want = head + b".\r\n..\r\n.x\r\nx.\r\n \r\n"
        c.send(wire + b".\r\n")
        self.assertReply(c.reply(), 250)
        self.assertStoredExactly(ALICE, want, n=1)

    def test_data_split_at_every_awkward_boundary_is_stored_exactly(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        head = message(token(), body=b"")
        c.send(head)
        # One octet per write around the dots and line ends, so that the
        # server's reads end between CR and LF, after a line-start dot, etc.
        for b in b"a\r\n..b\r\n.\r\n":
            c.send(bytes([b]))
            time.sleep(0.02)
        self.assertReply(c.reply(), 250)
        self.assertStoredExactly(ALICE, head + b"a\r\n.b\r\n", n=1)

    @config(limits={"bare_newline": "reject"})
    def test_bare_lf_in_data_is_550_5_6_0_and_nothing_is_stored_with_reject(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(message(token(), body=b"line one\nline two\r\n") + b".\r\n")
        self.assertReply(c.reply(), 550, "5.6.0")
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertNothingStored()

    def test_bare_cr_in_data_is_550_5_6_0_and_nothing_is_stored(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(message(token(), body=b"line one\rline two\r\n") + b".\r\n")
        self.assertReply(c.reply(), 550, "5.6.0")
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertNothingStored()

    def test_bare_lf_in_data_is_taken_as_crlf_by_default(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        tok = token()
        head = message(tok, body=b"")
        c.send(head.replace(b"\r\n", b"\n") + b"line one\n..dot\nline two\r\n.\r\n")
        self.assertReply(c.reply(), 250, "2.0.0")
        self.assertStoredExactly(ALICE, head + b"line one\r\n.dot\r\nline two\r\n", n=1)

    def test_smtplib_sendmail_of_a_message_with_lf_line_ends_is_stored(self):
        # msg.as_bytes() has LF line ends; smtplib sends bytes as they are.
        tok = token()
        sent = message(tok).replace(b"\r\n", b"\n") + b".starts with a dot\nlast\n"
        s = self.mx()
        self.assertEqual(s.sendmail(REMOTE, [ALICE], sent), {})
        # smtplib ends the data with CRLF "." CRLF, after an empty line of its own.
        self.assertStoredExactly(ALICE, sent.replace(b"\n", b"\r\n") + b"\r\n", n=1)

    def smuggle(self, end, refused=True):
        """A message whose body holds `end` (a line end that is not CRLF around a
        dot) followed by a whole second transaction: only <CRLF>.<CRLF> ends DATA,
        so all of it is one message: refused for its bare line ends, or (a bare LF
        taken as CRLF) stored once for alice with the would-be transaction as text."""
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        smuggled = (end + b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.test>\r\n"
                    b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
        c.send(message(token(), body=b"innocent") + smuggled)
        code, lines = c.reply()
        self.assertEqual(code, 550 if refused else 250, f"{end!r} ended DATA: {lines}")
        self.assertIn("5.6.0" if refused else "2.0.0", lines[0])
        # The next reply is our NOOP's: no reply to a smuggled command in between.
        self.assertEqual(c.cmd("NOOP"), (250, ["250 2.0.0 Ok"]))
        closed, extra = c.read_until_closed(0.5)
        self.assertEqual(extra, b"", "replies to smuggled commands arrived")
        self.assertEqual(self.kotak.bodies(BOB), [], "a smuggled message reached bob")
        if refused:
            self.assertNothingStored()
            return
        stored = self.kotak.bodies(ALICE)
        self.assertEqual(len(stored), 1, "two messages from one DATA")
        self.assertEqual(self.kotak.count("messages"), 1)
        self.assertTrue(stored[0].endswith(
            b"innocent\r\n\r\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.test>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n"), stored[0])

    @config(limits={"bare_newline": "reject"})
    def test_smtp_smuggling_with_lf_dot_crlf_is_refused_and_nothing_is_injected(self):
        self.smuggle(b"\n.\r\n")

    @config(limits={"bare_newline": "reject"})
    def test_smtp_smuggling_with_crlf_dot_lf_is_refused_and_nothing_is_injected(self):
        self.smuggle(b"\r\n.\n")

    @config(limits={"bare_newline": "reject"})
    def test_smtp_smuggling_with_lf_dot_lf_is_refused_and_nothing_is_injected(self):
        self.smuggle(b"\n.\n")

    def test_smtp_smuggling_with_lf_dot_crlf_normalized_stays_one_message(self):
        self.smuggle(b"\n.\r\n", refused=False)

    def test_smtp_smuggling_with_crlf_dot_lf_normalized_stays_one_message(self):
        self.smuggle(b"\r\n.\n", refused=False)

    def test_smtp_smuggling_with_lf_dot_lf_normalized_stays_one_message(self):
        self.smuggle(b"\n.\n", refused=False)

    @config(limits={"bare_newline": "reject"})
    def test_smtp_smuggling_with_cr_dot_crlf_is_refused_with_reject_too(self):
        self.smuggle(b"\r.\r\n")

    def test_smtp_smuggling_with_cr_dot_crlf_is_refused_and_nothing_is_injected(self):
        self.smuggle(b"\r.\r\n")

    def test_text_line_longer_than_1000_octets_is_refused_and_nothing_is_stored(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(message(token(), body=b"x" * 1200 + b"\r\n") + b".\r\n")
        self.assertReply(c.reply(), 550, "5.6.0")
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertNothingStored()

    def test_text_line_of_999_octets_is_refused(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(message(token(), body=b"x" * 999 + b"\r\n") + b".\r\n")
        self.assertReply(c.reply(), 550, "5.6.0")
        self.assertNothingStored()

    def test_text_line_of_998_octets_is_accepted(self):
        s = self.mx()
        sent = message(token(), body=b"y" * 998 + b"\r\n")
        self.assertEqual(s.sendmail(REMOTE, [ALICE], sent), {})
        self.assertStoredExactly(ALICE, sent, n=1)

    def test_pipelined_mail_rcpt_rcpt_data_in_one_write_get_all_replies(self):
        c = self.raw()
        code, lines = c.cmd(f"EHLO {CLIENT}")
        self.assertIn("250-PIPELINING", lines)
        c.send(f"MAIL FROM:<{REMOTE}>\r\nRCPT TO:<{ALICE}>\r\nRCPT TO:<nobody@example.test>\r\n"
               f"RCPT TO:<{BOB}>\r\nDATA\r\n")
        got = c.replies(5)
        self.assertEqual([g[0] for g in got], [250, 250, 550, 250, 354], got)
        sent = message(token())
        c.send(sent + b".\r\nNOOP\r\nQUIT\r\n")
        self.assertReply(c.reply(), 250, "2.0.0")
        self.assertReply(c.reply(), 250)
        self.assertReply(c.reply(), 221)
        closed, _ = c.read_until_closed(5)
        self.assertTrue(closed)
        self.assertStoredExactly(ALICE, sent, n=1)
        self.assertStoredExactly(BOB, sent, n=1)

    def test_pipelined_transactions_back_to_back_are_each_stored(self):
        c = self.raw()
        wire = b""
        sents = []
        for i in range(5):
            sent = message(token())
            sents.append(sent)
            wire += f"MAIL FROM:<{REMOTE}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n".encode()
            wire += sent + b".\r\n"
        # DATA ends a pipeline group for a careful client; the server must cope anyway.
        c.send(wire + b"QUIT\r\n")
        codes = [c.reply()[0] for _ in range(5 * 4 + 1)]
        self.assertEqual(codes, [250, 250, 354, 250] * 5 + [221], codes)
        stored = [self.split_trace(b)[2] for b in self.kotak.bodies(ALICE)]
        self.assertEqual(stored, sents)

    def test_client_that_half_closes_after_quit_still_gets_250_and_221(self):
        # The end of the client's stream arrives while the message is being
        # committed; what came before it is still answered.
        c = self.raw()
        c.send(f"MAIL FROM:<{REMOTE}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n")
        self.assertEqual([g[0] for g in c.replies(3)], [250, 250, 354])
        sent = message(token())
        c.send(sent + b".\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        self.assertReply(c.reply(), 250, "2.0.0")
        self.assertReply(c.reply(), 221)
        closed, _ = c.read_until_closed(5)
        self.assertTrue(closed)
        self.assertStoredExactly(ALICE, sent, n=1)

    def test_client_that_half_closes_mid_command_gets_no_reply_to_it(self):
        c = self.raw()
        c.send(f"MAIL FROM:<{REMOTE}>\r\nRCPT TO:<{ALICE}>")
        c.sock.shutdown(socket.SHUT_WR)
        self.assertReply(c.reply(), 250)
        closed, rest = c.read_until_closed(5)
        self.assertTrue(closed)
        self.assertEqual(rest, b"")
        self.assertNothingStored()


class SmtpUtf8Test(SmtpdTest):
    def test_smtputf8_unknown_utf8_local_part_is_550(self):
        s = self.mx()
        s.ehlo()
        self.assertTrue(s.has_extn("smtputf8"))
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            s.sendmail(REMOTE, ["jörg@example.test"], message(token()),
                       mail_options=["SMTPUTF8"])
        code, text = cm.exception.recipients["jörg@example.test"]
        self.assertEqual(code, 550)
        self.assertIn(b"5.1.1", text)
        self.assertNothingStored()

    def test_smtputf8_sender_with_ascii_recipient_is_delivered(self):
        s = self.mx()
        sender = "jörg@bücher.example"
        sent = message(token(), sender=sender)
        self.assertEqual(s.sendmail(sender, [ALICE], sent, mail_options=["SMTPUTF8"]), {})
        received = self.assertStoredExactly(ALICE, sent, sender=sender, n=1)
        self.assertIn(b"UTF8SMTP", received)

    def test_utf8_address_without_smtputf8_is_553_5_6_7(self):
        c = self.raw()
        self.assertReply(c.cmd("MAIL FROM:<jörg@remote.example>"), 553, "5.6.7")
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd("RCPT TO:<jörg@example.test>"), 553, "5.6.7")
        self.assertReply(c.cmd("RSET"), 250)
        self.assertNothingStored()


class SizeTest(SmtpdTest):
    LIMIT = 64 * 1024

    def test_ehlo_advertises_the_configured_size_limit(self):
        s = self.mx()
        s.ehlo()
        self.assertEqual(s.esmtp_features.get("size"), str(self.LIMIT))

    def test_mail_with_declared_size_above_the_limit_is_552_5_3_4(self):
        s = self.mx()
        s.ehlo()
        self.assertReply(s.mail(REMOTE, [f"SIZE={self.LIMIT + 1}"]), 552, "5.3.4")
        self.assertReply(s.mail(REMOTE, [f"SIZE={self.LIMIT}"]), 250)
        self.assertReply(s.rset(), 250)
        self.assertReply(s.mail(REMOTE, ["SIZE=99999999999999999999999"]), 501)

    def _data_of_size(self, n):
        head = message(token(), body=b"")
        line = b"z" * 78 + b"\r\n"
        body = b""
        while len(head) + len(body) + len(line) <= n - 2:
            body += line
        rest = n - len(head) - len(body) - 2
        return head + body + b"q" * rest + b"\r\n"

    def test_message_larger_than_message_size_is_552_5_3_4_after_the_dot(self):
        s = self.mx()
        s.ehlo()
        self.assertReply(s.mail(REMOTE), 250)   # no SIZE declared
        self.assertReply(s.rcpt(ALICE), 250)
        code, resp = s.data(self._data_of_size(self.LIMIT + 1))
        self.assertEqual(code, 552, resp)
        self.assertIn(b"5.3.4", resp)
        self.assertReply(s.noop(), 250)
        self.assertNothingStored()

    def test_message_of_exactly_message_size_is_accepted(self):
        sent = self._data_of_size(self.LIMIT)
        self.assertEqual(len(sent), self.LIMIT)
        s = self.mx()
        s.ehlo()
        self.assertReply(s.mail(REMOTE), 250)
        self.assertReply(s.rcpt(ALICE), 250)
        code, resp = s.data(sent)
        self.assertEqual(code, 250, resp)
        self.assertStoredExactly(ALICE, sent, n=1)

    @config(limits={"message_size": "10M", "spool_memory": "64K"})
    def test_5_mib_message_above_spool_memory_is_stored_byte_exact(self):
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
        self.assertGreater(len(sent), 5 * 1024 * 1024)
        s = self.mx()
        self.assertEqual(s.sendmail(REMOTE, [ALICE, BOB], sent), {})
        self.assertStoredExactly(ALICE, sent, n=1)
        self.assertEqual(self.kotak.count("messages"), 1)
        md = self.kotak.maildrop(ALICE)[0]
        self.assertEqual(md["size"], len(md["body"]))
        self.assertEqual(md["message_size"], len(md["body"]))
        leftovers = [f for f in os.listdir(self.kotak.data_dir)
                     if f not in ("kotak.db", "kotak.db-wal", "kotak.db-shm", "cert.pem",
                                  "key.pem", "login-failures", "watch", "kotak.db-daemons")]
        self.assertEqual(leftovers, [], "the spool left files behind")


# --- submission: 587 and 465 ----------------------------------------------


class SubmissionTest(SmtpdTest):
    def test_587_starttls_auth_plain_delivers(self):
        s = self.submission(mech="PLAIN")
        sent = message(token(), sender=ALICE, to=BOB)
        self.assertEqual(s.sendmail(ALICE, [BOB], sent), {})
        received = self.assertStoredExactly(BOB, sent, sender=ALICE, n=1)
        self.assertIn(b" with ESMTPSA id ", received)
        self.assertIn(b"TLSv1.", received)

    def test_587_starttls_auth_login_delivers(self):
        s = self.submission(mech="LOGIN")
        sent = message(token(), sender=ALICE, to=BOB)
        self.assertEqual(s.sendmail(ALICE, [BOB], sent), {})
        self.assertStoredExactly(BOB, sent, sender=ALICE, n=1)

    def test_auth_login_without_initial_response_and_plain_cancelled(self):
        c = self.raw_tls()
        self.assertReply(c.cmd("AUTH PLAIN"), 334)
        self.assertReply(c.cmd("*"), 501)
        code, lines = c.cmd("AUTH LOGIN")
        self.assertEqual(code, 334, lines)
        self.assertEqual(base64.b64decode(lines[0][4:]).lower(), b"username:")
        code, lines = c.cmd(base64.b64encode(ALICE.encode()).decode())
        self.assertEqual(code, 334, lines)
        self.assertEqual(base64.b64decode(lines[0][4:]).lower(), b"password:")
        self.assertReply(c.cmd(base64.b64encode(PASSWORDS[ALICE].encode()).decode()),
                         235, "2.7.0")
        self.assertReply(c.cmd(f"MAIL FROM:<{ALICE}>"), 250)

    def test_ehlo_after_starttls_offers_auth_plain_login_and_no_starttls(self):
        s = self.submission(user=None)
        self.assertEqual(sorted(s.esmtp_features["auth"].split()), ["LOGIN", "PLAIN"])
        self.assertFalse(s.has_extn("starttls"))

    def test_465_implicit_tls_login_delivers(self):
        for mech in ("PLAIN", "LOGIN"):
            s = self.submissions(mech=mech)
            self.assertFalse(s.has_extn("starttls"), "465 offers STARTTLS")
            sent = message(token(), sender=ALICE, to=BOB)
            self.assertEqual(s.sendmail(ALICE, [BOB], sent), {})
            received = self.assertStoredExactly(BOB, sent, sender=ALICE)
            self.assertIn(b" with ESMTPSA id ", received)
        self.assertEqual(len(self.kotak.bodies(BOB)), 2)

    def test_465_starttls_is_refused(self):
        c = self.raw("submissions", tls_context=self.kotak.ssl_context())
        self.assertReply(c.cmd("STARTTLS"), 502, "5.5.1")

    def test_mail_before_auth_is_530_5_7_0(self):
        s = self.submission(user=None)
        self.assertReply(s.mail(ALICE), 530, "5.7.0")
        s2 = self.submissions(user=None)
        self.assertReply(s2.mail(ALICE), 530, "5.7.0")
        self.assertNothingStored()

    def test_mail_from_another_user_is_553_5_7_1(self):
        s = self.submission()
        self.assertReply(s.mail(BOB), 553, "5.7.1")
        self.assertReply(s.mail("stranger@remote.example"), 553, "5.7.1")
        self.assertReply(s.mail(ALICE), 250)
        self.assertReply(s.rset(), 250)

    def test_mail_from_an_alias_or_plus_address_of_the_user_is_accepted(self):
        s = self.submission()
        self.assertReply(s.mail(SALES), 250)
        self.assertReply(s.rset(), 250)
        self.assertReply(s.mail("alice+tag@example.test"), 250)
        self.assertReply(s.rcpt(BOB), 250)
        sent = message(token(), sender="alice+tag@example.test", to=BOB)
        self.assertReply(s.data(sent), 250)
        self.assertStoredExactly(BOB, sent, sender="alice+tag@example.test", n=1)

    def test_mail_for_another_domain_is_queued_and_an_unknown_local_user_is_550(self):
        s = self.submission()
        self.assertReply(s.mail(ALICE), 250)
        self.assertReply(s.rcpt("friend@elsewhere.example"), 250, "2.1.5")
        self.assertReply(s.rcpt("nobody@example.test"), 550, "5.1.1")
        self.assertReply(s.rcpt("bob@[192.0.2.1]"), 550, "5.1.2")
        self.assertReply(s.data(b"Subject: out\r\n\r\nout\r\n"), 250)
        # Queued (DNS is unreachable here: it waits), and in no local maildrop.
        self.assertEqual(self.kotak.query("SELECT address, state FROM queue_rcpt"),
                         [("friend@elsewhere.example", 0)])
        self.assertEqual(self.kotak.count("maildrop"), 0)

    def test_wrong_password_is_535_5_7_8_after_the_failure_delay(self):
        s = self.submission(user=None)
        start = time.monotonic()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            self.login(s, ALICE, "not-the-password", "PLAIN")
        elapsed = time.monotonic() - start
        self.assertEqual(cm.exception.smtp_code, 535)
        self.assertIn(b"5.7.8", cm.exception.smtp_error)
        self.assertGreaterEqual(elapsed, 0.3, "the failure was answered before failure_delay")
        self.assertLess(elapsed, 5)
        # The session goes on: the right password now works.
        self.assertReply(self.login(s, ALICE, PASSWORDS[ALICE], "PLAIN"), 235)

    def test_unknown_user_and_wrong_password_look_the_same(self):
        replies, times = [], []
        for user in (ALICE, "nobody@example.test"):
            c = self.raw_tls()
            cred = base64.b64encode(f"\0{user}\0wrong-password".encode()).decode()
            start = time.monotonic()
            replies.append(c.cmd(f"AUTH PLAIN {cred}"))
            times.append(time.monotonic() - start)
        self.assertEqual(replies[0], replies[1])
        self.assertReply(replies[0], 535, "5.7.8")
        for t in times:
            self.assertGreaterEqual(t, 0.3)
        self.assertLess(abs(times[0] - times[1]), 0.3, f"timings differ: {times}")

    @config(auth={"failure_delay": "1500ms"})
    def test_failure_delay_blocks_no_other_session(self):
        c = self.raw_tls()
        cred = base64.b64encode(f"\0{ALICE}\0wrong".encode()).decode()
        start = time.monotonic()
        c.send(f"AUTH PLAIN {cred}\r\n")
        other = self.raw("smtp")
        t0 = time.monotonic()
        self.assertReply(other.cmd("NOOP"), 250)
        s = self.mx()
        self.assertEqual(s.sendmail(REMOTE, [BOB], message(token())), {})
        self.assertLess(time.monotonic() - t0, 1.0, "another session waited on the delay")
        self.assertReply(c.reply(), 535, "5.7.8")
        self.assertGreaterEqual(time.monotonic() - start, 1.5)

    @config(auth={"max_failures": "3", "failure_delay": "200ms"})
    def test_lockout_after_max_failures_even_with_the_right_password_is_454_4_7_0(self):
        for i in range(3):
            s = self.submission(user=None)
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                self.login(s, ALICE, f"wrong-{i}", "PLAIN")
            self.assertEqual(cm.exception.smtp_code, 535)
        s = self.submission(user=None)
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            self.login(s, ALICE, PASSWORDS[ALICE], "PLAIN")
        self.assertEqual(cm.exception.smtp_code, 454, cm.exception)
        self.assertIn(b"4.7.0", cm.exception.smtp_error)
        s2 = self.submissions(user=None)   # the other port is locked too
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            self.login(s2, ALICE, PASSWORDS[ALICE], "LOGIN")
        self.assertEqual(cm.exception.smtp_code, 454)
        # The lockout is alice's from this address, not everyone's there.
        s3 = self.submission(user=None)
        self.assertReply(self.login(s3, BOB, PASSWORDS[BOB], "PLAIN"), 235)
        self.assertTrue(self.kotak.wait_log(r"result=locked"), self.kotak.log())

    def test_plaintext_auth_is_allowed_from_loopback(self):
        s = SMTP("127.0.0.1", self.port("submission"), local_hostname=CLIENT,
                         timeout=SOCKET_TIMEOUT)
        self.addCleanup(close_quietly, s)
        s.ehlo()
        self.assertReply(self.login(s, ALICE, PASSWORDS[ALICE], "PLAIN"), 235)
        sent = message(token(), sender=ALICE, to=BOB)
        self.assertEqual(s.sendmail(ALICE, [BOB], sent), {})
        received = self.assertStoredExactly(BOB, sent, sender=ALICE, n=1)
        self.assertIn(b" with ESMTPA id ", received)

    def test_plain_with_a_foreign_authzid_is_535_after_the_failure_delay(self):
        c = self.raw_tls()
        cred = base64.b64encode(f"{BOB}\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode()
        start = time.monotonic()
        self.assertReply(c.cmd(f"AUTH PLAIN {cred}"), 535, "5.7.8")
        # Every failed login is answered late (issue 3, Login), this one too.
        self.assertGreaterEqual(time.monotonic() - start, 0.3)

    def test_a_new_password_takes_effect_at_once_despite_the_login_cache(self):
        # The first login passes the full check and is remembered ([auth] cache).
        self.submission(user=ALICE).quit()
        p = self.kotak.kotak("user", "passwd", ALICE, "--password-stdin",
                             input="a-new-password\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        s = self.submission(user=None)
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            self.login(s, ALICE, PASSWORDS[ALICE], "PLAIN")
        self.assertEqual(cm.exception.smtp_code, 535)
        s = self.submission(user=None)
        code, _ = self.login(s, ALICE, "a-new-password", "PLAIN")
        self.assertEqual(code, 235)

    def test_a_remembered_login_does_not_let_a_wrong_password_in(self):
        self.submission(user=ALICE).quit()
        s = self.submission(user=None)
        start = time.monotonic()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            self.login(s, ALICE, PASSWORDS[ALICE] + "x", "PLAIN")
        self.assertEqual(cm.exception.smtp_code, 535)
        self.assertGreaterEqual(time.monotonic() - start, 0.3)

    def test_the_longest_password_kotak_user_add_takes_can_log_in(self):
        password = "Long-" + "p4ss" * 62 + "xy"    # 255 characters, the most either takes
        self.assertEqual(len(password), 255)
        p = self.kotak.kotak("user", "add", "carol@example.test", "--password-stdin",
                             input=password + "\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        s = self.submission(user=None)
        code, resp = self.login(s, "carol@example.test", password, "PLAIN")
        self.assertEqual(code, 235, resp)

    def test_kotak_user_add_refuses_a_password_no_login_could_carry(self):
        p = self.kotak.kotak("user", "add", "carol@example.test", "--password-stdin",
                             input="x" * 256 + "\n", check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("longer than 255", p.stderr)

    def test_second_auth_is_503(self):
        s = self.submission()
        code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(
            f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode())
        self.assertEqual(code, 503)


# --- STARTTLS -------------------------------------------------------------


class StartTlsTest(SmtpdTest):
    def test_starttls_plaintext_injection_is_discarded(self):
        c = self.raw("submission")
        c.send(b"STARTTLS\r\nRSET\r\n")
        self.assertReply(c.reply(), 220, "2.0.0")
        c.starttls(self.kotak.ssl_context())
        code, lines = c.cmd(f"EHLO {CLIENT}")
        self.assertEqual(code, 250, lines)
        self.assertTrue(lines[0].startswith("250-") and HOSTNAME in lines[0],
                        f"the first reply inside TLS is not our EHLO's: {lines}")
        self.assertReply(c.cmd("NOOP"), 250)
        closed, extra = c.read_until_closed(0.5)
        self.assertEqual(extra, b"", "a reply to the injected command arrived")

    def test_starttls_injection_on_the_mx_port_is_discarded(self):
        c = self.raw("smtp")
        c.send(f"STARTTLS\r\nMAIL FROM:<{REMOTE}>\r\n".encode())
        self.assertReply(c.reply(), 220)
        c.starttls(self.kotak.ssl_context())
        code, lines = c.cmd(f"EHLO {CLIENT}")
        self.assertTrue(lines[0].startswith("250-"), lines)
        # Had the MAIL been run, this would be 503 (transaction open).
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)

    def test_starttls_resets_the_session(self):
        c = self.raw("submission")
        cred = base64.b64encode(f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode()
        self.assertReply(c.cmd(f"AUTH PLAIN {cred}"), 235)   # plaintext, allowed on loopback
        self.assertReply(c.cmd("STARTTLS"), 220)
        c.starttls(self.kotak.ssl_context())
        self.assertReply(c.cmd(f"MAIL FROM:<{ALICE}>"), 503, "5.5.1")  # no EHLO after TLS
        code, lines = c.cmd(f"EHLO {CLIENT}")
        self.assertEqual(code, 250)
        self.assertIn("250-AUTH PLAIN LOGIN", lines, "the login survived STARTTLS")
        self.assertReply(c.cmd(f"MAIL FROM:<{ALICE}>"), 530, "5.7.0")

    def test_starttls_inside_a_transaction_is_refused(self):
        c = self.raw("smtp")
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1")
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)

    def test_second_starttls_is_refused(self):
        c = self.raw_tls("submission")
        self.assertReply(c.cmd("STARTTLS"), 502, "5.5.1")

    def test_tls_is_1_2_or_later_with_an_aead_cipher(self):
        ctx = self.kotak.ssl_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with self.assertRaises((ssl.SSLError, OSError)):
            with socket.create_connection(("127.0.0.1", self.port("submissions")),
                                          timeout=SOCKET_TIMEOUT) as raw:
                with ctx.wrap_socket(raw, server_hostname=HOSTNAME) as t:
                    t.recv(100)
        c = self.raw("submissions", tls_context=self.kotak.ssl_context())
        version = c.sock.version()
        cipher = c.sock.cipher()[0]
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
        self.assertTrue("GCM" in cipher or "CHACHA20" in cipher or "CCM" in cipher, cipher)


# --- limits ---------------------------------------------------------------


class LimitsTest(SmtpdTest):
    @config(limits={"recipients": "100"})
    def test_101st_recipient_is_452_4_5_3(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        c.send(b"".join(f"RCPT TO:<alice+{i}@example.test>\r\n".encode() for i in range(101)))
        got = c.replies(101)
        self.assertEqual([g[0] for g in got[:100]], [250] * 100)
        self.assertReply(got[100], 452, "4.5.3")
        self.assertReply(c.cmd("DATA"), 354)
        sent = message(token())
        c.send(sent + b".\r\n")
        self.assertReply(c.reply(), 250)
        self.assertStoredExactly(ALICE, sent, n=1)

    def test_overlong_command_line_is_500_5_5_0_and_the_session_goes_on(self):
        c = self.raw()
        self.assertReply(c.cmd("NOOP " + "x" * 505), 250)   # 512 octets with CRLF: the limit
        self.assertReply(c.cmd("NOOP " + "x" * 506), 500, "5.5.0")
        self.assertReply(c.cmd("NOOP " + "x" * 595), 500, "5.5.0")
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}> " + "X" * 600), 500, "5.5.0")
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)

    def test_tail_of_a_very_long_line_never_becomes_a_command(self):
        c = self.raw()
        c.send(b"A" * 13000)         # past every buffer: refused before its end
        self.assertReply(c.reply(), 500, "5.5.0")
        c.send(b"QUIT\r\n")          # the end of that same line, not a command
        self.assertReply(c.cmd("NOOP"), 250)
        c.send(b"B" * 600)
        time.sleep(0.1)
        c.send(b" QUIT\r\n")
        self.assertReply(c.reply(), 500, "5.5.0")
        self.assertReply(c.cmd("NOOP"), 250)

    @config(limits={"bad_commands": "3"})
    def test_bad_commands_limit_ends_with_421_and_close(self):
        c = self.raw()
        self.assertReply(c.cmd("XYZZY"), 500, "5.5.2")
        self.assertReply(c.cmd("PLUGH"), 500, "5.5.2")
        c.send(b"FROBOZZ\r\n")
        codes = []
        for _ in range(2):
            try:
                codes.append(c.reply())
            except EOFError:
                break
            if codes[-1][0] == 421:
                break
        self.assertTrue(codes and codes[-1][0] == 421, f"no 421 after the third error: {codes}")
        self.assertReply(codes[-1], 421, "4.7.0")
        closed, _ = c.read_until_closed(5)
        self.assertTrue(closed, "the connection stayed open after 421")

    def test_nul_in_a_command_is_500(self):
        c = self.raw()
        self.assertReply(c.cmd(b"NO\x00OP"), 500, "5.5.2")
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}\x00>"), 500, "5.5.2")
        self.assertReply(c.cmd("NOOP"), 250)

    def test_bare_lf_and_bare_cr_in_a_command_are_500(self):
        c = self.raw()
        c.send(b"NOOP\n")
        self.assertReply(c.reply(), 500, "5.5.2")
        c.send(b"NOOP\rRSET\r\n")
        self.assertReply(c.reply(), 500, "5.5.2")
        self.assertReply(c.cmd("NOOP"), 250)

    @config(limits={"idle_timeout": "2s"})
    def test_idle_timeout_is_421_4_4_2_and_close(self):
        c = self.raw()
        start = time.monotonic()
        closed, got = c.read_until_closed(8)
        elapsed = time.monotonic() - start
        self.assertTrue(closed, "the idle connection was not closed")
        self.assertRegex(got.decode(errors="replace"), r"^421 4\.4\.2 ")
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 6)

    @config(limits={"idle_timeout": "2s"})
    def test_idle_timeout_applies_inside_data_too(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: half a message\r\n")
        closed, got = c.read_until_closed(8)
        self.assertTrue(closed)
        self.assertIn(b"421 4.4.2", got)
        self.assertNothingStored()

    @config(limits={"tls_handshake_timeout": "2s", "idle_timeout": "30s"})
    def test_tls_handshake_timeout_closes_a_silent_connection_while_others_are_served(self):
        silent = socket.create_connection(("127.0.0.1", self.port("submissions")),
                                          timeout=SOCKET_TIMEOUT)
        self.addCleanup(silent.close)
        start = time.monotonic()
        s = self.submissions()
        sent = message(token(), sender=ALICE, to=BOB)
        self.assertEqual(s.sendmail(ALICE, [BOB], sent), {})
        self.assertLess(time.monotonic() - start, 2, "the other client waited")
        silent.settimeout(8)
        try:
            data = silent.recv(100)
        except (ConnectionResetError, socket.timeout) as e:
            data = e
        elapsed = time.monotonic() - start
        self.assertEqual(data, b"", f"the silent connection was not closed: {data!r}")
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 5)
        self.assertStoredExactly(BOB, sent, sender=ALICE, n=1)

    @config(limits={"tls_handshake_timeout": "2s", "idle_timeout": "30s"})
    def test_tls_handshake_timeout_after_starttls(self):
        c = self.raw("submission")
        self.assertReply(c.cmd("STARTTLS"), 220)
        start = time.monotonic()
        closed, got = c.read_until_closed(8)
        elapsed = time.monotonic() - start
        self.assertTrue(closed)
        self.assertLess(elapsed, 5)
        self.assertGreaterEqual(elapsed, 1.5)

    @config(limits={"connections_per_address": "3"})
    def test_fourth_connection_from_one_address_is_421_4_7_0_and_closed(self):
        conns = [self.raw(ehlo=False) for _ in range(3)]
        c4 = RawClient(self.port("smtp"))
        self.addCleanup(c4.close)
        closed, got = c4.read_until_closed(5)
        self.assertTrue(closed, "the 4th connection stayed open")
        self.assertRegex(got.decode(errors="replace"), r"^421 4\.7\.0 ")
        # Another address is still welcome (127.0.0.2 is loopback too).
        try:
            other = RawClient(self.port("smtp"), source="127.0.0.2")
        except OSError as e:
            other = None
            print(f"# 127.0.0.2 not usable as a source address: {e}")
        if other is not None:
            self.addCleanup(other.close)
            self.assertReply(other.reply(), 220)
        # One leaves: a new one from the first address is accepted again.
        self.assertReply(conns[0].cmd("QUIT"), 221)
        conns[0].read_until_closed(5)
        deadline = time.monotonic() + 5
        while True:
            c = RawClient(self.port("smtp"))
            self.addCleanup(c.close)
            code, lines = c.reply()
            if code == 220 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(code, 220, lines)
        # The ones still open were not disturbed.
        self.assertReply(conns[1].cmd("NOOP"), 250)

    @config(limits={"connections": "2", "connections_per_address": "100"})
    def test_connections_in_total_are_limited(self):
        a = self.raw(ehlo=False)
        b = self.raw("submission", ehlo=False)
        c = RawClient(self.port("smtp"))
        self.addCleanup(c.close)
        closed, got = c.read_until_closed(5)
        self.assertTrue(closed)
        self.assertRegex(got.decode(errors="replace"), r"^421 4\.7\.0 ")
        self.assertReply(a.cmd("NOOP"), 250)
        self.assertReply(b.cmd("NOOP"), 250)


# --- the other commands ---------------------------------------------------


class CommandsTest(SmtpdTest):
    def test_vrfy_is_252_for_users_and_strangers_alike(self):
        c = self.raw()
        known = c.cmd(f"VRFY {ALICE}")
        unknown = c.cmd("VRFY nobody@example.test")
        self.assertReply(known, 252, "2.")
        self.assertEqual(known, unknown)

    def test_help_is_214(self):
        c = self.raw()
        self.assertReply(c.cmd("HELP"), 214)

    def test_quit_is_221_and_close(self):
        c = self.raw()
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0")
        closed, extra = c.read_until_closed(5)
        self.assertTrue(closed)
        self.assertEqual(extra, b"")

    def test_rset_ends_the_transaction(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("RSET"), 250)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 503, "5.5.1")

    def test_commands_out_of_order_are_503(self):
        c = self.raw(ehlo=False)
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 503, "5.5.1")
        self.assertReply(c.cmd(f"EHLO {CLIENT}"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 503, "5.5.1")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 503, "5.5.1")
        self.assertReply(c.cmd("RCPT TO:<nobody@example.test>"), 550)
        self.assertReply(c.cmd("DATA"), 554)

    def test_every_reply_after_the_greeting_has_an_enhanced_status_code(self):
        c = self.raw(ehlo=False)
        script = ["NOOP", f"EHLO {CLIENT}", "HELP", f"VRFY {ALICE}", "EXPN sales",
                  "XYZZY", "MAIL FROM:bad", f"MAIL FROM:<{REMOTE}>",
                  "RCPT TO:<nobody@example.test>", "RCPT TO:<x@elsewhere.example>",
                  f"RCPT TO:<{ALICE}>", "RCPT TO:<a@b@c>", "STARTTLS", "RSET", "DATA",
                  "AUTH PLAIN", "EHLO", "QUIT"]
        for line in script:
            code, lines = c.cmd(line)
            last = lines[-1]
            if line.startswith("EHLO") and code == 250:
                continue   # RFC 2034: EHLO's reply carries no enhanced code
            self.assertRegex(last, ENHANCED, f"{line!r} -> {lines!r}")

    def listen_also_on_ipv6(self):
        port = free_ports(1, "::1")[0]
        self.kotak.stop()
        with open(self.kotak.conf) as f:
            text = f.read()
        text = re.sub(r"(\[smtp\][^\n]*\nlisten = )([^\n]*)",
                      lambda m: f"{m.group(1)}{m.group(2)}, [::1]:{port}", text)
        with open(self.kotak.conf, "w") as f:
            f.write(text)
        self.kotak.start()
        return port

    def deliver_over_ipv6(self):
        port = self.listen_also_on_ipv6()
        s = SMTP("::1", port, local_hostname=CLIENT, timeout=SOCKET_TIMEOUT)
        self.addCleanup(close_quietly, s)
        sent = message(token())
        self.assertEqual(s.sendmail(REMOTE, [ALICE], sent), {})
        return self.assertStoredExactly(ALICE, sent, n=1)

    @unittest.skipUnless(ipv6_loopback_available(), "no IPv6 loopback here")
    def test_ipv6_listener_delivers(self):
        received = self.deliver_over_ipv6()
        self.assertIn(b"::1", received)
        # The IPv4 listener of the same list still works.
        self.assertEqual(self.mx().sendmail(REMOTE, [BOB], message(token())), {})

    @unittest.skipUnless(ipv6_loopback_available(), "no IPv6 loopback here")
    def test_received_header_names_an_ipv6_peer_as_an_ipv6_address_literal(self):
        received = self.deliver_over_ipv6()
        # RFC 5321 4.4 TCP-info is an address-literal; for IPv6 that is [IPv6:...] (4.1.3).
        self.assertIn(b"([IPv6:::1])", received)


# --- real clients: curl and swaks -----------------------------------------


def tool(name):
    path = shutil.which(name)
    if path is None:
        raise unittest.SkipTest(f"{name} is not installed (Debian package {name})")
    return path


class ToolsTest(SmtpdTest):
    def run_tool(self, argv, input=None):
        p = subprocess.run(argv, input=input, capture_output=True, timeout=TOOL_TIMEOUT,
                           stdin=None if input is not None else subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, f"{argv[0]} failed ({p.returncode}):\n"
                         f"{p.stdout.decode(errors='replace')}\n"
                         f"{p.stderr.decode(errors='replace')}")
        return p

    def upload_file(self, sent):
        path = os.path.join(self.kotak.dir, f"upload-{token()}.eml")
        with open(path, "wb") as f:
            f.write(sent)
        return path

    def curl(self, url_scheme, listener, sender, rcpt, sent, *extra):
        curl = tool("curl")
        port = self.port(listener)
        return self.run_tool([
            curl, "--silent", "--show-error", "--max-time", "20",
            "--url", f"{url_scheme}://{HOSTNAME}:{port}/{CLIENT}",
            "--resolve", f"{HOSTNAME}:{port}:127.0.0.1",
            "--mail-from", sender, "--mail-rcpt", rcpt,
            "--upload-file", self.upload_file(sent), *extra])

    def test_curl_mx_delivers(self):
        sent = message(token(), to=BOB)
        self.curl("smtp", "smtp", REMOTE, BOB, sent)
        self.assertStoredExactly(BOB, sent, n=1)
        entries, _ = self.kotak.mailbox_listing(BOB)
        self.assertEqual(len(entries), 1)

    def test_curl_without_crlf_delivers_a_file_with_lf_line_ends(self):
        sent = message(token(), to=BOB).replace(b"\r\n", b"\n")
        self.curl("smtp", "smtp", REMOTE, BOB, sent)
        # curl ends the data with CRLF "." CRLF, after an empty line of its own.
        self.assertStoredExactly(BOB, sent.replace(b"\n", b"\r\n") + b"\r\n", n=1)

    def test_curl_smtps_465_with_login_delivers(self):
        sent = message(token(), sender=ALICE, to=BOB)
        self.curl("smtps", "submissions", ALICE, BOB, sent, "--cacert", self.kotak.cert,
                  "-u", f"{ALICE}:{PASSWORDS[ALICE]}", "--login-options", "AUTH=PLAIN")
        received = self.assertStoredExactly(BOB, sent, sender=ALICE, n=1)
        self.assertIn(b"ESMTPSA", received)

    def test_curl_587_ssl_reqd_with_login_delivers(self):
        sent = message(token(), sender=ALICE, to=BOB)
        self.curl("smtp", "submission", ALICE, BOB, sent, "--ssl-reqd",
                  "--cacert", self.kotak.cert, "-u", f"{ALICE}:{PASSWORDS[ALICE]}",
                  "--login-options", "AUTH=LOGIN")
        received = self.assertStoredExactly(BOB, sent, sender=ALICE, n=1)
        self.assertIn(b"ESMTPSA", received)
        self.assertIn(b"TLSv1.", received)

    def swaks(self, *args):
        swaks = tool("swaks")
        return self.run_tool([swaks, "--helo", CLIENT, "--timeout", "20", *args])

    def assert_swaks_delivered(self, user, tok, sender):
        bodies = self.stored_with(user, tok)
        self.assertEqual(len(bodies), 1, f"{user} has {len(bodies)} messages with {tok}")
        rp, _, rest = self.split_trace(bodies[0])
        self.assertEqual(rp, f"Return-Path: <{sender}>\r\n".encode())
        self.assertIn(f"Subject: {tok}".encode(), rest)

    def test_swaks_mx_delivers(self):
        tok = token()
        self.swaks("--server", f"127.0.0.1:{self.port('smtp')}", "--to", BOB,
                   "--from", "x@remote.example", "--header", f"Subject: {tok}")
        self.assert_swaks_delivered(BOB, tok, "x@remote.example")

    def test_swaks_587_starttls_auth_plain_delivers(self):
        tok = token()
        p = self.swaks("--server", "127.0.0.1", "--port", str(self.port("submission")), "-tls",
                       "--auth", "PLAIN", "--auth-user", ALICE,
                       "--auth-password", PASSWORDS[ALICE], "--to", BOB, "--from", ALICE,
                       "--header", f"Subject: {tok}")
        self.assertIn(b"STARTTLS", p.stdout)
        self.assert_swaks_delivered(BOB, tok, ALICE)

    def test_swaks_465_tls_on_connect_auth_login_delivers(self):
        tok = token()
        self.swaks("--server", "127.0.0.1", "--port", str(self.port("submissions")),
                   "--tls-on-connect", "--auth", "LOGIN", "--auth-user", ALICE,
                   "--auth-password", PASSWORDS[ALICE], "--to", BOB, "--from", ALICE,
                   "--header", f"Subject: {tok}")
        self.assert_swaks_delivered(BOB, tok, ALICE)

    def test_swaks_pipelined_mx_delivers(self):
        tok = token()
        self.swaks("--server", f"127.0.0.1:{self.port('smtp')}", "--pipeline", "--to",
                   f"{ALICE},{BOB}", "--from", "x@remote.example", "--header", f"Subject: {tok}")
        self.assert_swaks_delivered(ALICE, tok, "x@remote.example")
        self.assert_swaks_delivered(BOB, tok, "x@remote.example")


# --- durability and concurrency -------------------------------------------


class DurabilityTest(SmtpdTest):
    def test_kill_9_right_after_250_loses_nothing(self):
        sents = []
        s = self.mx()
        for i in range(20):
            sent = message(token(), body=(b"body %d\r\n" % i) * (i + 1))
            self.assertEqual(s.sendmail(REMOTE, [ALICE], sent), {})
            sents.append(sent)
        self.kotak.kill9()   # right after the last 250, without QUIT
        self.assertEqual(self.kotak.exit_codes["smtpd"], -9)
        self.kotak.start()
        stored = [self.split_trace(b)[2] for b in self.kotak.bodies(ALICE)]
        for i, sent in enumerate(sents):
            self.assertEqual(stored.count(sent), 1, f"message {i} is stored "
                             f"{stored.count(sent)} times")
        self.assertEqual(len(stored), 20)
        entries, summary = self.kotak.mailbox_listing(ALICE)
        self.assertEqual(len(entries), 20, summary)
        # And the restarted daemon takes mail again.
        sent = message(token())
        self.assertEqual(self.mx().sendmail(REMOTE, [ALICE], sent), {})
        self.assertEqual(len(self.kotak.bodies(ALICE)), 21)

    def test_kill_9_during_concurrent_deliveries_keeps_every_acknowledged_message_whole(self):
        acked, attempted = [], []
        lock = threading.Lock()
        stop = threading.Event()

        def sender(n):
            try:
                s = SMTP("127.0.0.1", self.port("smtp"), local_hostname=CLIENT,
                                 timeout=SOCKET_TIMEOUT)
            except OSError:
                return
            try:
                for i in range(200):
                    if stop.is_set():
                        return
                    sent = message(token(), body=(b"thread %d message %d\r\n" % (n, i)) * 50)
                    with lock:
                        attempted.append(sent)
                    s.sendmail(REMOTE, [ALICE, BOB], sent)
                    with lock:
                        acked.append(sent)
            except (smtplib.SMTPException, OSError):
                return
            finally:
                try:
                    s.close()
                except Exception:
                    pass

        threads = [threading.Thread(target=sender, args=(n,), daemon=True) for n in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= 40:
                    break
            time.sleep(0.001)
        self.kotak.kill9()
        stop.set()
        for t in threads:
            t.join(SOCKET_TIMEOUT + 5)
        self.assertGreaterEqual(len(acked), 40, "too few deliveries before the kill")
        self.kotak.start()
        for user in (ALICE, BOB):
            stored = [self.split_trace(b)[2] for b in self.kotak.bodies(user)]
            for sent in acked:
                self.assertEqual(stored.count(sent), 1, f"an acknowledged message for {user} "
                                 f"is stored {stored.count(sent)} times")
            for body in stored:
                self.assertIn(body, attempted, "a stored message is not one that was sent whole")
                self.assertEqual(stored.count(body), 1)
        self.assertEqual(self.kotak.count("maildrop"), 2 * self.kotak.count("messages"))

    def test_concurrent_clients_all_messages_are_stored(self):
        sents = {}
        errors = []

        def sender(n):
            try:
                s = SMTP("127.0.0.1", self.port("smtp"), local_hostname=CLIENT,
                                 timeout=SOCKET_TIMEOUT)
                try:
                    for i in range(5):
                        sent = message(token(), body=b"client %d message %d\r\n" % (n, i))
                        refused = s.sendmail(REMOTE, [BOB], sent)
                        if refused:
                            errors.append(refused)
                        sents[(n, i)] = sent
                finally:
                    s.quit()
            except Exception as e:   # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=sender, args=(n,), daemon=True) for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "a client hung")
        self.assertEqual(errors, [])
        self.assertEqual(len(sents), 50)
        stored = [self.split_trace(b)[2] for b in self.kotak.bodies(BOB)]
        self.assertEqual(len(stored), 50)
        self.assertEqual(sorted(stored), sorted(sents.values()))
        entries, summary = self.kotak.mailbox_listing(BOB)
        self.assertEqual(len(entries), 50, summary)


# --- process life and logs -----------------------------------------------


class LifeAndLogTest(SmtpdTest):
    def test_sigterm_stops_with_status_0_and_logs_stopped(self):
        c = self.raw()
        rc = self.kotak.stop()
        self.assertEqual(rc, 0, f"exit status {rc}; log:\n{self.kotak.log()}")
        self.assertIn("event=stopped", self.kotak.log())
        closed, got = c.read_until_closed(5)
        self.assertTrue(closed)
        self.assertRegex(got.decode(errors="replace"), r"^421 4\.3\.2 ",
                         "an open session was not told the server is shutting down")

    def test_sigterm_in_mid_data_lets_the_message_finish_or_refuses_it(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        sent = message(token())
        c.send(sent)
        proc = self.kotak.procs["smtpd"]
        proc.send_signal(15)
        time.sleep(0.3)
        try:
            c.send(b".\r\n")
            code, lines = c.reply()
        except (EOFError, OSError):
            code, lines = None, []
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            self.fail("kotak-smtpd did not stop within 10 s of SIGTERM")
        self.assertEqual(proc.returncode, 0)
        self.kotak.stop()
        # Whatever it answered, it never acknowledged what it did not keep.
        stored = [self.split_trace(b)[2] for b in self.kotak.bodies(ALICE)]
        if code == 250:
            self.assertEqual(stored, [sent])
        else:
            self.assertEqual(stored, [])

    def test_log_has_connect_transaction_and_login_lines_and_never_a_password(self):
        before = self.kotak.log().count("event=connect")
        sent = message(token(), to=SALES)
        self.assertEqual(self.mx().sendmail(REMOTE, [SALES], sent), {})
        self.submission(mech="PLAIN")
        s = self.submission(user=None)
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            self.login(s, BOB, "Wrong-Password-For-Bob-42", "LOGIN")
        s3 = self.submissions(user=BOB, mech="LOGIN")
        close_quietly(s3)
        log = self.kotak.wait_log(r"event=login .*result=ok", count=2)
        log = self.kotak.log()
        self.assertEqual(log.count("event=connect") - before, 4, log)
        self.assertRegex(log, rf"(?m)event=accepted id=\S+ from=<{re.escape(REMOTE)}> rcpts=2 "
                              rf"size={len(sent)} result=stored$")
        self.assertRegex(log, r"(?m) event=tls version=TLSv1\.[23] cipher=TLS-\S+$",
                         "the TLS a session began, in words")
        self.assertRegex(log, rf"event=login user={re.escape(ALICE)} result=ok")
        self.assertRegex(log, rf"event=login user={re.escape(BOB)} result=failed")
        self.assertRegex(log, rf"event=login user={re.escape(BOB)} result=ok")
        for pw in list(PASSWORDS.values()) + ["Wrong-Password-For-Bob-42"]:
            self.assertNotIn(pw, log, "a password is in the log")
            self.assertNotIn(base64.b64encode(pw.encode()).decode(), log)
        for line in log.splitlines():
            self.assertRegex(line, r"^ts=\S+ level=\w+ ", f"not a key=value line: {line!r}")

    def test_client_gone_right_after_the_final_dot_harms_nothing(self):
        for i in range(5):
            c = RawClient(self.port("smtp"))
            self.assertReply(c.reply(), 220)
            self.assertReply(c.cmd(f"EHLO {CLIENT}"), 250)
            c.send(f"MAIL FROM:<{REMOTE}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n")
            self.assertEqual([r[0] for r in c.replies(3)], [250, 250, 354])
            c.send(message(token()) + b".\r\n")
            c.close()
        sent = message(token())
        self.assertEqual(self.mx().sendmail(REMOTE, [ALICE], sent), {})
        self.assertTrue(self.kotak.running())
        self.assertIn(sent, [self.split_trace(b)[2] for b in self.kotak.bodies(ALICE)])
        self.assertEqual(self.kotak.stop(), 0)

    def test_plaintext_on_the_implicit_tls_port_is_closed_and_the_daemon_serves_on(self):
        with socket.create_connection(("127.0.0.1", self.port("submissions")),
                                      timeout=SOCKET_TIMEOUT) as raw:
            raw.sendall(f"EHLO {CLIENT}\r\n".encode())
            raw.settimeout(5)
            try:
                while raw.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        s = self.submissions()
        sent = message(token(), sender=ALICE, to=BOB)
        self.assertEqual(s.sendmail(ALICE, [BOB], sent), {})
        self.assertStoredExactly(BOB, sent, sender=ALICE, n=1)

    def test_a_refused_message_is_logged_and_not_accepted(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: x\r\n\r\nbare\rcr\r\n.\r\n")
        self.assertReply(c.reply(), 550)
        # A daemon writes its log lines once per turn of its loop: wait for them.
        self.assertTrue(self.kotak.wait_log(r"event=refused"), self.kotak.log())
        self.assertNotIn("event=accepted", self.kotak.log())


# --- RFC conformance: what RFC 5321 and RFC 4954 say a server must take -------


class ConformanceTest(SmtpdTest):
    def test_trailing_white_space_after_commands_is_tolerated(self):
        # RFC 5321 4.1.1: spaces or tabs after a command are to be tolerated.
        c = self.raw(ehlo=False)
        self.assertReply(c.cmd(f"EHLO {CLIENT}  "), 250)
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}> \t"), 250, "2.1.0")
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>\t"), 250, "2.1.5")
        self.assertReply(c.cmd("DATA "), 354)
        sent = message(token())
        c.send(sent + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0")
        self.assertReply(c.cmd("NOOP \t"), 250)
        self.assertReply(c.cmd(f"HELO {CLIENT} "), 250)
        self.assertReply(c.cmd("RSET  "), 250)
        self.assertReply(c.cmd("QUIT "), 221)
        self.assertStoredExactly(ALICE, sent, n=1)

    def test_mail_from_with_auth_parameter_is_accepted(self):
        # RFC 4954 5: relaying MTAs send AUTH=<> (or the submitter, as xtext).
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}> AUTH=<>"), 250, "2.1.0")
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        sent = message(token())
        c.send(sent + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0")
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}> BODY=8BITMIME AUTH=sender+40remote.example"),
                         250, "2.1.0")
        self.assertStoredExactly(ALICE, sent, n=1)

    def test_bare_postmaster_in_any_case_goes_to_the_first_domain_postmaster(self):
        # RFC 5321 4.5.1: <Postmaster> with no domain MUST be accepted. alice,
        # the first user of example.test, is its postmaster.
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        for rcpt in ("Postmaster", "POSTMASTER", "postmaster", "pOsTmAsTeR"):
            self.assertReply(c.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")
        self.assertReply(c.cmd("DATA"), 354)
        sent = message(token(), to="Postmaster")
        c.send(sent + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0")
        self.assertStoredExactly(ALICE, sent, n=1)
        self.assertEqual(self.kotak.bodies(BOB), [])

    def test_postmaster_of_every_local_domain_is_accepted(self):
        self.kotak.kotak("domain", "add", "other.test")
        self.kotak.kotak("user", "add", "carol@other.test", "--password-stdin", input="pw-Long-9x\n")
        s = self.mx()
        s.ehlo()
        self.assertReply(s.mail(REMOTE), 250)
        for rcpt in ("postmaster@example.test", "PostMaster@Example.TEST", "postmaster@other.test"):
            self.assertReply(s.rcpt(rcpt), 250, "2.1.5")
        sent = message(token(), to="postmaster@other.test")
        self.assertReply(s.data(sent), 250)
        self.assertStoredExactly(ALICE, sent, n=1)
        self.assertStoredExactly("carol@other.test", sent, n=1)

    def test_auth_response_lines_of_12288_octets_are_read_whole(self):
        # RFC 4954 4: a SASL response line may be 12,288 octets long. It is
        # read whole and answered as a response (this one decodes to no valid
        # login name), not cut off as an overlong line.
        for n in (12286, 12288):
            c = self.raw("submission")
            self.assertReply(c.cmd("AUTH LOGIN"), 334)
            self.assertReply(c.cmd("QUFB" * (n // 4) + "QQ=="[:n % 4]), 501, "5.5.2")
            cred = base64.b64encode(f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode()
            self.assertReply(c.cmd(f"AUTH PLAIN {cred}"), 235, "2.7.0")
        c = self.raw("submission")
        self.assertReply(c.cmd("AUTH LOGIN"), 334)
        self.assertReply(c.cmd("A" * 12300), 500, "5.5.0")


# --- the header section: Date:, Message-ID:, the Received: limit ----------


def bare_message(subject, sender=ALICE, to=BOB, body=b"Hello Bob.\r\n"):
    """A message as a careless client writes it: no Date:, no Message-ID:."""
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\n").encode() + body


def with_received(n, subject, body=b"Hello.\r\n"):
    """message() with n Received: fields on top, as n relays would have left it."""
    hops = b"".join(f"Received: from relay{i}.example by relay{i + 1}.example;\r\n"
                    f"\tMon, 01 Jan 2024 00:00:{i % 60:02d} +0000\r\n".encode()
                    for i in range(n))
    return hops + message(subject, body=body)


class HeaderFieldsTest(SmtpdTest):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def fetch_all(self, user):
        """Every message of the user's maildrop, read over POP3 with STLS, as RETR gives it."""
        p = POP3("127.0.0.1", self.kotak.ports["pop3"], timeout=SOCKET_TIMEOUT)
        self.addCleanup(close_quietly, p)
        self.assertTrue(p.stls(context=self.kotak.ssl_context()).startswith(b"+OK"))
        p.user(user)
        self.assertTrue(p.pass_(PASSWORDS[user]).startswith(b"+OK"))
        count, _ = p.stat()
        got = []
        for i in range(1, count + 1):
            _, lines, _ = p.retr(i)
            got.append(b"".join(line + b"\r\n" for line in lines))
        p.quit()
        return got

    def submit(self, s, sent):
        """MAIL, RCPT, DATA from alice to bob; returns the queue id of the 250."""
        self.assertReply(s.mail(ALICE), 250)
        self.assertReply(s.rcpt(BOB), 250)
        code, resp = s.data(sent)
        self.assertEqual(code, 250, resp)
        return re.search(rb"queued as (\S+)", resp).group(1).decode()

    def test_587_adds_date_and_message_id_at_the_end_of_the_headers_and_pop3_returns_them(self):
        tok = token()
        sent = bare_message(tok, body=b"Hello Bob.\r\n\r\nDate: not a field in the body\r\n")
        s = self.submission()
        before = time.time()
        queue_id = self.submit(s, sent)
        after = time.time()
        stored = self.fetch_all(BOB)
        self.assertEqual(len(stored), 1)
        rp, received, rest = self.split_trace(stored[0])
        self.assertEqual(rp, f"Return-Path: <{ALICE}>\r\n".encode())
        # The fields come at the end of the header section, before its empty
        # line; everything alice wrote is otherwise untouched.
        head, body = sent.split(b"\r\n\r\n", 1)
        m = re.fullmatch(re.escape(head + b"\r\n")
                         + rb"Date: ([^\r\n]+)\r\nMessage-ID: ([^\r\n]+)\r\n\r\n"
                         + re.escape(body), rest)
        self.assertIsNotNone(m, rest)
        date, msgid = m.group(1).decode(), m.group(2).decode()
        # RFC 5322 3.3, in UTC, the time of submission.
        self.assertRegex(date, r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000$")
        when = email.utils.parsedate_to_datetime(date).timestamp()
        self.assertTrue(int(before) - 1 <= when <= after + 1, (date, before, after))
        # RFC 5322 3.6.4: <id-left@id-right>, at our host name, with the queue id in it.
        self.assertRegex(msgid, r"^<[A-Za-z0-9.]+@" + re.escape(HOSTNAME) + ">$")
        self.assertIn(f".{queue_id}.", msgid)
        # A mail reader sees exactly one of each, and the body as sent.
        parsed = email.message_from_bytes(stored[0], policy=email.policy.default)
        self.assertEqual(parsed.get_all("Date"), [date])
        self.assertEqual(parsed.get_all("Message-ID"), [msgid])
        self.assertEqual(parsed["Subject"], tok)
        self.assertEqual(parsed.get_payload(decode=True), body)
        self.assertEqual(parsed.defects, [])

    def test_465_adds_message_ids_that_differ_for_every_message(self):
        ids = []
        for session in range(2):
            s = self.submissions()
            for i in range(2):
                self.submit(s, bare_message(token()))
        for stored in self.fetch_all(BOB):
            parsed = email.message_from_bytes(stored, policy=email.policy.default)
            self.assertIsNotNone(parsed["Date"])
            ids += parsed.get_all("Message-ID")
        self.assertEqual(len(ids), 4)
        self.assertEqual(len(set(ids)), 4, ids)

    def test_587_keeps_a_message_that_has_both_fields_byte_for_byte(self):
        tok = token()
        sent = (f"from: <{ALICE}>\r\ndate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
                f"MESSAGE-ID:\r\n <{tok}@client.example>\r\nSubject: {tok}\r\n\r\nHi.\r\n").encode()
        s = self.submission()
        self.submit(s, sent)
        self.assertStoredExactly(BOB, sent, sender=ALICE, n=1)

    def test_587_adds_only_the_field_that_is_missing(self):
        s = self.submission()
        tok = token()
        has_date = (f"Subject: {tok}\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
                    f"Message-IDx: <not-one@client.example>\r\n\r\nHi.\r\n").encode()
        self.submit(s, has_date)
        rest = self.assertStoredExactly(BOB, None, sender=ALICE, n=1, compare=False)
        self.assertRegex(rest, re.escape(has_date[:-len(b"\r\nHi.\r\n")])
                         + rb"Message-ID: <[^>]+>\r\n\r\nHi\.\r\n$")
        self.assertEqual(rest.count(b"Date:"), 1)

    def test_587_message_without_headers_gets_the_fields_before_its_first_line(self):
        s = self.submission()
        sent = b"Just a line of text, no headers.\r\nAnd another.\r\n"
        self.submit(s, sent)
        rest = self.assertStoredExactly(BOB, None, sender=ALICE, n=1, compare=False)
        self.assertRegex(rest, rb"^Date: [^\r\n]+\r\nMessage-ID: <[^>]+>\r\n" + re.escape(sent)
                         + b"$")

    def test_mx_adds_neither_field(self):
        sent = bare_message(token(), sender=REMOTE, to=ALICE)
        s = self.mx()
        s.ehlo()
        self.assertReply(s.mail(REMOTE), 250)
        self.assertReply(s.rcpt(ALICE), 250)
        self.assertReply(s.data(sent), 250)
        self.assertStoredExactly(ALICE, sent, n=1)

    def send_mx(self, sent):
        s = self.mx()
        s.ehlo()
        self.assertReply(s.mail(REMOTE), 250)
        self.assertReply(s.rcpt(ALICE), 250)
        return s, s.data(sent)

    def test_mx_message_with_50_or_51_received_fields_is_554_5_4_6_and_not_stored(self):
        # Ours would make 51 or 52: past HEADERS_RECEIVED_MAX (50), a loop.
        for n in (50, 51):
            s, got = self.send_mx(with_received(n, token()))
            self.assertReply(got, 554, "5.4.6")
            self.assertNothingStored()
            self.assertReply(s.noop(), 250)   # the session goes on
        self.assertTrue(self.kotak.wait_log(r"event=refused .*code=554"), self.kotak.log())

    def test_mx_message_with_49_received_fields_is_stored_with_50(self):
        sent = with_received(49, token())
        _, got = self.send_mx(sent)
        self.assertReply(got, 250)
        self.assertStoredExactly(ALICE, sent, n=1)
        stored = self.kotak.bodies(ALICE)[0]
        head = stored.split(b"\r\n\r\n", 1)[0]
        self.assertEqual(len(re.findall(rb"(?m)^Received:", head)), 50)

    def test_received_lines_in_the_body_do_not_count(self):
        body = b"".join(b"Received: from quoted.example by x.example; a forwarded trace\r\n"
                        for _ in range(80))
        sent = message(token(), body=b"Look at these:\r\n\r\n" + body)
        _, got = self.send_mx(sent)
        self.assertReply(got, 250)
        self.assertStoredExactly(ALICE, sent, n=1)

    def test_587_message_with_50_received_fields_is_554_5_4_6_too(self):
        s = self.submission()
        self.assertReply(s.mail(ALICE), 250)
        self.assertReply(s.rcpt(BOB), 250)
        self.assertReply(s.data(with_received(50, token())), 554, "5.4.6")
        self.assertNothingStored()


if __name__ == "__main__":
    unittest.main()
