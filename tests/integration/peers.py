"""The other ends of kotak's outbound delivery, for integration tests: a
scripted SMTP server (tests/smtp_peer.py) and a DNS server (tests/dns_server.py),
each run as a child process under Debian's /usr/bin/python3, which has the
aiosmtpd and dnslib they need. This module itself uses the standard library
only, since the python3 that runs the tests may have neither.

    cert, key = make_cert(tmpdir, "mx.peer.test")
    with SmtpPeer(script={"rcpt": {"nobody@peer.test": "550 5.1.1 No such user"}},
                  cert=cert, key=key) as peer:          # started, on 127.0.0.4
        ... point kotak at 127.0.0.4:peer.port ...
        msg = peer.wait_messages(1)[0]                  # the JSON, plus "data": bytes
        connects = peer.events("connect")

    with DnsServer({"peer.test": {"MX": [[10, "mx.peer.test"]]},
                    "mx.peer.test": {"A": ["127.0.0.4"]}}) as dns:
        config = {"dns": {"servers": dns.servers}}      # "127.0.0.1:PORT"

The script keys of SmtpPeer and the zone format of DnsServer are described at
the top of smtp_peer.py and dns_server.py. Exit status 77 of either (its
module missing) becomes unittest.SkipTest. Every wait here is bounded.

Loopback: on Linux the whole of 127.0.0.0/8 reaches the host without any
configuration, so the peer listens on 127.0.0.4 by default, apart from kotak's
own listeners on 127.0.0.1; a connection to it comes from 127.0.0.1 unless the
client binds another source address.
"""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from kotak_harness import HarnessError

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMTP_PEER = os.path.join(TESTS, "smtp_peer.py")
DNS_SERVER = os.path.join(TESTS, "dns_server.py")
# Debian's python, the one with python3-aiosmtpd and python3-dnslib.
SYSTEM_PYTHON = "/usr/bin/python3"
SKIP = 77

START_TIMEOUT = 10
STOP_TIMEOUT = 5


def loopback_usable(host):
    """Whether a TCP socket can listen on host and be reached there."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            s.listen(1)
            with socket.create_connection(s.getsockname(), timeout=2):
                pass
        return True
    except OSError:
        return False


def make_cert(directory, host="mx.peer.test", days=30):
    """A self-signed EC P-256 certificate for host (its CN and its one SAN, an
    IP address SAN when host is one) and its key, made with the openssl CLI in
    directory. Returns (cert_path, key_path); a client verifies the peer with
    ssl.create_default_context(cafile=cert_path)."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        san = f"IP:{host}"
    except OSError:
        san = f"DNS:{host}"
    name = host.replace(":", "_")
    cert = os.path.join(directory, f"{name}.crt")
    key = os.path.join(directory, f"{name}.key")
    p = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", str(days), "-subj", f"/CN={host}", "-addext", f"subjectAltName={san}",
         "-keyout", key, "-out", cert],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise HarnessError(f"openssl req for {host}: exit {p.returncode}: {p.stderr.strip()}")
    return cert, key


class _Child:
    """A server script as a child process: started with a pipe on its stdin (its
    end of file stops the child, so it cannot outlive us), its port read from
    the first line of its stdout, its stderr kept in a file for failures."""

    name = "child"

    def __init__(self):
        self.proc = None
        self.port = None
        self.tmp = tempfile.mkdtemp(prefix=f"kotak-{self.name}-")
        self.stderr_path = os.path.join(self.tmp, "stderr.log")

    def _argv(self):
        raise NotImplementedError

    def start(self, timeout=START_TIMEOUT):
        """Starts the child and waits (bounded) for its port. Raises
        unittest.SkipTest when it exits 77, HarnessError when it fails."""
        if self.proc is not None and self.proc.poll() is None:
            raise HarnessError(f"{self.name} is already running")
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen([SYSTEM_PYTHON, *self._argv()], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready = select.select([self.proc.stdout], [], [], max(0, left))[0] if left > 0 else []
            if not ready:
                self.stop()
                raise HarnessError(f"{self.name} gave no port in {timeout} s; "
                                   f"stderr:\n{self.stderr()}")
            chunk = os.read(self.proc.stdout.fileno(), 64)
            if not chunk:
                status = self.proc.wait(STOP_TIMEOUT)
                self.proc = None
                text = self.stderr().strip()
                if status == SKIP:
                    raise unittest.SkipTest(text.splitlines()[-1] if text else f"{self.name}: 77")
                raise HarnessError(f"{self.name} exited with status {status}; stderr:\n{text}")
            line += chunk
        self.port = int(line)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Ends the child: end of file on its stdin, then SIGTERM, then SIGKILL,
        each bounded. Returns its exit status, None when it was not running."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        for step in (proc.stdin.close, lambda: proc.send_signal(signal.SIGTERM), proc.kill):
            try:
                step()
            except (OSError, ProcessLookupError):
                pass
            try:
                proc.wait(STOP_TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                continue
        proc.stdout.close()
        return proc.returncode

    def close(self):
        """stop(), and the temporary files go."""
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def __enter__(self):
        if not self.running():
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()


class SmtpPeer(_Child):
    """tests/smtp_peer.py on host:port (port 0: one it picks), with script (a
    dict, the keys of smtp_peer.py) and, for TLS, a certificate and key.

    start() waits for the port; stop() ends the process and keeps what it
    recorded (start() again brings it back on the same port, numbering on);
    close() also removes the files; as a context manager it is started and
    closed. messages(), wait_messages() and events() read the records."""

    name = "smtp-peer"

    def __init__(self, host="127.0.0.4", port=0, script=None, cert=None, key=None):
        super().__init__()
        self.host = host
        self.port = port or None
        self.script = dict(script or {})
        self.cert, self.key = cert, key
        self.dir = os.path.join(self.tmp, "out")
        self.script_path = os.path.join(self.tmp, "script.json")

    def _argv(self):
        with open(self.script_path, "w", encoding="utf-8") as f:
            json.dump(self.script, f)
        argv = [SMTP_PEER, "--host", self.host, "--port", str(self.port or 0), "--dir", self.dir,
                "--script", self.script_path]
        if self.cert:
            argv += ["--cert", self.cert, "--key", self.key]
        return argv

    def messages(self):
        """The messages accepted so far, oldest first: each the envelope of
        NNNN.json (mail_from, mail_options, rcpt_tos, rcpt_options, tls,
        tls_version, auth_user, helo, peer, session) plus "id" (NNNN) and
        "data", the bytes of NNNN.eml."""
        out = []
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.endswith(".json"))
        except FileNotFoundError:
            return out
        for name in names:
            stem = name[:-len(".json")]
            with open(os.path.join(self.dir, name), encoding="utf-8") as f:
                msg = json.load(f)
            with open(os.path.join(self.dir, stem + ".eml"), "rb") as f:
                msg["data"] = f.read()
            msg["id"] = stem
            out.append(msg)
        return out

    def wait_messages(self, n, timeout=10):
        """Waits (bounded) until n messages are recorded and returns them all;
        AssertionError, with what did arrive and the events, when they do not."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= n:
                return msgs
            if time.monotonic() >= deadline:
                events = "\n".join(json.dumps(e) for e in self.events()[-30:])
                envelopes = [{k: v for k, v in m.items() if k != "data"} for m in msgs]
                raise AssertionError(f"{len(msgs)} of {n} messages after {timeout} s: "
                                     f"{envelopes}\nlast events:\n{events}\n"
                                     f"stderr:\n{self.stderr()}")
            time.sleep(0.05)

    def events(self, kind=None):
        """The lines of log.jsonl as dicts, oldest first (only those whose
        "event" is kind, when given); a line still being written is left out."""
        try:
            with open(os.path.join(self.dir, "log.jsonl"), "rb") as f:
                text = f.read()
        except FileNotFoundError:
            return []
        out = []
        for line in text.split(b"\n")[:-1]:
            e = json.loads(line)
            if kind is None or e["event"] == kind:
                out.append(e)
        return out

    def wait_events(self, kind, n, timeout=10):
        """Waits (bounded) until n events of kind are logged; returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(kind)
            if len(found) >= n or time.monotonic() >= deadline:
                if len(found) < n:
                    raise AssertionError(f"{len(found)} of {n} {kind} events after {timeout} s: "
                                         f"{self.events()[-30:]}")
                return found
            time.sleep(0.05)


class DnsServer(_Child):
    """tests/dns_server.py serving zone (a dict, the format of dns_server.py)
    on host, UDP and TCP on one port. servers is the value for kotak's
    [dns] servers key. dns_server.py reads its zone once, so set_zone()
    restarts it on the same port."""

    name = "dns"

    def __init__(self, zone, host="127.0.0.1"):
        super().__init__()
        self.host = host
        self.zone = zone
        self.zone_path = os.path.join(self.tmp, "zone.json")

    def _argv(self):
        with open(self.zone_path, "w", encoding="utf-8") as f:
            json.dump(self.zone, f)
        return [DNS_SERVER, self.zone_path, "--host", self.host, "--port", str(self.port or 0)]

    @property
    def servers(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def set_zone(self, zone):
        """Serves zone instead, from now on: the server restarts on its port
        (a query in flight meanwhile goes unanswered and is retried)."""
        self.zone = zone
        if self.running():
            self.stop()
            self.start()
