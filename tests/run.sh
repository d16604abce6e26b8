#!/usr/bin/env bash
# The whole test suite, from a clean clone: installs what is missing, builds
# kotak twice — plain, and with AddressSanitizer + UndefinedBehaviorSanitizer
# — runs every test on both builds, and ends with one line
# "N passed, N failed" summed over both. Exit status 0 only if all passed.
set -u
cd "$(dirname "$0")/.."

scripts/deps.sh --test || { echo "0 passed, 1 failed"; exit 1; }

# Sanitizer findings end the test that caused them, so they cannot pass unseen.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=exitcode=87

passed=0 failed=0
for variant in plain sanitize; do
    dir=build-test-$variant
    opts=(-Dwerror=true -Dbuildtype=debugoptimized)
    [ "$variant" = sanitize ] && opts+=(-Db_sanitize=address,undefined -Db_lundef=false)
    echo "== $variant build ==" >&2
    if [ -d "$dir" ]; then
        setup=(meson setup --reconfigure "$dir" "${opts[@]}")
    else
        setup=(meson setup "$dir" "${opts[@]}")
    fi
    if ! "${setup[@]}" >"$dir.setup.log" 2>&1 || ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
        cat "$dir.setup.log" "$dir.build.log" 2>/dev/null | tail -40 >&2
        echo "$variant build failed" >&2
        failed=$((failed + 1))
        continue
    fi
    KOTAK_TEST_VARIANT=$variant meson test -C "$dir" --print-errorlogs --num-processes 2 >&2
    read -r p f < <(python3 tests/summary.py "$dir/meson-logs/testlog.json")
    echo "$variant: $p passed, $f failed" >&2
    passed=$((passed + p))
    failed=$((failed + f))
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
