/* libsnapmig — live storage migration: planning (see lsm.h).  Nothing in
 * this file talks to QEMU or changes a file. */
#include "lsm.h"
#include "json-util.h"
#include "rebase.h"      /* sm_rebase_relative_path */

#include <string.h>

/* ---- names ------------------------------------------------------------ */

static const char *const step_names[SM_LSM_STEP_LAST] = {
  [SM_LSM_STEP_CREATE_DEST] = "create-dest",
  [SM_LSM_STEP_CREATE_TOP] = "create-top",
  [SM_LSM_STEP_TRANSACTION] = "transaction",
  [SM_LSM_STEP_SNAPSHOT] = "snapshot",
  [SM_LSM_STEP_MIRROR] = "mirror",
  [SM_LSM_STEP_SAVE_METADATA] = "save-metadata",
  [SM_LSM_STEP_START_COPY] = "start-copy",
  [SM_LSM_STEP_WAIT] = "wait",
  [SM_LSM_STEP_CHECK_DEST] = "check-dest",
  [SM_LSM_STEP_FLUSH] = "flush",
  [SM_LSM_STEP_STOP] = "stop",
  [SM_LSM_STEP_COMPLETE] = "complete",
  [SM_LSM_STEP_WAIT_SWITCH] = "wait-switch",
  [SM_LSM_STEP_CONT] = "cont",
  [SM_LSM_STEP_CHECK_SWITCH] = "check-switch",
  [SM_LSM_STEP_CANCEL] = "cancel",
  [SM_LSM_STEP_STOP_COPY] = "stop-copy",
  [SM_LSM_STEP_REMOVE_FILES] = "remove-files",
  [SM_LSM_STEP_DELETE_SOURCE] = "delete-source",
  [SM_LSM_STEP_DELETE_METADATA] = "delete-metadata",
};

const char *
sm_lsm_step_kind_to_string (SmLsmStepKind kind)
{
  return (unsigned) kind < SM_LSM_STEP_LAST ? step_names[kind] : NULL;
}

static const char *const op_names[SM_LSM_OP_LAST] = {
  [SM_LSM_OP_CREATE] = "create",
  [SM_LSM_OP_PIVOT] = "pivot",
  [SM_LSM_OP_ABORT] = "abort",
};

const char *
sm_lsm_op_to_string (SmLsmOp op)
{
  return (unsigned) op < SM_LSM_OP_LAST ? op_names[op] : NULL;
}

char *
sm_lsm_job_id (const char *id)
{
  return sm_block_job_id ("snapmig-mirror-", id);
}

/* ---- the VM snapshot and the migration record ------------------------ */

SmLsmVm *
sm_lsm_vm_new (void)
{
  SmLsmVm *vm = g_new0 (SmLsmVm, 1);

  vm->disks = g_ptr_array_new_with_free_func (
    (GDestroyNotify) sm_block_disk_free);
  vm->jobs = g_ptr_array_new_with_free_func (
    (GDestroyNotify) sm_block_job_free);
  vm->chains = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify) sm_image_chain_free);
  vm->chain_errors = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                            g_free);
  return vm;
}

void
sm_lsm_vm_free (SmLsmVm *vm)
{
  if (!vm)
    return;
  g_ptr_array_unref (vm->disks);
  g_ptr_array_unref (vm->jobs);
  g_hash_table_unref (vm->chains);
  g_hash_table_unref (vm->chain_errors);
  g_free (vm->run_state);
  g_free (vm);
}

static void
lsm_disk_free (gpointer p)
{
  SmLsmDisk *d = p;

  g_free (d->name);
  g_free (d->id);
  g_free (d->job_id);
  g_free (d->orig_top);
  g_free (d->orig_format);
  g_free (d->orig_node);
  g_free (d->new_top);
  g_free (d->mirror);
  g_free (d->dest_dir);
  g_free (d);
}

static SmLsmInfo *
info_new (const char *snapshot, const char *parent)
{
  SmLsmInfo *info = g_new0 (SmLsmInfo, 1);

  info->snapshot = g_strdup (snapshot);
  info->parent = g_strdup (parent);
  info->disks = g_ptr_array_new_with_free_func (lsm_disk_free);
  return info;
}

void
sm_lsm_info_free (SmLsmInfo *info)
{
  if (!info)
    return;
  g_free (info->snapshot);
  g_free (info->parent);
  g_ptr_array_unref (info->disks);
  g_free (info);
}

static void
put_str (json_object *o, const char *key, const char *value)
{
  if (value)
    json_object_object_add (o, key, json_object_new_string (value));
}

json_object *
sm_lsm_info_to_json (const SmLsmInfo *info)
{
  json_object *root = json_object_new_object ();
  json_object *disks = json_object_new_array ();
  size_t i;

  put_str (root, "snapshot", info->snapshot);
  put_str (root, "parent", info->parent);
  json_object_object_add (root, "disks", disks);
  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];
    json_object *o = json_object_new_object ();

    put_str (o, "name", d->name);
    put_str (o, "id", d->id);
    put_str (o, "job", d->job_id);
    put_str (o, "orig-top", d->orig_top);
    put_str (o, "orig-format", d->orig_format);
    put_str (o, "orig-node", d->orig_node);
    put_str (o, "new-top", d->new_top);
    put_str (o, "mirror", d->mirror);
    put_str (o, "dest-dir", d->dest_dir);
    json_object_array_add (disks, o);
  }
  return root;
}

SmLsmInfo *
sm_lsm_info_from_json (json_object *obj, GError **error)
{
  g_autoptr(SmLsmInfo) info = NULL;
  json_object *disks;
  size_t i;

  disks = sm_json_get_array (obj, "disks");
  if (!sm_json_get_string (obj, "snapshot") || !disks) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "not a migration record (no snapshot or disks)");
    return NULL;
  }
  info = info_new (sm_json_get_string (obj, "snapshot"),
                   sm_json_get_string (obj, "parent"));
  for (i = 0; i < json_object_array_length (disks); i++) {
    json_object *o = json_object_array_get_idx (disks, i);
    SmLsmDisk *d = g_new0 (SmLsmDisk, 1);

    d->name = g_strdup (sm_json_get_string (o, "name"));
    d->id = g_strdup (sm_json_get_string (o, "id"));
    d->job_id = g_strdup (sm_json_get_string (o, "job"));
    d->orig_top = g_strdup (sm_json_get_string (o, "orig-top"));
    d->orig_format = g_strdup (sm_json_get_string (o, "orig-format"));
    d->orig_node = g_strdup (sm_json_get_string (o, "orig-node"));
    d->new_top = g_strdup (sm_json_get_string (o, "new-top"));
    d->mirror = g_strdup (sm_json_get_string (o, "mirror"));
    d->dest_dir = g_strdup (sm_json_get_string (o, "dest-dir"));
    g_ptr_array_add (info->disks, d);
    if (!d->name || !d->id || !d->orig_top || !d->new_top) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "migration record of %s: disk %zu is incomplete",
                   info->snapshot, i + 1);
      return NULL;
    }
  }
  return g_steal_pointer (&info);
}

/* ---- plans ----------------------------------------------------------- */

static void
step_free (gpointer p)
{
  SmLsmStep *s = p;

  g_free (s->command);
  json_object_put (s->args);
  g_free (s);
}

static SmLsmPlan *
plan_new (SmLsmOp op, unsigned flags)
{
  SmLsmPlan *plan = g_new0 (SmLsmPlan, 1);

  plan->op = op;
  plan->flags = flags;
  plan->dest_plans = g_ptr_array_new_with_free_func (
    (GDestroyNotify) sm_precreate_plan_free);
  plan->top_plans = g_ptr_array_new_with_free_func (
    (GDestroyNotify) sm_precreate_plan_free);
  plan->copies = g_ptr_array_new_with_free_func (
    (GDestroyNotify) sm_layer_copy_free);
  plan->steps = g_ptr_array_new_with_free_func (step_free);
  plan->source_files = g_ptr_array_new_with_free_func (g_free);
  return plan;
}

void
sm_lsm_plan_free (SmLsmPlan *plan)
{
  if (!plan)
    return;
  sm_lsm_info_free (plan->info);
  sm_snapshot_def_free (plan->def);
  g_ptr_array_unref (plan->dest_plans);
  g_ptr_array_unref (plan->top_plans);
  g_ptr_array_unref (plan->copies);
  g_ptr_array_unref (plan->steps);
  g_ptr_array_unref (plan->source_files);
  g_free (plan->note);
  g_free (plan);
}

static void
add_step (SmLsmPlan *plan, SmLsmStepKind kind, int disk, const char *command,
          json_object *args)
{
  SmLsmStep *s = g_new0 (SmLsmStep, 1);

  s->kind = kind;
  s->disk = disk;
  s->command = g_strdup (command);
  s->args = args;
  g_ptr_array_add (plan->steps, s);
}

SmBlockDisk *
sm_lsm_vm_find_disk (const SmLsmVm *vm, const char *name)
{
  size_t i;

  for (i = 0; i < vm->disks->len; i++)
    if (sm_block_disk_matches (vm->disks->pdata[i], name))
      return vm->disks->pdata[i];
  return NULL;
}

static const SmBlockJob *
find_disk_job (const SmLsmVm *vm, const SmBlockDisk *disk)
{
  g_autofree char *name = sm_block_disk_name (disk);
  g_autofree char *ours = sm_lsm_job_id (name);
  size_t i;

  /* A job started without job-id is named after the device. */
  for (i = 0; i < vm->jobs->len; i++) {
    const SmBlockJob *job = vm->jobs->pdata[i];

    if (strcmp (job->id, ours) == 0 ||
        (disk->device && strcmp (job->id, disk->device) == 0) ||
        (disk->node_name && strcmp (job->id, disk->node_name) == 0))
      return job;
  }
  return NULL;
}

/* TOP's base name without its last extension: "/a/snap1.qcow2" → "snap1". */
static char *
stem (const char *path)
{
  g_autofree char *base = g_path_get_basename (path);
  char *dot = strrchr (base, '.');

  if (dot && dot != base)
    *dot = '\0';
  return g_steal_pointer (&base);
}

/* The base name of the new top snapmig gives a disk on TOP with CHAIN
 * (its layers, TOP first; NULL when unknown) for snapshot SNAPSHOT:
 * BASE.SNAPSHOT.qcow2, where BASE is TOP's stem with any earlier snapmig
 * suffix stripped, so that names do not grow with every move
 * (d0.qcow2 <- d0.m1.qcow2 gives d0.m2.qcow2, not d0.m1.m2.qcow2).  The
 * suffix rule: when TOP's stem is the stem of a layer below it followed by
 * '.' and more, BASE is the shortest such stem.  When that name is a layer
 * of the chain already (a snapshot name used again), BASE is TOP's whole
 * stem, as before. */
static char *
default_top_name (const char *top, const SmImageChain *chain,
                  const char *snapshot)
{
  g_autofree char *s = stem (top);
  g_autofree char *base = g_strdup (s);
  g_autofree char *name = NULL;
  size_t i;

  for (i = 1; chain && i < chain->layers->len; i++) {
    const SmImageInfo *l = chain->layers->pdata[i];
    g_autofree char *below = stem (l->path);
    size_t n = strlen (below);

    if (n < strlen (base) && strncmp (s, below, n) == 0 && s[n] == '.') {
      g_free (base);
      base = g_steal_pointer (&below);
    }
  }
  name = g_strdup_printf ("%s.%s.qcow2", base, snapshot);
  for (i = 0; chain && i < chain->layers->len; i++) {
    const SmImageInfo *l = chain->layers->pdata[i];
    g_autofree char *layer = g_path_get_basename (l->path);

    if (strcmp (layer, name) == 0)
      return g_strdup_printf ("%s.%s.qcow2", s, snapshot);
  }
  return g_steal_pointer (&name);
}

static char *
canon (const char *path)
{
  return g_canonicalize_filename (path, "/");
}

static bool
check_qcow2 (const char *what, const char *disk, const char *format,
             GError **error)
{
  if (format && strcmp (format, "qcow2") != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                 "disk %s: the %s must be qcow2, not %s", disk, what, format);
    return false;
  }
  return true;
}

static bool
check_absolute (const char *what, const char *disk, const char *path,
                GError **error)
{
  if (!g_path_is_absolute (path)) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "disk %s: the %s %s must be an absolute path", disk, what,
                 path);
    return false;
  }
  return true;
}

bool
sm_lsm_check_name (const char *name, GError **error)
{
  const char *p;

  /* The name becomes part of file names (new tops, state files). */
  if (!name || !*name || name[0] == '.' || strlen (name) > 100) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "snapshot name '%s' is empty, starts with '.' or is longer "
                 "than 100 characters", name ? name : "");
    return false;
  }
  for (p = name; *p; p++)
    if (*p == '/' || g_ascii_iscntrl (*p) || g_ascii_isspace (*p)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "snapshot name '%s' holds a '/', a space or a control "
                   "character", name);
      return false;
    }
  return true;
}

SmSnapshotDef *
sm_lsm_def_from_options (const SmLsmVm *vm, const char *name,
                         const char *const *diskspecs,
                         const char *mirror_domain, GError **error)
{
  g_autoptr(SmSnapshotDef) def = sm_snapshot_def_new ();
  g_autofree char *domain = NULL;
  size_t i, into_domain = 0;

  if (!name || !*name) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "a snapshot name is needed (--name)");
    return NULL;
  }
  if (!sm_lsm_check_name (name, error))
    return NULL;
  def->name = g_strdup (name);
  def->has_disks = true;
  /* Paths on the command line are relative to the current directory. */
  if (mirror_domain)
    domain = g_canonicalize_filename (mirror_domain, NULL);
  for (i = 0; diskspecs && diskspecs[i]; i++) {
    g_auto(GStrv) parts = g_strsplit (diskspecs[i], ",", -1);
    SmSnapshotDisk *disk;
    size_t k;

    if (!parts[0] || !*parts[0]) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "--diskspec %s: no disk name", diskspecs[i]);
      return NULL;
    }
    disk = sm_snapshot_disk_new (parts[0]);
    g_ptr_array_add (def->disks, disk);
    disk->snapshot = SM_SNAPSHOT_LOCATION_EXTERNAL;
    for (k = 1; parts[k]; k++) {
      const char *eq = strchr (parts[k], '=');
      g_autofree char *key = eq ? g_strndup (parts[k], eq - parts[k]) : NULL;

      if (!eq) {
        g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                     "--diskspec %s: '%s' is not KEY=VALUE", diskspecs[i],
                     parts[k]);
        return NULL;
      }
      if (strcmp (key, "file") == 0) {
        g_free (disk->source);
        disk->source = g_canonicalize_filename (eq + 1, NULL);
      } else if (strcmp (key, "mirror") == 0) {
        g_free (disk->mirror_file);
        disk->mirror_file = g_canonicalize_filename (eq + 1, NULL);
        disk->mirror_format = g_strdup ("qcow2");
      } else if (strcmp (key, "snapshot") == 0 && strcmp (eq + 1, "no") == 0) {
        disk->snapshot = SM_SNAPSHOT_LOCATION_NO;
      } else {
        g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                     "--diskspec %s: unknown key '%s' (file=, mirror=, "
                     "snapshot=no)", diskspecs[i], key);
        return NULL;
      }
    }
  }
  /* No --diskspec: every writable disk, mirrored into the domain when
   * there is one, else a plain external snapshot (as virsh
   * snapshot-create-as --disk-only). */
  if (!diskspecs || !diskspecs[0]) {
    for (i = 0; i < vm->disks->len; i++) {
      const SmBlockDisk *bd = vm->disks->pdata[i];

      if (!sm_block_disk_top (bd) || bd->read_only)
        continue;
      g_autofree char *dname = sm_block_disk_name (bd);

      g_ptr_array_add (def->disks, sm_snapshot_disk_new (dname));
      ((SmSnapshotDisk *) def->disks->pdata[def->disks->len - 1])->snapshot =
        SM_SNAPSHOT_LOCATION_EXTERNAL;
    }
    if (def->disks->len == 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                   "the VM has no writable disk with an image to %s",
                   domain ? "move" : "snapshot");
      return NULL;
    }
  }
  for (i = 0; i < def->disks->len; i++) {
    SmSnapshotDisk *disk = def->disks->pdata[i];
    const SmBlockDisk *bd;
    const char *top;
    g_autofree char *top_name = NULL;
    g_autofree char *top_dir = NULL;

    if (disk->snapshot == SM_SNAPSHOT_LOCATION_NO ||
        (disk->source && (disk->mirror_file || !domain)))
      continue;
    bd = sm_lsm_vm_find_disk (vm, disk->name);
    if (!bd) {
      sm_block_set_no_disk (error, vm->disks, disk->name);
      return NULL;
    }
    if (!(top = sm_block_disk_top (bd))) {
      sm_error_set_with_object (error, SM_ERROR_NOT_FOUND, disk->name,
                   "the VM has no disk %s with an image inserted",
                   disk->name);
      return NULL;
    }
    top_name = default_top_name (top, g_hash_table_lookup (
                                   vm->chains, sm_block_disk_id (bd)), name);
    top_dir = g_path_get_dirname (top);
    if (!disk->source)
      disk->source = g_build_filename (top_dir, top_name, NULL);
    if (domain && !disk->mirror_file) {
      disk->mirror_file = g_build_filename (domain, top_name, NULL);
      disk->mirror_format = g_strdup ("qcow2");
      into_domain++;
    }
    if (!disk->driver_type)
      disk->driver_type = g_strdup ("qcow2");
  }
  /* No option is accepted and then ignored. */
  if (domain && into_domain == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "--mirror-domain %s: no disk would move there (every "
                 "--diskspec has its own mirror= or snapshot=no): drop it, "
                 "or name a disk without mirror=", mirror_domain);
    return NULL;
  }
  return g_steal_pointer (&def);
}

/* Frees a layer made by top_plan (precreate.c owns the layout of its own). */
static void
top_layer_free (gpointer p)
{
  SmPrecreateLayer *l = p;

  g_free (l->path);
  g_free (l->source_path);
  g_free (l->backing_name);
  g_free (l);
}

SmPrecreatePlan *
sm_lsm_plan_new_top (const char *new_top, const SmImageInfo *orig)
{
  SmPrecreatePlan *p = g_new0 (SmPrecreatePlan, 1);
  SmPrecreateLayer *l = g_new0 (SmPrecreateLayer, 1);
  g_autofree char *orig_abs = canon (orig->path);

  p->mode = SM_PRECREATE_CHAIN;
  p->dest_dir = g_path_get_dirname (new_top);
  p->layers = g_ptr_array_new_with_free_func (top_layer_free);
  l->path = g_strdup (new_top);
  l->format = SM_IMAGE_FORMAT_QCOW2;
  l->virtual_size = (orig->virtual_size + 511) & ~(uint64_t) 511;
  l->backing_name = sm_rebase_relative_path (p->dest_dir, orig_abs);
  l->backing_format = orig->format;
  l->cluster_size = orig->cluster_size;
  l->required_bytes = 1 << 20;
  g_ptr_array_add (p->layers, l);
  return p;
}

/* A disk without a device name (-blockdev + -device) is addressed by node
 * name, and the snapshot replaces its top node: the new top gets a node name
 * of ours (NEW_NODE) so that the mirror and an undo can address it. */
json_object *
sm_lsm_snapshot_action (const SmBlockDisk *bd, const char *new_top,
                      const char *new_node)
{
  return sm_qmp_args (NULL, bd->device ? "s:device" : "s:node-name",
                      sm_block_disk_id (bd), "s:snapshot-file", new_top,
                      "s:format", "qcow2", "s:mode", "existing",
                      "S:snapshot-node-name", bd->device ? NULL : new_node,
                      NULL);
}

/* Node name for the new top of disk number INDEX (QEMU: at most 31
 * characters of [A-Za-z0-9._-], starting with a letter). */
char *
sm_lsm_new_node_name (const char *snapshot, size_t index)
{
  GString *s = g_string_new ("sm-");
  const char *p;

  for (p = snapshot; *p && s->len < 20; p++)
    g_string_append_c (s, g_ascii_isalnum (*p) || *p == '-' || *p == '.' ||
                          *p == '_' ? *p : '_');
  g_string_append_printf (s, "-%zu", index);
  return g_string_free (s, false);
}

SmLsmPlan *
sm_lsm_plan_create (const SmLsmVm *vm, const SmSnapshotDef *def,
                    const char *current, const SmLsmCreateOptions *options,
                    GError **error)
{
  unsigned flags = options->flags;
  g_autoptr(SmLsmPlan) plan = NULL;
  g_autoptr(GHashTable) sources = g_hash_table_new_full (g_str_hash,
                                                         g_str_equal, g_free,
                                                         NULL);
  g_autoptr(GHashTable) targets = g_hash_table_new_full (g_str_hash,
                                                         g_str_equal, g_free,
                                                         g_free);
  g_autoptr(GHashTable) seen = g_hash_table_new (NULL, NULL);
  g_autofree char *memory = sm_snapshot_def_memory_request (def);
  json_object *actions;
  bool mirrors = false;
  size_t i, n = 0;

  if (!def->name || !*def->name) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID, "the snapshot has no name");
    return NULL;
  }
  if (!sm_lsm_check_name (def->name, error))
    return NULL;
  /* As virsh snapshot-create: a snapshot that asks for the memory state is
   * taken without it only when the caller says --disk-only. */
  if (memory && !(flags & SM_LSM_DISK_ONLY)) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "snapshot %s asks for the VM's memory state (%s), which "
                 "snapmig does not save (its snapshots hold the disks only): "
                 "remove it from the XML, or give --disk-only to take the "
                 "snapshot without it", def->name, memory);
    return NULL;
  }
  for (i = 0; i < def->disks->len; i++) {
    const SmSnapshotDisk *d = def->disks->pdata[i];

    if (d->snapshot == SM_SNAPSHOT_LOCATION_NO)
      continue;
    n++;
    if (d->mirror_file)
      mirrors = true;
  }
  if (n == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "snapshot %s names no disk to snapshot", def->name);
    return NULL;
  }
  /* libvirt's rules (seed 001): reuse and mirrors need `transaction`. */
  if (mirrors || (flags & SM_LSM_REUSE_EXTERNAL))
    flags |= SM_LSM_ATOMIC;
  if (mirrors && (flags & SM_LSM_NO_METADATA)) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "snapshot %s: --no-metadata cannot be used with mirrors "
                 "(pivot and abort need the metadata)", def->name);
    return NULL;
  }
  if (!vm->has_transaction && (flags & SM_LSM_REUSE_EXTERNAL)) {
    g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                 "--reuse-external needs QEMU's 'transaction' command, "
                 "which this QEMU lacks");
    return NULL;
  }
  if (!vm->has_transaction && (flags & SM_LSM_ATOMIC) && n > 1) {
    g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                 "an atomic snapshot of %zu disks%s needs QEMU's "
                 "'transaction' command, which this QEMU lacks", n,
                 mirrors ? " (implied by <mirror>)" : "");
    return NULL;
  }
  if (options->copy_mode) {
    if (strcmp (options->copy_mode, "background") != 0 &&
        strcmp (options->copy_mode, "write-blocking") != 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "unknown copy mode '%s' (background, write-blocking)",
                   options->copy_mode);
      return NULL;
    }
    if (!vm->has_copy_mode) {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "--copy-mode needs QEMU 3.0 or later");
      return NULL;
    }
  }

  /* Every file of every chain the VM uses: no target may be one of them. */
  for (i = 0; i < vm->disks->len; i++) {
    const SmBlockDisk *bd = vm->disks->pdata[i];
    const SmImageChain *chain = g_hash_table_lookup (vm->chains,
                                                     sm_block_disk_id (bd));
    size_t k;

    for (k = 0; k < bd->chain->len; k++) {
      const SmBlockLayer *l = bd->chain->pdata[k];

      g_hash_table_add (sources, canon (l->filename));
    }
    for (k = 0; chain && k < chain->layers->len; k++) {
      const SmImageInfo *l = chain->layers->pdata[k];

      g_hash_table_add (sources, canon (l->path));
    }
  }

  plan = plan_new (SM_LSM_OP_CREATE, flags);
  plan->info = info_new (def->name, current);
  plan->def = sm_snapshot_def_new ();
  plan->def->name = g_strdup (def->name);
  plan->def->description = g_strdup (def->description);
  plan->def->state = g_strdup ("disk-snapshot");
  if (memory)
    plan->note = g_strdup_printf ("snapshot %s: the memory state it asks for "
                                  "(%s) is left out (--disk-only): the "
                                  "snapshot holds the disks only", def->name,
                                  memory);
  plan->def->parent = g_strdup (current);
  plan->def->creation_time = g_get_real_time () / G_USEC_PER_SEC;
  plan->def->has_disks = true;

  for (i = 0; i < def->disks->len; i++) {
    const SmSnapshotDisk *d = def->disks->pdata[i];
    SmBlockDisk *bd;
    const SmBlockJob *job;
    const SmImageChain *chain;
    const SmImageInfo *orig;
    g_autofree char *new_top = NULL;
    SmLsmDisk *ld;
    SmSnapshotDisk *out;
    size_t k;

    if (d->snapshot == SM_SNAPSHOT_LOCATION_NO)
      continue;
    if (d->snapshot != SM_SNAPSHOT_LOCATION_DEFAULT &&
        d->snapshot != SM_SNAPSHOT_LOCATION_EXTERNAL) {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "disk %s: only external snapshots are supported, not "
                   "snapshot='%s'", d->name,
                   sm_snapshot_location_to_string (d->snapshot));
      return NULL;
    }
    bd = sm_lsm_vm_find_disk (vm, d->name);
    if (!bd) {
      sm_block_set_no_disk (error, vm->disks, d->name);
      return NULL;
    }
    if (g_hash_table_contains (seen, bd)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "disk %s is named twice in snapshot %s", d->name,
                   def->name);
      return NULL;
    }
    g_hash_table_add (seen, bd);
    if (!sm_block_disk_top (bd)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "disk %s has no image inserted", d->name);
      return NULL;
    }
    if (bd->read_only) {
      g_set_error (error, SM_ERROR, SM_ERROR_UNSUPPORTED,
                   "disk %s is read-only", d->name);
      return NULL;
    }
    job = find_disk_job (vm, bd);
    if (job) {
      sm_error_set_with_object (error, SM_ERROR_BUSY, d->name,
                   "disk %s has a block job running (%s, %s)", d->name,
                   job->id, job->type ? job->type : "?");
      return NULL;
    }
    chain = g_hash_table_lookup (vm->chains, sm_block_disk_id (bd));
    if (!chain) {
      const char *why = g_hash_table_lookup (vm->chain_errors,
                                             sm_block_disk_id (bd));

      g_set_error (error, SM_ERROR, SM_ERROR_IMAGE,
                   "disk %s: cannot read its backing chain%s%s", d->name,
                   why ? ": " : "", why ? why : "");
      return NULL;
    }
    orig = chain->layers->pdata[0];
    if (!check_qcow2 ("new top", d->name, d->driver_type, error) ||
        !check_qcow2 ("mirror", d->name, d->mirror_format, error))
      return NULL;
    if (d->source) {
      if (!check_absolute ("new top", d->name, d->source, error))
        return NULL;
      new_top = canon (d->source);
    } else {
      g_autofree char *dir = g_path_get_dirname (orig->path);
      g_autofree char *base = default_top_name (orig->path, chain, def->name);

      new_top = g_build_filename (dir, base, NULL);
    }
    if (g_hash_table_contains (sources, new_top) ||
        g_hash_table_contains (targets, new_top)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "disk %s: the new top %s is already in use", d->name,
                   new_top);
      return NULL;
    }
    g_hash_table_insert (targets, g_strdup (new_top), g_strdup (d->name));

    ld = g_new0 (SmLsmDisk, 1);
    g_ptr_array_add (plan->info->disks, ld);
    /* The name that finds the disk again after the snapshot and the pivot
     * (its node name changes with both). */
    ld->name = sm_block_disk_name (bd);
    ld->id = bd->device ? g_strdup (bd->device)
                        : sm_lsm_new_node_name (def->name, plan->info->disks->len - 1);
    ld->orig_top = g_strdup (sm_block_disk_top (bd));
    ld->orig_format = g_strdup (sm_image_format_to_string (orig->format));
    ld->orig_node = g_strdup (bd->node_name);
    ld->new_top = g_strdup (new_top);
    g_ptr_array_add (plan->top_plans, sm_lsm_plan_new_top (new_top, orig));

    out = sm_snapshot_disk_new (d->name);
    out->snapshot = SM_SNAPSHOT_LOCATION_EXTERNAL;
    out->type = d->type;
    out->source = g_strdup (new_top);
    out->driver_type = g_strdup ("qcow2");
    g_ptr_array_add (plan->def->disks, out);

    if (!d->mirror_file) {
      g_ptr_array_add (plan->dest_plans, NULL);
      continue;
    }
    {
      g_autofree char *mirror = NULL;
      g_autofree char *dir = NULL;
      g_autofree char *base = NULL;
      SmPrecreatePlan *dest;

      if (!check_absolute ("mirror", d->name, d->mirror_file, error))
        return NULL;
      mirror = canon (d->mirror_file);
      dir = g_path_get_dirname (mirror);
      base = g_path_get_basename (mirror);
      dest = sm_precreate_plan (chain, SM_PRECREATE_CHAIN, dir, base, error);
      if (!dest) {
        g_prefix_error (error, "disk %s: ", d->name);
        return NULL;
      }
      g_ptr_array_add (plan->dest_plans, dest);
      for (k = 0; k < dest->layers->len; k++) {
        const SmPrecreateLayer *l = dest->layers->pdata[k];
        const char *other;

        if (g_hash_table_contains (sources, l->path)) {
          g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                       "disk %s: the destination %s is a file the VM uses; "
                       "choose another destination", d->name, l->path);
          return NULL;
        }
        other = g_hash_table_lookup (targets, l->path);
        if (other) {
          g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                       "disks %s and %s would both use %s", other, d->name,
                       l->path);
          return NULL;
        }
        g_hash_table_insert (targets, g_strdup (l->path), g_strdup (d->name));
        if (k > 0)
          g_ptr_array_add (plan->copies,
                           sm_layer_copy_new (d->name, l->source_path, l->path,
                                              l->format, l->backing_name,
                                              l->backing_format));
      }
      ld->mirror = g_strdup (mirror);
      ld->dest_dir = g_strdup (dest->dest_dir);
      ld->job_id = sm_lsm_job_id (ld->name);
      out->mirror_file = g_strdup (mirror);
      out->mirror_format = g_strdup ("qcow2");
    }
  }

  for (i = 0; i < plan->info->disks->len; i++)
    if (plan->dest_plans->pdata[i])
      add_step (plan, SM_LSM_STEP_CREATE_DEST, (int) i, NULL, NULL);
  for (i = 0; i < plan->info->disks->len; i++)
    add_step (plan, SM_LSM_STEP_CREATE_TOP, (int) i, NULL, NULL);
  if (vm->has_transaction) {
    actions = json_object_new_array ();
    for (i = 0; i < plan->info->disks->len; i++) {
      const SmLsmDisk *ld = plan->info->disks->pdata[i];
      json_object *action = json_object_new_object ();

      json_object_object_add (action, "type", json_object_new_string (
                                "blockdev-snapshot-sync"));
      json_object_object_add (action, "data",
                              sm_lsm_snapshot_action (sm_lsm_vm_find_disk (vm, ld->name),
                                                    ld->new_top, ld->id));
      json_object_array_add (actions, action);
    }
    add_step (plan, SM_LSM_STEP_TRANSACTION, -1, "transaction",
              sm_qmp_args (NULL, "j:actions", actions, NULL));
  } else {
    for (i = 0; i < plan->info->disks->len; i++) {
      const SmLsmDisk *ld = plan->info->disks->pdata[i];

      add_step (plan, SM_LSM_STEP_SNAPSHOT, (int) i, "blockdev-snapshot-sync",
                sm_lsm_snapshot_action (sm_lsm_vm_find_disk (vm, ld->name), ld->new_top,
                                      ld->id));
    }
  }
  for (i = 0; i < plan->info->disks->len; i++) {
    const SmLsmDisk *ld = plan->info->disks->pdata[i];

    if (!ld->mirror)
      continue;
    add_step (plan, SM_LSM_STEP_MIRROR, (int) i, "drive-mirror",
              sm_qmp_args (NULL, "s:device", ld->id, "s:job-id", ld->job_id,
                           "s:target", ld->mirror, "s:format", "qcow2",
                           "s:sync", "top", "s:mode", "existing",
                           "P:speed", options->bandwidth,
                           "S:copy-mode", options->copy_mode, NULL));
  }
  if (!(flags & SM_LSM_NO_METADATA))
    add_step (plan, SM_LSM_STEP_SAVE_METADATA, -1, NULL, NULL);
  if (mirrors)
    add_step (plan, SM_LSM_STEP_START_COPY, -1, NULL,
              options->bandwidth > 0
                ? sm_qmp_args (NULL, "u:bandwidth",
                               options->bandwidth, NULL)
                : NULL);
  return g_steal_pointer (&plan);
}

static bool
disk_on (const SmLsmVm *vm, const SmLsmDisk *d, const char *file)
{
  const SmBlockDisk *bd = sm_lsm_vm_find_disk (vm, d->name);
  const char *top = bd ? sm_block_disk_top (bd) : NULL;

  return top && file && strcmp (top, file) == 0;
}

static SmLsmInfo *
info_copy (const SmLsmInfo *info)
{
  g_autoptr(json_object) j = sm_lsm_info_to_json (info);

  return sm_lsm_info_from_json (j, NULL);
}

SmLsmPlan *
sm_lsm_plan_pivot (const SmLsmVm *vm, const SmLsmInfo *info,
                   const char *current, unsigned flags, GError **error)
{
  g_autoptr(SmLsmPlan) plan = NULL;
  g_autoptr(GHashTable) used = g_hash_table_new_full (g_str_hash, g_str_equal,
                                                      g_free, NULL);
  size_t i, pending = 0, mirrors = 0;
  bool pause;

  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];

    if (!d->mirror)
      continue;
    mirrors++;
    if (!sm_lsm_vm_find_disk (vm, d->name)) {
      sm_error_set_with_object (error, SM_ERROR_NOT_FOUND, d->name,
                   "the VM has no disk %s any more", d->name);
      return NULL;
    }
    if (!disk_on (vm, d, d->mirror))
      pending++;
  }
  if (mirrors == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "snapshot %s has no mirror to pivot to", info->snapshot);
    return NULL;
  }
  plan = plan_new (SM_LSM_OP_PIVOT, flags);
  plan->info = info_copy (info);
  if (pending == 0) {
    /* Every disk already runs on its destination: a pivot was interrupted
     * after the switch, maybe while deleting the snapshot's records (the
     * snapshot may be gone, and with it "current").  Only the records are
     * left to delete. */
    add_step (plan, SM_LSM_STEP_DELETE_METADATA, -1, NULL, NULL);
    return g_steal_pointer (&plan);
  }
  if (g_strcmp0 (info->snapshot, current) != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "snapshot %s is not the current snapshot (current: %s); "
                 "only the current snapshot can be pivoted", info->snapshot,
                 current ? current : "none");
    return NULL;
  }
  add_step (plan, SM_LSM_STEP_WAIT, -1, NULL, NULL);
  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];

    if (d->mirror && !disk_on (vm, d, d->mirror))
      add_step (plan, SM_LSM_STEP_CHECK_DEST, (int) i, NULL, NULL);
  }
  /* What the guest wrote is made durable before the switch, outside QEMU
   * and with the guest running: `stop` drains and flushes every disk with
   * the guest paused, and each mirror flushes its target again when it
   * completes; both then find little left to write. */
  add_step (plan, SM_LSM_STEP_FLUSH, -1, NULL, NULL);
  /* Pausing makes the switch of several disks one instant for the guest; a
   * single disk switches atomically by itself. */
  pause = pending > 1 && g_strcmp0 (vm->run_state, "running") == 0;
  if (pause)
    add_step (plan, SM_LSM_STEP_STOP, -1, "stop", NULL);
  /* One step per disk, so that the journal says which completes may have
   * been sent; the executor sends consecutive ones as one batch without
   * waiting for each reply. */
  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];

    if (d->mirror && !disk_on (vm, d, d->mirror))
      add_step (plan, SM_LSM_STEP_COMPLETE, (int) i, "block-job-complete",
                sm_qmp_args (NULL, "s:device", d->job_id, NULL));
  }
  add_step (plan, SM_LSM_STEP_WAIT_SWITCH, -1, NULL, NULL);
  if (pause)
    add_step (plan, SM_LSM_STEP_CONT, -1, "cont", NULL);
  /* Where the disks run is checked with the guest running again. */
  add_step (plan, SM_LSM_STEP_CHECK_SWITCH, -1, NULL, NULL);
  if (flags & SM_LSM_DELETE_SOURCE) {
    /* Candidates: the source chains of the moved disks, minus any file
     * another disk uses; the executor checks query-block again. */
    for (i = 0; i < vm->disks->len; i++) {
      const SmBlockDisk *bd = vm->disks->pdata[i];
      bool moved = false;
      size_t k;

      for (k = 0; k < info->disks->len; k++) {
        const SmLsmDisk *d = info->disks->pdata[k];

        if (d->mirror && sm_block_disk_matches (bd, d->name))
          moved = true;
      }
      if (moved)
        continue;
      for (k = 0; k < bd->chain->len; k++) {
        const SmBlockLayer *l = bd->chain->pdata[k];

        g_hash_table_add (used, canon (l->filename));
      }
    }
    for (i = 0; i < info->disks->len; i++) {
      const SmLsmDisk *d = info->disks->pdata[i];
      const SmBlockDisk *bd = sm_lsm_vm_find_disk (vm, d->name);
      size_t k;

      if (!d->mirror || !bd || disk_on (vm, d, d->mirror))
        continue;
      for (k = 0; k < bd->chain->len; k++) {
        const SmBlockLayer *l = bd->chain->pdata[k];
        g_autofree char *p = canon (l->filename);

        g_autofree char *in_dest = g_strconcat (d->dest_dir ? d->dest_dir
                                                            : "//", "/",
                                                NULL);

        if (!g_hash_table_contains (used, p) &&
            !g_str_has_prefix (p, in_dest)) {
          g_hash_table_add (used, g_strdup (p));
          g_ptr_array_add (plan->source_files, g_steal_pointer (&p));
        }
      }
    }
    if (plan->source_files->len)
      add_step (plan, SM_LSM_STEP_DELETE_SOURCE, -1, NULL, NULL);
  }
  add_step (plan, SM_LSM_STEP_DELETE_METADATA, -1, NULL, NULL);
  return g_steal_pointer (&plan);
}

SmLsmPlan *
sm_lsm_plan_abort (const SmLsmVm *vm, const SmLsmInfo *info, GError **error)
{
  g_autoptr(SmLsmPlan) plan = NULL;
  size_t i;

  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];

    if (d->mirror && disk_on (vm, d, d->mirror)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "disk %s already runs on its destination %s: run "
                   "'snapmig pivot %s' to finish the migration", d->name,
                   d->mirror, info->snapshot);
      return NULL;
    }
  }
  plan = plan_new (SM_LSM_OP_ABORT, 0);
  plan->info = info_copy (info);
  for (i = 0; i < info->disks->len; i++) {
    const SmLsmDisk *d = info->disks->pdata[i];

    if (d->mirror)
      add_step (plan, SM_LSM_STEP_CANCEL, (int) i, "block-job-cancel",
                sm_qmp_args (NULL, "s:device", d->job_id, NULL));
  }
  add_step (plan, SM_LSM_STEP_STOP_COPY, -1, NULL, NULL);
  add_step (plan, SM_LSM_STEP_REMOVE_FILES, -1, NULL, NULL);
  add_step (plan, SM_LSM_STEP_DELETE_METADATA, -1, NULL, NULL);
  return g_steal_pointer (&plan);
}

static const char *
json_text (json_object *o)
{
  return json_object_to_json_string_ext (o, JSON_C_TO_STRING_PLAIN |
                                         JSON_C_TO_STRING_NOSLASHESCAPE);
}

static void
format_create_file (GString *out, const SmPrecreateLayer *l)
{
  g_string_append_printf (out, "create file %s (%s, %" G_GUINT64_FORMAT
                          " bytes", l->path,
                          sm_image_format_to_string (l->format),
                          l->virtual_size);
  if (l->backing_name)
    g_string_append_printf (out, ", backing %s, %s", l->backing_name,
                            sm_image_format_to_string (l->backing_format));
  g_string_append (out, ")\n");
}

char *
sm_lsm_plan_format (const SmLsmPlan *plan)
{
  GString *out = g_string_new (NULL);
  size_t i, k;

  for (i = 0; i < plan->steps->len; i++) {
    const SmLsmStep *s = plan->steps->pdata[i];
    const SmLsmDisk *d = s->disk >= 0 ? plan->info->disks->pdata[s->disk]
                                      : NULL;

    switch (s->kind) {
    case SM_LSM_STEP_CREATE_DEST: {
      const SmPrecreatePlan *p = plan->dest_plans->pdata[s->disk];

      for (k = p->layers->len; k-- > 0;)
        format_create_file (out, p->layers->pdata[k]);
      break;
    }
    case SM_LSM_STEP_CREATE_TOP: {
      const SmPrecreatePlan *p = plan->top_plans->pdata[s->disk];

      format_create_file (out, p->layers->pdata[0]);
      break;
    }
    case SM_LSM_STEP_TRANSACTION:
    case SM_LSM_STEP_SNAPSHOT:
    case SM_LSM_STEP_MIRROR:
    case SM_LSM_STEP_STOP:
    case SM_LSM_STEP_CONT:
    case SM_LSM_STEP_CANCEL:
      g_string_append_printf (out, "qmp %s %s\n", s->command,
                              s->args ? json_text (s->args) : "{}");
      break;
    case SM_LSM_STEP_COMPLETE:
      /* Consecutive completes go out as one batch (see lsm-switch.c). */
      g_string_append_printf (out, "qmp %s %s%s\n", s->command,
                              s->args ? json_text (s->args) : "{}",
                              (i > 0 && ((SmLsmStep *) plan->steps->pdata[i - 1])
                                          ->kind == SM_LSM_STEP_COMPLETE) ||
                              (i + 1 < plan->steps->len &&
                               ((SmLsmStep *) plan->steps->pdata[i + 1])->kind
                               == SM_LSM_STEP_COMPLETE)
                              ? " (sent in one batch with the other "
                                "completes)" : "");
      break;
    case SM_LSM_STEP_SAVE_METADATA:
      g_string_append_printf (out, "save snapshot %s as current\n",
                              plan->info->snapshot);
      break;
    case SM_LSM_STEP_START_COPY:
      for (k = 0; k < plan->copies->len; k++) {
        const SmLayerCopy *c = plan->copies->pdata[k];

        g_string_append_printf (out, "copy %s to %s in the background\n",
                                c->source, c->dest);
      }
      break;
    case SM_LSM_STEP_WAIT:
      g_string_append (out, "wait until every mirror is ready and every "
                       "copy done\n");
      break;
    case SM_LSM_STEP_CHECK_DEST:
      g_string_append_printf (out, "check the destination chain of %s in %s\n",
                              d->mirror, d->dest_dir ? d->dest_dir : "?");
      break;
    case SM_LSM_STEP_FLUSH:
      /* The files of the disks the plan completes (the executor's). */
      for (k = 0; k < plan->steps->len; k++) {
        const SmLsmStep *c = plan->steps->pdata[k];
        const SmLsmDisk *fd;

        if (c->kind != SM_LSM_STEP_COMPLETE || c->disk < 0)
          continue;
        fd = plan->info->disks->pdata[c->disk];
        g_string_append_printf (out, "flush %s and %s to disk\n",
                                fd->new_top, fd->mirror);
      }
      break;
    case SM_LSM_STEP_WAIT_SWITCH:
      g_string_append (out, "wait until every completed mirror has ended\n");
      break;
    case SM_LSM_STEP_CHECK_SWITCH:
      g_string_append (out, "check that every disk runs on its "
                       "destination\n");
      break;
    case SM_LSM_STEP_STOP_COPY:
      g_string_append (out, "stop the copy worker\n");
      break;
    case SM_LSM_STEP_REMOVE_FILES:
      g_string_append (out, "remove the destination files snapmig created\n");
      break;
    case SM_LSM_STEP_DELETE_SOURCE:
      for (k = 0; k < plan->source_files->len; k++)
        g_string_append_printf (out, "remove %s\n",
                                (char *) plan->source_files->pdata[k]);
      break;
    case SM_LSM_STEP_DELETE_METADATA:
      g_string_append_printf (out, "delete snapshot %s\n",
                              plan->info->snapshot);
      break;
    case SM_LSM_STEP_LAST:
      break;
    }
  }
  return g_string_free (out, false);
}
