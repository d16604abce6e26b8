"""Fault tests (issue 5, item 3): kill -9 under load, kill -9 during a POP3
UPDATE, a full store, a busy store and a failing spool, against the real
daemons. The rule they all check: nothing acknowledged is lost, nothing is
stored twice or in part, and normal service comes back by itself.

Run: KOTAK_BUILD=build python3 tests/tap_unittest.py tests/integration/test_faults.py
"""
import resource
import signal
import smtplib
import sqlite3
import subprocess
import threading
import time
import unittest
import uuid

from kotak_harness import (DAEMONS, PASSWORDS, SOCKET_TIMEOUT, KotakTestCase, RawClient,
                           clean_env, rewrite_config, split_trace)

ALICE = "alice@example.test"
BOB = "bob@example.test"
SALES = "sales@example.test"   # an alias of alice and bob
REMOTE = "sender@remote.example"
CLIENT = "client.example.net"

BASE_CONFIG = {
    "limits": {"idle_timeout": "15s", "pop3_idle_timeout": "15s"},
    "auth": {"failure_delay": "300ms"},
}


def token():
    return uuid.uuid4().hex


def message(tok, body=b"Hello.\r\n", to=ALICE):
    head = (f"From: <{REMOTE}>\r\nTo: <{to}>\r\nSubject: {tok}\r\n"
            f"Message-ID: <{tok}@remote.example>\r\n\r\n")
    return head.encode("ascii") + body


def after_trace(stored):
    """The stored message without kotak's trace: Return-Path:, the
    MX's Authentication-Results: and Received:."""
    return split_trace(stored)[3]


class Pop3Raw(RawClient):
    def line(self):
        return self.readline().rstrip(b"\r\n").decode("utf-8", "replace")

    def cmd(self, line):
        self.send((line.encode("utf-8") if isinstance(line, str) else line) + b"\r\n")
        return self.line()


class FaultTest(KotakTestCase):
    CONFIG = BASE_CONFIG

    def port(self, listener):
        return self.kotak.ports[listener]

    def raw(self, listener="smtp"):
        c = RawClient(self.port(listener))
        self.addCleanup(c.close)
        code, lines = c.reply()
        self.assertEqual(code, 220, lines)
        self.assertEqual(c.cmd(f"EHLO {CLIENT}")[0], 250)
        return c

    def send_one(self, sent, rcpts=(ALICE,), c=None):
        """One transaction on the MX port; returns the reply to the final dot."""
        own = c is None
        if own:
            c = self.raw()
        c.send(f"MAIL FROM:<{REMOTE}>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts)
               + "DATA\r\n")
        codes = [r[0] for r in c.replies(2 + len(rcpts))]
        self.assertEqual(codes, [250] + [250] * len(rcpts) + [354], codes)
        c.send(sent + b".\r\n")
        got = c.reply()
        if own:
            c.close()
        return got

    def fill(self, user, n, size=200, threads=8):
        """Delivers n small messages to user, pipelined over several connections.
        Returns the tokens."""
        tokens = [token() for _ in range(n)]
        errors = []

        def run(part):
            try:
                with RawClient(self.port("smtp")) as c:
                    c.reply()
                    c.cmd(f"EHLO {CLIENT}")
                    wire = b""
                    for tok in part:
                        wire += f"MAIL FROM:<{REMOTE}>\r\nRCPT TO:<{user}>\r\nDATA\r\n".encode()
                        wire += message(tok, body=b"x" * size + b"\r\n", to=user) + b".\r\n"
                    c.send(wire)
                    codes = [c.reply()[0] for _ in range(4 * len(part))]
                    if codes != [250, 250, 354, 250] * len(part):
                        errors.append(codes)
            except Exception as e:   # reported below
                errors.append(repr(e))

        parts = [tokens[i::threads] for i in range(threads)]
        ts = [threading.Thread(target=run, args=(p,), daemon=True) for p in parts if p]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in ts), "a filling client hung")
        self.assertEqual(errors, [])
        return tokens

    def pop3_login(self, user=ALICE):
        c = Pop3Raw(self.port("pop3"))
        self.addCleanup(c.close)
        self.assertTrue(c.line().startswith("+OK"))
        self.assertTrue(c.cmd(f"USER {user}").startswith("+OK"))
        reply = c.cmd(f"PASS {PASSWORDS[user]}")
        self.assertTrue(reply.startswith("+OK"), reply)
        return c

    def assertStoreConsistent(self):
        """The store's own check, and no message without a maildrop entry, no
        chunk without its message, and each message's size is its bytes'."""
        self.assertEqual(self.kotak.query("PRAGMA integrity_check"), [("ok",)])
        self.assertEqual(self.kotak.query(
            "SELECT count(*) FROM messages WHERE id NOT IN (SELECT message_id FROM maildrop)"),
            [(0,)], "a message no maildrop holds")
        self.assertEqual(self.kotak.query(
            "SELECT count(*) FROM chunks WHERE message_id NOT IN (SELECT id FROM messages)"),
            [(0,)], "chunks of no message")
        self.assertEqual(self.kotak.query(
            "SELECT count(*) FROM maildrop WHERE message_id NOT IN (SELECT id FROM messages)"),
            [(0,)], "a maildrop entry for no message")
        bad = self.kotak.query(
            "SELECT m.id, m.size, coalesce(length(m.head), 0)"
            " + (SELECT coalesce(sum(length(data)), 0) FROM chunks c WHERE c.message_id = m.id)"
            " AS n FROM messages m WHERE m.size != n")
        self.assertEqual(bad, [], "messages whose size is not their bytes'")

    def stored_by_token(self, user, known):
        """{token: [message after trace, ...]} for the user's maildrop; every
        stored message must be one of `known` (token -> bytes sent) whole."""
        out = {}
        for body in self.kotak.bodies(user):
            rest = after_trace(body)
            tok = None
            for line in rest.split(b"\r\n"):
                if line.startswith(b"Subject: "):
                    tok = line[9:].decode("ascii", "replace")
                    break
            self.assertTrue(tok in known, f"a stored message that was never sent: {rest[:200]!r}")
            self.assertEqual(rest, known[tok], f"message {tok} is not stored whole")
            out.setdefault(tok, []).append(rest)
        return out


# --- kill -9 of kotak-smtpd under concurrent load -------------------------------


class KillUnderLoadTest(FaultTest):
    CONFIG = {"limits": {"idle_timeout": "15s", "spool_memory": "16K",
                         "connections_per_address": "100"}}

    def load(self, round_no, seconds, attempted, acked, lock):
        """8 clients sending numbered messages as fast as they can; kill -9
        after `seconds`. Fills attempted {token: (bytes, rcpts)} and acked."""
        stop = threading.Event()

        def client(n):
            try:
                s = smtplib.SMTP("127.0.0.1", self.port("smtp"), local_hostname=CLIENT,
                                 timeout=SOCKET_TIMEOUT)
            except OSError:
                return
            try:
                for i in range(100000):
                    if stop.is_set():
                        return
                    tok = f"r{round_no}-t{n}-m{i}-{token()[:12]}"
                    rcpts = [[ALICE], [BOB], [SALES]][(n + i) % 3]
                    # Every fifth message is larger than spool_memory: spooled to a file.
                    size = 40000 if i % 5 == 4 else 300 + 37 * i % 2000
                    body = b"".join(b"%s line %d\r\n" % (tok.encode(), k)
                                    for k in range(size // 30))
                    sent = message(tok, body=body, to=rcpts[0])
                    with lock:
                        attempted[tok] = (sent, rcpts)
                    s.sendmail(REMOTE, rcpts, sent)   # raises unless every RCPT and the dot got 2xx
                    with lock:
                        acked.add(tok)
            except (smtplib.SMTPException, OSError):
                return
            finally:
                try:
                    s.close()
                except Exception:
                    pass

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(8)]
        for t in threads:
            t.start()
        time.sleep(seconds)
        self.kotak.kill9("smtpd")
        stop.set()
        for t in threads:
            t.join(SOCKET_TIMEOUT + 5)
        self.assertFalse(any(t.is_alive() for t in threads), "a client hung after the kill")

    def check(self, attempted, acked):
        known = {tok: sent for tok, (sent, _) in attempted.items()}
        stored = {u: self.stored_by_token(u, known) for u in (ALICE, BOB)}
        for tok in acked:
            sent, rcpts = attempted[tok]
            users = {ALICE, BOB} if rcpts == [SALES] else set(rcpts)
            for u in users:
                self.assertEqual(len(stored[u].get(tok, [])), 1,
                                 f"acknowledged message {tok} is stored "
                                 f"{len(stored[u].get(tok, []))} times for {u}")
        for u in (ALICE, BOB):
            for tok, copies in stored[u].items():
                self.assertEqual(len(copies), 1, f"{tok} stored {len(copies)} times for {u}")
                _, rcpts = attempted[tok]
                users = {ALICE, BOB} if rcpts == [SALES] else set(rcpts)
                self.assertIn(u, users, f"{tok} landed in the wrong maildrop")
        # A message for the alias is stored once, for both or for neither.
        for tok, (sent, rcpts) in attempted.items():
            if rcpts == [SALES]:
                self.assertEqual(tok in stored[ALICE], tok in stored[BOB],
                                 f"{tok} for the alias is stored for one user only")
        self.assertStoreConsistent()
        n_alias = sum(1 for tok, (_, r) in attempted.items() if r == [SALES] and tok in stored[ALICE])
        self.assertEqual(self.kotak.count("maildrop"), self.kotak.count("messages") + n_alias)
        return stored

    def test_kill_9_under_concurrent_load_three_times_keeps_every_acknowledged_message(self):
        attempted, acked = {}, set()
        lock = threading.Lock()
        acked_per_round = []
        for round_no in range(3):
            before = len(acked)
            self.load(round_no, 1.0, attempted, acked, lock)
            acked_per_round.append(len(acked) - before)
            self.assertEqual(self.kotak.exit_codes["smtpd"], -9)
            self.kotak.start("smtpd")
            self.check(attempted, acked)
        for n in acked_per_round:
            self.assertGreaterEqual(n, 10, f"too few deliveries before each kill: {acked_per_round}")
        # After all that, a plain delivery still works.
        sent = message(token())
        self.assertReply(self.send_one(sent), 250)
        self.assertEqual(after_trace(self.kotak.bodies(ALICE)[-1]), sent)

    def assertReply(self, got, code, enhanced=None):
        c, lines = got
        self.assertEqual(c, code, lines)
        if enhanced:
            self.assertIn(enhanced, lines[-1])


# --- kill -9 of kotak-pop3d during QUIT's UPDATE --------------------------------


class Pop3KillDuringUpdateTest(FaultTest):
    DAEMONS_TO_START = ("smtpd", "pop3d")
    N_MARK = 300
    N_KEEP = 10

    def maildrop_ids(self, user=ALICE):
        uid = self.kotak.user_id(user)
        return [r[0] for r in self.kotak.query(
            "SELECT id FROM maildrop WHERE user_id = ? ORDER BY id", uid)]

    def test_kill_9_during_quit_updates_all_or_nothing_and_the_lock_is_gone(self):
        self.fill(ALICE, self.N_MARK + self.N_KEEP)
        outcomes = []
        for delay in (0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.05):
            before = self.maildrop_ids()
            if len(before) < self.N_MARK + self.N_KEEP:
                self.fill(ALICE, self.N_MARK + self.N_KEEP - len(before))
                before = self.maildrop_ids()
            c = self.pop3_login()
            self.assertTrue(c.cmd("STAT").startswith(f"+OK {len(before)} "))
            # Mark all but the newest N_KEEP, pipelined, then QUIT.
            c.send(b"".join(b"DELE %d\r\n" % i for i in range(1, self.N_MARK + 1)))
            for i in range(self.N_MARK):
                reply = c.line()
                self.assertTrue(reply.startswith("+OK"), f"DELE {i + 1}: {reply}")
            c.send(b"QUIT\r\n")
            if delay:
                time.sleep(delay)
            self.kotak.kill9("pop3d")
            # What the daemon said before it died is still in our socket.
            closed, said = c.read_until_closed(2)
            c.close()
            after = self.maildrop_ids()
            marked = before[:self.N_MARK]
            if after == before:
                outcomes.append((delay, "untouched"))
                self.assertNotIn(b"+OK", said, "QUIT said +OK but nothing was deleted")
            else:
                self.assertEqual(after, before[self.N_MARK:],
                                 f"a partial UPDATE: {len(before)} -> {len(after)} messages")
                self.assertFalse(set(after) & set(marked))
                outcomes.append((delay, "updated"))
            self.kotak.start("pop3d")
            # The lock died with the process: the user logs in again at once.
            c = self.pop3_login()
            reply = c.cmd("STAT")
            self.assertTrue(reply.startswith(f"+OK {len(after)} "), reply)
            self.assertTrue(c.cmd("QUIT").startswith("+OK"))
            c.close()
        self.assertStoreConsistent()
        print(f"# kill -9 during UPDATE, by delay: {outcomes}")


# --- the store full -------------------------------------------------------------


class StoreFullTest(FaultTest):
    DAEMONS_TO_START = ("smtpd", "pop3d")
    CONFIG = {"limits": {"idle_timeout": "15s", "store_size": "300K", "message_size": "1M",
                         "connections_per_address": "100"}}
    BODY = 20000

    def body_for(self, tok, size=None):
        """About size octets (BODY by default) of 80-octet lines naming tok."""
        size = self.BODY if size is None else size
        return b"".join(b"%s %05d %s\r\n" % (tok.encode(), k, b"y" * 40)
                        for k in range(max(1, size // 80)))

    def fill_until_full(self):
        """Sends ~20 KB messages one by one until 452; returns (acked, refused)
        as {token: bytes sent}."""
        acked, refused = {}, {}
        c = self.raw()
        for i in range(60):
            tok = token()
            sent = message(tok, body=self.body_for(tok))
            code, lines = self.send_one(sent, c=c)
            if code == 250:
                acked[tok] = sent
                continue
            self.assertEqual(code, 452, lines)
            self.assertIn("4.3.1", lines[-1])
            refused[tok] = sent
            break
        self.assertTrue(refused, "300K of store never filled up")
        self.assertGreaterEqual(len(acked), 3, "the store was full from the start")
        # Further deliveries are refused the same way, and the session goes on.
        for _ in range(3):
            tok = token()
            sent = message(tok, body=self.body_for(tok))
            code, lines = self.send_one(sent, c=c)
            self.assertEqual(code, 452, lines)
            self.assertIn("4.3.1", lines[-1])
            refused[tok] = sent
        self.assertEqual(c.cmd("NOOP")[0], 250)
        return acked, refused

    def check_stored(self, acked, refused, extra=(), replies=None):
        known = dict(acked)
        known.update(refused)
        for tok, sent in extra:
            known[tok] = sent
        stored = self.stored_by_token(ALICE, known)
        for tok in acked:
            self.assertEqual(len(stored.get(tok, [])), 1, f"acknowledged {tok} is lost or doubled")
        kept = [(tok, (replies or {}).get(tok, "4xx")) for tok in refused if tok in stored]
        self.assertEqual(kept, [], f"of {len(refused)} messages refused with 4xx, these were "
                                   f"stored all the same (a retry makes a duplicate)")
        self.assertStoreConsistent()
        return stored

    def test_store_full_is_452_4_3_1_nothing_acknowledged_lost_and_room_after_a_bigger_cap(self):
        acked, refused = self.fill_until_full()
        self.check_stored(acked, refused)
        # Small messages do not squeeze in past the cap either... or if they
        # do, they are whole; either way never 250 without the message.
        tok = token()
        small = message(tok)
        code, lines = self.send_one(small)
        self.assertIn(code, (250, 452), lines)
        extra = [(tok, small)] if code == 250 else []
        if code == 452:
            refused[tok] = small
        else:
            acked[tok] = small
        # Every acknowledged message reads back whole over POP3.
        c = self.pop3_login()
        n = int(c.cmd("STAT").split()[1])
        self.assertEqual(n, len(acked))
        for i in range(1, n + 1):
            self.assertTrue(c.cmd(f"RETR {i}").startswith("+OK"))
            for _ in range(100000):
                if c.line() == ".":
                    break
        self.assertTrue(c.cmd("QUIT").startswith("+OK"))
        c.close()
        # Room returns: a bigger cap in the config, and a restart.
        with open(self.kotak.conf) as f:
            text = f.read()
        with open(self.kotak.conf, "w") as f:
            f.write(rewrite_config(text, {"limits": {"store_size": "4M"}}))
        self.kotak.restart("smtpd", kill=False)
        for _ in range(5):
            tok = token()
            sent = message(tok, body=self.body_for(tok))
            code, lines = self.send_one(sent)
            self.assertEqual(code, 250, lines)
            acked[tok] = sent
        self.check_stored(acked, refused, extra)

    def test_store_full_then_mail_deleted_over_pop3_gives_room_without_a_restart(self):
        acked, refused = self.fill_until_full()
        c = self.pop3_login()
        n = int(c.cmd("STAT").split()[1])
        self.assertEqual(n, len(acked))
        c.send(b"".join(b"DELE %d\r\n" % i for i in range(1, n + 1)))
        for _ in range(n):
            self.assertTrue(c.line().startswith("+OK"))
        self.assertTrue(c.cmd("QUIT").startswith("+OK"))
        c.close()
        self.assertEqual(self.kotak.count("maildrop"), 0)
        # The freed pages take new mail, with the same daemon still running.
        new = {}
        for _ in range(3):
            tok = token()
            sent = message(tok, body=self.body_for(tok))
            code, lines = self.send_one(sent)
            self.assertEqual(code, 250, lines)
            new[tok] = sent
        stored = self.check_stored(new, refused)
        self.assertEqual(sorted(stored), sorted(new))

    def test_store_filling_up_under_concurrent_deliveries_never_acknowledges_a_lost_message(self):
        # Sixteen clients at once: batches that hit the cap part way through.
        lock = threading.Lock()
        acked, refused, other = {}, {}, []
        codes_seen = []
        replies = {}

        def client(n):
            try:
                with RawClient(self.port("smtp")) as c:
                    c.reply()
                    c.cmd(f"EHLO {CLIENT}")
                    n_refused = 0
                    for i in range(40):
                        tok = token()
                        sent = message(tok, body=self.body_for(tok, (i * 977 + n * 3001) % 30000))
                        c.send(f"MAIL FROM:<{REMOTE}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n")
                        codes = [c.reply()[0] for _ in range(3)]
                        if codes != [250, 250, 354]:
                            with lock:
                                other.append(codes)
                            return
                        c.send(sent + b".\r\n")
                        code, lines = c.reply()
                        with lock:
                            codes_seen.append(lines[-1])
                            replies[tok] = lines[-1]
                            if code == 250:
                                acked[tok] = sent
                            elif code in (451, 452):
                                refused[tok] = sent
                            else:
                                other.append(lines)
                        if code != 250:
                            n_refused += 1
                            if n_refused >= 3:
                                return
            except Exception as e:   # reported below
                with lock:
                    other.append(repr(e))

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "a client hung")
        self.assertEqual(other, [], "replies other than 250, 451 and 452")
        self.assertTrue(refused, "the store never filled up")
        # First what matters most: no acknowledged message lost, none refused
        # kept (the client would send it again: a duplicate).
        self.check_stored(acked, refused, replies=replies)
        self.assertTrue(self.kotak.running("smtpd"))
        # And a full store is told as such: 452 4.3.1, not "try again" 451.
        wrong = [l for l in codes_seen if not l.startswith(("250 ", "452 4.3.1 "))]
        self.assertEqual(wrong, [], "a delivery refused for a full store without 452 4.3.1")


# --- the store busy -------------------------------------------------------------


class StoreBusyTest(FaultTest):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def hold_write_lock(self, seconds):
        """Another process's writer (here: this test's sqlite3) holds the store's
        write lock for `seconds`, with an insert in its transaction, then rolls
        back. Returns the thread, and an event set once the lock is taken."""
        taken = threading.Event()
        errors = []

        def run():
            con = sqlite3.connect(self.kotak.db_path, timeout=10, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")
                con.execute("INSERT INTO meta(key, value) VALUES('fault-test', 'busy')")
                taken.set()
                time.sleep(seconds)
                con.execute("ROLLBACK")
            except Exception as e:   # reported by the caller
                errors.append(repr(e))
                taken.set()
            finally:
                con.close()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.assertTrue(taken.wait(10), "could not take the write lock")
        self.assertEqual(errors, [])
        self.addCleanup(t.join, 15)
        return t

    def test_store_busy_for_1_s_the_delivery_waits_and_is_stored(self):
        holder = self.hold_write_lock(1.0)
        tok = token()
        sent = message(tok)
        start = time.monotonic()
        code, lines = self.send_one(sent)
        elapsed = time.monotonic() - start
        holder.join(5)
        self.assertEqual(code, 250, lines)
        self.assertGreaterEqual(elapsed, 0.7, "250 came while another writer held the lock")
        self.assertLess(elapsed, 5)
        self.assertEqual([after_trace(b) for b in self.kotak.bodies(ALICE)], [sent])

    def test_store_busy_for_7_s_is_451_4_3_0_and_the_message_is_not_stored(self):
        holder = self.hold_write_lock(7.0)
        sent = message(token())
        result = {}

        def deliver():
            start = time.monotonic()
            try:
                result["reply"] = self.send_one(sent)
            except Exception as e:   # reported below
                result["reply"] = repr(e)
            result["elapsed"] = time.monotonic() - start

        t = threading.Thread(target=deliver, daemon=True)
        t.start()
        # Meanwhile the daemon's loop is free: others are served at once.
        time.sleep(0.5)
        rtts = []
        for _ in range(3):
            start = time.monotonic()
            c = self.raw()
            self.assertEqual(c.cmd("NOOP")[0], 250)
            self.assertEqual(c.cmd(f"MAIL FROM:<{REMOTE}>")[0], 250)
            self.assertEqual(c.cmd(f"RCPT TO:<{BOB}>")[0], 250)
            c.close()
            rtts.append(time.monotonic() - start)
            time.sleep(0.3)
        self.assertLess(max(rtts), 0.5, f"sessions waited on the busy store: {rtts}")
        t.join(15)
        self.assertFalse(t.is_alive())
        code, lines = result["reply"]
        self.assertEqual(code, 451, lines)
        self.assertIn("4.3.0", lines[-1])
        self.assertGreaterEqual(result["elapsed"], 4.5)
        self.assertLess(result["elapsed"], 7.5)
        holder.join(5)
        self.assertNothingStored()
        # Once the lock is gone, mail flows again.
        sent = message(token())
        self.assertEqual(self.send_one(sent)[0], 250)
        self.assertEqual([after_trace(b) for b in self.kotak.bodies(ALICE)], [sent])

    def test_store_busy_during_pop3_update_deletes_nothing_and_says_so(self):
        self.fill(ALICE, 5)
        c = self.pop3_login()
        for i in range(1, 4):
            self.assertTrue(c.cmd(f"DELE {i}").startswith("+OK"))
        holder = self.hold_write_lock(6.5)
        start = time.monotonic()
        reply = c.cmd("QUIT")
        elapsed = time.monotonic() - start
        self.assertTrue(reply.startswith("-ERR"), f"QUIT during a 6.5 s lock: {reply}")
        self.assertGreaterEqual(elapsed, 4.5)
        holder.join(5)
        self.assertEqual(self.kotak.count("maildrop"), 5, "a refused UPDATE deleted mail")
        # The lock on the maildrop went with the session.
        c = self.pop3_login()
        self.assertTrue(c.cmd("STAT").startswith("+OK 5 "))

    def assertNothingStored(self):
        self.assertEqual(self.kotak.count("messages"), 0, "a message was stored")
        self.assertEqual(self.kotak.count("maildrop"), 0, "a maildrop entry was made")


# --- the spool failing ----------------------------------------------------------


class SpoolFaultTest(FaultTest):
    """The spool file cannot grow past RLIMIT_FSIZE (set for the daemon alone,
    no root needed): a large message fails like a full disk, small ones go on."""
    DAEMONS_TO_START = ()
    CONFIG = {"limits": {"spool_memory": "64K", "message_size": "8M"}}
    FSIZE = 1 << 20

    def setUp(self):
        super().setUp()
        fsize = self.FSIZE

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of a signal

        log = open(self.kotak.logs["smtpd"], "ab")
        try:
            self.kotak.procs["smtpd"] = subprocess.Popen(
                [DAEMONS["smtpd"], "-c", self.kotak.conf], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, cwd=self.kotak.dir, env=clean_env(), preexec_fn=limit)
        finally:
            log.close()
        self.kotak.wait_ready("smtpd")

    def test_spool_write_failure_is_4xx_nothing_stored_and_the_next_message_is_fine(self):
        tok = token()
        big = message(tok, body=(b"z" * 78 + b"\r\n") * (3 * self.FSIZE // 80))
        self.assertGreater(len(big), 2 * self.FSIZE)
        c = self.raw()
        code, lines = self.send_one(big, c=c)
        self.assertIn(code, (451, 452), lines)
        self.assertRegex(lines[-1], r"^45[12] 4\.3\.[01] ")
        self.assertEqual(self.kotak.count("messages"), 0)
        self.assertTrue(self.kotak.running("smtpd"))
        # The same session, and a new one, deliver a small message.
        sent = message(token())
        self.assertEqual(self.send_one(sent, c=c)[0], 250)
        sent2 = message(token())
        self.assertEqual(self.send_one(sent2)[0], 250)
        self.assertEqual([after_trace(b) for b in self.kotak.bodies(ALICE)], [sent, sent2])
        self.assertStoreConsistent()


if __name__ == "__main__":
    unittest.main()
