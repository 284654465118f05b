/* libsnapmig — live storage migration: the create executor, the undo of
 * a create, and recover (see lsm.h for the recovery policy). */
#include "lsm.h"
#include "lsm-private.h"
#include "migrate.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-lock.h"
#include "interrupt.h"
#include "journal.h"
#include "json-util.h"
#include "lsm-inuse.h"
#include "rebase.h"

/* ---- undo of a create ------------------------------------------------ */

static bool
file_exists (const char *path)
{
  struct stat st;

  return lstat (path, &st) == 0;
}

/* QEMU is gone: fold the new top into the old one with qemu-img, so that the
 * guest's writes since the snapshot are not lost with the file.  QEMU's image
 * locks make this fail safely if QEMU in fact still has the image open. */
bool
sm_lsm_fold_offline (const SmLsmDisk *d, GError **error)
{
  const char *argv[] = { "qemu-img", "commit", "-f", "qcow2", "-d", d->new_top,
                         NULL };
  g_autofree char *out = NULL;
  GError *err = NULL;
  int status = 0;

  if (!g_spawn_sync (NULL, (char **) argv, NULL,
                     G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
                     NULL, NULL, &out, &status, &err)) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "qemu-img commit %s: %s",
                 d->new_top, err->message);
    g_error_free (err);
    return false;
  }
  if (!g_spawn_check_wait_status (status, NULL)) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "disk %s: cannot fold %s back into %s: %s", d->name,
                 d->new_top, d->orig_top, g_strstrip (out));
    return false;
  }
  return true;
}

/* ---- what the VM runs on now ----------------------------------------- */

/* The facts recover and the undo decide from, besides the journal:
 * query-block and query-block-jobs (lib/blockjob.c's parsers).  DISKS is
 * NULL when QEMU is gone (no QMP, or it hung up): then only the images and
 * the journal are left to go by. */
typedef struct {
  GPtrArray *disks;            /* SmBlockDisk *, or NULL: QEMU gone */
  GPtrArray *jobs;             /* SmBlockJob *, or NULL: QEMU gone */
} Facts;

static void
facts_clear (Facts *f)
{
  g_clear_pointer (&f->disks, g_ptr_array_unref);
  g_clear_pointer (&f->jobs, g_ptr_array_unref);
}

/* Asks QEMU; a QEMU that is gone (QMP NULL, or it hung up) is a fact too
 * (F stays empty).  False with ERROR when QEMU answers wrongly. */
static bool
facts_query (SmQmp *qmp, Facts *f, GError **error)
{
  g_autoptr(GError) err = NULL;

  facts_clear (f);
  if (!qmp)
    return true;
  f->disks = sm_block_query_disks (qmp, &err);
  if (f->disks)
    f->jobs = sm_block_query_jobs (qmp, &err);
  if (f->disks && f->jobs)
    return true;
  facts_clear (f);
  if (g_error_matches (err, SM_ERROR, SM_ERROR_DISCONNECTED))
    return true;
  g_propagate_prefixed_error (error, g_steal_pointer (&err),
                              "asking QEMU what the VM runs on: ");
  return false;
}

static const SmBlockDisk *
facts_disk (const Facts *f, const char *name)
{
  size_t i;

  for (i = 0; f->disks && i < f->disks->len; i++)
    if (sm_block_disk_matches (f->disks->pdata[i], name))
      return f->disks->pdata[i];
  return NULL;
}

static bool
facts_has_job (const Facts *f, const char *id)
{
  return id && f->jobs && sm_block_find_job (f->jobs, id);
}

/* Why PATH must not be touched now: a disk of the VM has it in its chain, or
 * a mirror of INFO (which opens its target with its backing chain) into its
 * directory runs.  NULL when QEMU has no use for it.  Caller frees. */
static char *
facts_user (const Facts *f, const SmLsmInfo *info, const char *path)
{
  size_t i, k;

  for (i = 0; f->disks && i < f->disks->len; i++) {
    const SmBlockDisk *bd = f->disks->pdata[i];

    for (k = 0; k < bd->chain->len; k++)
      if (g_strcmp0 (((SmBlockLayer *) bd->chain->pdata[k])->filename,
                     path) == 0) {
        g_autofree char *name = sm_block_disk_name (bd);

        return g_strdup_printf ("disk %s runs on it", name);
      }
  }
  for (i = 0; info && i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];
    g_autofree char *dir = g_path_get_dirname (path);

    if (facts_has_job (f, d->job_id) &&
        (g_strcmp0 (d->mirror, path) == 0 ||
         g_strcmp0 (d->dest_dir, dir) == 0))
      return g_strdup_printf ("mirror job %s of disk %s writes there",
                              d->job_id, d->name);
  }
  return NULL;
}

/* "disk drive0 on /a/top.qcow2 (over /a/base.qcow2), ...; block jobs:
 * snapmig-mirror-drive0 (mirror, ready)": what the VM runs on now. */
static char *
facts_describe (const Facts *f)
{
  GString *out = g_string_new (NULL);
  size_t i, k;

  if (!f->disks)
    return g_string_free (
      g_string_append (out, "QEMU is not running (no disk is open)"), false);
  for (i = 0; i < f->disks->len; i++) {
    const SmBlockDisk *bd = f->disks->pdata[i];
    g_autofree char *name = sm_block_disk_name (bd);

    g_string_append_printf (out, "%sdisk %s on ", i ? ", " : "", name);
    if (!bd->chain->len)
      g_string_append (out, "no medium");
    for (k = 0; k < bd->chain->len; k++)
      g_string_append_printf (out, "%s%s", k == 1 ? " (over " : k ? ", " : "",
                              ((SmBlockLayer *) bd->chain->pdata[k])->filename);
    if (bd->chain->len > 1)
      g_string_append_c (out, ')');
  }
  if (!f->disks->len)
    g_string_append (out, "no disk");
  g_string_append (out, "; block jobs: ");
  for (i = 0; i < f->jobs->len; i++) {
    const SmBlockJob *j = f->jobs->pdata[i];

    g_string_append_printf (out, "%s%s (%s, %s)", i ? ", " : "", j->id,
                            j->type, j->status);
  }
  if (!f->jobs->len)
    g_string_append (out, "none");
  return g_string_free (out, false);
}

/* Removes the files of FILES that exist and that QEMU has no use for,
 * newest first, and appends their names to REMOVED; the ones QEMU uses are
 * appended to KEPT with the reason.  Returns the files left (kept, or not
 * removable: ERROR names the first).  Caller frees. */
static SmCreatedFiles *
remove_unused (const Facts *f, const SmLsmInfo *info,
               const SmCreatedFiles *files, GString *removed, GString *kept,
               GError **error)
{
  g_autoptr(SmCreatedFiles) todo = sm_created_files_new ();
  SmCreatedFiles *left = sm_created_files_new ();
  const char *const *paths = sm_created_files_paths (files, NULL);
  g_auto(GStrv) planned = NULL;
  size_t i;

  for (i = 0; paths[i]; i++) {
    g_autofree char *why = facts_user (f, info, paths[i]);

    if (why) {
      g_string_append_printf (kept, "%s%s (%s)", kept->len ? ", " : "",
                              paths[i], why);
      sm_created_files_add (left, paths[i]);
    } else if (file_exists (paths[i])) {
      sm_created_files_add (todo, paths[i]);
    }
  }
  planned = g_strdupv ((char **) sm_created_files_paths (todo, NULL));
  sm_created_files_rollback (todo, error);
  paths = sm_created_files_paths (todo, NULL);   /* not removed */
  for (i = 0; planned[i]; i++) {
    if (g_strv_contains (paths, planned[i]))
      sm_created_files_add (left, planned[i]);
    else
      g_string_append_printf (removed, "%s%s", removed->len ? ", " : "",
                              planned[i]);
  }
  return left;
}
typedef struct {
  SmQmp *qmp;
  SmVmState *st;
  const SmLsmInfo *info;
  const char *record_path;     /* files created by the operation */
  bool snapshot_begun;         /* the transaction may have happened */
  bool metadata;               /* the metadata may have been saved */
  GString *report;             /* what was done, for the user, or NULL */
} Undo;

/* Returns the VM to the chains it ran on before the create and removes what
 * the create made, except a file QEMU still uses (query-block, just before).
 * Continues past failures (each one leaves more in place, never less) and
 * reports the first.  The record at RECORD_PATH stays (what it lists is gone
 * on success, or still there on failure): the caller removes it once the
 * journal says the rollback is done. */
static bool
undo_create (const Undo *u, GError **error)
{
  g_autoptr(GError) first = NULL;
  g_autoptr(SmCreatedFiles) created = NULL;
  g_autofree char *status_path = sm_lsm_copy_status_path (u->st,
                                                          u->info->snapshot);
  bool qemu_gone = u->qmp == NULL;
  bool keep_files = false, folded = false;
  Facts jobs_now = { NULL, NULL };
  size_t i;

  {
    g_autoptr(GError) err = NULL;

    if (!sm_copy_worker_kill (status_path, 10000, &err) && !first)
      first = g_steal_pointer (&err);
  }
  /* Only the mirrors that run are cancelled (query-block-jobs); when
   * QEMU cannot say, each is cancelled (a job already gone is fine). */
  if (!qemu_gone && facts_query (u->qmp, &jobs_now, NULL) && !jobs_now.disks)
    qemu_gone = true;   /* it hung up */
  for (i = 0; i < u->info->disks->len && !qemu_gone; i++) {
    const SmLsmDisk *d = u->info->disks->pdata[i];
    g_autoptr(GError) err = NULL;

    if (jobs_now.jobs && !facts_has_job (&jobs_now, d->job_id))
      continue;
    if (d->job_id &&
        !sm_block_job_cancel_wait (u->qmp, d->job_id, UNDO_TIMEOUT_MS, &err)) {
      if (g_error_matches (err, SM_ERROR, SM_ERROR_DISCONNECTED))
        qemu_gone = true;
      else if (!first)
        first = g_steal_pointer (&err);
    }
  }
  facts_clear (&jobs_now);
  for (i = 0; i < u->info->disks->len && u->snapshot_begun; i++) {
    const SmLsmDisk *d = u->info->disks->pdata[i];
    g_autoptr(GError) err = NULL;
    g_autoptr(SmBlockDisk) bd = NULL;
    const char *top;

    if (!qemu_gone) {
      bd = sm_block_query_disk (u->qmp, d->name, &err);
      if (!bd && g_error_matches (err, SM_ERROR, SM_ERROR_DISCONNECTED))
        qemu_gone = true;
    }
    if (qemu_gone) {
      g_clear_error (&err);
      if (file_exists (d->new_top)) {
        if (!sm_lsm_fold_offline (d, &err)) {
          keep_files = true;
          if (!first)
            first = g_steal_pointer (&err);
        } else {
          folded = true;
        }
      }
      continue;
    }
    if (!bd) {
      keep_files = true;
      if (!first)
        first = g_steal_pointer (&err);
      continue;
    }
    top = sm_block_disk_top (bd);
    if (top && strcmp (top, d->new_top) == 0) {
      g_autofree char *mirror_job = sm_lsm_job_id (d->name);
      g_autofree char *job = g_strdup_printf (
        "snapmig-undo-%s", mirror_job + strlen ("snapmig-mirror-"));

      sm_debug (DOMAIN, "disk %s: committing %s back into %s", d->name,
                d->new_top, d->orig_top);
      if (!sm_block_commit_active (u->qmp, d->name, d->id, d->orig_node,
                                   d->orig_top, job,
                                   UNDO_TIMEOUT_MS, &err)) {
        keep_files = true;
        if (!first)
          first = g_steal_pointer (&err);
      }
    } else if (!top || strcmp (top, d->orig_top) != 0) {
      keep_files = true;
      if (!first)
        g_set_error (&first, SM_ERROR, SM_ERROR_FAILED,
                     "disk %s runs on %s, neither %s nor %s", d->name,
                     top ? top : "no medium", d->orig_top, d->new_top);
    }
  }
  if (u->report)
    g_string_append (u->report,
                     !u->snapshot_begun ? "the VM was not touched"
                     : !qemu_gone ? "the VM runs on its original chain"
                     : folded ? "QEMU is gone: the new tops were folded back "
                                "into the original images"
                              : "QEMU is gone: no new top to fold back");
  if (u->metadata) {
    g_autoptr(GError) err = NULL;

    if (!sm_lsm_delete_metadata (u->st, u->info->snapshot, u->info->parent,
                                 &err) && !first)
      first = g_steal_pointer (&err);
    else if (u->report)
      g_string_append_printf (u->report, "; the metadata of snapshot %s is "
                              "removed", u->info->snapshot);
  }
  if (keep_files) {
    /* A disk may still use a new top: removing files could lose data. */
    if (!first)
      g_set_error (&first, SM_ERROR, SM_ERROR_FAILED, "undo incomplete");
    g_prefix_error (&first, "files kept (record %s): ", u->record_path);
  } else {
    g_autoptr(GError) err = NULL;
    g_autoptr(GString) removed = g_string_new (NULL);
    g_autoptr(GString) kept = g_string_new (NULL);
    g_autoptr(SmCreatedFiles) left = NULL;
    Facts f = { NULL, NULL };

    created = sm_created_files_load (u->record_path, &err);
    if (!created && !g_error_matches (err, SM_ERROR, SM_ERROR_NOT_FOUND)) {
      if (!first)
        first = g_steal_pointer (&err);
      created = NULL;
    } else {
      g_clear_error (&err);
      if (!created)
        created = sm_created_files_new ();
      /* Looked at just before the unlinks: QEMU must have no use for
       * any file removed (its chains, its mirrors' targets). */
      if (!facts_query (qemu_gone ? NULL : u->qmp, &f, &err)) {
        if (!first)
          first = g_steal_pointer (&err);
      } else {
        left = remove_unused (&f, u->info, created, removed, kept, &err);
        if (err && !first)
          first = g_steal_pointer (&err);
        if (sm_created_files_paths (left, NULL)[0]) {
          sm_created_files_save (left, u->record_path, NULL);
          if (!first)
            g_set_error (&first, SM_ERROR, SM_ERROR_IN_USE,
                         "files kept (record %s): %s", u->record_path,
                         kept->len ? kept->str : "could not be removed");
        }
        sm_lsm_remove_files (u->st, u->info->snapshot);
      }
      facts_clear (&f);
    }
    if (u->report)
      g_string_append_printf (u->report, "; %s%s", removed->len ? "removed: "
                              : "no file it created was left to remove",
                              removed->str);
  }
  if (first) {
    g_propagate_error (error, g_steal_pointer (&first));
    return false;
  }
  return true;
}

/* undo_create with the interruption signals held back (a second Ctrl-C
 * must not cut a rollback in two) and the request that led here forgotten
 * while it runs (the waits of the undo would fail at once). */
typedef struct {
  const Undo *u;
  GError **error;
  bool ok;
} UndoCall;

static void
undo_call (void *opaque)
{
  UndoCall *c = opaque;

  c->ok = undo_create (c->u, c->error);
}

static bool
undo_create_uninterrupted (const Undo *u, GError **error)
{
  UndoCall c = { u, error, false };
  int sig = sm_interrupt_set_aside ();

  sm_interrupt_block_during (undo_call, &c);
  sm_interrupt_restore (sig);
  return c.ok;
}

/* ---- create ---------------------------------------------------------- */

typedef struct {
  SmQmp *qmp;
  SmVmState *st;
  SmLsmPlan *plan;
  SmCreatedFiles *created;
  const char *record_path;
  bool *taken;                 /* per disk: snapshot taken (SNAPSHOT steps) */
} Create;

/* Records the files STEP may create before it creates them, so that a crash
 * in the middle still leaves a complete record. */
static bool
record_before (Create *c, const SmPrecreatePlan *p, GError **error)
{
  size_t i;

  for (i = 0; i < p->layers->len; i++) {
    const SmPrecreateLayer *l = p->layers->pdata[i];

    if (!file_exists (l->path))
      sm_created_files_add (c->created, l->path);
  }
  return sm_created_files_save (c->created, c->record_path, error);
}

static bool
create_files (Create *c, SmPrecreatePlan *p, GError **error)
{
  g_autoptr(SmCreatedFiles) now = sm_created_files_new ();
  g_autoptr(SmCreatedFiles) before = sm_created_files_load (c->record_path,
                                                            NULL);
  unsigned flags = c->plan->flags & SM_LSM_REUSE_EXTERNAL ? SM_PRECREATE_REUSE
                                                          : 0;
  const char *const *paths;
  size_t i, n;
  bool ok;

  if (!record_before (c, p, error))
    return false;
  ok = sm_precreate_execute (p, flags, now, error);
  /* Keep exactly what exists and was created by us in the record: what
   * precreate did not create (it existed: reuse, or a race) leaves it. */
  g_clear_pointer (&c->created, sm_created_files_free);
  c->created = sm_created_files_new ();
  if (before) {
    paths = sm_created_files_paths (before, &n);
    for (i = 0; i < n; i++) {
      size_t k;
      bool planned = false;

      for (k = 0; k < p->layers->len; k++)
        if (strcmp (((SmPrecreateLayer *) p->layers->pdata[k])->path,
                    paths[i]) == 0)
          planned = true;
      if (!planned)
        sm_created_files_add (c->created, paths[i]);
    }
  }
  paths = sm_created_files_paths (now, &n);
  for (i = 0; i < n; i++)
    sm_created_files_add (c->created, paths[i]);
  if (!sm_created_files_save (c->created, c->record_path, ok ? error : NULL))
    return false;
  return ok;
}

static bool
save_create_metadata (Create *c, GError **error)
{
  SmLsmPlan *plan = c->plan;
  const char *name = plan->info->snapshot;
  g_autofree char *info_path = sm_lsm_info_path (c->st, name);
  g_autofree char *created_path = sm_lsm_created_path (c->st, name);
  g_autoptr(json_object) info = sm_lsm_info_to_json (plan->info);
  g_autoptr(SmCreatedFiles) dest = sm_created_files_new ();
  const char *const *paths;
  size_t i, n, k;
  bool mirrors = false;

  /* The destination files are what abort removes; the new source tops stay
   * (the VM runs on them). */
  paths = sm_created_files_paths (c->created, &n);
  for (i = 0; i < n; i++) {
    bool is_top = false;

    for (k = 0; k < plan->info->disks->len; k++)
      if (strcmp (((SmLsmDisk *) plan->info->disks->pdata[k])->new_top,
                  paths[i]) == 0)
        is_top = true;
    if (!is_top)
      sm_created_files_add (dest, paths[i]);
  }
  for (k = 0; k < plan->info->disks->len; k++)
    if (((SmLsmDisk *) plan->info->disks->pdata[k])->mirror)
      mirrors = true;
  if (mirrors && (!sm_lsm_save_json (info_path, info, error) ||
                  !sm_created_files_save (dest, created_path, error)))
    return false;
  return sm_vm_state_save_snapshot (c->st, plan->def, error) &&
         sm_vm_state_set_current (c->st, name, error);
}

static bool
run_create_step (Create *c, guint index, GError **error)
{
  SmLsmPlan *plan = c->plan;
  const SmLsmStep *s = plan->steps->pdata[index];
  const SmLsmDisk *d = s->disk >= 0 ? plan->info->disks->pdata[s->disk] : NULL;

  switch (s->kind) {
  case SM_LSM_STEP_CREATE_DEST:
    if (!create_files (c, plan->dest_plans->pdata[s->disk], error)) {
      g_prefix_error (error, "disk %s: destination: ", d->name);
      return false;
    }
    return true;
  case SM_LSM_STEP_CREATE_TOP:
    if (!create_files (c, plan->top_plans->pdata[s->disk], error)) {
      g_prefix_error (error, "disk %s: new top: ", d->name);
      return false;
    }
    return true;
  case SM_LSM_STEP_TRANSACTION:
    if (!sm_qmp_run (c->qmp, s->command, json_object_get (s->args), error)) {
      GString *names = g_string_new (NULL);
      size_t i;

      for (i = 0; i < plan->info->disks->len; i++) {
        const SmLsmDisk *di = plan->info->disks->pdata[i];

        g_string_append_printf (names, "%s%s", i ? ", " : "", di->name);
      }
      g_prefix_error (error, "snapshot of disks %s: ", names->str);
      g_string_free (names, true);
      return false;
    }
    return true;
  case SM_LSM_STEP_SNAPSHOT:
  case SM_LSM_STEP_MIRROR:
    if (!sm_qmp_run (c->qmp, s->command, json_object_get (s->args), error)) {
      g_prefix_error (error, "disk %s: ", d->name);
      return false;
    }
    if (s->kind == SM_LSM_STEP_SNAPSHOT)
      c->taken[s->disk] = true;
    return true;
  case SM_LSM_STEP_SAVE_METADATA:
    return save_create_metadata (c, error);
  case SM_LSM_STEP_START_COPY: {
    g_autofree char *status = sm_lsm_copy_status_path (c->st,
                                                       plan->info->snapshot);
    g_autofree char *dir = g_path_get_dirname (status);
    pid_t pid;

    if (g_mkdir_with_parents (dir, 0700) < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot create: %s", dir,
                   g_strerror (errno));
      return false;
    }
    uint64_t bandwidth = 0;

    sm_json_get_uint64 (s->args, "bandwidth", &bandwidth);
    if (!sm_copy_worker_spawn (plan->copies, bandwidth, status, &pid, error))
      return false;
    sm_debug (DOMAIN, "copy worker %d started for %u layers", (int) pid,
              plan->copies->len);
    return true;
  }
  case SM_LSM_STEP_WAIT:
  case SM_LSM_STEP_CHECK_DEST:
  case SM_LSM_STEP_FLUSH:
  case SM_LSM_STEP_CHECK_SWITCH:
  case SM_LSM_STEP_STOP:
  case SM_LSM_STEP_COMPLETE:
  case SM_LSM_STEP_WAIT_SWITCH:
  case SM_LSM_STEP_CONT:
  case SM_LSM_STEP_CANCEL:
  case SM_LSM_STEP_STOP_COPY:
  case SM_LSM_STEP_REMOVE_FILES:
  case SM_LSM_STEP_DELETE_SOURCE:
  case SM_LSM_STEP_DELETE_METADATA:
  case SM_LSM_STEP_LAST:
    break;
  }
  g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
               "step %s is not a create step",
               sm_lsm_step_kind_to_string (s->kind));
  return false;
}

/* Removes the record of created files at RECORD and the temporary files a
 * writer of it killed mid-write left (.NAME.created.XXXXXX, see
 * sm_state_write_atomic): no stray file in the journal directory. */
static bool
remove_record (const char *record, GError **error)
{
  sm_state_remove_stale_temps (record);
  if (unlink (record) < 0 && errno != ENOENT) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot remove: %s",
                 record, g_strerror (errno));
    return false;
  }
  return true;
}

static bool finish_done (SmJournal *journal, const char *record_path,
                         SmQmp *qmp, const SmLsmInfo *info,
                         SmCreatedFiles *remove, GError **error);

/* Without atomicity, a snapshot that failed after others succeeded leaves
 * those in place (libvirt's non-atomic fallback): keep them, record them in
 * the metadata, remove only what the disks not snapshotted would have used.
 * Journaled like a finished create (the files to remove listed in the
 * "done" record), so that a crash in the middle leaves a state recover
 * finishes. */
static bool
finish_partial (Create *c, SmJournal *journal, const GError *cause,
                GError **error)
{
  SmLsmPlan *plan = c->plan;
  GString *msg = g_string_new (NULL);
  g_autoptr(SmSnapshotDef) def = sm_snapshot_def_new ();
  g_autoptr(SmCreatedFiles) remove = sm_created_files_new ();
  g_autoptr(GError) err = NULL;
  const char *const *paths;
  size_t i, k;
  bool any = false;

  def->name = g_strdup (plan->def->name);
  def->description = g_strdup (plan->def->description);
  def->state = g_strdup (plan->def->state);
  def->parent = g_strdup (plan->def->parent);
  def->creation_time = plan->def->creation_time;
  def->has_disks = true;
  for (i = 0; i < plan->info->disks->len; i++) {
    const SmLsmDisk *d = plan->info->disks->pdata[i];

    if (c->taken[i]) {
      SmSnapshotDisk *out = sm_snapshot_disk_new (d->name);

      out->snapshot = SM_SNAPSHOT_LOCATION_EXTERNAL;
      out->source = g_strdup (d->new_top);
      out->driver_type = g_strdup ("qcow2");
      g_ptr_array_add (def->disks, out);
      g_string_append_printf (msg, "; disk %s: snapshot taken, now on %s",
                              d->name, d->new_top);
      any = true;
    } else {
      g_string_append_printf (msg, "; disk %s: not snapshotted, still on %s",
                              d->name, d->orig_top);
    }
  }
  /* Everything created but the tops the VM runs on now. */
  paths = sm_created_files_paths (c->created, NULL);
  for (i = 0; paths[i]; i++) {
    bool keep = false;

    for (k = 0; k < plan->info->disks->len; k++)
      keep |= c->taken[k] &&
              strcmp (((SmLsmDisk *) plan->info->disks->pdata[k])->new_top,
                      paths[i]) == 0;
    if (!keep)
      sm_created_files_add (remove, paths[i]);
  }
  sm_journal_append (journal, sm_lsm_phase_record ("partial"), NULL);
  if (any && !(plan->flags & SM_LSM_NO_METADATA) &&
      (!sm_vm_state_save_snapshot (c->st, def, &err) ||
       !sm_vm_state_set_current (c->st, def->name, &err))) {
    g_string_append_printf (msg, "; metadata not saved: %s", err->message);
    g_clear_error (&err);
  }
  if (!finish_done (journal, c->record_path, c->qmp, plan->info, remove,
                    &err))
    g_string_append_printf (msg, "; %s (run 'snapmig recover')",
                            err->message);
  g_set_error (error, SM_ERROR, SM_ERROR_FAILED, "%s (partial snapshot %s%s)",
               cause->message, plan->info->snapshot, msg->str);
  g_string_free (msg, true);
  return false;
}

/* --reuse-external: no target that exists may be one another process holds
 * (QEMU's image locks) or another VM uses; checked before anything changes.
 * The copy worker checks each lower layer again, under its own lock, right
 * before it writes (layer-copy.c). */
static bool
check_targets_free (SmVmState *st, const SmLsmPlan *plan, GError **error)
{
  g_autoptr(GHashTable) known = sm_lsm_known_files (st);
  GPtrArray *const all[] = { plan->dest_plans, plan->top_plans };
  pid_t own = sm_lsm_own_qemu_pid (st);
  size_t a, i, k;

  for (a = 0; a < G_N_ELEMENTS (all); a++)
    for (i = 0; all[a] && i < all[a]->len; i++) {
      const SmPrecreatePlan *p = all[a]->pdata[i];

      for (k = 0; p && k < p->layers->len; k++) {
        const SmPrecreateLayer *l = p->layers->pdata[k];
        const SmLsmDisk *d = plan->info->disks->pdata[i];

        if (file_exists (l->path) &&
            !sm_lsm_check_not_in_use (known, l->path, own, error)) {
          g_prefix_error (error, "disk %s: cannot reuse ", d->name);
          return false;
        }
      }
    }
  return true;
}

/* Test hook SNAPMIG_TEST_CRASH_AFTER_STEP=POINT for the points between
 * records: "Nb" _exit(137)s right after journaling the begin of step N
 * (before it runs), "done" right after journaling that the create is done,
 * before its record of created files is removed (the last gap a crash can
 * hit). */
static void
crash_at (const char *point)
{
  const char *s = g_getenv ("SNAPMIG_TEST_CRASH_AFTER_STEP");

  if (s && strcmp (s, point) == 0)
    _exit (137);
}

/* The journal says the create is done, then its record of created files
 * goes (the files belong to the snapshot now), then the journal.  A crash
 * in between leaves a journal recover finishes the same way. */
static bool
finish_done (SmJournal *journal, const char *record_path, SmQmp *qmp,
             const SmLsmInfo *info, SmCreatedFiles *remove, GError **error)
{
  g_autoptr(SmJournal) owned = journal;
  json_object *rec = sm_lsm_phase_record ("done");
  g_autofree char *dir = g_path_get_dirname (record_path);
  const char *const *paths;
  size_t i;

  /* Files the create made and leaves no use for (a partial snapshot's):
   * removed after "done", by recover too if a crash comes first. */
  if (remove) {
    json_object *list = json_object_new_array ();

    paths = sm_created_files_paths (remove, NULL);
    for (i = 0; paths[i]; i++)
      json_object_array_add (list, json_object_new_string (paths[i]));
    json_object_object_add (rec, "remove", list);
  }
  if (!sm_journal_append (journal, rec, error)) {
    g_prefix_error (error, "the create is complete, but ");
    return false;
  }
  crash_at ("done");
  if (remove) {
    /* None of them is in use, unless QEMU says otherwise just now. */
    g_autoptr(GString) removed = g_string_new (NULL);
    g_autoptr(GString) kept = g_string_new (NULL);
    g_autoptr(SmCreatedFiles) left = NULL;
    g_autoptr(GError) err = NULL;
    Facts f = { NULL, NULL };

    if (!facts_query (qmp, &f, error))
      return false;
    left = remove_unused (&f, info, remove, removed, kept, &err);
    facts_clear (&f);
    if (err || sm_created_files_paths (left, NULL)[0]) {
      g_set_error (error, SM_ERROR, SM_ERROR_IN_USE, "files kept: %s%s",
                   kept->str, err ? err->message : "");
      return false;
    }
  }
  if (!remove_record (record_path, error))
    return false;
  return sm_state_fsync_dir (dir, error) &&
         sm_journal_finish (g_steal_pointer (&owned), error);
}

/* sm_lsm_wait in slices, so that an interruption is seen between two
 * (whether or not the waits of the library see it themselves), up to
 * WAIT's timeout. */
static bool
wait_interruptible (SmQmp *qmp, SmVmState *st, const SmLsmInfo *info,
                    const SmLsmWaitOptions *wait, GError **error)
{
  gint64 deadline = wait->timeout_ms < 0
                    ? -1
                    : g_get_monotonic_time () + (gint64) wait->timeout_ms * 1000;

  for (;;) {
    g_autoptr(GError) err = NULL;
    SmLsmWaitOptions slice = *wait;
    gint64 left = deadline < 0 ? G_MAXINT64
                               : (deadline - g_get_monotonic_time ()) / 1000;

    if (sm_interrupt_check (error))
      return false;
    slice.timeout_ms = (int) CLAMP (left, 0, 250);
    if (sm_lsm_wait (qmp, st, info, &slice, &err))
      return true;
    if (!g_error_matches (err, SM_ERROR, SM_ERROR_TIMEOUT) || left <= 250) {
      if (sm_interrupted () && !g_error_matches (err, SM_ERROR,
                                                 SM_ERROR_INTERRUPTED)) {
        g_clear_error (&err);
        sm_interrupt_check (&err);
      }
      g_propagate_error (error, g_steal_pointer (&err));
      return false;
    }
  }
}

static bool
create_run (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan,
            const SmLsmWaitOptions *wait, SmLsmCreated created, void *opaque,
            GError **error)
{
  g_autofree char *opid = sm_journal_new_opid ();
  g_autofree char *record_path = NULL;
  g_autofree bool *taken = g_new0 (bool, plan->info->disks->len);
  g_autoptr(SmJournal) journal = NULL;
  g_autoptr(GError) err = NULL;
  Create c = { qmp, st, plan, sm_created_files_new (), NULL, taken };
  bool snapshot_begun = false, metadata = false, ok = true;
  guint i;

  g_return_val_if_fail (plan->op == SM_LSM_OP_CREATE, false);
  if (!(plan->flags & SM_LSM_NO_METADATA)) {
    g_autoptr(SmSnapshotDef) old = sm_vm_state_load_snapshot (
      st, plan->info->snapshot, NULL);

    if (old) {
      g_set_error (error, SM_ERROR, SM_ERROR_EXISTS,
                   "snapshot %s exists already", plan->info->snapshot);
      sm_created_files_free (c.created);
      return false;
    }
  }
  if (!check_targets_free (st, plan, error)) {
    sm_created_files_free (c.created);
    return false;
  }
  record_path = g_strdup_printf ("%s/%s.created",
                                 sm_vm_state_journal_dir (st), opid);
  c.record_path = record_path;
  journal = sm_lsm_journal_open (st, "create", opid, plan->info, record_path,
                                 error);
  if (!journal) {
    sm_created_files_free (c.created);
    return false;
  }
  for (i = 0; i < plan->steps->len && ok; i++) {
    const SmLsmStep *s = plan->steps->pdata[i];

    /* SIGINT, SIGTERM, SIGHUP: leave between two steps, by the rollback. */
    if (sm_interrupt_check (&err)) {
      g_prefix_error (&err, "before step %u (%s): ", i + 1,
                      sm_lsm_step_kind_to_string (s->kind));
      ok = false;
      break;
    }
    if (!sm_lsm_journal_step (journal, plan, i, "begin", &err)) {
      ok = false;
      break;
    }
    {
      g_autofree char *point = g_strdup_printf ("%ub", i + 1);

      crash_at (point);
    }
    if (s->kind == SM_LSM_STEP_TRANSACTION || s->kind == SM_LSM_STEP_SNAPSHOT)
      snapshot_begun = true;
    if (s->kind == SM_LSM_STEP_SAVE_METADATA)
      metadata = true;
    sm_debug (DOMAIN, "create %s: step %u %s", plan->info->snapshot, i + 1,
              sm_lsm_step_kind_to_string (s->kind));
    if (!run_create_step (&c, i, &err)) {
      sm_journal_append (journal,
                         sm_lsm_step_record (plan, i, "failed", err), NULL);
      ok = false;
      if (s->kind == SM_LSM_STEP_SNAPSHOT && !(plan->flags & SM_LSM_ATOMIC) &&
          s->disk > 0) {
        bool partial = false;
        guint k;

        for (k = 0; k < plan->info->disks->len; k++)
          partial |= taken[k];
        if (partial) {
          finish_partial (&c, g_steal_pointer (&journal), err, error);
          sm_created_files_free (c.created);
          return false;
        }
      }
      break;
    }
    if (!sm_lsm_journal_step (journal, plan, i, "end", &err)) {
      ok = false;
      break;
    }
    sm_lsm_test_after_step ((int) i + 1);
  }
  sm_created_files_free (c.created);
  if (ok && wait) {
    g_autoptr(GError) werr = NULL;

    if (created)
      created (plan, opaque);
    bool waited = wait_interruptible (qmp, st, plan->info, wait, &werr);

    sm_lsm_progress_remove (st, plan->info->snapshot);
    if (!waited) {
      if (!g_error_matches (werr, SM_ERROR, SM_ERROR_INTERRUPTED)) {
        /* The snapshot is made; what the wait found is the caller's to
         * report (the move stays, for pivot or abort). */
        g_autoptr(GError) derr = NULL;

        if (!finish_done (g_steal_pointer (&journal), record_path, qmp,
                          plan->info, NULL, &derr))
          g_prefix_error (&werr, "%s; ", derr->message);
        g_propagate_error (error, g_steal_pointer (&werr));
        return false;
      }
      g_prefix_error (&werr, "while waiting for the mirrors and copies: ");
      err = g_steal_pointer (&werr);
      ok = false;
    }
  }
  if (ok) {
    if (!finish_done (g_steal_pointer (&journal), record_path, qmp,
                      plan->info, NULL, error))
      return false;
    if (created && !wait)
      created (plan, opaque);
    return true;
  }
  {
    g_autoptr(GString) report = g_string_new (NULL);
    Undo u = { qmp, st, plan->info, record_path, snapshot_begun, metadata,
               report };
    g_autoptr(GError) undo_err = NULL;
    g_autofree char *dir = g_path_get_dirname (record_path);
    bool interrupted = g_error_matches (err, SM_ERROR, SM_ERROR_INTERRUPTED) ||
                       sm_interrupted ();

    sm_journal_append (journal, sm_lsm_phase_record ("rollback"), NULL);
    if (!undo_create_uninterrupted (&u, &undo_err)) {
      /* The journal stays for `snapmig recover`. */
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "%s; undoing it failed too: %s (run 'snapmig recover')",
                   err->message, undo_err->message);
      return false;
    }
    /* The record goes only once the journal says the rollback is done. */
    if (sm_journal_append (journal, sm_lsm_phase_record ("rolled-back"),
                           NULL) &&
        remove_record (record_path, NULL) &&
        sm_state_fsync_dir (dir, NULL))
      sm_journal_finish (g_steal_pointer (&journal), NULL);
    if (interrupted)
      g_prefix_error (&err, "create of snapshot %s interrupted: ",
                      plan->info->snapshot);
    {
      g_autofree char *msg = g_strdup_printf ("%s; rolled back: %s",
                                              err->message, report->str);

      g_free (err->message);
      err->message = g_steal_pointer (&msg);
    }
  }
  g_propagate_error (error, g_steal_pointer (&err));
  return false;
}

bool
sm_lsm_create (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan, GError **error)
{
  return create_run (qmp, st, plan, NULL, NULL, NULL, error);
}

bool
sm_lsm_create_wait (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan,
                    const SmLsmWaitOptions *wait, SmLsmCreated created,
                    void *opaque, GError **error)
{
  return create_run (qmp, st, plan, wait, created, opaque, error);
}

/* ---- recover --------------------------------------------------------- */

/* What a create journal says happened, read strictly: the executor writes
 * step N "begin", then "end" or "failed", then step N + 1, and at last one
 * of the phases "done" (after "partial" for a partial snapshot) or
 * "rollback" then "rolled-back".  Any other sequence was not written by
 * snapmig: the journal is damaged and nothing is done on its word. */
typedef struct {
  bool done, partial, rollback, rolled_back;
  bool snapshot_begun;         /* the transaction or a snapshot step began */
  bool metadata;               /* save-metadata began (or a partial's) */
  bool files_begun, files_ended;
  GHashTable *snapshot_disks;  /* disks with a snapshot step begun */
  GHashTable *mirror_disks;    /* disks with a mirror step begun */
  int last_step;
  const char *last_kind;
  json_object *remove;         /* the "done" record's files to remove */
} CreateJournal;

static void
create_journal_clear (CreateJournal *cj)
{
  g_clear_pointer (&cj->snapshot_disks, g_hash_table_unref);
  g_clear_pointer (&cj->mirror_disks, g_hash_table_unref);
}

/* False with *WHY ("line N: ...") for a record out of sequence. */
static bool
read_create_journal (json_object *records, CreateJournal *cj, char **why)
{
  size_t i, n = json_object_array_length (records);
  int open_step = 0, next = 1;

  memset (cj, 0, sizeof *cj);
  cj->last_kind = "none";
  cj->snapshot_disks = g_hash_table_new (g_str_hash, g_str_equal);
  cj->mirror_disks = g_hash_table_new (g_str_hash, g_str_equal);
  for (i = 1; i < n; i++) {
    json_object *rec = json_object_array_get_idx (records, i);
    const char *op_phase = sm_json_get_string (rec, "op-phase");
    const char *kind = sm_json_get_string (rec, "kind");
    const char *phase = sm_json_get_string (rec, "phase");
    const char *disk = sm_json_get_string (rec, "disk");
    int64_t step = 0;

    if (cj->done || cj->rolled_back) {
      *why = g_strdup_printf ("line %zu: a record after the end", i + 1);
      return false;
    }
    if (op_phase) {
      if (strcmp (op_phase, "done") == 0 && open_step == 0 && !cj->rollback) {
        cj->done = true;
        cj->remove = sm_json_get_array (rec, "remove");
      } else if (strcmp (op_phase, "partial") == 0 && !cj->rollback) {
        cj->partial = cj->metadata = true;
      } else if (strcmp (op_phase, "rollback") == 0 && !cj->rollback) {
        /* Also after "partial": recover rolls an unfinished partial
         * snapshot back whole. */
        cj->rollback = true;
      } else if (strcmp (op_phase, "rolled-back") == 0 && cj->rollback) {
        cj->rolled_back = true;
      } else {
        *why = g_strdup_printf ("line %zu: phase \"%s\" out of sequence",
                                i + 1, op_phase);
        return false;
      }
      continue;
    }
    if (!kind || !phase || !sm_json_get_int64 (rec, "step", &step) ||
        cj->rollback || cj->partial) {
      *why = g_strdup_printf ("line %zu: not a record of a create step here",
                              i + 1);
      return false;
    }
    if (strcmp (phase, "begin") == 0 && open_step == 0 && step == next) {
      open_step = (int) step;
      if (strcmp (kind, "transaction") == 0 || strcmp (kind, "snapshot") == 0)
        cj->snapshot_begun = true;
      if (strcmp (kind, "snapshot") == 0 && disk)
        g_hash_table_add (cj->snapshot_disks, (char *) disk);
      if (strcmp (kind, "mirror") == 0 && disk)
        g_hash_table_add (cj->mirror_disks, (char *) disk);
      if (strcmp (kind, "save-metadata") == 0)
        cj->metadata = true;
      if (strcmp (kind, "create-dest") == 0 || strcmp (kind, "create-top") == 0)
        cj->files_begun = true;
    } else if ((strcmp (phase, "end") == 0 || strcmp (phase, "failed") == 0) &&
               step == open_step && step > 0) {
      open_step = 0;
      next++;
      if (strcmp (phase, "end") == 0) {
        cj->last_step = (int) step;
        cj->last_kind = kind;
        if (strcmp (kind, "create-dest") == 0 ||
            strcmp (kind, "create-top") == 0)
          cj->files_ended = true;
      }
    } else {
      *why = g_strdup_printf ("line %zu: step %" G_GINT64_FORMAT " %s out of "
                              "sequence (expected %s of step %d)", i + 1, step,
                              phase, open_step ? "the end" : "the begin",
                              open_step ? open_step : next);
      return false;
    }
  }
  return true;
}

/* What the VM and the files show that the journal CJ cannot explain (it
 * lost records), or NULL.  Caller frees. */
static char *
create_conflict (const CreateJournal *cj, const SmLsmInfo *info,
                 const Facts *f, SmVmState *st, const char *record)
{
  g_autoptr(SmCreatedFiles) files = NULL;
  g_autoptr(SmSnapshotDef) def = NULL;
  g_autoptr(GError) err = NULL;
  size_t i;

  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];
    const SmBlockDisk *bd = facts_disk (f, d->name);
    const char *top = bd ? sm_block_disk_top (bd) : NULL;
    bool snapped = g_hash_table_contains (cj->snapshot_disks, d->name) ||
                   (cj->snapshot_begun &&
                    !g_hash_table_size (cj->snapshot_disks));

    if (top && strcmp (top, d->new_top) == 0 && !snapped)
      return g_strdup_printf ("disk %s runs on the new top %s and no "
                              "snapshot step of it is journaled", d->name,
                              top);
    if (facts_has_job (f, d->job_id) &&
        !g_hash_table_contains (cj->mirror_disks, d->name))
      return g_strdup_printf ("mirror job %s of disk %s runs and no mirror "
                              "step of it is journaled", d->job_id, d->name);
  }
  files = sm_created_files_load (record, &err);
  if (!files && !g_error_matches (err, SM_ERROR, SM_ERROR_NOT_FOUND))
    return g_strdup (err->message);
  if (files && sm_created_files_paths (files, NULL)[0] && !cj->files_begun)
    return g_strdup_printf ("its record %s lists files and no step that "
                            "creates files is journaled", record);
  if (!files && cj->files_ended && !cj->rolled_back)
    return g_strdup_printf ("its record of created files %s is missing, "
                            "although steps that create files ran", record);
  if (!cj->metadata) {
    g_autofree char *move = sm_lsm_info_path (st, info->snapshot);

    if (file_exists (move))
      return g_strdup_printf ("the move record %s exists and no step that "
                              "saves it is journaled", move);
  }
  def = sm_vm_state_load_snapshot (st, info->snapshot, NULL);
  if (def && !cj->metadata)
    return g_strdup_printf ("the metadata of snapshot %s exists and no step "
                            "that saves it is journaled", info->snapshot);
  return NULL;
}

/* The report of a journal recover keeps: why, what the VM runs on, the
 * fix.  Caller frees. */
static char *
kept_report (const char *what, const char *why, const Facts *f,
             const char *fix)
{
  g_autofree char *vm = facts_describe (f);

  return g_strdup_printf ("%s (%s): kept; what the VM runs on now: %s; "
                          "fix: %s", what, why, vm, fix);
}

/* How to finish a create by hand when its journal cannot be trusted. */
static char *
create_fix (const SmLsmInfo *info, const char *record, const char *path)
{
  GString *fix = g_string_new ("to undo the create of snapshot ");
  size_t i;

  g_string_append_printf (fix, "%s by hand: ", info->snapshot);
  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];

    g_string_append_printf (fix, "disk %s back to %s (", d->name, d->orig_top);
    if (d->job_id)
      g_string_append_printf (fix, "block-job-cancel %s, ", d->job_id);
    g_string_append_printf (fix, "block-commit %s into it), ", d->new_top);
  }
  g_string_append_printf (fix, "delete the files listed in %s that no VM "
                          "uses, then this journal %s; or repair the journal "
                          "and run recover again", record ? record : "its record",
                          path);
  return g_string_free (fix, false);
}

/* Reopens the journal at PATH and appends op-phase PHASE. */
static bool
journal_phase (const char *path, const char *phase, GError **error)
{
  g_autoptr(SmJournal) j = sm_journal_reopen (path, error);

  return j && sm_journal_append (j, sm_lsm_phase_record (phase), error);
}

/* Removes RECORD (its files are gone or belong to the snapshot), then the
 * journal at PATH. */
static bool
remove_record_and_journal (const char *record, const char *path,
                           GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);

  if (record && !remove_record (record, error))
    return false;
  if (unlink (path) < 0 && errno != ENOENT) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "journal %s: cannot remove: %s",
                 path, g_strerror (errno));
    return false;
  }
  return sm_state_fsync_dir (dir, error);
}

static char *
recover_create (SmQmp *qmp, SmVmState *st, const char *path,
                json_object *records, const SmLsmInfo *info,
                const char *record, const Facts *f, GError **error)
{
  CreateJournal cj;
  g_autofree char *why = NULL;
  g_autofree char *conflict = NULL;
  g_autofree char *fix = create_fix (info, record, path);
  g_autoptr(GString) report = g_string_new (NULL);
  g_autoptr(GError) err = NULL;
  char *msg = NULL;

  if (!record) {
    g_autofree char *what = g_strdup_printf ("journal %s is damaged", path);

    g_set_error_literal (error, SM_ERROR, SM_ERROR_INVALID, msg = kept_report (
      what, "its header names no record of created files", f, fix));
    g_free (msg);
    return NULL;
  }
  if (!read_create_journal (records, &cj, &why) ||
      (!cj.done && !cj.rolled_back &&
       (conflict = create_conflict (&cj, info, f, st, record)))) {
    g_autofree char *what = g_strdup_printf ("journal %s is damaged", path);

    if (conflict) {
      g_free (why);
      why = cj.last_step
            ? g_strdup_printf ("it ends after step %d (%s), but %s",
                               cj.last_step, cj.last_kind, conflict)
            : g_strdup_printf ("it has no step record, but %s", conflict);
    }
    create_journal_clear (&cj);
    msg = kept_report (what, why, f, fix);
    g_set_error_literal (error, SM_ERROR, SM_ERROR_INVALID, msg);
    g_free (msg);
    return NULL;
  }
  if (cj.done) {
    g_autoptr(SmCreatedFiles) remove = sm_created_files_new ();
    g_autoptr(SmCreatedFiles) left = NULL;
    g_autoptr(GString) removed = g_string_new (NULL);
    g_autoptr(GString) kept = g_string_new (NULL);
    Facts now = { NULL, NULL };
    size_t i;

    for (i = 0; cj.remove && i < json_object_array_length (cj.remove); i++) {
      const char *p = json_object_get_string (
        json_object_array_get_idx (cj.remove, i));

      if (p && g_path_is_absolute (p))
        sm_created_files_add (remove, p);
    }
    create_journal_clear (&cj);
    if (!facts_query (qmp, &now, error))
      return NULL;
    left = remove_unused (&now, info, remove, removed, kept, &err);
    facts_clear (&now);
    if (err || sm_created_files_paths (left, NULL)[0]) {
      g_set_error (error, SM_ERROR, SM_ERROR_IN_USE,
                   "journal %s: create of snapshot %s had finished, but "
                   "files it leaves no use for stay: %s%s: kept", path,
                   info->snapshot, kept->str, err ? err->message : "");
      return NULL;
    }
    if (!remove_record_and_journal (record, path, error))
      return NULL;
    return g_strdup_printf ("create of snapshot %s had finished; its record "
                            "%s and journal are removed%s%s", info->snapshot,
                            record, removed->len ? "; removed: " : "",
                            removed->str);
  }
  if (cj.rolled_back) {
    create_journal_clear (&cj);
    if (!remove_record_and_journal (record, path, error))
      return NULL;
    return g_strdup_printf ("create of snapshot %s had been rolled back; its "
                            "record %s and journal are removed",
                            info->snapshot, record);
  }
  {
    Undo u = { qmp, st, info, record, cj.snapshot_begun, cj.metadata,
               report };
    int last_step = cj.last_step;
    g_autofree char *last_kind = g_strdup (cj.last_kind);

    create_journal_clear (&cj);
    if (!cj.rollback && !journal_phase (path, "rollback", error))
      return NULL;
    if (!undo_create_uninterrupted (&u, error)) {
      g_prefix_error (error, "rolling back create of snapshot %s: ",
                      info->snapshot);
      g_prefix_error (error, "journal %s kept: ", path);
      return NULL;
    }
    if (!journal_phase (path, "rolled-back", error) ||
        !remove_record_and_journal (record, path, error))
      return NULL;
    return g_strdup_printf ("create of snapshot %s, interrupted after step %d "
                            "(%s): rolled back: %s; its record and journal "
                            "are removed", info->snapshot, last_step,
                            last_kind, report->str);
  }
}

/* Sets ERROR to the report of a journal kept (SM_ERROR_INVALID). */
static void
set_kept (GError **error, const char *path, const char *why, const Facts *f,
          const char *fix)
{
  g_autofree char *what = g_strdup_printf ("journal %s is damaged", path);
  g_autofree char *msg = kept_report (what, why, f, fix);

  g_set_error_literal (error, SM_ERROR, SM_ERROR_INVALID, msg);
}

static bool
snapmig_jobs_run (const Facts *f)
{
  size_t i;

  for (i = 0; f->jobs && i < f->jobs->len; i++)
    if (g_str_has_prefix (((SmBlockJob *) f->jobs->pdata[i])->id, "snapmig-"))
      return true;
  return false;
}

#define GENERIC_FIX "compare the journal with what the VM runs on and the " \
  "files of the move (lsm/ in the state directory); repair the journal " \
  "and run recover again, or finish by hand and delete the journal"

/* One journal: finished, rolled back, or handed on; NULL with ERROR (the
 * whole report: what, why, what the VM runs on, the fix; the journal kept)
 * when it cannot be. */
static char *
recover_one (SmQmp *qmp, SmVmState *st, const char *path, GError **error)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) records = NULL;
  g_autoptr(SmLsmInfo) info = NULL;
  Facts f = { NULL, NULL };
  json_object *header;
  const char *op, *record;
  char *msg = NULL;

  /* The facts first: every decision below weighs the journal against
   * them. */
  if (!facts_query (qmp, &f, error))
    return NULL;
  records = sm_journal_load (path, &err);
  if (!records) {
    if (g_error_matches (err, SM_ERROR, SM_ERROR_INVALID)) {
      g_autofree char *prefix = g_strdup_printf ("journal %s: ", path);
      const char *why = err->message;

      if (g_str_has_prefix (why, prefix))
        why += strlen (prefix);
      set_kept (error, path, why, &f, GENERIC_FIX);
    }
    else
      g_propagate_error (error, g_steal_pointer (&err));
    facts_clear (&f);
    return NULL;
  }
  if (json_object_array_length (records) == 0) {
    /* A crash between creating the journal and writing its header leaves
     * it empty; a journal emptied by hand looks the same.  With snapmig's
     * mirrors running it may have been theirs: kept. */
    if (snapmig_jobs_run (&f)) {
      g_autofree char *what = g_strdup_printf ("journal %s is empty", path);
      g_autofree char *report = kept_report (
        what, "snapmig block jobs run, it may have been their move's", &f,
        "if no create, pivot or abort of this VM ran when it was written "
        "(its name holds the time), delete it; otherwise finish that move "
        "by hand (pivot or abort) and then delete it");

      g_set_error_literal (error, SM_ERROR, SM_ERROR_INVALID, report);
      facts_clear (&f);
      return NULL;
    }
    facts_clear (&f);
    if (unlink (path) < 0 && errno != ENOENT) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "journal %s: cannot "
                   "remove: %s", path, g_strerror (errno));
      return NULL;
    }
    return g_strdup_printf ("%s: empty journal removed (no operation had "
                            "begun, no snapmig block job runs)", path);
  }
  header = json_object_array_get_idx (records, 0);
  op = sm_json_get_string (header, "op");
  record = sm_json_get_string (header, "record");
  if (!op) {
    set_kept (error, path, "line 1: the header names no operation", &f,
              GENERIC_FIX);
    facts_clear (&f);
    return NULL;
  }
  /* A rebase journal: lib/rebase.c owns it (a rebase has no migration
   * info). */
  if (strcmp (op, "rebase") == 0) {
    facts_clear (&f);
    return sm_rebase_recover (qmp, st, path, records, error);
  }
  /* An outgoing cross-host migration: lib/migrate.c owns it. */
  if (strcmp (op, "migrate-out") == 0) {
    facts_clear (&f);
    return sm_migrate_recover_source (qmp, st, path, records, error);
  }
  if (strcmp (op, "create") != 0 && strcmp (op, "pivot") != 0 &&
      strcmp (op, "abort") != 0) {
    g_autofree char *why = g_strdup_printf (
      "line 1: operation \"%s\" is not one recover knows", op);

    set_kept (error, path, why, &f, GENERIC_FIX);
    facts_clear (&f);
    return NULL;
  }
  info = sm_lsm_info_from_json (sm_json_get_object (header, "info"), &err);
  if (!info) {
    g_autofree char *why = g_strdup_printf ("line 1: %s", err->message);

    set_kept (error, path, why, &f, GENERIC_FIX);
    facts_clear (&f);
    return NULL;
  }
  if (strcmp (op, "create") == 0)
    msg = recover_create (qmp, st, path, records, info, record, &f, error);
  else
    msg = sm_lsm_recover_switch (qmp, st, path, records, info, op, error);
  facts_clear (&f);
  return msg;
}

/* The move records (lsm/NAME.json) that cannot be read: each one a line of
 * MSGS, with what the VM runs on. */
static void
check_move_records (SmQmp *qmp, SmVmState *st, GPtrArray *problems)
{
  g_autofree char *any = sm_lsm_info_path (st, "x");
  g_autofree char *dir = g_path_get_dirname (any);
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d))) {
    g_autofree char *snapshot = NULL;
    g_autoptr(SmLsmInfo) info = NULL;
    g_autoptr(GError) err = NULL;

    /* Not a waiting command's progress file, which a killed pivot
     * leaves (status ignores it once its writer is gone). */
    snapshot = sm_lsm_record_snapshot (name);
    if (!snapshot)
      continue;
    info = sm_lsm_info_load (st, snapshot, &err);
    if (!info && g_error_matches (err, SM_ERROR, SM_ERROR_INVALID)) {
      Facts f = { NULL, NULL };
      g_autofree char *vm = NULL;

      if (!facts_query (qmp, &f, NULL))
        facts_clear (&f);
      vm = facts_describe (&f);
      g_ptr_array_add (problems, g_strdup_printf (
        "%s; what the VM runs on now: %s", err->message, vm));
      facts_clear (&f);
    }
  }
}

bool
sm_lsm_recover (SmQmp *qmp, SmVmState *st, char ***done, GError **error)
{
  g_auto(GStrv) journals = NULL;
  g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  size_t i;

  *done = NULL;
  journals = sm_journal_list (sm_vm_state_journal_dir (st), error);
  if (!journals)
    return false;
  /* Each journal on its own: one kept for the administrator does not stop
   * the others from being finished. */
  for (i = 0; journals[i]; i++) {
    g_autoptr(GError) err = NULL;
    char *msg = recover_one (qmp, st, journals[i], &err);

    if (msg)
      g_ptr_array_add (lines, msg);
    else
      g_ptr_array_add (problems, g_strdup (err->message));
  }
  check_move_records (qmp, st, problems);
  g_ptr_array_add (lines, NULL);
  *done = (char **) g_ptr_array_free (g_steal_pointer (&lines), false);
  if (problems->len) {
    g_ptr_array_add (problems, NULL);
    {
      g_auto(GStrv) all = (char **) g_ptr_array_free (
        g_steal_pointer (&problems), false);
      g_autofree char *joined = g_strjoinv ("\n", all);

      g_set_error_literal (error, SM_ERROR, SM_ERROR_INVALID, joined);
    }
    return false;
  }
  return true;
}
