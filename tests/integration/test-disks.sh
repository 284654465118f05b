#!/usr/bin/env bash
# snapmig disks against a real three-disk VM: the text report (device, node,
# format, size, active image, the chain one layer per line, jobs), --json,
# a running mirror job, and the errors a user sees for a dead socket or a
# bad command line.  The JSON structure itself is checked in
# tests/unit/test-disks.c; here only what the CLI prints.
source "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 not installed"
command -v qemu-img >/dev/null || skip_all "qemu-img not installed"
command -v jq >/dev/null || skip_all "jq not installed"

# drive0: base.qcow2 <- mid.qcow2 <- top.qcow2 with relative backing names
# and stated formats; drive1: raw; drive2: qcow2.
qemu-img create -q -f qcow2 "$T/base.qcow2" 8M
qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$T/mid.qcow2"
qemu-img create -q -f qcow2 -F qcow2 -b mid.qcow2 "$T/top.qcow2"
qemu-img create -q -f raw "$T/data.raw" 2M
qemu-img create -q -f qcow2 "$T/d2.qcow2" 4M

start_vm vm \
  -drive "$(drive_opt drive0 "$T/top.qcow2" qcow2)" \
  -drive "$(drive_opt drive1 "$T/data.raw" raw)" \
  -drive "$(drive_opt drive2 "$T/d2.qcow2" qcow2)" || exit 1
sock="$T/vm.qmp"

# has_line FILE LINE: FILE has exactly LINE as one of its lines.
has_line () { grep -qxF -- "$2" "$1"; }

"$SNAPMIG" disks --qmp "$sock" >"$T/out" 2>"$T/err"; rc=$?
check "disks exits 0" test $rc -eq 0
check "disks prints nothing on stderr" test ! -s "$T/err"
check "three disks listed" test "$(grep -cE '^drive[0-9]$' "$T/out")" -eq 3
check "drive0 format" has_line "$T/out" "  format:        qcow2"
check "drive0 size" has_line "$T/out" "  virtual size:  8.0 MiB (8388608 bytes)"
check "drive0 active image" has_line "$T/out" "  active image:  $T/top.qcow2"
check "drive0 node name" grep -qE '^  node: +[#a-z]' "$T/out"
# The chain: one layer per line, each one indented deeper.
check "chain layer 1" has_line "$T/out" "    $T/top.qcow2 (qcow2)"
check "chain layer 2" has_line "$T/out" "      $T/mid.qcow2 (qcow2)"
check "chain layer 3" has_line "$T/out" "        $T/base.qcow2 (qcow2)"
check "chain in order" test "$(grep -n 'qcow2 (qcow2)$' "$T/out" | head -3 | sed 's/.*\///' | tr '\n' ' ')" = "top.qcow2 (qcow2) mid.qcow2 (qcow2) base.qcow2 (qcow2) "
check "drive1 raw" has_line "$T/out" "    $T/data.raw (raw)"
check "drive1 size" has_line "$T/out" "  virtual size:  2.0 MiB (2097152 bytes)"
check "drive2 listed" has_line "$T/out" "    $T/d2.qcow2 (qcow2)"
check "no jobs" test "$(grep -cxF '  jobs:          none' "$T/out")" -eq 3
check "no warnings" bash -c "! grep -q warning '$T/out'"

"$SNAPMIG" disks --qmp "$sock" --json >"$T/json" 2>"$T/err"; rc=$?
check "disks --json exits 0" test $rc -eq 0
check "json: three devices" test "$(grep -cE '"device": "drive[0-9]"' "$T/json")" -eq 3
check "json: relative backing name kept" grep -qF '"backing-file": "base.qcow2"' "$T/json"
check "json: active image" grep -qF "\"file\": \"$T/top.qcow2\"" "$T/json"
check "json: size" grep -qF '"virtual-size": 8388608' "$T/json"
check "json: chain checked on disk" test "$(grep -cF '"chain-checked": true' "$T/json")" -eq 3
check "json: one document" test "$(head -c1 "$T/json")$(tail -n1 "$T/json")" = "{}"
check "json: valid against the schema's \$defs/disks" json_valid disks "$T/json"

# A running mirror shows up under its disk (1 byte/s keeps it running).
guest_write vm drive2 0x33 0 4M >/dev/null
qmp vm drive-mirror >/dev/null \
  "{\"device\": \"drive2\", \"target\": \"$T/copy.qcow2\", \"format\": \"qcow2\", \"sync\": \"full\", \"speed\": 1}"
check "mirror started" test $? -eq 0
"$SNAPMIG" disks --qmp "$sock" >"$T/out" 2>"$T/err"; rc=$?
check "disks with a job exits 0" test $rc -eq 0
check "mirror job listed under drive2" \
  bash -c "sed -n '/^drive2\$/,/^\$/p' '$T/out' | grep -qE '^    mirror drive2: running, .* of 4.0 MiB'"
check "only drive2 has a job" test "$(grep -cxF '  jobs:          none' "$T/out")" -eq 2
"$SNAPMIG" disks --qmp "$sock" --json >"$T/json"
check "json: mirror job" grep -qF '"type": "mirror"' "$T/json"

# QEMU names a disk "json:{...}" when its format node has options of its
# own (raw with offset=; qcow2 over a raw node over the file): disks prints
# the image's file, never that name.
qemu-img create -q -f raw "$T/off.raw" 2M
qemu-img create -q -f qcow2 "$T/nested.qcow2" 4M
vm_pid=$VM_PID
start_vm vmj \
  -drive "if=none,id=drive0,driver=raw,offset=4096,file.driver=file,file.filename=$T/off.raw" \
  -drive "if=none,id=drive1,driver=qcow2,file.driver=raw,file.offset=0,file.file.driver=file,file.file.filename=$T/nested.qcow2" || exit 1
jpid=$VM_PID
check "QEMU names drive0 json:" \
  bash -c "'$SMQ' '$T/vmj.qmp' query-block | jq -e '.[0].inserted.image.filename | startswith(\"json:\")' >/dev/null"
check "QEMU names drive1 json:" \
  bash -c "'$SMQ' '$T/vmj.qmp' query-block | jq -e '.[1].inserted.file | startswith(\"json:\")' >/dev/null"
"$SNAPMIG" disks --qmp "$T/vmj.qmp" >"$T/out" 2>"$T/err"; rc=$?
check "json: disks exits 0" test $rc -eq 0
check "json: no json: name printed" bash -c "! grep -q 'json:' '$T/out'"
check "json: raw active image" has_line "$T/out" "  active image:  $T/off.raw"
check "json: raw chain" has_line "$T/out" "    $T/off.raw (raw)"
check "json: qcow2 active image" has_line "$T/out" "  active image:  $T/nested.qcow2"
check "json: qcow2 chain" has_line "$T/out" "    $T/nested.qcow2 (qcow2)"
"$SNAPMIG" disks --qmp "$T/vmj.qmp" --json >"$T/json" 2>"$T/err"; rc=$?
check "json: disks --json exits 0" test $rc -eq 0
check "json: --json has no json: name" bash -c "! grep -q 'json:' '$T/json'"
check "json: --json files" test "$(jq -r '.disks[] | .file, .chain[].file' "$T/json" | tr '\n' ' ')" = "$T/off.raw $T/off.raw $T/nested.qcow2 $T/nested.qcow2 "
kill "$jpid"; wait "$jpid" 2>/dev/null
VM_PID=$vm_pid

# Usage errors.
"$SNAPMIG" disks >"$T/out" 2>"$T/err"; rc=$?
check "missing --qmp exits 2" test $rc -eq 2
check "missing --qmp is explained" grep -q '^snapmig: error: .*--qmp' "$T/err"
"$SNAPMIG" disks --qmp "$sock" extra >"$T/out" 2>"$T/err"; rc=$?
check "extra argument exits 2" test $rc -eq 2

# A socket nobody listens on (QEMU killed: the socket file stays) and a
# missing one: exit at once (6 disconnected, 3 not-found: snapmig-json(7)),
# naming the socket.  `timeout` only turns a hang into a failure; nothing
# is timed.
kill -9 "$VM_PID"; wait "$VM_PID" 2>/dev/null
timeout 10 "$SNAPMIG" disks --qmp "$sock" >"$T/out" 2>"$T/err"; rc=$?
check "dead socket exits 6 (disconnected)" test $rc -eq 6
check "dead socket error names it" grep -qF "snapmig: error: cannot connect to QEMU monitor $sock" "$T/err"
check "dead socket prints nothing on stdout" test ! -s "$T/out"
timeout 10 "$SNAPMIG" disks --qmp "$T/missing.qmp" >"$T/out" 2>"$T/err"; rc=$?
check "missing socket exits 3 (not-found)" test $rc -eq 3
check "missing socket error names it" grep -qF "$T/missing.qmp" "$T/err"

done_testing
