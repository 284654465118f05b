#!/usr/bin/env bash
# Files another VM uses are never written, truncated or deleted (issue 8,
# breaks 1 and 2), against real QEMUs:
#  1. VM1 runs on B/vm1.qcow2 over the template B/tmpl.qcow2.  `create
#     --reuse-external` of VM "vm" into B, whose lower layer tmpl.qcow2 maps
#     to B/tmpl.qcow2, is refused before anything changes, naming the file
#     and VM1's QEMU; B/tmpl.qcow2 stays byte-identical and VM1 reads its
#     data, in the VM and offline.
#     The same for a layer that VM1's own move (snapmig's record) names.
#  2. `create --reuse-external` into C, whose lower layers were copied there
#     beforehand (identical): the copy worker does not rewrite them (same
#     inode, same mtime), and the pivot works with the guest data intact.
#  3. That pivot with --delete-source while VM3 runs over A/tmpl.qcow2 (a
#     base image of vm's source chain): tmpl.qcow2 is kept and reported with
#     VM3's QEMU as holder, the other source files are removed and reported,
#     VM3 still reads its data.
#  4. abort keeps a destination file snapmig created that VM4 has opened
#     since, naming VM4's QEMU; abort again once it is free removes it.
#  5. recover of a create killed after pre-creating its files keeps one that
#     VM5 has opened since; recover again once it is free removes it.
# The guest data of every VM is read in the VM and, once they quit, offline.
. "$(dirname "$0")/lib.sh"

lsm_setup
C=$T/C
mkdir -p "$C"

run () {   # run COMMAND...: its output in $out, its status in $rc
  out=$("$@" 2>&1); rc=$?
  echo "$out" | sed 's/^/# /'
}
# quit_vm NAME PID: QMP quit, then waits (10 s at most) until PID is gone.
quit_vm () {
  local deadline=$(( $(date +%s) + 10 ))
  qmp "$1" quit >/dev/null 2>&1
  while kill -0 "$2" 2>/dev/null; do
    [ "$(date +%s)" -lt $deadline ] || return 1
    sleep 0.05
  done
}
# offline_read IMG PATTERN OFFSET LENGTH: the pattern, read through IMG's
# chain with qemu-io -r.
offline_read () {
  qemu-io -r -f qcow2 -c "read -P $2 $3 $4" "$1" | grep -q '^read '
}
file_id () { stat -c '%i %y' "$1"; }
# gr NAME DRIVE PATTERN OFFSET LENGTH: guest_read, its output in the log only.
gr () { guest_read "$@" | sed 's/^/# /'; return "${PIPESTATUS[0]}"; }
# jqe FILTER ARGS...: jq -e on $out.
jqe () { jq -e "$@" <<<"$out" >/dev/null; }
run_state () { qmp "$1" query-status | jq -r .status; }

# vm: drive0 on A/top.qcow2 (0x22 at 4M) over A/tmpl.qcow2 (0x11 at 0).
qemu-img create -q -f qcow2 "$A/tmpl.qcow2" 32M
qemu-io -f qcow2 -c 'write -P 0x11 0 2M' "$A/tmpl.qcow2" >/dev/null
qemu-img create -q -f qcow2 -F qcow2 -b tmpl.qcow2 "$A/top.qcow2"
qemu-io -f qcow2 -c 'write -P 0x22 4M 1M' "$A/top.qcow2" >/dev/null
# C holds copies of vm's lower layers made before it starts (identical).
cp "$A/tmpl.qcow2" "$A/top.qcow2" "$C/"
start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" || exit 1
VM_MAIN=$VM_PID

# VM1: B/vm1.qcow2 over the template B/tmpl.qcow2 (0x44 at 0), 0x55 at 8M.
qemu-img create -q -f qcow2 "$B/tmpl.qcow2" 32M
qemu-io -f qcow2 -c 'write -P 0x44 0 4M' "$B/tmpl.qcow2" >/dev/null
qemu-img create -q -f qcow2 -F qcow2 -b tmpl.qcow2 "$B/vm1.qcow2"
start_vm vm1 -drive "$(drive_opt drive0 "$B/vm1.qcow2" qcow2)" || exit 1
VM1=$VM_PID
guest_write vm1 drive0 0x55 8M 1M >/dev/null
cp "$B/tmpl.qcow2" "$T/tmpl.before"

# VM3: A/vm3.qcow2 over vm's base A/tmpl.qcow2, 0x66 at 12M.
qemu-img create -q -f qcow2 -F qcow2 -b tmpl.qcow2 "$A/vm3.qcow2"
start_vm vm3 -drive "$(drive_opt drive0 "$A/vm3.qcow2" qcow2)" || exit 1
VM3=$VM_PID
guest_write vm3 drive0 0x66 12M 1M >/dev/null

# ---- 1. a reused lower layer another VM runs on is refused -------------
qemu-img create -q -f qcow2 -u -F qcow2 -b tmpl.qcow2 "$B/top.qcow2" 32M
qemu-img create -q -f qcow2 -u -F qcow2 -b top.qcow2 "$B/top.mv1.qcow2" 32M
qemu-img create -q -f qcow2 -u -F qcow2 -b top.qcow2 "$A/top.mv1.qcow2" 32M
B_BEFORE=$(ls -l --time-style=full-iso "$B")
run "$SNAPMIG" create "${SM[@]}" --reuse-external \
  --diskspec "drive0,file=$A/top.mv1.qcow2,mirror=$B/top.mv1.qcow2" --name mv1
check "reuse of a file VM1 runs on: refused" [ $rc -ne 0 ]
check "the message names the file" grep -qF "$B/tmpl.qcow2" <<<"$out"
check "the message names VM1's QEMU" grep -qF "qemu-system-x86_64 (pid $VM1)" <<<"$out"
check "B/tmpl.qcow2 is byte-identical" cmp -s "$B/tmpl.qcow2" "$T/tmpl.before"
check "no file in B changed" [ "$(ls -l --time-style=full-iso "$B")" = "$B_BEFORE" ]
check "vm still runs on its original top" [ "$(top_file drive0)" = "$A/top.qcow2" ]
check "vm is running" [ "$(run_state vm)" = running ]
check "vm runs no block job" [ "$(qmp vm query-block-jobs | jq length)" = 0 ]
check "no metadata, no journal recorded" \
  [ -z "$(find "$T/state" -path '*/snapshots/*' -o -path '*/journal/*' -o -path '*/lsm/*')" ]
check "VM1 reads its template data" gr vm1 drive0 0x44 0 4M
check "VM1 reads its own data" gr vm1 drive0 0x55 8M 1M
check "vm reads its data" gr vm drive0 0x11 0 2M
rm -f "$B/top.qcow2" "$B/top.mv1.qcow2" "$A/top.mv1.qcow2"

run "$SNAPMIG" validate --state-dir "$T/state" --qmp "$T/vm.qmp" \
  --qmp "$T/vm1.qmp" --qmp "$T/vm3.qmp" "$A" "$B"
check "validate: A and B are clean" [ $rc -eq 0 ]

# ---- 1b. a reused layer another VM's move names is refused --------------
# VM1 moves into E with snapmig (not pivoted): its lower layers there are
# copied and closed, so no lock shows they are VM1's; its record does.
E=$T/E
mkdir -p "$E"
SM1=(--state-dir "$T/state" --qmp "$T/vm1.qmp")
run "$SNAPMIG" create "${SM1[@]}" --mirror-domain "$E" --name w1 --wait
check "VM1's move into E is created" [ $rc -eq 0 ]
qemu-img create -q -f qcow2 -u -F qcow2 -b tmpl.qcow2 "$E/top.qcow2" 32M
qemu-img create -q -f qcow2 -u -F qcow2 -b top.qcow2 "$E/top.mv1.qcow2" 32M
qemu-img create -q -f qcow2 -u -F qcow2 -b top.qcow2 "$A/top.mv1.qcow2" 32M
cp "$E/tmpl.qcow2" "$T/e-tmpl.before"
run "$SNAPMIG" create "${SM[@]}" --reuse-external \
  --diskspec "drive0,file=$A/top.mv1.qcow2,mirror=$E/top.mv1.qcow2" --name mv1
check "reuse of a layer of VM1's move: refused" [ $rc -ne 0 ]
check "the message names the file and VM1's move" \
  grep -qE "$E/tmpl.qcow2: in use by VM [^ ]+ \(snapshot w1\)" <<<"$out"
check "E/tmpl.qcow2 is byte-identical" cmp -s "$E/tmpl.qcow2" "$T/e-tmpl.before"
check "vm still runs on its original top" [ "$(top_file drive0)" = "$A/top.qcow2" ]
check "vm is running" [ "$(run_state vm)" = running ]
rm -f "$E/top.qcow2" "$E/top.mv1.qcow2" "$A/top.mv1.qcow2"

# ---- 2. identical pre-copied lower layers are not rewritten -------------
qemu-img create -q -f qcow2 -u -F qcow2 -b top.qcow2 "$C/top.mv3.qcow2" 32M
qemu-img create -q -f qcow2 -u -F qcow2 -b top.qcow2 "$A/top.mv3.qcow2" 32M
ID_TMPL=$(file_id "$C/tmpl.qcow2")
ID_TOP=$(file_id "$C/top.qcow2")
run "$SNAPMIG" create "${SM[@]}" --reuse-external --wait \
  --diskspec "drive0,file=$A/top.mv3.qcow2,mirror=$C/top.mv3.qcow2" --name mv3
check "create --reuse-external onto identical layers succeeds" [ $rc -eq 0 ]
guest_write vm drive0 0x77 6M 1M >/dev/null
run "$SNAPMIG" status "${SM[@]}" --json mv3
check "status: every copy is done" \
  jqe '[.copies[].state] | length == 2 and all(. == "done")'
check "status: both copies say skipped" \
  jqe '[.copies[].skipped] == [true, true]'
check "C/tmpl.qcow2 was not rewritten (same inode and mtime)" \
  [ "$(file_id "$C/tmpl.qcow2")" = "$ID_TMPL" ]
check "C/top.qcow2 was not rewritten (same inode and mtime)" \
  [ "$(file_id "$C/top.qcow2")" = "$ID_TOP" ]

# ---- 3. pivot --delete-source keeps a base another VM runs on -----------
run "$SNAPMIG" pivot "${SM[@]}" --delete-source --json mv3
check "pivot --delete-source succeeds" [ $rc -eq 0 ]
check "vm runs on C" [ "$(top_file drive0)" = "$C/top.mv3.qcow2" ]
check "vm is running" [ "$(run_state vm)" = running ]
check "A/tmpl.qcow2, VM3's base, is kept" [ -e "$A/tmpl.qcow2" ]
check "and reported kept with VM3's QEMU as holder" \
  jqe -s --arg f "$A/tmpl.qcow2" --arg p "pid $VM3" \
    'any(.[]; .event == "kept" and .file == $f and (.why | contains($p)))'
check "A/top.qcow2 and A/top.mv3.qcow2 are removed" \
  [ ! -e "$A/top.qcow2" -a ! -e "$A/top.mv3.qcow2" ]
check "and reported removed" \
  jqe -s --arg a "$A/top.qcow2" --arg b "$A/top.mv3.qcow2" \
    '[.[] | select(.event == "removed") | .file] | sort == ([$a, $b] | sort)'
for r in "0x11 0 2M" "0x22 4M 1M" "0x77 6M 1M"; do
  read -r p o l <<<"$r"
  check "vm reads $p at $o after the move" gr vm drive0 "$p" "$o" "$l"
done
check "VM3 reads the base's data" gr vm3 drive0 0x11 0 2M
check "VM3 reads its own data" gr vm3 drive0 0x66 12M 1M

run "$SNAPMIG" validate --state-dir "$T/state" --qmp "$T/vm.qmp" \
  --qmp "$T/vm1.qmp" --qmp "$T/vm3.qmp" "$A" "$B" "$C" "$E"
check "validate: A, B, C and E are clean" [ $rc -eq 0 ]

# ---- 4. abort keeps a created file another process opened since --------
D=$T/D
mkdir -p "$D"
run "$SNAPMIG" create "${SM[@]}" --mirror-domain "$D" --name mv4 --wait
check "create mv4 into D" [ $rc -eq 0 ]
start_vm vm4 -drive "file=$D/tmpl.qcow2,if=none,id=drive0,format=qcow2,readonly=on" || exit 1
VM4=$VM_PID
run "$SNAPMIG" abort "${SM[@]}" mv4
check "abort reports D/tmpl.qcow2 kept, naming VM4's QEMU" \
  grep -qF "kept $D/tmpl.qcow2: in use: held by qemu-system-x86_64 (pid $VM4)" <<<"$out"
check "D/tmpl.qcow2 is kept" [ -e "$D/tmpl.qcow2" ]
check "VM4 reads it" gr vm4 drive0 0x11 0 2M
check "vm runs on its source chain" [ "$(top_file drive0)" = "$C/top.mv4.qcow2" ]
check "vm is running" [ "$(run_state vm)" = running ]
check "VM4 quits" quit_vm vm4 "$VM4"
run "$SNAPMIG" abort "${SM[@]}" mv4
check "abort again, once D/tmpl.qcow2 is free, succeeds" [ $rc -eq 0 ]
check "D is empty" [ -z "$(ls -A "$D")" ]
check "no move record of vm is left" [ -z "$(find "$T/state" -path '*/lsm/*' ! -name 'w1.*')" ]

# ---- 5. recover of a crashed create keeps a created file held since -----
F=$T/F
mkdir -p "$F"
SNAPMIG_TEST_CRASH_AFTER_STEP=1 run "$SNAPMIG" create "${SM[@]}" \
  --mirror-domain "$F" --name mv5
check "create crashed after pre-creating F's files" [ $rc -eq 137 -a -e "$F/tmpl.qcow2" ]
start_vm vm5 -drive "file=$F/tmpl.qcow2,if=none,id=drive0,format=qcow2,readonly=on" || exit 1
VM5=$VM_PID
run "$SNAPMIG" recover "${SM[@]}"
check "recover reports F/tmpl.qcow2 kept, naming VM5's QEMU" \
  grep -qF "kept $F/tmpl.qcow2: in use: held by qemu-system-x86_64 (pid $VM5)" <<<"$out"
check "F/tmpl.qcow2 is kept" [ -e "$F/tmpl.qcow2" ]
check "F's other files are removed" [ "$(ls -A "$F")" = tmpl.qcow2 ]
check "VM5 reads it (the empty pre-created layer)" gr vm5 drive0 0 0 2M
check "vm runs on its chain" [ "$(top_file drive0)" = "$C/top.mv4.qcow2" ]
check "vm is running" [ "$(run_state vm)" = running ]
check "VM5 quits" quit_vm vm5 "$VM5"
run "$SNAPMIG" recover "${SM[@]}"
check "recover again, once F/tmpl.qcow2 is free, succeeds" [ $rc -eq 0 ]
check "F is empty" [ -z "$(ls -A "$F")" ]
check "no journal of vm is left" \
  [ -z "$(find "$T/state" -path '*/journal/*' ! -path '*vm1*')" ]

# ---- offline, once the VMs quit -----------------------------------------
check "VM1 quits" quit_vm vm1 "$VM1"
check "VM3 quits" quit_vm vm3 "$VM3"
check "vm quits" quit_vm vm "$VM_MAIN"
check "offline: VM1's template data" offline_read "$B/vm1.qcow2" 0x44 0 4M
check "offline: VM1's own data" offline_read "$B/vm1.qcow2" 0x55 8M 1M
check "offline: B/tmpl.qcow2 is byte-identical" cmp -s "$B/tmpl.qcow2" "$T/tmpl.before"
check "offline: VM3's base data" offline_read "$A/vm3.qcow2" 0x11 0 2M
check "offline: VM3's own data" offline_read "$A/vm3.qcow2" 0x66 12M 1M
for r in "0x11 0 2M" "0x22 4M 1M" "0x77 6M 1M"; do
  read -r p o l <<<"$r"
  check "offline: vm's $p at $o in C" offline_read "$C/top.mv4.qcow2" "$p" "$o" "$l"
done

done_testing
