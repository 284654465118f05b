#!/usr/bin/env bash
# File names do not grow with every move (issue 13): a disk moved back and
# forth between two storage domains five times (A->B->A->B->A->B, each
# create --mirror-domain + pivot --delete-source) gets new tops named
# STEM.SNAPSHOT.qcow2 with STEM its original stem (an earlier snapmig
# suffix stripped), the layers below keep their names, no name is used
# twice in a chain, and every chain is valid (snapmig validate) with the
# guest's data in place.  A snapshot name used again does not reuse a
# layer's name.
. "$(dirname "$0")/lib.sh"

lsm_setup
make_chain "$A" 16M 1M
start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" || exit 1
EXPECT=()

# names_ok DIR: every file of drive0's chain is in DIR, named base.qcow2,
# top.qcow2 or top.SNAPSHOT.qcow2 (one suffix at most), none twice.
names_ok () {
  local f names
  chain_in_dir "$1" drive0 || return 1
  names=$(chain_files drive0 | xargs -n1 basename)
  while IFS= read -r f; do
    [[ $f =~ ^(base|top)(\.m[0-9])?\.qcow2$ ]] || { echo "# layer $f"; return 1; }
  done <<<"$names"
  [ "$(sort <<<"$names" | uniq -d)" = "" ] || { echo "# twice: $names"; return 1; }
}

# move N DEST: snapshot mN moved into DEST, pivoted, the source removed.
move () {
  "$SNAPMIG" create "${SM[@]}" --mirror-domain "$2" --name "m$1" --wait \
    >"$T/out" 2>&1 || { sed 's/^/# /' "$T/out"; return 1; }
  "$SNAPMIG" pivot "${SM[@]}" --delete-source "m$1" >"$T/out" 2>&1 ||
    { sed 's/^/# /' "$T/out"; return 1; }
}

for i in 1 2 3 4 5; do
  if [ $((i % 2)) -eq 1 ]; then dest=$B; else dest=$A; fi
  gw drive0 "0x4$i" "$((i + 1))M" 1M
  check "move $i into $(basename "$dest")" move "$i" "$dest"
  check "move $i: drive0 runs on $(basename "$dest")/top.m$i.qcow2" \
    test "$(top_file drive0)" = "$dest/top.m$i.qcow2"
  check "move $i: one snapmig suffix at most, no name twice" names_ok "$dest"
  check "move $i: the guest's data reads back" all_read
done
check "the chain after five moves: base, top, top.m1 ... top.m5" \
  test "$(chain_files drive0 | xargs -n1 basename | tr '\n' ' ')" = \
       "top.m5.qcow2 top.m4.qcow2 top.m3.qcow2 top.m2.qcow2 top.m1.qcow2 top.qcow2 base.qcow2 "
"$SNAPMIG" validate --state-dir "$T/state" --qmp "$T/vm.qmp" "$B" >"$T/out" 2>&1; rc=$?
sed 's/^/# /' "$T/out"
check "validate: B's chain is valid" [ $rc -eq 0 ]
check "A is empty (every source removed)" test -z "$(ls -A "$A")"

# A snapshot name used again: top.m1.qcow2 is a layer of the chain already,
# so the new top keeps the whole stem instead.
gw drive0 0x51 8M 1M
"$SNAPMIG" create "${SM[@]}" --name m1 --diskspec drive0 >"$T/out" 2>&1; rc=$?
sed 's/^/# /' "$T/out"
check "a plain snapshot named m1 again" [ $rc -eq 0 ]
check "its new top is top.m5.m1.qcow2, not the layer top.m1.qcow2" \
  test "$(top_file drive0)" = "$B/top.m5.m1.qcow2"
check "top.m1.qcow2 is still a layer below" \
  grep -qx "$B/top.m1.qcow2" <(chain_files drive0)
check "the guest's data reads back" all_read

done_testing
