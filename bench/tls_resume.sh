#!/bin/bash
# bench/tls_resume.sh — what a TLS handshake costs kotak-smtpd on 465 (implicit TLS,
# ECDHE-ECDSA P-256, TLS 1.2), full against resumed (a session ticket, and a session id), in
# instructions (callgrind) per handshake. Each figure is the difference of two runs (N1 and
# N2 handshakes) over N2 - N1, so the start-up cost drops out. The client is Python's ssl:
# a fresh session for each full handshake; the first session again for each resumed one.
#
#   sudo bench/tls_resume.sh          ~1 min
#
# Knobs: BUILD (build-bench, release), N1 / N2 (50 / 250), RESULTS
# (bench/results/tls-resume-TIME). Needs root (the daemon drops to the instance's user) and
# valgrind.
set -eu
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
BUILD=${BUILD:-$ROOT/build-bench}
N1=${N1:-50}
N2=${N2:-250}
RESULTS=${RESULTS:-$BENCH/results/tls-resume-$(date +%Y%m%d-%H%M%S)}
[ "$(id -u)" = 0 ] || { echo "tls_resume.sh: run me as root" >&2; exit 1; }
command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null
mkdir -p "$RESULTS"
LOG=$RESULTS/run.log
[ -d "$BUILD" ] || meson setup "$BUILD" "$ROOT" --buildtype=release >> "$LOG"
ninja -C "$BUILD" ctl/kotak smtpd/kotak-smtpd >> "$LOG"
K=$BUILD/ctl/kotak
SMTPD=$BUILD/smtpd/kotak-smtpd

free_port() {
  local p
  while :; do
    p=$((21000 + RANDOM % 11000))
    ss -ltnH "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}
KD=$(mktemp -d /var/tmp/kotak-tls-bench.XXXXXX)
trap 'rm -rf "$KD"' EXIT
P_TLS=$(free_port)
( cd "$KD" && "$K" -c kotak.conf init --hostname mail.example.test ) >> "$LOG" 2>&1
sed -i -e "s/^listen = 127.0.0.1:2465/listen = 127.0.0.1:$P_TLS/" \
  -e "s/^listen = 127.0.0.1:\(2525\|2587\|2110\|2995\|2080\)$/listen =/" "$KD/kotak.conf"

# handshakes N MODE: N connections to 465, each a handshake, the greeting read, then closed.
handshakes() {
  python3 - "$P_TLS" "$1" "$2" <<'PY'
import socket, ssl, sys
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
if mode == "id":
    ctx.options |= ssl.OP_NO_TICKET
session, resumed = None, 0
for i in range(n + 1):  # one more: the first makes the session the others resume
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, session=session if mode != "full" else None) as s:
            s.recv(512)
            resumed += s.session_reused
            if session is None:
                session = s.session
want = 0 if mode == "full" else n
if resumed != want:
    sys.exit(f"resumed {resumed} of {n}, not {want}")
PY
}

# ir N MODE: kotak-smtpd's instructions in all for N handshakes
ir() {
  local out=$RESULTS/callgrind.$2.$1 pid
  : > "$out"; chown --reference="$KD/kotak-data" "$out"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$SMTPD" -c "$KD/kotak.conf" >> "$LOG" 2>&1 & pid=$!
  for _ in $(seq 300); do ss -ltnH "sport = :$P_TLS" | grep -q . && break; sleep 0.1; done
  handshakes "$1" "$2" >> "$LOG" 2>&1
  kill -TERM "$pid"; wait "$pid" || true
  sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$out" | head -1
}

declare -A per
for mode in full ticket id; do
  a=$(ir "$N1" "$mode"); z=$(ir "$N2" "$mode")
  per[$mode]=$(( (z - a) / (N2 - N1) ))
  echo "$mode: ${per[$mode]} instructions per handshake" | tee -a "$LOG"
done
{
  echo "| kotak-smtpd, 465, one handshake | instructions | full / this |"
  echo "|---|---|---|"
  for mode in full ticket id; do
    printf '| %s | %s | %s |\n' "$mode" "${per[$mode]}" \
      "$(awk -v f="${per[full]}" -v m="${per[$mode]}" 'BEGIN { printf "%.1fx", f / m }')"
  done
} | tee "$RESULTS/table.md"
