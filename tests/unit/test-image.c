/* Unit tests for lib/image.c: native qcow2 header reading compared field by
 * field with `qemu-img info --output=json` on images made by the real
 * qemu-img, hand-crafted malicious headers (patched from real ones), backing
 * chain confinement, and libblkid signature detection.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <json.h>

#include "harness.h"
#include "image.h"

#define EXT_BACKING_FORMAT 0xe2792acau
#define EXT_DATA_FILE 0x44415441u
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define TiB (1ULL << 40)

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)

/* ---- helpers ---------------------------------------------------------- */

static char *
path_in (const char *dir, const char *name)
{
  return g_build_filename (dir, name, NULL);
}

/* Writes PATH in place (g_file_set_contents would fsync every copy). */
static void
write_file (const char *path, const void *data, size_t len)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pwrite (fd, data, len, 0), ==, (ssize_t) len);
  g_assert_cmpint (ftruncate (fd, (off_t) len), ==, 0);
  close (fd);
}

static void
patch (const char *path, off_t off, const void *data, size_t len)
{
  int fd = open (path, O_WRONLY | O_CLOEXEC);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pwrite (fd, data, len, off), ==, (ssize_t) len);
  close (fd);
}

static void
patch_be32 (const char *path, off_t off, uint32_t v)
{
  uint32_t be = GUINT32_TO_BE (v);

  patch (path, off, &be, sizeof be);
}

static void
patch_be64 (const char *path, off_t off, uint64_t v)
{
  uint64_t be = GUINT64_TO_BE (v);

  patch (path, off, &be, sizeof be);
}

static uint32_t
read_be32 (const char *path, off_t off)
{
  uint32_t be = 0;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pread (fd, &be, sizeof be, off), ==, sizeof be);
  close (fd);
  return GUINT32_FROM_BE (be);
}

static void
copy_file (const char *from, const char *to)
{
  g_autofree char *data = NULL;
  gsize len = 0;

  g_assert_true (g_file_get_contents (from, &data, &len, NULL));
  write_file (to, data, len);
}

/* Copies the first LEN bytes of FROM to TO. */
static void
copy_prefix (const char *from, const char *to, size_t len)
{
  g_autofree char *data = NULL;
  gsize total = 0;

  g_assert_true (g_file_get_contents (from, &data, &total, NULL));
  g_assert_cmpuint (len, <=, total);
  write_file (to, data, len);
}

/* Offset of the first header extension of TYPE in a qemu-img made image
 * (the test's own walk of the extension list), or 0. */
static off_t
find_ext (const char *path, uint32_t type)
{
  uint32_t version = read_be32 (path, 4);
  off_t off = version == 3 ? read_be32 (path, 100) : 72;

  for (int i = 0; i < 64; i++) {
    uint32_t t = read_be32 (path, off);
    uint32_t len = read_be32 (path, off + 4);

    if (t == type)
      return off;
    if (t == 0)
      return 0;
    off += 8 + ((len + 7) & ~7u);
  }
  return 0;
}

/* Turns the backing format extension into an unknown one, which QEMU and
 * snapmig skip: what an image made by an old qemu-img without -F looks
 * like (QEMU 7.2's qemu-img refuses to make such images). */
static void
unstate_backing_format (const char *path)
{
  off_t off = find_ext (path, EXT_BACKING_FORMAT);

  g_assert_cmpint (off, >, 0);
  patch_be32 (path, off, 0x0badf00du);
}

/* Runs qemu-img info --output=json on PATH, of the stated FORMAT; stdout only, as QEMU may warn on
 * stderr.  NULL when qemu-img fails. */
static json_object *
qemu_img_info (const char *path, const char *format, bool expect_ok)
{
  const char *argv[] = { "qemu-img", "info", "--output=json", "-f", format,
                         path, NULL };
  g_autofree char *out = NULL;
  g_autofree char *errout = NULL;
  g_autoptr(GError) err = NULL;
  int status = 0;

  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH,
                               NULL, NULL, &out, &errout, &status, &err));
  if (!g_spawn_check_wait_status (status, NULL)) {
    if (expect_ok)
      g_test_message ("qemu-img info %s failed: %s", path, errout);
    return NULL;
  }
  return json_tokener_parse (out);
}

static json_object *
jget (json_object *obj, const char *key)
{
  json_object *v = NULL;

  if (!obj || !json_object_object_get_ex (obj, key, &v))
    return NULL;
  return v;
}

static void
assert_json_bool (json_object *data, const char *key, bool expected)
{
  json_object *v = jget (data, key);

  if (!v && !expected)
    return;
  g_assert_nonnull (v);
  if (json_object_get_boolean (v) != expected)
    g_test_message ("%s: qemu-img says %d", key, json_object_get_boolean (v));
  g_assert_cmpint (json_object_get_boolean (v), ==, expected);
}

/* Every field qemu-img info reports that SmImageInfo also holds. */
static void
assert_matches_qemu (const SmImageInfo *info)
{
  g_autoptr(json_object) root = qemu_img_info (info->path,
                                              sm_image_format_to_string (info->format), true);
  json_object *data, *v;

  g_assert_nonnull (root);
  g_assert_cmpstr (json_object_get_string (jget (root, "format")), ==,
                   sm_image_format_to_string (info->format));
  g_assert_cmpuint ((uint64_t) json_object_get_int64 (jget (root,
                                                            "virtual-size")),
                    ==, info->virtual_size);
  g_assert_cmpuint ((uint64_t) json_object_get_int64 (jget (root,
                                                            "actual-size")),
                    ==, info->allocated_bytes);
  if (info->format == SM_IMAGE_FORMAT_RAW) {
    g_assert_null (jget (root, "backing-filename"));
    return;
  }

  g_assert_cmpuint ((uint64_t) json_object_get_int64 (jget (root,
                                                            "cluster-size")),
                    ==, info->cluster_size);
  g_assert_cmpstr (json_object_get_string (jget (root, "backing-filename")),
                   ==, info->backing_file);
  g_assert_cmpstr (json_object_get_string (jget (root,
                                                 "backing-filename-format")),
                   ==, info->backing_format);
  if (info->backing_file) {
    g_autofree char *full = sm_image_resolve_backing (info->path,
                                                      info->backing_file);
    g_assert_cmpstr (json_object_get_string (jget (root,
                                                   "full-backing-filename")),
                     ==, full);
  }
  assert_json_bool (root, "dirty-flag",
                    info->incompatible_features & SM_QCOW2_INCOMPAT_DIRTY);
  assert_json_bool (root, "encrypted", info->crypt_method != 0);
  v = jget (root, "snapshots");
  g_assert_cmpuint (v ? json_object_array_length (v) : 0, ==,
                    info->nb_snapshots);

  data = jget (jget (root, "format-specific"), "data");
  g_assert_nonnull (data);
  g_assert_cmpstr (json_object_get_string (jget (data, "compat")), ==,
                   info->qcow2_version == 2 ? "0.10" : "1.1");
  g_assert_cmpint (json_object_get_int (jget (data, "refcount-bits")), ==,
                   1 << info->refcount_order);
  if (info->qcow2_version == 3) {
    assert_json_bool (data, "corrupt", info->corrupt);
    assert_json_bool (data, "lazy-refcounts",
                      info->compatible_features & 1);
    assert_json_bool (data, "extended-l2",
                      info->incompatible_features & SM_QCOW2_INCOMPAT_EXTL2);
  }
  g_assert_cmpstr (json_object_get_string (jget (data, "compression-type")),
                   ==, info->compression_type ? "zstd" : "zlib");
  g_assert_cmpstr (json_object_get_string (jget (data, "data-file")), ==,
                   info->data_file);
  v = jget (data, "bitmaps");
  g_assert_cmpuint (v ? json_object_array_length (v) : 0, ==,
                    info->nb_bitmaps);
}

static SmImageInfo *
probe_ok (const char *path, SmImageFormat format)
{
  g_autoptr(GError) err = NULL;
  SmImageInfo *info = sm_image_probe (path, format, &err);

  g_assert_no_error (err);
  g_assert_nonnull (info);
  g_assert_cmpstr (info->path, ==, path);
  g_assert_cmpint (info->format, ==, format);
  return info;
}

/* The message must contain WANT; shown in the log when it does not. */
static void
assert_message (const GError *err, const char *want)
{
  if (!strstr (err->message, want))
    g_test_message ("message '%s' lacks '%s'", err->message, want);
  g_assert_nonnull (strstr (err->message, want));
}

static void
assert_probe_fails (const char *path, int code, const char *want)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmImageInfo) info = sm_image_probe (path, SM_IMAGE_FORMAT_QCOW2,
                                                &err);
  g_autofree char *prefix = g_strdup_printf ("%s: ", path);

  if (info)
    g_test_message ("%s: probe succeeded, expected '%s'", path, want);
  g_assert_null (info);
  g_assert_error (err, SM_ERROR, code);
  g_assert_true (g_str_has_prefix (err->message, prefix));
  assert_message (err, want);
}

static SmImageChain *
chain_ok (const char *top, SmImageFormat format, const char *confine,
          unsigned flags, guint layers)
{
  g_autoptr(GError) err = NULL;
  SmImageChain *chain = sm_image_chain_open (top, format, confine, flags,
                                             &err);

  g_assert_no_error (err);
  g_assert_nonnull (chain);
  g_assert_cmpuint (chain->layers->len, ==, layers);
  return chain;
}

static void
assert_chain_fails (const char *top, SmImageFormat format,
                    const char *confine, unsigned flags, int code,
                    const char *want)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmImageChain) chain = sm_image_chain_open (top, format, confine,
                                                       flags, &err);

  g_assert_null (chain);
  g_assert_error (err, SM_ERROR, code);
  assert_message (err, want);
}

static const SmImageInfo *
layer (const SmImageChain *chain, guint i)
{
  return chain->layers->pdata[i];
}

static void
make_qcow2 (const char *path, const char *opts, const char *size)
{
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o", opts,
                                   path, size, NULL));
}

/* qcow2 at PATH backed by BACKING (name written as given) of BFMT. */
static void
make_overlay (const char *path, const char *backing, const char *bfmt)
{
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-F", bfmt,
                                   "-b", backing, path, NULL));
}

/* Same without opening the backing file (it may not exist, or be a FIFO). */
static void
make_overlay_unsafe (const char *path, const char *backing, const char *bfmt)
{
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-u",
                                   "-F", bfmt, "-b", backing, path, "1M",
                                   NULL));
}

static void
make_sparse (const char *path, uint64_t size)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, (off_t) size), ==, 0);
  close (fd);
}

/* ---- formats and names ------------------------------------------------ */

static void
test_format_names (void)
{
  g_assert_cmpstr (sm_image_format_to_string (SM_IMAGE_FORMAT_RAW), ==, "raw");
  g_assert_cmpstr (sm_image_format_to_string (SM_IMAGE_FORMAT_QCOW2), ==,
                   "qcow2");
  g_assert_null (sm_image_format_to_string (SM_IMAGE_FORMAT_LAST));
  g_assert_cmpint (sm_image_format_from_string ("raw"), ==,
                   SM_IMAGE_FORMAT_RAW);
  g_assert_cmpint (sm_image_format_from_string ("qcow2"), ==,
                   SM_IMAGE_FORMAT_QCOW2);
  g_assert_cmpint (sm_image_format_from_string ("vmdk"), ==, -1);
  g_assert_cmpint (sm_image_format_from_string ("QCOW2"), ==, -1);
  g_assert_cmpint (sm_image_format_from_string (NULL), ==, -1);
}

static void
test_resolve_backing (void)
{
  static const struct {
    const char *image, *backing, *want;
  } cases[] = {
    { "/sd/images/top.qcow2", "base.qcow2", "/sd/images/base.qcow2" },
    { "/sd/images/top.qcow2", "/abs/base.qcow2", "/abs/base.qcow2" },
    /* Not normalised: QEMU opens "dir/../x" as written. */
    { "/sd/images/top.qcow2", "../b/base.qcow2", "/sd/images/../b/base.qcow2" },
    { "rel/dir/top.qcow2", "base.raw", "rel/dir/base.raw" },
    { "top.qcow2", "base.raw", "base.raw" },
    { "./top.qcow2", "base.raw", "./base.raw" },
    { "/top.qcow2", "base.raw", "/base.raw" },
    { "/sd/top.qcow2", "./a:b", "/sd/./a:b" },
    /* Not local file names: unchanged. */
    { "/sd/top.qcow2", "nbd:localhost:10809", "nbd:localhost:10809" },
    { "/sd/top.qcow2", "json:{\"file\":{}}", "json:{\"file\":{}}" },
    { "/sd/top.qcow2", "file:base.raw", "file:base.raw" },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *got = sm_image_resolve_backing (cases[i].image,
                                                     cases[i].backing);
    g_assert_cmpstr (got, ==, cases[i].want);
  }
  g_assert_true (sm_image_backing_is_local ("base.qcow2"));
  g_assert_true (sm_image_backing_is_local ("/x/a:b"));
  g_assert_true (sm_image_backing_is_local ("./a:b"));
  g_assert_false (sm_image_backing_is_local ("a:b"));
  g_assert_false (sm_image_backing_is_local ("nbd://host/export"));
  g_assert_false (sm_image_backing_is_local ("json:{}"));
}

/* ---- images made by qemu-img ------------------------------------------ */

static void
test_qemu_img_matrix (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  static const char *const compats[] = { "0.10", "1.1" };
  static const struct {
    const char *cluster;
    const char *sizes[3];
  } clusters[] = {
    /* 512-byte clusters address at most 128 GiB (QEMU's L1 limit; see
     * test_header_size_bound), and writing that much metadata is slow. */
    { "512", { "0", "1048577", "4G" } },
    { "65536", { "0", "1048577", "1T" } },
    { "2M", { "0", "1048577", "1T" } },
  };
  int n = 0;

  for (size_t c = 0; c < G_N_ELEMENTS (compats); c++)
    for (size_t k = 0; k < G_N_ELEMENTS (clusters); k++)
      for (size_t s = 0; s < 3; s++) {
        g_autofree char *name = g_strdup_printf ("img%d.qcow2", n++);
        g_autofree char *path = path_in (dir, name);
        g_autofree char *opts = g_strdup_printf ("compat=%s,cluster_size=%s",
                                                 compats[c],
                                                 clusters[k].cluster);
        g_autoptr(SmImageInfo) info = NULL;

        make_qcow2 (path, opts, clusters[k].sizes[s]);
        info = probe_ok (path, SM_IMAGE_FORMAT_QCOW2);
        g_assert_cmpuint (info->qcow2_version, ==, c == 0 ? 2 : 3);
        g_assert_cmpuint (info->header_length, ==, c == 0 ? 72 : 112);
        g_assert_null (info->backing_file);
        g_assert_false (info->corrupt);
        g_assert_false (info->unknown_incompatible);
        assert_matches_qemu (info);
      }
}

static void
test_qemu_img_backing (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *base = path_in (dir, "base.raw");
  g_autofree char *qbase = path_in (dir, "base.qcow2");
  static const char *const compats[] = { "compat=0.10", "compat=1.1" };

  g_assert_true (sm_test_create_raw (base, 4 * MiB));
  make_qcow2 (qbase, "compat=1.1", "8M");
  for (size_t c = 0; c < G_N_ELEMENTS (compats); c++) {
    g_autofree char *rel = g_strdup_printf ("%s/rel-%zu.qcow2", dir, c);
    g_autofree char *abs = g_strdup_printf ("%s/abs-%zu.qcow2", dir, c);
    g_autofree char *nofmt = g_strdup_printf ("%s/nofmt-%zu.qcow2", dir, c);
    g_autoptr(SmImageInfo) ri = NULL;
    g_autoptr(SmImageInfo) ai = NULL;
    g_autoptr(SmImageInfo) ni = NULL;

    g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o",
                                     compats[c],
                                     "-F", "raw", "-b", "base.raw", rel,
                                     NULL));
    g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o",
                                     compats[c],
                                     "-F", "qcow2", "-b", qbase, abs, NULL));
    g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o",
                                     compats[c],
                                     "-F", "raw", "-b", "base.raw", nofmt,
                                     NULL));
    unstate_backing_format (nofmt);

    ri = probe_ok (rel, SM_IMAGE_FORMAT_QCOW2);
    g_assert_cmpstr (ri->backing_file, ==, "base.raw");
    g_assert_cmpstr (ri->backing_format, ==, "raw");
    g_assert_cmpuint (ri->virtual_size, ==, 4 * MiB);
    assert_matches_qemu (ri);

    ai = probe_ok (abs, SM_IMAGE_FORMAT_QCOW2);
    g_assert_cmpstr (ai->backing_file, ==, qbase);
    g_assert_cmpstr (ai->backing_format, ==, "qcow2");
    g_assert_cmpuint (ai->virtual_size, ==, 8 * MiB);
    assert_matches_qemu (ai);

    ni = probe_ok (nofmt, SM_IMAGE_FORMAT_QCOW2);
    g_assert_cmpstr (ni->backing_file, ==, "base.raw");
    g_assert_null (ni->backing_format);
    assert_matches_qemu (ni);
  }
}

static void
test_qemu_img_features (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *feat = path_in (dir, "feat.qcow2");
  g_autofree char *data = path_in (dir, "data.qcow2");
  g_autofree char *datafile = path_in (dir, "data.raw");
  g_autoptr(SmImageInfo) fi = NULL;
  g_autoptr(SmImageInfo) di = NULL;
  g_autoptr(SmImageChain) chain = NULL;

  make_qcow2 (feat, "compression_type=zstd,extended_l2=on,lazy_refcounts=on,"
              "refcount_bits=64", "1G");
  g_assert_true (sm_test_qemu_img ("bitmap", "--add", feat, "b0", NULL));
  g_assert_true (sm_test_qemu_img ("snapshot", "-c", "s1", feat, NULL));
  fi = probe_ok (feat, SM_IMAGE_FORMAT_QCOW2);
  g_assert_cmpuint (fi->compression_type, ==, 1);
  g_assert_cmpuint (fi->refcount_order, ==, 6);
  g_assert_cmpuint (fi->nb_bitmaps, ==, 1);
  g_assert_cmpuint (fi->nb_snapshots, ==, 1);
  g_assert_true (fi->incompatible_features & SM_QCOW2_INCOMPAT_EXTL2);
  g_assert_false (fi->unknown_incompatible);
  assert_matches_qemu (fi);

  /* An external data file (named by its absolute path: see
   * test_confine_data_file for relative names). */
  {
    g_autofree char *opts = g_strdup_printf ("data_file=%s,data_file_raw=on",
                                             datafile);
    make_qcow2 (data, opts, "1M");
  }
  g_assert_true (g_file_test (datafile, G_FILE_TEST_IS_REGULAR));
  di = probe_ok (data, SM_IMAGE_FORMAT_QCOW2);
  g_assert_cmpstr (di->data_file, ==, datafile);
  g_assert_true (di->incompatible_features & SM_QCOW2_INCOMPAT_DATA_FILE);
  g_assert_true (di->autoclear_features & 2);    /* data_file_raw */
  assert_matches_qemu (di);
  chain = chain_ok (data, SM_IMAGE_FORMAT_QCOW2, dir, 0, 1);
  g_assert_cmpstr (layer (chain, 0)->data_file, ==, datafile);
}

/* ---- raw ---------------------------------------------------------------- */

static void
test_raw (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *small = path_in (dir, "small.raw");
  g_autofree char *huge = path_in (dir, "huge.raw");
  g_autofree char *empty = path_in (dir, "empty.raw");
  g_autofree char *fifo = path_in (dir, "fifo");
  g_autoptr(SmImageInfo) si = NULL;
  g_autoptr(SmImageInfo) hi = NULL;
  g_autoptr(SmImageInfo) ei = NULL;
  g_autoptr(GError) err = NULL;
  SmImageInfo *bad;
  uint64_t size = 0;

  g_assert_true (sm_test_create_raw (small, 3 * MiB + 512));
  make_sparse (huge, TiB);
  write_file (empty, "", 0);

  si = probe_ok (small, SM_IMAGE_FORMAT_RAW);
  g_assert_cmpuint (si->virtual_size, ==, 3 * MiB + 512);
  g_assert_cmpuint (si->file_size, ==, 3 * MiB + 512);
  g_assert_false (si->is_block_device);
  assert_matches_qemu (si);

  hi = probe_ok (huge, SM_IMAGE_FORMAT_RAW);
  g_assert_cmpuint (hi->virtual_size, ==, TiB);
  g_assert_cmpuint (hi->allocated_bytes, <, MiB);
  assert_matches_qemu (hi);
  g_assert_true (sm_image_file_size (huge, &size, &err));
  g_assert_no_error (err);
  g_assert_cmpuint (size, ==, TiB);

  ei = probe_ok (empty, SM_IMAGE_FORMAT_RAW);
  g_assert_cmpuint (ei->virtual_size, ==, 0);

  /* Neither a directory, a character device nor a FIFO is an image; the
   * FIFO must not block the probe. */
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  for (int i = 0; i < 3; i++) {
    const char *p = i == 0 ? dir : i == 1 ? "/dev/null" : fifo;

    bad = sm_image_probe (p, SM_IMAGE_FORMAT_RAW, &err);
    g_assert_null (bad);
    g_assert_error (err, SM_ERROR, SM_ERROR_IMAGE);
    assert_message (err, "not a regular file or block device");
    g_clear_error (&err);
  }
  g_assert_false (sm_image_file_size (fifo, &size, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_IMAGE);
  g_clear_error (&err);

  bad = sm_image_probe ("/nonexistent/x.raw", SM_IMAGE_FORMAT_RAW, &err);
  g_assert_null (bad);
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_cmpstr (err->message, ==,
                   "/nonexistent/x.raw: No such file or directory");
}

static bool
sysfs_sectors (const char *name, uint64_t *sectors)
{
  g_autofree char *file = g_strdup_printf ("/sys/block/%s/size", name);
  g_autofree char *text = NULL;

  if (!g_file_get_contents (file, &text, NULL, NULL))
    return false;
  *sectors = g_ascii_strtoull (text, NULL, 10);
  return true;
}

/* A raw block device: the first one of this machine we may open (an idle
 * loop device has size 0, which is fine), probed read-only and stated raw,
 * so its content is never read.  Its size must be what sysfs says (a device
 * whose size changes meanwhile is passed over).  Skipped when none can be
 * opened. */
static void
test_raw_block_device (void)
{
  g_autoptr(GDir) sys = g_dir_open ("/sys/block", 0, NULL);
  const char *name;

  while (sys && (name = g_dir_read_name (sys))) {
    g_autofree char *dev = g_strdup_printf ("/dev/%s", name);
    g_autoptr(SmImageInfo) info = NULL;
    g_autoptr(GError) err = NULL;
    uint64_t before, after, size = 0;
    struct stat st;
    bool sized;

    if (!sysfs_sectors (name, &before) || stat (dev, &st) < 0
        || !S_ISBLK (st.st_mode))
      continue;
    info = sm_image_probe (dev, SM_IMAGE_FORMAT_RAW, &err);
    sized = info && sm_image_file_size (dev, &size, NULL);
    if (!sized || !sysfs_sectors (name, &after) || before != after)
      continue;
    g_test_message ("block device %s, %" G_GUINT64_FORMAT " bytes", dev,
                    before * 512);
    g_assert_true (info->is_block_device);
    g_assert_cmpuint (info->virtual_size, ==, before * 512);
    g_assert_cmpuint (info->file_size, ==, before * 512);
    g_assert_cmpuint (info->allocated_bytes, ==, before * 512);
    g_assert_cmpuint (size, ==, before * 512);
    return;
  }
  g_test_skip ("no block device can be opened here");
}

/* A guest wrote a qcow2 header naming a host file into its raw disk: stated
 * raw, it is never read as qcow2. */
static void
test_raw_with_qcow2_header (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *evil = path_in (dir, "evil.qcow2");
  g_autofree char *disk = path_in (dir, "disk.raw");
  g_autoptr(SmImageInfo) info = NULL;
  g_autoptr(SmImageChain) chain = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *what = NULL;

  make_overlay_unsafe (evil, "/etc/passwd", "raw");
  copy_file (evil, disk);

  info = probe_ok (disk, SM_IMAGE_FORMAT_RAW);
  g_assert_null (info->backing_file);
  g_assert_cmpuint (info->virtual_size, ==, info->file_size);
  g_assert_cmpuint (info->qcow2_version, ==, 0);
  chain = chain_ok (disk, SM_IMAGE_FORMAT_RAW, dir, 0, 1);
  g_assert_cmpint (layer (chain, 0)->format, ==, SM_IMAGE_FORMAT_RAW);

  /* Inspection still says what the content claims to be. */
  g_assert_true (sm_image_has_qcow2_magic (disk, &err));
  g_assert_no_error (err);
  g_assert_true (sm_image_find_signature (disk, &what, &err));
  g_assert_no_error (err);
  g_assert_cmpstr (what, ==, "qcow2 image header");
}

/* ---- chains ------------------------------------------------------------- */

static void
test_chain_three_layers (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *sub = path_in (dir, "images");
  g_autofree char *base = path_in (sub, "base.raw");
  g_autofree char *mid = path_in (sub, "mid.qcow2");
  g_autofree char *top = path_in (sub, "top.qcow2");
  g_autofree char *decoy = path_in (dir, "base.raw");
  g_autofree char *abs_top = path_in (dir, "abs-top.qcow2");
  g_autofree char *cwd = g_get_current_dir ();
  g_autoptr(SmImageChain) chain = NULL;
  g_autoptr(SmImageChain) rel_chain = NULL;
  g_autoptr(SmImageChain) abs_chain = NULL;

  g_assert_cmpint (g_mkdir (sub, 0755), ==, 0);
  g_assert_true (sm_test_create_raw (base, 2 * MiB));
  make_overlay (mid, "base.raw", "raw");
  make_overlay (top, "mid.qcow2", "qcow2");
  make_overlay (abs_top, mid, "qcow2");
  /* A file with the backing name in the current directory must not be
   * taken: names are relative to the naming image's directory. */
  g_assert_true (sm_test_create_raw (decoy, 7 * MiB));

  chain = chain_ok (top, SM_IMAGE_FORMAT_QCOW2, NULL, 0, 3);
  g_assert_cmpstr (layer (chain, 0)->path, ==, top);
  g_assert_cmpstr (layer (chain, 1)->path, ==, mid);
  g_assert_cmpstr (layer (chain, 2)->path, ==, base);
  g_assert_cmpint (layer (chain, 1)->format, ==, SM_IMAGE_FORMAT_QCOW2);
  g_assert_cmpint (layer (chain, 2)->format, ==, SM_IMAGE_FORMAT_RAW);
  for (guint i = 0; i < 3; i++) {
    g_assert_cmpuint (layer (chain, i)->virtual_size, ==, 2 * MiB);
    assert_matches_qemu (layer (chain, i));
  }

  /* The same chain named relative to the current directory. */
  g_assert_cmpint (g_chdir (dir), ==, 0);
  rel_chain = sm_image_chain_open ("images/top.qcow2", SM_IMAGE_FORMAT_QCOW2,
                                   "images", 0, NULL);
  g_assert_cmpint (g_chdir (cwd), ==, 0);
  g_assert_nonnull (rel_chain);
  g_assert_cmpuint (rel_chain->layers->len, ==, 3);
  g_assert_cmpstr (layer (rel_chain, 2)->path, ==, "images/base.raw");
  g_assert_cmpuint (layer (rel_chain, 2)->virtual_size, ==, 2 * MiB);

  /* Absolute backing name, confined to the domain that holds both. */
  abs_chain = chain_ok (abs_top, SM_IMAGE_FORMAT_QCOW2, dir, 0, 3);
  g_assert_cmpstr (layer (abs_chain, 1)->path, ==, mid);
  g_assert_cmpstr (layer (abs_chain, 2)->path, ==, base);
}

static void
test_chain_unstated_format (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *base = path_in (dir, "base.raw");
  g_autofree char *qbase = path_in (dir, "base.qcow2");
  g_autofree char *top = path_in (dir, "top.qcow2");
  g_autofree char *qtop = path_in (dir, "qtop.qcow2");
  g_autofree char *want = NULL;
  g_autoptr(SmImageChain) chain = NULL;
  g_autoptr(SmImageChain) qchain = NULL;

  g_assert_true (sm_test_create_raw (base, MiB));
  make_qcow2 (qbase, "compat=1.1", "1M");
  make_overlay (top, "base.raw", "raw");
  make_overlay (qtop, "base.qcow2", "qcow2");
  unstate_backing_format (top);
  unstate_backing_format (qtop);

  want = g_strdup_printf ("%s: the format of backing file 'base.raw' is not "
                          "stated", top);
  assert_chain_fails (top, SM_IMAGE_FORMAT_QCOW2, NULL, 0, SM_ERROR_UNSAFE,
                      want);
  chain = chain_ok (top, SM_IMAGE_FORMAT_QCOW2, dir,
                    SM_CHAIN_ALLOW_UNSTATED_FORMAT, 2);
  g_assert_cmpint (layer (chain, 1)->format, ==, SM_IMAGE_FORMAT_RAW);
  qchain = chain_ok (qtop, SM_IMAGE_FORMAT_QCOW2, dir,
                     SM_CHAIN_ALLOW_UNSTATED_FORMAT, 2);
  g_assert_cmpint (layer (qchain, 1)->format, ==, SM_IMAGE_FORMAT_QCOW2);
}

static void
test_chain_missing_backing (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *top = path_in (dir, "top.qcow2");
  g_autofree char *gone = path_in (dir, "gone.qcow2");
  g_autofree char *want = NULL;

  make_overlay_unsafe (top, "gone.qcow2", "qcow2");
  want = g_strdup_printf ("%s: backing file 'gone.qcow2' does not exist "
                          "(looked for %s)", top, gone);
  assert_chain_fails (top, SM_IMAGE_FORMAT_QCOW2, NULL, 0,
                      SM_ERROR_NOT_FOUND, want);
  assert_chain_fails (top, SM_IMAGE_FORMAT_QCOW2, dir, 0,
                      SM_ERROR_NOT_FOUND, want);
  assert_chain_fails (top, SM_IMAGE_FORMAT_QCOW2, NULL,
                      SM_CHAIN_ALLOW_UNSTATED_FORMAT, SM_ERROR_NOT_FOUND,
                      want);
  assert_chain_fails (gone, SM_IMAGE_FORMAT_QCOW2, NULL, 0,
                      SM_ERROR_NOT_FOUND, "gone.qcow2: No such file");
}

static void
test_chain_protocol_names (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  static const char *const names[] = {
    "nbd:localhost:10809",
    "nbd://127.0.0.1/export",
    "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\","
    "\"filename\":\"/etc/passwd\"}}",
  };

  for (size_t i = 0; i < G_N_ELEMENTS (names); i++) {
    g_autofree char *top = g_strdup_printf ("%s/top%zu.qcow2", dir, i);
    g_autofree char *want = NULL;
    g_autoptr(SmImageInfo) info = NULL;

    make_overlay_unsafe (top, names[i], "raw");
    info = probe_ok (top, SM_IMAGE_FORMAT_QCOW2);
    g_assert_cmpstr (info->backing_file, ==, names[i]);
    want = g_strdup_printf ("%s: backing file '%s' is not a local file name",
                            top, names[i]);
    assert_chain_fails (top, SM_IMAGE_FORMAT_QCOW2, NULL, 0, SM_ERROR_UNSAFE,
                        want);
    assert_chain_fails (top, SM_IMAGE_FORMAT_QCOW2, dir, 0, SM_ERROR_UNSAFE,
                        want);
  }
}

static void
test_chain_loop (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *a = path_in (dir, "a.qcow2");
  g_autofree char *b = path_in (dir, "b.qcow2");
  g_autofree char *self = path_in (dir, "self.qcow2");
  g_autofree char *hard = path_in (dir, "hard.qcow2");
  g_autofree char *want = NULL;

  make_qcow2 (a, "compat=1.1", "1M");
  make_overlay (b, "a.qcow2", "qcow2");
  g_assert_true (sm_test_qemu_img ("rebase", "-u", "-F", "qcow2", "-b",
                                   "b.qcow2", a, NULL));
  want = g_strdup_printf ("%s: backing file 'a.qcow2' is %s, already in the "
                          "chain: the backing chain is a loop", b, a);
  assert_chain_fails (a, SM_IMAGE_FORMAT_QCOW2, NULL, 0, SM_ERROR_IMAGE,
                      want);
  assert_chain_fails (a, SM_IMAGE_FORMAT_QCOW2, dir, 0, SM_ERROR_IMAGE,
                      want);

  make_overlay_unsafe (self, "self.qcow2", "qcow2");
  assert_chain_fails (self, SM_IMAGE_FORMAT_QCOW2, dir, 0, SM_ERROR_IMAGE,
                      "the backing chain is a loop");
  /* Same inode under another name is the same file. */
  make_overlay_unsafe (hard, "self.qcow2", "qcow2");
  g_assert_cmpint (unlink (self), ==, 0);
  g_assert_cmpint (link (hard, self), ==, 0);
  assert_chain_fails (hard, SM_IMAGE_FORMAT_QCOW2, NULL, 0, SM_ERROR_IMAGE,
                      "the backing chain is a loop");
}

/* SM_IMAGE_CHAIN_MAX_DEPTH + 1 distinct layers.  Only the first cluster of
 * a qcow2 file is read, so each layer is the first 4 KiB of a real image
 * with its backing name patched (names of equal length). */
static void
test_chain_depth (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *tmpl = path_in (dir, "template.qcow2");
  g_autofree char *data = NULL;
  g_autofree char *first = NULL;
  g_autofree char *last_ok = NULL;
  g_autoptr(SmImageChain) chain = NULL;
  gsize len = 0;
  uint64_t boff;
  int n = SM_IMAGE_CHAIN_MAX_DEPTH;

  make_overlay_unsafe (tmpl, "L0000.qcow2", "qcow2");
  g_assert_true (g_file_get_contents (tmpl, &data, &len, NULL));
  boff = ((uint64_t) read_be32 (tmpl, 8) << 32) | read_be32 (tmpl, 12);
  for (int i = 0; i <= n; i++) {
    g_autofree char *name = g_strdup_printf ("%s/L%04d.qcow2", dir, i);
    g_autofree char *next = g_strdup_printf ("L%04d.qcow2", i + 1);

    memcpy (data + boff, next, strlen (next));
    write_file (name, data, 4096);
  }
  /* The last layer has no backing file. */
  {
    g_autofree char *name = g_strdup_printf ("%s/L%04d.qcow2", dir, n);
    patch_be64 (name, 8, 0);
    patch_be32 (name, 16, 0);
  }
  first = g_strdup_printf ("%s/L0000.qcow2", dir);
  assert_chain_fails (first, SM_IMAGE_FORMAT_QCOW2, dir, 0, SM_ERROR_IMAGE,
                      "backing chain is deeper than 256 layers");
  /* One layer fewer is fine. */
  last_ok = g_strdup_printf ("%s/L0001.qcow2", dir);
  chain = chain_ok (last_ok, SM_IMAGE_FORMAT_QCOW2, dir, 0, (guint) n);
}

/* ---- confinement -------------------------------------------------------- */

static void
test_confine_absolute (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *top = path_in (dir, "top.qcow2");
  g_autofree char *want = NULL;
  g_autoptr(SmImageChain) chain = NULL;

  make_overlay_unsafe (top, "/etc/passwd", "raw");
  want = g_strdup_printf ("%s: backing file '/etc/passwd' is outside the "
                          "storage domain %s", top, dir);
  assert_chain_fails (top, SM_IMAGE_FORMAT_QCOW2, dir, 0, SM_ERROR_UNSAFE,
                      want);
  /* Unconfined, it is a valid (if unwise) chain. */
  chain = chain_ok (top, SM_IMAGE_FORMAT_QCOW2, NULL, 0, 2);
}

/* The escaping backing file is a FIFO watched with inotify: the walk must
 * fail without opening it.  (Opening a FIFO without O_NONBLOCK would also
 * hang the test.)  A direct probe of the FIFO is the positive control that
 * the watch sees opens. */
static void
test_confine_not_opened (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *sd = path_in (dir, "sd");
  g_autofree char *outside = path_in (dir, "outside");
  g_autofree char *fifo = path_in (outside, "fifo");
  g_autofree char *top = path_in (sd, "top.qcow2");
  g_autofree char *want = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(SmImageInfo) info = NULL;
  char buf[4096];
  int ifd;

  g_assert_cmpint (g_mkdir (sd, 0755), ==, 0);
  g_assert_cmpint (g_mkdir (outside, 0755), ==, 0);
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  make_overlay_unsafe (top, "../outside/fifo", "raw");

  ifd = inotify_init1 (IN_NONBLOCK | IN_CLOEXEC);
  g_assert_cmpint (ifd, >=, 0);
  g_assert_cmpint (inotify_add_watch (ifd, outside, IN_OPEN | IN_ACCESS),
                   >=, 0);

  want = g_strdup_printf ("%s: backing file '../outside/fifo' is outside the "
                          "storage domain %s (resolves to %s)", top, sd, fifo);
  assert_chain_fails (top, SM_IMAGE_FORMAT_QCOW2, sd, 0, SM_ERROR_UNSAFE,
                      want);
  assert_chain_fails (top, SM_IMAGE_FORMAT_QCOW2, sd,
                      SM_CHAIN_ALLOW_UNSTATED_FORMAT, SM_ERROR_UNSAFE, want);
  g_assert_cmpint (read (ifd, buf, sizeof buf), ==, -1);
  g_assert_cmpint (errno, ==, EAGAIN);

  info = sm_image_probe (fifo, SM_IMAGE_FORMAT_RAW, &err);
  g_assert_null (info);
  g_assert_error (err, SM_ERROR, SM_ERROR_IMAGE);
  g_assert_cmpint (read (ifd, buf, sizeof buf), >, 0);
  close (ifd);
}

static void
test_confine_relative_escape (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *sd = path_in (dir, "a/b");
  g_autofree char *outside = path_in (dir, "outside.img");
  g_autofree char *top = path_in (sd, "top.qcow2");
  g_autofree char *want = NULL;
  g_autoptr(SmImageChain) chain = NULL;

  g_assert_cmpint (g_mkdir_with_parents (sd, 0755), ==, 0);
  g_assert_true (sm_test_create_raw (outside, MiB));
  make_overlay (top, "../../outside.img", "raw");
  want = g_strdup_printf ("%s: backing file '../../outside.img' is outside "
                          "the storage domain %s (resolves to %s)", top, sd,
                          outside);
  assert_chain_fails (top, SM_IMAGE_FORMAT_QCOW2, sd, 0, SM_ERROR_UNSAFE,
                      want);
  /* A domain is a directory, not a name prefix: "a/b" does not hold
   * "a/bb". */
  {
    g_autofree char *bb = path_in (dir, "a/bb");
    g_autofree char *top2 = path_in (sd, "top2.qcow2");
    g_autofree char *img = path_in (bb, "x.raw");

    g_assert_cmpint (g_mkdir (bb, 0755), ==, 0);
    g_assert_true (sm_test_create_raw (img, MiB));
    make_overlay (top2, "../bb/x.raw", "raw");
    assert_chain_fails (top2, SM_IMAGE_FORMAT_QCOW2, sd, 0, SM_ERROR_UNSAFE,
                        "is outside the storage domain");
  }
  chain = chain_ok (top, SM_IMAGE_FORMAT_QCOW2, dir, 0, 2);
}

static void
test_confine_symlink_escape (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *sd = path_in (dir, "sd");
  g_autofree char *real = path_in (dir, "real.raw");
  g_autofree char *link = path_in (sd, "base.raw");
  g_autofree char *top = path_in (sd, "top.qcow2");
  g_autofree char *linked_top = path_in (sd, "linked-top.qcow2");
  g_autofree char *outside_top = path_in (dir, "outside-top.qcow2");
  g_autofree char *want = NULL;
  g_autoptr(SmImageChain) chain = NULL;
  g_autoptr(SmImageChain) inner = NULL;

  g_assert_cmpint (g_mkdir (sd, 0755), ==, 0);
  g_assert_true (sm_test_create_raw (real, MiB));
  g_assert_cmpint (symlink ("../real.raw", link), ==, 0);
  make_overlay (top, "base.raw", "raw");
  want = g_strdup_printf ("%s: backing file 'base.raw' is outside the storage "
                          "domain %s (resolves to %s)", top, sd, real);
  assert_chain_fails (top, SM_IMAGE_FORMAT_QCOW2, sd, 0, SM_ERROR_UNSAFE,
                      want);

  /* The top itself, through a symlink that leaves the domain. */
  make_overlay (outside_top, "real.raw", "raw");
  g_assert_cmpint (symlink ("../outside-top.qcow2", linked_top), ==, 0);
  g_free (want);
  want = g_strdup_printf ("%s is outside the storage domain %s (resolves to "
                          "%s)", linked_top, sd, outside_top);
  assert_chain_fails (linked_top, SM_IMAGE_FORMAT_QCOW2, sd, 0,
                      SM_ERROR_UNSAFE, want);

  /* A symlink that stays inside is fine; the domain may be a symlink too. */
  {
    g_autofree char *inside = path_in (sd, "inside.raw");
    g_autofree char *alias = path_in (sd, "alias.raw");
    g_autofree char *top2 = path_in (sd, "top2.qcow2");
    g_autofree char *sd_link = path_in (dir, "sd-link");
    g_autofree char *top2_via = path_in (sd_link, "top2.qcow2");

    g_assert_true (sm_test_create_raw (inside, MiB));
    g_assert_cmpint (symlink ("inside.raw", alias), ==, 0);
    make_overlay (top2, "alias.raw", "raw");
    g_assert_cmpint (symlink ("sd", sd_link), ==, 0);
    chain = chain_ok (top2_via, SM_IMAGE_FORMAT_QCOW2, sd_link, 0, 2);
    {
      g_autofree char *want_alias = path_in (sd_link, "alias.raw");
      g_assert_cmpstr (layer (chain, 1)->path, ==, want_alias);
    }
    inner = chain_ok (top2, SM_IMAGE_FORMAT_QCOW2, sd, 0, 2);
  }
}

static void
test_confine_data_file (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *sd = path_in (dir, "sd");
  g_autofree char *img = path_in (sd, "img.qcow2");
  g_autofree char *outside = path_in (dir, "data.raw");
  g_autofree char *rel = path_in (sd, "rel.qcow2");
  g_autofree char *cwd = g_get_current_dir ();
  g_autofree char *want = NULL;
  g_autofree char *opts = g_strdup_printf ("data_file=%s", outside);
  g_autoptr(SmImageChain) chain = NULL;
  g_autoptr(SmImageChain) unconfined = NULL;

  g_assert_cmpint (g_mkdir (sd, 0755), ==, 0);
  make_qcow2 (img, opts, "1M");
  want = g_strdup_printf ("%s: external data file '%s' is outside the "
                          "storage domain %s", img, outside, sd);
  assert_chain_fails (img, SM_IMAGE_FORMAT_QCOW2, sd, 0, SM_ERROR_UNSAFE,
                      want);
  chain = chain_ok (img, SM_IMAGE_FORMAT_QCOW2, dir, 0, 1);
  g_assert_cmpstr (layer (chain, 0)->data_file, ==, outside);

  /* qemu-img creates a relative data file in its working directory, and
   * QEMU 7.2 opens it from there, not from the image's directory. */
  g_assert_cmpint (g_chdir (sd), ==, 0);
  make_qcow2 ("rel.qcow2", "data_file=rel.raw", "1M");
  g_assert_cmpint (g_chdir (cwd), ==, 0);
  g_free (want);
  want = g_strdup_printf ("%s: external data file 'rel.raw' is a relative "
                          "name", rel);
  assert_chain_fails (rel, SM_IMAGE_FORMAT_QCOW2, sd, 0, SM_ERROR_UNSAFE,
                      want);
  unconfined = chain_ok (rel, SM_IMAGE_FORMAT_QCOW2, NULL, 0, 1);
  g_assert_cmpstr (layer (unconfined, 0)->data_file, ==, "rel.raw");
}

/* oVirt's block domains link each layer's LV into the domain: a symbolic
 * link in the domain to a block device is a layer of the domain (lib/image.c
 * confine()), anything else a link leads out to stays refused.  A loop
 * device over a sparse file stands in for the LV.  Its qcow2 names its
 * backing file relatively, resolved against the link's name, as QEMU
 * does. */
static void
test_confine_block_device (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *sd = path_in (dir, "sd");
  g_autofree char *lv_file = path_in (dir, "lv.img");
  g_autofree char *base = path_in (sd, "base.raw");
  g_autofree char *mid = path_in (sd, "mid.qcow2");
  g_autofree char *top = path_in (sd, "top.qcow2");
  g_autofree char *dev = NULL;
  g_autoptr(SmImageChain) chain = NULL;
  g_autoptr(SmImageChain) from_link = NULL;
  g_autoptr(json_object) qemu = NULL;
  int fd;

  g_assert_cmpint (g_mkdir (sd, 0755), ==, 0);
  make_sparse (lv_file, 8 * MiB);
  fd = sm_test_loop_attach (lv_file, &dev);
  if (fd < 0) {
    g_test_skip ("no loop device available: block device layers not "
                 "tested");
    return;
  }
  g_assert_true (sm_test_create_raw (base, 2 * MiB));
  g_assert_cmpint (symlink (dev, mid), ==, 0);
  make_overlay (mid, "base.raw", "raw");
  make_overlay (top, "mid.qcow2", "qcow2");

  chain = chain_ok (top, SM_IMAGE_FORMAT_QCOW2, sd, 0, 3);
  g_assert_cmpstr (layer (chain, 0)->path, ==, top);
  g_assert_cmpstr (layer (chain, 1)->path, ==, mid);
  g_assert_cmpstr (layer (chain, 2)->path, ==, base);
  g_assert_false (layer (chain, 0)->is_block_device);
  g_assert_true (layer (chain, 1)->is_block_device);
  g_assert_false (layer (chain, 2)->is_block_device);
  g_assert_cmpint (layer (chain, 1)->format, ==, SM_IMAGE_FORMAT_QCOW2);
  g_assert_cmpint (layer (chain, 2)->format, ==, SM_IMAGE_FORMAT_RAW);
  g_assert_cmpuint (layer (chain, 1)->file_size, ==, 8 * MiB);
  g_assert_cmpuint (layer (chain, 1)->virtual_size, ==, 2 * MiB);
  g_assert_cmpstr (layer (chain, 1)->backing_file, ==, "base.raw");
  /* QEMU resolves the device's backing name against the link too. */
  qemu = qemu_img_info (mid, "qcow2", true);
  g_assert_nonnull (qemu);
  g_assert_cmpstr (json_object_get_string (jget (qemu,
                                                 "full-backing-filename")),
                   ==, base);

  /* The link as the top, and with the unstated-format flag. */
  from_link = chain_ok (mid, SM_IMAGE_FORMAT_QCOW2, sd,
                        SM_CHAIN_ALLOW_UNSTATED_FORMAT, 2);
  g_assert_cmpstr (layer (from_link, 0)->path, ==, mid);
  g_assert_cmpstr (layer (from_link, 1)->path, ==, base);

  /* A link in the domain to a regular file outside: refused, naming the
   * link (as the top and as a backing file) and the domain. */
  {
    g_autofree char *outside = path_in (dir, "outside.qcow2");
    g_autofree char *link = path_in (sd, "file-link.qcow2");
    g_autofree char *over = path_in (sd, "over-file.qcow2");
    g_autofree char *want = NULL;

    make_qcow2 (outside, "cluster_size=65536", "2M");
    g_assert_cmpint (symlink (outside, link), ==, 0);
    want = g_strdup_printf ("%s is outside the storage domain %s (resolves "
                            "to %s)", link, sd, outside);
    assert_chain_fails (link, SM_IMAGE_FORMAT_QCOW2, sd, 0, SM_ERROR_UNSAFE,
                        want);
    make_overlay (over, "file-link.qcow2", "qcow2");
    g_free (want);
    want = g_strdup_printf ("%s: backing file 'file-link.qcow2' is outside "
                            "the storage domain %s (resolves to %s)", over, sd,
                            outside);
    assert_chain_fails (over, SM_IMAGE_FORMAT_QCOW2, sd, 0, SM_ERROR_UNSAFE,
                        want);
  }

  /* A link in the domain to a character device. */
  {
    g_autofree char *null_link = path_in (sd, "null.raw");
    g_autofree char *over = path_in (sd, "over-null.qcow2");
    g_autofree char *want = NULL;

    g_assert_cmpint (symlink ("/dev/null", null_link), ==, 0);
    make_overlay_unsafe (over, "null.raw", "raw");
    want = g_strdup_printf ("%s: backing file 'null.raw' is outside the "
                            "storage domain %s (resolves to /dev/null)", over,
                            sd);
    assert_chain_fails (over, SM_IMAGE_FORMAT_QCOW2, sd, 0, SM_ERROR_UNSAFE,
                        want);
  }

  /* Links to the same device that are not themselves in the domain: one
   * reached with "..", one in a directory that is a link leading out. */
  {
    g_autofree char *out_link = path_in (dir, "out-lv.qcow2");
    g_autofree char *out_dir = path_in (dir, "vg");
    g_autofree char *in_dir_link = path_in (out_dir, "lv.qcow2");
    g_autofree char *esc = path_in (sd, "esc");
    g_autofree char *over_dots = path_in (sd, "over-dots.qcow2");
    g_autofree char *over_esc = path_in (sd, "over-esc.qcow2");
    g_autofree char *want = NULL;

    g_assert_cmpint (symlink (dev, out_link), ==, 0);
    g_assert_cmpint (g_mkdir (out_dir, 0755), ==, 0);
    g_assert_cmpint (symlink (dev, in_dir_link), ==, 0);
    g_assert_cmpint (symlink (out_dir, esc), ==, 0);
    make_overlay_unsafe (over_dots, "../out-lv.qcow2", "qcow2");
    make_overlay_unsafe (over_esc, "esc/lv.qcow2", "qcow2");
    want = g_strdup_printf ("%s: backing file '../out-lv.qcow2' is outside "
                            "the storage domain %s (resolves to %s)",
                            over_dots, sd, dev);
    assert_chain_fails (over_dots, SM_IMAGE_FORMAT_QCOW2, sd, 0,
                        SM_ERROR_UNSAFE, want);
    g_free (want);
    want = g_strdup_printf ("%s: backing file 'esc/lv.qcow2' is outside "
                            "the storage domain %s (resolves to %s)",
                            over_esc, sd, dev);
    assert_chain_fails (over_esc, SM_IMAGE_FORMAT_QCOW2, sd, 0,
                        SM_ERROR_UNSAFE, want);
  }
  close (fd);
}

/* ---- malformed headers -------------------------------------------------- */

static void
test_header_truncated (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *v2 = path_in (dir, "v2.qcow2");
  g_autofree char *v3 = path_in (dir, "v3.qcow2");
  g_autofree char *cut = path_in (dir, "cut.qcow2");
  g_autofree char *base = path_in (dir, "base.raw");

  g_assert_true (sm_test_create_raw (base, MiB));
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o",
                                   "compat=0.10", "-F", "raw", "-b",
                                   "base.raw", v2, NULL));
  make_overlay (v3, "base.raw", "raw");
  /* Every length up to the end of the backing name (the last byte of the
   * header area qemu-img writes) is refused; from there on the header is
   * complete, as QEMU itself reads nothing else at open. */
  for (int v = 0; v < 2; v++) {
    const char *img = v == 0 ? v2 : v3;
    uint64_t end = read_be32 (img, 12) + read_be32 (img, 16);

    g_assert_cmpuint (read_be32 (img, 8), ==, 0);
    for (size_t len = 0; len <= MAX (120, end + 8); len++) {
      g_autoptr(GError) err = NULL;
      g_autoptr(SmImageInfo) info = NULL;
      g_autofree char *prefix = g_strdup_printf ("%s: qcow2 header: ", cut);

      copy_prefix (img, cut, len);
      info = sm_image_probe (cut, SM_IMAGE_FORMAT_QCOW2, &err);
      if (len < end) {
        if (info)
          g_test_message ("v%d cut at %zu: accepted", v + 2, len);
        g_assert_null (info);
        g_assert_error (err, SM_ERROR, SM_ERROR_IMAGE);
        g_assert_true (g_str_has_prefix (err->message, prefix));
      } else {
        g_assert_no_error (err);
        g_assert_cmpstr (info->backing_file, ==, "base.raw");
        g_assert_cmpstr (info->backing_format, ==, "raw");
      }
    }
  }
}

typedef struct {
  const char *what;
  off_t offset;
  int width;                   /* 4 or 8; 1 for one byte */
  uint64_t value;
  const char *want;            /* in the message */
  bool qemu_refuses;           /* qemu-img info fails on it too */
} Mutation;

static void
test_header_absurd (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *good = path_in (dir, "good.qcow2");
  g_autofree char *bad = path_in (dir, "bad.qcow2");
  g_autofree char *base = path_in (dir, "base.raw");
  off_t bf_ext;
  uint64_t boff;
  const Mutation m[] = {
    { "magic", 0, 4, 0x514649fa, "magic: not a qcow2 image", true },
    { "version 1", 4, 4, 1, "version 1 is not supported", true },
    { "version 4", 4, 4, 4, "version 4 is not supported", true },
    { "backing offset huge", 8, 8, 1ULL << 63, "backing_file_offset", true },
    { "backing offset in header", 8, 8, 16, "backing_file_offset 16", false },
    { "backing name too long", 16, 4, 1024, "backing_file_size 1024", true },
    { "backing name huge", 16, 4, 0xffffffffu, "backing_file_size", true },
    { "cluster_bits 8", 20, 4, 8, "cluster_bits 8 is not 9..21", true },
    { "cluster_bits 22", 20, 4, 22, "cluster_bits 22", true },
    { "cluster_bits huge", 20, 4, 0xffffffffu, "cluster_bits", true },
    { "size 2^63", 24, 8, 1ULL << 63, "size 9223372036854775808", true },
    { "size max", 24, 8, UINT64_MAX, "the most an image with", true },
    { "size beyond l1", 24, 8, 2 * TiB, "l1_size 1 is too small", true },
    { "crypt 3", 32, 4, 3, "crypt_method 3", true },
    { "l1_size huge", 36, 4, 0xffffffffu, "l1_size", true },
    { "l1 offset unaligned", 40, 8, 0x30001, "l1_table_offset 196609 is not "
      "aligned", true },
    { "l1 offset huge", 40, 8, 1ULL << 63,
      "l1_table_offset", true },
    { "reftable unaligned", 48, 8, 0x10010, "refcount_table_offset", true },
    { "reftable empty", 56, 4, 0, "refcount_table_clusters is 0", true },
    { "reftable huge", 56, 4, 0xffffffffu, "refcount_table_clusters", true },
    { "snapshots huge", 60, 4, 0xffffffffu, "nb_snapshots", true },
    { "snapshots unaligned", 64, 8, 4, "snapshots_offset", true },
    { "refcount_order 7", 96, 4, 7, "refcount_order 7", true },
    { "header_length 96", 100, 4, 96, "header_length 96 is less than 104",
      true },
    { "header_length 108", 100, 4, 108, "header_length 108 is not a multiple "
      "of 8", false },
    /* QEMU accepts a header exactly one cluster long (no room for any
     * extension); snapmig does not. */
    { "header_length cluster", 100, 4, 65536, "header_length 65536 does not "
      "fit", false },
    { "header_length > cluster", 100, 4, 65544, "header_length 65544 does "
      "not fit", true },
    { "header_length huge", 100, 4, 0xfffffff8u, "header_length", true },
    { "compression type 7", 104, 1, 7, "compression type 7", true },
    { "zstd without bit", 104, 1, 1, "without the compression type", true },
    /* qemu-img info shows it, but QEMU cannot open it for I/O ("'data-file'
     * is required for this image"). */
    { "data file bit, no name", 72, 8, SM_QCOW2_INCOMPAT_DATA_FILE,
      "no extension names the data file", false },
  };

  g_assert_true (sm_test_create_raw (base, MiB));
  make_overlay (good, "base.raw", "raw");
  bf_ext = find_ext (good, EXT_BACKING_FORMAT);
  g_assert_cmpint (bf_ext, >, 0);
  boff = ((uint64_t) read_be32 (good, 8) << 32) | read_be32 (good, 12);

  for (size_t i = 0; i < G_N_ELEMENTS (m); i++) {
    g_autoptr(json_object) qinfo = NULL;
    uint8_t byte = (uint8_t) m[i].value;

    g_test_message ("mutation: %s", m[i].what);
    copy_file (good, bad);
    if (m[i].width == 8)
      patch_be64 (bad, m[i].offset, m[i].value);
    else if (m[i].width == 4)
      patch_be32 (bad, m[i].offset, (uint32_t) m[i].value);
    else
      patch (bad, m[i].offset, &byte, 1);
    assert_probe_fails (bad, SM_ERROR_IMAGE, m[i].want);
    if (m[i].qemu_refuses) {
      qinfo = qemu_img_info (bad, "qcow2", false);
      if (qinfo)
        g_test_message ("qemu-img accepts mutation '%s'", m[i].what);
      g_assert_null (qinfo);
    }
  }

  /* Extensions. */
  {
    static const struct {
      const char *what;
      uint32_t len;
      const char *want;
    } ext[] = {
      { "length past the name", 0xffffffffu, "length 4294967295 runs into "
        "the backing file name" },
      { "length to the name", 4096, "runs into the backing file name" },
      { "backing format too long", 16, "backing format extension: length 16" },
      { "backing format empty", 0, "backing format extension: length 0" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS (ext); i++) {
      g_test_message ("extension: %s", ext[i].what);
      copy_file (good, bad);
      patch_be32 (bad, bf_ext + 4, ext[i].len);
      assert_probe_fails (bad, SM_ERROR_IMAGE, ext[i].want);
    }
  }
  /* The full disk encryption extension belongs to LUKS images and is 16
   * bytes long (qemu-img cannot make LUKS images here: it needs accurate CPU
   * usage to time the key derivation, so the extension is patched in). */
  {
    g_autofree char *plain = path_in (dir, "plain.qcow2");
    uint8_t zero[24] = { 0 };
    off_t end_ext;

    make_qcow2 (plain, "compat=1.1", "1M");
    end_ext = find_ext (plain, 0);
    g_assert_cmpint (end_ext, >, 0);
    copy_file (plain, bad);
    patch (bad, end_ext, zero, sizeof zero);
    patch_be32 (bad, end_ext, 0x0537be77u);
    patch_be32 (bad, end_ext + 4, 16);
    assert_probe_fails (bad, SM_ERROR_IMAGE, "full disk encryption extension "
                        "without LUKS encryption (crypt_method 0)");
    patch_be32 (bad, 32, 2);
    {
      g_autoptr(SmImageInfo) luks = probe_ok (bad, SM_IMAGE_FORMAT_QCOW2);
      g_assert_cmpuint (luks->crypt_method, ==, 2);
    }
    patch_be32 (bad, end_ext + 4, 3);
    assert_probe_fails (bad, SM_ERROR_IMAGE, "full disk encryption extension: "
                        "length 3, expected 16");
  }
  /* Bitmaps extension: 24 bytes, 1..65535 bitmaps. */
  {
    g_autofree char *bm = path_in (dir, "bitmap.qcow2");
    off_t bm_ext;

    make_qcow2 (bm, "compat=1.1", "1M");
    g_assert_true (sm_test_qemu_img ("bitmap", "--add", bm, "b0", NULL));
    bm_ext = find_ext (bm, 0x23852875u);
    g_assert_cmpint (bm_ext, >, 0);
    copy_file (bm, bad);
    patch_be32 (bad, bm_ext + 4, 16);
    assert_probe_fails (bad, SM_ERROR_IMAGE, "bitmaps extension: length 16");
    copy_file (bm, bad);
    patch_be32 (bad, bm_ext + 8, 0);
    assert_probe_fails (bad, SM_ERROR_IMAGE, "bitmaps extension: 0 bitmaps");
    g_assert_null (qemu_img_info (bad, "qcow2", false));
    /* Without the autoclear bit the extension is stale and ignored. */
    patch_be64 (bad, 88, 0);
    {
      g_autoptr(SmImageInfo) stale = probe_ok (bad, SM_IMAGE_FORMAT_QCOW2);
      g_assert_cmpuint (stale->nb_bitmaps, ==, 0);
    }
  }
  /* NUL inside the backing name and the backing format. */
  copy_file (good, bad);
  patch (bad, (off_t) boff + 2, "", 1);
  assert_probe_fails (bad, SM_ERROR_IMAGE, "backing file name contains a NUL");
  copy_file (good, bad);
  patch (bad, bf_ext + 9, "", 1);
  assert_probe_fails (bad, SM_ERROR_IMAGE, "backing format contains a NUL");
  /* Backing name past the end of the file. */
  copy_prefix (good, bad, (size_t) boff + 3);
  assert_probe_fails (bad, SM_ERROR_IMAGE, "backing file name ends at byte");
  /* Without a backing file the extensions may fill the first cluster; one
   * that runs off the end of a short file is refused. */
  {
    g_autofree char *nob = path_in (dir, "nobacking.qcow2");
    off_t end_ext;

    make_qcow2 (nob, "compat=1.1", "1M");
    end_ext = find_ext (nob, 0);
    g_assert_cmpint (end_ext, >, 0);
    copy_file (nob, bad);
    patch_be32 (bad, end_ext, 0x12345678);
    patch_be32 (bad, end_ext + 4, 8000);
    g_assert_cmpint (truncate (bad, 4096), ==, 0);
    assert_probe_fails (bad, SM_ERROR_IMAGE, "past the end of the file");
  }
  /* Extended L2 entries need 16 KiB clusters. */
  {
    g_autofree char *ext = path_in (dir, "extl2.qcow2");

    make_qcow2 (ext, "extended_l2=on,cluster_size=16k", "1M");
    copy_file (ext, bad);
    patch_be32 (bad, 20, 13);
    assert_probe_fails (bad, SM_ERROR_IMAGE, "extended L2 entries need");
    g_assert_null (qemu_img_info (bad, "qcow2", false));
  }
}

/* QEMU's virtual size bound (32 MiB L1 table): with 512-byte clusters,
 * 128 GiB is the most qemu-img creates and a header saying so (with a full
 * L1 table) opens; 512 bytes more is refused by both.  The headers are
 * patched rather than made by qemu-img, whose 32 MiB of 512-byte-cluster
 * metadata takes seconds to write. */
static void
test_header_size_bound (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *img = path_in (dir, "max.qcow2");
  g_autofree char *over = path_in (dir, "over.qcow2");
  g_autoptr(SmImageInfo) info = NULL;
  const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-o",
                         "cluster_size=512", over, "137438953984", NULL };

  g_assert_false (sm_test_run (argv, NULL, true));
  make_qcow2 (img, "cluster_size=512", "1M");
  patch_be64 (img, 24, 128 * GiB);
  patch_be32 (img, 36, 4u << 20);
  info = probe_ok (img, SM_IMAGE_FORMAT_QCOW2);
  g_assert_cmpuint (info->virtual_size, ==, 128 * GiB);
  g_assert_cmpuint (info->l1_size, ==, 4u << 20);
  assert_matches_qemu (info);

  copy_file (img, over);
  patch_be64 (over, 24, 128 * GiB + 512);
  assert_probe_fails (over, SM_ERROR_IMAGE,
                      "the most an image with 512-byte clusters can address");
  g_assert_null (qemu_img_info (over, "qcow2", false));
  patch_be32 (over, 36, (4u << 20) + 1);
  assert_probe_fails (over, SM_ERROR_IMAGE,
                      "the most an image with 512-byte clusters can address");
  g_assert_null (qemu_img_info (over, "qcow2", false));
}

static void
test_header_flags (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *good = path_in (dir, "good.qcow2");
  g_autofree char *corrupt = path_in (dir, "corrupt.qcow2");
  g_autofree char *unknown = path_in (dir, "unknown.qcow2");
  g_autoptr(SmImageInfo) ci = NULL;
  g_autoptr(SmImageInfo) ui = NULL;
  g_autoptr(json_object) qi = NULL;
  g_autoptr(SmImageChain) chain = NULL;

  make_qcow2 (good, "compat=1.1", "1M");
  copy_file (good, corrupt);
  patch_be64 (corrupt, 72, SM_QCOW2_INCOMPAT_CORRUPT);
  ci = probe_ok (corrupt, SM_IMAGE_FORMAT_QCOW2);
  g_assert_true (ci->corrupt);
  g_assert_false (ci->unknown_incompatible);
  assert_matches_qemu (ci);
  chain = chain_ok (corrupt, SM_IMAGE_FORMAT_QCOW2, dir, 0, 1);
  g_assert_true (layer (chain, 0)->corrupt);

  /* Bit 10 means nothing to QEMU 7.2, which refuses the image: the caller
   * must refuse it too, so the flag is reported. */
  copy_file (good, unknown);
  patch_be64 (unknown, 72, 1ULL << 10);
  ui = probe_ok (unknown, SM_IMAGE_FORMAT_QCOW2);
  g_assert_true (ui->unknown_incompatible);
  g_assert_cmpuint (ui->incompatible_features, ==, 1ULL << 10);
  qi = qemu_img_info (unknown, "qcow2", false);
  g_assert_null (qi);
}

/* A header whose extensions and backing name lie beyond the first 4 KiB
 * (valid for QEMU): the probe reads the rest of the first cluster. */
static void
test_header_large (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *img = path_in (dir, "large.qcow2");
  g_autofree char *base = path_in (dir, "base.raw");
  g_autoptr(SmImageInfo) info = NULL;
  g_autoptr(SmImageChain) chain = NULL;
  g_autofree uint8_t *pad = g_malloc0 (5000);
  const char *name = "base.raw";

  g_assert_true (sm_test_create_raw (base, MiB));
  make_qcow2 (img, "compat=1.1", "1M");
  /* header (112) | unknown ext 5000 | backing format "raw" | end | name */
  patch_be32 (img, 112, 0x12345678);
  patch_be32 (img, 116, 5000);
  patch (img, 120, pad, 5000);
  patch_be32 (img, 5120, EXT_BACKING_FORMAT);
  patch_be32 (img, 5124, 3);
  patch (img, 5128, "raw\0\0\0\0\0", 8);
  patch_be64 (img, 5136, 0);
  patch (img, 9000, name, strlen (name));
  patch_be64 (img, 8, 9000);
  patch_be32 (img, 16, (uint32_t) strlen (name));

  info = probe_ok (img, SM_IMAGE_FORMAT_QCOW2);
  g_assert_cmpstr (info->backing_file, ==, "base.raw");
  g_assert_cmpstr (info->backing_format, ==, "raw");
  assert_matches_qemu (info);
  chain = chain_ok (img, SM_IMAGE_FORMAT_QCOW2, dir, 0, 2);
}

/* ---- signatures --------------------------------------------------------- */

/* Full path of a system tool (also looked for in the sbin directories a
 * non-root PATH lacks), or NULL. */
static char *
find_tool (const char *tool)
{
  static const char *const dirs[] = { "/usr/sbin", "/sbin" };
  char *p = g_find_program_in_path (tool);

  for (size_t i = 0; !p && i < G_N_ELEMENTS (dirs); i++) {
    p = g_build_filename (dirs[i], tool, NULL);
    if (!g_file_test (p, G_FILE_TEST_IS_EXECUTABLE))
      g_clear_pointer (&p, g_free);
  }
  return p;
}

/* LVM2's label checksum: CRC-32 (reflected, 0xedb88320) seeded with
 * 0xf597a6cf and no final inversion. */
static uint32_t
lvm_crc (const uint8_t *buf, size_t len)
{
  uint32_t crc = 0xf597a6cfu;

  for (size_t i = 0; i < len; i++) {
    crc ^= buf[i];
    for (int b = 0; b < 8; b++)
      crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
  }
  return crc;
}

/* The physical volume label pvcreate writes in sector 1 (LVM2's
 * label_header followed by the pv_header's UUID); lvm2 itself is not
 * installed here. */
static void
write_lvm_label (const char *path)
{
  uint8_t sector[512] = { 0 };
  uint64_t one = GUINT64_TO_LE (1);
  uint32_t offset = GUINT32_TO_LE (32);
  uint32_t crc;

  memcpy (sector, "LABELONE", 8);
  memcpy (sector + 8, &one, 8);              /* sector_xl */
  memcpy (sector + 20, &offset, 4);          /* offset_xl: pv_header */
  memcpy (sector + 24, "LVM2 001", 8);
  memcpy (sector + 32, "abcdefghijklmnopqrstuvwxyz012345", 32);
  crc = GUINT32_TO_LE (lvm_crc (sector + 20, sizeof sector - 20));
  memcpy (sector + 16, &crc, 4);
  patch (path, 512, sector, sizeof sector);
}

static void
assert_signature (const char *path, const char *want)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *what = NULL;

  g_assert_true (sm_image_find_signature (path, &what, &err));
  g_assert_no_error (err);
  g_assert_cmpstr (what, ==, want);
}

static void
test_signature (void)
{
  g_autofree char *dir = sm_test_tmpdir ();
  g_autofree char *zero = path_in (dir, "zero.raw");
  g_autofree char *empty = path_in (dir, "empty.raw");
  g_autofree char *ext4 = path_in (dir, "ext4.raw");
  g_autofree char *swap = path_in (dir, "swap.raw");
  g_autofree char *dos = path_in (dir, "dos.raw");
  g_autofree char *lvm = path_in (dir, "lvm.raw");
  g_autofree char *q = path_in (dir, "img.qcow2");
  g_autoptr(GError) err = NULL;
  g_autofree char *what = NULL;
  g_autofree char *tool = NULL;
  uint8_t mbr[512] = { 0 };

  g_assert_true (sm_test_create_raw (zero, 8 * MiB));
  write_file (empty, "", 0);
  assert_signature (zero, NULL);
  assert_signature (empty, NULL);

  make_qcow2 (q, "compat=1.1", "1M");
  assert_signature (q, "qcow2 image header");

  /* An MBR with one Linux partition at 1 MiB. */
  mbr[446 + 4] = 0x83;
  mbr[446 + 8] = 0x00; mbr[446 + 9] = 0x08;    /* LBA 2048, little endian */
  mbr[446 + 12] = 0x00; mbr[446 + 13] = 0x20;  /* 8192 sectors */
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  g_assert_true (sm_test_create_raw (dos, 8 * MiB));
  patch (dos, 0, mbr, sizeof mbr);
  assert_signature (dos, "dos partition table");

  g_assert_true (sm_test_create_raw (lvm, 8 * MiB));
  write_lvm_label (lvm);
  assert_signature (lvm, "LVM2_member");

  if ((tool = find_tool ("mkfs.ext4"))) {
    const char *argv[] = { tool, "-q", "-F", ext4, NULL };
    g_assert_true (sm_test_create_raw (ext4, 8 * MiB));
    g_assert_true (sm_test_run (argv, NULL, false));
    g_clear_pointer (&tool, g_free);
    assert_signature (ext4, "ext4 filesystem");
    /* Every signature is listed, as wipefs would. */
    patch (ext4, 0, mbr, sizeof mbr);
    assert_signature (ext4, "ext4 filesystem, dos partition table");
  } else {
    g_test_message ("mkfs.ext4 not installed: ext4 case not run");
  }
  if ((tool = find_tool ("mkswap"))) {
    const char *argv[] = { tool, swap, NULL };
    g_assert_true (sm_test_create_raw (swap, 8 * MiB));
    g_assert_true (sm_test_run (argv, NULL, false));
    g_clear_pointer (&tool, g_free);
    assert_signature (swap, "swap");
  } else {
    g_test_message ("mkswap not installed: swap case not run");
  }

  g_assert_false (sm_image_find_signature ("/nonexistent", &what, &err));
  g_assert_error (err, SM_ERROR, SM_ERROR_NOT_FOUND);
  g_assert_null (what);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/image/format-names", test_format_names);
  g_test_add_func ("/image/resolve-backing", test_resolve_backing);
  g_test_add_func ("/image/qemu-img/matrix", test_qemu_img_matrix);
  g_test_add_func ("/image/qemu-img/backing", test_qemu_img_backing);
  g_test_add_func ("/image/qemu-img/features", test_qemu_img_features);
  g_test_add_func ("/image/raw", test_raw);
  g_test_add_func ("/image/raw-block-device", test_raw_block_device);
  g_test_add_func ("/image/raw-with-qcow2-header", test_raw_with_qcow2_header);
  g_test_add_func ("/image/chain/three-layers", test_chain_three_layers);
  g_test_add_func ("/image/chain/unstated-format", test_chain_unstated_format);
  g_test_add_func ("/image/chain/missing-backing", test_chain_missing_backing);
  g_test_add_func ("/image/chain/protocol-names", test_chain_protocol_names);
  g_test_add_func ("/image/chain/loop", test_chain_loop);
  g_test_add_func ("/image/chain/depth", test_chain_depth);
  g_test_add_func ("/image/confine/absolute", test_confine_absolute);
  g_test_add_func ("/image/confine/not-opened", test_confine_not_opened);
  g_test_add_func ("/image/confine/relative-escape",
                   test_confine_relative_escape);
  g_test_add_func ("/image/confine/symlink-escape",
                   test_confine_symlink_escape);
  g_test_add_func ("/image/confine/data-file", test_confine_data_file);
  g_test_add_func ("/image/confine/block-device",
                   test_confine_block_device);
  g_test_add_func ("/image/header/truncated", test_header_truncated);
  g_test_add_func ("/image/header/absurd", test_header_absurd);
  g_test_add_func ("/image/header/size-bound", test_header_size_bound);
  g_test_add_func ("/image/header/flags", test_header_flags);
  g_test_add_func ("/image/header/large", test_header_large);
  g_test_add_func ("/image/signature", test_signature);
  return g_test_run ();
}
