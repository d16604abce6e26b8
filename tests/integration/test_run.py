"""Integration tests of `kotak run`: both daemons in the foreground from one
config, their log lines prefixed with the daemon's name, Ctrl-C and SIGTERM
stopping both, and one daemon's death stopping the other. And the seed flow
of issue 4 end to end through it: alice sends to bob over submission with
STARTTLS and AUTH, bob fetches it over POP3 with STLS, byte-identical.

Run: KOTAK_BUILD=build python3 tests/tap_unittest.py tests/integration/test_run.py
"""
import os
import re
import signal
import subprocess
import time
import unittest
import uuid

from kotak_harness import (DAEMON_LISTENERS, KOTAK, PASSWORDS, POP3, SMTP, SOCKET_TIMEOUT,
                           HarnessError, KotakTestCase, clean_env, processes_with)

ALICE = "alice@example.test"
BOB = "bob@example.test"
CLIENT = "client.example.net"
RUN_START_TIMEOUT = 10
RUN_STOP_TIMEOUT = 10
PREFIX = re.compile(r"^(smtpd|pop3d) \| ")


def close_quietly(c):
    try:
        c.quit()
    except Exception:
        try:
            c.close()
        except Exception:
            pass


class RunTest(KotakTestCase):
    CONFIG = {"auth": {"failure_delay": "300ms"}}
    DAEMONS_TO_START = ()    # kotak run starts them

    # --- kotak run as a subprocess ------------------------------------------

    def start_run(self):
        """kotak -c CONF run, in a process group of its own (as a shell's job),
        stdout and stderr to files; waits (bounded) until both daemons say they
        listen on every listener and each port answers."""
        self.out_path = os.path.join(self.kotak.dir, "run.out")
        self.err_path = os.path.join(self.kotak.dir, "run.err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            proc = subprocess.Popen([KOTAK, "-c", self.kotak.conf, "run"],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    cwd=self.kotak.dir, env=clean_env(), start_new_session=True)
        self.addCleanup(self.kill_leftovers, proc)
        deadline = time.monotonic() + RUN_START_TIMEOUT
        want = {name: len(listeners) for name, listeners in DAEMON_LISTENERS.items()}
        while True:
            text = self.out()
            got = {name: len(re.findall(rf"^{name} \| .*event=listening listener=(?!web)",
                                        text, re.M))
                   for name in want}
            if got == want:
                break
            if proc.poll() is not None:
                self.fail(f"kotak run exited {proc.returncode} while starting:\n"
                          f"{text}\n{self.err()}")
            if time.monotonic() >= deadline:
                self.fail(f"kotak run: not every listener up after {RUN_START_TIMEOUT} s "
                          f"({got}):\n{text}\n{self.err()}")
            time.sleep(0.05)
        for listeners in DAEMON_LISTENERS.values():
            for listener in listeners:
                while True:
                    try:
                        self.kotak._probe(listener, max(0.5, deadline - time.monotonic()))
                        break
                    except (OSError, HarnessError) as e:
                        if time.monotonic() >= deadline:
                            self.fail(f"[{listener}] does not answer under kotak run: {e}")
                        time.sleep(0.05)
        return proc

    def out(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def err(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def instance_daemons(self):
        """{pid: name} of this instance's kotak-smtpd and kotak-pop3d processes."""
        found = {}
        for d in {self.kotak.dir, os.path.realpath(self.kotak.dir)}:
            for pid, argv in processes_with(d).items():
                exe = os.path.basename(argv[0])
                if exe in ("kotak-smtpd", "kotak-pop3d"):
                    found[pid] = exe
        return found

    def kill_leftovers(self, proc):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(RUN_STOP_TIMEOUT)
        for pid in self.instance_daemons():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait_exit(self, proc, timeout=RUN_STOP_TIMEOUT):
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"kotak run did not exit within {timeout} s:\n{self.out()}\n{self.err()}")

    def assertNoDaemonsLeft(self):
        deadline = time.monotonic() + 5
        while self.instance_daemons() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.instance_daemons(), {}, "daemons of this instance outlived "
                         "kotak run")

    def assertStoppedCleanly(self, rc):
        self.assertEqual(rc, 0, f"kotak run exited {rc}:\n{self.out()}\n{self.err()}")
        self.assertNoDaemonsLeft()
        text = self.out()
        self.assertRegex(text, r"(?m)^smtpd \| .*event=stopped")
        self.assertRegex(text, r"(?m)^pop3d \| .*event=stopped")

    # --- the seed flow ---------------------------------------------------------

    def test_seed_flow_alice_submits_bob_fetches_byte_identical(self):
        proc = self.start_run()
        tok = uuid.uuid4().hex
        # A whole RFC 5322 message (Date: and Message-ID: given), so that
        # submission adds nothing and bob's copy is byte for byte alice's.
        sent = (f"From: Alice <{ALICE}>\r\nTo: Bob <{BOB}>\r\nSubject: seed {tok}\r\n"
                f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
                f"Message-ID: <{tok}@example.test>\r\n\r\n").encode() + (
                b"Hello Bob,\r\n.a line with a leading dot\r\n..and two\r\n"
                b"Caf\xc3\xa9 8-bit\r\n\r\n-- \r\nAlice\r\n")
        s = SMTP("127.0.0.1", self.kotak.ports["submission"], local_hostname=CLIENT,
                 timeout=SOCKET_TIMEOUT)
        self.addCleanup(close_quietly, s)
        s.ehlo()
        code, _ = s.starttls(context=self.kotak.ssl_context())
        self.assertEqual(code, 220)
        s.ehlo()
        self.assertEqual(s.login(ALICE, PASSWORDS[ALICE])[0], 235)
        self.assertEqual(s.sendmail(ALICE, [BOB], sent), {})
        s.quit()

        p = POP3("127.0.0.1", self.kotak.ports["pop3"], timeout=SOCKET_TIMEOUT)
        self.addCleanup(close_quietly, p)
        self.assertTrue(p.stls(context=self.kotak.ssl_context()).startswith(b"+OK"))
        p.user(BOB)
        self.assertTrue(p.pass_(PASSWORDS[BOB]).startswith(b"+OK"))
        count, size = p.stat()
        self.assertEqual(count, 1)
        resp, lines, _ = p.retr(1)
        got = b"".join(l + b"\r\n" for l in lines)
        self.assertEqual(len(got), size)
        # The server's two trace headers, then exactly what alice sent.
        first, rest = got.split(b"\r\n", 1)
        self.assertEqual(first, f"Return-Path: <{ALICE}>".encode())
        self.assertTrue(rest.startswith(b"Received: "), rest[:80])
        rlines = rest.split(b"\r\n")
        i = 1
        while rlines[i][:1] in (b" ", b"\t"):
            i += 1
        body = b"\r\n".join(rlines[i:])
        self.assertEqual(body, sent, "bob's copy differs from what alice sent")
        self.assertIn(b"ESMTPSA", rest.split(b"\r\n\r\n")[0])
        p.quit()

        proc.send_signal(signal.SIGTERM)
        self.assertStoppedCleanly(self.wait_exit(proc))
        out = self.out()
        self.assertRegex(out, rf"(?m)^smtpd \| .*event=accepted")
        self.assertRegex(out, rf"(?m)^pop3d \| .*event=login user={re.escape(BOB)} result=ok")

    # --- output -------------------------------------------------------------------

    def test_output_lines_are_prefixed_with_the_daemon_name(self):
        proc = self.start_run()
        proc.send_signal(signal.SIGTERM)
        self.assertStoppedCleanly(self.wait_exit(proc))
        lines = self.out().splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, PREFIX, f"an unprefixed line: {line!r}")
            # Behind the prefix, the daemon's own log line, whole.
            self.assertRegex(line, r"^(smtpd|pop3d) \| ts=\S+ level=\w+ ", line)
        self.assertTrue(any(l.startswith("smtpd | ") for l in lines))
        self.assertTrue(any(l.startswith("pop3d | ") for l in lines))
        # Each line under the name of the daemon that wrote it.
        for line in lines:
            if line.startswith("pop3d | "):
                self.assertNotRegex(line, r"listener=(smtp|submission|submissions)\b", line)
            else:
                self.assertNotRegex(line, r"listener=pop3s?\b", line)
        self.assertEqual(len([l for l in lines if re.match(r"pop3d \| .*event=started", l)]), 1)
        self.assertEqual(len([l for l in lines if re.match(r"smtpd \| .*event=started", l)]), 1)

    # --- stopping -----------------------------------------------------------------

    def test_ctrl_c_stops_both_daemons_and_exits_0(self):
        proc = self.start_run()
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        self.assertStoppedCleanly(self.wait_exit(proc))

    def test_sigint_to_kotak_run_alone_stops_both_and_exits_0(self):
        proc = self.start_run()
        proc.send_signal(signal.SIGINT)
        self.assertStoppedCleanly(self.wait_exit(proc))

    def test_sigterm_stops_both_daemons_and_exits_0(self):
        proc = self.start_run()
        proc.send_signal(signal.SIGTERM)
        self.assertStoppedCleanly(self.wait_exit(proc))

    def test_when_pop3d_dies_smtpd_is_stopped_and_kotak_run_exits_non_zero(self):
        proc = self.start_run()
        daemons = self.instance_daemons()
        pop3d = [pid for pid, name in daemons.items() if name == "kotak-pop3d"]
        self.assertEqual(len(pop3d), 1, daemons)
        self.assertEqual(sorted(daemons.values()), ["kotak-pop3d", "kotak-smtpd"])
        os.kill(pop3d[0], signal.SIGKILL)
        rc = self.wait_exit(proc)
        self.assertNotEqual(rc, 0, "kotak run exited 0 after a daemon died")
        self.assertGreater(rc, 0, f"kotak run died of signal {-rc}")
        self.assertNoDaemonsLeft()
        self.assertRegex(self.out(), r"(?m)^smtpd \| .*event=stopped",
                         "kotak-smtpd was not stopped cleanly")
        self.assertIn("pop3d", self.err())

    def test_when_smtpd_dies_pop3d_is_stopped_and_kotak_run_exits_non_zero(self):
        proc = self.start_run()
        smtpd = [pid for pid, name in self.instance_daemons().items() if name == "kotak-smtpd"]
        self.assertEqual(len(smtpd), 1)
        os.kill(smtpd[0], signal.SIGKILL)
        rc = self.wait_exit(proc)
        self.assertGreater(rc, 0)
        self.assertNoDaemonsLeft()
        self.assertRegex(self.out(), r"(?m)^pop3d \| .*event=stopped")

    # --- refusals -----------------------------------------------------------------

    def test_missing_store_exits_2_with_one_line(self):
        os.remove(self.kotak.db_path)
        for leftover in ("kotak.db-wal", "kotak.db-shm"):
            try:
                os.remove(os.path.join(self.kotak.data_dir, leftover))
            except FileNotFoundError:
                pass
        p = subprocess.run([KOTAK, "-c", self.kotak.conf, "run"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, cwd=self.kotak.dir, env=clean_env(),
                           timeout=RUN_STOP_TIMEOUT)
        self.assertEqual(p.returncode, 2, f"{p.stdout}{p.stderr}")
        lines = p.stderr.splitlines()
        self.assertEqual(len(lines), 1, f"not one line: {p.stderr!r}")
        self.assertTrue(lines[0].strip())
        self.assertTrue(p.stderr.endswith("\n"))
        self.assertEqual(p.stdout, "")
        self.assertFalse(os.path.exists(self.kotak.db_path), "kotak run made a store")
        self.assertEqual(self.instance_daemons(), {})


if __name__ == "__main__":
    unittest.main()
