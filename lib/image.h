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
  char *path;                  /* as given; in a chain, a backing layer's
                                  name resolved by sm_image_resolve_backing
                                  (neither is canonicalised) */
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
  char *data_file;             /* external data file extension, or NULL;
                                  QEMU 7.2 opens a relative name relative to
                                  its working directory */
  uint32_t header_length;      /* 72 for v2 */
  uint32_t refcount_order;     /* refcount width is 1 << refcount_order bits */
  uint32_t crypt_method;       /* 0 none, 1 AES, 2 LUKS */
  uint8_t compression_type;    /* 0 zlib, 1 zstd */
  uint32_t l1_size;            /* entries */
  uint64_t l1_table_offset;
  uint64_t refcount_table_offset;
  uint32_t refcount_table_clusters;
  uint32_t nb_snapshots;
  uint64_t snapshots_offset;
  uint32_t nb_bitmaps;         /* from the bitmaps extension, else 0 */
} SmImageInfo;

/* Frees INFO and its strings; NULL is fine. */
void sm_image_info_free (SmImageInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmImageInfo, sm_image_info_free)

/* Reads PATH as an image of the stated FORMAT (opened O_RDONLY|O_NONBLOCK,
 * so a FIFO never blocks; only regular files and block devices are images).
 * Raw: the content is never read, the virtual size is the file or device
 * size.  qcow2: the header and its extensions are checked as QEMU does:
 * magic, version, cluster size, header length, table offsets, virtual size
 * (bounded by QEMU's 32 MiB L1 table limit), backing name length (<= 1023,
 * no NUL) and place (inside the first cluster and the file), extension
 * lengths; any violation is SM_ERROR_IMAGE "PATH: qcow2 header: FIELD ...".
 * The corrupt bit and unknown incompatible bits do not fail the probe: they
 * are reported in the result for the caller to judge.  A missing file is
 * SM_ERROR_NOT_FOUND, other system call failures SM_ERROR_IO.  Costs open,
 * fstat, one pread (two for headers larger than 4 KiB) and close.  Caller
 * frees.
 */
SmImageInfo *sm_image_probe (const char *path, SmImageFormat format,
                             GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* True if the first bytes of PATH are the qcow2 magic; false for anything
 * else, a short file included, and with error set when PATH cannot be
 * opened or read.  For inspection only (validate reports a file that claims
 * to be qcow2); never used to decide how QEMU opens an image.
 */
bool sm_image_has_qcow2_magic (const char *path, GError **error);

/* Resolves a backing name as QEMU does: an absolute name stays, a relative
 * one is relative to the directory of the image that names it (not the
 * current directory).  A name that is not a local file name ("json:...",
 * "nbd:...", see sm_image_backing_is_local) is returned unchanged.  Returns a
 * new string (caller frees); no file system access.
 */
char *sm_image_resolve_backing (const char *image_path, const char *backing_name)
  G_GNUC_WARN_UNUSED_RESULT;

/* False for backing names QEMU does not read as a plain file name: "json:"
 * pseudo-protocol and any "PROTOCOL:" prefix before the first '/' (QEMU's
 * path_has_protocol rule, so "nbd:host:10809" and "file:x" are not local but
 * "./a:b" and "/x/a:b" are).  snapmig only handles file-based chains.
 */
bool sm_image_backing_is_local (const char *backing_name);

/* A backing chain, top (active) first. */
typedef struct {
  GPtrArray *layers;           /* SmImageInfo *, owned; index 0 = top */
} SmImageChain;

/* Frees CHAIN and its layers; NULL is fine. */
void sm_image_chain_free (SmImageChain *chain);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmImageChain, sm_image_chain_free)

typedef enum {
  /* Accept a qcow2 layer whose backing format is not stated by reading the
   * backing file's magic (qcow2 if it has the magic, else raw).  Without
   * this flag an unstated format is SM_ERROR_UNSAFE. */
  SM_CHAIN_ALLOW_UNSTATED_FORMAT = 1 << 0,
} SmChainFlags;

/* Walks the chain from TOP (of format TOP_FORMAT) through backing files.
 * Each qcow2 layer's backing format comes from its backing format header
 * extension; a layer that does not state it is SM_ERROR_UNSAFE unless
 * SM_CHAIN_ALLOW_UNSTATED_FORMAT.  A backing name that is not local
 * (json:, nbd:, ...) is SM_ERROR_UNSAFE.  With CONFINE_DIR non-NULL, every
 * layer's real path (symlinks resolved), and every external data file's, must
 * be inside CONFINE_DIR or the walk stops with SM_ERROR_UNSAFE naming the
 * image and its backing name, before the escaping file is opened (a symbolic
 * link inside CONFINE_DIR to a block device, the way oVirt block domains
 * link their LVs, is a layer of the domain); a relative
 * data file name is refused there too (QEMU 7.2 resolves it against its own
 * working directory, not the image's).  A missing
 * backing file is SM_ERROR_NOT_FOUND naming both files.  Loops (same device
 * and inode) and chains deeper than SM_IMAGE_CHAIN_MAX_DEPTH layers are
 * SM_ERROR_IMAGE; header errors are those of sm_image_probe.  Layers are
 * named (SmImageInfo.path) by the name QEMU would open: TOP as given, then
 * each backing name resolved by sm_image_resolve_backing.  Caller frees.
 */
#define SM_IMAGE_CHAIN_MAX_DEPTH 256
SmImageChain *sm_image_chain_open (const char *top, SmImageFormat top_format,
                                   const char *confine_dir, unsigned flags,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Size in bytes of a block device (BLKGETSIZE64) or regular file (fstat).
 * SM_ERROR_IMAGE for anything else, SM_ERROR_NOT_FOUND / SM_ERROR_IO. */
bool sm_image_file_size (const char *path, uint64_t *size, GError **error);

/* Looks for data on PATH (a file or block device, opened read-only) that a
 * target must not silently overwrite: a qcow2 header and every signature
 * libblkid's low-level probe finds (superblocks and partition tables), the
 * way wipefs lists them.  *WHAT is set to a comma-separated description,
 * e.g. "ext4 filesystem", "dos partition table", "LVM2_member", "swap",
 * "qcow2 image header", "ext4 filesystem, dos partition table" (caller
 * frees), or NULL when nothing is found.  Returns false with SM_ERROR_NOT_FOUND
 * / SM_ERROR_IO / SM_ERROR_IMAGE (not a file or device).
 */
bool sm_image_find_signature (const char *path, char **what, GError **error);

#endif /* SM_IMAGE_H */
