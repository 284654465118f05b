#!/usr/bin/env bash
# snapmig migrate of a running guest-less VM between two "hosts" (network
# namespaces A and B joined by a veth pair; loopback where namespaces can't
# be made, and the test says so): the source QEMU runs in A, the
# destination snapmig in B through --dest-cmd 'ip netns exec B snapmig'.
# A 3-disk VM (drive0: top.qcow2 over base.qcow2, drive1: raw, drive2:
# qcow2) with guest writes of known patterns before the migration and
# during its disk copy (--bandwidth makes the copy last seconds; the writes
# go through the source's second monitor once migrate reports the phase
# whose copy is to be hit, and must come before the RAM phase), for each
# storage choice:
#   chain (default, --copy-storage-all)   the chain kept, relative names;
#                                         writes during the layer copy
#   --flatten                             one image per disk (text output);
#                                         writes during the mirrors
#   --copy-storage-inc --migrate-disks drive0
#                                         base, drive1, drive2 on shared
#                                         storage ($T/shared), only drive0's
#                                         top moves (disk-bytes says so)
#   --migrate-disks drive0,drive2         drive1 stays on shared storage
# and after each: the destination QEMU runs (query-status on its remapped
# QMP $RUN/vm.qmp) on images of its domain only, the source QEMU has quit,
# nothing listens on the port range in B (nor in A), every pattern reads
# back on the destination (HMP qemu-io, its log checked) and offline from
# its files once it quit, qemu-img compare of each destination disk
# against the source's files (its final view: the source quit) is
# identical, and `snapmig validate` of the destination domain (with the
# shared storage the VM uses) is clean.
# Skips (77) until `snapmig migrate` exists.
# run-tests: beside (guest-less, its own namespaces and directories)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/migrate-lib.sh"

mig_setup

# migrate_with_writes LABEL TRIGGER ARGS...: migrate (ARGS) in the
# background; once TRIGGER is there (an absolute path: that file; else the
# phase of that name), the guest writes; then waits for the end.  The
# writes must come before the RAM phase: a guest can write until the
# switchover stops its vCPUs, HMP qemu-io even after (when nothing is
# mirrored any more), so a write must not be late.
migrate_with_writes () {
  local l=$1 trig=$2; shift 2
  mig_start --bandwidth "$MIG_BW" "$@"
  case $trig in
    /*) check "$l: the migration reaches the copy ($trig appears)" wait_for_file "$trig" 120 ;;
    *) check "$l: the migration reaches phase $trig" mig_wait_line "$(phase_re "$trig")" ;;
  esac
  check "$l: guest writes during the copy" during_writes
  check "$l: the writes came before the RAM phase" not grep -qE "$(phase_re ram)" "$T/mig.out"
  mig_end
  check "$l: migrate exits 0" [ "$MIG_RC" = 0 ]
  [ "$MIG_RC" = 0 ]
}
alive () { kill -0 "$1" 2>/dev/null; }
# source_quit: the source QEMU is gone (10 s at most).
source_quit () {
  local deadline=$(( $(date +%s) + 10 ))
  while alive "$VM_PID"; do
    [ "$(date +%s)" -le $deadline ] || return 1
    sleep 0.05
  done
  wait "$VM_PID" 2>/dev/null
  return 0
}
# validate_dest [DOMAIN...]: snapmig validate of $D (and the DOMAINs the
# destination VM also uses) with the destination running is clean.
validate_dest () {
  "$SNAPMIG" validate --qmp "$RUN/vm.qmp" --state-dir "$T/s2" "$D" "$@" \
    >"$T/validate.out" 2>&1 || { sed 's/^/# /' "$T/validate.out"; return 1; }
}
# moved LABEL [--also DOMAIN] DRIVE...: the checks after a successful
# migration; DRIVEs are the disks whose every layer must be in $D; DOMAIN
# (shared storage the destination VM uses too) is validated with $D.
moved () {
  local l=$1 i also=(); shift
  if [ "${1:-}" = --also ]; then also=("$2"); shift 2; fi
  check "$l: the source QEMU has quit" source_quit
  check "$l: the destination QEMU runs" [ "$(dqmp query-status | jq -r .status)" = running ]
  check "$l: it is the QEMU of the remapped pidfile" [ "$(cat "$RUN/vm.pid" 2>/dev/null)" = "$DEST_PID" ]
  check "$l: its disks are images of the destination domain" dest_in_domain "$@"
  check "$l: no NBD server listens" no_listener
  check "$l: the destination log is in the run dir" [ -n "$(dest_log)" ]
  check "$l: every pattern reads back on the destination" dest_all_read
  check "$l: snapmig validate of the destination domain is clean" validate_dest "${also[@]}"
  dest_record
  check "$l: the destination QEMU quits" dest_quit
  dest_offline_checks "$l"
}

# --- chain (default) --------------------------------------------------------
# After a failed migrate (reported by migrate_with_writes) the case's other
# checks are one skip line.
mig_fresh
if migrate_with_writes chain prepare --json; then
  check "chain: the result says ok" [ "$(res .ok)" = true ]
  check "chain: every line is valid against the schema" json_valid migrate "$T/mig.out"
  check "chain: storage chain" [ "$(res .storage)" = chain ]
  check "chain: the result names the remapped run dir" [ "$(res '."dest-run-dir"')" = "$RUN" ]
  check "chain: disk bytes reported" [ "$(res '."disk-bytes"')" -gt 0 ]
  moved chain drive0 drive1 drive2
  check "chain: drive0 keeps its layers on the destination" same_layers "${DEST_TOP[0]}" "$SRC_CHAIN0"
  check "chain: drive0's destination chain has relative backing names, all in D" \
    relative_chain "${DEST_TOP[0]}"
  check "chain: drive1's destination chain has relative backing names, all in D" \
    relative_chain "${DEST_TOP[1]}"
  check "chain: the source's chain is as before (the snapshot's top folded back)" \
    [ "$(ls -A "$A" | sort)" = "$A_FILES" ]
else
  skip "chain: migrate failed, nothing to check on the destination"
fi

# --- --flatten, text output ----------------------------------------------------
mig_fresh
if migrate_with_writes flatten "$RUN/vm.pid" --flatten; then
  check "flatten: text output says where the VM runs" \
    grep -qE "^migrated vm to $IP_B: QMP $RUN/vm.qmp, pid [0-9]+$" "$T/mig.out"
  check "flatten: text output says what it cost" \
    grep -qE "^moved: disks [0-9.]+ [KMG]?i?B, RAM [0-9.]+ [KMG]?i?B, guest pause [0-9]+ ms" "$T/mig.out"
  moved flatten drive0 drive1 drive2
  for i in 0 1 2; do
    check "flatten: drive$i is one image" \
      [ "$(qemu-img info -U --backing-chain --output=json "${DEST_TOP[$i]:-none}" | jq length)" = 1 ]
  done
else
  skip "flatten: migrate failed, nothing to check on the destination"
fi

# --- --copy-storage-inc: base.qcow2 on shared storage ----------------------------
# Only drive0 has a backing file to leave on shared storage; snapmig refuses
# --copy-storage-inc for a disk that is all top (drive1, drive2), which stay
# on the shared storage too (--migrate-disks drive0).
mig_fresh inc
if migrate_with_writes inc disks --json --copy-storage-inc --migrate-disks drive0; then
  check "inc: the result says ok" [ "$(res .ok)" = true ]
  check "inc: storage inc" [ "$(res .storage)" = inc ]
  check "inc: disk bytes cover the tops only (base holds 24M)" \
    [ "$(res '."disk-bytes"')" -lt $((24 << 20)) ]
  check "inc: some disk bytes moved" [ "$(res '."disk-bytes"')" -gt 0 ]
  check "inc: drive0's bottom layer is the shared base" \
    [ "$(chain_files drive0 "$RUN/vm.qmp" | tail -n 1)" = "$T/shared/base.qcow2" ]
  check "inc: drive0's top is in D" \
    eval 'case "$(chain_files drive0 "$RUN/vm.qmp" | head -n 1)" in "$D"/*) true ;; *) false ;; esac'
  check "inc: no copy of the base in D" [ ! -e "$D/base.qcow2" ]
  check "inc: drive1 runs on the shared file" [ "$(chain_files drive1 "$RUN/vm.qmp")" = "$T/shared/d1.raw" ]
  moved inc --also "$T/shared"
else
  skip "inc: migrate failed, nothing to check on the destination"
fi

# --- --migrate-disks drive0,drive2: drive1 (on shared storage) stays ----------------
mig_fresh mdisks
if migrate_with_writes migrate-disks prepare --json --migrate-disks drive0,drive2; then
  check "migrate-disks: the result says ok" [ "$(res .ok)" = true ]
  check "migrate-disks: drive1 runs on the shared file" \
    [ "$(chain_files drive1 "$RUN/vm.qmp")" = "$T/shared/d1.raw" ]
  check "migrate-disks: no copy of drive1 in D" [ -z "$(ls "$D" | grep '^d1')" ]
  moved migrate-disks --also "$T/shared" drive0 drive2
else
  skip "migrate-disks: migrate failed, nothing to check on the destination"
fi

done_testing
