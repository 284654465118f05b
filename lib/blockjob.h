/* libsnapmig — a running VM's disks and block jobs, as QEMU reports them
 * (query-block, query-block-jobs), and the waits and job sequences built on
 * them.
 *
 * Waits poll with a deadline rather than trusting event names: QEMU answers a
 * cancel after READY with BLOCK_JOB_COMPLETED, not CANCELLED, and a job
 * dismissed automatically leaves no trace but its event, so outcomes are
 * always judged from query-block afterwards.
 */
#ifndef SM_BLOCKJOB_H
#define SM_BLOCKJOB_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "error.h"
#include "qmp.h"

/* One layer of a disk's active chain as query-block shows it.  The one
 * model of a layer in the library: disks.c, rebase.c, validate.c and the
 * lsm executors all read it from here. */
typedef struct {
  char *filename;              /* the layer's own file: QEMU's name, or for a
                                  "json:{...}" name its "file" child's
                                  filename */
  char *qemu_filename;         /* QEMU's name as reported (may be
                                  "json:{...}") */
  char *format;                /* the format driver QEMU opened it with:
                                  "qcow2", "raw", ... (stated by QEMU, never
                                  probed by us) */
  uint64_t virtual_size;
  char *node_name;             /* the format node's name: the top's from
                                  query-block, a lower layer's from
                                  query-named-block-nodes when exactly one
                                  node has this file and format; else NULL */
  char *backing_file;          /* the backing name this layer's header
                                  records, as written (may be relative);
                                  NULL for the last layer */
  bool read_only;              /* QEMU opened it read-only */
} SmBlockLayer;

typedef struct {
  char *device;                /* query-block "device" ("" → NULL) */
  char *qdev;                  /* query-block "qdev", or NULL */
  char *node_name;             /* the inserted top node's name */
  char *format;                /* the inserted top's driver ("drv") */
  char *file;                  /* the inserted top's "file" as QEMU says it */
  char *io_status;             /* "ok", "failed", "nospace", or NULL */
  bool read_only;
  GPtrArray *chain;            /* SmBlockLayer *, index 0 = active top; empty
                                  when no medium is inserted */
} SmBlockDisk;

void sm_block_layer_free (SmBlockLayer *layer);
void sm_block_disk_free (SmBlockDisk *disk);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmBlockDisk, sm_block_disk_free)

/* The id QMP commands take for DISK: its device name, or its node name
 * for a disk that has none (-blockdev + -device).  Owned by DISK. */
const char *sm_block_disk_id (const SmBlockDisk *disk);

/* The name people know DISK by: its device name, else the qdev id its qdev
 * path ends in ("vda" of /machine/peripheral/vda/virtio-backend), else its
 * node name.  Unlike the node name it stays the same across snapshots and
 * pivots, and sm_block_disk_matches accepts it.  Caller frees. */
char *sm_block_disk_name (const SmBlockDisk *disk) G_GNUC_WARN_UNUSED_RESULT;

/* True when NAME names DISK: its device name, its qdev path, the qdev id
 * that path ends in ("/machine/peripheral/ID[/virtio-backend]"), or, for a
 * top node's name. */
bool sm_block_disk_matches (const SmBlockDisk *disk, const char *name);

/* query-block: every disk, in QEMU's order (SmBlockDisk *; caller frees the
 * array, which frees its elements).  Lower layers have no node name (use
 * sm_block_vm_query for those). */
GPtrArray *sm_block_query_disks (SmQmp *qmp, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* query-block, then the disk NAME names; SM_ERROR_NOT_FOUND ("the VM has no
 * disk NAME") otherwise.  Caller frees. */
SmBlockDisk *sm_block_query_disk (SmQmp *qmp, const char *name, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Filename of the disk's active top, or NULL without medium (owned). */
const char *sm_block_disk_top (const SmBlockDisk *disk);

/* The disk's layer I (0 = active top), or NULL past the chain's end. */
const SmBlockLayer *sm_block_disk_layer (const SmBlockDisk *disk, guint i);

/* A block job, from query-block-jobs. */
typedef struct {
  char *id;                    /* job id ("device" in query-block-jobs): the
                                  device name unless a job-id was given */
  char *type;                  /* "mirror", "commit", "stream", ... */
  char *status;                /* "running", "ready", "concluded", ...
                                  (derived from paused/ready before QEMU
                                  2.12, which has no "status") */
  bool ready;                  /* a mirror can now be completed (pivoted) */
  bool busy;
  bool paused;
  uint64_t offset;             /* progress, bytes */
  uint64_t len;                /* work estimate, bytes (grows while the
                                  guest writes) */
  int64_t speed;               /* bytes/s limit, 0 = none */
  char *io_status;
} SmBlockJob;

void sm_block_job_free (SmBlockJob *job);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmBlockJob, sm_block_job_free)

/* A job id QEMU accepts: PREFIX (which must start with a letter) then
 * NAME with every character other than a letter, digit, '-', '.' or '_'
 * replaced by '_'.  Caller frees. */
char *sm_block_job_id (const char *prefix, const char *name)
  G_GNUC_WARN_UNUSED_RESULT;

/* query-block-jobs (SmBlockJob *; caller frees the array). */
GPtrArray *sm_block_query_jobs (SmQmp *qmp, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The job with ID in JOBS, or NULL (owned by JOBS). */
SmBlockJob *sm_block_find_job (GPtrArray *jobs, const char *id);

/* A node of query-named-block-nodes (flat). */
typedef struct {
  char *node_name;
  char *drv;                   /* "qcow2", "raw", "file", "host_device", ... */
  char *file;                  /* the node's file name as QEMU says it */
  bool read_only;
} SmBlockNode;

void sm_block_node_free (SmBlockNode *node);

/* The VM as its block layer shows it: one query of each of query-block,
 * query-block-jobs and (when QEMU has it) query-named-block-nodes.  This is
 * THE view of a running VM's disks every command builds on; its parts are
 * parsed by the pure functions below, so recorded replies test them without
 * a QEMU. */
typedef struct {
  GPtrArray *disks;            /* SmBlockDisk *, in query-block order */
  GPtrArray *jobs;             /* SmBlockJob * */
  GPtrArray *nodes;            /* SmBlockNode *; empty when QEMU has no
                                  query-named-block-nodes */
} SmBlockVm;

void sm_block_vm_free (SmBlockVm *vm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmBlockVm, sm_block_vm_free)

/* Parses the replies' "return" values (not consumed; NODES may be NULL) into
 * a view; lower layers get their node names from NODES.  A reply of the
 * wrong shape (not an array, a layer without filename or format, a chain
 * deeper than SM_BLOCK_MAX_CHAIN) is SM_ERROR_QMP_PROTOCOL naming the
 * command.  Caller frees.  Pure: no QEMU, no files. */
SmBlockVm *sm_block_vm_parse (json_object *blocks, json_object *jobs,
                              json_object *nodes, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The chain depth the parser accepts (QEMU has no limit; snapmig's image
 * walker stops at the same depth). */
#define SM_BLOCK_MAX_CHAIN 256

/* Queries the VM behind QMP (query-block, query-block-jobs,
 * query-named-block-nodes {flat} when QEMU has it; each reply checked
 * against the type expected) and parses them.  Caller frees. */
SmBlockVm *sm_block_vm_query (SmQmp *qmp, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The disk of VM that NAME names (sm_block_disk_matches), or NULL.  Owned
 * by VM. */
SmBlockDisk *sm_block_vm_find_disk (const SmBlockVm *vm, const char *name);

/* "drive0, drive1": the names (sm_block_disk_name) of VM's disks, for
 * messages.  Caller frees. */
char *sm_block_vm_disk_names (const SmBlockVm *vm) G_GNUC_WARN_UNUSED_RESULT;

/* The same for DISKS (SmBlockDisk *): "drive0, drive1", or "none". */
char *sm_block_disks_names (const GPtrArray *disks) G_GNUC_WARN_UNUSED_RESULT;

/* Sets ERROR to "the VM has no disk NAME (its disks: ...)", naming the
 * disks of DISKS (SmBlockDisk *) so that a wrong name shows the right
 * ones.  SM_ERROR_NOT_FOUND. */
void sm_block_set_no_disk (GError **error, const GPtrArray *disks,
                           const char *name);

/* Polls query-block-jobs until job ID is gone.  TIMEOUT_MS < 0: no limit.
 * SM_ERROR_TIMEOUT names the job. */
bool sm_block_job_wait_gone (SmQmp *qmp, const char *id, int timeout_ms,
                             GError **error);

/* Polls until job ID is READY; a job that disappears first is SM_ERROR_FAILED
 * naming it (with the error of its BLOCK_JOB_COMPLETED event when queued). */
bool sm_block_job_wait_ready (SmQmp *qmp, const char *id, int timeout_ms,
                              GError **error);

/* block-job-cancel (without force) and wait until the job is gone.  A job
 * that is already gone is fine. */
bool sm_block_job_cancel_wait (SmQmp *qmp, const char *id, int timeout_ms,
                               GError **error);

/* Folds the active top of DISK (found by sm_block_disk_matches; ID is the
 * device or node name QMP takes for it) back into its backing file: the node
 * BASE_NODE when non-NULL, else the image QEMU names BASE.  Active
 * block-commit with job id JOB_ID, wait READY, block-job-complete, wait until
 * gone, then checks with query-block that BASE is the active top again.
 * Used to undo a snapshot whose new top holds only writes made since the
 * snapshot.  (Name the base by node when you can: QEMU names an image
 * "json:{...}" once a snapshot attached it under a relative backing name,
 * and then cannot find it by file name.) */
bool sm_block_commit_active (SmQmp *qmp, const char *disk, const char *id,
                             const char *base_node, const char *base,
                             const char *job_id, int timeout_ms,
                             GError **error);

/* Sleeps up to MS milliseconds while keeping QEMU's events flowing (events
 * stay queued).  Used between polls. */
void sm_block_poll_pause (SmQmp *qmp, int ms);

#endif /* SM_BLOCKJOB_H */
