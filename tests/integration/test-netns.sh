#!/usr/bin/env bash
# netns.sh, the two "hosts" of the migration tests: A reaches B over the
# veth pair (and only while the link is up), a QEMU started with start_vm_a
# runs inside A under the PID lib.sh kills, and the namespaces are gone
# after the test's exit (checked by a child test run).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"
command -v socat >/dev/null || skip_all "socat missing"

if [ "${1:-}" = --child ]; then
  # Run by the parent: set up, leave a QEMU and a listener running, print
  # the names, and exit without cleaning anything by hand.
  netns_setup >/dev/null
  start_vm_a child || exit 1
  $IN_B socat TCP-LISTEN:5999,reuseaddr,fork EXEC:true &
  echo "$NS_A $NS_B $VM_PID $!"
  exit 0
fi

netns_setup
[ -n "$NS_A" ] || skip_all "no network namespaces here (loopback fallback)"

check "A and B are namespaces" eval 'ip netns list | grep -qw "$NS_A"'
check "B is a namespace" eval 'ip netns list | grep -qw "$NS_B"'
check "A has IP_A" eval 'in_a ip -o addr show | grep -qF " $IP_A/24"'
check "B has IP_B" eval 'in_b ip -o addr show | grep -qF " $IP_B/24"'
check "lo is up in A" eval 'in_a ip -o link show lo | grep -q "UP"'

# $IN_B, not in_b: a background command run through a function would leave
# $! the subshell's PID.
$IN_B socat TCP-LISTEN:5998,bind="$IP_B",reuseaddr,fork SYSTEM:'echo pong' &
_sm_pids+=("$!")
reach () { in_a socat -T 2 - "TCP:$IP_B:5998,connect-timeout=2" </dev/null 2>/dev/null | grep -q pong; }
wait_until 10 eval 'listeners_b 5998 5998 | grep -q .'
check "A reaches B over the veth" reach
check "listeners_b sees B's listener" [ "$(listeners_b 5990 5999)" = 5998 ]
check "the host does not see B's listener" not eval 'ss -Hltn | grep -q ":5998 "'
link_down
check "link down: A does not reach B" not reach
link_up
wait_until 10 eval 'in_a ip -o link show "$NS_DEV" | grep -q "state UP"'
check "link up: A reaches B again" reach

start_vm_a vm || exit 1
check "start_vm_a: QEMU runs in A under VM_PID" \
  eval 'ip netns pids "$NS_A" | grep -qx "$VM_PID"'
check "start_vm_a: its QMP answers" eval 'qmp vm query-status >/dev/null'

out=$(bash "$0" --child)
read -r ca cb cpid cl <<<"$out"
check "child run: set up two namespaces" [ -n "$ca" ]
alive () { kill -0 "$1" 2>/dev/null; }
check "child run's exit: its QEMU is gone" not alive "${cpid:-0}"
check "child run's exit: the process in B is gone" not alive "${cl:-0}"
check "child run's exit: namespace A deleted" not eval 'ip netns list | grep -qw "$ca"'
check "child run's exit: namespace B deleted" not eval 'ip netns list | grep -qw "$cb"'

done_testing
