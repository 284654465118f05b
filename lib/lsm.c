/* libsnapmig — live storage migration: executors (see lsm.h).  The plans
 * come from lsm-plan.c; this file runs them against QEMU and the file
 * system, journaling every step. */
#include "lsm.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"

#define DOMAIN "lsm"
#define POLL_MS 50
/* Folding a snapshot back or cancelling a mirror touches only what the guest
 * wrote since the snapshot: bounded, unlike the waits the user times. */
#define UNDO_TIMEOUT_MS 120000

/* ---- the VM ---------------------------------------------------------- */

static bool
check_chain_against_qemu (const SmBlockDisk *bd, const SmImageChain *chain,
                          GError **error)
{
  size_t i;

  if (chain->layers->len != bd->chain->len) {
    g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                 "QEMU shows %u layers, the image headers %u",
                 bd->chain->len, chain->layers->len);
    return false;
  }
  for (i = 0; i < chain->layers->len; i++) {
    const SmImageInfo *img = chain->layers->pdata[i];
    const SmBlockLayer *ql = bd->chain->pdata[i];

    if (g_strcmp0 (sm_image_format_to_string (img->format), ql->format) != 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                   "%s: QEMU opened it as %s, the chain states %s",
                   img->path, ql->format,
                   sm_image_format_to_string (img->format));
      return false;
    }
  }
  return true;
}

SmLsmVm *
sm_lsm_vm_query (SmQmp *qmp, GError **error)
{
  g_autoptr(SmLsmVm) vm = sm_lsm_vm_new ();
  g_autoptr(GPtrArray) disks = NULL;
  g_autoptr(GPtrArray) jobs = NULL;
  g_autoptr(json_object) status = NULL;
  json_object *v;
  const SmQmpCaps *caps;
  size_t i;

  caps = sm_qmp_probe (qmp, error);
  if (!caps)
    return NULL;
  vm->has_transaction = caps->caps[SM_QMP_CAP_TRANSACTION];
  vm->has_copy_mode = caps->caps[SM_QMP_CAP_MIRROR_COPY_MODE];
  disks = sm_block_query_disks (qmp, error);
  if (!disks)
    return NULL;
  jobs = sm_block_query_jobs (qmp, error);
  if (!jobs)
    return NULL;
  status = sm_qmp_execute (qmp, "query-status", NULL, error);
  if (!status)
    return NULL;
  if (json_object_object_get_ex (status, "status", &v))
    vm->run_state = g_strdup (json_object_get_string (v));
  g_ptr_array_extend_and_steal (vm->disks, g_steal_pointer (&disks));
  g_ptr_array_extend_and_steal (vm->jobs, g_steal_pointer (&jobs));

  for (i = 0; i < vm->disks->len; i++) {
    const SmBlockDisk *bd = vm->disks->pdata[i];
    const SmBlockLayer *top = bd->chain->len ? bd->chain->pdata[0] : NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(SmImageChain) chain = NULL;
    int fmt;

    if (!top)
      continue;
    fmt = sm_image_format_from_string (top->format ? top->format : "");
    if (fmt < 0)
      g_set_error (&err, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "format %s is not supported", top->format);
    else if (!g_path_is_absolute (top->filename))
      g_set_error (&err, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "QEMU names its image %s, not by an absolute path",
                   top->filename);
    else
      chain = sm_image_chain_open (top->filename, fmt, NULL,
                                   SM_CHAIN_ALLOW_UNSTATED_FORMAT, &err);
    if (chain && !check_chain_against_qemu (bd, chain, &err))
      g_clear_pointer (&chain, sm_image_chain_free);
    if (chain)
      g_hash_table_insert (vm->chains, g_strdup (sm_block_disk_id (bd)),
                           g_steal_pointer (&chain));
    else
      g_hash_table_insert (vm->chain_errors, g_strdup (sm_block_disk_id (bd)),
                           g_strdup (err->message));
  }
  return g_steal_pointer (&vm);
}

/* ---- state files ----------------------------------------------------- */

static char *
lsm_file (SmVmState *st, const char *snapshot, const char *suffix)
{
  g_autofree char *base = g_strdup_printf ("%s%s", snapshot, suffix);

  return g_build_filename (sm_vm_state_dir (st), "lsm", base, NULL);
}

char *
sm_lsm_info_path (SmVmState *st, const char *snapshot)
{
  return lsm_file (st, snapshot, ".json");
}

char *
sm_lsm_created_path (SmVmState *st, const char *snapshot)
{
  return lsm_file (st, snapshot, ".created");
}

char *
sm_lsm_copy_status_path (SmVmState *st, const char *snapshot)
{
  return lsm_file (st, snapshot, ".copy.json");
}

SmLsmInfo *
sm_lsm_info_load (SmVmState *st, const char *snapshot, GError **error)
{
  g_autofree char *path = sm_lsm_info_path (st, snapshot);
  g_autofree char *text = NULL;
  g_autoptr(json_object) obj = NULL;
  SmLsmInfo *info;

  if (!g_file_get_contents (path, &text, NULL, NULL)) {
    g_autoptr(SmSnapshotDef) def = sm_vm_state_load_snapshot (st, snapshot,
                                                              error);

    if (!def)
      return NULL;
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "snapshot %s has no mirror", snapshot);
    return NULL;
  }
  obj = json_tokener_parse (text);
  info = sm_lsm_info_from_json (obj, error);
  if (!info)
    g_prefix_error (error, "%s: ", path);
  return info;
}

static bool
save_json (const char *path, json_object *obj, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);

  if (g_mkdir_with_parents (dir, 0700) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot create: %s", dir,
                 g_strerror (errno));
    return false;
  }
  return sm_state_write_atomic (path,
                                json_object_to_json_string_ext (
                                  obj, JSON_C_TO_STRING_PRETTY |
                                  JSON_C_TO_STRING_NOSLASHESCAPE), -1, error);
}

static void
remove_lsm_files (SmVmState *st, const char *snapshot)
{
  g_autofree char *a = sm_lsm_info_path (st, snapshot);
  g_autofree char *b = sm_lsm_created_path (st, snapshot);
  g_autofree char *c = sm_lsm_copy_status_path (st, snapshot);

  unlink (c);
  unlink (b);
  unlink (a);
}

/* Deletes the metadata of SNAPSHOT if it is there and makes PARENT current
 * again when SNAPSHOT was. */
static bool
delete_metadata (SmVmState *st, const char *snapshot, const char *parent,
                 GError **error)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmSnapshotDef) def = sm_vm_state_load_snapshot (st, snapshot, &err);
  g_autofree char *current = NULL;

  if (def && !sm_vm_state_delete_snapshot (st, snapshot, error))
    return false;
  current = sm_vm_state_get_current (st, NULL);
  if (g_strcmp0 (current, snapshot) == 0 &&
      !sm_vm_state_set_current (st, parent, error))
    return false;
  remove_lsm_files (st, snapshot);
  return true;
}

/* ---- journal records ------------------------------------------------- */

static json_object *
step_record (const SmLsmPlan *plan, guint index, const char *phase,
             const GError *err)
{
  const SmLsmStep *s = plan->steps->pdata[index];
  json_object *rec = json_object_new_object ();

  json_object_object_add (rec, "step", json_object_new_int ((int) index + 1));
  json_object_object_add (rec, "kind",
                          json_object_new_string (sm_lsm_step_kind_to_string (s->kind)));
  if (s->disk >= 0)
    json_object_object_add (rec, "disk", json_object_new_string (
      ((SmLsmDisk *) plan->info->disks->pdata[s->disk])->name));
  json_object_object_add (rec, "phase", json_object_new_string (phase));
  if (err)
    json_object_object_add (rec, "error", json_object_new_string (err->message));
  return rec;
}

static int
crash_after_step (void)
{
  const char *s = g_getenv ("SNAPMIG_TEST_CRASH_AFTER_STEP");

  return s ? atoi (s) : 0;
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
  bool qemu_gone = false;
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
      bd = sm_block_query_disk (u->qmp, d->id, &err);
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
      g_autofree char *mirror_job = sm_lsm_job_id (d->id);
      g_autofree char *job = g_strdup_printf (
        "snapmig-undo-%s", mirror_job + strlen ("snapmig-mirror-"));

      sm_debug (DOMAIN, "disk %s: committing %s back into %s", d->name,
                d->new_top, d->orig_top);
      if (!sm_block_commit_active (u->qmp, d->id, d->orig_top, job,
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

    if (!delete_metadata (u->st, u->info->snapshot, u->info->parent, &err) &&
        !first)
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
    remove_lsm_files (u->st, u->info->snapshot);
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
  if (mirrors && (!save_json (info_path, info, error) ||
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

      for (i = 0; i < plan->info->disks->len; i++)
        g_string_append_printf (names, "%s%s", i ? ", " : "",
                                ((SmLsmDisk *) plan->info->disks->pdata[i])->name);
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

    g_mkdir_with_parents (dir, 0700);
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
  g_set_error (error, SM_ERROR, SM_ERROR_INVALID, "step %s is not a create step",
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
      unlink (d->new_top);
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

static json_object *
op_header (const char *op, const char *opid, const SmLsmInfo *info,
           const char *record_path)
{
  json_object *h = json_object_new_object ();

  json_object_object_add (h, "op", json_object_new_string (op));
  json_object_object_add (h, "opid", json_object_new_string (opid));
  json_object_object_add (h, "info", sm_lsm_info_to_json (info));
  if (record_path)
    json_object_object_add (h, "record", json_object_new_string (record_path));
  return h;
}

static json_object *
phase_record (const char *phase)
{
  json_object *rec = json_object_new_object ();

  json_object_object_add (rec, "op-phase", json_object_new_string (phase));
  return rec;
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
  record_path = g_strdup_printf ("%s/%s.created",
                                 sm_vm_state_journal_dir (st), opid);
  c.record_path = record_path;
  journal = sm_journal_create (sm_vm_state_journal_dir (st), opid,
                               op_header ("create", opid, plan->info,
                                          record_path), error);
  if (!journal) {
    sm_created_files_free (c.created);
    return false;
  }
  for (i = 0; i < plan->steps->len && ok; i++) {
    const SmLsmStep *s = plan->steps->pdata[i];

    if (!sm_journal_append (journal, step_record (plan, i, "begin", NULL),
                            &err)) {
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
      sm_journal_append (journal, step_record (plan, i, "failed", err), NULL);
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
    if (!sm_journal_append (journal, step_record (plan, i, "end", NULL),
                            &err)) {
      ok = false;
      break;
    }
    if (crash_after == (int) i + 1)
      _exit (137);
  }
  sm_created_files_free (c.created);
  if (ok) {
    unlink (record_path);
    sm_journal_append (journal, phase_record ("done"), NULL);
    return sm_journal_finish (g_steal_pointer (&journal), error);
  }
  {
    Undo u = { qmp, st, plan->info, record_path, snapshot_begun, metadata };
    g_autoptr(GError) undo_err = NULL;

    sm_journal_append (journal, phase_record ("rollback"), NULL);
    if (!undo_create (&u, &undo_err)) {
      /* The journal stays for `snapmig recover`. */
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "%s; undoing it failed too: %s (run 'snapmig recover')",
                   err->message, undo_err->message);
      return false;
    }
    sm_journal_append (journal, phase_record ("rolled-back"), NULL);
    sm_journal_finish (g_steal_pointer (&journal), NULL);
  }
  g_propagate_error (error, g_steal_pointer (&err));
  return false;
}

/* ---- waiting --------------------------------------------------------- */

static bool
disk_runs_on (SmQmp *qmp, const SmLsmDisk *d, const char *file, GError **error)
{
  g_autoptr(SmBlockDisk) bd = sm_block_query_disk (qmp, d->id, error);
  const char *top;

  if (!bd)
    return false;
  top = sm_block_disk_top (bd);
  return top && strcmp (top, file) == 0;
}

bool
sm_lsm_wait (SmQmp *qmp, SmVmState *st, const SmLsmInfo *info,
             const SmLsmWaitOptions *options, GError **error)
{
  g_autofree char *status_path = sm_lsm_copy_status_path (st, info->snapshot);
  gint64 deadline = options->timeout_ms < 0 ? -1 :
                    g_get_monotonic_time () + (gint64) options->timeout_ms * 1000;

  for (;;) {
    g_autoptr(GPtrArray) jobs = sm_block_query_jobs (qmp, error);
    g_autoptr(SmCopyStatus) copies = NULL;
    g_autoptr(GError) err = NULL;
    bool all = true;
    size_t i;

    if (!jobs)
      return false;
    for (i = 0; i < info->disks->len; i++) {
      const SmLsmDisk *d = info->disks->pdata[i];
      const SmBlockJob *job;
      g_autofree char *item = NULL;

      if (!d->mirror)
        continue;
      item = g_strdup_printf ("%s mirror", d->name);
      job = sm_block_find_job (jobs, d->job_id);
      if (!job) {
        g_autoptr(GError) qerr = NULL;

        if (disk_runs_on (qmp, d, d->mirror, &qerr)) {
          if (options->progress)
            options->progress (item, 1, 1, true, options->opaque);
          continue;
        }
        if (qerr) {
          g_propagate_error (error, g_steal_pointer (&qerr));
          return false;
        }
        g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                     "disk %s: the mirror job %s is gone and the disk still "
                     "runs on the source (run 'snapmig abort %s')", d->name,
                     d->job_id, info->snapshot);
        return false;
      }
      if (options->progress)
        options->progress (item, job->offset, job->len, job->ready,
                           options->opaque);
      if (!job->ready)
        all = false;
    }
    copies = sm_copy_status_load (status_path, &err);
    if (!copies) {
      g_propagate_error (error, g_steal_pointer (&err));
      return false;
    }
    for (i = 0; i < copies->layers->len; i++) {
      const SmCopyStatusLayer *l = copies->layers->pdata[i];
      g_autofree char *base = g_path_get_basename (l->copy->dest);
      g_autofree char *item = g_strdup_printf ("%s copy", base);

      if (l->state == SM_COPY_FAILED) {
        g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                     "disk %s: copy of %s to %s failed: %s", l->copy->disk,
                     l->copy->source, l->copy->dest,
                     l->error ? l->error : "unknown error");
        return false;
      }
      if (options->progress)
        options->progress (item, l->done, l->total, l->state == SM_COPY_DONE,
                           options->opaque);
    }
    if (copies->state == SM_COPY_FAILED) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "the copy of the lower layers failed (see %s)", status_path);
      return false;
    }
    if (copies->state != SM_COPY_DONE)
      all = false;
    if (all)
      return true;
    if (deadline >= 0 && g_get_monotonic_time () >= deadline) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "snapshot %s: the mirrors and copies were not ready in "
                   "time", info->snapshot);
      return false;
    }
    sm_block_poll_pause (qmp, POLL_MS);
    sm_qmp_clear_events (qmp);
  }
}

/* ---- pivot ----------------------------------------------------------- */

void
sm_lsm_pivot_result_clear (SmLsmPivotResult *result)
{
  if (result->moved)
    g_ptr_array_unref (result->moved);
  result->moved = NULL;
}

static bool
check_dest (SmQmp *qmp, const SmLsmDisk *d, GError **error)
{
  g_autoptr(SmBlockDisk) bd = sm_block_query_disk (qmp, d->id, error);
  g_autoptr(SmImageChain) chain = NULL;
  size_t i;

  if (!bd)
    return false;
  chain = sm_image_chain_open (d->mirror, SM_IMAGE_FORMAT_QCOW2, d->dest_dir, 0,
                               error);
  if (!chain) {
    g_prefix_error (error, "disk %s: destination chain: ", d->name);
    return false;
  }
  if (chain->layers->len != bd->chain->len) {
    g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                 "disk %s: the destination chain of %s has %u layers, the "
                 "disk %u", d->name, d->mirror, chain->layers->len,
                 bd->chain->len);
    return false;
  }
  for (i = 0; i < chain->layers->len; i++) {
    const SmImageInfo *img = chain->layers->pdata[i];
    const SmBlockLayer *src = bd->chain->pdata[i];

    if (img->virtual_size != src->virtual_size ||
        g_strcmp0 (sm_image_format_to_string (img->format), src->format) != 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                   "disk %s: destination %s (%s, %" G_GUINT64_FORMAT
                   " bytes) does not match %s (%s, %" G_GUINT64_FORMAT
                   " bytes)", d->name, img->path,
                   sm_image_format_to_string (img->format), img->virtual_size,
                   src->filename, src->format, src->virtual_size);
      return false;
    }
    if (img->backing_file && g_path_is_absolute (img->backing_file)) {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSAFE,
                   "disk %s: destination %s names its backing file by an "
                   "absolute path (%s)", d->name, img->path, img->backing_file);
      return false;
    }
  }
  return true;
}

static bool
run_state (SmQmp *qmp, bool *running, GError **error)
{
  g_autoptr(json_object) status = sm_qmp_execute (qmp, "query-status", NULL,
                                                  error);
  json_object *v;

  if (!status)
    return false;
  *running = json_object_object_get_ex (status, "running", &v) &&
             json_object_get_boolean (v);
  return true;
}

/* Where each mirrored disk of INFO runs now, for messages. */
static char *
describe_disks (SmQmp *qmp, const SmLsmInfo *info)
{
  GString *s = g_string_new (NULL);
  size_t i;

  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];
    g_autoptr(SmBlockDisk) bd = NULL;
    const char *top;

    if (!d->mirror)
      continue;
    bd = sm_block_query_disk (qmp, d->id, NULL);
    top = bd ? sm_block_disk_top (bd) : NULL;
    g_string_append_printf (s, "; disk %s runs on %s (%s)", d->name,
                            top ? top : "?",
                            top && strcmp (top, d->mirror) == 0 ? "destination"
                                                                : "source");
  }
  return g_string_free (s, false);
}

static bool
delete_source (SmQmp *qmp, SmLsmPlan *plan, GError **error)
{
  g_autoptr(GPtrArray) disks = sm_block_query_disks (qmp, error);
  size_t i, k, j;

  if (!disks)
    return false;
  for (i = 0; i < plan->source_files->len; i++) {
    const char *path = plan->source_files->pdata[i];
    bool used = false;

    /* Only what QEMU shows in no disk's chain any more is removed. */
    for (k = 0; k < disks->len; k++) {
      const SmBlockDisk *bd = disks->pdata[k];

      for (j = 0; j < bd->chain->len; j++) {
        g_autofree char *p = g_canonicalize_filename (
          ((SmBlockLayer *) bd->chain->pdata[j])->filename, "/");

        if (strcmp (p, path) == 0)
          used = true;
      }
    }
    if (used) {
      sm_debug (DOMAIN, "%s is still used: kept", path);
      continue;
    }
    if (unlink (path) < 0 && errno != ENOENT) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot remove: %s", path,
                   g_strerror (errno));
      return false;
    }
  }
  return true;
}

bool
sm_lsm_pivot (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan,
              const SmLsmWaitOptions *options, SmLsmPivotResult *result,
              GError **error)
{
  g_autofree char *opid = sm_journal_new_opid ();
  g_autoptr(SmJournal) journal = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(GPtrArray) completed = g_ptr_array_new ();
  gint64 stopped_at = -1;
  bool ok = true;
  guint i;

  g_return_val_if_fail (plan->op == SM_LSM_OP_PIVOT, false);
  result->pause_ms = -1;
  result->moved = g_ptr_array_new_with_free_func (g_free);
  journal = sm_journal_create (sm_vm_state_journal_dir (st), opid,
                               op_header ("pivot", opid, plan->info, NULL),
                               error);
  if (!journal)
    return false;
  for (i = 0; i < plan->steps->len && ok; i++) {
    const SmLsmStep *s = plan->steps->pdata[i];
    const SmLsmDisk *d = s->disk >= 0 ? plan->info->disks->pdata[s->disk]
                                      : NULL;

    if (!sm_journal_append (journal, step_record (plan, i, "begin", NULL),
                            &err)) {
      ok = false;
      break;
    }
    switch (s->kind) {
    case SM_LSM_STEP_WAIT:
      ok = sm_lsm_wait (qmp, st, plan->info, options, &err);
      break;
    case SM_LSM_STEP_CHECK_DEST:
      ok = check_dest (qmp, d, &err);
      break;
    case SM_LSM_STEP_STOP: {
      bool running = false;

      ok = run_state (qmp, &running, &err);
      if (ok && running) {
        ok = sm_qmp_run (qmp, "stop", NULL, &err);
        if (ok)
          stopped_at = g_get_monotonic_time ();
      }
      sm_qmp_clear_events (qmp);
      break;
    }
    case SM_LSM_STEP_COMPLETE:
      if (!sm_qmp_run (qmp, s->command, json_object_get (s->args), &err)) {
        g_prefix_error (&err, "disk %s: ", d->name);
        ok = false;
      } else {
        g_ptr_array_add (completed, (gpointer) d);
      }
      break;
    case SM_LSM_STEP_WAIT_SWITCH:
      break;
    case SM_LSM_STEP_CONT:
      break;
    case SM_LSM_STEP_DELETE_SOURCE:
      ok = delete_source (qmp, plan, &err);
      break;
    case SM_LSM_STEP_DELETE_METADATA:
      ok = delete_metadata (st, plan->info->snapshot, plan->info->parent, &err);
      break;
    case SM_LSM_STEP_CREATE_DEST:
    case SM_LSM_STEP_CREATE_TOP:
    case SM_LSM_STEP_TRANSACTION:
    case SM_LSM_STEP_SNAPSHOT:
    case SM_LSM_STEP_MIRROR:
    case SM_LSM_STEP_SAVE_METADATA:
    case SM_LSM_STEP_START_COPY:
    case SM_LSM_STEP_CANCEL:
    case SM_LSM_STEP_STOP_COPY:
    case SM_LSM_STEP_REMOVE_FILES:
    case SM_LSM_STEP_LAST:
      break;
    }
    /* The switch ends at WAIT_SWITCH — or as soon as a complete failed:
     * the jobs already completed must still finish and the guest run. */
    if (s->kind == SM_LSM_STEP_WAIT_SWITCH || (!ok && completed->len) ||
        (!ok && stopped_at >= 0)) {
      size_t k;

      for (k = 0; k < completed->len; k++) {
        const SmLsmDisk *cd = completed->pdata[k];
        g_autoptr(GError) werr = NULL;

        if (!sm_block_job_wait_gone (qmp, cd->job_id, options->timeout_ms,
                                     &werr) ||
            !disk_runs_on (qmp, cd, cd->mirror, &werr)) {
          if (ok) {
            ok = false;
            if (werr)
              err = g_steal_pointer (&werr);
            else
              g_set_error (&err, SM_ERROR, SM_ERROR_FAILED,
                           "disk %s: the mirror ended but the disk did not "
                           "switch to %s", cd->name, cd->mirror);
          }
        } else {
          g_ptr_array_add (result->moved, g_strdup (cd->name));
        }
      }
      g_ptr_array_set_size (completed, 0);
      if (stopped_at >= 0) {
        g_autoptr(GError) cerr = NULL;

        if (!sm_qmp_run (qmp, "cont", NULL, &cerr) && ok) {
          ok = false;
          err = g_steal_pointer (&cerr);
        }
        result->pause_ms = (g_get_monotonic_time () - stopped_at) / 1000;
        stopped_at = -1;
      }
    }
    if (ok && !sm_journal_append (journal, step_record (plan, i, "end", NULL),
                                  &err))
      ok = false;
  }
  if (!ok) {
    g_autofree char *where = describe_disks (qmp, plan->info);

    sm_journal_append (journal, step_record (plan, i ? i - 1 : 0, "failed",
                                             err), NULL);
    sm_journal_finish (g_steal_pointer (&journal), NULL);
    g_set_error (error, err->domain, err->code, "%s%s%s", err->message, where,
                 result->moved->len ? " (run pivot again to finish)" : "");
    return false;
  }
  sm_journal_append (journal, phase_record ("done"), NULL);
  return sm_journal_finish (g_steal_pointer (&journal), error);
}

/* ---- abort ----------------------------------------------------------- */

bool
sm_lsm_abort (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan, int timeout_ms,
              GError **error)
{
  g_autofree char *opid = sm_journal_new_opid ();
  g_autoptr(SmJournal) journal = NULL;
  g_autoptr(GError) err = NULL;
  bool ok = true;
  guint i;

  g_return_val_if_fail (plan->op == SM_LSM_OP_ABORT, false);
  journal = sm_journal_create (sm_vm_state_journal_dir (st), opid,
                               op_header ("abort", opid, plan->info, NULL),
                               error);
  if (!journal)
    return false;
  for (i = 0; i < plan->steps->len && ok; i++) {
    const SmLsmStep *s = plan->steps->pdata[i];
    const SmLsmDisk *d = s->disk >= 0 ? plan->info->disks->pdata[s->disk]
                                      : NULL;

    if (!sm_journal_append (journal, step_record (plan, i, "begin", NULL),
                            &err)) {
      ok = false;
      break;
    }
    switch (s->kind) {
    case SM_LSM_STEP_CANCEL:
      /* QEMU ends a cancel after READY with BLOCK_JOB_COMPLETED, not
       * CANCELLED: where the disk runs is what tells. */
      ok = sm_block_job_cancel_wait (qmp, d->job_id, timeout_ms, &err);
      if (ok) {
        g_autoptr(SmBlockDisk) bd = sm_block_query_disk (qmp, d->id, &err);
        const char *top = bd ? sm_block_disk_top (bd) : NULL;

        if (!bd)
          ok = false;
        else if (!top || strcmp (top, d->new_top) != 0) {
          g_set_error (&err, SM_ERROR, SM_ERROR_FAILED,
                       "disk %s: after the cancel it runs on %s, not on %s",
                       d->name, top ? top : "no medium", d->new_top);
          ok = false;
        }
      }
      if (!ok)
        g_prefix_error (&err, "disk %s: ", d->name);
      break;
    case SM_LSM_STEP_STOP_COPY: {
      g_autofree char *status = sm_lsm_copy_status_path (st,
                                                         plan->info->snapshot);

      ok = sm_copy_worker_kill (status, 10000, &err);
      break;
    }
    case SM_LSM_STEP_REMOVE_FILES: {
      g_autofree char *path = sm_lsm_created_path (st, plan->info->snapshot);
      g_autoptr(SmCreatedFiles) created = sm_created_files_load (path, &err);

      if (!created && g_error_matches (err, SM_ERROR, SM_ERROR_NOT_FOUND)) {
        g_clear_error (&err);
        break;
      }
      ok = created && sm_created_files_rollback (created, &err);
      if (ok)
        ok = sm_created_files_save (created, path, &err);
      break;
    }
    case SM_LSM_STEP_DELETE_METADATA:
      ok = delete_metadata (st, plan->info->snapshot, plan->info->parent, &err);
      break;
    case SM_LSM_STEP_CREATE_DEST:
    case SM_LSM_STEP_CREATE_TOP:
    case SM_LSM_STEP_TRANSACTION:
    case SM_LSM_STEP_SNAPSHOT:
    case SM_LSM_STEP_MIRROR:
    case SM_LSM_STEP_SAVE_METADATA:
    case SM_LSM_STEP_START_COPY:
    case SM_LSM_STEP_WAIT:
    case SM_LSM_STEP_CHECK_DEST:
    case SM_LSM_STEP_STOP:
    case SM_LSM_STEP_COMPLETE:
    case SM_LSM_STEP_WAIT_SWITCH:
    case SM_LSM_STEP_CONT:
    case SM_LSM_STEP_DELETE_SOURCE:
    case SM_LSM_STEP_LAST:
      break;
    }
    if (ok && !sm_journal_append (journal, step_record (plan, i, "end", NULL),
                                  &err))
      ok = false;
  }
  if (!ok) {
    sm_journal_append (journal, step_record (plan, i ? i - 1 : 0, "failed",
                                             err), NULL);
    sm_journal_finish (g_steal_pointer (&journal), NULL);
    g_propagate_error (error, g_steal_pointer (&err));
    return false;
  }
  sm_journal_append (journal, phase_record ("done"), NULL);
  return sm_journal_finish (g_steal_pointer (&journal), error);
}

/* ---- status ---------------------------------------------------------- */

json_object *
sm_lsm_status (SmQmp *qmp, SmVmState *st, const SmLsmInfo *info,
               GError **error)
{
  g_autoptr(json_object) root = json_object_new_object ();
  g_autoptr(GPtrArray) jobs = sm_block_query_jobs (qmp, error);
  g_autofree char *status_path = sm_lsm_copy_status_path (st, info->snapshot);
  g_autoptr(SmCopyStatus) copies = NULL;
  json_object *disks, *layers;
  size_t i;

  if (!jobs)
    return NULL;
  json_object_object_add (root, "snapshot",
                          json_object_new_string (info->snapshot));
  disks = json_object_new_array ();
  json_object_object_add (root, "disks", disks);
  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];
    const SmBlockJob *job = d->job_id ? sm_block_find_job (jobs, d->job_id)
                                      : NULL;
    g_autoptr(SmBlockDisk) bd = sm_block_query_disk (qmp, d->id, NULL);
    json_object *o = json_object_new_object ();

    json_object_object_add (o, "name", json_object_new_string (d->name));
    if (d->mirror)
      json_object_object_add (o, "mirror", json_object_new_string (d->mirror));
    if (job) {
      json_object_object_add (o, "job", json_object_new_string (job->id));
      json_object_object_add (o, "status", json_object_new_string (job->status));
      json_object_object_add (o, "ready", json_object_new_boolean (job->ready));
      json_object_object_add (o, "offset",
                              json_object_new_int64 ((int64_t) job->offset));
      json_object_object_add (o, "len",
                              json_object_new_int64 ((int64_t) job->len));
    }
    if (bd && sm_block_disk_top (bd))
      json_object_object_add (o, "active",
                              json_object_new_string (sm_block_disk_top (bd)));
    json_object_array_add (disks, o);
  }
  layers = json_object_new_array ();
  json_object_object_add (root, "copies", layers);
  copies = sm_copy_status_load (status_path, NULL);
  if (copies) {
    json_object_object_add (root, "worker-pid",
                            json_object_new_int (copies->pid));
    json_object_object_add (root, "copy-state", json_object_new_string (
                              sm_copy_state_to_string (copies->state)));
    for (i = 0; i < copies->layers->len; i++) {
      const SmCopyStatusLayer *l = copies->layers->pdata[i];
      json_object *o = json_object_new_object ();

      json_object_object_add (o, "disk", json_object_new_string (l->copy->disk));
      json_object_object_add (o, "source",
                              json_object_new_string (l->copy->source));
      json_object_object_add (o, "dest", json_object_new_string (l->copy->dest));
      json_object_object_add (o, "state", json_object_new_string (
                                sm_copy_state_to_string (l->state)));
      json_object_object_add (o, "done",
                              json_object_new_int64 ((int64_t) l->done));
      json_object_object_add (o, "total",
                              json_object_new_int64 ((int64_t) l->total));
      if (l->error)
        json_object_object_add (o, "error", json_object_new_string (l->error));
      json_object_array_add (layers, o);
    }
  }
  return g_steal_pointer (&root);
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
  if (json_object_object_get_ex (header, "record", &v))
    record = json_object_get_string (v);
  info = json_object_object_get_ex (header, "info", &v) ?
         sm_lsm_info_from_json (v, error) : NULL;
  if (!op || !info) {
    g_prefix_error (error, "journal %s: ", path);
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
                            "(%s): rolled back, the VM runs on its original "
                            "chain and the files it created are removed",
                            info->snapshot, last_step, last_kind);
  }
  unlink (path);
  return g_strdup_printf ("%s of snapshot %s was interrupted after step %d "
                          "(%s): run 'snapmig %s %s' again to finish it", op,
                          info->snapshot, last_step, last_kind, op,
                          info->snapshot);
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
