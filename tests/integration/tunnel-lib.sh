# Helpers of the `migrate --tunnel` tests (issue 12): what listens on the
# destination while a tunnelled migration runs.  Sourced after lib.sh, and
# after netns.sh and migrate-lib.sh when they are used (it uses $T,
# _sm_pids, and netns.sh's in_b, migrate-lib.sh's $RUN, MIG_PID, $T/mig.out
# and DISK_PROGRESS by default; without netns.sh B is this host).
#
#   mig_start --tunnel ...
#   tun_sample_start STATE-DIR     # sampler in the background
#   ...                            # (the test's writes, mig_end)
#   tun_sample_stop
#   check "..." tun_no_tcp_listener "$SSHD_PID"
#
# The sampler runs while migrate (MIG_PID) runs, every 0.15 s, and writes
# for sample N into $T/samples/:
#   N.tcp   `ss -Hltunp` in namespace B (TCP and UDP listeners)
#   N.unix  `ss -Hxlp` in namespace B (unix listeners)
#   N.state "DEST-PID ALIVE DISK TPID TCMD": the destination QEMU's PID (from
#           the remapped pidfile $RUN/vm.pid, or without one the process
#           listening on a socket in $RUN; - before either exists), ALIVE 1
#           when that process ran both before and after the two ss calls,
#           DISK 1 when migrate had printed a disk progress event before the
#           sample, TPID the tunnel's transport PID (transport.pid in the
#           tunnel's directory; - when none), TCMD its command line (spaces
#           for NULs; - when none)
#   tunnel.dirs  the tunnel's directories seen (the --local-dir of the
#           `snapmig tunnel` process below migrate: beside the journal,
#           STATE-DIR/vms/*/journal/*-tunnel, or in $XDG_RUNTIME_DIR or
#           /tmp when that path is too long for a socket)
# A sample of a dead destination QEMU says nothing about its listeners; the
# checks count the samples that saw it alive, so that a sampler that never
# saw the migration fails them instead of passing on empty data.

[ "$(type -t in_b)" = function ] || in_b () { "$@"; }

# _tun_local_dir PID: the --local-dir of the `snapmig tunnel` process among
# PID's descendants (4 levels: timeout, migrate, tunnel); 1 when none.
_tun_local_dir () {
  local p c level=0 pids=$1 next
  while [ $level -lt 4 ] && [ -n "$pids" ]; do
    next=
    for p in $pids; do
      for c in $(pgrep -P "$p"); do
        if [ "$(tr '\0' '\n' 2>/dev/null <"/proc/$c/cmdline" | sed -n 2p)" = tunnel ]; then
          tr '\0' '\n' 2>/dev/null <"/proc/$c/cmdline" | sed -n 's/^--local-dir=//p' | head -n 1
          return 0
        fi
        next="$next $c"
      done
    done
    pids=$next level=$((level + 1))
  done
  return 1
}
: "${DISK_PROGRESS:=\"event\": *\"progress\".*\"what\": *\"disk\"}"

# tun_sample_start STATE-DIR [PID OUT RUN-DIR]: starts the sampler (its PID
# in _sm_pids) for the migrate of PID (default MIG_PID) whose output is OUT
# (default $T/mig.out) and whose destination run directory is RUN-DIR
# (default $RUN), STATE-DIR its source's state directory.
tun_sample_start () {
  local sd=$1 mpid=${2:-$MIG_PID} out=${3:-$T/mig.out} run=${4:-$RUN}
  rm -rf "$T/samples"
  mkdir -p "$T/samples"
  (
    n=0
    while kill -0 "$mpid" 2>/dev/null && [ ! -e "$T/samples/stop" ]; do
      n=$((n + 1)) f=$T/samples/$n
      dp=$(cat "$run/vm.pid" 2>/dev/null) alive=0 disk=0
      grep -qE "$DISK_PROGRESS" "$out" 2>/dev/null && disk=1
      [ -n "$dp" ] && kill -0 "$dp" 2>/dev/null && alive=1
      in_b ss -Hxlp >"$f.unix" 2>&1
      if [ -z "$dp" ]; then
        # no pidfile (a VM started without -pidfile): the process that
        # listens on the run directory's sockets, alive as it listened
        dp=$(grep -F " $run/" "$f.unix" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
        [ -n "$dp" ] && alive=1
      fi
      in_b ss -Hltunp >"$f.tcp" 2>&1
      if [ $alive = 1 ] && ! kill -0 "$dp" 2>/dev/null; then alive=0; fi
      td=$(_tun_local_dir "$mpid")
      if [ -n "$td" ]; then
        grep -qxF "$td" "$T/samples/tunnel.dirs" 2>/dev/null || echo "$td" >>"$T/samples/tunnel.dirs"
        tp=$(cat "$td/transport.pid" 2>/dev/null)
      else
        tp=$(cat "$sd"/vms/*/journal/*-tunnel/transport.pid 2>/dev/null | head -n 1)
      fi
      tc=-
      [ -n "$tp" ] && tc=$(tr '\0' ' ' 2>/dev/null <"/proc/$tp/cmdline")
      echo "${dp:--} $alive $disk ${tp:--} ${tc:--}" >"$f.state"
      sleep 0.15
    done
  ) &
  TUN_SAMPLER=$!
  _sm_pids+=("$TUN_SAMPLER")
}
# tun_sample_stop: ends the sampler (it also ends when migrate exits).
tun_sample_stop () {
  touch "$T/samples/stop"
  wait "$TUN_SAMPLER" 2>/dev/null
  TUN_N=$(ls "$T"/samples/*.state 2>/dev/null | wc -l)
  echo "# $TUN_N samples of B's listeners; $(tun_alive_samples | wc -w) with the destination QEMU running, $(tun_disk_samples | wc -w) of them during the disk copy"
}
# tun_alive_samples: the numbers of the samples that saw the destination
# QEMU alive.
tun_alive_samples () {
  local f
  for f in "$T"/samples/*.state; do
    [ -e "$f" ] || continue
    read -r _ alive _ <"$f"
    [ "$alive" = 1 ] && basename "$f" .state
  done | sort -n
}
# tun_disk_samples: those of them taken during (or after) the disk copy.
tun_disk_samples () {
  local n alive disk
  for n in $(tun_alive_samples); do
    read -r _ alive disk _ <"$T/samples/$n.state"
    [ "$disk" = 1 ] && echo "$n"
  done
}

# tun_sampled_running MIN: MIN or more samples saw the destination QEMU
# alive, one or more of them during the disk copy.
tun_sampled_running () {
  local a d
  a=$(tun_alive_samples | wc -l) d=$(tun_disk_samples | wc -l)
  [ "$a" -ge "$1" ] && [ "$d" -ge 1 ] && return 0
  echo "# of $TUN_N samples $a saw the destination QEMU alive (want $1), $d during the disk copy (want 1)"
  return 1
}
# tun_no_tcp_listener SSHD-PID: in no sample does anything but the sshd
# SSHD-PID (port 22; empty: nothing at all) listen on TCP or UDP in B;
# prints the first other listener.
tun_no_tcp_listener () {
  local f other
  [ "$TUN_N" -gt 0 ] || { echo "# no sample"; return 1; }
  for f in "$T"/samples/*.tcp; do
    other=$(awk -v pid="${1:-none}" '
      { n = split($5, a, ":"); port = a[n] }
      !(port == "22" && index($0, "pid=" pid ",") > 0)' "$f")
    if [ -n "$other" ]; then
      echo "# sample $(basename "$f" .tcp) ($(cat "${f%.tcp}.state")): listening in B:"
      sed 's/^/#   /' <<<"$other"
      return 1
    fi
  done
}
# tun_dest_no_tcp: in no sample that saw it alive does the destination
# QEMU listen on TCP or UDP (where B is this host and other listeners are
# not the test's business).
tun_dest_no_tcp () {
  local n dp l
  for n in $(tun_alive_samples); do
    read -r dp _ <"$T/samples/$n.state"
    l=$(grep "pid=$dp," "$T/samples/$n.tcp") || continue
    echo "# sample $n: the destination QEMU listens: $l"
    return 1
  done
}
# tun_sshd_seen SSHD-PID: the samples do see sshd's listener on port 22
# (the sampling of TCP listeners in B works).
tun_sshd_seen () {
  local f
  for f in "$T"/samples/*.tcp; do
    grep -q "pid=$1," "$f" && return 0
  done
  echo "# sshd (PID $1) in no sample: $(cat "$T"/samples/1.tcp 2>/dev/null)"
  return 1
}
# tun_dest_unix_endpoints: in a sample taken during the disk copy, the
# destination QEMU listened on a unix socket other than its QMP monitors
# and serial port (its NBD server or its incoming migration: the endpoints
# the tunnel reaches).  Prints what it listened on otherwise.
tun_dest_unix_endpoints () {
  local n dp eps last=
  for n in $(tun_disk_samples); do
    read -r dp _ <"$T/samples/$n.state"
    eps=$(grep "pid=$dp," "$T/samples/$n.unix" | awk '{ print $5 }' | grep -vE '\.(qmp|serial)$')
    [ -n "$eps" ] && { echo "# the destination QEMU (sample $n) listens on: $(tr '\n' ' ' <<<"$eps")"; return 0; }
    last=$n
  done
  echo "# no sample of the disk copy saw the destination QEMU listen on a unix socket but its monitors and serial port${last:+ (sample $last: $(grep "pid=" "$T/samples/$last.unix" | tr '\n' ' '))}"
  return 1
}
# tun_transport_pids: the tunnel transport PIDs the samples saw, one a line.
tun_transport_pids () {
  cat "$T"/samples/*.state 2>/dev/null | awk '$4 != "-" { print $4 }' | sort -un
}
# tun_transport_is REGEX: every transport the samples saw has a command
# line matching REGEX (grep -E), and there was one.  A transport.pid whose
# process was gone when the sample read it (TCMD -: the tunnel ending, or
# restarting it) says nothing.
tun_transport_is () {
  local cmds
  cmds=$(cat "$T"/samples/*.state 2>/dev/null | awk '$4 != "-" && $5 != "-"' | cut -d' ' -f5- | sort -u)
  [ -n "$cmds" ] || { echo "# no sample saw the tunnel's transport.pid"; return 1; }
  if grep -vqE "$1" <<<"$cmds"; then
    echo "# transport command lines: $(tr '\n' '|' <<<"$cmds")"
    return 1
  fi
}
# tun_dirs_gone: every tunnel directory the samples saw is removed, and
# none is left beside the journal in SOURCE-STATE-DIR nor in
# DEST-STATE-DIR/run; names what is left.
tun_dirs_gone () {
  local l
  l=$({ cat "$T/samples/tunnel.dirs" 2>/dev/null; ls -d "$1"/vms/*/journal/*-tunnel "$2"/run/*-tunnel 2>/dev/null; } |
      while IFS= read -r d; do [ -e "$d" ] && echo "$d"; done | sort -u)
  [ -z "$l" ] && return 0
  echo "# left: $(tr '\n' ' ' <<<"$l")"
  return 1
}
# tun_dirs_seen: the samples saw a tunnel directory.
tun_dirs_seen () {
  [ -s "$T/samples/tunnel.dirs" ] && { echo "# tunnel directory: $(tr '\n' ' ' <"$T/samples/tunnel.dirs")"; return 0; }
  echo "# no sample saw a \`snapmig tunnel\` process below migrate"
  return 1
}
# tun_transport_gone: every transport the samples saw is gone (10 s).
tun_transport_gone () {
  local p
  for p in $(tun_transport_pids); do
    wait_gone "$p" 10 || { echo "# transport PID $p still runs: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")"; return 1; }
  done
}
