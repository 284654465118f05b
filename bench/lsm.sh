#!/usr/bin/env bash
# bench/lsm.sh — live storage migration of a 2-disk VM, against two
# references measured in the same run on the same data:
#
#   (a) snapmig create --mirror --mirror-domain B --wait, then pivot:
#       wall time from the start of create to the end of pivot;
#   (b) qemu-img convert -O qcow2 of each disk's chain into B, both disks in
#       parallel (snapmig copies the disks in parallel too): the cost of
#       copying the same bytes with QEMU's own offline tool;
#   (c) drive-mirror sync=full of both disks at once until both are READY
#       (what `virsh blockcopy` does before its pivot), driven over QMP by
#       bench/mirror-full.
#
# Each disk: 1 GiB of random data in its backing layer, 64 MiB of random
# data in its top (qcow2, relative backing name).  Generating the data is not
# timed; the page cache is warm for all three runs (the files were just
# written), and no run forces an fsync.  Prints seconds, the ratios (a)/(b)
# (target <= 1.2) and (a)/(c) (target well under 1), the guest pause at
# pivot (from `pivot --json`) and snapmig's peak RSS (bench/peak-rss, copy
# worker included).  No pass/fail on time; exit 1 only when something
# breaks or the migrated data differs from the source.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
snapmig=$top/cli/snapmig
smq=$top/tests/tools/smq
mirror_full=$top/bench/mirror-full
peak_rss=$top/bench/peak-rss
BASE_SIZE=1G
TOP_SIZE=64M

for f in "$snapmig" "$smq" "$mirror_full" "$peak_rss"; do
  [ -x "$f" ] || { echo "bench/lsm.sh: $f is not built (make all)"; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null ||
  { echo "bench/lsm.sh: qemu-system-x86_64 missing"; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/snapmig-bench-lsm.XXXXXX")
QEMU_PID=
cleanup () {
  [ -n "$QEMU_PID" ] && kill -9 "$QEMU_PID" 2>/dev/null && wait "$QEMU_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die () { echo "bench/lsm.sh: error: $*"; exit 1; }
now () { date +%s%N; }
secs () { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }

A=$T/A
mkdir -p "$A" "$T/state"
SOCK=$T/vm.qmp

# --- data (not timed) --------------------------------------------------------
echo "generating 2 disks: $BASE_SIZE random in base.qcow2, $TOP_SIZE random in top.qcow2 ..."
for d in 0 1; do
  head -c $BASE_SIZE /dev/urandom >"$T/rand.raw"
  qemu-img convert -f raw -O qcow2 "$T/rand.raw" "$A/base$d.qcow2" ||
    die "qemu-img convert (generation)"
  head -c $TOP_SIZE /dev/urandom >"$T/rand.raw"
  qemu-img create -q -f qcow2 -F qcow2 -b "base$d.qcow2" "$A/top$d.qcow2" ||
    die "qemu-img create"
  qemu-io -f qcow2 -c "write -s $T/rand.raw 0 $TOP_SIZE" "$A/top$d.qcow2" \
    >/dev/null || die "qemu-io (generation)"
done
rm -f "$T/rand.raw"

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
mkdir -p "$T/Bconv"
s=$(now)
qemu-img convert -f qcow2 -O qcow2 "$A/top0.qcow2" "$T/Bconv/top0.qcow2" &
p0=$!
qemu-img convert -f qcow2 -O qcow2 "$A/top1.qcow2" "$T/Bconv/top1.qcow2" &
p1=$!
wait $p0 && wait $p1 || die "qemu-img convert failed"
t_conv=$(( $(now) - s ))
rm -rf "$T/Bconv"
echo "measured (b) qemu-img convert: $(secs $t_conv) s"

# --- (c) drive-mirror sync=full of both disks until READY --------------------
mkdir -p "$T/Bfull"
start_vm
out=$("$mirror_full" "$SOCK" drive0="$T/Bfull/top0.qcow2" \
        drive1="$T/Bfull/top1.qcow2") || die "drive-mirror sync=full failed"
t_full=$(awk -v s="$out" 'BEGIN { printf "%d", s * 1e9 }')
stop_vm
rm -rf "$T/Bfull"
echo "measured (c) drive-mirror sync=full: $(secs $t_full) s"

# --- (a) snapmig create --mirror + pivot --------------------------------------
mkdir -p "$T/B"
start_vm
s=$(now)
"$peak_rss" "$snapmig" create --qmp "$SOCK" --state-dir "$T/state" --mirror \
  --mirror-domain "$T/B" --name bench --wait >"$T/create.out" 2>"$T/create.err" ||
  die "snapmig create failed: $(cat "$T/create.err")"
"$peak_rss" "$snapmig" pivot --qmp "$SOCK" --state-dir "$T/state" --json \
  bench >"$T/pivot.out" 2>"$T/pivot.err" ||
  die "snapmig pivot failed: $(cat "$T/pivot.err")"
t_lsm=$(( $(now) - s ))
echo "measured (a) snapmig create + pivot: $(secs $t_lsm) s"

rss_create=$(sed -n 's/^peak-rss-kib //p' "$T/create.err")
rss_pivot=$(sed -n 's/^peak-rss-kib //p' "$T/pivot.err")
pause=$(grep -o '"pause-ms": *-\{0,1\}[0-9.]*' "$T/pivot.out" | head -n1 |
        sed 's/.*: *//')

# The numbers mean nothing if the data did not arrive: every disk must run
# on B, and B's chains must hold what A's hold.
outside=$("$smq" "$SOCK" query-block | grep -o '"filename": *"[^"]*"' |
          grep -v "\"$T/B/" || true)
[ -z "$outside" ] || die "after pivot, layers outside B: $outside"
stop_vm
for d in 0 1; do
  qemu-img compare -q -f qcow2 -F qcow2 "$A/top$d.qcow2" "$T/B/top$d.bench.qcow2" ||
    die "drive$d: B's chain differs from A's"
done

# --- report --------------------------------------------------------------------
awk -v a="$t_lsm" -v b="$t_conv" -v c="$t_full" -v pause="${pause:-?}" \
    -v rc="${rss_create:-0}" -v rp="${rss_pivot:-0}" 'BEGIN {
  printf "(a) snapmig create --mirror --wait + pivot:          %6.2f s\n", a / 1e9
  printf "(b) qemu-img convert, 2 disks in parallel:           %6.2f s\n", b / 1e9
  printf "(c) drive-mirror sync=full, 2 disks, until READY:    %6.2f s\n", c / 1e9
  printf "(a)/(b) = %.2fx   (target <= 1.2x)\n", a / b
  printf "(a)/(c) = %.2fx   (target well under 1)\n", a / c
  printf "guest pause at pivot: %s ms\n", pause
  printf "snapmig peak RSS: create %.1f MiB (copy worker included), pivot %.1f MiB\n", rc / 1024, rp / 1024
}'
echo "data check: both disks run on B; B's chains equal A's (qemu-img compare)"
