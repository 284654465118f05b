/* libsnapmig — the commands' orchestration, shared by snapmig(1) and the
 * public API (include/snapmig.h): connect to the VM, open its state and
 * take its lock, ask QEMU, plan, and run the plan.  Nothing is printed:
 * what a command reports comes back as data or through callbacks.
 */
#ifndef SM_OPS_H
#define SM_OPS_H

#include <stdbool.h>
#include <glib.h>

#include "error.h"
#include "lsm.h"
#include "qmp.h"
#include "state.h"
#include "validate.h"
#include "vm-access.h"

/* The reply timeout when none is given: 30 s, or the environment's
 * SNAPMIG_DEFAULT_TIMEOUT (seconds; for tests).  A bad value of it gives
 * the 30 s and sets *WARNING (caller frees) to say so. */
#define SM_OP_DEFAULT_TIMEOUT_S 30
#define SM_OP_TIMEOUT_MAX_S (G_MAXINT / 1000)
int sm_op_default_timeout_s (char **warning);

/* The one way to connect to a VM's monitor ADDRESS: sm_qmp_connect bounded
 * by REPLY_TIMEOUT_S, and the same bound for every reply.  Caller frees. */
SmQmp *sm_op_connect (const char *address, int reply_timeout_s,
                      GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* The VM an operation works on: reached by its QMP monitor ADDRESS, or
 * (issue 14) by libvirt: domain DOMAIN of the libvirt at URI. */
typedef struct {
  const char *address;         /* QMP socket path or HOST:PORT, or NULL */
  const char *state_dir;       /* NULL: sm_state_default_dir () */
  int reply_timeout_s;         /* > 0: each connect and reply */
  int wait_timeout_ms;         /* waits for progress; < 0: none */
  const char *uri;             /* libvirt URI (with DOMAIN), or NULL */
  const char *domain;          /* libvirt domain name or UUID, or NULL */
} SmOpTarget;

/* True when T names its VM one way: ADDRESS alone, or URI with DOMAIN.
 * Else SM_ERROR_INVALID (a usage error) naming the options of COMMAND:
 * --qmp with --connect, --connect without --domain (or the reverse), or
 * none of them. */
bool sm_op_target_check (const char *command, const SmOpTarget *t,
                         GError **error);

/* How T's VM is named in messages and reports: the QMP address, or
 * "DOMAIN at URI".  Caller frees. */
char *sm_op_target_label (const SmOpTarget *t) G_GNUC_WARN_UNUSED_RESULT;

/* True when T reaches its VM through libvirt. */
bool sm_op_target_is_libvirt (const SmOpTarget *t);

/* Reaches T's VM through lib/vm-access.h: the QMP backend for ADDRESS, the
 * libvirt backend for URI and DOMAIN (SM_ERROR_UNSUPPORTED when snapmig
 * was built without libvirt).  Every call bounded by T's reply timeout.
 * Caller frees with sm_vm_access_free. */
SmVmAccess *sm_op_access (const SmOpTarget *t, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* The command that needs more of the VM than its view and has no libvirt
 * way yet: SM_ERROR_UNSUPPORTED naming COMMAND when T is a libvirt one. */
bool sm_op_require_qmp (const char *command, const SmOpTarget *t,
                        GError **error);

/* Connects to T's QEMU and, when ST is not NULL, opens the VM's state and
 * (LOCK) takes its lock. */
bool sm_op_open (const SmOpTarget *t, bool lock, SmQmp **qmp, SmVmState **st,
                 GError **error);

/* What an operation did, for its caller to report. */
typedef struct {
  SmLsmPlan *plan;             /* the plan run or formatted (owned) */
  char *plan_text;             /* dry run: the plan as text (owned) */
  bool usage;                  /* the error is a bad combination of
                                  arguments (the CLI's exit status 2) */
  bool waited;                 /* create: the wait ran to ready */
  SmLsmPivotResult pivot;      /* pivot: what was done */
} SmOpResult;
void sm_op_result_clear (SmOpResult *r);

/* Called with each line of what pivot and abort did first: the guest an
 * interrupted pivot left paused, resumed (sm_lsm_resume_interrupted). */
typedef void (*SmOpResumed) (const char *line, void *opaque);

typedef struct {
  /* the snapshot: a <domainsnapshot> file or text, or NAME with DISKSPECS
   * and MIRROR_DOMAIN (sm_lsm_def_from_options) */
  const char *xml_file;
  const char *xml_text;
  const char *name;
  const char *const *diskspecs;
  const char *mirror_domain;
  bool require_mirror;         /* --mirror: some disk must be mirrored */
  bool dry_run;                /* plan only (no state opened, no lock) */
  bool wait;                   /* sm_lsm_create_wait when there are mirrors */
  SmLsmCreateOptions options;
  SmLsmProgress progress;      /* the wait's progress (may be NULL) */
  void *opaque;                /* PROGRESS's */
  SmLsmCreated created;        /* once the snapshot is taken (may be NULL) */
  void *created_opaque;
} SmOpCreateArgs;

/* `snapmig create`: the snapshot taken, its mirrors and copies started
 * (and waited for with A->wait).  R->plan is the plan; CREATED is called
 * once the snapshot is taken, before the wait. */
bool sm_op_create (const SmOpTarget *t, const SmOpCreateArgs *a,
                   SmOpResult *r, GError **error);

typedef struct {
  const char *snapshot;
  unsigned flags;              /* SM_LSM_DELETE_SOURCE */
  bool dry_run;                /* plan only (no lock) */
  SmLsmProgress progress;      /* may be NULL */
  void *opaque;                /* PROGRESS's */
  SmOpResumed resumed;         /* may be NULL */
  void *resumed_opaque;
} SmOpSwitchArgs;

/* `snapmig pivot`: R->plan and R->pivot say what was done. */
bool sm_op_pivot (const SmOpTarget *t, const SmOpSwitchArgs *a,
                  SmOpResult *r, GError **error);

/* `snapmig abort` (A's flags and progress unused). */
bool sm_op_abort (const SmOpTarget *t, const SmOpSwitchArgs *a,
                  SmOpResult *r, GError **error);

/* Waits until the move SNAPSHOT (NULL: the current snapshot) is ready:
 * every mirror ready, every copy done (sm_lsm_wait; no lock taken). */
bool sm_op_wait (const SmOpTarget *t, const char *snapshot,
                 SmLsmProgress progress, void *opaque, GError **error);

/* `snapmig status [SNAPSHOT]` (NULL: the current one): the document of
 * sm_lsm_status, and *NAME the snapshot shown; NULL *STATUS and *NAME with
 * true when nothing is moving (no current snapshot). */
bool sm_op_status (const SmOpTarget *t, const char *snapshot,
                   json_object **status, char **name, GError **error);

/* `snapmig validate DOMAINS [--qmp VMS[i].address]...`: every VM asked for
 * its open images, then the domains checked.  STATE_DIR NULL: the default.
 * Caller frees. */
SmValidateReport *sm_op_validate (const char *const *domains,
                                  const SmOpTarget *vms, size_t n_vms,
                                  const char *state_dir, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_OPS_H */
