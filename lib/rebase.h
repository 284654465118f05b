/* libsnapmig — rebase: shorten a running disk's backing chain with
 * block-stream.
 *
 * After a live storage migration the destination chain keeps every layer
 * the source had (oVirt's "Snapshot 1" between the base and the new top).
 * Rebasing streams the layers above a chosen base into the active layer and
 * drops them from the chain, with the base's name written into the active
 * image RELATIVE to the active image's directory, so that the storage domain
 * can move again; without a base every layer is merged and the disk becomes
 * standalone.
 *
 * Plan, then execute: sm_rebase_plan only reads the VM's state (query-block,
 * query-named-block-nodes) and returns the block-stream command as data, to
 * be printed by --dry-run; sm_rebase_execute takes the VM's lock, checks the
 * chain has not changed, runs the job to its end and verifies the result both
 * in QEMU and in the image header on disk.
 */
#ifndef SM_REBASE_H
#define SM_REBASE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-c/json.h>

#include "error.h"
#include "qmp.h"

/* One layer of a disk's chain as the running QEMU sees it. */
typedef struct {
  char *filename;      /* QEMU's name for the image (query-block filename) */
  char *format;        /* "qcow2", "raw", ... */
  char *node_name;     /* the format node's name, or NULL when QEMU's node
                          list does not single it out */
  char *backing_name;  /* the backing name written in this layer's header,
                          or NULL for the last layer */
} SmRebaseLayer;

typedef struct {
  char *disk;          /* as the user named it */
  char *device;        /* block-stream "device": drive name, or the active
                          node's name for a -blockdev disk */
  char *job_id;        /* the job's id, derived from the disk's name */
  GPtrArray *chain;    /* SmRebaseLayer *, owned; index 0 = active layer */
  int base_index;      /* index in chain of the base kept, -1: merge all */
  char *backing_file;  /* name to write into the active image: the base
                          relative to the active image's directory; NULL
                          when merging all.  Without command: the name
                          already written there */
  uint64_t speed;      /* bytes per second, 0 = unlimited */
  json_object *command;  /* {"execute":"block-stream","arguments":{...}},
                            owned; NULL when there is nothing to merge (the
                            base already backs the active layer directly, or
                            the disk has no backing file) */
} SmRebasePlan;

void sm_rebase_plan_free (SmRebasePlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmRebasePlan, sm_rebase_plan_free)

/* Plans the rebase of DISK (a query-block device name, a qdev id, or the
 * active node's name) onto BASE: NULL to merge every backing layer, else an
 * image of the disk's chain named by its node name or by a path (absolute,
 * or relative to the current directory; matched by device and inode, so a
 * symlink or "../x" spelling of the same file works).  SPEED is the job's
 * bandwidth limit in bytes per second (0: none).  Only reads QEMU's state.
 * Errors: an unknown disk is SM_ERROR_NOT_FOUND naming it and the disks the
 * VM has; a BASE that is not below the active layer is SM_ERROR_NOT_FOUND
 * naming the disk and listing its chain (SM_ERROR_INVALID when BASE is the
 * active layer itself); QMP failures carry QEMU's desc.  Caller frees.
 */
SmRebasePlan *sm_rebase_plan (SmQmp *qmp, const char *disk, const char *base,
                              uint64_t speed, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The plan as JSON: {"disk", "device", "job-id", "chain": [{"filename",
 * "format", "node-name", "backing-name"}], "base": filename or null,
 * "backing-file", "speed", "merged": [filenames streamed into the active
 * layer], "command": the QMP command or null}.  New reference.
 */
json_object *sm_rebase_plan_to_json (const SmRebasePlan *plan)
  G_GNUC_WARN_UNUSED_RESULT;

/* "A <- B <- C": the chain base first, as people read it (caller frees). */
char *sm_rebase_chain_to_string (const GPtrArray *chain)
  G_GNUC_WARN_UNUSED_RESULT;

/* Called while the job runs, about every POLL interval, with QEMU's job
 * offset and length (bytes). */
typedef void (*SmRebaseProgressFunc) (const SmRebasePlan *plan, uint64_t done,
                                      uint64_t total, void *opaque);

/* Executes PLAN on the VM behind QMP.  Takes the VM's lock in STATE_DIR
 * (lib/state.h; SM_ERROR_BUSY when another snapmig holds it) for the whole
 * run, re-reads the disk's chain (SM_ERROR_BUSY "chain changed" when it is
 * no longer the planned one), starts block-stream and waits for its
 * BLOCK_JOB_COMPLETED, polling query-block-jobs for PROGRESS (may be NULL).
 * A job that ends with an error is SM_ERROR_QMP naming the disk and carrying
 * QEMU's message; TIMEOUT_S > 0 bounds the wait: the job is then cancelled
 * (the chain stays as it was) and the error is SM_ERROR_TIMEOUT.  Afterwards
 * checks with query-block that the chain is the active layer over the base's
 * chain (or the active layer alone) and that the active image's header on
 * disk names the base by the planned relative name (SM_ERROR_FAILED
 * otherwise).  A plan with no command only takes the lock and returns true.
 */
bool sm_rebase_execute (SmQmp *qmp, const SmRebasePlan *plan,
                        const char *state_dir, unsigned timeout_s,
                        SmRebaseProgressFunc progress, void *opaque,
                        GError **error);

/* The path of TARGET relative to the directory DIR ("base.qcow2",
 * "../other/base.qcow2"); both must be absolute and canonical (no "." or ".."
 * components).  Pure string work.  Caller frees.
 */
char *sm_rebase_relative_path (const char *dir, const char *target)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_REBASE_H */
