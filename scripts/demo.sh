#!/usr/bin/env bash
# A demo instance in ./demo, from a clean clone: installs what is missing,
# builds kotak, sets up domain example.test with users alice and bob (their
# passwords printed, and kept in demo/passwords.txt), then runs both daemons
# in the foreground. Run it again to reuse the same instance.
set -eu
cd "$(dirname "$0")/.."
top=$PWD

scripts/deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
kotak=$top/build/ctl/kotak

mkdir -p demo
cd demo
if [ ! -f kotak.conf ]; then
    "$kotak" init --hostname mail.example.test
    "$kotak" domain add example.test
    umask 077
    : >passwords.txt
    for user in alice bob; do
        pw=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
        printf '%s\n' "$pw" | "$kotak" user add "$user@example.test" --password-stdin
        printf '%s@example.test %s\n' "$user" "$pw" >>passwords.txt
    done
fi

echo
echo "demo instance: $top/demo (config kotak.conf, store kotak-data/kotak.db)"
echo "users and passwords:"
sed 's/^/  /' passwords.txt
echo "SMTP 127.0.0.1:2525 (MX), submission 2587 (STARTTLS), submissions 2465 (TLS)"
echo "POP3 127.0.0.1:2110 (STLS), POP3S 2995 (TLS)"
web=$(sed -n '/^\[web\]/,/^\[/s/^listen *= *\([^ ;]*\).*/\1/p' kotak.conf | head -1)
token=$(sed -n '/^\[web\]/,/^\[/s/^token *= *\([^ ;]*\).*/\1/p' kotak.conf | head -1)
if [ -n "$web" ]; then
    echo "watch every session live: http://$web/${token:+?token=$token}  (or: $kotak -c $top/demo/kotak.conf watch)"
fi
echo
PATH=$top/build/smtpd:$top/build/pop3d:$PATH exec "$kotak" run
