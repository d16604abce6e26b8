#!/bin/sh
# bench/import.sh — how fast `kotak import maildir` moves a Maildir in,
# against Dovecot's own `doveadm import` of the same Maildir into a fresh
# Dovecot mailbox (Maildir), in one run, with the ratio.
#
#   bench/import.sh [BUILD] [N] [SIZE]     defaults: build, 100000, 1024
#   CALLGRIND=1 bench/import.sh ...         also kotak's instruction count
#                                           (valgrind --tool=callgrind, on N/10)
#
# Dovecot runs without its daemons: doveadm with a config of its own, as the
# user nobody (Dovecot refuses to touch mail as root). Both end durable:
# kotak's batches commit with fsync; doveadm is followed by sync(1), so
# that its page cache writes count too. A benchmark, never a timed test.
set -eu
BUILD=$(cd "${1:-build}" && pwd)
N=${2:-100000}
SIZE=${3:-1024}
KOTAK=$BUILD/ctl/kotak
WORK=$(mktemp -d /tmp/kotak-bench-import-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"

echo "making a Maildir of $N messages of $SIZE octets..." >&2
python3 - "$WORK/src" "$N" "$SIZE" <<'EOF'
import os, sys
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(root, d))
for i in range(n):
    head = (f"From: sender{i % 97}@example.org\nTo: alice@example.test\n"
            f"Subject: message {i}\nMessage-ID: <{i}@example.org>\n\n")
    body = ("x" * 75 + "\n") * ((size - len(head)) // 76)
    body += "y" * (size - len(head) - len(body) - 1) + "\n"
    name = f"{1700000000 + i}.M{i}P1.bench:2,S"
    with open(os.path.join(root, "cur", name), "w") as f:
        f.write(head + body)
EOF
chown -R nobody:nogroup "$WORK/src"

# kotak
cd "$WORK"
"$KOTAK" init >/dev/null
"$KOTAK" domain add example.test >/dev/null
echo 'bench-Secret-1x' | "$KOTAK" user add alice@example.test --password-stdin >/dev/null
sync
t0=$(date +%s.%N)
"$KOTAK" import maildir alice@example.test "$WORK/src" 2>/dev/null
t1=$(date +%s.%N)
kotak_s=$(echo "$t1 - $t0" | bc)

# Dovecot: doveadm import from the Maildir into a fresh Maildir mailbox.
mkdir -p "$WORK/dove/Maildir" && chown -R nobody:nogroup "$WORK/dove"
cat > "$WORK/dovecot.conf" <<EOF
mail_location = maildir:$WORK/dove/Maildir
mail_home = $WORK/dove
mail_uid = nobody
mail_gid = nogroup
ssl = no
log_path = $WORK/dovecot.log
EOF
sync
t0=$(date +%s.%N)
USER=nobody HOME="$WORK/dove" doveadm -c "$WORK/dovecot.conf" import \
    "maildir:$WORK/src" "" all
sync
t1=$(date +%s.%N)
dove_s=$(echo "$t1 - $t0" | bc)
got=$(USER=nobody HOME="$WORK/dove" doveadm -c "$WORK/dovecot.conf" mailbox status -t messages INBOX \
      2>/dev/null || true)

awk -v n="$N" -v k="$kotak_s" -v d="$dove_s" -v got="$got" 'BEGIN {
    printf "kotak import maildir: %d messages in %.2f s, %.0f msg/s\n", n, k, n / k
    printf "doveadm import:       %d messages in %.2f s, %.0f msg/s (Dovecot counts %s)\n",
        n, d, n / d, got
    printf "ratio: kotak is %.1fx Dovecot\n", d / k
}'

if [ "${CALLGRIND:-0}" = 1 ] && command -v valgrind >/dev/null; then
    "$KOTAK" user add bob@example.test --password-stdin >/dev/null <<EOF
bench-Secret-2x
EOF
    mkdir "$WORK/small" && cp -r "$WORK/src/new" "$WORK/src/tmp" "$WORK/small/" && mkdir "$WORK/small/cur"
    ls "$WORK/src/cur" | head -n $((N / 10)) | while read -r f; do cp "$WORK/src/cur/$f" "$WORK/small/cur/"; done
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
        "$KOTAK" import maildir bob@example.test "$WORK/small" >/dev/null 2>"$WORK/cg.log"
    ir=$(grep -o 'Collected : [0-9]*' "$WORK/cg.log" | grep -o '[0-9]*$')
    echo "callgrind: kotak import of $((N / 10)) messages: $ir instructions, $((ir / (N / 10))) per message"
fi
