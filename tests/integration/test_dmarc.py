"""`kotak check dmarc IP MAIL-FROM < message` against the test DNS server
(tests/dns_server.py) serving SPF, DKIM and DMARC records, with messages
signed by dkimpy (Debian's python3-dkim, run under /usr/bin/python3) or
not signed at all.

Each test reads the one line kotak prints: its first word the DMARC result,
then the policy applied with what the record asks, the From domain and the
SPF and DKIM identifiers with whether each is aligned. Domains under .test
are in no rule of the public suffix list, so the default rule makes each
NAME.test an Organizational Domain; example.org's is example.org.
"""
import base64
import os
import shutil
import subprocess
import tempfile
import unittest

from kotak_harness import KotakInstance
from peers import SYSTEM_PYTHON, DnsServer

# The client addresses that SPF records below allow.
IP_ORG = "192.0.2.10"    # example.org, mail.example.org, strict.test, ...
IP_OTHER = "192.0.2.20"  # other.example
IP_NOBODY = "192.0.2.99"  # nobody's: SPF fails wherever it is asked

SELECTOR = "sel"

SIGN = r"""
import sys, dkim
key = open(sys.argv[1], "rb").read()
msg = sys.stdin.buffer.read()
sig = dkim.sign(msg, sys.argv[3].encode(), sys.argv[2].encode(), key,
                include_headers=[b"from", b"to", b"subject", b"date"])
sys.stdout.buffer.write(sig + msg)
"""


def message(from_field="From: Alice <alice@example.org>", extra=""):
    return (f"{from_field}\r\n{extra}To: bob@example.test\r\nSubject: DMARC test\r\n"
            "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <dmarc-test@example.org>\r\n"
            "\r\nHello.\r\n").encode()


def make_key(directory):
    """An RSA-2048 key in directory/key.pem; returns the DKIM key record."""
    path = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", path], check=True, capture_output=True)
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return path, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def zone(dkim_record):
    spf_org = f"v=spf1 ip4:{IP_ORG} -all"
    key = {"TXT": [dkim_record]}
    return {
        "example.org": {"TXT": [spf_org]},
        "_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@example.org"]},
        "mail.example.org": {"TXT": [spf_org]},
        f"{SELECTOR}._domainkey.example.org": key,
        f"{SELECTOR}._domainkey.mail.example.org": key,
        "other.example": {"TXT": [f"v=spf1 ip4:{IP_OTHER} -all"]},
        f"{SELECTOR}._domainkey.other.example": key,
        # Strict alignment, for SPF and DKIM.
        "strict.test": {"TXT": [spf_org]},
        "bounce.strict.test": {"TXT": [spf_org]},
        "_dmarc.strict.test": {"TXT": ["v=DMARC1; p=reject; aspf=s; adkim=s"]},
        f"{SELECTOR}._domainkey.strict.test": key,
        f"{SELECTOR}._domainkey.mail.strict.test": key,
        # The subdomain policy: sp= for names below sub.test without their own record.
        "_dmarc.sub.test": {"TXT": ["v=DMARC1; p=none; sp=reject"]},
        "_dmarc.own.sub.test": {"TXT": ["v=DMARC1; p=quarantine"]},
        "pct.test": {"TXT": [spf_org]},
        "_dmarc.pct.test": {"TXT": ["v=DMARC1; p=reject; pct=0"]},
        "nodmarc.test": {"TXT": [spf_org]},
        "broken.test": {"TXT": [spf_org]},
        "_dmarc.broken.test": {"rcode": "SERVFAIL"},
        "_dmarc.twice.test": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]},
        "_dmarc.nop.test": {"TXT": ["v=DMARC1; p=bogus"]},
        "_dmarc.rua.test": {"TXT": ["v=DMARC1; p=bogus; rua=mailto:d@rua.test"]},
        "_dmarc.mixed.test": {"TXT": ["v=spf1 -all", "some text", "v=DMARC1; p=quarantine"]},
    }


class DmarcCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="kotak-dmarc-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        cls.key, record = make_key(cls.tmp)
        cls.dns = DnsServer(zone(record))
        cls.dns.start()
        cls.addClassCleanup(cls.dns.close)
        cls.kotak = KotakInstance(config={"dns": {"servers": cls.dns.servers}}, users=False)
        cls.addClassCleanup(cls.kotak.close)
        cls.kotak.create()

    def sign(self, msg, domain):
        p = subprocess.run([SYSTEM_PYTHON, "-c", SIGN, self.key, domain, SELECTOR], input=msg,
                           capture_output=True, timeout=30)
        if p.returncode != 0:
            if b"No module named" in p.stderr:
                self.skipTest("python3-dkim is missing (Debian: apt-get install python3-dkim)")
            self.fail(f"dkimpy could not sign: {p.stderr.decode()}")
        return p.stdout

    def check(self, ip, mail_from, msg, *more):
        p = self.kotak.kotak("check", "dmarc", ip, mail_from, *more, input=msg.decode("latin-1"),
                             check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 1, p.stdout)
        self.diag = p.stderr
        return lines[0]

    def assertLine(self, line, *parts):
        for part in parts:
            self.assertIn(part, line, f"{line}\n{self.diag}")

    # --- alignment ---------------------------------------------------------

    def test_aligned_by_spf(self):
        line = self.check(IP_ORG, "bounce@example.org", message())
        self.assertTrue(line.startswith("pass "), line)
        self.assertLine(line, "header.from=example.org",
                        "spf=pass smtp.mailfrom=example.org (aligned)", "dkim=none (not aligned)")

    def test_aligned_by_spf_relaxed_subdomain(self):
        line = self.check(IP_ORG, "<bounce@mail.example.org>", message())
        self.assertTrue(line.startswith("pass "), line)
        self.assertLine(line, "spf=pass smtp.mailfrom=mail.example.org (aligned)")

    def test_aligned_by_dkim(self):
        msg = self.sign(message(), "example.org")
        line = self.check(IP_NOBODY, "x@other.example", msg)
        self.assertTrue(line.startswith("pass "), line)
        self.assertLine(line, "spf=fail smtp.mailfrom=other.example (not aligned)",
                        "dkim=pass header.d=example.org (aligned)")

    def test_aligned_by_dkim_relaxed_subdomain(self):
        msg = self.sign(message(), "mail.example.org")
        line = self.check(IP_NOBODY, "x@other.example", msg)
        self.assertTrue(line.startswith("pass "), line)
        self.assertLine(line, "dkim=pass header.d=mail.example.org (aligned)")

    def test_unaligned_fails_with_reject(self):
        line = self.check(IP_OTHER, "x@other.example", message())
        self.assertEqual(line, "fail policy=reject (p=reject) header.from=example.org "
                               "spf=pass smtp.mailfrom=other.example (not aligned) "
                               "dkim=none (not aligned)", self.diag)

    def test_unaligned_signature_fails(self):
        msg = self.sign(message(), "other.example")
        line = self.check(IP_OTHER, "x@other.example", msg)
        self.assertTrue(line.startswith("fail policy=reject (p=reject) "), line)
        self.assertLine(line, "dkim=pass header.d=other.example (not aligned)")

    def test_changed_signed_message_fails(self):
        msg = self.sign(message(), "example.org").replace(b"Hello.", b"Hullo.")
        line = self.check(IP_NOBODY, "x@other.example", msg)
        self.assertTrue(line.startswith("fail "), line)
        self.assertLine(line, "dkim=fail header.d=example.org (not aligned)")

    def test_forged_from_display_name(self):
        # An "@" outside quotes in a display name is no address: not judged by other.example.
        msg = message("From: alice@example.org <x@other.example>")
        line = self.check(IP_OTHER, "x@other.example", msg)
        self.assertTrue(line.startswith("permerror "), line)

    # --- strict and relaxed --------------------------------------------------

    def test_strict_spf(self):
        msg = message("From: a@strict.test")
        line = self.check(IP_ORG, "b@bounce.strict.test", msg)
        self.assertTrue(line.startswith("fail policy=reject (p=reject) "), line)
        self.assertLine(line, "smtp.mailfrom=bounce.strict.test (not aligned)")
        line = self.check(IP_ORG, "b@strict.test", msg)
        self.assertTrue(line.startswith("pass "), line)
        self.assertLine(line, "smtp.mailfrom=strict.test (aligned)")

    def test_strict_dkim(self):
        msg = message("From: a@strict.test")
        line = self.check(IP_NOBODY, "x@other.example", self.sign(msg, "mail.strict.test"))
        self.assertTrue(line.startswith("fail "), line)
        self.assertLine(line, "dkim=pass header.d=mail.strict.test (not aligned)")
        line = self.check(IP_NOBODY, "x@other.example", self.sign(msg, "strict.test"))
        self.assertTrue(line.startswith("pass "), line)
        self.assertLine(line, "dkim=pass header.d=strict.test (aligned)")

    # --- where the policy comes from ---------------------------------------

    def test_subdomain_policy(self):
        line = self.check(IP_OTHER, "x@other.example", message("From: a@deep.x.sub.test"))
        self.assertTrue(line.startswith("fail policy=reject (sp=reject) "), line)
        self.assertLine(line, "header.from=deep.x.sub.test")
        self.assertIn("sub.test", self.diag)
        line = self.check(IP_OTHER, "x@other.example", message("From: a@sub.test"))
        self.assertTrue(line.startswith("fail policy=none (p=none) "), line)

    def test_own_record_beats_the_organizational_domain(self):
        line = self.check(IP_OTHER, "x@other.example", message("From: a@own.sub.test"))
        self.assertTrue(line.startswith("fail policy=quarantine (p=quarantine) "), line)

    def test_organizational_domain_fallback(self):
        msg = message("From: Alice <alice@mail.example.org>")
        line = self.check(IP_OTHER, "x@other.example", msg)
        # No sp= at example.org: p= stands in for subdomains.
        self.assertTrue(line.startswith("fail policy=reject (sp=reject) "), line)
        self.assertLine(line, "header.from=mail.example.org")
        line = self.check(IP_ORG, "x@example.org", msg)
        self.assertTrue(line.startswith("pass "), line)

    def test_pct_zero_drops_a_level(self):
        line = self.check(IP_OTHER, "x@other.example", message("From: a@pct.test"))
        self.assertTrue(line.startswith("fail policy=quarantine (p=reject pct=0) "), line)

    def test_record_saved_by_rua(self):
        line = self.check(IP_OTHER, "x@other.example", message("From: a@rua.test"))
        self.assertTrue(line.startswith("fail policy=none (p=none) "), line)

    def test_other_txt_records_ignored(self):
        line = self.check(IP_OTHER, "x@other.example", message("From: a@mixed.test"))
        self.assertTrue(line.startswith("fail policy=quarantine (p=quarantine) "), line)

    # --- no verdict ----------------------------------------------------------

    def test_no_record(self):
        line = self.check(IP_ORG, "a@nodmarc.test", message("From: a@nodmarc.test"))
        self.assertTrue(line.startswith("none policy=none header.from=nodmarc.test "), line)
        self.assertLine(line, "spf=pass smtp.mailfrom=nodmarc.test")

    def test_unusable_records_are_none(self):
        for domain in ("twice.test", "nop.test"):
            line = self.check(IP_OTHER, "x@other.example", message(f"From: a@{domain}"))
            self.assertTrue(line.startswith("none "), line)

    def test_servfail_is_temperror(self):
        line = self.check(IP_ORG, "a@broken.test", message("From: a@broken.test"))
        self.assertTrue(line.startswith("temperror "), line)

    def test_servfail_below_is_temperror(self):
        # _dmarc.x.broken.test is NXDOMAIN; the Organizational Domain's SERVFAIL counts.
        line = self.check(IP_ORG, "a@broken.test", message("From: a@x.broken.test"))
        self.assertTrue(line.startswith("temperror "), line)

    def test_unusable_from_is_permerror(self):
        cases = {
            "two From fields": message(extra="From: mallory@other.example\r\n"),
            "two domains": message("From: alice@example.org, mallory@other.example"),
            "no address": message("From: Alice"),
        }
        for what, msg in cases.items():
            with self.subTest(what):
                line = self.check(IP_ORG, "bounce@example.org", msg)
                self.assertTrue(line.startswith("permerror policy=none "), line)

    def test_no_from_field_is_none(self):
        line = self.check(IP_ORG, "bounce@example.org", message("Sender: alice@example.org"))
        self.assertTrue(line.startswith("none policy=none header.from=(none) "), line)
        self.assertLine(line, "(no From: field)")

    def test_group_of_one_domain_is_checked(self):
        msg = message("From: Team: a@example.org, \"B, b\" <b@example.org>;")
        line = self.check(IP_OTHER, "x@other.example", msg)
        self.assertTrue(line.startswith("fail policy=reject (p=reject) header.from=example.org "),
                        line)

    def test_null_sender_checks_helo(self):
        line = self.check(IP_ORG, "<>", message(), "mail.example.org")
        self.assertTrue(line.startswith("pass "), line)
        self.assertLine(line, "spf=pass smtp.helo=mail.example.org (aligned)")

    # --- the command line -----------------------------------------------------

    def test_bad_arguments(self):
        for args in (["dmarc"], ["dmarc", IP_ORG], ["dmarc", "not-an-ip", "a@example.org"],
                     ["dmarc", IP_ORG, "a@example.org>"],
                     ["dmarc", IP_ORG, "a@example.org", "helo", "extra"]):
            with self.subTest(args=args):
                p = self.kotak.kotak("check", *args, input="", check=False)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertEqual(p.stdout, "")
                self.assertTrue(p.stderr.startswith("kotak"), p.stderr)


if __name__ == "__main__":
    unittest.main()
