#!/usr/bin/env bash
# Failures of snapmig create/pivot against a real QEMU leave everything as it
# was: each gives a clear error naming the object, the VM still runs on its
# original chain (query-block), no file is left in the destination nor in the
# source domain, and no metadata is recorded.
. "$(dirname "$0")/lib.sh"

lsm_setup
start_2disk_vm || exit 1
guest_write vm drive0 0x22 2M 1M >/dev/null
guest_write vm drive1 0x33 0 1M >/dev/null

A_FILES=$(ls -A "$A" | sort)
# unchanged: the VM on its original chain, no job, A and B as they were, no
# metadata, no journal left.
unchanged () {
  local b_expect=${1:-}
  [ "$(top_file drive0)" = "$A/top.qcow2" ] || { echo "# drive0 on $(top_file drive0)"; return 1; }
  [ "$(top_file drive1)" = "$A/d1.raw" ] || { echo "# drive1 on $(top_file drive1)"; return 1; }
  [ "$(qmp vm query-block-jobs | jq length)" = 0 ] || { echo "# a job runs"; return 1; }
  [ "$(ls -A "$A" | sort)" = "$A_FILES" ] || { echo "# A: $(ls -A "$A")"; return 1; }
  [ "$(ls -A "$B")" = "$b_expect" ] || { echo "# B: $(ls -A "$B")"; return 1; }
  [ -z "$(ls "$T"/state/vms/*/snapshots/ 2>/dev/null)" ] || { echo "# metadata left"; return 1; }
  [ -z "$(ls "$T"/state/vms/*/journal/ 2>/dev/null)" ] || { echo "# journal left"; return 1; }
  guest_read vm drive0 0x22 2M 1M >/dev/null && guest_read vm drive0 0x11 0 2M >/dev/null
}
# fails DESCRIPTION PATTERN ARGS...: create fails with a message matching
# PATTERN and changes nothing.
fails () {
  local d=$1 pat=$2 out rc; shift 2
  out=$("$SNAPMIG" create "${SM[@]}" "$@" 2>&1); rc=$?
  echo "$out" | sed 's/^/# /'
  check "$d: fails" [ $rc -ne 0 ]
  check "$d: says why" grep -qE "$pat" <<<"$out"
  check "$d: nothing changed" unchanged
}

touch "$T/plainfile"
fails "mirror domain is a regular file" "plainfile" \
  --mirror-domain "$T/plainfile" --name f1
fails "mirror domain does not exist" "nope" \
  --mirror-domain "$T/nope" --name f2
fails "unknown disk" "no disk nosuch" \
  --mirror-domain "$B" --diskspec nosuch --name f3
fails "disk named twice" "drive0 is named twice" \
  --mirror-domain "$B" --diskspec drive0 --diskspec drive0 --name f4

touch "$B/top.f5.qcow2"
A_B=$(ls -A "$B")
out=$("$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --diskspec drive0 --name f5 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "existing target without --reuse-external: fails" [ $rc -ne 0 ]
check "existing target: the message names it and the option" \
  grep -q "$B/top.f5.qcow2.*reuse-external" <<<"$out"
check "existing target: nothing changed" unchanged "$A_B"
rm -f "$B/top.f5.qcow2"

# A reused destination top of the wrong size.
qemu-img create -q -f qcow2 -F qcow2 -b top.qcow2 "$A/top.f6.qcow2"
A_FILES=$(ls -A "$A" | sort)
qemu-img create -q -f qcow2 "$B/base.qcow2" 32M
qemu-img create -q -f qcow2 -u -F qcow2 -b base.qcow2 "$B/top.qcow2" 32M
qemu-img create -q -f qcow2 -u -F qcow2 -b top.qcow2 "$B/top.f6.qcow2" 16M
B_FILES=$(ls -A "$B")
out=$("$SNAPMIG" create "${SM[@]}" --reuse-external \
        --diskspec "drive0,file=$A/top.f6.qcow2,mirror=$B/top.f6.qcow2" --name f6 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "reused file of the wrong size: fails" [ $rc -ne 0 ]
check "reused file of the wrong size: the message names it" \
  grep -q "top.f6.qcow2" <<<"$out"
check "reused file of the wrong size: nothing changed" unchanged "$B_FILES"
rm -f "$B"/* "$A/top.f6.qcow2"
A_FILES=$(ls -A "$A" | sort)

# --atomic of two disks without `transaction` is refused.
out=$(SNAPMIG_QMP_DISABLE=transaction "$SNAPMIG" create "${SM[@]}" --atomic \
        --diskspec drive0 --diskspec drive1 --mirror-domain "$B" --name f7 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "mirrors of two disks without transaction: fails" [ $rc -ne 0 ]
check "without transaction: says so" grep -q "transaction" <<<"$out"
check "without transaction: nothing changed" unchanged

# QEMU killed in the middle of create (after the transaction, step 5 of
# create-dest, create-top, create-dest, create-top, transaction): the
# executor finds QEMU gone, folds the new tops back offline and removes
# every file it created.
guest_write vm drive0 0x44 3M 1M >/dev/null
out=$(SNAPMIG_TEST_KILL_AFTER_STEP="5:$VM_PID" "$SNAPMIG" create "${SM[@]}" \
        --mirror-domain "$B" --name f8 2>&1)
rc=$?
wait "$VM_PID" 2>/dev/null
echo "$out" | sed 's/^/# /'
check "QEMU killed during create: fails" [ $rc -ne 0 ]
check "QEMU killed during create: says QEMU went away" \
  grep -q "closed the monitor connection" <<<"$out"
check "QEMU killed during create: no file left in B" [ -z "$(ls -A "$B")" ]
check "QEMU killed during create: A holds only its original files" \
  [ "$(ls -A "$A" | sort)" = "$A_FILES" ]
check "QEMU killed during create: no metadata, no journal" \
  [ -z "$(ls -A "$T"/state/vms/*/snapshots/)$(ls -A "$T"/state/vms/*/journal/)" ]
ok_data=0
for r in "0x11 0 2M" "0x22 2M 1M" "0x44 3M 1M"; do
  read -r p o l <<<"$r"
  qemu-io -r -f qcow2 -c "read -P $p $o $l" "$A/top.qcow2" | grep -q 'verification failed' && ok_data=1
done
check "QEMU killed during create: the original chain holds every write" [ $ok_data -eq 0 ]

done_testing
