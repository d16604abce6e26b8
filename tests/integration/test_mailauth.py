"""Mail authentication end to end: two kotak instances (a.test on 127.0.0.2,
b.test on 127.0.0.3) and a DNS server started here with a.test's SPF, DKIM
and DMARC records.

alice@a.test submits to A, which signs the message with the key of her
domain, a.test (made by `kotak dkim keygen`) and delivers it to B's MX, which checks SPF, DKIM
and DMARC and records the verdicts in an Authentication-Results: field.
Mail sent straight to B's MX from 127.0.0.5 (not in a.test's SPF) is what
a forger would send: refused by a.test's p=reject, or annotated, as the
config says. Every wait is bounded.
"""
import os
import re
import subprocess
import time
import unittest

from kotak_harness import KotakInstance, SMTP, SOCKET_TIMEOUT
from peers import DnsServer
from test_outbound import A_IP, B_IP, PASSWORD, WAIT, free_port_on_both

DEBIAN_PYTHON = "/usr/bin/python3"
FORGER_IP = "127.0.0.5"


def dns_record_of(output):
    """The record text of `kotak dkim dns` ("S._domainkey.D TXT "..." "...""): name, value."""
    line = output.strip().splitlines()[-1]
    name = line.split()[0]
    return name, "".join(re.findall(r'"([^"]*)"', line))


def headers_of(body):
    """The header section of a stored message, unfolded, as a list of lines."""
    head = body.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    return head.split(b"\r\n")


def authres(body):
    return [l for l in headers_of(body) if l.lower().startswith(b"authentication-results:")]


class MailAuth(unittest.TestCase):
    CHECKS = {}

    def setUp(self):
        self.mx_port = free_port_on_both([A_IP, B_IP])
        self.dns = DnsServer(self.zone({}))
        self.dns.start()
        self.addCleanup(self.dns.close)
        relay = {"port": str(self.mx_port), "retry_first": "1s", "retry_max": "2s"}
        self.a = self.instance("a.test", A_IP, "alice", relay, {})
        self.b = self.instance("b.test", B_IP, "bob", relay, self.CHECKS)
        out = self.a.kotak("dkim", "keygen", "a.test").stdout
        self.key_name, self.key_value = dns_record_of(self.a.kotak("dkim", "dns", "a.test").stdout)
        self.assertIn(self.key_value, out.replace('" "', "").replace('"', ""))
        self.dns.set_zone(self.zone({self.key_name: {"TXT": [self.key_value]}}))
        self.a.start("smtpd")
        self.b.start("smtpd")

    @staticmethod
    def zone(extra):
        z = {
            # A's connections to B come from 127.0.0.1, the forger's from FORGER_IP.
            "a.test": {"MX": [[10, "mx.a.test"]], "TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
            "mx.a.test": {"A": [A_IP]},
            "_dmarc.a.test": {"TXT": ["v=DMARC1; p=reject"]},
            "b.test": {"MX": [[10, "mx.b.test"]]},
            "mx.b.test": {"A": [B_IP]},
            "soft.test": {"TXT": ["v=spf1 -all"]},
            "_dmarc.soft.test": {"TXT": ["v=DMARC1; p=none"]},
        }
        z.update(extra)
        return z

    def instance(self, domain, ip, user, relay, checks):
        config = {
            "server": {"hostname": f"mx.{domain}"},
            "smtp": {"listen": f"{ip}:{self.mx_port}"},
            "relay": relay,
            "dns": {"servers": self.dns.servers},
        }
        if checks:
            config["checks"] = checks
        inst = KotakInstance(config, users=False)
        self.addCleanup(self.close, inst)
        inst.create()
        inst.kotak("domain", "add", domain)
        inst.kotak("user", "add", f"{user}@{domain}", "--password-stdin", input=PASSWORD + "\n")
        return inst

    def close(self, inst):
        for name in list(inst.procs):
            rc = inst.stop(name)
            log = inst.log(name)
            if rc != 0 or "Sanitizer" in log or "runtime error:" in log:
                inst.close()
                self.fail(f"kotak-{name} ended with status {rc}:\n" + log[-3000:])
        inst.close()

    def submit(self, msg):
        with SMTP("127.0.0.1", self.a.ports["submission"], timeout=SOCKET_TIMEOUT) as s:
            s.starttls(context=self.a.ssl_context())
            s.login("alice@a.test", PASSWORD)
            return s.sendmail("alice@a.test", ["bob@b.test"], msg)

    def to_b(self, sender, msg, helo="forger.example"):
        """Sends msg straight to B's MX from FORGER_IP; the reply to the final dot."""
        with SMTP(B_IP, self.mx_port, timeout=SOCKET_TIMEOUT,
                  source_address=(FORGER_IP, 0)) as s:
            s.ehlo(helo)
            code, _ = s.mail(sender)
            self.assertEqual(code, 250)
            code, _ = s.rcpt("bob@b.test")
            self.assertEqual(code, 250)
            return s.data(msg)

    def wait_body(self, inst, address, n=1):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            got = inst.bodies(address)
            if len(got) >= n:
                return got[n - 1]
            time.sleep(0.1)
        self.fail(f"{address} got {len(inst.bodies(address))} messages, not {n}\n" +
                  self.a.log("smtpd")[-2000:] + self.b.log("smtpd")[-2000:])

    def dkimpy_verifies(self, body):
        """dkimpy's verdict on body's first DKIM-Signature, with a.test's key served to it."""
        script = ("import sys, dkim\n"
                  "key = sys.argv[1].encode()\n"
                  "msg = sys.stdin.buffer.read()\n"
                  "print(dkim.verify(msg, dnsfunc=lambda name, timeout=5: key))\n")
        p = subprocess.run([DEBIAN_PYTHON, "-c", script, self.key_value], input=body,
                           capture_output=True, timeout=30)
        if p.returncode != 0 and b"No module named 'dkim'" in p.stderr:
            self.skipTest("python3-dkim is missing")
        return p.stdout.strip() == b"True"


class Across(MailAuth):

    MSG = (b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: signed\r\n"
           b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@a.test>\r\n\r\n"
           b"Hello Bob, signed by A.\r\n")

    def test_signed_mail_from_a_arrives_at_b_with_spf_dkim_and_dmarc_passing(self):
        self.assertEqual(self.submit(self.MSG), {})
        body = self.wait_body(self.b, "bob@b.test")
        results = authres(body)
        self.assertEqual(len(results), 1, body)
        ar = results[0]
        self.assertTrue(ar.startswith(b"Authentication-Results: mx.b.test;"), ar)
        self.assertIn(b"spf=pass", ar)
        self.assertIn(b"smtp.mailfrom=a.test", ar)
        self.assertRegex(ar, rb"dkim=pass .*header\.d=a\.test header\.s=kotak")
        self.assertRegex(ar, rb"dmarc=pass .*header\.from=a\.test")
        # Signed once, by A, relaxed/relaxed rsa-sha256, From oversigned.
        sigs = [l for l in headers_of(body) if l.lower().startswith(b"dkim-signature:")]
        self.assertEqual(len(sigs), 1, body)
        self.assertIn(b"a=rsa-sha256", sigs[0])
        self.assertIn(b"c=relaxed/relaxed", sigs[0])
        self.assertIn(b"d=a.test", sigs[0])
        h = re.search(rb"[;\s]h=([^;]*)", sigs[0]).group(1).replace(b" ", b"").lower().split(b":")
        self.assertGreaterEqual(h.count(b"from"), 2, sigs[0])
        # An independent verifier agrees, on the message as B stored it.
        stored = body.split(b"\r\n", 1)[1]  # without B's Return-Path:
        self.assertTrue(self.dkimpy_verifies(stored), body)
        self.b.wait_log(r"event=checks .*spf=pass dkim=pass .*dmarc=pass .*result=accepted")

    def test_a_from_field_in_another_local_domain_does_not_choose_the_key(self):
        # A also serves c.test, with a key of its own; alice may send only as
        # herself, so what she writes in From: cannot get c.test's signature.
        self.a.kotak("domain", "add", "c.test")
        self.a.kotak("dkim", "keygen", "c.test")
        msg = self.MSG.replace(b"From: Alice <alice@a.test>", b"From: The Boss <boss@c.test>")
        self.assertEqual(self.submit(msg), {})
        body = self.wait_body(self.b, "bob@b.test")
        sigs = [l for l in headers_of(body) if l.lower().startswith(b"dkim-signature:")]
        self.assertEqual(len(sigs), 1, body)
        self.assertIn(b"d=a.test", sigs[0])
        self.assertNotIn(b"d=c.test", body)

    def test_mail_a_user_sends_to_a_local_user_is_neither_checked_nor_signed(self):
        self.a.kotak("user", "add", "carol@a.test", "--password-stdin", input=PASSWORD + "\n")
        with SMTP("127.0.0.1", self.a.ports["submission"], timeout=SOCKET_TIMEOUT) as s:
            s.starttls(context=self.a.ssl_context())
            s.login("alice@a.test", PASSWORD)
            s.sendmail("alice@a.test", ["carol@a.test"], self.MSG)
        body = self.wait_body(self.a, "carol@a.test")
        self.assertEqual(authres(body), [])
        self.assertNotIn(b"DKIM-Signature:", body)


class Forged(MailAuth):

    def test_a_forged_sender_under_p_reject_is_refused_with_550_5_7_1(self):
        msg = (b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: forged\r\n\r\nPay me.\r\n")
        code, text = self.to_b("alice@a.test", msg)
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith(b"5.7.1"), text)
        self.assertIn(b"a.test", text)
        self.assertEqual(self.b.bodies("bob@b.test"), [])
        self.b.wait_log(r"event=checks .*spf=fail .*dmarc=fail policy=reject .*result=refused")

    def test_a_forged_authentication_results_claiming_our_name_is_removed(self):
        msg = (b"Authentication-Results: mx.b.test; dkim=pass header.d=bank.example\r\n"
               b"Authentication-Results: other.example; spf=pass\r\n"
               b"AUTHENTICATION-RESULTS:  (sly)\r\n MX.B.TEST;\r\n dmarc=pass\r\n"
               b"From: someone@soft.test\r\nSubject: hi\r\n\r\nBody\r\n")
        code, text = self.to_b("someone@soft.test", msg)
        self.assertEqual(code, 250, text)
        body = self.wait_body(self.b, "bob@b.test")
        results = authres(body)
        ours = [r for r in results if re.match(rb"(?i)authentication-results:\s*(\(sly\)\s*)?mx\.b\.test", r)]
        self.assertEqual(len(ours), 1, results)
        self.assertNotIn(b"bank.example", body)
        self.assertNotIn(b"(sly)", body)
        self.assertIn(b"Authentication-Results: other.example; spf=pass", body)
        # soft.test says -all with p=none: a failure, noted, not refused.
        self.assertIn(b"spf=fail", ours[0])
        self.assertIn(b"dmarc=fail", ours[0])
        self.assertIn(b"Body", body)

    def test_a_header_section_past_the_limit_is_refused_with_552(self):
        fields = b"".join(b"X-Filler-%06d: %s\r\n" % (i, b"x" * 70) for i in range(3500))
        msg = b"From: someone@soft.test\r\n" + fields + b"\r\nBody\r\n"
        code, text = self.to_b("someone@soft.test", msg)
        self.assertEqual(code, 552, text)
        self.assertTrue(text.startswith(b"5.3.4"), text)


class Evasions(MailAuth):
    """Ways a forger might slip a.test's p=reject or a result of ours past B."""
    BODY = b"To: bob@b.test\r\nSubject: pay\r\n\r\nPay me.\r\n"

    def assertRefused(self, msg):
        code, text = self.to_b("x@soft.test", msg)
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith(b"5.7.1"), text)
        self.assertEqual(self.b.bodies("bob@b.test"), [])

    def test_two_from_fields_are_refused(self):
        self.assertRefused(b"From: x@soft.test\r\nFrom: alice@a.test\r\n" + self.BODY)

    def test_a_from_list_across_domains_is_refused(self):
        self.assertRefused(b"From: x@soft.test, alice@a.test\r\n" + self.BODY)

    def test_a_line_without_a_colon_does_not_hide_the_from_field_below(self):
        self.assertRefused(b"X-Note no colon on this line\r\nFrom: alice@a.test\r\n" + self.BODY)

    def test_a_forged_result_below_a_line_without_a_colon_is_removed(self):
        msg = (b"From: someone@soft.test\r\nSubject: hi\r\nnot a field\r\n"
               b"Authentication-Results: mx.b.test; dkim=pass header.d=bank.example\r\n"
               b"\r\nBody\r\n")
        code, text = self.to_b("someone@soft.test", msg)
        self.assertEqual(code, 250, text)
        body = self.wait_body(self.b, "bob@b.test")
        self.assertNotIn(b"bank.example", body)
        self.assertIn(b"not a field", body)

    def test_our_name_with_a_final_dot_is_removed(self):
        msg = (b"Authentication-Results: mx.b.test.; dmarc=pass header.from=bank.example\r\n"
               b"From: someone@soft.test\r\nSubject: hi\r\n\r\nBody\r\n")
        code, text = self.to_b("someone@soft.test", msg)
        self.assertEqual(code, 250, text)
        self.assertNotIn(b"bank.example", self.wait_body(self.b, "bob@b.test"))

    def test_a_local_user_cannot_plant_results_claiming_our_name(self):
        self.a.kotak("user", "add", "carol@a.test", "--password-stdin", input=PASSWORD + "\n")
        msg = (b"Authentication-Results: mx.a.test; dmarc=pass header.from=bank.example\r\n"
               b"From: security@bank.example\r\nTo: carol@a.test\r\nSubject: verify\r\n\r\nx\r\n")
        with SMTP("127.0.0.1", self.a.ports["submission"], timeout=SOCKET_TIMEOUT) as s:
            s.starttls(context=self.a.ssl_context())
            s.login("alice@a.test", PASSWORD)
            s.sendmail("alice@a.test", ["carol@a.test"], msg)
        head = self.wait_body(self.a, "carol@a.test").split(b"\r\n\r\n")[0]
        self.assertNotIn(b"Authentication-Results", head)
        self.assertIn(b"From: security@bank.example", head)


class Stopping(MailAuth):

    def test_stopping_while_a_check_waits_on_dns_refuses_with_451_and_ends_cleanly(self):
        z = self.zone({self.key_name: {"TXT": [self.key_value]}, "silent.test": {"drop": True}})
        self.dns.set_zone(z)
        import threading
        answer = {}

        def send():
            s = SMTP(B_IP, self.mx_port, timeout=SOCKET_TIMEOUT, source_address=(FORGER_IP, 0))
            s.ehlo("forger.example")
            s.mail("x@silent.test")
            s.rcpt("bob@b.test")
            answer["reply"] = s.data(b"From: x@silent.test\r\n\r\nHi\r\n")
            s.close()  # no QUIT: the server says 421 and closes as it stops
        t = threading.Thread(target=send)
        t.start()
        self.b.wait_log(r"listener=smtp event=connect", count=2)  # the probe, then ours
        time.sleep(1.0)  # the message is in, SPF asks a server that never answers
        self.assertEqual(self.b.stop("smtpd"), 0, self.b.log("smtpd")[-2000:])
        t.join(10)
        reply = answer.get("reply")
        self.assertIsInstance(reply, tuple, reply)
        self.assertEqual(reply[0], 451, reply)
        self.assertTrue(reply[1].startswith(b"4.3.2"), reply)
        self.assertEqual(self.b.bodies("bob@b.test"), [])


class Annotate(MailAuth):
    CHECKS = {"dmarc_reject": "annotate"}

    def test_with_dmarc_reject_annotate_the_failure_is_kept_and_recorded(self):
        msg = (b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: forged\r\n\r\nPay me.\r\n")
        code, text = self.to_b("alice@a.test", msg)
        self.assertEqual(code, 250, text)
        ar = authres(self.wait_body(self.b, "bob@b.test"))
        self.assertEqual(len(ar), 1)
        self.assertIn(b"dmarc=fail", ar[0])
        self.assertIn(b"p=reject", ar[0])


class SpfReject(MailAuth):
    CHECKS = {"spf_fail": "reject", "dmarc_reject": "annotate"}

    def test_with_spf_fail_reject_a_failing_sender_is_refused_with_5_7_23(self):
        msg = b"From: x@soft.test\r\nSubject: s\r\n\r\nBody\r\n"
        code, text = self.to_b("x@soft.test", msg)
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith(b"5.7.23"), text)
        self.assertIn(b"soft.test", text)

    def test_a_sender_without_spf_record_still_passes_with_spf_none(self):
        msg = b"From: x@nospf.test\r\nSubject: s\r\n\r\nBody\r\n"
        code, text = self.to_b("x@nospf.test", msg)
        self.assertEqual(code, 250, text)
        ar = authres(self.wait_body(self.b, "bob@b.test"))
        self.assertIn(b"spf=none", ar[0])
        self.assertIn(b"dkim=none", ar[0])
        self.assertIn(b"dmarc=none", ar[0])


if __name__ == "__main__":
    unittest.main()
