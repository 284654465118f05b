#!/usr/bin/env bash
# No snapmig command waits for QEMU longer than its --timeout (or default)
# plus one second, whatever the peer does: a real QEMU stopped with SIGSTOP
# (before a command, and in the middle of pivot's wait), a monitor whose
# backlog is full, and a peer that sends one endless line.  The last two are
# played by tests/tools/fake-monitor, a FAKE peer: QEMU never sends an
# endless line, and its own backlog is only full while it is stopped.
# Each command must fail (exit status, message naming the socket) within
# the bound; the elapsed time is what the acceptance of issue 8 measures.
. "$(dirname "$0")/lib.sh"

lsm_setup
FAKE=$SM_TOP/tests/tools/fake-monitor
[ -x "$FAKE" ] || skip_all "tests/tools/fake-monitor not built"
TO=2                              # --timeout of every command below
LIMIT_MS=$(( (TO + 1) * 1000 ))   # the acceptance: --timeout plus 1 s

now_ms () { echo $(( $(date +%s%N) / 1000000 )); }

# launch ID SOCKET PATTERN CMD...: starts CMD in the background (killed after
# 30 s, so that a hang fails the test instead of blocking it), recording its
# exit status and elapsed time.  judge ID DESC checks, once it ended, that
# it failed within LIMIT_MS with a message naming SOCKET and matching
# PATTERN.  The commands run side by side, so that the test takes one
# timeout, not one per command.
declare -A L_SOCK L_PATTERN L_PID
launch () {
  local id=$1
  L_SOCK[$id]=$2 L_PATTERN[$id]=$3
  shift 3
  ( start=$(now_ms)
    timeout -s KILL 30 "$@" >"$T/$id.out" 2>&1
    echo "$? $(( $(now_ms) - start ))" >"$T/$id.rc" ) &
  L_PID[$id]=$!
  _sm_pids+=("$!")
}
judge () {
  local id=$1 d=$2 rc ms
  wait "${L_PID[$id]}"
  read -r rc ms <"$T/$id.rc"
  sed 's/^/# /' "$T/$id.out"
  echo "# $d: exit $rc after $ms ms"
  check "$d: fails" [ "$rc" -ne 0 -a "$rc" -ne 137 ]
  check "$d: within $LIMIT_MS ms" [ "$ms" -le $LIMIT_MS ]
  check "$d: the message names the socket" grep -qF "${L_SOCK[$id]}" "$T/$id.out"
  check "$d: the message says why" grep -qE "${L_PATTERN[$id]}" "$T/$id.out"
}
NO_ANSWER='did not answer within|no QMP greeting .* within|accepted no connection within'

# ---- the VM, with a move that cannot finish (its mirror copies 4 MiB at
# 1 byte/s, as in test-lsm-abort.sh), so that status, pivot and abort have a
# record to act on.
make_chain "$A" 64M 4M
start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" || exit 1
QEMU_PID=$VM_PID
qemu-img create -q -f qcow2 "$A/top.m1.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 4M' "$A/top.m1.qcow2" >/dev/null
qemu-img rebase -u -f qcow2 -F qcow2 -b top.qcow2 "$A/top.m1.qcow2"
qemu-img create -q -f qcow2 "$B/base.qcow2" 64M
qemu-img create -q -f qcow2 -u -F qcow2 -b base.qcow2 "$B/top.qcow2" 64M
qemu-img create -q -f qcow2 -u -F qcow2 -b top.qcow2 "$B/top.m1.qcow2" 64M
"$SNAPMIG" create "${SM[@]}" --reuse-external --bandwidth 1 \
  --diskspec "drive0,file=$A/top.m1.qcow2,mirror=$B/top.m1.qcow2" \
  --name m1 >"$T/out" 2>&1
check "create of a move that cannot finish succeeds" [ $? -eq 0 ]
check "its mirror is not READY" \
  [ "$(qmp vm query-block-jobs | jq -r '.[0].ready')" = false ]

# A second VM with a create killed after its transaction: recover has a
# journal to act on, and files it would remove if it took QEMU for dead.
R=$T/R RB=$T/RB
mkdir -p "$R" "$RB"
make_chain "$R" 16M 1M
start_vm rv -drive "$(drive_opt drive0 "$R/top.qcow2" qcow2)" || exit 1
RV_PID=$VM_PID
RSM=(--state-dir "$T/state" --qmp "$T/rv.qmp")
SNAPMIG_TEST_CRASH_AFTER_STEP=5 "$SNAPMIG" create "${RSM[@]}" \
  --mirror-domain "$RB" --name c1 >/dev/null 2>&1
check "a create killed after its transaction (rv)" [ $? -eq 137 ]
RV_FILES=$(cd "$T" && ls -A R RB | sort)

# ---- pivot waits for the mirror without --timeout; QEMU stops meanwhile.
# Every QMP round trip inside that wait is bounded by the default
# (SNAPMIG_DEFAULT_TIMEOUT=2 here, 30 s otherwise): pivot must give up at
# most the default plus one second after the stop.
SNAPMIG_DEFAULT_TIMEOUT=$TO timeout -s KILL 60 "$SNAPMIG" pivot "${SM[@]}" \
  --json m1 >"$T/pivot.out" 2>&1 &
PIVOT_PID=$!
_sm_pids+=("$PIVOT_PID")
waited=0
deadline=$(( $(now_ms) + 20000 ))
until grep -q '"drive0 mirror"' "$T/pivot.out"; do
  [ "$(now_ms)" -lt $deadline ] || break
  sleep 0.02
done
check "pivot is waiting for the mirror" grep -q '"drive0 mirror"' "$T/pivot.out"
kill -STOP "$QEMU_PID"
start=$(now_ms)
wait "$PIVOT_PID"
rc=$?
ms=$(( $(now_ms) - start ))
sed 's/^/# /' "$T/pivot.out"
echo "# pivot: exit $rc, $ms ms after QEMU stopped"
check "pivot (default timeout) fails when QEMU stops during its wait" \
  [ $rc -ne 0 -a $rc -ne 137 ]
check "pivot gives up within the default plus 1 s of the stop" \
  [ $ms -le $LIMIT_MS ]
check "pivot's message names the socket" grep -qF "$T/vm.qmp" "$T/pivot.out"
check "pivot's message says QEMU did not answer" \
  grep -q "did not answer within $TO s" "$T/pivot.out"

# ---- QEMU stopped before the command: every command that talks to it.
kill -STOP "$RV_PID"
S=$T/vm.qmp
launch disks "$S" "$NO_ANSWER" "$SNAPMIG" disks --qmp "$S" --timeout $TO
launch status "$S" "$NO_ANSWER" "$SNAPMIG" status "${SM[@]}" --timeout $TO m1
launch pivot "$S" "$NO_ANSWER" "$SNAPMIG" pivot "${SM[@]}" --timeout $TO m1
launch abort "$S" "$NO_ANSWER" "$SNAPMIG" abort "${SM[@]}" --timeout $TO m1
launch create "$S" "$NO_ANSWER" \
  "$SNAPMIG" create "${SM[@]}" --timeout $TO --mirror-domain "$B" --name m9
launch create-wait "$S" "$NO_ANSWER" \
  "$SNAPMIG" create "${SM[@]}" --timeout $TO --wait --mirror-domain "$B" \
  --name m8
launch rebase "$S" "$NO_ANSWER" \
  "$SNAPMIG" rebase "${SM[@]}" --timeout $TO drive0
launch validate "$S" "$NO_ANSWER" \
  "$SNAPMIG" validate --state-dir "$T/state" --qmp "$S" --timeout $TO "$A" "$B"
# The default, without --timeout (SNAPMIG_DEFAULT_TIMEOUT stands for 30 s).
launch status-default "$S" "$NO_ANSWER" \
  env SNAPMIG_DEFAULT_TIMEOUT=$TO "$SNAPMIG" status "${SM[@]}" m1
launch recover "$T/rv.qmp" "$NO_ANSWER" \
  "$SNAPMIG" recover "${RSM[@]}" --timeout $TO

judge disks "disks"
judge status "status"
judge pivot "pivot"
judge abort "abort"
judge create "create"
judge create-wait "create --wait"
judge rebase "rebase"
judge validate "validate --qmp"
judge status-default "status without --timeout (default)"
judge recover "recover"
check "recover did nothing to a QEMU that may still hold the images" \
  [ "$(cd "$T" && ls -A R RB | sort)" = "$RV_FILES" ]
check "recover kept the journal" [ -n "$(ls -A "$T"/state/vms/*rv.qmp*/journal/)" ]

# list, dumpxml and current read the state directory only: no wait at all.
for c in list current "dumpxml m1"; do
  start=$(now_ms)
  # shellcheck disable=SC2086
  timeout -s KILL 30 "$SNAPMIG" $c "${SM[@]}" >/dev/null 2>&1
  rc=$?
  ms=$(( $(now_ms) - start ))
  check "$c works while QEMU is stopped" [ $rc -eq 0 ]
  check "$c does not wait for QEMU ($ms ms)" [ $ms -le $LIMIT_MS ]
done

# ---- QEMU answers again: the late replies and the queued connections do
# not confuse anything; the move is aborted and the crash recovered.
kill -CONT "$QEMU_PID" "$RV_PID"
out=$("$SNAPMIG" abort "${SM[@]}" m1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "after SIGCONT, abort of the move succeeds" [ $rc -eq 0 ]
check "the VM runs on the snapshot's new top in A" \
  [ "$(top_file drive0)" = "$A/top.m1.qcow2" ]
check "the guest data reads back" guest_read vm drive0 0x11 0 4M
out=$("$SNAPMIG" recover "${RSM[@]}" 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "after SIGCONT, recover of rv succeeds" [ $rc -eq 0 ]
check "rv runs on its original top again" \
  [ "$("$SMQ" "$T/rv.qmp" query-block | jq -r '.[0].inserted.file')" = "$R/top.qcow2" ]

# ---- a monitor whose backlog is full (FAKE: a listener that never accepts).
S=$T/backlog.sock
"$FAKE" backlog "$S" >"$T/backlog.out" 2>&1 &
_sm_pids+=("$!")
deadline=$(( $(now_ms) + 10000 ))
until grep -q ready "$T/backlog.out"; do
  [ "$(now_ms)" -lt $deadline ] || break
  sleep 0.02
done
check "the fake monitor's backlog is full" grep -q ready "$T/backlog.out"
launch backlog "$S" "accepted no connection within $TO s" \
  "$SNAPMIG" disks --qmp "$S" --timeout $TO

# ---- a peer that greets, then answers with a line that never ends (FAKE).
S=$T/endless.sock
"$FAKE" endless "$S" >"$T/endless.out" 2>&1 &
_sm_pids+=("$!")
deadline=$(( $(now_ms) + 10000 ))
until grep -q ready "$T/endless.out"; do
  [ "$(now_ms)" -lt $deadline ] || break
  sleep 0.02
done
TIME=()
[ -x /usr/bin/time ] && TIME=(/usr/bin/time -f 'maxrss %M' -o "$T/rss")
launch endless "$S" "without ending the line" \
  "${TIME[@]}" "$SNAPMIG" disks --qmp "$S" --timeout $TO

judge backlog "disks, backlog full"
judge endless "disks, endless line"
if [ -x /usr/bin/time ]; then
  rss=$(awk '/maxrss/ {print $2}' "$T/rss")
  check "memory stays bounded (max RSS ${rss:-?} KiB < 256 MiB)" \
    [ "${rss:-999999999}" -lt 262144 ]
else
  skip "max RSS: /usr/bin/time missing"
fi

done_testing
