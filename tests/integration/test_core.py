"""The connection core against what a stranger on the network can do: floods
that never read, idle time during a commit, commands that move no mail,
connection floods from many addresses, certificate reloads, renegotiation.

Every test talks to the real daemons over real sockets.
"""
import os
import resource
import select
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import smtplib

from kotak_harness import (HOSTNAME, PASSWORDS, POP3, POP3_SSL, SMTP, SMTP_SSL, KotakInstance,
                           KotakTestCase, RawClient, config, free_ports, proc_status)
from peers import make_cert

ALICE = "alice@example.test"
BOB = "bob@example.test"
REMOTE = "someone@remote.example"


def message(tag):
    return (f"From: {REMOTE}\r\nTo: {ALICE}\r\nSubject: {tag}\r\n\r\n"
            f"body {tag}\r\n").encode()


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, n), hard) if hard != resource.RLIM_INFINITY else max(soft, n)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def sanitized(path):
    """Whether the binary was built with AddressSanitizer (its memory use is not ours)."""
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def submit(kotak, tag):
    """A logged-in user sends one message on 587 with STARTTLS; returns the reply."""
    with SMTP("127.0.0.1", kotak.ports["submission"], timeout=20) as s:
        s.starttls(context=kotak.ssl_context())
        s.login(ALICE, PASSWORDS[ALICE])
        return s.sendmail(ALICE, [BOB], message(tag))


class CoreTest(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def pid(self, name):
        return self.kotak.procs[name].pid

    def assertAlive(self, name):
        self.assertIsNone(self.kotak.procs[name].poll(), f"{name} died: {self.kotak.log(name)[-2000:]}")


# --- 1: output backpressure --------------------------------------------------


def flood(port, blob, n, seconds, during=None, pace=0.0):
    """n connections (from 20 addresses) send blob over and over, never
    reading, for `seconds`, a round of writes every `pace` seconds at most;
    during() runs once the flood is under way. Returns how much was sent."""
    socks = []
    for i in range(n):
        s = socket.socket()
        # A small window: what the server sends stays in its queue, not ours.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((f"127.0.2.{1 + i % 20}", 0))  # 20 addresses, under the per-address cap
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    sent = 0
    end = time.monotonic() + seconds
    started = time.monotonic()
    done_during = during is None
    try:
        while time.monotonic() < end:
            round_end = time.monotonic() + pace
            for s in socks:
                try:
                    sent += s.send(blob)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    pass
            if not done_during and time.monotonic() - started > seconds / 3:
                during()
                done_during = True
            time.sleep(max(0.0, round_end - time.monotonic()))
    finally:
        for s in socks:
            s.close()
    return sent


class BackpressureTest(CoreTest):
    # The junk limit would end a NOOP flood early; here the point is the flood.
    CONFIG = {"limits": {"junk_commands": "100000", "bad_commands": "1000"}}

    def check_flood(self, name, port, line, during, n=200, pace=0.0, size=4096, growth=None):
        """The flood leaves the daemon under 128 MiB at its peak, or, given
        growth (kB), its resident memory grew by less than that."""
        served = []
        before = proc_status(self.pid(name), "VmRSS")
        sent = flood(port, line * (size // len(line)), n, 8,
                     during=lambda: served.append(during()), pace=pace)
        self.assertAlive(name)
        asan = sanitized(self.kotak.procs[name].args[0])
        if growth is None:
            used, limit = proc_status(self.pid(name), "VmHWM"), 128 * 1024
        else:
            used, limit = proc_status(self.pid(name), "VmRSS") - before, growth
        if asan:
            limit += 256 * 1024  # the sanitizer's own quarantine and shadow memory
        self.assertLess(used, limit, f"{name} used {used} kB after {sent} octets of {line!r}")
        self.assertEqual(served, [True], "the well-behaved client was not served")

    def test_200_connections_pipelining_noop_without_reading_keep_smtpd_small(self):
        def good_client():
            return submit(self.kotak, "during the flood") == {}
        self.check_flood("smtpd", self.kotak.ports["smtp"], b"NOOP\r\n", good_client)
        self.assertEqual(len(self.kotak.bodies(BOB)), 1)

    def test_200_connections_pipelining_capa_without_reading_keep_pop3d_small(self):
        self.check_flood("pop3d", self.kotak.ports["pop3"], b"CAPA\r\n", self.pop3_client)

    def test_one_connection_pacing_capa_without_reading_keeps_pop3d_small(self):
        # Small writes the daemon keeps up with: each read holds a few
        # hundred octets of commands, each answered with 176, all unread.
        # One connection may hold 256 KiB at most; give it 4 MiB.
        self.check_flood("pop3d", self.kotak.ports["pop3"], b"CAPA\r\n", self.pop3_client,
                         n=1, pace=0.003, size=600, growth=4 * 1024)

    def pop3_client(self):
        p = POP3("127.0.0.1", self.kotak.ports["pop3"], timeout=20)
        p.stls(context=self.kotak.ssl_context())
        p.user(ALICE)
        p.pass_(PASSWORDS[ALICE])
        ok = p.stat()[0] == 0
        p.quit()
        return ok


# --- 2: idle time while a commit waits ---------------------------------------


class TimeoutDuringCommitTest(CoreTest):
    DAEMONS_TO_START = ("smtpd",)
    CONFIG = {"limits": {"idle_timeout": "1s", "junk_commands": "100000"}}

    def hold_write_lock(self, seconds):
        taken = threading.Event()

        def run():
            con = sqlite3.connect(self.kotak.db_path, timeout=10, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")
                con.execute("INSERT INTO meta(key, value) VALUES('core-test', 'busy')")
                taken.set()
                time.sleep(seconds)
                con.execute("ROLLBACK")
            finally:
                con.close()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.assertTrue(taken.wait(10))
        self.addCleanup(t.join, 15)
        return t

    def transaction(self, tag):
        return (f"MAIL FROM:<{REMOTE}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n").encode() + \
            message(tag) + b".\r\n"

    def test_a_commit_longer_than_the_idle_time_is_answered_before_the_goodbye(self):
        self.hold_write_lock(4)
        c = RawClient(self.kotak.ports["smtp"], timeout=15)
        self.assertEqual(c.reply()[0], 220)
        c.send(b"EHLO client.test\r\n" + self.transaction("slow commit"))
        time.sleep(5)  # not reading, while the idle time passes four times
        self.assertAlive("smtpd")
        codes = [c.reply()[0] for _ in range(4)]  # EHLO, MAIL, RCPT, DATA
        self.assertEqual(codes, [250, 250, 250, 354])
        code, lines = c.reply()
        self.assertIn(code // 100, (2, 4), lines)
        self.assertNotEqual(lines[-1][:9], "421 4.4.2", "the idle goodbye came before the answer")
        if code == 250:
            self.assertEqual(len(self.kotak.bodies(ALICE)), 1)
        # Then the idle time runs from the answer, and ends the session.
        closed, rest = c.read_until_closed(5)
        self.assertTrue(closed)
        self.assertIn(b"421 4.4.2", rest)
        self.assertAlive("smtpd")

    def test_idle_goodbye_with_output_queued_while_a_commit_waits_does_not_crash(self):
        # Replies that the client does not read keep the connection closing
        # for a while after the goodbye; the commit's result lands in that time.
        self.hold_write_lock(4)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.kotak.ports["smtp"]))
        s.settimeout(0.2)
        # In small writes, so that each read is a few replies' worth: they pile
        # up unsent, and then the transaction starts its commit.
        chunks = [b"NOOP\r\n" * 680] * 250 + [self.transaction("queued output")]
        end = time.monotonic() + 6
        for chunk in chunks:
            try:
                s.sendall(chunk)
            except socket.timeout:
                break  # the server stopped reading: the rest stays unsent
            except OSError:
                break
            time.sleep(0.002)
        time.sleep(max(0.0, end - time.monotonic()))
        s.close()
        self.assertAlive("smtpd")
        c = RawClient(self.kotak.ports["smtp"])
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("NOOP")[0], 250)
        c.close()
        self.assertNotIn("ERROR: AddressSanitizer", self.kotak.log("smtpd"))


# --- 8: limits that cannot be walked around -----------------------------------


class JunkAndErrorLimitTest(CoreTest):
    DAEMONS_TO_START = ("smtpd",)

    @config(limits={"junk_commands": "5", "bad_commands": "3"})
    def test_past_junk_commands_each_noop_counts_as_an_error(self):
        c = RawClient(self.kotak.ports["smtp"])
        c.reply()
        for i in range(7):
            self.assertEqual(c.cmd("NOOP")[0], 250, f"NOOP {i + 1}")
        self.assertEqual(c.cmd("RSET")[0], 250)
        code, lines = c.reply()
        self.assertEqual(code, 421, lines)
        self.assertIn("4.7.0", lines[-1])
        self.assertTrue(c.read_until_closed(3)[0])

    @config(limits={"junk_commands": "5", "bad_commands": "3"})
    def test_mail_commands_are_not_junk(self):
        c = RawClient(self.kotak.ports["smtp"])
        c.reply()
        c.cmd("EHLO client.test")
        for i in range(4):
            self.assertEqual(c.cmd(f"MAIL FROM:<{REMOTE}>")[0], 250)
            self.assertEqual(c.cmd(f"RCPT TO:<{ALICE}>")[0], 250)
            self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertEqual(c.cmd("QUIT")[0], 221)

    @config(limits={"idle_timeout": "2s", "min_data_rate": "500", "connections": "24",
                    "connections_per_address": "100", "stress_idle_timeout": "1s"})
    def test_data_trickled_a_line_at_a_time_loses_its_slot_and_stores_nothing(self):
        # Every slot of port 25 held in DATA by a line each second, the idle
        # time never reached: each one ends past idle_timeout + 1 s per 500 octets.
        clients = []
        for i in range(20):
            c = RawClient(self.kotak.ports["smtp"])
            c.reply()
            c.cmd("EHLO trickle.test")
            self.assertEqual(c.cmd(f"MAIL FROM:<{REMOTE}>")[0], 250)
            self.assertEqual(c.cmd(f"RCPT TO:<{ALICE}>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            clients.append(c)
        t0 = time.monotonic()
        cut = set()
        while len(cut) < len(clients) and time.monotonic() - t0 < 15:
            for i, c in enumerate(clients):
                if i in cut:
                    continue
                try:
                    c.send(b"x\r\n")
                except OSError:
                    cut.add(i)
            time.sleep(1)
            for i, c in enumerate(clients):
                if i not in cut and select.select([c.sock], [], [], 0)[0]:
                    code, lines = c.reply()
                    self.assertEqual(code, 421, lines)
                    self.assertIn("4.4.2", lines[-1])
                    cut.add(i)
        self.assertEqual(len(cut), len(clients), "trickling clients kept their slots")
        self.assertLess(time.monotonic() - t0, 10)
        # A real sender is served, and nothing of the trickles was stored.
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=20) as s:
            s.sendmail(REMOTE, [ALICE], message("after the trickles"))
        self.assertEqual(len(self.kotak.maildrop(ALICE)), 1)
        self.assertRegex(self.kotak.log("smtpd"), r"event=data-too-slow")
        for c in clients:
            c.close()

    @config(limits={"hard_errors": "5"})
    def test_unknown_recipients_count_toward_the_hard_error_limit(self):
        c = RawClient(self.kotak.ports["smtp"])
        c.reply()
        c.cmd("EHLO client.test")
        self.assertEqual(c.cmd(f"MAIL FROM:<{REMOTE}>")[0], 250)
        for i in range(4):
            code, lines = c.cmd(f"RCPT TO:<guess{i}@example.test>")
            self.assertEqual(code, 550, lines)
        self.assertEqual(c.cmd("RCPT TO:<guess4@example.test>")[0], 550)
        code, lines = c.reply()
        self.assertEqual(code, 421, lines)
        self.assertTrue(c.read_until_closed(3)[0])

    def test_defaults_are_documented_values(self):
        c = RawClient(self.kotak.ports["smtp"])
        c.reply()
        for i in range(100):
            self.assertEqual(c.cmd("NOOP")[0], 250)
        # Past 100, each counts: ten errors (bad_commands) end the session.
        codes = [c.cmd("NOOP")[0] for _ in range(9)]
        self.assertEqual(codes, [250] * 9)
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertEqual(c.reply()[0], 421)


def add_loopback_v6(*addresses):
    """Adds addresses to lo (root only); returns a function that removes them."""
    added = []
    for a in addresses:
        r = subprocess.run(["ip", "-6", "addr", "add", f"{a}/128", "dev", "lo", "nodad"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            added.append(a)
        elif "File exists" not in r.stderr:
            raise unittest.SkipTest(f"cannot add {a} to lo: {r.stderr.strip()}")

    def remove():
        for a in added:
            subprocess.run(["ip", "-6", "addr", "del", f"{a}/128", "dev", "lo"],
                           capture_output=True)
    return remove


V6_SERVER = "fd6b:6f74:616b::1"
V6_SAME_64 = ("fd6b:6f74:616b::2", "fd6b:6f74:616b:0:ffff::3")
V6_OTHER_64 = "fd6b:6f74:616b:1::2"


class PerAddressPrefixTest(KotakTestCase):
    DAEMONS_TO_START = ("smtpd",)

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("adding IPv6 addresses to lo needs root")
        self.addCleanup(add_loopback_v6(V6_SERVER, *V6_SAME_64, V6_OTHER_64))
        port, tls_port = free_ports(2)
        self.CONFIG = {"smtp": {"listen": f"127.0.0.1:{port}, [{V6_SERVER}]:{port}"},
                       "submissions": {"listen": f"127.0.0.1:{tls_port}, [{V6_SERVER}]:{tls_port}"},
                       "limits": {"connections_per_address": "2"},
                       "auth": {"max_failures": "2", "failure_delay": "100ms"}}
        super().setUp()

    def login_from(self, source, password):
        """AUTH on 465 from source: the reply code."""
        try:
            with SMTP_SSL(V6_SERVER, self.kotak.ports["submissions"], timeout=20,
                          context=self.kotak.ssl_context(), source_address=(source, 0)) as s:
                s.login(ALICE, password)
                return 235
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code

    def test_failed_logins_count_an_ipv6_64_as_one_client(self):
        # smtplib tries PLAIN, then LOGIN: two failures, max_failures.
        self.assertEqual(self.login_from(V6_SAME_64[0], "wrong"), 535)
        # Another host of the same /64, with the right password: locked out.
        self.assertEqual(self.login_from(V6_SAME_64[1], PASSWORDS[ALICE]), 454)
        # Another /64 is another client.
        self.assertEqual(self.login_from(V6_OTHER_64, PASSWORDS[ALICE]), 235)

    def test_connections_per_address_counts_an_ipv6_64_as_one_client(self):
        port = self.kotak.ports["smtp"]
        held = [RawClient(port, host=V6_SERVER, source=V6_SAME_64[0]),
                RawClient(port, host=V6_SERVER, source=V6_SAME_64[0])]
        for c in held:
            self.assertEqual(c.reply()[0], 220)
        third = RawClient(port, host=V6_SERVER, source=V6_SAME_64[1])
        code, lines = third.reply()
        self.assertEqual(code, 421, f"another host of the same /64 was let in: {lines}")
        other = RawClient(port, host=V6_SERVER, source=V6_OTHER_64)
        self.assertEqual(other.reply()[0], 220, "a client of another /64 was refused")
        for c in held + [third, other]:
            c.close()


# --- 9: a connection flood from many addresses ---------------------------------


class ConnectionFloodTest(CoreTest):
    CONFIG = {"limits": {"stress_idle_timeout": "3s"}}

    def setUp(self):
        raise_fd_limit(8192)
        super().setUp()

    def open_flood(self, port, n, addresses):
        socks = []
        for i in range(n):
            s = socket.socket()
            s.bind((f"127.0.1.{1 + i % addresses}", 0))
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        self.addCleanup(lambda: [s.close() for s in socks])
        return socks

    def test_1100_idle_connections_on_25_and_110_leave_587_and_995_to_their_users(self):
        smtp_flood = self.open_flood(self.kotak.ports["smtp"], 1100, 60)
        pop3_flood = self.open_flood(self.kotak.ports["pop3"], 1100, 60)
        time.sleep(1)
        self.assertAlive("smtpd")
        self.assertAlive("pop3d")
        # A user on 587 logs in and sends; one on 995 logs in and reads it.
        self.assertEqual(submit(self.kotak, "through the flood"), {})
        p = POP3_SSL("127.0.0.1", self.kotak.ports["pop3s"], context=self.kotak.ssl_context(),
                     timeout=20)
        p.user(BOB)
        p.pass_(PASSWORDS[BOB])
        self.assertEqual(p.stat()[0], 1)
        self.assertIn(b"through the flood", b"\n".join(p.retr(1)[1]))
        p.quit()
        # A new client on the flooded port is served too: the oldest idle
        # connection that had not logged in made room for it.
        c = RawClient(self.kotak.ports["smtp"])
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assertRegex(self.kotak.log("smtpd"), r"event=dropped reason=make-room")
        # Under that pressure the flood's idle time is the short one.
        sample = smtp_flood[-1]
        sample.settimeout(8)
        got = b""
        try:
            while True:
                chunk = sample.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        self.assertIn(b"421 4.4.2", got, "the flood kept its full idle time under stress")
        self.assertRegex(self.kotak.log("smtpd"), r"event=stress-begins")
        self.assertTrue(pop3_flood)

    @config(limits={"connections_per_address": "2"})
    def test_a_refusal_on_a_tls_port_is_a_close_never_plaintext(self):
        held = [socket.create_connection(("127.0.0.1", self.kotak.ports["submissions"]))
                for _ in range(2)]
        self.addCleanup(lambda: [s.close() for s in held])
        for name in ("submissions", "pop3s"):
            extra = [socket.create_connection(("127.0.0.1", self.kotak.ports[name]))
                     for _ in range(3 if name == "pop3s" else 1)]
            s = extra[-1]
            s.settimeout(5)
            got = s.recv(100)
            self.assertEqual(got, b"", f"{name} answered a refused TLS client in plaintext: {got!r}")
            for e in extra:
                e.close()
        # The plaintext ports still say why.
        more = [RawClient(self.kotak.ports["smtp"]) for _ in range(3)]
        self.assertEqual(more[-1].reply()[0], 421)
        for c in more:
            c.close()


# --- 11: SIGHUP reloads the certificate; renegotiation is refused ----------------


def peer_cert(port, kotak, implicit=True):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOSTNAME) as s:
            return s.getpeercert(binary_form=True)


class ReloadTest(CoreTest):
    def replace_pair(self):
        other = KotakInstance(users=False, prefix="kotak-other-")
        self.addCleanup(other.close)
        other.kotak("init", "--hostname", HOSTNAME)
        for name in ("cert.pem", "key.pem"):
            with open(os.path.join(other.data_dir, name), "rb") as f:
                data = f.read()
            with open(os.path.join(self.kotak.data_dir, name), "wb") as f:
                f.write(data)

    def test_sighup_loads_the_new_pair_and_open_sessions_go_on(self):
        old = {n: peer_cert(self.kotak.ports[n], self.kotak) for n in ("submissions", "pop3s")}
        c = RawClient(self.kotak.ports["submission"])
        c.reply()
        c.cmd("EHLO client.test")
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        c.starttls(self.kotak.ssl_context())
        self.replace_pair()
        for name in ("smtpd", "pop3d"):
            os.kill(self.pid(name), signal.SIGHUP)
        for name in ("smtpd", "pop3d"):
            self.kotak.wait_log("event=tls-reload result=ok", name=name)
            self.assertAlive(name)
        self.assertEqual(c.cmd("EHLO client.test")[0], 250, "the open session broke")
        c.close()
        for n in ("submissions", "pop3s"):
            self.assertNotEqual(peer_cert(self.kotak.ports[n], self.kotak), old[n],
                                f"{n} still shows the old certificate")

    def test_a_renewed_pair_on_disk_is_loaded_without_a_signal(self):
        for name in ("smtpd", "pop3d"):
            self.assertTrue(self.kotak.wait_log(
                r"event=cert cert=\S+ expires=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ days_left=\d+$",
                name=name), "the expiry is logged at start")
        old = {n: peer_cert(self.kotak.ports[n], self.kotak) for n in ("submissions", "pop3s")}
        self.replace_pair()  # as a renewal writes it, no signal sent
        for name in ("smtpd", "pop3d"):
            self.assertTrue(self.kotak.wait_log("event=cert-changed", name=name, timeout=10),
                            self.kotak.log(name))
            self.assertTrue(self.kotak.wait_log("event=tls-reload result=ok", name=name, timeout=5))
        for n in ("submissions", "pop3s"):
            self.assertNotEqual(peer_cert(self.kotak.ports[n], self.kotak), old[n],
                                f"{n} still shows the old certificate")

    def test_a_busy_folder_does_not_put_off_the_renewed_pair(self):
        # The store's files change beside the certificate all day; a renewal among
        # them is still loaded a second or so after it, not once the folder is quiet.
        self.replace_pair()
        noise = os.path.join(self.kotak.data_dir, "noise")
        end = time.monotonic() + 6
        seen = False
        while time.monotonic() < end and not seen:
            with open(noise, "a") as f:
                f.write("x")
            time.sleep(0.2)
            seen = "event=cert-changed" in self.kotak.log("smtpd")
        os.remove(noise)
        self.assertTrue(seen, "the renewal waited for the folder to be quiet")

    def test_a_certificate_close_to_its_end_is_warned_of(self):
        with tempfile.TemporaryDirectory() as d:
            cert, key = make_cert(d, HOSTNAME, days=3)
            for src, name in ((cert, "cert.pem"), (key, "key.pem")):
                with open(src, "rb") as f, open(os.path.join(self.kotak.data_dir, name), "wb") as g:
                    g.write(f.read())
        os.kill(self.pid("smtpd"), signal.SIGHUP)
        found = self.kotak.wait_log(r"level=warn .*event=cert .*days_left=[0-3] "
                                    r"reason=\"renew it soon\"", name="smtpd")
        self.assertTrue(found, self.kotak.log("smtpd"))

    def test_a_bad_new_pair_keeps_the_old_one_with_one_error_line(self):
        old = peer_cert(self.kotak.ports["submissions"], self.kotak)
        # A renewal gone wrong: the key of another certificate.
        other = KotakInstance(users=False, prefix="kotak-other-")
        self.addCleanup(other.close)
        other.kotak("init", "--hostname", HOSTNAME)
        with open(os.path.join(other.data_dir, "key.pem"), "rb") as f:
            key = f.read()
        with open(os.path.join(self.kotak.data_dir, "key.pem"), "wb") as f:
            f.write(key)
        os.kill(self.pid("smtpd"), signal.SIGHUP)
        self.kotak.wait_log("event=tls-reload result=failed", name="smtpd")
        self.assertAlive("smtpd")
        self.assertEqual(peer_cert(self.kotak.ports["submissions"], self.kotak), old)
        lines = [l for l in self.kotak.log("smtpd").splitlines() if "tls-reload" in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("level=error", lines[0])
        self.assertEqual(submit(self.kotak, "after a bad reload"), {})

    def test_a_renegotiation_request_gets_the_no_renegotiation_alert(self):
        p = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.kotak.ports['submissions']}",
             "-tls1_2", "-msg", "-no_ign_eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.5)  # the greeting has arrived: nothing else is in flight
        p.stdin.write("R\n")
        p.stdin.flush()
        time.sleep(1.5)
        p.stdin.close()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.fail("the renegotiation request got no answer: the client still waits")
        finally:
            out = p.stdout.read()
        p.stdout.close()
        self.assertIn("RENEGOTIATING", out, out[-2000:])
        self.assertRegex(out, r"(?i)no[_ ]renegotiation", out[-3000:])
        self.assertAlive("smtpd")


# --- found by review: closing with output queued, listeners after a stop,
# --- renegotiation floods, sessions that only look engaged, the lockout file --


def tls_over_bio(kotak, port, rcvbuf=2048):
    """A TLS client whose raw bytes the test controls: (socket, SSLObject, outgoing BIO)."""
    ctx = ssl.create_default_context(cafile=kotak.cert)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.settimeout(10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    o = ctx.wrap_bio(inc, out, server_hostname=HOSTNAME)
    while True:
        try:
            o.do_handshake()
            break
        except ssl.SSLWantReadError:
            data = out.read()
            if data:
                s.sendall(data)
            inc.write(s.recv(65536))
    data = out.read()
    if data:
        s.sendall(data)
    return s, o, out


class ReviewFindingsTest(CoreTest):
    CONFIG = {"limits": {"junk_commands": "100000", "bad_commands": "1000"}}

    def test_a_broken_tls_record_with_replies_queued_does_not_crash(self):
        for name, listener, line in (("pop3d", "pop3s", b"CAPA\r\n"),
                                     ("smtpd", "submissions", b"EHLO x\r\n")):
            s, o, out = tls_over_bio(self.kotak, self.kotak.ports[listener])
            time.sleep(0.2)
            for _ in range(12):  # answers never read: some wait inside the daemon
                o.write(line * 1500)
                s.sendall(out.read())
                time.sleep(0.2)
            s.sendall(b"\x17\x03\x03\x00\x40" + os.urandom(64))  # fails its MAC
            time.sleep(1)
            s.close()
            self.assertAlive(name)

    def test_stopping_with_a_goodbye_still_queued_is_clean(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        s.connect(("127.0.0.1", self.kotak.ports["smtp"]))
        s.settimeout(0.2)
        for _ in range(400):  # more answers than the kernel's buffers hold
            try:
                s.sendall(b"EHLO x\r\n" * 100)
            except socket.timeout:
                break  # the daemon stopped reading: its output is full
            time.sleep(0.005)
        time.sleep(0.3)
        # The goodbye waits out the close grace (10 s) for the client that never reads.
        self.assertEqual(self.kotak.stop("smtpd", timeout=25), 0, self.kotak.log("smtpd")[-2000:])
        self.assertNotIn("AddressSanitizer", self.kotak.log("smtpd"))
        s.close()

    def test_a_tls_handshake_that_ends_during_the_stop_is_told_goodbye_not_crashed_on(self):
        for name, listener, goodbye in (("smtpd", "submissions", b"421 "),
                                        ("pop3d", "pop3s", b"-ERR ")):
            raw = socket.create_connection(("127.0.0.1", self.kotak.ports[listener]), timeout=10)
            time.sleep(0.3)  # accepted, its handshake not begun: no session yet
            os.kill(self.pid(name), signal.SIGTERM)
            time.sleep(0.5)
            t = self.kotak.ssl_context().wrap_socket(raw, server_hostname=HOSTNAME)
            f = t.makefile("rb")
            self.assertTrue(f.readline().startswith((b"220 ", b"+OK")))
            self.assertTrue(f.readline().startswith(goodbye))
            t.close()
            self.assertEqual(self.kotak.stop(name, timeout=20), 0, self.kotak.log(name)[-2000:])
            self.assertNotIn("runtime error", self.kotak.log(name))

    def test_renegotiation_requests_end_the_connection_and_hold_no_memory(self):
        before = proc_status(self.pid("smtpd"), "VmRSS")
        p = subprocess.run(
            ["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "renegotiate.py"),
             self.kotak.cert, HOSTNAME, str(self.kotak.ports["submissions"]), "8"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertAlive("smtpd")
        grown = proc_status(self.pid("smtpd"), "VmRSS") - before
        self.assertLess(grown, 8 * 1024, f"smtpd grew by {grown} kB: {p.stdout}")
        self.assertIn("closed=1", p.stdout, "the renegotiating client was never closed on")
        self.assertRegex(self.kotak.log("smtpd"), r"event=tls-noise")

    def test_truncating_the_lockout_file_clears_it_and_crashes_nothing(self):
        os.truncate(os.path.join(self.kotak.data_dir, "login-failures"), 0)
        p = POP3("127.0.0.1", self.kotak.ports["pop3"], timeout=20)
        p.user(ALICE)
        with self.assertRaises(Exception):
            p.pass_("wrong")
        p.close()
        time.sleep(0.3)
        self.assertAlive("pop3d")
        p = POP3("127.0.0.1", self.kotak.ports["pop3"], timeout=20)
        p.user(ALICE)
        p.pass_(PASSWORDS[ALICE])
        p.quit()


class EngagedFloodTest(CoreTest):
    DAEMONS_TO_START = ("smtpd",)
    CONFIG = {"limits": {"connections": "48", "connections_per_address": "100",
                         "stress_idle_timeout": "1s"}}

    def test_mail_from_without_login_does_not_keep_a_slot_under_stress(self):
        held = []
        for i in range(60):
            try:
                c = RawClient(self.kotak.ports["smtp"], source=f"127.0.3.{1 + i % 30}")
                if c.reply()[0] != 220:
                    c.close()
                    continue
                c.cmd("EHLO flood.test")
                c.cmd("MAIL FROM:<>")
                held.append(c)
            except (OSError, EOFError):
                pass
        time.sleep(3)  # past the stress idle time
        alive = 0
        for c in held:
            closed, _ = c.read_until_closed(0.2)
            alive += not closed
            c.close()
        self.assertEqual(alive, 0, f"{alive} MAIL-only sessions kept their slots under stress")


if __name__ == "__main__":
    unittest.main()
