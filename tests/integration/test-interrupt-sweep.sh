#!/usr/bin/env bash
# The interruption sweep: create, pivot, abort and rebase, each interrupted
# right after every record of its journal (SNAPMIG_TEST_CRASH_AT_RECORD=N,
# see lib/journal.h) with SIGKILL (a crash) and with SIGINT (Ctrl-C: the
# graceful path), and at a few random moments, against a real guest-less
# QEMU with two disks (drive0: base.qcow2 <- top.qcow2, drive1: d1.raw).
# After each interruption the guest keeps writing, then the user runs
# `snapmig recover` and, for pivot, abort and rebase, the command again
# when recover says so or its work is visibly not done; that must succeed.
# Then, every time:
#   - the guest runs (or stays paused, when it was paused before);
#   - each disk runs on exactly the chain the finished operation gives it
#     (create: rolled back to the original chain, or finished then aborted;
#     pivot: all in B; abort: the snapshot's new tops over the original
#     chain in A; rebase: top over base), every file of it exists;
#   - every pattern the guest wrote, before, between and after the
#     interruption, reads back in the VM and offline (qemu-io -r on the
#     chain, once QEMU quit);
#   - no stray file: A holds what it held before plus, after pivot or
#     abort, the snapshot's new tops; B holds exactly the chains the disks
#     run on (pivot) or nothing;
#   - no stuck record: no journal, no move record, no snapshot metadata,
#     no block job; `snapmig validate A B --qmp` finds nothing.
# The number of records of each command is found by raising N (with KILL)
# until the command is no longer killed: that last run is the
# uninterrupted control case.  The random moments come from a seed printed
# at the start (fixed by default): SNAPMIG_SWEEP_SEED=S reproduces them,
# SNAPMIG_SWEEP_SEED=random draws another.  Each case runs on a
# fresh QEMU and fresh images (8M), so a failing case does not spoil the
# next one.  SNAPMIG_SWEEP_OPS="pivot abort" limits the sweep.
. "$(dirname "$0")/lib.sh"

lsm_setup
# A fixed seed by default, so that the suite draws the same moments (up to
# timing) every run; SNAPMIG_SWEEP_SEED=random draws a new one.
SEED=${SNAPMIG_SWEEP_SEED:-8}
[ "$SEED" != random ] || SEED=$(( $(date +%s%N) / 1000 % 100000 ))
echo "# seed $SEED (SNAPMIG_SWEEP_SEED=$SEED reproduces the random-time kills)"
RANDOM=$SEED
OPS=${SNAPMIG_SWEEP_OPS:-create pivot abort rebase}
MAX_RECORDS=200
declare -A RECORDS             # operation → records of an uninterrupted run
INT_CASES=0 INT_FINISHED=0
FAILED_CASES=()

# Every snapmig command of the sweep is bounded: a hang fails the case
# (exit 124), it does not hang the suite.
sm () { timeout -k 5 30 "$SNAPMIG" "$1" "${SM[@]}" "${@:2}"; }

# Pristine images, copied for every case.
P=$T/pristine
mkdir -p "$P"
make_chain "$P" 8M 1M
qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$P/mid.qcow2"
qemu-io -f qcow2 -c 'write -P 0x12 1M 512K' "$P/mid.qcow2" >/dev/null
qemu-img create -q -f raw "$P/d1.raw" 8M
qemu-io -f raw -c 'write -P 0x21 0 1M' "$P/d1.raw" >/dev/null

# fresh rebase|other: a new VM "vm" on fresh copies of the images in A; B
# and the state directory empty.  For rebase drive0 runs on base <- mid <-
# top.  Sets EXPECT (what the guest must read), A_BEFORE.
fresh () {
  if [ -n "${VM_PID:-}" ] && kill -0 "$VM_PID" 2>/dev/null; then
    kill -9 "$VM_PID"; wait "$VM_PID" 2>/dev/null
  fi
  rm -rf "$A" "$B" "$T/state" "$T/vm.qmp"
  mkdir -p "$A" "$B" "$T/state"
  cp --sparse=always "$P/base.qcow2" "$P/d1.raw" "$A/"
  if [ "$1" = rebase ]; then
    cp --sparse=always "$P/mid.qcow2" "$A/"
    qemu-img create -q -f qcow2 -F qcow2 -b mid.qcow2 "$A/top.qcow2"
    EXPECT=("drive0 0x11 0 1M" "drive0 0x12 1M 512K" "drive1 0x21 0 1M")
  else
    cp --sparse=always "$P/top.qcow2" "$A/"
    EXPECT=("drive0 0x11 0 1M" "drive1 0x21 0 1M")
  fi
  A_BEFORE=$(ls -A "$A" | sort)
  NPAT=0
  start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" \
              -drive "$(drive_opt drive1 "$A/d1.raw" raw)"
}

# gwn: the guest writes a new pattern (64K) into each disk; a failed write
# is reported by the caller's outcome check (the pattern is then missing).
gwn () {
  local d
  for d in drive0 drive1; do
    NPAT=$((NPAT + 1))
    gw "$d" "$(printf '0x%02x' $((0x40 + NPAT)))" "$((2048 + NPAT * 128))K" 64K ||
      echo "# guest write $NPAT into $d failed"
  done
}

has_snapshot () { [ -e "$(echo "$T"/state/vms/*/snapshots/"$1".xml)" ]; }

# setup OP: the state before OP runs.
setup () {
  fresh "$1"
  gwn
  case $1 in
    pivot|abort)
      sm create --mirror-domain "$B" --name s --wait >"$T/setup.out" 2>&1 ||
        { echo "# setup create failed:"; sed 's/^/#   /' "$T/setup.out"; }
      gwn ;;
  esac
  if [ "${PAUSED:-0}" = 1 ]; then qmp vm stop >/dev/null; fi
}

# op_cmd OP: the command line of OP (after `sm`).
op_cmd () {
  case $1 in
    create) echo create --mirror-domain "$B" --name s ;;
    pivot)  echo pivot s ;;
    abort)  echo abort s ;;
    rebase) echo rebase --base "$A/base.qcow2" drive0 ;;
  esac
}

# What each disk must run on at the end, active layer first.
want_chain () {
  case "$1 $2" in
    "create drive0") printf '%s\n' "$A/top.qcow2" "$A/base.qcow2" ;;
    "create drive1"|"rebase drive1") echo "$A/d1.raw" ;;
    "pivot drive0") printf '%s\n' "$B/top.s.qcow2" "$B/top.qcow2" "$B/base.qcow2" ;;
    "pivot drive1") printf '%s\n' "$B/d1.s.qcow2" "$B/d1.raw" ;;
    "abort drive0") printf '%s\n' "$A/top.s.qcow2" "$A/top.qcow2" "$A/base.qcow2" ;;
    "abort drive1") printf '%s\n' "$A/d1.s.qcow2" "$A/d1.raw" ;;
    "rebase drive0") printf '%s\n' "$A/top.qcow2" "$A/base.qcow2" ;;
  esac
}

# finish OP RECOVER-OUTPUT: what the user does after the interruption and
# recover: runs pivot/abort again when recover says so or the snapshot is
# still recorded, rebase again when recover says so or drive0 still runs
# on mid; aborts a create that recover left finished (the snapshot is
# recorded).  Sets END, the operation whose end state is expected, and
# AGAIN, what it ran with its exit status ("" when nothing).
finish () {
  local op=$1 said=$2
  END=$op AGAIN=
  case $op in
    create)
      if has_snapshot s; then again abort s; END=abort; fi ;;
    pivot|abort)
      if has_snapshot s || grep -q "snapmig $op" <<<"$said"; then
        again "$op" s
      fi ;;
    rebase)
      if chain_files drive0 | grep -qx "$A/mid.qcow2" ||
         grep -q "snapmig rebase" <<<"$said"; then
        again rebase --base "$A/base.qcow2" drive0
      fi ;;
  esac
}
# again COMMAND ARGS...: runs snapmig COMMAND again, as a user would.
again () {
  local out rc
  out=$(sm "$@" 2>&1); rc=$?
  echo "$out" | sed "s/^/#   $1 again: /"
  AGAIN="$* (exit $rc)"
  AGAIN_RC=$rc
}

# all_chains: "DRIVE FILE" for each file of each disk's chain (as
# chain_files in lib.sh), active layer first, with one query-block and one
# jq for both disks (jq's start-up is most of a case's CPU time).
all_chains () {
  qmp vm query-block | jq -r '.[] | .device as $d
    | .inserted.image | recurse(."backing-image"; . != null) | .filename
    | if startswith("json:") then .[5:] | fromjson | .file.filename else . end
    | "\($d) \(.)"'
}

# no_jobs: polls (5 s at most) until QEMU runs no block job (a stream a
# killed rebase started ends by itself).
no_jobs () {
  local deadline=$(( $(date +%s) + 5 ))
  while [ "$(qmp vm query-block-jobs)" != "[]" ]; do
    [ "$(date +%s)" -lt $deadline ] || return 1
    sleep 0.02
  done
}

# outcome END: every condition of the end state of operation END, each
# failure said on a "# " line; false if any failed.
outcome () {
  local end=$1 bad=0 d f want_a want_b status vmdir chain blocks
  status=$(qmp vm query-status)
  status=${status#*\"status\":\"}
  status=${status%%\"*}
  blocks=$(all_chains)
  if [ "${PAUSED:-0}" = 1 ]; then
    [ "$status" = paused ] || { echo "# the guest was paused before, now: $status"; bad=1; }
  else
    [ "$status" = running ] || { echo "# the guest is not running: $status"; bad=1; }
  fi
  for d in drive0 drive1; do
    chain=$(sed -n "s|^$d ||p" <<<"$blocks")
    if [ "$chain" != "$(want_chain "$end" "$d")" ]; then
      echo "# $d runs on:" $chain "; want:" $(want_chain "$end" "$d")
      bad=1
    fi
    while read -r f; do
      [ -f "$f" ] || { echo "# $d: chain file $f missing"; bad=1; }
    done <<<"$chain"
  done
  all_read || { echo "# a pattern does not read back in the VM"; bad=1; }
  no_jobs || { echo "# block jobs left: $(qmp vm query-block-jobs | jq -c 'map(.device)')"; bad=1; }
  want_a=$A_BEFORE
  case $end in
    pivot|abort) want_a=$(printf '%s\n' $A_BEFORE top.s.qcow2 d1.s.qcow2 | sort) ;;
  esac
  want_b=
  [ "$end" = pivot ] && want_b=$(printf '%s\n' base.qcow2 d1.raw d1.s.qcow2 top.qcow2 top.s.qcow2)
  [ "$(ls -A "$A" | sort)" = "$want_a" ] || { echo "# A holds:" $(ls -A "$A") "; want:" $want_a; bad=1; }
  [ "$(ls -A "$B" | sort)" = "$want_b" ] || { echo "# B holds:" $(ls -A "$B") "; want:" $want_b; bad=1; }
  for vmdir in "$T"/state/vms/*; do
    [ -d "$vmdir" ] || continue
    for f in journal lsm snapshots; do
      [ -z "$(ls -A "$vmdir/$f" 2>/dev/null)" ] ||
        { echo "# stuck records in $f:" $(ls -A "$vmdir/$f"); bad=1; }
    done
  done
  timeout 30 "$SNAPMIG" validate --qmp "$T/vm.qmp" --state-dir "$T/state" \
    "$A" "$B" >"$T/validate.out" 2>&1 ||
    { echo "# validate A B --qmp:"; sed 's/^/#   /' "$T/validate.out"; bad=1; }
  return $bad
}

# offline END: QEMU quits; every pattern reads back with qemu-io -r from
# each disk's expected active layer (through its chain).
offline () {
  local end=$1 bad=0 d p o l e img fmt
  local -a cmds0=() cmds1=()
  qmp vm quit >/dev/null 2>&1
  wait "$VM_PID" 2>/dev/null
  for e in "${EXPECT[@]}"; do
    read -r d p o l <<<"$e"
    if [ "$d" = drive0 ]; then cmds0+=(-c "read -P $p $o $l"); else cmds1+=(-c "read -P $p $o $l"); fi
  done
  for d in drive0 drive1; do
    img=$(want_chain "$end" "$d" | head -n 1)
    fmt=qcow2; [ "${img##*.}" = raw ] && fmt=raw
    if [ $d = drive0 ]; then
      out=$(qemu-io -r -f $fmt "${cmds0[@]}" "$img" 2>&1)
    else
      out=$(qemu-io -r -f $fmt "${cmds1[@]}" "$img" 2>&1)
    fi
    if [ $? -ne 0 ] || grep -qiE 'fail|error|cannot|could not' <<<"$out"; then
      echo "# offline read of $img:"; sed 's/^/#   /' <<<"$out" | head -n 5; bad=1
    fi
  done
  return $bad
}

# exited PID SECONDS: polls until process PID has exited (or is a zombie).
exited () {
  local deadline=$(( $(date +%s) + $2 ))
  while kill -0 "$1" 2>/dev/null &&
        [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; do
    [ "$(date +%s)" -lt $deadline ] || return 1
    sleep 0.01
  done
}

# run_case OP HOW ARG: sets up OP's starting state, runs OP interrupted
# (HOW "record": ARG is N:SIGNAL for the hook; HOW "random": ARG is
# SIGNAL:DELAY_MS), lets the guest write, recovers, finishes as a user
# would and checks the outcome.  Sets CASE_RC to OP's exit status.
run_case () {
  local op=$1 how=$2 arg=$3 label out rc pid t0=$(date +%s%N)
  local failed_before=$_sm_failed
  label="$op $how $arg"
  if [ "${PAUSED:-0}" = 1 ]; then label="$label (paused before)"; fi
  setup "$op"
  if [ "$how" = record ]; then
    SNAPMIG_TEST_CRASH_AT_RECORD=$arg sm $(op_cmd "$op") >"$T/op.out" 2>&1
    CASE_RC=$?
  else
    # Not through sm: timeout(1) would take the KILL itself.
    local -a cmd=($(op_cmd "$op"))
    "$SNAPMIG" "${cmd[0]}" "${SM[@]}" "${cmd[@]:1}" >"$T/op.out" 2>&1 &
    pid=$!
    sleep "$(printf '%d.%03d' $(( ${arg#*:} / 1000 )) $(( ${arg#*:} % 1000 )))"
    kill -s "${arg%%:*}" "$pid" 2>/dev/null
    if ! exited "$pid" 30; then
      echo "# $op did not exit within 30 s of SIG${arg%%:*}: killed"
      kill -9 "$pid"
    fi
    wait "$pid"
    CASE_RC=$?
  fi
  # Not a check (a command may rightly finish when the signal comes after
  # its last wait), but said: how many SIGINTs a command did not stop at.
  if [ "${arg%%:*}" = INT ] || [ "${arg#*:}" = INT ]; then
    INT_CASES=$((INT_CASES + 1))
    [ $CASE_RC -ne 0 ] || INT_FINISHED=$((INT_FINISHED + 1))
  fi
  echo "# --- $label: $op exited $CASE_RC after $(( ($(date +%s%N) - t0) / 1000000 )) ms of setup and run"
  sed 's/^/#   /' "$T/op.out" | tail -n 4
  gwn
  out=$(sm recover 2>&1); rc=$?
  echo "$out" | sed 's/^/#   recover: /'
  check "$label: recover succeeds" [ $rc -eq 0 ]
  finish "$op" "$out"
  if [ -n "$AGAIN" ]; then
    check "$label: $AGAIN, run again as a user would, succeeds" [ $AGAIN_RC -eq 0 ]
  fi
  check "$label: guest, chains, data, files, records, validate" outcome "$END"
  check "$label: every pattern reads back offline" offline "$END"
  echo "# case took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  if [ $_sm_failed -ne $failed_before ]; then FAILED_CASES+=("$label"); fi
}

# sweep_records OP: OP interrupted after each record with KILL (until OP is
# no longer killed: the record count), then with INT after each record.
sweep_records () {
  local op=$1 n count=0
  for ((n = 1; n <= MAX_RECORDS; n++)); do
    run_case "$op" record "$n:KILL"
    [ $CASE_RC -eq 137 ] || break
    count=$n
  done
  check "$op: the sweep found its records ($count) and an uninterrupted run" \
    [ $count -gt 0 -a $count -lt $MAX_RECORDS ]
  echo "# $op writes $count journal records"
  RECORDS[$op]=$count
  for ((n = 1; n <= count; n++)); do
    run_case "$op" record "$n:INT"
  done
}

# sweep_random OP K: K interruptions of OP at random moments, alternately
# SIGKILL and SIGINT, within the time OP takes uninterrupted.
sweep_random () {
  local op=$1 k=$2 i ms start
  setup "$op"
  start=$(date +%s%N)
  sm $(op_cmd "$op") >/dev/null 2>&1
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  [ $ms -gt 0 ] || ms=1
  echo "# $op takes $ms ms uninterrupted"
  for ((i = 0; i < k; i++)); do
    if [ $((i % 2)) = 0 ]; then sig=KILL; else sig=INT; fi
    run_case "$op" random "$sig:$((RANDOM % ms))"
  done
}

for op in $OPS; do
  case $op in
    create|pivot|abort)
      sweep_records "$op"
      sweep_random "$op" 2 ;;
    rebase)
      # rebase journals (and the hook can stop it) only once its executor
      # writes a journal: probe with N=1.
      setup rebase
      SNAPMIG_TEST_CRASH_AT_RECORD=1 sm $(op_cmd rebase) >/dev/null 2>&1
      if [ $? -eq 137 ]; then
        echo "# rebase writes a journal: interrupted at every record"
        sweep_records rebase
        sweep_random rebase 2
      else
        echo "# rebase writes no journal: interrupted at random moments only"
        sweep_random rebase 6
      fi ;;
  esac
done

# A guest paused before pivot stays paused whatever happens to pivot: three
# records drawn at random (seeded) of the RECORDS[pivot] records, each
# signal.
if [ -n "${RECORDS[pivot]:-}" ]; then
  PAUSED=1
  for sig in KILL INT; do
    for i in 1 2 3; do
      run_case pivot record "$(( RANDOM % RECORDS[pivot] + 1 )):$sig"
    done
  done
  PAUSED=0
fi

echo "# $INT_FINISHED of $INT_CASES SIGINT cases ran their command to success"
echo "# ${#FAILED_CASES[@]} cases failed (seed $SEED):"
for c in "${FAILED_CASES[@]}"; do echo "#   $c"; done
done_testing
