# Two "hosts" for the cross-host migration tests: network namespaces A and B
# joined by a veth pair.  Sourced after lib.sh (it uses $T, _sm_pids,
# at_exit, start_vm):
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/netns.sh"
#   netns_setup                  # NS_A NS_B IP_A IP_B IN_A IN_B
#   start_vm_a vm -drive ...     # the source QEMU, inside A
#   in_a "$SNAPMIG" migrate ... --dest-cmd "$IN_B $SNAPMIG" --dest-host "$IP_B"
#
# Names are unique per test run (smA-PID-SUFFIX, SUFFIX from $T), and so is
# the /24 the veth pair gets (IP_A = 10.X.Y.1 in A, IP_B = 10.X.Y.2 in B;
# each namespace has its own addresses, the per-run subnet only keeps two
# runs' logs apart).  Namespaces are made only as root and where `ip netns
# add` works; otherwise netns_setup falls back to loopback (NS_A and NS_B
# empty, both IPs 127.0.0.1, IN_A/IN_B empty, link_down refused) and says
# so in a TAP comment.  SM_NO_NETNS=1 asks for the fallback.
#
# Teardown on every exit path (lib.sh's at_exit, after lib.sh killed its
# own PIDs): every process still inside a namespace (`ip netns pids`: the
# destination QEMU that snapmig started, for one) is killed by PID, then
# the namespace is deleted, which removes the veth pair.

NS_A= NS_B= IP_A=127.0.0.1 IP_B=127.0.0.1 IN_A= IN_B=
NS_DEV=sm0                     # the veth's name in each namespace

# netns_setup: makes the two namespaces and the link, or the fallback.
netns_setup () {
  local sfx=${T##*.} x y
  x=$(( 100 + $$ % 100 )) y=$(( (($$ / 100) + RANDOM) % 250 + 1 ))
  if [ -n "${SM_NO_NETNS:-}" ]; then
    _netns_fallback "SM_NO_NETNS is set"; return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    _netns_fallback "not root"; return 0
  fi
  NS_A=smA-$$-$sfx NS_B=smB-$$-$sfx
  if ! ip netns add "$NS_A" 2>"$T/netns.err"; then
    NS_A= NS_B=
    _netns_fallback "ip netns add: $(head -n 1 "$T/netns.err")"; return 0
  fi
  at_exit "_netns_teardown $NS_A"
  if ! ip netns add "$NS_B" 2>"$T/netns.err"; then
    NS_B=
    _netns_fallback "ip netns add: $(head -n 1 "$T/netns.err")"; return 0
  fi
  at_exit "_netns_teardown $NS_B"
  if ! { ip link add "$NS_DEV" netns "$NS_A" type veth peer name "$NS_DEV" netns "$NS_B" &&
         ip -n "$NS_A" addr add "10.$x.$y.1/24" dev "$NS_DEV" &&
         ip -n "$NS_B" addr add "10.$x.$y.2/24" dev "$NS_DEV" &&
         ip -n "$NS_A" link set lo up && ip -n "$NS_B" link set lo up &&
         ip -n "$NS_A" link set "$NS_DEV" up && ip -n "$NS_B" link set "$NS_DEV" up
       } 2>"$T/netns.err"; then
    _netns_fallback "veth pair: $(head -n 1 "$T/netns.err")"; return 0
  fi
  IP_A=10.$x.$y.1 IP_B=10.$x.$y.2
  IN_A="ip netns exec $NS_A" IN_B="ip netns exec $NS_B"
  echo "# network namespaces $NS_A ($IP_A) and $NS_B ($IP_B)"
}

# _netns_fallback WHY: loopback instead (namespaces made so far stay
# registered for teardown).
_netns_fallback () {
  NS_A= NS_B= IP_A=127.0.0.1 IP_B=127.0.0.1 IN_A= IN_B=
  echo "# no network namespaces: loopback ($1)"
}

# _netns_teardown NS: kills every process in NS by PID, waits (5 s at most)
# until they are gone, deletes NS.
_netns_teardown () {
  local p pids deadline=$(( $(date +%s) + 5 ))
  pids=$(ip netns pids "$1" 2>/dev/null)
  for p in $pids; do kill -9 "$p" 2>/dev/null; done
  for p in $pids; do
    wait "$p" 2>/dev/null   # a child of the test's shell: reaped, silently
    while kill -0 "$p" 2>/dev/null && [ "$(date +%s)" -le $deadline ]; do sleep 0.05; done
  done
  ip netns delete "$1" 2>/dev/null
}

# in_a CMD...: runs CMD in namespace A (here, in the fallback); in_b: in B.
in_a () { if [ -n "$NS_A" ]; then ip netns exec "$NS_A" "$@"; else "$@"; fi; }
in_b () { if [ -n "$NS_B" ]; then ip netns exec "$NS_B" "$@"; else "$@"; fi; }

# link_down / link_up: the veth's end in A down or up (the link between the
# hosts breaks or comes back).  Fails in the loopback fallback.
link_down () { [ -n "$NS_A" ] && ip -n "$NS_A" link set "$NS_DEV" down; }
link_up () { [ -n "$NS_A" ] && ip -n "$NS_A" link set "$NS_DEV" up; }

# start_vm_a NAME [QEMU-ARG]...: lib.sh's start_vm with QEMU running in
# namespace A (ip netns exec execs it: VM_PID is QEMU's PID, killed by PID
# on exit like every start_vm QEMU).
start_vm_a () { _SM_QEMU_IN=$IN_A start_vm "$@"; }

# start_guest_a NAME [--disk ID FILE FORMAT]... [QEMU-ARG]...: the real
# guest of tests/harness/guest.sh (sourced first), its QEMU in namespace A
# (GUEST_PID is QEMU's PID, killed by PID on exit).
start_guest_a () { _SM_QEMU_IN=$IN_A start_guest "$@"; }

# ns_of HOST: the namespace of "host" A or B (empty in the fallback).
ns_of () { if [ "$1" = A ]; then echo "$NS_A"; else echo "$NS_B"; fi; }
# ip_of HOST: the veth address of host A or B.
ip_of () { if [ "$1" = A ]; then echo "$IP_A"; else echo "$IP_B"; fi; }
# in_host HOST CMD...: runs CMD in host A's or B's namespace (in_a, in_b).
in_host () { if [ "$1" = A ]; then shift; in_a "$@"; else shift; in_b "$@"; fi; }

# listeners_b FIRST LAST: the TCP ports in FIRST..LAST something listens on
# in namespace B (here in the fallback), one per line.
listeners_b () {
  in_b ss -Hltn 2>/dev/null |
    awk -v lo="$1" -v hi="$2" '{ n = split($4, a, ":"); p = a[n] + 0
                                 if (p >= lo && p <= hi) print p }'
}
