#!/bin/bash
# snapmig migrate killed (SIGKILL) on either side after each step it
# journals, then `snapmig recover` on both sides: in every case exactly one
# QEMU runs the VM afterwards — the source on its own files, or (killed
# after the point of no return) the destination on its copies — with the
# pattern written before the migration intact, no journal left, no stray
# file in either domain, no destination QEMU left behind.
#
# The kill: SNAPMIG_TEST_MIGRATE_CRASH_AT=[COMMAND:]N (lib/migrate-source.c)
# SIGKILLs the process after its N-th journaled step; N is raised until the
# migration completes without being killed.  Same host, TCP on 127.0.0.1
# (the cross-host runs are test-migrate.sh's).
. "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "no qemu-system-x86_64"
command -v qemu-img >/dev/null || skip_all "no qemu-img"

A=$T/A; B=$T/B; RUN=$T/run
DEST=$T/dest.sh     # runs the destination's snapmig, recording its PID

# A destination command that records each destination snapmig's PID, so
# that the test can wait for one the killed source left running (and kill
# it by PID at the end).
cat >"$DEST" <<EOF
#!/bin/bash
echo \$\$ >>"$T/dest.pids"
exec \${SM_DEST_ENV:+env \$SM_DEST_ENV} "$SNAPMIG" "\$@"
EOF
chmod +x "$DEST"

dest_pids_gone () {
  local p
  for p in $(cat "$T/dest.pids" 2>/dev/null); do
    wait_gone "$p" || { _sm_pids+=("$p"); return 1; }
  done
  return 0
}

fresh () {
  [ -n "${VM_PID:-}" ] && kill -9 "$VM_PID" 2>/dev/null
  if [ -s "$RUN/vm.pid" ]; then kill -9 "$(cat "$RUN/vm.pid")" 2>/dev/null; fi
  rm -rf "$A" "$B" "$RUN" "$T/S1" "$T/S2" "$T/dest.pids" "$T/vm.qmp"
  mkdir -p "$A" "$B"
  qemu-img create -q -f qcow2 "$A/base.qcow2" 16M
  qemu-io -f qcow2 -c 'write -P 0x11 0 2M' "$A/base.qcow2" >/dev/null
  qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$A/top.qcow2"
  qemu-img create -q -f raw "$A/d1.raw" 8M
  start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" \
    -drive "$(drive_opt drive1 "$A/d1.raw" raw)" -pidfile "$T/vm.pid" || exit 1
  guest_write vm drive0 0x22 1M 1M >/dev/null
  guest_write vm drive1 0x33 0 1M >/dev/null
}

migrate () {
  "$SNAPMIG" migrate --qmp "$T/vm.qmp" --state-dir "$T/S1" \
    --dest-state-dir "$T/S2" --dest-domain "$B" --dest-run-dir "$RUN" \
    --dest-cmd "$DEST" --timeout 20 >"$T/out" 2>&1
}

# The destination QEMU's PID: the source's -pidfile, which snapmig moves
# into the run directory.
dest_qemu_pid () {
  [ -s "$RUN/vm.pid" ] || return 1
  cat "$RUN/vm.pid"
}

# Reads the patterns offline from the tops the winner ran on.
patterns_ok () {
  local top0=$1 raw=$2
  qemu-io -r -f qcow2 -c 'read -P 0x22 1M 1M' -c 'read -P 0x11 0 1M' \
    "$top0" | grep -q 'Pattern verification failed' && return 1
  qemu-io -r -f qcow2 -c 'read -P 0x22 1M 1M' "$top0" | grep -q '^read 1048576' || return 1
  qemu-io -r -f "$3" -c 'read -P 0x33 0 1M' "$raw" | grep -q '^read 1048576'
}

journals_empty () {
  [ -z "$(ls "$T"/S1/vms/*/journal/ 2>/dev/null)" ] &&
  [ -z "$(ls "$T/S2/incoming" 2>/dev/null)" ]
}

# One case: kill SIDE ("source", or the destination's COMMAND) after step
# N; 1 when the migration ran through (N past the last step).
run_case () {
  local side=$1 n=$2 rc where
  fresh
  if [ "$side" = source ]; then
    (SNAPMIG_TEST_MIGRATE_CRASH_AT=$n migrate) 2>/dev/null; rc=$?
  else
    (SM_DEST_ENV="SNAPMIG_TEST_MIGRATE_CRASH_AT=$side:$n" migrate) 2>/dev/null; rc=$?
  fi
  # the destination QEMU (its pidfile, moved into the run directory) is
  # killed by PID when the test ends, whatever happened
  if [ -s "$RUN/vm.pid" ]; then _sm_pids+=("$(cat "$RUN/vm.pid")"); fi
  if [ $rc -eq 0 ]; then
    grep -q '^migrated vm' "$T/out" || { not_ok "$side $n: exit 0 without 'migrated'"; cat "$T/out" | sed 's/^/# /'; }
    if DP=$(dest_qemu_pid); then kill -9 "$DP" 2>/dev/null; fi
    return 1
  fi
  dest_pids_gone || not_ok "$side $n: a destination snapmig is still running"

  # recover: the source first; when it says the destination may run the
  # guest, ask the destination
  "$SNAPMIG" recover --qmp "$T/vm.qmp" --state-dir "$T/S1" >"$T/rec1" 2>&1
  local r1=$?
  "$SNAPMIG" recover --incoming --state-dir "$T/S2" >"$T/rec2" 2>&1
  local r2=$?
  if [ $r1 -ne 0 ]; then
    if grep -q 'reached the destination' "$T/rec1"; then
      if DP=$(dest_qemu_pid) && kill -0 "$DP" 2>/dev/null; then
        "$SNAPMIG" recover --qmp "$T/vm.qmp" --state-dir "$T/S1" --dest-runs >"$T/rec1" 2>&1
      else
        "$SNAPMIG" recover --qmp "$T/vm.qmp" --state-dir "$T/S1" --dest-never-ran >"$T/rec1" 2>&1
      fi
      r1=$?
    fi
  fi
  if [ $r1 -ne 0 ] || [ $r2 -ne 0 ]; then
    not_ok "$side $n: recover (source $r1, destination $r2)"
    sed 's/^/# src: /' "$T/rec1"; sed 's/^/# dst: /' "$T/rec2"; sed 's/^/# migrate: /' "$T/out"
    return 0
  fi

  if kill -0 "$VM_PID" 2>/dev/null; then
    where=source
    local st; st=$(qmp vm query-status | jq -r .status)
    local tops; tops=$(qmp vm query-block | jq -r '[.[].inserted.file] | join(" ")')
    [ "$st" = running ] || not_ok "$side $n: the source runs no guest ($st)"
    [ "$tops" = "$A/top.qcow2 $A/d1.raw" ] || not_ok "$side $n: source on $tops"
    [ -z "$(ls "$B")" ] || not_ok "$side $n: destination files left: $(ls "$B" | tr '\n' ' ')"
    if DP=$(dest_qemu_pid) && kill -0 "$DP" 2>/dev/null; then
      not_ok "$side $n: a destination QEMU runs too"; _sm_pids+=("$DP")
    fi
    # quit, then the files are read offline: a monitor that did not answer
    # in smq's 10 s (seen once on a loaded CI machine) is asked again, so
    # that the check reads the files QEMU closed, never a running QEMU's
    qmp vm quit >/dev/null 2>&1
    wait_gone "$VM_PID" 15 || { qmp vm quit >/dev/null 2>&1; wait_gone "$VM_PID" 30; } ||
      echo "# the source QEMU (pid $VM_PID) did not quit"
    patterns_ok "$A/top.qcow2" "$A/d1.raw" raw || not_ok "$side $n: patterns on the source"
  else
    where=destination
    DP=$(dest_qemu_pid) || { not_ok "$side $n: no QEMU runs the VM"; return 0; }
    _sm_pids+=("$DP")
    local st; st=$("$SMQ" "$RUN/snapmig.qmp" query-status | jq -r .status)
    [ "$st" = running ] || not_ok "$side $n: the destination runs no guest ($st)"
    local t0; t0=$(ls "$B"/top.mig-*.qcow2 2>/dev/null)
    local t1; t1=$(ls "$B"/d1.mig-*.qcow2 2>/dev/null)
    "$SMQ" "$RUN/snapmig.qmp" quit >/dev/null 2>&1
    wait_gone "$DP" 5
    patterns_ok "$t0" "$t1" qcow2 || not_ok "$side $n: patterns on the destination"
  fi
  [ "$(ls "$A" | tr '\n' ' ')" = "base.qcow2 d1.raw top.qcow2 " ] ||
    not_ok "$side $n: source files: $(ls "$A" | tr '\n' ' ')"
  journals_empty || not_ok "$side $n: journals left: $(ls "$T"/S1/vms/*/journal/ "$T/S2/incoming" 2>/dev/null | tr '\n' ' ')"
  ok "$side killed after step $n: recovered, the VM runs on the $where"
  return 0
}

for side in source migrate-prepare migrate-finish; do
  steps=0
  for n in $(seq 1 30); do
    run_case "$side" "$n" || break
    steps=$n
  done
  check "$side: the migration completes once N passes its $steps steps" [ "$steps" -lt 30 ]
done

check_shape "$0" | while read -r line; do not_ok "check shape: $line"; done
done_testing
