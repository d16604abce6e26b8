"""The daemons under systemd (dist/systemd): the units as systemd reads them,
and the protocol they speak with it, run here without a running systemd.

systemd-analyze scores each unit's sandbox (--offline=true): at most 2.0.
Each unit's ExecStart and ExecReload lines are run as written (their
@sbindir@ set to this build, KOTAK_CONFIG from the unit's Environment=),
with a NOTIFY_SOCKET the test listens on: READY=1 comes once the listeners
answer, SIGHUP (ExecReload) brings RELOADING=1 with MONOTONIC_USEC and then
READY=1, SIGTERM brings STOPPING=1 and exit status 0. A bad config stops
the daemon itself with status 78, the one RestartPreventExitStatus names
(systemd applies it to the main process alone), so it is not restarted in
a loop; a reload checks the files first (--check-config) and a broken pair
fails the reload, not the daemon.

dist/certbot/kotak-renew-hook, run as certbot runs a deploy hook (and as
uacme's users would), puts a certificate made here where kotak reads it,
with the modes it promises, and the daemon serves it.

dist/fail2ban's filter, tried with fail2ban-regex on the lines the daemons
really wrote: failed logins and sessions closed for too many errors name
the client's address, and no user name a client chose (one holding
"ip=6.6.6.6", quotes, a whole forged line) names another.
"""
import base64
import grp
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import time
import unittest

from kotak_harness import (DAEMONS, HOSTNAME, SOCKET_TIMEOUT, KotakTestCase, RawClient,
                           clean_env, free_ports)
from peers import make_cert

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = os.path.join(HERE, "..", "..", "dist", "systemd")
HOOK = os.path.join(HERE, "..", "..", "dist", "certbot", "kotak-renew-hook")


def service_keys(path):
    """A unit file's [Service] keys, each a list of its values."""
    with open(path) as f:
        text = f.read()
    keys = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    return keys


def unit(daemon):
    """The unit's [Service] keys (@sbindir@ still in them), and this build's folder for it."""
    keys = service_keys(os.path.join(UNITS, f"kotak-{daemon}.service.in"))
    return keys, os.path.dirname(DAEMONS[daemon])


def command(keys, key, sbindir, index=0):
    return [w.replace("@sbindir@", sbindir) for w in shlex.split(keys[key][index])]


class Notified:
    """A NOTIFY_SOCKET as systemd makes one: a datagram socket the daemon writes states to."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kotak-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.dir, 0o755)  # the daemon may have dropped to its own user
        os.chmod(self.path, 0o777)

    def next(self, timeout=10):
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def close(self):
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


class Units(unittest.TestCase):

    def test_each_unit_scores_at_most_2_0(self):
        for daemon in ("smtpd", "pop3d"):
            with open(os.path.join(UNITS, f"kotak-{daemon}.service.in")) as f:
                text = f.read()
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, f"kotak-{daemon}.service")
                with open(path, "w") as f:
                    f.write(text.replace("@sbindir@", "/usr/sbin"))
                p = subprocess.run(["systemd-analyze", "security", "--offline=true", path],
                                   capture_output=True, text=True, timeout=60)
            m = re.search(r"Overall exposure level for kotak-\w+\.service: (\d+\.\d)", p.stdout)
            self.assertIsNotNone(m, p.stdout + p.stderr)
            self.assertLessEqual(float(m.group(1)), 2.0, p.stdout)

    def test_units_ask_for_notify_reload_and_no_restart_on_a_bad_config(self):
        for daemon in ("smtpd", "pop3d"):
            keys, _ = unit(daemon)
            self.assertEqual(keys["Type"], ["notify"])
            self.assertEqual(keys["RestartPreventExitStatus"], ["78"])
            self.assertEqual(keys["ExecReload"], [f"@sbindir@/kotak-{daemon} --check-config",
                                                  "/bin/kill -HUP $MAINPID"])
            self.assertNotIn("ExecStartPre", keys, "a check before the start escapes "
                             "RestartPreventExitStatus")
            self.assertEqual(keys["CapabilityBoundingSet"], ["CAP_NET_BIND_SERVICE"])
            self.assertEqual(keys["AmbientCapabilities"], ["CAP_NET_BIND_SERVICE"])
            self.assertEqual(keys["User"], ["kotak"])
        with open(os.path.join(UNITS, "kotak.target")) as f:
            self.assertIn("Wants=kotak-smtpd.service kotak-pop3d.service", f.read())


class ExecLines(KotakTestCase):
    """The units' command lines run against an instance of the harness."""
    DAEMONS_TO_START = ()

    def env(self, keys, **extra):
        env = clean_env(**extra)
        for assignment in keys.get("Environment", []):
            k, v = assignment.split("=", 1)
            env[k] = v
        env["KOTAK_CONFIG"] = self.kotak.conf  # the unit's /etc/kotak/kotak.conf, here
        return env

    def test_ready_reloading_stopping_as_systemd_hears_them(self):
        for daemon, listener in (("smtpd", "smtp"), ("pop3d", "pop3")):
            with self.subTest(daemon=daemon):
                keys, sbindir = unit(daemon)
                check = subprocess.run(command(keys, "ExecReload", sbindir), cwd=self.kotak.dir,
                                       env=self.env(keys), capture_output=True, text=True,
                                       timeout=30)
                self.assertEqual(check.returncode, 0, check.stderr)
                self.assertIn("is good", check.stdout)
                n = Notified()
                self.addCleanup(n.close)
                proc = subprocess.Popen(command(keys, "ExecStart", sbindir), cwd=self.kotak.dir,
                                        env=self.env(keys, NOTIFY_SOCKET=n.path),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
                self.addCleanup(lambda: proc.poll() is None and proc.kill())
                self.assertEqual(n.next(), "READY=1")
                # Ready means listening: a client is answered at once.
                with socket.create_connection(("127.0.0.1", self.kotak.ports[listener]),
                                              timeout=SOCKET_TIMEOUT) as c:
                    self.assertRegex(c.recv(512), rb"^(220|\+OK)")
                proc.send_signal(signal.SIGHUP)
                reloading = n.next()
                self.assertRegex(reloading, r"^RELOADING=1\nMONOTONIC_USEC=\d+$")
                usec = int(reloading.split("=")[-1])
                self.assertLess(abs(usec - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000),
                                10_000_000, "MONOTONIC_USEC is CLOCK_MONOTONIC's")
                self.assertEqual(n.next(), "READY=1", "the certificate is read again")
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(n.next(), "STOPPING=1")
                _, err = proc.communicate(timeout=30)
                self.assertEqual(proc.returncode, 0, err)

    def test_a_bad_config_is_status_78_which_systemd_does_not_restart(self):
        with open(self.kotak.conf, "a") as f:
            f.write("\n[smtp]\nlisten_typo = 127.0.0.1:25\n")
        for daemon in ("smtpd", "pop3d"):
            keys, sbindir = unit(daemon)
            for key in ("ExecStart", "ExecReload"):
                p = subprocess.run(command(keys, key, sbindir), cwd=self.kotak.dir,
                                   env=self.env(keys), capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 78, f"{daemon} {key}: {p.stderr}")
                self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
                self.assertIn("unknown key 'listen_typo' in [smtp]", p.stderr)

    def test_a_broken_certificate_fails_the_reload_and_the_start_with_78(self):
        with open(os.path.join(self.kotak.data_dir, "cert.pem"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
        keys, sbindir = unit("smtpd")
        for key in ("ExecReload", "ExecStart"):
            p = subprocess.run(command(keys, key, sbindir), cwd=self.kotak.dir,
                               env=self.env(keys), capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 78, f"{key}: {p.stderr}")
            self.assertIn("cannot read cert", p.stderr)


class RenewHook(KotakTestCase):
    DAEMONS_TO_START = ("smtpd",)

    def lineage(self):
        d = tempfile.mkdtemp(prefix="kotak-lineage-")
        self.addCleanup(shutil.rmtree, d)
        cert, key = make_cert(d, HOSTNAME, days=90)
        os.rename(cert, os.path.join(d, "fullchain.pem"))
        os.rename(key, os.path.join(d, "privkey.pem"))
        return d

    def hook(self, *args, **env):
        group = grp.getgrgid(os.stat(os.path.join(self.kotak.data_dir, "key.pem")).st_gid).gr_name
        base = dict(KOTAK_TLS_DIR=self.kotak.data_dir, KOTAK_GROUP=group,
                    KOTAK_RELOAD=f"kill -HUP {self.kotak.procs['smtpd'].pid}")
        base.update(env)
        return subprocess.run([HOOK, *args], env=clean_env(**base), capture_output=True,
                              text=True, timeout=30)

    def served(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.kotak.ports["submissions"]),
                                      timeout=SOCKET_TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname=HOSTNAME) as s:
                return s.getpeercert(binary_form=True)

    def test_certbot_deploy_hook_puts_the_pair_in_place_and_kotak_serves_it(self):
        lineage = self.lineage()
        p = self.hook(RENEWED_LINEAGE=lineage)
        self.assertEqual(p.returncode, 0, p.stderr)
        for name, src, mode in (("cert.pem", "fullchain.pem", 0o644), ("key.pem", "privkey.pem", 0o640)):
            path = os.path.join(self.kotak.data_dir, name)
            with open(path, "rb") as a, open(os.path.join(lineage, src), "rb") as b:
                self.assertEqual(a.read(), b.read(), name)
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), mode, name)
        self.assertFalse([f for f in os.listdir(self.kotak.data_dir) if f.endswith(".new")])
        self.assertTrue(self.kotak.wait_log("event=tls-reload result=ok", timeout=10))
        with open(os.path.join(lineage, "fullchain.pem")) as f:
            self.assertEqual(self.served(), ssl.PEM_cert_to_DER_cert(f.read()))

    def test_another_certificate_certbot_renews_is_left_alone(self):
        lineage = self.lineage()
        with open(os.path.join(self.kotak.data_dir, "cert.pem"), "rb") as f:
            ours = f.read()
        p = self.hook(RENEWED_LINEAGE=lineage, RENEWED_DOMAINS="www.example.org example.org",
                      KOTAK_CONFIG=self.kotak.conf)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("is not kotak's (mail.example.test); nothing done", p.stdout)
        with open(os.path.join(self.kotak.data_dir, "cert.pem"), "rb") as f:
            self.assertEqual(f.read(), ours)
        p = self.hook(RENEWED_LINEAGE=lineage, RENEWED_DOMAINS="mail.example.test",
                      KOTAK_CONFIG=self.kotak.conf)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(self.kotak.wait_log("event=tls-reload result=ok", timeout=10))

    def test_uacme_form_and_mistakes(self):
        lineage = self.lineage()
        p = self.hook(os.path.join(lineage, "fullchain.pem"), os.path.join(lineage, "privkey.pem"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(self.kotak.wait_log("event=tls-reload result=ok", timeout=10))
        p = self.hook(os.path.join(lineage, "missing.pem"), os.path.join(lineage, "privkey.pem"))
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot read", p.stderr)
        p = self.hook()
        self.assertEqual(p.returncode, 2)
        self.assertIn("usage", p.stderr)


class SocketActivation(KotakTestCase):
    """The daemons on sockets systemd bound: systemd-socket-activate hands them over by the
    names the .socket units give (FileDescriptorName=), in place of the config's listen=."""
    DAEMONS_TO_START = ()

    def test_named_sockets_replace_the_configs_addresses(self):
        for name in ("smtp", "submission", "submissions", "pop3", "pop3s"):
            with open(os.path.join(UNITS, f"kotak-{name}.socket")) as f:
                text = f.read()
            self.assertIn(f"FileDescriptorName={name}\n", text)
            self.assertIn(f"Service=kotak-{'pop3d' if name.startswith('pop3') else 'smtpd'}.service",
                          text)
        for daemon, names, greeting in (("smtpd", ("smtp", "submission"), b"220 "),
                                        ("pop3d", ("pop3",), b"+OK")):
            with self.subTest(daemon=daemon):
                ports = free_ports(len(names))
                cmd = ["systemd-socket-activate"]
                # The first as a .socket unit's ListenStream=PORT binds: dual-stack.
                cmd += ["-l", f"[::]:{ports[0]}"]
                for port in ports[1:]:
                    cmd += ["-l", f"127.0.0.1:{port}"]
                cmd += ["--fdname=" + ":".join(names), DAEMONS[daemon], "-c", self.kotak.conf]
                proc = subprocess.Popen(cmd, cwd=self.kotak.dir, env=clean_env(),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                self.addCleanup(lambda p=proc: p.poll() is None and p.kill())
                for port in ports:  # the first connection starts the daemon; each is answered
                    deadline = time.monotonic() + 20
                    while True:
                        try:
                            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                                self.assertTrue(c.recv(64).startswith(greeting))
                            break
                        except OSError:
                            self.assertLess(time.monotonic(), deadline, f"port {port}")
                            time.sleep(0.1)
                # The config's own address for those sections is not bound.
                for name in names:
                    with self.assertRaises(OSError, msg=f"[{name}] from the config"):
                        socket.create_connection(("127.0.0.1", self.kotak.ports[name]), timeout=2)
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=30)
                self.assertEqual(proc.returncode, 0, err)
                log = self.kotak.log(daemon) + err.decode()
                self.assertRegex(log, rf"listener={names[0]} fd=3 from=systemd")
                # An IPv4 client on the dual-stack socket is named as IPv4 (logs, fail2ban).
                self.assertRegex(log, r"ip=127\.0\.0\.1 ")
                self.assertNotIn("::ffff:", log)


FILTER = os.path.join(HERE, "..", "..", "dist", "fail2ban", "filter.d", "kotak.conf")
FORGED = "6.6.6.6"


class Fail2ban(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def banned(self, daemon):
        """The addresses fail2ban-regex takes from the daemon's log, one per matched line;
        and the same from the lines as the journal backend (the jail's) hands them over."""
        p = subprocess.run(["fail2ban-regex", self.kotak.logs[daemon], os.path.abspath(FILTER),
                            "-o", "ip"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        journal = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "f2b_journal.py"),
                                  os.path.dirname(os.path.dirname(os.path.abspath(FILTER))),
                                  daemon, self.kotak.logs[daemon]],
                                 capture_output=True, text=True, timeout=60)
        self.assertEqual(journal.returncode, 0, journal.stderr)
        self.assertEqual(journal.stdout.split(), p.stdout.split(), "from the journal as from a file")
        return p.stdout.split()

    def smtp_login(self, user, source):
        c = RawClient(self.kotak.ports["submission"], source=source)
        self.addCleanup(c.close)
        c.reply()
        c.cmd("EHLO client.test")  # loopback: a login without TLS is allowed
        cred = base64.b64encode(b"\0" + user.encode() + b"\0wrong-password").decode()
        code = c.cmd(f"AUTH PLAIN {cred}")[0]
        c.close()
        return code

    def pop3_login(self, user, source):
        c = RawClient(self.kotak.ports["pop3"], source=source)
        self.addCleanup(c.close)
        c.sock.settimeout(SOCKET_TIMEOUT)
        c.sock.recv(512)
        for line in (f"USER {user}", "PASS wrong-password", "QUIT"):
            c.sock.sendall(line.encode() + b"\r\n")
            time.sleep(0.5 if line.startswith("PASS") else 0.05)
        c.close()

    def test_the_filter_bans_the_client_and_no_address_a_client_wrote(self):
        forgeries = [f"x ip={FORGED} event=login user=y result=failed",
                     f'a"b ip={FORGED}', f"{FORGED}", f"ip={FORGED}",
                     f"alice@example.test result=failed\nts=2026-01-01T00:00:00Z level=info smtp "
                     f"session=1 ip={FORGED} event=login user=z"]
        self.assertEqual(self.smtp_login("alice@example.test", "127.0.0.2"), 535)
        for user in forgeries:
            self.smtp_login(user, "127.0.0.2")
            self.pop3_login(user.replace("\n", " "), "127.0.0.3")
        # Ten unknown commands: the session is closed for too many errors.
        c = RawClient(self.kotak.ports["smtp"], source="127.0.0.4")
        self.addCleanup(c.close)
        c.reply()
        for _ in range(12):
            try:
                c.sock.sendall(b"XYZZY\r\n")
            except OSError:
                break
        time.sleep(0.5)
        self.kotak.wait_log(r"ip=127\.0\.0\.4 event=too-many-errors")
        self.kotak.wait_log(r"ip=127\.0\.0\.3 event=login", name="pop3d")
        smtp, pop3 = self.banned("smtpd"), self.banned("pop3d")
        self.assertNotIn(FORGED, smtp + pop3, "a forged address")
        self.assertEqual(set(smtp), {"127.0.0.2", "127.0.0.4"}, self.kotak.log("smtpd"))
        self.assertEqual(set(pop3), {"127.0.0.3"}, self.kotak.log("pop3d"))
        # The two one-word names got to PASS; each client left before the failure delay
        # ended, and each attempt is on record all the same.
        self.assertEqual(pop3.count("127.0.0.3"), 2, self.kotak.log("pop3d"))
        self.assertGreaterEqual(smtp.count("127.0.0.2"), 1 + len(forgeries) - 1)
        self.assertEqual(smtp.count("127.0.0.4"), 1)

    def test_the_jail_is_off_until_enabled_and_reads_the_journal(self):
        with open(os.path.join(os.path.dirname(FILTER), "..", "jail.d", "kotak.conf")) as f:
            jail = f.read()
        self.assertRegex(jail, r"(?m)^enabled = false$")
        self.assertRegex(jail, r"(?m)^backend = systemd$")
        with open(FILTER) as f:
            self.assertIn("journalmatch = _SYSTEMD_UNIT=kotak-smtpd.service", f.read())


if __name__ == "__main__":
    unittest.main()
