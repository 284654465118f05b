# A real OpenSSH server for the tunnel tests (issue 12), started by the
# test inside the destination namespace B with throwaway keys.  Sourced
# after lib.sh and netns.sh:
#
#   . "$(dirname "$0")/lib.sh"; . "$(dirname "$0")/netns.sh"
#   . "$(dirname "$0")/sshd.sh"
#   netns_setup
#   sshd_start                   # SSH_DEST_CMD SSH_CMD SSHD_PID SSH_HOST
#   in_a "$SNAPMIG" migrate ... --tunnel --dest-cmd "$SSH_DEST_CMD"
#
# The server listens on $IP_B port 22 inside B (loopback without
# namespaces: 127.0.0.1 and a free port), accepts only the test's client
# key, and its host key is the only entry of the client's known_hosts
# (StrictHostKeyChecking yes: the ssh command checks the host key as any
# user's ssh would).  Everything lives in $T/ssh/: the keys, sshd_config,
# ssh_config, the server's log (sshd.log).  SSH_CMD is the client command
# ("ssh -F $T/ssh/ssh_config"), SSH_HOST the name ssh_config defines
# ("dest"), SSH_DEST_CMD "$SSH_CMD dest $SNAPMIG" (snapmig at the same path
# on both "hosts").  sshd runs in the foreground (-D) as a child of the
# test, killed by PID on every exit path (lib.sh's _sm_pids); the
# connections' own sshd processes are inside B and go with its teardown.
# Skips the whole test (exit 77) when sshd is not installed
# (scripts/install-deps installs openssh-server).
#
# sshd needs its privilege separation directory /run/sshd (the package's
# tmpfiles entry makes it at boot): created when missing, as the system's
# own sshd would.

SSH_CMD= SSH_DEST_CMD= SSHD_PID= SSH_HOST=dest SSH_PORT=22

sshd_start () {
  local d=$T/ssh sshd addr deadline
  sshd=$(command -v sshd || echo /usr/sbin/sshd)
  [ -x "$sshd" ] || skip_all "sshd missing (scripts/install-deps installs openssh-server)"
  command -v ssh >/dev/null || skip_all "ssh missing (openssh-client)"
  mkdir -p "$d" && chmod 700 "$d"
  [ -d /run/sshd ] || mkdir -p -m 0755 /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$d/host_key" -C smtest-host || return 1
  ssh-keygen -q -t ed25519 -N '' -f "$d/client_key" -C smtest-client || return 1
  cp "$d/client_key.pub" "$d/authorized_keys"
  chmod 600 "$d/authorized_keys"
  addr=$IP_B
  if [ -z "$NS_B" ]; then
    SSH_PORT=$(free_tcp_port 2>/dev/null || echo 40022)
  fi
  cat >"$d/sshd_config" <<EOF
ListenAddress $addr
Port $SSH_PORT
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
StreamLocalBindUnlink yes
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
SetEnv SNAPMIG_SSHD_TEST=1
LogLevel VERBOSE
EOF
  printf '[%s]:%s %s\n' "$addr" "$SSH_PORT" "$(cut -d' ' -f1-2 "$d/host_key.pub")" \
    >"$d/known_hosts"
  [ "$SSH_PORT" = 22 ] && printf '%s %s\n' "$addr" "$(cut -d' ' -f1-2 "$d/host_key.pub")" \
    >>"$d/known_hosts"
  cat >"$d/ssh_config" <<EOF
Host $SSH_HOST
  HostName $addr
  Port $SSH_PORT
  User $(id -un)
  IdentityFile $d/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $d/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
  ConnectTimeout 10
EOF
  ${IN_B:-} "$sshd" -D -e -f "$d/sshd_config" >"$d/sshd.log" 2>&1 &
  SSHD_PID=$!
  _sm_pids+=("$SSHD_PID")
  SSH_CMD="ssh -F $d/ssh_config"
  SSH_DEST_CMD="$SSH_CMD $SSH_HOST $SNAPMIG"
  deadline=$(( $(date +%s) + 20 ))
  until ${IN_A:-} $SSH_CMD "$SSH_HOST" true 2>"$d/first.err"; do
    if ! kill -0 "$SSHD_PID" 2>/dev/null || [ "$(date +%s)" -ge $deadline ]; then
      echo "# sshd did not come up:"; sed 's/^/# /' "$d/sshd.log" "$d/first.err"
      return 1
    fi
    sleep 0.2
  done
  echo "# sshd (PID $SSHD_PID) on $addr:$SSH_PORT inside ${NS_B:-the host}"
}

# free_tcp_port: a TCP port nothing listens on (loopback fallback only).
free_tcp_port () {
  local p
  for p in $(seq 40022 40122); do
    ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}

# ss_qemu_tcp_listeners NS: the TCP listeners (ss -ltnp) inside namespace NS
# owned by qemu processes, one line each; nothing when there are none.
ss_qemu_tcp_listeners () {
  ip netns exec "$1" ss -Hltnp 2>/dev/null | grep -i 'qemu' || true
}
