# A real Linux guest for integration tests.  Sourced after
# tests/integration/lib.sh (it uses $T, $SM_TOP, _sm_pids, skip_all,
# wait_for_file):
#
#   . "$(dirname "$0")/lib.sh"
#   . "$SM_TOP/tests/harness/guest.sh"
#   guest_build || exit 1            # skips the test (77) without packages
#   start_guest vm --disk drive0 "$A/top.qcow2" qcow2 || exit 1
#   guest_cmd vm "write vda 0 100"   # the agent's reply on stdout; 0 on OK
#   check "..." guest_do vm "verify vda 0 100"   # the reply in $REPLY
#
# The guest is scripts/build-guest's Debian kernel and busybox initramfs; its
# agent (tests/guest/agent.sh, where the commands are described) listens on
# the second serial port, which QEMU serves on the unix socket
# $T/NAME.serial.  One socat per guest stays connected to it, appending
# everything the agent says to $T/NAME.agent (the log to read when a test
# fails); the kernel's console goes to $T/NAME.console.  QEMU and socat are
# killed by PID on every exit path (lib.sh's _sm_pids).  TCG boots it to its
# agent in 3-7 s at load averages 3-8 on 2 cores, 20-30 s were seen on a
# busier machine: boot one guest per test file and reuse it.  -M pc (i440fx)
# and one vCPU: -smp 2 made nothing faster on 2 shared cores.
#
# Migration: start_guest_incoming DST (same disks, -incoming defer) is a
# destination whose agent channel is open before the guest arrives; after
# the migration, guest_cmd DST reaches the migrated guest (test-guest.sh
# does it).  When something else starts the destination from the source's
# command line (snapmig migrate-prepare), its -serial unix:...,server=on
# socket is either remapped, then `guest_attach NAME NEW-SOCKET`, or the
# same path, which the destination QEMU unlinks and binds again (checked on
# 7.2): then `guest_attach NAME "$T/NAME.serial"` as soon as the destination
# started and before the source quits, since a QEMU that quits unlinks its
# listening socket's path, the destination's by then (a connection made
# before stays up).

GUEST_DIR=${SNAPMIG_GUEST_DIR:-$SM_TOP/tests/guest/cache}
GUEST_MEM=${GUEST_MEM:-256M}
GUEST_BOOT_TIMEOUT=${GUEST_BOOT_TIMEOUT:-120}  # seconds, until the agent is ready
GUEST_CMD_TIMEOUT=${GUEST_CMD_TIMEOUT:-120}    # seconds, for one command's reply
declare -A _guest_fd=() _guest_pid=() _guest_socat=()
_guest_seq=0

# _guest_now_ms: milliseconds on a monotonic-enough clock.
_guest_now_ms () { echo $(( $(date +%s%N) / 1000000 )); }

# guest_build: builds the guest (or finds it built).  Skips the whole test
# (exit 77) when its packages cannot be had or a tool it needs is missing;
# returns 1 when the build fails otherwise.
guest_build () {
  command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"
  command -v socat >/dev/null || skip_all "socat missing (scripts/install-deps installs it)"
  local rc=0
  "$SM_TOP/scripts/build-guest" >"$T/build-guest.log" 2>&1 || rc=$?
  case $rc in
    0) return 0 ;;
    77) skip_all "no test guest: $(tail -n 1 "$T/build-guest.log")" ;;
    *) echo "# scripts/build-guest failed (exit $rc):"
       sed 's/^/# /' "$T/build-guest.log"
       return 1 ;;
  esac
}

# start_guest NAME [--disk ID FILE FORMAT]... [QEMU-ARG]...: boots the guest
# (-M pc, $GUEST_MEM of RAM, TCG) with its QMP socket at $T/NAME.qmp, each
# --disk as a virtio-blk disk whose drive (the QMP device name) is ID and
# whose qdev id is ID-dev (the guest sees them as vda, vdb, ... in order),
# then waits (GUEST_BOOT_TIMEOUT) for the agent.  Sets GUEST_PID (also
# VM_PID) and GUEST_BOOT_MS, the time from QEMU's start to the agent's ready
# line.  Extra arguments go to QEMU as they are.
start_guest () {
  local name=$1 t0 deadline
  t0=$(_guest_now_ms)
  _guest_qemu "$@" || return 1
  deadline=$(( t0 + GUEST_BOOT_TIMEOUT * 1000 ))
  until grep -aq '^@@ready ' "$T/$name.agent"; do
    if ! kill -0 "$GUEST_PID" 2>/dev/null; then
      echo "# guest $name: QEMU exited before its agent was ready:"
      sed 's/^/# /' "$T/$name.log" "$T/$name.console"
      return 1
    fi
    if [ "$(_guest_now_ms)" -ge $deadline ]; then
      echo "# guest $name: no agent within ${GUEST_BOOT_TIMEOUT}s; console:"
      sed 's/^/# /' "$T/$name.console"
      return 1
    fi
    sleep 0.1
  done
  GUEST_BOOT_MS=$(( $(_guest_now_ms) - t0 ))
}

# start_guest_2disk RAW-SIZE: the beginning of a test on guest "vm" with two
# disks in $A (lsm_setup): drive0 (vda) on top.qcow2 over base.qcow2 (64M,
# records 0..63 of generation 1 written offline; named relatively), drive1
# (vdb) on an empty d1.raw of RAW-SIZE.  Builds the guest (the test skips
# without it) and boots it, a TAP line each; ends the test when one fails.
start_guest_2disk () {
  guest_build || { not_ok "scripts/build-guest builds the guest"; done_testing; }
  ok "scripts/build-guest builds the guest (or finds it built)"
  guest_records_image "$A/base.qcow2" 64M 64 1 || exit 1
  qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$A/top.qcow2" || exit 1
  qemu-img create -q -f raw "$A/d1.raw" "$1" || exit 1
  if ! start_guest vm --disk drive0 "$A/top.qcow2" qcow2 --disk drive1 "$A/d1.raw" raw; then
    not_ok "the guest boots"
    done_testing
  fi
  ok "the guest boots and its agent answers"
  echo "# boot to agent ready: $((GUEST_BOOT_MS / 1000)).$((GUEST_BOOT_MS % 1000 / 100)) s (load average $(cut -d' ' -f1 /proc/loadavg))"
}

# start_guest_incoming NAME [--disk ID FILE FORMAT]... [QEMU-ARG]...: the
# same QEMU, started with -incoming defer to receive a running guest
# (migrate-incoming on $T/NAME.qmp, then migrate on the source).  Its agent
# channel is connected already: once the migration completed, guest_cmd NAME
# talks to the migrated guest.  It waits for nothing else.
start_guest_incoming () {
  _guest_qemu "$@" -incoming defer
}

# _guest_qemu NAME [--disk ID FILE FORMAT]... [QEMU-ARG]...: starts QEMU and
# attaches to the agent's serial port.  As lib.sh's start_vm, it runs QEMU
# through the command prefix in _SM_QEMU_IN when set (netns.sh's
# start_guest_a: ip netns exec NS, which execs it: GUEST_PID is QEMU's).
_guest_qemu () {
  local name=$1; shift
  local args=()
  while [ $# -ge 4 ] && [ "$1" = --disk ]; do
    args+=(-drive "file=$3,if=none,id=$2,format=$4"
           -device "virtio-blk-pci,drive=$2,id=$2-dev")
    shift 4
  done
  rm -f "$T/$name.serial" "$T/$name.qmp"
  ${_SM_QEMU_IN:-} qemu-system-x86_64 -M pc -m "$GUEST_MEM" -nodefaults -display none \
    -no-reboot -kernel "$GUEST_DIR/vmlinuz" -initrd "$GUEST_DIR/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1" \
    -serial "file:$T/$name.console" \
    -serial "unix:$T/$name.serial,server=on,wait=off" \
    -qmp "unix:$T/$name.qmp,server=on,wait=off" \
    "${args[@]}" "$@" >"$T/$name.log" 2>&1 &
  GUEST_PID=$! VM_PID=$!
  _guest_pid[$name]=$GUEST_PID
  _sm_pids+=("$GUEST_PID")
  if ! wait_for_file "$T/$name.serial" 20 || ! wait_for_file "$T/$name.qmp" 20; then
    echo "# QEMU $name did not start:"; sed 's/^/# /' "$T/$name.log"
    return 1
  fi
  guest_attach "$name" "$T/$name.serial"
}

# guest_attach NAME SOCKET: talks to guest NAME's agent through SOCKET, the
# unix socket of its second serial port (-serial unix:SOCKET,server=on,...):
# start_guest does it; a test does it again for the QEMU a guest migrated to.
# The agent's output is appended to $T/NAME.agent.
guest_attach () {
  local name=$1 sock=$2 fifo fd
  if [ -n "${_guest_fd[$name]:-}" ]; then
    fd=${_guest_fd[$name]}
    exec {fd}>&-
    kill "${_guest_socat[$name]}" 2>/dev/null
  fi
  fifo=$T/$name.in.$((++_guest_seq))
  mkfifo "$fifo" || return 1
  touch "$T/$name.agent"
  # retry: QEMU creates the socket's file (bind) just before it listens.
  socat "UNIX-CONNECT:$sock,retry=50,interval=0.1" STDIO \
    <"$fifo" >>"$T/$name.agent" 2>>"$T/$name.socat.log" &
  _guest_socat[$name]=$!
  _sm_pids+=("$!")
  # Held open (read-write, so it never blocks) as long as the test runs:
  # socat would end at the fifo's end of file.
  exec {fd}<>"$fifo"
  _guest_fd[$name]=$fd
}

# guest_cmd NAME "COMMAND ARGS..." [TIMEOUT]: runs one agent command (see
# tests/guest/agent.sh) and prints its reply without the end marker.  Returns
# 0 when the agent answers OK, 1 when it answers FAIL (the reason is the last
# line printed), 2 when no reply comes within TIMEOUT seconds (default
# GUEST_CMD_TIMEOUT) or the connection closed (QEMU quit or died).
guest_cmd () {
  local name=$1 line=$2 limit=${3:-$GUEST_CMD_TIMEOUT}
  local id=c$((++_guest_seq)) log=$T/$1.agent off end deadline l
  [ -n "${_guest_fd[$name]:-}" ] || { echo "guest_cmd: no guest $name"; return 2; }
  off=$(stat -c %s "$log")
  deadline=$(( $(_guest_now_ms) + limit * 1000 ))
  printf '%s %s\n' "$id" "$line" >&"${_guest_fd[$name]}"
  while :; do
    # Whole lines only: socat may have written "@@end ID O" of "...OK\n"
    # so far (seen once), and read fails on a last line without its newline.
    end=
    while IFS= read -r l; do
      case $l in "@@end $id "*) end=$l; break ;; esac
    done < <(tail -c +$((off + 1)) "$log")
    [ -z "$end" ] || break
    # socat ends when QEMU closes the socket (it quit, or died).
    if ! kill -0 "${_guest_socat[$name]}" 2>/dev/null; then
      tail -c +$((off + 1)) "$log" | grep -av '^@@'
      echo "guest_cmd: guest $name: the connection to its agent is closed (QEMU gone?)"
      return 2
    fi
    if [ "$(_guest_now_ms)" -ge $deadline ]; then
      tail -c +$((off + 1)) "$log" | grep -av '^@@'
      echo "guest_cmd: guest $name: no reply to '$line' within ${limit}s"
      return 2
    fi
    sleep 0.05
  done
  tail -c +$((off + 1)) "$log" | sed -n "/^@@end $id /q;/^@@/d;p"
  case "$end" in
    "@@end $id OK") return 0 ;;
    *) echo "${end#"@@end $id "}"; return 1 ;;
  esac
}

# guest_do NAME "COMMAND": guest_cmd with the reply kept in $REPLY (a check's
# command: `check "..." guest_do vm "write vda 0 10"`), shown as # lines
# when the agent does not answer OK; the status is guest_cmd's.
guest_do () {
  local rc=0
  REPLY=$(guest_cmd "$1" "$2") || rc=$?
  [ $rc -eq 0 ] || echo "$REPLY" | sed "s/^/# $1: $2: /"
  return $rc
}

# guest_fails NAME "COMMAND": true when the agent answers FAIL (not when it
# does not answer); the reply in $REPLY.
guest_fails () {
  local rc=0
  REPLY=$(guest_cmd "$1" "$2") || rc=$?
  [ $rc -eq 1 ]
}

# guest_load_mib NAME DEV: the MiB DEV's write load wrote so far (loadstat),
# nothing when no load runs there.
guest_load_mib () {
  guest_cmd "$1" "loadstat $2" | sed -n 's/.* mib \([0-9]*\) .*/\1/p'
}

# guest_wait_load NAME DEV MIB: waits (60 s at most) until DEV's write load
# wrote MIB MiB.
guest_wait_load () {
  local deadline=$(( $(date +%s) + 60 )) m
  while m=$(guest_load_mib "$1" "$2"); [ "${m:-0}" -lt "$3" ]; do
    [ "$(date +%s)" -lt $deadline ] || { echo "# $2's load wrote ${m:-0} MiB"; return 1; }
    sleep 0.2
  done
}

# guest_dirty_mib NAME: the MiB the guest's RAM dirtier (agent's `dirty`)
# wrote so far, nothing when none ran.
guest_dirty_mib () {
  guest_cmd "$1" dirtystat | sed -n 's/.* mib \([0-9]*\) .*/\1/p'
}

# guest_wait_dirty NAME MIB [SECONDS]: waits (default 60 s) until the
# dirtier wrote more than MIB MiB (a number from guest_dirty_mib: it runs).
guest_wait_dirty () {
  local deadline=$(( $(date +%s) + ${3:-60} )) m
  while m=$(guest_dirty_mib "$1"); [ "${m:-0}" -le "$2" ]; do
    [ "$(date +%s)" -lt $deadline ] || { echo "# the dirtier wrote ${m:-0} MiB, not more than $2"; return 1; }
    sleep 0.2
  done
}

# guest_quit NAME: QMP quit, then waits (30 s at most) until QEMU is gone,
# so that its images can be read offline.
guest_quit () {
  local pid=${_guest_pid[$1]} deadline
  deadline=$(( $(_guest_now_ms) + 30000 ))
  "$SMQ" "$T/$1.qmp" quit >/dev/null 2>&1
  while kill -0 "$pid" 2>/dev/null; do
    [ "$(_guest_now_ms)" -lt $deadline ] || return 1
    sleep 0.05
  done
}

# ---- offline checks (QEMU gone, or the image not in use) --------------------

# guest_records_image FILE SIZE COUNT GEN: a new qcow2 image FILE of SIZE
# holding records 0..COUNT-1 of generation GEN (as the agent's `write`
# makes them), written offline.
guest_records_image () {
  local raw=$1.raw.$$
  qemu-img create -q -f raw "$raw" "$2" &&
    awk -v seq=0 -v count="$3" -v gen="$4" -f "$SM_TOP/tests/guest/records.awk" |
      dd of="$raw" conv=notrunc status=none &&
    qemu-img convert -f raw -O qcow2 "$raw" "$1"
  local rc=$?
  rm -f "$raw"
  return $rc
}

# guest_image_raw IMAGE FORMAT OUT: the disk's whole guest view, as raw.
guest_image_raw () {
  qemu-img convert -f "$2" -O raw "$1" "$3"
}

# guest_records_check RAW SEQ COUNT [GEN]: checks, in a raw disk view, that
# records SEQ..SEQ+COUNT-1 are the ones the agent's `write` wrote (the same
# tests/guest/records.awk makes them); prints the first record that differs.
guest_records_check () {
  local raw=$1 seq=$2 count=$3 gen=${4:-0} off
  off=$(cmp <(awk -v seq="$seq" -v count="$count" -v gen="$gen" \
                  -f "$SM_TOP/tests/guest/records.awk") \
            <(dd if="$raw" bs=4096 skip="$seq" count="$count" status=none) 2>&1 |
        sed -n 's/.*differ: \(byte\|char\) \([0-9]*\).*/\2/p;s/.*EOF on .*/eof/p')
  [ -z "$off" ] && return 0
  if [ "$off" = eof ]; then
    echo "# $raw ends before record $((seq + count - 1))"
  else
    echo "# $raw: record $((seq + (off - 1) / 4096)) differs: found '$(
      dd if="$raw" bs=4096 skip=$((seq + (off - 1) / 4096)) count=1 status=none |
      head -c 63 | tr -c '[:print:]' '.')'"
  fi
  return 1
}

# guest_load_check RAW "STOP-REPLY" "WRITELOAD-REPLY": checks, in a raw view
# of the disk, the region a `writeload` wrote, from the agent's replies: the
# line "load DEV start S size Z chunk C pass P pos N ..." of `stop` and the
# lines "load DEV buffer K md5 SUM" of `writeload`.  Chunks 0..N-1 must hold
# buffer P % 4, the others buffer (P-1) % 4, or zeros when P is 0 (a load
# region must be zero before its load).
guest_load_check () {
  local raw=$1 dev start size chunk pass pos k sum zero want got c
  local -a md5=()
  read -r _ dev _ start _ size _ chunk _ pass _ pos _ <<<"$(grep -m 1 '^load [a-z0-9]* start ' <<<"$2")"
  while read -r _ _ _ k _ sum; do
    md5[$k]=$sum
  done < <(grep "^load $dev buffer [0-3] md5 " <<<"$3")
  if [ -z "$pos" ] || [ ${#md5[@]} -ne 4 ]; then
    echo "# guest_load_check: no load line or not 4 buffer md5s for $dev"
    return 1
  fi
  zero=$(head -c $((chunk << 20)) /dev/zero | md5sum | cut -d' ' -f1)
  for ((c = 0; c < size / chunk; c++)); do
    if [ $c -lt "$pos" ]; then want=${md5[$((pass % 4))]}
    elif [ "$pass" -gt 0 ]; then want=${md5[$(((pass - 1) % 4))]}
    else want=$zero; fi
    got=$(dd if="$raw" bs=1M skip=$((start + c * chunk)) count="$chunk" status=none |
          md5sum | cut -d' ' -f1)
    if [ "$got" != "$want" ]; then
      echo "# $raw: load chunk $c (at $((start + c * chunk)) MiB) is not the one written last"
      return 1
    fi
  done
}
