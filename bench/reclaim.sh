#!/bin/bash
# bench/reclaim.sh — disk space coming back: a store of about SIZE_MB of mail (COUNT
# messages), 90 % of it fetched and deleted over POP3 (DELE of each, then QUIT: one
# transaction), and then the store file watched while mail keeps arriving over SMTP, until
# it is within 25 % of the mail it still holds (or LIMIT seconds pass). Prints the file's
# size before, after the QUIT, and over time, how long the QUIT took, and how long the SMTP
# messages arriving meanwhile waited for their 250 (p50, p99, max), against the same
# figures before the deletion: reclaiming runs in steps between commits, and must never
# hold one up for long.
#
#   sudo bench/reclaim.sh [COUNT [SIZE]]      default 10000 messages of 102400 octets (1 GB)
#
# Knobs: BUILD (build-bench, release), LIMIT (120 s), RATE (SMTP messages a second
# meanwhile, 20), RESULTS (bench/results/reclaim-TIME). Needs root (the daemons drop to the
# instance's user). Run on its own, not part of run.sh.
set -eu
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
BUILD=${BUILD:-$ROOT/build-bench}
COUNT=${1:-10000}
SIZE=${2:-102400}
LIMIT=${LIMIT:-120}
RATE=${RATE:-20}
RESULTS=${RESULTS:-$BENCH/results/reclaim-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3
die() { echo "reclaim.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run me as root"
mkdir -p "$RESULTS"
LOG=$RESULTS/run.log
[ -d "$BUILD" ] || meson setup "$BUILD" "$ROOT" --buildtype=release >> "$LOG"
ninja -C "$BUILD" ctl/kotak smtpd/kotak-smtpd pop3d/kotak-pop3d >> "$LOG"
K=$BUILD/ctl/kotak

free_port() {
  local p
  while :; do
    p=$((21000 + RANDOM % 11000))
    ss -ltnH "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}
KD=$(mktemp -d /var/tmp/kotak-reclaim.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; rm -rf "$KD"; }
trap cleanup EXIT
P_SMTP=$(free_port); P_POP=$(free_port)
( cd "$KD" && "$K" -c kotak.conf init --hostname mail.example.test ) >> "$LOG" 2>&1
sed -i -e "s/^listen = 127.0.0.1:2525/listen = 127.0.0.1:$P_SMTP/" \
  -e "s/^listen = 127.0.0.1:2110/listen = 127.0.0.1:$P_POP/" \
  -e "s/^listen = 127.0.0.1:\(2587\|2465\|2995\|2080\)$/listen =/" \
  -e "s/^message_size = [0-9A-Z]*/message_size = 64M/" "$KD/kotak.conf"
"$K" -c "$KD/kotak.conf" domain add example.test >> "$LOG"
for u in fetcher arrivals; do
  echo "reclaim-bench-$u" | "$K" -c "$KD/kotak.conf" user add "$u@example.test" --password-stdin >> "$LOG"
done

echo "filling: $COUNT messages of $SIZE octets" >&2
"$PY" - "$KD/maildir" "$COUNT" "$SIZE" <<'PY'
import hashlib, os, sys
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(root, d), exist_ok=True)
for i in range(count):
    head = f"From: <sender@remote.example>\nTo: <fetcher@example.test>\nSubject: {i}\n\n".encode()
    line = (hashlib.sha256(str(i).encode()).hexdigest() + "\n").encode()
    with open(os.path.join(root, "cur", f"{i}.bench:2,S"), "wb") as f:
        f.write(head + line * ((size - len(head)) // len(line)))
PY
"$K" -c "$KD/kotak.conf" import maildir fetcher@example.test "$KD/maildir" >> "$LOG" 2>&1
rm -rf "$KD/maildir"

"$BUILD/smtpd/kotak-smtpd" -c "$KD/kotak.conf" >> "$LOG" 2>&1 & PIDS+=($!)
"$BUILD/pop3d/kotak-pop3d" -c "$KD/kotak.conf" >> "$LOG" 2>&1 & PIDS+=($!)
for p in $P_SMTP $P_POP; do
  for _ in $(seq 100); do ss -ltnH "sport = :$p" | grep -q . && break; sleep 0.1; done
done

"$PY" - "$KD/kotak-data/kotak.db" "$P_SMTP" "$P_POP" "$COUNT" "$LIMIT" "$RATE" <<'PY' | tee "$RESULTS/table.txt"
import os, poplib, smtplib, sqlite3, sys, threading, time
db, smtp_port, pop_port, count, limit, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
MB = 1 << 20

def sizes():
    wal = os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0
    return os.path.getsize(db), wal

def live_octets():
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT coalesce(sum(size), 0) FROM messages").fetchone()[0]
    finally:
        con.close()

waits, stop = [], threading.Event()
def arrivals():
    """RATE messages a second, a new session each, as MX traffic; how long each 250 took."""
    msg = b"From: <a@remote.example>\r\nSubject: meanwhile\r\n\r\n" + b"x" * 1000 + b"\r\n"
    while not stop.is_set():
        t0 = time.monotonic()
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as s:
            s.ehlo("bench.example")
            s.mail("a@remote.example")
            s.rcpt("arrivals@example.test")
            t1 = time.monotonic()
            s.data(msg)
            waits.append(time.monotonic() - t1)
        stop.wait(max(0, 1 / rate - (time.monotonic() - t0)))

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")

t = threading.Thread(target=arrivals)
t.start()
time.sleep(5)
before = list(waits)
full_db, full_wal = sizes()
print(f"store with {count} messages: file {full_db / MB:.1f} MiB, WAL {full_wal / MB:.1f} MiB")

p = poplib.POP3("127.0.0.1", pop_port, timeout=300)
p.user("fetcher@example.test")
p.pass_("reclaim-bench-fetcher")
n = p.stat()[0]
gone = n * 9 // 10
for i in range(1, gone + 1):
    p.dele(i)
t0 = time.monotonic()
p.quit()
quit_s = time.monotonic() - t0
start, del_at = len(waits), time.monotonic()
print(f"DELE of {gone} of {n} + QUIT: {quit_s:.2f} s")

target_at, samples = None, []
while time.monotonic() - del_at < limit:
    time.sleep(1)
    d, w = sizes()
    live = live_octets()
    el = time.monotonic() - del_at
    samples.append((el, d, w, live))
    print(f"  {el:5.1f} s: file {d / MB:7.1f} MiB, WAL {w / MB:5.1f} MiB, mail {live / MB:6.1f} MiB")
    if target_at is None and d <= live * 1.25:
        target_at = el
        break
stop.set()
t.join()
during = waits[start:]
d, w, live = samples[-1][1], samples[-1][2], samples[-1][3]
print()
print("| | value |")
print("|---|---|")
print(f"| store file with {count} messages | {full_db / MB:.1f} MiB |")
print(f"| DELE of 90 % + QUIT (one transaction) | {quit_s:.2f} s |")
print(f"| store file at the end / mail held | {d / MB:.1f} MiB / {live / MB:.1f} MiB ({d / live:.2f}x), WAL {w / MB:.1f} MiB |")
print(f"| time until the file is within 25 % of the mail | "
      + (f"{target_at:.0f} s |" if target_at is not None else f"not within {limit:.0f} s |"))
print(f"| SMTP 250 after the data, before: p50 / p99 / max | {pct(before, .5):.1f} / {pct(before, .99):.1f} / {max(before) * 1000:.1f} ms ({len(before)} messages) |")
print(f"| SMTP 250 after the data, while reclaiming: p50 / p99 / max | {pct(during, .5):.1f} / {pct(during, .99):.1f} / {max(during) * 1000:.1f} ms ({len(during)} messages) |")
PY
