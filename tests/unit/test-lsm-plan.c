/* Unit tests for the live storage migration planner (lib/lsm-plan.c): the
 * files, QMP commands and order decided for create, pivot and abort, and
 * every refusal, from hand-made VM descriptions — no QEMU, no file.
 */
#include <string.h>
#include <glib.h>

#include "lsm.h"
#include "vm-model.h"

/* ---- a VM made by hand: tests/harness/vm-model.h ------------------ */

#define add_disk sm_test_vm_add_disk
#define three_disk_vm sm_test_three_disk_vm
#define block_layer sm_test_block_layer

static SmSnapshotDef *
mirror_domain_def (const SmLsmVm *vm, const char *const *specs)
{
  g_autoptr(GError) err = NULL;
  SmSnapshotDef *def = sm_lsm_def_from_options (vm, "move1", specs, "/B",
                                                &err);

  g_assert_no_error (err);
  return def;
}

static SmLsmPlan *
plan_ok (const SmLsmVm *vm, const SmSnapshotDef *def,
         const SmLsmCreateOptions *opts)
{
  g_autoptr(GError) err = NULL;
  SmLsmPlan *plan = sm_lsm_plan_create (vm, def, "older", opts, &err);

  g_assert_no_error (err);
  g_assert_nonnull (plan);
  return plan;
}

/* Creating the plan fails with CODE and a message containing WANT. */
static void
plan_fails (const SmLsmVm *vm, const SmSnapshotDef *def,
            const SmLsmCreateOptions *opts, int code, const char *want)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmLsmPlan) plan = sm_lsm_plan_create (vm, def, NULL, opts, &err);

  g_assert_null (plan);
  g_assert_error (err, SM_ERROR, code);
  if (!strstr (err->message, want))
    g_error ("message '%s' lacks '%s'", err->message, want);
}

static char *
step_kinds (const SmLsmPlan *plan)
{
  GString *s = g_string_new (NULL);
  size_t i;

  for (i = 0; i < plan->steps->len; i++) {
    const SmLsmStep *st = plan->steps->pdata[i];

    g_string_append_printf (s, "%s%s", i ? " " : "",
                            sm_lsm_step_kind_to_string (st->kind));
    if (st->disk >= 0)
      g_string_append_printf (s, ":%d", st->disk);
  }
  return g_string_free (s, false);
}

static const char *
arg (const SmLsmStep *s, const char *key)
{
  json_object *v;

  g_assert_nonnull (s->args);
  if (!json_object_object_get_ex (s->args, key, &v))
    return NULL;
  return json_object_get_string (v);
}

/* ---- create ---------------------------------------------------------- */

static void
test_def_from_mirror_domain (void)
{
  g_autoptr(SmLsmVm) vm = three_disk_vm ();
  g_autoptr(SmSnapshotDef) def = mirror_domain_def (vm, NULL);
  const SmSnapshotDisk *d;

  g_assert_cmpuint (def->disks->len, ==, 3);
  d = def->disks->pdata[0];
  g_assert_cmpstr (d->name, ==, "drive0");
  g_assert_cmpstr (d->source, ==, "/A/snap1.move1.qcow2");
  g_assert_cmpstr (d->mirror_file, ==, "/B/snap1.move1.qcow2");
  g_assert_cmpstr (d->mirror_format, ==, "qcow2");
  d = def->disks->pdata[1];
  g_assert_cmpstr (d->source, ==, "/A/d1.move1.qcow2");
  g_assert_cmpstr (d->mirror_file, ==, "/B/d1.move1.qcow2");
}

static void
test_def_from_diskspecs (void)
{
  g_autoptr(SmLsmVm) vm = three_disk_vm ();
  static const char *const specs[] = {
    "drive1", "drive2,file=/C/new.qcow2,mirror=/D/new.qcow2", NULL
  };
  g_autoptr(SmSnapshotDef) def = mirror_domain_def (vm, specs);
  g_autoptr(GError) err = NULL;
  g_autoptr(SmSnapshotDef) bad = NULL;
  static const char *const bad_spec[] = { "drive0,color=blue", NULL };

  g_assert_cmpuint (def->disks->len, ==, 2);
  g_assert_cmpstr (((SmSnapshotDisk *) def->disks->pdata[0])->mirror_file, ==,
                   "/B/d1.move1.qcow2");
  g_assert_cmpstr (((SmSnapshotDisk *) def->disks->pdata[1])->source, ==,
                   "/C/new.qcow2");
  g_assert_cmpstr (((SmSnapshotDisk *) def->disks->pdata[1])->mirror_file, ==,
                   "/D/new.qcow2");
  bad = sm_lsm_def_from_options (vm, "x", bad_spec, NULL, &err);
  g_assert_null (bad);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "color"));
}

static void
test_create_three_disks (void)
{
  g_autoptr(SmLsmVm) vm = three_disk_vm ();
  g_autoptr(SmSnapshotDef) def = mirror_domain_def (vm, NULL);
  SmLsmCreateOptions opts = { .bandwidth = 1 << 20 };
  g_autoptr(SmLsmPlan) plan = plan_ok (vm, def, &opts);
  g_autofree char *kinds = step_kinds (plan);
  g_autofree char *text = sm_lsm_plan_format (plan);
  const SmLsmStep *tx, *mirror;
  const SmPrecreatePlan *dest;
  const SmPrecreateLayer *l;
  const SmLayerCopy *copy;
  json_object *actions, *data, *v;

  /* Files first (so a failure there changes nothing in QEMU), one
   * transaction, then the mirrors, then the metadata, then the copies. */
  g_assert_cmpstr (kinds, ==,
                   "create-dest:0 create-dest:1 create-dest:2 create-top:0 "
                   "create-top:1 create-top:2 transaction mirror:0 mirror:1 "
                   "mirror:2 save-metadata start-copy");
  g_assert_true (plan->flags & SM_LSM_ATOMIC);

  tx = plan->steps->pdata[6];
  g_assert_cmpstr (tx->command, ==, "transaction");
  g_assert_true (json_object_object_get_ex (tx->args, "actions", &actions));
  g_assert_cmpuint (json_object_array_length (actions), ==, 3);
  g_assert_true (json_object_object_get_ex (
    json_object_array_get_idx (actions, 1), "data", &data));
  g_assert_true (json_object_object_get_ex (data, "device", &v));
  g_assert_cmpstr (json_object_get_string (v), ==, "drive1");
  g_assert_true (json_object_object_get_ex (data, "snapshot-file", &v));
  g_assert_cmpstr (json_object_get_string (v), ==, "/A/d1.move1.qcow2");
  g_assert_true (json_object_object_get_ex (data, "mode", &v));
  g_assert_cmpstr (json_object_get_string (v), ==, "existing");
  g_assert_true (json_object_object_get_ex (data, "format", &v));
  g_assert_cmpstr (json_object_get_string (v), ==, "qcow2");

  mirror = plan->steps->pdata[7];
  g_assert_cmpstr (mirror->command, ==, "drive-mirror");
  g_assert_cmpstr (arg (mirror, "device"), ==, "drive0");
  g_assert_cmpstr (arg (mirror, "job-id"), ==, "snapmig-mirror-drive0");
  g_assert_cmpstr (arg (mirror, "target"), ==, "/B/snap1.move1.qcow2");
  g_assert_cmpstr (arg (mirror, "sync"), ==, "top");
  g_assert_cmpstr (arg (mirror, "mode"), ==, "existing");
  g_assert_cmpstr (arg (mirror, "format"), ==, "qcow2");
  g_assert_cmpstr (arg (mirror, "speed"), ==, "1048576");
  g_assert_null (arg (mirror, "copy-mode"));

  /* drive0's destination: its whole chain in /B, relative names. */
  dest = plan->dest_plans->pdata[0];
  g_assert_cmpuint (dest->layers->len, ==, 3);
  l = dest->layers->pdata[0];
  g_assert_cmpstr (l->path, ==, "/B/snap1.move1.qcow2");
  g_assert_cmpstr (l->backing_name, ==, "snap1.qcow2");
  l = dest->layers->pdata[2];
  g_assert_cmpstr (l->path, ==, "/B/base.qcow2");
  g_assert_null (l->backing_name);
  /* The new source top sits next to the old one, named relatively. */
  l = ((SmPrecreatePlan *) plan->top_plans->pdata[1])->layers->pdata[0];
  g_assert_cmpstr (l->path, ==, "/A/d1.move1.qcow2");
  g_assert_cmpstr (l->backing_name, ==, "d1.raw");
  g_assert_cmpint (l->backing_format, ==, SM_IMAGE_FORMAT_RAW);

  /* Only the lower layers are copied; the new tops go through the mirror. */
  g_assert_cmpuint (plan->copies->len, ==, 4);
  copy = plan->copies->pdata[0];
  g_assert_cmpstr (copy->source, ==, "/A/snap1.qcow2");
  g_assert_cmpstr (copy->dest, ==, "/B/snap1.qcow2");
  g_assert_cmpstr (copy->backing_name, ==, "base.qcow2");
  copy = plan->copies->pdata[2];
  g_assert_cmpstr (copy->source, ==, "/A/d1.raw");
  g_assert_cmpint (copy->format, ==, SM_IMAGE_FORMAT_RAW);

  /* The metadata: parent, new tops, mirrors. */
  g_assert_cmpstr (plan->def->parent, ==, "older");
  g_assert_cmpstr (((SmSnapshotDisk *) plan->def->disks->pdata[2])->mirror_file,
                   ==, "/B/d2.move1.qcow2");

  g_assert_nonnull (strstr (text, "create file /B/base.qcow2 (qcow2"));
  g_assert_nonnull (strstr (text, "qmp transaction {\"actions\""));
  g_assert_nonnull (strstr (text, "copy /A/d1.raw to /B/d1.raw"));
}

static void
test_create_new_top_elsewhere (void)
{
  g_autoptr(SmLsmVm) vm = three_disk_vm ();
  static const char *const specs[] = { "drive2,file=/C/sub/new.qcow2", NULL };
  g_autoptr(GError) err = NULL;
  g_autoptr(SmSnapshotDef) def = sm_lsm_def_from_options (vm, "s", specs,
                                                          NULL, &err);
  SmLsmCreateOptions opts = { 0 };
  g_autoptr(SmLsmPlan) plan = plan_ok (vm, def, &opts);
  g_autofree char *kinds = step_kinds (plan);
  const SmPrecreateLayer *l =
    ((SmPrecreatePlan *) plan->top_plans->pdata[0])->layers->pdata[0];

  g_assert_cmpstr (kinds, ==, "create-top:0 transaction save-metadata");
  g_assert_cmpstr (l->backing_name, ==, "../../A/d2.qcow2");
  g_assert_false (plan->flags & SM_LSM_ATOMIC);
}

static void
test_create_without_transaction (void)
{
  g_autoptr(SmLsmVm) vm = three_disk_vm ();
  static const char *const two[] = { "drive0", "drive1", NULL };
  static const char *const one[] = { "drive0", NULL };
  g_autoptr(SmSnapshotDef) plain = sm_lsm_def_from_options (vm, "s", two, NULL,
                                                            NULL);
  g_autoptr(SmSnapshotDef) mirrored = mirror_domain_def (vm, two);
  g_autoptr(SmSnapshotDef) mirrored1 = mirror_domain_def (vm, one);
  SmLsmCreateOptions opts = { 0 };
  g_autoptr(SmLsmPlan) plan = NULL;
  g_autoptr(SmLsmPlan) plan1 = NULL;
  g_autofree char *kinds = NULL;
  g_autofree char *kinds1 = NULL;

  vm->has_transaction = false;
  /* Not atomic: one snapshot after the other. */
  plan = plan_ok (vm, plain, &opts);
  kinds = step_kinds (plan);
  g_assert_cmpstr (kinds, ==,
                   "create-top:0 create-top:1 snapshot:0 snapshot:1 "
                   "save-metadata");
  /* Mirrors imply --atomic: refused for two disks, fine for one. */
  plan_fails (vm, mirrored, &opts, SM_ERROR_UNSUPPORTED, "transaction");
  plan1 = plan_ok (vm, mirrored1, &opts);
  kinds1 = step_kinds (plan1);
  g_assert_cmpstr (kinds1, ==,
                   "create-dest:0 create-top:0 snapshot:0 mirror:0 "
                   "save-metadata start-copy");
  opts.flags = SM_LSM_ATOMIC;
  plan_fails (vm, plain, &opts, SM_ERROR_UNSUPPORTED, "2 disks");
  opts.flags = SM_LSM_REUSE_EXTERNAL;
  plan_fails (vm, mirrored1, &opts, SM_ERROR_UNSUPPORTED, "--reuse-external");
}

/* No option accepted and ignored: a mirror domain no disk uses is refused;
 * without any mirror destination every writable disk gets a plain
 * snapshot; a definition asking for memory state is refused, or planned
 * without it and a note under SM_LSM_DISK_ONLY. */
static void
test_create_options (void)
{
  g_autoptr(SmLsmVm) vm = three_disk_vm ();
  static const char *const own_mirror[] = { "drive0,mirror=/B/x.qcow2", NULL };
  g_autoptr(GError) err = NULL;
  g_autoptr(SmSnapshotDef) unused = sm_lsm_def_from_options (
    vm, "s", own_mirror, "/C", &err);
  g_autoptr(SmSnapshotDef) plain = NULL;
  g_autoptr(SmLsmPlan) plan = NULL;
  SmLsmCreateOptions opts = { 0 };
  guint i;

  g_assert_null (unused);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "--mirror-domain /C: no disk"));
  g_clear_error (&err);

  plain = sm_lsm_def_from_options (vm, "s", NULL, NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (plain->disks->len, >, 0);
  for (i = 0; i < plain->disks->len; i++) {
    const SmSnapshotDisk *d = plain->disks->pdata[i];

    g_assert_null (d->mirror_file);
    g_assert_nonnull (d->source);
  }

  plain->memory_snapshot = g_strdup ("external");
  plain->memory_file = g_strdup ("/m.save");
  plan_fails (vm, plain, &opts, SM_ERROR_INVALID, "--disk-only");
  g_free (plain->memory_snapshot);
  plain->memory_snapshot = g_strdup ("no");
  g_clear_pointer (&plain->memory_file, g_free);
  plain->state = g_strdup ("running");
  plan_fails (vm, plain, &opts, SM_ERROR_INVALID, "<state>running</state>");
  opts.flags = SM_LSM_DISK_ONLY;
  plan = plan_ok (vm, plain, &opts);
  g_assert_nonnull (plan->note);
  g_assert_nonnull (strstr (plan->note, "left out"));
  g_assert_cmpstr (plan->def->state, ==, "disk-snapshot");
  g_assert_null (plan->def->memory_snapshot);
}

static void
test_create_refusals (void)
{
  g_autoptr(SmLsmVm) vm = three_disk_vm ();
  static const char *const unknown[] = { "vdz", NULL };
  static const char *const unknown_full[] = { "vdz,file=/A/z.qcow2", NULL };
  static const char *const twice[] = { "drive1", "drive1", NULL };
  static const char *const onto_source[] = { "drive0,mirror=/A/x.qcow2", NULL };
  static const char *const relative[] = { "drive0,file=/A/n.qcow2", NULL };
  SmLsmCreateOptions opts = { 0 };
  g_autoptr(SmSnapshotDef) d_unknown = NULL;
  g_autoptr(SmSnapshotDef) d_twice = mirror_domain_def (vm, twice);
  g_autoptr(SmSnapshotDef) d_source = sm_lsm_def_from_options (
    vm, "move1", onto_source, NULL, NULL);
  g_autoptr(SmSnapshotDef) d_all = mirror_domain_def (vm, NULL);
  g_autoptr(SmSnapshotDef) d_rel = mirror_domain_def (vm, relative);
  g_autoptr(GError) err = NULL;
  SmBlockJob *job;

  /* --mirror-domain needs the disk to name its new top: unknown fails
   * there already, naming the disk. */
  d_unknown = sm_lsm_def_from_options (vm, "s", unknown, "/B", &err);
  g_assert_null (d_unknown);
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, "vdz"));
  g_clear_error (&err);
  /* A spec with everything given is only checked by the planner. */
  d_unknown = sm_lsm_def_from_options (vm, "s", unknown_full, NULL, &err);
  g_assert_no_error (err);
  plan_fails (vm, d_unknown, &opts, SM_ERROR_NOT_FOUND, "no disk vdz");

  plan_fails (vm, d_twice, &opts, SM_ERROR_INVALID, "drive1 is named twice");
  /* A destination in the source domain would overwrite the source chain. */
  plan_fails (vm, d_source, &opts, SM_ERROR_INVALID, "/A/snap1.qcow2");

  /* A relative new top name. */
  g_free (((SmSnapshotDisk *) d_rel->disks->pdata[0])->source);
  ((SmSnapshotDisk *) d_rel->disks->pdata[0])->source = g_strdup ("n.qcow2");
  plan_fails (vm, d_rel, &opts, SM_ERROR_INVALID, "absolute");

  opts.flags = SM_LSM_NO_METADATA;
  plan_fails (vm, d_all, &opts, SM_ERROR_INVALID, "--no-metadata");
  opts.flags = 0;
  opts.copy_mode = "sometimes";
  plan_fails (vm, d_all, &opts, SM_ERROR_INVALID, "sometimes");
  opts.copy_mode = "write-blocking";
  vm->has_copy_mode = false;
  plan_fails (vm, d_all, &opts, SM_ERROR_UNSUPPORTED, "3.0");
  vm->has_copy_mode = true;
  {
    g_autoptr(SmLsmPlan) plan = plan_ok (vm, d_all, &opts);

    g_assert_cmpstr (arg (plan->steps->pdata[7], "copy-mode"), ==,
                     "write-blocking");
  }
  opts.copy_mode = NULL;

  /* A disk with a block job (named after its device, QEMU's default). */
  job = g_new0 (SmBlockJob, 1);
  job->id = g_strdup ("drive2");
  job->type = g_strdup ("stream");
  g_ptr_array_add (vm->jobs, job);
  plan_fails (vm, d_all, &opts, SM_ERROR_BUSY, "drive2 has a block job");
}

static void
test_create_same_destination (void)
{
  g_autoptr(SmLsmVm) vm = sm_lsm_vm_new ();
  static const char *const a[] = { "/A/top.qcow2", "/A/base.qcow2", NULL };
  static const char *const b[] = { "/C/top2.qcow2", "/C/base.qcow2", NULL };
  g_autoptr(SmSnapshotDef) def = NULL;
  SmLsmCreateOptions opts = { 0 };

  add_disk (vm, "drive0", a, 1 << 20);
  add_disk (vm, "drive1", b, 1 << 20);
  vm->has_transaction = true;
  def = mirror_domain_def (vm, NULL);
  /* Both base.qcow2 would be copied to /B/base.qcow2. */
  plan_fails (vm, def, &opts, SM_ERROR_INVALID, "/B/base.qcow2");
}

/* ---- pivot and abort -------------------------------------------------- */

static SmLsmInfo *
info_of (const SmLsmPlan *plan)
{
  g_autoptr(json_object) j = sm_lsm_info_to_json (plan->info);
  g_autoptr(GError) err = NULL;
  SmLsmInfo *info = sm_lsm_info_from_json (j, &err);

  g_assert_no_error (err);
  return info;
}

/* Makes disk DEVICE of VM run on FILE (as after a snapshot or pivot). */
static void
set_top (SmLsmVm *vm, const char *device, const char *file)
{
  size_t i;

  for (i = 0; i < vm->disks->len; i++) {
    SmBlockDisk *d = vm->disks->pdata[i];

    if (strcmp (d->device, device) == 0)
      g_ptr_array_insert (d->chain, 0, block_layer (file, "qcow2", 1));
  }
}

static void
test_pivot (void)
{
  g_autoptr(SmLsmVm) vm = three_disk_vm ();
  static const char *const specs[] = { "drive0", "drive1", NULL };
  g_autoptr(SmSnapshotDef) def = mirror_domain_def (vm, specs);
  SmLsmCreateOptions opts = { 0 };
  g_autoptr(SmLsmPlan) create = plan_ok (vm, def, &opts);
  g_autoptr(SmLsmInfo) info = info_of (create);
  g_autoptr(GError) err = NULL;
  g_autoptr(SmLsmPlan) plan = NULL;
  g_autofree char *kinds = NULL;
  g_autofree char *kinds2 = NULL;
  g_autofree char *kinds3 = NULL;
  const SmLsmStep *complete;

  set_top (vm, "drive0", "/A/snap1.move1.qcow2");
  set_top (vm, "drive1", "/A/d1.move1.qcow2");

  plan = sm_lsm_plan_pivot (vm, info, "other", 0, &err);
  g_assert_null (plan);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "not the current snapshot"));
  g_clear_error (&err);

  /* Two disks and a running guest: the switch happens paused. */
  plan = sm_lsm_plan_pivot (vm, info, "move1", 0, &err);
  g_assert_no_error (err);
  kinds = step_kinds (plan);
  /* The files are flushed before the stop, the completes follow each other
   * (sent as one batch), the jobs' ends are waited for paused, and where
   * the disks run is checked after the cont. */
  g_assert_cmpstr (kinds, ==,
                   "wait check-dest:0 check-dest:1 flush stop complete:0 "
                   "complete:1 wait-switch cont check-switch delete-metadata");
  complete = plan->steps->pdata[5];
  g_assert_cmpstr (complete->command, ==, "block-job-complete");
  g_assert_cmpstr (arg (complete, "device"), ==, "snapmig-mirror-drive0");
  complete = plan->steps->pdata[6];
  g_assert_cmpstr (arg (complete, "device"), ==, "snapmig-mirror-drive1");
  {
    g_autofree char *text = sm_lsm_plan_format (plan);
    const char *flush0 = strstr (text, "flush /A/snap1.move1.qcow2 and "
                                 "/B/snap1.move1.qcow2 to disk\n");
    const char *flush1 = strstr (text, "flush /A/d1.move1.qcow2 and "
                                 "/B/d1.move1.qcow2 to disk\n");
    const char *stop = strstr (text, "qmp stop {}\n");

    g_assert_nonnull (flush0);
    g_assert_nonnull (flush1);
    g_assert_nonnull (stop);
    g_assert_true (flush0 < stop && flush1 < stop);
    g_assert_nonnull (strstr (text, "qmp block-job-complete {\"device\":"
                              "\"snapmig-mirror-drive1\"} (sent in one batch "
                              "with the other completes)\n"));
    g_assert_true (strstr (text, "qmp cont {}\n") <
                   strstr (text, "check that every disk runs on its "
                           "destination\n"));
  }
  g_clear_pointer (&plan, sm_lsm_plan_free);

  /* drive0 already switched (a pivot that failed part-way): only drive1 is
   * left, a single disk needs no pause. */
  set_top (vm, "drive0", "/B/snap1.move1.qcow2");
  plan = sm_lsm_plan_pivot (vm, info, "move1", SM_LSM_DELETE_SOURCE, &err);
  g_assert_no_error (err);
  kinds2 = step_kinds (plan);
  g_assert_cmpstr (kinds2, ==,
                   "wait check-dest:1 flush complete:1 wait-switch "
                   "check-switch delete-source delete-metadata");
  {
    /* Only the disk left to switch is flushed; one complete is no batch. */
    g_autofree char *text = sm_lsm_plan_format (plan);

    g_assert_null (strstr (text, "flush /A/snap1.move1.qcow2"));
    g_assert_nonnull (strstr (text, "flush /A/d1.move1.qcow2 and "
                              "/B/d1.move1.qcow2 to disk\n"));
    g_assert_null (strstr (text, "batch"));
  }
  /* drive1's source chain may go; drive2's files are kept. */
  g_assert_cmpuint (plan->source_files->len, ==, 2);
  g_assert_cmpstr (plan->source_files->pdata[0], ==, "/A/d1.move1.qcow2");
  g_assert_cmpstr (plan->source_files->pdata[1], ==, "/A/d1.raw");
  g_clear_pointer (&plan, sm_lsm_plan_free);

  /* Both disks switched, the records left (a pivot killed while deleting
   * them, maybe after the snapshot and "current" went): only the records
   * are deleted, whatever is current, and the guest is not paused. */
  {
    g_autoptr(SmLsmVm) done = three_disk_vm ();
    g_autoptr(SmLsmPlan) rest = NULL;
    g_autofree char *kinds4 = NULL;

    set_top (done, "drive0", "/B/snap1.move1.qcow2");
    set_top (done, "drive1", "/B/d1.move1.qcow2");
    rest = sm_lsm_plan_pivot (done, info, NULL, 0, &err);
    g_assert_no_error (err);
    kinds4 = step_kinds (rest);
    g_assert_cmpstr (kinds4, ==, "delete-metadata");
  }

  /* A paused guest (the user's, or one a killed pivot left) is not paused
   * again: no stop, no cont (pivot and abort resume a guest a killed pivot
   * paused before they plan). */
  {
    g_autoptr(SmLsmVm) paused = three_disk_vm ();
    g_autoptr(SmLsmPlan) p = NULL;
    g_autofree char *kinds5 = NULL;

    g_free (paused->run_state);
    paused->run_state = g_strdup ("paused");
    set_top (paused, "drive0", "/A/snap1.move1.qcow2");
    set_top (paused, "drive1", "/A/d1.move1.qcow2");
    p = sm_lsm_plan_pivot (paused, info, "move1", 0, &err);
    g_assert_no_error (err);
    kinds5 = step_kinds (p);
    g_assert_cmpstr (kinds5, ==, "wait check-dest:0 check-dest:1 flush "
                     "complete:0 complete:1 wait-switch check-switch "
                     "delete-metadata");
  }

  /* Abort is refused once a disk runs on its destination. */
  plan = sm_lsm_plan_abort (vm, info, &err);
  g_assert_null (plan);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "drive0 already runs on"));
  g_clear_error (&err);

  set_top (vm, "drive0", "/A/snap1.move1.qcow2");
  plan = sm_lsm_plan_abort (vm, info, &err);
  g_assert_no_error (err);
  kinds3 = step_kinds (plan);
  g_assert_cmpstr (kinds3, ==,
                   "cancel:0 cancel:1 stop-copy remove-files delete-metadata");
}

static void
test_pivot_without_mirror (void)
{
  g_autoptr(SmLsmVm) vm = three_disk_vm ();
  static const char *const specs[] = { "drive2", NULL };
  g_autoptr(SmSnapshotDef) def = sm_lsm_def_from_options (vm, "plain", specs,
                                                          NULL, NULL);
  SmLsmCreateOptions opts = { 0 };
  g_autoptr(SmLsmPlan) create = plan_ok (vm, def, &opts);
  g_autoptr(SmLsmInfo) info = info_of (create);
  g_autoptr(GError) err = NULL;
  g_autoptr(SmLsmPlan) plan = sm_lsm_plan_pivot (vm, info, "plain", 0, &err);

  g_assert_null (plan);
  g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  g_assert_nonnull (strstr (err->message, "has no mirror"));
}

static void
test_check_name (void)
{
  static const char *const good[] = { "move1", "snap-2024.01_x", "a" };
  static const char *const bad[] = { "", ".hidden", "a/b", "../x", "a b",
                                     "tab\there" };
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (good); i++)
    g_assert_true (sm_lsm_check_name (good[i], NULL));
  for (i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr(GError) err = NULL;

    g_assert_false (sm_lsm_check_name (bad[i], &err));
    g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
  }
}

static void
test_job_id (void)
{
  g_autofree char *a = sm_lsm_job_id ("drive0");
  g_autofree char *b = sm_lsm_job_id ("#block123/x y");

  g_assert_cmpstr (a, ==, "snapmig-mirror-drive0");
  g_assert_cmpstr (b, ==, "snapmig-mirror-_block123_x_y");
}

/* Only NAME.json is a move record: a killed pivot's NAME.progress.json
 * was once taken for the damaged record of snapshot "NAME.progress". */
static void
test_record_name (void)
{
  g_autofree char *s = sm_lsm_record_snapshot ("s.json");

  g_assert_cmpstr (s, ==, "s");
  g_assert_null (sm_lsm_record_snapshot ("s.progress.json"));
  g_assert_null (sm_lsm_record_snapshot ("s.copy.json"));
  g_assert_null (sm_lsm_record_snapshot ("s.created"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/lsm-plan/def/mirror-domain", test_def_from_mirror_domain);
  g_test_add_func ("/lsm-plan/def/diskspecs", test_def_from_diskspecs);
  g_test_add_func ("/lsm-plan/create/three-disks", test_create_three_disks);
  g_test_add_func ("/lsm-plan/create/new-top-elsewhere",
                   test_create_new_top_elsewhere);
  g_test_add_func ("/lsm-plan/create/without-transaction",
                   test_create_without_transaction);
  g_test_add_func ("/lsm-plan/create/refusals", test_create_refusals);
  g_test_add_func ("/lsm-plan/create/options", test_create_options);
  g_test_add_func ("/lsm-plan/create/same-destination",
                   test_create_same_destination);
  g_test_add_func ("/lsm-plan/pivot-abort", test_pivot);
  g_test_add_func ("/lsm-plan/pivot/without-mirror", test_pivot_without_mirror);
  g_test_add_func ("/lsm-plan/job-id", test_job_id);
  g_test_add_func ("/lsm-plan/check-name", test_check_name);
  g_test_add_func ("/lsm-plan/record-name", test_record_name);
  return g_test_run ();
}
