"""kotak import mbox|maildir and kotak export mbox|maildir, with real tools:
mbox files written by Python's mailbox module and by formail (procmail),
Maildirs written by mailbox.Maildir and indexed by a real Dovecot, whose
own pop3 (run preauthenticated on a pipe) says which UIDLs it serves;
kotak-pop3d then serves the same through poplib.

Also: an import run again adds nothing; one killed with -9 halfway and run
again holds every message once; 10,000 messages with binary attachments and
From_ lines in their bodies go out and come back byte for byte with their
UIDLs; each mistake is one line on stderr and exit status 2.
"""
import email.message
import mailbox
import os
import pwd
import random
import shutil
import signal
import subprocess
import time
import unittest

from kotak_harness import KOTAK, PASSWORDS, POP3, SOCKET_TIMEOUT, KotakTestCase, clean_env

ALICE, BOB = "alice@example.test", "bob@example.test"
DOVECOT_POP3 = "/usr/lib/dovecot/pop3"


def pop3_all(port, user):
    """(UIDLs, messages as bytes with CRLF) that kotak-pop3d serves to user."""
    p = POP3("127.0.0.1", port, timeout=SOCKET_TIMEOUT)
    p.user(user)
    p.pass_(PASSWORDS[user])
    uidls = [line.split()[1].decode() for line in p.uidl()[1]]
    msgs = [b"\r\n".join(p.retr(i + 1)[1]) + b"\r\n" for i in range(len(uidls))]
    p.quit()
    return uidls, msgs


def crlf(b):
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Import(KotakTestCase):
    DAEMONS_TO_START = ("pop3d",)

    def run_kotak(self, *args, check=True, timeout=120):
        p = subprocess.run([KOTAK, "-c", self.kotak.conf, *args], capture_output=True, text=True,
                           env=clean_env(), cwd=self.kotak.dir, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check:
            self.assertEqual(p.returncode, 0, p.stderr)
        return p

    def path(self, name):
        return os.path.join(self.kotak.dir, name)

    def summary(self, p):
        """The counts of the summary line: (imported, skipped, kept)."""
        words = p.stdout.split()
        self.assertTrue(p.stdout.startswith("imported "), p.stdout)
        return int(words[1]), int(words[words.index("skipped") + 1]), int(words[-3])

    # --- mbox -------------------------------------------------------------

    def test_python_mbox(self):
        path = self.path("py.mbox")
        box = mailbox.mbox(path)
        want = []
        for i in range(5):
            m = email.message.Message()
            m["Subject"] = f"message {i}"
            if i == 2:
                m["X-UIDL"] = "kept-uidl-2"
            m.set_payload(f"From the start\n> From a reply\nbody {i}\n")
            box.add(m)
            text = m.as_bytes().replace(b"X-UIDL: kept-uidl-2\n", b"")
            want.append(crlf(text))
        box.close()
        p = self.run_kotak("import", "mbox", ALICE, path)
        self.assertEqual(self.summary(p), (5, 0, 1))
        self.assertEqual(p.stderr, "")
        uidls, msgs = pop3_all(self.kotak.ports["pop3"], ALICE)
        self.assertEqual(msgs, want)
        self.assertEqual(uidls[2], "kept-uidl-2")
        self.assertEqual(len(set(uidls)), 5)
        # The From_ line's date is the arrival time.
        box = mailbox.mbox(path)
        first = box.get_message(box.keys()[0]).get_from()
        box.close()
        self.assertIn(time.strftime("%Y", time.gmtime()), first)
        # Run again: nothing added, the UIDLs unchanged.
        p = self.run_kotak("import", "mbox", ALICE, path)
        self.assertEqual(self.summary(p), (0, 5, 0))
        self.assertEqual(pop3_all(self.kotak.ports["pop3"], ALICE)[0], uidls)

    def test_formail_mbox(self):
        formail = shutil.which("formail")
        if formail is None:
            self.skipTest("formail (procmail) is not installed")
        raw = b""
        for i in range(4):
            raw += (f"From: sender{i}@example.org\nSubject: f{i}\nX-UIDL: formail-{i}\n\n"
                    f"line one\nFrom a body line\n>From quoted\nend {i}\n").encode()
        # formail -b splits nothing here; -s with cat writes each message with a From_ line.
        msgs = raw.split(b"\nFrom: ")
        path = self.path("formail.mbox")
        with open(path, "wb") as out:
            for i, m in enumerate(msgs):
                m = m if i == 0 else b"From: " + m
                out.write(subprocess.run([formail], input=m, capture_output=True,
                                         check=True).stdout)
        with open(path, "rb") as f:
            data = f.read()
        self.assertTrue(data.startswith(b"From "), data[:80])
        p = self.run_kotak("import", "mbox", ALICE, path)
        self.assertEqual(self.summary(p), (4, 0, 4))
        uidls, got = pop3_all(self.kotak.ports["pop3"], ALICE)
        self.assertEqual(uidls, [f"formail-{i}" for i in range(4)])
        for i, m in enumerate(got):
            self.assertIn(f"Subject: f{i}\r\n".encode(), m)
            self.assertNotIn(b"X-UIDL", m)
            # formail quoted the body's From_ line (mboxo); it comes back unquoted.
            self.assertIn(b"\r\nFrom a body line\r\n", m)

    # --- maildir ------------------------------------------------------------

    def make_maildir(self, n, name="Maildir"):
        path = self.path(name)
        md = mailbox.Maildir(path, create=True)
        want = []
        for i in range(n):
            m = mailbox.MaildirMessage()
            m["Subject"] = f"maildir {i}"
            m.set_payload(f"body {i}\n")
            if i % 2:
                m.set_subdir("cur")
            md.add(m)
            want.append(crlf(m.as_bytes()))
        md.close()
        return path, want

    def dovecot_uidls(self, maildir):
        """The UIDLs a real Dovecot serves over POP3 for maildir (its own pop3 on a
        pipe, preauthenticated), having indexed it and written its dovecot-uidlist."""
        if not os.path.exists(DOVECOT_POP3):
            self.skipTest("Dovecot is not installed")
        conf = self.path("dovecot.conf")
        with open(conf, "w") as f:
            f.write(f"mail_location = maildir:{maildir}\nmail_home = {self.kotak.dir}\n"
                    f"ssl = no\nprotocols = pop3\nlog_path = {self.path('dovecot.log')}\n"
                    "mail_uid = nobody\nmail_gid = nogroup\n")
        nobody = pwd.getpwnam("nobody")
        for d in (self.kotak.dir,):
            os.chmod(d, 0o755)
        for root, dirs, files in os.walk(maildir):
            for x in [root] + [os.path.join(root, f) for f in files]:
                os.chown(x, nobody.pw_uid, nobody.pw_gid)
        env = dict(clean_env(), USER="nobody", HOME=self.kotak.dir)
        p = subprocess.run([DOVECOT_POP3, "-c", conf], input=b"UIDL\r\nQUIT\r\n",
                           capture_output=True, env=env, timeout=30)
        lines = p.stdout.split(b"\r\n")
        self.assertEqual(lines[0], b"+OK", p.stdout + p.stderr)
        out = []
        for line in lines[1:]:
            if line == b".":
                break
            out.append(line.split()[1].decode())
        return out

    def test_maildir_with_dovecot(self):
        path, want = self.make_maildir(6)
        served = self.dovecot_uidls(path)  # Dovecot's default, %08Xu%08Xv
        self.assertEqual(len(served), 6)
        self.assertTrue(os.path.exists(os.path.join(path, "dovecot-uidlist")))
        p = self.run_kotak("import", "maildir", ALICE, path)
        self.assertEqual(self.summary(p), (6, 0, 6))
        uidls, msgs = pop3_all(self.kotak.ports["pop3"], ALICE)
        self.assertEqual(uidls, served)
        self.assertEqual(sorted(msgs), sorted(want))
        p = self.run_kotak("import", "maildir", ALICE, path)
        self.assertEqual(self.summary(p), (0, 6, 0))

    def test_maildir_uidlist_p_fields_and_order(self):
        path, want = self.make_maildir(4)
        names = []
        for sub in ("cur", "new"):
            names += [(n, sub) for n in os.listdir(os.path.join(path, sub))]
        names.sort()
        # A dovecot-uidlist as Dovecot writes it: version 3, the UIDs in a chosen
        # order (reversed), P fields on some, the default UIDL for the others.
        names.reverse()
        with open(os.path.join(path, "dovecot-uidlist"), "w") as f:
            f.write("3 V1234567 N5 G0123456789abcdef0123456789abcdef\n")
            for i, (n, sub) in enumerate(names):
                p = f" Pmigrated-{i}" if i < 2 else ""
                f.write(f"{i + 1}{p} W100 :{n}\n")
        p = self.run_kotak("import", "maildir", ALICE, path)
        self.assertEqual(self.summary(p), (4, 0, 4))
        uidls, msgs = pop3_all(self.kotak.ports["pop3"], ALICE)
        self.assertEqual(uidls, ["migrated-0", "migrated-1",
                                 "%08x%08x" % (3, 1234567), "%08x%08x" % (4, 1234567)])
        files = []
        for n, sub in names:
            with open(os.path.join(path, sub, n), "rb") as f:
                files.append(f.read())
        self.assertEqual(msgs, [crlf(b) for b in files])

    # --- restartable --------------------------------------------------------

    def test_kill9_then_again(self):
        path = self.path("big.mbox")
        n = 20000
        with open(path, "wb") as f:
            for i in range(n):
                f.write(b"From x@example.org Tue Nov 14 22:13:20 2023\n"
                        b"Subject: %d\nX-UIDL: big-%d\n\n%s\n\n" % (i, i, b"x" * 200))
        proc = subprocess.Popen([KOTAK, "-c", self.kotak.conf, "import", "mbox", ALICE, path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=clean_env(), cwd=self.kotak.dir)
        deadline = time.time() + 60
        while time.time() < deadline:
            got = self.kotak.query("SELECT count(*) FROM maildrop")[0][0]
            if got >= 2000:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        part = self.kotak.query("SELECT count(*) FROM maildrop")[0][0]
        self.assertGreater(part, 0)
        self.assertLess(part, n, "the import finished before the kill; make it bigger")
        p = self.run_kotak("import", "mbox", ALICE, path)
        imported, skipped, kept = self.summary(p)
        self.assertEqual(imported + skipped, n)
        self.assertEqual(skipped, part)
        rows = self.kotak.query("SELECT uidl, arrived FROM maildrop ORDER BY id")
        self.assertEqual([r[0] for r in rows], [f"big-{i}" for i in range(n)])
        self.assertEqual({r[1] for r in rows}, {1700000000})

    # --- export and round trips ----------------------------------------------

    def tricky_messages(self, n, seed=7):
        """n messages in the store's form: binary attachments (base64), bodies with
        From_ lines, quoted From_ lines, a bare CR, a CR before a line end, no body."""
        rnd = random.Random(seed)
        out = []
        for i in range(n):
            kind = i % 6
            head = f"Subject: round {i}\r\nMessage-ID: <{i}@example.test>\r\n"
            if kind == 0:
                blob = rnd.randbytes(rnd.randint(100, 3000))
                m = email.message.EmailMessage()
                m["Subject"] = f"round {i}"
                m.set_content("See the attachment.\nFrom the office\n")
                m.add_attachment(blob, maintype="application", subtype="octet-stream",
                                 filename="x.bin")
                body = m.as_bytes(policy=m.policy.clone(linesep="\r\n"))
            elif kind == 1:
                body = (head + "\r\nFrom here\r\n>From there\r\n>>From far\r\nFrom\r\n").encode()
            elif kind == 2:
                body = (head + "\r\na bare \r in a line\r\nends in CR\r\r\nlast\r\n").encode()
            elif kind == 3:
                body = head.encode()  # no body, no empty line
            elif kind == 4:
                body = (head + "\r\n\r\n\r\n").encode()  # empty lines at the end
            else:
                body = (head + "X-UIDL: inside-the-message\r\n\r\n" + "y" * rnd.randint(0, 2000)
                        + "\r\n").encode()
            out.append(body)
        return out

    def fill_alice(self, msgs):
        """Stores msgs in alice's maildrop through kotak import maildir (exact for
        CRLF files), returning her UIDLs."""
        src = self.path("src")
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(src, d))
        for i, m in enumerate(msgs):
            with open(os.path.join(src, "cur", f"{1700000000 + i}.M{i}.h:2,"), "wb") as f:
                f.write(m)
        # CRLF files are taken as they are; a message with no line end gets none.
        p = self.run_kotak("import", "maildir", ALICE, src, timeout=120)
        self.assertEqual(self.summary(p)[0], len(msgs))
        self.assertEqual(self.kotak.bodies(ALICE), msgs)
        return [e[1] for e in self.kotak.mailbox_listing(ALICE)[0]]

    def test_round_trip_mbox_10000(self):
        msgs = self.tricky_messages(10000)
        uidls = self.fill_alice(msgs)
        out = self.path("alice.mbox")
        p = self.run_kotak("export", "mbox", ALICE, out)
        self.assertIn("exported 10000 messages", p.stdout)
        self.assertEqual(p.stderr, "")
        self.assertEqual(os.stat(out).st_mode & 0o777, 0o600)
        # Python reads it as an mbox too.
        box = mailbox.mbox(out)
        self.assertEqual(len(box), 10000)
        box.close()
        p = self.run_kotak("import", "mbox", BOB, out)
        self.assertEqual(self.summary(p), (10000, 0, 10000))
        self.assertEqual(self.kotak.bodies(BOB), msgs)
        self.assertEqual([e[1] for e in self.kotak.mailbox_listing(BOB)[0]], uidls)
        # And alice's own export imported into alice: all there already.
        p = self.run_kotak("import", "mbox", ALICE, out)
        self.assertEqual(self.summary(p), (0, 10000, 0))

    def test_round_trip_maildir_and_dovecot(self):
        msgs = self.tricky_messages(300, seed=3)
        uidls = self.fill_alice(msgs)
        out = self.path("alice-maildir")
        p = self.run_kotak("export", "maildir", ALICE, out)
        self.assertIn("exported 300 messages", p.stdout)
        for sub in ("cur", "new", "tmp"):
            self.assertEqual(os.stat(os.path.join(out, sub)).st_mode & 0o777, 0o700)
        files = os.listdir(os.path.join(out, "cur"))
        self.assertEqual(len(files), 300)
        self.assertTrue(all(",S=" in f and f.endswith(":2,") for f in files))
        p = self.run_kotak("import", "maildir", BOB, out)
        self.assertEqual(self.summary(p), (300, 0, 300))
        self.assertEqual(self.kotak.bodies(BOB), msgs)
        self.assertEqual([e[1] for e in self.kotak.mailbox_listing(BOB)[0]], uidls)
        # Dovecot reads the dovecot-uidlist kotak wrote: it serves the same UIDLs.
        self.assertEqual(self.dovecot_uidls(out), uidls)

    # --- mistakes -------------------------------------------------------------

    def assert_mistake(self, *args, says):
        p = self.run_kotak(*args, check=False)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn(says, p.stderr)
        self.assertEqual(self.kotak.query("SELECT count(*) FROM maildrop")[0][0], 0)

    def test_mistakes(self):
        good = self.path("good.mbox")
        with open(good, "w") as f:
            f.write("From x Tue Nov 14 22:13:20 2023\nSubject: a\n\nb\n")
        notmbox = self.path("not.mbox")
        with open(notmbox, "w") as f:
            f.write("Subject: a\n\nb\n")
        os.makedirs(self.path("empty-dir"))
        self.assert_mistake("import", "mbox", "nobody@example.test", good, says="does not exist")
        self.assert_mistake("import", "mbox", ALICE, self.path("missing"), says="cannot read")
        self.assert_mistake("import", "mbox", ALICE, good, notmbox, says="is not an mbox")
        self.assert_mistake("import", "mbox", ALICE, self.path("empty-dir"), says="is a folder")
        self.assert_mistake("import", "maildir", ALICE, self.path("empty-dir"),
                            says="is not a Maildir")
        self.assert_mistake("import", "maildir", ALICE, good, says="is not a Maildir")
        self.assert_mistake("import", "mbax", ALICE, good, says="did you mean 'mbox'")
        self.assert_mistake("import", "mbox", ALICE, says="usage")
        self.assert_mistake("export", "mbox", ALICE, good, says="not an empty file")
        os.symlink(self.path("elsewhere"), self.path("link"))
        self.assert_mistake("export", "mbox", ALICE, self.path("link"), says="symbolic link")
        self.assert_mistake("export", "maildir", ALICE, self.path("link"), says="symbolic link")
        self.assertFalse(os.path.exists(self.path("elsewhere")))
        self.assert_mistake("export", "maildir", ALICE, self.path(""), says="not empty")
        self.assert_mistake("export", "mbox", "nobody@example.test", self.path("new.mbox"),
                            says="does not exist")
        self.assertFalse(os.path.exists(self.path("new.mbox")))
        if os.getuid() != 0:  # root reads any file
            os.chmod(good, 0)
            self.assert_mistake("import", "mbox", ALICE, good, says="cannot read")
        # An existing empty file or folder is fine.
        open(self.path("empty.mbox"), "w").close()
        self.run_kotak("export", "mbox", ALICE, self.path("empty.mbox"))
        self.run_kotak("export", "maildir", ALICE, self.path("empty-dir"))


if __name__ == "__main__":
    unittest.main()
