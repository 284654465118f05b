#!/usr/bin/env bash
# The JSON contract (snapmig-json(7), schemas/snapmig.schema.json): every
# command runs with --json against a real guest-less QEMU, succeeding and
# failing; every document and every line is validated against the schema;
# a long command's last line is its result; a failure's code is one of the
# documented table and the exit status is the table's for that code; and
# the key structure of each success is the golden file's
# (tests/data/json/NAME.json), so a renamed key fails.
#
# SNAPMIG_UPDATE_GOLDEN=1 rewrites the golden files from this run (paths
# and times normalised) instead of comparing.
. "$(dirname "$0")/lib.sh"

lsm_setup
python3 -c 'import jsonschema' 2>/dev/null ||
  skip_all "python3-jsonschema missing (scripts/install-deps)"
JC=$SM_TOP/tests/tools/json-check
GOLD=$SM_TOP/tests/data/json
SCHEMA=$SM_TOP/schemas/snapmig.schema.json
MAN7=$SM_TOP/docs/snapmig-json.7
mkdir -p "$T/out" "$T/D" "$T/state2"

check "the schema is valid JSON Schema 2020-12" python3 -c '
import json, sys, jsonschema
jsonschema.Draft202012Validator.check_schema(json.load(open(sys.argv[1])))' "$SCHEMA"

# The documented table, read from snapmig-json(7): code -> exit status.
declare -A EXIT_OF
while IFS=$'\t' read -r code _ status; do
  EXIT_OF[$code]=$status
done < <(awk '/^\.TS/ {t = 1; next} /^\.TE/ {t = 0}
              t && /\t/ && !/^code\t/ {print}' "$MAN7")
check "snapmig-json(7)'s table lists the 18 codes (${#EXIT_OF[@]})" \
  test "${#EXIT_OF[@]}" -eq 18
schema_codes=$(jq -r '."$defs".code.enum[]' "$SCHEMA" | sort | tr '\n' ' ')
table_codes=$(printf '%s\n' "${!EXIT_OF[@]}" | sort | tr '\n' ' ')
check "the schema's codes are the table's" test "$schema_codes" = "$table_codes"

# normalise FILE: the golden form of an output (this run's paths and times
# replaced) on stdout.
normalise () {
  sed -e "s|$T|/T|g" \
      -e 's/"time": *"[^"]*"/"time":"2026-01-01T00:00:00.000Z"/g' \
      -e 's/"creation-time": *"[^"]*"/"creation-time": "2026-01-01T00:00:00Z"/g' "$1"
}

# golden NAME FILE: FILE's key structure is tests/data/json/NAME.json's.
golden () {
  local g=$GOLD/$1.json
  if [ -n "${SNAPMIG_UPDATE_GOLDEN:-}" ]; then
    mkdir -p "$GOLD"
    normalise "$2" >"$g"
    ok "$1: golden file written"
    return
  fi
  if [ ! -f "$g" ]; then
    not_ok "$1: no golden file $g (run with SNAPMIG_UPDATE_GOLDEN=1)"
    return
  fi
  local want got
  want=$("$JC" --keys "$g") got=$("$JC" --keys "$2")
  # Whether QEMU's job was polled before it ended (a progress line) is
  # timing: progress lines' keys are compared when both runs have some.
  if ! grep -q '^<progress>' <<<"$want" || ! grep -q '^<progress>' <<<"$got"; then
    want=$(grep -v '^<progress>' <<<"$want") got=$(grep -v '^<progress>' <<<"$got")
  fi
  if [ "$want" = "$got" ]; then
    ok "$1: the keys are the golden file's"
  else
    not_ok "$1: the keys are not the golden file's"
    diff <(echo "$want") <(echo "$got") | sed 's/^/# /'
  fi
}

# jrun NAME DEF KIND WANT CMD...: runs snapmig CMD... --json.  KIND: doc
# (one document on stdout), lines (JSON lines on stdout) or errlines (JSON
# lines on stderr, the migrate phases).  WANT: ok (exit 0, golden file
# NAME), report (exit 1 with the document DEF: validate, check-xml), or
# the error code the failure must have.  Validates everything it printed.
jrun () {
  local name=$1 def=$2 kind=$3 want=$4; shift 4
  local out=$T/out/$name.out err=$T/out/$name.err json rc code last
  "$SNAPMIG" "$@" --json >"$out" 2>"$err" </dev/null
  rc=$?
  json=$out
  [ "$kind" = errlines ] && json=$T/out/$name.json &&
    grep '^{' "$err" >"$json"
  if [ "$want" = ok ] || [ "$want" = report ]; then
    local st=0
    [ "$want" = report ] && st=1
    check "$name: exit status $st ($rc)" test "$rc" -eq "$st"
  fi
  case $kind in
    doc)
      if [ "$want" = ok ] || [ "$want" = report ]; then
        "$JC" --document "$def" "$json" | sed 's/^/# /'
        check "$name: the document is \$defs/$def" test "${PIPESTATUS[0]}" -eq 0
      else
        "$JC" --document error-document "$json" | sed 's/^/# /'
        check "$name: the document is \$defs/error-document" \
          test "${PIPESTATUS[0]}" -eq 0
      fi
      code=$(jq -r '.error.code // empty' "$json" 2>/dev/null) ;;
    *)
      "$JC" --lines "$def" "$json" | sed 's/^/# /'
      check "$name: every line is \$defs/$def" test "${PIPESTATUS[0]}" -eq 0
      last=$(tail -n 1 "$json")
      check "$name: the last line is the result" \
        test "$(jq -r .event <<<"$last" 2>/dev/null)" = result
      check "$name: its ok says the exit status" \
        test "$(jq -r .ok <<<"$last" 2>/dev/null)" = "$([ "$rc" -eq 0 ] && echo true || echo false)"
      check "$name: one result line" test "$(grep -c '"event":"result"' "$json")" -eq 1
      code=$(jq -r '.error.code // empty' <<<"$last" 2>/dev/null) ;;
  esac
  if [ "$want" = ok ]; then
    golden "$name" "$json"
  elif [ "$want" != report ]; then
    check "$name: code $want ($code)" test "$code" = "$want"
    check "$name: exit status ${EXIT_OF[$code]:-?} as the table says for $code ($rc)" \
      test "$rc" = "${EXIT_OF[$code]:-none}"
    if [ "$code" != usage ]; then
      local object
      if [ "$kind" = doc ]; then object=$(jq -r '.error.object' "$json")
      else object=$(jq -r '.error.object' <<<"$last"); fi
      check "$name: the error names its object ($object)" \
        test -n "$object" -a "$object" != null
    fi
    check "$name: the human message is on stderr" grep -q '^snapmig: error: ' "$err"
  fi
  [ "$rc" -eq 0 ] || [ "$want" != ok ] || sed 's/^/# /' "$err"
}

make_chain "$A" 32M 1M
qemu-img create -q -f raw "$A/d1.raw" 16M
start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" \
            -drive "$(drive_opt drive1 "$A/d1.raw" raw)" || exit 1
QMP=$T/vm.qmp

# ---- document commands, success -------------------------------------------
jrun disks disks doc ok disks --qmp "$QMP"
jrun status-idle status doc ok status "${SM[@]}"
jrun recover recover doc ok recover "${SM[@]}"
jrun recover-incoming recover doc ok recover --incoming --state-dir "$T/state2"
cat >"$T/snap.xml" <<'EOF'
<domainsnapshot>
  <name>x</name>
  <disks>
    <disk name='drive0' snapshot='external'/>
  </disks>
</domainsnapshot>
EOF
jrun check-xml check-xml doc ok check-xml "$T/snap.xml"
echo 'not xml' >"$T/bad.xml"
jrun check-xml-invalid check-xml doc report check-xml "$T/snap.xml" "$T/bad.xml"
check "check-xml-invalid: the bad file's entry has its error" \
  test "$(jq -r '.files[1].error.code' "$T/out/check-xml-invalid.out")" = invalid-xml

# ---- long commands, success -----------------------------------------------
jrun create-dry-run create lines ok create "${SM[@]}" --mirror-domain "$B" --name m1 --dry-run
jrun create-wait create lines ok create "${SM[@]}" --mirror-domain "$B" --name m1 --wait
check "create-wait: the result says ready" \
  test "$(tail -n 1 "$T/out/create-wait.out" | jq -r .ready)" = true
jrun status-moving status doc ok status "${SM[@]}"
jrun list list doc ok list "${SM[@]}"
jrun dumpxml dumpxml doc ok dumpxml "${SM[@]}" m1
jrun current current doc ok current "${SM[@]}"
jrun current-set current doc ok current "${SM[@]}" m1
jrun pivot-dry-run pivot lines ok pivot "${SM[@]}" --dry-run m1
jrun pivot pivot lines ok pivot "${SM[@]}" --delete-source m1
check "pivot: pause-ms is a number" \
  test "$(tail -n 1 "$T/out/pivot.out" | jq -r '."pause-ms" | type')" = number
check "pivot: the removed files are absolute paths in the result" \
  test "$(tail -n 1 "$T/out/pivot.out" | jq -r '[.removed[] | startswith("/")] | all and length > 0')" = true
jrun create-nowait create lines ok create "${SM[@]}" --mirror-domain "$A" --name m2
jrun abort abort lines ok abort "${SM[@]}" m2
jrun create-plain create lines ok create "${SM[@]}" --name s3 --diskspec drive0 \
  --diskspec drive1,snapshot=no
jrun delete delete doc ok delete "${SM[@]}" s3
jrun rebase-dry-run rebase lines ok rebase "${SM[@]}" --dry-run drive0
jrun rebase rebase lines ok rebase "${SM[@]}" drive0
jrun validate validate doc ok validate "$A" "$B" --qmp "$QMP"
jrun migrate-dry-run migrate lines ok migrate --qmp "$QMP" --state-dir "$T/state" \
  --dest-domain "$T/D" --dest-state-dir "$T/state2" --dry-run
jrun migrate-begin-dry-run migrate-phases errlines ok migrate-begin --qmp "$QMP" \
  --state-dir "$T/state" --dry-run
check "migrate-begin: stdout is the cookie" grep -q '^<qemu-migration>' "$T/out/migrate-begin-dry-run.out"

# ---- failures --------------------------------------------------------------
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$T/stale.qmp"
jrun disks-missing disks doc not-found disks --qmp "$T/missing.qmp"
jrun disks-dead disks doc disconnected disks --qmp "$T/stale.qmp"
jrun disks-usage disks doc usage disks --qmp "$QMP" --frobnicate
jrun unknown-command disks doc usage frobnicate
jrun list-usage list doc usage list
jrun dumpxml-missing dumpxml doc not-found dumpxml "${SM[@]}" nope
jrun current-none current doc not-found current "${SM[@]}"
jrun current-set-missing current doc not-found current "${SM[@]}" nope
jrun delete-missing delete doc not-found delete "${SM[@]}" nope
jrun check-xml-usage check-xml doc usage check-xml
jrun status-missing status doc not-found status "${SM[@]}" nope
jrun validate-dead validate doc disconnected validate "$A" --qmp "$T/stale.qmp"
jrun recover-usage recover doc usage recover "${SM[@]}" extra
jrun start-postcopy-none migrate-start-postcopy doc not-found \
  migrate-start-postcopy "${SM[@]}"
jrun create-no-disk create lines not-found create "${SM[@]}" --name s4 --diskspec nodisk
jrun create-usage create lines usage create "${SM[@]}"
jrun pivot-missing pivot lines not-found pivot "${SM[@]}" nope
jrun abort-missing abort lines not-found abort "${SM[@]}" nope
jrun rebase-no-disk rebase lines not-found rebase "${SM[@]}" nodisk
jrun migrate-missing migrate lines not-found migrate --qmp "$T/missing.qmp" \
  --state-dir "$T/state" --dest-domain "$T/D"
check "migrate-missing: the error has its phase" \
  test "$(tail -n 1 "$T/out/migrate-missing.out" | jq -r .error.phase)" = begin
jrun migrate-begin-missing migrate-phases errlines not-found migrate-begin \
  --qmp "$T/missing.qmp" --state-dir "$T/state"
jrun migrate-prepare-eof migrate-phases errlines disconnected migrate-prepare \
  --dest-domain "$T/D" --state-dir "$T/state2"
jrun migrate-perform-missing migrate-phases errlines not-found migrate-perform \
  --qmp "$T/missing.qmp" --state-dir "$T/state"
jrun migrate-finish-eof migrate-phases errlines disconnected migrate-finish \
  --state-dir "$T/state2"
jrun migrate-confirm-eof migrate-phases errlines disconnected migrate-confirm \
  --qmp "$QMP" --state-dir "$T/state"
jrun migrate-recover-missing migrate lines not-found migrate-recover \
  --qmp "$T/missing.qmp" --state-dir "$T/state"

# A QEMU that does not answer: timeout, naming its monitor.
start_vm stopped || exit 1
STOPPED_PID=$VM_PID
kill -STOP "$STOPPED_PID"
jrun disks-timeout disks doc timeout disks --qmp "$T/stopped.qmp" --timeout 1
kill -CONT "$STOPPED_PID"

# The VM's lock held by another process: busy, naming the VM.
lock=$(echo "$T"/state/vms/*/lock)
python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a"); fcntl.flock(f, fcntl.LOCK_EX)
open(sys.argv[2], "w").close(); time.sleep(60)' "$lock" "$T/locked" &
_sm_pids+=($!)
LOCKER_PID=$!
if wait_for_file "$T/locked" 10; then
  jrun current-busy current doc busy current "${SM[@]}" m1
else
  not_ok "a second process could not take the VM's lock for the busy case"
fi
kill "$LOCKER_PID"

# Every golden file is itself valid against the schema: a document against
# its command's $def, lines against the command's events.
for g in "$GOLD"/*.json; do
  n=$(basename "$g" .json)
  case $n in
    disks) d=disks ;; status-*) d=status ;; recover*) d=recover ;;
    check-xml) d=check-xml ;; list) d=list ;; dumpxml) d=dumpxml ;;
    current*) d=current ;; delete) d=delete ;; validate) d=validate ;;
    create-*) d=create ;; pivot*) d=pivot ;; abort) d=abort ;;
    rebase*) d=rebase ;; migrate-begin-*) d=migrate-phases ;;
    migrate-*) d=migrate ;; *) d= ;;
  esac
  if [ -z "$d" ]; then not_ok "golden $n: no \$def known for it"; continue; fi
  "$JC" "$d" "$g" | sed 's/^/# /'
  check "golden $n is valid against \$defs/$d" test "${PIPESTATUS[0]}" -eq 0
done

done_testing
