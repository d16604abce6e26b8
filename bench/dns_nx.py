"""bench/dns_nx.py PORT — a DNS server on 127.0.0.1:PORT that answers every
question at once with NXDOMAIN: what a benchmark's kotak asks about the
senders' domains (SPF, DMARC), answered the same every time, so that the
figure is kotak's and not the machine's resolver's (which may be slow or
drop a question: a 5 s timeout for that message). As every real server's
NXDOMAIN, it carries the zone's SOA (RFC 2308), here with a negative TTL of
300 s, which a resolver may keep the answer for."""
import socket, struct, sys
NEG_TTL = 300
# The authority section: an SOA owned by the root (a pointer would need the
# question's labels), mname and rname the root too, then serial, refresh,
# retry, expire and MINIMUM.
SOA = (b"\x00" + struct.pack(">HHIH", 6, 1, NEG_TTL, 22) + b"\x00\x00"
       + struct.pack(">IIIII", 1, 3600, 600, 86400, NEG_TTL))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    q, a = s.recvfrom(4096)
    if len(q) < 12:
        continue
    qid, flags = struct.unpack(">HH", q[:4])
    end = 12
    while end < len(q) and q[end] != 0:
        end += q[end] + 1
    end += 5  # the root label, QTYPE, QCLASS: the question is sent back with the answer
    s.sendto(struct.pack(">HHHHHH", qid, 0x8480 | (flags & 0x7900) | 3, 1, 0, 1, 0) + q[12:end] + SOA, a)
