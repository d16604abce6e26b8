#!/bin/bash
# bench/growth.sh — kotak's cost as its store grows, with Dovecot beside it in the same run
# (see bench/README.md, "Cost as the store grows").
#
#   sudo bench/growth.sh                         everything, ~12-15 min on 2 cores
#   STEPS="fill smtp" bench/growth.sh            some of: fill smtp pop3 (smtp needs fill)
#   SIZES="0 10000 100000" POP_SIZES="10000 100000" bench/growth.sh    a quicker try
#
# 1. Stores of SIZES messages (default 0, 10k, 100k, 1M) of MSG_SIZE octets (1 KiB) spread
#    evenly over USERS users (user1..user1000@example.test), filled through kotak's own
#    import (`kotak import mbox USER FILE`, one mbox per user, IMPORT_JOBS at once), each
#    size grown from the one before and copied (kotak.db, no daemon running).
#    For each size, a fresh kotak-smtpd on a fresh copy of that store: smtp_load -s 20,
#    SMTP_N messages of 1 KiB, new connection per message and reused (-d), recipients
#    taken in turn from the USERS users; accepted msg/s, and kotak-smtpd's CPU per message
#    (utime + stime of /proc/PID/stat, all threads). REPEATS rounds, every size in each
#    round (in another order each round); the ratio against the empty store is taken
#    within each round, and the median of those ratios is judged (within 10 %).
# 2. Maildrops of POP_SIZES messages (default 10k, 100k, 1M): a Maildir written directly,
#    indexed once by a private Dovecot on loopback (as bench/import_pop3.sh: `dovecot -c`,
#    nothing in /etc changes), the same files imported into kotak with `kotak import
#    maildir` (dovecot-uidlist read: both serve the same UIDLs, which the client checks).
#    One untimed session on each first (a server in use has its index and page cache
#    warm). Then POP_REPEATS sessions on each, in turn: connect, USER, PASS, STAT, UIDL,
#    RETR of the newest, QUIT, closed; the median of the whole, and of each step. Then
#    DELE of every message + QUIT on kotak (one transaction), timed from QUIT sent to
#    its +OK, DELE_REPEATS times on fresh copies; and once on Dovecot (not a target).
#
# Knobs: SIZES, USERS (1000), MSG_SIZE (1024), SMTP_N (10000), SESSIONS (20), REPEATS (3),
# POP_SIZES, POP_REPEATS (5), DELE_REPEATS (3; once above 100,000), DOVE_DELE_MAX (100000: Dovecot's
# DELE of all only up to this size), IMPORT_JOBS (2), BUILD (build-bench),
# RESULTS (bench/results/growth-TIME), KEEP=1 (leave the instance), RENICE (-5).
# Root: the daemons drop to their user, Dovecot's mail belongs to nobody.
set -u -o pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
STEPS=${STEPS:-"fill smtp pop3"}
SIZES=${SIZES:-"0 10000 100000 1000000"}
USERS=${USERS:-1000}
MSG_SIZE=${MSG_SIZE:-1024}
SMTP_N=${SMTP_N:-10000}
SESSIONS=${SESSIONS:-20}
REPEATS=${REPEATS:-3}
POP_SIZES=${POP_SIZES:-"10000 100000 1000000"}
POP_REPEATS=${POP_REPEATS:-5}
DELE_REPEATS=${DELE_REPEATS:-3}
IMPORT_JOBS=${IMPORT_JOBS:-2}
DOVE_DELE_MAX=${DOVE_DELE_MAX:-100000}
BUILD=${BUILD:-$ROOT/build-bench}
RESULTS=${RESULTS:-$BENCH/results/growth-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3
PASSWORD=growth-pw

mkdir -p "$RESULTS"
LOG=$RESULTS/run.log
say() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
note() { echo "$*" | tee -a "$LOG"; }
die() { echo "growth.sh: $*" | tee -a "$LOG" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run me as root: the daemons drop to their user, Dovecot's mail is nobody's"
RENICE=${RENICE:--5}
[ "$RENICE" = 0 ] || renice -n "$RENICE" -p $$ > /dev/null || note "cannot renice to $RENICE"
for s in $STEPS; do case $s in fill|smtp|pop3) ;; *) die "unknown step $s (fill smtp pop3)" ;; esac; done
case " $STEPS " in *" smtp "*) case " $STEPS " in *" fill "*) ;; *) die "smtp needs fill in STEPS" ;; esac ;; esac

kv() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else print a[int((NR + 1) / 2)]}'; }
now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"%.${2:-1}f\", $1}"; }
free_port() { # a port below the ephemeral range that nobody listens on, not handed out before
  local p
  while :; do
    p=$((21000 + RANDOM % 11000))
    case " ${USED_PORTS:-} " in *" $p "*) continue ;; esac
    ss -ltnH "sport = :$p" | grep -q . || ss -lunH "sport = :$p" | grep -q . || { USED_PORTS="${USED_PORTS:-} $p"; echo $p; return; }
  done
}
wait_port() { local i; for i in $(seq 200); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }
# cpu_ticks PID: utime + stime of the whole process (all its threads, live and gone), in ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
T_ALL=$(now)
PHASES=()   # "name seconds" of each part, for the summary
phase_done() { PHASES+=("$1 $(calc "$(now) - $2" 0)"); note "  ($1 took $(calc "$(now) - $2" 0) s)"; }

# --- build ----------------------------------------------------------------------

say "build kotak (release, $BUILD) and the tools (bench/build)"
t0=$(now)
[ -d "$BUILD" ] || meson setup "$BUILD" "$ROOT" --buildtype=release >> "$LOG" 2>&1 || die "meson setup failed (see $LOG)"
ninja -C "$BUILD" ctl/kotak smtpd/kotak-smtpd pop3d/kotak-pop3d >> "$LOG" 2>&1 || die "kotak build failed (see $LOG)"
[ -d "$BENCH/build" ] || meson setup "$BENCH/build" "$BENCH" >> "$LOG" 2>&1 || die "meson setup of bench failed"
ninja -C "$BENCH/build" >> "$LOG" 2>&1 || die "bench build failed (see $LOG)"
K=$BUILD/ctl/kotak
T=$BENCH/build
command -v sqlite3 >/dev/null || die "sqlite3 is needed (apt-get install sqlite3)"
case " $STEPS " in *" pop3 "*)
  command -v dovecot >/dev/null && [ -x /usr/lib/dovecot/pop3 ] ||
    die "dovecot is not installed (apt-get install dovecot-core dovecot-pop3d)" ;;
esac
phase_done build "$t0"

# --- the kotak instance --------------------------------------------------------

KD=$(mktemp -d /var/tmp/kotak-growth.XXXXXX)
chmod 755 "$KD"
KC=$KD/kotak.conf
DATA=$KD/kotak-data
DB=$DATA/kotak.db
P_SMTP=$(free_port); P_SUB=$(free_port); P_SUBS=$(free_port); P_POP=$(free_port); P_POPS=$(free_port)
P_WEB=$(free_port); P_DOVE=$(free_port); P_DNS=$(free_port)
SMTPD_PID=; POP3D_PID=; DOVE_PID=; DNS_PID=

kstop() {
  local p i
  for p in $SMTPD_PID $POP3D_PID; do kill -TERM "$p" 2>/dev/null; done
  for p in $SMTPD_PID $POP3D_PID; do
    for i in $(seq 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  SMTPD_PID=; POP3D_PID=
}
start_smtpd() {
  "$BUILD/smtpd/kotak-smtpd" -c "$KC" 2>> "$RESULTS/kotak-smtpd.log" & SMTPD_PID=$!
  wait_port "$P_SMTP" || die "kotak-smtpd did not start (see $RESULTS/kotak-smtpd.log)"
}
start_pop3d() {
  "$BUILD/pop3d/kotak-pop3d" -c "$KC" 2>> "$RESULTS/kotak-pop3d.log" & POP3D_PID=$!
  wait_port "$P_POP" || die "kotak-pop3d did not start (see $RESULTS/kotak-pop3d.log)"
}
# use FILE: the store becomes a copy of FILE (daemons stopped), written out before any timing
use_store() {
  kstop
  rm -f "$DB-wal" "$DB-shm"
  cp "$1" "$DB" || die "cannot copy $1"
  chown --reference="$DATA" "$DB"
  sync
}
# keep FILE: the store, as it is now (no daemon, no import running), copied to FILE
keep_store() {
  if [ -s "$DB-wal" ]; then # a last connection that did not checkpoint: fold the WAL in
    sqlite3 "$DB" 'PRAGMA wal_checkpoint(TRUNCATE);' > /dev/null || die "cannot checkpoint $DB"
  fi
  rm -f "$DB-wal" "$DB-shm"
  cp "$DB" "$1" || die "cannot copy the store to $1"
}
entries() { # maildrop entries of the store (daemons stopped)
  sqlite3 -readonly "$DB" "SELECT count(*) FROM maildrop${1:+ WHERE user_id = (SELECT id FROM users WHERE local = '$1')}"
}
db_mb() { calc "$(stat -c %s "$1") / 1048576" 0; }
dove_stop() {
  [ -n "$DOVE_PID" ] || return 0
  kill -TERM "$DOVE_PID" 2>/dev/null
  local i; for i in $(seq 100); do kill -0 "$DOVE_PID" 2>/dev/null || break; sleep 0.1; done
  DOVE_PID=
}
cleanup() {
  kstop
  dove_stop
  [ -n "$DNS_PID" ] && kill "$DNS_PID" 2>/dev/null
  [ "${KEEP:-0}" = 1 ] && echo "instance kept in $KD" || rm -rf "$KD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The MX's checks ask DNS about the sender's domain for every message (SPF, DMARC). A DNS
# server of our own on loopback answers every question at once with NXDOMAIN, the same for
# every store size: the machine's resolver may be slow or drop questions (without it,
# messages here waited for a 5 s DNS timeout each), and the figure is the store's.
"$PY" "$BENCH/dns_nx.py" "$P_DNS" & DNS_PID=$!

say "kotak instance in $KD: smtp 127.0.0.1:$P_SMTP, pop3 127.0.0.1:$P_POP"
t0=$(now)
( cd "$KD" && "$K" -c "$KC" init --hostname mail.example.test ) >> "$LOG" 2>&1 || die "kotak init failed"
# [web] stays on (as kotak init writes it), on a port of its own; connection limits as run.sh
sed -i -e "s/^listen = 127.0.0.1:2525/listen = 127.0.0.1:$P_SMTP/" \
  -e "s/^listen = 127.0.0.1:2587/listen = 127.0.0.1:$P_SUB/" \
  -e "s/^listen = 127.0.0.1:2465/listen = 127.0.0.1:$P_SUBS/" \
  -e "s/^listen = 127.0.0.1:2110/listen = 127.0.0.1:$P_POP/" \
  -e "s/^listen = 127.0.0.1:2995/listen = 127.0.0.1:$P_POPS/" \
  -e "s/^listen = 127.0.0.1:2080/listen = 127.0.0.1:$P_WEB/" \
  -e "s/^connections = [0-9]*/connections = 20000/" \
  -e "s/^connections_per_address = [0-9]*/connections_per_address = 20000/" \
  -e "s/^password_min_length = [0-9]*/password_min_length = 1/" \
  -e "s/^servers =.*/servers = 127.0.0.1:$P_DNS/" "$KC"
grep -q "^connections_per_address = 20000" "$KC" && grep -q "^listen = 127.0.0.1:$P_WEB" "$KC" &&
  grep -q "^servers = 127.0.0.1:$P_DNS" "$KC" ||
  die "could not set the ports and limits in $KC"
"$K" -c "$KC" domain add example.test >> "$LOG" 2>&1 || die "domain add failed"
# One yescrypt hash (libcrypt, as kotak's own set-up makes them) for every user: all of
# them log in with $PASSWORD. USERS add calls with the hash cost no hashing each.
HASH=$("$PY" - "$PASSWORD" <<'EOF'
import ctypes, sys
lib = ctypes.CDLL("libcrypt.so.1")
lib.crypt_gensalt.restype = ctypes.c_char_p
lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
lib.crypt.restype = ctypes.c_char_p
lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
h = lib.crypt(sys.argv[1].encode(), lib.crypt_gensalt(b"$y$", 0, None, 0))
assert h and h.startswith(b"$y$")
print(h.decode())
EOF
) || die "cannot hash the password"
for i in $(seq "$USERS"); do echo "user$i@example.test"; done > "$KD/users.txt"
for n in $POP_SIZES; do echo "big$n@example.test"; done >> "$KD/users.txt"
# four at a time: each add is mostly its commit's fsyncs
xargs -P 4 -I{} "$K" -c "$KC" user add {} --password-hash "$HASH" < "$KD/users.txt" >> "$LOG" 2>&1 ||
  die "user add failed (see $LOG)"
[ "$(sqlite3 -readonly "$DB" 'SELECT count(*) FROM users')" = "$(wc -l < "$KD/users.txt")" ] || die "not every user was added"
keep_store "$KD/pristine.db"
phase_done "instance + $(wc -l < "$KD/users.txt") users" "$t0"

{ echo "date: $(date -Is)"; echo "kotak: $(git -C "$ROOT" log -1 --format='%h %s' 2>/dev/null)"
  echo "working tree: $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -vc '^??') modified file(s) beside HEAD"
  echo "nproc: $(nproc)"; grep -m1 'model name' /proc/cpuinfo; free -m | sed -n 2p
  df -hT "$KD" | tail -1; uname -r; dovecot --version 2>/dev/null | sed 's/^/dovecot /'
  echo "loadavg at start: $(cat /proc/loadavg); run at nice $(ps -o ni= -p $$ | tr -d ' ')"
  echo "knobs: SIZES=\"$SIZES\" USERS=$USERS MSG_SIZE=$MSG_SIZE SMTP_N=$SMTP_N SESSIONS=$SESSIONS REPEATS=$REPEATS POP_SIZES=\"$POP_SIZES\" POP_REPEATS=$POP_REPEATS DELE_REPEATS=$DELE_REPEATS IMPORT_JOBS=$IMPORT_JOBS"
} > "$RESULTS/machine.txt"
cat "$RESULTS/machine.txt" >> "$LOG"

# --- 1. the stores -------------------------------------------------------------------

# gen_mbox DIR FIRST LAST: DIR/userN.mbox for each user, messages FIRST..LAST-1 of that
# user, each MSG_SIZE octets once kotak has made its line ends CRLF (the file has LF)
cat > "$KD/gen_mbox.py" <<'EOF'
import os, sys, time
out, users, first, last, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
os.makedirs(out, exist_ok=True)
LINE = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\r\n"
date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
fromline = "From bench@remote.example " + time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime()) + "\n"
stamp = int(time.time())
bodies = {}
for u in range(1, users + 1):
    parts = []
    for i in range(first, last):
        head = (f"From: <bench@remote.example>\r\nTo: <user{u}@example.test>\r\n"
                f"Subject: growth {u}.{i}\r\nMessage-ID: <{u}.{i}.{stamp}@remote.example>\r\n"
                f"Date: {date}\r\n\r\n")
        n = size - len(head)
        b = bodies.get(n)
        if b is None:
            b = bodies[n] = (LINE * (n // len(LINE) + 1))[:n - 2] + "\r\n"
        parts.append(fromline + (head + b).replace("\r\n", "\n") + "\n")
    with open(os.path.join(out, f"user{u}.mbox"), "w") as f:
        f.write("".join(parts))
EOF

step_fill() {
  local prev=0 n per from to t0 t1 got
  say "fill: stores of $SIZES messages of $MSG_SIZE octets over $USERS users, through kotak import mbox"
  use_store "$KD/pristine.db"
  for n in $SIZES; do
    per=$((n / USERS))
    [ $((per * USERS)) = "$n" ] || die "size $n is not a multiple of USERS=$USERS"
    from=$((prev / USERS)); to=$per
    if [ "$to" -gt "$from" ]; then
      t0=$(now)
      rm -rf "$KD/src"
      "$PY" "$KD/gen_mbox.py" "$KD/src" "$USERS" "$from" "$to" "$MSG_SIZE" || die "gen_mbox failed"
      t1=$(now)
      # one import per user, IMPORT_JOBS at once (each waits for the store's write lock)
      seq "$USERS" | xargs -P "$IMPORT_JOBS" -I{} sh -c \
        '"$1" -c "$2" import mbox "user$3@example.test" "$4/user$3.mbox" > /dev/null 2>> "$5" || echo "FAIL user$3" >> "$5"' \
        _ "$K" "$KC" {} "$KD/src" "$RESULTS/import.err"
      grep -q FAIL "$RESULTS/import.err" 2>/dev/null && die "an import failed: $(grep -m3 . "$RESULTS/import.err" | tr '\n' ' ')"
      local t2; t2=$(now)
      rm -rf "$KD/src"
      note "  $((to - from)) more per user ($(( (to - from) * USERS )) messages): mbox written in $(calc "$t1 - $t0" 1) s, imported in $(calc "$t2 - $t1" 1) s ($(calc "($to - $from) * $USERS / ($t2 - $t1)" 0) msg/s)"
      PHASES+=("fill-to-$n $(calc "$t2 - $t0" 0)")
    fi
    keep_store "$KD/store.$n.db"
    got=$(entries)
    [ "$got" = "$n" ] || die "the $n store holds $got maildrop entries"
    note "  store of $n: $(db_mb "$KD/store.$n.db") MiB"
    prev=$n
  done
  if [ "${SIZES##* }" != 0 ]; then
    note "  stored size of one message: $(sqlite3 -readonly "$DB" 'SELECT size FROM maildrop LIMIT 1') octets (MSG_SIZE=$MSG_SIZE)"
  fi
}

# --- SMTP as the store grows ---------------------------------------------------------

RCPTS=$(seq -s, -f 'user%g@example.test' 1 "$USERS")
# smtp_one SIZE MODE(new|reused) ROUND: one run on a fresh copy of the SIZE store
smtp_one() {
  local n=$1 mode=$2 r=$3 extra="" line c0 c1 got rate us
  [ "$mode" = reused ] && extra=-d
  use_store "$KD/store.$n.db"
  start_smtpd
  c0=$(cpu_ticks "$SMTPD_PID")
  # shellcheck disable=SC2086
  line=$("$T/smtp_load" -s "$SESSIONS" -m "$SMTP_N" -l "$MSG_SIZE" $extra -t "$RCPTS" "127.0.0.1:$P_SMTP" 2>> "$LOG")
  local rc=$?
  c1=$(cpu_ticks "$SMTPD_PID")
  kstop
  got=$(( $(entries) - n ))
  [ "$rc" = 0 ] && [ "$got" = "$SMTP_N" ] || note "WARNING: size $n $mode: smtp_load exit $rc, $got of $SMTP_N stored"
  rate=$(echo "$line" | kv msgs_per_s)
  us=$(calc "($c1 - $c0) / $HZ / $SMTP_N * 1000000" 0)
  echo "size=$n mode=$mode round=$r msgs_per_s=$rate cpu_us_per_msg=$us stored=$got p50_ms=$(echo "$line" | kv latency_p50_ms) p99_ms=$(echo "$line" | kv latency_p99_ms) loadavg1=$(cut -d' ' -f1 /proc/loadavg)" >> "$RESULTS/smtp.runs"
  note "  round $r, store $n, $mode: $rate msg/s, kotak-smtpd ${us} µs CPU/msg ($line)"
}

step_smtp() {
  say "SMTP: smtp_load -s $SESSIONS -m $SMTP_N -l $MSG_SIZE, recipients over $USERS users, new connection and -d, on stores of $SIZES (x$REPEATS rounds)"
  local r i n mode k sizes
  read -r -a sizes <<< "$SIZES"
  k=${#sizes[@]}
  : > "$RESULTS/smtp.runs"
  for r in $(seq "$REPEATS"); do
    for i in $(seq 0 $((k - 1))); do # each round starts at another size
      n=${sizes[$(( (i + r - 1) % k ))]}
      for mode in new reused; do smtp_one "$n" "$mode" "$r"; done
    done
  done
}

# smtp_table: medians per size and mode, and the median of each round's ratio to size 0
smtp_table() {
  local f=$RESULTS/smtp.runs n mode base=${SIZES%% *}
  [ -s "$f" ] || return 0
  {
    echo "| store (messages / users) | store file | SMTP new conn. msg/s | vs empty | SMTP reused (-d) msg/s | vs empty | CPU µs/msg new / reused | p99 ms new / reused |"
    echo "|---|---|---|---|---|---|---|---|"
    for n in $SIZES; do
      local cells=() cpu=() p99=()
      for mode in new reused; do
        local m ratio
        m=$(sed -n "s/^size=$n mode=$mode .*msgs_per_s=\([0-9.]*\).*/\1/p" "$f" | median)
        # the ratio within each round: the two runs were minutes apart at most
        ratio=$(awk -v n="$n" -v b="$base" -v mode="$mode" '
          { split($0, a, " "); for (i in a) { split(a[i], kv, "="); v[kv[1]] = kv[2] }
            if (v["mode"] != mode) next
            if (v["size"] == n) x[v["round"]] = v["msgs_per_s"]; if (v["size"] == b) y[v["round"]] = v["msgs_per_s"] }
          END { for (r in x) if (r in y && y[r] > 0) printf "%.3f\n", x[r] / y[r] }' "$f" | median)
        local all; all=$(sed -n "s/^size=$n mode=$mode .*msgs_per_s=\([0-9.]*\).*/\1/p" "$f" | tr '\n' ' ')
        cells+=("$m" "$ratio [$(echo "$all" | sed 's/ $//')]")
        cpu+=("$(sed -n "s/^size=$n mode=$mode .*cpu_us_per_msg=\([0-9.]*\).*/\1/p" "$f" | median)")
        p99+=("$(sed -n "s/^size=$n mode=$mode .*p99_ms=\([0-9.]*\).*/\1/p" "$f" | median)")
      done
      local mb="-"; [ -f "$KD/store.$n.db" ] && mb="$(db_mb "$KD/store.$n.db") MiB"
      echo "| $n / $USERS | $mb | ${cells[0]} | ${cells[1]} | ${cells[2]} | ${cells[3]} | ${cpu[0]} / ${cpu[1]} | ${p99[0]} / ${p99[1]} |"
    done
    echo
    echo "vs empty: the median of each round's ratio to the store of $base (the rounds' rates in brackets). Target: at 1,000,000 messages, within 10 % (≥ 0.90) of the empty store."
  } > "$RESULTS/smtp.md"
  cat "$RESULTS/smtp.md" | tee -a "$LOG"
}

# --- POP3 on a large maildrop ----------------------------------------------------------

# gen_maildir DIR COUNT SIZE: COUNT files of SIZE octets (CRLF, as Dovecot's own delivery
# names them: S= and W= sizes), message i in the i-th name
cat > "$KD/gen_maildir.py" <<'EOF'
import os, sys, time
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
part, parts = (int(x) for x in sys.argv[4].split("/"))  # this writer's share: i % parts == part
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(root, d), exist_ok=True)
LINE = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\r\n"
now = int(time.time()) - 86400
date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(now)).encode()
cur = os.path.join(root, "cur")
for i in range(part, count, parts):
    head = (b"From: <bench@remote.example>\r\nTo: <big@example.test>\r\nSubject: pop %d\r\n"
            b"Message-ID: <%d.%d@remote.example>\r\nDate: %s\r\n\r\n" % (i, i, now, date))
    n = size - len(head)
    body = (LINE * (n // len(LINE) + 1))[:n - 2] + b"\r\n"
    with open(os.path.join(cur, "%d.M%07dP1.growth,S=%d,W=%d:2,S" % (now, i, size, size)), "wb") as f:
        f.write(head + body)
EOF

# pop_client.py HOST PORT USER PASS MODE: one session, one key=value line.
# MODE list: USER, PASS, STAT, UIDL, RETR of the last, QUIT; ms of each step and of all,
# from connect to the server's close. MODE dele: USER, PASS, STAT, DELE of every message
# (pipelined, 1,000 at a time), then QUIT: quit_ms from QUIT sent to its +OK.
cat > "$KD/pop_client.py" <<'EOF'
import socket, sys, time
host, port, user, pw, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
buf = bytearray()
def line():
    global buf
    while True:
        i = buf.find(b"\r\n")
        if i >= 0:
            l = bytes(buf[:i]); del buf[:i + 2]
            return l
        d = s.recv(1 << 18)
        if not d:
            raise SystemExit("pop_client: closed early")
        buf += d
def ok(what):
    l = line()
    if not l.startswith(b"+OK"):
        raise SystemExit(f"pop_client: {what}: {l[:200]!r}")
    return l
def multi(what):
    """a multi-line reply: the +OK line, then everything up to CRLF.CRLF"""
    global buf
    ok(what)
    while True:
        if buf.startswith(b".\r\n"):
            del buf[:3]; return b""
        i = buf.find(b"\r\n.\r\n")
        if i >= 0:
            body = bytes(buf[:i + 2]); del buf[:i + 5]
            return body
        d = s.recv(1 << 18)
        if not d:
            raise SystemExit(f"pop_client: {what}: closed early")
        buf += d
def cmd(c):
    s.sendall(c.encode() + b"\r\n")
t = {}
t0 = time.perf_counter()
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
ok("greeting"); t["greeting"] = time.perf_counter()
cmd("USER " + user); ok("USER")
cmd("PASS " + pw); ok("PASS"); t["login"] = time.perf_counter()
cmd("STAT"); n = int(ok("STAT").split()[1]); t["stat"] = time.perf_counter()
out = {}
if mode == "list":
    cmd("UIDL"); u = multi("UIDL"); t["uidl"] = time.perf_counter()
    lines = u.split(b"\r\n")[:-1]
    if len(lines) != n:
        raise SystemExit(f"pop_client: UIDL gave {len(lines)} lines, STAT {n}")
    last_uidl = lines[-1].split()[1].decode() if lines else "-"
    m = b""
    if n > 0:
        cmd(f"RETR {n}"); m = multi(f"RETR {n}")
    t["retr"] = time.perf_counter()
    out["last_uidl"] = last_uidl; out["retr_octets"] = len(m)
elif mode == "dele":
    for a in range(1, n + 1, 1000):
        b = min(n, a + 999)
        s.sendall(b"".join(b"DELE %d\r\n" % i for i in range(a, b + 1)))
        for i in range(a, b + 1):
            ok(f"DELE {i}")
    t["dele"] = time.perf_counter()
tq = time.perf_counter()
cmd("QUIT"); q = ok("QUIT"); t["quit"] = time.perf_counter()
while s.recv(1 << 16):
    pass
t["closed"] = time.perf_counter()
s.close()
ms = lambda a, b: "%.2f" % ((b - a) * 1000)
steps, prev = [], t0
for k in ("greeting", "login", "stat", "uidl", "retr", "dele", "quit"):
    if k in t:
        steps.append(f"{k}_ms={ms(prev, t[k])}"); prev = t[k]
print(f"messages={n} total_ms={ms(t0, t['closed'])} " + " ".join(steps) +
      f" quit_from_sent_ms={ms(tq, t['quit'])} " + " ".join(f"{k}={v}" for k, v in out.items()))
EOF

dove_start() {
  local d=$KD/dovecot
  mkdir -p "$d" "$KD/mail"
  for n in $POP_SIZES; do echo "big$n:{PLAIN}$PASSWORD"; done > "$d/users"
  cat > "$d/dovecot.conf" <<EOF
base_dir = $d/run/
state_dir = $d/state
instance_name = kotak-growth-$$
protocols = pop3
listen = 127.0.0.1
log_path = $d/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 65534
mail_location = maildir:$KD/mail/%n
mail_uid = 65534
mail_gid = 65534
ssl = no
disable_plaintext_auth = no
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $d/users
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$KD/mail/%n
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $P_DOVE
  }
}
protocol pop3 {
  pop3_uidl_format = %08Xu%08Xv
}
# Dovecot's pop3 process is killed at its default 256 MiB of address space by a maildrop
# of 1,000,000 messages ("Connection reset" right after PASS): raised, as an admin must
service pop3 {
  vsz_limit = 2G
}
EOF
  dovecot -c "$d/dovecot.conf" < /dev/null > /dev/null 2>> "$d/dovecot.log" || die "dovecot did not start: $(tail -3 "$d/dovecot.log")"
  DOVE_PID=$(cat "$d/run/master.pid")
  wait_port "$P_DOVE" || die "dovecot does not listen on $P_DOVE"
}

# pop_session LABEL PORT USER MODE: one pop_client line, logged, into RESULTS/pop3.runs
pop_session() {
  local label=$1 port=$2 user=$3 mode=$4 line
  line=$("$PY" "$KD/pop_client.py" 127.0.0.1 "$port" "$user" "$PASSWORD" "$mode" 2>&1) ||
    { note "WARNING: $label: $line"; return 1; }
  echo "$label $line" >> "$RESULTS/pop3.runs"
  note "  $label: $line"
  POP_LINE=$line
}

step_pop3() {
  say "POP3: maildrops of $POP_SIZES messages of $MSG_SIZE octets, kotak-pop3d vs a private Dovecot on 127.0.0.1:$P_DOVE"
  : > "$RESULTS/pop3.runs"
  dove_start
  local n t0 t1 t2 t3 r
  for n in $POP_SIZES; do
    local user=big$n md=$KD/mail/big$n
    t0=$(now)
    # two writers at once: creating files is most of it
    "$PY" "$KD/gen_maildir.py" "$md" "$n" "$MSG_SIZE" 0/2 & local gp=$!
    "$PY" "$KD/gen_maildir.py" "$md" "$n" "$MSG_SIZE" 1/2 || die "gen_maildir failed"
    wait $gp || die "gen_maildir failed"
    chown -R 65534:65534 "$md"; chmod 700 "$md" "$md"/cur "$md"/new "$md"/tmp
    t1=$(now)
    # Dovecot indexes the Maildir once (and writes dovecot-uidlist, which kotak reads)
    doveadm -c "$KD/dovecot/dovecot.conf" mailbox status -u "$user" messages INBOX >> "$LOG" 2>&1 ||
      die "doveadm mailbox status failed: $(tail -3 "$KD/dovecot/dovecot.log")"
    t2=$(now)
    use_store "$KD/pristine.db"
    "$K" -c "$KC" import maildir "$user@example.test" "$md" >> "$LOG" 2>&1 || die "kotak import maildir failed"
    t3=$(now)
    keep_store "$KD/pop.$n.db"
    [ "$(entries "$user")" = "$n" ] || die "kotak's $user holds $(entries "$user") messages, not $n"
    note "  maildrop of $n: Maildir written in $(calc "$t1 - $t0" 1) s, Dovecot's index built in $(calc "$t2 - $t1" 1) s, kotak import maildir $(calc "$t3 - $t2" 1) s; kotak store $(db_mb "$KD/pop.$n.db") MiB"
    PHASES+=("pop3-$n-setup $(calc "$t3 - $t0" 0)")
    t0=$(now)
    use_store "$KD/pop.$n.db"
    start_pop3d
    # one untimed session on each: index, caches and page cache warm, as on a server in use
    pop_session "warm kotak $n" "$P_POP" "$user@example.test" list || die "kotak's first session failed"
    local ku du
    ku=$(echo "$POP_LINE" | kv last_uidl)
    pop_session "warm dovecot $n" "$P_DOVE" "$user" list || die "Dovecot's first session failed"
    du=$(echo "$POP_LINE" | kv last_uidl)
    [ "$ku" = "$du" ] || note "WARNING: the newest message's UIDL differs: kotak $ku, Dovecot $du"
    local c0 c1; c0=$(cpu_ticks "$POP3D_PID")
    for r in $(seq "$POP_REPEATS"); do
      if [ $((r % 2)) = 1 ]; then
        pop_session "list kotak $n $r" "$P_POP" "$user@example.test" list
        pop_session "list dovecot $n $r" "$P_DOVE" "$user" list
      else
        pop_session "list dovecot $n $r" "$P_DOVE" "$user" list
        pop_session "list kotak $n $r" "$P_POP" "$user@example.test" list
      fi
    done
    c1=$(cpu_ticks "$POP3D_PID")
    echo "cpu kotak $n ms_per_session=$(calc "($c1 - $c0) * 1000 / $HZ / $POP_REPEATS" 1)" >> "$RESULTS/pop3.runs"
    kstop
    local reps=$DELE_REPEATS
    [ "$n" -gt 100000 ] && reps=1 # a copy of a store this large takes a while: once
    for r in $(seq "$reps"); do
      use_store "$KD/pop.$n.db"
      start_pop3d
      pop_session "dele kotak $n $r" "$P_POP" "$user@example.test" dele
      kstop
      local left; left=$(entries "$user")
      [ "$left" = 0 ] || note "WARNING: after DELE of all and QUIT, kotak's $user still holds $left"
    done
    # Dovecot's DELE of all, once (not a target; it empties the Maildir, a file at a time:
    # 2 s for 10,000, too long for 1,000,000 in this run)
    [ "$n" -le "$DOVE_DELE_MAX" ] && pop_session "dele dovecot $n 1" "$P_DOVE" "$user" dele
    rm -rf "$md" "$KD/pop.$n.db"
    phase_done "pop3-$n-timing" "$t0"
  done
  dove_stop
}

# pop_med KIND SERVER N KEY: median of KEY over the matching runs
pop_med() {
  grep "^$1 $2 $3 " "$RESULTS/pop3.runs" | while read -r l; do echo "$l" | kv "$4"; done | median
}
pop3_table() {
  [ -s "$RESULTS/pop3.runs" ] || return 0
  local n
  {
    echo "| maildrop | kotak: login + STAT + UIDL + RETR newest + QUIT (ms) | Dovecot (ms) | Dovecot / kotak | kotak steps: connect+greeting / USER+PASS / STAT / UIDL / RETR / QUIT (ms) | Dovecot steps (ms) | kotak-pop3d CPU per session (ms) | kotak DELE all + QUIT: QUIT → +OK (s) | Dovecot, the same, once (s) |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for n in $POP_SIZES; do
      local k d ks ds dk dd cpu
      k=$(pop_med list kotak "$n" total_ms); d=$(pop_med list dovecot "$n" total_ms)
      ks=""; ds=""
      for st in greeting_ms login_ms stat_ms uidl_ms retr_ms quit_ms; do
        ks="$ks / $(pop_med list kotak "$n" $st)"; ds="$ds / $(pop_med list dovecot "$n" $st)"
      done
      dk=$(grep "^dele kotak $n " "$RESULTS/pop3.runs" | while read -r l; do echo "$l" | kv quit_from_sent_ms; done)
      dd=$(grep "^dele dovecot $n " "$RESULTS/pop3.runs" | while read -r l; do echo "$l" | kv quit_from_sent_ms; done | median)
      cpu=$(sed -n "s/^cpu kotak $n ms_per_session=//p" "$RESULTS/pop3.runs")
      local dkm; dkm=$(echo "$dk" | median)
      echo "| $n | $k | $d | $( [ "$k" != nan ] && [ "$d" != nan ] && calc "$d / $k" 2 || echo -)x | ${ks# / } | ${ds# / } | $cpu | $(calc "$dkm / 1000" 2) [$(echo "$dk" | awk '{printf "%s%.2f", (NR > 1 ? ", " : ""), $1 / 1000}')] | $(calc "$dd / 1000" 2) |"
    done
    echo
    echo "Medians of $POP_REPEATS sessions each (after one untimed session on each server); the whole is from connect to the server's close. Targets at 100,000: Dovecot / kotak ≥ 3; DELE all + QUIT < 5 s."
  } > "$RESULTS/pop3.md"
  cat "$RESULTS/pop3.md" | tee -a "$LOG"
}

for step in $STEPS; do
  t0=$(now)
  case $step in
    fill) step_fill ;;
    smtp) step_smtp ;;
    pop3) step_pop3 ;;
  esac
  phase_done "step $step" "$t0"
done

say "results"
{ echo "# kotak's cost as the store grows ($(date -Is))"; echo
  echo '```'; cat "$RESULTS/machine.txt"; echo '```'; echo
  smtp_table; echo; pop3_table; echo
  echo "time taken (s): $(printf '%s; ' "${PHASES[@]}")whole run $(calc "$(now) - $T_ALL" 0)"
} > "$RESULTS/table.md"
note "time taken (s): $(printf '%s; ' "${PHASES[@]}")whole run $(calc "$(now) - $T_ALL" 0)"
note "done: $RESULTS/table.md"
