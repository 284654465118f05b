/* Unit tests for lib/disks.c against a real three-disk QEMU: the chain QEMU
 * has open, block jobs, the on-disk cross-check and the JSON document of
 * `snapmig disks --json`.
 */
#include <string.h>

#include <glib/gstdio.h>

#include "disks.h"
#include "harness.h"
#include "qmp.h"

#define MiB (1024 * 1024)

static char *tmpdir;

typedef struct {
  char *dir;
  SmTestVm *vm;
} Fixture;

/* drive0: base.qcow2 <- mid.qcow2 <- top.qcow2 (relative backing names,
 * formats stated), drive1: raw, drive2: qcow2.  Each test gets its own
 * directory so that one test's changes on disk cannot leak into another. */
static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autofree char *base = NULL;
  g_autofree char *mid = NULL;
  g_autofree char *top = NULL;
  g_autofree char *raw = NULL;
  g_autofree char *d2 = NULL;
  g_autofree char *drive0 = NULL;
  g_autofree char *drive1 = NULL;
  g_autofree char *drive2 = NULL;
  const char *drives[4];

  (void) data;
  f->dir = g_strdup_printf ("%s/%s", tmpdir, g_test_get_path () + 1);
  for (char *p = strchr (f->dir + strlen (tmpdir) + 1, '/'); p;
       p = strchr (p, '/'))
    *p = '-';
  g_assert_cmpint (g_mkdir (f->dir, 0700), ==, 0);
  base = g_strdup_printf ("%s/base.qcow2", f->dir);
  mid = g_strdup_printf ("%s/mid.qcow2", f->dir);
  top = g_strdup_printf ("%s/top.qcow2", f->dir);
  raw = g_strdup_printf ("%s/data.raw", f->dir);
  d2 = g_strdup_printf ("%s/d2.qcow2", f->dir);
  g_assert_true (sm_test_create_qcow2 (base, 8 * MiB, NULL, NULL));
  g_assert_true (sm_test_create_qcow2 (mid, 0, "base.qcow2", "qcow2"));
  g_assert_true (sm_test_create_qcow2 (top, 0, "mid.qcow2", "qcow2"));
  g_assert_true (sm_test_create_raw (raw, 2 * MiB));
  g_assert_true (sm_test_create_qcow2 (d2, 4 * MiB, NULL, NULL));

  drive0 = g_strdup_printf ("file=%s,if=none,id=drive0,format=qcow2", top);
  drive1 = g_strdup_printf ("file=%s,if=none,id=drive1,format=raw", raw);
  drive2 = g_strdup_printf ("file=%s,if=none,id=drive2,format=qcow2", d2);
  drives[0] = drive0;
  drives[1] = drive1;
  drives[2] = drive2;
  drives[3] = NULL;
  f->vm = sm_test_vm_start (f->dir, "vm", drives);
  g_assert_nonnull (f->vm);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  (void) data;
  sm_test_vm_free (f->vm);
  g_free (f->dir);
}

static SmDiskList *
query (Fixture *f)
{
  g_autoptr(GError) err = NULL;
  SmDiskList *list = sm_disks_query (sm_test_vm_qmp (f->vm), &err);

  g_assert_no_error (err);
  g_assert_nonnull (list);
  return list;
}

static const SmDiskLayer *
layer (const SmDisk *disk, guint i)
{
  g_assert_cmpuint (i, <, disk->chain->len);
  return disk->chain->pdata[i];
}

static void
assert_layer (const SmDisk *disk, guint i, const char *dir, const char *name,
              const char *format, const char *backing)
{
  g_autofree char *path = g_strdup_printf ("%s/%s", dir, name);
  const SmDiskLayer *l = layer (disk, i);

  g_assert_cmpstr (l->file, ==, path);
  g_assert_cmpstr (l->format, ==, format);
  g_assert_cmpstr (l->backing_file, ==, backing);
}

static void
test_three_disks (Fixture *f, gconstpointer data)
{
  g_autoptr(SmDiskList) list = query (f);
  g_autofree char *top = g_strdup_printf ("%s/top.qcow2", f->dir);
  const SmDisk *d0;
  const SmDisk *d1;
  const SmDisk *d2;
  guint i;

  (void) data;
  g_assert_cmpuint (list->disks->len, ==, 3);
  d0 = sm_disk_list_find (list, "drive0");
  d1 = sm_disk_list_find (list, "drive1");
  d2 = sm_disk_list_find (list, "drive2");
  g_assert_true (d0 == list->disks->pdata[0]);
  g_assert_nonnull (d1);
  g_assert_nonnull (d2);
  g_assert_null (sm_disk_list_find (list, "drive9"));

  g_assert_true (d0->inserted);
  g_assert_cmpstr (d0->format, ==, "qcow2");
  g_assert_cmpstr (d0->file, ==, top);
  g_assert_cmpuint (d0->virtual_size, ==, 8 * MiB);
  g_assert_nonnull (d0->node_name);
  g_assert_true (sm_disk_list_find (list, d0->node_name) == d0);
  g_assert_false (d0->read_only);
  g_assert_null (d0->qdev);
  g_assert_cmpuint (d0->chain->len, ==, 3);
  assert_layer (d0, 0, f->dir, "top.qcow2", "qcow2", "mid.qcow2");
  assert_layer (d0, 1, f->dir, "mid.qcow2", "qcow2", "base.qcow2");
  assert_layer (d0, 2, f->dir, "base.qcow2", "qcow2", NULL);
  g_assert_cmpstr (layer (d0, 0)->node_name, ==, d0->node_name);
  for (i = 0; i < d0->chain->len; i++) {
    g_assert_nonnull (layer (d0, i)->node_name);
    g_assert_cmpuint (layer (d0, i)->virtual_size, ==, 8 * MiB);
  }
  g_assert_true (d0->chain_checked);
  g_assert_cmpuint (d0->warnings->len, ==, 0);
  g_assert_cmpuint (d0->jobs->len, ==, 0);

  g_assert_cmpstr (d1->format, ==, "raw");
  g_assert_cmpuint (d1->virtual_size, ==, 2 * MiB);
  g_assert_cmpuint (d1->chain->len, ==, 1);
  assert_layer (d1, 0, f->dir, "data.raw", "raw", NULL);
  g_assert_true (d1->chain_checked);
  g_assert_cmpuint (d1->warnings->len, ==, 0);

  g_assert_cmpstr (d2->format, ==, "qcow2");
  g_assert_cmpuint (d2->virtual_size, ==, 4 * MiB);
  g_assert_cmpuint (d2->chain->len, ==, 1);
  g_assert_cmpuint (d2->warnings->len, ==, 0);
  g_assert_cmpuint (list->other_jobs->len, ==, 0);
}

static json_object *
member (json_object *obj, const char *key, json_type type)
{
  json_object *v = NULL;

  g_assert_true (json_object_object_get_ex (obj, key, &v));
  if (!json_object_is_type (v, type))
    g_error ("key %s: %s is not of type %s", key,
             json_object_to_json_string (v), json_type_to_name (type));
  return v;
}

static void
test_json (Fixture *f, gconstpointer data)
{
  static const char *const disk_keys[] = {
    "device", "qdev", "inserted", "node-name", "format", "file",
    "virtual-size", "read-only", "chain", "jobs", "chain-checked",
    "warnings",
  };
  g_autoptr(SmDiskList) list = query (f);
  g_autoptr(json_object) doc = sm_disks_to_json (list);
  g_autofree char *base = g_strdup_printf ("%s/base.qcow2", f->dir);
  json_object *disks;
  json_object *d0;
  json_object *chain;
  json_object *l;
  size_t i;

  (void) data;
  g_assert_cmpint (json_object_object_length (doc), ==, 2);
  disks = member (doc, "disks", json_type_array);
  g_assert_cmpuint (json_object_array_length (disks), ==, 3);
  g_assert_cmpuint (json_object_array_length
                    (member (doc, "other-jobs", json_type_array)), ==, 0);

  d0 = json_object_array_get_idx (disks, 0);
  /* Every key is there, null when unknown, so consumers need no guards. */
  g_assert_cmpint (json_object_object_length (d0), ==,
                   G_N_ELEMENTS (disk_keys));
  for (i = 0; i < G_N_ELEMENTS (disk_keys); i++)
    g_assert_true (json_object_object_get_ex (d0, disk_keys[i], NULL));
  g_assert_cmpstr (json_object_get_string (member (d0, "device",
                                                   json_type_string)), ==,
                   "drive0");
  member (d0, "qdev", json_type_null);
  g_assert_cmpint (json_object_get_int64 (member (d0, "virtual-size",
                                                  json_type_int)), ==,
                   8 * MiB);
  g_assert_true (json_object_get_boolean (member (d0, "chain-checked",
                                                  json_type_boolean)));
  g_assert_cmpuint (json_object_array_length
                    (member (d0, "warnings", json_type_array)), ==, 0);
  g_assert_cmpuint (json_object_array_length
                    (member (d0, "jobs", json_type_array)), ==, 0);

  chain = member (d0, "chain", json_type_array);
  g_assert_cmpuint (json_object_array_length (chain), ==, 3);
  l = json_object_array_get_idx (chain, 1);
  g_assert_cmpstr (json_object_get_string (member (l, "backing-file",
                                                   json_type_string)), ==,
                   "base.qcow2");
  g_assert_cmpstr (json_object_get_string (member (l, "format",
                                                   json_type_string)), ==,
                   "qcow2");
  member (l, "node-name", json_type_string);
  l = json_object_array_get_idx (chain, 2);
  g_assert_cmpstr (json_object_get_string (member (l, "file",
                                                   json_type_string)), ==,
                   base);
  member (l, "backing-file", json_type_null);
}

static bool
is_running (json_object *event, void *opaque)
{
  json_object *data;
  json_object *v;

  return json_object_object_get_ex (event, "data", &data) &&
    json_object_object_get_ex (data, "id", &v) &&
    g_strcmp0 (json_object_get_string (v), opaque) == 0 &&
    json_object_object_get_ex (data, "status", &v) &&
    g_strcmp0 (json_object_get_string (v), "running") == 0;
}

static void
test_mirror_job (Fixture *f, gconstpointer data)
{
  g_autofree char *t2 = g_strdup_printf ("%s/copy2.qcow2", f->dir);
  g_autofree char *t1 = g_strdup_printf ("%s/copy1.raw", f->dir);
  g_autoptr(SmDiskList) list = NULL;
  g_autoptr(json_object) ev = NULL;
  g_autoptr(json_object) doc = NULL;
  g_autoptr(GError) err = NULL;
  SmQmp *qmp = sm_test_vm_qmp (f->vm);
  const SmDisk *d2;
  const SmBlockJob *job;
  json_object *j;

  (void) data;
  g_assert_true (sm_test_guest_write (f->vm, "drive2", 0x33, 0, 4 * MiB));
  /* A speed limit of 1 byte/s keeps the job running while we look. */
  g_assert_true (sm_qmp_run (qmp, "drive-mirror",
                             sm_qmp_args (&err, "s:device", "drive2",
                                          "s:target", t2, "s:format", "qcow2",
                                          "s:sync", "full", "i:speed",
                                          (int64_t) 1, NULL), &err));
  g_assert_no_error (err);
  g_assert_true (sm_qmp_run (qmp, "drive-mirror",
                             sm_qmp_args (&err, "s:device", "drive1",
                                          "s:job-id", "copy1",
                                          "s:target", t1, "s:format", "raw",
                                          "s:sync", "full", "i:speed",
                                          (int64_t) 1, NULL), &err));
  g_assert_no_error (err);
  ev = sm_qmp_wait_event (qmp, "JOB_STATUS_CHANGE", is_running,
                          (void *) "copy1", 20000, &err);
  g_assert_no_error (err);

  list = query (f);
  d2 = sm_disk_list_find (list, "drive2");
  g_assert_cmpuint (d2->jobs->len, ==, 1);
  job = d2->jobs->pdata[0];
  g_assert_cmpstr (job->type, ==, "mirror");
  g_assert_cmpstr (job->id, ==, "drive2");
  g_assert_false (job->ready);
  g_assert_cmpint (job->speed, ==, 1);
  g_assert_cmpuint (job->len, >=, job->offset);
  /* The mirror does not change what the disk is. */
  g_assert_cmpuint (d2->chain->len, ==, 1);
  assert_layer (d2, 0, f->dir, "d2.qcow2", "qcow2", NULL);
  g_assert_cmpuint (d2->warnings->len, ==, 0);

  /* A job-id is not tied to a disk by QEMU: it is listed apart. */
  g_assert_cmpuint (sm_disk_list_find (list, "drive1")->jobs->len, ==, 0);
  g_assert_cmpuint (list->other_jobs->len, ==, 1);
  job = list->other_jobs->pdata[0];
  g_assert_cmpstr (job->id, ==, "copy1");

  doc = sm_disks_to_json (list);
  j = json_object_array_get_idx (member (doc, "other-jobs", json_type_array),
                                 0);
  g_assert_cmpstr (json_object_get_string (member (j, "type",
                                                   json_type_string)), ==,
                   "mirror");
  /* QEMU's offset/len are done/total, as all progress in the JSON. */
  g_assert_cmpint (json_object_get_int64 (member (j, "done", json_type_int)),
                   ==, (int64_t) job->offset);
  g_assert_cmpint (json_object_get_int64 (member (j, "total", json_type_int)),
                   ==, (int64_t) job->len);
  g_assert_false (json_object_object_get_ex (j, "offset", NULL));
  member (j, "ready", json_type_boolean);
  g_assert_cmpstr (json_object_get_string (member (j, "status",
                                                   json_type_string)), ==,
                   "running");
}

/* The headers on disk changed behind QEMU's back: the report says so per
 * disk and still shows QEMU's view. */
static void
test_mismatch (Fixture *f, gconstpointer data)
{
  g_autofree char *mid = g_strdup_printf ("%s/mid.qcow2", f->dir);
  g_autofree char *old = g_strdup_printf ("%s/mid-old.qcow2", f->dir);
  g_autofree char *raw = g_strdup_printf ("%s/data.raw", f->dir);
  g_autoptr(SmDiskList) list = NULL;
  const SmDisk *d0;
  const SmDisk *d1;
  const char *w;

  (void) data;
  /* QEMU keeps the renamed file open; a new mid without backing file takes
   * its name. */
  g_assert_cmpint (g_rename (mid, old), ==, 0);
  g_assert_true (sm_test_create_qcow2 (mid, 8 * MiB, NULL, NULL));
  g_assert_cmpint (g_unlink (raw), ==, 0);

  list = query (f);
  d0 = sm_disk_list_find (list, "drive0");
  g_assert_cmpuint (d0->chain->len, ==, 3);
  g_assert_true (d0->chain_checked);
  g_assert_cmpuint (d0->warnings->len, ==, 1);
  w = d0->warnings->pdata[0];
  g_test_message ("drive0 warning: %s", w);
  g_assert_nonnull (strstr (w, mid));
  g_assert_nonnull (strstr (w, "(none)"));
  g_assert_nonnull (strstr (w, "'base.qcow2'"));

  d1 = sm_disk_list_find (list, "drive1");
  g_assert_false (d1->chain_checked);
  g_assert_cmpuint (d1->warnings->len, ==, 1);
  w = d1->warnings->pdata[0];
  g_test_message ("drive1 warning: %s", w);
  g_assert_nonnull (strstr (w, raw));

  g_assert_cmpuint (sm_disk_list_find (list, "drive2")->warnings->len, ==, 0);
}

static void
test_dead_vm (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmDiskList) list = NULL;

  (void) data;
  sm_test_vm_kill (f->vm);
  list = sm_disks_query (sm_test_vm_qmp (f->vm), &err);
  g_assert_null (list);
  g_assert_error (err, SM_ERROR, SM_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (err->message, sm_test_vm_socket (f->vm)));
}

/* A drive without a medium is listed, with nothing inserted. */
static void
test_empty_drive (void)
{
  g_autofree char *dir = g_strdup_printf ("%s/empty", tmpdir);
  const char *drives[] = { "if=none,id=empty0", NULL };
  g_autoptr(SmTestVm) vm = NULL;
  g_autoptr(SmDiskList) list = NULL;
  g_autoptr(json_object) doc = NULL;
  g_autoptr(GError) err = NULL;
  const SmDisk *d;
  json_object *dj;

  g_assert_cmpint (g_mkdir (dir, 0700), ==, 0);
  vm = sm_test_vm_start (dir, "vm", drives);
  g_assert_nonnull (vm);
  list = sm_disks_query (sm_test_vm_qmp (vm), &err);
  g_assert_no_error (err);
  g_assert_cmpuint (list->disks->len, ==, 1);
  d = list->disks->pdata[0];
  g_assert_cmpstr (d->device, ==, "empty0");
  g_assert_false (d->inserted);
  g_assert_null (d->file);
  g_assert_cmpuint (d->chain->len, ==, 0);
  g_assert_false (d->chain_checked);
  g_assert_cmpuint (d->warnings->len, ==, 0);
  doc = sm_disks_to_json (list);
  dj = json_object_array_get_idx (member (doc, "disks", json_type_array), 0);
  g_assert_false (json_object_get_boolean (member (dj, "inserted",
                                                   json_type_boolean)));
  member (dj, "file", json_type_null);
  member (dj, "format", json_type_null);
}

int
main (int argc, char **argv)
{
  g_autofree char *qemu = g_find_program_in_path ("qemu-system-x86_64");
  int rc;

  g_test_init (&argc, &argv, NULL);
  if (!qemu) {
    g_print ("1..0 # SKIP qemu-system-x86_64 not installed\n");
    return 77;
  }
  tmpdir = sm_test_tmpdir ();

#define ADD(path, fn) \
  g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/disks/three-disks", test_three_disks);
  ADD ("/disks/json", test_json);
  ADD ("/disks/mirror-job", test_mirror_job);
  ADD ("/disks/mismatch", test_mismatch);
  ADD ("/disks/dead-vm", test_dead_vm);
#undef ADD
  g_test_add_func ("/disks/empty-drive", test_empty_drive);

  rc = g_test_run ();
  g_free (tmpdir);
  return rc;
}
