#!/usr/bin/env bash
# snapmig list / dumpxml / delete / current: the snapshot metadata snapmig
# keeps per VM.  Snapshots are recorded with tests/tools/sm-state-put (a test
# tool storing an XML file through lib/state, standing in for `snapmig
# create`).  A real QEMU provides the socket; the commands never connect to
# it and keep working once it is gone.
source "$(dirname "$0")/lib.sh"

PUT="$SM_TOP/tests/tools/sm-state-put"
[ -x "$SNAPMIG" ] || skip_all "cli/snapmig is not built"
[ -x "$PUT" ] || skip_all "tests/tools/sm-state-put is not built"
command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"

S="$T/state"
SOCK="$T/vm.qmp"

# run EXPECTED-EXIT CMD...: runs CMD, keeps stdout in $out and stderr in $err.
run () {
  local want=$1; shift
  "$@" >"$T/out" 2>"$T/err"
  rc=$?
  out=$(cat "$T/out"); err=$(cat "$T/err")
  if [ "$rc" -ne "$want" ]; then
    echo "# '$*' exited $rc, expected $want"
    sed 's/^/# stdout: /' "$T/out"; sed 's/^/# stderr: /' "$T/err"
    return 1
  fi
}
sm () { "$SNAPMIG" "$1" --qmp "$SOCK" --state-dir "$S" "${@:2}"; }

# snapshot_xml NAME CREATION-TIME [MIRROR]: a two-disk external snapshot.
snapshot_xml () {
  local mirror=""
  [ -n "${3:-}" ] && mirror="<mirror file='$3' format='qcow2'/>"
  cat <<EOF
<domainsnapshot>
  <name>$1</name>
  <description>snapshot $1</description>
  <state>disk-snapshot</state>
  <creationTime>$2</creationTime>
  <disks>
    <disk name='vda' snapshot='external' type='file'>
      <driver type='qcow2'/>
      <source file='$T/vda.$1.qcow2'/>
      $mirror
    </disk>
    <disk name='vdb' snapshot='no'/>
  </disks>
</domainsnapshot>
EOF
}
put () {   # put [--current] NAME TIME [MIRROR]
  local cur=()
  if [ "$1" = --current ]; then cur=(--current); shift; fi
  snapshot_xml "$@" >"$T/$1.xml"
  "$PUT" "${cur[@]}" "$S" "$SOCK" "$T/$1.xml"
}

start_vm vm || { not_ok "start QEMU"; done_testing; }

# No snapshots yet.
check "list: nothing recorded prints nothing, exit 0" \
  eval 'run 0 sm list && [ -z "$out" ] && [ -z "$err" ]'
check "list --json: no snapshots, none current" \
  eval 'run 0 sm list --json && python3 -c "import json,sys; d = json.load(open(sys.argv[1])); assert d[\"snapshots\"] == [] and d[\"current\"] is None, d" "$T/out"'
check "list --json: valid against the schema" json_valid list "$T/out"
check "current: none, exit 3 (not-found) with a message" \
  eval "run 3 sm current && [ \"\$err\" = \"snapmig: error: VM $SOCK has no current snapshot\" ]"

check "record s2 (newest)" put s2 1700000200
check "record s1 (oldest)" put s1 1700000100
check "record s3 with a move in progress, current" \
  put --current s3 1700000150 "$T/dst/vda.s3.qcow2"

# list: oldest first, '*' on the current one, mirrors shown.
check "list: three lines" eval 'run 0 sm list && [ "$(echo "$out" | wc -l)" -eq 3 ]'
check "list: oldest creationTime first" \
  eval '[ "$(echo "$out" | awk "{print \$1 == \"*\" ? \$2 : \$1}" | tr "\n" " ")" = "s1 s3 s2 " ]'
check "list: '*' marks the current snapshot only" \
  eval '[ "$(echo "$out" | grep -c "^\*")" -eq 1 ] && echo "$out" | grep -q "^\* s3 "'
when=$(date -d @1700000100 +%Y-%m-%dT%H:%M:%S%:z)
check "list: creation time in ISO 8601 local time" \
  eval 'echo "$out" | grep "^  s1 " | grep -qF "$when"'
check "list: state and disks" \
  eval 'echo "$out" | grep "^  s1 " | grep -q "disk-snapshot  *vda$"'
check "list: the disk move's destination" \
  eval 'echo "$out" | grep "^\* s3 " | grep -qF "vda (mirror: $T/dst/vda.s3.qcow2)"'

check "list --json: names in order, current flag, mirror" \
  eval 'run 0 sm list --json && python3 - "$T/out" "$T" <<EOF
import json, sys
d = json.load(open(sys.argv[1]))
a = d["snapshots"]
t = sys.argv[2]
assert d["current"] == "s3", d
assert [s["name"] for s in a] == ["s1", "s3", "s2"], a
assert [s["current"] for s in a] == [False, True, False], a
assert a[0]["creation-time-seconds"] == 1700000100, a[0]
assert a[0]["creation-time"] == "2023-11-14T22:15:00Z", a[0]
assert a[0]["state"] == "disk-snapshot", a[0]
assert a[1]["disks"][0]["mirror"] == {"file": t + "/dst/vda.s3.qcow2", "format": "qcow2"}
assert a[0]["disks"][0]["mirror"] is None and a[0]["disks"][1]["snapshot"] == "no"
EOF'

# The same VM named differently.
check "another spelling of the socket finds the same snapshots" \
  eval 'run 0 "$SNAPMIG" list --qmp "$T/./sub/../vm.qmp" --state-dir "$S" \
          && [ "$(echo "$out" | wc -l)" -eq 3 ]'
mkdir -p "$T/sub"
check "a relative socket path finds them too" \
  eval '(cd "$T/sub" && run 0 "$SNAPMIG" current --qmp ../vm.qmp --state-dir "$S") \
          && [ "$(cat "$T/out")" = s3 ]'
check "another VM has none" \
  eval 'run 0 "$SNAPMIG" list --qmp "$T/other.qmp" --state-dir "$S" && [ -z "$out" ]'

# dumpxml gives back the recorded document.
check "dumpxml: the stored XML" \
  eval 'run 0 sm dumpxml s1 && echo "$out" | grep -q "<name>s1</name>" &&
        echo "$out" | grep -q "<creationTime>1700000100</creationTime>" &&
        echo "$out" | grep -qF "$T/vda.s1.qcow2"'
check "dumpxml: output is a valid snapshot document (sm-state-put reads it)" \
  eval 'sm dumpxml s3 >"$T/again.xml" && "$PUT" "$S" "$T/again.qmp" "$T/again.xml"'
check "dumpxml: unknown snapshot, exit 3 (not-found)" \
  eval "run 3 sm dumpxml nope && [[ \"\$err\" == \"snapmig: error: snapshot 'nope' not found for VM $SOCK (its snapshots: \"*s1*\"; see 'snapmig list')\" ]] && [ -z \"\$out\" ]"
check "dumpxml: a name that is no file name is refused (2, invalid-input)" \
  eval "run 2 sm dumpxml ../vm && [ \"\$err\" = \"snapmig: error: snapshot name '../vm' must not start with '.'\" ] &&
        run 2 sm dumpxml a/b && [ \"\$err\" = \"snapmig: error: snapshot name 'a/b' must not contain '/'\" ]"
check "dumpxml: missing NAME is a usage error" \
  eval 'run 2 sm dumpxml && echo "$err" | grep -q "^snapmig: error: dumpxml: missing snapshot name"'
check "dumpxml: extra argument is a usage error" eval 'run 2 sm dumpxml s1 s2'
check "no --qmp is a usage error" \
  eval 'run 2 "$SNAPMIG" list --state-dir "$S" && echo "$err" | grep -q -- "--qmp SOCKET is required"'
check "--help says no connection is made" \
  eval 'run 0 "$SNAPMIG" list --help && echo "$out" | grep -q "does not connect"'

# current
check "current: prints the current snapshot" eval 'run 0 sm current && [ "$out" = s3 ]'
check "current NAME: sets it" eval 'run 0 sm current s1 && run 0 sm current && [ "$out" = s1 ]'
check "current NAME: unknown snapshot refused, current unchanged" \
  eval "run 3 sm current nope && [[ \"\$err\" == \"snapmig: error: snapshot 'nope' not found for VM $SOCK (its snapshots: \"*s1*\"; see 'snapmig list')\" ]] &&
        run 0 sm current && [ \"\$out\" = s1 ]"
sm current s3 >/dev/null 2>&1

# delete
check "delete: unknown snapshot, exit 3 (not-found)" \
  eval "run 3 sm delete nope && [[ \"\$err\" == \"snapmig: error: snapshot 'nope' not found for VM $SOCK (its snapshots: \"*s1*\"; see 'snapmig list')\" ]]"
check "delete: a snapshot with a move in progress is refused (4, busy)" \
  eval 'run 4 sm delete s3 && echo "$err" | grep -q "snapmig pivot" && echo "$err" | grep -q "snapmig abort"'
check "delete: ...and kept" eval 'run 0 sm dumpxml s3'
if command -v flock >/dev/null; then
  # The VM's state directory is the one whose `vm` file names the socket.
  lock=$(grep -lxF "$(realpath "$SOCK")" "$S"/vms/*/vm | sed 's,/vm$,/lock,')
  # Holds the VM's lock as a running snapmig would (flock(1) on the same file).
  check "delete: refused while another process holds the VM's lock (4, busy)" \
    eval 'flock -n "$lock" "$SNAPMIG" delete s2 --qmp "$SOCK" --state-dir "$S" >"$T/out" 2>"$T/err";
          [ $? -eq 4 ] && grep -q "^snapmig: error: VM $SOCK is locked by another snapmig" "$T/err"'
  check "current NAME: refused while locked (4, busy)" \
    eval 'flock -n "$lock" "$SNAPMIG" current s1 --qmp "$SOCK" --state-dir "$S" >/dev/null 2>&1; [ $? -eq 4 ]'
  check "list: works while locked (reads only)" \
    eval 'flock -n "$lock" "$SNAPMIG" list --qmp "$SOCK" --state-dir "$S" >/dev/null'
else
  skip "flock(1) missing"
fi
check "delete --metadata-only: deletes it, warning the move is left running" \
  eval 'run 0 sm delete --metadata-only s3 && echo "$err" | grep -q "^snapmig: warning: .*vda"'
check "delete: the current snapshot's deletion leaves none current" \
  eval 'run 3 sm current && run 3 sm dumpxml s3'
check "delete: a plain snapshot" eval 'run 0 sm delete s1 && [ -z "$out$err" ]'
check "list: what is left" \
  eval 'run 0 sm list && [ "$(echo "$out" | awk "{print \$1}")" = s2 ]'

# The VM is gone: its metadata is still there.
kill -9 "$VM_PID"; wait "$VM_PID" 2>/dev/null
check "after QEMU died: list still works" \
  eval 'run 0 sm list && [ "$(echo "$out" | awk "{print \$1}")" = s2 ]'
check "after QEMU died (socket file removed): delete still works" \
  eval 'rm -f "$SOCK" && run 0 sm delete s2 && run 0 sm list && [ -z "$out" ]'

done_testing
