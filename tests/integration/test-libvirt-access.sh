#!/usr/bin/env bash
# lib/vm-libvirt.c, the libvirt backend of lib/vm-access.h, driven by hand
# (tests/tools/vm-access) through oVirt's live storage migration
# against the test's private libvirt (libvirt.sh): a domain on a 2-layer
# qcow2 chain (vda) and a raw disk (vdb) in A.
#   move:  destination chains pre-created in B (relative backing names),
#          one snapshot onto pre-created tops in A, block copy of each new
#          top into B's, the lower layers copied with qemu-img meanwhile,
#          wait ready, pivot: virsh domblklist, dumpxml and dumpxml
#          --inactive name B's files, the data reads back from B, and the
#          domain's log has no "tainted" line.
#   abort: snapshot, block copy, cancel, then an active block commit folds
#          the new top back: the disk is on its old top again.
#   pull:  a block pull merges the chain into the top.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"
VA=$SM_TOP/tests/tools/vm-access
"$VA" x y view 2>/dev/null
[ $? -ne 77 ] || _lv_missing "snapmig was built without libvirt (libvirt-dev)"

libvirt_setup
A=$T/A B=$T/B
mkdir -p "$A" "$B"

# va OP ARGS...: the backend on domain vm.
va () { "$VA" "$LV_URI" vm "$@"; }

# fresh_domain: domain "vm" on A/top.qcow2 (over base.qcow2: 0x11 in its
# first 2M, top 0x22 at 2M) and A/d1.raw (0x33 in its first 1M).
fresh_domain () {
  lv_virsh destroy vm >/dev/null 2>&1
  lv_virsh undefine vm >/dev/null 2>&1
  rm -rf "$A" "$B"; mkdir -p "$A" "$B"
  make_chain "$A" 32M 2M
  qemu-io -f qcow2 -c "write -P 0x22 2M 1M" "$A/top.qcow2" >/dev/null
  qemu-img create -q -f raw "$A/d1.raw" 16M
  qemu-io -f raw -c "write -P 0x33 0 1M" "$A/d1.raw" >/dev/null
  lv_own "$A" "$B"
  lv_start vm "$(lv_domain_xml vm \
    "$(lv_disk vda "$A/top.qcow2" qcow2 "$A/base.qcow2" qcow2)" \
    "$(lv_disk vdb "$A/d1.raw" raw)")"
}

# snapshot_tops: the new tops in A (lv_new_tops), taken; s1 holds 0x44
# at 4M (no guest writes here: the mirror has data to copy), written
# before its backing name (QEMU holds top.qcow2's lock).
snapshot_tops () {
  rm -f "$A/s1.qcow2"
  qemu-img create -q -f qcow2 "$A/s1.qcow2" 32M &&
    qemu-io -f qcow2 -c "write -P 0x44 4M 1M" "$A/s1.qcow2" >/dev/null &&
    qemu-img rebase -u -F qcow2 -b top.qcow2 "$A/s1.qcow2" &&
    qemu-img create -q -f qcow2 -F raw -b d1.raw "$A/d1.s1.qcow2" 16M &&
    lv_own "$A" &&
    va snapshot "vda=$A/s1.qcow2" "vdb=$A/d1.s1.qcow2"
}
blk () { lv_blk vm "$1"; }
xml_sources () { lv_xml_sources vm "$@"; }

# ---- move ------------------------------------------------------------
fresh_domain
va view >"$T/view0.txt"
check "the view: vda's top is top.qcow2, qcow2" \
  grep -qx "layer vda 0 qcow2 $A/top.qcow2" "$T/view0.txt"
check "the view: over base.qcow2, qcow2" \
  grep -qx "layer vda 1 qcow2 $A/base.qcow2" "$T/view0.txt"
check "the view: vdb is d1.raw, raw" grep -qx "layer vdb 0 raw $A/d1.raw" "$T/view0.txt"
check "the view: no job" not grep -q '^job' "$T/view0.txt"
check "the run state is running" [ "$(va state)" = running ]

check "pre-create B's chains" lv_precreate_b "$A" "$B"
check "snapshot onto the pre-created tops in A" snapshot_tops
check "after the snapshot vda runs on s1.qcow2" [ "$(blk vda)" = "$A/s1.qcow2" ]
check "after the snapshot vdb runs on d1.s1.qcow2" [ "$(blk vdb)" = "$A/d1.s1.qcow2" ]
check "block copy of each new top into B's (job ids move-vda, move-vdb)" \
  va mirror vda "$B/s1.qcow2" qcow2 move-vda -- \
     mirror vdb "$B/d1.s1.qcow2" qcow2 move-vdb
# libvirt opens B's lower layers only at the pivot: they are copied now.
# A job outlives the connection that started it; from here on it is named
# by its disk.
check "copy A's read-only layers into B's meanwhile" lv_copy_lower "$A" "$B"
va view >"$T/view1.txt"
check "the view shows vda's mirror" grep -q '^job vda mirror ' "$T/view1.txt"
check "wait ready, pause, pivot both disks, resume" \
  va wait-ready vda -- wait-ready vdb -- pause -- complete vda -- \
     complete vdb -- resume -- wait-gone vda -- wait-gone vdb
check "the run state is running again" [ "$(va state)" = running ]
check "domblklist: vda on B/s1.qcow2" [ "$(blk vda)" = "$B/s1.qcow2" ]
check "domblklist: vdb on B/d1.s1.qcow2" [ "$(blk vdb)" = "$B/d1.s1.qcow2" ]
live=$(xml_sources)
check "live XML: every layer is B's (s1, top, base, d1.s1, d1.raw)" \
  [ "$(echo $live)" = "$B/s1.qcow2 $B/top.qcow2 $B/base.qcow2 $B/d1.s1.qcow2 $B/d1.raw" ]
# The persistent XML gets the new tops, without <backingStore>: libvirt
# reads the chain from the images' headers at the next start.
inactive=$(xml_sources --inactive)
check "persistent XML: the tops are B's" \
  [ "$(echo $inactive)" = "$B/s1.qcow2 $B/d1.s1.qcow2" ]
check "the domain's log has no 'tainted' line" \
  not grep -q tainted "$(lv_domain_log vm)"
check "the view: no job left" not eval 'va view | grep -q "^job"'

lv_virsh destroy vm >/dev/null
check "offline, B's chain holds base's data" offline_read "$B/s1.qcow2" 0x11 0
check "offline, B's chain holds top's data" offline_read "$B/s1.qcow2" 0x22 2M
check "offline, B's d1 chain holds d1's data" offline_read "$B/d1.s1.qcow2" 0x33 0
check "offline, the mirror copied s1's own data into B" offline_read "$B/s1.qcow2" 0x44 4M
check "the domain starts again" eval 'lv_virsh start vm >/dev/null'
live=$(xml_sources)
check "restarted, it runs on B's chains only" \
  [ "$(echo $live)" = "$B/s1.qcow2 $B/top.qcow2 $B/base.qcow2 $B/d1.s1.qcow2 $B/d1.raw" ]

# ---- abort -------------------------------------------------------------
fresh_domain
lv_precreate_b "$A" "$B"
check "abort: snapshot" snapshot_tops
va mirror vda "$B/s1.qcow2" qcow2 move-vda -- wait-event 20000 >"$T/event.txt"
check "BLOCK_JOB_2 READY arrives as job move-vda's 'ready' event" \
  grep -qx "event move-vda ready" "$T/event.txt"
check "abort: cancel the block copy, active commit back, pivot" \
  va cancel vda -- wait-gone vda -- \
     commit vda - undo-vda -- wait-ready undo-vda -- complete undo-vda -- \
     wait-gone undo-vda
check "abort: vda is on its old top again" [ "$(blk vda)" = "$A/top.qcow2" ]
check "abort: vda's chain is A's (top, base)" \
  [ "$(echo $(xml_sources | head -n 2))" = "$A/top.qcow2 $A/base.qcow2" ]
check "abort: the persistent XML names A's top" \
  [ "$(xml_sources --inactive | head -n 1)" = "$A/top.qcow2" ]
check "abort: commit vdb's snapshot back (base given)" \
  va commit vdb "$A/d1.raw" undo-vdb -- wait-ready undo-vdb -- \
     complete undo-vdb -- wait-gone undo-vdb
check "abort: vdb is on d1.raw again" [ "$(blk vdb)" = "$A/d1.raw" ]
check "abort: no 'tainted' line" not grep -q tainted "$(lv_domain_log vm)"

# ---- pull --------------------------------------------------------------
check "pull: snapshot" snapshot_tops
check "pull: block pull of vda down to base.qcow2 (relative)" \
  va stream vda "$A/base.qcow2" pull-vda -- wait-gone pull-vda
check "pull: vda's chain is s1 over base" \
  [ "$(echo $(xml_sources | head -n 2))" = "$A/s1.qcow2 $A/base.qcow2" ]
check "pull: s1.qcow2 names base.qcow2 relatively" \
  eval '[ "$(qemu-img info -U --output=json "$A/s1.qcow2" | jq -r ".\"backing-filename\"")" = base.qcow2 ]'
check "pull: a full pull of vdb" va stream vdb - pull-vdb -- wait-gone pull-vdb
check "pull: vdb has one layer" [ "$(echo $(xml_sources | tail -n +3))" = "$A/d1.s1.qcow2" ]
lv_virsh destroy vm >/dev/null
check "pull: s1.qcow2 holds top's data" offline_read "$A/s1.qcow2" 0x22 2M
check "pull: d1.s1.qcow2 holds d1's data alone" \
  eval 'qemu-img info --output=json "$A/d1.s1.qcow2" | jq -e ".\"backing-filename\" == null" >/dev/null'
check "pull: d1.s1.qcow2's data" offline_read "$A/d1.s1.qcow2" 0x33 0

# ---- errors --------------------------------------------------------------
out=$(va view 2>&1)
check "a domain that is not running: the message says to start it" \
  grep -q "is not running (virsh -c .* start vm)" <<<"$out"
out=$("$VA" "$LV_URI" nosuch view 2>&1)
check "no such domain: named, with the URI" grep -q "has no domain nosuch" <<<"$out"

# A daemon that accepts the connection and never answers (stopped): the
# open gives up within the access's timeout, naming the URI.
kill -STOP "$LV_PID"
out=$(VM_ACCESS_TIMEOUT_MS=2000 va view 2>&1)
rc=$?
kill -CONT "$LV_PID"
echo "# $out"
check "a stopped daemon: the open fails" [ $rc -eq 1 ]
check "a stopped daemon: it did not answer within the timeout, named" \
  grep -qF "libvirt at $LV_URI did not answer within 2 s" <<<"$out"
check "the daemon answers again" eval 'lv_virsh list --all --name | grep -qx vm'

done_testing
