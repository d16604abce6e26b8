"""The live view's page and event stream ([web] listen, served by kotak-smtpd).

The page and its errors with curl and http.client; the stream of events
(Server-Sent Events) read with `curl -N` while smtplib sends a mail with a
login and poplib fetches it: the events arrive in order, with what each
line means, and no password in any form. A viewer that reconnects with
Last-Event-ID goes on where it was; a viewer that never reads holds up no
mail; [web] token keeps out whoever lacks it.
"""
import json
import socket
import subprocess
import threading
import queue
import re
import time
import unittest

from kotak_harness import (DAEMONS, PASSWORDS, SMTP, SOCKET_TIMEOUT, KotakInstance,
                           KotakTestCase, config, rewrite_config)
from test_watch import ALICE, secrets, send_and_fetch

PASSWORD = PASSWORDS[ALICE]


def http(port, request, timeout=5):
    """Sends request as it is; returns the whole answer (the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        while True:
            data = s.recv(65536)
            if not data:
                return out
            out += data


def status_line(port, path):
    """The first line of the answer to GET path: a stream never ends, so only that is read."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        out = b""
        while b"\r\n" not in out:
            data = s.recv(4096)
            if not data:
                break
            out += data
        return out.split(b"\r\n")[0]


def get(port, path, extra=b""):
    return http(port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra +
                b"\r\n")


class Stream:
    """curl -N on /events: each event's id and data, as they come."""

    def __init__(self, port, query="", last_event_id=None):
        cmd = ["curl", "-sN", f"http://127.0.0.1:{port}/events{query}"]
        if last_event_id is not None:
            cmd += ["-H", f"Last-Event-ID: {last_event_id}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.q = queue.Queue()
        self.events = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        ev = {}
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("id: "):
                ev["id"] = line[4:]
            elif line.startswith("data: "):
                ev["data"] = json.loads(line[6:])
            elif line == "" and ev:
                self.q.put(ev)
                ev = {}

    def until(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while not any(pred(e["data"]) for e in self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no such event in:\n" +
                                     "\n".join(json.dumps(e["data"]) for e in self.events))
            try:
                self.events.append(self.q.get(timeout=left))
            except queue.Empty:
                pass
        return self.events

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Page(KotakTestCase):

    def test_the_page_and_its_errors(self):
        port = self.kotak.web_port
        r = get(port, "/")
        self.assertTrue(r.startswith(b"HTTP/1.1 200 OK\r\n"), r[:100])
        self.assertIn(b"Content-Type: text/html; charset=utf-8", r)
        self.assertIn(b"<title>kotak: mail as it happens</title>", r)
        self.assertIn(b"new EventSource('/events'", r)
        head = http(port, b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK"))
        self.assertTrue(head.endswith(b"\r\n\r\n"), "HEAD: no body")
        self.assertTrue(get(port, "/nothing").startswith(b"HTTP/1.1 404 Not Found"))
        self.assertTrue(http(port, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
                        .startswith(b"HTTP/1.1 405 "))
        self.assertTrue(http(port, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 "),
                        "no Host: 400")
        self.assertTrue(http(port, b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")
                        .startswith(b"HTTP/1.1 400 "), "a space before the colon: 400")
        self.assertTrue(http(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 9000 +
                             b"\r\n\r\n").startswith(b"HTTP/1.1 431 "))
        self.assertTrue(http(port, b"GET / HTTP/1.1\r\nHost: attacker.example:2080\r\n\r\n")
                        .startswith(b"HTTP/1.1 403 "), "a Host someone else names: 403")
        self.assertTrue(get(port, "/").startswith(b"HTTP/1.1 200"), "Host 127.0.0.1: 200")
        ok = http(port, b"GET / HTTP/1.1\r\nHost: mail.example.test:%d\r\n\r\n" % port)
        self.assertTrue(ok.startswith(b"HTTP/1.1 200"), "the server's own name: 200")
        head404 = http(port, b"HEAD /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertTrue(head404.startswith(b"HTTP/1.1 404") and head404.endswith(b"\r\n\r\n"),
                        "HEAD of an error: no body")
        self.assertIn(b"\r\nAllow: GET, HEAD\r\n",
                      http(port, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"))
        curl = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                               f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                              timeout=10)
        self.assertEqual(curl.stdout, "200")

    @config(limits={"connections_per_address": "100"})
    def test_at_most_32_viewers_at_once(self):
        port = self.kotak.web_port
        held = []
        for i in range(32):  # 8 from each of 4 addresses: 8 is the most one address may hold
            c = socket.create_connection(("127.0.0.1", port), timeout=5,
                                         source_address=(f"127.0.0.{2 + i // 8}", 0))
            held.append(c)
            self.addCleanup(c.close)
            c.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertTrue(c.recv(64).startswith(b"HTTP/1.1 200 OK"))
        self.assertEqual(status_line(port, "/events"), b"HTTP/1.1 503 Service Unavailable")
        self.assertTrue(get(port, "/").startswith(b"HTTP/1.1 200"), "the page itself still comes")
        held.pop().close()
        deadline = time.monotonic() + 5
        while status_line(port, "/events") != b"HTTP/1.1 200 OK":
            self.assertLess(time.monotonic(), deadline, "a place freed is taken again")
            time.sleep(0.1)

    @config(limits={"connections_per_address": "100"})
    def test_at_most_8_streams_from_one_address(self):
        port = self.kotak.web_port
        for _ in range(8):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            self.addCleanup(c.close)
            c.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertTrue(c.recv(64).startswith(b"HTTP/1.1 200 OK"))
        self.assertEqual(status_line(port, "/events"), b"HTTP/1.1 429 Too Many Requests")
        with socket.create_connection(("127.0.0.1", port), timeout=5,
                                      source_address=("127.0.0.9", 0)) as other:
            other.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertTrue(other.recv(64).startswith(b"HTTP/1.1 200 OK"), "another address may")

    def test_a_taken_web_port_costs_the_view_not_the_mail(self):
        port = self.kotak.web_port
        self.assertEqual(self.kotak.stop("smtpd"), 0)
        squatter = socket.socket()
        self.addCleanup(squatter.close)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        self.kotak.start("smtpd")  # its mail listeners answer
        self.assertTrue(self.kotak.wait_log(rf"event=web-off why=.*127\.0\.0\.1:{port}.*in use"),
                        self.kotak.log())
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            self.assertEqual(s.noop()[0], 250)

    @config(web={"token": "class-7b"})
    def test_a_token_keeps_out_who_lacks_it(self):
        port = self.kotak.web_port
        self.assertTrue(get(port, "/").startswith(b"HTTP/1.1 403 Forbidden"))
        self.assertTrue(get(port, "/events").startswith(b"HTTP/1.1 403 Forbidden"))
        self.assertTrue(get(port, "/?token=class-7").startswith(b"HTTP/1.1 403 "))
        self.assertTrue(get(port, "/?token=class-7bb").startswith(b"HTTP/1.1 403 "))
        self.assertTrue(get(port, "/?token=class-7b").startswith(b"HTTP/1.1 200 OK"))
        self.assertEqual(status_line(port, "/events?x=1&token=class%2D7b"), b"HTTP/1.1 200 OK",
                         "the token percent-encoded")


class Events(KotakTestCase):
    DAEMONS_TO_START = ("smtpd", "pop3d")

    def test_a_mail_as_events_then_resumed_from_last_event_id(self):
        st = Stream(self.kotak.web_port)
        self.addCleanup(st.stop)
        time.sleep(0.5)  # the stream has told the daemons someone watches
        send_and_fetch(self.kotak, "seen")
        events = st.until(lambda d: d.get("text", "").startswith("+OK Bye"))
        data = [e["data"] for e in events]
        text = json.dumps(data)
        for secret in secrets(PASSWORD):
            self.assertNotIn(secret, text)
        smtp = [d for d in data if d["proto"] == "smtp"]
        pop3 = [d for d in data if d["proto"] == "pop3"]
        ehlo = next(d for d in smtp if d["kind"] == "client" and d["text"].startswith("ehlo"))
        self.assertEqual(ehlo["ref"], "RFC 5321 4.1.1.1")
        self.assertEqual(ehlo["url"], "https://www.rfc-editor.org/rfc/rfc5321#section-4.1.1.1")
        # The replies RFC 5321 4.3.2 lists, for the page to flag any other.
        self.assertEqual(ehlo["replies"], [421, 500, 501, 250, 504, 550, 502])
        opened = next(d for d in smtp if d["kind"] == "open")
        self.assertEqual(opened["replies"], [421, 500, 501, 220, 554], "the greeting's")
        self.assertNotIn("replies", next(d for d in pop3 if d["kind"] == "client"))
        # The journey's steps, each naming the stored message.
        mail = [(d["proto"], d["text"].split()[0]) for d in data if d["kind"] == "mail"]
        self.assertEqual(mail, [("smtp", "stored"), ("pop3", "retr"), ("pop3", "dele"),
                                ("pop3", "removed")])
        ids = {re.search(r" id=(\d+)", d["text"]).group(1) for d in data if d["kind"] == "mail"}
        self.assertEqual(len(ids), 1, "one message")
        self.assertTrue(any(d["kind"] == "tls" and d["text"].startswith("TLSv1.") for d in smtp))
        auth = next(d for d in smtp if d["text"].startswith("AUTH PLAIN"))
        self.assertEqual(auth["text"], "AUTH PLAIN (as alice@example.test, password hidden)")
        self.assertTrue(auth["tls"], "said inside TLS")
        queued = next(d for d in smtp if d["text"].startswith("250 2.0.0 Ok: queued"))
        self.assertIn("2xx: done", queued["note"])
        self.assertEqual([d["text"] for d in pop3 if d["kind"] == "client"],
                         ["USER alice@example.test", "PASS (password hidden)", "RETR 1",
                          "DELE 1", "QUIT"])
        dele = next(d for d in pop3 if d["text"] == "DELE 1")
        self.assertIn("only at QUIT", dele["what"])
        seqs = [d["seq"] for d in smtp]
        self.assertEqual(seqs, sorted(seqs), "one ring's events in order")
        last_id = events[-1]["id"]

        # A viewer that comes back with Last-Event-ID gets what came after, not again.
        st.stop()
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("after.example.test")
        st2 = Stream(self.kotak.web_port, last_event_id=last_id)
        self.addCleanup(st2.stop)
        later = [e["data"] for e in st2.until(lambda d: d.get("text") == "ehlo after.example.test")]
        self.assertFalse(any(d.get("text", "").startswith("AUTH PLAIN") for d in later),
                         "nothing from before the id again")

    @config(limits={"command_line": "1024"})
    def test_long_lines_of_escaped_octets_arrive_whole(self):
        name = "<" * 900  # each octet is six in JSON: a batch of such events is large
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            st = Stream(self.kotak.web_port)
            self.addCleanup(st.stop)
            time.sleep(0.5)
            for i in range(60):
                self.assertEqual(s.docmd("NOOP", name + str(i))[0], 250)
            s.docmd("RSET")
        events = st.until(lambda d: d.get("text") == "RSET", timeout=20)
        noops = [e["data"] for e in events if e["data"].get("text", "").startswith("NOOP <")]
        self.assertEqual([d["text"] for d in noops], ["NOOP " + name + str(i) for i in range(60)])

    def test_a_viewer_that_never_reads_holds_up_no_mail(self):
        stuck = socket.create_connection(("127.0.0.1", self.kotak.web_port))
        self.addCleanup(stuck.close)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.5)
        started = time.monotonic()
        for i in range(150):
            with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
                s.ehlo("busy-%d.example.test" % i + "x" * 200)
                s.sendmail("someone@sender.test", [ALICE], b"Subject: %d\r\n\r\nbody\r\n" % i)
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 30, "150 mails with a stuck viewer took %.1f s" % elapsed)
        self.assertEqual(len(self.kotak.maildrop(ALICE)), 150)
        # The stuck viewer is behind, not a weight: a fresh one still gets the latest.
        st = Stream(self.kotak.web_port)
        self.addCleanup(st.stop)
        time.sleep(0.5)
        with SMTP("127.0.0.1", self.kotak.ports["smtp"], timeout=SOCKET_TIMEOUT) as s:
            s.ehlo("last.example.test")
        st.until(lambda d: d.get("text") == "ehlo last.example.test")


class Off(unittest.TestCase):

    def test_a_token_a_url_cannot_carry_as_it_is_stops_the_start(self):
        k = KotakInstance()
        self.addCleanup(k.close)
        k.create()
        with open(k.conf) as f:
            text = f.read()
        with open(k.conf, "w") as f:
            f.write(rewrite_config(text, {"web": {"token": "two words"}}))
        p = subprocess.run([DAEMONS["smtpd"], "-c", k.conf], capture_output=True, text=True,
                           timeout=20, cwd=k.dir)
        self.assertEqual(p.returncode, 78, "a bad config")
        self.assertIn("the token is up to 128 letters, digits and - . _ ~", p.stderr)

    def test_no_listener_while_the_view_is_off(self):
        k = KotakInstance({"web": {"listen": ""}})
        self.addCleanup(k.close)
        k.create()
        k.start("smtpd")
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", k.web_port), timeout=2).close()
        self.assertEqual(k.stop("smtpd"), 0)


if __name__ == "__main__":
    unittest.main()
