/* libsnapmig — the libvirt backend of vm-access.h (issue 14): a running
 * domain reached through libvirt's public C API, so that libvirt's live and
 * persistent XML follow every change snapmig makes (a second QMP client
 * would leave libvirt's view stale).
 *
 * libvirt names a disk's block job by the disk's target ("vda") and runs
 * one per disk; snapmig's job ids are mapped to targets here.  The view is
 * read from the live domain XML (libvirt states every layer's format and
 * file; node names are not part of its API) and virDomainGetBlockJobInfo.
 * Events (BLOCK_JOB_2, LIFECYCLE) arrive on the process's libvirt event
 * loop thread and are queued for wait_event.
 */
#include "vm-access.h"

#ifdef SM_HAVE_LIBVIRT

#include <string.h>
/* The enums' _LAST values, so that -Wswitch-enum sees every case. */
#define VIR_ENUM_SENTINELS
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "interrupt.h"
#include "vm-libvirt.h"
#include "vm-libvirt-migrate.h"

#define DEFAULT_TIMEOUT_MS 30000
#define WAIT_SLICE_MS 100

typedef struct {
  SmVmAccess parent;          /* first: an SmVmAccess * is one of these */
  virConnectPtr conn;
  virDomainPtr dom;
  char *domain;
  GAsyncQueue *events;        /* SmVmEvent *; a reference is the callbacks' */
  int cb_job;                 /* callback ids, -1 when not registered */
  int cb_life;
  GHashTable *job_disks;      /* snapmig job id → disk target */
} SmVmLibvirt;

static SmVmLibvirt *
lv (SmVmAccess *vm)
{
  return (SmVmLibvirt *) vm;
}

/* ---- errors ----------------------------------------------------------- */

/* libvirt's default handler prints every error on stderr: the library
 * never prints, and reads virGetLastError instead. */
static void
quiet_errors (void *opaque, virErrorPtr err)
{
  (void) opaque;
  (void) err;
}

/* Sets ERROR from libvirt's last error: "API (disk DISK): MESSAGE".  A lost
 * connection is SM_ERROR_DISCONNECTED, a refusal SM_ERROR_QMP (the
 * hypervisor's manager refused, as QEMU does for the QMP backend). */
static void
set_virt_error (GError **error, const char *api, const char *disk)
{
  virErrorPtr e = virGetLastError ();
  const char *msg = e && e->message ? e->message : "unknown libvirt error";
  int code = SM_ERROR_QMP;

  if (e && (e->domain == VIR_FROM_RPC || e->code == VIR_ERR_NO_CONNECT
            || e->code == VIR_ERR_SYSTEM_ERROR))
    code = SM_ERROR_DISCONNECTED;
  else if (e && e->code == VIR_ERR_NO_DOMAIN)
    code = SM_ERROR_DISCONNECTED;
  else if (e && e->code == VIR_ERR_OPERATION_TIMEOUT)
    code = SM_ERROR_TIMEOUT;
  if (disk)
    g_set_error (error, SM_ERROR, code, "%s (disk %s): %s", api, disk, msg);
  else
    g_set_error (error, SM_ERROR, code, "%s: %s", api, msg);
  sm_debug ("libvirt", "%s failed: code %d domain %d: %s", api,
            e ? e->code : -1, e ? e->domain : -1, msg);
}

/* ---- the event loop ----------------------------------------------------- */

static gpointer
event_loop (gpointer data)
{
  (void) data;
  for (;;)
    if (virEventRunDefaultImpl () < 0)
      g_usleep (100000);
  return NULL;
}

/* Once per process: libvirt's default event loop must be registered before
 * the first connection is opened, and runs for the process's life (as
 * virsh's does). */
static void
ensure_event_loop (void)
{
  static gsize once = 0;

  if (g_once_init_enter (&once)) {
    virInitialize ();
    virSetErrorFunc (NULL, quiet_errors);
    virEventRegisterDefaultImpl ();
    g_thread_unref (g_thread_new ("sm-libvirt-events", event_loop, NULL));
    g_once_init_leave (&once, 1);
  }
}

static void
push_event (GAsyncQueue *queue, const char *job, const char *what,
            const char *err)
{
  SmVmEvent *event = g_new0 (SmVmEvent, 1);

  event->job = g_strdup (job);
  event->what = g_strdup (what);
  event->error = g_strdup (err);
  g_async_queue_push (queue, event);
}

/* The callbacks only see the queue (their own reference): the access may
 * be freed while libvirt still runs one.  The job id is resolved when the
 * event is taken (wait_event), on the caller's thread. */
static void
on_block_job (virConnectPtr conn, virDomainPtr dom, const char *disk,
              int type, int status, void *opaque)
{
  const char *what = "error";

  (void) conn;
  (void) dom;
  (void) type;
  switch ((virConnectDomainEventBlockJobStatus) status) {
  case VIR_DOMAIN_BLOCK_JOB_COMPLETED: what = "completed"; break;
  case VIR_DOMAIN_BLOCK_JOB_CANCELED: what = "cancelled"; break;
  case VIR_DOMAIN_BLOCK_JOB_READY: what = "ready"; break;
  case VIR_DOMAIN_BLOCK_JOB_FAILED:
  case VIR_DOMAIN_BLOCK_JOB_LAST:
  default: break;
  }
  push_event (opaque, disk, what,
              strcmp (what, "error") == 0 ? "libvirt reports the job failed"
              : NULL);
}

static int
on_lifecycle (virConnectPtr conn, virDomainPtr dom, int event, int detail,
              void *opaque)
{
  const char *what = NULL;

  (void) conn;
  (void) dom;
  (void) detail;
  switch ((virDomainEventType) event) {
  case VIR_DOMAIN_EVENT_SUSPENDED: what = "stopped"; break;
  case VIR_DOMAIN_EVENT_RESUMED: what = "resumed"; break;
  case VIR_DOMAIN_EVENT_STOPPED:
  case VIR_DOMAIN_EVENT_CRASHED:
  case VIR_DOMAIN_EVENT_SHUTDOWN: what = "shutdown"; break;
  case VIR_DOMAIN_EVENT_DEFINED:
  case VIR_DOMAIN_EVENT_UNDEFINED:
  case VIR_DOMAIN_EVENT_STARTED:
  case VIR_DOMAIN_EVENT_PMSUSPENDED:
  case VIR_DOMAIN_EVENT_LAST:
  default: break;
  }
  if (what)
    push_event (opaque, NULL, what, NULL);
  return 0;
}

/* ---- the view ----------------------------------------------------------- */

/* The snapmig job id of the job on disk TARGET: the id it was started
 * with, else the target (a job snapmig did not start, or started from
 * another process). */
static const char *
job_id_of (SmVmLibvirt *l, const char *target)
{
  GHashTableIter it;
  gpointer id, disk;

  g_hash_table_iter_init (&it, l->job_disks);
  while (g_hash_table_iter_next (&it, &id, &disk))
    if (strcmp (disk, target) == 0)
      return id;
  return target;
}

static SmBlockJob *
query_job (SmVmLibvirt *l, const SmBlockDisk *disk, bool ready, bool *failed,
           GError **error)
{
  virDomainBlockJobInfo info;
  SmBlockJob *job;
  int r;

  memset (&info, 0, sizeof info);
  r = virDomainGetBlockJobInfo (l->dom, disk->device, &info,
                                VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES);
  if (r < 0) {
    virErrorPtr e = virGetLastError ();

    /* A driver without block jobs (libvirt's test driver) has none. */
    if (e && e->code == VIR_ERR_NO_SUPPORT)
      return NULL;
    set_virt_error (error, "virDomainGetBlockJobInfo", disk->device);
    *failed = true;
    return NULL;
  }
  if (r == 0)
    return NULL;
  job = g_new0 (SmBlockJob, 1);
  job->id = g_strdup (job_id_of (l, disk->device));
  switch ((virDomainBlockJobType) info.type) {
  case VIR_DOMAIN_BLOCK_JOB_TYPE_PULL: job->type = g_strdup ("stream"); break;
  case VIR_DOMAIN_BLOCK_JOB_TYPE_COPY: job->type = g_strdup ("mirror"); break;
  case VIR_DOMAIN_BLOCK_JOB_TYPE_COMMIT:
  case VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT:
    job->type = g_strdup ("commit"); break;
  case VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP: job->type = g_strdup ("backup"); break;
  case VIR_DOMAIN_BLOCK_JOB_TYPE_UNKNOWN:
  case VIR_DOMAIN_BLOCK_JOB_TYPE_LAST:
  default: job->type = g_strdup ("unknown"); break;
  }
  job->ready = ready;
  job->status = g_strdup (ready ? "ready" : "running");
  job->offset = info.cur;
  job->len = info.end;
  job->speed = (int64_t) info.bandwidth;
  return job;
}

static SmBlockVm *
lv_query_view (SmVmAccess *vm, GError **error)
{
  SmVmLibvirt *l = lv (vm);
  g_autofree char *xml = virDomainGetXMLDesc (l->dom, 0);
  g_autoptr(GHashTable) ready = NULL;
  g_autoptr(SmBlockVm) view = NULL;

  if (!xml) {
    set_virt_error (error, "virDomainGetXMLDesc", NULL);
    return NULL;
  }
  view = sm_vm_libvirt_parse_xml (xml, &ready, error);
  if (!view)
    return NULL;
  for (guint i = 0; i < view->disks->len; i++) {
    SmBlockDisk *disk = view->disks->pdata[i];
    SmBlockJob *job;
    bool failed = false;

    if (!disk->device || !disk->file)
      continue;
    job = query_job (l, disk, g_hash_table_contains (ready, disk->device),
                     &failed, error);
    if (failed)
      return NULL;
    if (job)
      g_ptr_array_add (view->jobs, job);
  }
  return g_steal_pointer (&view);
}

/* The target of the disk NAME names (a target, or its alias as a qdev
 * path or id), from a fresh view.  Caller frees. */
static char *
disk_target (SmVmAccess *vm, const char *name, GError **error)
{
  g_autoptr(SmBlockVm) view = lv_query_view (vm, error);
  SmBlockDisk *disk;

  if (!view)
    return NULL;
  disk = sm_block_vm_find_disk (view, name);
  if (!disk) {
    sm_block_set_no_disk (error, view->disks, name);
    return NULL;
  }
  return g_strdup (disk->device);
}

/* The target job JOB_ID runs on: the one it was started on, else JOB_ID
 * itself names the disk.  Caller frees. */
static char *
job_target (SmVmAccess *vm, const char *job_id, GError **error)
{
  const char *t = g_hash_table_lookup (lv (vm)->job_disks, job_id);

  return t ? g_strdup (t) : disk_target (vm, job_id, error);
}

static void
remember_job (SmVmAccess *vm, const char *job_id, const char *target)
{
  g_hash_table_replace (lv (vm)->job_disks, g_strdup (job_id ? job_id : target),
                        g_strdup (target));
}

/* The end of an entry that starts a job on disk DEV: R is API's result. */
static bool
job_started (SmVmAccess *vm, int r, const char *api, const char *dev,
             const char *job_id, GError **error)
{
  if (r < 0) {
    set_virt_error (error, api, dev);
    return false;
  }
  remember_job (vm, job_id, dev);
  return true;
}

/* ---- entries ------------------------------------------------------------ */

static bool
lv_query_run_state (SmVmAccess *vm, SmVmRunState *state, GError **error)
{
  int st, reason;

  if (virDomainGetState (lv (vm)->dom, &st, &reason, 0) < 0) {
    set_virt_error (error, "virDomainGetState", NULL);
    return false;
  }
  *state = st == VIR_DOMAIN_RUNNING ? SM_VM_RUNNING
    : st == VIR_DOMAIN_PAUSED ? SM_VM_PAUSED : SM_VM_OTHER;
  return true;
}

/* A domain call that takes nothing else: FN named API. */
static bool
domain_call (SmVmAccess *vm, int (*fn) (virDomainPtr), const char *api,
             GError **error)
{
  if (fn (lv (vm)->dom) < 0) {
    set_virt_error (error, api, NULL);
    return false;
  }
  return true;
}

static bool
lv_pause (SmVmAccess *vm, GError **error)
{
  return domain_call (vm, virDomainSuspend, "virDomainSuspend", error);
}

static bool
lv_resume (SmVmAccess *vm, GError **error)
{
  return domain_call (vm, virDomainResume, "virDomainResume", error);
}

/* The <domainsnapshot> of an external disk-only snapshot onto DISKS' new
 * tops; every other disk is listed with snapshot='no' (libvirt would
 * otherwise give it a new top of its own choosing). */
static char *
snapshot_xml (const SmBlockVm *view, const SmVmSnapshotDisk *disks,
              size_t n_disks, GError **error)
{
  g_autoptr(GString) x = g_string_new ("<domainsnapshot><disks>\n");
  g_autofree bool *listed = g_new0 (bool, view->disks->len);

  for (size_t i = 0; i < n_disks; i++) {
    SmBlockDisk *d = sm_block_vm_find_disk (view, disks[i].disk);
    g_autofree char *file = NULL, *fmt = NULL, *target = NULL;
    guint k;

    if (!d) {
      sm_block_set_no_disk (error, view->disks, disks[i].disk);
      return NULL;
    }
    g_ptr_array_find (view->disks, d, &k);
    listed[k] = true;
    target = g_markup_escape_text (d->device, -1);
    file = g_markup_escape_text (disks[i].new_top, -1);
    fmt = g_markup_escape_text (disks[i].format, -1);
    g_string_append_printf (x, "<disk name='%s' snapshot='external' "
                            "type='file'><driver type='%s'/><source "
                            "file='%s'/></disk>\n", target, fmt, file);
  }
  for (guint k = 0; k < view->disks->len; k++) {
    SmBlockDisk *d = view->disks->pdata[k];
    g_autofree char *target = NULL;

    if (listed[k] || !d->device)
      continue;
    target = g_markup_escape_text (d->device, -1);
    g_string_append_printf (x, "<disk name='%s' snapshot='no'/>\n", target);
  }
  g_string_append (x, "</disks></domainsnapshot>");
  return g_string_free (g_steal_pointer (&x), false);
}

static bool
lv_snapshot (SmVmAccess *vm, const SmVmSnapshotDisk *disks, size_t n_disks,
             GError **error)
{
  g_autoptr(SmBlockVm) view = lv_query_view (vm, error);
  g_autofree char *xml = NULL;
  virDomainSnapshotPtr snap;

  if (!view)
    return false;
  xml = snapshot_xml (view, disks, n_disks, error);
  if (!xml)
    return false;
  sm_debug ("libvirt", "virDomainSnapshotCreateXML %s: %s", vm->address, xml);
  snap = virDomainSnapshotCreateXML (lv (vm)->dom, xml,
                                     VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
                                     | VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT
                                     | VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
                                     | VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA);
  if (!snap) {
    set_virt_error (error, "virDomainSnapshotCreateXML",
                    n_disks == 1 ? disks[0].disk : NULL);
    return false;
  }
  virDomainSnapshotFree (snap);
  return true;
}

static bool
lv_mirror (SmVmAccess *vm, const char *disk, const char *target,
           const char *format, const char *job_id, bool write_blocking,
           GError **error)
{
  g_autofree char *dev = disk_target (vm, disk, error);
  g_autofree char *file = NULL, *fmt = NULL, *xml = NULL;
  unsigned int flags = VIR_DOMAIN_BLOCK_COPY_SHALLOW
    | VIR_DOMAIN_BLOCK_COPY_REUSE_EXT | VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB;

  if (!dev)
    return false;
  file = g_markup_escape_text (target, -1);
  fmt = g_markup_escape_text (format, -1);
  xml = g_strdup_printf ("<disk type='file'><driver type='%s'/>"
                         "<source file='%s'/></disk>", fmt, file);
  if (write_blocking)
    flags |= VIR_DOMAIN_BLOCK_COPY_SYNCHRONOUS_WRITES;
  return job_started (vm, virDomainBlockCopy (lv (vm)->dom, dev, xml, NULL,
                                              0, flags),
                      "virDomainBlockCopy", dev, job_id, error);
}

static bool
lv_stream (SmVmAccess *vm, const char *disk, const char *base,
           const char *backing_file, uint64_t speed, const char *job_id,
           GError **error)
{
  g_autofree char *dev = disk_target (vm, disk, error);
  int r;

  (void) backing_file;
  if (!dev)
    return false;
  if (base)
    r = virDomainBlockRebase (lv (vm)->dom, dev, base, speed,
                              VIR_DOMAIN_BLOCK_REBASE_RELATIVE
                              | VIR_DOMAIN_BLOCK_REBASE_BANDWIDTH_BYTES);
  else
    r = virDomainBlockPull (lv (vm)->dom, dev, speed,
                            VIR_DOMAIN_BLOCK_PULL_BANDWIDTH_BYTES);
  return job_started (vm, r, base ? "virDomainBlockRebase"
                      : "virDomainBlockPull", dev, job_id, error);
}

static bool
lv_commit (SmVmAccess *vm, const char *disk, const char *base,
           const char *job_id, GError **error)
{
  g_autofree char *dev = disk_target (vm, disk, error);
  unsigned int flags = VIR_DOMAIN_BLOCK_COMMIT_ACTIVE;

  if (!dev)
    return false;
  if (!base)
    flags |= VIR_DOMAIN_BLOCK_COMMIT_SHALLOW;
  return job_started (vm, virDomainBlockCommit (lv (vm)->dom, dev, base,
                                                NULL, 0, flags),
                      "virDomainBlockCommit", dev, job_id, error);
}

/* virDomainBlockJobAbort (FLAGS) of job JOB_ID, API for messages. */
static bool
job_abort (SmVmAccess *vm, const char *job_id, unsigned int flags,
           const char *api, GError **error)
{
  g_autofree char *dev = job_target (vm, job_id, error);

  if (!dev)
    return false;
  if (virDomainBlockJobAbort (lv (vm)->dom, dev, flags) < 0) {
    set_virt_error (error, api, dev);
    return false;
  }
  return true;
}

static bool
lv_job_complete (SmVmAccess *vm, const char *job_id, GError **error)
{
  return job_abort (vm, job_id, VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT,
                    "virDomainBlockJobAbort (pivot)", error);
}

/* libvirt has no forced cancel: FORCE is the QMP backend's. */
static bool
lv_job_cancel (SmVmAccess *vm, const char *job_id, bool force,
               GError **error)
{
  (void) force;
  return job_abort (vm, job_id, VIR_DOMAIN_BLOCK_JOB_ABORT_ASYNC,
                    "virDomainBlockJobAbort", error);
}

static SmVmEvent *
lv_wait_event (SmVmAccess *vm, int timeout_ms, GError **error)
{
  SmVmLibvirt *l = lv (vm);
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  for (;;) {
    gint64 left = deadline - g_get_monotonic_time ();
    SmVmEvent *event;

    if (sm_interrupt_check (error))
      return NULL;
    event = g_async_queue_timeout_pop
      (l->events, MAX (0, MIN (left, (gint64) WAIT_SLICE_MS * 1000)));
    if (event) {
      if (event->job) {
        char *id = g_strdup (job_id_of (l, event->job));

        g_free (event->job);
        event->job = id;
      }
      return event;
    }
    if (g_get_monotonic_time () >= deadline)
      break;
  }
  if (virConnectIsAlive (l->conn) != 1) {
    g_set_error (error, SM_ERROR, SM_ERROR_DISCONNECTED,
                 "lost the connection to libvirt (%s)", vm->address);
    return NULL;
  }
  g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
               "no event from %s within %d ms", vm->address, timeout_ms);
  return NULL;
}

static void
lv_free (SmVmAccess *vm)
{
  SmVmLibvirt *l = lv (vm);

  if (l->cb_job >= 0)
    virConnectDomainEventDeregisterAny (l->conn, l->cb_job);
  if (l->cb_life >= 0)
    virConnectDomainEventDeregisterAny (l->conn, l->cb_life);
  if (l->dom)
    virDomainFree (l->dom);
  if (l->conn)
    virConnectClose (l->conn);
  g_async_queue_unref (l->events);
  g_hash_table_unref (l->job_disks);
  g_free (l->domain);
  g_free (vm->address);
  g_free (vm->state_key);
  g_free (l);
}

static const SmVmAccessOps libvirt_ops = {
  .name = "libvirt",
  .query_view = lv_query_view,
  .query_run_state = lv_query_run_state,
  .pause = lv_pause,
  .resume = lv_resume,
  .snapshot = lv_snapshot,
  .mirror = lv_mirror,
  .stream = lv_stream,
  .commit = lv_commit,
  .job_complete = lv_job_complete,
  .job_cancel = lv_job_cancel,
  .wait_event = lv_wait_event,
  .free = lv_free,
};

static bool
register_events (SmVmLibvirt *l, GError **error)
{
  l->cb_job = virConnectDomainEventRegisterAny
    (l->conn, l->dom, VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
     VIR_DOMAIN_EVENT_CALLBACK (on_block_job), g_async_queue_ref (l->events),
     (virFreeCallback) g_async_queue_unref);
  if (l->cb_job < 0) {
    g_async_queue_unref (l->events);
    set_virt_error (error, "virConnectDomainEventRegisterAny (BLOCK_JOB_2)",
                    NULL);
    return false;
  }
  l->cb_life = virConnectDomainEventRegisterAny
    (l->conn, l->dom, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
     VIR_DOMAIN_EVENT_CALLBACK (on_lifecycle), g_async_queue_ref (l->events),
     (virFreeCallback) g_async_queue_unref);
  if (l->cb_life < 0) {
    g_async_queue_unref (l->events);
    set_virt_error (error, "virConnectDomainEventRegisterAny (LIFECYCLE)",
                    NULL);
    return false;
  }
  return true;
}

SmVmAccess *
sm_vm_access_open_libvirt (const char *uri, const char *domain,
                           int timeout_ms, GError **error)
{
  SmVmLibvirt *l = g_new0 (SmVmLibvirt, 1);
  g_autoptr(SmVmAccess) vm = &l->parent;

  ensure_event_loop ();
  vm->ops = &libvirt_ops;
  vm->address = g_strdup_printf ("domain %s at %s", domain, uri);
  vm->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
  l->domain = g_strdup (domain);
  l->cb_job = l->cb_life = -1;
  l->events = g_async_queue_new_full ((GDestroyNotify) sm_vm_event_free);
  l->job_disks = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                        g_free);
  l->conn = sm_vm_libvirt_connect (uri, vm->timeout_ms, error);
  if (!l->conn)
    return NULL;
  l->dom = virDomainLookupByName (l->conn, domain);
  if (!l->dom)
    l->dom = virDomainLookupByUUIDString (l->conn, domain);
  if (!l->dom) {
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "libvirt at %s has no domain %s (virsh -c %s list --all)",
                 uri, domain, uri);
    return NULL;
  }
  if (virDomainIsActive (l->dom) != 1) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "domain %s at %s is not running (virsh -c %s start %s)",
                 domain, uri, uri, domain);
    return NULL;
  }
  {
    char uuid[VIR_UUID_STRING_BUFLEN];

    if (virDomainGetUUIDString (l->dom, uuid) < 0) {
      set_virt_error (error, "virDomainGetUUIDString", NULL);
      return NULL;
    }
    vm->state_key = g_strdup_printf ("libvirt:%s", uuid);
  }
  if (!register_events (l, error))
    return NULL;
  return g_steal_pointer (&vm);
}

#endif /* SM_HAVE_LIBVIRT */
