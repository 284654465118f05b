#!/usr/bin/env bash
# snapmig migrate --tls --tls-creds DIR between two "hosts" (network
# namespaces A and B, as test-migrate.sh; loopback where namespaces can't be
# made), DIR a throwaway CA's files made by tests/tools/make-certs (the
# server certificate names IP_A and IP_B):
#   usage        --tls without --tls-creds is a usage error (2); a DIR
#                missing client-key.pem is refused before anything moves
#                (the source unchanged, no new file), naming the file
#   host names   a server certificate that names only the source's address
#                (the destination's export is refused at perform) or only
#                the destination's (the layer pull is refused at prepare):
#                migrate fails naming the address, --dest-host or
#                --source-host and the certificate's names; nothing changed
#   phases       migrate-begin --tls: the source's layer server refuses a
#                plaintext NBD client and serves one with the client
#                certificate at the same address; migrate-prepare without
#                --tls on the TLS cookie is refused (exit 1, naming --tls)
#                and so is one whose DIR lacks server-key.pem, both with
#                the destination domain untouched; migrate-prepare --tls:
#                the destination's export refuses nbdinfo --list and
#                qemu-img info in plaintext and serves qemu-img with the
#                client certificate at the same address, its migration
#                parameter tls-creds is set; then migrate-finish --cancel
#                and migrate-confirm --failed: the source runs on its own
#                chain, without TLS objects or parameters, the destination
#                domain is empty
#   recover      snapmig recover after migrate-begin --tls rolls back the
#                source: its own chain, no TLS object or parameter left
#   plain after  a plain migration of that same VM passes (nothing of the
#                rolled-back and the recovered TLS migrations left: their
#                parameters, objects, layer export nodes), its data read
#                back on the destination
#   tls          a migration with --tls --tls-creds DIR and guest writes
#                during the disk copy passes: every pattern reads back on
#                the destination (HMP qemu-io) and offline, qemu-img
#                compare against the source's files, nothing listens, the
#                destination kept no TLS object or parameter
#   tls multifd  the same with --parallel-connections 2 passes
# run-tests: beside (guest-less, its own namespaces and directories)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/migrate-lib.sh"

mig_setup
for c in openssl xmllint; do
  command -v $c >/dev/null || skip_all "$c missing"
done
CERTS=$T/certs
if ! "$SM_TOP/tests/tools/make-certs" "$CERTS" "$IP_A" "$IP_B" >"$T/certs.log" 2>&1; then
  sed 's/^/# /' "$T/certs.log"
  not_ok "make-certs made the throwaway CA"
  done_testing
fi
TLS=(--tls --tls-creds "$CERTS")

# attr COOKIE NAME: the snapmig element's attribute NAME in COOKIE.
attr () { xmllint --xpath "string(/qemu-migration/snapmig/@$2)" "$1" 2>/dev/null; }
# hostport URI: "HOST PORT" of tcp:HOST:PORT.
hostport () { local u=${1#tcp:}; echo "${u%:*} ${u##*:}"; }
# tls_info NS HOST PORT EXPORT: qemu-img info with the client certificate
# (hostname checked against HOST), run in namespace host NS (A or B).
tls_info () {
  in_host "$1" qemu-img info \
    --object "tls-creds-x509,id=c0,endpoint=client,dir=$CERTS" --image-opts \
    "driver=nbd,server.type=inet,server.host=$2,server.port=$3,export=$4,tls-creds=c0,tls-hostname=$2" \
    >"$T/info.out" 2>&1 || { sed 's/^/# /' "$T/info.out"; return 1; }
  grep -q '^virtual size' "$T/info.out"
}
# refused CMD...: CMD fails (its output shown as comments).
refused () {
  if "$@" >"$T/refused.out" 2>&1; then
    echo "# accepted: $*"; sed 's/^/# /' "$T/refused.out"; return 1
  fi
  sed 's/^/#   refused: /' "$T/refused.out" | head -n 3
}
# tls_left QMP-SOCKET: what of snapmig's TLS a QEMU still has (objects
# sm-tls-*, migration parameters tls-creds/tls-hostname), empty when none
# (QEMU makes /objects with the first object: "not found" is none); a
# query that fails says so.
tls_left () {
  local objs params
  if objs=$("$SMQ" "$1" qom-list '{"path": "/objects"}' 2>&1); then
    jq -r '.[].name | select(startswith("sm-tls-"))' <<<"$objs"
  elif ! grep -q "'/objects' not found" <<<"$objs"; then
    echo "qom-list failed: $objs"
  fi
  params=$("$SMQ" "$1" query-migrate-parameters 2>&1) || { echo "query-migrate-parameters failed: $params"; return; }
  jq -r 'select(."tls-creds" != "" or ."tls-hostname" != "") | "tls-creds=\(."tls-creds") tls-hostname=\(."tls-hostname")"' <<<"$params"
}
no_tls_left () {
  local left; left=$(tls_left "$1")
  [ -z "$left" ] && return 0
  echo "# left on $1: $(tr '\n' ' ' <<<"$left")"; return 1
}
# exited RC WANT FILE: exit status RC is WANT (FILE shown otherwise).
exited () {
  [ "$1" = "$2" ] && return 0
  echo "# exit $1, not $2:"; sed 's/^/#   /' "$3"; return 1
}
# no_journal DIR: no journal in the state directory DIR.
no_journal () {
  local j; j=$(find "$1" -name '*.journal' 2>/dev/null)
  [ -z "$j" ] && return 0
  echo "# journals: $j"; return 1
}

# --- usage: --tls without --tls-creds; a DIR missing a file -------------------
mig_fresh
rc=0; $IN_A "${MIG[@]}" --tls >"$T/u.out" 2>"$T/u.err" || rc=$?
check "usage: --tls without --tls-creds exits 2" exited "$rc" 2 "$T/u.err"
check "usage: the message names --tls-creds" grep -q -- '--tls-creds' "$T/u.err"
mkdir "$T/bad"
cp "$CERTS"/*.pem "$T/bad/"
rm "$T/bad/client-key.pem"
rc=0; $IN_A "${MIG[@]}" --tls --tls-creds "$T/bad" >"$T/u.out" 2>"$T/u.err" || rc=$?
check "usage: a DIR without client-key.pem: migrate exits 3 (not-found)" exited "$rc" 3 "$T/u.err"
check "usage: the message names client-key.pem" grep -q 'client-key.pem' "$T/u.err"
check "usage: the message says what DIR must hold" grep -q 'must hold ca-cert.pem' "$T/u.err"
check "usage: the source is unchanged (chains, files, data)" src_intact
check "usage: no TLS object on the source" no_tls_left "$T/vm.qmp"
check "usage: the destination domain is empty" empty_dir "$D"
check "usage: no migration journal on the source" no_journal "$T/s1"

# --- certificates that do not name a host's address ------------------------------
# (namespaces only: in the loopback fallback both hosts are 127.0.0.1, which
# make-certs always names)
# refused_host LABEL DIR STATUS HOST OPTION [ARG]...: migrate (ARGs) with
# DIR fails with exit STATUS naming HOST, OPTION and the certificate's
# names; the source runs as before and the destination is clean.
refused_host () {
  local l=$1 dir=$2 want=$3 rc=0; shift 3
  $IN_A "${MIG[@]}" --tls --tls-creds "$dir" "${@:3}" >"$T/h.out" 2>"$T/h.err" || rc=$?
  sed 's/^/# /' "$T/h.err"
  check "$l: migrate exits $want" exited "$rc" "$want" "$T/h.err"
  check "$l: the message names $1 and $2" grep -qF "does not name $1 ($2)" "$T/h.err"
  check "$l: the message names the certificate's names" grep -qF "it names IP Address:127.0.0.1" "$T/h.err"
  check "$l: the message has QEMU's reason" grep -qF "Certificate does not match the hostname $1" "$T/h.err"
  check "$l: the source is unchanged" src_intact
  check "$l: the source has no TLS object or parameter left" no_tls_left "$T/vm.qmp"
  check "$l: the destination domain is empty" empty_dir "$D"
  check "$l: no destination process" dest_gone 10
}
if [ -n "$NS_A" ]; then
  "$SM_TOP/tests/tools/make-certs" "$T/only-a" "$IP_A" >/dev/null
  # --flatten: no layer to pull, perform's NBD connection is refused at once
  # QEMU refuses the export's certificate: qemu-error (7)
  refused_host "certificate without the destination" "$T/only-a" 7 "$IP_B" --dest-host --flatten
  "$SM_TOP/tests/tools/make-certs" "$T/only-b" "$IP_B" >/dev/null
  refused_host "certificate without the source" "$T/only-b" 1 "$IP_A" --source-host
else
  skip "certificates without a host's address: no namespaces (both hosts 127.0.0.1)"
fi

# --- phases: the servers refuse plaintext clients ---------------------------------
PH_SRC=(--qmp "$T/vm.qmp" --state-dir "$T/s1")
PH_DST=(--state-dir "$T/s2" --dest-domain "$D" --dest-run-dir "$RUN")
rc=0
$IN_A "$SNAPMIG" migrate-begin "${PH_SRC[@]}" --dest-host "$IP_B" \
  --port-range "$PORT_LO-$PORT_HI" "${TLS[@]}" >"$T/begin.xml" 2>"$T/begin.err" || rc=$?
check "phases: migrate-begin --tls exits 0" exited "$rc" 0 "$T/begin.err"
check "phases: the cookie's transport is tls" [ "$(attr "$T/begin.xml" transport)" = tls ]
ID=$(attr "$T/begin.xml" id)
check "phases: the source has the migration's TLS objects" \
  [ "$(tls_left "$T/vm.qmp" | sort | tr '\n' ' ')" = "sm-tls-cli-${ID: -8} sm-tls-srv-${ID: -8} " ]
read -r LH LP <<<"$(hostport "$(attr "$T/begin.xml" layers-uri)")"
LEXP=$(xmllint --xpath "string(//layer[@role='copy'][1]/@export)" "$T/begin.xml")
check "phases: the layer server listens on the source's address ($LH:$LP, $LEXP)" \
  [ "$LH" = "$IP_A" ]
check "phases: the layer server refuses a plaintext qemu-img" \
  refused in_b qemu-img info "nbd://$LH:$LP/$LEXP"
check "phases: the layer server refuses a plaintext nbdinfo --list" \
  refused in_b nbdinfo --list "nbd://$LH:$LP"
check "phases: the layer server serves the client certificate at the same address" \
  tls_info B "$LH" "$LP" "$LEXP"

rc=0
$IN_B "$SNAPMIG" migrate-prepare "${PH_DST[@]}" --port-range "$PORT_LO-$PORT_HI" \
  <"$T/begin.xml" >"$T/p0.xml" 2>"$T/p0.err" || rc=$?
check "phases: prepare without --tls on the TLS cookie exits 2 (invalid-input)" exited "$rc" 2 "$T/p0.err"
check "phases: its message names --tls" grep -q -- '--tls' "$T/p0.err"
check "phases: the destination domain is untouched" empty_dir "$D"
check "phases: the run dir is untouched" empty_dir "$RUN"
check "phases: no destination process" dest_gone 5
rm -rf "$T/bad"; mkdir "$T/bad"
cp "$CERTS"/*.pem "$T/bad/"
rm "$T/bad/server-key.pem"
rc=0
$IN_B "$SNAPMIG" migrate-prepare "${PH_DST[@]}" --port-range "$PORT_LO-$PORT_HI" \
  --tls --tls-creds "$T/bad" <"$T/begin.xml" >"$T/p1.xml" 2>"$T/p1.err" || rc=$?
check "phases: prepare with a DIR without server-key.pem exits 3 (not-found)" exited "$rc" 3 "$T/p1.err"
check "phases: its message names server-key.pem" grep -q 'server-key.pem' "$T/p1.err"
check "phases: the destination domain is still untouched" empty_dir "$D"

rc=0
$IN_B "$SNAPMIG" migrate-prepare "${PH_DST[@]}" --port-range "$PORT_LO-$PORT_HI" \
  "${TLS[@]}" <"$T/begin.xml" >"$T/prep.xml" 2>"$T/prep.err" || rc=$?
check "phases: migrate-prepare --tls exits 0" exited "$rc" 0 "$T/prep.err"
read -r NH NP <<<"$(hostport "$(attr "$T/prep.xml" nbd-uri)")"
check "phases: the export listens on the destination's address ($NH:$NP)" [ "$NH" = "$IP_B" ]
check "phases: the export refuses a plaintext nbdinfo --list" \
  refused in_a nbdinfo --list "nbd://$NH:$NP"
check "phases: the export refuses a plaintext qemu-img info" \
  refused in_a qemu-img info "nbd://$NH:$NP/drive0"
check "phases: the export serves the client certificate at the same address" \
  tls_info A "$NH" "$NP" drive0
check "phases: the destination's migration parameter tls-creds is its server's" \
  [ "$(dqmp query-migrate-parameters | jq -r '."tls-creds"')" = "sm-tls-srv-${ID: -8}" ]

rc=0
$IN_B "$SNAPMIG" migrate-finish --cancel --state-dir "$T/s2" <"$T/prep.xml" \
  >"$T/fin.xml" 2>"$T/fin.err" || rc=$?
check "phases: migrate-finish --cancel exits 0" exited "$rc" 0 "$T/fin.err"
rc=0
$IN_A "$SNAPMIG" migrate-confirm --failed "${PH_SRC[@]}" <"$T/prep.xml" \
  >"$T/conf.out" 2>"$T/conf.err" || rc=$?
check "phases: migrate-confirm --failed exits 0" exited "$rc" 0 "$T/conf.err"
check "phases: the source runs on its own chain (files, data)" src_intact
check "phases: the source has no TLS object or parameter left" no_tls_left "$T/vm.qmp"
check "phases: the destination domain is empty" empty_dir "$D"
check "phases: no destination process" dest_gone 10
check "phases: nothing listens" no_listener

# --- recover after a begin --tls whose snapmig went away ---------------------------
rc=0
$IN_A "$SNAPMIG" migrate-begin "${PH_SRC[@]}" --dest-host "$IP_B" \
  --port-range "$PORT_LO-$PORT_HI" "${TLS[@]}" >"$T/begin2.xml" 2>"$T/begin2.err" || rc=$?
check "recover: migrate-begin --tls exits 0" exited "$rc" 0 "$T/begin2.err"
check "recover: the source has TLS objects" [ -n "$(tls_left "$T/vm.qmp")" ]
rc=0
$IN_A "$SNAPMIG" recover "${PH_SRC[@]}" >"$T/rec.out" 2>"$T/rec.err" || rc=$?
check "recover: snapmig recover exits 0" exited "$rc" 0 "$T/rec.err"
check "recover: the source runs on its own chain (files, data)" src_intact
check "recover: the source has no TLS object or parameter left" no_tls_left "$T/vm.qmp"
check "recover: nothing listens" no_listener

# --- a plain migration of the same VM after the rolled-back TLS one ---------------
rm -rf "$RUN"; mkdir -p "$RUN"
mig_start --json
mig_end 120
check "plain after tls: migrate exits 0" [ "$MIG_RC" = 0 ]
check "plain after tls: the destination runs the guest" \
  [ "$(dqmp query-status | jq -r .status)" = running ]
check "plain after tls: every pattern reads back on the destination" dest_all_read
check "plain after tls: nothing listens" no_listener

# --- a TLS migration, guest writes during the disk copy ----------------------------
# The chain kept (default): the destination pulls the lower layers from the
# source's layer server (qemu-img convert over TLS), the mirrors and the
# RAM go over TLS.  during_writes: one write per disk while the layers are
# pulled (EXPECT's drive0 base range is not overwritten).
during_writes () {
  src_write drive0 0x55 20M 1M || return 1
  src_write drive1 0x66 12M 1M || return 1
  src_write drive2 0x77 8M 1M
}
mig_fresh
mig_start --json --bandwidth 8M "${TLS[@]}"
check "tls: the migration reaches the layer copy" mig_wait_line "$(phase_re prepare)" 60
check "tls: guest writes during the copy" during_writes
check "tls: the writes came before the RAM phase" not grep -qE "$(phase_re ram)" "$T/mig.out"
mig_end 120
check "tls: migrate exits 0" [ "$MIG_RC" = 0 ]
check "tls: the result says ok" [ "$(res .ok)" = true ]
check "tls: the source QEMU has quit" wait_gone "$VM_PID" 10
check "tls: the destination runs the guest" [ "$(dqmp query-status | jq -r .status)" = running ]
check "tls: every pattern reads back on the destination" dest_all_read
check "tls: the destination kept no TLS object or parameter" no_tls_left "$RUN/vm.qmp"
check "tls: nothing listens" no_listener
dest_record
check "tls: the destination QEMU quits" dest_quit
dest_offline_checks "tls"

# --- TLS with multifd: every channel of the RAM migration uses tls-creds -------
mig_fresh
mig_start --json --parallel-connections 2 "${TLS[@]}"
mig_end 120
check "tls multifd: migrate exits 0" [ "$MIG_RC" = 0 ]
check "tls multifd: every pattern reads back on the destination" dest_all_read
check "tls multifd: the destination kept no TLS object or parameter" no_tls_left "$RUN/vm.qmp"

done_testing
