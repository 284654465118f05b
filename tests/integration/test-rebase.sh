#!/usr/bin/env bash
# snapmig rebase against a real QEMU: a disk with the chain
# base <- mid <- top, each layer holding guest writes of its own, is rebased
# onto base (mid merged into top, top's header naming "base.qcow2"
# relatively), then made standalone.  Every pattern must read back the same,
# in the VM and offline; errors must name the disk.
. "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"

D=$T/domain
mkdir -p "$D" "$T/state"
SM=("$SNAPMIG" rebase --state-dir "$T/state" --qmp "$T/vm.qmp")

# Offset (MiB) and pattern of every region the guest sees at the end of the
# setup.  Region 0 lives only in base, 1 and 3 in mid (1 overwrites base),
# 2 and 4 in top (2 overwrites base), 5 was never written.
EXPECT=("0 0x11" "1 0x22" "2 0x33" "3 0x23" "4 0x34" "5 0x00")

check_view_in_vm () {
  local r off pat
  for r in "${EXPECT[@]}"; do
    read -r off pat <<<"$r"
    guest_read vm drive0 "$pat" "${off}M" 1M >/dev/null || return 1
  done
}
check_view_offline () {
  local r off pat
  for r in "${EXPECT[@]}"; do
    read -r off pat <<<"$r"
    qemu-io -r -f qcow2 -c "read -P $pat ${off}M 1M" "$1" \
      | grep -q 'verification failed' && return 1
  done
  return 0
}
# backing_name IMAGE: the backing file name written in IMAGE's header.
backing_name () {
  local name
  name=$(qemu-img info -U --output=json "$1" |
         sed -n 's/^ *"backing-filename": "\(.*\)",\{0,1\}$/\1/p')
  echo "${name:-none}"
}
# chain_depth: how many backing layers QEMU sees under drive0's top (the
# VM has this one disk only).
chain_depth () {
  qmp vm query-block | grep -o '"backing_file_depth": *[0-9]*' | grep -o '[0-9]*$'
}
# chain_files: the image file names QEMU shows for drive0's chain (a layer
# whose options changed at run time shows as "json:{...}").
chain_files () {
  qmp vm query-block | grep -o '"filename": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'
}
quit_vm () {
  qmp vm quit >/dev/null
  wait "$VM_PID" 2>/dev/null
}

# --- A chain made the way oVirt makes one: overlays pre-created with
# relative backing names, switched to by snapshots, written by the guest.
qemu-img create -q -f qcow2 "$D/base.qcow2" 8M
qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$D/mid.qcow2"
qemu-img create -q -f qcow2 -F qcow2 -b mid.qcow2 "$D/top.qcow2"
start_vm vm -drive "$(drive_opt drive0 "$D/base.qcow2" qcow2)" || exit 1
snap () {
  qmp vm blockdev-snapshot-sync "{\"device\": \"drive0\", \"snapshot-file\":
    \"$D/$1\", \"format\": \"qcow2\", \"mode\": \"existing\"}" >/dev/null
}
setup_ok=true
guest_write vm drive0 0x11 0 1M >/dev/null &&
  guest_write vm drive0 0x12 1M 1M >/dev/null &&
  guest_write vm drive0 0x13 2M 1M >/dev/null &&
  snap mid.qcow2 &&
  guest_write vm drive0 0x22 1M 1M >/dev/null &&
  guest_write vm drive0 0x23 3M 1M >/dev/null &&
  snap top.qcow2 &&
  guest_write vm drive0 0x33 2M 1M >/dev/null &&
  guest_write vm drive0 0x34 4M 1M >/dev/null || setup_ok=false
check "setup: chain base <- mid <- top with guest data in each layer" \
  eval '$setup_ok && [ "$(chain_depth)" = 2 ] && check_view_in_vm'

# --- Errors name the disk and change nothing.
out=$("${SM[@]}" nosuch 2>&1); rc=$?
check "unknown disk: exit 3 (not-found), names the disk and the VM's disks ($rc)" \
  eval '[ $rc = 3 ] && grep -q "^snapmig: error: .*disk nosuch.*drive0" <<<"$out"'

qemu-img create -q -f qcow2 "$T/other.qcow2" 8M
out=$("${SM[@]}" --base "$T/other.qcow2" drive0 2>&1); rc=$?
check "base not in the chain: exit 3 (not-found), names disk and base, lists the chain ($rc)" \
  eval '[ $rc = 3 ] && grep -q "disk drive0: .*other.qcow2 is not in" <<<"$out" &&
        grep -q "base.qcow2.*<- .*mid.qcow2.*<- .*top.qcow2" <<<"$out"'

out=$("${SM[@]}" --base "$D/top.qcow2" drive0 2>&1); rc=$?
check "the active layer as base is refused: exit 2, invalid-input ($rc)" \
  eval '[ $rc = 2 ] && grep -q "disk drive0: .*active layer" <<<"$out"'

out=$("${SM[@]}" --bandwidth 10X drive0 2>&1); rc=$?
check "a bad --bandwidth is a usage error" \
  eval '[ $rc = 2 ] && grep -q -- "--bandwidth" <<<"$out"'

out=$("${SM[@]}" --dry-run --base "$D/base.qcow2" drive0 2>&1); rc=$?
check "--dry-run prints the block-stream command with the relative name" \
  eval '[ $rc = 0 ] && grep -q "\"execute\":\"block-stream\"" <<<"$out" &&
        grep -q "\"backing-file\":\"base.qcow2\"" <<<"$out" &&
        grep -q "merge .*mid.qcow2" <<<"$out"'
check "--dry-run changed nothing (chain in QEMU and header of top)" \
  eval '[ "$(chain_depth)" = 2 ] && [ "$(backing_name "$D/top.qcow2")" = mid.qcow2 ]'

out=$("${SM[@]}" --dry-run drive0); rc=$?
check "--dry-run without --base merges everything into a standalone top" \
  eval '[ $rc = 0 ] && grep -q "merge .*mid.qcow2" <<<"$out" &&
        grep -q "merge .*base.qcow2" <<<"$out" && grep -q standalone <<<"$out"'
out=$("${SM[@]}" --dry-run --json drive0); rc=$?
check "--dry-run --json prints the plan as JSON" \
  eval '[ $rc = 0 ] && grep -q "\"backing-file\":null" <<<"$out" &&
        grep -q "\"execute\":\"block-stream\"" <<<"$out"'
check "--dry-run --json: a plan event and the result, valid against the schema" \
  json_valid rebase <(echo "$out")

# --- Rebase onto base, naming it relative to the current directory.
out=$(cd "$T" && "${SM[@]}" --json --bandwidth 64M --timeout 60 \
        --base domain/base.qcow2 drive0); rc=$?
check "rebase --base base: exit 0, JSON result line" \
  eval '[ $rc = 0 ] && tail -n1 <<<"$out" | grep -q "^{\"event\":\"result\"" &&
        tail -n1 <<<"$out" | grep -q "\"backing-file\":\"base.qcow2\""'
check "QEMU's chain is now base <- top" \
  eval '[ "$(chain_depth)" = 1 ] && chain_files | grep -qx "$D/base.qcow2" &&
        ! qmp vm query-block | grep -q mid.qcow2'
check "top's header names base.qcow2 relatively" \
  eval '[ "$(backing_name "$D/top.qcow2")" = base.qcow2 ]'
check "every pattern reads back in the VM" check_view_in_vm
out=$("${SM[@]}" --base "$D/base.qcow2" drive0 2>&1); rc=$?
check "rebasing again onto the direct base has nothing to do" \
  eval '[ $rc = 0 ] && grep -q "nothing to merge" <<<"$out"'
quit_vm
check "offline: top over base (through the relative name) reads the same" \
  check_view_offline "$D/top.qcow2"
check "offline: base itself is unchanged" \
  eval '! qemu-io -r -f qcow2 -c "read -P 0x11 0 1M" -c "read -P 0x12 1M 1M" \
          -c "read -P 0x13 2M 1M" "$D/base.qcow2" | grep -q "verification failed"'

# --- Without --base: everything merged, the disk standalone.  A fresh QEMU
# opens top through the relative name written above.
start_vm vm -drive "$(drive_opt drive0 "$D/top.qcow2" qcow2)" || exit 1
out=$("${SM[@]}" drive0 2>&1); rc=$?
check "rebase without --base: exit 0" eval '[ $rc = 0 ] && grep -q standalone <<<"$out"'
check "QEMU sees top standalone and its header has no backing file" \
  eval '[ "$(chain_depth)" = 0 ] && [ "$(backing_name "$D/top.qcow2")" = none ]'
check "every pattern reads back in the VM" check_view_in_vm
quit_vm
check "offline: the standalone top reads the same" \
  check_view_offline "$D/top.qcow2"

done_testing
