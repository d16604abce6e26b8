"""Tests of `kotak`, the administrator's command, run as a real process.

Each test gets a fresh temporary folder with its own kotak.conf and store,
runs the built binary with subprocess (always with a timeout), and checks
the exit status, what was printed, and the store itself through Python's
sqlite3 module. The CLI's contract (ctl/ctl.h, DESIGN.md): success is exit
0; every mistake is exit 2 with exactly one line on stderr, "kotak: what is
wrong; how to mend it", and leaves the store as it was.

Run: KOTAK_BUILD=build python3 tests/tap_unittest.py tests/cli/test_cli.py
"""
import configparser
import os
import pwd
import re
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time
import unittest
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt
    except ImportError:  # Python 3.13 removed it
        crypt = None

BUILD = os.environ.get("KOTAK_BUILD", "/work/main/build")
KOTAK = os.path.join(os.path.abspath(BUILD), "ctl", "kotak")
VERSION = os.environ.get("KOTAK_VERSION")  # meson.project_version(), set by meson test
TIMEOUT = 30
HOST = "mail.example.test"
LISTENERS = {
    "smtp": "127.0.0.1:2525",
    "submission": "127.0.0.1:2587",
    "submissions": "127.0.0.1:2465",
    "pop3": "127.0.0.1:2110",
    "pop3s": "127.0.0.1:2995",
}
COMMANDS = ["init", "domain", "user", "alias", "mailbox", "stats", "backup", "run", "queue"]
NOBODY = 65534
# Takes a store back to schema 3: the outbound queue of migration 4 undone.
UNDO_SCHEMA_4_TO_8 = """
DROP INDEX maildrop_source_uidl; ALTER TABLE maildrop DROP COLUMN source_uidl;
DROP INDEX maildrop_retrieved; ALTER TABLE maildrop DROP COLUMN source;
DROP TRIGGER maildrop_used_add; DROP TRIGGER maildrop_used_del;
DROP INDEX maildrop_uidl;
ALTER TABLE maildrop DROP COLUMN uidl; ALTER TABLE maildrop DROP COLUMN digest;
ALTER TABLE maildrop DROP COLUMN retrieved; ALTER TABLE messages DROP COLUMN eoh_at;
ALTER TABLE users DROP COLUMN quota; ALTER TABLE users DROP COLUMN used;
ALTER TABLE users DROP COLUMN quota_warned; ALTER TABLE users DROP COLUMN last_login;
ALTER TABLE domains DROP COLUMN quota;
DROP TRIGGER queue_release; DROP TABLE queue_log; DROP TABLE queue_rcpt; DROP TABLE queue;
DROP TRIGGER maildrop_release;
CREATE TRIGGER maildrop_release AFTER DELETE ON maildrop
  WHEN NOT EXISTS (SELECT 1 FROM maildrop WHERE message_id = OLD.message_id)
  BEGIN DELETE FROM messages WHERE id = OLD.message_id; END;
"""
SCHEMA_VERSION = 9  # store/store.c: the number of migrations


def clean_env(**extra):
    """The environment for kotak: ours without KOTAK_CONFIG, plus extra."""
    env = {k: v for k, v in os.environ.items() if k != "KOTAK_CONFIG"}
    env.update(extra)
    return env


def verify_hash(password, hashed):
    """True when crypt(3) says hashed is a hash of password."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return crypt.crypt(password, hashed) == hashed


class KotakTest(unittest.TestCase):
    """A fresh folder per test, with helpers to run kotak and read the store."""

    def setUp(self):
        if not os.access(KOTAK, os.X_OK):
            self.fail(f"{KOTAK} is not built; set KOTAK_BUILD to the meson build root")
        self._tmp = tempfile.TemporaryDirectory(prefix="kotak-cli-")
        self.addCleanup(self._tmp.cleanup)
        self.dir = self._tmp.name
        self.conf = os.path.join(self.dir, "kotak.conf")
        self.db_path = os.path.join(self.dir, "kotak-data", "kotak.db")

    # --- running kotak ---------------------------------------------------

    def kotak(self, *args, conf=True, input=None, stdin=None, env=None, cwd=None,
              preexec_fn=None, prefix=()):
        """Runs kotak [-c self.conf] ARGS; returns the CompletedProcess."""
        argv = list(prefix) + [KOTAK]
        if conf:
            argv += ["-c", self.conf]
        argv += list(args)
        if input is None and stdin is None:
            stdin = subprocess.DEVNULL
        return subprocess.run(argv, input=input, stdin=stdin, capture_output=True, text=True,
                              env=env if env is not None else clean_env(),
                              cwd=cwd if cwd is not None else self.dir,
                              timeout=TIMEOUT, preexec_fn=preexec_fn)

    def ok(self, *args, **kw):
        """Runs kotak and asserts success: exit 0, nothing on stderr."""
        p = self.kotak(*args, **kw)
        self.assertEqual(p.returncode, 0,
                         f"kotak {' '.join(args)} failed: {p.stderr!r} {p.stdout!r}")
        self.assertEqual(p.stderr, "", f"kotak {' '.join(args)} wrote on stderr")
        return p

    def fails(self, *args, **kw):
        """Runs kotak and asserts a CLI mistake: exit 2, one 'kotak: ' line on stderr."""
        p = self.kotak(*args, **kw)
        self.assert_one_error_line(p, args)
        return p

    def assert_one_error_line(self, p, args=()):
        self.assertEqual(p.returncode, 2,
                         f"kotak {' '.join(args)}: exit {p.returncode}, stderr {p.stderr!r}, "
                         f"stdout {p.stdout!r}")
        self.assertTrue(p.stderr.endswith("\n"), f"stderr not a whole line: {p.stderr!r}")
        lines = p.stderr.splitlines()
        self.assertEqual(len(lines), 1, f"stderr is not exactly one line: {p.stderr!r}")
        self.assertTrue(lines[0].startswith("kotak: "), f"stderr line: {lines[0]!r}")
        self.assertGreater(len(lines[0]), len("kotak: "), "empty error message")

    def init(self):
        p = self.ok("init", "--hostname", HOST)
        self.assertTrue(os.path.exists(self.db_path))
        return p

    def setup_users(self):
        """init, domain example.test, users alice and bob with password 'pw-<name>-long'."""
        self.init()
        self.ok("domain", "add", "example.test")
        for name in ("alice", "bob"):
            self.ok("user", "add", f"{name}@example.test", "--password-stdin",
                    input=f"pw-{name}-long\n")

    # --- reading the store -----------------------------------------------

    def db(self, path=None):
        con = sqlite3.connect(path or self.db_path, isolation_level=None, timeout=1)
        self.addCleanup(con.close)
        return con

    def query(self, sql, *params, path=None):
        con = sqlite3.connect(path or self.db_path, timeout=1)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def dump(self, path=None):
        con = sqlite3.connect(path or self.db_path, timeout=1)
        try:
            return "\n".join(con.iterdump())
        finally:
            con.close()

    def domains(self, path=None):
        return [r[0] for r in self.query("SELECT name FROM domains ORDER BY name", path=path)]

    def users(self, path=None):
        return [r[0] for r in self.query(
            "SELECT u.local || '@' || d.name FROM users u JOIN domains d ON d.id = u.domain_id"
            " ORDER BY 1", path=path)]

    def user_hash(self, address):
        local, domain = address.split("@")
        rows = self.query("SELECT u.hash FROM users u JOIN domains d ON d.id = u.domain_id"
                          " WHERE u.local = ? AND d.name = ?", local, domain)
        self.assertEqual(len(rows), 1, f"no user {address}")
        return rows[0][0]

    def aliases(self):
        return self.query("SELECT a.local || '@' || d.name, a.target FROM aliases a"
                          " JOIN domains d ON d.id = a.domain_id ORDER BY 1, 2")

    def assert_unchanged(self, before, *args, **kw):
        """Runs a failing kotak command and asserts the store dump is the same after."""
        p = self.fails(*args, **kw)
        self.assertEqual(self.dump(), before, f"kotak {' '.join(args)} changed the store")
        return p


# --- init ---------------------------------------------------------------------

class InitTest(KotakTest):
    def test_init_writes_conf_with_five_listeners_and_the_store(self):
        p = self.ok("init", "--hostname", HOST)
        self.assertIn(self.conf, p.stdout)
        self.assertTrue(os.path.isfile(self.conf))
        self.assertTrue(os.path.isfile(self.db_path))
        text = open(self.conf).read()
        for section, listen in LISTENERS.items():
            self.assertRegex(text, rf"(?m)^\[{section}\]")
        cp = configparser.ConfigParser(inline_comment_prefixes=(";",))
        cp.read_string(text)
        for section, listen in LISTENERS.items():
            self.assertEqual(cp.get(section, "listen"), listen, section)
        self.assertEqual(self.query("PRAGMA user_version"), [(SCHEMA_VERSION,)])
        self.assertEqual(self.query("PRAGMA journal_mode"), [("wal",)])
        tables = {r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type='table'")}
        for t in ("domains", "users", "aliases", "messages", "chunks", "maildrop"):
            self.assertIn(t, tables)
        self.assertEqual(self.domains(), [])
        # What init wrote is what the loader accepts.
        self.ok("stats")

    def test_init_keep_config_makes_only_what_is_missing(self):
        self.ok("init", "--hostname", HOST)
        with open(self.conf, "rb") as f:
            conf = f.read()
        data = os.path.dirname(self.db_path)
        for name in os.listdir(data):
            os.remove(os.path.join(data, name))
        p = self.ok("init", "--keep-config")
        self.assertIn("created the store", p.stdout)
        self.assertIn("made a self-signed certificate", p.stdout)
        self.assertTrue(os.path.isfile(self.db_path))
        self.assertTrue(os.path.isfile(os.path.join(data, "cert.pem")))
        self.ok("domain", "add", "example.test")
        p = self.ok("init", "--keep-config")
        self.assertIn("kept the store", p.stdout)
        self.assertIn("kept the certificate", p.stdout)
        self.assertEqual(self.domains(), ["example.test"], "the store as it was")
        with open(self.conf, "rb") as f:
            self.assertEqual(f.read(), conf, "the config is read, never written")

    def test_init_keep_config_refuses_half_a_pair(self):
        self.ok("init", "--hostname", HOST)
        os.remove(os.path.join(os.path.dirname(self.db_path), "key.pem"))
        p = self.fails("init", "--keep-config")
        self.assertIn("cert.pem is there but", p.stderr)
        self.assertIn("key.pem is not", p.stderr)

    def test_init_hostname_option_ends_up_in_the_file(self):
        self.ok("init", "--hostname", HOST)
        cp = configparser.ConfigParser(inline_comment_prefixes=(";",))
        cp.read(self.conf)
        self.assertEqual(cp.get("server", "hostname"), HOST)

    def test_init_refuses_an_invalid_hostname(self):
        p = self.fails("init", "--hostname", "bad host!")
        self.assertIn("--hostname", p.stderr)
        self.assertFalse(os.path.exists(self.conf))
        self.assertFalse(os.path.exists(self.db_path))

    def test_init_again_without_force_exits_2_and_keeps_the_store(self):
        self.init()
        self.ok("domain", "add", "example.test")
        conf_before = open(self.conf).read()
        before = self.dump()
        p = self.fails("init", "--hostname", "other.example.test")
        self.assertIn("--force", p.stderr)
        self.assertEqual(open(self.conf).read(), conf_before)
        self.assertEqual(self.dump(), before)
        self.assertEqual(self.domains(), ["example.test"])

    def test_init_force_recreates_the_store(self):
        self.init()
        self.ok("domain", "add", "example.test")
        self.ok("init", "--hostname", "new.example.test", "--force")
        self.assertEqual(self.domains(), [])
        cp = configparser.ConfigParser(inline_comment_prefixes=(";",))
        cp.read(self.conf)
        self.assertEqual(cp.get("server", "hostname"), "new.example.test")
        self.assertEqual(self.query("PRAGMA user_version"), [(SCHEMA_VERSION,)])

    def test_init_refusing_an_existing_store_writes_no_config(self):
        # kotak.conf lost, store still there: init must refuse and change nothing,
        # not leave a new kotak.conf behind (which the next init would then
        # refuse too, pushing the administrator towards --force and the store's loss).
        self.init()
        self.ok("domain", "add", "example.test")
        os.unlink(self.conf)
        before = self.dump()
        p = self.assert_unchanged(before, "init", "--hostname", HOST)
        self.assertIn("--force", p.stderr)
        self.assertFalse(os.path.exists(self.conf), "a failed init left a kotak.conf behind")
        self.assertFalse(os.path.exists(self.conf + ".tmp"))
        self.assertEqual(self.domains(), ["example.test"])

    def test_init_without_c_writes_into_the_current_folder(self):
        self.ok("init", "--hostname", HOST, conf=False, cwd=self.dir)
        self.assertTrue(os.path.isfile(self.conf))
        self.assertTrue(os.path.isfile(self.db_path))

    def test_init_honours_kotak_config(self):
        sub = os.path.join(self.dir, "etc")
        os.mkdir(sub)
        path = os.path.join(sub, "k.conf")
        cwd = os.path.join(self.dir, "elsewhere")
        os.mkdir(cwd)
        self.ok("init", "--hostname", HOST, conf=False, cwd=cwd,
                env=clean_env(KOTAK_CONFIG=path))
        self.assertTrue(os.path.isfile(path))
        self.assertTrue(os.path.isfile(os.path.join(sub, "kotak-data", "kotak.db")))
        self.assertEqual(os.listdir(cwd), [])

    def test_init_with_an_unknown_option_exits_2(self):
        self.fails("init", "--bogus")
        self.assertFalse(os.path.exists(self.conf))


# --- finding the config -------------------------------------------------------

class StoreFilesTest(KotakTest):
    """The store holds every password hash and all mail: its owner alone reads it."""

    def test_init_makes_the_data_folder_and_its_files_private_whatever_the_umask(self):
        old = os.umask(0o022)
        try:
            self.setup_users()
        finally:
            os.umask(old)
        data = os.path.dirname(self.db_path)
        self.assertEqual(stat.S_IMODE(os.stat(data).st_mode), 0o700)
        for entry in os.listdir(data):
            mode = stat.S_IMODE(os.lstat(os.path.join(data, entry)).st_mode)
            self.assertEqual(mode & 0o077, 0, f"{entry} is {oct(mode)}")

    def test_a_store_left_open_to_others_is_closed_up_when_next_opened(self):
        self.setup_users()
        con = self.db()  # keeps -wal and -shm in place
        con.execute("SELECT count(*) FROM users").fetchall()
        for suffix in ("", "-wal", "-shm"):
            os.chmod(self.db_path + suffix, 0o644)
        self.ok("stats")
        for suffix in ("", "-wal", "-shm"):
            mode = stat.S_IMODE(os.stat(self.db_path + suffix).st_mode)
            self.assertEqual(mode, 0o600, f"kotak.db{suffix} is {oct(mode)}")


@unittest.skipUnless(os.geteuid() == 0, "needs root: init gives the data folder away as root")
class InitAsRootTest(KotakTest):
    def test_init_as_root_names_the_user_kotak_and_gives_it_the_data_folder(self):
        self.init()
        cp = configparser.ConfigParser(inline_comment_prefixes=(";",))
        cp.read(self.conf)
        self.assertEqual(cp.get("server", "user"), "kotak")
        uid = pwd.getpwnam("kotak").pw_uid
        self.assertNotEqual(uid, 0)
        data = os.path.dirname(self.db_path)
        for path in [data] + [os.path.join(data, e) for e in os.listdir(data)]:
            self.assertEqual(os.lstat(path).st_uid, uid, path)
        # Later commands run as root keep the files usable by that user.
        self.ok("domain", "add", "example.test")
        for entry in os.listdir(data):
            self.assertEqual(os.lstat(os.path.join(data, entry)).st_uid, uid, entry)

    def test_init_user_names_an_existing_user(self):
        name = pwd.getpwuid(NOBODY).pw_name
        self.ok("init", "--hostname", HOST, "--user", name)
        cp = configparser.ConfigParser(inline_comment_prefixes=(";",))
        cp.read(self.conf)
        self.assertEqual(cp.get("server", "user"), name)
        self.assertEqual(os.stat(os.path.dirname(self.db_path)).st_uid, NOBODY)

    def test_init_refuses_a_data_folder_another_user_made_and_writes_nothing(self):
        data = os.path.dirname(self.db_path)
        os.mkdir(data)
        os.chown(data, NOBODY, NOBODY)
        p = self.fails("init", "--hostname", HOST)
        self.assertIn("another user", p.stderr)
        self.assertFalse(os.path.exists(self.conf))
        self.assertEqual(os.listdir(data), [])

    def test_init_refuses_a_data_folder_others_may_write_to(self):
        data = os.path.dirname(self.db_path)
        os.mkdir(data)
        os.chmod(data, 0o777)
        p = self.fails("init", "--hostname", HOST)
        self.assertIn("written by others", p.stderr)
        self.assertFalse(os.path.exists(self.conf))

    def test_init_user_of_no_such_user_exits_2_and_writes_nothing(self):
        p = self.fails("init", "--hostname", HOST, "--user", "no-such-kotak-user")
        self.assertIn("no-such-kotak-user", p.stderr)
        self.assertFalse(os.path.exists(self.conf))


class ConfigLocationTest(KotakTest):
    def setUp(self):
        super().setUp()
        # The instance lives in DIR/inst; commands run from an empty DIR/cwd.
        self.inst = os.path.join(self.dir, "inst")
        os.mkdir(self.inst)
        self.cwd = os.path.join(self.dir, "cwd")
        os.mkdir(self.cwd)
        self.conf = os.path.join(self.inst, "kotak.conf")
        self.db_path = os.path.join(self.inst, "kotak-data", "kotak.db")
        self.init()
        self.ok("domain", "add", "example.test")

    def test_c_option_is_honoured_and_data_dir_is_relative_to_the_file(self):
        p = self.ok("domain", "list", cwd=self.cwd)
        self.assertEqual(p.stdout, "example.test\tusers=0\taliases=0\n")
        self.assertEqual(os.listdir(self.cwd), [])

    def test_long_config_option_forms_are_honoured(self):
        p = self.ok("--config", self.conf, "domain", "list", conf=False, cwd=self.cwd)
        self.assertIn("example.test", p.stdout)
        p = self.ok(f"--config={self.conf}", "domain", "list", conf=False, cwd=self.cwd)
        self.assertIn("example.test", p.stdout)
        # -c may also come after the command.
        p = self.ok("domain", "list", "-c", self.conf, conf=False, cwd=self.cwd)
        self.assertIn("example.test", p.stdout)

    def test_kotak_config_env_is_honoured(self):
        p = self.ok("domain", "list", conf=False, cwd=self.cwd,
                    env=clean_env(KOTAK_CONFIG=self.conf))
        self.assertEqual(p.stdout, "example.test\tusers=0\taliases=0\n")

    def test_c_option_wins_over_kotak_config(self):
        missing = os.path.join(self.dir, "missing.conf")
        p = self.ok("domain", "list", cwd=self.cwd, env=clean_env(KOTAK_CONFIG=missing))
        self.assertIn("example.test", p.stdout)

    def test_kotak_config_wins_over_the_current_folder(self):
        # An instance in cwd with no domains; KOTAK_CONFIG must be the one used.
        self.ok("init", "--hostname", HOST, conf=False, cwd=self.cwd)
        p = self.ok("domain", "list", conf=False, cwd=self.cwd,
                    env=clean_env(KOTAK_CONFIG=self.conf))
        self.assertIn("example.test", p.stdout)
        p = self.ok("domain", "list", conf=False, cwd=self.cwd)
        self.assertEqual(p.stdout, "")

    def test_kotak_conf_in_the_current_folder_is_used(self):
        p = self.ok("domain", "list", conf=False, cwd=self.inst)
        self.assertIn("example.test", p.stdout)

    def test_no_config_anywhere_exits_2_naming_the_file_and_kotak_init(self):
        if os.path.exists("/etc/kotak/kotak.conf"):
            self.skipTest("/etc/kotak/kotak.conf exists on this machine")
        p = self.fails("domain", "list", conf=False, cwd=self.cwd)
        self.assertIn("/etc/kotak/kotak.conf", p.stderr)
        self.assertIn("kotak init", p.stderr)

    def test_missing_c_file_exits_2_naming_it(self):
        missing = os.path.join(self.dir, "nope.conf")
        p = self.fails("-c", missing, "stats", conf=False, cwd=self.cwd)
        self.assertIn(missing, p.stderr)
        self.assertIn("kotak init", p.stderr)

    def test_missing_kotak_config_file_exits_2_naming_it(self):
        missing = os.path.join(self.dir, "nope.conf")
        p = self.fails("stats", conf=False, cwd=self.cwd, env=clean_env(KOTAK_CONFIG=missing))
        self.assertIn(missing, p.stderr)

    def test_c_without_a_file_name_exits_2(self):
        self.fails("stats", "-c", conf=False, cwd=self.cwd)

    def test_config_without_a_store_exits_2_saying_kotak_init(self):
        shutil.rmtree(os.path.join(self.inst, "kotak-data"))
        p = self.fails("domain", "list", cwd=self.cwd)
        self.assertIn("kotak init", p.stderr)
        p = self.fails("domain", "add", "x.test", cwd=self.cwd)
        self.assertIn("kotak init", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.inst, "kotak-data", "kotak.db")))


# --- a broken config ----------------------------------------------------------

class BrokenConfigTest(KotakTest):
    GOOD = [
        "; a comment",
        "[server]",
        f"hostname = {HOST}",
        "data_dir = kotak-data",
        "log_level = info",
        "",
        "[smtp]          ; MX",
        "listen = 127.0.0.1:2525",
        "",
        "[pop3]",
        "listen = 127.0.0.1:2110",
    ]

    def broken(self, lines, bad_line, *words):
        """Writes lines as kotak.conf; asserts 'kotak.conf:<bad_line>:' (1-based) and words."""
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = self.fails("stats")
        self.assertIn(f"{self.conf}:{bad_line}:", p.stderr)
        for w in words:
            self.assertIn(w, p.stderr)
        return p

    def with_line(self, index, line):
        """GOOD with line inserted so that it becomes line number index (1-based)."""
        lines = list(self.GOOD)
        lines.insert(index - 1, line)
        return lines

    def test_the_good_config_loads(self):
        self.init()
        with open(self.conf, "w") as f:
            f.write("\n".join(self.GOOD) + "\n")
        self.ok("stats")

    def test_unknown_key_reports_its_line(self):
        self.broken(self.with_line(5, "colour = blue"), 5, "colour")

    def test_unknown_key_in_a_listener_section_reports_its_line(self):
        self.broken(self.with_line(9, "listn = 127.0.0.1:25"), 9, "listn")

    def test_unknown_section_reports_its_line(self):
        lines = self.GOOD + ["", "[smpt]", "listen = 127.0.0.1:25"]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = self.fails("stats")
        self.assertIn("smpt", p.stderr)
        # The section header (13) or its first key (14): both point at it.
        self.assertRegex(p.stderr, re.escape(self.conf) + r":(13|14):")

    def test_listen_without_port_reports_its_line(self):
        lines = list(self.GOOD)
        lines[7] = "listen = 127.0.0.1"
        self.broken(lines, 8, "port")

    def test_listen_port_70000_reports_its_line(self):
        lines = list(self.GOOD)
        lines[10] = "listen = 127.0.0.1:70000"
        self.broken(lines, 11, "70000")

    def test_listen_port_zero_reports_its_line(self):
        lines = list(self.GOOD)
        lines[10] = "listen = 127.0.0.1:0"
        self.broken(lines, 11)

    def test_listen_with_a_hostname_instead_of_an_ip_reports_its_line(self):
        lines = list(self.GOOD)
        lines[7] = "listen = localhost:2525"
        self.broken(lines, 8, "localhost", "IP address")

    def test_listen_ending_in_a_comma_reports_its_line(self):
        lines = list(self.GOOD)
        lines[7] = "listen = 127.0.0.1:2525,"
        self.broken(lines, 8)

    def test_listen_ipv6_without_brackets_reports_its_line(self):
        lines = list(self.GOOD)
        lines[7] = "listen = ::1:2525"
        self.broken(lines, 8, "[::1]")

    def test_empty_listen_turns_the_listener_off_and_ipv6_is_accepted(self):
        self.init()
        lines = list(self.GOOD)
        lines[7] = "listen ="
        lines[10] = "listen = [::1]:2110, 127.0.0.1:2111"
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.ok("stats")

    def test_duplicate_key_reports_the_second_line(self):
        self.broken(self.with_line(6, "log_level = debug"), 6, "log_level", "twice")

    def test_duplicate_listener_section_key_reports_the_second_line(self):
        lines = self.GOOD + ["[smtp]", "listen = 127.0.0.1:2526"]
        self.broken(lines, 13, "twice")

    def test_bad_log_level_reports_its_line(self):
        lines = list(self.GOOD)
        lines[4] = "log_level = verbose"
        self.broken(lines, 5, "verbose")

    def test_bad_bare_newline_reports_its_line(self):
        lines = self.GOOD + ["[limits]", "bare_newline = accept"]
        p = self.broken(lines, len(lines), "bare_newline")
        self.assertIn("normalize or reject", p.stderr)

    def test_bad_hostname_reports_its_line(self):
        lines = list(self.GOOD)
        lines[2] = "hostname = bad_host!"
        self.broken(lines, 3, "host name")

    def test_empty_data_dir_reports_its_line(self):
        lines = list(self.GOOD)
        lines[3] = "data_dir ="
        self.broken(lines, 4, "data_dir")

    def test_key_outside_any_section_reports_its_line(self):
        self.broken(["hostname = x.test"] + self.GOOD, 1, "section")

    def test_a_line_that_is_not_ini_reports_its_line(self):
        self.broken(self.with_line(4, "this is not ini"), 4)

    def test_only_the_first_of_several_errors_is_reported(self):
        lines = self.with_line(4, "colour = blue")
        lines.insert(8, "log_level = loud")
        p = self.broken(lines, 4, "colour")
        self.assertNotIn("loud", p.stderr)

    def test_a_non_ini_line_before_a_bad_key_is_reported_with_its_own_message(self):
        # The first error is line 4 (not key = value); the unknown key on line
        # 6 must not lend its message to line 4's number.
        lines = self.with_line(4, "this is not ini")
        lines.insert(5, "colour = blue")
        p = self.broken(lines, 4)
        self.assertNotIn("colour", p.stderr,
                         "the line number is the syntax error's but the message is the key's")


# --- domains ------------------------------------------------------------------

class DomainTest(KotakTest):
    def setUp(self):
        super().setUp()
        self.init()

    def test_domain_add_list_del(self):
        p = self.ok("domain", "add", "example.test")
        self.assertEqual(p.stdout, "domain example.test added\n")
        self.ok("domain", "add", "other.test")
        self.assertEqual(self.domains(), ["example.test", "other.test"])
        p = self.ok("domain", "list")
        self.assertEqual(p.stdout, "example.test\tusers=0\taliases=0\n"
                                   "other.test\tusers=0\taliases=0\n")
        p = self.ok("domain", "del", "other.test")
        self.assertEqual(p.stdout, "domain other.test deleted\n")
        self.assertEqual(self.domains(), ["example.test"])
        p = self.ok("domain", "list")
        self.assertEqual(p.stdout, "example.test\tusers=0\taliases=0\n")

    def test_domain_list_of_an_empty_store_prints_nothing(self):
        p = self.ok("domain", "list")
        self.assertEqual(p.stdout, "")

    def test_domain_list_counts_users_and_aliases(self):
        self.ok("domain", "add", "example.test")
        self.ok("user", "add", "alice@example.test", "--password-stdin", input="pw-Long-9x\n")
        self.ok("alias", "add", "sales@example.test",
                       "alice@example.test,bob@elsewhere.example")
        p = self.ok("domain", "list")
        # sales@ and postmaster@, which the first user became
        self.assertEqual(p.stdout, "example.test\tusers=1\taliases=2\n")

    def test_invalid_domain_names_exit_2(self):
        before = self.dump()
        for name in ("exa mple.test", "-bad.test", "bad-.test", "a..b", ".a.test", "a.test.",
                     "", "a_b.test", "x" * 64 + ".test", "ex@mple.test"):
            with self.subTest(name=name):
                p = self.assert_unchanged(before, "domain", "add", name)
                self.assertIn("domain", p.stderr)
        self.assertEqual(self.domains(), [])

    def test_duplicate_domain_add_exits_2(self):
        self.ok("domain", "add", "example.test")
        before = self.dump()
        p = self.assert_unchanged(before, "domain", "add", "example.test")
        self.assertIn("already exists", p.stderr)

    def test_domain_names_are_folded_to_lower_case(self):
        p = self.ok("domain", "add", "Example.TEST")
        self.assertEqual(p.stdout, "domain example.test added\n")
        self.assertEqual(self.domains(), ["example.test"])
        before = self.dump()
        self.assert_unchanged(before, "domain", "add", "EXAMPLE.test")
        self.ok("domain", "del", "EXAMPLE.Test")
        self.assertEqual(self.domains(), [])

    def test_domain_del_with_users_exits_2_and_keeps_it(self):
        self.ok("domain", "add", "example.test")
        self.ok("user", "add", "alice@example.test", "--password-stdin", input="pw-Long-9x\n")
        before = self.dump()
        p = self.assert_unchanged(before, "domain", "del", "example.test")
        self.assertIn("example.test", p.stderr)
        self.assertEqual(self.domains(), ["example.test"])

    def test_domain_del_with_only_a_catch_all_exits_2(self):
        self.ok("domain", "add", "example.test")
        self.ok("alias", "add", "@example.test", "bob@elsewhere.example")
        before = self.dump()
        self.assert_unchanged(before, "domain", "del", "example.test")

    def test_domain_del_of_unknown_domain_exits_2(self):
        self.ok("domain", "add", "example.test")
        before = self.dump()
        p = self.assert_unchanged(before, "domain", "del", "nowhere.test")
        self.assertIn("nowhere.test", p.stderr)

    def test_domain_bad_usage_exits_2(self):
        for args in (["domain"], ["domain", "add"], ["domain", "frob", "x.test"],
                     ["domain", "add", "a.test", "b.test"], ["domain", "list", "extra"]):
            with self.subTest(args=args):
                p = self.fails(*args)
                self.assertIn("unknown command 'frob'" if "frob" in args else "usage", p.stderr)


# --- users --------------------------------------------------------------------

class UserTest(KotakTest):
    def setUp(self):
        super().setUp()
        self.init()
        self.ok("domain", "add", "example.test")

    def test_user_add_password_stdin_stores_a_yescrypt_hash(self):
        t0 = int(time.time())
        p = self.ok("user", "add", "alice@example.test", "--password-stdin",
                    input="correct horse\n")
        self.assertEqual(p.stdout, "user alice@example.test added\n")
        h = self.user_hash("alice@example.test")
        self.assertTrue(h.startswith("$y$"), h)
        if crypt is not None:
            self.assertTrue(verify_hash("correct horse", h))
            self.assertFalse(verify_hash("correct horse\n", h))
            self.assertFalse(verify_hash("wrong", h))
        created = self.query("SELECT created FROM users")[0][0]
        self.assertLessEqual(abs(created - t0), 60)

    def test_user_add_password_stdin_without_newline_and_with_crlf(self):
        self.ok("user", "add", "a@example.test", "--password-stdin", input="s3cret-Pass")
        self.ok("user", "add", "b@example.test", "--password-stdin", input="s3cret-Pass\r\nmore\n")
        if crypt is not None:
            self.assertTrue(verify_hash("s3cret-Pass", self.user_hash("a@example.test")))
            self.assertTrue(verify_hash("s3cret-Pass", self.user_hash("b@example.test")))

    def test_user_add_without_terminal_or_password_stdin_exits_2(self):
        before = self.dump()
        p = self.assert_unchanged(before, "user", "add", "alice@example.test",
                                  stdin=subprocess.DEVNULL)
        self.assertIn("--password-stdin", p.stderr)
        self.assertEqual(self.users(), [])

    def test_user_add_with_empty_password_exits_2(self):
        before = self.dump()
        for data in ("", "\n", "\r\n"):
            with self.subTest(stdin=data):
                p = self.assert_unchanged(before, "user", "add", "alice@example.test",
                                          "--password-stdin", input=data)
                self.assertIn("empty", p.stderr)
        self.assertEqual(self.users(), [])

    def test_user_add_with_too_long_password_exits_2(self):
        before = self.dump()
        self.assert_unchanged(before, "user", "add", "alice@example.test", "--password-stdin",
                              input="x" * 5000 + "\n")

    def test_a_password_shorter_than_password_min_length_is_refused(self):
        before = self.dump()
        # Eight characters by default; counted as characters, not octets.
        for short in ("seven77", "\u00e4\u00f6\u00fc\u00df\u00e9\u00e8\u00ea"):
            with self.subTest(password=short):
                p = self.assert_unchanged(before, "user", "add", "alice@example.test",
                                          "--password-stdin", input=short + "\n")
                self.assertIn("has 7 characters", p.stderr)
                self.assertIn("password_min_length", p.stderr)
                self.assertNotIn(short, p.stderr)
        self.ok("user", "add", "alice@example.test", "--password-stdin",
                input="\u00e4\u00f6\u00fc\u00df\u00e9\u00e8\u00ea\u00e0\n")
        before = self.dump()
        self.assert_unchanged(before, "user", "passwd", "alice@example.test",
                              "--password-stdin", input="seven77\n")
        text = open(self.conf).read()
        self.assertIn("\npassword_min_length = 8 ", text)
        with open(self.conf, "w") as f:
            f.write(text.replace("\npassword_min_length = 8 ", "\npassword_min_length = 12 "))
        p = self.assert_unchanged(before, "user", "passwd", "alice@example.test",
                                  "--password-stdin", input="eleven-char\n")
        self.assertIn("at least 12", p.stderr)
        self.ok("user", "passwd", "alice@example.test", "--password-stdin",
                input="twelve-chars\n")

    def test_a_common_password_is_taken_with_a_warning(self):
        for address, password in (("alice@example.test", "Password123"),
                                  ("bob@example.test", "BOB@example.test"),
                                  ("carolina@example.test", "Carolina")):
            with self.subTest(password=password):
                p = self.kotak("user", "add", address, "--password-stdin",
                               input=password + "\n")
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn("warning", p.stderr)
                self.assertIn("attackers", p.stderr)
        p = self.ok("user", "add", "dave@example.test", "--password-stdin",
                    input="pw-Long-9x\n")
        self.assertEqual(p.stderr, "")

    def test_user_add_invalid_address_exits_2(self):
        before = self.dump()
        for address in ("alice", "alice@", "@example.test", "a b@example.test",
                        "alice@exa mple.test", "alice..x@example.test", "alice@-x.test",
                        "x" * 65 + "@example.test"):
            with self.subTest(address=address):
                p = self.assert_unchanged(before, "user", "add", address, "--password-stdin",
                                          input="pw-Long-9x\n")
                self.assertIn("address", p.stderr)

    def test_user_add_in_unknown_domain_exits_2_saying_domain_add(self):
        before = self.dump()
        p = self.assert_unchanged(before, "user", "add", "alice@nowhere.test",
                                  "--password-stdin", input="pw-Long-9x\n")
        self.assertIn("kotak domain add", p.stderr)
        self.assertIn("nowhere.test", p.stderr)

    def test_user_add_duplicate_exits_2(self):
        self.ok("user", "add", "alice@example.test", "--password-stdin", input="pw-Long-9x\n")
        before = self.dump()
        p = self.assert_unchanged(before, "user", "add", "alice@example.test",
                                  "--password-stdin", input="other-pw-2\n")
        self.assertIn("already exists", p.stderr)

    def test_user_add_duplicate_is_case_insensitive(self):
        p = self.ok("user", "add", "Alice@Example.TEST", "--password-stdin", input="pw-Long-9x\n")
        self.assertEqual(p.stdout, "user alice@example.test added\n")
        self.assertEqual(self.users(), ["alice@example.test"])
        before = self.dump()
        for address in ("alice@example.test", "ALICE@example.test", "aLiCe@EXAMPLE.test"):
            with self.subTest(address=address):
                self.assert_unchanged(before, "user", "add", address, "--password-stdin",
                                      input="pw-Long-9x\n")

    def test_user_add_over_an_alias_exits_2(self):
        self.ok("user", "add", "alice@example.test", "--password-stdin", input="pw-Long-9x\n")
        self.ok("alias", "add", "sales@example.test", "alice@example.test")
        before = self.dump()
        self.assert_unchanged(before, "user", "add", "sales@example.test", "--password-stdin",
                              input="pw-Long-9x\n")

    def test_user_passwd_changes_the_hash(self):
        self.ok("user", "add", "alice@example.test", "--password-stdin", input="old-pw-1234\n")
        old = self.user_hash("alice@example.test")
        p = self.ok("user", "passwd", "Alice@example.test", "--password-stdin", input="new-pw-5678\n")
        self.assertEqual(p.stdout, "user alice@example.test password changed\n")
        new = self.user_hash("alice@example.test")
        self.assertNotEqual(old, new)
        self.assertTrue(new.startswith("$y$"))
        if crypt is not None:
            self.assertTrue(verify_hash("new-pw-5678", new))
            self.assertFalse(verify_hash("old-pw-1234", new))

    def test_user_passwd_of_unknown_user_exits_2(self):
        before = self.dump()
        self.assert_unchanged(before, "user", "passwd", "nobody@example.test",
                              "--password-stdin", input="pw-Long-9x\n")

    def test_user_passwd_with_empty_password_keeps_the_old_hash(self):
        self.ok("user", "add", "alice@example.test", "--password-stdin", input="old-pw-1234\n")
        before = self.dump()
        self.assert_unchanged(before, "user", "passwd", "alice@example.test",
                              "--password-stdin", input="\n")

    def test_user_del_removes_the_user_and_the_maildrop(self):
        self.ok("user", "add", "alice@example.test", "--password-stdin", input="pw-Long-9x\n")
        self.ok("user", "add", "bob@example.test", "--password-stdin", input="pw-Long-9x\n")
        con = self.db()
        uid = con.execute("SELECT id FROM users WHERE local='alice'").fetchone()[0]
        con.execute("INSERT INTO messages(id, received, size) VALUES(1, 1700000000, 5)")
        con.execute("INSERT INTO chunks(message_id, seq, data) VALUES(1, 0, x'68656c6c6f')")
        con.execute("INSERT INTO maildrop(user_id, message_id, size, arrived)"
                    " VALUES(?, 1, 5, 1700000000)", (uid,))
        con.close()
        p = self.ok("user", "del", "ALICE@example.test")
        self.assertEqual(p.stdout, "user alice@example.test deleted\n")
        self.assertEqual(self.users(), ["bob@example.test"])
        self.assertEqual(self.query("SELECT count(*) FROM maildrop"), [(0,)])
        self.assertEqual(self.query("SELECT count(*) FROM messages"), [(0,)])
        self.assertEqual(self.query("SELECT count(*) FROM chunks"), [(0,)])

    def test_user_del_of_unknown_user_exits_2(self):
        before = self.dump()
        p = self.assert_unchanged(before, "user", "del", "nobody@example.test")
        self.assertIn("does not exist", p.stderr)
        self.assert_unchanged(before, "user", "del", "alice@nowhere.test")

    def test_user_list_all_and_by_domain(self):
        self.ok("domain", "add", "other.test")
        for a in ("bob@example.test", "alice@example.test", "carol@other.test"):
            self.ok("user", "add", a, "--password-stdin", input="pw-Long-9x\n")
        p = self.ok("user", "list")
        self.assertEqual(p.stdout, "alice@example.test\tmessages=0\tbytes=0\n"
                                   "bob@example.test\tmessages=0\tbytes=0\n"
                                   "carol@other.test\tmessages=0\tbytes=0\n")
        p = self.ok("user", "list", "other.test")
        self.assertEqual(p.stdout, "carol@other.test\tmessages=0\tbytes=0\n")
        p = self.ok("user", "list", "EXAMPLE.test")
        self.assertEqual(p.stdout, "alice@example.test\tmessages=0\tbytes=0\n"
                                   "bob@example.test\tmessages=0\tbytes=0\n")

    def test_user_list_of_unknown_domain_exits_2(self):
        p = self.fails("user", "list", "nowhere.test")
        self.assertIn("kotak domain add", p.stderr)
        self.fails("user", "list", "bad domain")

    def test_password_hash_accepts_bcrypt(self):
        if crypt is None or crypt.METHOD_BLOWFISH not in crypt.methods:
            self.skipTest("Python's crypt has no bcrypt here")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            h = crypt.crypt("pw", crypt.mksalt(crypt.METHOD_BLOWFISH))
        self.assertTrue(h.startswith("$2"))
        self.ok("user", "add", "alice@example.test", "--password-hash", h)
        self.assertEqual(self.user_hash("alice@example.test"), h)

    def test_password_hash_accepts_sha512(self):
        if crypt is None:
            self.skipTest("no crypt module")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            h = crypt.crypt("pw", crypt.mksalt(crypt.METHOD_SHA512))
        self.assertTrue(h.startswith("$6$"))
        self.ok("user", "add", "alice@example.test", "--password-hash", h)
        self.assertEqual(self.user_hash("alice@example.test"), h)
        # passwd takes one too.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            h2 = crypt.crypt("pw2", crypt.mksalt(crypt.METHOD_SHA512))
        self.ok("user", "passwd", "alice@example.test", "--password-hash", h2)
        self.assertEqual(self.user_hash("alice@example.test"), h2)

    def test_password_hash_refuses_md5_des_and_broken_hashes(self):
        hashes = ["$1$abcdefgh$abcdefghijklmnopqrstuv", "abJnggxhB/yWI", "$6$saltsalt$",
                  "$6$saltsalt", "plain-password", ""]
        if crypt is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                if crypt.METHOD_MD5 in crypt.methods:
                    hashes.append(crypt.crypt("pw", crypt.mksalt(crypt.METHOD_MD5)))
                if crypt.METHOD_CRYPT in crypt.methods:
                    hashes.append(crypt.crypt("pw", crypt.mksalt(crypt.METHOD_CRYPT)))
        before = self.dump()
        for h in hashes:
            with self.subTest(hash=h):
                p = self.assert_unchanged(before, "user", "add", "alice@example.test",
                                          "--password-hash", h)
                self.assertIn("hash", p.stderr)

    def test_password_stdin_and_password_hash_together_exit_2(self):
        before = self.dump()
        self.assert_unchanged(before, "user", "add", "alice@example.test", "--password-stdin",
                              "--password-hash", "$6$x$y", input="pw-Long-9x\n")

    def test_user_bad_usage_exits_2(self):
        for args in (["user"], ["user", "add"], ["user", "frob", "a@example.test"],
                     ["user", "del", "a@example.test", "extra"],
                     ["user", "add", "a@example.test", "--password-hash"],
                     ["user", "add", "a@example.test", "--bogus"]):
            with self.subTest(args=args):
                p = self.fails(*args, input="pw-Long-9x\n")
                self.assertIn("unknown command 'frob'" if "frob" in args else "usage", p.stderr)
        self.assertEqual(self.users(), [])


# --- postmaster ---------------------------------------------------------------

class PostmasterTest(KotakTest):
    """RFC 5321 4.5.1: postmaster@ of every local domain takes mail."""

    def setUp(self):
        super().setUp()
        self.init()
        self.ok("domain", "add", "example.test")

    def add_user(self, address):
        self.ok("user", "add", address, "--password-stdin", input="pw-Long-9x\n")

    def test_the_first_user_of_a_domain_becomes_its_postmaster(self):
        self.add_user("alice@example.test")
        self.add_user("bob@example.test")
        self.assertEqual(self.aliases(), [("postmaster@example.test", "alice@example.test")])
        p = self.ok("alias", "list")
        self.assertEqual(p.stdout, "postmaster@example.test\talice@example.test\n")

    def test_a_domain_with_a_postmaster_user_or_alias_keeps_it(self):
        self.add_user("postmaster@example.test")
        self.add_user("alice@example.test")
        self.assertEqual(self.aliases(), [])
        self.ok("domain", "add", "other.test")
        self.add_user("carol@other.test")
        self.ok("alias", "add", "sales@other.test", "carol@other.test")
        self.ok("alias", "del", "postmaster@other.test")
        self.ok("alias", "add", "postmaster@other.test", "sales@other.test")
        self.add_user("dave@other.test")
        self.assertEqual(self.aliases(), [("postmaster@other.test", "sales@other.test"),
                                          ("sales@other.test", "carol@other.test")])

    def test_an_older_store_gets_a_postmaster_for_each_domain_with_users(self):
        self.ok("domain", "add", "other.test")
        self.ok("domain", "add", "empty.test")
        self.ok("domain", "add", "own.test")
        for address in ("bob@example.test", "alice@example.test", "carol@other.test",
                        "postmaster@own.test", "erin@own.test"):
            self.add_user(address)
        # The store as the kotak before postmaster aliases left it: schema 2.
        db = sqlite3.connect(self.db_path)
        db.execute("DELETE FROM aliases")
        db.executescript(UNDO_SCHEMA_4_TO_8)
        db.execute("PRAGMA user_version = 2")
        db.commit()
        db.close()
        self.ok("domain", "add", "new.test")  # a write: the store is brought forward
        self.assertEqual(self.query("PRAGMA user_version"), [(SCHEMA_VERSION,)])
        self.assertEqual(self.aliases(), [("postmaster@example.test", "bob@example.test"),
                                          ("postmaster@other.test", "carol@other.test")])


# --- aliases ------------------------------------------------------------------

class AliasTest(KotakTest):
    def setUp(self):
        super().setUp()
        self.setup_users()
        # alice, the domain's first user, became its postmaster (PostmasterTest);
        # these tests start from a domain with no aliases at all.
        self.assertEqual(self.aliases(), [("postmaster@example.test", "alice@example.test")])
        self.ok("alias", "del", "postmaster@example.test")

    def test_alias_add_with_two_targets(self):
        p = self.ok("alias", "add", "sales@example.test", "alice@example.test,bob@example.test")
        self.assertEqual(p.stdout, "alias sales@example.test added\n")
        self.assertEqual(self.aliases(), [("sales@example.test", "alice@example.test"),
                                          ("sales@example.test", "bob@example.test")])

    def test_alias_add_with_an_outside_target_is_quiet_now_that_kotak_forwards(self):
        # A local and an outside target: kotak-smtpd delivers to both (the
        # outside copy through the queue, with an SRS sender); nothing to warn of.
        p = self.ok("alias", "add", "sales@example.test", "alice@example.test,bob@elsewhere.test")
        self.assertEqual(p.stdout, "alias sales@example.test added\n")
        self.assertEqual(p.stderr, "")
        self.assertEqual(self.aliases(), [("sales@example.test", "alice@example.test"),
                                          ("sales@example.test", "bob@elsewhere.test")])

    def test_alias_source_and_targets_are_folded(self):
        self.ok("alias", "add", "Sales@Example.TEST", "Alice@EXAMPLE.test, bob@example.test")
        self.assertEqual(self.aliases(), [("sales@example.test", "alice@example.test"),
                                          ("sales@example.test", "bob@example.test")])

    def test_alias_catch_all(self):
        p = self.ok("alias", "add", "@example.test", "alice@example.test")
        self.assertIn("added", p.stdout)
        rows = self.query("SELECT local, target FROM aliases")
        self.assertEqual(rows, [("", "alice@example.test")])
        p = self.ok("alias", "list")
        self.assertEqual(p.stdout, "@example.test\talice@example.test\n")

    def test_alias_list_output(self):
        self.ok("alias", "add", "sales@example.test", "bob@example.test,alice@example.test")
        self.ok("alias", "add", "@example.test", "bob@example.test")
        self.ok("alias", "add", "info@example.test", "sales@example.test")
        p = self.ok("alias", "list")
        self.assertEqual(p.stdout, "@example.test\tbob@example.test\n"
                                   "info@example.test\tsales@example.test\n"
                                   "sales@example.test\talice@example.test\n"
                                   "sales@example.test\tbob@example.test\n")

    def test_alias_list_of_no_aliases_prints_nothing(self):
        p = self.ok("alias", "list")
        self.assertEqual(p.stdout, "")

    def test_alias_del_one_target_then_the_source(self):
        self.ok("alias", "add", "sales@example.test", "alice@example.test,bob@example.test")
        self.ok("alias", "add", "info@example.test", "alice@example.test")
        p = self.ok("alias", "del", "sales@example.test", "alice@example.test")
        self.assertEqual(p.stdout, "alias sales@example.test deleted\n")
        self.assertEqual(self.aliases(), [("info@example.test", "alice@example.test"),
                                          ("sales@example.test", "bob@example.test")])
        self.ok("alias", "add", "sales@example.test", "alice@example.test")
        self.ok("alias", "del", "sales@example.test")
        self.assertEqual(self.aliases(), [("info@example.test", "alice@example.test")])

    def test_alias_del_catch_all(self):
        self.ok("alias", "add", "@example.test", "alice@example.test")
        self.ok("alias", "del", "@example.test")
        self.assertEqual(self.aliases(), [])

    def test_alias_del_of_unknown_alias_exits_2(self):
        self.ok("alias", "add", "sales@example.test", "alice@example.test")
        before = self.dump()
        self.assert_unchanged(before, "alias", "del", "nope@example.test")
        self.assert_unchanged(before, "alias", "del", "sales@example.test", "bob@example.test")
        self.assert_unchanged(before, "alias", "del", "sales@nowhere.test")
        p = self.assert_unchanged(before, "alias", "del", "sales@example.test",
                                  "alice@example.test,bob@example.test")
        self.assertIn("one TARGET", p.stderr)

    def test_alias_whose_source_is_a_user_exits_2(self):
        before = self.dump()
        p = self.assert_unchanged(before, "alias", "add", "alice@example.test",
                                  "bob@example.test")
        self.assertIn("alice@example.test", p.stderr)
        self.assert_unchanged(before, "alias", "add", "ALICE@example.test", "bob@example.test")

    def test_alias_target_that_is_no_local_user_exits_2_and_adds_nothing(self):
        before = self.dump()
        p = self.assert_unchanged(before, "alias", "add", "sales@example.test",
                                  "ghost@example.test")
        self.assertIn("sales@example.test", p.stderr)
        # All or nothing: the good first target is not added either.
        self.assert_unchanged(before, "alias", "add", "sales@example.test",
                              "alice@example.test,ghost@example.test")
        self.assertEqual(self.aliases(), [])

    def test_alias_to_an_external_address_is_accepted(self):
        self.ok("alias", "add", "sales@example.test", "bob@elsewhere.example")
        self.assertEqual(self.aliases(), [("sales@example.test", "bob@elsewhere.example")])

    def test_alias_in_unknown_domain_exits_2_saying_domain_add(self):
        before = self.dump()
        p = self.assert_unchanged(before, "alias", "add", "sales@nowhere.test",
                                  "alice@example.test")
        self.assertIn("kotak domain add", p.stderr)

    def test_alias_duplicate_pair_exits_2(self):
        self.ok("alias", "add", "sales@example.test", "alice@example.test")
        before = self.dump()
        self.assert_unchanged(before, "alias", "add", "sales@example.test", "alice@example.test")

    def test_alias_invalid_arguments_exit_2(self):
        before = self.dump()
        for args in (["alias", "add", "sales", "alice@example.test"],
                     ["alias", "add", "sales@example.test", "alice"],
                     ["alias", "add", "sales@example.test", "alice@example.test,,bob@x.test"],
                     ["alias", "add", "sales@example.test", "alice@example.test,"],
                     ["alias", "add", "@bad domain", "alice@example.test"],
                     ["alias", "add", "sales@example.test"],
                     ["alias"], ["alias", "frob", "a@example.test"]):
            with self.subTest(args=args):
                self.assert_unchanged(before, *args)


# --- mailbox and stats --------------------------------------------------------

class MailboxStatsTest(KotakTest):
    def setUp(self):
        super().setUp()
        self.setup_users()

    def add_mail(self, user, bodies, arrived=1700000000):
        """Inserts messages for user straight into the store; returns maildrop ids."""
        con = self.db()
        uid = con.execute("SELECT id FROM users WHERE local = ?", (user,)).fetchone()[0]
        ids = []
        for i, body in enumerate(bodies):
            cur = con.execute("INSERT INTO messages(received, size) VALUES(?, ?)",
                              (arrived + i, len(body)))
            mid = cur.lastrowid
            con.execute("INSERT INTO chunks(message_id, seq, data) VALUES(?, 0, ?)",
                        (mid, body))
            cur = con.execute("INSERT INTO maildrop(user_id, message_id, size, arrived)"
                              " VALUES(?, ?, ?, ?)", (uid, mid, len(body), arrived + i))
            ids.append(cur.lastrowid)
        con.close()
        return ids

    def test_mailbox_of_an_empty_maildrop(self):
        p = self.ok("mailbox", "alice@example.test")
        self.assertEqual(p.stdout, "alice@example.test: 0 messages, 0 octets\n")

    def test_mailbox_of_unknown_user_exits_2(self):
        p = self.fails("mailbox", "nobody@example.test")
        self.assertIn("nobody@example.test", p.stderr)
        self.fails("mailbox", "alice@nowhere.test")
        self.fails("mailbox", "not-an-address")
        self.fails("mailbox")

    def test_mailbox_lists_size_and_uidl_of_each_message_and_the_total(self):
        bodies = [b"Subject: one\r\n\r\nhello\r\n", b"Subject: two\r\n\r\n" + b"x" * 1000 + b"\r\n"]
        ids = self.add_mail("alice", bodies)
        self.add_mail("bob", [b"not alice's\r\n"])
        prefix = self.query("SELECT value FROM meta WHERE key = 'uidl_prefix'")[0][0]
        p = self.ok("mailbox", "Alice@example.test")
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 3, p.stdout)
        for n, (line, mid, body) in enumerate(zip(lines, ids, bodies), 1):
            fields = line.split("\t")
            self.assertEqual(fields[0], str(n))
            self.assertEqual(fields[1], f"{prefix}.{mid}")
            self.assertEqual(fields[2], str(len(body)))
            self.assertEqual(fields[3], time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                      time.gmtime(1700000000 + n - 1)))
        total = sum(len(b) for b in bodies)
        self.assertEqual(lines[2], f"alice@example.test: 2 messages, {total} octets")
        # UIDLs are unique.
        self.assertEqual(len({line.split("\t")[1] for line in lines[:2]}), 2)
        p = self.ok("mailbox", "bob@example.test")
        self.assertTrue(p.stdout.endswith("bob@example.test: 1 message, 13 octets\n"), p.stdout)
        p = self.ok("user", "list")
        self.assertIn(f"alice@example.test\tmessages=2\tbytes={total}\n", p.stdout)

    def test_stats_output_lines(self):
        self.ok("domain", "add", "other.test")
        self.ok("alias", "add", "sales@example.test", "alice@example.test,bob@example.test")
        self.ok("alias", "add", "@example.test", "alice@example.test")
        self.add_mail("alice", [b"12345", b"1234567890"])
        p = self.ok("stats")
        lines = p.stdout.splitlines()
        values = dict(line.split(": ", 1) for line in lines)
        self.assertEqual([line.split(":")[0] for line in lines],
                         ["domains", "users", "aliases", "messages", "maildrop entries",
                          "message bytes", "store bytes"])
        self.assertEqual(values["domains"], "2")
        self.assertEqual(values["users"], "2")
        # three sources: sales@, the catch-all and postmaster@ (the first user)
        self.assertEqual(values["aliases"], "3")
        self.assertEqual(values["messages"], "2")
        self.assertEqual(values["maildrop entries"], "2")
        self.assertEqual(values["message bytes"], "15")
        self.assertGreater(int(values["store bytes"]), 0)

    def test_stats_of_an_empty_store(self):
        self.ok("init", "--hostname", HOST, "--force")
        p = self.ok("stats")
        self.assertTrue(p.stdout.startswith("domains: 0\nusers: 0\naliases: 0\nmessages: 0\n"
                                            "maildrop entries: 0\nmessage bytes: 0\n"),
                        p.stdout)

    def test_stats_with_arguments_exits_2(self):
        self.fails("stats", "extra")


# --- backup -------------------------------------------------------------------

class BackupTest(KotakTest):
    def setUp(self):
        super().setUp()
        self.setup_users()
        self.ok("alias", "add", "sales@example.test", "alice@example.test")
        self.dest = os.path.join(self.dir, "backup.db")

    def assert_valid_copy(self, path):
        self.assertEqual(self.query("PRAGMA integrity_check", path=path), [("ok",)])
        self.assertEqual(self.query("PRAGMA user_version", path=path), [(SCHEMA_VERSION,)])
        self.assertEqual(self.domains(path=path), self.domains())
        self.assertEqual(self.users(path=path), self.users())
        self.assertEqual(
            self.query("SELECT * FROM users ORDER BY id", path=path),
            self.query("SELECT * FROM users ORDER BY id"))
        # The copy is made in a folder of its own beside path, gone after.
        folder, name = os.path.split(path)
        self.assertEqual([e for e in os.listdir(folder)
                          if e.startswith(name + ".tmp") and not os.path.islink(
                              os.path.join(folder, e))], [])

    def test_backup_writes_a_valid_sqlite_copy(self):
        p = self.ok("backup", self.dest)
        self.assertIn(self.dest, p.stdout)
        with open(self.dest, "rb") as f:
            self.assertEqual(f.read(16), b"SQLite format 3\x00")
        self.assert_valid_copy(self.dest)
        self.assertEqual(self.users(path=self.dest), ["alice@example.test", "bob@example.test"])

    def test_backup_refuses_to_overwrite_without_force(self):
        with open(self.dest, "w") as f:
            f.write("precious\n")
        before = self.dump()
        p = self.assert_unchanged(before, "backup", self.dest)
        self.assertIn("--force", p.stderr)
        with open(self.dest) as f:
            self.assertEqual(f.read(), "precious\n")

    def test_backup_force_overwrites(self):
        with open(self.dest, "w") as f:
            f.write("precious\n")
        self.ok("backup", self.dest, "--force")
        self.assert_valid_copy(self.dest)
        self.ok("domain", "add", "later.test")
        self.ok("backup", "--force", self.dest)
        self.assertIn("later.test", self.domains(path=self.dest))

    def test_backup_during_an_open_write_transaction_succeeds(self):
        con = self.db()
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO domains(name) VALUES('pending.test')")
        try:
            t0 = time.monotonic()
            self.ok("backup", self.dest)
            self.assertLess(time.monotonic() - t0, 10)
        finally:
            con.execute("ROLLBACK")
        self.assert_valid_copy(self.dest)
        self.assertNotIn("pending.test", self.domains(path=self.dest))

    def test_backup_is_readable_by_its_owner_alone_whatever_the_umask(self):
        old = os.umask(0o022)
        try:
            self.ok("backup", self.dest)
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(self.dest).st_mode), 0o600)
        self.assert_valid_copy(self.dest)

    def test_backup_never_writes_through_a_link_left_at_its_temporary_name(self):
        victim = os.path.join(self.dir, "victim")
        with open(victim, "w") as f:
            f.write("not yours\n")
        os.symlink(victim, self.dest + ".tmp")
        self.ok("backup", self.dest)
        with open(victim) as f:
            self.assertEqual(f.read(), "not yours\n")
        self.assertFalse(os.path.islink(self.dest))
        self.assert_valid_copy(self.dest)

    def test_backup_into_a_missing_folder_exits_2(self):
        self.fails("backup", os.path.join(self.dir, "no", "such", "dir", "b.db"))

    def test_backup_bad_usage_exits_2(self):
        self.fails("backup")
        self.fails("backup", "a.db", "b.db")


class QueueTest(KotakTest):
    """kotak queue over a store whose queue the test fills itself (white-box:
    the daemon's side of queueing is tested with the daemon)."""

    def setUp(self):
        super().setUp()
        self.setup_users()

    def queue_message(self, sender, rcpts, created=1700000000):
        """A queued message: rcpts is [(address, state, attempts, next_try, last_reply)]."""
        con = self.db()
        con.execute("INSERT INTO messages(received, size, head) VALUES(?, 5, x'6869210d0a')",
                    (created,))
        mid = con.execute("SELECT last_insert_rowid()").fetchone()[0]
        con.execute("INSERT INTO queue(message_id, sender, created) VALUES(?, ?, ?)",
                    (mid, sender, created))
        qid = con.execute("SELECT last_insert_rowid()").fetchone()[0]
        for address, state, attempts, next_try, reply in rcpts:
            con.execute("INSERT INTO queue_rcpt(queue_id, address, domain, state, attempts,"
                        " next_try, last_reply) VALUES(?, ?, ?, ?, ?, ?, ?)",
                        (qid, address, address.split("@")[1], state, attempts, next_try, reply))
            rid = con.execute("SELECT last_insert_rowid()").fetchone()[0]
            for i in range(attempts):
                con.execute("INSERT INTO queue_log(rcpt_id, at, host, ip, code, reply)"
                            " VALUES(?, ?, 'mx.remote.test', '192.0.2.7', 451, ?)",
                            (rid, created + 60 * i, reply))
        return qid

    def test_an_empty_queue(self):
        self.assertEqual(self.ok("queue", "list").stdout, "0 messages, 0 recipients queued\n")

    def test_list_shows_each_queued_recipient_with_its_last_answer(self):
        q1 = self.queue_message("alice@example.test", [
            ("carol@remote.test", 0, 2, 1700000600, "451 4.3.0 try later"),
            ("dave@remote.test", 1, 1, 1700000000, "250 2.0.0 ok")])
        q2 = self.queue_message("", [("erin@other.test", 0, 0, 1700000000, "")])
        out = self.ok("queue", "list").stdout.splitlines()
        self.assertEqual(out, [
            f"{q1}\t<alice@example.test>\t<carol@remote.test>\t2\t2023-11-14T22:23:20Z"
            "\t451 4.3.0 try later",
            f"{q2}\t<>\t<erin@other.test>\t0\t2023-11-14T22:13:20Z\t-",
            "2 messages, 2 recipients queued"])

    def test_show_gives_the_envelope_each_recipient_and_its_history(self):
        qid = self.queue_message("alice@example.test", [
            ("carol@remote.test", 0, 2, 1700000600, "451 4.3.0 try later"),
            ("dave@remote.test", 1, 1, 1700000000, "250 2.0.0 ok")])
        out = self.ok("queue", "show", str(qid)).stdout
        self.assertIn(f"id: {qid}\nfrom: <alice@example.test>\n", out)
        self.assertIn("size: 5 octets\n", out)
        self.assertIn("  <carol@remote.test>  queued, 2 attempts, next try 2023-11-14T22:23:20Z\n"
                      "    2023-11-14T22:13:20Z  mx.remote.test [192.0.2.7]  451 4.3.0 try later\n"
                      "    2023-11-14T22:14:20Z  mx.remote.test [192.0.2.7]  451 4.3.0 try later\n",
                      out)
        self.assertIn("  <dave@remote.test>  delivered, 1 attempt\n", out)

    def test_retry_makes_an_entry_or_all_due_now(self):
        q1 = self.queue_message("alice@example.test",
                                [("carol@remote.test", 0, 1, 1 << 40, "451 4.3.0 later")])
        self.queue_message("bob@example.test",
                           [("dave@remote.test", 0, 1, 1 << 40, "451 4.3.0 later"),
                            ("erin@remote.test", 2, 1, 1 << 40, "550 5.1.1 no")])
        t0 = int(time.time())
        self.assertEqual(self.ok("queue", "retry", str(q1)).stdout, "1 recipient due now\n")
        due = self.query("SELECT address FROM queue_rcpt WHERE next_try <= ?", int(time.time()))
        self.assertEqual(due, [("carol@remote.test",)])
        self.assertEqual(self.ok("queue", "retry").stdout, "2 recipients due now\n")
        nexts = [r[0] for r in self.query("SELECT next_try FROM queue_rcpt WHERE state = 0")]
        self.assertTrue(all(t0 <= t <= time.time() for t in nexts), nexts)

    def test_drop_marks_the_queued_recipients_of_an_entry_for_kotak_smtpd_to_bounce(self):
        q1 = self.queue_message("alice@example.test",
                                [("carol@remote.test", 0, 1, 1 << 40, "451 4.3.0 later"),
                                 ("dave@remote.test", 1, 1, 1 << 40, "250 ok")])
        q2 = self.queue_message("bob@example.test", [("erin@remote.test", 0, 1, 1 << 40, "")])
        out = self.ok("queue", "drop", str(q1)).stdout
        self.assertEqual(out, "1 recipient dropped; kotak-smtpd bounces them to the sender\n")
        rows = self.query("SELECT address, dropped, next_try <= ? FROM queue_rcpt ORDER BY id",
                          int(time.time()))
        self.assertEqual(rows, [("carol@remote.test", 1, 1), ("dave@remote.test", 0, 0),
                                ("erin@remote.test", 0, 0)])
        self.assertIn("dropped", self.ok("queue", "show", str(q1)).stdout)
        self.assertIn(f"{q1}\t<alice@example.test>\t<carol@remote.test>\t1\tdropped\t",
                      self.ok("queue", "list").stdout)
        self.assertNotIn("dropped", self.ok("queue", "show", str(q2)).stdout)

    def test_a_time_past_what_a_calendar_holds_is_shown_not_crashed_on(self):
        qid = self.queue_message("alice@example.test",
                                 [("carol@remote.test", 0, 0, (1 << 63) - 1, "")])
        out = self.ok("queue", "list").stdout
        self.assertIn(f"{qid}\t<alice@example.test>\t<carol@remote.test>\t0\t@{(1 << 63) - 1}\t",
                      out)
        self.assertIn(f"next try @{(1 << 63) - 1}", self.ok("queue", "show", str(qid)).stdout)

    def test_mistakes_exit_2_with_one_line(self):
        self.queue_message("alice@example.test", [("carol@remote.test", 0, 0, 1, "")])
        before = self.dump()
        for args in (("queue",), ("queue", "lst"), ("queue", "show"), ("queue", "show", "x1"),
                     ("queue", "show", "0"), ("queue", "show", "999"), ("queue", "retry", "999"),
                     ("queue", "retry", "-3"), ("queue", "list", "extra"),
                     ("queue", "retry", "1", "2"), ("queue", "drop"), ("queue", "drop", "999"),
                     ("queue", "drop", "0"), ("queue", "drop", "1", "2")):
            self.fails(*args)
        self.assertEqual(self.dump(), before)
        self.assertIn("no message 999", self.fails("queue", "show", "999").stderr)


# --- clientconfig -------------------------------------------------------------

class ClientConfigTest(KotakTest):
    """kotak clientconfig DOMAIN: the three files clients read, and the DNS records."""

    FILES = ("config-v1.1.xml", "autodiscover.xml", "example.test.mobileconfig")

    def setUp(self):
        super().setUp()
        self.setup_users()
        self.out = os.path.join(self.dir, "out")
        os.mkdir(self.out)

    def edit_conf(self, old, new):
        with open(self.conf) as f:
            text = f.read()
        self.assertIn(old, text)
        with open(self.conf, "w") as f:
            f.write(text.replace(old, new))

    def read(self, name):
        with open(os.path.join(self.out, name), "rb") as f:
            return f.read()

    def test_writes_the_three_files_with_the_configured_ports(self):
        import plistlib
        import xml.etree.ElementTree as ET
        self.edit_conf("listen = 127.0.0.1:2995", "listen = 127.0.0.1:3995, [::1]:4995")
        p = self.ok("clientconfig", "example.test", "--dir", self.out)
        self.assertEqual(sorted(os.listdir(self.out)), sorted(self.FILES))
        for name in self.FILES:
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.out, name)).st_mode), 0o644,
                             f"{name}: public, whatever the umask")
        tb = ET.fromstring(self.read("config-v1.1.xml"))
        inc = [(e.get("type"), e.findtext("hostname"), e.findtext("port"), e.findtext("socketType"),
                e.findtext("username"), e.findtext("authentication"),
                e.findtext("pop3/leaveMessagesOnServer")) for e in tb.iter("incomingServer")]
        self.assertEqual(inc, [
            ("pop3", HOST, "3995", "SSL", "%EMAILADDRESS%", "password-cleartext", "true"),
            ("pop3", HOST, "2110", "STARTTLS", "%EMAILADDRESS%", "password-cleartext", "true")])
        out = [(e.findtext("port"), e.findtext("socketType")) for e in tb.iter("outgoingServer")]
        self.assertEqual(out, [("2465", "SSL"), ("2587", "STARTTLS")])
        ns = {"o": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}
        ad = ET.fromstring(self.read("autodiscover.xml"))
        protos = {e.findtext("o:Type", namespaces=ns): (e.findtext("o:Port", namespaces=ns),
                                                          e.findtext("o:SSL", namespaces=ns),
                                                          e.findtext("o:SPA", namespaces=ns))
                  for e in ad.iter("{%s}Protocol" % ns["o"])}
        self.assertEqual(protos, {"POP3": ("3995", "on", "off"), "SMTP": ("2465", "on", "off")})
        mc = plistlib.loads(self.read("example.test.mobileconfig"))
        mail = mc["PayloadContent"][0]
        self.assertEqual((mail["PayloadType"], mail["EmailAccountType"]),
                         ("com.apple.mail.managed", "EmailTypePOP"))
        self.assertEqual((mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"],
                          mail["OutgoingMailServerPortNumber"]), (HOST, 3995, 2465))
        self.assertNotIn("EmailAddress", mail, "no address: the device asks for it")
        # The DNS records, fully qualified, on stdout.
        lines = [l for l in p.stdout.splitlines() if l and not l.startswith(";")]
        for want in ("example.test. MX 10 mail.example.test.",
                     'example.test. TXT "v=spf1 mx -all"',
                     '_dmarc.example.test. TXT "v=DMARC1; p=none"',
                     "_submissions._tcp.example.test. SRV 0 1 2465 mail.example.test.",
                     "_submission._tcp.example.test. SRV 10 1 2587 mail.example.test.",
                     "_pop3s._tcp.example.test. SRV 0 1 3995 mail.example.test.",
                     "_pop3._tcp.example.test. SRV 10 1 2110 mail.example.test.",
                     "_imap._tcp.example.test. SRV 0 0 0 .",
                     "_imaps._tcp.example.test. SRV 0 0 0 .",
                     "autoconfig.example.test. CNAME mail.example.test."):
            self.assertIn(want, lines)

    def test_the_same_input_gives_the_same_files(self):
        self.ok("clientconfig", "example.test", "--dir", self.out)
        first = {name: self.read(name) for name in self.FILES}
        self.ok("clientconfig", "example.test", "--dir", self.out, "--force")
        self.assertEqual({name: self.read(name) for name in self.FILES}, first)

    def test_a_listener_that_is_off_is_left_out(self):
        self.edit_conf("listen = 127.0.0.1:2465", "listen =")
        self.edit_conf("listen = 127.0.0.1:2080", "listen =")
        p = self.ok("clientconfig", "example.test", "--dir", self.out)
        text = self.read("config-v1.1.xml").decode()
        self.assertNotIn("2465", text)
        self.assertIn("<port>2587</port>", text)
        self.assertIn("_submissions._tcp.example.test. SRV 0 0 0 .", p.stdout)
        self.assertNotIn("autoconfig.example.test", p.stdout, "no [web]: no autoconfig names")

    def test_the_dkim_record_is_printed_when_there_is_a_key(self):
        self.ok("dkim", "keygen", "example.test")
        p = self.ok("clientconfig", "example.test", "--dir", self.out)
        self.assertRegex(p.stdout, r'(?m)^kotak\._domainkey\.example\.test\. TXT "v=DKIM1; '
                                   r'k=rsa; " "p=[A-Za-z0-9+/=]+')
        self.assertIn('_dmarc.example.test. TXT "v=DMARC1; p=quarantine"', p.stdout)

    def test_mistakes_exit_2_with_one_line_and_write_nothing(self):
        p = self.fails("clientconfig", "other.test", "--dir", self.out)
        self.assertIn("other.test is not local", p.stderr)
        self.fails("clientconfig", "not a domain", "--dir", self.out)
        self.fails("clientconfig", "example.test", "--dir", os.path.join(self.dir, "none"))
        self.fails("clientconfig", "example.test", "--bogus")
        self.fails("clientconfig")
        self.assertEqual(os.listdir(self.out), [])
        with open(os.path.join(self.out, "autodiscover.xml"), "w") as f:
            f.write("mine")
        p = self.fails("clientconfig", "example.test", "--dir", self.out)
        self.assertIn("--force", p.stderr)
        self.assertEqual(os.listdir(self.out), ["autodiscover.xml"], "all three or none")
        self.assertEqual(self.read("autodiscover.xml"), b"mine")
        self.edit_conf("listen = 127.0.0.1:2995", "listen =")
        self.edit_conf("listen = 127.0.0.1:2110", "listen =")
        self.assertIn("POP3", self.fails("clientconfig", "example.test", "--dir", self.out,
                                         "--force").stderr)

    def test_a_file_that_cannot_be_named_leaves_none_of_the_three(self):
        # A domain of 253 octets is valid, but "DOMAIN.mobileconfig" is longer
        # than a file name may be (255): the first two files have their names
        # by then, and must go again. Without the take-back they stayed.
        long = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 56, "test"])
        self.assertEqual(len(long), 253)
        self.ok("domain", "add", long)
        p = self.fails("clientconfig", long, "--dir", self.out)
        self.assertIn("none of the three files was written", p.stderr)
        self.assertIn("name too long", p.stderr.lower())
        self.assertEqual(os.listdir(self.out), [], "all three or none, and no temporary file")

    def test_a_third_file_there_already_leaves_no_first_or_second(self):
        with open(os.path.join(self.out, "example.test.mobileconfig"), "w") as f:
            f.write("mine")
        p = self.fails("clientconfig", "example.test", "--dir", self.out)
        self.assertIn("example.test.mobileconfig exists", p.stderr)
        self.assertEqual(os.listdir(self.out), ["example.test.mobileconfig"])
        self.assertEqual(self.read("example.test.mobileconfig"), b"mine")

    def test_an_unwritable_folder_exits_2(self):
        target = self.out
        if os.geteuid() == 0:
            target = "/proc"  # root writes anywhere but there
        else:
            os.chmod(self.out, 0o500)
            self.addCleanup(os.chmod, self.out, 0o700)
        p = self.fails("clientconfig", "example.test", "--dir", target)
        self.assertIn("cannot write into " + target, p.stderr)

    def test_help(self):
        p = self.ok("clientconfig", "--help")
        self.assertIn("kotak clientconfig DOMAIN [--dir DIR] [--force]", p.stdout)
        self.assertEqual(self.ok("help", "clientconfig").stdout, p.stdout)


# --- locks and permissions ----------------------------------------------------

class LockTest(KotakTest):
    def setUp(self):
        super().setUp()
        self.init()
        self.ok("domain", "add", "example.test")

    def test_locked_store_exits_2_saying_locked_within_the_busy_timeout(self):
        con = self.db()
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO domains(name) VALUES('held.test')")
        try:
            t0 = time.monotonic()
            p = self.fails("domain", "add", "x.test")
            elapsed = time.monotonic() - t0
        finally:
            con.execute("ROLLBACK")
        self.assertIn("locked", p.stderr)
        self.assertLess(elapsed, 10)
        self.assertGreaterEqual(elapsed, 4.0, "kotak did not wait for the busy timeout")
        self.assertEqual(self.domains(), ["example.test"])

    def test_reading_commands_work_while_a_writer_holds_the_lock(self):
        con = self.db()
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO domains(name) VALUES('held.test')")
        try:
            t0 = time.monotonic()
            p = self.ok("domain", "list")
            self.ok("stats")
            self.assertLess(time.monotonic() - t0, 4)
        finally:
            con.execute("ROLLBACK")
        self.assertEqual(p.stdout, "example.test\tusers=0\taliases=0\n")


class ReadOnlyTest(KotakTest):
    """The store as seen by a user who may read it but not write it."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root to run kotak as nobody")
        self.init()
        self.ok("domain", "add", "example.test")
        # A folder nobody can enter and read but not write; /tmp/... from
        # TemporaryDirectory is 0700, so a separate one with mode 0755.
        self.ro = tempfile.mkdtemp(prefix="kotak-ro-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.ro, True)
        os.chmod(self.ro, 0o755)
        self.bin = os.path.join(self.ro, "kotak")
        shutil.copy2(KOTAK, self.bin)
        os.chmod(self.bin, 0o755)
        self.ro_conf = os.path.join(self.ro, "kotak.conf")
        with open(self.ro_conf, "w") as f:
            f.write(f"[server]\nhostname = {HOST}\ndata_dir = {self.ro}\n")
        os.chmod(self.ro_conf, 0o644)
        self.ro_db = os.path.join(self.ro, "kotak.db")
        shutil.copy2(self.db_path, self.ro_db)
        os.chmod(self.ro_db, 0o644)

    def as_nobody(self, *args):
        if shutil.which("setpriv"):
            prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
            preexec = None
        else:
            prefix = []

            def preexec():
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
        argv = prefix + [self.bin, "-c", self.ro_conf] + list(args)
        return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              cwd=self.ro, env=clean_env(), timeout=TIMEOUT,
                              preexec_fn=preexec)

    def check_read_only(self):
        before = self.dump(path=self.ro_db)
        p = self.as_nobody("domain", "add", "x.test")
        self.assert_one_error_line(p, ("domain", "add"))
        self.assertIn("read-only", p.stderr)
        p = self.as_nobody("user", "add", "alice@example.test", "--password-hash",
                           "$6$saltsalt$" + "a" * 86)
        self.assert_one_error_line(p, ("user", "add"))
        self.assertEqual(self.dump(path=self.ro_db), before)
        p = self.as_nobody("domain", "list")
        self.assertEqual((p.returncode, p.stderr), (0, ""), "domain list fails on a read-only store")
        self.assertEqual(p.stdout, "example.test\tusers=0\taliases=0\n")
        p = self.as_nobody("stats")
        self.assertEqual((p.returncode, p.stderr), (0, ""), "stats fails on a read-only store")
        self.assertIn("domains: 1\n", p.stdout)

    def test_read_only_store_refuses_writes_but_lists_while_in_use(self):
        # A root connection keeps -wal and -shm in place, as a running daemon does.
        con = self.db(path=self.ro_db)
        con.execute("SELECT count(*) FROM domains").fetchall()
        for name in os.listdir(self.ro):
            os.chmod(os.path.join(self.ro, name), 0o755 if name == "kotak" else 0o644)
        self.check_read_only()

    def test_read_only_store_refuses_writes_but_lists_when_closed(self):
        # Only kotak.db, as left by a clean shutdown: no -wal, no -shm.
        self.assertEqual(sorted(os.listdir(self.ro)), ["kotak", "kotak.conf", "kotak.db"])
        self.check_read_only()


# --- quotas --------------------------------------------------------------------

class QuotaTest(KotakTest):
    """kotak user add/set --quota, kotak domain add/set --quota, and what list shows."""

    def setUp(self):
        super().setUp()
        self.setup_users()

    def quotas(self):
        return dict(self.query("SELECT u.local, u.quota FROM users u ORDER BY 1"))

    def domain_quota(self, name="example.test"):
        return self.query("SELECT quota FROM domains WHERE name = ?", name)[0][0]

    def add_mail(self, user, size):
        """One message of size octets into user's maildrop, as delivery stores it."""
        con = self.db()
        uid = con.execute("SELECT id FROM users WHERE local = ?", (user,)).fetchone()[0]
        mid = con.execute("INSERT INTO messages(received, size, head) VALUES(1700000000, ?, ?)",
                          (size, b"x" * size)).lastrowid
        con.execute("INSERT INTO maildrop(user_id, message_id, size, arrived)"
                    " VALUES(?, ?, ?, 1700000000)", (uid, mid, size))
        con.close()

    def test_user_set_quota_takes_the_config_sizes(self):
        for size, octets in (("500M", 500 << 20), ("2G", 2 << 30), ("2g", 2 << 30),
                             ("64K", 64 << 10), ("12345", 12345)):
            with self.subTest(size=size):
                p = self.ok("user", "set", "alice@example.test", "--quota", size)
                self.assertIn(str(octets), p.stdout)
                self.assertEqual(self.quotas()["alice"], octets)
        self.assertIsNone(self.quotas()["bob"], "bob untouched")

    def test_none_or_0_clears_the_users_quota(self):
        for clear in ("none", "0", "NONE"):
            with self.subTest(clear=clear):
                self.ok("user", "set", "alice@example.test", "--quota", "1G")
                self.ok("user", "set", "Alice@Example.test", "--quota", clear)
                self.assertIsNone(self.quotas()["alice"])

    def test_user_add_with_a_quota(self):
        self.ok("user", "add", "carol@example.test", "--password-stdin", "--quota", "2G",
                input="pw-carol-long\n")
        self.assertEqual(self.quotas()["carol"], 2 << 30)
        self.ok("user", "add", "dave@example.test", "--quota", "10M", "--password-stdin",
                input="pw-dave-long\n")
        self.assertEqual(self.quotas()["dave"], 10 << 20)

    def test_domain_default(self):
        self.ok("domain", "set", "example.test", "--quota", "1G")
        self.assertEqual(self.domain_quota(), 1 << 30)
        self.ok("domain", "add", "other.test", "--quota", "300M")
        self.assertEqual(self.domain_quota("other.test"), 300 << 20)
        p = self.ok("domain", "list")
        self.assertEqual(p.stdout, f"example.test\tusers=2\taliases=1\tquota={1 << 30}\n"
                                   f"other.test\tusers=0\taliases=0\tquota={300 << 20}\n")
        self.ok("domain", "set", "example.test", "--quota", "none")
        self.assertIsNone(self.domain_quota())
        p = self.ok("domain", "list")
        self.assertTrue(p.stdout.startswith("example.test\tusers=2\taliases=1\n"), p.stdout)

    def test_user_list_shows_usage_and_the_quota_that_applies(self):
        self.add_mail("alice", 3000)
        self.ok("user", "set", "alice@example.test", "--quota", "10K")
        p = self.ok("user", "list")
        self.assertEqual(p.stdout, "alice@example.test\tmessages=1\tbytes=3000\tquota=10240"
                                   "\tfull=29%\n"
                                   "bob@example.test\tmessages=0\tbytes=0\n")
        self.ok("domain", "set", "example.test", "--quota", "1M")
        p = self.ok("user", "list", "example.test")
        self.assertIn("bob@example.test\tmessages=0\tbytes=0\tquota=1048576\tfull=0%\n",
                      p.stdout, "bob gets the domain's default")
        self.assertIn("alice@example.test\tmessages=1\tbytes=3000\tquota=10240\t", p.stdout,
                      "alice keeps her own")
        # Every column stays key=value after the address: a script's split still works.
        for line in p.stdout.splitlines():
            fields = line.split("\t")
            self.assertTrue(all("=" in f for f in fields[1:]), line)

    def test_usage_follows_deletion(self):
        self.add_mail("alice", 1000)
        self.add_mail("alice", 500)
        self.assertEqual(self.query("SELECT used FROM users WHERE local = 'alice'")[0][0], 1500)
        con = self.db()
        con.execute("DELETE FROM maildrop WHERE size = 1000")
        con.close()
        self.assertEqual(self.query("SELECT used FROM users WHERE local = 'alice'")[0][0], 500)
        self.ok("user", "set", "alice@example.test", "--quota", "1K")
        self.assertIn("alice@example.test\tmessages=1\tbytes=500\tquota=1024\tfull=48%\n",
                      self.ok("user", "list").stdout)

    def test_mistakes_are_one_line_exit_2_and_change_nothing(self):
        before = self.dump()
        for args in (["user", "set", "alice@example.test", "--quota", "12X"],
                     ["user", "set", "alice@example.test", "--quota", "-1"],
                     ["user", "set", "alice@example.test", "--quota", ""],
                     ["user", "set", "alice@example.test", "--quota", "99999999G"],
                     ["user", "set", "alice@example.test", "--quota"],
                     ["user", "set", "alice@example.test"],
                     ["user", "set", "alice@example.test", "--size", "1G"],
                     ["user", "set", "nobody@example.test", "--quota", "1G"],
                     ["user", "set", "not-an-address", "--quota", "1G"],
                     ["user", "passwd", "alice@example.test", "--quota", "1G"],
                     ["user", "add", "carol@example.test", "--password-stdin", "--quota", "x"],
                     ["domain", "set", "nowhere.test", "--quota", "1G"],
                     ["domain", "set", "example.test", "--quota", "lots"],
                     ["domain", "set", "example.test"],
                     ["domain", "add", "other.test", "--quota", "1Q"],
                     ["domain", "del", "example.test", "--quota", "1G"]):
            with self.subTest(args=args):
                p = self.assert_unchanged(before, *args, input="pw-carol-long\n")
                if "--quota" in args and len(args) > args.index("--quota") + 1 and \
                        args[-1] not in ("1G",):
                    self.assertIn("--quota", p.stderr)

    def test_help_names_the_option(self):
        for cmd in ("user", "domain"):
            with self.subTest(cmd=cmd):
                p = self.kotak("help", cmd, conf=False)
                self.assertRegex(p.stdout, r"\n  --quota SIZE +")
                self.assertIn(f"kotak {cmd} set ", p.stdout)


# --- help, version, unknown commands ------------------------------------------

class HelpTest(KotakTest):
    def test_help_for_each_command_exits_0_with_usage_on_stdout(self):
        # No config anywhere: help must not need one.
        for cmd in COMMANDS:
            for flag in ("--help", "-h"):
                with self.subTest(cmd=cmd, flag=flag):
                    p = self.kotak(cmd, flag, conf=False, cwd=self.dir)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertEqual(p.stderr, "")
                    self.assertTrue(p.stdout.startswith("usage: kotak"), p.stdout)
                    self.assertIn(cmd, p.stdout)
        self.assertEqual(os.listdir(self.dir), [])

    def test_help_after_a_verb_exits_0(self):
        for args in (["domain", "add", "--help"], ["user", "add", "a@b.test", "--help"],
                     ["alias", "del", "--help"]):
            with self.subTest(args=args):
                p = self.kotak(*args, conf=False)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertTrue(p.stdout.startswith("usage: "))

    def test_top_level_help_exits_0(self):
        for flag in ("--help", "-h", "help"):
            with self.subTest(flag=flag):
                p = self.kotak(flag, conf=False)
                self.assertEqual(p.returncode, 0)
                self.assertEqual(p.stderr, "")
                self.assertTrue(p.stdout.startswith("usage: kotak"))
                for cmd in COMMANDS:
                    self.assertIn(cmd, p.stdout)

    def test_version(self):
        for flag in ("--version", "-V"):
            with self.subTest(flag=flag):
                p = self.kotak(flag, conf=False)
                self.assertEqual(p.returncode, 0)
                if VERSION is None:
                    self.assertRegex(p.stdout, r"^kotak \d+\.\d+\S*\n$")
                else:
                    self.assertEqual(p.stdout, f"kotak {VERSION}\n")
                self.assertEqual(p.stderr, "")

    def test_help_command_gives_forms_meaning_and_one_line_per_option(self):
        p = self.kotak("help", "user", conf=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines()[:4], [
            "usage: kotak user add ADDRESS [--password-stdin | --password-hash HASH]",
            "       kotak user passwd ADDRESS [--password-stdin | --password-hash HASH]",
            "       kotak user del ADDRESS",
            "       kotak user list [DOMAIN]"])
        self.assertRegex(p.stdout, r"\n  --password-stdin +read the password from one line")
        self.assertRegex(p.stdout, r"\n  --password-hash HASH +store HASH")
        self.assertEqual(self.kotak("user", "--help", conf=False).stdout, p.stdout,
                         "kotak user --help says the same")
        for cmd in COMMANDS:
            with self.subTest(cmd=cmd):
                q = self.kotak("help", cmd, conf=False)
                self.assertEqual(q.returncode, 0, q.stderr)
                self.assertTrue(q.stdout.startswith(f"usage: kotak"), q.stdout)

    def test_a_typo_names_the_word_meant(self):
        for args, word, meant, see in (
                (["user", "lst"], "lst", "list", "kotak help user"),
                (["usr", "list"], "usr", "user", "kotak --help"),
                (["queue", "lsit"], "lsit", "list", "kotak help queue"),
                (["domian", "list"], "domian", "domain", "kotak --help"),
                (["alias", "dle", "a@b.test"], "dle", "del", "kotak help alias"),
                (["dkim", "keygne", "b.test"], "keygne", "keygen", "kotak help dkim"),
                (["check", "dmrac"], "dmrac", "dmarc", "kotak help check"),
                (["help", "wacth"], "wacth", "watch", "kotak --help")):
            with self.subTest(args=args):
                p = self.fails(*args, conf=False)
                self.assertEqual(p.stderr, f"kotak: unknown command '{word}'; did you mean "
                                           f"'{meant}'? (see '{see}')\n")
        p = self.fails("zz", conf=False)
        self.assertEqual(p.stderr, "kotak: unknown command 'zz'; see 'kotak --help'\n",
                         "nothing near: no guess")
        p = self.fails("user", "\x1b[31mx", conf=False)
        self.assertNotIn("\x1b", p.stderr, "a typed word is shown, never interpreted")

    def test_unknown_command_exits_2(self):
        p = self.fails("frobnicate", conf=False)
        self.assertIn("frobnicate", p.stderr)
        self.assertIn("--help", p.stderr)

    @unittest.skipIf(os.path.exists("/etc/kotak/kotak.conf"), "this machine has a config there")
    def test_no_config_anywhere_says_where_it_looked(self):
        p = self.fails("domain", "list", conf=False)
        self.assertEqual(p.stderr, "kotak: no config file: looked for ./kotak.conf and "
                                   "/etc/kotak/kotak.conf ($KOTAK_CONFIG is not set); run "
                                   "'kotak init', or pass -c FILE\n")

    def test_no_command_exits_2_with_one_line(self):
        p = self.fails(conf=False)
        self.assertIn("--help", p.stderr)

    def test_run_without_a_store_exits_2_with_one_line(self):
        self.init()
        os.remove(self.db_path)
        p = self.fails("run")
        self.assertIn("kotak init", p.stderr)

    def test_run_with_extra_arguments_exits_2(self):
        self.init()
        self.fails("run", "now")


if __name__ == "__main__":
    unittest.main()
