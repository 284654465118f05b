#!/usr/bin/env bash
# create --bandwidth limits the background copy of the lower layers too, not
# only QEMU's mirror: the copy worker records the limit it runs under (in its
# status, next to the layers), each mirror job runs at that speed, and the
# move still completes with every byte in place.  (No timing assertion: the
# limiter's schedule is unit-tested, tests/unit/test-layer-copy.)
. "$(dirname "$0")/lib.sh"

lsm_setup

make_chain "$A" 16M 4M
qemu-io -f qcow2 -c "write -P 0x22 4M 1M" "$A/top.qcow2" >/dev/null
start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" || exit 1
guest_write vm drive0 0x33 8M 1M >/dev/null

"$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name bw --bandwidth 64M \
  --wait >"$T/create.out" 2>&1
rc=$?
sed 's/^/# /' "$T/create.out"
check "create --bandwidth 64M --wait" [ $rc -eq 0 ]
status=$(find "$T/state" -name 'bw.copy.json' | head -n 1)
check "the copy worker left its status" [ -n "$status" ]
check "the copy worker ran at 64 MiB/s" \
  [ "$(jq -r .bandwidth "$status" 2>/dev/null)" = 67108864 ]
check "the copy is done" [ "$(jq -r .state "$status" 2>/dev/null)" = done ]
check "the mirror runs at 64 MiB/s" \
  [ "$(qmp vm query-block-jobs | jq -r '.[0].speed')" = 67108864 ]

"$SNAPMIG" pivot "${SM[@]}" bw >"$T/pivot.out" 2>&1
rc=$?
sed 's/^/# /' "$T/pivot.out"
check "pivot" [ $rc -eq 0 ]
check "the disk runs in B" [ "$(top_file drive0)" = "$B/top.bw.qcow2" ]
all=0
for r in "0x11 0" "0x22 4M" "0x33 8M"; do
  read -r p o <<<"$r"
  guest_read vm drive0 "$p" "$o" 1M >/dev/null || { echo "# $r"; all=1; }
done
check "every write reads back in the VM" [ $all -eq 0 ]
check "B's chain reads as A's offline" \
  qemu-img compare -U -q -f qcow2 -F qcow2 "$A/top.qcow2" "$B/top.bw.qcow2"

done_testing
