#!/usr/bin/env bash
# bench/pause.sh — the guest's pause at pivot, measured from QEMU's own
# events by a second QMP client (bench/pause-watch), for 1, 2 and 8 disks,
# idle and with guest writes:
#
#   for each case, a guest-less VM with N disks (qcow2, 16 MiB of random
#   data in each, 64 MiB virtual) gets `snapmig create --mirror
#   --mirror-domain B --wait`, then `snapmig pivot --json`.  pause-watch,
#   connected to a second monitor of the same QEMU, records the timestamps
#   QEMU puts on its STOP and RESUME events: that interval is the pause the
#   guest saw (QEMU sends STOP once the vCPUs stopped, then drains and flushes
#   every disk; it sends RESUME just before they run again).  Printed next to
#   it: what pivot itself reported (pause-ms / pause-us, and from what).
#
#   "writes": pause-watch plays the guest, writing 1 MiB at a time to every
#   disk in turn through HMP `qemu-io DRIVE "aio_write ..."` (the device's
#   block backend, as a guest's write) at BENCH_WRITE_MIBS MiB/s in all
#   (default 50), from 1 s before the pivot until it returns, and nothing
#   between STOP and RESUME (a guest's vCPUs are stopped then).  The rate it
#   achieved is printed: HMP commands are synchronous round trips, so on a
#   loaded machine it may fall short of the target.  There is no real guest
#   here (no KVM; a TCG Linux guest doing 50 MiB/s is out of reach on these
#   machines).
#
# One disk is switched without a pause (a single disk switches atomically by
# itself): no STOP/RESUME, printed as "-".
#
# Targets (issue 10): pause <= 10 ms idle, <= 25 ms for 8 disks idle,
# <= 60 ms with 50 MiB/s of guest writes on 2 disks.
#
# BENCH_ROUNDS=N (default 5) interleaved rounds, medians printed.
# BENCH_OLD_SNAPMIG=PATH also measures another snapmig binary (e.g. one built
# from main) in the same rounds, interleaved with this one ("before").
# BENCH_CASES="1:idle 2:idle 8:idle 1:writes 2:writes 8:writes" (default).
# No pass/fail on time; exit 1 only when something breaks or a disk does
# not run on its destination after pivot.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
snapmig=$top/cli/snapmig
smq=$top/tests/tools/smq
watch=$top/bench/pause-watch
ROUNDS=${BENCH_ROUNDS:-5}
RATE=${BENCH_WRITE_MIBS:-50}
CASES=${BENCH_CASES:-"1:idle 2:idle 8:idle 1:writes 2:writes 8:writes"}

for f in "$snapmig" "$smq" "$watch"; do
  [ -x "$f" ] || { echo "bench/pause.sh: $f is not built (make all)"; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null ||
  { echo "bench/pause.sh: qemu-system-x86_64 missing"; exit 1; }
variants="new"
if [ -n "${BENCH_OLD_SNAPMIG:-}" ]; then
  [ -x "$BENCH_OLD_SNAPMIG" ] || { echo "bench/pause.sh: $BENCH_OLD_SNAPMIG: not executable"; exit 1; }
  variants="old new"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/snapmig-bench-pause.XXXXXX")
QEMU_PID= WATCH_PID=
cleanup () {
  [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null && wait "$WATCH_PID" 2>/dev/null
  [ -n "$QEMU_PID" ] && kill -9 "$QEMU_PID" 2>/dev/null && wait "$QEMU_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die () { echo "bench/pause.sh: error: $*"; exit 1; }

# --- data (not timed): 8 disks' worth, copied for each run ------------------
head -c 16M /dev/urandom >"$T/rand.raw"
mkdir -p "$T/gold"
for d in 0 1 2 3 4 5 6 7; do
  qemu-img create -q -f qcow2 "$T/gold/d$d.qcow2" 64M || die "qemu-img create"
  qemu-io -f qcow2 -c "write -s $T/rand.raw 0 16M" "$T/gold/d$d.qcow2" \
    >/dev/null || die "qemu-io (generation)"
done
rm -f "$T/rand.raw"

# run_one VARIANT DISKS LOAD: sets ev_us (events; -1: no pause), rep_us
# (pivot's own report; -1: none), rep_from, mibs (achieved write rate).
run_one () {
  local bin=$snapmig n=$2 load=$3 A=$T/run/A B=$T/run/B d drives=() w=()
  [ "$1" = old ] && bin=$BENCH_OLD_SNAPMIG
  rm -rf "$T/run"; mkdir -p "$A" "$B" "$T/run/state"
  for ((d = 0; d < n; d++)); do
    cp "$T/gold/d$d.qcow2" "$A/"
    drives+=(-drive "file=$A/d$d.qcow2,if=none,id=drive$d,format=qcow2")
    w+=(--write "drive$d")
  done
  sync
  qemu-system-x86_64 -M none -nodefaults -display none \
    -qmp "unix:$T/run/vm.qmp,server=on,wait=off" \
    -qmp "unix:$T/run/watch.qmp,server=on,wait=off" "${drives[@]}" \
    >"$T/run/vm.log" 2>&1 &
  QEMU_PID=$!
  local deadline=$(( $(date +%s) + 20 ))
  until [ -S "$T/run/vm.qmp" ] && [ -S "$T/run/watch.qmp" ]; do
    kill -0 "$QEMU_PID" 2>/dev/null && [ "$(date +%s)" -le $deadline ] ||
      die "QEMU did not start: $(cat "$T/run/vm.log")"
    sleep 0.02
  done
  local SM=(--qmp "$T/run/vm.qmp" --state-dir "$T/run/state")
  "$bin" create "${SM[@]}" --mirror --mirror-domain "$B" --name p --wait \
    >"$T/run/create.out" 2>&1 || die "snapmig create: $(cat "$T/run/create.out")"
  [ "$load" = writes ] || w=()
  "$watch" "$T/run/watch.qmp" "$T/run/stop" "${w[@]}" --rate "$RATE" \
    >"$T/run/watch.out" 2>"$T/run/watch.err" &
  WATCH_PID=$!
  # The writes reach a steady rate (and the mirrors keep up) before the pivot.
  [ "$load" = writes ] && sleep 1
  "$bin" pivot "${SM[@]}" --json p >"$T/run/pivot.out" 2>&1 ||
    die "snapmig pivot ($1, $n disks, $load): $(cat "$T/run/pivot.out")"
  touch "$T/run/stop"
  wait "$WATCH_PID" || die "pause-watch: $(cat "$T/run/watch.err")"
  WATCH_PID=
  # Every disk must run on B afterwards.
  local outside
  outside=$("$smq" "$T/run/vm.qmp" query-block |
            grep -o '"filename": *"[^"]*"' | grep -v "\"$B/" || true)
  [ -z "$outside" ] || die "after pivot, layers outside $B: $outside"
  "$smq" "$T/run/vm.qmp" quit >/dev/null 2>&1
  wait "$QEMU_PID" 2>/dev/null
  QEMU_PID=
  read -r _ ev_us _ _ _ _ _ mibs <"$T/run/watch.out"
  # A number (snapmig-json(7)); a string in older snapmigs.
  rep_us=$(grep -o '"pause-us": *"\{0,1\}[0-9]*' "$T/run/pivot.out" | grep -o '[0-9]*$')
  if [ -z "$rep_us" ]; then
    # An older snapmig: pause-ms only.
    rep_us=$(grep -o '"pause-ms": *"\{0,1\}[0-9]*' "$T/run/pivot.out" | grep -o '[0-9]*$')
    [ -n "$rep_us" ] && rep_us=$((rep_us * 1000))
  fi
  rep_us=${rep_us:--1}
  rep_from=$(grep -o '"pause-from": *"[a-z]*' "$T/run/pivot.out" | grep -o '[a-z]*$')
  rep_from=${rep_from:-clock}   # older snapmig: from before stop to after cont
}

median () { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
ms () { awk -v us="$1" 'BEGIN { if (us < 0) print "-"; else printf "%.1f", us / 1000 }'; }

declare -A EV REP MIBS FROM
echo "bench/pause.sh: $ROUNDS rounds, cases: $CASES, variants: $variants, writes $RATE MiB/s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
  line="round $r:"
  for c in $CASES; do
    n=${c%%:*} load=${c#*:}
    for v in $variants; do
      run_one "$v" "$n" "$load"
      k="$v $n $load"
      EV[$k]="${EV[$k]:-} $ev_us"
      REP[$k]="${REP[$k]:-} $rep_us"
      MIBS[$k]="${MIBS[$k]:-} $mibs"
      FROM[$k]=$rep_from
      line="$line  $v/$n/$load $(ms "$ev_us")"
    done
  done
  echo "$line ms (events)"
done

echo "medians of $ROUNDS rounds (load average now: $(cut -d' ' -f1-3 /proc/loadavg)):"
printf '%-5s %5s %-7s %14s %16s %-12s %s\n' variant disks load "pause(events)" "pivot reported" "reported by" "writes MiB/s"
for c in $CASES; do
  n=${c%%:*} load=${c#*:}
  for v in $variants; do
    k="$v $n $load"
    # shellcheck disable=SC2086
    printf '%-7s %3s %-7s %11s ms %13s ms %-12s %s\n' "$v" "$n" "$load" \
      "$(ms "$(median ${EV[$k]})")" "$(ms "$(median ${REP[$k]})")" \
      "${FROM[$k]}" "$([ "$load" = writes ] && median ${MIBS[$k]} || echo -)"
  done
done
echo "pause(events): STOP to RESUME as stamped by QEMU, seen by a second QMP client; '-': the guest was not paused (one disk)."
echo "targets: <= 10 ms idle, <= 25 ms for 8 disks idle, <= 60 ms with 50 MiB/s of guest writes on 2 disks."
