#!/usr/bin/env bash
# bench/validate.sh — `snapmig validate` on a generated domain of 10,000
# small qcow2 images in 2,000 chains of 5 layers, against `qemu-img info
# --backing-chain` on every leaf of the same domain, in the same run.
#
# Prints the warm time (best of 5 runs), the ratio against qemu-img, and
# snapmig's peak RSS.  Generation time is not measured.  qemu-img is timed
# on a sample of leaves (BENCH_QEMU_IMG_SAMPLE, default 200; 0 = all) and
# extrapolated to all of them; the output says so.  Ratios only: no
# pass/fail on time.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
snapmig=$top/cli/snapmig
chains=${BENCH_CHAINS:-2000}
layers=${BENCH_LAYERS:-5}
sample=${BENCH_QEMU_IMG_SAMPLE:-200}

for f in "$snapmig" "$top/bench/gen-domain" "$top/bench/peak-rss"; do
  [ -x "$f" ] || { echo "bench/validate.sh: $f is not built (make all)"; exit 1; }
done
command -v qemu-img >/dev/null || { echo "bench/validate.sh: qemu-img missing"; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/snapmig-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT
dom=$T/dom
"$top/bench/gen-domain" "$dom" "$chains" "$layers"

now () { date +%s%N; }

# Warm the page cache and check that the generated domain is clean.
summary=$("$snapmig" validate "$dom" | tail -n 1)
echo "domain: $summary"

best=
for _ in 1 2 3 4 5; do
  s=$(now)
  "$snapmig" validate "$dom" >/dev/null
  e=$(now)
  d=$((e - s))
  if [ -z "$best" ] || [ "$d" -lt "$best" ]; then best=$d; fi
done

leaves=()
for ((c = 0; c < chains; c++)); do
  leaves+=("$(printf '%s/images/c%05d/l%d.qcow2' "$dom" "$c" $((layers - 1)))")
done
n=${#leaves[@]}
if [ "$sample" -le 0 ] || [ "$sample" -ge "$n" ]; then
  sample=$n
fi
step=$((n / sample))
qemu-img info --backing-chain "${leaves[0]}" >/dev/null   # warm qemu-img
s=$(now)
for ((i = 0; i < sample; i++)); do
  qemu-img info --backing-chain "${leaves[$((i * step))]}" >/dev/null
done
e=$(now)
q_sample=$((e - s))
q_all=$((q_sample * n / sample))

rss=$("$top/bench/peak-rss" "$snapmig" validate "$dom" 2>&1 >/dev/null \
      | sed -n 's/^peak-rss-kib //p')

awk -v best="$best" -v qs="$q_sample" -v qa="$q_all" -v n="$n" \
    -v sample="$sample" -v rss="$rss" -v images=$((chains * layers)) \
    -v chains="$chains" 'BEGIN {
  printf "snapmig validate: %d images in %d chains: %.3f s (best of 5 warm runs)\n", images, chains, best / 1e9
  if (sample < n)
    printf "qemu-img info --backing-chain: %d of %d leaves in %.2f s, extrapolated to %.1f s for all %d (sampled, not run on every leaf)\n", sample, n, qs / 1e9, qa / 1e9, n
  else
    printf "qemu-img info --backing-chain: all %d leaves in %.2f s\n", n, qa / 1e9
  printf "ratio: snapmig validate is %.0fx faster than qemu-img info on every leaf\n", qa / best
  printf "snapmig validate peak RSS: %d KiB\n", rss
}'
