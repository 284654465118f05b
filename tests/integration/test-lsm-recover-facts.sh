#!/usr/bin/env bash
# recover decides from the journal AND what the VM runs on (issue 8, breaks
# 6 and 8), against a real QEMU with two disks:
#  - create removes its record of created files only after journaling
#    "done": a kill after the begin of any step (=Nb) is rolled back; a
#    kill in the last gap (SNAPMIG_TEST_CRASH_AFTER_STEP=done) leaves
#    a finished move that recover tidies, no stray file, no stuck record; a
#    kill after the last step is rolled back whole and the same name can be
#    created again.  The state the old order left (record gone, "done" never
#    journaled) is reported as damaged, nothing claimed removed.
#  - a create journal that lost its step records (cut, emptied, a garbage
#    line, a line cut in the middle) while the VM runs on the new tops with
#    mirrors: recover deletes no live image, keeps the journal, exits
#    non-zero with what the VM runs on and the fix; the guest keeps its
#    chain and data (in the VM and in the files); repaired, it rolls back.
#  - a truncated move record (lsm/NAME.json): pivot, abort, status and
#    recover name the file and the fix; recover does not say "nothing to
#    recover".
#  - SIGINT, SIGTERM, SIGHUP during create (SNAPMIG_TEST_SIGNAL_AFTER_STEP
#    sends the signal to snapmig itself; the CLI's handler records it):
#    rolled back, the VM on its original chain, nothing left; and SIGINT
#    to `create --wait` while its mirror is far from READY, the same.
. "$(dirname "$0")/lib.sh"

lsm_setup
# start_2disk_vm's VM, with a second monitor (vm2) for the test to talk to
# QEMU while snapmig holds the first.
make_chain "$A" 32M 2M
qemu-img create -q -f raw "$A/d1.raw" 16M
start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" \
            -drive "$(drive_opt drive1 "$A/d1.raw" raw)" \
            -qmp "unix:$T/vm2.qmp,server=on,wait=off" || exit 1
wait_for_file "$T/vm2.qmp" 20 || exit 1
A_FILES=$(ls -A "$A" | sort)
STATE=$(echo "$T"/state)
EXPECT=("drive0 0x11 0 2M")
gw drive0 0x21 3M 512K
gw drive1 0x31 1M 512K

run () { out=$("$@" 2>&1); rc=$?; echo "$out" | sed 's/^/# /'; }
journals () { ls "$STATE"/vms/*/journal/*.journal 2>/dev/null; }
jobs () { qmp vm query-block-jobs | jq -r '[.[].device] | sort | join(" ")'; }
fmt_of () {
  qmp vm query-block | jq -r --arg d "$1" '.[] | select(.device == $d)
    | .inserted.image.format'
}
# Every write of EXPECT reads back from the files of the chain each disk
# runs on now, outside the VM (-U: QEMU holds its image locks).
offline_read () {
  local e d dd p o l r args
  for d in drive0 drive1; do
    # QEMU keeps qcow2 metadata in memory: flush it to the files first.
    "$SMQ" --hmp "$T/vm.qmp" "qemu-io $d \"flush\"" >/dev/null || return 1
    args=()
    for e in "${EXPECT[@]}"; do
      read -r dd p o l <<<"$e"
      [ "$dd" = "$d" ] && args+=(-c "read -P $p $o $l")
    done
    [ ${#args[@]} -gt 0 ] || continue
    r=$(qemu-io -r -U -f "$(fmt_of "$d")" "${args[@]}" "$(top_file "$d")" 2>&1) ||
      { echo "# $d: $r"; return 1; }
    ! grep -q 'verification failed' <<<"$r" ||
      { echo "# $d: $(grep 'verification failed' <<<"$r")"; return 1; }
  done
}
validate_clean () {
  "$SNAPMIG" validate --state-dir "$STATE" --qmp "$T/vm.qmp" "$A" "$B" \
    >"$T/val" 2>&1 || { sed 's/^/# /' "$T/val"; return 1; }
}
# What the VM must run on when no operation is pending: TOP0/TOP1, with the
# files of A_FILES in A, nothing in B, the snapshots of SNAPS (settle_here
# takes them from the VM after a finished operation).
settle_here () {
  TOP0=$(top_file drive0) TOP1=$(top_file drive1)
  A_FILES=$(ls -A "$A" | sort)
  SNAPS=$(ls -A "$STATE"/vms/*/snapshots/ 2>/dev/null | sort)
}
# The VM on its chain from before the create and nothing snapmig made left.
original () {
  [ "$(top_file drive0)" = "$TOP0" ] || { echo "# drive0 on $(top_file drive0)"; return 1; }
  [ "$(top_file drive1)" = "$TOP1" ] || { echo "# drive1 on $(top_file drive1)"; return 1; }
  [ -z "$(jobs)" ] || { echo "# jobs: $(jobs)"; return 1; }
  [ "$(ls -A "$A" | sort)" = "$A_FILES" ] || { echo "# A: $(ls -A "$A")"; return 1; }
  [ -z "$(ls -A "$B")" ] || { echo "# B: $(ls -A "$B")"; return 1; }
  [ "$(ls -A "$STATE"/vms/*/snapshots/ 2>/dev/null | sort)" = "$SNAPS" ] || { echo "# metadata: $(ls -A "$STATE"/vms/*/snapshots/)"; return 1; }
  [ -z "$(ls -A "$STATE"/vms/*/journal/ 2>/dev/null)" ] || { echo "# journal dir: $(ls -A "$STATE"/vms/*/journal/)"; return 1; }
  [ -z "$(ls -A "$STATE"/vms/*/lsm/ 2>/dev/null)" ] || { echo "# lsm: $(ls -A "$STATE"/vms/*/lsm/)"; return 1; }
  [ "$(qmp vm query-status | jq -r .status)" = running ] || { echo "# not running"; return 1; }
  all_read && offline_read
}
# new_top FILE NAME: the new top create gives a disk on FILE for snapshot
# NAME: STEM.NAME.qcow2 beside FILE, STEM being FILE's stem without an
# earlier snapmig suffix (the shortest stem of a layer below FILE, in the
# chain of the disk that has FILE, that FILE's stem begins with, plus ".").
new_top () {
  local f=${1##*/} s base d l b below=()
  s=${f%.*} base=${f%.*}
  for d in drive0 drive1; do
    mapfile -t below < <(chain_files "$d" | sed -n "\|^$1\$|,\$p" | tail -n +2)
    [ ${#below[@]} -gt 0 ] && break
  done
  for l in "${below[@]}"; do
    b=${l##*/} b=${b%.*}
    case $s in "$b".*) [ ${#b} -lt ${#base} ] && base=$b ;; esac
  done
  echo "${1%/*}/$base.$2.qcow2"
}
# The VM on the new tops of snapshot $1, both mirrors running.
on_new_tops () {
  [ "$(top_file drive0)" = "$(new_top "$TOP0" "$1")" ] || { echo "# drive0 on $(top_file drive0)"; return 1; }
  [ "$(top_file drive1)" = "$(new_top "$TOP1" "$1")" ] || { echo "# drive1 on $(top_file drive1)"; return 1; }
  [ "$(jobs)" = "snapmig-mirror-drive0 snapmig-mirror-drive1" ] || { echo "# jobs: $(jobs)"; return 1; }
  [ -n "$(ls -A "$B")" ] || { echo "# B empty"; return 1; }
  [ "$(qmp vm query-status | jq -r .status)" = running ] || { echo "# not running"; return 1; }
  all_read && offline_read
}
crash_create () {  # NAME POINT: create killed at POINT (a step or "done")
  SNAPMIG_TEST_CRASH_AFTER_STEP=$2 "$SNAPMIG" create "${SM[@]}" \
    --mirror-domain "$B" --name "$1" >/dev/null 2>&1
}

settle_here
check "the VM starts on its original chain" original

# ---- break 6: the record outlives the step it guards -------------------

# Killed after the last step, before "done": rolled back whole, the name free.
crash_create c1 9
check "killed after the last step: snapmig died (137)" [ $? -eq 137 ]
run "$SNAPMIG" recover "${SM[@]}"
check "recover rolls back" [ $rc -eq 0 ]
check "recover names what it removed in B and A" \
  grep -q "removed: .*$B/top.c1.qcow2.*$A/top.c1.qcow2" <<<"$out"
check "VM on its original chain, no file left in A or B, no record" original
run "$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name c1
check "create with the same name works again" [ $rc -eq 0 ]
run "$SNAPMIG" abort "${SM[@]}" c1
check "and aborts" [ $rc -eq 0 ]
settle_here

# Killed after journaling the begin of each step, before it runs: recover
# finds nothing the journal cannot explain and rolls back.  (The steps:
# create-dest x2, create-top x2, transaction, mirror x2, save-metadata,
# start-copy; one of each kind.)
for n in 1 3 5 6 8 9; do
  crash_create "k$n" "${n}b"
  check "killed after the begin of step $n: snapmig died" [ $? -eq 137 ]
  run "$SNAPMIG" recover "${SM[@]}"
  check "begin of step $n: recover rolls back" grep -q 'rolled back' <<<"$out"
  check "begin of step $n: recover succeeds" [ $rc -eq 0 ]
  check "begin of step $n: VM on its chain, nothing left" original
done

# Killed after journaling "done", before removing the record: the create
# is complete; recover removes the record and the journal, the move goes on.
crash_create b6 done
check "killed after journaling done: snapmig died (137)" [ $? -eq 137 ]
check "killed after journaling done: the record of created files is still there" \
  [ -n "$(ls "$STATE"/vms/*/journal/*.created 2>/dev/null)" ]
run "$SNAPMIG" recover "${SM[@]}"
check "recover succeeds" [ $rc -eq 0 ]
check "recover says the create had finished" grep -q 'create of snapshot b6 had finished' <<<"$out"
check "journal and record are gone" [ -z "$(ls -A "$STATE"/vms/*/journal/)" ]
check "the move goes on: VM on the new tops, mirrors running" on_new_tops b6
gw drive0 0x22 4M 512K
run "$SNAPMIG" abort "${SM[@]}" b6
check "the finished create can be aborted" [ $rc -eq 0 ]
check "abort leaves nothing in B" [ -z "$(ls -A "$B")" ]
check "no move record is stuck" [ -z "$(ls -A "$STATE"/vms/*/lsm/ 2>/dev/null)" ]
check "every write reads back in the VM" all_read
check "and outside the VM" offline_read
settle_here

# The state the old order left: every step ran, the record removed, "done"
# never journaled.  Its files are unknown: nothing is claimed removed.
crash_create old 9
rm -f "$STATE"/vms/*/journal/*.created
run "$SNAPMIG" recover "${SM[@]}"
check "record gone before done: recover fails" [ $rc -ne 0 ]
check "it says the record is missing and the journal kept" \
  grep -q 'record of created files .* is missing.*kept' <<<"$out"
check "it does not claim it removed files" bash -c '! grep -q "removed:" <<<"$1"' _ "$out"
check "no live image deleted: the VM still on the new tops" on_new_tops old
check "the journal is kept" [ -n "$(journals)" ]

# ---- break 8: a journal that lost records ------------------------------
# The journal of "old" has every step; what follows damages copies of it.
J=$(journals)
cp "$J" "$T/journal.good"
cp "$T/journal.good" "$T/journal.keep"
# Its record, rebuilt for the repair at the end.
ls -A "$B" | sed "s|^|$B/|" >"$T/record"
printf '%s\n' "$(new_top "$TOP0" old)" "$(new_top "$TOP1" old)" >>"$T/record"
REC=$(jq -r 'select(.op) | .record' "$J")

damaged () {  # NAME: recover on a damaged journal keeps it and everything
  run "$SNAPMIG" recover "${SM[@]}"
  check "$1: recover fails" [ $rc -ne 0 ]
  check "$1: it says the journal is damaged and kept" grep -q "journal $J is \(damaged\|empty\).*kept" <<<"$out"
  check "$1: it says what the VM runs on now" grep -q "what the VM runs on now: disk drive0 on $(new_top "$TOP0" old)" <<<"$out"
  check "$1: and how to fix it" grep -q 'fix: ' <<<"$out"
  check "$1: the journal is kept as it was" cmp -s "$J" "$T/journal.now"
  check "$1: no live image deleted: the VM on its chain, mirrors running, data in VM and files" \
    on_new_tops old
  gw drive0 "$2" "$3" 64K
}
# Step records cut: the header alone.
head -n 1 "$T/journal.good" >"$J"; cp "$J" "$T/journal.now"
damaged "step records cut" 0x41 5M
# Emptied.
: >"$J"; cp "$J" "$T/journal.now"
damaged "journal emptied" 0x42 6M
# A garbage line in the middle.
sed '4s/.*/garbage/' "$T/journal.good" >"$J"; cp "$J" "$T/journal.now"
damaged "garbage line" 0x43 7M
check "garbage line: the line is named" grep -q 'line 4' <<<"$out"
# A line cut in the middle of the file.
awk 'NR == 6 { print substr($0, 1, 20); next } { print }' "$T/journal.good" >"$J"
cp "$J" "$T/journal.now"
damaged "line cut mid-file" 0x44 8M
# Records from the middle lost (steps 3 to 6).
awk 'NR < 6 || NR > 13' "$T/journal.good" >"$J"; cp "$J" "$T/journal.now"
damaged "records lost in the middle" 0x45 9M

# Repaired (journal and record restored), recover rolls the create back.
cp "$T/journal.good" "$J"
cp "$T/record" "$REC"
run "$SNAPMIG" recover "${SM[@]}"
check "repaired: recover rolls back" [ $rc -eq 0 ]
check "repaired: VM on its original chain, nothing left" original
check "validate finds A and B clean" validate_clean

# A journal whose header alone is left, with the VM untouched: the facts
# agree with it (nothing began), so it is simply finished.
head -n 1 "$T/journal.good" >"$J"
run "$SNAPMIG" recover "${SM[@]}"
check "header-only journal, nothing began: recover finishes it" [ $rc -eq 0 ]
check "and touches nothing" original

# ---- a truncated move record --------------------------------------------
run "$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name mv
check "create mv" [ $rc -eq 0 ]
INFO=$(ls "$STATE"/vms/*/lsm/mv.json)
cp "$INFO" "$T/mv.json"
head -c 100 "$T/mv.json" >"$INFO"
for cmd in pivot abort status; do
  run "$SNAPMIG" $cmd "${SM[@]}" mv
  check "truncated move record: $cmd fails" [ $rc -ne 0 ]
  check "truncated move record: $cmd names the file, the damage and the fix" \
    grep -q "move record $INFO is damaged.*fix: " <<<"$out"
done
run "$SNAPMIG" recover "${SM[@]}"
check "truncated move record: recover fails" [ $rc -ne 0 ]
check "truncated move record: recover names it" grep -q "move record $INFO is damaged" <<<"$out"
check "truncated move record: recover does not say nothing to recover" \
  bash -c '! grep -q "nothing to recover" <<<"$1"' _ "$out"
check "truncated move record: the VM still moves" on_new_tops mv
check "truncated move record: it is kept" cmp -s "$INFO" <(head -c 100 "$T/mv.json")
cp "$T/mv.json" "$INFO"
run "$SNAPMIG" abort "${SM[@]}" mv
check "restored: abort works" [ $rc -eq 0 ]
settle_here
check "after abort: nothing left" original

# ---- SIGINT, SIGTERM, SIGHUP during create ------------------------------
for case in 1:2:SIGINT 5:15:SIGTERM 7:1:SIGHUP 8:2:SIGINT; do
  IFS=: read -r step sig name <<<"$case"
  gw drive1 "0x5$step" "$((step + 2))M" 64K
  run env SNAPMIG_TEST_SIGNAL_AFTER_STEP="$step:$sig" "$SNAPMIG" create \
    "${SM[@]}" --mirror-domain "$B" --name "s$step"
  check "$name after step $step: create fails" [ $rc -ne 0 ]
  check "$name after step $step: it says interrupted and rolled back" \
    grep -q "interrupted.*$name.*rolled back" <<<"$out"
  check "$name after step $step: VM on its original chain, nothing left" original
done

# SIGINT while `create --wait` waits for the mirrors: the whole create is
# rolled back.  The create stops itself after the transaction (signal 19,
# SIGSTOP) so that the guest can write 4 MiB into the new top, which the
# mirror then copies at 64 KiB/s: it is not READY for a minute.
state_of () { sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null; }
waiting () {
  grep -q 'snapshot w1 created' "$T/w.out" &&
    [ "$(qmp vm2 query-block-jobs | jq -r '.[] | select(.device == "snapmig-mirror-drive0") | .ready')" = false ]
}
SNAPMIG_TEST_SIGNAL_AFTER_STEP=5:19 "$SNAPMIG" create "${SM[@]}" \
  --mirror-domain "$B" --name w1 --wait --bandwidth 64K >"$T/w.out" 2>&1 &
CPID=$!
check "create --wait stopped after the transaction" wait_until 20 eval '[ "$(state_of $CPID)" = T ]'
check "the guest writes 4 MiB into the new top" guest_write vm2 drive0 0x61 10M 4M
EXPECT+=("drive0 0x61 10M 4M")
kill -CONT "$CPID"
check "create --wait waits, the mirror of drive0 not READY" wait_until 20 waiting
kill -INT "$CPID"
wait "$CPID"
rc=$?
sed 's/^/# /' "$T/w.out"
check "SIGINT during the wait: create fails" [ $rc -ne 0 ]
check "SIGINT during the wait: it says interrupted and rolled back" \
  grep -q 'interrupted.*SIGINT.*rolled back' "$T/w.out"
check "SIGINT during the wait: VM on its original chain, every write kept, nothing left" original

check "validate finds A and B clean at the end" validate_clean

# ---- QEMU gone: the images and the journal alone -----------------------
# A create killed after the mirrors started, its journal cut to the header,
# then QEMU quits: recover cannot look at the VM, and the record lists files
# no journaled step made, so it keeps everything.  Repaired, it folds the
# new tops back offline (qemu-img commit): every write in the original
# files, nothing left.
crash_create gone 9
check "killed after the last step (QEMU gone case)" [ $? -eq 137 ]
gw drive0 0x71 15M 512K
gw drive1 0x72 15M 512K
J=$(journals)
cp "$J" "$T/journal.good"
REC=$(jq -r 'select(.op) | .record' "$J")
cp "$REC" "$T/record.good"
head -n 1 "$T/journal.good" >"$J"
NEW0=$(new_top "$TOP0" gone) NEW1=$(new_top "$TOP1" gone)
qmp vm quit >/dev/null
wait "$VM_PID" 2>/dev/null
run "$SNAPMIG" recover "${SM[@]}"
check "QEMU gone, journal cut: recover fails" [ $rc -ne 0 ]
check "QEMU gone, journal cut: it says QEMU is not running and keeps the journal" \
  grep -q "is damaged (.*lists files.*): kept; what the VM runs on now: QEMU is not running" <<<"$out"
check "QEMU gone, journal cut: the journal and the new tops are kept" \
  [ -s "$J" -a -e "$NEW0" -a -e "$NEW1" -a -n "$(ls -A "$B")" ]
cp "$T/journal.good" "$J"
run "$SNAPMIG" recover "${SM[@]}"
check "QEMU gone, repaired: recover folds the new tops back" \
  grep -q 'rolled back: QEMU is gone: the new tops were folded back' <<<"$out"
check "QEMU gone, repaired: recover succeeds" [ $rc -eq 0 ]
check "QEMU gone, repaired: no new top, nothing in B, no journal or record" \
  [ ! -e "$NEW0" -a ! -e "$NEW1" -a -z "$(ls -A "$B")" \
    -a -z "$(ls -A "$STATE"/vms/*/journal/)" ]
offline_orig () {
  local e d p o l f fmt r
  for e in "${EXPECT[@]}"; do
    read -r d p o l <<<"$e"
    if [ "$d" = drive0 ]; then f=$TOP0 fmt=qcow2; else f=$TOP1 fmt=$F1; fi
    r=$(qemu-io -r -f "$fmt" -c "read -P $p $o $l" "$f" 2>&1) || { echo "# $e: $r"; return 1; }
    ! grep -q 'verification failed' <<<"$r" || { echo "# $e in $f"; return 1; }
  done
}
F1=qcow2; case "$TOP1" in *.raw) F1=raw ;; esac
check "QEMU gone, repaired: every write reads back from the original files" offline_orig

done_testing
