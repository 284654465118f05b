/* libsnapmig — the source's confirm phase of a cross-host migration and
 * its roll-back (lib/migrate.h): the source QEMU quits and the snapshot is
 * folded back after success; otherwise the state migration, the mirrors,
 * their NBD nodes and the layer server are cancelled, the snapshot folded
 * back and the guest resumed — never after post-copy began or once the
 * destination may run the guest. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blockjob.h"
#include "journal.h"
#include "json-util.h"
#include "migrate-private.h"
#include "precreate.h"
#include "qemu-proc.h"

/* ---- confirm ------------------------------------------------------------- */

/* A mirror whose NBD connection died silently (a link down: no reset, no
 * answer) cannot end until TCP gives up, minutes later: its requests are
 * in flight.  Shutting QEMU's connections to the destination's NBD server
 * down makes them fail at once. */
static void
sever_nbd (SmQmp *qmp, const SmMigCookie *c)
{
  g_autofree char *host = NULL;
  const char *colon;
  pid_t pid = sm_qmp_peer_pid (qmp);
  int n = 0;
  GError *err = NULL;

  if (pid <= 0 || !c->nbd_uri || !g_str_has_prefix (c->nbd_uri, "tcp:"))
    return;
  colon = strrchr (c->nbd_uri, ':');
  host = g_strndup (c->nbd_uri + 4, (gsize) (colon - c->nbd_uri - 4));
  if (host[0] == '[') {
    char *end = strchr (host, ']');
    if (end)
      *end = '\0';
    memmove (host, host + 1, strlen (host));
  }
  if (!sm_proc_sever_tcp (pid, host, atoi (colon + 1), &n, &err)) {
    sm_debug ("migrate", "cannot cut QEMU's NBD connections: %s",
              err->message);
    g_error_free (err);
    return;
  }
  sm_debug ("migrate", "%d stuck NBD connection(s) of QEMU (pid %d) to %s "
            "shut down", n, (int) pid, c->nbd_uri);
}

/* Cancels whatever of the migration still runs on the source: the state
 * migration, the mirrors (their NBD connections cut when they are stuck),
 * the NBD nodes, the layer server. */
static void
cancel_source (SmQmp *qmp, const SmMigCookie *c)
{
  g_autoptr(GPtrArray) jobs = NULL;

  sm_qmp_run (qmp, "migrate_cancel", NULL, NULL);
  jobs = sm_block_query_jobs (qmp, NULL);
  for (guint i = 0; jobs && i < c->disks->len; i++) {
    g_autofree char *id = sm_mig_mirror_job_id (((SmMigDisk *) c->disks->pdata[i])->name);
    SmBlockJob *job = sm_block_find_job (jobs, id);

    if (job && g_strcmp0 (job->status, "concluded") != 0)
      sm_qmp_run (qmp, "block-job-cancel",
                  sm_qmp_args (NULL, "s:device", id, "b:force", true, NULL),
                  NULL);
  }
  if (!sm_mig_wait_mirrors_ended (qmp, c, 2000)) {
    sever_nbd (qmp, c);
    sm_mig_wait_mirrors_ended (qmp, c, SM_MIG_UNDO_TIMEOUT_MS / 4);
  }
  for (guint i = 0; i < c->disks->len; i++) {
    g_autofree char *id = sm_mig_mirror_job_id (((SmMigDisk *) c->disks->pdata[i])->name);
    g_autofree char *node = sm_mig_nbd_node (i);

    sm_qmp_run (qmp, "job-dismiss", sm_qmp_args (NULL, "s:id", id, NULL),
                NULL);
    sm_mig_del_export_node (qmp, node);
  }
  sm_migrate_stop_layer_server (qmp, c);
  sm_mig_tls_remove (qmp, c);
}

static char *
query_status (SmQmp *qmp)
{
  g_autoptr(json_object) r = sm_qmp_execute_type (qmp, "query-status", NULL,
                                                  json_type_object, NULL);
  return r ? g_strdup (sm_json_get_string (r, "status")) : NULL;
}

bool
sm_mig_journal_started (SmVmState *st, const char *id)
{
  g_autofree char *path = sm_mig_journal_path (st, id);
  g_autoptr(json_object) records = sm_journal_load (path, NULL);

  /* unreadable: assume the worst */
  return !records || sm_mig_records_have (records, "migrate", NULL);
}

char *
sm_mig_status (SmQmp *qmp, GError **error)
{
  g_autoptr(json_object) r = sm_qmp_execute_type (qmp, "query-migrate", NULL,
                                                  json_type_object, error);
  const char *s = r ? sm_json_get_string (r, "status") : NULL;

  if (!r)
    return NULL;
  return g_strdup (s ? s : "none");
}

bool
sm_migrate_rollback_source (SmQmp *qmp, SmVmState *st, SmMigCookie *c,
                            bool dest_never_ran, SmJournal *journal,
                            GError **error)
{
  g_autofree char *mstatus = NULL;
  g_autofree char *run = NULL;
  g_autoptr(SmCreatedFiles) created = NULL;
  GError *err = NULL;

  mstatus = sm_mig_status (qmp, NULL);
  if (!sm_mig_journal_started (st, c->id)) {
    /* QEMU's status is not this migration's (a QEMU that came here by
     * migration says "completed" for that one until it migrates again) */
    g_free (mstatus);
    mstatus = g_strdup ("none");
  }
  if (g_str_has_prefix (mstatus, "postcopy-") || c->postcopy_used) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "the migration is past the start of post-copy (status %s): "
                 "the guest's newest state is on the destination, so the "
                 "source is never resumed.  Run 'snapmig migrate-recover "
                 "--qmp %s' to complete it", mstatus, sm_qmp_address (qmp));
    return false;
  }
  if (strcmp (mstatus, "completed") == 0 && !dest_never_ran) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "the VM's state had reached the destination (migration "
                 "completed) and the destination may run it: the source "
                 "stays paused.  Check the destination's QEMU; if it is gone "
                 "or never ran the guest, run 'snapmig migrate-confirm "
                 "--failed --qmp %s' with its cookie", sm_qmp_address (qmp));
    return false;
  }
  sm_mig_journal_step (journal, "rollback", "begin", NULL, NULL);
  cancel_source (qmp, c);
  if (!sm_mig_mirrors_ended (qmp, c)) {
    g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
                 "the disks' copies to the destination (%s) are stuck on "
                 "the network and could not be cancelled yet: the guest "
                 "runs on its own disks meanwhile; run 'snapmig recover "
                 "--qmp %s' once the link is back or its connections timed "
                 "out", c->nbd_uri ? c->nbd_uri : "?", sm_qmp_address (qmp));
    sm_mig_journal_step (journal, "rollback", "failed", *error, NULL);
    return false;
  }
  /* after a completed migration the source's images are inactive (QEMU
   * handed them over): `cont` takes them back before the snapshot is
   * folded, and the guest runs again — as it is to anyway */
  if (strcmp (mstatus, "completed") == 0 && c->source_running &&
      !sm_qmp_run (qmp, "cont", NULL, &err)) {
    sm_mig_journal_step (journal, "rollback", "failed", err, NULL);
    g_propagate_prefixed_error (error, err, "cannot resume the guest: ");
    return false;
  }
  {
    g_autofree char *path = sm_mig_outgoing_path (st, c->id, ".created");
    created = sm_created_files_load (path, NULL);
    if (!sm_migrate_fold_back (qmp, c, created, &err)) {
      sm_mig_journal_step (journal, "rollback", "failed", err, NULL);
      g_propagate_prefixed_error (error, err, "cannot undo the migration's "
                                  "snapshot: ");
      return false;
    }
    if (created)
      sm_created_files_save (created, path, NULL);
    unlink (path);
  }
  run = query_status (qmp);
  if (c->source_running && run && strcmp (run, "running") != 0 &&
      !sm_qmp_run (qmp, "cont", NULL, &err)) {
    sm_mig_journal_step (journal, "rollback", "failed", err, NULL);
    g_propagate_prefixed_error (error, err, "cannot resume the guest: ");
    return false;
  }
  sm_mig_journal_step (journal, "rollback", "end", NULL, NULL);
  return true;
}

bool
sm_migrate_confirm (SmQmp *qmp, SmVmState *st, SmMigCookie *c, bool success,
                    GError **error)
{
  g_autoptr(SmJournal) journal = NULL;
  GError *err = NULL;

  if (!sm_vm_state_lock (st, error))
    return false;
  journal = sm_mig_reopen_journal (st, c->id, error);
  if (!journal)
    return false;
  if (!success) {
    if (!sm_migrate_rollback_source (qmp, st, c,
                                     c->failed && !c->dest_ran &&
                                     g_strcmp0 (c->error_phase, "finish") == 0,
                                     journal, error))
      return false;
    sm_mig_outgoing_clear (st, c->id);
    return sm_journal_finish (g_steal_pointer (&journal), error);
  }

  /* success: the guest runs on the destination */
  {
    g_autofree char *mstatus = sm_mig_status (qmp, NULL);
    pid_t pid = (pid_t) c->source_pid;
    uint64_t start = pid > 0 ? sm_proc_start_time (pid) : 0;

    if (g_str_has_prefix (mstatus, "postcopy-")) {
      /* the phases run by hand: post-copy still moves the rest of the RAM */
      static const char *const done[] = { "completed", NULL };
      SmMigWait w = { .states = done, .stall_ms = SM_MIG_POSTCOPY_STALL_MS,
                      .watch_fd = -1 };
      g_autofree char *st2 = NULL;
      GError *e = NULL;

      if (!sm_mig_wait (qmp, &w, &st2, &e)) {
        g_propagate_prefixed_error (error, e, "post-copy did not complete "
                                    "(run 'snapmig migrate-recover --qmp %s'): ",
                                    sm_qmp_address (qmp));
        return false;
      }
      g_free (mstatus);
      mstatus = g_strdup ("completed");
    }
    if (strcmp (mstatus, "completed") != 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "the migration's status on the source is %s, not "
                   "completed: nothing to confirm (use --failed to roll it "
                   "back)", mstatus);
      return false;
    }
    if (!sm_mig_journal_step (journal, "quit-source", "begin", NULL, error))
      return false;
    sm_qmp_run (qmp, "quit", NULL, NULL);
    if (pid > 0 && !sm_proc_wait_gone (pid, start, 10000) &&
        !sm_proc_stop (pid, start, 1000, &err)) {
      g_propagate_prefixed_error (error, err, "the source QEMU (pid %d) did "
                                  "not quit: ", (int) pid);
      return false;
    }
    if (!sm_mig_journal_step (journal, "quit-source", "end", NULL, error))
      return false;
  }
  if (c->storage == SM_MIG_STORAGE_CHAIN) {
    g_autofree char *path = NULL;
    g_autoptr(SmCreatedFiles) created = NULL;

    path = sm_mig_outgoing_path (st, c->id, ".created");
    created = sm_created_files_load (path, NULL);
    if (!sm_mig_journal_step (journal, "fold-tops", "begin", NULL, error) ||
        !sm_migrate_fold_back (NULL, c, created, error))
      return false;
    unlink (path);
    if (!sm_mig_journal_step (journal, "fold-tops", "end", NULL, error))
      return false;
  }
  sm_mig_outgoing_clear (st, c->id);
  return sm_journal_finish (g_steal_pointer (&journal), error);
}
