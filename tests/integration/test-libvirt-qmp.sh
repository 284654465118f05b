#!/usr/bin/env bash
# --qmp on a monitor libvirt owns is refused at once with a message naming
# the domain and saying to use --connect (libvirt holds its QEMU's monitor:
# a second client would get no greeting, and changes made behind libvirt's
# back leave its XML stale).  A monitor of the user's own on a QEMU libvirt
# started (<qemu:commandline> -qmp) still works, and libvirt's monitor is
# refused while libvirtd is down too.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"
command -v socat >/dev/null || skip_all "socat missing"
libvirt_setup
A=$T/A
mkdir -p "$A"
qemu-img create -q -f qcow2 "$A/d0.qcow2" 16M
lv_own "$A"
lv_start vm "$(lv_domain_xml vm "$(lv_disk vda "$A/d0.qcow2" qcow2)")"
mon=$(lv_monitor_sock vm)
check "libvirt's monitor socket of domain vm is there" [ -S "$mon" ]

# --timeout 60: the refusal must not wait for it.
"$SNAPMIG" disks --qmp "$mon" --timeout 60 >"$T/out" 2>"$T/err"
rc=$?
sed 's/^/# /' "$T/err"
check "snapmig disks --qmp on libvirt's monitor fails" [ $rc -ne 0 ]
check "the message says the monitor belongs to libvirt's domain vm" \
  grep -qF "belongs to libvirt (domain vm)" "$T/err"
check "the message says to use --connect URI --domain vm" \
  grep -qF -- "use --connect URI --domain vm instead of --qmp" "$T/err"
check "the domain still runs" [ "$(lv_virsh domstate vm)" = running ]
check "libvirt still answers for it" eval 'lv_virsh domblklist vm | grep -q d0.qcow2'

# A QMP monitor of the user's own, added through <qemu:commandline>: the
# QEMU is libvirt's, the monitor is not, and it greets.
mkdir -p "$T/own"
lv_own "$T/own"
xml=$(lv_domain_xml vm2 "$(lv_disk vda "$A/d0.qcow2" qcow2)" |
  sed -e "s|<domain type='qemu'>|<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>|" \
      -e "s|</devices>|</devices><qemu:commandline><qemu:arg value='-qmp'/><qemu:arg value='unix:$T/own/vm2.qmp,server=on,wait=off'/></qemu:commandline>|")
lv_virsh destroy vm >/dev/null
check "a second domain with a -qmp of the user's own starts" lv_start vm2 "$xml"
"$SNAPMIG" disks --qmp "$T/own/vm2.qmp" >"$T/out2" 2>"$T/err2"
rc=$?
sed 's/^/# /' "$T/err2"
check "snapmig disks works on that monitor" [ $rc -eq 0 ]
check "and lists the domain's disk" grep -q d0.qcow2 "$T/out2"

# libvirtd stopped: its QEMU runs on and would greet the next client, but
# the monitor is still libvirt's (it reconnects when it starts again).
mon2=$(lv_monitor_sock vm2)
qemu_pid=$(lv_domain_pid vm2)
kill "$LV_PID"
check "libvirtd stopped" wait_until 10 lv_dead "$LV_PID"
check "its QEMU runs on" kill -0 "${qemu_pid:-0}"
check "QEMU now greets a client on libvirt's monitor" \
  eval 'timeout 10 socat -T 5 - "UNIX-CONNECT:$mon2" </dev/null 2>/dev/null | grep -q "\"QMP\""'
"$SNAPMIG" disks --qmp "$mon2" >"$T/out3" 2>"$T/err3"
rc=$?
sed 's/^/# /' "$T/err3"
check "snapmig disks --qmp on it still fails" [ $rc -ne 0 ]
check "naming domain vm2 and --connect" \
  grep -qF "belongs to libvirt (domain vm2), which must see every change to the VM: use --connect URI --domain vm2" "$T/err3"

done_testing
