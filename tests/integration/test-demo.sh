#!/usr/bin/env bash
# `make demo` is one of the two commands the README promises to work: run
# the demo script itself and hold it to its own checks, so that CI notices
# when it breaks.  The demo makes and removes its own temporary directory
# and kills its QEMU by PID.
source "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"

TMPDIR=$T "$SM_TOP/scripts/demo" >"$T/demo.out" 2>&1
rc=$?
sed 's/^/# /' "$T/demo.out" | tail -n 20
check "scripts/demo exits 0" [ $rc -eq 0 ]
check "the demo ran every step" grep -q '^== step 8' "$T/demo.out"
check "no demo check failed" bash -c "! grep -q 'FAILED' '$T/demo.out'"
check "the demo says all checks passed" grep -q '^demo: all checks passed' "$T/demo.out"
check "every disk ended in domain B" grep -q 'ok: every layer of every disk is now in B' "$T/demo.out"
check "the demo left nothing behind" [ -z "$(ls -A "$T" | grep -v '^demo.out$')" ]

done_testing
