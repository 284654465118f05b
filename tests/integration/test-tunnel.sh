#!/usr/bin/env bash
# The `snapmig tunnel` process of `migrate --tunnel` (issue 12), driven
# through its control channel (two FIFOs) as migrate drives it, with socat
# echo servers as the endpoints on both "hosts" (network namespaces A and B,
# which share the file system): relay mode through the local snapmig and
# through `ip netns exec B snapmig`, ssh mode against a real sshd in B.
# Each: a forward and a reverse, 100 MiB checked by sha256 through each (both
# ways: an echo), several streams at once; then the transport killed (it
# comes back, the same local path, a new connection works), the transport
# kept dead past the link timeout (exit 6, disconnected, with a message) and end of file on
# the control channel (its directory removed, no process left).
# run-tests: beside (guest-less, its own namespaces and directories)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/netns.sh"
source "$(dirname "$0")/sshd.sh"

command -v socat >/dev/null || skip_all "socat missing"
command -v sha256sum >/dev/null || skip_all "sha256sum missing"
netns_setup

mkdir -p "$T/a" "$T/b"
head -c 100M /dev/urandom >"$T/data"
head -c 4M /dev/urandom >"$T/small"
DATA_SHA=$(sha256sum <"$T/data" | cut -d' ' -f1)
SMALL_SHA=$(sha256sum <"$T/small" | cut -d' ' -f1)

# Echo servers: one on the destination's side (B), one on the source's (A).
# Background processes are started as simple commands (ip netns exec execs
# its command): $! is then their PID, not a subshell's.
${IN_B:-} socat UNIX-LISTEN:"$T/b/echo.sock",fork EXEC:cat 2>/dev/null &
_sm_pids+=($!)
${IN_A:-} socat UNIX-LISTEN:"$T/a/echo.sock",fork EXEC:cat 2>/dev/null &
_sm_pids+=($!)
wait_until 5 test -S "$T/b/echo.sock"
wait_until 5 test -S "$T/a/echo.sock"

# echo_sha WHERE SOCKET FILE: FILE through the echo at SOCKET, run on host
# WHERE (A or B); prints the sha256 of what came back.
echo_sha () {
  in_host "$1" socat -t 30 -T 30 - UNIX-CONNECT:"$2" <"$3" 2>/dev/null |
    sha256sum | cut -d' ' -f1
}

# tun_start NAME LINK-TIMEOUT-MS DEST-WORD...: a tunnel in A, its control
# channel on fds TW (requests) and TR (answers), its stderr in
# $T/NAME.err, its directory $T/NAME.d, its destination state $T/NAME.st.
TPID= TW= TR= TNAME=
tun_start () {
  local name=$1 link=$2; shift 2
  TNAME=$name
  rm -f "$T/$name.in" "$T/$name.out"
  mkfifo "$T/$name.in" "$T/$name.out"
  ${IN_A:-} "$SNAPMIG" tunnel --id="$name" --local-dir="$T/$name.d" \
    --link-timeout-ms="$link" --dest-opt=--state-dir="$T/$name.st" -- "$@" \
    <"$T/$name.in" >"$T/$name.out" 2>"$T/$name.err" &
  TPID=$!
  _sm_pids+=("$TPID")
  exec {TW}>"$T/$name.in"
  exec {TR}<"$T/$name.out"
}

# req LINE: one request, its answer in ANS (empty: none within 20 s).
ANS=
req () {
  ANS=
  echo "$1" >&"$TW"
  read -r -t 20 ANS <&"$TR" || ANS=
}

# tun_ready: the first line, "ready MODE DIR", in ANS.
tun_ready () { ANS=; read -r -t 30 ANS <&"$TR" || ANS=; }

# up_again RESTARTS: the state says up after RESTARTS restarts.
up_again () { req state; [[ "$ANS" == "state up $1 "* ]]; }
down_now () { req state; [[ "$ANS" == "state down "* ]]; }

# tun_suite NAME MODE DEST-WORD...: the forward, the reverse, the data,
# the parallel streams, a killed transport.
tun_suite () {
  local name=$1 mode=$2 fwd rev i pids=() shas=() bytes tpid tpid2; shift 2
  tun_start "$name" 10000 "$@"
  tun_ready
  check "$name: ready $mode $T/$name.st/run/$name-tunnel ($ANS)" \
    test "$ANS" = "ready $mode $T/$name.st/run/$name-tunnel"
  check "$name: the destination's directory is 0700" \
    test "$(stat -c %a "$T/$name.st/run/$name-tunnel")" = 700

  req "forward $T/b/echo.sock"
  fwd=${ANS#ok }
  check "$name: forward answers ok $T/$name.d/echo.sock ($ANS)" \
    test "$ANS" = "ok $T/$name.d/echo.sock"
  req "forward $T/b/echo.sock"
  check "$name: the same forward again, the same answer" \
    test "$ANS" = "ok $fwd"
  req "reverse back $T/a/echo.sock"
  rev=${ANS#ok }
  check "$name: reverse answers ok DIR/back.sock ($ANS)" \
    test "$ANS" = "ok $T/$name.st/run/$name-tunnel/back.sock"

  check "$name: 100 MiB through the forward and back, sha256 equal" \
    test "$(echo_sha A "$fwd" "$T/data")" = "$DATA_SHA"
  check "$name: 100 MiB through the reverse and back, sha256 equal" \
    test "$(echo_sha B "$rev" "$T/data")" = "$DATA_SHA"

  for i in 1 2 3 4; do
    echo_sha A "$fwd" "$T/small" >"$T/$name.par$i" &
    pids+=($!)
  done
  for i in 1 2; do
    echo_sha B "$rev" "$T/small" >"$T/$name.rpar$i" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i"; done
  for i in 1 2 3 4; do
    check "$name: parallel stream $i through the forward whole" \
      test "$(cat "$T/$name.par$i")" = "$SMALL_SHA"
  done
  for i in 1 2; do
    check "$name: parallel stream $i through the reverse whole" \
      test "$(cat "$T/$name.rpar$i")" = "$SMALL_SHA"
  done

  req state
  tpid=$(cat "$T/$name.d/transport.pid")
  if [ "$mode" = relay ]; then
    bytes=$(echo "$ANS" | cut -d' ' -f4)
    check "$name: state up, the bytes counted ($ANS)" \
      test "$(echo "$ANS" | cut -d' ' -f2)" = up -a "${bytes:-0}" -ge $((400 << 20))
  else
    check "$name: state up, bytes unknown in ssh mode ($ANS)" \
      test "$(echo "$ANS" | cut -d' ' -f2,4)" = "up -1"
  fi
  check "$name: state names the transport of transport.pid" \
    test "$(echo "$ANS" | cut -d' ' -f5)" = "$tpid"

  # (c) the transport killed: back with the same paths
  kill -9 "$tpid"
  check "$name: state says down while the transport restarts" wait_until 5 down_now
  check "$name: up again after the transport was killed" wait_until 15 up_again 1
  tpid2=$(cat "$T/$name.d/transport.pid")
  check "$name: transport.pid names the new transport" \
    test "$tpid2" != "$tpid" -a -n "$tpid2"
  check "$name: the old transport is gone" not _sm_alive "$tpid"
  check "$name: the forward works again at the same local path" \
    test "$(echo_sha A "$fwd" "$T/small")" = "$SMALL_SHA"
  check "$name: the reverse works again at the same remote path" \
    test "$(echo_sha B "$rev" "$T/small")" = "$SMALL_SHA"

  # (e) end of file on the control channel
  exec {TW}>&-
  check "$name: the tunnel exits at end of file" wait_gone "$TPID" 10
  wait "$TPID"
  check "$name: ... with status 0" test $? -eq 0
  check "$name: its directory is removed" test ! -e "$T/$name.d"
  check "$name: its transport is gone" not _sm_alive "$tpid2"
  exec {TR}<&-
}
not () { ! "$@"; }

tun_suite local relay "$SNAPMIG"
if [ -n "$NS_B" ]; then
  tun_suite netns relay ip netns exec "$NS_B" "$SNAPMIG"
else
  skip "relay through ip netns exec: no network namespaces"
fi
sshd_start || { not_ok "sshd starts"; done_testing; }
read -r -a ssh_words <<<"$SSH_DEST_CMD"
tun_suite ssh ssh "${ssh_words[@]}"

# (d) the transport dead longer than the link timeout: a destination
# command that works, then starts slowly (the control channel is answered
# meanwhile), then fails.
cat >"$T/flaky" <<EOF
#!/bin/sh
[ -e "$T/broken" ] && { echo "flaky: the link is down" >&2; exit 1; }
[ -e "$T/slow" ] && { touch "$T/slow-started"; sleep 1.5; }
exec ${IN_B:-} "$SNAPMIG" "\$@"
EOF
chmod +x "$T/flaky"
tun_start flaky 3000 "$T/flaky"
tun_ready
check "flaky: ready ($ANS)" test "${ANS%% *}" = ready
req "forward $T/b/echo.sock"
touch "$T/slow"
kill -9 "$(cat "$T/flaky.d/transport.pid")"
wait_until 5 test -e "$T/slow-started"
start=$(date +%s%N)
req state
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "flaky: state answered at once while the transport starts (${ms} ms: $ANS)" \
  test "$ms" -lt 500 -a "${ANS#state down}" != "$ANS"
check "flaky: up after the slow start" wait_until 10 up_again 1
rm -f "$T/slow"
touch "$T/broken"
start=$(date +%s%N)
kill -9 "$(cat "$T/flaky.d/transport.pid")"
check "flaky: the tunnel gives up" wait_gone "$TPID" 10
wait "$TPID"
rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "flaky: exit status 6, disconnected ($rc)" test "$rc" -eq 6
check "flaky: after the link timeout, not long after (${ms} ms)" \
  test "$ms" -ge 2900 -a "$ms" -le 8000
check "flaky: 'error MESSAGE' with the transport's reason" \
  grep -q '^error .*flaky: the link is down' "$T/flaky.err"
check "flaky: its directory is removed" test ! -e "$T/flaky.d"
exec {TW}>&- {TR}<&-

# SIGTERM: the same as end of file (its directory removed, the transport
# stopped), exit 0.
tun_start term 10000 "$SNAPMIG"
tun_ready
check "term: ready ($ANS)" test "${ANS%% *}" = ready
req "forward $T/b/echo.sock"
tpid=$(cat "$T/term.d/transport.pid")
kill -TERM "$TPID"
check "term: the tunnel exits on SIGTERM" wait_gone "$TPID" 10
wait "$TPID"
rc=$?
check "term: ... with status 0 ($rc)" test "$rc" -eq 0
check "term: its directory is removed" test ! -e "$T/term.d"
check "term: its transport is gone" not _sm_alive "$tpid"
exec {TW}>&- {TR}<&-

# The client side migrate uses (lib/tunnel.h), through tests/tools/
# tunnel-client: open, forward, reverse, state, the error of a dead tunnel,
# close.
CLIENT="$SM_TOP/tests/tools/tunnel-client"
rm -f "$T/broken" "$T/cl.in" "$T/cl.out"
mkfifo "$T/cl.in" "$T/cl.out"
${IN_A:-} "$CLIENT" "$SNAPMIG" cl "$T/cl.d" 1500 10000 --extra=--state-dir="$T/cl.st" \
  -- "$T/flaky" <"$T/cl.in" >"$T/cl.out" 2>"$T/cl.err" &
CPID=$!
_sm_pids+=("$CPID")
exec {TW}>"$T/cl.in" {TR}<"$T/cl.out"
tun_ready
check "client: open relay DIR ($ANS)" test "$ANS" = "open relay $T/cl.st/run/cl-tunnel"
req "forward unix:$T/b/echo.sock"
check "client: forward gives unix:LOCAL ($ANS)" test "$ANS" = "ok unix:$T/cl.d/echo.sock"
check "client: 4 MiB through it" \
  test "$(echo_sha A "$T/cl.d/echo.sock" "$T/small")" = "$SMALL_SHA"
req "forward tcp:$IP_B:10809"
check "client: a TCP endpoint refused ($ANS)" grep -q "^error .*unix" <<<"$ANS"
req "reverse rr unix:$T/a/echo.sock"
check "client: reverse gives unix:REMOTE-DIR/rr.sock ($ANS)" \
  test "$ANS" = "ok unix:$T/cl.st/run/cl-tunnel/rr.sock"
req state
check "client: state up ($ANS)" test "$(echo "$ANS" | cut -d' ' -f1-3)" = "state up 0"
touch "$T/broken"
kill -9 "$(echo "$ANS" | cut -d' ' -f5)"
gave_up () { req state; [[ "$ANS" == "error "* ]]; }
check "client: the state call fails once the tunnel gave up" wait_until 10 gave_up
check "client: ... with the transport's reason ($ANS)" \
  grep -q "flaky: the link is down" <<<"$ANS"
exec {TW}>&-
read -r -t 20 ANS <&"$TR" || ANS=
check "client: close ($ANS)" test "$ANS" = closed
check "client: the tunnel's directory is removed" test ! -e "$T/cl.d"
exec {TR}<&-
wait "$CPID"
out=$(in_a "$CLIENT" "$SNAPMIG" bad "$T/bad.d" 1500 5000 -- "$T/no-such-snapmig")
check "client: a destination command that cannot run: its reason ($out)" \
  grep -q "^error the tunnel through .*no-such-snapmig.* did not come up: .*No such file" <<<"$out"
check "client: ... and no directory left" test ! -e "$T/bad.d"

# (d) in ssh mode: sshd gone, the master killed
tun_start sshdown 1500 "${ssh_words[@]}"
tun_ready
check "sshdown: ready ssh ($ANS)" test "${ANS%% *}" = ready
{ kill -9 "$SSHD_PID"; wait "$SSHD_PID"; } 2>/dev/null
kill -9 "$(cat "$T/sshdown.d/transport.pid")"
check "sshdown: the tunnel gives up" wait_gone "$TPID" 15
wait "$TPID"
rc=$?
check "sshdown: exit status 6, disconnected ($rc)" test "$rc" -eq 6
check "sshdown: 'error MESSAGE' on stderr" grep -q '^error ' "$T/sshdown.err"
exec {TW}>&- {TR}<&-

done_testing
