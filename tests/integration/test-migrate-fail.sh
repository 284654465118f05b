#!/usr/bin/env bash
# Failures of snapmig migrate between two "hosts" (network namespaces A and
# B, see test-migrate.sh) end with nothing lost and nothing left: the source
# VM runs on the chains it had, with every guest write (made before the
# migration and during its copy) readable, no block job and no file added
# to its domain; on the destination no QEMU process, no listener on the port
# range and no file in the domain or the run dir; migrate exits 1 and its
# JSON result names the phase and the cause.
#   - the destination QEMU killed (SIGKILL) mid-copy (--flatten, slow copy)
#   - the veth link down mid-copy, with --timeout (namespaces only)
#   - the destination domain on a 16 MiB tmpfs for a disk of 40 MiB of data
#     (root only)
#   - the NBD port taken: every port of a 4-port --port-range held by
#     listeners in B
# Skips (77) until `snapmig migrate` exists.
# run-tests: beside (guest-less, its own namespaces and directories)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/migrate-lib.sh"

mig_setup

# failed LABEL PHASE-REGEX: the checks of a failed migrate.
failed () {
  local l=$1
  check "$l: migrate exits with its error's status ($MIG_RC, $(res .error.code))" \
    [ "$MIG_RC" = "$(exit_status_of "$(res .error.code)")" -a "$MIG_RC" != 0 ]
  check "$l: the result says not ok" [ "$(res .ok)" = false ]
  check "$l: the error names the phase" grep -qE "$2" <<<"$(res .error.phase)"
  check "$l: the error has a message" [ -n "$(res .error.message)" ]
  check "$l: the source runs on its chains with every write" src_intact
  check "$l: no destination process is left" dest_gone 30
  check "$l: no NBD server listens" no_listener
  check "$l: the destination domain is empty" empty_dir "$D"
  check "$l: the run dir is empty" empty_dir "$RUN"
}
# writes_mid_copy: guest writes through the source's second monitor, each
# disk, remembered in EXPECT.
writes_mid_copy () {
  src_write drive0 0x55 20M 1M && src_write drive1 0x66 12M 1M &&
    src_write drive2 0x77 8M 1M
}

# --- the destination QEMU killed mid-copy ----------------------------------------
mig_fresh
mig_start --json --flatten --bandwidth "$MIG_BW"
check "QEMU killed: the destination QEMU starts (its pidfile)" wait_for_file "$RUN/vm.pid" 120
check "QEMU killed: the mirrors copy" mig_wait_line "$DISK_PROGRESS"
check "QEMU killed: guest writes during the copy" writes_mid_copy
dpid=$(cat "$RUN/vm.pid" 2>/dev/null)
check "QEMU killed: the copy still runs" kill -0 "$MIG_PID"
echo "# killing the destination QEMU, pid $dpid"
[ -n "$dpid" ] && kill -9 "$dpid"
mig_end
failed "QEMU killed" 'perform|prepare|finish'

# --- the link down mid-copy, --timeout ----------------------------------------------
if [ -n "$NS_A" ]; then
  mig_fresh
  mig_start --json --flatten --bandwidth "$MIG_BW" --timeout 10
  check "link down: the mirrors copy" mig_wait_line "$DISK_PROGRESS"
  check "link down: guest writes during the copy" writes_mid_copy
  check "link down: the copy still runs" kill -0 "$MIG_PID"
  link_down
  mig_end 180
  check "link down: the error says why (timeout, no progress)" grep -qiE "tim|progress" <<<"$(res .error.message)"
  failed "link down" 'perform|prepare|finish'
  link_up
else
  skip "link down: no network namespaces (loopback fallback)"
fi

# --- the destination domain too small ------------------------------------------
if [ "$(id -u)" = 0 ] && mkdir -p "$T/small" && mount -t tmpfs -o size=16m tmpfs "$T/small"; then
  at_exit "umount -l '$T/small' 2>/dev/null"
  mig_fresh big
  D=$T/small/dom
  mkdir -p "$D"
  mig_opt --dest-domain "$D"
  mig_start --json
  mig_end
  failed "16M domain" 'prepare'
  check "16M domain: the message names the domain" grep -qF "$D" <<<"$(res .error.message)"
  check "16M domain: the tmpfs holds nothing" \
    [ "$(df -k --output=used "$T/small" | tail -n 1 | tr -d ' ')" -lt 1024 ]
  D=$T/D
else
  skip "16M domain: no tmpfs (not root)"
fi

# --- the NBD port taken: every port of a 4-port range held in B ------------------
# (In the loopback fallback the source's layer server meets them first, in
# begin.)
command -v socat >/dev/null || skip_all "socat missing"
mig_fresh
busy=()
for ((p = PORT_LO; p < PORT_LO + 4; p++)); do
  $IN_B socat "TCP-LISTEN:$p,reuseaddr,fork" EXEC:true &
  busy+=("$!")
  _sm_pids+=("$!")
done
all_held () { [ "$(listeners_b "$PORT_LO" $((PORT_LO + 3)) | wc -l)" = 4 ]; }
for _ in $(seq 200); do all_held && break; sleep 0.05; done
check "port taken: the listeners hold the range" all_held
mig_opt --port-range "$PORT_LO-$((PORT_LO + 3))"
mig_start --json
mig_end
check "port taken: the message names the port range" \
  grep -qE "$PORT_LO|port" <<<"$(res .error.message)"
kill "${busy[@]}"
for p in "${busy[@]}"; do wait "$p" 2>/dev/null; done
failed "port taken" 'begin|prepare|perform'

done_testing
