#!/usr/bin/python3
"""A scripted SMTP server for kotak's outbound-delivery tests, on python3-aiosmtpd.

    /usr/bin/python3 tests/smtp_peer.py --dir OUTDIR [--host 127.0.0.4] [--port N]
                                        [--script FILE.json] [--cert C --key K]

It listens on HOST:PORT (PORT 0 or none: a free one is picked) and prints the
port on a line of its own on stdout once it accepts connections. It stops on
SIGTERM or SIGINT, and when its stdin reaches end of file when stdin is a
pipe, so that it never outlives the test that started it. Exit status 77 when
aiosmtpd is missing: the test is then skipped.

What it records, in OUTDIR:

  NNNN.eml   each message answered 250 after its final dot: the bytes received,
             dot-unstuffed, CRLF kept. Numbers go on from the highest already
             in OUTDIR, so a restarted peer adds to what is there.
  NNNN.json  its envelope, written after the .eml (both by rename, so a reader
             that sees the .json sees both whole): mail_from ("" for <>),
             mail_options (the MAIL parameters as sent, e.g. ["SIZE=123",
             "BODY=8BITMIME", "RET=HDRS", "ENVID=x"]), rcpt_tos (the accepted
             recipients), rcpt_options (one list per accepted recipient, e.g.
             ["NOTIFY=FAILURE", "ORCPT=rfc822;a@b"]), tls, tls_version,
             auth_user (or null), helo, peer ([address, port]), session.
  log.jsonl  one JSON object per line and per event: {"event", "session",
             "reply", "tls", "time", ...}. Events: connect (reply: the
             greeting), ehlo, helo, starttls, auth, mail, rcpt, data, rset,
             noop, quit, any other verb in lower case, and disconnect (reply
             null). "session" numbers connections from 1, so two messages and
             one connect event is one connection reused. mail and rcpt carry
             "address" and "options"; ehlo and helo "helo"; auth "mechanism"
             (and "user" when it succeeded, never the password); an accepted
             data carries "message" (the NNNN) and "size"; a command read while
             more bytes were already waiting carries "pipelined": true.

The script, a JSON object (every key optional):

  "hostname": "mx.peer.test"   the name in the greeting and the EHLO reply
  "greeting": "421 4.3.2 Not now"   a greeting other than 220, then close
  "hang_after_greeting": true  greet, then read and never answer
  "starttls": true|false       offer STARTTLS (default: true when --cert is given)
  "implicit_tls": true         TLS from the first byte, like port 465
  "pipelining", "eightbitmime", "smtputf8", "dsn": false
                               do not advertise that extension (default: all are);
                               a MAIL or RCPT parameter of an extension not
                               advertised is refused with 555
  "size": N                    advertise SIZE N, refuse MAIL SIZE=M > N (552)
  "auth": {"user": "u", "password": "p", "mechanisms": ["PLAIN", "LOGIN"]}
                               offer AUTH (over TLS only: 538 5.7.11 before) and
                               require it before MAIL (530 5.7.0); a wrong
                               password is 535 5.7.8
  "mail_reply": "451 4.3.0 x"  the reply to every MAIL FROM that parses (a 2xx
                               one still starts the transaction)
  "rcpt": {"a@b": "550 5.1.1 No such user", "*": "..."}
                               per-recipient replies (address in any case;
                               "*": every other one); others get 250
  "data_fail_first": N         the first N final dots, counted over all the
                               sessions of this process, get "data_reply_fail"
                               (default "451 4.3.0 Try again later")
  "data_reply": "554 5.6.0 x"  the reply to later final dots (default 250);
                               only a 2xx one records the message

Replies are checked as strictly as a careful server would (angle brackets
around paths, known parameters only, UTF-8 addresses only with SMTPUTF8), so
that a test sees kotak's mistakes instead of a forgiving peer hiding them.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import ssl
import stat
import sys
import time

try:
    from aiosmtpd.smtp import SMTP, AuthResult
except ImportError:
    print("python3-aiosmtpd is missing (Debian: apt-get install python3-aiosmtpd)", file=sys.stderr)
    sys.exit(77)

SCRIPT_KEYS = {
    "hostname", "greeting", "hang_after_greeting", "starttls", "implicit_tls", "pipelining",
    "eightbitmime", "smtputf8", "dsn", "size", "auth", "mail_reply", "rcpt", "data_fail_first",
    "data_reply_fail", "data_reply",
}
IDENT = "ESMTP kotak test peer"
# RFC 5321 4.5.3.1.4 allows 512 octets per command, and extensions add to it
# (RFC 3461's ORCPT and ENVID up to 600 more): one bound for all commands, the
# 1001 octets at which aiosmtpd's line reader stops anyway.
COMMAND_LIMIT = 1001


class Peer:
    """What all the sessions share: the script, the output folder, the counters.
    It is also aiosmtpd's handler (handle_DATA) and authenticator."""

    def __init__(self, script, outdir, tls_context, implicit_tls):
        self.script = script
        self.outdir = outdir
        # STARTTLS is offered with a context; a session already in TLS gets none.
        starttls = script.get("starttls", tls_context is not None)
        self.starttls_context = tls_context if starttls and not implicit_tls else None
        self.implicit_tls = implicit_tls
        self.sessions = 0
        self.final_dots = 0
        self.live = set()
        # A restarted peer numbers on from the messages already in outdir.
        numbers = [int(n[:-5]) for n in os.listdir(outdir) if re.fullmatch(r"\d+\.json", n)]
        self.message_no = max(numbers, default=0)
        self.log_file = open(os.path.join(outdir, "log.jsonl"), "a", encoding="utf-8")

    def event(self, record):
        self.log_file.write(json.dumps(record) + "\n")
        self.log_file.flush()

    def write_atomically(self, name, data):
        tmp = os.path.join(self.outdir, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(self.outdir, name))

    # aiosmtpd's authenticator: called by its AUTH PLAIN and LOGIN with the pair given.
    def authenticate(self, server, session, envelope, mechanism, login_password):
        auth = self.script["auth"]
        login, password = login_password
        ok = (login == auth["user"].encode("utf-8")
              and password == auth["password"].encode("utf-8"))
        server.detail["mechanism"] = mechanism
        if not ok:
            return AuthResult(success=False, handled=False,
                              message="535 5.7.8 Authentication credentials invalid")
        server.detail["user"] = auth["user"]
        return AuthResult(success=True, auth_data=auth["user"])

    # aiosmtpd's handler hook, after the final dot.
    async def handle_DATA(self, server, session, envelope):
        self.final_dots += 1
        if self.final_dots <= self.script.get("data_fail_first", 0):
            return self.script.get("data_reply_fail", "451 4.3.0 Try again later")
        reply = self.script.get("data_reply")
        if reply is not None and not reply.startswith("2"):
            return reply
        self.message_no += 1
        stem = f"{self.message_no:04d}"
        data = envelope.original_content
        self.write_atomically(stem + ".eml", data)
        meta = {
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_params,
            "tls": server.tls_active(),
            "tls_version": server.tls_version(),
            "auth_user": session.auth_data if session.authenticated else None,
            "helo": session.host_name,
            "peer": list(session.peer[:2]) if session.peer else None,
            "session": server.session_no,
        }
        self.write_atomically(stem + ".json", json.dumps(meta, indent=1).encode("utf-8"))
        server.detail.update(message=stem, size=len(data))
        return reply or f"250 2.0.0 OK queued as {stem}"


def split_path(arg, keyword):
    """Splits "FROM:<path> PARAM..." into (address, [params]); None when it is not
    that. The path must be in angle brackets (RFC 5321 4.1.2); a source route
    is dropped; a quoted local part may hold '>' and spaces."""
    if arg is None or arg[:len(keyword)].upper() != keyword:
        return None
    rest = arg[len(keyword):].lstrip(" ")
    if not rest.startswith("<"):
        return None
    i, quoted = 1, False
    while i < len(rest):
        c = rest[i]
        if quoted and c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            break
        i += 1
    else:
        return None
    path, tail = rest[1:i], rest[i + 1:]
    if tail and not tail.startswith(" "):
        return None
    if path.startswith("@"):
        path = path.partition(":")[2]
    return path, tail.split()


class PeerSMTP(SMTP):
    """aiosmtpd's SMTP with the script's behaviour: its own EHLO, MAIL and RCPT
    (aiosmtpd's refuse MAIL FROM:<> and every DSN parameter), AUTH only where
    the script asks, and every command and its reply logged."""

    command_size_limit = COMMAND_LIMIT
    command_size_limits = {}  # replaced per instance below; aiosmtpd clears it

    def __init__(self, peer, loop):
        self.peer = peer
        script = peer.script
        super().__init__(
            peer, loop=loop, hostname=script.get("hostname", "mx.peer.test"), ident=IDENT,
            decode_data=False, enable_SMTPUTF8=script.get("smtputf8", True),
            data_size_limit=script.get("size"), tls_context=peer.starttls_context,
            # AUTH is this class's business (implicit TLS counts as TLS here,
            # aiosmtpd only knows STARTTLS): aiosmtpd's own checks are off.
            auth_required=False, auth_require_tls=False, authenticator=peer.authenticate)
        self.command_size_limits = _Limits()
        self.session_no = 0
        self.tls = None       # the TLS version once in TLS
        self.detail = {}      # what the command being handled adds to its log line
        self.replies = []     # the reply lines pushed for that command
        self.greeted = False
        self.gone = False
        # Every command goes through one wrapper that logs it with its reply.
        self._smtp_methods = {verb: self.logged(verb, fn)
                              for verb, fn in self._smtp_methods.items()}

    # --- the connection and its log -------------------------------------

    def tls_active(self):
        return self.tls is not None

    def tls_version(self):
        return self.tls

    def log(self, event, reply, **extra):
        record = {"event": event, "session": self.session_no, "reply": reply,
                  "tls": self.tls_active(), "time": round(time.time(), 3)}
        record.update(extra)
        self.peer.event(record)

    def connection_made(self, transport):
        starttls_done = self._original_transport is not None
        # Called again once a STARTTLS handshake is over, with the TLS transport;
        # the TLS version is kept, since a closed transport can no longer say.
        ssl_object = transport.get_extra_info("ssl_object")
        self.tls = ssl_object.version() if ssl_object is not None else None
        super().connection_made(transport)
        if not starttls_done:
            self.peer.sessions += 1
            self.session_no = self.peer.sessions
            self.peer.live.add(self)

    def connection_lost(self, error):
        if not self.gone:  # aiosmtpd calls it twice when a TLS handshake fails
            self.gone = True
            self.peer.live.discard(self)
            self.log("disconnect", None)
        super().connection_lost(error)

    async def push(self, status):
        if isinstance(status, bytes):
            self.replies.append(status.decode("utf-8", "replace"))
        else:
            self.replies.append(status)
        await super().push(status)
        if not self.greeted:
            self.greeted = True
            self.log("connect", self.replies[-1])

    async def _handle_client(self):
        greeting = self.peer.script.get("greeting")
        if greeting is not None and not greeting.startswith("220"):
            await self.push(greeting)
            self.transport.close()
            return
        if self.peer.script.get("hang_after_greeting"):
            await self.push(f"220 {self.hostname} {IDENT}")
            # Read what comes, so the client's writes never block, and never answer;
            # aiosmtpd's idle timeout (300 s) ends the connection at last.
            while self.transport is not None:
                try:
                    if not await self._reader.read(65536):
                        break
                except (ConnectionError, asyncio.IncompleteReadError):
                    break
            return
        if greeting is not None:
            # A 220 of the test's own: aiosmtpd greets "220 <hostname> <ident>".
            _, _, text = greeting.partition(" ")
            self.hostname, _, self.__ident__ = text.partition(" ")
        await super()._handle_client()

    def logged(self, verb, method):
        async def run(arg):
            # Bytes already waiting behind this command: the client pipelined it.
            pipelined = bool(getattr(self._reader, "_buffer", b""))
            self.detail, self.replies = {}, []
            try:
                await method(arg)
            finally:
                if verb == "EHLO":
                    reply = "\n".join(self.replies)
                else:
                    reply = self.replies[-1] if self.replies else None
                if pipelined:
                    self.detail["pipelined"] = True
                self.log(verb.lower(), reply, **self.detail)
        return run

    # --- commands ---------------------------------------------------------

    def capabilities(self):
        s = self.peer.script
        caps = []
        if s.get("pipelining", True):
            caps.append("PIPELINING")
        if s.get("size") is not None:
            caps.append(f"SIZE {s['size']}")
        if s.get("eightbitmime", True):
            caps.append("8BITMIME")
        if s.get("smtputf8", True):
            caps.append("SMTPUTF8")
        if s.get("dsn", True):
            caps.append("DSN")
        caps.append("ENHANCEDSTATUSCODES")
        if self.tls_context is not None and not self.tls_active():
            caps.append("STARTTLS")
        if s.get("auth") and self.tls_active():
            caps.append("AUTH " + " ".join(self.auth_mechanisms()))
        return caps

    def auth_mechanisms(self):
        return [m.upper() for m in self.peer.script["auth"].get("mechanisms", ["PLAIN", "LOGIN"])]

    async def smtp_EHLO(self, hostname):
        self.detail["helo"] = hostname
        if not hostname:
            return await self.push("501 5.5.4 Syntax: EHLO hostname")
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [self.hostname] + self.capabilities()
        for i, line in enumerate(lines):
            await self.push(("250 " if i == len(lines) - 1 else "250-") + line)

    async def smtp_HELO(self, hostname):
        self.detail["helo"] = hostname
        await super().smtp_HELO(hostname)

    async def smtp_STARTTLS(self, arg):
        if self.tls_active():
            return await self.push("503 5.5.1 TLS already active")
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg):
        auth = self.peer.script.get("auth")
        if not auth:
            return await self.push("502 5.5.1 AUTH not offered")
        if not self.tls_active():
            return await self.push("538 5.7.11 Encryption required for requested "
                                   "authentication mechanism")
        words = (arg or "").split()
        if not words:
            return await self.push("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
        mechanism = words[0].upper()
        if mechanism not in self.auth_mechanisms():
            return await self.push("504 5.5.4 Unrecognized authentication type")
        # aiosmtpd runs PLAIN and LOGIN (and the 334 exchanges) and calls
        # Peer.authenticate; it wants the mechanism's name in capitals.
        await super().smtp_AUTH(" ".join([mechanism] + words[1:]))

    def check_params(self, params, known):
        """None when every parameter is one of known {NAME: check(value)} (a check
        returns an error reply or None), else the reply that refuses them."""
        seen = set()
        for p in params:
            name, eq, value = p.partition("=")
            name = name.upper()
            if name in seen:
                return f"501 5.5.4 Duplicate parameter {name}"
            seen.add(name)
            if name not in known:
                return f"555 5.5.4 Parameter not recognized or not offered: {name}"
            error = known[name](value if eq else None)
            if error:
                return error
        return None

    def mail_params(self):
        s = self.peer.script
        known = {}

        def size(v):
            if v is None or not v.isdigit():
                return "501 5.5.4 SIZE wants a number"
            if s.get("size") and int(v) > s["size"]:
                return "552 5.3.4 Message size exceeds fixed maximum message size"
            return None

        known["SIZE"] = size
        if s.get("eightbitmime", True):
            known["BODY"] = lambda v: (None if v and v.upper() in ("7BIT", "8BITMIME")
                                       else "501 5.5.4 BODY is 7BIT or 8BITMIME")
        else:
            known["BODY"] = lambda v: (None if v and v.upper() == "7BIT"
                                       else "555 5.5.4 BODY=8BITMIME not offered")
        if s.get("smtputf8", True):
            known["SMTPUTF8"] = lambda v: None if v is None else "501 5.5.4 SMTPUTF8 takes no value"
        if s.get("dsn", True):
            known["RET"] = lambda v: (None if v and v.upper() in ("FULL", "HDRS")
                                      else "501 5.5.4 RET is FULL or HDRS")
            known["ENVID"] = lambda v: None if v else "501 5.5.4 ENVID wants a value"
        return known

    def rcpt_params(self):
        known = {}
        if self.peer.script.get("dsn", True):
            def notify(v):
                words = (v or "").upper().split(",")
                if words == ["NEVER"] or (words and all(w in ("SUCCESS", "FAILURE", "DELAY")
                                                        for w in words)):
                    return None
                return "501 5.5.4 NOTIFY is NEVER or some of SUCCESS,FAILURE,DELAY"

            known["NOTIFY"] = notify
            known["ORCPT"] = lambda v: None if v and ";" in v else "501 5.5.4 ORCPT is type;address"
        return known

    def needs_smtputf8(self, address):
        if address.isascii() or self.envelope.smtp_utf8:
            return None
        return "553 5.6.7 Non-ASCII address without SMTPUTF8"

    async def smtp_MAIL(self, arg):
        parsed = split_path(arg, "FROM:")
        if parsed is not None:
            self.detail.update(address=parsed[0], options=parsed[1])
        if await self.check_helo_needed():
            return
        if self.peer.script.get("auth") and not self.session.authenticated:
            return await self.push("530 5.7.0 Authentication required")
        if self.envelope.mail_from is not None:
            return await self.push("503 5.5.1 Nested MAIL command")
        if parsed is None:
            return await self.push("501 5.5.4 Syntax: MAIL FROM:<address> [parameters]")
        address, params = parsed
        if params and not self.session.extended_smtp:
            return await self.push("501 5.5.4 Parameters need EHLO")
        error = self.check_params(params, self.mail_params())
        if error:
            return await self.push(error)
        self.envelope.smtp_utf8 = any(p.upper() == "SMTPUTF8" for p in params)
        error = self.needs_smtputf8(address)
        if error:
            return await self.push(error)
        reply = self.peer.script.get("mail_reply", "250 2.1.0 OK")
        if reply.startswith("2"):
            self.envelope.mail_from = address
            self.envelope.mail_options = params
            self.envelope.rcpt_params = []
        await self.push(reply)

    async def smtp_RCPT(self, arg):
        parsed = split_path(arg, "TO:")
        if parsed is not None:
            self.detail.update(address=parsed[0], options=parsed[1])
        if await self.check_helo_needed():
            return
        if self.envelope.mail_from is None:
            return await self.push("503 5.5.1 Need MAIL command")
        if parsed is None or not parsed[0]:
            return await self.push("501 5.5.4 Syntax: RCPT TO:<address> [parameters]")
        address, params = parsed
        if params and not self.session.extended_smtp:
            return await self.push("501 5.5.4 Parameters need EHLO")
        error = self.check_params(params, self.rcpt_params()) or self.needs_smtputf8(address)
        if error:
            return await self.push(error)
        replies = {k.lower(): v for k, v in self.peer.script.get("rcpt", {}).items()}
        reply = replies.get(address.lower(), replies.get("*", "250 2.1.5 OK"))
        if reply.startswith("2"):
            self.envelope.rcpt_tos.append(address)
            self.envelope.rcpt_params.append(params)
        await self.push(reply)


class _Limits(dict):
    """aiosmtpd's per-command line limits: the same for every command."""

    def __missing__(self, key):
        return COMMAND_LIMIT


def tls_server_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.4")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", required=True, help="where messages and log.jsonl go")
    ap.add_argument("--script", help="a JSON file: the behaviour (see above)")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()

    script = {}
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            script = json.load(f)
    unknown = set(script) - SCRIPT_KEYS
    if unknown:  # a typo in a test's script should fail loudly, not pass quietly
        ap.error(f"unknown script keys: {', '.join(sorted(unknown))}")
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    implicit = bool(script.get("implicit_tls"))
    if (implicit or script.get("starttls")) and not args.cert:
        ap.error("TLS needs --cert and --key")
    if script.get("auth") and not args.cert:
        ap.error("auth is offered over TLS only: give --cert and --key")
    os.makedirs(args.dir, exist_ok=True)
    # aiosmtpd logs every line at INFO and deprecation notes at WARNING; only
    # its errors (a handler that raised) are worth reading in a test log.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

    tls = tls_server_context(args.cert, args.key) if args.cert else None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    peer = Peer(script, args.dir, tls, implicit)
    server = loop.run_until_complete(loop.create_server(
        lambda: PeerSMTP(peer, loop), args.host, args.port, ssl=tls if implicit else None))
    print(server.sockets[0].getsockname()[1], flush=True)

    stop = loop.create_future()

    def finish():
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, finish)
    if stat.S_ISFIFO(os.fstat(0).st_mode):
        def stdin_readable():
            try:
                if os.read(0, 4096):
                    return
            except OSError:
                pass
            loop.remove_reader(0)
            finish()

        loop.add_reader(0, stdin_readable)
    loop.run_until_complete(stop)
    server.close()
    for session in list(peer.live):
        if session.transport is not None:
            session.transport.close()
    # Let the closed sessions log their disconnect and their tasks end.
    loop.run_until_complete(asyncio.sleep(0.1))
    peer.log_file.close()


if __name__ == "__main__":
    main()
