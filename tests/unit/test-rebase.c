/* Unit tests for lib/rebase.c: relative backing names (pure), and planning
 * and executing block-stream against a real guest-less QEMU: a base named by
 * node name or through a symlink, the lock, a --timeout that cancels.
 */
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "harness.h"
#include "image.h"
#include "json-util.h"
#include "rebase.h"
#include "state.h"

static void
test_relative_path (void)
{
  static const struct {
    const char *dir, *target, *want;
  } cases[] = {
    { "/d", "/d/base.qcow2", "base.qcow2" },
    { "/d/", "/d/base.qcow2", "base.qcow2" },
    { "/a/b", "/a/c/base.qcow2", "../c/base.qcow2" },
    { "/a/b/c", "/base.qcow2", "../../../base.qcow2" },
    { "/", "/x/y.qcow2", "x/y.qcow2" },
    { "/a", "/a/b/c/d.qcow2", "b/c/d.qcow2" },
    /* A directory named like the file must not be taken as common. */
    { "/a/b", "/a/b", "../b" },
    { "/srv//dom", "/srv/dom/img", "img" },
  };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *got = sm_rebase_relative_path (cases[i].dir,
                                                    cases[i].target);

    g_assert_cmpstr (got, ==, cases[i].want);
  }
}

typedef struct {
  char *dir;
  char *base, *mid, *top;
  SmTestVm *vm;
} Fixture;

/* base <- mid <- top, relative names, 4 MiB of guest data in mid; the VM
 * runs top. */
static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autofree char *drive = NULL;
  const char *drives[2] = { NULL, NULL };
  SmQmp *qmp;
  g_autoptr(json_object) args = NULL;
  g_autoptr(GError) err = NULL;

  (void) data;
  f->dir = sm_test_tmpdir ();
  f->base = g_build_filename (f->dir, "base.qcow2", NULL);
  f->mid = g_build_filename (f->dir, "mid.qcow2", NULL);
  f->top = g_build_filename (f->dir, "top.qcow2", NULL);
  g_assert_true (sm_test_create_qcow2 (f->base, 16 << 20, NULL, NULL));
  g_assert_true (sm_test_create_qcow2 (f->mid, 0, "base.qcow2", "qcow2"));
  g_assert_true (sm_test_create_qcow2 (f->top, 0, "mid.qcow2", "qcow2"));
  drive = g_strdup_printf ("file=%s,if=none,id=drive0,format=qcow2", f->mid);
  drives[0] = drive;
  f->vm = sm_test_vm_start (f->dir, "vm", drives);
  g_assert_nonnull (f->vm);
  g_assert_true (sm_test_guest_write (f->vm, "drive0", 0x5a, 0, 4 << 20));
  qmp = sm_test_vm_qmp (f->vm);
  args = sm_qmp_args (&err, "s:device", "drive0", "s:snapshot-file", f->top,
                      "s:format", "qcow2", "s:mode", "existing", NULL);
  g_assert_no_error (err);
  g_assert_true (sm_qmp_run (qmp, "blockdev-snapshot-sync",
                             g_steal_pointer (&args), &err));
  g_assert_no_error (err);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  (void) data;
  sm_test_vm_free (f->vm);
  g_free (f->base);
  g_free (f->mid);
  g_free (f->top);
  g_free (f->dir);
}

/* The planner is pure: the test queries the VM view, as the CLI does. */
static SmRebasePlan *
plan_live (SmQmp *qmp, const char *disk, const char *base, uint64_t speed,
           GError **error)
{
  g_autoptr(SmBlockVm) vm = sm_block_vm_query (qmp, error);

  return vm ? sm_rebase_plan (vm, disk, base, speed, error) : NULL;
}

static const SmRebaseLayer *
layer (const SmRebasePlan *plan, guint i)
{
  return g_ptr_array_index (plan->chain, i);
}

static void
test_plan_by_node_name (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmRebasePlan) probe = NULL;
  g_autoptr(SmRebasePlan) plan = NULL;
  SmQmp *qmp = sm_test_vm_qmp (f->vm);
  json_object *args, *v;

  (void) data;
  probe = plan_live (qmp, "drive0", NULL, 0, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (probe->chain->len, ==, 3);
  g_assert_cmpstr (layer (probe, 0)->filename, ==, f->top);
  g_assert_cmpstr (layer (probe, 2)->filename, ==, f->base);
  g_assert_nonnull (layer (probe, 2)->node_name);

  plan = plan_live (qmp, "drive0", layer (probe, 2)->node_name,
                         1 << 20, &err);
  g_assert_no_error (err);
  g_assert_cmpint (plan->base_index, ==, 2);
  g_assert_cmpstr (plan->backing_file, ==, "base.qcow2");
  g_assert_true (json_object_object_get_ex (plan->command, "arguments",
                                            &args));
  g_assert_true (json_object_object_get_ex (args, "base-node", &v));
  g_assert_cmpstr (json_object_get_string (v), ==,
                   layer (probe, 2)->node_name);
  g_assert_true (json_object_object_get_ex (args, "speed", &v));
  g_assert_cmpint (json_object_get_int64 (v), ==, 1 << 20);
}

/* A base named through a symlink in another directory is the same file;
 * the name written stays relative to top's real directory. */
static void
test_plan_through_symlink (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmRebasePlan) plan = NULL;
  g_autofree char *linkdir = g_build_filename (f->dir, "elsewhere", NULL);
  g_autofree char *link = g_build_filename (linkdir, "b.qcow2", NULL);

  (void) data;
  g_assert_cmpint (g_mkdir_with_parents (linkdir, 0700), ==, 0);
  g_assert_cmpint (symlink (f->base, link), ==, 0);
  plan = plan_live (sm_test_vm_qmp (f->vm), "drive0", link, 0, &err);
  g_assert_no_error (err);
  g_assert_cmpint (plan->base_index, ==, 2);
  g_assert_cmpstr (plan->backing_file, ==, "base.qcow2");
}

static void
test_execute_and_lock (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmRebasePlan) plan = NULL;
  g_autoptr(SmVmState) holder = NULL;
  g_autoptr(SmImageInfo) info = NULL;
  g_autofree char *state_dir = g_build_filename (f->dir, "state", NULL);
  SmQmp *qmp = sm_test_vm_qmp (f->vm);

  (void) data;
  plan = plan_live (qmp, "drive0", f->base, 0, &err);
  g_assert_no_error (err);

  /* Another snapmig acting on the VM: the rebase must not start. */
  holder = sm_vm_state_open (state_dir, sm_test_vm_socket (f->vm), &err);
  g_assert_no_error (err);
  g_assert_true (sm_vm_state_lock (holder, &err));
  g_assert_false (sm_rebase_execute (qmp, plan, state_dir, 0, NULL, NULL,
                                     &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_BUSY);
  g_clear_error (&err);
  info = sm_image_probe (f->top, SM_IMAGE_FORMAT_QCOW2, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (info->backing_file, ==, "mid.qcow2");
  g_clear_pointer (&info, sm_image_info_free);

  sm_vm_state_unlock (holder);
  g_assert_true (sm_rebase_execute (qmp, plan, state_dir, 60, NULL, NULL,
                                    &err));
  g_assert_no_error (err);
  info = sm_image_probe (f->top, SM_IMAGE_FORMAT_QCOW2, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (info->backing_file, ==, "base.qcow2");
  g_assert_cmpstr (info->backing_format, ==, "qcow2");
  g_assert_true (sm_test_guest_read (f->vm, "drive0", 0x5a, 0, 4 << 20));

  /* The plan is stale now: executing it again must notice. */
  g_assert_false (sm_rebase_execute (qmp, plan, state_dir, 0, NULL, NULL,
                                     &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_BUSY);
}

/* A job throttled far below what it has to copy hits --timeout: it is
 * cancelled and the chain is left as it was. */
static void
test_timeout_cancels (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmRebasePlan) plan = NULL;
  g_autoptr(SmRebasePlan) after = NULL;
  g_autoptr(SmImageInfo) info = NULL;
  g_autofree char *state_dir = g_build_filename (f->dir, "state", NULL);
  SmQmp *qmp = sm_test_vm_qmp (f->vm);

  (void) data;
  plan = plan_live (qmp, "drive0", NULL, 64 << 10, &err);
  g_assert_no_error (err);
  g_assert_false (sm_rebase_execute (qmp, plan, state_dir, 1, NULL, NULL,
                                     &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (err->message, "disk drive0"));
  g_clear_error (&err);
  after = plan_live (qmp, "drive0", NULL, 0, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (after->chain->len, ==, 3);
  info = sm_image_probe (f->top, SM_IMAGE_FORMAT_QCOW2, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (info->backing_file, ==, "mid.qcow2");
  g_assert_true (sm_test_guest_read (f->vm, "drive0", 0x5a, 0, 4 << 20));
}

/* ---- the pure planner, on recorded replies (tests/data/qmp/, QEMU 7.2:
 * drive0 on top <- mid <- base with snapmig's rebase job running, drive1
 * raw).  No QEMU, no files. ------------------------------------------- */

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

/* The recorded VM; JOBS replaces its query-block-jobs reply when given. */
static SmBlockVm *
recorded_vm (const char *jobs_json)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) blocks = recorded ("rebase-vm.query-block.json");
  g_autoptr(json_object) nodes =
    recorded ("rebase-vm.query-named-block-nodes.json");
  g_autoptr(json_object) jobs = jobs_json ? json_tokener_parse (jobs_json)
    : recorded ("rebase-vm.query-block-jobs.json");
  SmBlockVm *vm = sm_block_vm_parse (blocks, jobs, nodes, &err);

  g_assert_no_error (err);
  return vm;
}

static void
test_plan_pure (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmBlockVm) vm = recorded_vm ("[]");
  g_autoptr(SmRebasePlan) plan = NULL;
  g_autoptr(json_object) j = NULL;
  json_object *args, *v;

  plan = sm_rebase_plan (vm, "drive0", "/tmp/sttest/base.qcow2", 0, &err);
  g_assert_no_error (err);
  g_assert_false (plan->job_running);
  g_assert_cmpuint (plan->n_steps, ==, 3);
  g_assert_cmpint (plan->steps[0], ==, SM_REBASE_STEP_STREAM);
  g_assert_cmpint (plan->steps[1], ==, SM_REBASE_STEP_WAIT);
  g_assert_cmpint (plan->steps[2], ==, SM_REBASE_STEP_VERIFY);
  g_assert_cmpint (plan->base_index, ==, 2);
  g_assert_cmpstr (plan->backing_file, ==, "base.qcow2");
  g_assert_cmpstr (plan->job_id, ==, "snapmig-rebase-drive0");
  g_assert_cmpuint (plan->expected->len, ==, 2);
  g_assert_cmpstr (plan->expected->pdata[0], ==, "/tmp/sttest/top.qcow2");
  g_assert_cmpstr (plan->expected->pdata[1], ==, "/tmp/sttest/base.qcow2");
  g_assert_true (json_object_object_get_ex (plan->command, "arguments",
                                            &args));
  g_assert_true (json_object_object_get_ex (args, "base-node", &v));
  g_assert_cmpstr (json_object_get_string (v), ==, layer (plan, 2)->node_name);
  g_assert_false (json_object_object_get_ex (args, "speed", &v));
  j = sm_rebase_plan_to_json (plan);
  g_assert_cmpstr (json_object_get_string (json_object_array_get_idx (
    sm_json_get_array (j, "steps"), 0)), ==, "block-stream");
  g_clear_pointer (&plan, sm_rebase_plan_free);

  /* Without base: everything merged, standalone. */
  plan = sm_rebase_plan (vm, "drive0", NULL, 0, &err);
  g_assert_no_error (err);
  g_assert_null (plan->backing_file);
  g_assert_cmpuint (plan->expected->len, ==, 1);
  g_clear_pointer (&plan, sm_rebase_plan_free);

  /* The raw disk has nothing to merge: no steps. */
  plan = sm_rebase_plan (vm, "drive1", NULL, 0, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (plan->n_steps, ==, 0);
  g_assert_null (plan->command);
}

/* snapmig's own job still running (an earlier run was killed): wait for it,
 * never start a second one. */
static void
test_plan_waits_for_own_job (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmBlockVm) vm = recorded_vm (NULL);
  g_autoptr(SmRebasePlan) plan = NULL;

  plan = sm_rebase_plan (vm, "drive0", "/tmp/sttest/base.qcow2", 0, &err);
  g_assert_no_error (err);
  g_assert_true (plan->job_running);
  g_assert_cmpuint (plan->n_steps, ==, 2);
  g_assert_cmpint (plan->steps[0], ==, SM_REBASE_STEP_WAIT);
  g_assert_cmpint (plan->steps[1], ==, SM_REBASE_STEP_VERIFY);
}

static void
test_plan_errors (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmBlockVm) vm = recorded_vm ("[]");
  g_autoptr(SmBlockVm) busy = recorded_vm (
    "[{\"device\": \"drive0\", \"type\": \"mirror\", \"len\": 1, "
    "\"offset\": 0, \"busy\": true, \"paused\": false, \"speed\": 0, "
    "\"ready\": false, \"status\": \"running\"}]");

  g_assert_null (sm_rebase_plan (vm, "nosuch", NULL, 0, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, "disk nosuch"));
  g_assert_nonnull (strstr (err->message, "drive0, drive1"));
  g_clear_error (&err);
  g_assert_null (sm_rebase_plan (vm, "drive0", "/tmp/sttest/top.qcow2", 0,
                                 &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_clear_error (&err);
  g_assert_null (sm_rebase_plan (vm, "drive0", "/nowhere.qcow2", 0, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, "mid.qcow2"));
  g_clear_error (&err);
  g_assert_null (sm_rebase_plan (busy, "drive0", NULL, 0, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_BUSY);
  g_assert_nonnull (strstr (err->message, "mirror"));
}

/* recover's decisions that need no QEMU: a journal without its plan is
 * kept and reported; a finished one is removed; with QEMU gone the images
 * hold one complete chain and the journal goes. */
static void
test_recover_offline (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "x.journal", NULL);
  g_autoptr(GError) err = NULL;
  g_autoptr(SmBlockVm) vm = recorded_vm ("[]");
  g_autoptr(SmRebasePlan) plan = NULL;
  g_autoptr(json_object) damaged = json_tokener_parse (
    "[{\"op\": \"rebase\", \"opid\": \"x\"}]");
  g_autoptr(json_object) records = json_object_new_array ();
  json_object *header = json_object_new_object ();
  g_autofree char *msg = NULL;

  g_assert_true (g_file_set_contents (path, "{}\n", -1, NULL));
  g_assert_null (sm_rebase_recover (NULL, NULL, path, damaged, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "kept"));
  g_assert_true (g_file_test (path, G_FILE_TEST_EXISTS));
  g_clear_error (&err);

  plan = sm_rebase_plan (vm, "drive0", "/tmp/sttest/base.qcow2", 0, &err);
  g_assert_no_error (err);
  json_object_object_add (header, "op", json_object_new_string ("rebase"));
  json_object_object_add (header, "plan", sm_rebase_plan_to_json (plan));
  json_object_array_add (records, header);
  json_object_array_add (records, json_tokener_parse (
    "{\"step\": 1, \"kind\": \"block-stream\", \"phase\": \"end\"}"));
  msg = sm_rebase_recover (NULL, NULL, path, records, &err);
  g_assert_no_error (err);
  g_assert_nonnull (strstr (msg, "disk drive0"));
  g_assert_nonnull (strstr (msg, "QEMU is gone"));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/rebase/relative-path", test_relative_path);
  g_test_add_func ("/rebase/plan-pure", test_plan_pure);
  g_test_add_func ("/rebase/plan-waits-for-own-job",
                   test_plan_waits_for_own_job);
  g_test_add_func ("/rebase/plan-errors", test_plan_errors);
  g_test_add_func ("/rebase/recover-offline", test_recover_offline);
  g_test_add ("/rebase/plan-by-node-name", Fixture, NULL, fixture_setup,
              test_plan_by_node_name, fixture_teardown);
  g_test_add ("/rebase/plan-through-symlink", Fixture, NULL, fixture_setup,
              test_plan_through_symlink, fixture_teardown);
  g_test_add ("/rebase/execute-and-lock", Fixture, NULL, fixture_setup,
              test_execute_and_lock, fixture_teardown);
  g_test_add ("/rebase/timeout-cancels", Fixture, NULL, fixture_setup,
              test_timeout_cancels, fixture_teardown);
  return g_test_run ();
}
