#!/usr/bin/env bash
# The command line behaves like its neighbours' (issue 13), one part each:
# the help in the user's locale, --version on every command, "did you mean"
# for an unknown command, exit 2 for every usage error of every command,
# status when nothing is moving, SNAPMIG_DEBUG as --debug with timestamps,
# the bash completion, and errors that name the fix (a missing storage
# domain, a wrong disk or snapshot name).
source "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 not installed"
command -v qemu-img >/dev/null || skip_all "qemu-img not installed"
command -v jq >/dev/null || skip_all "jq not installed"

# Every listed command, and the hidden helpers migrate --tunnel and create
# start.
commands=$("$SNAPMIG" help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {print $1}')
check "snapmig help lists commands" test -n "$commands"
all_commands="$commands tunnel copy-worker"

# exited RC WANT ERRFILE: RC is WANT; otherwise say what stderr said.
exited () {
  [ "$1" -eq "$2" ] && return 0
  echo "# exit status $1, expected $2; stderr:"; sed 's/^/#   /' "$3"
  return 1
}

# ---- 1. setlocale: GOption's help in the user's charset -----------------
if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
  LC_ALL=C.UTF-8 "$SNAPMIG" disks --help >"$T/help" 2>&1
  check "help under C.UTF-8 says [OPTION…]" grep -qF '[OPTION…]' "$T/help"
  check "help under C.UTF-8 has no [OPTION?]" not grep -qF '[OPTION?]' "$T/help"
else
  skip "no C.UTF-8 locale"
fi

# ---- 2. --version on every command ---------------------------------------
version=$("$SNAPMIG" --version)
check "snapmig --version" grep -qE '^snapmig [0-9]+\.[0-9]+\.[0-9]+$' <<<"$version"
for c in $all_commands; do
  "$SNAPMIG" "$c" --version </dev/null >"$T/out" 2>"$T/err"; rc=$?
  check "$c --version exits 0" exited $rc 0 "$T/err"
  check "$c --version prints the version" test "$(cat "$T/out")" = "$version"
done

# ---- 3. an unknown command ------------------------------------------------
# unknown_is CMD NEAR: `snapmig CMD` exits 2 naming CMD, with "did you mean
# 'NEAR'?" (no suggestion when NEAR is empty).
unknown_is () {
  local out rc
  out=$("$SNAPMIG" "$1" 2>&1 </dev/null); rc=$?
  [ $rc -eq 2 ] || { echo "# '$1': exit status $rc"; return 1; }
  grep -qF "unknown command '$1'" <<<"$out" || { echo "# $out"; return 1; }
  if [ -n "$2" ]; then
    grep -qF "did you mean '$2'?" <<<"$out" || { echo "# $out"; return 1; }
  else
    not grep -q "did you mean" <<<"$out" || { echo "# $out"; return 1; }
  fi
}
check "mgirate: did you mean 'migrate'" unknown_is mgirate migrate
check "statsu: did you mean 'status'" unknown_is statsu status
check "disk: did you mean 'disks'" unknown_is disk disks
check "mig: did you mean 'migrate' (a prefix)" unknown_is mig migrate
check "frobnicate: no suggestion" unknown_is frobnicate ""
out=$("$SNAPMIG" help pivto 2>&1); rc=$?
check "help pivto exits 2" test $rc -eq 2
check "help pivto: did you mean 'pivot'" grep -qF "did you mean 'pivot'?" <<<"$out"

# ---- 4. usage errors exit 2, on every command ---------------------------
# A missing required option or argument: each command run with none (stdin
# empty).  migrate-finish needs no option: its cookie comes on stdin.
# What each command needs besides the option under test, with a state
# directory of the test's own where the command would make one.
mkdir -p "$T/dom" "$T/state"
echo '<domainsnapshot/>' >"$T/x.xml"
NS="$T/nobody.qmp"
declare -A needs=(
  [disks]="--qmp $NS" [check-xml]="$T/x.xml" [list]="--qmp $NS"
  [dumpxml]="--qmp $NS s1" [delete]="--qmp $NS s1" [current]="--qmp $NS"
  [rebase]="--qmp $NS drive0" [validate]="$T/dom"
  [create]="--qmp $NS --name s1 --mirror-domain $T/dom"
  [pivot]="--qmp $NS s1" [abort]="--qmp $NS s1" [status]="--qmp $NS"
  [recover]="--qmp $NS" [migrate]="--qmp $NS --dest-domain $T/dom"
  [migrate-begin]="--qmp $NS"
  [migrate-prepare]="--dest-domain $T/dom" [migrate-perform]="--qmp $NS"
  [migrate-finish]="" [migrate-confirm]="--qmp $NS"
  [migrate-start-postcopy]="--qmp $NS" [migrate-recover]="--qmp $NS"
  [relay]="--id r1 --state-dir $T/state" [tunnel]="--id t1 --local-dir $T/dom"
  [copy-worker]="--status $T/copy.json --ready-fd 9"
)
for c in $all_commands; do
  check "the test knows what $c needs" test -n "${needs[$c]+set}"
  "$SNAPMIG" "$c" --no-such-option </dev/null >/dev/null 2>"$T/err"; rc=$?
  check "$c: an unknown option exits 2" exited $rc 2 "$T/err"
  check "$c: the unknown option is named" grep -q -- "--no-such-option" "$T/err"
  if [ "$c" != migrate-finish ]; then
    "$SNAPMIG" "$c" </dev/null >/dev/null 2>"$T/err"; rc=$?
    check "$c: nothing required given exits 2" exited $rc 2 "$T/err"
  fi
  # A bad value: a --timeout that is no number or out of range where the
  # command takes --timeout, an empty file name where it takes one; given
  # with everything else the command needs (its monitor a socket nobody
  # listens on), so that only the value can be what exit 2 is about.
  help=$("$SNAPMIG" "$c" --help 2>&1)
  read -r -a need <<<"${needs[$c]}"
  if grep -q -- '--timeout=' <<<"$help"; then
    for v in abc -5 99999999999; do
      "$SNAPMIG" "$c" "${need[@]}" --timeout="$v" </dev/null >/dev/null 2>"$T/err"; rc=$?
      check "$c --timeout=$v exits 2" exited $rc 2 "$T/err"
      check "$c --timeout=$v: the error is about --timeout" grep -q timeout "$T/err"
    done
  fi
  for o in qmp state-dir dest-domain; do
    grep -q -- "--$o=" <<<"$help" || continue
    "$SNAPMIG" "$c" "${need[@]}" --"$o"= </dev/null >/dev/null 2>"$T/err"; rc=$?
    check "$c --$o='' exits 2" exited $rc 2 "$T/err"
    check "$c --$o='': the error names --$o" grep -q -- "--$o" "$T/err"
  done
done
"$SNAPMIG" check-xml --json </dev/null >/dev/null 2>"$T/err"; rc=$?
check "check-xml --json (a flag it does not take) exits 2" exited $rc 2 "$T/err"

# ---- a VM for the rest (storage domains $A, $B; SM: its options) -----------
lsm_setup
qemu-img create -q -f qcow2 "$A/d0.qcow2" 8M
start_vm vm -drive "$(drive_opt drive0 "$A/d0.qcow2" qcow2)" || exit 1

# ---- 5. status when nothing is moving -----------------------------------
"$SNAPMIG" status "${SM[@]}" >"$T/out" 2>"$T/err"; rc=$?
check "status with nothing moving exits 0" exited $rc 0 "$T/err"
check "status says nothing is moving" \
  grep -qxF "nothing is moving: the VM has no current snapshot" "$T/out"
"$SNAPMIG" status "${SM[@]}" --json >"$T/out" 2>"$T/err"; rc=$?
check "status --json with nothing moving exits 0" exited $rc 0 "$T/err"
check "status --json: moving false" \
  test "$(jq -c . "$T/out" 2>&1)" = '{"snapshot":null,"moving":false}'
"$SM_TOP/tests/tools/json-check" status "$T/out" | sed 's/^/# /'
check "status --json: valid against the schema" test "${PIPESTATUS[0]}" -eq 0
"$SNAPMIG" status "${SM[@]}" nosuch >"$T/out" 2>"$T/err"; rc=$?
check "status of a snapshot that does not exist exits 3 (not-found)" exited $rc 3 "$T/err"
# "nothing is moving" only about a VM that answers (status reads the state
# directory before it connects): a socket nobody serves is an error.
"$SNAPMIG" status --state-dir "$T/state" --qmp "$T/nobody.qmp" >"$T/out" 2>"$T/err"; rc=$?
check "status of a socket nobody serves exits 3 (not-found)" exited $rc 3 "$T/err"
check "status of a socket nobody serves names it" grep -qF "$T/nobody.qmp" "$T/err"

# status of a move whose mirrors are ready and copies done (create --wait
# returned) shows it and says that nothing moves any more; once pivoted,
# nothing is moving at all.  (While create --wait runs: test-cli-watch.sh.)
fresh_move 1
"$SNAPMIG" status "${SM[@]}" >"$T/out" 2>"$T/err"; rc=$?
check "status of a ready move exits 0" exited $rc 0 "$T/err"
check "status of a ready move shows the snapshot" grep -qxF "snapshot p1" "$T/out"
check "status of a ready move: nothing is moving; ready to pivot" \
  grep -qxF "nothing is moving; ready to pivot (snapmig pivot p1)" "$T/out"
"$SNAPMIG" status "${SM[@]}" --json >"$T/out" 2>"$T/err"; rc=$?
check "status --json of a ready move exits 0" exited $rc 0 "$T/err"
check "status --json of a ready move: ready-to-pivot true" \
  test "$(jq '."ready-to-pivot"' "$T/out" 2>&1)" = true
"$SNAPMIG" pivot "${SM[@]}" p1 >"$T/out" 2>"$T/err"; rc=$?
check "pivot p1 exits 0" exited $rc 0 "$T/err"
"$SNAPMIG" status "${SM[@]}" >"$T/out" 2>"$T/err"; rc=$?
check "status after the pivot exits 0" exited $rc 0 "$T/err"
check "status after the pivot says nothing is moving" \
  grep -qxF "nothing is moving: the VM has no current snapshot" "$T/out"

# ---- 6. SNAPMIG_DEBUG as --debug, with timestamps ---------------------------
stamp='^snapmig: debug: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z [a-z-]+: '
# debug_lines FILE: FILE has debug lines, every one with its timestamp.
debug_lines () {
  local n all
  n=$(grep -c '^snapmig: debug:' "$1"); all=$(grep -cE "$stamp" "$1")
  [ "$n" -gt 0 ] && [ "$n" -eq "$all" ] && return 0
  echo "# $n debug lines, $all with a timestamp:"; head -n 5 "$1" | sed 's/^/#   /'
  return 1
}
"$SNAPMIG" disks --qmp "$T/vm.qmp" --debug >/dev/null 2>"$T/err"; rc=$?
check "disks --debug exits 0" exited $rc 0 "$T/err"
check "--debug: timestamped debug lines" debug_lines "$T/err"
SNAPMIG_DEBUG=1 "$SNAPMIG" disks --qmp "$T/vm.qmp" >/dev/null 2>"$T/err"; rc=$?
check "SNAPMIG_DEBUG=1 disks exits 0" exited $rc 0 "$T/err"
check "SNAPMIG_DEBUG=1: timestamped debug lines" debug_lines "$T/err"
check "SNAPMIG_DEBUG=1: QMP messages logged" grep -q 'query-block' "$T/err"
SNAPMIG_DEBUG=1 "$SNAPMIG" status "${SM[@]}" >/dev/null 2>"$T/err"; rc=$?
check "SNAPMIG_DEBUG=1 status: timestamped debug lines" debug_lines "$T/err"
for v in 0 ""; do
  SNAPMIG_DEBUG=$v "$SNAPMIG" disks --qmp "$T/vm.qmp" >/dev/null 2>"$T/err"
  check "SNAPMIG_DEBUG='$v': no debug lines" not grep -q 'debug:' "$T/err"
done
env -u SNAPMIG_DEBUG "$SNAPMIG" disks --qmp "$T/vm.qmp" >/dev/null 2>"$T/err"
check "no --debug: no debug lines" not grep -q 'debug:' "$T/err"

# ---- 7. bash completion ---------------------------------------------------
comp="$SM_TOP/completions/snapmig.bash"
# complete_words WORD...: what the completion offers for the command line
# WORD... (the last word being completed), one a line, in a fresh bash with
# the build's snapmig first in PATH.
complete_words () {
  PATH="$SM_TOP/cli:$PATH" bash --norc --noprofile -c '
    source "$1" || exit 1; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    _snapmig; printf "%s\n" "${COMPREPLY[@]}"' _ "$comp" "$@"
}
# offers WANT WORD...: the completion of WORD... is exactly the lines WANT.
offers () {
  local want=$1 got; shift
  got=$(complete_words "$@" | sort)
  [ "$got" = "$(sort <<<"$want")" ] && return 0
  echo "# completing '$*': got:"; sed 's/^/#   /' <<<"$got"; return 1
}
out=$(bash --norc --noprofile -c 'source "$1" && complete -p snapmig' _ "$comp" 2>&1)
check "sourcing the completion registers it" \
  test "$out" = "complete -o filenames -F _snapmig snapmig"
check "snapmig mig<TAB>: the migrate commands" \
  offers "$(grep '^migrate' <<<"$commands")" snapmig mig
check "snapmig migrate --tu<TAB>: --tunnel" offers "--tunnel" snapmig migrate --tu
check "snapmig help pi<TAB>: pivot" offers "pivot" snapmig help pi
check "snapmig status --j<TAB>: --json" offers "--json" snapmig status --j
check "snapmig --ver<TAB>: --version" offers "--version" snapmig --ver
check "the hidden tunnel helper is not offered" offers "" snapmig tunn
touch "$T/sock-for-completion"
check "snapmig disks --qmp FILE<TAB>: file names" \
  offers "$T/sock-for-completion" snapmig disks --qmp "$T/sock-for-c"
check "snapmig disks --qmp=FILE<TAB>: file names" \
  offers "$T/sock-for-completion" snapmig disks --qmp = "$T/sock-for-c"
# Every option a command's --help lists is offered after `--`.
for c in $commands; do
  want=$("$SNAPMIG" "$c" --help-all | grep -oE '^  (-[a-zA-Z], )?--[a-z][a-z0-9-]*' |
         grep -oE -- '--[a-z][a-z0-9-]*' | grep -vxE -- '--help(-all|-[a-z]+)?' |
         sort -u)
  check "snapmig $c --<TAB>: every option of its --help" offers "$want" snapmig "$c" --
done

# make install puts it where bash-completion finds it.
make -C "$SM_TOP" -s install PREFIX=/usr DESTDIR="$T/root" >"$T/install.log" 2>&1; rc=$?
check "make install DESTDIR=... exits 0" exited $rc 0 "$T/install.log"
check "make install installs the completion" \
  cmp "$comp" "$T/root/usr/share/bash-completion/completions/snapmig"

# ---- 8. errors name the fix -------------------------------------------------
# A storage domain that does not exist: the mkdir to run.
"$SNAPMIG" create "${SM[@]}" --mirror-domain "$T/nodom" --name e0 >"$T/out" 2>"$T/err"; rc=$?
check "create into a missing domain exits 3 (not-found)" exited $rc 3 "$T/err"
check "it says to mkdir the domain" \
  grep -qF "$T/nodom: No such file or directory (create it with 'mkdir -p $T/nodom'" "$T/err"
"$SNAPMIG" validate "$T/nodom" >"$T/out" 2>"$T/err"; rc=$?
check "validate of a missing domain exits 3 (not-found)" exited $rc 3 "$T/err"
check "validate says to mkdir the domain" \
  grep -qF "storage domain $T/nodom: No such file or directory (create it with 'mkdir -p $T/nodom'" "$T/err"
# A wrong disk name: the VM's disks.
"$SNAPMIG" create "${SM[@]}" --diskspec drive9 --name e0 >"$T/out" 2>"$T/err"; rc=$?
check "create of a wrong disk exits 3 (not-found)" exited $rc 3 "$T/err"
check "it lists the VM's disks" \
  grep -qxF "snapmig: error: create: the VM has no disk drive9 (its disks: drive0)" "$T/err"
# A wrong snapshot name: the snapshots there are (or that there are none).
"$SNAPMIG" pivot "${SM[@]}" nosuch >"$T/out" 2>"$T/err"; rc=$?
check "pivot of a wrong snapshot exits 3 (not-found)" exited $rc 3 "$T/err"
check "it says the VM has no snapshots" \
  grep -qF "snapshot 'nosuch' not found for VM $T/vm.qmp (it has no snapshots)" "$T/err"
"$SNAPMIG" create "${SM[@]}" --diskspec drive0 --name e2 >"$T/out" 2>"$T/err"; rc=$?
check "create e2 exits 0" exited $rc 0 "$T/err"
"$SNAPMIG" create "${SM[@]}" --diskspec drive0 --name e1 >"$T/out" 2>"$T/err"; rc=$?
check "create e1 exits 0" exited $rc 0 "$T/err"
for cmd in pivot abort dumpxml delete; do
  "$SNAPMIG" $cmd "${SM[@]}" nosuch >"$T/out" 2>"$T/err"; rc=$?
  check "$cmd of a wrong snapshot exits 3 (not-found)" exited $rc 3 "$T/err"
  check "$cmd lists the snapshots" \
    grep -qF "snapshot 'nosuch' not found for VM $T/vm.qmp (its snapshots: e1, e2; see 'snapmig list')" "$T/err"
done

done_testing
