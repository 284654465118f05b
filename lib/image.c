/* libsnapmig — native image inspection: qcow2 headers, raw files, block
 * devices and backing chains walked with formats stated.
 *
 * The qcow2 layout is QEMU's docs/interop/qcow2.txt; the checks mirror the
 * ones QEMU's qcow2_do_open() makes, so an image this module accepts is one
 * QEMU opens, and one it refuses is reported before QEMU is involved.
 */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include <blkid.h>

#define DOMAIN "image"

#define QCOW2_MAGIC "QFI\xfb"
#define QCOW2_V2_HEADER_LENGTH 72
#define QCOW2_V3_HEADER_LENGTH 104
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
/* Extended L2 entries split a cluster into 32 subclusters of at least 512
 * bytes, so QEMU needs 16 KiB clusters for them. */
#define QCOW2_EXTL2_MIN_CLUSTER_BITS 14
/* QEMU's QCOW_MAX_L1_SIZE: the active L1 table may not exceed 32 MiB.  This
 * is the bound on the virtual size: with 64 KiB clusters 2 PiB, with 512-byte
 * clusters 128 GiB, never more than 2^61 bytes. */
#define QCOW2_MAX_L1_ENTRIES ((32u << 20) / 8)
/* QEMU's QCOW_MAX_REFTABLE_SIZE. */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
/* QEMU's QCOW_MAX_SNAPSHOTS and sizeof (QCowSnapshotHeader). */
#define QCOW2_MAX_SNAPSHOTS 65536u
#define QCOW2_SNAPSHOT_HEADER_SIZE 40
/* QEMU reads at most 1023 bytes of backing file name. */
#define QCOW2_MAX_BACKING_NAME 1023
/* QEMU keeps the backing format in a char[16]. */
#define QCOW2_MAX_BACKING_FORMAT 15
#define QCOW2_MAX_BITMAPS 65535u
#define QCOW2_AUTOCLEAR_BITMAPS (1ULL << 0)

#define QCOW2_EXT_END            0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE  0x6803f857u
#define QCOW2_EXT_BITMAPS        0x23852875u
#define QCOW2_EXT_CRYPTO         0x0537be77u
#define QCOW2_EXT_DATA_FILE      0x44415441u

#define QCOW2_CRYPT_LUKS 2
#define QCOW2_COMPRESSION_ZSTD 1

/* One read covers the header, extensions and backing name of every image
 * qemu-img writes; a larger header costs a second read of the first
 * cluster (at most 2 MiB). */
#define HEADER_READ 4096

static const char *const format_names[SM_IMAGE_FORMAT_LAST] = {
  [SM_IMAGE_FORMAT_RAW] = "raw",
  [SM_IMAGE_FORMAT_QCOW2] = "qcow2",
};

const char *
sm_image_format_to_string (SmImageFormat format)
{
  if ((unsigned) format >= SM_IMAGE_FORMAT_LAST)
    return NULL;
  return format_names[format];
}

int
sm_image_format_from_string (const char *name)
{
  if (!name)
    return -1;
  for (int i = 0; i < SM_IMAGE_FORMAT_LAST; i++)
    if (strcmp (name, format_names[i]) == 0)
      return i;
  return -1;
}

void
sm_image_info_free (SmImageInfo *info)
{
  if (!info)
    return;
  g_free (info->path);
  g_free (info->backing_file);
  g_free (info->backing_format);
  g_free (info->data_file);
  g_free (info);
}

void
sm_image_chain_free (SmImageChain *chain)
{
  if (!chain)
    return;
  if (chain->layers)
    g_ptr_array_unref (chain->layers);
  g_free (chain);
}

static void
close_fdp (int *fd)
{
  if (*fd >= 0)
    close (*fd);
}
#define SM_AUTO_FD __attribute__ ((cleanup (close_fdp)))

G_DEFINE_AUTO_CLEANUP_FREE_FUNC (blkid_probe, blkid_free_probe, NULL)

static inline uint32_t
be32_at (const uint8_t *p)
{
  uint32_t v;

  memcpy (&v, p, sizeof v);
  return GUINT32_FROM_BE (v);
}

static inline uint64_t
be64_at (const uint8_t *p)
{
  uint64_t v;

  memcpy (&v, p, sizeof v);
  return GUINT64_FROM_BE (v);
}

/* Opens PATH for inspection.  O_NONBLOCK so that a FIFO or a device that
 * would wait never blocks us; it changes nothing for files and disks. */
static int
open_image (const char *path, const char *display, GError **error)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

  if (fd < 0) {
    int err = errno;
    g_set_error (error, SM_ERROR,
                 err == ENOENT || err == ENOTDIR ? SM_ERROR_NOT_FOUND
                                                 : SM_ERROR_IO,
                 "%s: %s", display, g_strerror (err));
  }
  return fd;
}

/* Size of the open file FD (a regular file or a block device). */
static bool
fd_size (int fd, const char *path, const struct stat *st, uint64_t *size,
         GError **error)
{
  if (S_ISREG (st->st_mode)) {
    *size = (uint64_t) st->st_size;
    return true;
  }
  if (S_ISBLK (st->st_mode)) {
    uint64_t bytes = 0;

    if (ioctl (fd, BLKGETSIZE64, &bytes) < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO,
                   "%s: cannot read the block device size: %s", path,
                   g_strerror (errno));
      return false;
    }
    *size = bytes;
    return true;
  }
  g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
               "%s: not a regular file or block device", path);
  return false;
}

/* Reads exactly LEN bytes at OFFSET; a short read (the file shrank under
 * us) is an error. */
static bool
pread_full (int fd, const char *path, void *buf, size_t len, uint64_t offset,
            GError **error)
{
  size_t done = 0;

  while (done < len) {
    ssize_t n = pread (fd, (uint8_t *) buf + done, len - done,
                       (off_t) (offset + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: read failed: %s", path,
                   g_strerror (errno));
      return false;
    }
    if (n == 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                   "%s: file ended at %" G_GUINT64_FORMAT
                   " bytes while reading its header", path,
                   (uint64_t) (offset + done));
      return false;
    }
    done += (size_t) n;
  }
  return true;
}

/* The bytes [0, have) of the file, read on demand: the first HEADER_READ
 * bytes up front, the rest of the first cluster only if a header needs it. */
typedef struct {
  int fd;
  const char *path;
  uint64_t file_size;
  uint64_t cluster_size;       /* 0 until the header gave it */
  const uint8_t *data;
  uint64_t have;
  uint8_t *big;
  uint8_t small[HEADER_READ];
} HeaderReader;

static void
header_reader_clear (HeaderReader *r)
{
  g_free (r->big);
}

/* Makes [0, END) available.  WHAT names the field for the error. */
static bool
header_need (HeaderReader *r, uint64_t end, const char *what, GError **error)
{
  uint64_t want;

  if (end <= r->have)
    return true;
  if (end > r->file_size) {
    g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                 "%s: qcow2 header: %s ends at byte %" G_GUINT64_FORMAT
                 ", past the end of the file (%" G_GUINT64_FORMAT " bytes)",
                 r->path, what, end, r->file_size);
    return false;
  }
  /* Callers bound END by the first cluster; this keeps a slip from
   * becoming a large read. */
  if (r->cluster_size == 0 || end > r->cluster_size) {
    g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                 "%s: qcow2 header: %s runs past the first cluster", r->path,
                 what);
    return false;
  }
  want = MIN (r->file_size, r->cluster_size);
  g_free (r->big);
  r->big = g_malloc (want);
  if (!pread_full (r->fd, r->path, r->big, want, 0, error))
    return false;
  r->data = r->big;
  r->have = want;
  return true;
}

#define QCOW2_ERROR(error, r, ...) \
  qcow2_error ((error), (r)->path, __VA_ARGS__)

static void qcow2_error (GError **error, const char *path, const char *fmt,
                         ...) G_GNUC_PRINTF (3, 4);

static void
qcow2_error (GError **error, const char *path, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, SM_ERROR, SM_ERROR_IMAGE, "%s: qcow2 header: %s", path,
               msg);
}

/* A table of ENTRIES * ENTRY_LEN bytes at OFFSET: cluster aligned and
 * addressable with a signed 64-bit offset, as QEMU's qcow2_validate_table
 * requires. */
static bool
qcow2_check_table (HeaderReader *r, const char *field, uint64_t offset,
                   uint64_t entries, uint64_t entry_len, GError **error)
{
  /* Callers bound ENTRIES first: BYTES stays below 64 MiB. */
  uint64_t bytes = entries * entry_len;

  if (offset & (r->cluster_size - 1)) {
    QCOW2_ERROR (error, r, "%s %" G_GUINT64_FORMAT
                 " is not aligned to the cluster size %" G_GUINT64_FORMAT,
                 field, offset, r->cluster_size);
    return false;
  }
  if (offset > (uint64_t) INT64_MAX - bytes) {
    QCOW2_ERROR (error, r, "%s %" G_GUINT64_FORMAT " is out of range",
                 field, offset);
    return false;
  }
  return true;
}

/* Copies a name of LEN bytes at OFF, refusing an embedded NUL: QEMU would
 * cut the name there, and what we check must be what QEMU opens. */
static char *
qcow2_name (HeaderReader *r, uint64_t off, uint32_t len, const char *field,
            GError **error)
{
  const uint8_t *p = r->data + off;

  if (memchr (p, '\0', len)) {
    QCOW2_ERROR (error, r, "%s contains a NUL byte", field);
    return NULL;
  }
  return g_strndup ((const char *) p, len);
}

/* Header extensions between START and END (the backing file name or the
 * end of the first cluster).  The loop advances by at least 8 bytes in a
 * window of at most 2 MiB, so it is bounded. */
static bool
qcow2_read_extensions (HeaderReader *r, SmImageInfo *info, uint64_t start,
                       uint64_t end, const char *end_what, GError **error)
{
  uint64_t off = start;

  while (off < end) {
    uint32_t type, len;
    const uint8_t *data;

    if (end - off < 8) {
      QCOW2_ERROR (error, r, "header extension at offset %" G_GUINT64_FORMAT
                   " runs into %s", off, end_what);
      return false;
    }
    if (!header_need (r, off + 8, "header extension", error))
      return false;
    type = be32_at (r->data + off);
    len = be32_at (r->data + off + 4);
    off += 8;
    if (type == QCOW2_EXT_END)
      return true;
    if (len > end - off) {
      QCOW2_ERROR (error, r, "header extension 0x%08x at offset %"
                   G_GUINT64_FORMAT ": length %u runs into %s",
                   type, off - 8, len, end_what);
      return false;
    }
    if (!header_need (r, off + len, "header extension", error))
      return false;
    data = r->data + off;

    switch (type) {
    case QCOW2_EXT_BACKING_FORMAT:
      if (info->backing_format) {
        QCOW2_ERROR (error, r, "backing format extension appears twice");
        return false;
      }
      if (len == 0 || len > QCOW2_MAX_BACKING_FORMAT) {
        QCOW2_ERROR (error, r, "backing format extension: length %u is not "
                     "1..%d", len, QCOW2_MAX_BACKING_FORMAT);
        return false;
      }
      info->backing_format = qcow2_name (r, off, len, "backing format", error);
      if (!info->backing_format)
        return false;
      break;

    case QCOW2_EXT_DATA_FILE:
      if (info->data_file) {
        QCOW2_ERROR (error, r, "external data file extension appears twice");
        return false;
      }
      if (len == 0 || len >= PATH_MAX) {
        QCOW2_ERROR (error, r, "external data file extension: length %u is "
                     "not 1..%d", len, PATH_MAX - 1);
        return false;
      }
      info->data_file = qcow2_name (r, off, len, "external data file name",
                                    error);
      if (!info->data_file)
        return false;
      break;

    case QCOW2_EXT_BITMAPS: {
      uint32_t nb;
      uint64_t dir_offset;

      if (len != 24) {
        QCOW2_ERROR (error, r, "bitmaps extension: length %u, expected 24",
                     len);
        return false;
      }
      /* Without the autoclear bit a program that knows nothing of bitmaps
       * wrote the image: QEMU ignores the extension, and so do we. */
      if (!(info->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
        break;
      nb = be32_at (data);
      dir_offset = be64_at (data + 16);
      if (nb == 0 || nb > QCOW2_MAX_BITMAPS) {
        QCOW2_ERROR (error, r, "bitmaps extension: %u bitmaps, not 1..%u",
                     nb, QCOW2_MAX_BITMAPS);
        return false;
      }
      if (dir_offset & (r->cluster_size - 1)) {
        QCOW2_ERROR (error, r, "bitmaps extension: directory offset %"
                     G_GUINT64_FORMAT " is not cluster aligned", dir_offset);
        return false;
      }
      info->nb_bitmaps = nb;
      break;
    }

    case QCOW2_EXT_CRYPTO:
      if (info->crypt_method != QCOW2_CRYPT_LUKS) {
        QCOW2_ERROR (error, r, "full disk encryption extension without LUKS "
                     "encryption (crypt_method %u)", info->crypt_method);
        return false;
      }
      if (len != 16) {
        QCOW2_ERROR (error, r, "full disk encryption extension: length %u, "
                     "expected 16", len);
        return false;
      }
      break;

    case QCOW2_EXT_FEATURE_TABLE:
    default:
      /* Names for feature bits, or an extension this QEMU-compatible reader
       * need not understand: QEMU skips those too. */
      break;
    }
    off += ((uint64_t) len + 7) & ~(uint64_t) 7;
  }
  return true;
}

static bool
qcow2_parse (HeaderReader *r, SmImageInfo *info, GError **error)
{
  const uint8_t *h = r->data;
  uint64_t backing_offset, needed_l1, ext_end;
  uint32_t backing_len, l2_bits, shift;
  bool extl2;

  if (r->have < 4) {
    QCOW2_ERROR (error, r, "file is %" G_GUINT64_FORMAT " bytes, too short "
                 "for the magic", r->file_size);
    return false;
  }
  if (memcmp (h, QCOW2_MAGIC, 4) != 0) {
    QCOW2_ERROR (error, r, "magic: not a qcow2 image");
    return false;
  }
  if (r->have < QCOW2_V2_HEADER_LENGTH) {
    QCOW2_ERROR (error, r, "truncated: the file is %" G_GUINT64_FORMAT
                 " bytes, the header needs %d", r->file_size,
                 QCOW2_V2_HEADER_LENGTH);
    return false;
  }
  info->qcow2_version = be32_at (h + 4);
  if (info->qcow2_version != 2 && info->qcow2_version != 3) {
    QCOW2_ERROR (error, r, "version %u is not supported (2 or 3)",
                 info->qcow2_version);
    return false;
  }
  if (info->qcow2_version == 3 && r->have < QCOW2_V3_HEADER_LENGTH) {
    QCOW2_ERROR (error, r, "truncated: the file is %" G_GUINT64_FORMAT
                 " bytes, a version 3 header needs %d", r->file_size,
                 QCOW2_V3_HEADER_LENGTH);
    return false;
  }

  info->cluster_bits = be32_at (h + 20);
  if (info->cluster_bits < QCOW2_MIN_CLUSTER_BITS
      || info->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
    QCOW2_ERROR (error, r, "cluster_bits %u is not %d..%d",
                 info->cluster_bits, QCOW2_MIN_CLUSTER_BITS,
                 QCOW2_MAX_CLUSTER_BITS);
    return false;
  }
  info->cluster_size = 1ULL << info->cluster_bits;
  r->cluster_size = info->cluster_size;

  backing_offset = be64_at (h + 8);
  backing_len = be32_at (h + 16);
  info->virtual_size = be64_at (h + 24);
  info->crypt_method = be32_at (h + 32);
  info->l1_size = be32_at (h + 36);
  info->l1_table_offset = be64_at (h + 40);
  info->refcount_table_offset = be64_at (h + 48);
  info->refcount_table_clusters = be32_at (h + 56);
  info->nb_snapshots = be32_at (h + 60);
  info->snapshots_offset = be64_at (h + 64);

  if (info->qcow2_version == 3) {
    info->incompatible_features = be64_at (h + 72);
    info->compatible_features = be64_at (h + 80);
    info->autoclear_features = be64_at (h + 88);
    info->refcount_order = be32_at (h + 96);
    info->header_length = be32_at (h + 100);
    if (info->header_length < QCOW2_V3_HEADER_LENGTH) {
      QCOW2_ERROR (error, r, "header_length %u is less than %d",
                   info->header_length, QCOW2_V3_HEADER_LENGTH);
      return false;
    }
    if (info->header_length % 8) {
      QCOW2_ERROR (error, r, "header_length %u is not a multiple of 8",
                   info->header_length);
      return false;
    }
    if (info->header_length >= info->cluster_size) {
      QCOW2_ERROR (error, r, "header_length %u does not fit in the first "
                   "cluster (%" G_GUINT64_FORMAT " bytes)",
                   info->header_length, info->cluster_size);
      return false;
    }
    if (info->refcount_order > 6) {
      QCOW2_ERROR (error, r, "refcount_order %u is more than 6 (64-bit "
                   "refcounts)", info->refcount_order);
      return false;
    }
    if (!header_need (r, info->header_length, "header_length", error))
      return false;
    h = r->data;
    /* The compression type byte exists only in headers longer than 104. */
    if (info->header_length > QCOW2_V3_HEADER_LENGTH)
      info->compression_type = h[104];
  } else {
    info->header_length = QCOW2_V2_HEADER_LENGTH;
    info->refcount_order = 4;
  }

  info->corrupt = (info->incompatible_features & SM_QCOW2_INCOMPAT_CORRUPT)
    != 0;
  info->unknown_incompatible =
    (info->incompatible_features & ~SM_QCOW2_INCOMPAT_KNOWN) != 0;

  if (info->crypt_method > QCOW2_CRYPT_LUKS) {
    QCOW2_ERROR (error, r, "crypt_method %u is not 0, 1 or 2",
                 info->crypt_method);
    return false;
  }
  if (info->compression_type > QCOW2_COMPRESSION_ZSTD) {
    QCOW2_ERROR (error, r, "compression type %u is not zlib (0) or zstd (1)",
                 info->compression_type);
    return false;
  }
  if (info->compression_type != 0
      && !(info->incompatible_features & SM_QCOW2_INCOMPAT_COMPRESSION)) {
    QCOW2_ERROR (error, r, "compression type %u without the compression "
                 "type incompatible feature bit", info->compression_type);
    return false;
  }

  extl2 = (info->incompatible_features & SM_QCOW2_INCOMPAT_EXTL2) != 0;
  if (extl2 && info->cluster_bits < QCOW2_EXTL2_MIN_CLUSTER_BITS) {
    QCOW2_ERROR (error, r, "extended L2 entries need clusters of at least "
                 "%d bytes, cluster_bits is %u",
                 1 << QCOW2_EXTL2_MIN_CLUSTER_BITS, info->cluster_bits);
    return false;
  }

  /* Virtual size: bounded by what a 32 MiB L1 table can address. */
  l2_bits = info->cluster_bits - (extl2 ? 4 : 3);
  shift = info->cluster_bits + l2_bits;
  needed_l1 = (info->virtual_size >> shift)
    + ((info->virtual_size & ((1ULL << shift) - 1)) != 0);
  if (needed_l1 > QCOW2_MAX_L1_ENTRIES) {
    QCOW2_ERROR (error, r, "size %" G_GUINT64_FORMAT " is more than %"
                 G_GUINT64_FORMAT " bytes, the most an image with %"
                 G_GUINT64_FORMAT "-byte clusters can address",
                 info->virtual_size,
                 (uint64_t) QCOW2_MAX_L1_ENTRIES << shift, info->cluster_size);
    return false;
  }
  if (info->l1_size > QCOW2_MAX_L1_ENTRIES) {
    QCOW2_ERROR (error, r, "l1_size %u is more than %u entries (32 MiB)",
                 info->l1_size, QCOW2_MAX_L1_ENTRIES);
    return false;
  }
  if (info->l1_size < needed_l1) {
    QCOW2_ERROR (error, r, "l1_size %u is too small for size %"
                 G_GUINT64_FORMAT, info->l1_size, info->virtual_size);
    return false;
  }
  if (!qcow2_check_table (r, "l1_table_offset", info->l1_table_offset,
                          info->l1_size, 8, error))
    return false;
  if (info->refcount_table_clusters == 0) {
    QCOW2_ERROR (error, r, "refcount_table_clusters is 0: no refcount table");
    return false;
  }
  if (info->refcount_table_clusters
      > QCOW2_MAX_REFTABLE_BYTES >> info->cluster_bits) {
    QCOW2_ERROR (error, r, "refcount_table_clusters %u is more than 8 MiB",
                 info->refcount_table_clusters);
    return false;
  }
  if (!qcow2_check_table (r, "refcount_table_offset",
                          info->refcount_table_offset,
                          info->refcount_table_clusters, info->cluster_size,
                          error))
    return false;
  if (info->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
    QCOW2_ERROR (error, r, "nb_snapshots %u is more than %u",
                 info->nb_snapshots, QCOW2_MAX_SNAPSHOTS);
    return false;
  }
  if (!qcow2_check_table (r, "snapshots_offset", info->snapshots_offset,
                          info->nb_snapshots, QCOW2_SNAPSHOT_HEADER_SIZE,
                          error))
    return false;

  /* Backing file name: QEMU reads it only when the offset is set, and an
   * empty name means no backing file. */
  if (backing_offset != 0) {
    if (backing_offset < info->header_length
        || backing_offset >= info->cluster_size) {
      QCOW2_ERROR (error, r, "backing_file_offset %" G_GUINT64_FORMAT
                   " is not between the header (%u bytes) and the end of the "
                   "first cluster (%" G_GUINT64_FORMAT ")", backing_offset,
                   info->header_length, info->cluster_size);
      return false;
    }
    if (backing_len > QCOW2_MAX_BACKING_NAME) {
      QCOW2_ERROR (error, r, "backing_file_size %u is more than %d",
                   backing_len, QCOW2_MAX_BACKING_NAME);
      return false;
    }
    if (backing_offset + backing_len > info->cluster_size) {
      QCOW2_ERROR (error, r, "backing file name (offset %" G_GUINT64_FORMAT
                   ", %u bytes) runs past the first cluster", backing_offset,
                   backing_len);
      return false;
    }
    if (backing_len > 0) {
      if (!header_need (r, backing_offset + backing_len, "backing file name",
                        error))
        return false;
      info->backing_file = qcow2_name (r, backing_offset, backing_len,
                                       "backing file name", error);
      if (!info->backing_file)
        return false;
    }
  }

  /* As in QEMU, the extensions end where the backing name starts. */
  ext_end = backing_offset != 0 ? backing_offset : info->cluster_size;
  if (!qcow2_read_extensions (r, info, info->header_length, ext_end,
                              backing_offset != 0
                              ? "the backing file name"
                              : "the end of the first cluster", error))
    return false;

  if ((info->incompatible_features & SM_QCOW2_INCOMPAT_DATA_FILE)
      && !info->data_file) {
    QCOW2_ERROR (error, r, "the external data file feature is set but no "
                 "extension names the data file");
    return false;
  }
  return true;
}

/* Probes the already opened FD; DISPLAY names the image in messages. */
static SmImageInfo *
probe_fd (int fd, const char *display, SmImageFormat format,
          struct stat *st, GError **error)
{
  g_autoptr(SmImageInfo) info = g_new0 (SmImageInfo, 1);

  if (fstat (fd, st) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: %s", display,
                 g_strerror (errno));
    return NULL;
  }
  if (!fd_size (fd, display, st, &info->file_size, error))
    return NULL;
  info->path = g_strdup (display);
  info->format = format;
  info->is_block_device = S_ISBLK (st->st_mode);
  info->allocated_bytes = info->is_block_device
    ? info->file_size : (uint64_t) st->st_blocks * 512;

  switch (format) {
  case SM_IMAGE_FORMAT_RAW:
    /* Stated raw: the content is guest data and is never looked at. */
    info->virtual_size = info->file_size;
    break;
  case SM_IMAGE_FORMAT_QCOW2: {
    __attribute__ ((cleanup (header_reader_clear))) HeaderReader r = {
      .fd = fd, .path = display, .file_size = info->file_size,
    };
    size_t first = (size_t) MIN (info->file_size, (uint64_t) HEADER_READ);

    if (!pread_full (fd, display, r.small, first, 0, error))
      return NULL;
    r.data = r.small;
    r.have = first;
    if (!qcow2_parse (&r, info, error))
      return NULL;
    break;
  }
  case SM_IMAGE_FORMAT_LAST:
  default:
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: unknown image format %d", display, (int) format);
    return NULL;
  }
  return g_steal_pointer (&info);
}

static bool path_is_inside (const char *real, const char *root);

/* The file FD refers to, as the kernel resolved it, must be inside ROOT: a
 * directory swapped for a symlink between realpath() and open() cannot lead
 * the walk out of the storage domain.  The one file outside that confine()
 * accepts, the block device a link in the domain leads to, was opened by
 * its real path OPEN_PATH: FD must be that very device node.  Without /proc
 * the realpath() check made before the open stands alone. */
static bool
check_opened_inside (int fd, const char *open_path, const char *display,
                     const char *root, GError **error)
{
  char link[64];
  char target[PATH_MAX + 1];
  struct stat st;
  ssize_t n;

  g_snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink (link, target, sizeof target - 1);
  if (n < 0 || (size_t) n >= sizeof target - 1)
    return true;
  target[n] = '\0';
  if (strcmp (target, open_path) == 0 && fstat (fd, &st) == 0
      && S_ISBLK (st.st_mode))
    return true;
  if (!path_is_inside (target, root)) {
    g_set_error (error, SM_ERROR, SM_ERROR_UNSAFE,
                 "%s: opened as %s, outside the storage domain %s (was it "
                 "replaced while being checked?)", display, target, root);
    return false;
  }
  return true;
}

/* Opens OPEN_PATH, reports it as DISPLAY.  With ROOT, the opened file must
 * be inside it before anything is read. */
static SmImageInfo *
probe_path (const char *open_path, const char *display, SmImageFormat format,
            const char *root, struct stat *st, GError **error)
{
  SM_AUTO_FD int fd = -1;
  SmImageInfo *info;

  if ((unsigned) format >= SM_IMAGE_FORMAT_LAST) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: unknown image format %d", display, (int) format);
    return NULL;
  }
  fd = open_image (open_path, display, error);
  if (fd < 0)
    return NULL;
  if (root && !check_opened_inside (fd, open_path, display, root, error))
    return NULL;
  info = probe_fd (fd, display, format, st, error);
  if (info)
    sm_debug (DOMAIN, "%s: %s, virtual size %" G_GUINT64_FORMAT
              "%s%s%s%s", display, sm_image_format_to_string (format),
              info->virtual_size,
              info->backing_file ? ", backing file " : "",
              info->backing_file ? info->backing_file : "",
              info->backing_format ? " format " : "",
              info->backing_format ? info->backing_format : "");
  return info;
}

SmImageInfo *
sm_image_probe (const char *path, SmImageFormat format, GError **error)
{
  struct stat st;

  return probe_path (path, path, format, NULL, &st, error);
}

bool
sm_image_has_qcow2_magic (const char *path, GError **error)
{
  SM_AUTO_FD int fd = open_image (path, path, error);
  uint8_t magic[4];
  ssize_t n;

  if (fd < 0)
    return false;
  do
    n = pread (fd, magic, sizeof magic, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: read failed: %s", path,
                 g_strerror (errno));
    return false;
  }
  return n == (ssize_t) sizeof magic && memcmp (magic, QCOW2_MAGIC, 4) == 0;
}

bool
sm_image_backing_is_local (const char *backing_name)
{
  size_t n;

  if (g_str_has_prefix (backing_name, "json:"))
    return false;
  /* QEMU's path_has_protocol: a ':' before any '/'. */
  n = strcspn (backing_name, ":/");
  return backing_name[n] != ':';
}

char *
sm_image_resolve_backing (const char *image_path, const char *backing_name)
{
  g_autofree char *dir = NULL;

  if (!sm_image_backing_is_local (backing_name)
      || g_path_is_absolute (backing_name))
    return g_strdup (backing_name);
  /* QEMU's path_combine: the image's name up to its last '/', no
   * normalisation, so "../x" stays as QEMU would open it. */
  dir = g_path_get_dirname (image_path);
  if (strcmp (dir, ".") == 0 && !g_str_has_prefix (image_path, "./"))
    return g_strdup (backing_name);
  return g_build_filename (dir, backing_name, NULL);
}

/* realpath() into a g_free-able string, errno kept on failure. */
static char *
real_path (const char *path)
{
  char *r = realpath (path, NULL);
  char *copy;

  if (!r)
    return NULL;
  copy = g_strdup (r);
  free (r);
  return copy;
}

static bool
path_is_inside (const char *real, const char *root)
{
  size_t n = strlen (root);

  if (strcmp (root, "/") == 0)
    return true;
  return strncmp (real, root, n) == 0 && (real[n] == '\0' || real[n] == '/');
}

/* oVirt's block storage domains keep each layer in a logical volume and
 * link it into the domain (DOMAIN/images/IMG/VOL -> /dev/VG/LV, itself a
 * link to /dev/dm-N): the link is the layer's name in the domain, the
 * device is outside it.  validate counts such a link as an alias of an image
 * in the domain (LINK_ALIAS), and so does the chain walk: true when RESOLVED
 * itself is a symbolic link whose directory's real path is inside ROOT and
 * REAL, where it leads, is a block device.  A link to a regular file or a
 * character device outside stays an escape.  REAL is what gets opened, and
 * check_opened_inside() makes sure the opened file is that device. */
static bool
is_block_device_link (const char *resolved, const char *real,
                      const char *root)
{
  g_autofree char *dir = NULL;
  g_autofree char *real_dir = NULL;
  struct stat st;

  if (lstat (resolved, &st) < 0 || !S_ISLNK (st.st_mode))
    return false;
  if (stat (real, &st) < 0 || !S_ISBLK (st.st_mode))
    return false;
  dir = g_path_get_dirname (resolved);
  real_dir = real_path (dir);
  return real_dir && path_is_inside (real_dir, root);
}

/* Resolves a layer or data file RESOLVED (named NAME by image OWNER, or the
 * top when OWNER is NULL) against the storage domain ROOT.  Only lstat,
 * stat and readlink happen here: the file itself is not opened.  Returns its
 * real path, which for a block device link (is_block_device_link) is the
 * device, outside ROOT: callers open that.  Backing names stay resolved
 * against the link's name, not the device's, as QEMU resolves them. */
static char *
confine (const char *owner, const char *what, const char *name,
         const char *resolved, const char *root, GError **error)
{
  g_autofree char *real = real_path (resolved);

  if (!real) {
    int err = errno;
    int code = err == ENOENT || err == ENOTDIR ? SM_ERROR_NOT_FOUND
                                               : SM_ERROR_IO;
    if (!owner)
      g_set_error (error, SM_ERROR, code, "%s: %s", resolved,
                   g_strerror (err));
    else if (code == SM_ERROR_NOT_FOUND)
      g_set_error (error, SM_ERROR, code,
                   "%s: %s '%s' does not exist (looked for %s)", owner, what,
                   name, resolved);
    else
      g_set_error (error, SM_ERROR, code, "%s: %s '%s' (%s): %s", owner,
                   what, name, resolved, g_strerror (err));
    return NULL;
  }
  if (!path_is_inside (real, root)
      && !is_block_device_link (resolved, real, root)) {
    g_autofree char *via = strcmp (real, name) != 0
      ? g_strdup_printf (" (resolves to %s)", real) : g_strdup ("");

    if (!owner)
      g_set_error (error, SM_ERROR, SM_ERROR_UNSAFE,
                   "%s is outside the storage domain %s%s", resolved, root,
                   via);
    else
      g_set_error (error, SM_ERROR, SM_ERROR_UNSAFE,
                   "%s: %s '%s' is outside the storage domain %s%s", owner,
                   what, name, root, via);
    return NULL;
  }
  return g_steal_pointer (&real);
}

/* The external data file of INFO must be a local file and, with ROOT, an
 * absolute name inside the storage domain.  QEMU 7.2 opens a relative data
 * file name relative to its own working directory, not to the image's
 * (checked with qemu-io), so where a relative name leads depends on the
 * process that opens the image: refused when confined. */
static bool
check_data_file (const SmImageInfo *info, const char *root, GError **error)
{
  g_autofree char *real = NULL;

  if (!sm_image_backing_is_local (info->data_file)) {
    g_set_error (error, SM_ERROR, SM_ERROR_UNSAFE,
                 "%s: external data file '%s' is not a local file",
                 info->path, info->data_file);
    return false;
  }
  if (!root)
    return true;
  if (!g_path_is_absolute (info->data_file)) {
    g_set_error (error, SM_ERROR, SM_ERROR_UNSAFE,
                 "%s: external data file '%s' is a relative name, which QEMU "
                 "resolves against its working directory, not the image's",
                 info->path, info->data_file);
    return false;
  }
  real = confine (info->path, "external data file", info->data_file,
                  info->data_file, root, error);
  return real != NULL;
}

typedef struct {
  dev_t dev;
  ino_t ino;
} FileId;

SmImageChain *
sm_image_chain_open (const char *top, SmImageFormat top_format,
                     const char *confine_dir, unsigned flags, GError **error)
{
  g_autoptr(SmImageChain) chain = g_new0 (SmImageChain, 1);
  g_autoptr(GArray) seen = g_array_new (FALSE, FALSE, sizeof (FileId));
  g_autofree char *root = NULL;
  g_autofree char *path = g_strdup (top);
  g_autofree char *open_path = NULL;    /* real path when confined */
  SmImageFormat format = top_format;
  const SmImageInfo *parent = NULL;

  chain->layers = g_ptr_array_new_with_free_func
    ((GDestroyNotify) sm_image_info_free);

  if (confine_dir) {
    root = real_path (confine_dir);
    if (!root) {
      int err = errno;
      g_set_error (error, SM_ERROR,
                   err == ENOENT ? SM_ERROR_NOT_FOUND : SM_ERROR_IO,
                   "storage domain %s: %s", confine_dir, g_strerror (err));
      return NULL;
    }
    open_path = confine (NULL, NULL, top, top, root, error);
    if (!open_path)
      return NULL;
  }

  for (;;) {
    g_autoptr(GError) err = NULL;
    g_autoptr(SmImageInfo) info = NULL;
    g_autofree char *next = NULL;
    g_autofree char *next_real = NULL;
    const char *name;
    struct stat st;
    int next_format;

    info = probe_path (open_path ? open_path : path, path, format, root, &st,
                       &err);
    if (!info) {
      if (parent && g_error_matches (err, SM_ERROR, SM_ERROR_NOT_FOUND))
        g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                     "%s: backing file '%s' does not exist (looked for %s)",
                     parent->path, parent->backing_file, path);
      else
        g_propagate_error (error, g_steal_pointer (&err));
      return NULL;
    }
    for (guint i = 0; i < seen->len; i++) {
      const FileId *id = &g_array_index (seen, FileId, i);

      if (id->dev == st.st_dev && id->ino == st.st_ino) {
        g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                     "%s: backing file '%s' is %s, already in the chain: the "
                     "backing chain is a loop", parent->path,
                     parent->backing_file,
                     ((SmImageInfo *) chain->layers->pdata[i])->path);
        return NULL;
      }
    }
    g_array_append_val (seen, ((FileId) { st.st_dev, st.st_ino }));
    if (info->data_file && !check_data_file (info, root, error))
      return NULL;

    parent = info;
    g_ptr_array_add (chain->layers, g_steal_pointer (&info));
    if (!parent->backing_file)
      break;

    name = parent->backing_file;
    if (chain->layers->len >= SM_IMAGE_CHAIN_MAX_DEPTH) {
      g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                   "%s: backing chain is deeper than %d layers", top,
                   SM_IMAGE_CHAIN_MAX_DEPTH);
      return NULL;
    }
    if (!sm_image_backing_is_local (name)) {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSAFE,
                   "%s: backing file '%s' is not a local file name: snapmig "
                   "only handles file-based backing chains", parent->path,
                   name);
      return NULL;
    }
    next = sm_image_resolve_backing (parent->path, name);
    if (root) {
      next_real = confine (parent->path, "backing file", name, next, root,
                           error);
      if (!next_real)
        return NULL;
    }

    if (parent->backing_format) {
      next_format = sm_image_format_from_string (parent->backing_format);
      if (next_format < 0) {
        g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                     "%s: backing file '%s' has format '%s', which snapmig "
                     "does not handle (raw, qcow2)", parent->path, name,
                     parent->backing_format);
        return NULL;
      }
    } else if (flags & SM_CHAIN_ALLOW_UNSTATED_FORMAT) {
      /* The caller accepted guessing; confinement was checked above. */
      bool is_qcow2 = sm_image_has_qcow2_magic (next_real ? next_real : next,
                                                &err);

      if (err) {
        if (g_error_matches (err, SM_ERROR, SM_ERROR_NOT_FOUND))
          g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                       "%s: backing file '%s' does not exist (looked for %s)",
                       parent->path, name, next);
        else
          g_propagate_error (error, g_steal_pointer (&err));
        return NULL;
      }
      next_format = is_qcow2 ? SM_IMAGE_FORMAT_QCOW2 : SM_IMAGE_FORMAT_RAW;
    } else {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSAFE,
                   "%s: the format of backing file '%s' is not stated in the "
                   "image (fix with 'qemu-img rebase -u -b NAME -F FORMAT')",
                   parent->path, name);
      return NULL;
    }

    g_free (path);
    path = g_steal_pointer (&next);
    g_free (open_path);
    open_path = g_steal_pointer (&next_real);
    format = (SmImageFormat) next_format;
  }
  return g_steal_pointer (&chain);
}

bool
sm_image_file_size (const char *path, uint64_t *size, GError **error)
{
  SM_AUTO_FD int fd = open_image (path, path, error);
  struct stat st;

  if (fd < 0)
    return false;
  if (fstat (fd, &st) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: %s", path,
                 g_strerror (errno));
    return false;
  }
  return fd_size (fd, path, &st, size, error);
}

/* "ext4 filesystem", "dos partition table", "LVM2_member", ... */
static char *
describe_signature (blkid_probe pr)
{
  const char *type = NULL, *usage = NULL;

  if (blkid_probe_lookup_value (pr, "PTTYPE", &type, NULL) == 0 && type)
    return g_strdup_printf ("%s partition table", type);
  if (blkid_probe_lookup_value (pr, "TYPE", &type, NULL) != 0 || !type)
    return NULL;
  if (blkid_probe_lookup_value (pr, "USAGE", &usage, NULL) == 0 && usage
      && strcmp (usage, "filesystem") == 0)
    return g_strdup_printf ("%s filesystem", type);
  return g_strdup (type);
}

bool
sm_image_find_signature (const char *path, char **what, GError **error)
{
  SM_AUTO_FD int fd = open_image (path, path, error);
  g_auto(blkid_probe) pr = NULL;
  g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func (g_free);
  struct stat st;
  uint64_t size;
  uint8_t magic[4];
  int rc;

  *what = NULL;
  if (fd < 0)
    return false;
  if (fstat (fd, &st) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: %s", path,
                 g_strerror (errno));
    return false;
  }
  if (!fd_size (fd, path, &st, &size, error))
    return false;
  if (size == 0)
    return true;

  if (size >= sizeof magic) {
    if (!pread_full (fd, path, magic, sizeof magic, 0, error))
      return false;
    if (memcmp (magic, QCOW2_MAGIC, 4) == 0)
      g_ptr_array_add (found, g_strdup ("qcow2 image header"));
  }

  pr = blkid_new_probe ();
  if (!pr || blkid_probe_set_device (pr, fd, 0, 0) != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "%s: libblkid cannot probe the file", path);
    return false;
  }
  blkid_probe_enable_superblocks (pr, 1);
  blkid_probe_set_superblocks_flags (pr, BLKID_SUBLKS_TYPE
                                     | BLKID_SUBLKS_USAGE
                                     | BLKID_SUBLKS_MAGIC);
  blkid_probe_enable_partitions (pr, 1);
  blkid_probe_set_partitions_flags (pr, BLKID_PARTS_MAGIC);

  /* blkid_do_probe steps through every signature on the device, the way
   * wipefs lists them, where safeprobe would give up on ambiguity. */
  while ((rc = blkid_do_probe (pr)) == 0) {
    char *desc = describe_signature (pr);

    if (desc)
      g_ptr_array_add (found, desc);
  }
  if (rc < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "%s: libblkid failed to probe the file", path);
    return false;
  }
  if (found->len > 0) {
    g_ptr_array_add (found, NULL);
    *what = g_strjoinv (", ", (char **) found->pdata);
  }
  sm_debug (DOMAIN, "%s: signatures: %s", path, *what ? *what : "none");
  return true;
}
