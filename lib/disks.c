/* libsnapmig — a running VM's disks, chains and block jobs. */
#include "disks.h"

#include <stdarg.h>
#include <string.h>

#include "image.h"
#include "json-util.h"
#include "report-json.h"

static void
layer_free (SmDiskLayer *layer)
{
  if (!layer)
    return;
  g_free (layer->file);
  g_free (layer->qemu_file);
  g_free (layer->format);
  g_free (layer->node_name);
  g_free (layer->backing_file);
  g_free (layer);
}

static void
disk_free (SmDisk *disk)
{
  if (!disk)
    return;
  g_free (disk->device);
  g_free (disk->qdev);
  g_free (disk->node_name);
  g_free (disk->format);
  g_free (disk->file);
  g_ptr_array_unref (disk->chain);
  g_ptr_array_unref (disk->jobs);
  g_ptr_array_unref (disk->warnings);
  g_free (disk);
}

void
sm_disk_list_free (SmDiskList *list)
{
  if (!list)
    return;
  g_ptr_array_unref (list->disks);
  g_ptr_array_unref (list->other_jobs);
  g_free (list);
}

/* ---- from the VM view ------------------------------------------------ */

/* One SmDisk from the library's one parser of query-block (blockjob.h). */
static SmDisk *
disk_from_block (const SmBlockDisk *bd)
{
  SmDisk *disk = g_new0 (SmDisk, 1);
  guint i;

  disk->device = g_strdup (bd->device ? bd->device : "");
  disk->qdev = g_strdup (bd->qdev);
  disk->chain = g_ptr_array_new_with_free_func ((GDestroyNotify) layer_free);
  disk->jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) sm_block_job_free);
  disk->warnings = g_ptr_array_new_with_free_func (g_free);
  if (!bd->node_name && bd->chain->len == 0)
    return disk;                /* no medium */

  disk->inserted = true;
  disk->node_name = g_strdup (bd->node_name);
  disk->format = g_strdup (bd->format);
  /* The active layer's own file, not QEMU's "json:{...}" name for it. */
  disk->file = g_strdup (bd->chain->len > 0 ? sm_block_disk_top (bd)
                         : bd->file);
  disk->read_only = bd->read_only;
  for (i = 0; i < bd->chain->len; i++) {
    const SmBlockLayer *bl = bd->chain->pdata[i];
    SmDiskLayer *layer = g_new0 (SmDiskLayer, 1);

    layer->file = g_strdup (bl->filename);
    layer->qemu_file = g_strdup (bl->qemu_filename);
    layer->format = g_strdup (bl->format);
    layer->node_name = g_strdup (bl->node_name);
    layer->virtual_size = bl->virtual_size;
    layer->backing_file = g_strdup (bl->backing_file);
    g_ptr_array_add (disk->chain, layer);
  }
  if (disk->chain->len > 0)
    disk->virtual_size = ((SmDiskLayer *) disk->chain->pdata[0])->virtual_size;
  return disk;
}

/* ---- the on-disk check ----------------------------------------------- */

static void G_GNUC_PRINTF (2, 3)
warn (SmDisk *disk, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_ptr_array_add (disk->warnings, g_strdup_vprintf (fmt, ap));
  va_end (ap);
}

static bool
same_file (const char *a, const char *b)
{
  g_autofree char *ca = g_canonicalize_filename (a, NULL);
  g_autofree char *cb = g_canonicalize_filename (b, NULL);

  return strcmp (ca, cb) == 0;
}

/* Compares QEMU's chain with the one the headers on disk describe.  The
 * first structural difference (another file, another backing name) makes
 * every later layer differ too, so the comparison stops there.
 */
static void
check_chain_on_disk (SmDisk *disk)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(SmImageChain) chain = NULL;
  int format;
  guint i;

  if (!disk->inserted || !disk->file || disk->chain->len == 0)
    return;
  /* Only file-based images in formats snapmig handles have headers we can
   * read; anything else (nbd:, json:, luks) is simply not checked. */
  format = sm_image_format_from_string (disk->format);
  if (format < 0 || !sm_image_backing_is_local (
        ((const SmDiskLayer *) disk->chain->pdata[0])->qemu_file))
    return;

  chain = sm_image_chain_open (disk->file, (SmImageFormat) format, NULL, 0,
                               &err);
  if (!chain) {
    warn (disk, "cannot read the backing chain on disk: %s", err->message);
    return;
  }
  disk->chain_checked = true;

  for (i = 0; i < disk->chain->len && i < chain->layers->len; i++) {
    const SmDiskLayer *q = disk->chain->pdata[i];
    const SmImageInfo *d = chain->layers->pdata[i];
    const char *d_format = sm_image_format_to_string (d->format);

    if (!same_file (q->file, d->path)) {
      warn (disk, "layer %u: QEMU has %s open, the headers on disk lead to %s",
            i + 1, q->file, d->path);
      return;
    }
    if (g_strcmp0 (q->format, d_format) != 0)
      warn (disk, "%s: QEMU opened it as %s, the chain on disk says %s",
            q->file, q->format, d_format);
    /* A view without node names (libvirt's, vm-access.h) states no
     * virtual sizes and names each backing layer by its absolute file:
     * the headers' sizes and names are taken, once the files agree. */
    if (!disk->node_name) {
      SmDiskLayer *w = disk->chain->pdata[i];

      w->virtual_size = d->virtual_size;
      if (i == 0)
        disk->virtual_size = d->virtual_size;
      if (i + 1 < disk->chain->len && d->backing_file &&
          i + 1 < chain->layers->len &&
          same_file (((const SmDiskLayer *) disk->chain->pdata[i + 1])->file,
                     ((const SmImageInfo *) chain->layers->pdata[i + 1])->path)) {
        g_free (w->backing_file);
        w->backing_file = g_strdup (d->backing_file);
      }
    }
    if (q->virtual_size != d->virtual_size)
      warn (disk, "%s: virtual size on disk is %" G_GUINT64_FORMAT
            " bytes, QEMU has %" G_GUINT64_FORMAT, q->file, d->virtual_size,
            q->virtual_size);
    if (g_strcmp0 (q->backing_file, d->backing_file) != 0) {
      warn (disk, "%s: the header on disk names backing file %s%s%s, QEMU "
            "has %s%s%s", q->file,
            d->backing_file ? "'" : "", d->backing_file ? d->backing_file
            : "(none)", d->backing_file ? "'" : "",
            q->backing_file ? "'" : "", q->backing_file ? q->backing_file
            : "(none)", q->backing_file ? "'" : "");
      return;
    }
  }
  if (disk->chain->len != chain->layers->len)
    warn (disk, "the chain on disk has %u layers, QEMU has %u open",
          chain->layers->len, disk->chain->len);
}

/* ---- the query ------------------------------------------------------- */

static SmDisk *
find_disk (GPtrArray *disks, const char *name)
{
  guint i;

  if (!name || !*name)
    return NULL;
  for (i = 0; i < disks->len; i++) {
    SmDisk *d = disks->pdata[i];

    if (g_strcmp0 (d->device, name) == 0)
      return d;
  }
  for (i = 0; i < disks->len; i++) {
    SmDisk *d = disks->pdata[i];

    if (g_strcmp0 (d->node_name, name) == 0 || g_strcmp0 (d->qdev, name) == 0)
      return d;
  }
  return NULL;
}

const SmDisk *
sm_disk_list_find (const SmDiskList *list, const char *name)
{
  return find_disk (list->disks, name);
}

SmDiskList *
sm_disks_query (SmQmp *qmp, GError **error)
{
  g_autoptr(SmBlockVm) vm = sm_block_vm_query (qmp, error);

  if (!vm) {
    g_prefix_error (error, "QEMU monitor %s: ", sm_qmp_address (qmp));
    return NULL;
  }
  return sm_disks_from_view (vm);
}

SmDiskList *
sm_disks_query_access (SmVmAccess *access, GError **error)
{
  g_autoptr(SmBlockVm) vm = access->ops->query_view (access, error);

  if (!vm) {
    /* The QMP backend's address is a socket: named as before. */
    g_prefix_error (error, "%s%s: ",
                    strcmp (access->ops->name, "qmp") == 0 ? "QEMU monitor "
                                                           : "",
                    access->address);
    return NULL;
  }
  return sm_disks_from_view (vm);
}

SmDiskList *
sm_disks_from_view (SmBlockVm *vm)
{
  g_autoptr(SmDiskList) list = NULL;
  size_t i;

  list = g_new0 (SmDiskList, 1);
  list->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) disk_free);
  list->other_jobs = g_ptr_array_new_with_free_func (
    (GDestroyNotify) sm_block_job_free);
  for (i = 0; i < vm->disks->len; i++) {
    SmDisk *disk = disk_from_block (vm->disks->pdata[i]);

    check_chain_on_disk (disk);
    g_ptr_array_add (list->disks, disk);
  }
  /* The jobs move into the disks they run on. */
  g_ptr_array_set_free_func (vm->jobs, NULL);
  for (i = 0; i < vm->jobs->len; i++) {
    SmBlockJob *job = vm->jobs->pdata[i];
    SmDisk *disk = find_disk (list->disks, job->id);

    g_ptr_array_add (disk ? disk->jobs : list->other_jobs, job);
  }
  g_ptr_array_set_size (vm->jobs, 0);
  return g_steal_pointer (&list);
}

/* ---- JSON ------------------------------------------------------------ */

static json_object *
job_to_json (const SmBlockJob *job)
{
  json_object *j = json_object_new_object ();

  json_object_object_add (j, "id", sm_report_string_or_null (job->id));
  json_object_object_add (j, "type", sm_report_string_or_null (job->type));
  json_object_object_add (j, "status", sm_report_string_or_null (job->status));
  /* QEMU's offset/len are done/total bytes, as every progress here. */
  json_object_object_add (j, "done", json_object_new_uint64 (job->offset));
  json_object_object_add (j, "total", json_object_new_uint64 (job->len));
  json_object_object_add (j, "speed", json_object_new_int64 (job->speed));
  json_object_object_add (j, "ready", json_object_new_boolean (job->ready));
  json_object_object_add (j, "busy", json_object_new_boolean (job->busy));
  json_object_object_add (j, "paused", json_object_new_boolean (job->paused));
  return j;
}

static json_object *
jobs_to_json (const GPtrArray *jobs)
{
  json_object *a = json_object_new_array ();
  guint i;

  for (i = 0; i < jobs->len; i++)
    json_object_array_add (a, job_to_json (jobs->pdata[i]));
  return a;
}

static json_object *
disk_to_json (const SmDisk *disk)
{
  json_object *d = json_object_new_object ();
  json_object *chain = json_object_new_array ();
  json_object *warnings = json_object_new_array ();
  guint i;

  for (i = 0; i < disk->chain->len; i++) {
    const SmDiskLayer *l = disk->chain->pdata[i];
    json_object *lj = json_object_new_object ();

    json_object_object_add (lj, "file", sm_report_string_or_null (l->file));
    json_object_object_add (lj, "format",
                            sm_report_string_or_null (l->format));
    json_object_object_add (lj, "node-name",
                            sm_report_string_or_null (l->node_name));
    json_object_object_add (lj, "virtual-size",
                            json_object_new_uint64 (l->virtual_size));
    json_object_object_add (lj, "backing-file",
                            sm_report_string_or_null (l->backing_file));
    json_object_array_add (chain, lj);
  }
  for (i = 0; i < disk->warnings->len; i++)
    json_object_array_add (warnings,
                           json_object_new_string (disk->warnings->pdata[i]));

  json_object_object_add (d, "device",
                          sm_report_string_or_null (disk->device));
  json_object_object_add (d, "qdev", sm_report_string_or_null (disk->qdev));
  json_object_object_add (d, "inserted",
                          json_object_new_boolean (disk->inserted));
  json_object_object_add (d, "node-name",
                          sm_report_string_or_null (disk->node_name));
  json_object_object_add (d, "format",
                          sm_report_string_or_null (disk->format));
  json_object_object_add (d, "file", sm_report_string_or_null (disk->file));
  json_object_object_add (d, "virtual-size",
                          json_object_new_uint64 (disk->virtual_size));
  json_object_object_add (d, "read-only",
                          json_object_new_boolean (disk->read_only));
  json_object_object_add (d, "chain", chain);
  json_object_object_add (d, "jobs", jobs_to_json (disk->jobs));
  json_object_object_add (d, "chain-checked",
                          json_object_new_boolean (disk->chain_checked));
  json_object_object_add (d, "warnings", warnings);
  return d;
}

json_object *
sm_disks_to_json (const SmDiskList *list)
{
  json_object *root = json_object_new_object ();
  json_object *disks = json_object_new_array ();
  guint i;

  for (i = 0; i < list->disks->len; i++)
    json_object_array_add (disks, disk_to_json (list->disks->pdata[i]));
  json_object_object_add (root, "disks", disks);
  json_object_object_add (root, "other-jobs", jobs_to_json (list->other_jobs));
  return root;
}
