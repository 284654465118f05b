#!/usr/bin/env bash
# A move watched from a terminal and from a second snapmig (issue 13):
# - create --wait on a 40-column terminal (a real pty, through script(1))
#   draws progress lines that never exceed the width, a long file name
#   shortened in the middle with "...";
# - meanwhile `snapmig status` (text and --json), which cannot talk to QEMU
#   (create holds its only monitor), shows the progress create publishes in
#   the state directory: whose it is, done < total, growing; exit 0;
# - once create is done the published file is gone, and status (from QEMU
#   again) says nothing is moving and the move is ready to pivot;
# - pivot's wait publishes in the same way.
# The copy of the lower layer runs at --bandwidth 1M so that it lasts.
. "$(dirname "$0")/lib.sh"

lsm_setup
command -v script >/dev/null || skip_all "script (util-linux) not installed"

long=a-lower-layer-whose-file-name-is-far-too-long-for-a-narrow-terminal
qemu-img create -q -f qcow2 "$A/$long.qcow2" 16M
qemu-io -f qcow2 -c "write -P 0x11 0 6M" "$A/$long.qcow2" >/dev/null
qemu-img create -q -f qcow2 -F qcow2 -b "$long.qcow2" "$A/top.qcow2"
start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" || exit 1

# create --wait on a pty of 40 columns; the terminal's output goes to
# $T/typescript.  CREATE_PID is script's.
cmd=$(printf '%q ' "$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name w1 \
  --bandwidth 1M --wait)
script -qfec "stty cols 40 rows 24; exec $cmd" "$T/typescript" \
  </dev/null >/dev/null 2>&1 &
CREATE_PID=$!
_sm_pids+=("$CREATE_PID")
progress_file () { find "$T/state" -name w1.progress.json 2>/dev/null | grep -q .; }
check "create --wait publishes its progress in the state directory" \
  wait_until 30 progress_file

# ---- status while create --wait holds the monitor ------------------------
"$SNAPMIG" status "${SM[@]}" --timeout 5 >"$T/st1" 2>"$T/err"; rc=$?
sed 's/^/# /' "$T/st1" "$T/err"
check "status during create --wait exits 0" [ $rc -eq 0 ]
check "status during create --wait shows the snapshot" grep -qxF "snapshot w1" "$T/st1"
check "status says the data comes from the waiting snapmig" \
  grep -qE '^  \(from snapmig pid [0-9]+, .* written [0-9.]+ s ago\)$' "$T/st1"
check "status during create --wait shows the copy" \
  grep -qE "^  copy $A/$long.qcow2 -> $B/$long.qcow2: " "$T/st1"

# copy_done FILE: the done bytes of the long-named layer's copy in status
# --json output FILE.
sel=".copies[] | select(.source == \"$A/$long.qcow2\")"
copy_done () { jq -e "$sel | .done" "$1" 2>/dev/null; }
# json_status FILE: status --json into FILE, exit 0 and the progress there.
json_status () {
  "$SNAPMIG" status "${SM[@]}" --timeout 5 --json >"$1" 2>"$T/err" ||
    { echo "# status --json failed:"; sed 's/^/#   /' "$T/err"; return 1; }
  copy_done "$1" >/dev/null || { echo "# no copy in:"; sed 's/^/#   /' "$1"; return 1; }
}
# moving FILE: status --json into FILE shows the copy begun and not done.
moving () { json_status "$1" >/dev/null && jq -e "$sel | .done > 0 and .done < .total" "$1" >/dev/null; }
check "status --json during create --wait exits 0" json_status "$T/j1"
check "status --json: the copy under way (0 < done < total)" wait_until 30 moving "$T/j1"
writer=$(jq -r '.watched.pid' "$T/j1" 2>/dev/null)
check "status --json names the writer, a live snapmig" \
  test "$(ps -o comm= -p "$writer" 2>/dev/null)" = snapmig
# aged FILE: the published data's age in seconds and its RFC 3339 time.
aged () { jq -e '.watched."age-seconds" >= 0 and (.watched.time | test("Z$"))' "$1" >/dev/null; }
check "status --json: how old the data is, in seconds" aged "$T/j1"
first=$(copy_done "$T/j1")
# grew: a later status --json shows more bytes copied.
grew () { json_status "$T/j2" >/dev/null && [ "$(copy_done "$T/j2")" -gt "$first" ]; }
check "a later status --json shows the copy grown" wait_until 30 grew

# ---- after create --wait -------------------------------------------------
check "create --wait ends" wait_gone "$CREATE_PID" 60
wait "$CREATE_PID"; rc=$?
check "create --wait exits 0" [ $rc -eq 0 ]
check "the published progress file is gone" not progress_file
"$SNAPMIG" status "${SM[@]}" >"$T/st2" 2>"$T/err"; rc=$?
check "status after create --wait exits 0" [ $rc -eq 0 ]
check "status after create --wait asks QEMU, not the file" \
  not grep -q "from snapmig pid" "$T/st2"
check "status: nothing is moving; ready to pivot" \
  grep -qxF "nothing is moving; ready to pivot (snapmig pivot w1)" "$T/st2"

# ---- the terminal --------------------------------------------------------
# Every progress line the terminal showed (they have a percentage; the
# other lines are create's messages), escapes removed, split at \r and \n.
tr '\r' '\n' <"$T/typescript" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' |
  grep '%' | grep -v '^Script ' >"$T/lines"
check "create drew progress lines on the terminal" grep -q "copy .*ETA" "$T/lines"
widest=$(awk '{ if (length($0) > w) w = length($0) } END { print w + 0 }' "$T/lines")
check "no line is wider than the 40 columns (widest: $widest)" [ "$widest" -le 40 ]
check "the long file name is shortened in the middle with ..." \
  grep -qE '^a-lo[^ ]*\.\.\.[^ ]* ' "$T/lines"

# ---- pivot's wait publishes too ------------------------------------------
"$SNAPMIG" abort "${SM[@]}" w1 >"$T/out" 2>&1 || sed 's/^/# /' "$T/out"
"$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name w2 --bandwidth 1M \
  >"$T/out" 2>&1 || sed 's/^/# /' "$T/out"
"$SNAPMIG" pivot "${SM[@]}" w2 >"$T/pivot.out" 2>&1 &
PIVOT_PID=$!
_sm_pids+=("$PIVOT_PID")
progress_file () { find "$T/state" -name w2.progress.json 2>/dev/null | grep -q .; }
check "pivot publishes its progress while it waits" wait_until 30 progress_file
"$SNAPMIG" status "${SM[@]}" --timeout 5 --json >"$T/j3" 2>"$T/err"; rc=$?
check "status --json during pivot's wait exits 0" [ $rc -eq 0 ]
check "status --json during pivot's wait: the data is pivot's" \
  test "$(jq -r .watched.pid "$T/j3" 2>/dev/null)" = "$PIVOT_PID"
check "pivot ends" wait_gone "$PIVOT_PID" 60
wait "$PIVOT_PID"; rc=$?
sed 's/^/# /' "$T/pivot.out"
check "pivot exits 0" [ $rc -eq 0 ]
check "pivot's progress file is gone" not progress_file

done_testing
