/* libsnapmig's public API: process-wide settings, a VM, its disks
 * (include/snapmig.h). */
#include "api-private.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "disks.h"
#include "helper.h"
#include "interrupt.h"

const char *
snapmig_version (void)
{
  return SM_VERSION;
}

void
snapmig_set_log_handler (snapmig_log_fn fn, void *opaque)
{
  sm_debug_set_handler (fn, opaque);
}

void
snapmig_set_helper (const char *path)
{
  sm_helper_set_path (path);
}

void
snapmig_interrupt (void)
{
  sm_interrupt_request (SIGINT);
}

void
sm_api_op_end (void)
{
  sm_interrupt_clear ();
}

int
sm_api_op_return (bool ok, GError *err, snapmig_error **error)
{
  sm_api_op_end ();
  if (ok)
    return 0;
  sm_api_error_set (error, err);
  return -1;
}

char *
sm_api_json_text (json_object *doc, bool pretty)
{
  int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
              (pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
                      : JSON_C_TO_STRING_PLAIN);

  return strdup (json_object_to_json_string_ext (doc, flags));
}

snapmig_vm *
snapmig_vm_new (const char *qmp_socket, const char *state_dir, int timeout_s,
                snapmig_error **error)
{
  snapmig_vm *vm;

  if (!qmp_socket || !*qmp_socket) {
    sm_api_error_invalid (error, "snapmig_vm_new: no QMP socket given");
    return NULL;
  }
  if (state_dir && !*state_dir) {
    sm_api_error_invalid (error, "snapmig_vm_new: an empty state directory "
                          "(NULL for the default)");
    return NULL;
  }
  if (timeout_s < 0 || timeout_s > SM_OP_TIMEOUT_MAX_S) {
    sm_api_error_invalid (error, "snapmig_vm_new: timeout %d: expected 0 "
                          "(the default) to %d seconds", timeout_s,
                          SM_OP_TIMEOUT_MAX_S);
    return NULL;
  }
  vm = g_new0 (snapmig_vm, 1);
  /* "unix:PATH" is a path: the library's addresses are PATH or HOST:PORT. */
  vm->address = g_strdup (g_str_has_prefix (qmp_socket, "unix:")
                          ? qmp_socket + 5 : qmp_socket);
  vm->state_dir = g_strdup (state_dir);
  vm->timeout_s = timeout_s;
  return vm;
}

void
snapmig_vm_free (snapmig_vm *vm)
{
  if (!vm)
    return;
  g_free (vm->address);
  g_free (vm->state_dir);
  g_free (vm);
}

SmOpTarget
sm_api_target (const snapmig_vm *vm)
{
  SmOpTarget t = { .address = vm->address, .state_dir = vm->state_dir,
                   .reply_timeout_s = vm->timeout_s, .wait_timeout_ms = -1 };

  if (vm->timeout_s > 0) {
    t.wait_timeout_ms = vm->timeout_s * 1000;
  } else {
    g_autofree char *warning = NULL;

    t.reply_timeout_s = sm_op_default_timeout_s (&warning);
    if (warning)
      sm_debug ("api", "%s", warning);
  }
  return t;
}

/* ---- disks ---- */

struct snapmig_disks {
  SmDiskList *list;
};

snapmig_disks *
snapmig_disks_query (snapmig_vm *vm, snapmig_error **error)
{
  SmOpTarget t = sm_api_target (vm);
  g_autoptr(SmQmp) qmp = NULL;
  GError *err = NULL;
  SmDiskList *list = NULL;
  snapmig_disks *disks = NULL;

  qmp = sm_op_connect (t.address, t.reply_timeout_s, &err);
  if (qmp)
    list = sm_disks_query (qmp, &err);
  sm_api_op_end ();
  if (!list) {
    sm_api_error_set (error, err);
    return NULL;
  }
  disks = g_new0 (snapmig_disks, 1);
  disks->list = list;
  return disks;
}

void
snapmig_disks_free (snapmig_disks *disks)
{
  if (!disks)
    return;
  sm_disk_list_free (disks->list);
  g_free (disks);
}

size_t
snapmig_disks_count (const snapmig_disks *disks)
{
  return disks ? disks->list->disks->len : 0;
}

static const SmDisk *
disk_at (const snapmig_disks *disks, size_t i)
{
  if (!disks || i >= disks->list->disks->len)
    return NULL;
  return disks->list->disks->pdata[i];
}

static const SmDiskLayer *
layer_at (const snapmig_disks *disks, size_t i, size_t layer)
{
  const SmDisk *d = disk_at (disks, i);

  if (!d || layer >= d->chain->len)
    return NULL;
  return d->chain->pdata[layer];
}

const char *
snapmig_disk_name (const snapmig_disks *disks, size_t i)
{
  const SmDisk *d = disk_at (disks, i);

  if (!d)
    return NULL;
  return d->device[0] || !d->qdev ? d->device : d->qdev;
}

const char *
snapmig_disk_file (const snapmig_disks *disks, size_t i)
{
  const SmDisk *d = disk_at (disks, i);

  return d ? d->file : NULL;
}

const char *
snapmig_disk_format (const snapmig_disks *disks, size_t i)
{
  const SmDisk *d = disk_at (disks, i);

  return d ? d->format : NULL;
}

uint64_t
snapmig_disk_virtual_size (const snapmig_disks *disks, size_t i)
{
  const SmDisk *d = disk_at (disks, i);

  return d ? d->virtual_size : 0;
}

size_t
snapmig_disk_chain_length (const snapmig_disks *disks, size_t i)
{
  const SmDisk *d = disk_at (disks, i);

  return d ? d->chain->len : 0;
}

const char *
snapmig_disk_layer_file (const snapmig_disks *disks, size_t i, size_t layer)
{
  const SmDiskLayer *l = layer_at (disks, i, layer);

  return l ? l->file : NULL;
}

const char *
snapmig_disk_layer_format (const snapmig_disks *disks, size_t i,
                           size_t layer)
{
  const SmDiskLayer *l = layer_at (disks, i, layer);

  return l ? l->format : NULL;
}

char *
snapmig_disks_json (const snapmig_disks *disks)
{
  g_autoptr(json_object) doc = NULL;

  if (!disks)
    return NULL;
  doc = sm_disks_to_json (disks->list);
  return sm_api_json_text (doc, true);
}
