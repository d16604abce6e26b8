#!/usr/bin/env python3
"""Counts the checks of one `meson test` run from its testlog.json.

Every test prints TAP, so each "ok" and "not ok" line is one check. A test
that failed without a "not ok" line of its own (a crash, a timeout, a
broken plan) counts as one failed check, so nothing fails unseen.
Prints "PASSED FAILED" for tests/run.sh to add up.
"""
import json
import re
import sys

passed = failed = 0
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    for line in f:
        test = json.loads(line)
        out = test.get("stdout") or ""
        p = len(re.findall(r"^ok\b", out, re.M))
        n = len(re.findall(r"^not ok\b", out, re.M))
        if test.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL") and n == 0:
            n = 1
        passed += p
        failed += n
print(passed, failed)
