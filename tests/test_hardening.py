"""Tests of how the three programs are built (issue 11): hardened, and one version.

Reads the built kotak, kotak-smtpd and kotak-pop3d with readelf (binutils)
and checks what meson.build promises: a position-independent executable
(ELF type DYN), full RELRO (a GNU_RELRO segment and BIND_NOW, so the GOT is
read-only before main runs), a stack that is not executable, stack
protector canaries, and, in a build that optimizes and has no sanitizer,
_FORTIFY_SOURCE's checked functions (__memcpy_chk, __snprintf_chk, ...).
FORTIFY needs optimization, and meson.build leaves it out of sanitizer
builds, so that one check is skipped there. Each program's --version must
print meson's project version, the one source of the number.

meson passes the build's facts in the environment: KOTAK_BUILD (the build
root), KOTAK_VERSION (meson.project_version()), KOTAK_OPTIMIZATION and
KOTAK_SANITIZE (the optimization and b_sanitize options).

Run: KOTAK_BUILD=build KOTAK_VERSION=0.1.0 python3 tests/tap_unittest.py \
         tests/test_hardening.py
"""
import os
import re
import shutil
import subprocess
import unittest

BUILD = os.path.abspath(os.environ.get("KOTAK_BUILD", "/work/main/build"))
VERSION = os.environ.get("KOTAK_VERSION", "")
OPTIMIZATION = os.environ.get("KOTAK_OPTIMIZATION", "2")
SANITIZE = os.environ.get("KOTAK_SANITIZE", "none")
PROGRAMS = {
    "kotak": os.path.join(BUILD, "ctl", "kotak"),
    "kotak-smtpd": os.path.join(BUILD, "smtpd", "kotak-smtpd"),
    "kotak-pop3d": os.path.join(BUILD, "pop3d", "kotak-pop3d"),
}
TIMEOUT = 30


def readelf(*args):
    """readelf ARGS in the C locale; returns what it printed."""
    p = subprocess.run(["readelf", "-W", *args], capture_output=True, text=True,
                       env=dict(os.environ, LC_ALL="C"), timeout=TIMEOUT, check=True)
    return p.stdout


class HardeningTest(unittest.TestCase):
    """One check per property; each goes over all three programs."""

    def setUp(self):
        if shutil.which("readelf") is None:
            self.skipTest("readelf (binutils) is not installed")
        for name, path in PROGRAMS.items():
            if not os.access(path, os.X_OK):
                self.fail(f"{path} is not built; set KOTAK_BUILD to the meson build root")

    def check_each(self, what, ok):
        """Asserts ok(name, path) for every program; the message names each that fails."""
        bad = [name for name, path in PROGRAMS.items() if not ok(name, path)]
        if bad:
            self.fail(f"{what}: missing in {', '.join(bad)}")

    def test_pie(self):
        self.check_each("PIE (ELF type DYN)", lambda name, path: re.search(
            r"(?m)^\s*Type:\s+DYN\b", readelf("-h", path)))

    def test_relro_segment(self):
        self.check_each("a GNU_RELRO segment", lambda name, path: re.search(
            r"(?m)^\s*GNU_RELRO\s", readelf("-l", path)))

    def test_bind_now(self):
        def now(name, path):
            dynamic = readelf("-d", path)
            return (re.search(r"\(BIND_NOW\)", dynamic)
                    or re.search(r"\(FLAGS\)\s.*\bBIND_NOW\b", dynamic)
                    or re.search(r"\(FLAGS_1\)\s.*\bNOW\b", dynamic))
        self.check_each("BIND_NOW (full RELRO)", now)

    def test_stack_not_executable(self):
        def noexec(name, path):
            m = re.search(r"(?m)^\s*GNU_STACK\s.*\s(R?W?E?)\s+0x[0-9a-f]+$",
                          readelf("-l", path))
            return m and "E" not in m.group(1)
        self.check_each("a GNU_STACK segment without E", noexec)

    def test_stack_protector(self):
        self.check_each("stack protector canaries (__stack_chk_fail)",
                        lambda name, path: "__stack_chk_fail" in readelf("--dyn-syms", path))

    def test_fortify_source(self):
        if OPTIMIZATION in ("0", "plain"):
            self.skipTest(f"optimization={OPTIMIZATION}: _FORTIFY_SOURCE needs -O1 or more")
        if SANITIZE != "none":
            self.skipTest(f"b_sanitize={SANITIZE}: meson.build leaves _FORTIFY_SOURCE out")
        self.check_each("_FORTIFY_SOURCE (an imported __*_chk function)", lambda name, path:
                        re.search(r"\b__\w+_chk@", readelf("--dyn-syms", path)))

    def test_version_is_the_project_version(self):
        self.assertRegex(VERSION, r"^\d+\.\d+", "KOTAK_VERSION (meson's project version) unset")
        for name, path in PROGRAMS.items():
            p = subprocess.run([path, "--version"], capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=TIMEOUT)
            self.assertEqual((p.returncode, p.stdout), (0, f"{name} {VERSION}\n"),
                             f"{name} --version; stderr {p.stderr!r}")


if __name__ == "__main__":
    unittest.main()
