#!/usr/bin/env bash
# snapmig migrate --tunnel (issue 12) between two "hosts" (network
# namespaces A and B, see test-migrate.sh), with a real OpenSSH server in B
# (sshd.sh: throwaway keys, host key checked): the 3-disk guest-less VM of
# test-migrate.sh (drive0: top.qcow2 over base.qcow2, drive1: raw, drive2:
# qcow2) migrates, keeping its chains (the default: the destination pulls
# base.qcow2 through the tunnel's reverse forward, then the mirrors and the
# migration stream go through its forwards), twice:
#   ssh     --dest-cmd "ssh -F CONFIG dest snapmig": one ssh ControlMaster
#           with unix-socket forwards (the tunnel's transport is that ssh)
#   relay   --dest-cmd "ip netns exec B snapmig": `snapmig relay` carries
#           every stream over its stdin/stdout (the transport is the relay
#           command; the result says how many bytes it carried)
# Each with guest writes during the copy (through the source's second
# monitor) and --bandwidth so that it lasts seconds, while a sampler
# (tunnel-lib.sh) lists B's listeners several times: nothing listens on TCP
# or UDP in B but sshd on port 22 (no QEMU, no snapmig), the destination
# QEMU listens on unix sockets (its NBD server or incoming migration), and
# the samples did see the destination QEMU running during the disk copy
# (so that a sampler that missed the migration fails).  Afterwards the
# checks of test-migrate.sh: the source QEMU has quit, the destination runs
# on B's files (the remapped pidfile's QEMU), every pattern reads back on
# it and offline from its files, qemu-img compare with the source's files
# is identical, snapmig validate is clean, the chain is kept with relative
# names, A's files are as before; and: the result says "transport":
# "tunnel", the message event names the tunnel's mode, the transport
# process is gone and the tunnel's directories are removed on both sides,
# nothing of the migration is left in B once the destination quit.
# Skips (77) without sshd (scripts/install-deps) or `snapmig migrate`.
# run-tests: beside (guest-less, its own namespaces and directories)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/migrate-lib.sh"
. "$(dirname "$0")/sshd.sh"
. "$(dirname "$0")/tunnel-lib.sh"

# 2 MiB/s per disk: the mirrors copy for seconds, so that the samples see them
MIG_BW=${MIG_BW:-2M}
mig_setup
[ -n "$NS_B" ] || echo "# without namespaces the listener checks are skipped"
sshd_start || { not_ok "sshd starts in B"; done_testing; }

# The sshd of the test runs in B: not a process of a migration, never
# killed as one left over (migrate-lib.sh's dest_procs lists all of B).
dest_procs () {
  pgrep -f -- "$RUN/" 2>/dev/null
  if [ -n "$NS_B" ]; then ip netns pids "$NS_B" 2>/dev/null | grep -vx "$SSHD_PID"; fi
  return 0
}

# source_quit: the source QEMU is gone (10 s at most).
source_quit () { wait_gone "$VM_PID" 10; }
validate_dest () {
  "$SNAPMIG" validate --qmp "$RUN/vm.qmp" --state-dir "$T/s2" "$D" \
    >"$T/validate.out" 2>&1 || { sed 's/^/# /' "$T/validate.out"; return 1; }
}
# message_has REGEX: a message event of migrate's output matches REGEX.
message_has () {
  grep '"event": *"message"' "$T/mig.out" | jq -r .message 2>/dev/null | grep -qE "$1"
}
# tunnel_msg FIELD: FIELD of the message event that says the tunnel is up.
tunnel_msg () {
  grep '"event": *"message"' "$T/mig.out" |
    jq -r --arg f "$1" 'select(."tunnel-dir") | .[$f] // empty' 2>/dev/null | head -n 1
}

# tunnelled LABEL DEST-CMD MODE TRANSPORT-REGEX: one tunnelled migration of
# a fresh 3-disk VM through DEST-CMD, the tunnel in MODE (ssh or relay),
# whose transport's command line matches TRANSPORT-REGEX; all its checks.
tunnelled () {
  local l=$1 dest=$2 mode=$3 tre=$4 i
  mig_fresh
  mig_opt --dest-cmd "$dest"
  mig_start --json --tunnel --bandwidth "$MIG_BW"
  tun_sample_start "$T/s1"
  check "$l: the migration reaches phase prepare" mig_wait_line "$(phase_re prepare)"
  check "$l: guest writes during the copy" during_writes
  check "$l: the writes came before the RAM phase" not grep -qE "$(phase_re ram)" "$T/mig.out"
  mig_end
  tun_sample_stop
  check "$l: migrate exits 0" [ "$MIG_RC" = 0 ]

  # While it ran.
  check "$l: the samples saw the destination QEMU run (3 samples or more, one in the disk copy)" \
    tun_sampled_running 3
  if [ -n "$NS_B" ]; then
    check "$l: the samples see sshd's port 22 in B (the sampling works)" tun_sshd_seen "$SSHD_PID"
    check "$l: nothing but sshd listens on TCP or UDP in B while it runs" \
      tun_no_tcp_listener "$SSHD_PID"
    check "$l: the destination QEMU listens on unix sockets during the copy" \
      tun_dest_unix_endpoints
  else
    skip "$l: B's listeners (no network namespaces)"
  fi
  check "$l: the tunnel's transport ran ($mode)" tun_transport_is "$tre"
  check "$l: the transport is gone after the migration" tun_transport_gone
  check "$l: the samples saw the tunnel's directory" tun_dirs_seen
  check "$l: the tunnel's directories are removed on both sides" tun_dirs_gone "$T/s1" "$T/s2"
  [ "$MIG_RC" = 0 ] || { skip "$l: migrate failed, nothing to check on the destination"; return; }

  # The result.
  check "$l: the result says ok" [ "$(res .ok)" = true ]
  check "$l: the result says transport tunnel" [ "$(res .transport)" = tunnel ]
  check "$l: a message says the tunnel ($mode) was up" message_has "^tunnel \\($mode\\) to the destination up"
  check "$l: the message's tunnel-mode is $mode" [ "$(tunnel_msg tunnel-mode)" = "$mode" ]
  check "$l: the message's tunnel-dir is the directory the samples saw" \
    grep -qxF "$(tunnel_msg tunnel-dir)" "$T/samples/tunnel.dirs"
  check "$l: the message's transport-pid is a transport the samples saw" \
    grep -qxF "$(tunnel_msg transport-pid)" <(tun_transport_pids)
  check "$l: storage chain" [ "$(res .storage)" = chain ]
  check "$l: disk bytes reported" [ "$(res '."disk-bytes"' | tr -cd 0-9)" -gt 0 ]
  if [ "$mode" = relay ]; then
    # the guest's data alone (base's 8M, the tops' 8M + 8M + 4M) crossed
    check "$l: the relay carried the disks' data (tunnel-bytes >= 28 MiB)" \
      [ "$(res '."tunnel-bytes" // 0' | tr -cd 0-9)" -ge $((28 << 20)) ]
  else
    check "$l: no tunnel-bytes in ssh mode (ssh does not count them)" \
      [ "$(res '."tunnel-bytes"')" = null ]
  fi

  # The destination, as test-migrate.sh checks it.
  check "$l: the source QEMU has quit" source_quit
  check "$l: the destination QEMU runs" [ "$(dqmp query-status | jq -r .status)" = running ]
  check "$l: it is the QEMU of the remapped pidfile" [ "$(cat "$RUN/vm.pid" 2>/dev/null)" = "$DEST_PID" ]
  if [ -n "$NS_B" ]; then
    check "$l: ... in B's network namespace" [ "$(ip netns identify "${DEST_PID:-0}")" = "$NS_B" ]
  fi
  check "$l: its disks are images of the destination domain" dest_in_domain drive0 drive1 drive2
  check "$l: the destination log is in the run dir" [ -n "$(dest_log)" ]
  check "$l: every pattern reads back on the destination" dest_all_read
  check "$l: snapmig validate of the destination domain is clean" validate_dest
  dest_record
  check "$l: the destination QEMU quits" dest_quit
  check "$l: nothing of the migration is left in B" dest_gone 10
  dest_offline_checks "$l"
  check "$l: drive0 keeps its layers on the destination" same_layers "${DEST_TOP[0]:-none}" "$SRC_CHAIN0"
  check "$l: drive0's destination chain has relative backing names, all in D" \
    relative_chain "${DEST_TOP[0]:-none}"
  check "$l: A's files are as before (the snapshot's top folded back)" \
    [ "$(ls -A "$A" | sort)" = "$A_FILES" ]
  for i in "${!SRC_FILE[@]}"; do
    check "$l: drive$i's patterns offline in A" offline_all "${SRC_FILE[$i]}" "${SRC_FMT[$i]}" "drive$i"
  done
}

tunnelled ssh "$SSH_DEST_CMD" ssh '^([^ ]*/)?ssh .*-M'
tunnelled relay "${IN_B:+$IN_B }$SNAPMIG" relay '^([^ ]*/)?(ip|snapmig) .*relay --id'

done_testing
