#!/usr/bin/env bash
# A pivot killed while it deletes the snapshot's records (issue 8, break 7),
# against a real QEMU: the disk already runs on B, some records are left.
# recover, pivot and abort must recognise a switch that is over and finish
# it (recover, pivot) or send to pivot (abort), never leave a stuck record;
# validate must not call B's files part of a move in progress afterwards.
# Cases: killed after the snapshot's metadata went (test hook), killed just
# before the move's record went (test hook), and the leftovers of the old
# deletion order (lsm/NAME.{json,created,copy.json} with the snapshot gone,
# put back by the test) with no journal.
. "$(dirname "$0")/lib.sh"

lsm_setup
command -v qemu-io >/dev/null || skip_all "qemu-io missing"
JDIR=$T/state/vms
N0=$A/d0.p1.qcow2 M0=$B/d0.p1.qcow2

run_state () { qmp vm query-status | jq -r .status; }
journals () { ls "$JDIR"/*/journal/*.journal 2>/dev/null | wc -l; }
records () { ls "$JDIR"/*/lsm/ 2>/dev/null | wc -l; }
not () { ! "$@"; }
offline_read () {
  local out
  out=$(qemu-io -U -r -f qcow2 -c "read -P $2 $3 1M" "$1" 2>&1)
  grep -q 'read 1048576' <<<"$out" && ! grep -q 'verification failed' <<<"$out"
}

# fresh: VM "vm" on one disk in emptied A, B and state dir, snapshot p1
# created with its mirror into B and ready.
fresh () {
  [ -n "${VM_PID:-}" ] && { kill -9 "$VM_PID"; wait "$VM_PID" 2>/dev/null; }
  rm -rf "$A" "$B" "$T/state" "$T/vm.qmp"
  mkdir -p "$A" "$B" "$T/state"
  qemu-img create -q -f qcow2 "$A/d0.qcow2" 16M
  start_vm vm -drive "$(drive_opt drive0 "$A/d0.qcow2" qcow2)" || exit 1
  EXPECT=()
  gw drive0 0x10 0 1M
  "$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name p1 --wait \
    >"$T/create.out" 2>&1 || { sed 's/^/# /' "$T/create.out"; exit 1; }
  gw drive0 0x20 1M 1M
}

# over WHAT: the checks once the move is finished.
over () {
  check "$1: drive0 runs on B" [ "$(top_file drive0)" = "$M0" ]
  check "$1: the guest runs" [ "$(run_state)" = running ]
  check "$1: every write reads back in the VM" all_read
  check "$1: the data offline in B" offline_read "$M0" 0x20 1M
  check "$1: the snapshot is gone" [ -z "$(ls -A "$JDIR"/*/snapshots/)" ]
  check "$1: no current snapshot" \
    not grep -qs p1 "$JDIR"/*/current
  check "$1: no journal left" [ "$(journals)" -eq 0 ]
  check "$1: no record of the move left" [ "$(records)" -eq 0 ]
  check "$1: B's files stay" [ -e "$M0" -a -e "$B/d0.qcow2" ]
  "$SNAPMIG" validate "$B" --qmp "$T/vm.qmp" --state-dir "$T/state" \
    >"$T/val" 2>&1
  check "$1: validate finds B clean" [ $? -eq 0 ]
  check "$1: validate sees no move in progress" \
    not grep -q 'move p1\|move in progress' "$T/val"
}

# ---- killed after the snapshot's metadata went: recover finishes -----------
fresh
SNAPMIG_TEST_CRASH_AT=snapshot-deleted "$SNAPMIG" pivot "${SM[@]}" p1 \
  >"$T/out" 2>&1
check "pivot killed while deleting its records" [ $? -eq 137 ]
check "the move's record is still there" [ "$(records)" -gt 0 ]
out=$("$SNAPMIG" recover "${SM[@]}" 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "recover succeeds" [ $rc -eq 0 ]
check "recover says it finished the pivot" \
  grep -q 'pivot of p1 had switched every disk; removed its leftover records' <<<"$out"
over "recover"

# ---- killed just before the move's record went: abort sends to pivot, -----
# ---- pivot finishes ----------------------------------------------------------
fresh
SNAPMIG_TEST_CRASH_AT=before-record-removal "$SNAPMIG" pivot "${SM[@]}" p1 \
  >"$T/out" 2>&1
check "pivot killed before removing the move's record" [ $? -eq 137 ]
check "only the move's record is left" [ "$(records)" -eq 1 ]
out=$("$SNAPMIG" abort "${SM[@]}" p1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "abort refuses" [ $rc -eq 1 ]
check "abort says to run pivot" grep -q "run 'snapmig pivot p1'" <<<"$out"
check "abort removed nothing in B" [ -e "$M0" -a -e "$B/d0.qcow2" ]
out=$("$SNAPMIG" pivot "${SM[@]}" p1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "pivot finishes" [ $rc -eq 0 ]
check "pivot does not say 'not the current snapshot'" \
  not grep -q 'not the current snapshot' <<<"$out"
over "pivot"

# ---- the old order's leftovers (record, created, copy status), no journal --
fresh
lsm=$(echo "$JDIR"/*/lsm)
cp -a "$lsm" "$T/lsm.saved"
"$SNAPMIG" pivot "${SM[@]}" p1 >"$T/out" 2>&1
check "pivot" [ $? -eq 0 ]
cp -a "$T/lsm.saved/." "$lsm/"
check "the leftovers are back" [ "$(records)" -eq 3 ]
out=$("$SNAPMIG" pivot "${SM[@]}" p1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "pivot over the leftovers succeeds" [ $rc -eq 0 ]
over "leftovers"

done_testing
