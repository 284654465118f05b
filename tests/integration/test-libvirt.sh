#!/usr/bin/env bash
# libvirt.sh, the tests' private libvirt: a session daemon of the test's
# own runs a domain on a 2-layer qcow2 chain and a raw disk as libvirt
# describes them, shuts it down, and on the test's exit the daemon and the
# domain's QEMU are gone (also when a test exits without cleaning up by
# hand: checked by a child run).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"

# start_domain: domain "vm" on $A/top.qcow2 (over base.qcow2) and d1.raw.
start_domain () {
  A=$T/A
  mkdir -p "$A"
  lv_start_2disk vm "$A"
}

if [ "${1:-}" = --child ]; then
  # Run by the parent: start the daemon and a domain, print their PIDs and
  # exit without cleaning up by hand.
  libvirt_setup >/dev/null
  start_domain || exit 1
  echo "$LV_PID $(lv_domain_pid vm) $LV"
  exit 0
fi

libvirt_setup
check "the daemon runs as $LV_USER" \
  [ "$(ps -o user= -p "$LV_PID" | tr -d ' ')" = "$LV_USER" ]
check "the daemon is reached through its socket in the test dir" \
  [ -S "$LV/run/libvirt/libvirt-sock" ]

start_domain
check "the domain runs" [ "$(lv_virsh domstate vm)" = running ]
qemu_pid=$(lv_domain_pid vm)
check "libvirt wrote its QEMU's PID into the test dir" [ -n "$qemu_pid" ]
check "its QEMU runs (PID $qemu_pid) as $LV_USER" \
  [ "$(ps -o user= -p "${qemu_pid:-0}" | tr -d ' ')" = "$LV_USER" ]
check "its QEMU is a TCG one" \
  eval 'tr "\0" " " <"/proc/$qemu_pid/cmdline" | grep -q -- "-accel tcg"'
blk=$(lv_virsh domblklist vm | awk '{print $1, $2}')
check "domblklist: vda is top.qcow2" grep -qx "vda $A/top.qcow2" <<<"$blk"
check "domblklist: vdb is d1.raw" grep -qx "vdb $A/d1.raw" <<<"$blk"
lv_virsh dumpxml vm >"$T/live.xml"
check "the live XML names base.qcow2 as vda's backing store" \
  grep -qF "<source file='$A/base.qcow2'/>" "$T/live.xml"
check "the domain's monitor socket is in the test dir" \
  [ -S "$(lv_monitor_sock vm)" ]
check "the domain's log is in the test dir" [ -s "$(lv_domain_log vm)" ]
check "the domain's log has no 'tainted' line" \
  not grep -q tainted "$(lv_domain_log vm)"

check "virsh destroy shuts it down" eval 'lv_virsh destroy vm >/dev/null'
check "the domain is shut off" [ "$(lv_virsh domstate vm)" = "shut off" ]
check "its QEMU is gone" wait_until 10 lv_dead "${qemu_pid:-0}"
check "the domain stays defined" eval 'lv_virsh list --all --name | grep -qx vm'

libvirt_stop
check "libvirt_stop: the daemon is gone" lv_dead "$LV_PID"
check "libvirt_stop: no process is left in the test's libvirt" \
  [ -z "$(lv_procs)" ]

out=$(bash "$0" --child)
read -r cd cq clv <<<"$out"
check "child run: started a daemon and a domain" [ -n "${cq:-}" ]
check "child run's exit: its daemon is gone" lv_dead "${cd:-0}"
check "child run's exit: its domain's QEMU is gone" lv_dead "${cq:-0}"
check "child run's exit: its directory is gone" [ ! -e "${clv:-/}/run" ]
no_env_procs () {
  local p
  for p in /proc/[0-9]*; do
    ! grep -qzF "$1/" "$p/environ" 2>/dev/null || { echo "# left: ${p#/proc/}"; return 1; }
  done
}
check "child run's exit: no process is left in its libvirt" no_env_procs "${clv:-/nonexistent}"

done_testing
