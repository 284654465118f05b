/* libsnapmig — mirrored live storage migration as one atomic snapshot
 * transaction (the oVirt flow of seed 001).
 *
 *   create: pre-create the destination chain (every layer of the disk's
 *           chain, relative backing names, formats stated) plus the new
 *           destination top; create the new source top; one QMP
 *           `transaction` of blockdev-snapshot-sync actions (mode=existing);
 *           drive-mirror sync=top mode=existing of each new top into its
 *           destination top; save the snapshot metadata; start a detached
 *           worker copying the now read-only lower layers.
 *   pivot:  wait for every mirror READY and every copy done, check the
 *           destination chain, then block-job-complete every mirror (guest
 *           paused around the switch of several disks), delete the metadata.
 *   abort:  cancel the mirrors, stop the worker, remove exactly the files
 *           snapmig created; the VM stays on the source chain, whose active
 *           layer is the snapshot's new top.
 *
 * Plan, then execute: the sm_lsm_plan_* functions only look at data (what the
 * VM reported, the image headers, the metadata) and return the files to
 * create and the QMP commands to run, for --dry-run and unit tests.  The
 * executors run a plan step by step, writing a journal record before and
 * after each step (STATE/vms/KEY/journal/OPID.journal, with the record of
 * the files a create made in OPID.created); a finished operation's journal
 * is removed.  Code: lsm-plan.c (plans), lsm-create.c (create, its undo,
 * recover), lsm-switch.c (wait, pivot, abort), lsm.c (the rest).
 *
 * Recovery policy (`snapmig recover`): an interrupted `create` is always
 * rolled back — its user never got a success, so the VM is returned to the
 * chain it ran on (copy worker killed, mirrors cancelled, the new top
 * committed back into the old one — offline with `qemu-img commit` when QEMU
 * is gone, so no guest write is lost), the metadata is removed and every
 * file the operation created is deleted.  A failing create undoes itself the
 * same way before returning, as it does when SIGINT, SIGTERM or SIGHUP
 * interrupts it.  A record is removed only once the journal says the step it
 * guards is done: the record of created files after "done" or
 * "rolled-back", so that a crash anywhere leaves a journal recover finishes.
 * An interrupted `pivot` or `abort` is handed to lsm-switch.c and finished
 * by running the same command again (both are idempotent per disk).
 * recover, a second pivot
 * and abort first resume a guest that a killed pivot paused (its journal
 * says "guest-stopped" without "guest-resumed").  recover finishes a pivot
 * whose disks all run on their destinations (only its records were left)
 * and otherwise reports what to run.  A journaled block-job-complete whose
 * outcome nobody saw (QEMU died) keeps the pivot's journal: abort and
 * recover then never remove the destination top, which may hold the
 * guest's newest writes.
 *
 * Files of a migration: STATE/vms/KEY/lsm/NAME.json (disks, job ids,
 * original tops), NAME.created (destination files snapmig created),
 * NAME.copy.json (the copy worker's status).
 *
 * Test hooks: SNAPMIG_TEST_CRASH_AFTER_STEP=N makes the executor
 * _exit(137) right after journaling the end of step N (1-based), to test
 * recovery (N=done: after journaling "done", before removing the record of
 * created files); SNAPMIG_TEST_SIGNAL_AFTER_STEP=N:SIG sends SIG to snapmig
 * itself after step N; SNAPMIG_TEST_KILL_AFTER_STEP=N:PID SIGKILLs process
 * PID (the test's QEMU) after step N instead; SNAPMIG_TEST_HOLD_AFTER_STEP=N:FILE
 * (pivot, abort) waits after step N until FILE exists;
 * SNAPMIG_TEST_CRASH_AT=POINT exits in the middle of the deletion of a
 * snapshot's records (see lsm-private.h).  For tests only.
 */
#ifndef SM_LSM_H
#define SM_LSM_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-c/json.h>

#include "blockjob.h"
#include "error.h"
#include "image.h"
#include "layer-copy.h"
#include "precreate.h"
#include "qmp.h"
#include "snapshot-xml.h"
#include "state.h"

/* ---- what the planner knows about the VM ----------------------------- */

typedef struct {
  GPtrArray *disks;            /* SmBlockDisk *, query-block order */
  GPtrArray *jobs;             /* SmBlockJob *, running block jobs */
  GHashTable *chains;          /* disk id (sm_block_disk_id) → SmImageChain *
                                  read from the image headers; disks whose
                                  chain could not be read are absent */
  GHashTable *chain_errors;    /* disk id → why its chain is absent */
  bool has_transaction;
  bool has_copy_mode;
  char *run_state;             /* query-status "status" ("running", ...) */
} SmLsmVm;

void sm_lsm_vm_free (SmLsmVm *vm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmLsmVm, sm_lsm_vm_free)
SmLsmVm *sm_lsm_vm_new (void) G_GNUC_WARN_UNUSED_RESULT;

/* Asks QEMU (query-block, query-block-jobs, query-status, capabilities) and
 * reads each disk's chain from the image headers (formats cross-checked with
 * QEMU's).  Caller frees. */
SmLsmVm *sm_lsm_vm_query (SmQmp *qmp, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* The first disk of VM that NAME names (sm_block_disk_matches), or NULL.
 * Owned by VM. */
SmBlockDisk *sm_lsm_vm_find_disk (const SmLsmVm *vm, const char *name);

/* ---- one migration, as saved in the state dir ------------------------ */

typedef struct {
  char *name;                  /* the disk's lasting name (device name or
                                  qdev id, see sm_block_disk_name) */
  char *id;                    /* QMP id of the disk from the snapshot on:
                                  its device name, or the node name snapmig
                                  gives the new top */
  char *job_id;                /* the mirror's job id, NULL: no mirror */
  char *orig_top;              /* active layer before the snapshot */
  char *orig_format;
  char *orig_node;             /* its node name (it keeps it under the new
                                  top), or NULL */
  char *new_top;               /* the snapshot's new source top */
  char *mirror;                /* destination top, or NULL */
  char *dest_dir;              /* destination domain, or NULL */
} SmLsmDisk;

typedef struct {
  char *snapshot;
  char *parent;                /* current snapshot before create, or NULL */
  GPtrArray *disks;            /* SmLsmDisk * */
} SmLsmInfo;

void sm_lsm_info_free (SmLsmInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmLsmInfo, sm_lsm_info_free)
json_object *sm_lsm_info_to_json (const SmLsmInfo *info);
SmLsmInfo *sm_lsm_info_from_json (json_object *obj, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* STATE/vms/KEY/lsm/NAME.json, .created, .copy.json.  Caller frees. */
char *sm_lsm_info_path (SmVmState *st, const char *snapshot);
char *sm_lsm_created_path (SmVmState *st, const char *snapshot);
char *sm_lsm_copy_status_path (SmVmState *st, const char *snapshot);
/* The snapshot whose move record FILE_NAME (a name in the lsm/ directory)
 * is, or NULL when it is another file of a move (NAME.copy.json,
 * NAME.progress.json, NAME.created).  Caller frees. */
char *sm_lsm_record_snapshot (const char *file_name) G_GNUC_WARN_UNUSED_RESULT;

/* Loads the migration record of SNAPSHOT (SM_ERROR_NOT_FOUND when the
 * snapshot has no mirror).  Caller frees. */
SmLsmInfo *sm_lsm_info_load (SmVmState *st, const char *snapshot,
                             GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Shared with the cross-host migration (lib/migrate.h), which takes the
 * same snapshot: the plan of one new source top NEW_TOP over ORIG (qcow2,
 * ORIG's virtual size, backed by ORIG under a relative name); the
 * transaction action giving disk BD the new top NEW_TOP (NEW_NODE names it
 * for a disk without device name); a node name for the new top of disk
 * INDEX of operation NAME; and folding a new top back into its backing file
 * offline with qemu-img commit when QEMU is gone (D's name, new_top and
 * orig_top are used). */
SmPrecreatePlan *sm_lsm_plan_new_top (const char *new_top,
                                      const SmImageInfo *orig)
  G_GNUC_WARN_UNUSED_RESULT;
json_object *sm_lsm_snapshot_action (const SmBlockDisk *bd,
                                     const char *new_top,
                                     const char *new_node)
  G_GNUC_WARN_UNUSED_RESULT;
char *sm_lsm_new_node_name (const char *name, size_t index)
  G_GNUC_WARN_UNUSED_RESULT;

/* ---- plans ----------------------------------------------------------- */

typedef enum {
  SM_LSM_STEP_CREATE_DEST,     /* pre-create a disk's destination chain */
  SM_LSM_STEP_CREATE_TOP,      /* create a disk's new source top */
  SM_LSM_STEP_TRANSACTION,     /* QMP transaction of snapshots */
  SM_LSM_STEP_SNAPSHOT,        /* one blockdev-snapshot-sync */
  SM_LSM_STEP_MIRROR,          /* drive-mirror */
  SM_LSM_STEP_SAVE_METADATA,
  SM_LSM_STEP_START_COPY,      /* detached lower-layer copy worker */
  SM_LSM_STEP_WAIT,            /* mirrors READY, copies done */
  SM_LSM_STEP_CHECK_DEST,      /* destination chain opens, confined */
  SM_LSM_STEP_FLUSH,           /* fdatasync the source tops and mirrors */
  SM_LSM_STEP_STOP,            /* pause the guest */
  SM_LSM_STEP_COMPLETE,        /* block-job-complete of one mirror; a run
                                  of them is sent as one batch */
  SM_LSM_STEP_WAIT_SWITCH,     /* every completed mirror ended (events) */
  SM_LSM_STEP_CONT,            /* resume the guest */
  SM_LSM_STEP_CHECK_SWITCH,    /* every switched disk runs on its
                                  destination (one query-block) */
  SM_LSM_STEP_CANCEL,          /* block-job-cancel of one mirror */
  SM_LSM_STEP_STOP_COPY,       /* kill the copy worker */
  SM_LSM_STEP_REMOVE_FILES,    /* remove the files snapmig created */
  SM_LSM_STEP_DELETE_SOURCE,   /* remove source files no longer used */
  SM_LSM_STEP_DELETE_METADATA,
  SM_LSM_STEP_LAST
} SmLsmStepKind;
const char *sm_lsm_step_kind_to_string (SmLsmStepKind kind);

typedef struct {
  SmLsmStepKind kind;
  int disk;                    /* index in the plan's info->disks, or -1 */
  char *command;               /* QMP command, or NULL */
  json_object *args;           /* its arguments (owned), or NULL */
} SmLsmStep;

typedef enum {
  SM_LSM_OP_CREATE,
  SM_LSM_OP_PIVOT,
  SM_LSM_OP_ABORT,
  SM_LSM_OP_LAST
} SmLsmOp;
const char *sm_lsm_op_to_string (SmLsmOp op);

typedef enum {
  SM_LSM_ATOMIC = 1 << 0,          /* all disks or none */
  SM_LSM_REUSE_EXTERNAL = 1 << 1,  /* targets exist; implies ATOMIC */
  SM_LSM_DISK_ONLY = 1 << 2,       /* leave out the memory state a
                                      definition asks for (plan->note)
                                      instead of refusing it */
  SM_LSM_NO_METADATA = 1 << 3,     /* do not record the snapshot */
  SM_LSM_DELETE_SOURCE = 1 << 4,   /* pivot: remove unused source files */
} SmLsmFlags;

typedef struct {
  unsigned flags;              /* SmLsmFlags */
  uint64_t bandwidth;          /* drive-mirror speed, bytes/s, 0: none */
  const char *copy_mode;       /* NULL, "background", "write-blocking" */
} SmLsmCreateOptions;

typedef struct {
  SmLsmOp op;
  unsigned flags;
  SmLsmInfo *info;             /* disks, in step order */
  SmSnapshotDef *def;          /* create: the metadata to save */
  GPtrArray *dest_plans;       /* create: SmPrecreatePlan * per disk, NULL
                                  for a disk without mirror */
  GPtrArray *top_plans;        /* create: SmPrecreatePlan * per disk, the
                                  new source top (one layer) */
  GPtrArray *copies;           /* create: SmLayerCopy *, lower layers */
  GPtrArray *steps;            /* SmLsmStep * */
  GPtrArray *source_files;     /* pivot --delete-source: files to remove */
  char *note;                  /* create: what was left out of the snapshot
                                  (SM_LSM_DISK_ONLY), for the user; or NULL */
} SmLsmPlan;

void sm_lsm_plan_free (SmLsmPlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmLsmPlan, sm_lsm_plan_free)

/* The job id snapmig gives the mirror of the disk named NAME
 * (sm_block_disk_name): "snapmig-mirror-NAME", with characters QEMU refuses
 * in ids replaced.  Caller frees. */
char *sm_lsm_job_id (const char *name) G_GNUC_WARN_UNUSED_RESULT;

/* Checks that NAME can name a snapshot: it becomes part of file names, so
 * no '/', space or control character, no leading '.', at most 100
 * characters (SM_ERROR_INVALID). */
bool sm_lsm_check_name (const char *name, GError **error);

/* Builds the <domainsnapshot> of `create --name NAME [--diskspec SPEC]...
 * [--mirror-domain DIR]`.  SPEC is DISK[,file=NEWTOP][,mirror=PATH]
 * [,snapshot=no]; without SPEC, every file-backed writable disk of the VM.
 * A disk with mirror= is mirrored there.  With MIRROR_DOMAIN, every disk
 * without mirror= is mirrored into DIR (a MIRROR_DOMAIN no disk would use is
 * refused); without it, such a disk gets a plain external snapshot (a new
 * top and no mirror).  A disk's new source top is
 * <top-basename-without-extension>.<NAME>.qcow2 next to its current top and
 * its mirror the same name in DIR.  A SPEC without file= gets that new top
 * name too.  Errors (SM_ERROR_INVALID / SM_ERROR_NOT_FOUND) name the spec or
 * disk.  Caller frees. */
SmSnapshotDef *sm_lsm_def_from_options (const SmLsmVm *vm, const char *name,
                                        const char *const *diskspecs,
                                        const char *mirror_domain,
                                        GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Plans `create` of DEF on VM.  CURRENT is the current snapshot's name (the
 * new one's parent) or NULL.  Refuses (naming the disk): a disk the VM lacks,
 * a disk named twice, a disk with a block job, a non-qcow2 new top or
 * mirror, a mirror or new top that is a file of a source chain, two disks
 * with the same destination file, --atomic (or mirrors, or
 * --reuse-external) with several disks when QEMU lacks `transaction`,
 * --reuse-external without `transaction`, mirrors with --no-metadata.
 * Touches nothing.  Caller frees. */
SmLsmPlan *sm_lsm_plan_create (const SmLsmVm *vm, const SmSnapshotDef *def,
                               const char *current,
                               const SmLsmCreateOptions *options,
                               GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Plans `pivot` of the migration INFO: refuses a snapshot that is not
 * CURRENT (may be NULL) or has no mirror.  Disks already switched to their
 * destination are skipped; when every disk runs on its destination (a pivot
 * interrupted after its switch) the plan only deletes the records, current
 * or not.  The switch: FLUSH (the source tops and mirrors made durable
 * from outside QEMU, so that the flush QEMU does inside `stop` and at each
 * mirror's completion has little left), [STOP], one COMPLETE per disk (the
 * executor sends a run of them as one batch), WAIT_SWITCH (the jobs end),
 * [CONT], CHECK_SWITCH (one query-block, the guest running again).  The
 * guest is paused (STOP ... CONT) only when several disks switch and VM's
 * run state is "running".  With SM_LSM_DELETE_SOURCE in FLAGS, lists the
 * source files no disk of VM uses afterwards.  Caller frees. */
SmLsmPlan *sm_lsm_plan_pivot (const SmLsmVm *vm, const SmLsmInfo *info,
                              const char *current, unsigned flags,
                              GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Plans `abort` of the migration INFO.  Refuses when a disk already runs on
 * its destination (`pivot` finishes the job then).  Caller frees. */
SmLsmPlan *sm_lsm_plan_abort (const SmLsmVm *vm, const SmLsmInfo *info,
                              GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* The plan as text for --dry-run: files to create, QMP commands (JSON), other
 * steps in words, one per line.  Caller frees. */
char *sm_lsm_plan_format (const SmLsmPlan *plan) G_GNUC_WARN_UNUSED_RESULT;

/* ---- executors ------------------------------------------------------- */

/* Progress of waits: ITEM is "DISK mirror" or "FILE copy". */
typedef void (*SmLsmProgress) (const char *item, uint64_t done,
                               uint64_t total, bool finished, void *opaque);

typedef struct {
  int timeout_ms;              /* waits; < 0: none */
  SmLsmProgress progress;      /* may be NULL */
  void *opaque;
} SmLsmWaitOptions;

/* Runs a create plan (the caller holds the VM's lock).  On failure the VM,
 * the images and the metadata are as before and every file created is gone;
 * the message names the step's QMP command, the disk and QEMU's reason.
 * Without atomicity (no transaction, several disks) a failure leaves the
 * disks snapshotted before it, recorded in the metadata, and the message
 * says disk by disk what happened. */
bool sm_lsm_create (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan,
                    GError **error);

/* Called by sm_lsm_create_wait once the snapshot is taken and the mirrors
 * run, before the wait (a CLI prints what each disk runs on). */
typedef void (*SmLsmCreated) (const SmLsmPlan *plan, void *opaque);

/* sm_lsm_create, then waits (sm_lsm_wait with WAIT, CREATED called first
 * when not NULL) before the create is journaled done: SIGINT, SIGTERM or
 * SIGHUP during the wait rolls the whole create back like any failure of
 * it (the error is SM_ERROR_INTERRUPTED's, "rolled back: ..."); another
 * failure of the wait (timeout, a mirror that ended) leaves the snapshot
 * and its move in place (CREATED was called) and is ERROR. */
bool sm_lsm_create_wait (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan,
                         const SmLsmWaitOptions *wait, SmLsmCreated created,
                         void *opaque, GError **error);

/* Waits until every mirror of the migration SNAPSHOT is READY and every
 * lower-layer copy is done.  A copy that failed or a mirror that ended is an
 * error naming it. */
bool sm_lsm_wait (SmQmp *qmp, SmVmState *st, const SmLsmInfo *info,
                  const SmLsmWaitOptions *options, GError **error);

typedef struct {
  char *path;
  char *why;                   /* "held by qemu-system-x86_64 (pid 1234)",
                                  "in use by VM KEY (snapshot NAME)", ... */
} SmLsmKeptFile;

typedef struct {
  int64_t pause_ms;            /* how long the guest was paused, -1: not */
  int64_t pause_us;            /* the same in microseconds, -1: not */
  const char *pause_from;      /* "events": from the timestamps of QEMU's
                                  STOP and RESUME events; "clock": from
                                  before stop was sent to after cont
                                  returned (an event was missing); NULL */
  GPtrArray *moved;            /* names of the disks switched now */
  GPtrArray *removed;          /* --delete-source: files removed (char *) */
  GPtrArray *kept;             /* --delete-source: files kept because
                                  something uses them (SmLsmKeptFile *) */
} SmLsmPivotResult;
void sm_lsm_pivot_result_clear (SmLsmPivotResult *result);

/* Runs a pivot plan.  On a failure part-way the message says which disk
 * runs where; the metadata stays so that a second pivot finishes.  With
 * --delete-source, a source file is removed only when no disk of the VM
 * uses it, no other process holds QEMU's image locks on it and no other
 * VM snapmig knows of uses it; RESULT lists what was removed and what was
 * kept and why. */
bool sm_lsm_pivot (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan,
                   const SmLsmWaitOptions *options, SmLsmPivotResult *result,
                   GError **error);

/* Runs an abort plan. */
bool sm_lsm_abort (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan,
                   int timeout_ms, GError **error);

/* One line per disk and per copied layer of migration INFO: mirror job
 * state and progress, copy state and progress.  Returned as JSON:
 * {"snapshot":..,"moving":true,"disks":[{"name","job","status","ready",
 * "done","total" (QEMU's offset and len),"active"}],"copies":[{"source",
 * "dest","state","done","total","error","skipped" (true: the destination
 * already held the layer)}],"worker-pid":N,"ready-to-pivot": every
 * mirror ready and every copy done, so nothing is moving}
 * (snapmig-json(7), $defs/status).  Caller puts. */
json_object *sm_lsm_status (SmQmp *qmp, SmVmState *st, const SmLsmInfo *info,
                            GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* The status document when no snapshot is moving:
 * {"snapshot":null,"moving":false}.  Caller puts. */
json_object *sm_lsm_status_idle (void) G_GNUC_WARN_UNUSED_RESULT;

/* What a second snapmig shows while create --wait or pivot waits: QEMU's
 * monitor serves one client, so the waiting command publishes
 * sm_lsm_status's document about once a second in
 * STATE/vms/KEY/lsm/NAME.progress.json, with "pid" (its own) and "time"
 * (RFC 3339) and "time-unix" (seconds), and removes it when its wait ends.
 * Returns that document with "watched": {"pid", "time", "age-seconds"}
 * added when the file is there and its writer is alive and holds the VM's
 * lock; NULL otherwise (no error: status then asks QEMU).  Caller puts. */
json_object *sm_lsm_status_watched (SmVmState *st, const char *snapshot)
  G_GNUC_WARN_UNUSED_RESULT;

/* Resumes the guest that an interrupted pivot paused: its journal records
 * "guest-stopped" without "guest-resumed", and query-status says "paused"
 * (not an I/O error, an incoming migration or a guest started with -S; a
 * guest paused before pivot came has no such record: pivot never stops a
 * guest that is not running).  pivot and abort call it before they plan,
 * recover for each such journal.  Returns what was done, one line each
 * (g_strfreev; empty when nothing), or NULL with ERROR. */
char **sm_lsm_resume_interrupted (SmQmp *qmp, SmVmState *st, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Finishes interrupted operations of the VM (see the policy above); QMP is
 * NULL when QEMU is gone (a new top is then folded back offline with
 * `qemu-img commit`, so no guest write is lost).  Every decision weighs the
 * journal against what the VM runs on (query-block, query-block-jobs): no
 * file QEMU has open is removed, and a journal that cannot explain the VM
 * (records lost, cut, out of sequence) is kept and reported, as is a move
 * record (lsm/NAME.json) that cannot be read.  *DONE gets what was done,
 * one line per journal (g_strfreev; empty when nothing was pending), even
 * on failure; false with ERROR (one line per journal or record kept: why,
 * what the VM runs on now, the fix) when something is left for the
 * administrator. */
bool sm_lsm_recover (SmQmp *qmp, SmVmState *st, char ***done, GError **error);

/* QEMU is gone: folds D's new top into its old top with qemu-img commit
 * (the new top file stays), so that no guest write since the snapshot is
 * lost.  QEMU's image locks make it fail safely if a QEMU still has the
 * image open. */
bool sm_lsm_fold_offline (const SmLsmDisk *d, GError **error);

#endif /* SM_LSM_H */
