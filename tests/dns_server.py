#!/usr/bin/python3
"""A small authoritative DNS server for tests, on python3-dnslib.

    /usr/bin/python3 tests/dns_server.py ZONE [--port N] [--host 127.0.0.1]

It serves ZONE on HOST:PORT over UDP and TCP (PORT 0 or none: a free one is
picked) and prints the port on a line of its own on stdout once both are
ready. It stops on SIGTERM or SIGINT, and when its stdin reaches end of file
when stdin is a pipe, so that it never outlives the test that started it.

ZONE is a file holding a JSON object or a Python dict literal, one entry per
name (case does not matter; "*.example.test" matches any name below
example.test that has no entry of its own):

    {
      "example.test": {"MX": [[10, "mx1.example.test"], [20, "mx2.example.test"]]},
      "mx1.example.test": {"A": ["192.0.2.1"], "AAAA": ["2001:db8::1"]},
      "alias.example.test": {"CNAME": "mx1.example.test"},
      "nullmx.example.test": {"MX": [[0, "."]]},
      "broken.test": {"rcode": "SERVFAIL"},        # or REFUSED, NXDOMAIN, ...
      "silent.test": {"drop": true},               # never answered
      "slow.test": {"delay_ms": 500, "A": ["192.0.2.9"]},
      "half.test": {"A": ["192.0.2.7"], "types": {"AAAA": {"rcode": "SERVFAIL"}}},
      "spf.test": {"TXT": ["v=spf1 -all", ["two ", "strings"]]},
      "1.2.0.192.in-addr.arpa": {"PTR": ["mx1.example.test"]}
    }

A TXT record is a string (split into character-strings of 255 octets) or
a list of strings, each one character-string of the record. Records have a
TTL of 60 seconds, or the entry's "ttl" (0 for a record a test changes
while a resolver that caches is running).

A name without an entry is NXDOMAIN; an entry without records of the type
asked is NOERROR with no answer (NODATA). Neither carries an SOA, so that
no resolver keeps it (RFC 2308), unless the entry (for NXDOMAIN, the
nearest entry above the name) has "negative_ttl": N, the zone's SOA with
MINIMUM N and TTL N, or the entry's "soa_ttl"; such an entry's delay_ms
then holds for the NXDOMAIN too, also at the end of a CNAME. "types" overrides rcode, drop and
delay_ms for one query type. An answer longer than 512 octets (or the
client's EDNS size) goes over UDP truncated, so that the client asks again
over TCP. Exit status 77 when dnslib is missing: the test is then skipped.
"""

import argparse
import ast
import concurrent.futures
import json
import os
import signal
import socket
import socketserver
import stat
import struct
import sys
import threading
import time

try:
    from dnslib import CNAME, MX, PTR, QTYPE, RCODE, RR, SOA, TXT, AAAA, A, DNSRecord
except ImportError:
    print("python3-dnslib is missing (Debian: apt-get install python3-dnslib)", file=sys.stderr)
    sys.exit(77)

TTL = 60


def load_zone(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        zone = json.loads(text)
    except ValueError:
        zone = ast.literal_eval(text)
    if not isinstance(zone, dict):
        raise SystemExit(f"{path}: the zone must be an object, name -> entry")
    return {name.lower().rstrip("."): entry for name, entry in zone.items()}


class Zone:
    def __init__(self, entries):
        self.entries = entries

    def find(self, name):
        """The entry for name, an exact one first, else the nearest wildcard."""
        name = name.lower().rstrip(".")
        if name in self.entries:
            return self.entries[name]
        labels = name.split(".")
        for i in range(1, len(labels)):
            wild = "*." + ".".join(labels[i:])
            if wild in self.entries:
                return self.entries[wild]
        return None

    def apex(self, name):
        """The nearest entry above name that has a negative_ttl (its zone's SOA), or None."""
        labels = name.lower().rstrip(".").split(".")
        for i in range(1, len(labels)):
            entry = self.entries.get(".".join(labels[i:]))
            if entry is not None and "negative_ttl" in entry:
                return ".".join(labels[i:]), entry
        return None, None

    @staticmethod
    def add_soa(reply, owner, entry):
        """The SOA of a negative answer: its TTL and MINIMUM are the entry's negative_ttl."""
        if entry is not None and "negative_ttl" in entry:
            n = entry["negative_ttl"]
            reply.add_auth(RR(owner, QTYPE.SOA, ttl=entry.get("soa_ttl", n), rdata=SOA(
                "ns." + owner, "hostmaster." + owner, (1, 3600, 600, 86400, n))))

    @staticmethod
    def behaviour(entry, qtype, key, default=None):
        typed = entry.get("types", {}).get(qtype, {})
        return typed.get(key, entry.get(key, default))

    def answer(self, request):
        """The reply to request, or None to stay silent; also a delay in seconds."""
        reply = request.reply()  # aa=1, ra=1, the question echoed
        reply.header.ra = 0
        q = request.q
        qtype = QTYPE.get(q.qtype)
        name = str(q.qname)
        entry = self.find(name)
        if entry is None:
            reply.header.rcode = RCODE.NXDOMAIN
            apex, zone = self.apex(name)
            self.add_soa(reply, apex, zone)
            return reply, (zone or {}).get("delay_ms", 0) / 1000.0
        if self.behaviour(entry, qtype, "drop", False):
            return None, 0.0
        delay = self.behaviour(entry, qtype, "delay_ms", 0) / 1000.0
        rcode = self.behaviour(entry, qtype, "rcode")
        if rcode is not None:
            reply.header.rcode = getattr(RCODE, rcode.upper())
            return reply, delay
        ttl = entry.get("ttl", TTL)
        seen = set()
        owner = name
        while entry is not None and "CNAME" in entry and qtype != "CNAME" and owner not in seen:
            seen.add(owner)
            target = entry["CNAME"]
            reply.add_answer(RR(owner, QTYPE.CNAME, ttl=ttl, rdata=CNAME(target)))
            owner = target
            entry = self.find(target)
        if entry is None:
            reply.header.rcode = RCODE.NXDOMAIN
            apex, zone = self.apex(owner)
            self.add_soa(reply, apex, zone)
            return reply, max(delay, (zone or {}).get("delay_ms", 0) / 1000.0)
        for pref, host in entry.get("MX", []) if qtype == "MX" else []:
            reply.add_answer(RR(owner, QTYPE.MX, ttl=ttl, rdata=MX(host, pref)))
        for addr in entry.get("A", []) if qtype == "A" else []:
            reply.add_answer(RR(owner, QTYPE.A, ttl=ttl, rdata=A(addr)))
        for addr in entry.get("AAAA", []) if qtype == "AAAA" else []:
            reply.add_answer(RR(owner, QTYPE.AAAA, ttl=ttl, rdata=AAAA(addr)))
        for text in entry.get("TXT", []) if qtype == "TXT" else []:
            reply.add_answer(RR(owner, QTYPE.TXT, ttl=ttl, rdata=TXT(txt_strings(text))))
        for host in entry.get("PTR", []) if qtype == "PTR" else []:
            reply.add_answer(RR(owner, QTYPE.PTR, ttl=ttl, rdata=PTR(host)))
        if not reply.rr:
            self.add_soa(reply, owner, entry)
        return reply, delay


def txt_strings(text):
    """A TXT record's character-strings: a list as given, a string in pieces of 255."""
    if isinstance(text, list):
        return [t.encode() for t in text]
    data = text.encode()
    return [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]


def udp_limit(request):
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(512, rr.rclass)
    return 512


def truncated(request, reply):
    """reply with no records and TC set: the client retries over TCP."""
    short = request.reply()
    short.header.ra = 0
    short.header.rcode = reply.header.rcode
    short.header.tc = 1
    return short


class UDPServer:
    """Reads datagrams as fast as they come and answers them from a pool of
    threads: a burst of hundreds of queries (one per c-ares query, all sent
    at once) must not overflow the socket's receive queue while answers are
    being built, and a slow answer must not hold the others back."""

    def __init__(self, host, port, zone):
        self.zone = zone
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
        self.sock.bind((host, port))
        self.server_address = self.sock.getsockname()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=32)

    def serve_forever(self):
        while True:
            try:
                data, client = self.sock.recvfrom(65535)
            except OSError:
                return
            self.pool.submit(self.handle, data, client)

    def handle(self, data, client):
        try:
            request = DNSRecord.parse(data)
        except Exception:
            return
        reply, delay = self.zone.answer(request)
        if reply is None:
            return
        if delay:
            time.sleep(delay)
        packet = reply.pack()
        if len(packet) > udp_limit(request):
            packet = truncated(request, reply).pack()
        try:
            self.sock.sendto(packet, client)
        except OSError:
            pass

    def server_close(self):
        self.sock.close()

    def shutdown(self):
        self.sock.close()
        self.pool.shutdown(wait=False)


class TCPHandler(socketserver.BaseRequestHandler):
    def read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def handle(self):
        while True:
            head = self.read_exact(2)
            if head is None:
                return
            data = self.read_exact(struct.unpack("!H", head)[0])
            if data is None:
                return
            try:
                request = DNSRecord.parse(data)
            except Exception:
                return
            reply, delay = self.server.zone.answer(request)
            if reply is None:
                continue
            if delay:
                time.sleep(delay)
            packet = reply.pack()
            self.request.sendall(struct.pack("!H", len(packet)) + packet)


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def bind(host, port, zone):
    """UDP and TCP servers on one port (a free one when port is 0)."""
    for _ in range(50):
        udp = UDPServer(host, port, zone)
        chosen = udp.server_address[1]
        try:
            tcp = TCPServer((host, chosen), TCPHandler)
        except OSError:
            udp.server_close()
            if port:
                raise
            continue
        tcp.zone = zone
        return udp, tcp
    raise SystemExit("no free port for both UDP and TCP")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zone")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    zone = Zone(load_zone(args.zone))
    udp, tcp = bind(args.host, args.port, zone)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for server in (udp, tcp):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(udp.server_address[1], flush=True)

    if stat.S_ISFIFO(os.fstat(0).st_mode):
        def watch_stdin():
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    while not stop.wait(0.2):
        pass
    udp.shutdown()
    tcp.shutdown()


if __name__ == "__main__":
    main()
