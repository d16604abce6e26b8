"""kotak restore FILE: a backup put back as the store, with real daemons
and poplib.

It waits for no daemon to have the store (refused while kotak-smtpd runs),
checks the file first (a damaged one or another SQLite file changes
nothing), keeps the store it replaces, and never hands out a UIDL a client
saw before: a POP3 client that saw message 3 before the restore must not
be shown a different message 3 after it, or it would skip that message for
good.
"""
import os
import sqlite3
import subprocess
import unittest

from kotak_harness import PASSWORDS, POP3, SMTP, SOCKET_TIMEOUT, KotakInstance, KotakTestCase

ALICE, BOB = "alice@example.test", "bob@example.test"


class Restore(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def send(self, n):
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            for i in range(n):
                s.sendmail(ALICE, [BOB], f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())

    def uidls(self):
        p = POP3("127.0.0.1", self.kotak.ports["pop3"], timeout=SOCKET_TIMEOUT)
        p.user(BOB)
        p.pass_(PASSWORDS[BOB])
        got = [line.split()[1].decode() for line in p.uidl()[1]]
        p.quit()
        return got

    def backup(self, name):
        path = os.path.join(self.kotak.dir, name)
        self.kotak.kotak("backup", path)
        return path

    def stop_daemons(self):
        for name in ("smtpd", "pop3d"):
            self.assertEqual(self.kotak.stop(name), 0)

    def test_a_restore_hands_out_no_uidl_seen_before(self):
        self.send(2)
        backup = self.backup("two.db")
        self.send(1)
        before = self.uidls()
        self.assertEqual(len(before), 3)
        # While a daemon has the store: refused, nothing changed.
        p = self.kotak.kotak("restore", backup, check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("stop kotak-smtpd and kotak-pop3d first", p.stderr)
        self.assertEqual(self.uidls(), before)
        self.stop_daemons()
        p = self.kotak.kotak("restore", backup)
        self.assertIn("2 messages in maildrops", p.stdout)
        self.assertIn("kotak.db.before-restore", p.stdout)
        self.kotak.start("smtpd")
        self.kotak.start("pop3d")
        self.assertEqual(self.uidls(), before[:2], "the backup's messages, with their UIDLs")
        self.send(1)
        after = self.uidls()
        self.assertEqual(len(after), 3)
        self.assertNotIn(after[2], before, "a new message got a UIDL a client saw before")
        # The store it replaced is kept, and still opens with its third message.
        aside = os.path.join(self.kotak.data_dir, "kotak.db.before-restore")
        with sqlite3.connect(f"file:{aside}?mode=ro", uri=True) as db:
            self.assertEqual(db.execute("SELECT count(*) FROM maildrop").fetchone()[0], 3)

    def test_without_a_store_to_go_on_from_every_uidl_is_new(self):
        self.send(2)
        backup = self.backup("two.db")
        before = self.uidls()
        self.stop_daemons()
        for suffix in ("", "-wal", "-shm"):
            path = self.kotak.db_path + suffix
            if os.path.exists(path):
                os.remove(path)
        p = self.kotak.kotak("restore", backup)
        self.assertIn("every message gets a new UIDL", p.stdout)
        self.kotak.start("pop3d")
        after = self.uidls()
        self.assertEqual(len(after), 2)
        self.assertFalse(set(after) & set(before), "no UIDL a client saw before")

    def test_onto_a_store_made_anew_every_uidl_is_new(self):
        # A new machine: kotak init there, then the old one's backup. The new store's
        # numbers say nothing of what clients saw, so none of them may be trusted.
        self.send(2)
        backup = self.backup("two.db")
        before = self.uidls()
        other = KotakInstance({})
        self.addCleanup(other.close)
        other.create()
        p = other.kotak("restore", backup)
        self.assertIn("every message gets a new UIDL", p.stdout)
        with sqlite3.connect(f"file:{other.db_path}?mode=ro", uri=True) as db:
            prefix = db.execute("SELECT value FROM meta WHERE key = 'uidl_prefix'").fetchone()[0]
        self.assertFalse(any(u.startswith(prefix + ".") for u in before), (prefix, before))
        # The hold file the restore made (as root, umask 077) lets the daemons, as their
        # own user, hold the store in turn.
        other.start("pop3d")
        hold, folder = os.stat(other.db_path + "-daemons"), os.stat(other.data_dir)
        self.assertEqual(hold.st_mode & 0o777, 0o600)
        self.assertEqual(hold.st_uid, folder.st_uid, "the daemons' user's")

    def test_a_restored_queue_is_said_to_be_tried_again(self):
        with SMTP("127.0.0.1", self.kotak.ports["submission"], timeout=SOCKET_TIMEOUT) as s:
            s.starttls(context=self.kotak.ssl_context())
            s.login(ALICE, PASSWORDS[ALICE])
            s.sendmail(ALICE, ["someone@elsewhere.example"], b"Subject: out\r\n\r\nx\r\n")
        backup = self.backup("queued.db")
        self.stop_daemons()
        p = self.kotak.kotak("restore", backup)
        self.assertIn("1 recipients wait in the queue as they did then", p.stdout)

    def test_a_backup_with_a_trigger_of_its_own_is_refused(self):
        backup = self.backup("planted.db")
        with sqlite3.connect(backup) as db:
            db.execute("CREATE TRIGGER copy_mail AFTER INSERT ON maildrop BEGIN "
                       "INSERT INTO maildrop(user_id, message_id, size, arrived) "
                       "SELECT 1, NEW.message_id, NEW.size, NEW.arrived; END")
        self.stop_daemons()
        p = self.kotak.kotak("restore", backup, check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("that kotak does not make", p.stderr)
        self.assertFalse(os.path.exists(self.kotak.db_path + ".before-restore"))

    def test_a_damaged_store_is_replaced_and_kept_with_its_wal(self):
        self.send(1)
        backup = self.backup("one.db")
        self.stop_daemons()
        junk = os.urandom(8192)
        for suffix in ("", "-wal"):
            with open(self.kotak.db_path + suffix, "wb") as f:
                f.write(junk)
        p = self.kotak.kotak("restore", backup)
        self.assertIn("every message gets a new UIDL", p.stdout, "nothing to go on from")
        for suffix in ("", "-wal"):
            with open(self.kotak.db_path + ".before-restore" + suffix, "rb") as f:
                self.assertEqual(f.read(), junk, "kept as it was" + suffix)
        self.assertFalse(os.path.exists(self.kotak.db_path + "-wal"))
        self.kotak.start("pop3d")
        self.assertEqual(len(self.uidls()), 1)

    def test_a_hold_file_that_names_another_file_is_not_given_away(self):
        backup = self.backup("one.db")
        self.stop_daemons()
        victim = os.path.join(self.kotak.dir, "roots-own")
        with open(victim, "w") as f:
            f.write("root's\n")
        hold = self.kotak.db_path + "-daemons"
        os.remove(hold)
        os.link(victim, hold)  # as the data folder's owner could, when hard links are free
        p = self.kotak.kotak("restore", backup, check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(os.stat(victim).st_uid, os.getuid(), "still root's")

    def test_a_damaged_file_or_another_database_changes_nothing(self):
        self.send(1)
        backup = self.backup("one.db")
        self.stop_daemons()
        with open(self.kotak.db_path, "rb") as f:
            store = f.read()
        damaged = os.path.join(self.kotak.dir, "damaged.db")
        with open(backup, "rb") as f:
            data = bytearray(f.read())
        data[len(data) // 2:len(data) // 2 + 4096] = b"\xff" * 4096
        with open(damaged, "wb") as f:
            f.write(data)
        other = os.path.join(self.kotak.dir, "other.db")
        with sqlite3.connect(other) as db:
            db.execute("CREATE TABLE t(x)")
        for path, says in ((damaged, "damaged"), (other, "no kotak store"),
                           (os.path.join(self.kotak.dir, "missing.db"), "cannot read")):
            with self.subTest(path=path):
                p = self.kotak.kotak("restore", path, check=False)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(says, p.stderr)
                self.assertEqual(len(p.stderr.strip().splitlines()), 1)
        with open(self.kotak.db_path, "rb") as f:
            self.assertEqual(f.read(), store, "the store is as it was")
        self.assertFalse(os.path.exists(self.kotak.db_path + ".before-restore"))


if __name__ == "__main__":
    unittest.main()
