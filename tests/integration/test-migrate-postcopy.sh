#!/usr/bin/env bash
# Issue 11's acceptance: post-copy migration of a real Linux guest (TCG)
# that keeps dirtying its RAM (the agent's `dirty`: non-zero data, faster
# than --bandwidth) between two network namespaces, A and B (netns.sh), the
# destination snapmig run by `ip netns exec NS snapmig` (--dest-cmd).  One
# guest boot serves every case: it migrates back and forth between A and B.
#
#   a. a destination snapmig that is not root (setpriv to 65534) cannot use
#      userfaultfd: --postcopy is refused before anything moves (exit 1,
#      error code "unsupported", the message names userfaultfd or root);
#      with --postcopy-fallback (--dry-run only: a non-root destination
#      QEMU cannot open what the root source made) the destination's plan
#      gives the refusal (postcopy-refused) and falls back to pre-copy
#   b. plain pre-copy with --timeout cannot converge under the load: exit 1,
#      "did not converge", "--postcopy-after-precopy" suggested, the source
#      runs on its own chain, the destination domain is empty
#   c. --postcopy-after-precopy completes: result postcopy true, the phase
#      "postcopy" was announced, the RAM payload's md5, the dirtier's region
#      and the disk records are intact in the guest, now on B
#   f2, f, e: each a running `migrate --postcopy` switched early by
#      `snapmig migrate-start-postcopy` from a second process (issue 11's
#      case d), and broken once the guest runs on the destination:
#   f2. the destination's migrate-finish snapmig is killed during
#      post-copy: completes without help
#   f. the source QEMU's migration stream is cut during post-copy
#      (tests/tools/sever-tcp): recovered (recoveries >= 1)
#   e. the veth goes down during post-copy (until migrate noticed it):
#      recovered without help
#      (recoveries >= 1)
# in that order (a hop that does not complete leaves the guest stuck between
# the hosts and ends the test).
# At the end the guest quits and its disk records are read offline from
# the last destination domain.  No timing is asserted.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/migrate-lib.sh"
# Every agent command here takes seconds; a guest that does not answer in
# 60 s is lost (and data_ok ends the test).
GUEST_CMD_TIMEOUT=${GUEST_CMD_TIMEOUT:-60}
. "$SM_TOP/tests/harness/guest.sh"

SEVER=$SM_TOP/tests/tools/sever-tcp
[ -x "$SEVER" ] || skip_all "tests/tools/sever-tcp not built (make)"
command -v setpriv >/dev/null || skip_all "setpriv missing"
MIG_BW=${MIG_BW:-32M}       # pre-copy's --bandwidth: below the dirtier's rate
mig_setup
[ -n "$NS_A" ] || skip_all "needs network namespaces (root, ip netns)"
guest_build || { not_ok "scripts/build-guest builds the guest"; done_testing; }
ok "scripts/build-guest builds the guest (or finds it built)"

DIRTY_MIB=48                # the dirtier's region
PAYLOAD_MIB=16              # the RAM payload whose md5 must survive
HOST=A OTHER=B HOP=0
mkdir -p "$T/dom0" "$T/sA" "$T/sB"
guest_records_image "$T/dom0/base.qcow2" 64M 64 1 || exit 1
qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$T/dom0/top.qcow2" || exit 1
NREC=64 GEN=2
if ! start_guest_a vm --disk drive0 "$T/dom0/top.qcow2" qcow2; then
  not_ok "the guest boots in A"
  done_testing
fi
ok "the guest boots in A and its agent answers"
echo "# boot to agent ready: $((GUEST_BOOT_MS / 1000)).$((GUEST_BOOT_MS % 1000 / 100)) s (load average $(cut -d' ' -f1 /proc/loadavg))"
SRC_QMP=$T/vm.qmp SRC_PID=$GUEST_PID SRC_DOM=$T/dom0
T0=$(date +%s)

g () { guest_do vm "$1"; }
check "the guest reads base.qcow2's records" g "verify vda 0 64 1"
check "ram $PAYLOAD_MIB fills the RAM payload" g "ram $PAYLOAD_MIB"
RAMSUM=$(sed -n "s/^ram $PAYLOAD_MIB MiB md5 //p" <<<"$REPLY")
check "... and prints its md5" [ -n "$RAMSUM" ]

# ---- helpers ---------------------------------------------------------------

# BATCHES: "SEQ COUNT GEN" of every record batch the guest wrote.
BATCHES=("0 64 1")
# more_records: the guest writes 16 more records (generation GEN).
more_records () {
  g "write vda $NREC 16 $GEN" || return 1
  BATCHES+=("$NREC 16 $GEN")
  NREC=$((NREC + 16))
}
# records_ok: every record written so far reads back in the guest.
records_ok () {
  local b
  for b in "${BATCHES[@]}"; do g "verify vda $b" || return 1; done
}
# records_offline RAW: the same, in a raw view of the disk.
records_offline () {
  local b
  for b in "${BATCHES[@]}"; do
    # shellcheck disable=SC2086 # SEQ COUNT GEN
    guest_records_check "$1" $b || return 1
  done
}
# dirtier_on: the dirtier runs and wrote its region once or more.
dirtier_on () {
  g "dirty $DIRTY_MIB" || return 1
  guest_wait_dirty vm "$DIRTY_MIB" 60
}

# hop_plan: the next migration, HOST -> OTHER: MIG (lib's array) for it,
# with an empty domain $DOM and run directory $RUNH of its own.
hop_plan () {
  HOP=$((HOP + 1))
  DOM=$T/dom$HOP RUNH=$T/run$HOP
  mkdir -p "$DOM" "$RUNH"
  MIG=("$SNAPMIG" migrate --qmp "$SRC_QMP" --state-dir "$T/s$HOST"
       --dest-state-dir "$T/s$OTHER" --dest-domain "$DOM" --dest-run-dir "$RUNH"
       --dest-cmd "ip netns exec $(ns_of "$OTHER") $SNAPMIG"
       --dest-host "$(ip_of "$OTHER")" --port-range "$PORT_LO-$PORT_HI"
       --bandwidth "$MIG_BW" --json)
  SRC_CHAIN=$(chain_files drive0 "$SRC_QMP")
  SRC_FILES=$(ls -A "$SRC_DOM" | sort)
  echo "# hop $HOP: $HOST -> $OTHER"
}
# hop_start ARGS...: that migration (MIG, then ARGS), run in HOST's
# namespace in the background: MIG_PID, output in $T/mig.out, mig.err.
hop_start () {
  # emptied here: the background shell's redirection may come after the
  # first look at the file (which would see the previous hop's lines)
  : >"$T/mig.out"; : >"$T/mig.err"
  ip netns exec "$(ns_of "$HOST")" "${MIG[@]}" "$@" >"$T/mig.out" 2>"$T/mig.err" &
  MIG_PID=$!
  _sm_pids+=("$MIG_PID")
}
# hop_end [SECONDS]: migrate-lib's mig_end without the progress lines
# (counted), and MIG_RC.
hop_end () {
  local DISK_PROGRESS='"event": *"progress"'
  mig_end "${1:-240}"
  echo "# $(grep -c '"event": *"progress"' "$T/mig.out") progress events; migrate exit $MIG_RC"
}
# hop_moved: the guest now runs in OTHER (the destination QEMU of the
# result): the agent is reached through the run directory's serial socket
# and the next hop starts from there.
hop_moved () {
  [ -n "$DEST_PID" ] || { echo "# no dest-pid in the result"; return 1; }
  guest_attach vm "$RUNH/vm.serial"
  SRC_QMP=$RUNH/vm.qmp SRC_PID=$DEST_PID SRC_DOM=$DOM
  local h=$HOST; HOST=$OTHER OTHER=$h
}
# hop_complete WHAT: a check that the hop completed; when it did not, the
# guest is stuck between the hosts (paused in post-copy, or on neither):
# the test ends there.
hop_complete () {
  check "$1 completes" [ "$MIG_RC" = 0 ]
  [ "$MIG_RC" = 0 ] && return 0
  echo "# the guest did not move: the cases after this one are not run"
  done_testing
}
event_seen () { grep -qE "$1" "$T/mig.out"; }
# is_num VALUE: a JSON number (jq type).
is_num () { [ "$(jq -r "$1 | type" <<<"$RESULT" 2>/dev/null)" = number ]; }
gt0 () { jq -e "$1 > 0" <<<"$RESULT" >/dev/null 2>&1 || { echo "# $1: $(res "$1")"; return 1; }; }
ge1 () { jq -e "$1 >= 1" <<<"$RESULT" >/dev/null 2>&1 || { echo "# $1: $(res "$1")"; return 1; }; }
# err_says REGEX: the result's error message (or stderr) matches REGEX.
err_says () {
  { res '.error.message'; cat "$T/mig.err"; } | grep -qiE -- "$1"
}
# src_unchanged: the source QEMU runs the guest on the chain it had, with
# no block job, its domain holding the files it held.
src_unchanged () {
  local st
  st=$("$SMQ" "$SRC_QMP" query-status | jq -r .status)
  [ "$st" = running ] || { echo "# source status: $st"; return 1; }
  [ "$(chain_files drive0 "$SRC_QMP")" = "$SRC_CHAIN" ] ||
    { echo "# drive0 on $(chain_files drive0 "$SRC_QMP" | tr '\n' ' ')"; return 1; }
  [ "$("$SMQ" "$SRC_QMP" query-block-jobs | jq length)" = 0 ] || { echo "# a block job runs"; return 1; }
  [ "$(ls -A "$SRC_DOM" | sort)" = "$SRC_FILES" ] ||
    { echo "# $SRC_DOM: $(ls -A "$SRC_DOM" | tr '\n' ' ')"; return 1; }
}
# other_empty: no process left in OTHER's namespace (5 s to go), nothing
# in the hop's domain nor its run directory.
other_empty () {
  local ns left
  ns=$(ns_of "$OTHER")
  wait_until 5 eval '[ -z "$(ip netns pids "$ns")" ]' ||
    { left=$(ip netns pids "$ns" | tr '\n' ' ')
      echo "# processes left in $ns: $left"; ps -o pid,args -p "${left// /,}" | sed 's/^/#   /'
      return 1; }
  empty_dir "$DOM" || return 1
  [ -z "$(ls -A "$RUNH" 2>/dev/null | grep -v '\.log$')" ] ||
    { echo "# $RUNH holds: $(ls -A "$RUNH" | tr '\n' ' ')"; return 1; }
}
# data_ok WHAT: the guest answers where it runs now, its RAM payload and
# the dirtier's region are intact (the dirtier is stopped, checked and
# started again) and every disk record reads back; then it writes more.
data_ok () {
  check "$1: the agent answers" g ping
  if [ "$REPLY" != pong ]; then
    echo "# the guest does not answer: the cases after this one are not run"
    done_testing
  fi
  check "$1: the RAM payload's md5 is unchanged" g ramsum
  check "$1: ... the one the host kept" [ "$REPLY" = "ramsum $RAMSUM" ]
  check "$1: the dirtier ran through the migration and stops" g dirtystop
  check "$1: the dirtier's region holds what it wrote" g dirtysum
  check "$1: every disk record reads back in the guest" records_ok
  GEN=$((GEN + 1))
  check "$1: the guest writes more records" more_records
  check "$1: the dirtier starts again" dirtier_on
}
# moved_ok WHAT: after a completed hop, the guest runs in the new QEMU in
# the other namespace, the old one is gone.
moved_ok () {
  local old=$SRC_PID ns
  ns=$(ns_of "$OTHER")
  check "$1: the result names the destination QEMU" [ -n "$DEST_PID" ]
  check "$1: ... which runs in $ns" eval 'ip netns pids "$ns" | grep -qx "${DEST_PID:-x}"'
  check "$1: the source QEMU is gone" wait_gone "$old" 30
  check "$1: the guest switches to the destination" hop_moved
  check "$1: the destination's guest runs" \
    eval '[ "$("$SMQ" "$SRC_QMP" query-status | jq -r .status)" = running ]'
  check "$1: drive0 runs on files of the destination domain" chain_in_dir "$SRC_DOM" drive0 "$SRC_QMP"
}

POSTCOPY_PHASE=$(phase_re postcopy)
RAM_PROGRESS='"event": *"progress".*"what": *"ram"'

# ---- a. a destination that cannot post-copy (not root) ---------------------
check "a: the guest writes records before" more_records
hop_plan
# Only what the unprivileged destination snapmig needs: $T traversable,
# its state directory, domain and run directory its own.
chmod 711 "$T"
chown 65534:65534 "$T/sB" "$DOM" "$RUNH"
mig_opt --dest-cmd "ip netns exec $NS_B setpriv --reuid=65534 --regid=65534 --clear-groups $SNAPMIG"
hop_start --postcopy
hop_end 60
check "a: migrate --postcopy to a non-root destination fails (exit 7, unsupported)" [ "$MIG_RC" = 7 ]
check "a: its result's error code is unsupported" [ "$(res .error.code)" = unsupported ]
check "a: the message names userfaultfd or root" err_says 'userfaultfd|root'
check "a: no RAM phase began" not event_seen "$(phase_re ram)"
check "a: the source runs on its own chain, unchanged" src_unchanged
check "a: nothing in B: no process, empty domain and run directory" other_empty
check "a: the guest answers in A" g ping
hop_start --postcopy --postcopy-fallback --dry-run
hop_end 60
# dest_plan: the destination's plan that --dry-run printed (with --json
# the plan event's dest-cookie).
dest_plan () { jq -r 'select(.event == "plan") | ."dest-cookie"' "$T/mig.out"; }
check "a: with --postcopy-fallback --dry-run it succeeds" [ "$MIG_RC" = 0 ]
check "a: ... the destination's plan gives the refusal (postcopy-refused names userfaultfd)" \
  eval "dest_plan | grep -q \"postcopy-refused='[^']*userfaultfd\""
check "a: ... and falls back to pre-copy (postcopy='no')" \
  eval "dest_plan | grep -q \"<snapmig .* postcopy='no'\""
check "a: ... the source unchanged" src_unchanged
check "a: ... nothing in B" other_empty
chown -R root:root "$T/sB"
chmod 700 "$T"
check "a: the disk records read back" records_ok

# ---- b. pre-copy cannot converge: --timeout fails it cleanly ---------------
check "b: the dirtier starts" dirtier_on
hop_plan
hop_start --timeout 8
hop_end 60
check "b: pre-copy under the dirtier fails (exit 5, timeout)" [ "$MIG_RC" = 5 ]
echo "# b: RAM still to send in the pre-copy's last 20 progress events: $(grep -E "$RAM_PROGRESS" "$T/mig.out" | tail -n 20 |
  jq -s '[.[].remaining] | "\(min / 1048576 | floor) to \(max / 1048576 | floor) MiB"')"
check "b: the message says it did not converge" err_says 'did not converge'
check "b: ... and suggests --postcopy-after-precopy" err_says '--postcopy-after-precopy'
check "b: its result is ok false" [ "$(res .ok)" = false ]
check "b: the source runs on its own chain, unchanged" src_unchanged
check "b: the destination is clean (no process, empty domain)" other_empty
check "b: the guest still answers" g ping
check "b: ... its dirtier still runs" g dirtystat
check "b: ... its RAM payload is intact" g ramsum
check "b: ... its records read back" records_ok

# ---- c. --postcopy-after-precopy completes under the same load -------------
hop_plan
hop_start --postcopy-after-precopy
hop_end 150
hop_complete "c: migrate --postcopy-after-precopy"
check "c: its result is ok" [ "$(res .ok)" = true ]
check "c: the result says post-copy was used" [ "$(res .postcopy)" = true ]
check "c: ... postcopy-requests is a number" is_num '."postcopy-requests"'
check "c: ... ram-bytes > 0" gt0 '."ram-bytes"'
check "c: ... pause-ms is a number" is_num '."pause-ms"'
check "c: a postcopy phase event was printed" event_seen "$POSTCOPY_PHASE"
moved_ok c
data_ok c

# The post-copies that break run with the dirtier going: a vCPU that
# touches a page still on the source while the link is down waits for it in
# userfaultfd, under TCG possibly holding QEMU's global lock (interrupt
# delivery), and then the destination answers no in-band command: snapmig's
# recovery agent recovers it through the out-of-band connection it opened
# before the switch.  The switch is made early (migrate-start-postcopy once
# the RAM phase runs) so that most of the RAM is still to move, slowly
# (--postcopy-bandwidth): the post-copy lasts seconds; a link without
# progress for 2 s is dead, and recovery gives up after 60 s (not 600).
SLOW=(--postcopy --postcopy-bandwidth 16M --stall-timeout 2 --recover-timeout 60)
# early_switch: migrate-start-postcopy from a second process once the RAM
# phase runs.
early_switch () {
  mig_wait_line "$RAM_PROGRESS" 120 || return 1
  ip netns exec "$(ns_of "$HOST")" timeout -k 5 60 "$SNAPMIG" \
    migrate-start-postcopy --qmp "$SRC_QMP" --state-dir "$T/s$HOST" \
    --timeout 30 >"$T/start.out" 2>&1
}
# dest_runs: the destination QEMU of this hop runs the guest in post-copy
# (asked on the VM's own monitor, remapped into the run directory).
dest_runs () {
  [ "$("$SMQ" "$RUNH/vm.qmp" query-status 2>/dev/null | jq -r .status)" = running ] &&
    [ "$("$SMQ" "$RUNH/vm.qmp" query-migrate 2>/dev/null | jq -r .status)" = postcopy-active ]
}
# broken_hop WHAT BREAK: a migration with SLOW whose post-copy BREAK
# (a function making its own checks) breaks as soon as it began; it must
# complete without help.
broken_hop () {
  hop_plan
  hop_start "${SLOW[@]}"
  check "$1: migrate-start-postcopy switches it early" early_switch
  check "$1: the migration reaches post-copy" mig_wait_line "$POSTCOPY_PHASE" 120
  # the break comes once the guest runs on the destination: a link cut
  # while the destination loads the device state at the switch makes QEMU
  # 7.2's destination exit, and the guest's run is lost (snapmig.1, POST-COPY)
  check "$1: the guest runs on the destination" wait_until 30 dest_runs
  "$2" "$1"
  hop_end 150
  hop_complete "$1: the migration"
  check "$1: the result says post-copy was used" [ "$(res .postcopy)" = true ]
  check "$1: ... postcopy-requests is a number" is_num '."postcopy-requests"'
  check "$1: ... pause-ms is a number" is_num '."pause-ms"'
  echo "# $1: recoveries $(res .recoveries), postcopy-requests $(res '."postcopy-requests"'), pause-ms $(res '."pause-ms"'), $(res .seconds) s"
}

# ---- f2. the destination's snapmig killed during post-copy -------------
# The destination's snapmig (migrate-finish, the transport of the finish
# phase) killed during post-copy.
# finish_pid: the PID of the destination's migrate-finish of this hop (its
# command line names the hop's run directory).
finish_pid () {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$p/cmdline" |
      grep -q " migrate-finish .*--dest-run-dir=$RUNH " && echo "${p#/proc/}"
  done | head -n 1
}
kill_pid () { [ -n "$1" ] && kill -9 "$1"; }
finish_break () {
  local fin p; fin=$(finish_pid)
  check "$1: the destination's migrate-finish runs" [ -n "$fin" ]
  [ -n "$fin" ] || for p in $(ip netns pids "$(ns_of "$OTHER")"); do
    echo "# in $(ns_of "$OTHER"): $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-300)"
  done
  check "$1: ... and is killed" kill_pid "$fin"
}
broken_hop f2 finish_break
moved_ok f2
data_ok f2

# ---- f. the migration stream cut during post-copy --------------------------
# src_streams: the remote ports of the source QEMU's TCP connections to
# OTHER's address.
src_streams () {
  in_host "$HOST" ss -HtnpO state established 2>/dev/null |
    grep "pid=$SRC_PID," | awk -v ip="$(ip_of "$OTHER")" \
      '{ n = split($4, a, ":"); if (a[1] == ip) print a[n] }' | sort -u
}
# cut_stream: every such connection shut down (sever-tcp).
cut_stream () {
  local p n=0
  for p in $(src_streams); do
    "$SEVER" "$SRC_PID" "$(ip_of "$OTHER")" "$p" | sed 's/^/# sever-tcp: /'
    n=$((n + 1))
  done
  [ $n -gt 0 ] || { echo "# the source QEMU has no connection to $(ip_of "$OTHER")"; return 1; }
}
stream_break () { check "$1: the source QEMU's migration stream is cut" cut_stream; }
broken_hop f stream_break
check "f: ... and recoveries >= 1" ge1 .recoveries
check "f: a recover phase event was printed" event_seen "$(phase_re recover)"
moved_ok f
data_ok f

# ---- e. the link goes down during post-copy --------------------------------
# link_break: the veth down until migrate has noticed the dead link (its
# recover phase: no RAM progress for --stall-timeout), then up again.
link_break () {
  check "$1: the veth goes down" link_down
  check "$1: migrate notices the dead link while it is down" \
    wait_until 30 event_seen "$(phase_re recover)"
  check "$1: the veth comes back up" link_up
}
broken_hop e link_break
check "e: ... and recoveries >= 1" ge1 .recoveries
check "e: a recover phase event was printed" event_seen "$(phase_re recover)"
moved_ok e
data_ok e

# ---- offline: the records in the last destination domain -------------------
TOP=$(top_file drive0 "$SRC_QMP")
FMT=$("$SMQ" "$SRC_QMP" query-block | jq -r '.[] | select(.device == "drive0") | .inserted.image.format')
"$SMQ" "$SRC_QMP" quit >/dev/null 2>&1
check "the guest's last QEMU quits" wait_gone "$SRC_PID" 30
check "its drive0 converts to raw" guest_image_raw "$TOP" "$FMT" "$T/last.raw"
check "offline: every record the guest wrote" records_offline "$T/last.raw"
echo "# $HOP hops in $(( $(date +%s) - T0 )) s after the boot"
done_testing
