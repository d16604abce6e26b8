"""The man pages (doc/*.scd, which scdoc turns into BUILD/doc/*): each renders
with `man -l` without a warning from groff, and each names what the code has.

The lists come from the C source, not from a copy here, so that a key, a
command, an option or an exit status added to the code without its entry in
the man page fails this test:

- kotak.conf(5): every (section, key) of conf_keys[] in common/conf.c, as an
  entry under its section's heading, and no key the table lacks; the default
  and the range of each number as conf_defaults() and the table set them; the
  listeners' defaults.
- kotak(1): every command of ctl/help.c's table and of ctl/main.c's
  dispatch table, each form of a command and each option under its command,
  the top-level options of ctl/main.c's usage, the exit status of a mistake,
  and the environment variables ctl/ reads.
- kotak-smtpd(8) and kotak-pop3d(8): every option daemon_main() takes, SIGHUP
  (and the stop signals), and every exit status the daemon's code passes to
  fatal(), 78 among them.

Rendering: MANWIDTH=80, groff's warnings all on (man --warnings=all).
MAN_KEEP_FORMATTING is taken out of the environment: man-db keeps the
overstrikes for bold and underline whenever it is set to anything, even 0.
The checks of names read a rendering without hyphenation (--nh), so that a
name is never cut at a line's end.
"""
import os
import re
import shutil
import subprocess
import unittest

from kotak_harness import BUILD

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
PAGES = ("kotak.1", "kotak.conf.5", "kotak-smtpd.8", "kotak-pop3d.8")
WIDTH = 80


def source(path):
    with open(os.path.join(SRC, path)) as f:
        return f.read()


def page_path(name):
    path = os.path.join(BUILD, "doc", name)
    if not os.path.exists(path):
        raise AssertionError(f"{path} is not built: install scdoc (scripts/deps.sh) and "
                             f"run meson setup --reconfigure and ninja")
    return path


def man(name, hyphenate=True):
    """`man -l` of the built page: (exit status, text, stderr)."""
    if shutil.which("man") is None:
        raise AssertionError("man is not installed (Debian: man-db)")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAN_KEEP_FORMATTING", "MANOPT", "MANROFFOPT", "MANPAGER", "PAGER")}
    env.update(MANWIDTH=str(WIDTH), LC_ALL="C.UTF-8")
    cmd = ["man", "--warnings=all"] + ([] if hyphenate else ["--nh", "--nj"])
    p = subprocess.run(cmd + ["-l", page_path(name)], env=env, capture_output=True, text=True,
                       timeout=60)
    return p.returncode, re.sub(r".\x08", "", p.stdout), p.stderr


def plain(name):
    rc, text, err = man(name, hyphenate=False)
    assert rc == 0, f"man -l {name}: status {rc}: {err}"
    return text


def sections(text):
    """The page's .SH sections: {NAME: [lines]}."""
    out, cur = {}, None
    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Z ]+$", line):
            cur = out.setdefault(line.strip(), [])
        elif cur is not None:
            cur.append(line)
    return out


def subsections(lines):
    """The .SS subsections of one section (their headings are indented 3): {title: [lines]}."""
    out, cur = {}, None
    for line in lines:
        m = re.match(r"^ {3}(\S.*?)\s*$", line)
        if m:
            cur = out.setdefault(m.group(1), [])
        elif cur is not None:
            cur.append(line)
    return out


def entries(lines):
    """The entries of a list (terms indented 7, their text deeper): {term: text}."""
    out, term = {}, None
    for line in lines:
        m = re.match(r"^ {7}(\S.*?)\s*$", line)
        if m:
            term = m.group(1)
            out[term] = ""
        elif term is not None and line.strip():
            out[term] += " " + line.strip()
    return {k: " ".join(v.split()) for k, v in out.items()}


def words(lines):
    return " ".join(" ".join(lines).split())


def c_strings(text):
    """The value of adjacent C string literals, with \\n and \\" read."""
    return "".join(bytes(s, "utf-8").decode("unicode_escape")
                   for s in re.findall(r'"((?:[^"\\]|\\.)*)"', text))


def c_number(expr):
    """A constant expression of conf.c's table or defaults: SEC(x), <<, *, ull."""
    expr = re.sub(r"SEC\(([^)]*)\)", r"((\1) * 1000)", expr)
    expr = re.sub(r"(?<=\d)(ull|ul|u|ll|l)\b", "", expr, flags=re.I)
    if not re.fullmatch(r"[\d\s()*+<-]*", expr):
        raise ValueError(f"not a constant: {expr}")
    return eval(expr)  # digits and operators only, checked above


# --- common/conf.c ---------------------------------------------------------

def conf_keys():
    """conf_keys[]: [(section, name, setter, field, min, max)]."""
    src = source("common/conf.c")
    m = re.search(r"conf_keys\[\]\s*=\s*\{(.*?)\n\};", src, re.S)
    assert m, "conf_keys[] not found in common/conf.c"
    table = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    rows = []
    for row in re.findall(r"\{\s*(\"[^}]*)\}", table):
        parts = [p.strip() for p in re.split(r",(?![^(]*\))", row)]
        section, name = parts[0].strip('"'), parts[1].strip('"')
        field = re.fullmatch(r"NUM\((.*)\)", parts[3])
        rows.append((section, name, parts[2], field.group(1) if field else None,
                     c_number(parts[4]), c_number(parts[5])))
    return rows


def conf_defaults():
    """Each number conf_defaults() sets, by its field: {"limits.recipients": 100, ...}."""
    src = source("common/conf.c")
    body = re.search(r"void conf_defaults\(struct conf \*c\)\n\{(.*?)\n\}", src, re.S).group(1)
    out = {}
    for struct, block in re.findall(r"c->(\w+) = \(struct \w+\)\{(.*?)\};", body, re.S):
        for field, expr in re.findall(r"\.(\w+) = ([^,]+),", block):
            try:
                out[f"{struct}.{field}"] = c_number(expr)
            except ValueError:
                pass  # a string
    return out


SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}


def parse_value(setter, text):
    """A value as the man page writes it, in the unit the code keeps it in."""
    if setter == "set_size":
        m = re.fullmatch(r"(\d+)([kmg]?)", text, re.I)
        return int(m.group(1)) * SIZE_UNITS[m.group(2).lower()] if m else None
    if setter == "set_duration":
        m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text, re.I)
        return int(m.group(1)) * DURATION_UNITS[m.group(2).lower()] if m else None
    return int(text) if text.isdigit() else None


class Render(unittest.TestCase):

    def test_each_page_renders_with_man_without_a_warning(self):
        for name in PAGES:
            with self.subTest(page=name):
                rc, text, err = man(name)
                self.assertEqual(rc, 0, f"man -l {name}: {err}")
                self.assertNotIn("warning", err.lower(), f"groff on {name}: {err}")
                self.assertEqual(err.strip(), "", f"man -l {name} wrote to stderr: {err}")
                title = name.rsplit(".", 1)
                self.assertTrue(text.startswith(f"{title[0]}({title[1]})"), text[:200])
                for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
                    self.assertIn(heading, sections(text), f"{name} has no {heading}")
                wide = [line for line in text.splitlines() if len(line) > WIDTH]
                self.assertEqual(wide, [], f"{name}: lines wider than {WIDTH} columns")


class ConfPage(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.keys = conf_keys()
        text = plain("kotak.conf.5")
        blocks = subsections(sections(text).get("SECTIONS AND KEYS", []))
        cls.documented = {}
        for title, lines in blocks.items():
            m = re.fullmatch(r"\[(\w+)\]", title)
            if m:
                for term, about in entries(lines).items():
                    k = re.match(r"(\w+) = ", term)
                    if k:
                        cls.documented[(m.group(1), k.group(1))] = about

    def test_the_table_was_read(self):
        self.assertGreaterEqual(len(self.keys), 50, "conf_keys[] parsed short")
        self.assertIn(("limits", "message_size"), [(k[0], k[1]) for k in self.keys])

    def test_every_key_is_named_under_its_section(self):
        missing = [f"[{s}] {k}" for s, k, *_ in self.keys if (s, k) not in self.documented]
        self.assertEqual(missing, [], "keys of conf_keys[] without an entry in kotak.conf.5")

    def test_no_key_the_code_lacks(self):
        known = {(k[0], k[1]) for k in self.keys}
        extra = [f"[{s}] {k}" for s, k in self.documented if (s, k) not in known]
        self.assertEqual(extra, [], "kotak.conf.5 documents keys conf_keys[] does not have")

    def test_each_number_has_the_default_and_range_of_the_code(self):
        defaults = conf_defaults()
        for section, name, setter, field, lo, hi in self.keys:
            if setter not in ("set_count", "set_size", "set_duration") or field is None:
                continue
            with self.subTest(key=f"[{section}] {name}"):
                about = self.documented.get((section, name))
                if about is None:
                    continue  # test_every_key_is_named_under_its_section says so
                m = re.search(r"Default: (\S+?)\.(?:\s|$)", about)
                self.assertIsNotNone(m, f"no 'Default: X.' in: {about}")
                self.assertEqual(parse_value(setter, m.group(1)), defaults.get(field, 0),
                                 f"the default of {field} in conf_defaults()")
                m = re.search(r"Range: (\S+) to (\S+?)[.,]?(?:\s|$)", about)
                self.assertIsNotNone(m, f"no 'Range: A to B' in: {about}")
                self.assertEqual((parse_value(setter, m.group(1)), parse_value(setter, m.group(2))),
                                 (lo, hi), "min and max of conf_keys[]")

    def test_listeners_defaults(self):
        src = source("common/conf.c")
        names = re.findall(r'"(\w+)"', re.search(
            r"listener_names\[[^]]*\] = \{(.*?)\};", src, re.S).group(1))
        values = re.findall(r'"([^"]+)"', re.search(
            r"listener_defaults\[[^]]*\] = \{(.*?)\};", src, re.S).group(1))
        self.assertEqual(len(names), len(values))
        for name, value in zip(names, values):
            with self.subTest(listener=name):
                self.assertIn(f"Default: {value}.", self.documented.get((name, "listen"), ""))


class KotakPage(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.text = plain("kotak.1")
        cls.sections = sections(cls.text)
        cls.commands = subsections(cls.sections.get("COMMANDS", []))
        src = source("ctl/help.c")
        table = re.search(r"helps\[\] = \{(.*?)\n\};", src, re.S).group(1)
        cls.helps = []
        for chunk in re.split(r"\n    \{(?=\")", "\n" + table)[1:]:
            m = re.match(r'"(\w+)",\s*((?:"(?:[^"\\]|\\.)*"\s*)+),', chunk)
            assert m, f"a row of helps[] not understood: {chunk[:80]}"
            forms = [f for f in c_strings(m.group(2)).split("\n") if f]
            options = re.findall(r'\{"(-[^"]*)",\s*"', chunk)
            cls.helps.append((m.group(1), forms, options))

    def test_the_table_was_read(self):
        self.assertGreaterEqual(len(self.helps), 10, "helps[] parsed short")
        self.assertTrue(all(f.startswith("kotak ") for _, forms, _ in self.helps for f in forms))

    def test_every_command_has_its_subsection(self):
        names = [h[0] for h in self.helps]
        dispatch = re.search(r"commands\[\] = \{(.*?)\};", source("ctl/main.c"), re.S).group(1)
        names += [n for n in re.findall(r'\{"(\w+)",', dispatch) if n not in names]
        missing = [n for n in names if n not in self.commands]
        self.assertEqual(missing, [], "commands without a subsection under COMMANDS in kotak.1")

    def test_every_form_is_written_out_under_its_command(self):
        for name, forms, _ in self.helps:
            block = words(self.commands.get(name, []))
            for form in forms:
                with self.subTest(form=form):
                    self.assertIn(" ".join(form.split()), block)

    def test_every_option_is_an_entry_under_its_command(self):
        flags = 0
        for name, _, options in self.helps:
            terms = entries(self.commands.get(name, []))
            for option in options:
                flags += 1
                with self.subTest(command=name, option=option):
                    self.assertIn(option, terms)
                    self.assertTrue(terms.get(option), f"{option} has no meaning written")
        self.assertGreaterEqual(flags, 8, "the options of helps[] parsed short")

    def test_the_top_level_options(self):
        usage = c_strings(re.search(r'static const char usage\[\] =\s*((?:"(?:[^"\\]|\\.)*"\s*)+);',
                                    source("ctl/main.c")).group(1))
        flags = re.findall(r"^\s+(-\w), (--[\w-]+)", usage, re.M)
        self.assertGreaterEqual(len(flags), 3, usage)
        options = words(self.sections.get("OPTIONS", []))
        for short, long in flags:
            with self.subTest(option=long):
                self.assertRegex(options, rf"(^|\s){short}\b")
                self.assertRegex(options, rf"(^|\s){long}\b")

    def test_exit_status_and_environment(self):
        status = re.search(r"#define KOTAK_EXIT_USAGE (\d+)", source("ctl/ctl.h")).group(1)
        self.assertIn(status, entries(self.sections.get("EXIT STATUS", [])))
        env = set()
        for f in os.listdir(os.path.join(SRC, "ctl")):
            if f.endswith(".c"):
                env |= set(re.findall(r'getenv\("(\w+)"\)', source(os.path.join("ctl", f))))
        env |= set(re.findall(r'getenv\("(\w+)"\)', source("common/conf.c")))
        self.assertIn("KOTAK_CONFIG", env)
        documented = entries(self.sections.get("ENVIRONMENT", []))
        self.assertEqual(sorted(env - set(documented)), [], "variables kotak reads, undocumented")
        files = words(self.sections.get("FILES", []))
        for path in ("./kotak.conf", "/etc/kotak/kotak.conf", "kotak-data/"):
            self.assertIn(path, files)


class DaemonPages(unittest.TestCase):

    def pages(self):
        return {"smtpd": plain("kotak-smtpd.8"), "pop3d": plain("kotak-pop3d.8")}

    def test_every_option_of_daemon_main(self):
        src = source("common/daemon.c")
        main = re.search(r"int daemon_main\(.*?\n\}", src, re.S).group(0)
        flags = set(re.findall(r'strcmp\(argv\[i\], "(-[-\w]*)"\)', main))
        self.assertTrue({"-c", "--config", "--check-config", "-V", "--version"} <= flags, flags)
        for daemon, text in self.pages().items():
            options = words(sections(text).get("OPTIONS", []))
            for flag in sorted(flags):
                with self.subTest(daemon=daemon, option=flag):
                    self.assertRegex(options, rf"(^|[ ,]){re.escape(flag)}\b")

    def test_signals(self):
        for daemon, text in self.pages().items():
            signals = entries(sections(text).get("SIGNALS", []))
            with self.subTest(daemon=daemon):
                self.assertIn("SIGHUP", signals)
                self.assertIn("SIGTERM, SIGINT", signals)
                self.assertIn("certificate", signals["SIGHUP"])

    def test_every_exit_status_the_code_uses(self):
        config = re.search(r"#define DAEMON_EXIT_CONFIG (\d+)", source("common/daemon.h")).group(1)
        self.assertEqual(config, "78")
        shared = source("common/daemon.c")
        for daemon, text in self.pages().items():
            code = shared + source(f"{daemon}/{daemon}.c")
            used = {config if s == "DAEMON_EXIT_CONFIG" else s
                    for s in re.findall(r"\bfatal\((\w+)", code)} | {"0"}
            documented = entries(sections(text).get("EXIT STATUS", []))
            with self.subTest(daemon=daemon):
                self.assertIn("78", documented)
                self.assertIn("config", documented["78"])
                self.assertEqual(sorted(used - set(documented)), [],
                                 "exit statuses of fatal() not in EXIT STATUS")
                self.assertIn("--check-config", words(sections(text).get("OPTIONS", [])))


if __name__ == "__main__":
    unittest.main()
