# Helpers of the cross-host migration tests (test-migrate*.sh).  Sourced
# after lib.sh and netns.sh.  The source VM "vm" runs in namespace A; the
# destination snapmig runs in B through --dest-cmd, and starts the
# destination QEMU there from the source's command line, with the VM's
# sockets and pidfile remapped into $RUN (so its QMP is $RUN/vm.qmp, its
# second monitor $RUN/mon.qmp and its pidfile $RUN/vm.pid).
#
# QEMU serves one client per monitor and snapmig holds the VM's $T/vm.qmp
# while it migrates: writes during the migration go through the second
# monitor $T/mon.qmp (src_write).  HMP qemu-io prints on QEMU's stdout: the
# source's is $T/vm.log; the destination's is the one log in $RUN
# (dest_log), which smq --hmp --log reads, so that reads are checked.

# mig_setup: skips the test without its tools or without `snapmig migrate`
# (until it exists); makes the namespaces; sets PORT_LO/PORT_HI (a per-run
# --port-range) and MIG_BW (--bandwidth that makes copies last seconds).
mig_setup () {
  local c
  for c in qemu-system-x86_64 qemu-img qemu-io jq ss; do
    command -v $c >/dev/null || skip_all "$c missing"
  done
  "$SNAPMIG" migrate --help >/dev/null 2>&1 ||
    skip_all "snapmig migrate not available ('snapmig migrate --help' fails)"
  netns_setup
  PORT_LO=$(( 30000 + ($$ % 1400) * 20 )) PORT_HI=$(( 30000 + ($$ % 1400) * 20 + 19 ))
  MIG_BW=${MIG_BW:-4M}
  A=$T/A D=$T/D RUN=$T/run
}

# mig_kill_all: the previous case's destination QEMU, source VM and migrate
# killed by PID (DEST_PID, VM_PID, MIG_PID emptied), and what a failed case
# left on the destination (its checks said so; dest_procs), so that it does
# not disturb the next one.
mig_kill_all () {
  local p
  for p in "${DEST_PID:-}" "${VM_PID:-}" "${MIG_PID:-}"; do
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  for p in $(dest_procs | sort -u); do
    echo "# killing destination process $p, left over"
    kill -9 "$p" 2>/dev/null
  done
  dest_gone 10 >/dev/null
  DEST_PID= VM_PID= MIG_PID=
}

# mig_fresh [KIND]: a new source VM "vm" in namespace A on an emptied $A,
# with an emptied destination domain $D, run dir $RUN, state dirs and
# $T/shared ("storage both hosts see": same path on both); the previous
# VMs (source and destination) killed.  KIND 3disk (default):
#   drive0  $A/top.qcow2 over $A/base.qcow2 (40M; 0x11 in base's first 8M)
#   drive1  $A/d1.raw (24M)
#   drive2  $A/d2.qcow2 (16M)
# KIND inc: drive0's base.qcow2 (0x11 in its first 24M, named absolutely
# by top.qcow2), d1.raw and d2.qcow2 in $T/shared; KIND mdisks: d1.raw in
# $T/shared.  KIND big: one disk drive0, $A/d0.qcow2 of 40M, 40M of 0x5c.
# The VM has a second monitor ($T/mon.qmp) and -pidfile $T/vm.pid.  Then
# guest writes (EXPECT, lib.sh's gw): drive0 0x22 8M 8M, drive1 0x33 0 8M,
# drive2 0x44 0 4M (big: none).  Sets SRC_FILE[i]/SRC_FMT[i] (drive i's
# active layer and format), SRC_CHAIN0..2 (the chains' files) and A_FILES.
# Destination processes a failed case left (dest_procs) are killed first.
mig_fresh () {
  local kind=${1:-3disk} p drives=() d1dir=$A d2dir=$A
  mig_kill_all
  rm -rf "$A" "$D" "$RUN" "$T/shared" "$T/s1" "$T/s2" "$T"/vm.* "$T"/mon.* "$T/mig.out" "$T/mig.err"
  mkdir -p "$A" "$D" "$RUN" "$T/s1" "$T/s2" "$T/shared"
  EXPECT=() SRC_FILE=() SRC_FMT=()
  case $kind in
    big)
      qemu-img create -q -f qcow2 "$A/d0.qcow2" 40M
      qemu-io -f qcow2 -c "write -P 0x5c 0 40M" "$A/d0.qcow2" >/dev/null
      SRC_FILE=("$A/d0.qcow2") SRC_FMT=(qcow2)
      EXPECT+=("drive0 0x5c 0 40M") ;;
    *)
      if [ "$kind" = inc ]; then
        qemu-img create -q -f qcow2 "$T/shared/base.qcow2" 40M
        qemu-io -f qcow2 -c "write -P 0x11 0 24M" "$T/shared/base.qcow2" >/dev/null
        qemu-img create -q -f qcow2 -F qcow2 -b "$T/shared/base.qcow2" "$A/top.qcow2"
        EXPECT+=("drive0 0x11 0 8M" "drive0 0x11 16M 4M" "drive0 0x11 21M 3M")
        d1dir=$T/shared d2dir=$T/shared
      else
        make_chain "$A" 40M 8M
        EXPECT+=("drive0 0x11 0 8M")
        [ "$kind" = mdisks ] && d1dir=$T/shared
      fi
      qemu-img create -q -f raw "$d1dir/d1.raw" 24M
      qemu-img create -q -f qcow2 "$d2dir/d2.qcow2" 16M
      SRC_FILE=("$A/top.qcow2" "$d1dir/d1.raw" "$d2dir/d2.qcow2") SRC_FMT=(qcow2 raw qcow2) ;;
  esac
  for p in "${!SRC_FILE[@]}"; do
    drives+=(-drive "$(drive_opt "drive$p" "${SRC_FILE[$p]}" "${SRC_FMT[$p]}")")
  done
  start_vm_a vm "${drives[@]}" -qmp "unix:$T/mon.qmp,server=on,wait=off" \
    -pidfile "$T/vm.pid" || exit 1
  if [ "$kind" != big ]; then
    gw drive0 0x22 8M 8M || { echo "# guest write failed"; exit 1; }
    gw drive1 0x33 0 8M || { echo "# guest write failed"; exit 1; }
    gw drive2 0x44 0 4M || { echo "# guest write failed"; exit 1; }
  fi
  SRC_CHAIN0=$(chain_files drive0) SRC_CHAIN1=$(chain_files drive1)
  SRC_CHAIN2=$(chain_files drive2)
  A_FILES=$(ls -A "$A" | sort)
  MIG=("$SNAPMIG" migrate --qmp "$T/vm.qmp" --dest-domain "$D" --dest-run-dir "$RUN"
       --state-dir "$T/s1" --dest-state-dir "$T/s2"
       --dest-cmd "${IN_B:+$IN_B }$SNAPMIG" --dest-host "$IP_B"
       --port-range "$PORT_LO-$PORT_HI")
}

# mig_opt OPTION VALUE: VALUE instead of OPTION's value in MIG.
mig_opt () {
  local i
  for ((i = 0; i < ${#MIG[@]} - 1; i++)); do
    [ "${MIG[$i]}" = "$1" ] && MIG[$((i + 1))]=$2
  done
}

# mig_start ARGS...: `snapmig migrate` (the options of mig_fresh's MIG,
# then ARGS: --json for JSON lines) in namespace A, in the background;
# MIG_PID, output in $T/mig.out and $T/mig.err.
mig_start () {
  $IN_A "${MIG[@]}" "$@" >"$T/mig.out" 2>"$T/mig.err" &
  MIG_PID=$!
  _sm_pids+=("$MIG_PID")
}
# mig_wait_line REGEX [SECONDS]: waits (default 120 s) until a line of
# $T/mig.out matches REGEX (grep -E); 1 when migrate exited or time ran out
# first.
mig_wait_line () {
  local deadline=$(( $(date +%s) + ${2:-120} ))
  until grep -qE "$1" "$T/mig.out" 2>/dev/null; do
    if ! kill -0 "$MIG_PID" 2>/dev/null; then
      grep -qE "$1" "$T/mig.out" 2>/dev/null; return
    fi
    [ "$(date +%s)" -le $deadline ] || return 1
    sleep 0.02
  done
}
DISK_PROGRESS='"event": *"progress".*"what": *"disk"'
# phase_re NAME: a phase line of migrate's output, JSON or text.
# (every event has its "time" after "event": snapmig-json(7))
phase_re () { echo "\"event\": *\"phase\", *(\"time\": *\"[^\"]*\", *)?\"phase\": *\"$1\"|^phase: $1\$"; }
# mig_end [SECONDS]: waits (default 300 s) for migrate to exit, kills it
# when it does not; sets MIG_RC (124 for a kill), prints its output as TAP
# comments and sets RESULT (the JSON result line) and DEST_PID (from it,
# or from the text output's "..., pid N").
mig_end () {
  local deadline=$(( $(date +%s) + ${1:-300} ))
  MIG_RC=
  while kill -0 "$MIG_PID" 2>/dev/null; do
    if [ "$(date +%s)" -gt $deadline ]; then
      echo "# snapmig migrate still runs after ${1:-300} s: killed"
      kill -9 "$MIG_PID"; wait "$MIG_PID" 2>/dev/null; MIG_RC=124
      break
    fi
    sleep 0.05
  done
  if [ -z "$MIG_RC" ]; then wait "$MIG_PID"; MIG_RC=$?; fi
  grep -v "$DISK_PROGRESS" "$T/mig.out" | sed 's/^/# /'
  sed 's/^/# stderr: /' "$T/mig.err"
  RESULT=$(grep '"event": *"result"' "$T/mig.out" | tail -n 1)
  if [ -n "$RESULT" ]; then
    DEST_PID=$(jq -r '."dest-pid" // empty' <<<"$RESULT" 2>/dev/null)
  else
    DEST_PID=$(sed -n 's/^migrated .* to .*, pid \([0-9][0-9]*\)$/\1/p' "$T/mig.out" | tail -n 1)
  fi
  [ -n "$DEST_PID" ] && _sm_pids+=("$DEST_PID")
  return 0
}
# res FIELD: FIELD of the result line (jq path, e.g. .ok, ."disk-bytes").
res () { jq -r "$1" <<<"$RESULT" 2>/dev/null; }

# src_write DRIVE PATTERN OFFSET LENGTH: a guest write through the source's
# second monitor (snapmig holds the first), remembered in EXPECT.
src_write () {
  "$SMQ" --hmp --log "$T/vm.log" "$T/mon.qmp" "qemu-io $1 \"write -P $2 $3 $4\"" \
    >/dev/null && EXPECT+=("$1 $2 $3 $4")
}

# ---- the destination ------------------------------------------------------
dqmp () { "$SMQ" "$RUN/vm.qmp" "$@"; }
# dest_log: the destination QEMU's stdout log (the one *.log in $RUN).
dest_log () { ls "$RUN"/*.log 2>/dev/null | head -n 1; }
# dest_read DRIVE PATTERN OFFSET LENGTH: reads the pattern in the
# destination VM (checked in its log; no log, no read).
dest_read () {
  local log; log=$(dest_log)
  [ -n "$log" ] || { echo "# no destination log in $RUN"; return 1; }
  "$SMQ" --hmp --log "$log" "$RUN/vm.qmp" "qemu-io $1 \"read -P $2 $3 $4\"" >/dev/null
}
# during_writes: guest writes while the disk copy runs (the 3-disk VM of
# mig_fresh), one per disk, and one over base data of drive0 (EXPECT's 0x11 range split around it).
during_writes () {
  local e new=()
  src_write drive0 0x55 20M 1M || return 1
  src_write drive1 0x66 12M 1M || return 1
  src_write drive2 0x77 8M 1M || return 1
  src_write drive0 0x88 1M 1M || return 1
  for e in "${EXPECT[@]}"; do
    if [ "$e" = "drive0 0x11 0 8M" ]; then
      new+=("drive0 0x11 0 1M" "drive0 0x11 2M 6M")
    else
      new+=("$e")
    fi
  done
  EXPECT=("${new[@]}")
}

# dest_offline_checks LABEL: once the destination QEMU quit, each disk's
# patterns read back offline from its destination top and qemu-img compare
# finds it equal to the source's final view (one check each, LABEL first).
dest_offline_checks () {
  local i
  for i in "${!SRC_FILE[@]}"; do
    check "$1: drive$i's patterns offline on the destination" \
      offline_all "${DEST_TOP[$i]:-none}" "${DEST_FMT[$i]:-raw}" "drive$i"
    check "$1: drive$i: qemu-img compare with the source's final view" \
      qemu-img compare -q -f "${SRC_FMT[$i]}" -F "${DEST_FMT[$i]:-raw}" \
        "${SRC_FILE[$i]}" "${DEST_TOP[$i]:-none}"
  done
}

# dest_all_read: every write in EXPECT reads back on the destination.
dest_all_read () {
  local e d p o l
  for e in "${EXPECT[@]}"; do
    read -r d p o l <<<"$e"
    dest_read "$d" "$p" "$o" "$l" || { echo "# destination: $e"; return 1; }
  done
}
# dest_record: DEST_TOP[i], DEST_FMT[i] of drive0..2 on the running
# destination, DEST_DRIVES the drives it has.
dest_record () {
  local d
  DEST_TOP=() DEST_FMT=() DEST_DRIVES=$(dqmp query-block | jq -r '.[].device')
  for d in $DEST_DRIVES; do
    DEST_TOP[${d#drive}]=$(chain_files "$d" "$RUN/vm.qmp" | head -n 1)
    DEST_FMT[${d#drive}]=$(dqmp query-block | jq -r --arg d "$d" \
                             '.[] | select(.device == $d) | .inserted.image.format')
  done
}
# dest_in_domain DRIVE...: every layer of each DRIVE's chain on the
# destination is a file of $D (lib.sh's chain_in_dir).
dest_in_domain () {
  local d
  for d in "$@"; do chain_in_dir "$D" "$d" "$RUN/vm.qmp" || return 1; done
}
# dest_quit: quits the destination QEMU and waits (30 s) until it is gone.
dest_quit () {
  dqmp quit >/dev/null 2>&1
  local deadline=$(( $(date +%s) + 30 ))
  while [ -n "$DEST_PID" ] && kill -0 "$DEST_PID" 2>/dev/null; do
    [ "$(date +%s)" -le $deadline ] || return 1
    sleep 0.05
  done
}
# offline_pattern FILE FORMAT PATTERN OFFSET LENGTH: the pattern, read from
# the image (and its chain) without QEMU.
offline_pattern () {
  local out
  out=$(qemu-io -r -f "$2" -c "read -P $3 $4 $5" "$1" 2>&1)
  grep -q '^read ' <<<"$out" && ! grep -q 'verification failed' <<<"$out"
}
# offline_all FILE FORMAT DRIVE: every EXPECT write of DRIVE in FILE.
offline_all () {
  local e d p o l
  for e in "${EXPECT[@]}"; do
    read -r d p o l <<<"$e"
    [ "$d" = "$3" ] || continue
    offline_pattern "$1" "$2" "$p" "$o" "$l" || { echo "# $1: $e"; return 1; }
  done
}
# relative_chain FILE: every backing name written in FILE's chain is
# relative, and every layer is in $D.
relative_chain () {
  local info
  info=$(qemu-img info -U --backing-chain --output=json "$1") || return 1
  if jq -e '[.[] | ."backing-filename" // empty | select(startswith("/"))] | length > 0' \
       <<<"$info" >/dev/null; then
    echo "# $1: absolute backing name: $(jq -c '[.[] | ."backing-filename"]' <<<"$info")"
    return 1
  fi
  if jq -e --arg d "$D/" '[.[] | .filename | select(startswith($d) | not)] | length > 0' \
       <<<"$info" >/dev/null; then
    echo "# $1: layers outside $D: $(jq -c '[.[] | .filename]' <<<"$info")"
    return 1
  fi
}
# same_layers FILE SOURCE-CHAIN: the base names of FILE's chain end with
# those of SOURCE-CHAIN (the source's layers, in order; the destination
# may have a new top above them).
same_layers () {
  local dst src
  dst=$(qemu-img info -U --backing-chain --output=json "$1" |
        jq -r '.[].filename' | xargs -n 1 basename | tr '\n' ' ')
  src=$(xargs -n 1 basename <<<"$2" | tr '\n' ' ')
  case "$dst" in *"$src") return 0 ;; esac
  echo "# destination layers: $dst; source layers: $src"
  return 1
}

# ---- after a failure ----------------------------------------------------------
# dest_procs: processes whose command line names $RUN (the destination QEMU
# and anything else started for it); in namespaces also every process left
# in B.  Only listed, never killed by name.
dest_procs () {
  pgrep -f -- "$RUN/" 2>/dev/null
  [ -n "$NS_B" ] && ip netns pids "$NS_B" 2>/dev/null
  return 0
}
# dest_gone SECONDS: waits until dest_procs is empty; prints what is left.
dest_gone () {
  local deadline=$(( $(date +%s) + $1 )) left
  while left=$(dest_procs | sort -u | tr '\n' ' '); [ -n "$left" ]; do
    if [ "$(date +%s)" -gt $deadline ]; then
      echo "# destination processes left: $left"
      ps -o pid,args -p "${left// /,}" 2>/dev/null | sed 's/^/#   /'
      return 1
    fi
    sleep 0.05
  done
}
# no_listener: nothing listens on the port range in B, nor in A.
no_listener () {
  local b a
  b=$(listeners_b "$PORT_LO" "$PORT_HI" | tr '\n' ' ')
  a=$(in_a ss -Hltn 2>/dev/null | awk -v lo="$PORT_LO" -v hi="$PORT_HI" \
        '{ n = split($4, x, ":"); p = x[n] + 0; if (p >= lo && p <= hi) print p }' |
      tr '\n' ' ')
  [ -z "$b$a" ] && return 0
  echo "# listening: in B: $b in A: $a"
  return 1
}
empty_dir () {
  [ -z "$(ls -A "$1" 2>/dev/null)" ] && return 0
  echo "# $1 holds: $(ls -A "$1" | tr '\n' ' ')"
  return 1
}
# src_intact: the source VM runs, on the chains it had (SRC_CHAIN*), with
# no block job, $A holding the files it held, and every EXPECT write reads
# back in it.
src_intact () {
  local st
  st=$(qmp vm query-status | jq -r .status)
  [ "$st" = running ] || { echo "# source status: $st"; return 1; }
  [ "$(chain_files drive0)" = "$SRC_CHAIN0" ] || { echo "# drive0 on $(chain_files drive0 | tr '\n' ' ')"; return 1; }
  [ "$(chain_files drive1)" = "$SRC_CHAIN1" ] || { echo "# drive1 on $(chain_files drive1 | tr '\n' ' ')"; return 1; }
  [ "$(chain_files drive2)" = "$SRC_CHAIN2" ] || { echo "# drive2 on $(chain_files drive2 | tr '\n' ' ')"; return 1; }
  [ "$(qmp vm query-block-jobs | jq length)" = 0 ] || { echo "# a block job runs"; return 1; }
  [ "$(ls -A "$A" | sort)" = "$A_FILES" ] || { echo "# A: $(ls -A "$A" | tr '\n' ' ')"; return 1; }
  all_read
}
