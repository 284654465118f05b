/* Unit tests for lib/blockjob.c against a real guest-less QEMU: disks and
 * chains from query-block (also when QEMU names the top "json:{...}" after a
 * snapshot onto a pre-created overlay with a relative backing name), finding
 * disks by name, folding a snapshot back with an active commit, and
 * cancelling a READY mirror — which QEMU ends with BLOCK_JOB_COMPLETED while
 * the disk stays where it was.
 */
#include <string.h>
#include <glib.h>

#include "blockjob.h"
#include "vm-access.h"   /* design header: kept compiling */
#include "harness.h"

typedef struct {
  char *dir, *base, *top, *snap, *target;
  SmTestVm *vm;
} Fixture;

static void
setup (Fixture *f, gconstpointer data)
{
  g_autofree char *drive = NULL;
  const char *drives[2] = { NULL, NULL };

  (void) data;
  f->dir = sm_test_tmpdir ();
  f->base = g_build_filename (f->dir, "base.qcow2", NULL);
  f->top = g_build_filename (f->dir, "top.qcow2", NULL);
  f->snap = g_build_filename (f->dir, "snap.qcow2", NULL);
  f->target = g_build_filename (f->dir, "target.qcow2", NULL);
  g_assert_true (sm_test_create_qcow2 (f->base, 16 << 20, NULL, NULL));
  g_assert_true (sm_test_create_qcow2 (f->top, 0, "base.qcow2", "qcow2"));
  g_assert_true (sm_test_create_qcow2 (f->snap, 0, "top.qcow2", "qcow2"));
  drive = g_strdup_printf ("file=%s,if=none,id=drive0,format=qcow2", f->top);
  drives[0] = drive;
  f->vm = sm_test_vm_start (f->dir, "vm", drives);
  g_assert_nonnull (f->vm);
  g_assert_true (sm_test_guest_write (f->vm, "drive0", 0x11, 0, 1 << 20));
}

static void
teardown (Fixture *f, gconstpointer data)
{
  (void) data;
  sm_test_vm_free (f->vm);
  g_free (f->base); g_free (f->top); g_free (f->snap); g_free (f->target);
  g_free (f->dir);
}

static void
snapshot (Fixture *f)
{
  g_autoptr(GError) err = NULL;

  g_assert_true (sm_qmp_run (sm_test_vm_qmp (f->vm), "blockdev-snapshot-sync",
                             sm_qmp_args (&err, "s:device", "drive0",
                                          "s:snapshot-file", f->snap,
                                          "s:format", "qcow2", "s:mode",
                                          "existing", NULL), &err));
  g_assert_no_error (err);
}

static void
test_query (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmBlockDisk) disk = NULL;
  g_autoptr(GPtrArray) disks = NULL;
  const SmBlockLayer *l;

  (void) data;
  disks = sm_block_query_disks (sm_test_vm_qmp (f->vm), &err);
  g_assert_no_error (err);
  g_assert_cmpuint (disks->len, ==, 1);
  disk = sm_block_query_disk (sm_test_vm_qmp (f->vm), "drive0", &err);
  g_assert_no_error (err);
  g_assert_cmpstr (sm_block_disk_id (disk), ==, "drive0");
  g_assert_cmpstr (sm_block_disk_top (disk), ==, f->top);
  g_assert_cmpuint (disk->chain->len, ==, 2);
  l = disk->chain->pdata[1];
  g_assert_cmpstr (l->filename, ==, f->base);
  g_assert_cmpstr (l->format, ==, "qcow2");
  g_assert_cmpuint (l->virtual_size, ==, 16 << 20);
  g_clear_pointer (&disk, sm_block_disk_free);

  g_assert_null (sm_block_query_disk (sm_test_vm_qmp (f->vm), "vdq", &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, "vdq"));
  g_clear_error (&err);

  /* The overlay's header names "top.qcow2" relatively, which is not how
   * QEMU names the node it attached: QEMU reports "json:{...}". */
  snapshot (f);
  disk = sm_block_query_disk (sm_test_vm_qmp (f->vm), "drive0", &err);
  g_assert_no_error (err);
  g_assert_cmpstr (sm_block_disk_top (disk), ==, f->snap);
  g_assert_cmpuint (disk->chain->len, ==, 3);
  g_assert_cmpstr (((SmBlockLayer *) disk->chain->pdata[1])->filename, ==,
                   f->top);
}

static void
test_commit_back (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmBlockDisk) disk = NULL;
  SmQmp *qmp = sm_test_vm_qmp (f->vm);

  (void) data;
  snapshot (f);
  g_assert_true (sm_test_guest_write (f->vm, "drive0", 0x22, 2 << 20, 1 << 20));
  g_assert_true (sm_block_commit_active (qmp, "drive0", "drive0", NULL, f->top,
                                         "undo0", 20000, &err));
  g_assert_no_error (err);
  disk = sm_block_query_disk (qmp, "drive0", &err);
  /* Back on top.qcow2 — not committed further down into base. */
  g_assert_cmpstr (sm_block_disk_top (disk), ==, f->top);
  g_assert_cmpuint (disk->chain->len, ==, 2);
  g_assert_true (sm_test_guest_read (f->vm, "drive0", 0x22, 2 << 20, 1 << 20));
  g_assert_true (sm_test_guest_read (f->vm, "drive0", 0x11, 0, 1 << 20));
}

static void
test_cancel_ready_mirror (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmBlockDisk) disk = NULL;
  g_autoptr(GPtrArray) jobs = NULL;
  SmQmp *qmp = sm_test_vm_qmp (f->vm);

  (void) data;
  g_assert_true (sm_qmp_run (qmp, "drive-mirror",
                             sm_qmp_args (&err, "s:device", "drive0",
                                          "s:job-id", "m0", "s:target",
                                          f->target, "s:format", "qcow2",
                                          "s:sync", "full", NULL), &err));
  g_assert_no_error (err);
  g_assert_true (sm_block_job_wait_ready (qmp, "m0", 20000, &err));
  g_assert_no_error (err);
  jobs = sm_block_query_jobs (qmp, &err);
  g_assert_nonnull (sm_block_find_job (jobs, "m0"));
  g_assert_true (sm_block_find_job (jobs, "m0")->ready);
  g_assert_cmpstr (sm_block_find_job (jobs, "m0")->type, ==, "mirror");
  g_assert_true (sm_block_job_cancel_wait (qmp, "m0", 20000, &err));
  g_assert_no_error (err);
  disk = sm_block_query_disk (qmp, "drive0", &err);
  g_assert_cmpstr (sm_block_disk_top (disk), ==, f->top);
  /* Cancelling a job that is gone is fine. */
  g_assert_true (sm_block_job_cancel_wait (qmp, "m0", 20000, &err));
  /* Waiting for a job that does not exist says so. */
  g_assert_false (sm_block_job_wait_ready (qmp, "m0", 1000, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_FAILED);
  g_assert_nonnull (strstr (err->message, "m0"));
}

/* ---- recorded replies (tests/data/qmp/, recorded from QEMU 7.2: drive0 on
 * top.qcow2 <- mid.qcow2 <- base.qcow2 after a snapshot onto a pre-created
 * top, with a throttled block-stream running; drive1 raw) --------------- */

static json_object *
recorded (const char *name)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "..", "data",
                                                 "qmp", name, NULL);
  json_object *obj = json_object_from_file (path);

  if (!obj)
    g_error ("cannot read %s", path);
  return obj;
}

static void
test_parse_recorded (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) blocks = recorded ("rebase-vm.query-block.json");
  g_autoptr(json_object) jobs = recorded ("rebase-vm.query-block-jobs.json");
  g_autoptr(json_object) nodes =
    recorded ("rebase-vm.query-named-block-nodes.json");
  g_autoptr(SmBlockVm) vm = sm_block_vm_parse (blocks, jobs, nodes, &err);
  const SmBlockDisk *d0, *d1;
  const SmBlockLayer *top, *mid, *base;
  g_autofree char *names = NULL;

  g_assert_no_error (err);
  g_assert_cmpuint (vm->disks->len, ==, 2);
  d0 = sm_block_vm_find_disk (vm, "drive0");
  d1 = sm_block_vm_find_disk (vm, "drive1");
  g_assert_nonnull (d0);
  g_assert_nonnull (d1);
  g_assert_cmpuint (d0->chain->len, ==, 3);
  top = sm_block_disk_layer (d0, 0);
  mid = sm_block_disk_layer (d0, 1);
  base = sm_block_disk_layer (d0, 2);
  g_assert_null (sm_block_disk_layer (d0, 3));
  /* QEMU names the snapshot's top "json:{...}": its own file is kept. */
  g_assert_true (g_str_has_prefix (top->qemu_filename, "json:"));
  g_assert_cmpstr (top->filename, ==, "/tmp/sttest/top.qcow2");
  g_assert_cmpstr (top->format, ==, "qcow2");
  g_assert_cmpstr (top->backing_file, ==, "mid.qcow2");
  g_assert_cmpstr (top->node_name, ==, d0->node_name);
  g_assert_false (top->read_only);
  g_assert_cmpstr (mid->filename, ==, "/tmp/sttest/mid.qcow2");
  g_assert_cmpstr (mid->backing_file, ==, "base.qcow2");
  g_assert_nonnull (mid->node_name);
  g_assert_true (mid->read_only);
  g_assert_cmpstr (base->filename, ==, "/tmp/sttest/base.qcow2");
  g_assert_null (base->backing_file);
  g_assert_nonnull (base->node_name);
  g_assert_cmpstr (base->node_name, !=, mid->node_name);
  g_assert_cmpstr (d0->format, ==, "qcow2");
  g_assert_cmpuint (d1->chain->len, ==, 1);
  g_assert_cmpstr (sm_block_disk_layer (d1, 0)->format, ==, "raw");
  g_assert_cmpuint (vm->jobs->len, ==, 1);
  g_assert_nonnull (sm_block_find_job (vm->jobs, "snapmig-rebase-drive0"));
  g_assert_cmpstr (((SmBlockJob *) vm->jobs->pdata[0])->type, ==, "stream");
  names = sm_block_vm_disk_names (vm);
  g_assert_cmpstr (names, ==, "drive0, drive1");
}

/* Replies of the wrong shape are protocol errors naming the command, never
 * read as something else. */
static void
test_parse_wrong_shape (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) obj = json_object_new_object ();
  g_autoptr(json_object) empty = json_object_new_array ();
  g_autoptr(json_object) bad = json_tokener_parse (
    "[{\"device\": \"drive0\", \"inserted\": {\"node-name\": \"n\", "
    "\"image\": {\"filename\": \"/x.qcow2\"}}}]");

  g_assert_null (sm_block_vm_parse (obj, empty, NULL, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP_PROTOCOL);
  g_assert_nonnull (strstr (err->message, "query-block"));
  g_clear_error (&err);
  g_assert_null (sm_block_vm_parse (empty, obj, NULL, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP_PROTOCOL);
  g_assert_nonnull (strstr (err->message, "query-block-jobs"));
  g_clear_error (&err);
  g_assert_null (sm_block_vm_parse (empty, empty, obj, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP_PROTOCOL);
  g_assert_nonnull (strstr (err->message, "query-named-block-nodes"));
  g_clear_error (&err);
  /* A layer without its format: QEMU always states it. */
  g_assert_null (sm_block_vm_parse (bad, empty, NULL, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_QMP_PROTOCOL);
  g_assert_nonnull (strstr (err->message, "drive0"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/blockjob/parse-recorded", test_parse_recorded);
  g_test_add_func ("/blockjob/parse-wrong-shape", test_parse_wrong_shape);
  g_test_add ("/blockjob/query", Fixture, NULL, setup, test_query, teardown);
  g_test_add ("/blockjob/commit-back", Fixture, NULL, setup, test_commit_back,
              teardown);
  g_test_add ("/blockjob/cancel-ready-mirror", Fixture, NULL, setup,
              test_cancel_ready_mirror, teardown);
  return g_test_run ();
}
