#!/usr/bin/env bash
# Live storage migration of a running 3-disk VM from domain A to domain B
# (snapmig create --mirror-domain, then pivot), against a real QEMU.
#   drive0: base.qcow2 <- snap1.qcow2 (a chain), drive1: raw, drive2: qcow2.
# The guest writes distinct patterns before create, between create and pivot
# and after pivot; afterwards every disk's whole active chain is in B, A's
# and B's views were identical at pivot time, and every pattern reads back,
# in the VM and offline on B's files.
. "$(dirname "$0")/lib.sh"

lsm_setup
make_chain "$A" 64M 2M snap1.qcow2
qemu-io -f qcow2 -c 'write -P 0x12 2M 2M' "$A/snap1.qcow2" >/dev/null
qemu-img create -q -f raw "$A/d1.raw" 32M
qemu-io -f raw -c 'write -P 0x21 0 2M' "$A/d1.raw" >/dev/null
qemu-img create -q -f qcow2 "$A/d2.qcow2" 16M
qemu-io -f qcow2 -c 'write -P 0x31 0 1M' "$A/d2.qcow2" >/dev/null

start_vm vm -drive "$(drive_opt drive0 "$A/snap1.qcow2" qcow2)" \
            -drive "$(drive_opt drive1 "$A/d1.raw" raw)" \
            -drive "$(drive_opt drive2 "$A/d2.qcow2" qcow2)" || exit 1

# "DRIVE PATTERN OFFSET LENGTH" of every write the guest must see at the end.
EXPECT=("drive0 0x11 0 2M" "drive0 0x12 2M 2M" "drive1 0x21 0 2M"
        "drive2 0x31 0 1M")

check "guest writes to drive0 before create" gw drive0 0x13 4M 1M
check "guest writes to drive1 before create" gw drive1 0x22 2M 1M
check "guest writes to drive2 before create" gw drive2 0x32 1M 1M

out=$("$SNAPMIG" create "${SM[@]}" --mirror --mirror-domain "$B" --name move1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "create --mirror-domain succeeds" [ $rc -eq 0 ]
check "drive0 now runs on its new top in A" \
  [ "$(top_file drive0)" = "$A/snap1.move1.qcow2" ]
check "drive1 and drive2 run on their new tops in A" \
  [ "$(top_file drive1)" = "$A/d1.move1.qcow2" -a \
    "$(top_file drive2)" = "$A/d2.move1.qcow2" ]
check "B holds the pre-created chain with relative backing names" \
  [ "$(qemu-img info -U --output=json "$B/snap1.move1.qcow2" | jq -r '."backing-filename"')" = snap1.qcow2 \
    -a "$(qemu-img info -U --output=json "$B/snap1.qcow2" | jq -r '."backing-filename"')" = base.qcow2 ]

check "guest writes to drive0 between create and pivot" gw drive0 0x14 5M 1M
check "guest writes to drive0 again between create and pivot" \
  gw drive0 0x15 7M 512K
check "guest writes to drive1 between create and pivot" gw drive1 0x23 3M 1M
check "guest writes to drive2 between create and pivot" gw drive2 0x33 2M 1M

out=$("$SNAPMIG" status "${SM[@]}" --json move1 2>&1)
check "status reports three mirrors" \
  [ "$(echo "$out" | jq '.disks | map(select(.job != null)) | length')" = 3 ]

out=$("$SNAPMIG" pivot "${SM[@]}" move1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "pivot succeeds" [ $rc -eq 0 ]
check "pivot reports the guest pause in ms" \
  grep -qE 'guest paused [0-9]+\.[0-9] ms' <<<"$out"

# A's files no longer change once the VM runs on B: compare the views now.
same=0
for pair in "snap1.move1.qcow2 qcow2" "d1.move1.qcow2 qcow2" "d2.move1.qcow2 qcow2"; do
  read -r f fmt <<<"$pair"
  qemu-img compare -U -f "$fmt" -F "$fmt" "$A/$f" "$B/$f" >/dev/null || {
    echo "# $f differs"; same=1; }
done
check "A's and B's views are identical at pivot time" [ $same -eq 0 ]

in_b=0
for d in drive0 drive1 drive2; do
  while read -r f; do
    case "$f" in "$B"/*) ;; *) echo "# $d still uses $f"; in_b=1 ;; esac
  done < <(chain_files "$d")
done
check "every disk's whole active chain is in B" [ $in_b -eq 0 ]
check "drive0's chain in B has three layers" [ "$(chain_files drive0 | wc -l)" = 3 ]
check "the snapshot metadata is gone" \
  [ -z "$(ls "$T"/state/vms/*/snapshots/ 2>/dev/null)" ]
check "the source files are left in A" [ -f "$A/snap1.qcow2" -a -f "$A/snap1.move1.qcow2" ]
check "no block job is left" [ "$(qmp vm query-block-jobs | jq length)" = 0 ]

check "guest writes to drive0 after pivot" gw drive0 0x16 6M 1M
check "guest writes to drive1 after pivot" gw drive1 0x24 4M 1M
check "guest writes to drive2 after pivot" gw drive2 0x34 3M 1M
check "every pattern reads back in the VM" all_read

qmp vm quit >/dev/null
wait "$VM_PID" 2>/dev/null
offline=0
for e in "${EXPECT[@]}"; do
  read -r d p o l <<<"$e"
  case $d in
    drive0) img=$B/snap1.move1.qcow2 ;; drive1) img=$B/d1.move1.qcow2 ;;
    drive2) img=$B/d2.move1.qcow2 ;;
  esac
  sm_out=$(qemu-io -r -f qcow2 -c "read -P $p $o $l" "$img" 2>&1)
  if grep -qiE 'fail|error' <<<"$sm_out"; then echo "# offline $e"; offline=1; fi
done
check "every pattern reads back offline on B's files" [ $offline -eq 0 ]
check "B's chains check out (qemu-img check)" \
  qemu-img check -q "$B/snap1.move1.qcow2"

done_testing
