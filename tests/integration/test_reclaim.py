"""Disk space comes back: the pages of deleted mail go back to the
filesystem (auto_vacuum INCREMENTAL, freed in short steps by kotak-smtpd's
store thread), so the store file shrinks to about what it holds, with mail
flowing meanwhile; and a store made by an older kotak is converted once,
when it is first opened.

The real daemons on free loopback ports, smtplib and poplib.

Run: KOTAK_BUILD=build python3 -m unittest test_reclaim (in tests/integration)
"""
import hashlib
import os
import sqlite3
import subprocess
import sys
import time

import test_pop3d
from kotak_harness import KOTAK, clean_env
from test_pop3d import BOB, joined, message, token

BIG = 400 * 1024
COUNT = 40
KEEP = 4
SLACK = 512 * 1024  # the store's own tables and indexes; an empty one is about 100 KiB


def pragma(path, name):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        con.close()


class ReclaimTest(test_pop3d.Pop3dTest):
    def body(self, i):
        line = (f"{i:06d} " + hashlib.sha256(str(i).encode()).hexdigest() + "\r\n").encode()
        return line * (BIG // len(line))

    def test_space_of_deleted_mail_comes_back_while_mail_flows(self):
        db = self.kotak.db_path
        self.assertEqual(pragma(db, "auto_vacuum"), 2, "a new store is made incremental")
        for i in range(COUNT):
            self.deliver(message(f"big-{i}", self.body(i)))
        full = os.path.getsize(db) + os.path.getsize(db + "-wal")
        self.assertGreater(full, COUNT * BIG)

        p = self.pop()
        count, _ = p.stat()
        self.assertEqual(count, COUNT)
        for n in range(1, COUNT - KEEP + 1):
            p.dele(n)
        p.quit()

        p = self.pop()
        kept = [size for _, size in self.listing(p)]
        p.quit()
        live = sum(kept)
        want = live * 1.25 + SLACK
        flowing = []
        deadline = time.monotonic() + 30
        while os.path.getsize(db) > want and time.monotonic() < deadline:
            subject = token()
            self.deliver(message(subject))  # mail goes on arriving meanwhile
            flowing.append(subject)
            time.sleep(0.2)
        size = os.path.getsize(db)
        self.assertLessEqual(size, want, f"{size} octets for {live} of mail (full: {full}; "
                                         f"{pragma(db, 'freelist_count')} pages free of "
                                         f"{pragma(db, 'page_count')})\n"
                                         + self.kotak.log("smtpd")[-2000:])
        self.assertLess(pragma(db, "freelist_count"), 200)

        # Nothing that was kept or came meanwhile was hurt by the pages' moves.
        p = self.pop()
        subjects = []
        for n, _ in self.listing(p):
            data = joined(p.retr(n)[1])
            subject = [l for l in data.split(b"\r\n") if l.startswith(b"Subject: ")][0][9:]
            subjects.append(subject.decode())
            if subject.startswith(b"big-"):
                i = int(subject[4:])
                self.assertTrue(data.endswith(self.body(i)), f"message {i} intact")
        p.quit()
        self.assertEqual(subjects, [f"big-{i}" for i in range(COUNT - KEEP, COUNT)] + flowing)


    def test_a_deletion_frees_pages_without_writing_them_again(self):
        """Deleted mail's pages are freed, not zeroed through the WAL: zeroing a
        large maildrop's held the write lock, and every delivery, for seconds."""
        db = self.kotak.db_path
        for i in range(COUNT):
            self.deliver(message(f"big-{i}", self.body(i)))
        p = self.pop()
        p.dele(1)  # about 100 pages: too few for the store thread to reclaim
        con = sqlite3.connect(db, timeout=10, isolation_level=None)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            p.quit()
            _, frames, _ = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            con.close()
        self.assertEqual(self.pop().stat()[0], COUNT - 1)
        self.assertLess(frames, 40, "pages written to delete one message of 400 KiB")


    def test_a_backup_holds_no_deleted_mail(self):
        """Free pages may still hold deleted text; a backup leaves them out."""
        for i in range(COUNT):
            self.deliver(message(f"big-{i}", self.body(i)))
        p = self.pop()
        p.dele(1)  # too little for the store thread to give back: its pages stay free
        p.quit()
        self.assertGreater(pragma(self.kotak.db_path, "freelist_count"), 50)
        backup = os.path.join(self.kotak.dir, "backup.db")
        self.kotak.kotak("backup", backup)
        self.assertEqual(pragma(backup, "freelist_count"), 0)
        with open(backup, "rb") as f:
            copy = f.read()
        self.assertNotIn(self.body(0)[:200], copy, "the deleted message's text")
        self.assertIn(self.body(1)[:200], copy)


    def test_a_backup_writes_no_file_another_user_planted(self):
        """`kotak backup` into a folder others can write: the files SQLite
        opens beside the copy (its WAL, while the free pages are left out)
        are never a file another user put in their way."""
        for i in range(COUNT):
            self.deliver(message(f"big-{i}", self.body(i)))
        p = self.pop()
        p.dele(1)
        p.quit()
        shared = os.path.join(self.kotak.dir, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        os.chmod(self.kotak.dir, 0o755)
        dest = os.path.join(shared, "backup.db")
        spy = os.path.join(shared, "spy")
        with open(spy, "wb") as f:
            f.write(b"x")
        os.chmod(spy, 0o666)
        os.chown(spy, 65534, 65534)
        # nobody plants second names of its file wherever the backup may write
        planter = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
             "import os, sys\n"
             "shared, spy = sys.argv[1], sys.argv[2]\n"
             "while True:\n"
             "    for name in os.listdir(shared):\n"
             "        for target in (os.path.join(shared, name) + '-wal',\n"
             "                       os.path.join(shared, name, 'backup.db-wal')):\n"
             "            try:\n"
             "                os.link(spy, target)\n"
             "            except OSError:\n"
             "                pass\n", shared, spy])
        try:
            time.sleep(0.2)
            self.kotak.kotak("backup", dest)
        finally:
            planter.kill()
            planter.wait()
        with open(spy, "rb") as f:
            got = f.read()
        self.assertEqual([i for i in range(COUNT) if self.body(i)[:200] in got], [],
                         "nobody's file holds mail")
        self.assertEqual(pragma(dest, "freelist_count"), 0)


class OtherWriters(test_pop3d.Pop3dTest):
    """Reclaiming pauses between its steps and never waits for the lock, so
    another process's write (kotak-pop3d's QUIT, any kotak command) waiting in
    SQLite's busy handler gets the lock between two steps."""
    DAEMONS_TO_START = ()
    ROWS, ROW = 5000, 60 * 1024  # 300 MB, the oldest three quarters deleted

    def test_writes_of_another_process_go_through_while_pages_come_back(self):
        db = self.kotak.db_path
        con = sqlite3.connect(db, isolation_level=None, timeout=5)
        con.execute("BEGIN")
        blob = os.urandom(self.ROW)
        for _ in range(self.ROWS):
            con.execute("INSERT INTO messages(received, size, head) VALUES(0, ?, ?)",
                        (self.ROW, blob))
        con.execute("COMMIT")
        cut = con.execute("SELECT min(id) + ? FROM messages", (self.ROWS * 3 // 4,)).fetchone()[0]
        con.execute("DELETE FROM messages WHERE id < ?", (cut,))
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        free0 = con.execute("PRAGMA freelist_count").fetchone()[0]
        con.close()

        self.kotak.start("smtpd")
        w = sqlite3.connect(db, isolation_level=None, timeout=5)  # STORE_BUSY_TIMEOUT_MS
        waits, started, deadline = [], None, time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                free = pragma(db, "freelist_count")
                if started is None and free < free0:
                    started = time.monotonic()
                if started is not None and free <= 200:
                    break
                t = time.monotonic()
                w.execute("BEGIN IMMEDIATE")  # sqlite3.OperationalError: the test fails
                waits.append(time.monotonic() - t)  # for the lock alone, not the commit's fsync
                w.execute("UPDATE users SET last_login = ? WHERE id = 1", (int(t),))
                w.execute("COMMIT")
                time.sleep(0.05)
        finally:
            w.close()
        self.assertIsNotNone(started, "reclaiming began")
        self.assertLessEqual(pragma(db, "freelist_count"), 200, "and ended within a minute")
        self.assertLess(max(waits), 0.5, f"another process's write waited {max(waits):.2f} s "
                                         f"for the lock")


class OlderStore(test_pop3d.Pop3dTest):
    """A store made before kotak gave space back keeps working as it was,
    untouched by the daemons (its rewrite would hold the lock for minutes);
    `kotak restore` rewrites its own private copy so that it gives space back."""
    DAEMONS_TO_START = ()

    def test_an_older_store_is_left_alone_and_restore_converts_it(self):
        db = self.kotak.db_path
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("PRAGMA auto_vacuum = NONE")
        con.execute("VACUUM")
        con.close()
        self.assertEqual(pragma(db, "auto_vacuum"), 0)
        self.kotak.start("smtpd")
        self.kotak.start("pop3d")
        for i in range(COUNT):
            self.deliver(message(f"big-{i}", self.body(i)))
        p = self.pop()
        for n in range(1, COUNT // 2 + 1):
            p.dele(n)
        p.quit()
        time.sleep(1.5)  # a look of the store thread's, which finds nothing to do
        self.assertEqual(pragma(db, "auto_vacuum"), 0, "the daemons leave the store as it was")
        self.assertGreater(pragma(db, "freelist_count"), 1000)
        self.assertEqual(self.pop().stat()[0], COUNT - COUNT // 2)

        backup = os.path.join(self.kotak.dir, "before.db")
        self.kotak.kotak("backup", backup)
        self.kotak.stop("smtpd")
        self.kotak.stop("pop3d")
        # Its scratch copy goes beside the store, whatever the temporary folder.
        p = subprocess.run([KOTAK, "-c", self.kotak.conf, "restore", backup],
                           capture_output=True, text=True, cwd=self.kotak.dir, timeout=60,
                           env=clean_env(SQLITE_TMPDIR="/proc", TMPDIR="/proc"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("keeps the space", p.stdout)
        self.assertEqual(pragma(db, "auto_vacuum"), 2, "the restored store gives space back")
        self.assertLess(pragma(db, "freelist_count"), 10)
        self.kotak.start("smtpd")
        self.kotak.start("pop3d")
        p = self.pop()
        self.assertEqual(p.stat()[0], COUNT - COUNT // 2)
        data = joined(p.retr(1)[1])
        self.assertTrue(data.endswith(self.body(COUNT // 2)), "the messages are whole")

    body = ReclaimTest.body
