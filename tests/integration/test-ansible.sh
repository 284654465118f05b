#!/usr/bin/env bash
# The Ansible collection snapmig.storage (ansible/) against a real QEMU:
# built and installed into the test's directory with ansible-galaxy, then
# a playbook run against localhost (connection local) gathers the VM's
# disks, moves them from domain A to domain B and validates B.
#   drive0: top.qcow2 over base.qcow2 (a 2-layer chain), drive1: raw.
# Check mode prints the plan and changes nothing; a missing destination
# fails the task with snapmig's code; the move reports changed=true, the
# disks then run on B and every guest write reads back, live and offline;
# a second run reports changed=false and touches no file.  Then: another
# move in flight fails with code busy; a move left in flight under the
# module's snapshot name is pivoted by the next run (check mode: pivot's
# plan); disks: [drive1] moves one disk, the next run the rest; validate
# fails on a domain that misses a chain.  connect + domain reach snapmig as
# --connect URI --domain NAME.  Every Ansible directory (home, temp,
# config, collections) is in the test's directory; the modules' documented
# options must match their argument specs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ansible.sh"

command -v ansible-playbook >/dev/null || skip_all "ansible-playbook missing (apt-get install ansible-core)"
command -v ansible-galaxy >/dev/null || skip_all "ansible-galaxy missing (apt-get install ansible-core)"
lsm_setup

ansible_env

out=$(ans ansible-galaxy collection build "$SM_TOP/ansible" --output-path "$T" 2>&1)
check "ansible-galaxy builds the collection" [ -f "$T/snapmig-storage-0.1.0.tar.gz" ]
echo "$out" | sed 's/^/# /'
out=$(ans ansible-galaxy collection install --offline -p "$T/collections" \
        "$T/snapmig-storage-0.1.0.tar.gz" 2>&1)
check "ansible-galaxy installs it into the test's directory" \
  [ -f "$T/collections/ansible_collections/snapmig/storage/plugins/modules/snapmig_move.py" ]
echo "$out" | sed 's/^/# /'
for m in snapmig_disks snapmig_move snapmig_validate; do
  doc=$(ans ansible-doc -t module "snapmig.storage.$m" 2>&1)
  check "ansible-doc shows $m's documentation and examples" \
    grep -q 'EXAMPLES' <<<"$doc"
done
check "the built collection leaves out the tests' helpers" \
  [ ! -e "$T/collections/ansible_collections/snapmig/storage/tests" ]
# The Python that runs Ansible (Debian's, not one first on PATH).
read -r -a ans_py < <(sed -n '1s/^#! *//p' "$(command -v ansible-doc)")
out=$(ans PYTHONPATH="$T/collections" "${ans_py[@]}" "$SM_TOP/ansible/tests/doc-argspec.py" \
        --playbooks "$SM_TOP/ansible/README.md" snapmig_disks snapmig_move snapmig_validate 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "every module documents exactly the options it takes, and its EXAMPLES and ansible/README.md's playbook give only those" \
  [ $rc -eq 0 ]

start_2disk_vm 0x21 || exit 1
EXPECT=("drive0 0x11 0 2M" "drive1 0x21 0 2M")
check "guest writes to drive0 before the playbook" gw drive0 0x12 4M 1M
check "guest writes to drive1 before the playbook" gw drive1 0x22 2M 1M

cat >"$T/play.yml" <<'EOF'
- hosts: localhost
  gather_facts: false
  tasks:
    - name: disks
      snapmig.storage.snapmig_disks:
        qmp: "{{ qmp }}"
        snapmig_bin: "{{ snapmig_bin }}"
    - name: move
      snapmig.storage.snapmig_move:
        qmp: "{{ qmp }}"
        dest_domain: "{{ dest }}"
        disks: "{{ only | default(omit) }}"
        delete_source: "{{ delete_source | default(false) }}"
        bandwidth: "{{ bandwidth | default(omit) }}"
        state_dir: "{{ state_dir }}"
        snapmig_bin: "{{ snapmig_bin }}"
        timeout: 120
    - name: validate
      when: not ansible_check_mode    # B holds no chain before the move
      snapmig.storage.snapmig_validate:
        storage_domains: ["{{ dest }}"]
        qmp: "{{ qmp }}"
        state_dir: "{{ state_dir }}"
        snapmig_bin: "{{ snapmig_bin }}"
EOF
# play RUN DEST [ANSIBLE-PLAYBOOK-OPTION...]: runs play.yml moving to DEST;
# its JSON output in $T/RUN.json, its exit status in $T/RUN.rc.
play () {
  local run=$1 dest=$2; shift 2
  ans ansible-playbook -i localhost, -c local "$@" \
    -e qmp="$T/vm.qmp" -e state_dir="$T/state" -e dest="$dest" \
    -e snapmig_bin="$SNAPMIG" "$T/play.yml" >"$T/$run.json" 2>"$T/$run.err"
  echo $? >"$T/$run.rc"
  sed 's/^/# stderr: /' "$T/$run.err"
  jq -c '.plays[].tasks[] | .hosts.localhost | select(.failed) | {msg, code}' \
    "$T/$run.json" | sed 's/^/# failed: /'
}
# move_run RUN DEST [OPTION...]: play RUN, then res is the move task's
# result (printed, shortened).
move_run () {
  play "$@"
  res=$(task "$1" move)
  echo "# $1: move: ${res:0:600}"
}
# logged NAME COMMAND...: runs snapmig COMMAND, prints its output (kept in
# $T/NAME.out); its exit status.
logged () {
  local name=$1 rc; shift
  "$SNAPMIG" "$@" >"$T/$name.out" 2>&1
  rc=$?
  sed 's/^/# /' "$T/$name.out"
  return $rc
}
# task RUN NAME: the task's result on localhost in run RUN.
task () {
  jq -c --arg t "$2" '[.plays[0].tasks[] | select(.task.name == $t) | .hosts.localhost][0]' \
    "$T/$1.json"
}
# files: every file of the storage domains ($T/A ... $T/E, those there are)
# and the state directory with its size and mtime.
files () { find "$T"/[A-E] "$T/state" -printf '%p %s %T@\n' | sort; }
# unchanged BEFORE: files prints BEFORE again; names every line that differs.
unchanged () {
  local now
  now=$(files)
  [ "$1" = "$now" ] && return 0
  diff <(echo "$1") <(echo "$now") | sed 's/^/# /'
  return 1
}
# on_b: every writable disk's whole chain is in B, as snapmig disks says.
on_b () {
  "$SNAPMIG" disks --qmp "$T/vm.qmp" --json |
    jq -e --arg b "$B/" '[.disks[] | .chain[].file | startswith($b)] | all and length > 0' >/dev/null
}

# Check mode: the plan, nothing changed.
before=$(files)
move_run check "$B" --check -e bandwidth=10M
check "check mode: the playbook succeeds" [ "$(cat "$T/check.rc")" = 0 ]
check "check mode: the move reports changed=true (as it would be)" \
  [ "$(jq .changed <<<"$res")" = true ]
check "check mode: the plan pre-creates drive0's chain in B" \
  grep -qF "create file $B/base.qcow2" <<<"$(jq -r .plan <<<"$res")"
check "check mode: the plan pre-creates drive1 in B" \
  grep -qF "create file $B/d1.raw" <<<"$(jq -r .plan <<<"$res")"
check "check mode: the plan's mirrors run at the bandwidth given (10M)" \
  grep -qF '"speed":10485760' <<<"$(jq -r .plan <<<"$res")"
check "check mode: it would move drive0 and drive1" \
  [ "$(jq -c '.moved | sort' <<<"$res")" = '["drive0","drive1"]' ]
check "check mode: no file in A, B or the state directory changed" \
  unchanged "$before"
check "check mode: drive0 still runs on A" chain_in_dir "$A" drive0 "" 2
check "check mode: drive1 still runs on A" chain_in_dir "$A" drive1

# A missing destination: the task fails with snapmig's code.
move_run missing "$T/missing"
check "a missing destination fails the playbook" [ "$(cat "$T/missing.rc")" != 0 ]
check "the move task failed" [ "$(jq .failed <<<"$res")" = true ]
check "the task has snapmig's code not-found" [ "$(jq -r .code <<<"$res")" = not-found ]
check "its message says which directory to create" \
  grep -qF "mkdir -p $T/missing" <<<"$(jq -r .msg <<<"$res")"
check "after the failure drive0 still runs on A" chain_in_dir "$A" drive0 "" 2
check "after the failure drive1 still runs on A" chain_in_dir "$A" drive1

# The move.
move_run move "$B"
check "the playbook succeeds" [ "$(cat "$T/move.rc")" = 0 ]
check "snapmig_disks sets the fact snapmig_disks with drive0's 2 layers" \
  [ "$(task move disks | jq '.ansible_facts.snapmig_disks[] | select(.device == "drive0") | .chain | length')" = 2 ]
check "the move reports changed=true" [ "$(jq .changed <<<"$res")" = true ]
check "the move moved drive0 and drive1" \
  [ "$(jq -c '.moved | sort' <<<"$res")" = '["drive0","drive1"]' ]
check "snapmig disks: every disk's whole chain is in B" on_b
check "drive0's chain in B has its 3 layers" chain_in_dir "$B" drive0 "" 3
check "drive1's chain in B has its 2 layers" chain_in_dir "$B" drive1 "" 2
res=$(task move validate)
check "snapmig_validate reports B clean" [ "$(jq .clean <<<"$res")" = true ]
check "snapmig_validate returns the report of B's images" \
  [ "$(jq '.report.summary.images' <<<"$res")" -ge 5 ]
check "guest writes to drive0 after the move" gw drive0 0x13 5M 1M
check "guest writes to drive1 after the move" gw drive1 0x23 3M 1M
check "every write reads back in the VM" all_read

# A second run: nothing to do, nothing touched.
before=$(files)
move_run again "$B"
check "the second run succeeds" [ "$(cat "$T/again.rc")" = 0 ]
check "the second run's move succeeds with changed=false" \
  [ "$(jq -c '[.changed, .failed // false]' <<<"$res")" = '[false,false]' ]
check "the second run finds both disks already in B" \
  [ "$(jq -c '.already | sort' <<<"$res")" = '["drive0","drive1"]' ]
check "the second run touches no file (sizes and mtimes)" unchanged "$before"

# libvirt's options reach snapmig as --connect URI --domain NAME.
cat >"$T/connect.yml" <<'EOF'
- hosts: localhost
  gather_facts: false
  tasks:
    - name: connect
      snapmig.storage.snapmig_disks:
        connect: "test:///default"
        domain: nosuchdomain
        snapmig_bin: "{{ snapmig_bin }}"
      ignore_errors: true
    - name: not-json
      snapmig.storage.snapmig_disks:
        qmp: "{{ qmp }}"
        snapmig_bin: /bin/false
EOF
ans ansible-playbook -i localhost, -c local -e snapmig_bin="$SNAPMIG" \
  -e qmp="$T/vm.qmp" "$T/connect.yml" >"$T/connect.json" 2>&1
res=$(task connect connect)
check "connect + domain run snapmig disks --connect URI --domain NAME" \
  [ "$(jq -c '.cmd[3:7]' <<<"$res")" = '["--connect","test:///default","--domain","nosuchdomain"]' ]
check "... and fail with a snapmig error code there is no such domain or libvirt" \
  [ -n "$(jq -r '.code // empty' <<<"$res")" ]
res=$(task connect not-json)
echo "# not-json: ${res:0:400}"
check "a snapmig_bin that prints no JSON fails with code failed" \
  [ "$(jq -r .code <<<"$res")" = failed ]
check "... saying so" grep -qF "printed no JSON document" <<<"$(jq -r .msg <<<"$res")"

# Another move in flight (snapshot 'other', to D): the task fails with
# code busy and names it; abort undoes it.
D=$T/D C=$T/C
mkdir -p "$C" "$D"
check "create --mirror-domain D by hand (snapshot other)" \
  logged create-d create "${SM[@]}" --mirror --mirror-domain "$D" --name other
move_run busy "$C"
check "a move to C while 'other' is in flight fails with code busy" \
  [ "$(jq -r .code <<<"$res")" = busy ]
check "... and says to pivot or abort 'other'" \
  grep -qF "snapmig abort other" <<<"$(jq -r .msg <<<"$res")"
check "C is left empty" [ -z "$(ls -A "$C")" ]
check "abort other" \
  logged abort abort "${SM[@]}" other

# A run interrupted between create and pivot, made by hand: create under
# the module's snapshot name to C.  The next run pivots that move.
check "create --mirror-domain C by hand (a run interrupted before pivot)" \
  logged create-c create "${SM[@]}" --mirror --mirror-domain "$C" --name ansible-move
check "guest writes to drive0 between that create and the run" gw drive0 0x14 6M 1M
move_run resume-check "$C" --check
check "check mode on a move in flight: the playbook succeeds" \
  [ "$(cat "$T/resume-check.rc")" = 0 ]
check "... it would pivot it (resumed=true, changed=true)" \
  [ "$(jq -c '[.resumed, .changed]' <<<"$res")" = '[true,true]' ]
check "... and returns pivot's plan" grep -q . <<<"$(jq -r '.plan // empty' <<<"$res")"
# (the mirrors and copies of the move in flight write on: no mtime check)
check "... and leaves drive0 on its top in B" chain_in_dir "$B" drive0 "" 1
check "... and leaves the move in flight" \
  [ "$("$SNAPMIG" status "${SM[@]}" --json | jq -c '[.moving, .snapshot]')" = '[true,"ansible-move"]' ]
move_run resume "$C"
check "the run after the interrupted one succeeds" [ "$(cat "$T/resume.rc")" = 0 ]
check "it pivots the move in flight (resumed=true, changed=true)" \
  [ "$(jq -c '[.resumed, .changed]' <<<"$res")" = '[true,true]' ]
check "drive0's chain is in C, its 4 layers" chain_in_dir "$C" drive0 "" 4
check "drive1's chain is in C, its 3 layers" chain_in_dir "$C" drive1 "" 3
check "snapmig_validate reports C clean" [ "$(task resume validate | jq .clean)" = true ]
check "guest writes to drive1 after the resumed move" gw drive1 0x24 4M 1M
check "every write reads back in the VM after the resumed move" all_read

# Part of the VM: drive1 alone to E, then the rest (drive1 already there).
E=$T/E
mkdir -p "$E"
move_run part "$E" -e '{"only": ["drive1"]}'
check "disks: [drive1] moves drive1 alone" [ "$(jq -c .moved <<<"$res")" = '["drive1"]' ]
check "drive1's chain is in E" chain_in_dir "$E" drive1 "" 4
check "drive0's chain stays in C" chain_in_dir "$C" drive0 "" 4
res=$(task part validate)
check "snapmig_validate fails the task on E while drive0 is still in C" \
  [ "$(jq .failed <<<"$res")" = true ]
check "... naming drive0's layer in C" grep -qF "disk drive0" <<<"$(jq -r .msg <<<"$res")"
check "... and returns the report" [ "$(jq .report.summary.clean <<<"$res")" = false ]
move_run rest "$E" -e delete_source=true
check "then the whole VM moves drive0 alone, drive1 being there" \
  [ "$(jq -c '[.moved, .already, .changed]' <<<"$res")" = '[["drive0"],["drive1"],true]' ]
check "drive0's chain is in E" chain_in_dir "$E" drive0 "" 5
check "drive1's chain is still the one in E" chain_in_dir "$E" drive1 "" 4
# removed_from DIR: the move's removed files ($res) are some, all in DIR, all gone.
removed_from () {
  local f n=0
  while IFS= read -r f; do
    n=$((n + 1))
    [ "${f#"$1"/}" != "$f" ] || { echo "# removed $f, not a file in $1"; return 1; }
    [ ! -e "$f" ] || { echo "# $f is still there"; return 1; }
  done < <(jq -r '.removed[]' <<<"$res")
  [ $n -gt 0 ] || { echo "# nothing removed"; return 1; }
}
check "delete_source: drive0's old files in C are removed and returned" removed_from "$C"
check "... and drive1's chain in C, not moved by this run, is kept" \
  [ -f "$C/d1.raw" ]
check "guest writes to drive0 after the moves to E" gw drive0 0x15 7M 1M
check "every write reads back in the VM on E" all_read

# Offline, on E's files.
top0=$(top_file drive0) top1=$(top_file drive1)
qmp vm quit >/dev/null
wait_gone "$VM_PID"
offline=0
for e in "${EXPECT[@]}"; do
  read -r d p o l <<<"$e"
  case $d in drive0) img=$top0 ;; drive1) img=$top1 ;; esac
  r=$(qemu-io -r -f qcow2 -c "read -P $p $o $l" "$img" 2>&1)
  if grep -qiE 'fail|error' <<<"$r"; then echo "# offline $e on $img: $r"; offline=1; fi
done
check "every write reads back offline from E's files" [ $offline -eq 0 ]

done_testing
