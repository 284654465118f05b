/* Deterministic fuzzing of the qcow2 header reader: headers made by the real
 * qemu-img (v2 and v3, backing files with stated formats, bitmaps, an
 * external data file, large clusters) are truncated at every length and
 * have bits flipped with a fixed seed; each variant is written to a file and
 * given to sm_image_probe and sm_image_chain_open.  Neither may crash (the
 * run is meant for valgrind too), and every failure must be one of the
 * documented codes.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "harness.h"
#include "image.h"

/* Only the first cluster holds what the reader looks at; 8 KiB covers the
 * header area of every seed and keeps thousands of writes cheap. */
#define SEED_BYTES 8192
#define FLIP_REGION 640          /* header, extensions and backing name */

typedef struct {
  const char *name;
  char *path;
  uint8_t data[SEED_BYTES];
  size_t len;
  size_t header_end;             /* end of the backing name, or 512 */
} Seed;

static char *dir;
static char *target;
static Seed seeds[4];
static unsigned cases;
static unsigned outcomes[SM_ERROR_LAST + 1];   /* [SM_ERROR_LAST] = success */

static bool
valgrind_mode (void)
{
  return g_strcmp0 (g_getenv ("SM_VALGRIND"), "1") == 0;
}

static void
make_seeds (void)
{
  g_autofree char *base_raw = g_build_filename (dir, "base.raw", NULL);
  g_autofree char *base_q = g_build_filename (dir, "base.qcow2", NULL);
  g_autofree char *data = g_build_filename (dir, "data.raw", NULL);
  g_autofree char *data_opts = g_strdup_printf (
      "data_file=%s,compression_type=zstd,extended_l2=on", data);

  g_assert_true (sm_test_create_raw (base_raw, 1 << 20));
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", base_q,
                                   "1M", NULL));

  seeds[0].name = "v2-backing";
  seeds[1].name = "v3-backing-bitmap";
  seeds[2].name = "v3-data-file";
  seeds[3].name = "v3-2M-clusters";
  for (size_t i = 0; i < G_N_ELEMENTS (seeds); i++)
    seeds[i].path = g_strdup_printf ("%s/%s.qcow2", dir, seeds[i].name);

  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o",
                                   "compat=0.10", "-F", "raw", "-b",
                                   "base.raw", seeds[0].path, NULL));
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o",
                                   "lazy_refcounts=on", "-F", "qcow2", "-b",
                                   "base.qcow2", seeds[1].path, NULL));
  g_assert_true (sm_test_qemu_img ("bitmap", "--add", seeds[1].path, "b0",
                                   NULL));
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o",
                                   data_opts, seeds[2].path, "1M", NULL));
  g_assert_true (sm_test_qemu_img ("create", "-q", "-f", "qcow2", "-o",
                                   "cluster_size=2M", seeds[3].path, "1G",
                                   NULL));

  for (size_t i = 0; i < G_N_ELEMENTS (seeds); i++) {
    g_autofree char *bytes = NULL;
    gsize len = 0;
    uint32_t boff, blen;
    g_autoptr(SmImageInfo) info = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_true (g_file_get_contents (seeds[i].path, &bytes, &len, NULL));
    seeds[i].len = MIN (len, (gsize) SEED_BYTES);
    memcpy (seeds[i].data, bytes, seeds[i].len);
    memcpy (&boff, seeds[i].data + 12, 4);    /* low half of the u64 */
    memcpy (&blen, seeds[i].data + 16, 4);
    boff = GUINT32_FROM_BE (boff);
    blen = GUINT32_FROM_BE (blen);
    seeds[i].header_end = boff ? boff + blen : 512;
    /* The unmutated seed is valid. */
    info = sm_image_probe (seeds[i].path, SM_IMAGE_FORMAT_QCOW2, &err);
    g_assert_no_error (err);
    g_assert_nonnull (info);
  }
}

/* Rewrites the target in place: truncating a file to zero and writing it
 * again makes ext4 flush it on close (auto_da_alloc), thousands of times. */
static void
write_target (const uint8_t *data, size_t len)
{
  int fd = open (target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pwrite (fd, data, len, 0), ==, (ssize_t) len);
  g_assert_cmpint (ftruncate (fd, (off_t) len), ==, 0);
  close (fd);
}

static void
assert_allowed (const GError *err)
{
  g_assert_nonnull (err);
  g_assert_true (err->domain == SM_ERROR);
  if (err->code != SM_ERROR_IMAGE && err->code != SM_ERROR_NOT_FOUND
      && err->code != SM_ERROR_UNSAFE)
    g_test_message ("unexpected error %d: %s", err->code, err->message);
  g_assert_true (err->code == SM_ERROR_IMAGE
                 || err->code == SM_ERROR_NOT_FOUND
                 || err->code == SM_ERROR_UNSAFE);
  g_assert_true (err->message && err->message[0]);
}

/* What a successful probe promises, whatever the input. */
static void
check_info (const SmImageInfo *info)
{
  g_assert_true (info->qcow2_version == 2 || info->qcow2_version == 3);
  g_assert_cmpuint (info->cluster_bits, >=, 9);
  g_assert_cmpuint (info->cluster_bits, <=, 21);
  g_assert_cmpuint (info->cluster_size, ==, 1ULL << info->cluster_bits);
  g_assert_cmpuint (info->header_length, <, info->cluster_size);
  g_assert_cmpuint (info->virtual_size, <=, 1ULL << 61);
  if (info->backing_file) {
    g_assert_cmpuint (strlen (info->backing_file), >=, 1);
    g_assert_cmpuint (strlen (info->backing_file), <=, 1023);
  }
  if (info->backing_format)
    g_assert_cmpuint (strlen (info->backing_format), <=, 15);
}

/* One variant: probe, then walk the chain confined and unconfined. */
static void
run_case (const uint8_t *data, size_t len)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmImageInfo) info = NULL;

  write_target (data, len);
  cases++;
  info = sm_image_probe (target, SM_IMAGE_FORMAT_QCOW2, &err);
  if (info)
    check_info (info);
  else
    assert_allowed (err);
  outcomes[info ? SM_ERROR_LAST : err->code]++;
  g_clear_error (&err);

  for (int mode = 0; mode < 2; mode++) {
    g_autoptr(SmImageChain) chain = NULL;

    chain = sm_image_chain_open (target, SM_IMAGE_FORMAT_QCOW2,
                                 mode == 0 ? dir : NULL,
                                 mode == 0 ? 0
                                           : SM_CHAIN_ALLOW_UNSTATED_FORMAT,
                                 &err);
    outcomes[chain ? SM_ERROR_LAST : err->code]++;
    if (chain) {
      g_assert_nonnull (info);
      g_assert_cmpuint (chain->layers->len, >=, 1);
      for (guint i = 0; i < chain->layers->len; i++) {
        const SmImageInfo *l = chain->layers->pdata[i];
        if (l->format == SM_IMAGE_FORMAT_QCOW2)
          check_info (l);
      }
    } else {
      assert_allowed (err);
    }
    g_clear_error (&err);
  }
}

static void
test_truncate (gconstpointer p)
{
  const Seed *seed = p;
  size_t last = MIN (seed->len, seed->header_end + 64);
  size_t step = valgrind_mode () ? 5 : 1;

  for (size_t len = 0; len <= last; len += step)
    run_case (seed->data, len);
}

static void
test_flip (gconstpointer p)
{
  const Seed *seed = p;
  g_autoptr(GRand) rand = g_rand_new_with_seed (0x5eed0000u
                                                + (guint32) seed->len
                                                + (guint32) seed->header_end);
  unsigned n = valgrind_mode () ? 60 : 600;
  uint8_t buf[SEED_BYTES];
  size_t region = MIN (seed->len, (size_t) MAX (FLIP_REGION,
                                               seed->header_end + 8));

  for (unsigned i = 0; i < n; i++) {
    unsigned flips = (unsigned) g_rand_int_range (rand, 1, 5);

    memcpy (buf, seed->data, seed->len);
    for (unsigned f = 0; f < flips; f++) {
      size_t at = (size_t) g_rand_int_range (rand, 0, (gint32) region);
      buf[at] ^= (uint8_t) (1u << g_rand_int_range (rand, 0, 8));
    }
    /* A quarter of the cases also lose their tail. */
    run_case (buf, g_rand_int_range (rand, 0, 4) == 0
                   ? (size_t) g_rand_int_range (rand, 0, (gint32) seed->len)
                   : seed->len);
  }
}

/* Whole header fields set to extreme values, one at a time. */
static void
test_extremes (gconstpointer p)
{
  const Seed *seed = p;
  static const uint64_t values[] = {
    0, 1, 7, 8, 9, 0x7f, 0x80, 0xff, 0x1ff, 0x200, 0xfff, 0x1000, 0xffff,
    0x10000, 0x1fffff, 0x200000, 0x7fffffff, 0x80000000, 0xfffffff8,
    0xffffffff, 0x100000000ULL, 0x7fffffffffffffffULL, 0x8000000000000000ULL,
    0xffffffffffffffffULL,
  };
  /* u32 fields and u64 fields of the v3 header. */
  static const size_t u32_at[] = { 4, 16, 20, 32, 36, 56, 60, 96, 100 };
  static const size_t u64_at[] = { 8, 24, 40, 48, 64, 72, 80, 88 };
  uint8_t buf[SEED_BYTES];

  for (size_t v = 0; v < G_N_ELEMENTS (values); v++) {
    for (size_t f = 0; f < G_N_ELEMENTS (u32_at); f++) {
      uint32_t be = GUINT32_TO_BE ((uint32_t) values[v]);
      memcpy (buf, seed->data, seed->len);
      memcpy (buf + u32_at[f], &be, 4);
      run_case (buf, seed->len);
    }
    if (valgrind_mode () && v % 3)
      continue;
    for (size_t f = 0; f < G_N_ELEMENTS (u64_at); f++) {
      uint64_t be = GUINT64_TO_BE (values[v]);
      memcpy (buf, seed->data, seed->len);
      memcpy (buf + u64_at[f], &be, 8);
      run_case (buf, seed->len);
    }
  }
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  dir = sm_test_tmpdir ();
  target = g_build_filename (dir, "fuzz.qcow2", NULL);
  make_seeds ();

  for (size_t i = 0; i < G_N_ELEMENTS (seeds); i++) {
    g_autofree char *t = g_strdup_printf ("/fuzz-qcow2/truncate/%s",
                                          seeds[i].name);
    g_autofree char *f = g_strdup_printf ("/fuzz-qcow2/flip/%s",
                                          seeds[i].name);
    g_autofree char *e = g_strdup_printf ("/fuzz-qcow2/extremes/%s",
                                          seeds[i].name);
    g_test_add_data_func (t, &seeds[i], test_truncate);
    g_test_add_data_func (f, &seeds[i], test_flip);
    g_test_add_data_func (e, &seeds[i], test_extremes);
  }
  rc = g_test_run ();
  /* So that a change making every case fail early shows in the log. */
  g_test_message ("%u cases; probe and chain results: %u ok, %u image "
                  "errors, %u not found, %u unsafe", cases,
                  outcomes[SM_ERROR_LAST], outcomes[SM_ERROR_IMAGE],
                  outcomes[SM_ERROR_NOT_FOUND], outcomes[SM_ERROR_UNSAFE]);
  for (size_t i = 0; i < G_N_ELEMENTS (seeds); i++)
    g_free (seeds[i].path);
  g_free (target);
  g_free (dir);
  return rc;
}
