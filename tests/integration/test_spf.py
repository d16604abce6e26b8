"""`kotak check spf IP MAIL-FROM [HELO]` against a DNS server started by the
test (tests/dns_server.py on loopback): every mechanism and modifier of RFC
7208 with its qualifiers, CIDR lengths on a and mx, the limits of 4.6.4 (ten
DNS-querying terms, ten MX names, ten PTR names, two void look-ups), include
and redirect with what their targets give, DNS failures, records that are
missing, doubled or broken, the null sender checked by HELO, and the results
RFC 7208 Appendix A states for its example.com zone.

Each check is the real command: a fresh kotak.conf (kotak init) whose [dns]
servers is the test server. Standard output must be the result word alone,
on one line; the reason goes to standard error.
"""
import ipaddress
import subprocess
import unittest

from kotak_harness import KotakInstance
from peers import DnsServer

RESULTS = {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"}


def rev(ip):
    """The PTR owner name of ip (in-addr.arpa or ip6.arpa)."""
    return ipaddress.ip_address(ip).reverse_pointer


def txt(record):
    return {"TXT": [record]}


# --- the zone of the mechanism, modifier and limit tests ---------------------

ZONE = {
    # all, and the four qualifiers
    "q-pass.test": txt("v=spf1 +all"),
    "q-default.test": txt("v=spf1 all"),
    "q-fail.test": txt("v=spf1 -all"),
    "q-soft.test": txt("v=spf1 ~all"),
    "q-neutral.test": txt("v=spf1 ?all"),
    "no-all.test": txt("v=spf1 ip4:10.9.9.9"),
    "empty.test": txt("v=spf1"),
    "upper.test": txt("V=SPF1 IP4:192.0.2.1 -ALL"),
    # ip4, ip6
    "ip4.test": txt("v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.7 -all"),
    "ip6.test": txt("v=spf1 ip6:2001:db8:1::/48 ip6:2001:db8:2::7 -all"),
    "ip-any.test": txt("v=spf1 ip4:0.0.0.0/0 -all"),
    # a
    "a.test": {"TXT": ["v=spf1 a -all"], "A": ["192.0.2.10"], "AAAA": ["2001:db8::10"]},
    "a-other.test": txt("v=spf1 a:host.a-other.test -all"),
    "host.a-other.test": {"A": ["192.0.2.20", "192.0.2.21"]},
    "a-cidr.test": txt("v=spf1 a:a.test/24//64 -all"),
    "a-cidr4.test": txt("v=spf1 a:a.test/24 -all"),
    "a-cidr6.test": txt("v=spf1 a:a.test//64 -all"),
    # mx
    "mx.test": {"TXT": ["v=spf1 mx -all"],
                "MX": [[10, "mx1.mx.test"], [20, "mx2.mx.test"]]},
    "mx1.mx.test": {"A": ["192.0.2.31"]},
    "mx2.mx.test": {"A": ["192.0.2.32"], "AAAA": ["2001:db8::32"]},
    "mx-cidr.test": txt("v=spf1 mx:mx.test/28//120 -all"),
    "mx-null.test": {"TXT": ["v=spf1 mx -all"], "MX": [[0, "."]]},
    "mx-ten.test": {"TXT": ["v=spf1 mx -all"],
                    "MX": [[i, f"h{i}.mxs.test"] for i in range(1, 11)]},
    "mx-eleven.test": {"TXT": ["v=spf1 mx -all"],
                       "MX": [[i, f"h{i}.mxs.test"] for i in range(1, 12)]},
    "h10.mxs.test": {"A": ["192.0.2.35"]},
    "h11.mxs.test": {"A": ["192.0.2.36"]},
    "*.mxs.test": {"A": ["192.0.2.251"]},
    "mx-servfail.test": {"TXT": ["v=spf1 mx -all"], "MX": [[10, "broken.mxs-bad.test"]]},
    "broken.mxs-bad.test": {"rcode": "SERVFAIL"},
    # ptr
    "ptr.test": txt("v=spf1 ptr -all"),
    "ptr-other.test": txt("v=spf1 ptr:ptr.test -all"),
    rev("192.0.2.50"): {"PTR": ["host.ptr.test"]},
    "host.ptr.test": {"A": ["192.0.2.50"]},
    rev("192.0.2.53"): {"PTR": ["liar.ptr.test"]},
    "liar.ptr.test": {"A": ["192.0.2.99"]},
    rev("2001:db8::50"): {"PTR": ["host6.ptr.test"]},
    "host6.ptr.test": {"AAAA": ["2001:db8::50"]},
    "ptr-many.test": txt("v=spf1 ptr -all"),
    rev("192.0.2.51"): {"PTR": [f"p{i}.ptr-many.test" for i in range(1, 12)]},
    rev("192.0.2.52"): {"PTR": [f"q{i}.ptr-many.test" for i in range(1, 11)]},
    "p11.ptr-many.test": {"A": ["192.0.2.51"]},
    "q10.ptr-many.test": {"A": ["192.0.2.52"]},
    # exists
    "exists.test": txt("v=spf1 exists:%{ir}.list.exists.test -all"),
    "77.2.0.192.list.exists.test": {"A": ["127.0.0.2"]},
    "exists6.test": txt("v=spf1 exists:v4only.exists.test -all"),
    "v4only.exists.test": {"A": ["127.0.0.2"]},
    # include
    "inc.test": txt("v=spf1 include:inc-target.test -all"),
    "inc-target.test": txt("v=spf1 ip4:192.0.2.60 ~all"),
    "inc-q.test": txt("v=spf1 ~include:inc-target.test ?all"),
    "inc-none.test": txt("v=spf1 include:norecord.test -all"),
    "inc-nx.test": txt("v=spf1 include:nxdomain.test -all"),
    "inc-perm.test": txt("v=spf1 include:syntax.test +all"),
    "inc-servfail.test": txt("v=spf1 include:servfail.test +all"),
    "inc-d.test": txt("v=spf1 include:inc-d-target.test -all"),
    "inc-d-target.test": txt("v=spf1 exists:ok.%{d}"),
    "ok.inc-d-target.test": {"A": ["127.0.0.2"]},
    # redirect, exp, unknown modifiers
    "redir.test": txt("v=spf1 redirect=redir-target.test"),
    "redir-target.test": txt("v=spf1 ip4:192.0.2.70 -all"),
    "redir-matched.test": txt("v=spf1 ip4:192.0.2.71 redirect=redir-target.test"),
    "redir-all.test": txt("v=spf1 ?all redirect=redir-target.test"),
    "redir-none.test": txt("v=spf1 redirect=norecord.test"),
    "redir-nx.test": txt("v=spf1 redirect=nxdomain.test"),
    "redir-d.test": txt("v=spf1 redirect=rd-target.test"),
    "rd-target.test": txt("v=spf1 exists:ok.%{d} -all"),
    "ok.rd-target.test": {"A": ["127.0.0.2"]},
    "exp.test": txt("v=spf1 -all exp=explain.exp.test"),
    "explain.exp.test": txt("%{i} may not send for %{d}"),
    "exp-servfail.test": txt("v=spf1 ip4:192.0.2.1 -all exp=servfail.test"),
    "exp-bad.test": txt("v=spf1 -all exp="),
    "unknown-mod.test": txt("v=spf1 moo=cow ip4:192.0.2.1 x-y.z=%{d} -all"),
    # the ten DNS-querying terms
    **{f"l{i}.limit.test": {"A": ["192.0.2.250"]} for i in range(1, 11)},
    "hit.limit.test": {"A": ["192.0.2.80"]},
    "limit10.test": txt("v=spf1 " + " ".join(f"a:l{i}.limit.test" for i in range(1, 10))
                        + " a:hit.limit.test -all"),
    "limit11.test": txt("v=spf1 " + " ".join(f"a:l{i}.limit.test" for i in range(1, 11))
                        + " a:hit.limit.test -all"),
    "limit-lazy.test": txt("v=spf1 ip4:192.0.2.80 "
                           + " ".join(f"a:l{i}.limit.test" for i in range(1, 11))
                           + " a:hit.limit.test -all"),
    "limit-mixed.test": txt("v=spf1 a:l1.limit.test mx:mx.test ptr exists:%{ir}.e.limit.test "
                            "include:inc-target.test a:l3.limit.test a:l4.limit.test "
                            "a:l5.limit.test a:l6.limit.test redirect=limit-mixed2.test"),
    "limit-mixed2.test": txt("v=spf1 ip4:192.0.2.80 -all"),
    "limit-mixed3.test": txt("v=spf1 a:l1.limit.test mx:mx.test ptr exists:%{ir}.e.limit.test "
                             "include:inc-target.test a:l3.limit.test a:l4.limit.test "
                             "a:l5.limit.test a:l6.limit.test a:l7.limit.test "
                             "redirect=limit-mixed2.test"),
    "inc10.test": txt("v=spf1 include:i1.chain.test -all"),
    **{f"i{k}.chain.test": txt(f"v=spf1 include:i{k + 1}.chain.test") for k in range(1, 9)},
    "i9.chain.test": txt("v=spf1 include:last.chain.test"),
    "inc11.test": txt("v=spf1 include:j1.chain.test -all"),
    **{f"j{k}.chain.test": txt(f"v=spf1 include:j{k + 1}.chain.test") for k in range(1, 10)},
    "j10.chain.test": txt("v=spf1 include:last.chain.test"),
    "last.chain.test": txt("v=spf1 ip4:192.0.2.81"),
    # void look-ups
    "nodata.void.test": txt("not spf"),
    "void2.test": txt("v=spf1 a:nx1.void.test mx:nx2.void.test ip4:192.0.2.90 -all"),
    "void3.test": txt("v=spf1 a:nx1.void.test mx:nx2.void.test exists:nx3.void.test "
                      "ip4:192.0.2.90 -all"),
    "void-nodata.test": txt("v=spf1 a:nodata.void.test a:nx1.void.test a:nx2.void.test "
                            "ip4:192.0.2.90 -all"),
    # DNS failures, missing, doubled and broken records
    "servfail.test": {"rcode": "SERVFAIL"},
    "a-servfail.test": txt("v=spf1 a:servfail.test -all"),
    "norecord.test": {"TXT": ["google-site-verification=abc", "v=spf10 +all"]},
    "aonly.test": {"A": ["192.0.2.1"]},
    "two.test": {"TXT": ["v=spf1 -all", "v=spf1 +all"]},
    "two-one.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all", "v=spf10 +all", "other"]},
    "syntax.test": txt("v=spf1 ip4:192.0.2.300 -all"),
    "syntax-late.test": txt("v=spf1 +all foo:bar"),
    "split.test": {"TXT": [["v=spf1 ip4:192.0.2.1", "10 -all"]]},
    "long.test": txt("v=spf1 " + " ".join(f"ip4:198.51.100.{i}" for i in range(1, 60))
                     + " ip4:192.0.2.111 -all"),
    # the null sender: postmaster@HELO
    "helo.test": txt("v=spf1 ip4:192.0.2.100 -all"),
    "helo-l.test": txt("v=spf1 exists:%{l}.%{d} -all"),
    "postmaster.helo-l.test": {"A": ["127.0.0.2"]},
}


class SpfChecks(unittest.TestCase):
    """One DNS server and one kotak.conf for all the checks."""

    @classmethod
    def setUpClass(cls):
        cls.dns = DnsServer(ZONE)
        cls.dns.start()
        cls.kotak = KotakInstance(config={"dns": {"servers": cls.dns.servers}}, users=False)
        try:
            cls.kotak.create()
        except Exception:
            cls.kotak.close()
            cls.dns.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.kotak.close()
        cls.dns.close()

    def spf(self, ip, sender, helo=None):
        """The result word of kotak check spf, after checking its output's shape."""
        args = ["check", "spf", ip, sender] + ([helo] if helo is not None else [])
        p = self.kotak.kotak(*args, check=False)
        self.assertEqual(p.returncode, 0, f"kotak {' '.join(args)}: {p.stderr}")
        self.assertRegex(p.stdout, r"\A[a-z]+\n\Z", f"one word on one line: {p.stdout!r}")
        word = p.stdout.strip()
        self.assertIn(word, RESULTS)
        self.assertTrue(p.stderr.startswith(f"spf: {word} for "), p.stderr)
        return word

    def expect(self, want, ip, sender, helo=None):
        got = self.spf(ip, sender, helo)
        self.assertEqual(got, want, f"{ip} {sender!r} {helo!r}")

    # all and the qualifiers

    def test_all_and_qualifiers(self):
        self.expect("pass", "192.0.2.1", "a@q-pass.test")
        self.expect("pass", "192.0.2.1", "a@q-default.test")
        self.expect("fail", "192.0.2.1", "a@q-fail.test")
        self.expect("softfail", "192.0.2.1", "a@q-soft.test")
        self.expect("neutral", "192.0.2.1", "a@q-neutral.test")
        self.expect("pass", "2001:db8::1", "a@q-pass.test")

    def test_nothing_matches_is_neutral(self):
        self.expect("neutral", "192.0.2.1", "a@no-all.test")
        self.expect("neutral", "192.0.2.1", "a@empty.test")

    def test_case_does_not_matter(self):
        self.expect("pass", "192.0.2.1", "a@upper.test")
        self.expect("fail", "192.0.2.2", "a@UPPER.TEST")

    # ip4, ip6

    def test_ip4(self):
        self.expect("pass", "192.0.2.77", "a@ip4.test")
        self.expect("pass", "192.0.2.0", "a@ip4.test")
        self.expect("pass", "192.0.2.255", "a@ip4.test")
        self.expect("pass", "198.51.100.7", "a@ip4.test")
        self.expect("fail", "198.51.100.8", "a@ip4.test")
        self.expect("fail", "192.0.3.0", "a@ip4.test")
        self.expect("fail", "2001:db8::1", "a@ip4.test")
        self.expect("pass", "203.0.113.9", "a@ip-any.test")
        self.expect("fail", "2001:db8::1", "a@ip-any.test")

    def test_ip4_mapped_client_is_ipv4(self):
        self.expect("pass", "::ffff:192.0.2.77", "a@ip4.test")
        self.expect("fail", "::ffff:192.0.3.77", "a@ip4.test")

    def test_ip6(self):
        self.expect("pass", "2001:db8:1::5", "a@ip6.test")
        self.expect("pass", "2001:db8:1:ffff:ffff:ffff:ffff:ffff", "a@ip6.test")
        self.expect("pass", "2001:db8:2::7", "a@ip6.test")
        self.expect("fail", "2001:db8:2::8", "a@ip6.test")
        self.expect("fail", "192.0.2.1", "a@ip6.test")

    # a

    def test_a(self):
        self.expect("pass", "192.0.2.10", "a@a.test")
        self.expect("fail", "192.0.2.11", "a@a.test")
        self.expect("pass", "2001:db8::10", "a@a.test")
        self.expect("fail", "2001:db8::11", "a@a.test")
        self.expect("pass", "192.0.2.21", "a@a-other.test")
        self.expect("fail", "192.0.2.10", "a@a-other.test")

    def test_a_cidr(self):
        self.expect("pass", "192.0.2.200", "a@a-cidr.test")
        self.expect("fail", "192.0.3.10", "a@a-cidr.test")
        self.expect("pass", "2001:db8::ffff:1", "a@a-cidr.test")
        self.expect("fail", "2001:db8:0:1::10", "a@a-cidr.test")
        # a prefix for one family leaves the other whole
        self.expect("pass", "192.0.2.200", "a@a-cidr4.test")
        self.expect("fail", "2001:db8::11", "a@a-cidr4.test")
        self.expect("pass", "2001:db8::11", "a@a-cidr6.test")
        self.expect("fail", "192.0.2.11", "a@a-cidr6.test")

    # mx

    def test_mx(self):
        self.expect("pass", "192.0.2.31", "a@mx.test")
        self.expect("pass", "192.0.2.32", "a@mx.test")
        self.expect("pass", "2001:db8::32", "a@mx.test")
        self.expect("fail", "192.0.2.33", "a@mx.test")
        self.expect("fail", "192.0.2.1", "a@mx-null.test")

    def test_mx_cidr(self):
        self.expect("pass", "192.0.2.40", "a@mx-cidr.test")
        self.expect("pass", "192.0.2.47", "a@mx-cidr.test")
        self.expect("fail", "192.0.2.48", "a@mx-cidr.test")
        self.expect("pass", "2001:db8::ff", "a@mx-cidr.test")
        self.expect("fail", "2001:db8::100", "a@mx-cidr.test")

    def test_mx_ten_names_but_not_eleven(self):
        self.expect("pass", "192.0.2.35", "a@mx-ten.test")
        self.expect("permerror", "192.0.2.35", "a@mx-eleven.test")
        self.expect("permerror", "192.0.2.251", "a@mx-eleven.test")

    def test_mx_host_servfail_is_temperror(self):
        self.expect("temperror", "192.0.2.1", "a@mx-servfail.test")

    # ptr

    def test_ptr(self):
        self.expect("pass", "192.0.2.50", "a@ptr.test")
        self.expect("pass", "192.0.2.50", "a@ptr-other.test")
        self.expect("pass", "2001:db8::50", "a@ptr.test")
        # a name that does not resolve back to the address is not validated
        self.expect("fail", "192.0.2.53", "a@ptr.test")
        # no PTR at all: no match, not an error
        self.expect("fail", "192.0.2.54", "a@ptr.test")
        # valid, but outside the target
        self.expect("fail", "192.0.2.50", "a@ptr-many.test")

    def test_ptr_names_past_ten_are_ignored(self):
        self.expect("pass", "192.0.2.52", "a@ptr-many.test")
        self.expect("fail", "192.0.2.51", "a@ptr-many.test")

    # exists

    def test_exists(self):
        self.expect("pass", "192.0.2.77", "a@exists.test")
        self.expect("fail", "192.0.2.78", "a@exists.test")
        # an A look-up, even for an IPv6 client (5.7)
        self.expect("pass", "2001:db8::1", "a@exists6.test")

    # include

    def test_include(self):
        self.expect("pass", "192.0.2.60", "a@inc.test")
        # the include's softfail is no match: the next term decides
        self.expect("fail", "192.0.2.61", "a@inc.test")
        self.expect("softfail", "192.0.2.60", "a@inc-q.test")
        self.expect("neutral", "192.0.2.61", "a@inc-q.test")

    def test_include_of_no_record_is_permerror(self):
        self.expect("permerror", "192.0.2.1", "a@inc-none.test")
        self.expect("permerror", "192.0.2.1", "a@inc-nx.test")

    def test_include_errors_propagate(self):
        self.expect("permerror", "192.0.2.1", "a@inc-perm.test")
        self.expect("temperror", "192.0.2.1", "a@inc-servfail.test")

    def test_include_checks_its_own_domain(self):
        self.expect("pass", "192.0.2.1", "a@inc-d.test")

    # redirect, exp, unknown modifiers

    def test_redirect(self):
        self.expect("pass", "192.0.2.70", "a@redir.test")
        self.expect("fail", "192.0.2.72", "a@redir.test")
        self.expect("pass", "192.0.2.71", "a@redir-matched.test")
        self.expect("pass", "192.0.2.70", "a@redir-matched.test")
        self.expect("fail", "192.0.2.72", "a@redir-matched.test")

    def test_redirect_only_when_nothing_matched(self):
        self.expect("neutral", "192.0.2.70", "a@redir-all.test")

    def test_redirect_to_no_record_is_permerror(self):
        self.expect("permerror", "192.0.2.1", "a@redir-none.test")
        self.expect("permerror", "192.0.2.1", "a@redir-nx.test")

    def test_redirect_changes_the_domain(self):
        self.expect("pass", "192.0.2.1", "a@redir-d.test")

    def test_exp_is_ignored(self):
        self.expect("fail", "192.0.2.1", "a@exp.test")
        # its target is never asked: a broken one changes nothing
        self.expect("pass", "192.0.2.1", "a@exp-servfail.test")
        self.expect("fail", "192.0.2.2", "a@exp-servfail.test")
        # but its syntax is checked with the record's
        self.expect("permerror", "192.0.2.1", "a@exp-bad.test")

    def test_unknown_modifiers_are_ignored(self):
        self.expect("pass", "192.0.2.1", "a@unknown-mod.test")
        self.expect("fail", "192.0.2.2", "a@unknown-mod.test")

    # the limits of 4.6.4

    def test_ten_lookups_pass_eleven_are_permerror(self):
        self.expect("pass", "192.0.2.80", "a@limit10.test")
        self.expect("fail", "192.0.2.81", "a@limit10.test")
        self.expect("permerror", "192.0.2.80", "a@limit11.test")
        self.expect("permerror", "192.0.2.81", "a@limit11.test")

    def test_only_evaluated_terms_count(self):
        self.expect("pass", "192.0.2.80", "a@limit-lazy.test")

    def test_every_querying_term_counts(self):
        # a mx ptr exists include a a a a redirect: ten
        self.expect("pass", "192.0.2.80", "a@limit-mixed.test")
        # one a more: the redirect is the eleventh
        self.expect("permerror", "192.0.2.80", "a@limit-mixed3.test")

    def test_include_depth_follows_from_the_limit(self):
        self.expect("pass", "192.0.2.81", "a@inc10.test")
        self.expect("fail", "192.0.2.82", "a@inc10.test")
        self.expect("permerror", "192.0.2.81", "a@inc11.test")

    def test_two_void_lookups_but_not_three(self):
        self.expect("pass", "192.0.2.90", "a@void2.test")
        self.expect("permerror", "192.0.2.90", "a@void3.test")
        # NOERROR without an answer is void too
        self.expect("permerror", "192.0.2.90", "a@void-nodata.test")

    # DNS failures, missing, doubled and broken records

    def test_servfail_is_temperror(self):
        self.expect("temperror", "192.0.2.1", "a@servfail.test")
        self.expect("temperror", "192.0.2.1", "a@a-servfail.test")

    def test_no_record_is_none(self):
        self.expect("none", "192.0.2.1", "a@norecord.test")
        self.expect("none", "192.0.2.1", "a@aonly.test")
        self.expect("none", "192.0.2.1", "a@nxdomain.test")

    def test_no_domain_to_check_is_none(self):
        self.expect("none", "192.0.2.1", "a@[192.0.2.1]")
        self.expect("none", "192.0.2.1", "a@localhost")

    def test_two_records_are_permerror(self):
        self.expect("permerror", "192.0.2.1", "a@two.test")
        # v=spf10 and other text are not SPF records: one is left
        self.expect("pass", "192.0.2.1", "a@two-one.test")

    def test_syntax_errors_are_permerror(self):
        self.expect("permerror", "192.0.2.1", "a@syntax.test")
        self.expect("permerror", "192.0.2.1", "a@syntax-late.test")

    def test_character_strings_are_joined(self):
        self.expect("pass", "192.0.2.110", "a@split.test")
        self.expect("fail", "192.0.2.1", "a@split.test")
        self.expect("pass", "192.0.2.111", "a@long.test")

    # the null sender

    def test_null_sender_is_checked_by_helo(self):
        for null in ("", "<>"):
            self.expect("pass", "192.0.2.100", null, "helo.test")
            self.expect("fail", "192.0.2.101", null, "helo.test")
        # as postmaster@HELO (2.4)
        self.expect("pass", "192.0.2.1", "<>", "helo-l.test")
        self.expect("fail", "192.0.2.1", "bob@helo-l.test")
        p = self.kotak.kotak("check", "spf", "192.0.2.100", "<>", "helo.test")
        self.assertIn("HELO helo.test", p.stderr)

    def test_angle_brackets_are_taken_off(self):
        self.expect("pass", "192.0.2.77", "<a@ip4.test>")

    # the command line

    def usage_error(self, *args):
        p = self.kotak.kotak("check", "spf", *args, check=False)
        self.assertEqual(p.returncode, 2, f"{args}: {p.stdout} {p.stderr}")
        self.assertEqual(p.stdout, "")
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertTrue(p.stderr.startswith("kotak: "), p.stderr)
        return p.stderr

    def test_bad_arguments(self):
        self.assertIn("no IP address", self.usage_error("192.0.2.999", "a@q-pass.test"))
        self.assertIn("no IP address", self.usage_error("q-pass.test", "a@q-pass.test"))
        self.usage_error("192.0.2.1", "a@q-pass.test", "helo.test", "extra")
        self.usage_error("192.0.2.1")
        self.usage_error()
        self.assertIn("HELO", self.usage_error("192.0.2.1", "<>"))
        self.assertIn("HELO", self.usage_error("192.0.2.1", ""))
        self.usage_error("192.0.2.1", "<a@q-pass.test")


# --- RFC 7208 Appendix A ------------------------------------------------------

# The zone at the top of Appendix A.
APPENDIX = {
    "example.com": {"MX": [[10, "mail-a.example.com"], [20, "mail-b.example.com"]],
                    "A": ["192.0.2.10", "192.0.2.11"]},
    "amy.example.com": {"A": ["192.0.2.65"]},
    "bob.example.com": {"A": ["192.0.2.66"]},
    "mail-a.example.com": {"A": ["192.0.2.129"]},
    "mail-b.example.com": {"A": ["192.0.2.130"]},
    "www.example.com": {"CNAME": "example.com"},
    "example.org": {"MX": [[10, "mail-c.example.org"]]},
    "mail-c.example.org": {"A": ["192.0.2.140"]},
    rev("192.0.2.10"): {"PTR": ["example.com"]},
    rev("192.0.2.11"): {"PTR": ["example.com"]},
    rev("192.0.2.65"): {"PTR": ["amy.example.com"]},
    rev("192.0.2.66"): {"PTR": ["bob.example.com"]},
    rev("192.0.2.129"): {"PTR": ["mail-a.example.com"]},
    rev("192.0.2.130"): {"PTR": ["mail-b.example.com"]},
    rev("192.0.2.140"): {"PTR": ["mail-c.example.org"]},
    # the rogue reverse domain that claims to be bob.example.com
    rev("10.0.0.4"): {"PTR": ["bob.example.com"]},
}

CLIENTS = ["192.0.2.10", "192.0.2.11", "192.0.2.65", "192.0.2.66", "192.0.2.129",
           "192.0.2.130", "192.0.2.131", "192.0.2.140", "192.0.2.141", "192.0.2.144",
           "192.0.2.200", "10.0.0.4"]


def with_records(records):
    """The Appendix zone with TXT records added: {name: record}."""
    zone = {name: dict(entry) for name, entry in APPENDIX.items()}
    for name, record in records.items():
        zone.setdefault(name, {})["TXT"] = [record]
    return zone


class AppendixA(unittest.TestCase):
    """RFC 7208 A.1: each record published for example.com, and the clients
    the Appendix says pass; every other client of CLIENTS must fail. A.2 and
    A.3 add records of their own."""

    @classmethod
    def setUpClass(cls):
        cls.dns = DnsServer(with_records({}))
        cls.dns.start()
        cls.kotak = KotakInstance(config={"dns": {"servers": cls.dns.servers}}, users=False)
        try:
            cls.kotak.create()
        except Exception:
            cls.kotak.close()
            cls.dns.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.kotak.close()
        cls.dns.close()

    def spf(self, ip, sender):
        p = self.kotak.kotak("check", "spf", ip, sender, check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.strip()

    def passes_exactly(self, record, passing):
        self.dns.set_zone(with_records({"example.com": record}))
        for ip in CLIENTS:
            want = "pass" if ip in passing else "fail"
            self.assertEqual(self.spf(ip, "someone@example.com"), want, f"{record}: {ip}")

    def test_a1_all(self):
        self.passes_exactly("v=spf1 +all", CLIENTS)

    def test_a1_a(self):
        self.passes_exactly("v=spf1 a -all", ["192.0.2.10", "192.0.2.11"])

    def test_a1_a_of_a_domain_without_addresses(self):
        self.passes_exactly("v=spf1 a:example.org -all", [])

    def test_a1_mx(self):
        self.passes_exactly("v=spf1 mx -all", ["192.0.2.129", "192.0.2.130"])

    def test_a1_mx_of_another_domain(self):
        self.passes_exactly("v=spf1 mx:example.org -all", ["192.0.2.140"])

    def test_a1_two_mx(self):
        self.passes_exactly("v=spf1 mx mx:example.org -all",
                            ["192.0.2.129", "192.0.2.130", "192.0.2.140"])

    def test_a1_mx_cidr(self):
        # 192.0.2.128/30 and 192.0.2.140/30
        self.passes_exactly("v=spf1 mx/30 mx:example.org/30 -all",
                            ["192.0.2.129", "192.0.2.130", "192.0.2.131", "192.0.2.140",
                             "192.0.2.141"])

    def test_a1_ptr(self):
        # 192.0.2.65 passes; 192.0.2.140 is valid but not in example.com;
        # 10.0.0.4's name does not resolve back to it
        self.passes_exactly("v=spf1 ptr -all",
                            ["192.0.2.10", "192.0.2.11", "192.0.2.65", "192.0.2.66",
                             "192.0.2.129", "192.0.2.130"])

    def test_a1_ip4(self):
        self.passes_exactly("v=spf1 ip4:192.0.2.128/28 -all",
                            ["192.0.2.129", "192.0.2.130", "192.0.2.131", "192.0.2.140",
                             "192.0.2.141"])

    def test_a2_include_and_redirect(self):
        # example.net is not in the Appendix's zone: here it publishes a /24.
        self.dns.set_zone(with_records({
            "example.com": "v=spf1 mx -all",
            "example.net": "v=spf1 ip4:198.51.100.0/24 -all",
            "example.org": "v=spf1 include:example.com include:example.net -all",
            "la.example.org": "v=spf1 redirect=example.org",
            "ny.example.org": "v=spf1 redirect=example.org",
            "sf.example.org": "v=spf1 redirect=example.org",
        }))
        for sender in ("a@example.org", "a@la.example.org", "a@ny.example.org",
                       "a@sf.example.org"):
            self.assertEqual(self.spf("192.0.2.129", sender), "pass", sender)
            self.assertEqual(self.spf("198.51.100.9", sender), "pass", sender)
            self.assertEqual(self.spf("192.0.2.65", sender), "fail", sender)

    def test_a3_dnsbl_style(self):
        zone = with_records({
            "example.com": "v=spf1 mx include:mobile-users._spf.%{d} "
                           "include:remote-users._spf.%{d} -all",
            "mobile-users._spf.example.com": "v=spf1 exists:%{l1r+}.%{d}",
            "remote-users._spf.example.com": "v=spf1 exists:%{ir}.%{l1r+}.%{d}",
        })
        for name in ("mary.mobile-users._spf.example.com", "fred.mobile-users._spf.example.com",
                     "15.15.168.192.joel.remote-users._spf.example.com",
                     "16.15.168.192.joel.remote-users._spf.example.com"):
            zone[name] = {"A": ["127.0.0.2"]}
        self.dns.set_zone(zone)
        self.assertEqual(self.spf("203.0.113.5", "mary@example.com"), "pass")
        self.assertEqual(self.spf("203.0.113.5", "fred@example.com"), "pass")
        self.assertEqual(self.spf("203.0.113.5", "joel@example.com"), "fail")
        self.assertEqual(self.spf("192.168.15.15", "joel@example.com"), "pass")
        self.assertEqual(self.spf("192.168.15.16", "joel@example.com"), "pass")
        # %{l1r+}: the part before the first "+" of the local part
        self.assertEqual(self.spf("192.168.15.16", "joel+lists@example.com"), "pass")
        self.assertEqual(self.spf("192.168.15.17", "joel@example.com"), "fail")
        self.assertEqual(self.spf("192.0.2.129", "anyone@example.com"), "pass")


if __name__ == "__main__":
    unittest.main()
