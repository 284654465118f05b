#!/usr/bin/env bash
# The man page must describe every command `snapmig help` lists and every
# option each command's --help shows, so the two cannot drift apart.
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

# `snapmig help CMD` and `snapmig CMD --help` agree; an unknown command is a
# usage error naming it.
out=$("$SNAPMIG" frobnicate 2>&1); rc=$?
check "unknown command exits 2" test $rc -eq 2
check "unknown command is named" grep -q "frobnicate" <<<"$out"
check "--version prints the version" grep -qE '^snapmig [0-9]+\.[0-9]+' <<<"$("$SNAPMIG" --version)"

done_testing
