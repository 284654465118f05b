#!/usr/bin/env bash
# The commands with --connect URI --domain NAME (issue 14) against the
# test's private libvirt (libvirt.sh): a domain on a 2-layer qcow2 chain
# (vda) and a raw disk (vdb) in A.
#   disks:    the chains and formats libvirt states, text and --json
#             (valid against the schema), the same as the files' headers.
#   validate: --connect in place of --qmp: the domain's images count as in
#             use (no leftover reported for them), clean.
#   options:  --qmp with --connect, --connect without --domain: usage (2);
#             a missing domain is named with the URI.
#   status:   nothing moving, the state kept under the domain's UUID.
#   ansible:  snapmig_disks and snapmig_validate with connect + domain.
#   not yet:  create/pivot/abort/recover/rebase say they do not work through
#             libvirt (unsupported, the exit status of the error table).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt.sh"
. "$(dirname "$0")/ansible.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"
command -v jq >/dev/null || skip_all "jq missing"
"$SNAPMIG" disks --connect x --domain y 2>&1 | grep -q "built without libvirt" &&
  _lv_missing "snapmig was built without libvirt (libvirt-dev)"

libvirt_setup
A=$T/A
mkdir -p "$A" "$T/state"
lv_start_2disk vm "$A" || exit 1
VIA=(--connect "$LV_URI" --domain vm --timeout 30)

# ---- disks ---------------------------------------------------------------
out=$(timeout 60 "$SNAPMIG" disks "${VIA[@]}" 2>&1); rc=$?
echo "$out" | sed 's/^/# /'
check "disks --connect: succeeds" [ $rc -eq 0 ]
check "disks --connect: vda's active image is A/top.qcow2" \
  grep -qF "active image:  $A/top.qcow2" <<<"$out"
check "disks --connect: vda's chain names base.qcow2 (qcow2)" \
  grep -qF "$A/base.qcow2 (qcow2)" <<<"$out"
check "disks --connect: vdb is raw d1.raw" grep -qF "$A/d1.raw (raw)" <<<"$out"
check "disks --connect: no warning (libvirt's chain is the headers')" \
  not grep -q "warning:" <<<"$out"
timeout 60 "$SNAPMIG" disks "${VIA[@]}" --json >"$T/disks.json"
check "disks --connect --json: valid against the schema" json_valid disks "$T/disks.json"
check "disks --connect --json: vda's virtual size is the image's (32M)" \
  eval '[ "$(jq -r ".disks[] | select(.device == \"vda\") | .\"virtual-size\"" "$T/disks.json")" = 33554432 ]'
check "disks --connect --json: vda's chain, top first" \
  eval '[ "$(jq -r ".disks[] | select(.device == \"vda\") | [.chain[].file] | join(\" \")" "$T/disks.json")" = "$A/top.qcow2 $A/base.qcow2" ]'

# ---- validate --------------------------------------------------------------
timeout 60 "$SNAPMIG" validate "$A" "${VIA[@]}" --state-dir "$T/state" --json \
  >"$T/val.json" 2>"$T/val.err"; rc=$?
sed 's/^/# /' "$T/val.err"
check "validate --connect: clean (exit 0)" [ $rc -eq 0 ]
check "validate --connect --json: valid against the schema" json_valid validate "$T/val.json"
check "validate --connect: no finding on the domain's images" \
  eval '[ "$(jq "[.findings[]? | select(.severity == \"problem\")] | length" "$T/val.json")" = 0 ]'
# The same tree without the VM: its images are then leftovers (unused).
timeout 60 "$SNAPMIG" validate "$A" --state-dir "$T/state" --json >"$T/val0.json" 2>/dev/null
check "validate without --connect differs (the images in use came from libvirt)" \
  not cmp -s <(jq -S .findings "$T/val.json") <(jq -S .findings "$T/val0.json")

# ---- status ------------------------------------------------------------------
out=$(timeout 60 "$SNAPMIG" status "${VIA[@]}" --state-dir "$T/state" 2>&1); rc=$?
echo "$out" | sed 's/^/# /'
check "status --connect: nothing is moving (exit 0)" \
  eval '[ $rc -eq 0 ] && grep -q "nothing is moving" <<<"$out"'
uuid=$(lv_virsh domuuid vm | tr -d ' ')
check "status --connect: the state is kept under the domain's UUID" \
  eval 'ls "$T/state/vms" | grep -q "^libvirt:$uuid"'
timeout 60 "$SNAPMIG" status --connect "$LV_URI" --domain "$uuid" --state-dir "$T/state" \
  --json >"$T/status.json" 2>/dev/null
check "status --connect --domain UUID --json: valid against the schema" json_valid status "$T/status.json"
check "status by name and by UUID: one state directory" [ "$(ls "$T/state/vms" | wc -l)" = 1 ]

# ---- options -----------------------------------------------------------------
"$SNAPMIG" disks --qmp "$T/x.qmp" "${VIA[@]}" >/dev/null 2>"$T/err"; rc=$?
check "--qmp with --connect: usage error (2)" [ $rc -eq 2 ]
check "--qmp with --connect: says they exclude each other" grep -q "mutually exclusive" "$T/err"
"$SNAPMIG" disks --connect "$LV_URI" >/dev/null 2>"$T/err"; rc=$?
check "--connect without --domain: usage error (2)" [ $rc -eq 2 ]
check "--connect without --domain: says --domain is needed" grep -q "needs --domain" "$T/err"
timeout 60 "$SNAPMIG" disks --connect "$LV_URI" --domain nosuch >/dev/null 2>"$T/err"; rc=$?
sed 's/^/# /' "$T/err"
check "a missing domain: fails" [ $rc -ne 0 ]
check "a missing domain: named with the URI" grep -q "nosuch" "$T/err"

# ---- not wired yet -------------------------------------------------------------
for c in create pivot abort recover rebase; do
  args=(); [ $c = create ] && args=(--mirror-domain "$T/B")
  [ $c = pivot ] || [ $c = abort ] && args=(s1)
  [ $c = rebase ] && args=(vda)
  "$SNAPMIG" $c "${VIA[@]}" --state-dir "$T/state" "${args[@]}" >/dev/null 2>"$T/err"; rc=$?
  check "$c --connect: refused (unsupported, 7), says it does not work through libvirt yet" \
    eval '[ $rc -eq 7 ] && grep -q "does not work through libvirt yet" "$T/err"' 
done
# ---- Ansible: snapmig_disks and snapmig_validate with connect + domain ----------
if command -v ansible-playbook >/dev/null && command -v ansible-galaxy >/dev/null; then
  ansible_env
  mkdir -p "$T/B"
  check "ansible: the collection builds and installs" ansible_install
  cat >"$T/play.yml" <<'PLAY'
- hosts: localhost
  gather_facts: false
  tasks:
    - name: disks
      snapmig.storage.snapmig_disks:
        connect: "{{ uri }}"
        domain: vm
        snapmig_bin: "{{ snapmig_bin }}"
    - name: validate
      snapmig.storage.snapmig_validate:
        storage_domains: ["{{ dir }}"]
        connect: "{{ uri }}"
        domain: vm
        state_dir: "{{ state_dir }}"
        snapmig_bin: "{{ snapmig_bin }}"
    - name: move
      ignore_errors: true
      snapmig.storage.snapmig_move:
        connect: "{{ uri }}"
        domain: vm
        dest_domain: "{{ dest }}"
        state_dir: "{{ state_dir }}"
        snapmig_bin: "{{ snapmig_bin }}"
PLAY
  ans ansible-playbook -i localhost, -c local -e uri="$LV_URI" -e dir="$A" -e dest="$T/B" \
    -e state_dir="$T/state" -e snapmig_bin="$SNAPMIG" "$T/play.yml" \
    >"$T/play.json" 2>"$T/play.err"
  rc=$?
  sed 's/^/# stderr: /' "$T/play.err"
  task () { jq -c --arg t "$1" '[.plays[0].tasks[] | select(.task.name == $t) | .hosts.localhost][0]' "$T/play.json"; }
  check "ansible: the playbook succeeds" [ $rc -eq 0 ]
  check "ansible: snapmig_disks with connect/domain gives vda's chain as facts" \
    eval '[ "$(task disks | jq -r ".ansible_facts.snapmig_disks[] | select(.device == \"vda\") | [.chain[].file] | join(\" \")")" = "$A/top.qcow2 $A/base.qcow2" ]'
  check "ansible: snapmig_validate with connect/domain is clean, unchanged" \
    eval '[ "$(task validate | jq -c "[.clean, .changed]")" = "[true,false]" ]'
  echo "# move: $(task move | head -c 600)"
  check "ansible: snapmig_move with connect/domain fails with snapmig's unsupported, for now" \
    eval '[ "$(task move | jq -c "[.failed, .code]")" = "[true,\"unsupported\"]" ]'
  check "ansible: the domain still runs on A's files after the playbook" [ "$(lv_blk vm vda)" = "$A/top.qcow2" ]
else
  skip "ansible-playbook missing (apt-get install ansible-core)"
fi

check "the domain still runs on its own files" [ "$(lv_blk vm vda)" = "$A/top.qcow2" ]
check "no \"tainted\" line in the domain's log" not grep -q tainted "$(lv_domain_log vm)"

done_testing
