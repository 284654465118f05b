/* libsnapmig — live storage migration: waiting for the mirrors and
 * copies, pivot (the switch to the destination) and abort. */
#include "lsm.h"
#include "lsm-private.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "journal.h"
#include "json-util.h"
#include "lsm-inuse.h"

/* The switch of READY mirrors takes milliseconds; the guest may be paused
 * meanwhile, so it is bounded even without --timeout. */
#define SWITCH_TIMEOUT_MS 30000

/* ---- waiting --------------------------------------------------------- */

/* An inotify descriptor that becomes readable when a file is renamed into
 * the directory of STATUS_PATH, as the copy worker does at each status
 * update; -1 when inotify is not available (the wait then polls). */
static int
watch_status (const char *status_path)
{
  g_autofree char *dir = g_path_get_dirname (status_path);
  int fd = inotify_init1 (IN_NONBLOCK | IN_CLOEXEC);

  if (fd >= 0 && inotify_add_watch (fd, dir, IN_MOVED_TO) < 0) {
    sm_debug (DOMAIN, "%s: cannot watch for copy status updates: %s", dir,
              g_strerror (errno));
    close (fd);
    return -1;
  }
  return fd;
}

/* Waits at most MS for the copy status to change (WATCH readable). */
static void
wait_status (int watch, int ms)
{
  struct pollfd pfd = { .fd = watch, .events = POLLIN };
  char buf[4096];

  if (poll (&pfd, 1, ms) > 0)
    while (read (watch, buf, sizeof buf) > 0)
      ;
}

/* sm_lsm_wait's loop; WATCH is watch_status()'s descriptor or -1. */
static bool
wait_loop (SmQmp *qmp, const char *status_path, const SmLsmInfo *info,
           const SmLsmWaitOptions *options, gint64 deadline, int watch,
           GError **error)
{
  for (;;) {
    g_autoptr(GPtrArray) jobs = sm_block_query_jobs (qmp, error);
    g_autoptr(SmCopyStatus) copies = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(GString) waiting = g_string_new (NULL);
    bool mirrors_ready = true;
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

        if (sm_lsm_disk_runs_on (qmp, d, d->mirror, &qerr)) {
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
      if (!job->ready) {
        mirrors_ready = false;
        g_string_append_printf (waiting, "%sthe mirror of disk %s (%"
                                G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                                " bytes)", waiting->len ? ", " : "", d->name,
                                job->offset, job->len);
      }
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
      if (l->state != SM_COPY_DONE)
        g_string_append_printf (waiting, "%sthe copy of %s (%" G_GUINT64_FORMAT
                                " of %" G_GUINT64_FORMAT " bytes)",
                                waiting->len ? ", " : "", l->copy->source,
                                l->done, l->total);
    }
    if (copies->state == SM_COPY_FAILED) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "the copy of the lower layers failed (see %s)", status_path);
      return false;
    }
    if (mirrors_ready && copies->state == SM_COPY_DONE)
      return true;
    if (deadline >= 0 && g_get_monotonic_time () >= deadline) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "snapshot %s: not ready in time: %s", info->snapshot,
                   waiting->str);
      return false;
    }
    /* Once the mirrors are ready (the top layers are small), the copy of
     * the lower layers is what is waited for: wake when the worker writes
     * its final status instead of up to POLL_MS later (measured: create
     * --wait returned a median 37 ms after the worker's last status write
     * when polling, 7 ms with the watch).  The mirrors are still checked
     * at least every POLL_MS. */
    if (mirrors_ready && watch >= 0)
      wait_status (watch, POLL_MS);
    else
      sm_block_poll_pause (qmp, POLL_MS);
    sm_qmp_clear_events (qmp);
  }
}

bool
sm_lsm_wait (SmQmp *qmp, SmVmState *st, const SmLsmInfo *info,
             const SmLsmWaitOptions *options, GError **error)
{
  g_autofree char *status_path = sm_lsm_copy_status_path (st, info->snapshot);
  gint64 deadline = options->timeout_ms < 0
                    ? -1
                    : g_get_monotonic_time () +
                      (gint64) options->timeout_ms * 1000;
  /* Watched before the first read of the status, so that no update is
   * missed between a read and the pause after it. */
  int watch = watch_status (status_path);
  bool ok = wait_loop (qmp, status_path, info, options, deadline, watch,
                       error);

  if (watch >= 0)
    close (watch);
  return ok;
}

/* ---- pivot ----------------------------------------------------------- */

void
sm_lsm_pivot_result_clear (SmLsmPivotResult *result)
{
  if (result->moved)
    g_ptr_array_unref (result->moved);
  result->moved = NULL;
  g_clear_pointer (&result->removed, g_ptr_array_unref);
  g_clear_pointer (&result->kept, g_ptr_array_unref);
}

static void
kept_file_free (gpointer p)
{
  SmLsmKeptFile *k = p;

  g_free (k->path);
  g_free (k->why);
  g_free (k);
}

static bool
check_dest (SmQmp *qmp, const SmLsmDisk *d, GError **error)
{
  g_autoptr(SmBlockDisk) bd = sm_block_query_disk (qmp, d->name, error);
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

  if (!status)
    return false;
  *running = false;
  sm_json_get_bool (status, "running", running);
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
    bd = sm_block_query_disk (qmp, d->name, NULL);
    top = bd ? sm_block_disk_top (bd) : NULL;
    g_string_append_printf (s, "; disk %s runs on %s (%s)", d->name,
                            top ? top : "?",
                            top && strcmp (top, d->mirror) == 0 ? "destination"
                                                                : "source");
  }
  return g_string_free (s, false);
}

static void
keep (SmLsmPivotResult *result, const char *path, const char *why)
{
  SmLsmKeptFile *k = g_new0 (SmLsmKeptFile, 1);

  k->path = g_strdup (path);
  k->why = g_strdup (why);
  sm_debug (DOMAIN, "kept %s: %s", path, why);
  g_ptr_array_add (result->kept, k);
}

/* Removes the source files of PLAN that nothing uses any more.  After the
 * switch our VM has closed them, so whoever still holds one is someone
 * else: a VM sharing a base image, a qemu-img.  Such a file is kept and
 * reported, never removed. */
static bool
delete_source (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan,
               SmLsmPivotResult *result, GError **error)
{
  g_autoptr(GPtrArray) disks = sm_block_query_disks (qmp, error);
  g_autoptr(GHashTable) known = NULL;
  pid_t own;
  size_t i, k, j;

  if (!disks)
    return false;
  known = sm_lsm_known_files (st);
  own = sm_lsm_own_qemu_pid (st);
  for (i = 0; i < plan->source_files->len; i++) {
    const char *path = plan->source_files->pdata[i];
    g_autoptr(GError) busy = NULL;
    const char *why;
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
      keep (result, path, "still used by a disk of the VM");
      continue;
    }
    if (!sm_lsm_check_not_in_use (known, path, own, &busy)) {
      if (!g_error_matches (busy, SM_ERROR, SM_ERROR_IN_USE)) {
        g_propagate_error (error, g_steal_pointer (&busy));
        return false;
      }
      /* "PATH: in use: held by ..." / "PATH: in use by VM ...": the why. */
      why = busy->message;
      if (g_str_has_prefix (why, path) && why[strlen (path)] == ':')
        why += strlen (path) + 2;
      if (g_str_has_prefix (why, "in use: "))
        why += strlen ("in use: ");
      keep (result, path, why);
      continue;
    }
    if (unlink (path) < 0) {
      if (errno == ENOENT)
        continue;
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot remove: %s", path,
                   g_strerror (errno));
      return false;
    }
    sm_debug (DOMAIN, "removed %s", path);
    g_ptr_array_add (result->removed, g_strdup (path));
  }
  return true;
}

/* Runs the steps of PLAN in order, each with RUN (CTX, STEP, DISK, ERROR):
 * DISK is the step's disk or NULL, ERROR never NULL.  Journals in *JOURNAL
 * when each step begins and ends.  At
 * the first failure the step is journaled as failed, *JOURNAL is ended
 * (consumed, see sm_lsm_journal_failed) and the step's error returned in
 * ERROR. */
static bool
run_steps (SmJournal **journal, SmLsmPlan *plan,
           bool (*run) (void *ctx, const SmLsmStep *step,
                        const SmLsmDisk *disk, GError **error),
           void *ctx, GError **error)
{
  g_autoptr(GError) err = NULL;
  bool ok = true;
  guint i;

  for (i = 0; i < plan->steps->len && ok; i++) {
    const SmLsmStep *s = plan->steps->pdata[i];

    if (!sm_lsm_journal_step (*journal, plan, i, "begin", &err)) {
      ok = false;
      break;
    }
    ok = run (ctx, s, s->disk >= 0 ? plan->info->disks->pdata[s->disk] : NULL,
              &err);
    if (ok && !sm_lsm_journal_step (*journal, plan, i, "end", &err))
      ok = false;
  }
  if (!ok) {
    sm_lsm_journal_failed (g_steal_pointer (journal), plan, i ? i - 1 : 0,
                           err);
    g_propagate_error (error, g_steal_pointer (&err));
  }
  return ok;
}

/* What the steps of one pivot share. */
typedef struct {
  SmQmp *qmp;
  SmVmState *st;
  SmLsmPlan *plan;
  const SmLsmWaitOptions *options;
  SmLsmPivotResult *result;
  GPtrArray *completed;        /* disks completed, switch not yet seen */
  gint64 stopped_at;           /* when pivot stopped the guest, or -1 */
} Pivot;

/* How long a refused block-job-complete may wait for a job that is already
 * completing to go away. */
#define COMPLETING_GRACE_MS 2000

/* After block-job-complete failed on D: true if D's mirror was completed
 * anyway.  A complete that an earlier pivot requested (one that gave up
 * waiting, see run pivot again) can finish between this pivot's plan and
 * its complete: QEMU then no longer knows the job ("not found") or refuses
 * a second complete.  Whether the disk runs on its mirror is what counts. */
static bool
switched_meanwhile (SmQmp *qmp, const SmLsmDisk *d)
{
  g_autoptr(GError) err = NULL;

  if (!sm_block_job_wait_gone (qmp, d->job_id, COMPLETING_GRACE_MS, &err) ||
      !sm_lsm_disk_runs_on (qmp, d, d->mirror, &err)) {
    sm_debug (DOMAIN, "disk %s: not switched: %s", d->name,
              err ? err->message : "still on its source");
    return false;
  }
  sm_debug (DOMAIN, "disk %s: an earlier complete switched it", d->name);
  return true;
}

static bool
pivot_step (void *ctx, const SmLsmStep *s, const SmLsmDisk *d, GError **err)
{
  Pivot *pv = ctx;
  SmQmp *qmp = pv->qmp;
  SmLsmPlan *plan = pv->plan;
  bool ok = true;

  switch (s->kind) {
  case SM_LSM_STEP_WAIT:
    ok = sm_lsm_wait (qmp, pv->st, plan->info, pv->options, err);
    break;
  case SM_LSM_STEP_CHECK_DEST:
    ok = check_dest (qmp, d, err);
    break;
  case SM_LSM_STEP_STOP: {
    bool running = false;

    ok = run_state (qmp, &running, err);
    if (ok && running) {
      ok = sm_qmp_run (qmp, "stop", NULL, err);
      if (ok)
        pv->stopped_at = g_get_monotonic_time ();
    }
    sm_qmp_clear_events (qmp);
    break;
  }
  case SM_LSM_STEP_COMPLETE:
    if (!sm_qmp_run (qmp, s->command, json_object_get (s->args), err)) {
      if (switched_meanwhile (qmp, d)) {
        g_clear_error (err);
        g_ptr_array_add (pv->result->moved, g_strdup (d->name));
        break;
      }
      g_prefix_error (err, "disk %s: ", d->name);
      ok = false;
    } else {
      g_ptr_array_add (pv->completed, (gpointer) d);
    }
    break;
  case SM_LSM_STEP_WAIT_SWITCH:
    break;
  case SM_LSM_STEP_CONT:
    break;
  case SM_LSM_STEP_DELETE_SOURCE:
    ok = delete_source (qmp, pv->st, plan, pv->result, err);
    break;
  case SM_LSM_STEP_DELETE_METADATA:
    ok = sm_lsm_delete_metadata (pv->st, plan->info->snapshot,
                                 plan->info->parent, err);
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
   * the jobs already pv->completed must still finish and the guest run. */
  if (s->kind == SM_LSM_STEP_WAIT_SWITCH || (!ok && pv->completed->len) ||
      (!ok && pv->stopped_at >= 0)) {
    size_t k;

    for (k = 0; k < pv->completed->len; k++) {
      const SmLsmDisk *cd = pv->completed->pdata[k];
      g_autoptr(GError) werr = NULL;

      int limit = pv->options->timeout_ms < 0 ? SWITCH_TIMEOUT_MS
                                          : pv->options->timeout_ms;

      if (!sm_block_job_wait_gone (qmp, cd->job_id, limit, &werr) ||
          !sm_lsm_disk_runs_on (qmp, cd, cd->mirror, &werr)) {
        if (ok) {
          ok = false;
          if (werr) {
            g_prefix_error (&werr, "disk %s: ", cd->name);
            *err = g_steal_pointer (&werr);
          }
          else
            g_set_error (err, SM_ERROR, SM_ERROR_FAILED,
                         "disk %s: the mirror ended but the disk did not "
                         "switch to %s", cd->name, cd->mirror);
        }
      } else {
        g_ptr_array_add (pv->result->moved, g_strdup (cd->name));
      }
    }
    g_ptr_array_set_size (pv->completed, 0);
    if (pv->stopped_at >= 0) {
      g_autoptr(GError) cerr = NULL;

      if (!sm_qmp_run (qmp, "cont", NULL, &cerr) && ok) {
        ok = false;
        *err = g_steal_pointer (&cerr);
      }
      pv->result->pause_ms = (g_get_monotonic_time () - pv->stopped_at) / 1000;
      pv->stopped_at = -1;
    }
  }
  return ok;
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
  Pivot pv = { qmp, st, plan, options, result, completed, -1 };

  g_return_val_if_fail (plan->op == SM_LSM_OP_PIVOT, false);
  result->pause_ms = -1;
  result->moved = g_ptr_array_new_with_free_func (g_free);
  result->removed = g_ptr_array_new_with_free_func (g_free);
  result->kept = g_ptr_array_new_with_free_func (kept_file_free);
  journal = sm_lsm_journal_open (st, "pivot", opid, plan->info, NULL, error);
  if (!journal)
    return false;
  if (!run_steps (&journal, plan, pivot_step, &pv, &err)) {
    g_autofree char *where = describe_disks (qmp, plan->info);
    g_autofree char *pause = result->pause_ms >= 0 ?
      g_strdup_printf ("; the guest was paused %" G_GINT64_FORMAT " ms",
                       result->pause_ms) : g_strdup ("");

    g_set_error (error, err->domain, err->code, "%s%s%s%s", err->message,
                 where, pause,
                 result->moved->len ? " (run pivot again to finish)" : "");
    return false;
  }
  return sm_lsm_journal_done (g_steal_pointer (&journal), error);
}

/* ---- abort ----------------------------------------------------------- */

typedef struct {
  SmQmp *qmp;
  SmVmState *st;
  SmLsmPlan *plan;
  int timeout_ms;
} Abort;

static bool
abort_step (void *ctx, const SmLsmStep *s, const SmLsmDisk *d, GError **err)
{
  Abort *ab = ctx;
  SmQmp *qmp = ab->qmp;
  SmLsmPlan *plan = ab->plan;
  bool ok = true;

  switch (s->kind) {
  case SM_LSM_STEP_CANCEL:
    /* QEMU ends a cancel after READY with BLOCK_JOB_COMPLETED, not
     * CANCELLED: where the disk runs is what tells. */
    ok = sm_block_job_cancel_wait (qmp, d->job_id, ab->timeout_ms, err);
    if (ok) {
      g_autoptr(SmBlockDisk) bd = sm_block_query_disk (qmp, d->name, err);
      const char *top = bd ? sm_block_disk_top (bd) : NULL;

      if (!bd)
        ok = false;
      else if (!top || strcmp (top, d->new_top) != 0) {
        g_set_error (err, SM_ERROR, SM_ERROR_FAILED,
                     "disk %s: after the cancel it runs on %s, not on %s",
                     d->name, top ? top : "no medium", d->new_top);
        ok = false;
      }
    }
    if (!ok)
      g_prefix_error (err, "disk %s: ", d->name);
    break;
  case SM_LSM_STEP_STOP_COPY: {
    g_autofree char *status = sm_lsm_copy_status_path (ab->st,
                                                       plan->info->snapshot);

    ok = sm_copy_worker_kill (status, 10000, err);
    break;
  }
  case SM_LSM_STEP_REMOVE_FILES: {
    g_autofree char *path = sm_lsm_created_path (ab->st, plan->info->snapshot);
    g_autoptr(SmCreatedFiles) created = sm_created_files_load (path, err);

    if (!created && g_error_matches (*err, SM_ERROR, SM_ERROR_NOT_FOUND)) {
      g_clear_error (err);
      break;
    }
    ok = created && sm_created_files_rollback (created, err);
    if (ok)
      ok = sm_created_files_save (created, path, err);
    else if (g_error_matches (*err, SM_ERROR, SM_ERROR_IN_USE)) {
      /* Kept in the record: a later abort removes it once it is free. */
      g_autofree char *msg = g_strdup_printf (
        "%s; run abort again once it is free", (*err)->message);

      g_free ((*err)->message);
      (*err)->message = g_steal_pointer (&msg);
    }
    break;
  }
  case SM_LSM_STEP_DELETE_METADATA:
    ok = sm_lsm_delete_metadata (ab->st, plan->info->snapshot,
                                 plan->info->parent, err);
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
  return ok;
}

bool
sm_lsm_abort (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan, int timeout_ms,
              GError **error)
{
  g_autofree char *opid = sm_journal_new_opid ();
  g_autoptr(SmJournal) journal = NULL;
  Abort ab = { qmp, st, plan, timeout_ms };

  g_return_val_if_fail (plan->op == SM_LSM_OP_ABORT, false);
  journal = sm_lsm_journal_open (st, "abort", opid, plan->info, NULL, error);
  if (!journal)
    return false;
  if (!run_steps (&journal, plan, abort_step, &ab, error))
    return false;
  return sm_lsm_journal_done (g_steal_pointer (&journal), error);
}

/* ---- recover --------------------------------------------------------- */

char *
sm_lsm_recover_switch (SmQmp *qmp, SmVmState *st, const char *path,
                       json_object *records, const SmLsmInfo *info,
                       const char *op, GError **error)
{
  int last_step = 0;
  const char *last_kind = "none";
  size_t i;

  (void) qmp;
  (void) st;
  (void) error;
  for (i = 1; i < json_object_array_length (records); i++) {
    json_object *rec = json_object_array_get_idx (records, i);
    json_object *v;

    if (json_object_object_get_ex (rec, "phase", &v) &&
        strcmp (json_object_get_string (v), "end") == 0 &&
        json_object_object_get_ex (rec, "step", &v)) {
      last_step = json_object_get_int (v);
      if (json_object_object_get_ex (rec, "kind", &v))
        last_kind = json_object_get_string (v);
    }
  }
  unlink (path);
  return g_strdup_printf ("%s of snapshot %s was interrupted after step %d "
                          "(%s): run 'snapmig %s %s' again to finish it", op,
                          info->snapshot, last_step, last_kind, op,
                          info->snapshot);
}
