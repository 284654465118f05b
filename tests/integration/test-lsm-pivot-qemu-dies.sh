#!/usr/bin/env bash
# QEMU dies after pivot's block-job-complete switched the disk and before
# pivot saw it (issue 8, break 4), against a real QEMU with one disk (no
# pause): pivot holds after the complete (test hook), the disk switches to
# B, the guest writes to B's top only, QEMU is SIGKILLed, pivot goes on.
# pivot must not claim the disk runs on its source; it keeps its journal;
# with the VM restarted on the old chain in A, abort and recover keep B's
# top (the only copy of the last write); with the VM restarted on B, pivot
# finishes.  Checks the guest's data in the VM and offline, the chain, the
# files in A and B, journals and records, and validate's verdict.
. "$(dirname "$0")/lib.sh"

lsm_setup
command -v qemu-io >/dev/null || skip_all "qemu-io missing"
JDIR=$T/state/vms
N0=$A/d0.p1.qcow2 M0=$B/d0.p1.qcow2

# vm_on FILE: (re)starts VM "vm" with drive0 on FILE, as an administrator
# would after QEMU died; a second monitor for the test's own queries.
vm_on () {
  rm -f "$T/vm.qmp" "$T/mon.qmp"
  start_vm vm -drive "$(drive_opt drive0 "$1" qcow2)" \
              -qmp "unix:$T/mon.qmp,server=on,wait=off" || exit 1
}
# wait_top FILE: polls (second monitor) until drive0 runs on FILE (10 s).
wait_top () {
  local deadline=$(( $(date +%s) + 10 ))
  while [ "$("$SMQ" "$T/mon.qmp" query-block | jq -r '.[0].inserted.file')" != "$1" ]; do
    [ "$(date +%s)" -lt $deadline ] || return 1
    sleep 0.02
  done
}

qemu-img create -q -f qcow2 "$A/d0.qcow2" 16M
vm_on "$A/d0.qcow2"
guest_write vm drive0 0x10 0 1M >/dev/null
"$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name p1 --wait \
  >"$T/out" 2>&1
check "create --wait" [ $? -eq 0 ]
guest_write vm drive0 0x20 1M 1M >/dev/null

# One disk: wait (1), check-dest (2), flush (3), complete (4), wait-switch
# (5), check-switch (6), ...
SNAPMIG_TEST_HOLD_AFTER_STEP=4:$T/go "$SNAPMIG" pivot "${SM[@]}" p1 \
  >"$T/out" 2>&1 &
pid=$!
check "the disk switches to B after the complete" wait_top "$M0"
# The guest writes after the switch: only B's top has it.
# A guest flushes what it needs durable: QEMU keeps qcow2 metadata in memory
# until then, and SIGKILL loses it.
"$SMQ" --hmp "$T/mon.qmp" 'qemu-io drive0 "write -P 0x44 2M 1M"' >/dev/null
"$SMQ" --hmp "$T/mon.qmp" 'qemu-io drive0 "flush"' >/dev/null
check "the write after the switch reads back" \
  "$SMQ" --hmp "$T/mon.qmp" 'qemu-io drive0 "read -P 0x44 2M 1M"'
kill -9 "$VM_PID"; wait "$VM_PID" 2>/dev/null
touch "$T/go"
wait $pid
rc=$?
sed 's/^/# /' "$T/out"
check "pivot fails with 6, disconnected: QEMU died ($rc)" [ $rc -eq 6 ]
check "pivot does not claim the disk runs on its source" \
  not grep -q '(source)' "$T/out"
check "pivot says the outcome is unknown" \
  grep -q 'disk drive0: unknown: QEMU closed the monitor after block-job-complete of disk drive0 was sent' "$T/out"
check "pivot says where the newest writes may be" \
  grep -q "the newest writes may be in $M0" "$T/out"
check "pivot says to keep both tops" grep -q 'do not delete either top' "$T/out"
check "pivot says which chain to restart on" \
  grep -q "restart the VM on $M0 and run 'snapmig pivot p1'" "$T/out"
check "pivot keeps its journal" [ "$(journals)" -eq 1 ]
check "B's top holds the last write offline" offline_read "$M0" 0x44 2M
check "A's top does not" not offline_read "$N0" 0x44 2M

out=$("$SNAPMIG" recover "${SM[@]}" 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "recover without QEMU succeeds" [ $rc -eq 0 ]
check "recover without QEMU says the outcome is unknown" \
  grep -q 'disk drive0: unknown: QEMU closed the monitor' <<<"$out"
check "recover keeps the journal" [ "$(journals)" -eq 1 ]

# The administrator restarts the VM on the old chain in A and aborts.
vm_on "$N0"
out=$("$SNAPMIG" abort "${SM[@]}" p1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "abort refuses ($rc)" [ $rc -eq 1 ]
check "abort says why" \
  grep -q "the destination top $M0 may hold the guest's newest writes, so abort does not remove it" <<<"$out"
check "abort keeps B's top" [ -e "$M0" ]
out=$("$SNAPMIG" recover "${SM[@]}" 2>&1)
echo "$out" | sed 's/^/# /'
check "recover on the restarted VM keeps B's top" [ -e "$M0" ]
check "recover on the restarted VM says so" \
  grep -q "the destination top $M0 may hold the guest's newest writes" <<<"$out"
check "recover keeps the journal again" [ "$(journals)" -eq 1 ]
check "B's top still holds the last write" offline_read "$M0" 0x44 2M

# Restarted on B, as pivot said: pivot finishes.
kill -9 "$VM_PID"; wait "$VM_PID" 2>/dev/null
vm_on "$M0"
out=$("$SNAPMIG" pivot "${SM[@]}" p1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "pivot on the VM restarted on B finishes" [ $rc -eq 0 ]
check "drive0 runs on B" [ "$(top_file drive0)" = "$M0" ]
check "the guest runs" [ "$(run_state)" = running ]
check "every write reads back in the VM" guest_read vm drive0 0x10 0 1M
check "... the one before the pivot" guest_read vm drive0 0x20 1M 1M
check "... the one after the switch" guest_read vm drive0 0x44 2M 1M
check "the snapshot is gone" [ -z "$(ls -A "$JDIR"/*/snapshots/)" ]
check "no journal left" [ "$(journals)" -eq 0 ]
check "no record of the move left" [ "$(records)" -eq 0 ]
"$SNAPMIG" validate "$B" --qmp "$T/vm.qmp" --state-dir "$T/state" \
  >"$T/val" 2>&1
check "validate finds B clean" [ $? -eq 0 ]
sed 's/^/# /' "$T/val"

done_testing
