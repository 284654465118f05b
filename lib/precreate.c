/* libsnapmig — sizing and pre-creation of destination images. */
#include "precreate.h"
#include "image-lock.h"
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define DOMAIN "precreate"

/* qemu-img's qcow2 default, used for the estimate when the source has no
 * cluster size of its own (a raw layer). */
#define DEFAULT_CLUSTER_SIZE (64 * 1024)

static const char *const mode_names[SM_PRECREATE_LAST] = {
  [SM_PRECREATE_CHAIN] = "chain",
  [SM_PRECREATE_FLAT] = "flat",
};

const char *
sm_precreate_mode_to_string (SmPrecreateMode mode)
{
  if ((unsigned) mode >= SM_PRECREATE_LAST)
    return NULL;
  return mode_names[mode];
}

/* Sizes come from image headers a guest or a broken tool may have written:
 * every sum saturates instead of wrapping to a small number. */
static uint64_t
sat_add (uint64_t a, uint64_t b)
{
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t
div_round_up (uint64_t a, uint64_t b)
{
  return a / b + (a % b != 0);
}

static uint64_t
round_up (uint64_t a, uint64_t b)
{
  uint64_t n = div_round_up (a, b);

  return n > UINT64_MAX / b ? UINT64_MAX : n * b;
}

/* Upper bound of the metadata of a qcow2 image of VIRTUAL_SIZE holding DATA
 * bytes of guest data, with clusters of CLUSTER bytes: the header cluster,
 * the L1 table, L2 tables covering the whole virtual size (8 bytes per
 * cluster), and 16-bit refcounts for every host cluster plus their refcount
 * table, with one spare refcount block for the refcount structures' own
 * clusters. */
static uint64_t
qcow2_metadata_bound (uint64_t virtual_size, uint64_t data, uint64_t cluster)
{
  uint64_t l2_tables, l1, meta, host_clusters, refblocks, reftable;

  if (cluster < 512)
    cluster = DEFAULT_CLUSTER_SIZE;
  l2_tables = div_round_up (div_round_up (virtual_size, cluster), cluster / 8);
  l1 = round_up (l2_tables * 8 > 0 ? l2_tables * 8 : 1, cluster);
  meta = sat_add (sat_add (cluster, l1), l2_tables * cluster);
  host_clusters = div_round_up (sat_add (meta, data), cluster);
  refblocks = div_round_up (host_clusters, cluster / 2) + 1;
  reftable = round_up (refblocks * 8, cluster);
  return sat_add (sat_add (meta, refblocks * cluster), reftable);
}

/* required_bytes of a qcow2 layer that may receive DATA bytes (see the
 * estimate in the header). */
static uint64_t
qcow2_required (uint64_t virtual_size, uint64_t data, uint64_t cluster)
{
  uint64_t cap = round_up (virtual_size, cluster ? cluster
                                                 : DEFAULT_CLUSTER_SIZE);

  if (data > cap)
    data = cap;
  return sat_add (data, qcow2_metadata_bound (virtual_size, data, cluster));
}

/* qemu-img rounds a qcow2 image's size up to whole 512-byte sectors. */
static uint64_t
qcow2_virtual_size (uint64_t size)
{
  return round_up (size, 512);
}

static void
layer_free (SmPrecreateLayer *layer)
{
  if (!layer)
    return;
  g_free (layer->path);
  g_free (layer->source_path);
  g_free (layer->backing_name);
  g_free (layer);
}

void
sm_precreate_plan_free (SmPrecreatePlan *plan)
{
  if (!plan)
    return;
  g_free (plan->dest_dir);
  if (plan->layers)
    g_ptr_array_unref (plan->layers);
  g_free (plan);
}

/* The relative backing name of the copy of PATH, which lies next to the
 * image naming it.  QEMU reads "x:" at the start of a name as a protocol prefix ("nbd:",
 * "file:") unless a '/' comes before the colon, so such a name gets "./". */
static char *
backing_name_for (const char *path)
{
  g_autofree char *base = g_path_get_basename (path);

  if (base[strcspn (base, ":/")] == ':')
    return g_strconcat ("./", base, NULL);
  return g_steal_pointer (&base);
}

/* A destination layer for the source layer SRC, named after it in DEST_DIR,
 * that may receive DATA bytes of guest data; no backing yet. */
static SmPrecreateLayer *
layer_for_source (const char *dest_dir, const SmImageInfo *src, uint64_t data)
{
  SmPrecreateLayer *layer = g_new0 (SmPrecreateLayer, 1);
  g_autofree char *base = g_path_get_basename (src->path);

  layer->path = g_build_filename (dest_dir, base, NULL);
  layer->source_path = g_strdup (src->path);
  layer->format = src->format;
  layer->backing_format = SM_IMAGE_FORMAT_LAST;
  if (src->format == SM_IMAGE_FORMAT_QCOW2) {
    layer->virtual_size = qcow2_virtual_size (src->virtual_size);
    layer->cluster_size = src->cluster_size;
    layer->required_bytes = qcow2_required (layer->virtual_size, data,
                                            layer->cluster_size);
  } else {
    /* The copy may write every byte of a raw image. */
    layer->virtual_size = src->virtual_size;
    layer->required_bytes = src->virtual_size;
  }
  return layer;
}

/* A new-top name goes into a path and into a qcow2 header as a relative
 * backing name elsewhere later: it must stay inside DEST_DIR. */
static bool
check_new_top_name (const char *name, GError **error)
{
  if (!*name || strchr (name, '/') || strcmp (name, ".") == 0
      || strcmp (name, "..") == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "new top image name '%s' is not a plain file name "
                 "(no '/', not '.' or '..')", name);
    return false;
  }
  return true;
}

/* Adds LAYER to PLAN (at the top when AT_TOP) unless its base name is taken
 * already; NAMES maps base names to the source they come from. */
static bool
plan_add_layer (SmPrecreatePlan *plan, GHashTable *names,
                SmPrecreateLayer *layer, bool at_top, GError **error)
{
  g_autofree char *base = g_path_get_basename (layer->path);
  const char *source = layer->source_path ? layer->source_path
                                          : "the new top image";
  const char *other = g_hash_table_lookup (names, base);

  if (other) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s and %s would both be copied to %s: destination names "
                 "must differ", other, source, layer->path);
    layer_free (layer);
    return false;
  }
  g_hash_table_insert (names, g_steal_pointer (&base), (char *) source);
  if (at_top)
    g_ptr_array_insert (plan->layers, 0, layer);
  else
    g_ptr_array_add (plan->layers, layer);
  return true;
}

SmPrecreatePlan *
sm_precreate_plan (const SmImageChain *source, SmPrecreateMode mode,
                   const char *dest_dir, const char *new_top_name,
                   GError **error)
{
  g_autoptr(SmPrecreatePlan) plan = NULL;
  g_autoptr(GHashTable) names = NULL;
  const SmImageInfo *top;
  SmPrecreateLayer *layer;
  unsigned i, n;

  g_return_val_if_fail (source && source->layers, NULL);
  g_return_val_if_fail (dest_dir, NULL);

  n = source->layers->len;
  if (n == 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "cannot plan the destination of an empty chain");
    return NULL;
  }
  top = source->layers->pdata[0];
  if (new_top_name && !check_new_top_name (new_top_name, error))
    return NULL;

  plan = g_new0 (SmPrecreatePlan, 1);
  plan->mode = mode;
  plan->dest_dir = g_canonicalize_filename (dest_dir, NULL);
  plan->layers = g_ptr_array_new_with_free_func ((GDestroyNotify) layer_free);
  names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  switch (mode) {
  case SM_PRECREATE_FLAT: {
    uint64_t data = 0;

    if (new_top_name) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "a flat destination of %s has no new top image (%s)",
                   top->path, new_top_name);
      return NULL;
    }
    /* The flat image receives the data of every layer. */
    for (i = 0; i < n; i++) {
      const SmImageInfo *src = source->layers->pdata[i];

      data = sat_add (data, src->allocated_bytes);
    }
    layer = layer_for_source (plan->dest_dir, top, data);
    if (!plan_add_layer (plan, names, layer, false, error))
      return NULL;
    break;
  }

  case SM_PRECREATE_CHAIN:
    for (i = 0; i < n; i++) {
      const SmImageInfo *src = source->layers->pdata[i];
      const SmImageInfo *below = i + 1 < n ? source->layers->pdata[i + 1]
                                           : NULL;

      if (below && src->format != SM_IMAGE_FORMAT_QCOW2) {
        g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                     "%s is a %s image with a backing file below it: only "
                     "qcow2 layers can have one", src->path,
                     sm_image_format_to_string (src->format));
        return NULL;
      }
      layer = layer_for_source (plan->dest_dir, src, src->allocated_bytes);
      if (below) {
        layer->backing_name = backing_name_for (below->path);
        layer->backing_format = below->format;
      }
      if (!plan_add_layer (plan, names, layer, false, error))
        return NULL;
    }
    if (new_top_name) {
      layer = g_new0 (SmPrecreateLayer, 1);
      layer->path = g_build_filename (plan->dest_dir, new_top_name, NULL);
      layer->format = SM_IMAGE_FORMAT_QCOW2;
      layer->virtual_size = qcow2_virtual_size (top->virtual_size);
      layer->backing_name = backing_name_for (top->path);
      layer->backing_format = top->format;
      layer->cluster_size = top->format == SM_IMAGE_FORMAT_QCOW2
                            ? top->cluster_size : 0;
      layer->required_bytes = qcow2_required (layer->virtual_size, 0,
                                              layer->cluster_size);
      if (!plan_add_layer (plan, names, layer, true, error))
        return NULL;
    }
    break;

  case SM_PRECREATE_LAST:
  default:
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "unknown pre-creation mode %d", (int) mode);
    return NULL;
  }
  return g_steal_pointer (&plan);
}

/* ------------------------------------------------------------------------ */
/* Created-files records. */

struct SmCreatedFiles {
  GPtrArray *paths;          /* char *, oldest first, NULL-terminated */
};

SmCreatedFiles *
sm_created_files_new (void)
{
  SmCreatedFiles *files = g_new0 (SmCreatedFiles, 1);

  files->paths = g_ptr_array_new_null_terminated (4, g_free, TRUE);
  return files;
}

void
sm_created_files_free (SmCreatedFiles *files)
{
  if (!files)
    return;
  g_ptr_array_unref (files->paths);
  g_free (files);
}

static bool
created_files_find (const SmCreatedFiles *files, const char *path,
                    unsigned *index)
{
  return g_ptr_array_find_with_equal_func (files->paths, path, g_str_equal,
                                           index);
}

void
sm_created_files_add (SmCreatedFiles *files, const char *path)
{
  g_autofree char *abs = NULL;

  g_return_if_fail (files && path);
  abs = g_canonicalize_filename (path, NULL);
  if (!created_files_find (files, abs, NULL))
    g_ptr_array_add (files->paths, g_steal_pointer (&abs));
}

/* Drops PATH from the record (the file is gone). */
static void
created_files_forget (SmCreatedFiles *files, const char *path)
{
  unsigned i;

  if (created_files_find (files, path, &i))
    g_ptr_array_remove_index (files->paths, i);
}

const char *const *
sm_created_files_paths (const SmCreatedFiles *files, size_t *n)
{
  static const char *const empty[] = { NULL };

  g_return_val_if_fail (files, empty);
  if (n)
    *n = files->paths->len;
  /* An empty array may have no storage at all. */
  if (files->paths->len == 0)
    return empty;
  return (const char *const *) files->paths->pdata;
}

bool
sm_created_files_rollback (SmCreatedFiles *files, GError **error)
{
  g_autoptr(GError) first = NULL;
  unsigned i;

  g_return_val_if_fail (files, false);
  for (i = files->paths->len; i-- > 0;) {
    const char *path = files->paths->pdata[i];
    g_autoptr(GError) held = NULL;

    /* A file we created that some process holds now (a VM was started on
     * it, a qemu-img runs on it) is not ours to remove any more. */
    if (!sm_image_check_unlocked (path, 0, &held)) {
      sm_debug (DOMAIN, "rollback: kept %s: %s", path, held->message);
      if (!first)
        first = g_error_new (SM_ERROR, held->code, "kept %s", held->message);
      continue;
    }
    if (unlink (path) < 0 && errno != ENOENT) {
      int saved = errno;

      sm_debug (DOMAIN, "rollback: cannot remove %s: %s", path,
                g_strerror (saved));
      if (!first)
        first = g_error_new (SM_ERROR, SM_ERROR_IO, "cannot remove %s: %s",
                             path, g_strerror (saved));
      continue;
    }
    sm_debug (DOMAIN, "rollback: removed %s", path);
    g_ptr_array_remove_index (files->paths, i);
  }
  if (first) {
    g_propagate_error (error, g_steal_pointer (&first));
    return false;
  }
  return true;
}

bool
sm_created_files_save (const SmCreatedFiles *files, const char *record_path,
                       GError **error)
{
  g_autoptr(GString) out = g_string_new (NULL);
  unsigned i;

  g_return_val_if_fail (files && record_path, false);
  for (i = 0; i < files->paths->len; i++) {
    const char *path = files->paths->pdata[i];

    /* One path per line: a name holding a newline cannot be recorded, and
     * losing it silently would leave a file nobody knows about. */
    if (strchr (path, '\n')) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "cannot record a file name holding a newline in %s: %s",
                   record_path, path);
      return false;
    }
    g_string_append (out, path);
    g_string_append_c (out, '\n');
  }
  return sm_state_write_atomic (record_path, out->str, out->len, error);
}

SmCreatedFiles *
sm_created_files_load (const char *record_path, GError **error)
{
  g_autoptr(SmCreatedFiles) files = NULL;
  g_autoptr(GError) local = NULL;
  g_autofree char *data = NULL;
  g_auto(GStrv) lines = NULL;
  unsigned i;

  g_return_val_if_fail (record_path, NULL);
  if (!g_file_get_contents (record_path, &data, NULL, &local)) {
    if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                   "record %s does not exist", record_path);
    else
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot read record %s: %s",
                   record_path, local->message);
    return NULL;
  }
  files = sm_created_files_new ();
  lines = g_strsplit (data, "\n", -1);
  for (i = 0; lines[i]; i++) {
    if (!*lines[i])
      continue;
    if (!g_path_is_absolute (lines[i])) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "record %s, line %u: not an absolute path: %s",
                   record_path, i + 1, lines[i]);
      return NULL;
    }
    sm_created_files_add (files, lines[i]);
  }
  return g_steal_pointer (&files);
}

/* ------------------------------------------------------------------------ */
/* Checking. */

static char *
format_size (uint64_t bytes)
{
  return g_format_size_full (bytes, G_FORMAT_SIZE_IEC_UNITS
                                    | G_FORMAT_SIZE_LONG_FORMAT);
}

static const char *
quoted_or (const char *s, const char *none, char **tmp)
{
  if (!s)
    return none;
  *tmp = g_strdup_printf ("'%s'", s);
  return *tmp;
}

/* True if INFO, the probe of an existing image, is what LAYER plans. */
static bool
layer_fits (const SmPrecreateLayer *layer, const SmImageInfo *info,
            const char *what, GError **error)
{
  const char *want_fmt = layer->backing_name
                         ? sm_image_format_to_string (layer->backing_format)
                         : NULL;
  g_autofree char *t1 = NULL, *t2 = NULL;

  if (info->virtual_size != layer->virtual_size) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: %s: virtual size is %" PRIu64 " bytes, expected %"
                 PRIu64, layer->path, what, info->virtual_size,
                 layer->virtual_size);
    return false;
  }
  if (layer->format != SM_IMAGE_FORMAT_QCOW2)
    return true;
  if (g_strcmp0 (info->backing_file, layer->backing_name) != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: %s: backing file is %s, expected %s", layer->path, what,
                 quoted_or (info->backing_file, "none", &t1),
                 quoted_or (layer->backing_name, "none", &t2));
    return false;
  }
  if (want_fmt && g_strcmp0 (info->backing_format, want_fmt) != 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: %s: backing format is %s, expected %s", layer->path,
                 what, quoted_or (info->backing_format, "not stated", &t1),
                 want_fmt);
    return false;
  }
  /* Data in another file, or an image QEMU would refuse to write, is not
   * what the plan describes either. */
  if (info->data_file) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: %s: it has an external data file ('%s'), expected none",
                 layer->path, what, info->data_file);
    return false;
  }
  if (info->corrupt || info->unknown_incompatible) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: %s: the image is marked corrupt or uses unknown "
                 "features", layer->path, what);
    return false;
  }
  return true;
}

static bool
probe_fits (const SmPrecreateLayer *layer, const char *what, GError **error)
{
  g_autoptr(SmImageInfo) info = sm_image_probe (layer->path, layer->format,
                                                error);

  if (!info) {
    g_prefix_error (error, "%s: ", what);
    return false;
  }
  return layer_fits (layer, info, what, error);
}

static bool
check_dest_dir (const char *dir, GError **error)
{
  struct stat st;

  if (stat (dir, &st) < 0) {
    int saved = errno;

    g_set_error (error, SM_ERROR,
                 saved == ENOENT ? SM_ERROR_NOT_FOUND : SM_ERROR_IO,
                 "destination directory %s: %s%s%s%s", dir,
                 g_strerror (saved),
                 saved == ENOENT ? " (create it with 'mkdir -p " : "",
                 saved == ENOENT ? dir : "",
                 saved == ENOENT ? "', or give a storage domain that "
                                   "exists)" : "");
    return false;
  }
  if (!S_ISDIR (st.st_mode)) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "destination %s is not a directory", dir);
    return false;
  }
  if (access (dir, W_OK | X_OK) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "destination directory %s is not writable: %s", dir,
                 g_strerror (errno));
    return false;
  }
  return true;
}

/* Checks a block device target; sets the layer's marks. */
static bool
check_block_device (SmPrecreateLayer *layer, unsigned flags, GError **error)
{
  g_autofree char *what = NULL;
  g_autofree char *have = NULL, *need = NULL;
  uint64_t size;

  layer->block_device = true;
  if (!sm_image_file_size (layer->path, &size, error))
    return false;
  if (size < layer->required_bytes) {
    have = format_size (size);
    need = format_size (layer->required_bytes);
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: block device too small: %s, need %s", layer->path,
                 have, need);
    return false;
  }
  /* A raw device is the disk itself: QEMU 7.2's mirror fails with "Source
   * and target image have different sizes" on a larger one (checked), and
   * the guest would see the larger size after the pivot anyway. */
  if (layer->format == SM_IMAGE_FORMAT_RAW && size != layer->virtual_size) {
    g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                 "%s: block device is %" PRIu64 " bytes, a raw target must "
                 "be exactly the disk's virtual size, %" PRIu64 " bytes",
                 layer->path, size, layer->virtual_size);
    return false;
  }
  if (flags & SM_PRECREATE_REUSE) {
    if (!probe_fits (layer, "cannot reuse it", error))
      return false;
    layer->reuse = true;
    return true;
  }
  if (!sm_image_find_signature (layer->path, &what, error))
    return false;
  if (what) {
    g_set_error (error, SM_ERROR, SM_ERROR_EXISTS,
                 "%s: block device holds data (%s) (use --reuse-external to "
                 "reuse it)", layer->path, what);
    return false;
  }
  return true;
}

bool
sm_precreate_check (SmPrecreatePlan *plan, unsigned flags, GError **error)
{
  bool reuse = flags & SM_PRECREATE_REUSE;
  uint64_t need = 0, have;
  struct statvfs vfs;
  unsigned i;

  g_return_val_if_fail (plan && plan->layers, false);
  if (!check_dest_dir (plan->dest_dir, error))
    return false;

  for (i = 0; i < plan->layers->len; i++) {
    SmPrecreateLayer *layer = plan->layers->pdata[i];
    struct stat st;

    layer->reuse = false;
    layer->block_device = false;
    /* lstat first: a dangling symbolic link is a name that exists, and
     * writing through it would create a file outside DEST_DIR. */
    if (lstat (layer->path, &st) < 0) {
      if (errno != ENOENT) {
        g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: %s", layer->path,
                     g_strerror (errno));
        return false;
      }
      if (reuse) {
        g_set_error (error, SM_ERROR, SM_ERROR_NOT_FOUND,
                     "%s: target does not exist (reusing external files "
                     "needs every target created beforehand)", layer->path);
        return false;
      }
      need = sat_add (need, layer->required_bytes);
      continue;
    }
    if (stat (layer->path, &st) < 0) {
      if (errno != ENOENT) {
        g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: %s", layer->path,
                     g_strerror (errno));
        return false;
      }
      g_set_error (error, SM_ERROR,
                   reuse ? SM_ERROR_NOT_FOUND : SM_ERROR_EXISTS,
                   reuse ? "%s: target is a dangling symbolic link"
                         : "%s: target exists (use --reuse-external to "
                           "reuse it)", layer->path);
      return false;
    }
    if (S_ISBLK (st.st_mode)) {
      if (!check_block_device (layer, flags, error))
        return false;
      continue;
    }
    if (!reuse) {
      g_set_error (error, SM_ERROR, SM_ERROR_EXISTS,
                   "%s: target exists (use --reuse-external to reuse it)",
                   layer->path);
      return false;
    }
    if (!S_ISREG (st.st_mode)) {
      g_set_error (error, SM_ERROR, SM_ERROR_INVALID,
                   "%s: cannot reuse it: not a regular file or block device",
                   layer->path);
      return false;
    }
    if (!probe_fits (layer, "cannot reuse it", error))
      return false;
    layer->reuse = true;
  }

  if (statvfs (plan->dest_dir, &vfs) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "cannot tell the free space in %s: %s", plan->dest_dir,
                 g_strerror (errno));
    return false;
  }
  /* f_bavail, not f_bfree: blocks reserved for root are not ours to take
   * even when snapmig runs as root. */
  have = (uint64_t) vfs.f_bavail > UINT64_MAX / vfs.f_frsize
         ? UINT64_MAX : (uint64_t) vfs.f_bavail * vfs.f_frsize;
  sm_debug (DOMAIN, "%s: need %" PRIu64 " bytes, have %" PRIu64,
            plan->dest_dir, need, have);
  if (need > have) {
    g_autofree char *need_s = format_size (need);
    g_autofree char *have_s = format_size (have);

    g_set_error (error, SM_ERROR, SM_ERROR_IO,
                 "not enough space in %s: need %s, have %s", plan->dest_dir,
                 need_s, have_s);
    return false;
  }
  return true;
}

/* ------------------------------------------------------------------------ */
/* Execution. */

/* An empty qcow2 image is written here rather than by `qemu-img create`:
 * one qemu-img costs 10-18 ms, mostly process start-up and five
 * fdatasyncs, and a move creates several layers per disk.  The image is the
 * one `qemu-img create -f qcow2` 7.2 makes (version 3, 16-bit refcounts),
 * without its optional feature name table, in the layout of the qcow2
 * specification (QEMU's docs/interop/qcow2.txt):
 *   cluster 0      header, header extensions, backing file name;
 *   cluster 1      refcount table, one entry: the block in cluster 2;
 *   cluster 2      refcount block: refcount 1 for each cluster listed here;
 *   clusters 3...  L1 table, every entry 0 (nothing allocated yet).
 * What does not fit that layout goes to qemu-img (qcow2_layout says
 * which). */

#define QCOW2_MAGIC 0x514649fbU              /* "QFI\xfb" */
#define QCOW2_VERSION 3
/* qemu-img 7.2 writes 112: the 104 bytes of version 3 and the compression
 * type byte (0: zlib) padded to 8.  The same length as qemu-img's images
 * means QEMU reads exactly the header it reads from theirs. */
#define QCOW2_HEADER_LENGTH 112
#define QCOW2_REFCOUNT_ORDER 4               /* 16-bit refcounts */
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU
/* QEMU refuses to open an image naming a longer backing file. */
#define QCOW2_MAX_BACKING_NAME 1023
/* QEMU's limit on the L1 table, 32 MiB. */
#define QCOW2_MAX_L1_ENTRIES (32 * 1024 * 1024 / 8)
#define QCOW2_MIN_CLUSTER 512
#define QCOW2_MAX_CLUSTER (2 * 1024 * 1024)

/* Where the metadata of an empty qcow2 image goes. */
typedef struct {
  uint64_t cluster;            /* bytes */
  unsigned cluster_bits;
  uint64_t l1_entries;         /* one per L2 table the virtual size needs */
  uint64_t meta_clusters;      /* header, refcount table and block, L1 */
  size_t header_used;          /* bytes of cluster 0 in use */
  uint64_t file_end;           /* a regular file's length */
} Qcow2Layout;

/* Computes the layout of LAYER's image, or returns false with WHY set when
 * qemu-img is to make it instead:
 *  - a cluster size that is not a power of two from 512 bytes to 2 MiB
 *    (qemu-img refuses it with its own message);
 *  - a virtual size that is not a whole number of 512-byte sectors (the
 *    plan rounds it; qemu-img would round it again);
 *  - an L1 table over QEMU's 32 MiB (qemu-img refuses the size, "try using
 *    a larger cluster size");
 *  - more metadata clusters than one refcount block counts (cluster / 2;
 *    e.g. 1 GiB with 512-byte clusters, 3 TiB with 4 KiB ones);
 *  - a backing name that is empty, over 1023 bytes or does not fit in
 *    cluster 0 after the header and extensions, or a backing format with
 *    no name. */
static bool
qcow2_layout (const SmPrecreateLayer *layer, Qcow2Layout *lay,
              const char **why)
{
  uint64_t c = layer->cluster_size ? layer->cluster_size
                                   : DEFAULT_CLUSTER_SIZE;
  size_t used = QCOW2_HEADER_LENGTH;

  memset (lay, 0, sizeof *lay);
  if (c < QCOW2_MIN_CLUSTER || c > QCOW2_MAX_CLUSTER || (c & (c - 1)) != 0) {
    *why = "cluster size not a power of two from 512 bytes to 2 MiB";
    return false;
  }
  if (layer->virtual_size % 512 != 0) {
    *why = "virtual size not a multiple of 512 bytes";
    return false;
  }
  lay->cluster = c;
  lay->cluster_bits = (unsigned) __builtin_ctzll (c);
  /* An L2 table of one cluster maps cluster / 8 clusters. */
  lay->l1_entries = div_round_up (layer->virtual_size, c * (c / 8));
  if (lay->l1_entries > QCOW2_MAX_L1_ENTRIES) {
    *why = "L1 table larger than QEMU allows";
    return false;
  }
  lay->meta_clusters = 3 + div_round_up (lay->l1_entries * 8, c);
  if (lay->meta_clusters > c / 2) {
    *why = "metadata needs more than one refcount block";
    return false;
  }
  if (layer->backing_name) {
    const char *fmt = sm_image_format_to_string (layer->backing_format);
    size_t name_len = strlen (layer->backing_name);

    if (!fmt) {
      *why = "backing file without a known format";
      return false;
    }
    if (name_len == 0 || name_len > QCOW2_MAX_BACKING_NAME) {
      *why = "backing file name empty or longer than 1023 bytes";
      return false;
    }
    /* The backing format extension, the end of the extensions, then the
     * name. */
    used += 8 + round_up (strlen (fmt), 8) + 8 + name_len;
  } else {
    used += 8;
  }
  if (used > c) {
    *why = "backing file name does not fit in the header cluster";
    return false;
  }
  lay->header_used = used;
  /* As qemu-img: the file ends after the last L1 entry, or after the
   * refcount block without any. */
  lay->file_end = 3 * c + lay->l1_entries * 8;
  return true;
}

static void
put_be16 (uint8_t *p, uint16_t v)
{
  p[0] = v >> 8;
  p[1] = v;
}

static void
put_be32 (uint8_t *p, uint32_t v)
{
  put_be16 (p, v >> 16);
  put_be16 (p + 2, v);
}

static void
put_be64 (uint8_t *p, uint64_t v)
{
  put_be32 (p, v >> 32);
  put_be32 (p + 4, v);
}

/* Fills BUF, cluster 0 zeroed, with LAYER's header, extensions and backing
 * name (field offsets from the qcow2 specification). */
static void
qcow2_fill_header (const SmPrecreateLayer *layer, const Qcow2Layout *lay,
                   uint8_t *buf)
{
  size_t off = QCOW2_HEADER_LENGTH;

  put_be32 (buf + 0, QCOW2_MAGIC);
  put_be32 (buf + 4, QCOW2_VERSION);
  put_be32 (buf + 20, lay->cluster_bits);
  put_be64 (buf + 24, layer->virtual_size);
  /* 32: crypt_method 0. */
  put_be32 (buf + 36, (uint32_t) lay->l1_entries);
  /* qemu-img leaves the offset of an empty L1 table at 0. */
  if (lay->l1_entries)
    put_be64 (buf + 40, 3 * lay->cluster);
  put_be64 (buf + 48, lay->cluster);           /* refcount table */
  put_be32 (buf + 56, 1);                      /* of one cluster */
  /* 60: no snapshots; 72-95: no incompatible, compatible or autoclear
   * feature. */
  put_be32 (buf + 96, QCOW2_REFCOUNT_ORDER);
  put_be32 (buf + 100, QCOW2_HEADER_LENGTH);
  /* 104: compression type 0, zlib. */
  if (layer->backing_name) {
    const char *fmt = sm_image_format_to_string (layer->backing_format);
    size_t fmt_len = strlen (fmt);
    size_t name_len = strlen (layer->backing_name);

    put_be32 (buf + off, QCOW2_EXT_BACKING_FORMAT);
    put_be32 (buf + off + 4, (uint32_t) fmt_len);
    memcpy (buf + off + 8, fmt, fmt_len);
    off += 8 + round_up (fmt_len, 8);
    off += 8;                                  /* end: type 0, length 0 */
    memcpy (buf + off, layer->backing_name, name_len);
    put_be64 (buf + 8, off);
    put_be32 (buf + 16, (uint32_t) name_len);
  }
}

/* The formatting of one qcow2 layer: written here, or by a `qemu-img
 * create` running for it. */
typedef struct {
  const SmPrecreateLayer *layer;
  int fd;                      /* the image written here, until flushed;
                                  -1 otherwise */
  GPid pid;                    /* qemu-img; 0: not started */
  int err_fd;                  /* its stderr, or -1 */
} Format;

/* Writes cluster INDEX of F's image from BUF: all of it on a block device,
 * whose old content must not show through, and only its first USED bytes
 * in the new file, which reads as zeros elsewhere and stays sparse. */
static bool
write_cluster (const Format *f, const Qcow2Layout *lay, uint64_t index,
               const uint8_t *buf, size_t used, GError **error)
{
  size_t len = f->layer->block_device ? lay->cluster : used;
  off_t off = (off_t) (index * lay->cluster);

  while (len > 0) {
    ssize_t n = pwrite (f->fd, buf, len, off);

    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot write %s: %s",
                   f->layer->path, g_strerror (n < 0 ? errno : ENOSPC));
      return false;
    }
    buf += n;
    len -= (size_t) n;
    off += n;
  }
  return true;
}

/* Writes the empty image LAY describes into F's file or device (not
 * flushed yet: format_finish does it once). */
static bool
format_native (Format *f, const Qcow2Layout *lay, GError **error)
{
  const SmPrecreateLayer *layer = f->layer;
  g_autofree uint8_t *buf = g_malloc0 (lay->cluster);
  size_t refblock_used = lay->meta_clusters * 2;
  uint64_t i;

  if (f->fd < 0) {
    /* A block device: the file was not made by this call. */
    f->fd = open (layer->path, O_WRONLY | O_CLOEXEC);
    if (f->fd < 0) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot open %s: %s",
                   layer->path, g_strerror (errno));
      return false;
    }
  }
  sm_debug (DOMAIN, "%s: writing qcow2 (cluster %" PRIu64 ", %" PRIu64
            " L1 entries, %" PRIu64 " metadata clusters)", layer->path,
            lay->cluster, lay->l1_entries, lay->meta_clusters);
  qcow2_fill_header (layer, lay, buf);
  if (!write_cluster (f, lay, 0, buf, lay->header_used, error))
    return false;
  memset (buf, 0, lay->header_used);
  put_be64 (buf, 2 * lay->cluster);
  if (!write_cluster (f, lay, 1, buf, 8, error))
    return false;
  memset (buf, 0, 8);
  for (i = 0; i < lay->meta_clusters; i++)
    put_be16 (buf + 2 * i, 1);
  if (!write_cluster (f, lay, 2, buf, refblock_used, error))
    return false;
  memset (buf, 0, refblock_used);
  for (i = 3; i < lay->meta_clusters; i++)
    if (!write_cluster (f, lay, i, buf, 0, error))
      return false;
  if (!layer->block_device && ftruncate (f->fd, (off_t) lay->file_end) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot size %s to %" PRIu64
                 " bytes: %s", layer->path, lay->file_end,
                 g_strerror (errno));
    return false;
  }
  return true;
}

/* Starts `qemu-img create` writing the image LAYER plans into the existing
 * (empty or blank) file or device at its path. */
static bool
format_spawn (Format *f, GError **error)
{
  const SmPrecreateLayer *layer = f->layer;
  g_autoptr(GPtrArray) argv = g_ptr_array_new_null_terminated (16, g_free,
                                                               TRUE);
  g_autoptr(GError) local = NULL;

  g_ptr_array_add (argv, g_strdup ("qemu-img"));
  g_ptr_array_add (argv, g_strdup ("create"));
  g_ptr_array_add (argv, g_strdup ("-q"));
  g_ptr_array_add (argv, g_strdup ("-f"));
  g_ptr_array_add (argv, g_strdup ("qcow2"));
  if (layer->cluster_size) {
    g_ptr_array_add (argv, g_strdup ("-o"));
    g_ptr_array_add (argv, g_strdup_printf ("cluster_size=%" PRIu64,
                                            layer->cluster_size));
  }
  if (layer->backing_name) {
    /* -u with an explicit size: qemu-img does not open the backing file,
     * whose copy may arrive only later (drive-mirror mode=existing opens it
     * at completion).  That is also why the layers of a chain can be
     * formatted all at once. */
    g_ptr_array_add (argv, g_strdup ("-b"));
    g_ptr_array_add (argv, g_strdup (layer->backing_name));
    g_ptr_array_add (argv, g_strdup ("-F"));
    g_ptr_array_add (argv, g_strdup (sm_image_format_to_string (
                                       layer->backing_format)));
    g_ptr_array_add (argv, g_strdup ("-u"));
  }
  /* The path is absolute, so QEMU never takes a protocol prefix from it. */
  g_ptr_array_add (argv, g_strdup (layer->path));
  g_ptr_array_add (argv, g_strdup_printf ("%" PRIu64, layer->virtual_size));
  if (sm_debug_enabled ()) {
    g_autofree char *cmd = g_strjoinv (" ", (char **) argv->pdata);
    sm_debug (DOMAIN, "running %s", cmd);
  }
  if (!g_spawn_async_with_pipes (NULL, (char **) argv->pdata, NULL,
                                 G_SPAWN_SEARCH_PATH
                                 | G_SPAWN_DO_NOT_REAP_CHILD
                                 | G_SPAWN_STDIN_FROM_DEV_NULL
                                 | G_SPAWN_STDOUT_TO_DEV_NULL,
                                 NULL, NULL, &f->pid, NULL, NULL, &f->err_fd,
                                 &local)) {
    f->pid = 0;
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: cannot run qemu-img: %s",
                 layer->path, local->message);
    return false;
  }
  return true;
}

/* Formats F's layer: writes it here when it fits the simple layout, or
 * starts qemu-img for it. */
static bool
format_start (Format *f, GError **error)
{
  Qcow2Layout lay;
  const char *why = NULL;

  if (qcow2_layout (f->layer, &lay, &why))
    return format_native (f, &lay, error);
  sm_debug (DOMAIN, "%s: qemu-img create makes it (%s)", f->layer->path,
            why);
  /* qemu-img opens the file by its name. */
  if (f->fd >= 0) {
    close (f->fd);
    f->fd = -1;
  }
  return format_spawn (f, error);
}

/* Finishes F: flushes the image written here (with SYNC; without, after a
 * failure, it is only closed), or waits for its qemu-img (if it was
 * started) and reports how it ended. */
static bool
format_finish (Format *f, bool sync, GError **error)
{
  g_autoptr(GString) err_out = NULL;
  g_autoptr(GError) local = NULL;
  int status = 0;

  if (f->fd >= 0) {
    /* Every image was written before the first of these: one flush each,
     * where qemu-img makes five. */
    int fd = f->fd, saved = 0;

    f->fd = -1;
    if (sync && fdatasync (fd) < 0)
      saved = errno;
    close (fd);
    if (saved) {
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot write %s: %s",
                   f->layer->path, g_strerror (saved));
      return false;
    }
    return true;
  }
  if (f->pid == 0)
    return true;
  /* Read its messages to the end first: a child blocked on a full pipe
   * would never exit. */
  err_out = g_string_new (NULL);
  for (;;) {
    char buf[4096];
    ssize_t n = read (f->err_fd, buf, sizeof buf);

    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    g_string_append_len (err_out, buf, n);
  }
  close (f->err_fd);
  f->err_fd = -1;
  while (waitpid (f->pid, &status, 0) < 0 && errno == EINTR)
    ;
  g_spawn_close_pid (f->pid);
  f->pid = 0;
  if (!g_spawn_check_wait_status (status, &local)) {
    g_strstrip (err_out->str);
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "%s: qemu-img create failed: %s",
                 f->layer->path, *err_out->str ? err_out->str : local->message);
    return false;
  }
  return true;
}

/* Creates the regular file of LAYER (formatting is done by the caller);
 * records it in CREATED and MINE as soon as it exists.  With KEEP_FD, the
 * file stays open for writing there (caller closes), so that it is
 * formatted through the very descriptor that created it. */
static bool
create_file_layer (const SmPrecreateLayer *layer, SmCreatedFiles *created,
                   SmCreatedFiles *mine, int *keep_fd, GError **error)
{
  int fd;

  /* O_EXCL: never overwrite a file, even one that appeared after the check
   * (it also refuses a symbolic link, dangling or not). */
  fd = open (layer->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    int saved = errno;

    if (saved == EEXIST)
      g_set_error (error, SM_ERROR, SM_ERROR_EXISTS,
                   "%s: target exists (use --reuse-external to reuse it)",
                   layer->path);
    else
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot create %s: %s",
                   layer->path, g_strerror (saved));
    return false;
  }
  sm_created_files_add (created, layer->path);
  sm_created_files_add (mine, layer->path);
  sm_debug (DOMAIN, "created %s", layer->path);

  if (layer->format == SM_IMAGE_FORMAT_RAW) {
    /* Sparse full size: the copy fills it. */
    if (ftruncate (fd, (off_t) layer->virtual_size) < 0) {
      int saved = errno;

      close (fd);
      g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot size %s to %" PRIu64
                   " bytes: %s", layer->path, layer->virtual_size,
                   g_strerror (saved));
      return false;
    }
  }
  if (keep_fd) {
    *keep_fd = fd;
    return true;
  }
  if (close (fd) < 0) {
    g_set_error (error, SM_ERROR, SM_ERROR_IO, "cannot create %s: %s",
                 layer->path, g_strerror (errno));
    return false;
  }
  return true;
}

/* Makes the names of the files PLAN created durable: their data is flushed,
 * but without a sync of their directories a crash could lose the files
 * themselves once the VM depends on them (pivot). */
static bool
sync_dirs (const SmPrecreatePlan *plan, GError **error)
{
  g_autoptr(GHashTable) done = g_hash_table_new_full (g_str_hash,
                                                      g_str_equal, g_free,
                                                      NULL);
  unsigned i;

  for (i = 0; i < plan->layers->len; i++) {
    const SmPrecreateLayer *layer = plan->layers->pdata[i];
    g_autofree char *dir = NULL;

    if (layer->reuse || layer->block_device)
      continue;
    dir = g_path_get_dirname (layer->path);
    if (g_hash_table_contains (done, dir))
      continue;
    if (!sm_state_fsync_dir (dir, error))
      return false;
    g_hash_table_add (done, g_steal_pointer (&dir));
  }
  return true;
}

static bool
execute_layers (SmPrecreatePlan *plan, SmCreatedFiles *created,
                SmCreatedFiles *mine, GError **error)
{
  unsigned n = plan->layers->len;
  g_autofree Format *formats = g_new0 (Format, n);
  g_autoptr(GError) first = NULL;
  unsigned i;

  for (i = 0; i < n; i++) {
    formats[i].layer = plan->layers->pdata[i];
    formats[i].fd = -1;
    formats[i].err_fd = -1;
  }
  /* First every file, bottom-up, so that each layer's backing file exists
   * once it is made (qemu-img does not need it with -u, but a reader of a
   * half-made destination does). */
  for (i = n; i-- > 0 && !first;) {
    const SmPrecreateLayer *layer = plan->layers->pdata[i];
    bool qcow2 = layer->format == SM_IMAGE_FORMAT_QCOW2;

    if (layer->reuse || layer->block_device)
      continue;
    create_file_layer (layer, created, mine, qcow2 ? &formats[i].fd : NULL,
                       &first);
  }
  /* Then the qcow2 formatting of all of them, before any flush: a
   * qemu-img started for a layer of unusual layout runs while the next
   * layers are written, and the flushes come last, one per image.  A
   * disk's whole destination chain is made before the snapshot, while the
   * guest waits for nothing but the operation's wall time. */
  for (i = n; i-- > 0 && !first;) {
    const SmPrecreateLayer *layer = plan->layers->pdata[i];

    if (!layer->reuse && layer->format == SM_IMAGE_FORMAT_QCOW2)
      format_start (&formats[i], &first);
  }
  /* Every layer is finished, whatever failed: every descriptor closed, and
   * every started qemu-img waited for, as none may go on writing into a
   * file that the rollback removes. */
  for (i = n; i-- > 0;)
    format_finish (&formats[i], !first, first ? NULL : &first);
  if (first) {
    g_propagate_error (error, g_steal_pointer (&first));
    return false;
  }
  for (i = n; i-- > 0;) {
    const SmPrecreateLayer *layer = plan->layers->pdata[i];

    if (!layer->reuse &&
        !probe_fits (layer, "the created image does not match the plan",
                     error))
      return false;
  }
  return sync_dirs (plan, error);
}

bool
sm_precreate_execute (SmPrecreatePlan *plan, unsigned flags,
                      SmCreatedFiles *created, GError **error)
{
  g_autoptr(SmCreatedFiles) mine = sm_created_files_new ();
  g_autoptr(GPtrArray) made = NULL;
  g_autoptr(GError) local = NULL;
  g_autoptr(GError) rollback_error = NULL;
  const char *const *p;
  unsigned i;

  g_return_val_if_fail (plan && created, false);
  if (!sm_precreate_check (plan, flags, error))
    return false;
  if (execute_layers (plan, created, mine, &local))
    return true;

  /* Remove exactly what this call made; pre-existing files were never
   * recorded.  What could not be removed stays in CREATED. */
  made = g_ptr_array_new_with_free_func (g_free);
  for (p = sm_created_files_paths (mine, NULL); *p; p++)
    g_ptr_array_add (made, g_strdup (*p));
  if (!sm_created_files_rollback (mine, &rollback_error)) {
    g_autofree char *msg = g_strdup_printf ("%s (rollback failed too: %s)",
                                            local->message,
                                            rollback_error->message);
    g_free (local->message);
    local->message = g_steal_pointer (&msg);
  }
  for (i = 0; i < made->len; i++)
    if (!created_files_find (mine, made->pdata[i], NULL))
      created_files_forget (created, made->pdata[i]);
  g_propagate_error (error, g_steal_pointer (&local));
  return false;
}
