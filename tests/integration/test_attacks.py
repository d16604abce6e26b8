"""Attack tests (issue 5, item 2): the real kotak-smtpd and kotak-pop3d on
loopback, talked to by hostile clients. What test_smtpd.py already covers
(SMTP smuggling, STARTTLS injection, the size and line limits, the idle and
handshake timeouts of a silent client, the SMTP lockout) is not repeated here.

Every socket has a timeout and every loop a bound.

Run: KOTAK_BUILD=build python3 tests/tap_unittest.py tests/integration/test_attacks.py
"""
import base64
import re
import select
import socket
import ssl
import statistics
import threading
import time
import unittest
import uuid

from kotak_harness import (HOSTNAME, PASSWORDS, SOCKET_TIMEOUT, KotakTestCase, RawClient,
                           config)

ALICE = "alice@example.test"
BOB = "bob@example.test"
REMOTE = "sender@remote.example"
CLIENT = "client.example.net"

BASE_CONFIG = {
    "limits": {
        "message_size": "64K",
        "idle_timeout": "15s",
        "pop3_idle_timeout": "15s",
        "tls_handshake_timeout": "10s",
    },
    "auth": {
        "failure_delay": "300ms",
        "max_failures": "100",
    },
}

# What a normal conversation may take on loopback while the attack goes on.
NORMAL_LATENCY = 0.5
# libuv's timers run on the loop's cached clock: a delay may end a few ms early.
TIMER_SLACK = 0.01


def token():
    return uuid.uuid4().hex[:16]


def b64(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def plain(authcid, password, authzid=""):
    """An AUTH PLAIN initial response."""
    return b64(f"{authzid}\0{authcid}\0{password}")


def message(subject, sender=REMOTE, to=ALICE, body=b"Hello.\r\n"):
    # With Date: and Message-ID:, so that submission adds neither and the
    # message is stored as sent.
    head = (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            f"Message-ID: <{subject}@remote.example>\r\n\r\n")
    return head.encode("utf-8") + body


# --- the log -------------------------------------------------------------

# One log line: `ts=... level=... WORD key=value ...`, where a value is plain
# printable text (no space, quote, backslash or '='), optionally inside <>,
# or a double-quoted string with \" \\ and \xNN escapes (common/log.c).
_VALUE = r'<?(?:"(?:[^"\\\x00-\x1f\x7f-\xff]|\\["\\]|\\x[0-9a-f]{2})*"(?:\.\.\.)?|[^\s"\\=<>]*)>?'
_TOKEN = rf'(?:[a-z][a-z0-9_-]*={_VALUE}|[a-z0-9]+)'
LOG_LINE = re.compile(rf'^ts=\S+ level=(?:error|warn|info|debug)(?: {_TOKEN})*$')
_FIELD = re.compile(rf'(?:^| )([a-z][a-z0-9_-]*)=({_VALUE})(?= |$)')


def log_fields(line):
    """The key=value fields of one log line, as a list of (key, raw value)."""
    return _FIELD.findall(line)


def log_unquote(value):
    """A log value as the bytes it stands for (the quotes and escapes undone)."""
    if not value.startswith('"'):
        return value.encode("ascii")
    inner = value[1:-1]
    out = bytearray()
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and inner[i + 1] == "x":
            out.append(int(inner[i + 2:i + 4], 16))
            i += 4
        elif ch == "\\":
            out.append(ord(inner[i + 1]))
            i += 2
        else:
            out.append(ord(ch))
            i += 1
    return bytes(out)


class Pop3Raw(RawClient):
    """RawClient for POP3: one status line, a multi-line answer."""

    def line(self):
        return self.readline().rstrip(b"\r\n").decode("utf-8", "replace")

    def cmd(self, line):
        self.send((line.encode("utf-8") if isinstance(line, str) else line) + b"\r\n")
        return self.line()

    def multiline(self):
        lines = []
        for _ in range(100000):
            line = self.line()
            if line == ".":
                return lines
            lines.append(line)
        raise AssertionError("no end to a multi-line answer")


class AttackTest(KotakTestCase):
    CONFIG = BASE_CONFIG
    DAEMONS_TO_START = ("smtpd", "pop3d")

    # --- clients ---------------------------------------------------------

    def port(self, listener):
        return self.kotak.ports[listener]

    def raw(self, listener="smtp", ehlo=True, tls=False, **kw):
        ctx = self.kotak.ssl_context() if tls else None
        c = RawClient(self.port(listener), tls_context=ctx, **kw)
        self.addCleanup(c.close)
        code, lines = c.reply()
        self.assertEqual(code, 220, lines)
        if ehlo:
            code, lines = c.cmd(f"EHLO {CLIENT}")
            self.assertEqual(code, 250, lines)
        return c

    def raw_login(self, listener="submission", user=ALICE):
        """Submission, logged in (plaintext AUTH is allowed from loopback)."""
        c = self.raw(listener, tls=listener == "submissions")
        self.assertReply(c.cmd(f"AUTH PLAIN {plain(user, PASSWORDS[user])}"), 235)
        return c

    def pop3(self, listener="pop3", **kw):
        ctx = self.kotak.ssl_context() if listener == "pop3s" else None
        c = Pop3Raw(self.port(listener), tls_context=ctx, **kw)
        self.addCleanup(c.close)
        greeting = c.line()
        self.assertTrue(greeting.startswith("+OK"), greeting)
        return c

    def pop3_login(self, user=ALICE, listener="pop3"):
        c = self.pop3(listener)
        self.assertTrue(c.cmd(f"USER {user}").startswith("+OK"))
        reply = c.cmd(f"PASS {PASSWORDS[user]}")
        self.assertTrue(reply.startswith("+OK"), reply)
        return c

    def mx_round_trip(self):
        """Seconds for a whole small conversation on the MX port: greeting, EHLO, NOOP, QUIT."""
        start = time.monotonic()
        with RawClient(self.port("smtp"), timeout=5) as c:
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd(f"EHLO {CLIENT}")[0], 250)
            self.assertEqual(c.cmd("NOOP")[0], 250)
            self.assertEqual(c.cmd("QUIT")[0], 221)
        return time.monotonic() - start

    def pop3_round_trip(self):
        start = time.monotonic()
        with Pop3Raw(self.port("pop3"), timeout=5) as c:
            self.assertTrue(c.line().startswith("+OK"))
            self.assertTrue(c.cmd("CAPA").startswith("+OK"))
            c.multiline()
            self.assertTrue(c.cmd("QUIT").startswith("+OK"))
        return time.monotonic() - start

    # --- assertions ------------------------------------------------------

    def assertReply(self, got, code, enhanced=None):
        c, lines = got
        text = "\n".join(lines)
        self.assertEqual(c, code, f"expected {code}, got {text!r}")
        if enhanced is not None:
            self.assertIn(enhanced, text)

    def assertNothingStored(self):
        self.assertEqual(self.kotak.count("messages"), 0, "a message was stored")
        self.assertEqual(self.kotak.count("maildrop"), 0, "a maildrop entry was made")

    def assertServing(self):
        """Both daemons are alive and a normal client is served at normal speed."""
        for name in self.DAEMONS_TO_START:
            self.assertTrue(self.kotak.running(name), f"kotak-{name} is gone:\n{self.kotak.log(name)}")
        if "smtpd" in self.DAEMONS_TO_START:
            self.assertLess(self.mx_round_trip(), NORMAL_LATENCY * 2)
        if "pop3d" in self.DAEMONS_TO_START:
            self.assertLess(self.pop3_round_trip(), NORMAL_LATENCY * 2)

    def assertLogWellFormed(self, name):
        """Every line of the daemon's log is one `key=value` event: nothing a peer
        sent started a line or a field of its own."""
        text = self.kotak.log(name)
        for line in text.split("\n")[:-1]:
            self.assertRegex(line, LOG_LINE, f"a malformed {name} log line: {line!r}")
            keys = [k for k, _ in log_fields(line)]
            self.assertEqual(len(keys), len(set(keys)), f"a field twice in {line!r}")
            self.assertNotIn("injected", keys, f"a forged field in {line!r}")
        self.assertTrue(text == "" or text.endswith("\n"))
        return text


# --- STLS command injection (POP3) ------------------------------------------


class StlsInjectionTest(AttackTest):
    DAEMONS_TO_START = ("pop3d",)

    def test_stls_plaintext_injection_is_discarded(self):
        c = self.pop3()
        # USER sent in plaintext behind STLS, in the same write: if the server
        # kept it, the PASS below (inside TLS) would log the attacker's user in.
        c.send(f"STLS\r\nUSER {ALICE}\r\n".encode())
        reply = c.line()
        self.assertTrue(reply.startswith("+OK"), reply)
        c.starttls(self.kotak.ssl_context())
        reply = c.cmd(f"PASS {PASSWORDS[ALICE]}")
        self.assertTrue(reply.startswith("-ERR"), f"the injected USER was kept: {reply!r}")
        # The session inside TLS is a clean one.
        self.assertTrue(c.cmd(f"USER {ALICE}").startswith("+OK"))
        self.assertTrue(c.cmd(f"PASS {PASSWORDS[ALICE]}").startswith("+OK"))
        closed, extra = c.read_until_closed(0.5)
        self.assertEqual(extra, b"", "a reply to an injected command arrived")

    def test_stls_injection_of_several_commands_gets_no_reply_inside_tls(self):
        c = self.pop3()
        c.send(b"STLS\r\nCAPA\r\nNOOP\r\nQUIT\r\n")
        self.assertTrue(c.line().startswith("+OK"))
        c.starttls(self.kotak.ssl_context())
        # The first answer inside TLS is the one to our own command.
        reply = c.cmd("CAPA")
        self.assertEqual(reply, "+OK Capability list follows")
        capa = c.multiline()
        self.assertNotIn("STLS", capa)
        closed, extra = c.read_until_closed(0.5)
        self.assertFalse(closed, "the injected QUIT ended the session")
        self.assertEqual(extra, b"")
        self.assertTrue(c.cmd("QUIT").startswith("+OK"))


# --- SMTP smuggling: the end-of-data variants test_smtpd.py does not try -------


class SmugglingTest(AttackTest):
    DAEMONS_TO_START = ("smtpd",)

    def smuggle(self, end):
        """`end` (an almost-end-of-data) and a whole second transaction inside one
        DATA: either the message is refused, or it is stored once, for alice,
        with the would-be transaction as its text; bob never gets anything."""
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        smuggled = (end + b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.test>\r\n"
                    b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
        c.send(message(token(), body=b"innocent") + smuggled)
        code, lines = c.reply()
        self.assertIn(code, (250, 550), f"{end!r}: {lines}")
        self.assertEqual(c.cmd("NOOP"), (250, ["250 2.0.0 Ok"]),
                         "a reply to a smuggled command came before our NOOP's")
        closed, extra = c.read_until_closed(0.5)
        self.assertEqual(extra, b"", "replies to smuggled commands arrived")
        self.assertEqual(self.kotak.bodies(BOB), [], "a smuggled message reached bob")
        if code == 550:
            self.assertNothingStored()
        else:
            stored = self.kotak.bodies(ALICE)
            self.assertEqual(len(stored), 1, "two messages from one DATA")
            self.assertIn(b"RCPT TO:<bob@example.test>", stored[0])
            self.assertEqual(self.kotak.count("messages"), 1)

    def test_smtp_smuggling_with_cr_dot_cr(self):
        self.smuggle(b"\r.\r")

    def test_smtp_smuggling_with_crlf_dot_cr(self):
        self.smuggle(b"\r\n.\r")

    def test_smtp_smuggling_with_crlf_dot_nul_crlf(self):
        self.smuggle(b"\r\n.\x00\r\n")

    def split_smuggle(self, refused):
        c = self.raw()
        c.send(f"MAIL FROM:<{REMOTE}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n")
        self.assertEqual([r[0] for r in c.replies(3)], [250, 250, 354])
        for part in (message(token(), body=b"innocent"), b"\n", b".", b"\r",
                     b"\nMAIL FROM:<evil@remote.example>\r\n", b"RCPT TO:<bob@example.test>\r\n",
                     b"DATA\r\n\r\nevil\r\n.\r\n"):
            c.send(part)
            time.sleep(0.02)
        self.assertReply(c.reply(), 550 if refused else 250, "5.6.0" if refused else "2.0.0")
        self.assertEqual(c.cmd("NOOP"), (250, ["250 2.0.0 Ok"]))
        self.assertEqual(self.kotak.bodies(BOB), [], "a smuggled message reached bob")
        if refused:
            self.assertNothingStored()
            return
        # The bare LF was taken as CRLF; the fake end and all behind it are alice's text.
        stored = self.kotak.bodies(ALICE)
        self.assertEqual(len(stored), 1, "two messages from one DATA")
        self.assertIn(b"innocent\r\n\r\nMAIL FROM:<evil@remote.example>\r\n", stored[0])

    def test_smtp_smuggling_with_lf_dot_cr_lf_split_across_writes(self):
        self.split_smuggle(refused=False)

    @config(limits={"bare_newline": "reject"})
    def test_smtp_smuggling_with_lf_dot_cr_lf_split_across_writes_with_reject(self):
        self.split_smuggle(refused=True)

    @config(limits={"bare_newline": "reject"})
    def test_smtp_smuggling_with_crlf_dot_cr_with_reject(self):
        self.smuggle(b"\r\n.\r")

    @config(limits={"bare_newline": "reject"})
    def test_smtp_smuggling_with_crlf_dot_nul_crlf_with_reject(self):
        self.smuggle(b"\r\n.\x00\r\n")


# --- open relay -------------------------------------------------------------

# Recipients that try to reach remote.example through the local domain.
RELAY_TRICKS = [
    "bob%remote.example@example.test",        # percent hack
    '"bob@remote.example"@example.test',      # quoted local part
    '"bob%remote.example"@example.test',
    "@example.test:bob@remote.example",       # source route
    "@example.test,@example.test:bob@remote.example",
    "remote.example!bob@example.test",        # bang path
    "remote.example!bob",
    "bob@example.test@remote.example",        # a foreign domain behind a local one
    "bob@remote.example@example.test",
    "bob@example.test.remote.example",
    "bob@remote.example.example.test",
    "bob@[127.0.0.1]",                        # address literals
    "bob@[IPv6:::1]",
    "bob@remote.example",
    "bob@remote.example.",
    "bob@example.test.",
]


class OpenRelayTest(AttackTest):
    DAEMONS_TO_START = ("smtpd",)
    # Many refusals in one session on purpose: the error limits are not under test.
    CONFIG = dict(BASE_CONFIG, limits=dict(BASE_CONFIG["limits"], bad_commands="1000",
                                           hard_errors="1000", junk_commands="1000"))

    def try_tricks(self, c, sender):
        got = {}
        for rcpt in RELAY_TRICKS:
            self.assertReply(c.cmd(f"MAIL FROM:<{sender}>"), 250)
            code, lines = c.cmd(f"RCPT TO:<{rcpt}>")
            got[rcpt] = (code, lines)
            # With no recipient taken, DATA must not open.
            code_data, lines_data = c.cmd("DATA")
            if code_data == 354:
                c.send(message(token()) + b".\r\n")
                c.reply()
            self.assertNotEqual(code_data, 354, f"DATA opened after RCPT TO:<{rcpt}>")
            self.assertReply(c.cmd("RSET"), 250)
        accepted = {r: g for r, g in got.items() if not 500 <= g[0] < 600}
        self.assertEqual(accepted, {}, "relay tricks not refused with 5xx")
        self.assertNothingStored()

    def test_relay_tricks_on_the_mx_port_are_refused_and_nothing_is_stored(self):
        self.try_tricks(self.raw(), REMOTE)
        self.assertServing()

    # A logged-in user may send to other servers: what submission takes is
    # queued for exactly the mailbox named at the other server (a source
    # route is dropped, RFC 5321 C), never kept here, and the tricks that
    # name the local domain reach nobody.
    QUEUED_FROM_TRICKS = {"bob@remote.example", "bob@example.test.remote.example",
                          "bob@remote.example.example.test"}

    def try_tricks_logged_in(self, c):
        for rcpt in RELAY_TRICKS:
            self.assertReply(c.cmd(f"MAIL FROM:<{ALICE}>"), 250)
            code, lines = c.cmd(f"RCPT TO:<{rcpt}>")
            self.assertIn(code // 100, (2, 5), f"RCPT TO:<{rcpt}>: {lines}")
            if code == 250:
                self.assertReply(c.cmd("DATA"), 354)
                c.send(message(token()) + b".\r\n")
                self.assertEqual(c.reply()[0], 250)
            else:
                self.assertReply(c.cmd("RSET"), 250)
        queued = {r[0] for r in self.kotak.query("SELECT address FROM queue_rcpt")}
        self.assertEqual(queued, self.QUEUED_FROM_TRICKS)
        self.assertEqual(self.kotak.count("maildrop"), 0, "a maildrop entry was made")

    def test_relay_tricks_on_submission_queue_only_the_remote_mailbox_named(self):
        self.try_tricks_logged_in(self.raw_login("submission"))

    def test_relay_tricks_on_465_queue_only_the_remote_mailbox_named(self):
        self.try_tricks_logged_in(self.raw_login("submissions"))

    def test_relay_tricks_in_one_pipelined_transaction_store_nothing(self):
        c = self.raw()
        lines = [f"MAIL FROM:<{REMOTE}>"] + [f"RCPT TO:<{r}>" for r in RELAY_TRICKS] + ["DATA"]
        c.send("".join(l + "\r\n" for l in lines))
        got = c.replies(len(lines))
        self.assertEqual(got[0][0], 250)
        for rcpt, (code, text) in zip(RELAY_TRICKS, got[1:-1]):
            self.assertTrue(500 <= code < 600, f"RCPT TO:<{rcpt}> got {text}")
        self.assertIn(got[-1][0], (503, 554), f"DATA with no recipient: {got[-1]}")
        # What would have been the message is now just bad commands.
        c.send(message(token()) + b".\r\n")
        self.assertServing()
        self.assertNothingStored()

    def test_local_looking_tricks_that_are_taken_land_only_in_local_maildrops(self):
        # A catch-all takes any local part; a source route to a local mailbox
        # and a plus tag holding a '%' are local too. Whatever is accepted
        # must be delivered here, to the user it names, and nowhere else.
        self.kotak.kotak("alias", "add", "@example.test", ALICE)
        c = self.raw()
        taken = []
        for rcpt in RELAY_TRICKS + ["@remote.example:bob@example.test",
                                    "bob+x%remote.example@example.test", "BOB@EXAMPLE.TEST"]:
            self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
            code, lines = c.cmd(f"RCPT TO:<{rcpt}>")
            self.assertIn(code // 100, (2, 5), lines)
            if code == 250:
                self.assertReply(c.cmd("DATA"), 354)
                sent = message(token())
                c.send(sent + b".\r\n")
                self.assertReply(c.reply(), 250)
                taken.append((rcpt, sent))
            else:
                self.assertReply(c.cmd("RSET"), 250)
        # The source route and the plus tag name bob; the catch-all takes the rest.
        expect_bob = {"@remote.example:bob@example.test", "bob+x%remote.example@example.test",
                      "BOB@EXAMPLE.TEST"}
        self.assertTrue(expect_bob <= {r for r, _ in taken}, taken)
        local_ids = {self.kotak.user_id(ALICE), self.kotak.user_id(BOB)}
        rows = self.kotak.query("SELECT user_id, message_id FROM maildrop")
        self.assertEqual(len(rows), len(taken), "one maildrop entry per accepted message")
        self.assertTrue({u for u, _ in rows} <= local_ids)
        bob_bodies = self.kotak.bodies(BOB)
        alice_bodies = self.kotak.bodies(ALICE)
        for rcpt, sent in taken:
            owner = bob_bodies if rcpt in expect_bob else alice_bodies
            self.assertEqual(sum(b.endswith(sent) for b in owner), 1, f"{rcpt} went elsewhere")
        # No trick that names remote.example as the mailbox's domain was taken.
        for rcpt, _ in taken:
            self.assertNotRegex(rcpt.lower(), r"@remote\.example\.?$")
            self.assertFalse(rcpt.startswith("@example.test"), rcpt)

    def test_an_alias_that_forwards_elsewhere_relays_only_to_its_target_with_an_srs_sender(self):
        # The MX port sends mail on only where the administrator's alias
        # says, with a sender of the alias's domain (SRS), and never to a
        # target the stranger picks.
        self.kotak.kotak("alias", "add", "fwd@example.test", "bob@remote.example")
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        self.assertReply(c.cmd("RCPT TO:<fwd@example.test>"), 250)
        code, lines = c.cmd("RCPT TO:<carol@remote.example>")
        self.assertTrue(500 <= code < 600, lines)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(message(token()) + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        rows = self.kotak.query("SELECT r.address, q.sender FROM queue_rcpt r"
                                " JOIN queue q ON q.id = r.queue_id")
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0][0], "bob@remote.example")
        self.assertRegex(rows[0][1], r"^SRS0=[a-z2-7]{6}=[a-z2-7]{2}=.+@example\.test$")
        self.assertEqual(self.kotak.count("maildrop"), 0)


# --- header and log injection -----------------------------------------------

HELO_NAMES = [
    "client.example.net", "[127.0.0.1]", "[IPv6:::1]", "x{y}", "x'y", "x=y", "a" * 255,
    "a b", "a\tb", "(x)", "x(comment)", '"x"', 'x"y', "x;y", "<x>", "x\\y", "x)y",
    "h\u00e9llo.example", "\u0441\u0435\u0440\u0432\u0435\u0440.example", "x\x7fy", "x\x01y",
    "a" * 256, "a" * 400, "client.example.net X-Injected: 1", "x\x0bX-Injected:1",
]
SAFE_HELO = re.compile(r"^[!#-'*-+\--:=?-\[\]-~]+$")   # printable, none of "()<>\;


class HeaderInjectionTest(AttackTest):
    DAEMONS_TO_START = ("smtpd",)

    def received_of(self, stored, sent):
        """The trace block ahead of the message, as a list of header lines
        (continuation lines joined to the line they continue)."""
        self.assertTrue(stored.endswith(sent), "the message after the trace is not what was sent")
        trace = stored[:len(stored) - len(sent)]
        self.assertTrue(trace.endswith(b"\r\n"))
        raw_lines = trace[:-2].split(b"\r\n")
        headers = []
        for line in raw_lines:
            self.assertNotIn(b"\r", line)
            self.assertNotIn(b"\n", line)
            if line[:1] in (b" ", b"\t"):
                self.assertTrue(headers, "a trace block that starts with a continuation line")
                headers[-1] += b"\r\n" + line
            else:
                headers.append(line)
        return headers

    def test_helo_names_are_refused_or_appear_safely_in_received(self):
        results = {}
        for name in HELO_NAMES:
            c = self.raw(ehlo=False)
            self.try_helo_name(c, name, results)
            c.close()
        # What can never be shown safely as it is, was refused.
        for name in ["a b", "a\tb", "(x)", '"x"', "x;y", "<x>", "x\\y", "h\u00e9llo.example",
                     "x\x7fy", "x\x01y", "a" * 256, "client.example.net X-Injected: 1"]:
            self.assertNotEqual(results[name], 250, f"EHLO {name!r} was taken")
        self.assertEqual(results["client.example.net"], 250)
        self.assertEqual(results["[127.0.0.1]"], 250)

    def try_helo_name(self, c, name, results):
        code, lines = c.cmd(f"EHLO {name}")
        results[name] = code
        if code != 250:
            self.assertIn(code, (500, 501), f"EHLO {name!r}: {lines}")
            self.assertReply(c.cmd("NOOP"), 250)   # the session goes on
            return
        self.assertEqual(lines[0], f"250-{HOSTNAME} greets {name}")
        sent = message(token())
        c.send(f"MAIL FROM:<{REMOTE}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n")
        self.assertEqual([r[0] for r in c.replies(3)], [250, 250, 354])
        c.send(sent + b".\r\n")
        self.assertReply(c.reply(), 250)
        stored = [b for b in self.kotak.bodies(ALICE) if b.endswith(sent)]
        self.assertEqual(len(stored), 1)
        headers = self.received_of(stored[0], sent)
        self.assertEqual([h.split(b":")[0] for h in headers],
                         [b"Return-Path", b"Authentication-Results", b"Received"],
                         f"EHLO {name!r} made the trace {headers!r}")
        m = re.match(rb"^Received: from (\S+) \(\[127\.0\.0\.1\]\)\r\n\tby ", headers[2])
        self.assertIsNotNone(m, headers[2])
        shown = m.group(1).decode("ascii")
        self.assertEqual(shown, name)
        self.assertRegex(shown, SAFE_HELO)

    def test_helo_names_with_specials_are_refused_by_helo_too(self):
        c = self.raw(ehlo=False)
        for name in ["a b", "(x)", '"x"', "<x>", "h\u00e9llo"]:
            code, lines = c.cmd(f"HELO {name}")
            self.assertEqual(code, 501, f"HELO {name!r}: {lines}")
        self.assertReply(c.cmd(f"HELO {CLIENT}"), 250)
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)

    def test_a_quoted_sender_with_key_value_text_stays_in_one_header_and_one_log_field(self):
        sender = '"x result=ok injected=1 level=error"@remote.example'
        c = self.raw()
        code, lines = c.cmd(f"MAIL FROM:<{sender}>")
        if code != 250:
            # Refusing such a sender is safe too; then nothing is stored.
            self.assertTrue(500 <= code < 600, lines)
            self.assertNothingStored()
            self.assertLogWellFormed("smtpd")
            return
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        sent = message(token())
        c.send(sent + b".\r\n")
        self.assertReply(c.reply(), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        stored = self.kotak.bodies(ALICE)[-1]
        headers = self.received_of(stored, sent)
        self.assertEqual(headers[0], f"Return-Path: <{sender}>".encode())
        self.assertEqual(len(headers), 3)  # and the MX's Authentication-Results:, then Received:
        self.assertTrue(headers[1].startswith(f"Authentication-Results: {HOSTNAME};".encode()))
        log = self.kotak.wait_log(r"event=accepted", count=1)
        log = self.assertLogWellFormed("smtpd")
        accepted = [l for l in log.splitlines() if "event=accepted" in l]
        self.assertEqual(len(accepted), 1)
        fields = dict(log_fields(accepted[0]))
        self.assertEqual(log_unquote(fields["from"].strip("<>")), sender.encode())
        self.assertEqual(fields["result"], "stored")

    def test_esmtp_parameters_never_reach_the_log_or_the_headers(self):
        c = self.raw()
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}> BODY=8BITMIME SIZE=100"), 250)
        code, _ = c.cmd(f"RCPT TO:<{ALICE}> NOTIFY=NEVER")
        self.assertEqual(code, 555)
        code, _ = c.cmd(f"RCPT TO:<{ALICE}> ORCPT=rfc822;x+0A+0DX-Injected:+201")
        self.assertIn(code, (501, 555))
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        sent = message(token())
        c.send(sent + b".\r\n")
        self.assertReply(c.reply(), 250)
        stored = self.kotak.bodies(ALICE)[-1]
        self.assertEqual(len(self.received_of(stored, sent)), 3)  # with Authentication-Results:
        self.assertNotIn(b"Injected", stored[:len(stored) - len(sent)])
        self.kotak.wait_log(r"event=accepted", count=1)
        log = self.assertLogWellFormed("smtpd")
        self.assertNotIn("Injected", log)


# Login identities that try to forge a log line or field.
EVIL_USERS = [
    "alice@example.test result=ok",
    "x injected=1",
    'x" injected="1',
    "x\\\" injected=1",
    "user=root",
    "caf\u00e9 injected=1",
    "x\x7f injected=1",
]
# These cannot be carried as text, or are too long: a refusal is fine, but
# never a new line or field.
EVIL_BINARY_USERS = [
    "x" * 300 + " injected=1",
    "a\r\nts=2000-01-01T00:00:00Z level=info smtp injected=1 event=login result=ok",
    "a\ninjected=1",
    "a\rinjected=1",
    "a\x00injected=1",
    "a\tb injected=1",
]


class LogInjectionTest(AttackTest):
    CONFIG = {"limits": {"bad_commands": "1000"},
              "auth": {"failure_delay": "20ms", "max_failures": "1000"}}

    def login_lines(self, name):
        return [l for l in self.kotak.log(name).splitlines() if "event=login" in l]

    def check_login_lines(self, name, expected_users):
        """One login line per attempt; each user= decodes to what was sent."""
        log = self.assertLogWellFormed(name)
        lines = [l for l in log.splitlines() if "event=login" in l]
        users = []
        for line in lines:
            fields = dict(log_fields(line))
            self.assertIn("result", fields, line)
            self.assertNotEqual(fields["result"], "ok", f"a login succeeded: {line!r}")
            users.append(log_unquote(fields["user"]))
        for user in expected_users:
            u = user.encode("utf-8")
            found = [x for x in users if x == u or (len(u) > 100 and u.startswith(x[:50]))]
            self.assertTrue(found, f"no login line shows the user {user!r}: {users!r}")
        return lines

    def test_smtp_auth_plain_identities_cannot_forge_log_lines_or_fields(self):
        c = self.raw("submission")
        for user in EVIL_USERS:
            code, lines = c.cmd(f"AUTH PLAIN {plain(user, 'wrong-password')}")
            self.assertEqual(code, 535, f"{user!r}: {lines}")
        for user in EVIL_BINARY_USERS:
            code, lines = c.cmd(f"AUTH PLAIN {plain(user, 'wrong-password')}")
            self.assertIn(code, (501, 535), f"{user!r}: {lines}")
        self.kotak.wait_log("event=login", count=len(EVIL_USERS))
        lines = self.check_login_lines("smtpd", EVIL_USERS)
        self.assertLessEqual(len(lines), len(EVIL_USERS) + len(EVIL_BINARY_USERS))

    def test_smtp_auth_login_identities_cannot_forge_log_lines_or_fields(self):
        c = self.raw("submission")
        for user in EVIL_USERS + EVIL_BINARY_USERS:
            self.assertReply(c.cmd("AUTH LOGIN"), 334)
            code, lines = c.cmd(b64(user))
            if code == 334:
                code, lines = c.cmd(b64("wrong-password"))
            if user in EVIL_USERS:
                self.assertEqual(code, 535, f"{user!r}: {lines}")
            else:
                self.assertIn(code, (501, 535), f"{user!r}: {lines}")
        self.assertReply(c.cmd("NOOP"), 250)
        self.kotak.wait_log("event=login", count=len(EVIL_USERS))
        self.check_login_lines("smtpd", EVIL_USERS)

    def test_pop3_user_and_auth_identities_cannot_forge_log_lines_or_fields(self):
        c = self.pop3()
        logged = []
        for user in EVIL_USERS:
            # USER takes one word; a user name with a space is a syntax error.
            reply = c.cmd(b"USER " + user.encode("utf-8"))
            if reply.startswith("+OK"):
                reply = c.cmd("PASS wrong-password")
                self.assertTrue(reply.startswith("-ERR"), reply)
                logged.append(user)
            else:
                self.assertTrue(reply.startswith("-ERR"), reply)
        # CR and LF end the line: what follows is just another (bad) command.
        c.send(b"USER a\rinjected=1\r\nUSER b\ninjected=1\r\n")
        self.assertTrue(c.line().startswith("-ERR"))
        self.assertTrue(c.line().startswith("-ERR"))
        c = self.pop3()
        for user in EVIL_USERS + EVIL_BINARY_USERS:
            reply = c.cmd(f"AUTH PLAIN {plain(user, 'wrong-password')}")
            self.assertTrue(reply.startswith("-ERR"), f"{user!r}: {reply}")
            if user in EVIL_USERS:
                logged.append(user)
        time.sleep(0.2)
        self.check_login_lines("pop3d", logged)
        self.assertServing()


# --- overlong lines, NUL, malformed ESMTP parameters ---------------------------


class MalformedInputTest(AttackTest):
    CONFIG = dict(BASE_CONFIG, limits=dict(BASE_CONFIG["limits"], bad_commands="100",
                                           hard_errors="100"))

    def test_esmtp_parameters_without_keyword_or_value_are_501_or_555_and_the_session_goes_on(self):
        c = self.raw()
        bad = ["X=", '"=', "ORCPT=", "=x", "=", "X==", "X=a=b", "BODY=", "SIZE=", '"X"=1',
               "X=\x01", "X-Y\x7f=1", "BODY=8BITMIME =", "X=" + "a" * 400]
        for p in bad:
            code, lines = c.cmd(f"MAIL FROM:<{REMOTE}> {p}")
            self.assertIn(code, (500, 501, 555), f"MAIL ... {p!r}: {lines}")
            if code in (501, 555):
                self.assertIn("5.5.4", lines[-1], f"MAIL ... {p!r}: {lines}")
        self.assertReply(c.cmd(f"MAIL FROM:<{REMOTE}>"), 250)
        for p in bad + ["ORCPT=rfc822;", "NOTIFY="]:
            code, lines = c.cmd(f"RCPT TO:<{ALICE}> {p}")
            self.assertIn(code, (500, 501, 555), f"RCPT ... {p!r}: {lines}")
            if code in (501, 555):
                self.assertIn("5.5.4", lines[-1], f"RCPT ... {p!r}: {lines}")
        # None of those was taken as a recipient; the session goes on.
        self.assertIn(c.cmd("DATA")[0], (503, 554))
        self.assertReply(c.cmd(f"RCPT TO:<{ALICE}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        sent = message(token())
        c.send(sent + b".\r\n")
        self.assertReply(c.reply(), 250)
        self.assertEqual(self.kotak.count("maildrop"), 1)

    def test_smtp_overlong_lines_in_ehlo_and_in_an_auth_exchange(self):
        c = self.raw("submission", ehlo=False)
        self.assertIn(c.cmd("EHLO " + "a" * 5000)[0], (500, 501))
        self.assertReply(c.cmd(f"EHLO {CLIENT}"), 250)
        self.assertReply(c.cmd("AUTH LOGIN"), 334)
        code, lines = c.cmd("A" * 6000)           # the user name line
        self.assertIn(code, (500, 501), lines)
        # The exchange is over, and the tail of that line was no command.
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertReply(c.cmd(f"AUTH PLAIN {plain(ALICE, PASSWORDS[ALICE])}"), 235)

    def test_smtp_nul_in_ehlo_auth_and_data_is_refused(self):
        c = self.raw("submission", ehlo=False)
        self.assertIn(c.cmd(b"EHLO client\x00.example")[0], (500, 501))
        self.assertReply(c.cmd(f"EHLO {CLIENT}"), 250)
        c.send(b"AUTH PLAIN " + b64(f"\0{ALICE}\0{PASSWORDS[ALICE]}").encode() + b"\x00\r\n")
        self.assertIn(c.reply()[0], (500, 501))
        self.assertReply(c.cmd(f"AUTH PLAIN {plain(ALICE, PASSWORDS[ALICE])}"), 235)
        # A NUL inside the message: refused or kept, never a cut or a second message.
        self.assertReply(c.cmd(f"MAIL FROM:<{ALICE}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        sent = message(token(), sender=ALICE, to=BOB, body=b"one\x00two\r\n\x00.\r\nthree\r\n")
        c.send(sent + b".\r\n")
        code, lines = c.reply()
        self.assertIn(code, (250, 550, 554), lines)
        bodies = self.kotak.bodies(BOB)
        if code == 250:
            self.assertEqual(len(bodies), 1)
            self.assertTrue(bodies[0].endswith(sent))
        else:
            self.assertEqual(bodies, [])
        self.assertReply(c.cmd("NOOP"), 250)

    def test_pop3_overlong_line_is_refused_once_and_its_tail_is_no_command(self):
        c = self.pop3()
        c.send(b"A" * 5000)
        self.assertTrue(c.line().startswith("-ERR"))
        c.send(b"QUIT\r\n")                       # the end of that same line
        reply = c.cmd("CAPA")
        self.assertEqual(reply, "+OK Capability list follows", "the tail became a command")
        c.multiline()
        c.send(b"B" * 600)
        time.sleep(0.1)
        c.send(b" QUIT\r\n")
        self.assertTrue(c.line().startswith("-ERR"))
        self.assertTrue(c.cmd(f"USER {ALICE}").startswith("+OK"))
        self.assertTrue(c.cmd(f"PASS {PASSWORDS[ALICE]}").startswith("+OK"))
        self.assertTrue(c.cmd("STAT").startswith("+OK 0 0"))

    def test_pop3_overlong_line_inside_a_sasl_exchange_ends_it(self):
        c = self.pop3()
        self.assertTrue(c.cmd("AUTH LOGIN").startswith("+ "))
        reply = c.cmd("A" * 5000)
        self.assertTrue(reply.startswith("-ERR"), reply)
        self.assertTrue(c.cmd("CAPA").startswith("+OK"))
        c.multiline()
        self.assertTrue(c.cmd(f"AUTH PLAIN {plain(ALICE, PASSWORDS[ALICE])}").startswith("+OK"))

    def test_pop3_nul_bytes_are_refused_and_never_log_anyone_in(self):
        c = self.pop3()
        for line in [b"CA\x00PA", b"USER alice@example.test\x00", b"\x00",
                     b"USER " + ALICE.encode() + b"\x00x"]:
            reply = c.cmd(line)
            self.assertTrue(reply.startswith("-ERR"), f"{line!r}: {reply}")
        self.assertTrue(c.cmd(f"USER {ALICE}").startswith("+OK"))
        reply = c.cmd(b"PASS " + PASSWORDS[ALICE].encode() + b"\x00")
        self.assertTrue(reply.startswith("-ERR"), reply)
        reply = c.cmd(f"AUTH PLAIN {plain(ALICE, PASSWORDS[ALICE] + chr(0))}")
        self.assertTrue(reply.startswith("-ERR"), reply)
        reply = c.cmd(f"AUTH PLAIN {plain(ALICE, PASSWORDS[ALICE])}")
        self.assertTrue(reply.startswith("+OK"), reply)
        self.assertTrue(c.cmd("NO\x00OP").startswith("-ERR"))
        self.assertTrue(c.cmd("STAT").startswith("+OK"))
        self.assertTrue(self.kotak.running("pop3d"))


# --- HTTP on the mail ports ----------------------------------------------------

HTTP_GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def http_post(body, port=25):
    return (b"POST /form HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % (port, len(body))) + body


SMTP_BODY = (b"EHLO attacker.example\r\nMAIL FROM:<a@remote.example>\r\n"
             b"RCPT TO:<alice@example.test>\r\nDATA\r\nSubject: cross-protocol\r\n\r\n"
             b"from a web page\r\n.\r\nQUIT\r\n")
POP3_BODY = b"CAPA\r\nUSER alice@example.test\r\nPASS guess\r\nQUIT\r\n"


class HttpOnMailPortsTest(AttackTest):
    def conversation(self, listener, request, timeout=5):
        """Sends the request after the greeting; returns (closed, greeting, the lines that came back)."""
        tls = listener in ("submissions", "pop3s")
        c = RawClient(self.port(listener), tls_context=self.kotak.ssl_context() if tls else None)
        self.addCleanup(c.close)
        greeting = c.readline()
        c.send(request)
        closed, got = c.read_until_closed(timeout)
        return closed, greeting, got.decode("utf-8", "replace").split("\r\n")[:-1]

    def assertOnlyErrors(self, listener, lines, request):
        self.assertTrue(lines, f"no reply on {listener}")
        for line in lines:
            if listener.startswith("pop3"):
                self.assertTrue(line.startswith("-ERR"), f"{listener}: {line!r} to {request!r}")
            else:
                self.assertRegex(line, r"^[45]\d\d[ -]", f"{listener}: {line!r} to {request!r}")

    @config(limits={"bad_commands": "3"})
    def test_http_get_on_every_mail_port_gets_errors_and_a_close(self):
        for listener in ("smtp", "submission", "submissions", "pop3", "pop3s"):
            closed, greeting, lines = self.conversation(listener, HTTP_GET)
            self.assertTrue(closed, f"{listener}: still open after {lines}")
            self.assertOnlyErrors(listener, lines, HTTP_GET)
            # Closed at once or by the bad-commands limit: a goodbye either way.
            if not listener.startswith("pop3"):
                self.assertRegex(lines[-1], r"^421 4\.7\.0 ")
        self.assertNothingStored()
        self.assertServing()

    @config(limits={"bad_commands": "3"})
    def test_http_post_with_a_body_on_every_mail_port_gets_errors_and_a_close(self):
        body = b"name=value&other=" + b"x" * 200 + b"\r\n"
        for listener in ("smtp", "submission", "submissions", "pop3", "pop3s"):
            request = http_post(body, self.port(listener))
            closed, greeting, lines = self.conversation(listener, request)
            self.assertTrue(closed, f"{listener}: still open after {lines}")
            self.assertOnlyErrors(listener, lines, request)
        self.assertNothingStored()
        self.assertServing()

    # A web page can make a browser POST to any host:port; with the default
    # limits, the lines of such a request must not let its body be run as a
    # mail conversation (cross-protocol attack).

    def test_http_post_carrying_smtp_commands_to_the_mx_port_runs_none_of_them(self):
        request = http_post(SMTP_BODY, self.port("smtp"))
        closed, greeting, lines = self.conversation("smtp", request)
        self.assertNothingStored()
        self.assertOnlyErrors("smtp", lines, request)
        self.assertTrue(closed, "the connection stayed open")
        self.assertServing()

    def test_http_post_carrying_smtp_commands_to_submission_runs_none_of_them(self):
        request = http_post(SMTP_BODY, self.port("submission"))
        closed, greeting, lines = self.conversation("submission", request)
        self.assertNothingStored()
        self.assertOnlyErrors("submission", lines, request)
        self.assertTrue(closed, "the connection stayed open")

    def test_http_post_carrying_pop3_commands_runs_none_of_them(self):
        request = http_post(POP3_BODY, self.port("pop3"))
        closed, greeting, lines = self.conversation("pop3", request)
        self.assertOnlyErrors("pop3", lines, request)
        self.assertTrue(closed, "the connection stayed open")
        self.assertServing()


# --- slowloris and half-finished TLS handshakes --------------------------------


class SlowClientTest(AttackTest):
    CONFIG = {
        "limits": {"idle_timeout": "2s", "pop3_idle_timeout": "2s",
                   "tls_handshake_timeout": "2s"},
        "auth": {"failure_delay": "300ms"},
    }

    def trickle(self, sock, data, interval, bound, probe):
        """Sends data one byte every interval seconds until the server closes or
        bound seconds pass; between bytes runs probe() (another client) and
        keeps its times. Returns (closed, seconds until closed, probe times, what came back)."""
        sock.settimeout(interval)
        start = time.monotonic()
        times, got = [], b""
        i = 0
        while time.monotonic() - start < bound:
            try:
                sock.sendall(data[i % len(data):i % len(data) + 1])
            except OSError:
                return True, time.monotonic() - start, times, got
            i += 1
            next_byte = time.monotonic() + interval
            times.append(probe())
            while time.monotonic() < next_byte:
                sock.settimeout(max(0.01, next_byte - time.monotonic()))
                try:
                    chunk = sock.recv(4096)
                except socket.timeout:
                    break
                except (ConnectionResetError, ssl.SSLError):
                    return True, time.monotonic() - start, times, got
                if not chunk:
                    return True, time.monotonic() - start, times, got
                got += chunk
        return False, time.monotonic() - start, times, got

    def open_plain(self, listener):
        s = socket.create_connection(("127.0.0.1", self.port(listener)), timeout=SOCKET_TIMEOUT)
        self.addCleanup(s.close)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.recv(1024)   # the greeting
        return s

    def assertFreedAndOthersServed(self, result, limit):
        closed, elapsed, times, got = result
        self.assertTrue(closed, f"a client sending a byte a second held its connection for "
                                f"{elapsed:.1f} s (never closed); received {got[:200]!r}")
        self.assertLess(elapsed, limit, f"closed only after {elapsed:.1f} s")
        self.assertTrue(times)
        self.assertLess(max(times), NORMAL_LATENCY, f"other clients waited: {times}")

    def test_smtp_a_byte_every_3_s_is_closed_after_the_first_gap(self):
        s = self.open_plain("smtp")
        result = self.trickle(s, b"NOOP NOOP NOOP", 3.0, 8, self.mx_round_trip)
        self.assertFreedAndOthersServed(result, 4)
        self.assertIn(b"421 4.4.2", result[3])

    def test_smtp_slowloris_a_byte_every_second_is_closed_while_others_are_served(self):
        # Each byte comes within idle_timeout of the last, but no command ever
        # ends: the wait for one command is bounded too (RFC 5321 4.5.3.2.7).
        s = self.open_plain("smtp")
        result = self.trickle(s, b"EHLO slow.example.net", 1.0, 5.5, self.mx_round_trip)
        self.assertFreedAndOthersServed(result, 5)

    def test_smtp_slowloris_inside_data_is_closed_while_others_are_served(self):
        c = self.raw()
        c.send(f"MAIL FROM:<{REMOTE}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n")
        self.assertEqual([r[0] for r in c.replies(3)], [250, 250, 354])
        result = self.trickle(c.sock, b"Subject: slow\r\n", 1.0, 5.5, self.mx_round_trip)
        self.assertFreedAndOthersServed(result, 5)
        self.assertNothingStored()

    def test_pop3_a_byte_every_3_s_is_closed_after_the_first_gap(self):
        s = self.open_plain("pop3")
        result = self.trickle(s, b"CAPA", 3.0, 8, self.pop3_round_trip)
        self.assertFreedAndOthersServed(result, 4)

    def test_pop3_slowloris_a_byte_every_second_is_closed_while_others_are_served(self):
        s = self.open_plain("pop3")
        result = self.trickle(s, b"USER alice@example.test", 1.0, 5.5, self.pop3_round_trip)
        self.assertFreedAndOthersServed(result, 5)

    def client_hello(self):
        """The first flight of a real TLS client, as bytes."""
        ctx = self.kotak.ssl_context()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)
        with self.assertRaises(ssl.SSLWantReadError):
            obj.do_handshake()
        hello = outgoing.read()
        self.assertGreater(len(hello), 100)
        return hello

    def smtps_round_trip(self):
        start = time.monotonic()
        with RawClient(self.port("submissions"), timeout=5,
                       tls_context=self.kotak.ssl_context()) as c:
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd(f"EHLO {CLIENT}")[0], 250)
            self.assertEqual(c.cmd("QUIT")[0], 221)
        return time.monotonic() - start

    def pop3s_round_trip(self):
        start = time.monotonic()
        with Pop3Raw(self.port("pop3s"), timeout=5, tls_context=self.kotak.ssl_context()) as c:
            self.assertTrue(c.line().startswith("+OK"))
            self.assertTrue(c.cmd("QUIT").startswith("+OK"))
        return time.monotonic() - start

    def test_half_finished_tls_handshakes_are_freed_while_others_are_served(self):
        """With tls_handshake_timeout 2 s, at the same time: half a ClientHello on
        465 and 995, nothing at all on 995, a ClientHello trickled a byte every
        0.25 s on 465, and half a ClientHello after STLS (110) and STARTTLS
        (587). Each is closed after about 2 s; other TLS clients are served
        at normal speed meanwhile."""
        hello = self.client_hello()
        half = hello[:len(hello) // 2]
        conns = {}

        def connect(listener):
            s = socket.create_connection(("127.0.0.1", self.port(listener)),
                                         timeout=SOCKET_TIMEOUT)
            self.addCleanup(s.close)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s

        start = time.monotonic()
        conns["465, half a ClientHello"] = connect("submissions")
        conns["465, half a ClientHello"].sendall(half)
        conns["995, half a ClientHello"] = connect("pop3s")
        conns["995, half a ClientHello"].sendall(half)
        conns["995, nothing"] = connect("pop3s")
        conns["465, a ClientHello trickled"] = connect("submissions")
        p = self.pop3()
        self.assertTrue(p.cmd("STLS").startswith("+OK"))
        p.send(half)
        conns["110, STLS and half a ClientHello"] = p.sock
        c = self.raw("submission")
        self.assertReply(c.cmd("STARTTLS"), 220)
        c.send(half)
        conns["587, STARTTLS and half a ClientHello"] = c.sock
        closed_at, times = {}, []
        sent = 0
        while time.monotonic() - start < 6 and len(closed_at) < len(conns):
            times.append(self.smtps_round_trip())
            times.append(self.pop3s_round_trip())
            trickled = conns["465, a ClientHello trickled"]
            if "465, a ClientHello trickled" not in closed_at and sent < len(hello):
                try:
                    trickled.sendall(hello[sent:sent + 1])
                    sent += 1
                except OSError:
                    closed_at["465, a ClientHello trickled"] = time.monotonic() - start
            ready, _, _ = select.select([s for n, s in conns.items() if n not in closed_at],
                                        [], [], 0.25)
            for name, s in conns.items():
                if s in ready and name not in closed_at:
                    try:
                        data = s.recv(4096)
                    except (ConnectionResetError, ssl.SSLError):
                        data = b""
                    if not data:
                        closed_at[name] = time.monotonic() - start
        still_open = sorted(set(conns) - set(closed_at))
        self.assertEqual(still_open, [], f"not freed within 6 s: {still_open}")
        for name, t in closed_at.items():
            self.assertGreaterEqual(t, 1.5, f"{name}: closed after {t:.2f} s")
            self.assertLess(t, 4, f"{name}: closed only after {t:.2f} s")
        self.assertLess(max(times), NORMAL_LATENCY, f"other clients waited: {times}")
        self.assertLess(self.pop3_round_trip(), NORMAL_LATENCY)
        self.assertLess(self.mx_round_trip(), NORMAL_LATENCY)


# --- login brute force --------------------------------------------------------


class BruteForceTest(AttackTest):
    def smtp_auth_login(self, c, user, password):
        self.assertReply(c.cmd("AUTH LOGIN"), 334)
        self.assertReply(c.cmd(b64(user)), 334)
        start = time.monotonic()
        got = c.cmd(b64(password))
        return got, time.monotonic() - start

    def pop3_pass(self, c, user, password):
        self.assertTrue(c.cmd(f"USER {user}").startswith("+OK"))
        start = time.monotonic()
        reply = c.cmd(f"PASS {password}")
        return reply, time.monotonic() - start

    def assertIndistinguishable(self, replies, times):
        self.assertEqual(len(set(replies["known"])), 1, replies["known"])
        self.assertEqual(set(replies["known"]), set(replies["unknown"]),
                         "unknown users and wrong passwords get different replies")
        for kind in times:
            for t in times[kind]:
                self.assertGreaterEqual(t, 0.3 - TIMER_SLACK,
                                        f"a failure answered before failure_delay: {times}")
        diff = abs(statistics.median(times["known"]) - statistics.median(times["unknown"]))
        self.assertLess(diff, 0.15, f"the medians differ by {diff * 1000:.0f} ms: {times}")

    def test_smtp_unknown_users_and_wrong_passwords_look_and_take_the_same(self):
        c = self.raw("submission")
        replies = {"known": [], "unknown": []}
        times = {"known": [], "unknown": []}
        for i in range(5):
            for kind, user in (("known", ALICE), ("unknown", f"nobody{i}@example.test")):
                (code, lines), t = self.smtp_auth_login(c, user, f"guess-{i}")
                replies[kind].append((code, tuple(lines)))
                times[kind].append(t)
        self.assertEqual(replies["known"][0][0], 535)
        self.assertIndistinguishable(replies, times)

    def test_pop3_unknown_users_and_wrong_passwords_look_and_take_the_same(self):
        replies = {"known": [], "unknown": []}
        times = {"known": [], "unknown": []}
        c = self.pop3()
        for i in range(5):
            for kind, user in (("known", ALICE), ("unknown", f"nobody{i}@example.test")):
                reply, t = self.pop3_pass(c, user, f"guess-{i}")
                replies[kind].append(reply)
                times[kind].append(t)
        self.assertTrue(replies["known"][0].startswith("-ERR [AUTH]"), replies)
        self.assertIndistinguishable(replies, times)

    def test_pop3_unknown_users_and_wrong_passwords_look_the_same_with_auth_plain(self):
        c = self.pop3()
        replies = {"known": [], "unknown": []}
        times = {"known": [], "unknown": []}
        for i in range(3):
            for kind, user in (("known", ALICE), ("unknown", f"nobody{i}@example.test")):
                start = time.monotonic()
                replies[kind].append(c.cmd(f"AUTH PLAIN {plain(user, f'guess-{i}')}"))
                times[kind].append(time.monotonic() - start)
        self.assertIndistinguishable(replies, times)

    def test_pipelined_smtp_guesses_are_each_delayed(self):
        c = self.raw("submission")
        n = 4
        c.send("".join(f"AUTH PLAIN {plain(ALICE, f'guess-{i}')}\r\n" for i in range(n)))
        start = time.monotonic()
        stamps = []
        for _ in range(n):
            self.assertReply(c.reply(), 535)
            stamps.append(time.monotonic() - start)
        self.assertGreaterEqual(stamps[-1], n * (0.3 - TIMER_SLACK), f"answers at {stamps}")
        for a, b in zip(stamps, stamps[1:]):
            self.assertGreaterEqual(b - a, 0.25, f"answers at {stamps}")

    def test_pipelined_pop3_guesses_are_each_delayed(self):
        c = self.pop3()
        n = 4
        c.send("".join(f"USER {ALICE}\r\nPASS guess-{i}\r\n" for i in range(n)).encode())
        start = time.monotonic()
        stamps = []
        for _ in range(n):
            self.assertTrue(c.line().startswith("+OK"))
            self.assertTrue(c.line().startswith("-ERR [AUTH]"))
            stamps.append(time.monotonic() - start)
        self.assertGreaterEqual(stamps[-1], n * (0.3 - TIMER_SLACK), f"answers at {stamps}")

    @config(auth={"failure_delay": "1500ms"})
    def test_pop3_failure_delay_slows_no_other_session(self):
        other = self.pop3_login(BOB)
        c = self.pop3()
        self.assertTrue(c.cmd(f"USER {ALICE}").startswith("+OK"))
        start = time.monotonic()
        c.send(b"PASS wrong\r\n")
        time.sleep(0.1)
        rtts = []
        for _ in range(5):
            t0 = time.monotonic()
            self.assertTrue(other.cmd("NOOP").startswith("+OK"))
            rtts.append(time.monotonic() - t0)
        t0 = time.monotonic()
        third = self.pop3_login(ALICE)    # a login of the same user from elsewhere
        self.assertLess(time.monotonic() - t0, NORMAL_LATENCY)
        self.assertLess(max(rtts), 0.2, f"NOOP round trips during the delay: {rtts}")
        self.assertTrue(c.line().startswith("-ERR [AUTH]"))
        self.assertGreaterEqual(time.monotonic() - start, 1.5 - TIMER_SLACK)
        self.assertTrue(third.cmd("QUIT").startswith("+OK"))

    @config(auth={"max_failures": "3", "failure_delay": "200ms"})
    def test_pop3_lockout_after_max_failures_even_with_the_right_password(self):
        c = self.pop3()
        for i in range(3):
            reply, t = self.pop3_pass(c, ALICE, f"wrong-{i}")
            self.assertTrue(reply.startswith("-ERR [AUTH]"), reply)
        reply, t = self.pop3_pass(c, ALICE, PASSWORDS[ALICE])
        self.assertTrue(reply.startswith("-ERR [SYS/TEMP]"), reply)
        self.assertGreaterEqual(t, 0.2 - TIMER_SLACK)
        # Every way in is locked for that address: AUTH PLAIN, and 995.
        reply = c.cmd(f"AUTH PLAIN {plain(ALICE, PASSWORDS[ALICE])}")
        self.assertTrue(reply.startswith("-ERR [SYS/TEMP]"), reply)
        s = self.pop3("pop3s")
        self.assertTrue(s.cmd(f"USER {ALICE}").startswith("+OK"))
        reply = s.cmd(f"PASS {PASSWORDS[ALICE]}")
        self.assertTrue(reply.startswith("-ERR [SYS/TEMP]"), reply)
        self.assertTrue(self.kotak.wait_log(r"result=locked", name="pop3d"), self.kotak.log("pop3d"))
        # Another address is not locked (127.0.0.2 is loopback too).
        try:
            other = Pop3Raw(self.port("pop3"), source="127.0.0.2")
        except OSError as e:
            print(f"# 127.0.0.2 not usable as a source address: {e}")
            return
        self.addCleanup(other.close)
        self.assertTrue(other.line().startswith("+OK"))
        self.assertTrue(other.cmd(f"USER {ALICE}").startswith("+OK"))
        self.assertTrue(other.cmd(f"PASS {PASSWORDS[ALICE]}").startswith("+OK"))

    @config(auth={"max_failures": "2", "failure_delay": "100ms", "lockout": "1500ms"})
    def test_smtp_and_pop3_lockout_ends_after_the_lockout_time(self):
        c = self.raw("submission")
        p = self.pop3()
        # Both daemons count in one table: one failure each makes two.
        self.assertReply(c.cmd(f"AUTH PLAIN {plain(ALICE, 'wrong-0')}"), 535)
        self.assertTrue(self.pop3_pass(p, ALICE, "wrong-1")[0].startswith("-ERR [AUTH]"))
        right = f"AUTH PLAIN {plain(ALICE, PASSWORDS[ALICE])}"
        self.assertReply(c.cmd(right), 454, "4.7.0")
        self.assertTrue(p.cmd(right).startswith("-ERR [SYS/TEMP]"))
        time.sleep(1.7)
        self.assertReply(c.cmd(right), 235)
        self.assertTrue(p.cmd(right).startswith("+OK"))

    def parallel_guesses(self, attempt, n):
        results = [None] * n
        barrier = threading.Barrier(n, timeout=SOCKET_TIMEOUT)

        def run(i):
            try:
                results[i] = attempt(i, barrier)
            except Exception as e:   # reported below
                results[i] = repr(e)

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SOCKET_TIMEOUT + 5)
        self.assertFalse(any(t.is_alive() for t in threads))
        return results

    @config(auth={"max_failures": "3", "failure_delay": "300ms"})
    def test_smtp_parallel_guesses_get_no_more_than_max_failures_checked(self):
        # Eight connections guess at the same moment; the lockout counts
        # per address, so no more than max_failures guesses may be tried
        # (the others: 454), and the right password among them gets no 235.
        n = 8
        conns = [self.raw("submission") for _ in range(n)]

        def attempt(i, barrier):
            password = PASSWORDS[ALICE] if i == n - 1 else f"guess-{i}"
            line = f"AUTH PLAIN {plain(ALICE, password)}\r\n".encode()
            barrier.wait()
            if i == n - 1:
                time.sleep(0.02)   # the right one comes last
            conns[i].send(line)
            return conns[i].reply()[0]

        codes = self.parallel_guesses(attempt, n)
        self.assertTrue(all(isinstance(c, int) for c in codes), codes)
        self.assertLessEqual(codes.count(535), 3, f"guesses checked past max_failures: {codes}")
        self.assertNotEqual(codes[-1], 235, f"the 8th parallel guess logged in: {codes}")

    @config(auth={"max_failures": "3", "failure_delay": "300ms", "cache": "0s"})
    def test_an_office_behind_one_address_logging_in_at_once_is_queued_not_refused(self):
        # Eight clients behind one address log in at the same moment, all
        # with the right password: more checks than max_failures at once,
        # none of them a failure, so every one must log in (the cache is
        # off, so each pays the full check).
        n = 8
        conns = [self.raw("submission") for _ in range(n)]
        users = [ALICE, BOB] * (n // 2)

        def attempt(i, barrier):
            line = f"AUTH PLAIN {plain(users[i], PASSWORDS[users[i]])}\r\n".encode()
            barrier.wait()
            conns[i].send(line)
            return conns[i].reply()[0]

        codes = self.parallel_guesses(attempt, n)
        self.assertEqual(codes, [235] * n)

    @config(auth={"max_failures": "3", "failure_delay": "300ms"})
    def test_pop3_parallel_guesses_get_no_more_than_max_failures_checked(self):
        n = 8
        conns = [self.pop3() for _ in range(n)]
        for c in conns:
            self.assertTrue(c.cmd(f"USER {ALICE}").startswith("+OK"))

        def attempt(i, barrier):
            password = PASSWORDS[ALICE] if i == n - 1 else f"guess-{i}"
            barrier.wait()
            if i == n - 1:
                time.sleep(0.02)
            conns[i].send(f"PASS {password}\r\n".encode())
            return conns[i].line()

        replies = self.parallel_guesses(attempt, n)
        checked = [r for r in replies if isinstance(r, str) and r.startswith("-ERR [AUTH]")]
        self.assertLessEqual(len(checked), 3, f"guesses checked past max_failures: {replies}")
        self.assertFalse(replies[-1].startswith("+OK"), f"the 8th parallel guess logged in: {replies}")


if __name__ == "__main__":
    unittest.main()
