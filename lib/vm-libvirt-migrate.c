/* libsnapmig — the one bounded open of a libvirt connection
 * (lib/vm-libvirt-migrate.h): the access's (vm-libvirt.c) and libvirt's
 * migration's (migrate-libvirt.c).
 */
#include "vm-libvirt-migrate.h"

#ifdef SM_HAVE_LIBVIRT

#include <libvirt/virterror.h>

#include "interrupt.h"

#define SLICE_MS 100
/* Silence for INTERVAL * (COUNT + 1) s is a dead daemon. */
#define KEEPALIVE_INTERVAL 5
#define KEEPALIVE_COUNT 2

/* The opening thread's answer. */
typedef struct {
  virConnectPtr conn;
  char *message;
} Opened;

static void
opened_free (Opened *o)
{
  if (o->conn)
    virConnectClose (o->conn);
  g_free (o->message);
  g_free (o);
}

typedef struct {
  char *uri;
  GAsyncQueue *answer;         /* the thread's reference */
} OpenJob;

static gpointer
open_thread (gpointer data)
{
  OpenJob *j = data;
  Opened *o = g_new0 (Opened, 1);

  o->conn = virConnectOpenAuth (j->uri, virConnectAuthPtrDefault, 0);
  if (!o->conn) {
    virErrorPtr e = virGetLastError ();

    o->message = g_strdup (e && e->message ? e->message : "failed");
  }
  /* A caller that gave up has dropped its reference: the queue's free
   * function then closes the late connection. */
  g_async_queue_push (j->answer, o);
  g_async_queue_unref (j->answer);
  g_free (j->uri);
  g_free (j);
  return NULL;
}

virConnectPtr
sm_vm_libvirt_connect (const char *uri, int timeout_ms, GError **error)
{
  g_autoptr(GAsyncQueue) answer = g_async_queue_new_full (
      (GDestroyNotify) opened_free);
  OpenJob *j = g_new0 (OpenJob, 1);
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  Opened *o = NULL;
  virConnectPtr conn;

  j->uri = g_strdup (uri);
  j->answer = g_async_queue_ref (answer);
  g_thread_unref (g_thread_new ("sm-libvirt-open", open_thread, j));
  while (!o && g_get_monotonic_time () < deadline && !sm_interrupted ())
    o = g_async_queue_timeout_pop (answer, SLICE_MS * 1000);
  if (!o) {
    if (!sm_interrupt_check (error))
      sm_error_set_with_object (error, SM_ERROR_TIMEOUT, uri,
                                "libvirt at %s did not answer within %d s "
                                "(is its daemon stopped or hung?)", uri,
                                (timeout_ms + 999) / 1000);
    return NULL;
  }
  conn = g_steal_pointer (&o->conn);
  if (!conn)
    sm_error_set_with_object (error, SM_ERROR_IO, uri,
                              "cannot reach libvirt at %s: %s", uri,
                              o->message);
  else if (virConnectSetKeepAlive (conn, KEEPALIVE_INTERVAL,
                                   KEEPALIVE_COUNT) < 0)
    sm_debug ("libvirt", "no keepalive on %s", uri);
  opened_free (o);
  return conn;
}

#endif /* SM_HAVE_LIBVIRT */
