"""The live view in a real browser: Debian's chromium, headless, driven by
playwright-core (tests/browser/view.mjs).

While the page is open, smtplib sends a mail over STARTTLS with AUTH PLAIN
and poplib fetches it over STLS (RETR, DELE, QUIT). The page must show both
sessions as they happen, the TLS band with the certificate's name, the
session's state, one message's journey from the stored message to the QUIT
that removes it, try-it-yourself lines, a session saved as annotated text
and replayed step by step, and never the password in any form. The
screenshots stay in $KOTAK_ARTIFACTS (default: the build folder's
test-artifacts/browser) to be looked at.
"""
import json
import os
import shlex
import subprocess
import unittest

from kotak_harness import BUILD, SMTP, SOCKET_TIMEOUT, KotakTestCase
from test_watch import ALICE, PASSWORD, secrets, send_and_fetch

STRANGER = "'`touch${IFS}/tmp/kotak-pwned`'@evil.example"
HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(os.path.dirname(HERE), "browser")
SHOTS = os.path.join(os.environ.get("KOTAK_ARTIFACTS", os.path.join(BUILD, "test-artifacts")),
                     "browser")


class Browser(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def setUp(self):
        missing = [p for p in ("/usr/bin/chromium",
                               os.path.join(BROWSER_DIR, "node_modules", "playwright-core"))
                   if not os.path.exists(p)]
        if missing:  # CI installs both (.ci/run); a test that cannot look must not pass
            self.fail("missing " + ", ".join(missing) + ": apt-get install chromium; "
                      "npm ci --prefix tests/browser")
        super().setUp()

    def open_page(self):
        proc = subprocess.Popen(["node", os.path.join(BROWSER_DIR, "view.mjs"),
                                 f"http://127.0.0.1:{self.kotak.web_port}/", SHOTS],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                cwd=BROWSER_DIR)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        first = proc.stdout.readline()
        self.assertEqual(first.strip(), "live", "the page opened its stream")
        return proc

    def seen(self, proc):
        out, _ = proc.communicate("go\n", timeout=120)
        seen = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(seen["errors"], [], "no error in the page or the driver")
        return seen

    def send_and_fetch(self):
        # A stranger on the MX port first, with a sender made to run a command in a shell.
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("stranger.example")
            s.sendmail(STRANGER, [ALICE], b"Subject: hi\r\n\r\nhi\r\n")
        send_and_fetch(self.kotak, "seen in a browser", stls=True)

    def test_a_mail_sent_and_fetched_seen_in_chromium(self):
        proc = self.open_page()
        self.send_and_fetch()
        seen = self.seen(proc)
        for name in ("sessions.png", "journey.png", "try-it.png", "replay.png"):
            self.assertGreater(os.path.getsize(os.path.join(SHOTS, name)), 5000, name)

        smtp = next(c for c in seen["cards"] if c["proto"] == "smtp" and "[submission]" in c["title"])
        pop3 = next(c for c in seen["cards"] if c["proto"] == "pop3")
        port = self.kotak.ports["submission"]
        self.assertIn(f"127.0.0.1 -> 127.0.0.1:{port} [submission]", smtp["title"])
        # Live, in order, each command with its RFC section, each reply with its meaning.
        text = "\n".join(smtp["lines"])
        order = ["220 mail.example.test", "ehlo client.example.test", "STARTTLS",
                 "220 2.0.0 Ready to start TLS", "AUTH PLAIN (as alice@example.test, password hidden)",
                 "235 2.7.0", "mail FROM:<alice@example.test>", "354", "queued as", "221"]
        at = 0
        for want in order:
            at = text.find(want, at)
            self.assertGreaterEqual(at, 0, f"{want!r} in order in:\n{text}")
        self.assertTrue(any("RFC 5321 4.1.1.1" in n for n in smtp["notes"]), smtp["notes"])
        self.assertTrue(any("rfc-editor.org" in a for a in smtp["links"]))
        self.assertTrue(any(n.startswith("235:") or "235" in n for n in smtp["notes"]))
        # The TLS band: what came after STARTTLS sits in it, with version, cipher, certificate.
        self.assertEqual(len(smtp["band"]), 1, smtp["band"])
        self.assertRegex(smtp["band"][0], r"TLS: TLSv1\.[23] \S+, certificate mail\.example\.test")
        self.assertTrue(any("AUTH PLAIN" in line for line in smtp["inBand"]))
        self.assertFalse(any("STARTTLS" in line for line in smtp["inBand"]), "STARTTLS is before")
        self.assertEqual(smtp["state"], "closed")
        self.assertEqual(smtp["flags"], [], "each reply is one RFC 5321 4.3.2 lists")
        # POP3 over STLS: its band, and the commands inside it.
        self.assertEqual(len(pop3["band"]), 1, pop3["band"])
        self.assertTrue(any("PASS (password hidden)" in line for line in pop3["inBand"]))
        self.assertTrue(any("RETR 1" in line for line in pop3["inBand"]))
        self.assertTrue(any("RFC 1939" in n for n in pop3["notes"]), pop3["notes"])

        # The journey of the one message, in order.
        steps = [s["step"] for s in seen["journey"]]
        self.assertEqual(steps, ["stored", "promised", "retr", "dele", "removed"], seen["journey"])
        journey = {s["step"]: s["text"] for s in seen["journey"]}
        self.assertIn("RCPT TO: <alice@example.test>", journey["stored"])
        self.assertRegex(journey["retr"], r"RETR 1, the number LIST gives it; UIDL [0-9a-f]+\.\d+")
        self.assertIn("only marks it", journey["dele"])
        self.assertIn("removed at QUIT", journey["removed"])

        # Try it yourself: the line to connect, each command to type, swaks and curl.
        tries = "\n".join(seen["tries"])
        self.assertIn(f"openssl s_client -starttls smtp -crlf -quiet -connect 127.0.0.1:{port}", tries)
        self.assertIn("type: ehlo client.example.test", tries)
        self.assertIn("type: AUTH PLAIN followed by the string the box on the right builds", tries)
        self.assertIn(f"swaks --server 127.0.0.1:{port} --from alice@example.test "
                      "--to alice@example.test --tls --auth PLAIN --auth-user alice@example.test",
                      tries)
        pop3_port = self.kotak.ports["pop3"]
        self.assertIn(f"curl pop3://127.0.0.1:{pop3_port}/1 --ssl-reqd -u alice@example.test", tries)
        # The stranger's sender is one quoted word in a shell, never a command.
        stranger = next(t for t in seen["tries"] if "swaks" in t and "evil.example" in t)
        words = shlex.split(stranger.split("the same with swaks: ", 1)[1])
        self.assertEqual(words[words.index("--from") + 1], STRANGER, stranger)
        self.assertGreater(seen["triesShown"], 5, "the toggle shows them")
        self.assertEqual(seen["authPlain"], "AUTH PLAIN AGJvYkBleGFtcGxlLnRlc3QAaGVscGVyLXB3",
                         "base64 of NUL bob@example.test NUL helper-pw")

        # Saved as annotated text, C:/S: lines with the notes as comments.
        self.assertRegex(seen["savedName"], r"^kotak-smtp-[0-9a-f]+\.txt$")
        saved = seen["saved"].splitlines()
        self.assertIn("C: ehlo client.example.test", saved)
        self.assertTrue(any(line.startswith("S: 250 2.0.0 Ok: queued as") for line in saved))
        self.assertTrue(any(line.startswith("#    RFC 5321 4.1.1.2") for line in saved), saved)
        self.assertTrue(any(line.startswith("# --- TLS started: TLSv1.") for line in saved))
        # Replayed: three steps on, one back.
        self.assertRegex(seen["replay"]["where"], r"step 3 of \d+")
        self.assertEqual(seen["replay"]["shown"], 3)

        # No password in any form, anywhere the page or its export holds text.
        for where in ("html", "text", "saved"):
            for secret in secrets(PASSWORD):
                self.assertNotIn(secret, seen[where], f"{where} holds a form of the password")


if __name__ == "__main__":
    unittest.main()
