"""A kotak instance for integration tests: a fresh folder, config and store,
the real daemons on free loopback ports, and ways to look inside the store.

Used by test_smtpd.py and, later, the POP3 tests. Standard library only.

    inst = KotakInstance(config={"limits": {"idle_timeout": "2s"}})
    inst.create()                      # kotak init, domain, users alice and bob
    inst.start("smtpd")                # kotak-smtpd -c DIR/kotak.conf
    inst.ports["smtp"], inst.ports["submission"], ...
    inst.bodies("alice@example.test")  # the stored messages, as bytes
    inst.kill9("smtpd"); inst.start("smtpd")
    inst.close()                       # SIGTERM, then SIGKILL; removes the folder

KotakTestCase does all of that in setUp/tearDown; a test changes the config
with the class attribute CONFIG or the @config(...) decorator on one test.

The build to test is $KOTAK_BUILD (the meson build root), default
/work/main/build. Every wait here is bounded, every socket has a timeout.
"""
import fcntl
import os
import poplib
import random
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import time
import unittest

BUILD = os.path.abspath(os.environ.get("KOTAK_BUILD", "/work/main/build"))
KOTAK = os.path.join(BUILD, "ctl", "kotak")
DAEMONS = {
    "smtpd": os.path.join(BUILD, "smtpd", "kotak-smtpd"),
    "pop3d": os.path.join(BUILD, "pop3d", "kotak-pop3d"),
}
# The listeners each daemon serves (the fixed section names of DESIGN.md).
DAEMON_LISTENERS = {
    "smtpd": ("smtp", "submission", "submissions"),
    "pop3d": ("pop3", "pop3s"),
}
LISTENERS = ("smtp", "submission", "submissions", "pop3", "pop3s")
IMPLICIT_TLS = ("submissions", "pop3s")

HOSTNAME = "mail.example.test"
DOMAIN = "example.test"
PASSWORDS = {
    "alice@example.test": "alice-Secret-7f3k",
    "bob@example.test": "bob-Secret-9q2z",
}
ALIASES = {
    "sales@example.test": ["alice@example.test", "bob@example.test"],
}

CLI_TIMEOUT = 30      # one kotak command
START_TIMEOUT = 10    # the daemon's ports accept connections
STOP_TIMEOUT = 10     # SIGTERM, then SIGKILL
SOCKET_TIMEOUT = 10   # every socket operation


class HarnessError(Exception):
    pass


def ephemeral_low():
    """The lowest port the kernel hands out to outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


PORT_COUNTER = os.path.join(tempfile.gettempdir(), "kotak-test-ports")


def free_ports(n, host="127.0.0.1"):
    """n distinct free TCP ports on host. They come from below the ephemeral range:
    a port from that range could be the source port of some client's connection
    (suites run side by side) by the time the daemon binds it. And they come in
    turn from a counter shared by every test process (a file under a lock), so two
    processes never pick the same port between the check and the daemon's bind.
    Each is checked by binding it; the search is bounded."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low, high = 10000, ephemeral_low() - 1
    ports = []
    with open(PORT_COUNTER, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read().strip()
        port = int(text) if text.isdigit() and low <= int(text) <= high else random.randint(low, high)
        for _ in range(high - low + 1):
            if len(ports) == n:
                break
            with socket.socket(family, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                    ports.append(port)
                except OSError:
                    pass
            port = port + 1 if port < high else low
        f.seek(0)
        f.truncate()
        f.write(str(port))
    if len(ports) < n:
        raise HarnessError(f"no {n} free ports between {low} and {high}")
    return ports


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "KOTAK_CONFIG"}
    env.update(extra)
    return env


def rewrite_config(text, changes):
    """Sets changes {section: {key: value}} in an INI text, in place when the key
    is there (its inline comment dropped), else at the end of its section (a
    section missing is appended). A value None removes the key."""
    lines = text.splitlines()
    out = []
    section = None
    done = set()
    pending = {s: dict(kv) for s, kv in changes.items()}

    def flush(sec):
        for key, value in pending.get(sec, {}).items():
            if (sec, key) not in done and value is not None:
                out.append(f"{key} = {value}")
                done.add((sec, key))

    for line in lines:
        m = re.match(r"\s*\[([^\]]+)\]", line)
        if m:
            # Keys still to add go before the blank lines that end the section.
            blanks = []
            while out and out[-1].strip() == "":
                blanks.append(out.pop())
            flush(section)
            out.extend(blanks)
            section = m.group(1).strip()
            out.append(line)
            continue
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if m and section in pending and m.group(1) in pending[section]:
            key = m.group(1)
            value = pending[section][key]
            if value is not None and (section, key) not in done:
                out.append(f"{key} = {value}")
            done.add((section, key))
            continue
        out.append(line)
    flush(section)
    for sec, kv in pending.items():
        if any((sec, k) not in done and v is not None for k, v in kv.items()):
            if not any(re.match(rf"\s*\[{re.escape(sec)}\]", l) for l in out):
                out.append(f"[{sec}]")
                for key, value in kv.items():
                    if value is not None:
                        out.append(f"{key} = {value}")
                        done.add((sec, key))
    return "\n".join(out) + "\n"


def split_trace(stored):
    """A stored message's trace and the rest: (the Return-Path: line, the
    Authentication-Results: field the MX adds or b"", the Received: field,
    what the client sent), each field with its continuation lines and CRLF.
    Raises AssertionError when the message does not start that way."""
    if not stored.startswith(b"Return-Path: <"):
        raise AssertionError(f"no Return-Path first: {stored[:80]!r}")
    fields = []
    rest = stored
    for name in (b"Return-Path: ", b"Authentication-Results: ", b"Received: "):
        if not rest.startswith(name):
            if name == b"Authentication-Results: ":
                fields.append(b"")
                continue
            raise AssertionError(f"no {name.decode().strip()} where expected: {stored[:300]!r}")
        lines = rest.split(b"\r\n")
        i = 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
        field = b"\r\n".join(lines[:i]) + b"\r\n"
        fields.append(field)
        rest = rest[len(field):]
    if fields[1] and not fields[1].startswith(f"Authentication-Results: {HOSTNAME};".encode()):
        raise AssertionError(f"an Authentication-Results: not ours: {fields[1]!r}")
    return fields[0], fields[1], fields[2], rest


def merge_config(*configs):
    out = {}
    for c in configs:
        for sec, kv in (c or {}).items():
            out.setdefault(sec, {}).update(kv)
    return out


class KotakInstance:
    """One kotak: a temporary folder with kotak.conf, kotak-data/ and daemon logs."""

    def __init__(self, config=None, users=True, prefix="kotak-integ-"):
        self.config = merge_config(config)
        self.with_users = users
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.conf = os.path.join(self.dir, "kotak.conf")
        self.data_dir = os.path.join(self.dir, "kotak-data")
        self.db_path = os.path.join(self.data_dir, "kotak.db")
        self.cert = os.path.join(self.data_dir, "cert.pem")
        self.ports = {}
        self.hosts = {}       # listener -> its first address, when not 127.0.0.1
        self.procs = {}       # daemon name -> Popen
        self.exit_codes = {}  # daemon name -> the last exit status
        self.logs = {name: os.path.join(self.dir, f"{name}.log") for name in DAEMONS}

    # --- set-up ----------------------------------------------------------

    def kotak(self, *args, input=None, check=True):
        """Runs kotak -c DIR/kotak.conf ARGS; returns the CompletedProcess."""
        p = subprocess.run([KOTAK, "-c", self.conf, *args], input=input,
                           stdin=None if input is not None else subprocess.DEVNULL,
                           capture_output=True, text=True, env=clean_env(), cwd=self.dir,
                           timeout=CLI_TIMEOUT)
        if check and p.returncode != 0:
            raise HarnessError(f"kotak {' '.join(args)}: exit {p.returncode}: "
                               f"{p.stderr.strip()} {p.stdout.strip()}")
        return p

    def create(self):
        """kotak init, free ports, the config changes, domain, users, aliases."""
        for path in [KOTAK] + [DAEMONS["smtpd"]]:
            if not os.access(path, os.X_OK):
                raise HarnessError(f"{path} is not built; set KOTAK_BUILD to the meson build root")
        self.kotak("init", "--hostname", HOSTNAME)
        ports = free_ports(len(LISTENERS) + 1)
        self.ports = dict(zip(LISTENERS, ports))
        listen = {name: {"listen": f"127.0.0.1:{self.ports[name]}"} for name in LISTENERS}
        # The live view on a port of its own: instances run side by side.
        self.web_port = ports[-1]
        listen["web"] = {"listen": f"127.0.0.1:{self.web_port}"}
        # No test asks the machine's resolver: mail for other domains stays
        # queued (a temporary DNS failure) unless a test serves DNS itself.
        changes = merge_config(listen, {"dns": {"servers": "127.0.0.1:9"}}, self.config)
        # A listen value the test gave wins; its port is then the first one in it.
        for name in LISTENERS:
            value = changes[name]["listen"]
            m = re.match(r"\s*(\[[^\]]*\]|[^,:]+):(\d+)", value or "")
            if m:
                self.ports[name] = int(m.group(2))
                self.hosts[name] = m.group(1).strip("[]")
            elif not value:
                self.ports.pop(name, None)
        with open(self.conf) as f:
            text = f.read()
        with open(self.conf, "w") as f:
            f.write(rewrite_config(text, changes))
        if self.with_users:
            self.kotak("domain", "add", DOMAIN)
            for address, password in PASSWORDS.items():
                self.kotak("user", "add", address, "--password-stdin", input=password + "\n")
            for alias, targets in ALIASES.items():
                self.kotak("alias", "add", alias, ",".join(targets))
        return self

    # --- daemons ---------------------------------------------------------

    def start(self, name="smtpd", timeout=START_TIMEOUT):
        """Starts the daemon, stderr appended to DIR/NAME.log, and waits until each of
        its listeners completes a conversation (greeting and QUIT), bounded."""
        if name in self.procs and self.procs[name].poll() is None:
            raise HarnessError(f"{name} is already running")
        log = open(self.logs[name], "ab")
        try:
            self.procs[name] = subprocess.Popen(
                [DAEMONS[name], "-c", self.conf], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, cwd=self.dir, env=clean_env())
        finally:
            log.close()
        self.wait_ready(name, timeout)
        return self.procs[name]

    def wait_ready(self, name="smtpd", timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        proc = self.procs[name]
        for listener in DAEMON_LISTENERS[name]:
            if listener not in self.ports:
                continue
            while True:
                if proc.poll() is not None:
                    raise HarnessError(f"{name} exited with status {proc.returncode} while "
                                       f"starting; its log:\n{self.log(name)}")
                try:
                    self._probe(listener, max(0.5, deadline - time.monotonic()))
                    break
                except (OSError, ssl.SSLError, HarnessError):
                    if time.monotonic() >= deadline:
                        raise HarnessError(f"{name}: [{listener}] port {self.ports[listener]} "
                                           f"does not answer after {timeout} s; its log:\n"
                                           f"{self.log(name)}")
                    time.sleep(0.05)

    def _probe(self, listener, timeout):
        """One short conversation: the greeting, QUIT, and the server closing."""
        sock = socket.create_connection((self.hosts.get(listener, "127.0.0.1"), self.ports[listener]),
                                        timeout=min(timeout, 2))
        try:
            if listener in IMPLICIT_TLS:
                sock = self.ssl_context().wrap_socket(sock, server_hostname=HOSTNAME)
            f = sock.makefile("rb")
            greeting = f.readline()
            if not (greeting.startswith(b"220") or greeting.startswith(b"+OK")):
                raise HarnessError(f"unexpected greeting {greeting!r}")
            sock.sendall(b"QUIT\r\n")
            f.readline()
            # Read until the server closes, so that it has forgotten us when we return.
            for _ in range(100):
                if not f.read(1024):
                    break
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def running(self, name="smtpd"):
        return name in self.procs and self.procs[name].poll() is None

    def stop(self, name="smtpd", timeout=STOP_TIMEOUT):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit status
        (negative: the signal that ended it)."""
        proc = self.procs.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        self.exit_codes[name] = proc.returncode
        del self.procs[name]
        return proc.returncode

    def kill9(self, name="smtpd"):
        """SIGKILL, at once; returns when the process is gone."""
        proc = self.procs.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        proc.wait(STOP_TIMEOUT)
        self.exit_codes[name] = proc.returncode
        del self.procs[name]
        return proc.returncode

    def restart(self, name="smtpd", kill=True):
        """kill -9 (or SIGTERM with kill=False), then start again."""
        if kill:
            self.kill9(name)
        else:
            self.stop(name)
        return self.start(name)

    def close(self):
        for name in list(self.procs):
            self.stop(name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self, name="smtpd"):
        try:
            with open(self.logs[name], "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, name="smtpd", timeout=5, count=1):
        """Waits (bounded) until the log matches pattern count times; returns the matches."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.findall(pattern, self.log(name), re.M)
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    # --- TLS -------------------------------------------------------------

    def ssl_context(self):
        """A client context that trusts only the instance's self-signed certificate;
        connect to 127.0.0.1 with server_hostname=HOSTNAME."""
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    # --- the store -------------------------------------------------------

    def db(self):
        """A read-only connection to the store (WAL: it sees each committed state)."""
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5,
                              isolation_level=None)
        return con

    def query(self, sql, *params):
        con = self.db()
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def user_id(self, address):
        local, domain = address.rsplit("@", 1)
        rows = self.query("SELECT u.id FROM users u JOIN domains d ON d.id = u.domain_id "
                          "WHERE u.local = ? AND d.name = ?", local, domain)
        if not rows:
            raise HarnessError(f"no user {address}")
        return rows[0][0]

    def maildrop(self, address):
        """The user's maildrop, oldest first: a list of dicts with id, message_id,
        size (maildrop.size), received, arrived and body (the head in the message's
        row, then its chunks; a body stored before heads is all chunks)."""
        uid = self.user_id(address)
        con = self.db()
        try:
            rows = con.execute(
                "SELECT md.id, md.message_id, md.size, md.arrived, m.received, m.size, m.head "
                "FROM maildrop md JOIN messages m ON m.id = md.message_id "
                "WHERE md.user_id = ? ORDER BY md.id", (uid,)).fetchall()
            out = []
            for mid, message_id, size, arrived, received, msize, head in rows:
                chunks = con.execute("SELECT data FROM chunks WHERE message_id = ? ORDER BY seq",
                                     (message_id,)).fetchall()
                body = bytes(head or b"") + b"".join(bytes(c[0]) for c in chunks)
                out.append({"id": mid, "message_id": message_id, "size": size,
                            "message_size": msize, "arrived": arrived, "received": received,
                            "body": body})
            return out
        finally:
            con.close()

    def bodies(self, address):
        """The stored messages of a user, as bytes, oldest first."""
        return [m["body"] for m in self.maildrop(address)]

    def mailbox_listing(self, address):
        """`kotak mailbox ADDRESS`: a list of (number, uidl, size) and the summary line."""
        p = self.kotak("mailbox", address)
        lines = p.stdout.splitlines()
        entries = []
        for line in lines[:-1]:
            fields = line.split("\t")
            entries.append((int(fields[0]), fields[1], int(fields[2])))
        return entries, lines[-1] if lines else ""

    def count(self, table):
        return self.query(f"SELECT count(*) FROM {table}")[0][0]


def config(**sections):
    """Decorates one test with config changes: @config(limits={"idle_timeout": "2s"})."""
    def wrap(fn):
        fn.kotak_config = sections
        return fn
    return wrap


class KotakTestCase(unittest.TestCase):
    """A fresh instance per test, with kotak-smtpd (DAEMONS_TO_START) running.

    CONFIG (class) and @config (test) are merged, the test's winning."""
    CONFIG = {}
    DAEMONS_TO_START = ("smtpd",)

    def setUp(self):
        method = getattr(self, self._testMethodName)
        extra = getattr(method, "kotak_config", {})
        self.kotak = KotakInstance(merge_config(self.CONFIG, extra))
        self.addCleanup(self._cleanup)
        self.kotak.create()
        for name in self.DAEMONS_TO_START:
            self.kotak.start(name)

    def _cleanup(self):
        # On failure, the daemon's log is the first thing one wants to read.
        outcome = getattr(self, "_outcome", None)
        failed = outcome is not None and not getattr(outcome, "success", True)
        if outcome is not None and getattr(outcome, "errors", None):
            failed = failed or any(exc is not None for _, exc in outcome.errors)
        if failed or os.environ.get("KOTAK_TEST_KEEP_LOGS"):
            for name in DAEMONS:
                text = self.kotak.log(name)
                if text:
                    tail = "\n".join(text.splitlines()[-40:])
                    print(f"# --- {name} log (last 40 lines) of {self.id()} ---")
                    for line in tail.splitlines():
                        print(f"# {line}")
        self.kotak.close()


class RawClient:
    """A line-level client for conversations smtplib would not hold: pipelined
    writes, bare LF, NUL, STARTTLS with bytes behind it. Every read is bounded
    by the socket timeout; reads keep their own buffer, so that starttls()
    can check nothing was left unread."""

    def __init__(self, port, host="127.0.0.1", timeout=SOCKET_TIMEOUT, tls_context=None,
                 source=None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        # Each send() goes out as its own segment, so tests can split the
        # stream exactly where they mean to.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_context is not None:
            self.sock = tls_context.wrap_socket(self.sock, server_hostname=HOSTNAME)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
            chunk = b""
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def readline(self, limit=1 << 20):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise HarnessError(f"no line end in {len(self.buf)} octets")
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def reply(self):
        """One SMTP reply: (code, [lines without CRLF, as str])."""
        lines = []
        for _ in range(1000):
            line = self.readline()
            lines.append(line.rstrip(b"\r\n").decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        try:
            code = int(lines[-1][:3])
        except ValueError:
            raise HarnessError(f"not an SMTP reply: {lines!r}")
        return code, lines

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line):
        """Sends one command line (CRLF added) and reads its reply."""
        self.send((line.encode("utf-8") if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def starttls(self, context):
        if self.buf:
            raise HarnessError(f"unread bytes before TLS: {self.buf!r}")
        self.sock = context.wrap_socket(self.sock, server_hostname=HOSTNAME)

    def read_until_closed(self, timeout):
        """Reads until the server closes; returns (closed, what arrived meanwhile)."""
        deadline = time.monotonic() + timeout
        got = self.buf
        self.buf = b""
        old = self.sock.gettimeout()
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    break
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
                    return True, got
                except ssl.SSLError:
                    return True, got
                if not chunk:
                    return True, got
                got += chunk
            return False, got
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass


import smtplib  # noqa: E402  (kept next to the classes that use it)


class SMTP(smtplib.SMTP):
    """smtplib.SMTP that checks the certificate against HOSTNAME after STARTTLS,
    while connecting to an IP address."""

    def connect(self, host="localhost", port=0, source_address=None):
        r = super().connect(host, port, source_address)
        self._host = HOSTNAME
        return r


class SMTP_SSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL (implicit TLS) that checks the certificate against HOSTNAME."""

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout, self.source_address)
        return self.context.wrap_socket(sock, server_hostname=HOSTNAME)


# --- added for the POP3 tests ----------------------------------------------



class POP3(poplib.POP3):
    """poplib.POP3 that checks the certificate against HOSTNAME after STLS,
    while connecting to an IP address."""

    def _create_socket(self, timeout):
        sock = super()._create_socket(timeout)
        self.host = HOSTNAME
        return sock


class POP3_SSL(poplib.POP3_SSL):
    """poplib.POP3_SSL (implicit TLS) that checks the certificate against HOSTNAME."""

    def _create_socket(self, timeout):
        sock = poplib.POP3._create_socket(self, timeout)
        self.host = HOSTNAME
        return self.context.wrap_socket(sock, server_hostname=HOSTNAME)


def proc_status(pid, field):
    """A field of /proc/PID/status in kB (VmRSS, VmHWM), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def cpu_ticks(pid, tid=None):
    """utime + stime of a process (all its threads) or of one of its threads, in clock ticks."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def pop3_login_seconds(port, user, password):
    """USER/PASS over a plain connection, then QUIT: the seconds from PASS to its +OK."""
    with RawClient(port) as c:
        c.readline()
        c.send(f"USER {user}\r\n".encode())
        c.readline()
        t = time.monotonic()
        c.send(f"PASS {password}\r\n".encode())
        line = c.readline()
        took = time.monotonic() - t
        if not line.startswith(b"+OK"):
            raise HarnessError(f"login of {user}: {line!r}")
        c.send(b"QUIT\r\n")
        c.readline()
        return took


def processes_with(text):
    """{pid: argv} of the processes whose command line contains text."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and any(text in a for a in argv):
            out[int(name)] = argv
    return out
