#!/bin/bash
# bench/tls_rate.sh — TLS side by side: kotak against Postfix and Dovecot in one run, all
# with the same EC P-256 certificate and key, TLS 1.2, ECDHE-ECDSA-AES128-GCM-SHA256.
#
#   sudo bench/tls_rate.sh           ~3 min on 2 cores
#
# 1. full-handshake rate (no resumption: a new session for every connection) with K
#    concurrent clients for DURATION s: kotak-smtpd's submissions port (implicit TLS, like
#    465) against Postfix smtps (wrapper mode), kotak-pop3d's pop3s port against Dovecot
#    pop3s; a handshake counts when the greeting after it has been read;
# 2. messages per second, a new connection (and a full handshake) per message, 1 KiB, AUTH
#    PLAIN, MSG_SESSIONS sessions: over implicit TLS (kotak vs Postfix smtps) and over
#    STARTTLS (kotak's submission vs Postfix's, like 587);
# 3. for each line, each server's CPU per connection (utime + stime from /proc/PID/stat of
#    all its processes, exited children included through their parent's cutime/cstime)
#    and the client's.
#
# The client is bench/build/tls_load (OpenSSL, one blocking connection at a time per
# worker process, K workers): see the top of tls_load.c for why not mbedTLS or s_time. It
# ACKs the server's last handshake flight at once (-q): Postfix's greeting after a wrapper-
# mode handshake otherwise waits behind Nagle for the client's delayed ACK (40 ms), and the
# rate would be the timer's. One line without -q shows that latency.
#
# The peers come from bench/peers.sh (settings v2: smtps 127.0.0.1:1465, submission
# 127.0.0.1:1587, Dovecot pop3s 127.0.0.1:1995; Postfix's SASL through Dovecot's auth).
# This script makes a fresh P-256 pair in a temporary folder, installs it for the peers
# (peers.sh tls-cert) and gives kotak the same two files through [tls] cert / key, then
# restarts the peers; they are stopped at the end. kotak runs as `kotak init` writes it
# but for the ports (free ones), the TLS files and [limits] connections.
#
# AUTH: kotak logs user1@example.test in ([auth] cache = 10m as shipped: after the first
# login a check is an HMAC, no yescrypt). Postfix's SASL asks Dovecot, which has no such
# cache for a plaintext password: its main line logs in sasl@example.test, whose hash is a
# salted SHA-256 (as cheap as kotak's cache hit), so that the line measures TLS and SMTP;
# one more line logs user1 in (yescrypt at every login, Dovecot as shipped).
#
# Knobs: DURATION (10 s per handshake run), CLIENTS ("4 8"), MSG_SESSIONS (8), MSG_SECONDS
# (10), RESULTS (bench/results/tls-rate-TIME), KEEP=1 (keep the kotak instance), RENICE (-5).
set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
PEERS_SH=$BENCH/peers.sh
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-"4 8"}
MSG_SESSIONS=${MSG_SESSIONS:-8}
MSG_SECONDS=${MSG_SECONDS:-10}
RESULTS=${RESULTS:-$BENCH/results/tls-rate-$(date +%Y%m%d-%H%M%S)}
KB=$ROOT/build-bench
K=$KB/ctl/kotak
T=$BENCH/build
TL=$T/tls_load
NUSERS=120
PF_SMTPS=127.0.0.1:1465; PF_SUB=127.0.0.1:1587; DOVE_POPS=127.0.0.1:1995
PF_PIDFILE=/var/spool/postfix/pid/master.pid
DOVE_PIDFILE=/run/dovecot-kotak-bench/master.pid
PF_MAILDIR=/var/vmail/example.test/user1

mkdir -p "$RESULTS"
LOG=$RESULTS/run.log
TABLE=$RESULTS/table.tsv
: > "$TABLE"
say() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
note() { echo "$*" | tee -a "$LOG"; }
die() { echo "tls_rate.sh: $*" | tee -a "$LOG" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run me as root: the peers' set-up and /proc of their processes"
RENICE=${RENICE:--5}
[ "$RENICE" = 0 ] || renice -n "$RENICE" -p $$ > /dev/null || note "cannot renice to $RENICE"

kv() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"%.${2:-1}f\", $1}"; }
free_port() {
  local p
  while :; do
    p=$((21000 + RANDOM % 11000))
    ss -ltnH "sport = :$p" | grep -q . || { echo $p; return; }
  done
}
wait_port() { local i; for i in $(seq 100); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }

# ticks PID...: CPU clock ticks (utime + stime + cutime + cstime) of each PID and all its
# descendants alive now; a child that exited and was reaped is in its parent's cutime/cstime
ticks() {
  python3 - "$@" <<'PY'
import os, sys
roots = {int(a) for a in sys.argv[1:] if a}
procs = {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % d) as f:
            s = f.read()
    except OSError:
        continue
    fields = s[s.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17
    procs[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
children = {}
for pid, (ppid, _) in procs.items():
    children.setdefault(ppid, []).append(pid)
total, todo, seen = 0, [p for p in roots if p in procs], set()
while todo:
    p = todo.pop()
    if p in seen:
        continue
    seen.add(p)
    total += procs[p][1]
    todo += children.get(p, [])
print(total)
PY
}
HZ=$(getconf CLK_TCK)
pf_pid() { tr -d ' ' < "$PF_PIDFILE" 2>/dev/null; }
dove_pid() { cat "$DOVE_PIDFILE" 2>/dev/null; }
pf_count() { find "$PF_MAILDIR/new" "$PF_MAILDIR/cur" -type f 2>/dev/null | wc -l; }
pf_clean() { find "$PF_MAILDIR/new" "$PF_MAILDIR/cur" "$PF_MAILDIR/tmp" -type f -delete 2>/dev/null; true; }

# --- build ----------------------------------------------------------------------

say "build kotak (release, $KB) and the tools ($T)"
[ -d "$KB" ] || meson setup "$KB" "$ROOT" --buildtype=release >> "$LOG" 2>&1 || die "meson setup failed (see $LOG)"
ninja -C "$KB" ctl/kotak smtpd/kotak-smtpd pop3d/kotak-pop3d >> "$LOG" 2>&1 || die "kotak build failed (see $LOG)"
[ -d "$T" ] || meson setup "$T" "$BENCH" >> "$LOG" 2>&1 || die "meson setup of bench failed"
ninja -C "$T" >> "$LOG" 2>&1 || die "bench build failed (see $LOG)"
[ -x "$TL" ] || die "no $TL: install libssl-dev and run again"

# --- the certificate, the peers ---------------------------------------------------

TMP=$(mktemp -d /tmp/kotak-tls-rate.XXXXXX)
KD=
SMTPD_PID=; POP3D_PID=; STARTED_PEERS=0
kstop() {
  local p i
  for p in $SMTPD_PID $POP3D_PID; do kill -TERM "$p" 2>/dev/null; done
  for p in $SMTPD_PID $POP3D_PID; do
    for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  SMTPD_PID=; POP3D_PID=
}
cleanup() {
  kstop
  [ "$STARTED_PEERS" = 1 ] && "$PEERS_SH" stop >> "$LOG" 2>&1
  rm -rf "$TMP"
  if [ -n "$KD" ]; then
    if [ "${KEEP:-0}" = 1 ]; then echo "kotak instance kept in $KD"; else rm -rf "$KD"; fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "a P-256 certificate and key for all three ($TMP)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=mail.example.test" -addext "subjectAltName=DNS:mail.example.test" \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >> "$LOG" 2>&1 || die "openssl req failed"
note "  $(openssl x509 -in "$TMP/cert.pem" -noout -fingerprint -sha256)"

if ! "$PEERS_SH" is-set-up || [ "${FORCE_SETUP:-0}" = 1 ]; then
  say "set up Postfix + Dovecot with bench/peers.sh setup $NUSERS"
  "$PEERS_SH" setup "$NUSERS" >> "$LOG" 2>&1 || die "peer set-up failed (see $LOG)"
fi
"$PEERS_SH" tls-cert "$TMP/cert.pem" "$TMP/key.pem" >> "$LOG" 2>&1 || die "peers.sh tls-cert failed"
# (re)started from here: the new pair, and this script's priority
"$PEERS_SH" stop >> "$LOG" 2>&1
"$PEERS_SH" start >> "$LOG" 2>&1 || die "the peers did not start (see $LOG)"
STARTED_PEERS=1

# --- kotak ------------------------------------------------------------------------

KD=$(mktemp -d /var/tmp/kotak-tls-rate.XXXXXX)
KC=$KD/kotak.conf
P_SMTP=$(free_port); P_SUB=$(free_port); P_SUBS=$(free_port); P_POP=$(free_port); P_POPS=$(free_port)
KSUB=127.0.0.1:$P_SUB; KSUBS=127.0.0.1:$P_SUBS; KPOPS=127.0.0.1:$P_POPS
say "kotak instance in $KD: submission $KSUB, submissions $KSUBS, pop3s $KPOPS"
( cd "$KD" && "$K" -c "$KC" init --hostname mail.example.test ) >> "$LOG" 2>&1 || die "kotak init failed"
# the daemons watch the certificate's folder after they dropped root: the way must be open
chmod 755 "$KD"
mkdir -p "$KD/tls" && cp "$TMP/cert.pem" "$TMP/key.pem" "$KD/tls/" && chmod 600 "$KD/tls/key.pem" &&
  chown -R --reference="$KD/kotak-data" "$KD/tls" || die "cannot copy the pair to $KD/tls"
sed -i -e "s/^listen = 127.0.0.1:2525/listen = 127.0.0.1:$P_SMTP/" -e "s/^listen = 127.0.0.1:2587/listen = $KSUB/" \
  -e "s/^listen = 127.0.0.1:2465/listen = $KSUBS/" -e "s/^listen = 127.0.0.1:2110/listen = 127.0.0.1:$P_POP/" \
  -e "s/^listen = 127.0.0.1:2995/listen = $KPOPS/" -e "s/^listen = 127.0.0.1:2080/listen =/" \
  -e "s|^cert = .*|cert = $KD/tls/cert.pem|" -e "s|^key = .*|key = $KD/tls/key.pem|" \
  -e "s/^connections = [0-9]*/connections = 20000/" -e "s/^connections_per_address = [0-9]*/connections_per_address = 20000/" \
  -e "s/^password_min_length = [0-9]*/password_min_length = 1/" "$KC"
grep -q "^cert = $KD/tls/cert.pem" "$KC" && grep -q "^key = $KD/tls/key.pem" "$KC" &&
  grep -q "^listen = $KSUBS" "$KC" || die "could not set the ports and [tls] in $KC"
"$K" -c "$KC" domain add example.test >> "$LOG" 2>&1 || die "domain add failed"
echo pass1 | "$K" -c "$KC" user add user1@example.test --password-stdin >> "$LOG" 2>&1 || die "user add failed"
k_entries() { "$K" -c "$KC" stats | sed -n 's/^maildrop entries: //p'; }
"$KB/smtpd/kotak-smtpd" -c "$KC" 2>> "$RESULTS/kotak-smtpd.log" & SMTPD_PID=$!
"$KB/pop3d/kotak-pop3d" -c "$KC" 2>> "$RESULTS/kotak-pop3d.log" & POP3D_PID=$!
for p in $P_SUB $P_SUBS $P_POPS; do wait_port "$p" || die "kotak did not start (see $RESULTS/kotak-*.log)"; done

{ echo "date: $(date -Is)"; echo "kotak: $(git -C "$ROOT" log -1 --format='%h %s' 2>/dev/null)"
  echo "working tree: $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -vc '^??') modified file(s) beside HEAD"
  echo "nproc: $(nproc)"; grep -m1 'model name' /proc/cpuinfo
  uname -r; postconf -h mail_version 2>/dev/null | sed 's/^/postfix /'; dovecot --version 2>/dev/null | sed 's/^/dovecot /'
  openssl version; dpkg-query -W -f '${Package} ${Version}\n' libmbedtls-dev 2>/dev/null
  echo "loadavg at start: $(cat /proc/loadavg)"; } > "$RESULTS/machine.txt"
cat "$RESULTS/machine.txt" >> "$LOG"

# check that all three serve the same pair, TLS 1.2 only
for a in "$KSUBS" "$PF_SMTPS" "$KPOPS" "$DOVE_POPS"; do
  fp=$(echo | timeout 5 openssl s_client -connect "$a" -tls1_2 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null)
  [ "$fp" = "$(openssl x509 -in "$TMP/cert.pem" -noout -fingerprint -sha256)" ] || die "$a does not serve the new certificate ($fp)"
done
note "  all four TLS ports serve that certificate"

# --- measuring ----------------------------------------------------------------------

# run LABEL "ROOT PIDS" [postfix-delivery] -- TLS_LOAD ARGS: one tls_load run; sets LINE,
# RATE (conns or msgs per s), SCPU (server µs per connection), CCPU (client µs per connection)
run() {
  local label=$1 roots=$2 deliv=$3; shift 4
  local a b t0 t1 n rate
  [ "$deliv" = postfix ] && pf_clean
  local kbase=0; [ "$deliv" = kotak ] && kbase=$(k_entries)
  a=$(ticks $roots); t0=$(now)
  LINE=$("$TL" "$@" 2>> "$RESULTS/tls_load.err") || note "WARNING: $label: tls_load: $(tail -2 "$RESULTS/tls_load.err" | tr '\n' ' ')"
  t1=$(now)
  n=$(echo "$LINE" | kv connections)
  if echo "$LINE" | grep -q 'mode=message'; then
    n=$(echo "$LINE" | kv messages)
    rate=$(echo "$LINE" | kv msgs_per_s)
    if [ "$deliv" = postfix ]; then
      # Postfix's figure: until that many messages are in the Maildir (delivered), as run.sh
      local c
      while c=$(pf_count); [ "$c" -lt "$n" ]; do
        awk "BEGIN {exit !($(now) - $t1 > 120)}" && { note "WARNING: $label: $c of $n delivered"; break; }
        sleep 0.02
      done
      t1=$(now)
      rate=$(calc "$n / ($t1 - $t0)" 1)
    elif [ "$deliv" = kotak ]; then
      local got; got=$(( $(k_entries) - kbase ))
      [ "$got" = "$n" ] || note "WARNING: $label: kotak stored $got of $n"
    fi
  else
    rate=$(echo "$LINE" | kv conns_per_s)
  fi
  b=$(ticks $roots)
  RATE=$rate
  SCPU=-; [ "${n:-0}" -gt 0 ] && SCPU=$(calc "($b - $a) * 1000000 / $HZ / $n" 0)
  [ "${n:-0}" -gt 0 ] || RATE=-
  CCPU=$(echo "$LINE" | kv client_cpu_us_per_conn)
  note "  $label: $LINE server_cpu_s=$(calc "($b - $a) / $HZ" 2) server_cpu_us_per_conn=$SCPU rate=$RATE loadavg1=$(cut -d' ' -f1 /proc/loadavg)"
}

# pair WHAT KOTAK_ADDR PEER_ADDR PEER_ROOTS KDELIV PDELIV KARGS -- PARGS -- COMMON ARGS
row() { # row LINE KOTAK PEER KCPU PCPU KCLI PCLI
  local r=-; [ "$3" != - ] && [ "$2" != - ] && r=$(calc "$2 / $3" 2)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$r" "$4" "$5" "$6" "$7" >> "$TABLE"
  note "ROW: $1 | $2 | $3 | $r | $4 | $5 | $6 / $7"
}

KROOT_S=$SMTPD_PID; KROOT_P=$POP3D_PID
PROOT="$(pf_pid)"; DROOT="$(dove_pid)"
[ -n "$PROOT" ] && [ -n "$DROOT" ] || die "no pid of Postfix's master or Dovecot's"
TLSARGS=(-q)

say "warm-up: one connection each (kotak's first login is a yescrypt check; then cached)"
"$TL" -c 1 -L 0.5 "${TLSARGS[@]}" "$KSUBS" >> "$LOG" 2>&1
"$TL" -c 1 -L 0.5 "${TLSARGS[@]}" "$PF_SMTPS" >> "$LOG" 2>&1
"$TL" -c 1 -L 0.5 "${TLSARGS[@]}" -P pop3 "$KPOPS" >> "$LOG" 2>&1
"$TL" -c 1 -L 0.5 "${TLSARGS[@]}" -P pop3 "$DOVE_POPS" >> "$LOG" 2>&1
"$TL" -c 1 -L 0.2 "${TLSARGS[@]}" -m -a user1@example.test:pass1 "$KSUBS" >> "$LOG" 2>&1

for k in $CLIENTS; do
  say "full handshakes, $k clients, $DURATION s: kotak-smtpd submissions vs Postfix smtps"
  run "kotak smtps x$k" "$KROOT_S" none -- -c "$k" -L "$DURATION" "${TLSARGS[@]}" "$KSUBS"
  kr=$RATE kc=$SCPU kcl=$CCPU
  run "postfix smtps x$k" "$PROOT" none -- -c "$k" -L "$DURATION" "${TLSARGS[@]}" "$PF_SMTPS"
  row "SMTP implicit TLS (465-like): full handshakes/s, $k clients" "$kr" "$RATE" "$kc" "$SCPU" "$kcl" "$CCPU"
done
for k in $CLIENTS; do
  say "full handshakes, $k clients, $DURATION s: kotak-pop3d pop3s vs Dovecot pop3s"
  run "kotak pop3s x$k" "$KROOT_P" none -- -c "$k" -L "$DURATION" "${TLSARGS[@]}" -P pop3 "$KPOPS"
  kr=$RATE kc=$SCPU kcl=$CCPU
  run "dovecot pop3s x$k" "$DROOT" none -- -c "$k" -L "$DURATION" "${TLSARGS[@]}" -P pop3 "$DOVE_POPS"
  row "POP3 implicit TLS (995-like): full handshakes/s, $k clients" "$kr" "$RATE" "$kc" "$SCPU" "$kcl" "$CCPU"
done

# kotak's submission takes MAIL FROM only for the logged-in user's own address: the same
# sender for both
M=(-m -l 1024 -f user1@example.test -t user1@example.test -c "$MSG_SESSIONS" -L "$MSG_SECONDS" "${TLSARGS[@]}")
say "messages, new connection each, 1 KiB, AUTH PLAIN, $MSG_SESSIONS sessions, $MSG_SECONDS s: implicit TLS"
run "kotak msgs smtps" "$KROOT_S" kotak -- "${M[@]}" -a user1@example.test:pass1 "$KSUBS"
kr=$RATE kc=$SCPU kcl=$CCPU
# Postfix's CPU includes Dovecot's, which checks its SASL logins
run "postfix msgs smtps" "$PROOT $DROOT" postfix -- "${M[@]}" -a sasl@example.test:saslpass "$PF_SMTPS"
row "SMTP implicit TLS: msg/s, new connection per message, AUTH, $MSG_SESSIONS sessions (Postfix: until delivered; SASL user with a SHA-256 hash)" \
  "$kr" "$RATE" "$kc" "$SCPU" "$kcl" "$CCPU"
krs=$kr kcs=$kc kcls=$kcl

say "messages as above over STARTTLS (587-like)"
run "kotak msgs starttls" "$KROOT_S" kotak -- "${M[@]}" -S -a user1@example.test:pass1 "$KSUB"
kr=$RATE kc=$SCPU kcl=$CCPU
run "postfix msgs starttls" "$PROOT $DROOT" postfix -- "${M[@]}" -S -a sasl@example.test:saslpass "$PF_SUB"
row "SMTP STARTTLS: msg/s, new connection per message, AUTH, $MSG_SESSIONS sessions (as above)" \
  "$kr" "$RATE" "$kc" "$SCPU" "$kcl" "$CCPU"

say "Postfix smtps with the yescrypt user (Dovecot checks yescrypt at every login), 5 s"
run "postfix msgs smtps yescrypt" "$PROOT $DROOT" postfix -- -m -l 1024 -f user1@example.test -t user1@example.test -c "$MSG_SESSIONS" -L 5 \
  "${TLSARGS[@]}" -a user1@example.test:pass1 "$PF_SMTPS"
row "  the same, Postfix's SASL user1 (yescrypt at every login, Dovecot as shipped); kotak from the line above (cache hit)" \
  "$krs" "$RATE" "$kcs" "$SCPU" "$kcls" "$CCPU"

say "one client without TCP_QUICKACK, 5 s: the latency a real client sees"
run "kotak smtps x1 no-quickack" "$KROOT_S" none -- -c 1 -L 5 "$KSUBS"
kr=$RATE kc=$SCPU kcl=$CCPU
run "postfix smtps x1 no-quickack" "$PROOT" none -- -c 1 -L 5 "$PF_SMTPS"
row "SMTP implicit TLS: handshakes/s, 1 client, delayed ACKs (Postfix's greeting waits behind Nagle for them)" \
  "$kr" "$RATE" "$kc" "$SCPU" "$kcl" "$CCPU"

echo "loadavg at end: $(cat /proc/loadavg)" >> "$RESULTS/machine.txt"
{
  echo "| line | kotak | peer | kotak/peer | kotak CPU µs/conn | peer CPU µs/conn | client CPU µs/conn (kotak / peer run) |"
  echo "|---|---|---|---|---|---|---|"
  while IFS=$'\t' read -r a b c d e f g h; do echo "| $a | $b | $c | $d | $e | $f | $g / $h |"; done < "$TABLE"
} > "$RESULTS/table.md"
say "done: $RESULTS"
cat "$RESULTS/machine.txt"
echo
cat "$RESULTS/table.md"
