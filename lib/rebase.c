/* libsnapmig — rebase a running disk's chain with block-stream (rebase.h). */
#include "rebase.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockjob.h"
#include "image.h"
#include "interrupt.h"
#include "journal.h"
#include "json-util.h"
#include "report-json.h"
#include "state.h"

#define DOMAIN "rebase"

/* How often query-block-jobs is asked for the job's offset while waiting:
 * QEMU sends no progress events, and a person wants the bar to move. */
#define POLL_MS 200

static json_object *
phase_record (const char *phase)
{
  json_object *rec = json_object_new_object ();

  json_object_object_add (rec, "op-phase", json_object_new_string (phase));
  return rec;
}

/* How long a cancel (after --timeout) may take before we give up on it. */
#define CANCEL_WAIT_MS 30000

static void
layer_free (gpointer data)
{
  SmRebaseLayer *l = data;

  g_free (l->filename);
  g_free (l->format);
  g_free (l->node_name);
  g_free (l->backing_name);
  g_free (l);
}

void
sm_rebase_plan_free (SmRebasePlan *plan)
{
  if (!plan)
    return;
  g_free (plan->disk);
  g_free (plan->device);
  g_free (plan->job_id);
  if (plan->chain)
    g_ptr_array_unref (plan->chain);
  g_free (plan->backing_file);
  if (plan->command)
    json_object_put (plan->command);
  if (plan->expected)
    g_ptr_array_unref (plan->expected);
  g_free (plan);
}

char *
sm_rebase_chain_to_string (const GPtrArray *chain)
{
  GString *s = g_string_new (NULL);
  guint i;

  for (i = chain->len; i > 0; i--) {
    const SmRebaseLayer *l = g_ptr_array_index ((GPtrArray *) chain, i - 1);

    if (i != chain->len)
      g_string_append (s, " <- ");
    g_string_append (s, l->filename);
    if (l->node_name)
      g_string_append_printf (s, " [%s]", l->node_name);
  }
  return g_string_free (s, FALSE);
}

static bool
same_file (const char *a, const struct stat *sb)
{
  struct stat sa;

  return stat (a, &sa) == 0 && sa.st_dev == sb->st_dev &&
         sa.st_ino == sb->st_ino;
}

/* Index in CHAIN of the image the user called BASE, or -1. */
static int
find_layer (const GPtrArray *chain, const char *base)
{
  g_autofree char *canon = g_canonicalize_filename (base, NULL);
  struct stat sb;
  bool have_stat = stat (base, &sb) == 0;
  guint i;

  for (i = 0; i < chain->len; i++) {
    const SmRebaseLayer *l = g_ptr_array_index ((GPtrArray *) chain, i);

    if (l->node_name && strcmp (l->node_name, base) == 0)
      return (int) i;
  }
  for (i = 0; i < chain->len; i++) {
    const SmRebaseLayer *l = g_ptr_array_index ((GPtrArray *) chain, i);
    g_autofree char *lcanon = g_canonicalize_filename (l->filename, NULL);

    if (strcmp (l->filename, base) == 0 || strcmp (lcanon, canon) == 0 ||
        (have_stat && same_file (l->filename, &sb)))
      return (int) i;
  }
  return -1;
}

char *
sm_rebase_relative_path (const char *dir, const char *target)
{
  g_auto(GStrv) d = g_strsplit (dir, "/", -1);
  g_auto(GStrv) t = g_strsplit (target, "/", -1);
  g_autoptr(GPtrArray) dc = g_ptr_array_new ();
  g_autoptr(GPtrArray) tc = g_ptr_array_new ();
  GString *s = g_string_new (NULL);
  guint i, k = 0;

  /* Components without the empty ones that "/" and "a//b" make. */
  for (i = 0; d[i]; i++)
    if (*d[i])
      g_ptr_array_add (dc, d[i]);
  for (i = 0; t[i]; i++)
    if (*t[i])
      g_ptr_array_add (tc, t[i]);
  /* The file's own name never counts as a common directory. */
  while (k < dc->len && k + 1 < tc->len &&
         strcmp (g_ptr_array_index (dc, k), g_ptr_array_index (tc, k)) == 0)
    k++;
  for (i = k; i < dc->len; i++)
    g_string_append (s, "../");
  for (i = k; i < tc->len; i++) {
    if (i > k)
      g_string_append_c (s, '/');
    g_string_append (s, g_ptr_array_index (tc, i));
  }
  return g_string_free (s, FALSE);
}

/* The canonical physical path of PATH: realpath when it resolves (QEMU's
 * relative backing names go through the kernel, which resolves ".." after
 * symlinks), else the lexical canonical form. */
char *
sm_rebase_physical_path (const char *path)
{
  char buf[PATH_MAX];

  if (realpath (path, buf))
    return g_strdup (buf);
  return g_canonicalize_filename (path, NULL);
}

/* The name to write into ACTIVE for BASE: BASE relative to ACTIVE's
 * directory, so the pair can move together to another storage domain. */
static char *
relative_backing_name (const char *active, const char *base)
{
  g_autofree char *active_phys = sm_rebase_physical_path (active);
  g_autofree char *dir = g_path_get_dirname (active_phys);
  g_autofree char *base_phys = sm_rebase_physical_path (base);

  return sm_rebase_relative_path (dir, base_phys);
}

static const char *const step_names[] = {
  [SM_REBASE_STEP_STREAM] = "block-stream",
  [SM_REBASE_STEP_WAIT] = "wait",
  [SM_REBASE_STEP_VERIFY] = "verify",
};
G_STATIC_ASSERT (G_N_ELEMENTS (step_names) == SM_REBASE_STEP_LAST);

const char *
sm_rebase_step_kind_to_string (SmRebaseStepKind kind)
{
  return (unsigned) kind < SM_REBASE_STEP_LAST ? step_names[kind] : NULL;
}

/* The disk's chain as plan data (copies of the view's layers). */
static GPtrArray *
chain_from_disk (const SmBlockDisk *disk)
{
  GPtrArray *chain = g_ptr_array_new_with_free_func (layer_free);
  guint i;

  for (i = 0; i < disk->chain->len; i++) {
    const SmBlockLayer *bl = disk->chain->pdata[i];
    SmRebaseLayer *l = g_new0 (SmRebaseLayer, 1);

    l->filename = g_strdup (bl->filename);
    l->format = g_strdup (bl->format);
    l->node_name = g_strdup (bl->node_name);
    l->backing_name = g_strdup (bl->backing_file);
    g_ptr_array_add (chain, l);
  }
  return chain;
}

SmRebasePlan *
sm_rebase_plan (const SmBlockVm *vm, const char *disk, const char *base,
                uint64_t speed, GError **error)
{
  g_autoptr(SmRebasePlan) plan = g_new0 (SmRebasePlan, 1);
  g_autoptr(json_object) args = NULL;
  const SmBlockDisk *bd;
  const SmBlockJob *job;
  const SmRebaseLayer *active, *base_layer = NULL;
  guint i;

  plan->disk = g_strdup (disk);
  plan->speed = speed;
  plan->base_index = -1;
  plan->expected = g_ptr_array_new_with_free_func (g_free);
  bd = sm_block_vm_find_disk (vm, disk);
  if (!bd) {
    g_autofree char *names = sm_block_vm_disk_names (vm);

    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "disk %s: no such disk in the VM (its disks: %s)", disk,
                 *names ? names : "none");
    return NULL;
  }
  if (bd->chain->len == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "disk %s: no medium inserted", disk);
    return NULL;
  }
  plan->chain = chain_from_disk (bd);
  active = g_ptr_array_index (plan->chain, 0);
  /* A -drive disk has a drive name block-stream accepts; a -blockdev one
   * only its node name. */
  plan->device = g_strdup (bd->device ? bd->device : bd->node_name);
  if (!plan->device) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "disk %s: QEMU reports neither a drive name nor a node name",
                 disk);
    return NULL;
  }
  plan->job_id = sm_block_job_id ("snapmig-rebase-", disk);
  /* A job QEMU names by the disk's device (one started without job-id: a
   * mirror, a commit) holds the disk; QEMU would refuse block-stream. */
  job = sm_block_find_job (vm->jobs, plan->device);
  if (job) {
    sm_error_set_with_object (error, SM_ERROR_BUSY, disk,
                 "disk %s: a %s block job (%s) is running on it; wait for it "
                 "to end or cancel it, then rebase", disk,
                 job->type ? job->type : "", job->id);
    return NULL;
  }
  job = sm_block_find_job (vm->jobs, plan->job_id);
  plan->job_running = job != NULL;

  if (base) {
    g_autofree char *chain_str = sm_rebase_chain_to_string (plan->chain);

    plan->base_index = find_layer (plan->chain, base);
    if (plan->base_index == 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "disk %s: %s is the active layer, not a backing image "
                   "(chain: %s)", disk, base, chain_str);
      return NULL;
    }
    if (plan->base_index < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                   "disk %s: %s is not in its backing chain (chain: %s)",
                   disk, base, chain_str);
      return NULL;
    }
    base_layer = g_ptr_array_index (plan->chain, plan->base_index);
    plan->backing_file = relative_backing_name (active->filename,
                                                base_layer->filename);
  }
  g_ptr_array_add (plan->expected, g_strdup (active->filename));
  if (base_layer)
    for (i = (guint) plan->base_index; i < plan->chain->len; i++)
      g_ptr_array_add (plan->expected, g_strdup (
        ((SmRebaseLayer *) g_ptr_array_index (plan->chain, i))->filename));

  /* Nothing above the base to merge: no job (block-stream would run one
   * that copies nothing but still rewrites the header). */
  if ((base_layer && plan->base_index == 1) ||
      (!base_layer && plan->chain->len == 1)) {
    sm_debug (DOMAIN, "disk %s: nothing to merge", disk);
    g_free (plan->backing_file);
    plan->backing_file = g_strdup (active->backing_name);
  } else {
    /* base-node when QEMU's node list singles the base out; otherwise the
     * file name, which QEMU resolves within this disk's chain only. */
    args = sm_qmp_args (error,
                        "s:device", plan->device,
                        "s:job-id", plan->job_id,
                        "S:base-node", base_layer ? base_layer->node_name
                                                  : NULL,
                        "S:base", base_layer && !base_layer->node_name
                                  ? base_layer->filename : NULL,
                        "S:backing-file", plan->backing_file,
                        "P:speed", speed,
                        NULL);
    if (!args)
      return NULL;
    plan->command = json_object_new_object ();
    json_object_object_add (plan->command, "execute",
                            json_object_new_string ("block-stream"));
    json_object_object_add (plan->command, "arguments",
                            g_steal_pointer (&args));
  }
  /* The steps.  A job already running (an earlier snapmig was killed) is
   * waited for, not started again: its own journal says what it merges. */
  if (plan->job_running) {
    plan->steps[plan->n_steps++] = SM_REBASE_STEP_WAIT;
    plan->steps[plan->n_steps++] = SM_REBASE_STEP_VERIFY;
  } else if (plan->command) {
    plan->steps[plan->n_steps++] = SM_REBASE_STEP_STREAM;
    plan->steps[plan->n_steps++] = SM_REBASE_STEP_WAIT;
    plan->steps[plan->n_steps++] = SM_REBASE_STEP_VERIFY;
  }
  return g_steal_pointer (&plan);
}
json_object *
sm_rebase_result_json (const SmRebasePlan *plan)
{
  json_object *obj = json_object_new_object ();

  json_object_object_add (obj, "disk", json_object_new_string (plan->disk));
  json_object_object_add (obj, "backing-file",
                          sm_report_string_or_null (plan->backing_file));
  json_object_object_add (obj, "merged",
                          json_object_new_boolean (plan->n_steps > 0));
  return obj;
}

json_object *
sm_rebase_plan_to_json (const SmRebasePlan *plan)
{
  json_object *obj = json_object_new_object ();
  json_object *chain = json_object_new_array ();
  json_object *merged = json_object_new_array ();
  guint i;

  for (i = 0; i < plan->chain->len; i++) {
    const SmRebaseLayer *l = g_ptr_array_index (plan->chain, i);
    json_object *lo = json_object_new_object ();

    json_object_object_add (lo, "filename", json_object_new_string (l->filename));
    json_object_object_add (lo, "format", json_object_new_string (l->format));
    json_object_object_add (lo, "node-name", l->node_name
                            ? json_object_new_string (l->node_name) : NULL);
    json_object_object_add (lo, "backing-name", l->backing_name
                            ? json_object_new_string (l->backing_name) : NULL);
    json_object_array_add (chain, lo);
    if (plan->command && i > 0 &&
        (plan->base_index < 0 || (int) i < plan->base_index))
      json_object_array_add (merged, json_object_new_string (l->filename));
  }
  json_object_object_add (obj, "disk", json_object_new_string (plan->disk));
  json_object_object_add (obj, "device", json_object_new_string (plan->device));
  json_object_object_add (obj, "job-id", json_object_new_string (plan->job_id));
  json_object_object_add (obj, "chain", chain);
  if (plan->base_index >= 0) {
    const SmRebaseLayer *b = g_ptr_array_index (plan->chain,
                                                (guint) plan->base_index);

    json_object_object_add (obj, "base", json_object_new_string (b->filename));
  } else
    json_object_object_add (obj, "base", NULL);
  json_object_object_add (obj, "backing-file", plan->backing_file
                          ? json_object_new_string (plan->backing_file) : NULL);
  json_object_object_add (obj, "speed", json_object_new_uint64 (plan->speed));
  json_object_object_add (obj, "merged", merged);
  json_object_object_add (obj, "expected-chain", json_object_new_array ());
  for (i = 0; plan->expected && i < plan->expected->len; i++)
    json_object_array_add (sm_json_get_array (obj, "expected-chain"),
                           json_object_new_string (plan->expected->pdata[i]));
  json_object_object_add (obj, "job-running",
                          json_object_new_boolean (plan->job_running));
  json_object_object_add (obj, "steps", json_object_new_array ());
  for (i = 0; i < plan->n_steps; i++)
    json_object_array_add (sm_json_get_array (obj, "steps"),
                           json_object_new_string (
                             sm_rebase_step_kind_to_string (plan->steps[i])));
  json_object_object_add (obj, "command", plan->command
                          ? json_object_get (plan->command) : NULL);
  return obj;
}

static bool
job_end_matches (json_object *event, void *opaque)
{
  const char *job_id = opaque;
  const char *name = sm_json_get_string (event, "event");
  json_object *data = sm_json_get_object (event, "data");
  const char *device = sm_json_get_string (data, "device");

  return name && device && strcmp (device, job_id) == 0 &&
         (strcmp (name, "BLOCK_JOB_COMPLETED") == 0 ||
          strcmp (name, "BLOCK_JOB_CANCELLED") == 0);
}

/* ---- the disk's chain, as file names ---------------------------------- */

static char *
files_to_string (const GPtrArray *files)
{
  GString *s = g_string_new (NULL);
  guint i;

  for (i = files->len; i > 0; i--)
    g_string_append_printf (s, "%s%s", i != files->len ? " <- " : "",
                            (const char *) files->pdata[i - 1]);
  return g_string_free (s, false);
}

static bool
same_files (const GPtrArray *a, const GPtrArray *b)
{
  guint i;

  if (a->len != b->len)
    return false;
  for (i = 0; i < a->len; i++)
    if (strcmp (a->pdata[i], b->pdata[i]) != 0)
      return false;
  return true;
}

static GPtrArray *
plan_files (const GPtrArray *chain)
{
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  guint i;

  for (i = 0; i < chain->len; i++)
    g_ptr_array_add (files, g_strdup (
      ((const SmRebaseLayer *) g_ptr_array_index ((GPtrArray *) chain, i))
        ->filename));
  return files;
}

static GPtrArray *
json_files (json_object *array)
{
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  size_t i;

  for (i = 0; array && i < json_object_array_length (array); i++) {
    json_object *e = json_object_array_get_idx (array, i);
    const char *f = json_object_is_type (e, json_type_string)
      ? json_object_get_string (e) : sm_json_get_string (e, "filename");

    if (f)
      g_ptr_array_add (files, g_strdup (f));
  }
  return files;
}

/* The files of DISK's chain in QEMU now (query-block), top first. */
static GPtrArray *
query_files (SmQmp *qmp, const char *disk, GError **error)
{
  g_autoptr(GPtrArray) disks = sm_block_query_disks (qmp, error);
  g_autoptr(SmBlockVm) vm = g_new0 (SmBlockVm, 1);
  const SmBlockDisk *bd;
  GPtrArray *files;
  guint i;

  if (!disks) {
    g_prefix_error (error, "disk %s: ", disk);
    return NULL;
  }
  vm->disks = g_steal_pointer (&disks);
  bd = sm_block_vm_find_disk (vm, disk);
  if (!bd) {
    g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                 "disk %s: no longer in the VM", disk);
    return NULL;
  }
  files = g_ptr_array_new_with_free_func (g_free);
  for (i = 0; i < bd->chain->len; i++)
    g_ptr_array_add (files, g_strdup (
      ((const SmBlockLayer *) bd->chain->pdata[i])->filename));
  return files;
}

/* Checks what a user relies on after the job: QEMU's chain is EXPECTED, and
 * the header of the active image ACTIVE (format FORMAT) on disk names the
 * base by BACKING_FILE, with its format stated. */
static bool
verify (SmQmp *qmp, const char *disk, const GPtrArray *expected,
        const char *active, const char *format, const char *backing_file,
        GError **error)
{
  g_autoptr(GPtrArray) now = query_files (qmp, disk, error);
  g_autoptr(SmImageInfo) info = NULL;

  if (!now)
    return false;
  if (!same_files (now, expected)) {
    g_autofree char *want = files_to_string (expected);
    g_autofree char *got = files_to_string (now);

    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "disk %s: block-stream finished but the chain is %s, "
                 "expected %s", disk, got, want);
    return false;
  }
  if (g_strcmp0 (format, "qcow2") != 0)
    return true;
  info = sm_image_probe (active, SM_IMAGE_FORMAT_QCOW2, error);
  if (!info) {
    g_prefix_error (error, "disk %s: ", disk);
    return false;
  }
  if (g_strcmp0 (info->backing_file, backing_file) != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "disk %s: %s names backing file %s%s%s, expected %s%s%s",
                 disk, active,
                 info->backing_file ? "'" : "",
                 info->backing_file ? info->backing_file : "none",
                 info->backing_file ? "'" : "",
                 backing_file ? "'" : "",
                 backing_file ? backing_file : "none",
                 backing_file ? "'" : "");
    return false;
  }
  if (backing_file && !info->backing_format) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "disk %s: %s names backing file '%s' without its format",
                 disk, active, backing_file);
    return false;
  }
  return true;
}

/* ---- recover --------------------------------------------------------- */

static bool
journal_has_phase (json_object *records, const char *phase)
{
  size_t i;

  for (i = 1; i < json_object_array_length (records); i++)
    if (g_strcmp0 (sm_json_get_string (json_object_array_get_idx (records, i),
                                       "op-phase"), phase) == 0)
      return true;
  return false;
}

/* "after step 2 (wait)", from the journal's last step record. */
static char *
last_step (json_object *records)
{
  size_t n = json_object_array_length (records);
  size_t i;

  for (i = n; i > 1; i--) {
    json_object *rec = json_object_array_get_idx (records, i - 1);
    int64_t step;

    if (sm_json_get_int64 (rec, "step", &step))
      return g_strdup_printf ("at step %" G_GINT64_FORMAT " (%s, %s)", step,
                              sm_json_get_string (rec, "kind"),
                              sm_json_get_string (rec, "phase"));
  }
  return g_strdup ("before its first step");
}

static void
remove_journal (const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);

  if (unlink (path) == 0)
    sm_state_fsync_dir (dir, NULL);
}

char *
sm_rebase_recover (SmQmp *qmp, SmVmState *st, const char *path,
                   json_object *records, GError **error)
{
  json_object *header = json_object_array_get_idx (records, 0);
  json_object *planj = sm_json_get_object (header, "plan");
  const char *disk = sm_json_get_string (planj, "disk");
  const char *job_id = sm_json_get_string (planj, "job-id");
  const char *backing_file = sm_json_get_string (planj, "backing-file");
  g_autoptr(GPtrArray) old = json_files (sm_json_get_array (planj, "chain"));
  g_autoptr(GPtrArray) expected =
    json_files (sm_json_get_array (planj, "expected-chain"));
  g_autoptr(GPtrArray) jobs = NULL;
  g_autoptr(GPtrArray) now = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *where = last_step (records);
  g_autofree char *now_str = NULL;
  const SmBlockJob *job;
  json_object *first;

  (void) st;
  if (!disk || !job_id || old->len == 0 || expected->len == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "journal %s: a rebase journal without its plan; kept for "
                 "you to read (the disk runs on whatever 'snapmig disks' "
                 "shows; remove the journal once you have checked it)", path);
    return NULL;
  }
  if (journal_has_phase (records, "done") ||
      journal_has_phase (records, "cancelled")) {
    remove_journal (path);
    return g_strdup_printf ("rebase of disk %s had ended; journal removed",
                            disk);
  }
  if (!qmp) {
    remove_journal (path);
    return g_strdup_printf ("rebase of disk %s, interrupted %s: QEMU is "
                            "gone; the images hold one complete chain (QEMU "
                            "writes the new backing name only when the job "
                            "completes); journal removed", disk, where);
  }
  jobs = sm_block_query_jobs (qmp, error);
  if (!jobs)
    return NULL;
  job = sm_block_find_job (jobs, job_id);
  if (job)
    return g_strdup_printf ("rebase of disk %s is still running in QEMU (job "
                            "%s, %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                            " bytes); the disk runs on its old chain until it "
                            "ends: run 'snapmig rebase' again to wait for it; "
                            "journal %s kept", disk, job_id, job->offset,
                            job->len, path);
  now = query_files (qmp, disk, &err);
  if (!now) {
    remove_journal (path);
    return g_strdup_printf ("rebase of disk %s, interrupted %s: %s; journal "
                            "removed", disk, where, err->message);
  }
  now_str = files_to_string (now);
  first = sm_json_get_array (planj, "chain")
    ? json_object_array_get_idx (sm_json_get_array (planj, "chain"), 0) : NULL;
  if (same_files (now, expected) && !same_files (now, old)) {
    g_autofree char *problem = NULL;

    if (!verify (qmp, disk, expected, expected->pdata[0],
                 sm_json_get_string (first, "format"), backing_file, &err))
      problem = g_strdup_printf (" (but %s)", err->message);
    remove_journal (path);
    return g_strdup_printf ("rebase of disk %s, interrupted %s, had finished: "
                            "the disk runs on %s%s; journal removed", disk,
                            where, now_str, problem ? problem : "");
  }
  remove_journal (path);
  if (same_files (now, old))
    return g_strdup_printf ("rebase of disk %s, interrupted %s, did not "
                            "finish: the disk runs on its old chain %s; run "
                            "'snapmig rebase' again; journal removed", disk,
                            where, now_str);
  return g_strdup_printf ("rebase of disk %s, interrupted %s: the disk now "
                          "runs on %s (changed by something else); journal "
                          "removed", disk, where, now_str);
}

/* ---- execute --------------------------------------------------------- */

/* Test hook SNAPMIG_TEST_REBASE_SIGNAL=N:SIG (see rebase.h). */
static void
test_signal_hook (guint record)
{
  const char *s = g_getenv ("SNAPMIG_TEST_REBASE_SIGNAL");
  const char *colon;

  if (!s || (guint) atoi (s) != record || !(colon = strchr (s, ':')))
    return;
  raise (atoi (colon + 1));
}

typedef struct {
  SmQmp *qmp;
  const SmRebasePlan *plan;
  SmJournal *journal;
  guint records;               /* step records written (the test hook) */
  GPtrArray *old;              /* char *: the chain before */
  GPtrArray *expected;         /* char *: the chain after */
  const char *backing_file;    /* the name the active image gets */
  GPtrArray *taken;            /* char *: journals of earlier runs of the
                                  same job, removed once it is over */
} Run;

static bool
journal_step (Run *r, guint index, const char *phase, const GError *err,
              GError **error)
{
  json_object *rec = json_object_new_object ();

  json_object_object_add (rec, "step", json_object_new_int ((int) index + 1));
  json_object_object_add (rec, "kind", json_object_new_string (
    sm_rebase_step_kind_to_string (r->plan->steps[index])));
  json_object_object_add (rec, "disk", json_object_new_string (r->plan->disk));
  json_object_object_add (rec, "phase", json_object_new_string (phase));
  if (err)
    json_object_object_add (rec, "error",
                            json_object_new_string (err->message));
  if (!sm_journal_append (r->journal, rec, error))
    return false;
  r->records++;
  test_signal_hook (r->records);
  return true;
}

/* Ends the journal: the job is over and the disk on one complete chain. */
static void
journal_close (Run *r, const char *phase)
{
  guint i;

  if (!r->journal)
    return;
  sm_journal_append (r->journal, phase_record (phase), NULL);
  sm_journal_finish (g_steal_pointer (&r->journal), NULL);
  for (i = 0; r->taken && i < r->taken->len; i++)
    remove_journal (r->taken->pdata[i]);
}

/* Waits for the job's end event, polling for progress.  True with *EVENT
 * (NULL when the job vanished without one) once the job is over; false on
 * the deadline (SM_ERROR_TIMEOUT), an interruption (SM_ERROR_INTERRUPTED)
 * or a QMP failure. */
static bool
wait_job (Run *r, gint64 deadline_us, SmRebaseProgressFunc progress,
          void *opaque, json_object **event, GError **error)
{
  const SmRebasePlan *plan = r->plan;

  *event = NULL;
  for (;;) {
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) jobs = NULL;
    const SmBlockJob *job;
    int wait_ms = POLL_MS;

    if (sm_interrupt_check (error)) {
      g_prefix_error (error, "disk %s: ", plan->disk);
      return false;
    }
    if (deadline_us) {
      gint64 left_ms = (deadline_us - g_get_monotonic_time ()) / 1000;

      if (left_ms <= 0) {
        g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                     "disk %s: block-stream did not finish in time",
                     plan->disk);
        return false;
      }
      wait_ms = (int) MIN (left_ms, (gint64) POLL_MS);
    }
    *event = sm_qmp_wait_event (r->qmp, NULL, job_end_matches, plan->job_id,
                                wait_ms, &err);
    if (*event)
      return true;
    if (!g_error_matches (err, SM_ERROR, SM_ERROR_TIMEOUT)) {
      g_propagate_prefixed_error (error, g_steal_pointer (&err), "disk %s: ",
                                  plan->disk);
      return false;
    }
    jobs = sm_block_query_jobs (r->qmp, error);
    if (!jobs) {
      g_prefix_error (error, "disk %s: ", plan->disk);
      return false;
    }
    job = sm_block_find_job (jobs, plan->job_id);
    if (!job) {
      /* Ended between the two: its event is queued by now, or was
       * consumed by someone else (another client dismissed it). */
      *event = sm_qmp_wait_event (r->qmp, NULL, job_end_matches,
                                  plan->job_id, 0, NULL);
      return true;
    }
    if (progress)
      progress (plan, job->offset, job->len, opaque);
  }
}

/* Stops the job (block-job-cancel, which leaves the chain as it was: a
 * stream changes the chain only when it completes) and waits until it is
 * gone.  Runs with any interruption request set aside, so that the cancel
 * and its wait are not cut short by the very signal that asked for them;
 * the request is restored afterwards. */
static bool
stop_job (Run *r, GError **error)
{
  int sig = sm_interrupt_set_aside ();
  g_autoptr(GPtrArray) jobs = NULL;
  g_autoptr(GError) err = NULL;
  bool ok = true;

  jobs = sm_block_query_jobs (r->qmp, &err);
  if (jobs && sm_block_find_job (jobs, r->plan->job_id)) {
    if (!sm_qmp_run (r->qmp, "block-job-cancel",
                     sm_qmp_args (NULL, "s:device", r->plan->job_id,
                                  "b:force", true, NULL), &err)) {
      /* It may have ended between the query and the cancel. */
      g_autoptr(GPtrArray) again = sm_block_query_jobs (r->qmp, NULL);

      ok = again && !sm_block_find_job (again, r->plan->job_id);
    } else
      ok = sm_block_job_wait_gone (r->qmp, r->plan->job_id, CANCEL_WAIT_MS,
                                   &err);
  } else if (!jobs)
    ok = false;
  if (!ok)
    g_propagate_prefixed_error (error, g_steal_pointer (&err),
                                "disk %s: cancelling block-stream job %s: ",
                                r->plan->disk, r->plan->job_id);
  sm_interrupt_restore (sig);
  return ok;
}

/* After the wait failed with CAUSE (consumed: a timeout, an interruption,
 * QEMU gone...): stops the job and says where the disk runs.  Returns true
 * when the job had completed anyway and the result verified (a timeout is
 * then no failure); false with ERROR otherwise.  The journal is closed when
 * the job is known to be over, kept when it may still run. */
static bool
abandon (Run *r, guint step, GError *cause, GError **error)
{
  g_autoptr(GError) why = cause;
  g_autoptr(GError) err = NULL;
  g_autoptr(GPtrArray) now = NULL;
  g_autofree char *now_str = NULL;
  const SmRebasePlan *plan = r->plan;
  int sig;
  const char *active = r->expected->pdata[0];
  const char *format =
    ((const SmRebaseLayer *) g_ptr_array_index (plan->chain, 0))->format;
  bool completed;

  if (g_error_matches (why, SM_ERROR, SM_ERROR_DISCONNECTED)) {
    /* QEMU is gone: the images hold the old chain or the new one. */
    journal_step (r, step, "failed", why, NULL);
    journal_close (r, "qemu-gone");
    g_set_error (error, SM_ERROR, why->code, "%s; the images hold one "
                 "complete chain (the old one unless the job had completed; "
                 "QEMU writes the new backing name only then)", why->message);
    return false;
  }
  if (!stop_job (r, &err)) {
    journal_step (r, step, "failed", why, NULL);
    sm_journal_free (g_steal_pointer (&r->journal));
    g_set_error (error, SM_ERROR, why->code, "%s; %s; the job may still "
                 "run: run 'snapmig rebase' again to wait for it, or "
                 "'snapmig recover'", why->message, err->message);
    return false;
  }
  sig = sm_interrupt_set_aside ();
  now = query_files (r->qmp, plan->disk, &err);
  sm_interrupt_restore (sig);
  if (!now) {
    journal_step (r, step, "failed", why, NULL);
    sm_journal_free (g_steal_pointer (&r->journal));
    g_set_error (error, SM_ERROR, why->code, "%s; %s", why->message,
                 err->message);
    return false;
  }
  now_str = files_to_string (now);
  completed = same_files (now, r->expected) && !same_files (now, r->old);
  journal_step (r, step, "failed", why, NULL);
  if (completed) {
    g_autoptr(GError) verr = NULL;
    bool verified;

    sig = sm_interrupt_set_aside ();
    verified = verify (r->qmp, plan->disk, r->expected, active, format,
                       r->backing_file, &verr);
    sm_interrupt_restore (sig);
    journal_close (r, "done");
    if (!verified) {
      g_propagate_error (error, g_steal_pointer (&verr));
      return false;
    }
    if (g_error_matches (why, SM_ERROR, SM_ERROR_TIMEOUT))
      return true;
    g_set_error (error, SM_ERROR, why->code, "%s; the rebase had already "
                 "completed: the disk runs on %s", why->message, now_str);
    return false;
  }
  journal_close (r, "cancelled");
  if (g_error_matches (why, SM_ERROR, SM_ERROR_TIMEOUT)) {
    g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                 "disk %s: block-stream did not finish in time; job "
                 "cancelled, the chain is unchanged (%s)", plan->disk,
                 now_str);
    return false;
  }
  g_set_error (error, SM_ERROR, why->code, "%s; the block-stream job was "
               "cancelled: the disk runs on %s chain %s", why->message,
               same_files (now, r->old) ? "its old" : "the", now_str);
  return false;
}

/* Earlier runs' journals of this disk's rebase (same job id): taken over
 * when the plan waits for their job, finished by sm_rebase_recover
 * otherwise.  Sets *ADOPTED (new reference) to the first taken-over
 * journal's plan. */
static bool
earlier_journals (Run *r, SmVmState *st, json_object **adopted,
                  GError **error)
{
  g_auto(GStrv) paths = sm_journal_list (sm_vm_state_journal_dir (st),
                                         error);
  size_t i;

  if (!paths)
    return false;
  for (i = 0; paths[i]; i++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) records = sm_journal_load (paths[i], &err);
    json_object *header, *planj;
    g_autofree char *msg = NULL;

    if (!records || json_object_array_length (records) == 0)
      continue;                /* recover's to judge */
    header = json_object_array_get_idx (records, 0);
    planj = sm_json_get_object (header, "plan");
    if (g_strcmp0 (sm_json_get_string (header, "op"), "rebase") != 0 ||
        g_strcmp0 (sm_json_get_string (planj, "job-id"), r->plan->job_id)
        != 0)
      continue;
    if (r->plan->job_running) {
      if (!*adopted)
        *adopted = json_object_get (planj);
      g_ptr_array_add (r->taken, g_strdup (paths[i]));
      continue;
    }
    msg = sm_rebase_recover (r->qmp, st, paths[i], records, error);
    if (!msg)
      return false;
    sm_debug (DOMAIN, "%s", msg);
  }
  return true;
}

bool
sm_rebase_execute (SmQmp *qmp, const SmRebasePlan *plan,
                   const char *state_dir, unsigned timeout_s,
                   SmRebaseProgressFunc progress, void *opaque,
                   GError **error)
{
  g_autoptr(SmVmState) st = NULL;
  g_autoptr(GPtrArray) now = NULL;
  g_autoptr(GPtrArray) jobs = NULL;
  g_autoptr(GPtrArray) old = plan_files (plan->chain);
  g_autoptr(GPtrArray) expected = NULL;
  g_autoptr(GPtrArray) taken = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(json_object) adopted = NULL;
  g_autoptr(json_object) header = NULL;
  g_autoptr(SmJournal) journal = NULL;
  g_autofree char *opid = NULL;
  Run r = { qmp, plan, NULL, 0, old, NULL, NULL, taken };
  gint64 deadline_us = 0;
  guint i;

  st = sm_vm_state_open (state_dir, sm_qmp_address (qmp), error);
  if (!st || !sm_vm_state_lock (st, error))
    return false;

  /* Another tool may have changed the chain between plan and lock. */
  now = query_files (qmp, plan->disk, error);
  if (!now)
    return false;
  if (!same_files (now, old)) {
    g_autofree char *got = files_to_string (now);
    g_autofree char *want = files_to_string (old);

    g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
                 "disk %s: backing chain changed since it was planned "
                 "(now %s, planned %s)", plan->disk, got, want);
    return false;
  }
  jobs = sm_block_query_jobs (qmp, error);
  if (!jobs)
    return false;
  if ((sm_block_find_job (jobs, plan->job_id) != NULL) != plan->job_running) {
    g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
                 "disk %s: rebase job %s %s since it was planned; plan again",
                 plan->disk, plan->job_id,
                 plan->job_running ? "ended" : "started");
    return false;
  }
  if (!earlier_journals (&r, st, &adopted, error))
    return false;
  if (plan->n_steps == 0)
    return true;

  /* What the job makes of the chain: the plan's, or for a job an earlier
   * run started, what that run planned. */
  if (adopted) {
    expected = json_files (sm_json_get_array (adopted, "expected-chain"));
    r.backing_file = sm_json_get_string (adopted, "backing-file");
  } else {
    expected = g_ptr_array_new_with_free_func (g_free);
    for (i = 0; i < plan->expected->len; i++)
      g_ptr_array_add (expected, g_strdup (plan->expected->pdata[i]));
    r.backing_file = plan->backing_file;
  }
  if (expected->len == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "disk %s: the journal of rebase job %s has no plan; see "
                 "'snapmig recover'", plan->disk, plan->job_id);
    return false;
  }
  r.expected = expected;

  opid = sm_journal_new_opid ();
  header = json_object_new_object ();
  json_object_object_add (header, "op", json_object_new_string ("rebase"));
  json_object_object_add (header, "opid", json_object_new_string (opid));
  json_object_object_add (header, "plan", adopted ? json_object_get (adopted)
                          : sm_rebase_plan_to_json (plan));
  journal = sm_journal_create (sm_vm_state_journal_dir (st), opid,
                               g_steal_pointer (&header), error);
  if (!journal)
    return false;
  r.journal = g_steal_pointer (&journal);

  if (timeout_s > 0)
    deadline_us = g_get_monotonic_time () + (gint64) timeout_s * G_USEC_PER_SEC;
  for (i = 0; i < plan->n_steps; i++) {
    g_autoptr(json_object) event = NULL;
    GError *err = NULL;
    json_object *data;

    if (!journal_step (&r, i, "begin", NULL, &err))
      return abandon (&r, i, err, error);
    switch (plan->steps[i]) {
    case SM_REBASE_STEP_STREAM:
      if (sm_interrupt_check (&err)) {
        /* Nothing started: the chain is as it was. */
        journal_step (&r, i, "failed", err, NULL);
        journal_close (&r, "cancelled");
        g_set_error (error, SM_ERROR, err->code, "disk %s: %s; nothing was "
                     "started, the disk runs on its old chain", plan->disk,
                     err->message);
        g_error_free (err);
        return false;
      }
      sm_debug (DOMAIN, "disk %s: streaming into %s", plan->disk,
                (const char *) old->pdata[0]);
      if (!sm_qmp_run (qmp, "block-stream",
                       json_object_get (sm_json_get_object (plan->command,
                                                            "arguments")),
                       &err)) {
        g_prefix_error (&err, "disk %s: ", plan->disk);
        if (g_error_matches (err, SM_ERROR, SM_ERROR_QMP)) {
          /* QEMU refused: no job. */
          journal_step (&r, i, "failed", err, NULL);
          journal_close (&r, "cancelled");
          g_propagate_error (error, err);
          return false;
        }
        return abandon (&r, i, err, error);
      }
      break;
    case SM_REBASE_STEP_WAIT:
      if (!wait_job (&r, deadline_us, progress, opaque, &event, &err))
        return abandon (&r, i, err, error);
      data = sm_json_get_object (event, "data");
      if (event && strcmp (sm_json_get_string (event, "event"),
                           "BLOCK_JOB_CANCELLED") == 0) {
        g_set_error (&err, SM_ERROR, SM_ERROR_FAILED,
                     "disk %s: block-stream job %s was cancelled by someone "
                     "else; the chain is unchanged", plan->disk,
                     plan->job_id);
        journal_step (&r, i, "failed", err, NULL);
        journal_close (&r, "cancelled");
        g_propagate_error (error, err);
        return false;
      }
      if (sm_json_get_string (data, "error")) {
        g_set_error (&err, SM_ERROR, SM_ERROR_QMP,
                     "disk %s: block-stream failed: %s; the chain is "
                     "unchanged", plan->disk,
                     sm_json_get_string (data, "error"));
        journal_step (&r, i, "failed", err, NULL);
        journal_close (&r, "cancelled");
        g_propagate_error (error, err);
        return false;
      }
      if (progress && event) {
        uint64_t len = 0;

        sm_json_get_uint64 (data, "len", &len);
        progress (plan, len, len, opaque);
      }
      break;
    case SM_REBASE_STEP_VERIFY:
      if (!verify (qmp, plan->disk, expected, expected->pdata[0],
                   ((const SmRebaseLayer *) g_ptr_array_index (plan->chain,
                                                               0))->format,
                   r.backing_file, &err)) {
        journal_step (&r, i, "failed", err, NULL);
        journal_close (&r, "done");
        g_propagate_error (error, err);
        return false;
      }
      break;
    case SM_REBASE_STEP_LAST:
    default:
      g_assert_not_reached ();
    }
    if (!journal_step (&r, i, "end", NULL, &err)) {
      if (plan->steps[i] == SM_REBASE_STEP_VERIFY) {
        journal_close (&r, "done");
        g_propagate_error (error, err);
        return false;
      }
      return abandon (&r, i, err, error);
    }
  }
  journal_close (&r, "done");
  /* A signal that came during the last step: the work is done, but the
   * command was asked to stop; say so. */
  if (sm_interrupt_check (error)) {
    g_autofree char *str = files_to_string (expected);

    g_prefix_error (error, "disk %s: ", plan->disk);
    g_prefix_error (error, "the rebase completed (the disk runs on %s), but ",
                    str);
    return false;
  }
  return true;
}
