#!/usr/bin/env bash
# A pivot interrupted while it holds the guest paused (issue 8, break 3),
# against a real QEMU with two disks (so pivot pauses the guest around the
# switch): killed with SIGKILL right after its `stop`, `recover`, a second
# `pivot` and `abort` each resume the guest; SIGINT, SIGTERM and SIGHUP make
# pivot resume it itself and fail with a message; a guest the user paused
# before pivot stays paused through pivot, a killed pivot and recover.
# Each case checks the guest's data in the VM and offline, the chain each
# disk runs on, the run state, the files in A and B, the journals and the
# move's records, and validate's verdict on B.
. "$(dirname "$0")/lib.sh"

lsm_setup
command -v qemu-io >/dev/null || skip_all "qemu-io missing"
JDIR=$T/state/vms
N0=$A/d0.p1.qcow2 N1=$A/d1.p1.qcow2        # the snapshot's new source tops
M0=$B/d0.p1.qcow2 M1=$B/d1.p1.qcow2        # their mirrors

# wait_state STATE: polls query-status (on the second monitor) until the
# guest is STATE (10 s).
wait_state () {
  local deadline=$(( $(date +%s) + 10 ))
  while [ "$("$SMQ" "$T/mon.qmp" query-status | jq -r .status)" != "$1" ]; do
    [ "$(date +%s)" -lt $deadline ] || return 1
    sleep 0.02
  done
}

# moved_ok WHAT: the checks after a finished pivot.
moved_ok () {
  check "$1: drive0 runs on B" [ "$(top_file drive0)" = "$M0" ]
  check "$1: drive1 runs on B" [ "$(top_file drive1)" = "$M1" ]
  check "$1: the guest runs" [ "$(run_state)" = running ]
  check "$1: every write reads back in the VM" all_read
  check "$1: drive0's data offline in B" offline_read "$M0" 0x20 1M
  check "$1: drive1's data offline in B" offline_read "$M1" 0x11 0
  check "$1: the snapshot is gone" [ -z "$(ls -A "$JDIR"/*/snapshots/)" ]
  check "$1: no journal left" [ "$(journals)" -eq 0 ]
  check "$1: no record of the move left" [ "$(records)" -eq 0 ]
  "$SNAPMIG" validate "$B" --qmp "$T/vm.qmp" --state-dir "$T/state" \
    >"$T/val" 2>&1
  check "$1: validate finds B clean" [ $? -eq 0 ]
  check "$1: validate sees no move in progress" \
    not grep -q 'move in progress\|move p1' "$T/val"
}

# ---- SIGKILL after stop; recover resumes the guest -------------------------
fresh_move 2 mon
# Steps: wait, check-dest x2, flush, stop (5), complete x2, wait-switch, cont,
# check-switch, ...
SNAPMIG_TEST_CRASH_AFTER_STEP=5 "$SNAPMIG" pivot "${SM[@]}" p1 \
  >"$T/out" 2>&1
check "killed pivot: it died" [ $? -eq 137 ]
check "killed pivot: the guest is left paused" [ "$(run_state)" = paused ]
check "killed pivot: its journal says it stopped the guest" \
  grep -q '"op-phase":"guest-stopped"' "$JDIR"/*/journal/*.journal
out=$("$SNAPMIG" status "${SM[@]}" p1 2>&1)
echo "$out" | sed 's/^/# /'
check "status shows the guest paused" grep -q 'guest: paused' <<<"$out"
check "status shows the interrupted pivot that paused it" \
  grep -q 'pivot of p1 in flight or interrupted (journal .*); it paused the guest' <<<"$out"
out=$("$SNAPMIG" recover "${SM[@]}" 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "recover succeeds" [ $rc -eq 0 ]
check "recover says it resumed the guest" \
  grep -q 'resumed the guest that the interrupted pivot of snapshot p1 had paused' <<<"$out"
check "recover: the guest runs" [ "$(run_state)" = running ]
check "recover: drive0 still on its source" [ "$(top_file drive0)" = "$N0" ]
check "recover: drive1 still on its source" [ "$(top_file drive1)" = "$N1" ]
check "recover tells to run pivot again" grep -q "run 'snapmig pivot p1' again" <<<"$out"
gw drive0 0x30 2M 1M
"$SNAPMIG" pivot "${SM[@]}" p1 >"$T/out" 2>&1
check "pivot after recover finishes" [ $? -eq 0 ]
moved_ok "pivot after recover"

# ---- SIGKILL after stop; a second pivot resumes and finishes ---------------
fresh_move 2 mon
SNAPMIG_TEST_CRASH_AFTER_STEP=5 "$SNAPMIG" pivot "${SM[@]}" p1 >/dev/null 2>&1
check "killed pivot (2): the guest is left paused" [ "$(run_state)" = paused ]
out=$("$SNAPMIG" pivot "${SM[@]}" p1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "second pivot succeeds" [ $rc -eq 0 ]
check "second pivot says it resumed the guest" grep -q 'resumed the guest' <<<"$out"
check "second pivot paused the guest for its own switch" \
  grep -qE 'guest paused [0-9]+\.[0-9] ms for the switch' <<<"$out"
moved_ok "second pivot"
check "second pivot: the A files stay" [ -e "$N0" -a -e "$N1" ]

# ---- SIGKILL after stop; abort resumes the guest ---------------------------
fresh_move 2 mon
SNAPMIG_TEST_CRASH_AFTER_STEP=5 "$SNAPMIG" pivot "${SM[@]}" p1 >/dev/null 2>&1
check "killed pivot (3): the guest is left paused" [ "$(run_state)" = paused ]
out=$("$SNAPMIG" abort "${SM[@]}" p1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "abort succeeds" [ $rc -eq 0 ]
check "abort says it resumed the guest" grep -q 'resumed the guest' <<<"$out"
check "abort: the guest runs" [ "$(run_state)" = running ]
check "abort: drive0 on its source top" [ "$(top_file drive0)" = "$N0" ]
check "abort: drive1 on its source top" [ "$(top_file drive1)" = "$N1" ]
check "abort: every write reads back in the VM" all_read
check "abort: drive0's data offline in A" offline_read "$N0" 0x20 1M
check "abort: B is empty" [ -z "$(ls -A "$B")" ]
check "abort: no journal left" [ "$(journals)" -eq 0 ]
check "abort: no record of the move left" [ "$(records)" -eq 0 ]

# ---- SIGINT, SIGTERM, SIGHUP while pivot holds the guest paused ------------
for sig in INT TERM HUP; do
  fresh_move 2 mon
  SNAPMIG_TEST_HOLD_AFTER_STEP=5:$T/go "$SNAPMIG" pivot "${SM[@]}" p1 \
    >"$T/out" 2>&1 &
  pid=$!
  check "SIG$sig: pivot holds the guest paused" wait_state paused
  kill -"$sig" $pid
  wait $pid
  rc=$?
  touch "$T/go"
  sed 's/^/# /' "$T/out"
  check "SIG$sig: pivot fails with 130, interrupted ($rc)" [ $rc -eq 130 ]
  check "SIG$sig: it says it was interrupted" grep -q "interrupted by SIG$sig" "$T/out"
  check "SIG$sig: it says the guest runs again" grep -q 'the guest runs again' "$T/out"
  check "SIG$sig: the guest runs" [ "$(run_state)" = running ]
  check "SIG$sig: drive0 on its source" [ "$(top_file drive0)" = "$N0" ]
  check "SIG$sig: drive1 on its source" [ "$(top_file drive1)" = "$N1" ]
  check "SIG$sig: the message says where the disks run" \
    grep -q "disk drive0 runs on $N0 (source); disk drive1 runs on $N1 (source)" "$T/out"
  check "SIG$sig: no journal left" [ "$(journals)" -eq 0 ]
  check "SIG$sig: every write reads back" all_read
done
"$SNAPMIG" pivot "${SM[@]}" p1 >"$T/out" 2>&1
check "pivot after the signals finishes" [ $? -eq 0 ]
moved_ok "pivot after the signals"

# ---- a guest the user paused stays paused ----------------------------------
fresh_move 2 mon
qmp vm stop >/dev/null
# Without a pause: wait, check-dest x2, flush (4), complete x2, wait-switch,
# check-switch.
SNAPMIG_TEST_CRASH_AFTER_STEP=3 "$SNAPMIG" pivot "${SM[@]}" p1 >/dev/null 2>&1
check "user-paused: pivot killed" [ $? -eq 137 ]
check "user-paused: its journal has no guest-stopped" \
  not grep -q 'guest-stopped' "$JDIR"/*/journal/*.journal
out=$("$SNAPMIG" recover "${SM[@]}" 2>&1)
echo "$out" | sed 's/^/# /'
check "user-paused: recover leaves the guest paused" [ "$(run_state)" = paused ]
check "user-paused: recover says nothing of a resume" not grep -q 'resumed' <<<"$out"
out=$("$SNAPMIG" pivot "${SM[@]}" p1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "user-paused: pivot succeeds" [ $rc -eq 0 ]
check "user-paused: pivot did not pause or resume" grep -q 'guest not paused' <<<"$out"
check "user-paused: the guest is still paused" [ "$(run_state)" = paused ]
check "user-paused: drive0 on B" [ "$(top_file drive0)" = "$M0" ]
check "user-paused: drive1 on B" [ "$(top_file drive1)" = "$M1" ]
"$SNAPMIG" recover "${SM[@]}" >/dev/null 2>&1
check "user-paused: still paused after another recover" [ "$(run_state)" = paused ]
qmp vm cont >/dev/null
moved_ok "user-paused"

done_testing
