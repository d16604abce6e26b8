"""Who the daemons are when they read the network: started as root, each
becomes [server] user after binding its ports, and refuses to start as
root without one. The store they keep is readable by that user alone.

Every test starts the real daemons; the ones about root skip when the
suite does not run as root.
"""
import os
import pwd
import signal
import socket
import stat
import subprocess
import unittest

from kotak_harness import DAEMONS, PASSWORDS, POP3, SMTP, KotakTestCase, clean_env, config

ALICE = "alice@example.test"


def ids(pid):
    """The real, effective, saved and file-system uid and gid, and the groups, of pid."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                out[key] = [int(v) for v in value.split()]
    return out


def conf_value(path, section, key):
    current = None
    with open(path) as f:
        for line in f:
            line = line.split(";", 1)[0].strip()
            if line.startswith("["):
                current = line.strip("[]")
            elif current == section and "=" in line:
                k, _, v = line.partition("=")
                if k.strip() == key:
                    return v.strip()
    return None


@unittest.skipUnless(os.geteuid() == 0, "needs root: the daemons only change user as root")
class RootStartTest(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def test_started_as_root_each_daemon_serves_as_the_user_init_set(self):
        user = conf_value(self.kotak.conf, "server", "user")
        self.assertEqual(user, "kotak", "kotak init run as root names the user kotak")
        pw = pwd.getpwnam(user)
        self.assertNotEqual(pw.pw_uid, 0)
        for name in ("smtpd", "pop3d"):
            got = ids(self.kotak.procs[name].pid)
            self.assertEqual(got["Uid"], [pw.pw_uid] * 4, f"{name} uids")
            self.assertEqual(got["Gid"], [pw.pw_gid] * 4, f"{name} gids")
            self.assertNotIn(0, got["Groups"], f"{name} kept root's group")

    def test_the_user_needs_no_right_to_the_folders_above_the_data(self):
        # The instance lives in a private temporary folder (0700, root's), as
        # a clone in /root does: the daemons still store and serve mail.
        self.assertEqual(stat.S_IMODE(os.stat(self.kotak.dir).st_mode), 0o700)
        self.assertEqual(os.stat(self.kotak.dir).st_uid, 0)
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=20) as s:
            s.sendmail("someone@remote.example", [ALICE],
                       b"Subject: private folders\r\n\r\nhello\r\n")
        p = POP3("127.0.0.1", self.kotak.ports["pop3"], timeout=20)
        try:
            p.user(ALICE)
            p.pass_(PASSWORDS[ALICE])
            self.assertEqual(p.stat()[0], 1)
            self.assertIn(b"Subject: private folders", b"\r\n".join(p.retr(1)[1]))
        finally:
            p.quit()

    def test_the_data_folder_and_the_store_belong_to_the_user_alone(self):
        pw = pwd.getpwnam("kotak")
        data = self.kotak.data_dir
        st = os.stat(data)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (pw.pw_uid, 0o700))
        for entry in os.listdir(data):
            st = os.lstat(os.path.join(data, entry))
            self.assertEqual(st.st_uid, pw.pw_uid, entry)
            self.assertEqual(stat.S_IMODE(st.st_mode) & 0o077, 0, f"{entry} is open to others")

    def test_a_certificate_reload_still_reads_the_pair_as_the_user(self):
        for name in ("smtpd", "pop3d"):
            self.kotak.procs[name].send_signal(signal.SIGHUP)
            self.kotak.wait_log("event=tls-reload result=ok", name=name)


@unittest.skipUnless(os.geteuid() == 0, "needs root: only root is refused without a user")
class RootWithoutUserTest(KotakTestCase):
    DAEMONS_TO_START = ()

    @config(server={"user": ""})
    def test_started_as_root_without_a_user_each_daemon_refuses_with_one_line(self):
        for name in ("smtpd", "pop3d"):
            p = subprocess.run([DAEMONS[name], "-c", self.kotak.conf], capture_output=True,
                               text=True, stdin=subprocess.DEVNULL, cwd=self.kotak.dir,
                               env=clean_env(), timeout=30)
            self.assertEqual(p.returncode, 2, f"{name}: {p.stderr!r}")
            errors = [line for line in p.stderr.splitlines() if "level=" not in line]
            self.assertEqual(len(errors), 1, f"{name}: {p.stderr!r}")
            self.assertIn("[server] user", errors[0])
        # Nothing was left listening.
        for listener in ("smtp", "pop3"):
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", self.kotak.ports[listener]), timeout=2)


if __name__ == "__main__":
    unittest.main()
