#!/usr/bin/env bash
# libsnapmig as a shared library, against real QEMU: `make install
# PREFIX=$T/inst` installs the library, its header and snapmig.pc; the
# example docs/examples/snapmig-disks.c and the API driver
# tests/tools/api-move.c build with `pkg-config --cflags --libs snapmig`
# against the installed library (nothing of the tree) and
#   - list a VM's disks (a 2-layer qcow2 chain and a raw disk) as
#     `snapmig disks --json` does;
#   - move both disks through the API (create with wait and progress
#     callbacks, pivot), the guest's writes from before, during and after
#     the move reading back in the guest and offline from the destination;
#   - create and abort, validate, and say a failure's code;
#   - roll a create back on snapmig_interrupt (), no signal handler
#     installed;
#   - run the copy worker from the installed snapmig (beside the library),
#     and fail cleanly when no snapmig binary can be run.
# The library exports only snapmig_* symbols; its header compiles alone as
# C99 and C++.
. "$(dirname "$0")/lib.sh"

lsm_setup
for tool in pkg-config cc gcc nm readelf ldd; do
  command -v "$tool" >/dev/null || skip_all "$tool missing"
done

I=$T/inst
make -C "$SM_TOP" install PREFIX="$I" >"$T/install.log" 2>&1
rc=$?
check "make install PREFIX=\$T/inst" [ $rc -eq 0 ]
[ $rc -eq 0 ] || { sed 's/^/# /' "$T/install.log"; done_testing; }
for f in bin/snapmig include/snapmig.h lib/libsnapmig.so.0.2.0 \
         lib/pkgconfig/snapmig.pc share/man/man1/snapmig.1 \
         share/man/man7/snapmig-json.7 share/snapmig/snapmig.schema.json \
         share/bash-completion/completions/snapmig; do
  check "installs $f" [ -f "$I/$f" ]
done
# The Python module, where python3 finds it for this prefix.
check "installs the Python module snapmig" \
  test -n "$(find "$I/lib" -path '*-packages/snapmig/__init__.py' -print -quit)"
check "libsnapmig.so.0 -> libsnapmig.so.0.2.0" \
  [ "$(readlink "$I/lib/libsnapmig.so.0")" = libsnapmig.so.0.2.0 ]
check "libsnapmig.so -> libsnapmig.so.0" \
  [ "$(readlink "$I/lib/libsnapmig.so")" = libsnapmig.so.0 ]
check "the soname is libsnapmig.so.0" \
  grep -q 'SONAME.*\[libsnapmig.so.0\]' <(readelf -d "$I/lib/libsnapmig.so.0.2.0")
check "no private header is installed" \
  [ "$(ls "$I/include")" = snapmig.h ]

# Only the public API is exported (and the version node).
others=$(nm -D --defined-only "$I/lib/libsnapmig.so.0.2.0" |
         awk '$3 !~ /^snapmig_/ && $3 != "SNAPMIG_0.2" { print $3 }')
echo "$others" | sed '/^$/d; s/^/# exported: /'
check "the library exports only snapmig_* symbols" [ -z "$others" ]
check "every function of snapmig.h is exported" \
  bash -c 'diff <(grep -o "snapmig_[a-z_]* (" "$1" | sed "s/ (//" | sort -u) \
                <(nm -D --defined-only "$2" | awk "{print \$3}" | sed "s/@.*//" |
                  grep "^snapmig_" | sort -u)' _ "$I/include/snapmig.h" \
  "$I/lib/libsnapmig.so.0.2.0"

# The header alone, as C99 and as C++.
echo '#include <snapmig.h>
int main (void) { return SM_CHECK_VERSION (0, 2, 0) ? 0 : 1; }' >"$T/h.c"
check "snapmig.h compiles alone with gcc -std=c99 -pedantic -Werror" \
  gcc -std=c99 -Wall -Wextra -pedantic -Werror -I"$I/include" -fsyntax-only "$T/h.c"
if command -v g++ >/dev/null; then
  check "snapmig.h compiles alone with g++" \
    g++ -Wall -Wextra -pedantic -Werror -I"$I/include" -fsyntax-only -x c++ "$T/h.c"
else
  skip "g++ missing"
fi

# Build the example and the API driver against the installed library.
export PKG_CONFIG_PATH=$I/lib/pkgconfig
check "pkg-config says version 0.2.0" [ "$(pkg-config --modversion snapmig)" = 0.2.0 ]
build () {   # build OUT SRC
  cc -std=c99 -Wall -Wextra -Werror -o "$1" "$2" \
    $(pkg-config --cflags --libs snapmig) >"$T/cc.log" 2>&1 ||
    { sed 's/^/# /' "$T/cc.log"; return 1; }
}
check "the example builds with pkg-config --cflags --libs snapmig" \
  build "$T/snapmig-disks" "$SM_TOP/docs/examples/snapmig-disks.c"
check "tests/tools/api-move.c builds the same way" \
  build "$T/api-move" "$SM_TOP/tests/tools/api-move.c"
needed=$(readelf -d "$T/snapmig-disks" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
echo "# snapmig-disks needs: $needed"
check "the example links libsnapmig and libc only (no json-c, glib)" \
  [ "$needed" = "libc.so.6 libsnapmig.so.0 " ]
export LD_LIBRARY_PATH=$I/lib
check "it loads the installed library" \
  grep -q "libsnapmig.so.0 => $I/lib/libsnapmig.so.0" <(ldd "$T/snapmig-disks")

# A VM with a 2-layer qcow2 chain (drive0) and a raw disk (drive1), and a
# second monitor for the guest's writes while the API holds the first.
make_chain "$A" 32M 2M
qemu-img create -q -f raw "$A/d1.raw" 16M
start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" \
            -drive "$(drive_opt drive1 "$A/d1.raw" raw)" \
            -qmp "unix:$T/mon.qmp,server=on,wait=off" || exit 1

# The example lists what `snapmig disks --json` says.
disks_text () {   # the example's text form, from `snapmig disks --json`
  jq -r '.disks[] | "\(.device) \(.format) \(."virtual-size") \(.file)",
                    (.chain[] | "  \(.file) \(.format)")'
}
"$SNAPMIG" disks --qmp "$T/vm.qmp" --json >"$T/disks.json"
"$T/snapmig-disks" "$T/vm.qmp" >"$T/ex.txt" 2>"$T/ex.err"
check "snapmig-disks QMP_SOCKET succeeds" [ $? -eq 0 ]
sed 's/^/# /' "$T/ex.txt" "$T/ex.err"
check "it lists the disks and chains snapmig disks --json lists" \
  diff <(disks_text <"$T/disks.json") "$T/ex.txt"
check "drive0's chain is top.qcow2 over base.qcow2" \
  [ "$(sed -n '2,3p' "$T/ex.txt")" = "  $A/top.qcow2 qcow2
  $A/base.qcow2 qcow2" ]
check "drive1 is the raw disk" grep -qx "drive1 raw 16777216 $A/d1.raw" "$T/ex.txt"
"$T/snapmig-disks" --json "$T/vm.qmp" >"$T/ex.json"
check "snapmig_disks_json is the document of snapmig disks --json" \
  diff <(jq -S . "$T/disks.json") <(jq -S . "$T/ex.json")
"$T/snapmig-disks" "$T/nope.qmp" >"$T/ex.txt" 2>"$T/ex.err"
check "a missing socket fails, saying the error's code" \
  grep -q "(not-found)\|(io)\|(timeout)" "$T/ex.err"

# A move through the API: writes before, during (from the first progress
# callback, through the second monitor) and after the create, after the
# pivot.
EXPECT=()
gw drive0 0x21 1M 1M
gw drive1 0x31 0 1M
echo "#!/bin/sh
exec '$SMQ' --hmp '$T/mon.qmp' 'qemu-io drive0 \"write -P 0x22 3M 1M\"' >/dev/null" >"$T/during"
chmod +x "$T/during"
"$T/api-move" move "$T/vm.qmp" "$T/state" "$B" m1 "$T/during" >"$T/move.out" 2>&1
rc=$?
sed 's/^/# /' "$T/move.out"
check "create (wait) and pivot through the API succeed" [ $rc -eq 0 ]
EXPECT+=("drive0 0x22 3M 1M")
check "the progress callback was called" \
  [ "$(sed -n 's/^create-progress //p' "$T/move.out")" -gt 0 ]
check "each mirror and copy said finished (2 mirrors, 3 copies)" \
  [ "$(sed -n 's/^create-finished //p' "$T/move.out")" -ge 5 ]
check "every call named a mirror or copy, done <= total" \
  grep -qx 'progress-bad 0' "$T/move.out"
check "the write during the wait went through" grep -qx 'during-rc 0' "$T/move.out"
check "pivot moved both disks" \
  [ "$(grep '^moved ' "$T/move.out" | sort | tr '\n' ' ')" = "moved drive0 moved drive1 " ]
gw drive0 0x23 5M 1M
gw drive1 0x33 2M 1M
check "drive0 runs in B (3 layers)" chain_in_dir "$B" drive0 "" 3
check "drive1 runs in B (2 layers)" chain_in_dir "$B" drive1 "" 2
check "the base layer was copied (the installed snapmig's worker)" \
  [ "$(chain_files drive0 | tail -n 1)" = "$B/base.qcow2" ]
check "every write reads back in the guest" all_read
"$SNAPMIG" disks --qmp "$T/vm.qmp" --json >"$T/disks.json"
"$T/snapmig-disks" "$T/vm.qmp" >"$T/ex.txt"
check "snapmig disks and the API agree on the new chains" \
  diff <(disks_text <"$T/disks.json") "$T/ex.txt"
# status, create without wait, abort.
"$T/api-move" status "$T/vm.qmp" "$T/state" >"$T/st.out" 2>&1
check "status with nothing moving says so" \
  [ "$(jq -c . "$T/st.out")" = '{"snapshot":null,"moving":false}' ]
C=$T/C; mkdir -p "$C"
"$T/api-move" create "$T/vm.qmp" "$T/state" "$C" m2 >"$T/c.out" 2>&1
rc=$?
sed 's/^/# /' "$T/c.out"
check "create without wait" [ $rc -eq 0 ]
"$T/api-move" status "$T/vm.qmp" "$T/state" >"$T/st.out" 2>&1
check "status_json shows the move m2" \
  [ "$(jq -r .snapshot "$T/st.out" 2>/dev/null)" = m2 ]
"$T/api-move" wait "$T/vm.qmp" "$T/state" >"$T/w.out" 2>&1
rc=$?
sed 's/^/# /' "$T/w.out"
check "snapmig_wait returns once m2 is ready" [ $rc -eq 0 ]
check "it reported each mirror and copy finished" \
  [ "$(sed -n 's/^wait-finished //p' "$T/w.out")" -ge 5 ]
check "status_json then shows m2's mirrors ready" \
  bash -c '"$1" status "$2" "$3" | jq -e "[.disks[].ready] == [true, true]" >/dev/null' \
  _ "$T/api-move" "$T/vm.qmp" "$T/state"
"$T/api-move" abort "$T/vm.qmp" "$T/state" m2 >"$T/a.out" 2>&1
rc=$?
sed 's/^/# /' "$T/a.out"
check "abort" [ $rc -eq 0 ]
check "abort removed what create made in C" [ -z "$(ls -A "$C")" ]
check "drive0 stays in B" chain_in_dir "$B" drive0
check "every write still reads back" all_read

# A failure's code and message.
"$T/api-move" pivot "$T/vm.qmp" "$T/state" nope >"$T/p.out" 2>&1
sed 's/^/# /' "$T/p.out"
check "pivot of an unknown snapshot fails with not-found, naming it" \
  grep -q '^error not-found pivot: .*nope' "$T/p.out"

# validate: the report and verdict of snapmig validate.
"$T/api-move" validate "$T/state" "$B" "$T/vm.qmp" >"$T/v.out" 2>&1
"$SNAPMIG" validate --json --state-dir "$T/state" --qmp "$T/vm.qmp" "$B" >"$T/v.json"
vrc=$?
check "validate's verdict is the command's (1: clean, exit 0)" \
  [ "$(sed -n 's/^validate //p' "$T/v.out")" = "$([ $vrc -eq 0 ] && echo 1 || echo 0)" ]
check "validate's report is the command's" \
  diff <(jq -S . "$T/v.json") <(sed 1d "$T/v.out" | jq -S .)

# snapmig_interrupt () during create's wait (from the progress callback)
# rolls the create back, as SIGINT does the command's; the library caught
# no signal to do it (SigCgt: no SIGHUP, SIGINT, SIGTERM handler).
before=$(chain_files drive0)
E=$T/E; mkdir -p "$E"
"$T/api-move" interrupt "$T/vm.qmp" "$T/state" "$E" m4 >"$T/i.out" 2>&1
rc=$?
sed 's/^/# /' "$T/i.out"
check "an interrupted create fails" [ $rc -ne 0 ]
check "with the code interrupted, rolled back" \
  grep -q '^error interrupted create: .*rolled back' "$T/i.out"
check "the VM stays on its chain" [ "$(chain_files drive0)" = "$before" ]
check "nothing is left in E" [ -z "$(ls -A "$E")" ]
caught=$(sed -n 's/^sigcgt //p' "$T/i.out")
check "the library installed no SIGHUP/SIGINT/SIGTERM handler" \
  [ -n "$caught" -a $(( 0x${caught:-1} & 0x4003 )) -eq 0 ]

# No snapmig binary to run the copy worker: create fails naming the fix,
# and the VM stays as it was.
before=$(chain_files drive0)
D=$T/D; mkdir -p "$D"
mv "$I/bin/snapmig" "$I/bin/snapmig.away"
PATH=/usr/bin:/bin "$T/api-move" create "$T/vm.qmp" "$T/state" "$D" m3 >"$T/c.out" 2>&1
rc=$?
mv "$I/bin/snapmig.away" "$I/bin/snapmig"
sed 's/^/# /' "$T/c.out"
check "create fails when no snapmig can run the copy worker" [ $rc -ne 0 ]
check "it names snapmig_set_helper and \$SNAPMIG_HELPER" \
  grep -q 'SNAPMIG_HELPER' "$T/c.out"
check "the VM stays on its chain" [ "$(chain_files drive0)" = "$before" ]
check "nothing is left in D" [ -z "$(ls -A "$D")" ]

# Every write, read back from B's files without QEMU once it has quit
# (its last metadata written).
tops=("drive0 $(top_file drive0)" "drive1 $(top_file drive1)")
qmp vm quit >/dev/null
check "QEMU quits" wait_gone "$VM_PID" 20
offline_all () {
  local e d p o l t top all=0
  for e in "${EXPECT[@]}"; do
    read -r d p o l <<<"$e"
    for t in "${tops[@]}"; do [ "${t%% *}" = "$d" ] && top=${t#* }; done
    offline_read "$top" "$p" "$o" || { echo "# $e not in $top"; all=1; }
  done
  [ $all -eq 0 ]
}
check "the tops are in B" \
  bash -c '[[ $1 == "drive0 $2/"* && $3 == "drive1 $2/"* ]]' _ "${tops[0]}" "$B" "${tops[1]}"
check "every write reads back offline from B's chains" offline_all

done_testing
