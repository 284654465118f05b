# A private libvirt for the tests (issue 14): a session-mode libvirtd of
# the test's own, never the machine's system daemon.  Sourced after lib.sh
# (it uses $T, at_exit, wait_until):
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/libvirt.sh"
#   libvirt_setup                 # LV LV_URI LV_USER LV_PID; lv_virsh works
#   lv_own "$A"                   # the daemon's user owns the disks
#   lv_start vm "$(lv_domain_xml vm "$(lv_disk vda "$A/top.qcow2" qcow2)")"
#   lv_virsh domblklist vm
#
# How: libvirtd run as a user's own daemon (session mode, qemu:///session)
# keeps every path under HOME and the XDG_* directories, so the test points
# them all into $LV (= $T/libvirt).  As root the daemon runs as `nobody`
# (setpriv; libvirtd as root would be the privileged daemon with its paths
# under /etc, /run and /var), otherwise as the test's user; its QEMUs run
# as the same user, so the disks must be that user's (lv_own).  Clients
# reach it with qemu+unix:///session?socket=$LV/run/libvirt/libvirt-sock.
# Its qemu.conf logs a domain's QEMU to a file ($LV/cache/libvirt/qemu/
# log/NAME.log) instead of through virtlogd, which would be one more
# daemon to start and kill, and sets no security driver.
#
# Teardown on every exit path (lib.sh's at_exit): each domain's QEMU is
# killed by the PID libvirt wrote for it (the daemon starts QEMU as a
# daemon of its own: killing libvirtd leaves it running), then the daemon
# by its PID, then any process left whose environment names $LV (so by
# PID, never by name).
#
# A second daemon (test-libvirt-migrate.sh: two "hosts"): LV_DIR=DIR
# LV_HOST_UUID=UUID libvirt_setup, the globals saved before the next call
# and its libvirt_stop registered with them; libvirt refuses to migrate
# between daemons of one host UUID.
#
# Without libvirtd or virsh the test is skipped (exit 77), except on CI
# (CI=true), where scripts/install-deps installs them: there it fails.

LV= LV_URI= LV_USER= LV_PID=

# _lv_missing WHAT: skip, or fail on CI.
_lv_missing () {
  if [ "${CI:-}" = true ]; then
    echo "Bail out! $1 (CI installs libvirt: scripts/install-deps)"; exit 1
  fi
  skip_all "$1"
}

# libvirt_setup: starts the private daemon and waits until it answers.
libvirt_setup () {
  local bin d
  bin=$(PATH=/usr/sbin:/sbin:$PATH command -v libvirtd) ||
    _lv_missing "libvirtd missing (apt-get install libvirt-daemon libvirt-daemon-driver-qemu)"
  command -v virsh >/dev/null || _lv_missing "virsh missing (apt-get install libvirt-clients)"
  command -v jq >/dev/null || skip_all "jq missing"
  compgen -G '/usr/lib*/*/libvirt/connection-driver/libvirt_driver_qemu.so' >/dev/null ||
    _lv_missing "libvirt's QEMU driver missing (apt-get install libvirt-daemon-driver-qemu)"
  LV=${LV_DIR:-$T/libvirt}
  mkdir -p "$LV"/{home,config/libvirt,run,cache}
  # Two daemons of one test migrate between each other only with host UUIDs
  # of their own (libvirt refuses "the same host").
  [ -z "${LV_HOST_UUID:-}" ] ||
    echo "host_uuid = \"$LV_HOST_UUID\"" >"$LV/config/libvirt/libvirtd.conf"
  cat >"$LV/config/libvirt/qemu.conf" <<'EOF'
stdio_handler = "file"
security_driver = "none"
EOF
  local run_as=()
  if [ "$(id -u)" = 0 ]; then
    LV_USER=nobody
    id -u "$LV_USER" >/dev/null 2>&1 || _lv_missing "no user $LV_USER to run libvirtd as"
    # The daemon's user must reach $LV through $T (mktemp's 0700).
    chmod 0711 "$T"
    chown -R "$LV_USER:" "$LV"
    run_as=(setpriv --reuid="$LV_USER" --regid="$(id -g "$LV_USER")" --clear-groups)
    if ! "${run_as[@]}" test -w "$LV/run"; then
      echo "Bail out! $LV_USER cannot reach $LV: every directory above $T must let others pass (TMPDIR elsewhere)"
      exit 1
    fi
  else
    LV_USER=$(id -un)
  fi
  chmod 0700 "$LV/run"
  at_exit libvirt_stop
  "${run_as[@]}" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
    HOME="$LV/home" XDG_CONFIG_HOME="$LV/config" XDG_RUNTIME_DIR="$LV/run" \
    XDG_CACHE_HOME="$LV/cache" "$bin" >"$LV/daemon.log" 2>&1 &
  LV_PID=$!
  LV_URI="qemu+unix:///session?socket=$LV/run/libvirt/libvirt-sock"
  if ! wait_until 30 eval 'lv_virsh uri >/dev/null 2>&1'; then
    echo "# libvirtd did not answer on $LV_URI within 30 s:"
    sed 's/^/# /' "$LV/daemon.log"
    exit 1
  fi
  echo "# private libvirtd (PID $LV_PID, user $LV_USER): $LV_URI"
}

# lv_virsh ARGS...: virsh on the private daemon (bounded: 60 s).
lv_virsh () { timeout 60 virsh -q -c "$LV_URI" "$@"; }

# lv_own PATH...: the daemon's user (who runs the domains' QEMUs) owns PATH
# and what it holds (nothing to do before libvirt_setup: the 2-disk
# helpers below serve a QMP test too).
lv_own () { [ "$(id -u)" != 0 ] || [ -z "$LV_USER" ] || chown -R "$LV_USER:" "$@"; }

# lv_disk TARGET FILE FORMAT [BACKING-FILE BACKING-FORMAT]: a <disk> of
# domain XML (virtio) on FILE, with one explicit backing layer when given
# (libvirt then does not probe it); without, libvirt reads the chain from
# the image headers.  (An empty <backingStore/> would mean "no backing
# file": QEMU would run the top alone.)
lv_disk () {
  local bs=
  [ $# -ge 5 ] && bs="<backingStore type='file'><format type='$5'/><source file='$4'/><backingStore/></backingStore>"
  echo "<disk type='file' device='disk'><driver name='qemu' type='$3'/><source file='$2'/>$bs<target dev='$1' bus='virtio'/></disk>"
}

# lv_domain_xml NAME DISK-XML...: a guest-less TCG domain (no guest OS: it
# only holds its disks), -nodefaults-like: no USB, no balloon, no display.
# LV_MEM (MiB, default 64), LV_OS (more <os> elements) and LV_DEVICES (more
# devices) change it (lv_start_guest).
lv_domain_xml () {
  local name=$1; shift
  cat <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>${LV_MEM:-64}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>${LV_OS:-}</os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    $*
    ${LV_DEVICES:-}
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}

# lv_start NAME XML: defines the (persistent) domain NAME and starts it.
lv_start () {
  printf '%s\n' "$2" >"$T/$1.domain.xml"
  lv_virsh define "$T/$1.domain.xml" >/dev/null || return 1
  lv_virsh start "$1" >/dev/null
}

# lv_start_2disk NAME DIR: domain NAME on DIR/top.qcow2 over DIR/base.qcow2
# (make_chain: 32M, 0x11 in its first 2M) as vda and DIR/d1.raw (16M) as
# vdb, the files the daemon's user's.
lv_start_2disk () {
  make_chain "$2" 32M 2M
  qemu-img create -q -f raw "$2/d1.raw" 16M
  lv_own "$2"
  lv_start "$1" "$(lv_domain_xml "$1" \
    "$(lv_disk vda "$2/top.qcow2" qcow2 "$2/base.qcow2" qcow2)" \
    "$(lv_disk vdb "$2/d1.raw" raw)")"
}

# lv_start_guest NAME DISK-XML...: the test guest (tests/harness/guest.sh,
# sourced by the test, guest_build done) as libvirt domain NAME: its kernel
# and initramfs, the console on its first serial port (a file), the agent
# on its second, a unix socket in $LV/guest-NAME/ (the daemon's user binds
# it) that guest_attach connects to; waits (GUEST_BOOT_TIMEOUT) for the
# agent.  Then guest_cmd NAME ... as with start_guest.
lv_start_guest () {
  local name=$1 dir=$LV/guest-$1 deadline xml; shift
  mkdir -p "$dir"
  # The daemon's user may not reach GUEST_DIR (a checkout under /root).
  cp "$GUEST_DIR/vmlinuz" "$GUEST_DIR/initramfs.cpio.gz" "$dir/" || return 1
  lv_own "$dir"
  xml=$(LV_MEM=${GUEST_MEM%M} \
    LV_OS="<kernel>$dir/vmlinuz</kernel><initrd>$dir/initramfs.cpio.gz</initrd><cmdline>console=ttyS0 quiet panic=-1</cmdline>" \
    LV_DEVICES="<serial type='file'><source path='$dir/console'/><target port='0'/></serial><serial type='unix'><source mode='bind' path='$dir/agent.sock'/><target port='1'/></serial>" \
    lv_domain_xml "$name" "$@")
  lv_start "$name" "$xml" || return 1
  guest_attach "$name" "$dir/agent.sock" || return 1
  deadline=$(( $(date +%s) + GUEST_BOOT_TIMEOUT ))
  until grep -aq '^@@ready ' "$T/$name.agent"; do
    if [ "$(date +%s)" -ge $deadline ] || [ "$(lv_virsh domstate "$name")" != running ]; then
      echo "# guest $name: no agent within ${GUEST_BOOT_TIMEOUT}s; console:"
      sed 's/^/# /' "$dir/console"
      return 1
    fi
    sleep 0.1
  done
}

# lv_blk DOMAIN TARGET: the source domblklist names for TARGET.
lv_blk () { lv_virsh domblklist "$1" | awk -v t="$2" '$1 == t {print $2}'; }
# lv_xml_sources DOMAIN [--inactive]: every <source file=...> of its XML.
lv_xml_sources () {
  lv_virsh dumpxml "${@:2}" "$1" | sed -n "s/.*<source file='\([^']*\)'.*/\1/p"
}

# ---- the 2-disk move of the libvirt tests --------------------------------
# A holds vda's chain top.qcow2 over base.qcow2 and vdb's d1.raw; the
# snapshot gives them the new tops s1.qcow2 and d1.s1.qcow2 in A
# (lv_new_tops); B gets the same five files (lv_precreate_b), the lower
# layers copied while the mirrors run (lv_copy_lower).

# _lv_size FILE: its virtual size in bytes.
_lv_size () { qemu-img info -U --output=json "$1" | jq -r '."virtual-size"'; }

# lv_new_tops A: A/s1.qcow2 over top.qcow2 and A/d1.s1.qcow2 over d1.raw
# (relative names, formats stated), the daemon's user's.
lv_new_tops () {
  qemu-img create -q -f qcow2 -F qcow2 -b top.qcow2 "$1/s1.qcow2" "$(_lv_size "$1/top.qcow2")" &&
    qemu-img create -q -f qcow2 -F raw -b d1.raw "$1/d1.s1.qcow2" "$(_lv_size "$1/d1.raw")" &&
    lv_own "$1"
}

# lv_precreate_b A B: B's chains as A's, sizes and relative names alike.
lv_precreate_b () {
  local base top raw
  base=$(_lv_size "$1/base.qcow2") top=$(_lv_size "$1/top.qcow2") raw=$(_lv_size "$1/d1.raw")
  qemu-img create -q -f qcow2 "$2/base.qcow2" "$base" &&
    qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$2/top.qcow2" "$top" &&
    qemu-img create -q -f qcow2 -F qcow2 -b top.qcow2 "$2/s1.qcow2" "$top" &&
    qemu-img create -q -f raw "$2/d1.raw" "$raw" &&
    qemu-img create -q -f qcow2 -F raw -b d1.raw "$2/d1.s1.qcow2" "$raw" &&
    lv_own "$2"
}

# lv_copy_lower A B: A's read-only layers into B's (QEMU holds A's locks).
lv_copy_lower () {
  qemu-img convert -U -n -f qcow2 -O qcow2 "$1/base.qcow2" "$2/base.qcow2" &&
    qemu-img convert -U -n -f qcow2 -O qcow2 "$1/top.qcow2" "$2/top.qcow2" &&
    qemu-img convert -U -n -f raw -O raw "$1/d1.raw" "$2/d1.raw"
}

# The files libvirt keeps for a running domain NAME.
lv_domain_pidfile () { echo "$LV/run/libvirt/qemu/run/$1.pid"; }
lv_domain_pid () { cat "$(lv_domain_pidfile "$1")" 2>/dev/null; }
lv_domain_log () { echo "$LV/cache/libvirt/qemu/log/$1.log"; }
# lv_monitor_sock NAME: libvirt's QMP socket of the running domain NAME.
lv_monitor_sock () {
  ls -d "$LV"/config/libvirt/qemu/lib/domain-*-"$1"/monitor.sock 2>/dev/null | head -n 1
}

# lv_procs: the PIDs of every process whose environment names $LV (the
# daemon, the domains' QEMUs, anything they started).
lv_procs () {
  local p
  [ -n "$LV" ] || return 0
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" != $$ ] || continue
    grep -qzF "$LV/" "$p/environ" 2>/dev/null && echo "${p#/proc/}"
  done
}

# lv_dead PID: process PID is gone or a zombie (the daemon is the test's
# child: it stays a zombie until waited for).
lv_dead () {
  local st
  st=$(sed -n 's/^.*) \([A-Z]\).*$/\1/p' "/proc/$1/stat" 2>/dev/null)
  [ -z "$st" ] || [ "$st" = Z ]
}

# libvirt_stop: kills the domains' QEMUs and the daemon, by PID, and waits
# until they are gone (10 s each at most).  Runs at exit; may run before.
libvirt_stop () {
  local f p
  [ -n "$LV" ] || return 0
  # A failed test shows what libvirt and its QEMUs said.
  if [ "${_sm_failed:-0}" -gt 0 ] && [ -z "${_lv_shown:-}" ]; then
    _lv_shown=1
    for f in "$LV"/cache/libvirt/qemu/log/*.log "$LV/daemon.log"; do
      [ -f "$f" ] || continue
      echo "# ---- ${f#"$LV"/} (last 15 lines)"
      tail -n 15 "$f" | cut -c1-300 | sed 's/^/# /'
    done
  fi
  # driver.pid there is the daemon's own; a PID is killed only while its
  # process is still one of this libvirt's (a PID file may be stale).
  for f in "$LV"/run/libvirt/qemu/run/*.pid; do
    [ -f "$f" ] && [ "${f##*/}" != driver.pid ] || continue
    p=$(cat "$f")
    [ -n "$p" ] && grep -qzF "$LV/" "/proc/$p/environ" 2>/dev/null || continue
    kill -9 "$p" 2>/dev/null && wait_until 10 lv_dead "$p"
  done
  if [ -n "$LV_PID" ]; then
    kill "$LV_PID" 2>/dev/null
    wait_until 10 lv_dead "$LV_PID" || kill -9 "$LV_PID" 2>/dev/null
    wait "$LV_PID" 2>/dev/null
  fi
  for p in $(lv_procs); do kill -9 "$p" 2>/dev/null; done
  return 0
}
