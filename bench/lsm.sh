#!/usr/bin/env bash
# bench/lsm.sh — live storage migration of a 2-disk VM, against three
# references and the disk's floor, measured in the same run on the same data:
#
#   (a) snapmig create --mirror --mirror-domain B --wait, then pivot:
#       wall time from the start of create to the end of pivot;
#   (b) qemu-img convert -O qcow2 of each disk's chain into B, both disks in
#       parallel (snapmig copies the disks in parallel too): the cost of
#       copying the same bytes with QEMU's own offline tool.  Measured twice:
#       with qemu-img's default cache mode for convert, which is `unsafe`
#       (strace shows no fdatasync of the data: it may still be in the page
#       cache when qemu-img exits), and as (b2) with `-t writeback`, which
#       flushes at the end like snapmig's copies and QEMU's mirror do.  (b2)
#       is the like-for-like reference; both ratios are printed;
#   (c) drive-mirror sync=full of both disks at once until both are READY
#       (what `virsh blockcopy` does before its pivot), driven over QMP by
#       bench/mirror-full;
#   (d) the floor: the same layer files snapmig copies (both disks' base and
#       top, 2 x (1 GiB + 64 MiB)) made durable by bench/stream-copy, the
#       streaming method and nothing else (no QEMU, no image format, no
#       status): 2 threads, buffered writes in 16 MiB windows, each window's
#       writeback started at once (sync_file_range), the one behind waited
#       for and dropped, fdatasync of each file and fsync of its directory.
#       (d2) is `dd oflag=direct conv=fsync` of the same files, one stream
#       per disk: the bench's floor before issue 10, shown for comparison;
#   (e) `virsh blockcopy --pivot` of the same disks, both in parallel, in a
#       libvirt domain (machine pc, TCG, no guest OS) running on the same
#       chains: the whole chain of each disk into one new qcow2 in B, until
#       libvirt has pivoted.  Run as root, the bench installs
#       libvirt-daemon-system and libvirt-clients when virsh is missing and
#       starts libvirtd (and virtlogd) when none runs, stopping the daemons
#       it started at its end; otherwise, or with BENCH_VIRSH=0, the line is
#       skipped with a note saying why.
#
# Each disk: 1 GiB of random data in its backing layer, 64 MiB of random
# data in its top (qcow2, relative backing name).  Generating the data is not
# timed; the page cache is warm for every run (the files were just written
# and synced), and every run but (b) ends with its data flushed (snapmig's
# fsync, drive-mirror's flush before READY, (b2)'s -t writeback).
# Interleaved rounds, medians reported.  Prints seconds, the ratios against
# each reference (issue 10's targets: (a)/(d) <= 1.15, (a)/(b2) <= 0.8,
# (a)/(e) <= 0.7), the guest pause at pivot (from `pivot --json`),
# snapmig's peak RSS and CPU time per GiB moved (bench/peak-rss, copy
# worker included), and the largest Dirty + Writeback of /proc/meminfo
# seen during one more (untimed) create (bench/meminfo-peak; system-wide).
# No pass/fail on time; exit 1 only when something breaks or the migrated
# data differs from the source.
#
# BENCH_ROUNDS=N changes the number of rounds (default 5);
# BENCH_CREATE_JSON=1 also prints create's JSON events (per-layer copy time);
# BENCH_SNAPMIG=PATH measures another snapmig build instead;
# BENCH_BEFORE=PATH also measures that build (e.g. main before a change) in
# every round, interleaved, as (a0): before/after in the same run.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
snapmig=${BENCH_SNAPMIG:-$top/cli/snapmig}
smq=$top/tests/tools/smq
mirror_full=$top/bench/mirror-full
peak_rss=$top/bench/peak-rss
stream_copy=$top/bench/stream-copy
meminfo_peak=$top/bench/meminfo-peak
BASE_SIZE=1G
TOP_SIZE=64M

for f in "$snapmig" "$smq" "$mirror_full" "$peak_rss" "$stream_copy" \
         "$meminfo_peak"; do
  [ -x "$f" ] || { echo "bench/lsm.sh: $f is not built (make all)"; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null ||
  { echo "bench/lsm.sh: qemu-system-x86_64 missing"; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/snapmig-bench-lsm.XXXXXX")
# libvirt's QEMU runs as its own user: it must reach the chains in $T/A.
chmod 755 "$T"
QEMU_PID=
VIRSH_DOM=
VIRT_PIDS=()
cleanup () {
  [ -n "$QEMU_PID" ] && kill -9 "$QEMU_PID" 2>/dev/null && wait "$QEMU_PID" 2>/dev/null
  [ -n "$VIRSH_DOM" ] && virsh -q -c qemu:///system destroy "$VIRSH_DOM" >/dev/null 2>&1
  local p
  for p in "${VIRT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die () { echo "bench/lsm.sh: error: $*"; exit 1; }
. "$top/bench/chains.bash"
now () { date +%s%N; }
secs () { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }

A=$T/A
mkdir -p "$A" "$T/state"
chmod 755 "$A"
SOCK=$T/vm.qmp

# --- data (not timed) --------------------------------------------------------
echo "generating 2 disks: $BASE_SIZE random in base.qcow2, $TOP_SIZE random in top.qcow2 ..."
gen_chains "$A" "$BASE_SIZE" "$TOP_SIZE" >"$T/gen.out" || die "$(cat "$T/gen.out")"
# Write the generated data out now, so that no run pays for its writeback.
sync

start_vm () {
  qemu-system-x86_64 -M none -nodefaults -display none \
    -qmp "unix:$SOCK,server=on,wait=off" \
    -drive "file=$A/top0.qcow2,if=none,id=drive0,format=qcow2" \
    -drive "file=$A/top1.qcow2,if=none,id=drive1,format=qcow2" \
    >"$T/vm.log" 2>&1 &
  QEMU_PID=$!
  local deadline=$(( $(date +%s) + 20 ))
  while [ ! -S "$SOCK" ]; do
    kill -0 "$QEMU_PID" 2>/dev/null && [ "$(date +%s)" -le $deadline ] ||
      die "QEMU did not start: $(cat "$T/vm.log")"
    sleep 0.02
  done
}
stop_vm () {
  "$smq" "$SOCK" quit >/dev/null 2>&1
  wait "$QEMU_PID" 2>/dev/null
  QEMU_PID=
  rm -f "$SOCK"
}

# --- (b) qemu-img convert, both disks in parallel ----------------------------
# measure_convert [CACHE-MODE]: sets t_conv.  Without a mode qemu-img uses
# its convert default (`unsafe`: no flush); `writeback` flushes at the end.
measure_convert () {
  local dir=$T/Bconv s p0 p1 cache=()
  [ -n "${1:-}" ] && cache=(-t "$1")
  mkdir -p "$dir"
  # Start from a clean page cache state for the destination: the previous
  # round's dirty pages must not be flushed on this run's time.
  sync
  s=$(now)
  qemu-img convert "${cache[@]}" -f qcow2 -O qcow2 "$A/top0.qcow2" "$dir/top0.qcow2" &
  p0=$!
  qemu-img convert "${cache[@]}" -f qcow2 -O qcow2 "$A/top1.qcow2" "$dir/top1.qcow2" &
  p1=$!
  wait $p0 && wait $p1 || die "qemu-img convert failed"
  t_conv=$(( $(now) - s ))
  rm -rf "$dir"
}

# --- (c) drive-mirror sync=full of both disks until READY --------------------
measure_mirror_full () {
  local dir=$T/Bfull out
  mkdir -p "$dir"
  start_vm
  sync
  out=$("$mirror_full" "$SOCK" drive0="$dir/top0.qcow2" \
          drive1="$dir/top1.qcow2") || die "drive-mirror sync=full failed"
  t_full=$(awk -v s="$(sed -n 1p <<<"$out")" 'BEGIN { printf "%d", s * 1e9 }')
  t_fullsync=$(awk -v s="$(sed -n 2p <<<"$out")" 'BEGIN { printf "%d", s * 1e9 }')
  stop_vm
  rm -rf "$dir"
}

# --- (d) the floor: the streaming method on the same layer files -----------
measure_floor () {
  local dir=$T/Bfloor out
  mkdir -p "$dir"
  sync
  out=$("$stream_copy" "$A/top0.qcow2" "$dir/top0.qcow2" \
          "$A/base0.qcow2" "$dir/base0.qcow2" \
          "$A/top1.qcow2" "$dir/top1.qcow2" \
          "$A/base1.qcow2" "$dir/base1.qcow2") || die "stream-copy failed"
  t_floor=$(awk -v s="$out" 'BEGIN { printf "%d", s * 1e9 }')
  rm -rf "$dir"
}

# --- (d2) dd with direct writes and a final fsync (the old "floor") ---------
measure_dd () {
  local dir=$T/Bdd s d pids=()
  mkdir -p "$dir"
  sync
  s=$(now)
  for d in 0 1; do
    ( dd if="$A/top$d.qcow2" of="$dir/top$d.qcow2" bs=2M oflag=direct \
         conv=fsync status=none &&
      dd if="$A/base$d.qcow2" of="$dir/base$d.qcow2" bs=2M oflag=direct \
         conv=fsync status=none ) &
    pids+=($!)
  done
  for d in "${pids[@]}"; do wait "$d" || die "dd failed"; done
  t_dd=$(( $(now) - s ))
  rm -rf "$dir"
}

# --- (a) snapmig create --mirror + pivot --------------------------------------
# Round R migrates A's chains into B$R with its own state dir; A itself is
# left as it was (its old tops become read-only backing files of the new
# source tops A/topN.benchR.qcow2, which the next round's VM does not use).
measure_snapmig () {
  local r=$1 dir=$T/B$1 st=$T/state$1 s outside d snapmig=${2:-$snapmig}
  mkdir -p "$dir"
  start_vm
  sync
  s=$(now)
  "$peak_rss" "$snapmig" create --qmp "$SOCK" --state-dir "$st" --mirror \
    --mirror-domain "$dir" --name "bench$r" --wait ${BENCH_CREATE_JSON:+--json} \
    >"$T/create.out" 2>"$T/create.err" ||
    die "snapmig create failed: $(cat "$T/create.err")"
  t_create=$(( $(now) - s ))
  "$peak_rss" "$snapmig" pivot --qmp "$SOCK" --state-dir "$st" --json \
    "bench$r" >"$T/pivot.out" 2>"$T/pivot.err" ||
    die "snapmig pivot failed: $(cat "$T/pivot.err")"
  t_lsm=$(( $(now) - s ))

  rss=$(cat "$T/create.err" "$T/pivot.err" | sed -n 's/^peak-rss-kib //p' |
        sort -n | tail -n 1)
  cpu=$(cat "$T/create.err" "$T/pivot.err" | sed -n 's/^cpu-ms //p' |
        awk '{ s += $1 } END { print s + 0 }')
  # pivot --json's result reports {"event":"result",...,"pause-ms":N} (null
  # when the guest was not paused; a string before snapmig-json(7)).
  pause=$(grep -o '"pause-ms": *"\{0,1\}[0-9.]*' "$T/pivot.out" | head -n1 |
          sed 's/.*: *"\{0,1\}//')

  # The numbers mean nothing if the data did not arrive: every disk must
  # run on B$r, and (first round) B$r's chains must hold what A's hold.
  outside=$("$smq" "$SOCK" query-block | grep -o '"filename": *"[^"]*"' |
            grep -v "\"$dir/" || true)
  [ -z "$outside" ] || die "after pivot, layers outside $dir: $outside"
  stop_vm
  if [ "$r" = 1 ]; then
    for d in 0 1; do
      qemu-img compare -q -f qcow2 -F qcow2 "$A/top$d.qcow2" \
        "$dir/top$d.bench$r.qcow2" || die "drive$d: B's chain differs from A's"
    done
  fi
  # BENCH_CREATE_JSON=1: show create's events (per-layer copy seconds).
  [ -n "${BENCH_CREATE_JSON:-}" ] && grep -v '"event":"progress"' "$T/create.out"
  rm -rf "$dir" "$st" "$A"/top*.bench"$r".qcow2
}

# --- (e) virsh blockcopy --pivot --------------------------------------------
# virsh_setup: sets virsh_ok=1, or virsh_note to why (e) is skipped.
virsh_ok=0 virsh_note=
virsh_setup () {
  local p
  if [ "${BENCH_VIRSH:-1}" = 0 ]; then
    virsh_note="BENCH_VIRSH=0"; return
  fi
  if ! command -v virsh >/dev/null || ! command -v libvirtd >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      virsh_note="libvirt is not installed and the bench is not root to install it"; return
    fi
    echo "installing libvirt-daemon-system and libvirt-clients for (e) ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libvirt-daemon-system libvirt-clients >"$T/apt.log" 2>&1 ||
      { virsh_note="apt-get install libvirt-daemon-system libvirt-clients failed: $(tail -n 1 "$T/apt.log")"; return; }
  fi
  if ! virsh -q -c qemu:///system version >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      virsh_note="no libvirtd runs and the bench is not root to start one"; return
    fi
    for p in virtlogd libvirtd; do
      "$p" -d -p "$T/$p.pid" >"$T/$p.log" 2>&1 ||
        { virsh_note="$p did not start: $(cat "$T/$p.log")"; return; }
      VIRT_PIDS+=("$(cat "$T/$p.pid")")
    done
    local deadline=$(( $(date +%s) + 20 ))
    until virsh -q -c qemu:///system version >/dev/null 2>&1; do
      [ "$(date +%s)" -le $deadline ] || { virsh_note="libvirtd does not answer"; return; }
      sleep 0.1
    done
  fi
  virsh_ok=1
}

measure_virsh () {
  local dir=$T/Bvirsh s d pids=() dev=(vda vdb)
  mkdir -p "$dir"
  chmod 755 "$dir"
  VIRSH_DOM=snapmig-bench-$$
  cat >"$T/dom.xml" <<EOF_DOM
<domain type='qemu'>
  <name>$VIRSH_DOM</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$A/top0.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$A/top1.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>
EOF_DOM
  virsh -q -c qemu:///system create "$T/dom.xml" >"$T/virsh.out" 2>&1 ||
    die "virsh create failed: $(cat "$T/virsh.out")"
  sync
  s=$(now)
  for d in 0 1; do
    virsh -q -c qemu:///system blockcopy "$VIRSH_DOM" "${dev[$d]}" \
      --dest "$dir/top$d.qcow2" --format qcow2 --wait --pivot \
      >"$T/virsh$d.out" 2>&1 &
    pids+=($!)
  done
  for d in 0 1; do
    wait "${pids[$d]}" || die "virsh blockcopy failed: $(cat "$T/virsh$d.out")"
  done
  t_virsh=$(( $(now) - s ))
  for d in 0 1; do
    [ "$(virsh -q -c qemu:///system domblklist "$VIRSH_DOM" |
         awk -v t="${dev[$d]}" '$1 == t { print $2 }')" = "$dir/top$d.qcow2" ] ||
      die "after virsh blockcopy --pivot, ${dev[$d]} does not run on $dir/top$d.qcow2"
  done
  virsh -q -c qemu:///system destroy "$VIRSH_DOM" >/dev/null 2>&1
  VIRSH_DOM=
  rm -rf "$dir"
}

# --- rounds ----------------------------------------------------------------------
# Interleaved rounds (BENCH_ROUNDS, default 5), the median of each kind
# reported: one disk writeback hiccup must not decide a ratio.
ROUNDS=${BENCH_ROUNDS:-5}
virsh_setup
moved=0
for f in "$A"/base?.qcow2 "$A"/top?.qcow2; do
  moved=$(( moved + $(stat -c %s "$f") ))
done
all_a=() all_create=() all_b=() all_bw=() all_c=() all_cs=() all_d=() all_dd=()
all_pause=() all_rss=() all_cpu=() all_a0=() all_cpu0=() all_e=()
for r in $(seq 1 $ROUNDS); do
  measure_convert writeback
  all_bw+=("$t_conv")
  measure_convert
  measure_mirror_full
  measure_floor
  measure_dd
  t_virsh=0
  [ $virsh_ok = 1 ] && measure_virsh
  all_e+=("$t_virsh")
  if [ -n "${BENCH_BEFORE:-}" ]; then
    measure_snapmig "$r" "$BENCH_BEFORE"
    all_a0+=("$t_lsm"); all_cpu0+=("${cpu:-0}")
  fi
  measure_snapmig "$r"
  all_a+=("$t_lsm"); all_create+=("$t_create"); all_b+=("$t_conv")
  all_c+=("$t_full"); all_cs+=("$t_fullsync"); all_d+=("$t_floor")
  all_dd+=("$t_dd")
  all_pause+=("${pause:-}")
  all_rss+=("${rss:-0}")
  all_cpu+=("${cpu:-0}")
  echo "round $r: ${BENCH_BEFORE:+(a0) $(secs "${all_a0[-1]}") s cpu ${all_cpu0[-1]} ms  }(a) $(secs $t_lsm) s  (b) $(secs $t_conv) s  (b2) $(secs "${all_bw[-1]}") s  (c) $(secs $t_full) s  (d) $(secs $t_floor) s  (d2) $(secs $t_dd) s  (e) $(secs $t_virsh) s  cpu $cpu ms  load $(cut -d' ' -f1 /proc/loadavg)"
done
median () { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
t_lsm=$(median "${all_a[@]}")
t_create=$(median "${all_create[@]}")
t_conv=$(median "${all_b[@]}")
t_convwb=$(median "${all_bw[@]}")
t_full=$(median "${all_c[@]}")
t_fullsync=$(median "${all_cs[@]}")
t_floor=$(median "${all_d[@]}")
t_dd=$(median "${all_dd[@]}")
t_virsh=$(median "${all_e[@]}")
cpu=$(median "${all_cpu[@]}")
if [ -n "${BENCH_BEFORE:-}" ]; then
  t_a0=$(median "${all_a0[@]}"); cpu0=$(median "${all_cpu0[@]}")
  awk -v a0="$t_a0" -v a="$t_lsm" -v c0="$cpu0" -v c="$cpu" -v d="$t_floor" \
      -v bw="$t_convwb" -v b="$BENCH_BEFORE" 'BEGIN {
    printf "(a0) %s, same rounds: %.2f s, CPU %.3f s; (a0)/(d) = %.2fx, (a0)/(b2) = %.2fx; (a)/(a0) = %.2fx\n", b, a0 / 1e9, c0 / 1000, a0 / d, a0 / bw, a / a0
  }' >"$T/before.txt"
fi
rss=$(printf '%s\n' "${all_rss[@]}" | sort -n | tail -n 1)
pause=$(printf '%s ' "${all_pause[@]}")
[ -n "${pause// /}" ] || pause="? (pivot --json gave no pause-ms)"

# --- dirty page cache during one more create (untimed) -----------------------
start_vm
mkdir -p "$T/Bdirty"
"$meminfo_peak" "$snapmig" create --qmp "$SOCK" --state-dir "$T/statedirty" \
  --mirror --mirror-domain "$T/Bdirty" --name benchdirty --wait \
  >/dev/null 2>"$T/dirty.err" || die "snapmig create failed: $(cat "$T/dirty.err")"
dirty=$(sed -n 's/^dirty-peak-kib \([0-9]*\) before-kib \([0-9]*\)/\1 \2/p' "$T/dirty.err")
stop_vm
rm -rf "$T/Bdirty" "$T/statedirty"

# --- report --------------------------------------------------------------------
echo "medians of $ROUNDS rounds (load average now: $(cut -d' ' -f1-3 /proc/loadavg)):"
awk -v a="$t_lsm" -v ac="$t_create" -v b="$t_conv" -v bw="$t_convwb" -v c="$t_full" \
    -v cs="$t_fullsync" -v d="$t_floor" -v dd="$t_dd" -v pause="$pause" -v rss="$rss" \
    -v cpu="$cpu" -v moved="$moved" -v dirty="$dirty" -v vnote="$virsh_note" \
    -v e="$t_virsh" 'BEGIN {
  gib = moved / 1073741824
  split(dirty, dv, " ")
  printf "(a) snapmig create --mirror --wait + pivot:        %6.2f s  (create %.2f s, pivot %.2f s)\n", a / 1e9, ac / 1e9, (a - ac) / 1e9
  printf "(b) qemu-img convert, 2 disks in parallel:         %6.2f s  (default cache=unsafe: not flushed)\n", b / 1e9
  printf "(b2) the same with -t writeback (flushed):          %6.2f s\n", bw / 1e9
  printf "(c) drive-mirror sync=full, 2 disks, until READY:  %6.2f s  (%.2f s with an fsync of the targets after READY)\n", c / 1e9, cs / 1e9
  printf "(d) floor: bench/stream-copy of the same layers:   %6.2f s  (%.2f GiB)\n", d / 1e9, gib
  printf "(d2) dd oflag=direct conv=fsync of the layers:      %6.2f s  (the old floor)\n", dd / 1e9
  if (e > 0)
    printf "(e) virsh blockcopy --pivot, 2 disks in parallel:  %6.2f s\n", e / 1e9
  else
    printf "(e) virsh blockcopy --pivot: skipped: %s\n", vnote
  printf "(a)/(d) = %.2fx   (target <= 1.15x: snapmig against the durable floor, same bytes)\n", a / d
  printf "(a)/(b2) = %.2fx  (target <= 0.8x: like for like, both flush)\n", a / bw
  printf "(a)/(b) = %.2fx   ((b) leaves its data unflushed)\n", a / b
  if (e > 0)
    printf "(a)/(e) = %.2fx   (target <= 0.7x: against virsh blockcopy --pivot of the same disks)\n", a / e
  printf "(a)/(c) = %.2fx   (against drive-mirror sync=full until READY, what (e) does before its pivot)\n", a / c
  printf "(d2)/(d) = %.2fx  (O_DIRECT one request at a time against the streaming floor)\n", dd / d
  printf "guest pause at pivot, per round: %sms\n", pause
  printf "snapmig peak RSS (create, its copy worker, pivot; largest of all rounds): %.1f MiB  (target <= 16 MiB)\n", rss / 1024
  printf "snapmig CPU time (create, its copy worker, pivot; median): %.3f s = %.3f s per GiB moved  (target <= 0.3 s/GiB)\n", cpu / 1000, cpu / 1000 / gib
  printf "dirty page cache (Dirty + Writeback, system-wide) during one more create: peak %.1f MiB (%.1f MiB before it)\n", dv[1] / 1024, dv[2] / 1024
}'
[ -n "${BENCH_BEFORE:-}" ] && cat "$T/before.txt"
echo "data check: after each pivot every disk ran on B; round 1's B chains equal A's (qemu-img compare)"
