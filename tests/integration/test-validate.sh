#!/usr/bin/env bash
# snapmig validate from the command line: the text report (problems first,
# errors before warnings before infos, one fix per problem, the summary
# line), --json (valid against the schema), exit codes (0 clean, warnings
# allowed unless --strict, 1 problems, else the error's: snapmig-json(7)), a malicious backing name pointing at a FIFO
# (finishing at all proves it was not opened), --qmp against a real VM, the
# records of interrupted creates and of moves in progress that the real
# `snapmig create` leaves in the state directory, and that validation
# writes nothing.  Each defect's detection is checked in
# tests/unit/test-validate.c; here only what the CLI prints and returns.
source "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 not installed"
command -v qemu-img >/dev/null || skip_all "qemu-img not installed"

has_line () { grep -qxF -- "$2" "$1"; }

# validate ARGS...: runs snapmig validate with a deadline (a blocked open
# would hang it), output in $T/out and $T/err, exit code in $rc.
validate () {
  timeout 60 "$SNAPMIG" validate "$@" >"$T/out" 2>"$T/err"
  rc=$?
}

# A clean domain: relative names, formats stated.
clean=$T/clean
mkdir -p "$clean/img"
qemu-img create -q -f qcow2 "$clean/img/base.qcow2" 8M
qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$clean/img/mid.qcow2"
qemu-img create -q -f qcow2 -F qcow2 -b mid.qcow2 "$clean/img/top.qcow2"
qemu-img create -q -f raw "$clean/data.raw" 2M

validate "$clean"
check "clean: exit 0" test $rc -eq 0
check "clean: only the summary" test "$(cat "$T/out")" = "4 images, 2 chains, 0 errors, 0 warnings, 0 infos"
check "clean: nothing on stderr" test ! -s "$T/err"
validate "$clean" --strict
check "clean --strict: exit 0" test $rc -eq 0

# Never writes: same bytes and times afterwards.
snap () { find "$1" -printf '%p %s %T@ %C@\n' | sort; md5sum "$1"/img/* "$1"/*.raw; }
snap "$clean" >"$T/before"
validate "$clean" --json
snap "$clean" >"$T/after"
check "validate wrote nothing" cmp -s "$T/before" "$T/after"

# Warnings only: exit 0, --strict makes them count.
warn=$T/warn
mkdir -p "$warn"
qemu-img create -q -f qcow2 "$warn/base.qcow2" 8M
qemu-img create -q -f qcow2 -u -F qcow2 -b "$warn/base.qcow2" "$warn/abs.qcow2" 8M
validate "$warn"
check "warnings: exit 0" test $rc -eq 0
check "warnings: the warning" grep -qxF "warning: $warn/abs.qcow2: backing file name '$warn/base.qcow2' is absolute; it breaks when the domain moves" "$T/out"
check "warnings: its fix" has_line "$T/out" "  fix: qemu-img rebase -u -F qcow2 -b 'base.qcow2' '$warn/abs.qcow2'"
check "warnings: summary" has_line "$T/out" "2 images, 1 chains, 0 errors, 1 warnings, 0 infos"
validate "$warn" --strict
check "warnings --strict: exit 1" test $rc -eq 1

# Malicious backing names: /etc/passwd and ../outside.img, a FIFO.
bad=$T/bad
mkdir -p "$bad"
mkfifo "$T/outside.img"
qemu-img create -q -f qcow2 -u -F raw -b /etc/passwd "$bad/passwd.qcow2" 8M
qemu-img create -q -f qcow2 -u -F raw -b ../outside.img "$bad/fifo.qcow2" 8M
qemu-img create -q -f qcow2 -u -F qcow2 -b nowhere.qcow2 "$bad/orphan.qcow2" 8M
qemu-img create -q -f qcow2 -u -F qcow2 -b "$bad/orphan.qcow2" "$bad/abs.qcow2" 8M
validate "$bad"
check "escapes: exit 1 (finished: the FIFO was not opened)" test $rc -eq 1
check "escapes: /etc/passwd reported" grep -qF "error: $bad/passwd.qcow2: backing file '/etc/passwd' is outside the storage domains" "$T/out"
check "escapes: FIFO reported" grep -qF "error: $bad/fifo.qcow2: backing file '../outside.img' is outside the storage domains ($T/outside.img); it was not opened" "$T/out"
check "escapes: summary" has_line "$T/out" "4 images, 3 chains, 3 errors, 1 warnings, 0 infos"
# Grouped: every error line before every warning line.
last_error=$(grep -n '^error:' "$T/out" | tail -1 | cut -d: -f1)
first_warning=$(grep -n '^warning:' "$T/out" | head -1 | cut -d: -f1)
check "errors before warnings" test "$last_error" -lt "$first_warning"

validate "$bad" --json
check "json: exit 1" test $rc -eq 1
check "json: one document" test "$(head -c1 "$T/out")$(tail -n1 "$T/out")" = "{}"
check "json: valid against the schema's \$defs/validate" json_valid validate "$T/out"
check "json: errors counted" grep -qF '"errors": 3' "$T/out"
check "json: clean false" grep -qF '"clean": false' "$T/out"
check "json: escape code" test "$(grep -cF '"code": "backing-escapes"' "$T/out")" -eq 2
check "json: severity" grep -qF '"severity": "error"' "$T/out"

# Could not run: the exit status of the error's code (snapmig-json(7)),
# with a message; a usage error 2.
validate "$T/nope"
check "missing domain: exit 3 (not-found)" test $rc -eq 3
check "missing domain: message" grep -qF "snapmig: error: validate: storage domain $T/nope: No such file or directory" "$T/err"
validate --no-such-option "$clean"
check "bad option: exit 2" test $rc -eq 2
validate
check "no domain: exit 2" test $rc -eq 2
validate --qmp "$T/no.qmp" "$clean"
check "dead socket: exit 3 (not-found)" test $rc -eq 3
check "dead socket: message" grep -q "^snapmig: error: validate: " "$T/err"

# --qmp: images the VM has open are in use, the rest are leftovers.
vmdom=$T/vmdom
mkdir -p "$vmdom" "$T/state"
qemu-img create -q -f qcow2 "$vmdom/base.qcow2" 8M
qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$vmdom/top.qcow2"
qemu-img create -q -f qcow2 "$vmdom/old.qcow2" 8M
start_vm vm -drive "$(drive_opt drive0 "$vmdom/top.qcow2" qcow2)" || exit 1

validate "$vmdom" --state-dir "$T/state"
check "no --qmp: exit 0" test $rc -eq 0
check "no --qmp: old.qcow2 not called a leftover" bash -c "! grep -q 'old.qcow2' '$T/out'"

validate "$vmdom" --qmp "$T/vm.qmp" --state-dir "$T/state"
check "--qmp: exit 0" test $rc -eq 0
check "--qmp: top in use" has_line "$T/out" "info: $vmdom/top.qcow2: in use by VM $T/vm.qmp (drive0), open for writing"
check "--qmp: base in use" has_line "$T/out" "info: $vmdom/base.qcow2: in use by VM $T/vm.qmp (drive0), read-only backing layer"
check "--qmp: disk's domain" has_line "$T/out" "info: VM $T/vm.qmp disk drive0: complete chain of 2 layers in domain $vmdom"
check "--qmp: leftover" has_line "$T/out" "info: $vmdom/old.qcow2: not used by any given VM, image, snapmig snapshot or move: removable"
check "--qmp: in-use image not removable" bash -c "! grep -E 'top.qcow2|base.qcow2' '$T/out' | grep -q removable"
check "--qmp: summary" has_line "$T/out" "3 images, 2 chains, 0 errors, 0 warnings, 4 infos"

# The VM's disk outside every domain given: a loud error.
validate "$clean" --qmp "$T/vm.qmp"
check "disk outside the domains: exit 1" test $rc -eq 1
check "disk outside the domains: error" grep -qF "error: VM $T/vm.qmp disk drive0: no domain given holds its complete chain: layer $vmdom/top.qcow2 is not in any domain given" "$T/out"

# Interrupted creates, left by the real executor: SNAPMIG_TEST_CRASH_AFTER_STEP=N
# makes `snapmig create` _exit(137) after step N of its plan (one disk:
# 1 create-dest, 2 create-top, 3 transaction, 4 mirror, 5 save-metadata,
# 6 start-copy), leaving STATE/vms/KEY/journal/OPID.journal and OPID.created.
# Every file the record lists inside the domains is reported exactly once
# (a warning, the fix naming `snapmig recover` and the VM's address); a file
# the VM has open is never called removable.
mkdir -p "$T/csrc" "$T/cdst" "$T/cstate"
qemu-img create -q -f qcow2 "$T/csrc/base.qcow2" 8M
qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$T/csrc/top.qcow2"
start_vm crash -drive "$(drive_opt drive0 "$T/csrc/top.qcow2" qcow2)" || exit 1
caddr=$(realpath "$T/crash.qmp")      # the state's `vm` file: canonical
CSM=(--qmp "$T/crash.qmp" --state-dir "$T/cstate")
# once FILE: exactly one finding line is about FILE.
once () { [ "$(grep -cE "^(error|warning|info): $1: " "$T/out")" -eq 1 ]; }
# about FILE TEXT: the finding line about FILE contains TEXT.
about () { grep -E "^(error|warning|info): $1: " "$T/out" | grep -qF -- "$2"; }
crash_create () {
  SNAPMIG_TEST_CRASH_AFTER_STEP=$1 timeout 120 "$SNAPMIG" create "${CSM[@]}" \
    --mirror-domain "$T/cdst" --name "$2" >"$T/create.log" 2>&1
  check "crash after step $1: snapmig died (137)" test $? -eq 137
}
recover () {
  timeout 120 "$SNAPMIG" recover "${CSM[@]}" >"$T/recover.log" 2>&1
  check "$1: recover succeeds" test $? -eq 0
}

crash_create 1 c1
validate "$T/csrc" "$T/cdst" "${CSM[@]}"
check "interrupted: exit 0 (warnings)" test $rc -eq 0
for f in "$T/cdst/base.qcow2" "$T/cdst/top.qcow2" "$T/cdst/top.c1.qcow2"; do
  check "interrupted: $f reported once" once "$f"
  check "interrupted: $f left by the create" about "$f" "warning: $f: created by interrupted snapmig create of snapshot c1 (journal $T/cstate/vms/"
  check "interrupted: $f removable" about "$f" ".journal) and not open in any VM given: removable"
  check "interrupted: fix for $f" has_line "$T/out" "  fix: run 'snapmig recover --qmp $caddr' or remove $f"
done
check "interrupted: summary" has_line "$T/out" "5 images, 2 chains, 0 errors, 3 warnings, 3 infos"
validate "$T/csrc" "$T/cdst" "${CSM[@]}" --strict
check "interrupted --strict: exit 1" test $rc -eq 1
# Only the domains given matter: the source domain alone is clean.
validate "$T/csrc" --state-dir "$T/cstate" --strict
check "interrupted, other domain: clean" test $rc -eq 0
recover "after step 1"
validate "$T/csrc" "$T/cdst" "${CSM[@]}" --strict
check "after recover: clean" test $rc -eq 0

# After the mirror started: the VM writes into the new source top and the
# mirror's target; both are not removable, the lower destination layers are.
crash_create 4 c4
validate "$T/csrc" "$T/cdst" "${CSM[@]}"
check "mirror started: exit 0" test $rc -eq 0
for f in "$T/csrc/top.c4.qcow2" "$T/cdst/top.c4.qcow2"; do
  check "mirror started: $f reported once as interrupted" \
    test "$(grep -cF "warning: $f: created by interrupted snapmig create of snapshot c4" "$T/out")" -eq 1
  check "mirror started: $f open in the VM" about "$f" "and open in VM $T/crash.qmp: not removable"
  check "mirror started: $f never called removable" bash -c "! grep -F '$f' '$T/out' | grep -q ': removable'"
done
check "mirror started: fix for the files in use" test "$(grep -cxF "  fix: run 'snapmig recover --qmp $caddr': it rolls the operation back and removes the file once the VM no longer uses it" "$T/out")" -eq 2
for f in "$T/cdst/base.qcow2" "$T/cdst/top.qcow2"; do
  check "mirror started: $f reported once" once "$f"
  check "mirror started: $f removable" about "$f" "and not open in any VM given: removable"
done
check "mirror started: summary" has_line "$T/out" "6 images, 2 chains, 0 errors, 4 warnings, 5 infos"
recover "after step 4"

# After the move was saved: the move's record lists the destination files
# too; they stay interrupted-create leftovers (recover rolls the create
# back), reported once, never removable by hand, never a move in progress.
crash_create 5 c5
validate "$T/csrc" "$T/cdst" "${CSM[@]}"
check "move saved: exit 0" test $rc -eq 0
for f in "$T/cdst/base.qcow2" "$T/cdst/top.qcow2"; do
  check "move saved: $f reported once" once "$f"
  check "move saved: $f not removable by hand" about "$f" "also listed by move c5 of VM $caddr: not removable by hand"
done
check "move saved: only recover as the fix" test "$(grep -cxF "  fix: run 'snapmig recover --qmp $caddr'" "$T/out")" -eq 2
check "move saved: no move in progress" bash -c "! grep -q 'part of move' '$T/out'"
check "move saved: no destination file removable" bash -c "! grep '$T/cdst/' '$T/out' | grep -q ': removable'"
recover "after step 5"
check "after the recoveries: destination empty" test -z "$(ls -A "$T/cdst")"

# A move in progress (snapmig create --mirror, no pivot yet): its files in
# STATE/vms/KEY/lsm/NAME.created are in use by the move, each reported once
# as such, nothing removable; during the mirror the target is open for
# writing.  After the pivot the destination domain validates clean and
# holds the disk's chain, the source is left over.
mkdir -p "$T/src" "$T/dst"
qemu-img create -q -f qcow2 "$T/src/base.qcow2" 8M
qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$T/src/top.qcow2"
start_vm lsm -drive "$(drive_opt drive0 "$T/src/top.qcow2" qcow2)" || exit 1
laddr=$(realpath "$T/lsm.qmp")
if timeout 120 "$SNAPMIG" create --qmp "$T/lsm.qmp" --name s1 --mirror \
     --mirror-domain "$T/dst" --wait --state-dir "$T/lsmstate" >"$T/create.log" 2>&1; then
  validate "$T/src" "$T/dst" --qmp "$T/lsm.qmp" --state-dir "$T/lsmstate"
  check "mirroring: exit 0" test $rc -eq 0
  check "mirroring: target in use" grep -qE "^info: $T/dst/top.s1.qcow2: in use by VM $T/lsm.qmp \(node .*block job's target\), open for writing" "$T/out"
  check "mirroring: nothing removable" bash -c "! grep -q removable '$T/out'"
  check "mirroring: no warning" bash -c "! grep -q '^warning' '$T/out'"
  for f in "$T/dst/base.qcow2" "$T/dst/top.qcow2" "$T/dst/top.s1.qcow2"; do
    check "mirroring: $f part of the move, once" \
      test "$(grep -cxF "info: $f: part of move s1 of VM $laddr in progress: finish it with 'snapmig pivot' or 'snapmig abort'" "$T/out")" -eq 1
  done
  check "mirroring: disk in the source domain" has_line "$T/out" "info: VM $T/lsm.qmp disk drive0: complete chain of 3 layers in domain $T/src"
  # Without --qmp too: the move's files are in use.
  validate "$T/dst" --state-dir "$T/lsmstate" --strict
  check "mirroring, no --qmp: clean" test $rc -eq 0
  check "mirroring, no --qmp: the move's files" test "$(grep -c "^info: $T/dst/.*: part of move s1 " "$T/out")" -eq 3
  if timeout 120 "$SNAPMIG" pivot --qmp "$T/lsm.qmp" --state-dir "$T/lsmstate" s1 >>"$T/create.log" 2>&1; then
    validate "$T/dst" --strict --state-dir "$T/lsmstate"
    check "after pivot: destination clean" test $rc -eq 0
    check "after pivot: summary" test "$(cat "$T/out")" = "3 images, 1 chains, 0 errors, 0 warnings, 0 infos"
    validate "$T/src" "$T/dst" --qmp "$T/lsm.qmp" --state-dir "$T/lsmstate"
    check "after pivot: exit 0" test $rc -eq 0
    check "after pivot: disk in the destination" has_line "$T/out" "info: VM $T/lsm.qmp disk drive0: complete chain of 3 layers in domain $T/dst"
    check "after pivot: source left over" test "$(grep -c "^info: $T/src/.*: removable" "$T/out")" -eq 3
    check "after pivot: destination not removable" bash -c "! grep '^info: $T/dst/' '$T/out' | grep -q removable"
  else
    not_ok "snapmig pivot failed:"; sed 's/^/# /' "$T/create.log"
  fi
else
  not_ok "snapmig create --mirror failed:"; sed 's/^/# /' "$T/create.log"
fi

# A chain deeper than 256 layers: one error, on its top; no layer of it
# called a leftover.
"$SM_TOP/bench/gen-domain" "$T/deep" 1 300
validate "$T/deep" --json
check "deep chain: exit 1" test $rc -eq 1
check "deep chain: one error" grep -qF '"errors": 1,' "$T/out"
check "deep chain: chain-too-deep" grep -qF '"code": "chain-too-deep"' "$T/out"
check "deep chain: on its top" grep -qF "\"file\": \"$T/deep/images/c00000/l299.qcow2\"" "$T/out"

# Issue 8, break 9: a guest writes a qcow2 header (naming a host file as
# backing) into the first bytes of its raw disk.  QEMU states the format as
# raw: with --qmp the layer is raw, the chain complete, exit 0; the "header"
# is guest data and never followed.  Without --qmp nobody states the format,
# so validate reads the header and reports it (documented in the man page).
# guest_write_file NAME DRIVE FILE OFFSET LENGTH: writes the first LENGTH
# bytes of FILE at OFFSET through the device, as a guest would.
guest_write_file () {
  "$SMQ" --hmp "$T/$1.qmp" "qemu-io $2 \"write -s $3 $4 $5\""
}
g9=$T/guest9
mkdir -p "$g9"
qemu-img create -q -f raw "$g9/disk.img" 16M
qemu-img create -q -f qcow2 -u -F raw -b /etc/passwd "$T/hdr.qcow2" 64M
start_vm vm9 -drive "$(drive_opt drive0 "$g9/disk.img" raw)" || exit 1
check "break 9: the guest writes its data" guest_write vm9 drive0 0x5a 1M 1M
check "break 9: the guest writes a qcow2 header at offset 0" \
  guest_write_file vm9 drive0 "$T/hdr.qcow2" 0 64k
check "break 9: the raw file now starts with the qcow2 magic" \
  test "$(head -c 4 "$g9/disk.img" | od -An -tx1 | tr -d ' ')" = 514649fb
validate "$g9" --qmp "$T/vm9.qmp"
check "break 9: validate --qmp exits 0" test $rc -eq 0
check "break 9: the disk's chain is complete in the domain" \
  has_line "$T/out" "info: VM $T/vm9.qmp disk drive0: complete chain of 1 layer in domain $g9"
check "break 9: the report says QEMU states it raw" \
  grep -q "^info: $g9/disk.img: starts with a qcow2 header, but VM $T/vm9.qmp (disk drive0) states it raw" "$T/out"
check "break 9: no broken-chain finding" eval '! grep -q "vm-disk-no-domain\|no domain given holds\|backing-escapes" "$T/out"'
validate "$g9" --qmp "$T/vm9.qmp" --json
check "break 9: --json: the image is raw, stated by the VM" \
  eval 'jq -e --arg p "$g9/disk.img" ".images[] | select(.path == \$p)
        | .format == \"raw\" and (.\"raw-by\" | startswith(\"VM \"))" "$T/out" >/dev/null'
check "break 9: the guest reads its data back in the VM" guest_read vm9 drive0 0x5a 1M 1M
qmp vm9 quit >/dev/null
check "break 9: offline, the data is intact" \
  eval '! qemu-io -r -f raw -c "read -P 0x5a 1M 1M" "$g9/disk.img" | grep -q "verification failed"'
check "break 9: offline, the guest's header is there as data" \
  cmp -n 65536 "$g9/disk.img" "$T/hdr.qcow2"
validate "$g9"
check "break 9: without --qmp the header is read and its escape reported" \
  eval '[ $rc = 1 ] && grep -q "^error: $g9/disk.img: backing file ./etc/passwd. is outside" "$T/out"'

# Block devices named by links inside the domain (oVirt block domains):
# followed, read as images; a link to a character device is not.
if loop=$(losetup -f --show "$(truncate -s 16M "$T/lv.raw" && echo "$T/lv.raw")" 2>/dev/null); then
  trap 'losetup -d "$loop" 2>/dev/null; _sm_cleanup' EXIT
  blk=$T/blk
  mkdir -p "$blk"
  qemu-img create -q -f qcow2 "$loop" 8M
  ln -s "$loop" "$blk/vol1"
  ln -s /dev/null "$blk/null.img"
  qemu-img create -q -f qcow2 -u -F qcow2 -b vol1 "$blk/top.qcow2" 8M
  validate "$blk" --json
  check "block: exit 0" test $rc -eq 0
  check "block: device read as an image" grep -qF '"block-device": true' "$T/out"
  check "block: chain resolved" grep -qF "\"backing-path\": \"$blk/vol1\"" "$T/out"
  check "block: char device link not followed" grep -qF '"code": "symlink-escapes"' "$T/out"
  check "block: summary" grep -qF '"images": 2' "$T/out"
  # Not used by the VM given: removable, but removing the link frees
  # nothing; the fix names the device and the volume manager.
  validate "$blk" "$vmdom" --qmp "$T/vm.qmp"
  check "block unused: exit 0" test $rc -eq 0
  check "block unused: names the device" has_line "$T/out" "info: $blk/vol1: block device $loop, not used by any given VM, image, snapmig snapshot or move (only by other unused images): removable"
  check "block unused: fix frees the volume" grep -qF "fix: if no VM that was not given with --qmp uses it: rm '$blk/vol1' (the link only) and free $loop with the volume manager (lvremove)" "$T/out"
else
  skip "block devices: no loop device (needs root and /dev/loop*)"
fi

done_testing
