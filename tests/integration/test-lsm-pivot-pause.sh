#!/usr/bin/env bash
# The pause pivot reports is the one the guest had: QEMU stamps its STOP and
# RESUME events, and a second QMP client of the same QEMU (bench/pause-watch)
# sees the same interval pivot reports (--json pause-us, pause-from
# "events"; the text line in ms).  No timing is asserted, only that the two
# numbers agree.  After the pivot (three disks: flush, stop, the completes
# sent as one batch, the jobs' ends, cont, one query-block) every disk runs
# on its destination, the guest runs, every write reads back in the VM and
# offline; --dry-run shows the flush before the stop and the batch.
. "$(dirname "$0")/lib.sh"

lsm_setup
WATCH=$SM_TOP/bench/pause-watch
[ -x "$WATCH" ] || skip_all "bench/pause-watch is not built (make all)"

drives=()
for d in 0 1 2; do
  qemu-img create -q -f qcow2 "$A/d$d.qcow2" 16M
  drives+=(-drive "$(drive_opt "drive$d" "$A/d$d.qcow2" qcow2)")
done
start_vm vm -qmp "unix:$T/watch.qmp,server=on,wait=off" "${drives[@]}" || exit 1
wait_for_file "$T/watch.qmp" 20
for d in 0 1 2; do guest_write vm "drive$d" "0x1$d" 0 1M >/dev/null; done
"$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name p1 --wait \
  >"$T/out" 2>&1
check "create --wait" [ $? -eq 0 ]
for d in 0 1 2; do guest_write vm "drive$d" "0x2$d" 1M 1M >/dev/null; done

"$SNAPMIG" pivot "${SM[@]}" --dry-run p1 >"$T/dry" 2>&1
sed 's/^/# /' "$T/dry"
# in_order FILE RE1 RE2: the first line matching RE1 comes before the first
# matching RE2.
in_order () {
  local a b
  a=$(grep -n -m1 -e "$2" "$1" | cut -d: -f1)
  b=$(grep -n -m1 -e "$3" "$1" | cut -d: -f1)
  [ -n "$a" ] && [ -n "$b" ] && [ "$a" -lt "$b" ]
}
check "dry-run: the files are flushed before the stop" \
  in_order "$T/dry" "^flush $A/d2.p1.qcow2 and $B/d2.p1.qcow2 to disk" '^qmp stop'
check "dry-run: the completes go as one batch" \
  grep -q 'drive2"} (sent in one batch with the other completes)' "$T/dry"
check "dry-run: where the disks run is checked after the cont" \
  in_order "$T/dry" '^qmp cont' '^check that every disk runs on its destination'

"$WATCH" "$T/watch.qmp" "$T/watch.stop" >"$T/watch.out" 2>"$T/watch.err" &
wpid=$!
_sm_pids+=("$wpid")
"$SNAPMIG" pivot "${SM[@]}" --json p1 >"$T/pivot.json" 2>"$T/pivot.err"
rc=$?
touch "$T/watch.stop"
wait "$wpid"
wrc=$?
sed 's/^/# /' "$T/pivot.json" "$T/pivot.err" "$T/watch.out" "$T/watch.err"
check "pivot succeeds" [ $rc -eq 0 ]
check "the second client saw one pause" [ $wrc -eq 0 ]
check "... exactly one STOP" grep -q ' stops 1 ' "$T/watch.out"
seen=$(awk '{ print $2 }' "$T/watch.out")
pivoted=$(jq -r 'select(.event == "result")' "$T/pivot.json")
check "pivot --json's lines are valid against the schema" json_valid pivot "$T/pivot.json"
rep_us=$(jq -r '."pause-us"' <<<"$pivoted")
rep_ms=$(jq -r '."pause-ms"' <<<"$pivoted")
check "pivot reports the pause from QEMU's events" \
  [ "$(jq -r '."pause-from"' <<<"$pivoted")" = events ]
check "the pause pivot reports ($rep_us us) is the one the second client saw ($seen us)" \
  [ "$rep_us" = "$seen" ]
check "pause-ms is pause-us in whole milliseconds ($rep_ms)" \
  [ "$rep_ms" = $(( (seen + 500) / 1000 )) ]

for d in 0 1 2; do
  check "drive$d runs on its destination" [ "$(top_file "drive$d")" = "$B/d$d.p1.qcow2" ]
done
check "the guest runs" [ "$(qmp vm query-status | jq -r .status)" = running ]
all_read () {
  local d ok=0
  for d in 0 1 2; do
    guest_read vm "drive$d" "0x1$d" 0 1M >/dev/null || { echo "# drive$d 0x1$d"; ok=1; }
    guest_read vm "drive$d" "0x2$d" 1M 1M >/dev/null || { echo "# drive$d 0x2$d"; ok=1; }
  done
  return $ok
}
check "every write reads back in the VM" all_read
check "the snapshot is gone" [ -z "$(ls -A "$T"/state/vms/*/snapshots/)" ]
check "no journal left" [ -z "$(ls -A "$T"/state/vms/*/journal/ 2>/dev/null)" ]
qmp vm quit >/dev/null 2>&1
wait "$VM_PID" 2>/dev/null
offline () {
  local d out ok=0
  for d in 0 1 2; do
    out=$(qemu-io -r -f qcow2 -c "read -P 0x1$d 0 1M" -c "read -P 0x2$d 1M 1M" \
            "$B/d$d.p1.qcow2" 2>&1)
    if [ "$(grep -c '^read 1048576/1048576' <<<"$out")" -ne 2 ] ||
       grep -q 'verification failed' <<<"$out"; then
      echo "# drive$d: $out"; ok=1
    fi
  done
  return $ok
}
check "every write reads back offline in B" offline

done_testing
