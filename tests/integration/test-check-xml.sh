#!/usr/bin/env bash
# `snapmig check-xml FILE...`: libvirt's own snapshot documents and
# migration cookies (../shared/corpus) validate, the two libvirt refuses
# are refused with a message naming the problem, and malformed, missing,
# DTD-carrying and meaningless files fail with exit status 1 and a message
# naming the file.  A document's external entities and DTD are never read.
source "$(dirname "$0")/lib.sh"

CORPUS="$SHARED/corpus"
[ -d "$SHARED" ] || skip_all "../shared (libvirt's test corpus) is absent"
[ -x "$SNAPMIG" ] || { echo "# $SNAPMIG is not built"; exit 1; }

# run FILE...: runs check-xml, leaving the exit status in $rc and the
# output in $T/out and $T/err.
run () {
  "$SNAPMIG" check-xml "$@" >"$T/out" 2>"$T/err"
  rc=$?
}

# expect_invalid DESCRIPTION FILE NEEDLE...: exit 1, nothing on stdout, one
# error line naming FILE and containing every NEEDLE.
expect_invalid () {
  local d=$1 f=$2 n; shift 2
  run "$f"
  if [ $rc -ne 1 ]; then
    not_ok "$d: exit status $rc, expected 1"; sed 's/^/# /' "$T/err"; return
  fi
  if [ -s "$T/out" ] || [ "$(wc -l <"$T/err")" -ne 1 ] ||
     ! grep -qF "snapmig: error: $f: " "$T/err"; then
    not_ok "$d: output"; sed 's/^/# /' "$T/out" "$T/err"; return
  fi
  for n in "$@"; do
    if ! grep -qF -- "$n" "$T/err"; then
      not_ok "$d: message lacks '$n'"; sed 's/^/# /' "$T/err"; return
    fi
  done
  ok "$d: $(sed 's/^snapmig: error: //' "$T/err")"
}

# ---- libvirt's corpus ----------------------------------------------------

valid_files=()
for f in "$CORPUS"/libvirt-domainsnapshot/in/*.xml \
         "$CORPUS"/libvirt-domainsnapshot/out/*.xml; do
  case "$f" in
    */in/disk-invalid.xml|*/in/disk-network-seclabel-invalid.xml) continue ;;
  esac
  valid_files+=("$f")
  run "$f"
  if [ $rc -eq 0 ] && [ "$(cat "$T/out")" = "$f: valid (domainsnapshot)" ] &&
     [ ! -s "$T/err" ]; then
    ok "valid: ${f#"$CORPUS"/}"
  else
    not_ok "valid: ${f#"$CORPUS"/} (exit $rc)"; sed 's/^/# /' "$T/out" "$T/err"
  fi
done
[ ${#valid_files[@]} -ge 20 ] || not_ok "corpus has ${#valid_files[@]} valid snapshots"

for f in "$CORPUS"/libvirt-migration-cookie/*.xml; do
  valid_files+=("$f")
  run "$f"
  if [ $rc -eq 0 ] && [ "$(cat "$T/out")" = "$f: valid (qemu-migration)" ] &&
     [ ! -s "$T/err" ]; then
    ok "valid cookie: ${f#"$CORPUS"/}"
  else
    not_ok "valid cookie: ${f#"$CORPUS"/} (exit $rc)"; sed 's/^/# /' "$T/out" "$T/err"
  fi
done

expect_invalid "libvirt refuses startupPolicy on a snapshot disk" \
  "$CORPUS/libvirt-domainsnapshot/in/disk-invalid.xml" \
  "line 6" "element 'source'" "startupPolicy"
expect_invalid "libvirt refuses a seclabel on a network source" \
  "$CORPUS/libvirt-domainsnapshot/in/disk-network-seclabel-invalid.xml" \
  "line 8" "'seclabel'" "'source'"

# Our own test documents.
for f in "$SM_TOP"/tests/data/*.xml; do
  valid_files+=("$f")
  run "$f"
  check "valid: tests/data/${f##*/}" test $rc -eq 0 -a ! -s "$T/err"
done

# A cookie as snapmig writes it (sm_mig_cookie_format's golden file, kept
# equal to the formatter's output by tests/unit/test-migrate-cookie), with
# its <snapmig> part; and one whose <snapmig> the schema refuses.
own_cookie="$SM_TOP/tests/data/migration-cookie-snapmig.xml"
run "$own_cookie"
check "snapmig's own cookie: exit 0" test $rc -eq 0
check "snapmig's own cookie: valid (qemu-migration)" \
  test "$(cat "$T/out")" = "$own_cookie: valid (qemu-migration)"
check "snapmig's own cookie: has its <snapmig> part" \
  test "$(grep -c '^  <snapmig ' "$own_cookie")" -eq 1
sed "s/ storage='chain' / storage='all' /" "$own_cookie" >"$T/bad-storage.xml"
expect_invalid "a cookie with an unknown storage mode" "$T/bad-storage.xml" \
  "line 10" "element 'snapmig'"

sed "s| dest-domain='/sd2' | dest-domain='sd2' |" "$own_cookie" >"$T/relative.xml"
expect_invalid "a cookie with a relative destination domain" "$T/relative.xml" \
  "migration cookie" "dest-domain 'sd2'" "absolute"

# All at once: one line per file, exit 0.
run "${valid_files[@]}"
check "all ${#valid_files[@]} valid files at once: exit 0, one line each" \
  test $rc -eq 0 -a "$(grep -c ': valid (' "$T/out")" -eq ${#valid_files[@]} -a ! -s "$T/err"

# One bad file among good ones: still every good one reported, exit 1.
run "${valid_files[0]}" "$CORPUS/libvirt-domainsnapshot/in/disk-invalid.xml" "${valid_files[1]}"
check "a bad file among good ones: exit 1, the good ones still reported" \
  test $rc -eq 1 -a "$(grep -c ': valid (' "$T/out")" -eq 2 -a "$(wc -l <"$T/err")" -eq 1

# ---- usage ----------------------------------------------------------------

run
check "no FILE: exit 2 with a usage error" \
  test $rc -eq 2 -a "$(grep -c '^snapmig: error: check-xml: no FILE' "$T/err")" -eq 1

# ---- files that are not valid documents --------------------------------------

printf '<domainsnapshot>\n  <name>a</name>\n  <disks><disk name="vda"></disks>\n</domainsnapshot>\n' \
  >"$T/malformed.xml"
expect_invalid "a malformed file" "$T/malformed.xml" "line 3" "malformed XML"

expect_invalid "a nonexistent file" "$T/no-such-file.xml" "No such file"

cat >"$T/mirror-no.xml" <<'EOF'
<domainsnapshot>
  <disks>
    <disk name='vdb' snapshot='no'>
      <mirror file='/sd2/vdb.qcow2'/>
    </disk>
  </disks>
</domainsnapshot>
EOF
expect_invalid "a mirror on a disk that gets no snapshot" "$T/mirror-no.xml" \
  "disk 'vdb'" "snapshot='external'"

cat >"$T/relative-mirror.xml" <<'EOF'
<domainsnapshot>
  <disks>
    <disk name='vda' snapshot='external' type='network'>
      <source protocol='nbd' name='vda-top'/>
      <mirror file='vda-top.qcow2' format='qcow2'/>
    </disk>
  </disks>
</domainsnapshot>
EOF
expect_invalid "a relative mirror file on a network disk" "$T/relative-mirror.xml" \
  "disk 'vda'" "'vda-top.qcow2'" "absolute"

echo '<domain type="kvm"><name>guest</name></domain>' >"$T/domain.xml"
expect_invalid "a document snapmig does not know" "$T/domain.xml" \
  "unknown root element 'domain'"

# ---- entities and DTDs are never read ------------------------------------------
# The entity and the DTD are FIFOs: opening one for reading would block
# until a writer comes, so a parser that tried would hang until `timeout`
# killed it (status 124) instead of failing at once with status 1.

mkfifo "$T/entity.fifo" "$T/dtd.fifo"
echo "TOP-SECRET-$$" >"$T/secret.txt"
cat >"$T/entity.xml" <<EOF
<?xml version="1.0"?>
<!DOCTYPE domainsnapshot [
  <!ENTITY fifo SYSTEM "file://$T/entity.fifo">
  <!ENTITY secret SYSTEM "file://$T/secret.txt">
]>
<domainsnapshot>
  <name>&secret;</name>
  <description>&fifo;</description>
</domainsnapshot>
EOF
timeout 30 "$SNAPMIG" check-xml "$T/entity.xml" >"$T/out" 2>"$T/err"
rc=$?
check "external entities: refused at once with exit 1, naming the DOCTYPE" \
  test $rc -eq 1 -a "$(grep -c "$T/entity.xml: .*DOCTYPE" "$T/err")" -eq 1
check "external entities: the secret file's content appears nowhere" \
  test "$(cat "$T/out" "$T/err" | grep -c "TOP-SECRET")" -eq 0

cat >"$T/dtd.xml" <<EOF
<?xml version="1.0"?>
<!DOCTYPE domainsnapshot SYSTEM "$T/dtd.fifo">
<domainsnapshot><name>x</name></domainsnapshot>
EOF
timeout 30 "$SNAPMIG" check-xml "$T/dtd.xml" >"$T/out" 2>"$T/err"
rc=$?
check "an external DTD is not loaded: exit 1 at once (not blocked on the FIFO)" \
  test $rc -eq 1 -a "$(grep -c "$T/dtd.xml: .*DOCTYPE" "$T/err")" -eq 1

done_testing
