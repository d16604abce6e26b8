"""Debian's real rspamd on a loopback port, for kotak's tests.

As a module::

    import rspamd_fixture
    address = rspamd_fixture.start()      # "127.0.0.1:PORT", once /ping answers
    ...
    rspamd_fixture.stop()

or, for several at once, ``r = rspamd_fixture.Rspamd(); r.start(); r.stop()``.
As a script, ``python3 rspamd_fixture.py`` prints the port on a line of its
own once rspamd answers, then runs until its standard input ends (or it gets
SIGTERM/SIGINT), and stops rspamd: a C test reads the port from a pipe and
closes the other pipe to stop it, and a crashed test stops it too.

Only the standard library is used, so it runs under any python3.

What is started: rspamd 3.x in the foreground (-f) with a private
configuration in a temporary folder: Debian's stock rules from /etc/rspamd,
only the normal worker (the one that takes /checkv2) on 127.0.0.1:PORT, no
controller or proxy, the pid file, database, log and maps in the temporary
folder, logging at "error" into a file. Modules that ask the network at
scan time (RBLs, fuzzy hashes, SPF, DKIM, DMARC, ARC, ASN, the HELO/PTR
filter) are off and the resolver points at a dead port, so a scan answers
in milliseconds from the message alone and scores do not depend on the
machine's DNS; redis is absent, so the modules that need it switch
themselves off.

Start-up time: rspamd compiles its multi-pattern matchers (the public
suffix list above all) with Hyperscan on its first start, about 12 s on a
test machine, and caches them. The cache is kept across runs in
$KOTAK_RSPAMD_CACHE, else in a folder of this user's under the temporary
folder; with it warm, rspamd answers /ping about 0.5 s after it is started.
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

RSPAMD = "/usr/bin/rspamd"
CONFDIR = "/etc/rspamd"

# Modules that would ask DNS or another server for every message.
NETWORK_MODULES = ("fuzzy_check", "rbl", "asn", "hfilter", "spf", "dkim", "dmarc", "arc",
                   "mx_check", "dcc", "url_redirector", "rspamd_update")

TOP_CONFIG = """\
.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}
logging {
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "error";
}
worker "normal" {
    bind_socket = "%(bind)s";
    count = 1;
    .include "$CONFDIR/worker-normal.inc"
}
"""

OPTIONS = """\
dns {
    nameserver = ["%(nameserver)s"];
    timeout = 0.2s;
    retransmits = 1;
}
hs_cache_dir = "%(cache)s";
"""


def available():
    """Whether rspamd is installed here."""
    return os.access(RSPAMD, os.X_OK) and os.path.isdir(CONFDIR)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cache_dir():
    """A folder for Hyperscan's compiled databases that only this user can write."""
    path = os.environ.get("KOTAK_RSPAMD_CACHE")
    if not path:
        path = os.path.join(tempfile.gettempdir(), "kotak-rspamd-cache-%d" % os.getuid())
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
        if st.st_uid == os.getuid() and os.path.isdir(path) and not os.path.islink(path):
            return path
    except OSError:
        pass
    return None  # someone else's: use a fresh one inside the run's folder


class Rspamd:
    """One rspamd normal worker on 127.0.0.1; start() returns "127.0.0.1:PORT"."""

    def __init__(self, nameserver="127.0.0.1:1"):
        self.nameserver = nameserver
        self.dir = None
        self.proc = None
        self.port = None
        self.startup_seconds = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def _write_config(self):
        local = os.path.join(self.dir, "local")
        os.makedirs(os.path.join(local, "local.d"))
        for sub in ("db", "run", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        cache = _cache_dir() or os.path.join(self.dir, "db")
        with open(os.path.join(self.dir, "rspamd.conf"), "w") as f:
            f.write(TOP_CONFIG % {"bind": self.address})
        with open(os.path.join(local, "local.d", "options.inc"), "w") as f:
            f.write(OPTIONS % {"nameserver": self.nameserver, "cache": cache})
        for module in NETWORK_MODULES:
            with open(os.path.join(local, "local.d", module + ".conf"), "w") as f:
                f.write("enabled = false;\n")

    def _ping(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            c.request("GET", "/ping")
            r = c.getresponse()
            body = r.read()
            c.close()
            return r.status == 200 and body.strip() == b"pong"
        except (OSError, http.client.HTTPException):
            return False

    def log_tail(self, lines=20):
        try:
            with open(os.path.join(self.dir, "log", "rspamd.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def start(self, timeout=120):
        """Starts rspamd and waits until it answers; raises RuntimeError if it does not."""
        if not available():
            raise RuntimeError("rspamd is not installed (Debian: apt-get install rspamd)")
        self.dir = tempfile.mkdtemp(prefix="kotak-rspamd-")
        self.port = _free_port()
        self._write_config()
        cmd = [RSPAMD, "-f", "-c", os.path.join(self.dir, "rspamd.conf")]
        if os.getuid() == 0:
            cmd += ["-u", "root", "-g", "root", "-i"]
        for name, value in (("CONFDIR", CONFDIR), ("LOCAL_CONFDIR", os.path.join(self.dir, "local")),
                            ("DBDIR", os.path.join(self.dir, "db")),
                            ("RUNDIR", os.path.join(self.dir, "run")),
                            ("LOGDIR", os.path.join(self.dir, "log"))):
            cmd += ["--var", "%s=%s" % (name, value)]
        out = open(os.path.join(self.dir, "log", "stdout.log"), "wb")
        t0 = time.monotonic()
        # Its own session, so that stop() can end the main process and its workers together.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                break
            if self._ping():
                self.startup_seconds = time.monotonic() - t0
                return self.address
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError("rspamd did not answer on port %d within %d s:\n%s" %
                           (self.port, timeout, tail))

    def stop(self):
        """Stops rspamd (SIGTERM to its process group, SIGKILL after 10 s) and removes its folder."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
            # Workers that outlived the main process share its group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


_default = None


def start(nameserver="127.0.0.1:1", timeout=120):
    """Starts the module's rspamd; returns "127.0.0.1:PORT"."""
    global _default
    stop()
    _default = Rspamd(nameserver)
    return _default.start(timeout)


def stop():
    """Stops the module's rspamd, if it runs."""
    global _default
    if _default is not None:
        _default.stop()
        _default = None


def main():
    r = Rspamd(os.environ.get("RSPAMD_NAMESERVER", "127.0.0.1:1"))

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        r.start()
        sys.stderr.write("rspamd_fixture: rspamd up in %.2f s\n" % r.startup_seconds)
        sys.stdout.write("%d\n" % r.port)
        sys.stdout.flush()
        sys.stdin.read()  # until the parent closes the pipe, or goes away
    except KeyboardInterrupt:
        pass
    except RuntimeError as e:
        sys.stderr.write("rspamd_fixture: %s\n" % e)
        return 1
    finally:
        r.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
