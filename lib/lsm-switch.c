/* libsnapmig — live storage migration: waiting for the mirrors and
 * copies, pivot (the switch to the destination) and abort. */
#include "lsm.h"
#include "lsm-private.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "interrupt.h"
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

/* How often a waiting command rewrites its progress file. */
#define PUBLISH_INTERVAL_US G_USEC_PER_SEC

/* Publishes what status would say in the progress file, for a second
 * snapmig: QEMU's monitor serves one client, and this wait holds it (see
 * sm_lsm_status_watched).  At most once per PUBLISH_INTERVAL_US, judged by
 * the file's own age, so that create's short slices of waiting need no
 * shared state.  Best effort: a failure only costs the watchers. */
static void
publish_progress (SmQmp *qmp, SmVmState *st, const SmLsmInfo *info)
{
  g_autofree char *path = sm_lsm_progress_path (st, info->snapshot);
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) doc = NULL;
  g_autoptr(GDateTime) now = NULL;
  g_autofree char *stamp = NULL;
  struct stat sb;
  gint64 now_us = g_get_real_time ();

  if (stat (path, &sb) == 0 &&
      now_us - ((gint64) sb.st_mtim.tv_sec * G_USEC_PER_SEC +
                sb.st_mtim.tv_nsec / 1000) < PUBLISH_INTERVAL_US)
    return;
  doc = sm_lsm_status (qmp, st, info, &err);
  if (!doc) {
    sm_debug (DOMAIN, "%s: not published: %s", path, err->message);
    return;
  }
  now = g_date_time_new_from_unix_utc (now_us / G_USEC_PER_SEC);
  stamp = g_date_time_format (now, "%Y-%m-%dT%H:%M:%SZ");
  json_object_object_add (doc, "pid", json_object_new_int64 (getpid ()));
  json_object_object_add (doc, "time", json_object_new_string (stamp));
  json_object_object_add (doc, "time-unix", json_object_new_double (
                            (double) now_us / G_USEC_PER_SEC));
  if (!sm_lsm_save_json (path, doc, &err))
    sm_debug (DOMAIN, "%s: not published: %s", path, err->message);
}

/* sm_lsm_wait's loop; WATCH is watch_status()'s descriptor or -1. */
static bool
wait_loop (SmQmp *qmp, SmVmState *st, const char *status_path,
           const SmLsmInfo *info, const SmLsmWaitOptions *options,
           gint64 deadline, int watch, GError **error)
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
    if (sm_interrupt_check (error))
      return false;
    publish_progress (qmp, st, info);
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
    /* An interruption asked for during the last reports (an API caller's
     * progress callback) still stops the wait, even when it is complete. */
    if (mirrors_ready && copies->state == SM_COPY_DONE)
      return !sm_interrupt_check (error);
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
  bool ok = wait_loop (qmp, st, status_path, info, options, deadline, watch,
                       error);

  if (watch >= 0)
    close (watch);
  return ok;
}

/* ---- what the journals of pivot and abort say ------------------------- */

/* The journal record of something done outside the plan's steps: the
 * guest's run state ("guest-stopped" before pivot's stop, "guest-resumed"
 * after a cont, "guest-gone" when QEMU ended with the guest paused). */
#define GUEST_STOPPED "guest-stopped"
#define GUEST_RESUMED "guest-resumed"
#define GUEST_GONE "guest-gone"

/* One journal of a pivot or an abort, as its records tell it. */
typedef struct {
  char *path;
  char *op;                    /* "pivot" or "abort" */
  SmLsmInfo *info;             /* from the header */
  bool paused;                 /* GUEST_STOPPED without a later
                                  GUEST_RESUMED or GUEST_GONE */
  GPtrArray *completes;        /* names of the disks whose
                                  block-job-complete was (maybe) sent */
  int last_step;               /* last step journaled as ended, 0: none */
  char *last_kind;
} SwitchJournal;

static void
switch_journal_free (SwitchJournal *sj)
{
  if (!sj)
    return;
  g_free (sj->path);
  g_free (sj->op);
  g_clear_pointer (&sj->info, sm_lsm_info_free);
  g_clear_pointer (&sj->completes, g_ptr_array_unref);
  g_free (sj->last_kind);
  g_free (sj);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SwitchJournal, switch_journal_free)

static const char *
rec_string (json_object *rec, const char *key)
{
  json_object *v;

  return json_object_object_get_ex (rec, key, &v) &&
         json_object_is_type (v, json_type_string)
         ? json_object_get_string (v) : NULL;
}

static bool
has_string (GPtrArray *names, const char *name)
{
  guint i;

  for (i = 0; i < names->len; i++)
    if (strcmp (names->pdata[i], name) == 0)
      return true;
  return false;
}

/* Reads RECORDS (header first) of the journal at PATH; NULL when it is not
 * the journal of a pivot or an abort. */
static SwitchJournal *
switch_journal_scan (const char *path, json_object *records)
{
  g_autoptr(SwitchJournal) sj = NULL;
  json_object *header = json_object_array_get_idx (records, 0);
  json_object *jinfo;
  const char *op = header ? rec_string (header, "op") : NULL;
  size_t i;

  if (!op || (strcmp (op, "pivot") != 0 && strcmp (op, "abort") != 0) ||
      !json_object_object_get_ex (header, "info", &jinfo))
    return NULL;
  sj = g_new0 (SwitchJournal, 1);
  sj->path = g_strdup (path);
  sj->op = g_strdup (op);
  sj->info = sm_lsm_info_from_json (jinfo, NULL);
  if (!sj->info)
    return NULL;
  sj->completes = g_ptr_array_new_with_free_func (g_free);
  sj->last_kind = g_strdup ("none");
  for (i = 1; i < json_object_array_length (records); i++) {
    json_object *rec = json_object_array_get_idx (records, i);
    const char *phase = rec_string (rec, "op-phase");
    const char *kind = rec_string (rec, "kind");
    const char *disk = rec_string (rec, "disk");
    const char *step_phase = rec_string (rec, "phase");
    json_object *v;

    if (phase && strcmp (phase, GUEST_STOPPED) == 0)
      sj->paused = true;
    if (phase && (strcmp (phase, GUEST_RESUMED) == 0 ||
                  strcmp (phase, GUEST_GONE) == 0))
      sj->paused = false;
    if (!kind || !step_phase)
      continue;
    /* "begin" is journaled before the command is sent: from then on QEMU
     * may have received it. */
    if (strcmp (kind, "complete") == 0 && strcmp (step_phase, "begin") == 0 &&
        disk && !has_string (sj->completes, disk))
      g_ptr_array_add (sj->completes, g_strdup (disk));
    if (strcmp (step_phase, "end") == 0 &&
        json_object_object_get_ex (rec, "step", &v)) {
      sj->last_step = json_object_get_int (v);
      g_free (sj->last_kind);
      sj->last_kind = g_strdup (kind);
    }
  }
  return g_steal_pointer (&sj);
}

/* The journals of pivots and aborts of ST (of SNAPSHOT only, unless NULL),
 * but the one at EXCEPT (may be NULL): SwitchJournal *.  A journal that
 * cannot be read is left out here: recover reports it. */
static GPtrArray *
switch_journals (SmVmState *st, const char *snapshot, const char *except,
                 GError **error)
{
  g_auto(GStrv) paths = sm_journal_list (sm_vm_state_journal_dir (st), error);
  GPtrArray *out;
  size_t i;

  if (!paths)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) switch_journal_free);
  for (i = 0; paths[i]; i++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) records = NULL;
    SwitchJournal *sj;

    if (except && strcmp (paths[i], except) == 0)
      continue;
    records = sm_journal_load (paths[i], &err);
    if (!records) {
      sm_debug (DOMAIN, "%s", err->message);
      continue;
    }
    sj = switch_journal_scan (paths[i], records);
    if (!sj)
      continue;
    if (snapshot && strcmp (sj->info->snapshot, snapshot) != 0) {
      switch_journal_free (sj);
      continue;
    }
    g_ptr_array_add (out, sj);
  }
  return out;
}

/* Appends the op-phase record PHASE to the journal at PATH (best effort:
 * the guest's state is what counts; a missing record only makes a later
 * command look at query-status again). */
static void
journal_note (const char *path, const char *phase)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmJournal) j = sm_journal_open_append (path, &err);

  if (!j || !sm_journal_append (j, sm_lsm_phase_record (phase), &err))
    sm_debug (DOMAIN, "cannot journal %s: %s", phase, err->message);
}

json_object *
sm_lsm_switch_journals_json (SmVmState *st, const char *snapshot)
{
  g_autoptr(GPtrArray) journals = switch_journals (st, snapshot, NULL, NULL);
  json_object *arr = json_object_new_array ();
  size_t i, k;

  for (i = 0; journals && i < journals->len; i++) {
    const SwitchJournal *sj = journals->pdata[i];
    json_object *o = json_object_new_object ();
    json_object *sent = json_object_new_array ();

    json_object_object_add (o, "op", json_object_new_string (sj->op));
    json_object_object_add (o, "journal", json_object_new_string (sj->path));
    json_object_object_add (o, "last-step",
                            json_object_new_int (sj->last_step));
    json_object_object_add (o, "guest-paused-by-it",
                            json_object_new_boolean (sj->paused));
    for (k = 0; k < sj->completes->len; k++)
      json_object_array_add (sent, json_object_new_string (
                               sj->completes->pdata[k]));
    json_object_object_add (o, "complete-sent", sent);
    json_object_array_add (arr, o);
  }
  return arr;
}

/* ---- the guest's run state ------------------------------------------- */

static char *
run_status (SmQmp *qmp, GError **error)
{
  g_autoptr(json_object) status = sm_qmp_execute (qmp, "query-status", NULL,
                                                  error);
  const char *s;

  if (!status)
    return NULL;
  s = sm_json_get_string (status, "status");
  return g_strdup (s ? s : "unknown");
}

typedef struct {
  SmQmp *qmp;
  const char *command;
  GError *error;
  bool ok;
} Cont;

static void
cont_now (void *opaque)
{
  Cont *c = opaque;
  /* The resume must be sent even when the user interrupted: the recorded
   * signal is set aside for the command and restored after it. */
  int sig = sm_interrupt_set_aside ();

  c->ok = sm_qmp_run (c->qmp, c->command, NULL, &c->error);
  sm_interrupt_restore (sig);
}

/* Sends COMMAND ("cont") with SIGINT/SIGTERM/SIGHUP held back, so that no
 * signal cuts the resume of the guest short. */
static bool
resume_guest (SmQmp *qmp, const char *command, GError **error)
{
  Cont c = { qmp, command, NULL, false };

  sm_interrupt_block_during (cont_now, &c);
  if (!c.ok)
    g_propagate_error (error, c.error);
  return c.ok;
}

/* When the interrupted pivot of SJ paused the guest and it is still paused
 * ("paused": not an I/O error, a migration, a guest started with -S),
 * resumes it and journals so.  *SAID gets what was done, or NULL. */
static bool
resume_for (SmQmp *qmp, SwitchJournal *sj, char **said, GError **error)
{
  g_autofree char *status = NULL;

  *said = NULL;
  if (!sj->paused)
    return true;
  status = run_status (qmp, error);
  if (!status)
    return false;
  if (strcmp (status, "paused") == 0) {
    if (!resume_guest (qmp, "cont", error)) {
      g_prefix_error (error, "resuming the guest that the interrupted pivot "
                      "of snapshot %s paused: ", sj->info->snapshot);
      return false;
    }
    journal_note (sj->path, GUEST_RESUMED);
    *said = g_strdup_printf ("resumed the guest that the interrupted pivot of "
                             "snapshot %s had paused", sj->info->snapshot);
  } else if (strcmp (status, "running") == 0) {
    journal_note (sj->path, GUEST_RESUMED);
  } else {
    *said = g_strdup_printf ("the interrupted pivot of snapshot %s had paused "
                             "the guest; it is now '%s', not paused: left as "
                             "it is", sj->info->snapshot, status);
  }
  sj->paused = false;
  return true;
}

char **
sm_lsm_resume_interrupted (SmQmp *qmp, SmVmState *st, GError **error)
{
  g_autoptr(GPtrArray) journals = switch_journals (st, NULL, NULL, error);
  g_autoptr(GPtrArray) said = g_ptr_array_new_with_free_func (g_free);
  size_t i;

  if (!journals)
    return NULL;
  for (i = 0; i < journals->len; i++) {
    char *msg = NULL;

    if (!resume_for (qmp, journals->pdata[i], &msg, error))
      return NULL;
    if (msg)
      g_ptr_array_add (said, msg);
  }
  g_ptr_array_add (said, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&said), false);
}

/* Removes the journals of earlier pivots and aborts of SNAPSHOT (but the one
 * at EXCEPT) once a pivot or abort of it finished: what they record is
 * over. */
static void
remove_superseded_journals (SmVmState *st, const char *snapshot,
                            const char *except)
{
  g_autoptr(GPtrArray) journals = switch_journals (st, snapshot, except, NULL);
  size_t i;

  for (i = 0; journals && i < journals->len; i++) {
    const SwitchJournal *sj = journals->pdata[i];

    sm_debug (DOMAIN, "%s: superseded, removed", sj->path);
    unlink (sj->path);
  }
}

static const SmLsmDisk *
info_disk (const SmLsmInfo *info, const char *name)
{
  size_t i;

  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];

    if (strcmp (d->name, name) == 0)
      return d;
  }
  return NULL;
}

/* What to tell about disk D of snapshot SNAPSHOT when a block-job-complete
 * was sent to its READY mirror and QEMU was gone before the outcome was
 * seen.  QEMU accepts the complete and switches within milliseconds, after
 * which only the destination top receives the guest's writes; before the
 * switch the destination lags at most by what the mirror had not copied
 * yet.  So the destination is the chain to restart on, and neither top may
 * be deleted. */
static char *
unknown_switch (const SmLsmDisk *d, const char *snapshot,
                const char *journal)
{
  return g_strdup_printf ("disk %s: unknown: QEMU closed the monitor after "
                          "block-job-complete of disk %s was sent; the newest "
                          "writes may be in %s (QEMU was switching to it) or "
                          "in %s; do not delete either top; restart the VM "
                          "on %s and run 'snapmig pivot %s' to finish (the "
                          "journal %s is kept as the evidence)",
                          d->name, d->name, d->mirror, d->new_top, d->mirror,
                          snapshot, journal);
}

/* True when a journaled block-job-complete of disk D (in one of JOURNALS)
 * may have switched it in a QEMU that is gone since: the mirror job is not
 * in JOBS (the QEMU now answering is another one, or the job ended) and
 * the disk does not run on its destination (DISKS).  *JOURNAL gets the
 * journal's path. */
static bool
maybe_switched_elsewhere (GPtrArray *journals, const SmLsmDisk *d,
                          GPtrArray *jobs, GPtrArray *disks,
                          const char **journal)
{
  size_t i, k;

  if (!d->mirror)
    return false;
  for (i = 0; i < journals->len; i++) {
    const SwitchJournal *sj = journals->pdata[i];

    if (strcmp (sj->op, "pivot") != 0 || !has_string (sj->completes, d->name))
      continue;
    if (d->job_id && sm_block_find_job (jobs, d->job_id))
      return false;
    for (k = 0; k < disks->len; k++) {
      const SmBlockDisk *bd = disks->pdata[k];
      const char *top = sm_block_disk_top (bd);

      if (sm_block_disk_matches (bd, d->name) && top &&
          strcmp (top, d->mirror) == 0)
        return false;
    }
    *journal = sj->path;
    return true;
  }
  return false;
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

typedef bool (*StepFn) (void *ctx, const SmLsmStep *step,
                        const SmLsmDisk *disk, GError **error);
typedef bool (*BatchFn) (void *ctx, guint first, guint n, GError **error);

/* How many steps from I run together: a run of consecutive COMPLETE steps
 * when BATCH is given, else 1. */
static guint
steps_at (SmLsmPlan *plan, guint i, bool batch)
{
  guint n = 1;

  if (i >= plan->steps->len)
    return 0;
  if (batch && ((SmLsmStep *) plan->steps->pdata[i])->kind ==
               SM_LSM_STEP_COMPLETE)
    while (i + n < plan->steps->len &&
           ((SmLsmStep *) plan->steps->pdata[i + n])->kind ==
           SM_LSM_STEP_COMPLETE)
      n++;
  return n;
}

/* True when the begin of step I need not be durable before it runs: it
 * only waits (WAIT_SWITCH), or what it does is journaled by itself when
 * done (CONT: "guest-resumed", synced).  Losing such a record (and the end
 * of the step before, written with it) in a power failure reads as a stop
 * just before it, which recover handles the same way.  With the guest
 * paused between the completes and the cont, no sync is then left there
 * (each costs milliseconds, tens on a busy disk). */
static bool
begin_may_lag (SmLsmPlan *plan, guint i)
{
  SmLsmStepKind kind = ((SmLsmStep *) plan->steps->pdata[i])->kind;

  return kind == SM_LSM_STEP_WAIT_SWITCH || kind == SM_LSM_STEP_CONT;
}

/* Journals, with one write and (unless every begin may lag) one sync, the
 * end of the N_END steps from END (none when N_END is 0) and the begin of
 * the N_BEGIN steps from BEGIN (none when 0). */
static bool
journal_steps (SmJournal *journal, SmLsmPlan *plan, guint end, guint n_end,
               guint begin, guint n_begin, GError **error)
{
  g_autofree json_object **recs = g_new0 (json_object *, n_end + n_begin);
  guint k;

  for (k = 0; k < n_end; k++)
    recs[k] = sm_lsm_step_record (plan, end + k, "end", NULL);
  for (k = 0; k < n_begin; k++)
    recs[n_end + k] = sm_lsm_step_record (plan, begin + k, "begin", NULL);
  return sm_journal_append_many (journal, recs, n_end + n_begin,
                                 !(n_begin && begin_may_lag (plan, begin)),
                                 error);
}

/* Runs the steps of PLAN in order, each with RUN (CTX, STEP, DISK, ERROR):
 * DISK is the step's disk or NULL, ERROR never NULL.  With BATCH, a run of
 * consecutive COMPLETE steps is one batch, BATCH (CTX, FIRST, N, ERROR):
 * the begin of every step of it is journaled before any command is sent,
 * the end of every step once all are answered.  Each step's begin is
 * journaled before it runs, its end after; the end of one step and the
 * begin of the next go out with one sync (with the guest paused, every
 * sync counts), unless a signal was recorded meanwhile.  The test hooks
 * run after each step's end is durable (with the next one's begin).  A signal recorded by the CLI's
 * handlers stops it between steps (SM_ERROR_INTERRUPTED).  At the first
 * failure the step (the first of a batch) is journaled as failed and its
 * error returned in ERROR; JOURNAL stays open: the caller decides whether
 * it is still needed. */
static bool
run_steps (SmJournal *journal, SmLsmPlan *plan, StepFn run, BatchFn batch,
           void *ctx, GError **error)
{
  g_autoptr(GError) err = NULL;
  guint i = 0, n = steps_at (plan, 0, batch != NULL), k;
  bool begun = false;

  while (i < plan->steps->len) {
    const SmLsmStep *s = plan->steps->pdata[i];
    guint next_n;
    bool ok;

    if (sm_interrupt_check (&err) ||
        (!begun && !journal_steps (journal, plan, 0, 0, i, n, &err)))
      break;
    if (batch && s->kind == SM_LSM_STEP_COMPLETE)
      ok = batch (ctx, i, n, &err);
    else
      ok = run (ctx, s, s->disk >= 0 ? plan->info->disks->pdata[s->disk]
                                     : NULL, &err);
    if (!ok)
      break;
    next_n = steps_at (plan, i + n, batch != NULL);
    /* The next step's begin goes with this one's end unless a signal came
     * (then the next step is not begun).  A signal after the write still
     * stops the run before the next step: its begin is then followed by
     * "failed", as when the step itself fails. */
    begun = next_n > 0 && !sm_interrupted ();
    if (!journal_steps (journal, plan, i, n, i + n, begun ? next_n : 0, &err))
      break;
    for (k = 0; k < n; k++)
      sm_lsm_test_after_step ((int) (i + k) + 1);
    i += n;
    n = next_n;
  }
  if (i >= plan->steps->len)
    return true;
  sm_journal_append (journal, sm_lsm_step_record (plan, i, "failed", err),
                     NULL);
  g_propagate_error (error, g_steal_pointer (&err));
  return false;
}

/* What the steps of one pivot share. */
typedef struct {
  SmQmp *qmp;
  SmVmState *st;
  SmLsmPlan *plan;
  const SmLsmWaitOptions *options;
  SmLsmPivotResult *result;
  SmJournal *journal;
  GPtrArray *completed;        /* SmLsmDisk *: complete accepted, the job's
                                  end not yet seen */
  GPtrArray *ended;            /* SmLsmDisk *: the job ended, where the disk
                                  runs not yet checked */
  GPtrArray *sent;             /* SmLsmDisk *: complete sent (accepted or
                                  not) */
  gint64 stopped_at;           /* monotonic time just before pivot sent
                                  stop, or -1 when it did not pause the
                                  guest */
  gint64 stop_event_us;        /* realtime stamp of QEMU's STOP event for
                                  that stop, or -1 */
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

/* The realtime stamp of the event NAME that QEMU sent before the reply to
 * the command just answered (QEMU emits STOP and RESUME inside `stop` and
 * `cont`, so they are already queued), or -1. */
static gint64
queued_event_us (SmQmp *qmp, const char *name)
{
  g_autoptr(json_object) ev = sm_qmp_wait_event (qmp, name, NULL, NULL, 0,
                                                 NULL);

  return sm_qmp_event_time_us (ev);
}

static bool
job_ended_match (json_object *event, void *opaque)
{
  const char *job_id = opaque;
  json_object *data;
  const char *device, *name;

  if (!json_object_object_get_ex (event, "data", &data))
    return false;
  name = sm_json_get_string (event, "event");
  device = sm_json_get_string (data, "device");
  return device && strcmp (device, job_id) == 0 && name &&
         (strcmp (name, "BLOCK_JOB_COMPLETED") == 0 ||
          strcmp (name, "BLOCK_JOB_CANCELLED") == 0);
}

/* Waits until LIMIT (monotonic) for the end of job D from its event
 * (BLOCK_JOB_COMPLETED or CANCELLED, queued or still to come), without
 * polling QEMU; when no event came, query-block-jobs decides. */
static bool
wait_job_end (SmQmp *qmp, const SmLsmDisk *d, gint64 limit, GError **error)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(json_object) ev = NULL;
  g_autoptr(GPtrArray) jobs = NULL;
  int ms = (int) MAX (0, (limit - g_get_monotonic_time ()) / 1000);

  ev = sm_qmp_wait_event (qmp, NULL, job_ended_match, d->job_id, ms, &err);
  if (ev) {
    json_object *data = NULL;
    const char *why = NULL;

    json_object_object_get_ex (ev, "data", &data);
    why = data ? sm_json_get_string (data, "error") : NULL;
    if (why) {
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "the mirror %s ended with an error: %s", d->job_id, why);
      return false;
    }
    return true;
  }
  if (!g_error_matches (err, SM_ERROR, SM_ERROR_TIMEOUT)) {
    g_propagate_error (error, g_steal_pointer (&err));
    return false;
  }
  /* No event within the limit: maybe one was dropped; ask QEMU. */
  jobs = sm_block_query_jobs (qmp, error);
  if (!jobs)
    return false;
  if (sm_block_find_job (jobs, d->job_id)) {
    g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                 "block job %s did not end in time", d->job_id);
    return false;
  }
  return true;
}

/* Waits for the mirror job of every disk of pv->completed to end (from
 * QEMU's events: no query inside the guest's pause) and moves those disks
 * to pv->ended; the first failure goes to ERROR, the others to the debug
 * log. */
static bool
wait_switch (Pivot *pv, GError **error)
{
  int limit_ms = pv->options->timeout_ms < 0 ? SWITCH_TIMEOUT_MS
                                             : pv->options->timeout_ms;
  gint64 limit = g_get_monotonic_time () + (gint64) limit_ms * 1000;
  bool ok = true;
  size_t k;

  for (k = 0; k < pv->completed->len; k++) {
    const SmLsmDisk *cd = pv->completed->pdata[k];
    g_autoptr(GError) werr = NULL;

    if (sm_interrupt_check (&werr) ||
        !wait_job_end (pv->qmp, cd, limit, &werr)) {
      g_prefix_error (&werr, "disk %s: ", cd->name);
      if (ok)
        g_propagate_error (error, g_steal_pointer (&werr));
      else
        sm_debug (DOMAIN, "%s", werr->message);
      ok = false;
    } else {
      g_ptr_array_add (pv->ended, (gpointer) cd);
    }
  }
  g_ptr_array_set_size (pv->completed, 0);
  return ok;
}

/* Checks, with one query-block, that every disk of pv->ended runs on its
 * destination, and lists it in the result's moved disks. */
static bool
check_switch (Pivot *pv, GError **error)
{
  g_autoptr(GPtrArray) disks = NULL;
  bool ok = true;
  size_t i, k;

  if (!pv->ended->len)
    return true;
  disks = sm_block_query_disks (pv->qmp, error);
  if (!disks)
    return false;
  for (i = 0; i < pv->ended->len; i++) {
    const SmLsmDisk *d = pv->ended->pdata[i];
    const char *top = NULL;

    for (k = 0; k < disks->len; k++)
      if (sm_block_disk_matches (disks->pdata[k], d->name))
        top = sm_block_disk_top (disks->pdata[k]);
    if (top && strcmp (top, d->mirror) == 0) {
      g_ptr_array_add (pv->result->moved, g_strdup (d->name));
      continue;
    }
    if (ok)
      g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                   "disk %s: the mirror ended but the disk did not switch "
                   "to %s", d->name, d->mirror);
    ok = false;
  }
  g_ptr_array_set_size (pv->ended, 0);
  return ok;
}

/* Resumes the guest if this pivot paused it, with COMMAND (the plan's CONT
 * step; "cont" on the error path), and journals it.  The pause is taken
 * from QEMU's STOP and RESUME events (QEMU stops the vCPUs and sends STOP,
 * then drains and flushes every disk; it sends RESUME just before the
 * vCPUs run again); without both events, from before stop was sent to
 * after cont returned. */
static bool
pivot_resume (Pivot *pv, const char *command, GError **error)
{
  gint64 resume_us;

  if (pv->stopped_at < 0)
    return true;
  if (!resume_guest (pv->qmp, command, error))
    return false;
  resume_us = queued_event_us (pv->qmp, "RESUME");
  if (pv->stop_event_us >= 0 && resume_us >= pv->stop_event_us) {
    pv->result->pause_us = resume_us - pv->stop_event_us;
    pv->result->pause_from = "events";
  } else {
    pv->result->pause_us = g_get_monotonic_time () - pv->stopped_at;
    pv->result->pause_from = "clock";
  }
  pv->result->pause_ms = (pv->result->pause_us + 500) / 1000;
  pv->stopped_at = -1;
  if (!sm_journal_append (pv->journal, sm_lsm_phase_record (GUEST_RESUMED),
                          error)) {
    g_prefix_error (error, "the guest runs again, but ");
    return false;
  }
  return true;
}

/* The plan's FLUSH: makes what QEMU wrote to the source tops and mirror
 * targets of the disks about to switch durable, from outside QEMU, with the
 * guest running: writeback of every file is started first, then each is
 * waited for.  Opened read-only; nothing is written.  Only an optimisation
 * (QEMU flushes again in `stop` and when each mirror completes, then with
 * little left): a failure is logged, not fatal. */
/* One pass of the plan's FLUSH over PATHS: writeback of every file is
 * started first, then each is waited for.  Returns the microseconds it
 * took. */
static gint64
flush_pass (GPtrArray *paths)
{
  g_autoptr(GArray) fds = g_array_new (false, false, sizeof (int));
  gint64 t0 = g_get_monotonic_time ();
  guint i;

  for (i = 0; i < paths->len; i++) {
    int fd = open (paths->pdata[i], O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
      sm_debug (DOMAIN, "flush: cannot open %s: %s",
                (char *) paths->pdata[i], g_strerror (errno));
      continue;
    }
    if (sync_file_range (fd, 0, 0, SYNC_FILE_RANGE_WRITE) < 0)
      sm_debug (DOMAIN, "flush: %s: %s", (char *) paths->pdata[i],
                g_strerror (errno));
    g_array_append_val (fds, fd);
  }
  for (i = 0; i < fds->len; i++) {
    int fd = g_array_index (fds, int, i);

    if (fdatasync (fd) < 0)
      sm_debug (DOMAIN, "flush: fdatasync: %s", g_strerror (errno));
    close (fd);
  }
  return g_get_monotonic_time () - t0;
}

/* A flush pass this short leaves little for QEMU's flush in the pause. */
#define FLUSH_SHORT_US 5000
#define FLUSH_MAX_PASSES 4

/* The plan's FLUSH: makes what QEMU wrote to the source tops and mirror
 * targets of the disks about to switch durable, from outside QEMU, with the
 * guest running, so that the drain and flush QEMU does inside `stop` (and
 * each mirror at its completion) find little left.  The guest keeps
 * writing meanwhile, so passes are repeated (at most FLUSH_MAX_PASSES)
 * until one is short: each pass leaves what the guest wrote during it.
 * Opened read-only; nothing is written.  Only an optimisation: a failure is
 * logged, not fatal (QEMU's own flush reports a real one). */
static void
flush_files (Pivot *pv)
{
  SmLsmPlan *plan = pv->plan;
  g_autoptr(GPtrArray) paths = g_ptr_array_new ();
  int pass;
  guint i;

  for (i = 0; i < plan->steps->len; i++) {
    const SmLsmStep *s = plan->steps->pdata[i];
    const SmLsmDisk *d;

    if (s->kind != SM_LSM_STEP_COMPLETE || s->disk < 0)
      continue;
    d = plan->info->disks->pdata[s->disk];
    g_ptr_array_add (paths, d->new_top);
    g_ptr_array_add (paths, d->mirror);
  }
  for (pass = 1; pass <= FLUSH_MAX_PASSES; pass++) {
    gint64 us = flush_pass (paths);

    sm_debug (DOMAIN, "flush: pass %d over %u files: %" G_GINT64_FORMAT
              " us", pass, paths->len, us);
    if (us <= FLUSH_SHORT_US)
      break;
  }
}

/* Pauses the guest for the plan's STOP step S, journaling it first. */
static bool
pivot_stop (Pivot *pv, const SmLsmStep *s, GError **err)
{
  g_autofree char *status = run_status (pv->qmp, err);

  if (!status)
    return false;
  /* A guest someone paused after the plan was made is not ours to pause
   * or resume. */
  if (strcmp (status, "running") != 0) {
    sm_debug (DOMAIN, "the guest is %s: not stopped", status);
    return true;
  }
  /* Journaled before the stop, so that whoever finds this pivot killed
   * knows the guest may be paused by it. */
  if (!sm_journal_append (pv->journal, sm_lsm_phase_record (GUEST_STOPPED),
                          err))
    return false;
  /* Older events are of no use; the STOP event of this stop arrives
   * before its reply and stamps the start of the pause. */
  sm_qmp_clear_events (pv->qmp);
  pv->stopped_at = g_get_monotonic_time ();
  if (!sm_qmp_run (pv->qmp, s->command, json_object_get (s->args), err))
    return false;
  pv->stop_event_us = queued_event_us (pv->qmp, "STOP");
  return true;
}

/* The plan's N COMPLETE steps from FIRST, sent as one batch: every command
 * goes out before any reply is read (the guest may be paused meanwhile).
 * A disk whose complete QEMU refused may have been switched by an earlier
 * pivot's complete (switched_meanwhile); the first other refusal is the
 * error, after every reply was read. */
static bool
pivot_complete_batch (void *ctx, guint first, guint n, GError **err)
{
  Pivot *pv = ctx;
  SmLsmPlan *plan = pv->plan;
  g_autofree const char **commands = g_new0 (const char *, n);
  g_autofree json_object **args = g_new0 (json_object *, n);
  g_autofree GError **errors = g_new0 (GError *, n);
  bool ok = true;
  guint k;

  for (k = 0; k < n; k++) {
    const SmLsmStep *s = plan->steps->pdata[first + k];

    commands[k] = s->command;
    args[k] = json_object_get (s->args);
    g_ptr_array_add (pv->sent, plan->info->disks->pdata[s->disk]);
  }
  if (!sm_qmp_run_batch (pv->qmp, n, commands, args, errors, err)) {
    for (k = 0; k < n; k++)
      g_clear_error (&errors[k]);
    return false;
  }
  for (k = 0; k < n; k++) {
    const SmLsmStep *s = plan->steps->pdata[first + k];
    const SmLsmDisk *d = plan->info->disks->pdata[s->disk];
    g_autoptr(GError) cerr = g_steal_pointer (&errors[k]);

    if (!cerr) {
      g_ptr_array_add (pv->completed, (gpointer) d);
      continue;
    }
    if (switched_meanwhile (pv->qmp, d)) {
      g_ptr_array_add (pv->result->moved, g_strdup (d->name));
      continue;
    }
    g_prefix_error (&cerr, "disk %s: ", d->name);
    if (ok)
      g_propagate_error (err, g_steal_pointer (&cerr));
    else
      sm_debug (DOMAIN, "%s", cerr->message);
    ok = false;
  }
  return ok;
}

static bool
pivot_step (void *ctx, const SmLsmStep *s, const SmLsmDisk *d, GError **err)
{
  Pivot *pv = ctx;
  SmQmp *qmp = pv->qmp;
  SmLsmPlan *plan = pv->plan;

  switch (s->kind) {
  case SM_LSM_STEP_WAIT: {
    bool ok = sm_lsm_wait (qmp, pv->st, plan->info, pv->options, err);

    sm_lsm_progress_remove (pv->st, plan->info->snapshot);
    return ok;
  }
  case SM_LSM_STEP_CHECK_DEST:
    return check_dest (qmp, d, err);
  case SM_LSM_STEP_FLUSH:
    flush_files (pv);
    return true;
  case SM_LSM_STEP_STOP:
    return pivot_stop (pv, s, err);
  case SM_LSM_STEP_COMPLETE:
    /* Sent by pivot_complete_batch. */
    g_return_val_if_reached (false);
  case SM_LSM_STEP_WAIT_SWITCH:
    return wait_switch (pv, err);
  case SM_LSM_STEP_CONT:
    return pivot_resume (pv, s->command, err);
  case SM_LSM_STEP_CHECK_SWITCH:
    return check_switch (pv, err);
  case SM_LSM_STEP_DELETE_SOURCE:
    return delete_source (qmp, pv->st, plan, pv->result, err);
  case SM_LSM_STEP_DELETE_METADATA:
    return sm_lsm_delete_metadata (pv->st, plan->info->snapshot,
                                   plan->info->parent, err);
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
  return true;
}

static bool
in_disks (GPtrArray *disks, const SmLsmDisk *d)
{
  guint i;

  for (i = 0; i < disks->len; i++)
    if (disks->pdata[i] == d)
      return true;
  return false;
}

/* Where each mirrored disk runs after a failed pivot, from query-block, or
 * from the journal when QEMU does not answer; *KEEP_JOURNAL is set when a
 * disk's outcome cannot be known (a complete was sent to a QEMU that is
 * gone): the journal is then the evidence abort and recover look at. */
static char *
describe_disks (Pivot *pv, bool *keep_journal)
{
  const SmLsmInfo *info = pv->plan->info;
  GString *s = g_string_new (NULL);
  g_autoptr(GError) qerr = NULL;
  g_autoptr(GPtrArray) disks = sm_block_query_disks (pv->qmp, &qerr);
  g_autoptr(GPtrArray) jobs = disks ? sm_block_query_jobs (pv->qmp, NULL)
                                    : NULL;
  size_t i, k;

  *keep_journal = false;
  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];
    const char *top = NULL;

    if (!d->mirror)
      continue;
    if (!disks) {
      if (in_disks (pv->sent, d)) {
        g_autofree char *u = unknown_switch (d, info->snapshot,
                                             sm_journal_path (pv->journal));

        g_string_append_printf (s, "; %s", u);
        *keep_journal = true;
      } else {
        g_string_append_printf (s, "; disk %s runs on its source %s (QEMU "
                                "does not answer: %s; no block-job-complete "
                                "was sent to it)", d->name, d->new_top,
                                qerr->message);
      }
      continue;
    }
    for (k = 0; k < disks->len; k++)
      if (sm_block_disk_matches (disks->pdata[k], d->name))
        top = sm_block_disk_top (disks->pdata[k]);
    g_string_append_printf (s, "; disk %s runs on %s (%s)", d->name,
                            top ? top : "no medium",
                            !top ? "neither chain"
                            : strcmp (top, d->mirror) == 0 ? "destination"
                            : strcmp (top, d->new_top) == 0 ? "source"
                            : "neither chain");
    if (top && strcmp (top, d->mirror) != 0 && in_disks (pv->sent, d) &&
        jobs && sm_block_find_job (jobs, d->job_id))
      g_string_append_printf (s, ", block-job-complete was sent: it may "
                              "still switch");
  }
  return g_string_free (s, false);
}

bool
sm_lsm_pivot (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan,
              const SmLsmWaitOptions *options, SmLsmPivotResult *result,
              GError **error)
{
  g_autofree char *opid = sm_journal_new_opid ();
  g_autoptr(SmJournal) journal = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(GError) cerr = NULL;
  g_autoptr(GError) werr = NULL;
  g_autoptr(GPtrArray) completed = g_ptr_array_new ();
  g_autoptr(GPtrArray) ended = g_ptr_array_new ();
  g_autoptr(GPtrArray) sent = g_ptr_array_new ();
  g_autofree char *where = NULL;
  g_autofree char *guest = NULL;
  g_autofree char *path = NULL;
  bool keep = false;
  int sig;
  Pivot pv = { qmp, st, plan, options, result, NULL, completed, ended, sent,
                -1, -1 };

  g_return_val_if_fail (plan->op == SM_LSM_OP_PIVOT, false);
  result->pause_ms = -1;
  result->pause_us = -1;
  result->pause_from = NULL;
  result->moved = g_ptr_array_new_with_free_func (g_free);
  result->removed = g_ptr_array_new_with_free_func (g_free);
  result->kept = g_ptr_array_new_with_free_func (kept_file_free);
  journal = sm_lsm_journal_open (st, "pivot", opid, plan->info, NULL, error);
  if (!journal)
    return false;
  pv.journal = journal;
  path = g_strdup (sm_journal_path (journal));
  if (run_steps (journal, plan, pivot_step, pivot_complete_batch, &pv,
                 &err)) {
    remove_superseded_journals (st, plan->info->snapshot, path);
    return sm_lsm_journal_done (g_steal_pointer (&journal), error);
  }

  /* The interruption is noticed: the few bounded QMP commands of the
   * unwinding below (resume, where the disks run) must still be answered,
   * so the request is set aside until the end. */
  sig = sm_interrupt_set_aside ();
  /* Every way out resumes a guest this pivot paused — first, so that the
   * guest waits for nothing else; the disks whose complete QEMU accepted
   * then still switch by themselves. */
  if (pv.stopped_at >= 0 && !pivot_resume (&pv, "cont", &cerr)) {
    if (g_error_matches (cerr, SM_ERROR, SM_ERROR_DISCONNECTED)) {
      sm_journal_append (journal, sm_lsm_phase_record (GUEST_GONE), NULL);
      guest = g_strdup ("; QEMU is gone, and the guest this pivot paused with "
                        "it");
    } else {
      guest = g_strdup_printf ("; the guest is still paused (cont failed: "
                               "%s): 'snapmig recover' resumes it",
                               cerr->message);
    }
  } else if (result->pause_ms >= 0) {
    guest = g_strdup_printf ("; the guest runs again (paused %"
                             G_GINT64_FORMAT " ms)", result->pause_ms);
  } else {
    guest = g_strdup ("");
  }
  if (completed->len && !sig &&
      !g_error_matches (err, SM_ERROR, SM_ERROR_DISCONNECTED))
    wait_switch (&pv, &werr);
  if (ended->len && !g_error_matches (err, SM_ERROR, SM_ERROR_DISCONNECTED))
    check_switch (&pv, NULL);
  where = describe_disks (&pv, &keep);
  sm_interrupt_restore (sig);
  g_set_error (error, err->domain, err->code, "%s%s%s%s", err->message,
               where, guest,
               result->moved->len && !keep ? " (run pivot again to finish)"
                                           : "");
  if (keep || pv.stopped_at >= 0)
    return false;              /* the journal stays: see describe_disks */
  sm_journal_finish (g_steal_pointer (&journal), NULL);
  return false;
}

/* ---- abort ----------------------------------------------------------- */

typedef struct {
  SmQmp *qmp;
  SmVmState *st;
  SmLsmPlan *plan;
  int timeout_ms;
} Abort;

/* The plan's block-job-cancel of D's mirror (STEP), and the wait for the
 * job to end.  QEMU ends a cancel after READY with BLOCK_JOB_COMPLETED, not
 * CANCELLED: where the disk runs is what tells. */
static bool
abort_cancel (Abort *ab, const SmLsmStep *s, const SmLsmDisk *d,
              GError **error)
{
  g_autoptr(GPtrArray) jobs = sm_block_query_jobs (ab->qmp, error);
  g_autoptr(SmBlockDisk) bd = NULL;
  g_autoptr(GError) err = NULL;
  const char *top;

  if (!jobs)
    return false;
  if (sm_block_find_job (jobs, d->job_id) &&
      !sm_qmp_run (ab->qmp, s->command, json_object_get (s->args), &err)) {
    /* The job may have ended between the query and the cancel. */
    g_autoptr(GPtrArray) again = sm_block_query_jobs (ab->qmp, NULL);

    if (!again || sm_block_find_job (again, d->job_id)) {
      g_propagate_error (error, g_steal_pointer (&err));
      return false;
    }
  }
  if (!sm_block_job_wait_gone (ab->qmp, d->job_id, ab->timeout_ms, error))
    return false;
  bd = sm_block_query_disk (ab->qmp, d->name, error);
  if (!bd)
    return false;
  top = sm_block_disk_top (bd);
  if (!top || strcmp (top, d->new_top) != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "after the cancel it runs on %s, not on %s",
                 top ? top : "no medium", d->new_top);
    return false;
  }
  return true;
}

static bool
abort_step (void *ctx, const SmLsmStep *s, const SmLsmDisk *d, GError **err)
{
  Abort *ab = ctx;
  SmLsmPlan *plan = ab->plan;
  bool ok = true;

  switch (s->kind) {
  case SM_LSM_STEP_CANCEL:
    ok = abort_cancel (ab, s, d, err);
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
  case SM_LSM_STEP_FLUSH:
  case SM_LSM_STEP_STOP:
  case SM_LSM_STEP_COMPLETE:
  case SM_LSM_STEP_WAIT_SWITCH:
  case SM_LSM_STEP_CONT:
  case SM_LSM_STEP_CHECK_SWITCH:
  case SM_LSM_STEP_DELETE_SOURCE:
  case SM_LSM_STEP_LAST:
    break;
  }
  return ok;
}

/* Refuses to abort while an interrupted pivot's block-job-complete may have
 * switched a disk in a QEMU that is gone since: its destination top may
 * hold the only copy of the guest's newest writes. */
static bool
check_no_unknown_switch (SmQmp *qmp, SmVmState *st, const SmLsmInfo *info,
                         GError **error)
{
  g_autoptr(GPtrArray) journals = switch_journals (st, info->snapshot, NULL,
                                                   error);
  g_autoptr(GPtrArray) jobs = NULL;
  g_autoptr(GPtrArray) disks = NULL;
  size_t i;

  if (!journals)
    return false;
  if (!journals->len)
    return true;
  if (!(jobs = sm_block_query_jobs (qmp, error)) ||
      !(disks = sm_block_query_disks (qmp, error)))
    return false;
  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];
    const char *journal = NULL;

    if (maybe_switched_elsewhere (journals, d, jobs, disks, &journal)) {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSAFE,
                   "disk %s: an interrupted pivot sent block-job-complete "
                   "and QEMU ended before the outcome was seen (journal %s): "
                   "the destination top %s may hold the guest's newest "
                   "writes, so abort does not remove it; restart the VM on "
                   "%s and run 'snapmig pivot %s' to finish, or, once you "
                   "have checked that %s holds the newest data, remove the "
                   "journal and run abort again", d->name, journal, d->mirror,
                   d->mirror, info->snapshot, d->new_top);
      return false;
    }
  }
  return true;
}

bool
sm_lsm_abort (SmQmp *qmp, SmVmState *st, SmLsmPlan *plan, int timeout_ms,
              GError **error)
{
  g_autofree char *opid = sm_journal_new_opid ();
  g_autoptr(SmJournal) journal = NULL;
  g_autofree char *path = NULL;
  Abort ab = { qmp, st, plan, timeout_ms };

  g_return_val_if_fail (plan->op == SM_LSM_OP_ABORT, false);
  if (!check_no_unknown_switch (qmp, st, plan->info, error))
    return false;
  journal = sm_lsm_journal_open (st, "abort", opid, plan->info, NULL, error);
  if (!journal)
    return false;
  path = g_strdup (sm_journal_path (journal));
  if (!run_steps (journal, plan, abort_step, NULL, &ab, error)) {
    sm_journal_finish (g_steal_pointer (&journal), NULL);
    return false;
  }
  remove_superseded_journals (st, plan->info->snapshot, path);
  return sm_lsm_journal_done (g_steal_pointer (&journal), error);
}

/* ---- recover --------------------------------------------------------- */

char *
sm_lsm_recover_switch (SmQmp *qmp, SmVmState *st, const char *path,
                       json_object *records, const SmLsmInfo *info,
                       const char *op, GError **error)
{
  g_autoptr(SwitchJournal) sj = switch_journal_scan (path, records);
  g_autoptr(GString) msg = g_string_new (NULL);
  g_autoptr(GPtrArray) one = NULL;
  g_autoptr(GPtrArray) disks = NULL;
  g_autoptr(GPtrArray) jobs = NULL;
  g_autofree char *record = sm_lsm_info_path (st, info->snapshot);
  g_autofree char *resumed = NULL;
  bool pivot = strcmp (op, "pivot") == 0;
  bool all_on_dest = true;
  bool keep = false;
  size_t i, k;

  if (!sj) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "journal %s: not the journal of a pivot or an abort", path);
    return NULL;
  }
  g_string_append_printf (msg, "%s of snapshot %s was interrupted after step "
                          "%d (%s)", op, info->snapshot, sj->last_step,
                          sj->last_kind);
  /* The guest first: nothing below needs it paused. */
  if (qmp && !resume_for (qmp, sj, &resumed, error))
    return NULL;
  if (resumed)
    g_string_append_printf (msg, "; %s", resumed);
  if (!qmp && sj->paused) {
    journal_note (path, GUEST_GONE);
    g_string_append (msg, "; QEMU is gone, and the guest the pivot paused "
                     "with it");
  }

  if (!qmp) {
    for (i = 0; pivot && i < sj->completes->len; i++) {
      const SmLsmDisk *d = info_disk (info, sj->completes->pdata[i]);
      g_autofree char *u = NULL;

      if (!d || !d->mirror)
        continue;
      u = unknown_switch (d, info->snapshot, path);
      g_string_append_printf (msg, "; %s", u);
      keep = true;
    }
    if (keep)
      return g_string_free (g_steal_pointer (&msg), false);
    unlink (path);
    g_string_append_printf (msg, "; QEMU is gone and no disk was switched: "
                            "restart the VM on its source chain and run "
                            "'snapmig abort %s' (its mirrors ended with QEMU)",
                            info->snapshot);
    return g_string_free (g_steal_pointer (&msg), false);
  }

  if (!(disks = sm_block_query_disks (qmp, error)) ||
      !(jobs = sm_block_query_jobs (qmp, error)))
    return NULL;
  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];
    const char *top = NULL;

    if (!d->mirror)
      continue;
    for (k = 0; k < disks->len; k++)
      if (sm_block_disk_matches (disks->pdata[k], d->name))
        top = sm_block_disk_top (disks->pdata[k]);
    if (!top || strcmp (top, d->mirror) != 0)
      all_on_dest = false;
    g_string_append_printf (msg, "; disk %s runs on %s", d->name,
                            top ? top : "no medium");
  }
  if (!g_file_test (record, G_FILE_TEST_EXISTS) && !all_on_dest) {
    unlink (path);
    g_string_append_printf (msg, "; the move of %s has no record any more: "
                            "journal removed", info->snapshot);
    return g_string_free (g_steal_pointer (&msg), false);
  }
  if (pivot && all_on_dest) {
    /* The switch is over; only records are left (a pivot killed while
     * deleting them): finish it. */
    if (!sm_lsm_delete_metadata (st, info->snapshot, info->parent, error))
      return NULL;
    unlink (path);
    g_string_truncate (msg, 0);
    g_string_append_printf (msg, "pivot of %s had switched every disk; "
                            "removed its leftover records%s%s",
                            info->snapshot, resumed ? "; " : "",
                            resumed ? resumed : "");
    return g_string_free (g_steal_pointer (&msg), false);
  }
  one = g_ptr_array_new ();
  g_ptr_array_add (one, sj);
  for (i = 0; pivot && i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];
    const char *journal = NULL;

    if (maybe_switched_elsewhere (one, d, jobs, disks, &journal)) {
      g_string_append_printf (msg, "; disk %s: block-job-complete was sent "
                              "to a QEMU that ended before the outcome was "
                              "seen: the destination top %s may hold the "
                              "guest's newest writes (restart the VM on it "
                              "and run 'snapmig pivot %s'); the journal is "
                              "kept as the evidence", d->name, d->mirror,
                              info->snapshot);
      keep = true;
    }
  }
  if (!keep) {
    unlink (path);
    g_string_append_printf (msg, ": run 'snapmig %s %s' again to finish it",
                            op, info->snapshot);
  }
  return g_string_free (g_steal_pointer (&msg), false);
}
