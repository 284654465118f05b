#!/usr/bin/env bash
# Live storage migration onto an oVirt-style block storage domain B: each
# layer snapmig puts in B is a symbolic link B/NAME to a block device (a loop
# device over a file full of garbage, standing in for an LV), formatted
# beforehand the way oVirt formats its volumes, and reused with
# `snapmig create --mirror --mirror-domain B --reuse-external`.  The VM runs
# on base.qcow2 <- top.qcow2 (relative backing name) in domain A.
#   1. A device smaller than its layer needs: create fails naming the link,
#      the VM stays on A, B's links and devices are left exactly as they were.
#   2. The move: the guest writes before create, between create and pivot and
#      after pivot; the active chain ends up on B's links, A's and B's views
#      are identical at pivot time, every pattern reads back, and
#      `snapmig validate` finds B clean.
. "$(dirname "$0")/lib.sh"

lsm_setup
command -v losetup >/dev/null || skip_all "no loop devices (losetup missing)"
[ -e /dev/loop-control ] || skip_all "no loop devices (no /dev/loop-control)"

# Every loop device this test attached; detached on every exit path, after
# lib.sh's cleanup killed the VM that had them open.
LOOPS=()
cleanup () {
  local d
  _sm_cleanup
  for d in "${LOOPS[@]}"; do losetup -d "$d" 2>/dev/null; done
}
trap cleanup EXIT

# loop_device FILE SIZE: attaches a loop device over FILE, SIZE bytes of
# garbage (an LV's old contents, which must never show through), and sets
# DEV to its node.  Not in a subshell: LOOPS must learn the device.
loop_device () {
  DEV=
  tr '\0' '\253' </dev/zero | head -c "$2" >"$1" || return 1
  DEV=$(losetup --find --show "$1" 2>"$T/losetup.err") || return 1
  LOOPS+=("$DEV")
}

# Loop devices may exist and still be unusable (a container, no rights):
# the first one decides, before anything else runs.  It becomes the device
# too small for base.qcow2.
if ! loop_device "$T/lv-small" $((2 * 1024 * 1024)); then
  skip_all "no loop devices ($(head -n1 "$T/losetup.err"))"
fi
SMALL_DEV=$DEV

# The VM: drive0 on top.qcow2 -> base.qcow2 (16M, 0x11 in its first 2M;
# 0x12 in top at 2M).
make_chain "$A" 16M 2M
qemu-io -f qcow2 -c 'write -P 0x12 2M 2M' "$A/top.qcow2" >/dev/null
start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" || exit 1

# Which files the move creates, from the plan --dry-run prints:
#   create file DIR/NAME (FMT, SIZE bytes[, backing BNAME, BFMT])
# One line per file, bottom-up: "DIR NAME FMT SIZE BNAME BFMT".
"$SNAPMIG" create "${SM[@]}" --mirror --mirror-domain "$B" --reuse-external \
  --name move1 --dry-run >"$T/plan" 2>&1
rc=$?
sed 's/^/# /' "$T/plan"
check "create --dry-run succeeds" [ $rc -eq 0 ]
plan_re='^create file (.*)/([^/ ]+) \(([a-z0-9]+), ([0-9]+) bytes'
plan_re+='(, backing ([^,]+), ([a-z0-9]+))?\)$'
sed -nE "s|$plan_re|\\1 \\2 \\3 \\4 \\6 \\7|p" "$T/plan" >"$T/files"
check "the plan names the three layers in B and the new top in A" \
  [ "$(grep -c "^$B " "$T/files")" = 3 -a \
    "$(grep -c "^$A top.move1.qcow2 " "$T/files")" = 1 ]

# A loop device per layer in B, 8M more than the virtual size (the new top
# receives the guest's writes), linked into B and formatted as planned; the
# new top in A is an ordinary file.  SMALL_DEV: too small for base.qcow2.
format_layer () {   # PATH FMT SIZE BNAME BFMT
  if [ -n "${4:-}" ]; then
    qemu-img create -q -f "$2" -u -F "$5" -b "$4" "$1" "$3"
  else
    qemu-img create -q -f "$2" "$1" "$3"
  fi
}
setup_ok=0
while read -r dir name fmt size bname bfmt; do
  if [ "$dir" = "$B" ]; then
    if ! loop_device "$T/lv-$name" $((size + 8 * 1024 * 1024)); then
      sed 's/^/# /' "$T/losetup.err"; setup_ok=1; break
    fi
    ln -s "$DEV" "$B/$name"
  fi
  format_layer "$dir/$name" "$fmt" "$size" "$bname" "$bfmt" || setup_ok=1
done <"$T/files"
check "B holds a link to a formatted loop device per layer" [ $setup_ok -eq 0 ]
[ $setup_ok -eq 0 ] || done_testing
GOOD_BASE_DEV=$(readlink "$B/base.qcow2")

# snapshot_b: each link of B with the checksum of its device's whole content.
snapshot_b () {
  local l
  for l in "$B"/*; do echo "$l -> $(readlink "$l") $(md5sum <"$l")"; done
}

# ---- 1. a device too small for its layer ----------------------------------
format_layer "$SMALL_DEV" qcow2 16M
ln -sfn "$SMALL_DEV" "$B/base.qcow2"
snapshot_b >"$T/b-before"
out=$("$SNAPMIG" create "${SM[@]}" --mirror --mirror-domain "$B" \
        --reuse-external --name move1 --wait 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "create onto a too small device fails" [ $rc -ne 0 ]
check "the message names the link and says the device is too small" \
  grep -qF "$B/base.qcow2: block device too small" <<<"$out"
check "the VM still runs on A's chain" [ "$(top_file drive0)" = "$A/top.qcow2" ]
snapshot_b >"$T/b-after"
check "B's links and devices are left as they were" \
  cmp -s "$T/b-before" "$T/b-after"
ln -sfn "$GOOD_BASE_DEV" "$B/base.qcow2"

# ---- 2. the move ---------------------------------------------------------
EXPECT=("drive0 0x11 0 2M" "drive0 0x12 2M 2M")
check "guest writes before create" gw drive0 0x13 4M 1M

out=$("$SNAPMIG" create "${SM[@]}" --mirror --mirror-domain "$B" \
        --reuse-external --name move1 --wait 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "create --reuse-external onto the block domain succeeds" [ $rc -eq 0 ]
check "drive0 runs on its new top in A" \
  [ "$(top_file drive0)" = "$A/top.move1.qcow2" ]

check "guest writes between create and pivot" gw drive0 0x14 5M 1M
check "guest writes again between create and pivot" \
  gw drive0 0x15 7M 512K

out=$("$SNAPMIG" pivot "${SM[@]}" move1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "pivot succeeds" [ $rc -eq 0 ]

# A's files no longer change once the VM runs on B: the whole guest view,
# never-written zeros included (the devices' garbage must not show).
same_views () {
  qemu-img compare -U -f qcow2 -F qcow2 "$A/top.move1.qcow2" \
    "$B/top.move1.qcow2" >"$T/compare" 2>&1 && return 0
  sed 's/^/# /' "$T/compare"
  return 1
}
check "A's and B's views are identical at pivot time" same_views

chain_files drive0 | sed 's/^/# chain: /'
check "the active chain is B's links" \
  [ "$(chain_files drive0 | tr '\n' ' ')" = \
    "$B/top.move1.qcow2 $B/top.qcow2 $B/base.qcow2 " ]

check "guest writes after pivot" gw drive0 0x16 6M 1M
EXPECT+=("drive0 0x00 10M 6M")
check "every pattern reads back in the VM, zeros where nothing was written" \
  all_read

"$SNAPMIG" validate --state-dir "$T/state" --qmp "$T/vm.qmp" "$B" >"$T/val" 2>&1
rc=$?
sed 's/^/# /' "$T/val"
check "snapmig validate finds B clean" [ $rc -eq 0 ]

qmp vm quit >/dev/null
wait "$VM_PID" 2>/dev/null
bad=0
for l in base.qcow2 top.qcow2 top.move1.qcow2; do
  qemu-img check -q "$B/$l" || { echo "# qemu-img check $B/$l failed"; bad=1; }
done
check "B's layers check out on their devices (qemu-img check)" [ $bad -eq 0 ]

done_testing
