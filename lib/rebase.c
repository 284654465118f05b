/* libsnapmig — rebase a running disk's chain with block-stream (rebase.h). */
#include "rebase.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blockjob.h"
#include "image.h"
#include "json-util.h"
#include "state.h"

#define DOMAIN "rebase"

/* How often query-block-jobs is asked for the job's offset while waiting:
 * QEMU sends no progress events, and a person wants the bar to move. */
#define POLL_MS 200

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

/* True if query-block entry ENTRY is the disk the user calls NAME: its
 * drive name, its qdev id (QEMU reports the id when the device has one, its
 * QOM path otherwise) or its active node's name. */
static bool
entry_is_disk (json_object *entry, const char *name)
{
  const char *device = sm_json_get_string (entry, "device");
  const char *qdev = sm_json_get_string (entry, "qdev");
  json_object *inserted = sm_json_get_object (entry, "inserted");
  const char *node = sm_json_get_string (inserted, "node-name");

  if ((device && *device && strcmp (device, name) == 0) ||
      (qdev && *qdev && strcmp (qdev, name) == 0) ||
      (node && strcmp (node, name) == 0))
    return true;
  /* A device given an id shows as "/machine/peripheral/ID" (virtio-blk:
   * ".../ID/virtio-backend"); people know it by ID. */
  if (qdev && g_str_has_prefix (qdev, "/machine/peripheral/")) {
    const char *id = qdev + strlen ("/machine/peripheral/");
    size_t n = strlen (name);

    return strncmp (id, name, n) == 0 &&
           (id[n] == '\0' || strcmp (id + n, "/virtio-backend") == 0);
  }
  return false;
}

static const char *
entry_display_name (json_object *entry)
{
  const char *device = sm_json_get_string (entry, "device");

  if (device && *device)
    return device;
  if (sm_json_get_string (entry, "qdev"))
    return sm_json_get_string (entry, "qdev");
  return "?";
}

/* Finds DISK in query-block; returns a new reference to its entry. */
static json_object *
query_disk (SmQmp *qmp, const char *disk, GError **error)
{
  g_autoptr(json_object) blocks = NULL;
  g_autoptr(GString) names = g_string_new (NULL);
  size_t i, n;

  blocks = sm_qmp_execute (qmp, "query-block", NULL, error);
  if (!blocks) {
    g_prefix_error (error, "disk %s: ", disk);
    return NULL;
  }
  if (!json_object_is_type (blocks, json_type_array)) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "disk %s: query-block did not return an array", disk);
    return NULL;
  }
  n = json_object_array_length (blocks);
  for (i = 0; i < n; i++) {
    json_object *entry = json_object_array_get_idx (blocks, i);

    if (entry_is_disk (entry, disk))
      return json_object_get (entry);
    g_string_append_printf (names, "%s%s", names->len ? ", " : "",
                            entry_display_name (entry));
  }
  g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
               "disk %s: no such disk in the VM at %s (its disks: %s)",
               disk, sm_qmp_address (qmp), names->len ? names->str : "none");
  return NULL;
}

/* The format node of QEMU's node list NODES that holds FILENAME as FORMAT,
 * or NULL when there is none or more than one (two disks may share a base
 * opened twice): then the plan names the base by file name instead, which
 * QEMU looks up within the disk's own chain. */
static const char *
find_node_name (json_object *nodes, const char *filename, const char *format)
{
  const char *found = NULL;
  size_t i, n;

  if (!nodes || !json_object_is_type (nodes, json_type_array))
    return NULL;
  n = json_object_array_length (nodes);
  for (i = 0; i < n; i++) {
    json_object *node = json_object_array_get_idx (nodes, i);
    const char *file = sm_json_get_string (node, "file");
    const char *drv = sm_json_get_string (node, "drv");
    const char *name = sm_json_get_string (node, "node-name");

    if (!file || !drv || !name || strcmp (file, filename) != 0 ||
        strcmp (drv, format) != 0)
      continue;
    if (found)
      return NULL;
    found = name;
  }
  return found;
}

/* QEMU names an image "json:{...}" once its runtime options no longer match
 * what its header says (for instance right after block-stream changed its
 * backing node).  The file underneath is still the same: take its name, so
 * that a layer keeps one name for comparisons and relative paths. */
static char *
plain_filename (const char *filename)
{
  g_autoptr(json_object) obj = NULL;
  const char *name;

  if (!g_str_has_prefix (filename, "json:"))
    return g_strdup (filename);
  obj = json_tokener_parse (filename + strlen ("json:"));
  name = sm_json_get_string (sm_json_get_object (obj, "file"), "filename");
  if (!name)
    name = sm_json_get_string (obj, "filename");
  return g_strdup (name ? name : filename);
}

/* Reads DISK's chain from query-block (image / backing-image) and names its
 * layers from query-named-block-nodes.  Sets *ENTRY_OUT (new reference) to
 * the disk's query-block entry when non-NULL. */
static GPtrArray *
query_chain (SmQmp *qmp, const char *disk, json_object **entry_out,
             GError **error)
{
  g_autoptr(json_object) entry = NULL;
  g_autoptr(json_object) nodes = NULL;
  g_autoptr(json_object) args = NULL;
  g_autoptr(GPtrArray) chain = g_ptr_array_new_with_free_func (layer_free);
  json_object *inserted, *image;

  entry = query_disk (qmp, disk, error);
  if (!entry)
    return NULL;
  inserted = sm_json_get_object (entry, "inserted");
  if (!inserted) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "disk %s: no medium inserted", disk);
    return NULL;
  }
  args = sm_qmp_args (error, "b:flat", true, NULL);
  if (!args)
    return NULL;
  nodes = sm_qmp_execute (qmp, "query-named-block-nodes",
                          g_steal_pointer (&args), error);
  if (!nodes) {
    g_prefix_error (error, "disk %s: ", disk);
    return NULL;
  }
  for (image = sm_json_get_object (inserted, "image"); image;
       image = sm_json_get_object (image, "backing-image")) {
    SmRebaseLayer *l;
    const char *filename = sm_json_get_string (image, "filename");
    const char *format = sm_json_get_string (image, "format");

    if (!filename || !format) {
      g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                   "disk %s: query-block gave a layer without filename or "
                   "format", disk);
      return NULL;
    }
    if (chain->len >= SM_IMAGE_CHAIN_MAX_DEPTH) {
      g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                   "disk %s: backing chain deeper than %d layers", disk,
                   SM_IMAGE_CHAIN_MAX_DEPTH);
      return NULL;
    }
    l = g_new0 (SmRebaseLayer, 1);
    l->filename = plain_filename (filename);
    l->format = g_strdup (format);
    l->backing_name =
      g_strdup (sm_json_get_string (image, "backing-filename"));
    if (chain->len == 0)
      l->node_name = g_strdup (sm_json_get_string (inserted, "node-name"));
    else
      l->node_name = g_strdup (find_node_name (nodes, l->filename, format));
    g_ptr_array_add (chain, l);
  }
  if (chain->len == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "disk %s: query-block gave no image", disk);
    return NULL;
  }
  if (entry_out)
    *entry_out = g_steal_pointer (&entry);
  return g_steal_pointer (&chain);
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
static char *
physical_path (const char *path)
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
  g_autofree char *active_phys = physical_path (active);
  g_autofree char *dir = g_path_get_dirname (active_phys);
  g_autofree char *base_phys = physical_path (base);

  return sm_rebase_relative_path (dir, base_phys);
}

SmRebasePlan *
sm_rebase_plan (SmQmp *qmp, const char *disk, const char *base,
                uint64_t speed, GError **error)
{
  g_autoptr(SmRebasePlan) plan = g_new0 (SmRebasePlan, 1);
  g_autoptr(json_object) entry = NULL;
  g_autoptr(json_object) args = NULL;
  const SmRebaseLayer *active, *base_layer = NULL;
  const char *device;

  plan->disk = g_strdup (disk);
  plan->speed = speed;
  plan->base_index = -1;
  plan->chain = query_chain (qmp, disk, &entry, error);
  if (!plan->chain)
    return NULL;
  active = g_ptr_array_index (plan->chain, 0);
  /* A -drive disk has a drive name block-stream accepts; a -blockdev one
   * only its node name. */
  device = sm_json_get_string (entry, "device");
  plan->device = g_strdup (device && *device ? device : active->node_name);
  if (!plan->device) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP_PROTOCOL,
                 "disk %s: QEMU reports neither a drive name nor a node name",
                 disk);
    return NULL;
  }
  plan->job_id = sm_block_job_id ("snapmig-rebase-", disk);

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

  /* Nothing above the base to merge: no job (block-stream would run one
   * that copies nothing but still rewrites the header). */
  if ((base_layer && plan->base_index == 1) ||
      (!base_layer && plan->chain->len == 1)) {
    sm_debug (DOMAIN, "disk %s: nothing to merge", disk);
    g_free (plan->backing_file);
    plan->backing_file = g_strdup (active->backing_name);
    return g_steal_pointer (&plan);
  }

  /* base-node when QEMU's node list singles the base out; otherwise the
   * file name, which QEMU resolves within this disk's chain only. */
  args = sm_qmp_args (error,
                      "s:device", plan->device,
                      "s:job-id", plan->job_id,
                      "S:base-node", base_layer ? base_layer->node_name : NULL,
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
  json_object_object_add (plan->command, "arguments", g_steal_pointer (&args));
  return g_steal_pointer (&plan);
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

/* Asks query-block-jobs for the job's offset and length; *FOUND false
 * when the job is not listed (it just ended: its event is on its way). */
static bool
poll_job (SmQmp *qmp, const SmRebasePlan *plan, uint64_t *done,
          uint64_t *total, bool *found, GError **error)
{
  g_autoptr(GPtrArray) jobs = sm_block_query_jobs (qmp, error);
  const SmBlockJob *job;

  if (!jobs) {
    g_prefix_error (error, "disk %s: ", plan->disk);
    return false;
  }
  job = sm_block_find_job (jobs, plan->job_id);
  *found = job != NULL;
  if (job) {
    *done = job->offset;
    *total = job->len;
  }
  return true;
}

/* Waits for the job's end event; returns it (new reference).  Polls for
 * progress in between.  On DEADLINE_US (monotonic, 0: none) returns NULL
 * with SM_ERROR_TIMEOUT. */
static json_object *
wait_job_end (SmQmp *qmp, const SmRebasePlan *plan, gint64 deadline_us,
              SmRebaseProgressFunc progress, void *opaque, GError **error)
{
  uint64_t done = 0, total = 0;

  for (;;) {
    g_autoptr(GError) err = NULL;
    json_object *event;
    int wait_ms = POLL_MS;
    bool found;

    if (deadline_us) {
      gint64 left_ms = (deadline_us - g_get_monotonic_time ()) / 1000;

      if (left_ms <= 0) {
        g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                     "disk %s: block-stream did not finish in time",
                     plan->disk);
        return NULL;
      }
      wait_ms = (int) MIN (left_ms, (gint64) POLL_MS);
    }
    event = sm_qmp_wait_event (qmp, NULL, job_end_matches, plan->job_id,
                               wait_ms, &err);
    if (event)
      return event;
    if (!g_error_matches (err, SM_ERROR, SM_ERROR_TIMEOUT)) {
      g_propagate_prefixed_error (error, g_steal_pointer (&err), "disk %s: ",
                                  plan->disk);
      return NULL;
    }
    if (!poll_job (qmp, plan, &done, &total, &found, error))
      return NULL;
    if (found && progress)
      progress (plan, done, total, opaque);
  }
}

/* After a timeout: cancels the job so that the VM is left as it was (a
 * cancelled stream keeps the chain; the data copied so far is still valid
 * guest data).  Returns the job's end event (new reference) or NULL. */
static json_object *
cancel_job (SmQmp *qmp, const SmRebasePlan *plan, GError **error)
{
  g_autoptr(json_object) args = sm_qmp_args (error, "s:device", plan->job_id,
                                             "b:force", true, NULL);

  if (!args)
    return NULL;
  if (!sm_qmp_run (qmp, "block-job-cancel", g_steal_pointer (&args), error)) {
    g_prefix_error (error, "disk %s: ", plan->disk);
    return NULL;
  }
  return sm_qmp_wait_event (qmp, NULL, job_end_matches, plan->job_id,
                            CANCEL_WAIT_MS, error);
}

static bool
same_chain (const GPtrArray *a, const GPtrArray *b)
{
  guint i;

  if (a->len != b->len)
    return false;
  for (i = 0; i < a->len; i++) {
    const SmRebaseLayer *la = g_ptr_array_index ((GPtrArray *) a, i);
    const SmRebaseLayer *lb = g_ptr_array_index ((GPtrArray *) b, i);

    if (strcmp (la->filename, lb->filename) != 0)
      return false;
  }
  return true;
}

/* Checks what a user relies on after the job: QEMU's chain is the active
 * layer over the base's own chain, and the header on disk names the base
 * by the planned relative name, with its format stated. */
static bool
verify (SmQmp *qmp, const SmRebasePlan *plan, GError **error)
{
  g_autoptr(GPtrArray) now = NULL;
  g_autoptr(GPtrArray) expected = g_ptr_array_new ();
  g_autoptr(SmImageInfo) info = NULL;
  const SmRebaseLayer *active = g_ptr_array_index (plan->chain, 0);
  guint i;

  now = query_chain (qmp, plan->disk, NULL, error);
  if (!now)
    return false;
  g_ptr_array_add (expected, (gpointer) active);
  if (plan->base_index >= 0)
    for (i = (guint) plan->base_index; i < plan->chain->len; i++)
      g_ptr_array_add (expected, g_ptr_array_index (plan->chain, i));
  if (!same_chain (now, expected)) {
    g_autofree char *want = sm_rebase_chain_to_string (expected);
    g_autofree char *got = sm_rebase_chain_to_string (now);

    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "disk %s: block-stream finished but the chain is %s, "
                 "expected %s", plan->disk, got, want);
    return false;
  }

  if (strcmp (active->format, "qcow2") != 0)
    return true;
  info = sm_image_probe (active->filename, SM_IMAGE_FORMAT_QCOW2, error);
  if (!info) {
    g_prefix_error (error, "disk %s: ", plan->disk);
    return false;
  }
  if (g_strcmp0 (info->backing_file, plan->backing_file) != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "disk %s: %s names backing file %s%s%s, expected %s%s%s",
                 plan->disk, active->filename,
                 info->backing_file ? "'" : "",
                 info->backing_file ? info->backing_file : "none",
                 info->backing_file ? "'" : "",
                 plan->backing_file ? "'" : "",
                 plan->backing_file ? plan->backing_file : "none",
                 plan->backing_file ? "'" : "");
    return false;
  }
  if (plan->backing_file && !info->backing_format) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "disk %s: %s names backing file '%s' without its format",
                 plan->disk, active->filename, plan->backing_file);
    return false;
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
  g_autoptr(json_object) event = NULL;
  g_autoptr(GError) err = NULL;
  json_object *data;
  gint64 deadline_us = 0;
  uint64_t len = 0;

  st = sm_vm_state_open (state_dir, sm_qmp_address (qmp), error);
  if (!st || !sm_vm_state_lock (st, error))
    return false;

  /* Another tool may have changed the chain between plan and lock. */
  now = query_chain (qmp, plan->disk, NULL, error);
  if (!now)
    return false;
  if (!same_chain (now, plan->chain)) {
    g_autofree char *got = sm_rebase_chain_to_string (now);
    g_autofree char *want = sm_rebase_chain_to_string (plan->chain);

    g_set_error (error, SM_ERROR, SM_ERROR_BUSY,
                 "disk %s: backing chain changed since it was planned "
                 "(now %s, planned %s)", plan->disk, got, want);
    return false;
  }
  if (!plan->command)
    return true;

  if (timeout_s > 0)
    deadline_us = g_get_monotonic_time () + (gint64) timeout_s * G_USEC_PER_SEC;
  sm_debug (DOMAIN, "disk %s: streaming into %s", plan->disk,
            ((SmRebaseLayer *) g_ptr_array_index (plan->chain, 0))->filename);
  if (!sm_qmp_run (qmp, "block-stream",
                   json_object_get (sm_json_get_object (plan->command,
                                                        "arguments")),
                   error)) {
    g_prefix_error (error, "disk %s: ", plan->disk);
    return false;
  }
  event = wait_job_end (qmp, plan, deadline_us, progress, opaque, &err);
  if (!event) {
    if (!g_error_matches (err, SM_ERROR, SM_ERROR_TIMEOUT)) {
      g_propagate_error (error, g_steal_pointer (&err));
      return false;
    }
    event = cancel_job (qmp, plan, NULL);
    /* A job that finished while we cancelled it did finish: go on and
     * verify; otherwise report the timeout. */
    if (!event || strcmp (sm_json_get_string (event, "event"),
                          "BLOCK_JOB_COMPLETED") != 0 ||
        sm_json_get_string (sm_json_get_object (event, "data"), "error")) {
      g_set_error (error, SM_ERROR, SM_ERROR_TIMEOUT,
                   "disk %s: block-stream did not finish within %u s; %s",
                   plan->disk, timeout_s,
                   event ? "job cancelled, the chain is unchanged"
                         : "cancelling the job failed too, see "
                           "'snapmig disks'");
      return false;
    }
  }

  data = sm_json_get_object (event, "data");
  if (strcmp (sm_json_get_string (event, "event"),
              "BLOCK_JOB_CANCELLED") == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_FAILED,
                 "disk %s: block-stream job %s was cancelled by someone else; "
                 "the chain is unchanged", plan->disk, plan->job_id);
    return false;
  }
  if (sm_json_get_string (data, "error")) {
    g_set_error (error, SM_ERROR, SM_ERROR_QMP,
                 "disk %s: block-stream failed: %s", plan->disk,
                 sm_json_get_string (data, "error"));
    return false;
  }
  sm_json_get_uint64 (data, "len", &len);
  if (progress)
    progress (plan, len, len, opaque);
  return verify (qmp, plan, error);
}
