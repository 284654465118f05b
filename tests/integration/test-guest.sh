#!/usr/bin/env bash
# The real Linux guest (scripts/build-guest, tests/harness/guest.sh) and what
# it is for: one TCG guest with two virtio disks, drive0 on a qcow2 chain
# (base.qcow2 holding records written offline <- top.qcow2) and drive1 on a
# raw disk, writes numbered records, holds a RAM payload and keeps a
# 50 MiB/s write load running while snapmig moves both disks to domain B
# (create --mirror, then pivot); then, with a 20 MiB/s load, the running
# guest migrates to a second QEMU on B's files.  Every record and the load's
# region read back in the guest, on the second QEMU and, once it quit,
# offline from B's files; the RAM payload's md5 never changes.  Skipped (77)
# only when the guest's packages cannot be had.  The boot time, the load's
# achieved rates and the migration's figures are printed as comments, never
# asserted.
. "$(dirname "$0")/lib.sh"
. "$SM_TOP/tests/harness/guest.sh"

lsm_setup
# vda: a chain whose base.qcow2 holds records 0..63 (generation 1); vdb: raw.
start_guest_2disk 128M

# g "COMMAND": one agent command (guest_do), its reply in $REPLY.
g () { guest_do vm "$1"; }

check "ping is answered" g ping
check "the reply is pong" [ "$REPLY" = pong ]
check "the guest sees two disks" g info
check "... vda and vdb" grep -q '^disks vda vdb$' <<<"$REPLY"
check "the guest reads base.qcow2's records through the chain" g "verify vda 0 64 1"
# fails COMMAND...: true when COMMAND fails (a check that must see a FAIL).
fails () { ! "$@"; }
check "verify fails on a record never written" guest_fails vm "verify vda 64 1"
check "... and names it" grep -q "^BAD vda record 64: found '\.*'$" <<<"$REPLY"

# Records written by the guest: over base's (generation 2) and past them,
# and on the raw disk.
check "write vda 32..63 gen 2 (over base.qcow2's)" g "write vda 32 32 2"
check "write vda 64..263" g "write vda 64 200"
check "write vdb 0..199" g "write vdb 0 200"
check "verify vda 0..31 gen 1" g "verify vda 0 32 1"
check "verify vda 32..63 gen 2" g "verify vda 32 32 2"
check "verify vda 64..263" g "verify vda 64 200"
check "verify vdb 0..199" g "verify vdb 0 200"

# A RAM payload whose md5 must never change.
check "ram 32 fills 32 MiB" g "ram 32"
ramsum=$(sed -n 's/^ram 32 MiB md5 //p' <<<"$REPLY")
check "ramsum is stable" g ramsum
check "... and the same md5" [ "$REPLY" = "ramsum $ramsum" ]

# The load issue 10 measures the pause under: 50 MiB/s of O_DIRECT writes
# on vdb's region 16..48 MiB, left running through the move.  First, how fast
# the guest writes without a limit, until 128 MiB are written.
# wait_load DEV MIB: waits until DEV's load wrote MIB MiB.
wait_load () { guest_wait_load vm "$1" "$2"; }
check "an unlimited load starts on vdb" g "writeload vdb 0 16 32"
check "... writes 128 MiB" wait_load vdb 128
check "... stops" g "stop vdb"
echo "# writeload unlimited: $(sed -n 's/.* mib \([0-9]*\) cs \([0-9]*\) rate \(.*\)/\3 MiB\/s (\1 MiB in \2 cs)/p' <<<"$REPLY")"
check "its region reads back in the guest" g "loadcheck vdb"

check "a 50 MiB/s load starts on vdb" g "writeload vdb 50 16 32"
load_buffers=$REPLY
check "... is running" wait_load vdb 8

# The move, while the load runs and the guest writes more records.
out=$("$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --mirror --name m1 --wait 2>&1)
rc=$?
echo "$out" | sed 's/^/# create: /'
check "snapmig create --mirror --wait succeeds under the load" [ $rc -eq 0 ]
check "write vda 264..363 during the mirror" g "write vda 264 100"
check "write vdb 200..299 during the mirror" g "write vdb 200 100"
out=$("$SNAPMIG" pivot "${SM[@]}" m1 2>&1)
rc=$?
echo "$out" | sed 's/^/# pivot: /'
check "snapmig pivot succeeds under the load" [ $rc -eq 0 ]
check "write vda 364..413 after the pivot" g "write vda 364 50"
check "the load stops without an error" g "stop vdb"
load_line=$REPLY
echo "# writeload at 50 MiB/s through create and pivot: $(sed -n 's/.* mib \([0-9]*\) cs \([0-9]*\) rate \(.*\)/\3 MiB\/s (\1 MiB in \2 cs)/p' <<<"$load_line")"

# in_b DRIVE: every file of DRIVE's chain is in B.
in_b () { chain_in_dir "$B" "$1"; }
check "drive0's whole chain is in B" in_b drive0
check "drive1 runs in B" in_b drive1
check "the guest runs" [ "$(qmp vm query-status | jq -r .status)" = running ]
check "verify vda 0..31 gen 1 after the move" g "verify vda 0 32 1"
check "verify vda 32..63 gen 2 after the move" g "verify vda 32 32 2"
check "verify vda 64..413 after the move" g "verify vda 64 350"
check "verify vdb 0..299 after the move" g "verify vdb 0 300"
check "the load's region reads back in the guest" g "loadcheck vdb"
check "the RAM payload is unchanged" g ramsum
check "... same md5" [ "$REPLY" = "ramsum $ramsum" ]

# Then the guest migrates, running, to a second QEMU on B's files (the same
# "host"; shared storage), with a 20 MiB/s load on vdb through the migration:
# the agent answers there, RAM and records are intact.
# top_format DRIVE: the format of DRIVE's active layer in VM "vm".
top_format () {
  qmp vm query-block | jq -r --arg d "$1" '.[] | select(.device == $d) | .inserted.image.format'
}
d0=$(top_file drive0) d0_fmt=$(top_format drive0)
d1=$(top_file drive1) d1_fmt=$(top_format drive1)
check "a 20 MiB/s load starts on vdb" g "writeload vdb 20 16 32"
load_buffers=$REPLY
check "a second QEMU waits for the guest" \
  start_guest_incoming dst --disk drive0 "$d0" "$d0_fmt" --disk drive1 "$d1" "$d1_fmt"
# migrated: migrates VM "vm" to "dst" over a unix socket; waits (120 s at
# most) until the source says completed.
migrated () {
  local deadline=$(( $(date +%s) + 120 )) st
  qmp dst migrate-incoming "{\"uri\": \"unix:$T/mig.sock\"}" >/dev/null || return 1
  qmp vm migrate-set-parameters '{"max-bandwidth": 1073741824}' >/dev/null
  qmp vm migrate "{\"uri\": \"unix:$T/mig.sock\"}" >/dev/null || return 1
  while st=$(qmp vm query-migrate | jq -r .status); [ "$st" != completed ]; do
    [ "$st" != failed ] && [ "$(date +%s)" -lt $deadline ] || { echo "# migration: $st"; return 1; }
    sleep 0.1
  done
  echo "# migration: $(qmp vm query-migrate | jq -c '{"total-time", downtime, ram: .ram.transferred}')"
}
check "the running guest migrates to the second QEMU" migrated
check "the source QEMU quits" guest_quit vm
check "the guest runs on the second QEMU" [ "$(qmp dst query-status | jq -r .status)" = running ]
# gd "COMMAND": g for the guest on "dst".
gd () { guest_do dst "$1"; }
check "its agent answers there" gd ping
check "the RAM payload is unchanged after the migration" gd ramsum
check "... same md5" [ "$REPLY" = "ramsum $ramsum" ]
check "its load stops without an error" gd "stop vdb"
load_line=$REPLY
check "write vda 414..423 after the migration" gd "write vda 414 10"
check "verify vda 0..31 gen 1 after the migration" gd "verify vda 0 32 1"
check "verify vda 32..63 gen 2 after the migration" gd "verify vda 32 32 2"
check "verify vda 64..423 after the migration" gd "verify vda 64 360"
check "verify vdb 0..299 after the migration" gd "verify vdb 0 300"
check "the load's region reads back after the migration" gd "loadcheck vdb"

# Offline, from B's files only.
check "the second QEMU quits" guest_quit dst
check "drive0's view in B converts to raw" guest_image_raw "$d0" "$d0_fmt" "$T/d0.raw"
check "drive1's view in B converts to raw" guest_image_raw "$d1" "$d1_fmt" "$T/d1.raw"
check "offline: vda 0..31 gen 1" guest_records_check "$T/d0.raw" 0 32 1
check "offline: vda 32..63 gen 2" guest_records_check "$T/d0.raw" 32 32 2
check "offline: vda 64..423" guest_records_check "$T/d0.raw" 64 360
check "offline: vdb 0..299" guest_records_check "$T/d1.raw" 0 300
check "offline: vdb's load region" guest_load_check "$T/d1.raw" "$load_line" "$load_buffers"
check "offline: a record never written is not taken for one" \
  fails guest_records_check "$T/d0.raw" 424 1

done_testing
