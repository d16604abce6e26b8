#!/bin/sh
# run-fuzz.sh — runs libFuzzer targets of tests/fuzz/ for a given time.
#
#   tests/fuzz/run-fuzz.sh TARGET SECONDS     one target (smtp_parser, sasl, ...)
#   tests/fuzz/run-fuzz.sh all SECONDS        each target in turn, SECONDS each
#
# Builds with clang in build-fuzz/ (or $KOTAK_FUZZ_BUILD) when needed:
# -Dfuzz=true for the fuzz-* binaries, and the whole tree with ASan+UBSan so
# that the libraries the targets link are checked too. Each run starts from
# a scratch copy of corpus/TARGET (new inputs go there, so the committed
# corpus does not bloat) with TARGET.dict, and writes any crash, leak or
# timeout input to build-fuzz/fuzz-artifacts/TARGET/. After the bug is fixed,
# copy that file into corpus/TARGET/ (named crash-<what>) so that the replay
# test keeps it fixed. Extra libFuzzer flags may be given in $FUZZ_FLAGS
# (e.g. FUZZ_FLAGS=-jobs=4). FUZZ_SKIP_KNOWN=1 leaves the saved crash-*
# inputs out of the scratch corpus, to fuzz on while a known bug is open.
#
# Exit status: 0 when no target found anything, 1 otherwise, 2 on misuse.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${KOTAK_FUZZ_BUILD:-$root/build-fuzz}
targets="smtp_parser smtp_data smtp_path addr pop3_parser sasl conf smtp_session pop3_session service smtp_client headers spf dmarc dkim http_request mbox pop3_client"

usage() {
    echo "usage: $0 TARGET|all SECONDS" >&2
    echo "targets: $targets" >&2
    exit 2
}

[ $# -eq 2 ] || usage
what=$1
secs=$2
case $secs in '' | *[!0-9]*) usage ;; esac
if [ "$what" = all ]; then
    run=$targets
else
    case " $targets " in *" $what "*) run=$what ;; *) usage ;; esac
fi

if [ ! -f "$build/build.ninja" ]; then
    CC=${CC_FUZZ:-clang} meson setup "$build" "$root" -Dfuzz=true \
        -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized
fi
exes=""
for t in $run; do exes="$exes tests/fuzz/fuzz-$t"; done
# shellcheck disable=SC2086
ninja -C "$build" $exes

# The libraries are built with UBSan in its default, recovering mode: make
# every report fatal, so that libFuzzer keeps the input.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}

status=0
summary=""
for t in $run; do
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/kotak-fuzz-$t.XXXXXX")
    cp -R "$here/corpus/$t/." "$scratch/"
    if [ -n "${FUZZ_SKIP_KNOWN:-}" ]; then
        rm -f "$scratch"/crash-* # saved bugs not fixed yet: fuzz around them
    fi
    art="$build/fuzz-artifacts/$t"
    mkdir -p "$art"
    log="$build/fuzz-artifacts/$t.log"
    before=$(ls "$art" | wc -l)
    echo "== fuzz-$t for ${secs}s (log: $log)"
    set +e
    # shellcheck disable=SC2086
    "$build/tests/fuzz/fuzz-$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -dict="$here/$t.dict" -artifact_prefix="$art/" -print_final_stats=1 \
        ${FUZZ_FLAGS:-} "$scratch" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    if [ -z "$execs" ]; then
        # -fork mode prints no final stats: take its last progress line.
        execs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$log" | tail -n 1)
        speed=$(sed -n 's/^#[0-9]*: cov:.* exec\/s \([0-9]*\).*/\1/p' "$log" | tail -n 1)
    fi
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    corpus=$(ls "$scratch" | wc -l)
    after=$(ls "$art" | wc -l)
    line="$t: ${execs:-?} executions (${speed:-?}/s), $cov, corpus $corpus inputs"
    if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
        status=1
        found=$(ls -t "$art" | head -n 1)
        line="$line, FOUND (exit $rc): $art/$found"
        grep -m 3 -E 'ERROR|fuzz property violated|SUMMARY' "$log" || true
    fi
    echo "$line"
    summary="$summary$line
"
    rm -rf "$scratch"
done
echo
echo "== summary"
printf '%s' "$summary"
exit $status
