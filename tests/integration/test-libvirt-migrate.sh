#!/usr/bin/env bash
# snapmig migrate --connect A --domain vm --dest-connect B --dest-domain DIR
# (issue 14): libvirt's own migration between two private libvirt daemons
# (libvirt.sh; host UUIDs of their own, since libvirt refuses to migrate to
# "the same host"), the destination's disks pre-created by snapmig.
# A domain on a 2-layer qcow2 chain (vda) and a raw disk (vdb); the guest's
# writes are made through HMP qemu-io (the domain has no guest OS) before
# the migration on A and after it on B.
#   all:  --copy-storage-all: B runs the domain on B/top.qcow2 (one flat
#         image) and B/d1.raw, live and persistent; A no longer has it; the
#         data of both writes reads back offline.
#   inc:  --copy-storage-inc: B gets the whole chain (base.qcow2 copied by
#         snapmig, top.qcow2 by libvirt), relative backing name; --dry-run
#         first names those files and makes none.
#   fail: a missing --dest-domain: a clear error, A still runs the domain,
#         no file made; a destination that refuses (a domain of the same
#         name there): A still runs it, B's pre-created files removed and
#         nothing else; a domain with room for each disk but not both:
#         refused before any file is made; SIGTERM during libvirt's copy: the job aborted,
#         exit status "interrupted", the same state after.
#   usage: the options libvirt's migration needs, and the QMP migration's
#         refused with it (exit 2).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"

# Two daemons: B first, then A (the globals name A from then on).
LV_DIR=$T/lvb LV_HOST_UUID=5e1f0000-0000-4000-8000-00000000000b libvirt_setup
# shellcheck disable=SC2034  # LVB, LVB_PID: read by the at_exit hook
LVB=$LV LVB_URI=$LV_URI LVB_PID=$LV_PID
at_exit 'LV=$LVB LV_PID=$LVB_PID libvirt_stop'
LV_DIR=$T/lva LV_HOST_UUID=5e1f0000-0000-4000-8000-00000000000a libvirt_setup
A=$T/A B=$T/B

vb () { LV_URI=$LVB_URI lv_virsh "$@"; }
# has_vm VIRSH: that daemon knows a domain vm.
has_vm () { "$1" dominfo vm >/dev/null 2>&1; }
# as_lv COMMAND...: as the daemons' user (libvirt's QEMUs run as it: the
# files snapmig creates must be its own); AS_LV is the prefix (setpriv
# execs: the PID of a background "${AS_LV[@]}" CMD is CMD's).
AS_LV=()
[ "$(id -u)" != 0 ] ||
  AS_LV=(setpriv --reuid="$LV_USER" --regid="$(id -g "$LV_USER")" --clear-groups)
as_lv () { "${AS_LV[@]}" "$@"; }
migrate () {
  as_lv "$SNAPMIG" migrate --connect "$LV_URI" --domain vm \
    --dest-connect "$LVB_URI" --dest-host 127.0.0.1 --timeout 60 "$@"
}
# hmp_io VIRSH DISK-ALIAS CMD: a guest's I/O through QEMU's qemu-io.
hmp_io () {
  local out
  out=$("$1" qemu-monitor-command --hmp vm \
    "qemu-io -d /machine/peripheral/$2/virtio-backend \"$3\"" 2>&1)
  if grep -qi 'error\|fail' <<<"$out"; then echo "# $out"; return 1; fi
}
read_fmt () {   # FMT FILE PATTERN OFFSET
  local out
  out=$(qemu-io -U -r -f "$1" -c "read -P $3 $4 1M" "$2" 2>&1)
  grep -q 'read 1048576' <<<"$out" && ! grep -q 'verification failed' <<<"$out"
}

# fresh: domain vm on A (vda: top.qcow2 over base.qcow2, 0x11 in 0-2M;
# vdb: d1.raw, 0x33 in 0-1M), running; B empty; B's daemon without vm.
fresh () {
  lv_virsh destroy vm >/dev/null 2>&1; lv_virsh undefine vm >/dev/null 2>&1
  vb destroy vm >/dev/null 2>&1; vb undefine vm >/dev/null 2>&1
  rm -rf "$A" "$B"; mkdir -p "$A" "$B"
  make_chain "$A" 32M 2M
  qemu-img create -q -f raw "$A/d1.raw" 16M
  qemu-io -f raw -c "write -P 0x33 0 1M" "$A/d1.raw" >/dev/null
  lv_own "$A" "$B"
  lv_start vm "$(lv_domain_xml vm "$(lv_disk vda "$A/top.qcow2" qcow2)" \
    "$(lv_disk vdb "$A/d1.raw" raw)")" &&
    hmp_io lv_virsh virtio-disk0 "write -P 0x22 4M 1M" &&
    hmp_io lv_virsh virtio-disk1 "write -P 0x44 2M 1M"
}

# after_checks MODE: the common checks once B runs the domain.
after_checks () {
  local m=$1
  check "$m: B runs the domain" test "$(vb domstate vm)" = running
  check "$m: B's domblklist names B's files" \
    test "$(vb domblklist vm | awk '$1 ~ /^vd/ {print $2}' | tr '\n' ' ')" = "$B/top.qcow2 $B/d1.raw "
  check "$m: B's persistent XML names B's files" \
    test "$(LV_URI=$LVB_URI lv_xml_sources vm --inactive | grep -c "^$B/")" -ge 2
  check "$m: A no longer has the domain" not has_vm lv_virsh
  check "$m: a write on B after the migration" \
    hmp_io vb virtio-disk0 "write -P 0x55 6M 1M"
  vb destroy vm >/dev/null
  check "$m: vda reads back from B (base, before, after)" \
    eval 'read_fmt qcow2 "$B/top.qcow2" 0x11 0 && read_fmt qcow2 "$B/top.qcow2" 0x22 4M && read_fmt qcow2 "$B/top.qcow2" 0x55 6M'
  check "$m: vdb reads back from B" \
    eval 'read_fmt raw "$B/d1.raw" 0x33 0 && read_fmt raw "$B/d1.raw" 0x44 2M'
}

# ---- all -------------------------------------------------------------------
if fresh; then ok "all: domain on A, guest writes"; else not_ok "all: domain on A, guest writes"; fi
# --bandwidth 2M: libvirt's copy of the disks lasts seconds, so its job
# statistics are read while it runs.
migrate --copy-storage-all --bandwidth 2M --dest-domain "$B" --json \
  >"$T/all.json" 2>"$T/all.err"
rc=$?
check "all: snapmig migrate --connect exits 0" test $rc = 0
[ $rc = 0 ] || sed 's/^/# /' "$T/all.err" "$T/all.json"
check "all: one result event, ok, last" \
  test "$(tail -n 1 "$T/all.json" | jq -r '.event + ":" + (.ok|tostring)')" = result:true
check "all: the JSON lines follow the schema" json_valid migrate "$T/all.json"
check "all: the result names each disk's file in B" \
  test "$(tail -n 1 "$T/all.json" | jq -r '[.disks[] | .disk + "=" + .file] | join(" ")')" = "vda=$B/top.qcow2 vdb=$B/d1.raw"
check "all: progress of the disks' copy from libvirt's job statistics" \
  test "$(jq -s '[.[] | select(.event == "progress" and .what == "disk" and .total > 0)] | length' "$T/all.json")" -gt 0
check "all: B/top.qcow2 is one flat image" \
  test "$(qemu-img info -U --output=json "$B/top.qcow2" | jq -r '."backing-filename" // "none"')" = none
after_checks all

# ---- inc -------------------------------------------------------------------
if fresh; then ok "inc: domain on A, guest writes"; else not_ok "inc: domain on A, guest writes"; fi
migrate --copy-storage-inc --dry-run --dest-domain "$B" --json >"$T/dry.json" 2>&1
rc=$?
check "dry-run: exits 0 and follows the schema" \
  eval 'test $rc = 0 && json_valid migrate "$T/dry.json"'
check "dry-run: the plan has vda's chain and vdb in B" \
  test "$(jq -r 'select(.event == "plan") | [.plan.disks[] | .disk + ":" + ([.layers[].file] | join(","))] | join(" ")' "$T/dry.json")" = "vda:$B/top.qcow2,$B/base.qcow2 vdb:$B/d1.raw"
check "dry-run: nothing made, the domain still on A" \
  eval 'test -z "$(ls -A "$B")" && test "$(lv_blk vm vda)" = "$A/top.qcow2"'
migrate --copy-storage-inc --dest-domain "$B" >"$T/inc.out" 2>&1
rc=$?
check "inc: snapmig migrate --copy-storage-inc exits 0" test $rc = 0
[ $rc = 0 ] || sed 's/^/# /' "$T/inc.out"
check "inc: the text result names the disks" grep -q "vda: $B/top.qcow2" "$T/inc.out"
check "inc: B/top.qcow2 is backed by base.qcow2 (relative)" \
  test "$(qemu-img info -U --output=json "$B/top.qcow2" | jq -r '."backing-filename"')" = base.qcow2
after_checks inc

# ---- fail ------------------------------------------------------------------
if fresh; then ok "fail: domain on A"; else not_ok "fail: domain on A"; fi
migrate --dest-domain "$T/nowhere" >"$T/f1.out" 2>&1
rc=$?
check "fail: a missing --dest-domain fails (exit $rc)" test $rc -ne 0
check "fail: the error names the directory" grep -q "$T/nowhere" "$T/f1.out"
[ $rc -ne 0 ] || sed 's/^/# /' "$T/f1.out"
check "fail: A still runs the domain" test "$(lv_virsh domstate vm)" = running
check "fail: no file made" not test -e "$T/nowhere"
sed "s/^/# /" "$T/f1.out"

# B's daemon has a domain "vm" of its own (another UUID): libvirt refuses
# once snapmig pre-created the files.
lv_domain_xml vm "$(lv_disk vda "$T/other.qcow2" qcow2)" >"$T/other.xml"
vb define "$T/other.xml" >/dev/null
echo mine >"$B/keep.txt"; lv_own "$B"
migrate --dest-domain "$B" --json >"$T/f2.json" 2>"$T/f2.out"
rc=$?
check "fail: a destination that refuses fails (exit $rc)" test $rc -ne 0
check "fail: libvirt's reason is shown" grep -q "virDomainMigrate3" "$T/f2.out"
sed 's/^/# /' "$T/f2.out"
check "fail: the JSON lines end in one failed result, schema-valid" \
  eval 'json_valid migrate "$T/f2.json" && test "$(tail -n 1 "$T/f2.json" | jq -r ".ok")" = false'
check "fail: the result's error is libvirt's, about domain vm" \
  test "$(tail -n 1 "$T/f2.json" | jq -r '.error.code + " " + .error.object')" = "qemu-error vm"
check "fail: A still runs the domain on A's files" \
  eval 'test "$(lv_virsh domstate vm)" = running && test "$(lv_blk vm vda)" = "$A/top.qcow2"'
check "fail: B's pre-created files removed, its own file kept" \
  test "$(ls -A "$B")" = keep.txt

# Room for each disk alone but not for both (root: a tmpfs of 18 MiB; vdb
# needs its 16 MiB, vda some 4): refused before any file is made.
if [ "$(id -u)" = 0 ] && mkdir -p "$T/small" &&
   mount -t tmpfs -o size=18m,mode=0777 tmpfs "$T/small"; then
  at_exit 'umount "$T/small"'
  migrate --dest-domain "$T/small" >"$T/f4.out" 2>&1
  rc=$?
  sed 's/^/# /' "$T/f4.out"
  check "room: exit status of no-space ($rc)" test "$rc" = "$(exit_status_of no-space)"
  check "room: the error says so" grep -q "not enough space in $T/small" "$T/f4.out"
  check "room: nothing made" test -z "$(ls -A "$T/small")"
  check "room: A still runs the domain" test "$(lv_virsh domstate vm)" = running
else
  skip "room: no tmpfs (not root)"
fi

# A signal while libvirt copies (--bandwidth 1M: seconds): the job is
# aborted, libvirt rolls back, the created files go.
vb undefine vm >/dev/null
hmp_io lv_virsh virtio-disk1 "write -P 0x66 4M 8M" ||
  not_ok "int: a guest write of 8M on A"
"${AS_LV[@]}" "$SNAPMIG" migrate --connect "$LV_URI" --domain vm \
  --dest-connect "$LVB_URI" --dest-host 127.0.0.1 --bandwidth 1M \
  --dest-domain "$B" >"$T/f3.out" 2>&1 &
mpid=$!
_sm_pids+=("$mpid")
if wait_until 30 grep -q "^phase: migrate" "$T/f3.out"; then
  kill -TERM "$mpid"
  ok "int: migrate reached libvirt's migration, SIGTERM sent"
else not_ok "int: migrate reached libvirt's migration"; fi
wait_until 60 not _sm_alive "$mpid"
wait "$mpid"; rc=$?
sed 's/^/# /' "$T/f3.out"
check "int: exit status of interrupted ($rc)" test "$rc" = "$(exit_status_of interrupted)"
check "int: A still runs the domain on A's files" \
  eval 'test "$(lv_virsh domstate vm)" = running && test "$(lv_blk vm vdb)" = "$A/d1.raw"'
check "int: B's daemon has no domain vm" not has_vm vb
check "int: B's pre-created files removed, its own file kept" \
  test "$(ls -A "$B")" = keep.txt

# ---- usage -----------------------------------------------------------------
usage_rc () { "$SNAPMIG" migrate "$@" >"$T/u.out" 2>&1; echo $?; }
check "usage: --connect without --domain and --dest-connect" \
  test "$(usage_rc --connect "$LV_URI" --dest-domain "$B")" = 2
check "usage: --connect with --qmp" \
  test "$(usage_rc --connect "$LV_URI" --domain vm --dest-connect "$LVB_URI" \
          --dest-domain "$B" --qmp "$T/x.qmp")" = 2
check "usage: the refusal names the option" grep -q -- "--qmp is not for libvirt" "$T/u.out"
check "usage: --connect with --postcopy" \
  test "$(usage_rc --connect "$LV_URI" --domain vm --dest-connect "$LVB_URI" \
          --dest-domain "$B" --postcopy)" = 2
check "usage: nothing changed: A still runs the domain" \
  test "$(lv_virsh domstate vm)" = running

done_testing
