#!/usr/bin/env bash
# bench/nbd-migrate.sh — cross-host migration of a running 2-disk VM with
# its local disks (issue 9), between two "hosts": network namespaces A and
# B joined by a veth pair (tests/integration/netns.sh; loopback when the
# bench is not root or namespaces cannot be made, and it says so).  Three
# ways of moving the same chains, measured in the same run:
#
#   (a)  `snapmig migrate` of the VM (QEMU in A, guest-less, -M none) to B:
#        wall time of the whole command (begin, prepare with its layer copy
#        and destination QEMU, mirrors of the tops, switchover, finish,
#        confirm), the destination snapmig run through
#        --dest-cmd 'ip netns exec B snapmig'; each round's line also says
#        when each of its phases began (its JSON phase events, stamped as
#        they arrive);
#   (r1) `qemu-img convert` (run in A) of each disk's chain into a
#        `qemu-nbd -f qcow2 --cache=writeback` export in B of a pre-created
#        qcow2 of the same virtual size, both disks in parallel.  Durable:
#        the client runs with -t writeback, so it sends NBD_CMD_FLUSH when
#        it closes the target and qemu-nbd answers it with an fdatasync of
#        the file; the timing also waits for qemu-nbd to exit (it closes,
#        and flushes, the image) and includes a `sync -d` of each target
#        file, which costs nothing when the flush did its job and makes the
#        data durable when it did not;
#   (r2) the libvirt-style flow (what `virsh migrate --live
#        --copy-storage-all` does), driven by the bench over QMP (smq):
#        destination QEMU in B on flat pre-created qcow2 images with
#        -incoming defer, nbd-server-start + block-export-add per disk,
#        migrate-incoming; on the source blockdev-add nbd + blockdev-mirror
#        sync=full per disk, wait until every mirror is READY, migrate with
#        pause-before-switchover, at pre-switchover non-force
#        block-job-cancel of each mirror and blockdev-del of its target,
#        migrate-continue, wait completed on both sides, nbd-server-stop and
#        cont on the destination.  Timed from the image pre-creation to the
#        destination's cont (like (a), which starts its destination too).
#        Every QMP command is one smq process (a connection each, some ms),
#        libvirt keeps its connection: (r2)'s pause is an upper bound.
#
#   (t)  (a) with --tunnel (issue 12), the same migration with every
#        stream through one connection: "relay", --dest-cmd
#        'ip netns exec B snapmig' (`snapmig relay` over its stdin/stdout),
#        and "ssh", --dest-cmd 'ssh -F CONFIG dest snapmig' to an sshd the
#        bench starts in B with throwaway keys (tests/integration/sshd.sh;
#        left out, and said so, when sshd cannot be started).  Printed with
#        the ratio to (a) (issue 12's target: <= 1.3x).
#
# Each disk: BENCH_BASE_SIZE (default 1G) of random data in base.qcow2 and
# BENCH_TOP_SIZE (default 64M) in top.qcow2 over it (relative backing
# name), virtual size BENCH_BASE_SIZE.  Generating the data is not timed;
# the page cache is warm and the generated data synced before each run.
# Interleaved rounds (BENCH_ROUNDS, default 5), medians reported.  Prints
# the ratios (issue 9's targets: (a)/(r1) <= 1.2, (a)/(r2) <= 0.8), the
# guest pause at switchover for (a) and (r2) from QEMU's own events (STOP
# on the source, RESUME on the destination, watched by bench/pause-watch on
# a second monitor of each QEMU; also what snapmig reported), and snapmig's
# peak RSS (bench/peak-rss --comm snapmig: its processes on both sides,
# not the QEMU and qemu-img processes they run).  No pass/fail on time;
# exit 1 when something breaks or migrated data differs from the source
# (round 1 compares every destination with qemu-img compare).
#
# BENCH_QUICK=1: 128M + 16M per disk and 1 round (unless BENCH_ROUNDS),
# for checking the bench itself.  BENCH_SNAPMIG=PATH measures another build.
# Without `snapmig migrate` (its --help fails) line (a) says "snapmig
# migrate not available" and the references are still measured.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
snapmig=${BENCH_SNAPMIG:-$top/cli/snapmig}
smq=$top/tests/tools/smq
peak_rss=$top/bench/peak-rss
watch=$top/bench/pause-watch
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  BASE_SIZE=${BENCH_BASE_SIZE:-128M} TOP_SIZE=${BENCH_TOP_SIZE:-16M}
  ROUNDS=${BENCH_ROUNDS:-1}
else
  BASE_SIZE=${BENCH_BASE_SIZE:-1G} TOP_SIZE=${BENCH_TOP_SIZE:-64M}
  ROUNDS=${BENCH_ROUNDS:-5}
fi

for f in "$snapmig" "$smq" "$peak_rss" "$watch"; do
  [ -x "$f" ] || { echo "bench/nbd-migrate.sh: $f is not built (make all)"; exit 1; }
done
for c in qemu-system-x86_64 qemu-nbd qemu-img jq; do
  command -v $c >/dev/null || { echo "bench/nbd-migrate.sh: $c missing"; exit 1; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/snapmig-bench-nbd.XXXXXX")
# What netns.sh needs from tests/integration/lib.sh: $T, _sm_pids, at_exit.
_sm_pids=() _sm_exit_hooks=()
at_exit () { _sm_exit_hooks+=("$1"); }
cleanup () {
  local p h
  for p in "${_sm_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "${_sm_pids[@]}"; do wait "$p" 2>/dev/null; done
  for ((h = ${#_sm_exit_hooks[@]} - 1; h >= 0; h--)); do eval "${_sm_exit_hooks[$h]}"; done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. "$top/tests/integration/netns.sh"
. "$top/tests/integration/sshd.sh"

die () { echo "bench/nbd-migrate.sh: error: $*"; exit 1; }
. "$top/bench/chains.bash"
now () { date +%s%N; }
secs () { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }
q () { "$smq" "$@"; }
# wait_until SECONDS COMMAND...: polls COMMAND every 10 ms; 1 on timeout.
wait_until () {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@"; do
    [ "$(date +%s)" -le $deadline ] || return 1
    sleep 0.01
  done
}

netns_setup
A=$T/A
# The ssh tunnel's sshd in B (sshd.sh needs SNAPMIG, and skip_all: here
# the ssh rounds are left out instead).
SNAPMIG=$snapmig have_ssh=0 no_ssh=
skip_all () { no_ssh=$*; return 1; }
if ! { command -v sshd || [ -x /usr/sbin/sshd ]; } >/dev/null; then
  no_ssh="sshd missing (scripts/install-deps installs openssh-server)"
elif ! command -v ssh >/dev/null; then
  no_ssh="ssh missing (openssh-client)"
elif sshd_start >"$T/sshd.out" 2>&1; then
  have_ssh=1
else
  no_ssh="sshd did not start: $(grep -v '^# sshd did not' "$T/sshd.out" | head -n 3 | tr '\n' ' ')"
fi
mkdir -p "$A"
PORT0=$(( 20000 + $$ % 20000 ))   # NBD ports PORT0, PORT0+1; migration PORT0+2
VSIZE=$(numfmt --from=iec "$BASE_SIZE")

# --- data (not timed) --------------------------------------------------------
echo "generating 2 disks: $BASE_SIZE random in base.qcow2, $TOP_SIZE random in top.qcow2 ..."
gen_chains "$A" "$BASE_SIZE" "$TOP_SIZE" >"$T/gen.out" || die "$(cat "$T/gen.out")"
sync
moved=0
for f in "$A"/base?.qcow2 "$A"/top?.qcow2; do moved=$(( moved + $(stat -c %s "$f") )); done

# start_src: the source VM in A (QMP $T/vm.qmp, a second monitor $T/mon.qmp
# for the pause watcher); sets SRC_PID.
SRC_PID=
start_src () {
  rm -f "$T/vm.qmp" "$T/mon.qmp"
  $IN_A qemu-system-x86_64 -M none -nodefaults -display none \
    -qmp "unix:$T/vm.qmp,server=on,wait=off" \
    -qmp "unix:$T/mon.qmp,server=on,wait=off" \
    -drive "file=$A/top0.qcow2,if=none,id=drive0,format=qcow2" \
    -drive "file=$A/top1.qcow2,if=none,id=drive1,format=qcow2" \
    >"$T/vm.log" 2>&1 &
  SRC_PID=$!
  _sm_pids+=("$SRC_PID")
  wait_until 20 test -S "$T/mon.qmp" || die "source QEMU did not start: $(cat "$T/vm.log")"
}
# stop_pid PID: waits (30 s) for a QEMU that was told to quit, then kills it.
stop_pid () {
  wait_until 30 eval "! kill -0 $1 2>/dev/null" || kill -9 "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 0
}
# watch_pause SOCKET OUT: a pause-watch on SOCKET (started when it appears),
# printing STOP/RESUME lines into OUT until $T/watch.stop exists.
watch_pause () {
  ( wait_until 600 test -S "$1" && exec "$watch" "$1" "$T/watch.stop" --events ) \
    >"$2" 2>/dev/null &
  _sm_pids+=("$!")
  WATCH_PIDS+=("$!")
}
# pause_ms SRC-OUT DST-OUT: ms from the source's last STOP to the
# destination's last RESUME, "?" when either is missing.
pause_ms () {
  local s r
  s=$(awk '$2 == "STOP" { v = $3 } END { print v }' "$1")
  r=$(awk '$2 == "RESUME" { v = $3 } END { print v }' "$2")
  if [ -n "$s" ] && [ -n "$r" ]; then
    awk -v s="$s" -v r="$r" 'BEGIN { printf "%.1f", (r - s) / 1000 }'
  else
    echo "?"
  fi
}
end_watches () {
  local p
  touch "$T/watch.stop"
  for p in "${WATCH_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  WATCH_PIDS=()
  rm -f "$T/watch.stop"
}
WATCH_PIDS=()
# compare_to_a DIR FILE0 FILE1: the destination's disks hold A's chains.
compare_to_a () {
  local d f
  for d in 0 1; do
    f=$2; [ $d = 1 ] && f=$3
    qemu-img compare -q -f qcow2 -F qcow2 "$A/top$d.qcow2" "$f" ||
      die "$1: drive$d differs from the source's chain"
  done
}

# --- (r1) qemu-img convert into qemu-nbd exports in B ----------------------
measure_convert () {
  local r=$1 dir=$T/Bconv d s nbd=() cv=()
  mkdir -p "$dir"
  for d in 0 1; do
    qemu-img create -q -f qcow2 "$dir/top$d.qcow2" "$VSIZE" || die "qemu-img create"
    # Without --persistent qemu-nbd exits when its one client disconnects.
    $IN_B qemu-nbd -f qcow2 --cache=writeback -b "$IP_B" -p $((PORT0 + d)) \
      -x "drive$d" "$dir/top$d.qcow2" >"$T/qemu-nbd$d.log" 2>&1 &
    nbd+=("$!"); _sm_pids+=("$!")
  done
  wait_until 20 eval '[ "$(listeners_b $PORT0 $((PORT0 + 1)) | wc -l)" = 2 ]' ||
    die "qemu-nbd did not listen: $(cat "$T"/qemu-nbd?.log)"
  sync
  s=$(now)
  for d in 0 1; do
    $IN_A qemu-img convert -n --target-is-zero -t writeback -f qcow2 -O raw \
      "$A/top$d.qcow2" "nbd://$IP_B:$((PORT0 + d))/drive$d" &
    cv+=("$!")
  done
  for d in 0 1; do wait "${cv[$d]}" || die "qemu-img convert into qemu-nbd failed"; done
  for d in 0 1; do wait "${nbd[$d]}" || die "qemu-nbd failed: $(cat "$T/qemu-nbd$d.log")"; done
  sync -d "$dir/top0.qcow2" "$dir/top1.qcow2" || die "sync -d"
  t_conv=$(( $(now) - s ))
  [ "$r" = 1 ] && compare_to_a "(r1)" "$dir/top0.qcow2" "$dir/top1.qcow2"
  rm -rf "$dir"
}

# --- (r2) the libvirt-style flow over QMP -------------------------------------
jobs_ready () {
  [ "$(q "$T/vm.qmp" query-block-jobs | jq '[.[] | select(.ready)] | length')" = 2 ]
}
no_jobs () { [ "$(q "$T/vm.qmp" query-block-jobs | jq length)" = 0 ]; }
# mig_status SOCKET STATUS: query-migrate says STATUS; dies when it failed.
mig_status () {
  local st
  st=$(q "$1" query-migrate | jq -r '.status // "none"')
  case $st in failed|cancelled) die "(r2) migration $st on $1" ;; esac
  [ "$st" = "$2" ]
}
measure_libvirt () {
  local r=$1 dir=$T/Blv d s node dpid dsock=$T/lv.qmp caps
  local nbd_addr="{\"type\": \"inet\", \"host\": \"$IP_B\", \"port\": \"$PORT0\"}"
  local uri="tcp:$IP_B:$((PORT0 + 2))"
  start_src
  watch_pause "$T/mon.qmp" "$T/pw-src.out"
  rm -f "$dsock" "$T/lvmon.qmp"
  watch_pause "$T/lvmon.qmp" "$T/pw-dst.out"
  sync
  s=$(now)
  mkdir -p "$dir"
  for d in 0 1; do
    qemu-img create -q -f qcow2 "$dir/d$d.qcow2" "$VSIZE" || die "qemu-img create"
  done
  $IN_B qemu-system-x86_64 -M none -nodefaults -display none \
    -qmp "unix:$dsock,server=on,wait=off" \
    -qmp "unix:$T/lvmon.qmp,server=on,wait=off" \
    -drive "file=$dir/d0.qcow2,if=none,id=drive0,format=qcow2" \
    -drive "file=$dir/d1.qcow2,if=none,id=drive1,format=qcow2" \
    -S -incoming defer >"$T/lv.log" 2>&1 &
  dpid=$!; _sm_pids+=("$dpid")
  wait_until 20 test -S "$dsock" || die "(r2) destination QEMU did not start: $(cat "$T/lv.log")"
  caps='{"capabilities": [{"capability": "events", "state": true},
                          {"capability": "late-block-activate", "state": true}]}'
  q "$dsock" migrate-set-capabilities "$caps" >/dev/null || die "(r2) capabilities"
  q "$dsock" nbd-server-start "{\"addr\": {\"type\": \"inet\", \"data\":
      {\"host\": \"$IP_B\", \"port\": \"$PORT0\"}}}" >/dev/null || die "(r2) nbd-server-start"
  for d in 0 1; do
    node=$(q "$dsock" query-block | jq -r --arg d "drive$d" \
             '.[] | select(.device == $d) | .inserted."node-name"')
    q "$dsock" block-export-add "{\"type\": \"nbd\", \"id\": \"exp$d\",
        \"node-name\": \"$node\", \"name\": \"drive$d\", \"writable\": true}" \
      >/dev/null || die "(r2) block-export-add drive$d"
  done
  q "$dsock" migrate-incoming "{\"uri\": \"$uri\"}" >/dev/null || die "(r2) migrate-incoming"
  for d in 0 1; do
    q "$T/vm.qmp" blockdev-add "{\"driver\": \"nbd\", \"node-name\": \"tgt$d\",
        \"server\": $nbd_addr, \"export\": \"drive$d\"}" >/dev/null ||
      die "(r2) blockdev-add nbd drive$d"
    q "$T/vm.qmp" blockdev-mirror "{\"job-id\": \"m$d\", \"device\": \"drive$d\",
        \"target\": \"tgt$d\", \"sync\": \"full\", \"on-target-error\": \"stop\"}" \
      >/dev/null || die "(r2) blockdev-mirror drive$d"
  done
  wait_until 600 jobs_ready || die "(r2) mirrors not READY"
  caps='{"capabilities": [{"capability": "events", "state": true},
                          {"capability": "pause-before-switchover", "state": true}]}'
  q "$T/vm.qmp" migrate-set-capabilities "$caps" >/dev/null || die "(r2) source capabilities"
  q "$T/vm.qmp" migrate "{\"uri\": \"$uri\"}" >/dev/null || die "(r2) migrate"
  wait_until 600 mig_status "$T/vm.qmp" pre-switchover || die "(r2) no pre-switchover"
  for d in 0 1; do
    q "$T/vm.qmp" block-job-cancel "{\"device\": \"m$d\"}" >/dev/null ||
      die "(r2) block-job-cancel m$d"
  done
  wait_until 60 no_jobs || die "(r2) mirrors did not complete"
  for d in 0 1; do
    q "$T/vm.qmp" blockdev-del "{\"node-name\": \"tgt$d\"}" >/dev/null ||
      die "(r2) blockdev-del tgt$d"
  done
  q "$T/vm.qmp" migrate-continue '{"state": "pre-switchover"}' >/dev/null ||
    die "(r2) migrate-continue"
  wait_until 600 mig_status "$T/vm.qmp" completed || die "(r2) source not completed"
  wait_until 600 mig_status "$dsock" completed || die "(r2) destination not completed"
  q "$dsock" nbd-server-stop >/dev/null || die "(r2) nbd-server-stop"
  q "$dsock" cont >/dev/null || die "(r2) cont"
  t_lv=$(( $(now) - s ))
  [ "$(q "$dsock" query-status | jq -r .status)" = running ] ||
    die "(r2) the destination does not run"
  end_watches
  pause_lv=$(pause_ms "$T/pw-src.out" "$T/pw-dst.out")
  q "$T/vm.qmp" quit >/dev/null 2>&1; stop_pid "$SRC_PID"
  q "$dsock" quit >/dev/null 2>&1; stop_pid "$dpid"
  [ "$r" = 1 ] && compare_to_a "(r2)" "$dir/d0.qcow2" "$dir/d1.qcow2"
  rm -rf "$dir"
}

# --- (a) snapmig migrate -------------------------------------------------------
# stamp_lines: each line of stdin prefixed with the time it was read (ns).
stamp_lines () {
  local line
  while IFS= read -r line; do printf '%s %s\n' "$(date +%s%N)" "$line"; done
}
have_migrate=0
"$snapmig" migrate --help >/dev/null 2>&1 && have_migrate=1
# measure_snapmig ROUND [MODE]: (a) with MODE direct (default: TCP),
# relay or ssh (--tunnel, (t)).
measure_snapmig () {
  local r=$1 mode=${2:-direct} dir=$T/B$1 run=$T/run$1 res dpid f0 f1 ok
  local dest=("--dest-cmd" "${IN_B:+$IN_B }$snapmig")
  case $mode in
    relay) dest+=(--tunnel) ;;
    ssh) dest=(--dest-cmd "$SSH_DEST_CMD" --tunnel) ;;
  esac
  mkdir -p "$dir" "$run"
  start_src
  watch_pause "$T/mon.qmp" "$T/pw-src.out"
  watch_pause "$run/mon.qmp" "$T/pw-dst.out"
  sync
  s=$(now)
  $IN_A "$peak_rss" --comm snapmig "$snapmig" migrate --qmp "$T/vm.qmp" \
    --dest-domain "$dir" --dest-run-dir "$run" \
    --state-dir "$T/s1-$r" --dest-state-dir "$T/s2-$r" \
    "${dest[@]}" --dest-host "$IP_B" --json \
    2>"$T/migrate.err" | stamp_lines >"$T/migrate.out"
  ok=${PIPESTATUS[0]}
  t_mig=$(( $(now) - s ))
  res=$(grep '"event": *"result"' "$T/migrate.out" | tail -n 1 | cut -d' ' -f2-)
  dpid=$(jq -r '."dest-pid" // empty' <<<"$res" 2>/dev/null)
  [ -n "$dpid" ] && _sm_pids+=("$dpid")
  [ $ok = 0 ] || die "snapmig migrate ($mode) failed (exit $ok): $(tail -n 5 "$T/migrate.out" "$T/migrate.err")"
  end_watches
  pause_a=$(pause_ms "$T/pw-src.out" "$T/pw-dst.out")
  pause_sm=$(jq -r '."pause-ms" // "?"' <<<"$res")
  # When each phase began, in seconds from the start.
  phases=$(awk -v s="$s" 'match($0, /"event": *"phase", *("time": *"[^"]*", *)?"phase": *"[a-z-]+"/) {
             p = substr($0, RSTART, RLENGTH); sub(/^.*"phase": *"/, "", p); sub(/"$/, "", p)
             printf "%s%s %.1f", sep, p, ($1 - s) / 1e9; sep = ", " }' "$T/migrate.out")
  rss=$(sed -n 's/^peak-rss-kib-snapmig //p' "$T/migrate.err")
  # The numbers mean nothing unless the VM runs on B's files, and (round 1)
  # B's chains hold what A's hold.
  wait_until 5 eval '! kill -0 $SRC_PID 2>/dev/null' || die "(a) the source QEMU did not quit"
  wait "$SRC_PID" 2>/dev/null
  [ "$(q "$run/vm.qmp" query-status | jq -r .status)" = running ] ||
    die "(a) the destination does not run"
  f0=$(q "$run/vm.qmp" query-block | jq -r '.[] | select(.device == "drive0") | .inserted.image.filename')
  f1=$(q "$run/vm.qmp" query-block | jq -r '.[] | select(.device == "drive1") | .inserted.image.filename')
  case "$f0$f1" in *"$dir/"*"$dir/"*) ;; *) die "(a) destination disks outside $dir: $f0 $f1" ;; esac
  q "$run/vm.qmp" quit >/dev/null 2>&1
  [ -n "$dpid" ] && stop_pid "$dpid"
  [ "$r" = 1 ] && compare_to_a "(a, $mode)" "$f0" "$f1"
  rm -rf "$dir" "$run" "$T/s1-$r" "$T/s2-$r"
}

# --- rounds ----------------------------------------------------------------------
median () { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
all_t=() all_ts=() all_a=() all_r1=() all_r2=() all_pa=() all_psm=() all_plv=() all_rss=()
for r in $(seq 1 "$ROUNDS"); do
  measure_convert "$r"; all_r1+=("$t_conv")
  measure_libvirt "$r"; all_r2+=("$t_lv"); all_plv+=("$pause_lv")
  line="(r1) $(secs "$t_conv") s  (r2) $(secs "$t_lv") s, pause $pause_lv ms"
  if [ $have_migrate = 1 ]; then
    measure_snapmig "$r"
    all_a+=("$t_mig"); all_pa+=("$pause_a"); all_psm+=("$pause_sm"); all_rss+=("${rss:-0}")
    line="(a) $(secs "$t_mig") s [phases from its start: $phases], pause $pause_a ms  $line"
    measure_snapmig "$r" relay
    all_t+=("$t_mig"); all_rss+=("${rss:-0}")
    line="$line  (t) relay $(secs "$t_mig") s [$phases], pause $pause_a ms"
    if [ $have_ssh = 1 ]; then
      measure_snapmig "$r" ssh
      all_ts+=("$t_mig"); all_rss+=("${rss:-0}")
      line="$line, ssh $(secs "$t_mig") s [$phases], pause $pause_a ms"
    fi
  fi
  echo "round $r: $line  load $(cut -d' ' -f1 /proc/loadavg)"
done
t_conv=$(median "${all_r1[@]}")
t_lv=$(median "${all_r2[@]}")
where="namespaces $NS_A -> $NS_B"
[ -n "$NS_A" ] || where="loopback (no network namespaces)"
echo "medians of $ROUNDS rounds, 2 disks x ($BASE_SIZE + $TOP_SIZE) = $(awk -v m="$moved" 'BEGIN { printf "%.2f", m / 1073741824 }') GiB of layer files, $where (load average now: $(cut -d' ' -f1-3 /proc/loadavg)):"
if [ $have_migrate = 1 ]; then
  t_mig=$(median "${all_a[@]}")
  printf "(a) snapmig migrate:                                %6.2f s\n" "$(secs "$t_mig")"
else
  echo "(a) snapmig migrate not available ('snapmig migrate --help' fails): skipped"
fi
printf "(r1) qemu-img convert into qemu-nbd, flushed:        %6.2f s\n" "$(secs "$t_conv")"
printf "(r2) libvirt-style mirror sync=full + migrate:      %6.2f s\n" "$(secs "$t_lv")"
if [ $have_migrate = 1 ]; then
  awk -v a="$t_mig" -v r1="$t_conv" -v r2="$t_lv" 'BEGIN {
    printf "(a)/(r1) = %.2fx  (target <= 1.2x: against the flushed convert of the same chains)\n", a / r1
    printf "(a)/(r2) = %.2fx  (target <= 0.8x: against the libvirt-style flow)\n", a / r2
  }'
  t_tr=$(median "${all_t[@]}")
  printf "(t) snapmig migrate --tunnel, relay (ip netns exec): %6.2f s\n" "$(secs "$t_tr")"
  if [ $have_ssh = 1 ]; then
    t_ts=$(median "${all_ts[@]}")
    printf "(t) snapmig migrate --tunnel, ssh:                 %6.2f s\n" "$(secs "$t_ts")"
  else
    echo "(t) snapmig migrate --tunnel, ssh: left out: $no_ssh"
  fi
  awk -v a="$t_mig" -v t="$t_tr" 'BEGIN {
    printf "(t relay)/(a) = %.2fx  (target <= 1.3x: tunnelled against direct)\n", t / a }'
  [ $have_ssh = 1 ] && awk -v a="$t_mig" -v t="$t_ts" 'BEGIN {
    printf "(t ssh)/(a) = %.2fx  (target <= 1.3x: tunnelled against direct)\n", t / a }'
  echo "guest pause at switchover (a), STOP on A to RESUME on B, per round: ${all_pa[*]} ms (median $(median "${all_pa[@]}") ms); snapmig reported: ${all_psm[*]} ms"
  rss=$(printf '%s\n' "${all_rss[@]}" | sort -n | tail -n 1)
  awk -v k="$rss" 'BEGIN { printf "snapmig peak RSS (both sides, largest of all rounds): %.1f MiB\n", k / 1024 }'
fi
echo "guest pause at switchover (r2), per round: ${all_plv[*]} ms (median $(median "${all_plv[@]}") ms; the bench's QMP round trips included)"
echo "data check: round 1's destination chains equal the source's (qemu-img compare) for every line measured"
