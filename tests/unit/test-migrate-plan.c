/* Unit tests for the cross-host migration's planner (begin's plan, in
 * lib/migrate-source.c): which layers each disk sends, with which role,
 * names, backing names and exports, for each storage choice, and every
 * refusal — from a VM described by hand, no QEMU, no file.
 */
#include <string.h>
#include <glib.h>

#include "migrate-private.h"
#include "vm-model.h"

static SmMigCookie *
plan (const SmLsmVm *vm, SmMigStorage storage, const char *disks)
{
  g_autoptr(GError) err = NULL;
  g_auto(GStrv) list = disks ? g_strsplit (disks, ",", -1) : NULL;
  SmMigOptions o = { .storage = storage, .disks = list,
                     .dest_host = "10.0.0.2", .source_host = "10.0.0.1" };
  SmMigCookie *c = sm_migrate_plan_begin (vm, "/run/vm1.qmp", 0, &o,
                                          "20261130T000000-0123abcd", &err);

  g_assert_no_error (err);
  g_assert_nonnull (c);
  return c;
}

static void
plan_fails (const SmLsmVm *vm, SmMigStorage storage, const char *disks,
            int code, const char *want)
{
  g_autoptr(GError) err = NULL;
  g_auto(GStrv) list = disks ? g_strsplit (disks, ",", -1) : NULL;
  SmMigOptions o = { .storage = storage, .disks = list };
  g_autoptr(SmMigCookie) c = sm_migrate_plan_begin (vm, "/run/vm1.qmp", 0, &o,
                                                    "x-1", &err);

  g_assert_null (c);
  g_assert_error (err, SM_ERROR, code);
  if (!strstr (err->message, want))
    g_error ("'%s' does not contain '%s'", err->message, want);
}

static const SmMigLayer *
layer (const SmMigCookie *c, const char *disk, guint i)
{
  const SmMigDisk *d = sm_mig_cookie_find_disk (c, disk);

  g_assert_nonnull (d);
  g_assert_cmpuint (i, <, d->layers->len);
  return d->layers->pdata[i];
}

static void
test_chain (void)
{
  g_autoptr(SmLsmVm) vm = sm_test_three_disk_vm ();
  g_autoptr(SmMigCookie) c = plan (vm, SM_MIG_STORAGE_CHAIN, NULL);
  const SmMigDisk *d0 = sm_mig_cookie_find_disk (c, "drive0");
  const SmMigLayer *l;
  g_autofree char *xml = NULL;
  g_autoptr(SmMigCookie) back = NULL;
  g_autoptr(GError) err = NULL;

  g_assert_cmpuint (c->disks->len, ==, 3);
  g_assert_true (d0->migrate);
  g_assert_cmpstr (d0->source_top, ==, "/A/snap1.qcow2");
  g_assert_cmpstr (d0->source_new_top, ==, "/A/snap1.mig-0123abcd.qcow2");
  g_assert_cmpstr (d0->export, ==, "drive0");
  g_assert_cmpuint (d0->layers->len, ==, 3);
  /* the new top, mirrored; then the old chain, copied */
  l = layer (c, "drive0", 0);
  g_assert_cmpint (l->role, ==, SM_MIG_LAYER_TOP);
  g_assert_cmpstr (l->name, ==, "snap1.mig-0123abcd.qcow2");
  g_assert_cmpstr (l->backing, ==, "snap1.qcow2");
  g_assert_cmpint (l->backing_format, ==, SM_IMAGE_FORMAT_QCOW2);
  g_assert_cmpuint (l->virtual_size, ==, 64 << 20);
  l = layer (c, "drive0", 1);
  g_assert_cmpint (l->role, ==, SM_MIG_LAYER_COPY);
  g_assert_cmpstr (l->file, ==, "/A/snap1.qcow2");
  g_assert_cmpstr (l->backing, ==, "base.qcow2");
  g_assert_cmpstr (l->export, ==, "layer-drive0-0");
  l = layer (c, "drive0", 2);
  g_assert_cmpint (l->role, ==, SM_MIG_LAYER_COPY);
  g_assert_null (l->backing);
  g_assert_cmpstr (l->export, ==, "layer-drive0-1");
  /* a raw disk gets a qcow2 top over its copy */
  l = layer (c, "drive1", 0);
  g_assert_cmpint (l->format, ==, SM_IMAGE_FORMAT_QCOW2);
  g_assert_cmpstr (l->backing, ==, "d1.raw");
  g_assert_cmpint (l->backing_format, ==, SM_IMAGE_FORMAT_RAW);
  g_assert_cmpint (layer (c, "drive1", 1)->format, ==, SM_IMAGE_FORMAT_RAW);
  g_assert_true (c->source_running == false);
  g_assert_cmpstr (c->source_host, ==, "10.0.0.1");

  /* what the destination reads is what was planned */
  xml = sm_mig_cookie_format (c);
  back = sm_mig_cookie_parse (xml, -1, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (back->disks->len, ==, 3);
  g_assert_cmpstr (layer (back, "drive0", 1)->export, ==, "layer-drive0-0");
}

static void
test_flat (void)
{
  g_autoptr(SmLsmVm) vm = sm_test_three_disk_vm ();
  g_autoptr(SmMigCookie) c = plan (vm, SM_MIG_STORAGE_FLAT, NULL);
  const SmMigLayer *l = layer (c, "drive0", 0);

  g_assert_cmpuint (sm_mig_cookie_find_disk (c, "drive0")->layers->len, ==, 1);
  g_assert_null (sm_mig_cookie_find_disk (c, "drive0")->source_new_top);
  g_assert_cmpint (l->role, ==, SM_MIG_LAYER_TOP);
  g_assert_null (l->backing);
  g_assert_cmpuint (l->allocated, ==, 2 << 20);   /* both layers' data */
  g_assert_cmpstr (l->name, ==, "snap1.qcow2");
}

static void
test_inc (void)
{
  g_autoptr(SmLsmVm) vm = sm_test_three_disk_vm ();
  g_autoptr(SmMigCookie) c = NULL;
  const SmMigLayer *l;

  /* drive1 and drive2 have no backing file: nothing but a top to move */
  plan_fails (vm, SM_MIG_STORAGE_INC, NULL, SM_ERROR_INVALID,
              "disk drive1 has no backing file");
  c = plan (vm, SM_MIG_STORAGE_INC, "drive0");
  l = layer (c, "drive0", 0);
  g_assert_cmpint (l->role, ==, SM_MIG_LAYER_TOP);
  g_assert_cmpstr (l->backing, ==, "/A/base.qcow2");   /* shared, absolute */
  g_assert_cmpint (layer (c, "drive0", 1)->role, ==, SM_MIG_LAYER_SHARED);
  g_assert_false (sm_mig_cookie_find_disk (c, "drive1")->migrate);
}

static void
test_migrate_disks (void)
{
  g_autoptr(SmLsmVm) vm = sm_test_three_disk_vm ();
  g_autoptr(SmMigCookie) c = plan (vm, SM_MIG_STORAGE_CHAIN, "drive2");

  g_assert_false (sm_mig_cookie_find_disk (c, "drive0")->migrate);
  g_assert_cmpint (layer (c, "drive0", 0)->role, ==, SM_MIG_LAYER_SHARED);
  g_assert_cmpint (layer (c, "drive0", 1)->role, ==, SM_MIG_LAYER_SHARED);
  g_assert_true (sm_mig_cookie_find_disk (c, "drive2")->migrate);
  plan_fails (vm, SM_MIG_STORAGE_CHAIN, "drive9", SM_ERROR_NOT_FOUND,
              "the VM has no disk drive9");
  plan_fails (vm, SM_MIG_STORAGE_CHAIN, "drive2,drive2", SM_ERROR_INVALID,
              "named twice");
}

static void
test_refusals (void)
{
  g_autoptr(SmLsmVm) vm = sm_test_three_disk_vm ();
  g_autoptr(SmLsmVm) empty = sm_lsm_vm_new ();
  SmBlockJob *job = g_new0 (SmBlockJob, 1);

  empty->run_state = g_strdup ("running");
  plan_fails (empty, SM_MIG_STORAGE_CHAIN, NULL, SM_ERROR_INVALID,
              "no disk to migrate");
  vm->has_transaction = false;
  plan_fails (vm, SM_MIG_STORAGE_CHAIN, NULL, SM_ERROR_UNSUPPORTED,
              "transaction");
  vm->has_transaction = true;
  job->id = g_strdup ("drive1");
  job->type = g_strdup ("stream");
  g_ptr_array_add (vm->jobs, job);
  plan_fails (vm, SM_MIG_STORAGE_CHAIN, NULL, SM_ERROR_BUSY,
              "disk drive1 has a block job");
}

/* The post-copy and multifd choices go into the cookie (the destination
 * phases read them there): --postcopy-after-precopy implies post-copy, the
 * fallback only with post-copy, the post-copy bandwidth defaults to
 * --bandwidth's (-1) and 0 stays unlimited; post-copy with multifd is
 * refused. */
static void
test_postcopy (void)
{
  static const struct {
    bool postcopy, after, fallback;
    int64_t pc_bandwidth;
    int parallel;
    bool want_postcopy, want_after, want_fallback;
    uint64_t want_pc_bandwidth;
  } cases[] = {
    { false, false, false, -1, 0,   false, false, false, 1048576 },
    { true, false, false, -1, 0,    true, false, false, 1048576 },
    { false, true, true, 0, 0,      true, true, true, 0 },
    { true, false, true, 4096, 0,   true, false, true, 4096 },
    { false, false, true, -1, 4,    false, false, false, 1048576 },
  };
  g_autoptr(SmLsmVm) vm = sm_test_three_disk_vm ();
  guint i;

  for (i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr(GError) err = NULL;
    SmMigOptions o = { .storage = SM_MIG_STORAGE_CHAIN, .bandwidth = 1048576,
                       .postcopy = cases[i].postcopy,
                       .postcopy_after_precopy = cases[i].after,
                       .postcopy_fallback = cases[i].fallback,
                       .postcopy_bandwidth = cases[i].pc_bandwidth,
                       .parallel = cases[i].parallel };
    g_autoptr(SmMigCookie) c = sm_migrate_plan_begin (vm, "/run/vm1.qmp", 0,
                                                      &o, "x-1", &err);

    g_test_message ("case %u", i);
    g_assert_no_error (err);
    g_assert_cmpint (c->postcopy, ==, cases[i].want_postcopy);
    g_assert_cmpint (c->postcopy_after_precopy, ==, cases[i].want_after);
    g_assert_cmpint (c->postcopy_fallback, ==, cases[i].want_fallback);
    g_assert_cmpuint (c->postcopy_bandwidth, ==, cases[i].want_pc_bandwidth);
    g_assert_cmpint (c->parallel, ==, cases[i].parallel);
    g_assert_false (c->postcopy_used);
  }
  {
    g_autoptr(GError) err = NULL;
    SmMigOptions o = { .storage = SM_MIG_STORAGE_CHAIN, .postcopy = true,
                       .postcopy_bandwidth = -1, .parallel = 2 };
    g_autoptr(SmMigCookie) c = sm_migrate_plan_begin (vm, "/run/vm1.qmp", 0,
                                                      &o, "x-1", &err);

    g_assert_null (c);
    g_assert_error (err, SM_ERROR, SM_ERROR_INVALID);
    g_assert_nonnull (strstr (err->message, "multifd"));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/migrate-plan/chain", test_chain);
  g_test_add_func ("/migrate-plan/flat", test_flat);
  g_test_add_func ("/migrate-plan/inc", test_inc);
  g_test_add_func ("/migrate-plan/migrate-disks", test_migrate_disks);
  g_test_add_func ("/migrate-plan/refusals", test_refusals);
  g_test_add_func ("/migrate-plan/postcopy", test_postcopy);
  return g_test_run ();
}
