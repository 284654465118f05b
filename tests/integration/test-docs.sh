#!/usr/bin/env bash
# The man page must describe every command `snapmig help` lists and every
# option each command's --help shows, so the two cannot drift apart.
# Its EXAMPLES of --diskspec and of a snapshot file are run as printed.
source "$(dirname "$0")/lib.sh"

man="$SM_TOP/docs/snapmig.1"
check "man page exists" test -s "$man"

commands=$("$SNAPMIG" help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {print $1}')
check "snapmig help lists commands" test -n "$commands"

for c in $commands; do
  if grep -q "^\.SS \"\?$c\b" "$man"; then ok "man page has a section for '$c'"
  else not_ok "man page has a section for '$c'"; fi
  help=$("$SNAPMIG" "$c" --help 2>&1); rc=$?
  check "'snapmig $c --help' exits 0" test $rc -eq 0
  # Options as GOption prints them: "  -j, --json   ..." or "  --qmp=SOCKET ...".
  for opt in $(printf '%s\n' "$help" | grep -oE '^  (-[a-zA-Z], )?--[a-z][a-z0-9-]*' | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
    case "$opt" in --help|--help-all) continue ;; esac
    # The man page writes options as \-\-name.
    if grep -qF -- "$(echo "$opt" | sed 's/-/\\-/g')" "$man"; then ok "man page documents $c $opt"
    else not_ok "man page documents $c $opt"; fi
  done
done

# Both pages render without a warning (man -l, 80 columns, as a reader
# sees them); snapmig-json(7), the JSON contract, names every command and
# snapmig(1) points to it.
man7="$SM_TOP/docs/snapmig-json.7"
for page in "$man" "$man7"; do
  warnings=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$page" 2>&1 >/dev/null)
  [ -z "$warnings" ] || sed 's/^/# /' <<<"$warnings"
  check "$(basename "$page") renders without warnings" test -z "$warnings"
done
for c in $commands; do
  check "snapmig-json(7) covers '$c'" grep -qE "^\.(BR?|RB \() ?${c//-/\\\\-}( |,|\$)" "$man7"
done
check "snapmig(1) refers to snapmig-json(7)" grep -qF '.BR snapmig\-json (7)' "$man"
# make install puts the page and the schema where the page says.
make -C "$SM_TOP" -s install PREFIX=/usr DESTDIR="$T/root" >"$T/install.log" 2>&1
check "make install DESTDIR=... exits 0" test $? -eq 0
check "make install installs snapmig-json(7)" \
  cmp "$man7" "$T/root/usr/share/man/man7/snapmig-json.7"
check "make install installs the schema in share/snapmig" \
  cmp "$SM_TOP/schemas/snapmig.schema.json" "$T/root/usr/share/snapmig/snapmig.schema.json"

# `snapmig help CMD` and `snapmig CMD --help` agree; an unknown command is a
# usage error naming it.
out=$("$SNAPMIG" frobnicate 2>&1); rc=$?
check "unknown command exits 2" test $rc -eq 2
check "unknown command is named" grep -q "frobnicate" <<<"$out"
check "--version prints the version" grep -qE '^snapmig [0-9]+\.[0-9]+' <<<"$("$SNAPMIG" --version)"

# The EXAMPLES: the snapshot file passes check-xml as the man page prints
# it, and it and the --diskspec example take their snapshot on a real VM
# (the paths /sd1/vm1 and /sd2/vm1 made the test's $A and $B, then $B and
# $C).
# example_text: the EXAMPLES section with troff's \- and \e undone.
examples=$(awk '/^\.SH EXAMPLES/ {on=1; next} on && /^\.SH / {on=0} on' "$man" |
           sed 's/\\-/-/g; s/\\e/\\/g')
sed -n '/^<domainsnapshot>$/,/^<\/domainsnapshot>$/p' <<<"$examples" >"$T/move3.xml"
check "EXAMPLES has a snapshot file" grep -q '<mirror file=' "$T/move3.xml"
out=$("$SNAPMIG" check-xml "$T/move3.xml" 2>&1); rc=$?
check "the man page's snapshot file passes check-xml" test $rc -eq 0
check "check-xml says it is a domainsnapshot" \
  grep -qxF "$T/move3.xml: valid (domainsnapshot)" <<<"$out"
# The --diskspec example: its lines from "create ... --name move2" on,
# joined where they end in a backslash.
diskspec_cmd=$(sed -n '/--name move2 /,/^[^\\]*[^\\]$/p' <<<"$examples" |
               sed -e ':a' -e '/\\$/N; s/\\\n */ /; ta')
check "EXAMPLES has a --diskspec example" grep -q -- '--diskspec drive0,' <<<"$diskspec_cmd"
if command -v qemu-system-x86_64 >/dev/null && command -v qemu-img >/dev/null; then
  A=$T/sd1/vm1 B=$T/sd2/vm1
  mkdir -p "$A" "$B" "$T/state" "$T/ex"
  qemu-img create -q -f qcow2 "$A/top.qcow2" 4M
  qemu-img create -q -f raw "$A/d1.raw" 2M
  start_vm vm -drive "$(drive_opt drive0 "$A/top.qcow2" qcow2)" \
              -drive "$(drive_opt drive1 "$A/d1.raw" raw)" || exit 1
  # example CMD: runs a command of the man page against this VM, in $T/ex
  # (where the snapshot file is), with the test's state directory.
  example () {
    local c=${1//\/run\/vm1.qmp/$T/vm.qmp}
    c=${c//\/sd1\/vm1/$A}; c=${c//\/sd2\/vm1/$B}
    (cd "$T/ex" && eval "\"\$SNAPMIG\" ${c#snapmig } --state-dir \"\$T/state\" --wait") >"$T/out" 2>&1
  }
  example "$diskspec_cmd"; rc=$?
  sed 's/^/# /' "$T/out"
  check "the --diskspec example creates its snapshot" test $rc -eq 0
  check "drive0 is mirrored to the example's file" test -s "$B/top.move2.qcow2"
  check "drive1 is left out" not grep -q drive1 "$T/out"
  "$SNAPMIG" pivot --state-dir "$T/state" --qmp "$T/vm.qmp" move2 >"$T/out" 2>&1
  check "and pivots" test $? -eq 0
  # The VM now runs in $B: the snapshot file moves it on to $C.
  C=$T/sd3/vm1
  mkdir -p "$C"
  sed -e "s|'/sd1/vm1/|'$B/|; s|'/sd2/vm1/|'$C/|" "$T/move3.xml" >"$T/ex/move3.xml"
  example "snapmig create --qmp /run/vm1.qmp --mirror move3.xml"; rc=$?
  sed 's/^/# /' "$T/out"
  check "the snapshot file example creates its snapshot" test $rc -eq 0
  check "drive0 is mirrored to the file's <mirror>" test -s "$C/top.move3.qcow2"
  check "drive1 is left out of it" not grep -q drive1 "$T/out"
else
  skip "qemu-system-x86_64 or qemu-img missing: the examples are not run"
fi

done_testing
