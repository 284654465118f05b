/* Unit tests for lib/validate.c: storage domains built with the real
 * qemu-img (and headers patched by hand where qemu-img refuses to write the
 * defect), one defect per case, each checked to be reported exactly once
 * with the right severity and nothing else reported; malicious backing
 * names pointing at FIFOs (opening one read-only blocks, so finishing at
 * all proves it was not opened); truncated and bit-flipped headers; and
 * VMs (real QEMU) whose open images count as used.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "harness.h"
#include "journal.h"
#include "lsm.h"
#include "precreate.h"
#include "snapshot-xml.h"
#include "state.h"
#include "validate.h"

#define MiB (1ULL << 20)

/* ---- helpers ---------------------------------------------------------- */

static char *
path_in (const char *dir, const char *name)
{
  return g_build_filename (dir, name, NULL);
}

static char *
new_domain (const char *tmp, const char *name)
{
  char *dir = path_in (tmp, name);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  return dir;
}

static void
qcow2 (const char *dir, const char *name, uint64_t size, const char *backing,
       const char *fmt)
{
  g_autofree char *path = path_in (dir, name);

  g_assert_true (sm_test_create_qcow2 (path, size, backing, fmt));
}

/* qemu-img create -u: writes BACKING into the header without opening it,
 * so a test can name files that must never be opened. */
static void
qcow2_unsafe (const char *dir, const char *name, uint64_t size,
              const char *backing, const char *fmt)
{
  g_autofree char *path = path_in (dir, name);
  g_autofree char *sz = g_strdup_printf ("%" G_GUINT64_FORMAT, size);

  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-u",
                                   "-F", fmt, "-b", backing, path, sz, NULL));
}

static void
raw (const char *dir, const char *name, uint64_t size)
{
  g_autofree char *path = path_in (dir, name);

  g_assert_true (sm_test_create_raw (path, size));
}

static void
or_byte (const char *path, off_t off, uint8_t bits)
{
  int fd = open (path, O_RDWR | O_CLOEXEC);
  uint8_t b;

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pread (fd, &b, 1, off), ==, 1);
  b |= bits;
  g_assert_cmpint (pwrite (fd, &b, 1, off), ==, 1);
  close (fd);
}

/* Changes the backing format extension's type to an unknown one (which
 * QEMU ignores): the backing format is then not stated, a header qemu-img
 * 7.2 refuses to write. */
static void
drop_backing_format (const char *path)
{
  static const uint8_t type[4] = { 0xe2, 0x79, 0x2a, 0xca };
  g_autofree char *data = NULL;
  gsize len;
  gsize i;

  g_assert_true (g_file_get_contents (path, &data, &len, NULL));
  for (i = 104; i + 4 <= len && i < 4096; i += 8)
    if (memcmp (data + i, type, 4) == 0) {
      int fd = open (path, O_RDWR | O_CLOEXEC);
      static const uint8_t other[4] = { 0x12, 0x34, 0x56, 0x78 };

      g_assert_cmpint (fd, >=, 0);
      g_assert_cmpint (pwrite (fd, other, 4, (off_t) i), ==, 4);
      close (fd);
      return;
    }
  g_assert_not_reached ();
}

static SmValidateReport *
run_full (const char *const *domains, SmValidateVm *const *vms, size_t n_vms,
          const char *state_dir)
{
  SmValidateOptions opts = {
    .domains = domains, .vms = vms, .n_vms = n_vms, .state_dir = state_dir,
  };
  g_autoptr(GError) err = NULL;
  SmValidateReport *r;

  /* A FIFO opened by mistake would block forever: fail instead. */
  alarm (60);
  r = sm_validate_run (&opts, &err);
  alarm (0);
  g_assert_no_error (err);
  g_assert_nonnull (r);
  return r;
}

static SmValidateReport *
run1 (const char *domain)
{
  const char *domains[] = { domain, NULL };

  return run_full (domains, NULL, 0, NULL);
}

static gint
str_ptr_cmp (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Checks that the findings are exactly EXPECTED ("severity code FILE" with
 * FILE the base name or "-", NULL-terminated, any order). */
static void
expect_findings (const SmValidateReport *r, const char *const *expected)
{
  g_autoptr(GPtrArray) got = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) want = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *got_s = NULL;
  g_autofree char *want_s = NULL;
  guint i;

  for (i = 0; i < r->findings->len; i++) {
    const SmFinding *f = r->findings->pdata[i];
    g_autofree char *base = f->file ? g_path_get_basename (f->file)
                                    : g_strdup ("-");

    g_ptr_array_add (got, g_strdup_printf
                     ("%s %s %s", sm_severity_to_string (f->severity),
                      f->code, base));
    g_test_message ("finding: %s", f->message);
  }
  for (i = 0; expected[i]; i++)
    g_ptr_array_add (want, g_strdup (expected[i]));
  g_ptr_array_sort (got, str_ptr_cmp);
  g_ptr_array_sort (want, str_ptr_cmp);
  g_ptr_array_add (got, NULL);
  g_ptr_array_add (want, NULL);
  got_s = g_strjoinv ("\n", (char **) got->pdata);
  want_s = g_strjoinv ("\n", (char **) want->pdata);
  g_assert_cmpstr (got_s, ==, want_s);
}

static const SmFinding *
find (const SmValidateReport *r, const char *code)
{
  guint i;

  for (i = 0; i < r->findings->len; i++) {
    const SmFinding *f = r->findings->pdata[i];

    if (strcmp (f->code, code) == 0)
      return f;
  }
  return NULL;
}

/* ---- clean domains ---------------------------------------------------- */

static void
test_clean (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *dom = new_domain (tmp, "dom");
  g_autofree char *sub = new_domain (dom, "images/b");
  g_autofree char *readme = path_in (dom, "README");
  g_autofree char *ext = path_in (dom, "ext.qcow2");
  g_autofree char *data_opt = g_strdup_printf ("data_file=%s/ext.raw", dom);
  g_autofree char *hidden = path_in (dom, ".hidden.qcow2");
  g_autoptr(SmValidateReport) r = NULL;
  g_autoptr(json_object) json = NULL;
  json_object *summary, *v;
  const char *none[] = { NULL };
  guint i;

  qcow2 (dom, "base.qcow2", 64 * MiB, NULL, NULL);
  qcow2 (dom, "mid.qcow2", 0, "base.qcow2", "qcow2");
  qcow2 (dom, "top.qcow2", 0, "mid.qcow2", "qcow2");
  raw (dom, "images/b/base.raw", 32 * MiB);
  /* oVirt names volumes without an extension: a raw file named by a
   * backing file is an image whatever its name. */
  raw (dom, "images/b/0f3c", 16 * MiB);
  qcow2 (dom, "images/b/vol1", 0, "0f3c", "raw");
  /* An external data file inside the domain belongs to its image.
   * (qemu-img create takes a relative data_file name relative to its own
   * working directory, so the test gives an absolute one.) */
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o",
                                   data_opt, ext, "1M", NULL));
  /* Neither images nor problems. */
  g_assert_true (g_file_set_contents (readme, "x", -1, NULL));
  g_assert_true (g_file_set_contents (hidden, "junk", -1, NULL));
  (void) sub;

  r = run1 (dom);
  expect_findings (r, none);
  g_assert_cmpuint (r->images->len, ==, 8);
  g_assert_cmpuint (r->chains->len, ==, 4);
  for (i = 0; i < r->chains->len; i++)
    g_assert_true (((SmValidateChain *) r->chains->pdata[i])->complete);
  g_assert_true (sm_validate_report_clean (r, true));

  json = sm_validate_report_to_json (r, false);
  g_assert_true (json_object_object_get_ex (json, "summary", &summary));
  g_assert_true (json_object_object_get_ex (summary, "images", &v));
  g_assert_cmpint (json_object_get_int (v), ==, 8);
  g_assert_true (json_object_object_get_ex (summary, "clean", &v));
  g_assert_true (json_object_get_boolean (v));
}

static void
test_missing_domain (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *nope = path_in (tmp, "nope");
  g_autofree char *file = path_in (tmp, "file");
  const char *d1[] = { nope, NULL };
  const char *d2[] = { file, NULL };
  SmValidateOptions opts = { .domains = d1 };
  g_autoptr(GError) err = NULL;
  SmValidateReport *r;

  r = sm_validate_run (&opts, &err);
  g_assert_null (r);
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, nope));
  g_clear_error (&err);

  g_assert_true (g_file_set_contents (file, "x", -1, NULL));
  opts.domains = d2;
  r = sm_validate_run (&opts, &err);
  g_assert_null (r);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
}

/* ---- header defects --------------------------------------------------- */

static void
test_headers (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *dom = new_domain (tmp, "dom");
  g_autofree char *trunc = path_in (dom, "truncated.qcow2");
  g_autofree char *fake = path_in (dom, "fake.qcow2");
  g_autoptr(SmValidateReport) r = NULL;
  const char *want[] = {
    "error header-invalid truncated.qcow2",
    "error not-qcow2 fake.qcow2",
    "error corrupt corrupt.qcow2",
    "error unknown-incompatible-features future.qcow2",
    "warning dirty dirty.qcow2",
    NULL,
  };
  g_autofree char *p = NULL;

  qcow2 (dom, "truncated.qcow2", MiB, NULL, NULL);
  g_assert_cmpint (truncate (trunc, 50), ==, 0);
  g_assert_true (g_file_set_contents (fake, "not an image at all", -1,
                                      NULL));
  qcow2 (dom, "corrupt.qcow2", MiB, NULL, NULL);
  p = path_in (dom, "corrupt.qcow2");
  or_byte (p, 79, 0x02);                 /* incompatible bit 1 */
  g_free (p);
  qcow2 (dom, "future.qcow2", MiB, NULL, NULL);
  p = path_in (dom, "future.qcow2");
  or_byte (p, 74, 0x01);                 /* incompatible bit 40 */
  g_free (p);
  qcow2 (dom, "dirty.qcow2", MiB, NULL, NULL);
  p = path_in (dom, "dirty.qcow2");
  or_byte (p, 79, 0x01);                 /* incompatible bit 0 */

  r = run1 (dom);
  expect_findings (r, want);
  g_assert_false (sm_validate_report_clean (r, false));
}

/* ---- backing files ---------------------------------------------------- */

static void
test_backing_defects (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *dom = new_domain (tmp, "dom");
  g_autofree char *abs = path_in (dom, "base.qcow2");
  g_autofree char *p = NULL;
  g_autoptr(SmValidateReport) r = NULL;
  const char *want[] = {
    "error backing-missing orphan.qcow2",
    "warning backing-format-missing nofmt.qcow2",
    "warning backing-absolute abs.qcow2",
    "error backing-cycle c1.qcow2",
    "warning overlay-smaller small.qcow2",
    "warning raw-size-mismatch base.img",
    "error backing-format-mismatch says-qcow2.qcow2",
    NULL,
  };

  qcow2 (dom, "base.qcow2", 64 * MiB, NULL, NULL);
  qcow2_unsafe (dom, "orphan.qcow2", 64 * MiB, "not-there.qcow2", "qcow2");
  qcow2 (dom, "nofmt.qcow2", 0, "base.qcow2", "qcow2");
  p = path_in (dom, "nofmt.qcow2");
  drop_backing_format (p);
  qcow2_unsafe (dom, "abs.qcow2", 64 * MiB, abs, "qcow2");
  qcow2_unsafe (dom, "c1.qcow2", 64 * MiB, "c2.qcow2", "qcow2");
  qcow2_unsafe (dom, "c2.qcow2", 64 * MiB, "c1.qcow2", "qcow2");
  qcow2_unsafe (dom, "small.qcow2", 32 * MiB, "base.qcow2", "qcow2");
  raw (dom, "base.img", 10 * MiB);
  qcow2_unsafe (dom, "on-raw.qcow2", 64 * MiB, "base.img", "raw");
  raw (dom, "plain.img", 64 * MiB);
  qcow2_unsafe (dom, "says-qcow2.qcow2", 64 * MiB, "plain.img", "qcow2");

  r = run1 (dom);
  expect_findings (r, want);
  /* The suggested fix names the relative name snapmig would write. */
  g_assert_nonnull (strstr (find (r, "backing-absolute")->fix,
                            "-b 'base.qcow2'"));
  g_assert_nonnull (strstr (find (r, "backing-format-missing")->fix,
                            "-F qcow2"));
  /* The loop's images belong to no chain; the others do. */
  g_assert_cmpuint (r->images->len, ==, 11);
}

/* Backing names that leave the domain: reported, never opened.  Every
 * target outside is a FIFO, so an open would block the test. */
static void
test_escapes (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *dom = new_domain (tmp, "dom");
  g_autofree char *deep = new_domain (dom, "a/b");
  g_autofree char *outside = new_domain (tmp, "outside");
  g_autofree char *fifo = path_in (tmp, "outside.img");
  g_autofree char *fifo2 = path_in (outside, "deep.img");
  g_autofree char *link = path_in (dom, "link.img");
  g_autofree char *dirlink = path_in (dom, "a/out");
  g_autofree char *fifo_abs = NULL;
  g_autoptr(SmValidateReport) r = NULL;
  const char *want[] = {
    "error backing-escapes passwd.qcow2",
    "error backing-escapes dotdot.qcow2",
    "error backing-escapes dotdot2.qcow2",
    "error backing-escapes fifo-abs.qcow2",
    "error backing-escapes via-link.qcow2",
    "error backing-escapes via-dirlink.qcow2",
    "error backing-escapes json.qcow2",
    "error data-file-escapes data-file.qcow2",
    "warning symlink-escapes link.img",
    "warning symlink-escapes out",
    NULL,
  };
  g_autofree char *data_file = path_in (dom, "data-file.qcow2");
  g_autofree char *data_opt = g_strdup_printf ("data_file=%s/data.raw", tmp);
  guint i;

  (void) deep;
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  g_assert_cmpint (mkfifo (fifo2, 0600), ==, 0);
  fifo_abs = g_strdup (fifo);
  qcow2_unsafe (dom, "passwd.qcow2", MiB, "/etc/passwd", "raw");
  qcow2_unsafe (dom, "dotdot.qcow2", MiB, "../outside.img", "raw");
  qcow2_unsafe (dom, "a/dotdot2.qcow2", MiB, "../../outside.img", "raw");
  qcow2_unsafe (dom, "fifo-abs.qcow2", MiB, fifo_abs, "raw");
  /* A link inside the domain to the FIFO outside. */
  g_assert_cmpint (symlink (fifo, link), ==, 0);
  qcow2_unsafe (dom, "via-link.qcow2", MiB, "link.img", "raw");
  /* Lexically inside (a/out/../../x is dom/x), but the kernel applies
   * ".." after the link: a/out/../deep.img is outside/../deep.img. */
  g_assert_cmpint (symlink (outside, dirlink), ==, 0);
  qcow2_unsafe (dom, "a/b/via-dirlink.qcow2", MiB, "../out/deep.img", "raw");
  qcow2_unsafe (dom, "json.qcow2", MiB,
                "json:{\"file.filename\":\"/etc/shadow\"}", "raw");

  /* An external data file is one more name a header can point anywhere. */
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o",
                                   data_opt, data_file, "1M", NULL));

  r = run1 (dom);
  expect_findings (r, want);
  for (i = 0; i < r->findings->len; i++) {
    const SmFinding *f = r->findings->pdata[i];

    if (f->severity == SM_SEVERITY_ERROR)
      g_assert_nonnull (strstr (f->message, "not opened"));
  }
}

/* Truncated and bit-flipped headers: reported, never a crash (run this
 * under valgrind: SM_VALGRIND=1). */
static void
test_damaged_headers (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *dom = new_domain (tmp, "dom");
  g_autofree char *base = path_in (dom, "base.qcow2");
  g_autofree char *top = path_in (dom, "top.qcow2");
  g_autofree char *good = NULL;
  gsize len, cut;
  guint64 end, off64;
  guint32 len32;
  int i;

  qcow2 (dom, "base.qcow2", MiB, NULL, NULL);
  qcow2 (dom, "top.qcow2", 0, "base.qcow2", "qcow2");
  g_assert_true (g_file_get_contents (top, &good, &len, NULL));

  for (cut = 0; cut < 400; cut += 7) {
    g_autoptr(SmValidateReport) r = NULL;

    g_assert_true (g_file_set_contents (top, good, (gssize) cut, NULL));
    r = run1 (dom);
    /* A cut inside the header is an error about top.qcow2; base stays. */
    if (cut >= 4)
      g_assert_cmpuint (r->n_errors, >=, 1);
  }
  /* Flip bits in the header, its extensions and the backing name. */
  memcpy (&off64, good + 8, 8);
  memcpy (&len32, good + 16, 4);
  end = GUINT64_FROM_BE (off64) + GUINT32_FROM_BE (len32);
  g_assert_cmpuint (end, >, 104);
  g_assert_cmpuint (end, <, len);
  for (i = 0; i < 300; i++) {
    g_autoptr(SmValidateReport) r = NULL;
    g_autofree char *bad = g_memdup2 (good, len);
    int flips = g_test_rand_int_range (1, 4), k;

    for (k = 0; k < flips; k++) {
      gsize off = (gsize) g_test_rand_int_range (0, (gint32) end);

      bad[off] ^= (char) (1 << g_test_rand_int_range (0, 8));
    }
    g_assert_true (g_file_set_contents (top, bad, (gssize) len, NULL));
    r = run1 (dom);
    g_assert_cmpuint (r->images->len, >=, 1);
  }
  (void) base;
}

/* ---- leftovers and VMs ------------------------------------------------ */

/* The records snapmig's live migration code keeps in the state directory
 * (lib/lsm.h), written with the library's own writers: the VM's state
 * (its `vm` file holds the address), a create journal
 * STATE/vms/KEY/journal/OPID.journal and its OPID.created, finished
 * (last record op-phase "done") or not, and a move's lsm/NAME.created. */
static SmVmState *
vm_state (const char *state, const char *address)
{
  g_autoptr(GError) err = NULL;
  SmVmState *st = sm_vm_state_open (state, address, &err);

  g_assert_no_error (err);
  return st;
}

static void
save_created (const char *path, const char *const *files)
{
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autofree char *dir = g_path_get_dirname (path);
  g_autoptr(GError) err = NULL;

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  for (; *files; files++)
    sm_created_files_add (created, *files);
  g_assert_true (sm_created_files_save (created, path, &err));
  g_assert_no_error (err);
}

static char *
write_journal (SmVmState *st, const char *opid, const char *snapshot,
               bool done, const char *const *files)
{
  const char *dir = sm_vm_state_journal_dir (st);
  g_autofree char *record = g_strdup_printf ("%s/%s.created", dir, opid);
  g_autoptr(SmJournal) journal = NULL;
  g_autoptr(GError) err = NULL;
  SmLsmInfo info = { (char *) snapshot, NULL, g_ptr_array_new () };
  json_object *header = json_object_new_object ();
  json_object *rec = json_object_new_object ();
  char *path;

  json_object_object_add (header, "op", json_object_new_string ("create"));
  json_object_object_add (header, "opid", json_object_new_string (opid));
  json_object_object_add (header, "info", sm_lsm_info_to_json (&info));
  json_object_object_add (header, "record", json_object_new_string (record));
  g_ptr_array_unref (info.disks);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  journal = sm_journal_create (dir, opid, header, &err);
  g_assert_no_error (err);
  save_created (record, files);
  json_object_object_add (rec, "step", json_object_new_int (1));
  json_object_object_add (rec, "kind", json_object_new_string ("create-dest"));
  json_object_object_add (rec, "phase", json_object_new_string ("end"));
  g_assert_true (sm_journal_append (journal, rec, &err));
  if (done) {
    rec = json_object_new_object ();
    json_object_object_add (rec, "op-phase", json_object_new_string ("done"));
    g_assert_true (sm_journal_append (journal, rec, &err));
  }
  g_assert_no_error (err);
  path = g_strdup (sm_journal_path (journal));
  return path;
}

static void
write_move (SmVmState *st, const char *snapshot, const char *const *files)
{
  g_autofree char *path = sm_lsm_created_path (st, snapshot);

  save_created (path, files);
}

/* Without --qmp: the files an interrupted operation created inside the
 * domains are leftovers (warnings), each once; a finished operation's
 * journal, a record without a journal and the files outside the domains
 * or already gone do not count; a move's files are in use. */
static void
test_records_without_vm (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *dom = new_domain (tmp, "dom");
  g_autofree char *other = new_domain (tmp, "other");
  g_autofree char *state = path_in (tmp, "state");
  g_autofree char *made = path_in (dom, "made.qcow2");
  g_autofree char *made_base = path_in (dom, "made-base.qcow2");
  g_autofree char *gone = path_in (dom, "gone.qcow2");
  g_autofree char *outside = path_in (other, "outside.qcow2");
  g_autofree char *done_file = path_in (dom, "done.qcow2");
  g_autofree char *orphan_file = path_in (dom, "orphan.qcow2");
  g_autofree char *mv_top = path_in (dom, "mv-top.qcow2");
  g_autofree char *mv_base = path_in (dom, "mv-base.qcow2");
  g_autofree char *both = path_in (dom, "both.qcow2");
  g_autofree char *orphan = NULL;
  g_autofree char *journal = NULL;
  g_autofree char *want_fix = NULL;
  g_autofree char *done_journal = NULL;
  g_autofree char *both_journal = NULL;
  g_autoptr(SmVmState) st = vm_state (state, "/run/vm-a.qmp");
  g_autoptr(SmVmState) st2 = vm_state (state, "/run/vm-b.qmp");
  g_autoptr(SmValidateReport) r = NULL;
  const char *domains[] = { dom, NULL };
  const char *rec1[] = { made_base, made, gone, outside, NULL };
  const char *rec_done[] = { done_file, NULL };
  const char *rec_orphan[] = { orphan_file, NULL };
  const char *rec_move[] = { mv_top, mv_base, NULL };
  const char *rec_both[] = { both, NULL };
  const char *want[] = {
    "warning leftover-interrupted made.qcow2",
    "warning leftover-interrupted made-base.qcow2",
    "warning leftover-interrupted both.qcow2",
    "info move-in-progress mv-top.qcow2",
    "info move-in-progress mv-base.qcow2",
    NULL,
  };
  guint i;

  qcow2 (dom, "unused.qcow2", MiB, NULL, NULL);
  qcow2 (dom, "made-base.qcow2", MiB, NULL, NULL);
  qcow2 (dom, "made.qcow2", 0, "made-base.qcow2", "qcow2");
  qcow2 (other, "outside.qcow2", MiB, NULL, NULL);
  qcow2 (dom, "done.qcow2", MiB, NULL, NULL);
  qcow2 (dom, "orphan.qcow2", MiB, NULL, NULL);
  qcow2 (dom, "mv-base.qcow2", MiB, NULL, NULL);
  qcow2 (dom, "mv-top.qcow2", 0, "mv-base.qcow2", "qcow2");
  qcow2 (dom, "both.qcow2", MiB, NULL, NULL);
  journal = write_journal (st, "op1", "s1", false, rec1);
  done_journal = write_journal (st, "op2", "s2", true, rec_done);
  /* A record whose journal is gone: no operation recover would look at. */
  orphan = g_build_filename (sm_vm_state_journal_dir (st), "op3.created",
                             NULL);
  save_created (orphan, rec_orphan);
  write_move (st2, "m1", rec_move);
  /* A create interrupted after it saved its move: both records list the
   * file until `snapmig recover` rolls the create back. */
  both_journal = write_journal (st2, "op4", "m2", false, rec_both);
  write_move (st2, "m2", rec_both);

  r = run_full (domains, NULL, 0, state);
  expect_findings (r, want);
  for (i = 0; i < r->findings->len; i++) {
    const SmFinding *f = r->findings->pdata[i];

    /* Without a VM, whether a file is open is unknown: none is called
     * removable. */
    g_assert_null (strstr (f->message, ": removable"));
    if (strcmp (f->file, made) == 0) {
      g_assert_nonnull (strstr (f->message, "interrupted snapmig create of "
                                "snapshot s1"));
      g_assert_nonnull (strstr (f->message, journal));
      want_fix = g_strdup_printf ("run 'snapmig recover --qmp %s' or, once "
                                  "--qmp shows that no VM has it open, "
                                  "remove %s", "/run/vm-a.qmp", made);
      g_assert_cmpstr (f->fix, ==, want_fix);
      g_assert_cmpstr (f->vm, ==, "/run/vm-a.qmp");
    } else if (strcmp (f->file, both) == 0) {
      g_assert_nonnull (strstr (f->message, "not removable"));
      g_assert_cmpstr (f->fix, ==, "run 'snapmig recover --qmp "
                                   "/run/vm-b.qmp'");
    } else if (strcmp (f->file, mv_top) == 0) {
      g_assert_nonnull (strstr (f->message, ": part of move m1 of VM "
                                "/run/vm-b.qmp in progress: finish it with "
                                "'snapmig pivot' or 'snapmig abort'"));
    }
  }
  /* Warnings only: clean unless --strict. */
  g_assert_true (sm_validate_report_clean (r, false));
  g_assert_false (sm_validate_report_clean (r, true));

  /* The other domain: its file is listed too. */
  g_clear_pointer (&r, sm_validate_report_free);
  r = run1 (other);
  {
    const char *none[] = { NULL };

    expect_findings (r, none);
  }
  domains[0] = other;
  g_clear_pointer (&r, sm_validate_report_free);
  r = run_full (domains, NULL, 0, state);
  {
    const char *one[] = { "warning leftover-interrupted outside.qcow2",
                          NULL };

    expect_findings (r, one);
  }
}

static SmValidateVm *
query (SmTestVm *vm)
{
  g_autoptr(GError) err = NULL;
  SmValidateVm *v = sm_validate_vm_query (sm_test_vm_qmp (vm),
                                          sm_test_vm_socket (vm), &err);

  g_assert_no_error (err);
  g_assert_nonnull (v);
  return v;
}

static void
save_snapshot_xml (const char *state, const char *file)
{
  g_autofree char *dir = g_build_filename (state, "vms", "key1", "snapshots",
                                           NULL);
  g_autofree char *xml_path = path_in (dir, "s1.xml");
  g_autofree char *xml = NULL;
  g_autoptr(SmSnapshotDef) def = sm_snapshot_def_new ();
  SmSnapshotDisk *disk = sm_snapshot_disk_new ("vda");

  def->name = g_strdup ("s1");
  def->has_disks = true;
  disk->snapshot = SM_SNAPSHOT_LOCATION_EXTERNAL;
  disk->type = SM_DISK_TYPE_FILE;
  disk->source = g_strdup (file);
  disk->driver_type = g_strdup ("qcow2");
  g_ptr_array_add (def->disks, disk);
  xml = sm_snapshot_format (def);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  g_assert_true (g_file_set_contents (xml_path, xml, -1, NULL));
}

static void
test_vm (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *dom = new_domain (tmp, "dom");
  g_autofree char *state = path_in (tmp, "state");
  g_autofree char *top = path_in (dom, "top.qcow2");
  g_autofree char *snap = path_in (dom, "snap.qcow2");
  g_autofree char *made = path_in (dom, "made.qcow2");
  g_autofree char *drive = g_strdup_printf
    ("file=%s,if=none,id=drive0,format=qcow2", top);
  const char *drives[] = { drive, NULL };
  const char *domains[] = { dom, NULL };
  const char *rec[] = { top, made, NULL };
  g_autoptr(SmVmState) st = NULL;
  g_autofree char *journal = NULL;
  const SmFinding *f;
  guint i;
  g_autoptr(SmTestVm) vm = NULL;
  g_autoptr(SmValidateVm) v = NULL;
  g_autoptr(SmValidateReport) r = NULL;
  const SmValidateDisk *disk;
  const char *addr;
  g_autofree char *want_in_use = NULL;
  const char *want[] = {
    "info in-use top.qcow2",
    "info in-use base.qcow2",
    "info vm-disk-domain top.qcow2",
    "info leftover-unused unused.qcow2",
    "info leftover-unused old-top.qcow2",
    "info leftover-unused old-base.qcow2",
    "warning leftover-interrupted made.qcow2",
    "warning leftover-interrupted-in-use top.qcow2",
    NULL,
  };

  qcow2 (dom, "base.qcow2", 64 * MiB, NULL, NULL);
  qcow2 (dom, "top.qcow2", 0, "base.qcow2", "qcow2");
  qcow2 (dom, "unused.qcow2", MiB, NULL, NULL);
  qcow2 (dom, "old-base.qcow2", MiB, NULL, NULL);
  qcow2 (dom, "old-top.qcow2", 0, "old-base.qcow2", "qcow2");
  qcow2 (dom, "snap.qcow2", MiB, NULL, NULL);
  qcow2 (dom, "made.qcow2", MiB, NULL, NULL);
  save_snapshot_xml (state, snap);

  vm = sm_test_vm_start (tmp, "vm", drives);
  g_assert_nonnull (vm);
  v = query (vm);
  addr = sm_test_vm_socket (vm);
  /* An interrupted create of this VM listing a file it has open. */
  st = vm_state (state, addr);
  journal = write_journal (st, "op9", "s9", false, rec);

  r = run_full (domains, &v, 1, state);
  expect_findings (r, want);
  g_assert_true (r->vms_given);
  g_assert_cmpuint (r->disks->len, ==, 1);
  disk = r->disks->pdata[0];
  g_assert_cmpstr (disk->disk, ==, "drive0");
  g_assert_cmpstr (disk->domain, ==, dom);
  g_assert_null (disk->problem);
  g_assert_cmpuint (disk->layers->len, ==, 2);
  want_in_use = g_strdup_printf ("in use by VM %s (drive0)", addr);
  g_assert_nonnull (strstr (find (r, "in-use")->message, want_in_use));
  f = find (r, "leftover-interrupted");
  g_assert_nonnull (strstr (f->message, "and not open in any VM given: "
                            "removable"));
  g_assert_nonnull (strstr (f->fix, "snapmig recover --qmp"));
  g_assert_nonnull (strstr (f->fix, made));
  f = find (r, "leftover-interrupted-in-use");
  g_assert_nonnull (strstr (f->message, "not removable"));
  g_assert_nonnull (strstr (f->message, journal));
  g_assert_null (strstr (f->fix, "remove " ));
  /* The file the VM has open is called removable nowhere. */
  for (i = 0; i < r->findings->len; i++) {
    f = r->findings->pdata[i];
    if (g_strcmp0 (f->file, top) == 0)
      g_assert_null (strstr (f->message, ": removable"));
  }
}

/* A disk whose whole chain spans two domains given (a top over base images
 * on other storage, as migrate --copy-storage-inc leaves it): complete, a
 * warning that no domain alone holds it; and one outside every domain
 * given: a loud error. */
static void
test_vm_no_domain (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *a = new_domain (tmp, "a");
  g_autofree char *b = new_domain (tmp, "b");
  g_autofree char *c = new_domain (tmp, "c");
  g_autofree char *base = path_in (a, "base.qcow2");
  g_autofree char *top = path_in (b, "top.qcow2");
  g_autofree char *lone = path_in (c, "lone.qcow2");
  g_autofree char *d0 = g_strdup_printf
    ("file=%s,if=none,id=drive0,format=qcow2", top);
  g_autofree char *d1 = g_strdup_printf
    ("file=%s,if=none,id=drive1,format=qcow2", lone);
  const char *drives[] = { d0, d1, NULL };
  const char *domains[] = { a, b, NULL };
  g_autoptr(SmTestVm) vm = NULL;
  g_autoptr(SmValidateVm) v = NULL;
  g_autoptr(SmValidateReport) r = NULL;
  const SmValidateDisk *disk;
  const char *want[] = {
    "info in-use top.qcow2",
    "info in-use base.qcow2",
    "warning backing-absolute top.qcow2",
    "warning vm-disk-domains top.qcow2",
    "error vm-disk-no-domain lone.qcow2",
    NULL,
  };

  qcow2 (a, "base.qcow2", 64 * MiB, NULL, NULL);
  qcow2 (b, "top.qcow2", 0, base, "qcow2");
  qcow2 (c, "lone.qcow2", MiB, NULL, NULL);
  vm = sm_test_vm_start (tmp, "vm", drives);
  g_assert_nonnull (vm);
  v = query (vm);

  r = run_full (domains, &v, 1, NULL);
  expect_findings (r, want);
  g_assert_cmpuint (r->disks->len, ==, 2);
  disk = r->disks->pdata[0];
  g_assert_cmpstr (disk->domain, ==, b);
  g_assert_null (disk->problem);
  disk = r->disks->pdata[1];
  g_assert_null (disk->domain);
  g_assert_nonnull (strstr (disk->problem, "not in any domain"));
}

/* Links, hard links, the same or nested domains given twice, unreadable
 * records and snapshot metadata: each reported once, nothing counted
 * twice. */
static void
test_odd_files (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *dom = new_domain (tmp, "dom");
  g_autofree char *inner = new_domain (dom, "inner");
  g_autofree char *dom_slash = g_strconcat (dom, "/", NULL);
  g_autofree char *state = path_in (tmp, "state");
  g_autofree char *snaps = g_build_filename (state, "vms", "k", "snapshots",
                                             NULL);
  g_autofree char *bad_xml = path_in (snaps, "broken.xml");
  g_autoptr(SmVmState) st = vm_state (state, "/run/vm-odd.qmp");
  g_autofree char *record = g_build_filename (sm_vm_state_journal_dir (st),
                                              "op3.created", NULL);
  g_autofree char *journal = g_build_filename (sm_vm_state_journal_dir (st),
                                               "op3.journal", NULL);
  g_autofree char *base = path_in (dom, "base.qcow2");
  g_autofree char *hard = path_in (dom, "hard.qcow2");
  g_autofree char *alias = path_in (dom, "alias.qcow2");
  g_autofree char *dangling = path_in (dom, "dangling.img");
  const char *domains[] = { dom, dom_slash, inner, NULL };
  g_autoptr(SmValidateReport) r = NULL;
  const char *want[] = {
    "warning symlink-dangling dangling.img",
    "warning record-invalid op3.created",
    "warning snapshot-metadata-invalid broken.xml",
    NULL,
  };

  qcow2 (dom, "base.qcow2", MiB, NULL, NULL);
  g_assert_cmpint (link (base, hard), ==, 0);
  qcow2 (dom, "inner/top.qcow2", 0, "../hard.qcow2", "qcow2");
  g_assert_cmpint (symlink ("base.qcow2", alias), ==, 0);
  g_assert_cmpint (symlink ("nothing-here", dangling), ==, 0);
  qcow2 (dom, "via-alias.qcow2", 0, "alias.qcow2", "qcow2");
  g_assert_cmpint (g_mkdir_with_parents (sm_vm_state_journal_dir (st), 0700),
                   ==, 0);
  g_assert_true (g_file_set_contents (journal, "", -1, NULL));
  g_assert_true (g_file_set_contents (record, "relative/path\n", -1, NULL));
  g_assert_cmpint (g_mkdir_with_parents (snaps, 0700), ==, 0);
  g_assert_true (g_file_set_contents (bad_xml, "<domainsnapshot>", -1,
                                      NULL));

  r = run_full (domains, NULL, 0, state);
  expect_findings (r, want);
  /* base.qcow2 (= hard.qcow2 = alias.qcow2), top, via-alias. */
  g_assert_cmpuint (r->images->len, ==, 3);
  g_assert_cmpuint (r->chains->len, ==, 2);
}

/* Issue 8, break 9: a guest wrote a qcow2 header (naming a host file as
 * backing, and a size that is not the disk's) into its raw disk.  Whoever
 * states the format wins over the content: an overlay that states its
 * backing raw (without a VM), or QEMU (sm_validate_vm_from_block, from a
 * query-block reply).  The header is then never followed or judged. */
static void
test_guest_header_in_raw (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *dom = new_domain (tmp, "dom");
  g_autofree char *disk = path_in (dom, "disk.img");
  g_autofree char *hdr = path_in (tmp, "hdr.qcow2");
  g_autofree char *data = NULL;
  g_autofree char *reply = NULL;
  g_autoptr(json_object) blocks = NULL;
  g_autoptr(json_object) empty = json_object_new_array ();
  g_autoptr(GError) err = NULL;
  g_autoptr(SmBlockVm) bvm = NULL;
  g_autoptr(SmValidateVm) vm = NULL;
  g_autoptr(SmValidateReport) r = NULL;
  g_autoptr(SmValidateReport) r2 = NULL;
  const char *domains[] = { dom, NULL };
  const char *want_overlay[] = {
    "warning backing-format-raw-has-magic top.qcow2",
    "info raw-stated disk.img",
    NULL,
  };
  gsize len;
  int fd;
  guint i;

  raw (dom, "disk.img", 16 * MiB);
  qcow2_unsafe (tmp, "hdr.qcow2", 64 * MiB, "/etc/passwd", "raw");
  g_assert_true (g_file_get_contents (hdr, &data, &len, NULL));
  fd = open (disk, O_WRONLY | O_CLOEXEC);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pwrite (fd, data, MIN (len, 65536), 0), ==,
                   (ssize_t) MIN (len, 65536));
  close (fd);

  /* QEMU states raw: a query-block reply for a VM on the raw disk. */
  reply = g_strdup_printf (
    "[{\"device\": \"drive0\", \"inserted\": {\"node-name\": \"#b1\", "
    "\"drv\": \"raw\", \"file\": \"%s\", \"ro\": false, \"image\": "
    "{\"filename\": \"%s\", \"format\": \"raw\", \"virtual-size\": %llu}}}]",
    disk, disk, (unsigned long long) (16 * MiB));
  blocks = json_tokener_parse (reply);
  bvm = sm_block_vm_parse (blocks, empty, NULL, &err);
  g_assert_no_error (err);
  vm = sm_validate_vm_from_block (bvm, "vm.qmp");
  r = run_full (domains, &vm, 1, NULL);
  g_assert_cmpuint (r->n_errors, ==, 0);
  g_assert_nonnull (find (r, "raw-stated"));
  g_assert_cmpuint (r->disks->len, ==, 1);
  g_assert_null (((SmValidateDisk *) r->disks->pdata[0])->problem);
  for (i = 0; i < r->images->len; i++) {
    const SmValidateImage *im = r->images->pdata[i];

    g_assert_cmpint (im->format, ==, SM_IMAGE_FORMAT_RAW);
    g_assert_true (g_str_has_prefix (im->raw_by, "VM vm.qmp"));
    g_assert_null (im->backing_name);
  }

  /* No VM, but an overlay states its backing file raw. */
  qcow2_unsafe (dom, "top.qcow2", 16 * MiB, "disk.img", "raw");
  r2 = run1 (dom);
  expect_findings (r2, want_overlay);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/validate/clean", test_clean);
  g_test_add_func ("/validate/missing-domain", test_missing_domain);
  g_test_add_func ("/validate/headers", test_headers);
  g_test_add_func ("/validate/backing-defects", test_backing_defects);
  g_test_add_func ("/validate/escapes", test_escapes);
  g_test_add_func ("/validate/damaged-headers", test_damaged_headers);
  g_test_add_func ("/validate/records-without-vm", test_records_without_vm);
  g_test_add_func ("/validate/odd-files", test_odd_files);
  g_test_add_func ("/validate/vm", test_vm);
  g_test_add_func ("/validate/vm-no-domain", test_vm_no_domain);
  g_test_add_func ("/validate/guest-header-in-raw", test_guest_header_in_raw);
  return g_test_run ();
}
