#!/bin/bash
# bench/checks.sh — what the MX's checks cost (issue 13): the messages per second kotak-smtpd
# accepts on its MX port with SPF, DKIM and DMARC checked against the same run without them, in
# one run on one machine (see "The MX's checks: checks.sh" in bench/README.md).
#
#   bench/checks.sh                          rates, new connection per message and reused (x5)
#   REPEATS=3 N=5000 bench/checks.sh         a quicker try
#   PROFILE=1 bench/checks.sh                and instructions per message under callgrind
#   STEPS=profile bench/checks.sh            only the callgrind step (some of: rate profile)
#
# kotak has no switch that turns the checks off, so "off" is kotak built from the commit before
# the checks were wired into kotak-smtpd (OFF_REV, the parent of dbfaeb0), "on" from ON_REV
# (HEAD): both exported with git archive (committed trees, not the working tree) into
# /var/tmp/kotak-checks-build/SHA/ and built there in release mode (kept for the next run).
# Both serve one kotak instance, the same configuration and a copy of the same store, on free
# loopback ports; [dns] servers points at tests/dns_server.py on 127.0.0.1, which serves the
# sender domain's SPF (v=spf1 ip4:127.0.0.1 -all), DMARC (v=DMARC1; p=reject) and DKIM key.
# The key is made by `kotak dkim keygen` in a throwaway instance that has the sender domain,
# its record read with `kotak dkim dns`; the message (about SIZE octets, plain text) is signed
# once with dkimpy (relaxed/relaxed) and sent as it is by `smtp_load -F` from bench@SENDER to
# user1@example.test. Before any measurement one message goes through each build: "on" must
# store it with spf=pass, dkim=pass and dmarc=pass in its Authentication-Results:, "off" with no
# such field.
#
# Each round runs off and on back to back (the order alternates between rounds), each on a fresh
# daemon and a fresh copy of the store, for each connection mode; the medians of REPEATS rounds
# and the median of the rounds' on/off ratios are reported. Beside each rate: kotak-smtpd's CPU
# per message (utime + stime of all its threads, /proc/PID/stat) and the DNS server's (its CPU
# per message, its share of one core, and the questions it answered per message), so that a
# DNS server near one core's worth (Python: one core at most) is named as the bottleneck.
# Needs root (the daemons drop to the instance's user; renice).
#
# Knobs: N (10000 messages per run), SESSIONS (20), REPEATS (5), SIZE (3072 octets, the signed
# message), MODES ("new reused"), ON_REV (HEAD), OFF_REV (dbfaeb0^), PROFILE=1 (the profile
# step after the rates), CG_N1 / CG_N2 (200 / 1200 messages: the callgrind runs, whose difference
# per message is reported), DNS_BUSY_MAX (80: the DNS server's share of one core, in %, from
# which it is called the bottleneck), DNS_TTL (300 s: the records' TTL; a kotak that caches TXT
# answers asks each record once per daemon start), RENICE (-5), RESULTS, KEEP=1 (leave the kotak
# instance).
set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
STEPS=${STEPS:-rate}
N=${N:-10000}
SESSIONS=${SESSIONS:-20}
REPEATS=${REPEATS:-5}
SIZE=${SIZE:-3072}
MODES=${MODES:-"new reused"}
ON_REV=${ON_REV:-HEAD}
OFF_REV=${OFF_REV:-dbfaeb0^}
PROFILE=${PROFILE:-0}
CG_N1=${CG_N1:-200}
CG_N2=${CG_N2:-1200}
DNS_BUSY_MAX=${DNS_BUSY_MAX:-80}
DNS_TTL=${DNS_TTL:-300}
RESULTS=${RESULTS:-$BENCH/results/checks-$(date +%Y%m%d-%H%M%S)}
BUILDS=/var/tmp/kotak-checks-build
SENDER=sender.test
FROM=bench@$SENDER
RCPT=user1@example.test

mkdir -p "$RESULTS"
LOG=$RESULTS/run.log
TABLE=$RESULTS/table.tsv
: > "$TABLE"
say() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
note() { echo "$*" | tee -a "$LOG"; }
die() { echo "checks.sh: $*" | tee -a "$LOG" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run me as root: the daemons drop to the instance's user"
RENICE=${RENICE:--5}
[ "$RENICE" = 0 ] || renice -n "$RENICE" -p $$ > /dev/null || note "cannot renice to $RENICE"
for v in N SESSIONS REPEATS SIZE CG_N1 CG_N2 DNS_BUSY_MAX DNS_TTL; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number, not '${!v}'"
done
[ "$CG_N2" -gt "$CG_N1" ] || die "CG_N2 must be larger than CG_N1"
for m in $MODES; do [[ $m =~ ^(new|reused)$ ]] || die "MODES: new or reused, not '$m'"; done

T=$BENCH/build
PY=/usr/bin/python3 # Debian's, for python3-dnslib and python3-dkim

# --- helpers -------------------------------------------------------------------

kv() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else print a[int((NR + 1) / 2)]}'; }
now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"%.${2:-1}f\", $1}"; }
cpu_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6, $9}' /proc/stat; }
busy_steal() { echo "$1 $2" | awk '{d = $4 - $1; if (d <= 0) d = 1; printf "%.0f %.0f", 100 * (d - ($5 - $2)) / d, 100 * ($6 - $3) / d}'; }
free_port() {
  local p
  while :; do
    p=$((21000 + RANDOM % 11000))
    ss -ltnH "sport = :$p" | grep -q . || ss -lunH "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}
wait_port() { for _ in $(seq 200); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }
# cpu_s PID: user + system CPU seconds of the process, all its threads
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / hz}' "/proc/$1/stat" 2>/dev/null; }
# sys_s PID: its system CPU seconds alone (the kernel's part: sockets, thread wake-ups, fsync)
sys_s() { awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.3f", $13 / hz}' "/proc/$1/stat" 2>/dev/null; }
# ctx_switches PID: voluntary + involuntary context switches of all its threads
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }

# --- the two builds ----------------------------------------------------------------

# build_rev REV: kotak at REV exported and built in release mode; prints the build folder
build_rev() {
  local sha d
  sha=$(git -C "$ROOT" rev-parse --verify "$1^{commit}" 2>> "$LOG") || die "no commit $1 in $ROOT"
  d=$BUILDS/$sha
  if ! [ -f "$d/src/meson.build" ]; then
    rm -rf "$d"; mkdir -p "$d/src"
    git -C "$ROOT" archive "$sha" | tar -x -C "$d/src" || die "git archive $sha failed"
  fi
  [ -f "$d/build/build.ninja" ] || meson setup "$d/build" "$d/src" --buildtype=release >> "$LOG" 2>&1 ||
    die "meson setup of $sha failed (see $LOG)"
  ninja -C "$d/build" ctl/kotak smtpd/kotak-smtpd >> "$LOG" 2>&1 || die "the build of $sha failed (see $LOG)"
  echo "$d/build"
}

say "build kotak at $OFF_REV (checks off) and $ON_REV (checks on), release, in $BUILDS; the tools in $T"
if ! command -v meson >/dev/null || ! [ -f /usr/include/uv.h ] || ! [ -f /usr/include/mbedtls/ssl.h ]; then
  "$ROOT/scripts/deps.sh" >> "$LOG" 2>&1 || die "cannot install the build dependencies"
fi
B_OFF=$(build_rev "$OFF_REV") || exit 1
B_ON=$(build_rev "$ON_REV") || exit 1
[ -f "$B_ON/../src/smtpd/checks.c" ] || die "$ON_REV has no smtpd/checks.c: no checks to measure"
[ -f "$B_OFF/../src/smtpd/checks.c" ] && die "$OFF_REV has smtpd/checks.c already: not a build without the checks"
OFF_ID=$(git -C "$ROOT" log -1 --format='%h' "$OFF_REV"); ON_ID=$(git -C "$ROOT" log -1 --format='%h' "$ON_REV")
note "off: $OFF_ID $(git -C "$ROOT" log -1 --format='%s' "$OFF_REV" | cut -c1-100) ($B_OFF)"
note "on:  $ON_ID $(git -C "$ROOT" log -1 --format='%s' "$ON_REV" | cut -c1-100) ($B_ON)"
note "on's common/dns.c: $(git -C "$ROOT" log -1 --format='%h %s' "$ON_REV" -- common/dns.c | cut -c1-120)"
K=$B_ON/ctl/kotak
[ -d "$T" ] || meson setup "$T" "$BENCH" >> "$LOG" 2>&1 || die "meson setup of bench failed"
ninja -C "$T" >> "$LOG" 2>&1 || die "bench build failed (see $LOG)"
"$T/smtp_load" -h | grep -q -- '-F FILE' || die "$T/smtp_load has no -F: rebuild bench/build"
for mod in dnslib dkim; do
  "$PY" -c "import $mod" 2>/dev/null && continue
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "python3-$mod" >> "$LOG" 2>&1 || die "cannot install python3-$mod"
done

# --- the instance, the key, the DNS server and the message ---------------------------

KD=$(mktemp -d /var/tmp/kotak-checks.XXXXXX)
KC=$KD/kotak.conf
P_SMTP=$(free_port); P_SUB=$(free_port); P_SUBS=$(free_port); P_POP=$(free_port); P_POPS=$(free_port)
SMTPD_PID=; DNS_PID=
kstop() { # [SECONDS to wait before SIGKILL, 30]
  [ -n "$SMTPD_PID" ] || return 0
  kill -TERM "$SMTPD_PID" 2>/dev/null
  for _ in $(seq $((${1:-30} * 10))); do kill -0 "$SMTPD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SMTPD_PID" 2>/dev/null
  wait "$SMTPD_PID" 2>/dev/null
  SMTPD_PID=
}
# kstart BUILD [WRAPPER...]: kotak-smtpd of BUILD on a copy of the store as it was after set-up
kstart() {
  local b=$1; shift
  kstop
  rm -f "$KD/kotak-data/kotak.db-wal" "$KD/kotak-data/kotak.db-shm"
  cp "$KD/pristine.db" "$KD/kotak-data/kotak.db" && chown --reference="$KD/kotak-data" "$KD/kotak-data/kotak.db"
  "$@" "$b/smtpd/kotak-smtpd" -c "$KC" 2>> "$RESULTS/kotak-smtpd.log" & SMTPD_PID=$!
  wait_port "$P_SMTP" || { sleep 10; wait_port "$P_SMTP"; } || die "kotak-smtpd ($b) did not start (see $RESULTS/kotak-smtpd.log)"
}
k_entries() { "$K" -c "$KC" stats | sed -n 's/^maildrop entries: //p'; }
cleanup() {
  kstop
  [ -n "$DNS_PID" ] && kill "$DNS_PID" 2>/dev/null
  [ "${KEEP:-0}" = 1 ] && echo "kotak instance kept in $KD" || rm -rf "$KD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "kotak instance in $KD: MX 127.0.0.1:$P_SMTP; the sender's key from a throwaway instance"
mkdir "$KD/keygen"
( cd "$KD/keygen" && "$K" -c kotak.conf init --hostname mail.$SENDER && "$K" -c kotak.conf domain add $SENDER &&
  "$K" -c kotak.conf dkim keygen $SENDER ) >> "$LOG" 2>&1 || die "the throwaway instance's dkim keygen failed (see $LOG)"
DKIM_DNS=$("$K" -c "$KD/keygen/kotak.conf" dkim dns $SENDER 2>> "$LOG") || die "kotak dkim dns $SENDER failed"
KEYS=("$KD"/keygen/kotak-data/dkim/*._domainkey.$SENDER.pem)
KEYFILE=${KEYS[0]}
[ -f "$KEYFILE" ] || die "no key file in $KD/keygen/kotak-data/dkim"
note "DKIM record: $(echo "$DKIM_DNS" | cut -c1-90)..."

# The zone and the signed message, from the record and the key (dkimpy signs; it also checks
# its signature against the record before anything is measured).
"$PY" - "$KEYFILE" "$DKIM_DNS" "$SENDER" "$FROM" "$RCPT" "$SIZE" "$DNS_TTL" "$KD/zone.json" "$KD/message.eml" <<'EOF' >> "$LOG" 2>&1 || die "could not sign the message (see $LOG)"
import json, shlex, sys
import dkim
keyfile, record, domain, sender, rcpt, size, ttl, zone_path, msg_path = sys.argv[1:]
name, rtype, *strings = shlex.split(record)
assert rtype == "TXT" and name.endswith("._domainkey." + domain), record
selector = name[: -len("._domainkey." + domain)]
zone = {
    domain: {"TXT": ["v=spf1 ip4:127.0.0.1 -all"], "ttl": int(ttl)},
    "_dmarc." + domain: {"TXT": ["v=DMARC1; p=reject"], "ttl": int(ttl)},
    # one record, its character-strings as kotak printed them
    name: {"TXT": [strings], "ttl": int(ttl)},
}
with open(zone_path, "w") as f:
    json.dump(zone, f)
head = (
    f"From: Bench Sender <{sender}>\r\nTo: User One <{rcpt}>\r\n"
    "Subject: Figures for the third quarter, and Thursday's meeting\r\n"
    "Date: Mon, 07 Dec 2026 06:00:00 +0000\r\n"
    f"Message-ID: <checks-bench-0001@{domain}>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
)
words = ("the figures for this quarter are in and most of them look better than we feared when "
         "we met last month so here is a short summary before Thursday with the numbers that "
         "matter and a few questions we should settle at the meeting").split()
body, line, i = [], [], 0
room = int(size) - len(head) - 520  # the DKIM-Signature: field takes about 520 octets
while sum(len(l) + 2 for l in body) < room:
    line.append(words[i % len(words)]); i += 1
    if len(" ".join(line)) > 66:
        body.append(" ".join(line)); line = []
        if len(body) % 6 == 0:
            body.append("")
msg = (head + "\r\n".join(body) + "\r\n").encode()
key = open(keyfile, "rb").read()
sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[b"from", b"to", b"subject", b"date", b"message-id",
                                 b"mime-version", b"content-type"])
signed = sig + msg
txt = "".join(strings).encode()
assert dkim.verify(signed, dnsfunc=lambda q, timeout=5: txt), "dkimpy does not verify its own signature"
with open(msg_path, "wb") as f:
    f.write(signed)
print(f"message: {len(signed)} octets, signed d={domain} s={selector} relaxed/relaxed")
EOF
MSG_SIZE=$(stat -c %s "$KD/message.eml")

# tests/dns_server.py, with the questions it answers counted by name and type (written to a
# file on SIGUSR1), so that each run says how many it asked per message.
cat > "$KD/dns_counted.py" <<EOF
import collections, signal, sys, threading
sys.path.insert(0, "$ROOT/tests")
import dns_server
asked = collections.Counter()
lock = threading.Lock()
answer = dns_server.Zone.answer
def counted(self, request):
    with lock:
        asked[(str(request.q.qname).rstrip(".").lower(), dns_server.QTYPE[request.q.qtype])] += 1
    return answer(self, request)
dns_server.Zone.answer = counted
def dump(*_):
    with lock:
        lines = ["%d %s %s" % (n, q, t) for (q, t), n in sorted(asked.items())]
    with open("$KD/dns_asked.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
signal.signal(signal.SIGUSR1, dump)
sys.argv = ["dns_server.py", "$KD/zone.json"]
dns_server.main()
EOF
coproc DNSP { exec "$PY" "$KD/dns_counted.py" 2>> "$RESULTS/dns_server.log"; }
DNS_PID=$DNSP_PID
read -r -t 10 DNS_PORT <&"${DNSP[0]}" && [[ $DNS_PORT =~ ^[0-9]+$ ]] || die "tests/dns_server.py did not start (see $RESULTS/dns_server.log)"
note "DNS: tests/dns_server.py on 127.0.0.1:$DNS_PORT (pid $DNS_PID): $SENDER TXT, _dmarc.$SENDER TXT, the DKIM key; TTL $DNS_TTL s"
# dns_asked: the questions answered so far, in all
dns_asked() {
  rm -f "$KD/dns_asked.txt"; kill -USR1 "$DNS_PID"
  for _ in $(seq 50); do [ -s "$KD/dns_asked.txt" ] && break; sleep 0.05; done
  awk '{n += $1} END {print n + 0}' "$KD/dns_asked.txt" 2>/dev/null
}

( cd "$KD" && "$K" -c "$KC" init --hostname mail.example.test ) >> "$LOG" 2>&1 || die "kotak init failed"
sed -i -e "s/^listen = 127.0.0.1:2525/listen = 127.0.0.1:$P_SMTP/" -e "s/^listen = 127.0.0.1:2587/listen = 127.0.0.1:$P_SUB/" \
  -e "s/^listen = 127.0.0.1:2465/listen = 127.0.0.1:$P_SUBS/" -e "s/^listen = 127.0.0.1:2110/listen = 127.0.0.1:$P_POP/" \
  -e "s/^listen = 127.0.0.1:2995/listen = 127.0.0.1:$P_POPS/" \
  -e "s/^connections = [0-9]*/connections = 20000/" -e "s/^connections_per_address = [0-9]*/connections_per_address = 20000/" \
  -e "s/^password_min_length = [0-9]*/password_min_length = 1/" \
  -e "s/^servers =.*/servers = 127.0.0.1:$DNS_PORT/" "$KC"
grep -q "^servers = 127.0.0.1:$DNS_PORT\$" "$KC" && grep -q "^listen = 127.0.0.1:$P_SMTP\$" "$KC" &&
  grep -q "^connections_per_address = 20000" "$KC" || die "could not set [dns] servers, the listeners or the limits in $KC"
"$K" -c "$KC" domain add example.test >> "$LOG" 2>&1 || die "domain add failed"
echo pass1 | "$K" -c "$KC" user add "$RCPT" --password-stdin >> "$LOG" 2>&1 || die "user add failed"
cp "$KD/kotak-data/kotak.db" "$KD/pristine.db"
note "kotak check, the message against the DNS server: spf $("$K" -c "$KC" check spf 127.0.0.1 "$FROM" 2>&1 | head -1);" \
  "dkim $("$K" -c "$KC" check dkim < "$KD/message.eml" 2>&1 | head -1);" \
  "dmarc $("$K" -c "$KC" check dmarc 127.0.0.1 "$FROM" < "$KD/message.eml" 2>&1 | head -1)"

{ echo "date: $(date -Is)"
  echo "off: $OFF_ID ($OFF_REV)  on: $ON_ID ($ON_REV), both from git archive, release builds"
  echo "working tree of $ROOT (not measured): $(git -C "$ROOT" status --porcelain | grep -vc '^??') modified file(s)"
  echo "nproc: $(nproc)"; grep -m1 'model name' /proc/cpuinfo; free -m | sed -n 2p
  df -hT "$KD" | tail -1; uname -r; "$PY" -c 'import dnslib, dkim; print("dnslib", dnslib.version, "dkimpy", getattr(dkim, "__version__", "?"))' 2>/dev/null
  echo "loadavg at start: $(cat /proc/loadavg); run at nice $(ps -o ni= -p $$ | tr -d ' ')"
  echo "N=$N SESSIONS=$SESSIONS REPEATS=$REPEATS message=$MSG_SIZE octets MODES=$MODES"; } > "$RESULTS/machine.txt"
cat "$RESULTS/machine.txt" >> "$LOG"

# --- the message through each build, once ---------------------------------------------

# stored_head: the header section of the newest message in the store (its first 64 KiB)
stored_head() {
  sqlite3 -readonly "$KD/kotak-data/kotak.db" "SELECT CAST(head AS TEXT) FROM messages ORDER BY id DESC LIMIT 1" 2>> "$LOG" |
    tr -d '\r' | sed '/^$/q'
}
verify_build() { # verify_build off|on BUILD
  local line ar
  kstart "$2"
  line=$("$T/smtp_load" -m 1 -F "$KD/message.eml" -f "$FROM" -t "$RCPT" "127.0.0.1:$P_SMTP" 2>> "$LOG")
  [ "$(echo "$line" | kv accepted)" = 1 ] || die "$1: the signed message was not accepted: $line"
  kstop
  ar=$(stored_head | sed -n '/^Authentication-Results:/,/^[^ \t]/p' | sed '$d' | tr -s ' \t\n' ' ')
  note "  $1: stored with: ${ar:-no Authentication-Results: field}"
  if [ "$1" = on ]; then
    for v in spf=pass dkim=pass dmarc=pass; do
      [[ $ar == *"$v"* ]] || die "on: the stored message has no $v: the checks would be measured failing"
    done
  else
    [ -z "$ar" ] || die "off: the stored message has an Authentication-Results: field: $OFF_REV checks already"
  fi
}
say "the signed message ($MSG_SIZE octets) through each build once"
verify_build off "$B_OFF"
verify_build on "$B_ON"

# --- rates ---------------------------------------------------------------------------

# run_one LABEL BUILD MODE: a fresh daemon of BUILD takes N messages; sets RATE, CPU_US,
# DNS_US, DNS_BUSY, DNS_Q, P50
run_one() {
  local label=$1 b=$2 mode=$3 extra='' base line c0 k0 d0 q0 t0 t1
  [ "$mode" = reused ] && extra=-d
  kstart "$b"
  base=$(k_entries)
  q0=$(dns_asked); k0=$(cpu_s "$SMTPD_PID"); d0=$(cpu_s "$DNS_PID"); c0=$(cpu_ticks); t0=$(now)
  local s0 x0; s0=$(sys_s "$SMTPD_PID"); x0=$(ctx_switches "$SMTPD_PID")
  # shellcheck disable=SC2086
  line=$("$T/smtp_load" -s "$SESSIONS" -m "$N" $extra -F "$KD/message.eml" -f "$FROM" -t "$RCPT" "127.0.0.1:$P_SMTP" 2>> "$LOG")
  t1=$(now)
  local kc dc bs n q
  kc=$(calc "$(cpu_s "$SMTPD_PID") - $k0" 3); dc=$(calc "$(cpu_s "$DNS_PID") - $d0" 3)
  local sys_us cs; sys_us=$(calc "($(sys_s "$SMTPD_PID") - $s0) * 1000000 / $N" 0)
  cs=$(calc "($(ctx_switches "$SMTPD_PID") - $x0) / $N" 2)
  bs=$(busy_steal "$c0" "$(cpu_ticks)"); q=$(( $(dns_asked) - q0 ))
  n=$(( $(k_entries) - base ))
  [ "$n" = "$N" ] && [ "$(echo "$line" | kv accepted)" = "$N" ] ||
    note "WARNING: $label: kotak stored $n of $N messages: $line"
  RATE=$(echo "$line" | kv msgs_per_s); P50=$(echo "$line" | kv latency_p50_ms)
  CPU_US=$(calc "$kc * 1000000 / $N" 0); DNS_US=$(calc "$dc * 1000000 / $N" 0)
  DNS_BUSY=$(calc "100 * $dc / ($t1 - $t0)" 0); DNS_Q=$(calc "$q / $N" 2)
  DNS_MACHINE=$(calc "100 * $dc / ($t1 - $t0) / $(nproc)" 0)
  note "  $label: $line kotak_smtpd_cpu_s=$kc cpu_us_per_msg=$CPU_US sys_us_per_msg=$sys_us ctx_switches_per_msg=$cs dns_cpu_s=$dc dns_cpu_us_per_msg=$DNS_US dns_busy_pct_of_core=$DNS_BUSY dns_pct_of_machine=$DNS_MACHINE dns_questions_per_msg=$DNS_Q machine_busy_pct=${bs% *} steal_pct=${bs#* } loadavg1=$(cut -d' ' -f1 /proc/loadavg)"
  kstop
}

row() { # row TARGET OFF ON RATIO COST GOAL MET
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$TABLE"
  note "ROW: $1 | $2 | $3 | $4 | $5 | $6 | $7"
}

step_rate() {
  local mode r
  say "warm-up: 1000 messages through each build, not counted"
  for b in "$B_OFF" "$B_ON"; do
    kstart "$b"; "$T/smtp_load" -s "$SESSIONS" -m 1000 -F "$KD/message.eml" -f "$FROM" -t "$RCPT" "127.0.0.1:$P_SMTP" >> "$LOG" 2>&1
  done
  kstop
  for mode in $MODES; do
    local -a off=() on=() rr=() offc=() onc=() dus=() dbusy=() dq=() dmach=() offl=() onl=()
    local what="new connection per message"; [ "$mode" = reused ] && what="connections reused (-d)"
    say "MX, $SESSIONS sessions, $what: $N signed messages of $MSG_SIZE octets, off and on (x$REPEATS)"
    for r in $(seq "$REPEATS"); do
      local first=off second=on
      [ $((r % 2)) = 0 ] && { first=on; second=off; }
      for which in $first $second; do
        if [ "$which" = off ]; then
          run_one "off-$mode-$r" "$B_OFF" "$mode"; off+=("$RATE"); offc+=("$CPU_US"); offl+=("$P50")
        else
          run_one "on-$mode-$r" "$B_ON" "$mode"; on+=("$RATE"); onc+=("$CPU_US"); onl+=("$P50")
          dus+=("$DNS_US"); dbusy+=("$DNS_BUSY"); dq+=("$DNS_Q"); dmach+=("$DNS_MACHINE")
        fi
      done
      rr+=("$(calc "${on[-1]} / ${off[-1]}" 3)")
    done
    local om nm rm oc nc db
    om=$(printf '%s\n' "${off[@]}" | median); nm=$(printf '%s\n' "${on[@]}" | median)
    rm=$(printf '%s\n' "${rr[@]}" | median)
    oc=$(printf '%s\n' "${offc[@]}" | median); nc=$(printf '%s\n' "${onc[@]}" | median)
    db=$(printf '%s\n' "${dbusy[@]}" | median)
    note "  off msgs/s: ${off[*]} (median $om); CPU µs per message: ${offc[*]}; p50 ms: ${offl[*]}"
    note "  on  msgs/s: ${on[*]} (median $nm); CPU µs per message: ${onc[*]}; p50 ms: ${onl[*]}"
    note "  on/off round by round: ${rr[*]} (median $rm)"
    note "  DNS server during the on runs: CPU µs per message ${dus[*]}; share of one core % ${dbusy[*]}; share of the machine's $(nproc) cores % ${dmach[*]}; questions per message ${dq[*]}"
    if awk "BEGIN {exit !($db >= $DNS_BUSY_MAX)}"; then
      note "  THE DNS SERVER IS THE BOTTLENECK: it was busy ${db} % of one core (median), at or above $DNS_BUSY_MAX %; the 'on' rate is bounded by tests/dns_server.py, not by kotak"
      DNS_VERDICT="the bottleneck ($db % of a core)"
    else
      note "  the DNS server is not the bottleneck: ${db} % of one core (median), below $DNS_BUSY_MAX %; it took $(printf '%s\n' "${dmach[@]}" | median) % of the machine's CPU time from kotak and the client"
      DNS_VERDICT="not the bottleneck ($db % of a core, $(printf '%s\n' "${dmach[@]}" | median) % of the machine)"
    fi
    row "MX accepted msg/s, $SESSIONS sessions, $what, $MSG_SIZE-octet DKIM-signed message (on/off: median of the rounds', ratio of the medians in brackets)" \
      "$om" "$nm" "$rm ($(calc "$nm / $om" 3))" "$(calc "100 * (1 - $rm)" 1) %" "≤ 30 %" \
      "$(awk "BEGIN {print (1 - $rm <= 0.30) ? \"yes\" : \"no\"}")"
    row "kotak-smtpd CPU per accepted message, $what (µs, all threads)" "$oc" "$nc" "$(calc "$nc / $oc" 2)" \
      "+$(calc "$nc - $oc" 0) µs" - "(not a target)"
    row "the DNS server during the on runs, $what: CPU per message (µs), questions per message; $DNS_VERDICT" \
      - "$(printf '%s\n' "${dus[@]}" | median) µs, $(printf '%s\n' "${dq[@]}" | median) q" - - - "(not a target)"
  done
}

# --- instructions (callgrind) ---------------------------------------------------------

cg_total() { sed -n 's/^totals: *\([0-9]*\).*/\1/p; s/^summary: *\([0-9]*\).*/\1/p' "$1" | head -1; }
# cg_run BUILD OUT M EXTRA: kotak-smtpd of BUILD under callgrind while M messages go in; its
# instructions in all (Ir) in CG_IR
cg_run() {
  local b=$1 out=$2 m=$3 extra=$4 line
  # kotak-smtpd drops root for the data folder's owner before valgrind writes its counts at
  # the exit: the file must be theirs already
  : > "$out" && chown --reference="$KD/kotak-data" "$out" || die "cannot prepare $out"
  kstart "$b" valgrind --tool=callgrind --callgrind-out-file="$out"
  sleep 2
  # shellcheck disable=SC2086
  line=$("$T/smtp_load" -s "$SESSIONS" -m "$m" $extra -F "$KD/message.eml" -f "$FROM" -t "$RCPT" "127.0.0.1:$P_SMTP" 2>> "$LOG")
  echo "  callgrind $out: $line" >> "$LOG"
  [ "$(echo "$line" | kv accepted)" = "$m" ] || note "WARNING: under callgrind only $(echo "$line" | kv accepted) of $m accepted"
  kstop 300
  CG_IR=$(cg_total "$out")
  [[ $CG_IR =~ ^[0-9]+$ ]] || die "no instruction count in $out (see $RESULTS/kotak-smtpd.log)"
}

step_profile() {
  command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >> "$LOG" 2>&1
  local mode which b a z extra
  say "instructions per message (callgrind, kotak-smtpd, all threads, user space): runs of $CG_N1 and $CG_N2, the difference / $((CG_N2 - CG_N1))"
  for mode in $MODES; do
    extra=; [ "$mode" = reused ] && extra=-d
    local -A ir=()
    for which in off on; do
      b=$B_OFF; [ $which = on ] && b=$B_ON
      cg_run "$b" "$RESULTS/callgrind.$which.$mode.$CG_N1" "$CG_N1" "$extra"; a=$CG_IR
      cg_run "$b" "$RESULTS/callgrind.$which.$mode.$CG_N2" "$CG_N2" "$extra"; z=$CG_IR
      ir[$which]=$(( (z - a) / (CG_N2 - CG_N1) ))
      note "  $which, $mode: $a Ir for $CG_N1, $z Ir for $CG_N2: ${ir[$which]} instructions per accepted message"
    done
    row "kotak-smtpd instructions per accepted message, $mode connection$([ "$mode" = reused ] && echo "s (-d)" || echo " per message") (callgrind)" \
      "${ir[off]}" "${ir[on]}" "$(calc "${ir[on]} / ${ir[off]}" 2)" "+$(( ir[on] - ir[off] ))" - "(not a target)"
  done
  callgrind_annotate --inclusive=yes "$RESULTS/callgrind.on.${MODES%% *}.$CG_N2" 2>/dev/null | head -80 > "$RESULTS/callgrind.on.inclusive.txt"
  note "  where they go: callgrind_annotate $RESULTS/callgrind.on.${MODES%% *}.$CG_N2 (inclusive: $RESULTS/callgrind.on.inclusive.txt)"
}

T_START=$(now)
for step in $STEPS; do
  case $step in
    rate) step_rate ;;
    profile) step_profile ;;
    *) die "unknown step $step (rate profile)" ;;
  esac
done
[ "$PROFILE" = 1 ] && [[ " $STEPS " != *" profile "* ]] && step_profile
echo "loadavg at end: $(cat /proc/loadavg); run took $(calc "$(now) - $T_START" 0) s" >> "$RESULTS/machine.txt"
{
  echo "| target | checks off ($OFF_ID) | checks on ($ON_ID) | on/off | cost (1 − on/off) | goal | met |"
  echo "|---|---|---|---|---|---|---|"
  while IFS=$'\t' read -r a b c d e f g; do echo "| $a | $b | $c | $d | $e | $f | $g |"; done < "$TABLE"
} > "$RESULTS/table.md"
say "done: $RESULTS"
cat "$RESULTS/machine.txt"
echo
cat "$RESULTS/table.md"
