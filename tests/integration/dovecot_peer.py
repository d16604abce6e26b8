"""A private Dovecot for integration tests: Debian's dovecot-core and
dovecot-pop3d, started with a config of its own in a temporary folder
(`dovecot -c DIR/dovecot.conf`), so /etc/dovecot/dovecot.conf is neither read
nor touched (bench/peers.sh does the same for the benchmarks). POP3 with
STLS and POP3S on free loopback ports, a certificate made by the test,
users in a passwd-file, and each user's Maildir under DIR/mail/USER that a
test fills with Python's mailbox.Maildir.

    with DovecotPeer({"carol": "pw"}, cert=cert, key=key) as dc:
        box = dc.maildir("carol")               # mailbox.Maildir
        box.add(b"Subject: x\\r\\n\\r\\nhi\\r\\n")
        dc.port["pop3"], dc.port["pop3s"]
        dc.uidls("carol")                       # [(number, uidl)] as Dovecot serves them

Run as root, Dovecot's own users do its work (dovecot, dovenull) and the
mail belongs to nobody; run as anyone else, every service runs as that
user. Standard library only. Every wait is bounded.
"""
import mailbox
import os
import poplib
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from kotak_harness import HarnessError, free_ports

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
START_TIMEOUT = 15


class DovecotPeer:
    def __init__(self, users, cert, key, uidl_format="%08Xu%08Xv"):
        if not os.access(DOVECOT, os.X_OK):
            raise unittest.SkipTest("dovecot is not installed (Debian dovecot-core, dovecot-pop3d)")
        if not os.path.exists("/usr/lib/dovecot/pop3"):
            raise unittest.SkipTest("dovecot-pop3d is not installed")
        self.users = dict(users)
        # Short: Dovecot's UNIX sockets live under base_dir (108 octets at most).
        self.dir = tempfile.mkdtemp(prefix="kdc-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.base_dir = os.path.join(self.dir, "run")
        self.mail = os.path.join(self.dir, "mail")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.log = os.path.join(self.dir, "dovecot.log")
        self.cert, self.key = cert, key
        self.uidl_format = uidl_format
        ports = free_ports(2)
        self.port = {"pop3": ports[0], "pop3s": ports[1]}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
            self.internal, self.login_user = "dovecot", "dovenull"
        else:
            me = pwd.getpwuid(os.geteuid())
            self.uid, self.gid = me.pw_uid, me.pw_gid
            self.internal = self.login_user = me.pw_name
        self.started = False

    def _write_config(self):
        os.makedirs(self.mail, exist_ok=True)
        os.chmod(self.mail, 0o755)
        users_file = os.path.join(self.dir, "users")
        with open(users_file, "w") as f:
            for name, password in self.users.items():
                f.write(f"{name}:{{PLAIN}}{password}\n")
        os.chmod(users_file, 0o644)
        with open(self.conf, "w") as f:
            f.write(f"""# a private Dovecot of kotak's tests (tests/integration/dovecot_peer.py)
base_dir = {self.base_dir}/
instance_name = kdc-{os.path.basename(self.dir)}
state_dir = {self.dir}/state
protocols = pop3
listen = 127.0.0.1
log_path = {self.log}
info_log_path = {self.log}
default_internal_user = {self.internal}
default_login_user = {self.login_user}
first_valid_uid = {self.uid}
last_valid_uid = {self.uid}
mail_location = maildir:{self.mail}/%n
mail_uid = {self.uid}
mail_gid = {self.gid}
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {users_file}
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.mail}/%n
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port["pop3"]}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {self.port["pop3s"]}
    ssl = yes
  }}
}}
protocol pop3 {{
  pop3_uidl_format = {self.uidl_format}
}}
""")

    def maildir(self, user):
        """The user's Maildir (created, owned by the mail user), as mailbox.Maildir."""
        path = os.path.join(self.mail, user)
        os.makedirs(self.mail, exist_ok=True)
        box = mailbox.Maildir(path, create=True)
        self.fix_owner()
        return box

    def fix_owner(self):
        """Gives the mail folders to the mail user (a test as root writes them as root)."""
        if os.geteuid() != 0:
            return
        for root, dirs, files in os.walk(self.mail):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.uid, self.gid)
        os.lchown(self.mail, self.uid, self.gid)

    def start(self):
        self._write_config()
        self.fix_owner()
        # The master goes to the background: its output to a file, not a pipe
        # that it would keep open.
        err_path = os.path.join(self.dir, "start.err")
        with open(err_path, "w") as err:
            p = subprocess.run([DOVECOT, "-c", self.conf], stdin=subprocess.DEVNULL,
                               stdout=err, stderr=err, timeout=START_TIMEOUT)
        if p.returncode != 0:
            with open(err_path) as f:
                raise HarnessError(f"dovecot -c {self.conf}: exit {p.returncode}: "
                                   f"{f.read().strip()}\n{self.log_text()}")
        self.started = True
        deadline = time.monotonic() + START_TIMEOUT
        for name in ("pop3", "pop3s"):
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", self.port[name]), timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise HarnessError(f"dovecot's {name} port does not answer; its log:\n"
                                           f"{self.log_text()}")
                    time.sleep(0.05)
        return self

    def stop(self):
        if not self.started:
            return
        subprocess.run([DOVECOT, "-c", self.conf, "stop"], capture_output=True, timeout=20)
        # Bounded: the master is gone when its pid file is.
        pid_file = os.path.join(self.base_dir, "master.pid")
        deadline = time.monotonic() + 10
        while os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.started = False

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def pop(self, user):
        """A logged-in poplib client over STLS, checking the certificate."""
        p = poplib.POP3("127.0.0.1", self.port["pop3"], timeout=20)
        ctx = ssl.create_default_context(cafile=self.cert)
        p.stls(ctx)
        p.user(user)
        p.pass_(self.users[user])
        return p

    def uidls(self, user):
        """[(number, uidl)] as Dovecot serves them, and the messages' octets as RETR sends them."""
        p = self.pop(user)
        try:
            out = []
            for line in p.uidl()[1]:
                num, uidl = line.decode().split(" ", 1)
                out.append((int(num), uidl))
            return out
        finally:
            p.quit()

    def retr_all(self, user):
        p = self.pop(user)
        try:
            n = len(p.list()[1])
            return [b"\r\n".join(p.retr(i)[1]) + b"\r\n" for i in range(1, n + 1)]
        finally:
            p.quit()
