"""bench/dns_nx.py PORT — a DNS server on 127.0.0.1:PORT that answers every
question at once with NXDOMAIN: what a benchmark's kotak asks about the
senders' domains (SPF, DMARC), answered the same every time, so that the
figure is kotak's and not the machine's resolver's (which may be slow or
drop a question: a 5 s timeout for that message)."""
import socket, struct, sys
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
    s.sendto(struct.pack(">HHHHHH", qid, 0x8480 | (flags & 0x7900) | 3, 1, 0, 0, 0) + q[12:end], a)
