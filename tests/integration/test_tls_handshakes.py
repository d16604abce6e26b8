"""TLS handshakes run off the event loop, in the thread pool: the ECDHE key
exchange and the signature of a full handshake (about 3 ms) use every
core, and the loop thread, which serves every other session, does little
more than move the bytes.

Real clients: Python's ssl, several at once, each handshake a full one.
"""
import socket
import ssl
import struct
import threading
import time
import unittest

from kotak_harness import (PASSWORDS, SOCKET_TIMEOUT, KotakTestCase, RawClient, cpu_ticks,
                           pop3_login_seconds)

BOB = "bob@example.test"

HANDSHAKES = 160  # per listener; at 3 ms each, enough CPU for /proc's 10 ms ticks to tell
CLIENTS = 4


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def full_handshakes(port, greeting, n, clients=CLIENTS):
    """n full handshakes from several clients at once, each greeting read; the errors."""
    errors = []

    def one_client(count):
        ctx = client_context()  # no session kept: every handshake is a full one
        try:
            for _ in range(count):
                with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as raw:
                    with ctx.wrap_socket(raw) as s:
                        data = s.recv(512)
                        if not data.startswith(greeting) or s.session_reused:
                            errors.append(data)
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=one_client, args=(n // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def client_hello():
    """The first flight of a real TLS 1.2 client, as bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context().wrap_bio(incoming, outgoing)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class HandshakesOffTheLoop(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def check_loop_thread_share(self, daemon, listener, greeting):
        pid = self.kotak.procs[daemon].pid
        all_before, loop_before = cpu_ticks(pid), cpu_ticks(pid, pid)
        errors = full_handshakes(self.kotak.ports[listener], greeting, HANDSHAKES)
        self.assertEqual(errors, [])
        spent, on_loop = cpu_ticks(pid) - all_before, cpu_ticks(pid, pid) - loop_before
        self.assertGreaterEqual(spent, 10, "the handshakes cost the daemon CPU time")
        # On the loop, every full handshake's crypto would make this all of it.
        self.assertLess(on_loop, spent * 0.35,
                        f"{daemon}: the loop thread spent {on_loop} of {spent} ticks")

    def test_smtpd_handshakes_run_beside_the_loop(self):
        self.check_loop_thread_share("smtpd", "submissions", b"220 ")

    def test_pop3d_handshakes_run_beside_the_loop(self):
        self.check_loop_thread_share("pop3d", "pop3s", b"+OK")

    def test_starttls_handshakes_still_complete(self):
        with RawClient(self.kotak.ports["submission"]) as c:
            c.reply()
            c.cmd("EHLO client.example")
            self.assertEqual(c.cmd("STARTTLS")[0], 220)
            c.starttls(client_context())
            code, _ = c.cmd("EHLO client.example")
            self.assertEqual(code, 250)
            self.assertEqual(c.cmd("NOOP")[0], 250)

    def test_clients_that_leave_mid_handshake(self):
        """A client gone while its step runs in the pool: the connection is freed
        when the step comes back, never before (the sanitizer build would tell)."""
        hello = client_hello()
        for listener in ("submissions", "pop3s"):
            port = self.kotak.ports[listener]
            for _ in range(60):
                s = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.sendall(hello)
                s.close()  # a reset, at once: the server is mid-step
        time.sleep(0.5)
        for daemon in ("smtpd", "pop3d"):
            self.assertIsNone(self.kotak.procs[daemon].poll(), f"{daemon} still runs")
        self.assertEqual(full_handshakes(self.kotak.ports["submissions"], b"220 ", 4, 1), [])
        self.assertEqual(full_handshakes(self.kotak.ports["pop3s"], b"+OK", 4, 1), [])


class FloodOfHandshakes(KotakTestCase):
    """At most one handshake step per core is in the thread pool: a flood of
    ClientHellos leaves the pool's other threads to password checks."""
    DAEMONS_TO_START = ("smtpd", "pop3d")
    CONFIG = {"limits": {"connections": "2000", "connections_per_address": "2000"},
              "auth": {"cache": "0s"}}  # every login a full check, in the pool
    FLOOD = 800

    def login_seconds(self):
        return pop3_login_seconds(self.kotak.ports["pop3"], BOB, PASSWORDS[BOB])

    def test_a_login_is_not_held_up_behind_a_flood_of_handshakes(self):
        quiet = self.login_seconds()
        hello = client_hello()
        flood = []
        try:
            for _ in range(self.FLOOD):
                s = socket.create_connection(("127.0.0.1", self.kotak.ports["pop3s"]),
                                             timeout=SOCKET_TIMEOUT)
                flood.append(s)
            for s in flood:
                s.sendall(hello)  # each a step of about 3 ms of CPU
            during = self.login_seconds()
        finally:
            for s in flood:
                s.close()
        # Behind every step in the pool's queue, the check would wait about
        # FLOOD x 3 ms / 2 cores; beside them, about as long as when quiet.
        self.assertLess(during, quiet + 0.15, f"a login took {during:.3f} s in the flood, "
                                              f"{quiet:.3f} s without")


if __name__ == "__main__":
    unittest.main()
