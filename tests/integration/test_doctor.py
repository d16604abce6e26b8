"""`kotak doctor` against a DNS server started by the test (tests/dns_server.py
on loopback, kotak's [dns] servers pointing at it) and a running kotak with a
domain and a DKIM key: first with every record right (every line ok, but the
clock, which this machine may not keep in sync), then with one thing wrong at
a time — the MX pointing elsewhere, no SPF, two SPF records, an SPF record
that does not cover the host, a DKIM record with another key, no DMARC, a PTR
naming another host, a daemon stopped, a world-readable store, an expired
certificate, one for another name — each giving its fail line, the mend under
it, and exit status 1. A DNS answer with control characters prints escaped.
Time is bounded: a name that never answers and an SPF record whose names
answer slowly end in lines that say so; a host with many addresses has only
its first four checked. A listener that sends half a greeting and resets
does not kill the doctor (SIGPIPE). A domain whose DKIM key file is broken
or missing gets its own line, whatever the domain before it had.
"""
import datetime
import ipaddress
import os
import re
import shutil
import socket
import sqlite3
import struct
import threading
import time
import unittest

from kotak_harness import DOMAIN, HOSTNAME, KotakInstance, rewrite_config
from peers import DnsServer

HOST_IP = "127.0.0.1"
LINE = re.compile(r"^(ok|warn|fail) +(\S+) (.*)$")


def rev(ip):
    return ipaddress.ip_address(ip).reverse_pointer


def zone_strings(keygen_out):
    """The character-strings of the record `kotak dkim keygen` printed."""
    return re.findall(r'"([^"]*)"', keygen_out)


class Doctor(unittest.TestCase):
    """One DNS server, one kotak with both daemons, for every case."""

    @classmethod
    def setUpClass(cls):
        cls.dns = DnsServer({})
        cls.dns.start()
        cls.inst = KotakInstance(config={"dns": {"servers": cls.dns.servers}})
        try:
            cls.inst.create()
            out = cls.inst.kotak("dkim", "keygen", DOMAIN).stdout
            cls.dkim_strings = zone_strings(out)
            cls.dkim_record = "".join(cls.dkim_strings)
            cls.dns.set_zone(cls.good_zone())
            cls.inst.start("smtpd")
            cls.inst.start("pop3d")
        except Exception:
            cls.inst.close()
            cls.dns.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.inst.close()
        cls.dns.close()

    @classmethod
    def good_zone(cls):
        return {
            DOMAIN: {"MX": [[10, HOSTNAME]], "TXT": ["v=spf1 mx -all"]},
            HOSTNAME: {"A": [HOST_IP]},
            rev(HOST_IP): {"PTR": [HOSTNAME]},
            f"kotak._domainkey.{DOMAIN}": {"TXT": [cls.dkim_strings]},
            f"_dmarc.{DOMAIN}": {"TXT": ["v=DMARC1; p=reject"]},
        }

    def with_zone(self, **changes):
        """Serves the good zone with changes (name -> entry, None: gone) until the test ends."""
        zone = self.good_zone()
        for name, entry in changes.items():
            name = name.replace("DOMAIN", DOMAIN).replace("HOST", HOSTNAME)
            if entry is None:
                zone.pop(name, None)
            else:
                zone[name] = entry
        self.dns.set_zone(zone)
        self.addCleanup(self.dns.set_zone, self.good_zone())

    def doctor(self, *args):
        p = self.inst.kotak("doctor", *args, check=False)
        self.assertIn(p.returncode, (0, 1), f"exit {p.returncode}: {p.stderr}")
        self.assertEqual(p.stderr, "")
        return p

    def lines(self, out):
        """(status, check, text, mend) for each check line of the output."""
        rows, text = [], out.splitlines()
        for i, l in enumerate(text):
            m = LINE.match(l)
            if m:
                nxt = text[i + 1] if i + 1 < len(text) else ""
                mend = nxt.strip() if nxt.startswith("     ") and not LINE.match(nxt) else ""
                rows.append((m.group(1), m.group(2), m.group(3), mend))
        return rows

    def expect(self, p, status, check, pattern, mend=None):
        """The output has a line STATUS CHECK matching pattern (and mend under it)."""
        rows = self.lines(p.stdout)
        hits = [r for r in rows if r[0] == status and r[1] == check and re.search(pattern, r[2])]
        self.assertTrue(hits, f"no '{status} {check} ~{pattern}' in:\n{p.stdout}")
        if mend is not None:
            self.assertRegex(hits[0][3], mend, p.stdout)
        if status == "fail":
            self.assertEqual(p.returncode, 1, p.stdout)
        return hits[0]

    # --- all right -------------------------------------------------------

    def test_all_right(self):
        p = self.doctor()
        rows = self.lines(p.stdout)
        for status, check, text, _ in rows:
            if check == "time":
                self.assertIn(status, ("ok", "warn"), text)
            else:
                self.assertEqual(status, "ok", f"{check} {text}\n{p.stdout}")
        self.assertEqual(p.returncode, 0, p.stdout)
        checks = {r[1] for r in rows}
        for want in ("store", "host", "ptr", "mx", "spf", "dkim", "dmarc", "cert", "port",
                     "perm", "daemon", "time"):
            self.assertIn(want, checks, p.stdout)
        self.expect(p, "ok", "mx", rf"^{DOMAIN}: MX 10 {HOSTNAME}$")
        self.expect(p, "ok", "ptr", rf"^{HOST_IP} names {HOSTNAME}")
        self.expect(p, "ok", "spf", rf"passes for {HOST_IP}")
        self.expect(p, "ok", "dkim", rf"kotak\._domainkey\.{DOMAIN} publishes the key")
        self.expect(p, "ok", "dmarc", r"p=reject")
        self.expect(p, "ok", "daemon", r"kotak-smtpd \(pid \d+\) runs as")
        self.expect(p, "ok", "daemon", r"kotak-pop3d \(pid \d+\) runs as")
        for listener in ("smtp", "submission", "submissions", "pop3", "pop3s"):
            self.expect(p, "ok", "port", rf"^\[{listener}\] 127\.0\.0\.1:{self.inst.ports[listener]} ")
        self.expect(p, "ok", "port", r'^\[smtp\] .* answers "?220 ')
        self.expect(p, "ok", "port", r"^\[pop3\] .* answers \"?\+OK")
        self.expect(p, "ok", "perm", r"kotak\.db: mode 0600")

    # --- DNS wrong ---------------------------------------------------------

    def test_mx_elsewhere(self):
        self.with_zone(DOMAIN={"MX": [[10, "mx.other.example"]], "TXT": ["v=spf1 mx -all"]})
        p = self.doctor()
        self.expect(p, "fail", "mx", rf"{DOMAIN}: MX points at mx\.other\.example, not at {HOSTNAME}",
                    mend=rf"publish: {DOMAIN}\. MX 10 {HOSTNAME}\.")

    def test_no_mx(self):
        self.with_zone(DOMAIN={"TXT": ["v=spf1 a:" + HOSTNAME + " -all"]})
        p = self.doctor()
        self.expect(p, "fail", "mx", rf"{DOMAIN} has no MX record", mend=rf"MX 10 {HOSTNAME}\.")

    def test_no_spf(self):
        self.with_zone(DOMAIN={"MX": [[10, HOSTNAME]]})
        p = self.doctor()
        self.expect(p, "fail", "spf", rf"{DOMAIN} has no SPF record",
                    mend=rf'publish: {DOMAIN}\. TXT "v=spf1 mx -all"')

    def test_two_spf_records(self):
        self.with_zone(DOMAIN={"MX": [[10, HOSTNAME]], "TXT": ["v=spf1 mx -all", "v=spf1 -all"]})
        p = self.doctor()
        self.expect(p, "fail", "spf", r"has 2 SPF records", mend=r"keep one")

    def test_spf_not_covering_the_host(self):
        self.with_zone(DOMAIN={"MX": [[10, HOSTNAME]], "TXT": ["v=spf1 ip4:192.0.2.1 -all"]})
        p = self.doctor()
        self.expect(p, "fail", "spf", rf"gives fail for {HOST_IP}", mend=rf"add a:{HOSTNAME}")

    def test_spf_that_does_not_parse(self):
        self.with_zone(DOMAIN={"MX": [[10, HOSTNAME]], "TXT": ["v=spf1 ip4:300.1.1.1 -all"]})
        p = self.doctor()
        self.expect(p, "fail", "spf", r"does not parse", mend=r"replace it")

    def test_dkim_record_with_another_key(self):
        other = re.sub(r"p=(.)", lambda m: "p=" + ("B" if m.group(1) != "B" else "C"),
                       self.dkim_record)
        self.assertNotEqual(other, self.dkim_record)
        self.with_zone(**{f"kotak._domainkey.{DOMAIN}": {"TXT": [other]}})
        p = self.doctor()
        want_p = self.dkim_record.split("p=")[1][:40]
        row = self.expect(p, "fail", "dkim", r"publishes another key than kotak signs with",
                          mend=rf"publish instead: kotak\._domainkey\.{DOMAIN} TXT")
        self.assertIn(want_p, row[3])

    def test_no_dkim_record(self):
        self.with_zone(**{f"kotak._domainkey.{DOMAIN}": None})
        p = self.doctor()
        self.expect(p, "fail", "dkim", r"no DKIM record", mend=r'publish: .*"v=DKIM1; k=rsa; "')

    def test_no_dmarc(self):
        self.with_zone(**{f"_dmarc.{DOMAIN}": None})
        p = self.doctor()
        self.expect(p, "fail", "dmarc", rf"{DOMAIN} has no DMARC record",
                    mend=rf'publish: _dmarc\.{DOMAIN}\. TXT "v=DMARC1; p=')

    def test_dmarc_that_does_not_parse(self):
        self.with_zone(**{f"_dmarc.{DOMAIN}": {"TXT": ["v=DMARC1; p=maybe"]}})
        p = self.doctor()
        self.expect(p, "fail", "dmarc", r"does not parse")

    def test_ptr_naming_another_host(self):
        self.with_zone(**{rev(HOST_IP): {"PTR": ["host.other.example"]}})
        p = self.doctor()
        self.expect(p, "fail", "ptr", rf"{HOST_IP} names host\.other\.example, not {HOSTNAME}",
                    mend=rf"set its PTR to {HOSTNAME}")

    def test_host_without_address(self):
        self.with_zone(HOST=None)
        p = self.doctor()
        self.expect(p, "fail", "host", rf"{HOSTNAME} has no address",
                    mend=rf"publish: {HOSTNAME}\. A ")

    def test_control_characters_print_escaped(self):
        self.with_zone(DOMAIN={"MX": [[10, HOSTNAME]], "TXT": ["v=spf1 \x1b[31mred\x07 -all"]},
                       **{f"_dmarc.{DOMAIN}": {"TXT": ["v=DMARC1; p=\x1b]0;owned\x07"]}})
        p = self.doctor()
        self.assertNotIn("\x1b", p.stdout)
        self.assertNotIn("\x07", p.stdout)
        row = self.expect(p, "fail", "spf", r"does not parse")
        self.assertIn("\\x1b[31mred\\x07", row[2])
        row = self.expect(p, "fail", "dmarc", r"does not parse")
        self.assertIn("\\x1b]0;owned\\x07", row[2])

    def test_one_domain(self):
        p = self.doctor("--domain", "Other.Example")
        self.expect(p, "fail", "mx", r"^other\.example has no MX record")
        self.assertNotRegex(p.stdout, rf"(?m)^\S+ +mx {re.escape(DOMAIN)}")

    def test_a_name_that_never_answers_and_a_slow_spf_record(self):
        # The PTR question is never answered: c-ares gives up (4.5 s). The SPF
        # record leads to ten names that each answer in 1.2 s (under the
        # resolver's first timeout, so no question fails): the evaluation
        # would take 12 s, and the doctor stops it at 10.
        slow = " ".join(f"a:n{i}.slow.test" for i in range(10))
        self.with_zone(DOMAIN={"MX": [[10, HOSTNAME]], "TXT": [f"v=spf1 {slow} -all"]},
                       **{rev(HOST_IP): {"drop": True},
                          "*.slow.test": {"delay_ms": 1200, "A": ["192.0.2.1"]}})
        start = time.monotonic()
        p = self.doctor()
        took = time.monotonic() - start
        self.expect(p, "fail", "ptr", rf"^{HOST_IP} has no PTR record: DNS says nothing",
                    mend=r"ask again later")
        self.expect(p, "warn", "spf", rf"^{DOMAIN}: .* for {HOST_IP} timed out after 10 s$",
                    mend=r"answers slowly or not at all")
        self.assertRegex(p.stdout, r"(?m)^\d+ failed, \d+ warnings?$")
        for check in ("dkim", "dmarc", "cert", "port", "perm", "daemon"):
            self.assertIn(check, {r[1] for r in self.lines(p.stdout)}, p.stdout)
        self.assertLess(took, 30, p.stdout)

    def test_only_the_first_four_addresses_are_checked(self):
        ips = [f"127.0.0.{i}" for i in range(1, 7)]
        self.with_zone(HOST={"A": ips},
                       **{rev(ip): {"PTR": [HOSTNAME]} for ip in ips})
        p = self.doctor()
        self.expect(p, "ok", "host", rf"has addresses {' '.join(ips)}$")
        self.assertIn("and 2 more not checked", p.stdout)
        rows = self.lines(p.stdout)
        self.assertEqual([r[2].split()[0] for r in rows if r[1] == "ptr"], ips[:4], p.stdout)
        passed = [r for r in rows if r[:2] == ("ok", "spf") and "passes for" in r[2]]
        self.assertEqual([r[2].split()[-1] for r in passed], ips[:4], p.stdout)

    def test_dkim_of_a_domain_after_one_with_a_good_key(self):
        # Domains are checked by name: example.test first, with its key and
        # record right; then one whose key file is not a key, then one with none.
        keys = os.path.join(self.inst.data_dir, "dkim")
        broken = os.path.join(keys, "kotak._domainkey.second.test.pem")
        for name in ("second.test", "third.test"):
            self.inst.kotak("domain", "add", name)
            self.addCleanup(self.inst.kotak, "domain", "del", name, check=False)
        with open(broken, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
        self.addCleanup(os.unlink, broken)
        p = self.doctor()
        self.expect(p, "ok", "dkim", rf"kotak\._domainkey\.{DOMAIN} publishes the key")
        self.expect(p, "fail", "dkim", r"^second\.test: .*kotak\._domainkey\.second\.test\.pem",
                    mend=r"kotak dkim keygen second\.test --selector NEW")
        self.expect(p, "fail", "dkim", r"^third\.test: no DKIM key", mend=r"kotak dkim keygen")
        dkim = [r for r in self.lines(p.stdout) if r[1] == "dkim"]
        self.assertEqual(len(dkim), 3, p.stdout)

    # --- the machine wrong -------------------------------------------------

    def test_a_listener_that_resets_after_half_a_greeting(self):
        # "220 " and no end of line, then a reset: the greeting read gives the
        # half line, and the QUIT after it meets a closed connection (EPIPE;
        # unhandled, SIGPIPE would end kotak with status 141).
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        srv.settimeout(0.2)
        stop = threading.Event()

        def serve():
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except OSError:
                    continue
                conn.sendall(b"220 half a greeting")
                time.sleep(0.3)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        self.addCleanup(srv.close)
        self.addCleanup(thread.join, 5)
        self.addCleanup(stop.set)
        conf = os.path.join(self.inst.dir, "hostile.conf")
        with open(self.inst.conf) as f:
            text = f.read()
        port = srv.getsockname()[1]
        with open(conf, "w") as f:
            f.write(rewrite_config(text, {"submission": {"listen": f"127.0.0.1:{port}"},
                                          "smtp": {"listen": f"127.0.0.1:{port}"}}))
        self.addCleanup(os.unlink, conf)
        p = self.inst.kotak("-c", conf, "doctor", check=False)
        self.assertIn(p.returncode, (0, 1), f"exit {p.returncode}: {p.stderr}\n{p.stdout}")
        self.expect(p, "ok", "port", rf"^\[smtp\] 127\.0\.0\.1:{port} answers .*220 half")
        self.expect(p, "ok", "port", rf"^\[submission\] 127\.0\.0\.1:{port} answers")
        checks = {r[1] for r in self.lines(p.stdout)}
        for want in ("perm", "daemon", "time"):  # the checks after the listeners' ran
            self.assertIn(want, checks, p.stdout)
        self.assertRegex(p.stdout, r"(?m)^\d+ failed, \d+ warnings?$")


    def test_daemon_stopped(self):
        self.inst.stop("pop3d")
        self.addCleanup(self.inst.start, "pop3d")
        p = self.doctor()
        self.expect(p, "fail", "port", rf"^\[pop3\] 127\.0\.0\.1:{self.inst.ports['pop3']}: not listening",
                    mend=r"start kotak-pop3d")
        self.expect(p, "fail", "port", r"^\[pop3s\] .*not listening")
        self.expect(p, "fail", "daemon", r"kotak-pop3d is not running", mend=r"systemctl start")
        self.expect(p, "ok", "port", r"^\[smtp\] ")

    def test_world_readable_store(self):
        os.chmod(self.inst.db_path, 0o644)
        self.addCleanup(os.chmod, self.inst.db_path, 0o600)
        p = self.doctor()
        self.expect(p, "fail", "perm", r"kotak\.db has mode 0644: every user of this machine may read",
                    mend=r"chmod 600 .*kotak\.db$")

    def test_store_that_keeps_the_space_of_deleted_mail(self):
        def set_auto_vacuum(mode):
            con = sqlite3.connect(self.inst.db_path, isolation_level=None, timeout=10)
            try:
                con.execute(f"PRAGMA auto_vacuum = {mode}")
                con.execute("VACUUM")
            finally:
                con.close()
        set_auto_vacuum("NONE")  # as a store made by an older kotak
        self.addCleanup(set_auto_vacuum, "INCREMENTAL")
        p = self.doctor()
        self.expect(p, "warn", "store", r"made by an older kotak: the space of deleted mail",
                    mend=r"kotak backup FILE; stop the daemons; kotak restore FILE")
        self.assertEqual(p.returncode, 0, p.stdout)

    def test_store_owned_by_another_user(self):
        st = os.stat(self.inst.db_path)
        if os.geteuid() != 0 or st.st_uid == 0:
            self.skipTest("needs root and a store owned by [server] user")
        os.chown(self.inst.db_path, 0, st.st_gid)
        self.addCleanup(os.chown, self.inst.db_path, st.st_uid, st.st_gid)
        p = self.doctor()
        self.expect(p, "fail", "perm", r"kotak\.db belongs to root, not to", mend=r"chown ")

    def replace_cert(self, name, not_before, not_after):
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError:
            self.skipTest("python3-cryptography is missing")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .sign(key, hashes.SHA256()))
        key_path = os.path.join(self.inst.data_dir, "key.pem")
        for path in (self.inst.cert, key_path):
            shutil.copy2(path, path + ".keep")
            self.addCleanup(os.replace, path + ".keep", path)
        with open(self.inst.cert, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))

    def test_expired_certificate(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        self.replace_cert(HOSTNAME, now - datetime.timedelta(days=30),
                          now - datetime.timedelta(days=2))
        p = self.doctor()
        self.expect(p, "fail", "cert", r"cert\.pem expired on \d{4}-\d\d-\d\d", mend=r"renew it")
        self.expect(p, "ok", "cert", rf"names {HOSTNAME}")

    def test_certificate_expiring_soon(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        self.replace_cert(HOSTNAME, now - datetime.timedelta(days=80),
                          now + datetime.timedelta(days=5))
        p = self.doctor()
        self.expect(p, "warn", "cert", r"expires in [45] days", mend=r"renew it now")

    def test_certificate_for_another_name(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        self.replace_cert("www.other.example", now - datetime.timedelta(days=1),
                          now + datetime.timedelta(days=90))
        p = self.doctor()
        self.expect(p, "fail", "cert", rf"names www\.other\.example, not {HOSTNAME}",
                    mend=rf"get a certificate for {HOSTNAME}")

    def test_key_of_another_certificate(self):
        try:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec
        except ImportError:
            self.skipTest("python3-cryptography is missing")
        key_path = os.path.join(self.inst.data_dir, "key.pem")
        shutil.copy2(key_path, key_path + ".keep")
        self.addCleanup(os.replace, key_path + ".keep", key_path)
        with open(key_path, "wb") as f:
            f.write(ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        p = self.doctor()
        self.expect(p, "fail", "cert", r"does not belong to the certificate",
                    mend=r"\[tls\] cert and key")

    # --- the command itself ------------------------------------------------

    def test_help_and_usage(self):
        for args in (("doctor", "--help"), ("help", "doctor")):
            p = self.inst.kotak(*args, check=False)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("kotak doctor [--domain DOMAIN]", p.stdout)
        p = self.inst.kotak("doctor", "--bogus", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stdout, "")
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn("usage: kotak doctor", p.stderr)
        p = self.inst.kotak("doctor", "--domain", "no domain!", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("not a valid domain name", p.stderr)

    def test_unreadable_config(self):
        p = self.inst.kotak("-c", os.path.join(self.inst.dir, "missing.conf"), "doctor",
                            check=False)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)


if __name__ == "__main__":
    unittest.main()
