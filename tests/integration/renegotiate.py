"""A TLS 1.2 client that, once connected, sends renegotiation requests
(encrypted ClientHello records) one per segment, as fast as the socket
takes them, for SECONDS, and never reads. Run by test_core.py under
Debian's /usr/bin/python3, for python3-cryptography's AES-GCM: the record
layer here is written by hand, since no client library sends such records
on request.

    renegotiate.py CAFILE HOSTNAME PORT SECONDS   -> prints "sent=N closed=0|1"
"""
import hashlib
import hmac
import socket
import ssl
import struct
import sys
import tempfile
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

cafile, hostname, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
keylog = tempfile.NamedTemporaryFile(suffix=".keys")
ctx = ssl.create_default_context(cafile=cafile)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.set_ciphers("ECDHE+AESGCM")
ctx.keylog_filename = keylog.name
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
o = ctx.wrap_bio(inc, out, server_hostname=hostname)
first = b""
while True:
    try:
        o.do_handshake()
        break
    except ssl.SSLWantReadError:
        data = out.read()
        if data:
            s.sendall(data)
        got = s.recv(65536)
        first += got
        inc.write(got)
data = out.read()
if data:
    s.sendall(data)
name = o.cipher()[0]
line = [l for l in open(keylog.name) if l.startswith("CLIENT_RANDOM")][-1].split()
client_random, master = bytes.fromhex(line[1]), bytes.fromhex(line[2])
server_random = first[11:43]  # in the ServerHello, the first record back
digest = hashlib.sha384 if name.endswith("SHA384") else hashlib.sha256


def prf(secret, label, seed, n):  # RFC 5246 5
    seed = label + seed
    a, res = seed, b""
    while len(res) < n:
        a = hmac.new(secret, a, digest).digest()
        res += hmac.new(secret, a + seed, digest).digest()
    return res[:n]


klen = 32 if "AES256" in name else 16
block = prf(master, b"key expansion", server_random + client_random, 2 * klen + 8)
aes, iv = AESGCM(block[:klen]), block[2 * klen:2 * klen + 4]
seq = 1  # the Finished record was 0


def record(ctype, plaintext):  # RFC 5288 3
    global seq
    explicit = struct.pack(">Q", seq)
    aad = struct.pack(">QBHH", seq, ctype, 0x0303, len(plaintext))
    sealed = aes.encrypt(iv + explicit, plaintext, aad)
    seq += 1
    return struct.pack(">BHH", ctype, 0x0303, len(explicit + sealed)) + explicit + sealed


s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.settimeout(0.5)
sent, closed = 0, 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        s.send(record(22, b"\x01\x00\x00\x00"))
        sent += 1
    except socket.timeout:
        continue
    except OSError:
        closed = 1
        break
print(f"sent={sent} closed={closed}")
