/* libsnapmig — the one bounded open of a libvirt connection: the access's
 * (lib/vm-libvirt.c) and libvirt's migration's (lib/migrate-libvirt.c)
 * (issue 14).
 */
#ifndef SM_VM_LIBVIRT_MIGRATE_H
#define SM_VM_LIBVIRT_MIGRATE_H

#ifdef SM_HAVE_LIBVIRT

#include <libvirt/libvirt.h>
#include <glib.h>

#include "error.h"

/* Opens URI within TIMEOUT_MS: virConnectOpenAuth has no deadline (a
 * daemon that accepts the socket and never answers holds it), so it runs
 * in a thread of its own; one that ends after the caller gave up closes
 * what it opened.  With the process's libvirt event loop running (any
 * sm_vm_access_open_libvirt started it) the connection gets a keepalive,
 * which bounds every later call.  SM_ERROR_IO with libvirt's
 * word, SM_ERROR_TIMEOUT naming URI, SM_ERROR_INTERRUPTED. */
virConnectPtr sm_vm_libvirt_connect (const char *uri, int timeout_ms,
                                     GError **error);

#endif /* SM_HAVE_LIBVIRT */
#endif /* SM_VM_LIBVIRT_MIGRATE_H */
