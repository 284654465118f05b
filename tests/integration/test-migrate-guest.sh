#!/usr/bin/env bash
# Issue 9's real-guest acceptance case: a running Linux guest (scripts/
# build-guest, tests/harness/guest.sh) that wrote numbered records to its
# disks, keeps a write load running on both and holds a checksummed RAM
# payload migrates with one `snapmig migrate` (chain kept: the default
# --copy-storage-all) from domain A to domain B.  vda is a 2-layer qcow2
# chain (base.qcow2 holding records written offline <- top.qcow2), vdb a raw
# disk.  Afterwards: the guest runs on the destination QEMU (snapmig started
# it from the source's command line; its agent's serial socket is remapped
# into --dest-run-dir), every record, both loads' regions and the RAM
# payload's md5 are intact in the guest, the source QEMU is gone, the
# destination runs on files in B only (its NBD server stopped), and once it
# quit the records and the loads' regions read back offline from B's files
# (backing names relative), while A holds the source's own three images
# again with the records written before.  Then two more hops (issue 12),
# both `migrate --tunnel` while tunnel-lib.sh's sampler sees the destination
# QEMU listen on unix sockets only: B -> C with --dest-cmd snapmig's own
# path (relay mode, every stream through `snapmig relay`: the relay carried
# the RAM), and C -> D with an ssh --dest-cmd to a throwaway sshd (sshd.sh;
# the tunnel is one `ssh -M` ControlMaster; a skip line without sshd).
# After each the result says "transport": "tunnel", the guest runs on the
# new domain's files with its records and RAM payload and writes more
# there, and offline each domain's files hold what the guest wrote while it
# ran there and not what it wrote after.  Skipped (77) only when the
# guest's packages cannot be had.  No timing is asserted.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/sshd.sh"
. "$(dirname "$0")/tunnel-lib.sh"
. "$SM_TOP/tests/harness/guest.sh"

lsm_setup
RUN=$T/run
# Every "host" is this one: same-host TCP on 127.0.0.1 (snapmig's default
# --dest-host), no network namespaces (netns_setup is not called: netns.sh's
# defaults are its loopback fallback, which sshd.sh's sshd_start follows).
echo "# destination on 127.0.0.1 (same host, TCP; no network namespaces)"

# vda: records 0..63 of generation 1 in base.qcow2, written offline, under
# an empty top.qcow2 that names it relatively; vdb: an empty raw disk.
start_guest_2disk 64M
SRC_PID=$GUEST_PID

# g "COMMAND": one agent command (guest_do), its reply in $REPLY; after the
# migration the same name reaches the guest on the destination.
g () { guest_do vm "$1"; }

check "the guest sees two disks" g info
check "... vda and vdb" grep -q '^disks vda vdb$' <<<"$REPLY"
check "the guest reads base.qcow2's records through the chain" g "verify vda 0 64 1"

# Records written by the guest before the migration: over base's
# (generation 2) and past them on vda, and on vdb.
check "write vda 32..63 gen 2 (over base.qcow2's)" g "write vda 32 32 2"
check "write vda 64..263" g "write vda 64 200"
check "write vdb 0..199" g "write vdb 0 200"

# A RAM payload whose md5 must survive the migration.
check "ram 32 fills 32 MiB" g "ram 32"
ramsum=$(sed -n 's/^ram 32 MiB md5 //p' <<<"$REPLY")
check "... and prints its md5" [ -n "$ramsum" ]

# A write load on each disk through the migration: vda's region (8..24 MiB,
# past the records) is in the top layer snapmig mirrors with sync=top,
# vdb's (16..48 MiB) on the raw disk.
check "a 10 MiB/s load starts on vda" g "writeload vda 10 8 16 4"
vda_buffers=$REPLY
check "a 10 MiB/s load starts on vdb" g "writeload vdb 10 16 32 8"
vdb_buffers=$REPLY
check "vda's load is running" guest_wait_load vm vda 4
check "vdb's load is running" guest_wait_load vm vdb 8
vda_mib=$(guest_load_mib vm vda) vdb_mib=$(guest_load_mib vm vdb)

# The migration: one command, JSON lines out (bounded, so that a hang fails
# the test instead of stopping it; snapmig's own --timeout is 60 s of no
# progress).
timeout -k 10 600 "$SNAPMIG" migrate --qmp "$T/vm.qmp" --state-dir "$T/state" \
  --dest-domain "$B" --dest-state-dir "$T/state-b" --dest-run-dir "$RUN" \
  --json >"$T/migrate.out" 2>"$T/migrate.err"
rc=$?
sed 's/^/# migrate: /' "$T/migrate.err"
grep -v '"event":"progress"' "$T/migrate.out" | sed 's/^/# migrate: /'
echo "# migrate: $(grep -c '"event":"progress"' "$T/migrate.out") progress events"
check "snapmig migrate succeeds with the guest running under the loads" [ $rc -eq 0 ]
result=$(tail -n 1 "$T/migrate.out")
# res KEY: KEY of the result line ("" when absent).
res () { jq -r --arg k "$1" '.[$k] // empty' <<<"$result" 2>/dev/null; }
check "its last line is an ok result" [ "$(jq -r '"\(.event) \(.ok)"' <<<"$result" 2>/dev/null)" = "result true" ]
check "storage was copied keeping the chain" [ "$(res storage)" = chain ]
check "progress events for the disks were printed" grep -qE '"event":"progress",("time":"[^"]*",)?"what":"disk"' "$T/migrate.out"
DQMP=$(res dest-qmp) DPID=$(res dest-pid)
check "the result names the destination's QMP socket" [ -S "$DQMP" ]
check "... in the run directory" [ "$(dirname "$DQMP")" = "$RUN" ]
# The destination QEMU, whatever the result says: the process listening on
# the sockets in the run directory (killed by PID on exit like the others).
run_pids=$(ss -xlpH | grep -F " $RUN/" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
_sm_pids+=($run_pids)
check "the result names the destination QEMU's PID" [ -n "$DPID" ]
check "... the one process serving the run directory's sockets" [ "$run_pids" = "$DPID" ]
# dq COMMAND [JSON-ARGS]: a QMP command on the destination QEMU.
dq () { "$SMQ" "$DQMP" "$@"; }

# gone PID: waits (30 s at most) until PID is gone.
gone () {
  local deadline=$(( $(date +%s) + 30 ))
  while kill -0 "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt $deadline ] || { echo "# PID $1 still runs"; return 1; }
    sleep 0.1
  done
}
check "the source QEMU is gone" gone "$SRC_PID"
check "the destination's guest runs" [ "$(dq query-status | jq -r .status)" = running ]
check "the destination exports nothing over NBD any more" [ "$(dq query-block-exports | jq length)" = 0 ]
# no_tcp_listener PID: PID (a process) listens on no TCP port (ss -p:
# root, or the same user, sees them).
no_tcp_listener () {
  local l
  [ -n "$1" ] || { echo "# no PID"; return 1; }
  l=$(ss -ltnpH | grep "pid=$1,") || return 0
  echo "# PID $1 listens: $l"
  return 1
}
check "the destination QEMU listens on no TCP port (NBD server stopped)" no_tcp_listener "$DPID"

# The agent's serial port, -serial unix:$T/vm.serial on the source, is
# $RUN/vm.serial on the destination.
check "the guest's serial socket is in the run directory" [ -S "$RUN/vm.serial" ]
guest_attach vm "$RUN/vm.serial"
check "the agent answers on the destination" g ping
check "... pong" [ "$REPLY" = pong ]
check "the RAM payload is unchanged" g ramsum
check "... same md5" [ "$REPLY" = "ramsum $ramsum" ]
# more_mib DEV BEFORE: DEV's load wrote more than BEFORE MiB by now.
more_mib () {
  local m; m=$(guest_load_mib vm "$1")
  [ "${m:-0}" -gt "${2:-0}" ] || { echo "# $1's load: ${m:-?} MiB now, ${2:-?} before the migration"; return 1; }
}
check "vda's load kept writing through the migration" more_mib vda "$vda_mib"
check "vdb's load kept writing through the migration" more_mib vdb "$vdb_mib"
check "vda's load stops without an error" g "stop vda"
vda_stop=$REPLY
check "vdb's load stops without an error" g "stop vdb"
vdb_stop=$REPLY
printf '%s\n%s\n' "$vda_stop" "$vdb_stop" | sed -n 's/^load \([a-z]*\) .* mib \([0-9]*\) cs \([0-9]*\) rate \(.*\)/# writeload \1: \2 MiB in \3 cs (\4 MiB\/s)/p'
check "write vda 264..273 on the destination" g "write vda 264 10"
check "verify vda 0..31 gen 1 on the destination" g "verify vda 0 32 1"
check "verify vda 32..63 gen 2 on the destination" g "verify vda 32 32 2"
check "verify vda 64..273 on the destination" g "verify vda 64 210"
check "verify vdb 0..199 on the destination" g "verify vdb 0 200"
check "vda's load region reads back on the destination" g "loadcheck vda"
check "vdb's load region reads back on the destination" g "loadcheck vdb"
check "verify fails on a record never written" guest_fails vm "verify vda 274 1"

check "the destination's drive0 runs on a chain of 2 or more layers in B" \
  chain_in_dir "$B" drive0 "$DQMP" 2
check "the destination's drive1 runs on files in B" chain_in_dir "$B" drive1 "$DQMP"
d0=$(top_file drive0 "$DQMP") d1=$(top_file drive1 "$DQMP")
fmt () { dq query-block | jq -r --arg d "$1" '.[] | select(.device == $d) | .inserted.image.format'; }
d0_fmt=$(fmt drive0) d1_fmt=$(fmt drive1)

# ---- hops 2 and 3: B -> C -> D with --tunnel (issue 12) ------------------
# REC: the first vda record no domain has written yet (each hop's guest
# writes 10 more); HOP_OK[X]: 1 when the hop into domain X succeeded;
# HOP_TOP0/HOP_FMT0/HOP_TOP1/HOP_FMT1[X]: the files (and formats) the guest
# ran on in X; HOP_REC[X]: REC once the guest wrote there.
REC=274
declare -A HOP_OK HOP_TOP0 HOP_FMT0 HOP_TOP1 HOP_FMT1 HOP_REC

# run_dir_pids RUN-DIR: the processes listening on a socket in RUN-DIR or
# named by its pidfile, one a line (the destination QEMU snapmig started).
run_dir_pids () {
  { ss -xlpH | grep -F " $1/" | grep -o 'pid=[0-9]*' | cut -d= -f2
    cat "$1/vm.pid" 2>/dev/null; echo; } | grep . | sort -un
}

# tunnel_hop N X DEST-CMD MODE TRANSPORT-REGEX: hop N, the guest moves with
# `migrate --tunnel --dest-cmd DEST-CMD` from the QEMU of DQMP, in domain
# HOP_DOM (its state directory $T/state-b for B, and so on), into domain
# $T/X (state $T/state-x, run directory $T/run-X), while tunnel-lib.sh's sampler
# watches; the tunnel in MODE (relay or ssh), its transport's command line
# matching TRANSPORT-REGEX.  Every check of the hop; on success DQMP, DPID,
# HOP_DOM and the guest's agent are the new destination's, otherwise they
# stay the source's (which keeps running) and the checks of X are a skip.
HOP_DOM=B
tunnel_hop () {
  local n=$1 x=$2 dcmd=$3 mode=$4 tre=$5 h="hop $1" rc t0 ms p left
  local dom=$T/$2 run=$T/run-$2 sst=$T/state-${HOP_DOM,,} dst=$T/state-${2,,}
  mkdir -p "$dom" "$run"
  t0=$(date +%s%N)
  timeout -k 10 300 "$SNAPMIG" migrate --qmp "$DQMP" --state-dir "$sst" \
    --dest-domain "$dom" --dest-state-dir "$dst" --dest-run-dir "$run" \
    --tunnel --dest-cmd "$dcmd" --json >"$T/hop$n.out" 2>"$T/hop$n.err" &
  hop_pid=$!
  _sm_pids+=("$hop_pid")
  tun_sample_start "$sst" "$hop_pid" "$T/hop$n.out" "$run"
  wait "$hop_pid"
  rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  tun_sample_stop
  # whatever happened, the QEMU it started in X is killed by PID on exit
  for p in $(run_dir_pids "$run"); do _sm_pids+=("$p"); done
  sed "s/^/# $h: /" "$T/hop$n.err"
  grep -v '"event":"progress"' "$T/hop$n.out" | sed "s/^/# $h: /"
  echo "# $h: $HOP_DOM -> $x ($mode) took $ms ms"
  check "$h: snapmig migrate --tunnel ($mode) succeeds" [ $rc -eq 0 ]
  # While it ran (tunnel-lib.sh): this host is the destination, so only the
  # destination QEMU's own listeners are looked at.
  check "$h: the samples saw the destination QEMU run (2 samples, one in the disk copy)" \
    tun_sampled_running 2
  check "$h: the destination QEMU listened on no TCP or UDP port" tun_dest_no_tcp
  check "$h: the destination QEMU listened on unix sockets during the copy" tun_dest_unix_endpoints
  check "$h: the tunnel's transport was $mode ($tre)" tun_transport_is "$tre"
  check "$h: the transport is gone" tun_transport_gone
  check "$h: the samples saw the tunnel's directory" tun_dirs_seen
  check "$h: the tunnel's directories are removed on both sides" tun_dirs_gone "$sst" "$dst"
  if [ $rc != 0 ]; then
    left=$(wait_until 10 eval '[ -z "$(run_dir_pids "$run")" ]' >/dev/null || run_dir_pids "$run")
    check "$h: the failed migrate left no destination QEMU in $x" [ -z "$left" ]
    check "$h: the source QEMU still runs" [ "$(dq query-status | jq -r .status)" = running ]
    skip "$h: migrate --tunnel failed, nothing to check in $x (the source quits below)"
    return 1
  fi
  HOP_OK[$x]=1
  result=$(tail -n 1 "$T/hop$n.out")
  check "$h: its last line is an ok result" [ "$(jq -r '"\(.event) \(.ok)"' <<<"$result" 2>/dev/null)" = "result true" ]
  check "$h: the result says transport tunnel" [ "$(res transport)" = tunnel ]
  check "$h: a message says the tunnel ($mode) was up" \
    grep -q "\"message\":\"tunnel ($mode) to the destination up" "$T/hop$n.out"
  check "$h: the RAM payload's pages moved (ram-bytes >= 32 MiB)" [ "$(res ram-bytes)" -ge $((32 << 20)) ]
  if [ "$mode" = relay ]; then
    check "$h: the relay carried the RAM (tunnel-bytes >= ram-bytes)" \
      [ "$(res tunnel-bytes)" -ge "$(res ram-bytes)" ]
  else
    check "$h: no tunnel-bytes in $mode mode (ssh does not count them)" [ -z "$(res tunnel-bytes)" ]
  fi
  check "$h: $HOP_DOM's QEMU (its source) is gone" gone "${DPID:-0}"
  DQMP=$(res dest-qmp) DPID=$(res dest-pid) HOP_DOM=$x
  check "$h: the result names the destination QEMU's QMP socket in its run directory" \
    [ "$(dirname "${DQMP:-/none}")" = "$run" ]
  check "$h: the destination's guest runs" [ "$(dq query-status | jq -r .status)" = running ]
  check "$h: the destination's drive0 runs on a chain of 2 or more layers in $x" \
    chain_in_dir "$dom" drive0 "$DQMP" 2
  check "$h: the destination's drive1 runs on files in $x" chain_in_dir "$dom" drive1 "$DQMP"
  HOP_TOP0[$x]=$(top_file drive0 "$DQMP") HOP_TOP1[$x]=$(top_file drive1 "$DQMP")
  HOP_FMT0[$x]=$(fmt drive0) HOP_FMT1[$x]=$(fmt drive1)
  check "$h: the guest's serial socket is in the run directory" [ -S "$run/vm.serial" ]
  guest_attach vm "$run/vm.serial"
  check "$h: the agent answers" g ping
  check "$h: the RAM payload is unchanged" g ramsum
  check "$h: ... same md5" [ "$REPLY" = "ramsum $ramsum" ]
  check "$h: verify vda 0..31 gen 1" g "verify vda 0 32 1"
  check "$h: verify vda 32..63 gen 2" g "verify vda 32 32 2"
  check "$h: verify vda 64..$((REC - 1))" g "verify vda 64 $((REC - 64))"
  check "$h: verify vdb 0..199" g "verify vdb 0 200"
  check "$h: vda's load region reads back" g "loadcheck vda"
  check "$h: vdb's load region reads back" g "loadcheck vdb"
  check "$h: write vda $REC..$((REC + 9)) in $x" g "write vda $REC 10"
  check "$h: verify vda $REC..$((REC + 9))" g "verify vda $REC 10"
  REC=$((REC + 10)) HOP_REC[$x]=$REC
}

# offline_domain X NEXT: once no QEMU runs on them, the files the guest ran
# on in domain X hold the records and load regions; record HOP_REC[X] is
# not there (written only in NEXT, or never written when NEXT is empty).
offline_domain () {
  local x=$1 next=$2 r=${HOP_REC[$1]}
  check "offline: drive0's view in $x converts to raw" \
    guest_image_raw "${HOP_TOP0[$x]}" "${HOP_FMT0[$x]}" "$T/$x.0.raw"
  check "offline: drive1's view in $x converts to raw" \
    guest_image_raw "${HOP_TOP1[$x]}" "${HOP_FMT1[$x]}" "$T/$x.1.raw"
  check "offline in $x: vda 0..31 gen 1" guest_records_check "$T/$x.0.raw" 0 32 1
  check "offline in $x: vda 32..63 gen 2" guest_records_check "$T/$x.0.raw" 32 32 2
  check "offline in $x: vda 64..$((r - 1))" guest_records_check "$T/$x.0.raw" 64 $((r - 64))
  check "offline in $x: vdb 0..199" guest_records_check "$T/$x.1.raw" 0 200
  check "offline in $x: vda's load region" guest_load_check "$T/$x.0.raw" "$vda_stop" "$vda_buffers"
  check "offline in $x: vdb's load region" guest_load_check "$T/$x.1.raw" "$vdb_stop" "$vdb_buffers"
  if [ -n "$next" ]; then
    check "offline in $x: a record written only in $next is not in $x" \
      not eval 'guest_records_check "$T/$x.0.raw" "$r" 1 >/dev/null'
  else
    check "offline in $x: a record never written is not taken for one" \
      not eval 'guest_records_check "$T/$x.0.raw" "$r" 1 >/dev/null'
  fi
}

# Hop 2, B -> C: on this one host --dest-cmd is snapmig's own path (relay
# mode, every stream through `snapmig relay`).
tunnel_hop 2 C "$SNAPMIG" relay 'relay --id'

# Hop 3, C -> D: --dest-cmd is an ssh command to a throwaway sshd
# (sshd.sh; without network namespaces it listens on 127.0.0.1 and a free
# port), the tunnel one `ssh -M` ControlMaster with unix-socket forwards.
if [ -z "${HOP_OK[C]:-}" ]; then
  skip "hop 3: hop 2 failed, the guest is not in C"
elif ! command -v ssh >/dev/null || ! [ -x "$(command -v sshd || echo /usr/sbin/sshd)" ]; then
  skip "hop 3: sshd or ssh missing (scripts/install-deps installs openssh-server)"
elif ! sshd_start; then
  not_ok "hop 3: sshd starts on $IP_B"
  skip "hop 3: no sshd, nothing to migrate through"
else
  tunnel_hop 3 D "$SSH_DEST_CMD" ssh '^([^ ]*/)?ssh .*-M'
fi

# Offline, from B's, C's and D's files, once the last destination QEMU quit
# (the source of a failed hop keeps running: it is that one).
check "the last destination QEMU (in $HOP_DOM) quits" eval 'dq quit >/dev/null'
check "... and is gone" gone "${DPID:-0}"
if [ -n "${HOP_OK[C]:-}" ]; then
  offline_domain C "${HOP_OK[D]:+D}"
fi
if [ -n "${HOP_OK[D]:-}" ]; then
  offline_domain D ""
fi
check "drive0's view in B converts to raw" guest_image_raw "$d0" "$d0_fmt" "$T/d0.raw"
check "drive1's view in B converts to raw" guest_image_raw "$d1" "$d1_fmt" "$T/d1.raw"
check "offline: vda 0..31 gen 1" guest_records_check "$T/d0.raw" 0 32 1
check "offline: vda 32..63 gen 2" guest_records_check "$T/d0.raw" 32 32 2
check "offline: vda 64..273" guest_records_check "$T/d0.raw" 64 210
check "offline: vdb 0..199" guest_records_check "$T/d1.raw" 0 200
check "offline: vda's load region" guest_load_check "$T/d0.raw" "$vda_stop" "$vda_buffers"
check "offline: vdb's load region" guest_load_check "$T/d1.raw" "$vdb_stop" "$vdb_buffers"
check "offline: a record written only in C is not in B" \
  not eval 'guest_records_check "$T/d0.raw" 274 1 >/dev/null'
# relative_backing FILE: every backing file name in FILE's chain is
# relative (the chain in B can move as a directory).
relative_backing () {
  local names abs
  names=$(qemu-img info -U --backing-chain --output=json "$1" |
          jq -r '.[] | ."backing-filename" // empty') || return 1
  [ -n "$names" ] || { echo "# $1 has no backing file"; return 1; }
  abs=$(grep '^/' <<<"$names") || return 0
  echo "# $1's chain names a backing file absolutely: $abs"
  return 1
}
check "drive0's chain in B names its backing files relatively" relative_backing "$d0"

# The source keeps its disks: snapmig folded the snapshot's top back into
# top.qcow2, and A holds the records the guest wrote there before the
# migration.
check "A holds only the source's own images again" \
  [ "$(cd "$A" && echo *)" = "base.qcow2 d1.raw top.qcow2" ]
check "A's drive0 converts to raw" guest_image_raw "$A/top.qcow2" qcow2 "$T/a0.raw"
check "A's drive1 converts to raw" guest_image_raw "$A/d1.raw" raw "$T/a1.raw"
check "offline in A: vda 0..31 gen 1" guest_records_check "$T/a0.raw" 0 32 1
check "offline in A: vda 32..63 gen 2" guest_records_check "$T/a0.raw" 32 32 2
check "offline in A: vda 64..263" guest_records_check "$T/a0.raw" 64 200
check "offline in A: vdb 0..199" guest_records_check "$T/a1.raw" 0 200

echo "# B after the migration: $(cd "$B" && echo *)"
done_testing
