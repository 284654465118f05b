#!/usr/bin/env bash
# snapmig create's other ways and rules, against a real QEMU: a
# <domainsnapshot> document with <mirror>, --json events, --dry-run touching
# nothing, the VM lock, refusals that need the VM (a disk with a block job,
# pivot of a snapshot that is not current or has no mirror), snapshots taken
# one by one without `transaction` (and the partial result when one fails),
# an atomic transaction QEMU refuses changing nothing, --no-metadata, and
# pivot --delete-source.
. "$(dirname "$0")/lib.sh"

lsm_setup
command -v flock >/dev/null || skip_all "flock missing"
start_2disk_vm 0x21 || exit 1

snapshots () { ls "$T"/state/vms/*/snapshots/ 2>/dev/null | sed 's/\.xml$//' | sort | tr '\n' ' '; }
current () { cat "$T"/state/vms/*/current 2>/dev/null; }
run () {   # run COMMAND...: its output in $out, its status in $rc
  out=$("$@" 2>&1); rc=$?
  echo "$out" | sed 's/^/# /'
}
# no_jobs: waits (10 s at most) until QEMU runs no block job.
no_jobs () {
  local deadline=$(( $(date +%s) + 10 ))
  while [ "$(qmp vm query-block-jobs | jq length)" != 0 ]; do
    [ "$(date +%s)" -lt $deadline ] || return 1
    sleep 0.05
  done
}

# --dry-run changes nothing.
before=$(ls -A "$A" "$B")
run "$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name dry --dry-run
check "--dry-run prints the transaction" grep -q '^qmp transaction' <<<"$out"
check "--dry-run creates no file, takes no snapshot, writes no state" \
  [ "$(ls -A "$A" "$B")" = "$before" -a "$(top_file drive0)" = "$A/top.qcow2" \
    -a ! -e "$T/state/vms" ]

# The lock: another snapmig acting on the VM makes create wait for nobody.
"$SNAPMIG" status "${SM[@]}" >/dev/null 2>&1   # makes the VM's state dir
vmdir=$(echo "$T"/state/vms/*)
exec 9>"$vmdir/lock"
flock 9
run "$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name locked
check "a locked VM is refused" [ $rc -ne 0 ]
check "the refusal says the VM is locked" grep -qi 'lock\|busy\|held' <<<"$out"
exec 9>&-

# A <domainsnapshot> with a <mirror> for drive0, drive1 left alone; --json.
cat >"$T/x1.xml" <<XML
<domainsnapshot>
  <name>x1</name>
  <disks>
    <disk name='drive0' snapshot='external'>
      <source file='$A/top.x1.qcow2'/>
      <mirror file='$B/top.x1.qcow2' format='qcow2'/>
    </disk>
    <disk name='drive1' snapshot='no'/>
  </disks>
</domainsnapshot>
XML
run "$SNAPMIG" create "${SM[@]}" --json "$T/x1.xml"
check "create FILE succeeds" [ $rc -eq 0 ]
check "--json prints one JSON object per line" \
  jq -e -s 'length >= 2 and all(.[]; .event != null)' <<<"$out"
check "--json's created event names the snapshot" \
  jq -e -s 'any(.[]; .event == "created" and .snapshot == "x1")' <<<"$out"
check "drive0 moved to its new top, drive1 untouched" \
  [ "$(top_file drive0)" = "$A/top.x1.qcow2" -a "$(top_file drive1)" = "$A/d1.raw" ]
check "the snapshot is recorded as current" [ "$(snapshots)" = "x1 " -a "$(current)" = x1 ]

run "$SNAPMIG" create "${SM[@]}" --diskspec drive0 --name busy1
check "a disk with a block job running is refused" [ $rc -ne 0 ]
check "the refusal names the disk and its block job" \
  grep -q 'drive0 has a block job running' <<<"$out"

run "$SNAPMIG" create "${SM[@]}" --diskspec "drive1,file=$A/d1.y1.qcow2" --name y1
check "a snapshot of drive1 without mirror" [ $rc -eq 0 -a "$(current)" = y1 ]
run "$SNAPMIG" pivot "${SM[@]}" x1
check "pivot of a snapshot that is not current is refused" [ $rc -ne 0 ]
check "the refusal says x1 is not the current snapshot" \
  grep -q 'x1 is not the current snapshot' <<<"$out"
check "and the VM still runs on the source" [ "$(top_file drive0)" = "$A/top.x1.qcow2" ]
run "$SNAPMIG" pivot "${SM[@]}" y1
check "pivot of a snapshot without mirror is refused" [ $rc -ne 0 ]
check "the refusal says y1 has no mirror" grep -q 'y1 has no mirror' <<<"$out"
run "$SNAPMIG" abort "${SM[@]}" x1
check "abort of the non-current x1 works" [ $rc -eq 0 -a -z "$(ls -A "$B")" ]
check "drive0 stays on x1's new top" [ "$(top_file drive0)" = "$A/top.x1.qcow2" ]

# Without `transaction`: one blockdev-snapshot-sync per disk.
run env SNAPMIG_QMP_DISABLE=transaction "$SNAPMIG" create "${SM[@]}" \
  --diskspec drive0 --diskspec drive1 --name nt1
check "without transaction, a non-atomic snapshot of two disks works" \
  [ $rc -eq 0 -a "$(top_file drive0)" = "$A/top.nt1.qcow2" \
    -a "$(top_file drive1)" = "$A/d1.nt1.qcow2" ]

# A job QEMU knows under another id blocks snapshots of drive1: QEMU refuses
# the second snapshot, so the one-by-one path reports a partial result...
qmp vm drive-mirror "{\"device\": \"drive1\", \"job-id\": \"other\",
  \"target\": \"$T/scratch.qcow2\", \"format\": \"qcow2\", \"sync\": \"full\",
  \"speed\": 1}" >/dev/null
run env SNAPMIG_QMP_DISABLE=transaction "$SNAPMIG" create "${SM[@]}" \
  --diskspec drive0 --diskspec drive1 --name nt2
check "partial: create fails" [ $rc -ne 0 ]
check "partial: says disk by disk what happened" \
  grep -q 'disk drive0: snapshot taken.*disk drive1: not snapshotted' <<<"$out"
check "partial: query-block agrees" \
  [ "$(top_file drive0)" = "$A/top.nt2.qcow2" -a "$(top_file drive1)" = "$A/d1.nt1.qcow2" ]
check "partial: no new top left for drive1" [ ! -e "$A/d1.nt2.qcow2" ]
check "partial: the metadata records the snapshot taken" \
  grep -q "top.nt2.qcow2" "$T"/state/vms/*/snapshots/nt2.xml
# ... while the atomic transaction is refused whole.
run "$SNAPMIG" create "${SM[@]}" --atomic --diskspec drive0 --diskspec drive1 --name at1
check "atomic: QEMU's refusal fails create" [ $rc -ne 0 ]
check "atomic: the message names drive1" grep -q 'drive1' <<<"$out"
check "atomic: neither disk changed" \
  [ "$(top_file drive0)" = "$A/top.nt2.qcow2" -a "$(top_file drive1)" = "$A/d1.nt1.qcow2" ]
check "atomic: no new top left" [ ! -e "$A/top.at1.qcow2" -a ! -e "$A/d1.at1.qcow2" ]
qmp vm block-job-cancel '{"device": "other", "force": true}' >/dev/null
check "the other job ends" no_jobs

run "$SNAPMIG" create "${SM[@]}" --no-metadata --diskspec drive1 --name nm
check "--no-metadata takes the snapshot" \
  [ $rc -eq 0 -a "$(top_file drive1)" = "$A/d1.nm.qcow2" ]
check "--no-metadata does not record it" eval '! grep -q nm <<<"$(snapshots)"'

# A move of drive0 with write-blocking mirror and a bandwidth, then pivot
# --delete-source: drive0's source chain goes, drive1's files stay.
guest_write vm drive0 0x33 4M 1M >/dev/null
run "$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --diskspec drive0 --name mv \
  --copy-mode write-blocking --bandwidth 64M
check "create with --copy-mode write-blocking --bandwidth 64M" [ $rc -eq 0 ]
guest_write vm drive0 0x34 5M 1M >/dev/null
run "$SNAPMIG" pivot "${SM[@]}" --delete-source --json mv
check "pivot --delete-source --json succeeds" [ $rc -eq 0 ]
check "pivot --json ends with its ok result" \
  eval 'jq -e -s "last | .event == \"result\" and .ok" <<<"$out" >/dev/null'
check "drive0 runs in B" [ "$(top_file drive0)" = "$B/top.mv.qcow2" ]
check "drive0's source chain is removed from A" \
  [ ! -e "$A/top.qcow2" -a ! -e "$A/base.qcow2" -a ! -e "$A/top.mv.qcow2" ]
check "drive1's files stay in A" [ -e "$A/d1.raw" -a -e "$A/d1.nm.qcow2" ]
ok_all=0
for r in "0x11 0 2M" "0x33 4M 1M" "0x34 5M 1M"; do
  read -r p o l <<<"$r"
  guest_read vm drive0 "$p" "$o" "$l" >/dev/null || ok_all=1
done
check "drive0's data reads back after the move" [ $ok_all -eq 0 ]

done_testing
