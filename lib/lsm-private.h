/* libsnapmig — what the live storage migration executors (lsm.c,
 * lsm-create.c, lsm-switch.c) share.  Not part of the library's API.
 */
#ifndef SM_LSM_PRIVATE_H
#define SM_LSM_PRIVATE_H

#include "journal.h"
#include "lsm.h"

#define DOMAIN "lsm"
/* Between two polls of query-block-jobs and the copy status. */
#define POLL_MS 50
/* Folding a snapshot back or cancelling a mirror touches only what the guest
 * wrote since the snapshot: bounded, unlike the waits the user times. */
#define UNDO_TIMEOUT_MS 120000

/* Writes OBJ to PATH atomically, creating its directory. */
bool sm_lsm_save_json (const char *path, json_object *obj, GError **error);

/* Removes the state files of the migration SNAPSHOT (lsm/NAME.*). */
void sm_lsm_remove_files (SmVmState *st, const char *snapshot);

/* Deletes the metadata of SNAPSHOT if it is there, makes PARENT current
 * again when SNAPSHOT was, and removes the migration's state files. */
bool sm_lsm_delete_metadata (SmVmState *st, const char *snapshot,
                             const char *parent, GError **error);

/* Test hooks (for tests only, read from the environment):
 * SNAPMIG_TEST_CRASH_AFTER_STEP=N _exit(137) right after journaling the end
 * of step N (1-based); SNAPMIG_TEST_KILL_AFTER_STEP=N:PID SIGKILLs process
 * PID (the test's QEMU) after step N and waits until it is dead;
 * SNAPMIG_TEST_HOLD_AFTER_STEP=N:FILE waits after step N until FILE exists
 * (at most 60 s, or until a signal is recorded), so that a test can act
 * while, e.g., pivot holds the guest paused; SNAPMIG_TEST_SIGNAL_AFTER_STEP=N:SIG
 * sends signal SIG to snapmig itself after step N.  sm_lsm_test_after_step (N)
 * runs them; the executors call it after each step. */
void sm_lsm_test_after_step (int step);
/* SNAPMIG_TEST_CRASH_AT=POINT: _exit(137) at the named POINT
 * ("snapshot-deleted", "before-record-removal" in sm_lsm_delete_metadata). */
void sm_lsm_test_crash_at (const char *point);

/* Journal records (new objects, for sm_journal_append): step INDEX of PLAN
 * in PHASE ("begin", "end", "failed" with ERR), the operation's header, and
 * the operation's phase ("done", "rollback", ...). */
json_object *sm_lsm_step_record (const SmLsmPlan *plan, guint index,
                                 const char *phase, const GError *err);
json_object *sm_lsm_op_header (const char *op, const char *opid,
                               const SmLsmInfo *info, const char *record_path);
json_object *sm_lsm_phase_record (const char *phase);

/* The journal of operation OP (id OPID) on INFO, in ST's journal directory,
 * its header written (sm_lsm_op_header); NULL with ERROR when it cannot be
 * written.  Caller ends it with one of the two functions below. */
SmJournal *sm_lsm_journal_open (SmVmState *st, const char *op,
                                const char *opid, const SmLsmInfo *info,
                                const char *record_path, GError **error);
/* Journals step INDEX of PLAN in PHASE ("begin", "end"); false with ERROR
 * when the journal cannot be written. */
bool sm_lsm_journal_step (SmJournal *journal, const SmLsmPlan *plan,
                          guint index, const char *phase, GError **error);
/* Journals that step INDEX of PLAN failed with ERR, then ends JOURNAL
 * (consumed) as sm_journal_finish does.  Best effort: the step's error is
 * what the caller reports. */
void sm_lsm_journal_failed (SmJournal *journal, const SmLsmPlan *plan,
                            guint index, const GError *err);
/* Journals that the operation is done, then ends JOURNAL (consumed) with
 * sm_journal_finish; false with ERROR when that fails. */
bool sm_lsm_journal_done (SmJournal *journal, GError **error);

/* STATE/vms/KEY/lsm/SNAPSHOT.progress.json (see sm_lsm_status_watched).
 * Caller frees. */
char *sm_lsm_progress_path (SmVmState *st, const char *snapshot)
  G_GNUC_WARN_UNUSED_RESULT;
/* Removes it: the wait that published it has ended. */
void sm_lsm_progress_remove (SmVmState *st, const char *snapshot);

/* True when disk D's active top is FILE (query-block). */
bool sm_lsm_disk_runs_on (SmQmp *qmp, const SmLsmDisk *d, const char *file,
                          GError **error);

/* The journals of pivots and aborts of SNAPSHOT that are in flight or were
 * interrupted, for status: a new JSON array of {"op", "journal",
 * "last-step", "guest-paused-by-it", "complete-sent": [disk names]}. */
json_object *sm_lsm_switch_journals_json (SmVmState *st,
                                          const char *snapshot);

/* recover's part for an interrupted pivot or abort (lsm-switch.c): the
 * journal at PATH, its RECORDS (header first) and the migration INFO from
 * its header; OP is "pivot" or "abort".  QMP is NULL when QEMU is gone.
 * Returns what was done, for the user (caller frees), or NULL with ERROR;
 * removes the journal only when nothing is left to finish. */
char *sm_lsm_recover_switch (SmQmp *qmp, SmVmState *st, const char *path,
                             json_object *records, const SmLsmInfo *info,
                             const char *op, GError **error)
  G_GNUC_WARN_UNUSED_RESULT;

#endif /* SM_LSM_PRIVATE_H */
