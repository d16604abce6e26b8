#!/bin/bash
# bench/peers.sh — the peers kotak's benchmarks are compared with, from Debian's
# packages on this machine: Postfix receiving SMTP on 127.0.0.1:2525 and delivering
# into Maildirs under /var/vmail, and Dovecot serving those Maildirs over POP3 on
# 127.0.0.1:1110. Users are user1..userN@example.test with password passN
# (yescrypt-hashed for Dovecot, as kotak's bench instance hashes them).
# With TLS (settings v2), all with one certificate and key, /etc/kotak-bench-tls/{cert,key}.pem,
# TLS 1.2 at most on Postfix: Postfix smtps (wrapper mode, implicit TLS, like 465) on
# 127.0.0.1:1465 and submission with STARTTLS (like 587) on 127.0.0.1:1587, both with SASL
# through Dovecot's auth (PLAIN, LOGIN); Dovecot pop3s (implicit TLS, like 995) on
# 127.0.0.1:1995. One more Dovecot user, sasl@example.test / saslpass, has a salted
# SHA-256 hash ({SSHA256}), for SASL runs that should measure TLS and SMTP, not yescrypt.
#
#   bench/peers.sh setup [NUSERS]            install + configure (NUSERS users, default 120)
#   bench/peers.sh is-set-up                 exit 0 when this script's set-up is in place
#   bench/peers.sh start | stop | status     run the two servers (no systemd needed)
#   bench/peers.sh populate USERS COUNT SIZE fill Maildirs directly, e.g. user21-user40 2000 4096
#   bench/peers.sh tls-cert CERT KEY         install a PEM certificate and key for both (setup
#                                            makes a self-signed P-256 pair); restart to use it
#   bench/peers.sh unsetup                   stop, restore Postfix's files, drop Dovecot's
#
# Needs root. It changes /etc/postfix/main.cf and master.cf (the originals are kept as
# *.pre-kotak-bench), adds /etc/dovecot/kotak-bench.conf, a config of its own, and
# /etc/kotak-bench-tls/: Debian's /etc/dovecot/dovecot.conf is not touched. Run it on a machine you may change.
# Progress goes to stderr; a failure ends with one line "peers.sh: reason" and exit 1.
set -u -o pipefail

# Settings version, written into the marker: raise it whenever the settings below change,
# so that is-set-up answers no for an older set-up and setup rewrites it.
VERSION=2
MARK="# ---- kotak bench settings v$VERSION (written by bench/peers.sh; originals in *.pre-kotak-bench) ----"
MARK_ANY='^# ---- kotak bench settings v'
MASTER_MARK="# ---- kotak bench v$VERSION: SMTP on 127.0.0.1:2525, smtps 1465, submission 1587, not chrooted (no init script populates the chroot here) ----"
MASTER_MARK_ANY='^# ---- kotak bench v'
# how another benchmark set-up's block in main.cf begins (see undo_other_setup)
OTHER_MARK='^# -+ .*benchmark settings'

PF_DIR=/etc/postfix
MAIN=$PF_DIR/main.cf
MASTER=$PF_DIR/master.cf
KEEP=pre-kotak-bench                       # suffix of the kept originals
VMAP=$PF_DIR/kotak-bench-vmailbox
PF_LOG=/var/log/postfix-kotak-bench.log
DOVE_CONF=/etc/dovecot/kotak-bench.conf
DOVE_USERS=/etc/dovecot/kotak-bench-users
DOVE_RUN=/run/dovecot-kotak-bench
DOVE_LOG=/var/log/dovecot-kotak-bench.log
VMAIL=/var/vmail
DOMAIN=example.test
VUID=5000
SMTP_ADDR=127.0.0.1:2525
POP_ADDR=127.0.0.1:1110
SMTPS_ADDR=127.0.0.1:1465                  # Postfix smtps, implicit TLS (wrapper mode)
SUBM_ADDR=127.0.0.1:1587                   # Postfix submission, STARTTLS
POPS_ADDR=127.0.0.1:1995                   # Dovecot pop3s, implicit TLS
ALL_ADDRS="$SMTP_ADDR $POP_ADDR $SMTPS_ADDR $SUBM_ADDR $POPS_ADDR"
TLS_DIR=/etc/kotak-bench-tls               # cert.pem and key.pem, read by both as root
TLS_CERT=$TLS_DIR/cert.pem
TLS_KEY=$TLS_DIR/key.pem
# Postfix's smtpd asks Dovecot's auth through this socket (smtpd is not chrooted here, so
# private/... is under the queue directory)
SASL_SOCK=private/kotak-bench-auth
SASL_USER=sasl@$DOMAIN
SASL_PASS=saslpass
WAIT_STEPS=50                              # port waits: 50 x 0.2 s = 10 s at most

say() { echo "peers.sh: $*" >&2; }
die() { echo "peers.sh: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "run me as root (apt-get, /etc/postfix, /etc/dovecot, /var/vmail)"; }

# --- helpers -------------------------------------------------------------------

# listening ADDR: true when a TCP socket listens on ADDR (host:port)
listening() { ss -ltnH "src $1" 2>/dev/null | grep -q .; }
# who_listens ADDR: the ss line of the listener, with its process, for messages
who_listens() { ss -ltnpH "src $1" 2>/dev/null | head -1 | tr -s ' '; }

# wait_ports up|down ADDR...: poll until every ADDR listens (up) or none does (down);
# false after WAIT_STEPS tries
wait_ports() {
  local want=$1 i a ok
  shift
  for ((i = 0; i < WAIT_STEPS; i++)); do
    ok=1
    for a in "$@"; do
      if [ "$want" = up ]; then listening "$a" || ok=0; else ! listening "$a" || ok=0; fi
    done
    [ $ok = 1 ] && return 0
    sleep 0.2
  done
  return 1
}

postfix_running() { postfix status >/dev/null 2>&1; }
# Dovecot's master writes its pid into base_dir; a stale file after a crash is ignored
dovecot_pid() {
  local pid
  pid=$(cat "$DOVE_RUN/master.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}
dovecot_running() { dovecot_pid >/dev/null; }

# The Postfix settings of the bench, appended to Debian's main.cf. Only what delivery to
# example.test and the load of the benchmark need; everything else stays at Postfix's
# defaults, so that Postfix is measured as shipped (neither tuned for speed nor slowed).
main_block() {
  cat <<EOF
$MARK
# loopback only, IPv4 only, and a log file of its own (no syslog daemon in this VM)
inet_interfaces = loopback-only
inet_protocols = ipv4
maillog_file = $PF_LOG
# no reverse DNS lookup of 127.0.0.1 for every session
smtpd_peername_lookup = no
# example.test is delivered by virtual(8) into Maildirs $VMAIL/$DOMAIN/userN/, as uid/gid $VUID
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $VMAIL
virtual_mailbox_maps = hash:$VMAP
virtual_uid_maps = static:$VUID
virtual_gid_maps = static:$VUID
virtual_minimum_uid = $VUID
# 50 MiB; Postfix counts its Received: header and envelope records too, so the largest
# message a client can send is some 900 octets less. virtual(8) refuses a mailbox limit
# below message_size_limit, hence no mailbox limit.
virtual_mailbox_limit = 0
message_size_limit = 52428800
# room for 100 concurrent sessions plus 500 idle connections from one client address
default_process_limit = 700
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
# left at Postfix's defaults on purpose, e.g. in_flow_delay = 1s, default_destination_concurrency_limit = 20
EOF
}

# The services of the bench, appended to Debian's master.cf: SMTP on $SMTP_ADDR as in v1
# (no TLS), and the TLS listeners, whose settings are all given here with -o so that the
# plaintext listener stays as it was. TLS 1.2 only (kotak speaks TLS 1.2); everything else
# at Postfix's defaults (e.g. session tickets on, server cipher preference off).
master_block() {
  local tls="-o smtpd_tls_cert_file=$TLS_CERT -o smtpd_tls_key_file=$TLS_KEY
  -o smtpd_tls_protocols=>=TLSv1.2,<=TLSv1.2 -o smtpd_tls_mandatory_protocols=>=TLSv1.2,<=TLSv1.2
  -o smtpd_sasl_auth_enable=yes -o smtpd_sasl_type=dovecot -o smtpd_sasl_path=$SASL_SOCK"
  cat <<EOF
$MASTER_MARK
$SMTP_ADDR inet n - n - - smtpd
$SMTPS_ADDR inet n - n - - smtpd
  -o syslog_name=postfix/smtps -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt
  $tls
$SUBM_ADDR inet n - n - - smtpd
  -o syslog_name=postfix/submission -o smtpd_tls_security_level=encrypt
  $tls
EOF
}

# The Dovecot config of the bench: standalone (dovecot -c), POP3 only.
dovecot_conf() {
  cat <<EOF
# Dovecot 2.3 for kotak's bench, written by bench/peers.sh (settings v$VERSION).
# Standalone: run as "dovecot -c $DOVE_CONF"; /etc/dovecot/dovecot.conf is not read.
# POP3 on $POP_ADDR and pop3s on $POPS_ADDR, and SASL for Postfix, over the Maildirs Postfix's virtual(8) writes under
# $VMAIL/<domain>/<user>/.
base_dir = $DOVE_RUN/
instance_name = dovecot-kotak-bench
protocols = pop3
listen = 127.0.0.1
# TLS for the pop3s listener; plaintext logins stay allowed on $POP_ADDR (loopback)
ssl = yes
ssl_cert = <$TLS_CERT
ssl_key = <$TLS_KEY
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = $DOVE_LOG
info_log_path = $DOVE_LOG

mail_location = maildir:$VMAIL/%d/%n
mail_uid = $VUID
mail_gid = $VUID
first_valid_uid = $VUID
last_valid_uid = $VUID
# the benchmark opens many sessions per user from one address
mail_max_userip_connections = 1000

# entries are user@domain:{CRYPT}<crypt(3) hash>; the {CRYPT} prefix of each entry
# names its scheme, the default scheme only applies to entries without a prefix
passdb {
  driver = passwd-file
  args = scheme=CRYPT username_format=%u $DOVE_USERS
}
userdb {
  driver = static
  args = uid=$VUID gid=$VUID home=$VMAIL/%d/%n
}

# pop3-login stays in Dovecot's default high-security mode (service_count = 1: one
# login process per connection); only the limits are raised, for 500 idle connections
default_process_limit = 1000
default_client_limit = 4000
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${POP_ADDR##*:}
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = ${POPS_ADDR##*:}
    ssl = yes
  }
}
service auth {
  client_limit = 4000
  # Postfix's SASL (smtpd_sasl_type = dovecot) on its smtps and submission listeners
  unix_listener /var/spool/postfix/$SASL_SOCK {
    mode = 0660
    user = postfix
    group = postfix
  }
}
service anvil {
  client_limit = 4000
}
protocol pop3 {
  # UIDL = UID and UIDVALIDITY in hex: Dovecot 2.3's default, written out
  pop3_uidl_format = %08Xu%08Xv
}
EOF
}

# drop_keys FILE KEY...: remove "KEY = ..." lines (and their continuation lines, which
# start with white space) from a Postfix main.cf, so that the appended block is the only
# place these keys are set (Postfix warns about a key set twice)
drop_keys() {
  local file=$1 tmp
  shift
  tmp=$(mktemp "$file.XXXXXX") || return 1
  awk -v keys="$*" '
    BEGIN { n = split(keys, k, " "); for (i = 1; i <= n; i++) drop[k[i]] = 1 }
    /^[ \t]/ && skipping { next }
    { skipping = 0 }
    /^[A-Za-z0-9_]+[ \t]*=/ { key = $0; sub(/[ \t]*=.*/, "", key); if (key in drop) { skipping = 1; next } }
    { print }' "$file" > "$tmp" && cat "$tmp" > "$file"
  local rc=$?
  rm -f "$tmp"
  return $rc
}

# A benchmark set-up by another script appends a block whose comment line reads
# "# ---- <name> benchmark settings ..." and keeps Postfix's originals as *.pre-<name>.
# Undo it before ours is applied, so that two blocks never stack: restore its kept
# originals if there are any, else cut its block off (it is the end of each file).
undo_other_setup() {
  local pat=$OTHER_MARK mpat='^# -+ .*benchmark' f suffix
  grep -Eq "$pat" "$MAIN" || return 0
  for f in "$MAIN".pre-*; do
    [ -f "$f" ] || continue
    suffix=${f#"$MAIN".}
    [ "$suffix" = "$KEEP" ] && continue
    [ -f "$MASTER.$suffix" ] || continue
    grep -Eq "$pat" "$f" && continue          # not an original
    say "Postfix holds another benchmark set-up: restoring its kept originals $MAIN.$suffix and $MASTER.$suffix"
    { cp "$f" "$MAIN" && cp "$MASTER.$suffix" "$MASTER"; } || die "cannot restore $f"
    return 0
  done
  say "Postfix holds another benchmark set-up without kept originals: cutting its blocks off"
  sed -i -E "/$pat/,\$d" "$MAIN" || die "cannot edit $MAIN"
  if grep -Eq "$mpat" "$MASTER"; then
    sed -i -E "/$mpat/,\$d" "$MASTER" || die "cannot edit $MASTER"
  fi
  # it commented the port-25 line out; the original has it active, unless the rest is a
  # set-up of this script, which comments it out too
  if ! grep -q "$MASTER_MARK_ANY" "$MASTER"; then
    sed -i -E 's/^#(smtp[[:space:]]+inet[[:space:]].*[[:space:]]smtpd)$/\1/' "$MASTER" || die "cannot edit $MASTER"
  fi
}

# --- setup ---------------------------------------------------------------------

setup_packages() {
  local p missing=()
  for p in postfix dovecot-core dovecot-pop3d; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} = 0 ]; then
    say "packages: postfix dovecot-core dovecot-pop3d already installed"
    return 0
  fi
  say "packages: apt-get install ${missing[*]}"
  # answers for postfix's debconf questions, asked only on its first installation
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections || die "debconf-set-selections failed"
  echo "postfix postfix/mailname string kotak-bench.test" | debconf-set-selections || die "debconf-set-selections failed"
  apt-get update -q >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix dovecot-core dovecot-pop3d >&2 ||
    die "apt-get install postfix dovecot-core dovecot-pop3d failed"
}

setup_vmail() {
  local g u
  # the owner of all Maildirs: uid and gid 5000, named vmail
  g=$(getent group vmail | cut -d: -f3)
  if [ -z "$g" ]; then
    getent group "$VUID" >/dev/null && die "gid $VUID is taken by group $(getent group "$VUID" | cut -d: -f1)"
    groupadd -g "$VUID" vmail || die "groupadd vmail failed"
  elif [ "$g" != "$VUID" ]; then
    die "group vmail exists with gid $g, the bench needs gid $VUID"
  fi
  u=$(getent passwd vmail | cut -d: -f3)
  if [ -z "$u" ]; then
    getent passwd "$VUID" >/dev/null && die "uid $VUID is taken by user $(getent passwd "$VUID" | cut -d: -f1)"
    useradd -u "$VUID" -g "$VUID" -d "$VMAIL" -s /usr/sbin/nologin -M vmail || die "useradd vmail failed"
  elif [ "$u" != "$VUID" ]; then
    die "user vmail exists with uid $u, the bench needs uid $VUID"
  fi
  { mkdir -p "$VMAIL" && chown "$VUID:$VUID" "$VMAIL"; } || die "cannot create $VMAIL"
}

setup_postfix() {
  local nusers=$1 keys tmp out
  { [ -f "$MAIN" ] && [ -f "$MASTER" ]; } || die "no $MAIN or $MASTER (is postfix installed?)"
  # first, as another set-up may have been applied before or on top of this one
  undo_other_setup
  if grep -qxF "$MARK" "$MAIN" && grep -qxF "$MASTER_MARK" "$MASTER"; then
    say "postfix: settings v$VERSION already in $MAIN and $MASTER"
  else
    if grep -q "$MARK_ANY" "$MAIN" || grep -q "$MASTER_MARK_ANY" "$MASTER"; then
      # a set-up of this script with other settings (or half done): start again from the originals
      { [ -f "$MAIN.$KEEP" ] && [ -f "$MASTER.$KEEP" ]; } ||
        die "$MAIN holds a kotak bench set-up but $MAIN.$KEEP or $MASTER.$KEEP is missing"
      say "postfix: replacing a kotak bench set-up of another settings version"
      { cp "$MAIN.$KEEP" "$MAIN" && cp "$MASTER.$KEEP" "$MASTER"; } || die "cannot restore the originals"
    fi
    # main.cf and master.cf are now Postfix's own: keep them for unsetup
    { cp -p "$MAIN" "$MAIN.$KEEP" && cp -p "$MASTER" "$MASTER.$KEEP"; } || die "cannot keep the originals"
    say "postfix: originals kept as $MAIN.$KEEP and $MASTER.$KEEP"

    # every key the block sets is removed from the rest of main.cf first
    keys=$(main_block | sed -n -E 's/^([a-z0-9_]+) = .*/\1/p' | tr '\n' ' ')
    # shellcheck disable=SC2086  # one word per key
    drop_keys "$MAIN" $keys || die "cannot edit $MAIN"
    main_block >> "$MAIN" || die "cannot write $MAIN"

    # no listener on port 25; the bench's listener on 127.0.0.1:2525 is not chrooted,
    # as nothing populates the chroot for smtpd here
    sed -i -E 's/^(smtp[[:space:]]+inet[[:space:]].*[[:space:]]smtpd)$/#\1/' "$MASTER" || die "cannot edit $MASTER"
    master_block >> "$MASTER" || die "cannot write $MASTER"
    say "postfix: settings v$VERSION written (SMTP on $SMTP_ADDR, Maildirs under $VMAIL/$DOMAIN)"
  fi

  # the user map is written every time: NUSERS may differ from the last set-up
  tmp=$(mktemp "$VMAP.XXXXXX") || die "cannot write $VMAP"
  { awk -v n="$nusers" -v d="$DOMAIN" 'BEGIN { for (i = 1; i <= n; i++) printf "user%d@%s %s/user%d/\n", i, d, d, i }' > "$tmp" &&
    chmod 644 "$tmp" && mv "$tmp" "$VMAP"; } || { rm -f "$tmp"; die "cannot write $VMAP"; }
  postmap "hash:$VMAP" || die "postmap $VMAP failed"
  say "postfix: $nusers users in $VMAP"

  out=$(postfix check 2>&1) || die "postfix check failed: $(echo "$out" | tr '\n' ' ')"
  [ -z "$out" ] || say "postfix check: $(echo "$out" | tr '\n' ' ')"
}

setup_dovecot() {
  local nusers=$1 tmp
  [ -d /etc/dovecot ] || die "no /etc/dovecot (is dovecot-core installed?)"
  getent group dovecot >/dev/null || die "no group dovecot (is dovecot-core installed?)"
  tmp=$(mktemp "$DOVE_CONF.XXXXXX") || die "cannot write $DOVE_CONF"
  { dovecot_conf > "$tmp" && chmod 644 "$tmp" && mv "$tmp" "$DOVE_CONF"; } || { rm -f "$tmp"; die "cannot write $DOVE_CONF"; }

  # One yescrypt hash per user, made by libcrypt as kotak's own set-up makes them, so that
  # both servers check the same scheme at login. ctypes on libcrypt.so.1: Python's crypt
  # module is deprecated. crypt_gensalt("$y$", 0 = default cost, NULL = its own random bytes).
  tmp=$(mktemp "$DOVE_USERS.XXXXXX") || die "cannot write $DOVE_USERS"
  say "dovecot: hashing $nusers passwords (yescrypt)"
  if ! python3 - "$nusers" "$DOMAIN" "$SASL_USER" "$SASL_PASS" > "$tmp" <<'EOF'
import ctypes, sys
n, domain, sasl_user, sasl_pass = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
lib = ctypes.CDLL("libcrypt.so.1")
lib.crypt_gensalt.restype = ctypes.c_char_p
lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
lib.crypt.restype = ctypes.c_char_p
lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
out = []
for i in range(1, n + 1):
    salt = lib.crypt_gensalt(b"$y$", 0, None, 0)
    if not salt:
        sys.exit("crypt_gensalt($y$) failed")
    h = lib.crypt(b"pass%d" % i, salt)
    # libxcrypt returns a string starting with "*" on failure, not NULL
    if not h or not h.startswith(b"$y$"):
        sys.exit("crypt(3) did not return a yescrypt hash")
    out.append("user%d@%s:{CRYPT}%s\n" % (i, domain, h.decode()))
# one user with a cheap salted SHA-256 ({SSHA256}: base64 of sha256(password + salt) + salt)
import base64, hashlib, os
salt = os.urandom(8)
digest = hashlib.sha256(sasl_pass.encode() + salt).digest()
out.append("%s:{SSHA256}%s\n" % (sasl_user, base64.b64encode(digest + salt).decode()))
sys.stdout.write("".join(out))
EOF
  then
    rm -f "$tmp"
    die "cannot hash the passwords with libcrypt"
  fi
  # readable by Dovecot's auth process, not by everyone
  { chown root:dovecot "$tmp" && chmod 640 "$tmp" && mv "$tmp" "$DOVE_USERS"; } || { rm -f "$tmp"; die "cannot write $DOVE_USERS"; }
  mkdir -p "$DOVE_RUN" || die "cannot create $DOVE_RUN"
  doveconf -c "$DOVE_CONF" -n >/dev/null 2>&1 || die "doveconf rejects $DOVE_CONF: $(doveconf -c "$DOVE_CONF" -n 2>&1 >/dev/null | head -1)"
  say "dovecot: $DOVE_CONF and $DOVE_USERS ($nusers users)"
}

# A self-signed EC P-256 pair for both, made once; tls-cert replaces it with a caller's
setup_tls() {
  if [ -s "$TLS_CERT" ] && [ -s "$TLS_KEY" ]; then
    say "tls: $TLS_CERT and $TLS_KEY already there"
    return 0
  fi
  command -v openssl >/dev/null || die "openssl is needed"
  { mkdir -p "$TLS_DIR" && chmod 755 "$TLS_DIR"; } || die "cannot create $TLS_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=mail.$DOMAIN" -addext "subjectAltName=DNS:mail.$DOMAIN" \
    -keyout "$TLS_KEY" -out "$TLS_CERT" >/dev/null 2>&1 || die "openssl could not make a P-256 pair"
  chmod 600 "$TLS_KEY"; chmod 644 "$TLS_CERT"
  say "tls: a self-signed P-256 pair in $TLS_DIR"
}

# tls-cert CERT KEY: both servers use this pair from their next start
cmd_tls_cert() {
  [ $# = 2 ] || die "usage: bench/peers.sh tls-cert CERT KEY"
  need_root
  if ! [ -s "$1" ] || ! [ -s "$2" ]; then die "no certificate $1 or key $2"; fi
  { mkdir -p "$TLS_DIR" && chmod 755 "$TLS_DIR" &&
    install -m 644 "$1" "$TLS_CERT" && install -m 600 "$2" "$TLS_KEY"; } || die "cannot write $TLS_DIR"
  say "tls: $1 and $2 installed in $TLS_DIR (restart the peers to use them)"
}

cmd_setup() {
  local nusers=${1:-120} was_up=0
  [[ $nusers =~ ^[1-9][0-9]*$ ]] || die "NUSERS must be a positive number, not '$nusers'"
  need_root
  command -v python3 >/dev/null || die "python3 is needed"
  setup_packages
  # settings must not change under running servers: stop them, start them again at the end
  if postfix_running || dovecot_running; then
    was_up=1
    say "stopping the running peers for the set-up"
    cmd_stop
  fi
  setup_vmail
  setup_tls
  setup_postfix "$nusers"
  setup_dovecot "$nusers"
  if [ $was_up = 1 ]; then
    cmd_start
    say "set up (v$VERSION) and started again"
  else
    say "set up (v$VERSION): start with bench/peers.sh start"
  fi
}

# --- is-set-up -----------------------------------------------------------------

cmd_is_set_up() {
  grep -qxF "$MARK" "$MAIN" 2>/dev/null &&
    ! grep -Eq "$OTHER_MARK" "$MAIN" &&
    grep -qxF "$MASTER_MARK" "$MASTER" 2>/dev/null &&
    [ -f "$VMAP.db" ] &&
    [ -f "$DOVE_CONF" ] &&
    grep -qF "{CRYPT}\$y\$" "$DOVE_USERS" 2>/dev/null &&
    grep -qF "$SASL_USER:{SSHA256}" "$DOVE_USERS" 2>/dev/null &&
    [ -s "$TLS_CERT" ] && [ -s "$TLS_KEY" ]
}

# --- start / stop / status -----------------------------------------------------

cmd_start() {
  local out
  need_root
  cmd_is_set_up || die "not set up (v$VERSION): run bench/peers.sh setup first"
  # a port held by some other program is found before either server starts
  local a
  if ! postfix_running; then
    for a in "$SMTP_ADDR" "$SMTPS_ADDR" "$SUBM_ADDR"; do
      listening "$a" && die "$a is taken by another program: $(who_listens "$a")"
    done
  fi
  if ! dovecot_running; then
    for a in "$POP_ADDR" "$POPS_ADDR"; do
      listening "$a" && die "$a is taken by another program: $(who_listens "$a")"
    done
  fi
  # copies /etc files into Postfix's chroot, as Debian's service unit does at start
  /usr/lib/postfix/configure-instance.sh - >/dev/null 2>&1 || true
  if postfix_running; then
    say "postfix: already running"
  else
    out=$(postfix start 2>&1) || die "postfix start failed: $(echo "$out" | tr '\n' ' ')"
    say "postfix: started"
  fi
  if dovecot_running; then
    say "dovecot: already running"
  else
    mkdir -p "$DOVE_RUN" || die "cannot create $DOVE_RUN"
    # Dovecot's master and log processes keep the stderr they were started with open for
    # good: capturing it ($(...), a pipe) would wait forever, so it goes to Dovecot's log
    dovecot -c "$DOVE_CONF" </dev/null >/dev/null 2>>"$DOVE_LOG" ||
      die "dovecot failed to start: $(tail -n 1 "$DOVE_LOG" 2>/dev/null)"
    say "dovecot: started"
  fi
  # shellcheck disable=SC2086  # one word per address
  wait_ports up $ALL_ADDRS ||
    die "not listening after 10 s: $(for a in $ALL_ADDRS; do printf '%s %s, ' "$a" "$(listening "$a" && echo up || echo down)"; done)(see $PF_LOG, $DOVE_LOG)"
  say "listening on $SMTP_ADDR, $SMTPS_ADDR (smtps), $SUBM_ADDR (submission) (postfix) and $POP_ADDR, $POPS_ADDR (pop3s) (dovecot)"
}

cmd_stop() {
  local pid
  need_root
  if postfix_running; then
    postfix stop >/dev/null 2>&1 || say "postfix stop failed"
    say "postfix: stopped"
  fi
  if pid=$(dovecot_pid); then
    if [ -f "$DOVE_CONF" ]; then
      doveadm -c "$DOVE_CONF" stop >/dev/null 2>&1 || dovecot -c "$DOVE_CONF" stop >/dev/null 2>&1 || kill -TERM "$pid"
    else
      kill -TERM "$pid"                    # config already removed: stop the master by its pid
    fi
    say "dovecot: stopped"
  fi
  # shellcheck disable=SC2086  # one word per address
  wait_ports down $ALL_ADDRS ||
    die "still listening after 10 s: $(for a in $ALL_ADDRS; do who_listens "$a"; done | tr '\n' ' ')"
}

cmd_status() {
  local a up=1
  for a in $ALL_ADDRS; do
    if listening "$a"; then who_listens "$a"; else echo "$a: nothing listens"; up=0; fi
  done
  postfix_running && echo "postfix: running" || echo "postfix: stopped"
  dovecot_running && echo "dovecot ($DOVE_CONF): running, pid $(dovecot_pid)" || echo "dovecot ($DOVE_CONF): stopped"
  [ $up = 1 ]
}

# --- populate ------------------------------------------------------------------

# Writes the messages straight into the Maildirs, as if Postfix had delivered them: much
# faster than SMTP for 40000 messages, and Dovecot cannot tell the difference.
cmd_populate() {
  [ $# = 3 ] || die "usage: bench/peers.sh populate USERS COUNT SIZE (e.g. user21-user40 2000 4096)"
  [[ $2 =~ ^[0-9]+$ ]] || die "COUNT must be a number, not '$2'"
  [[ $3 =~ ^[1-9][0-9]*$ ]] || die "SIZE must be a positive number of octets, not '$3'"
  need_root
  # the Python part prints its own one-line reason on failure
  python3 - "$VMAIL/$DOMAIN" "$DOMAIN" "$VUID" "$1" "$2" "$3" <<'EOF' || exit 1
import os, re, shutil, socket, sys, time
from email.utils import formatdate

base, domain, uid, spec, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])

def users(spec):
    """user21-user40,alice -> user21 .. user40, alice"""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = re.fullmatch(r"(\D*)(\d+)-\1(\d+)", part)
        if m:
            lo, hi = int(m.group(2)), int(m.group(3))
            if lo > hi:
                sys.exit("peers.sh: empty range %s" % part)
            out += ["%s%d" % (m.group(1), i) for i in range(lo, hi + 1)]
        elif re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", part):
            out.append(part)
        else:
            sys.exit("peers.sh: not a user name or range: %r" % part)
    if not out:
        sys.exit("peers.sh: no users in %r" % spec)
    return out

# body lines are 78 octets with their CRLF; the last one is longer when the size asks
PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" * 4
LINE = PATTERN[:76] + b"\r\n"
bodies = {}
def body(n):
    """n octets of CRLF-ended lines (n == 1 cannot be one; the caller avoids it)"""
    b = bodies.get(n)
    if b is None:
        full, rest = divmod(n, len(LINE))
        if n == 0:
            b = b""
        elif full == 0:
            b = PATTERN[:n - 2] + b"\r\n"
        else:
            b = LINE * (full - 1) + PATTERN[:76 + rest] + b"\r\n"
        bodies[n] = b
    return b

def header(user, i, stamp, pad=""):
    return ("Return-Path: <bench@%s>\r\nFrom: bench@%s\r\nTo: %s@%s\r\n"
            "Subject: kotak bench message %d%s\r\nMessage-ID: <%s.%d.%d.%s@%s>\r\n"
            "Date: %s\r\n\r\n" % (domain, domain, user, domain, i, pad, stamp, os.getpid(), i, user, domain,
                                  DATE)).encode()

def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

DATE = formatdate(usegmt=True)
# Maildir names may not hold "/" or ":"; the usual escapes
host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
pid = os.getpid()
def fill(user):
    home = os.path.join(base, user)
    # the whole user folder goes: messages and Dovecot's index and uidlist files
    if os.path.lexists(home):
        shutil.rmtree(home)
    for d in (home, home + "/new", home + "/cur", home + "/tmp"):
        os.mkdir(d, 0o700)
        os.chown(d, uid, uid)
    stamp = int(time.time())
    for i in range(count):
        hdr = header(user, i, stamp)
        n = size - len(hdr)
        if n == 1:                       # no CRLF line is 1 octet long: lengthen the Subject
            hdr = header(user, i, stamp, ".")
            n = 0
        b = body(max(n, 0))
        name = "%d.P%dQ%d.%s,S=%d" % (stamp, pid, i, host, len(hdr) + len(b))
        fd = os.open(os.path.join(home, "new", name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            write_all(fd, hdr)
            write_all(fd, b)
            os.fchown(fd, uid, uid)
        finally:
            os.close(fd)

t0 = time.time()
names = users(spec)
try:
    os.makedirs(base, mode=0o700, exist_ok=True)
    os.chown(base, uid, uid)
    for user in names:
        fill(user)
except OSError as e:
    sys.exit("peers.sh: populate: %s" % e)
print("peers.sh: populate: %d users x %d messages of %d octets in %.1f s"
      % (len(names), count, size, time.time() - t0), file=sys.stderr)
EOF
}

# --- unsetup -------------------------------------------------------------------

cmd_unsetup() {
  need_root
  cmd_stop
  if [ -f "$MAIN.$KEEP" ] && [ -f "$MASTER.$KEEP" ]; then
    { mv "$MAIN.$KEEP" "$MAIN" && mv "$MASTER.$KEEP" "$MASTER"; } || die "cannot restore the originals"
    say "postfix: originals restored"
  elif grep -q "$MARK_ANY" "$MAIN" 2>/dev/null; then
    die "$MAIN holds the kotak bench settings but $MAIN.$KEEP or $MASTER.$KEEP is missing"
  fi
  rm -f "$VMAP" "$VMAP.db" "$DOVE_CONF" "$DOVE_USERS"
  rm -rf "$DOVE_RUN" "$TLS_DIR"
  say "removed $VMAP, $DOVE_CONF, $DOVE_USERS, $TLS_DIR (packages and $VMAIL left in place)"
}

# --- main ----------------------------------------------------------------------

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  setup) [ $# -le 1 ] || die "usage: bench/peers.sh setup [NUSERS]"; cmd_setup "$@" ;;
  is-set-up) cmd_is_set_up ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  populate) cmd_populate "$@" ;;
  tls-cert) cmd_tls_cert "$@" ;;
  unsetup) cmd_unsetup ;;
  *) die "usage: bench/peers.sh setup [NUSERS] | is-set-up | start | stop | status | populate USERS COUNT SIZE | tls-cert CERT KEY | unsetup" ;;
esac
