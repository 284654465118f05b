/* libsnapmig — the destination's record of an incoming migration (its
 * journal, the QEMU it started, the files it made) and the phases and
 * recovery that read it: finish, cancel, recover --incoming
 * (lib/migrate.h).  prepare (migrate-dest.c) writes it. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "blockjob.h"
#include "journal.h"
#include "json-util.h"
#include "migrate-private.h"
#include "tunnel.h"
#include "precreate.h"
#include "qemu-proc.h"
#include "image-lock.h"

char *
sm_migrate_incoming_dir (const char *state_dir)
{
  return g_build_filename (state_dir, "incoming", NULL);
}

char *
sm_mig_ctl_qmp_path (const char *run_dir)
{
  return g_build_filename (run_dir, "snapmig-ctl.qmp", NULL);
}

char *
sm_mig_incoming_path (const char *state_dir, const char *id, const char *ext)
{
  g_autofree char *dir = sm_migrate_incoming_dir (state_dir);
  g_autofree char *name = g_strconcat (id, ext, NULL);

  return g_build_filename (dir, name, NULL);
}

/* ---- the destination's journal ----------------------------------------- */

SmJournal *
sm_mig_incoming_journal_open (const char *state_dir, const SmMigCookie *c,
                       const char *run_dir, bool run_dir_created,
                       GError **error)
{
  g_autofree char *dir = sm_migrate_incoming_dir (state_dir);
  g_autofree char *created = sm_mig_incoming_path (state_dir, c->id, ".created");
  json_object *h = json_object_new_object ();

  if (g_mkdir_with_parents (dir, 0700) < 0) {
    json_object_put (h);
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot create %s: %s", dir,
                 g_strerror (errno));
    return NULL;
  }
  json_object_object_add (h, "op", json_object_new_string ("migrate-in"));
  json_object_object_add (h, "id", json_object_new_string (c->id));
  json_object_object_add (h, "domain", json_object_new_string (c->dest_domain));
  json_object_object_add (h, "run-dir", json_object_new_string (run_dir));
  json_object_object_add (h, "run-dir-created",
                          json_object_new_boolean (run_dir_created));
  json_object_object_add (h, "created", json_object_new_string (created));
  json_object_object_add (h, "source-running",
                          json_object_new_boolean (c->source_running));
  json_object_object_add (h, "postcopy", json_object_new_boolean (c->postcopy));
  return sm_journal_create (dir, c->id, h, error);
}

bool
sm_mig_incoming_journal_qemu (SmJournal *j, const SmQemuProc *p, const char *qmp,
              GError **error)
{
  json_object *r = json_object_new_object ();

  json_object_object_add (r, "step", json_object_new_string ("qemu"));
  json_object_object_add (r, "phase", json_object_new_string ("end"));
  json_object_object_add (r, "pid", json_object_new_int64 (p->pid));
  json_object_object_add (r, "start-time",
                          json_object_new_int64 ((int64_t) p->start_time));
  json_object_object_add (r, "qmp", json_object_new_string (qmp));
  return sm_journal_append (j, r, error);   /* not a step of the hook */
}


void
sm_mig_incoming_clear (SmMigIncoming *in)
{
  g_free (in->run_dir);
  g_free (in->created);
  g_free (in->qmp);
  g_free (in->recover_uri);
  g_free (in->state_dir);
  g_free (in->id);
  memset (in, 0, sizeof *in);   /* read again, or cleared twice */
}

bool
sm_mig_incoming_read (const char *path, SmMigIncoming *in, GError **error)
{
  g_autoptr(json_object) recs = sm_journal_load (path, error);
  json_object *h;
  size_t n;

  if (!recs)
    return false;
  n = json_object_array_length (recs);
  h = n ? json_object_array_get_idx (recs, 0) : NULL;
  if (!h || g_strcmp0 (sm_json_get_string (h, "op"), "migrate-in") != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: not an incoming migration's journal (kept)", path);
    return false;
  }
  {
    /* STATE/incoming/ID.journal */
    g_autofree char *dir = g_path_get_dirname (path);
    g_autofree char *base = g_path_get_basename (path);

    in->state_dir = g_path_get_dirname (dir);
    if (g_str_has_suffix (base, ".journal"))
      base[strlen (base) - strlen (".journal")] = '\0';
    in->id = g_steal_pointer (&base);
  }
  in->run_dir = g_strdup (sm_json_get_string (h, "run-dir"));
  in->created = g_strdup (sm_json_get_string (h, "created"));
  sm_json_get_bool (h, "run-dir-created", &in->run_dir_created);
  sm_json_get_bool (h, "source-running", &in->source_running);
  sm_json_get_bool (h, "postcopy", &in->postcopy);
  for (size_t i = 1; i < n; i++) {
    json_object *r = json_object_array_get_idx (recs, i);
    const char *step = sm_json_get_string (r, "step");
    int64_t v = 0;

    if (g_strcmp0 (step, "qemu") == 0) {
      sm_json_get_int64 (r, "pid", &v);
      in->pid = (pid_t) v;
      sm_json_get_int64 (r, "start-time", &v);
      in->start_time = (uint64_t) v;
      g_free (in->qmp);
      in->qmp = g_strdup (sm_json_get_string (r, "qmp"));
    } else if (g_strcmp0 (step, "cont") == 0) {
      in->finished = true;
    } else if (g_strcmp0 (step, "postcopy-active") == 0) {
      in->postcopy_active = true;
    } else if (g_strcmp0 (step, "resumed") == 0) {
      sm_json_get_int64 (r, "at-us", &v);
      in->resumed_at_us = v;
    } else if (g_strcmp0 (step, "recover-listen") == 0) {
      g_free (in->recover_uri);
      in->recover_uri = g_strdup (sm_json_get_string (r, "uri"));
    }
  }
  /* killed between starting QEMU and journaling it: find it by its
   * monitor in the run directory */
  if (in->pid <= 0 && in->run_dir) {
    g_autofree char *qmp = g_build_filename (in->run_dir, "snapmig.qmp", NULL);
    pid_t pid = sm_unix_socket_server_pid (qmp);

    if (pid > 0) {
      in->pid = pid;
      in->start_time = sm_proc_start_time (pid);
      g_free (in->qmp);
      in->qmp = g_steal_pointer (&qmp);
    }
  }
  return true;
}

bool
sm_mig_incoming_load (const char *path, const char *id, SmMigIncoming *in,
                      GError **error)
{
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "no incoming migration %s here (its journal %s is missing)",
                 id, path);
    return false;
  }
  return sm_mig_incoming_read (path, in, error);
}

/* Removes what prepare made: QEMU stopped (refused when its guest runs),
 * created files removed, run directory emptied (it was empty or new). */
bool
sm_mig_incoming_cleanup (const SmMigIncoming *in, GError **error)
{
  g_autoptr(SmCreatedFiles) created = NULL;
  GError *err = NULL;

  if (in->pid > 0 && sm_proc_alive (in->pid, in->start_time)) {
    g_autoptr(SmQmp) q = in->qmp ? sm_qmp_connect (in->qmp, 5000, NULL) : NULL;

    if (q) {
      g_autoptr(json_object) r = sm_qmp_execute_type (q, "query-status", NULL,
                                                      json_type_object, NULL);
      g_autoptr(json_object) m = sm_qmp_execute_type (q, "query-migrate", NULL,
                                                      json_type_object, NULL);
      const char *ms = m ? sm_json_get_string (m, "status") : NULL;

      if (ms && g_str_has_prefix (ms, "postcopy-")) {
        g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
                     "the destination QEMU (pid %d) is in post-copy (%s): the "
                     "guest's newest state is here, so it is not stopped",
                     (int) in->pid, ms);
        return false;
      }
      if (r && g_strcmp0 (sm_json_get_string (r, "status"), "running") == 0) {
        g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
                     "the destination QEMU (pid %d) runs the guest: it is not "
                     "stopped (the migration completed here)", (int) in->pid);
        return false;
      }
      sm_qmp_run (q, "quit", NULL, NULL);
    }
    if (!sm_proc_wait_gone (in->pid, in->start_time, 3000) &&
        !sm_proc_stop (in->pid, in->start_time, 2000, error))
      return false;
  }
  if (in->created && g_file_test (in->created, G_FILE_TEST_EXISTS)) {
    created = sm_created_files_load (in->created, &err);
    if (!created) {
      g_propagate_error (error, err);
      return false;
    }
    if (!sm_created_files_rollback (created, &err)) {
      sm_created_files_save (created, in->created, NULL);
      g_propagate_error (error, err);
      return false;
    }
    unlink (in->created);
  }
  if (in->run_dir) {
    g_autoptr(GDir) dir = g_dir_open (in->run_dir, 0, NULL);
    const char *name;

    while (dir && (name = g_dir_read_name (dir))) {
      g_autofree char *p = g_build_filename (in->run_dir, name, NULL);
      unlink (p);
    }
    if (in->run_dir_created)
      rmdir (in->run_dir);
  }
  if (in->state_dir && in->id)
    sm_tunnel_dest_dir_remove (in->state_dir, in->id);
  return true;
}

/* ---- finish / cancel ------------------------------------------------------ */

bool
sm_migrate_cancel_incoming (SmMigCookie *c, const SmMigDestOptions *o,
                            GError **error)
{
  g_autofree char *path = sm_mig_incoming_path (o->state_dir, c->id, ".journal");
  SmMigIncoming in = { 0 };
  bool ok;

  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return true;                      /* prepare cleaned up already */
  if (!sm_mig_incoming_read (path, &in, error))
    return false;
  if (in.finished) {
    g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
                 "incoming migration %s: the guest was resumed here, so its "
                 "disks here hold its newest writes: nothing was removed",
                 c->id);
    sm_mig_incoming_clear (&in);
    return false;
  }
  ok = sm_mig_incoming_cleanup (&in, error);
  if (ok)
    unlink (path);
  sm_mig_incoming_clear (&in);
  return ok;
}

/* Waits (after the guest was resumed here during post-copy) until the rest
 * of its RAM has arrived.  The source's snapmig recovers a failed link; if
 * it goes away (WATCH_FD), this fails without undoing anything. */
static bool
wait_postcopy_done (SmQmp *qmp, const SmMigDestOptions *o, GError **error)
{
  static const char *const done[] = { "completed", NULL };
  g_autofree char *status = NULL;
  GError *err = NULL;

  if (sm_mig_wait_status (qmp, done, o->watch_fd >= 0 ? 0 : o->timeout_ms,
                          o->watch_fd, NULL, NULL, &status, NULL, &err))
    return true;
  g_set_error (error, SM_ERROR, err->code,
               "post-copy: the guest runs here and still receives its RAM "
               "from the source (%s); nothing was undone: the source's "
               "snapmig recovers the link ('snapmig migrate-recover' there), "
               "then 'snapmig recover --incoming' here ends the migration",
               err->message);
  g_error_free (err);
  return false;
}

bool
sm_migrate_finish (SmMigCookie *c, const SmMigDestOptions *o, GError **error)
{
  g_autofree char *path = sm_mig_incoming_path (o->state_dir, c->id, ".journal");
  g_autoptr(SmJournal) journal = NULL;
  g_autoptr(SmQmp) qmp = NULL;
  g_autoptr(json_object) resume = NULL;
  g_autofree char *status = NULL;
  static const char *const arrived[] = { "completed", "postcopy-active",
                                         "postcopy-paused", "postcopy-recover",
                                         NULL };
  SmMigIncoming in = { 0 };
  bool postcopy;
  GError *err = NULL;

  if (!sm_mig_incoming_load (path, c->id, &in, error))
    return false;
  postcopy = in.postcopy_active;
  journal = sm_journal_reopen (path, error);
  if (!journal) {
    sm_mig_incoming_clear (&in);
    return false;
  }
  qmp = sm_qmp_connect (c->dest_qmp, sm_mig_dest_stall_ms (o), &err);
  if (!qmp)
    goto fail;
  if (in.finished) {
    /* a finish again (its first one's transport died during post-copy):
     * the guest runs here already */
    c->resumed_at_us = in.resumed_at_us;
    if (c->resumed_at_us > 0 && c->stopped_at_us > 0)
      c->pause_us = c->resumed_at_us - c->stopped_at_us;
    sm_mig_incoming_clear (&in);
    c->dest_ran = c->source_running;
    if (!wait_postcopy_done (qmp, o, error))
      return false;
    goto done;
  }
  sm_mig_incoming_clear (&in);
  /* the source waits for this before it starts the RAM migration, so that
   * the switchover finds this phase up (sm_mig_dest_ready) */
  sm_mig_emit (o->event, o->opaque, "phase", "s:phase", "finish", NULL);
  /* this side sees no RAM progress: a watched finish (migrate runs it) is
   * bounded by the source's snapmig, which sees it, one run by hand by
   * --timeout */
  if (!sm_mig_wait_status (qmp, arrived,
                           o->watch_fd >= 0 ? 0 : MAX (o->timeout_ms, 0),
                           postcopy ? -1 : o->watch_fd, NULL, NULL, &status,
                           NULL, &err))
    goto fail;
  if (g_str_has_prefix (status, "postcopy-") && !postcopy) {
    /* the guest's state is here now: from this record on nothing undoes
     * this side */
    postcopy = true;
    if (!sm_mig_journal_step (journal, "postcopy-active", "end", NULL, &err))
      goto fail;
  }
  if (!sm_mig_journal_step (journal, "nbd-stop", "begin", NULL, &err) ||
      !sm_qmp_run (qmp, "nbd-server-stop", NULL, &err))
    goto fail;
  if (g_str_has_prefix (c->nbd_uri, "unix:"))
    unlink (c->nbd_uri + 5);
  if (g_str_has_prefix (c->migrate_uri, "unix:"))
    unlink (c->migrate_uri + 5);
  if (o->tunnel)
    sm_tunnel_dest_dir_remove (o->state_dir, c->id);
  if (c->source_running) {
    if (!sm_mig_journal_step (journal, "cont", "begin", NULL, &err) ||
        !sm_qmp_run (qmp, "cont", NULL, &err))
      goto fail;
    resume = sm_qmp_wait_event (qmp, "RESUME", NULL, NULL, 5000, NULL);
    c->resumed_at_us = MAX (sm_qmp_event_time_us (resume), 0);
    if (postcopy && c->resumed_at_us > 0) {
      /* a finish run again after this one died reports the pause too */
      json_object *r = json_object_new_object ();

      json_object_object_add (r, "step", json_object_new_string ("resumed"));
      json_object_object_add (r, "phase", json_object_new_string ("end"));
      json_object_object_add (r, "at-us", json_object_new_int64 (c->resumed_at_us));
      sm_journal_append (journal, r, NULL);
    }
    if (c->resumed_at_us > 0 && c->stopped_at_us > 0)
      c->pause_us = c->resumed_at_us - c->stopped_at_us;
    c->dest_ran = true;
  } else if (postcopy &&
             !sm_mig_journal_step (journal, "cont", "begin", NULL, &err)) {
    goto fail;                  /* (marks the guest as this side's) */
  }
  if (postcopy && !wait_postcopy_done (qmp, o, error))
    return false;
done:
  sm_mig_tls_remove (qmp, c);    /* its guest may migrate on, plainly */
  sm_mig_journal_step (journal, "cont", "end", NULL, NULL);
  {
    g_autofree char *created = sm_mig_incoming_path (o->state_dir, c->id, ".created");
    unlink (created);
  }
  g_free (c->phase);
  c->phase = g_strdup ("finish");
  return sm_journal_finish (g_steal_pointer (&journal), error);

fail:
  if (postcopy) {
    /* past post-copy's start the guest can only run here: keep it all */
    g_propagate_prefixed_error (error, err, "post-copy: the guest's state is "
                                "on this host and nothing was undone; run "
                                "'snapmig recover --incoming' here once the "
                                "source's side is settled: ");
    return false;
  }
  {
    GError *undo = NULL;

    g_clear_pointer (&qmp, sm_qmp_free);
    g_clear_pointer (&journal, sm_journal_free);
    c->failed = true;
    g_free (c->error_phase);
    c->error_phase = g_strdup ("finish");
    c->dest_ran = false;
    if (sm_mig_incoming_read (path, &in, &undo) &&
        sm_mig_incoming_cleanup (&in, &undo))
      unlink (path);
    if (undo) {
      g_prefix_error (&err, "(and the clean-up failed: %s) ", undo->message);
      g_error_free (undo);
    }
    sm_mig_incoming_clear (&in);
    g_propagate_error (error, err);
    return false;
  }
}

/* ---- recover ---------------------------------------------------------- */

char *
sm_migrate_recover_incoming (const char *state_dir, GError **error)
{
  g_autofree char *dir = sm_migrate_incoming_dir (state_dir);
  g_auto(GStrv) paths = sm_journal_list (dir, error);
  GString *out = g_string_new ("");

  if (!paths) {
    g_string_free (out, true);
    return NULL;
  }
  for (char **p = paths; *p; p++) {
    SmMigIncoming in = { 0 };
    GError *err = NULL;

    if (!sm_mig_incoming_read (*p, &in, &err)) {
      g_propagate_error (error, err);
      g_string_free (out, true);
      return NULL;
    }
    if (in.pid > 0 && sm_proc_alive (in.pid, in.start_time) &&
        (in.postcopy || in.postcopy_active)) {
      /* post-copy: a migration past its start is only ever finished here */
      g_autoptr(SmQmp) q = in.qmp ? sm_qmp_connect (in.qmp, 5000, NULL) : NULL;
      g_autoptr(json_object) r = q ? sm_qmp_execute_type (q, "query-migrate",
                                                          NULL, json_type_object,
                                                          NULL) : NULL;
      const char *ms = r ? sm_json_get_string (r, "status") : NULL;

      if (ms && g_str_has_prefix (ms, "postcopy-")) {
        g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
                     "incoming migration %s: post-copy still runs here "
                     "(status %s): the guest's RAM is split between the "
                     "hosts, so nothing was undone.  Recover the link from "
                     "the source ('snapmig migrate-recover --qmp SOURCE'), "
                     "then run recover here again once it completed", *p, ms);
        sm_mig_incoming_clear (&in);
        g_string_free (out, true);
        return NULL;
      }
      if (g_strcmp0 (ms, "completed") == 0)
        in.finished = true;        /* its state is all here: it runs here */
    }
    if (in.postcopy_active && !in.finished) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "incoming migration %s: it reached post-copy, and its "
                   "QEMU (pid %d) is gone: the guest's newest state was "
                   "there; nothing was removed (journal kept)", *p,
                   (int) in.pid);
      sm_mig_incoming_clear (&in);
      g_string_free (out, true);
      return NULL;
    }
    if (in.finished && !(in.pid > 0 && sm_proc_alive (in.pid, in.start_time))) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "incoming migration %s: the guest was resumed here, and "
                   "its QEMU (pid %d) is gone: its disks hold its newest "
                   "writes, so nothing was removed.  Start the VM again from "
                   "them (or, if the source runs it, remove them by hand), "
                   "then delete the journal", *p, (int) in.pid);
      sm_mig_incoming_clear (&in);
      g_string_free (out, true);
      return NULL;
    }
    if (in.finished) {
      g_autoptr(SmQmp) q = in.qmp ? sm_qmp_connect (in.qmp, 5000, NULL) : NULL;
      if (q) {
        g_autoptr(json_object) r = NULL;

        sm_qmp_run (q, "nbd-server-stop", NULL, NULL);
        /* killed between journaling the resume and doing it */
        r = sm_qmp_execute_type (q, "query-status", NULL, json_type_object,
                                 NULL);
        if (in.source_running && r &&
            g_strcmp0 (sm_json_get_string (r, "status"), "paused") == 0 &&
            !sm_qmp_run (q, "cont", NULL, &err)) {
          g_propagate_prefixed_error (error, err, "incoming migration %s: "
                                      "cannot resume the guest: ", *p);
          sm_mig_incoming_clear (&in);
          g_string_free (out, true);
          return NULL;
        }
      }
      if (in.created)
        unlink (in.created);
      unlink (*p);
      g_string_append_printf (out, "incoming migration %s: the guest runs "
                              "here (QEMU pid %d); finished\n",
                              in.qmp ? in.qmp : "", (int) in.pid);
    } else if (!sm_mig_incoming_cleanup (&in, &err)) {
      g_propagate_prefixed_error (error, err, "incoming migration %s: ", *p);
      sm_mig_incoming_clear (&in);
      g_string_free (out, true);
      return NULL;
    } else {
      unlink (*p);
      g_string_append_printf (out, "incoming migration rolled back: "
                              "destination QEMU stopped, its files removed "
                              "(%s); the guest never ran here, so a source "
                              "left paused after a completed migration can "
                              "be resumed: 'snapmig recover --qmp SOURCE "
                              "--dest-never-ran'\n", *p);
    }
    sm_mig_incoming_clear (&in);
  }
  return g_string_free (out, false);
}
