/* libsnapmig — native image inspection: qcow2 headers, raw files, block
 * devices (libblkid), and backing chains walked with formats stated.
 *
 * Nothing here opens an image for writing or forks qemu-img.  A raw image is
 * never probed for a qcow2 header when its format is stated as raw: that is
 * how a guest-written header would make QEMU read host files.
 */
#ifndef SM_IMAGE_H
#define SM_IMAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "error.h"

typedef enum {
  SM_IMAGE_FORMAT_RAW,
  SM_IMAGE_FORMAT_QCOW2,
  SM_IMAGE_FORMAT_LAST
} SmImageFormat;

/* "raw", "qcow2"; NULL for an out-of-range value. */
const char *sm_image_format_to_string (SmImageFormat format);
/* Returns -1 for a name that is not a format snapmig handles. */
int sm_image_format_from_string (const char *name);

/* qcow2 incompatible feature bits (QEMU docs/interop/qcow2.txt). */
#define SM_QCOW2_INCOMPAT_DIRTY         (1ULL << 0)
#define SM_QCOW2_INCOMPAT_CORRUPT       (1ULL << 1)
#define SM_QCOW2_INCOMPAT_DATA_FILE     (1ULL << 2)
#define SM_QCOW2_INCOMPAT_COMPRESSION   (1ULL << 3)
#define SM_QCOW2_INCOMPAT_EXTL2         (1ULL << 4)
#define SM_QCOW2_INCOMPAT_KNOWN         0x1fULL

typedef struct {
  char *path;                  /* as given (not canonicalised) */
  SmImageFormat format;
  bool is_block_device;
  uint64_t virtual_size;       /* guest-visible bytes */
  uint64_t file_size;          /* st_size, or the device size */
  uint64_t allocated_bytes;    /* st_blocks * 512 (device: its size) */

  /* qcow2 only (zero / NULL for raw). */
  uint32_t qcow2_version;      /* 2 or 3 */
  uint32_t cluster_bits;
  uint64_t cluster_size;
  char *backing_file;          /* as written in the header, or NULL */
  char *backing_format;        /* backing format header extension, or NULL
                                  when the format is not stated */
  uint64_t incompatible_features;
  uint64_t compatible_features;
  uint64_t autoclear_features;
  bool corrupt;                /* incompatible bit 1 */
  bool unknown_incompatible;   /* bits outside SM_QCOW2_INCOMPAT_KNOWN */
  char *data_file;             /* external data file extension, or NULL */
} SmImageInfo;

void sm_image_info_free (SmImageInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmImageInfo, sm_image_info_free)

/* Reads PATH as an image of the stated FORMAT (opened O_RDONLY).  For qcow2
 * the header and its extensions are checked: magic, version, sizes and
 * offsets within the file, backing name length; any violation is
 * SM_ERROR_IMAGE naming the file and the field.  Caller frees.
 */
SmImageInfo *sm_image_probe (const char *path, SmImageFormat format,
                             GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* True if the first bytes of PATH are the qcow2 magic.  For inspection only
 * (validate reports a file that claims to be qcow2); never used to decide how
 * QEMU opens an image.
 */
bool sm_image_has_qcow2_magic (const char *path, GError **error);

/* Resolves a backing name as QEMU does: relative to the directory of the
 * image that names it.  Returns a new string; no file system access.
 */
char *sm_image_resolve_backing (const char *image_path, const char *backing_name)
  G_GNUC_WARN_UNUSED_RESULT;

/* A backing chain, top (active) first. */
typedef struct {
  GPtrArray *layers;           /* SmImageInfo *, owned; index 0 = top */
} SmImageChain;

void sm_image_chain_free (SmImageChain *chain);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmImageChain, sm_image_chain_free)

typedef enum {
  /* Accept a qcow2 layer whose backing format is not stated by reading the
   * backing file's magic (qcow2 if it has the magic, else raw).  Without
   * this flag an unstated format is SM_ERROR_UNSAFE. */
  SM_CHAIN_ALLOW_UNSTATED_FORMAT = 1 << 0,
} SmChainFlags;

/* Walks the chain from TOP (of format TOP_FORMAT) through backing files.
 * With CONFINE_DIR non-NULL, every layer's real path (symlinks resolved) must
 * be inside CONFINE_DIR or the walk stops with SM_ERROR_UNSAFE naming the
 * image and its backing name, before the escaping file is opened.  Loops and
 * chains deeper than 256 layers are SM_ERROR_IMAGE.  Caller frees.
 */
SmImageChain *sm_image_chain_open (const char *top, SmImageFormat top_format,
                                   const char *confine_dir, unsigned flags,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Size in bytes of a block device or regular file (fstat / blkid). */
bool sm_image_file_size (const char *path, uint64_t *size, GError **error);

/* Looks for data on PATH that a target must not silently overwrite: a
 * filesystem, partition table, LVM or RAID signature (libblkid), or an image
 * header.  Returns true and sets *what (caller frees; NULL when nothing found)
 * or false with error.
 */
bool sm_image_find_signature (const char *path, char **what, GError **error);

#endif /* SM_IMAGE_H */
