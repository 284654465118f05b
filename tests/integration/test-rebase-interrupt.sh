#!/usr/bin/env bash
# snapmig rebase interrupted at every journaled step (issue 8): the test hook
# SNAPMIG_TEST_REBASE_SIGNAL=N:SIG raises SIGKILL or SIGINT in snapmig right
# after its Nth step record (1 begin block-stream, 2 end block-stream, 3 begin
# wait, 4 end wait, 5 begin verify, 6 end verify), and a real SIGINT/SIGKILL
# from outside hits it while the job runs.  Every time the disk must run on
# one complete chain (the old or the new one), every guest write must read
# back in the VM and offline, validate --qmp must call it consistent, and
# `snapmig recover` and/or `snapmig rebase` again must finish with the chain
# top <- base and no journal left.  SIGINT cancels the job (the man page
# says so): the disk stays on its old chain unless the job had completed.
. "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"
command -v jq >/dev/null || skip_all "jq missing"

S=$T/state
mkdir -p "$S"
SM=(--state-dir "$S" --qmp "$T/vm.qmp")

# The chain every case starts from, made once: base (0x11 at 0) <- mid
# (0x22 at 1M..6M) <- top (0x33 at 2M, over mid), relative names.  mid holds
# 5 MiB so that a stream at 2 MiB/s runs for a few seconds.
tmpl=$T/tmpl
mkdir -p "$tmpl"
qemu-img create -q -f qcow2 "$tmpl/base.qcow2" 16M
qemu-io -f qcow2 -c "write -P 0x11 0 1M" "$tmpl/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$tmpl/mid.qcow2"
qemu-io -f qcow2 -c "write -P 0x22 1M 5M" "$tmpl/mid.qcow2" >/dev/null
qemu-img create -q -f qcow2 -F qcow2 -b mid.qcow2 "$tmpl/top.qcow2"
qemu-io -f qcow2 -c "write -P 0x33 2M 1M" "$tmpl/top.qcow2" >/dev/null

# setup DIR: a copy of the template chain in DIR and VM "vm" on its top,
# whose guest writes 0x44 at 6M.
setup () {
  local d=$1
  mkdir -p "$d"
  cp "$tmpl"/*.qcow2 "$d/"
  rm -f "$T/vm.qmp"
  start_vm vm -drive "$(drive_opt drive0 "$d/top.qcow2" qcow2)" || return 1
  # The socket file exists a moment before QEMU listens on it.
  local deadline=$(( $(date +%s) + 20 ))
  until qmp vm query-status >/dev/null 2>&1; do
    [ "$(date +%s)" -le $deadline ] || return 1
    sleep 0.02
  done
  EXPECT=("drive0 0x11 0 1M" "drive0 0x22 1M 1M" "drive0 0x22 3M 3M"
          "drive0 0x33 2M 1M")
  gw drive0 0x44 6M 1M
}
quit_vm () {
  qmp vm quit >/dev/null
  wait "$VM_PID" 2>/dev/null
  rm -f "$T/vm.qmp"
}
journals () { find "$S" -name '*.journal' | wc -l; }
chain_is () { [ "$(chain_files drive0 | tr '\n' ' ')" = "$1 " ]; }
# one_complete_chain DIR: the disk runs on the old chain or on the new one.
one_complete_chain () {
  chain_is "$1/top.qcow2 $1/mid.qcow2 $1/base.qcow2" ||
    chain_is "$1/top.qcow2 $1/base.qcow2"
}
offline_read () {
  local e d p o l
  for e in "${EXPECT[@]}"; do
    read -r d p o l <<<"$e"
    if qemu-io -r -f qcow2 -c "read -P $p $o $l" "$1" | grep -q 'verification failed'; then
      echo "# offline: $e"; return 1
    fi
  done
}
validate_ok () { "$SNAPMIG" validate "$1" --qmp "$T/vm.qmp" >"$T/validate.out" 2>&1; }
waiting_in_journal () {
  cat "$S"/vms/*/journal/*.journal 2>/dev/null | grep -q '"kind":"wait".*"phase":"begin"'
}
job_running () { qmp vm query-block-jobs | jq -e 'length > 0' >/dev/null; }
# finish_checks WHAT DIR: after rebase ran to its end.
finish_checks () {
  check "$1: the disk runs on top <- base" chain_is "$2/top.qcow2 $2/base.qcow2"
  check "$1: no journal left" test "$(journals)" = 0
  check "$1: top's header names base.qcow2" \
    test "$(qemu-img info -U --output=json "$2/top.qcow2" | jq -r '."backing-filename"')" = base.qcow2
  check "$1: validate --qmp says consistent" validate_ok "$2"
  quit_vm
  check "$1: offline, every write reads back" offline_read "$2/top.qcow2"
}

n=0
for sig in 9 2; do
  for rec in 1 2 3 4 5 6; do
    n=$((n + 1))
    D=$T/d$n
    what="SIG$([ $sig = 9 ] && echo KILL || echo INT) after record $rec"
    setup "$D" || { not_ok "$what: setup"; continue; }
    # A slow job where the signal comes while it runs (after records 2 and
    # 3): SIGINT must cancel it, recover after SIGKILL finds it running.
    # Elsewhere full speed, to keep the test short.
    bw=()
    if [ $rec = 2 ] || [ $rec = 3 ]; then bw=(--bandwidth 2M); fi
    SNAPMIG_TEST_REBASE_SIGNAL=$rec:$sig timeout 60 "$SNAPMIG" rebase "${SM[@]}" \
      "${bw[@]}" --base "$D/base.qcow2" drive0 >"$T/out" 2>&1
    rc=$?
    check "$what: rebase exits non-zero" test $rc -ne 0
    check "$what: one complete chain" one_complete_chain "$D"
    check "$what: every write reads back in the VM" all_read
    if [ $sig = 2 ]; then
      check "$what: the message says interrupted by SIGINT" \
        grep -q "^snapmig: error: .*interrupted by SIGINT" "$T/out"
      check "$what: no journal left" test "$(journals)" = 0
      check "$what: no job left running" eval '! job_running'
      if [ $rec -le 3 ]; then
        check "$what: the job was cancelled, the old chain stays" \
          chain_is "$D/top.qcow2 $D/mid.qcow2 $D/base.qcow2"
      fi
    else
      check "$what: the journal stays for recover" test "$(journals)" = 1
      timeout 60 "$SNAPMIG" recover "${SM[@]}" >"$T/recover.out" 2>&1
      check "$what: recover exits 0" test $? = 0
      check "$what: after recover, one complete chain" one_complete_chain "$D"
      # The job may end at any moment: recover's word is what it saw.
      if grep -q "still running" "$T/recover.out"; then
        check "$what: recover keeps the journal of a running job" test "$(journals)" = 1
      else
        check "$what: recover removed the journal" test "$(journals)" = 0
      fi
    fi
    timeout 60 "$SNAPMIG" rebase "${SM[@]}" --base "$D/base.qcow2" drive0 >"$T/out" 2>&1
    check "$what: rebase again exits 0" test $? = 0
    finish_checks "$what" "$D"
  done
done

# A signal from outside while the job runs: SIGINT cancels it, SIGKILL
# leaves it running and a second rebase waits for it.
for sig in INT KILL; do
  D=$T/ext$sig
  setup "$D" || { not_ok "external SIG$sig: setup"; continue; }
  bw=2M
  [ $sig = KILL ] && bw=1M    # still running for the checks after the kill
  "$SNAPMIG" rebase "${SM[@]}" --bandwidth $bw --base "$D/base.qcow2" drive0 \
    >"$T/out" 2>&1 &
  pid=$!
  # QEMU serves one QMP client at a time and snapmig holds the monitor:
  # its journal tells when the job runs.
  deadline=$(( $(date +%s) + 20 ))
  until waiting_in_journal || [ "$(date +%s)" -gt $deadline ]; do sleep 0.02; done
  check "external SIG$sig: snapmig waits for the running job" waiting_in_journal
  kill -$sig $pid
  wait $pid
  rc=$?
  if [ $sig = KILL ]; then
    check "external SIGKILL: the job still runs in QEMU" job_running
    timeout 60 "$SNAPMIG" rebase "${SM[@]}" --dry-run --base "$D/base.qcow2" drive0 >"$T/out" 2>&1
    check "external SIGKILL: --dry-run says it would wait for the job" \
      grep -q "still running: wait for it" "$T/out"
  fi
  check "external SIG$sig: rebase exits non-zero" test $rc -ne 0
  check "external SIG$sig: one complete chain" one_complete_chain "$D"
  check "external SIG$sig: every write reads back in the VM" all_read
  if [ $sig = INT ]; then
    check "external SIGINT: the job was cancelled" eval '! job_running'
    check "external SIGINT: the old chain stays" \
      chain_is "$D/top.qcow2 $D/mid.qcow2 $D/base.qcow2"
    check "external SIGINT: no journal left" test "$(journals)" = 0
    check "external SIGINT: the message says cancelled" grep -q "cancelled" "$T/out"
  fi
  timeout 60 "$SNAPMIG" rebase "${SM[@]}" --base "$D/base.qcow2" drive0 >"$T/out" 2>&1
  check "external SIG$sig: rebase again exits 0" test $? = 0
  finish_checks "external SIG$sig" "$D"
done

# QEMU dies while the job of a killed rebase runs: recover works on the
# files; the images hold one complete chain (the old one: the job never
# completed) and every write reads back offline.
D=$T/gone
if setup "$D"; then
  SNAPMIG_TEST_REBASE_SIGNAL=2:9 timeout 60 "$SNAPMIG" rebase "${SM[@]}" \
    --bandwidth 1M --base "$D/base.qcow2" drive0 >"$T/out" 2>&1
  check "QEMU gone: the job was running" job_running
  # A guest flushes what it wants to survive a crash (qcow2 metadata lives
  # in QEMU's cache until then).
  check "QEMU gone: the guest flushes" "$SMQ" --hmp "$T/vm.qmp" 'qemu-io drive0 "flush"'
  kill -9 "$VM_PID"; wait "$VM_PID" 2>/dev/null
  timeout 60 "$SNAPMIG" recover "${SM[@]}" >"$T/recover.out" 2>&1
  check "QEMU gone: recover exits 0" test $? = 0
  check "QEMU gone: recover says QEMU is gone" grep -q "QEMU is gone" "$T/recover.out"
  check "QEMU gone: no journal left" test "$(journals)" = 0
  check "QEMU gone: the images hold the old, complete chain" \
    eval '[ "$(qemu-img info --backing-chain --output=json "$D/top.qcow2" | jq -r ".[].filename" | tr "\n" " ")" = "$D/top.qcow2 $D/mid.qcow2 $D/base.qcow2 " ]'
  check "QEMU gone: offline, every write reads back" offline_read "$D/top.qcow2"
else
  not_ok "QEMU gone: setup"
fi

done_testing
