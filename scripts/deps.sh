#!/usr/bin/env bash
# Installs the Debian packages kotak needs, when they are missing.
#   scripts/deps.sh          what building and running needs
#   scripts/deps.sh --test   that, plus what the test suite needs (and, from npm,
#                            playwright-core for the browser test, into tests/browser;
#                            Prometheus's promtool, unpacked from Debian's package
#                            into tests/tools without installing the server)
# Runs apt-get only when something is missing, through sudo when not root.
set -eu

pkgs=(meson ninja-build pkg-config gcc libc6-dev libuv1-dev libmbedtls-dev libsqlite3-dev
      libinih-dev libcrypt-dev libc-ares-dev publicsuffix scdoc)
if [ "${1:-}" = --test ]; then
    pkgs+=(python3 util-linux swaks libnet-ssleay-perl curl openssl fetchmail getmail6
           python3-cryptography iproute2 python3-dnslib python3-aiosmtpd postfix
           python3-dkim rspamd chromium nodejs fail2ban man-db procmail
           build-essential debhelper dpkg-dev lintian)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The browser test drives chromium with playwright-core, the version package-lock.json names.
browser="$(dirname "$0")/../tests/browser"
if [ "${1:-}" = --test ] && [ ! -d "$browser/node_modules/playwright-core" ]; then
    echo "installing: playwright-core (npm)" >&2
    npm ci --prefix "$browser" --no-audit --no-fund --loglevel=error >/dev/null
fi

# promtool checks the metrics' exposition and the example alert rules. Installing
# the prometheus package would start a server; its .deb is unpacked instead.
tools="$(dirname "$0")/../tests/tools"
if [ "${1:-}" = --test ] && [ ! -x "$tools/usr/bin/promtool" ]; then
    echo "installing: promtool (from Debian's prometheus package, unpacked)" >&2
    tmp="$(mktemp -d)"
    chmod 777 "$tmp" # apt's download user writes there
    (cd "$tmp" && { apt-get download -qq prometheus >/dev/null 2>&1 ||
                    { "${sudo[@]}" apt-get update -qq && apt-get download -qq prometheus >/dev/null; }; })
    mkdir -p "$tools"
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tools" ./usr/bin/promtool
    rm -rf "$tmp"
fi
