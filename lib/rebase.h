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
 * Plan, then execute: sm_rebase_plan is pure: it reads the VM view the
 * caller queried (lib/blockjob.h, sm_block_vm_query) and returns the steps
 * and the block-stream command as data, printed by --dry-run and checked by
 * unit tests without QEMU.  sm_rebase_execute takes the VM's lock, checks
 * the chain has not changed, and runs the plan's steps (block-stream, wait,
 * verify), journaling one record before and one after each (lib/journal.h,
 * header op "rebase"), then verifies the result both in QEMU and in the image
 * header on disk.
 *
 * Interruptions.  block-stream changes nothing visible until the job
 * completes: QEMU then rewrites the active image's backing name in one
 * header write and drops the merged layers, so at every moment the disk runs
 * on one complete chain, the old one or the new one.  A rebase killed at any
 * point leaves its journal: `snapmig rebase` again (which waits for its own
 * job when QEMU still runs it, job id snapmig-rebase-DISK) or `snapmig
 * recover` (sm_rebase_recover) finishes it.  SIGINT, SIGTERM or SIGHUP
 * (lib/interrupt.h) while the job runs cancels the job (block-job-cancel:
 * the disk stays on its old chain, the data already copied into the active
 * layer is the guest's own), closes the journal and fails with
 * SM_ERROR_INTERRUPTED; a job that completed first is verified and reported
 * as done, still with SM_ERROR_INTERRUPTED.
 */
#ifndef SM_REBASE_H
#define SM_REBASE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-c/json.h>

#include "blockjob.h"
#include "error.h"
#include "qmp.h"
#include "state.h"

/* One layer of a disk's chain as the running QEMU sees it. */
typedef struct {
  char *filename;      /* QEMU's name for the image (query-block filename) */
  char *format;        /* "qcow2", "raw", ... */
  char *node_name;     /* the format node's name, or NULL when QEMU's node
                          list does not single it out */
  char *backing_name;  /* the backing name written in this layer's header,
                          or NULL for the last layer */
} SmRebaseLayer;

/* The executor's steps, in order; each is journaled "begin" and "end". */
typedef enum {
  SM_REBASE_STEP_STREAM,     /* block-stream: start the job */
  SM_REBASE_STEP_WAIT,       /* wait for the job's end (progress, timeout,
                                interruption: cancel) */
  SM_REBASE_STEP_VERIFY,     /* the chain in QEMU and the header on disk */
  SM_REBASE_STEP_LAST
} SmRebaseStepKind;

/* "block-stream", "wait", "verify". */
const char *sm_rebase_step_kind_to_string (SmRebaseStepKind kind);

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
  bool job_running;    /* QEMU already runs this disk's rebase job (job_id;
                          an earlier snapmig was killed): the plan waits for
                          it instead of starting one */
  GPtrArray *expected; /* char *: the chain's files once the plan ran, top
                          first */
  SmRebaseStepKind steps[SM_REBASE_STEP_LAST];
  guint n_steps;       /* 0: nothing to do */
} SmRebasePlan;

void sm_rebase_plan_free (SmRebasePlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmRebasePlan, sm_rebase_plan_free)

/* Plans the rebase of DISK (a query-block device name, a qdev id, or the
 * active node's name) of the VM view VM (sm_block_vm_query; not changed)
 * onto BASE: NULL to merge every backing layer, else an image of the disk's
 * chain named by its node name or by a path (absolute, or relative to the
 * current directory; matched by device and inode, so a symlink or "../x"
 * spelling of the same file works).  SPEED is the job's bandwidth limit in
 * bytes per second (0: none).  No QEMU: the only outside reads are stat()
 * and realpath() of the paths involved.  When VM lists this disk's rebase
 * job (an earlier run was killed) the plan waits for it (job_running).
 * Errors: an unknown disk is SM_ERROR_NOT_FOUND naming it and the disks the
 * VM has; another job on the disk (one QEMU names by the disk's device) is
 * SM_ERROR_BUSY naming it; a BASE that is not below the active layer is
 * SM_ERROR_NOT_FOUND naming the disk and listing its chain
 * (SM_ERROR_INVALID when BASE is the active layer itself).  Caller frees.
 */
SmRebasePlan *sm_rebase_plan (const SmBlockVm *vm, const char *disk,
                              const char *base, uint64_t speed,
                              GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The plan as JSON: {"disk", "device", "job-id", "chain": [{"filename",
 * "format", "node-name", "backing-name"}], "base": filename or null,
 * "backing-file", "speed", "merged": [filenames streamed into the active
 * layer], "expected-chain": [filenames], "job-running": bool, "steps":
 * ["block-stream", "wait", "verify"], "command": the QMP command or null}.
 * It is also the header of the rebase journal.  New reference.
 */
/* rebase's result: {"disk","backing-file" (null: standalone),"merged"
 * (false: nothing was to merge)}.  Caller puts. */
json_object *sm_rebase_result_json (const SmRebasePlan *plan)
  G_GNUC_WARN_UNUSED_RESULT;
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
 * no longer the planned one), first finishes what the journals of earlier
 * rebases of this disk left (sm_rebase_recover; the journal of the job the
 * plan waits for is taken over), then runs the plan's steps, each
 * journaled: starts block-stream and waits for its end, polling
 * query-block-jobs for PROGRESS (may be NULL).  A job that ends with an
 * error is SM_ERROR_QMP naming the disk and carrying QEMU's message;
 * TIMEOUT_S > 0 bounds the wait: the job is then cancelled (the chain stays
 * as it was) and the error is SM_ERROR_TIMEOUT; an interruption
 * (lib/interrupt.h) cancels it the same way (SM_ERROR_INTERRUPTED).
 * Afterwards checks with query-block that the chain is the active layer
 * over the base's chain (or the active layer alone) and that the active
 * image's header on disk names the base by the planned relative name
 * (SM_ERROR_FAILED otherwise).  The journal is removed on every path where
 * the job is known to be over; it stays only when a job could not be
 * stopped.  A plan with no steps only takes the lock, finishes earlier
 * journals and returns true.
 *
 * Test hook: SNAPMIG_TEST_REBASE_SIGNAL=N:SIG raises signal SIG (a number)
 * in the process right after the journal's Nth step record (1 = "begin" of
 * the first step), so tests can kill or interrupt a rebase at every
 * journaled step.
 */
bool sm_rebase_execute (SmQmp *qmp, const SmRebasePlan *plan,
                        const char *state_dir, unsigned timeout_s,
                        SmRebaseProgressFunc progress, void *opaque,
                        GError **error);

/* recover's part for an interrupted rebase: the journal at PATH and its
 * RECORDS (header first), of the VM behind QMP (NULL when QEMU is gone).
 * Decides from the journal and query-block: a job QEMU still runs is
 * reported and its journal kept (`snapmig rebase` again waits for it);
 * otherwise the disk runs on its old chain (job cancelled or never started)
 * or on the planned one (checked on disk too), both complete, and the
 * journal is removed.  Without QEMU the images on disk hold one of the two
 * complete chains (QEMU rewrites the backing name only at completion): the
 * journal is removed.  A header without the plan is SM_ERROR_INVALID and
 * the journal is kept.  Returns what was done, for the user (caller frees).
 */
char *sm_rebase_recover (SmQmp *qmp, SmVmState *st, const char *path,
                         json_object *records, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The canonical physical path of PATH: realpath() when it resolves, else
 * the lexical canonical form.  Caller frees. */
char *sm_rebase_physical_path (const char *path) G_GNUC_WARN_UNUSED_RESULT;

/* The path of TARGET relative to the directory DIR ("base.qcow2",
 * "../other/base.qcow2"); both must be absolute and canonical (no "." or ".."
 * components).  Pure string work.  Caller frees.
 */
char *sm_rebase_relative_path (const char *dir, const char *target)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_REBASE_H */
