/* libsnapmig — snapmig's state directory: per-VM lock, snapshot metadata,
 * journals, atomic file writes.
 *
 * Layout (documented in docs/snapmig.1, FILES):
 *   STATE/vms/KEY/vm            the VM's QMP address, for people and `list`
 *   STATE/vms/KEY/lock          flock()ed while a snapmig acts on the VM
 *   STATE/vms/KEY/snapshots/NAME.xml   one <domainsnapshot> per snapshot
 *   STATE/vms/KEY/current       name of the current snapshot (absent: none)
 *   STATE/vms/KEY/journal/OPID.journal  operation journals (lib/journal.h)
 * KEY is derived from the VM's QMP address (the canonical socket path, or
 * host:port) so that two runs naming the same socket differently meet.
 * Every file is written atomically: temp file, fsync, rename, fsync dir.
 */
#ifndef SM_STATE_H
#define SM_STATE_H

#include <stdbool.h>
#include <glib.h>

#include "error.h"
#include "snapshot-xml.h"

/* /var/lib/snapmig for root, else $XDG_STATE_HOME/snapmig
 * (~/.local/state/snapmig).  Caller frees. */
char *sm_state_default_dir (void) G_GNUC_WARN_UNUSED_RESULT;

typedef struct SmVmState SmVmState;

/* Opens (creating as needed, mode 0700) the state of the VM whose QMP
 * address is QMP_ADDRESS under STATE_DIR.  Does not lock.  Caller frees. */
SmVmState *sm_vm_state_open (const char *state_dir, const char *qmp_address,
                             GError **error) G_GNUC_WARN_UNUSED_RESULT;
void sm_vm_state_free (SmVmState *st);   /* releases the lock if held */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmVmState, sm_vm_state_free)

const char *sm_vm_state_dir (const SmVmState *st);     /* STATE/vms/KEY */
const char *sm_vm_state_journal_dir (const SmVmState *st);
/* The QMP address as given to sm_vm_state_open (used in messages), and its
 * canonical form (realpath of the socket, or host:port) that KEY and the
 * `vm` file come from.  Owned by ST. */
const char *sm_vm_state_address (const SmVmState *st);
const char *sm_vm_state_canonical_address (const SmVmState *st);

/* Takes the VM's lock without waiting: SM_ERROR_BUSY names the VM and the
 * PID of the snapmig that holds it.  A no-op if ST already holds it.  Released by sm_vm_state_unlock or
 * sm_vm_state_free (or the process's death: it is an flock). */
bool sm_vm_state_lock (SmVmState *st, GError **error);
void sm_vm_state_unlock (SmVmState *st);
/* The PID of the live process that holds the VM's lock (as it wrote it into
 * the lock file), or 0: nobody holds it, or its holder is gone.  Does not
 * take the lock, so it never stands in a holder's way. */
long sm_vm_state_lock_holder (SmVmState *st);

/* Snapshot metadata.  Snapshot names must be usable as file names: not
 * empty, no '/', no leading '.', no control characters, at most 200 bytes;
 * other names fail with SM_ERROR_INVALID naming the snapshot. */
bool sm_vm_state_save_snapshot (SmVmState *st, const SmSnapshotDef *def,
                                GError **error);
SmSnapshotDef *sm_vm_state_load_snapshot (SmVmState *st, const char *name,
                                          GError **error)
  G_GNUC_WARN_UNUSED_RESULT;   /* SM_ERROR_NOT_FOUND names the snapshot */
/* Names, oldest creationTime first.  Caller frees (g_strfreev). */
char **sm_vm_state_list_snapshots (SmVmState *st, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;
bool sm_vm_state_delete_snapshot (SmVmState *st, const char *name,
                                  GError **error);
/* The stored document of snapshot NAME, byte for byte (for `dumpxml`).
 * SM_ERROR_NOT_FOUND names the snapshot.  Caller frees. */
char *sm_vm_state_read_snapshot_xml (SmVmState *st, const char *name,
                                     GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* sm_vm_state_delete_snapshot for `snapmig delete`: unless METADATA_ONLY,
 * refuses with SM_ERROR_BUSY a snapshot that has a disk with a <mirror>
 * (pivot and abort remove their snapshot, so a stored mirror means a move
 * still in progress), and refuses one whose file cannot be parsed.
 * sm_vm_state_delete_snapshot itself never checks, and clears `current`
 * when it named the deleted snapshot. */
bool sm_vm_state_delete_snapshot_checked (SmVmState *st, const char *name,
                                          bool metadata_only, GError **error);
/* Current snapshot name or NULL (no error) when there is none. */
char *sm_vm_state_get_current (SmVmState *st, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;
/* NAME NULL clears it.  Otherwise NAME must be a stored snapshot
 * (SM_ERROR_NOT_FOUND). */
bool sm_vm_state_set_current (SmVmState *st, const char *name, GError **error);

/* Makes DIR's entries durable (fsync of the directory): a file's own fsync
 * does not cover its name.  SM_ERROR_IO naming DIR. */
bool sm_state_fsync_dir (const char *dir, GError **error);

/* Writes DATA to PATH atomically (temp file in the same directory, fsync,
 * rename, fsync of the directory). */
bool sm_state_write_atomic (const char *path, const char *data, gssize len,
                            GError **error);

/* Removes the temporary files sm_state_write_atomic leaves for PATH when its
 * writer is killed between creating one and renaming it.  Call it only when
 * no writer of PATH can still be running (e.g. after the copy worker was
 * stopped); errors are ignored, as for the unlink of PATH itself. */
void sm_state_remove_stale_temps (const char *path);

#endif /* SM_STATE_H */
