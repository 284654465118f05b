#!/usr/bin/env bash
# `make demo` is one of the two commands the README promises to work: run
# the demo script itself and hold it to its own checks, so that CI notices
# when it breaks.  The demo makes and removes its own temporary directory
# and kills its QEMUs by PID.  Act 2 (steps 9-12) migrates the VM to a
# second "host" with `snapmig migrate`: network namespaces that the demo
# makes and deletes when it runs as root, loopback otherwise.
source "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"

TMPDIR=$T "$SM_TOP/scripts/demo" >"$T/demo.out" 2>&1
rc=$?
sed 's/^/# /' "$T/demo.out" | tail -n 40
# a failed check of the demo's, with the lines before it, wherever it is
grep -B3 'FAILED' "$T/demo.out" | sed 's/^/# /' 
check "scripts/demo exits 0" [ $rc -eq 0 ]
check "the demo ran every step" grep -q '^== step 8' "$T/demo.out"
check "no demo check failed" bash -c "! grep -q 'FAILED' '$T/demo.out'"
check "the demo says all checks passed" grep -q '^demo: all checks passed' "$T/demo.out"
check "every disk ended in domain B" grep -q 'ok: every layer of every disk is now in B' "$T/demo.out"
check "the demo left nothing behind" [ -z "$(ls -A "$T" | grep -v '^demo.out$')" ]

# Act 2: the migration to another host.
out=$T/demo.out
check "act 2 ran to its last step" grep -q '^== step 12' "$out"
check "act 2 says what its two hosts are" \
  grep -qE '^   (host 1 = network namespace |no network namespaces \()' "$out"
check "the migration's progress was shown (phase prepare)" grep -q '^   phase: prepare$' "$out"
check "the migration's progress was shown (phase ram)" grep -q '^   phase: ram$' "$out"
check "the migration's progress was shown (the disks' mirrors)" \
  grep -qE '^     drive[0-9]: new top mirrored, [0-9.]+ of [0-9.]+ MiB$' "$out"
check "the guest wrote during the migration" \
  grep -qE '^   the guest wrote [1-9][0-9]* patterns of 1 MiB while the migration ran$' "$out"
check "snapmig migrate reported the VM on host 2" \
  grep -q '^   ok: snapmig migrate: the VM runs on host 2' "$out"
check "the migrate result line says ok and chain" \
  grep -qE '^   result: \{"event":"result",("time":"[^"]*",)?"ok":true,.*"storage":"chain"' "$out"
check "host 1's QEMU quit" grep -q "^   ok: host 1's QEMU (PID [0-9]*) has quit" "$out"
check "host 2's QEMU ran the VM" grep -q "^   ok: host 2's QEMU runs the VM" "$out"
check "every pattern read back on host 2" \
  grep -qE '^   ok: [0-9]+ regions read back on host 2' "$out"
check "every layer on host 2 was in its domain" \
  grep -q '^   ok: every layer of every disk on host 2 is in C' "$out"
check "snapmig validate of host 2's domain was clean" grep -q '^   ok: validate C on host 2: no problems' "$out"
check "every backing name on host 2 was relative" grep -q '^   ok: every backing name in C is relative' "$out"
check "no listener was left" grep -q '^   ok: no NBD server or migration listener is left' "$out"
check "host 1's files were as before" grep -q "^   ok: host 1's files in B are as before act 2" "$out"
# Nothing of act 2 outlives the demo: its namespaces are deleted and host
# 2's QEMU (the PID the migration reported) is gone.
ns=$(sed -n 's/^   host 1 = network namespace \([^ ]*\) .* host 2 = \([^ ]*\) .*/\1 \2/p' "$out")
for n in $ns; do
  check "namespace $n was deleted" bash -c "! ip netns list | grep -q '^$n\b'"
done
dpid=$(sed -n 's/^   ok: snapmig migrate: the VM runs on host 2 .*QEMU PID \([0-9]*\),.*/\1/p' "$out")
check "host 2's QEMU reported" [ -n "$dpid" ]
check "host 2's QEMU (PID ${dpid:-?}) is gone" \
  bash -c "! grep -qF '$T/' /proc/${dpid:-0}/cmdline 2>/dev/null"

done_testing
