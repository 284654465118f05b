#!/usr/bin/env bash
# No option of create is accepted and ignored (issue 13), each as users of
# virsh snapshot-create expect:
# - --mirror-domain DIR and --diskspec DISK,mirror=PATH mirror by
#   themselves (they imply --mirror); --mirror with no destination, and
#   --bandwidth or --copy-mode without a mirror, are usage errors (exit 2);
#   a --mirror-domain no disk would use is refused;
# - without any mirror destination create takes a plain external snapshot:
#   a new top beside the old one, no block job, recorded;
# - a snapshot XML that asks for the memory state is refused naming
#   --disk-only, and taken without it (with a note) under --disk-only.
. "$(dirname "$0")/lib.sh"

lsm_setup
qemu-img create -q -f qcow2 "$A/d0.qcow2" 8M
start_vm vm -drive "$(drive_opt drive0 "$A/d0.qcow2" qcow2)" || exit 1
gw drive0 0x31 0 1M

# exited RC WANT: RC is WANT; otherwise say what stderr ($T/err) said.
exited () {
  [ "$1" -eq "$2" ] && return 0
  echo "# exit status $1, expected $2; stderr:"; sed 's/^/#   /' "$T/err"
  return 1
}
# jobs_of_vm: "TYPE ID " for every block job of the VM (QEMU names a job
# by its id, snapmig-mirror-DISK).
jobs_of_vm () { qmp vm query-block-jobs | jq -r '.[] | .type + " " + .device' | sort | tr '\n' ' '; }
abort_move () { "$SNAPMIG" abort "${SM[@]}" "$1" >/dev/null 2>"$T/err"; }

# ---- mirror destinations request mirroring themselves --------------------
"$SNAPMIG" create "${SM[@]}" --name m1 --mirror-domain "$B" >"$T/out" 2>"$T/err"; rc=$?
check "create --mirror-domain without --mirror exits 0" exited $rc 0
check "create --mirror-domain without --mirror mirrors" \
  test "$(jobs_of_vm)" = "mirror snapmig-mirror-drive0 "
check "abort m1" abort_move m1

"$SNAPMIG" create "${SM[@]}" --name m2 --diskspec "drive0,mirror=$B/m2.qcow2" \
  >"$T/out" 2>"$T/err"; rc=$?
check "create --diskspec DISK,mirror= without --mirror exits 0" exited $rc 0
check "create --diskspec DISK,mirror= without --mirror mirrors" \
  test "$(jobs_of_vm)" = "mirror snapmig-mirror-drive0 "
check "create --diskspec DISK,mirror= created that file" test -f "$B/m2.qcow2"
check "abort m2" abort_move m2
check "the VM runs on d0.qcow2's new top in A after the aborts" \
  chain_in_dir "$A" drive0

# ---- usage errors: options that need a mirror ----------------------------
top_before=$(top_file drive0)
for opt in --mirror "--bandwidth 1M" "--copy-mode write-blocking"; do
  read -r -a o <<<"$opt"
  "$SNAPMIG" create "${SM[@]}" --name u1 --diskspec drive0 "${o[@]}" \
    >"$T/out" 2>"$T/err"; rc=$?
  check "create ${o[0]} without a mirror destination exits 2" exited $rc 2
  check "create ${o[0]} without a mirror destination: the error names ${o[0]} and the fix" \
    grep -q -- "${o[0]}: no disk has a mirror destination (use --mirror-domain" "$T/err"
done
"$SNAPMIG" create "${SM[@]}" --name u2 --mirror-domain "$B" \
  --diskspec "drive0,mirror=$B/u2.qcow2" >"$T/out" 2>"$T/err"; rc=$?
check "create --mirror-domain that no disk uses exits 2 (invalid-input)" exited $rc 2
check "create --mirror-domain that no disk uses: the error says so" \
  grep -qF -- "--mirror-domain $B: no disk would move there" "$T/err"
check "the refused creates changed nothing" test "$(top_file drive0)" = "$top_before"
check "the refused creates left no job" test -z "$(jobs_of_vm)"

# ---- no mirror destination: a plain external snapshot --------------------
# (drive0 runs on d0.m2.qcow2 <- d0.m1.qcow2 <- d0.qcow2: the new top is
# d0.p1.qcow2, the earlier suffix stripped.)
"$SNAPMIG" create "${SM[@]}" --name p1 >"$T/out" 2>"$T/err"; rc=$?
check "create --name alone exits 0" exited $rc 0
check "create --name alone: the new top beside the old one" \
  test "$(top_file drive0)" = "$A/d0.p1.qcow2"
check "create --name alone: backed by the old top" \
  test "$(chain_files drive0 | sed -n 2p)" = "$top_before"
check "create --name alone: no block job" test -z "$(jobs_of_vm)"
check "create --name alone: the snapshot is recorded" \
  grep -qx p1 <("$SNAPMIG" list "${SM[@]}" --json | jq -r '.snapshots[].name' 2>/dev/null)
check "the guest's data reads back after the plain snapshot" all_read

# ---- <memory> and <state>: refused, or left out with --disk-only ----------
cat >"$T/mem.xml" <<EOF
<domainsnapshot>
  <name>mem1</name>
  <memory snapshot='external' file='$T/mem1.save'/>
  <disks><disk name='drive0' snapshot='external'/></disks>
</domainsnapshot>
EOF
sed -e 's/mem1/run1/g' -e "s|  <memory .*|  <state>running</state>|" "$T/mem.xml" >"$T/run.xml"
top_before=$(top_file drive0)
for x in mem run; do
  "$SNAPMIG" create "${SM[@]}" "$T/$x.xml" >"$T/out" 2>"$T/err"; rc=$?
  check "create $x.xml (memory state asked for) exits 2 (invalid-input)" exited $rc 2
  check "create $x.xml: the error names --disk-only" grep -q -- "--disk-only" "$T/err"
done
check "create mem.xml: the error quotes the <memory> element" \
  grep -qF "<memory snapshot='external' file='$T/mem1.save'>" <(
    "$SNAPMIG" create "${SM[@]}" "$T/mem.xml" 2>&1)
check "the refused snapshots changed nothing" test "$(top_file drive0)" = "$top_before"

"$SNAPMIG" create "${SM[@]}" --disk-only "$T/mem.xml" >"$T/out" 2>"$T/err"; rc=$?
check "create --disk-only mem.xml exits 0" exited $rc 0
check "create --disk-only: a note says the memory state is left out" \
  grep -q "^snapmig: note: create: snapshot mem1: the memory state it asks for .* is left out (--disk-only)" "$T/err"
check "create --disk-only: the disk got its new top" \
  test "$(top_file drive0)" != "$top_before"
check "create --disk-only: no memory image was written" test ! -e "$T/mem1.save"
"$SNAPMIG" dumpxml "${SM[@]}" mem1 >"$T/mem1.out" 2>"$T/err"
check "the recorded snapshot has no <memory>" not grep -q "<memory" "$T/mem1.out"
check "the recorded snapshot says disk-snapshot" \
  grep -q "<state>disk-snapshot</state>" "$T/mem1.out"
check "the guest's data reads back after the --disk-only snapshot" all_read

done_testing
