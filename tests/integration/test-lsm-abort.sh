#!/usr/bin/env bash
# snapmig abort of a live storage migration, against a real QEMU: after the
# mirror is READY, and before (a mirror limited to 1 byte/s with MiBs to
# copy cannot become READY).  Either way the VM stays on the source chain
# with every guest write, the destination files snapmig created are gone and
# the snapshot metadata with them.
. "$(dirname "$0")/lib.sh"

lsm_setup
make_chain "$A" 64M 4M
start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" || exit 1

EXPECT=("drive0 0x11 0 4M")
b_files () { ls -A "$B"; }

# --- abort after READY
gw drive0 0x21 4M 1M
"$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name m1 --wait >"$T/out" 2>&1
check "create --wait succeeds" [ $? -eq 0 ]
check "create --wait says the snapshot is ready to pivot" grep -q 'ready to pivot' "$T/out"
gw drive0 0x22 5M 1M
check "the mirror is READY" \
  [ "$(qmp vm query-block-jobs | jq -r '.[0].ready')" = true ]
out=$("$SNAPMIG" abort "${SM[@]}" m1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "abort after READY succeeds" [ $rc -eq 0 ]
check "abort says the snapshot's new top stays the active layer" \
  grep -q "stays on $A/top.m1.qcow2" <<<"$out"
check "the VM runs on the source chain (the snapshot's new top in A)" \
  [ "$(top_file drive0)" = "$A/top.m1.qcow2" ]
check "no block job is left" [ "$(qmp vm query-block-jobs | jq length)" = 0 ]
check "no file is left in B" [ -z "$(b_files)" ]
check "the snapshot metadata is gone" \
  [ -z "$(ls "$T"/state/vms/*/snapshots/ 2>/dev/null)" ]
gw drive0 0x23 6M 1M
check "every guest write reads back after abort" all_read

# QEMU names the layer it now runs on "json:{...}" (a snapshot attached it
# under a relative backing name): a create interrupted after its snapshot
# must still fold back onto it (by node name, not file name).
SNAPMIG_TEST_CRASH_AFTER_STEP=3 "$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" \
  --name crashed >/dev/null 2>&1
check "a create killed after its transaction" [ $? -eq 137 ]
gw drive0 0x25 8M 1M
out=$("$SNAPMIG" recover "${SM[@]}" 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "recover folds the new top back onto the json:-named layer" \
  [ $rc -eq 0 -a "$(top_file drive0)" = "$A/top.m1.qcow2" ]
check "no file is left in B, no new top in A" \
  [ -z "$(b_files)" -a ! -e "$A/top.m1.crashed.qcow2" ]
check "every guest write reads back after recover" all_read

# --- abort before READY: a reused new top that already holds 4 MiB (the
# same bytes the guest sees under it, so the guest view does not change)
# must be mirrored at 1 byte/s, which cannot finish.
# (Written before its backing name is set: the VM holds the backing's lock.)
qemu-img create -q -f qcow2 "$A/top.m2.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 4M' "$A/top.m2.qcow2" >/dev/null
qemu-img rebase -u -f qcow2 -F qcow2 -b top.m1.qcow2 "$A/top.m2.qcow2"
qemu-img create -q -f qcow2 "$B/base.qcow2" 64M
qemu-img create -q -f qcow2 -u -F qcow2 -b base.qcow2 "$B/top.qcow2" 64M
qemu-img create -q -f qcow2 -u -F qcow2 -b top.qcow2 "$B/top.m1.qcow2" 64M
qemu-img create -q -f qcow2 -u -F qcow2 -b top.m1.qcow2 "$B/top.m2.qcow2" 64M
before_b=$(b_files | sort)
out=$("$SNAPMIG" create "${SM[@]}" --reuse-external --bandwidth 1 \
        --diskspec "drive0,file=$A/top.m2.qcow2,mirror=$B/top.m2.qcow2" \
        --name m2 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "create --reuse-external --bandwidth 1 succeeds" [ $rc -eq 0 ]
check "the mirror is not READY" \
  [ "$(qmp vm query-block-jobs | jq -r '.[0].ready')" = false ]
out=$("$SNAPMIG" pivot "${SM[@]}" --timeout 1 m2 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "pivot --timeout 1 fails before READY" [ $rc -ne 0 ]
check "and says the mirror was not ready" grep -q 'not ready in time: the mirror of disk drive0' <<<"$out"
check "the VM still runs on the new top in A" [ "$(top_file drive0)" = "$A/top.m2.qcow2" ]
gw drive0 0x24 7M 1M
out=$("$SNAPMIG" abort "${SM[@]}" m2 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "abort before READY succeeds" [ $rc -eq 0 ]
check "the VM runs on the source chain" [ "$(top_file drive0)" = "$A/top.m2.qcow2" ]
check "no block job is left" [ "$(qmp vm query-block-jobs | jq length)" = 0 ]
check "reused files are kept (snapmig did not create them)" \
  [ "$(b_files | sort)" = "$before_b" ]
check "every guest write reads back after abort" all_read
check "the VM's chain is intact (qemu-img check)" \
  qemu-img check -U -q "$A/top.m2.qcow2"

out=$("$SNAPMIG" abort "${SM[@]}" m2 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "a second abort fails: the snapshot is gone" [ $rc -ne 0 ]
check "and its message names the snapshot" grep -q 'm2' <<<"$out"

done_testing
