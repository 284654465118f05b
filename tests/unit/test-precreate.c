/* Unit tests for lib/precreate: plans from real qemu-img chains, images
 * created with the real qemu-img and checked both natively (sm_image_probe)
 * and with `qemu-img info --output=json`. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <grp.h>
#include <stdlib.h>
#include <unistd.h>

#include <json-c/json.h>

#include "harness.h"
#include "image.h"
#include "precreate.h"

#define MiB ((uint64_t) 1024 * 1024)
#define DISK_SIZE (8 * MiB)


/* ---- helpers ---------------------------------------------------------- */

static void
qemu_io_write (const char *img, const char *fmt, unsigned pattern,
               uint64_t offset, uint64_t len)
{
  g_autofree char *cmd = g_strdup_printf ("write -P 0x%x %" PRIu64 " %"
                                          PRIu64, pattern, offset, len);
  const char *argv[] = { "qemu-io", "-f", fmt, "-c", cmd, img, NULL };

  g_assert_true (sm_test_run (argv, NULL, false));
}

/* SRC/base.FMT (BASE_FMT) <- SRC/mid.qcow2 <- SRC/top.qcow2, with relative
 * backing names and formats stated, some data in every layer; mid has
 * 128 KiB clusters so that the destination must copy the cluster size.
 * Returns the chain opened by lib/image. */
static SmImageChain *
make_chain (const char *src, const char *base_fmt)
{
  g_autofree char *base_name = g_strdup_printf ("base.%s", base_fmt);
  g_autofree char *base = g_build_filename (src, base_name, NULL);
  g_autofree char *mid = g_build_filename (src, "mid.qcow2", NULL);
  g_autofree char *top = g_build_filename (src, "top.qcow2", NULL);
  g_autofree char *size = g_strdup_printf ("%" PRIu64, DISK_SIZE);
  g_autoptr(GError) err = NULL;
  SmImageChain *chain;

  g_assert_cmpint (g_mkdir_with_parents (src, 0755), ==, 0);
  if (strcmp (base_fmt, "raw") == 0)
    g_assert_true (sm_test_create_raw (base, DISK_SIZE));
  else
    g_assert_true (sm_test_create_qcow2 (base, DISK_SIZE, NULL, NULL));
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2",
                                   "-o", "cluster_size=131072",
                                   "-F", base_fmt, "-b", base_name, mid, size,
                                   NULL));
  g_assert_true (sm_test_create_qcow2 (top, DISK_SIZE, "mid.qcow2", "qcow2"));
  qemu_io_write (base, base_fmt, 0x11, 0, 2 * MiB);
  qemu_io_write (mid, "qcow2", 0x22, 2 * MiB, 1 * MiB);
  qemu_io_write (top, "qcow2", 0x33, 4 * MiB, 1 * MiB);

  chain = sm_image_chain_open (top, SM_IMAGE_FORMAT_QCOW2, src, 0, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (chain->layers->len, ==, 3);
  return chain;
}

static SmPrecreateLayer *
layer_at (const SmPrecreatePlan *plan, unsigned i)
{
  g_assert_cmpuint (i, <, plan->layers->len);
  return plan->layers->pdata[i];
}

static json_object *
qemu_img_info (const char *path)
{
  const char *argv[] = { "qemu-img", "info", "--output=json", path, NULL };
  g_autofree char *out = NULL;
  json_object *obj;

  g_assert_true (sm_test_run (argv, &out, false));
  obj = json_tokener_parse (out);
  g_assert_nonnull (obj);
  return obj;
}

static const char *
json_str (json_object *obj, const char *key)
{
  json_object *v;

  if (!json_object_object_get_ex (obj, key, &v))
    return NULL;
  return json_object_get_string (v);
}

static int64_t
json_int (json_object *obj, const char *key)
{
  json_object *v;

  g_assert_true (json_object_object_get_ex (obj, key, &v));
  return json_object_get_int64 (v);
}

/* Checks the image at LAYER's path against the plan, natively and with
 * qemu-img. */
static void
assert_image_matches (const SmPrecreateLayer *layer)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmImageInfo) info = sm_image_probe (layer->path, layer->format,
                                                &err);
  json_object *qi;

  g_assert_no_error (err);
  g_assert_cmpuint (info->virtual_size, ==, layer->virtual_size);
  g_assert_cmpstr (info->backing_file, ==, layer->backing_name);

  qi = qemu_img_info (layer->path);
  g_assert_cmpstr (json_str (qi, "format"), ==,
                   sm_image_format_to_string (layer->format));
  g_assert_cmpint (json_int (qi, "virtual-size"), ==,
                   (int64_t) layer->virtual_size);
  g_assert_cmpstr (json_str (qi, "backing-filename"), ==, layer->backing_name);
  if (layer->backing_name) {
    g_assert_false (g_path_is_absolute (layer->backing_name));
    g_assert_cmpstr (info->backing_format, ==,
                     sm_image_format_to_string (layer->backing_format));
    g_assert_cmpstr (json_str (qi, "backing-filename-format"), ==,
                     sm_image_format_to_string (layer->backing_format));
  }
  if (layer->format == SM_IMAGE_FORMAT_QCOW2 && layer->cluster_size)
    g_assert_cmpint (json_int (qi, "cluster-size"), ==,
                     (int64_t) layer->cluster_size);
  json_object_put (qi);
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Sorted names in DIR, joined by spaces ("" when empty). */
static char *
dir_listing (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  g_autoptr(GPtrArray) names = g_ptr_array_new_null_terminated (8, g_free,
                                                                TRUE);
  const char *name;

  g_assert_nonnull (d);
  while ((name = g_dir_read_name (d)))
    g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_names);
  if (names->len == 0)
    return g_strdup ("");
  return g_strjoinv (" ", (char **) names->pdata);
}

/* What a user would notice if a file had been touched. */
typedef struct {
  char *content;
  gsize len;
  struct timespec mtime;
  ino_t ino;
} FileStamp;

static void
stamp_take (FileStamp *s, const char *path)
{
  struct stat st;

  g_assert_true (g_file_get_contents (path, &s->content, &s->len, NULL));
  g_assert_cmpint (stat (path, &st), ==, 0);
  s->mtime = st.st_mtim;
  s->ino = st.st_ino;
}

static void
stamp_assert_same (FileStamp *s, const char *path)
{
  g_autofree char *now = NULL;
  gsize len;
  struct stat st;

  g_assert_true (g_file_get_contents (path, &now, &len, NULL));
  g_assert_cmpmem (now, len, s->content, s->len);
  g_assert_cmpint (stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mtim.tv_sec, ==, s->mtime.tv_sec);
  g_assert_cmpint (st.st_mtim.tv_nsec, ==, s->mtime.tv_nsec);
  g_assert_cmpint (st.st_ino, ==, s->ino);
  g_clear_pointer (&s->content, g_free);
}

/* Sets PATH's mtime well in the past, so that a rewrite shows. */
static void
age_file (const char *path)
{
  struct timespec times[2] = { { 1000000000, 0 }, { 1000000000, 0 } };

  g_assert_cmpint (utimensat (AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW), ==,
                   0);
}

static void
assert_error_mentions (const GError *err, int code, const char *a,
                       const char *b)
{
  g_assert_error (err, SM_ERROR, code);
  if (a && !strstr (err->message, a))
    g_error ("'%s' not in error message: %s", a, err->message);
  if (b && !strstr (err->message, b))
    g_error ("'%s' not in error message: %s", b, err->message);
}

/* ---- plans ------------------------------------------------------------ */

static void
test_plan_chain (gconstpointer data)
{
  const char *base_fmt = data;
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *base_name = g_strdup_printf ("base.%s", base_fmt);
  g_autoptr(SmImageChain) chain = make_chain (src, base_fmt);
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(GError) err = NULL;
  SmImageFormat bfmt = sm_image_format_from_string (base_fmt);
  const char *names[] = { "top.qcow2", "mid.qcow2", base_name };
  const char *backing[] = { "mid.qcow2", base_name, NULL };
  SmImageFormat bfmts[] = { SM_IMAGE_FORMAT_QCOW2, bfmt, SM_IMAGE_FORMAT_LAST };
  SmImageFormat fmts[] = { SM_IMAGE_FORMAT_QCOW2, SM_IMAGE_FORMAT_QCOW2, bfmt };
  unsigned i;

  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dst, NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpint (plan->mode, ==, SM_PRECREATE_CHAIN);
  g_assert_cmpstr (plan->dest_dir, ==, dst);
  g_assert_cmpuint (plan->layers->len, ==, 3);
  for (i = 0; i < 3; i++) {
    const SmPrecreateLayer *l = layer_at (plan, i);
    const SmImageInfo *s = chain->layers->pdata[i];
    g_autofree char *want = g_build_filename (dst, names[i], NULL);

    g_assert_cmpstr (l->path, ==, want);
    g_assert_cmpstr (l->source_path, ==, s->path);
    g_assert_cmpint (l->format, ==, fmts[i]);
    g_assert_cmpuint (l->virtual_size, ==, DISK_SIZE);
    g_assert_cmpstr (l->backing_name, ==, backing[i]);
    g_assert_cmpint (l->backing_format, ==, bfmts[i]);
    g_assert_false (l->reuse);
    if (l->format == SM_IMAGE_FORMAT_RAW) {
      g_assert_cmpuint (l->required_bytes, ==, DISK_SIZE);
    } else {
      /* Room for the source's data plus metadata, and not absurdly more. */
      g_assert_cmpuint (l->required_bytes, >=, s->allocated_bytes);
      g_assert_cmpuint (l->required_bytes, <=, s->allocated_bytes + 2 * MiB);
      g_assert_cmpuint (l->cluster_size, ==, s->cluster_size);
    }
  }
  g_assert_cmpuint (layer_at (plan, 1)->cluster_size, ==, 128 * 1024);

  /* The snapshot's new top on top of the copy of the source top. */
  g_clear_pointer (&plan, sm_precreate_plan_free);
  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dst, "new.qcow2", &err);
  g_assert_no_error (err);
  g_assert_cmpuint (plan->layers->len, ==, 4);
  {
    const SmPrecreateLayer *l = layer_at (plan, 0);
    g_autofree char *want = g_build_filename (dst, "new.qcow2", NULL);
    g_autofree char *top = g_build_filename (dst, "top.qcow2", NULL);

    g_assert_cmpstr (l->path, ==, want);
    g_assert_null (l->source_path);
    g_assert_cmpint (l->format, ==, SM_IMAGE_FORMAT_QCOW2);
    g_assert_cmpuint (l->virtual_size, ==, DISK_SIZE);
    g_assert_cmpstr (l->backing_name, ==, "top.qcow2");
    g_assert_cmpint (l->backing_format, ==, SM_IMAGE_FORMAT_QCOW2);
    g_assert_cmpuint (l->required_bytes, >, 0);
    g_assert_cmpuint (l->required_bytes, <, MiB);
    g_assert_cmpstr (layer_at (plan, 1)->path, ==, top);
  }
}

static void
test_plan_flat (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *want = g_build_filename (dst, "top.qcow2", NULL);
  g_autofree char *raw = g_build_filename (src, "disk.img", NULL);
  g_autofree char *raw_want = g_build_filename (dst, "disk.img", NULL);
  g_autoptr(SmImageChain) chain = make_chain (src, "raw");
  g_autoptr(SmImageChain) raw_chain = NULL;
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(GError) err = NULL;
  const SmPrecreateLayer *l;
  uint64_t data = 0;
  unsigned i;

  plan = sm_precreate_plan (chain, SM_PRECREATE_FLAT, dst, NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpint (plan->mode, ==, SM_PRECREATE_FLAT);
  g_assert_cmpuint (plan->layers->len, ==, 1);
  l = layer_at (plan, 0);
  g_assert_cmpstr (l->path, ==, want);
  g_assert_cmpstr (l->source_path, ==,
                   ((SmImageInfo *) chain->layers->pdata[0])->path);
  g_assert_cmpint (l->format, ==, SM_IMAGE_FORMAT_QCOW2);
  g_assert_cmpuint (l->virtual_size, ==, DISK_SIZE);
  g_assert_null (l->backing_name);
  g_assert_cmpint (l->backing_format, ==, SM_IMAGE_FORMAT_LAST);
  /* The flat image receives every layer's data. */
  for (i = 0; i < chain->layers->len; i++)
    data += ((SmImageInfo *) chain->layers->pdata[i])->allocated_bytes;
  g_assert_cmpuint (l->required_bytes, >=, MIN (data, DISK_SIZE));
  g_assert_cmpuint (l->required_bytes, <=, DISK_SIZE + 2 * MiB);

  /* A raw disk: one raw image of the full size. */
  g_assert_true (sm_test_create_raw (raw, 3 * MiB + 512));
  raw_chain = sm_image_chain_open (raw, SM_IMAGE_FORMAT_RAW, src, 0, &err);
  g_assert_no_error (err);
  g_clear_pointer (&plan, sm_precreate_plan_free);
  plan = sm_precreate_plan (raw_chain, SM_PRECREATE_FLAT, dst, NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (plan->layers->len, ==, 1);
  l = layer_at (plan, 0);
  g_assert_cmpstr (l->path, ==, raw_want);
  g_assert_cmpint (l->format, ==, SM_IMAGE_FORMAT_RAW);
  g_assert_cmpuint (l->virtual_size, ==, 3 * MiB + 512);
  g_assert_cmpuint (l->required_bytes, ==, 3 * MiB + 512);
  g_assert_null (l->backing_name);

  /* A flat destination has no new top. */
  g_clear_pointer (&plan, sm_precreate_plan_free);
  plan = sm_precreate_plan (chain, SM_PRECREATE_FLAT, dst, "new.qcow2", &err);
  g_assert_null (plan);
  assert_error_mentions (err, SM_ERROR_INVALID, "new.qcow2", NULL);
}

static void
test_plan_bad_names (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *a = g_build_filename (src, "a", NULL);
  g_autofree char *b = g_build_filename (src, "b", NULL);
  g_autofree char *a_disk = g_build_filename (a, "base.qcow2", NULL);
  g_autofree char *b_disk = g_build_filename (b, "base.qcow2", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autoptr(SmImageChain) chain = make_chain (src, "qcow2");
  g_autoptr(SmImageChain) dup = NULL;
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(GError) err = NULL;
  const char *bad[] = { "a/b.qcow2", "..", ".", "", "../x.qcow2" };
  unsigned i;

  for (i = 0; i < G_N_ELEMENTS (bad); i++) {
    plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dst, bad[i], &err);
    g_assert_null (plan);
    assert_error_mentions (err, SM_ERROR_INVALID, "not a plain file name",
                           NULL);
    g_clear_error (&err);
  }

  /* The new top must not take the name of a layer below it. */
  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dst, "mid.qcow2", &err);
  g_assert_null (plan);
  assert_error_mentions (err, SM_ERROR_INVALID, "mid.qcow2", "new top");
  g_clear_error (&err);

  /* Two layers called base.qcow2 in different directories. */
  g_assert_cmpint (g_mkdir_with_parents (a, 0755), ==, 0);
  g_assert_cmpint (g_mkdir_with_parents (b, 0755), ==, 0);
  g_assert_true (sm_test_create_qcow2 (a_disk, DISK_SIZE, NULL, NULL));
  g_assert_true (sm_test_create_qcow2 (b_disk, 0, "../a/base.qcow2",
                                       "qcow2"));
  dup = sm_image_chain_open (b_disk, SM_IMAGE_FORMAT_QCOW2, src, 0, &err);
  g_assert_no_error (err);
  plan = sm_precreate_plan (dup, SM_PRECREATE_CHAIN, dst, NULL, &err);
  g_assert_null (plan);
  assert_error_mentions (err, SM_ERROR_INVALID, "/a/base.qcow2",
                         "/b/base.qcow2");
}

/* A name with a colon: QEMU would read "x:" as a protocol prefix in a
 * backing name, so the destination names it "./x:base.qcow2"; QEMU then
 * opens the whole destination chain as files. */
static void
test_colon_name (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *base = g_build_filename (src, "x:base.qcow2", NULL);
  g_autofree char *top = g_build_filename (src, "top.qcow2", NULL);
  g_autofree char *dst_top = g_build_filename (dst, "top.qcow2", NULL);
  g_autoptr(SmImageChain) chain = NULL;
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(GError) err = NULL;
  const char *argv[] = { "qemu-img", "info", "--backing-chain", "-f", "qcow2",
                         dst_top, NULL };

  g_assert_cmpint (g_mkdir_with_parents (src, 0755), ==, 0);
  g_assert_cmpint (g_mkdir_with_parents (dst, 0755), ==, 0);
  g_assert_true (sm_test_create_qcow2 (base, DISK_SIZE, NULL, NULL));
  g_assert_true (sm_test_create_qcow2 (top, DISK_SIZE, "./x:base.qcow2",
                                       "qcow2"));
  chain = sm_image_chain_open (top, SM_IMAGE_FORMAT_QCOW2, src, 0, &err);
  g_assert_no_error (err);
  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dst, "new:top.qcow2",
                            &err);
  g_assert_no_error (err);
  g_assert_cmpstr (layer_at (plan, 0)->backing_name, ==, "top.qcow2");
  g_assert_cmpstr (layer_at (plan, 1)->backing_name, ==, "./x:base.qcow2");
  /* Only the copies of the chain: the new top is not needed here. */
  g_ptr_array_remove_index (plan->layers, 0);
  g_assert_true (sm_precreate_execute (plan, 0, created, &err));
  g_assert_no_error (err);
  assert_image_matches (layer_at (plan, 0));
  g_assert_true (sm_test_run (argv, NULL, false));
}

/* ---- execution -------------------------------------------------------- */

static void
test_execute_chain (gconstpointer data)
{
  const char *base_fmt = data;
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *dst_top = g_build_filename (dst, "new.qcow2", NULL);
  g_autofree char *listing = NULL;
  g_autofree char *want_listing = g_strdup_printf ("base.%s mid.qcow2 "
                                                   "new.qcow2 top.qcow2",
                                                   base_fmt);
  g_autoptr(SmImageChain) chain = make_chain (src, base_fmt);
  g_autoptr(SmImageChain) dchain = NULL;
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(GError) err = NULL;
  const char *const *paths;
  size_t n;
  unsigned i;

  g_assert_cmpint (g_mkdir_with_parents (dst, 0755), ==, 0);
  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dst, "new.qcow2", &err);
  g_assert_no_error (err);
  g_assert_true (sm_precreate_execute (plan, 0, created, &err));
  g_assert_no_error (err);

  listing = dir_listing (dst);
  g_assert_cmpstr (listing, ==, want_listing);
  /* Recorded bottom-up, in creation order. */
  paths = sm_created_files_paths (created, &n);
  g_assert_cmpuint (n, ==, 4);
  for (i = 0; i < 4; i++) {
    const SmPrecreateLayer *l = layer_at (plan, 3 - i);

    g_assert_cmpstr (paths[i], ==, l->path);
    g_assert_false (l->reuse);
    assert_image_matches (l);
  }
  g_assert_null (paths[4]);

  /* The whole destination chain opens with formats stated, and it is empty:
   * the copy has not run yet. */
  dchain = sm_image_chain_open (dst_top, SM_IMAGE_FORMAT_QCOW2, dst, 0, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (dchain->layers->len, ==, 4);
  g_assert_true (sm_test_image_read_pattern (dst_top, "qcow2", 0, 0,
                                             DISK_SIZE));
}

static void
test_execute_flat (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *raw = g_build_filename (src, "disk.img", NULL);
  g_autoptr(SmImageChain) chain = make_chain (src, "raw");
  g_autoptr(SmImageChain) raw_chain = NULL;
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(GError) err = NULL;
  g_autofree char *listing = NULL;
  struct stat st;

  g_assert_cmpint (g_mkdir_with_parents (dst, 0755), ==, 0);
  plan = sm_precreate_plan (chain, SM_PRECREATE_FLAT, dst, NULL, &err);
  g_assert_no_error (err);
  g_assert_true (sm_precreate_execute (plan, 0, created, &err));
  g_assert_no_error (err);
  assert_image_matches (layer_at (plan, 0));

  /* Raw: the full size, sparse. */
  g_assert_true (sm_test_create_raw (raw, 3 * MiB + 512));
  raw_chain = sm_image_chain_open (raw, SM_IMAGE_FORMAT_RAW, src, 0, &err);
  g_assert_no_error (err);
  g_clear_pointer (&plan, sm_precreate_plan_free);
  plan = sm_precreate_plan (raw_chain, SM_PRECREATE_FLAT, dst, NULL, &err);
  g_assert_no_error (err);
  g_assert_true (sm_precreate_execute (plan, 0, created, &err));
  g_assert_no_error (err);
  assert_image_matches (layer_at (plan, 0));
  g_assert_cmpint (stat (layer_at (plan, 0)->path, &st), ==, 0);
  g_assert_cmpint (st.st_size, ==, 3 * MiB + 512);
  g_assert_cmpint (st.st_blocks * 512, <, 3 * MiB);

  listing = dir_listing (dst);
  g_assert_cmpstr (listing, ==, "disk.img top.qcow2");
  g_assert_cmpuint (g_strv_length ((char **) sm_created_files_paths (created,
                                                                     NULL)),
                    ==, 2);
}

/* drive-mirror mode=existing opens the target's backing only at completion
 * (QEMU-FACTS): the destination top is made while its backing is absent. */
static void
test_execute_backing_absent (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *listing = NULL;
  g_autoptr(SmImageChain) chain = make_chain (src, "qcow2");
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(GError) err = NULL;

  g_assert_cmpint (g_mkdir_with_parents (dst, 0755), ==, 0);
  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dst, "new.qcow2", &err);
  g_assert_no_error (err);
  /* Keep the new top only: its backing top.qcow2 will be copied later. */
  g_ptr_array_remove_range (plan->layers, 1, plan->layers->len - 1);
  g_assert_true (sm_precreate_execute (plan, 0, created, &err));
  g_assert_no_error (err);
  listing = dir_listing (dst);
  g_assert_cmpstr (listing, ==, "new.qcow2");
  assert_image_matches (layer_at (plan, 0));
}

static void
test_exists (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *mid = g_build_filename (dst, "mid.qcow2", NULL);
  g_autofree char *top = g_build_filename (dst, "top.qcow2", NULL);
  g_autofree char *base = g_build_filename (dst, "base.raw", NULL);
  g_autofree char *dangling = g_build_filename (tmp, "nowhere", "x", NULL);
  g_autoptr(SmImageChain) chain = make_chain (src, "raw");
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(GError) err = NULL;
  g_autofree char *listing = NULL;
  FileStamp stamp = { 0 };

  g_assert_cmpint (g_mkdir_with_parents (dst, 0755), ==, 0);
  g_assert_true (g_file_set_contents (mid, "precious data\n", -1, NULL));
  age_file (mid);
  stamp_take (&stamp, mid);

  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dst, NULL, &err);
  g_assert_no_error (err);
  g_assert_false (sm_precreate_check (plan, 0, &err));
  assert_error_mentions (err, SM_ERROR_EXISTS, mid,
                         "target exists (use --reuse-external to reuse it)");
  g_clear_error (&err);
  g_assert_false (sm_precreate_execute (plan, 0, created, &err));
  assert_error_mentions (err, SM_ERROR_EXISTS, mid, "--reuse-external");
  g_clear_error (&err);
  listing = dir_listing (dst);
  g_assert_cmpstr (listing, ==, "mid.qcow2");
  g_assert_null (sm_created_files_paths (created, NULL)[0]);
  stamp_assert_same (&stamp, mid);
  g_assert_cmpint (unlink (mid), ==, 0);

  /* A dangling symbolic link is a name that exists: writing through it
   * would make a file outside the destination. */
  g_assert_cmpint (symlink (dangling, top), ==, 0);
  g_assert_false (sm_precreate_execute (plan, 0, created, &err));
  assert_error_mentions (err, SM_ERROR_EXISTS, top, "target exists");
  g_clear_error (&err);
  g_assert_false (g_file_test (dangling, G_FILE_TEST_EXISTS));
  g_assert_cmpint (unlink (top), ==, 0);

  /* So is a directory. */
  g_assert_cmpint (mkdir (base, 0755), ==, 0);
  g_assert_false (sm_precreate_execute (plan, 0, created, &err));
  assert_error_mentions (err, SM_ERROR_EXISTS, base, "target exists");
  g_clear_pointer (&listing, g_free);
  listing = dir_listing (dst);
  g_assert_cmpstr (listing, ==, "base.raw");
  g_assert_null (sm_created_files_paths (created, NULL)[0]);
}

static void
test_reuse (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *mid = g_build_filename (dst, "mid.qcow2", NULL);
  g_autofree char *size = g_strdup_printf ("%" PRIu64, DISK_SIZE);
  g_autoptr(SmImageChain) chain = make_chain (src, "raw");
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(SmCreatedFiles) again = sm_created_files_new ();
  g_autoptr(GError) err = NULL;
  FileStamp stamps[3] = { { 0 } };
  unsigned i;

  g_assert_cmpint (g_mkdir_with_parents (dst, 0755), ==, 0);
  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dst, NULL, &err);
  g_assert_no_error (err);

  /* REUSE means the files were made beforehand: all of them. */
  g_assert_false (sm_precreate_execute (plan, SM_PRECREATE_REUSE, created,
                                        &err));
  assert_error_mentions (err, SM_ERROR_NOT_FOUND, "does not exist", dst);
  g_clear_error (&err);
  g_assert_null (sm_created_files_paths (created, NULL)[0]);

  g_assert_true (sm_precreate_execute (plan, 0, created, &err));
  g_assert_no_error (err);
  for (i = 0; i < 3; i++) {
    age_file (layer_at (plan, i)->path);
    stamp_take (&stamps[i], layer_at (plan, i)->path);
  }

  /* Matching files are reused as they are. */
  g_assert_true (sm_precreate_execute (plan, SM_PRECREATE_REUSE, again, &err));
  g_assert_no_error (err);
  g_assert_null (sm_created_files_paths (again, NULL)[0]);
  for (i = 0; i < 3; i++) {
    g_assert_true (layer_at (plan, i)->reuse);
    stamp_assert_same (&stamps[i], layer_at (plan, i)->path);
  }

  /* Wrong virtual size. */
  g_assert_cmpint (unlink (mid), ==, 0);
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-F", "raw",
                                   "-b", "base.raw", "-u", mid, "16M", NULL));
  g_assert_false (sm_precreate_execute (plan, SM_PRECREATE_REUSE, again,
                                        &err));
  assert_error_mentions (err, SM_ERROR_INVALID, mid, "virtual size");
  g_assert_nonnull (strstr (err->message, "16777216"));
  g_assert_nonnull (strstr (err->message, "8388608"));
  g_clear_error (&err);

  /* Wrong backing file. */
  g_assert_cmpint (unlink (mid), ==, 0);
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-F", "raw",
                                   "-b", "other.raw", "-u", mid, size, NULL));
  g_assert_false (sm_precreate_execute (plan, SM_PRECREATE_REUSE, again,
                                        &err));
  assert_error_mentions (err, SM_ERROR_INVALID, mid,
                         "backing file is 'other.raw', expected 'base.raw'");
  g_clear_error (&err);

  /* Wrong backing format. */
  g_assert_cmpint (unlink (mid), ==, 0);
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-F",
                                   "qcow2", "-b", "base.raw", "-u", mid, size,
                                   NULL));
  g_assert_false (sm_precreate_execute (plan, SM_PRECREATE_REUSE, again,
                                        &err));
  assert_error_mentions (err, SM_ERROR_INVALID, mid,
                         "backing format is 'qcow2', expected raw");
  g_clear_error (&err);

  /* Not a qcow2 image at all. */
  g_assert_cmpint (unlink (mid), ==, 0);
  g_assert_true (g_file_set_contents (mid, "not an image", -1, NULL));
  g_assert_false (sm_precreate_execute (plan, SM_PRECREATE_REUSE, again,
                                        &err));
  g_assert_nonnull (err);
  g_assert_nonnull (strstr (err->message, mid));
  g_assert_null (sm_created_files_paths (again, NULL)[0]);
}

static bool
dir_is_empty (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);

  g_assert_nonnull (dir);
  return g_dir_read_name (dir) == NULL;
}

/* Tries PLAN as the current user, or, as root, in a child process running
 * as nobody (setgroups, setgid, setuid 65534): sm_precreate_check, or with
 * EXECUTE sm_precreate_execute, which must also record nothing.  Returns
 * false when the call succeeded; otherwise its error code and message. */
static bool
unprivileged_attempt (SmPrecreatePlan *plan, bool execute, int *code,
                      char **msg)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autofree char *out = NULL;
  int fds[2], status;
  pid_t pid;
  bool ok;

  if (geteuid () != 0) {
    ok = execute ? sm_precreate_execute (plan, 0, created, &err)
                 : sm_precreate_check (plan, 0, &err);
    g_assert_null (sm_created_files_paths (created, NULL)[0]);
    if (ok)
      return false;
    *code = err->code;
    *msg = g_strdup (err->message);
    return true;
  }

  g_assert_cmpint (pipe (fds), ==, 0);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0) {
    g_autofree char *line = NULL;
    size_t len;

    close (fds[0]);
    if (setgroups (0, NULL) < 0 || setgid (65534) < 0 || setuid (65534) < 0)
      _exit (2);
    ok = execute ? sm_precreate_execute (plan, 0, created, &err)
                 : sm_precreate_check (plan, 0, &err);
    /* Exit status: 0 failed as expected, 1 succeeded, 3 recorded a file. */
    if (sm_created_files_paths (created, NULL)[0])
      _exit (3);
    if (ok)
      _exit (1);
    line = g_strdup_printf ("%d %s", err->code, err->message);
    len = strlen (line);
    _exit (write (fds[1], line, len) == (ssize_t) len ? 0 : 2);
  }
  close (fds[1]);
  {
    GString *buf = g_string_new (NULL);
    char chunk[256];
    ssize_t r;

    while ((r = read (fds[0], chunk, sizeof chunk)) > 0)
      g_string_append_len (buf, chunk, r);
    out = g_string_free (buf, false);
  }
  close (fds[0]);
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), !=, 2);
  g_assert_cmpint (WEXITSTATUS (status), !=, 3);
  if (WEXITSTATUS (status) == 1)
    return false;
  *code = atoi (out);
  g_assert_nonnull (strchr (out, ' '));
  *msg = g_strdup (strchr (out, ' ') + 1);
  return true;
}

static void
test_dest_dir (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *missing = g_build_filename (tmp, "missing", NULL);
  g_autofree char *file = g_build_filename (tmp, "file", NULL);
  g_autofree char *under_file = g_build_filename (file, "dst", NULL);
  g_autofree char *ro = g_build_filename (tmp, "ro", NULL);
  g_autoptr(SmImageChain) chain = make_chain (src, "raw");
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(GError) err = NULL;
  int i;

  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, missing, NULL, &err);
  g_assert_no_error (err);
  g_assert_false (sm_precreate_execute (plan, 0, created, &err));
  assert_error_mentions (err, SM_ERROR_NOT_FOUND, missing, NULL);
  g_clear_error (&err);
  g_assert_false (g_file_test (missing, G_FILE_TEST_EXISTS));

  g_assert_true (g_file_set_contents (file, "", -1, NULL));
  g_clear_pointer (&plan, sm_precreate_plan_free);
  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, file, NULL, &err);
  g_assert_no_error (err);
  g_assert_false (sm_precreate_execute (plan, 0, created, &err));
  assert_error_mentions (err, SM_ERROR_INVALID, file, "not a directory");
  g_clear_error (&err);

  g_clear_pointer (&plan, sm_precreate_plan_free);
  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, under_file, NULL, &err);
  g_assert_no_error (err);
  g_assert_false (sm_precreate_check (plan, 0, &err));
  assert_error_mentions (err, SM_ERROR_IO, under_file, NULL);
  g_clear_error (&err);
  g_assert_null (sm_created_files_paths (created, NULL)[0]);

  /* Root passes access(W_OK) on any directory: as root, the check runs in a
   * child that became nobody, against a root-owned 0755 directory. */
  g_assert_cmpint (mkdir (ro, geteuid () == 0 ? 0755 : 0555), ==, 0);
  g_assert_cmpint (chmod (tmp, 0755), ==, 0);
  g_clear_pointer (&plan, sm_precreate_plan_free);
  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, ro, NULL, &err);
  g_assert_no_error (err);
  for (i = 0; i < 2; i++) {
    g_autofree char *msg = NULL;
    int code = -1;

    if (!unprivileged_attempt (plan, i == 1, &code, &msg)) {
      g_test_message ("expected a failure, %s succeeded",
                      i ? "sm_precreate_execute" : "sm_precreate_check");
      g_test_fail ();
      continue;
    }
    g_assert_cmpint (code, ==, SM_ERROR_IO);
    g_assert_nonnull (strstr (msg, ro));
    g_assert_nonnull (strstr (msg, "not writable"));
  }
  g_assert_true (dir_is_empty (ro));
  g_assert_cmpint (chmod (ro, 0755), ==, 0);
}

static void
test_space (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *big = g_build_filename (src, "big.img", NULL);
  g_autofree char *listing = NULL;
  g_autoptr(SmImageChain) chain = NULL;
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(GError) err = NULL;
  struct statvfs vfs;
  uint64_t avail;
  int fd;

  g_assert_cmpint (g_mkdir_with_parents (src, 0755), ==, 0);
  g_assert_cmpint (g_mkdir_with_parents (dst, 0755), ==, 0);
  g_assert_cmpint (statvfs (tmp, &vfs), ==, 0);
  avail = (uint64_t) vfs.f_bavail * vfs.f_frsize;

  /* A sparse raw disk larger than the free space: its flat copy cannot
   * fit. */
  fd = open (big, O_WRONLY | O_CREAT | O_EXCL, 0644);
  g_assert_cmpint (fd, >=, 0);
  if (ftruncate (fd, (off_t) (avail + avail / 2 + 64 * MiB)) < 0) {
    g_autofree char *msg = g_strdup_printf ("cannot make a sparse file "
                                            "larger than the free space: %s",
                                            g_strerror (errno));
    close (fd);
    g_test_skip (msg);
    return;
  }
  close (fd);
  chain = sm_image_chain_open (big, SM_IMAGE_FORMAT_RAW, src, 0, &err);
  g_assert_no_error (err);
  plan = sm_precreate_plan (chain, SM_PRECREATE_FLAT, dst, NULL, &err);
  g_assert_no_error (err);
  g_assert_false (sm_precreate_execute (plan, 0, created, &err));
  assert_error_mentions (err, SM_ERROR_IO, "not enough space in", dst);
  g_assert_nonnull (strstr (err->message, ", have "));
  listing = dir_listing (dst);
  g_assert_cmpstr (listing, ==, "");
}

/* A failure after some layers exist removes exactly those: qemu-img is made
 * to refuse the middle layer through the plan (an invalid cluster size),
 * since a real file system gives no deterministic way to make it fail after
 * the check passed. */
static void
test_failure_midway (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *other = g_build_filename (dst, "unrelated.qcow2", NULL);
  g_autofree char *earlier = g_build_filename (tmp, "earlier.qcow2", NULL);
  g_autofree char *listing = NULL;
  g_autoptr(SmImageChain) chain = make_chain (src, "raw");
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(GError) err = NULL;
  const char *const *paths;
  FileStamp stamp = { 0 };
  size_t n;

  g_assert_cmpint (g_mkdir_with_parents (dst, 0755), ==, 0);
  g_assert_true (g_file_set_contents (other, "someone else's", -1, NULL));
  age_file (other);
  stamp_take (&stamp, other);
  /* An earlier step of the same operation recorded a file already. */
  sm_created_files_add (created, earlier);

  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dst, NULL, &err);
  g_assert_no_error (err);
  layer_at (plan, 1)->cluster_size = 12345;
  g_assert_false (sm_precreate_execute (plan, 0, created, &err));
  assert_error_mentions (err, SM_ERROR_IO, layer_at (plan, 1)->path,
                         "qemu-img create failed");
  g_assert_nonnull (strstr (err->message, "luster size"));
  g_assert_null (strchr (err->message, '\n'));

  listing = dir_listing (dst);
  g_assert_cmpstr (listing, ==, "unrelated.qcow2");
  stamp_assert_same (&stamp, other);
  paths = sm_created_files_paths (created, &n);
  g_assert_cmpuint (n, ==, 1);
  g_assert_cmpstr (paths[0], ==, earlier);
}

/* Block device targets (oVirt's block domains link LVs into place): a
 * blank one is used without being recorded, a small one or one holding data
 * is refused; a loop device over a sparse file stands in for the LV. */
static void
test_block_device (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *backing = g_build_filename (tmp, "lv.img", NULL);
  g_autofree char *small_backing = g_build_filename (tmp, "small.img", NULL);
  g_autofree char *dev = NULL;
  g_autofree char *small_dev = NULL;
  g_autofree char *base = g_build_filename (dst, "base.qcow2", NULL);
  g_autofree char *mid = g_build_filename (dst, "mid.qcow2", NULL);
  g_autofree char *listing = NULL;
  g_autoptr(SmImageChain) chain = NULL;
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(GError) err = NULL;
  const char *const *paths;
  size_t n;
  int fd, small_fd;

  g_assert_true (sm_test_create_raw (backing, 32 * MiB));
  g_assert_true (sm_test_create_raw (small_backing, 1 * MiB));
  fd = sm_test_loop_attach (backing, &dev);
  if (fd < 0) {
    g_test_skip ("no loop device available: block device targets not "
                 "tested");
    return;
  }
  small_fd = sm_test_loop_attach (small_backing, &small_dev);
  g_assert_cmpint (small_fd, >=, 0);

  chain = make_chain (src, "qcow2");
  g_assert_cmpint (g_mkdir_with_parents (dst, 0755), ==, 0);
  plan = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dst, NULL, &err);
  g_assert_no_error (err);

  /* Too small for the base layer. */
  g_assert_cmpint (symlink (small_dev, base), ==, 0);
  g_assert_false (sm_precreate_execute (plan, 0, created, &err));
  assert_error_mentions (err, SM_ERROR_INVALID, base,
                         "block device too small");
  g_clear_error (&err);
  g_assert_cmpint (unlink (base), ==, 0);

  /* A blank device gets the qcow2 header; it is not recorded, so a
   * rollback can never remove it. */
  g_assert_cmpint (symlink (dev, base), ==, 0);
  g_assert_true (sm_precreate_execute (plan, 0, created, &err));
  g_assert_no_error (err);
  g_assert_true (layer_at (plan, 2)->block_device);
  g_assert_false (layer_at (plan, 2)->reuse);
  assert_image_matches (layer_at (plan, 2));
  assert_image_matches (layer_at (plan, 1));
  assert_image_matches (layer_at (plan, 0));
  paths = sm_created_files_paths (created, &n);
  g_assert_cmpuint (n, ==, 2);
  g_assert_cmpstr (paths[0], ==, mid);

  /* Now it holds an image: refused without REUSE, reused with it. */
  g_assert_true (sm_created_files_rollback (created, &err));
  g_assert_no_error (err);
  listing = dir_listing (dst);
  g_assert_cmpstr (listing, ==, "base.qcow2");
  g_assert_false (sm_precreate_execute (plan, 0, created, &err));
  assert_error_mentions (err, SM_ERROR_EXISTS, base, "qcow2 image header");
  g_clear_error (&err);
  g_ptr_array_remove_range (plan->layers, 0, 2);
  g_assert_true (sm_precreate_execute (plan, SM_PRECREATE_REUSE, created,
                                       &err));
  g_assert_no_error (err);
  g_assert_true (layer_at (plan, 0)->reuse);
  g_assert_true (layer_at (plan, 0)->block_device);
  g_assert_null (sm_created_files_paths (created, NULL)[0]);

  /* A raw layer on a device: the device is the disk, so its size must be
   * the disk's (QEMU's mirror refuses a raw target of another size); nothing
   * is written to a blank one. */
  {
    g_autofree char *src2 = g_build_filename (tmp, "src2", NULL);
    g_autofree char *dst2 = g_build_filename (tmp, "dst2", NULL);
    g_autofree char *raw_base = g_build_filename (dst2, "base.raw", NULL);
    g_autofree char *exact_backing = g_build_filename (tmp, "exact.img",
                                                      NULL);
    g_autofree char *exact_dev = NULL;
    g_autoptr(SmImageChain) raw_chain = make_chain (src2, "raw");
    g_autoptr(SmPrecreatePlan) raw_plan = NULL;
    static const char zeros[65536];
    char back[sizeof zeros];
    int exact_fd;

    g_assert_true (sm_test_create_raw (exact_backing, DISK_SIZE));
    exact_fd = sm_test_loop_attach (exact_backing, &exact_dev);
    g_assert_cmpint (exact_fd, >=, 0);
    g_assert_cmpint (g_mkdir_with_parents (dst2, 0755), ==, 0);
    raw_plan = sm_precreate_plan (raw_chain, SM_PRECREATE_CHAIN, dst2, NULL,
                                  &err);
    g_assert_no_error (err);
    g_ptr_array_remove_range (raw_plan->layers, 0, 2);

    /* The 32 MiB device for an 8 MiB disk. */
    g_assert_cmpint (symlink (dev, raw_base), ==, 0);
    g_assert_false (sm_precreate_execute (raw_plan, SM_PRECREATE_REUSE,
                                          created, &err));
    assert_error_mentions (err, SM_ERROR_INVALID, raw_base,
                           "exactly the disk's virtual size");
    g_clear_error (&err);
    g_assert_cmpint (unlink (raw_base), ==, 0);

    g_assert_cmpint (symlink (exact_dev, raw_base), ==, 0);
    g_assert_true (sm_precreate_execute (raw_plan, 0, created, &err));
    g_assert_no_error (err);
    g_assert_true (layer_at (raw_plan, 0)->block_device);
    g_assert_false (layer_at (raw_plan, 0)->reuse);
    g_assert_null (sm_created_files_paths (created, NULL)[0]);
    g_assert_cmpint (pread (exact_fd, back, sizeof back, 0), ==, sizeof back);
    g_assert_cmpmem (back, sizeof back, zeros, sizeof zeros);

    g_assert_true (sm_precreate_execute (raw_plan, SM_PRECREATE_REUSE,
                                         created, &err));
    g_assert_no_error (err);
    g_assert_true (layer_at (raw_plan, 0)->reuse);
    close (exact_fd);
  }

  close (small_fd);
  close (fd);
}

/* ---- qcow2 images written without qemu-img ------------------------------ */

/* lib/precreate writes an empty qcow2 image itself when it fits its simple
 * layout and runs `qemu-img create` otherwise; its debug log says which.
 * qemu-img is the judge of the result: `qemu-img check` finds it clean,
 * `qemu-img info` describes it as the image `qemu-img create` makes with
 * the same options, and qemu-io can write to it (the image grows: its
 * refcounts must be right) with `qemu-img check` still clean after. */

#define GiB (1024 * MiB)
#define TiB (1024 * GiB)

typedef enum { NATIVE, QEMU_IMG, REFUSED } Maker;

/* What the debug log of the library said, for the cases that check whether
 * an image was written natively. */
static GString *debug_log;

static void
debug_to_log (const char *domain, const char *message, void *opaque)
{
  (void) opaque;
  g_string_append_printf (debug_log, "%s: %s\n", domain, message);
}

static void
debug_capture_start (void)
{
  g_assert_null (debug_log);
  debug_log = g_string_new (NULL);
  sm_debug_set_handler (debug_to_log, NULL);
}

static char *
debug_capture_stop (void)
{
  sm_debug_set_handler (NULL, NULL);
  return g_string_free (g_steal_pointer (&debug_log), false);
}

/* Which maker the debug LOG shows for PATH. */
static Maker
maker_in_log (const char *log, const char *path)
{
  g_autofree char *native = g_strdup_printf ("%s: writing qcow2", path);
  g_autofree char *spawned = g_strdup_printf ("%s: qemu-img create makes it",
                                              path);

  if (strstr (log, native)) {
    g_assert_null (strstr (log, spawned));
    return NATIVE;
  }
  if (!strstr (log, spawned) || !strstr (log, "running qemu-img create"))
    g_error ("%s: neither made natively nor by qemu-img, log:\n%s", path,
             log);
  return QEMU_IMG;
}

static void
test_layer_free (gpointer p)
{
  SmPrecreateLayer *layer = p;

  g_free (layer->path);
  g_free (layer->source_path);
  g_free (layer->backing_name);
  g_free (layer);
}

/* A plan of one qcow2 layer DIR/NAME, as sm_precreate_plan would make for
 * a source layer of these properties (BACKING may be NULL). */
static SmPrecreatePlan *
plan_one (const char *dir, const char *name, uint64_t size, uint64_t cluster,
          const char *backing, const char *backing_fmt)
{
  SmPrecreatePlan *plan = g_new0 (SmPrecreatePlan, 1);
  SmPrecreateLayer *layer = g_new0 (SmPrecreateLayer, 1);

  plan->mode = SM_PRECREATE_CHAIN;
  plan->dest_dir = g_strdup (dir);
  plan->layers = g_ptr_array_new_with_free_func (test_layer_free);
  layer->path = g_build_filename (dir, name, NULL);
  layer->format = SM_IMAGE_FORMAT_QCOW2;
  layer->virtual_size = size;
  layer->cluster_size = cluster;
  layer->backing_name = g_strdup (backing);
  layer->backing_format = backing ? sm_image_format_from_string (backing_fmt)
                                  : SM_IMAGE_FORMAT_LAST;
  g_ptr_array_add (plan->layers, layer);
  return plan;
}

/* A json: file name opening PATH as qcow2 without its backing file (which
 * is named but not there), on a block device when it is one. */
static char *
image_without_backing (const char *path)
{
  json_object *opts = json_object_new_object ();
  json_object *file = json_object_new_object ();
  struct stat st;
  char *name;

  g_assert_cmpint (stat (path, &st), ==, 0);
  json_object_object_add (file, "driver", json_object_new_string (
                            S_ISBLK (st.st_mode) ? "host_device" : "file"));
  json_object_object_add (file, "filename", json_object_new_string (path));
  json_object_object_add (opts, "driver", json_object_new_string ("qcow2"));
  json_object_object_add (opts, "file", file);
  json_object_object_add (opts, "backing", NULL);
  name = g_strconcat ("json:", json_object_to_json_string_ext (
                                 opts, JSON_C_TO_STRING_PLAIN), NULL);
  json_object_put (opts);
  return name;
}

/* `qemu-img check`: no corruption, no leak, no error (exit status 0). */
static void
assert_check_clean (const char *path)
{
  g_autofree char *image = image_without_backing (path);
  const char *argv[] = { "qemu-img", "check", image, NULL };

  g_assert_true (sm_test_run (argv, NULL, false));
}

/* Writes a pattern at the start and at the end of the virtual disk of
 * PATH, reads it back, and reads zeros between (nothing else allocated). */
static void
assert_writable (const char *path, uint64_t size)
{
  g_autofree char *image = image_without_backing (path);
  uint64_t end = size - 64 * 1024;
  g_autofree char *w_end = g_strdup_printf ("write -P 0xa5 %" PRIu64 " 64k",
                                            end);
  g_autofree char *r_end = g_strdup_printf ("read -P 0xa5 %" PRIu64 " 64k",
                                            end);
  const char *argv[] = { "qemu-io", "-c", "write -P 0x5a 0 64k",
                         "-c", "read -P 0x5a 0 64k", "-c", w_end,
                         "-c", r_end, "-c", "read -P 0 64k 64k", image,
                         NULL };

  g_assert_cmpuint (size, >=, 256 * 1024);
  g_assert_true (sm_test_run (argv, NULL, false));
}

/* `qemu-img info` of PATH and of REF, made by qemu-img create with the same
 * options, agree on what a user of the image sees. */
static void
assert_info_as_qemu_img (const char *path, const char *ref)
{
  json_object *got = qemu_img_info (path);
  json_object *want = qemu_img_info (ref);
  const char *keys[] = { "format", "virtual-size", "cluster-size",
                         "backing-filename", "backing-filename-format",
                         "dirty-flag", "format-specific" };
  unsigned i;

  for (i = 0; i < G_N_ELEMENTS (keys); i++) {
    json_object *a = NULL, *b = NULL;

    json_object_object_get_ex (got, keys[i], &a);
    json_object_object_get_ex (want, keys[i], &b);
    if (!json_object_equal (a, b))
      g_error ("%s: qemu-img info gives %s: %s, qemu-img create's image "
               "has %s", path, keys[i], json_object_to_json_string (a),
               json_object_to_json_string (b));
  }
  /* Version 3, as qemu-img makes by default ("compat": "1.1"). */
  g_assert_cmpstr (json_str (json_object_object_get (json_object_object_get (
                     got, "format-specific"), "data"), "compat"), ==, "1.1");
  json_object_put (got);
  json_object_put (want);
}

/* Creates with `qemu-img create` the image PLAN's only layer describes,
 * at REF. */
static void
qemu_img_create_like (const SmPrecreatePlan *plan, const char *ref)
{
  const SmPrecreateLayer *l = layer_at (plan, 0);
  g_autofree char *size = g_strdup_printf ("%" PRIu64, l->virtual_size);
  g_autofree char *opt = g_strdup_printf ("cluster_size=%" PRIu64,
                                          l->cluster_size);

  if (l->backing_name)
    g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o", opt,
                                     "-b", l->backing_name, "-F",
                                     sm_image_format_to_string (
                                       l->backing_format),
                                     "-u", ref, size, NULL));
  else
    g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o", opt,
                                     ref, size, NULL));
}

/* Creates PLAN's only layer (with a reference image made by qemu-img in
 * REF_DIR) and judges it; returns which maker the library used. */
static Maker
create_and_judge (SmPrecreatePlan *plan, const char *ref_dir)
{
  const SmPrecreateLayer *l = layer_at (plan, 0);
  g_autofree char *base = g_path_get_basename (l->path);
  g_autofree char *ref = g_build_filename (ref_dir, base, NULL);
  g_autofree char *log = NULL;
  g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
  g_autoptr(GError) err = NULL;
  bool ok;
  Maker maker;

  debug_capture_start ();
  ok = sm_precreate_execute (plan, 0, created, &err);
  log = debug_capture_stop ();
  g_assert_no_error (err);
  g_assert_true (ok);
  maker = maker_in_log (log, l->path);
  /* A block device is never recorded: a rollback must not remove it. */
  g_assert_cmpstr (sm_created_files_paths (created, NULL)[0], ==,
                   l->block_device ? NULL : l->path);

  qemu_img_create_like (plan, ref);
  assert_image_matches (l);
  assert_info_as_qemu_img (l->path, ref);
  assert_check_clean (l->path);
  if (l->virtual_size > 0) {
    assert_writable (l->path, l->virtual_size);
    assert_check_clean (l->path);
  }
  return maker;
}

typedef struct {
  uint64_t size;
  Maker maker;
} SizeCase;

/* Per cluster size: the virtual sizes tried and who makes the image.
 * 1 GiB + 512 bytes is not a multiple of any cluster size; 64 GiB with
 * 4 KiB clusters needs an L1 table of 64 clusters; QEMU_IMG: more metadata
 * clusters than one refcount block counts; REFUSED: an L1 table over
 * QEMU's limit, which qemu-img reports. */
static const SizeCase sizes_512[] = {
  { 0, NATIVE }, { MiB, NATIVE }, { GiB + 512, QEMU_IMG },
  { 3 * TiB, REFUSED } };
static const SizeCase sizes_4k[] = {
  { 0, NATIVE }, { MiB, NATIVE }, { GiB + 512, NATIVE },
  { 64 * GiB, NATIVE }, { 3 * TiB, QEMU_IMG } };
static const SizeCase sizes_64k[] = {
  { 0, NATIVE }, { MiB, NATIVE }, { GiB + 512, NATIVE },
  { 64 * GiB, NATIVE }, { 3 * TiB, NATIVE } };
static const SizeCase sizes_2m[] = {
  { 0, NATIVE }, { MiB, NATIVE }, { GiB + 512, NATIVE },
  { 3 * TiB, NATIVE } };

typedef struct {
  uint64_t cluster;
  const SizeCase *sizes;
  unsigned n_sizes;
} ClusterCase;

#define SIZES(a) a, G_N_ELEMENTS (a)
static const ClusterCase cluster_cases[] = {
  { 512, SIZES (sizes_512) }, { 4096, SIZES (sizes_4k) },
  { 65536, SIZES (sizes_64k) }, { 2 * MiB, SIZES (sizes_2m) },
};

static void
test_native_matrix (gconstpointer data)
{
  const ClusterCase *cc = data;
  /* Relative names, both formats, and one with spaces. */
  const char *backings[][2] = { { NULL, NULL }, { "base.qcow2", "qcow2" },
                                { "my base.raw", "raw" } };
  g_autofree char *tmp = sm_test_tmpdir ();
  unsigned s, b, n = 0;

  for (s = 0; s < cc->n_sizes; s++) {
    const SizeCase *sc = &cc->sizes[s];

    for (b = 0; b < G_N_ELEMENTS (backings); b++) {
      g_autofree char *dir = g_strdup_printf ("%s/case%u", tmp, n);
      g_autofree char *ref_dir = g_strdup_printf ("%s/ref%u", tmp, n++);
      g_autoptr(SmPrecreatePlan) plan = NULL;

      g_test_message ("cluster %" PRIu64 ", size %" PRIu64 ", backing %s",
                      cc->cluster, sc->size,
                      backings[b][0] ? backings[b][0] : "none");
      g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
      g_assert_cmpint (g_mkdir_with_parents (ref_dir, 0755), ==, 0);
      plan = plan_one (dir, "disk.qcow2", sc->size, cc->cluster,
                       backings[b][0], backings[b][1]);
      if (sc->maker == REFUSED) {
        g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
        g_autoptr(GError) err = NULL;
        g_autofree char *listing = NULL;

        g_assert_false (sm_precreate_execute (plan, 0, created, &err));
        assert_error_mentions (err, SM_ERROR_IO, layer_at (plan, 0)->path,
                               "qemu-img create failed");
        g_assert_nonnull (strstr (err->message, "too large"));
        listing = dir_listing (dir);
        g_assert_cmpstr (listing, ==, "");
        g_assert_null (sm_created_files_paths (created, NULL)[0]);
        continue;
      }
      g_assert_cmpint (create_and_judge (plan, ref_dir), ==, sc->maker);
    }
  }
}

/* The backing name sits in cluster 0 after the header and the backing
 * format extension (136 bytes in all): up to QEMU's 1023 bytes with 64 KiB
 * clusters, up to 376 with 512-byte ones.  A longer name goes to qemu-img,
 * which refuses it with its own message. */
static void
test_native_backing_names (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *ref_dir = g_build_filename (tmp, "ref", NULL);
  struct {
    uint64_t cluster;
    size_t name_len;
    Maker maker;
  } cases[] = {
    { 65536, 1023, NATIVE }, { 65536, 1024, REFUSED },
    { 512, 376, NATIVE }, { 512, 377, REFUSED },
  };
  unsigned i;

  g_assert_cmpint (g_mkdir_with_parents (ref_dir, 0755), ==, 0);
  for (i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *dir = g_strdup_printf ("%s/case%u", tmp, i);
    g_autofree char *name = g_strnfill (cases[i].name_len, 'b');
    g_autofree char *img = g_strdup_printf ("disk%u.qcow2", i);
    g_autoptr(SmPrecreatePlan) plan = NULL;
    g_autoptr(SmCreatedFiles) created = sm_created_files_new ();
    g_autoptr(GError) err = NULL;
    g_autofree char *listing = NULL;

    /* Not a valid file name (over 255 bytes), but a valid backing name: a
     * path of directories would do, and neither qemu-img info nor this
     * code opens it. */
    g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
    plan = plan_one (dir, img, 4 * MiB, cases[i].cluster, name, "qcow2");
    if (cases[i].maker == NATIVE) {
      g_assert_cmpint (create_and_judge (plan, ref_dir), ==, NATIVE);
      continue;
    }
    g_assert_false (sm_precreate_execute (plan, 0, created, &err));
    assert_error_mentions (err, SM_ERROR_IO, layer_at (plan, 0)->path,
                           "qemu-img create failed");
    listing = dir_listing (dir);
    g_assert_cmpstr (listing, ==, "");
  }
}

/* A block device target is formatted in place: every metadata cluster is
 * written in full, so old data on it (here a pattern of 0xa5 bytes that
 * would read as L1 entries pointing everywhere) never shows through. */
static void
test_native_block_device_garbage (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *dst = g_build_filename (tmp, "dst", NULL);
  g_autofree char *ref_dir = g_build_filename (tmp, "ref", NULL);
  g_autofree char *lv = g_build_filename (tmp, "lv.img", NULL);
  g_autofree char *dev = NULL;
  g_autofree uint8_t *garbage = g_malloc (32 * MiB);
  struct {
    uint64_t size, cluster;
  } cases[] = { { 64 * GiB, 4096 }, { GiB + 512, 2 * MiB } };
  unsigned i;
  int fd;

  g_assert_true (sm_test_create_raw (lv, 32 * MiB));
  fd = sm_test_loop_attach (lv, &dev);
  if (fd < 0) {
    g_test_skip ("no loop device available: formatting a block device "
                 "holding old data not tested");
    return;
  }
  memset (garbage, 0xa5, 32 * MiB);
  g_assert_cmpint (g_mkdir_with_parents (dst, 0755), ==, 0);
  g_assert_cmpint (g_mkdir_with_parents (ref_dir, 0755), ==, 0);
  for (i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *name = g_strdup_printf ("disk%u.qcow2", i);
    g_autofree char *link = g_build_filename (dst, name, NULL);
    g_autoptr(SmPrecreatePlan) plan = NULL;

    g_assert_cmpint (pwrite (fd, garbage, 32 * MiB, 0), ==, 32 * MiB);
    g_assert_cmpint (fsync (fd), ==, 0);
    g_assert_cmpint (symlink (dev, link), ==, 0);
    plan = plan_one (dst, name, cases[i].size, cases[i].cluster,
                     "base.qcow2", "qcow2");
    g_assert_cmpint (create_and_judge (plan, ref_dir), ==, NATIVE);
    g_assert_true (layer_at (plan, 0)->block_device);
  }
  close (fd);
}

/* ---- created-files records ---------------------------------------------- */

static void
test_created_files (void)
{
  g_autofree char *tmp = sm_test_tmpdir ();
  g_autofree char *a = g_build_filename (tmp, "a", NULL);
  g_autofree char *b = g_build_filename (tmp, "b", NULL);
  g_autofree char *gone = g_build_filename (tmp, "gone", NULL);
  /* Where the live migration code keeps it (lib/lsm.h). */
  g_autofree char *record = g_build_filename (tmp, "op-42.created", NULL);
  g_autofree char *cwd = g_get_current_dir ();
  g_autofree char *rel_abs = g_build_filename (cwd, "rel.qcow2", NULL);
  g_autofree char *text = NULL;
  g_autofree char *want_text = NULL;
  g_autoptr(SmCreatedFiles) files = sm_created_files_new ();
  g_autoptr(SmCreatedFiles) loaded = NULL;
  g_autoptr(GError) err = NULL;
  const char *const *paths;
  size_t n;

  paths = sm_created_files_paths (files, &n);
  g_assert_cmpuint (n, ==, 0);
  g_assert_null (paths[0]);

  sm_created_files_add (files, a);
  sm_created_files_add (files, gone);
  sm_created_files_add (files, "rel.qcow2");
  sm_created_files_add (files, b);
  sm_created_files_add (files, a);
  paths = sm_created_files_paths (files, &n);
  g_assert_cmpuint (n, ==, 4);
  g_assert_cmpstr (paths[0], ==, a);
  g_assert_cmpstr (paths[1], ==, gone);
  g_assert_cmpstr (paths[2], ==, rel_abs);
  g_assert_cmpstr (paths[3], ==, b);
  g_assert_null (paths[4]);

  /* Save: one absolute path per line; load gives the same record. */
  g_assert_true (sm_created_files_save (files, record, &err));
  g_assert_no_error (err);
  g_assert_true (g_file_get_contents (record, &text, NULL, NULL));
  want_text = g_strdup_printf ("%s\n%s\n%s\n%s\n", a, gone, rel_abs, b);
  g_assert_cmpstr (text, ==, want_text);
  loaded = sm_created_files_load (record, &err);
  g_assert_no_error (err);
  paths = sm_created_files_paths (loaded, &n);
  g_assert_cmpuint (n, ==, 4);
  g_assert_cmpstr (paths[0], ==, a);
  g_assert_cmpstr (paths[2], ==, rel_abs);
  g_assert_cmpstr (paths[3], ==, b);
  g_clear_pointer (&loaded, sm_created_files_free);

  /* Rollback: removes what exists, a file already gone is fine, a name it
   * cannot remove (a non-empty directory) is reported and kept. */
  g_assert_true (g_file_set_contents (a, "a", -1, NULL));
  g_assert_cmpint (mkdir (b, 0755), ==, 0);
  g_assert_true (g_file_set_contents (rel_abs, "r", -1, NULL));
  g_assert_false (sm_created_files_rollback (files, &err));
  assert_error_mentions (err, SM_ERROR_IO, b, NULL);
  g_clear_error (&err);
  g_assert_false (g_file_test (a, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (rel_abs, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (b, G_FILE_TEST_IS_DIR));
  paths = sm_created_files_paths (files, &n);
  g_assert_cmpuint (n, ==, 1);
  g_assert_cmpstr (paths[0], ==, b);
  g_assert_cmpint (rmdir (b), ==, 0);
  g_assert_true (sm_created_files_rollback (files, &err));
  g_assert_no_error (err);
  g_assert_cmpuint (*sm_created_files_paths (files, NULL) == NULL, ==, 1);

  /* Load errors. */
  g_assert_cmpint (unlink (record), ==, 0);
  loaded = sm_created_files_load (record, &err);
  g_assert_null (loaded);
  assert_error_mentions (err, SM_ERROR_NOT_FOUND, record, NULL);
  g_clear_error (&err);
  g_assert_true (g_file_set_contents (record, "/ok\nrelative/path\n", -1,
                                      NULL));
  loaded = sm_created_files_load (record, &err);
  g_assert_null (loaded);
  assert_error_mentions (err, SM_ERROR_INVALID, record, "line 2");
  g_clear_error (&err);

  /* A name with a newline cannot be recorded one per line. */
  sm_created_files_add (files, "/tmp/evil\nname");
  g_assert_false (sm_created_files_save (files, record, &err));
  assert_error_mentions (err, SM_ERROR_INVALID, "newline", NULL);
}

int
main (int argc, char **argv)
{
  unsigned i;

  g_test_init (&argc, &argv, NULL);
  g_test_add_data_func ("/precreate/plan/chain-raw-base", "raw",
                        test_plan_chain);
  g_test_add_data_func ("/precreate/plan/chain-qcow2-base", "qcow2",
                        test_plan_chain);
  g_test_add_func ("/precreate/plan/flat", test_plan_flat);
  g_test_add_func ("/precreate/plan/bad-names", test_plan_bad_names);
  g_test_add_func ("/precreate/plan/colon-name", test_colon_name);
  g_test_add_data_func ("/precreate/execute/chain-raw-base", "raw",
                        test_execute_chain);
  g_test_add_data_func ("/precreate/execute/chain-qcow2-base", "qcow2",
                        test_execute_chain);
  g_test_add_func ("/precreate/execute/flat", test_execute_flat);
  g_test_add_func ("/precreate/execute/backing-absent",
                   test_execute_backing_absent);
  g_test_add_func ("/precreate/execute/failure-midway", test_failure_midway);
  g_test_add_func ("/precreate/check/exists", test_exists);
  g_test_add_func ("/precreate/check/reuse", test_reuse);
  g_test_add_func ("/precreate/check/dest-dir", test_dest_dir);
  g_test_add_func ("/precreate/check/space", test_space);
  g_test_add_func ("/precreate/check/block-device", test_block_device);
  for (i = 0; i < G_N_ELEMENTS (cluster_cases); i++) {
    g_autofree char *path = g_strdup_printf ("/precreate/native/cluster-%"
                                             PRIu64,
                                             cluster_cases[i].cluster);

    g_test_add_data_func (path, &cluster_cases[i], test_native_matrix);
  }
  g_test_add_func ("/precreate/native/backing-names",
                   test_native_backing_names);
  g_test_add_func ("/precreate/native/block-device-garbage",
                   test_native_block_device_garbage);
  g_test_add_func ("/precreate/created-files", test_created_files);
  return g_test_run ();
}
