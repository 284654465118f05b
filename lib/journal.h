/* libsnapmig — operation journals.
 *
 * A journal is one file STATE/vms/KEY/journal/OPID.journal holding one JSON
 * object per line.  The first record describes the operation (what `snapmig
 * recover` needs to finish or undo it); the executor then appends a record
 * before and after each step.  Every record is written with one write() and
 * fdatasync()ed before the step it announces runs, so after a crash the file
 * ends at a record boundary or with one torn line, which the loader drops.
 */
#ifndef SM_JOURNAL_H
#define SM_JOURNAL_H

#include <stdbool.h>
#include <glib.h>
#include <json-c/json.h>

#include "error.h"

typedef struct SmJournal SmJournal;

/* A new operation id: time and random bits, usable in a file name and as a
 * QMP id suffix ([A-Za-z0-9-]).  Caller frees. */
char *sm_journal_new_opid (void) G_GNUC_WARN_UNUSED_RESULT;

/* Creates DIR/OPID.journal (it must not exist), writes HEADER (consumed) as
 * the first record and syncs the file and DIR.  Caller frees. */
SmJournal *sm_journal_create (const char *dir, const char *opid,
                              json_object *header, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Opens the existing journal at PATH to append records to it (another
 * command adding what it did about an interrupted operation, e.g. that it
 * resumed the guest).  Caller frees. */
SmJournal *sm_journal_open_append (const char *path, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Appends RECORD (consumed) and fdatasyncs it.  SM_ERROR_IO names the
 * journal.
 *
 * Test hook, for every executor that journals (tests only):
 * SNAPMIG_TEST_CRASH_AT_RECORD=N[:SIGNAL] makes the process send itself
 * SIGNAL (KILL, the default, INT, TERM or HUP; "SIG" prefix allowed) right
 * after the N-th record of a journal is durable, counting the header as
 * record 1 (for N=1 before the journal's directory is synced: the same for
 * a killed process).  It fires once per process.  KILL is a crash; INT,
 * TERM and HUP exercise the graceful path (the CLI's handlers only record
 * the signal, see interrupt.h, and the next wait fails).  Every record
 * counts: steps' begin/end/failed, phases, rollback records.  N beyond the
 * last record never fires, so a test finds how many records a run writes by
 * raising N (with KILL) until the command is no longer killed
 * (tests/integration/test-interrupt-sweep.sh).  SNAPMIG_TEST_CRASH_AFTER_STEP
 * (lsm.h) still works for create. */
bool sm_journal_append (SmJournal *journal, json_object *record,
                        GError **error);

/* Appends the N RECORDS (each consumed and set to NULL) with one write()
 * and, when SYNC, one fdatasync(): records that must all be durable before
 * the next step, at the cost of one sync (pivot's batch of
 * block-job-completes with the guest paused).  Without SYNC the records
 * survive a crash of the process (they are in the page cache) and become
 * durable with the next synced append; only for records whose loss in a
 * power failure reads as a stop just before them.  The test hook counts
 * each record. */
bool sm_journal_append_many (SmJournal *journal, json_object **records,
                             guint n, bool sync, GError **error);
/* Opens the existing journal at PATH to append to it (recover journals what
 * it finished).  An unterminated last line (a torn write, which
 * sm_journal_load drops) is cut off first, so that the next record starts a
 * line of its own.  Caller frees. */
SmJournal *sm_journal_reopen (const char *path, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

const char *sm_journal_path (const SmJournal *journal);

/* Closes the journal; the file stays. */
void sm_journal_free (SmJournal *journal);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmJournal, sm_journal_free)

/* Closes and deletes the journal file of a finished operation. */
bool sm_journal_finish (SmJournal *journal, GError **error);

/* Reads the records of the journal at PATH as a new JSON array (caller
 * puts).  A torn last line (unterminated) is dropped; any other line that
 * is not one JSON object (cut, empty, a NUL byte) is SM_ERROR_INVALID
 * naming the journal and line: record I of the array is line I + 1. */
json_object *sm_journal_load (const char *path, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

/* Paths of the *.journal files in DIR, oldest name first (g_strfreev). A
 * missing DIR gives an empty list. */
char **sm_journal_list (const char *dir, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_JOURNAL_H */
