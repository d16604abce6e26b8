"""`kotak import pop3` against real peers (issue 17): a private Dovecot on
loopback (dovecot_peer.py) as the old server, fetchmail and getmail6 as the
mail clients whose UIDL state must survive the move, and scripted POP3
servers (in this file) for what no real server does on purpose: no UIDL, a
line without end, a message larger than the limit, UIDLs that RFC 1939 does
not allow.

Run: KOTAK_BUILD=build python3 tests/tap_unittest.py tests/integration/test_import_pop3.py
"""
import os
import poplib
import re
import shutil
import signal
import socket
import socketserver
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from dovecot_peer import DovecotPeer
from kotak_harness import (HOSTNAME, KOTAK, PASSWORDS, POP3_SSL, SMTP, SOCKET_TIMEOUT,
                           HarnessError, KotakTestCase, clean_env, config)

ALICE = "alice@example.test"
BOB = "bob@example.test"
IMPORT_TIMEOUT = 120
# Messages here have lines longer than poplib's 2,048 octets (RFC 5322 allows 998,
# mail does not keep to it, and an import must carry what came).
poplib._MAXLINE = 1 << 20
TOOL_TIMEOUT = 60


def tool(name):
    path = shutil.which(name)
    if path is None:
        raise unittest.SkipTest(f"{name} is not installed (Debian package {name})")
    return path


def make_server_cert(directory, names=(HOSTNAME,), ips=("127.0.0.1",)):
    """A self-signed EC certificate with DNS and IP subjectAltNames, and its key."""
    san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{ip}" for ip in ips])
    cert = os.path.join(directory, "old-server.crt")
    key = os.path.join(directory, "old-server.key")
    p = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "30", "-subj", f"/CN={names[0]}", "-addext", f"subjectAltName={san}",
         "-keyout", key, "-out", cert],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise HarnessError(f"openssl req: {p.stderr.strip()}")
    os.chmod(cert, 0o644)
    os.chmod(key, 0o644)  # Dovecot's master reads it as root; the folder is the test's
    return cert, key


def message(i, extra=b""):
    """A distinct message with a few lines that test the wire: a leading dot,
    two dots, a long line, 8-bit octets."""
    return (f"From: <sender{i}@old.example>\r\nTo: <{ALICE}>\r\n"
            f"Subject: message {i}\r\nMessage-ID: <m{i}.{time.time_ns()}@old.example>\r\n\r\n"
            f"Hello {i}.\r\n.one dot\r\n..two dots\r\n.\r\n").encode() + \
        b"caf\xc3\xa9 \xff 8-bit\r\n" + b"x" * 3000 + b"\r\n" + extra + b"end\r\n"


class ImportTestCase(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="kotak-imp3-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.password_file = self.write_password(PASSWORDS[ALICE])

    def write_password(self, password, mode=0o600, name="old-password"):
        path = os.path.join(self.kotak.dir, name)
        with open(path, "w") as f:
            f.write(password + "\n")
        os.chmod(path, mode)
        return path

    def dovecot(self, users=None):
        """A Dovecot with alice (kotak's password, so clients keep theirs) and its certificate."""
        self.old_cert, key = make_server_cert(self.tmp)
        dc = DovecotPeer(users or {"alice": PASSWORDS[ALICE]}, self.old_cert, key)
        self.addCleanup(dc.close)
        return dc

    def import_pop3(self, *args, user=ALICE, password_file=None, env=None, timeout=IMPORT_TIMEOUT):
        argv = [KOTAK, "-c", self.kotak.conf, "import", "pop3", user, *args,
                "--password-file", password_file or self.password_file]
        return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env=env or clean_env(SSL_CERT_FILE=""), cwd=self.kotak.dir,
                              timeout=timeout)

    def assert_imported(self, p, n, skipped=0, kept=None):
        self.assertEqual(p.returncode, 0, p.stderr)
        kept = n if kept is None else kept
        self.assertRegex(p.stdout, rf"^imported {n} messages? \(\d+ octets\) from \S+ into "
                         rf"{re.escape(ALICE)}, skipped {skipped} already there, {kept} UIDLs "
                         rf"kept")

    def assert_one_line_error(self, p, pattern):
        self.assertEqual(p.returncode, 2, f"stdout: {p.stdout}\nstderr: {p.stderr}")
        lines = p.stderr.splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertRegex(lines[0], r"^kotak: ")
        self.assertRegex(lines[0], pattern)

    def kotak_pop(self, user=ALICE):
        ctx = self.kotak.ssl_context()
        p = POP3_SSL("127.0.0.1", self.kotak.ports["pop3s"], context=ctx, timeout=SOCKET_TIMEOUT)
        p.user(user)
        p.pass_(PASSWORDS[user])
        return p

    def kotak_uidls(self, user=ALICE):
        p = self.kotak_pop(user)
        try:
            return [(int(n), u) for n, u in (l.decode().split(" ", 1) for l in p.uidl()[1])]
        finally:
            p.quit()

    def kotak_retr_all(self, user=ALICE):
        p = self.kotak_pop(user)
        try:
            n = len(p.list()[1])
            return [b"".join(l + b"\r\n" for l in p.retr(i)[1]) for i in range(1, n + 1)]
        finally:
            p.quit()

    def deliver(self, subject, to=ALICE):
        sent = (f"From: <someone@remote.example>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
                f"Message-ID: <{subject}@remote.example>\r\n\r\nNew mail.\r\n").encode()
        s = SMTP("127.0.0.1", self.kotak.ports["smtp"], local_hostname="client.example.net",
                 timeout=SOCKET_TIMEOUT)
        try:
            self.assertEqual(s.sendmail("someone@remote.example", [to], sent), {})
        finally:
            s.quit()
        return sent


# --- the clients' view: nothing new after the move -----------------------------------

# getmail 6.18 delivers each message in a child (ForkingBase.forkchild) and installs its
# SIGCHLD handler only after fork(); a child that exits before that (the parent descheduled
# on a loaded machine) is never noticed, and the parent waits on a Condition for the
# retriever's timeout, 180 s by default, then fails "waiting child pid N timed out": the
# 60 s TimeoutExpired seen once in CI. Reproduced by delaying the parent 0.3 s after fork().
# The wait is no part of what is tested here (the UIDLs a client keeps across the move), so
# getmail runs with that wait replaced by waitpid(2), which cannot miss the child.
GETMAIL_WAITPID = """
import os, runpy, sys
from getmailcore import baseclasses

def _prepare_child(self):
    pass

def _wait_for_child(self, childpid):
    while True:
        try:
            _, status = os.waitpid(childpid, 0)
            break
        except InterruptedError:
            pass
    if not os.WIFEXITED(status):
        raise baseclasses.getmailOperationError(f"child pid {childpid} ended: status {status}")
    return os.WEXITSTATUS(status)

baseclasses.ForkingBase._prepare_child = _prepare_child
baseclasses.ForkingBase._wait_for_child = _wait_for_child
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class ClientsTest(ImportTestCase):
    def run_tool(self, argv, ok=(0,), env=None):
        p = subprocess.run(argv, capture_output=True, timeout=TOOL_TIMEOUT,
                           stdin=subprocess.DEVNULL, env=env, cwd=self.kotak.dir)
        self.assertIn(p.returncode, ok, f"{argv[0]} exited {p.returncode}:\n"
                      f"{p.stdout.decode(errors='replace')}\n{p.stderr.decode(errors='replace')}")
        return p

    def fetchmail_rc(self, port, cafile, out):
        """The same poll entry for both servers but its port: fetchmail keys its
        .fetchids by user and poll name, which stay (the name is reached 'via'
        127.0.0.1)."""
        rc = os.path.join(self.kotak.dir, "fetchmailrc")
        with open(rc, "w") as f:
            f.write("set no syslog\n"
                    f"set idfile \"{self.idfile}\"\n"
                    f"poll {HOSTNAME} via 127.0.0.1 port {port} proto POP3 uidl\n"
                    f"  user \"{ALICE}\" password \"{PASSWORDS[ALICE]}\"\n"
                    f"  ssl sslcertck sslcertfile \"{cafile}\" sslcommonname \"{HOSTNAME}\"\n"
                    f"  keep\n"
                    f"  mda \"cat >> {out}\"\n")
        os.chmod(rc, 0o600)
        return rc

    def fetchmail(self, port, cafile, ok):
        out = os.path.join(self.kotak.dir, "fetchmail.out")
        rc = self.fetchmail_rc(port, cafile, out)
        env = dict(os.environ, HOME=self.kotak.dir, FETCHMAILHOME=self.kotak.dir)
        self.run_tool([tool("fetchmail"), "-f", rc, "--keep", "--uidl", "--nodetach",
                       "--pidfile", os.path.join(self.kotak.dir, "fetchmail.pid")],
                      ok=ok, env=env)
        try:
            with open(out, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def getmail(self, port, cafile):
        """getmail6 with RetrieverPOP3 over TLS, read_all = false, delete = false; its
        oldmail file is named after server, port and user, so a move of the
        server renames it (what its user does): returns (stdout, mbox octets)."""
        rc = os.path.join(self.gdir, "getmailrc")
        with open(rc, "w") as f:
            f.write("[retriever]\n"
                    "type = SimplePOP3SSLRetriever\n"
                    "server = 127.0.0.1\n"
                    f"port = {port}\n"
                    f"username = {ALICE}\n"
                    f"password = {PASSWORDS[ALICE]}\n"
                    f"ca_certs = {cafile}\n"
                    f"ssl_cert_hostname = {HOSTNAME}\n"
                    "\n[destination]\n"
                    "type = Mboxrd\n"
                    f"path = {self.mbox}\n"
                    + ("user = nobody\n" if os.geteuid() == 0 else "") +
                    "\n[options]\n"
                    "read_all = false\n"
                    "delete = false\n"
                    "verbose = 1\n")
        old = [n for n in os.listdir(self.gdir) if n.startswith("oldmail-")]
        want = f"oldmail-127.0.0.1-{port}-{ALICE}"
        for name in old:
            if name != want:
                os.rename(os.path.join(self.gdir, name), os.path.join(self.gdir, want))
        getmail = tool("getmail")
        with open(getmail) as f:
            python = f.readline()[2:].split()[0]  # getmail's own interpreter (#!/usr/bin/python3)
        p = self.run_tool([python, "-c", GETMAIL_WAITPID, getmail, "--rcfile", rc,
                           "--getmaildir", self.gdir], env=dict(os.environ, HOME=self.kotak.dir))
        with open(self.mbox, "rb") as f:
            return p.stdout.decode(errors="replace"), f.read()

    def setup_clients(self):
        self.idfile = os.path.join(self.kotak.dir, "fetchids")
        self.gdir = os.path.join(self.kotak.dir, "getmail")
        os.mkdir(self.gdir)
        # getmail refuses to write an mbox as root; then it delivers as nobody.
        mdir = tempfile.mkdtemp(prefix="kotak-imp3-mbox-")
        self.addCleanup(shutil.rmtree, mdir, True)
        self.mbox = os.path.join(mdir, "mbox")
        open(self.mbox, "wb").close()
        if os.geteuid() == 0:
            os.chmod(mdir, 0o755)
            os.chown(self.mbox, 65534, 65534)

    def test_fetchmail_and_getmail_fetch_nothing_new_after_the_move(self):
        dc = self.dovecot()
        box = dc.maildir("alice")
        sent = [message(i) for i in range(8)]
        for m in sent:
            box.add(m)
        dc.start()
        self.setup_clients()
        # The clients' past: everything fetched from the old server, kept there.
        fm_old = self.fetchmail(dc.port["pop3s"], self.old_cert, ok=(0,))
        self.assertEqual(fm_old.count(b"Subject: message "), 8)
        gm_out, gm_old = self.getmail(dc.port["pop3s"], self.old_cert)
        self.assertRegex(gm_out, r"\b8 messages? .*retrieved")
        self.assertEqual(gm_old.count(b"Subject: message "), 8)
        # The move, over TLS from the first byte; again over STLS adds nothing.
        p = self.import_pop3("--from", f"127.0.0.1:{dc.port['pop3s']}", "--tls",
                             "--ca", self.old_cert)
        self.assert_imported(p, 8)
        p = self.import_pop3("--from", f"127.0.0.1:{dc.port['pop3']}", "--starttls",
                             "--ca", self.old_cert)
        self.assert_imported(p, 0, skipped=8, kept=0)
        self.assertEqual(len(self.kotak.bodies(ALICE)), 8)
        # The same clients, their state files as they were, pointed at kotak.
        both = os.path.join(self.tmp, "both.pem")
        with open(both, "w") as f:
            for path in (self.kotak.cert, self.old_cert):
                with open(path) as part:
                    f.write(part.read())
        fm = self.fetchmail(self.kotak.ports["pop3s"], both, ok=(1,))  # 1: no mail
        self.assertEqual(fm, fm_old, "fetchmail fetched again from kotak")
        gm_out, gm = self.getmail(self.kotak.ports["pop3s"], both)
        self.assertRegex(gm_out, r"\b0 messages? .*retrieved")
        self.assertEqual(gm, gm_old, "getmail fetched again from kotak")
        # New mail: exactly that one.
        self.deliver("after-the-move")
        fm = self.fetchmail(self.kotak.ports["pop3s"], both, ok=(0,))
        self.assertEqual(fm[len(fm_old):].count(b"Subject: "), 1)
        self.assertIn(b"Subject: after-the-move", fm[len(fm_old):])
        gm_out, gm = self.getmail(self.kotak.ports["pop3s"], both)
        self.assertRegex(gm_out, r"\b1 messages? .*retrieved")
        self.assertEqual(gm[len(gm_old):].count(b"\nSubject: "), 1)
        self.assertIn(b"Subject: after-the-move", gm[len(gm_old):])
        # A migration copies: the old server still has every message.
        self.assertEqual(len(dc.uidls("alice")), 8)


# --- UIDLs and octets --------------------------------------------------------------------


class SameMaildropTest(ImportTestCase):
    def test_uidls_and_octets_are_dovecots(self):
        dc = self.dovecot()
        box = dc.maildir("alice")
        for i in range(20):
            box.add(message(i, extra=b"\r\n".join([b"." * (i % 3 + 1)] * 3) + b"\r\n"))
        dc.start()
        p = self.import_pop3("--from", f"127.0.0.1:{dc.port['pop3']}", "--starttls",
                             "--ca", self.old_cert)
        self.assert_imported(p, 20)
        want = dc.uidls("alice")
        self.assertEqual(len(want), 20)
        self.assertEqual(self.kotak_uidls(), want)
        self.assertEqual(self.kotak_retr_all(), dc.retr_all("alice"))
        # The store holds what Dovecot sent, CRLF and all, the stuffing taken off.
        self.assertEqual(self.kotak.bodies(ALICE), dc.retr_all("alice"))

    def test_login_name_other_than_the_user_and_sasl_plain(self):
        dc = self.dovecot({"olduser": "old-Secret-1"})
        dc.maildir("olduser").add(message(1))
        dc.start()
        p = self.import_pop3("--from", f"127.0.0.1:{dc.port['pop3s']}", "--tls",
                             "--ca", self.old_cert, "--login", "olduser",
                             password_file=self.write_password("old-Secret-1"))
        self.assert_imported(p, 1)
        # Dovecot offers SASL PLAIN: the login went that way.
        self.assertRegex(dc.log_text(), r"method=PLAIN")

    def test_certificate_that_does_not_verify(self):
        dc = self.dovecot()
        dc.maildir("alice").add(message(1))
        dc.start()
        port = f"127.0.0.1:{dc.port['pop3s']}"
        p = self.import_pop3("--from", port, "--tls")  # the system's CAs: not this one
        self.assert_one_line_error(p, r"certificate of 127\.0\.0\.1 does not verify .*--ca")
        p = self.import_pop3("--from", f"127.0.0.1:{dc.port['pop3']}", "--starttls")
        self.assert_one_line_error(p, r"does not verify")
        # A CA that signed it, but for another name.
        other, _ = make_server_cert(tempfile.mkdtemp(dir=self.tmp), names=("other.example",),
                                    ips=())
        p = self.import_pop3("--from", port, "--tls", "--ca", other)
        self.assert_one_line_error(p, r"does not verify")
        self.assertEqual(self.kotak.bodies(ALICE), [])
        p = self.import_pop3("--from", port, "--tls", "--insecure")
        self.assert_imported(p, 1)

    def test_wrong_password(self):
        dc = self.dovecot()
        dc.maildir("alice").add(message(1))
        dc.start()
        secret = "Wrong-Guess-6a1f"
        p = self.import_pop3("--from", f"127.0.0.1:{dc.port['pop3s']}", "--tls",
                             "--ca", self.old_cert, password_file=self.write_password(secret))
        self.assert_one_line_error(p, r"127\.0\.0\.1 refused the login of alice@example\.test: "
                                      r"-ERR .*(Authentication failed|AUTH)")
        self.assertNotIn(secret, p.stderr + p.stdout)
        self.assertEqual(self.kotak.bodies(ALICE), [])

    def test_password_file_readable_by_others(self):
        path = self.write_password(PASSWORDS[ALICE], mode=0o644, name="loose")
        p = self.import_pop3("--from", "127.0.0.1:9", "--tls", password_file=path)
        self.assert_one_line_error(p, r"may be read by others \(mode 0644\); chmod 600")
        self.assertNotIn(PASSWORDS[ALICE], p.stderr)

    def test_cannot_connect(self):
        p = self.import_pop3("--from", "127.0.0.1:9", "--tls")
        self.assert_one_line_error(p, r"cannot connect to 127\.0\.0\.1:9: Connection refused")


# --- restartable -------------------------------------------------------------------------


class SlowProxy:
    """A TCP relay to port that lets the server's octets through at a bounded rate,
    so that an import of a few thousand messages lasts long enough to be killed."""

    def __init__(self, port, rate=4 << 20):
        self.target = port
        self.rate = rate
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.target), timeout=30)
            threading.Thread(target=self._pipe, args=(c, s, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c, True), daemon=True).start()

    def _pipe(self, src, dst, slow):
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    break
                dst.sendall(data)
                if slow:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stopped = True
        self.sock.close()


class RestartTest(ImportTestCase):
    N = 5000

    def count(self):
        try:
            return self.kotak.query("SELECT count(*) FROM maildrop WHERE user_id = ?",
                                    self.kotak.user_id(ALICE))[0][0]
        except sqlite3.OperationalError:
            return 0

    def test_kill_9_halfway_then_again_adds_each_message_once(self):
        dc = self.dovecot()
        box = dc.maildir("alice")
        for i in range(self.N):
            box.add(f"Subject: m{i}\r\nMessage-ID: <{i}@old.example>\r\n\r\n".encode()
                    + b"y" * 1500 + b"\r\n")
        dc.start()
        want = dc.uidls("alice")
        self.assertEqual(len(want), self.N)
        proxy = SlowProxy(dc.port["pop3"])
        self.addCleanup(proxy.close)
        # Plaintext is allowed to a loopback address.
        argv = [KOTAK, "-c", self.kotak.conf, "import", "pop3", ALICE,
                "--from", f"127.0.0.1:{proxy.port}", "--password-file", self.password_file]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=clean_env(), cwd=self.kotak.dir)
        deadline = time.monotonic() + IMPORT_TIMEOUT
        try:
            while self.count() < self.N // 4 and proc.poll() is None:
                self.assertLess(time.monotonic(), deadline, "the import made no progress")
                time.sleep(0.01)
        finally:
            proc.kill()
            out, err = proc.communicate(timeout=10)
        at_kill = self.count()
        self.assertEqual(proc.returncode, -signal.SIGKILL,
                         f"the import ended before the kill: {out} {err}")
        self.assertGreater(at_kill, 0)
        self.assertLess(at_kill, self.N, "nothing was left for the second run")
        # Again, straight to Dovecot: the rest, each message once.
        p = self.import_pop3("--from", f"127.0.0.1:{dc.port['pop3']}")
        self.assert_imported(p, self.N - at_kill, skipped=at_kill)
        self.assertEqual(self.count(), self.N)
        self.assertEqual(self.kotak_uidls(), want)
        bodies = self.kotak.bodies(ALICE)
        self.assertEqual(len(set(bodies)), self.N)
        # A third run: nothing.
        p = self.import_pop3("--from", f"127.0.0.1:{dc.port['pop3']}")
        self.assert_imported(p, 0, skipped=self.N, kept=0)


# --- scripted servers: what no real server does on purpose -------------------------------


class ScriptedPop3:
    """A POP3 server in a thread, on loopback, plaintext. messages: [(uidl, octets)];
    uidl=False: UIDL answers -ERR and CAPA does not name it; retr(sock, n): what
    RETR sends instead of the message (for endless data; the session ends after
    it unless it returns True); capa: more CAPA lines (PIPELINING); listing(send):
    sends the UIDL and LIST replies itself (for listings too large to hold)."""

    def __init__(self, messages, uidl=True, retr=None, password="pw", capa=(), listing=None):
        self.messages = messages
        self.uidl = uidl
        self.retr = retr
        self.password = password
        self.capa = "".join(f"{c}\r\n" for c in capa)
        self.listing = listing
        self.commands = []
        self.received = []  # every command line, as it came
        self.connections = 0
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                outer.connections += 1
                outer.session(self.connection, self.rfile)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def session(self, sock, rfile):
        sock.settimeout(30)

        def send(text):
            sock.sendall(text.encode() if isinstance(text, str) else text)

        try:
            send("+OK scripted\r\n")
            while True:
                line = rfile.readline(1000)
                if not line:
                    return
                self.received.append(line)
                cmd = line.decode(errors="replace").strip()
                self.commands.append(cmd.split(" ")[0].upper())
                verb = cmd.split(" ")[0].upper()
                arg = cmd[len(verb) + 1:]
                if verb == "CAPA":
                    send("+OK\r\nUSER\r\n" + ("UIDL\r\n" if self.uidl else "") + self.capa
                         + ".\r\n")
                elif verb == "USER":
                    send("+OK\r\n")
                elif verb == "PASS":
                    send("+OK\r\n" if arg == self.password else "-ERR [AUTH] no\r\n")
                elif verb in ("UIDL", "LIST") and self.listing is not None:
                    self.listing(verb, send)
                elif verb == "UIDL" and self.uidl:
                    send("+OK\r\n" + "".join(f"{i + 1} {u}\r\n" for i, (u, _) in
                                             enumerate(self.messages)) + ".\r\n")
                elif verb == "LIST":
                    send("+OK\r\n" + "".join(f"{i + 1} {len(m)}\r\n" for i, (_, m) in
                                             enumerate(self.messages)) + ".\r\n")
                elif verb == "RETR":
                    n = int(arg)
                    if self.retr is not None:
                        if self.retr(sock, n):
                            continue
                        return
                    send(b"+OK\r\n" + self.stuffed(n) + b".\r\n")
                elif verb == "QUIT":
                    send("+OK bye\r\n")
                    return
                else:
                    send("-ERR unknown\r\n")
        except OSError:
            return

    def stuffed(self, n):
        """Message n as RETR sends it, dot-stuffed, without the final dot line."""
        return re.sub(rb"(?m)^\.", b"..", self.messages[n - 1][1])


def endless(sock, n, line_end=False):
    """+OK, then octets until the client hangs up: one line without end, or many lines."""
    sock.sendall(b"+OK\r\n")
    chunk = (b"z" * 998 + b"\r\n") * 64 if line_end else b"z" * 65536
    sent = 0
    try:
        while sent < (1 << 30):
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass


class ScriptedTest(ImportTestCase):
    def scripted(self, messages, **kw):
        srv = ScriptedPop3(messages, password=PASSWORDS[ALICE], **kw)
        self.addCleanup(srv.close)
        return srv

    def test_server_without_uidl_is_refused(self):
        srv = self.scripted([("a", b"Subject: x\r\n\r\nx\r\n")], uidl=False)
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_one_line_error(p, r"does not answer UIDL .*download everything again")
        self.assertNotIn("RETR", srv.commands)
        self.assertEqual(self.kotak.bodies(ALICE), [])

    def import_rss(self, port):
        """Runs an import from 127.0.0.1:port: (CompletedProcess, its peak RSS in KiB)."""
        argv = [KOTAK, "-c", self.kotak.conf, "import", "pop3", ALICE, "--from",
                f"127.0.0.1:{port}", "--password-file", self.password_file]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    env=clean_env(), cwd=self.kotak.dir)
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                proc.kill()
                raise
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(argv, proc.returncode, out.read().decode(),
                                            err.read().decode())
        return p, usage.ru_maxrss

    def assert_bounded(self, retr, pattern):
        """An import that meets retr stops with pattern, its peak memory near that of a
        small import that succeeds (in this build: ASan's shadow counts in both)."""
        ok = self.scripted([("u1", b"Subject: x\r\n\r\nx\r\n")])
        p, base = self.import_rss(ok.port)
        self.assert_imported(p, 1)
        srv = self.scripted([("u2", b"Subject: y\r\n\r\ny\r\n")], retr=retr)
        p, peak = self.import_rss(srv.port)
        self.assert_one_line_error(p, pattern)
        # [limits] message_size is 1 MiB; without the bound the server would send 1 GiB.
        self.assertLess(peak, base + 16 * 1024, f"peak RSS {peak} KiB, {base} KiB for one message")
        self.assertEqual(len(self.kotak.bodies(ALICE)), 1)

    @config(limits={"message_size": "1M"})
    def test_line_without_end_is_bounded(self):
        self.assert_bounded(endless, r"larger than \[limits\] message_size \(1048576 octets\)"
                                     r", or has a line without end")

    @config(limits={"message_size": "1M"})
    def test_message_larger_than_the_limit_is_bounded(self):
        self.assert_bounded(lambda s, n: endless(s, n, line_end=True),
                            r"message 1 from 127\.0\.0\.1 is larger than \[limits\] "
                            r"message_size")

    @config(limits={"message_size": "1M"})
    def test_message_listed_larger_than_the_limit_is_not_fetched(self):
        srv = self.scripted([("u1", b"Subject: x\r\n\r\nx\r\n"),
                             ("u2", b"Subject: y\r\n\r\n" + b"y" * (1 << 20) + b"\r\n")])
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_one_line_error(p, r"message 2 on 127\.0\.0\.1 is \d+ octets, more than "
                                      r"\[limits\] message_size \(1048576\)")
        self.assertNotIn("RETR", srv.commands)

    def test_uidls_rfc_1939_does_not_allow_get_new_ones_and_are_counted(self):
        long_uidl = "L" * 71
        msgs = [("good-1", b"Subject: 1\r\n\r\none\r\n"),
                (long_uidl, b"Subject: 2\r\n\r\ntwo\r\n"),
                ("has space", b"Subject: 3\r\n\r\nthree\r\n"),
                ("good-1", b"Subject: 4\r\n\r\nfour, same UIDL as one\r\n"),
                ("good-5", b"Subject: 5\r\n\r\n.five\r\n")]
        srv = self.scripted(msgs)
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_imported(p, 5, kept=2)
        self.assertIn("3 given new UIDLs", p.stdout)
        uidls = [u for _, u in self.kotak_uidls()]
        self.assertEqual(uidls[0], "good-1")
        self.assertEqual(uidls[4], "good-5")
        self.assertEqual(len(set(uidls)), 5)
        for u in uidls[1:4]:
            self.assertNotIn(u, (long_uidl, "has", "has space", "good-1"))
        self.assertEqual(self.kotak.bodies(ALICE), [m for _, m in msgs])
        # Again: the renamed ones are known by their octets.
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_imported(p, 0, skipped=5, kept=0)
        self.assertEqual(len(self.kotak.bodies(ALICE)), 5)

    def test_never_deletes_on_the_source(self):
        srv = self.scripted([("a", b"Subject: x\r\n\r\nx\r\n"), ("b", b"Subject: y\r\n\r\ny\r\n")])
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_imported(p, 2)
        self.assertNotIn("DELE", srv.commands)
        self.assertEqual(srv.commands[-1], "QUIT")


    # --- two sources that both number from 1 (H1) -------------------------------------

    def test_two_servers_numbering_from_1_lose_nothing(self):
        a = self.scripted([("1", b"Subject: A-1\r\n\r\nfrom A\r\n"),
                           ("2", b"Subject: A-2\r\n\r\nfrom A\r\n")])
        b = self.scripted([("1", b"Subject: B-1\r\n\r\nfrom B\r\n"),
                           ("2", b"Subject: B-2\r\n\r\nfrom B\r\n"),
                           ("3", b"Subject: B-3\r\n\r\nfrom B\r\n")])
        p = self.import_pop3("--from", f"127.0.0.1:{a.port}")
        self.assert_imported(p, 2)
        p = self.import_pop3("--from", f"127.0.0.1:{b.port}")
        # B's 1 and 2 are taken here by A's messages: added under new UIDLs, not skipped.
        self.assert_imported(p, 3, kept=1)
        self.assertIn("2 given new UIDLs", p.stdout)
        self.assertEqual(sorted(self.kotak.bodies(ALICE)),
                         sorted(m for _, m in a.messages + b.messages))
        uidls = [u for _, u in self.kotak_uidls()]
        self.assertEqual(uidls[:2], ["1", "2"])
        self.assertEqual(uidls[4], "3")
        self.assertEqual(len(set(uidls)), 5)
        # Again from A: its own UIDLs prove its messages here, nothing is fetched.
        a.commands.clear()
        p = self.import_pop3("--from", f"127.0.0.1:{a.port}")
        self.assert_imported(p, 0, skipped=2, kept=0)
        self.assertNotIn("RETR", a.commands)
        # Again from B: 3 by its UIDL; 1 and 2 by the UIDLs B gave them, which the store
        # keeps beside the new ones: nothing is fetched.
        b.commands.clear()
        p = self.import_pop3("--from", f"127.0.0.1:{b.port}")
        self.assert_imported(p, 0, skipped=3, kept=0)
        self.assertEqual(b.commands.count("RETR"), 0)
        self.assertEqual(len(self.kotak.bodies(ALICE)), 5)

    def test_mbox_with_x_uidls_then_pop3_loses_nothing(self):
        # A stranger can write X-UIDL into a mail: an mbox's UIDLs prove nothing for a server.
        mbox = os.path.join(self.kotak.dir, "old.mbox")
        with open(mbox, "wb") as f:
            f.write(b"From a@example.org Mon Jan  1 00:00:00 2024\n"
                    b"Subject: mbox-1\nX-UIDL: 1\n\nfrom the mbox\n\n"
                    b"From a@example.org Mon Jan  1 00:00:00 2024\n"
                    b"Subject: mbox-2\nX-UIDL: 2\n\nfrom the mbox\n")
        p = subprocess.run([KOTAK, "-c", self.kotak.conf, "import", "mbox", ALICE, mbox],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           env=clean_env(), cwd=self.kotak.dir, timeout=IMPORT_TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("imported 2 messages", p.stdout)
        self.assertEqual([u for _, u in self.kotak_uidls()], ["1", "2"])
        srv = self.scripted([("1", b"Subject: B-1\r\n\r\nfrom B\r\n"),
                             ("2", b"Subject: B-2\r\n\r\nfrom B\r\n"),
                             ("3", b"Subject: B-3\r\n\r\nfrom B\r\n")])
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_imported(p, 3, kept=1)
        bodies = self.kotak.bodies(ALICE)
        self.assertEqual(len(bodies), 5)
        for _, m in srv.messages:
            self.assertIn(m, bodies)

    def test_restored_copy_of_this_store_loses_nothing(self):
        # A copy of this store restored elsewhere hands out the same PREFIX.N for other
        # mail; a delivered entry has no digest, so its UIDL proves nothing.
        self.deliver("here-1")
        self.deliver("here-2")
        here = [u for _, u in self.kotak_uidls()]
        srv = self.scripted([(here[0], b"Subject: copy-1\r\n\r\nfrom the copy\r\n"),
                             (here[1], b"Subject: copy-2\r\n\r\nfrom the copy\r\n")])
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_imported(p, 2, kept=0)
        self.assertIn("2 given new UIDLs", p.stdout)
        bodies = self.kotak.bodies(ALICE)
        self.assertEqual(len(bodies), 4)
        for _, m in srv.messages:
            self.assertIn(m, bodies)
        self.assertEqual([u for _, u in self.kotak_uidls()][:2], here)

    # --- a source that hands out its old UIDLs again (second review, 1) ---------------------

    def test_rebuilt_server_reusing_a_uidl_loses_nothing(self):
        # A server rebuilt under the same name (Dovecot with pop3_uidl_format=%u after a
        # UIDVALIDITY change, a reinstall) numbers new mail with the UIDLs of old mail. Its
        # UIDL proves the message here only when the size LIST gives agrees with the entry.
        a = b"Subject: A\r\n\r\nfrom before the rebuild\r\n"
        b = b"Subject: B\r\n\r\nfrom after the rebuild, longer\r\n"
        srv = self.scripted([("1", a)])
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_imported(p, 1)
        srv.messages = [("1", b)]
        srv.commands.clear()
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_imported(p, 1, kept=0)
        self.assertIn("1 given new UIDLs", p.stdout)
        self.assertIn("RETR", srv.commands)
        self.assertEqual(self.kotak.bodies(ALICE), [a, b])
        self.assertEqual([u for _, u in self.kotak_uidls()][0], "1")
        # Again: 1 names A here, of another size, but B is known by the UIDL the source
        # gave it (kept beside its new one) and its size: not fetched.
        srv.commands.clear()
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_imported(p, 0, skipped=1, kept=0)
        self.assertEqual(srv.commands.count("RETR"), 0)
        self.assertEqual(len(self.kotak.bodies(ALICE)), 2)

    # --- the same octets under two UIDLs (second review, 2) ---------------------------------

    def test_same_octets_under_two_uidls_stay_two_messages(self):
        # A client that tracked u2 must still find u2: a second copy, not a vanished message.
        x = b"Subject: same\r\n\r\nthe same octets twice\r\n"
        srv = self.scripted([("u1", x), ("u2", x)])
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_imported(p, 2)
        self.assertEqual([u for _, u in self.kotak_uidls()], ["u1", "u2"])
        self.assertEqual(self.kotak.bodies(ALICE), [x, x])
        # Again: both known by their UIDLs and sizes, nothing fetched, nothing added.
        srv.commands.clear()
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_imported(p, 0, skipped=2, kept=0)
        self.assertNotIn("RETR", srv.commands)
        # Another source with the same octets under a UIDL free here: kept, as a third copy.
        other = self.scripted([("v1", x), ("u1", x)])
        p = self.import_pop3("--from", f"127.0.0.1:{other.port}")
        # Its u1 is taken here by the first source's entry with the same octets: one message.
        self.assert_imported(p, 1, skipped=1)
        self.assertEqual([u for _, u in self.kotak_uidls()], ["u1", "u2", "v1"])
        other.commands.clear()
        p = self.import_pop3("--from", f"127.0.0.1:{other.port}")
        self.assert_imported(p, 0, skipped=2, kept=0)
        self.assertEqual(other.commands.count("RETR"), 1)  # its u1: another source's UIDL

    # --- the password file (M1) -----------------------------------------------------------

    def test_password_file_behind_a_symlink_is_refused_unread(self):
        srv = self.scripted([("a", b"Subject: x\r\n\r\nx\r\n")])
        link = os.path.join(self.kotak.dir, "password-link")
        os.symlink(self.password_file, link)
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}", password_file=link)
        self.assert_one_line_error(p, r"password file .*password-link is a symbolic link")
        self.assertEqual(srv.connections, 0)
        self.assertNotIn(PASSWORDS[ALICE].encode(), b"".join(srv.received))
        self.assertEqual(self.kotak.bodies(ALICE), [])

    def test_password_file_not_a_regular_file_is_closed_before_exit(self):
        # The descriptor of a refused password file is closed, not left to exit(3).
        strace = tool("strace")
        fifo = os.path.join(self.kotak.dir, "password-fifo")
        os.mkfifo(fifo, 0o600)
        trace = os.path.join(self.tmp, "strace.out")
        argv = [strace, "-f", "-qq", "-e", "trace=open,openat,openat2,close", "-o", trace,
                KOTAK, "-c", self.kotak.conf, "import", "pop3", ALICE, "--from",
                "127.0.0.1:1", "--password-file", fifo]
        # LeakSanitizer cannot run under ptrace: off for this run of a sanitized build.
        env = clean_env(ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=86")
        p = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           env=env, cwd=self.kotak.dir, timeout=IMPORT_TIMEOUT)
        self.assert_one_line_error(p, r"password file .*password-fifo is not a regular file")
        with open(trace) as f:
            calls = f.read().splitlines()
        opened = [i for i, l in enumerate(calls) if "password-fifo" in l
                  and re.search(r"\) = \d+$", l)]
        self.assertTrue(opened, "\n".join(calls))
        fd = re.search(r"\) = (\d+)$", calls[opened[-1]]).group(1)
        closed = [l for l in calls[opened[-1] + 1:] if re.search(rf"close\({fd}\)", l)]
        self.assertTrue(closed, f"fd {fd} of the password file is never closed")

    def test_password_file_of_another_owner_is_refused(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to give a file to another user")
        srv = self.scripted([("a", b"Subject: x\r\n\r\nx\r\n")])
        path = self.write_password(PASSWORDS[ALICE], name="someone-elses")
        os.chown(path, 65534, 65534)
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}", password_file=path)
        self.assert_one_line_error(p, r"password file .*someone-elses belongs to uid 65534, "
                                      r"not to uid 0")
        self.assertEqual(srv.connections, 0)

    # --- the listing's memory (M3) --------------------------------------------------------

    @config(limits={"message_size": "1M"})
    def test_100k_long_uidls_cost_no_memory(self):
        n, long_uidl = 100_000, "U" * 4000

        def listing(verb, send):
            send("+OK\r\n")
            batch = []
            for i in range(1, n + 1):
                batch.append(f"{i} {long_uidl}\r\n" if verb == "UIDL" else f"{i} 2000000\r\n")
                if len(batch) == 1000:
                    send("".join(batch))
                    batch = []
            send("".join(batch) + ".\r\n")

        ok = self.scripted([("u1", b"Subject: x\r\n\r\nx\r\n")])
        p, base = self.import_rss(ok.port)
        self.assert_imported(p, 1)
        srv = self.scripted([], listing=listing)
        p, peak = self.import_rss(srv.port)
        # The whole listing was read and held: the first message is too large to fetch.
        self.assert_one_line_error(p, r"message 1 on 127\.0\.0\.1 is 2000000 octets, more than")
        self.assertLess(peak, base + 24 * 1024, f"peak RSS {peak} KiB, {base} KiB for one message")

    def test_listing_longer_than_the_cap_is_refused(self):
        n = 2_000_001

        def listing(verb, send):
            send("+OK\r\n")
            step = 20000
            for start in range(1, n + 1, step):
                send("".join(f"{i} u{i}\r\n" if verb == "UIDL" else f"{i} 10\r\n"
                             for i in range(start, min(start + step, n + 1))))
            send(".\r\n")

        srv = self.scripted([], listing=listing)
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_one_line_error(p, r"lists more than 2000000 messages")
        self.assertNotIn("RETR", srv.commands)

    # --- the write lock while the server is slow (H3) -------------------------------------

    def test_server_gone_halfway_keeps_what_came(self):
        # The fetching thread meets the end; the main thread stores every message that came
        # before it, then the command ends with one line for the failure, and a run again
        # adds the rest.
        msgs = [(f"g{i}", f"Subject: g{i}\r\n\r\nbody {i}\r\n".encode()) for i in range(1, 7)]
        srv = None

        def retr(sock, n):
            if n == 4:
                return False  # the connection ends without an answer
            sock.sendall(b"+OK\r\n" + srv.stuffed(n) + b".\r\n")
            return True

        srv = self.scripted(msgs, retr=retr, capa=("PIPELINING",))
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("kotak: 3 messages were imported before this; run the same command again",
                      p.stderr)
        self.assertEqual(p.stderr.count("\n"), 2, p.stderr)
        self.assertEqual(self.kotak.bodies(ALICE), [m for _, m in msgs[:3]])
        srv.retr = None
        p = self.import_pop3("--from", f"127.0.0.1:{srv.port}")
        self.assert_imported(p, 3, skipped=3)
        self.assertEqual(self.kotak.bodies(ALICE), [m for _, m in msgs])

    def test_delivery_goes_through_while_known_messages_trickle_in(self):
        # The first message is new and opens a batch; the 449 after it are the same octets
        # (a UIDL given twice proves nothing, so each is fetched and known by its digest)
        # and come one every 10 ms. The batch still commits within its second: it is not
        # held, with the store's write lock, for as long as the source keeps sending.
        msg = b"Subject: same\r\n\r\nthe same octets\r\n"
        srv = None

        def retr(sock, n):
            time.sleep(0.010)
            sock.sendall(b"+OK\r\n" + srv.stuffed(n) + b".\r\n")
            return True

        srv = self.scripted([("dup", msg)] * 450, retr=retr, capa=("PIPELINING",))
        argv = [KOTAK, "-c", self.kotak.conf, "import", "pop3", ALICE, "--from",
                f"127.0.0.1:{srv.port}", "--password-file", self.password_file]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, env=clean_env(), cwd=self.kotak.dir)
        try:
            time.sleep(1.5)
            self.assertIsNone(proc.poll(), "the import ended before the delivery")
            t0 = time.monotonic()
            self.deliver("during-the-trickle")
            took = time.monotonic() - t0
            self.assertLess(took, 2.0, f"kotak-smtpd waited {took:.1f} s on the import's lock")
        finally:
            out, err = proc.communicate(timeout=IMPORT_TIMEOUT)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("imported 1 message", out)
        self.assertEqual(len(self.kotak.bodies(ALICE)), 2)

    def test_delivery_goes_through_while_a_retr_stalls(self):
        stalled, release = threading.Event(), threading.Event()
        msgs = [("s1", b"Subject: s1\r\n\r\n" + b"one\r\n" * 100),
                ("s2", b"Subject: s2\r\n\r\n" + b"two\r\n" * 100)]
        srv = None

        def retr(sock, n):
            data = srv.stuffed(n)
            if n == 1:
                sock.sendall(b"+OK\r\n" + data + b".\r\n")
                return True
            # RETR 2: half the message, then silence (up to 25 s) inside it.
            sock.sendall(b"+OK\r\n" + data[:len(data) // 2])
            stalled.set()
            release.wait(25)
            sock.sendall(data[len(data) // 2:] + b".\r\n")
            return True

        srv = self.scripted(msgs, retr=retr, capa=("PIPELINING",))
        argv = [KOTAK, "-c", self.kotak.conf, "import", "pop3", ALICE, "--from",
                f"127.0.0.1:{srv.port}", "--password-file", self.password_file]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, env=clean_env(), cwd=self.kotak.dir)
        try:
            self.assertTrue(stalled.wait(IMPORT_TIMEOUT), "the import never reached RETR 2")
            time.sleep(0.2)  # message 1 is in the import's hands by now
            t0 = time.monotonic()
            self.deliver("during-the-stall")
            took = time.monotonic() - t0
            self.assertLess(took, 2.0, f"kotak-smtpd waited {took:.1f} s on the import's lock")
        finally:
            release.set()
            out, err = proc.communicate(timeout=IMPORT_TIMEOUT)
        p = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        self.assert_imported(p, 2)
        self.assertEqual(len(self.kotak.bodies(ALICE)), 3)


if __name__ == "__main__":
    unittest.main()
