/* Unit tests for the libvirt backend of lib/vm-access.h: the view read from
 * a domain XML libvirt 9.0 wrote during a block copy
 * (tests/data/libvirt/domain-mirror.xml, paths shortened to /T), XML that
 * is not a domain's, and — built with libvirt — the backend on libvirt's
 * own test driver (test:///default, in-process, no daemon): its domain's
 * view, run state, suspend/resume and the LIFECYCLE events that reach
 * wait_event, the shared job waits and their interruption.  Built without libvirt, --connect's answer says so.  The
 * block operations need QEMU: tests/integration/test-libvirt-access.sh.
 */
#include <signal.h>
#include <string.h>
#include <glib.h>

#include "harness.h"
#include "interrupt.h"
#include "vm-access.h"
#include "vm-libvirt.h"

static char *top_dir;

static SmBlockVm *
parse_recorded (GHashTable **ready)
{
  g_autofree char *path = g_build_filename (top_dir, "tests", "data",
                                            "libvirt", "domain-mirror.xml",
                                            NULL);
  g_autofree char *xml = NULL;
  g_autoptr(GError) err = NULL;
  SmBlockVm *view;

  g_file_get_contents (path, &xml, NULL, &err);
  g_assert_no_error (err);
  view = sm_vm_libvirt_parse_xml (xml, ready, &err);
  g_assert_no_error (err);
  return view;
}

static void
assert_layer (const SmBlockDisk *d, guint i, const char *file,
              const char *format, const char *backing, bool read_only)
{
  const SmBlockLayer *l = sm_block_disk_layer (d, i);

  g_assert_nonnull (l);
  g_assert_cmpstr (l->filename, ==, file);
  g_assert_cmpstr (l->qemu_filename, ==, file);
  g_assert_cmpstr (l->format, ==, format);
  g_assert_cmpstr (l->backing_file, ==, backing);
  g_assert_null (l->node_name);
  g_assert_cmpint (l->read_only, ==, read_only);
}

static void
test_parse_recorded (void)
{
  g_autoptr(GHashTable) ready = NULL;
  g_autoptr(SmBlockVm) view = parse_recorded (&ready);
  SmBlockDisk *vda, *vdb, *hdc;

  g_assert_cmpuint (view->disks->len, ==, 3);
  g_assert_cmpuint (view->jobs->len, ==, 0);
  g_assert_cmpuint (view->nodes->len, ==, 0);

  /* vda: the new top over the chain; found by target and by alias. */
  vda = sm_block_vm_find_disk (view, "vda");
  g_assert_nonnull (vda);
  g_assert_true (sm_block_vm_find_disk (view, "virtio-disk0") == vda);
  g_assert_cmpstr (vda->qdev, ==, "/machine/peripheral/virtio-disk0");
  g_assert_cmpstr (vda->format, ==, "qcow2");
  g_assert_cmpstr (sm_block_disk_top (vda), ==, "/T/A/s1.qcow2");
  g_assert_cmpuint (vda->chain->len, ==, 3);
  assert_layer (vda, 0, "/T/A/s1.qcow2", "qcow2", "/T/A/top.qcow2", false);
  assert_layer (vda, 1, "/T/A/top.qcow2", "qcow2", "/T/A/base.qcow2", true);
  assert_layer (vda, 2, "/T/A/base.qcow2", "qcow2", NULL, true);
  /* <mirror>'s own chain is the destination's, not the disk's. */
  g_assert_null (sm_block_disk_layer (vda, 3));

  /* vdb: raw, one layer. */
  vdb = sm_block_vm_find_disk (view, "vdb");
  g_assert_nonnull (vdb);
  g_assert_cmpuint (vdb->chain->len, ==, 1);
  assert_layer (vdb, 0, "/T/A/d1.raw", "raw", NULL, false);

  /* hdc: a cdrom without medium, an empty chain. */
  hdc = sm_block_vm_find_disk (view, "hdc");
  g_assert_nonnull (hdc);
  g_assert_null (hdc->file);
  g_assert_cmpuint (hdc->chain->len, ==, 0);
  g_assert_true (hdc->read_only);

  /* <mirror ready='yes'> on vda only. */
  g_assert_cmpuint (g_hash_table_size (ready), ==, 1);
  g_assert_true (g_hash_table_contains (ready, "vda"));
}

static void
test_parse_not_domain (void)
{
  static const char *const bad[] = {
    "", "not xml", "<domainsnapshot><disks/></domainsnapshot>",
    "<domain type='qemu'><name>x</name></domain>",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(SmBlockVm) view = sm_vm_libvirt_parse_xml (bad[i], NULL, &err);

    g_assert_null (view);
    g_assert_error (err, SM_ERROR, SM_ERROR_QMP_PROTOCOL);
  }
}

/* Without libvirt, --connect's answer names the domain, the URI and the
 * fix. */
static void
test_built_without (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmVmAccess) vm = NULL;

  if (sm_vm_access_have_libvirt ()) {
    g_test_skip ("built with libvirt");
    return;
  }
  vm = sm_vm_access_open_libvirt ("qemu:///system", "vm1", 1000, &err);
  g_assert_null (vm);
  g_assert_error (err, SM_ERROR, SM_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (err->message, "vm1"));
  g_assert_nonnull (strstr (err->message, "qemu:///system"));
  g_assert_nonnull (strstr (err->message, "snapmig was built without libvirt "
                            "(install libvirt-dev and rebuild)"));
}

static SmVmAccess *
open_test_driver (void)
{
  g_autoptr(GError) err = NULL;
  SmVmAccess *vm = sm_vm_access_open_libvirt ("test:///default", "test", 5000,
                                              &err);

  g_assert_no_error (err);
  g_assert_nonnull (vm);
  g_assert_cmpstr (vm->ops->name, ==, "libvirt");
  return vm;
}

/* The next event within 5 s: what it says. */
static char *
next_event (SmVmAccess *vm)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmVmEvent) ev = vm->ops->wait_event (vm, 5000, &err);

  g_assert_no_error (err);
  g_assert_null (ev->job);
  return g_strdup (ev->what);
}

static void
test_test_driver (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmVmAccess) vm = NULL;
  g_autoptr(SmBlockVm) view = NULL;
  g_autoptr(SmVmEvent) none = NULL;
  g_autofree char *stopped = NULL, *resumed = NULL;
  SmVmRunState st;

  if (!sm_vm_access_have_libvirt ()) {
    g_test_skip ("built without libvirt");
    return;
  }
  vm = open_test_driver ();
  /* The test driver has no block jobs: no job, not an error. */
  view = vm->ops->query_view (vm, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (view->disks->len, ==, 1);
  g_assert_cmpstr (sm_block_disk_top (view->disks->pdata[0]), ==,
                   "/guest/diskimage1");
  g_assert_cmpuint (view->jobs->len, ==, 0);

  g_assert_true (vm->ops->query_run_state (vm, &st, &err));
  g_assert_cmpint (st, ==, SM_VM_RUNNING);
  g_assert_true (vm->ops->pause (vm, &err));
  g_assert_true (vm->ops->query_run_state (vm, &st, &err));
  g_assert_cmpint (st, ==, SM_VM_PAUSED);
  stopped = next_event (vm);
  g_assert_cmpstr (stopped, ==, "stopped");
  g_assert_true (vm->ops->resume (vm, &err));
  g_assert_no_error (err);
  resumed = next_event (vm);
  g_assert_cmpstr (resumed, ==, "resumed");
  g_assert_true (vm->ops->query_run_state (vm, &st, &err));
  g_assert_cmpint (st, ==, SM_VM_RUNNING);

  /* Nothing more: a bounded wait ends with SM_ERROR_TIMEOUT. */
  none = vm->ops->wait_event (vm, 50, &err);
  g_assert_null (none);
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_clear_error (&err);

  /* The shared waits: no job is gone at once, and never gets ready; a
   * signal ends a wait. */
  g_assert_true (sm_vm_access_wait_job (vm, "vda", SM_VM_JOB_GONE, 1000, &err));
  g_assert_no_error (err);
  g_assert_false (sm_vm_access_wait_job (vm, "vda", SM_VM_JOB_READY, 1000,
                                         &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_FAILED);
  g_assert_nonnull (strstr (err->message, "block job vda of domain test at "
                            "test:///default ended before it was ready"));
  g_clear_error (&err);
  sm_interrupt_request (SIGINT);
  g_assert_false (sm_vm_access_wait_job (vm, "vda", SM_VM_JOB_GONE, 1000,
                                         &err));
  sm_interrupt_clear ();
  g_assert_error (err, SM_ERROR, SM_ERROR_INTERRUPTED);
  g_clear_error (&err);

  /* A job on a disk that has none: libvirt's refusal, naming the disk. */
  g_assert_false (vm->ops->job_complete (vm, "vda", &err));
  g_assert_nonnull (err);
  g_assert_nonnull (strstr (err->message, "vda"));
  g_clear_error (&err);
  g_assert_false (vm->ops->mirror (vm, "vdz", "/x", "qcow2", "j", false,
                                   &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
}

static void
test_open_errors (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmVmAccess) vm = NULL;

  if (!sm_vm_access_have_libvirt ()) {
    g_test_skip ("built without libvirt");
    return;
  }
  vm = sm_vm_access_open_libvirt ("test:///default", "nosuch", 1000, &err);
  g_assert_null (vm);
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, "has no domain nosuch"));
  g_clear_error (&err);
  vm = sm_vm_access_open_libvirt ("nosuchdriver:///x", "vm", 1000, &err);
  g_assert_null (vm);
  g_assert_error (err, SM_ERROR, SM_ERROR_IO);
  g_assert_nonnull (strstr (err->message, "nosuchdriver:///x"));
}

int
main (int argc, char **argv)
{
  int r;

  g_test_init (&argc, &argv, NULL);
  top_dir = sm_test_source_tree ("lib/vm-libvirt.h", NULL);
  g_test_add_func ("/vm-libvirt/parse-recorded", test_parse_recorded);
  g_test_add_func ("/vm-libvirt/parse-not-domain", test_parse_not_domain);
  /* Registered only where it means something, so that a build with
   * libvirt (CI) reports no skip. */
  if (!sm_vm_access_have_libvirt ())
    g_test_add_func ("/vm-libvirt/built-without", test_built_without);
  g_test_add_func ("/vm-libvirt/test-driver", test_test_driver);
  g_test_add_func ("/vm-libvirt/open-errors", test_open_errors);
  r = g_test_run ();
  g_free (top_dir);
  return r;
}
