"""DKIM (RFC 6376) against an independent implementation: dkimpy (Debian's
python3-dkim, run under /usr/bin/python3) verifies what kotak signs, and
`kotak check dkim` verifies what dkimpy signs, across both canonicalizations,
folded fields, empty bodies and l=. The keys come from `kotak dkim keygen`
and their records from `kotak dkim dns`, served by the test DNS server
(tests/dns_server.py) beside records that are missing, revoked or failing.

kotak's signer is reached through the unit test program test-dkim, which
signs each NAME.eml of a folder into NAME.eml.signed when DKIM_SIGN_DIR is
set (kotak-smtpd's signing glue is tested with the daemon).
"""
import base64
import json
import os
import re
import stat
import subprocess
import tempfile
import unittest

from kotak_harness import BUILD, CLI_TIMEOUT, DOMAIN, KotakInstance, rewrite_config
from peers import DnsServer

DEBIAN_PYTHON = "/usr/bin/python3"
SIGN_TOOL = os.path.join(BUILD, "tests", "unit", "test-dkim")

# dkimpy, signing or verifying: JSON in on stdin, JSON out on stdout.
DKIMPY = r"""
import base64, json, sys
import dkim
req = json.load(sys.stdin)
msg = base64.b64decode(req["message"])
if req["op"] == "sign":
    key = open(req["key"], "rb").read()
    sig = dkim.sign(msg, req["selector"].encode(), req["domain"].encode(), key,
                    canonicalize=tuple(c.encode() for c in req["canon"]),
                    include_headers=[h.encode() for h in req["headers"]] if req.get("headers") else None,
                    length=req.get("length", False),
                    signature_algorithm=req.get("algorithm", "rsa-sha256").encode())
    print(json.dumps({"signature": base64.b64encode(sig).decode()}))
else:
    records = {k.encode(): v.encode() for k, v in req["records"].items()}
    def dnsfunc(name, timeout=5):
        return records.get(name.rstrip(b".") if isinstance(name, bytes) else name.encode())
    d = dkim.DKIM(msg)
    ok = False
    try:
        ok = d.verify(dnsfunc=dnsfunc)
    except Exception as e:
        print(json.dumps({"ok": False, "error": repr(e)}))
        sys.exit(0)
    print(json.dumps({"ok": bool(ok), "error": ""}))
"""


def dkimpy(request):
    p = subprocess.run([DEBIAN_PYTHON, "-c", DKIMPY], input=json.dumps(request), text=True,
                       capture_output=True, timeout=CLI_TIMEOUT)
    if p.returncode != 0:
        if "No module named 'dkim'" in p.stderr:
            raise unittest.SkipTest("python3-dkim is missing")
        raise AssertionError(f"dkimpy failed: {p.stderr}")
    return json.loads(p.stdout)


def parse_zone_line(line):
    """'NAME TXT "a" "b"' -> (NAME, ["a", "b"]), checked to be that shape."""
    m = re.fullmatch(r'(\S+) TXT((?: "[^"\\]*")+)', line)
    if m is None:
        raise AssertionError(f"not a zone file TXT line: {line!r}")
    return m.group(1), re.findall(r'"([^"]*)"', m.group(2))


# Messages for both directions: folded fields, repeated fields, empty and
# missing bodies, whitespace that relaxed canonicalization squeezes.
MESSAGES = {
    "plain": (b"From: Alice <alice@example.test>\r\nTo: bob@example.net\r\n"
              b"Subject: hello\r\nDate: Mon, 1 Jun 2026 10:00:00 +0000\r\n"
              b"Message-ID: <plain@example.test>\r\n\r\nHello Bob.\r\n"),
    "folded": (b"From: Alice <alice@example.test>\r\nTo: bob@example.net,\r\n"
               b"\tcarol@example.net,\r\n  dave@example.net\r\n"
               b"Subject: a subject that goes on\r\n and on over a folded line\t \r\n"
               b"Cc: eve@example.net\r\nCc: frank@example.net\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: text/plain;\r\n charset=utf-8\r\n\r\n"
               b"Lines  with   spaces  \r\n\ttabs\t\t\r\n\r\n\r\n"),
    "empty-body": b"From: alice@example.test\r\nSubject: nothing\r\n\r\n",
    "no-body": b"From: alice@example.test\r\nSubject: no body at all\r\n",
    "blank-lines": b"From: alice@example.test\r\n\r\n\r\n\r\n \r\n",
    "no-final-crlf": b"From: alice@example.test\r\nSubject: x\r\n\r\nlast line",
    "eight-bit": ("From: alice@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n\r\ncafé crème\r\n").encode(),
    "long-body": (b"From: alice@example.test\r\nSubject: long\r\n\r\n"
                  + b"".join(b"line %d " % i + b"x" * (i % 90) + b"  \r\n" for i in range(3000))),
}


class DkimTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.inst = KotakInstance(users=False)
        try:
            cls.inst.create()
            cls.inst.kotak("domain", "add", DOMAIN)
            cls.keygen_out = cls.inst.kotak("dkim", "keygen", DOMAIN).stdout
            cls.keygen2_out = cls.inst.kotak("dkim", "keygen", DOMAIN, "--selector", "second").stdout
            cls.dns_out = cls.inst.kotak("dkim", "dns", DOMAIN).stdout
            cls.name, cls.strings = parse_zone_line(cls.dns_out.strip())
            cls.record = "".join(cls.strings)
            cls.name2, strings2 = parse_zone_line(cls.keygen2_out.strip())
            cls.record2 = "".join(strings2)
            cls.key = os.path.join(cls.inst.data_dir, "dkim", f"kotak._domainkey.{DOMAIN}.pem")
            cls.key2 = os.path.join(cls.inst.data_dir, "dkim", f"second._domainkey.{DOMAIN}.pem")
            cls.dns = DnsServer({
                cls.name: {"TXT": [cls.strings]},
                cls.name2: {"TXT": [strings2]},
                f"revoked._domainkey.{DOMAIN}": {"TXT": ["v=DKIM1; k=rsa; p="]},
                f"broken._domainkey.{DOMAIN}": {"rcode": "SERVFAIL"},
                f"nodata._domainkey.{DOMAIN}": {"A": ["192.0.2.1"]},
            })
            cls.dns.start()
            with open(cls.inst.conf) as f:
                text = f.read()
            with open(cls.inst.conf, "w") as f:
                f.write(rewrite_config(text, {"dns": {"servers": cls.dns.servers}}))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "dns", None) is not None:
            cls.dns.close()
        cls.inst.close()

    # --- helpers ---------------------------------------------------------

    def check(self, message):
        """kotak check dkim < message: its lines."""
        p = subprocess.run([os.path.join(BUILD, "ctl", "kotak"), "-c", self.inst.conf,
                            "check", "dkim"], input=message, capture_output=True,
                           timeout=CLI_TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.decode().splitlines()

    def dkimpy_sign(self, message, canon=("relaxed", "relaxed"), selector="kotak", key=None,
                    **extra):
        req = {"op": "sign", "message": base64.b64encode(message).decode(),
               "key": key or self.key, "selector": selector, "domain": DOMAIN,
               "canon": list(canon), **extra}
        return base64.b64decode(dkimpy(req)["signature"]) + message

    def dkimpy_verify(self, message):
        req = {"op": "verify", "message": base64.b64encode(message).decode(),
               "records": {self.name: self.record, self.name2: self.record2}}
        return dkimpy(req)

    def kotak_sign(self, messages, selector="kotak", key=None):
        """kotak's signatures over messages {name: bytes}: {name: signed bytes}."""
        if not os.access(SIGN_TOOL, os.X_OK):
            self.skipTest(f"{SIGN_TOOL} is not built")
        with tempfile.TemporaryDirectory() as d:
            for name, msg in messages.items():
                with open(os.path.join(d, name + ".eml"), "wb") as f:
                    f.write(msg)
            env = dict(os.environ, DKIM_SIGN_DIR=d, DKIM_SIGN_KEY=key or self.key,
                       DKIM_SIGN_DOMAIN=DOMAIN, DKIM_SIGN_SELECTOR=selector)
            p = subprocess.run([SIGN_TOOL], env=env, capture_output=True, text=True,
                               timeout=CLI_TIMEOUT)
            self.assertEqual(p.returncode, 0, p.stderr)
            out = {}
            for name in messages:
                with open(os.path.join(d, name + ".eml.signed"), "rb") as f:
                    out[name] = f.read()
            return out

    # --- keys and records ------------------------------------------------

    def test_keygen_writes_a_private_key(self):
        st = os.stat(self.key)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        with open(self.key) as f:
            self.assertIn("-----BEGIN RSA PRIVATE KEY-----", f.read())
        self.assertEqual(self.keygen_out, self.dns_out, "keygen prints what dkim dns prints")

    def test_dns_record_shape(self):
        self.assertEqual(self.name, f"kotak._domainkey.{DOMAIN}")
        self.assertEqual(self.strings[0], "v=DKIM1; k=rsa; ")
        self.assertTrue(all(len(s) <= 255 for s in self.strings), self.strings)
        self.assertGreater(len(self.strings), 2, "a 2048-bit key needs two strings for p=")
        m = re.fullmatch(r"v=DKIM1; k=rsa; p=([A-Za-z0-9+/=]+)", self.record)
        self.assertIsNotNone(m, self.record)
        der = base64.b64decode(m.group(1))
        # SubjectPublicKeyInfo of a 2048-bit RSA key: 294 octets.
        self.assertEqual(len(der), 294)

    def test_keygen_refusals(self):
        p = self.inst.kotak("dkim", "keygen", DOMAIN, check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("exists; 'kotak dkim dns example.test' prints its record", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1)
        p = self.inst.kotak("dkim", "keygen", "not-local.test", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("not local", p.stderr)
        p = self.inst.kotak("dkim", "keygen", DOMAIN, "--selector", "bad_selector!", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("not a selector", p.stderr)
        p = self.inst.kotak("dkim", "dns", "example.org", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("kotak dkim keygen example.org", p.stderr)
        p = self.inst.kotak("dkim", "frob", check=False)
        self.assertEqual(p.returncode, 2)

    # --- dkimpy verifies kotak -------------------------------------------

    def test_dkimpy_verifies_kotak(self):
        signed = self.kotak_sign(MESSAGES)
        for name, msg in signed.items():
            with self.subTest(message=name):
                self.assertTrue(msg.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; "
                                               b"c=relaxed/relaxed;"))
                field = msg[:msg.index(b"\r\n", msg.index(b"b="))]
                self.assertTrue(all(len(l) <= 78 for l in field.split(b"\r\n")))
                r = self.dkimpy_verify(msg)
                self.assertTrue(r["ok"], r)
                self.assertEqual(self.check(msg), [f"pass d={DOMAIN} s=kotak a=rsa-sha256"])

    def test_dkimpy_rejects_kotak_tampered(self):
        """The reverse check can fail: a changed body or an added From: is refused."""
        signed = self.kotak_sign({"plain": MESSAGES["plain"]})["plain"]
        r = self.dkimpy_verify(signed.replace(b"Hello Bob.", b"Hello Rob."))
        self.assertFalse(r["ok"], r)
        r = self.dkimpy_verify(signed.replace(b"\r\nFrom:", b"\r\nFrom: mallory@evil.test\r\nFrom:"))
        self.assertFalse(r["ok"], r)
        r = self.dkimpy_verify(signed.replace(b"\r\nFrom:", b"\r\nX-Added: yes\r\nFrom:"))
        self.assertTrue(r["ok"], r)

    def test_dkimpy_verifies_the_second_selector(self):
        signed = self.kotak_sign({"plain": MESSAGES["plain"]}, "second", self.key2)["plain"]
        self.assertTrue(self.dkimpy_verify(signed)["ok"])
        self.assertEqual(self.check(signed), [f"pass d={DOMAIN} s=second a=rsa-sha256"])

    # --- kotak verifies dkimpy -------------------------------------------

    def test_kotak_verifies_dkimpy(self):
        for canon in (("simple", "simple"), ("relaxed", "relaxed"), ("relaxed", "simple"),
                      ("simple", "relaxed")):
            for name, msg in MESSAGES.items():
                with self.subTest(canon=canon, message=name):
                    signed = self.dkimpy_sign(msg, canon)
                    self.assertEqual(self.check(signed),
                                     [f"pass d={DOMAIN} s=kotak a=rsa-sha256"])

    def test_kotak_fails_a_changed_body(self):
        for canon in (("simple", "simple"), ("relaxed", "relaxed")):
            signed = self.dkimpy_sign(MESSAGES["plain"], canon)
            lines = self.check(signed.replace(b"Hello Bob.", b"Hello Bob!"))
            self.assertEqual(lines, [f"fail d={DOMAIN} s=kotak a=rsa-sha256 "
                                     f"(body hash did not verify)"])

    def test_added_fields(self):
        headers = ["From", "To", "Subject"]
        signed = self.dkimpy_sign(MESSAGES["plain"], include_headers=headers)
        added = signed.replace(b"\r\nTo:", b"\r\nX-Unsigned: yes\r\nTo:")
        self.assertEqual(self.check(added)[0].split()[0], "pass", "an unsigned field may come")
        # dkimpy signs each field once: a From: added above the signed one is
        # not seen by h=From (bottom-up), one added below it replaces it.
        below = signed.replace(b"\r\nTo:", b"\r\nFrom: mallory@evil.test\r\nTo:")
        self.assertEqual(self.check(below)[0].split()[0], "fail")
        oversigned = self.dkimpy_sign(MESSAGES["plain"], include_headers=headers + ["From"])
        above = oversigned.replace(b"\r\nFrom:", b"\r\nFrom: mallory@evil.test\r\nFrom:", 1)
        self.assertEqual(self.check(oversigned)[0].split()[0], "pass")
        self.assertEqual(self.check(above)[0].split()[0], "fail", "oversigned: no From: added")

    def test_length_tag(self):
        for canon in (("simple", "simple"), ("relaxed", "relaxed")):
            with self.subTest(canon=canon):
                signed = self.dkimpy_sign(MESSAGES["folded"], canon, length=True)
                self.assertIn(b" l=", signed)
                self.assertEqual(self.check(signed)[0].split()[0], "pass")
                appended = signed + b"-- \r\nA mailing list footer\r\n"
                self.assertEqual(self.check(appended)[0].split()[0], "pass",
                                 "text after l= octets is not checked")
                cut = signed.replace(b"\ttabs\t\t\r\n", b"")
                self.assertEqual(self.check(cut)[0].split()[0], "fail")

    def test_lf_line_ends_on_stdin(self):
        """A message saved with LF line ends is read as it travelled, CRLF."""
        signed = self.dkimpy_sign(MESSAGES["folded"], ("simple", "simple"))
        self.assertEqual(self.check(signed.replace(b"\r\n", b"\n"))[0].split()[0], "pass")

    def test_rsa_sha1_is_refused(self):
        signed = self.dkimpy_sign(MESSAGES["plain"], algorithm="rsa-sha1")
        lines = self.check(signed)
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith(f"permerror d={DOMAIN} s=kotak a=rsa-sha1"), lines)
        self.assertIn("RFC 8301", lines[0])

    # --- keys DNS does not give ------------------------------------------

    def test_key_problems(self):
        signed = self.dkimpy_sign(MESSAGES["plain"])
        for selector, want in (("missing", "permerror"), ("nodata", "permerror"),
                               ("revoked", "permerror"), ("broken", "temperror")):
            with self.subTest(selector=selector):
                msg = signed.replace(b"s=kotak;", f"s={selector};".encode())
                self.assertNotEqual(msg, signed)
                lines = self.check(msg)
                self.assertEqual(len(lines), 1, lines)
                self.assertTrue(lines[0].startswith(f"{want} d={DOMAIN} s={selector} "), lines)
        self.assertIn("revoked", self.check(signed.replace(b"s=kotak;", b"s=revoked;"))[0])

    def test_several_signatures(self):
        once = self.dkimpy_sign(MESSAGES["plain"])
        twice = self.dkimpy_sign(once, selector="second", key=self.key2)
        broken = twice.replace(b"s=kotak;", b"s=broken;")
        self.assertEqual(self.check(broken), [
            f"pass d={DOMAIN} s=second a=rsa-sha256",
            f"temperror d={DOMAIN} s=broken a=rsa-sha256 (the key look-up failed; try later)",
        ])

    def test_no_signature(self):
        self.assertEqual(self.check(MESSAGES["plain"]), ["none (no DKIM-Signature)"])

    def test_usage(self):
        p = self.inst.kotak("check", "dkim", "extra", check=False)
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main()
