#!/usr/bin/env bash
# Issue 12's resumable copy: a migration whose link to the destination is
# cut during the disks' copy and comes back goes on where it was (NBD
# clients reconnect, a mirror stopped by its target's error is resumed)
# instead of starting over or failing; a cut longer than --link-timeout is
# a clean failure.  Two "hosts" (network namespaces A and B, netns.sh), a
# guest-less VM with one disk of $LINK_SIZE (64M) of random data (so that
# a copy that started over cannot hide behind zeroes or patterns),
# --bandwidth $LINK_BW (10M) so that its copy lasts seconds.  The cut
# comes once the copy has done $CUT_PCT % (40) of the disk (its JSON
# progress events; the mirror's steps are 16M), so that a copy that
# started over would move more than 1.3x the disk's data.
#   direct       --flatten over TCP; the veth down for 3 s (the copy must
#                not move meanwhile), then up
#   ssh          --tunnel --flatten through sshd in B (sshd.sh): the ssh
#                master (the tunnel's transport.pid) killed; the tunnel
#                must start a new one
#   relay        --tunnel --flatten through 'ip netns exec B snapmig': the
#                relay command killed
#   layer        --tunnel (ssh), the default chain mode: the data in a
#                lower layer that prepare pulls with qemu-img convert; the
#                ssh master killed while the layer pull runs
#   timeout      --link-timeout 4, the veth down for 10 s
#   timeout-ssh  --tunnel --link-timeout 4, sshd stopped and the ssh master
#                killed: the tunnel cannot come back (last: sshd is gone)
# After a cut that heals: migrate exits 0, the destination runs the VM and
# every guest write (one made during the cut) reads back there; once it
# quit, the checksum of its image (qemu-img convert to raw, sha256) equals
# the source's final view's and the reference's (the random data with the
# same writes applied offline); "disk-bytes" is at least the disk's size
# and below 1.3x it, and so is "tunnel-bytes" - "ram-bytes" (relay);
# where the link is the veth (direct, ssh, layer), the bytes the veth
# carried from A are below 1.3x the disk too (a count of our own, which
# also covers the layer pull); "link-resumes" is the number of "... is
# back" message events, and each "the link ... failed" message has one.
# (What the cuts do in fact: none stops a mirror — TCP retransmits across
# the veth's 3 s, and QEMU's NBD client reconnects to the tunnel's new
# transport within its reconnect-delay — so link-resumes is 0; the test
# asserts the counts agree, not which way the copy went on.)
# After a cut past --link-timeout: exit 1, the message names the link (or
# the tunnel) and --link-timeout, the source VM runs on its own chain with
# its data, the destination's domain and run dir are empty, every process
# of the migration seen (migrate, the destination QEMU, the transports; by
# PID) is gone, `recover` on both sides has nothing to do, and (tunnel) no
# tunnel directory is left on either side.  No timing is asserted.
# run-tests: beside (guest-less, its own namespaces and directories)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/migrate-lib.sh"
. "$(dirname "$0")/sshd.sh"

mig_setup
command -v sha256sum >/dev/null || skip_all "sha256sum missing"

# LINK_CASES: the cases to run (all by default; for debugging one).
LINK_CASES=" ${LINK_CASES:-direct ssh relay layer timeout timeout-ssh} "
want () { [ "${LINK_CASES#* $1 }" != "$LINK_CASES" ]; }
LINK_SIZE=${LINK_SIZE:-64M}
LINK_BW=${LINK_BW:-10M}
CUT_PCT=${CUT_PCT:-40}
DBYTES=$(numfmt --from=iec "$LINK_SIZE")
LIMIT=$(( DBYTES * 13 / 10 ))
head -c "$DBYTES" /dev/urandom >"$T/rand.raw"
# Short paths for the source's state dir and the QMP socket migrate uses:
# the tunnel's sockets are in STATE/vms/KEY/journal/XXXXXXXX-tunnel/, KEY
# made of the QMP socket's path, and under $T (STATE $T/s1, QMP
# $T/vm.qmp) they pass the 107 bytes of a unix socket's path (snapmig
# refuses a forward: "use a shorter directory"; ssh its ControlMaster's
# socket, whose temporary name is 17 bytes longer still).  So the VM has
# a third monitor $SH/q for migrate (and recover: the same KEY) and the
# source's state dir is $SH/s; the test's own QMP calls use $T/vm.qmp.
SH=$(mktemp -d /tmp/smXXXXXX)
at_exit "rm -rf '$SH'"
S1=$SH/s QMP=$SH/q

# The ssh cases' sshd runs in B beside the migration's processes:
# migrate-lib.sh's dest_procs (every process in B: what mig_kill_all kills
# and dest_gone waits for) leaves it out here, and its per-connection
# children (ssh's sessions, which end with the migration) stay in.
dest_procs () {
  { pgrep -f -- "$RUN/" 2>/dev/null
    [ -n "$NS_B" ] && ip netns pids "$NS_B" 2>/dev/null; } | grep -vx "${SSHD_PID:-none}"
  return 0
}

# link_fresh [chain]: mig_fresh's set-up for a one-disk VM "vm" in A:
# drive0 is $A/d0.qcow2 holding the random data, or (chain) an empty
# $A/top.qcow2 over $A/base.qcow2 holding it.  $T/ref.raw is the data the
# guest must see (lw keeps it in step).  Sets MIG (mig_fresh's options),
# SRC_FILE/SRC_FMT, SRC_CHAIN0..2, A_FILES, EXPECT.
link_fresh () {
  mig_kill_all
  rm -rf "$A" "$D" "$RUN" "$S1" "$QMP" "$T/s2" "$T"/vm.* "$T"/mon.* "$T/mig.out" "$T/mig.err"
  mkdir -p "$A" "$D" "$RUN" "$S1" "$T/s2"
  cp "$T/rand.raw" "$T/ref.raw"
  if [ "${1:-}" = chain ]; then
    qemu-img convert -q -f raw -O qcow2 "$T/rand.raw" "$A/base.qcow2"
    qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$A/top.qcow2"
    SRC_FILE=("$A/top.qcow2")
  else
    qemu-img convert -q -f raw -O qcow2 "$T/rand.raw" "$A/d0.qcow2"
    SRC_FILE=("$A/d0.qcow2")
  fi
  SRC_FMT=(qcow2) EXPECT=()
  start_vm_a vm -drive "$(drive_opt drive0 "${SRC_FILE[0]}" qcow2)" \
    -qmp "unix:$T/mon.qmp,server=on,wait=off" -qmp "unix:$QMP,server=on,wait=off" \
    -pidfile "$T/vm.pid" || exit 1
  wait_for_file "$QMP" 10 || exit 1
  SRC_CHAIN0=$(chain_files drive0) SRC_CHAIN1= SRC_CHAIN2=
  A_FILES=$(ls -A "$A" | sort)
  MIG=("$SNAPMIG" migrate --qmp "$QMP" --dest-domain "$D" --dest-run-dir "$RUN"
       --state-dir "$S1" --dest-state-dir "$T/s2"
       --dest-cmd "${IN_B:+$IN_B }$SNAPMIG" --dest-host "$IP_B"
       --port-range "$PORT_LO-$PORT_HI")
  SEEN_PIDS=()
}

# lw PATTERN OFFSET LENGTH: a guest write to drive0 during the migration
# (src_write: EXPECT), applied to the reference too.
lw () {
  src_write drive0 "$1" "$2" "$3" || return 1
  qemu-io -f raw -c "write -P $1 $2 $3" "$T/ref.raw" >/dev/null
}

# sum_of FILE FORMAT: the sha256 of the image's guest-visible bytes.
sum_of () {
  if [ "$2" = raw ]; then sha256sum <"$1" | cut -d' ' -f1; return; fi
  rm -f "$T/sum.raw"
  qemu-img convert -U -f "$2" -O raw "$1" "$T/sum.raw" 2>/dev/null || { echo "none"; return; }
  sha256sum <"$T/sum.raw" | cut -d' ' -f1
  rm -f "$T/sum.raw"
}

# progress_at WHAT PCT: the last progress event of WHAT (disk, layer) in
# migrate's output has done PCT % of its total or more.
# (jq -e is true on an empty input: the line is checked first.)
progress_at () {
  local line
  line=$(grep -E "\"event\": *\"progress\".*\"what\": *\"$1\"" "$T/mig.out" 2>/dev/null | tail -n 1)
  [ -n "$line" ] &&
    jq -e --argjson p "$2" '.total > 0 and .done * 100 >= .total * $p' <<<"$line" >/dev/null 2>&1
}
# wait_progress WHAT PCT [SECONDS]: until progress_at (60 s); 1 when
# migrate exited first.
wait_progress () {
  local deadline=$(( $(date +%s) + ${3:-60} ))
  until progress_at "$1" "$2"; do
    kill -0 "$MIG_PID" 2>/dev/null || return 1
    [ "$(date +%s)" -le $deadline ] || return 1
    sleep 0.05
  done
}

# veth_tx: bytes A's end of the veth sent so far.
veth_tx () { ip -n "$NS_A" -s -j link show "$NS_DEV" | jq '.[0].stats64.tx.bytes'; }

# note_pids: remembers the migration's processes seen now (the destination
# QEMU's pidfile, the tunnel's transport) in SEEN_PIDS.
note_pids () {
  local f
  for f in "$RUN/vm.pid" "$(tunnel_dir)/transport.pid"; do
    [ -s "$f" ] && SEEN_PIDS+=("$(cat "$f")")
  done
  return 0
}
# tunnel_dir: the tunnel's directory on the source, as migrate's message
# event says ("tunnel-dir"); nothing before the tunnel is up.
tunnel_dir () {
  grep '"tunnel-dir"' "$T/mig.out" 2>/dev/null | head -n 1 | jq -r '."tunnel-dir"'
}
# transport_pid: the tunnel's transport PID (its transport.pid on the source).
transport_pid () {
  local d; d=$(tunnel_dir)
  [ -n "$d" ] && cat "$d/transport.pid" 2>/dev/null | head -n 1
}
has_transport () { local p; p=$(transport_pid); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
# new_transport OLD: the tunnel runs a transport other than OLD.
new_transport () { local p; p=$(transport_pid); [ -n "$p" ] && [ "$p" != "$1" ] && kill -0 "$p" 2>/dev/null; }

# messages: migrate's message events, one per line.
messages () { grep '"event": *"message"' "$T/mig.out" | jq -r .message 2>/dev/null; }
# resumes_match: the result's link-resumes is the number of "is back"
# message events.
resumes_match () {
  local n; n=$(messages | grep -c 'is back')
  [ "$(res '."link-resumes"')" = "$n" ] && return 0
  echo "# link-resumes $(res '."link-resumes"'), $n 'is back' messages"
  return 1
}
# losses_match: every "the link to the destination ... failed" message
# event has its "is back" (the cut healed: none left pending).
losses_match () {
  local lost back
  lost=$(messages | grep -c 'the link to the destination .* failed')
  back=$(messages | grep -c 'is back')
  [ "$lost" = "$back" ] && return 0
  echo "# $lost 'link failed' messages, $back 'is back' messages"
  return 1
}
alive () { kill -0 "$1" 2>/dev/null; }
# source_quit: the source QEMU is gone (10 s at most).
source_quit () { wait_gone "$VM_PID" 10; }
# below LIMIT N: N is a number below LIMIT (says both when not).
below () { [ -n "$2" ] && [ "$2" -lt "$1" ] 2>/dev/null && return 0; echo "# $2 is not below $1"; return 1; }

# last_done WHAT: the done bytes of the last progress event of WHAT.
last_done () {
  grep -E "\"event\": *\"progress\".*\"what\": *\"$1\"" "$T/mig.out" 2>/dev/null |
    tail -n 1 | jq -r .done 2>/dev/null
}
# cut_veth: the veth down for 3 s (with a guest write meanwhile); the copy
# must not move while it is down (checked from 0.5 s on: a progress event
# polled before the cut may come late).
cut_veth () {
  local l=$1 what=$2 d0
  check "$l: the link is cut (veth down)" link_down
  check "$l: a guest write during the cut" lw 0x5a 4M 1M
  sleep 0.5
  d0=$(last_done "$what")
  sleep 2.5                     # the cut lasts 3 s
  check "$l: the $what copy made no progress while the link was down" \
    [ "$(last_done "$what")" = "$d0" ]
  check "$l: migrate still runs after the 3 s cut" alive "$MIG_PID"
  check "$l: the link is back (veth up)" link_up
}
# cut_transport LABEL: the tunnel's transport (ssh master, relay command)
# killed (SIGKILL, by the PID in its transport.pid), a guest write, and the
# tunnel starts a new one.
cut_transport () {
  local l=$1 old
  old=$(transport_pid)
  check "$l: the tunnel's transport runs (transport.pid)" alive "${old:-none}"
  echo "# killing the tunnel's transport, PID ${old:-none}: $(ps -o args= -p "${old:-0}" 2>/dev/null)"
  check "$l: the transport is killed" kill -9 "${old:-none}"
  check "$l: a guest write during the cut" lw 0x5a 4M 1M
  check "$l: the tunnel starts a new transport" wait_until 30 new_transport "$old"
  note_pids
  check "$l: migrate still runs after the cut" alive "$MIG_PID"
}
# cut_copy LABEL WHAT CUT ARGS...: migrate (ARGS, JSON) in the background;
# once its WHAT copy (disk, layer) did CUT_PCT %, CUT (cut_veth,
# cut_transport) cuts the link and restores it; then waits for the end.
# LINK_TX is the bytes the veth carried from A meanwhile (namespaces
# only; VETH_COUNT=0: none, the link is not the veth).
cut_copy () {
  local l=$1 what=$2 cut=$3 tx0=
  shift 3
  [ -n "$NS_A" ] && [ "${VETH_COUNT:-1}" = 1 ] && tx0=$(veth_tx)
  mig_start --json --bandwidth "$LINK_BW" "$@"
  if ! wait_progress "$what" "$CUT_PCT"; then
    not_ok "$l: the $what copy reaches $CUT_PCT %"
  else
    ok "$l: the $what copy reaches $CUT_PCT %"
    note_pids
    $cut "$l" "$what"
  fi
  mig_end 180
  LINK_TX=
  [ -n "$tx0" ] && LINK_TX=$(( $(veth_tx) - tx0 ))
  messages | sed 's/^/# message: /'
  check "$l: migrate exits 0" [ "$MIG_RC" = 0 ]
  [ "$MIG_RC" = 0 ]
}

# no_tunnel_dirs: neither the source's nor the destination's tunnel
# directory is left.
no_tunnel_dirs () {
  local left
  left=$(ls -d "$S1"/vms/*/journal/*-tunnel $(tunnel_dir) "$T"/s2/run/*-tunnel 2>/dev/null)
  [ -z "$left" ] && return 0
  echo "# left: $left"
  return 1
}

# healed LABEL: the checks after a migration whose cut healed.
healed () {
  local l=$1 ref
  check "$l: the result says ok" [ "$(res .ok)" = true ]
  check "$l: the source QEMU has quit" source_quit
  check "$l: the destination QEMU runs" [ "$(dqmp query-status | jq -r .status)" = running ]
  check "$l: its disk is an image of the destination domain" dest_in_domain drive0
  check "$l: every guest write reads back on the destination" dest_all_read
  check "$l: link-resumes matches the 'is back' messages" resumes_match
  check "$l: every 'link failed' message has its 'is back'" losses_match
  dest_record
  check "$l: the destination QEMU quits" dest_quit
  ref=$(sum_of "$T/ref.raw" raw)
  check "$l: the destination image's checksum is the reference's" \
    [ "$(sum_of "${DEST_TOP[0]:-none}" "${DEST_FMT[0]:-raw}")" = "$ref" ]
  check "$l: the source's final view's checksum is the reference's" \
    [ "$(sum_of "${SRC_FILE[0]}" qcow2)" = "$ref" ]
  check "$l: the source domain holds its files as before" [ "$(ls -A "$A" | sort)" = "$A_FILES" ]
  if [ "$(res .transport)" = tunnel ]; then
    check "$l: no tunnel directory is left on either side" no_tunnel_dirs
  fi
}
# copied_once LABEL: the bytes counts say the copy resumed, not restarted.
copied_once () {
  local l=$1 db
  db=$(res '."disk-bytes"')
  echo "# $l: disk-bytes $db, ram-bytes $(res '."ram-bytes"'), tunnel-bytes $(res '."tunnel-bytes"'), link-resumes $(res '."link-resumes"'), veth bytes from A ${LINK_TX:-n/a}; the disk holds $DBYTES"
  check "$l: disk-bytes covers the disk" [ "${db:-0}" -ge "$DBYTES" ]
  check "$l: disk-bytes < 1.3x the disk's data" below "$LIMIT" "$db"
  if [ -n "$LINK_TX" ]; then
    check "$l: the veth carried < 1.3x the disk's data from A" below "$LIMIT" "$LINK_TX"
  fi
}

# pids_gone: every process of the migration seen (SEEN_PIDS, MIG_PID)
# is gone (10 s at most); names the first that is not.
pids_gone () {
  local p
  for p in "${SEEN_PIDS[@]}" "$MIG_PID"; do
    wait_gone "$p" 10 && continue
    echo "# PID $p still runs: $(ps -o args= -p "$p")"
    return 1
  done
}
# nothing_to_recover SIDE: `snapmig recover` on the source (--qmp, the one
# migrate used: its state) or the
# destination (--incoming) exits 0 with "nothing to recover".
nothing_to_recover () {
  local out rc
  if [ "$1" = source ]; then
    out=$(in_a "$SNAPMIG" recover --qmp "$QMP" --state-dir "$S1" 2>&1); rc=$?
  else
    out=$(in_b "$SNAPMIG" recover --incoming --state-dir "$T/s2" 2>&1); rc=$?
  fi
  [ $rc = 0 ] && [ "$out" = "nothing to recover" ] && return 0
  echo "# recover ($1) exits $rc: $out" | head -n 5
  return 1
}
# src_checksum LABEL: the source VM, quit, holds the reference's data.
src_checksum () {
  qmp vm quit >/dev/null 2>&1
  check "$1: the source QEMU quits" wait_gone "$VM_PID" 10
  check "$1: the source's checksum is the reference's (its data as the guest wrote it)" \
    [ "$(sum_of "${SRC_FILE[0]}" qcow2)" = "$(sum_of "$T/ref.raw" raw)" ]
}
# failed_clean LABEL: the checks of a clean failure.
# (After a success they would check nothing: one skip line.)
failed_clean () {
  local l=$1
  check "$l: migrate exits with its error's status ($MIG_RC, $(res .error.code))" \
    [ "$MIG_RC" = "$(exit_status_of "$(res .error.code)")" -a "$MIG_RC" != 0 ]
  check "$l: the result says not ok" [ "$(res .ok)" = false ]
  if [ "$MIG_RC" = 0 ]; then
    skip "$l: migrate did not fail, no failure to check"; return
  fi
  check "$l: the source runs on its chain with every write" src_intact
  check "$l: every process of the migration is gone (by PID)" pids_gone
  check "$l: no destination process is left" dest_gone 30
  check "$l: no NBD server listens" no_listener
  check "$l: the destination domain is empty" empty_dir "$D"
  check "$l: the run dir is empty" empty_dir "$RUN"
  check "$l: recover on the source has nothing to do" nothing_to_recover source
  check "$l: recover on the destination has nothing to do" nothing_to_recover dest
  src_checksum "$l"
}

# --- direct: TCP, the veth down for 3 s ---------------------------------------
if ! want direct; then
  :
elif [ -n "$NS_A" ]; then
  link_fresh
  if cut_copy direct disk cut_veth --flatten; then
    check "direct: transport tcp" [ "$(res .transport)" = tcp ]
    copied_once direct
    healed direct
  else
    skip "direct: migrate failed, nothing to check on the destination"
  fi
else
  skip "direct: no network namespaces (the veth is what is cut)"
fi

# --- ssh: --tunnel through sshd in B, the ssh master killed --------------------
if want ssh || want layer; then
  sshd_start || { echo "# sshd_start failed"; exit 1; }
fi
if want ssh; then
link_fresh
mig_opt --dest-cmd "$SSH_DEST_CMD"
if cut_copy ssh disk cut_transport --tunnel --flatten; then
  check "ssh: transport tunnel" [ "$(res .transport)" = tunnel ]
  copied_once ssh
  healed ssh
else
  skip "ssh: migrate failed, nothing to check on the destination"
fi
fi

# --- relay: --tunnel through 'ip netns exec B snapmig', the relay killed -------
if want relay; then
link_fresh
if VETH_COUNT=0 cut_copy relay disk cut_transport --tunnel --flatten; then
  check "relay: transport tunnel" [ "$(res .transport)" = tunnel ]
  copied_once relay
  tb=$(res '."tunnel-bytes"') rb=$(res '."ram-bytes"')
  check "relay: tunnel-bytes - ram-bytes covers the disk" [ "$(( ${tb:-0} - ${rb:-0} ))" -ge "$DBYTES" ]
  check "relay: tunnel-bytes - ram-bytes < 1.3x the disk's data" \
    below "$LIMIT" "$(( ${tb:-0} - ${rb:-0} ))"
  healed relay
else
  skip "relay: migrate failed, nothing to check on the destination"
fi
fi

# --- layer: --tunnel (ssh), chain mode, the transport killed during the pull ----
if want layer; then
link_fresh chain
mig_opt --dest-cmd "$SSH_DEST_CMD"
if cut_copy layer layer cut_transport --tunnel; then
  check "layer: transport tunnel" [ "$(res .transport)" = tunnel ]
  copied_once layer
  check "layer: storage chain" [ "$(res .storage)" = chain ]
  healed layer
  check "layer: the destination keeps the source's layers" same_layers "${DEST_TOP[0]:-none}" "$SRC_CHAIN0"
else
  skip "layer: migrate failed, nothing to check on the destination"
fi
fi

# --- a cut longer than --link-timeout ------------------------------------------
# long_cut LABEL CUT HEAL ARGS...: migrate --flatten --link-timeout 4 (and
# ARGS) of the VM link_fresh made, in the background; once its disk copy
# moved, CUT cuts the link; 10 s later (or once migrate exited) HEAL (a
# command, or - for none); then the checks of a clean failure.
long_cut () {
  local l=$1 cut=$2 heal=$3
  shift 3
  mig_start --json --bandwidth "$LINK_BW" --flatten --link-timeout 4 "$@"
  check "$l: the disk copy moves" wait_progress disk 1
  note_pids
  check "$l: the link is cut" $cut
  check "$l: a guest write during the cut" lw 0x5a 4M 1M
  wait_until 10 not alive "$MIG_PID"         # the cut lasts 10 s at most
  note_pids
  echo "# $l: migrate $(alive "$MIG_PID" && echo "still runs" || echo "exited") 10 s into the cut"
  [ "$heal" = - ] || check "$l: the link is back" $heal
  mig_end 120
  messages | sed 's/^/# message: /'
  failed_clean "$l"
  check "$l: the message names the link (or the tunnel)" grep -qiE 'link|tunnel' <<<"$(res .error.message)"
  check "$l: the message names --link-timeout" grep -q -- '--link-timeout' <<<"$(res .error.message)"
}
# cut_ssh_for_good: sshd in B stopped (by PID), then the ssh master killed:
# the tunnel cannot come back.
cut_ssh_for_good () {
  local p
  kill -9 "$SSHD_PID" && wait_gone "$SSHD_PID" 10 || return 1
  p=$(transport_pid)
  [ -n "$p" ] && kill -9 "$p"
}
# The veth down: TCP's retransmissions hide the cut from QEMU's NBD client.
if ! want timeout; then
  :
elif [ -n "$NS_A" ]; then
  link_fresh
  long_cut timeout link_down link_up
else
  skip "timeout: no network namespaces (the veth is what is cut)"
fi

# sshd stopped and the ssh master killed: the tunnel cannot come back (last:
# sshd is gone).
if want timeout-ssh; then
  [ -n "$SSHD_PID" ] || sshd_start || { echo "# sshd_start failed"; exit 1; }
  link_fresh
  mig_opt --dest-cmd "$SSH_DEST_CMD"
  long_cut timeout-ssh cut_ssh_for_good - --tunnel
  check "timeout-ssh: no tunnel directory is left on either side" no_tunnel_dirs
fi

done_testing
