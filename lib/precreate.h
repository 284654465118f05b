/* libsnapmig — sizing and pre-creation of destination images.
 *
 * One API serves the local mirror (the destination gets the source chain's
 * structure: every layer, same virtual sizes, relative backing names, formats
 * stated) and the cross-host NBD mode (one flat image per disk, sized for the
 * whole chain).  Planning touches nothing; executing creates files with
 * qemu-img and records each file it created in an SmCreatedFiles, so a failure
 * removes exactly those and nothing else.
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

typedef struct {
  char *path;                  /* absolute destination path */
  char *source_path;           /* the source layer it corresponds to (FLAT:
                                  the source top) */
  SmImageFormat format;
  uint64_t virtual_size;
  char *backing_name;          /* relative name written into the header, or
                                  NULL for the bottom layer */
  SmImageFormat backing_format;
  uint64_t required_bytes;     /* space the copy will need at most */
  bool reuse;                  /* the file exists and is to be reused */
} SmPrecreateLayer;

typedef struct {
  SmPrecreateMode mode;
  char *dest_dir;
  GPtrArray *layers;           /* SmPrecreateLayer *, index 0 = top */
} SmPrecreatePlan;

void sm_precreate_plan_free (SmPrecreatePlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmPrecreatePlan, sm_precreate_plan_free)

/* Plans the destination for SOURCE in DEST_DIR.  Destination file names are
 * the source layers' base names; NEW_TOP_NAME, when non-NULL, adds one more
 * qcow2 layer on top (the mirror's target of a snapshot's new top), backed by
 * the copy of the source top.  Fails with SM_ERROR_INVALID when two layers
 * would get the same name.  Caller frees.
 */
SmPrecreatePlan *sm_precreate_plan (const SmImageChain *source,
                                    SmPrecreateMode mode, const char *dest_dir,
                                    const char *new_top_name, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Files created by snapmig, in creation order. */
typedef struct SmCreatedFiles SmCreatedFiles;
SmCreatedFiles *sm_created_files_new (void) G_GNUC_WARN_UNUSED_RESULT;
void sm_created_files_free (SmCreatedFiles *files);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmCreatedFiles, sm_created_files_free)
void sm_created_files_add (SmCreatedFiles *files, const char *path);
/* NULL-terminated view of the paths (owned by FILES). */
const char *const *sm_created_files_paths (const SmCreatedFiles *files,
                                           size_t *n);
/* Removes every recorded file, newest first; continues past errors and
 * reports the first.  The record is emptied. */
bool sm_created_files_rollback (SmCreatedFiles *files, GError **error);

/* Persistence, so that `snapmig recover` and `snapmig validate` know which
 * files a failed operation left: one absolute path per line. */
bool sm_created_files_save (const SmCreatedFiles *files, const char *record_path,
                            GError **error);
SmCreatedFiles *sm_created_files_load (const char *record_path, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

typedef enum {
  /* Existing files are accepted if their format, virtual size and backing
   * name/format fit the plan (libvirt's REUSE_EXT, checked more strictly). */
  SM_PRECREATE_REUSE = 1 << 0,
} SmPrecreateFlags;

/* Checks the plan against the file system without changing anything: the
 * directory exists and is writable, no target exists (unless REUSE, then it
 * must fit), no target is a device holding data, there is room.  Marks
 * reused layers in the plan.
 */
bool sm_precreate_check (SmPrecreatePlan *plan, unsigned flags, GError **error);

/* Runs sm_precreate_check, then creates the missing files bottom-up with
 * qemu-img (qcow2: -F stated, -u with explicit size, relative -b; raw: full
 * size), adding each to CREATED before it exists so an interrupted run is
 * still recorded.  On failure removes what this call created.
 */
bool sm_precreate_execute (SmPrecreatePlan *plan, unsigned flags,
                           SmCreatedFiles *created, GError **error);

#endif /* SM_PRECREATE_H */
