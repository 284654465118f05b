#!/usr/bin/env bash
# A pivot whose switch fails part-way, against a real QEMU: the mirror of
# drive1 is paused (QEMU accepts block-job-complete but the job cannot end),
# so drive0 switches and drive1 does not within pivot --timeout.  pivot says
# which disk runs where, the guest runs again, the snapshot stays; once the
# job is resumed a second pivot finishes the job.
. "$(dirname "$0")/lib.sh"

lsm_setup

qemu-img create -q -f qcow2 "$A/d0.qcow2" 16M
qemu-img create -q -f qcow2 "$A/d1.qcow2" 16M
start_vm vm -drive "$(drive_opt drive0 "$A/d0.qcow2" qcow2)" \
            -drive "$(drive_opt drive1 "$A/d1.qcow2" qcow2)" || exit 1
guest_write vm drive0 0x10 0 1M >/dev/null
guest_write vm drive1 0x11 0 1M >/dev/null


"$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name p1 --wait >/dev/null 2>&1
check "create --wait" [ $? -eq 0 ]
guest_write vm drive0 0x20 1M 1M >/dev/null
guest_write vm drive1 0x21 1M 1M >/dev/null
qmp vm block-job-pause '{"device": "snapmig-mirror-drive1"}' >/dev/null

out=$("$SNAPMIG" pivot "${SM[@]}" --timeout 2 p1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "a pivot that fails part-way fails" [ $rc -ne 0 ]
check "it names the disk that did not switch" \
  grep -q 'disk drive1: block job snapmig-mirror-drive1 did not end in time' <<<"$out"
check "it says which disk runs where" \
  grep -q "disk drive0 runs on $B/d0.p1.qcow2 (destination); disk drive1 runs on $A/d1.p1.qcow2 (source)" <<<"$out"
check "query-block agrees" \
  [ "$(top_file drive0)" = "$B/d0.p1.qcow2" -a "$(top_file drive1)" = "$A/d1.p1.qcow2" ]
check "the guest runs again" [ "$(qmp vm query-status | jq -r .status)" = running ]
check "the snapshot stays" [ -e "$(echo "$T"/state/vms/*/snapshots/p1.xml)" ]

# writes_read: every write of the test reads back in the guest (the one that
# does not is named).
writes_read () {
  local r d p o all=0
  for r in "drive0 0x10 0" "drive0 0x20 1M" "drive1 0x11 0" "drive1 0x21 1M" "drive1 0x31 2M"; do
    read -r d p o <<<"$r"
    guest_read vm "$d" "$p" "$o" 1M >/dev/null || { echo "# $r"; all=1; }
  done
  [ $all -eq 0 ]
}

qmp vm block-job-resume '{"device": "snapmig-mirror-drive1"}' >/dev/null
guest_write vm drive1 0x31 2M 1M >/dev/null
out=$("$SNAPMIG" pivot "${SM[@]}" p1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "a second pivot finishes the job" [ $rc -eq 0 ]
check "both disks run in B" \
  [ "$(top_file drive0)" = "$B/d0.p1.qcow2" -a "$(top_file drive1)" = "$B/d1.p1.qcow2" ]
check "the snapshot is gone" [ -z "$(ls -A "$T"/state/vms/*/snapshots/)" ]
check "every write reads back" writes_read

# pivot --delete-source lists what it removed: one line per file, and
# with --json the pivoted result holds the array of the files (absolute
# paths).  Each time the files are both disks' chains in the source domain.
C=$T/C D=$T/D
mkdir -p "$C" "$D"
"$SNAPMIG" create "${SM[@]}" --mirror-domain "$C" --name p2 --wait >"$T/cout" 2>&1
rc=$?
sed 's/^/# /' "$T/cout" | grep -v '^# {'
check "create --wait to C" [ $rc -eq 0 ]
before=$( { chain_files drive0; chain_files drive1; } | sort)
out=$("$SNAPMIG" pivot "${SM[@]}" --delete-source p2 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "pivot --delete-source succeeds" [ $rc -eq 0 ]
check "it removes the chains in B" [ -n "$before" -a -z "$(ls -A "$B")" ]
check "the files were B's" [ "$(grep -vc "^$B/" <<<"$before")" -eq 0 ]
check "it prints one line per file removed" \
  [ "$(sed -n 's/^removed //p' <<<"$out" | sort)" = "$before" ]

"$SNAPMIG" create "${SM[@]}" --mirror-domain "$D" --name p3 --wait >"$T/cout" 2>&1
rc=$?
sed 's/^/# /' "$T/cout" | grep -v '^# {'
check "create --wait to D" [ $rc -eq 0 ]
before=$( { chain_files drive0; chain_files drive1; } | sort)
out=$(cd "$T" && "$SNAPMIG" pivot --state-dir state --qmp vm.qmp --delete-source --json p3 2>"$T/err")
rc=$?
grep '"event":"result"' <<<"$out" | sed 's/^/# /'
check "pivot --delete-source --json succeeds" [ $rc -eq 0 ]
echo "$out" >"$T/pivot.json"
check "pivot --json: every line is valid against the schema" json_valid pivot "$T/pivot.json"
removed=$(jq -r 'select(.event == "result") | .removed[]' <<<"$out" | sort)
check "the pivoted result lists the files removed" \
  [ -n "$before" -a "$removed" = "$before" ]
check "each one absolute and gone" \
  bash -c 'for f in $1; do [[ $f == /* && ! -e $f ]] || exit 1; done' _ "$removed"
check "C is empty" [ -z "$(ls -A "$C")" ]
check "every write reads back in D" writes_read

done_testing
