#!/usr/bin/python3
"""bench/loop_latency.py — per-command latency of kotak-smtpd and kotak-pop3d while
something else happens (see bench/loop_latency.sh, which drives it).

    loop_latency.py smtp  HOST:PORT RCPT OUT          NOOP, MAIL, RCPT, RSET in a loop
    loop_latency.py pop3  HOST:PORT USER PASS OUT     one login, then STAT, LIST, UIDL, RETR k
    loop_latency.py login HOST:PORT USER PASS OUT     connect, USER, PASS, STAT, QUIT in a loop
    loop_latency.py tls   HOST:PORT SECONDS           full TLS handshakes, one after the other
    loop_latency.py write-smtp HOST:PORT USER         one message in: final dot -> 250 (ms)
    loop_latency.py write-pop3 HOST:PORT USER PASS    DELE 1, then QUIT -> +OK (ms)
    loop_latency.py report WINDOWS SAMPLES...         p50/p99/max per command and scenario

A probe runs until SIGTERM, then writes its samples (one line each: wall-clock start in
seconds, protocol, command, latency in microseconds, from the last octet of the command
handed to the kernel to the last octet of the reply) to OUT. Each probe is a process of its
own, one command in flight at a time on blocking sockets: no GIL and no event loop in the
client between the server and the clock. Python's own cost per command is a few tens of
microseconds, far below the stalls looked for (milliseconds to seconds), and is in the
baseline too. The probes pause PAUSE_MS (2 ms) between rounds so that they do not take a
core of the two themselves.

WINDOWS has one line per scenario run: NAME START END (wall clock, seconds). A sample
belongs to a window when the command's [start, start + latency] overlaps [START, END]: a
command that started just before a lock was taken and was held by it counts.
"""
import os
import signal
import socket
import ssl
import sys
import time

PAUSE = float(os.environ.get("PAUSE_MS", "2")) / 1000.0
TIMEOUT = 30.0
ROUNDS = 40  # SMTP rounds per session: 80 NOOP + RSET, under kotak's 100

samples = []
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


class Conn:
    def __init__(self, addr):
        self.s = socket.create_connection(hostport(addr), timeout=TIMEOUT)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed by the server")
        self.buf += d

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln, self.buf = self.buf[:i], self.buf[i + 2:]
                return ln
            self._fill()

    def smtp_reply(self):
        while True:
            ln = self.line()
            if len(ln) < 4 or ln[3:4] != b"-":
                return ln

    def pop3_multi(self):
        first = self.line()
        if not first.startswith(b"+OK"):
            return first
        while True:
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0:
                self.buf = self.buf[i + 5:]
                return first
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return first
            # keep the tail that may hold the start of the terminator
            self._fill()

    def send(self, data):
        self.s.sendall(data)


def timed(proto, cmd, fn):
    t0w = time.time()
    t0 = time.perf_counter_ns()
    r = fn()
    us = (time.perf_counter_ns() - t0) // 1000
    samples.append((t0w, proto, cmd, us))
    return r


def expect(reply, ok, what):
    if not reply.startswith(ok):
        raise RuntimeError("%s: %r" % (what, reply))


def dump(out):
    with open(out, "w") as f:
        for t, p, c, us in samples:
            f.write("%.6f %s %s %d\n" % (t, p, c, us))


def run_until_stopped(out, body):
    errors = 0
    try:
        while not stop:
            try:
                body()
            except (OSError, EOFError, RuntimeError) as e:
                errors += 1
                samples.append((time.time(), "error", os.path.basename(out), 0))
                print("probe %s: %s" % (out, e), file=sys.stderr)
                if errors > 50:
                    break
                time.sleep(0.5)
    finally:
        dump(out)


def smtp_probe(addr, rcpt, out):
    state = {}

    def session():
        # kotak ends a session after [limits] junk_commands (100) NOOPs and RSETs: a new
        # session every ROUNDS rounds (its connect + greeting, and EHLO, are timed too)
        t0w = time.time()
        t0 = time.perf_counter_ns()
        c = Conn(addr)
        expect(c.smtp_reply(), b"220", "greeting")
        samples.append((t0w, "smtp", "CONNECT", (time.perf_counter_ns() - t0) // 1000))
        c.send(b"EHLO probe.example.test\r\n")
        expect(timed("smtp", "EHLO", c.smtp_reply), b"250", "EHLO")
        state["c"] = c
        for _ in range(ROUNDS):
            if stop:
                break
            for cmd, data, ok in (("NOOP", b"NOOP\r\n", b"250"),
                                  ("MAIL", b"MAIL FROM:<probe@example.test>\r\n", b"250"),
                                  ("RCPT", b"RCPT TO:<%s>\r\n" % rcpt.encode(), b"250"),
                                  ("RSET", b"RSET\r\n", b"250")):
                c.send(data)
                expect(timed("smtp", cmd, c.smtp_reply), ok, cmd)
            time.sleep(PAUSE)
        c.send(b"QUIT\r\n")
        c.smtp_reply()
        c.s.close()

    run_until_stopped(out, session)


def pop3_login(c, user, pw, proto):
    c.send(b"USER %s\r\n" % user.encode())
    expect(timed(proto, "USER", c.line), b"+OK", "USER")
    c.send(b"PASS %s\r\n" % pw.encode())
    expect(timed(proto, "PASS", c.line), b"+OK", "PASS")


def pop3_probe(addr, user, pw, out):
    def session():
        c = Conn(addr)
        expect(c.line(), b"+OK", "greeting")
        pop3_login(c, user, pw, "pop3")
        c.send(b"STAT\r\n")
        st = c.line()
        expect(st, b"+OK", "STAT")
        n = int(st.split()[1])
        if n == 0:
            raise RuntimeError("empty maildrop")
        k = 0
        while not stop:
            c.send(b"STAT\r\n")
            expect(timed("pop3", "STAT", c.line), b"+OK", "STAT")
            c.send(b"LIST\r\n")
            expect(timed("pop3", "LIST", c.pop3_multi), b"+OK", "LIST")
            c.send(b"UIDL\r\n")
            expect(timed("pop3", "UIDL", c.pop3_multi), b"+OK", "UIDL")
            k = k % n + 1
            c.send(b"RETR %d\r\n" % k)
            expect(timed("pop3", "RETR", c.pop3_multi), b"+OK", "RETR")
            time.sleep(PAUSE)
        c.send(b"QUIT\r\n")
        c.line()

    run_until_stopped(out, session)


def login_probe(addr, user, pw, out):
    def one():
        t0w = time.time()
        t0 = time.perf_counter_ns()
        c = Conn(addr)
        expect(c.line(), b"+OK", "greeting")
        samples.append((t0w, "login", "CONNECT", (time.perf_counter_ns() - t0) // 1000))
        pop3_login(c, user, pw, "login")
        c.send(b"STAT\r\n")
        expect(timed("login", "STAT", c.line), b"+OK", "STAT")
        c.send(b"QUIT\r\n")
        expect(timed("login", "QUIT", c.line), b"+OK", "QUIT")
        # the maildrop lock goes when the server is done with the session: wait for its close
        try:
            while c.s.recv(4096):
                pass
        except OSError:
            pass
        c.s.close()
        time.sleep(PAUSE)

    run_until_stopped(out, one)


def tls_storm(addr, seconds):
    """Full handshakes (no resumption), one after the other, for SECONDS; prints the count."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.options |= ssl.OP_NO_TICKET
    end = time.monotonic() + float(seconds)
    n = 0
    while time.monotonic() < end and not stop:
        try:
            with socket.create_connection(hostport(addr), timeout=TIMEOUT) as raw:
                with ctx.wrap_socket(raw) as s:
                    s.recv(512)
                    n += 1
        except OSError as e:
            print("tls: %s" % e, file=sys.stderr)
            time.sleep(0.05)
    print(n)


def write_smtp(smtp, user):
    """A message stored: final dot -> 250 waits for its commit."""
    c = Conn(smtp)
    expect(c.smtp_reply(), b"220", "greeting")
    for cmd in (b"EHLO probe.example.test", b"MAIL FROM:<probe@example.test>",
                b"RCPT TO:<%s>" % user.encode()):
        c.send(cmd + b"\r\n")
        expect(c.smtp_reply(), b"250", cmd)
    c.send(b"DATA\r\n")
    expect(c.smtp_reply(), b"354", "DATA")
    c.send(b"Subject: latbench\r\n\r\n" + (b"x" * 98 + b"\r\n") * 10 + b".\r\n")
    expect(timed("smtp", "DATA-dot", c.smtp_reply), b"250", "final dot")
    c.send(b"QUIT\r\n")
    print("DATA-dot=%.1f" % (samples[-1][3] / 1000.0))


def write_pop3(pop3, user, pw):
    """A message deleted: QUIT -> +OK waits for its commit."""
    c = Conn(pop3)
    expect(c.line(), b"+OK", "greeting")
    pop3_login(c, user, pw, "pop3")
    c.send(b"DELE 1\r\n")
    expect(c.line(), b"+OK", "DELE")
    c.send(b"QUIT\r\n")
    expect(timed("pop3", "QUIT-dele", c.line), b"+OK", "QUIT")
    print("QUIT-dele=%.1f" % (samples[-1][3] / 1000.0))


def pct(sorted_us, p):
    if not sorted_us:
        return float("nan")
    i = min(len(sorted_us) - 1, max(0, int(round(p / 100.0 * len(sorted_us) + 0.5)) - 1))
    return sorted_us[i]


def report(windows_file, files):
    wins = []
    for ln in open(windows_file):
        f = ln.split()
        if len(f) >= 3:
            wins.append((f[0], float(f[1]), float(f[2])))
    allsamples = []
    for fn in files:
        for ln in open(fn):
            t, p, c, us = ln.split()
            allsamples.append((float(t), p, c, int(us)))
    allsamples.sort()
    order = []
    groups = {}
    errors = {}
    import bisect
    times = [s[0] for s in allsamples]
    for name, a, b in wins:
        if name not in order:
            order.append(name)
        # a sample that started up to 60 s before a can still overlap it
        lo = bisect.bisect_left(times, a - 60.0)
        hi = bisect.bisect_right(times, b)
        for t, p, c, us in allsamples[lo:hi]:
            if t + us / 1e6 < a:
                continue
            if p == "error":
                errors.setdefault(name, {})
                errors[name][c] = errors[name].get(c, 0) + 1
                continue
            groups.setdefault((name, p + " " + c), []).append(us)
    cmds = ["smtp CONNECT", "smtp EHLO", "smtp NOOP", "smtp MAIL", "smtp RCPT", "smtp RSET",
            "pop3 STAT", "pop3 LIST", "pop3 UIDL", "pop3 RETR",
            "login CONNECT", "login USER", "login PASS", "login STAT", "login QUIT"]
    nwin = {}
    for name, a, b in wins:
        nwin[name] = nwin.get(name, 0) + 1
    print("| scenario (windows) | command | n | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for name in order:
        first = True
        for c in cmds:
            v = sorted(groups.get((name, c), []))
            if not v:
                continue
            label = "%s (%d)" % (name, nwin[name]) if first else ""
            first = False
            print("| %s | %s | %d | %.2f | %.2f | %.1f |" % (
                label, c.replace("login ", "pop3 login-loop "), len(v),
                pct(v, 50) / 1000.0, pct(v, 99) / 1000.0, v[-1] / 1000.0))
        if errors.get(name):
            for c, n in sorted(errors[name].items()):
                print("| | errors of %s (reconnected) | %d | | | |" % (c, n))


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd = argv[1]
    if cmd == "smtp" and len(argv) == 5:
        smtp_probe(argv[2], argv[3], argv[4])
    elif cmd == "pop3" and len(argv) == 6:
        pop3_probe(argv[2], argv[3], argv[4], argv[5])
    elif cmd == "login" and len(argv) == 6:
        login_probe(argv[2], argv[3], argv[4], argv[5])
    elif cmd == "tls" and len(argv) == 4:
        tls_storm(argv[2], argv[3])
    elif cmd == "write-smtp" and len(argv) == 4:
        write_smtp(argv[2], argv[3])
    elif cmd == "write-pop3" and len(argv) == 5:
        write_pop3(argv[2], argv[3], argv[4])
    elif cmd == "report" and len(argv) >= 4:
        report(argv[2], argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
