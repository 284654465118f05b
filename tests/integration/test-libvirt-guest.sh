#!/usr/bin/env bash
# The libvirt backend (lib/vm-libvirt.c, through tests/tools/
# vm-access) moves the disks of a real Linux guest that libvirt runs
# (the test guest of tests/harness/guest.sh, booted by the private libvirt
# of libvirt.sh) from A to B, oVirt's way, while the guest writes: records
# before the snapshot, between the snapshot and the pivot (and a write load
# on vdb across the pivot), and after it.  Every record reads back in the
# guest and offline from B's chains; libvirt's live and persistent XML name
# B's files; the domain's log has no "tainted" line.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt.sh"
. "$SM_TOP/tests/harness/guest.sh"

VA=$SM_TOP/tests/tools/vm-access
"$VA" x y view 2>/dev/null
[ $? -ne 77 ] || _lv_missing "snapmig was built without libvirt (libvirt-dev)"
guest_build || { not_ok "scripts/build-guest builds the guest"; done_testing; }
libvirt_setup
A=$T/A B=$T/B
mkdir -p "$A" "$B"
va () { "$VA" "$LV_URI" vm "$@"; }

# vda: top.qcow2 over base.qcow2 (64M, records 0..63 of generation 1);
# vdb: d1.raw, 32M.
guest_records_image "$A/base.qcow2" 64M 64 1 || exit 1
qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$A/top.qcow2" || exit 1
qemu-img create -q -f raw "$A/d1.raw" 32M || exit 1
lv_own "$A" "$B"
if ! lv_start_guest vm "$(lv_disk vda "$A/top.qcow2" qcow2)" "$(lv_disk vdb "$A/d1.raw" raw)"; then
  not_ok "libvirt boots the test guest"
  done_testing
fi
ok "libvirt boots the test guest and its agent answers"

check "before: the guest writes vda's records 64..79" guest_do vm "write vda 64 16 2"
check "before: and vdb's 0..15" guest_do vm "write vdb 0 16 2"
check "pre-create B's chains" lv_precreate_b "$A" "$B"
check "the new tops in A" lv_new_tops "$A"
check "snapshot onto them" va snapshot "vda=$A/s1.qcow2" "vdb=$A/d1.s1.qcow2"
check "between: the guest writes vda's records 80..95" guest_do vm "write vda 80 16 3"
check "between: a write load on vdb (8 MiB at 8 MiB, 16 MiB/s)" \
  guest_do vm "writeload vdb 16 8 8 4"
load_md5=$REPLY
check "block copy of each new top into B's" \
  va mirror vda "$B/s1.qcow2" qcow2 vda -- mirror vdb "$B/d1.s1.qcow2" qcow2 vdb
check "between: vdb's records 16..31 while the mirrors run" guest_do vm "write vdb 16 16 3"
check "copy A's read-only layers into B's meanwhile" lv_copy_lower "$A" "$B"
check "the load wrote through the mirror" guest_wait_load vm vdb 16
check "wait ready, pause, pivot both disks, resume" \
  va wait-ready vda -- wait-ready vdb -- pause -- complete vda -- \
     complete vdb -- resume -- wait-gone vda -- wait-gone vdb
check "after: the guest writes vda's records 96..111" guest_do vm "write vda 96 16 4"
check "after: the load stops" guest_do vm "stop vdb"
load_stop=$REPLY
check "the load's region reads back in the guest" guest_do vm "loadcheck vdb"
check "vda's records 0..63 read back in the guest" guest_do vm "verify vda 0 64 1"
check "vda's records 64..79" guest_do vm "verify vda 64 16 2"
check "vda's records 80..95" guest_do vm "verify vda 80 16 3"
check "vda's records 96..111" guest_do vm "verify vda 96 16 4"
check "vdb's records 0..15" guest_do vm "verify vdb 0 16 2"
check "vdb's records 16..31" guest_do vm "verify vdb 16 16 3"
check "domblklist: vda on B/s1.qcow2" [ "$(lv_blk vm vda)" = "$B/s1.qcow2" ]
check "domblklist: vdb on B/d1.s1.qcow2" [ "$(lv_blk vm vdb)" = "$B/d1.s1.qcow2" ]
live=$(lv_xml_sources vm)
check "live XML: every layer is B's" \
  [ "$(echo $live)" = "$B/s1.qcow2 $B/top.qcow2 $B/base.qcow2 $B/d1.s1.qcow2 $B/d1.raw" ]
inactive=$(lv_xml_sources vm --inactive)
check "persistent XML: the tops are B's" \
  [ "$(echo $inactive | cut -d' ' -f1-2)" = "$B/s1.qcow2 $B/d1.s1.qcow2" ]
check "the domain's log has no 'tainted' line" \
  not grep -q tainted "$(lv_domain_log vm)"

lv_virsh destroy vm >/dev/null
check "offline: B's vda chain as raw" guest_image_raw "$B/s1.qcow2" qcow2 "$T/vda.raw"
check "offline: vda's records 0..63 in B" guest_records_check "$T/vda.raw" 0 64 1
check "offline: vda's records 64..79 in B" guest_records_check "$T/vda.raw" 64 16 2
check "offline: vda's records 80..95 in B" guest_records_check "$T/vda.raw" 80 16 3
check "offline: vda's records 96..111 in B" guest_records_check "$T/vda.raw" 96 16 4
check "offline: B's vdb chain as raw" guest_image_raw "$B/d1.s1.qcow2" qcow2 "$T/vdb.raw"
check "offline: vdb's records 0..15 in B" guest_records_check "$T/vdb.raw" 0 16 2
check "offline: vdb's records 16..31 in B" guest_records_check "$T/vdb.raw" 16 16 3
check "offline: the load's region in B" guest_load_check "$T/vdb.raw" "$load_stop" "$load_md5"

done_testing
