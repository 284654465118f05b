#!/usr/bin/env bash
# The Python bindings: `make install PREFIX=$T/inst` installs the module
# snapmig beside the library, and tests/python/test_snapmig.py (pytest, on
# Debian's python3) runs against what was installed, on real guest-less
# QEMUs: one TAP line per pytest case.
. "$(dirname "$0")/lib.sh"

PY=${SNAPMIG_PYTHON:-/usr/bin/python3}
command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 missing"
[ -x "$PY" ] || skip_all "$PY missing"
"$PY" -c 'import pytest' 2>/dev/null ||
  skip_all "python3-pytest missing (scripts/install-deps installs it)"

# QEMUs the cases started and pytest left running (pytest killed): each PID
# the fixture wrote, killed only while it still is a QEMU of this test.
at_exit 'while read -r p; do
  grep -qF "$T/" "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p"
done <"$T/qemu.pids" 2>/dev/null'

inst=$T/inst
if make -s -C "$SM_TOP" install PREFIX="$inst" PYTHON="$PY" >"$T/install.log" 2>&1; then
  ok "make install PREFIX=\$T/inst"
else
  sed 's/^/# /' "$T/install.log"
  not_ok "make install PREFIX=\$T/inst"
  done_testing
fi
pydir=$inst/lib/python$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')/dist-packages
check "the module is installed in PREFIX/lib/pythonX.Y/dist-packages" \
  [ -f "$pydir/snapmig/__init__.py" ]
# For the prefixes of a system, the directory is on python3's own path.
in_sys_path () { "$PY" -c 'import sys; sys.exit(sys.argv[1] not in sys.path)' "$1"; }
for prefix in /usr/local /usr; do
  dir=$(make -s -n -C "$SM_TOP" install-python PREFIX="$prefix" PYTHON="$PY" |
        sed -n 's|^install -d \(.*\)/snapmig$|\1|p')
  check "make install PREFIX=$prefix puts the module where $PY looks ($dir)" \
    in_sys_path "$dir"
done
check "the module records the installed library" \
  grep -qxF "LIBRARY = \"$inst/lib/libsnapmig.so.0\"" "$pydir/snapmig/_config.py"

mkdir "$T/py"
: >"$T/qemu.pids"
env -u SNAPMIG_LIBRARY PYTHONPATH="$pydir" PYTHONDONTWRITEBYTECODE=1 \
  SNAPMIG_TEST_DIR="$T/py" SNAPMIG_TEST_PIDFILE="$T/qemu.pids" \
  SNAPMIG_TEST_SMQ="$SMQ" SNAPMIG_TEST_PYTHONDIR="$pydir" \
  "$PY" -m pytest -p no:cacheprovider -q -rA --junitxml="$T/junit.xml" \
  "$SM_TOP/tests/python/test_snapmig.py" >"$T/pytest.out" 2>&1 &
_sm_pids+=("$!")
wait "$!"
rc=$?

# One line per case from pytest's junit report: PASS|FAIL|SKIP NAME.
cases=$("$PY" - "$T/junit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
for case in ET.parse(sys.argv[1]).iter("testcase"):
    kinds = {child.tag for child in case}
    state = ("FAIL" if kinds & {"failure", "error"} else
             "SKIP" if "skipped" in kinds else "PASS")
    print(state, case.get("name"))
EOF
)
n=0
while read -r state name; do
  [ -n "$state" ] || continue
  n=$((n + 1))
  case $state in
    PASS) ok "pytest: $name" ;;
    SKIP) skip "pytest: $name" ;;
    *) not_ok "pytest: $name" ;;
  esac
done <<<"$cases"
check "pytest ran cases" [ "$n" -gt 0 ]
# qemu_left: the QEMUs of the cases still running (each case kills its own).
qemu_left () {
  local p left=0
  while read -r p; do
    if grep -qF "$T/" "/proc/$p/cmdline" 2>/dev/null; then
      echo "# QEMU $p of a case is still running"; left=1
    fi
  done <"$T/qemu.pids"
  return $left
}
check "the cases started QEMUs" [ -s "$T/qemu.pids" ]
check "every QEMU a case started is gone" qemu_left
check "pytest exits 0" [ "$rc" -eq 0 ]
if [ "$rc" -ne 0 ]; then sed 's/^/# /' "$T/pytest.out"; fi

done_testing
