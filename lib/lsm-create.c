/* libsnapmig — live storage migration: the create executor, the undo of
 * a create, and recover (see lsm.h for the recovery policy). */
#include "lsm.h"
#include "lsm-private.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-lock.h"
#include "journal.h"
#include "lsm-inuse.h"
#include "rebase.h"

/* ---- test hooks ------------------------------------------------------ */

static int
crash_after_step (void)
{
  const char *s = g_getenv ("SNAPMIG_TEST_CRASH_AFTER_STEP");

  return s ? atoi (s) : 0;
}

/* Test hook SNAPMIG_TEST_KILL_AFTER_STEP=N:PID: SIGKILL process PID (the
 * test's QEMU) after step N and wait until it is dead, to test a QEMU that
 * dies in the middle of a create. */
static void
kill_after_step (int step)
{
  const char *s = g_getenv ("SNAPMIG_TEST_KILL_AFTER_STEP");
  g_autofree char *stat_path = NULL;
  const char *colon;
  pid_t pid;
  int i;

  if (!s || atoi (s) != step || !(colon = strchr (s, ':')))
    return;
  pid = (pid_t) atoi (colon + 1);
  if (pid <= 0 || kill (pid, SIGKILL) < 0)
    return;
  stat_path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  for (i = 0; i < 1000; i++) {
    g_autofree char *text = NULL;
    const char *p;

    if (!g_file_get_contents (stat_path, &text, NULL, NULL))
      return;
    p = strrchr (text, ')');
    if (p && (p[2] == 'Z' || p[2] == 'X'))
      return;
    g_usleep (10000);
  }
}

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
static bool
offline_commit (const SmLsmDisk *d, GError **error)
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

typedef struct {
  SmQmp *qmp;
  SmVmState *st;
  const SmLsmInfo *info;
  const char *record_path;     /* files created by the operation */
  bool snapshot_begun;         /* the transaction may have happened */
  bool metadata;               /* the metadata may have been saved */
} Undo;

/* Returns the VM to the chains it ran on before the create and removes what
 * the create made.  Continues past failures (each one leaves more in place,
 * never less) and reports the first. */
static bool
undo_create (const Undo *u, GError **error)
{
  g_autoptr(GError) first = NULL;
  g_autoptr(SmCreatedFiles) created = NULL;
  g_autofree char *status_path = sm_lsm_copy_status_path (u->st,
                                                          u->info->snapshot);
  bool qemu_gone = u->qmp == NULL;
  bool keep_files = false;
  size_t i;

  {
    g_autoptr(GError) err = NULL;

    if (!sm_copy_worker_kill (status_path, 10000, &err) && !first)
      first = g_steal_pointer (&err);
  }
  for (i = 0; i < u->info->disks->len && !qemu_gone; i++) {
    const SmLsmDisk *d = u->info->disks->pdata[i];
    g_autoptr(GError) err = NULL;

    if (d->job_id &&
        !sm_block_job_cancel_wait (u->qmp, d->job_id, UNDO_TIMEOUT_MS, &err)) {
      if (g_error_matches (err, SM_ERROR, SM_ERROR_DISCONNECTED))
        qemu_gone = true;
      else if (!first)
        first = g_steal_pointer (&err);
    }
  }
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
      if (file_exists (d->new_top) && !offline_commit (d, &err)) {
        keep_files = true;
        if (!first)
          first = g_steal_pointer (&err);
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
  if (u->metadata) {
    g_autoptr(GError) err = NULL;

    if (!sm_lsm_delete_metadata (u->st, u->info->snapshot, u->info->parent,
                                 &err) && !first)
      first = g_steal_pointer (&err);
  }
  if (keep_files) {
    /* A disk may still use a new top: removing files could lose data. */
    if (!first)
      g_set_error (&first, SM_ERROR, SM_ERROR_FAILED, "undo incomplete");
    g_prefix_error (&first, "files kept (record %s): ", u->record_path);
  } else {
    g_autoptr(GError) err = NULL;

    created = sm_created_files_load (u->record_path, &err);
    if (!created && !g_error_matches (err, SM_ERROR, SM_ERROR_NOT_FOUND)) {
      if (!first)
        first = g_steal_pointer (&err);
    } else if (created && !sm_created_files_rollback (created, &err)) {
      if (!first)
        first = g_steal_pointer (&err);
    } else {
      unlink (u->record_path);
    }
    sm_lsm_remove_files (u->st, u->info->snapshot);
  }
  if (first) {
    g_propagate_error (error, g_steal_pointer (&first));
    return false;
  }
  return true;
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
    if (!sm_copy_worker_spawn (plan->copies, status, &pid, error))
      return false;
    sm_debug (DOMAIN, "copy worker %d started for %u layers", (int) pid,
              plan->copies->len);
    return true;
  }
  case SM_LSM_STEP_WAIT:
  case SM_LSM_STEP_CHECK_DEST:
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

/* Without atomicity, a snapshot that failed after others succeeded leaves
 * those in place (libvirt's non-atomic fallback): keep them, record them in
 * the metadata, remove only the new tops of the disks not snapshotted. */
static bool
finish_partial (Create *c, const GError *cause, GError **error)
{
  SmLsmPlan *plan = c->plan;
  GString *msg = g_string_new (NULL);
  g_autoptr(SmSnapshotDef) def = sm_snapshot_def_new ();
  size_t i;
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
      g_autoptr(GError) held = NULL;

      /* Never a file another process holds (lib/image-lock.h). */
      if (sm_image_check_unlocked (d->new_top, 0, &held))
        unlink (d->new_top);
      else
        g_string_append_printf (msg, "; kept %s", held->message);
      g_string_append_printf (msg, "; disk %s: not snapshotted, still on %s",
                              d->name, d->orig_top);
    }
  }
  unlink (c->record_path);
  if (any && !(plan->flags & SM_LSM_NO_METADATA)) {
    g_autoptr(GError) err = NULL;

    if (!sm_vm_state_save_snapshot (c->st, def, &err) ||
        !sm_vm_state_set_current (c->st, def->name, &err))
      g_string_append_printf (msg, "; metadata not saved: %s", err->message);
  }
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

bool
sm_lsm_create (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan, GError **error)
{
  g_autofree char *opid = sm_journal_new_opid ();
  g_autofree char *record_path = NULL;
  g_autofree bool *taken = g_new0 (bool, plan->info->disks->len);
  g_autoptr(SmJournal) journal = NULL;
  g_autoptr(GError) err = NULL;
  Create c = { qmp, st, plan, sm_created_files_new (), NULL, taken };
  int crash_after = crash_after_step ();
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

    if (!sm_lsm_journal_step (journal, plan, i, "begin", &err)) {
      ok = false;
      break;
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
          finish_partial (&c, err, error);
          sm_journal_finish (g_steal_pointer (&journal), NULL);
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
    if (crash_after == (int) i + 1)
      _exit (137);
    kill_after_step ((int) i + 1);
  }
  sm_created_files_free (c.created);
  if (ok) {
    unlink (record_path);
    return sm_lsm_journal_done (g_steal_pointer (&journal), error);
  }
  {
    Undo u = { qmp, st, plan->info, record_path, snapshot_begun, metadata };
    g_autoptr(GError) undo_err = NULL;

    sm_journal_append (journal, sm_lsm_phase_record ("rollback"), NULL);
    if (!undo_create (&u, &undo_err)) {
      /* The journal stays for `snapmig recover`. */
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "%s; undoing it failed too: %s (run 'snapmig recover')",
                   err->message, undo_err->message);
      return false;
    }
    sm_journal_append (journal, sm_lsm_phase_record ("rolled-back"), NULL);
    sm_journal_finish (g_steal_pointer (&journal), NULL);
  }
  g_propagate_error (error, g_steal_pointer (&err));
  return false;
}

/* ---- recover --------------------------------------------------------- */

static char *
recover_one (SmQmp *qmp, SmVmState *st, const char *path, GError **error)
{
  g_autoptr(json_object) records = sm_journal_load (path, error);
  g_autoptr(SmLsmInfo) info = NULL;
  json_object *header, *v;
  const char *op, *record = NULL, *last_kind = "none";
  bool snapshot_begun = false, metadata = false, done = false;
  int last_step = 0;
  size_t i;

  if (!records)
    return NULL;
  if (json_object_array_length (records) == 0) {
    unlink (path);
    return g_strdup_printf ("%s: empty journal removed", path);
  }
  header = json_object_array_get_idx (records, 0);
  op = json_object_object_get_ex (header, "op", &v) ?
       json_object_get_string (v) : NULL;
  if (g_strcmp0 (op, "rebase") == 0)        /* rebase.c owns its journal */
    return sm_rebase_recover (qmp, st, path, records, error);
  if (json_object_object_get_ex (header, "record", &v))
    record = json_object_get_string (v);
  info = json_object_object_get_ex (header, "info", &v) ?
         sm_lsm_info_from_json (v, error) : NULL;
  if (!info) {
    if (error && !*error)   /* no "info" at all, rather than a bad one */
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "journal %s: the header has no operation info", path);
    else
      g_prefix_error (error, "journal %s: ", path);
    return NULL;
  }
  if (!op) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "journal %s: the header names no operation", path);
    return NULL;
  }
  for (i = 1; i < json_object_array_length (records); i++) {
    json_object *rec = json_object_array_get_idx (records, i);
    const char *kind = NULL, *phase = NULL;

    if (json_object_object_get_ex (rec, "op-phase", &v) &&
        strcmp (json_object_get_string (v), "done") == 0)
      done = true;
    if (json_object_object_get_ex (rec, "kind", &v))
      kind = json_object_get_string (v);
    if (json_object_object_get_ex (rec, "phase", &v))
      phase = json_object_get_string (v);
    if (!kind || !phase)
      continue;
    if (strcmp (phase, "begin") == 0 &&
        (strcmp (kind, "transaction") == 0 || strcmp (kind, "snapshot") == 0))
      snapshot_begun = true;
    if (strcmp (phase, "begin") == 0 && strcmp (kind, "save-metadata") == 0)
      metadata = true;
    if (strcmp (phase, "end") == 0 &&
        json_object_object_get_ex (rec, "step", &v)) {
      last_step = json_object_get_int (v);
      last_kind = kind;
    }
  }
  if (done) {
    unlink (path);
    return g_strdup_printf ("%s of snapshot %s had finished; journal removed",
                            op, info->snapshot);
  }
  if (strcmp (op, "create") == 0) {
    Undo u = { qmp, st, info, record, snapshot_begun, metadata };

    if (!record) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "journal %s: no record of created files", path);
      return NULL;
    }
    if (!undo_create (&u, error)) {
      g_prefix_error (error, "rolling back create of snapshot %s: ",
                      info->snapshot);
      return NULL;
    }
    unlink (path);
    return g_strdup_printf ("create of snapshot %s, interrupted after step %d "
                            "(%s): rolled back, %s and the files it created "
                            "are removed", info->snapshot, last_step,
                            last_kind,
                            qmp ? "the VM runs on its original chain"
                                : "QEMU is gone: the new tops were folded "
                                  "back into the original images");
  }
  return sm_lsm_recover_switch (qmp, st, path, records, info, op, error);
}

char **
sm_lsm_recover (SmQmp *qmp, SmVmState *st, GError **error)
{
  g_auto(GStrv) journals = sm_journal_list (sm_vm_state_journal_dir (st),
                                            error);
  g_autoptr(GPtrArray) done = g_ptr_array_new_with_free_func (g_free);
  size_t i;

  if (!journals)
    return NULL;
  for (i = 0; journals[i]; i++) {
    char *msg = recover_one (qmp, st, journals[i], error);

    if (!msg)
      return NULL;
    g_ptr_array_add (done, msg);
  }
  g_ptr_array_add (done, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&done), false);
}
