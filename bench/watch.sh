#!/bin/bash
# bench/watch.sh — what the live view (issue 14) costs the mail path: kotak-smtpd's
# instructions per accepted message (callgrind) with [web] listen empty (off), set with nobody
# watching (the default of `kotak init`), and set while `kotak watch` reads the rings, in one
# run on one build. Each figure is the difference of two runs (CG_N1 and CG_N2 messages) over
# CG_N2 - CG_N1, so the start-up cost drops out.
#
#   sudo bench/watch.sh                    off, idle, watched: ~1 min
#   CG_N1=200 CG_N2=2200 bench/watch.sh     longer runs
#
# Knobs: BUILD (build-bench, release), SESSIONS (10), SIZE (1024), CG_N1 / CG_N2 (200 / 1200),
# RESULTS (bench/results/watch-TIME), KEEP=1 (leave the instance). Needs root (the daemon
# drops to the instance's user) and valgrind.
set -eu
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
BUILD=${BUILD:-$ROOT/build-bench}
SESSIONS=${SESSIONS:-10}
SIZE=${SIZE:-1024}
CG_N1=${CG_N1:-200}
CG_N2=${CG_N2:-1200}
RESULTS=${RESULTS:-$BENCH/results/watch-$(date +%Y%m%d-%H%M%S)}
[ "$(id -u)" = 0 ] || { echo "watch.sh: run me as root" >&2; exit 1; }
[ "$CG_N2" -gt "$CG_N1" ] || { echo "watch.sh: CG_N2 must be larger than CG_N1" >&2; exit 1; }
command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null
mkdir -p "$RESULTS"
LOG=$RESULTS/run.log

[ -d "$BUILD" ] || meson setup "$BUILD" "$ROOT" --buildtype=release >> "$LOG"
ninja -C "$BUILD" ctl/kotak smtpd/kotak-smtpd >> "$LOG"
[ -d "$BENCH/build" ] || meson setup "$BENCH/build" "$BENCH" >> "$LOG"
ninja -C "$BENCH/build" >> "$LOG"
K=$BUILD/ctl/kotak
SMTPD=$BUILD/smtpd/kotak-smtpd

free_port() {
  local p
  while :; do
    p=$((21000 + RANDOM % 11000))
    ss -ltnH "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}
KD=$(mktemp -d /var/tmp/kotak-watch-bench.XXXXXX)
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$KD"' EXIT
P_SMTP=$(free_port); P_WEB=$(free_port)
( cd "$KD" && "$K" -c kotak.conf init --hostname mail.example.test ) >> "$LOG" 2>&1
sed -i -e "s/^listen = 127.0.0.1:2525/listen = 127.0.0.1:$P_SMTP/" \
  -e "s/^listen = 127.0.0.1:\(2587\|2465\|2110\|2995\)$/listen =/" \
  -e "s/^listen = 127.0.0.1:2080/listen = 127.0.0.1:$P_WEB/" "$KD/kotak.conf"
"$K" -c "$KD/kotak.conf" domain add example.test >> "$LOG"
echo pw-bench-1 | "$K" -c "$KD/kotak.conf" user add user1@example.test --password-stdin >> "$LOG"
sed "s/^listen = 127.0.0.1:$P_WEB/listen =/" "$KD/kotak.conf" > "$KD/off.conf"

# ir CONF N WATCH: kotak-smtpd's instructions in all while N messages go in
ir() {
  local out=$RESULTS/callgrind.$3.$2 pid wp=
  : > "$out"; chown --reference="$KD/kotak-data" "$out"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$SMTPD" -c "$1" >> "$LOG" 2>&1 & pid=$!
  for _ in $(seq 300); do ss -ltnH "sport = :$P_SMTP" | grep -q . && break; sleep 0.1; done
  if [ "$3" = watched ]; then
    "$K" -c "$KD/kotak.conf" watch > /dev/null 2>&1 & wp=$!
    sleep 1.5
  fi
  "$BENCH/build/smtp_load" -s "$SESSIONS" -m "$2" -l "$SIZE" -t user1@example.test \
    "127.0.0.1:$P_SMTP" >> "$LOG"
  [ -n "$wp" ] && kill "$wp"
  kill -TERM "$pid"; wait "$pid" || true
  sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$out" | head -1
}

declare -A per
for mode in off idle watched; do
  conf=$KD/kotak.conf; [ "$mode" = off ] && conf=$KD/off.conf
  a=$(ir "$conf" "$CG_N1" "$mode"); z=$(ir "$conf" "$CG_N2" "$mode")
  per[$mode]=$(( (z - a) / (CG_N2 - CG_N1) ))
  echo "$mode: $a Ir for $CG_N1, $z for $CG_N2: ${per[$mode]} instructions per message" | tee -a "$LOG"
done
{
  echo "| kotak-smtpd instructions per accepted $SIZE-octet message, $SESSIONS sessions, new connection each | instructions | against off |"
  echo "|---|---|---|"
  for mode in off idle watched; do
    echo "| [web] $mode | ${per[$mode]} | $(awk "BEGIN {printf \"%+.1f %%\", 100 * (${per[$mode]} / ${per[off]} - 1)}") |"
  done
} | tee "$RESULTS/table.md"
