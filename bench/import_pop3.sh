#!/bin/bash
# bench/import_pop3.sh — the import rate of `kotak import pop3` from a Dovecot on
# loopback, against Dovecot's own copy of the same Maildir into a fresh Dovecot user
# (`doveadm import`, and dsync's `doveadm backup -R`).
#
#   [ROUNDS=3] bench/import_pop3.sh [BUILD] [COUNT] [SIZE]     default: build 100000 1024
#
# Everything lives in a temporary folder: a Maildir of COUNT messages of SIZE octets
# written directly (as a delivery agent would), a private Dovecot (`dovecot -c`,
# /etc/dovecot is not read) serving it over POP3 on a free loopback port, and a kotak
# made with `kotak init`. Each copy is timed from a sync(1) before its start to a
# sync(1) after its exit, so that both count the writes that make them durable
# (kotak commits its batches with synchronous=FULL; Dovecot, with its default
# mail_fsync=optimized, leaves much of a copy in the page cache until the sync).
# kotak is measured over plaintext on loopback and over TLS, and importing the
# same Maildir directly (`kotak import maildir`).
# Prints one key=value line per run and a summary. Root: mail belongs to nobody.
set -u -o pipefail

BUILD=$(realpath "${1:-build}")
COUNT=${2:-100000}
SIZE=${3:-1024}
KOTAK=$BUILD/ctl/kotak
die() { echo "import_pop3.sh: $*" >&2; exit 1; }
[ -x "$KOTAK" ] || die "no $KOTAK; build kotak first (ninja -C build)"
command -v dovecot >/dev/null || die "dovecot is not installed (dovecot-core, dovecot-pop3d)"

T=$(mktemp -d /tmp/kbench-imp3-XXXXXX) || die "mktemp"
chmod 755 "$T"
DC_PID=
cleanup() {
  [ -n "$DC_PID" ] && kill "$DC_PID" 2>/dev/null
  sleep 0.5
  rm -rf "$T"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); PORTS=$(free_port)
if [ "$(id -u)" = 0 ]; then MUID=65534; MGID=65534; INTERNAL=dovecot; LOGIN=dovenull
else MUID=$(id -u); MGID=$(id -g); INTERNAL=$(id -un); LOGIN=$INTERNAL; fi

echo "import_pop3.sh: writing $COUNT messages of $SIZE octets" >&2
/usr/bin/python3 - "$T/mail/src" "$COUNT" "$SIZE" <<'EOF'
import os, sys, time
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(root, d), exist_ok=True)
now = int(time.time())
for i in range(count):
    head = (f"From: <sender@old.example>\r\nTo: <src@example.test>\r\nSubject: bench {i}\r\n"
            f"Message-ID: <{i}.{now}@old.example>\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    body = (line * (max(0, size - len(head)) // len(line) + 1))[:max(0, size - len(head))]
    with open(os.path.join(root, "cur", f"{now}.M{i}P1.bench:2,S"), "wb") as f:
        f.write(head + body)
EOF
mkdir -p "$T/mail/dst"
chown -R "$MUID:$MGID" "$T/mail"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout "$T/key.pem" \
  -out "$T/cert.pem" 2>/dev/null || die "openssl"
printf 'src:{PLAIN}srcpw\ndst:{PLAIN}dstpw\n' > "$T/users"
cat > "$T/dovecot.conf" <<EOF
base_dir = $T/run/
state_dir = $T/state
instance_name = kbench-imp3-$$
protocols = pop3
listen = 127.0.0.1
log_path = $T/dovecot.log
default_internal_user = $INTERNAL
default_login_user = $LOGIN
first_valid_uid = $MUID
mail_location = maildir:$T/mail/%n
mail_uid = $MUID
mail_gid = $MGID
ssl = yes
ssl_cert = <$T/cert.pem
ssl_key = <$T/key.pem
disable_plaintext_auth = no
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $T/users
}
userdb {
  driver = static
  args = uid=$MUID gid=$MGID home=$T/mail/%n
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = $PORTS
    ssl = yes
  }
}
protocol pop3 {
  pop3_uidl_format = %08Xu%08Xv
}
EOF
dovecot -c "$T/dovecot.conf" || die "dovecot did not start: $(tail -3 "$T/dovecot.log")"
DC_PID=$(cat "$T/run/master.pid")
# Dovecot's index of the Maildir is built once, before any timing (a server in use has one).
doveadm -c "$T/dovecot.conf" mailbox status -u src messages INBOX >/dev/null

secs() { date +%s.%N; }
# The machine's busy CPU seconds so far (user, nice, system, irq, softirq of every core).
busy() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2+$3+$4+$7+$8)/hz }' /proc/stat; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

kotak_run() { # kotak_run LABEL ARGS...: a fresh kotak, one import, timed
  local label=$1; shift
  local k=$T/kotak-$label
  rm -rf "$k" && mkdir -p "$k" && cd "$k" || die "cd $k"
  "$KOTAK" -c "$k/kotak.conf" init >/dev/null || die "kotak init"
  "$KOTAK" -c "$k/kotak.conf" domain add example.test >/dev/null
  echo 'a-Secret-pw-123' | "$KOTAK" -c "$k/kotak.conf" user add bench@example.test \
    --password-stdin >/dev/null || die "kotak user add"
  printf 'srcpw\n' > "$k/pw" && chmod 600 "$k/pw"
  local t0 t1 b0 b1 out
  sync
  t0=$(secs); b0=$(busy)
  # kotak's own CPU (GNU time), and the rest of the machine's meanwhile: for POP3, the
  # source Dovecot's serving (its pop3 process), which bounds what a copy can reach.
  if [ "$label" = maildir ]; then
    out=$(/usr/bin/time -f "%U %S" -o "$k/cpu" "$KOTAK" -c "$k/kotak.conf" import maildir \
          bench@example.test "$T/mail/src" 2>&1) || die "kotak import maildir: $out"
  else
    out=$(/usr/bin/time -f "%U %S" -o "$k/cpu" "$KOTAK" -c "$k/kotak.conf" import pop3 \
          bench@example.test --login src --password-file "$k/pw" "$@" 2>&1) ||
      die "kotak import pop3: $out"
  fi
  sync
  t1=$(secs); b1=$(busy)
  local own; own=$(awk '{ printf "%.2f", $1 + $2 }' "$k/cpu")
  echo "run=kotak-import-$label messages=$COUNT size=$SIZE seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') rate=$(rate "$COUNT" "$t0" "$t1")/s kotak_cpu=${own}s rest_cpu=$(awk -v a="$b0" -v b="$b1" -v o="$own" 'BEGIN { printf "%.2f", b - a - o }')s"
  echo "  $out" >&2
  cd "$T" || true
}

dove_run() { # dove_run LABEL COMMAND...: a fresh Dovecot user dst, one copy, timed
  local label=$1; shift
  rm -rf "$T/mail/dst" && mkdir -p "$T/mail/dst" && chown "$MUID:$MGID" "$T/mail/dst"
  local t0 t1 n
  sync
  t0=$(secs)
  "$@" || die "$label failed: $(tail -3 "$T/dovecot.log")"
  sync
  t1=$(secs)
  n=$(doveadm -c "$T/dovecot.conf" mailbox status -u dst messages INBOX | sed 's/.*=//')
  [ "$n" = "$COUNT" ] || die "$label: dst has $n messages, not $COUNT"
  echo "run=$label messages=$COUNT size=$SIZE seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') rate=$(rate "$COUNT" "$t0" "$t1")/s"
}

# ROUNDS rounds, the copies in another order each round (what runs first meets a page cache
# still busy with the Maildir just written); the summary gives each copy's median.
ROUNDS=${ROUNDS:-3}
one() {
  case $1 in
  maildir) kotak_run maildir ;;
  plain) kotak_run plain --from "127.0.0.1:$PORT" ;;
  tls) kotak_run tls --from "127.0.0.1:$PORTS" --tls --ca "$T/cert.pem" ;;
  doveadm-import) dove_run doveadm-import doveadm -c "$T/dovecot.conf" import -u dst "maildir:$T/mail/src" "" all ;;
  dsync-backup) dove_run dsync-backup doveadm -c "$T/dovecot.conf" backup -R -u dst "maildir:$T/mail/src" ;;
  esac
}
COPIES=(doveadm-import maildir plain tls dsync-backup)
for ((r = 0; r < ROUNDS; r++)); do
  for ((i = 0; i < ${#COPIES[@]}; i++)); do
    one "${COPIES[(i + r) % ${#COPIES[@]}]}"
  done
done | tee "$T/runs" || die "a copy failed"
echo "summary (median of $ROUNDS rounds, seconds; ratio = doveadm import's seconds / the copy's):"
median() { sed -n "s/^run=$1 .* seconds=\([0-9.]*\) .*/\1/p" "$T/runs" | sort -n |
           awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
base=$(median doveadm-import)
for c in "${COPIES[@]}"; do
  label=$c; [ "$c" = maildir ] || [ "$c" = plain ] || [ "$c" = tls ] && label=kotak-import-$c
  m=$(median "$label")
  awk -v k="$label" -v m="$m" -v b="$base" 'BEGIN { printf "  %-22s %6.2f s  %5.2fx\n", k, m, b / m }'
done
