/* libsnapmig — before the live storage migration executors write into,
 * truncate, reuse or delete a file: is it in use, by another process
 * (QEMU's image locks, lib/image-lock.h) or by another VM snapmig knows of
 * (its move records in the state directory)?  Not part of the library's
 * API.
 */
#ifndef SM_LSM_INUSE_H
#define SM_LSM_INUSE_H

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>

#include "error.h"
#include "state.h"

/* The files the other VMs of ST's state directory use in their moves
 * (STATE/vms/OTHER/lsm/NAME.json: original and new tops, mirrors;
 * NAME.created and NAME.copy.json: destination files and copied layers;
 * journal/OPID.created: files of a create in progress) and snapshots
 * (snapshots/NAME.xml: disk sources and mirrors, as validate counts them),
 * canonical path → "VM ADDRESS (snapshot NAME)" (or "VM ADDRESS (operation
 * OPID)"; ADDRESS from OTHER/vm, OTHER when it has none).  Records that
 * cannot be read are skipped (validate reports them).  Caller frees.
 * validate.c reads the same records for its own model (load_state); one
 * reader for both is a later clean-up. */
GHashTable *sm_lsm_known_files (SmVmState *st) G_GNUC_WARN_UNUSED_RESULT;

/* Checks that nobody else uses PATH: no process but ours holds QEMU's
 * locks on it, and no other VM of KNOWN (sm_lsm_known_files, may be NULL)
 * names it.  OWN_PID (0: unknown) is the QEMU of the VM being migrated,
 * which is then named so: it too must not have a file snapmig writes or
 * deletes open.  False with SM_ERROR_IN_USE "PATH: in use: held by PROCESS (pid
 * N)" or "PATH: in use by VM ADDRESS (snapshot NAME)". */
bool sm_lsm_check_not_in_use (GHashTable *known, const char *path,
                              pid_t own_pid, GError **error);

/* The PID of the QEMU whose QMP socket ST was opened for (0 when it cannot
 * be told, e.g. a TCP address): a holder that is this process is named
 * "the VM being migrated" (lib/image-lock.h). */
pid_t sm_lsm_own_qemu_pid (SmVmState *st);

#endif /* SM_LSM_INUSE_H */
