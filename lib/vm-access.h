/* libsnapmig — the narrow interface every command reaches a running VM
 * through (issue 8: "keep the code that touches the VM behind one narrow
 * interface: a later issue adds a libvirt way to reach the VM").
 *
 * STATUS: both backends exist (lib/vm-qmp.c and lib/vm-libvirt.c, issue
 * 14: opened by sm_vm_access_open_qmp and sm_vm_access_open_libvirt below,
 * driven by tests/tools/vm-access); no command calls this header yet: the
 * library still calls lib/qmp.h directly, in these places:
 *   blockjob.c  query-block, query-block-jobs, query-named-block-nodes
 *               (sm_block_vm_query), block-commit, block-job-complete,
 *               block-job-cancel
 *   rebase.c    block-stream, block-job-cancel, events BLOCK_JOB_COMPLETED /
 *               BLOCK_JOB_CANCELLED
 *   lsm-*.c     transaction of blockdev-snapshot-sync, drive-mirror,
 *               block-job-complete/cancel, stop, cont, query-status
 * A QMP backend is these calls moved behind the table below; a libvirt
 * backend maps each entry to one libvirt API (named per entry).
 *
 * Rules the interface keeps, so that both backends can honour them:
 *   - The VM is read as ONE view (SmBlockVm, lib/blockjob.h): disks, their
 *     chains top first with the format the hypervisor states for each layer,
 *     jobs, node names when there are any.  Callers never see raw replies.
 *     libvirt fills it from the domain XML (<disk><source>, <backingStore>,
 *     <format type>, <mirror>) and virDomainGetBlockJobInfo; node names are
 *     NULL there, so every call takes a disk and a layer by file, never a
 *     node name alone.
 *   - Outcomes are judged from a fresh view, never from an event's name
 *     (QEMU ends a cancel after READY with BLOCK_JOB_COMPLETED).  Events
 *     only wake waits.
 *   - Every call is bounded by the access's timeout and fails with
 *     SM_ERROR_INTERRUPTED when lib/interrupt.h has a request; the
 *     connection is never left half-read.
 *   - A job is named by the id snapmig gives it (sm_block_job_id); libvirt
 *     has one job per disk, named by the disk's target, so the QMP backend
 *     also refuses a second job on a disk.
 *   - Errors: SM_ERROR_QMP ("COMMAND: DESC", the hypervisor refused),
 *     SM_ERROR_DISCONNECTED (the VM or its manager is gone), SM_ERROR_TIMEOUT,
 *     SM_ERROR_INTERRUPTED; the message names the disk.
 */
#ifndef SM_VM_ACCESS_H
#define SM_VM_ACCESS_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-c/json.h>

#include "blockjob.h"
#include "error.h"

typedef struct SmVmAccess SmVmAccess;

/* The guest's run state (query-status "status" / virDomainGetState). */
typedef enum {
  SM_VM_RUNNING,
  SM_VM_PAUSED,               /* stopped by someone (snapmig or not) */
  SM_VM_OTHER,                /* shutdown, crashed, in migration, ... */
  SM_VM_RUN_STATE_LAST
} SmVmRunState;

/* One disk of a snapshot: its new top, pre-created, formats stated. */
typedef struct {
  const char *disk;           /* as sm_block_disk_matches takes it */
  const char *new_top;        /* pre-created image, names the old top */
  const char *format;         /* "qcow2" */
} SmVmSnapshotDisk;

/* What a wait returns: a job (or the guest) changed; the caller then reads
 * a fresh view.  JOB is NULL for run-state changes. */
typedef struct {
  char *job;                  /* job id, or NULL */
  char *what;                 /* "ready", "completed", "cancelled", "error",
                                 "stopped", "resumed", "shutdown" (the
                                 guest is gone) */
  char *error;                /* the job's error message, or NULL */
} SmVmEvent;

void sm_vm_event_free (SmVmEvent *event);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmVmEvent, sm_vm_event_free)

typedef struct {
  const char *name;           /* "qmp", "libvirt" */

  /* ---- reading ------------------------------------------------------ */
  /* QMP: query-block + query-block-jobs + query-named-block-nodes {flat},
   *      replies checked as arrays (sm_block_vm_query).
   * libvirt: virDomainGetXMLDesc + virDomainGetBlockJobInfo per disk. */
  SmBlockVm *(*query_view) (SmVmAccess *vm, GError **error);
  /* QMP: query-status (object).  libvirt: virDomainGetState. */
  bool (*query_run_state) (SmVmAccess *vm, SmVmRunState *state,
                           GError **error);

  /* ---- the guest ---------------------------------------------------- */
  /* QMP: stop / cont.  libvirt: virDomainSuspend / virDomainResume. */
  bool (*pause) (SmVmAccess *vm, GError **error);
  bool (*resume) (SmVmAccess *vm, GError **error);

  /* ---- chains -------------------------------------------------------- */
  /* All disks or none.  QMP: transaction of blockdev-snapshot-sync
   * {mode: existing, format}.  libvirt: virDomainSnapshotCreateXML
   * (DISK_ONLY | REUSE_EXT | NO_METADATA | ATOMIC). */
  bool (*snapshot) (SmVmAccess *vm, const SmVmSnapshotDisk *disks,
                    size_t n_disks, GError **error);
  /* Mirror DISK's top into the pre-created TARGET whose lower layers come
   * later.  QMP: drive-mirror {sync: top, mode: existing, format,
   * copy-mode}.  libvirt: virDomainBlockCopy (REUSE_EXT | SHALLOW |
   * TRANSIENT_JOB). */
  bool (*mirror) (SmVmAccess *vm, const char *disk, const char *target,
                  const char *format, const char *job_id, bool write_blocking,
                  GError **error);
  /* Merge the layers above BASE (NULL: all) into DISK's top, writing
   * BACKING_FILE (relative) into it.  QMP: block-stream {base-node | base,
   * backing-file, speed}.  libvirt: virDomainBlockRebase (RELATIVE) /
   * virDomainBlockPull; libvirt takes no backing name: with RELATIVE it
   * writes BASE's name as the chain above BASE records it, so BACKING_FILE
   * must be that name (it is, for chains snapmig pre-created). */
  bool (*stream) (SmVmAccess *vm, const char *disk, const char *base,
                  const char *backing_file, uint64_t speed,
                  const char *job_id, GError **error);
  /* Fold DISK's active top into BASE.  QMP: block-commit (active).
   * libvirt: virDomainBlockCommit (ACTIVE), then complete. */
  bool (*commit) (SmVmAccess *vm, const char *disk, const char *base,
                  const char *job_id, GError **error);

  /* ---- jobs ---------------------------------------------------------- */
  /* Pivot a READY mirror or active commit.  QMP: block-job-complete.
   * libvirt: virDomainBlockJobAbort (PIVOT), which returns once libvirt
   * switched the disk (its live and persistent XML name the new top). */
  bool (*job_complete) (SmVmAccess *vm, const char *job_id, GError **error);
  /* QMP: block-job-cancel {force}.  libvirt: virDomainBlockJobAbort (0;
   * ASYNC).  A cancel after READY ends without pivot: read the view. */
  bool (*job_cancel) (SmVmAccess *vm, const char *job_id, bool force,
                      GError **error);
  /* Waits up to TIMEOUT_MS for the next job or run-state event; NULL with
   * SM_ERROR_TIMEOUT when none came.  QMP: BLOCK_JOB_*, STOP, RESUME.
   * libvirt: virConnectDomainEventRegisterAny (BLOCK_JOB_2, LIFECYCLE). */
  SmVmEvent *(*wait_event) (SmVmAccess *vm, int timeout_ms, GError **error);

  void (*free) (SmVmAccess *vm);
} SmVmAccessOps;

struct SmVmAccess {
  const SmVmAccessOps *ops;
  char *address;              /* for messages: the QMP socket, or the
                                 libvirt URI and domain name */
  int timeout_ms;             /* bound of every call */
  char *state_key;            /* what the VM's state is kept under
                                 (sm_vm_state_open): the QMP address, or
                                 "libvirt:UUID" (the domain's UUID, the
                                 same under any name or URI) */
};

/* ---- opening --------------------------------------------------------- */

/* Reaches the QEMU whose QMP monitor is ADDRESS (sm_qmp_connect; every
 * reply bounded by TIMEOUT_MS, 0 or less: SM_QMP_DEFAULT_TIMEOUT_MS): the
 * QMP backend (lib/vm-qmp.c).  Caller frees with sm_vm_access_free. */
SmVmAccess *sm_vm_access_open_qmp (const char *address, int timeout_ms,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* True when snapmig was built with libvirt (libvirt-dev, SM_HAVE_LIBVIRT). */
bool sm_vm_access_have_libvirt (void);

/* Reaches the running domain DOMAIN (name, or UUID) of the libvirt at URI
 * ("qemu:///system", "qemu+ssh://host/system", ...).  Starts the process's
 * libvirt event loop thread once (virEventRegisterDefaultImpl: the
 * BLOCK_JOB_2 and LIFECYCLE events that wake sm_vm_access_wait_job).
 * TIMEOUT_MS bounds the open (SM_ERROR_TIMEOUT naming URI: a daemon that
 * accepts the connection and never answers) and each wait of the access (0
 * or less: 30 s); a libvirt call on the open connection is bounded by its
 * keepalive (a daemon that stops answering is SM_ERROR_DISCONNECTED after
 * about 15 s).
 * Errors: SM_ERROR_UNSUPPORTED "snapmig was built without libvirt (install
 * libvirt-dev and rebuild)"; SM_ERROR_IO, libvirt's word, when URI cannot
 * be opened; SM_ERROR_NOT_FOUND naming DOMAIN and URI; SM_ERROR_INVALID
 * when the domain is not running.  Caller frees with sm_vm_access_free. */
SmVmAccess *sm_vm_access_open_libvirt (const char *uri, const char *domain,
                                       int timeout_ms, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

void sm_vm_access_free (SmVmAccess *vm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmVmAccess, sm_vm_access_free)

/* ---- shared waits (vm-access.c), the same for every backend ----------- */

typedef enum {
  SM_VM_JOB_READY,            /* the job can be completed (pivoted) */
  SM_VM_JOB_GONE,             /* the job ended, whichever way */
  SM_VM_JOB_WAIT_LAST
} SmVmJobWait;

/* Waits up to TIMEOUT_MS (< 0: the access's timeout) until job JOB_ID
 * reached WANT, judged from fresh views; events only cut the polls short.
 * A job that ends before READY is SM_ERROR_FAILED naming it, with the
 * error of its event when one came.  SM_ERROR_TIMEOUT names the job and
 * what was awaited; SM_ERROR_INTERRUPTED on a signal (interrupt.h). */
bool sm_vm_access_wait_job (SmVmAccess *vm, const char *job_id,
                            SmVmJobWait want, int timeout_ms, GError **error);

#endif /* SM_VM_ACCESS_H */
