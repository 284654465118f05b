/* libsnapmig — what every way of reaching a VM shares (see vm-access.h):
 * freeing, the waits built on the backends' entries, and the answer of a
 * build without libvirt. */
#include "vm-access.h"

#include "interrupt.h"

/* How long one wait for an event lasts before the view is read again: an
 * event may be missed (one that came before the wait began, or a backend
 * that has none for a change), so the view is never trusted to an event. */
#define POLL_MS 500

void
sm_vm_event_free (SmVmEvent *event)
{
  if (!event)
    return;
  g_free (event->job);
  g_free (event->what);
  g_free (event->error);
  g_free (event);
}

void
sm_vm_access_free (SmVmAccess *vm)
{
  if (vm)
    vm->ops->free (vm);
}

bool
sm_vm_access_have_libvirt (void)
{
#ifdef SM_HAVE_LIBVIRT
  return true;
#else
  return false;
#endif
}

#ifndef SM_HAVE_LIBVIRT
SmVmAccess *
sm_vm_access_open_libvirt (const char *uri, const char *domain,
                           int timeout_ms, GError **error)
{
  (void) timeout_ms;
  g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
               "cannot reach domain %s at %s: snapmig was built without "
               "libvirt (install libvirt-dev and rebuild)", domain, uri);
  return NULL;
}
#endif

static const char *
wait_name (SmVmJobWait want)
{
  static const char *const names[SM_VM_JOB_WAIT_LAST] = {
    [SM_VM_JOB_READY] = "ready",
    [SM_VM_JOB_GONE] = "ended",
  };
  return want < SM_VM_JOB_WAIT_LAST ? names[want] : "?";
}

/* Reads a view: true with *DONE set when job JOB_ID reached WANT, false
 * with ERROR when it never will (it ended before READY). */
static bool
job_reached (SmVmAccess *vm, const char *job_id, SmVmJobWait want,
             const char *last_error, bool *done, GError **error)
{
  g_autoptr(SmBlockVm) view = vm->ops->query_view (vm, error);
  SmBlockJob *job;

  if (!view)
    return false;
  job = sm_block_find_job (view->jobs, job_id);
  *done = want == SM_VM_JOB_GONE ? job == NULL : job && job->ready;
  if (!job && want == SM_VM_JOB_READY) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "block job %s of %s ended before it was ready%s%s", job_id,
                 vm->address, last_error ? ": " : "",
                 last_error ? last_error : "");
    return false;
  }
  return true;
}

bool
sm_vm_access_wait_job (SmVmAccess *vm, const char *job_id, SmVmJobWait want,
                       int timeout_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time ()
    + (gint64) (timeout_ms < 0 ? vm->timeout_ms : timeout_ms) * 1000;
  g_autofree char *last_error = NULL;

  for (;;) {
    g_autoptr(SmVmEvent) event = NULL;
    g_autoptr(GError) wait_err = NULL;
    gint64 left_ms;
    bool done = false;

    if (sm_interrupt_check (error))
      return false;
    if (!job_reached (vm, job_id, want, last_error, &done, error))
      return false;
    if (done)
      return true;
    left_ms = (deadline - g_get_monotonic_time ()) / 1000;
    if (left_ms <= 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "block job %s of %s: not %s within %d ms", job_id,
                   vm->address, wait_name (want),
                   timeout_ms < 0 ? vm->timeout_ms : timeout_ms);
      return false;
    }
    event = vm->ops->wait_event (vm, (int) MIN (left_ms, POLL_MS), &wait_err);
    if (!event && !g_error_matches (wait_err, SM_ERROR, SM_ERROR_TIMEOUT)) {
      g_propagate_error (error, g_steal_pointer (&wait_err));
      return false;
    }
    if (event && event->error && g_strcmp0 (event->job, job_id) == 0) {
      g_free (last_error);
      last_error = g_strdup (event->error);
    }
  }
}
