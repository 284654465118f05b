# Sourced by every tests/integration/test-*.sh.  Gives each test a private
# temporary directory, TAP output, and real QEMU processes that are killed by
# PID (never by name) on every exit path.
set -u

SM_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SNAPMIG="$SM_TOP/cli/snapmig"
SMQ="$SM_TOP/tests/tools/smq"          # tiny QMP client built on lib/qmp
SHARED="$SM_TOP/../shared"

T=$(mktemp -d "${TMPDIR:-/tmp}/snapmig-test.XXXXXX")
_sm_pids=()
_sm_n=0
_sm_failed=0

_sm_exit_hooks=()
_sm_cleanup () {
  local p h
  for p in "${_sm_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "${_sm_pids[@]}"; do wait "$p" 2>/dev/null; done
  for ((h = ${#_sm_exit_hooks[@]} - 1; h >= 0; h--)); do
    eval "${_sm_exit_hooks[$h]}"
  done
  rm -rf "$T"
}
# at_exit 'COMMAND': runs COMMAND (eval'd) on every exit path, after the
# processes of _sm_pids are killed and before $T is removed; the hook
# registered last runs first (network namespaces, mounts under $T).
at_exit () { _sm_exit_hooks+=("$1"); }
trap _sm_cleanup EXIT
trap 'exit 130' INT TERM

# exit_status_of CODE: the exit status snapmig-json(7)'s table gives for
# error CODE ("?" for a code it does not list).
exit_status_of () {
  awk -F '\t' -v c="$1" '/^\.TS/ {t = 1; next} /^\.TE/ {t = 0}
    t && $1 == c {print $3; found = 1} END {if (!found) print "?"}' \
    "$SM_TOP/docs/snapmig-json.7"
}

# json_valid DEF FILE: FILE (one document, or JSON lines) is valid against
# schemas/snapmig.schema.json's $defs/DEF (tests/tools/json-check); prints
# where and why it is not.  Needs python3-jsonschema (scripts/install-deps).
json_valid () {
  "$SM_TOP/tests/tools/json-check" "$1" "$2" | sed 's/^/# /'
  return "${PIPESTATUS[0]}"
}

# TAP.
ok ()     { _sm_n=$((_sm_n + 1)); echo "ok $_sm_n - $*"; }
not_ok () { _sm_n=$((_sm_n + 1)); _sm_failed=$((_sm_failed + 1)); echo "not ok $_sm_n - $*"; }
skip ()   { _sm_n=$((_sm_n + 1)); echo "ok $_sm_n # SKIP $*"; }
skip_all () { echo "1..0 # SKIP $*"; exit 77; }
# check DESCRIPTION COMMAND...: one TAP line for a command's success.
check () { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
# done_testing: the plan line and the exit status.
done_testing () { echo "1..$_sm_n"; [ $_sm_failed -eq 0 ]; exit $?; }

# check_shape FILE...: prints FILE:LINE of every `check` whose command is
# followed by && or || at the top level of the script (see check-shape.awk):
# `check D [ A ] && B` never reports B.  Every test script that sources this
# file is scanned, and each such line is a failing TAP line naming it, so
# the shape cannot come back.  One check per condition, or a function that
# checks all and says which failed.
check_shape () { awk -f "$SM_TOP/tests/integration/check-shape.awk" "$@"; }
_sm_script=${BASH_SOURCE[1]:-$0}
if [ -f "$_sm_script" ]; then
  if _sm_shape=$(check_shape "$_sm_script"); then
    while IFS= read -r _sm_where; do
      [ -n "$_sm_where" ] && not_ok "$_sm_where: \`check ... && X\` or \`|| X\`: X is never reported; write one check per condition"
    done <<<"$_sm_shape"
  else
    not_ok "check-shape.awk could not scan $_sm_script"
  fi
fi

# Waits up to $2 seconds (default 10) for the file $1 to exist.
wait_for_file () {
  local deadline=$(( $(date +%s%N) + ${2:-10} * 1000000000 ))
  while [ ! -e "$1" ]; do
    [ "$(date +%s%N)" -lt $deadline ] || return 1
    sleep 0.01
  done
}

# wait_until SECONDS COMMAND...: runs COMMAND every 20 ms until it
# succeeds; false once SECONDS have passed without.
wait_until () {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@"; do [ "$(date +%s)" -lt $deadline ] || return 1; sleep 0.02; done
}
# wait_gone PID [SECONDS]: until process PID is gone (10 s at most).
_sm_alive () { kill -0 "$1" 2>/dev/null; }
wait_gone () { wait_until "${2:-10}" not _sm_alive "$1"; }

# start_vm NAME [-drive ...]...: a guest-less QEMU (-M none) with its QMP
# socket at $T/NAME.qmp; sets VM_PID.  Extra arguments go to QEMU as they are.
# _SM_QEMU_IN='CMD ARGS' start_vm ... runs QEMU through that command prefix
# (split on blanks; netns.sh's start_vm_a: ip netns exec NS), which must exec
# it so that VM_PID is QEMU's PID.
start_vm () {
  local name=$1; shift
  ${_SM_QEMU_IN:-} qemu-system-x86_64 -M none -nodefaults -display none \
    -qmp "unix:$T/$name.qmp,server=on,wait=off" "$@" \
    >"$T/$name.log" 2>&1 &
  VM_PID=$!
  _sm_pids+=("$VM_PID")
  if ! wait_for_file "$T/$name.qmp" 20; then
    echo "# QEMU $name did not start:"; sed 's/^/# /' "$T/$name.log"
    return 1
  fi
}

# drive_opt ID FILE FORMAT: the -drive argument for a disk with id ID.
drive_opt () { echo "file=$2,if=none,id=$1,format=$3"; }

# qmp NAME COMMAND [JSON-ARGS]: runs one QMP command on VM NAME, prints the
# reply's return value as JSON.
qmp () { local name=$1; shift; "$SMQ" "$T/$name.qmp" "$@"; }

# guest_write NAME DRIVE PATTERN OFFSET LENGTH: writes through the device as a
# guest would, with HMP's qemu-io.
guest_write () {
  "$SMQ" --hmp "$T/$1.qmp" "qemu-io $2 \"write -P $3 $4 $5\""
}
# guest_read NAME DRIVE PATTERN OFFSET LENGTH: checks a pattern in the VM.
guest_read () {
  "$SMQ" --hmp "$T/$1.qmp" "qemu-io $2 \"read -P $3 $4 $5\""
}

# ---- live storage migration tests (test-lsm-*.sh) ----------------------

# lsm_setup: skips the test without qemu-system-x86_64 or jq; makes the
# source and destination storage domains $A and $B and the state directory,
# and sets SM to the options every snapmig command of the test takes (the
# VM is "vm": start_vm vm ...).
lsm_setup () {
  command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"
  command -v jq >/dev/null || skip_all "jq missing"
  A=$T/A B=$T/B
  mkdir -p "$A" "$B" "$T/state"
  SM=(--state-dir "$T/state" --qmp "$T/vm.qmp")
}

# make_chain DIR SIZE LENGTH [TOP]: DIR/base.qcow2 of SIZE holding pattern
# 0x11 in its first LENGTH bytes, and an empty DIR/TOP (default top.qcow2)
# over it that names base.qcow2 relatively.
make_chain () {
  qemu-img create -q -f qcow2 "$1/base.qcow2" "$2"
  qemu-io -f qcow2 -c "write -P 0x11 0 $3" "$1/base.qcow2" >/dev/null
  qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$1/${4:-top.qcow2}"
}

# start_2disk_vm [D1-PATTERN]: starts VM "vm" on two disks in $A: drive0 on
# top.qcow2 over base.qcow2 (32M, 0x11 in its first 2M), drive1 on d1.raw
# (16M; D1-PATTERN in its first 2M when given).
start_2disk_vm () {
  make_chain "$A" 32M 2M
  qemu-img create -q -f raw "$A/d1.raw" 16M
  if [ $# -gt 0 ]; then
    qemu-io -f raw -c "write -P $1 0 2M" "$A/d1.raw" >/dev/null
  fi
  start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" \
              -drive "$(drive_opt drive1 "$A/d1.raw" raw)"
}

# chain_files DRIVE [QMP-SOCKET]: the files of DRIVE's backing chain in VM
# "vm" (or in the QEMU of QMP-SOCKET), active layer first.  QEMU names a
# layer "json:{...}" when its backing node is not the one its header names
# as written (a snapshot taken with mode=existing): its file is then the
# "file" child's filename.
chain_files () {
  "$SMQ" "${2:-$T/vm.qmp}" query-block | jq -r --arg d "$1" '.[] | select(.device == $d)
    | .inserted.image | recurse(."backing-image"; . != null) | .filename
    | if startswith("json:") then .[5:] | fromjson | .file.filename else . end'
}
# top_file DRIVE [QMP-SOCKET]: the file of DRIVE's active layer.
top_file () { chain_files "$@" | head -n 1; }
# chain_in_dir DIR DRIVE [QMP-SOCKET [MIN-LAYERS]]: every file of DRIVE's
# chain (chain_files) is a file in DIR, and there are MIN-LAYERS (default
# 1) or more; names the first file that is not.
chain_in_dir () {
  local f n=0
  while IFS= read -r f; do
    n=$((n + 1))
    [ "${f#"$1"/}" != "$f" ] || { echo "# $2 uses $f, not a file in $1"; return 1; }
    [ -f "$f" ] || { echo "# $2 uses $f: no such file"; return 1; }
  done < <(chain_files "$2" "${3:-}")
  [ $n -ge "${4:-1}" ] || { echo "# $2's chain has $n layers, not ${4:-1}"; return 1; }
}

# EXPECT holds "DRIVE PATTERN OFFSET LENGTH" for every write the guest of VM
# "vm" must see.  gw DRIVE PATTERN OFFSET LENGTH writes as the guest and
# remembers the write; all_read checks that every write in EXPECT reads back.
gw () {
  guest_write vm "$1" "$2" "$3" "$4" >/dev/null && EXPECT+=("$1 $2 $3 $4")
}
all_read () {
  local e d p o l
  for e in "${EXPECT[@]}"; do
    read -r d p o l <<<"$e"
    guest_read vm "$d" "$p" "$o" "$l" >/dev/null || { echo "# $e"; return 1; }
  done
}

# ---- pivot tests (test-lsm-pivot-*.sh) -----------------------------------

# Counts and views over the state directory $T/state of VM "vm".
run_state () { qmp vm query-status | jq -r .status; }
journals () { ls "$T"/state/vms/*/journal/*.journal 2>/dev/null | wc -l; }
records () { ls "$T"/state/vms/*/lsm/ 2>/dev/null | wc -l; }
not () { ! "$@"; }
# offline_read FILE PATTERN OFFSET: the pattern read from the image FILE
# (and its backing chain) without QEMU's help; -U: QEMU holds its lock.
offline_read () {
  local out
  out=$(qemu-io -U -r -f qcow2 -c "read -P $2 $3 1M" "$1" 2>&1)
  grep -q 'read 1048576' <<<"$out" && ! grep -q 'verification failed' <<<"$out"
}
# fresh_move DISKS [MONITOR]: a new VM "vm" on DISKS (1 or 2) qcow2 disks
# d0.qcow2, d1.qcow2 of 16M in an emptied $A, $B and state dir, with
# MONITOR=mon a second QMP monitor at $T/mon.qmp (QEMU serves one client
# per monitor, and pivot holds the first while a test watches); guest
# writes, then snapshot p1 created with its mirrors into B and ready
# (create --wait), then more guest writes (all in EXPECT).
fresh_move () {
  local n=$1 i drives=()
  [ -n "${VM_PID:-}" ] && { kill -9 "$VM_PID"; wait "$VM_PID" 2>/dev/null; }
  rm -rf "$A" "$B" "$T/state" "$T/go" "$T/vm.qmp" "$T/mon.qmp"
  mkdir -p "$A" "$B" "$T/state"
  for ((i = 0; i < n; i++)); do
    qemu-img create -q -f qcow2 "$A/d$i.qcow2" 16M
    drives+=(-drive "$(drive_opt "drive$i" "$A/d$i.qcow2" qcow2)")
  done
  [ "${2:-}" = mon ] && drives+=(-qmp "unix:$T/mon.qmp,server=on,wait=off")
  start_vm vm "${drives[@]}" || exit 1
  EXPECT=()
  for ((i = 0; i < n; i++)); do gw "drive$i" "0x1$i" 0 1M; done
  "$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name p1 --wait \
    >"$T/create.out" 2>&1 || { sed 's/^/# /' "$T/create.out"; exit 1; }
  for ((i = 0; i < n; i++)); do gw "drive$i" "0x2$i" 1M 1M; done
}
