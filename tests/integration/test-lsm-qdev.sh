#!/usr/bin/env bash
# A disk attached the modern way (-blockdev + -device, no drive name) is
# named by its qdev id: snapmig create/pivot/abort find it by that name
# although its node name changes with the snapshot and the pivot, and the
# guest's data survives.  (-M pc -S: a machine with a PCI bus that never
# runs; QMP, block jobs and HMP qemu-io work as usual.)
. "$(dirname "$0")/lib.sh"

lsm_setup
make_chain "$A" 16M 1M
start_vm vm -M pc -m 64 -S \
  -blockdev "driver=file,filename=$A/top.qcow2,node-name=f0" \
  -blockdev driver=qcow2,file=f0,node-name=n0 \
  -device virtio-blk-pci,drive=n0,id=vda || exit 1

top_file () {
  qmp vm query-block | jq -r '.[] | select(.qdev | startswith("/machine/peripheral/vda"))
    | .inserted.image.filename
    | if startswith("json:") then .[5:] | fromjson | .file.filename else . end'
}
qio () { "$SMQ" --hmp "$T/vm.qmp" "qemu-io -d /machine/peripheral/vda/virtio-backend \"$1\"" >/dev/null; }

check "the guest writes before create" qio "write -P 0x22 1M 1M"
out=$("$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --diskspec vda --name q1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "create of a disk named by its qdev id succeeds" [ $rc -eq 0 ]
check "create names the disk by its qdev id" grep -q 'disk vda' <<<"$out"
check "vda runs on its new top" [ "$(top_file)" = "$A/top.q1.qcow2" ]
check "the guest writes between create and abort" qio "write -P 0x33 2M 1M"
out=$("$SNAPMIG" abort "${SM[@]}" q1 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "abort finds the disk by its qdev id" [ $rc -eq 0 ]
check "abort leaves no file in B" [ -z "$(ls -A "$B")" ]
check "vda stays on the new top" [ "$(top_file)" = "$A/top.q1.qcow2" ]

out=$("$SNAPMIG" create "${SM[@]}" --mirror-domain "$B" --name q2 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "create --mirror-domain of every disk succeeds" [ $rc -eq 0 ]
check "create --mirror-domain takes every disk, named by qdev id" \
  grep -q 'disk vda' <<<"$out"
check "the guest writes between create and pivot" qio "write -P 0x44 3M 1M"
out=$("$SNAPMIG" pivot "${SM[@]}" q2 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "pivot succeeds" [ $rc -eq 0 ]
check "vda runs in B" [ "$(top_file)" = "$B/top.q2.qcow2" ]
check "the base's data reads back" qio "read -P 0x11 0 1M"
check "the write before create reads back" qio "read -P 0x22 1M 1M"
check "the write between create and abort reads back" qio "read -P 0x33 2M 1M"
check "the write between create and pivot reads back" qio "read -P 0x44 3M 1M"

done_testing
