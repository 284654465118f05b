#!/usr/bin/env bash
# The test library refuses `check DESC COMMAND && X` (and `|| X`): X is
# never reported, so such a line can never fail for X.  lib.sh scans every
# test script that sources it with check-shape.awk and reports each such
# line as a failing TAP line naming FILE:LINE.  Here: the detector finds
# every bad shape of a fixture (one line, continued lines, in loops and ifs,
# with redirections) and nothing in its good shapes (quoted, in $(...),
# backquotes, ${...}, comments, here-documents, `X && check`); and no test
# script of the suite has the shape.
. "$(dirname "$0")/lib.sh"

# The fixture is a here-document: its bad lines must not count against this
# script (the detector skips here-documents).  Each bad line ends with
# "#BAD", on the line where its check starts.  Every line is written with a
# leading "|" (stripped into the fixture), so that no grep for the shape over
# tests/ takes the fixture for a real check.
sed 's/^|//' >"$T/fixture.sh" <<'FIXTURE'
|check "a" [ $rc -eq 0 ] && grep -q x <<<"$out"   #BAD
|check "b" \
|  [ $? -ne 0 ] && grep -q 'm2' <<<"$out"
|check "c" gw drive0 0x13 4M 1M && gw drive1 0x22 2M 1M   #BAD
|check "d" reads A 0x55 || echo never   #BAD
|  check "e" foo >/dev/null 2>&1 && bar   #BAD
|for x in 1 2; do check "f" true && false; done   #BAD
|if true; then check "g" true || false; fi   #BAD
|check "h" [ "$(a)" = b ] &&   #BAD
|  c
|check "i" [ "$(a)" = "b && c" ] && d   #BAD
|check "j" eval '[ $rc = 0 ] && grep -q x <<<"$out"'
|check "k" [ "$(a && b)" = c ]
|check "l" grep -q "x && y" file
|ok=1 && check "m" true
|# check "n" true && false
|check "o" true   # && false
|check "p" true; x && y
|check "q" \
|  [ "$(echo "a || b")" = x ]
|check "r" [ `a && b` = c ]
|check "s" [ "${x:-a && b}" = c ]
|x <<<"$y" && check "t" true
|qemu-img check -q f || echo broken
|cat <<EOF
|check "u" true && false
|EOF
|cat <<-'EOF'
|	check "v" true && false
|	EOF
|check "w" \
|  [ "$(top_file drive0)" = "$A/x" -a \
|    "$(top_file drive1)" = "$A/y" ] && \
|  all_read
FIXTURE
# "b" and "w" are bad too: their && is on a continuation line.
b=$(grep -n '^check "b"' "$T/fixture.sh" | cut -d: -f1)
w=$(grep -n '^check "w"' "$T/fixture.sh" | cut -d: -f1)
want=$( (grep -n '#BAD$' "$T/fixture.sh" | cut -d: -f1; echo "$b"; echo "$w") |
        sort -n | sed "s|^|$T/fixture.sh:|")
got=$(check_shape "$T/fixture.sh")
rc=$?
echo "$got" | sed 's/^/# found: /'
check "the detector runs" [ $rc -eq 0 ]
check "every bad shape of the fixture is found, nothing else" [ "$got" = "$want" ]
check "a check continued onto the next line is found at its first line" \
  grep -qx "$T/fixture.sh:$b" <<<"$got"
check "a check continued over three lines is found at its first line" \
  grep -qx "$T/fixture.sh:$w" <<<"$got"

# Several files at once: each is scanned alone (an open quote at the end
# of one does not hide the next one's lines) and named.
printf '%s\n' 'echo "open quote' >"$T/f1.sh"
printf '%s\n' 'check "z" a && b' >"$T/f2.sh"
got=$(check_shape "$T/f1.sh" "$T/f2.sh" "$T/fixture.sh")
check "files are scanned one by one, each finding names its file" \
  [ "$got" = "$(printf '%s\n' "$T/f2.sh:1" "$want")" ]

# A script with the shape that sources lib.sh fails with a TAP line naming
# it (run as a test would be run).
printf '%s\n' '. "'"$SM_TOP"'/tests/integration/lib.sh"' 'check "x" true && true' \
  'done_testing' >"$T/test-bad.sh"
out=$(bash "$T/test-bad.sh" 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
check "a test with the shape fails" [ $rc -ne 0 ]
check "its TAP names the file and line" \
  grep -q "^not ok 1 - $T/test-bad.sh:2: " <<<"$out"
printf '%s\n' '. "'"$SM_TOP"'/tests/integration/lib.sh"' 'check "x" true' \
  'check "y" true' 'done_testing' >"$T/test-good.sh"
check "a test without it passes" eval 'bash "$T/test-good.sh" >/dev/null'

# The suite itself.
found=$(check_shape "$SM_TOP"/tests/integration/test-*.sh \
                    "$SM_TOP"/tests/integration/lib.sh)
echo "$found" | sed 's/^/# /'
check "no test script (nor lib.sh) has the shape" [ -z "$found" ]

done_testing
