#!/usr/bin/env bash
# snapmig recover after a create killed between any two of its steps
# (SNAPMIG_TEST_CRASH_AFTER_STEP=N makes the executor _exit(137) after step
# N), against a real QEMU with two disks: recover rolls the create back, so
# the VM runs on its original chain with every guest write, no mirror runs,
# no file snapmig created is left and no metadata or journal remains.
. "$(dirname "$0")/lib.sh"

lsm_setup
start_2disk_vm || exit 1
A_FILES=$(ls -A "$A" | sort)

EXPECT=("drive0 0x11 0 2M")
consistent () {
  [ "$(top_file drive0)" = "$A/top.qcow2" ] || { echo "# drive0 on $(top_file drive0)"; return 1; }
  [ "$(top_file drive1)" = "$A/d1.raw" ] || { echo "# drive1 on $(top_file drive1)"; return 1; }
  [ "$(qmp vm query-block-jobs | jq length)" = 0 ] || { echo "# a job runs"; return 1; }
  [ "$(ls -A "$A" | sort)" = "$A_FILES" ] || { echo "# A: $(ls -A "$A")"; return 1; }
  [ -z "$(ls -A "$B")" ] || { echo "# B: $(ls -A "$B")"; return 1; }
  [ -z "$(ls -A "$T"/state/vms/*/snapshots/)" ] || { echo "# metadata left"; return 1; }
  [ -z "$(ls -A "$T"/state/vms/*/journal/)" ] || { echo "# journal left"; return 1; }
  [ -z "$(ls -A "$T"/state/vms/*/lsm/ 2>/dev/null)" ] || { echo "# lsm files left: $(ls -A "$T"/state/vms/*/lsm/)"; return 1; }
  all_read
}

# The plan's 9 steps: create-dest x2, create-top x2, transaction, mirror x2,
# save-metadata, start-copy.
check "the plan mirrors both disks" [ "$("$SNAPMIG" create "${SM[@]}" \
  --mirror-domain "$B" --name r0 --dry-run | grep -c '^qmp drive-mirror')" = 2 ]
for n in 1 2 3 4 5 6 7 8 9; do
  guest_write vm drive0 "0x2$n" "$((n + 2))M" 512K >/dev/null &&
    EXPECT+=("drive0 0x2$n $((n + 2))M 512K")
  SNAPMIG_TEST_CRASH_AFTER_STEP=$n "$SNAPMIG" create "${SM[@]}" \
    --mirror-domain "$B" --name "r$n" >/dev/null 2>&1
  rc=$?
  check "crash after step $n: snapmig died (137)" [ $rc -eq 137 ]
  check "crash after step $n: a journal is left" \
    [ -n "$(ls -A "$T"/state/vms/*/journal/)" ]
  # The guest keeps writing, through whatever chain it runs on now.
  guest_write vm drive1 "0x3$n" "${n}M" 512K >/dev/null &&
    EXPECT+=("drive1 0x3$n ${n}M 512K")
  out=$("$SNAPMIG" recover "${SM[@]}" 2>&1)
  rc=$?
  echo "$out" | sed 's/^/# /'
  check "crash after step $n: recover succeeds" [ $rc -eq 0 ]
  check "crash after step $n: recover says it rolled back" grep -q 'rolled back' <<<"$out"
  check "crash after step $n: VM, files and metadata are consistent" consistent
done

# A create killed while it rewrote its record of created files leaves the
# writer's temporary file (.OPID.created.XXXXXX) beside the record: recover
# removes it with the record.
SNAPMIG_TEST_CRASH_AFTER_STEP=2 "$SNAPMIG" create "${SM[@]}" \
  --mirror-domain "$B" --name tmp >/dev/null 2>&1
check "crash after step 2 (temp file case): snapmig died" [ $? -eq 137 ]
rec=$(ls "$T"/state/vms/*/journal/*.created)
check "the record of created files is there" [ -f "$rec" ]
: >"$(dirname "$rec")/.$(basename "$rec").Zq3x9A"
out=$("$SNAPMIG" recover "${SM[@]}" 2>&1)
check "recover after the writer's crash succeeds" [ $? -eq 0 ]
check "no temporary file of the record is left" \
  [ -z "$(ls -A "$T"/state/vms/*/journal/)" ]
check "temp file case: VM, files and metadata are consistent" consistent

out=$("$SNAPMIG" recover "${SM[@]}" 2>&1)
check "recover with nothing pending says so" grep -q 'nothing to recover' <<<"$out"

# After all that, a migration still works end to end.
"$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name final >/dev/null 2>&1 &&
  "$SNAPMIG" pivot "${SM[@]}" final >/dev/null 2>&1
check "create + pivot work after the recoveries" \
  [ "$(top_file drive0)" = "$B/top.final.qcow2" ]
check "every write reads back after the move" all_read

# A crash after the transaction, then QEMU dies too: recover works on the
# files alone, folding the new tops back with qemu-img so that the writes
# made since the snapshot are kept in the original images.  (The VM runs in
# B now: the move goes to C.)
C=$T/C
mkdir -p "$C"
SNAPMIG_TEST_CRASH_AFTER_STEP=5 "$SNAPMIG" create "${SM[@]}" \
  --mirror-domain "$C" --name dead >/dev/null 2>&1
check "crash after the transaction: snapmig died" [ $? -eq 137 ]
check "the guest writes into the new top" guest_write vm drive0 0x55 9M 1M
guest_write vm drive1 0x56 9M 1M >/dev/null
qmp vm quit >/dev/null
wait "$VM_PID" 2>/dev/null
out=$("$SNAPMIG" recover "${SM[@]}" 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "recover with QEMU gone succeeds" [ $rc -eq 0 ]
check "and warns that it works on the files only" grep -q 'files only' <<<"$out"
check "no file snapmig created is left" \
  [ -z "$(ls -A "$C")" -a ! -e "$B/top.final.dead.qcow2" -a ! -e "$B/d1.final.dead.qcow2" ]
check "no journal is left" [ -z "$(ls -A "$T"/state/vms/*/journal/)" ]
reads () { ! qemu-io -r -f qcow2 -c "read -P $2 9M 1M" "$1" 2>&1 | grep -q 'verification failed'; }
check "drive0's original top holds the write made after the snapshot" \
  reads "$B/top.final.qcow2" 0x55
check "drive1's original top holds the write made after the snapshot" \
  reads "$B/d1.final.qcow2" 0x56

done_testing
