#!/usr/bin/env bash
# lib/vm-qmp.c, the QMP backend of lib/vm-access.h, through the same flows
# as the libvirt backend (tests/tools/vm-access, test-libvirt-access.sh) on
# a guest-less QEMU with drive0 on top.qcow2 over base.qcow2 and drive1 on
# d1.raw in A: the move to B (snapshot onto pre-created tops, mirrors,
# lower layers copied meanwhile, pause, pivot, resume) with guest writes
# before, between and after; an active commit folding a new top back; a
# block stream.  The same interface, the same outcomes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt.sh"      # the 2-disk move's helpers only

lsm_setup
VA=$SM_TOP/tests/tools/vm-access
start_2disk_vm 0x33 || exit 1
va () { "$VA" "qmp:$T/vm.qmp" - "$@"; }
EXPECT=()

va view >"$T/view0.txt"
check "the view: drive0's top is top.qcow2, qcow2" \
  grep -qx "layer drive0 0 qcow2 $A/top.qcow2" "$T/view0.txt"
check "the view: over base.qcow2" grep -qx "layer drive0 1 qcow2 $A/base.qcow2" "$T/view0.txt"
check "the view: drive1 is d1.raw, raw" grep -qx "layer drive1 0 raw $A/d1.raw" "$T/view0.txt"
check "the run state is running" [ "$(va state)" = running ]
check "before: guest writes" gw drive0 0x21 4M 1M
check "pre-create B's chains" lv_precreate_b "$A" "$B"
check "the new tops in A" lv_new_tops "$A"
check "one snapshot onto them" va snapshot "drive0=$A/s1.qcow2" "drive1=$A/d1.s1.qcow2"
check "drive0 runs on s1.qcow2" [ "$(top_file drive0)" = "$A/s1.qcow2" ]
check "between: guest writes" gw drive1 0x22 4M 1M
va mirror drive0 "$B/s1.qcow2" qcow2 m0 -- mirror drive1 "$B/d1.s1.qcow2" qcow2 m1 \
   -- wait-event 20000 >"$T/event.txt"
check "mirrors started; a BLOCK_JOB_READY arrives as a 'ready' event" \
  grep -qx "event m[01] ready" "$T/event.txt"
check "between: guest writes while they run" gw drive0 0x23 5M 1M
check "copy A's read-only layers into B's meanwhile" lv_copy_lower "$A" "$B"
check "wait ready, pause, pivot both, resume" \
  va wait-ready m0 -- wait-ready m1 -- pause -- complete m0 -- complete m1 \
     -- resume -- wait-gone m0 -- wait-gone m1
check "the run state is running again" [ "$(va state)" = running ]
check "drive0's chain is B's, 3 layers" chain_in_dir "$B" drive0 "" 3
check "drive1's chain is B's, 2 layers" chain_in_dir "$B" drive1 "" 2
check "after: guest writes" gw drive1 0x24 5M 1M
check "every write reads back in the VM" all_read

qemu-img create -q -f qcow2 -F qcow2 -b s1.qcow2 "$B/s2.qcow2"
check "a new top s2.qcow2 in B" va snapshot "drive0=$B/s2.qcow2"
check "a write into s2" gw drive0 0x25 6M 1M
check "an active commit folds s2 back into s1, pivot" \
  va commit drive0 - c0 -- wait-ready c0 -- complete c0 -- wait-gone c0
check "drive0 runs on s1.qcow2 again" [ "$(top_file drive0)" = "$B/s1.qcow2" ]
check "a block stream merges top.qcow2 into s1.qcow2" \
  va stream drive0 "$B/base.qcow2" p0 -- wait-gone p0
check "drive0's chain: s1 over base" \
  [ "$(chain_files drive0 | tr '\n' ' ')" = "$B/s1.qcow2 $B/base.qcow2 " ]
check "every write still reads back" all_read
out=$(va commit nosuch - c1 2>&1)
check "a disk the VM lacks: named, with the VM's disks" \
  grep -q "no disk nosuch (its disks: drive0, drive1)" <<<"$out"

done_testing
