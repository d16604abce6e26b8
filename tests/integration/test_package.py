"""The Debian package, as an administrator meets it: built from the tree
with dpkg-buildpackage, checked by lintian (no error), installed with dpkg,
its programs used (a mail sent to the installed kotak-smtpd and fetched
from the installed kotak-pop3d, with a copy of the installed config on
other ports), upgraded over itself without touching an edited
/etc/kotak/kotak.conf, and purged.

It needs root and changes the machine (it installs the package and removes
it again), so it runs once per test run: in the plain build's pass
(KOTAK_TEST_VARIANT, set by tests/run.sh), not again under the sanitizers.
"""
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

from kotak_harness import POP3, SMTP, SOCKET_TIMEOUT, clean_env, free_ports
from test_systemd import Notified, service_keys

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.dirname(os.path.dirname(HERE))
CONF = "/etc/kotak/kotak.conf"


def installed_unit(daemon):
    """The installed unit's [Service] keys, each a list of its values."""
    return service_keys(f"/usr/lib/systemd/system/kotak-{daemon}.service")


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 900)
    return subprocess.run(cmd, **kw)


@unittest.skipUnless(os.geteuid() == 0, "installs a package: needs root")
@unittest.skipIf(os.environ.get("KOTAK_TEST_VARIANT", "plain") != "plain",
                 "the package is built and installed once, in the plain build's pass")
class Package(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if run(["dpkg", "-s", "kotak"]).returncode == 0:
            raise unittest.SkipTest("a kotak package is installed already; not touching it")
        cls.dir = tempfile.mkdtemp(prefix="kotak-deb-")
        src = os.path.join(cls.dir, "kotak-0.1.0")
        files = run(["git", "-C", TREE, "ls-files", "-z"]).stdout.split("\0")
        for name in filter(None, files):
            if os.path.exists(os.path.join(TREE, name)):
                os.makedirs(os.path.join(src, os.path.dirname(name)), exist_ok=True)
                shutil.copy2(os.path.join(TREE, name), os.path.join(src, name))
        cls.build = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src)
        debs = [f for f in os.listdir(cls.dir) if re.match(r"kotak_.*_\w+\.deb$", f)]
        cls.deb = os.path.join(cls.dir, debs[0]) if debs else None

    @classmethod
    def tearDownClass(cls):
        run(["dpkg", "--purge", "kotak"])
        for path in ("/var/lib/kotak", "/etc/kotak"):
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_1_it_builds_and_lintian_finds_no_error(self):
        self.assertEqual(self.build.returncode, 0, self.build.stdout[-3000:] + self.build.stderr)
        self.assertIsNotNone(self.deb)
        p = run(["lintian", "--tag-display-limit", "0", self.deb])
        errors = [line for line in p.stdout.splitlines() if line.startswith("E:")]
        self.assertEqual(errors, [], p.stdout)
        listing = run(["dpkg", "-c", self.deb]).stdout
        for path in ("./usr/sbin/kotak-smtpd", "./usr/sbin/kotak-pop3d", "./usr/bin/kotak",
                     "./etc/kotak/kotak.conf", "./usr/lib/sysusers.d/kotak.conf",
                     "./usr/lib/tmpfiles.d/kotak.conf",
                     "./usr/lib/systemd/system/kotak-smtpd.service", "./usr/lib/systemd/system/kotak.target",
                     "./usr/share/man/man5/kotak.conf.5.gz", "./usr/share/kotak/kotak-renew-hook",
                     "./etc/fail2ban/filter.d/kotak.conf"):
            self.assertIn(path, listing)

    def test_2_installed_it_says_what_next_and_serves_mail(self):
        self.assertIsNotNone(self.deb, "not built")
        p = run(["dpkg", "-i", self.deb])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("kotak init --keep-config", p.stdout)
        st = os.stat(CONF)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual(st.st_uid, 0)
        kotak_gid = int(run(["getent", "group", "kotak"]).stdout.split(":")[2])
        self.assertEqual(st.st_gid, kotak_gid, "the daemons' group reads the config")
        # The installed config, checked as the unit's reload would (its folders made first).
        p = run(["kotak", "-c", CONF, "init", "--keep-config"])
        self.assertEqual(p.returncode, 0, p.stderr)
        p = run(["/usr/sbin/kotak-smtpd", "--check-config"], env=clean_env(KOTAK_CONFIG=CONF))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(stat.S_IMODE(os.stat("/var/lib/kotak").st_mode), 0o700)
        # The installed programs at work, on a copy of that config moved to free ports.
        ports = dict(zip(("smtp", "submission", "submissions", "pop3", "pop3s"), free_ports(5)))
        with open(CONF) as f:
            text = f.read()
        for name, port in ports.items():
            text = re.sub(rf"(?m)^(\[{name}\][^\n]*\nlisten = )\S+", rf"\g<1>127.0.0.1:{port}", text)
        conf = os.path.join(self.dir, "kotak.conf")
        with open(conf, "w") as f:
            f.write(text.replace("/var/lib/kotak", os.path.join(self.dir, "data"))
                        .replace("/etc/kotak/tls", os.path.join(self.dir, "tls")))
        os.chmod(self.dir, 0o755)
        os.chmod(conf, 0o644)
        for args in (["init", "--keep-config"], ["domain", "add", "example.test"]):
            p = run(["kotak", "-c", conf, *args])
            self.assertEqual(p.returncode, 0, p.stderr)
        p = run(["kotak", "-c", conf, "user", "add", "bob@example.test", "--password-stdin"],
                input="Deb-Test-pw-7\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        # Started as systemd would: the installed unit's ExecStart and Environment, with
        # KOTAK_CONFIG pointed at the copy, and a NOTIFY_SOCKET that hears each one's READY=1.
        procs, notified = [], []
        for d in ("smtpd", "pop3d"):
            keys = installed_unit(d)
            env = clean_env()
            for assignment in keys.get("Environment", []):
                k, v = assignment.split("=", 1)
                env[k] = v
            self.assertEqual(env.get("KOTAK_CONFIG"), CONF, "the unit names the config")
            n = Notified()
            self.addCleanup(n.close)
            env.update(KOTAK_CONFIG=conf, NOTIFY_SOCKET=n.path)
            procs.append(subprocess.Popen(shlex.split(keys["ExecStart"][0]), env=env,
                                          stderr=subprocess.PIPE))
            notified.append(n)
        try:
            for n in notified:
                self.assertEqual(n.next(timeout=20), "READY=1")
            deadline = time.monotonic() + 20
            while True:
                try:
                    with SMTP("127.0.0.1", ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
                        s.sendmail("alice@elsewhere.test", ["bob@example.test"],
                                   b"Subject: from the package\r\n\r\nhello\r\n")
                    p3 = POP3("127.0.0.1", ports["pop3"], timeout=SOCKET_TIMEOUT)
                    break
                except OSError:
                    self.assertLess(time.monotonic(), deadline, "the daemons did not answer")
                    time.sleep(0.2)
            p3.user("bob@example.test")
            p3.pass_("Deb-Test-pw-7")
            body = b"\r\n".join(p3.retr(1)[1])
            p3.quit()
            self.assertIn(b"Subject: from the package", body)
        finally:
            for proc in procs:
                proc.terminate()
            for proc, n in zip(procs, notified):
                _, err = proc.communicate(timeout=30)
                self.assertEqual(proc.returncode, 0, err)
                self.assertEqual(n.next(), "STOPPING=1")

    def test_3_an_upgrade_keeps_an_edited_config_and_purge_cleans_up(self):
        self.assertIsNotNone(self.deb, "not built")
        with open(CONF, "a") as f:
            f.write("; edited by the administrator\n")
        p = run(["dpkg", "-i", self.deb], env=clean_env(DEBIAN_FRONTEND="noninteractive"),
                stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotIn("kotak init --keep-config", p.stdout, "said on the first install only")
        with open(CONF) as f:
            self.assertIn("; edited by the administrator", f.read())
        p = run(["dpkg", "--purge", "kotak"])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for path in ("/usr/sbin/kotak-smtpd", "/usr/bin/kotak", CONF):
            self.assertFalse(os.path.exists(path), path)
        self.assertNotIn(CONF, run(["dpkg-statoverride", "--list"]).stdout)
        self.assertTrue(os.path.exists("/var/lib/kotak/kotak.db"), "the mail stays, even on purge")


if __name__ == "__main__":
    unittest.main()
