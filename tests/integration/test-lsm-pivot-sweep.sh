#!/usr/bin/env bash
# Interruption sweep of pivot and abort against a real QEMU with two disks
# (pivot pauses the guest): pivot SIGKILLed after each of its steps, then
# `recover` and, when it says so, pivot again; pivot interrupted with SIGINT
# while it holds after each step, then pivot again; abort SIGKILLed after
# each of its steps and in the middle of deleting the snapshot's records,
# then `recover` and, when it says so, abort again.
# Every run must end with the guest running, both disks on one complete
# chain (B after pivot, A after abort), every write readable in the VM and
# offline, no file left in B after abort, no journal, no record.
. "$(dirname "$0")/lib.sh"

lsm_setup
command -v qemu-io >/dev/null || skip_all "qemu-io missing"
JDIR=$T/state/vms
N0=$A/d0.p1.qcow2 N1=$A/d1.p1.qcow2
M0=$B/d0.p1.qcow2 M1=$B/d1.p1.qcow2

# on T0 T1: drive0 runs on T0 and drive1 on T1.
on () { [ "$(top_file drive0)" = "$1" ] && [ "$(top_file drive1)" = "$2" ]; }

# finish CMD: runs recover, then CMD (pivot or abort) when recover asks for
# it; the output goes to the TAP log.
finish () {
  local out
  out=$("$SNAPMIG" recover "${SM[@]}" 2>&1)
  echo "$out" | sed 's/^/#   recover: /'
  if grep -q "run 'snapmig $1 p1' again" <<<"$out"; then
    "$SNAPMIG" "$1" "${SM[@]}" p1 2>&1 | sed "s/^/#   $1: /"
  fi
}

# outcome WHAT WHERE: the checks once the move ended, on B or on A.
outcome () {
  local ok=1
  [ "$(run_state)" = running ] || { echo "# $1: guest $(run_state)"; ok=0; }
  if [ "$2" = B ]; then
    on "$M0" "$M1" || { echo "# $1: not on B"; ok=0; }
    offline_read "$M0" 0x20 1M || { echo "# $1: drive0 data offline"; ok=0; }
    offline_read "$M1" 0x11 0 || { echo "# $1: drive1 data offline"; ok=0; }
  else
    on "$N0" "$N1" || { echo "# $1: not on A"; ok=0; }
    offline_read "$N0" 0x20 1M || { echo "# $1: drive0 data offline"; ok=0; }
    [ -z "$(ls -A "$B")" ] || { echo "# $1: files left in B"; ok=0; }
  fi
  all_read || { echo "# $1: a write does not read back"; ok=0; }
  [ "$(journals)" -eq 0 ] || { echo "# $1: journal left"; ok=0; }
  [ "$(records)" -eq 0 ] || { echo "# $1: record left"; ok=0; }
  [ -z "$(ls -A "$JDIR"/*/snapshots/)" ] || { echo "# $1: snapshot left"; ok=0; }
  [ $ok -eq 1 ]
}

# Two disks: wait, check-dest x2, flush, stop, complete x2 (one batch),
# wait-switch, cont, check-switch, delete-metadata.
for n in 1 2 3 4 5 6 7 8 9 10 11; do
  fresh_move 2 mon
  SNAPMIG_TEST_CRASH_AFTER_STEP=$n "$SNAPMIG" pivot "${SM[@]}" p1 \
    >/dev/null 2>&1
  rc=$?
  finish pivot
  check "pivot SIGKILLed after step $n (rc $rc), recovered: one chain in B, guest runs, data, no record" \
    outcome "pivot kill $n" B
done

for n in 1 2 3 4 5 6 7 8 9 10; do
  fresh_move 2 mon
  SNAPMIG_TEST_HOLD_AFTER_STEP=$n:$T/go "$SNAPMIG" pivot "${SM[@]}" p1 \
    >"$T/out" 2>&1 &
  pid=$!
  # Held once the step's end is journaled.
  deadline=$(( $(date +%s) + 10 ))
  until grep -qs "\"step\":$n,[^}]*\"phase\":\"end\"" "$JDIR"/*/journal/*.journal ||
        [ "$(date +%s)" -ge $deadline ]; do sleep 0.02; done
  kill -INT $pid
  wait $pid
  rc=$?
  touch "$T/go"
  check "pivot SIGINT after step $n: fails with a message" \
    grep -q 'interrupted by SIGINT' "$T/out"
  check "pivot SIGINT after step $n: the guest runs at once" \
    [ "$(run_state)" = running ]
  "$SNAPMIG" pivot "${SM[@]}" p1 >"$T/out" 2>&1
  check "pivot SIGINT after step $n (rc $rc), pivot again: one chain in B, data, no record" \
    outcome "pivot int $n" B
done

# abort, two disks: cancel x2, stop-copy, remove-files, delete-metadata.
for n in 1 2 3 4 5; do
  fresh_move 2 mon
  SNAPMIG_TEST_CRASH_AFTER_STEP=$n "$SNAPMIG" abort "${SM[@]}" p1 \
    >/dev/null 2>&1
  rc=$?
  finish abort
  check "abort SIGKILLed after step $n (rc $rc), recovered: on A, B empty, data, no record" \
    outcome "abort kill $n" A
done

# ... and killed in the middle of the deletion of the snapshot's records.
for point in snapshot-deleted before-record-removal; do
  fresh_move 2 mon
  SNAPMIG_TEST_CRASH_AT=$point "$SNAPMIG" abort "${SM[@]}" p1 >/dev/null 2>&1
  rc=$?
  finish abort
  check "abort SIGKILLed at $point (rc $rc), recovered: on A, B empty, data, no record" \
    outcome "abort kill $point" A
done

done_testing
