#!/bin/bash
# bench/outbound.sh — outbound delivery: kotak-smtpd's queue runner against Postfix's queue
# manager, both carrying the same messages from their own queues to smtp-sink on loopback,
# in one run on one machine (see "Outbound delivery" in bench/README.md).
#
#   bench/outbound.sh                       rate (N=10000, REPEATS=3) and rss (1,000 / 100,000 waiting)
#   STEPS=rate bench/outbound.sh            some of: rate rss profile callgrind
#   N=2000 REPEATS=1 RSS_BIG=10000 bench/outbound.sh    a quick try
#   PROFILE=1 bench/outbound.sh             and one more kotak delivery of N under perf record
#
# Each server's queue is filled with N messages while delivery cannot proceed, then released,
# and the clock runs from the release until smtp-sink has counted all N and the queue is empty:
#   kotak:   filled over submission (AUTH PLAIN, smtp_load -a) while smtp-sink is not running:
#            the runner's first try finds the port closed and defers every recipient (next try in
#            5 min); kotak-smtpd is restarted; smtp-sink starts; released by `kotak queue retry`
#            (every recipient due now; the runner reads the queue every second).
#   Postfix: filled over SMTP on 127.0.0.1:2525 (bench/peers.sh's set-up) with every message put
#            on hold (smtpd_recipient_restrictions = check_client_access static:HOLD), so nothing
#            is tried; Postfix is restarted; smtp-sink starts; released by
#            `postsuper -H ALL; postqueue -f`.
# kotak finds the sink through DNS (tests/dns_server.py: sink.test MX mx.sink.test, A 127.0.0.1;
# [dns] servers and [relay] port point there); Postfix through transport_maps
# (sink.test -> smtp:[127.0.0.1]:PORT, no DNS). Both otherwise at their defaults: kotak at most
# 5 connections per destination ([relay] connections_per_domain), Postfix up to 20
# (default_destination_concurrency_limit), both plaintext (smtp-sink offers no STARTTLS).
#
# The Postfix keys it sets (transport_maps, smtpd_recipient_restrictions) are put back as they
# were at the end, and Postfix's queue is emptied (postsuper -d ALL); the earlier values wait in
# /etc/postfix/kotak-bench-outbound.saved until then, and a run after one that was killed with
# SIGKILL puts them back first. Stop a run with SIGINT or SIGTERM to the script itself (not to a
# wrapper such as timeout's parent shell): its clean-up runs from its trap.
# Needs root (apt-get, Postfix's queue, /proc of Postfix's processes).
#
# Knobs: N (10000 messages per delivery run), SIZE (1024 octets), REPEATS (3; medians kept),
# SESSIONS (20: the filling client's), RSS_SMALL (1000), RSS_BIG (100000), PEERS=0 (kotak only),
# TIMEOUT (900 s per delivery), RENICE (-5), RESULTS, KEEP=1 (leave the kotak instance),
# SMTPD_WRAP (a command prefix for kotak-smtpd, e.g. "env LD_PRELOAD=..." for an experiment; it
# must exec kotak-smtpd in the same process, as env does).
set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
PEERS_SH=$BENCH/peers.sh
STEPS=${STEPS:-"rate rss"}
N=${N:-10000}
SIZE=${SIZE:-1024}
REPEATS=${REPEATS:-3}
SESSIONS=${SESSIONS:-20}
RSS_SMALL=${RSS_SMALL:-1000}
RSS_BIG=${RSS_BIG:-100000}
TIMEOUT=${TIMEOUT:-900}
PROFILE=${PROFILE:-0}
RESULTS=${RESULTS:-$BENCH/results/outbound-$(date +%Y%m%d-%H%M%S)}
SINK_DOMAIN=sink.test
RCPT=rcpt@$SINK_DOMAIN
FROM=bench@example.test
PASS=bench-pass-1

mkdir -p "$RESULTS"
LOG=$RESULTS/run.log
TABLE=$RESULTS/table.tsv
: > "$TABLE"
say() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
note() { echo "$*" | tee -a "$LOG"; }
die() { echo "outbound.sh: $*" | tee -a "$LOG" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run me as root: apt-get, Postfix's queue and /proc of its processes"
RENICE=${RENICE:--5}
[ "$RENICE" = 0 ] || renice -n "$RENICE" -p $$ > /dev/null || note "cannot renice to $RENICE"
for v in N SIZE REPEATS SESSIONS RSS_SMALL RSS_BIG TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number, not '${!v}'"
done

SINK_BIN=/usr/sbin/smtp-sink
KB=$ROOT/build-bench
K=$KB/ctl/kotak
T=$BENCH/build
PY=/usr/bin/python3          # Debian's, for python3-dnslib
SMTPD_WRAP=${SMTPD_WRAP:-}

# --- helpers -------------------------------------------------------------------

kv() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else print a[int((NR + 1) / 2)]}'; }
now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"%.${2:-1}f\", $1}"; }
# cpu_ticks: "total idle steal" of the machine so far (/proc/stat)
cpu_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6, $9}' /proc/stat; }
# busy_steal "BEFORE" "AFTER": "busy% steal%" of the machine's CPU time between the two
busy_steal() { echo "$1 $2" | awk '{d = $4 - $1; if (d <= 0) d = 1; printf "%.0f %.0f", 100 * (d - ($5 - $2)) / d, 100 * ($6 - $3) / d}'; }
free_port() {
  local p
  while :; do
    p=$((21000 + RANDOM % 11000))
    ss -ltnH "sport = :$p" | grep -q . || ss -lunH "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}
wait_port() { for _ in $(seq 200); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status" 2>/dev/null; }
# cpu_s PID...: user + system CPU seconds of the processes, their reaped children included
cpu_s() {
  local p hz; hz=$(getconf CLK_TCK)
  for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null; echo; done |
    awk -v hz="$hz" 'NF > 17 {sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15} END {printf "%.3f", t / hz}'
}
# Postfix's processes: whatever runs a program from its daemon directory
PF_DAEMONS=$(postconf -h daemon_directory 2>/dev/null || echo /usr/lib/postfix/sbin)
pf_pids() {
  local p e
  for p in /proc/[0-9]*; do
    e=$(readlink "$p/exe" 2>/dev/null) || continue
    case $e in "$PF_DAEMONS"/*) echo "${p#/proc/}" ;; esac
  done
}

# --- build ----------------------------------------------------------------------

say "build kotak (release, $KB) and the tools ($T)"
if ! command -v meson >/dev/null || ! [ -f /usr/include/uv.h ] || ! [ -f /usr/include/mbedtls/ssl.h ]; then
  "$ROOT/scripts/deps.sh" >> "$LOG" 2>&1 || die "cannot install the build dependencies"
fi
[ -d "$KB" ] || meson setup "$KB" "$ROOT" -Dbuildtype=release >> "$LOG" 2>&1 || die "meson setup failed (see $LOG)"
ninja -C "$KB" ctl/kotak smtpd/kotak-smtpd >> "$LOG" 2>&1 || die "kotak build failed (see $LOG)"
[ -d "$T" ] || meson setup "$T" "$BENCH" >> "$LOG" 2>&1 || die "meson setup of bench failed"
ninja -C "$T" >> "$LOG" 2>&1 || die "bench build failed (see $LOG)"
"$T/smtp_load" -h | grep -q -- '-a USER' || die "$T/smtp_load has no -a (AUTH): rebuild bench/build"
if ! "$PY" -c 'import dnslib' 2>/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-dnslib >> "$LOG" 2>&1 || die "cannot install python3-dnslib"
fi

# --- Postfix --------------------------------------------------------------------

HAVE_PEERS=1
[ "${PEERS:-1}" = 0 ] && HAVE_PEERS=0
if [ $HAVE_PEERS = 1 ]; then
  if ! "$PEERS_SH" is-set-up; then
    say "set up the peers with bench/peers.sh setup"
    "$PEERS_SH" setup >> "$LOG" 2>&1 || die "peer set-up failed (see $LOG)"
  fi
elif ! [ -x "$SINK_BIN" ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >> "$LOG" 2>&1 || die "cannot install postfix (smtp-sink)"
fi
[ -x "$SINK_BIN" ] || die "no $SINK_BIN (apt-get install postfix)"
PF=127.0.0.1:2525
PF_QDIR=$(postconf -h queue_directory 2>/dev/null || echo /var/spool/postfix)
PF_SAVED=/etc/postfix/kotak-bench-outbound.saved
PF_KEYS="transport_maps smtpd_recipient_restrictions"

# Puts back the keys this script changed, from PF_SAVED: a line "key = value" was set before,
# a bare "key" was not set at all.
pf_restore() {
  [ -f "$PF_SAVED" ] || return 0
  local line
  while IFS= read -r line; do
    case $line in
      *" = "*) postconf -e "$line" ;;
      ?*) postconf -X "$line" ;;
    esac
  done < "$PF_SAVED"
  rm -f "$PF_SAVED"
  postfix status >/dev/null 2>&1 && postfix reload >/dev/null 2>&1
  note "postfix: $PF_KEYS put back as they were"
}
pf_configure() {
  local k cur
  pf_restore # a run that was killed left its settings: back to the originals first
  for k in $PF_KEYS; do
    cur=$(postconf -n "$k")
    if [ -n "$cur" ]; then echo "$cur"; else echo "$k"; fi
  done > "$PF_SAVED" || die "cannot write $PF_SAVED"
  postconf -e "transport_maps = inline:{$SINK_DOMAIN=smtp:[127.0.0.1]:$SINK_PORT}" \
    "smtpd_recipient_restrictions = check_client_access static:HOLD" || die "postconf -e failed"
  note "postfix: transport_maps = $(postconf -h transport_maps); smtpd_recipient_restrictions = $(postconf -h smtpd_recipient_restrictions)"
}
pf_restart() { # from here, so that Postfix runs at this script's priority, as kotak does
  "$PEERS_SH" stop >> "$LOG" 2>&1
  "$PEERS_SH" start >> "$LOG" 2>&1 || die "the peers did not start (see $LOG)"
  STARTED_PEERS=1
}
pf_queued() { find "$PF_QDIR/incoming" "$PF_QDIR/active" "$PF_QDIR/deferred" "$PF_QDIR/hold" "$PF_QDIR/maildrop" -type f 2>/dev/null | wc -l; }
pf_held() { find "$PF_QDIR/hold" -type f 2>/dev/null | wc -l; }

# --- the kotak instance, DNS and the sink -----------------------------------------

KD=$(mktemp -d /var/tmp/kotak-outbound.XXXXXX)
KC=$KD/kotak.conf
P_SMTP=$(free_port); P_SUB=$(free_port); P_SUBS=$(free_port); P_POP=$(free_port); P_POPS=$(free_port)
SINK_PORT=$(free_port)
SMTPD_PID=; SINK_PID=; DNS_PID=; STARTED_PEERS=0

kstop() { # [SECONDS to wait before SIGKILL, 30]
  [ -n "$SMTPD_PID" ] || return 0
  kill -TERM "$SMTPD_PID" 2>/dev/null
  for _ in $(seq $((${1:-30} * 10))); do kill -0 "$SMTPD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SMTPD_PID" 2>/dev/null
  wait "$SMTPD_PID" 2>/dev/null
  SMTPD_PID=
}
kstart() {
  # shellcheck disable=SC2086  # SMTPD_WRAP: words of a command prefix
  $SMTPD_WRAP "$KB/smtpd/kotak-smtpd" -c "$KC" 2>> "$RESULTS/kotak-smtpd.log" & SMTPD_PID=$!
  wait_port "$P_SUB" || die "kotak-smtpd did not start (see $RESULTS/kotak-smtpd.log)"
}
krestore() { # the store as it was after set-up, no mail; kotak-smtpd fresh
  kstop
  rm -f "$KD/kotak-data/kotak.db-wal" "$KD/kotak-data/kotak.db-shm"
  cp "$KD/pristine.db" "$KD/kotak-data/kotak.db" && chown --reference="$KD/kotak-data" "$KD/kotak-data/kotak.db"
  kstart
}
# recipients queued, and those among them tried at least once (`queue list`: one line per
# recipient, "ID<TAB><sender><TAB><rcpt><TAB>ATTEMPTS<TAB>...", then a summary line)
k_queued() { "$K" -c "$KC" queue list 2>> "$LOG" | grep -c $'^[0-9][0-9]*\t'; }
k_tried() { "$K" -c "$KC" queue list 2>> "$LOG" | awk -F'\t' '/^[0-9]+\t/ && $4 >= 1' | wc -l; }
sink_start() {
  SINK_OUT=$RESULTS/smtp-sink.$1.out
  "$SINK_BIN" -c -u nobody "127.0.0.1:$SINK_PORT" 1024 > "$SINK_OUT" 2>&1 & SINK_PID=$!
  wait_port "$SINK_PORT" || die "smtp-sink did not start"
}
sink_stop() {
  [ -n "$SINK_PID" ] || return 0
  kill "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null; SINK_PID=
}
cleanup() {
  kstop
  sink_stop
  [ -n "$DNS_PID" ] && kill "$DNS_PID" 2>/dev/null
  if [ $HAVE_PEERS = 1 ]; then
    postsuper -d ALL >> "$LOG" 2>&1
    pf_restore
    [ "$STARTED_PEERS" = 1 ] && "$PEERS_SH" stop >> "$LOG" 2>&1
  fi
  [ "${KEEP:-0}" = 1 ] && echo "kotak instance kept in $KD" || rm -rf "$KD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "kotak instance in $KD: submission 127.0.0.1:$P_SUB; smtp-sink on 127.0.0.1:$SINK_PORT"
cat > "$KD/zone.json" <<EOF
{"$SINK_DOMAIN": {"MX": [[10, "mx.$SINK_DOMAIN"]]}, "mx.$SINK_DOMAIN": {"A": ["127.0.0.1"]}}
EOF
coproc DNSP { exec "$PY" "$ROOT/tests/dns_server.py" "$KD/zone.json" 2>> "$RESULTS/dns_server.log"; }
DNS_PID=$DNSP_PID
read -r -t 10 DNS_PORT <&"${DNSP[0]}" && [[ $DNS_PORT =~ ^[0-9]+$ ]] || die "tests/dns_server.py did not start (see $RESULTS/dns_server.log)"
note "DNS: tests/dns_server.py on 127.0.0.1:$DNS_PORT ($SINK_DOMAIN MX mx.$SINK_DOMAIN, A 127.0.0.1)"

( cd "$KD" && "$K" -c "$KC" init --hostname mail.example.test ) >> "$LOG" 2>&1 || die "kotak init failed"
sed -i -e "s/^listen = 127.0.0.1:2525/listen = 127.0.0.1:$P_SMTP/" -e "s/^listen = 127.0.0.1:2587/listen = 127.0.0.1:$P_SUB/" \
  -e "s/^listen = 127.0.0.1:2465/listen = 127.0.0.1:$P_SUBS/" -e "s/^listen = 127.0.0.1:2110/listen = 127.0.0.1:$P_POP/" \
  -e "s/^listen = 127.0.0.1:2995/listen = 127.0.0.1:$P_POPS/" \
  -e "s/^connections_per_address = [0-9]*/connections_per_address = 1000/" \
  -e "s/^servers =.*/servers = 127.0.0.1:$DNS_PORT/" -e "s/^port = 25\b/port = $SINK_PORT/" "$KC"
grep -q "^servers = 127.0.0.1:$DNS_PORT\$" "$KC" && grep -q "^port = $SINK_PORT " "$KC" && grep -q "^listen = 127.0.0.1:$P_SUB\$" "$KC" ||
  die "could not set [dns] servers, [relay] port or the listeners in $KC"
"$K" -c "$KC" domain add example.test >> "$LOG" 2>&1 || die "domain add failed"
echo "$PASS" | "$K" -c "$KC" user add "$FROM" --password-stdin >> "$LOG" 2>&1 || die "user add failed"
cp "$KD/kotak-data/kotak.db" "$KD/pristine.db"
kstart

if [ $HAVE_PEERS = 1 ]; then
  pf_configure
  pf_restart
fi

{ echo "date: $(date -Is)"
  if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    echo "kotak: $(git -C "$ROOT" log -1 --format='%h %s')"
    echo "working tree: $(git -C "$ROOT" status --porcelain | grep -vc '^??') modified file(s) beside HEAD"
  else
    echo "kotak: $ROOT is not a git checkout"
  fi
  echo "nproc: $(nproc)"; grep -m1 'model name' /proc/cpuinfo; free -m | sed -n 2p
  df -hT "$KD" | tail -1; uname -r; postconf -h mail_version 2>/dev/null | sed 's/^/postfix /'
  echo "loadavg at start: $(cat /proc/loadavg); run at nice $(ps -o ni= -p $$ | tr -d ' ')"
  echo "N=$N SIZE=$SIZE REPEATS=$REPEATS SESSIONS=$SESSIONS RSS_SMALL=$RSS_SMALL RSS_BIG=$RSS_BIG${SMTPD_WRAP:+ SMTPD_WRAP=$SMTPD_WRAP}"; } > "$RESULTS/machine.txt"
cat "$RESULTS/machine.txt" >> "$LOG"

# --- filling and releasing ----------------------------------------------------------

# fill_load HOSTPORT M [AUTH]: smtp_load puts M messages in, all of which must be accepted
fill_load() {
  local line
  # shellcheck disable=SC2086
  line=$("$T/smtp_load" -s "$SESSIONS" -d -m "$2" -l "$SIZE" -f "$FROM" -t "$RCPT" ${3:+-a "$3"} "$1" 2>> "$LOG")
  note "  fill: $line"
  [ "$(echo "$line" | kv accepted)" = "$2" ] || die "only $(echo "$line" | kv accepted) of $2 messages accepted"
}

# k_fill M: a fresh store holding M queued messages, each tried once (the sink was not there)
# and deferred; then a fresh kotak-smtpd
k_fill() {
  local m=$1 t0 n=0
  sink_stop
  krestore
  fill_load "127.0.0.1:$P_SUB" "$m" "$FROM:$PASS"
  t0=$(now)
  while n=$(k_tried); [ "$n" -lt "$m" ]; do
    awk "BEGIN {exit !($(now) - $t0 > $TIMEOUT)}" && die "kotak tried only $n of $m after ${TIMEOUT} s"
    sleep 1
  done
  kstop; kstart
  sleep 2 # its first look at the queue (nothing is due)
  note "  kotak: $(k_queued) recipients queued, each tried once and deferred; kotak-smtpd restarted, VmRSS $(rss_kib "$SMTPD_PID") KiB"
}

# pf_fill M: Postfix's queue holds exactly M messages, on hold; then a fresh Postfix
pf_fill() {
  local m=$1 t0 n
  sink_stop
  postsuper -d ALL >> "$LOG" 2>&1
  [ "$(pf_queued)" = 0 ] || die "Postfix's queue is not empty: $(pf_queued) files"
  fill_load "$PF" "$m"
  t0=$(now)
  while n=$(pf_held); [ "$n" -lt "$m" ]; do
    awk "BEGIN {exit !($(now) - $t0 > 60)}" && die "only $n of $m messages on hold"
    sleep 0.2
  done
  [ "$(pf_queued)" = "$m" ] || die "Postfix holds $(pf_queued) queue files, not $m"
  pf_restart
  note "  postfix: $(pf_held) messages on hold; Postfix restarted"
}

# watch T0 M "PIDS" LABEL: waits until smtp-sink has counted M messages; samples the memory
# of PIDS meanwhile. Sets W_FIRST, W_ALL (seconds after T0 of the first and the M-th message),
# W_RSS_MAX (KiB, the sum of VmRSS of PIDS, largest sample), W_PF_PSS_MAX (KiB, Postfix's
# processes' Pss summed, when PIDS is "postfix").
watch_sink() {
  local out
  out=$("$PY" - "$SINK_OUT" "$2" "$1" "$TIMEOUT" "$3" "$PF_DAEMONS" <<'EOF'
import os, re, sys, time
path, want, t0, timeout, pids, pfdir = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
num = re.compile(rb"mesg=(\d+)")
def field(pid, fname, key):
    try:
        with open("/proc/%s/%s" % (pid, fname), "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
def postfix_pids():
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink("/proc/%s/exe" % p).startswith(pfdir + "/"):
                    out.append(p)
            except OSError:
                pass
    return out
rss_max = pss_max = 0
first = last = None
count = 0
off = 0
tail = b""
next_mem = 0.0
f = open(path, "rb")
while True:
    f.seek(off)
    data = f.read()
    if data:
        off += len(data)
        m = num.findall(tail + data)
        if m:
            count = int(m[-1])
        tail = data[-40:]
    t = time.time()
    if count > 0 and first is None:
        first = t - t0
    if count >= want:
        last = t - t0
        break
    if t >= next_mem:
        next_mem = t + 0.1
        if pids == "postfix":
            ps = postfix_pids()
            rss_max = max(rss_max, sum(field(p, "status", b"VmRSS:") for p in ps))
            pss_max = max(pss_max, sum(field(p, "smaps_rollup", b"Pss:") for p in ps))
        else:
            rss_max = max(rss_max, sum(field(p, "status", b"VmRSS:") for p in pids.split()))
    if t - t0 > timeout:
        break
    time.sleep(0.01)
print("first=%s all=%s count=%d rss_max=%d pss_max=%d" % (
    "%.3f" % first if first is not None else "nan", "%.3f" % last if last is not None else "nan",
    count, rss_max, pss_max))
EOF
)
  W_FIRST=$(echo "$out" | kv first); W_ALL=$(echo "$out" | kv all); W_COUNT=$(echo "$out" | kv count)
  W_RSS_MAX=$(echo "$out" | kv rss_max); W_PF_PSS_MAX=$(echo "$out" | kv pss_max)
  [ "$W_ALL" != nan ] || note "WARNING: $4: smtp-sink counted $W_COUNT of $2 in $TIMEOUT s"
}

# k_deliver LABEL M: releases kotak's queue; RATE, DONE_S, CPU_US (kotak-smtpd's CPU per message)
k_deliver() {
  local label=$1 m=$2 t0 c0 cpu0 n t_end
  sink_start "$label"
  local rss0; rss0=$(rss_kib "$SMTPD_PID")
  cpu0=$(cpu_s "$SMTPD_PID"); c0=$(cpu_ticks)
  t0=$(now)
  "$K" -c "$KC" queue retry >> "$LOG" 2>&1 || die "kotak queue retry failed"
  watch_sink "$t0" "$m" "$SMTPD_PID" "$label"
  while n=$(k_queued); [ "$n" != 0 ]; do
    awk "BEGIN {exit !($(now) - $t0 > $TIMEOUT)}" && { note "WARNING: $label: $n recipients still queued"; break; }
    sleep 0.05
  done
  t_end=$(now)
  local bs; bs=$(busy_steal "$c0" "$(cpu_ticks)")
  local cpu; cpu=$(calc "$(cpu_s "$SMTPD_PID") - $cpu0" 3)
  DONE_S=$(calc "$t_end - $t0" 3); RATE=$(calc "$m / $DONE_S" 1); CPU_US=$(calc "$cpu * 1000000 / $m" 0)
  RATE_AFTER_FIRST=nan
  [ "$W_FIRST" != nan ] && RATE_AFTER_FIRST=$(calc "$m / ($DONE_S - $W_FIRST)" 1)
  STEAL=${bs#* }; RSS_PEAK=$W_RSS_MAX
  note "  $label: messages=$m sink_counted=$W_COUNT first_s=$W_FIRST all_counted_s=$W_ALL queue_empty_s=$DONE_S msgs_per_s=$RATE msgs_per_s_after_first=$RATE_AFTER_FIRST kotak_smtpd_cpu_s=$cpu cpu_us_per_msg=$CPU_US vmrss_before_kib=$rss0 vmrss_peak_kib=$W_RSS_MAX machine_busy_pct=${bs% *} steal_pct=$STEAL loadavg1=$(cut -d' ' -f1 /proc/loadavg)"
  sink_stop
}

# pf_deliver LABEL M: releases Postfix's queue; RATE, DONE_S, CPU_US (all Postfix processes)
pf_deliver() {
  local label=$1 m=$2 t0 c0 cpu0 n t_end pids
  sink_start "$label"
  pids=$(pf_pids | tr '\n' ' ')
  cpu0=$(cpu_s $pids); c0=$(cpu_ticks)
  t0=$(now)
  postsuper -H ALL >> "$LOG" 2>&1 && postqueue -f >> "$LOG" 2>&1 || die "postsuper -H ALL; postqueue -f failed"
  watch_sink "$t0" "$m" postfix "$label"
  while n=$(pf_queued); [ "$n" != 0 ]; do
    awk "BEGIN {exit !($(now) - $t0 > $TIMEOUT)}" && { note "WARNING: $label: $n queue files left"; break; }
    sleep 0.05
  done
  t_end=$(now)
  local bs; bs=$(busy_steal "$c0" "$(cpu_ticks)")
  # the processes alive now (the master's reaped children counted in its own figure)
  local cpu
  # shellcheck disable=SC2046  # one pid per word
  cpu=$(calc "$(cpu_s $(pf_pids)) - $cpu0" 3)
  DONE_S=$(calc "$t_end - $t0" 3); RATE=$(calc "$m / $DONE_S" 1); CPU_US=$(calc "$cpu * 1000000 / $m" 0)
  RATE_AFTER_FIRST=nan
  [ "$W_FIRST" != nan ] && RATE_AFTER_FIRST=$(calc "$m / ($DONE_S - $W_FIRST)" 1)
  STEAL=${bs#* }
  note "  $label: messages=$m sink_counted=$W_COUNT first_s=$W_FIRST all_counted_s=$W_ALL queue_empty_s=$DONE_S msgs_per_s=$RATE msgs_per_s_after_first=$RATE_AFTER_FIRST postfix_cpu_s=$cpu cpu_us_per_msg=$CPU_US postfix_vmrss_sum_peak_kib=$W_RSS_MAX postfix_pss_sum_peak_kib=$W_PF_PSS_MAX machine_busy_pct=${bs% *} steal_pct=$STEAL loadavg1=$(cut -d' ' -f1 /proc/loadavg)"
  sink_stop
}

row() { # row TARGET KOTAK PEER RATIO GOAL MET
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$TABLE"
  note "ROW: $1 | $2 | $3 | $4 | $5 | $6"
}

# --- the steps ---------------------------------------------------------------------------

step_rate() {
  local r; local -a k=() p=() rr=() kc=() pc=() kf=() pf=()
  say "outbound rate: $N messages of $SIZE octets from each server's queue to smtp-sink (x$REPEATS)"
  for r in $(seq "$REPEATS"); do
    k_fill "$N"
    k_deliver "kotak-$r" "$N"; k+=("$RATE"); kc+=("$CPU_US"); kf+=("$RATE_AFTER_FIRST")
    if [ $HAVE_PEERS = 1 ]; then
      pf_fill "$N"
      pf_deliver "postfix-$r" "$N"; p+=("$RATE"); pc+=("$CPU_US"); pf+=("$RATE_AFTER_FIRST")
      rr+=("$(calc "${k[-1]} / ${p[-1]}" 2)")
    fi
  done
  local km pm=- ratio=- met=n/a
  km=$(printf '%s\n' "${k[@]}" | median)
  note "  kotak msgs/s: ${k[*]} (median $km); CPU µs per message: ${kc[*]}"
  if [ $HAVE_PEERS = 1 ]; then
    pm=$(printf '%s\n' "${p[@]}" | median)
    local rm; rm=$(printf '%s\n' "${rr[@]}" | median)
    note "  postfix msgs/s: ${p[*]} (median $pm); CPU µs per message: ${pc[*]}"
    note "  kotak/postfix round by round: ${rr[*]} (median $rm)"
    ratio="$rm ($(calc "$km / $pm" 2))"
    met=$(awk "BEGIN {print ($rm >= 3) ? \"yes\" : \"no\"}")
  fi
  row "outbound delivery, $N × $SIZE octets from the queue to smtp-sink (msg/s; ratio: median of the rounds', ratio of the medians in brackets)" \
    "$km" "$pm" "$ratio" "≥ 3× Postfix" "$met"
  local kfm pfm=- fr=-
  kfm=$(printf '%s\n' "${kf[@]}" | median)
  if [ $HAVE_PEERS = 1 ]; then pfm=$(printf '%s\n' "${pf[@]}" | median); fr=$(calc "$kfm / $pfm" 2); fi
  row "the same from the first message smtp-sink counted, not from the release (msg/s; kotak reads its queue once a second)" \
    "$kfm" "$pfm" "$fr" - "(not a target)"
  row "CPU per delivered message (µs; kotak: kotak-smtpd; Postfix: all its processes)" \
    "$(printf '%s\n' "${kc[@]}" | median)" "$( [ $HAVE_PEERS = 1 ] && printf '%s\n' "${pc[@]}" | median || echo -)" - - "(not a target)"
}

step_rss() {
  local small big small_peak big_peak small_rate big_rate
  say "kotak-smtpd's memory with $RSS_SMALL and with $RSS_BIG messages waiting"
  k_fill "$RSS_SMALL"; small=$(rss_kib "$SMTPD_PID")
  k_deliver "kotak-rss-$RSS_SMALL" "$RSS_SMALL"; small_peak=$RSS_PEAK; small_rate=$RATE
  k_fill "$RSS_BIG"
  # still waiting: the runner reads the queue every second, nothing is due
  local s; big=0
  for _ in 1 2 3 4 5; do s=$(rss_kib "$SMTPD_PID"); [ "$s" -gt "$big" ] && big=$s; sleep 1; done
  k_deliver "kotak-rss-$RSS_BIG" "$RSS_BIG"; big_peak=$RSS_PEAK; big_rate=$RATE
  local growth; growth=$(calc "($big - $small) / 1024" 2)
  row "kotak-smtpd VmRSS while messages wait (MiB): $RSS_SMALL waiting → $RSS_BIG waiting" \
    "$(calc "$small / 1024" 2) → $(calc "$big / 1024" 2) (+$growth)" - - "flat (≤ 1 MiB more)" \
    "$(awk "BEGIN {print ($big - $small <= 1024) ? \"yes\" : \"no\"}")"
  row "kotak-smtpd VmRSS peak while delivering them (MiB): $RSS_SMALL → $RSS_BIG" \
    "$(calc "$small_peak / 1024" 2) → $(calc "$big_peak / 1024" 2)" - - - "(not a target)"
  row "kotak delivery rate with $RSS_SMALL → $RSS_BIG queued (msg/s)" "$small_rate → $big_rate" - - - "(not a target)"
}

step_profile() {
  command -v perf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q linux-perf >> "$LOG" 2>&1
  local data=$RESULTS/perf.kotak-smtpd.data pdata=$RESULTS/perf.queue-reads.data out=$RESULTS/perf.txt
  local bin=$KB/smtpd/kotak-smtpd probes=0 pp qp=
  say "profile: perf record of kotak-smtpd while it delivers $N (cpu-clock, all threads), and its queue reads (uprobes)"
  k_fill "$N"
  # The runner's reads of the queue, timed by uprobes on poll_queue's entry and return (when
  # the symbol is there to probe); removed again below.
  perf probe -q -d 'kotakbench:*' >/dev/null 2>&1
  perf probe -q -x "$bin" --add 'kotakbench:poll_queue=poll_queue' >> "$LOG" 2>&1 &&
    perf probe -q -x "$bin" --add 'kotakbench:poll_queue_end=poll_queue%return' >> "$LOG" 2>&1 && probes=1
  perf record -F 999 -e cpu-clock -p "$SMTPD_PID" -o "$data" > "$RESULTS/perf.log" 2>&1 & pp=$!
  if [ $probes = 1 ]; then
    perf record -e kotakbench:poll_queue -e kotakbench:poll_queue_end__return -p "$SMTPD_PID" -o "$pdata" >> "$RESULTS/perf.log" 2>&1 & qp=$!
  fi
  sleep 1
  local threads; threads=$(for t in /proc/"$SMTPD_PID"/task/*; do echo "${t##*/} $(cat "$t/comm")"; done)
  k_deliver "kotak-profile" "$N"
  kill -INT "$pp" $qp; wait "$pp" $qp
  perf probe -q -d 'kotakbench:*' >/dev/null 2>&1
  {
    echo "# samples per thread: tid, samples, share, name"
    perf script -i "$data" -F tid 2>/dev/null | sort | uniq -c | sort -rn | awk -v names="$threads" '
      BEGIN {n = split(names, l, "\n"); for (i = 1; i <= n; i++) {split(l[i], f, " "); name[f[1]] = f[2]}}
      {c[NR] = $1; t[NR] = $2; all += $1}
      END {for (i = 1; i <= NR; i++) printf "%s %d %.0f%% %s\n", t[i], c[i], 100 * c[i] / all, name[t[i]]}'
    echo; echo "# each thread's samples by shared object"
    perf script -i "$data" -F tid,ip,dso -G 2>/dev/null | awk '{d = $NF; gsub(/[()]/, "", d); sub(/.*\//, "", d); n[$1 " " d]++; t[$1]++}
      END {for (k in n) {split(k, a, " "); printf "%s %-24s %5.1f%%\n", a[1], a[2], 100 * n[k] / t[a[1]]}}' | sort -k1,1 -k3,3nr
    echo; echo "# flat, by thread and symbol (self time)"
    perf report -i "$data" --no-children --sort pid,dso,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep . | head -60
    if [ $probes = 1 ]; then
      echo; echo "# the runner's reads of the queue (poll_queue), from entry to return"
      perf script -i "$pdata" -F time,event 2>/dev/null | awk '{t = $1; sub(/:$/, "", t)
          if ($2 ~ /poll_queue_end/) {if (s) {d = t - s; sum += d; n++; if (d > mx) mx = d}; s = 0} else s = t}
        END {if (n) printf "reads %d, in them %.3f s, mean %.2f ms, longest %.2f ms\n", n, sum, 1000 * sum / n, 1000 * mx}'
    fi
  } > "$out"
  note "  $out: per thread, per shared object, flat profile$([ $probes = 1 ] && echo ", the queue reads: $(tail -1 "$out")")"
}

# Instructions, user space, all threads, for CG_N messages (2000: under valgrind every read of
# the queue is ~50 times slower, and with N=10000 the run takes many minutes). No rate from this.
step_callgrind() {
  command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >> "$LOG" 2>&1
  local cg=$RESULTS/callgrind.kotak-smtpd.out n=${CG_N:-2000}
  say "callgrind: kotak-smtpd delivering $n (instructions, user space, all threads)"
  k_fill "$n"
  kstop
  # kotak-smtpd drops root for the data folder's owner before valgrind writes its counts at
  # the exit: the file must be theirs already
  : > "$cg" && chown --reference="$KD/kotak-data" "$cg" || die "cannot prepare $cg"
  valgrind --tool=callgrind --callgrind-out-file="$cg" "$KB/smtpd/kotak-smtpd" -c "$KC" \
    2>> "$RESULTS/callgrind.log" & SMTPD_PID=$!
  wait_port "$P_SUB" || { sleep 10; wait_port "$P_SUB"; } || die "kotak-smtpd did not start under valgrind"
  sleep 3
  k_deliver "kotak-callgrind" "$n"
  kstop 300 # valgrind writes its counts at the exit
  callgrind_annotate --inclusive=yes "$cg" 2>/dev/null | head -80 > "$RESULTS/callgrind.inclusive.txt"
  callgrind_annotate "$cg" 2>/dev/null | head -60 > "$RESULTS/callgrind.self.txt"
  local total; total=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$cg" | head -1)
  note "  ${total:-?} instructions in all, $(( ${total:-0} / n )) per delivered message (start-up included); $RESULTS/callgrind.{inclusive,self}.txt"
  kstart
}

T_START=$(now)
for step in $STEPS; do
  case $step in
    rate) step_rate ;;
    rss) step_rss ;;
    profile) step_profile ;;
    callgrind) step_callgrind ;;
    *) die "unknown step $step (rate rss profile callgrind)" ;;
  esac
done
[ "$PROFILE" = 1 ] && [[ " $STEPS " != *" profile "* ]] && step_profile
echo "loadavg at end: $(cat /proc/loadavg); run took $(calc "$(now) - $T_START" 0) s" >> "$RESULTS/machine.txt"
{
  echo "| target | kotak | Postfix | ratio | goal | met |"
  echo "|---|---|---|---|---|---|"
  while IFS=$'\t' read -r a b c d e f; do echo "| $a | $b | $c | $d | $e | $f |"; done < "$TABLE"
} > "$RESULTS/table.md"
say "done: $RESULTS"
cat "$RESULTS/machine.txt"
echo
cat "$RESULTS/table.md"
