/* libsnapmig — live storage migration: what the executors share (see
 * lsm.h and lsm-private.h): the VM as the planner sees it, the state files
 * of a migration, journal records, status.  The executors are in
 * lsm-create.c (create, its undo, recover) and lsm-switch.c (waiting, pivot,
 * abort). */
#include "lsm.h"
#include "lsm-private.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "interrupt.h"
#include "json-util.h"

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

char *
sm_lsm_progress_path (SmVmState *st, const char *snapshot)
{
  return lsm_file (st, snapshot, ".progress.json");
}

char *
sm_lsm_record_snapshot (const char *file_name)
{
  if (!g_str_has_suffix (file_name, ".json") ||
      g_str_has_suffix (file_name, ".copy.json") ||
      g_str_has_suffix (file_name, ".progress.json"))
    return NULL;
  return g_strndup (file_name, strlen (file_name) - strlen (".json"));
}

void
sm_lsm_progress_remove (SmVmState *st, const char *snapshot)
{
  g_autofree char *path = sm_lsm_progress_path (st, snapshot);

  unlink (path);
  sm_state_remove_stale_temps (path);
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
    sm_error_set_with_object (error, SM_ERROR_NOT_FOUND, snapshot,
                 "snapshot %s has no mirror", snapshot);
    return NULL;
  }
  {
    enum json_tokener_error jerr = json_tokener_success;
    g_autoptr(GError) err = NULL;
    g_autofree char *created = sm_lsm_created_path (st, snapshot);
    g_autofree char *stem = g_strndup (path, strlen (path) - strlen (".json"));

    obj = json_tokener_parse_verbose (text, &jerr);
    info = obj ? sm_lsm_info_from_json (obj, &err) : NULL;
    if (!info) {
      /* Acting on part of a move could lose data: name the file and what
       * the administrator can do instead. */
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "move record %s is damaged (%s): snapmig will not act on "
                   "it; fix: restore it from a copy, or end the move of "
                   "snapshot %s by hand (block-job-cancel its snapmig-mirror-* "
                   "jobs, delete the destination files listed in %s that no "
                   "VM uses) and then delete the files %s.*", path,
                   obj ? err->message : json_tokener_error_desc (jerr),
                   snapshot, created, stem);
      return NULL;
    }
  }
  return info;
}

bool
sm_lsm_save_json (const char *path, json_object *obj, GError **error)
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

void
sm_lsm_remove_files (SmVmState *st, const char *snapshot)
{
  g_autofree char *a = sm_lsm_info_path (st, snapshot);
  g_autofree char *b = sm_lsm_created_path (st, snapshot);
  g_autofree char *c = sm_lsm_copy_status_path (st, snapshot);

  /* The record of the move (NAME.json) goes last: as long as it is there,
   * pivot, abort and recover know the move and finish it; without it the
   * other two would be strays nobody removes. */
  sm_lsm_progress_remove (st, snapshot);
  unlink (c);
  unlink (b);
  /* The copy worker rewrites its status every few moments; one killed in
   * the middle of a write leaves its temporary file behind. */
  sm_state_remove_stale_temps (c);
  sm_state_remove_stale_temps (b);
  sm_lsm_test_crash_at ("before-record-removal");
  unlink (a);
  sm_state_remove_stale_temps (a);
}

/* Deletes the metadata of SNAPSHOT if it is there and makes PARENT current
 * again when SNAPSHOT was.  The move's record goes after the snapshot (see
 * sm_lsm_remove_files): a kill in between leaves a record whose disks all
 * run on their destinations, which pivot and recover recognise as a
 * finished switch and clean up. */
bool
sm_lsm_delete_metadata (SmVmState *st, const char *snapshot,
                        const char *parent, GError **error)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmSnapshotDef) def = sm_vm_state_load_snapshot (st, snapshot, &err);
  g_autofree char *current = NULL;

  if (def && !sm_vm_state_delete_snapshot (st, snapshot, error))
    return false;
  sm_lsm_test_crash_at ("snapshot-deleted");
  current = sm_vm_state_get_current (st, NULL);
  if (g_strcmp0 (current, snapshot) == 0 &&
      !sm_vm_state_set_current (st, parent, error))
    return false;
  sm_lsm_remove_files (st, snapshot);
  return true;
}

/* ---- test hooks ------------------------------------------------------ */

void
sm_lsm_test_crash_at (const char *point)
{
  const char *s = g_getenv ("SNAPMIG_TEST_CRASH_AT");

  if (s && strcmp (s, point) == 0)
    _exit (137);
}

/* SIGKILLs PID and waits until it is dead (a zombie or gone). */
static void
kill_and_reap_wait (pid_t pid)
{
  g_autofree char *stat_path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  int i;

  if (pid <= 0 || kill (pid, SIGKILL) < 0)
    return;
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

void
sm_lsm_test_after_step (int step)
{
  const char *s;
  const char *colon;

  s = g_getenv ("SNAPMIG_TEST_CRASH_AFTER_STEP");
  if (s && atoi (s) == step)
    _exit (137);
  s = g_getenv ("SNAPMIG_TEST_KILL_AFTER_STEP");
  if (s && atoi (s) == step && (colon = strchr (s, ':')))
    kill_and_reap_wait ((pid_t) atoi (colon + 1));
  /* As a user's Ctrl-C (SIG 2) or kill (15) would: the CLI's handler
   * records it and the executor must leave through its error path. */
  s = g_getenv ("SNAPMIG_TEST_SIGNAL_AFTER_STEP");
  if (s && atoi (s) == step && (colon = strchr (s, ':')))
    kill (getpid (), atoi (colon + 1));
  s = g_getenv ("SNAPMIG_TEST_HOLD_AFTER_STEP");
  if (s && atoi (s) == step && (colon = strchr (s, ':'))) {
    /* Bounded (60 s) and left at once on SIGINT/SIGTERM/SIGHUP, which the
     * executor then notices like any other interruption. */
    gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;

    while (!g_file_test (colon + 1, G_FILE_TEST_EXISTS) &&
           !sm_interrupted () && g_get_monotonic_time () < deadline)
      g_usleep (10000);
  }
}

/* ---- journal records ------------------------------------------------- */

json_object *
sm_lsm_step_record (const SmLsmPlan *plan, guint index, const char *phase,
             const GError *err)
{
  const SmLsmStep *s = plan->steps->pdata[index];
  json_object *rec = json_object_new_object ();

  json_object_object_add (rec, "step", json_object_new_int ((int) index + 1));
  json_object_object_add (rec, "kind", json_object_new_string (
                            sm_lsm_step_kind_to_string (s->kind)));
  if (s->disk >= 0)
    json_object_object_add (rec, "disk", json_object_new_string (
      ((SmLsmDisk *) plan->info->disks->pdata[s->disk])->name));
  json_object_object_add (rec, "phase", json_object_new_string (phase));
  if (err)
    json_object_object_add (rec, "error",
                            json_object_new_string (err->message));
  return rec;
}

json_object *
sm_lsm_op_header (const char *op, const char *opid, const SmLsmInfo *info,
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

json_object *
sm_lsm_phase_record (const char *phase)
{
  json_object *rec = json_object_new_object ();

  json_object_object_add (rec, "op-phase", json_object_new_string (phase));
  return rec;
}

SmJournal *
sm_lsm_journal_open (SmVmState *st, const char *op, const char *opid,
                     const SmLsmInfo *info, const char *record_path,
                     GError **error)
{
  return sm_journal_create (sm_vm_state_journal_dir (st), opid,
                            sm_lsm_op_header (op, opid, info, record_path),
                            error);
}

bool
sm_lsm_journal_step (SmJournal *journal, const SmLsmPlan *plan, guint index,
                     const char *phase, GError **error)
{
  return sm_journal_append (journal,
                            sm_lsm_step_record (plan, index, phase, NULL),
                            error);
}

void
sm_lsm_journal_failed (SmJournal *journal, const SmLsmPlan *plan,
                       guint index, const GError *err)
{
  sm_journal_append (journal, sm_lsm_step_record (plan, index, "failed", err),
                     NULL);
  sm_journal_finish (journal, NULL);
}

bool
sm_lsm_journal_done (SmJournal *journal, GError **error)
{
  sm_journal_append (journal, sm_lsm_phase_record ("done"), NULL);
  return sm_journal_finish (journal, error);
}

bool
sm_lsm_disk_runs_on (SmQmp *qmp, const SmLsmDisk *d, const char *file,
                     GError **error)
{
  g_autoptr(SmBlockDisk) bd = sm_block_query_disk (qmp, d->name, error);
  const char *top;

  if (!bd)
    return false;
  top = sm_block_disk_top (bd);
  return top && strcmp (top, file) == 0;
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
  bool ready = true;
  size_t i;

  if (!jobs)
    return NULL;
  json_object_object_add (root, "snapshot",
                          json_object_new_string (info->snapshot));
  json_object_object_add (root, "moving", json_object_new_boolean (true));
  disks = json_object_new_array ();
  json_object_object_add (root, "disks", disks);
  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];
    const SmBlockJob *job = d->job_id ? sm_block_find_job (jobs, d->job_id)
                                      : NULL;
    g_autoptr(SmBlockDisk) bd = sm_block_query_disk (qmp, d->name, NULL);
    json_object *o = json_object_new_object ();

    json_object_object_add (o, "name", json_object_new_string (d->name));
    if (d->mirror)
      json_object_object_add (o, "mirror", json_object_new_string (d->mirror));
    if (d->mirror && !(job && job->ready))
      ready = false;
    if (job) {
      json_object_object_add (o, "job", json_object_new_string (job->id));
      json_object_object_add (o, "status",
                              json_object_new_string (job->status));
      json_object_object_add (o, "ready", json_object_new_boolean (job->ready));
      /* QEMU's offset/len: done/total bytes, as the copies'. */
      json_object_object_add (o, "done",
                              json_object_new_int64 ((int64_t) job->offset));
      json_object_object_add (o, "total",
                              json_object_new_int64 ((int64_t) job->len));
    }
    if (bd && sm_block_disk_top (bd))
      json_object_object_add (o, "active",
                              json_object_new_string (sm_block_disk_top (bd)));
    json_object_array_add (disks, o);
  }
  {
    g_autoptr(json_object) run = sm_qmp_execute (qmp, "query-status", NULL,
                                                 NULL);
    const char *state = run ? sm_json_get_string (run, "status") : NULL;

    if (state)
      json_object_object_add (root, "run-state", json_object_new_string (state));
  }
  /* A pivot or abort in flight or interrupted (its journal is there): what
   * it did to the guest and which switches it asked for. */
  json_object_object_add (root, "journals",
                          sm_lsm_switch_journals_json (st, info->snapshot));
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

      json_object_object_add (o, "disk",
                              json_object_new_string (l->copy->disk));
      json_object_object_add (o, "source",
                              json_object_new_string (l->copy->source));
      json_object_object_add (o, "dest",
                              json_object_new_string (l->copy->dest));
      json_object_object_add (o, "state", json_object_new_string (
                                sm_copy_state_to_string (l->state)));
      json_object_object_add (o, "done",
                              json_object_new_int64 ((int64_t) l->done));
      json_object_object_add (o, "total",
                              json_object_new_int64 ((int64_t) l->total));
      if (l->error)
        json_object_object_add (o, "error", json_object_new_string (l->error));
      if (l->skipped)
        json_object_object_add (o, "skipped", json_object_new_boolean (true));
      json_object_array_add (layers, o);
    }
  }
  /* No copy status: no lower layer to copy (or its worker has not started,
   * which a mirror not yet ready also says). */
  if (copies && copies->state != SM_COPY_DONE)
    ready = false;
  json_object_object_add (root, "ready-to-pivot",
                          json_object_new_boolean (ready));
  return g_steal_pointer (&root);
}

json_object *
sm_lsm_status_watched (SmVmState *st, const char *snapshot)
{
  g_autofree char *path = sm_lsm_progress_path (st, snapshot);
  g_autofree char *text = NULL;
  g_autoptr(json_object) doc = NULL;
  json_object *watched, *when;
  int64_t pid = 0;
  long holder;
  double age;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  doc = json_tokener_parse (text);
  if (!doc || !sm_json_get_int64 (doc, "pid", &pid) ||
      !json_object_object_get_ex (doc, "time-unix", &when))
    return NULL;
  /* A killed waiter leaves its file: only the lock's live holder speaks. */
  holder = sm_vm_state_lock_holder (st);
  if (holder <= 0 || holder != pid)
    return NULL;
  age = (double) g_get_real_time () / G_USEC_PER_SEC -
        json_object_get_double (when);
  watched = json_object_new_object ();
  json_object_object_add (watched, "pid", json_object_new_int64 (pid));
  json_object_object_add (watched, "time", json_object_get (
                            json_object_object_get (doc, "time")));
  json_object_object_add (watched, "age-seconds",
                          json_object_new_double (MAX (age, 0.0)));
  json_object_object_add (doc, "watched", watched);
  json_object_object_del (doc, "pid");
  json_object_object_del (doc, "time");
  json_object_object_del (doc, "time-unix");
  return g_steal_pointer (&doc);
}
