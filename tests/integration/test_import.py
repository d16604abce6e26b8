"""kotak import mbox|maildir and kotak export mbox|maildir, with real tools:
mbox files written by Python's mailbox module and by formail (procmail),
Maildirs written by mailbox.Maildir and indexed by a real Dovecot, whose
own pop3 (run preauthenticated on a pipe) says which UIDLs it serves;
kotak-pop3d then serves the same through poplib.

Also: an import run again adds nothing; one killed with -9 halfway and run
again holds every message once; 10,000 messages with binary attachments and
From_ lines in their bodies go out and come back byte for byte with their
UIDLs; each mistake is one line on stderr and exit status 2.

And what an import run as root may not do: read through a symbolic link
(a cur/ -> /etc, a message -> /etc/shadow, a linked mbox), hang on a FIFO,
hold a message larger than [limits] message_size; what an export may not
write into (a folder of another user).
"""
import email.message
import mailbox
import os
import pwd
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import unittest

from kotak_harness import (KOTAK, PASSWORDS, POP3, SOCKET_TIMEOUT, KotakTestCase, clean_env,
                           config, proc_status)

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
        lines = self.dovecot_pop3(maildir, b"UIDL\r\nQUIT\r\n").split(b"\r\n")
        out = []
        for line in lines[1:]:
            if line == b".":
                break
            out.append(line.split()[1].decode())
        return out

    def dovecot_retr(self, maildir, n):
        """Message n as a real Dovecot's pop3 RETR sends it, its octets dot-unstuffed."""
        out = self.dovecot_pop3(maildir, b"RETR %d\r\nQUIT\r\n" % n)
        first, _, rest = out.partition(b"\r\n")
        self.assertTrue(first.startswith(b"+OK"), out)
        body, end, _ = rest.partition(b"\r\n.\r\n")
        self.assertEqual(end, b"\r\n.\r\n", out)
        lines = (body + b"\r\n").split(b"\r\n")[:-1]
        return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n"
                        for line in lines)

    def dovecot_pop3(self, maildir, commands):
        """What Dovecot's own pop3, preauthenticated on a pipe, answers to commands on
        maildir (made nobody's, as Dovecot's mail user)."""
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
        p = subprocess.run([DOVECOT_POP3, "-c", conf], input=commands,
                           capture_output=True, env=env, timeout=30)
        self.assertTrue(p.stdout.startswith(b"+OK"), p.stdout + p.stderr)
        return p.stdout

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
        From_ lines, quoted From_ lines, a bare CR (not before a line end: that one
        comes back without it, test_cr_before_line_end), no body."""
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
                body = (head + "\r\na bare \r in a line\r\n\rat a line's start\r\nlast\r\n").encode()
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
        # CRLF files are taken as they are (each of these ends with its line end).
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

    def test_cr_before_line_end(self):
        """A stored message with a bare CR at a line end ("\\r\\r\\n", from a file
        that had it) is exported with "\\r\\n" there, which import keeps as it is: it
        does not come back as it was, and export says so."""
        msg = b"Subject: cr\r\n\r\nends in CR\r\r\nlast\r\n"
        self.fill_alice([msg])
        out = self.path("cr.mbox")
        p = self.run_kotak("export", "mbox", ALICE, out)
        self.assertIn("1 message holds a bare LF or a CR before a line end", p.stderr)
        self.run_kotak("import", "mbox", BOB, out)
        self.assertEqual(self.kotak.bodies(BOB), [msg.replace(b"\r\r\n", b"\r\n")])

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

    # --- what an import reads: nothing outside the Maildir, no hang ---------

    def maildir_at(self, name, msgs=(b"Subject: real\n\nbody\n",), sub="new"):
        path = self.path(name)
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(path, d), exist_ok=True)
        for i, m in enumerate(msgs):
            with open(os.path.join(path, sub, f"{1700000000 + i}.M{i}.h"), "wb") as f:
                f.write(m)
        return path

    def test_maildir_cur_is_a_link_to_etc(self):
        """cur -> /etc: refused, and nothing of /etc (nor of new/) is stored."""
        path = self.maildir_at("md-link")
        os.rmdir(os.path.join(path, "cur"))
        os.symlink("/etc", os.path.join(path, "cur"))
        p = self.run_kotak("import", "maildir", ALICE, path, check=False, timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn("cur", p.stderr)
        self.assertIn("symbolic link", p.stderr)
        self.assertEqual(self.kotak.query("SELECT count(*) FROM maildrop")[0][0], 0)
        # new/ a link too, and the Maildir itself one: refused the same way.
        path = self.maildir_at("md-link2")
        shutil.rmtree(os.path.join(path, "new"))
        os.symlink("/etc", os.path.join(path, "new"))
        p = self.run_kotak("import", "maildir", ALICE, path, check=False, timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("symbolic link", p.stderr)
        real = self.maildir_at("md-real")
        os.symlink(real, self.path("md-alias"))
        p = self.run_kotak("import", "maildir", ALICE, self.path("md-alias"), check=False,
                           timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("symbolic link", p.stderr)
        self.assertEqual(self.kotak.query("SELECT count(*) FROM maildrop")[0][0], 0)

    def test_maildir_links_fifos_left_out(self):
        """A message file that is a link to /etc/shadow, FIFOs in cur/ and new/, a
        folder: each left out with a line on stderr, exit 1, the real one imported,
        and no hang."""
        path = self.maildir_at("md-odd", sub="cur")
        os.symlink("/etc/shadow", os.path.join(path, "cur", "1700000001.M9.h:2,S"))
        os.symlink("/etc/passwd", os.path.join(path, "new", "1700000002.M9.h"))
        os.mkfifo(os.path.join(path, "cur", "1700000003.M9.h:2,"))
        os.mkfifo(os.path.join(path, "new", "1700000004.M9.h"))
        os.mkdir(os.path.join(path, "new", "1700000005.M9.h"))
        p = self.run_kotak("import", "maildir", ALICE, path, check=False, timeout=20)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(self.summary(p)[0], 1)
        lines = p.stderr.splitlines()
        self.assertEqual(len(lines), 5, p.stderr)
        self.assertTrue(all("not a plain file" in line for line in lines), p.stderr)
        self.assertIn("5 left out", p.stdout)
        self.assertEqual(self.kotak.bodies(ALICE), [b"Subject: real\r\n\r\nbody\r\n"])

    def test_uidlist_fifo_or_link(self):
        """A dovecot-uidlist that is a FIFO (no hang) or a link: refused, exit 2."""
        path = self.maildir_at("md-fifo")
        os.mkfifo(os.path.join(path, "dovecot-uidlist"))
        p = self.run_kotak("import", "maildir", ALICE, path, check=False, timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("dovecot-uidlist", p.stderr)
        os.unlink(os.path.join(path, "dovecot-uidlist"))
        with open(self.path("elsewhere-uidlist"), "w") as f:
            f.write("3 V1 N2\n1 Pstolen :1700000000.M0.h\n")
        os.symlink(self.path("elsewhere-uidlist"), os.path.join(path, "dovecot-uidlist"))
        p = self.run_kotak("import", "maildir", ALICE, path, check=False, timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("symbolic link", p.stderr)
        self.assertEqual(self.kotak.query("SELECT count(*) FROM maildrop")[0][0], 0)

    def lock_free_while_running(self, after, *args):
        """Runs kotak with args, stdout and stderr read only at its end; after `after`
        seconds, while it still runs, a writer (as kotak-smtpd's deliveries) must get
        the store's write lock within a second. (returncode, stdout, stderr)."""
        proc = subprocess.Popen([KOTAK, "-c", self.kotak.conf, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=clean_env(),
                                cwd=self.kotak.dir, stdin=subprocess.DEVNULL)
        try:
            time.sleep(after)
            self.assertIsNone(proc.poll(), "kotak ended before the writer came")
            db = sqlite3.connect(self.kotak.db_path, timeout=5.0, isolation_level=None)
            t0 = time.monotonic()
            db.execute("BEGIN IMMEDIATE")
            took = time.monotonic() - t0
            db.execute("ROLLBACK")
            db.close()
            self.assertLess(took, 1.0, f"the writer waited {took:.1f} s for the import's lock")
        finally:
            out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err

    def test_mbox_reading_holds_no_lock(self):
        """A message past the limit is read to its end, however long (here 2 GB of a
        sparse file, seconds of reading): the batch before it commits meanwhile, so a
        writer (kotak-smtpd's deliveries) gets the store's write lock at once."""
        mb = self.path("sparse.mbox")
        with open(mb, "wb") as f:
            f.write(b"From a Tue Nov 14 22:13:20 2023\nSubject: small\n\nbody\n"
                    b"From b Tue Nov 14 22:13:20 2023\nSubject: big\n\n")
            f.truncate(2 << 30)
        returncode, out, err = self.lock_free_while_running(1.0, "import", "mbox", ALICE, mb)
        self.assertEqual(returncode, 1, out + err)
        self.assertIn("imported 1 message", out)
        self.assertIn("message 2 (its From_ line is line 5) is larger than", err)

    def test_stderr_nobody_reads_holds_no_lock(self):
        """The lines that say what was left out go to stderr, which can block (a pager
        that stopped reading): the batch commits before each, so the store's write lock
        is free while the import waits there."""
        path = self.maildir_at("md-stderr", msgs=[b"Subject: real\n\nbody\n"], sub="cur")
        for i in range(3000):
            os.mkfifo(os.path.join(path, "cur", f"{1800000000 + i}.M{i}.fifo"))
        returncode, out, err = self.lock_free_while_running(1.5, "import", "maildir", ALICE,
                                                           path)
        self.assertEqual(returncode, 1, out)
        self.assertEqual(len(err.splitlines()), 3000)
        self.assertEqual(self.kotak.bodies(ALICE), [b"Subject: real\r\n\r\nbody\r\n"])

    def test_mbox_link_or_fifo(self):
        """An mbox given as a symbolic link, or a FIFO: refused at once, exit 2."""
        good = self.path("good.mbox")
        with open(good, "w") as f:
            f.write("From x Tue Nov 14 22:13:20 2023\nSubject: a\n\nb\n")
        os.symlink(good, self.path("link.mbox"))
        p = self.run_kotak("import", "mbox", ALICE, self.path("link.mbox"), check=False,
                           timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn("symbolic link", p.stderr)
        os.mkfifo(self.path("fifo.mbox"))
        p = self.run_kotak("import", "mbox", ALICE, good, self.path("fifo.mbox"), check=False,
                           timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("not a plain file", p.stderr)
        self.assertEqual(self.kotak.query("SELECT count(*) FROM maildrop")[0][0], 0)

    # --- what root may not be led to read ------------------------------------

    def need_root(self):
        if os.geteuid() != 0:
            self.skipTest("needs root, as an admin runs an import")

    def user_link(self, target, name, uid=None):
        """A symbolic link made by another user (nobody): lchown, as only root can."""
        link = self.path(name)
        os.symlink(target, link)
        if uid is None:
            uid = pwd.getpwnam("nobody").pw_uid
        os.lchown(link, uid, uid)
        return link, uid

    def test_user_link_on_the_way_refused(self):
        """alice's backup -> bob's home: root imports nothing through a link that a
        user owns, anywhere on the path (Maildir DIR, mbox FILE), and says which
        link and whose; a link of root's on the way (as /var/mail -> spool/mail)
        is followed."""
        self.need_root()
        bob = self.path("bobhome")
        self.maildir_at("bobhome/Maildir", msgs=[b"Subject: bob's secret\n\nx\n"])
        with open(os.path.join(bob, "bob.mbox"), "wb") as f:
            f.write(b"From x Tue Nov 14 22:13:20 2023\nSubject: bob's mbox\n\nx\n")
        link, uid = self.user_link(bob, "backup")
        p = self.run_kotak("import", "maildir", ALICE, os.path.join(link, "Maildir"),
                           check=False, timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn(f"{link} is a link owned by uid {uid}; give the path it points to",
                      p.stderr)
        p = self.run_kotak("import", "mbox", ALICE, os.path.join(link, "bob.mbox"), check=False,
                           timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn(f"{link} is a link owned by uid {uid}", p.stderr)
        # Root's links are followed only past folders only root can change (not /tmp,
        # where this instance lives): they go in a folder of /var/lib.
        base = tempfile.mkdtemp(prefix="kotak-integ-links-", dir="/var/lib")
        self.addCleanup(shutil.rmtree, base, True)
        os.symlink(self.path("rootlink-target"), self.path("in-tmp"))
        p = self.run_kotak("import", "maildir", ALICE, self.path("in-tmp/Maildir"),
                           check=False, timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("in-tmp is root's link, reached through /tmp, which others than root can "
                      "change", p.stderr)
        # Deeper down, and through a link of root's that leads to the user's.
        os.symlink(link, os.path.join(base, "rootlink"))
        p = self.run_kotak("import", "maildir", ALICE, os.path.join(base, "rootlink/Maildir/"),
                           check=False, timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("is a link owned by uid", p.stderr)
        self.assertEqual(self.kotak.query("SELECT count(*) FROM maildrop")[0][0], 0)
        # Root's own link on the way: followed, as before.
        os.symlink(bob, os.path.join(base, "spool"))
        self.run_kotak("import", "maildir", ALICE, os.path.join(base, "spool/Maildir"))
        self.run_kotak("import", "mbox", BOB, os.path.join(base, "spool/bob.mbox"))
        self.assertEqual(self.kotak.bodies(ALICE), [b"Subject: bob's secret\r\n\r\nx\r\n"])
        self.assertEqual(len(self.kotak.bodies(BOB)), 1)

    def test_password_file_through_a_user_link(self):
        """dir -> a folder of root's: its 0600 root file would pass the password
        file's checks (root's, mode 0600); the link of another user on the way is
        refused before anything is read or any connection made."""
        self.need_root()
        secrets = self.path("root-secrets")
        os.mkdir(secrets, 0o700)
        with open(os.path.join(secrets, "pw"), "w") as f:
            f.write("root's secret\n")
        os.chmod(os.path.join(secrets, "pw"), 0o600)
        link, uid = self.user_link(secrets, "dir")
        p = self.run_kotak("import", "pop3", ALICE, "--from", "127.0.0.1:1", "--password-file",
                           os.path.join(link, "pw"), check=False, timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn(f"{link}/pw: {link} is a link owned by uid {uid}", p.stderr)

    def test_hard_link_of_another_owner_left_out(self):
        """A root-owned 0600 file hard-linked into cur/ of nobody's Maildir (possible
        where fs.protected_hardlinks is off) is left out, named, exit 1; the
        Maildir's own messages are imported."""
        self.need_root()
        nobody = pwd.getpwnam("nobody")
        path = self.maildir_at("md-hard", msgs=[b"Subject: real\n\nbody\n"], sub="cur")
        for root, dirs, files in os.walk(path):
            for x in [root] + [os.path.join(root, f) for f in files]:
                os.chown(x, nobody.pw_uid, nobody.pw_gid)
        secret = self.path("shadow-like")
        with open(secret, "wb") as f:
            f.write(b"Subject: root's\n\nsecret\n")
        os.chmod(secret, 0o600)
        os.link(secret, os.path.join(path, "cur", "1700000009.M9.h:2,S"))
        p = self.run_kotak("import", "maildir", ALICE, path, check=False, timeout=20)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(self.summary(p)[0], 1)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn(f"1700000009.M9.h:2,S belongs to uid 0, not to uid {nobody.pw_uid}",
                      p.stderr)
        self.assertIn("1 left out", p.stdout)
        self.assertEqual(self.kotak.bodies(ALICE), [b"Subject: real\r\n\r\nbody\r\n"])

    def test_hard_link_in_a_users_cur_of_roots_maildir(self):
        """DIR is root's but cur/ is nobody's: a file must belong to cur/'s owner, so
        root's file hard-linked there by nobody is left out and nobody's message is
        imported (compared with DIR's owner, the other way round)."""
        self.need_root()
        nobody = pwd.getpwnam("nobody")
        path = self.maildir_at("md-curowner", msgs=[b"Subject: real\n\nbody\n"], sub="cur")
        cur = os.path.join(path, "cur")
        for x in [cur] + [os.path.join(cur, f) for f in os.listdir(cur)]:
            os.chown(x, nobody.pw_uid, nobody.pw_gid)
        secret = self.path("root-mail")
        with open(secret, "wb") as f:
            f.write(b"Subject: root's\n\nsecret\n")
        os.chmod(secret, 0o600)
        os.link(secret, os.path.join(cur, "1700000009.M9.h:2,S"))
        p = self.run_kotak("import", "maildir", ALICE, path, check=False, timeout=20)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(f"belongs to uid 0, not to uid {nobody.pw_uid} who owns {cur}", p.stderr)
        self.assertEqual(self.kotak.bodies(ALICE), [b"Subject: real\r\n\r\nbody\r\n"])

    def test_cur_writable_by_others_refused(self):
        """As root, a cur/ or new/ that others can write is refused, exit 2, nothing
        stored: anyone could put there a link to a file of its owner."""
        self.need_root()
        for sub, mode in (("cur", 0o777), ("new", 0o770)):
            path = self.maildir_at(f"md-open-{sub}")
            os.chmod(os.path.join(path, sub), mode)
            p = self.run_kotak("import", "maildir", ALICE, path, check=False, timeout=20)
            self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
            self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
            self.assertIn(f"{path}/{sub} can be written by others than its owner (mode 0{mode:o})",
                          p.stderr)
            self.assertIn("chmod go-w", p.stderr)
        self.assertEqual(self.kotak.query("SELECT count(*) FROM maildrop")[0][0], 0)

    def test_mbox_hard_link_of_someone_elses_file_refused(self):
        """As root: nobody's hard link to root's mbox, in nobody's folder, is root's file,
        refused (exit 2) whatever its link count says by then; nobody's own mbox there
        imports; a folder anyone can write (as /tmp) is refused; a folder of root's that its
        group may write (as /var/mail) holds the users' own mboxes."""
        self.need_root()
        nobody = pwd.getpwnam("nobody")
        text = b"From x Tue Nov 14 22:13:20 2023\nSubject: m\n\nbody\n"
        secret = self.path("root-mbox")
        with open(secret, "wb") as f:
            f.write(b"From x Tue Nov 14 22:13:20 2023\nSubject: root's\n\nsecret\n")
        os.chmod(secret, 0o600)
        home = self.path("home-nobody")
        os.mkdir(home)
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        os.link(secret, os.path.join(home, "evil.mbox"))
        p = self.run_kotak("import", "mbox", ALICE, os.path.join(home, "evil.mbox"),
                           check=False, timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn(f"belongs to uid 0, not to uid {nobody.pw_uid} who owns its folder",
                      p.stderr)
        own = os.path.join(home, "own.mbox")
        with open(own, "wb") as f:
            f.write(text)
        os.chown(own, nobody.pw_uid, nobody.pw_gid)
        self.assertEqual(self.summary(self.run_kotak("import", "mbox", ALICE, own))[0], 1)
        tmp = self.path("tmp-like")
        os.mkdir(tmp)
        os.chmod(tmp, 0o1777)
        with open(os.path.join(tmp, "x.mbox"), "wb") as f:
            f.write(text)
        p = self.run_kotak("import", "mbox", BOB, os.path.join(tmp, "x.mbox"), check=False,
                           timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("is in a folder anyone can write (mode 1777)", p.stderr)
        # Not even under the name of the account that owns it: a link can have any name.
        os.link(secret, os.path.join(tmp, "root"))
        p = self.run_kotak("import", "mbox", BOB, os.path.join(tmp, "root"), check=False,
                           timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("is in a folder anyone can write (mode 1777)", p.stderr)
        spool = self.path("var-mail")
        os.mkdir(spool)
        os.chmod(spool, 0o2775)
        # A spool's file named for another account than its owner's (a hard link of root's
        # mbox by a member of the spool's group): refused.
        os.link(secret, os.path.join(spool, "nobody"))
        p = self.run_kotak("import", "mbox", BOB, os.path.join(spool, "nobody"), check=False,
                           timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("is in a folder its group can write (mode 2775), where a file is taken only "
                      "as a mail spool's", p.stderr)
        self.assertIn("this one belongs to uid 0", p.stderr)
        os.unlink(os.path.join(spool, "nobody"))
        box = os.path.join(spool, "nobody")
        with open(box, "wb") as f:
            f.write(text)
        os.chown(box, nobody.pw_uid, nobody.pw_gid)
        self.assertEqual(self.summary(self.run_kotak("import", "mbox", BOB, box))[0], 1)
        self.assertEqual(self.kotak.bodies(ALICE), [b"Subject: m\r\n\r\nbody\r\n"])

    def peak_kib(self, *args):
        """Runs kotak with args; its peak resident memory in KiB (GNU time's %M)."""
        out = self.path("time.out")
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out, KOTAK, "-c", self.kotak.conf,
                            *args], capture_output=True, text=True, env=clean_env(),
                           cwd=self.kotak.dir, timeout=120, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out) as f:
            return int(f.read().split()[-1])

    def test_uidlist_records_of_no_file_cost_nothing(self):
        """A dovecot-uidlist of 3,000,000 records naming files that are not there (its
        owner wrote them) costs root's import no memory: a record is kept only on the
        file it names. The one real file gets its record's UIDL."""
        def maildir(name, records):
            path = self.maildir_at(name, msgs=[b"Subject: real\n\nbody\n"], sub="cur")
            with open(os.path.join(path, "dovecot-uidlist"), "w") as f:
                f.write(f"3 V1 N{records + 2}\n")
                f.writelines(f"{i} :1600000000.M{i}P1.nowhere-to-be-found-at-all\n"
                             for i in range(1, records + 1))
                f.write(f"{records + 1} P{name} :1700000000.M0.h\n")
            return path
        small = self.peak_kib("import", "maildir", ALICE, maildir("small", 1))
        big = self.peak_kib("import", "maildir", BOB, maildir("big", 3000000))
        self.assertLess(big - small, 40 * 1024, (small, big))
        self.assertEqual(pop3_all(self.kotak.ports["pop3"], BOB)[0], ["big"])

    def test_uidlist_line_too_long(self):
        """A dovecot-uidlist line longer than 64 KiB is refused, exit 2: root's import
        holds no more of a line than that, whatever the Maildir's owner wrote."""
        path = self.maildir_at("md-longlist")
        with open(os.path.join(path, "dovecot-uidlist"), "w") as f:
            f.write("3 V1 N2\n1 P" + "x" * 70000 + " :1700000000.M0.h\n")
        p = self.run_kotak("import", "maildir", ALICE, path, check=False, timeout=20)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn("line 2 is longer than 65536 octets", p.stderr)
        self.assertEqual(self.kotak.query("SELECT count(*) FROM maildrop")[0][0], 0)

    # --- [limits] message_size ------------------------------------------------

    @config(limits={"message_size": "100K"})
    def test_message_size_mbox(self):
        """A 64 MB message (limit 100K) is refused with one line, the others are
        imported, exit 1, and the import never holds the large one."""
        path = self.path("big.mbox")
        line = b"x" * 999 + b"\n"
        with open(path, "wb") as f:
            f.write(b"From a Tue Nov 14 22:13:20 2023\nSubject: small 1\n\nhello\n\n")
            f.write(b"From b Tue Nov 14 22:13:20 2023\nSubject: huge\n\n")
            for _ in range(32):
                f.write(line * 1024)
            for _ in range(32):  # and one line of 32 MB
                f.write(b"y" * (1 << 20))
            f.write(b"\n\nFrom c Tue Nov 14 22:13:20 2023\nSubject: small 2\n\n"
                    + b"z" * 50000 + b"\n")
        # The peak RSS of kotak itself (VmHWM: its own memory, which wait4's
        # ru_maxrss is not: that counts this Python process's as of the fork).
        proc = subprocess.Popen([KOTAK, "-c", self.kotak.conf, "import", "mbox", ALICE, path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=clean_env(), cwd=self.kotak.dir, stdin=subprocess.DEVNULL)
        peak, samples = 0, 0
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            hwm = proc_status(proc.pid, "VmHWM")
            if hwm is not None:
                peak, samples = max(peak, hwm), samples + 1
            time.sleep(0.002)
        out, err = proc.communicate(timeout=120)
        out, err = out.decode(), err.decode()
        self.assertEqual(proc.returncode, 1, out + err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("message_size", err)
        self.assertIn("message 2", err)
        self.assertIn("1 refused", out)
        self.assertEqual(int(out.split()[1]), 2, out)
        subjects = [b.split(b"\r\n")[0] for b in self.kotak.bodies(ALICE)]
        self.assertEqual(subjects, [b"Subject: small 1", b"Subject: small 2"])
        # Far below the 64 MB message (about 5 MB; 15 MB with ASan).
        self.assertGreater(samples, 0)
        self.assertLess(peak, 40 << 10, "peak RSS %d KiB" % peak)

    @config(limits={"message_size": "100K"})
    def test_message_size_maildir(self):
        """The same in a Maildir: a file over the limit, and one whose CRLF form is
        over it (60000 LFs become CRLF: 120,000 octets), are refused."""
        path = self.maildir_at("md-big", msgs=[b"Subject: ok\n\nfine\n",
                                               b"Subject: big\n\n" + b"x" * 200000 + b"\n",
                                               b"Subject: lf\n\n" + b"\n" * 60000])
        p = self.run_kotak("import", "maildir", ALICE, path, check=False)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 2, p.stderr)
        self.assertIn("2 refused", p.stdout)
        self.assertEqual(self.kotak.bodies(ALICE), [b"Subject: ok\r\n\r\nfine\r\n"])

    # --- smaller things --------------------------------------------------------

    def test_mixed_line_ends_as_dovecot_serves_them(self):
        """A message with CRLF and bare LF lines: a CR goes only before a bare LF
        (Dovecot's rule), so the header stays intact, and what kotak-pop3d serves
        after import maildir is what Dovecot's RETR served from the same file; an
        import pop3 from that Dovecot then gives the same octets, one message."""
        mixed = b"Subject: d\r\n\r\nmix\nline\r\n"
        path = self.maildir_at("md-mixed", msgs=[mixed])
        served = self.dovecot_retr(path, 1)
        self.assertEqual(served, b"Subject: d\r\n\r\nmix\r\nline\r\n")
        p = self.run_kotak("import", "maildir", ALICE, path)
        self.assertEqual(p.stderr, "")
        self.assertEqual(self.kotak.bodies(ALICE), [served])
        _, msgs = pop3_all(self.kotak.ports["pop3"], ALICE)
        self.assertEqual(msgs, [served])
        # The same as an mbox line (a CRLF header, a bare LF in the body).
        mb = self.path("mixed.mbox")
        with open(mb, "wb") as f:
            f.write(b"From x Tue Nov 14 22:13:20 2023\n" + mixed)
        self.run_kotak("import", "mbox", BOB, mb)
        self.assertEqual(self.kotak.bodies(BOB), [served])

    def test_no_final_line_end(self):
        """A message without its final line end gets CRLF: LIST's size is what RETR
        sends. And no sanitizer speaks up (no dovecot-uidlist: no bsearch on NULL)."""
        path = self.maildir_at("md-nofinal", msgs=[b"Subject: a\n\nno final newline",
                                                   b"Subject: b\r\n\r\ncrlf, no end",
                                                   b""])
        p = self.run_kotak("import", "maildir", ALICE, path)
        self.assertEqual(p.stderr, "")
        self.assertEqual(self.kotak.bodies(ALICE),
                         [b"Subject: a\r\n\r\nno final newline\r\n",
                          b"Subject: b\r\n\r\ncrlf, no end\r\n", b""])
        pop = POP3("127.0.0.1", self.kotak.ports["pop3"], timeout=SOCKET_TIMEOUT)
        pop.user(ALICE)
        pop.pass_(PASSWORDS[ALICE])
        sizes = [int(line.split()[1]) for line in pop.list()[1]]
        got = [len(b"".join(line + b"\r\n" for line in pop.retr(i + 1)[1]))
               for i in range(len(sizes))]
        pop.quit()
        self.assertEqual(sizes, got)
        self.assertEqual(sizes[0], 32)
        # An mbox whose last message has no final line end, the same.
        mb = self.path("nofinal.mbox")
        with open(mb, "wb") as f:
            f.write(b"From x Tue Nov 14 22:13:20 2023\nSubject: c\n\nlast")
        p = self.run_kotak("import", "mbox", BOB, mb)
        self.assertEqual(self.kotak.bodies(BOB), [b"Subject: c\r\n\r\nlast\r\n"])

    def test_duplicates_within_the_source(self):
        """Two identical messages without a UIDL are one message: the second is
        counted apart from what the maildrop held already."""
        same = b"Subject: twice\n\nsame octets\n"
        path = self.maildir_at("md-dup", msgs=[same, b"Subject: other\n\nx\n", same])
        p = self.run_kotak("import", "maildir", ALICE, path)
        self.assertEqual(p.stderr, "")
        self.assertEqual(self.summary(p), (2, 0, 0))
        self.assertIn("1 duplicate within the source", p.stdout)
        p = self.run_kotak("import", "maildir", ALICE, path)
        self.assertEqual(self.summary(p), (0, 2, 0))
        self.assertIn("1 duplicate within the source", p.stdout)
        mb = self.path("dup.mbox")
        with open(mb, "wb") as f:
            for i in range(3):
                f.write(b"From x Tue Nov 14 22:13:20 2023\n" + same + b"\n")
        p = self.run_kotak("import", "mbox", BOB, mb)
        self.assertEqual(self.summary(p), (1, 0, 0))
        self.assertIn("2 duplicates within the source", p.stdout)

    def test_export_target_owner(self):
        """An existing empty folder of another user is no export target, nor is a
        folder of another user for an mbox; root's own folders (as /tmp) are."""
        nobody = pwd.getpwnam("nobody")
        if os.geteuid() != 0:
            self.skipTest("needs root to make a folder of another user")
        theirs = self.path("theirs")
        os.mkdir(theirs)
        os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
        self.assert_mistake("export", "maildir", ALICE, theirs, says="belongs to")
        self.assertEqual(os.listdir(theirs), [])
        self.assert_mistake("export", "mbox", ALICE, os.path.join(theirs, "a.mbox"),
                            says="belongs to")
        self.assertEqual(os.listdir(theirs), [])
        # A sticky folder of root's, as /tmp: fine.
        tmp = self.path("tmp-like")
        os.mkdir(tmp)
        os.chmod(tmp, 0o1777)
        self.run_kotak("export", "mbox", ALICE, os.path.join(tmp, "a.mbox"))
        self.assertEqual(os.listdir(tmp), ["a.mbox"])
        self.run_kotak("export", "maildir", ALICE, os.path.join(tmp, "md"))

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
