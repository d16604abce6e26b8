#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (issue 5).

    python3 tests/fuzz/make_corpus.py

Every payload of issue 5's attack list is here, in each target's input
format (see the comment at the top of each fuzz_<name>.c for the header
bytes): SMTP smuggling with every end-of-data variant and a second
transaction pipelined behind the real end, STARTTLS/STLS with plaintext
behind, open-relay tricks, header and log injection through HELO, MAIL,
RCPT and the AUTH identity, overlong lines, NUL bytes, odd ESMTP
parameters, HTTP requests on the mail ports, and ordinary conversations.

Seeds are named; files whose names start with "crash-" are inputs that
once found a bug and are kept by hand, never rewritten here. Run it again
after changing a payload and commit the result.
"""
import base64
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def b64(s):
    return base64.b64encode(s).decode("ascii").encode("ascii")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- SMTP ------------------------------------------------------------------

EHLO = b"EHLO client.test\r\n"
TX = b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
BODY = b"From: bob@remote.test\r\nSubject: hello\r\n\r\nHello Alice.\r\n..a stuffed dot\r\n"
SMUGGLED = (b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
            b"From: admin@example.test\r\nSubject: smuggled\r\n\r\nsmuggled\r\n")
END = b"\r\n.\r\n"

# The end-of-data look-alikes of SMTP smuggling (issue 5), after a line of data.
SMUGGLE_ENDS = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "crlf-dot-cr": b"\r\n.\r",
    "crlf-dot-nul-crlf": b"\r\n.\x00\r\n",
}

# Message data as it follows a 354: the smuggling payloads, stuffing, limits.
DATA_STREAMS = {
    "plain": BODY + b".\r\n",
    "empty": b".\r\n",
    "dots": b"..\r\n...\r\n.x\r\n..\r\n.\r\n",
    "dot-cr-x": b"a\r\n.\rx\r\n.\r\n",
    "held-cr": b"line\r\n.\r\r\n.\r\n",
    "no-end": b"line one\r\nline two\r\n.",
    "long-line": b"x" * 1200 + b"\r\n.\r\n",
    "bare-lf-body": b"one\ntwo\r\n.\r\n",
    "bare-cr-body": b"one\rtwo\r\n.\r\n",
    "nul-body": b"a\x00b\r\n.\r\n",
    "pipelined-second": BODY + b".\r\n" + SMUGGLED + b".\r\n",
}
for name, end in SMUGGLE_ENDS.items():
    DATA_STREAMS["smuggle-" + name] = BODY[:-2] + end + SMUGGLED + b".\r\n"


def conversation(*parts):
    return b"".join(parts)


AUTH_PLAIN = b"AUTH PLAIN " + b64(b"\x00alice@example.test\x00secret") + b"\r\n"
SMTP_STREAMS = {
    "normal": conversation(EHLO, TX, BODY, b".\r\nQUIT\r\n"),
    "helo-normal": conversation(b"HELO client.test\r\n", TX, BODY, b".\r\nQUIT\r\n"),
    "two-messages": conversation(EHLO, TX, BODY, b".\r\n", TX, b"second\r\n.\r\nQUIT\r\n"),
    "pipelined-second-tx": conversation(EHLO, TX, BODY, b".\r\n", SMUGGLED, b".\r\nQUIT\r\n"),
    "empty-message": conversation(EHLO, TX, b".\r\nQUIT\r\n"),
    "rset-noop-help-vrfy": b"EHLO a.test\r\nRSET\r\nNOOP\r\nHELP\r\nVRFY alice\r\nEXPN list\r\n"
                           b"BDAT 10 LAST\r\nQUIT\r\n",
    "multi-rcpt": conversation(EHLO, b"MAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\n"
                               b"RCPT TO:<sales@example.test>\r\nRCPT TO:<bob+tag@example.test>\r\n"
                               b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<fwd@example.test>\r\n"
                               b"RCPT TO:<dbfail@example.test>\r\nDATA\r\n", BODY, b".\r\nQUIT\r\n"),
    "out-of-order": b"MAIL FROM:<a@b.test>\r\nDATA\r\nRCPT TO:<alice@example.test>\r\nEHLO x\r\n"
                    b"DATA\r\nQUIT\r\n",
    "starttls-injection": b"EHLO client.test\r\nSTARTTLS\r\nMAIL FROM:<evil@evil.test>\r\n"
                          b"RCPT TO:<alice@example.test>\r\nDATA\r\ninjected\r\n.\r\n",
    "starttls-then-ehlo": b"EHLO client.test\r\nSTARTTLS\r\nEHLO client.test\r\nQUIT\r\n",
    "starttls-lower": b"ehlo x.test\r\nstarttls\r\nrset\r\n",
    "starttls-arg": b"EHLO x.test\r\nSTARTTLS now\r\nQUIT\r\n",
    "starttls-trailing-space": b"EHLO x.test\r\nSTARTTLS \r\nMAIL FROM:<a@b.test>\r\n",
    "starttls-in-tx": conversation(EHLO, b"MAIL FROM:<a@b.test>\r\nSTARTTLS\r\n"),
    "relay-percent": conversation(EHLO, b"MAIL FROM:<a@remote.test>\r\n"
                                  b"RCPT TO:<user%other.test@example.test>\r\nDATA\r\n", BODY, b".\r\n"),
    "relay-quoted": conversation(EHLO, b"MAIL FROM:<a@remote.test>\r\n"
                                 b"RCPT TO:<\"alice@other.test\"@example.test>\r\n"
                                 b"RCPT TO:<\"alice\"@example.test>\r\nDATA\r\n", BODY, b".\r\n"),
    "relay-source-route": conversation(EHLO, b"MAIL FROM:<@a.test,@b.test:a@remote.test>\r\n"
                                       b"RCPT TO:<@example.test:victim@other.test>\r\n"
                                       b"RCPT TO:<@relay.test,@x.test:alice@example.test>\r\n"
                                       b"DATA\r\n", BODY, b".\r\n"),
    "relay-bang": conversation(EHLO, b"MAIL FROM:<a@remote.test>\r\n"
                               b"RCPT TO:<other.test!victim@example.test>\r\n"
                               b"RCPT TO:<a!b@example.test>\r\n"),
    "relay-foreign-behind-local": conversation(
        EHLO, b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<victim@other.test@example.test>\r\n"
        b"RCPT TO:<alice@example.test@other.test>\r\nRCPT TO:<alice@example.test.other.test>\r\n"
        b"RCPT TO:<alice@example.test>, <victim@other.test>\r\nRCPT TO:<victim@other.test>\r\n"),
    "inject-helo": b"HELO evil.test\nX-Injected: yes\r\nEHLO a\rX-Injected: yes\r\n"
                   b"EHLO evil.test event=accepted user=root\r\nEHLO <script>\r\nQUIT\r\n",
    "inject-mail": conversation(EHLO, b"MAIL FROM:<a@b.test>\nX-Injected: yes\r\n"
                                b"MAIL FROM:<\"a\r\nX-Injected: yes\"@b.test>\r\n"
                                b"MAIL FROM:<a@b.test> event=accepted\r\n"),
    "inject-rcpt": conversation(EHLO, b"MAIL FROM:<a@b.test>\r\n"
                                b"RCPT TO:<alice@example.test> ORCPT=rfc822;x\nInjected: 1\r\n"
                                b"RCPT TO:<alice@example.test>\rInjected: 1\r\n"),
    "inject-auth": b"EHLO x.test\r\nAUTH PLAIN " + b64(b"\x00alice\r\nX-Evil: 1\x00pw") + b"\r\n"
                   b"AUTH LOGIN " + b64(b"alice\nevent=login result=ok") + b"\r\n"
                   + b64(b"pw") + b"\r\n",
    "long-command": b"EHLO " + b"a" * 600 + b"\r\nNOOP " + b"b" * 5000 + b"\r\nQUIT\r\n",
    "long-no-crlf": b"EHLO x.test\r\n" + b"c" * 5000,
    "long-data-line": conversation(EHLO, TX, b"x" * 1500 + b"\r\n.\r\nQUIT\r\n"),
    "nul-bytes": b"EHLO a\x00b\r\nMAIL FROM:<a\x00@b.test>\r\n\x00\r\nQUIT\r\n",
    "esmtp-params": conversation(EHLO, b"MAIL FROM:<a@b.test> X=\r\nMAIL FROM:<a@b.test> \"=x\r\n"
                                 b"MAIL FROM:<a@b.test> =\r\nMAIL FROM:<a@b.test> SIZE=\r\n"
                                 b"MAIL FROM:<a@b.test> SIZE=99999999999999999999\r\n"
                                 b"MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n"
                                 b"MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n"
                                 b"RCPT TO:<alice@example.test> ORCPT=\r\n"
                                 b"RCPT TO:<alice@example.test> ORCPT=rfc822;alice@example.test\r\n"
                                 b"RCPT TO:<alice@example.test> NOTIFY=NEVER\r\n"),
    "too-many-params": conversation(EHLO, b"MAIL FROM:<a@b.test>" + b" A=1" * 17 + b"\r\n"),
    "params-without-ehlo": b"HELO x.test\r\nMAIL FROM:<a@b.test> SIZE=10\r\n",
    "size-exceeded": conversation(EHLO, b"MAIL FROM:<a@b.test> SIZE=999999999\r\n"),
    "smtputf8": conversation(EHLO, "MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8\r\n"
                             "RCPT TO:<alice@example.test>\r\nDATA\r\nSubject: ünïcödé\r\n\r\n"
                             "ok\r\n.\r\n".encode()),
    "8bit-without-smtputf8": conversation(EHLO, "MAIL FROM:<δ@b.test>\r\n".encode()),
    "literal": conversation(EHLO, b"MAIL FROM:<a@[192.0.2.1]>\r\nRCPT TO:<alice@[IPv6:::1]>\r\n"),
    "http-get": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "http-post": b"POST /submit HTTP/1.1\r\nHost: mail.example.test\r\nContent-Length: 5\r\n"
                 b"\r\nhello",
    "bare-lf-commands": b"EHLO x.test\nMAIL FROM:<a@b.test>\nQUIT\n",
    "too-many-errors": b"X\r\n" * 12 + b"NOOP\r\n",
    "auth-plain": b"EHLO x.test\r\n" + AUTH_PLAIN + b"MAIL FROM:<alice@example.test>\r\n"
                  b"RCPT TO:<bob@other.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                  + BODY + b".\r\nQUIT\r\n",
    "auth-plain-empty-ir": b"EHLO x.test\r\nAUTH PLAIN =\r\nAUTH PLAIN\r\n"
                           + b64(b"\x00alice@example.test\x00secret") + b"\r\n",
    "auth-login": b"EHLO x.test\r\nAUTH LOGIN\r\n" + b64(b"alice@example.test") + b"\r\n"
                  + b64(b"secret") + b"\r\nMAIL FROM:<alice+tag@example.test>\r\n"
                  b"RCPT TO:<bob@example.test>\r\nDATA\r\n" + BODY + b".\r\n",
    "auth-cancel": b"EHLO x.test\r\nAUTH LOGIN\r\n*\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!!\r\n",
    "auth-as-other": b"EHLO x.test\r\nAUTH PLAIN "
                     + b64(b"bob@example.test\x00alice@example.test\x00secret") + b"\r\n",
    "sender-not-mine": b"EHLO x.test\r\n" + AUTH_PLAIN + b"MAIL FROM:<bob@example.test>\r\n"
                       b"MAIL FROM:<sales@example.test>\r\nMAIL FROM:<>\r\n",
}
for name, end in SMUGGLE_ENDS.items():
    SMTP_STREAMS["smuggle-" + name] = conversation(EHLO, TX, BODY[:-2], end, SMUGGLED, END,
                                                   b"QUIT\r\n")
SMTP_STREAMS["smuggle-crlf-dot-nul-crlf-bdat"] = conversation(
    EHLO, TX, b"x\r\n.\x00\r\nBDAT 5 LAST\r\nhello\r\n.\r\n")

# smtp_session header: byte 0 config (role in bits 0-1, bit 2 TLS offered,
# bit 3 loopback), byte 1 read boundaries, byte 2 answers.
MX, SUBMISSION, SUBMISSIONS = 0, 1, 2
TLS_OFFERED, LOOPBACK = 4, 8


def session_header(name):
    if name.startswith("auth") or name.startswith("inject-auth") or name == "sender-not-mine":
        return bytes([SUBMISSION | TLS_OFFERED | LOOPBACK, 7, 0x80])
    if name.startswith("starttls"):
        return bytes([MX | TLS_OFFERED, 3, 0])
    return bytes([MX, 0, 0])


def write_smtp():
    for name, s in SMTP_STREAMS.items():
        write("smtp_parser", name, b"\x00" + s)
        write("smtp_session", name, session_header(name) + s)
    # Other limits and read boundaries for a few.
    write("smtp_parser", "normal-small-limits", b"\xe5" + SMTP_STREAMS["normal"])
    write("smtp_parser", "smuggle-lf-dot-lf-onebyte", b"\x01" + SMTP_STREAMS["smuggle-lf-dot-lf"])
    write("smtp_session", "submission-starttls-auth",
          bytes([SUBMISSION | TLS_OFFERED, 5, 0x80]) + b"EHLO x.test\r\nAUTH PLAIN x\r\n"
          b"STARTTLS\r\n" + AUTH_PLAIN + b"EHLO x.test\r\n" + AUTH_PLAIN
          + b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
          + BODY + b".\r\nQUIT\r\n")
    write("smtp_session", "submissions-auth", bytes([SUBMISSIONS, 9, 1]) + SMTP_STREAMS["auth-plain"])
    write("smtp_session", "submission-no-auth",
          bytes([SUBMISSION, 0, 0]) + SMTP_STREAMS["normal"])
    write("smtp_session", "spool-faults", bytes([MX | 0x40, 2, 5]) + SMTP_STREAMS["two-messages"])
    write("smtp_session", "small-size", bytes([MX | 0x10, 1, 0]) + SMTP_STREAMS["normal"]
          .replace(b"Hello Alice.", b"Hello Alice. " + b"z" * 400))
    write("smtp_session", "timeout", bytes([MX | 0x80, 0, 0]) + EHLO + TX + b"partial")
    for name, s in DATA_STREAMS.items():
        write("smtp_data", name, b"\x00" + s)
    write("smtp_data", "smuggle-lf-dot-lf-onebyte", b"\x01" + DATA_STREAMS["smuggle-lf-dot-lf"])
    write("smtp_data", "long-line-small-limit", b"\x20" + b"y" * 30 + b"\r\n.\r\n")
    # The header section in DATA: what submission adds, and the loop limit.
    sub_tx = b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
    write("smtp_session", "submission-added-fields",
          bytes([SUBMISSION | LOOPBACK, 7, 0x80]) + b"EHLO x.test\r\n" + AUTH_PLAIN
          + sub_tx + b"Subject: no date\r\n\r\nbody\r\n.\r\n"
          + sub_tx + b"Date: x\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n.\r\n"
          + sub_tx + b"No headers at all\r\n.\r\n"
          + sub_tx + b"Subject: no body\r\n.\r\n"
          + sub_tx + b".\r\nQUIT\r\n")
    for n in (49, 50):
        write("smtp_session", "received-%d" % n, bytes([MX, 3, 0]) + conversation(
            EHLO, TX, b"Received: from a\r\n\tby b\r\n" * n, BODY, b".\r\nQUIT\r\n"))


# --- header sections (byte 0: read boundaries) --------------------------------

HEADER_MESSAGES = {
    "crlf": b"Received: from a\r\n\tby b\r\nDate: x\r\nMessage-ID: <1@a>\r\n\r\nbody\r\n",
    "bare-lf": b"Received: a\nDate: x\n\nReceived: body\n",
    "bare-cr": b"Received: a\rDate: x\r\rbody\r",
    "no-body": b"Subject: x\r\nDate: y\r\n",
    "no-headers": b"Hello world\r\nDate: x\r\n",
    "empty-line-first": b"\r\nDate: x\r\n",
    "look-alikes": b"Message-IDx: 1\r\nX-Date: 2\r\nReceived-SPF: 3\r\n Date: 4\r\n\r\n",
    "obs-blank": b"Date : 1\r\nMessage-ID\t: 2\r\nReceived  : 3\r\n\r\n",
    "long-name": b"X" * 997 + b": v\r\n" + b"Y" * 1200 + b"\r\n",
    "loop": b"Received: hop\r\n" * 51 + b"\r\n",
}


def write_headers():
    for name, m in HEADER_MESSAGES.items():
        write("headers", name, b"\x00" + m)
    write("headers", "crlf-split", b"\x05" + HEADER_MESSAGES["crlf"])


# --- MAIL/RCPT arguments and mailboxes ---------------------------------------

PATHS = {
    # byte 0: bit 0 TO: (else FROM:), bit 1 SMTPUTF8, bit 2 prefix added by the target
    "from-plain": (0, b"FROM:<alice@example.test>"),
    "from-null": (0, b"FROM:<>"),
    "from-space": (0, b"FROM: <alice@example.test>"),
    "from-lower": (0, b"from:<Alice@Example.TEST>"),
    "from-params": (0, b"FROM:<a@b.test> SIZE=1000 BODY=8BITMIME SMTPUTF8"),
    "from-x-empty": (4, b"<a@b.test> X="),
    "from-quote-eq": (4, b"<a@b.test> \"=x"),
    "from-eq": (4, b"<a@b.test> ="),
    "from-too-many": (4, b"<a@b.test>" + b" K=V" * 17),
    "to-orcpt-empty": (1, b"TO:<alice@example.test> ORCPT="),
    "to-orcpt": (1, b"TO:<alice@example.test> ORCPT=rfc822;alice@example.test"),
    "to-percent": (1, b"TO:<user%other.test@example.test>"),
    "to-quoted": (1, b"TO:<\"alice@other.test\"@example.test>"),
    "to-quoted-escapes": (1, b"TO:<\"a\\\"b\\\\c> d\"@example.test>"),
    "to-route": (1, b"TO:<@a.test,@b.test:alice@example.test>"),
    "to-route-only": (1, b"TO:<@a.test,@b.test>"),
    "to-bang": (1, b"TO:<other.test!victim@example.test>"),
    "to-foreign-behind-local": (1, b"TO:<victim@other.test@example.test>"),
    "to-two-paths": (1, b"TO:<alice@example.test>,<victim@other.test>"),
    "to-utf8": (3, "TO:<δοκιμή@παράδειγμα.δοκιμή>".encode()),
    "to-utf8-param": (2, "FROM:<a@b.test> X=ü".encode()),
    "to-utf8-bad": (3, b"TO:<\xc0\xaf@example.test>"),
    "to-literal4": (1, b"TO:<alice@[192.0.2.1]>"),
    "to-literal6": (1, b"TO:<alice@[IPv6:2001:db8::1]>"),
    "to-literal-tag": (1, b"TO:<alice@[x-tag:abc]>"),
    "to-no-brackets": (1, b"TO:alice@example.test"),
    "to-unclosed": (1, b"TO:<alice@example.test"),
    "to-junk-after": (1, b"TO:<alice@example.test>junk"),
    "to-crlf": (1, b"TO:<alice@example.test>\r\nX-Injected: 1"),
    "to-nul": (1, b"TO:<ali\x00ce@example.test>"),
    "to-long-local": (1, b"TO:<" + b"l" * 65 + b"@example.test>"),
    "to-long-domain": (1, b"TO:<a@" + (b"d" * 63 + b".") * 4 + b"test>"),
}

MAILBOXES = {
    "plain": b"alice@example.test",
    "tag": b"alice+tag@example.test",
    "upper": b"Alice@EXAMPLE.Test",
    "dots": b"first.last@sub.example.test",
    "double-dot": b"first..last@example.test",
    "lead-dot": b".alice@example.test",
    "percent": b"user%other.test@example.test",
    "bang": b"other.test!user@example.test",
    "quoted": b"\"alice smith\"@example.test",
    "quoted-at": b"\"alice@other.test\"@example.test",
    "quoted-escape": b"\"a\\\"b\"@example.test",
    "quoted-ctl": b"\"a\rb\"@example.test",
    "quoted-lf": b"\"a\nX-Injected: 1\"@example.test",
    "atext": b"!#$%&'*+-/=?^_`{|}~@example.test",
    "literal4": b"a@[192.0.2.1]",
    "literal6": b"a@[IPv6:::1]",
    "literal-bad": b"a@[300.1.1.1]",
    "literal-tag": b"a@[tag:content]",
    "utf8": "δοκιμή@παράδειγμα.δοκιμή".encode(),
    "utf8-overlong": b"\xc0\xaf@example.test",
    "utf8-surrogate": b"\xed\xa0\x80@example.test",
    "utf8-max": b"\xf4\x8f\xbf\xbf@example.test",
    "utf8-toobig": b"\xf4\x90\x80\x80@example.test",
    "hyphen": b"a@-example.test",
    "hyphen-end": b"a@example-.test",
    "label-64": b"a@" + b"x" * 64 + b".test",
    "label-63": b"a@" + b"x" * 63 + b".test",
    "no-at": b"alice",
    "empty-local": b"@example.test",
    "empty-domain": b"alice@",
    "two-at": b"a@b@example.test",
    "space": b"a b@example.test",
    "nul": b"a\x00b@example.test",
    "crlf": b"a@example.test\r\nX-Injected: 1",
    "long": b"a" * 64 + b"@" + b"b" * 63 + b"." + b"c" * 63 + b"." + b"d" * 60,
}


def write_addr():
    for name, (flags, arg) in PATHS.items():
        write("smtp_path", name, bytes([flags]) + arg)
    for name, m in MAILBOXES.items():
        write("addr", name, m)
        write("smtp_path", "mailbox-" + name, b"\x04<" + m + b">")


# --- POP3 --------------------------------------------------------------------

POP3_STREAMS = {
    "normal": b"USER alice@example.test\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\n"
              b"RETR 2\r\nRETR 3\r\nTOP 1 2\r\nTOP 2 0\r\nDELE 1\r\nDELE 2\r\nRSET\r\nDELE 3\r\n"
              b"LIST 3\r\nUIDL 2\r\nQUIT\r\n",
    "large": b"USER alice\r\nPASS secret\r\nRETR 5\r\nRETR 7\r\nTOP 5 100\r\nTOP 6 1\r\n"
             b"RETR 4\r\nDELE 5\r\nQUIT\r\n",
    "capa": b"CAPA\r\nAUTH\r\nUTF8\r\nAPOP alice 0123456789abcdef\r\nCAPA\r\nQUIT\r\n",
    "auth-plain": b"AUTH PLAIN " + b64(b"\x00alice@example.test\x00secret") + b"\r\nSTAT\r\n"
                  b"RETR 1\r\nQUIT\r\n",
    "auth-plain-challenge": b"AUTH PLAIN\r\n" + b64(b"\x00alice\x00secret") + b"\r\nLIST\r\n",
    "auth-login": b"AUTH LOGIN\r\n" + b64(b"alice@example.test") + b"\r\n" + b64(b"secret")
                  + b"\r\nUIDL\r\nQUIT\r\n",
    "auth-cancel": b"AUTH LOGIN\r\n*\r\nAUTH XOAUTH2\r\nAUTH PLAIN !!\r\nAUTH PLAIN a b c\r\n",
    "auth-as-other": b"AUTH PLAIN " + b64(b"bob\x00alice\x00secret") + b"\r\n",
    "inject-auth": b"AUTH PLAIN " + b64(b"\x00alice\r\nX: 1\x00pw") + b"\r\nUSER a\r\nPASS b\r\n",
    "stls-injection": b"STLS\r\nUSER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n",
    "stls-trailing-space": b"STLS \r\nUSER alice\r\n",
    "stls-then-login": b"CAPA\r\nSTLS\r\nCAPA\r\nUSER alice\r\nPASS secret\r\nSTLS\r\nQUIT\r\n",
    "out-of-state": b"STAT\r\nRETR 1\r\nDELE 1\r\nPASS x\r\nUSER alice\r\nPASS x\r\nUSER a b\r\n",
    "bad-numbers": b"USER alice\r\nPASS secret\r\nRETR 0\r\nRETR 01\r\nRETR 99\r\nRETR -1\r\n"
                   b"RETR 1 2\r\nTOP 1\r\nTOP 1 -1\r\nTOP 1 99999999999\r\nLIST 1 2\r\n"
                   b"DELE 1\r\nDELE 1\r\nRETR 1\r\nLIST 4294967297\r\nNOOP\r\nQUIT\r\n",
    "long-line": b"USER " + b"a" * 300 + b"\r\nNOOP\r\nCAPA\r\n",
    "long-no-crlf": b"CAPA\r\n" + b"x" * 400,
    "bare-eol": b"CAPA\nUSER alice\rPASS x\r\nQUIT\r\n",
    "nul": b"USER al\x00ice\r\n\x00\r\nCAPA\r\n",
    "http-get": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "too-many-errors": b"X\r\n" * 12 + b"CAPA\r\n",
    "pipelined-retr": b"USER alice\r\nPASS secret\r\n" + b"RETR 4\r\n" * 300 + b"QUIT\r\n",
    "quit-early": b"USER alice\r\nPASS secret\r\nDELE 1\r\n",
}


def write_pop3():
    for name, s in POP3_STREAMS.items():
        write("pop3_parser", name, b"\x00" + s)
        # byte 0: bit 0 STLS offered, bit 1 loopback, bit 2 pop3s; bits 3.. faults, timeout, limit
        cfg = 0x01 if name.startswith("stls") else 0x02
        if name in ("bad-numbers", "pipelined-retr"):
            cfg |= 0x20
        for answers in (0, 1, 2):
            write("pop3_session", "%s-%d" % (name, answers), bytes([cfg, 3 + answers, answers]) + s)
    write("pop3_session", "pop3s-normal", bytes([0x04, 1, 0]) + POP3_STREAMS["normal"])
    write("pop3_session", "plaintext-remote", bytes([0x00, 1, 0]) + POP3_STREAMS["normal"])
    write("pop3_session", "faults", bytes([0x0a, 5, 6]) + POP3_STREAMS["large"])
    write("pop3_session", "timeout", bytes([0x12, 0, 0]) + b"USER alice\r\nPASS secret\r\nRETR 5\r\n")


# --- SASL --------------------------------------------------------------------

def write_sasl():
    b64_texts = {
        "empty": b"",
        "padded": b"QQ==",
        "unpadded": b"QQ",
        "one-pad": b"QUI=",
        "full": b"QUJD",
        "nonzero-bits": b"QR==",
        "bad-char": b"QU*D",
        "pad-middle": b"QQ==QQ==",
        "too-much-pad": b"QQ===",
        "one-char": b"Q",
        "whitespace": b"QU JD",
        "plain-blob": b64(b"\x00alice@example.test\x00secret"),
    }
    for name, t in b64_texts.items():
        write("sasl", "b64-" + name, b"\x00" + t)
    plain_lines = {
        "ok": b64(b"\x00alice@example.test\x00secret"),
        "authzid-same": b64(b"alice\x00alice\x00pw"),
        "authzid-other": b64(b"bob\x00alice\x00pw"),
        "no-user": b64(b"\x00\x00pw"),
        "no-pass": b64(b"\x00alice\x00"),
        "three-nul": b64(b"\x00alice\x00pw\x00x"),
        "ctl": b64(b"\x00ali\rce\x00pw"),
        "cancel": b"*",
        "empty": b"=",
        "after-done": b64(b"\x00a\x00b") + b"\n" + b64(b"\x00a\x00b"),
        "long": b64(b"\x00" + b"u" * 256 + b"\x00pw"),
    }
    for name, t in plain_lines.items():
        write("sasl", "plain-" + name, b"\x01" + t)
    login_lines = {
        "ok": b64(b"alice@example.test") + b"\n" + b64(b"secret"),
        "cancel": b64(b"alice") + b"\n*",
        "empty-user": b"=\n" + b64(b"pw"),
        "bad-utf8": b64(b"\xff\xfe") + b"\n" + b64(b"pw"),
        "three": b64(b"a") + b"\n" + b64(b"b") + b"\n" + b64(b"c"),
    }
    for name, t in login_lines.items():
        write("sasl", "login-" + name, b"\x02" + t)
        write("sasl", "login-small-challenge-" + name, b"\x22" + t)
    write("sasl", "raw-plain", b"\x03\x00alice@example.test\x00secret")
    write("sasl", "raw-plain-authzid", b"\x03bob\x00alice\x00secret")
    write("sasl", "raw-plain-utf8", "\x03\x00ünï\x00pässwörd".encode())
    write("sasl", "raw-login", b"\x04alice@example.test\nsecret")
    write("sasl", "raw-login-ctl", b"\x04alice\x01\nsec\x7fret")


# --- config ------------------------------------------------------------------

CONF_DEFAULT = b"""; kotak.conf
[server]
hostname = mail.example.test
data_dir = kotak-data
user =
log_level = info

[tls]
cert = kotak-data/cert.pem
key = kotak-data/key.pem

[limits]
message_size = 25M            ; the largest message accepted (SIZE)
recipients = 100
command_line = 512
text_line = 1000
idle_timeout = 5m
pop3_idle_timeout = 10m
tls_handshake_timeout = 30s
connections = 1000
connections_per_address = 20
bad_commands = 10
spool_memory = 256K

[auth]
failure_delay = 2s
max_failures = 5
failure_window = 10m
lockout = 15m

[smtp]          ; MX: no login, local recipients only
listen = 127.0.0.1:2525
[submission]
listen = 127.0.0.1:2587, [::1]:2587
[submissions]
listen =
[pop3]
listen = 0.0.0.0:110
[pop3s]
listen = [::]:995
"""

CONFS = {
    "default": CONF_DEFAULT,
    "empty": b"",
    "unknown-key": b"[server]\nhostnme = x.test\n",
    "unknown-section": b"[serve]\n",
    "outside-section": b"hostname = x.test\n",
    "twice": b"[limits]\nrecipients = 100\nrecipients = 200\n",
    "out-of-range": b"[limits]\ncommand_line = 100\ntext_line = 99999999999999999999\n",
    "units": b"[limits]\nmessage_size = 1G\nidle_timeout = 1h\nspool_memory = 0\n"
             b"[auth]\nfailure_delay = 0ms\nlockout = 86400s\n",
    "bad-number": b"[limits]\nrecipients = 1e3\nbad_commands = -1\n",
    "listen-many": b"[smtp]\nlisten = " + b",".join(b"127.0.0.%d:25" % i for i in range(1, 10)) + b"\n",
    "listen-bad": b"[smtp]\nlisten = localhost:25\n[pop3]\nlisten = [::1:110\n",
    "listen-v6-unbracketed": b"[smtp]\nlisten = ::1:25\n",
    "listen-port": b"[smtp]\nlisten = 127.0.0.1:0, 127.0.0.1:65536, 127.0.0.1:\n",
    "listen-trailing-comma": b"[smtp]\nlisten = 127.0.0.1:25,\n",
    "hostname-bad": b"[server]\nhostname = -bad-.test\n",
    "log-level-bad": b"[server]\nlog_level = loud\n",
    "not-ini": b"[server\nthis is not ini\n",
    "long-line": b"[server]\nhostname = " + b"a" * 300 + b".test\n" + b"; " + b"x" * 5000 + b"\n",
    "nul": b"[server]\nhostname = a\x00b.test\n",
    "crlf": b"[server]\r\nhostname = crlf.test\r\n",
    "escape": b"[server]\nuser = \x1b[31mred\n",
}


def write_conf():
    for name, c in CONFS.items():
        write("conf", name, c)
    for i, v in enumerate((b"127.0.0.1:2525", b"[::1]:2525", b"127.0.0.1:1, [::]:65535",
              b"", b" , ", b"[fe80::1%eth0]:25", b"1.2.3.4:25x")):
        write("conf", "listen-value-%d" % i, v)


def main():
    write_smtp()
    write_headers()
    write_addr()
    write_pop3()
    write_sasl()
    write_conf()
    return 0


if __name__ == "__main__":
    sys.exit(main())
