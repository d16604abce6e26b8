#!/bin/bash
# bench/loop_latency.sh — do kotak-smtpd's and kotak-pop3d's event loops stall while
# another process holds the store's write lock, checkpoints it, backs it up, adds a
# user, or while a storm of TLS handshakes hits kotak-smtpd's implicit-TLS port?
#
#   sudo bench/loop_latency.sh          ~4 min
#
# One kotak instance (both daemons, release build in build-bench/), free loopback ports,
# users probe1 (50 messages of 8 KiB), probe2, load1, big1 (BIG_MB MiB of 1 MiB messages,
# so that a backup takes a while). Three probes run all along (bench/loop_latency.py):
#   smtp   one plaintext session on the MX port: NOOP, MAIL, RCPT TO:<probe1@...>, RSET
#   pop3   one POP3 session of probe1: STAT, LIST, UIDL, RETR k (k = 1..50 in turn)
#   login  probe2 logging in and out: connect+greeting, USER, PASS, STAT, QUIT
# each command's latency (reply's last octet after the command's last octet) recorded.
# Scenarios, each REPEATS (3) times with QUIET (2 s) between; a "baseline" window of
# the same length before each:
#   immediate     sqlite3: BEGIN IMMEDIATE; a small write; 3 s; COMMIT
#   exclusive     sqlite3: BEGIN EXCLUSIVE; the same
#   spill         sqlite3: BEGIN IMMEDIATE; a 40 MB write (spilled to the WAL); 3 s; ROLLBACK
#   lockmode      sqlite3: PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; write; 3 s; COMMIT
#   load          smtp_load -s 2 -d, 64 KiB messages to load1 (writes and kotak's checkpoints)
#   ckpt-load     the same load, and sqlite3 PRAGMA wal_checkpoint(TRUNCATE) every 0.3 s
#   ckpt-bigwal   a reader pins the WAL during the load, then one TRUNCATE checkpoint of it
#   backup        kotak backup of the whole store (BIG_MB MiB)
#   useradd       kotak user add, three in a row (a yescrypt hash each, then a write)
#   tls-smtps     TLS_CLIENTS (4) python ssl clients, full handshakes on smtpd's 465 role, 5 s
#   tls-pop3s     the same on pop3d's 995 role (the other daemon: a control)
# During each lock hold, 0.5 s in, one message goes in over SMTP and one is deleted over
# POP3 (DELE 1, QUIT): kotak's own writes, which must wait for the lock (writes.txt).
# Prints one table: p50 / p99 / max per command and scenario. Results in
# bench/results/loop-latency-TIME/ (table.md, windows.tsv, samples, daemons' logs).
#
# Knobs: REPEATS, QUIET, HOLD (3 s), BIG_MB (1024), TLS_CLIENTS, SCENARIOS (a subset,
# in this order), KEEP=1 (leave the instance), BUILD (build-bench).
set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
BUILD=${BUILD:-$ROOT/build-bench}
REPEATS=${REPEATS:-3}
QUIET=${QUIET:-2}
HOLD=${HOLD:-3}
BIG_MB=${BIG_MB:-1024}
TLS_CLIENTS=${TLS_CLIENTS:-4}
SCENARIOS=${SCENARIOS:-"immediate exclusive spill lockmode load ckpt-load ckpt-bigwal backup useradd tls-smtps tls-pop3s"}
RESULTS=${RESULTS:-$BENCH/results/loop-latency-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3
LL=$BENCH/loop_latency.py
mkdir -p "$RESULTS"
LOG=$RESULTS/run.log
say() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
die() { echo "loop_latency.sh: $*" | tee -a "$LOG" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run me as root: the daemons drop to the instance's user"
command -v sqlite3 > /dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q sqlite3 >> "$LOG" 2>&1

say "build kotak (release, $BUILD) and the tools (bench/build)"
[ -d "$BUILD" ] || meson setup "$BUILD" "$ROOT" --buildtype=release >> "$LOG" 2>&1 || die "meson setup failed"
ninja -C "$BUILD" ctl/kotak smtpd/kotak-smtpd pop3d/kotak-pop3d >> "$LOG" 2>&1 || die "build failed (see $LOG)"
[ -d "$BENCH/build" ] || meson setup "$BENCH/build" "$BENCH" >> "$LOG" 2>&1 || die "meson setup of bench failed"
ninja -C "$BENCH/build" >> "$LOG" 2>&1 || die "bench build failed"
K=$BUILD/ctl/kotak
T=$BENCH/build

free_port() {
  local p
  while :; do
    p=$((21000 + RANDOM % 11000))
    ss -ltnH "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}
wait_port() { local i; for i in $(seq 100); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }
now() { date +%s.%N; }

KD=$(mktemp -d /var/tmp/kotak-latbench.XXXXXX)
KC=$KD/kotak.conf
DB=$KD/kotak-data/kotak.db
P_SMTP=$(free_port); P_SUB=$(free_port); P_SUBS=$(free_port); P_POP=$(free_port); P_POPS=$(free_port)
SMTPD_PID=; POP3D_PID=; PROBES=; BG=
cleanup() {
  local p
  for p in $BG $PROBES; do kill -TERM "$p" 2>/dev/null; done
  for p in $SMTPD_PID $POP3D_PID; do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ "${KEEP:-0}" = 1 ] && echo "instance kept in $KD" || rm -rf "$KD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "instance in $KD: smtp $P_SMTP, submissions $P_SUBS, pop3 $P_POP, pop3s $P_POPS"
( cd "$KD" && "$K" -c "$KC" init --hostname mail.example.test ) >> "$LOG" 2>&1 || die "kotak init failed"
sed -i -e "s/^listen = 127.0.0.1:2525/listen = 127.0.0.1:$P_SMTP/" \
  -e "s/^listen = 127.0.0.1:2587/listen = 127.0.0.1:$P_SUB/" \
  -e "s/^listen = 127.0.0.1:2465/listen = 127.0.0.1:$P_SUBS/" \
  -e "s/^listen = 127.0.0.1:2110/listen = 127.0.0.1:$P_POP/" \
  -e "s/^listen = 127.0.0.1:2995/listen = 127.0.0.1:$P_POPS/" \
  -e "s/^listen = 127.0.0.1:2080$/listen =/" \
  -e "s/^message_size = [0-9A-Z]*/message_size = 64M/" "$KC"
grep -q "^listen = 127.0.0.1:$P_POPS" "$KC" || die "could not set the ports in $KC"
"$K" -c "$KC" domain add example.test >> "$LOG" 2>&1 || die "domain add failed"
for u in probe1 probe2 load1 big1; do
  echo "latbench-$u" | "$K" -c "$KC" user add "$u@example.test" --password-stdin >> "$LOG" 2>&1 || die "user add $u failed"
done

say "mail in: $BIG_MB x 1 MiB to big1 (kotak import maildir), 50 x 8 KiB to probe1 (SMTP)"
# distinct messages (an import skips a body it already has), made and imported before the
# daemons start
$PY - "$KD/bigmd" "$BIG_MB" <<'PYEOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for sub in ("new", "cur", "tmp"):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
line = (b"x" * 76) + b"\n"
body = line * (1048576 // len(line))
for i in range(n):
    with open(os.path.join(d, "cur", "%d.latbench:2,S" % i), "wb") as f:
        f.write(b"From: a@example.test\nTo: big1@example.test\nSubject: big %d\n"
                b"Message-ID: <%d@latbench>\n\n" % (i, i))
        f.write(body)
PYEOF
"$K" -c "$KC" import maildir big1@example.test "$KD/bigmd" >> "$LOG" 2>&1 || die "import of big1 failed"
rm -rf "$KD/bigmd"
"$BUILD/smtpd/kotak-smtpd" -c "$KC" 2>> "$RESULTS/kotak-smtpd.log" & SMTPD_PID=$!
"$BUILD/pop3d/kotak-pop3d" -c "$KC" 2>> "$RESULTS/kotak-pop3d.log" & POP3D_PID=$!
for p in $P_SMTP $P_SUBS $P_POP $P_POPS; do wait_port "$p" || die "kotak did not start (see $RESULTS/kotak-*.log)"; done
# (smtp_load's latency_p99 here is its own wait at the end of a run, not kotak's)
"$T/smtp_load" -s 1 -d -m 50 -l 8K -t probe1@example.test "127.0.0.1:$P_SMTP" >> "$LOG" 2>&1 || die "filling probe1 failed"
"$T/smtp_load" -s 1 -d -m 20 -l 1K -t load1@example.test "127.0.0.1:$P_SMTP" >> "$LOG" 2>&1 || die "filling load1 failed"
sleep 1

sqlite3 "$DB" "PRAGMA wal_checkpoint(TRUNCATE);" >> "$LOG" 2>&1
echo "store: $(du -sh "$DB" | cut -f1), $("$K" -c "$KC" stats | tr '\n' ';')" | tee -a "$LOG"
{ echo "date: $(date -Is)"; echo "kotak: $(git -C "$ROOT" log -1 --format='%h %s')"
  echo "nproc: $(nproc)"; grep -m1 'model name' /proc/cpuinfo; sqlite3 --version
  echo "loadavg at start: $(cat /proc/loadavg)"; } > "$RESULTS/machine.txt"

say "probes start"
$PY "$LL" smtp "127.0.0.1:$P_SMTP" probe1@example.test "$RESULTS/samples.smtp" 2>> "$LOG" & PROBES="$PROBES $!"
$PY "$LL" pop3 "127.0.0.1:$P_POP" probe1@example.test latbench-probe1 "$RESULTS/samples.pop3" 2>> "$LOG" & PROBES="$PROBES $!"
$PY "$LL" login "127.0.0.1:$P_POP" probe2@example.test latbench-probe2 "$RESULTS/samples.login" 2>> "$LOG" & PROBES="$PROBES $!"
sleep 2

WIN=$RESULTS/windows.tsv
: > "$WIN"
win() { echo "$1 $2 $3" >> "$WIN"; }
# baseline SECONDS: a quiet window of that length
baseline() { local a; a=$(now); sleep "$1"; win baseline "$a" "$(now)"; }

# hold NAME PREAMBLE WRITE END: sqlite3 takes the write lock, then HOLD s, then END; the
# window is from the write done (the lock surely held) to the end done
hold() {
  local name=$1 pre=$2 write=$3 end=$4 mark=$RESULTS/mark.$$ a b
  rm -f "$mark"
  { echo ".timeout 5000"; echo "$pre"; echo "$write"; echo ".output $mark"; echo "SELECT 'held';"
    echo ".output stdout"; sleep "$HOLD"; echo "$end"; echo "SELECT 'end';"; } |
    sqlite3 "$DB" >> "$LOG" 2>&1 &
  local sp=$!
  for _ in $(seq 200); do [ -s "$mark" ] && break; sleep 0.01; done
  a=$(now)
  [ -s "$mark" ] || echo "  $name: the lock was not taken within 2 s" | tee -a "$LOG"
  # writes of kotak's own while the lock is held: a message in, a deletion at QUIT (ms)
  sleep 0.5
  $PY "$LL" write-smtp "127.0.0.1:$P_SMTP" load1@example.test > "$RESULTS/w.smtp" 2>&1 & local w1=$!
  $PY "$LL" write-pop3 "127.0.0.1:$P_POP" load1@example.test latbench-load1 > "$RESULTS/w.pop3" 2>&1 & local w2=$!
  wait "$w1" "$w2"
  echo "$name $(cat "$RESULTS/w.smtp" "$RESULTS/w.pop3" | tr '\n' ' ')" >> "$RESULTS/writes.txt"
  wait "$sp"
  b=$(now)
  win "$name" "$a" "$b"
  echo "  $name: $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b - a}') s" >> "$LOG"
  rm -f "$mark"
}

load_start() { "$T/smtp_load" -s 4 -d -m 1000000 -l 256K -t load1@example.test "127.0.0.1:$P_SMTP" >> "$LOG" 2>&1 & BG=$!; }
load_stop() { kill -TERM "$BG" 2>/dev/null; wait "$BG" 2>/dev/null; BG=; }

run_scenario() {
  local a b i
  case $1 in
    immediate) hold immediate "" "BEGIN IMMEDIATE; INSERT OR REPLACE INTO meta VALUES('latbench', '$RANDOM');" "COMMIT;" ;;
    exclusive) hold exclusive "" "BEGIN EXCLUSIVE; INSERT OR REPLACE INTO meta VALUES('latbench', '$RANDOM');" "COMMIT;" ;;
    spill) hold spill "PRAGMA cache_size = -2000;" \
      "BEGIN IMMEDIATE; INSERT OR REPLACE INTO meta VALUES('latbench-big', hex(randomblob(20000000)));" "ROLLBACK;" ;;
    lockmode) hold lockmode "PRAGMA locking_mode = EXCLUSIVE;" \
      "BEGIN EXCLUSIVE; INSERT OR REPLACE INTO meta VALUES('latbench', '$RANDOM');" "COMMIT;" ;;
    load)
      load_start; a=$(now); sleep 5; b=$(now); load_stop; win load "$a" "$b" ;;
    ckpt-load)
      load_start; sleep 0.5; a=$(now)
      for i in $(seq 16); do
        echo "$(date +%T.%N) $(sqlite3 -cmd '.timeout 5000' "$DB" 'PRAGMA wal_checkpoint(TRUNCATE);' 2>&1)" >> "$LOG"
        sleep 0.3
      done
      b=$(now); load_stop; win ckpt-load "$a" "$b" ;;
    ckpt-bigwal)
      # a reader's snapshot keeps every checkpoint short of the end of the WAL while the load runs
      { echo "BEGIN; SELECT count(*) FROM users;"; sleep 8; echo "COMMIT;"; } | sqlite3 "$DB" >> "$LOG" 2>&1 &
      local rp=$!
      load_start; sleep 8; wait "$rp"; load_stop
      echo "  WAL before the checkpoint: $(stat -c %s "$DB-wal") octets" | tee -a "$LOG"
      a=$(now)
      echo "$(sqlite3 -cmd '.timeout 5000' "$DB" 'PRAGMA wal_checkpoint(TRUNCATE);' 2>&1)" >> "$LOG"
      b=$(now); win ckpt-bigwal "$a" "$b"
      echo "  checkpoint of it: $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b - a}') s" | tee -a "$LOG" ;;
    backup)
      rm -f "$KD/backup.db"; a=$(now)
      "$K" -c "$KC" backup "$KD/backup.db" >> "$LOG" 2>&1 || echo "  backup failed" | tee -a "$LOG"
      b=$(now); win backup "$a" "$b"; rm -f "$KD/backup.db"
      echo "  backup: $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b - a}') s" | tee -a "$LOG" ;;
    useradd)
      a=$(now)
      for i in 1 2 3; do
        echo "latbench-pw-$i" | "$K" -c "$KC" user add "added$RANDOM$i@example.test" --password-stdin >> "$LOG" 2>&1
      done
      b=$(now); win useradd "$a" "$b" ;;
    tls-smtps|tls-pop3s)
      local port=$P_SUBS pids= n=0 c; [ "$1" = tls-pop3s ] && port=$P_POPS
      a=$(now)
      for i in $(seq "$TLS_CLIENTS"); do $PY "$LL" tls "127.0.0.1:$port" 5 > "$RESULTS/tls.$1.$i" 2>> "$LOG" & pids="$pids $!"; done
      # shellcheck disable=SC2086
      wait $pids
      b=$(now); win "$1" "$a" "$b"
      for i in $(seq "$TLS_CLIENTS"); do c=$(cat "$RESULTS/tls.$1.$i"); n=$((n + ${c:-0})); done
      echo "  $1: $n full handshakes in $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b - a}') s" | tee -a "$LOG" ;;
    *) die "unknown scenario $1" ;;
  esac
}

for r in $(seq "$REPEATS"); do
  for s in $SCENARIOS; do
    say "round $r: $s"
    baseline "$HOLD"
    run_scenario "$s"
    sleep "$QUIET"
  done
done
baseline "$HOLD"

say "probes stop"
for p in $PROBES; do kill -TERM "$p"; done
wait $PROBES 2>/dev/null
PROBES=
echo "loadavg at end: $(cat /proc/loadavg)" >> "$RESULTS/machine.txt"
$PY "$LL" report "$WIN" "$RESULTS"/samples.* > "$RESULTS/table.md"
cat "$RESULTS/machine.txt"
echo
cat "$RESULTS/table.md"
echo
echo "kotak's own writes while sqlite3 held the lock (DATA-dot: final dot -> 250; QUIT-dele: QUIT -> +OK, ms):"
cat "$RESULTS/writes.txt"
