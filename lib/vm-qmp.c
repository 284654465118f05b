/* libsnapmig — the QMP backend of vm-access.h: each entry is the QMP
 * command the library sends today (the table in docs/design.md, "Reaching
 * a VM"), on one SmQmp connection.  No command uses it yet; it exists so
 * that the same flows run on both backends (tests/tools/vm-access.c). */
#include "vm-access.h"

#include <string.h>

#include "json-util.h"
#include "lsm.h"
#include "qmp.h"

typedef struct {
  SmVmAccess parent;          /* first: an SmVmAccess * is one of these */
  SmQmp *qmp;
} SmVmQmp;

static SmQmp *
qmp_of (SmVmAccess *vm)
{
  return ((SmVmQmp *) vm)->qmp;
}

static SmBlockVm *
q_query_view (SmVmAccess *vm, GError **error)
{
  return sm_block_vm_query (qmp_of (vm), error);
}

static bool
q_query_run_state (SmVmAccess *vm, SmVmRunState *state, GError **error)
{
  g_autoptr(json_object) st = sm_qmp_execute_type (qmp_of (vm), "query-status",
                                                   NULL, json_type_object,
                                                   error);
  const char *s = st ? sm_json_get_string (st, "status") : NULL;

  if (!st)
    return false;
  *state = g_strcmp0 (s, "running") == 0 ? SM_VM_RUNNING
    : g_strcmp0 (s, "paused") == 0 ? SM_VM_PAUSED : SM_VM_OTHER;
  return true;
}

static bool
q_pause (SmVmAccess *vm, GError **error)
{
  return sm_qmp_run (qmp_of (vm), "stop", NULL, error);
}

static bool
q_resume (SmVmAccess *vm, GError **error)
{
  return sm_qmp_run (qmp_of (vm), "cont", NULL, error);
}

/* The disk NAME names in a fresh view (VIEW keeps it), or NULL. */
static SmBlockDisk *
find_disk (SmVmAccess *vm, const char *name, SmBlockVm **view,
           GError **error)
{
  SmBlockDisk *disk;

  *view = sm_block_vm_query (qmp_of (vm), error);
  if (!*view)
    return NULL;
  disk = sm_block_vm_find_disk (*view, name);
  if (!disk)
    sm_block_set_no_disk (error, (*view)->disks, name);
  return disk;
}

/* One transaction of blockdev-snapshot-sync {mode: existing} (the new
 * tops are qcow2: sm_lsm_snapshot_action). */
static bool
q_snapshot (SmVmAccess *vm, const SmVmSnapshotDisk *disks, size_t n_disks,
            GError **error)
{
  g_autoptr(SmBlockVm) view = sm_block_vm_query (qmp_of (vm), error);
  g_autoptr(json_object) actions = json_object_new_array ();

  if (!view)
    return false;
  for (size_t i = 0; i < n_disks; i++) {
    SmBlockDisk *bd = sm_block_vm_find_disk (view, disks[i].disk);
    g_autofree char *node = NULL;
    json_object *action;

    if (!bd) {
      sm_block_set_no_disk (error, view->disks, disks[i].disk);
      return false;
    }
    node = sm_lsm_new_node_name ("vm-access", i);
    action = json_object_new_object ();
    json_object_object_add (action, "type",
                            json_object_new_string ("blockdev-snapshot-sync"));
    json_object_object_add (action, "data",
                            sm_lsm_snapshot_action (bd, disks[i].new_top,
                                                    node));
    json_object_array_add (actions, action);
  }
  return sm_qmp_run (qmp_of (vm), "transaction",
                     sm_qmp_args (error, "j:actions",
                                  g_steal_pointer (&actions), NULL), error);
}

static bool
q_mirror (SmVmAccess *vm, const char *disk, const char *target,
          const char *format, const char *job_id, bool write_blocking,
          GError **error)
{
  g_autoptr(SmBlockVm) view = NULL;
  SmBlockDisk *bd = find_disk (vm, disk, &view, error);

  return bd && sm_qmp_run (qmp_of (vm), "drive-mirror",
                           sm_qmp_args (error, "s:device", sm_block_disk_id (bd),
                                        "s:job-id", job_id, "s:target", target,
                                        "s:format", format, "s:sync", "top",
                                        "s:mode", "existing", "S:copy-mode",
                                        write_blocking ? "write-blocking"
                                        : NULL, NULL), error);
}

static bool
q_stream (SmVmAccess *vm, const char *disk, const char *base,
          const char *backing_file, uint64_t speed, const char *job_id,
          GError **error)
{
  g_autoptr(SmBlockVm) view = NULL;
  SmBlockDisk *bd = find_disk (vm, disk, &view, error);

  return bd && sm_qmp_run (qmp_of (vm), "block-stream",
                           sm_qmp_args (error, "s:device", sm_block_disk_id (bd),
                                        "s:job-id", job_id, "S:base", base,
                                        "S:backing-file", backing_file,
                                        "P:speed", speed, NULL), error);
}

/* Without BASE, the top's own backing layer (libvirt's SHALLOW): QEMU's
 * default would be the chain's last. */
static bool
q_commit (SmVmAccess *vm, const char *disk, const char *base,
          const char *job_id, GError **error)
{
  g_autoptr(SmBlockVm) view = NULL;
  SmBlockDisk *bd = find_disk (vm, disk, &view, error);
  const SmBlockLayer *below = bd ? sm_block_disk_layer (bd, 1) : NULL;

  if (!bd)
    return false;
  if (!base && !below) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "block-commit: disk %s has no backing layer", disk);
    return false;
  }
  /* By node when QEMU named one (blockjob.h: sm_block_commit_active). */
  if (!base && !below->node_name)
    base = below->filename;
  return sm_qmp_run (qmp_of (vm), "block-commit",
                     sm_qmp_args (error, "s:device", sm_block_disk_id (bd),
                                  "s:job-id", job_id,
                                  "S:base-node", base ? NULL : below->node_name,
                                  "S:base", base, NULL), error);
}

static bool
q_job_complete (SmVmAccess *vm, const char *job_id, GError **error)
{
  return sm_qmp_run (qmp_of (vm), "block-job-complete",
                     sm_qmp_args (error, "s:device", job_id, NULL), error);
}

static bool
q_job_cancel (SmVmAccess *vm, const char *job_id, bool force, GError **error)
{
  return sm_qmp_run (qmp_of (vm), "block-job-cancel",
                     sm_qmp_args (error, "s:device", job_id, "B:force", force,
                                  NULL), error);
}

/* The events wait_event hands out, and what each says. */
static const struct {
  const char *event;
  const char *what;
} events[] = {
  { "BLOCK_JOB_READY", "ready" },
  { "BLOCK_JOB_COMPLETED", "completed" },
  { "BLOCK_JOB_CANCELLED", "cancelled" },
  { "BLOCK_JOB_ERROR", "error" },
  { "STOP", "stopped" },
  { "RESUME", "resumed" },
  { "SHUTDOWN", "shutdown" },
};

static const char *
event_what (json_object *event)
{
  const char *name = sm_json_get_string (event, "event");

  for (size_t i = 0; i < G_N_ELEMENTS (events); i++)
    if (g_strcmp0 (name, events[i].event) == 0)
      return events[i].what;
  return NULL;
}

static bool
known_event (json_object *event, void *opaque)
{
  (void) opaque;
  return event_what (event) != NULL;
}

static SmVmEvent *
q_wait_event (SmVmAccess *vm, int timeout_ms, GError **error)
{
  g_autoptr(json_object) e = sm_qmp_wait_event (qmp_of (vm), NULL, known_event,
                                                NULL, timeout_ms, error);
  json_object *data = NULL;
  SmVmEvent *event;

  if (!e)
    return NULL;
  json_object_object_get_ex (e, "data", &data);
  event = g_new0 (SmVmEvent, 1);
  event->what = g_strdup (event_what (e));
  if (g_str_has_prefix (sm_json_get_string (e, "event"), "BLOCK_JOB_")) {
    event->job = g_strdup (sm_json_get_string (data, "device"));
    event->error = g_strdup (sm_json_get_string (data, "error"));
  }
  return event;
}

static void
q_free (SmVmAccess *vm)
{
  sm_qmp_free (qmp_of (vm));
  g_free (vm->address);
  g_free (vm->state_key);
  g_free (vm);
}

static const SmVmAccessOps qmp_ops = {
  .name = "qmp",
  .query_view = q_query_view,
  .query_run_state = q_query_run_state,
  .pause = q_pause,
  .resume = q_resume,
  .snapshot = q_snapshot,
  .mirror = q_mirror,
  .stream = q_stream,
  .commit = q_commit,
  .job_complete = q_job_complete,
  .job_cancel = q_job_cancel,
  .wait_event = q_wait_event,
  .free = q_free,
};

SmVmAccess *
sm_vm_access_open_qmp (const char *address, int timeout_ms, GError **error)
{
  SmQmp *qmp = sm_qmp_connect (address, timeout_ms, error);
  SmVmQmp *q;

  if (!qmp)
    return NULL;
  sm_qmp_set_timeout (qmp, timeout_ms);
  q = g_new0 (SmVmQmp, 1);
  q->qmp = qmp;
  q->parent.ops = &qmp_ops;
  q->parent.address = g_strdup (address);
  q->parent.state_key = g_strdup (address);
  q->parent.timeout_ms = timeout_ms > 0 ? timeout_ms
    : SM_QMP_DEFAULT_TIMEOUT_MS;
  return &q->parent;
}
