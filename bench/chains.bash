# Sourced by bench/lsm.sh and bench/nbd-migrate.sh (not a bench itself:
# `make bench` runs bench/*.sh).
#
# gen_chains DIR BASE-SIZE TOP-SIZE: two disks' chains in DIR, each
# baseN.qcow2 (virtual size BASE-SIZE, all of it random data) under topN.qcow2
# (TOP-SIZE of random data at its start; relative backing name, format
# stated), N = 0 and 1.  Uses DIR/rand.raw as scratch; prints what failed
# and returns 1 on a failure.
gen_chains () {
  local dir=$1 base=$2 top=$3 d
  for d in 0 1; do
    head -c "$base" /dev/urandom >"$dir/rand.raw" &&
      qemu-img convert -f raw -O qcow2 "$dir/rand.raw" "$dir/base$d.qcow2" ||
      { echo "qemu-img convert (generation) failed"; return 1; }
    head -c "$top" /dev/urandom >"$dir/rand.raw" &&
      qemu-img create -q -f qcow2 -F qcow2 -b "base$d.qcow2" "$dir/top$d.qcow2" ||
      { echo "qemu-img create (generation) failed"; return 1; }
    qemu-io -f qcow2 -c "write -s $dir/rand.raw 0 $top" "$dir/top$d.qcow2" >/dev/null ||
      { echo "qemu-io (generation) failed"; return 1; }
  done
  rm -f "$dir/rand.raw"
}
