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
fresh_move 1
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
fresh_move 1
SNAPMIG_TEST_CRASH_AT=before-record-removal "$SNAPMIG" pivot "${SM[@]}" p1 \
  >"$T/out" 2>&1
check "pivot killed before removing the move's record" [ $? -eq 137 ]
check "only the move's record is left" [ "$(records)" -eq 1 ]
out=$("$SNAPMIG" abort "${SM[@]}" p1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "abort refuses with 2, invalid-input: pivot is the way ($rc)" [ $rc -eq 2 ]
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
fresh_move 1
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
