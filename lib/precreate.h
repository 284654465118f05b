/* libsnapmig — sizing and pre-creation of destination images.
 *
 * One API serves the local mirror (the destination gets the source chain's
 * structure: every layer, same virtual sizes, relative backing names, formats
 * stated) and the cross-host NBD mode (one flat image per disk, as libvirt's
 * storage migration does).  Planning touches nothing; executing creates files
 * (empty qcow2 images written directly, or by qemu-img in unusual cases) and
 * records each file it created in an SmCreatedFiles, so a failure removes
 * exactly those and nothing else.
 *
 * Space estimate (SmPrecreateLayer.required_bytes), an upper bound:
 *   raw:   the virtual size (the copy may write every byte);
 *   qcow2: the data the layer can receive — the source layer's allocated
 *          bytes (st_blocks; FLAT: the sum over the whole chain), capped at
 *          the virtual size — plus the metadata a qcow2 image of that virtual
 *          size needs when that much data is written: header, L1 table, one
 *          L2 entry (8 bytes) per cluster of the whole virtual size, and a
 *          16-bit refcount per host cluster with its refcount table.  The
 *          source's cluster size is used (64 KiB when it has none).  The new
 *          top of a snapshot (NEW_TOP_NAME) starts empty: its bound is the
 *          metadata alone, because what the guest writes during the
 *          migration cannot be known in advance.
 *
 * Records: the live migration code saves the files an operation created in
 * the state directory, never in a storage domain (lib/lsm.h:
 * STATE/vms/KEY/journal/OPID.created while the operation runs or after it
 * was interrupted, STATE/vms/KEY/lsm/NAME.created during a move);
 * `snapmig recover` removes the files of an interrupted operation and
 * `snapmig validate` reports them.
 */
#ifndef SM_PRECREATE_H
#define SM_PRECREATE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "error.h"
#include "image.h"

typedef enum {
  SM_PRECREATE_CHAIN,   /* mirror the chain's structure layer by layer */
  SM_PRECREATE_FLAT,    /* one image holding the whole chain (NBD target) */
  SM_PRECREATE_LAST
} SmPrecreateMode;

/* "chain", "flat"; NULL for an out-of-range value. */
const char *sm_precreate_mode_to_string (SmPrecreateMode mode);

typedef struct {
  char *path;                  /* absolute destination path */
  char *source_path;           /* the source layer it corresponds to (FLAT:
                                  the source top; the new top layer of
                                  NEW_TOP_NAME: NULL) */
  SmImageFormat format;
  uint64_t virtual_size;       /* qcow2: rounded up to 512 bytes, as
                                  qemu-img does */
  char *backing_name;          /* relative name written into the header, or
                                  NULL for the bottom layer */
  SmImageFormat backing_format;  /* SM_IMAGE_FORMAT_LAST without backing */
  uint64_t cluster_size;       /* qcow2: the source's, 0 = qemu-img default */
  uint64_t required_bytes;     /* space the copy will need at most (see the
                                  estimate above) */
  bool reuse;                  /* set by sm_precreate_check: the file exists
                                  and is to be reused as it is */
  bool block_device;           /* set by sm_precreate_check: the target is a
                                  block device (never created nor removed;
                                  a blank one gets a qcow2 header) */
} SmPrecreateLayer;

typedef struct {
  SmPrecreateMode mode;
  char *dest_dir;              /* absolute */
  GPtrArray *layers;           /* SmPrecreateLayer *, index 0 = top */
} SmPrecreatePlan;

void sm_precreate_plan_free (SmPrecreatePlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmPrecreatePlan, sm_precreate_plan_free)

/* Plans the destination for SOURCE (top first) in DEST_DIR (made absolute,
 * not required to exist yet).  Destination file names are the source layers'
 * base names.
 *
 * CHAIN: one layer per source layer, same format and virtual size, each
 * qcow2 layer backed by the next one's destination base name (relative;
 * "./NAME" when NAME holds a ':' QEMU would read as a protocol prefix) with
 * the backing format stated, the bottom layer without backing.
 * NEW_TOP_NAME, when non-NULL, adds one more qcow2 layer on top (the
 * mirror's target for a snapshot's new top) backed by the copy of the source
 * top; it must be a plain file name (no '/', not "." nor "..").
 * FLAT: a single layer DEST_DIR/basename(top) in the top's format with the
 * top's virtual size and no backing; NEW_TOP_NAME must be NULL.
 *
 * Fails with SM_ERROR_INVALID when two layers would get the same name (the
 * message names both sources), for a bad NEW_TOP_NAME, or for a chain whose
 * upper layer is not qcow2.  Caller frees.
 */
SmPrecreatePlan *sm_precreate_plan (const SmImageChain *source,
                                    SmPrecreateMode mode, const char *dest_dir,
                                    const char *new_top_name, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Files created by snapmig, in creation order, as absolute paths. */
typedef struct SmCreatedFiles SmCreatedFiles;
SmCreatedFiles *sm_created_files_new (void) G_GNUC_WARN_UNUSED_RESULT;
void sm_created_files_free (SmCreatedFiles *files);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmCreatedFiles, sm_created_files_free)
/* Records PATH (a relative path is made absolute against the current
 * directory).  A path already recorded is not added twice. */
void sm_created_files_add (SmCreatedFiles *files, const char *path);
/* NULL-terminated view of the paths, oldest first (owned by FILES, valid
 * until FILES changes).  N, when non-NULL, gets the count. */
const char *const *sm_created_files_paths (const SmCreatedFiles *files,
                                           size_t *n);
/* Removes every recorded file, newest first; a file already gone is fine.
 * A file another process holds (QEMU's image locks, lib/image-lock.h) is
 * kept: SM_ERROR_IN_USE "kept FILE: in use: held by PROCESS (pid N)".
 * Continues past errors and reports the first (SM_ERROR_IO naming the file).
 * Removed files leave the record; the ones that could not be removed stay,
 * so the record still lists what is left. */
bool sm_created_files_rollback (SmCreatedFiles *files, GError **error);

/* Persistence, so that `snapmig recover` and `snapmig validate` know which
 * files an operation created (lib/lsm.h says where they are kept): one
 * absolute path per line, written atomically (temp file in the same
 * directory, fsync, rename, fsync of the directory).  Save fails with SM_ERROR_INVALID for a path holding a
 * newline; load fails with SM_ERROR_NOT_FOUND for a missing record and
 * SM_ERROR_INVALID for a line that is not an absolute path. */
bool sm_created_files_save (const SmCreatedFiles *files, const char *record_path,
                            GError **error);
SmCreatedFiles *sm_created_files_load (const char *record_path, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

typedef enum {
  /* Existing files are accepted if their format, virtual size and backing
   * name/format fit the plan (libvirt's REUSE_EXT, checked more strictly).
   * As in libvirt, every target must then exist already. */
  SM_PRECREATE_REUSE = 1 << 0,
} SmPrecreateFlags;

/* Checks the plan against the file system without changing anything:
 *  - DEST_DIR exists, is a directory and writable (SM_ERROR_NOT_FOUND /
 *    SM_ERROR_INVALID / SM_ERROR_IO naming the directory);
 *  - without REUSE no target exists, not even as a dangling symbolic link
 *    (SM_ERROR_EXISTS "FILE: target exists (use --reuse-external to reuse
 *    it)"); with REUSE every target exists (SM_ERROR_NOT_FOUND) and fits:
 *    format, virtual size, backing name and format as planned
 *    (SM_ERROR_INVALID naming the file, expected and found);
 *  - a block device target is large enough for required_bytes (raw: of
 *    exactly the virtual size, as QEMU's mirror refuses a target of another
 *    size; SM_ERROR_INVALID) and, without REUSE, holds no signature
 *    (filesystem, partition table, image header): SM_ERROR_EXISTS naming
 *    what was found;
 *  - the file system of DEST_DIR has room for the required_bytes of the
 *    files to create (SM_ERROR_IO "not enough space in DIR: need X, have Y").
 * Sets the reuse and block_device marks of the plan's layers.
 */
bool sm_precreate_check (SmPrecreatePlan *plan, unsigned flags, GError **error);

/* Runs sm_precreate_check, then creates the missing files bottom-up: each
 * file is first created empty with O_CREAT|O_EXCL (an existing file is never
 * overwritten, even one that appeared after the check), recorded in CREATED,
 * then written: qcow2 as the image `qemu-img create -f qcow2 [-o
 * cluster_size=N] [-b NAME -F FMT -u] PATH SIZE` makes (the backing file is
 * not opened, so it may not exist yet), written directly and flushed once;
 * an image outside that simple layout (lib/precreate.c lists the cases:
 * several refcount blocks, a backing name that does not fit in the first
 * cluster, an invalid cluster size, ...) is made by running that very
 * command.  Raw by ftruncate to the full (sparse) size.  A blank block
 * device gets the qcow2 metadata written onto it in full, or nothing for
 * raw, and is not recorded.  Every created image is probed and compared
 * with the plan.  On failure removes exactly what this call created (also
 * dropping it from CREATED) and fails naming the file, with qemu-img's
 * message when qemu-img failed; a block device it wrote a header onto keeps
 * it (a retry then needs REUSE).
 */
bool sm_precreate_execute (SmPrecreatePlan *plan, unsigned flags,
                           SmCreatedFiles *created, GError **error);

#endif /* SM_PRECREATE_H */
