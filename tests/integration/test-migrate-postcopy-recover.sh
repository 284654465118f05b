#!/usr/bin/env bash
# Post-copy migration (snapmig migrate --postcopy) whose stream breaks, and
# the refusals around it.  No guest OS: a guest-less q35 QEMU (-m 128, one
# qcow2 disk) whose RAM holds 48 MiB of random bytes at 16 MiB (-device
# loader), so that post-copy has real pages to move; after a migration the
# destination's RAM there (pmemsave) must equal those bytes (the loader's
# file is overwritten with zeros once the source runs, so the destination
# can only get them through the migration).  --bandwidth 4M and
# --postcopy-bandwidth 4M make pre-copy and post-copy last seconds; the
# switch is made by `snapmig migrate-start-postcopy` from a background
# shell once migrate's JSON stream shows the "ram" phase.
#
# Two "hosts": network namespaces A and B (netns.sh, migrate-lib.sh's
# mig_setup; the destination's snapmig runs through --dest-cmd 'ip netns
# exec B snapmig'), or loopback where namespaces cannot be made (a TAP
# comment says which).  The stream is cut with tests/tools/sever-tcp on the
# source QEMU's connection to the destination's migration port (found with
# `ss -tnp`): QEMU notices, both sides go postcopy-paused.
#   a. the stream cut twice during post-copy: migrate recovers by itself
#   b. migrate killed (SIGKILL, once its "postcopy" phase event appeared
#      and the destination runs post-copy), then the stream cut: recover
#      refuses on both sides, migrate-recover completes
#   c. migrate-start-postcopy against a migration without --postcopy
#   d. refusals before anything moves: --postcopy --parallel (usage), and
#      --postcopy on a source QEMU with multifd on
#   e. migrate-start-postcopy when no migration runs
# (run in the order e, d, c, a, b).  The stream is cut only once the
# destination QEMU is postcopy-active: a cut while it still loads the
# switch's device state is not covered here.
# Skips (77) without QEMU, jq, ss or `snapmig migrate`.
# run-tests: beside (guest-less, its own namespaces and directories)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/migrate-lib.sh"

mig_setup
SEVER=$SM_TOP/tests/tools/sever-tcp
[ -x "$SEVER" ] || skip_all "tests/tools/sever-tcp not built (make)"

RAM_ADDR=16777216                # 16 MiB: where the loader puts the bytes
RAM_SIZE=50331648                # 48 MiB
RND=$T/rnd.expect
head -c "$RAM_SIZE" /dev/urandom >"$RND"
BW=(--bandwidth 4M --postcopy-bandwidth 4M)

# pc_fresh: a new source VM "vm" in namespace A (the RAM above, drive0 on
# $A/d0.qcow2 with 0x5a in its first 1M, a second monitor $T/mon.qmp,
# -pidfile $T/vm.pid), emptied $D, $RUN and state dirs; the previous VMs and
# migrate killed by PID.  Sets MIG (migrate-lib.sh's) and SRC_CHAIN0.
pc_fresh () {
  mig_kill_all
  RESULT=
  rm -rf "$A" "$D" "$RUN" "$T/s1" "$T/s2" "$T"/vm.* "$T"/mon.* "$T/mig.out" "$T/mig.err"
  mkdir -p "$A" "$D" "$RUN" "$T/s1" "$T/s2"
  qemu-img create -q -f qcow2 "$A/d0.qcow2" 8M
  qemu-io -f qcow2 -c "write -P 0x5a 0 1M" "$A/d0.qcow2" >/dev/null
  cp "$RND" "$T/loader.bin"
  start_vm_a vm -machine q35 -m 128 \
    -drive "$(drive_opt drive0 "$A/d0.qcow2" qcow2)" \
    -device virtio-blk-pci,drive=drive0,id=vd0 \
    -device "loader,file=$T/loader.bin,addr=$RAM_ADDR,force-raw=on" \
    -qmp "unix:$T/mon.qmp,server=on,wait=off" -pidfile "$T/vm.pid" || exit 1
  # QMP answers once the machine was made and reset: the loader has read
  # its file.  The destination QEMU, started from the same command line,
  # would load zeros.
  SRC_RAM_OK=0
  ram_same "$T/mon.qmp" && SRC_RAM_OK=1
  head -c "$RAM_SIZE" /dev/zero >"$T/loader.bin"
  SRC_CHAIN0=$(chain_files drive0)
  MIG=("$SNAPMIG" migrate --qmp "$T/vm.qmp" --dest-domain "$D" --dest-run-dir "$RUN"
       --state-dir "$T/s1" --dest-state-dir "$T/s2"
       --dest-cmd "${IN_B:+$IN_B }$SNAPMIG" --dest-host "$IP_B"
       --port-range "$PORT_LO-$PORT_HI")
}

# ram_same QMP-SOCKET: the RAM of that QEMU at RAM_ADDR equals $RND.
ram_same () {
  rm -f "$T/dump.bin"
  "$SMQ" "$1" pmemsave "{\"val\": $RAM_ADDR, \"size\": $RAM_SIZE, \"filename\": \"$T/dump.bin\"}" \
    >/dev/null || { echo "# pmemsave on $1 failed"; return 1; }
  cmp "$T/dump.bin" "$RND" >/dev/null 2>&1 && return 0
  echo "# the RAM of $1 differs: $(cmp "$T/dump.bin" "$RND" 2>&1 | head -n 1)"
  return 1
}

# status QMP-SOCKET: the run state of that QEMU (query-status).
status () { "$SMQ" "$1" query-status 2>/dev/null | jq -r .status; }
# mig_status QMP-SOCKET: its migration status (query-migrate).
mig_status () { "$SMQ" "$1" query-migrate 2>/dev/null | jq -r '.status // "none"'; }

# stream_ports: the destination ports of the source QEMU's TCP connections
# to $IP_B in the port range (during post-copy: the migration stream).
stream_ports () {
  in_a ss -Htnp state established 2>/dev/null | grep -F "pid=$VM_PID," |
    awk -v ip="$IP_B" -v lo="$PORT_LO" -v hi="$PORT_HI" '
      { n = split($4, a, ":"); p = a[n] + 0; h = substr($4, 1, length($4) - length(a[n]) - 1)
        gsub(/[][]/, "", h)
        if (h == ip && p >= lo && p <= hi) print p }' | sort -u
}
# cut_stream: severs the source QEMU's migration stream (every connection of
# stream_ports); false when there is none or sever-tcp fails.
cut_stream () {
  local ports p
  ports=$(stream_ports)
  [ -n "$ports" ] || { echo "# no connection of QEMU $VM_PID to $IP_B:$PORT_LO-$PORT_HI"; return 1; }
  for p in $ports; do
    echo "# severing QEMU $VM_PID's connection to $IP_B:$p"
    in_a "$SEVER" "$VM_PID" "$IP_B" "$p" | sed 's/^/#   /'
    [ "${PIPESTATUS[0]}" = 0 ] || return 1
  done
}

# start_postcopy_bg: `snapmig migrate-start-postcopy` in the background;
# its exit status in $T/sp.rc, its output in $T/sp.out.
start_postcopy_bg () {
  rm -f "$T/sp.rc" "$T/sp.out"
  ( in_a "$SNAPMIG" migrate-start-postcopy --qmp "$T/vm.qmp" --state-dir "$T/s1" \
      --timeout 20 >"$T/sp.out" 2>&1; echo $? >"$T/sp.rc" ) &
  _sm_pids+=("$!")
}
sp_done () { [ -s "$T/sp.rc" ]; }

# n_lines REGEX: how many lines of $T/mig.out match.
n_lines () { grep -cE "$1" "$T/mig.out" 2>/dev/null; }
recovered_at_least () { [ "$(n_lines 'post-copy recovered')" -ge "$1" ]; }
# wait_recovered N [SECONDS]: until migrate said N recoveries (or exited).
wait_recovered () {
  local deadline=$(( $(date +%s) + ${2:-30} ))
  until recovered_at_least "$1"; do
    kill -0 "$MIG_PID" 2>/dev/null || { recovered_at_least "$1"; return; }
    [ "$(date +%s)" -le $deadline ] || return 1
    sleep 0.05
  done
}
# is_paused / is_pc_active SOCKET: that QEMU's migration is postcopy-paused
# / postcopy-active.
is_paused () { [ "$(mig_status "$1")" = postcopy-paused ]; }
is_pc_active () { [ "$(mig_status "$1")" = postcopy-active ]; }
# dest_pc_active: the destination QEMU (its own monitor $RUN/vm.qmp, which
# snapmig leaves free) runs post-copy: the guest's state has arrived there,
# the stream only carries pages now (cutting it earlier, while the
# destination still loads the switch's device state, is another case).
dest_pc_active () { wait_until 20 is_pc_active "$RUN/vm.qmp"; }
# journals_gone: no journal in the source's state dir, nothing in the
# destination's incoming dir.
journals_gone () {
  local left
  left=$(ls "$T"/s1/vms/*/journal/ "$T/s2/incoming" 2>/dev/null | grep -v ':$' | grep -v '^$')
  [ -z "$left" ] && return 0
  echo "# left: $(echo $left)"
  return 1
}
# mig_end_quiet [SECONDS]: mig_end, its output without the RAM progress lines
# (how many there were instead).
mig_end_quiet () {
  mig_end "$@" >"$T/end.log"
  grep -v '"what": *"ram"' "$T/end.log"
  echo "# ($(grep -c '"what": *"ram"' "$T/end.log") RAM progress lines)"
}
dest_qmp () { res '."dest-qmp" // empty'; }
src_gone () { wait_gone "$VM_PID" 15; }

# run_sm NAME SECONDS ARGS...: a snapmig command in namespace A (bounded by
# SECONDS); its exit status in RC, its output (stdout and stderr) in
# $T/NAME.out, printed as TAP comments.
run_sm () {
  local name=$1 secs=$2; shift 2
  in_a timeout "$secs" "$SNAPMIG" "$@" >"$T/$name.out" 2>&1
  RC=$?
  sed "s/^/# $name: /" "$T/$name.out" | grep -v '"what":"ram"'
}
# out_has NAME REGEX: $T/NAME.out matches REGEX (grep -E, any case).
out_has () { grep -qiE -- "$2" "$T/$1.out"; }
# src_unchanged: the source VM runs on the chain it had, no block job.
src_unchanged () {
  local st
  st=$(status "$T/mon.qmp")
  [ "$st" = running ] || { echo "# source status: $st"; return 1; }
  [ "$(chain_files drive0)" = "$SRC_CHAIN0" ] || { echo "# drive0 on $(chain_files drive0 | tr '\n' ' ')"; return 1; }
  [ "$(qmp mon query-block-jobs | jq length)" = 0 ] || { echo "# a block job runs"; return 1; }
}
no_source_journal () { [ -z "$(ls "$T"/s1/vms/*/journal/ 2>/dev/null)" ]; }

# --- e. migrate-start-postcopy when no migration runs -------------------------
pc_fresh
run_sm e-start 30 migrate-start-postcopy --qmp "$T/vm.qmp" --state-dir "$T/s1"
check "e: migrate-start-postcopy without a migration exits 3, not-found ($RC)" [ "$RC" = 3 ]
check "e: its error says there is no migration" out_has e-start "no migration"
check "e: the source still runs, unchanged" src_unchanged

# --- d. refusals before anything moves --------------------------------------
run_sm d-parallel 30 "${MIG[@]:1}" --postcopy --parallel
check "d: --postcopy --parallel is a usage error (exit 2)" [ "$RC" = 2 ]
check "d: --postcopy --parallel: its message names both" out_has d-parallel "parallel.*post-?copy|post-?copy.*parallel"
check "d: --postcopy --parallel: the source runs, unchanged" src_unchanged
check "d: --postcopy --parallel: the destination domain is empty" empty_dir "$D"
"$SMQ" "$T/mon.qmp" migrate-set-capabilities \
  '{"capabilities": [{"capability": "multifd", "state": true}]}' >/dev/null
check "d: multifd is on in the source QEMU" \
  [ "$("$SMQ" "$T/mon.qmp" query-migrate-capabilities | jq -r '.[] | select(.capability == "multifd") | .state')" = true ]
run_sm d-multifd 60 "${MIG[@]:1}" --postcopy --json "${BW[@]}"
check "d: --postcopy on a source with multifd on exits 2, invalid-input ($RC)" [ "$RC" = 2 ]
check "d: its error names multifd" out_has d-multifd multifd
check "d: multifd: the result says not ok" grep -q '"ok": *false' "$T/d-multifd.out"
check "d: multifd: the source runs on its own chain" src_unchanged
check "d: multifd: the destination domain is empty" empty_dir "$D"
check "d: multifd: no destination process is left" dest_gone 15
check "d: multifd: no journal is left on the source" no_source_journal

# --- c. migrate-start-postcopy against a migration without --postcopy ---------
pc_fresh
# (refused at once: the RAM phase only needs to be running)
mig_start --json --bandwidth 12M
check "c: the RAM phase begins" mig_wait_line "$(phase_re ram)" 60
run_sm c-start 30 migrate-start-postcopy --qmp "$T/vm.qmp" --state-dir "$T/s1" --timeout 20
check "c: migrate-start-postcopy exits 2, invalid-input ($RC)" [ "$RC" = 2 ]
check "c: its message says --postcopy" out_has c-start -- "--postcopy"
check "c: the migration still runs" kill -0 "$MIG_PID"
mig_end_quiet 90
check "c: migrate exits 0" [ "$MIG_RC" = 0 ]
check "c: the result says ok" [ "$(res .ok)" = true ]
check "c: the result says no post-copy" [ "$(res .postcopy)" = false ]
check "c: the destination's RAM equals the bytes" ram_same "$(dest_qmp)"
check "c: the destination runs the guest" [ "$(status "$(dest_qmp)")" = running ]
check "c: the source QEMU is gone" src_gone
check "c: no journal is left on either side" journals_gone

# --- a. the stream cut twice during post-copy -------------------------------
pc_fresh
check "a: the source's RAM holds the random bytes" [ "$SRC_RAM_OK" = 1 ]
mig_start --json --postcopy "${BW[@]}"
check "a: the RAM phase begins" mig_wait_line "$(phase_re ram)" 60
start_postcopy_bg
check "a: post-copy begins" mig_wait_line "$(phase_re postcopy)" 30
check "a: migrate-start-postcopy answers" wait_until 20 sp_done
check "a: migrate-start-postcopy said ok" [ "$(cat "$T/sp.rc" 2>/dev/null)" = 0 ]
sed 's/^/# migrate-start-postcopy: /' "$T/sp.out" 2>/dev/null
check "a: the destination runs post-copy" dest_pc_active
check "a: first cut: the stream is severed" cut_stream
check "a: first cut: migrate recovers by itself" wait_recovered 1 30
check "a: after the first cut the destination runs post-copy again" dest_pc_active
check "a: second cut: the stream is severed" cut_stream
check "a: second cut: migrate recovers by itself" wait_recovered 2 30
mig_end_quiet 90
check "a: migrate exits 0" [ "$MIG_RC" = 0 ]
check "a: the result says ok" [ "$(res .ok)" = true ]
check "a: the result says post-copy" [ "$(res .postcopy)" = true ]
check "a: the result counts 2 or more recoveries" [ "$(res '.recoveries // 0')" -ge 2 ]
check "a: the result names the destination's QMP" [ -n "$(dest_qmp)" ]
check "a: the destination's RAM equals the bytes" ram_same "$(dest_qmp)"
check "a: the destination runs the guest" [ "$(status "$(dest_qmp)")" = running ]
check "a: the source QEMU is gone" src_gone
check "a: no journal is left on either side" journals_gone
check "a: the destination's disk is in its domain" dest_in_domain drive0

# --- a2. a failed migration of a QEMU that itself came by migration ---------
# Its query-migrate says "completed" (its incoming migration) until it
# migrates again: a migration of it that fails before its `migrate` command
# (here: prepare, the destination domain missing) must still roll back and
# leave it running.
A2_QMP=$(dest_qmp)
A2_FILES=$(ls -A "$D" | sort)
"$SNAPMIG" migrate --qmp "$A2_QMP" --state-dir "$T/s2" --dest-state-dir "$T/s3" \
  --dest-domain "$T/no-such-domain" --dest-cmd "$SNAPMIG" --json \
  >"$T/a2.out" 2>&1
a2_rc=$?
check "a2: migrating it again into a missing domain fails (exit 3, not-found: $a2_rc)" [ "$a2_rc" = 3 ]
check "a2: ... in prepare" [ "$(grep '"event":"result"' "$T/a2.out" | jq -r .error.phase)" = prepare ]
check "a2: ... without saying the source stays paused" not grep -qi 'stays paused' "$T/a2.out"
check "a2: the VM still runs there" [ "$(status "$A2_QMP")" = running ]
check "a2: its domain holds the same files" [ "$(ls -A "$D" | sort)" = "$A2_FILES" ]
check "a2: no journal is left" [ -z "$(ls "$T"/s2/vms/*/journal/ 2>/dev/null)" ]

# --- b. migrate killed during post-copy, then the stream cut -------------------
pc_fresh
mig_start --json --postcopy "${BW[@]}"
check "b: the RAM phase begins" mig_wait_line "$(phase_re ram)" 60
start_postcopy_bg
check "b: post-copy begins" mig_wait_line "$(phase_re postcopy)" 30
check "b: the destination runs post-copy" dest_pc_active
echo "# killing migrate, pid $MIG_PID"
kill -9 "$MIG_PID"
wait "$MIG_PID" 2>/dev/null
check "b: migrate was killed (SIGKILL)" [ $? = 137 ]
grep -v '"what": *"ram"' "$T/mig.out" | sed 's/^/# /'
sed 's/^/# stderr: /' "$T/mig.err"
DEST_PID=$(cat "$RUN/vm.pid" 2>/dev/null)
[ -n "$DEST_PID" ] && _sm_pids+=("$DEST_PID")
# dest_only_qemu: the destination's snapmig (its finish, whose transport
# was the killed migrate) has exited; only the destination QEMU is left.
dest_only_qemu () {
  local left
  left=$(dest_procs | sort -u | grep -vx "${DEST_PID:-none}" | tr '\n' ' ')
  [ -z "$left" ]
}
check "b: the destination's finish exits with migrate gone" wait_until 15 dest_only_qemu
check "b: the stream is severed" cut_stream
check "b: the source pauses post-copy" wait_until 15 is_paused "$T/mon.qmp"
check "b: the destination pauses post-copy" wait_until 15 is_paused "$RUN/vm.qmp"

run_sm b-recover 60 recover --qmp "$T/vm.qmp" --state-dir "$T/s1"
check "b: recover (source) refuses: exit 2, invalid-input: its problems are for the administrator ($RC)" [ "$RC" = 2 ]
check "b: recover (source) says the source is never resumed" out_has b-recover "never resumed"
check "b: recover (source) names post-copy" out_has b-recover "post-?copy"
check "b: the source QEMU does not run the guest" [ "$(status "$T/mon.qmp")" != running ]
check "b: the source's journal is kept" not no_source_journal

in_b timeout 60 "$SNAPMIG" recover --incoming --state-dir "$T/s2" >"$T/b-incoming.out" 2>&1
RC=$?
sed 's/^/# b-incoming: /' "$T/b-incoming.out"
check "b: recover --incoming refuses while post-copy is paused: exit 4, busy ($RC)" [ "$RC" = 4 ]
check "b: recover --incoming names post-copy" out_has b-incoming "post-?copy"
check "b: the destination QEMU still runs" kill -0 "${DEST_PID:-0}"
check "b: the destination keeps its journal" not empty_dir "$T/s2/incoming"
check "b: the destination keeps its disk files" not empty_dir "$D"
check "b: the destination is still paused in post-copy" is_paused "$RUN/vm.qmp"

run_sm b-migrate-recover 120 migrate-recover --qmp "$T/vm.qmp" --state-dir "$T/s1" \
  --dest-cmd "${IN_B:+$IN_B }$SNAPMIG" --dest-state-dir "$T/s2" --dest-domain "$D" \
  --dest-run-dir "$RUN" --port-range "$PORT_LO-$PORT_HI" --json
RESULT=$(grep '"event": *"result"' "$T/b-migrate-recover.out" | tail -n 1)
check "b: migrate-recover exits 0" [ "$RC" = 0 ]
check "b: its result says ok" [ "$(res .ok)" = true ]
check "b: its result says post-copy" [ "$(res .postcopy)" = true ]
BQMP=$(dest_qmp); BQMP=${BQMP:-$RUN/vm.qmp}
check "b: the destination's RAM equals the bytes" ram_same "$BQMP"
check "b: the destination runs the guest" [ "$(status "$BQMP")" = running ]
check "b: the source QEMU is gone" src_gone
check "b: no journal is left on either side" journals_gone
check "b: the destination's disk is in its domain" dest_in_domain drive0
check "b: the destination's snapmig processes are gone" wait_until 15 dest_only_qemu

done_testing
